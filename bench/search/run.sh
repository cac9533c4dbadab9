#!/usr/bin/env bash
# Search benchmark at scale: one gateway database grown in stages, search latencies measured at each.
#
# Starts a fresh gateway (a copy of PASSERELLE_BIN, plain HTTP on a free port, a new data folder under
# /tmp), writes 100,000 Patients, then for each stage of SEARCH_STAGES adds Observations up to that
# count (dataset.py: deterministic, seeded) and measures the searches of measure.py against a read
# by id measured in the same rounds. Builds nothing.
#
# At each stage the searches are measured twice:
#   shipped   the database as the gateway leaves it (no planner statistics)
#   analyzed  after `ANALYZE` run on the database with the sqlite3 CLI while the gateway is stopped
#             (SEARCH_ANALYZE=1, the default); the statistics are dropped again before the next
#             stage's load, so that every "shipped" measurement has none.
# A search slower than SEARCH_TIMEOUT seconds is recorded as timed out and no longer measured in that
# variant, at that stage or later ones (the gateway is restarted: it finishes a search even after the
# client has gone).
#
# Writes bench/out/search-<date>.json (everything measured) and bench/out/search-<date>.md (the
# tables), both rewritten after every stage; prints the tables at the end. Progress goes to stderr.
#
# Environment (defaults in brackets):
#   SEARCH_STAGES        Observation counts of the stages [10000,100000,500000,2000000]
#   SEARCH_PATIENTS      Patients, all written before the first stage [100000]
#   SEARCH_SEED          dataset seed [1]
#   SEARCH_BUNDLE        entries per transaction Bundle when loading [100]
#   SEARCH_LOAD_CLIENTS  loader processes, one connection each [2]
#   SEARCH_SAMPLES       measured requests per search kind [400]
#   SEARCH_SECONDS       most seconds spent measuring one search kind [15]
#   SEARCH_WARMUP        unmeasured requests per kind first [20]
#   SEARCH_PAGE_TARGET   resources paged through by q3 [100000]
#   SEARCH_PASSES        q3 passes [2]
#   SEARCH_CLIENTS       concurrent clients for the read, q1 and q2 runs (0: none) [4]
#   SEARCH_CONCURRENT_SECONDS  seconds of each concurrent run [10]
#   SEARCH_TIMEOUT       seconds after which a search counts as timed out [10]
#   SEARCH_ANALYZE       1: also measure with planner statistics (needs the sqlite3 CLI) [1]
#   SEARCH_BUNDLE_AB     after the last stage, Bundle sizes whose load rates are compared on the full
#                        database, alternating, two rounds ("": skip) [100,1000]
#   SEARCH_BUNDLE_AB_COUNT  Observations written per size and round [20000]
#   SEARCH_QUIET_WAIT    seconds to wait, before each measurement, for the CPUs to go idle [60]
#   SEARCH_KEEP=1        keep the temporary folder (database, gateway log)
#   PASSERELLE_BIN       gateway binary [build/bin/passerelle]
set -euo pipefail

SEARCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(dirname "$SEARCH_DIR")
ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
PASSERELLE_BIN=${PASSERELLE_BIN:-$ROOT/build/bin/passerelle}
SEARCH_STAGES=${SEARCH_STAGES:-10000,100000,500000,2000000}
SEARCH_PATIENTS=${SEARCH_PATIENTS:-100000}
SEARCH_SEED=${SEARCH_SEED:-1}
SEARCH_BUNDLE=${SEARCH_BUNDLE:-100}
SEARCH_LOAD_CLIENTS=${SEARCH_LOAD_CLIENTS:-2}
SEARCH_SAMPLES=${SEARCH_SAMPLES:-400}
SEARCH_SECONDS=${SEARCH_SECONDS:-15}
SEARCH_WARMUP=${SEARCH_WARMUP:-20}
SEARCH_PAGE_TARGET=${SEARCH_PAGE_TARGET:-100000}
SEARCH_PASSES=${SEARCH_PASSES:-2}
SEARCH_CLIENTS=${SEARCH_CLIENTS:-4}
SEARCH_CONCURRENT_SECONDS=${SEARCH_CONCURRENT_SECONDS:-10}
SEARCH_TIMEOUT=${SEARCH_TIMEOUT:-10}
SEARCH_ANALYZE=${SEARCH_ANALYZE:-1}
SEARCH_QUIET_WAIT=${SEARCH_QUIET_WAIT:-60}
SEARCH_BUNDLE_AB=${SEARCH_BUNDLE_AB-100,1000}
SEARCH_BUNDLE_AB_COUNT=${SEARCH_BUNDLE_AB_COUNT:-20000}
PYTHON=${PYTHON:-python3}

log() { printf '[search %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- pre-flight -------------------------------------------------------------------------------
[[ -x $PASSERELLE_BIN ]] || die "no gateway binary at $PASSERELLE_BIN (cmake --build build)"
command -v "$PYTHON" >/dev/null || die "python3 not found"
if [[ $SEARCH_ANALYZE == 1 ]]; then command -v sqlite3 >/dev/null || die "sqlite3 CLI not found (or SEARCH_ANALYZE=0)"; fi
[[ -z $SEARCH_BUNDLE_AB || $SEARCH_BUNDLE_AB =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] ||
  die "SEARCH_BUNDLE_AB must be empty or a comma-separated list of sizes"
[[ $SEARCH_STAGES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "SEARCH_STAGES must be a comma-separated list of counts"
IFS=, read -r -a STAGES <<<"$SEARCH_STAGES"
prev=0
for s in "${STAGES[@]}"; do ((s > prev)) || die "SEARCH_STAGES must increase"; prev=$s; done
for v in SEARCH_PATIENTS SEARCH_SEED SEARCH_BUNDLE SEARCH_LOAD_CLIENTS SEARCH_SAMPLES SEARCH_WARMUP \
  SEARCH_PAGE_TARGET SEARCH_PASSES SEARCH_CLIENTS SEARCH_QUIET_WAIT SEARCH_BUNDLE_AB_COUNT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer"
done
((SEARCH_PATIENTS > 0 && SEARCH_PATIENTS <= 999999)) || die "SEARCH_PATIENTS must be 1..999999 (6-digit ids)"
((prev <= 9999999)) || die "stages beyond 9,999,999 Observations do not fit the 7-digit ids"

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=$BENCH_DIR/out
mkdir -p "$OUT_DIR"
OUT_JSON=$OUT_DIR/search-$STAMP.json
OUT_MD=$OUT_DIR/search-$STAMP.md
WORK=$(mktemp -d /tmp/passerelle-search.XXXXXX)
DATA=$WORK/data
mkdir -p "$DATA"

SERVER_PID=""
SERVER_PORT=""
CHILD_PID=""

# Runs a command in the background and waits for it, so that a signal to this script is handled
# at once (bash runs traps only between foreground commands) and cleanup can stop it.
run_child() {
  "$@" &
  CHILD_PID=$!
  local rc=0
  wait "$CHILD_PID" || rc=$?
  CHILD_PID=""
  return $rc
}

kill_child() {
  [[ -n $CHILD_PID ]] || return 0
  local kids
  kids=$(ps -o pid= --ppid "$CHILD_PID" 2>/dev/null || true) # the loader's and driver's worker processes
  kill -TERM "$CHILD_PID" $kids 2>/dev/null || true
  wait "$CHILD_PID" 2>/dev/null || true
  CHILD_PID=""
}

kill_server() {
  [[ -n $SERVER_PID ]] || return 0
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    # SIGTERM lets in-flight requests finish, and a search runs to its end: do not wait for that.
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

cleanup() {
  local rc=$?
  kill_child
  kill_server
  if [[ ${SEARCH_KEEP:-0} == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A copy of the binary: a rebuild during the run must not swap the server under test.
PASSERELLE_BUILT=$(date -r "$PASSERELLE_BIN" '+%Y-%m-%d %H:%M:%S %Z')
mkdir -p "$WORK/bin"
cp "$PASSERELLE_BIN" "$WORK/bin/passerelle"
BIN=$WORK/bin/passerelle
# PASSERELLE_* variables of the caller's environment would override the gateway's defaults.
mapfile -t passerelle_env < <(env | grep -oE '^PASSERELLE_[A-Z0-9_]+' | sed 's/^/-u/' || true)

TOKEN_MINTED=""
start_server() {
  env "${passerelle_env[@]}" "$BIN" serve --config /dev/null --set http.port=0 --set https.enabled=false \
    --set "data.dir=$DATA" --set log.level=warn >>"$WORK/server.out" 2>>"$WORK/server.err" &
  SERVER_PID=$!
  SERVER_PORT=""
  local lines
  lines=$(wc -l <"$WORK/server.out")
  for _ in $(seq 1200); do
    SERVER_PORT=$(tail -n +"$((lines + 1))" "$WORK/server.out" | grep -oE 'http=127\.0\.0\.1:[0-9]+' |
      head -1 | cut -d: -f2) || true
    [[ -n $SERVER_PORT ]] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      tail -n 20 "$WORK/server.err" >&2 || true
      die "the gateway exited before listening"
    fi
    sleep 0.1
  done
  [[ -n $SERVER_PORT ]] || die "the gateway did not print its listening line within 120 s"
  BASE=http://127.0.0.1:$SERVER_PORT/fhir
  # load.py and measure.py send it (access control and audit are on, as shipped); same data folder,
  # same development key: a token minted at any start holds for the whole run.
  if [[ -z $TOKEN_MINTED ]]; then
    PASSERELLE_TOKEN=$(bench_token "$BIN" "$DATA") || die "could not mint a token"
    export PASSERELLE_TOKEN
    TOKEN_MINTED=1
  fi
  log "gateway listening on 127.0.0.1:$SERVER_PORT (pid $SERVER_PID)"
}

check_alive() {
  kill -0 "$SERVER_PID" 2>/dev/null && return 0
  tail -n 20 "$WORK/server.err" >&2 || true
  die "the gateway (pid $SERVER_PID) is gone after $1"
}

CLK_TCK=$(getconf CLK_TCK)
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $9; exit }' /proc/stat; } # user nice system steal
# Waits (at most SEARCH_QUIET_WAIT seconds) until less than 0.15 core is busy: the gateway's own
# background work after a load (WAL checkpoints) and other people's compiles alike.
wait_for_quiet() {
  local waited=0 b0 b1 used
  while :; do
    b0=$(busy_ticks)
    sleep 1
    b1=$(busy_ticks)
    used=$(awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    awk -v u="$used" 'BEGIN { exit !(u < 0.15) }' && { QUIET="idle after ${waited}s"; return 0; }
    if ((waited >= SEARCH_QUIET_WAIT)); then
      QUIET="still $used cores busy after ${waited}s"
      log "warning: the machine is still busy ($used cores), measuring anyway"
      return 0
    fi
    ((waited % 15 == 0)) && log "waiting for the CPUs to go idle ($used cores busy)"
    waited=$((waited + 1))
  done
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
file_bytes() { if [[ -f $1 ]]; then stat -c %s "$1"; else echo 0; fi; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0; }

# measure VARIANT STAGE_DIR OBSERVATIONS: measure.py until it completes, restarting the gateway and
# skipping the search kind each time one times out. SKIP_<variant> carries over to later stages.
measure_variant() {
  local variant=$1 dir=$2 n=$3 rc skipvar="SKIP_$1" restarts=0
  while :; do
    wait_for_quiet
    log "stage $n, $variant: measuring (skipping: ${!skipvar:-none})"
    rc=0
    run_child "$PYTHON" "$SEARCH_DIR/measure.py" --base "$BASE" --observations "$n" --patients "$SEARCH_PATIENTS" \
      --seed "$SEARCH_SEED" --samples "$SEARCH_SAMPLES" --seconds "$SEARCH_SECONDS" --warmup "$SEARCH_WARMUP" \
      --page-target "$SEARCH_PAGE_TARGET" --passes "$SEARCH_PASSES" --clients "$SEARCH_CLIENTS" \
      --concurrent-seconds "$SEARCH_CONCURRENT_SECONDS" --timeout "$SEARCH_TIMEOUT" --skip "${!skipvar}" \
      --server-pid "$SERVER_PID" >"$dir/$variant.json.tmp" || rc=$?
    if ((rc == 3)); then
      local name
      name=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["timed_out"])' "$dir/$variant.json.tmp")
      log "stage $n, $variant: $name took more than ${SEARCH_TIMEOUT}s; restarting the gateway without it"
      printf -v "$skipvar" '%s' "${!skipvar:+${!skipvar},}$name"
      echo "$name" >>"$dir/$variant.timeouts"
      restarts=$((restarts + 1))
      kill_server
      start_server
      continue
    fi
    ((rc == 0)) || { check_alive "measuring"; die "measure.py failed (status $rc)"; }
    mv "$dir/$variant.json.tmp" "$dir/$variant.json"
    printf '{"quiet": "%s", "restarts": %d}\n' "$QUIET" "$restarts" >"$dir/$variant.meta.json"
    return 0
  done
}
SKIP_shipped=""
SKIP_analyzed=""

# load KIND FIRST LAST OUT [BUNDLE]
load() {
  local kind=$1 first=$2 last=$3 out=$4 bundle=${5:-$SEARCH_BUNDLE}
  log "loading ${kind}s $first..$last (Bundles of $bundle, $SEARCH_LOAD_CLIENTS clients)"
  run_child "$PYTHON" "$SEARCH_DIR/load.py" --base "$BASE" --kind "$kind" --first "$first" --last "$last" \
    --bundle "$bundle" --clients "$SEARCH_LOAD_CLIENTS" --seed "$SEARCH_SEED" \
    --patients "$SEARCH_PATIENTS" >"$out" || { check_alive "loading"; die "loading failed: $(cut -c1-600 "$out")"; }
  log "$("$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d %ss in %.1f s: %.0f/s" % (d["resources"], d["kind"], d["seconds"], d["rate"]))' "$out")"
}

report() {
  "$PYTHON" "$SEARCH_DIR/report.py" --work "$WORK" --json "$OUT_JSON" --md "$OUT_MD"
}

# --- run ---------------------------------------------------------------------------------------
{
  printf '{"stamp": "%s", "binary": "%s", "binary_built": "%s", "version": "%s", "commit": "%s",\n' \
    "$STAMP" "$PASSERELLE_BIN" "$PASSERELLE_BUILT" "$("$BIN" version 2>/dev/null | head -1)" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf ' "cpu": "%s", "cores": %d, "memory_kb": %d, "kernel": "%s", "python": "%s", "sqlite_cli": "%s",\n' \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(nproc)" \
    "$(awk '/MemTotal/ { print $2 }' /proc/meminfo)" "$(uname -r)" "$("$PYTHON" -c 'import platform; print(platform.python_version())')" \
    "$(sqlite3 --version 2>/dev/null | cut -d' ' -f1 || echo none)"
  printf ' "settings": {"stages": "%s", "patients": %d, "seed": %d, "bundle": %d, "load_clients": %d, "samples": %d,' \
    "$SEARCH_STAGES" "$SEARCH_PATIENTS" "$SEARCH_SEED" "$SEARCH_BUNDLE" "$SEARCH_LOAD_CLIENTS" "$SEARCH_SAMPLES"
  printf ' "seconds": %s, "warmup": %d, "page_target": %d, "passes": %d, "clients": %d, "concurrent_seconds": %s,' \
    "$SEARCH_SECONDS" "$SEARCH_WARMUP" "$SEARCH_PAGE_TARGET" "$SEARCH_PASSES" "$SEARCH_CLIENTS" "$SEARCH_CONCURRENT_SECONDS"
  printf ' "timeout": %s, "analyze": %d}}\n' "$SEARCH_TIMEOUT" "$SEARCH_ANALYZE"
} >"$WORK/run.json"

RUN_T0=$(date +%s.%N)
start_server
loaded=0
for n in "${STAGES[@]}"; do
  dir=$WORK/stage-$n
  mkdir -p "$dir"
  t0=$(date +%s.%N)
  la0=$(loadavg)
  if ((loaded == 0)); then load Patient 1 "$SEARCH_PATIENTS" "$dir/load-patients.json"; fi
  load Observation $((loaded + 1)) "$n" "$dir/load-observations.json"
  loaded=$n
  t_loaded=$(date +%s.%N)
  db=$(file_bytes "$DATA/passerelle.db") wal=$(file_bytes "$DATA/passerelle.db-wal") rss=$(rss_kb)
  la1=$(loadavg)

  measure_variant shipped "$dir" "$n"
  analyze_s=0
  if [[ $SEARCH_ANALYZE == 1 ]]; then
    kill_server
    a0=$(date +%s.%N)
    run_child sqlite3 "$DATA/passerelle.db" 'ANALYZE;' || die "ANALYZE failed"
    analyze_s=$(awk -v a="$a0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    log "stage $n: ANALYZE took ${analyze_s}s"
    start_server
    measure_variant analyzed "$dir" "$n"
    kill_server
    sqlite3 "$DATA/passerelle.db" 'DROP TABLE IF EXISTS sqlite_stat1; DROP TABLE IF EXISTS sqlite_stat4;' ||
      die "dropping the statistics failed"
    start_server
  fi
  la2=$(loadavg)
  t1=$(date +%s.%N)
  printf '{"observations": %d, "patients": %d, "db_bytes": %d, "wal_bytes": %d, "server_rss_kb": %d,
 "loadavg_before_load": "%s", "loadavg_after_load": "%s", "loadavg_after_measure": "%s",
 "load_wall_seconds": %s, "stage_wall_seconds": %s, "analyze_seconds": %s, "run_seconds": %s}\n' \
    "$n" "$SEARCH_PATIENTS" "$db" "$wal" "$rss" "$la0" "$la1" "$la2" \
    "$(awk -v a="$t0" -v b="$t_loaded" 'BEGIN { printf "%.1f", b - a }')" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" "$analyze_s" \
    "$(awk -v a="$RUN_T0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" >"$dir/stage.json"
  report >/dev/null
  log "stage $n done; results so far in $OUT_MD"
done

# Load rate against Bundle size on the full database, sizes alternating (after every measurement).
if [[ -n $SEARCH_BUNDLE_AB ]]; then
  IFS=, read -r -a AB <<<"$SEARCH_BUNDLE_AB"
  mkdir -p "$WORK/bundle-ab"
  i=0
  for round in 1 2; do
    for b in "${AB[@]}"; do
      wait_for_quiet
      i=$((i + 1))
      load Observation $((loaded + 1)) $((loaded + SEARCH_BUNDLE_AB_COUNT)) "$WORK/bundle-ab/$i.json" "$b"
      loaded=$((loaded + SEARCH_BUNDLE_AB_COUNT))
      printf '{"round": %d, "quiet": "%s", "loadavg": "%s"}\n' "$round" "$QUIET" "$(loadavg)" >"$WORK/bundle-ab/$i.meta.json"
    done
  done
fi
kill_server
report
log "results: $OUT_JSON and $OUT_MD"
