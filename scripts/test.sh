#!/usr/bin/env bash
# Herald's test command: builds the workspace and runs every test, unit and
# black-box. Installs redis-server (Debian package) when it is missing; the
# suites start their own redis-server processes on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "redis-server not found: installing redis-server and redis-tools"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server redis-tools
fi

# The black-box suites run the gateway binary, so build it first.
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace "$@" 2>&1 | tee "$log"
# One closing line over every test binary and doc-test run.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
