#!/usr/bin/env bash
# MLLP ingest: Passerelle's listener (each message parsed, checked, its partner recognised, its
# patient found, stored durably in the inbox, then acknowledged) against @medplum/hl7's Hl7Server
# (parses and acknowledges, stores nothing), driven by the same C++ client (passerelle_bench_mllp_load:
# N connections, one message in flight each) with the same ADT^A31 messages, in one run:
#   passerelle  at 1 and 8 connections (group commit: store.max_group=256, the default)
#   passerelle  at 8 connections with store.max_group=1 (one fsync per message)
#   Hl7Server   at 1 and 8 connections (node, one process)
#
#   bench/mllp/run.sh [BUILD_DIR]       (default build: bin/passerelle and bin/passerelle_bench_mllp_load)
# Environment: MLLP_MESSAGES (20000 per run), MLLP_PATIENTS (200). Prints a markdown table.
set -euo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(dirname "$DIR")
ROOT=$(dirname "$BENCH_DIR")
BUILD=${1:-$ROOT/build}
BIN=$BUILD/bin/passerelle
LOAD=$BUILD/bin/passerelle_bench_mllp_load
MESSAGES=${MLLP_MESSAGES:-20000}
PATIENTS=${MLLP_PATIENTS:-200}
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
[[ -x $BIN && -x $LOAD ]] || { echo "build $BIN and $LOAD first (-DPASSERELLE_BENCH=ON)" >&2; exit 1; }
command -v node >/dev/null || { echo "node not found" >&2; exit 1; }
[[ -d $DIR/node_modules/@medplum/hl7 ]] || (cd "$DIR" && npm ci --no-audit --no-fund >&2)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/passerelle-mllp-bench.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/partners"
cat >"$WORK/partners/bench.json" <<JSON
{"id": "bench", "name": "Benchmark hospital", "finess": "999999999", "account": "bench-eai", "role": "hospital",
 "inbound": {"sendingApplication": "BENCH-EAI", "sendingFacility": "BENCH"}}
JSON

# start_gateway NAME [--set k=v ...]: a gateway on a fresh data folder seeded with the partner's
# structure and the patients; sets GW_PID, HTTP_PORT, MLLP_PORT.
start_gateway() {
  local name=$1
  shift
  local data=$WORK/$name
  mkdir -p "$data"
  "$BIN" serve --config /dev/null --set http.port=0 --set https.enabled=false --set "data.dir=$data" --set mllp.port=0 \
    --set "partners.dir=$WORK/partners" --set log.level=error --set network.sweep_interval_seconds=0 "$@" >"$data/out.txt" 2>"$data/err.txt" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  for _ in $(seq 200); do grep -q "passerelle listening" "$data/out.txt" 2>/dev/null && break; sleep 0.05; done
  HTTP_PORT=$(grep -o 'http=[^ ]*' "$data/out.txt" | sed 's/.*://')
  MLLP_PORT=$(grep -o 'mllp=[^ ]*' "$data/out.txt" | sed 's/.*://')
  local token
  token=$(bench_token "$BIN" "$data")
  python3 - "$HTTP_PORT" "$token" "$PATIENTS" <<'PY'
import json, sys, urllib.request
port, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
entries = [{"resource": {"resourceType": "Organization", "name": "Benchmark hospital",
                         "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "999999999"}]},
            "request": {"method": "POST", "url": "Organization"}}]
for i in range(n):
    entries.append({"resource": {"resourceType": "Patient", "name": [{"family": "DUPONT", "given": ["Marie"]}],
                                 "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": str(1000000000000 + i)}]},
                    "request": {"method": "POST", "url": "Patient"}})
req = urllib.request.Request(f"http://127.0.0.1:{port}/fhir", data=json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode(),
                             headers={"Content-Type": "application/fhir+json", "Authorization": "Bearer " + token}, method="POST")
assert urllib.request.urlopen(req).status == 200
PY
}

stop_gateway() { kill "$GW_PID" 2>/dev/null || true; wait "$GW_PID" 2>/dev/null || true; }

declare -A RESULT
measure() {  # measure KEY PORT CONNECTIONS
  local out
  # a warm-up of 500 messages, then the run
  "$LOAD" --port "$2" --connections "$3" --messages 500 --patients "$PATIENTS" --run "warm-$1" >/dev/null
  out=$("$LOAD" --port "$2" --connections "$3" --messages "$MESSAGES" --patients "$PATIENTS" --run "$1")
  RESULT[$1]=$out
  echo "$1 $out" >&2
}

start_gateway grouped
measure p1 "$MLLP_PORT" 1
measure p8 "$MLLP_PORT" 8
stored=$(curl -s -H "Authorization: Bearer $(bench_token "$BIN" "$WORK/grouped")" "http://127.0.0.1:$HTTP_PORT/admin/v1/inbox?_count=1" | python3 -c "import json,sys; print(json.load(sys.stdin)['messages'][0]['id'])")
stop_gateway
start_gateway single --set store.max_group=1
measure s8 "$MLLP_PORT" 8
stop_gateway

NODE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
node "$DIR/hl7server.mjs" "$NODE_PORT" >"$WORK/node.txt" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/node.txt" 2>/dev/null && break; sleep 0.05; done
measure m1 "$NODE_PORT" 1
measure m8 "$NODE_PORT" 8

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "${RESULT[$1]}" "$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "| receiver | connections | messages/s | p50 µs | p99 µs | acks | vs Hl7Server (rate) | p99 vs Hl7Server |"
echo "|---|---:|---:|---:|---:|---|---:|---:|"
for k in p1 p8 s8 m1 m8; do
  case $k in
    p1|p8) who="passerelle (durable inbox, group commit)"; peer=m${k:1} ;;
    s8) who="passerelle, store.max_group=1 (one fsync each)"; peer=m8 ;;
    m*) who="@medplum/hl7 Hl7Server 5.0.10 (stores nothing)"; peer=$k ;;
  esac
  echo "| $who | $(field $k connections) | $(field $k rate) | $(field $k p50_us) | $(field $k p99_us) | $(field $k acks | tr -d "{}'" ) | $(ratio "$(field $k rate)" "$(field $peer rate)") | $(ratio "$(field $k p99_us)" "$(field $peer p99_us)") |"
done
echo
echo "$MESSAGES ADT^A31 per run after 500 of warm-up, $PATIENTS patients; inbox rows after the grouped runs: $stored; $(nproc) CPUs, $(node --version)"
