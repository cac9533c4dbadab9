// The French identity facts of a FHIR Patient as FR Core writes them: the INS systems (INS-NIR,
// INS-NIA, and the OIDs of test and demonstration INS) and the birthplace (the patient-birthPlace
// extension, an Address whose fr-core-address-insee-code extension holds the INSEE code of the
// commune of birth, as the network's inclusion mapping writes it). Stateless and thread-safe.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

namespace passerelle::fhir::fr {

inline constexpr const char* kInsNir = "urn:oid:1.2.250.1.213.1.4.8";
inline constexpr const char* kInsNia = "urn:oid:1.2.250.1.213.1.4.9";
inline constexpr const char* kInsTest = "urn:oid:1.2.250.1.213.1.4.10";
inline constexpr const char* kInsDemo = "urn:oid:1.2.250.1.213.1.4.11";

// Whether `system` is one of the INS systems above.
bool isInsSystem(std::string_view system);

// Whether `code` has the form of an INSEE commune code: 5 characters, the department (two digits,
// 2A or 2B) then three digits.
bool isInseeCommuneCode(std::string_view code);

// The INSEE code of the Patient's commune of birth, or "".
std::string birthPlaceCode(const nlohmann::json& patient);
// The city of the Patient's birthplace, or "".
std::string birthPlaceCity(const nlohmann::json& patient);
// Sets the Patient's birthplace (an INSEE code and/or a city name; nothing when both are empty).
void setBirthPlace(nlohmann::json& patient, const std::string& inseeCode, const std::string& city);

}  // namespace passerelle::fhir::fr
