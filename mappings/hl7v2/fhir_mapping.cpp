// HL7 v2 <-> FHIR for the referral loop. The field choices follow the HL7 v2-to-FHIR maps
// (segment PID[Patient], PV1[Encounter], TXA/OBX[DocumentReference], RF1/PRD[ServiceRequest];
// datatypes CX[Identifier], XPN[HumanName], XAD[Address], DTM[dateTime], CWE[CodeableConcept]) and the
// ANS conventions for French identifiers.
#include "mappings/hl7v2/fhir_mapping.h"

#include "mappings/common/embedded_file.h"
#include "mappings/common/utf8.h"
#include "mappings/fhir/markdown.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <functional>
#include <map>

namespace passerelle {
const std::vector<EmbeddedFile>& hl7v2TableFiles();
}

namespace passerelle::hl7v2 {
namespace {

using Json = nlohmann::json;

constexpr const char* kInsNir = "urn:oid:1.2.250.1.213.1.4.8";
constexpr const char* kInsNia = "urn:oid:1.2.250.1.213.1.4.9";
constexpr const char* kInsTest = "urn:oid:1.2.250.1.213.1.4.10";
constexpr const char* kInsDemo = "urn:oid:1.2.250.1.213.1.4.11";
constexpr const char* kIdnps = "1.2.250.1.71.4.2.1";
constexpr const char* kRpps = "https://rpps.esante.gouv.fr";
constexpr const char* kFiness = "https://finess.esante.gouv.fr";
constexpr const char* kLoinc = "http://loinc.org";
constexpr const char* kCim10 = "https://smt.esante.gouv.fr/terminologie-cim-10";
constexpr const char* kReferralSid = "https://douleur77.fr/fhir/sid/referral";
constexpr const char* kPatientSid = "https://douleur77.fr/fhir/sid/patient";

// The official v2-to-FHIR vocabulary maps (tables/concept-maps.json): the FHIR code of a v2 code
// in map `name`, or nullptr when the map leaves it unmapped.
struct Target {
  std::string code, system, display;
};
using Table = std::map<std::string, Target, std::less<>>;
const Table* table(std::string_view name) {
  static const std::map<std::string, Table, std::less<>> maps = [] {
    std::map<std::string, Table, std::less<>> out;
    for (const auto& f : hl7v2TableFiles()) {
      if (f.name != "concept-maps.json") continue;
      auto j = Json::parse(f.contents);
      for (const auto& [map, codes] : j["maps"].items())
        for (const auto& [code, t] : codes.items())
          out[map][code] = Target{t.value("code", ""), t.value("system", ""), t.value("display", "")};
    }
    return out;
  }();
  auto m = maps.find(name);
  return m == maps.end() ? nullptr : &m->second;
}
// The map named by a literal is looked up once per call site.
#define PASSERELLE_V2_MAP(name) ([]() -> const Table* { static const Table* t = table(name); return t; }())
const Target* mapped(const Table* t, std::string_view v2) {
  if (!t) return nullptr;
  auto c = t->find(v2);
  return c == t->end() ? nullptr : &c->second;
}

Issue issue(const Message& m, const std::string& seg, std::size_t index, int field, int comp, const std::string& code,
            const std::string& text, const std::string& severity = "error") {
  Issue i;
  i.severity = severity;
  i.segment = static_cast<int>(index) + 1;
  i.segmentId = seg;
  i.field = field;
  i.component = comp;
  i.code = code;
  i.message = text;
  i.location = seg + "-" + std::to_string(field) + (comp > 0 ? "." + std::to_string(comp) : "");
  (void)m;
  return i;
}

bool allDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

// DTM -> FHIR date or dateTime. A time without an offset keeps the date only (FHIR asks for a zone
// with a time). Returns false when the text is not a DTM.
bool dtmToFhir(std::string_view dtm, std::string& out, bool dateOnly = false) {
  out.clear();
  if (dtm.empty()) return true;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  std::size_t n = 0;
  while (n < dtm.size() && digit(dtm[n])) ++n;
  std::string_view digits = dtm.substr(0, n), fraction, offset;
  std::size_t i = n;
  if (i < dtm.size() && dtm[i] == '.') {
    std::size_t from = ++i;
    while (i < dtm.size() && digit(dtm[i])) ++i;
    fraction = dtm.substr(from, i - from);
  }
  if (i < dtm.size() && (dtm[i] == '+' || dtm[i] == '-')) {
    offset = dtm.substr(i);
    i = dtm.size();
    if (offset.size() != 5 || !allDigits(offset.substr(1))) return false;
  }
  if (i != dtm.size()) return false;
  if (n != 4 && n != 6 && n != 8 && n != 10 && n != 12 && n != 14) return false;
  auto two = [&](std::size_t at) { return (digits[at] - '0') * 10 + (digits[at + 1] - '0'); };
  int month = n >= 6 ? two(4) : 1, day = n >= 8 ? two(6) : 1;
  if (month < 1 || month > 12 || day < 1 || day > 31) return false;
  char buf[48];
  std::size_t k = 0;
  auto copy = [&](std::string_view v) {
    std::memcpy(buf + k, v.data(), v.size());
    k += v.size();
  };
  copy(digits.substr(0, 4));
  if (n >= 6) {
    buf[k++] = '-';
    copy(digits.substr(4, 2));
  }
  if (n >= 8) {
    buf[k++] = '-';
    copy(digits.substr(6, 2));
  }
  if (n >= 10 && !dateOnly && !offset.empty()) {
    int hh = two(8), mm = n >= 12 ? two(10) : 0, ss = n >= 14 ? two(12) : 0;
    if (hh > 23 || mm > 59 || ss > 60) return false;
    char sep = 'T';
    for (int v : {hh, mm, ss}) {
      buf[k++] = sep;
      buf[k++] = static_cast<char>('0' + v / 10);
      buf[k++] = static_cast<char>('0' + v % 10);
      sep = ':';
    }
    out.assign(buf, k);
    if (!fraction.empty()) out.append(".").append(fraction);
    out.append(offset.substr(0, 3)).append(":").append(offset.substr(3));
    return true;
  }
  out.assign(buf, k);
  return true;
}

std::string fhirToDtm(const std::string& fhir) {
  std::string out;
  for (char c : fhir) {
    if (c == 'T' || c == '+' || c == 'Z') break;
    if (std::isdigit(static_cast<unsigned char>(c))) out += c;
  }
  return out;
}

// CX -> Identifier. The assigning authority's universal id (CX-4.2) names the system: the INS
// OIDs, the RPPS through the IDNPS OID, otherwise urn:oid:<OID> or the namespace.
Identifier cxToIdentifier(const Message& m, std::size_t seg, int field, int rep) {
  Identifier id;
  id.value = m.value(seg, field, rep, 1);
  id.typeCode = m.value(seg, field, rep, 5);
  std::string ns = m.value(seg, field, rep, 4, 1), oid = m.value(seg, field, rep, 4, 2);
  if (!oid.empty()) id.system = "urn:oid:" + oid;
  else if (!ns.empty()) id.system = "urn:v2:assigner:" + ns;
  return id;
}

std::string genderOf(std::string_view v2) {
  const Target* t = mapped(PASSERELLE_V2_MAP("AdministrativeSex"), v2);  // table 0001
  return t ? t->code : std::string();
}

std::string v2Sex(const std::string& gender) {
  if (gender == "male") return "M";
  if (gender == "female") return "F";
  if (gender == "other") return "O";
  return "U";
}

std::string nameUse(std::string_view code) {
  const Target* t = mapped(PASSERELLE_V2_MAP("NameType"), code);  // table 0200
  return t ? t->code : std::string();
}

void readPerson(const Message& m, std::size_t pid, PersonFacts& p, std::vector<Issue>& issues) {
  for (int r = 1, n = m.repetitions(pid, 3); r <= n; ++r) {
    Identifier id = cxToIdentifier(m, pid, 3, r);
    if (id.value.empty()) continue;
    if (id.typeCode == "INS" && id.system.empty()) id.system = kInsNir;
    p.ids.push_back(std::move(id));
  }
  if (p.ids.empty()) issues.push_back(issue(m, "PID", pid, 3, 1, "101", "PID-3 carries no patient identifier"));
  // The first name repetition of type L (legal) or the first one (XPN-1.1 family, 2 given, 3 more given).
  int best = 1;
  for (int r = 1, n = m.repetitions(pid, 5); r <= n; ++r)
    if (m.value(pid, 5, r, 7) == "L") {
      best = r;
      break;
    }
  p.family = m.value(pid, 5, best, 1, 1);
  if (auto g = m.value(pid, 5, best, 2); !g.empty()) p.given.push_back(g);
  if (auto g = m.value(pid, 5, best, 3); !g.empty()) p.given.push_back(g);
  p.nameUse = nameUse(m.value(pid, 5, best, 7));
  if (!dtmToFhir(m.value(pid, 7, 1, 1), p.birthDate, true))
    issues.push_back(issue(m, "PID", pid, 7, 1, "102", "PID-7 is not a date (YYYYMMDD)"));
  p.gender = genderOf(m.value(pid, 8));
  for (int r = 1, n = m.repetitions(pid, 11); r <= n; ++r) {
    std::string type = m.value(pid, 11, r, 7);
    if (type == "BDL") continue;  // the birthplace
    std::string street = m.value(pid, 11, r, 1, 1);
    if (street.empty() && m.value(pid, 11, r, 3).empty()) continue;
    if (!street.empty()) p.lines.push_back(street);
    if (auto other = m.value(pid, 11, r, 2); !other.empty()) p.lines.push_back(other);
    p.city = m.value(pid, 11, r, 3);
    p.postalCode = m.value(pid, 11, r, 5);
    p.country = m.value(pid, 11, r, 6);
    if (const Target* use = mapped(PASSERELLE_V2_MAP("AddressType[Use]"), type)) p.addressUse = use->code;
    break;
  }
}

// XCN with the IDNPS OID or an RPPS type -> the RPPS (the IDNPS value minus its prefix 8).
void readXcn(const Message& m, std::size_t seg, int field, std::string& rpps, std::string& family, std::string& given) {
  std::string id = m.value(seg, field, 1, 1);
  std::string oid = m.value(seg, field, 1, 9, 2), type = m.value(seg, field, 1, 13);
  if (!id.empty() && (oid == kIdnps || type == "RPPS")) rpps = id.size() == 12 && id[0] == '8' ? id.substr(1) : id;
  family = m.value(seg, field, 1, 2);
  given = m.value(seg, field, 1, 3);
}

// The first `n` components of a raw (escaped) field repetition, in one pass.
void splitComponents(std::string_view raw, char sep, std::string_view* out, int n) {
  std::size_t start = 0;
  for (int i = 0; i < n; ++i) {
    if (start > raw.size()) {
      out[i] = {};
      continue;
    }
    std::size_t end = start;
    while (end < raw.size() && raw[end] != sep) ++end;
    out[i] = raw.substr(start, end - start);
    start = end + 1;
  }
}

// The text of a raw component's first sub-component (as Message::value(seg, f, r, c) gives it):
// unescaped when it holds the escape character, a plain copy otherwise.
std::string plainText(const Message& m, std::string_view raw) {
  const char sub = m.delimiters().subcomponent, esc = m.delimiters().escape;
  bool escaped = false;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == sub) {
      raw = raw.substr(0, i);
      break;
    }
    escaped |= raw[i] == esc;
  }
  if (!escaped) return std::string(raw);
  return unescape(raw, m.delimiters());
}

const std::map<std::string, std::string>& replyStatuses() {
  // HL7 table 0283 (referral status) -> the network's referral states.
  static const std::map<std::string, std::string> t = {{"A", "accepted"}, {"R", "rejected"}, {"P", "received"}, {"E", "expired"}};
  return t;
}


}  // namespace

std::string PersonFacts::ins() const {
  for (const auto& id : ids)
    if (id.system == kInsNir || id.system == kInsNia || id.system == kInsTest || id.system == kInsDemo) return id.value;
  return {};
}

std::string PersonFacts::insSystem() const {
  for (const auto& id : ids)
    if (id.system == kInsNir || id.system == kInsNia || id.system == kInsTest || id.system == kInsDemo) return id.system;
  return {};
}

bool supportedInbound(const std::string& type, const std::string& event) {
  if (type == "ADT") return event == "A01" || event == "A03" || event == "A04" || event == "A08" || event == "A28" || event == "A31" || event == "A40";
  if (type == "RRI") return event == "I12";
  if (type == "MDM") return event == "T02" || event == "T10";
  if (type == "ORU") return event == "R01";
  return false;
}

namespace {

// The visit of PV1 (class, number, admission and discharge).
void readVisit(const Message& m, InboundFacts& f, std::vector<Issue>& issues) {
  auto pv1 = m.find("PV1");
  if (!pv1) return;
  f.hasVisit = true;
  f.visitClass = m.value(*pv1, 2);
  f.visitNumber = m.value(*pv1, 19, 1, 1);
  if (!dtmToFhir(m.value(*pv1, 44, 1, 1), f.admitted)) issues.push_back(issue(m, "PV1", *pv1, 44, 1, "102", "PV1-44 is not a date/time"));
  if (!dtmToFhir(m.value(*pv1, 45, 1, 1), f.discharged)) issues.push_back(issue(m, "PV1", *pv1, 45, 1, "102", "PV1-45 is not a date/time"));
}

// The results: OBX of a value type read here (NM, SN, ST, TX, FT, CWE, CE) with a value. With
// `beforeAdministration`, only those before the first RXA: the OBX of an immunisation or a
// pharmacy administration belong to it (the v2-to-FHIR maps fold them into the Immunization or the
// MedicationAdministration, which a conversion by segments does not write).
void readResults(const Message& m, InboundFacts& f, std::vector<Issue>& issues, bool beforeAdministration = false) {
  std::size_t end = m.segmentCount();
  if (beforeAdministration)
    if (auto rxa = m.find("RXA")) end = *rxa;
  std::size_t obxCount = 0;
  for (auto obx = m.find("OBX"); obx && *obx < end; obx = m.find("OBX", *obx + 1)) ++obxCount;
  f.results.reserve(obxCount);
  for (auto obx = m.find("OBX"); obx && *obx < end; obx = m.find("OBX", *obx + 1)) {
    std::string_view t = m.raw(*obx, 2);
    if (t != "NM" && t != "SN" && t != "ST" && t != "TX" && t != "FT" && t != "CWE" && t != "CE") continue;
    InboundFacts::Result& r = f.results.emplace_back();  // filled in place; taken back when not a result
    r.type = std::string(t);
    bool coded = t == "CWE" || t == "CE";
    r.value = coded ? m.value(*obx, 5, 1, 1) : m.value(*obx, 5, 1, 0, 0);
    if (r.value.empty()) {
      f.results.pop_back();
      continue;
    }
    if (t == "NM") {
      double parsed = 0;
      std::string_view v = r.value;
      if (!v.empty() && v[0] == '+') v.remove_prefix(1);
      auto res = std::from_chars(v.data(), v.data() + v.size(), parsed);
      if (v.empty() || res.ec != std::errc() || res.ptr != v.data() + v.size()) {
        issues.push_back(issue(m, "OBX", *obx, 5, 1, "102", "OBX-5 '" + r.value + "' is not a number (OBX-2 is NM)"));
        f.results.pop_back();
        continue;
      }
    }
    // OBX-3 split once (code, text, coding system), each piece unescaped only when it holds an escape.
    std::string_view pieces[3];
    splitComponents(m.raw(*obx, 3, 1), m.delimiters().component, pieces, 3);
    r.code = plainText(m, pieces[0]);
    r.display = plainText(m, pieces[1]);
    r.system = pieces[2] == "LN" ? std::string(kLoinc) : plainText(m, pieces[2]);
    std::string_view unit[1];
    splitComponents(m.raw(*obx, 6, 1), m.delimiters().component, unit, 1);
    r.unit = plainText(m, unit[0]);
    r.status = std::string(m.raw(*obx, 11));
    std::string when;
    if (dtmToFhir(m.raw(*obx, 14, 1, 1), when)) r.date = std::move(when);
  }
}

}  // namespace

InboundFacts readInbound(const Message& m, std::vector<Issue>& issues, OtherTypes others) {
  InboundFacts f;
  f.type = m.get("MSH-9.1");
  f.event = m.get("MSH-9.2");
  f.structure = m.get("MSH-9.3");
  f.version = m.get("MSH-12.1");
  f.controlId = m.get("MSH-10");
  f.sendingApplication = m.get("MSH-3.1");
  f.sendingFacility = m.get("MSH-4.1");
  if (!dtmToFhir(m.get("MSH-7.1"), f.sentAt)) issues.push_back(issue(m, "MSH", 0, 7, 1, "102", "MSH-7 is not a date/time"));
  if (!supportedInbound(f.type, f.event)) {
    if (others == OtherTypes::kRefuse) {
      issues.push_back(issue(m, "MSH", 0, 9, 1, "200", "the message type " + f.type + "^" + f.event + " is not handled here"));
      return f;
    }
    f.kind = InboundFacts::Kind::kSegments;
    if (auto pid = m.find("PID")) {
      f.hasPatient = true;
      readPerson(m, *pid, f.patient, issues);
    }
    readVisit(m, f, issues);
    readResults(m, f, issues, true);
    return f;
  }
  auto pid = m.find("PID");
  if (pid) {
    f.hasPatient = true;
    readPerson(m, *pid, f.patient, issues);
  } else if (f.type != "RRI") {
    issues.push_back(issue(m, "PID", 0, 0, 0, "100", "the PID segment is missing"));
  }
  if (f.type == "ADT") {
    f.kind = InboundFacts::Kind::kAdt;
    readVisit(m, f, issues);
    if (f.event == "A40") {
      auto mrg = m.find("MRG");
      if (!mrg || m.value(*mrg, 1).empty()) issues.push_back(issue(m, "MRG", mrg.value_or(0), 1, 1, "101", "A40 needs MRG-1 (the identifier merged away)"));
      else f.mergedFrom = m.value(*mrg, 1);
    }
  } else if (f.type == "RRI") {
    f.kind = InboundFacts::Kind::kReferralReply;
    auto rf1 = m.find("RF1");
    if (!rf1) {
      issues.push_back(issue(m, "RF1", 0, 0, 0, "100", "the RF1 segment is missing"));
      return f;
    }
    f.referralId = m.value(*rf1, 6, 1, 1);
    f.externalReferralId = m.value(*rf1, 11, 1, 1);
    if (f.referralId.empty()) issues.push_back(issue(m, "RF1", *rf1, 6, 1, "101", "RF1-6 (the originating referral identifier) is empty"));
    std::string status = m.value(*rf1, 1, 1, 1);
    auto st = replyStatuses().find(status);
    if (st == replyStatuses().end()) issues.push_back(issue(m, "RF1", *rf1, 1, 1, "103", "RF1-1 '" + status + "' is not a referral status of table 0283 (A, R, P, E)"));
    else f.replyStatus = st->second;
    if (!dtmToFhir(m.value(*rf1, 7, 1, 1), f.replyDate, true)) issues.push_back(issue(m, "RF1", *rf1, 7, 1, "102", "RF1-7 is not a date"));
    if (f.replyDate.empty()) dtmToFhir(m.get("MSH-7.1"), f.replyDate, true);
    if (auto nte = m.find("NTE")) f.replyNote = m.value(*nte, 3);
    else f.replyNote = m.value(*rf1, 10, 1, 2);
  } else {
    f.kind = InboundFacts::Kind::kReport;
    f.replaces = f.event == "T10";
    DocumentFacts& d = f.document;
    if (auto txa = m.find("TXA")) {
      if (!dtmToFhir(m.value(*txa, 4, 1, 1), d.date)) issues.push_back(issue(m, "TXA", *txa, 4, 1, "102", "TXA-4 is not a date/time"));
      d.id = m.value(*txa, 12, 1, 1);
      d.parentId = m.value(*txa, 13, 1, 1);
      d.placerOrder = m.value(*txa, 14, 1, 1);
      d.typeCode = m.value(*txa, 2, 1, 1);
      if (f.replaces && d.parentId.empty())
        issues.push_back(issue(m, "TXA", *txa, 13, 1, "101", "T10 replaces a document: TXA-13 (its identifier) is empty"));
    } else if (f.type == "MDM") {
      issues.push_back(issue(m, "TXA", 0, 0, 0, "100", "the TXA segment is missing"));
    }
    if (auto orc = m.find("ORC"); orc && d.placerOrder.empty()) d.placerOrder = m.value(*orc, 2, 1, 1);
    if (auto obr = m.find("OBR")) {
      if (d.placerOrder.empty()) d.placerOrder = m.value(*obr, 2, 1, 1);
      if (d.id.empty()) d.id = m.value(*obr, 3, 1, 1);
      if (d.date.empty()) dtmToFhir(m.value(*obr, 7, 1, 1), d.date);
    }
    // The document: the first OBX of type ED with data whose OBX-3 is not a metadata code.
    for (auto obx = m.find("OBX"); obx; obx = m.find("OBX", *obx + 1)) {
      if (m.raw(*obx, 2) != "ED" || m.raw(*obx, 3, 1, 3) == "MetaDMPMSS") continue;
      std::string data(m.raw(*obx, 5, 1, 5));
      if (data.empty()) {
        issues.push_back(issue(m, "OBX", *obx, 5, 5, "101", "OBX-5.5 carries no data", "warning"));
        continue;
      }
      std::string type = m.value(*obx, 5, 1, 2), sub = m.value(*obx, 5, 1, 3), enc = m.value(*obx, 5, 1, 4);
      std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) { return std::toupper(c); });
      std::transform(sub.begin(), sub.end(), sub.begin(), [](unsigned char c) { return std::toupper(c); });
      std::transform(enc.begin(), enc.end(), enc.begin(), [](unsigned char c) { return std::toupper(c); });
      if (enc != "BASE64") {
        issues.push_back(issue(m, "OBX", *obx, 5, 4, "103", "OBX-5.4 must be Base64 for a document (found '" + enc + "')"));
        break;
      }
      std::string decoded;
      bool readable = decodeBase64(data, decoded);
      if (!readable) {
        // MIME Base64 ends with '=' padding to a multiple of 4; some senders leave it out. Without
        // it the text is still unambiguous (2 or 3 characters left): read, with a warning.
        std::size_t tail = 0;
        for (char c : data) tail += c != '\r' && c != '\n';
        if (tail % 4 == 2 || tail % 4 == 3) {
          std::string padded = data + std::string(4 - tail % 4, '=');
          if ((readable = decodeBase64(padded, decoded))) {
            issues.push_back(issue(m, "OBX", *obx, 5, 5, "102", "OBX-5.5 is Base64 without its '=' padding (read anyway)", "warning"));
            data = std::move(padded);
          }
        }
        if (!readable) {
          issues.push_back(issue(m, "OBX", *obx, 5, 5, "102", "OBX-5.5 is not valid Base64 (the document cannot be read)"));
          break;
        }
      }
      d.typeCode = m.value(*obx, 3, 1, 1);
      d.typeDisplay = m.value(*obx, 3, 1, 2);
      std::string sys = m.value(*obx, 3, 1, 3);
      d.typeSystem = sys == "LN" ? kLoinc : sys;
      d.contentType = sub == "XML" ? "text/xml" : sub == "PDF" ? "application/pdf" : type == "TEXT" ? "text/plain" : "application/octet-stream";
      d.status = m.value(*obx, 11);
      if (d.status == "C") f.replaces = true;
      d.data = std::move(data);
      d.bytes = decoded.size();
      break;
    }
    if (f.type == "ORU") readResults(m, f, issues);
    bool badObx = std::any_of(issues.begin(), issues.end(), [](const Issue& i) { return i.segmentId == "OBX" && i.severity == "error"; });
    if (d.data.empty() && !badObx && f.type == "MDM") {
      // No encapsulated document: the document's text lines (OBX of type TX or FT) are the document.
      // (In an ORU they are results' comments, not a report.)
      std::string text;
      for (auto obx = m.find("OBX"); obx; obx = m.find("OBX", *obx + 1)) {
        std::string type = m.value(*obx, 2);
        if (type != "TX" && type != "FT") continue;
        if (d.typeCode.empty()) {
          d.typeCode = m.value(*obx, 3, 1, 1);
          d.typeDisplay = m.value(*obx, 3, 1, 2);
          d.typeSystem = m.value(*obx, 3, 1, 3) == "LN" ? kLoinc : m.value(*obx, 3, 1, 3);
        }
        for (int r = 1, n = m.repetitions(*obx, 5); r <= n; ++r) text += m.value(*obx, 5, r, 1) + "\n";
        if (d.status.empty()) d.status = m.value(*obx, 11);
      }
      if (text.empty()) {
        issues.push_back(issue(m, "OBX", 0, 5, 0, "101", "no OBX carries a document (ED in Base64, or TX/FT text)", "warning"));
      } else {
        d.contentType = "text/plain";
        d.bytes = text.size();
        d.data = encodeBase64(text);
      }
    }
    for (auto prt = m.find("PRT"); prt; prt = m.find("PRT", *prt + 1)) {
      if (m.value(*prt, 4, 1, 1) != "SB") continue;
      readXcn(m, *prt, 5, d.authorRpps, d.authorFamily, d.authorGiven);
      std::string finess = m.value(*prt, 8, 1, 10);
      if (m.value(*prt, 8, 1, 7) == "FINEG" && !finess.empty()) d.custodianFiness = finess;
      break;
    }
  }
  return f;
}

namespace {

// A JSON text written straight into a reused buffer (no document tree): the conversion's hot path.
// Members are written in the order FHIR shows them; commas are placed by the writer.
class Writer {
 public:
  // Writes after what `out` holds; the text is complete when the writer goes.
  explicit Writer(std::string& out) : o_(out), n_(out.size()) { o_.resize(std::max<std::size_t>(o_.capacity(), n_ + 4096)); }
  ~Writer() { o_.resize(n_); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  [[gnu::always_inline]] Writer& begin(char c = '{') {
    room(2);
    sep();
    put(c);
    first_ = true;
    return *this;
  }
  [[gnu::always_inline]] Writer& end(char c = '}') {
    room(1);
    put(c);
    first_ = false;
    return *this;
  }
  [[gnu::always_inline]] Writer& key(std::string_view k) {
    room(k.size() + 4);
    sep();
    put('"');
    put(k);
    put('"');
    put(':');
    first_ = true;  // the value follows without a comma
    return *this;
  }
  // String literals: their length is known at compile time (no strlen on the hot path).
  template <std::size_t N>
  Writer& key(const char (&k)[N]) {
    return key(std::string_view(k, N - 1));
  }
  template <std::size_t N>
  Writer& str(const char (&v)[N]) {
    return str(std::string_view(v, N - 1));
  }
  Writer& str(std::string_view v) {
    room(v.size() + 3);
    sep();
    put('"');
    // Runs of plain characters are copied at once; quotes, backslashes and controls are escaped.
    std::size_t from = 0, i = 0;
#if defined(__SSE2__)
    // Sixteen bytes at a time while none needs a look: signed, the bytes from 0x80 are below 0x20 too.
    const __m128i space = _mm_set1_epi8(0x20), quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
    for (; i + 16 <= v.size(); i += 16) {
      __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v.data() + i));
      __m128i look = _mm_or_si128(_mm_cmplt_epi8(b, space), _mm_or_si128(_mm_cmpeq_epi8(b, quote), _mm_cmpeq_epi8(b, backslash)));
      if (_mm_movemask_epi8(look)) break;
    }
#endif
    for (; i < v.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(v[i]);
      if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') continue;
      if (c >= 0x80) {
        // JSON text is UTF-8: a byte that does not start a valid sequence becomes U+FFFD.
        std::uint32_t cp;
        std::size_t n = utf8::decode(v, i, cp);
        if (n > 0) {
          i += n - 1;
          continue;
        }
        put(v.substr(from, i - from));
        from = i + 1;
        room(v.size() - i + 4);
        put("\xEF\xBF\xBD");
        continue;
      }
      put(v.substr(from, i - from));
      from = i + 1;
      room(v.size() - i + 7);
      static const char* hex = "0123456789abcdef";
      if (c == '"' || c == '\\') {
        put('\\');
        put(static_cast<char>(c));
      } else if (c == '\n') {
        put("\\n");
      } else if (c == '\r') {
        put("\\r");
      } else if (c == '\t') {
        put("\\t");
      } else {
        put("\\u00");
        put(hex[c >> 4]);
        put(hex[c & 15]);
      }
    }
    put(v.substr(from));
    put('"');
    return *this;
  }
  // Members already written as JSON text (constant parts of a resource: one copy, no escaping).
  template <std::size_t N>
  [[gnu::always_inline]] Writer& members(const char (&text)[N]) {
    room(N);
    sep();
    put(std::string_view(text, N - 1));
    return *this;
  }
  // The same, opening an object or array left open (the next value follows without a comma).
  template <std::size_t N>
  [[gnu::always_inline]] Writer& opening(const char (&text)[N]) {
    members(text);
    first_ = true;
    return *this;
  }
  Writer& raw(std::string_view number) {
    room(number.size() + 1);
    sep();
    put(number);
    return *this;
  }
  // "k":"v" when v is not empty.
  template <std::size_t N>
  Writer& field(const char (&k)[N], std::string_view v) {
    if (!v.empty()) key(k).str(v);
    return *this;
  }
  template <std::size_t N>
  Writer& reference(const char (&k)[N], std::string_view ref) {
    if (ref.empty()) return *this;
    key(k).opening(R"({"reference":)").str(ref).end();
    return *this;
  }

 private:
  // The buffer is the string itself, grown ahead of the writes; n_ is what is written.
  [[gnu::always_inline]] void room(std::size_t k) {
    if (n_ + k > o_.size()) o_.resize(std::max(o_.size() * 2, n_ + k));
  }
  [[gnu::always_inline]] void put(char c) { o_[n_++] = c; }
  [[gnu::always_inline]] void put(std::string_view v) {
    std::memcpy(o_.data() + n_, v.data(), v.size());
    n_ += v.size();
  }
  [[gnu::always_inline]] void sep() {
    if (!first_) put(',');
    first_ = false;
  }
  std::string& o_;
  std::size_t n_;
  bool first_ = true;
};

bool isIns(const std::string& system) { return system == kInsNir || system == kInsNia || system == kInsTest || system == kInsDemo; }

void writeIdentifier(Writer& w, const Identifier& id) {
  w.begin();
  if (isIns(id.system)) {
    w.key("use").str(std::string_view(id.system == kInsNia ? "temp" : "official"));
    w.key("type").begin().key("coding").begin('[').begin().key("system").str("https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203");
    w.key("code").str(id.system == kInsNia ? "INS-NIA" : "INS-NIR").end().end(']').end();
  } else if (!id.typeCode.empty()) {
    w.key("type").begin().key("coding").begin('[').begin().key("system").str("http://terminology.hl7.org/CodeSystem/v2-0203");
    w.key("code").str(id.typeCode).end().end(']').end();
  }
  w.field("system", id.system).key("value").str(id.value).end();
}

// A coding array of one: {"coding":[{"system":..,"code":..,"display":..}]}
void writeConcept(Writer& w, std::string_view k, std::string_view system, std::string_view code, std::string_view display = {}) {
  w.key(k).opening(R"({"coding":[{)");
  w.field("system", system).field("code", code).field("display", display);
  w.end().end(']').end();
}

void writePatient(Writer& w, const PersonFacts& p) {
  w.begin().key("resourceType").str("Patient");
  if (!p.ids.empty()) {
    w.key("identifier").begin('[');
    for (const auto& id : p.ids) writeIdentifier(w, id);
    w.end(']');
  }
  if (!p.family.empty() || !p.given.empty()) {
    w.key("name").begin('[').begin().field("use", p.nameUse).field("family", p.family);
    if (!p.given.empty()) {
      w.key("given").begin('[');
      for (const auto& g : p.given) w.str(g);
      w.end(']');
    }
    w.end().end(']');
  }
  w.field("gender", p.gender).field("birthDate", p.birthDate);
  if (!p.lines.empty() || !p.city.empty() || !p.postalCode.empty() || !p.country.empty()) {
    w.key("address").begin('[').begin().field("use", p.addressUse);
    if (!p.lines.empty()) {
      w.key("line").begin('[');
      for (const auto& l : p.lines) w.str(l);
      w.end(']');
    }
    w.field("city", p.city).field("postalCode", p.postalCode).field("country", p.country).end().end(']');
  }
  w.end();
}

void writeEncounter(Writer& w, const InboundFacts& f, std::string_view subject) {
  // PV1-2 (table 0004) -> Encounter.class, the event (table 0003) -> Encounter.status, by the
  // official maps; a discharge date finishes it whatever the event.
  const Target* cls = mapped(PASSERELLE_V2_MAP("PatientClass[EncounterClass]"), f.visitClass);
  std::string_view code = cls ? std::string_view(cls->code) : "AMB";
  std::string_view system = cls ? std::string_view(cls->system) : "http://terminology.hl7.org/CodeSystem/v3-ActCode";
  std::string_view display = cls ? std::string_view(cls->display) : "ambulatory";
  const Target* ev = mapped(PASSERELLE_V2_MAP("Event[EncounterStatus]"), f.event);
  std::string_view status = !f.discharged.empty() ? "finished" : ev ? std::string_view(ev->code) : "unknown";
  w.begin().key("resourceType").str("Encounter");
  if (!f.visitNumber.empty()) {
    w.key("identifier").begin('[').begin();
    w.key("type").begin().key("coding").begin('[').begin().key("system").str("http://terminology.hl7.org/CodeSystem/v2-0203");
    w.key("code").str("VN").end().end(']').end();
    w.key("value").str(f.visitNumber).end().end(']');
  }
  w.key("status").str(status);
  w.key("class").begin().key("system").str(system).key("code").str(code).field("display", display).end();
  w.reference("subject", subject);
  if (!f.admitted.empty() || !f.discharged.empty()) w.key("period").begin().field("start", f.admitted).field("end", f.discharged).end();
  w.end();
}

std::string masterId(const std::string& id) {
  return id.find('.') != std::string::npos && allDigits(id.substr(0, 1)) ? "urn:oid:" + id : id;
}

void writeDocumentReference(Writer& w, const InboundFacts& f, std::string_view subject, bool withLinks) {
  const DocumentFacts& d = f.document;
  w.begin().key("resourceType").str("DocumentReference");
  if (!d.id.empty()) w.key("masterIdentifier").begin().key("system").str("urn:ietf:rfc:3986").key("value").str(masterId(d.id)).end();
  w.key("status").str(std::string_view(d.status == "D" ? "entered-in-error" : "current"));
  if (!d.typeCode.empty()) writeConcept(w, "type", d.typeSystem, d.typeCode, d.typeDisplay);
  w.reference("subject", subject);
  if (d.date.find('T') != std::string::npos) w.key("date").str(d.date);
  if (withLinks) {
    if (!d.authorRpps.empty())
      w.key("author").begin('[').begin().key("identifier").begin().key("system").str(kRpps).key("value").str(d.authorRpps).end().end().end(']');
    if (!d.custodianFiness.empty())
      w.key("custodian").begin().key("identifier").begin().key("system").str(kFiness).key("value").str(d.custodianFiness).end().end();
    if (f.replaces && !d.parentId.empty()) {
      w.key("relatesTo").begin('[').begin().key("code").str("replaces").key("target").begin().key("identifier").begin();
      w.key("system").str("urn:ietf:rfc:3986").key("value").str(masterId(d.parentId)).end().end().end().end(']');
    }
  }
  w.key("content").begin('[').begin().key("attachment").begin().key("contentType").str(d.contentType).key("data").str(d.data);
  if (!d.date.empty()) w.key("creation").str(d.date);
  w.end();
  if (d.contentType == "text/xml")
    w.key("format").begin().key("system").str("http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode").key("code").str("urn:ihe:iti:xds-sd:text:2008").end();
  w.end().end(']').end();
}

std::string_view observationStatus(const std::string& obx11) {
  // OBX-11 (table 0085) -> Observation.status by the official map; what it leaves unmapped is "unknown".
  const Target* t = mapped(PASSERELLE_V2_MAP("ObservationResultStatusCodesInterpretation"), obx11);
  return t ? std::string_view(t->code) : "unknown";
}

void writeObservation(Writer& w, const InboundFacts::Result& r, std::string_view subject) {
  w.members(R"({"resourceType":"Observation")").key("status").str(observationStatus(r.status));
  writeConcept(w, "code", r.system, r.code, r.display);
  w.reference("subject", subject);
  w.field("effectiveDateTime", r.date);
  if (r.type == "NM") {
    // The number as written in OBX-5, checked when read (a JSON number of the same value).
    std::string_view v = r.value;
    std::string number;
    if (!v.empty() && v[0] == '+') v.remove_prefix(1);
    if (!v.empty() && v[0] == '.') number = "0";
    number.append(v);
    if (number.size() > 1 && number[0] == '-' && number[1] == '.') number.insert(1, "0");
    if (!number.empty() && number.back() == '.') number += '0';
    while (number.size() > 1 && number[0] == '0' && number[1] != '.') number.erase(0, 1);
    w.key("valueQuantity").begin().key("value").raw(number).field("unit", r.unit).end();
  } else if (r.type == "CWE" || r.type == "CE") {
    writeConcept(w, "valueCodeableConcept", {}, r.value);
  } else {
    w.key("valueString").str(r.value);
  }
  w.end();
}

template <typename WriteResource>
void writeEntry(Writer& w, std::string_view fullUrl, std::string_view type, const WriteResource& resource,
                std::string_view ifNoneExist = {}) {
  w.begin();
  if (!fullUrl.empty()) w.key("fullUrl").str(fullUrl);
  w.key("resource");
  resource(w);
  w.members(R"("request":{"method":"POST")").key("url").str(type).field("ifNoneExist", ifNoneExist).end();
  w.end();
}

}  // namespace

void patientResource(const PersonFacts& p, Json& out) {
  std::string text;
  {
    Writer w(text);
    writePatient(w, p);
  }
  out = Json::parse(text);
}

void encounterResource(const InboundFacts& f, Json& out) {
  std::string text;
  {
    Writer w(text);
    writeEncounter(w, f, {});
  }
  out = Json::parse(text);
}

void documentReferenceResource(const InboundFacts& f, Json& out) {
  std::string text;
  {
    Writer w(text);
    writeDocumentReference(w, f, {}, false);
  }
  out = Json::parse(text);
}

void toBundleJson(const InboundFacts& f, std::string& out) {
  out.clear();
  Writer w(out);
  w.begin().key("resourceType").str("Bundle").key("type").str("transaction").key("entry").begin('[');
  std::string_view patientRef;
  if (f.hasPatient && f.event != "A40") {  // a merge changes no one until a person reviews it
    patientRef = "urn:uuid:00000000-0000-4000-8000-000000000001";
    std::string ins = f.patient.ins();
    writeEntry(w, patientRef, "Patient", [&](Writer& x) { writePatient(x, f.patient); },
               ins.empty() ? std::string() : "identifier=" + f.patient.insSystem() + "|" + ins);
  }
  if ((f.kind == InboundFacts::Kind::kAdt && f.event != "A28" && f.event != "A31" && f.event != "A40") ||
      (f.kind == InboundFacts::Kind::kSegments && f.hasVisit)) {
    writeEntry(w, "urn:uuid:00000000-0000-4000-8000-000000000002", "Encounter", [&](Writer& x) { writeEncounter(x, f, patientRef); });
  } else if (f.kind == InboundFacts::Kind::kReferralReply) {
    writeEntry(w, "urn:uuid:00000000-0000-4000-8000-000000000003", "Task", [&](Writer& x) {
      x.begin().key("resourceType").str("Task");
      x.key("groupIdentifier").begin().key("system").str(kReferralSid).key("value").str(f.referralId).end();
      x.key("status").str("completed");
      writeConcept(x, "businessStatus", "https://douleur77.fr/fhir/CodeSystem/referral-status", f.replyStatus);
      x.key("intent").str("order");
      writeConcept(x, "code", "https://douleur77.fr/fhir/CodeSystem/network-event", "referral-update");
      x.field("authoredOn", f.replyDate);
      if (!f.replyNote.empty())
        x.key("note").begin('[').begin().key("text").str(fhir::markdownFromText(f.replyNote)).end().end(']');
      x.end();
    });
  }
  if (f.kind == InboundFacts::Kind::kReport || f.kind == InboundFacts::Kind::kSegments) {
    // urn:uuid:00000000-0000-4000-9000-<n on 12 digits>
    char url[] = "urn:uuid:00000000-0000-4000-9000-000000000000";
    unsigned n = 0;
    for (const auto& r : f.results) {
      unsigned k = ++n;
      for (std::size_t at = sizeof url - 2; k; --at, k /= 10) url[at] = static_cast<char>('0' + k % 10);
      writeEntry(w, std::string_view(url, sizeof url - 1), "Observation", [&](Writer& x) { writeObservation(x, r, patientRef); });
    }
    if (!f.document.data.empty())
      writeEntry(w, "urn:uuid:00000000-0000-4000-8000-000000000004", "DocumentReference",
                 [&](Writer& x) { writeDocumentReference(x, f, patientRef, true); });
  }
  w.end(']').end();
}

void toBundle(const InboundFacts& f, Json& bundle) {
  std::string text;
  toBundleJson(f, text);
  bundle = Json::parse(text);
}

namespace {

std::string str(const Json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string identifierOf(const Json& r, const std::string& system) {
  for (const auto& id : r.value("identifier", Json::array()))
    if (str(id, "system") == system) return str(id, "value");
  return {};
}

const Json& arrayOf(const Json& r, const char* key) {
  static const Json empty = Json::array();
  auto it = r.find(key);
  return it != r.end() && it->is_array() ? *it : empty;
}

const Json& objectOf(const Json& r, const char* key) {
  static const Json empty = Json::object();
  auto it = r.find(key);
  return it != r.end() && it->is_object() ? *it : empty;
}

void personFromFhir(const Json& r, PersonFacts& p) {
  for (const auto& id : arrayOf(r, "identifier")) {
    if (!id.is_object()) continue;
    Identifier i;
    i.system = str(id, "system");
    i.value = str(id, "value");
    if (!i.value.empty()) p.ids.push_back(i);
  }
  const Json& names = arrayOf(r, "name");
  if (!names.empty() && names[0].is_object()) {
    p.family = str(names[0], "family");
    for (const auto& g : arrayOf(names[0], "given"))
      if (g.is_string()) p.given.push_back(g.get<std::string>());
  }
  p.birthDate = str(r, "birthDate");
  p.gender = str(r, "gender");
  const Json& addrs = arrayOf(r, "address");
  if (!addrs.empty() && addrs[0].is_object()) {
    for (const auto& l : arrayOf(addrs[0], "line"))
      if (l.is_string()) p.lines.push_back(l.get<std::string>());
    p.city = str(addrs[0], "city");
    p.postalCode = str(addrs[0], "postalCode");
    p.country = str(addrs[0], "country");
  }
}

}  // namespace

bool referralFromFhir(const std::vector<const Json*>& resources, ReferralOut& out, std::string& error) {
  const Json* sr = nullptr;
  const Json* patient = nullptr;
  std::map<std::string, const Json*> byRef;
  for (const Json* r : resources) {
    if (!r || !r->is_object()) continue;
    std::string type = str(*r, "resourceType");
    byRef[type + "/" + str(*r, "id")] = r;
    if (type == "ServiceRequest" && !sr) sr = r;
    if (type == "Patient" && !patient) patient = r;
  }
  if (!sr) {
    error = "no ServiceRequest (the referral)";
    return false;
  }
  if (!patient) {
    error = "no Patient";
    return false;
  }
  out.referralId = identifierOf(*sr, kReferralSid);
  if (out.referralId.empty()) out.referralId = str(*sr, "id");
  out.requestedDate = str(*sr, "authoredOn");
  out.dueDate = str(objectOf(*sr, "occurrencePeriod"), "end");
  if (str(*sr, "status") == "revoked" || str(*sr, "status") == "entered-in-error") out.event = "I14";
  const Json& reasons = arrayOf(*sr, "reasonCode");
  if (!reasons.empty() && reasons[0].is_object()) {
    out.reasonText = str(reasons[0], "text");
    const Json& codings = arrayOf(reasons[0], "coding");
    if (!codings.empty() && codings[0].is_object()) out.reasonCode = str(codings[0], "code");
  }
  personFromFhir(*patient, out.patient);
  auto resolve = [&](const Json& ref) -> const Json* {
    if (!ref.is_object()) return nullptr;
    auto it = byRef.find(str(ref, "reference"));
    return it == byRef.end() ? nullptr : it->second;
  };
  if (const Json* req = resolve(objectOf(*sr, "requester"))) personFromFhir(*req, out.referring);
  const Json& performers = arrayOf(*sr, "performer");
  if (!performers.empty())
    if (const Json* to = resolve(performers[0])) {
      personFromFhir(*to, out.referredTo);
      out.referredToName = str(*to, "name");
    }
  for (const Json* r : resources) {
    if (!r) continue;
    std::string type = str(*r, "resourceType");
    if (type == "Condition") {
      for (const auto& c : arrayOf(objectOf(*r, "code"), "coding"))
        if (c.is_object() && str(c, "system") == kCim10) out.diagnoses.push_back({str(c, "code"), str(c, "display")});
    } else if (type == "Observation") {
      ReferralOut::Observation o;
      const Json& codings = arrayOf(objectOf(*r, "code"), "coding");
      if (codings.empty() || !codings[0].is_object()) continue;
      o.code = str(codings[0], "code");
      o.display = str(codings[0], "display");
      o.system = str(codings[0], "system") == kLoinc ? "LN" : "L";
      if (auto q = r->find("valueQuantity"); q != r->end() && q->is_object() && q->contains("value")) {
        o.value = (*q)["value"].dump();
        o.unit = str(*q, "code").empty() ? str(*q, "unit") : str(*q, "code");
      } else if (auto i = r->find("valueInteger"); i != r->end()) {
        o.value = i->dump();
      } else {
        continue;
      }
      o.date = str(*r, "effectiveDateTime");
      out.observations.push_back(o);
    }
  }
  return true;
}

std::string buildReferral(const ReferralOut& r) {
  MessageBuilder b;
  b.segment("MSH");
  b.set(3, r.sendingApplication).set(4, r.sendingFacility).set(5, r.receivingApplication).set(6, r.receivingFacility);
  b.set(7, r.timestamp).set(9, "REF").set(9, r.event, 1, 2).set(9, "REF_I12", 1, 3).set(10, r.controlId).set(11, "P").set(12, "2.5");
  if (r.enhancedAck) b.set(15, "AL").set(16, "NE");
  b.set(17, "FRA").set(18, "UNICODE UTF-8");
  b.segment("RF1");
  b.set(1, "P").set(1, "Pending", 1, 2).set(1, "HL70283", 1, 3);
  b.set(2, "R").set(2, "Routine", 1, 2).set(2, "HL70280", 1, 3);
  b.set(3, "Med").set(3, "Medical", 1, 2).set(3, "HL70281", 1, 3);
  b.set(5, "O").set(5, "Outpatient", 1, 2).set(5, "HL70282", 1, 3);
  b.set(6, r.referralId).set(6, "DOULEUR77", 1, 2);
  b.set(7, fhirToDtm(r.requestedDate)).set(8, fhirToDtm(r.dueDate));
  if (!r.reasonCode.empty() || !r.reasonText.empty())
    b.set(10, r.reasonCode).set(10, r.reasonText, 1, 2).set(10, "D77-REFERRAL-REASON", 1, 3);
  auto provider = [&](const char* role, const PersonFacts& p, const std::string& name) {
    b.segment("PRD");
    b.set(1, role);
    if (!p.family.empty()) {
      b.set(2, p.family);
      if (!p.given.empty()) b.set(2, p.given[0], 1, 2);
    } else if (!name.empty()) {
      b.set(2, name);
    }
    int rep = 1;
    for (const auto& id : p.ids) {
      const char* type = id.system == kRpps ? "RPPS" : id.system == kFiness ? "FINEG" : nullptr;
      if (!type) continue;
      b.set(7, id.value, rep, 1).set(7, type, rep, 2);
      ++rep;
    }
  };
  provider("RP", r.referring, "");
  provider("RT", r.referredTo, r.referredToName);
  b.segment("PID");
  b.set(1, "1");
  int rep = 1;
  for (const auto& id : r.patient.ids) {
    if (id.system == kInsNir || id.system == kInsNia || id.system == kInsTest || id.system == kInsDemo) {
      std::string oid = id.system.substr(8);
      b.set(3, id.value, rep, 1).set(3, id.system == kInsNia ? "ASIP-SANTE-INS-NIA" : "ASIP-SANTE-INS-NIR", rep, 4, 1);
      b.set(3, oid, rep, 4, 2).set(3, "ISO", rep, 4, 3).set(3, "INS", rep, 5);
      ++rep;
    } else if (id.system == kPatientSid) {
      b.set(3, id.value, rep, 1).set(3, "DOULEUR77", rep, 4, 1).set(3, "PI", rep, 5);
      ++rep;
    }
  }
  b.set(5, r.patient.family, 1, 1);
  if (!r.patient.given.empty()) b.set(5, r.patient.given[0], 1, 2);
  if (r.patient.given.size() > 1) b.set(5, r.patient.given[1], 1, 3);
  b.set(5, "L", 1, 7);
  b.set(7, fhirToDtm(r.patient.birthDate)).set(8, v2Sex(r.patient.gender));
  if (!r.patient.lines.empty() || !r.patient.city.empty()) {
    if (!r.patient.lines.empty()) b.set(11, r.patient.lines[0], 1, 1);
    b.set(11, r.patient.city, 1, 3).set(11, r.patient.postalCode, 1, 5).set(11, r.patient.country.empty() ? "FRA" : r.patient.country, 1, 6).set(11, "H", 1, 7);
  }
  int n = 0;
  for (const auto& d : r.diagnoses) {
    b.segment("DG1");
    b.set(1, std::to_string(++n)).set(3, d.code).set(3, d.display, 1, 2).set(3, "CIM10", 1, 3).set(6, "F");
  }
  if (!r.observations.empty()) {
    b.segment("OBR");
    b.set(1, "1").set(2, r.referralId).set(2, "DOULEUR77", 1, 2).set(4, "57133-1").set(4, "Referral note", 1, 2).set(4, "LN", 1, 3);
    n = 0;
    for (const auto& o : r.observations) {
      b.segment("OBX");
      b.set(1, std::to_string(++n)).set(2, "NM").set(3, o.code).set(3, o.display, 1, 2).set(3, o.system, 1, 3);
      b.set(5, o.value);
      if (!o.unit.empty()) b.set(6, o.unit).set(6, "UCUM", 1, 3);
      b.set(11, "F").set(14, fhirToDtm(o.date));
    }
  }
  b.segment("PV1");
  b.set(1, "1").set(2, "O");
  return b.encode("\r");
}

}  // namespace passerelle::hl7v2
