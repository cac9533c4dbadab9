// Structured log lines on stderr.
#include "gateway/common/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "mappings/fhir/json_text.h"

namespace passerelle::log {
namespace {

using fhir::appendJsonString;
std::atomic<int> gLevel{static_cast<int>(Level::kInfo)};
std::atomic<bool> gJson{false};
std::mutex gMutex;
const char* kNames[] = {"debug", "info", "warn", "error", "off"};

bool needsQuotes(std::string_view s) {
  if (s.empty()) return true;
  for (char c : s)
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) return true;
  return false;
}
}  // namespace

bool parseLevel(std::string_view name, Level& out) {
  for (int i = 0; i <= 4; ++i)
    if (name == kNames[i]) { out = static_cast<Level>(i); return true; }
  return false;
}
void setLevel(Level level) { gLevel = static_cast<int>(level); }
void setJson(bool json) { gJson = json; }
bool enabled(Level level) { return static_cast<int>(level) >= gLevel.load(std::memory_order_relaxed); }

void write(Level level, std::string_view event, std::initializer_list<Field> fields) {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[64];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  std::string line;
  line.reserve(128);
  if (gJson) {
    line += "{\"ts\":\"";
    line += ts;
    line += "\",\"level\":\"";
    line += kNames[static_cast<int>(level)];
    line += "\",\"event\":";
    appendJsonString(line, event);
    for (const auto& [k, v] : fields) {
      line += ',';
      appendJsonString(line, k);
      line += ':';
      appendJsonString(line, v);
    }
    line += "}\n";
  } else {
    line += ts;
    line += ' ';
    line += kNames[static_cast<int>(level)];
    line += ' ';
    line += event;
    for (const auto& [k, v] : fields) {
      line += ' ';
      line += k;
      line += '=';
      if (needsQuotes(v)) appendJsonString(line, v); else line += v;
    }
    line += '\n';
  }
  std::lock_guard<std::mutex> lock(gMutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace passerelle::log
