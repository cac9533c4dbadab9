# shellcheck shell=bash
# Shared by the benchmark scripts (source it; bash). Every request to the gateway but GET /healthz
# and GET /fhir/metadata needs "Authorization: Bearer <JWT>" unless access.enabled=false; the scripts
# and clients of bench/ (wrk/*.lua, seed_patients.mjs, search/*.py, network/*.py and run.sh) send
# PASSERELLE_TOKEN when it is set, so a script exports it once its gateway is up:
#
#   export PASSERELLE_TOKEN=$(bench_token "$BIN" "$DATA_DIR")
#
# The gateway does not read PASSERELLE_TOKEN (it is no configuration key).

# bench_token BIN DATA_DIR [CONFIG [ISSUE_ARGS...]]: prints a development token for the gateway
# serving DATA_DIR (signed by the key under DATA_DIR/auth, generated there by the gateway or by this
# command, whichever comes first), valid 24 hours (auth.max_token_seconds' default). CONFIG: the
# gateway's configuration file (default /dev/null, as the benchmarks start it: same auth.issuer and
# auth.audience). ISSUE_ARGS: the role and its claims (default: --role system --scope "system/*.cruds",
# every interaction on every type), e.g. --role gp --practitioner rpps:10101234567. PASSERELLE_*
# variables of the environment are not passed on (they would override the configuration).
bench_token() {
  local bin=$1 data=$2 config=${3:-/dev/null}
  shift 2
  (($# > 0)) && shift
  (($# > 0)) || set -- --role system --scope "system/*.cruds"
  local -a unset_env=()
  mapfile -t unset_env < <(env | grep -oE '^PASSERELLE_[A-Z0-9_]+' | sed 's/^/-u/' || true)
  env "${unset_env[@]}" "$bin" token issue --config "$config" --set "data.dir=$data" --ttl 86400 "$@"
}
