#!/usr/bin/env bash
# Memory per idle connection with the connections spread over several
# replicas behind one Redis: REPLICAS release gateways, one herald-wsload per
# replica (one process can hold ~19,900 sockets here: 20,000 open files), all
# connecting at once. Each line is one replica's figures; the last line the
# median of the replicas' RSS per connection.
# Usage: scripts/bench-replicas.sh [replicas] [connections in all]
# HERALD_GATEWAY=path runs another gateway binary, as in scripts/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
replicas=${1:-6}
total=${2:-100000}
per=$(( (total + replicas - 1) / replicas ))
if [ "$per" -gt 19500 ]; then
  echo "at most 19,500 connections per replica (open-file limit): use more replicas" >&2
  exit 2
fi
ulimit -n 20000
cargo build --release -q -p herald-gateway -p herald-tests --bin herald-gateway --bin herald-wsload
dir=$(mktemp -d)
# Below the ephemeral range (32768-60999): the load tool's own sockets
# could hold any port above it.
port_redis=$((20000 + RANDOM % 5000))
base=$((25000 + RANDOM % 7000))
redis-server --port "$port_redis" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes >/dev/null
gws=()
loads=()
cleanup() {
  for pid in "${loads[@]}" "${gws[@]}"; do kill "$pid" 2>/dev/null || true; done
  redis-cli -p "$port_redis" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
for i in $(seq 0 $((replicas - 1))); do
  HERALD_REDIS_URL="redis://127.0.0.1:$port_redis" HERALD_LISTEN="127.0.0.1:$((base + i))" \
  HERALD_JWT_SECRET=test-jwt-secret-0123456789 HERALD_LOG_FORMAT=text RUST_LOG=warn \
    "${HERALD_GATEWAY:-target/release/herald-gateway}" >/dev/null 2>"$dir/gw-$i.err" &
  gws+=($!)
done
for i in $(seq 0 $((replicas - 1))); do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((base + i))/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$((base + i))/readyz" >/dev/null \
    || { echo "replica $i not ready:" >&2; cat "$dir/gw-$i.err" >&2; exit 1; }
done
for i in $(seq 0 $((replicas - 1))); do
  target/release/herald-wsload --gateway "127.0.0.1:$((base + i))" --pid "${gws[$i]}" \
    --redis "redis://127.0.0.1:$port_redis" --connections "$per" --events 1 --rate 1 --channel "bench-$i" \
    >"$dir/load-$i.out" 2>&1 &
  loads+=($!)
done
status=0
for pid in "${loads[@]}"; do wait "$pid" || status=1; done
for i in $(seq 0 $((replicas - 1))); do
  echo "replica $i: $(tr '\n' ' ' <"$dir/load-$i.out")"
done
grep -ho 'per_connection_kib=[0-9.]*' "$dir"/load-*.out | cut -d= -f2 | sort -n \
  | awk -v n="$replicas" -v t="$((per * replicas))" '{ v[NR] = $1 } END { print "connections=" t " replicas=" n " median_per_connection_kib=" v[int((NR + 1) / 2)] }'
exit "$status"
