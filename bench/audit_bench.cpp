// passerelle_bench_audit: the audit trail's append throughput (durable group commit) with 1, 4 and
// 16 threads appending at once, and verify() speed over a log of 1,000,000 records.
// The logs are written under $TMPDIR (or /tmp) and removed at the end, or kept in
// $PASSERELLE_AUDIT_BENCH_DIR (the 1M-record log is then built only once).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "gateway/audit/audit_log.h"

using passerelle::audit::AuditLog;
using passerelle::audit::Options;
using passerelle::audit::Record;

namespace {

namespace fs = std::filesystem;

// PASSERELLE_AUDIT_BENCH_DIR: a folder kept between runs (the 1M-record log is built once).
bool keepRoot() {
  const char* keep = std::getenv("PASSERELLE_AUDIT_BENCH_DIR");
  return keep && *keep;
}

fs::path benchRoot() {
  static fs::path root = [] {
    const char* tmp = std::getenv("TMPDIR");
    fs::path p = keepRoot() ? fs::path(std::getenv("PASSERELLE_AUDIT_BENCH_DIR"))
                            : fs::path(tmp && *tmp ? tmp : "/tmp") / ("passerelle-audit-bench-" + std::to_string(::getpid()));
    fs::create_directories(p);
    return p;
  }();
  return root;
}

Options optionsIn(const fs::path& dir) {
  Options o;
  o.url = "sqlite:" + (dir / "audit.db").string();
  o.checkpointDir = (dir / "checkpoints").string();
  return o;
}

// A typical REST record: a GP reading an Observation of one patient.
Record sample(std::int64_t i) {
  Record r;
  r.kind = "rest";
  r.action = i % 4 == 0 ? "search" : "read";
  r.outcome = i % 20 == 0 ? "denied" : "granted";
  r.status = i % 20 == 0 ? 403 : 200;
  r.reason = i % 20 == 0 ? "no-care-relationship" : "";
  r.subject = "3f9c1a7e-" + std::to_string(i % 500);
  r.role = "gp";
  r.practitioner = "rpps:10101" + std::to_string(100000 + i % 500);
  r.tokenId = "jti-" + std::to_string(i);
  r.purpose = "TREAT";
  r.sourceAddress = "10.1.2." + std::to_string(i % 250) + ":51234";
  r.method = "GET";
  r.resourceType = "Observation";
  r.path = "/fhir/Observation/" + std::to_string(i);
  r.query = i % 4 == 0 ? "patient=Patient/" + std::to_string(i % 5000) + "&code=http://loinc.org|72514-3" : "";
  r.resources = {"Observation/" + std::to_string(i)};
  r.patients = {std::to_string(i % 5000)};
  return r;
}

AuditLog* shared = nullptr;

void BM_Append(benchmark::State& state) {
  static fs::path dir;
  static std::atomic<std::int64_t> counter{0};
  if (state.thread_index() == 0) {
    dir = benchRoot() / ("append-" + std::to_string(state.threads()));
    fs::remove_all(dir);
    auto log = AuditLog::open(optionsIn(dir));
    if (!log.ok()) {
      state.SkipWithError(log.error().message.c_str());
      return;
    }
    shared = log.value().release();
  }
  for (auto _ : state) {
    auto r = shared->append(sample(counter++));
    if (!r.ok()) {
      state.SkipWithError(r.error().message.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    delete shared;
    shared = nullptr;
    fs::remove_all(dir);
  }
}
BENCHMARK(BM_Append)->Threads(1)->Threads(4)->Threads(16)->UseRealTime()->MinTime(2.0);

// Builds the 1M-record log once, through append() from many threads (durable group commits).
const Options& millionLog() {
  static Options options = [] {
    Options o = optionsIn(benchRoot() / "verify");
    o.checkpointRecords = 10000;
    constexpr std::int64_t kRecords = 1000000;
    if (keepRoot() && fs::exists(benchRoot() / "verify")) {
      auto report = passerelle::audit::verify(o.url, o.checkpointDir, "");
      if (report.ok && report.records == kRecords) return o;
      fs::remove_all(benchRoot() / "verify");
    }
    auto log = AuditLog::open(o);
    if (!log.ok()) {
      std::cerr << "cannot open: " << log.error().message << "\n";
      std::exit(1);
    }
    std::atomic<std::int64_t> next{0};
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < 128; ++t)
      threads.emplace_back([&] {
        for (std::int64_t i; (i = next++) < kRecords;)
          if (!log.value()->append(sample(i)).ok()) std::exit(1);
      });
    for (auto& t : threads) t.join();
    log.value()->close();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cerr << "built a log of " << kRecords << " records with 128 appending threads in " << s << " s ("
              << static_cast<std::int64_t>(kRecords / s) << " records/s)\n";
    return o;
  }();
  return options;
}

void BM_Verify(benchmark::State& state) {
  const Options& o = millionLog();
  std::int64_t records = 0;
  for (auto _ : state) {
    auto report = passerelle::audit::verify(o.url, o.checkpointDir, "");
    if (!report.ok) {
      state.SkipWithError(report.problem.c_str());
      break;
    }
    records += report.records;
    state.counters["checkpoints"] = static_cast<double>(report.checkpoints);
  }
  state.SetItemsProcessed(records);
}
BENCHMARK(BM_Verify)->Unit(benchmark::kSecond)->Iterations(3)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (!keepRoot()) fs::remove_all(benchRoot());
  return 0;
}
