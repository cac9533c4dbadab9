// passerelle: the command line. `serve` runs the gateway; `db migrate` prepares the database;
// `config` lists the configuration keys. Each subcommand has --help.
#include <sqlite3.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "gateway/app/convert_command.h"
#include "gateway/audit/audit_log.h"
#include "gateway/identity/token_command.h"
#include "gateway/app/gateway.h"
#include "gateway/exchange/outbox_admin.h"
#include "gateway/extract/extract_service.h"
#include "gateway/common/log.h"
#include "gateway/config/config.h"
#include "gateway/search/reindex.h"
#include "gateway/store/resource_store.h"
#include "mappings/fhir/json_reader.h"
#include "mappings/fhir/operation_outcome.h"
#include "mappings/fhir/resource_types.h"
#include "mappings/fhir/validator.h"

#include <fstream>
#include <iterator>
#include <sstream>

extern char** environ;

namespace {

using passerelle::config::Config;

const char* kVersion = "0.1.0";

void usage(std::ostream& out) {
  out << "passerelle " << kVersion << ": interoperability gateway for health-data exchange (FHIR R4)\n\n"
         "Usage: passerelle <command> [options]\n\n"
         "Commands:\n"
         "  serve        run the gateway (FHIR REST at /fhir, /healthz, /metrics)\n"
         "  validate     check FHIR R4 JSON against the base specification\n"
         "  convert      the network's documents and HL7 v2 to FHIR R4 and back, offline\n"
         "  db migrate   create or upgrade the database, then exit\n"
         "  db reindex   rebuild the search indexes, then exit\n"
         "  token issue  mint a development token (--role ROLE [--practitioner rpps:N | --patient ID])\n"
         "  token client-cert  a development client certificate for mutual TLS\n"
         "  audit verify check the audit trail's hash chain and signed checkpoints\n"
         "  audit purge  remove records past the retention period (itself audited)\n"
         "  outbox       the deliveries to partners: list, dead-letters, retry ID\n"
         "  inbox        the messages received from partners: list; GP files held for review: attach, reject\n"
         "  extract      evaluation extracts for the caisse and the evaluator: run, list, rotate-key, open\n"
         "  config       list every configuration key with its default and meaning\n"
         "  version      print the version\n\n"
         "Run 'passerelle <command> --help' for a command's options.\n";
}

void configOptionsHelp(std::ostream& out) {
  out << "  --config FILE       configuration file (default: conf/passerelle.properties if present)\n"
         "  --set key=value     override one key (repeatable); also PASSERELLE_<KEY> variables\n"
         "                      (dots become underscores: PASSERELLE_HTTP_PORT=0)\n";
}

struct CommonArgs {
  std::string configFile;
  std::vector<std::string> sets;
  bool help = false;
};

// Parses --config/--set/--help; returns false (after printing why) on anything else.
bool parseCommon(int argc, char** argv, int first, CommonArgs& out) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      out.help = true;
    } else if (a == "--config" && i + 1 < argc) {
      out.configFile = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      out.configFile = a.substr(9);
    } else if (a == "--set" && i + 1 < argc) {
      out.sets.push_back(argv[++i]);
    } else if (a.rfind("--set=", 0) == 0) {
      out.sets.push_back(a.substr(6));
    } else {
      std::cerr << "passerelle: unexpected argument '" << a << "' (see --help)\n";
      return false;
    }
  }
  return true;
}

int loadConfig(const CommonArgs& args, Config& out) {
  auto c = Config::load(args.configFile, args.sets, environ);
  if (!c.ok()) {
    std::cerr << "passerelle: configuration error: " << c.error().message << "\n";
    return 2;
  }
  out = std::move(c.value());
  return 0;
}

int serve(int argc, char** argv) {
  CommonArgs args;
  if (!parseCommon(argc, argv, 2, args)) return 2;
  if (args.help) {
    std::cout << "Usage: passerelle serve [--config FILE] [--set key=value ...]\n\n"
                 "Runs the gateway until SIGTERM or SIGINT, then drains in-flight requests and exits 0.\n"
                 "Prints one line 'passerelle listening: http=HOST:PORT https=HOST:PORT [mllp=HOST:PORT]' once ready.\n\n";
    configOptionsHelp(std::cout);
    return 0;
  }
  Config config;
  if (int rc = loadConfig(args, config)) return rc;
  passerelle::app::configureLogging(config);

  // Block the termination signals in every thread; this one waits for them below.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGQUIT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto g = passerelle::app::Gateway::start(config);
  if (!g.ok()) {
    std::cerr << "passerelle: cannot start: " << g.error().message << "\n";
    return 1;
  }
  auto& gateway = *g.value();
  std::string line = "passerelle listening:";
  if (gateway.httpPort()) line += " http=" + config.get("http.host") + ":" + std::to_string(gateway.httpPort());
  if (gateway.httpsPort()) line += " https=" + config.get("https.host") + ":" + std::to_string(gateway.httpsPort());
  if (gateway.mllpPort()) line += " mllp=" + config.get("mllp.host") + ":" + std::to_string(gateway.mllpPort());
  std::cout << line << std::endl;
  passerelle::log::info("gateway.started", {{"version", kVersion},
                                            {"config", config.file().empty() ? "(defaults)" : config.file()},
                                            {"storage", passerelle::store::redactedUrl(config.get("storage.url"))},
                                            {"http_port", std::to_string(gateway.httpPort())},
                                            {"https_port", std::to_string(gateway.httpsPort())}, {"mllp_port", std::to_string(gateway.mllpPort())}});
  int sig = 0;
  sigwait(&set, &sig);
  passerelle::log::info("gateway.stopping", {{"signal", strsignal(sig)}});
  gateway.stop();
  passerelle::log::info("gateway.stopped");
  std::fflush(nullptr);
  _exit(0);  // threads blocked on sockets past the drain deadline must not delay the exit
}

int dbCommand(int argc, char** argv) {
  if (argc < 3 || std::string(argv[2]) == "--help" || std::string(argv[2]) == "-h") {
    std::cout << "Usage: passerelle db migrate|reindex [--config FILE] [--set key=value ...]\n\n"
                 "  migrate   applies the numbered migrations the database at storage.url has not seen yet\n"
                 "  reindex   rebuilds the search indexes of every current resource (the gateway also\n"
                 "            does it on start when the search definitions changed)\n\n";
    configOptionsHelp(std::cout);
    return argc < 3 ? 2 : 0;
  }
  std::string sub = argv[2];
  if (sub != "migrate" && sub != "reindex") {
    std::cerr << "passerelle db: unknown subcommand '" << argv[2] << "' (see passerelle db --help)\n";
    return 2;
  }
  CommonArgs args;
  if (!parseCommon(argc, argv, 3, args)) return 2;
  if (args.help) return dbCommand(2, argv);
  Config config;
  if (int rc = loadConfig(args, config)) return rc;
  passerelle::app::configureLogging(config);
  auto st = passerelle::store::openStore(config.get("storage.url"), passerelle::store::StoreOptions{});
  if (!st.ok()) {
    std::cerr << "passerelle: storage.url: " << st.error().message << "\n";
    return 1;
  }
  if (sub == "reindex") {
    std::string baseUrl = config.get("fhir.base_url");
    while (!baseUrl.empty() && baseUrl.back() == '/') baseUrl.pop_back();
    auto r = passerelle::search::reindexIfNeeded(*st.value(), baseUrl, true);
    st.value()->close();
    if (!r.ok()) {
      std::cerr << "passerelle: reindex: " << r.error().message << "\n";
      return 1;
    }
    std::cout << "reindexed " << r->resources << " resources (search definitions " << r->fingerprint << ")\n";
    return 0;
  }
  st.value()->close();
  std::cout << "database at " << passerelle::store::redactedUrl(config.get("storage.url")) << " is up to date\n";
  return 0;
}

// passerelle validate [--profile URL] [FILE|-]: prints an OperationOutcome; exit 1 on errors.
int validateCommand(int argc, char** argv) {
  std::string file = "-", profile;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << "Usage: passerelle validate [--profile URL] [FILE|-]\n\n"
                   "Validates one FHIR R4 JSON resource (a file, or standard input with - or no argument)\n"
                   "against the base specification and prints an OperationOutcome on stdout.\n"
                   "Exit status: 0 when no issue is an error, 1 when one is, 2 when the input cannot be read.\n\n"
                   "  --profile URL   the profile to check against; only the base definitions\n"
                   "                  (http://hl7.org/fhir/StructureDefinition/<Type>) are known so far\n";
      return 0;
    }
    if (a == "--profile" && i + 1 < argc) profile = argv[++i];
    else if (a.rfind("--profile=", 0) == 0) profile = a.substr(10);
    else if (a.size() > 1 && a[0] == '-') {
      std::cerr << "passerelle validate: unexpected option '" << a << "'\n";
      return 2;
    } else file = a;
  }
  std::string expected;
  if (!profile.empty()) {
    const std::string base = "http://hl7.org/fhir/StructureDefinition/";
    if (profile.rfind(base, 0) != 0 || !passerelle::fhir::isResourceType(profile.substr(base.size()))) {
      std::cerr << "passerelle validate: profile '" << profile
                << "' is not known (only the base R4 resource definitions are)\n";
      return 2;
    }
    expected = profile.substr(base.size());
  }
  std::string text;
  if (!passerelle::app::readCommandInput("validate", file, text)) return 2;
  auto result = passerelle::fhir::Validator::instance().validate(text, expected);
  if (result.issues.empty())
    result.issues.push_back({"information", "informational", "No issues: the resource is valid FHIR R4", ""});
  std::cout << passerelle::fhir::operationOutcome(result.issues) << "\n";
  return result.hasErrors() ? 1 : 0;
}

int configCommand(int argc, char** argv) {
  if (argc > 2 && (std::string(argv[2]) == "--help" || std::string(argv[2]) == "-h")) {
    std::cout << "Usage: passerelle config\n\nLists every configuration key, its default and its environment variable.\n";
    return 0;
  }
  for (const auto& s : passerelle::config::settings()) {
    std::cout << s.key << " = " << s.defaultValue << "\n    " << s.help << "\n    env: "
              << passerelle::config::envName(s.key) << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // SQLite counts every allocation under one global mutex unless told not to before its first
  // use; nothing here reads those counters.
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    usage(std::cout);
    return 0;
  }
  if (cmd == "version" || cmd == "--version") {
    std::cout << "passerelle " << kVersion << "\n";
    return 0;
  }
  if (cmd == "serve") return serve(argc, argv);
  if (cmd == "db") return dbCommand(argc, argv);
  if (cmd == "validate") return validateCommand(argc, argv);
  if (cmd == "convert") return passerelle::app::convertCommand(argc, argv);
  if (cmd == "config") return configCommand(argc, argv);
  if (cmd == "token") return passerelle::identity::tokenCommand(argc, argv);
  if (cmd == "audit") return passerelle::audit::auditCommand(argc, argv);
  if (cmd == "outbox") return passerelle::exchange::outboxCommand(argc, argv);
  if (cmd == "inbox") return passerelle::exchange::inboxCommand(argc, argv);
  if (cmd == "extract") return passerelle::extract::extractCommand(argc, argv);
  std::cerr << "passerelle: unknown command '" << cmd << "'\n\n";
  usage(std::cerr);
  return 2;
}
