// passerelle_bench_hl7v2: the HL7 v2 reader, messages/s, parsing each message of
// $PASSERELLE_HL7_MESSAGES (a JSON array, bench/hl7v2/generate.py) and reading what the node peers
// of bench/hl7v2/run.sh read: MSH-9 (type and trigger), PID-3 (each repetition's first
// component), PID-5 (family, given), PID-7, and every OBX-3.1 and OBX-5, unescaped.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "mappings/hl7v2/fhir_mapping.h"
#include "mappings/hl7v2/message.h"

namespace {

const std::vector<std::string>& messages() {
  static const std::vector<std::string> all = [] {
    const char* path = std::getenv("PASSERELLE_HL7_MESSAGES");
    std::vector<std::string> out;
    if (!path) {
      std::cerr << "set PASSERELLE_HL7_MESSAGES to a JSON array of messages (bench/hl7v2/generate.py)\n";
      std::exit(2);
    }
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    for (const auto& m : nlohmann::json::parse(ss.str())) out.push_back(m.get<std::string>());
    return out;
  }();
  return all;
}

// One Message and one issue list for the whole run, as a connection's reader keeps them: their
// buffers are reused from message to message.
std::size_t parseAndRead(std::string_view text, passerelle::hl7v2::Message& message, std::vector<passerelle::hl7v2::Issue>& issues) {
  issues.clear();
  if (!message.read(text, issues)) return 0;
  const auto* m = &message;
  std::size_t c = m->value(0, 9, 1, 1).size() + m->value(0, 9, 1, 2).size();
  if (auto pid = m->find("PID")) {
    int reps = m->repetitions(*pid, 3);
    for (int r = 1; r <= reps; ++r) c += m->value(*pid, 3, r, 1).size();
    c += m->value(*pid, 5, 1, 1).size() + m->value(*pid, 5, 1, 2).size() + m->value(*pid, 7, 1, 1).size();
  }
  for (auto obx = m->find("OBX"); obx; obx = m->find("OBX", *obx + 1))
    c += m->value(*obx, 3, 1, 1).size() + m->value(*obx, 5, 1, 0, 0).size();
  return c;
}

void BM_ParseAndRead(benchmark::State& state) {
  const auto& all = messages();
  std::size_t i = 0, checksum = 0;
  passerelle::hl7v2::Message message;
  std::vector<passerelle::hl7v2::Issue> issues;
  for (auto _ : state) {
    checksum += parseAndRead(all[i], message, issues);
    if (++i == all.size()) i = 0;
  }
  benchmark::DoNotOptimize(checksum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseAndRead)->MinTime(3.0);

// HL7 v2 -> FHIR: parse, read the facts, build the transaction Bundle (Patient; Encounter for ADT;
// an Observation per result of an ORU) and serialise it, as `passerelle convert --from hl7v2` does.
void BM_V2ToFhirBundle(benchmark::State& state) {
  const auto& all = messages();
  std::size_t i = 0, bytes = 0;
  std::vector<passerelle::hl7v2::Issue> issues;
  std::string text;  // reused: the Bundle is written into it
  // Resources per message, counted once outside the timed loop.
  std::size_t resources = 0;
  for (const auto& msg : all) {
    auto m = passerelle::hl7v2::Message::parse(msg, issues);
    if (!m) continue;
    passerelle::hl7v2::toBundleJson(passerelle::hl7v2::readInbound(*m, issues), text);
    resources += nlohmann::json::parse(text)["entry"].size();
  }
  passerelle::hl7v2::Message m;
  for (auto _ : state) {
    issues.clear();
    if (m.read(all[i], issues)) {
      auto facts = passerelle::hl7v2::readInbound(m, issues);
      passerelle::hl7v2::toBundleJson(facts, text);
      bytes += text.size();
    }
    if (++i == all.size()) i = 0;
  }
  benchmark::DoNotOptimize(bytes);
  state.SetItemsProcessed(state.iterations());
  state.counters["resources_per_message"] = static_cast<double>(resources) / static_cast<double>(all.size());
}
BENCHMARK(BM_V2ToFhirBundle)->MinTime(3.0);

}  // namespace

BENCHMARK_MAIN();
