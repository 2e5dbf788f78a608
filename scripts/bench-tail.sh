#!/usr/bin/env bash
# Tail latency against the physical floor, in one sitting: for the same
# fan-out (CONNECTIONS subscribers of one topic, EVENTS events at RATE per
# second), `herald-floor` (one pre-encoded frame written to each socket,
# no gateway) and Herald (scripts/bench.sh), RUNS times each, alternating.
# Prints every run, the medians, and Herald's p99 over the floor's burst
# time (the writer's time to reach every socket once: the issue's target is
# <= 1.25) and over the floor's own p99 (its readers share the cores too).
# Usage: scripts/bench-tail.sh [connections] [events] [rate] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-10000}
events=${2:-100}
rate=${3:-10}
runs=${4:-3}
ulimit -n 20000
cargo build --release -q -p herald-tests --bin herald-floor
floor_p99=()
floor_burst=()
herald_p99=()
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for run in $(seq 1 "$runs"); do
  floor=$(target/release/herald-floor --connections "$connections" --events "$events" --rate "$rate")
  echo "run $run: $floor"
  floor_p99+=("$(grep -o 'p99_ms=[0-9.]*' <<<"$floor" | cut -d= -f2)")
  floor_burst+=("$(grep -o 'burst_ms_median=[0-9.]*' <<<"$floor" | cut -d= -f2)")
  herald=$(scripts/bench.sh "$connections" "$events" "$rate" 1 | grep '^events=')
  echo "run $run: herald $herald"
  herald_p99+=("$(grep -o 'p99_ms=[0-9.]*' <<<"$herald" | cut -d= -f2)")
done
f=$(median "${floor_p99[@]}")
b=$(median "${floor_burst[@]}")
h=$(median "${herald_p99[@]}")
echo "medians: floor burst ${b} ms, floor p99 ${f} ms, herald p99 ${h} ms;" \
  "herald p99 / floor burst $(awk -v h="$h" -v b="$b" 'BEGIN { printf "%.2f", h / b }')," \
  "herald p99 / floor p99 $(awk -v h="$h" -v f="$f" 'BEGIN { printf "%.2f", h / f }')"
