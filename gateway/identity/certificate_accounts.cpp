// Client certificate accounts: the accounts file, and a verified certificate's subject or
// fingerprint to the Principal of its account.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "gateway/identity/identity.h"
#include "gateway/identity/jose.h"

namespace passerelle::identity {
namespace {

using Json = nlohmann::json;
using Dn = std::vector<std::pair<std::string, std::string>>;  // (attribute, value), lower case

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  auto e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Long attribute names as some libraries print them, to the short ones.
std::string attributeName(const std::string& name) {
  static const std::pair<const char*, const char*> kAliases[] = {
      {"commonname", "cn"},         {"organizationname", "o"},    {"organizationalunitname", "ou"},
      {"countryname", "c"},         {"localityname", "l"},        {"stateorprovincename", "st"},
      {"e", "emailaddress"},        {"email", "emailaddress"},    {"serialnumber", "serialnumber"}};
  std::string n = lower(trim(name));
  for (const auto& [from, to] : kAliases)
    if (n == from) return to;
  return n;
}

bool addPair(Dn& dn, const std::string& rdn) {
  auto eq = rdn.find('=');
  if (eq == std::string::npos) return false;
  std::string attr = attributeName(rdn.substr(0, eq)), value = lower(trim(rdn.substr(eq + 1)));
  if (attr.empty()) return false;
  dn.emplace_back(std::move(attr), std::move(value));
  return true;
}

// A distinguished name as RFC 2253 ("CN=x,O=y", with \-escapes and "quoted" values) or in the
// "/O=y/CN=x" form, as sorted pairs; empty when it cannot be read.
Dn parseDn(const std::string& text) {
  Dn dn;
  std::string s = trim(text);
  if (s.empty()) return dn;
  if (s[0] == '/') {
    std::string current;
    std::size_t i = 1;
    while (i <= s.size()) {
      auto slash = s.find('/', i);
      if (slash == std::string::npos) slash = s.size();
      std::string part = s.substr(i, slash - i);
      // A '/' inside a value: the next part has no '='.
      if (!current.empty() && part.find('=') == std::string::npos) current += "/" + part;
      else {
        if (!current.empty() && !addPair(dn, current)) return {};
        current = part;
      }
      i = slash + 1;
    }
    if (!current.empty() && !addPair(dn, current)) return {};
  } else {
    std::string current;
    bool quoted = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
      char c = s[i];
      if (c == '\\' && i + 1 < s.size()) {
        int h = hexValue(s[i + 1]), l = i + 2 < s.size() ? hexValue(s[i + 2]) : -1;
        if (h >= 0 && l >= 0) {
          current += static_cast<char>(h * 16 + l);
          i += 2;
        } else {
          current += s[++i];
        }
      } else if (c == '"') {
        quoted = !quoted;
      } else if (!quoted && (c == ',' || c == ';' || c == '+')) {
        if (!addPair(dn, current)) return {};
        current.clear();
      } else {
        current += c;
      }
    }
    if (quoted || !addPair(dn, current)) return {};
  }
  std::sort(dn.begin(), dn.end());
  return dn;
}

// Lower case without colons; empty unless 64 hex digits remain.
std::string normaliseFingerprint(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == ':' || c == ' ') continue;
    if (hexValue(c) < 0) return {};
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out.size() == 64 ? out : std::string();
}

Principal principalOf(const CertificateAccount& a, const std::string& fingerprint) {
  Principal p;
  p.subject = a.name;
  p.account = a.name;
  p.role = a.role;
  p.scopes = a.scopes;
  p.purpose = a.purpose;
  p.tokenId = "cert:" + fingerprint;
  p.expiresAt = 0;
  return p;
}

bool isScope(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7F && c != '"' && c != '\\'; });
}

}  // namespace

Result<std::vector<CertificateAccount>> loadAccounts(const std::string& path) {
  std::vector<CertificateAccount> accounts;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return accounts;
  auto text = jose::readFile(path);
  if (!text) return makeError(ErrorCode::kInvalid, "cannot read the accounts file '" + path + "'");
  Json doc;
  try {
    doc = Json::parse(*text);
  } catch (const Json::exception& e) {
    return makeError(ErrorCode::kInvalid, path + ": not valid JSON: " + e.what());
  }
  auto fail = [&](const std::string& what) { return makeError(ErrorCode::kInvalid, path + ": " + what); };
  if (!doc.is_object()) return fail("expected an object with \"version\" and \"accounts\"");
  for (const auto& [member, value] : doc.items()) {
    if (member == "version") {
      if (value != "1.0") return fail("unsupported version (expected \"1.0\")");
    } else if (member == "description") {
      if (!value.is_string()) return fail("\"description\" is text");
    } else if (member != "accounts") {
      return fail("unknown member \"" + member + "\"");
    }
  }
  auto list = doc.find("accounts");
  if (list == doc.end()) return accounts;
  if (!list->is_array()) return fail("\"accounts\" must be an array");
  std::set<std::string> names, fingerprints;
  for (std::size_t i = 0; i < list->size(); ++i) {
    const Json& e = (*list)[i];
    std::string where = "accounts[" + std::to_string(i) + "]";
    if (e.is_object() && e.contains("name") && e["name"].is_string()) where += " (\"" + e["name"].get<std::string>() + "\")";
    auto bad = [&](const std::string& what) { return fail(where + ": " + what); };
    if (!e.is_object()) return bad("expected an object");
    CertificateAccount a;
    for (const auto& [member, value] : e.items()) {
      std::string* field = member == "name"          ? &a.name
                           : member == "subject"     ? &a.subject
                           : member == "fingerprint" ? &a.fingerprint
                           : member == "role"        ? &a.role
                           : member == "purpose"     ? &a.purpose
                                                     : nullptr;
      if (field) {
        if (!value.is_string()) return bad("\"" + member + "\" must be a string");
        *field = trim(value.get<std::string>());
      } else if (member == "scopes") {
        if (!value.is_array()) return bad("\"scopes\" must be an array of strings");
        for (const auto& s : value) {
          if (!s.is_string() || !isScope(s.get<std::string>())) return bad("\"scopes\" must be an array of scope strings");
          a.scopes.push_back(s.get<std::string>());
        }
      } else if (member != "description") {
        return bad("unknown member \"" + member + "\"");
      }
    }
    if (a.name.empty()) return bad("no \"name\"");
    if (a.role.empty()) return bad("no \"role\"");
    if (a.subject.empty() && a.fingerprint.empty()) return bad("neither \"subject\" nor \"fingerprint\"");
    if (!a.fingerprint.empty()) {
      std::string fp = normaliseFingerprint(a.fingerprint);
      if (fp.empty()) return bad("\"fingerprint\" is not a SHA-256 fingerprint (64 hex digits)");
      if (!fingerprints.insert(fp).second) return bad("the fingerprint of another account");
      a.fingerprint = fp;
    }
    if (!a.subject.empty() && parseDn(a.subject).empty()) return bad("\"subject\" is not a distinguished name (\"CN=...,O=...\")");
    if (!names.insert(a.name).second) return bad("a second account with this name");
    accounts.push_back(std::move(a));
  }
  return accounts;
}

std::optional<Principal> principalForCertificate(const std::vector<CertificateAccount>& accounts,
                                                 const std::string& subjectDn, const std::string& sha256Fingerprint) {
  std::string fingerprint = normaliseFingerprint(sha256Fingerprint);
  if (fingerprint.empty()) return std::nullopt;
  for (const auto& a : accounts)
    if (!a.fingerprint.empty() && normaliseFingerprint(a.fingerprint) == fingerprint) return principalOf(a, fingerprint);
  Dn subject = parseDn(subjectDn);
  if (subject.empty()) return std::nullopt;
  std::vector<std::string> commonNames;
  for (const auto& [attr, value] : subject)
    if (attr == "cn") commonNames.push_back(value);
  for (const auto& a : accounts) {
    if (!a.fingerprint.empty() || a.subject.empty()) continue;
    Dn wanted = parseDn(a.subject);
    if (wanted.empty()) continue;
    if (wanted == subject) return principalOf(a, fingerprint);
    if (wanted.size() == 1 && wanted[0].first == "cn" && commonNames.size() == 1 && commonNames[0] == wanted[0].second)
      return principalOf(a, fingerprint);
  }
  return std::nullopt;
}

}  // namespace passerelle::identity
