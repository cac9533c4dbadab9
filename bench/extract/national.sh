#!/usr/bin/env bash
# The annual extract of the caisse's medical service (indicators, pseudonymised rows, fees, the
# archive sealed for it) at growing cohort sizes up to a national one: for each size, a store seeded
# directly (passerelle_bench_extract_seed: 26 resources per patient, 20 of them Observations), a
# gateway serving it, the extract asked for through the admin API. Prints, per size: the wall time of
# the extract, the gateway's CPU time, its heap at the end (RssAnon), its peak resident memory
# (VmHWM: heap plus the database pages it mapped), the rows written and the package's size.
#   bench/extract/national.sh [BUILD_DIR]
# Environment: NATIONAL_SIZES ("10000 100000 1000000"), NATIONAL_DIR (where the seeded stores are
# kept between runs; default a temporary folder removed at the end), NATIONAL_LOG=info (the time of
# each phase of the extract, from the gateway's log, to stderr). A store of 1,000,000 patients
# takes about 26 GB and some 20 minutes to seed.
set -euo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(dirname "$DIR")
ROOT=$(dirname "$BENCH_DIR")
BUILD=${1:-$ROOT/build}
BIN=$BUILD/bin/passerelle
SEED=$BUILD/bin/passerelle_bench_extract_seed
SIZES=${NATIONAL_SIZES:-10000 100000 1000000}
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
[[ -x $BIN && -x $SEED ]] || { echo "build $BIN and $SEED first (-DPASSERELLE_BENCH=ON)" >&2; exit 1; }
KEEP=${NATIONAL_DIR:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/passerelle-national.XXXXXX")
STORES=${KEEP:-$WORK}
GW_PID=
cleanup() { [[ -n $GW_PID ]] && kill "$GW_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
cat >"$WORK/recipients.json" <<JSON
[{"id": "caisse", "role": "caisse-medical", "domain": "cpam77", "k": 10}]
JSON
cpu() { awk '{print ($14+$15)/100}' "/proc/$GW_PID/stat"; }
echo "| patients | resources | extract s | gateway CPU s | heap MiB | peak RSS MiB | rows | package MiB |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $SIZES; do
  data="$STORES/store-$n"
  if [[ ! -f $data/seeded ]]; then
    rm -rf "$data"
    mkdir -p "$data"
    "$SEED" "$data/passerelle.db" "$n" >"$data/seed.txt" 2>"$data/seed.err"
    touch "$data/seeded"
  fi
  rm -rf "$data/extracts"
  "$BIN" serve --config /dev/null --set http.port=0 --set https.enabled=false --set mllp.port=-1 --set "data.dir=$data" \
    --set log.level=${NATIONAL_LOG:-error} --set network.sweep_interval_seconds=0 --set "extract.recipients=$WORK/recipients.json" \
    --set "extract.indicators=$ROOT/conf/extracts/indicators.json" >"$WORK/out.txt" 2>"$WORK/err.txt" &
  GW_PID=$!
  for _ in $(seq 2400); do grep -q "passerelle listening" "$WORK/out.txt" 2>/dev/null && break; sleep 0.025; done
  PORT=$(grep -o 'http=[^ ]*' "$WORK/out.txt" | sed 's/.*://')
  PASSERELLE_TOKEN=$(bench_token "$BIN" "$data")
  export PASSERELLE_TOKEN
  c0=$(cpu)
  t0=$(date +%s.%N)
  out=$(curl -sS -m 7200 -H "Authorization: Bearer $PASSERELLE_TOKEN" -H 'Content-Type: application/json' \
    -d '{"recipient": "caisse", "from": "2026-01-01", "to": "2026-12-31"}' "http://127.0.0.1:$PORT/admin/v1/extracts")
  t1=$(date +%s.%N)
  c1=$(cpu)
  echo "$out" | grep -q "\"files\"" || { echo "extract failed: ${out:0:400}" >&2; cat "$WORK/err.txt" >&2; exit 1; }
  rows=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); print(sum(f.get("rows",0) for f in m["files"]))' "$out")
  package=$(python3 -c 'import json,os,sys; m=json.loads(sys.argv[1]); print(os.path.getsize(m["package"]) // 1048576)' "$out")
  rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$GW_PID/status")
  heap=$(awk '/RssAnon/ {print int($2/1024)}' "/proc/$GW_PID/status")
  printf "| %d | %d | %.1f | %.1f | %d | %d | %d | %d |\n" "$n" $((n * 26)) "$(echo "$t1 - $t0" | bc)" "$(echo "$c1 - $c0" | bc)" "$heap" "$rss" "$rows" "$package"
  kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; GW_PID=
  # With NATIONAL_LOG=info: how long each type took to read and each phase after (to stderr).
  grep -hE "extract\.(read|phase)" "$WORK/out.txt" "$WORK/err.txt" >&2 || true
  rm -rf "$data/extracts"
done
