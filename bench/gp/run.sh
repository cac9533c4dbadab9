#!/usr/bin/env bash
# The GP software exchange, end to end through the real folders and a real gateway:
#   import: FILES HPRIM Net results (bench/gp/make_hprim.py, 3 results each, for PATIENTS patients
#           of the GP) moved into the installation's inbox at once; the time until every one is in
#           done/ (imported through the gate as the GP: identity by the strict traits, a transaction
#           with the file kept in the inbox, audited), and the gateway's CPU per file;
#   export: REPORTS CIED reports (Composition + 3 Observations each) queued for the GP's installation
#           while the exporter is off; the gateway restarted with it on, the time until every one is
#           written as HPRIM Net in outbox/ (consent checked as the GP, rendered, written atomically,
#           recorded and audited).
#   cda:    GP_CDA CDA R2 documents (bench/gp/make_cda.py, level 1 with a PDF, patients found by their
#           strict traits) the same way, each validated against the French root schema
#           (schemas/cda/CDA_FR.xsd over the ANS components of ../shared/corpora/ans-testcontenucda-3.0),
#           else the HL7 CDA R2 schema (CDA_SDTC.xsd of ../shared/corpora/hl7-cda-core-2.0), or
#           CDA_SCHEMA with CDA_COMPONENTS; the phase is skipped without one.
#   bench/gp/run.sh [BUILD_DIR]   Environment: GP_FILES (10000), GP_PATIENTS (500), GP_REPORTS (500),
#                                  GP_CDA (10000), CDA_SCHEMA, CDA_COMPONENTS.
set -euo pipefail
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(dirname "$DIR")
ROOT=$(dirname "$BENCH_DIR")
BUILD=${1:-$ROOT/build}
BIN=$BUILD/bin/passerelle
FILES=${GP_FILES:-10000}
PATIENTS=${GP_PATIENTS:-500}
REPORTS=${GP_REPORTS:-500}
CDA=${GP_CDA:-10000}
CORPORA=$(dirname "$ROOT")/shared/corpora
if [[ -z ${CDA_SCHEMA:-} && -d $CORPORA/ans-testcontenucda-3.0/infrastructure/cda ]]; then
  CDA_SCHEMA=$ROOT/schemas/cda/CDA_FR.xsd
  CDA_COMPONENTS=$CORPORA/ans-testcontenucda-3.0/infrastructure/cda
fi
CDA_SCHEMA=${CDA_SCHEMA:-$CORPORA/hl7-cda-core-2.0/schema/extensions/SDTC/infrastructure/cda/CDA_SDTC.xsd}
CDA_COMPONENTS=${CDA_COMPONENTS:-}
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
[[ -x $BIN ]] || { echo "build $BIN first" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/passerelle-gp-bench.XXXXXX")
GW_PID=
cleanup() { [[ -n $GW_PID ]] && kill "$GW_PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/gp"
cat >"$WORK/gp/martin.json" <<JSON
{"id": "gp-martin", "practitioner": {"rpps": "10101234567"}, "folder": "$WORK/folder",
 "import": {"stableForMs": 100, "pollMs": 100}, "export": {"recipient": "10101234567 Dr MARTIN Sophie"}}
JSON

# start DATA OUTBOX_ENABLED [--set ...]: a gateway on DATA; sets GW_PID and PORT.
start() {
  local data=$1 send=$2
  shift 2
  mkdir -p "$data"
  : >"$data/out.txt"
  "$BIN" serve --config /dev/null --set http.port=0 --set https.enabled=false --set mllp.port=-1 --set "data.dir=$data" \
    --set "gp.dir=$WORK/gp" --set "outbox.enabled=$send" --set log.level=error --set network.sweep_interval_seconds=0 "$@" \
    >"$data/out.txt" 2>"$data/err.txt" &
  GW_PID=$!
  for _ in $(seq 400); do grep -q "passerelle listening" "$data/out.txt" 2>/dev/null && break; sleep 0.025; done
  PORT=$(grep -o 'http=[^ ]*' "$data/out.txt" | sed 's/.*://')
}
stop() { kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; GW_PID=; }
cpu_ms() { awk '{print ($14 + $15) * 1000 / '"$(getconf CLK_TCK)"'}' "/proc/$1/stat"; }
count() { find "$1" -maxdepth 1 -type f ! -name '.*' ! -name '*.error.txt' | wc -l; }
now() { date +%s.%N; }

# drop_all STAGE TOTAL: moves every file of STAGE into the inbox at once and waits until TOTAL are in
# done/ or quarantine/; sets T0 T1 (times), C0 C1 (gateway CPU ms), DONE, QUARANTINED.
drop_all() {
  local stage=$1 total=$2
  C0=$(cpu_ms "$GW_PID")
  T0=$(now)
  python3 -c 'import os,sys; s,d=sys.argv[1:3]; [os.rename(os.path.join(s,f), os.path.join(d,f)) for f in sorted(os.listdir(s))]' \
    "$stage" "$WORK/folder/inbox"
  while (( $(count "$WORK/folder/done") + $(count "$WORK/folder/quarantine") < total )); do sleep 0.05; done
  T1=$(now)
  C1=$(cpu_ms "$GW_PID")
  DONE=$(count "$WORK/folder/done")
  QUARANTINED=$(count "$WORK/folder/quarantine")
  if ((QUARANTINED > 0)); then
    echo "quarantined, e.g.: $(grep -h '^reason' "$WORK"/folder/quarantine/*.error.txt | sort | uniq -c | sort -rn | head -3)" >&2
  fi
}

# ---- import ----
start "$WORK/import" false
export PASSERELLE_TOKEN
PASSERELLE_TOKEN=$(bench_token "$BIN" "$WORK/import")
python3 "$DIR/seed.py" --base "http://127.0.0.1:$PORT" --patients "$PATIENTS" --out "$WORK/patients.json"
python3 "$DIR/make_hprim.py" --patients "$WORK/patients.json" --count "$FILES" --out "$WORK/stage"
drop_all "$WORK/stage" "$FILES"
t0=$T0 t1=$T1 c0=$C0 c1=$C1 done_n=$DONE quarantined=$QUARANTINED
stop

# ---- export ----
start "$WORK/export" false
PASSERELLE_TOKEN=$(bench_token "$BIN" "$WORK/export")
python3 "$DIR/seed.py" --base "http://127.0.0.1:$PORT" --patients "$REPORTS" --reports --out "$WORK/patients-reports.json"
stop
rm -rf "$WORK/folder/outbox"
e0=$(now)
start "$WORK/export" true
e_start=$(now)
while (( $(count "$WORK/folder/outbox") < REPORTS )); do sleep 0.02; done
e1=$(now)
stop

# ---- cda ----
k0=0 k1=0 kc0=0 kc1=0 cda_done=0 cda_q=0
if [[ -f $CDA_SCHEMA ]] && ((CDA > 0)); then
  rm -rf "$WORK/folder"
  echo "CDA schema: $CDA_SCHEMA${CDA_COMPONENTS:+ over $CDA_COMPONENTS}" >&2
  start "$WORK/cda" false --set "cda.schema=$CDA_SCHEMA" --set "cda.schema_components=$CDA_COMPONENTS"
  PASSERELLE_TOKEN=$(bench_token "$BIN" "$WORK/cda")
  python3 "$DIR/seed.py" --base "http://127.0.0.1:$PORT" --patients "$PATIENTS" --out "$WORK/patients-cda.json"
  python3 "$DIR/make_cda.py" --patients "$WORK/patients-cda.json" --count "$CDA" --out "$WORK/stage-cda"
  drop_all "$WORK/stage-cda" "$CDA"
  k0=$T0 k1=$T1 kc0=$C0 kc1=$C1 cda_done=$DONE cda_q=$QUARANTINED
  stop
else
  echo "no CDA schema at $CDA_SCHEMA: the CDA phase is skipped" >&2
fi

python3 - "$FILES" "$t0" "$t1" "$c0" "$c1" "$done_n" "$quarantined" "$REPORTS" "$e0" "$e_start" "$e1" \
  "$CDA" "$k0" "$k1" "$kc0" "$kc1" "$cda_done" "$cda_q" <<'PY'
import sys
files, t0, t1, c0, c1, done, quarantined, reports, e0, es, e1, cda, k0, k1, kc0, kc1, cda_done, cda_q = sys.argv[1:]
files, done, quarantined, reports = int(files), int(done), int(quarantined), int(reports)
secs = float(t1) - float(t0)
print("| measure | value |")
print("|---|---:|")
print("| import: HPRIM Net files dropped at once | %d |" % files)
print("| import: in done/ / quarantined | %d / %d |" % (done, quarantined))
print("| import: seconds until the last one is taken | %.2f |" % secs)
print("| import: files per second | %.0f |" % (files / secs))
print("| import: gateway CPU per file (ms) | %.2f |" % ((float(c1) - float(c0)) / files))
print("| export: reports queued, then written | %d |" % reports)
print("| export: seconds from start-up to the last one written | %.2f |" % (float(e1) - float(e0)))
print("| export: of which after the gateway was listening | %.2f |" % (float(e1) - float(es)))
if float(k1) > 0:
    ksecs = float(k1) - float(k0)
    print("| cda: CDA documents dropped at once (in done/ / quarantined) | %s (%s / %s) |" % (cda, cda_done, cda_q))
    print("| cda: documents per second, XSD-validated | %.0f |" % (int(cda) / ksecs))
    print("| cda: gateway CPU per document (ms) | %.2f |" % ((float(kc1) - float(kc0)) / int(cda)))
PY
