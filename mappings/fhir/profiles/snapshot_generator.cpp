// Snapshot generation on the JSON of the definitions (start-up work, like the rest of loading): the
// working list is the base snapshot's elements in order, found by id; a differential element is
// located segment by segment from the root, unrolling a data type's children or adding a slice when
// the base does not have the element yet, then merged into it.
#include "mappings/fhir/profiles/snapshot_generator.h"

#include <cctype>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace passerelle::fhir::profiles {

using nlohmann::json;

namespace {

constexpr std::string_view kCoreSd = "http://hl7.org/fhir/StructureDefinition/";

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool startsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// Type codes and the suffixes of choice names differ in the case of their first letter only.
bool sameType(std::string_view code, std::string_view suffix) {
  if (code.size() != suffix.size() || code.empty()) return false;
  if (std::toupper(static_cast<unsigned char>(code[0])) != std::toupper(static_cast<unsigned char>(suffix[0])))
    return false;
  return code.substr(1) == suffix.substr(1);
}

// Ids for elements that have none (older definitions): the path, under the last slice seen on the
// parent's path.
void fillIds(json& elements) {
  std::unordered_map<std::string, std::string> lastIdForPath;
  for (auto& el : elements) {
    if (!el.is_object()) continue;
    std::string path = str(el, "path"), id = str(el, "id");
    if (id.empty()) {
      id = elementIdFromPath(path, str(el, "sliceName"), lastIdForPath);
      el["id"] = id;
    }
    lastIdForPath[path] = id;
  }
}

class Generator {
 public:
  Generator(const SnapshotLookup& lookup, json& elements) : lookup_(lookup), els_(elements), base_(elements) {}

  bool apply(const json& diff, std::string& error);

 private:
  std::string idAt(std::size_t i) const { return str(els_[i], "id"); }

  int indexOf(std::string_view id) const {
    for (std::size_t i = 0; i < els_.size(); ++i) {
      auto it = els_[i].find("id");
      if (it != els_[i].end() && it->is_string() && it->get_ref<const std::string&>() == id) return static_cast<int>(i);
    }
    return -1;
  }

  // One past the last element under element i (its children, slices and theirs).
  std::size_t subtreeEnd(std::size_t i) const {
    std::string id = idAt(i);
    std::size_t j = i + 1;
    for (; j < els_.size(); ++j) {
      std::string other = idAt(j);
      if (!(other.size() > id.size() && startsWith(other, id) && (other[id.size()] == '.' || other[id.size()] == ':')))
        break;
    }
    return j;
  }

  bool hasChildren(std::size_t i) const {
    if (i + 1 >= els_.size()) return false;
    std::string id = idAt(i), next = idAt(i + 1);
    return next.size() > id.size() && startsWith(next, id) && next[id.size()] == '.';
  }

  // Copies of `source` elements [from, to) re-rooted from (oldId, oldPath) to (newId, newPath).
  static json reroot(const json& source, std::size_t from, std::size_t to, const std::string& oldId,
                     const std::string& oldPath, const std::string& newId, const std::string& newPath) {
    json out = json::array();
    for (std::size_t k = from; k < to; ++k) {
      json c = source[k];
      std::string id = str(c, "id"), path = str(c, "path");
      if (startsWith(id, oldId)) c["id"] = newId + id.substr(oldId.size());
      if (startsWith(path, oldPath)) c["path"] = newPath + path.substr(oldPath.size());
      out.push_back(std::move(c));
    }
    return out;
  }

  void insertAt(std::size_t at, const json& items) {
    // json arrays insert by iterator.
    els_.insert(els_.begin() + static_cast<std::ptrdiff_t>(at), items.begin(), items.end());
  }

  bool expand(std::size_t i, std::string& error);
  bool addSlice(std::size_t sliced, const std::string& sliceName, std::string& error);
  int locate(const std::string& id, std::string& error);
  void merge(json& target, const json& d);

  const SnapshotLookup& lookup_;
  json& els_;
  const json base_;  // the base snapshot as it was: contentReferences name its elements, unconstrained
};

bool Generator::expand(std::size_t i, std::string& error) {
  if (hasChildren(i)) return true;
  json& e = els_[i];
  std::string id = idAt(i), path = str(e, "path");
  std::string ref = str(e, "contentReference");
  if (!ref.empty()) {
    // The referenced element's children in the base (not as this differential constrains them).
    std::string refId = ref.substr(ref.find('#') + 1);
    std::size_t k = 0;
    while (k < base_.size() && str(base_[k], "id") != refId) ++k;
    if (k == base_.size()) {
      error = "the contentReference " + ref + " of " + id + " names no element";
      return false;
    }
    std::string refPath = str(base_[k], "path");
    json copies = json::array();
    for (std::size_t j = k + 1; j < base_.size(); ++j) {
      std::string cid = str(base_[j], "id");
      if (!(cid.size() > refId.size() && startsWith(cid, refId) && (cid[refId.size()] == '.' || cid[refId.size()] == ':')))
        break;
      if (cid.find(':', refId.size()) != std::string::npos) continue;  // the referenced element's slices
      copies.push_back(reroot(base_, j, j + 1, refId, refPath, id, path)[0]);
    }
    els_[i].erase("contentReference");
    insertAt(i + 1, copies);
    return true;
  }
  auto types = e.find("type");
  if (types == e.end() || !types->is_array() || types->size() != 1) {
    error = "the differential constrains inside " + id + ", which has " +
            (types == e.end() || !types->is_array() ? std::string("no type") : std::to_string(types->size()) + " types");
    return false;
  }
  const json& t = (*types)[0];
  std::string code = str(t, "code");
  const json* base = nullptr;
  std::string why;
  // A type profile's snapshot when it is known, else the data type's.
  if (auto prof = t.find("profile"); prof != t.end() && prof->is_array() && prof->size() == 1 && (*prof)[0].is_string())
    base = lookup_((*prof)[0].get<std::string>(), why);
  if (!base || !base->is_array() || base->empty()) base = lookup_(std::string(kCoreSd) + code, why);
  if (!base || !base->is_array() || base->empty()) {
    error = "the type " + code + " of " + id + " is not known" + (why.empty() ? "" : " (" + why + ")");
    return false;
  }
  json copy = *base;
  fillIds(copy);
  insertAt(i + 1, reroot(copy, 1, copy.size(), str(copy[0], "id"), str(copy[0], "path"), id, path));
  return true;
}

bool Generator::addSlice(std::size_t sliced, const std::string& sliceName, std::string& error) {
  (void)error;
  std::string id = idAt(sliced), path = str(els_[sliced], "path");
  std::size_t end = subtreeEnd(sliced);
  json copies = json::array();
  for (std::size_t j = sliced; j < end; ++j) {
    std::string cid = idAt(j);
    if (j > sliced && cid[id.size()] == ':') {
      // Other slices of the element and their children are not part of the copy.
      continue;
    }
    copies.push_back(reroot(els_, j, j + 1, id, path, id + ":" + sliceName, path)[0]);
  }
  json& root = copies[0];
  root["sliceName"] = sliceName;
  root.erase("slicing");
  root["min"] = 0;
  // A type slice of a choice (value[x]:valueQuantity) has that type only.
  std::string name = path.substr(path.rfind('.') + 1);
  if (name.size() > 3 && name.compare(name.size() - 3, 3, "[x]") == 0 && root.contains("type") &&
      startsWith(sliceName, name.substr(0, name.size() - 3))) {
    std::string suffix = sliceName.substr(name.size() - 3);
    json kept = json::array();
    for (const auto& t : root["type"])
      if (sameType(str(t, "code"), suffix)) kept.push_back(t);
    if (!kept.empty()) root["type"] = kept;
  }
  insertAt(end, copies);
  return true;
}

// The index of the element `id` names, unrolled or added as needed; -1 with `error` when the base
// does not have it.
int Generator::locate(const std::string& id, std::string& error) {
  std::vector<std::string> segs;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= id.size(); ++i)
    if (i == id.size() || id[i] == '.') {
      segs.push_back(id.substr(start, i - start));
      start = i + 1;
    }
  std::string rootId = idAt(0);
  if (segs[0] != rootId) {
    error = "the differential element " + id + " is not under the base's root " + rootId;
    return -1;
  }
  std::size_t cur = 0;
  for (std::size_t s = 1; s < segs.size(); ++s) {
    std::string seg = segs[s], slice;
    if (auto colon = seg.find(':'); colon != std::string::npos) {
      slice = seg.substr(colon + 1);
      seg = seg.substr(0, colon);
    }
    std::string curId = idAt(cur);
    std::string childId = curId + "." + seg;
    int k = indexOf(childId);
    if (k < 0) {
      if (!expand(cur, error)) return -1;
      k = indexOf(childId);
    }
    if (k < 0) {
      // valueString: the choice value[x], narrowed to that type.
      for (std::size_t j = cur + 1; j < els_.size() && k < 0; ++j) {
        std::string cid = idAt(j);
        if (!startsWith(cid, curId + ".")) break;
        std::string name = cid.substr(curId.size() + 1);
        if (name.find('.') != std::string::npos || name.find(':') != std::string::npos || name.size() <= 3 ||
            name.compare(name.size() - 3, 3, "[x]") != 0)
          continue;
        std::string base = name.substr(0, name.size() - 3);
        if (seg.size() <= base.size() || !startsWith(seg, base) ||
            !std::isupper(static_cast<unsigned char>(seg[base.size()])))
          continue;
        std::string suffix = seg.substr(base.size());
        json& el = els_[j];
        json kept = json::array();
        for (const auto& t : el.value("type", json::array()))
          if (sameType(str(t, "code"), suffix)) kept.push_back(t);
        if (kept.empty()) {
          error = "the differential names " + id + ", but " + cid + " does not allow the type " + suffix;
          return -1;
        }
        el["type"] = kept;
        k = static_cast<int>(j);
      }
    }
    if (k < 0) {
      error = "the differential names " + id + ", which its base does not have (no element " + childId + ")";
      return -1;
    }
    if (!slice.empty()) {
      std::string sliceId = idAt(static_cast<std::size_t>(k)) + ":" + slice;
      int si = indexOf(sliceId);
      if (si < 0) {
        if (!addSlice(static_cast<std::size_t>(k), slice, error)) return -1;
        si = indexOf(sliceId);
      }
      k = si;
    }
    cur = static_cast<std::size_t>(k);
  }
  return static_cast<int>(cur);
}

void Generator::merge(json& target, const json& d) {
  for (const auto& [key, value] : d.items()) {
    if (key == "id" || key == "path" || key == "sliceName" || key == "extension" || key == "modifierExtension")
      continue;
    bool fixedOrPattern = (startsWith(key, "fixed") && key.size() > 5 && std::isupper(static_cast<unsigned char>(key[5]))) ||
                          (startsWith(key, "pattern") && key.size() > 7 && std::isupper(static_cast<unsigned char>(key[7])));
    if (fixedOrPattern) {
      for (auto it = target.begin(); it != target.end();) {
        const std::string& k = it.key();
        if ((startsWith(k, "fixed") && k.size() > 5 && std::isupper(static_cast<unsigned char>(k[5]))) ||
            (startsWith(k, "pattern") && k.size() > 7 && std::isupper(static_cast<unsigned char>(k[7]))))
          it = target.erase(it);
        else
          ++it;
      }
    }
    if (key == "slicing" && target.contains("slicing") && target["slicing"].is_object() && value.is_object()) {
      for (const auto& [sk, sv] : value.items()) target["slicing"][sk] = sv;
      continue;
    }
    target[key] = value;
  }
}

bool Generator::apply(const json& diff, std::string& error) {
  std::unordered_map<std::string, std::string> lastIdForPath;
  for (const auto& d : diff) {
    if (!d.is_object()) continue;
    std::string path = str(d, "path"), id = str(d, "id");
    if (path.empty() && id.empty()) {
      error = "a differential element has neither path nor id";
      return false;
    }
    if (id.empty()) id = elementIdFromPath(path, str(d, "sliceName"), lastIdForPath);
    if (!path.empty()) lastIdForPath[path] = id;
    // Re-slices (slice/reslice) are left out.
    if (auto colon = id.find(':'); colon != std::string::npos && id.find('/', colon) != std::string::npos) continue;
    int k = locate(id, error);
    if (k < 0) return false;
    merge(els_[static_cast<std::size_t>(k)], d);
  }
  return true;
}

}  // namespace

bool generateSnapshot(const json& sd, const SnapshotLookup& lookup, json& elements, std::string& error) {
  std::string base = str(sd, "baseDefinition");
  if (base.empty()) {
    error = "it has no snapshot and no baseDefinition to generate one from";
    return false;
  }
  auto diff = sd.find("differential");
  if (diff == sd.end() || !diff->is_object() || !diff->contains("element") || !(*diff)["element"].is_array()) {
    error = "it has neither a snapshot nor a differential";
    return false;
  }
  std::string why;
  const json* baseElements = lookup(base, why);
  if (!baseElements || !baseElements->is_array() || baseElements->empty()) {
    error = "its base " + base + " is not known" + (why.empty() ? "" : " (" + why + ")");
    return false;
  }
  elements = *baseElements;
  fillIds(elements);
  Generator g(lookup, elements);
  if (!g.apply((*diff)["element"], error)) {
    elements = json();
    return false;
  }
  return true;
}

std::string elementIdFromPath(const std::string& path, const std::string& sliceName,
                              const std::unordered_map<std::string, std::string>& lastIdForPath) {
  std::string id = path;
  if (auto dot = path.rfind('.'); dot != std::string::npos) {
    auto it = lastIdForPath.find(path.substr(0, dot));
    id = (it != lastIdForPath.end() ? it->second : path.substr(0, dot)) + path.substr(dot);
  }
  if (!sliceName.empty()) id += ":" + sliceName;
  return id;
}

}  // namespace passerelle::fhir::profiles
