#!/usr/bin/env bash
# Overload: one release gateway offered more deliveries than it can write
# (CONNECTIONS subscribers of one topic, RATE events/s for SECONDS), once
# with the queueing-delay bound at BOUND_MS and once without it (0), RUNS
# times alternating. Prints the load tool's figures (lost counts the events
# of connections closed for falling behind) and, from the gateway's
# /metrics, the connections closed as slow consumers and the events dropped
# for the delay bound.
# Usage: scripts/bench-overload.sh [bound_ms] [connections] [rate] [seconds] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
bound=${1:-1000}
connections=${2:-10000}
rate=${3:-40}
seconds=${4:-10}
runs=${5:-3}
ulimit -n 20000
cargo build --release -q -p herald-gateway -p herald-tests --bin herald-gateway --bin herald-wsload
# Below the ephemeral range (32768-60999): the load tool's own sockets
# could hold any port above it.
port_redis=$((20000 + RANDOM % 5000))
port_gw=$((25000 + RANDOM % 7000))
dir=$(mktemp -d)
redis-server --port "$port_redis" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes >/dev/null
gw=0
# gw=0 is "nothing running": kill 0 would signal this whole process group.
trap 'redis-cli -p "$port_redis" shutdown nosave >/dev/null 2>&1 || true; [ "$gw" = 0 ] || kill "$gw" 2>/dev/null || true; rm -rf "$dir"' EXIT
metric() { grep "^$1" "$dir/metrics" | grep -- "$2" | awk '{ s += $NF } END { print s + 0 }'; }
for run in $(seq 1 "$runs"); do
  for b in "$bound" 0; do
    printf '[limits]\nmax_queue_delay_ms = %s\n' "$b" >"$dir/herald.toml"
    HERALD_REDIS_URL="redis://127.0.0.1:$port_redis" HERALD_LISTEN="127.0.0.1:$port_gw" \
    HERALD_JWT_SECRET=test-jwt-secret-0123456789 HERALD_LOG_FORMAT=text RUST_LOG=warn \
      target/release/herald-gateway --config "$dir/herald.toml" >/dev/null 2>"$dir/gw.err" &
    gw=$!
    for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port_gw/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
    out=$(target/release/herald-wsload --gateway "127.0.0.1:$port_gw" --pid "$gw" \
      --redis "redis://127.0.0.1:$port_redis" --connections "$connections" \
      --events "$((rate * seconds))" --rate "$rate" | grep '^events=')
    curl -sf "http://127.0.0.1:$port_gw/metrics" >"$dir/metrics"
    echo "run $run: max_queue_delay_ms=$b $out" \
      "closed_slow_consumer=$(metric herald_connections_closed_total slow_consumer)" \
      "dropped_queue_delay=$(metric herald_messages_dropped_total queue_delay)"
    kill "$gw"; wait "$gw" 2>/dev/null || true
    gw=0
  done
done
