#!/usr/bin/env bash
# Idle cost of many regions on one node: CPU and memory per region, with
# and without hibernation, side by side in one run.
#
# For each region count N (default 1, 10000, 100000) and each of
# --hibernate-regions true/false, starts a stand-alone `golem node`
# (2 shards) with `--initial-regions N` (single-voter regions splitting the
# key space), waits until every shard created its regions and until one
# more settle period (hibernation starts after 2 election timeouts), then
# samples the process's CPU time (utime+stime from /proc/PID/stat) over the
# window and its VmRSS at the end. Writes a Markdown summary to
# perf/results/ and stops every node by its pid.
#
# Usage: perf/many_regions.sh [window_s] [counts...]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
. perf/lib.sh

window="${1:-20}"
shift || true
counts=("$@")
if [ ${#counts[@]} -eq 0 ]; then counts=(1 10000 100000); fi
port="${GOLEM_PERF_PORT:-17700}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="perf/results/many-regions-${stamp}.md"
mkdir -p perf/results

cargo build --release --bin golem >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"
hz="$(getconf CLK_TCK)"

pid=""
data=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$data" ]; then rm -rf "$data"; fi
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

{
  echo "# Idle cost of many regions (stand-alone node, 2 shards, single-voter regions)"
  echo
  echo "Command: \`perf/many_regions.sh ${window} ${counts[*]}\` on $(nproc) vCPUs; CPU over a ${window} s idle window after start-up and a 5 s settle; RSS at the end of the window."
  echo
  echo "| regions | hibernate | start-up s | CPU % of one core | VmRSS MiB | RSS KiB / region (vs 1 region) |"
  echo "|---:|---|---:|---:|---:|---:|"
} >"$out"

declare -A base_rss
for hib in true false; do
  for n in "${counts[@]}"; do
    data="$(mktemp -d -t golem-perf-regions-XXXXXX)"
    log="$(mktemp -t golem-perf-regions-log-XXXXXX)"
    t0=$(date +%s.%N)
    "$bin/golem" node --data-dir "$data" --listen "127.0.0.1:${port}" --shards 2 --pin off \
      --initial-regions "$n" --hibernate-regions "$hib" >"$log" 2>&1 &
    pid=$!
    golem_wait_port "$port"
    # Both shards report their regions once created (n = 1 bootstraps
    # the usual first region instead).
    if [ "$n" -gt 1 ]; then
      for _ in $(seq 1 600); do
        [ "$(grep -c 'created the initial regions' "$log")" -ge 2 ] && break
        sleep 0.1
      done
    fi
    t1=$(date +%s.%N)
    sleep 5
    c0=$(cpu_ticks "$pid")
    sleep "$window"
    c1=$(cpu_ticks "$pid")
    rss=$(rss_kib "$pid")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    rm -rf "$data" "$log"; data=""
    cpu=$(awk -v d=$((c1 - c0)) -v hz="$hz" -v w="$window" 'BEGIN {printf "%.2f", 100 * d / hz / w}')
    if [ "$n" -eq 1 ]; then base_rss[$hib]=$rss; fi
    per=$(awk -v r="$rss" -v b="${base_rss[$hib]:-$rss}" -v n="$n" 'BEGIN { if (n > 1) printf "%.2f", (r - b) / (n - 1); else printf "-" }')
    up=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
    echo "| $n | $hib | $up | $cpu | $(awk -v r="$rss" 'BEGIN {printf "%.1f", r / 1024}') | $per |" >>"$out"
    echo "regions=$n hibernate=$hib startup=${up}s cpu=${cpu}% rss=${rss}KiB" >&2
  done
done
echo >>"$out"
echo "CPU % is of one core (100 = one core busy). Lower is better." >>"$out"
cat "$out"
