// Applies the network's mapping definitions (mappings/network/definitions/*.json, data checked at
// load time) to turn a network document into a FHIR R4 transaction Bundle, and a stored document
// (a List naming the document's resources) back into the network document. The definitions and the
// ConceptMaps they use are embedded in the binary; see mappings/network/README.md for the format.
// Thread-safe after construction: every method is const.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace passerelle::network {

using Json = nlohmann::ordered_json;

struct MappingIssue {
  std::string path;     // document path ("measures.vas.method") or FHIR path ("Encounter.subject")
  std::string message;
};

// Systems the mappings write and read back.
inline constexpr std::string_view kEntrySystem = "https://douleur77.fr/fhir/sid/network-entry";
inline constexpr std::string_view kDocumentSystem = "https://douleur77.fr/fhir/sid/network-document";
inline constexpr std::string_view kDocumentKindSystem = "https://douleur77.fr/fhir/CodeSystem/network-document";
inline constexpr std::string_view kMappingRuleSystem = "https://douleur77.fr/fhir/CodeSystem/network-mapping-rule";
inline constexpr std::string_view kMemberSystem = "https://douleur77.fr/fhir/sid/member";

// One resource of a forward mapping, as it goes into the transaction.
struct MappedEntry {
  std::string rule;        // the definition's resource rule name
  std::size_t index = 0;   // item index for forEach rules
  std::string fullUrl;     // urn:uuid:..., stable for (documentId, rule, index)
  std::string method;      // POST (create if none) or PUT (conditional update)
  std::string url;         // "Encounter" or "Patient?identifier=..."
  std::string ifNoneExist; // for POST
  bool merge = false;      // PUT that keeps the stored resource's `keep` elements
  std::vector<std::string> keep;
  std::shared_ptr<Json> resource;  // never null
};

class MappingSet {
 public:
  // The definitions built into the binary. Aborts with a message naming the file and path when a
  // definition is malformed (it is checked in CI: a broken definition cannot ship).
  static const MappingSet& builtIn();
  // Parses definitions and ConceptMaps given as (file name, text); `error` names the bad one.
  static std::unique_ptr<MappingSet> load(const std::vector<std::pair<std::string, std::string>>& definitions,
                                          const std::vector<std::pair<std::string, std::string>>& conceptMaps,
                                          std::string& error);
  ~MappingSet();

  std::vector<std::string> kinds() const;
  bool has(std::string_view kind) const;
  std::string version(std::string_view kind) const;

  // Forward: `doc` (valid against its schema) and the values the rules derived -> the entries of
  // the transaction, the List that indexes the document last. Issues are mapping failures (a code
  // without a translation): the document must then be refused.
  std::vector<MappedEntry> toEntries(std::string_view kind, const Json& doc, const Json& derived,
                                     std::vector<MappingIssue>& issues) const;
  // The same as a transaction Bundle.
  Json toBundle(std::string_view kind, const Json& doc, const Json& derived, std::vector<MappingIssue>& issues) const;

  // Reverse: the document's List and a lookup from the List's item references to resources.
  // `referenceToConditional` turns a stored reference ("Patient/12") into the conditional form the
  // mappings read ("Patient?identifier=system|value"); identity for conditional references.
  using Lookup = std::function<const Json*(const std::string& reference)>;
  using ReferenceResolver = std::function<std::string(const std::string& reference)>;
  Json fromList(const Json& list, const Lookup& lookup, const ReferenceResolver& referenceToConditional,
                std::vector<MappingIssue>& issues) const;
  // Reverse of toBundle (offline conversion): finds the List in the Bundle and reads its entries.
  Json fromBundle(const Json& bundle, std::vector<MappingIssue>& issues) const;

  // The conditional reference a document reference object stands for:
  // {"nir": X} -> "Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|X"; {"rpps": X} (professional)
  // -> "PractitionerRole?identifier=https://douleur77.fr/fhir/sid/member|rpps:X"; ... "" if unknown.
  static std::string conditionalReference(std::string_view refKind, const Json& ref);
  // The conditional reference a stored resource is known by, from its identifiers (a Patient by its
  // NIR, else NIA, else network id; a PractitionerRole by its member identifier; an Organization by
  // its FINESS...); "" when it has none of them.
  static std::string conditionalReferenceOf(const Json& resource);
  // The reverse: "Patient?identifier=..." -> {"nir": X} and the ref kind it is; false otherwise.
  static bool parseConditionalReference(const std::string& reference, std::string& refKind, Json& ref);

  struct Impl;

 private:
  MappingSet();
  std::unique_ptr<Impl> impl_;
};

}  // namespace passerelle::network
