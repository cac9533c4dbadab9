#!/usr/bin/env bash
# Installs the Debian 12 packages Passerelle builds, runs and tests with (only the missing ones).
set -euo pipefail
packages=(build-essential cmake ninja-build ccache pkg-config git python3 openssl curl
  libpoco-dev nlohmann-json3-dev libsqlite3-dev sqlite3 libssl-dev libcurl4-openssl-dev libxerces-c-dev
  zlib1g-dev libpq-dev libsimdjson-dev libvalijson-dev libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev
  openssh-server openssh-client chromium postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing: ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
