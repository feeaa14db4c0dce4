#!/usr/bin/env bash
# A/B comparison of two `golem` builds on the same workloads, interleaved in
# one run so that machine noise hits both alike.
#
# Usage: perf/ab.sh A_BIN_DIR B_BIN_DIR [duration_s] [rounds]
#   A_BIN_DIR/B_BIN_DIR hold a `golem` binary each (e.g. target/release of
#   two worktrees). The load generator is A's, so the client is the same.
# A_NODE_ARGS / B_NODE_ARGS (environment) add node flags per side, so one
# binary can be compared against itself with another setting.
# Writes perf/results/ab-<timestamp>/{summary.txt,*.json} and prints the
# B/A ratio of throughput and p99 for each workload.
set -euo pipefail
cd "$(dirname "$0")/.."
a="$1"; b="$2"; duration="${3:-5}"; rounds="${4:-2}"
port="${GOLEM_PERF_PORT:-17400}"
out="perf/results/ab-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
loadgen="$a/golem-loadgen"
{
  echo "A: $a ${A_NODE_ARGS:-}"
  echo "B: $b ${B_NODE_ARGS:-}"
  echo "duration ${duration}s, rounds ${rounds}, commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$out/setup.txt"

run_one() { # bin_dir label workload_name loadgen_args...
  local bin="$1" label="$2" name="$3"; shift 3
  local extra="${A_NODE_ARGS:-}"
  [[ "$label" == B* ]] && extra="${B_NODE_ARGS:-}"
  local data; data="$(mktemp -d -t golem-ab-XXXXXX)"
  "$bin/golem" node --data-dir "$data" --listen "127.0.0.1:${port}" --shards 2 --pin off $extra \
    >"$out/node-$label-$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/${port}") 2>/dev/null && break; sleep 0.1; done
  "$loadgen" --addr "127.0.0.1:${port}" --duration-s "$duration" "$@" \
    --json-out "$out/$label-$name.json" >/dev/null
  kill "$pid"; wait "$pid" || true
  rm -rf "$data"
}

workloads=(
  "put-c1-f1:--mode put --connections 1 --in-flight 1"
  "put-c4-f32:--mode put --connections 4 --in-flight 32"
  "get-c4-f32:--mode get --connections 4 --in-flight 32"
)
for r in $(seq 1 "$rounds"); do
  for w in "${workloads[@]}"; do
    name="${w%%:*}"; args="${w#*:}"
    # shellcheck disable=SC2086
    run_one "$a" "A-r$r" "$name" $args
    # shellcheck disable=SC2086
    run_one "$b" "B-r$r" "$name" $args
  done
done

python3 - "$out" "$rounds" "${workloads[@]}" <<'PY' | tee "$out/summary.txt"
import json, sys, statistics
out, rounds, workloads = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"{'workload':<12} {'A ops/s':>10} {'B ops/s':>10} {'B/A':>6} {'A p99 µs':>9} {'B p99 µs':>9} {'B/A':>6}")
for w in workloads:
    name = w.split(":")[0]
    def agg(label):
        ops, p99 = [], []
        for r in range(1, rounds + 1):
            j = json.load(open(f"{out}/{label}-r{r}-{name}.json"))
            ops.append(j["total_ops_per_s"])
            p99.append(max(o["latency"]["p99_us"] for o in j["ops"]))
        return statistics.median(ops), statistics.median(p99)
    ao, ap = agg("A"); bo, bp = agg("B")
    print(f"{name:<12} {ao:>10.0f} {bo:>10.0f} {bo/ao:>6.2f} {ap:>9} {bp:>9} {bp/ap:>6.2f}")
PY
echo "results in $out"
