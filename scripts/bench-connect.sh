#!/usr/bin/env bash
# Connect storm: CONNECTIONS WebSocket clients of one release gateway, each
# with its own user (a JWT minted before the clock starts), opened by
# PROCESSES herald-wsload processes with OPENERS concurrent openers each, all
# started at once. A connection counts once it is accepted, authenticated
# and its subscribe sent (the clients spread over 64 loopback source
# addresses: from one, the kernel's local-port search dominates); then one
# event goes to every process's channel and must reach every client
# (lost=0). The rate is all connections over
# the span from the first process's start to the last one's end; RUNS
# times, a fresh gateway each, and the median. Each run also prints the
# gateway's CPU per connection (its /proc time over the whole run: opening,
# the one event, not the teardown) and how busy the machine was (/proc/stat).
# Usage: scripts/bench-connect.sh [connections] [processes] [openers] [runs]
# HERALD_GATEWAY=path runs another gateway binary, as in scripts/bench.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-19000}
processes=${2:-4}
openers=${3:-8}
runs=${4:-3}
if [ "$connections" -gt 19500 ]; then
  echo "at most 19,500 connections on one gateway (open-file limit)" >&2
  exit 2
fi
per=$(( (connections + processes - 1) / processes ))
ulimit -n 20000
cargo build --release -q -p herald-gateway -p herald-tests --bin herald-gateway --bin herald-wsload
dir=$(mktemp -d)
# Below the ephemeral range (32768-60999): the load tool's own sockets
# could hold any port above it.
port_redis=$((20000 + RANDOM % 5000))
port_gw=$((25000 + RANDOM % 7000))
redis-server --port "$port_redis" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --daemonize yes >/dev/null
gw=0
loads=()
cleanup() {
  # 0 is "nothing running": kill 0 would signal this whole process group.
  for pid in "${loads[@]}" "$gw"; do [ "$pid" = 0 ] || kill "$pid" 2>/dev/null || true; done
  redis-cli -p "$port_redis" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
ticks() { # PID: the process's user + system clock ticks
  awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
machine() { # busy and total jiffies of all CPUs
  awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}
hz=$(getconf CLK_TCK)
rates=()
status=0
for run in $(seq 1 "$runs"); do
  HERALD_REDIS_URL="redis://127.0.0.1:$port_redis" HERALD_LISTEN="127.0.0.1:$port_gw" \
  HERALD_JWT_SECRET=test-jwt-secret-0123456789 HERALD_LOG_FORMAT=text RUST_LOG=warn \
    "${HERALD_GATEWAY:-target/release/herald-gateway}" >/dev/null 2>"$dir/gw.err" &
  gw=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port_gw/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  loads=()
  gw_before=$(ticks "$gw")
  read -r busy_before total_before < <(machine)
  for i in $(seq 1 "$processes"); do
    target/release/herald-wsload --gateway "127.0.0.1:$port_gw" --pid "$gw" \
      --redis "redis://127.0.0.1:$port_redis" --connections "$per" --openers "$openers" --sources 64 \
      --distinct-users --events 1 --rate 1 --channel "storm-$i" >"$dir/load-$i.out" 2>&1 &
    loads+=($!)
  done
  for pid in "${loads[@]}"; do wait "$pid" || status=1; done
  loads=()
  gw_ticks=$(($(ticks "$gw") - gw_before))
  read -r busy_after total_after < <(machine)
  cat "$dir"/load-*.out >"$dir/run.out"
  lost=$(grep -o 'lost=[0-9]*' "$dir/run.out" | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }')
  rate=$(awk -v n="$((per * processes))" '
    { for (i = 1; i <= NF; i++) { split($i, kv, "=");
        if (kv[1] == "opened_from_us" && (from == "" || kv[2] < from)) from = kv[2];
        if (kv[1] == "opened_until_us" && kv[2] > until) until = kv[2]; } }
    END { printf "%.0f", n / ((until - from) / 1e6) }' "$dir/run.out")
  gw_us=$(awk -v t="$gw_ticks" -v hz="$hz" -v n="$((per * processes))" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
  busy=$(awk -v b="$((busy_after - busy_before))" -v t="$((total_after - total_before))" 'BEGIN { printf "%.0f", 100 * b / t }')
  echo "run $run: connections=$((per * processes)) processes=$processes openers=$openers connections_per_s=$rate lost=$lost gateway_cpu_us_per_connection=$gw_us machine_busy_pct=$busy"
  [ "$lost" = 0 ] || { status=1; grep -h '^events=' "$dir"/load-*.out; }
  rates+=("$rate")
  kill "$gw"; wait "$gw" 2>/dev/null || true
  gw=0
done
printf '%s\n' "${rates[@]}" | sort -n | awk '{ v[NR] = $1 } END { print "median connections_per_s=" v[int((NR + 1) / 2)] }'
exit "$status"
