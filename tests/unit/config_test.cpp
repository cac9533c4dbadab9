#include <gtest/gtest.h>

#include "gateway/config/config.h"

using namespace passerelle::config;

namespace {
char* kNoEnv[] = {nullptr};
}

TEST(ConfigTest, DefaultsAreValidAndStorageFollowsDataDir) {
  auto c = Config::load("/dev/null", {"data.dir=/srv/p"}, kNoEnv);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->getInt("http.port"), 8080);
  EXPECT_EQ(c->get("storage.url"), "sqlite:/srv/p/passerelle.db");
  EXPECT_EQ(c->getInt("limits.body_bytes"), 10 * 1024 * 1024);
  EXPECT_EQ(c->getInt("limits.json_depth"), 64);
}

TEST(ConfigTest, EnvironmentOverridesAndSetOverridesEnvironment) {
  std::string a = "PASSERELLE_HTTP_PORT=9000", b = "PASSERELLE_LOG_LEVEL=debug";
  char* env[] = {a.data(), b.data(), nullptr};
  auto c = Config::load("/dev/null", {"http.port=9100"}, env);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->getInt("http.port"), 9100);
  EXPECT_EQ(c->source("http.port"), "--set");
  EXPECT_EQ(c->get("log.level"), "debug");
  EXPECT_EQ(c->source("log.level"), "environment PASSERELLE_LOG_LEVEL");
}

TEST(ConfigTest, BadValuesNameTheKey) {
  auto c = Config::load("/dev/null", {"http.port=70000"}, kNoEnv);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("http.port"), std::string::npos);
  EXPECT_NE(c.error().message.find("0 to 65535"), std::string::npos);
  auto d = Config::load("/dev/null", {"log.level=loud"}, kNoEnv);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("log.level"), std::string::npos);
  auto e = Config::load("/dev/null", {"https.enabled=yes"}, kNoEnv);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("https.enabled"), std::string::npos);
}

TEST(ConfigTest, UnknownKeysAreRefused) {
  auto c = Config::load("/dev/null", {"http.prot=1"}, kNoEnv);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("unknown configuration key 'http.prot'"), std::string::npos);
  auto d = Config::load("/dev/null", {"novalue"}, kNoEnv);
  ASSERT_FALSE(d.ok());
}

TEST(ConfigTest, MissingFileIsAnError) {
  auto c = Config::load("/nonexistent/passerelle.properties", {}, kNoEnv);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("does not exist"), std::string::npos);
}

TEST(ConfigTest, EnvNamesFollowTheContract) {
  EXPECT_EQ(envName("http.port"), "PASSERELLE_HTTP_PORT");
  EXPECT_EQ(envName("storage.url"), "PASSERELLE_STORAGE_URL");
}

TEST(ConfigTest, CertificateAndKeyGoTogether) {
  auto c = Config::load("/dev/null", {"https.certificate=/x.crt"}, kNoEnv);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("https.private_key"), std::string::npos);
}
