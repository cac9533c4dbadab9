// A SAX handler over nlohmann/json that builds the document while enforcing depth and
// duplicate-key rules (nlohmann itself keeps the last duplicate silently).
#include "mappings/fhir/json_reader.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <vector>

namespace passerelle::fhir {
namespace {

class LimitedBuilder {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  LimitedBuilder(Json& root, int maxDepth) : root_(root), maxDepth_(maxDepth) {}

  bool null() { return put(Json(nullptr)); }
  bool boolean(bool v) { return put(Json(v)); }
  bool number_integer(number_integer_t v) { return put(Json(v)); }
  bool number_unsigned(number_unsigned_t v) { return put(Json(v)); }
  bool number_float(number_float_t v, const string_t&) { return put(Json(v)); }
  bool string(string_t& v) { return put(Json(std::move(v))); }
  bool binary(binary_t&) { return fail("binary values are not JSON"); }

  bool start_object(std::size_t) {
    if (!enter()) return false;
    Json* obj = put_ref(Json::object());
    stack_.push_back(Frame{obj, {}, {}, true, {}});
    return true;
  }
  bool key(string_t& k) {
    Frame& f = stack_.back();
    // Small objects: linear scan; larger ones switch to a hash set.
    if (f.keys.size() < 16) {
      if (std::find(f.keys.begin(), f.keys.end(), k) != f.keys.end()) return duplicate(k);
      f.keys.push_back(k);
      if (f.keys.size() == 16) f.keySet.insert(f.keys.begin(), f.keys.end());
    } else if (!f.keySet.insert(k).second) {
      return duplicate(k);
    }
    f.lastKey = k;
    pendingKey_ = std::move(k);
    return true;
  }
  bool end_object() { return leave(); }
  bool start_array(std::size_t) {
    if (!enter()) return false;
    Json* arr = put_ref(Json::array());
    stack_.push_back(Frame{arr, {}, {}, false, {}});
    return true;
  }
  bool end_array() { return leave(); }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) {
    if (message_.empty()) {
      std::string what = ex.what();
      // nlohmann's messages look like "[json.exception.parse_error.101] parse error at line 1, ...".
      auto p = what.find("] ");
      std::string detail = p == std::string::npos ? what : what.substr(p + 2);
      // nlohmann quotes the bytes it read last, which may be the invalid UTF-8 itself.
      if (auto lr = detail.find("; last read:"); lr != std::string::npos) detail.resize(lr);
      message_ = "invalid JSON at byte " + std::to_string(position) + ": " + detail;
    }
    return false;
  }

  const std::string& message() const { return message_; }
  std::string path() const {
    std::string p;
    for (std::size_t i = 0; i < pathParts_.size(); ++i) {
      if (i) p += '.';
      p += pathParts_[i];
    }
    return p;
  }

 private:
  struct Frame {
    Json* value;
    std::vector<std::string> keys;
    std::unordered_set<std::string> keySet;
    bool isObject;
    std::string lastKey;
  };

  bool enter() {
    if (static_cast<int>(stack_.size()) >= maxDepth_)
      return fail("JSON nesting is deeper than " + std::to_string(maxDepth_) + " levels");
    return true;
  }
  bool leave() {
    stack_.pop_back();
    return true;
  }
  bool put(Json&& v) {
    put_ref(std::move(v));
    return true;
  }
  Json* put_ref(Json&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Frame& f = stack_.back();
    if (f.isObject) {
      Json& slot = (*f.value)[pendingKey_];
      slot = std::move(v);
      return &slot;
    }
    f.value->push_back(std::move(v));
    return &f.value->back();
  }
  bool duplicate(const std::string& k) {
    // Build the member path for the message: keys of the enclosing objects.
    pathParts_.clear();
    for (std::size_t i = 0; i < stack_.size(); ++i) {
      const Frame& f = stack_[i];
      if (i + 1 < stack_.size() && f.isObject && !f.lastKey.empty()) pathParts_.push_back(f.lastKey);
    }
    pathParts_.push_back(k);
    return fail("duplicate key '" + k + "' in a JSON object");
  }
  bool fail(std::string msg) {
    if (message_.empty()) message_ = std::move(msg);
    return false;
  }

  Json& root_;
  int maxDepth_;
  std::vector<Frame> stack_;
  std::string pendingKey_;
  std::string message_;
  std::vector<std::string> pathParts_;
};

}  // namespace

bool parseJson(std::string_view text, const JsonLimits& limits, Json& out, JsonError& err) {
  LimitedBuilder builder(out, limits.maxDepth);
  bool ok = false;
  try {
    ok = Json::sax_parse(text.begin(), text.end(), &builder, nlohmann::json::input_format_t::json, true);
  } catch (const std::exception& ex) {
    err.message = std::string("invalid JSON: ") + ex.what();
    return false;
  }
  if (!ok) {
    err.message = builder.message().empty() ? "invalid JSON" : builder.message();
    err.path = builder.path();
    return false;
  }
  return true;
}

}  // namespace passerelle::fhir
