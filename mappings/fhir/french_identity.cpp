// French identity facts of a FHIR Patient (see french_identity.h).
#include "mappings/fhir/french_identity.h"

#include <nlohmann/json.hpp>

namespace passerelle::fhir::fr {

namespace {

constexpr const char* kBirthPlace = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace";
constexpr const char* kInseeCode = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code";
constexpr const char* kCommunes = "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM";

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// The valueAddress of the Patient's birthplace extension, or null.
const nlohmann::json* birthAddress(const nlohmann::json& patient) {
  if (!patient.is_object()) return nullptr;
  auto ext = patient.find("extension");
  if (ext == patient.end() || !ext->is_array()) return nullptr;
  for (const auto& e : *ext)
    if (e.is_object() && e.value("url", "") == kBirthPlace)
      if (auto a = e.find("valueAddress"); a != e.end() && a->is_object()) return &*a;
  return nullptr;
}

}  // namespace

bool isInsSystem(std::string_view system) { return system == kInsNir || system == kInsNia || system == kInsTest || system == kInsDemo; }

bool isInseeCommuneCode(std::string_view code) {
  if (code.size() != 5) return false;
  bool department = (isDigit(code[0]) && isDigit(code[1])) || (code[0] == '2' && (code[1] == 'A' || code[1] == 'B'));
  return department && isDigit(code[2]) && isDigit(code[3]) && isDigit(code[4]);
}

std::string birthPlaceCode(const nlohmann::json& patient) {
  const nlohmann::json* a = birthAddress(patient);
  if (!a) return "";
  auto ext = a->find("extension");
  if (ext == a->end() || !ext->is_array()) return "";
  for (const auto& e : *ext)
    if (e.is_object() && e.value("url", "") == kInseeCode)
      if (auto c = e.find("valueCoding"); c != e.end() && c->is_object())
        if (auto v = c->find("code"); v != c->end() && v->is_string()) return v->get<std::string>();
  return "";
}

std::string birthPlaceCity(const nlohmann::json& patient) {
  const nlohmann::json* a = birthAddress(patient);
  if (!a) return "";
  auto c = a->find("city");
  return c != a->end() && c->is_string() ? c->get<std::string>() : "";
}

void setBirthPlace(nlohmann::json& patient, const std::string& inseeCode, const std::string& city) {
  if (inseeCode.empty() && city.empty()) return;
  nlohmann::json address = nlohmann::json::object();
  if (!inseeCode.empty())
    address["extension"] = nlohmann::json::array({{{"url", kInseeCode}, {"valueCoding", {{"system", kCommunes}, {"code", inseeCode}}}}});
  if (!city.empty()) address["city"] = city;
  patient["extension"].push_back({{"url", kBirthPlace}, {"valueAddress", address}});
}

}  // namespace passerelle::fhir::fr
