// Walks one parsed FHIR R4 JSON document (simdjson DOM) against the validation tables and appends
// an Issue, with its FHIRPath location, for every problem: shape, unknown elements, primitive
// formats, cardinality, choice types, required codes, references and the base invariants
// (ele-1, ext-1, dom-2..dom-5, obs-6, obs-7, per-1, bdl-1..bdl-12, txt-1, txt-2), the Bundle rules (fullUrl
// against the resource, references resolved between entries, what a transaction entry carries),
// local references to contained resources, links inside narratives, and markdown without HTML.
// One walker per validation; not thread-safe, cheap to build. Never throws except bad_alloc.
#pragma once

#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mappings/fhir/operation_outcome.h"
#include "mappings/fhir/validation/validation_tables.h"

namespace passerelle::fhir {
struct ValidationPolicy;
}

namespace passerelle::fhir::validation {

class ResourceWalker {
 public:
  // `policy`, when not null, adds its refusals (mappings/fhir/validator.h).
  ResourceWalker(const ValidationTables& tables, std::vector<Issue>& issues, const ValidationPolicy* policy = nullptr);
  ~ResourceWalker();
  ResourceWalker(const ResourceWalker&) = delete;
  ResourceWalker& operator=(const ResourceWalker&) = delete;

  // Validates `root` as a resource; when `expectedType` is not empty the resourceType must match.
  void validateDocument(simdjson::dom::element root, std::string_view expectedType);

  // Whether an element extension or modifierExtension was met in what was walked. Without an
  // error reported, every member of the document was walked.
  bool extensionSeen() const { return extensionSeen_; }

  // Issues beyond this many are dropped (one last issue says so).
  static constexpr std::size_t kMaxIssues = 500;

 private:
  struct PathPiece {
    std::string_view name;
    std::int32_t index = -1;     // array index, -1 when none
    std::string_view ofType;     // for choice elements: value.ofType(Quantity)
  };
  struct Field {
    std::int16_t element;
    bool underscore;
    simdjson::dom::element value;
  };
  // What a resource (and the resources it contains) collects for dom-3.
  struct ResourceFrame {
    std::vector<std::string_view> localRefs;       // "#id" values met anywhere in the resource
    std::vector<std::int32_t> containerRefIn;      // contained indexes that reference "#"
    std::vector<std::pair<std::string_view, std::string>> referenceUses;  // Reference "#id", with its path
  };
  // A reference met inside a Bundle's entry, resolved once the Bundle has been walked.
  struct BundleReference {
    std::string_view ref;
    std::int32_t entry;
    const ElementDef* via;
    std::string path;
  };
  struct BundleFrame {
    std::size_t depth;       // index in path_ of the Bundle's "entry" piece
    bool resolveAll;         // document and message: every reference resolves inside
    std::vector<BundleReference> refs;
  };
  // A link to "#id" from a narrative, resolved at the end of the document.
  struct NarrativeLink {
    std::string_view target;
    std::string path;
  };

  void validateResource(simdjson::dom::object obj, simdjson::dom::element self, std::string_view expectedType,
                        bool contained);
  void walkObject(simdjson::dom::object obj, simdjson::dom::element self, int typeIndex, const ElementDef* via,
                  int inheritedValueSet, bool resourceRoot);
  void checkInvariants(const TypeDef& type, simdjson::dom::element self, std::size_t base, std::size_t end);
  void walkField(const TypeDef& type, std::size_t fieldIndex, std::size_t base, std::size_t end,
                 int inheritedValueSet, bool resourceRoot);
  void checkValue(simdjson::dom::element v, const ElementDef& e, int inheritedValueSet, bool resourceRoot);
  void checkPrimitive(simdjson::dom::element v, const ElementDef& e, bool isResourceId);
  void checkString(std::string_view s, const ElementDef& e, bool isResourceId);
  void checkReference(std::string_view ref, const ElementDef* via);
  void checkReferenceType(std::string_view ref, std::string_view declared, const ElementDef* via);
  void checkCoding(simdjson::dom::object coding, int valueSet);
  void checkAttachment(simdjson::dom::object attachment);
  void checkPeriod(simdjson::dom::object period);
  void checkExtension(std::size_t base, std::size_t end, const TypeDef& type);
  void checkContained(simdjson::dom::object obj);
  void checkObservation(simdjson::dom::object obj);
  void checkBundle(simdjson::dom::object obj, BundleFrame& frame);
  void checkBundleEntryRequest(std::string_view bundleType, simdjson::dom::object entry, bool hasResource,
                               simdjson::dom::object resource);
  void resolveBundleReferences(simdjson::dom::array entries, BundleFrame& frame);
  void checkMarkdown(std::string_view s);
  void checkNarrativeLinks();

  void report(std::string_view code, std::string message, std::string_view severity = "error");
  void reportAt(std::string path, std::string_view code, std::string message, std::string_view severity = "error");
  std::string pathString() const;
  // The path being walked: one piece per JSON level, so never deeper than the parser allows; kept in
  // place (a push per member walked is the walk's most frequent operation).
  class PathStack {
   public:
    static constexpr std::size_t kMax = 96;  // more than Validator::kMaxDepth (64) levels
    void push_back(const PathPiece& p) {
      if (n_ < kMax) s_.items[n_] = p;
      ++n_;
    }
    void pop_back() { --n_; }
    PathPiece& back() { return s_.items[std::min(n_, kMax) - 1]; }
    const PathPiece& operator[](std::size_t i) const { return s_.items[i]; }
    std::size_t size() const { return std::min(n_, kMax); }
    bool empty() const { return n_ == 0; }

   private:
    // Left unwritten until pushed: a walker is made per validation, and 96 pieces written at each
    // would cost more than a small resource's walk reads.
    union Storage {
      Storage() {}
      PathPiece items[kMax];
    } s_;
    std::size_t n_ = 0;
  };

  void push(std::string_view name, std::int32_t index = -1, std::string_view ofType = {}) {
    path_.push_back({name, index, ofType});
  }
  void pop() { path_.pop_back(); }

  static std::vector<Field>& spareFields();
  static std::vector<std::string_view>& spareAnchors();

  const ValidationTables& tables_;
  std::vector<Issue>& issues_;
  const ValidationPolicy* policy_;
  PathStack path_;
  std::vector<simdjson::dom::element> resources_;  // the resources being walked, innermost last
  std::vector<Field> fields_;
  std::vector<ResourceFrame> frames_;
  std::vector<BundleFrame> bundles_;
  std::vector<std::string_view> anchors_;        // ids met anywhere in the document (elements, resources, XHTML)
  std::vector<NarrativeLink> narrativeLinks_;
  std::int32_t containedIndex_ = -1;  // index in the current resource's contained, -1 outside
  bool subExtension_ = false;         // walking the extensions of an extension
  bool extensionSeen_ = false;        // extensionSeen()
  const int periodType_;
  const TypeDef* const extensionTypeDef_;
  const TypeDef* const codeableConceptTypeDef_;
  bool truncated_ = false;
};

}  // namespace passerelle::fhir::validation
