// HPRIM <-> FHIR R4 (DOMAIN.md §2 and §3.B).
//   HPRIM Net document -> Patient (name, birth date, address, the social-security number as the
//     FR Core NSS-NIR identifier when its key checks), DocumentReference (the free text as
//     text/plain), one Observation per RES line (numeric as Quantity, with reference range and
//     interpretation), in a transaction Bundle.
//   HPRIM Santé message -> per P record a Patient, per OBR a DiagnosticReport and per OBX an
//     Observation (LOINC when OBX-3 says LN), in a transaction Bundle.
//   FHIR -> HPRIM Net: a Bundle holding a Patient and a report (Composition or DocumentReference
//     with text) and Observations -> one HPRIM Net document, the scores as RES lines (type N) with
//     French labels for the network's codes, and the same results readable in the free text.
// No sockets, no database. Thread-safety: plain functions.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "mappings/hprim/hprim.h"

namespace passerelle::hprim {

// Adds the resources of a document or message to `bundle` (a transaction Bundle: created when it
// is not an object yet). Entries get urn:uuid full URLs numbered from the entries already there.
void netToBundle(const NetDocument& doc, nlohmann::json& bundle, std::vector<Issue>& issues);
void santeToBundle(const SanteMessage& msg, nlohmann::json& bundle, std::vector<Issue>& issues);

struct NetExport {
  std::string sender;     // line 11, "code name" (e.g. "D77 Réseau Douleur 77")
  std::string recipient;  // line 12, "code name" of the receiving GP (e.g. "10101234567 Dr Martin")
};

// One HPRIM Net document from a Bundle (or any object with `entry`). False with `error` when the
// Bundle holds no Patient or nothing to send (no report text and no Observation with a value).
bool netFromFhir(const nlohmann::json& bundle, const NetExport& options, NetDocument& doc, std::string& error);

// The French label GP software shows for one of the network's codes (LOINC pain scores, the
// d77-scale and d77-ind codes); "" for others.
std::string frenchLabel(const std::string& system, const std::string& code);

}  // namespace passerelle::hprim
