#!/usr/bin/env bash
# Three-way replicated put and get throughput and latency next to a single
# node, side by side in one run, all on this one machine (loopback).
#
# Starts a PD (--initial-replicas 3) and three `golem node`s (data in
# temporary directories), runs golem-loadgen against the cluster in put and
# get mode at each concurrency, then the same workloads against a single
# stand-alone node, writes JSON reports and a summary to perf/results/, and
# stops every process by its pid.
#
# Usage: perf/replicated.sh [duration_s] [shards_per_node]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
. perf/lib.sh

duration="${1:-10}"
shards="${2:-1}"
base="${GOLEM_PERF_PORT:-17500}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="perf/results/replicated-${stamp}"
mkdir -p "$out"

cargo build --release --bin golem --bin golem-loadgen >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"

pids=()
dirs=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "${dirs[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

pd_port=$((base + 90))
d="$(mktemp -d -t golem-perf-pd-XXXXXX)"; dirs+=("$d")
"$bin/golem" pd --listen "127.0.0.1:${pd_port}" --data-dir "$d" --initial-replicas 3 \
  >"$out/pd.log" 2>&1 &
pids+=($!)
nodes=()
for i in 0 1 2; do
  port=$((base + 10 * i))
  d="$(mktemp -d -t golem-perf-node-XXXXXX)"; dirs+=("$d")
  "$bin/golem" node --data-dir "$d" --listen "127.0.0.1:${port}" --shards "$shards" \
    --pin off --pd "127.0.0.1:${pd_port}" >"$out/node$i.log" 2>&1 &
  pids+=($!)
  nodes+=("127.0.0.1:${port}")
done
for i in 0 1 2; do golem_wait_port $((base + 10 * i)); done

single_port=$((base + 50))
d="$(mktemp -d -t golem-perf-single-XXXXXX)"; dirs+=("$d")
"$bin/golem" node --data-dir "$d" --listen "127.0.0.1:${single_port}" --shards "$shards" \
  --pin off >"$out/single.log" 2>&1 &
pids+=($!)
golem_wait_port "$single_port"

{
  echo "# 3 replicas (PD + 3 nodes) vs 1 stand-alone node, all on one machine; ${shards} shard(s) per node, ${duration}s per run, 256 B values"
  echo "# machine: $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "# command: perf/replicated.sh $*"
} >"$out/summary.txt"

# The client learns the leader from its seed node's routing answers.
cluster_addrs="${nodes[0]}"
for conc in "1 1" "4 32"; do
  set -- $conc
  for mode in put get; do
    for target in replicated single; do
      addr="$cluster_addrs"
      [[ "$target" == single ]] && addr="127.0.0.1:${single_port}"
      name="${target}-${mode}-c$1-f$2"
      echo "== $name" | tee -a "$out/summary.txt"
      "$bin/golem-loadgen" --addr "$addr" --mode "$mode" \
        --connections "$1" --in-flight "$2" --duration-s "$duration" \
        --json-out "$out/$name.json" | tee -a "$out/summary.txt"
    done
  done
done
echo "results in $out"
