// Text folding for FHIR string search ("case and accent insensitive"): "Hélène" and "HELENE"
// both fold to "helene".
#pragma once

#include <string>
#include <string_view>

namespace passerelle::search {

std::string foldText(std::string_view in);

}  // namespace passerelle::search
