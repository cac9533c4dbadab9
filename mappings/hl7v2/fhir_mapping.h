// HL7 v2 <-> FHIR R4 for the referral loop with the hospitals (DOMAIN.md §3.A), following the HL7
// v2-to-FHIR segment and datatype maps (PID -> Patient, PV1 -> Encounter, TXA/OBX -> DocumentReference,
// RF1/PRD -> ServiceRequest) with the French conventions of the ANS (INS in PID-3 with the OIDs of
// the INS-NIR and INS-NIA, RPPS as XCN with the IDNPS OID, CDA in OBX-5 as Base64 ED).
//   inbound:  ADT^A01/A03/A04/A08/A28/A31/A40, RRI^I12, MDM^T02/T10, ORU^R01 -> facts -> FHIR resources
//   outbound: a referral (REF^I12, I13 changed, I14 cancelled) from FHIR resources
// No sockets, no database. Thread-safety: plain functions.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "mappings/common/base64.h"
#include "mappings/hl7v2/message.h"

namespace passerelle::hl7v2 {

struct Identifier {
  std::string system;  // FHIR system (urn:oid:..., https://rpps.esante.gouv.fr...)
  std::string value;
  std::string typeCode;  // v2 identifier type (INS, PI, NH, RPPS, FINEG...)
};

struct PersonFacts {
  std::vector<Identifier> ids;
  std::string family;
  std::vector<std::string> given;
  std::string nameUse;     // FHIR name use from XPN-7 (L -> official, D -> usual...)
  std::string birthDate;   // YYYY-MM-DD
  std::string gender;      // male | female | other | unknown
  std::vector<std::string> lines;
  std::string city, postalCode, country;
  std::string addressUse;  // FHIR address use, from XAD-7 (table 0190)
  std::string ins() const;        // the INS value (NIR or NIA), empty when none
  std::string insSystem() const;  // its system
};

struct DocumentFacts {
  std::string id, parentId;             // TXA-12, TXA-13 (a replaced document), or OBR-3
  std::string typeSystem, typeCode, typeDisplay;  // from OBX-3 (LOINC) or TXA-2
  std::string date;                     // FHIR dateTime
  std::string contentType;              // text/xml (a CDA), application/pdf, text/plain
  std::string data;                     // Base64 as received (checked)
  std::size_t bytes = 0;                // decoded size
  std::string status;                   // OBX-11: F final, C corrected, D deleted...
  std::string authorRpps, authorFamily, authorGiven;
  std::string custodianFiness;
  std::string placerOrder;              // TXA-14 / ORC-2 / OBR-2: the request it answers
};

struct InboundFacts {
  // kSegments: a message outside the referral loop, read for a conversion by its segments only
  // (PID -> Patient, PV1 -> Encounter, OBX -> Observations), whatever its type.
  enum class Kind { kUnsupported, kAdt, kReferralReply, kReport, kSegments };
  Kind kind = Kind::kUnsupported;
  std::string type, event, structure;   // MSH-9: "ADT", "A01", "ADT_A01"
  std::string version, controlId, sentAt;
  std::string sendingApplication, sendingFacility;
  PersonFacts patient;
  bool hasPatient = false;
  // ADT
  bool hasVisit = false;                // a PV1 was read
  std::string visitClass, visitNumber, admitted, discharged;  // PV1-2, PV1-19, PV1-44, PV1-45
  std::string mergedFrom;               // A40: MRG-1's first identifier
  // RRI^I12
  std::string referralId, externalReferralId, replyStatus, replyDate, replyNote;
  // MDM / ORU
  DocumentFacts document;
  // ORU: the results (OBX of type NM, SN, ST, TX, FT, CWE, CE), for the conversion.
  struct Result {
    std::string code, system, display, type, value, unit, status, date;
  };
  std::vector<Result> results;
  bool replaces = false;                // MDM^T10 (or an OBX-11 C)
};

// The event types this mapping reads, e.g. "ADT^A01"; others are refused with code 200.
bool supportedInbound(const std::string& type, const std::string& event);

// Reads what the message says. Problems are appended to `issues` (errors point at the field:
// a missing PID-3, a date that is not one, Base64 that does not decode...).
// How a type outside the referral loop is taken: refused with code 200 (what the hospital connector
// does: it acts only on the loop's messages), or, for a conversion, read by its segments.
enum class OtherTypes { kRefuse, kReadSegments };
InboundFacts readInbound(const Message& m, std::vector<Issue>& issues, OtherTypes others = OtherTypes::kRefuse);

// FHIR resources of the facts (no ids; references left to the caller).
void patientResource(const PersonFacts& p, nlohmann::json& out);
void encounterResource(const InboundFacts& f, nlohmann::json& out);
void documentReferenceResource(const InboundFacts& f, nlohmann::json& out);
// Everything the message carries, as a FHIR transaction Bundle with conditional references
// (`passerelle convert --from hl7v2 --to fhir`).
void toBundle(const InboundFacts& f, nlohmann::json& bundle);
// The same Bundle as JSON text, written straight into `out` (cleared first; reuse it).
void toBundleJson(const InboundFacts& f, std::string& out);

// A referral to send.
struct ReferralOut {
  std::string event = "I12";  // I12 new, I13 changed, I14 cancelled
  std::string controlId, timestamp;  // MSH-10, MSH-7 (YYYYMMDDHHMMSS)
  std::string sendingApplication = "PASSERELLE", sendingFacility = "DOULEUR77";
  std::string receivingApplication, receivingFacility;
  bool enhancedAck = false;  // MSH-15 AL / MSH-16 NE rather than original mode
  std::string referralId, requestedDate, dueDate;  // FHIR dates
  std::string reasonCode, reasonText;
  PersonFacts patient, referring, referredTo;  // referredTo: a professional (RPPS) or a structure (FINESS)
  std::string referredToName;
  struct Diagnosis {
    std::string code, display;
  };
  std::vector<Diagnosis> diagnoses;  // CIM-10
  struct Observation {
    std::string code, display, system, value, unit, date;
  };
  std::vector<Observation> observations;
};

// The facts of a referral from its FHIR resources: the ServiceRequest, the Patient, the
// requester (Practitioner), the performer (Organization or Practitioner), Conditions and
// Observations (any order, other types ignored). False with `error` when something needed is missing.
bool referralFromFhir(const std::vector<const nlohmann::json*>& resources, ReferralOut& out, std::string& error);
// REF^I12 / I13 / I14 (v2.5), UTF-8.
std::string buildReferral(const ReferralOut& r);

// Strict Base64 (RFC 4648, padding required, line breaks allowed); false on anything else.
inline bool decodeBase64(std::string_view text, std::string& out) { return base64::decode(text, out); }
inline std::string encodeBase64(std::string_view bytes) { return base64::encode(bytes); }

}  // namespace passerelle::hl7v2
