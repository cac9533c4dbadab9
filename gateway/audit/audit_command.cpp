// `passerelle audit verify|purge`: checks the audit trail against its signed checkpoints, or
// removes the records past the retention period (the purge is itself recorded).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <string>
#include <vector>

#include "gateway/audit/audit_log.h"
#include "gateway/config/config.h"

extern char** environ;

namespace passerelle::audit {

namespace {

void usage(std::ostream& out) {
  out << "Usage: passerelle audit verify [--config FILE] [--set key=value ...] [--db URL] [--checkpoints DIR]\n"
         "                               [--public-key PEM]\n"
         "       passerelle audit purge [--before YYYY-MM-DD] [--config FILE] [--set key=value ...]\n\n"
         "  verify   checks every record of the audit trail (audit.url) against the chain of hashes and the\n"
         "           signed checkpoints (audit.checkpoint_dir); exit 0 when intact, 1 at the first problem\n"
         "           --db URL           another database (e.g. a backup copy); sqlite:PATH, a path or\n"
         "                              postgresql://... (then give the checkpoint folder of the gateway\n"
         "                              that purged last, if any)\n"
         "           --checkpoints DIR  another checkpoint folder\n"
         "           --public-key PEM   the public key(s) to trust (default: the copy in the checkpoint\n"
         "                              folder; pass one kept elsewhere for a real assurance)\n"
         "  purge    removes the records older than the cutoff (default: audit.retention_months ago) and\n"
         "           records the purge; the chain stays verifiable. Stop the gateway first.\n"
         "           --before DATE      the cutoff (UTC midnight)\n\n"
         "  --config FILE       configuration file (default: conf/passerelle.properties if present)\n"
         "  --set key=value     override one key (repeatable); also PASSERELLE_<KEY> variables\n";
}

bool parseDate(const std::string& s, std::int64_t& ms) {
  int y = 0, m = 0, d = 0;
  char tail = 0;
  if (s.size() != 10 || std::sscanf(s.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || m < 1 || m > 12 || d < 1 ||
      d > 31)
    return false;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = d;
  ms = static_cast<std::int64_t>(timegm(&tm)) * 1000;
  return true;
}

// Midnight UTC `months` months before today.
std::int64_t monthsAgo(int months) {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  int total = tm.tm_year * 12 + tm.tm_mon - months;
  int year = total / 12, month = total % 12;
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int y = year + 1900;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  int maxDay = kDays[month] + (month == 1 && leap ? 1 : 0);
  std::tm cut{};
  cut.tm_year = year;
  cut.tm_mon = month;
  cut.tm_mday = tm.tm_mday > maxDay ? maxDay : tm.tm_mday;
  return static_cast<std::int64_t>(timegm(&cut)) * 1000;
}

std::string dateOf(std::int64_t ms) {
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
  return buf;
}

std::string rate(double perSecond) {
  char buf[32];
  if (perSecond >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", perSecond / 1e6);
  else if (perSecond >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", perSecond / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", perSecond);
  return buf;
}

}  // namespace

int auditCommand(int argc, char** argv) {
  if (argc < 3) {
    usage(std::cerr);
    return 2;
  }
  std::string sub = argv[2];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    usage(std::cout);
    return 0;
  }
  if (sub != "verify" && sub != "purge") {
    std::cerr << "passerelle audit: unknown subcommand '" << sub << "' (see passerelle audit --help)\n";
    return 2;
  }
  std::string configFile, dbArg, checkpointsArg, publicKey, before;
  std::vector<std::string> sets;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    bool hasValue = i + 1 < argc;
    if (a == "--help" || a == "-h") {
      usage(std::cout);
      return 0;
    } else if (a == "--config" && hasValue) {
      configFile = argv[++i];
    } else if (a == "--set" && hasValue) {
      sets.push_back(argv[++i]);
    } else if (a == "--db" && hasValue && sub == "verify") {
      dbArg = argv[++i];
    } else if (a == "--checkpoints" && hasValue && sub == "verify") {
      checkpointsArg = argv[++i];
    } else if (a == "--public-key" && hasValue && sub == "verify") {
      publicKey = argv[++i];
    } else if (a == "--before" && hasValue && sub == "purge") {
      before = argv[++i];
    } else {
      std::cerr << "passerelle audit " << sub << ": unexpected argument '" << a << "' (see --help)\n";
      return 2;
    }
  }
  auto config = config::Config::load(configFile, sets, environ);
  if (!config.ok()) {
    std::cerr << "passerelle: configuration error: " << config.error().message << "\n";
    return 2;
  }
  const std::string dataDir = config->get("data.dir");
  std::string url = config->get("audit.url");
  if (url.empty()) url = "sqlite:" + dataDir + "/audit.db";
  std::string checkpointDir = config->get("audit.checkpoint_dir");
  if (checkpointDir.empty()) checkpointDir = dataDir + "/audit-checkpoints";

  if (sub == "verify") {
    if (!dbArg.empty()) url = dbArg;
    if (!checkpointsArg.empty()) checkpointDir = checkpointsArg;
    VerifyReport r = verify(url, checkpointDir, publicKey);
    if (!r.ok) {
      if (r.firstBadSeq > 0)
        std::cout << "audit trail BROKEN at record " << r.firstBadSeq << ": " << r.problem << "\n";
      else
        std::cout << "audit trail BROKEN: " << r.problem << "\n";
      return 1;
    }
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.1f", r.seconds);
    std::cout << "audit trail verified: " << r.records << " records, " << r.checkpoints << " checkpoints, " << secs
              << " s (" << rate(r.seconds > 0 ? static_cast<double>(r.records) / r.seconds : 0) << " records/s)\n";
    return 0;
  }

  std::int64_t cutoff = 0;
  if (!before.empty()) {
    if (!parseDate(before, cutoff)) {
      std::cerr << "passerelle audit purge: --before '" << before << "': expected YYYY-MM-DD\n";
      return 2;
    }
  } else {
    cutoff = monthsAgo(static_cast<int>(config->getInt("audit.retention_months")));
  }
  Options options;
  options.url = url;
  options.checkpointDir = checkpointDir;
  options.signingKey = config->get("audit.signing_key");
  options.checkpointRecords = config->getInt("audit.checkpoint_records");
  options.checkpointSeconds = static_cast<int>(config->getInt("audit.checkpoint_seconds"));
  options.production = config->get("deployment") == "production";
  auto log = AuditLog::open(options);
  if (!log.ok()) {
    std::cerr << "passerelle audit purge: cannot open the audit trail: " << log.error().message << "\n";
    return 1;
  }
  Record by;
  const char* user = std::getenv("USER");
  by.subject = "passerelle audit purge";
  by.account = "cli:" + std::string(user && *user ? user : std::to_string(::getuid()));
  by.role = "admin";
  by.reason = before.empty() ? "retention" : "requested";
  auto r = log.value()->purge(cutoff, by);
  std::int64_t purgeSeq = log.value()->lastSeq();
  log.value()->close();
  if (!r.ok()) {
    std::cerr << "passerelle audit purge: " << r.error().message << "\n";
    return 1;
  }
  if (r->removed == 0)
    std::cout << "no record older than " << dateOf(cutoff) << "; the purge is recorded as record " << purgeSeq << "\n";
  else
    std::cout << "purged " << r->removed << " records (up to seq " << r->upToSeq << ") older than " << dateOf(cutoff)
              << "; the purge is recorded as record " << purgeSeq << "\n";
  return 0;
}

}  // namespace passerelle::audit
