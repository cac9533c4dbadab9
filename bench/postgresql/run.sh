#!/usr/bin/env bash
# The FHIR REST core on PostgreSQL against SQLite, and two gateways on one PostgreSQL against one,
# measured in the same run on the same data:
#   sqlite   one gateway on its embedded default (SQLite store, audit trail in its own SQLite file)
#   pg       one gateway with storage.url and audit.url on PostgreSQL
#   pg x2    two gateways (their own data folders, keys and ports) on one PostgreSQL database, the
#            load split between them (two wrk processes, half the connections each, run together)
# Scenarios (bench/wrk): read (GET by id), search (a Patient by identifier), create (POST), update
# (PUT), transaction (a Bundle of 10 creates). Each configuration starts afresh for each scenario
# (a new data folder and a new database), is seeded with BENCH_SEED Patients, warmed up, then
# measured; the configurations alternate within a round, and the best of BENCH_ROUNDS is kept for
# each (the least disturbed by the machine's other work).
#
# PostgreSQL 15 runs as a throw-away cluster: initdb into a temporary folder (as `nobody` when run
# as root), the server on a free port of 127.0.0.1, fsync and synchronous_commit on (an
# acknowledged write is durable, as on SQLite), shared_buffers 256MB.
#
# Writes a markdown report to stdout and to bench/out/postgresql-<date>.md; raw wrk outputs under
# bench/out/raw-postgresql-<date>/. Progress goes to stderr.
#
# Environment:
#   BENCH_SECONDS  measured seconds per scenario (10)      BENCH_WARMUP  warm-up seconds (2)
#   BENCH_SEED     Patients created first (1000)           BENCH_ROUNDS  rounds (2)
#   BENCH_SCENARIOS  (read search create update transaction)
#   PASSERELLE_BIN (build/bin/passerelle)   PG_BIN (/usr/lib/postgresql/15/bin)
#   BENCH_PG_AUDIT=0  keep each gateway's audit trail in SQLite on the PostgreSQL runs
#   BENCH_KEEP=1      keep the temporary folder
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(dirname "$BENCH_DIR")
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
PASSERELLE_BIN=${PASSERELLE_BIN:-$ROOT/build/bin/passerelle}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_SEED=${BENCH_SEED:-1000}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
BENCH_PG_AUDIT=${BENCH_PG_AUDIT:-1}
read -r -a SCENARIOS <<<"${BENCH_SCENARIOS:-read search create update transaction}"
CONNS=16
TX_CONNS=4

log() { printf '[bench-pg %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v node >/dev/null || die "node not found (the seeding client)"
[[ -x $PASSERELLE_BIN ]] || die "no gateway binary at $PASSERELLE_BIN (cmake --build build)"
[[ -x $PG_BIN/initdb ]] || die "no PostgreSQL 15 at $PG_BIN (apt-get install postgresql-15)"

STAMP=$(date +%Y%m%d-%H%M%S)
OUT_DIR=$BENCH_DIR/out
RAW_DIR=$OUT_DIR/raw-postgresql-$STAMP
mkdir -p "$RAW_DIR"
WORK=$(mktemp -d /tmp/passerelle-bench-pg.XXXXXX)
chmod 755 "$WORK"
cleanup() {
  stop_gateways
  [[ -n ${PG_PID:-} ]] && kill -INT "$PG_PID" 2>/dev/null && wait "$PG_PID" 2>/dev/null || true
  [[ ${BENCH_KEEP:-0} == 1 ]] && log "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

# --- the PostgreSQL cluster ----------------------------------------------------------------------
as_pg() { if ((EUID == 0)); then runuser -u nobody -- "$@"; else "$@"; fi; }
mkdir -p "$WORK/pg"
((EUID == 0)) && chown nobody "$WORK/pg"
as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -U passerelle -A trust --no-sync -E UTF8 >"$WORK/pg/initdb.log" 2>&1 ||
  die "initdb failed: $(tail -3 "$WORK/pg/initdb.log")"
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$PG_BIN/postgres" -D "$WORK/pg/data" -h 127.0.0.1 -p "$PG_PORT" -k "" -c fsync=on -c synchronous_commit=on \
  -c shared_buffers=256MB -c max_connections=200 >"$WORK/pg/server.log" 2>&1 &
PG_PID=$!
for _ in $(seq 100); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break; sleep 0.1; done
"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL did not start: $(tail -3 "$WORK/pg/server.log")"
# new_database NAME: creates it, prints its URL.
new_database() {
  "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U passerelle -d postgres -c "CREATE DATABASE $1" >/dev/null
  echo "postgresql://passerelle@127.0.0.1:$PG_PORT/$1"
}

# --- gateways --------------------------------------------------------------------------------------
# start_gateway DIR [--set ...]: starts a gateway on a fresh DIR, prints its HTTP port.
start_gateway() {
  local dir=$1
  shift
  rm -rf "$dir"
  mkdir -p "$dir"
  local -a unset_env=()
  mapfile -t unset_env < <(env | grep -oE '^PASSERELLE_[A-Z0-9_]+' | sed 's/^/-u/' || true)
  env "${unset_env[@]}" "$PASSERELLE_BIN" serve --config /dev/null --set http.port=0 --set https.enabled=false \
    --set "data.dir=$dir" --set log.level=warn --set partners.dir="$dir/none" --set gp.dir="$dir/none" "$@" \
    >"$dir/serve.out" 2>"$dir/serve.err" &
  echo $! >"$dir/pid"
  local port=""
  for _ in $(seq 300); do
    port=$(grep -oE 'http=127\.0\.0\.1:[0-9]+' "$dir/serve.out" 2>/dev/null | head -1 | cut -d: -f2 || true)
    [[ -n $port ]] && break
    sleep 0.1
  done
  [[ -n $port ]] || die "the gateway in $dir did not start: $(tail -3 "$dir/serve.err")"
  echo "$port"
}
# Stops every gateway started (SIGTERM) and waits until they are gone.
stop_gateways() {
  local f
  for f in "$WORK"/*/pid; do
    [[ -f $f ]] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
    rm -f "$f"
  done
}

conns_of() { [[ $1 == transaction ]] && echo $TX_CONNS || echo $CONNS; }

# run_wrk SCENARIO PORT TOKEN IDS CONNS SECONDS OUT
run_wrk() {
  PASSERELLE_TOKEN=$3 BENCH_IDS_FILE=$4 BENCH_SEED=$BENCH_SEED wrk -t2 -c"$5" -d"$6s" --timeout 10s --latency \
    -s "$BENCH_DIR/wrk/$1.lua" "http://127.0.0.1:$2" >"$7" 2>&1 || die "wrk failed, see $7"
}
field() { grep -oE "$1=[0-9.]+" "$2" | head -1 | cut -d= -f2; }

# measure CONFIG SCENARIO ROUND: prints "rps p99_us non2xx"
measure() {
  local config=$1 scenario=$2 round=$3 conns
  conns=$(conns_of "$scenario")
  local base=$WORK/$config-$scenario-$round
  local -a sets=() ports=() tokens=()
  if [[ $config != sqlite ]]; then
    local url
    url=$(new_database "b_${config}_${scenario}_$round")
    sets=(--set "storage.url=$url")
    [[ $BENCH_PG_AUDIT == 1 ]] && sets+=(--set "audit.url=$url")
  fi
  local n=1
  [[ $config == pgx2 ]] && n=2
  for i in $(seq "$n"); do
    ports+=("$(start_gateway "$base-g$i" "${sets[@]}")")
    tokens+=("$(bench_token "$PASSERELLE_BIN" "$base-g$i")")
  done
  PASSERELLE_TOKEN=${tokens[0]} node "$BENCH_DIR/seed_patients.mjs" "http://127.0.0.1:${ports[0]}/fhir" "$BENCH_SEED" "$base-ids.txt" 8 >/dev/null ||
    die "seeding failed ($config $scenario)"
  local raw=$RAW_DIR/$config-$scenario-$round
  local per=$((conns / n))
  local -a loads=()
  if ((BENCH_WARMUP > 0)); then
    for i in $(seq 0 $((n - 1))); do
      run_wrk "$scenario" "${ports[$i]}" "${tokens[$i]}" "$base-ids.txt" "$per" "$BENCH_WARMUP" "$raw.warmup$i.txt" &
      loads+=($!)
    done
    wait "${loads[@]}"
    loads=()
  fi
  for i in $(seq 0 $((n - 1))); do
    run_wrk "$scenario" "${ports[$i]}" "${tokens[$i]}" "$base-ids.txt" "$per" "$BENCH_SECONDS" "$raw.$i.txt" &
    loads+=($!)
  done
  wait "${loads[@]}"
  stop_gateways
  local rps=0 p99=0 bad=0
  for i in $(seq 0 $((n - 1))); do
    rps=$(echo "$rps + $(field rps "$raw.$i.txt")" | bc)
    local p
    p=$(field p99_us "$raw.$i.txt")
    ((p > p99)) && p99=$p
    bad=$((bad + $(field non2xx "$raw.$i.txt") + $(field socket_errors "$raw.$i.txt")))
  done
  echo "$rps $p99 $bad"
}

declare -A BEST_RPS BEST_P99 BAD
CONFIGS=(sqlite pg pgx2)
for round in $(seq "$BENCH_ROUNDS"); do
  for scenario in "${SCENARIOS[@]}"; do
    for config in "${CONFIGS[@]}"; do
      log "round $round: $scenario on $config"
      measure "$config" "$scenario" "$round" >"$WORK/result"
      read -r rps p99 bad <"$WORK/result"
      log "  $rps requests/s, p99 ${p99} us, $bad failed"
      key=$config/$scenario
      if [[ -z ${BEST_RPS[$key]:-} ]] || (($(echo "$rps > ${BEST_RPS[$key]}" | bc))); then
        BEST_RPS[$key]=$rps
        BEST_P99[$key]=$p99
      fi
      BAD[$key]=$((${BAD[$key]:-0} + bad))
    done
  done
done

ratio() { echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; }
{
  echo "## PostgreSQL against SQLite, two gateways against one ($(date -u +%Y-%m-%d), $(nproc) CPUs)"
  echo
  echo "Best of $BENCH_ROUNDS rounds of ${BENCH_SECONDS} s, $BENCH_SEED Patients seeded, $CONNS connections ($TX_CONNS for transactions)," \
    "audit trail on $([[ $BENCH_PG_AUDIT == 1 ]] && echo PostgreSQL || echo SQLite) for the PostgreSQL runs."
  echo
  echo "| scenario | SQLite req/s | PostgreSQL req/s | PG / SQLite | 2 gateways on PG req/s | 2 / 1 on PG | p99 ms (SQLite / PG / 2 on PG) | failed |"
  echo "|---|---:|---:|---:|---:|---:|---|---:|"
  for scenario in "${SCENARIOS[@]}"; do
    s=${BEST_RPS[sqlite/$scenario]} p=${BEST_RPS[pg/$scenario]} d=${BEST_RPS[pgx2/$scenario]}
    ms() { echo "scale=1; $1 / 1000" | bc | sed 's/^\./0./'; }
    echo "| $scenario | $s | $p | $(ratio "$p" "$s")x | $d | $(ratio "$d" "$p")x |" \
      "$(ms "${BEST_P99[sqlite/$scenario]}") / $(ms "${BEST_P99[pg/$scenario]}") / $(ms "${BEST_P99[pgx2/$scenario]}") |" \
      "$((${BAD[sqlite/$scenario]} + ${BAD[pg/$scenario]} + ${BAD[pgx2/$scenario]})) |"
  done
} | tee "$OUT_DIR/postgresql-$STAMP.md"
