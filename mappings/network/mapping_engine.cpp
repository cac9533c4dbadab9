// The mapping engine: loads definitions and ConceptMaps, applies them both ways (see mapping_engine.h).
#include "mappings/network/mapping_engine.h"

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>

#include "mappings/common/embedded_file.h"
#include "mappings/fhir/markdown.h"
#include "mappings/network/element_path.h"

namespace passerelle {
const std::vector<EmbeddedFile>& networkMappingFiles();
}

namespace passerelle::network {

namespace {

// Identifier systems of the references a document can hold, by reference kind and key.
struct RefSystem {
  const char* refKind;
  const char* key;
  const char* type;
  const char* system;
  const char* valuePrefix;  // prepended to the value in the identifier
};
constexpr RefSystem kRefSystems[] = {
    {"patient", "nir", "Patient", "urn:oid:1.2.250.1.213.1.4.8", ""},
    {"patient", "nia", "Patient", "urn:oid:1.2.250.1.213.1.4.9", ""},
    {"patient", "networkId", "Patient", "https://douleur77.fr/fhir/sid/patient", ""},
    {"professional", "rpps", "PractitionerRole", "https://douleur77.fr/fhir/sid/member", "rpps:"},
    {"professional", "adeli", "PractitionerRole", "https://douleur77.fr/fhir/sid/member", "adeli:"},
    {"practitioner", "rpps", "Practitioner", "https://rpps.esante.gouv.fr", ""},
    {"practitioner", "adeli", "Practitioner", "https://adeli.esante.gouv.fr", ""},
    {"structure", "finess", "Organization", "https://finess.esante.gouv.fr", ""},
};

struct Field {
  enum class Source { kDoc, kRoot, kDerived, kLink, kDocumentId } source = Source::kDoc;
  ElementPath doc;       // for kDoc / kRoot
  std::string derived;   // for kDerived
  std::string link;      // for kLink: the rule whose fullUrl is referenced
  ElementPath fhir;
  std::string ref;       // patient | professional | practitioner | structure | key
  std::string map;       // ConceptMap name
  bool asCode = false;   // the map writes the code only, not a Coding
  bool asMarkdown = false;  // plain text written to a markdown element: '\\', '<' and '&' escaped
  Json also;             // members set beside the written value, in the element that holds it
  std::vector<std::pair<ElementPath, Json>> alsoPaths;
  bool readBack = true;  // false: written to FHIR, not read back (the value is read from another field)
  std::string where;     // for messages: "<file> resources[i].fields[j]"
};

struct Rule {
  std::string name, resourceType, write = "create";
  std::vector<std::string> keep;
  std::optional<ElementPath> forEach;
  bool keepEmpty = false;  // read back, the forEach array is present (empty) when it made no resource
  std::optional<ElementPath> whenDoc;
  std::optional<Json> whenEquals;  // absent: "exists"
  // identity: default (entry identifier), or an identifier with a system and a doc value, or a ref
  std::string identitySystem;
  std::optional<ElementPath> identityDoc;
  std::string identityRef;
  std::string identityPrefix;
  Json fixed;
  std::vector<Field> fields;
};

struct Definition {
  std::vector<std::string> kinds;
  std::string version, follows, file;
  std::optional<ElementPath> subject;  // PatientRef or Identity of the List's subject
  std::vector<Rule> rules;
};

struct ConceptMapping {
  std::string system, code, display;
};

struct ConceptMapData {
  std::map<std::string, ConceptMapping> forward;            // doc code -> target
  std::map<std::pair<std::string, std::string>, std::string> backward;  // (system, code) -> doc code
  bool invertible = true;  // false when two codes share a target: fields must then say "readBack": false
};

bool singleIdentifier(const std::string& type) { return type == "QuestionnaireResponse" || type == "Composition"; }

std::string hex(std::uint64_t v, int digits) {
  static const char* k = "0123456789abcdef";
  std::string s(digits, '0');
  for (int i = digits - 1; i >= 0; --i, v >>= 4) s[i] = k[v & 15];
  return s;
}

std::uint64_t fnv(std::string_view s, std::uint64_t seed) {
  std::uint64_t h = seed;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

// A stable urn:uuid for one entry of one document (version 8, "custom", bits from two FNV-1a).
std::string stableUuid(std::string_view key) {
  std::uint64_t a = fnv(key, 14695981039346656037ULL), b = fnv(key, 0x9e3779b97f4a7c15ULL);
  a = (a & ~0xF000ULL) | 0x8000ULL;                      // version 8 in the third group
  b = (b & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL;  // variant 10
  std::string h = hex(a, 16) + hex(b, 16);
  return "urn:uuid:" + h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" +
         h.substr(20, 12);
}

std::string escapeSearchValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '|' || c == ',' || c == '$') out += '\\';
    out += c;
  }
  return out;
}

// Percent-encodes what a query string value cannot hold as is.
std::string urlEncode(const std::string& v) {
  std::string out;
  for (unsigned char c : v) {
    if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == ':' || c == '/' || c == '|' || c == '\\')
      out += static_cast<char>(c);
    else {
      out += '%';
      out += "0123456789ABCDEF"[c >> 4];
      out += "0123456789ABCDEF"[c & 15];
    }
  }
  return out;
}

std::string urlDecode(const std::string& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '%' && i + 2 < v.size() && isxdigit(static_cast<unsigned char>(v[i + 1])) &&
        isxdigit(static_cast<unsigned char>(v[i + 2]))) {
      out += static_cast<char>(std::stoi(v.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += v[i];
    }
  }
  return out;
}

std::string unescapeSearchValue(const std::string& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size()) ++i;
    out += v[i];
  }
  return out;
}

}  // namespace

struct MappingSet::Impl {
  std::vector<std::unique_ptr<Definition>> owned;
  std::map<std::string, const Definition*, std::less<>> defs;
  std::map<std::string, ConceptMapData> maps;

  // ---- loading ----
  static bool path(const Json& j, const char* member, std::optional<ElementPath>& out, const std::string& where,
                   std::string& error) {
    auto it = j.find(member);
    if (it == j.end()) return true;
    if (!it->is_string()) {
      error = where + "." + member + " must be a string";
      return false;
    }
    std::string e;
    out = parseElementPath(it->get<std::string>(), e);
    if (!out) error = where + "." + member + ": " + e;
    return out.has_value();
  }

  bool loadConceptMap(const std::string& file, const std::string& text, std::string& error) {
    Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.value("resourceType", "") != "ConceptMap" || !j.contains("id")) {
      error = file + ": not a ConceptMap with an id";
      return false;
    }
    ConceptMapData data;
    for (const auto& g : j.value("group", Json::array())) {
      std::string target = g.value("target", "");
      for (const auto& el : g.value("element", Json::array())) {
        std::string code = el.value("code", "");
        if (code.empty() || !el.contains("target") || el["target"].empty()) {
          error = file + ": element without code or target";
          return false;
        }
        const auto& t = el["target"][0];
        ConceptMapping m{target, t.value("code", ""), t.value("display", "")};
        if (m.code.empty() || m.system.empty()) {
          error = file + ": element '" + code + "' has no target system or code";
          return false;
        }
        if (data.forward.count(code)) {
          error = file + ": '" + code + "' is mapped twice";
          return false;
        }
        if (!data.backward.emplace(std::make_pair(m.system, m.code), code).second) data.invertible = false;
        data.forward[code] = std::move(m);
      }
    }
    maps[j["id"].get<std::string>()] = std::move(data);
    return true;
  }

  bool loadDefinition(const std::string& file, const std::string& text, std::string& error) {
    Json j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      error = file + ": not a JSON object";
      return false;
    }
    Definition d;
    d.file = file;
    if (auto k = j.find("kind"); k != j.end() && k->is_string()) d.kinds.push_back(k->get<std::string>());
    else if (k != j.end() && k->is_array())
      for (const auto& x : *k) d.kinds.push_back(x.get<std::string>());
    d.version = j.value("version", "");
    d.follows = j.value("follows", "");
    if (d.kinds.empty() || d.version.empty()) {
      error = file + ": kind and version are required";
      return false;
    }
    if (!path(j, "subject", d.subject, file, error)) return false;
    const Json& rules = j.value("resources", Json::array());
    for (std::size_t r = 0; r < rules.size(); ++r) {
      const Json& rj = rules[r];
      std::string where = file + " resources[" + std::to_string(r) + "]";
      Rule rule;
      rule.name = rj.value("name", "");
      rule.resourceType = rj.value("resourceType", "");
      rule.write = rj.value("write", "create");
      if (rule.name.empty() || rule.resourceType.empty()) {
        error = where + ": name and resourceType are required";
        return false;
      }
      if (rule.write != "create" && rule.write != "upsert" && rule.write != "merge") {
        error = where + ": write must be create, upsert or merge";
        return false;
      }
      for (const auto& k : rj.value("keep", Json::array())) rule.keep.push_back(k.get<std::string>());
      if (!path(rj, "forEach", rule.forEach, where, error)) return false;
      rule.keepEmpty = rj.value("keepEmpty", false);
      if (auto w = rj.find("when"); w != rj.end()) {
        if (!path(*w, "doc", rule.whenDoc, where + ".when", error)) return false;
        if (!rule.whenDoc) {
          error = where + ".when needs doc";
          return false;
        }
        if (w->contains("equals")) rule.whenEquals = (*w)["equals"];
      }
      if (auto id = rj.find("identity"); id != rj.end()) {
        rule.identitySystem = id->value("system", "");
        rule.identityRef = id->value("ref", "");
        rule.identityPrefix = id->value("prefix", "");
        if (!path(*id, "doc", rule.identityDoc, where + ".identity", error)) return false;
        if (!rule.identityDoc || (rule.identitySystem.empty() == rule.identityRef.empty())) {
          error = where + ".identity needs doc and one of system or ref";
          return false;
        }
      } else if (rule.write != "create") {
        error = where + ": an upsert or merge needs an identity";
        return false;
      }
      rule.fixed = rj.value("fixed", Json::object());
      const Json& fields = rj.value("fields", Json::array());
      for (std::size_t f = 0; f < fields.size(); ++f) {
        const Json& fj = fields[f];
        Field field;
        field.where = where + ".fields[" + std::to_string(f) + "]";
        std::optional<ElementPath> fhir;
        if (!path(fj, "fhir", fhir, field.where, error)) return false;
        if (!fhir) {
          error = field.where + ": fhir is required";
          return false;
        }
        field.fhir = *fhir;
        std::optional<ElementPath> doc;
        if (fj.contains("doc")) {
          std::string text = fj["doc"].get<std::string>();
          bool root = text.rfind("$.", 0) == 0;
          if (root) text = text.substr(2);
          std::string e;
          if (text == "." && rule.forEach)
            doc = ElementPath{};  // the forEach element itself
          else
            doc = parseElementPath(text, e);
          if (!doc) {
            error = field.where + ".doc: " + e;
            return false;
          }
          field.doc = *doc;
          field.source = root || !rule.forEach ? Field::Source::kRoot : Field::Source::kDoc;
        } else if (fj.contains("derived")) {
          field.source = Field::Source::kDerived;
          field.derived = fj["derived"].get<std::string>();
        } else if (fj.contains("link")) {
          field.source = Field::Source::kLink;
          field.link = fj["link"].get<std::string>();
        } else if (fj.value("documentId", false)) {
          field.source = Field::Source::kDocumentId;
        } else {
          error = field.where + ": one of doc, derived, link or documentId is required";
          return false;
        }
        field.ref = fj.value("ref", "");
        field.map = fj.value("map", "");
        field.asCode = fj.value("as", "") == "code";
        field.asMarkdown = fj.value("as", "") == "markdown";
        field.readBack = fj.value("readBack", true);
        field.also = fj.value("also", Json::object());
        if (!field.also.empty() && field.fhir.steps.size() < 2) {
          error = field.where + ": also needs a path of two steps or more";
          return false;
        }
        for (const auto& [k, v] : field.also.items()) {
          if (!k.empty() && k[0] == '/') {  // a path from the resource's root
            std::string e;
            auto p = parseElementPath(k.substr(1), e);
            if (!p) {
              error = field.where + ".also: " + e;
              return false;
            }
            field.alsoPaths.emplace_back(std::move(*p), v);
            continue;
          }
          ElementPath p = field.fhir;
          p.steps.pop_back();
          PathStep step;
          step.name = k;
          p.steps.push_back(step);
          field.alsoPaths.emplace_back(std::move(p), v);
        }
        if (!field.map.empty() && field.readBack && maps.count(field.map) && !maps.at(field.map).invertible) {
          error = field.where + ": ConceptMap '" + field.map + "' is many-to-one: say \"readBack\": false";
          return false;
        }
        if (!field.ref.empty() && field.ref != "patient" && field.ref != "professional" && field.ref != "practitioner" &&
            field.ref != "structure" && field.ref != "key") {
          error = field.where + ": unknown ref kind '" + field.ref + "'";
          return false;
        }
        if (!field.map.empty() && !maps.count(field.map)) {
          error = field.where + ": unknown ConceptMap '" + field.map + "'";
          return false;
        }
        if (field.doc.hasEach() != field.fhir.hasEach() && field.source != Field::Source::kLink) {
          error = field.where + ": [*] must appear in both doc and fhir, or in neither";
          return false;
        }
        rule.fields.push_back(std::move(field));
      }
      d.rules.push_back(std::move(rule));
    }
    // Links must name a rule of the same definition.
    for (const auto& rule : d.rules)
      for (const auto& f : rule.fields)
        if (f.source == Field::Source::kLink) {
          bool found = false;
          for (const auto& other : d.rules) found = found || other.name == f.link;
          if (!found) {
            error = f.where + ": link to unknown rule '" + f.link + "'";
            return false;
          }
        }
    for (const auto& k : d.kinds)
      if (defs.count(k)) {
        error = file + ": a second definition for '" + k + "'";
        return false;
      }
    owned.push_back(std::make_unique<Definition>(std::move(d)));
    for (const auto& k : owned.back()->kinds) defs.emplace(k, owned.back().get());
    return true;
  }

  // ---- forward ----
  std::optional<Json> forwardValue(const Field& f, const Json& value, const std::string& docPath,
                                   std::vector<MappingIssue>& issues) const {
    if (!f.ref.empty()) {
      if (f.ref == "key") {
        std::string k = keyOf(value);
        if (k.empty()) return std::nullopt;
        return Json(k);
      }
      std::string ref = conditionalReference(f.ref, value);
      if (ref.empty()) {
        issues.push_back({docPath, "no identifier to reference this " + f.ref + " by"});
        return std::nullopt;
      }
      Json r = Json::object();
      r["reference"] = ref;
      // the identifier the document named, kept beside the reference the store resolves
      if (Json ident = logicalIdentifier(f.ref, value); !ident.is_null()) r["identifier"] = std::move(ident);
      return r;
    }
    if (!f.map.empty()) {
      const auto& m = maps.at(f.map);
      auto it = value.is_string() ? m.forward.find(value.get<std::string>()) : m.forward.end();
      if (it == m.forward.end()) {
        issues.push_back({docPath, "the code " + value.dump() + " has no translation in ConceptMap " + f.map});
        return std::nullopt;
      }
      if (f.asCode) return Json(it->second.code);
      Json c = Json::object();
      c["system"] = it->second.system;
      c["code"] = it->second.code;
      if (!it->second.display.empty()) c["display"] = it->second.display;
      return c;
    }
    if (f.asMarkdown && value.is_string()) return Json(fhir::markdownFromText(value.get<std::string>()));
    return value;
  }

  // {"system", "value"} of the identifier a reference object names, or null.
  static Json logicalIdentifier(const std::string& refKind, const Json& ref) {
    if (!ref.is_object()) return Json();
    for (const auto& s : kRefSystems) {
      if (refKind != s.refKind) continue;
      auto it = ref.find(s.key);
      if (it == ref.end() || !it->is_string()) continue;
      Json ident = Json::object();
      ident["system"] = s.system;
      ident["value"] = std::string(s.valuePrefix) + it->get<std::string>();
      return ident;
    }
    return Json();
  }

  static std::string keyOf(const Json& ref) {
    if (!ref.is_object()) return "";
    for (const char* k : {"rpps", "adeli", "finess", "nir", "nia", "networkId"})
      if (auto it = ref.find(k); it != ref.end() && it->is_string()) return std::string(k) + ":" + it->get<std::string>();
    return "";
  }

  static void write(Json& res, const Field& f, const Json& value, std::size_t each) {
    setAt(res, f.fhir, value, each);
    for (const auto& [p, v] : f.alsoPaths) setAt(res, p, v, each);
  }

  static bool whenHolds(const Rule& rule, const Json& doc) {
    if (!rule.whenDoc) return true;
    const Json* v = getAt(doc, *rule.whenDoc);
    if (!v) return false;
    return !rule.whenEquals || *v == *rule.whenEquals;
  }

  std::vector<MappedEntry> forward(const std::string& kind, const Definition& d, const Json& doc, const Json& derived,
                                   std::vector<MappingIssue>& issues) const {
    std::vector<MappedEntry> out;
    std::map<std::string, std::string> identities;  // conditional reference -> fullUrl of the entry it names
    std::string documentId = doc.value("documentId", "");
    std::map<std::string, std::vector<std::string>> urls;  // rule -> fullUrl per item
    // fullUrls first, so links may point forward
    std::map<std::string, std::size_t> counts;
    for (const auto& rule : d.rules) {
      std::size_t n = 0;
      if (whenHolds(rule, doc)) {
        if (rule.forEach) {
          const Json* arr = getAt(doc, *rule.forEach);
          n = arr && arr->is_array() ? arr->size() : 0;
        } else {
          n = 1;
        }
      }
      counts[rule.name] = n;
      for (std::size_t i = 0; i < n; ++i)
        urls[rule.name].push_back(stableUuid(kind + "|" + documentId + "|" + rule.name + "|" + std::to_string(i)));
    }
    for (const auto& rule : d.rules) {
      for (std::size_t i = 0; i < counts[rule.name]; ++i) {
        const Json* item = &doc;
        std::string itemPath;
        if (rule.forEach) {
          item = &(*getAt(doc, *rule.forEach))[i];
          itemPath = rule.forEach->text + "[" + std::to_string(i) + "]";
        }
        MappedEntry e;
        e.rule = rule.name;
        e.index = i;
        e.fullUrl = urls[rule.name][i];
        Json res = Json::object();
        res["resourceType"] = rule.resourceType;
        for (const auto& [k, v] : rule.fixed.items()) res[k] = v;
        for (const auto& f : rule.fields) {
          const Json* base = f.source == Field::Source::kDoc ? item : &doc;
          std::string prefix = f.source == Field::Source::kDoc && !itemPath.empty() ? itemPath + "." : "";
          switch (f.source) {
            case Field::Source::kDerived: {
              auto it = derived.is_object() ? derived.find(f.derived) : derived.end();
              if (it != derived.end() && !it->is_null()) write(res, f, *it, 0);
              break;
            }
            case Field::Source::kLink: {
              const auto& u = urls[f.link];
              if (u.empty()) break;
              Json r = Json::object();
              r["reference"] = u.size() > i ? u[i] : u[0];
              setAt(res, f.fhir, r);
              break;
            }
            case Field::Source::kDocumentId:
              setAt(res, f.fhir, documentId);
              break;
            case Field::Source::kDoc:
            case Field::Source::kRoot: {
              if (f.doc.hasEach()) {
                std::size_t n = countEach(*base, f.doc);
                for (std::size_t j = 0; j < n; ++j) {
                  const Json* v = getAt(*base, f.doc, j);
                  if (!v || v->is_null()) continue;
                  auto mapped = forwardValue(f, *v, prefix + f.doc.text, issues);
                  if (mapped) write(res, f, *mapped, j);
                }
              } else if (const Json* v = getAt(*base, f.doc); v && !v->is_null()) {
                auto mapped = forwardValue(f, *v, prefix + f.doc.text, issues);
                if (mapped) write(res, f, *mapped, 0);
              }
              break;
            }
          }
        }
        // identity
        if (!rule.identityRef.empty()) {
          const Json* v = getAt(doc, *rule.identityDoc);
          std::string ref = v ? conditionalReference(rule.identityRef, *v) : "";
          if (ref.empty()) {
            issues.push_back({rule.identityDoc->text, "no identifier to find this " + rule.identityRef + " by"});
            continue;
          }
          auto q = ref.find('?');
          e.url = ref.substr(0, q) + "?" + urlEncodeQuery(ref.substr(q + 1));
          e.method = "PUT";
          identities[ref] = e.fullUrl;
        } else {
          std::string system, value;
          if (rule.identityDoc) {
            const Json* v = getAt(rule.forEach ? *item : doc, *rule.identityDoc);
            if (!v || !v->is_string()) {
              issues.push_back({rule.identityDoc->text, "the identity of " + rule.name + " is missing"});
              continue;
            }
            system = rule.identitySystem;
            value = rule.identityPrefix + v->get<std::string>();
          } else {
            system = std::string(kEntrySystem);
            value = documentId + "." + rule.name + (rule.forEach ? "." + std::to_string(i) : "");
          }
          Json ident = Json::object();
          ident["system"] = system;
          ident["value"] = value;
          if (singleIdentifier(rule.resourceType)) {
            res["identifier"] = ident;
          } else {
            Json& arr = res["identifier"];
            if (!arr.is_array()) arr = Json::array();
            bool present = false;
            for (const auto& x : arr) present = present || x == ident;
            if (!present) arr.push_back(ident);
          }
          std::string query = "identifier=" + urlEncode(escapeSearchValue(system) + "|" + escapeSearchValue(value));
          if (rule.write == "create") {
            e.method = "POST";
            e.url = rule.resourceType;
            e.ifNoneExist = query;
          } else {
            e.method = "PUT";
            e.url = rule.resourceType + "?" + query;
          }
        }
        e.merge = rule.write == "merge";
        e.keep = rule.keep;
        e.resource = std::make_shared<Json>(std::move(res));
        out.push_back(std::move(e));
      }
    }
    // A reference to a resource this document writes names its entry, not the stored resource
    // (which may not exist before the transaction).
    std::function<void(Json&)> point = [&](Json& j) {
      if (j.is_object()) {
        if (auto r = j.find("reference"); r != j.end() && r->is_string())
          if (auto it = identities.find(r->get<std::string>()); it != identities.end()) *r = it->second;
        for (auto& [k, v] : j.items()) point(v);
      } else if (j.is_array()) {
        for (auto& v : j) point(v);
      }
    };
    if (!identities.empty())
      for (auto& e : out) point(*e.resource);
    // The List that indexes the document: identifier, kind, subject, and one entry per resource
    // with the rule that made it.
    MappedEntry list;
    list.rule = "";
    list.fullUrl = stableUuid(kind + "|" + documentId + "|#list");
    Json l = Json::object();
    l["resourceType"] = "List";
    l["identifier"] = Json::array({{{"system", kDocumentSystem}, {"value", documentId}}});
    l["status"] = "current";
    l["mode"] = "snapshot";
    l["code"] = {{"coding", Json::array({{{"system", kDocumentKindSystem}, {"code", kind}}})}};
    if (d.subject) {
      if (const Json* s = getAt(doc, *d.subject)) {
        std::string ref = conditionalReference("patient", *s);
        if (auto it = identities.find(ref); it != identities.end()) ref = it->second;
        if (!ref.empty()) l["subject"] = {{"reference", ref}};
      }
    }
    Json entries = Json::array();
    for (const auto& e : out)
      entries.push_back({{"flag", {{"coding", Json::array({{{"system", kMappingRuleSystem}, {"code", e.rule}}})}}},
                         {"item", {{"reference", e.fullUrl}}}});
    if (!entries.empty()) l["entry"] = std::move(entries);
    list.method = "POST";
    list.url = "List";
    list.ifNoneExist = "identifier=" + urlEncode(escapeSearchValue(std::string(kDocumentSystem)) + "|" + escapeSearchValue(documentId));
    list.resource = std::make_shared<Json>(std::move(l));
    out.push_back(std::move(list));
    return out;
  }

  static std::string urlEncodeQuery(const std::string& q) {
    // the conditional reference's query: name=value, the value percent-encoded
    auto eq = q.find('=');
    if (eq == std::string::npos) return q;
    return q.substr(0, eq + 1) + urlEncode(q.substr(eq + 1));
  }

  // ---- reverse ----
  std::optional<Json> backwardValue(const Field& f, const Json& v, const ReferenceResolver& resolve,
                                    std::vector<MappingIssue>& issues) const {
    if (!f.ref.empty()) {
      if (f.ref == "key") {
        if (!v.is_string()) return std::nullopt;
        std::string s = v.get<std::string>();
        auto c = s.find(':');
        if (c == std::string::npos) return std::nullopt;
        Json o = Json::object();
        o[s.substr(0, c)] = s.substr(c + 1);
        return o;
      }
      if (!v.is_object()) return std::nullopt;
      if (auto ident = v.find("identifier"); ident != v.end() && ident->is_object()) {
        // the identifier the document named, when the Reference keeps it
        std::string system = ident->value("system", ""), value = ident->value("value", "");
        for (const auto& s : kRefSystems) {
          if (f.ref != s.refKind || system != s.system || value.rfind(s.valuePrefix, 0) != 0) continue;
          Json out = Json::object();
          out[s.key] = value.substr(std::string(s.valuePrefix).size());
          return out;
        }
        for (const auto& s : kRefSystems)
          if (system == s.system) return std::nullopt;  // another kind's field reads this reference
      }
      if (!v.contains("reference") || !v["reference"].is_string()) return std::nullopt;
      std::string ref = v["reference"].get<std::string>();
      if (resolve) ref = resolve(ref);
      std::string kind;
      Json out;
      if (!parseConditionalReference(ref, kind, out)) {
        issues.push_back({f.fhir.text, "the reference '" + ref + "' does not name a " + f.ref + " by an identifier"});
        return std::nullopt;
      }
      if (kind != f.ref) return std::nullopt;  // another field reads this reference
      return out;
    }
    if (!f.map.empty()) {
      const auto& m = maps.at(f.map);
      std::string system, code;
      if (f.asCode) {
        if (!v.is_string()) return std::nullopt;
        code = v.get<std::string>();
        for (const auto& [k, target] : m.backward)
          if (k.second == code) return Json(target);
        issues.push_back({f.fhir.text, "the code '" + code + "' is not in ConceptMap " + f.map});
        return std::nullopt;
      }
      if (!v.is_object()) return std::nullopt;
      system = v.value("system", "");
      code = v.value("code", "");
      auto it = m.backward.find({system, code});
      if (it == m.backward.end()) {
        issues.push_back({f.fhir.text, "the code " + system + "|" + code + " is not in ConceptMap " + f.map});
        return std::nullopt;
      }
      return Json(it->second);
    }
    if (f.asMarkdown && v.is_string()) return Json(fhir::textFromMarkdown(v.get<std::string>()));
    return v;
  }

  Json backward(const std::string& kind, const Definition& d, const std::string& documentId,
                const std::map<std::string, std::vector<const Json*>>& byRule, const ReferenceResolver& resolve,
                std::vector<MappingIssue>& issues) const {
    Json doc = Json::object();
    doc["documentType"] = kind;
    doc["schemaVersion"] = "1.0";
    doc["documentId"] = documentId;
    for (const auto& rule : d.rules) {
      auto it = byRule.find(rule.name);
      if (it == byRule.end() || it->second.empty()) {
        if (rule.keepEmpty && rule.forEach && !getAt(doc, *rule.forEach)) setAt(doc, *rule.forEach, Json::array());
        continue;
      }
      if (rule.whenDoc && rule.whenEquals) setAt(doc, *rule.whenDoc, *rule.whenEquals);
      for (std::size_t i = 0; i < it->second.size(); ++i) {
        const Json& res = *it->second[i];
        Json item = Json::object();
        for (const auto& f : rule.fields) {
          if ((f.source != Field::Source::kDoc && f.source != Field::Source::kRoot) || !f.readBack) continue;
          Json& target = f.source == Field::Source::kDoc ? item : doc;
          if (f.fhir.hasEach()) {
            std::size_t n = countEach(res, f.fhir);
            for (std::size_t j = 0; j < n; ++j)
              if (const Json* v = getAt(res, f.fhir, j))
                if (auto back = backwardValue(f, *v, resolve, issues)) setAt(target, f.doc, *back, j);
          } else if (const Json* v = getAt(res, f.fhir)) {
            if (auto back = backwardValue(f, *v, resolve, issues)) {
              if (f.doc.steps.empty())
                target = *back;  // "." : the forEach element itself
              else
                setAt(target, f.doc, *back);
            }
          }
        }
        if (rule.forEach) {
          Json* arr = const_cast<Json*>(getAt(doc, *rule.forEach));
          if (!arr) {
            setAt(doc, *rule.forEach, Json::array());
            arr = const_cast<Json*>(getAt(doc, *rule.forEach));
          }
          if (arr->size() <= i) arr->push_back(std::move(item));
        } else if (!item.empty()) {
          for (auto& [k, v] : item.items()) doc[k] = v;
        }
      }
    }
    return doc;
  }
};

MappingSet::MappingSet() : impl_(std::make_unique<Impl>()) {}
MappingSet::~MappingSet() = default;

std::unique_ptr<MappingSet> MappingSet::load(const std::vector<std::pair<std::string, std::string>>& definitions,
                                             const std::vector<std::pair<std::string, std::string>>& conceptMaps,
                                             std::string& error) {
  std::unique_ptr<MappingSet> set(new MappingSet());
  try {
    for (const auto& [file, text] : conceptMaps)
      if (!set->impl_->loadConceptMap(file, text, error)) return nullptr;
    for (const auto& [file, text] : definitions)
      if (!set->impl_->loadDefinition(file, text, error)) return nullptr;
  } catch (const std::exception& e) {
    error = std::string("malformed definition: ") + e.what();
    return nullptr;
  }
  return set;
}

const MappingSet& MappingSet::builtIn() {
  static const std::unique_ptr<MappingSet> set = [] {
    std::vector<std::pair<std::string, std::string>> defs, maps;
    for (const auto& f : networkMappingFiles()) {
      std::string name(f.name);
      if (name.rfind("conceptmaps/", 0) == 0)
        maps.emplace_back(name, std::string(f.contents));
      else if (name.rfind("definitions/", 0) == 0)
        defs.emplace_back(name, std::string(f.contents));
    }
    std::string error;
    auto s = load(defs, maps, error);
    if (!s) {
      std::fprintf(stderr, "passerelle: built-in network mapping is broken: %s\n", error.c_str());
      std::abort();
    }
    return s;
  }();
  return *set;
}

std::vector<std::string> MappingSet::kinds() const {
  std::vector<std::string> out;
  for (const auto& [k, d] : impl_->defs) out.push_back(k);
  return out;
}

bool MappingSet::has(std::string_view kind) const { return impl_->defs.find(kind) != impl_->defs.end(); }

std::string MappingSet::version(std::string_view kind) const {
  auto it = impl_->defs.find(kind);
  return it == impl_->defs.end() ? "" : it->second->version;
}

std::vector<MappedEntry> MappingSet::toEntries(std::string_view kind, const Json& doc, const Json& derived,
                                               std::vector<MappingIssue>& issues) const {
  auto it = impl_->defs.find(kind);
  if (it == impl_->defs.end()) {
    issues.push_back({"documentType", "no mapping for documents of kind '" + std::string(kind) + "'"});
    return {};
  }
  try {
    return impl_->forward(std::string(kind), *it->second, doc, derived, issues);
  } catch (const std::exception& e) {
    issues.push_back({"", std::string("the document could not be mapped: ") + e.what()});
    return {};
  }
}

Json MappingSet::toBundle(std::string_view kind, const Json& doc, const Json& derived,
                          std::vector<MappingIssue>& issues) const {
  auto entries = toEntries(kind, doc, derived, issues);
  Json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}};
  Json arr = Json::array();
  for (auto& e : entries) {
    Json request = {{"method", e.method}, {"url", e.url}};
    if (!e.ifNoneExist.empty()) request["ifNoneExist"] = e.ifNoneExist;
    Json entry = Json::object();
    entry["fullUrl"] = e.fullUrl;
    entry["resource"] = std::move(*e.resource);
    entry["request"] = std::move(request);
    arr.push_back(std::move(entry));
  }
  bundle["entry"] = std::move(arr);
  return bundle;
}

Json MappingSet::fromList(const Json& list, const Lookup& lookup, const ReferenceResolver& resolve,
                          std::vector<MappingIssue>& issues) const {
  try {
    std::string kind, documentId;
    for (const auto& c : list.value("code", Json::object()).value("coding", Json::array()))
      if (c.value("system", "") == kDocumentKindSystem) kind = c.value("code", "");
    for (const auto& id : list.value("identifier", Json::array()))
      if (id.value("system", "") == kDocumentSystem) documentId = id.value("value", "");
    auto it = impl_->defs.find(kind);
    if (it == impl_->defs.end()) {
      issues.push_back({"List.code", "the List does not index a network document of a known kind"});
      return Json();
    }
    std::map<std::string, std::vector<const Json*>> byRule;
    const Json& entries = list.value("entry", Json::array());
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const Json& e = entries[i];
      std::string rule;
      for (const auto& c : e.value("flag", Json::object()).value("coding", Json::array()))
        if (c.value("system", "") == kMappingRuleSystem) rule = c.value("code", "");
      std::string ref = e.value("item", Json::object()).value("reference", "");
      const Json* res = lookup(ref);
      if (!res) {
        issues.push_back({"List.entry[" + std::to_string(i) + "].item", "the resource '" + ref + "' is not available"});
        continue;
      }
      byRule[rule].push_back(res);
    }
    return impl_->backward(kind, *it->second, documentId, byRule, resolve, issues);
  } catch (const std::exception& e) {
    issues.push_back({"", std::string("the document could not be read back: ") + e.what()});
    return Json();
  }
}

Json MappingSet::fromBundle(const Json& bundle, std::vector<MappingIssue>& issues) const {
  std::map<std::string, const Json*> byUrl;
  const Json* list = nullptr;
  if (!bundle.is_object() || !bundle.contains("entry") || !bundle["entry"].is_array()) {
    issues.push_back({"Bundle.entry", "the Bundle has no entries"});
    return Json();
  }
  std::map<std::string, std::string> conditionalOf;  // fullUrl of a conditional update -> its conditional reference
  for (const auto& e : bundle["entry"]) {
    if (!e.is_object() || !e.contains("resource")) continue;
    const Json& r = e["resource"];
    if (e.contains("fullUrl") && e["fullUrl"].is_string()) {
      byUrl[e["fullUrl"].get<std::string>()] = &r;
      std::string url = e.value("request", Json::object()).value("url", "");
      if (url.find('?') != std::string::npos) {
        auto q = url.find('?');
        conditionalOf[e["fullUrl"].get<std::string>()] = url.substr(0, q + 1) + urlDecode(url.substr(q + 1));
      }
    }
    if (r.value("resourceType", "") == "List" && r.contains("identifier")) {
      for (const auto& id : r["identifier"])
        if (id.value("system", "") == kDocumentSystem) list = &r;
    }
  }
  if (!list) {
    issues.push_back({"Bundle.entry", "the Bundle has no List indexing a network document"});
    return Json();
  }
  return fromList(
      *list,
      [&](const std::string& ref) -> const Json* {
        auto it = byUrl.find(ref);
        return it == byUrl.end() ? nullptr : it->second;
      },
      [&](const std::string& ref) {
        auto it = conditionalOf.find(ref);
        return it == conditionalOf.end() ? ref : it->second;
      },
      issues);
}

std::string MappingSet::conditionalReference(std::string_view refKind, const Json& ref) {
  if (!ref.is_object()) return "";
  for (const auto& s : kRefSystems) {
    if (refKind != s.refKind) continue;
    auto it = ref.find(s.key);
    if (it == ref.end() || !it->is_string()) continue;
    return std::string(s.type) + "?identifier=" + std::string(s.system) + "|" + s.valuePrefix +
           escapeSearchValue(it->get<std::string>());
  }
  return "";
}

std::string MappingSet::conditionalReferenceOf(const Json& resource) {
  if (!resource.is_object()) return "";
  std::string type = resource.value("resourceType", "");
  auto ids = resource.find("identifier");
  if (ids == resource.end() || !ids->is_array()) return "";
  for (const auto& s : kRefSystems) {  // in the table's order of preference
    if (type != s.type) continue;
    for (const auto& id : *ids) {
      if (!id.is_object() || id.value("system", "") != s.system) continue;
      std::string value = id.value("value", "");
      std::string prefix = s.valuePrefix;
      if (value.rfind(prefix, 0) != 0) continue;
      Json ref = Json::object();
      ref[s.key] = value.substr(prefix.size());
      return conditionalReference(s.refKind, ref);
    }
  }
  return "";
}

bool MappingSet::parseConditionalReference(const std::string& reference, std::string& refKind, Json& ref) {
  auto q = reference.find("?identifier=");
  if (q == std::string::npos) return false;
  std::string type = reference.substr(0, q);
  std::string value = urlDecode(reference.substr(q + 12));
  // split at the first unescaped '|'
  std::size_t bar = std::string::npos;
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\\') {
      ++i;
      continue;
    }
    if (value[i] == '|') {
      bar = i;
      break;
    }
  }
  if (bar == std::string::npos) return false;
  std::string system = unescapeSearchValue(value.substr(0, bar)), v = unescapeSearchValue(value.substr(bar + 1));
  for (const auto& s : kRefSystems) {
    if (type != s.type || system != s.system) continue;
    std::string prefix = s.valuePrefix;
    if (v.rfind(prefix, 0) != 0) continue;
    refKind = s.refKind;
    ref = Json::object();
    ref[s.key] = v.substr(prefix.size());
    return true;
  }
  return false;
}

}  // namespace passerelle::network
