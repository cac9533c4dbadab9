// The embedded FHIR R4 Patient compartment (see compartment.h).
#include "gateway/fhir/compartment.h"

#include <nlohmann/json.hpp>

#include "mappings/common/embedded_file.h"

namespace passerelle {
const std::vector<EmbeddedFile>& compartmentFiles();
}

namespace passerelle::fhir {

const std::map<std::string, std::vector<std::string>>& patientCompartment() {
  static const std::map<std::string, std::vector<std::string>> table = [] {
    std::map<std::string, std::vector<std::string>> t;
    for (const auto& f : compartmentFiles()) {
      auto j = nlohmann::json::parse(f.contents);
      for (auto& [type, params] : j.at("types").items()) t[type] = params.get<std::vector<std::string>>();
    }
    return t;
  }();
  return table;
}

}  // namespace passerelle::fhir
