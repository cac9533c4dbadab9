// HPRIM <-> FHIR R4 (see fhir_mapping.h).
#include "mappings/hprim/fhir_mapping.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "mappings/common/base64.h"
#include "mappings/fhir/markdown.h"

namespace passerelle::hprim {

using Json = nlohmann::json;

namespace {

constexpr const char* kLoinc = "http://loinc.org";
constexpr const char* kNssNir = "urn:oid:1.2.250.1.213.1.4.13";
constexpr const char* kInsNir = "urn:oid:1.2.250.1.213.1.4.8";
constexpr const char* kScale = "https://douleur77.fr/fhir/CodeSystem/d77-scale";
constexpr const char* kIndicator = "https://douleur77.fr/fhir/CodeSystem/d77-ind";
constexpr const char* kInterpretation = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

Json& entries(Json& bundle) {
  if (!bundle.is_object()) bundle = {{"resourceType", "Bundle"}, {"type", "transaction"}, {"entry", Json::array()}};
  return bundle["entry"];
}

// urn:uuid:00000000-0000-4000-8000-<n on 12 digits>, n counting the Bundle's entries.
std::string nextUrl(const Json& list) {
  char url[64];
  std::snprintf(url, sizeof url, "urn:uuid:00000000-0000-4000-8000-%012zu", list.size() + 1);
  return url;
}

std::string add(Json& bundle, Json resource) {
  auto& list = entries(bundle);
  std::string url = nextUrl(list);
  std::string type = resource["resourceType"];
  list.push_back({{"fullUrl", url}, {"resource", std::move(resource)}, {"request", {{"method", "POST"}, {"url", type}}}});
  return url;
}

// "77000 MELUN" -> postcode and city.
void postcodeCity(const std::string& line, Json& address) {
  auto sp = line.find(' ');
  std::string first = line.substr(0, sp);
  bool code = first.size() == 5 && first.find_first_not_of("0123456789") == std::string::npos;
  if (code) {
    address["postalCode"] = first;
    if (sp != std::string::npos) {
      auto rest = line.substr(sp + 1);
      if (auto b = rest.find_first_not_of(' '); b != std::string::npos) address["city"] = rest.substr(b);
    }
  } else if (!line.empty()) {
    address["city"] = line;
  }
}

std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    auto b = s.find_first_not_of(' ', i);
    if (b == std::string::npos) break;
    auto e = s.find(' ', b);
    out.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    i = e == std::string::npos ? s.size() : e;
  }
  return out;
}

// A decimal as HPRIM writes it ("12,5", "< 0.5") -> a JSON number and its comparator; false when
// not a number.
bool quantity(std::string v, Json& q) {
  auto b = v.find_first_not_of(' ');
  if (b == std::string::npos) return false;
  v = v.substr(b);
  std::string comparator;
  if (!v.empty() && (v[0] == '<' || v[0] == '>')) {
    comparator = v.substr(0, v.size() > 1 && v[1] == '=' ? 2 : 1);
    v = v.substr(comparator.size());
    v = v.substr(std::min(v.size(), v.find_first_not_of(' ')));
  }
  for (auto& c : v)
    if (c == ',') c = '.';
  if (v.empty() || v.find_first_not_of("+-0123456789.") != std::string::npos) return false;
  if (v[0] == '+') v = v.substr(1);
  try {
    std::size_t used = 0;
    (void)std::stod(v, &used);
    if (used != v.size()) return false;
    // The decimal as written (FHIR keeps the precision: "7.50" stays 7.50).
    Json number = Json::parse(v[0] == '.' ? "0" + v : (v.rfind("-.", 0) == 0 ? "-0" + v.substr(1) : v));
    if (!number.is_number()) return false;
    q["value"] = number;
  } catch (...) {
    return false;
  }
  if (!comparator.empty()) q["comparator"] = comparator;
  return true;
}

std::string observationStatus(const std::string& s) {
  if (s.empty() || s == "F" || s == "U") return "final";
  if (s == "P" || s == "S" || s == "R") return "preliminary";
  if (s == "C") return "corrected";
  if (s == "I" || s == "O") return "registered";
  if (s == "D" || s == "W") return "entered-in-error";
  if (s == "X") return "cancelled";
  return "unknown";
}

Json observation(const Result& r, const std::string& patientUrl, const std::string& date, bool numeric) {
  Json o = {{"resourceType", "Observation"}, {"status", observationStatus(r.status)}};
  Json code = Json::object();
  if (!r.code.empty()) {
    Json coding = {{"code", r.code}};
    if (r.codeSystem == "LN") coding["system"] = kLoinc;
    if (!r.label.empty()) coding["display"] = r.label;
    code["coding"] = Json::array({coding});
  }
  if (!r.label.empty()) code["text"] = r.label;
  o["code"] = code;
  o["subject"] = {{"reference", patientUrl}};
  if (!date.empty()) o["effectiveDateTime"] = date;
  Json q = Json::object();
  if (numeric && quantity(r.value, q)) {
    if (!r.unit.empty()) q["unit"] = r.unit;
    o["valueQuantity"] = q;
    Json range = Json::object(), low = Json::object(), high = Json::object();
    if (quantity(r.low, low)) {
      low.erase("comparator");
      if (!r.unit.empty()) low["unit"] = r.unit;
      range["low"] = low;
    }
    if (quantity(r.high, high)) {
      high.erase("comparator");
      if (!r.unit.empty()) high["unit"] = r.unit;
      range["high"] = high;
    }
    if (!range.empty()) o["referenceRange"] = Json::array({range});
  } else if (!r.value.empty()) {
    o["valueString"] = r.value;
  } else {
    o["dataAbsentReason"] = {{"coding", Json::array({{{"system", "http://terminology.hl7.org/CodeSystem/data-absent-reason"}, {"code", "unknown"}}})}};
  }
  if (r.flag == "L" || r.flag == "H" || r.flag == "LL" || r.flag == "HH" || r.flag == "N" || r.flag == "A")
    o["interpretation"] = Json::array({{{"coding", Json::array({{{"system", kInterpretation}, {"code", r.flag}}})}}});
  Json notes = Json::array();
  if (!r.value2.empty()) notes.push_back({{"text", fhir::markdownFromText(r.value2 + (r.unit2.empty() ? "" : " " + r.unit2))}});
  for (const auto& c : r.comments)
    if (!c.empty()) notes.push_back({{"text", fhir::markdownFromText(c)}});
  if (!notes.empty()) o["note"] = notes;
  return o;
}

std::string frenchDate(const std::string& iso) {
  if (iso.size() < 10 || iso[4] != '-' || iso[7] != '-') return "";
  return iso.substr(8, 2) + "/" + iso.substr(5, 2) + "/" + iso.substr(0, 4);
}

std::string str(const Json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// A number as HPRIM writes it: the JSON decimal's text ("7.5", "65").
std::string numberText(const Json& v) {
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  std::string s = v.dump();
  return s;
}

// UCUM units as French software shows them; a score's "Level" and counts have none.
std::string frenchUnit(const std::string& ucum) {
  if (ucum == "Level" || ucum == "1" || ucum == "{count}" || ucum == "{score}") return "";
  if (ucum == "d") return "j";
  if (ucum == "mg/d") return "mg/j";
  if (ucum == "h") return "h";
  if (ucum == "min") return "min";
  return ucum;
}

// The RES line and the readable line of one value (a Quantity, an integer, a string).
bool resultOf(const Json& code, const Json& holder, Result& r) {
  const Json* coding = nullptr;
  if (auto c = code.find("coding"); c != code.end() && c->is_array() && !c->empty()) coding = &(*c)[0];
  std::string system = coding ? str(*coding, "system") : "", id = coding ? str(*coding, "code") : "";
  r.code = id;
  r.label = frenchLabel(system, id);
  if (r.label.empty() && coding) r.label = str(*coding, "display");
  if (r.label.empty()) r.label = str(code, "text");
  if (r.label.empty()) r.label = id;
  // The reference range and the interpretation, where the result has them.
  if (auto rr = holder.find("referenceRange"); rr != holder.end() && rr->is_array() && !rr->empty() && (*rr)[0].is_object()) {
    for (auto [key, out] : {std::pair<const char*, std::string*>{"low", &r.low}, {"high", &r.high}})
      if (auto b = (*rr)[0].find(key); b != (*rr)[0].end() && b->is_object() && b->contains("value") && (*b)["value"].is_number())
        *out = numberText((*b)["value"]);
  }
  if (auto in = holder.find("interpretation"); in != holder.end() && in->is_array() && !in->empty() && (*in)[0].is_object())
    if (auto c = (*in)[0].find("coding"); c != (*in)[0].end() && c->is_array() && !c->empty()) {
      std::string flag = str((*c)[0], "code");
      if (flag == "L" || flag == "H" || flag == "LL" || flag == "HH" || flag == "N") r.flag = flag;
    }
  if (auto q = holder.find("valueQuantity"); q != holder.end() && q->is_object() && q->contains("value")) {
    r.type = "N";
    r.value = str(*q, "comparator") + numberText((*q)["value"]);
    r.unit = str(*q, "unit");
    if (r.unit.empty()) r.unit = str(*q, "code");
    r.unit = frenchUnit(r.unit);
    return true;
  }
  if (auto v = holder.find("valueInteger"); v != holder.end() && v->is_number()) {
    r.type = "N";
    r.value = numberText(*v);
    return true;
  }
  if (auto v = holder.find("valueString"); v != holder.end() && v->is_string()) {
    r.type = "A";
    r.value = v->get<std::string>();
    return true;
  }
  return false;
}

std::string resultStatus(const std::string& fhir) {
  if (fhir == "preliminary" || fhir == "registered") return "P";
  if (fhir == "corrected" || fhir == "amended") return "C";
  return "F";
}

}  // namespace

std::string frenchLabel(const std::string& system, const std::string& code) {
  struct Label {
    const char* system;
    const char* code;
    const char* label;
  };
  static const Label kLabels[] = {
      {kLoinc, "72514-3", "Intensité de la douleur (échelle 0-10)"},
      {kLoinc, "38214-3", "EVA (échelle visuelle analogique, mm)"},
      {kLoinc, "77565-0", "BPI - score d'interférence de la douleur"},
      {kScale, "DALLAS", "Questionnaire de Dallas"},
      {kScale, "DALLAS-DAILY-ACTIVITIES", "Dallas - activités quotidiennes"},
      {kScale, "DALLAS-WORK-LEISURE", "Dallas - travail et loisirs"},
      {kScale, "DALLAS-ANXIETY-DEPRESSION", "Dallas - anxiété et dépression"},
      {kScale, "DALLAS-SOCIAL-INTEREST", "Dallas - sociabilité"},
      {kScale, "QVM", "Qualité de vie migraine (QVM)"},
      {kIndicator, "OME-DAILY", "Équivalent morphine orale par jour"},
      {kIndicator, "SICK-LEAVE-DAYS", "Jours d'arrêt de travail"},
      {kIndicator, "HOSP-DAYS", "Jours d'hospitalisation"},
      {kIndicator, "GP-CONSULT", "Consultations de médecine générale"},
      {kIndicator, "SPEC-CONSULT", "Consultations de spécialistes"},
      {kIndicator, "IMAGING", "Actes d'imagerie (scanner, IRM)"},
      {kIndicator, "PHYSIO-ACTS", "Actes de kinésithérapie"},
  };
  for (const auto& l : kLabels)
    if (system == l.system && code == l.code) return l.label;
  return "";
}

void netToBundle(const NetDocument& d, Json& bundle, std::vector<Issue>& issues) {
  (void)issues;
  Json patient = {{"resourceType", "Patient"}};
  Json name = {{"family", d.family}};
  if (auto given = words(d.given); !given.empty()) name["given"] = given;
  patient["name"] = Json::array({name});
  if (auto birth = netDateToIso(d.birthDate); !birth.empty()) patient["birthDate"] = birth;
  std::string why;
  if (auto nir = checkedNir(d.nir, why); !nir.empty()) {
    // The social-security number HPRIM carries may be the insured person's rather than the
    // patient's own: FR Core's NSS-NIR identifier, never an INS.
    patient["identifier"] = Json::array({{{"type", {{"coding", Json::array({{{"system", "http://terminology.hl7.org/CodeSystem/v2-0203"}, {"code", "NH"}}})}}},
                                           {"system", kNssNir},
                                           {"value", nir}}});
  }
  Json address = Json::object();
  Json lines = Json::array();
  for (const auto* l : {&d.address1, &d.address2})
    if (!l->empty()) lines.push_back(*l);
  if (!lines.empty()) address["line"] = lines;
  postcodeCity(d.postcodeCity, address);
  if (!address.empty()) patient["address"] = Json::array({address});
  std::string patientUrl = add(bundle, std::move(patient));
  std::string date = netDateToIso(d.date);
  if (!d.text.empty()) {
    Json doc = {{"resourceType", "DocumentReference"}, {"status", "current"}};
    if (!d.requestNumber.empty()) doc["identifier"] = Json::array({{{"value", d.requestNumber}}});
    if (!d.reference.empty()) doc["description"] = d.reference;
    doc["subject"] = {{"reference", patientUrl}};
    if (!d.sender.empty()) doc["author"] = Json::array({{{"display", d.sender}}});
    Json attachment = {{"contentType", "text/plain; charset=utf-8"}, {"data", base64::encode(d.text)}};
    if (!d.reference.empty()) attachment["title"] = d.reference;
    doc["content"] = Json::array({{{"attachment", attachment}}});
    if (!date.empty()) doc["context"] = {{"period", {{"start", date}}}};
    add(bundle, std::move(doc));
  }
  for (const auto& r : d.results) {
    Json o = observation(r, patientUrl, date, r.type == "N");
    if (!d.sender.empty()) o["performer"] = Json::array({{{"display", d.sender}}});
    add(bundle, std::move(o));
  }
}

void santeToBundle(const SanteMessage& m, Json& bundle, std::vector<Issue>& issues) {
  (void)issues;
  for (const auto& p : m.patients) {
    Json patient = {{"resourceType", "Patient"}};
    Json names = Json::array();
    Json usual = {{"family", p.family}};
    if (auto given = words(p.given); !given.empty()) usual["given"] = given;
    if (!p.birthName.empty() && p.birthName != p.family) {
      usual["use"] = "usual";
      Json official = {{"use", "official"}, {"family", p.birthName}};
      if (usual.contains("given")) official["given"] = usual["given"];
      names.push_back(official);
    }
    names.insert(names.begin(), usual);
    patient["name"] = names;
    if (auto birth = santeDateToIso(p.birthDate); !birth.empty()) patient["birthDate"] = birth;
    if (p.sex == "M") patient["gender"] = "male";
    else if (p.sex == "F") patient["gender"] = "female";
    else if (p.sex == "U") patient["gender"] = "unknown";
    Json address = Json::object();
    if (!p.street.empty()) address["line"] = Json::array({p.street});
    if (!p.city.empty()) address["city"] = p.city;
    if (!p.postcode.empty()) address["postalCode"] = p.postcode;
    if (!address.empty()) patient["address"] = Json::array({address});
    std::string patientUrl = add(bundle, std::move(patient));
    for (const auto& rq : p.requests) {
      std::string requestDate = santeDateToIso(rq.date);
      Json refs = Json::array();
      for (const auto& r : rq.results) {
        std::string date = santeDateToIso(r.date);
        Json o = observation(r, patientUrl, date.empty() ? requestDate : date, r.type == "NM" || r.type == "SN");
        if (!m.senderName.empty() || !m.senderCode.empty())
          o["performer"] = Json::array({{{"display", m.senderName.empty() ? m.senderCode : m.senderName}}});
        refs.push_back({{"reference", add(bundle, std::move(o))}});
      }
      Json report = {{"resourceType", "DiagnosticReport"}, {"status", "final"}};
      Json code = Json::object();
      if (!rq.code.empty()) code["coding"] = Json::array({{{"code", rq.code}}});
      code["text"] = rq.label.empty() ? (rq.code.empty() ? "HPRIM" : rq.code) : rq.label;
      report["code"] = code;
      report["subject"] = {{"reference", patientUrl}};
      if (!requestDate.empty()) report["effectiveDateTime"] = requestDate;
      if (!rq.placerId.empty()) report["identifier"] = Json::array({{{"value", rq.placerId}}});
      if (!refs.empty()) report["result"] = refs;
      if (!rq.comments.empty()) {
        std::string text;
        for (const auto& c : rq.comments) text += (text.empty() ? "" : "\n") + c;
        report["conclusion"] = text;
      }
      add(bundle, std::move(report));
    }
  }
}

bool netFromFhir(const Json& bundle, const NetExport& options, NetDocument& d, std::string& error) {
  d = NetDocument{};
  if (!bundle.is_object() || !bundle.contains("entry") || !bundle["entry"].is_array()) {
    error = "a Bundle with entries is expected";
    return false;
  }
  const Json* patient = nullptr;
  const Json* composition = nullptr;
  const Json* document = nullptr;
  std::vector<const Json*> observations;
  for (const auto& e : bundle["entry"]) {
    if (!e.is_object() || !e.contains("resource") || !e["resource"].is_object()) continue;
    const Json& r = e["resource"];
    std::string type = str(r, "resourceType");
    if (type == "Patient" && !patient) patient = &r;
    else if (type == "Composition" && !composition) composition = &r;
    else if (type == "DocumentReference" && !document) document = &r;
    else if (type == "Observation") observations.push_back(&r);
  }
  if (!patient) {
    error = "the Bundle holds no Patient: HPRIM Net's header names the patient (lines 2, 3, 7)";
    return false;
  }
  if (auto n = patient->find("name"); n != patient->end() && n->is_array() && !n->empty()) {
    const Json* chosen = &(*n)[0];
    for (const auto& name : *n)
      if (str(name, "use") == "official") chosen = &name;
    d.family = str(*chosen, "family");
    if (auto g = chosen->find("given"); g != chosen->end() && g->is_array())
      for (const auto& x : *g)
        if (x.is_string()) d.given += (d.given.empty() ? "" : " ") + x.get<std::string>();
  }
  if (d.family.empty()) {
    error = "the Patient has no family name: HPRIM Net's line 2 would be empty";
    return false;
  }
  d.birthDate = frenchDate(str(*patient, "birthDate"));
  if (auto a = patient->find("address"); a != patient->end() && a->is_array() && !a->empty() && (*a)[0].is_object()) {
    const Json& address = (*a)[0];
    if (auto l = address.find("line"); l != address.end() && l->is_array()) {
      if (l->size() > 0 && (*l)[0].is_string()) d.address1 = (*l)[0];
      if (l->size() > 1 && (*l)[1].is_string()) d.address2 = (*l)[1];
    }
    d.postcodeCity = str(address, "postalCode");
    if (auto city = str(address, "city"); !city.empty()) d.postcodeCity += (d.postcodeCity.empty() ? "" : " ") + city;
  }
  // Line 8: the INS-NIR (the patient's own number) before a social-security number.
  if (auto ids = patient->find("identifier"); ids != patient->end() && ids->is_array()) {
    for (const char* system : {kInsNir, kNssNir}) {
      for (const auto& id : *ids)
        if (str(id, "system") == system && d.nir.empty()) d.nir = str(id, "value");
    }
  }
  std::string date, title, text;
  if (composition) {
    title = str(*composition, "title");
    date = str(*composition, "date");
    if (auto id = composition->find("identifier"); id != composition->end() && id->is_object()) d.requestNumber = str(*id, "value");
    if (auto ext = composition->find("extension"); ext != composition->end() && ext->is_array())
      for (const auto& x : *ext)
        if (str(x, "url") == "https://douleur77.fr/fhir/StructureDefinition/report-text") text = str(x, "valueString");
  }
  if (text.empty() && document) {
    if (title.empty()) title = str(*document, "description");
    if (date.empty()) date = str(*document, "date");
    if (auto c = document->find("content"); c != document->end() && c->is_array())
      for (const auto& content : *c) {
        if (!content.contains("attachment") || !content["attachment"].is_object()) continue;
        const Json& att = content["attachment"];
        if (str(att, "contentType").rfind("text/plain", 0) != 0) continue;
        std::string decoded;
        if (base64::decode(str(att, "data"), decoded)) {
          text = decoded;
          break;
        }
      }
  }
  for (const Json* o : observations) {
    if (!o->contains("code") || !(*o)["code"].is_object()) continue;
    std::string status = resultStatus(str(*o, "status"));
    if (str(*o, "status") == "entered-in-error" || str(*o, "status") == "cancelled") continue;
    Result r;
    if (resultOf((*o)["code"], *o, r)) {
      r.status = status;
      d.results.push_back(r);
    }
    if (auto comps = o->find("component"); comps != o->end() && comps->is_array())
      for (const auto& c : *comps) {
        if (!c.is_object() || !c.contains("code") || !c["code"].is_object()) continue;
        Result cr;
        if (resultOf(c["code"], c, cr)) {
          cr.status = status;
          d.results.push_back(cr);
        }
      }
    if (date.empty()) date = str(*o, "effectiveDateTime");
  }
  if (text.empty() && d.results.empty()) {
    error = "the Bundle holds no report text and no Observation with a value: nothing to send";
    return false;
  }
  d.reference = title.empty() ? "Réseau Douleur 77" : title;
  d.date = frenchDate(date);
  d.sender = options.sender;
  d.recipient = options.recipient;
  // The free text: the report, then the results readable by software that ignores ****LAB****.
  d.text = text;
  if (!d.results.empty()) {
    if (!d.text.empty()) d.text += "\n\n";
    d.text += "Résultats :";
    for (const auto& r : d.results) d.text += "\n  " + r.label + " : " + r.value + (r.unit.empty() ? "" : " " + r.unit);
  }
  return true;
}

}  // namespace passerelle::hprim
