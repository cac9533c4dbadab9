// Structured logging: one line per event on stderr, as text (`ts level event k=v ...`) or as a
// JSON object per line. Thread-safe; the level and format are set once at start-up.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace passerelle::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

// Returns false when `name` is not one of debug, info, warn, error, off.
bool parseLevel(std::string_view name, Level& out);
void setLevel(Level level);
void setJson(bool json);
bool enabled(Level level);

using Field = std::pair<std::string_view, std::string>;
void write(Level level, std::string_view event, std::initializer_list<Field> fields = {});

inline void debug(std::string_view e, std::initializer_list<Field> f = {}) { if (enabled(Level::kDebug)) write(Level::kDebug, e, f); }
inline void info(std::string_view e, std::initializer_list<Field> f = {}) { if (enabled(Level::kInfo)) write(Level::kInfo, e, f); }
inline void warn(std::string_view e, std::initializer_list<Field> f = {}) { if (enabled(Level::kWarn)) write(Level::kWarn, e, f); }
inline void error(std::string_view e, std::initializer_list<Field> f = {}) { if (enabled(Level::kError)) write(Level::kError, e, f); }

}  // namespace passerelle::log
