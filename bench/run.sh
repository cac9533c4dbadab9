#!/usr/bin/env bash
# Benchmarks Passerelle's FHIR REST core against peers measured in the same run:
#   passerelle  the gateway (PASSERELLE_BIN, default build/bin/passerelle), fresh SQLite data dir,
#               access control and audit on (the default): every request carries a system token
#               (bench/lib.sh), minted once the server is up
#   medplum     @medplum/fhir-router + MemoryRepository on node:http (bench/peer)
#   trivial     a Poco HTTPServer answering a fixed Patient (TRIVIAL_BIN,
#               default build/bin/passerelle_bench_trivial), read scenario only
# One server at a time, started afresh for every scenario (start, seed, measure, stop), so that the
# servers never compete for the CPUs and every scenario starts from the same state.
# Every server listens on 127.0.0.1 only; wrk sends its traffic there.
#
# Writes a markdown report to stdout and to bench/out/results-<date>.md; the raw wrk outputs go
# to bench/out/raw-<date>/. Progress goes to stderr.
#
# Environment:
#   BENCH_SECONDS  measured seconds per scenario (10)
#   BENCH_WARMUP   unmeasured warm-up seconds before each scenario (2; 0 = none)
#   BENCH_SEED     Patients created before read/update (1000)
#   PASSERELLE_BIN, TRIVIAL_BIN   server binaries (see above)
#   PEER_NODE      node binary for the Medplum peer (node)
#   BENCH_QUIET_WAIT  seconds to wait, before each server, for other processes to leave the CPUs (120)
#   BENCH_RETRIES  re-runs of a scenario during which other processes took CPU (2)
#   BENCH_KEEP=1   keep the temporary folder (server logs, gateway database)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
PASSERELLE_BIN=${PASSERELLE_BIN:-$ROOT/build/bin/passerelle}
TRIVIAL_BIN=${TRIVIAL_BIN:-$ROOT/build/bin/passerelle_bench_trivial}
PEER_NODE=${PEER_NODE:-node}
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_SEED=${BENCH_SEED:-1000}
BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-120}
BENCH_RETRIES=${BENCH_RETRIES:-2}
WRK_THREADS=2
CONNS=16
TX_CONNS=4

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- pre-flight -------------------------------------------------------------------------------
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v "$PEER_NODE" >/dev/null || die "node not found ($PEER_NODE)"
[[ -x $PASSERELLE_BIN ]] || die "no gateway binary at $PASSERELLE_BIN (cmake --build build)"
[[ -x $TRIVIAL_BIN ]] ||
  die "no trivial server at $TRIVIAL_BIN (cmake -B build -G Ninja -DPASSERELLE_BENCH=ON && cmake --build build)"
[[ $BENCH_SECONDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a positive integer"
[[ $BENCH_WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a non-negative integer"
[[ $BENCH_SEED =~ ^[1-9][0-9]*$ ]] || die "BENCH_SEED must be a positive integer"
[[ $BENCH_QUIET_WAIT =~ ^[0-9]+$ ]] || die "BENCH_QUIET_WAIT must be a non-negative integer"
[[ $BENCH_RETRIES =~ ^[0-9]+$ ]] || die "BENCH_RETRIES must be a non-negative integer"

if [[ ! -d $BENCH_DIR/peer/node_modules/@medplum/fhir-router ]]; then
  log "installing the Medplum peer's packages (npm ci in bench/peer)"
  (cd "$BENCH_DIR/peer" && npm ci --no-audit --no-fund >&2)
fi

# @medplum/core reads the global WebSocket when it loads; node < 22 only has it behind a flag.
PEER_NODE_FLAGS=()
node_major=$("$PEER_NODE" -p 'process.versions.node.split(".")[0]')
if ((node_major < 22)); then PEER_NODE_FLAGS=(--experimental-websocket); fi

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=$BENCH_DIR/out
RAW_DIR=$OUT_DIR/raw-$STAMP
mkdir -p "$RAW_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/passerelle-bench.XXXXXX")

# --- servers ----------------------------------------------------------------------------------
SERVER_PIDS=()
SERVER_PID=""
SERVER_PORT=""
SERVER_TOKEN="" # the bearer token the clients send to the server under test (the gateway only)

cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  local f
  for f in "$WORK"/*.err; do
    if [[ -s $f ]]; then cp "$f" "$RAW_DIR/$(basename "$f" .err).stderr.txt" 2>/dev/null || true; fi
  done
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run copies of the binaries: a rebuild during the run must not swap or break the server under test.
PASSERELLE_BUILT=$(date -r "$PASSERELLE_BIN" '+%Y-%m-%d %H:%M:%S %Z')
mkdir -p "$WORK/bin"
cp "$PASSERELLE_BIN" "$WORK/bin/passerelle"
cp "$TRIVIAL_BIN" "$WORK/bin/passerelle_bench_trivial"
PASSERELLE_BIN=$WORK/bin/passerelle
TRIVIAL_BIN=$WORK/bin/passerelle_bench_trivial

# start_server NAME COMMAND...: starts COMMAND in the background and waits for its
# "...http=127.0.0.1:PORT" line. Sets SERVER_PID and SERVER_PORT.
start_server() {
  local name=$1
  shift
  "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  SERVER_PID=$!
  SERVER_PIDS+=("$SERVER_PID")
  SERVER_PORT=""
  for _ in $(seq 300); do
    SERVER_PORT=$(grep -oE 'http=127\.0\.0\.1:[0-9]+' "$WORK/$name.out" 2>/dev/null | head -1 | cut -d: -f2) || true
    [[ -n $SERVER_PORT ]] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      tail -n 20 "$WORK/$name.err" >&2 || true
      die "$name exited before listening"
    fi
    sleep 0.1
  done
  [[ -n $SERVER_PORT ]] || die "$name did not print its listening line within 30 s"
  log "$name listening on 127.0.0.1:$SERVER_PORT (pid $SERVER_PID)"
}

stop_server() {
  local name=$1 rc=0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 200); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    log "warning: $name still running 20 s after SIGTERM, killing it"
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || rc=$?
  ((rc == 0)) || log "warning: $name exited with status $rc (its stderr is kept in $RAW_DIR)"
}

# Dies if the server under test is gone (crashed, or killed by someone else).
check_alive() {
  local name=$1 what=$2
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    local rc=0
    wait "$SERVER_PID" 2>/dev/null || rc=$?
    tail -n 20 "$WORK/$name.err" >&2 || true
    die "$name (pid $SERVER_PID) is gone after $what, exit status $rc"
  fi
}

# --- measuring --------------------------------------------------------------------------------
ROWS=()           # server|scenario|connections|rps|p50_us|p99_us|non2xx|socket_errors
CPU_ROWS=()       # server|scenario|server_cores|wrk_cores|other_cores|peak_rss_mb
declare -A RESULT # [server/scenario/field] = value
CLK_TCK=$(getconf CLK_TCK)

# CPU accounting over the measured seconds, to show who used the CPUs: the server, wrk, or
# something else on the machine (which makes the numbers of that scenario suspect).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $9; exit }' /proc/stat; } # user nice system steal
pid_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }           # utime + stime
# CPU seconds of this shell's waited-for children (wrk, mostly). `times` must run in this shell, not in
# a $(...) subshell, whose counters start at zero: hence the file and the global.
CHILDREN_SECONDS=0
read_children_seconds() {
  times >"$WORK/times.txt"
  CHILDREN_SECONDS=$(tail -1 "$WORK/times.txt" | awk '{ gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4 }')
}
now_seconds() { date +%s.%N; }

LAST_OTHERS=0
measure_once() {
  local server=$1 scenario=$2 conns=$3 ids=${4:-}
  local url="http://127.0.0.1:$SERVER_PORT" script="$BENCH_DIR/wrk/$scenario.lua"
  local raw="$RAW_DIR/$server-$scenario.txt"
  local -a env_args=(BENCH_THREADS="$WRK_THREADS" BENCH_IDS_FILE="$ids" PASSERELLE_TOKEN="$SERVER_TOKEN")
  if ((BENCH_WARMUP > 0)); then
    log "$server $scenario: ${BENCH_WARMUP}s warm-up"
    env "${env_args[@]}" wrk -t"$WRK_THREADS" -c"$conns" -d"${BENCH_WARMUP}s" --timeout 10s -s "$script" "$url" \
      >"$RAW_DIR/$server-$scenario.warmup.txt" 2>&1 || die "wrk failed (warm-up of $server $scenario)"
    check_alive "$server" "the $scenario warm-up"
  fi
  log "$server $scenario: ${BENCH_SECONDS}s, $WRK_THREADS threads, $conns connections"
  local t0 busy0 server0 children0 t1 busy1 server1 children1
  read_children_seconds
  children0=$CHILDREN_SECONDS t0=$(now_seconds) busy0=$(busy_ticks) server0=$(pid_ticks "$SERVER_PID")
  env "${env_args[@]}" wrk -t"$WRK_THREADS" -c"$conns" -d"${BENCH_SECONDS}s" --timeout 10s --latency -s "$script" "$url" \
    >"$raw" 2>&1 || die "wrk failed ($server $scenario), see $raw"
  check_alive "$server" "the $scenario run"
  t1=$(now_seconds) busy1=$(busy_ticks) server1=$(pid_ticks "$SERVER_PID")
  read_children_seconds
  children1=$CHILDREN_SECONDS
  local cpu
  cpu=$(awk -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v hz="$CLK_TCK" \
    -v busy=$((busy1 - busy0)) -v srv=$((server1 - server0)) -v kids="$children0 $children1" 'BEGIN {
      split(kids, k, " "); s = srv / hz / t; w = (k[2] - k[1]) / t; o = busy / hz / t - s - w
      if (o < 0) o = 0
      printf "%.2f|%.2f|%.2f", s, w, o }')
  local rss_mb
  rss_mb=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status")
  CPU_ROWS+=("$server|$scenario|$cpu|$rss_mb")
  local line
  line=$(grep '^BENCH_RESULT ' "$raw" | tail -1) || die "no BENCH_RESULT line in $raw"
  # shellcheck disable=SC2034 # requests and duration_us are set by printf -v but not reported
  local requests="" duration_us="" rps="" p50_us="" p99_us="" non2xx="" socket_errors="" kv
  for kv in ${line#BENCH_RESULT }; do
    case ${kv%%=*} in
      requests | duration_us | rps | p50_us | p99_us | non2xx | socket_errors) printf -v "${kv%%=*}" '%s' "${kv#*=}" ;;
    esac
  done
  ROWS+=("$server|$scenario|$conns|$rps|$p50_us|$p99_us|$non2xx|$socket_errors")
  RESULT[$server/$scenario/rps]=$rps
  RESULT[$server/$scenario/p50]=$p50_us
  RESULT[$server/$scenario/p99]=$p99_us
  LAST_OTHERS=${cpu##*|}
  log "$server $scenario: $rps req/s, p50 ${p50_us} us, p99 ${p99_us} us, non-2xx $non2xx, socket errors $socket_errors," \
    "CPU cores used by server|wrk|others: $cpu"
}

seed() {
  local server=$1 ids=$WORK/$1-ids.txt
  log "$server: creating $BENCH_SEED Patients"
  PASSERELLE_TOKEN="$SERVER_TOKEN" "$PEER_NODE" "$BENCH_DIR/seed_patients.mjs" "http://127.0.0.1:$SERVER_PORT/fhir" "$BENCH_SEED" "$ids" 8 ||
    { check_alive "$server" seeding; die "seeding $server failed"; }
  [[ $(wc -l <"$ids") -eq $BENCH_SEED ]] || die "seeding $server wrote $(wc -l <"$ids") ids"
}

# PASSERELLE_* variables of the caller's environment would override the gateway's defaults.
mapfile -t passerelle_env < <(env | grep -oE '^PASSERELLE_[A-Z0-9_]+' | sed 's/^/-u/' || true)
DATA_DIRS=0

launch() {
  SERVER_TOKEN=""
  case $1 in
    passerelle)
      DATA_DIRS=$((DATA_DIRS + 1))
      rm -rf "$WORK/passerelle-data-$((DATA_DIRS - 1))"
      mkdir -p "$WORK/passerelle-data-$DATA_DIRS"
      start_server passerelle env "${passerelle_env[@]}" "$PASSERELLE_BIN" serve --config /dev/null \
        --set http.port=0 --set https.enabled=false --set "data.dir=$WORK/passerelle-data-$DATA_DIRS" \
        --set log.level=warn
      SERVER_TOKEN=$(bench_token "$PASSERELLE_BIN" "$WORK/passerelle-data-$DATA_DIRS") || die "could not mint a token"
      ;;
    medplum) start_server medplum "$PEER_NODE" "${PEER_NODE_FLAGS[@]}" "$BENCH_DIR/peer/server.mjs" 0 ;;
    trivial) start_server trivial "$TRIVIAL_BIN" 0 ;;
  esac
}

# scenario SERVER SCENARIO CONNECTIONS: on an idle machine, starts a fresh server (empty store),
# creates the seed Patients (not on the trivial server), runs the scenario, stops the server. Every
# scenario of every server thus starts from the same state, and what one scenario leaves behind
# (100k created Patients in a node heap, say) does not weigh on the next one. If other processes
# took more than 0.15 CPU core during the measurement, it is all done again (BENCH_RETRIES times).
scenario() {
  local server=$1 scenario=$2 conns=$3 attempt ids
  for ((attempt = 0; ; attempt++)); do
    wait_for_quiet
    launch "$server"
    if [[ $server == trivial ]]; then
      ids=$WORK/trivial-ids.txt
      for i in $(seq 1000); do echo "trivial-$i"; done >"$ids"
    else
      seed "$server"
      ids=$WORK/$server-ids.txt
    fi
    measure_once "$server" "$scenario" "$conns" "$ids"
    stop_server "$server"
    if [[ -s $WORK/$server.err ]]; then cp "$WORK/$server.err" "$RAW_DIR/$server-$scenario.stderr.txt"; fi
    awk -v o="$LAST_OTHERS" 'BEGIN { exit !(o > 0.15) }' || return 0
    if ((attempt >= BENCH_RETRIES)); then
      log "warning: other processes used $LAST_OTHERS CPU cores during $server $scenario; keeping these numbers"
      return 0
    fi
    log "other processes used $LAST_OTHERS CPU cores during $server $scenario: measuring it again"
    unset 'ROWS[-1]' 'CPU_ROWS[-1]'
  done
}

read_loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Between servers nothing of ours runs, so any busy CPU belongs to someone else: wait (at most
# BENCH_QUIET_WAIT seconds) until the machine is idle, so that a compile does not skew the numbers.
wait_for_quiet() {
  local waited=0 b0 b1 used
  while :; do
    b0=$(busy_ticks)
    sleep 1
    b1=$(busy_ticks)
    used=$(awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    awk -v u="$used" 'BEGIN { exit !(u < 0.10) }' && return 0
    if ((waited >= BENCH_QUIET_WAIT)); then
      log "warning: the machine is still busy ($used cores used by others), measuring anyway"
      return 0
    fi
    ((waited % 10 == 0)) && log "waiting for the machine to go idle ($used cores in use by other processes)"
    waited=$((waited + 1))
  done
}
LOAD_BEFORE=$(read_loadavg)

for server in passerelle medplum; do
  scenario "$server" read "$CONNS"
  scenario "$server" create "$CONNS"
  scenario "$server" update "$CONNS"
  scenario "$server" transaction "$TX_CONNS"
done
# The trivial Poco handler answers the same Patient whatever the id: read only.
scenario trivial read "$CONNS"

# --- report -----------------------------------------------------------------------------------
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') || true
[[ -n $cpu_model ]] || cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
medplum_version=$("$PEER_NODE" -p "require('$BENCH_DIR/peer/node_modules/@medplum/fhir-router/package.json').version")
medplum_core_version=$("$PEER_NODE" -p "require('$BENCH_DIR/peer/node_modules/@medplum/core/package.json').version")
git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then git_rev="$git_rev + uncommitted changes"; fi
total_socket_errors=0
for row in "${ROWS[@]}"; do total_socket_errors=$((total_socket_errors + ${row##*|})); done

REPORT=$OUT_DIR/results-$STAMP.md
{
  echo "# Passerelle FHIR REST benchmark, $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| passerelle | $("$PASSERELLE_BIN" --version 2>/dev/null | head -1), binary built $PASSERELLE_BUILT; repository at $git_rev |"
  echo "| CPUs (nproc) | $(nproc) |"
  echo "| CPU model | $cpu_model |"
  echo "| kernel | $(uname -srm) |"
  echo "| node (peer) | $("$PEER_NODE" --version)${PEER_NODE_FLAGS:+ ${PEER_NODE_FLAGS[*]}} |"
  echo "| wrk | $(wrk -v 2>&1 | head -1 | sed 's/ Copyright.*//') |"
  echo "| medplum | @medplum/fhir-router $medplum_version, @medplum/core $medplum_core_version (MemoryRepository) |"
  echo "| wrk settings | $WRK_THREADS threads; ${BENCH_SECONDS}s measured after ${BENCH_WARMUP}s warm-up per scenario; timeout 10s |"
  echo "| state | every scenario on a freshly started server holding $BENCH_SEED seeded Patients (read and update use them) |"
  echo "| passerelle access | access control and audit on (the default), every request with a system token (role system, scope system/*.cruds) |"
  echo "| load average before the run (1/5/15 min) | $LOAD_BEFORE |"
  echo
  echo "| server | scenario | connections | req/s | p50 | p99 | non-2xx |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  for row in "${ROWS[@]}"; do
    IFS='|' read -r server scenario conns rps p50 p99 non2xx _ <<<"$row"
    echo "| $server | $scenario | $conns | $(printf '%.0f' "$rps") | $(ms "$p50") | $(ms "$p99") | $non2xx |"
  done
  if ((total_socket_errors > 0)); then
    echo
    echo "Socket errors (connect/read/write/timeout) reported by wrk:"
    for row in "${ROWS[@]}"; do
      IFS='|' read -r server scenario _ _ _ _ _ sock <<<"$row"
      if ((sock > 0)); then echo "- $server $scenario: $sock"; fi
    done
  fi
  echo
  echo "CPU cores in use during the measured seconds (out of $(nproc); \"others\" should stay near 0)"
  echo "and the server's peak resident memory"
  echo
  echo "| server | scenario | server CPU | wrk CPU | others CPU | server peak RSS |"
  echo "|---|---|---:|---:|---:|---:|"
  for row in "${CPU_ROWS[@]}"; do
    IFS='|' read -r server scenario srv wrk_cores other rss <<<"$row"
    echo "| $server | $scenario | $srv | $wrk_cores | $other | $rss MB |"
  done
  echo
  echo "Ratios (req/s: above 1 means Passerelle is faster; latency: below 1 means Passerelle is faster)"
  echo
  echo "| comparison | req/s | p50 | p99 |"
  echo "|---|---:|---:|---:|"
  for scenario in read create update transaction; do
    echo "| passerelle / medplum, $scenario |" \
      "$(ratio "${RESULT[passerelle/$scenario/rps]}" "${RESULT[medplum/$scenario/rps]}") |" \
      "$(ratio "${RESULT[passerelle/$scenario/p50]}" "${RESULT[medplum/$scenario/p50]}") |" \
      "$(ratio "${RESULT[passerelle/$scenario/p99]}" "${RESULT[medplum/$scenario/p99]}") |"
  done
  echo "| passerelle read / trivial read |" \
    "$(ratio "${RESULT[passerelle/read/rps]}" "${RESULT[trivial/read/rps]}") |" \
    "$(ratio "${RESULT[passerelle/read/p50]}" "${RESULT[trivial/read/p50]}") |" \
    "$(ratio "${RESULT[passerelle/read/p99]}" "${RESULT[trivial/read/p99]}") |"
  echo
  echo "Raw wrk outputs: bench/out/raw-$STAMP/"
} | tee "$REPORT"
log "report written to $REPORT"
