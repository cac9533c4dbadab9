// The JSON Schemas of the network's documents (schemas/network, built into the binary) and the check of
// a document against its kind's schema. Thread-safe once constructed; build it once (instance()).
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace passerelle::network {

using Json = nlohmann::ordered_json;

// A problem in a document: where, as a dotted document path ("patient.given[0]",
// "measures.vas.value"; "" for the whole document), and a sentence for people.
struct DocumentIssue {
  std::string path;
  std::string message;
};

// How the schema describes a value once $refs are followed: what the XML form needs to be read back
// and written. Owned by the DocumentSchemas that made it.
struct ValueShape {
  enum class Kind { kObject, kArray, kString, kInteger, kNumber, kBoolean };
  struct Member {
    std::string name;
    const ValueShape* shape = nullptr;
    bool required = false;
  };
  Kind kind = Kind::kString;
  bool date = false;                  // string with format "date"
  bool base64 = false;                // string with contentEncoding "base64"
  std::vector<Member> members;        // objects: in schema order (the XML order)
  const ValueShape* items = nullptr;  // arrays
  const Json* schema = nullptr;       // the schema node itself (constraints, for messages)

  // The member called `name`, or nullptr.
  const Member* member(std::string_view name) const;
};

class DocumentSchemas {
 public:
  // Loads and compiles every embedded schema. Never throws: a schema that cannot be loaded (a build
  // defect the unit tests catch) makes validate() report it for its kind.
  DocumentSchemas();
  ~DocumentSchemas();
  DocumentSchemas(const DocumentSchemas&) = delete;
  DocumentSchemas& operator=(const DocumentSchemas&) = delete;

  // The process-wide instance, built on first use (thread-safe).
  static const DocumentSchemas& instance();

  // The 14 kinds ("professional", "consent-renewal"...), in the order of schemas/network/README.md.
  std::vector<std::string> kinds() const;
  bool hasKind(std::string_view kind) const;

  // Checks `doc` against the kind's JSON Schema (draft-07), with its formats (calendar dates, base64)
  // and multipleOf (one decimal). Returns no issue when the document is valid; one issue per failing
  // member otherwise. An unknown kind is one issue at "". Never throws.
  std::vector<DocumentIssue> validate(std::string_view kind, const Json& doc) const;

  // The embedded texts of the kind's JSON Schema and XSD; empty for an unknown kind.
  // "common" gives common.schema.json (it has no XSD).
  std::string_view schemaText(std::string_view kind) const;
  std::string_view xsdText(std::string_view kind) const;

  // `doc` with its members in schema order (the order of the README, the XSD and the examples),
  // recursively; members the schema does not know keep their place after the known ones. Documents
  // read back from FHIR are written in this order.
  Json inSchemaOrder(std::string_view kind, const Json& doc) const;

  // The shape of the kind's document (its root object), or nullptr for an unknown kind.
  const ValueShape* shape(std::string_view kind) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace passerelle::network
