// `passerelle token`: a bearer token signed with the development key, or a client certificate
// signed by the development client CA, for tests and demos. Both use key material generated under
// data.dir and are refused when deployment=production.
#include "gateway/identity/token_command.h"

#include <algorithm>
#include <cctype>
#include <iostream>
#include <string>
#include <vector>

#include "gateway/config/config.h"
#include "gateway/identity/identity.h"

extern char** environ;

namespace passerelle::identity {
namespace {

constexpr std::int64_t kMaxTtlSeconds = 31536000;

void usage(std::ostream& out) {
  out << "Usage: passerelle token issue --role ROLE [--practitioner rpps:NNN | --patient ID]\n"
         "                              [--scope \"SCOPE ...\"]... [--purpose CODE] [--subject SUB]\n"
         "                              [--ttl SECONDS] [--config FILE] [--set key=value ...]\n"
         "       passerelle token client-cert --name NAME --out DIR [--config FILE] [--set key=value ...]\n\n"
         "issue        prints a bearer token signed ES256 with the development key\n"
         "             (<data.dir>/auth/dev-signing.key, created if needed), for auth.issuer and\n"
         "             auth.audience; the gateway trusts it while auth.trust_dev_key is true.\n"
         "  --role ROLE             a role of the access policy (required), e.g. gp, patient, connector\n"
         "  --practitioner ID       the professional: rpps: + 11 digits or adeli: + 9 characters\n"
         "  --patient ID            the Patient id (role patient); not with --practitioner\n"
         "  --scope SCOPES          SMART scopes, space-separated, repeatable; default patient/*.rs for\n"
         "                          the role patient, user/*.cruds otherwise\n"
         "  --purpose CODE          purpose of use (TREAT, ETREAT, HPAYMT, HOPERAT, ...); default none\n"
         "  --subject SUB           the token's sub; default the practitioner, the patient or the role\n"
         "  --ttl SECONDS           lifetime (default 3600, at most auth.max_token_seconds)\n\n"
         "client-cert  writes DIR/NAME.crt and DIR/NAME.key, a client certificate (CN=NAME,\n"
         "             O=Douleur 77 (development)) signed by the development client CA under\n"
         "             <data.dir>/auth/client-pki (created if needed; set https.client_ca to its ca.crt),\n"
         "             and prints its SHA-256 fingerprint for auth.accounts_file.\n\n"
         "  --config FILE       configuration file (default: conf/passerelle.properties if present)\n"
         "  --set key=value     override one key (repeatable); also PASSERELLE_<KEY> variables\n\n"
         "Both are refused when deployment=production. Exit status: 0 done, 1 refused or failed,\n"
         "2 bad usage.\n";
}

int badUsage(const std::string& why) {
  std::cerr << "passerelle token: " << why << "\n\n";
  usage(std::cerr);
  return 2;
}

bool isCode(const std::string& s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
         });
}

bool parseTtl(const std::string& text, std::int64_t& out) {
  if (text.empty() || text.size() > 12 || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  out = std::stoll(text);
  return out >= 1 && out <= kMaxTtlSeconds;
}

struct Args {
  std::string role, practitioner, patient, purpose, subject, ttl = "3600", name, out, configFile;
  std::vector<std::string> scopes, sets;
  bool help = false;
};

// Options as "--name value" or "--name=value". False, with the message in `why`, on anything else.
bool parseArgs(int argc, char** argv, bool issue, Args& a, std::string& why) {
  struct Option {
    const char* name;
    std::string* value;
    std::vector<std::string>* values;
  };
  std::vector<Option> options = {{"--config", &a.configFile, nullptr}, {"--set", nullptr, &a.sets}};
  if (issue) {
    options.insert(options.end(), {{"--role", &a.role, nullptr},
                                   {"--practitioner", &a.practitioner, nullptr},
                                   {"--patient", &a.patient, nullptr},
                                   {"--scope", nullptr, &a.scopes},
                                   {"--purpose", &a.purpose, nullptr},
                                   {"--subject", &a.subject, nullptr},
                                   {"--ttl", &a.ttl, nullptr}});
  } else {
    options.insert(options.end(), {{"--name", &a.name, nullptr}, {"--out", &a.out, nullptr}});
  }
  for (int i = 3; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      a.help = true;
      continue;
    }
    std::string name = arg, value;
    bool inline_ = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      inline_ = true;
    }
    auto option = std::find_if(options.begin(), options.end(), [&](const Option& o) { return name == o.name; });
    if (option == options.end()) {
      why = "unexpected argument '" + arg + "'";
      return false;
    }
    if (!inline_) {
      if (i + 1 >= argc) {
        why = "missing value after " + name;
        return false;
      }
      value = argv[++i];
    }
    if (option->value) *option->value = value;
    else option->values->push_back(value);
  }
  return true;
}

// The configuration, or the exit status to return (1 in production, 2 on a configuration error).
int loadConfig(const Args& a, const char* refusal, config::Config& out) {
  auto c = config::Config::load(a.configFile, a.sets, environ);
  if (!c.ok()) {
    std::cerr << "passerelle token: configuration error: " << c.error().message << "\n";
    return 2;
  }
  out = std::move(c.value());
  if (out.get("deployment") == "production") {
    std::cerr << "passerelle token: " << refusal << " and is refused when deployment=production\n";
    return 1;
  }
  return 0;
}

int issue(const Args& a) {
  if (a.role.empty()) return badUsage("--role is required");
  if (!isCode(a.role)) return badUsage("--role is letters, digits, '-', '_' or '.'");
  if (!a.practitioner.empty() && !a.patient.empty()) return badUsage("--practitioner and --patient are exclusive");
  if (!a.practitioner.empty() && !isPractitionerId(a.practitioner))
    return badUsage("--practitioner is rpps: + 11 digits or adeli: + 9 characters");
  if (!a.patient.empty() && !isFhirId(a.patient)) return badUsage("--patient is a Patient id ([A-Za-z0-9-.]{1,64})");
  if (!a.purpose.empty() && !isCode(a.purpose)) return badUsage("--purpose is a code (letters, digits, '-', '_', '.')");
  std::int64_t ttl = 0;
  if (!parseTtl(a.ttl, ttl)) return badUsage("--ttl is a number of seconds from 1 to " + std::to_string(kMaxTtlSeconds));
  IssueOptions o;
  for (const auto& s : a.scopes) {
    for (std::size_t i = 0; i < s.size();) {
      auto end = s.find(' ', i);
      if (end == std::string::npos) end = s.size();
      std::string one = s.substr(i, end - i);
      if (!one.empty()) {
        if (!std::all_of(one.begin(), one.end(), [](char c) { return c > 0x20 && c < 0x7F && c != '"' && c != '\\'; }))
          return badUsage("--scope '" + one + "' is not a scope");
        o.scopes.push_back(one);
      }
      i = end + 1;
    }
  }
  if (o.scopes.empty()) o.scopes.push_back(a.role == "patient" ? "patient/*.rs" : "user/*.cruds");

  config::Config config;
  if (int rc = loadConfig(a, "token issue uses the development key", config)) return rc;
  if (ttl > config.getInt("auth.max_token_seconds"))
    return badUsage("--ttl " + a.ttl + " is longer than auth.max_token_seconds (" +
                    std::to_string(config.getInt("auth.max_token_seconds")) + "): the gateway would refuse the token");
  o.role = a.role;
  o.practitioner = a.practitioner;
  o.patient = a.patient;
  o.purpose = a.purpose;
  o.subject = !a.subject.empty() ? a.subject : !a.practitioner.empty() ? a.practitioner : !a.patient.empty() ? a.patient : a.role;
  o.ttlSeconds = ttl;
  o.issuer = config.get("auth.issuer");
  o.audience = config.get("auth.audience");
  auto token = issueDevToken(config.get("data.dir"), o);
  if (!token.ok()) {
    std::cerr << "passerelle token: " << token.error().message << "\n";
    return 1;
  }
  std::cout << token.value() << "\n";
  return 0;
}

int clientCert(const Args& a) {
  if (a.name.empty()) return badUsage("--name is required");
  if (a.out.empty()) return badUsage("--out is required");
  config::Config config;
  if (int rc = loadConfig(a, "token client-cert uses the development client CA", config)) return rc;
  std::string pki = config.get("data.dir") + "/auth/client-pki";
  std::string cert = a.out + "/" + a.name + ".crt", key = a.out + "/" + a.name + ".key";
  if (auto r = issueDevClientCertificate(pki, a.name, cert, key); !r.ok()) {
    std::cerr << "passerelle token: " << r.error().message << "\n";
    return 1;
  }
  std::cerr << "wrote " << cert << " and " << key << " (subject " << certificateSubject(cert) << ", CA " << pki
            << "/ca.crt)\n";
  std::cout << certificateFingerprint(cert) << "\n";
  return 0;
}

}  // namespace

int tokenCommand(int argc, char** argv) {
  std::string sub = argc > 2 ? argv[2] : "";
  if (sub == "--help" || sub == "-h") {
    usage(std::cout);
    return 0;
  }
  if (sub != "issue" && sub != "client-cert")
    return badUsage(sub.empty() ? "missing subcommand" : "unknown subcommand '" + sub + "'");
  Args a;
  std::string why;
  if (!parseArgs(argc, argv, sub == "issue", a, why)) return badUsage(why);
  if (a.help) {
    usage(std::cout);
    return 0;
  }
  return sub == "issue" ? issue(a) : clientCert(a);
}

}  // namespace passerelle::identity
