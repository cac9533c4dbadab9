// Pseudonyms of patients in evaluation extracts: HMAC-SHA-256 of the patient's INS under a key of
// the recipient's domain (the caisse's medical service, the external evaluator...). The same INS
// gives the same pseudonym under one key, unrelated ones under two keys; without the key, the
// pseudonym cannot be linked back to the INS. Ages and dates are coarsened alongside (bands,
// months). Stateless and thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace passerelle::extract {

// The INS as it is keyed: the 15 characters without spaces, letters upper case (2A/2B).
std::string normalisedIns(std::string_view ins);

// HMAC-SHA-256(normalisedIns(ins), key), 64 lowercase hexadecimal characters. `key` is raw bytes.
std::string pseudonym(std::string_view ins, std::string_view key);

// The age band at `at` of someone born on `birthDate` (both YYYY-MM-DD): "<18", "18-24", "25-34",
// "35-44", "45-54", "55-64", "65+"; "" when a date cannot be read.
std::string ageBand(std::string_view birthDate, std::string_view at);

// The month of a date (YYYY-MM-DD or a dateTime): "YYYY-MM"; "" when it has none.
std::string monthOf(std::string_view date);

}  // namespace passerelle::extract
