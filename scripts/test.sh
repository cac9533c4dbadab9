#!/usr/bin/env bash
# Set-up command 2: install what is missing, build everything, and run every test (unit,
# integration, and the conformance suites over ../shared/corpora, which skip themselves, saying
# so, when it is absent). Exits non-zero when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh -DPASSERELLE_BUILD_TESTS=ON
# libFuzzer with sanitizers over the validator and the JSON text walkers, one minute each
# (a crash fails the run); the replay drivers also run inside ctest below.
scripts/fuzz.sh "${PASSERELLE_FUZZ_SECONDS:-60}"
# The conformance rates, printed whether or not the suites pass (ctest shows output on failure only).
for t in validator_conformance_test examples_conformance_test hl7v2_test; do
  build/bin/$t 2>&1 | grep -E '^\[ (conformance|  SKIPPED) ' || true
done
cd build
ctest --output-on-failure --parallel "$(nproc)" --timeout 900
# The suites of whole gateways once more, every test gateway storing into PostgreSQL (a throw-away
# cluster on loopback, as for the store suites).
PASSERELLE_TEST_STORAGE=postgresql ctest --output-on-failure --parallel "$(nproc)" --timeout 900 -L gateway
