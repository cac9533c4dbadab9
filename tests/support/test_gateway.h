// Test support: a gateway started in-process on port 0 over a temporary data folder, and the
// location of ../shared/corpora.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gateway/app/gateway.h"

namespace passerelle::testing {

// A fresh temporary folder, removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class TestGateway {
 public:
  // Extra "key=value" settings are applied after the test defaults (ports 0, temp data.dir).
  explicit TestGateway(std::vector<std::string> sets = {}, bool https = false);
  ~TestGateway();
  int httpPort() const { return gateway_->httpPort(); }
  int httpsPort() const { return gateway_->httpsPort(); }
  std::string base() const;  // http://127.0.0.1:PORT/fhir
  const std::string& dataDir() const { return dir_.path(); }
  void stop() { gateway_->stop(); }

 private:
  TempDir dir_;
  std::unique_ptr<app::Gateway> gateway_;
};

// The corpora folder, or "" when absent (tests then skip, saying so).
std::string corporaDir();

}  // namespace passerelle::testing
