#!/usr/bin/env bash
# Runs the libFuzzer targets for SECONDS each (default 120) with clang, AddressSanitizer and
# UBSan, seeded with fuzz/corpus and the R4 examples of ../shared/corpora when present. Crashes
# are written to build-fuzz/artifacts/. Needs clang and libclang-rt-14-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
if ! command -v clang++ >/dev/null; then
  echo "clang++ is not installed: fuzzing skipped"
  exit 0
fi
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPASSERELLE_FUZZ=ON \
  -DPASSERELLE_BUILD_TESTS=ON -DCMAKE_CXX_COMPILER_LAUNCHER= >/dev/null
cmake --build build-fuzz --target validator_fuzz json_text_fuzz search_fuzz network_document_fuzz hl7v2_fuzz mllp_fuzz hprim_fuzz cda_fuzz package_fuzz fhir_xml_fuzz fhirpath_fuzz
mkdir -p build-fuzz/artifacts build-fuzz/corpus-work
seeds=(fuzz/corpus/validator)
[ -d ../shared/corpora/fhir-test-cases/r4/examples ] && seeds+=(../shared/corpora/fhir-test-cases/r4/examples)
for t in validator_fuzz json_text_fuzz search_fuzz network_document_fuzz hl7v2_fuzz mllp_fuzz hprim_fuzz cda_fuzz package_fuzz fhir_xml_fuzz fhirpath_fuzz; do
  mkdir -p "build-fuzz/corpus-work/$t"
  if [ "$t" = search_fuzz ]; then seeds=(fuzz/corpus/search); fi
  if [ "$t" = network_document_fuzz ]; then seeds=(fuzz/corpus/network); fi
  if [ "$t" = mllp_fuzz ]; then seeds=(fuzz/corpus/mllp); fi
  if [ "$t" = hprim_fuzz ]; then seeds=(fuzz/corpus/hprim); fi
  if [ "$t" = package_fuzz ]; then seeds=(fuzz/corpus/package); fi
  if [ "$t" = fhirpath_fuzz ]; then seeds=(fuzz/corpus/fhirpath); fi
  if [ "$t" = cda_fuzz ]; then
    seeds=(fuzz/corpus/cda)
    [ -d ../shared/corpora/ans-testcontenucda-3.0/ExemplesCDA ] && seeds+=(../shared/corpora/ans-testcontenucda-3.0/ExemplesCDA)
  fi
  if [ "$t" = fhir_xml_fuzz ]; then
    seeds=(fuzz/corpus/fhirxml)
    [ -d ../shared/corpora/fhir-test-cases/r4/examples ] && seeds+=(../shared/corpora/fhir-test-cases/r4/examples)
  fi
  if [ "$t" = hl7v2_fuzz ]; then
    seeds=(fuzz/corpus/hl7v2)
    [ -d ../shared/corpora/ms-fhir-converter/input/Hl7v2 ] && seeds+=(../shared/corpora/ms-fhir-converter/input/Hl7v2)
  fi
  echo "fuzzing $t for ${seconds}s"
  build-fuzz/bin/$t -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix=build-fuzz/artifacts/ -print_final_stats=1 "build-fuzz/corpus-work/$t" "${seeds[@]}" 2>&1 | tail -12
done
