#!/usr/bin/env bash
# Single-node put and get throughput and latency, side by side in one run.
#
# Starts one `golem node` (data in a temporary directory) on loopback, runs
# golem-loadgen in put mode and then get mode at each concurrency, writes the
# JSON reports and a summary to perf/results/, and stops the node by its pid.
#
# Usage: perf/single_node.sh [duration_s] [shards]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
. perf/lib.sh

duration="${1:-10}"
shards="${2:-2}"
port="${GOLEM_PERF_PORT:-17400}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="perf/results/single_node-${stamp}"
mkdir -p "$out"

cargo build --release --bin golem --bin golem-loadgen >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"
golem_start_node "$bin" "$port" "$shards" "$out/node.log"

{
  echo "# single node, ${shards} shards, ${duration}s per run, 256 B values, 100k keys"
  echo "# machine: $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
  echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$out/summary.txt"

for conc in "1 1" "4 32"; do
  set -- $conc
  for mode in put get; do
    name="${mode}-c$1-f$2"
    echo "== $name" | tee -a "$out/summary.txt"
    "$bin/golem-loadgen" --addr "127.0.0.1:${port}" --mode "$mode" \
      --connections "$1" --in-flight "$2" --duration-s "$duration" \
      --json-out "$out/$name.json" | tee -a "$out/summary.txt"
  done
done
echo "results in $out"
