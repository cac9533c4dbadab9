// The passerelle executable as a process: ports printed, SIGTERM drains and exits 0, bad
// configuration stops start-up naming the key.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <regex>
#include <thread>

#include "tests/support/http_client.h"
#include "tests/support/pg_server.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;

namespace {

struct Child {
  pid_t pid = -1;
  FILE* out = nullptr;
  int errFd = -1;
};

Child spawn(const std::vector<std::string>& args) {
  int outPipe[2], errPipe[2];
  if (pipe(outPipe) != 0 || pipe(errPipe) != 0) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(outPipe[1], 1);
    dup2(errPipe[1], 2);
    close(outPipe[0]);
    close(errPipe[0]);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(outPipe[1]);
  close(errPipe[1]);
  return Child{pid, fdopen(outPipe[0], "r"), errPipe[0]};
}

std::string readAll(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
  return s;
}

int waitExit(pid_t pid) {
  int status = 0;
  for (int i = 0; i < 300; ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

}  // namespace

TEST(ProcessTest, PrintsPortsServesAndExitsZeroOnSigterm) {
  TempDir dir;
  Child c = spawn({PASSERELLE_BINARY, "serve", "--config", "/dev/null", "--set", "http.port=0", "--set", "https.port=0",
                   "--set", "data.dir=" + dir.path()});
  char line[512] = {0};
  ASSERT_NE(fgets(line, sizeof line, c.out), nullptr);
  std::smatch m;
  std::string l = line;
  ASSERT_TRUE(std::regex_search(l, m, std::regex("^passerelle listening: http=127\\.0\\.0\\.1:(\\d+) https=127\\.0\\.0\\.1:(\\d+)")))
      << l;
  int port = std::stoi(m[1]);
  HttpClient anonymous(port);
  anonymous.setBearer("");
  auto denied = anonymous.send("POST", "/fhir/Patient", R"({"resourceType":"Patient"})");
  EXPECT_EQ(denied.status, 401);
  EXPECT_NE(denied.header("WWW-Authenticate").find("Bearer"), std::string::npos);
  passerelle::identity::IssueOptions sys;
  sys.role = "system";
  sys.scopes = {"system/*.cruds"};
  HttpClient::setDefaultBearer(devToken(dir.path(), sys));
  HttpClient client(port);
  auto r = client.send("POST", "/fhir/Patient", R"({"resourceType":"Patient"})");
  EXPECT_EQ(r.status, 201);
  HttpClient tls(std::stoi(m[2]), true, dir.path() + "/tls/dev-server.crt");
  EXPECT_EQ(tls.get("/healthz").status, 200);
  // An in-flight request (an 8000-entry transaction) still completes when SIGTERM arrives.
  std::string bundle = R"({"resourceType":"Bundle","type":"transaction","entry":[)";
  for (int i = 0; i < 8000; ++i)
    bundle += std::string(i ? "," : "") + R"({"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}})";
  bundle += "]}";
  int inflight = 0;
  std::thread t([&] {
    try {
      HttpClient slow(port);
      if (slow.get("/healthz").status != 200) return;  // the connection is now held by a server thread
      inflight = slow.send("POST", "/fhir", bundle).status;
    } catch (const std::exception&) {
      inflight = -1;  // the connection was cut: the drain failed
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(c.pid, SIGTERM);
  t.join();
  EXPECT_EQ(waitExit(c.pid), 0);
  EXPECT_EQ(inflight, 200);
  HttpClient after(port);
  EXPECT_THROW(after.get("/healthz"), std::exception);  // and the gateway is gone
  std::string err = readAll(c.errFd);
  EXPECT_NE(err.find("gateway.stopped"), std::string::npos) << err;
  fclose(c.out);
  close(c.errFd);
}

TEST(ProcessTest, BadConfigurationStopsStartupNamingTheKey) {
  TempDir dir;
  Child c = spawn({PASSERELLE_BINARY, "serve", "--config", "/dev/null", "--set", "limits.body_bytes=lots", "--set",
                   "data.dir=" + dir.path()});
  std::string err = readAll(c.errFd);
  EXPECT_EQ(waitExit(c.pid), 2);
  EXPECT_NE(err.find("limits.body_bytes"), std::string::npos) << err;
  fclose(c.out);
  close(c.errFd);
}

TEST(ProcessTest, EnvironmentVariablesOverrideTheFile) {
  TempDir dir;
  std::string conf = dir.path() + "/p.properties";
  FILE* f = fopen(conf.c_str(), "w");
  fputs("http.port = 1\nhttps.enabled = false\n", f);
  fclose(f);
  setenv("PASSERELLE_HTTP_PORT", "0", 1);
  setenv("PASSERELLE_DATA_DIR", dir.path().c_str(), 1);
  Child c = spawn({PASSERELLE_BINARY, "serve", "--config", conf});
  unsetenv("PASSERELLE_HTTP_PORT");
  unsetenv("PASSERELLE_DATA_DIR");
  char line[512] = {0};
  ASSERT_NE(fgets(line, sizeof line, c.out), nullptr);
  EXPECT_NE(std::string(line).find("http=127.0.0.1:"), std::string::npos);
  EXPECT_EQ(std::string(line).find("https="), std::string::npos);
  kill(c.pid, SIGTERM);
  EXPECT_EQ(waitExit(c.pid), 0);
  fclose(c.out);
  close(c.errFd);
}

TEST(ProcessTest, ValidateCommandPrintsAnOutcomeAndSetsTheExitStatus) {
  TempDir dir;
  auto write = [&](const std::string& name, const std::string& text) {
    std::string p = dir.path() + "/" + name;
    FILE* f = fopen(p.c_str(), "w");
    fputs(text.c_str(), f);
    fclose(f);
    return p;
  };
  auto run = [&](std::vector<std::string> args, std::string& out) {
    Child c = spawn(args);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, c.out)) > 0) out.append(buf, n);
    int rc = waitExit(c.pid);
    fclose(c.out);
    close(c.errFd);
    return rc;
  };
  std::string good = write("good.json", R"({"resourceType":"Patient","gender":"female"})");
  std::string bad = write("bad.json", R"({"resourceType":"Patient","gender":"dragon","birthDate":"x"})");
  std::string out;
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", good}, out), 0);
  EXPECT_NE(out.find("\"information\""), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", bad}, out), 1);
  EXPECT_NE(out.find("Patient.gender"), std::string::npos) << out;
  EXPECT_NE(out.find("Patient.birthDate"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", "--profile", "http://hl7.org/fhir/StructureDefinition/Observation", good}, out), 1);
  out.clear();
  // a profile of the built-in network package, of a --package folder, and one nobody knows
  const std::string network = "https://douleur77.fr/fhir/StructureDefinition/network-patient";
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", "--fr-core", "none", "--profile", network, good}, out), 1);
  EXPECT_NE(out.find("Slice 'network-id' of Patient.identifier"), std::string::npos) << out;
  out.clear();
  std::filesystem::create_directories(dir.path() + "/pkg");
  write("pkg/sd.json", R"({"resourceType":"StructureDefinition","url":"http://example.org/p","kind":"resource",
    "type":"Patient","snapshot":{"element":[{"id":"Patient","path":"Patient","min":0,"max":"*"},
    {"id":"Patient.gender","path":"Patient.gender","min":0,"max":"1","type":[{"code":"code"}],"fixedCode":"male"}]}})");
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", "--package", dir.path() + "/pkg", "--profile", "http://example.org/p", good}, out), 1);
  EXPECT_NE(out.find("Patient.gender"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", "--profile", "http://example.org/unknown", good}, out), 2);
  out.clear();
  // The gateway's validation policy: accepted by R4, refused when asked.
  std::string extended = write("extended.json", R"({"resourceType":"Patient","extension":[{"url":"https://partner.example.fr/x",
    "valueString":"y"}],"identifier":[{"system":"https://example.org/ids","value":"1"}]})");
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", "--fr-core", "none", extended}, out), 0) << out;
  out.clear();
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", "--fr-core", "none", "--unknown-extensions", "refuse", extended}, out), 1);
  EXPECT_NE(out.find("https://partner.example.fr/x has no definition known here"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", "--fr-core", "none", "--unknown-extensions=refuse",
                 "--allowed-extension-domain", "https://partner.example.fr/", extended}, out), 0) << out;
  out.clear();
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", "--refuse-example-urls", extended}, out), 1);
  EXPECT_NE(out.find("Patient.identifier[0].system"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", "--unknown-extensions", "maybe", extended}, out), 2);
  out.clear();
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", dir.path() + "/missing.json"}, out), 2);
  // FHIR XML, detected by its first byte: read, then validated; what the XML breaks is told too.
  out.clear();
  std::string goodXml = write("good.xml", "\n  <Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"female\"/></Patient>");
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", goodXml}, out), 0) << out;
  out.clear();
  std::string badXml = write("bad.xml", "<Patient xmlns=\"http://hl7.org/fhir\"><gender value=\"dragon\"/></Patient>");
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", badXml}, out), 1);
  EXPECT_NE(out.find("Patient.gender"), std::string::npos) << out;
  out.clear();
  std::string notFhir = write("colour.xml", "<Patient xmlns=\"http://hl7.org/fhir\"><colour value=\"blue\"/></Patient>");
  EXPECT_EQ(run({PASSERELLE_BINARY, "validate", notFhir}, out), 1);
  EXPECT_NE(out.find("Unrecognized element 'colour'"), std::string::npos) << out;
}

TEST(ProcessTest, HelpForEveryCommand) {
  for (std::vector<std::string> args : {std::vector<std::string>{PASSERELLE_BINARY, "--help"},
                                        {PASSERELLE_BINARY, "serve", "--help"},
                                        {PASSERELLE_BINARY, "db", "--help"},
                                        {PASSERELLE_BINARY, "validate", "--help"},
                                        {PASSERELLE_BINARY, "convert", "--help"},
                                        {PASSERELLE_BINARY, "config", "--help"}}) {
    Child c = spawn(args);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, c.out)) > 0) out.append(buf, n);
    EXPECT_EQ(waitExit(c.pid), 0) << args[1];
    EXPECT_NE(out.find("Usage"), std::string::npos) << args[1];
    fclose(c.out);
    close(c.errFd);
  }
}

// Runs the binary to its end: its exit status, its stdout in `out` (replaced) and stderr in `err`.
int run(std::vector<std::string> args, std::string& out, std::string& err) {
  Child c = spawn(args);
  out.clear();
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, c.out)) > 0) out.append(buf, n);
  err = readAll(c.errFd);
  int rc = waitExit(c.pid);
  fclose(c.out);
  close(c.errFd);
  return rc;
}

TEST(ProcessTest, ConvertGivesEveryNetworkExampleBackFromItsFhirForm) {
  TempDir dir;
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(PASSERELLE_NETWORK_EXAMPLES)) {
    std::string path = entry.path().string();
    std::string ext = entry.path().extension().string();
    if (ext != ".json" && ext != ".xml") continue;
    std::string jsonPath = entry.path().parent_path().string() + "/" + entry.path().stem().string() + ".json";
    std::string bundle, err;
    ASSERT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "network", "--to", "fhir", "--today", "2026-11-23", path}, bundle, err), 0)
        << path << "\n" << err;
    std::string bundlePath = dir.path() + "/bundle.json";
    std::ofstream(bundlePath) << bundle;
    std::string back;
    ASSERT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "fhir", "--to", "network", bundlePath}, back, err), 0) << path << "\n" << err;
    // member order included: the document comes back as it was written
    EXPECT_EQ(nlohmann::ordered_json::parse(back), nlohmann::ordered_json::parse(slurp(jsonPath))) << path;
    ++seen;
  }
  EXPECT_EQ(seen, 28);
  // a document that breaks its schema: exit 1, an OperationOutcome naming the path on stderr
  std::string bad = dir.path() + "/bad.json";
  std::ofstream(bad) << R"({"documentType":"consent-renewal","schemaVersion":"1.0","documentId":"X1",)"
                        R"("patient":{"nir":"1"},"gp":{"rpps":"10101234567"},"renewalDate":"2026-13-01"})";
  std::string out, err;
  EXPECT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "network", "--to", "fhir", bad}, out, err), 1);
  EXPECT_NE(err.find("OperationOutcome"), std::string::npos) << err;
  EXPECT_NE(err.find("renewalDate"), std::string::npos) << err;
  EXPECT_NE(err.find("patient.nir"), std::string::npos) << err;
  EXPECT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "cda", "--to", "hl7v2", bad}, out, err), 2);
  // Not CDA: exit 1 with the reason.
  EXPECT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "cda", "--to", "fhir", bad}, out, err), 1);
  EXPECT_NE(err.find("OperationOutcome"), std::string::npos) << err;
  // Not HPRIM: exit 1 with the reason.
  EXPECT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "hprim", "--to", "fhir", bad}, out, err), 1);
  EXPECT_NE(err.find("neither HPRIM"), std::string::npos) << err;
}

TEST(ProcessTest, ConvertFhirJsonToXmlAndBack) {
  TempDir dir;
  std::string json = dir.path() + "/obs.json";
  std::ofstream(json) << R"({"resourceType":"Observation","status":"final","code":{"text":"EVA"},"valueQuantity":{"value":3.50,"unit":"cm"}})";
  std::string xml, err;
  ASSERT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "fhir", "--to", "fhir-xml", json}, xml, err), 0) << err;
  EXPECT_EQ(xml.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Observation xmlns=\"http://hl7.org/fhir\">", 0), 0u) << xml;
  EXPECT_NE(xml.find("<value value=\"3.50\"/>"), std::string::npos) << xml;
  std::string xmlPath = dir.path() + "/obs.xml";
  std::ofstream(xmlPath) << xml;
  std::string back;
  ASSERT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "fhir-xml", "--to", "fhir", xmlPath}, back, err), 0) << err;
  EXPECT_NE(back.find("\"value\":3.50"), std::string::npos) << back;
  EXPECT_EQ(nlohmann::json::parse(back), nlohmann::json::parse(readFile(json)));
  // Not FHIR XML: exit 1, an OperationOutcome on stderr.
  std::string bad = dir.path() + "/bad.xml";
  std::ofstream(bad) << "<Observation xmlns=\"http://hl7.org/fhir\"><status>final</status></Observation>";
  EXPECT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "fhir-xml", "--to", "fhir", bad}, back, err), 1);
  EXPECT_NE(err.find("no mixed content"), std::string::npos) << err;
}

TEST(ProcessTest, ConvertReadsAndWritesHprim) {
  const std::string examples = std::string(PASSERELLE_SOURCE_DIR) + "/conf/examples/hprim";
  std::string out, err;
  ASSERT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "hprim", "--to", "fhir", examples + "/bilan-durand.hpr"}, out, err), 0) << err;
  auto bundle = nlohmann::json::parse(out);
  ASSERT_EQ(bundle["entry"].size(), 4u);
  EXPECT_EQ(bundle["entry"][0]["resource"]["name"][0]["family"], "DURAND");
  EXPECT_EQ(bundle["entry"][2]["resource"]["code"]["text"], "H\xc3\xa9moglobine");  // read as ISO 8859-1
  ASSERT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "hprim", "--to", "fhir", examples + "/nfs-durand-sante.hpr"}, out, err), 0) << err;
  EXPECT_NE(out.find("\"DiagnosticReport\""), std::string::npos);
  // Back to HPRIM Net, in UTF-8: the same results.
  TempDir dir;
  std::ofstream(dir.path() + "/b.json") << bundle.dump();
  ASSERT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "fhir", "--to", "hprim", "--encoding", "UTF-8", "--recipient",
                 "10101234567 Dr MARTIN", dir.path() + "/b.json"}, out, err), 0) << err;
  EXPECT_NE(out.find("RES|H\xc3\xa9moglobine|HB|N|13.5|g/dL|13|17||F|"), std::string::npos) << out;
  EXPECT_NE(out.find("10101234567 Dr MARTIN\r\n"), std::string::npos);
  EXPECT_EQ(out.substr(out.size() - 20), "****FINFICHIER****\r\n");
  // A truncated file: exit 1, the line named.
  std::string cut = readFile(examples + "/bilan-durand.hpr");
  std::ofstream(dir.path() + "/cut.hpr") << cut.substr(0, cut.find("****FIN****"));
  EXPECT_EQ(run({PASSERELLE_BINARY, "convert", "--from", "hprim", "--to", "fhir", dir.path() + "/cut.hpr"}, out, err), 1);
  EXPECT_NE(err.find("looks truncated"), std::string::npos) << err;
}

// `db migrate` and `db reindex` on a PostgreSQL database (skipped when PostgreSQL is not installed).
TEST(ProcessTest, DbMigrateAndReindexOnPostgresql) {
  if (!PgServer::available()) GTEST_SKIP() << "PostgreSQL is not available: " << PgServer::unavailableReason();
  std::string error;
  PgServer* server = PgServer::shared(error);
  ASSERT_NE(server, nullptr) << error;
  std::string url = server->createDatabase(error);
  ASSERT_FALSE(url.empty()) << error;
  TempDir dir;
  std::string db = url.substr(url.rfind('/') + 1);
  auto command = [&](const std::string& sub) {
    return runCommand(std::string(PASSERELLE_BINARY) + " db " + sub + " --config /dev/null --set log.level=warn --set data.dir=" +
                      dir.path() + " --set storage.url=" + url);
  };
  std::string out = command("migrate");
  EXPECT_NE(out.find("is up to date"), std::string::npos) << out;
  EXPECT_EQ(server->psql(db, "SELECT MAX(version) FROM schema_migrations"), "5\n");
  out = command("migrate");  // nothing left to do
  EXPECT_NE(out.find("is up to date"), std::string::npos) << out;
  EXPECT_EQ(server->psql(db, "SELECT COUNT(*) FROM schema_migrations"), "5\n");
  out = command("reindex");
  EXPECT_NE(out.find("reindexed 0 resources"), std::string::npos) << out;
  EXPECT_NE(server->psql(db, "SELECT value FROM store_meta"), "\n");  // the search definitions' fingerprint
  // A wrong database is named, without a password.
  out = runCommand(std::string(PASSERELLE_BINARY) + " db migrate --config /dev/null --set data.dir=" + dir.path() +
                   " --set storage.url=postgresql://" + server->user() + ":hush@127.0.0.1:" + std::to_string(server->port()) + "/absent");
  EXPECT_EQ(out.rfind("FAILED", 0), 0u) << out;
  EXPECT_NE(out.find("absent"), std::string::npos) << out;
  EXPECT_EQ(out.find("hush"), std::string::npos) << out;
}
