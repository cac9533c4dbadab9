// One CDA document's cost, step by step (Google Benchmark): reading it under the XML hardening
// without a schema (the parse), reading it validated against the HL7 CDA R2 schema (parse and
// schema), and mapping what was read to FHIR (the Bundle written as JSON text). The document is a
// CI-SIS level 1 consult note with a 2 KB PDF (bench/gp/make_cda.py's). The schema is
// $CDA_SCHEMA, else ../shared/corpora's CDA_SDTC.xsd; without it the validated step is skipped.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mappings/cda/cda.h"

namespace {

std::string document() {
  std::string pdf = "JVBERi0xLjQK";
  for (int i = 0; i < 680; ++i) pdf += "eHh4";
  return std::string(R"(<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <id root="2.999.77.1" extension="BENCH-000001"/>
  <code code="11488-4" codeSystem="2.16.840.1.113883.6.1" displayName="Compte rendu de consultation"/>
  <title>Compte rendu de consultation</title>
  <effectiveTime value="20260905101500+0200"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="185057512345673"/>
    <patient><name><given>Julien</given><family qualifier="BR">DURAND</family></name>
      <administrativeGenderCode code="M" codeSystem="2.16.840.1.113883.5.1"/><birthTime value="19850514"/></patient>
  </patientRole></recordTarget>
  <author><time value="20260905101500+0200"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="810101234567"/>
    <assignedPerson><name><given>Sophie</given><family>MARTIN</family></name></assignedPerson></assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization><id root="1.2.250.1.71.4.2.2" extension="1770000001"/>
    <name>Clinique de Seine-et-Marne</name></representedCustodianOrganization></assignedCustodian></custodian>
  <component><nonXMLBody><text mediaType="application/pdf" representation="B64">)") + pdf + R"(</text></nonXMLBody></component>
</ClinicalDocument>
)";
}

std::string schemaPath() {
  if (const char* p = std::getenv("CDA_SCHEMA")) return p;
  std::string p = std::string(PASSERELLE_CORPORA_DIR) + "/hl7-cda-core-2.0/schema/extensions/SDTC/infrastructure/cda/CDA_SDTC.xsd";
  return std::filesystem::exists(p) ? p : "";
}

void BM_CdaParse(benchmark::State& state) {
  std::string xml = document();
  for (auto _ : state) {
    passerelle::cda::Document d;
    std::vector<passerelle::cda::Issue> issues;
    if (!passerelle::cda::read(xml, nullptr, {}, d, issues)) state.SkipWithError("not read");
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CdaParse);

// Parse and validation against `path` (its includes from `components` when not beside it).
void parseAndSchema(benchmark::State& state, const std::string& path, const std::string& components) {
  std::string error;
  if (path.empty()) {
    state.SkipWithError("no CDA schema (CDA_SCHEMA, or ../shared/corpora)");
    return;
  }
  auto schema = passerelle::cda::Schema::load(path, error, components);
  if (!schema) {
    state.SkipWithError(error.c_str());
    return;
  }
  std::string xml = document();
  for (auto _ : state) {
    passerelle::cda::Document d;
    std::vector<passerelle::cda::Issue> issues;
    if (!passerelle::cda::read(xml, schema.get(), {}, d, issues)) state.SkipWithError("not valid");
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_CdaParseAndSchema(benchmark::State& state) { parseAndSchema(state, schemaPath(), ""); }
BENCHMARK(BM_CdaParseAndSchema);

// The French root (schemas/cda/CDA_FR.xsd) over the ANS components: the HL7 schema plus SDTC,
// pharmacy, lab and DICOM extensions and the self-presenting envelope.
void BM_CdaParseAndFrenchSchema(benchmark::State& state) {
  std::string components = std::string(PASSERELLE_CORPORA_DIR) + "/ans-testcontenucda-3.0/infrastructure/cda";
  parseAndSchema(state, std::filesystem::exists(components) ? std::string(PASSERELLE_CDA_SCHEMAS) + "/CDA_FR.xsd" : "", components);
}
BENCHMARK(BM_CdaParseAndFrenchSchema);

void BM_CdaMap(benchmark::State& state) {
  std::string xml = document();
  passerelle::cda::Document d;
  std::vector<passerelle::cda::Issue> issues;
  passerelle::cda::read(xml, nullptr, {}, d, issues);
  for (auto _ : state) {
    nlohmann::json b;
    passerelle::cda::toBundle(d, xml, b);
    std::string text = b.dump();
    benchmark::DoNotOptimize(text);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CdaMap);

}  // namespace

BENCHMARK_MAIN();
