// Round trips over generated documents: each example document is varied at random under its JSON
// Schema (optional members dropped, enumerations and numbers drawn within their bounds, free text
// with accents and markup, arrays shortened or lengthened), and every valid variant must map to a
// FHIR R4 Bundle the validator accepts and come back equal. Seeded: a failure names the seed and
// the document.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "mappings/fhir/validator.h"
#include "mappings/network/documents/document_schemas.h"
#include "mappings/network/mapping_engine.h"

namespace passerelle::network {
namespace {

Json readJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return Json::parse(ss.str(), nullptr, false);
}

class Varier {
 public:
  Varier(const Json& schema, const Json& common, std::uint32_t seed) : schema_(schema), common_(common), rng_(seed) {}

  Json vary(const Json& value) { return vary(schema_, value, schema_); }

 private:
  const Json& resolve(const Json& s, const Json& doc) {
    if (!s.contains("$ref")) return s;
    std::string ref = s["$ref"].get<std::string>();
    auto hash = ref.find('#');
    const Json& base = ref.rfind("common.schema.json", 0) == 0 ? common_ : doc;
    const Json& target = base.at(nlohmann::ordered_json::json_pointer(ref.substr(hash + 1)));
    return resolve(target, base);
  }
  bool chance(int percent) { return std::uniform_int_distribution<int>(0, 99)(rng_) < percent; }

  std::string text() {
    static const char* pieces[] = {"Douleur", " lombaire", " é", " à l'effort", " <b>", " & ", "\"cité\"", " ñ", " 50 %",
                                   " œdème", "\n", " ligne"};
    std::string s;
    int n = std::uniform_int_distribution<int>(1, 6)(rng_);
    for (int i = 0; i < n; ++i) s += pieces[std::uniform_int_distribution<int>(0, 11)(rng_)];
    return s;
  }

  Json vary(const Json& sIn, const Json& value, const Json& doc) {
    const Json& base = sIn.contains("$ref") && sIn["$ref"].get<std::string>().rfind("common.schema.json", 0) == 0 ? common_ : doc;
    const Json& s = resolve(sIn, doc);
    if (s.contains("oneOf") || s.contains("anyOf") || s.contains("if") || s.contains("const") || s.contains("pattern") ||
        s.contains("format") || s.contains("contentEncoding"))
      return value;
    if (s.contains("enum")) return s["enum"][std::uniform_int_distribution<std::size_t>(0, s["enum"].size() - 1)(rng_)];
    if (value.is_object() && s.contains("properties")) {
      Json out = Json::object();
      std::set<std::string> required;
      for (const auto& r : s.value("required", Json::array())) required.insert(r.get<std::string>());
      for (const auto& [k, v] : value.items()) {
        if (!required.count(k) && !s.contains("minProperties") && chance(25)) continue;
        out[k] = s["properties"].contains(k) ? vary(s["properties"][k], v, base) : v;
      }
      return out;
    }
    if (value.is_array() && s.contains("items") && !value.empty()) {
      std::size_t lo = s.value("minItems", 0), hi = std::min<std::size_t>(s.value("maxItems", 6), 6);
      if (lo > hi) return value;
      std::size_t n = std::uniform_int_distribution<std::size_t>(lo, hi)(rng_);
      Json out = Json::array();
      for (std::size_t i = 0; i < n; ++i) out.push_back(vary(s["items"], value[i % value.size()], base));
      return out;
    }
    std::string type = s.value("type", "");
    if (type == "boolean") return chance(50);
    if (type == "integer" && s.contains("minimum") && s.contains("maximum"))
      return std::uniform_int_distribution<long>(s["minimum"].get<long>(), std::min<long>(s["maximum"].get<long>(), 100000))(rng_);
    if (type == "number" && s.contains("minimum") && s.contains("maximum")) {
      long lo = static_cast<long>(s["minimum"].get<double>() * 10), hi = static_cast<long>(std::min(s["maximum"].get<double>(), 10000.0) * 10);
      return static_cast<double>(std::uniform_int_distribution<long>(lo, hi)(rng_)) / 10.0;
    }
    if (type == "string" && !s.contains("maxLength")) return text();
    if (type == "string") {
      std::string t = text();
      std::size_t max = s["maxLength"].get<std::size_t>();
      return t.size() <= max ? Json(t) : value;
    }
    return value;
  }

  const Json& schema_;
  const Json& common_;
  std::mt19937 rng_;
};

TEST(NetworkRoundTripTest, GeneratedDocumentsMapToFhirAndComeBackEqual) {
  const auto& schemas = DocumentSchemas::instance();
  const auto& mappings = MappingSet::builtIn();
  Json common = Json::parse(std::string(schemas.schemaText("common")), nullptr, false);
  if (common.is_discarded()) common = readJson(std::string(PASSERELLE_NETWORK_SCHEMAS) + "/common.schema.json");
  ASSERT_TRUE(common.is_object());
  int kinds = 0;
  for (const auto& kind : mappings.kinds()) {
    Json example = readJson(std::string(PASSERELLE_NETWORK_SCHEMAS) + "/examples/" + kind + ".json");
    ASSERT_TRUE(example.is_object()) << kind << ": no example";
    Json schema = Json::parse(std::string(schemas.schemaText(kind)), nullptr, false);
    ASSERT_TRUE(schema.is_object()) << kind;
    // the examples are a low-back-pain patient's: the other pathologies' scales are added here
    std::vector<Json> bases = {example};
    if (kind == "cied" || kind == "csb") {
      Json cancer = example;
      cancer["measures"]["bpi"] = {{"severity", {7, 2, 5, 6}}, {"interference", {6, 5, 4, 7, 3, 8, 6.5}}};
      bases.push_back(cancer);
      Json migraine = example;
      migraine["measures"]["qvm"] = {{"score", 42.5}};
      bases.push_back(migraine);
    }
    int valid = 0;
    for (std::uint32_t seed = 1; seed <= 200; ++seed) {
      Varier v(schema, common, seed * 7919 + static_cast<std::uint32_t>(kind.size()));
      const Json& base = bases[seed % bases.size()];
      Json doc = seed <= bases.size() ? base : v.vary(base);
      if (auto bad = schemas.validate(kind, doc); !bad.empty()) {  // a variant the schema refuses is not a document
        if (std::getenv("ROUNDTRIP_VERBOSE")) std::cerr << kind << ": " << bad[0].path << " " << bad[0].message << "\n";
        continue;
      }
      ++valid;
      std::vector<MappingIssue> issues;
      Json bundle = mappings.toBundle(kind, doc, Json::object(), issues);
      ASSERT_TRUE(issues.empty()) << kind << " seed " << seed << ": " << issues[0].path << " " << issues[0].message << "\n" << doc.dump(1);
      // what the gateway would store is valid FHIR R4 (every kind, every variant)
      auto fhirCheck = fhir::Validator::instance().validate(bundle.dump(), "Bundle");
      ASSERT_FALSE(fhirCheck.hasErrors()) << kind << " seed " << seed << ": " << fhirCheck.issues[0].expression << " "
                                          << fhirCheck.issues[0].diagnostics << "\n" << doc.dump(1);
      Json back = mappings.fromBundle(bundle, issues);
      ASSERT_TRUE(issues.empty()) << kind << " seed " << seed << ": " << issues[0].path << " " << issues[0].message;
      ASSERT_EQ(nlohmann::json(back), nlohmann::json(doc)) << kind << " seed " << seed << "\nsent: " << doc.dump(1)
                                                           << "\nback: " << back.dump(1);
      // and the document read back is itself valid
      EXPECT_TRUE(schemas.validate(kind, back).empty()) << kind << " seed " << seed;
    }
    EXPECT_GE(valid, 30) << kind << ": too few valid variants to mean anything";
    ++kinds;
  }
  EXPECT_EQ(kinds, 14);
}

}  // namespace
}  // namespace passerelle::network
