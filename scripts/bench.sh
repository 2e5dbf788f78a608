#!/usr/bin/env bash
# Rerunnable benchmark behind BENCHMARKS.md: a release gateway on its own
# redis-server, driven by herald-wsload from the same machine (loopback).
# Usage: scripts/bench.sh [connections] [events] [rate-per-second] [runs]
# HERALD_GATEWAY=path runs another gateway binary (an older build, for a
# before/after comparison in one sitting) with the same load tool.
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-5000}
events=${2:-100}
rate=${3:-20}
runs=${4:-3}
cargo build --release -q -p herald-gateway -p herald-tests --bin herald-gateway --bin herald-wsload
# Below the ephemeral range (32768-60999): the load tool's own sockets
# could hold any port above it.
port_redis=$((20000 + RANDOM % 5000))
port_gw=$((25000 + RANDOM % 7000))
dir=$(mktemp -d)
redis-server --port "$port_redis" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes >/dev/null
trap 'redis-cli -p "$port_redis" shutdown nosave >/dev/null 2>&1 || true; kill "${gw:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
for run in $(seq 1 "$runs"); do
  HERALD_REDIS_URL="redis://127.0.0.1:$port_redis" HERALD_LISTEN="127.0.0.1:$port_gw" \
  HERALD_JWT_SECRET=test-jwt-secret-0123456789 HERALD_LOG_FORMAT=text RUST_LOG=warn \
    "${HERALD_GATEWAY:-target/release/herald-gateway}" >/dev/null 2>"$dir/gw.err" &
  gw=$!
  for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port_gw/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "run $run:"
  target/release/herald-wsload --gateway "127.0.0.1:$port_gw" --pid "$gw" --redis "redis://127.0.0.1:$port_redis" \
    --connections "$connections" --events "$events" --rate "$rate"
  kill "$gw"; wait "$gw" 2>/dev/null || true
done
