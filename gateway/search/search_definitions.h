// The FHIR R4 search parameters the gateway indexes, read from the table that
// scripts/gen_fhir_search.py generates from the official definitions
// (schemas/fhir-r4/search_parameters.json, embedded in the binary). Immutable once loaded.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace passerelle::search {

enum class ParamKind { kToken, kString, kDate, kReference, kQuantity, kNumber, kUri, kComposite };

const char* kindName(ParamKind k);

// One step of an extraction path: a JSON member, optionally kept only where a member of it
// equals a value (.where(system='phone')).
struct Step {
  std::string key;
  std::string whereKey, whereValue;
  bool many = false;  // the element repeats
};

struct Path {
  std::vector<Step> steps;
  std::string valueType;             // the FHIR type reached: CodeableConcept, HumanName, dateTime...
  std::vector<std::string> resolve;  // references: only targets of these types (.where(resolve() is X))
};

struct Component {
  std::string code;
  ParamKind kind = ParamKind::kToken;
  std::vector<Path> paths;  // relative to the composite's base element
};

struct ParamDef {
  std::string type;  // the resource type, or "Resource" for _tag, _profile...
  std::string code;
  std::string url;
  ParamKind kind = ParamKind::kToken;
  std::vector<Path> paths;
  std::vector<std::string> targets;
  std::vector<Component> components;
  bool exists = false;  // token true/false from the existence of the paths' values
  bool single = false;  // a resource has at most one value (no repeating step, one element or one choice)
  std::string key;      // index key: "Observation.code", "Resource._tag"
  // Another parameter of the type extracts exactly the same values (Patient.phonetic and
  // Patient.name): this one is searched through that one's rows (`key` is its key) and has none.
  bool sharesRows = false;
};

class SearchDefinitions {
 public:
  // The embedded R4 table, parsed on first use.
  static const SearchDefinitions& r4();
  static std::unique_ptr<SearchDefinitions> parse(std::string_view json);

  // The parameter `code` of `type` (its own, or a Resource-level one); nullptr when unknown.
  const ParamDef* find(const std::string& type, const std::string& code) const;
  // Every parameter of `type`, Resource-level ones included, sorted by code.
  const std::vector<const ParamDef*>& forType(const std::string& type) const;
  // Top-level elements marked as summary (choice elements as "value[x]").
  const std::vector<std::string>& summary(const std::string& type) const;
  // Top-level elements with a minimum cardinality of 1.
  const std::vector<std::string>& mandatory(const std::string& type) const;
  // Changes whenever the table or the way rows are derived from it changes.
  const std::string& fingerprint() const { return fingerprint_; }
  std::size_t size() const { return params_.size(); }

 private:
  std::vector<const ParamDef*> combine(const std::string& type) const;
  std::map<std::string, std::vector<const ParamDef*>> combined_;
  std::map<std::string, std::map<std::string, ParamDef>> params_;  // type -> code -> def
  std::map<std::string, std::vector<std::string>> summary_;
  std::map<std::string, std::vector<std::string>> mandatory_;
  std::string fingerprint_;
};

std::string_view embeddedSearchTable();

}  // namespace passerelle::search
