#!/usr/bin/env bash
# Many-topic fan-out behind BENCHMARKS.md and docs/scaling.md: one release
# gateway on one redis-server, then on a 3-primary Redis Cluster (sharded
# pub/sub), the two alternating within each run. herald-topicload opens
# CONNECTIONS sockets, each on a topic of its own, then publishes EVENTS
# events (one topic each) from CONCURRENCY tasks as fast as Redis takes them,
# and reads each Redis server's CPU time.
# Usage: scripts/bench-shards.sh [connections] [events] [concurrency] [runs]
#
# REDIS_CPU=F limits every redis-server to F of one core (a cgroup CPU quota;
# needs root and the cgroup v1 `cpu` controller or cgroup v2). Without it the
# Redis servers share the machine's cores with the gateway and the load tool,
# and on a small machine the gateway saturates before any Redis does. With it,
# one Redis is the bottleneck, as it is in production where a shard has a core
# of its own and the gateways scale out: the scaled-down question is then what
# three shards with the same budget each deliver.
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-10000}
events=${2:-200000}
concurrency=${3:-64}
runs=${4:-3}
ulimit -n 20000
cargo build --release -q -p herald-gateway -p herald-tests --bin herald-gateway --bin herald-topicload
dir=$(mktemp -d)
base=$((20000 + RANDOM % 8000))
single=$base
shards=("$((base + 1))" "$((base + 2))" "$((base + 3))")
port_gw=$((40000 + RANDOM % 10000)) # above the cluster bus ports (port + 10000)
cgroups=()
stop() {
  kill "${gw:-0}" 2>/dev/null || true
  for p in "$single" "${shards[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  for _ in $(seq 1 50); do
    pgrep -f "redis-server 127.0.0.1:($single|${shards[0]}|${shards[1]}|${shards[2]})" >/dev/null || break
    sleep 0.1
  done
  for cg in "${cgroups[@]}"; do rmdir "$cg" 2>/dev/null || true; done
  rm -rf "$dir"
}
# Put the redis-server on PORT in a cgroup of its own holding REDIS_CPU of a
# core (10 ms periods, so a throttled server waits milliseconds, not tenths).
cap_cpu() {
  [ -n "${REDIS_CPU:-}" ] || return 0
  local port=$1 pid quota cg
  pid=$(redis-cli -p "$port" info server | tr -d '\r' | sed -n 's/^process_id://p')
  quota=$(python3 -c "print(int(float('$REDIS_CPU') * 10000))")
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    cg=/sys/fs/cgroup/herald-bench-$port
    mkdir -p "$cg"
    echo "$quota 10000" >"$cg/cpu.max"
  else
    cg=/sys/fs/cgroup/cpu/herald-bench-$port
    mkdir -p "$cg"
    echo 10000 >"$cg/cpu.cfs_period_us"
    echo "$quota" >"$cg/cpu.cfs_quota_us"
  fi
  cgroups+=("$cg")
  echo "$pid" >"$cg/cgroup.procs"
}
trap stop EXIT
redis-server --port "$single" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes >/dev/null
for p in "${shards[@]}"; do
  mkdir -p "$dir/$p"
  redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir/$p" --daemonize yes \
    --cluster-enabled yes --cluster-config-file nodes.conf >/dev/null
done
sleep 0.5
redis-cli --cluster create "${shards[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 1 100); do
  redis-cli -p "${shards[0]}" cluster info | grep -q cluster_state:ok && break
  sleep 0.1
done
for p in "$single" "${shards[@]}"; do cap_cpu "$p"; done
[ -z "${REDIS_CPU:-}" ] || echo "every redis-server limited to $REDIS_CPU of a core"
run_on() { # label url node...
  local label=$1 url=$2
  shift 2
  HERALD_REDIS_URL="$url" HERALD_LISTEN="127.0.0.1:$port_gw" \
  HERALD_JWT_SECRET=test-jwt-secret-0123456789 HERALD_LOG_FORMAT=text RUST_LOG=warn \
    target/release/herald-gateway >/dev/null 2>"$dir/gw.err" &
  gw=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port_gw/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  local nodes=()
  for p in "$@"; do nodes+=(--redis-node "127.0.0.1:$p"); done
  echo "$label:"
  target/release/herald-topicload --gateway "127.0.0.1:$port_gw" --pid "$gw" --redis "$url" "${nodes[@]}" \
    --connections "$connections" --events "$events" --concurrency "$concurrency"
  kill "$gw"; wait "$gw" 2>/dev/null || true
  for p in "$@"; do redis-cli -p "$p" flushall >/dev/null; done
}
for run in $(seq 1 "$runs"); do
  echo "run $run"
  run_on "one redis" "redis://127.0.0.1:$single" "$single"
  run_on "3-shard cluster" \
    "redis-cluster://127.0.0.1:${shards[0]}?node=127.0.0.1:${shards[1]}&node=127.0.0.1:${shards[2]}" \
    "${shards[@]}"
done
