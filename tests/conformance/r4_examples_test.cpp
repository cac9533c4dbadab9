// Every JSON example of the official R4 examples in ../shared/corpora/fhir-test-cases/r4/examples
// is stored (PUT with its own id) and read back equal, but for meta.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mappings/fhir/validator.h"
#include "tests/support/http_client.h"
#include "tests/support/test_gateway.h"

using namespace passerelle::testing;
using nlohmann::json;

namespace {

json withoutMeta(json j) {
  if (j.is_object()) j.erase("meta");
  return j;
}

}  // namespace

TEST(R4ExamplesConformanceTest, EveryExampleIsStoredAndReadBackEqual) {
  std::string corpora = corporaDir();
  if (corpora.empty()) GTEST_SKIP() << "../shared/corpora is absent: the R4 examples conformance suite is skipped";
  std::filesystem::path dir = std::filesystem::path(corpora) / "fhir-test-cases" / "r4" / "examples";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << dir << " is absent: suite skipped";
  TestGateway gw({"limits.body_bytes=52428800"});
  HttpClient client(gw.httpPort());
  int count = 0, refused = 0;
  std::vector<std::filesystem::path> files;
  for (const auto& f : std::filesystem::directory_iterator(dir))
    if (f.path().extension() == ".json") files.push_back(f.path());
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    json original = json::parse(text);
    std::string type = original["resourceType"];
    std::string id = original.value("id", "");
    HttpResult w;
    // /fhir/AuditEvent is the gateway's own audit trail: it is read, never written by clients.
    if (type == "AuditEvent") {
      EXPECT_EQ(client.send("POST", "/fhir/AuditEvent", text).status, 405) << path.filename();
      continue;
    }
    // The few examples that break the R4 base rules must be refused with 422, the rest stored.
    if (passerelle::fhir::Validator::instance().validate(text).hasErrors()) {
      w = client.send("POST", "/fhir/" + type, text);
      EXPECT_EQ(w.status, 422) << path.filename();
      w = client.send("PUT", "/fhir/" + type + "/" + (id.empty() ? "x" : id), text);
      EXPECT_TRUE(w.status == 422 || w.status == 400) << path.filename() << ": " << w.body.substr(0, 300);
      ++refused;
      continue;
    }
    if (id.empty()) {
      w = client.send("POST", "/fhir/" + type, text);
      ASSERT_EQ(w.status, 201) << path.filename() << ": " << w.body.substr(0, 400);
      id = w.json()["id"];
      original["id"] = id;
    } else {
      w = client.send("PUT", "/fhir/" + type + "/" + id, text);
      ASSERT_TRUE(w.status == 201 || w.status == 200) << path.filename() << ": " << w.body.substr(0, 400);
    }
    auto r = client.get("/fhir/" + type + "/" + id);
    ASSERT_EQ(r.status, 200) << path.filename();
    json back = json::parse(r.body);
    EXPECT_EQ(withoutMeta(back), withoutMeta(original)) << path.filename();
    // What the client put in meta (profiles, tags) is kept beside versionId and lastUpdated.
    if (original.contains("meta")) {
      for (auto& [k, v] : original["meta"].items()) {
        if (k == "versionId" || k == "lastUpdated") continue;
        EXPECT_EQ(back["meta"][k], v) << path.filename() << " meta." << k;
      }
    }
    ++count;
  }
  std::cout << "[ conformance ] " << count << " R4 examples stored and read back equal; " << refused
            << " refused as invalid R4\n";
  EXPECT_LE(refused, 5);  // the five the validator conformance suite lists as breaking R4 rules
  EXPECT_GT(count, 50);
}
