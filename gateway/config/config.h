// The gateway's configuration: a table of known keys with types, defaults and help, layered as
// defaults < file < PASSERELLE_<KEY> environment variables < --set key=value. Unknown keys and
// bad values stop start-up with a message naming the key and where the value came from.
// Immutable after load(); safe to read from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "gateway/common/status.h"

namespace passerelle::config {

enum class Type { kBool, kInt, kString, kChoice };

struct Setting {
  const char* key;
  Type type;
  const char* defaultValue;
  const char* help;
  std::int64_t min = 0;        // kInt only
  std::int64_t max = 0;        // kInt only
  const char* choices = "";    // kChoice: '|'-separated
};

// Every key the gateway knows, in documentation order.
const std::vector<Setting>& settings();

class Config {
 public:
  // `file`: the configuration file; when empty, conf/passerelle.properties is read if present.
  // `sets`: "key=value" strings from the command line. `env`: environ-style array (may be null).
  static Result<Config> load(const std::string& file, const std::vector<std::string>& sets, char** env);

  const std::string& get(const std::string& key) const;  // the key must be in settings()
  std::int64_t getInt(const std::string& key) const;
  bool getBool(const std::string& key) const;
  // Where the value of `key` came from: "default", the file path, "environment" or "--set".
  const std::string& source(const std::string& key) const;
  const std::string& file() const { return file_; }

 private:
  std::map<std::string, std::string> values_;
  std::map<std::string, std::string> sources_;
  std::string file_;
};

// The environment variable for a key: http.port -> PASSERELLE_HTTP_PORT.
std::string envName(const std::string& key);

}  // namespace passerelle::config
