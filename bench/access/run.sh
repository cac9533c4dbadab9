#!/usr/bin/env bash
# The cost of access control and audit on the FHIR read and create benchmarks, measured against a
# baseline in the same run: two gateways on fresh data folders, one as shipped (identity, guard,
# one audit record per request), one with --set access.enabled=false, both seeded alike
# (bench/access/seed.py: ACCESS_PATIENTS Patients, the first ACCESS_GP_PATIENTS of them with an
# EpisodeOfCare managed by one network GP and an active treatment Consent). Then ACCESS_ROUNDS rounds
# of, in turn (the order of "with" and "without" swapped every round):
#   read/with      GET /fhir/Patient/{id} (bench/wrk/read.lua) with a system token (system/*.cruds)
#   read/without   the same on the baseline
#   create/with    POST /fhir/Patient (bench/wrk/create.lua) with the system token
#   create/without the same on the baseline
#   read-gp/with   GET of the GP's own Patients with a GP token (--role gp --practitioner rpps:...):
#                  the care relationship and consent are checked (cached per caller between commits)
# each BENCH_WARMUP s unmeasured then BENCH_SECONDS s of wrk -t2 -c16 --latency. Medians per mode
# and the ratios with/without. Then both gateways are stopped and `passerelle audit verify` checks
# the audited one's trail. Builds nothing; runs from the repository root with
# conf/passerelle.properties (conf/access/policy.json).
#
# Writes a markdown report to stdout and bench/out/access-<date>.md, the wrk outputs to
# bench/out/access-raw-<date>/. Progress goes to stderr.
#
# Environment (defaults in brackets):
#   PASSERELLE_BIN       gateway binary [build-me/bin/passerelle, else build/bin/passerelle]
#   ACCESS_ROUNDS        rounds [5]
#   BENCH_SECONDS        measured seconds per run [10]
#   BENCH_WARMUP         unmeasured seconds before each run [2]
#   ACCESS_PATIENTS      Patients seeded [2000]
#   ACCESS_GP_PATIENTS   of which the GP's [500]
#   ACCESS_GP            the GP's RPPS number [10101234567]
#   ACCESS_CARE_MANAGER  what EpisodeOfCare.careManager references: Practitioner or PractitionerRole
#                        [Practitioner: the R4 search parameter care-manager, which the relationship
#                        uses, targets Practitioner only]
#   ACCESS_QUIET_WAIT    seconds to wait, before each run, for other processes to leave the CPUs [30]
#   ACCESS_KEEP=1        keep the temporary folder (databases, audit trail, server logs)
set -euo pipefail

ACCESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(dirname "$ACCESS_DIR")
ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
if [[ -z ${PASSERELLE_BIN:-} ]]; then
  PASSERELLE_BIN=$ROOT/build-me/bin/passerelle
  [[ -x $PASSERELLE_BIN ]] || PASSERELLE_BIN=$ROOT/build/bin/passerelle
fi
ACCESS_ROUNDS=${ACCESS_ROUNDS:-5}
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-2}
ACCESS_PATIENTS=${ACCESS_PATIENTS:-2000}
ACCESS_GP_PATIENTS=${ACCESS_GP_PATIENTS:-500}
ACCESS_GP=${ACCESS_GP:-10101234567}
ACCESS_CARE_MANAGER=${ACCESS_CARE_MANAGER:-Practitioner}
ACCESS_QUIET_WAIT=${ACCESS_QUIET_WAIT:-30}
WRK_THREADS=2
CONNS=16
CONFIG=conf/passerelle.properties

log() { printf '[access-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v python3 >/dev/null || die "python3 not found"
[[ -x $PASSERELLE_BIN ]] || die "no gateway binary at $PASSERELLE_BIN"
for v in ACCESS_ROUNDS BENCH_SECONDS ACCESS_PATIENTS ACCESS_GP_PATIENTS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
[[ $BENCH_WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a non-negative integer"
((ACCESS_GP_PATIENTS <= ACCESS_PATIENTS)) || die "ACCESS_GP_PATIENTS must not exceed ACCESS_PATIENTS"
cd "$ROOT" # conf/passerelle.properties names its files relative to the repository

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=$BENCH_DIR/out
RAW_DIR=$OUT_DIR/access-raw-$STAMP
mkdir -p "$RAW_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/passerelle-access-bench.XXXXXX")

declare -A PID=() PORT=()
cleanup() {
  local name pid
  for name in "${!PID[@]}"; do
    pid=${PID[$name]}
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  cp "$WORK"/*.err "$RAW_DIR/" 2>/dev/null || true
  if [[ ${ACCESS_KEEP:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A copy of the binary: a rebuild during the run must not swap the server under test.
BIN_BUILT=$(date -r "$PASSERELLE_BIN" '+%Y-%m-%d %H:%M:%S %Z')
BIN_SHA=$(sha256sum "$PASSERELLE_BIN" | cut -c1-12)
cp "$PASSERELLE_BIN" "$WORK/passerelle"
BIN=$WORK/passerelle

mapfile -t passerelle_env < <(env | grep -oE '^PASSERELLE_[A-Z0-9_]+' | sed 's/^/-u/' || true)
# start_server NAME [--set ...]: a gateway on a free port, plain HTTP, fresh data folder WORK/NAME.
start_server() {
  local name=$1 port=""
  shift
  mkdir -p "$WORK/$name"
  env "${passerelle_env[@]}" "$BIN" serve --config "$CONFIG" --set http.port=0 --set https.enabled=false \
    --set "data.dir=$WORK/$name" --set log.level=warn "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PID[$name]=$!
  for _ in $(seq 300); do
    port=$(grep -oE 'http=127\.0\.0\.1:[0-9]+' "$WORK/$name.out" 2>/dev/null | head -1 | cut -d: -f2) || true
    [[ -n $port ]] && break
    kill -0 "${PID[$name]}" 2>/dev/null || { tail -n 20 "$WORK/$name.err" >&2; die "$name exited before listening"; }
    sleep 0.1
  done
  [[ -n $port ]] || die "$name did not print its listening line within 30 s"
  PORT[$name]=$port
  log "$name listening on 127.0.0.1:$port (pid ${PID[$name]})"
}
stop_server() {
  local name=$1 pid=${PID[$1]} rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "warning: $name still running 30 s after SIGTERM, killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  ((rc == 0)) || log "warning: $name exited with status $rc"
  unset "PID[$name]"
}
check_alive() {
  kill -0 "${PID[$1]}" 2>/dev/null && return 0
  tail -n 20 "$WORK/$1.err" >&2 || true
  die "$1 (pid ${PID[$1]}) is gone after $2"
}

CLK_TCK=$(getconf CLK_TCK)
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $9; exit }' /proc/stat; } # user nice system steal
pid_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }           # utime + stime
CHILDREN_SECONDS=0
read_children_seconds() { # CPU seconds of this shell's waited-for children (wrk); not in a subshell
  times >"$WORK/times.txt"
  CHILDREN_SECONDS=$(tail -1 "$WORK/times.txt" | awk '{ gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4 }')
}
# Waits (at most ACCESS_QUIET_WAIT s) until less than 0.15 core is busy: both gateways idle, so any
# busy CPU is someone else's (a compile).
QUIET_NOTE=""
wait_for_quiet() {
  local waited=0 b0 b1 used
  while :; do
    b0=$(busy_ticks); sleep 1; b1=$(busy_ticks)
    used=$(awk -v d=$((b1 - b0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", d / hz }')
    awk -v u="$used" 'BEGIN { exit !(u < 0.15) }' && return 0
    if ((waited >= ACCESS_QUIET_WAIT)); then
      log "warning: the machine is still busy ($used cores used by others), measuring anyway"
      QUIET_NOTE="some runs started while other processes used the CPUs (see the others column)"
      return 0
    fi
    ((waited % 10 == 0)) && log "waiting for the machine to go idle ($used cores in use by other processes)"
    waited=$((waited + 1))
  done
}
field() { grep '^BENCH_RESULT ' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# --- servers, tokens, data ------------------------------------------------------------------------
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
start_server with
start_server without --set access.enabled=false
SYSTEM_TOKEN=$(bench_token "$BIN" "$WORK/with" "$CONFIG") || die "could not mint the system token"
GP_TOKEN=$(bench_token "$BIN" "$WORK/with" "$CONFIG" --role gp --practitioner "rpps:$ACCESS_GP") ||
  die "could not mint the GP token"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[with]}/fhir/Patient?_count=1")
[[ $code == 401 ]] || die "the audited gateway answered $code without a token (401 expected)"

for name in with without; do
  token=""
  [[ $name == with ]] && token=$SYSTEM_TOKEN
  log "$name: seeding $ACCESS_PATIENTS Patients ($ACCESS_GP_PATIENTS of them the GP's)"
  PASSERELLE_TOKEN=$token python3 "$ACCESS_DIR/seed.py" --base "http://127.0.0.1:${PORT[$name]}" \
    --patients "$ACCESS_PATIENTS" --gp-patients "$ACCESS_GP_PATIENTS" --gp-rpps "$ACCESS_GP" \
    --care-manager "$ACCESS_CARE_MANAGER" --out "$WORK/ids-$name" || die "seeding $name failed"
done

# The guard is really at work: the GP reads its own patient, not another one.
gp_get() {
  curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $GP_TOKEN" \
    "http://127.0.0.1:${PORT[with]}/fhir/Patient/$1"
}
own=$(gp_get "$(head -1 "$WORK/ids-with/gp-ids.txt")")
other=$(gp_get "$(tail -1 "$WORK/ids-with/all-ids.txt")")
GP_CHECK="the GP's own Patient: $own; another Patient: $other"
log "GP token: $GP_CHECK"
GP_ROUNDS=1
if [[ $own != 200 ]]; then
  log "warning: the GP cannot read its own Patient (HTTP $own): no read-gp runs"
  GP_ROUNDS=0
elif ((ACCESS_GP_PATIENTS == ACCESS_PATIENTS)); then
  :
elif [[ $other == 200 ]]; then
  die "the GP reads a Patient it has no relationship with"
fi

# --- measuring ------------------------------------------------------------------------------------
ROWS=() # round|mode|server|rps|p50_us|p99_us|non2xx|socket_errors|server_cores|wrk_cores|other_cores
run() { # ROUND SCENARIO SERVER TOKEN IDS_FILE MODE
  local round=$1 scenario=$2 server=$3 token=$4 ids=$5 mode=$6
  local url="http://127.0.0.1:${PORT[$server]}" script="$BENCH_DIR/wrk/$scenario.lua"
  local tag=${mode//\//-}
  local raw="$RAW_DIR/$tag-$round.txt"
  local -a envs=(BENCH_THREADS="$WRK_THREADS" BENCH_IDS_FILE="$ids" PASSERELLE_TOKEN="$token")
  wait_for_quiet
  if ((BENCH_WARMUP > 0)); then
    env "${envs[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${BENCH_WARMUP}s" --timeout 10s -s "$script" "$url" \
      >"$RAW_DIR/$tag-$round.warmup.txt" 2>&1 || die "wrk failed (warm-up of $mode)"
  fi
  local t0 t1 b0 b1 s0 s1 c0 c1
  read_children_seconds; c0=$CHILDREN_SECONDS
  t0=$(date +%s.%N) b0=$(busy_ticks) s0=$(pid_ticks "${PID[$server]}")
  env "${envs[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${BENCH_SECONDS}s" --timeout 10s --latency -s "$script" "$url" \
    >"$raw" 2>&1 || die "wrk failed ($mode, round $round), see $raw"
  check_alive "$server" "$mode, round $round"
  t1=$(date +%s.%N) b1=$(busy_ticks) s1=$(pid_ticks "${PID[$server]}")
  read_children_seconds; c1=$CHILDREN_SECONDS
  local cpu
  cpu=$(awk -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v hz="$CLK_TCK" -v busy=$((b1 - b0)) \
    -v srv=$((s1 - s0)) -v k0="$c0" -v k1="$c1" 'BEGIN {
      s = srv / hz / t; w = (k1 - k0) / t; o = busy / hz / t - s - w; if (o < 0) o = 0
      printf "%.2f|%.2f|%.2f", s, w, o }')
  local rps p50 p99 non2xx sock
  rps=$(field "$raw" rps) p50=$(field "$raw" p50_us) p99=$(field "$raw" p99_us)
  non2xx=$(field "$raw" non2xx) sock=$(field "$raw" socket_errors)
  [[ -n $rps ]] || die "no BENCH_RESULT line in $raw"
  ((non2xx == 0)) || { grep -A3 'non-2xx responses' "$raw" >&2 || true; die "$mode, round $round: $non2xx non-2xx answers"; }
  ROWS+=("$round|$mode|$server|$rps|$p50|$p99|$non2xx|$sock|$cpu")
  log "round $round, $mode: $rps req/s, p50 ${p50} us, p99 ${p99} us, CPU server|wrk|others $cpu"
}

ALL_WITH=$WORK/ids-with/all-ids.txt ALL_WITHOUT=$WORK/ids-without/all-ids.txt
for ((round = 1; round <= ACCESS_ROUNDS; round++)); do
  if ((round % 2)); then order=(with without); else order=(without with); fi
  for side in "${order[@]}"; do
    if [[ $side == with ]]; then run "$round" read with "$SYSTEM_TOKEN" "$ALL_WITH" read/with
    else run "$round" read without "" "$ALL_WITHOUT" read/without; fi
  done
  for side in "${order[@]}"; do
    if [[ $side == with ]]; then run "$round" create with "$SYSTEM_TOKEN" "" create/with
    else run "$round" create without "" "" create/without; fi
  done
  ((GP_ROUNDS == 0)) || run "$round" read with "$GP_TOKEN" "$WORK/ids-with/gp-ids.txt" read-gp/with
done

# --- the audit trail ------------------------------------------------------------------------------
STORE_MB=$(du -sm "$WORK/with/passerelle.db"* | awk '{ s += $1 } END { print s }')
stop_server with
stop_server without
AUDIT_MB=$(du -sm "$WORK/with/audit.db"* | awk '{ s += $1 } END { print s }')
log "verifying the audit trail of the audited gateway (audit.db $AUDIT_MB MB)"
VERIFY_RC=0
env "${passerelle_env[@]}" "$BIN" audit verify --config "$CONFIG" --set "data.dir=$WORK/with" \
  >"$RAW_DIR/audit-verify.txt" 2>&1 || VERIFY_RC=$?
VERIFY=$(tail -1 "$RAW_DIR/audit-verify.txt")
log "audit verify (exit $VERIFY_RC): $VERIFY"

# --- report -----------------------------------------------------------------------------------------
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { # MODE FIELD_NUMBER: that field of every row of MODE
  local row
  for row in "${ROWS[@]}"; do
    IFS='|' read -r -a f <<<"$row"
    if [[ ${f[1]} == "$1" ]]; then echo "${f[$2]}"; fi
  done
}
declare -A MED=()
MODES=(read/with read/without create/with create/without)
((GP_ROUNDS == 0)) || MODES+=(read-gp/with)
for m in "${MODES[@]}"; do
  MED[$m/rps]=$(col "$m" 3 | median)
  MED[$m/p50]=$(col "$m" 4 | median)
  MED[$m/p99]=$(col "$m" 5 | median)
  MED[$m/srv]=$(col "$m" 8 | median)
  # server CPU per request (us): cores x 1e6 / req/s, per run, then the median
  MED[$m/cpu_us]=$(for row in "${ROWS[@]}"; do
    IFS='|' read -r -a f <<<"$row"
    if [[ ${f[1]} == "$m" ]]; then awk -v c="${f[8]}" -v r="${f[3]}" 'BEGIN { printf "%.1f\n", c * 1e6 / r }'; fi
  done | median)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
ms() { awk -v us="$1" 'BEGIN { printf "%.2f ms", us / 1000 }'; }
git_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null) ]]; then git_rev="$git_rev + uncommitted changes"; fi

REPORT=$OUT_DIR/access-$STAMP.md
{
  echo "# Access control and audit: cost on reads and creates, $(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| passerelle | $("$BIN" --version 2>/dev/null | head -1), binary $PASSERELLE_BIN built $BIN_BUILT (sha256 $BIN_SHA...); repository at $git_rev |"
  echo "| machine | $(nproc) CPUs, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); load average before the run $LOAD_BEFORE |"
  echo "| servers | both running throughout, $CONFIG, fresh data folders; \"without\": --set access.enabled=false |"
  echo "| data | $ACCESS_PATIENTS Patients on each, $ACCESS_GP_PATIENTS with an EpisodeOfCare (careManager: the GP's $ACCESS_CARE_MANAGER) and an active treatment Consent |"
  echo "| tokens | system: --role system --scope system/*.cruds; GP: --role gp --practitioner rpps:$ACCESS_GP ($GP_CHECK) |"
  echo "| wrk | $WRK_THREADS threads, $CONNS connections, ${BENCH_WARMUP}s warm-up then ${BENCH_SECONDS}s measured per run, $ACCESS_ROUNDS rounds |"
  [[ -z $QUIET_NOTE ]] || echo "| note | $QUIET_NOTE |"
  echo
  echo "| round | mode | req/s | p50 | p99 | server CPU | wrk CPU | others CPU |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|"
  for row in "${ROWS[@]}"; do
    IFS='|' read -r round mode _ rps p50 p99 _ _ srv wrkc other <<<"$row"
    echo "| $round | $mode | $(printf '%.0f' "$rps") | $(ms "$p50") | $(ms "$p99") | $srv | $wrkc | $other |"
  done
  echo
  echo "Medians over the rounds"
  echo
  echo "| mode | req/s | p50 | p99 | server CPU (cores) | server CPU per request |"
  echo "|---|---:|---:|---:|---:|---:|"
  for m in "${MODES[@]}"; do
    echo "| $m | $(printf '%.0f' "${MED[$m/rps]}") | $(ms "${MED[$m/p50]}") | $(ms "${MED[$m/p99]}") | ${MED[$m/srv]} | ${MED[$m/cpu_us]} us |"
  done
  echo
  echo "Ratios of the medians, with / without (req/s: 1 = no cost; 0.80 = the 20 % target)"
  echo
  echo "| comparison | req/s | p50 | p99 | CPU per request |"
  echo "|---|---:|---:|---:|---:|"
  cmp_row() {
    echo "| $1 / $2 | $(ratio "${MED[$1/rps]}" "${MED[$2/rps]}") | $(ratio "${MED[$1/p50]}" "${MED[$2/p50]}") |" \
      "$(ratio "${MED[$1/p99]}" "${MED[$2/p99]}") | $(ratio "${MED[$1/cpu_us]}" "${MED[$2/cpu_us]}") |"
  }
  cmp_row read/with read/without
  cmp_row create/with create/without
  ((GP_ROUNDS == 0)) || cmp_row read-gp/with read/without
  echo
  echo "Audit trail after the run: audit.db $AUDIT_MB MB (store $STORE_MB MB); \`passerelle audit verify\` (exit $VERIFY_RC): $VERIFY"
  echo
  echo "Raw wrk outputs: bench/out/access-raw-$STAMP/"
} | tee "$REPORT"
log "report written to $REPORT"
