// `passerelle extract ...`: run, list, send and rotate-key ask the running gateway (its admin API, with a
// system account's token) so that the extract is computed through the same access decisions and
// audit as everything else; open works offline, on the recipient's side.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "connectors/http/rest_client.h"
#include "connectors/secureupload/secure_package.h"
#include "gateway/exchange/outbox_admin.h"
#include "gateway/extract/extract_service.h"

namespace passerelle::extract {

namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kUsage =
    "Usage: passerelle extract run --recipient ID --from YYYY-MM-DD --to YYYY-MM-DD [--kind KIND] [--url URL] [--token T]\n"
    "       passerelle extract scheduled [--url URL] [--token T]\n"
    "       passerelle extract baseline --recipient ID --file CSV [--url URL] [--token T]\n"
    "       passerelle extract list [--url URL] [--token T]\n"
    "       passerelle extract send ID [--url URL] [--token T]\n"
    "       passerelle extract rotate-key DOMAIN [--url URL] [--token T]\n"
    "       passerelle extract open PACKAGE --certificate PEM --key PEM --signer PEM [--out DIR]\n"
    "       (run, list and rotate-key also take [--config FILE] [--set key=value ...])\n\n"
    "  run         computes the extract of a recipient (conf/extracts/recipients.json) for a period:\n"
    "              the indicators (aggregates, small cells masked), and for the caisse's medical\n"
    "              service or the evaluator the pseudonymised rows; zipped, signed, encrypted for the\n"
    "              recipient's certificate, written in data.dir/extracts/<id>/; prints its manifest.\n"
    "              KIND: on-demand (default), annual, interim, or final (evaluable patients only).\n"
    "              On a terminal, what it is reading is shown while it runs\n"
    "  scheduled   runs the scheduled extracts that are due (extract.experiment_start, the\n"
    "              recipients' \"schedule\") and queues their transfer\n"
    "  baseline    imports the caisse's baseline file (the 6 months before each inclusion, under the\n"
    "              pseudonyms of the recipient's key domain): all rows or none\n"
    "  list        the extracts written, newest first (their manifests)\n"
    "  send        queues the transfer of an extract to its recipient (HTTPS with mutual TLS, retried;\n"
    "              the receipt kept beside the package; `passerelle outbox list --destination\n"
    "              extract:<recipient>` shows it)\n"
    "  rotate-key  a new pseudonymisation key version for a recipient domain (earlier ones kept)\n"
    "  open        on the recipient's side: decrypts PACKAGE with the recipient's certificate and key,\n"
    "              verifies the signature against the signer's certificate, checks every file\n"
    "              against the manifest's SHA-256, and writes the files into --out (default: .)\n"
    "run, list, send and rotate-key are done by the running gateway (--url, default http://http.host:http.port)\n"
    "with a system account's token (--token or PASSERELLE_TOKEN; `passerelle token issue --role system`).\n";

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int openPackage(const std::vector<std::string>& args, const std::map<std::string, std::string>& opts) {
  if (args.size() != 2) {
    std::cerr << "passerelle extract open: one PACKAGE expected\n";
    return 2;
  }
  for (const char* o : {"--certificate", "--key", "--signer"})
    if (!opts.count(o)) {
      std::cerr << "passerelle extract open: " << o << " is required\n";
      return 2;
    }
  std::string der = readFile(args[1]);
  if (der.empty()) {
    std::cerr << "passerelle extract open: " << args[1] << " cannot be read\n";
    return 2;
  }
  secureupload::Credentials me{readFile(opts.at("--certificate")), readFile(opts.at("--key"))};
  std::string archive, signer, error;
  if (!secureupload::open(der, me, {readFile(opts.at("--signer"))}, archive, signer, error)) {
    std::cerr << "passerelle extract open: " << error << "\n";
    return 1;
  }
  std::vector<secureupload::Entry> files;
  if (!secureupload::unzip(archive, files, error)) {
    std::cerr << "passerelle extract open: the archive: " << error << "\n";
    return 1;
  }
  Json manifest;
  for (const auto& f : files)
    if (f.name == "manifest.json") manifest = Json::parse(f.bytes, nullptr, false);
  if (!manifest.is_object()) {
    std::cerr << "passerelle extract open: the package has no readable manifest.json\n";
    return 1;
  }
  // Every file the manifest lists, with its hash; nothing else.
  std::map<std::string, std::string> expected;
  for (const auto& f : manifest.value("files", Json::array())) expected[f.value("name", "")] = f.value("sha256", "");
  for (const auto& f : files) {
    if (f.name == "manifest.json") continue;
    auto it = expected.find(f.name);
    if (it == expected.end()) {
      std::cerr << "passerelle extract open: " << f.name << " is not in the manifest\n";
      return 1;
    }
    if (secureupload::sha256Hex(f.bytes) != it->second) {
      std::cerr << "passerelle extract open: " << f.name << " does not match the manifest's SHA-256\n";
      return 1;
    }
    expected.erase(it);
  }
  if (!expected.empty()) {
    std::cerr << "passerelle extract open: " << expected.begin()->first << " is in the manifest but not in the package\n";
    return 1;
  }
  fs::path out = opts.count("--out") ? opts.at("--out") : ".";
  std::error_code ec;
  fs::create_directories(out, ec);
  for (const auto& f : files) {
    std::ofstream o(out / f.name, std::ios::binary);
    o << f.bytes;
    if (!o) {
      std::cerr << "passerelle extract open: cannot write " << (out / f.name).string() << "\n";
      return 1;
    }
  }
  std::cout << "signed by " << signer << "; " << files.size() << " files checked against the manifest, written to " << out.string() << "\n";
  return 0;
}

// Runs `call` (a long request) and, when stderr is a terminal, shows what the gateway is doing
// (GET /extracts/progress) on one line until it answers.
http_client::Response withProgress(const http_client::Options& o, const std::function<http_client::Response()>& call) {
  if (!isatty(STDERR_FILENO)) return call();
  std::atomic<bool> done{false};
  std::thread watcher([&] {
    http_client::Options po = o;
    po.timeoutMs = 5000;
    http_client::RestClient progress(po);
    std::size_t width = 0;
    while (!done) {
      for (int i = 0; i < 10 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (done) break;
      auto p = progress.get("/extracts/progress");
      Json j = Json::parse(p.body, nullptr, false);
      if (!j.is_object() || !j.value("running", false)) continue;
      std::string line = "  " + j.value("phase", std::string("...")) + ": " + std::to_string(j.value("resources", 0)) + " resources read, " +
                         std::to_string(j.value("elapsedMs", 0) / 1000) + " s";
      width = std::max(width, line.size());
      std::cerr << "\r" << line << std::string(width - line.size(), ' ') << std::flush;
    }
    if (width) std::cerr << "\r" << std::string(width, ' ') << "\r" << std::flush;
  });
  auto r = call();
  done = true;
  watcher.join();
  return r;
}

}  // namespace

int extractCommand(int argc, char** argv) {
  std::vector<std::string> args, sets;
  std::map<std::string, std::string> opts;
  std::string configFile;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "--config" && i + 1 < argc) configFile = argv[++i];
    else if (a == "--set" && i + 1 < argc) sets.push_back(argv[++i]);
    else if (a.rfind("--", 0) == 0 && i + 1 < argc) opts[a] = argv[++i];
    else if (a.rfind("--", 0) == 0) {
      std::cerr << "passerelle extract: " << a << " needs a value\n";
      return 2;
    } else args.push_back(a);
  }
  if (args.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  if (args[0] == "open") return openPackage(args, opts);
  if (args[0] != "run" && args[0] != "list" && args[0] != "send" && args[0] != "rotate-key" && args[0] != "scheduled" && args[0] != "baseline") {
    std::cerr << "passerelle extract: unknown subcommand '" << args[0] << "' (see --help)\n";
    return 2;
  }
  http_client::Options o;
  if (!exchange::adminClientOptions("passerelle extract", configFile, sets, opts.count("--url") ? opts["--url"] : "",
                                    opts.count("--token") ? opts["--token"] : "", o))
    return 2;
  o.timeoutMs = 30 * 60 * 1000;  // an annual extract of a large cohort takes minutes
  http_client::RestClient client(o);
  http_client::Response r;
  if (args[0] == "run") {
    for (const char* k : {"--recipient", "--from", "--to"})
      if (!opts.count(k)) {
        std::cerr << "passerelle extract run: " << k << " is required\n";
        return 2;
      }
    Json body = {{"recipient", opts["--recipient"]}, {"from", opts["--from"]}, {"to", opts["--to"]}, {"kind", opts.count("--kind") ? opts["--kind"] : "on-demand"}};
    r = withProgress(o, [&] { return client.post("/extracts", body.dump(), "application/json"); });
  } else if (args[0] == "scheduled") {
    r = withProgress(o, [&] { return client.post("/extracts/scheduled", "{}", "application/json"); });
  } else if (args[0] == "baseline") {
    for (const char* k : {"--recipient", "--file"})
      if (!opts.count(k)) {
        std::cerr << "passerelle extract baseline: " << k << " is required\n";
        return 2;
      }
    if (!fs::exists(opts["--file"])) {
      std::cerr << "passerelle extract baseline: " << opts["--file"] << " cannot be read\n";
      return 2;
    }
    r = client.post("/extracts/baselines/" + opts["--recipient"], readFile(opts["--file"]), "text/csv");
  } else if (args[0] == "list") {
    r = client.get("/extracts");
  } else if (args[0] == "send") {
    if (args.size() != 2) {
      std::cerr << "passerelle extract send: one extract ID expected\n";
      return 2;
    }
    r = client.post("/extracts/" + args[1] + "/send", "{}", "application/json");
  } else {
    if (args.size() != 2) {
      std::cerr << "passerelle extract rotate-key: one DOMAIN expected\n";
      return 2;
    }
    r = client.post("/extracts/keys/" + args[1] + "/rotate", "{}", "application/json");
  }
  if (r.status == 0) {
    std::cerr << "passerelle extract: " << o.baseUrl << ": " << r.error << "\n";
    return 1;
  }
  if (r.status != 200 && r.status != 202) {
    std::cerr << r.body << "\n";
    return 1;
  }
  Json b = Json::parse(r.body, nullptr, false);
  std::cout << (b.is_discarded() ? r.body : b.dump(2)) << "\n";
  return 0;
}

}  // namespace passerelle::extract
