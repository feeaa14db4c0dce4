#!/usr/bin/env bash
# Idle cost of many *replicated* regions: CPU and memory per region replica
# on each of three nodes, with and without hibernation, side by side in one
# run (issue #5: 10,000 regions on a node, and more).
#
# For each region count N (default 1000 10000; a 1-region baseline is always
# measured first) and each of --hibernate-regions true/false: starts a PD
# (--initial-replicas 3) and three `golem node`s (2 shards each, data in
# temporary directories), turns the cluster's one region into N with the
# `split_many` example (recursive halving splits at evenly spaced 4-byte
# keys, --concurrency splits in flight), waits until the PD lists N regions,
# lets the cluster settle (hibernation starts after 2 election timeouts of
# quiet; the nodes' first region heartbeats to the PD must drain), then
# samples each node's and the PD's CPU time (utime+stime from
# /proc/PID/stat) over the window and VmRSS at its end. Writes a Markdown
# table to perf/results/replicated-regions-<stamp>.md (logs of a failed
# case next to it) and stops every process by its pid.
#
# Usage: perf/replicated_regions.sh [window_s] [counts...]
#   GOLEM_PERF_PORT (default 17800), SETTLE_S (default 10),
#   SPLIT_CONCURRENCY (default 512), SPLIT_WAIT_S (default 600)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
. perf/lib.sh

window="${1:-20}"
shift || true
counts=("$@")
if [ ${#counts[@]} -eq 0 ]; then counts=(1000 10000); fi
if [ "${counts[0]}" != 1 ]; then counts=(1 "${counts[@]}"); fi
base="${GOLEM_PERF_PORT:-17800}"
settle="${SETTLE_S:-10}"
conc="${SPLIT_CONCURRENCY:-512}"
split_wait="${SPLIT_WAIT_S:-600}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="perf/results/replicated-regions-${stamp}.md"
logs="perf/results/replicated-regions-${stamp}-logs"
mkdir -p perf/results

cargo build --release --bin golem --example split_many >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"
split_many="$bin/examples/split_many"
hz="$(getconf CLK_TCK)"

pids=()
dirs=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "${dirs[@]}"; do rm -rf "$d"; done
  pids=()
  dirs=()
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
alive() { kill -0 "$1" 2>/dev/null; }

{
  echo "# Idle cost of many replicated regions (PD + 3 nodes, 2 shards each, 3 replicas per region)"
  echo
  echo "Command: \`perf/replicated_regions.sh ${window} ${counts[*]}\` (settle ${settle} s, ${conc} splits in flight) at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown);"
  echo "machine: $(nproc) vCPUs, $(free -g | awk '/Mem:/{print $2}') GiB, load before $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "CPU over a ${window} s idle window after the PD listed every region and a ${settle} s settle; RSS at the end of the window."
  echo "Every node holds a replica of every region. CPU % is of one core."
  echo
  echo "| regions | hibernate | splits/s | PD lists all after s | leaders by store | CPU % node0 / node1 / node2 | CPU % PD | RSS MiB node0 / node1 / node2 | RSS KiB per replica (vs 1 region), per node | notes |"
  echo "|---:|---|---:|---:|---|---|---:|---|---|---|"
} >"$out"

declare -A base_rss
for n in "${counts[@]}"; do
  for hib in true false; do
    case_logs="$(mktemp -d -t golem-perf-rr-logs-XXXXXX)"
    dirs+=("$case_logs")
    pd_port=$((base + 90))
    d="$(mktemp -d -t golem-perf-rr-pd-XXXXXX)"; dirs+=("$d")
    "$bin/golem" pd --listen "127.0.0.1:${pd_port}" --data-dir "$d" --initial-replicas 3 --no-scheduling \
      >"$case_logs/pd.log" 2>&1 &
    pd_pid=$!; pids+=("$pd_pid")
    node_pids=()
    for i in 0 1 2; do
      port=$((base + 10 * i))
      d="$(mktemp -d -t golem-perf-rr-node-XXXXXX)"; dirs+=("$d")
      RUST_LOG="${RUST_LOG:-info}" "$bin/golem" node --data-dir "$d" --listen "127.0.0.1:${port}" \
        --shards 2 --pin off --pd "127.0.0.1:${pd_port}" --hibernate-regions "$hib" \
        >"$case_logs/node$i.log" 2>&1 &
      node_pids+=($!); pids+=($!)
    done
    for i in 0 1 2; do golem_wait_port $((base + 10 * i)); done
    notes=""
    "$split_many" --pd "127.0.0.1:${pd_port}" --wait 1 --wait-s 60 >/dev/null
    # Let the first region elect and report its leader.
    sleep 2
    rate="-"; pd_s="-"
    if [ "$n" -gt 1 ]; then
      if "$split_many" --pd "127.0.0.1:${pd_port}" --regions "$n" --concurrency "$conc" \
          --wait "$n" --wait-s "$split_wait" >"$case_logs/split.out" 2>"$case_logs/split.err"; then
        :
      else
        notes="split_many failed (exit $?); "
      fi
      cat "$case_logs/split.out" >&2
      rate=$(sed -n 's/.*splits_per_s=\([0-9.]*\).*/\1/p' "$case_logs/split.out" | head -1)
      pd_s=$(sed -n 's/.*total_s=\([0-9.]*\).*/\1/p' "$case_logs/split.out" | head -1)
      failed=$(sed -n 's/.*splits_failed=\([0-9]*\).*/\1/p' "$case_logs/split.out" | head -1)
      busy=$(sed -n 's/.*busy_retries=\([0-9]*\).*/\1/p' "$case_logs/split.out" | head -1)
      [ -n "$failed" ] && [ "$failed" != 0 ] && notes+="${failed} splits failed; "
      [ -n "$busy" ] && [ "$busy" != 0 ] && notes+="${busy} ServerBusy retries; "
      rate="${rate:--}"; pd_s="${pd_s:--}"
    fi
    sleep "$settle"
    for i in 0 1 2; do alive "${node_pids[$i]}" || notes+="node$i died before the window; "; done
    c0=(); for p in "${node_pids[@]}" "$pd_pid"; do c0+=("$(cpu_ticks "$p")"); done
    sleep "$window"
    c1=(); for p in "${node_pids[@]}" "$pd_pid"; do c1+=("$(cpu_ticks "$p")"); done
    rss=(); for p in "${node_pids[@]}"; do rss+=("$(rss_kib "$p")"); done
    for i in 0 1 2; do alive "${node_pids[$i]}" || notes+="node$i died in the window; "; done
    leaders=$("$split_many" --pd "127.0.0.1:${pd_port}" --count 2>/dev/null | sed -n 's/.*leaders_by_store=\(.*\)/\1/p')
    pd_have=$("$split_many" --pd "127.0.0.1:${pd_port}" --count 2>/dev/null | sed -n 's/^regions=\([0-9]*\).*/\1/p')
    [ "${pd_have:-0}" != "$n" ] && notes+="PD lists ${pd_have:-?} regions; "
    for i in 0 1 2; do
      w=$(grep -c -E ' (WARN|ERROR) ' "$case_logs/node$i.log" || true)
      [ "$w" != 0 ] && notes+="node$i: ${w} WARN/ERROR lines; "
    done
    cpu=(); for j in 0 1 2 3; do
      cpu+=("$(awk -v d=$((c1[j] - c0[j])) -v hz="$hz" -v w="$window" 'BEGIN {printf "%.2f", 100 * d / hz / w}')")
    done
    if [ "$n" -eq 1 ]; then base_rss[$hib]="${rss[*]}"; fi
    read -r -a b <<<"${base_rss[$hib]:-${rss[*]}}"
    per=()
    for i in 0 1 2; do
      per+=("$(awk -v r="${rss[$i]}" -v b="${b[$i]}" -v n="$n" 'BEGIN { if (n > 1) printf "%.2f", (r - b) / (n - 1); else printf "-" }')")
    done
    mib=(); for i in 0 1 2; do mib+=("$(awk -v r="${rss[$i]}" 'BEGIN {printf "%.1f", r / 1024}')"); done
    echo "| $n | $hib | $rate | $pd_s | ${leaders:-?} | ${cpu[0]} / ${cpu[1]} / ${cpu[2]} | ${cpu[3]} | ${mib[0]} / ${mib[1]} / ${mib[2]} | ${per[0]} / ${per[1]} / ${per[2]} | ${notes%; } |" >>"$out"
    echo "regions=$n hibernate=$hib rate=$rate cpu=${cpu[*]} rss=${rss[*]} notes=${notes}" >&2
    if [ -n "$notes" ] && [ "$n" -gt 1 ]; then
      mkdir -p "$logs/n${n}-hib-${hib}"
      for f in "$case_logs"/*; do tail -c 2000000 "$f" >"$logs/n${n}-hib-${hib}/$(basename "$f")"; done
    fi
    cleanup
  done
done
{
  echo
  echo "splits/s: N − 1 splits over the time split_many took (its own count, before the PD listed them all);"
  echo "PD lists all after s: from the first split until a paged PD scan returned N regions."
  echo "Leaders by store: store id:regions whose leader the PD names (0: none reported)."
} >>"$out"
cat "$out"
