// Data-driven FHIR search conformance: every JSON case file under tests/conformance/search
// (format in tests/conformance/search/README.md) is loaded into a fresh gateway and its cases
// run; then a few searches over the official R4 examples of ../shared/corpora, with
// expectations read from the examples themselves.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/pg_server.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path kCasesDir = PASSERELLE_SEARCH_CASES;

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void replaceAll(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
}

// Percent-encodes everything but unreserved characters and the few FHIR search punctuation marks
// that travel unencoded in practice (so that '+', '%', '&' in case values stay literal).
std::string encodeComponent(const std::string& s) {
  static const std::string keep = "-._~:|,$/*!()@";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || keep.find(static_cast<char>(c)) != std::string::npos) {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// "a=1&b=x y" -> "a=1&b=x%20y": each name and value encoded on its own.
std::string encodeQuery(const std::string& q) {
  std::string out;
  std::size_t start = 0;
  while (start <= q.size()) {
    std::size_t amp = q.find('&', start);
    std::string part = q.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    if (!part.empty()) {
      if (!out.empty()) out += '&';
      std::size_t eq = part.find('=');
      out += encodeComponent(part.substr(0, eq));
      if (eq != std::string::npos) out += "=" + encodeComponent(part.substr(eq + 1));
    }
    if (amp == std::string::npos) break;
    start = amp + 1;
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out + "]";
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The path (from "/fhir") of an absolute link the server gave.
std::string localPath(const std::string& url) {
  auto pos = url.find("/fhir");
  return pos == std::string::npos ? url : url.substr(pos);
}

struct BundleView {
  std::vector<std::string> matches, includes, outcomes;
  std::map<std::string, json> resources;  // "Type/id" -> resource (matches and includes)
  std::map<std::string, std::string> links;
};

BundleView view(const json& b) {
  BundleView v;
  if (b.contains("link"))
    for (const auto& l : b["link"]) v.links[l.value("relation", "")] = l.value("url", "");
  if (b.contains("entry"))
    for (const auto& e : b["entry"]) {
      std::string mode = e.contains("search") ? e["search"].value("mode", "") : "";
      const json& r = e.contains("resource") ? e["resource"] : json::object();
      std::string key = r.value("resourceType", "?") + "/" + r.value("id", "?");
      if (mode == "match") v.matches.push_back(key);
      else if (mode == "include") v.includes.push_back(key);
      else v.outcomes.push_back(key);
      if (mode == "match" || mode == "include") v.resources[key] = r;
    }
  return v;
}

bool hasSubsettedTag(const json& r) {
  if (!r.contains("meta") || !r["meta"].contains("tag")) return false;
  for (const auto& t : r["meta"]["tag"])
    if (t.value("code", "") == "SUBSETTED") return true;
  return false;
}

class CaseFileRunner {
 public:
  // `sets`: settings of the gateway beyond the test defaults (another storage.url).
  CaseFileRunner(const fs::path& file, std::vector<std::string> sets = {})
      : file_(file), name_(fs::relative(file, kCasesDir).string()), sets_(std::move(sets)) {}

  void run() {
    TestGateway gw(sets_);
    HttpClient client(gw.httpPort());
    base_ = gw.base();
    std::string text = readFile(file_);
    replaceAll(text, "{{base}}", base_);
    json doc;
    try {
      doc = json::parse(text);
    } catch (const std::exception& e) {
      FAIL() << name_ << ": not JSON: " << e.what();
    }
    client_ = &client;
    for (const auto& r : doc.value("resources", json::array())) {
      std::string path = r.value("resourceType", "") + "/" + r.value("id", "");
      auto w = client.send("PUT", "/fhir/" + path, r.dump());
      ASSERT_TRUE(w.status == 201 || w.status == 200) << name_ << ": loading " << path << " answered " << w.status << ": "
                                                      << w.body.substr(0, 600);
    }
    if (doc.contains("then")) {
      for (const auto& a : doc["then"]) ASSERT_TRUE(action(a, "setup")) << name_;
    }
    int n = 0;
    for (const auto& c : doc.value("cases", json::array())) {
      ++n;
      runCase(c);
    }
    EXPECT_GT(n, 0) << name_ << " has no cases";
  }

 private:
  // A write between pages or after loading; false (with a failure) when it did not succeed.
  bool action(const json& a, const std::string& where) {
    std::string method = a.value("method", "PUT");
    std::string path = "/fhir/" + a.value("path", "");
    HttpResult w = a.contains("body") ? client_->send(method, path, a["body"].dump()) : client_->request(method, path);
    bool ok = w.status >= 200 && w.status < 300;
    EXPECT_TRUE(ok) << name_ << ": " << where << " " << method << " " << path << " answered " << w.status << ": "
                    << w.body.substr(0, 600);
    return ok;
  }

  HttpResult query(const json& c, const std::string& q) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (c.contains("headers"))
      for (auto& [k, v] : c["headers"].items()) headers.emplace_back(k, v.get<std::string>());
    std::string type, params;
    auto qm = q.find('?');
    type = q.substr(0, qm);
    if (qm != std::string::npos) params = q.substr(qm + 1);
    std::string encoded = c.value("raw", false) ? params : encodeQuery(params);
    std::string path = "/fhir" + (type.empty() ? std::string() : "/" + type);
    if (c.value("post", false)) {
      headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
      return client_->request("POST", path + "/_search", encoded, headers);
    }
    return client_->request("GET", encoded.empty() ? path : path + "?" + encoded, "", headers);
  }

  static std::vector<std::string> strings(const json& a) {
    std::vector<std::string> out;
    for (const auto& x : a) out.push_back(x.get<std::string>());
    return out;
  }

  // Checks one searchset against the expectations in `exp`; `what` names the case and query.
  void checkBundle(const json& exp, const HttpResult& r, const std::string& what, BundleView& v, bool orderedDefault) {
    json b;
    try {
      b = r.json();
    } catch (const std::exception&) {
      ADD_FAILURE() << what << "\n  answer is not JSON: " << r.body.substr(0, 400);
      return;
    }
    if (b.value("resourceType", "") != "Bundle" || b.value("type", "") != "searchset") {
      ADD_FAILURE() << what << "\n  not a searchset Bundle: " << r.body.substr(0, 400);
      return;
    }
    v = view(b);
    if (exp.contains("expect")) {
      auto want = strings(exp["expect"]);
      auto got = v.matches;
      // Resources created during the paging may or may not show up: "ignore" leaves them out.
      if (exp.contains("ignore")) {
        auto skip = strings(exp["ignore"]);
        std::erase_if(got, [&](const std::string& k) { return std::find(skip.begin(), skip.end(), k) != skip.end(); });
      }
      bool ordered = exp.value("ordered", orderedDefault);
      if (!ordered) {
        std::sort(want.begin(), want.end());
        std::sort(got.begin(), got.end());
      }
      EXPECT_EQ(got, want) << what << "\n  expected matches" << (ordered ? " (in order)" : "") << ": " << join(want)
                           << (exp.contains("ignore") ? " (ignoring " + join(strings(exp["ignore"])) + ")" : std::string())
                           << "\n  actual matches: " << join(v.matches);
    }
    if (exp.contains("included")) {
      auto want = strings(exp["included"]);
      auto got = v.includes;
      std::sort(want.begin(), want.end());
      std::sort(got.begin(), got.end());
      EXPECT_EQ(got, want) << what << "\n  expected included: " << join(want) << "\n  actual included: " << join(got);
    } else if (exp.contains("expect") && !v.includes.empty()) {
      ADD_FAILURE() << what << "\n  expected no included resources\n  actual included: " << join(v.includes);
    }
    if (exp.contains("total")) {
      if (exp["total"].is_null())
        EXPECT_FALSE(b.contains("total")) << what << "\n  expected no Bundle.total\n  actual total: " << b["total"].dump();
      else
        EXPECT_EQ(b.value("total", json()), exp["total"])
            << what << "\n  expected total: " << exp["total"].dump()
            << "\n  actual total: " << (b.contains("total") ? b["total"].dump() : "(absent)");
    }
    if (exp.contains("entries")) {
      std::size_t n = b.contains("entry") ? b["entry"].size() : 0;
      EXPECT_EQ(n, exp["entries"].get<std::size_t>()) << what << "\n  expected entry count: " << exp["entries"]
                                                      << "\n  actual entry count: " << n;
    }
    if (exp.contains("elements")) {
      for (auto& [key, names] : exp["elements"].items()) {
        auto it = v.resources.find(key);
        if (it == v.resources.end()) {
          ADD_FAILURE() << what << "\n  expected " << key << " in the Bundle to check its elements; it is absent";
          continue;
        }
        std::vector<std::string> want = strings(names), got;
        for (auto& [k, _] : it->second.items()) got.push_back(k);
        std::sort(want.begin(), want.end());
        std::sort(got.begin(), got.end());
        EXPECT_EQ(got, want) << what << "\n  expected top-level elements of " << key << ": " << join(want)
                             << "\n  actual: " << join(got);
      }
    }
    if (exp.contains("subsetted")) {
      bool want = exp["subsetted"].get<bool>();
      for (const auto& key : v.matches) {
        bool got = hasSubsettedTag(v.resources[key]);
        EXPECT_EQ(got, want) << what << "\n  expected " << key << (want ? " to carry" : " not to carry")
                             << " the SUBSETTED tag\n  actual meta: "
                             << (v.resources[key].contains("meta") ? v.resources[key]["meta"].dump() : "(none)");
      }
    }
    if (exp.contains("included_subsetted")) {
      bool want = exp["included_subsetted"].get<bool>();
      for (const auto& key : v.includes) {
        bool got = hasSubsettedTag(v.resources[key]);
        EXPECT_EQ(got, want) << what << "\n  expected included " << key << (want ? " to carry" : " not to carry")
                             << " the SUBSETTED tag";
      }
    }
    if (exp.contains("links")) {
      for (auto& [rel, present] : exp["links"].items()) {
        bool got = v.links.count(rel) > 0;
        EXPECT_EQ(got, present.get<bool>()) << what << "\n  expected link '" << rel << "' to be "
                                            << (present.get<bool>() ? "present" : "absent") << "\n  actual links: "
                                            << (b.contains("link") ? b["link"].dump() : "(none)");
      }
    }
  }

  void runCase(const json& c) {
    std::string caseName = c.value("name", "(unnamed)");
    std::string q = c.value("query", "");
    std::string what = name_ + " | case '" + caseName + "'\n  query: " + (c.value("post", false) ? "POST " : "GET ") + q;
    HttpResult r = query(c, q);
    int want = c.value("status", 200);
    EXPECT_NE(r.status, 500) << what << "\n  server error: " << r.body.substr(0, 600);
    if (r.status != want) {
      ADD_FAILURE() << what << "\n  expected status: " << want << "\n  actual status: " << r.status << "\n  body: "
                    << r.body.substr(0, 600);
      return;
    }
    if (want != 200) {
      json oo;
      try {
        oo = r.json();
      } catch (const std::exception&) {
        ADD_FAILURE() << what << "\n  error answer is not JSON: " << r.body.substr(0, 400);
        return;
      }
      EXPECT_EQ(oo.value("resourceType", ""), "OperationOutcome") << what << "\n  body: " << r.body.substr(0, 400);
      if (c.contains("diagnostics")) {
        std::string needle = lower(c["diagnostics"].get<std::string>()), all;
        if (oo.contains("issue"))
          for (const auto& i : oo["issue"]) all += lower(i.value("diagnostics", "")) + " | ";
        EXPECT_NE(all.find(needle), std::string::npos)
            << what << "\n  expected diagnostics containing: " << c["diagnostics"].get<std::string>()
            << "\n  actual diagnostics: " << all;
      }
      return;
    }
    BundleView v;
    if (!c.contains("pages")) {
      checkBundle(c, r, what, v, false);
      return;
    }
    // Paging: the first page answers the query, each further one follows a link of the page before.
    int n = 0;
    for (const auto& page : c["pages"]) {
      std::string pwhat = what + "\n  page " + std::to_string(n + 1);
      if (n > 0) {
        for (const auto& a : page.value("between", json::array()))
          if (!action(a, pwhat + " (between pages)")) return;
        std::string rel = page.value("follow", "next");
        auto it = v.links.find(rel);
        if (it == v.links.end()) {
          ADD_FAILURE() << pwhat << "\n  expected a '" << rel << "' link on the page before; there is none";
          return;
        }
        std::string path = localPath(it->second);
        pwhat += " (" + rel + ": " + path + ")";
        r = client_->get(path);
        if (r.status != 200) {
          ADD_FAILURE() << pwhat << "\n  expected status: 200\n  actual status: " << r.status << "\n  body: "
                        << r.body.substr(0, 600);
          return;
        }
      }
      BundleView pv;
      checkBundle(page, r, pwhat, pv, true);
      v = std::move(pv);
      ++n;
    }
  }

  fs::path file_;
  std::string name_;
  std::vector<std::string> sets_;
  std::string base_;
  HttpClient* client_ = nullptr;
};

std::vector<std::string> caseFiles() {
  std::vector<std::string> out;
  if (!fs::exists(kCasesDir)) return out;
  for (const auto& e : fs::recursive_directory_iterator(kCasesDir))
    if (e.is_regular_file() && e.path().extension() == ".json") out.push_back(fs::relative(e.path(), kCasesDir).string());
  std::sort(out.begin(), out.end());
  return out;
}

class SearchConformance : public ::testing::TestWithParam<std::string> {};

TEST_P(SearchConformance, CaseFile) { CaseFileRunner(kCasesDir / GetParam()).run(); }

std::string caseName(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = info.param;
  if (n.size() > 5 && n.compare(n.size() - 5, 5, ".json") == 0) n.resize(n.size() - 5);
  for (auto& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Cases, SearchConformance, ::testing::ValuesIn(caseFiles()), caseName);

// The same cases with the resources stored in PostgreSQL (a fresh database of a throw-away
// cluster; skipped when PostgreSQL is not installed).
class SearchConformanceOnPostgresql : public ::testing::TestWithParam<std::string> {};

TEST_P(SearchConformanceOnPostgresql, CaseFile) {
  if (!PgServer::available()) GTEST_SKIP() << "PostgreSQL is not available: " << PgServer::unavailableReason();
  std::string error;
  PgServer* server = PgServer::shared(error);
  ASSERT_NE(server, nullptr) << error;
  std::string url = server->createDatabase(error);
  ASSERT_FALSE(url.empty()) << error;
  CaseFileRunner(kCasesDir / GetParam(), {"storage.url=" + url}).run();
}

INSTANTIATE_TEST_SUITE_P(Cases, SearchConformanceOnPostgresql, ::testing::ValuesIn(caseFiles()), caseName);

TEST(SearchConformanceFiles, TheCaseFoldersHoldCases) {
  EXPECT_GE(caseFiles().size(), 12u) << "case files under " << kCasesDir;
}

// ---- values beyond the limit of comma-separated values ----

std::string manyIds(int n) {
  std::string v;
  for (int i = 0; i < n; ++i) v += (i ? "," : "") + std::string("id") + std::to_string(i);
  return v;
}

std::string diagnostics(const HttpResult& r) {
  std::string all;
  try {
    json oo = r.json();
    for (const auto& i : oo["issue"]) all += i.value("diagnostics", "") + " | ";
  } catch (const std::exception&) {
    all = r.body.substr(0, 300);
  }
  return all;
}

TEST(SearchLimits, TenThousandValuesOfOneParameterAreRefusedNamingIt) {
  TestGateway gw;
  HttpClient client(gw.httpPort());
  auto r = client.request("POST", "/fhir/Patient/_search", "_id=" + manyIds(10000),
                          {{"Content-Type", "application/x-www-form-urlencoded"}});
  EXPECT_EQ(r.status, 400) << r.body.substr(0, 400);
  EXPECT_NE(diagnostics(r).find("_id"), std::string::npos) << diagnostics(r);
  r = client.request("POST", "/fhir/Observation/_search", "code=" + manyIds(10000),
                     {{"Content-Type", "application/x-www-form-urlencoded"}});
  EXPECT_EQ(r.status, 400) << r.body.substr(0, 400);
  EXPECT_NE(diagnostics(r).find("code"), std::string::npos) << diagnostics(r);
}

TEST(SearchLimits, ThousandAndOneValuesInAUrlAreRefusedAndAThousandAccepted) {
  TestGateway gw;
  HttpClient client(gw.httpPort());
  auto put = client.send("PUT", "/fhir/Patient/id999", R"({"resourceType":"Patient","id":"id999","active":true})");
  ASSERT_EQ(put.status, 201) << put.body;
  auto r = client.get("/fhir/Patient?_id=" + manyIds(1001));
  EXPECT_EQ(r.status, 400) << r.body.substr(0, 400);
  EXPECT_NE(diagnostics(r).find("_id"), std::string::npos) << diagnostics(r);
  r = client.get("/fhir/Patient?_id=" + manyIds(1000));
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 400);
  auto b = r.json();
  ASSERT_TRUE(b.contains("entry")) << r.body.substr(0, 400);
  ASSERT_EQ(b["entry"].size(), 1u);
  EXPECT_EQ(b["entry"][0]["resource"]["id"], "id999");
  // The same on a token parameter of an index table.
  std::string codes;
  for (int i = 0; i < 1000; ++i) codes += (i ? "," : "") + std::string("http://loinc.org|") + std::to_string(10000 + i) + "-0";
  r = client.request("POST", "/fhir/Observation/_search", "code=" + codes, {{"Content-Type", "application/x-www-form-urlencoded"}});
  EXPECT_EQ(r.status, 200) << r.body.substr(0, 400);
}

// ---- totals and page sizes beyond a thousand matches ----

TEST(SearchLimits, BeyondAThousandMatchesTheDefaultTotalIsLeftOutAndAccurateCounts) {
  TestGateway gw({"limits.body_bytes=52428800"});
  HttpClient client(gw.httpPort());
  json bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", json::array()}};
  for (int i = 0; i < 1001; ++i) {
    std::string id = "big" + std::to_string(i);
    bundle["entry"].push_back({{"resource", {{"resourceType", "Patient"}, {"id", id}, {"active", true}}},
                               {"request", {{"method", "PUT"}, {"url", "Patient/" + id}}}});
  }
  auto t = client.send("POST", "/fhir", bundle.dump());
  ASSERT_EQ(t.status, 200) << t.body.substr(0, 400);

  auto first = client.get("/fhir/Patient?active=true");
  ASSERT_EQ(first.status, 200) << first.body.substr(0, 400);
  auto b = first.json();
  EXPECT_FALSE(b.contains("total")) << "more than 1000 matches: no total by default, got " << b["total"];
  ASSERT_TRUE(b.contains("entry"));
  EXPECT_EQ(b["entry"].size(), 50u) << "default _count";
  EXPECT_EQ(view(b).links.count("next"), 1u) << b["link"].dump();

  auto accurate = client.get("/fhir/Patient?active=true&_total=accurate&_count=1").json();
  EXPECT_EQ(accurate.value("total", json()), 1001) << "_total=accurate";
  auto count = client.get("/fhir/Patient?active=true&_summary=count").json();
  EXPECT_EQ(count.value("total", json()), 1001) << "_summary=count";
  EXPECT_FALSE(count.contains("entry"));

  auto max = client.get("/fhir/Patient?active=true&_count=1000").json();
  ASSERT_TRUE(max.contains("entry"));
  EXPECT_EQ(max["entry"].size(), 1000u);
  auto capped = client.get("/fhir/Patient?active=true&_count=5000").json();
  ASSERT_TRUE(capped.contains("entry"));
  EXPECT_EQ(capped["entry"].size(), 1000u) << "_count above the maximum is capped at 1000";
  // Following next links visits every match once.
  auto links = view(capped).links;
  ASSERT_EQ(links.count("next"), 1u);
  auto rest = client.get(localPath(links["next"]));
  ASSERT_EQ(rest.status, 200) << rest.body.substr(0, 400);
  auto rb = rest.json();
  ASSERT_TRUE(rb.contains("entry"));
  ASSERT_EQ(rb["entry"].size(), 1u);
  EXPECT_EQ(rb["entry"][0]["resource"]["id"], "big1000");
  EXPECT_EQ(view(rb).links.count("next"), 0u);

  auto filtered = client.get("/fhir/Patient?active=true&_id=big5,big999").json();
  EXPECT_EQ(filtered.value("total", json()), 2) << "a small result keeps its total";
}

// ---- searches over the official R4 examples ----

struct Loaded {
  std::string type, id;
  json resource;
};

bool bundleHas(const HttpResult& r, const std::string& type, const std::string& id) {
  if (r.status != 200) return false;
  auto b = r.json();
  if (!b.contains("entry")) return false;
  for (const auto& e : b["entry"])
    if (e["resource"].value("resourceType", "") == type && e["resource"].value("id", "") == id &&
        e["search"].value("mode", "") == "match")
      return true;
  return false;
}

TEST(SearchOverCorpusExamples, EachExampleIsFoundByItsOwnValues) {
  std::string corpora = corporaDir();
  if (corpora.empty()) GTEST_SKIP() << "../shared/corpora is absent: searches over the R4 examples are skipped";
  fs::path dir = fs::path(corpora) / "fhir-test-cases" / "r4" / "examples";
  if (!fs::exists(dir)) GTEST_SKIP() << dir << " is absent: searches over the R4 examples are skipped";
  TestGateway gw({"limits.body_bytes=52428800"});
  HttpClient client(gw.httpPort());
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(dir))
    if (f.path().extension() == ".json") files.push_back(f.path());
  std::sort(files.begin(), files.end());
  std::vector<Loaded> loaded;
  for (const auto& path : files) {
    json r;
    try {
      r = json::parse(readFile(path));
    } catch (const std::exception&) {
      continue;
    }
    std::string type = r.value("resourceType", ""), id = r.value("id", "");
    if (type.empty() || id.empty()) continue;
    auto w = client.send("PUT", "/fhir/" + type + "/" + id, r.dump());
    if (w.status != 200 && w.status != 201) continue;  // the few invalid examples (see r4_examples_test)
    loaded.push_back({type, id, r});
  }
  ASSERT_GT(loaded.size(), 50u);

  int checks = 0;
  auto expectFound = [&](const Loaded& l, const std::string& params) {
    std::string path = "/fhir/" + l.type + "?" + encodeQuery(params) + "&_count=1000";
    auto r = client.get(path);
    EXPECT_TRUE(bundleHas(r, l.type, l.id)) << l.type << "/" << l.id << " not found by GET " << path << "\n  status "
                                            << r.status << ": " << r.body.substr(0, 400);
    ++checks;
  };
  std::set<std::string> withIdentifier = {"Patient", "Observation", "Practitioner", "Organization", "Encounter",
                                          "Condition", "Device", "Account", "Appointment", "Flag", "Goal"};
  for (const auto& l : loaded) {
    expectFound(l, "_id=" + l.id);
    // The first identifier with a system and a value.
    if (withIdentifier.count(l.type) && l.resource.contains("identifier") && l.resource["identifier"].is_array()) {
      for (const auto& i : l.resource["identifier"])
        if (i.contains("system") && i.contains("value")) {
          expectFound(l, "identifier=" + i["system"].get<std::string>() + "|" + i["value"].get<std::string>());
          expectFound(l, "identifier=" + i["value"].get<std::string>());
          break;
        }
    }
    if (l.type == "Patient") {
      for (const auto& n : l.resource.value("name", json::array()))
        if (n.contains("family")) {
          std::string family = n["family"];
          expectFound(l, "family=" + family);
          expectFound(l, "name=" + family.substr(0, std::min<std::size_t>(3, family.size())));
          break;
        }
      if (l.resource.contains("birthDate")) expectFound(l, "birthdate=" + l.resource["birthDate"].get<std::string>());
      if (l.resource.contains("gender")) expectFound(l, "gender=" + l.resource["gender"].get<std::string>());
    }
    if (l.type == "Observation" || l.type == "Condition") {
      if (l.resource.contains("code"))
        for (const auto& cd : l.resource["code"].value("coding", json::array()))
          if (cd.contains("system") && cd.contains("code"))
            expectFound(l, "code=" + cd["system"].get<std::string>() + "|" + cd["code"].get<std::string>());
      if (l.resource.contains("subject") && l.resource["subject"].contains("reference"))
        expectFound(l, "subject=" + l.resource["subject"]["reference"].get<std::string>());
    }
    if (l.type == "Observation") {
      if (l.resource.contains("effectiveDateTime"))
        expectFound(l, "date=" + l.resource["effectiveDateTime"].get<std::string>());
      if (l.resource.contains("valueQuantity") && l.resource["valueQuantity"].contains("value")) {
        const json& vq = l.resource["valueQuantity"];
        std::string value = vq["value"].dump();
        expectFound(l, "value-quantity=" + value + "|" + vq.value("system", "") + "|" + vq.value("code", ""));
      }
    }
  }
  std::cout << "[ conformance ] " << loaded.size() << " R4 examples loaded; " << checks << " searches checked\n";
}

}  // namespace
