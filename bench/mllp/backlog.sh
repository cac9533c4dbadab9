#!/usr/bin/env bash
# Backlog drain: a hospital down while referrals keep coming, then back. Measures, in one run,
#   inflow  referrals accepted by the gateway (POST /fhir/ServiceRequest, wrk, 16 connections, each
#           queuing one REF^I12 delivery in its commit) per second, with the sender stopped
#   drain   deliveries sent per second once the hospital is back (a @medplum/hl7 Hl7Server answering
#           AA), from a backlog of BACKLOG deliveries (topped up with transactions of 500 referrals)
# and prints the ratio drain / inflow.
#   bench/mllp/backlog.sh [BUILD_DIR]
# Environment: BACKLOG (100000), BENCH_PATIENTS (200), BENCH_SECONDS (10: the inflow measurement),
# SEND_CONNECTIONS (1: the partner's outbound.connections, patients spread over them).
set -euo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(dirname "$DIR")
ROOT=$(dirname "$BENCH_DIR")
BUILD=${1:-$ROOT/build}
BIN=$BUILD/bin/passerelle
BACKLOG=${BACKLOG:-100000}
export BENCH_PATIENTS=${BENCH_PATIENTS:-200}
SECONDS_INFLOW=${BENCH_SECONDS:-10}
SEND_CONNECTIONS=${SEND_CONNECTIONS:-1}
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
command -v wrk >/dev/null || { echo "wrk not found" >&2; exit 1; }
[[ -d $DIR/node_modules/@medplum/hl7 ]] || (cd "$DIR" && npm ci --no-audit --no-fund >&2)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/passerelle-backlog.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$WORK"; }
trap cleanup EXIT
log() { printf '[backlog %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
NODE_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/partners" "$WORK/data"
cat >"$WORK/partners/bench.json" <<JSON
{"id": "bench", "name": "Benchmark hospital", "finess": "999999999", "account": "bench-eai", "role": "hospital",
 "inbound": {"sendingApplication": "BENCH-EAI", "sendingFacility": "BENCH"},
 "outbound": {"protocol": "mllp", "host": "127.0.0.1", "port": $NODE_PORT, "receivingApplication": "BENCH-EAI",
              "connections": $SEND_CONNECTIONS},
 "retry": {"maxAttempts": 10, "initialDelayMs": 200, "maxDelayMs": 1000}}
JSON
start_gateway() {  # start_gateway OUTBOX_ENABLED
  "$BIN" serve --config /dev/null --set http.port=0 --set https.enabled=false --set "data.dir=$WORK/data" \
    --set "partners.dir=$WORK/partners" --set log.level=error --set network.sweep_interval_seconds=0 \
    --set "outbox.enabled=$1" >"$WORK/out.txt" 2>>"$WORK/err.txt" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  for _ in $(seq 200); do grep -q "passerelle listening" "$WORK/out.txt" 2>/dev/null && break; sleep 0.05; done
  HTTP_PORT=$(grep -o 'http=[^ ]*' "$WORK/out.txt" | sed 's/.*://')
  export PASSERELLE_TOKEN
  PASSERELLE_TOKEN=$(bench_token "$BIN" "$WORK/data")
}
start_gateway false
log "seeding the hospital's structure, $BENCH_PATIENTS patients with their consent"
python3 - "$HTTP_PORT" "$BENCH_PATIENTS" <<'PY'
import json, os, sys, urllib.request
port, n = sys.argv[1], int(sys.argv[2])
def put(entries):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/fhir", data=json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode(),
                                 headers={"Content-Type": "application/fhir+json", "Authorization": "Bearer " + os.environ["PASSERELLE_TOKEN"]}, method="POST")
    assert urllib.request.urlopen(req).status == 200
entries = [{"resource": {"resourceType": "Organization", "id": "bench-hospital", "name": "Benchmark hospital",
                         "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "999999999"}]},
            "request": {"method": "PUT", "url": "Organization/bench-hospital"}}]
for i in range(n):
    entries.append({"resource": {"resourceType": "Patient", "id": f"bench-{i}", "name": [{"family": "DUPONT", "given": ["Marie"]}],
                                 "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": str(1000000000000 + i)}]},
                    "request": {"method": "PUT", "url": f"Patient/bench-{i}"}})
    entries.append({"resource": {"resourceType": "Consent", "id": f"bench-{i}", "status": "active",
                                 "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
                                 "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                                 "patient": {"reference": f"Patient/bench-{i}"},
                                 "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
                                 "provision": {"period": {"start": "2026-01-01", "end": "2030-12-31"}}},
                    "request": {"method": "PUT", "url": f"Consent/bench-{i}"}})
put(entries)
PY
log "inflow: wrk 16 connections, ${SECONDS_INFLOW}s"
wrk -t2 -c16 -d"${SECONDS_INFLOW}s" --latency -s "$DIR/referral.lua" "http://127.0.0.1:$HTTP_PORT" >"$WORK/wrk.txt"
inflow=$(grep BENCH_RESULT "$WORK/wrk.txt" | grep -o 'rps=[0-9.]*' | cut -d= -f2)
queued() { curl -s -H "Authorization: Bearer $PASSERELLE_TOKEN" "http://127.0.0.1:$HTTP_PORT/admin/v1/outbox?_count=1" |
  python3 -c "import json,sys; d=json.load(sys.stdin)['destinations']; print(sum(x['queued'] for x in d))"; }
have=$(queued)
log "inflow $inflow referrals/s; $have deliveries queued; topping up to $BACKLOG"
python3 - "$HTTP_PORT" "$BENCH_PATIENTS" "$((BACKLOG - have))" <<'PY'
import json, os, sys, urllib.request
port, n, missing = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
k = 0
while k < missing:
    entries = []
    for _ in range(min(500, missing - k)):
        entries.append({"resource": {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                                     "identifier": [{"system": "https://douleur77.fr/fhir/sid/referral", "value": f"FILL-{k}"}],
                                     "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}],
                                     "subject": {"reference": f"Patient/bench-{k % n}"}, "authoredOn": "2026-12-01",
                                     "performer": [{"reference": "Organization/bench-hospital"}]},
                        "request": {"method": "POST", "url": "ServiceRequest"}})
        k += 1
    req = urllib.request.Request(f"http://127.0.0.1:{port}/fhir", data=json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode(),
                                 headers={"Content-Type": "application/fhir+json", "Authorization": "Bearer " + os.environ["PASSERELLE_TOKEN"]}, method="POST")
    assert urllib.request.urlopen(req).status == 200
PY
backlog=$(queued)
kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
log "backlog of $backlog; the hospital comes back"
node "$DIR/hl7server.mjs" "$NODE_PORT" >"$WORK/node.txt" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/node.txt" 2>/dev/null && break; sleep 0.05; done
start_gateway true
t0=$(date +%s.%N)
while :; do
  left=$(queued)
  [[ $left -eq 0 ]] && break
  sleep 0.5
done
t1=$(date +%s.%N)
drain=$(awk -v n="$backlog" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
sent=$(curl -s -H "Authorization: Bearer $PASSERELLE_TOKEN" "http://127.0.0.1:$HTTP_PORT/admin/v1/outbox?_count=1" |
  python3 -c "import json,sys; d=json.load(sys.stdin)['destinations']; print(' '.join(f\"{x['destination']}: sent {x['sent']}, dead {x['dead']}, cancelled {x['cancelled']}\" for x in d))")
echo "| measure | per second |"
echo "|---|---:|"
echo "| inflow: referrals accepted (wrk, 16 connections, sender stopped) | $inflow |"
echo "| drain: deliveries sent once the hospital is back ($backlog queued, $SEND_CONNECTIONS connection(s)) | $drain |"
echo "| drain / inflow | $(awk -v a="$drain" -v b="$inflow" 'BEGIN { printf "%.2f", a / b }') |"
echo
echo "$sent; $(nproc) CPUs"
