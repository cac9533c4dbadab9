// CDA R2 documents as the CI-SIS (French interoperability framework) shapes them: read with
// xerces-c under the project's XML hardening (a DOCTYPE refused before parsing, no entity resolved,
// no schema fetched, nesting and size limited), validated against an XSD when one is given (the
// HL7 CDA R2 schema, or a root schema of one's own importing it), and their header read: the
// document (id, type, title, date), the patient (INS and other ids, names with their qualifiers,
// sex, birth date), the author (RPPS), the custodian, and the body (a level 1 PDF or text, or the
// text of a structured body's sections). Mapped to FHIR R4: Patient (to find the network patient)
// and DocumentReference carrying the CDA itself (and its PDF).
// No sockets, no database. Thread-safety: plain functions; a Schema may be shared (its parses are
// serialised).
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace passerelle::cda {

struct Issue {
  std::string where;  // "line 12, column 4", or an element path
  std::string message;
};

// A compiled XSD; load once, share.
class Schema {
 public:
  // Loads `path`: its includes and imports are local files read relative to the schema naming them;
  // the root's own, when not beside it, from `components` (a folder: the ANS CDA components for
  // schemas/cda/CDA_FR.xsd). A location that is not a local file is refused. nullptr with `error`.
  static std::shared_ptr<Schema> load(const std::string& path, std::string& error, const std::string& components = "");
  ~Schema();
  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
  Schema();
};

struct Identifier {
  std::string root, extension;
};

struct Document {
  Identifier id;
  std::string code, codeSystem, codeDisplay;  // the document type (LOINC 2.16.840.1.113883.6.1 in the CI-SIS)
  std::string title;
  std::string effectiveTime;                   // as written (YYYYMMDDhhmmss+zzzz)
  std::vector<std::string> templateIds;
  // recordTarget/patientRole
  std::vector<Identifier> patientIds;
  std::string birthFamily, usualFamily;        // family with qualifier BR (birth name) / SP or none
  std::vector<std::string> given;
  std::string gender;                          // administrativeGenderCode: M, F, UN
  std::string birthTime;
  // patient/birthplace/place/addr: the INSEE code of the commune of birth (county, as the CI-SIS
  // writes it) and the city
  std::string birthPlaceCode, birthPlaceCity;
  // author/assignedAuthor
  Identifier authorId;
  std::string authorFamily, authorGiven;
  // custodian/assignedCustodian/representedCustodianOrganization
  Identifier custodianId;
  std::string custodianName;
  // body
  std::string bodyMediaType;                   // nonXMLBody/text/@mediaType (application/pdf...)
  std::string bodyBase64;                      // its content when representation="B64"
  std::string bodyText;                        // structuredBody: the sections' titles and text
  bool structured = false;
  // Level 3: the observations of the structured body's entries (a code and a physical quantity).
  struct Result {
    std::string code, codeSystem, display;     // codeSystem as an OID (LOINC 2.16.840.1.113883.6.1) or UUID
    std::string codeSystemName;                // the system's URL when it has no OID
    std::string value, unit;                   // PQ value and unit as written
    std::string time;                          // effectiveTime
  };
  std::vector<Result> results;
};

struct Limits {
  std::size_t maxBytes = 32u << 20;
  int maxDepth = 256;
};

// Reads a CDA document. `schema` may be null (no XSD validation). False with `issues` when it is
// not a usable CDA: not well-formed XML, a DOCTYPE, another encoding than UTF-8, nested too deep,
// invalid against the schema, or without the header elements a document needs (id, code,
// effectiveTime, recordTarget with a patient id).
bool read(std::string_view xml, Schema* schema, const Limits& limits, Document& doc, std::vector<Issue>& issues);

// The FHIR resources of a document, added to `bundle` (a transaction Bundle, created when not an
// object yet): a Patient (its ids, INS as FR Core writes them, names, sex, birth date), an
// Observation per level 3 result (derived from the document, identified by the document's id and
// its position: not stored twice), and a DocumentReference (masterIdentifier, type, author RPPS,
// custodian, the CDA as text/xml and the PDF when it carries one), linked by urn:uuid full URLs.
void toBundle(const Document& doc, std::string_view xml, nlohmann::json& bundle);

// A CI-SIS CDA document (level 1 header, a structured body with the report's text and, when there
// are results, a section whose entries carry them as level 3 observations) written as UTF-8 XML.
// `doc.effectiveTime` and the results' times are written as given (YYYYMMDD[hhmmss+zzzz]).
std::string write(const Document& doc);

// A Document from a FHIR Bundle holding a Patient, a report (a Composition, with the network's
// report text) and Observations: the patient's INS and names, the author's RPPS (a network member
// identifier "rpps:N"), the Composition's identifier, type and date, the Observations with a
// Quantity or integer value (components included) as results. Without a Composition, a referral
// (ServiceRequest) gives the referral letter (LOINC 57133-1): its requester, reason and due date.
// False with `error` when the Bundle holds no Patient, or neither report nor referral.
bool fromFhir(const nlohmann::json& bundle, const std::string& custodianName, Document& doc, std::string& error);

// The RPPS of an author id: IDNPS root 1.2.250.1.71.4.2.1 with extension "8" + RPPS; "" otherwise.
std::string rppsOf(const Identifier& id);

}  // namespace passerelle::cda
