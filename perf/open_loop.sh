#!/usr/bin/env bash
# Closed loop vs open loop on the same workload: what coordinated omission
# hides.
#
# Starts one `golem node` on loopback (data in a temporary directory), runs
# YCSB workload A with golem-loadgen twice — closed loop, then open loop at
# a fixed rate (latency measured from each operation's intended send time;
# the *-SERVICE rows are from the actual send) — and writes the tables,
# JSON, .hgrm files and SVG plots to perf/results/open_loop-<timestamp>/.
# Stops the node by its pid.
#
# Usage: perf/open_loop.sh [rate_ops_s] [operationcount] [shards]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
. perf/lib.sh

rate="${1:-20000}"
ops="${2:-200000}"
shards="${3:-2}"
port="${GOLEM_PERF_PORT:-17420}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="perf/results/open_loop-${stamp}"
mkdir -p "$out"

cargo build --release -p golem-engine --bin golem >/dev/null
cargo build --release -p golem-loadgen >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"
golem_start_node "$bin" "$port" "$shards" "$out/node.log"

{
  echo "# workload A, 10,000 records, ${ops} operations, 4 conns x 32 workers; closed loop, then open loop at ${rate} ops/s"
  echo "# golem: one node, ${shards} shards, one region, one voter"
  echo "# machine: $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); node and load generator share the CPUs"
  echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "# command: CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} perf/open_loop.sh $rate $ops $shards"
} >"$out/summary.txt"

common=(--addr "127.0.0.1:${port}" -P workloada -p recordcount=10000
  -p "operationcount=${ops}" --connections 4 --in-flight 32)
for driver in closed open; do
  extra=()
  [ "$driver" = open ] && extra=(-p "target=${rate}")
  echo "== $driver" | tee -a "$out/summary.txt"
  "$bin/golem-loadgen" "${common[@]}" "${extra[@]}" --json-out "$out/$driver.json" \
    --hgrm-dir "$out/hgrm-$driver" --svg-out "$out/$driver.svg" | tee -a "$out/summary.txt"
done
echo "results in $out"
