#!/usr/bin/env bash
# Set-up command 1: install what is missing, build, and run the gateway on its embedded default
# (SQLite under var/, conf/passerelle.properties, a development TLS certificate generated under
# var/tls/). Stop it with Ctrl-C. Extra arguments go to `passerelle serve` (e.g. --set http.port=0).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh -DPASSERELLE_BUILD_TESTS=OFF
exec build/bin/passerelle serve --config conf/passerelle.properties "$@"
