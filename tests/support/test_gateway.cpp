// Test support implementation.
#include <cstdio>
#include "tests/support/test_gateway.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <zlib.h>

#include "gateway/common/log.h"
#include "tests/support/http_client.h"
#include "tests/support/pg_server.h"

namespace passerelle::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "passerelle-test-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* p = mkdtemp(buf.data());
  if (!p) throw std::runtime_error("mkdtemp failed");
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

TestGateway::TestGateway(std::vector<std::string> sets, bool https) {
  // No partners and no GP installations unless the test names them (the defaults are folders
  // relative to the working directory, which holds the demo's when run from the repository).
  std::vector<std::string> all = {"http.port=0", "https.port=0", "https.enabled=" + std::string(https ? "true" : "false"),
                                  "data.dir=" + dir_.path(), "log.level=warn", "server.drain_seconds=5",
                                  "partners.dir=" + dir_.path() + "/no-partners", "gp.dir=" + dir_.path() + "/no-gp"};
  // PASSERELLE_TEST_STORAGE=postgresql: every test gateway stores into a fresh database of a
  // throw-away PostgreSQL cluster (a test naming its own storage.url keeps it).
  if (testStorageIsPostgresql()) {
    std::string error;
    PgServer* server = PgServer::shared(error);
    if (!server) throw std::runtime_error("PASSERELLE_TEST_STORAGE=postgresql: " + error);
    std::string url = server->createDatabase(error);
    if (url.empty()) throw std::runtime_error("PASSERELLE_TEST_STORAGE=postgresql: " + error);
    all.push_back("storage.url=" + url);
  }
  all.insert(all.end(), sets.begin(), sets.end());
  char* noEnv[] = {nullptr};
  auto cfg = config::Config::load("/dev/null", all, noEnv);
  if (!cfg.ok()) throw std::runtime_error(cfg.error().message);
  log::setLevel(log::Level::kWarn);
  auto g = app::Gateway::start(cfg.value());
  if (!g.ok()) throw std::runtime_error(g.error().message);
  gateway_ = std::move(g.value());
  HttpClient::setDefaultBearer(systemToken());
}

bool testStorageIsPostgresql() {
  const char* storage = std::getenv("PASSERELLE_TEST_STORAGE");
  return storage && std::string(storage) == "postgresql";
}

std::string devToken(const std::string& dataDir, identity::IssueOptions options) {
  if (options.issuer.empty()) options.issuer = "passerelle-dev";
  if (options.audience.empty()) options.audience = "passerelle";
  if (options.subject.empty()) options.subject = options.role;
  auto t = identity::issueDevToken(dataDir, options);
  if (!t.ok()) throw std::runtime_error(t.error().message);
  return t.value();
}

std::string TestGateway::token(identity::IssueOptions options) const { return devToken(dir_.path(), std::move(options)); }

std::string TestGateway::systemToken() const {
  identity::IssueOptions o;
  o.role = "system";
  o.subject = "test-system";
  o.scopes = {"system/*.cruds"};
  return token(o);
}

TestGateway::~TestGateway() {
  if (gateway_) gateway_->stop();
}

std::string TestGateway::base() const { return "http://127.0.0.1:" + std::to_string(httpPort()) + "/fhir"; }

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string corporaDir() {
  if (const char* env = std::getenv("PASSERELLE_CORPORA")) return std::filesystem::exists(env) ? env : "";
  return std::filesystem::exists(PASSERELLE_CORPORA_DIR) ? PASSERELLE_CORPORA_DIR : "";
}

}  // namespace passerelle::testing

namespace passerelle::testing {

std::string gunzipFile(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return "";
  std::string out;
  char buf[65536];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  gzclose(f);
  return out;
}

std::string runCommand(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return "FAILED: popen";
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  return rc == 0 ? out : "FAILED(" + std::to_string(rc) + "): " + out;
}

}  // namespace passerelle::testing
