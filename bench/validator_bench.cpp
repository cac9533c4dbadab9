// Throughput of the FHIR R4 validator (parse + validate) on realistic resources: a Patient, an
// Observation, an Encounter, a transaction Bundle of 100 entries and one of 1,000 entries whose
// references resolve between entries; the Patient against the network's patient profile as well
// (both passes, each parsing); the three resources read from FHIR XML first, and xerces-c's scan of
// that XML alone (the floor of the XML path). Reports resources/s and MB/s.
// bench/validation.sh runs it beside the ajv peer on the same inputs.
#include <benchmark/benchmark.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>

#include "mappings/fhir/fhirpath/fhirpath.h"
#include "mappings/fhir/profiles/packages.h"
#include "mappings/fhir/profiles/profile_validator.h"
#include "mappings/fhir/validator.h"
#include "mappings/fhir/xml/fhir_xml.h"
#include "mappings/xml/secure_xml.h"

#include <xercesc/framework/MemBufInputSource.hpp>

namespace {

// The inputs are the files of bench/data/validation, shared with the ajv peer (bench/ajv).
std::string load(const char* name) {
  std::ifstream in(std::string(PASSERELLE_BENCH_DATA) + "/" + name + ".json", std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) throw std::runtime_error(std::string("missing bench/data/validation/") + name + ".json");
  return ss.str();
}

const std::string kPatient = load("patient");
const std::string kObservation = load("observation");
const std::string kEncounter = load("encounter");

std::string bundleOf100() {
  std::string b = R"({"resourceType":"Bundle","type":"transaction","entry":[)";
  for (int i = 0; i < 100; ++i) {
    if (i) b += ',';
    const std::string& r = i % 3 == 0 ? kPatient : i % 3 == 1 ? kObservation : kEncounter;
    std::string type = i % 3 == 0 ? "Patient" : i % 3 == 1 ? "Observation" : "Encounter";
    b += R"({"fullUrl":"urn:uuid:00000000-0000-4000-8000-)" + std::string(12 - std::to_string(i).size(), '0') +
         std::to_string(i) + R"(","resource":)" + r + R"(,"request":{"method":"POST","url":")" + type + R"("}})";
  }
  return b + "]}";
}

// A transaction of 1,000 entries whose Observations and Encounters reference the Patient created
// in the same transaction by its urn:uuid (each resolved against the entries' fullUrls).
std::string bundleOf1000() {
  auto urn = [](int i) {
    std::string n = std::to_string(i);
    return "urn:uuid:00000000-0000-4000-8000-" + std::string(12 - n.size(), '0') + n;
  };
  std::string b = R"({"resourceType":"Bundle","type":"transaction","entry":[)";
  int patient = 0;
  for (int i = 0; i < 1000; ++i) {
    if (i) b += ',';
    std::string r = i % 3 == 0 ? kPatient : i % 3 == 1 ? kObservation : kEncounter;
    std::string type = i % 3 == 0 ? "Patient" : i % 3 == 1 ? "Observation" : "Encounter";
    if (i % 3 == 0) patient = i;
    for (std::size_t at = r.find("\"Patient/pat-0001\""); at != std::string::npos; at = r.find("\"Patient/pat-0001\""))
      r.replace(at, 18, "\"" + urn(patient) + "\"");
    b += R"({"fullUrl":")" + urn(i) + R"(","resource":)" + r + R"(,"request":{"method":"POST","url":")" + type + R"("}})";
  }
  return b + "]}";
}

void run(benchmark::State& state, const std::string& json, int resources) {
  const auto& validator = passerelle::fhir::Validator::instance();
  for (auto _ : state) {
    auto result = validator.validate(json);
    if (result.hasErrors()) {
      state.SkipWithError(("unexpected issue: " + result.issues[0].expression + ": " + result.issues[0].diagnostics)
                              .c_str());
      break;
    }
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations() * resources);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(json.size()));
}

// The Patient as the network profile wants it: its network identifier in the network's system.
std::string networkPatient() {
  std::string p = kPatient;
  const std::string from = "http://douleur77.example/patients", to = "https://douleur77.fr/fhir/sid/patient";
  p.replace(p.find(from), from.size(), to);
  return p;
}

void BM_ValidatePatientWithProfile(benchmark::State& state) {
  static const std::string patient = networkPatient();
  static passerelle::fhir::profiles::ProfileRegistry registry;
  static const bool loaded = [] {
    std::string error;
    return passerelle::fhir::profiles::loadNetworkPackage(registry, error);
  }();
  if (!loaded) {
    state.SkipWithError("the network package does not load");
    return;
  }
  const std::string url = std::string(passerelle::fhir::profiles::kNetworkProfileBase) + "network-patient";
  passerelle::fhir::profiles::ProfileValidator profiles(registry);
  for (auto _ : state) {
    auto result = profiles.validateWithBase(patient, url);
    if (result.hasErrors()) {
      state.SkipWithError(("unexpected issue: " + result.issues[0].expression + ": " + result.issues[0].diagnostics)
                              .c_str());
      break;
    }
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(patient.size()));
}

// FHIR XML read into JSON (one reused buffer), then validated.
void runXml(benchmark::State& state, const std::string& json) {
  std::string xml, converted;
  std::vector<passerelle::fhir::Issue> issues;
  if (!passerelle::fhir::fhirJsonToXml(json, xml, issues)) {
    state.SkipWithError("the input cannot be written as XML");
    return;
  }
  const auto& validator = passerelle::fhir::Validator::instance();
  for (auto _ : state) {
    issues.clear();
    bool read = passerelle::fhir::fhirXmlToJson(xml, converted, issues);
    auto result = validator.validate(converted);
    if (!read || result.hasErrors()) {
      state.SkipWithError("unexpected issue in the XML path");
      break;
    }
    benchmark::DoNotOptimize(result);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(xml.size()));
}

// The floor of the XML path: xerces-c alone, configured as the FHIR XML reader configures it (the
// well-formedness scanner, namespaces, nothing loaded from outside), reused, reporting each element
// to a handler that does nothing. No conversion, no validation.
void runXmlScanOnly(benchmark::State& state, const std::string& json) {
  namespace xc = XERCES_CPP_NAMESPACE;
  std::string xml;
  std::vector<passerelle::fhir::Issue> issues;
  if (!passerelle::fhir::fhirJsonToXml(json, xml, issues) || !passerelle::xml::start().empty()) {
    state.SkipWithError("the input cannot be written as XML");
    return;
  }
  auto reader = passerelle::xml::newWellFormednessReader();
  xc::DefaultHandler nothing;
  reader->setContentHandler(&nothing);
  reader->setErrorHandler(&nothing);
  for (auto _ : state) {
    xc::MemBufInputSource source(reinterpret_cast<const XMLByte*>(xml.data()), xml.size(), "document", false);
    source.setEncoding(xc::XMLUni::fgUTF8EncodingString);
    reader->parse(source);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(xml.size()));
}

// An invariant's matches() on the longest string the regular expression functions accept (16 KiB of
// letters), with a pattern that could start at every position and matches nowhere.
void BM_InvariantMatchesLongString(benchmark::State& state) {
  std::string error;
  auto expression = passerelle::fhir::fhirpath::Expression::compile(R"(name.family.matches('[a-z]+@[a-z]+\\.fr'))", error);
  simdjson::dom::parser parser;
  simdjson::dom::element resource;
  std::string json = R"({"resourceType":"Patient","name":[{"family":")" + std::string(16 * 1024, 'a') + R"("}]})";
  if (!expression || parser.parse(json).get(resource) != simdjson::SUCCESS) {
    state.SkipWithError(("cannot compile: " + error).c_str());
    return;
  }
  passerelle::fhir::fhirpath::Collection out;
  for (auto _ : state) {
    out.clear();
    if (!expression->evaluate(resource, resource, out, error) || out.size() != 1) {
      state.SkipWithError(("unexpected result: " + error).c_str());
      break;
    }
  }
  state.SetBytesProcessed(state.iterations() * 16 * 1024);
}

void BM_ValidatePatient(benchmark::State& s) { run(s, kPatient, 1); }
void BM_XmlScanOnlyPatient(benchmark::State& s) { runXmlScanOnly(s, kPatient); }
void BM_XmlScanOnlyObservation(benchmark::State& s) { runXmlScanOnly(s, kObservation); }
void BM_XmlScanOnlyEncounter(benchmark::State& s) { runXmlScanOnly(s, kEncounter); }
void BM_ValidatePatientXml(benchmark::State& s) { runXml(s, kPatient); }
void BM_ValidateObservationXml(benchmark::State& s) { runXml(s, kObservation); }
void BM_ValidateEncounterXml(benchmark::State& s) { runXml(s, kEncounter); }
void BM_ValidateObservation(benchmark::State& s) { run(s, kObservation, 1); }
void BM_ValidateEncounter(benchmark::State& s) { run(s, kEncounter, 1); }
void BM_ValidateBundle100(benchmark::State& s) {
  static const std::string bundle = bundleOf100();
  run(s, bundle, 101);
}

void BM_ValidateBundle1000(benchmark::State& s) {
  static const std::string bundle = bundleOf1000();
  run(s, bundle, 1001);
}

}  // namespace

BENCHMARK(BM_ValidatePatient);
BENCHMARK(BM_ValidateObservation);
BENCHMARK(BM_ValidateEncounter);
BENCHMARK(BM_ValidateBundle100);
BENCHMARK(BM_ValidateBundle1000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ValidatePatientWithProfile);
BENCHMARK(BM_ValidatePatientXml);
BENCHMARK(BM_ValidateObservationXml);
BENCHMARK(BM_ValidateEncounterXml);
BENCHMARK(BM_XmlScanOnlyPatient);
BENCHMARK(BM_XmlScanOnlyObservation);
BENCHMARK(BM_XmlScanOnlyEncounter);
BENCHMARK(BM_InvariantMatchesLongString)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
