// passerelle_bench_mllp_load: an MLLP load driver. N connections each send their share of M HL7 v2
// messages one after the other (the next once the acknowledgement of the previous came back, as
// MLLP senders do), over connectors/mllp's sender. Messages: ADT^A31 (update person information)
// from the partner BENCH for patients whose INS are 1000000000000 + i (i < --patients), each with
// its own control id. Prints one JSON line: rate, latency percentiles, acknowledgement codes.
//   passerelle_bench_mllp_load --port P [--host H] [--connections 8] [--messages 20000] [--patients 100]
//                              [--facility BENCH] [--run ID]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "connectors/mllp/mllp_transport.h"

namespace {

std::string argOf(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == "--" + name) return argv[i + 1];
  return fallback;
}

std::string message(const std::string& facility, const std::string& control, long patient) {
  return "MSH|^~\\&|BENCH-EAI|" + facility + "|PASSERELLE|DOULEUR77|20261206101500||ADT^A31^ADT_A05|" + control +
         "|P|2.5|||||FRA|UNICODE UTF-8\r"
         "EVN||20261206101500\r"
         "PID|1||" + std::to_string(1000000000000L + patient) +
         "^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS~" + std::to_string(patient) +
         "^^^BENCH&1.2.250.1.71.4.2.2&ISO^PI||DUPONT^Marie^Claire^^^^L||19700101|F|||1 rue de la Paix^^MEAUX^^77100^FRA^H\r"
         "PV1|1|N\r";
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = argOf(argc, argv, "host", "127.0.0.1");
  int port = std::atoi(argOf(argc, argv, "port", "0").c_str());
  int connections = std::max(1, std::atoi(argOf(argc, argv, "connections", "8").c_str()));
  long total = std::atol(argOf(argc, argv, "messages", "20000").c_str());
  long patients = std::max(1L, std::atol(argOf(argc, argv, "patients", "100").c_str()));
  std::string facility = argOf(argc, argv, "facility", "BENCH");
  std::string run = argOf(argc, argv, "run", std::to_string(std::chrono::system_clock::now().time_since_epoch().count()));
  if (port <= 0) {
    std::cerr << "usage: passerelle_bench_mllp_load --port P [--connections N] [--messages M]\n";
    return 2;
  }
  std::vector<std::vector<double>> latencies(static_cast<std::size_t>(connections));
  std::mutex codesMutex;
  std::map<std::string, long> codes;
  std::atomic<long> failures{0};
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      passerelle::mllp::SenderOptions so;
      so.host = host;
      so.port = port;
      so.answerTimeoutMs = 60000;
      passerelle::mllp::Sender sender(so);
      std::map<std::string, long> mine;
      auto& lat = latencies[static_cast<std::size_t>(c)];
      for (long i = c; i < total; i += connections) {
        std::string m = message(facility, run + "-" + std::to_string(i), i % patients);
        auto t0 = std::chrono::steady_clock::now();
        auto out = sender.exchange(m);
        auto t1 = std::chrono::steady_clock::now();
        if (!out.answered) {
          ++failures;
          continue;
        }
        lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        auto msa = out.answer.find("MSA|");
        ++mine[msa == std::string::npos ? "?" : out.answer.substr(msa + 4, 2)];
      }
      std::lock_guard<std::mutex> lock(codesMutex);
      for (const auto& [k, v] : mine) codes[k] += v;
    });
  }
  for (auto& t : threads) t.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) { return all.empty() ? 0.0 : all[std::min(all.size() - 1, static_cast<std::size_t>(p * static_cast<double>(all.size())))]; };
  std::printf("{\"connections\":%d,\"messages\":%zu,\"seconds\":%.3f,\"rate\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f,\"failures\":%ld,\"acks\":{",
              connections, all.size(), seconds, static_cast<double>(all.size()) / seconds, pct(0.5), pct(0.99), failures.load());
  bool first = true;
  for (const auto& [k, v] : codes) {
    std::printf("%s\"%s\":%ld", first ? "" : ",", k.c_str(), v);
    first = false;
  }
  std::printf("}}\n");
  return failures.load() > 0 ? 1 : 0;
}
