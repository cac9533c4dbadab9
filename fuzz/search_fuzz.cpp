// Fuzz target: a search URL ("Type?query") is parsed, and when it parses, run against a small
// SQLite store. A search may be refused (400) but must never fail inside the database: that
// would be a query the planner built wrong.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "gateway/fhir/search_params.h"
#include "gateway/search/index_extractor.h"
#include "gateway/search/search_definitions.h"
#include "gateway/store/resource_store.h"
#include "mappings/fhir/resource_types.h"

namespace {

using namespace passerelle;

const char* kSeedResources[] = {
    R"({"resourceType":"Patient","id":"p1","name":[{"family":"Dupré","given":["Hélène"]}],"birthDate":"1960-05",
        "identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":"1234567890123"}],
        "generalPractitioner":[{"reference":"Practitioner/d1"}],"meta":{"tag":[{"system":"urn:t","code":"x"}]}})",
    R"({"resourceType":"Practitioner","id":"d1","name":[{"family":"Martin"}]})",
    R"({"resourceType":"Observation","id":"o1","status":"final","subject":{"reference":"Patient/p1"},
        "code":{"coding":[{"system":"http://loinc.org","code":"72514-3","display":"Pain"}]},
        "effectivePeriod":{"start":"2025-03-04"},"valueQuantity":{"value":7,"system":"http://unitsofmeasure.org","code":"{score}"},
        "component":[{"code":{"text":"c"},"valueString":"abc"}]})"};

store::ResourceStore& theStore() {
  static std::unique_ptr<store::ResourceStore> s = [] {
    std::string dir = std::filesystem::temp_directory_path().string() + "/passerelle-search-fuzz-" + std::to_string(getpid());
    std::filesystem::create_directories(dir);
    auto opened = store::openStore("sqlite:" + dir + "/f.db", store::StoreOptions{});
    if (!opened.ok()) std::abort();
    auto st = std::move(opened.value());
    for (const char* text : kSeedResources) {
      auto json = nlohmann::ordered_json::parse(text);
      store::ResourceVersion v;
      v.type = json["resourceType"];
      v.id = json["id"];
      v.version = 1;
      v.method = "PUT";
      v.body = json.dump();
      auto rows = search::extractIndex(search::SearchDefinitions::r4(), v.type, json, "");
      if (!st->write([&](store::WriteTxn& t) { return t.put(v, rows); }).ok()) std::abort();
    }
    std::atexit([] { std::filesystem::remove_all(std::filesystem::temp_directory_path().string() + "/passerelle-search-fuzz-" +
                                                 std::to_string(getpid())); });
    return st;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  if (text.size() > 4096) return 0;
  auto q = text.find('?');
  std::string type = text.substr(0, q);
  if (!type.empty() && !fhir::isResourceType(type)) return 0;
  auto params = fhir::parseQueryString(q == std::string::npos ? "" : text.substr(q + 1));
  for (bool strict : {false, true}) {
    auto ps = fhir::parseSearch(type, params, fhir::SearchLimits{}, strict, "http://fuzz.example/fhir");
    if (!ps.ok()) {
      if (ps.error().code != ErrorCode::kInvalid) __builtin_trap();
      continue;
    }
    auto page = theStore().search(ps->query);
    if (!page.ok() && page.error().code != ErrorCode::kInvalid) {
      fprintf(stderr, "search failed: %s\n", page.error().message.c_str());
      __builtin_trap();
    }
  }
  return 0;
}
