#!/usr/bin/env bash
# Herald beside its peers, in one invocation, on the same cores, driven by
# the same load tool (herald-wsload, whose client is the floor's):
#   floor      herald-floor: one pre-encoded frame written to each socket
#   herald1    one release gateway on one redis-server
#   herald2    two gateways on one redis-server, the clients spread over both
#   socketio2  Socket.IO 4.8 + @socket.io/redis-adapter, two Node replicas
#   sockudo    sockudo 5.2 (Pusher protocol), one process
# Scenarios, per server and round: S1 memory per idle connection (summed RSS
# of the server processes; Socket.IO after a full GC), S2 one-topic fan-out
# of CONNECTIONS subscribers at each offered rate of RATES (deliveries/s;
# events for SECONDS each), and the connect rate of the S2 opening (OPENERS
# concurrent openers); S3 many topics: CONNECTIONS subscribers, each on a
# topic of its own, S3_RATE events/s (one topic each) for SECONDS; storm:
# CONNECTIONS clients opened by STORM_OPENERS concurrent openers from 64
# loopback source addresses (Herald: a user and a JWT each, minted before the
# clock; scripts/bench-connect.sh spreads a storm over several load
# processes). Rounds alternate the servers; medians are printed with the
# ratios against the targets.
# Usage: scripts/bench-peers.sh [connections] [rounds] [seconds] [rates] [servers]
#   rates: comma-separated offered deliveries/s (default 50000,100000,200000,400000)
#   servers: comma-separated subset of floor,herald1,herald2,socketio2,sockudo
#   SCENARIOS: comma-separated subset of s2,s3,storm (default all three)
#   S3_RATE (default 2000), STORM_OPENERS (default 32)
#   PIN=S:L: servers (and Redis, and the floor's writer) on CPUs S, the load
#   tool (and the floor's readers) on CPUs L, with taskset: e.g. PIN=0:1
#   gives each side a core of its own instead of sharing both
# The peers' start scripts come from HERALD_PEERS (default ../shared/peers);
# they install into ~/.cache/herald-peers on first use (sockudo: a cargo
# install of about 10 minutes, needs protobuf-compiler).
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-10000}
rounds=${2:-3}
seconds=${3:-10}
IFS=, read -r -a rates <<<"${4:-50000,100000,200000,400000}"
IFS=, read -r -a servers <<<"${5:-floor,herald1,herald2,socketio2,sockudo}"
openers=${OPENERS:-4}
s3_rate=${S3_RATE:-2000}
storm_openers=${STORM_OPENERS:-32}
peers=${HERALD_PEERS:-../shared/peers}
on_server=() on_load=() floor_pin=()
if [ -n "${PIN:-}" ]; then
  on_server=(taskset -c "${PIN%%:*}") on_load=(taskset -c "${PIN##*:}")
  floor_pin=(--writer-cpus "${PIN%%:*}")
fi
ulimit -n 20000
cargo build --release -q -p herald-gateway -p herald-tests --bin herald-gateway --bin herald-wsload --bin herald-floor
dir=$(mktemp -d)
results="$dir/results"
: >"$results"
# Below the ephemeral range (32768-60999): the load tool's own sockets
# could hold any port above it.
first_port=$((20000 + RANDOM % 4000))
started=()
stop_all() {
  for pid in "${started[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
  # A server that is still draining after 5 s is killed: the next one must
  # not share the machine with it.
  for pid in "${started[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
  done
  started=()
}
cleanup() { stop_all; rm -rf "$dir"; }
trap cleanup EXIT

wait_http() {
  for _ in $(seq 1 600); do curl -sf -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "not answering: $1" >&2
  return 1
}

# Start SERVER; sets proto, gateways, pids, publish, extra for herald-wsload.
# Every start takes ports of its own, so nothing left of the previous one
# can answer in its place.
starts=0
start_server() {
  local server=$1
  extra=()
  starts=$((starts + 1))
  base=$((first_port + 10 * (starts % 400)))
  case "$server" in
    herald1 | herald2)
      local n=${server#herald} port_redis=$base
      "${on_server[@]}" redis-server --port "$port_redis" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >/dev/null &
      started+=($!)
      for _ in $(seq 1 100); do redis-cli -p "$port_redis" ping >/dev/null 2>&1 && break; sleep 0.1; done
      gateways="" pids=""
      for i in $(seq 1 "$n"); do
        HERALD_REDIS_URL="redis://127.0.0.1:$port_redis" HERALD_LISTEN="127.0.0.1:$((base + i))" \
        HERALD_JWT_SECRET=test-jwt-secret-0123456789 HERALD_LOG_FORMAT=text RUST_LOG=warn \
          setsid "${on_server[@]}" target/release/herald-gateway >/dev/null 2>"$dir/gw-$i.err" &
        started+=($!)
        pids+="${pids:+,}$!"
        gateways+="${gateways:+,}127.0.0.1:$((base + i))"
        wait_http "http://127.0.0.1:$((base + i))/readyz"
      done
      proto=herald publish="redis://127.0.0.1:$port_redis"
      ;;
    socketio2)
      REDIS_PORT=$base BASE_PORT=$base setsid "${on_server[@]}" "$peers/socketio/start.sh" 2 >"$dir/sio.out" 2>"$dir/sio.err" &
      started+=($!)
      wait_http "http://127.0.0.1:$((base + 1))/stats"
      wait_http "http://127.0.0.1:$((base + 2))/stats"
      pids=$(grep -o 'replica [0-9]* pid=[0-9]*' "$dir/sio.out" | cut -d= -f2 | paste -sd,)
      gateways="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
      proto=socketio publish="127.0.0.1:$((base + 1))" extra=(--gc)
      ;;
    sockudo)
      SOCKUDO_PORT=$((base + 1)) setsid "${on_server[@]}" "$peers/sockudo/start.sh" >"$dir/sockudo.out" 2>"$dir/sockudo.err" &
      started+=($!)
      wait_http "http://127.0.0.1:$((base + 1))/up/bench"
      pids=${started[-1]}
      gateways="127.0.0.1:$((base + 1))"
      proto=pusher publish="127.0.0.1:$((base + 1))"
      ;;
    *) echo "unknown server $server" >&2; exit 2 ;;
  esac
}

has() { [[ ",${SCENARIOS:-s2,s3,storm}," == *",$1,"* ]]; }
# One load run against a fresh start of SERVER; the result line is tagged
# with the scenario and the offered rate.
run_load() { # server scenario rate wsload-args...
  local server=$1 scenario=$2 rate=$3 out
  shift 3
  start_server "$server"
  out=$("${on_load[@]}" target/release/herald-wsload --protocol "$proto" --gateway "$gateways" --pid "$pids" \
    --publish "$publish" --connections "$connections" "${extra[@]}" "$@" 2>&1 | tr '\n' ' ') || true
  echo "round=$round server=$server scenario=$scenario rate=$rate $out" | tee -a "$results"
  stop_all
}

for round in $(seq 1 "$rounds"); do
  for server in "${servers[@]}"; do
    if has s2; then
      for rate in "${rates[@]}"; do
        per_s=$((rate / connections))
        [ "$per_s" -ge 1 ] || per_s=1
        events=$((per_s * seconds))
        if [ "$server" = floor ]; then
          out=$("${on_load[@]}" target/release/herald-floor --connections "$connections" --events "$events" \
            --rate "$per_s" "${floor_pin[@]}")
          echo "round=$round server=floor scenario=s2 rate=$rate $out" | tee -a "$results"
          continue
        fi
        run_load "$server" s2 "$rate" --openers "$openers" --events "$events" --rate "$per_s"
      done
    fi
    # The floor writes one frame to every socket: it has no topics to pick
    # from and no handshake beyond the upgrade.
    [ "$server" != floor ] || continue
    if has s3; then
      run_load "$server" s3 "$s3_rate" --openers "$openers" --topics "$connections" \
        --events "$((s3_rate * seconds))" --rate "$s3_rate"
    fi
    if has storm; then
      users=()
      [[ "$server" != herald* ]] || users=(--distinct-users)
      run_load "$server" storm 0 --openers "$storm_openers" --sources 64 "${users[@]}" \
        --events 1 --rate 1
    fi
  done
done

python3 - "$results" "${rates[@]}" <<'PY'
import statistics, sys
path, rates = sys.argv[1], [int(r) for r in sys.argv[2:]]
runs = []
for line in open(path):
    kv = dict(f.split("=", 1) for f in line.split() if "=" in f)
    runs.append(kv)
def med(server, rate, key, scenario="s2"):
    vals = [float(r[key]) for r in runs
            if r.get("server") == server and r.get("scenario") == scenario
            and int(r["rate"]) == rate and key in r]
    return statistics.median(vals) if vals else None
servers = []
for r in runs:
    if r["server"] not in servers:
        servers.append(r["server"])
fmt = lambda v, f="{:.2f}": "-" if v is None else f.format(v)
has_s2 = any(r.get("scenario") == "s2" for r in runs)
if has_s2:
    print("\nS2: one topic, medians of the rounds")
    # The server's own time to write one event to every socket: the
    # floor's burst, Herald's herald_fanout_seconds (its p50 and p99 over
    # the run's events, read off the histogram's 10 ms buckets).
    print("| server | offered/s | delivered/s | lost | dup | p50 ms | p99 ms | CPU µs/delivery | own fan-out ms p50 / p99 | KiB/conn | connects/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in servers:
        for rate in rates:
            if s == "floor":
                print(f"| floor | {rate} | {fmt(med(s, rate, 'deliveries_per_s'), '{:.0f}')} | 0 | 0 "
                      f"| {fmt(med(s, rate, 'p50_ms'))} | {fmt(med(s, rate, 'p99_ms'))} "
                      f"| - | burst {fmt(med(s, rate, 'burst_ms_median'))} | - | - |")
                continue
            print(f"| {s} | {rate} | {fmt(med(s, rate, 'deliveries_per_s'), '{:.0f}')} "
                  f"| {fmt(med(s, rate, 'lost'), '{:.0f}')} | {fmt(med(s, rate, 'duplicated'), '{:.0f}')} "
                  f"| {fmt(med(s, rate, 'p50_ms'))} | {fmt(med(s, rate, 'p99_ms'))} "
                  f"| {fmt(med(s, rate, 'gateway_cpu_us_per_delivery'))} "
                  f"| {fmt(med(s, rate, 'fanout_ms_p50'))} / {fmt(med(s, rate, 'fanout_ms_p99'))} "
                  f"| {fmt(med(s, rate, 'per_connection_kib'))} | {fmt(med(s, rate, 'opened_per_s'), '{:.0f}')} |")
def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b
s3_rate = next((int(r["rate"]) for r in runs if r.get("scenario") == "s3"), None)
if s3_rate is not None:
    print(f"\nS3: one topic per connection, {s3_rate} events/s")
    print("| server | delivered/s | lost | dup | p50 ms | p99 ms | CPU µs/delivery |")
    print("|---|---|---|---|---|---|---|")
    for s in servers:
        if s == "floor":
            continue
        m = lambda key: med(s, s3_rate, key, "s3")
        print(f"| {s} | {fmt(m('deliveries_per_s'), '{:.0f}')} | {fmt(m('lost'), '{:.0f}')} "
              f"| {fmt(m('duplicated'), '{:.0f}')} | {fmt(m('p50_ms'))} | {fmt(m('p99_ms'))} "
              f"| {fmt(m('gateway_cpu_us_per_delivery'))} |")
if any(r.get("scenario") == "storm" for r in runs):
    print("\nconnect storm (one load process)")
    print("| server | connections/s | KiB/conn |")
    print("|---|---|---|")
    for s in servers:
        if s != "floor":
            print(f"| {s} | {fmt(med(s, 0, 'opened_per_s', 'storm'), '{:.0f}')} "
                  f"| {fmt(med(s, 0, 'per_connection_kib', 'storm'))} |")
print("\nagainst the targets")
kib = med("herald1", rates[0], "per_connection_kib")
print(f"S1 herald1 KiB per idle connection: {fmt(kib)} (target <= 5)")
if 100000 in rates:
    burst = med("floor", 100000, "burst_ms_median")
    print(f"S2 100k/s herald1 p99 / floor burst: {fmt(ratio(med('herald1', 100000, 'p99_ms'), burst))} (target <= 1.25)")
    print(f"S2 100k/s herald1 p99 / floor p99 (both read by the same client): "
          f"{fmt(ratio(med('herald1', 100000, 'p99_ms'), med('floor', 100000, 'p99_ms')))}")
    print(f"S2 100k/s floor p99 / floor burst (what reading on the same cores adds): "
          f"{fmt(ratio(med('floor', 100000, 'p99_ms'), burst))}")
    print(f"S2 100k/s herald1 own fan-out p50 / floor burst (server side only): "
          f"{fmt(ratio(med('herald1', 100000, 'fanout_ms_p50'), burst))}")
if 200000 in rates:
    burst = med("floor", 200000, "burst_ms_median")
    conns = [float(r["connections"]) for r in runs if r.get("server") == "floor" and "connections" in r]
    if burst and conns:
        floor_us = burst * 1000 / conns[0]
        print(f"S2 200k/s herald1 CPU per delivery / floor write: "
              f"{fmt(ratio(med('herald1', 200000, 'gateway_cpu_us_per_delivery'), floor_us))} (target <= 1.25)")
top = max(rates)
for peer, target in (("sockudo", 2.5), ("socketio2", 3.0)):
    print(f"S2 {top}/s delivered herald1 / {peer}: "
          f"{fmt(ratio(med('herald1', top, 'deliveries_per_s'), med(peer, top, 'deliveries_per_s')))} (target >= {target})")
PY
