// Seeds a store directly with a national-scale cohort for bench/extract/national.sh: what
// bench/extract/seed.py sends through the REST API (a Patient with an INS, its pathology, a D77
// EpisodeOfCare, an active Consent, a CIED and a CSB of semester 1 with their measures), with 20
// Observations per patient: at the CIED the pain score (VAS), the Dallas questionnaire with its
// four dimensions, the quality-of-life score, the opioid dose and two drug classes, and the six
// care-use counts of the six months before; at the CSB the VAS, Dallas, quality of life, one drug
// class and four care-use counts of the semester. 26 resources per patient.
//
// Written through the store's own interface, 250 patients per commit, without search index rows
// (the extracts read by store scan, in id order; the gateway is told the index is current so that
// it does not rebuild it at start). Ids are time-ordered UUIDs, as the gateway assigns them.
//   passerelle_bench_extract_seed DB_PATH PATIENTS
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "gateway/search/search_definitions.h"
#include "gateway/store/resource_store.h"

using namespace passerelle;

namespace {

const std::string kCs = "https://douleur77.fr/fhir/CodeSystem/";
const std::string kSd = "https://douleur77.fr/fhir/StructureDefinition/";

// Shaped like the ids the gateway assigns (UUID version 7: a millisecond clock first, then random
// bits), one clock tick per resource: a type's ids are in the order of writing, as in a dossier
// written through the API; unique (kind and n are in the random part).
std::string uuid(int kind, long n) {
  static std::uint64_t clock = 0x018f00000000ULL;
  std::uint64_t ms = ++clock;
  char b[40];
  std::snprintf(b, sizeof b, "%08x-%04x-7%03x-8000-%012lx", static_cast<unsigned>(ms >> 16), static_cast<unsigned>(ms & 0xFFFF),
                static_cast<unsigned>(kind & 0xFFF), static_cast<unsigned long>(n));
  return b;
}

std::string date(int daysFrom20250701) {
  // Days after 2025-07-01, as YYYY-MM-DD (proleptic Gregorian).
  static const int kMonth[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int y = 2025, m = 6, d = daysFrom20250701;  // m: 0-based
  if (d < 0) {
    // back in time: walk months backwards
    while (d < 0) {
      m = m == 0 ? 11 : m - 1;
      if (m == 11) --y;
      int len = kMonth[m] + (m == 1 && y % 4 == 0 ? 1 : 0);
      d += len;
    }
  } else {
    while (true) {
      int len = kMonth[m] + (m == 1 && y % 4 == 0 ? 1 : 0);
      if (d < len) break;
      d -= len;
      m = m == 11 ? 0 : m + 1;
      if (m == 0) ++y;
    }
  }
  char b[16];
  std::snprintf(b, sizeof b, "%04d-%02d-%02d", y, m + 1, d + 1);
  return b;
}

std::string nir(long n) {
  char base[32];
  std::snprintf(base, sizeof base, "1%02ld%02ld77%03ld%03ld", 50 + n % 40, 1 + n % 12, n % 1000, n / 1000 % 1000);
  long long v = std::atoll(base);
  char out[40];
  std::snprintf(out, sizeof out, "%s%02lld", base, 97 - v % 97);
  return out;
}

std::string quantity(double value, const std::string& code) {
  char b[200];
  std::snprintf(b, sizeof b, R"({"value":%g,"unit":"%s","system":"http://unitsofmeasure.org","code":"%s"})", value, code.c_str(), code.c_str());
  return b;
}

std::string meta(const std::string& instant) { return R"("meta":{"versionId":"1","lastUpdated":")" + instant + R"("})"; }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: passerelle_bench_extract_seed DB_PATH PATIENTS\n";
    return 2;
  }
  std::string path = argv[1];
  long patients = std::atol(argv[2]);
  store::StoreOptions options;
  auto opened = store::openStore("sqlite:" + path, options);
  if (!opened.ok()) {
    std::cerr << opened.error().message << "\n";
    return 1;
  }
  auto& st = *opened.value();
  const std::string instant = "2026-12-01T00:00:00.000Z";
  const std::int64_t ms = 1796083200000;
  const char* pathologies[] = {"low-back-pain", "migraine", "cancer"};
  auto started = std::chrono::steady_clock::now();
  std::vector<store::ResourceVersion> batch;
  long written = 0;
  auto add = [&](const std::string& type, const std::string& id, std::string body) {
    store::ResourceVersion v;
    v.type = type;
    v.id = id;
    v.version = 1;
    v.lastUpdatedMs = ms;
    v.method = "POST";
    v.body = std::move(body);
    batch.push_back(std::move(v));
  };
  auto flush = [&]() {
    auto w = st.write([&](store::WriteTxn& t) -> Result<void> {
      for (auto& v : batch)
        if (auto r = t.put(v, store::IndexRows{}); !r.ok()) return r;
      return {};
    });
    if (!w.ok()) {
      std::cerr << "write: " << w.error().message << "\n";
      std::exit(1);
    }
    written += static_cast<long>(batch.size());
    batch.clear();
  };
  for (long n = 0; n < patients; ++n) {
    int day = static_cast<int>(n % 360);  // inclusions from 2025-07-01 over a year
    std::string inclusion = date(day), csb = date(day + 182), before = date(day - 182), lastBefore = date(day - 1), lastS1 = date(day + 181);
    std::string p = uuid(1, n), c = uuid(2, n), ep = uuid(3, n), consent = uuid(4, n), cied = uuid(5, n), csbId = uuid(6, n);
    add("Patient", p,
        R"({"resourceType":"Patient","id":")" + p + R"(",)" + meta(instant) + R"(,"identifier":[{"system":"urn:oid:1.2.250.1.213.1.4.8","value":")" +
            nir(n) + R"("}],"name":[{"use":"official","family":"COHORTE","given":["Personne)" + std::to_string(n) + R"("]}],"gender":")" +
            (n % 2 ? "female" : "male") + R"(","birthDate":")" + date(-static_cast<int>(n * 3 % 15000) - 9000) + R"("})");
    add("Condition", c,
        R"({"resourceType":"Condition","id":")" + c + R"(",)" + meta(instant) + R"(,"subject":{"reference":"Patient/)" + p +
            R"("},"code":{"coding":[{"system":")" + kCs + R"(pathology","code":")" + pathologies[n % 3] + R"("}]}})");
    add("EpisodeOfCare", ep,
        R"({"resourceType":"EpisodeOfCare","id":")" + ep + R"(",)" + meta(instant) + R"(,"status":"active","type":[{"coding":[{"system":")" + kCs +
            R"(d77-programme","code":"D77"}]}],"extension":[{"url":")" + kSd + R"(evaluable","valueBoolean":)" + (n % 5 ? "true" : "false") +
            R"(}],"diagnosis":[{"condition":{"reference":"Condition/)" + c + R"("}}],"patient":{"reference":"Patient/)" + p +
            R"("},"period":{"start":")" + inclusion + R"("}})");
    add("Consent", consent,
        R"({"resourceType":"Consent","id":")" + consent + R"(",)" + meta(instant) +
            R"(,"status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"treatment"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}],"patient":{"reference":"Patient/)" +
            p + R"("},"dateTime":")" + inclusion + R"(","policyRule":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTIN"}]}})");
    for (int k = 0; k < 2; ++k) {
      const std::string& id = k ? csbId : cied;
      add("Encounter", id,
          R"({"resourceType":"Encounter","id":")" + id + R"(",)" + meta(instant) +
              R"(,"status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"type":[{"coding":[{"system":")" +
              kCs + R"(d77-enc","code":")" + (k ? "CSB" : "CIED") + R"("}]}],)" +
              (k ? R"("extension":[{"url":")" + kSd + R"(csb-semester","valueInteger":1}],)" : std::string()) + R"("subject":{"reference":"Patient/)" +
              p + R"("},"period":{"start":")" + (k ? csb : inclusion) + R"("},"length":)" + quantity(k ? 25 + n % 10 : 55 + n % 20, "min") + "}");
    }
    int o = 0;
    auto observation = [&](const std::string& system, const std::string& code, const std::string& encounter, const std::string& when,
                           const std::string& start, const std::string& end, double value, const std::string& unit, const std::string& components) {
      std::string id = uuid(16 + o++, n);
      add("Observation", id,
          R"({"resourceType":"Observation","id":")" + id + R"(",)" + meta(instant) + R"(,"status":"final","code":{"coding":[{"system":")" + system +
              R"(","code":")" + code + R"("}]},"subject":{"reference":"Patient/)" + p + R"("},"encounter":{"reference":"Encounter/)" + encounter +
              R"("},)" +
              (when.empty() ? R"("effectivePeriod":{"start":")" + start + R"(","end":")" + end + R"("},)" : R"("effectiveDateTime":")" + when + R"(",)") +
              R"("valueQuantity":)" + quantity(value, unit) + components + "}");
    };
    auto dallas = [&](double base) {
      std::string out = R"(,"component":[)";
      const char* dims[] = {"DALLAS-DAILY-ACTIVITIES", "DALLAS-WORK-LEISURE", "DALLAS-ANXIETY-DEPRESSION", "DALLAS-SOCIAL-INTEREST"};
      for (int i = 0; i < 4; ++i)
        out += std::string(i ? "," : "") + R"({"code":{"coding":[{"system":")" + kCs + R"(d77-scale","code":")" + dims[i] +
               R"("}]},"valueQuantity":)" + quantity(base + i * 5, "%") + "}";
      return out + "]";
    };
    double vas = 4 + n % 6;
    // At the CIED.
    observation("http://loinc.org", "72514-3", cied, inclusion, "", "", vas, "{score}", "");
    observation(kCs + "d77-scale", "DALLAS", cied, inclusion, "", "", 55 + n % 30, "%", dallas(40 + n % 20));
    observation(kCs + "d77-scale", "QVM", cied, inclusion, "", "", 40 + n % 40, "{score}", "");
    observation(kCs + "d77-ind", "OME-DAILY", cied, inclusion, "", "", 30 + n % 60, "mg/d", "");
    observation(kCs + "d77-ind", "DRUG-N02A", cied, "", before, lastBefore, n % 4, "{count}", "");
    observation(kCs + "d77-ind", "DRUG-N02B", cied, "", before, lastBefore, 2 + n % 5, "{count}", "");
    const char* uses[] = {"SICK-LEAVE-DAYS", "HOSP-DAYS", "GP-CONSULT", "SPEC-CONSULT", "IMAGING", "PHYSIO-ACTS"};
    for (int i = 0; i < 6; ++i) observation(kCs + "d77-ind", uses[i], cied, "", before, lastBefore, (n + i) % 12, i < 2 ? "d" : "{count}", "");
    // At the CSB of semester 1.
    observation("http://loinc.org", "72514-3", csbId, csb, "", "", vas - 2, "{score}", "");
    observation(kCs + "d77-scale", "DALLAS", csbId, csb, "", "", 40 + n % 30, "%", dallas(30 + n % 20));
    observation(kCs + "d77-scale", "QVM", csbId, csb, "", "", 50 + n % 40, "{score}", "");
    observation(kCs + "d77-ind", "DRUG-N02A", csbId, "", inclusion, lastS1, n % 3, "{count}", "");
    for (int i : {0, 2, 3, 5}) observation(kCs + "d77-ind", uses[i], csbId, "", inclusion, lastS1, (n + i) % 8, i < 2 ? "d" : "{count}", "");
    if ((n + 1) % 250 == 0) flush();
    if ((n + 1) % 50000 == 0) {
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::cerr << (n + 1) << " patients, " << written << " resources, " << static_cast<long>(written / s) << " resources/s\n";
    }
  }
  flush();
  // The index is current as far as the gateway can tell (no search on these resources).
  if (auto m = st.setMeta("search.fingerprint", search::SearchDefinitions::r4().fingerprint()); !m.ok()) {
    std::cerr << m.error().message << "\n";
    return 1;
  }
  st.close();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << patients << " patients, " << written << " resources in " << s << " s\n";
  return 0;
}
