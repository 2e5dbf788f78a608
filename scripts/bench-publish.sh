#!/usr/bin/env bash
# Publishing throughput behind BENCHMARKS.md: one release gateway on its own
# redis-server; herald-pubload publishes through the server API (one event
# per request, and batches) and through herald-publisher straight to Redis,
# the three modes alternating within each run.
# Usage: scripts/bench-publish.sh [events] [concurrency] [runs] [batch]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-20000}
concurrency=${2:-16}
runs=${3:-3}
batch=${4:-100}
cargo build --release -q -p herald-gateway -p herald-tests --bin herald-gateway --bin herald-pubload
port_redis=$((20000 + RANDOM % 10000))
port_gw=$((30000 + RANDOM % 10000))
key="bench-api-key-$RANDOM$RANDOM"
dir=$(mktemp -d)
redis-server --port "$port_redis" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes >/dev/null
trap 'redis-cli -p "$port_redis" shutdown nosave >/dev/null 2>&1 || true; kill "${gw:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
HERALD_REDIS_URL="redis://127.0.0.1:$port_redis" HERALD_LISTEN="127.0.0.1:$port_gw" \
HERALD_API_KEY="$key" HERALD_LOG_FORMAT=text RUST_LOG=warn \
  target/release/herald-gateway >/dev/null 2>"$dir/gw.err" &
gw=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port_gw/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
for run in $(seq 1 "$runs"); do
  echo "run $run:"
  for mode in http batch redis; do
    target/release/herald-pubload --mode "$mode" --api "http://127.0.0.1:$port_gw/herald/v1" --key "$key" \
      --redis "redis://127.0.0.1:$port_redis" --events "$events" --concurrency "$concurrency" --batch "$batch"
  done
done
