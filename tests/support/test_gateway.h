// Test support: a gateway started in-process on port 0 over a temporary data folder, and the
// location of ../shared/corpora.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "gateway/app/gateway.h"
#include "gateway/identity/identity.h"

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
  int mllpPort() const { return gateway_->mllpPort(); }
  std::string base() const;  // http://127.0.0.1:PORT/fhir
  // A token signed with this gateway's development key (issuer and audience of the test defaults).
  std::string token(identity::IssueOptions options) const;
  // The token of a system account with every scope (what HttpClient sends by default).
  std::string systemToken() const;
  const std::string& dataDir() const { return dir_.path(); }
  void stop() { gateway_->stop(); }

 private:
  TempDir dir_;
  std::unique_ptr<app::Gateway> gateway_;
};

// Whether test gateways store into PostgreSQL (PASSERELLE_TEST_STORAGE=postgresql) rather than
// SQLite: tests of what only SQLite has (its files, its write-ahead log) skip then.
bool testStorageIsPostgresql();

// A development token for a gateway whose data folder is `dataDir` (a process started by a test).
std::string devToken(const std::string& dataDir, identity::IssueOptions options);

// The corpora folder, or "" when absent (tests then skip, saying so).
std::string corporaDir();

// A file's bytes ("" when it cannot be read).
std::string readFile(const std::string& path);
// Runs `command` with the shell, stderr with stdout: its output, or "FAILED(<status>): " and it.
std::string runCommand(const std::string& command);

// A gzip file's uncompressed bytes ("" when it cannot be read).
std::string gunzipFile(const std::string& path);

}  // namespace passerelle::testing
