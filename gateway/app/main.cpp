// passerelle: the command line. `serve` runs the gateway; `db migrate` prepares the database;
// `config` lists the configuration keys. Each subcommand has --help.
#include <sqlite3.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gateway/app/convert_command.h"
#include "gateway/app/store_copy.h"
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
#include "mappings/fhir/profiles/packages.h"
#include "mappings/fhir/profiles/profile_validator.h"
#include "mappings/fhir/validator.h"
#include "mappings/fhir/xml/fhir_xml.h"

#include <fstream>
#include <iterator>
#include <sstream>
#include <tuple>

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
         "  db status    the database's schema version and what it holds\n"
         "  db copy      copy every resource version and message, and the audit trail, into another database\n"
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

void dbUsage(std::ostream& out) {
  out << "Usage: passerelle db migrate|reindex|status [--config FILE] [--set key=value ...]\n"
         "       passerelle db copy --from URL --to URL [--audit-from URL] [--audit-to URL] [--checkpoints DIR]\n"
         "                          [--config FILE] [--set key=value ...]\n\n"
         "  migrate   applies the numbered migrations the database at storage.url has not seen yet\n"
         "  reindex   rebuilds the search indexes of every current resource (the gateway also\n"
         "            does it on start when the search definitions changed)\n"
         "  status    the database at storage.url, without changing it: its back-end, the schema\n"
         "            version applied and the newest this build knows, the current resources per\n"
         "            type and the versions, the messages received and the deliveries.\n"
         "            Exit status: 0 up to date, 3 migrations pending, 1 cannot connect\n"
         "  copy      copies the store at --from (sqlite:PATH or postgresql://USER@HOST:PORT/DB)\n"
         "            into the one at --to, which must hold no resource (it is migrated first):\n"
         "            every version of every resource with its history, the kept values, the\n"
         "            messages received and the deliveries, their ids kept; the search indexes are\n"
         "            rebuilt on the target (with fhir.base_url). Then both are read back: the\n"
         "            counts per type and a SHA-256 of every version are printed and compared\n"
         "            ('verified', exit 0; what differs, exit 1). Stop the gateway first.\n"
         "            Progress on stderr every 100,000 versions\n"
         "            --audit-to URL     then copies the audit trail too, into this empty one on\n"
         "                               PostgreSQL (e.g. the --to database): every record with its\n"
         "                               seq and hashes, the patient index, where a purge left the\n"
         "                               chain; then verifies it against the signed checkpoints\n"
         "            --audit-from URL   the trail copied (default: audit.url, else\n"
         "                               sqlite:<data.dir>/audit.db); a SQLite one takes the records\n"
         "                               still in its journal first\n"
         "            --checkpoints DIR  the checkpoint folder (default: audit.checkpoint_dir, else\n"
         "                               <data.dir>/audit-checkpoints); keep it and give it to the\n"
         "                               gateway with audit.url set to the target\n"
         "            Without --audit-to the trail is not copied (a SQLite one moves as a file)\n\n";
  configOptionsHelp(out);
}

// The counts of a status, one line in all and one per type, each line opened by `indent`.
void printCounts(std::ostream& out, const passerelle::store::StoreStatus& s, const std::string& indent) {
  out << indent << "resources: " << s.current << " current, " << s.deleted << " deleted, " << s.versions << " versions\n";
  for (const auto& t : s.types)
    out << indent << "  " << t.type << ": " << t.current << " current, " << t.deleted << " deleted, " << t.versions << " versions\n";
  out << indent << "messages: " << s.inbox << " received, " << s.deliveries << " deliveries\n";
}

int dbStatus(const Config& config) {
  namespace store = passerelle::store;
  std::string url = config.get("storage.url");
  store::StoreOptions options;
  options.migrate = false;  // a report: the database stays as it is
  options.readers = 2;
  auto st = store::openStore(url, options);
  if (!st.ok()) {
    std::cerr << "passerelle db status: " << store::redactedUrl(url) << ": " << st.error().message << "\n";
    return 1;
  }
  auto s = st.value()->status();
  st.value()->close();
  if (!s.ok()) {
    std::cerr << "passerelle db status: " << store::redactedUrl(url) << ": read the status: " << s.error().message << "\n";
    return 1;
  }
  std::cout << "database: " << store::redactedUrl(url) << "\nback-end: " << s->backend << "\nschema: version " << s->schemaVersion
            << ", newest known " << s->knownVersion;
  if (s->pending()) {
    int n = s->knownVersion - s->schemaVersion;
    std::cout << ": " << n << (n == 1 ? " migration" : " migrations") << " pending (run 'passerelle db migrate')\n";
  } else {
    std::cout << ": up to date\n";
  }
  printCounts(std::cout, *s, "");
  return s->pending() ? 3 : 0;
}

int dbCopy(int argc, char** argv) {
  namespace store = passerelle::store;
  std::string from, to, auditFrom, auditTo, checkpoints;
  std::vector<char*> rest(argv, argv + 3);  // the common options, for parseCommon
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    bool hasValue = i + 1 < argc;
    if (a == "--from" && hasValue) from = argv[++i];
    else if (a.rfind("--from=", 0) == 0) from = a.substr(7);
    else if (a == "--to" && hasValue) to = argv[++i];
    else if (a.rfind("--to=", 0) == 0) to = a.substr(5);
    else if (a == "--audit-from" && hasValue) auditFrom = argv[++i];
    else if (a.rfind("--audit-from=", 0) == 0) auditFrom = a.substr(13);
    else if (a == "--audit-to" && hasValue) auditTo = argv[++i];
    else if (a.rfind("--audit-to=", 0) == 0) auditTo = a.substr(11);
    else if (a == "--checkpoints" && hasValue) checkpoints = argv[++i];
    else if (a.rfind("--checkpoints=", 0) == 0) checkpoints = a.substr(14);
    else rest.push_back(argv[i]);
  }
  CommonArgs args;
  if (!parseCommon(static_cast<int>(rest.size()), rest.data(), 3, args)) return 2;
  if (args.help) {
    dbUsage(std::cout);
    return 0;
  }
  if (from.empty() || to.empty()) {
    std::cerr << "passerelle db copy: --from URL and --to URL are both needed (see passerelle db --help)\n";
    return 2;
  }
  if (from == to) {
    std::cerr << "passerelle db copy: --from and --to name the same database\n";
    return 2;
  }
  if (!auditFrom.empty() && auditTo.empty()) {
    std::cerr << "passerelle db copy: --audit-from needs --audit-to (see passerelle db --help)\n";
    return 2;
  }
  // A trail on PostgreSQL goes with a store there (the gateway refuses to start otherwise).
  if (!auditTo.empty() && to.rfind("postgres", 0) != 0) {
    std::cerr << "passerelle db copy: --audit-to a PostgreSQL trail needs --to a PostgreSQL store (the gateway runs "
                 "them together)\n";
    return 2;
  }
  Config config;
  if (int rc = loadConfig(args, config)) return rc;
  passerelle::app::configureLogging(config);
  // The audit trail's source: --audit-from, or the configuration's trail; its checkpoint folder
  // verifies the copy.
  passerelle::audit::Options trail;
  if (!auditTo.empty()) {
    const std::string dataDir = config.get("data.dir");
    trail.url = !auditFrom.empty() ? auditFrom : config.get("audit.url");
    if (trail.url.empty()) trail.url = "sqlite:" + dataDir + "/audit.db";
    trail.checkpointDir = !checkpoints.empty() ? checkpoints : config.get("audit.checkpoint_dir");
    if (trail.checkpointDir.empty()) trail.checkpointDir = dataDir + "/audit-checkpoints";
    trail.signingKey = config.get("audit.signing_key");
    trail.production = config.get("deployment") == "production";
    if (trail.url == auditTo) {
      std::cerr << "passerelle db copy: the audit trail's source and target are the same database\n";
      return 2;
    }
    // A trail that cannot take the copy is refused before anything is written.
    if (auto t = passerelle::audit::checkCopyTarget(auditTo); !t.ok()) {
      std::cerr << "passerelle db copy: audit trail " << store::redactedUrl(auditTo) << ": " << t.error().message << "\n";
      return 1;
    }
  }
  store::StoreOptions sourceOptions;
  sourceOptions.migrate = false;  // the source is read, never changed
  auto source = store::openStore(from, sourceOptions);
  if (!source.ok()) {
    std::cerr << "passerelle db copy: source " << store::redactedUrl(from) << ": " << source.error().message << "\n";
    return 1;
  }
  // A source that cannot be copied is refused before the target is created or migrated.
  if (auto s = source.value()->status(); s.ok() && s->pending()) {
    std::cerr << "passerelle db copy: source " << store::redactedUrl(from) << ": its schema is at version " << s->schemaVersion << " of "
              << s->knownVersion << ": run 'passerelle db migrate' on it first\n";
    source.value()->close();
    return 1;
  }
  auto target = store::openStore(to, store::StoreOptions{});
  if (!target.ok()) {
    std::cerr << "passerelle db copy: target " << store::redactedUrl(to) << ": " << target.error().message << "\n";
    source.value()->close();
    return 1;
  }
  passerelle::app::CopyOptions options;
  options.baseUrl = config.get("fhir.base_url");
  while (!options.baseUrl.empty() && options.baseUrl.back() == '/') options.baseUrl.pop_back();
  options.progress = [](const std::string& line) { std::cerr << "passerelle db copy: " << line << std::endl; };
  auto r = passerelle::app::copyStore(*source.value(), *target.value(), options);
  source.value()->close();
  target.value()->close();
  if (!r.ok()) {
    std::cerr << "passerelle db copy: from " << store::redactedUrl(from) << " to " << store::redactedUrl(to) << ": "
              << r.error().message << "\n";
    return 1;
  }
  std::cout << "copied " << r->versions << " versions, " << r->meta << " kept values, " << r->inbox << " received messages and "
            << r->deliveries << " deliveries; indexed " << r->indexed << " resources\n";
  for (const auto& [side, url, f] : {std::tuple{"source", from, &r->source}, std::tuple{"target", to, &r->target}}) {
    std::cout << side << " " << store::redactedUrl(url) << ":\n";
    printCounts(std::cout, f->status, "  ");
    std::cout << "  digest: " << f->digest << "\n";
  }
  if (!r->differences.empty()) {
    std::cout << "NOT verified:\n";
    for (const auto& d : r->differences) std::cout << "  " << d << "\n";
    std::cerr << "passerelle db copy: the copy differs from the source (" << r->differences.size() << " differences, listed above)\n";
    return 1;
  }
  std::cout << "verified\n";
  if (auditTo.empty()) return 0;

  std::cerr << "passerelle db copy: copying the audit trail" << std::endl;
  auto copied = passerelle::audit::copyTrail(trail, auditTo);
  if (!copied.ok()) {
    std::cerr << "passerelle db copy: audit trail from " << store::redactedUrl(trail.url) << " to " << store::redactedUrl(auditTo)
              << ": " << copied.error().message << "\n";
    return 1;
  }
  auto verified = passerelle::audit::verify(auditTo, trail.checkpointDir, "");
  if (!verified.ok) {
    std::cout << "audit trail copied: " << copied->records << " records, NOT verified\n";
    std::cerr << "passerelle db copy: the copied audit trail does not verify against the signed checkpoints in "
              << trail.checkpointDir << ": "
              << (verified.firstBadSeq > 0 ? "at record " + std::to_string(verified.firstBadSeq) + ": " : std::string())
              << verified.problem << "\n";
    return 1;
  }
  std::cout << "audit trail copied: " << copied->records << " records, last seq " << copied->lastSeq
            << ", verified against the signed checkpoints\n";
  return 0;
}

int dbCommand(int argc, char** argv) {
  if (argc < 3 || std::string(argv[2]) == "--help" || std::string(argv[2]) == "-h") {
    dbUsage(std::cout);
    return argc < 3 ? 2 : 0;
  }
  std::string sub = argv[2];
  if (sub == "copy") return dbCopy(argc, argv);
  if (sub != "migrate" && sub != "reindex" && sub != "status") {
    std::cerr << "passerelle db: unknown subcommand '" << argv[2] << "' (see passerelle db --help)\n";
    return 2;
  }
  CommonArgs args;
  if (!parseCommon(argc, argv, 3, args)) return 2;
  if (args.help) return dbCommand(2, argv);
  Config config;
  if (int rc = loadConfig(args, config)) return rc;
  passerelle::app::configureLogging(config);
  if (sub == "status") return dbStatus(config);
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

// passerelle validate [--profile URL] [--package DIR]... [policy options] [FILE|-]: prints an
// OperationOutcome; exit 1 on errors.
int validateCommand(int argc, char** argv) {
  std::string file = "-", profile, frCore = "auto", unknownExtensions = "accept";
  std::vector<std::string> packages;
  passerelle::fhir::ValidationPolicy policy;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << "Usage: passerelle validate [--profile URL] [--package DIR]... [--fr-core DIR] [FILE|-]\n\n"
                   "Validates one FHIR R4 resource, JSON or XML (a file, or standard input with - or no\n"
                   "argument), against the base specification and prints an OperationOutcome on stdout.\n"
                   "Exit status: 0 when no issue is an error, 1 when one is, 2 when the input cannot be read\n"
                   "or the profile is not known.\n\n"
                   "  --profile URL   also check against this profile (url or url|version): a base definition\n"
                   "                  (http://hl7.org/fhir/StructureDefinition/<Type>), an FR Core or network\n"
                   "                  profile, or one of a --package\n"
                   "  --package DIR   load the StructureDefinitions, ValueSets and CodeSystems of DIR (or a file);\n"
                   "                  repeatable\n"
                   "  --fr-core DIR   where FR Core is (default: found beside the executable, in ./fr-core or\n"
                   "                  ../shared/corpora/fr-core; 'none' for none)\n\n"
                   "The validation policy, as the gateway's fhir.* keys set it on writes (R4 itself refuses\n"
                   "neither):\n"
                   "  --unknown-extensions accept|refuse\n"
                   "                  refuse extensions whose definition is not known (FR Core, the network\n"
                   "                  package, the --package folders, the core extensions)\n"
                   "  --allowed-extension-domain PREFIX\n"
                   "                  still accept unknown extensions whose url starts with PREFIX; repeatable\n"
                   "  --refuse-example-urls\n"
                   "                  refuse uri, url and canonical values on example.org/.com/.net (RFC 2606)\n";
      return 0;
    }
    auto value = [&](const std::string& name, std::string& out) {
      if (a == name && i + 1 < argc) return out = argv[++i], true;
      if (a.rfind(name + "=", 0) == 0) return out = a.substr(name.size() + 1), true;
      return false;
    };
    std::string v;
    if (value("--profile", profile)) continue;
    if (value("--fr-core", frCore)) continue;
    if (value("--unknown-extensions", unknownExtensions)) {
      if (unknownExtensions != "accept" && unknownExtensions != "refuse") {
        std::cerr << "passerelle validate: --unknown-extensions is accept or refuse, not '" << unknownExtensions << "'\n";
        return 2;
      }
      policy.refuseUnknownExtensions = unknownExtensions == "refuse";
      continue;
    }
    if (value("--allowed-extension-domain", v)) {
      policy.allowedExtensionDomains.push_back(v);
      continue;
    }
    if (a == "--refuse-example-urls") {
      policy.refuseExampleUrls = true;
      continue;
    }
    if (value("--package", v)) {
      packages.push_back(v);
      continue;
    }
    if (a.size() > 1 && a[0] == '-') {
      std::cerr << "passerelle validate: unexpected option '" << a << "'\n";
      return 2;
    }
    file = a;
  }
  passerelle::fhir::profiles::ProfileRegistry registry;
  // Unknown extensions are known as such against the definitions loaded.
  if (!profile.empty() || policy.refuseUnknownExtensions) {
    std::string error;
    if (!passerelle::fhir::profiles::loadPackages(
            registry, frCore == "none" ? "" : passerelle::fhir::profiles::findFrCore(frCore), packages, error)) {
      std::cerr << "passerelle validate: " << error << "\n";
      return 2;
    }
    std::string_view url = passerelle::fhir::profiles::ProfileRegistry::splitCanonical(profile).first;
    const std::string base = "http://hl7.org/fhir/StructureDefinition/";
    if (!profile.empty() && !registry.find(profile) &&
        !(url.substr(0, base.size()) == base && passerelle::fhir::isResourceType(url.substr(base.size())))) {
      std::cerr << "passerelle validate: profile '" << profile << "' is not known (no StructureDefinition with this url"
                << " in FR Core, the network package or the --package folders)\n";
      return 2;
    }
  }
  std::string text;
  if (!passerelle::app::readCommandInput("validate", file, text)) return 2;
  // FHIR XML (its first byte is '<') is read into JSON first; its problems come first.
  std::vector<passerelle::fhir::Issue> xmlIssues;
  if (passerelle::fhir::looksLikeXml(text)) {
    std::string json;
    bool read = passerelle::fhir::fhirXmlToJson(text, json, xmlIssues);
    // Errors that skipped an element leave the rest read: it is validated too (all issues at once).
    if (!read && std::none_of(xmlIssues.begin(), xmlIssues.end(), [](const auto& i) { return i.severity == "fatal"; }) &&
        nlohmann::json::accept(json))
      read = true;
    if (!read) {
      std::cout << passerelle::fhir::operationOutcome(xmlIssues) << "\n";
      return 1;
    }
    text = std::move(json);
  }
  auto result = passerelle::fhir::Validator::instance().validate(text, {}, &policy);
  result.issues.insert(result.issues.begin(), xmlIssues.begin(), xmlIssues.end());
  passerelle::fhir::profiles::ProfileValidator profiles(registry, policy);
  if (!profile.empty()) profiles.validate(text, profile, result.issues);
  else if (policy.refuseUnknownExtensions) profiles.validateDeclared(text, result.issues);
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
