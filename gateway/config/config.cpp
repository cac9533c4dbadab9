// Configuration loading and checking.
#include "gateway/config/config.h"

#include <Poco/AutoPtr.h>
#include <Poco/Util/PropertyFileConfiguration.h>

#include <cctype>
#include <cstring>
#include <filesystem>

namespace passerelle::config {
namespace {

const char* kDefaultFile = "conf/passerelle.properties";

const Setting* find(const std::string& key) {
  for (const Setting& s : settings())
    if (key == s.key) return &s;
  return nullptr;
}

bool parseInt(const std::string& v, std::int64_t& out) {
  if (v.empty()) return false;
  std::size_t i = v[0] == '-' ? 1 : 0;
  if (i == v.size()) return false;
  std::int64_t r = 0;
  for (; i < v.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(v[i]))) return false;
    if (r > (INT64_MAX - 9) / 10) return false;
    r = r * 10 + (v[i] - '0');
  }
  out = v[0] == '-' ? -r : r;
  return true;
}

std::optional<std::string> check(const Setting& s, const std::string& raw) {
  switch (s.type) {
    case Type::kBool:
      if (raw == "true" || raw == "false") return std::nullopt;
      return std::string("'") + raw + "' is not true or false";
    case Type::kInt: {
      std::int64_t v;
      if (!parseInt(raw, v) || v < s.min || v > s.max)
        return "'" + raw + "' is not an integer from " + std::to_string(s.min) + " to " + std::to_string(s.max);
      return std::nullopt;
    }
    case Type::kChoice: {
      std::string choices = s.choices;
      std::size_t start = 0;
      while (start <= choices.size()) {
        std::size_t bar = choices.find('|', start);
        if (choices.substr(start, bar == std::string::npos ? std::string::npos : bar - start) == raw) return std::nullopt;
        if (bar == std::string::npos) break;
        start = bar + 1;
      }
      return "'" + raw + "' is not one of " + choices;
    }
    case Type::kString:
      return std::nullopt;
  }
  return std::nullopt;
}

void collectKeys(const Poco::Util::AbstractConfiguration& cfg, const std::string& prefix, std::vector<std::string>& out) {
  Poco::Util::AbstractConfiguration::Keys keys;
  cfg.keys(prefix, keys);
  if (keys.empty() && !prefix.empty()) {
    out.push_back(prefix);
    return;
  }
  for (const auto& k : keys) {
    std::string full = prefix.empty() ? k : prefix + "." + k;
    if (cfg.hasProperty(full)) out.push_back(full);
    Poco::Util::AbstractConfiguration::Keys sub;
    cfg.keys(full, sub);
    if (!sub.empty()) collectKeys(cfg, full, out);
  }
}

}  // namespace

const std::vector<Setting>& settings() {
  static const std::vector<Setting> k = {
      {"http.enabled", Type::kBool, "true", "Serve plain HTTP."},
      {"http.host", Type::kString, "127.0.0.1", "Address the HTTP listener binds (0.0.0.0 for every interface)."},
      {"http.port", Type::kInt, "8080", "HTTP port; 0 picks a free one (printed at start-up).", 0, 65535},
      {"https.enabled", Type::kBool, "true", "Serve HTTPS (TLS 1.2 or later only)."},
      {"https.host", Type::kString, "127.0.0.1", "Address the HTTPS listener binds."},
      {"https.port", Type::kInt, "8443", "HTTPS port; 0 picks a free one (printed at start-up).", 0, 65535},
      {"https.certificate", Type::kString, "",
       "PEM certificate chain. Empty: a development certificate is generated under data.dir/tls."},
      {"https.private_key", Type::kString, "", "PEM private key of https.certificate."},
      {"data.dir", Type::kString, "var", "Folder for the database, generated keys and files."},
      {"storage.url", Type::kString, "", "sqlite:PATH or postgresql://USER@HOST:PORT/DATABASE. Empty: sqlite:<data.dir>/passerelle.db."},
      {"store.readers", Type::kInt, "16", "Database connections kept for reads.", 1, 256},
      {"store.max_group", Type::kInt, "256", "Most write requests grouped into one commit.", 1, 10000},
      {"store.commit_delay_us", Type::kInt, "0",
       "Microseconds the writer waits for more requests to join a commit (0: none).", 0, 100000},
      {"limits.body_bytes", Type::kInt, "10485760", "Largest request body accepted (413 beyond).", 1024,
       1073741824},
      {"limits.json_depth", Type::kInt, "64", "Deepest JSON nesting accepted (400 beyond).", 2, 1024},
      {"server.threads", Type::kInt, "64", "Threads serving connections (one per open connection).", 2, 4096},
      {"server.queue", Type::kInt, "256", "Accepted connections waiting for a thread.", 1, 65536},
      {"server.keepalive_seconds", Type::kInt, "15", "Idle time before a kept-alive connection is closed.", 1, 3600},
      {"server.drain_seconds", Type::kInt, "10", "On SIGTERM, how long in-flight requests may take to finish.", 0,
       3600},
      {"fhir.base_url", Type::kString, "",
       "Public base of the FHIR API (https://host/fhir). Empty: taken from each request's Host."},
      {"fhir.default_count", Type::kInt, "50", "Page size of searches and histories without _count.", 1, 1000},
      {"fhir.max_count", Type::kInt, "1000", "Largest _count honoured.", 1, 10000},
      {"fhir.max_bundle_entries", Type::kInt, "10000", "Most entries in a batch or transaction.", 1, 1000000},
      {"fhir.validate_profiles", Type::kBool, "false",
       "Check every write against the known profiles of its resources' meta.profile (422 on an error; an unknown "
       "profile is not one)."},
      {"fhir.refuse_example_urls", Type::kBool, "false",
       "Refuse uri, url and canonical values on the domains reserved for documentation (example.org, example.com, "
       "example.net: RFC 2606): example data has no place in a production exchange."},
      {"fhir.unknown_extensions", Type::kChoice, "accept",
       "Extensions whose definition is not known (core, FR Core, the network's, fhir.profile_packages): accept, as R4 "
       "asks of a receiver, or refuse (422).", 0, 0, "accept|refuse"},
      {"fhir.allowed_extension_domains", Type::kString, "",
       "With fhir.unknown_extensions=refuse, url prefixes whose unknown extensions are still accepted, "
       "comma-separated (https://partner.example/fhir/)."},
      {"fhir.fr_core", Type::kString, "auto",
       "FR Core's folder (definitions/, expansions.json.gz). auto: share/passerelle/fr-core beside the executable's "
       "folder, ./fr-core or ../shared/corpora/fr-core; empty: none."},
      {"fhir.profile_packages", Type::kString, "",
       "More profile folders (StructureDefinitions with snapshots, ValueSets, CodeSystems), comma-separated; loaded "
       "after FR Core and the built-in network package."},
      {"search.timeout_ms", Type::kInt, "10000",
       "Longest a request may spend reading the database (searches, includes, histories, access lookups): past it the "
       "request answers 503 with an OperationOutcome of code timeout. A read whose client has gone is stopped too.",
       1, 3600000},
      {"network.rules_file", Type::kString, "conf/network/rules.json",
       "The network's rule settings (conf/network/README.md). Empty or absent file: the built-in defaults."},
      {"network.today", Type::kString, "", "A fixed date (YYYY-MM-DD) for demos and tests. Empty: the UTC date."},
      {"network.agreement_date", Type::kString, "2026-01-01",
       "Start of experiment year 1, for the CSB fee caps (the decree's agreement was 2001-12-19)."},
      {"network.agreement_years", Type::kInt, "3", "The agreement's term in years: no consent runs past its end.", 1, 50},
      {"network.sweep_interval_seconds", Type::kInt, "3600",
       "How often the daily work runs (consents past their term expire, referrals past due are marked); 0: never.",
       0, 86400},
      {"network.c_value_eur", Type::kString, "23.00", "Value of the key letter C in euros, for the fee rows."},
      {"deployment", Type::kChoice, "development",
       "production refuses development keys (token issue, trusted dev signing key, disabled access control).", 0, 0,
       "development|production"},
      {"auth.issuer", Type::kString, "passerelle-dev", "Expected `iss` of bearer tokens."},
      {"auth.audience", Type::kString, "passerelle", "Expected `aud` of bearer tokens."},
      {"auth.keys_dir", Type::kString, "",
       "Folder of trusted token-signing public keys, one PEM per key named <kid>.pem (rotation: add the new key, "
       "remove the old one once its tokens have expired)."},
      {"auth.trust_dev_key", Type::kBool, "true",
       "Trust the development signing key generated under <data.dir>/auth (never in production)."},
      {"auth.clock_skew_seconds", Type::kInt, "60", "Tolerance on exp and nbf.", 0, 600},
      {"auth.max_token_seconds", Type::kInt, "86400", "Longest lifetime accepted for a token (exp - iat).", 60, 31536000},
      {"auth.accounts_file", Type::kString, "conf/access/accounts.json",
       "Accounts for client certificates (connectors, system accounts): certificate subject or fingerprint -> role."},
      {"https.client_ca", Type::kString, "",
       "PEM bundle of the CAs that sign client certificates (mutual TLS). Empty: client certificates are not asked for."},
      {"access.enabled", Type::kBool, "true",
       "Enforce identity and the access policy. false is for benchmarks' baselines only and refused in production."},
      {"access.policy_file", Type::kString, "",
       "The access policy table (roles, categories, relationships). Empty: the built-in copy of conf/access/policy.json."},
      {"audit.url", Type::kString, "",
       "sqlite:PATH of the audit trail, or postgresql://... (one chain shared by every gateway using it, which must "
       "share their storage.url on PostgreSQL too; give each its own audit.checkpoint_dir). Empty: "
       "sqlite:<data.dir>/audit.db."},
      {"audit.checkpoint_dir", Type::kString, "",
       "Where signed checkpoints of the audit chain are written, apart from the database. Empty: <data.dir>/audit-checkpoints."},
      {"audit.signing_key", Type::kString, "",
       "PEM private key signing the checkpoints. Empty: one generated under the checkpoint folder (development)."},
      {"audit.checkpoint_records", Type::kInt, "10000", "A signed checkpoint at least every this many records.", 1,
       100000000},
      {"audit.checkpoint_seconds", Type::kInt, "60", "A signed checkpoint at least this often while records arrive.", 1,
       86400},
      {"audit.retention_months", Type::kInt, "12", "Records older than this are purged (the purge is itself audited).", 1,
       600},
      {"mllp.port", Type::kInt, "-1",
       "HL7 v2 over MLLP: the listener's port (0 picks a free one, printed at start-up); -1: no listener.", -1, 65535},
      {"mllp.host", Type::kString, "127.0.0.1", "Address the MLLP listener binds."},
      {"mllp.tls_certificate", Type::kString, "",
       "PEM certificate of the MLLP listener. Set: MLLP over TLS 1.2+ only (required in production, with mllp.client_ca)."},
      {"mllp.tls_private_key", Type::kString, "", "PEM private key of mllp.tls_certificate."},
      {"mllp.client_ca", Type::kString, "",
       "PEM bundle of the CAs of the partners' client certificates; in production every MLLP client must present one."},
      {"mllp.max_frame_bytes", Type::kInt, "1048576", "Largest HL7 v2 message accepted (the connection is closed beyond).", 1024,
       268435456},
      {"mllp.idle_timeout_seconds", Type::kInt, "60", "An MLLP connection silent this long is closed.", 1, 86400},
      {"mllp.max_connections", Type::kInt, "32", "MLLP connections served at once.", 1, 4096},
      {"partners.dir", Type::kString, "conf/partners",
       "Folder of the exchange partners (one JSON file each: account, recognition, endpoint, retries)."},
      {"outbox.enabled", Type::kBool, "true", "Send the outbox's deliveries to the partners (false: keep them queued)."},
      {"gp.dir", Type::kString, "conf/gp",
       "Folder of the GP software installations (one JSON file each: the GP, the exchange folder, the export format)."},
      {"gp.watch", Type::kBool, "true", "Watch the GP installations' inbox folders (false: files are only taken by a scan)."},
      {"extract.recipients", Type::kString, "conf/extracts/recipients.json",
       "The recipients of evaluation extracts (JSON: id, role, key domain, k, certificate). Empty: no extracts."},
      {"extract.indicators", Type::kString, "conf/extracts/indicators.json", "The indicators of evaluation extracts, declared as data."},
      {"extract.tariffs", Type::kString, "conf/extracts/tariffs.json",
       "Tariffs of the fee statements beyond the network's fee rows (the shared-dossier fee, its versions by date)."},
      {"extract.signing_certificate", Type::kString, "",
       "PEM certificate extracts are signed with (required in production; empty: a development one in data.dir)."},
      {"extract.signing_key", Type::kString, "", "PEM private key of extract.signing_certificate."},
      {"extract.experiment_start", Type::kString, "",
       "The first day of the experiment (YYYY-MM-DD): scheduled extracts (a recipient's \"schedule\") cover each calendar year from it (annual) and its first 18 months (interim). Empty: no scheduled extract."},
      {"extract.schedule_interval_seconds", Type::kInt, "3600", "How often the gateway looks for a scheduled extract that is due (0: never)."},
      {"cda.schema", Type::kString, "",
       "XSD that CDA documents are validated against: schemas/cda/CDA_FR.xsd for the CI-SIS (with cda.schema_components), or the HL7 CDA R2 "
       "schema (e.g. CDA_SDTC.xsd). Empty: CDA files are refused (quarantined), never taken unvalidated."},
      {"cda.schema_components", Type::kString, "",
       "Folder where the includes of cda.schema are found when they are not beside it: for schemas/cda/CDA_FR.xsd, the infrastructure/cda "
       "folder of the ANS TestContenuCDA package (the CDA schema with the French extensions)."},
      {"log.level", Type::kChoice, "info", "Least severe log level written.", 0, 0, "debug|info|warn|error|off"},
      {"log.format", Type::kChoice, "text", "Log line format on stderr.", 0, 0, "text|json"},
  };
  return k;
}

std::string envName(const std::string& key) {
  std::string out = "PASSERELLE_";
  for (char c : key) out += (c == '.' || c == '-') ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

Result<Config> Config::load(const std::string& file, const std::vector<std::string>& sets, char** env) {
  Config c;
  for (const Setting& s : settings()) {
    c.values_[s.key] = s.defaultValue;
    c.sources_[s.key] = "default";
  }
  auto apply = [&](const std::string& key, const std::string& value, const std::string& source) -> Result<void> {
    const Setting* s = find(key);
    if (!s) return makeError(ErrorCode::kInvalid, source + ": unknown configuration key '" + key + "'");
    if (auto problem = check(*s, value))
      return makeError(ErrorCode::kInvalid, source + ": " + key + ": " + *problem);
    c.values_[key] = value;
    c.sources_[key] = source;
    return {};
  };

  std::string path = file;
  if (path.empty() && std::filesystem::exists(kDefaultFile)) path = kDefaultFile;
  if (!path.empty()) {
    if (!std::filesystem::exists(path))
      return makeError(ErrorCode::kInvalid, "configuration file '" + path + "' does not exist");
    Poco::AutoPtr<Poco::Util::PropertyFileConfiguration> props;
    try {
      props = new Poco::Util::PropertyFileConfiguration(path);
    } catch (const std::exception& ex) {
      return makeError(ErrorCode::kInvalid, "configuration file '" + path + "': " + ex.what());
    }
    std::vector<std::string> keys;
    collectKeys(*props, "", keys);
    for (const auto& k : keys) {
      auto r = apply(k, props->getRawString(k), path);
      if (!r.ok()) return r.error();
    }
    c.file_ = path;
  }
  if (env) {
    for (const Setting& s : settings()) {
      std::string name = envName(s.key) + "=";
      for (char** e = env; *e; ++e) {
        if (std::strncmp(*e, name.c_str(), name.size()) == 0) {
          auto r = apply(s.key, *e + name.size(), "environment " + name.substr(0, name.size() - 1));
          if (!r.ok()) return r.error();
        }
      }
    }
  }
  for (const auto& kv : sets) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return makeError(ErrorCode::kInvalid, "--set '" + kv + "': expected key=value");
    auto r = apply(kv.substr(0, eq), kv.substr(eq + 1), "--set");
    if (!r.ok()) return r.error();
  }
  if (c.values_["storage.url"].empty()) c.values_["storage.url"] = "sqlite:" + c.values_["data.dir"] + "/passerelle.db";
  if (c.getBool("https.enabled") && c.get("https.certificate").empty() != c.get("https.private_key").empty())
    return makeError(ErrorCode::kInvalid, "https.certificate and https.private_key: set both, or neither");
  return c;
}

const std::string& Config::get(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    static const std::string empty;
    return empty;
  }
  return it->second;
}

std::int64_t Config::getInt(const std::string& key) const {
  std::int64_t v = 0;
  parseInt(get(key), v);
  return v;
}

bool Config::getBool(const std::string& key) const { return get(key) == "true"; }

const std::string& Config::source(const std::string& key) const {
  auto it = sources_.find(key);
  static const std::string none = "unknown";
  return it == sources_.end() ? none : it->second;
}

}  // namespace passerelle::config
