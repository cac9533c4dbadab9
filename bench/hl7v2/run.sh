#!/usr/bin/env bash
# The HL7 v2 reader and the HL7 v2 -> FHIR conversion against node peers of the npm registry, in one
# run. Parsing: every parser reads the
# same generated messages (generate.py: French ADT^A01/A08 with INS and ZBE, ORU^R01 with 10-20 OBX and
# escaped NTE) and the same fields (MSH-9, every PID-3 repetition, PID-5, PID-7, every OBX-3 and OBX-5).
#   passerelle     build/bin/passerelle_bench_hl7v2 (Google Benchmark, one thread)
#   simple-hl7     3.3.0, Parser.parse (eager: segments and fields split at once)
#   @medplum/core  5.2.13, Hl7Message.parse (segments parsed when first read)
#
# Conversion: parse, map to a FHIR transaction Bundle (Patient; Encounter for ADT; an Observation per
# ORU result) and serialise it: Passerelle's mapping (mappings/hl7v2/fhir_mapping) against the minimal
# mapper on @medplum/core of map_bench.mjs, which builds the same resources.
#   bench/hl7v2/run.sh [BENCH_BINARY]       (default build/bin/passerelle_bench_hl7v2)
# Environment: HL7_MESSAGES (2000), BENCH_SECONDS (5) per node parser. Prints a markdown table.
set -euo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$(dirname "$DIR")")
BIN=${1:-$ROOT/build/bin/passerelle_bench_hl7v2}
COUNT=${HL7_MESSAGES:-2000}
SECONDS_EACH=${BENCH_SECONDS:-5}
[[ -x $BIN ]] || { echo "no $BIN (cmake -B build -G Ninja -DPASSERELLE_BENCH=ON && cmake --build build)" >&2; exit 1; }
command -v node >/dev/null || { echo "node not found" >&2; exit 1; }
if [[ ! -d $DIR/node_modules/simple-hl7 ]]; then (cd "$DIR" && npm ci --no-audit --no-fund >&2); fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/passerelle-hl7v2-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
python3 "$DIR/generate.py" --count "$COUNT" --out "$WORK/messages.json"
flags=()
(( $(node -p 'process.versions.node.split(".")[0]') < 22 )) && flags=(--experimental-websocket)
node "${flags[@]}" "$DIR/parse_bench.mjs" "$WORK/messages.json" "$SECONDS_EACH" 2>/dev/null >"$WORK/node.txt"
node "${flags[@]}" "$DIR/map_bench.mjs" "$WORK/messages.json" "$SECONDS_EACH" 2>/dev/null >"$WORK/map.txt"
PASSERELLE_HL7_MESSAGES=$WORK/messages.json "$BIN" --benchmark_format=json >"$WORK/cpp.json" 2>/dev/null
ours=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['benchmarks'][0]['items_per_second']))" "$WORK/cpp.json")
mapped=$(python3 -c "import json,sys; b=json.load(open(sys.argv[1]))['benchmarks'][1]; print(round(b['items_per_second']), round(b['resources_per_message'], 2))" "$WORK/cpp.json")
echo "| parser | messages/s | passerelle / it |"
echo "|---|---:|---:|"
echo "| passerelle (mappings/hl7v2) | $ours | 1.00 |"
while read -r _ name rate _; do
  echo "| $name | $rate | $(awk -v a="$ours" -v b="$rate" 'BEGIN { printf "%.1f", a / b }') |"
done <"$WORK/node.txt"
echo
read -r mapRate mapResources <<<"$mapped"
echo "| HL7 v2 -> FHIR Bundle (JSON text) | messages/s | resources per message | passerelle / it |"
echo "|---|---:|---:|---:|"
echo "| passerelle (mappings/hl7v2/fhir_mapping) | $mapRate | $mapResources | 1.00 |"
while read -r _ name rate resources _; do
  echo "| $name (map_bench.mjs) | $rate | $resources | $(awk -v a="$mapRate" -v b="$rate" 'BEGIN { printf "%.1f", a / b }') |"
done <"$WORK/map.txt"
echo
echo "$COUNT messages, $(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(round(sum(len(x.encode()) for x in m)/len(m)))" "$WORK/messages.json") bytes on average; $(nproc) CPUs, $(node --version)"
