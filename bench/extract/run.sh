#!/usr/bin/env bash
# Evaluation extracts at growing cohort sizes: for each size, a fresh gateway seeded with a cohort
# (bench/extract/seed.py: about 11 resources per patient), then the extract of the caisse's
# medical service (indicators and pseudonymised rows, sealed) and of a financial partner
# (indicators only) run through the admin API; the wall time of each run, the gateway's CPU time,
# its heap (RssAnon after the run) and its peak resident memory (VmHWM, which also counts the pages
# of the database's memory map that the reads touched), and the rows written.
#   bench/extract/run.sh [BUILD_DIR]   Environment: EXTRACT_SIZES ("1000 4000")
set -euo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(dirname "$DIR")
ROOT=$(dirname "$BENCH_DIR")
BUILD=${1:-$ROOT/build}
BIN=$BUILD/bin/passerelle
SIZES=${EXTRACT_SIZES:-1000 4000}
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
[[ -x $BIN ]] || { echo "build $BIN first" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/passerelle-extract-bench.XXXXXX")
GW_PID=
cleanup() { [[ -n $GW_PID ]] && kill "$GW_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
cat >"$WORK/recipients.json" <<JSON
[{"id": "caisse", "role": "caisse-medical", "domain": "cpam77", "k": 10},
 {"id": "partner", "role": "financial-partner", "k": 10}]
JSON
cpu() { awk '{print ($14+$15)/100}' "/proc/$GW_PID/stat"; }
echo "| patients | resources seeded | extract | rows | seconds | gateway CPU s | heap MiB | peak RSS MiB |"
echo "|---:|---:|---|---:|---:|---:|---:|---:|"
for n in $SIZES; do
  data="$WORK/data-$n"
  mkdir -p "$data"
  "$BIN" serve --config /dev/null --set http.port=0 --set https.enabled=false --set mllp.port=-1 --set "data.dir=$data" \
    --set log.level=error --set network.sweep_interval_seconds=0 --set "extract.recipients=$WORK/recipients.json" \
    --set "extract.indicators=$ROOT/conf/extracts/indicators.json" >"$data/out.txt" 2>"$data/err.txt" &
  GW_PID=$!
  for _ in $(seq 400); do grep -q "passerelle listening" "$data/out.txt" 2>/dev/null && break; sleep 0.025; done
  PORT=$(grep -o 'http=[^ ]*' "$data/out.txt" | sed 's/.*://')
  PASSERELLE_TOKEN=$(bench_token "$BIN" "$data")
  export PASSERELLE_TOKEN
  python3 "$DIR/seed.py" --base "http://127.0.0.1:$PORT" --patients "$n"
  for who in caisse partner; do
    c0=$(cpu)
    t0=$(date +%s.%N)
    out=$(curl -sS -m 3600 -H "Authorization: Bearer $PASSERELLE_TOKEN" -H 'Content-Type: application/json' \
      -d "{\"recipient\": \"$who\", \"from\": \"2026-01-01\", \"to\": \"2026-12-31\"}" "http://127.0.0.1:$PORT/admin/v1/extracts")
    t1=$(date +%s.%N)
    c1=$(cpu)
    echo "$out" | grep -q "\"files\"" || { echo "extract for $who failed: ${out:0:400}" >&2; exit 1; }
    rows=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); print(sum(f.get("rows",0) for f in m["files"]))' "$out")
    rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$GW_PID/status")
    heap=$(awk '/RssAnon/ {print int($2/1024)}' "/proc/$GW_PID/status")
    printf "| %d | %d | %s | %d | %.2f | %.2f | %d | %d |\n" "$n" $((n * 11)) "$who" "$rows" "$(echo "$t1 - $t0" | bc)" "$(echo "$c1 - $c0" | bc)" "$heap" "$rss"
  done
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; GW_PID=
done
