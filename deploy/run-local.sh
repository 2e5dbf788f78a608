#!/usr/bin/env bash
# A local Herald cluster without Kubernetes: one redis-server and N gateway
# replicas on loopback ports, sharing one set of credentials, as the Helm
# chart runs them. Stops everything it started on Ctrl-C, SIGTERM, or when a
# process it started dies.
#
#   deploy/run-local.sh [REPLICAS]          # default 2
#
# Environment:
#   HERALD_LOCAL_REDIS_PORT   redis-server's port (default 6390)
#   HERALD_LOCAL_BASE_PORT    first replica's port (default 8081; then +1 …)
#   HERALD_GATEWAY            the herald-gateway binary (default: target/release,
#                             then target/debug; built with cargo when neither exists)
#   HERALD_CONFIG             a gateway configuration file (default: the bundled one)
#   HERALD_LOCAL_DIR          where logs and the Redis socket go (default: a new temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."

replicas="${1:-2}"
case "$replicas" in
  '' | *[!0-9]* | 0) echo "usage: $0 [REPLICAS >= 1]" >&2; exit 2 ;;
esac
redis_port="${HERALD_LOCAL_REDIS_PORT:-6390}"
base_port="${HERALD_LOCAL_BASE_PORT:-8081}"
dir="${HERALD_LOCAL_DIR:-$(mktemp -d -t herald-local.XXXXXX)}"
mkdir -p "$dir"

gateway="${HERALD_GATEWAY:-}"
if [ -z "$gateway" ]; then
  for candidate in target/release/herald-gateway target/debug/herald-gateway; do
    if [ -x "$candidate" ]; then gateway="$candidate"; break; fi
  done
fi
if [ -z "$gateway" ]; then
  echo "building herald-gateway (cargo build --release -p herald-gateway)"
  cargo build --release -p herald-gateway
  gateway=target/release/herald-gateway
fi
command -v redis-server >/dev/null || { echo "redis-server not found (apt-get install redis-server)" >&2; exit 1; }

pids=()
stop() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped ${#pids[@]} processes; logs in $dir"
}
trap stop EXIT
trap 'exit 0' INT TERM

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$dir" --logfile "$dir/redis.log" &
pids+=($!)

# One set of credentials for every replica, as one Secret would give them.
secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
export HERALD_JWT_SECRET="${HERALD_JWT_SECRET:-$(secret)}"
export HERALD_ADMIN_KEY="${HERALD_ADMIN_KEY:-$(secret)}"
export HERALD_API_KEY="${HERALD_API_KEY:-$(secret)}"
export HERALD_REDIS_URL="redis://127.0.0.1:$redis_port"
export HERALD_LOG_FORMAT="${HERALD_LOG_FORMAT:-text}"
config_args=()
if [ -n "${HERALD_CONFIG:-}" ]; then config_args=(--config "$HERALD_CONFIG"); fi

for i in $(seq 0 $((replicas - 1))); do
  port=$((base_port + i))
  HERALD_LISTEN="127.0.0.1:$port" "$gateway" "${config_args[@]}" \
    >"$dir/gateway-$i.out" 2>"$dir/gateway-$i.log" &
  pids+=($!)
done

# Wait until every replica is ready: its delivery probe went through Redis
# and came back.
for i in $(seq 0 $((replicas - 1))); do
  port=$((base_port + i))
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 \
        && head -c 12 <&3 | grep -q ' 200') 2>/dev/null; then
      break
    fi
    kill -0 "${pids[$((i + 1))]}" 2>/dev/null || { echo "replica $i exited; see $dir/gateway-$i.log" >&2; exit 1; }
    sleep 0.1
  done
done

echo "redis        redis://127.0.0.1:$redis_port"
for i in $(seq 0 $((replicas - 1))); do
  echo "replica $i    http://127.0.0.1:$((base_port + i))  (log $dir/gateway-$i.log)"
done
echo "HERALD_JWT_SECRET=$HERALD_JWT_SECRET"
echo "HERALD_ADMIN_KEY=$HERALD_ADMIN_KEY"
echo "HERALD_API_KEY=$HERALD_API_KEY"
echo "all $replicas replicas ready; Ctrl-C stops them"

# Until a signal, or until any process started here exits.
wait -n "${pids[@]}"
echo "a process exited; stopping the rest" >&2
exit 1
