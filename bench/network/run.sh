#!/usr/bin/env bash
# CIED end to end: the network API (POST /network/v1/cied, JSON and XML) against the raw FHIR
# transaction of the same resources (POST /fhir), on one machine, in one run.
#
#   bench/network/run.sh [PASSERELLE_BINARY]      (default build-bench/bin/passerelle)
#
# Builds nothing. Generates NET_PATIENTS patients' documents (generate.py) and the baseline Bundles
# (baseline.py: `passerelle convert`, completed with what the gateway derives from the dossier),
# seeds one gateway with the GPs and every patient's inclusion and consent, then measures, on fresh
# copies of that seeded database, alternating: raw, json, xml, raw, json, xml... (NET_ROUNDS rounds).
# Each measurement: a fresh server, one document sent alone (see send_one), BENCH_WARMUP seconds of
# unmeasured load on the first NET_WARMUP_PATIENTS patients, then BENCH_SECONDS with `wrk --latency`
# on the others; every patient's CIED is sent once (bench/network/cycle.lua). Finally compare.py checks on the first
# round's databases that the baseline stored the same resources as the network API.
#
# Writes a markdown report to stdout and bench/out/network-<date>.md, the wrk outputs to
# bench/out/network-raw-<date>/. Progress goes to stderr.
#
# Environment:
#   NET_PATIENTS         patients seeded, one CIED each (4000); must cover warm-up and measurement
#   NET_WARMUP_PATIENTS  the first patients, used by the warm-up (800)
#   BENCH_SECONDS        measured seconds (10)         BENCH_WARMUP  warm-up seconds (2)
#   NET_ROUNDS           A/B rounds (2)                NET_XML=0     leave the XML variant out
#   NET_CONNS            wrk connections (16)          NET_TODAY     network.today (2026-11-23)
#   NET_PATHOLOGIES      the patients' pathologies, in turn (low-back-pain,migraine: the gateway
#                        refuses cancer CIEDs as of 2026-11-23, their BPI QuestionnaireResponse
#                        lacking the items' linkId)
#   NET_PERF=1           after the rounds, profile each variant once with `perf record` and break the
#                        samples down by stage (stages.py); these runs are not counted
#   BENCH_QUIET_WAIT     seconds to wait for other processes to leave the CPUs before each run (60)
#   NET_DOCS_DIR         where generated documents and converted Bundles are kept between runs
#                        (bench/out/network-docs-<key>; reused when generator, count and binary match)
#   BENCH_KEEP=1         keep the temporary folder (databases, server logs)
set -euo pipefail

NET_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(dirname "$NET_DIR")
ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
PASSERELLE_BIN=${1:-${PASSERELLE_BIN:-$ROOT/build-bench/bin/passerelle}}
NET_PATIENTS=${NET_PATIENTS:-4000}
NET_WARMUP_PATIENTS=${NET_WARMUP_PATIENTS:-800}
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-2}
NET_ROUNDS=${NET_ROUNDS:-2}
NET_XML=${NET_XML:-1}
NET_CONNS=${NET_CONNS:-16}
NET_TODAY=${NET_TODAY:-2026-11-23}
NET_PERF=${NET_PERF:-0}
NET_PATHOLOGIES=${NET_PATHOLOGIES:-low-back-pain,migraine}
BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
WRK_THREADS=2
SEED=1

log() { printf '[network-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v python3 >/dev/null || die "python3 not found"
command -v curl >/dev/null || die "curl not found"
[[ -x $PASSERELLE_BIN ]] || die "no gateway binary at $PASSERELLE_BIN (build it: see bench/README.md)"
for v in NET_PATIENTS NET_WARMUP_PATIENTS BENCH_SECONDS NET_ROUNDS NET_CONNS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
[[ $BENCH_WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a non-negative integer"
((NET_WARMUP_PATIENTS < NET_PATIENTS)) || die "NET_WARMUP_PATIENTS must be below NET_PATIENTS"

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=$BENCH_DIR/out
RAW_DIR=$OUT_DIR/network-raw-$STAMP
mkdir -p "$RAW_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/passerelle-network-bench.XXXXXX")

SERVER_PIDS=()
cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A copy of the binary: a rebuild during the run must not swap the server under test.
BIN_BUILT=$(date -r "$PASSERELLE_BIN" '+%Y-%m-%d %H:%M:%S %Z')
BIN_SHA=$(sha256sum "$PASSERELLE_BIN" | cut -c1-12)
cp "$PASSERELLE_BIN" "$WORK/passerelle"
BIN=$WORK/passerelle

# --- servers ------------------------------------------------------------------------------------
mapfile -t passerelle_env < <(env | grep -oE '^PASSERELLE_[A-Z0-9_]+' | sed 's/^/-u/' || true)
SERVER_PID="" SERVER_PORT="" SERVER_NAME=""
# start_server NAME DATA_DIR: a gateway on a free port, plain HTTP, warnings only in its log.
start_server() {
  local name=$1 data=$2
  env "${passerelle_env[@]}" "$BIN" serve --config /dev/null --set http.port=0 --set https.enabled=false \
    --set "data.dir=$data" --set "network.today=$NET_TODAY" --set "network.rules_file=$ROOT/conf/network/rules.json" \
    --set log.level=warn >"$WORK/$name.out" 2>"$WORK/$name.err" &
  SERVER_PID=$!
  SERVER_NAME=$name
  SERVER_PIDS+=("$SERVER_PID")
  SERVER_PORT=""
  for _ in $(seq 300); do
    SERVER_PORT=$(grep -oE 'http=127\.0\.0\.1:[0-9]+' "$WORK/$name.out" 2>/dev/null | head -1 | cut -d: -f2) || true
    [[ -n $SERVER_PORT ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 20 "$WORK/$name.err" >&2; die "$name exited before listening"; }
    sleep 0.1
  done
  [[ -n $SERVER_PORT ]] || die "$name did not print its listening line within 30 s"
}
stop_server() {
  local pid=${1:-$SERVER_PID}
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "warning: server $pid still running 30 s after SIGTERM, killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

CLK_TCK=$(getconf CLK_TCK)
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $9; exit }' /proc/stat; }
pid_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
CHILDREN_SECONDS=0
read_children_seconds() {
  times >"$WORK/times.txt"
  CHILDREN_SECONDS=$(tail -1 "$WORK/times.txt" | awk '{ gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4 }')
}
wait_for_quiet() {
  local waited=0 b0 b1 used
  while :; do
    b0=$(busy_ticks); sleep 1; b1=$(busy_ticks)
    used=$(awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    awk -v u="$used" 'BEGIN { exit !(u < 0.15) }' && return 0
    if ((waited >= BENCH_QUIET_WAIT)); then
      log "warning: the machine is still busy ($used cores used by others), measuring anyway"
      return 0
    fi
    ((waited % 10 == 0)) && log "waiting for the machine to go idle ($used cores in use by other processes)"
    waited=$((waited + 1))
  done
}
# CPU ticks of each thread of a process: "tid ticks" lines.
thread_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "${t##*/}" "$(sed 's/^.*) //' "$t/stat" 2>/dev/null | awk '{ print $12 + $13 }')"
  done | sort
}
count_cied() { # stored CIED documents (their List)
  curl -sf -H "Authorization: Bearer $PASSERELLE_TOKEN" "http://127.0.0.1:$SERVER_PORT/fhir/List?code=https%3A%2F%2Fdouleur77.fr%2Ffhir%2FCodeSystem%2Fnetwork-document%7Ccied&_summary=count" |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("total", -1))'
}

# --- documents and baseline -------------------------------------------------------------------
DOCS_KEY=$(cat "$NET_DIR/generate.py" <(echo "$NET_PATIENTS $SEED $NET_TODAY $NET_PATHOLOGIES $BIN_SHA") | sha256sum | cut -c1-12)
DOCS=${NET_DOCS_DIR:-$OUT_DIR/network-docs-$DOCS_KEY}
if [[ -f $DOCS/complete ]]; then
  log "reusing the documents and converted Bundles of $DOCS"
else
  rm -rf "$DOCS"
  mkdir -p "$DOCS"
  log "generating $NET_PATIENTS patients' documents in $DOCS"
  python3 "$NET_DIR/generate.py" --out "$DOCS" --patients "$NET_PATIENTS" --seed "$SEED" --pathologies "$NET_PATHOLOGIES"
  log "converting the $NET_PATIENTS CIEDs to FHIR with passerelle convert (about 0.1 s of CPU each)"
  python3 "$NET_DIR/baseline.py" convert --docs "$DOCS" --bin "$BIN" --today "$NET_TODAY" --jobs 2
  touch "$DOCS/complete"
fi

log "seeding a gateway: $(wc -l <"$DOCS/professionals.jsonl") GPs, then $NET_PATIENTS inclusions and consents"
SEED_DATA=$WORK/seeded
mkdir -p "$SEED_DATA"
start_server seed "$SEED_DATA"
# The clients (seed.py, baseline.py, cycle.lua, count_cied, send_one, compare.py) send this token. It
# holds for every later server: their data folders are copies of this one, development key included.
PASSERELLE_TOKEN=$(bench_token "$BIN" "$SEED_DATA") || die "could not mint a token"
export PASSERELLE_TOKEN
SEED_STARTED=$(date +%s)
if ! python3 "$NET_DIR/seed.py" --base "http://127.0.0.1:$SERVER_PORT" --clients 8 \
  "$DOCS/professionals.jsonl" "$DOCS/inclusions.jsonl" "$DOCS/consents.jsonl" 2>&1 | tee "$RAW_DIR/seed.txt" >&2; then
  die "seeding failed (see $RAW_DIR/seed.txt)"
fi
SEED_SECONDS=$(($(date +%s) - SEED_STARTED))
python3 "$NET_DIR/baseline.py" finish --docs "$DOCS" --base "http://127.0.0.1:$SERVER_PORT" --out "$WORK/raw.bodies"
stop_server
SEED_MB=$(du -sm "$SEED_DATA" | cut -f1)
log "seeded in ${SEED_SECONDS}s; database ${SEED_MB} MB"

declare -A BODIES=([raw]=$WORK/raw.bodies [json]=$DOCS/cied-json.bodies [xml]=$DOCS/cied-xml.bodies)
declare -A PATHS=([raw]=/fhir [json]=/network/v1/cied [xml]=/network/v1/cied)
declare -A TYPES=([raw]=application/fhir+json [json]=application/json [xml]=application/xml)
VARIANTS=(raw json)
((NET_XML == 1)) && VARIANTS+=(xml)
for v in "${VARIANTS[@]}"; do
  log "$v: mean body $(python3 - "${BODIES[$v]}" <<'EOF'
import sys
n = total = 0
with open(sys.argv[1], "rb") as f:
    while True:
        line = f.readline()
        if not line:
            break
        size = int(line)
        f.seek(size, 1)
        n += 1
        total += size
print("%d bytes over %d bodies" % (total // n, n))
EOF
)"
done

# --- measuring ----------------------------------------------------------------------------------
ROWS=() # round|variant|rps|p50_us|p99_us|non2xx|server_cores|wrk_cores|other_cores|writer_cores|stored|sent
declare -A SUM_RPS=() SUM_P50=() SUM_P99=() SUM_CPU=() SUM_WRITER=()
run_wrk() { # VARIANT FIRST LAST SECONDS OUTPUT [--latency]
  local v=$1 first=$2 last=$3 seconds=$4 out=$5
  shift 5
  env BENCH_THREADS="$WRK_THREADS" BENCH_BODIES_FILE="${BODIES[$v]}" BENCH_FIRST="$first" BENCH_LAST="$last" \
    BENCH_PATH="${PATHS[$v]}" BENCH_CONTENT_TYPE="${TYPES[$v]}" \
    wrk -t"$WRK_THREADS" -c"$NET_CONNS" -d"${seconds}s" --timeout 10s "$@" -s "$NET_DIR/cycle.lua" \
    "http://127.0.0.1:$SERVER_PORT" >"$out" 2>&1 || die "wrk failed, see $out"
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    cp "$WORK/$SERVER_NAME.err" "$RAW_DIR/$SERVER_NAME.server-stderr.txt" 2>/dev/null || true
    tail -n 5 "$WORK/$SERVER_NAME.err" >&2 || true
    die "$v: the server died under load (its stderr: $RAW_DIR/$SERVER_NAME.server-stderr.txt; wrk: $out)"
  fi
  grep -q '^BENCH_REPEATS 0$' "$out" ||
    die "$v: wrk ran out of documents (raise NET_PATIENTS, or NET_WARMUP_PATIENTS for the warm-up), see $out"
  if ! grep -q 'non-2xx responses: 0$' "$out"; then
    grep -A3 'non-2xx responses' "$out" >&2 || true
    die "$v: some documents were refused, see $out"
  fi
}
field() { grep '^BENCH_RESULT ' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# send_one VARIANT INDEX: posts one body alone, before any concurrent load. A freshly started gateway
# given 16 XML documents at once can abort (2026-11-23: xerces-c asserts in RangeToken::doCreateMap,
# the XSD pattern facets of the shared grammar being compiled lazily by concurrent threads); one
# document first builds them. Every variant gets the same single request.
send_one() {
  python3 - "${BODIES[$1]}" "$2" "http://127.0.0.1:$SERVER_PORT${PATHS[$1]}" "${TYPES[$1]}" <<'EOF'
import os, sys, urllib.request
path, index, url, content_type = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(path, "rb") as f:
    for _ in range(index + 1):
        body = f.read(int(f.readline()))
headers = {"Content-Type": content_type, "Authorization": "Bearer " + os.environ["PASSERELLE_TOKEN"]}
request = urllib.request.Request(url, data=body, headers=headers, method="POST")
with urllib.request.urlopen(request, timeout=60) as response:
    response.read()
EOF
}

measure() { # ROUND VARIANT
  local round=$1 v=$2 data=$WORK/data-$2-$1
  wait_for_quiet
  rm -rf "$data"
  cp -a "$SEED_DATA" "$data"
  start_server "$v-$round" "$data"
  send_one "$v" $((NET_WARMUP_PATIENTS - 1)) || die "$v: the first document was refused"
  if ((BENCH_WARMUP > 0)); then
    log "round $round, $v: ${BENCH_WARMUP}s warm-up"
    run_wrk "$v" 0 $((NET_WARMUP_PATIENTS - 1)) "$BENCH_WARMUP" "$RAW_DIR/$v-$round.warmup.txt"
  fi
  log "round $round, $v: ${BENCH_SECONDS}s, $WRK_THREADS threads, $NET_CONNS connections"
  local t0 t1 b0 b1 s0 s1 c0 c1
  read_children_seconds; c0=$CHILDREN_SECONDS
  thread_ticks "$SERVER_PID" >"$WORK/threads0"
  t0=$(date +%s.%N) b0=$(busy_ticks) s0=$(pid_ticks "$SERVER_PID")
  run_wrk "$v" "$NET_WARMUP_PATIENTS" $((NET_PATIENTS - 1)) "$BENCH_SECONDS" "$RAW_DIR/$v-$round.txt" --latency
  t1=$(date +%s.%N) b1=$(busy_ticks) s1=$(pid_ticks "$SERVER_PID")
  read_children_seconds; c1=$CHILDREN_SECONDS
  thread_ticks "$SERVER_PID" >"$WORK/threads1"
  # The busiest thread is the store's writer (every commit goes through it).
  local busiest
  busiest=$(join "$WORK/threads0" "$WORK/threads1" | awk -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
    -v hz="$CLK_TCK" '{ d = $3 - $2; if (d > m) m = d } END { printf "%.2f", m / hz / t }')
  kill -0 "$SERVER_PID" 2>/dev/null || die "the server died during round $round, $v"
  local cpu
  cpu=$(awk -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v hz="$CLK_TCK" -v busy=$((b1 - b0)) \
    -v srv=$((s1 - s0)) -v k0="$c0" -v k1="$c1" 'BEGIN {
      s = srv / hz / t; w = (k1 - k0) / t; o = busy / hz / t - s - w; if (o < 0) o = 0
      printf "%.2f|%.2f|%.2f", s, w, o }')
  sleep 1 # requests still in flight when wrk stopped
  local stored sent warm=0
  stored=$(count_cied)
  [[ -f $RAW_DIR/$v-$round.warmup.txt ]] && warm=$(field "$RAW_DIR/$v-$round.warmup.txt" requests)
  sent=$((warm + $(field "$RAW_DIR/$v-$round.txt" requests)))
  stop_server
  cp "$WORK/$v-$round.err" "$RAW_DIR/$v-$round.server-stderr.txt" 2>/dev/null || true
  local raw=$RAW_DIR/$v-$round.txt rps p50 p99 non2xx
  rps=$(field "$raw" rps) p50=$(field "$raw" p50_us) p99=$(field "$raw" p99_us) non2xx=$(field "$raw" non2xx)
  ROWS+=("$round|$v|$rps|$p50|$p99|$non2xx|$cpu|$busiest|$stored|$sent")
  SUM_RPS[$v]=$(awk -v a="${SUM_RPS[$v]:-0}" -v b="$rps" 'BEGIN { print a + b }')
  SUM_P50[$v]=$(awk -v a="${SUM_P50[$v]:-0}" -v b="$p50" 'BEGIN { print a + b }')
  SUM_P99[$v]=$(awk -v a="${SUM_P99[$v]:-0}" -v b="$p99" 'BEGIN { print a + b }')
  SUM_CPU[$v]=$(awk -v a="${SUM_CPU[$v]:-0}" -v b="${cpu%%|*}" 'BEGIN { print a + b }')
  SUM_WRITER[$v]=$(awk -v a="${SUM_WRITER[$v]:-0}" -v b="$busiest" 'BEGIN { print a + b }')
  log "round $round, $v: $rps documents/s, p50 ${p50} us, p99 ${p99} us, CPU server|wrk|others $cpu (writer thread $busiest)," \
    "CIEDs stored $stored (responses $sent)"
  # the first round's databases are kept for compare.py; the others go
  ((round == 1)) || rm -rf "$data"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 1; round <= NET_ROUNDS; round++)); do
  for v in "${VARIANTS[@]}"; do measure "$round" "$v"; done
done

# --- the baseline stores the same resources -------------------------------------------------------
log "comparing what raw and json (and xml) stored for the first patients of each pathology"
start_server cmp-raw "$WORK/data-raw-1"
RAW_PID=$SERVER_PID RAW_PORT=$SERVER_PORT
COMPARE_OUT=$RAW_DIR/compare.txt
: >"$COMPARE_OUT"
COMPARE_OK=yes
# Patients surely sent in every run: the first of each wrk thread's share, but the very first (wrk
# calls request() once to check the script, and that body is not sent; see cycle.lua).
first=0
((BENCH_WARMUP > 0)) || first=$NET_WARMUP_PATIENTS
mapfile -t COMPARE_IDS < <(for i in $(seq $((first + 2)) $((first + 7))); do printf 'P77-%06d\n' "$i"; done)
for v in "${VARIANTS[@]:1}"; do
  start_server "cmp-$v" "$WORK/data-$v-1"
  echo "raw (a) against $v (b):" >>"$COMPARE_OUT"
  python3 "$NET_DIR/compare.py" --a "http://127.0.0.1:$RAW_PORT" --b "http://127.0.0.1:$SERVER_PORT" \
    "${COMPARE_IDS[@]}" >>"$COMPARE_OUT" 2>&1 || COMPARE_OK=no
  stop_server
done
stop_server "$RAW_PID"
cat "$COMPARE_OUT" >&2
[[ $COMPARE_OK == yes ]] || log "warning: the baseline did not store the same resources as the network API (see $COMPARE_OUT)"

# --- profiles (optional, not counted) -----------------------------------------------------------
PERF_NOTE=""
if [[ $NET_PERF == 1 ]]; then
  command -v perf >/dev/null || die "NET_PERF=1 but perf is not installed"
  for v in "${VARIANTS[@]}"; do
    wait_for_quiet
    rm -rf "$WORK/data-perf"
    cp -a "$SEED_DATA" "$WORK/data-perf"
    start_server "perf-$v" "$WORK/data-perf"
    send_one "$v" $((NET_WARMUP_PATIENTS - 1)) || die "$v: the first document was refused"
    run_wrk "$v" 0 $((NET_WARMUP_PATIENTS - 1)) 1 "$RAW_DIR/$v-perf.warmup.txt"
    log "profiling $v for ${BENCH_SECONDS}s"
    perf record -F 250 --call-graph dwarf,32768 -o "$WORK/perf-$v.data" -p "$SERVER_PID" -- sleep "$BENCH_SECONDS" \
      >/dev/null 2>&1 &
    PERF_PID=$!
    run_wrk "$v" "$NET_WARMUP_PATIENTS" $((NET_PATIENTS - 1)) "$BENCH_SECONDS" "$RAW_DIR/$v-perf.txt"
    wait "$PERF_PID" || true
    stop_server
    perf report -i "$WORK/perf-$v.data" --stdio --no-children --sort dso,symbol -g none --percent-limit 0.5 \
      >"$RAW_DIR/$v-perf-self.txt" 2>/dev/null || true
    perf script -i "$WORK/perf-$v.data" 2>/dev/null | python3 "$NET_DIR/stages.py" >"$RAW_DIR/$v-perf-stages.md" || true
    log "$v: $(grep -m1 'samples' "$RAW_DIR/$v-perf-stages.md" || echo 'no profile'), $(field "$RAW_DIR/$v-perf.txt" rps) documents/s while profiled"
  done
  PERF_NOTE="Profiles (perf record --call-graph dwarf, 250 Hz, one run per variant after the rounds): bench/out/network-raw-$STAMP/*-perf-stages.md (stages.py) and *-perf-self.txt"
fi

# --- report -------------------------------------------------------------------------------------
ms() { awk -v us="$1" 'BEGIN { printf "%.1f ms", us / 1000 }'; }
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') || true
git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then git_rev="$git_rev + uncommitted changes"; fi
REPORT=$OUT_DIR/network-$STAMP.md
{
  echo "# CIED end to end: network API against the raw FHIR transaction, $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| passerelle | $("$BIN" --version 2>/dev/null | head -1), binary $PASSERELLE_BIN built $BIN_BUILT (sha256 $BIN_SHA...); bench scripts from the repository at $git_rev |"
  echo "| machine | $(nproc) CPUs, $cpu_model, $(uname -sr) |"
  echo "| wrk | $WRK_THREADS threads, $NET_CONNS connections, ${BENCH_WARMUP}s warm-up then ${BENCH_SECONDS}s measured, each document sent once |"
  echo "| data | $NET_PATIENTS patients ($NET_PATHOLOGIES; inclusion + consent each, $(wc -l <"$DOCS/professionals.jsonl") GPs) seeded in ${SEED_SECONDS}s, ${SEED_MB} MB; every run on a fresh copy |"
  echo "| load average before (1/5/15 min) | $LOAD_BEFORE |"
  echo
  echo "| round | variant | documents/s | p50 | p99 | non-2xx | server CPU | of which writer thread | wrk CPU | others CPU | CIEDs stored / answered |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for row in "${ROWS[@]}"; do
    IFS='|' read -r round v rps p50 p99 non2xx srv wrkc other writer stored sent <<<"$row"
    echo "| $round | $v | $(printf '%.0f' "$rps") | $(ms "$p50") | $(ms "$p99") | $non2xx | $srv | $writer | $wrkc | $other | $stored / $sent |"
  done
  echo
  echo "Means over the $NET_ROUNDS rounds; \"cost on top\" is the time per document beyond the raw transaction's"
  echo "(raw documents/s / variant documents/s - 1; the requirement: below 30 %, and 500 documents/s or more)"
  echo
  echo "| variant | documents/s | p50 | p99 | cost on top of raw | p50 / raw p50 | server CPU ms / document | writer thread | other threads |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for v in "${VARIANTS[@]}"; do
    awk -v n="$NET_ROUNDS" -v r="${SUM_RPS[$v]}" -v p50="${SUM_P50[$v]}" -v p99="${SUM_P99[$v]}" -v cpu="${SUM_CPU[$v]}" \
      -v wr="${SUM_WRITER[$v]}" -v rr="${SUM_RPS[raw]}" -v rp50="${SUM_P50[raw]}" -v name="$v" 'BEGIN {
        printf "| %s | %.0f | %.1f ms | %.1f ms | %s | %.2f | %.2f | %.2f | %.2f |\n", name, r / n, p50 / n / 1000, p99 / n / 1000,
          name == "raw" ? "-" : sprintf("%+.0f %%", 100 * (rr / r - 1)), p50 / rp50, 1000 * cpu / r, 1000 * wr / r,
          1000 * (cpu - wr) / r }'
  done
  echo
  if [[ $COMPARE_OK == yes ]]; then
    echo "Same resources stored by the baseline and the network API (compare.py, patients ${COMPARE_IDS[0]} to ${COMPARE_IDS[5]}):"
  else
    echo "**The baseline and the network API did not store the same resources** (compare.py):"
  fi
  echo
  sed 's/^/    /' "$COMPARE_OUT"
  echo
  echo "wrk outputs and server logs: bench/out/network-raw-$STAMP/"
  [[ -z $PERF_NOTE ]] || echo "$PERF_NOTE"
} | tee "$REPORT"
log "report written to $REPORT"
