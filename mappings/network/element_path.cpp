// Element paths: parsing, reading and writing (see element_path.h).
#include "mappings/network/element_path.h"

#include <nlohmann/json.hpp>

namespace passerelle::network {

bool ElementPath::hasEach() const {
  for (const auto& s : steps)
    if (s.sel == PathStep::Sel::kEach || s.sel == PathStep::Sel::kMatchEach) return true;
  return false;
}

std::optional<ElementPath> parseElementPath(std::string_view text, std::string& error) {
  ElementPath p;
  p.text = std::string(text);
  std::size_t i = 0;
  int eachCount = 0;
  while (i < text.size()) {
    PathStep s;
    std::size_t j = i;
    while (j < text.size() && text[j] != '.' && text[j] != '[') ++j;
    s.name = std::string(text.substr(i, j - i));
    if (s.name.empty()) {
      error = "empty step at offset " + std::to_string(i) + " in '" + p.text + "'";
      return std::nullopt;
    }
    if (j < text.size() && text[j] == '[') {
      std::size_t close = text.find(']', j);
      if (close == std::string_view::npos) {
        error = "unclosed '[' in '" + p.text + "'";
        return std::nullopt;
      }
      std::string sel(text.substr(j + 1, close - j - 1));
      if (sel == "*") {
        s.sel = PathStep::Sel::kEach;
        ++eachCount;
      } else if (auto eq = sel.find('='); eq != std::string::npos) {
        s.key = sel.substr(0, eq);
        s.value = sel.substr(eq + 1);
        s.sel = PathStep::Sel::kMatch;
        if (s.value.size() >= 2 && s.value.compare(s.value.size() - 2, 2, ",*") == 0) {
          s.value.resize(s.value.size() - 2);
          s.sel = PathStep::Sel::kMatchEach;
          ++eachCount;
        }
        if (s.key.empty()) {
          error = "empty key in selector of '" + p.text + "'";
          return std::nullopt;
        }
      } else {
        if (sel.empty() || sel.find_first_not_of("0123456789") != std::string::npos) {
          error = "selector [" + sel + "] in '" + p.text + "' is not an index, *, key=value or key=value,*";
          return std::nullopt;
        }
        s.sel = PathStep::Sel::kIndex;
        s.index = std::stoul(sel);
      }
      j = close + 1;
    }
    p.steps.push_back(std::move(s));
    if (j < text.size()) {
      if (text[j] != '.') {
        error = "expected '.' at offset " + std::to_string(j) + " in '" + p.text + "'";
        return std::nullopt;
      }
      ++j;
      if (j == text.size()) {
        error = "trailing '.' in '" + p.text + "'";
        return std::nullopt;
      }
    }
    i = j;
  }
  if (p.steps.empty()) {
    error = "empty path";
    return std::nullopt;
  }
  if (eachCount > 1) {
    error = "more than one [*] in '" + p.text + "'";
    return std::nullopt;
  }
  return p;
}

namespace {

bool matches(const Json& element, const PathStep& s) {
  if (!element.is_object()) return false;
  auto it = element.find(s.key);
  return it != element.end() && it->is_string() && it->get_ref<const std::string&>() == s.value;
}

// The n-th element of `array` matching the step's key=value, or nullptr.
const Json* nthMatch(const Json& array, const PathStep& s, std::size_t n) {
  std::size_t seen = 0;
  for (const auto& e : array)
    if (matches(e, s) && seen++ == n) return &e;
  return nullptr;
}

}  // namespace

const Json* getAt(const Json& root, const ElementPath& path, std::size_t each) {
  const Json* cur = &root;
  for (const auto& s : path.steps) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(s.name);
    if (it == cur->end()) return nullptr;
    cur = &*it;
    switch (s.sel) {
      case PathStep::Sel::kNone:
        break;
      case PathStep::Sel::kIndex:
      case PathStep::Sel::kEach: {
        std::size_t n = s.sel == PathStep::Sel::kIndex ? s.index : each;
        if (!cur->is_array() || n >= cur->size()) return nullptr;
        cur = &(*cur)[n];
        break;
      }
      case PathStep::Sel::kMatch:
      case PathStep::Sel::kMatchEach: {
        if (!cur->is_array()) return nullptr;
        cur = nthMatch(*cur, s, s.sel == PathStep::Sel::kMatch ? 0 : each);
        if (!cur) return nullptr;
        break;
      }
    }
  }
  return cur;
}

void setAt(Json& root, const ElementPath& path, const Json& value, std::size_t each) {
  Json* cur = &root;
  for (std::size_t k = 0; k < path.steps.size(); ++k) {
    const auto& s = path.steps[k];
    bool last = k + 1 == path.steps.size();
    if (!cur->is_object()) *cur = Json::object();
    Json& member = (*cur)[s.name];
    if (s.sel == PathStep::Sel::kNone) {
      if (last) member = value;
      cur = &member;
      continue;
    }
    if (!member.is_array()) member = Json::array();
    Json* slot = nullptr;
    if (s.sel == PathStep::Sel::kIndex || s.sel == PathStep::Sel::kEach) {
      std::size_t n = s.sel == PathStep::Sel::kIndex ? s.index : each;
      while (member.size() <= n) member.push_back(Json::object());
      slot = &member[n];
    } else {
      std::size_t want = s.sel == PathStep::Sel::kMatch ? 0 : each, seen = 0;
      for (auto& e : member)
        if (matches(e, s) && seen++ == want) {
          slot = &e;
          break;
        }
      while (!slot) {
        Json fresh = Json::object();
        fresh[s.key] = s.value;
        member.push_back(std::move(fresh));
        if (seen++ == want) slot = &member.back();
      }
    }
    if (last) *slot = value;
    cur = slot;
  }
}

std::size_t countEach(const Json& root, const ElementPath& path) {
  const Json* cur = &root;
  for (const auto& s : path.steps) {
    if (!cur->is_object()) return 0;
    auto it = cur->find(s.name);
    if (it == cur->end()) return 0;
    cur = &*it;
    switch (s.sel) {
      case PathStep::Sel::kNone:
        break;
      case PathStep::Sel::kIndex:
        if (!cur->is_array() || s.index >= cur->size()) return 0;
        cur = &(*cur)[s.index];
        break;
      case PathStep::Sel::kMatch:
        if (!cur->is_array()) return 0;
        cur = nthMatch(*cur, s, 0);
        if (!cur) return 0;
        break;
      case PathStep::Sel::kEach:
        return cur->is_array() ? cur->size() : 0;
      case PathStep::Sel::kMatchEach: {
        if (!cur->is_array()) return 0;
        std::size_t n = 0;
        for (const auto& e : *cur) n += matches(e, s);
        return n;
      }
    }
  }
  return 0;
}

}  // namespace passerelle::network
