// Fuzz target: a network document ("<kind>\n" then JSON or XML) through what the gateway does to
// it: the XML form or the limited JSON parser, the schema, the rules against an empty dossier, the
// derived values, the mapping to FHIR and back. A valid document that does not come back equal is
// a failure, as is any crash.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "mappings/fhir/json_reader.h"
#include "mappings/network/documents/document_schemas.h"
#include "mappings/network/documents/xml_form.h"
#include "mappings/network/mapping_engine.h"
#include "mappings/network/rules/rules.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace passerelle;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto nl = input.find('\n');
  if (nl == std::string_view::npos || nl > 32) return 0;
  std::string kind(input.substr(0, nl));
  std::string_view text = input.substr(nl + 1);
  const auto& schemas = network::DocumentSchemas::instance();
  const auto& mappings = network::MappingSet::builtIn();
  if (!schemas.hasKind(kind) || !mappings.has(kind)) return 0;
  network::Json doc;
  auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && text[first] == '<') {
    std::vector<network::DocumentIssue> issues;
    if (!network::xmlToJson(kind, text, doc, issues)) return 0;
  } else {
    fhir::JsonError err;
    if (!fhir::parseJson(text, fhir::JsonLimits{}, doc, err)) return 0;
  }
  if (!schemas.validate(kind, doc).empty()) return 0;
  network::RuleContext ctx;
  ctx.today = "2026-11-23";
  (void)network::checkRules(kind, doc, ctx, network::RuleConfig{});
  network::Json derived = network::deriveValues(kind, doc, ctx, network::RuleConfig{});
  std::vector<network::MappingIssue> issues;
  network::Json bundle = mappings.toBundle(kind, doc, derived, issues);
  if (!issues.empty()) return 0;  // a code without translation: refused, not a failure
  network::Json back = mappings.fromBundle(bundle, issues);
  if (!issues.empty() || nlohmann::json(back) != nlohmann::json(doc)) __builtin_trap();
  // the XML form of a valid document reads back equal too
  std::string xml = network::jsonToXml(kind, doc);
  network::Json again;
  std::vector<network::DocumentIssue> xi;
  if (!network::xmlToJson(kind, xml, again, xi) || nlohmann::json(again) != nlohmann::json(doc)) __builtin_trap();
  return 0;
}
