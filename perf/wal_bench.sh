#!/usr/bin/env bash
# Shard WAL write benchmark: appends/s and MB/s with group commit versus one
# fdatasync per write (and O_DSYNC writes), side by side in one run.
#
# Builds the `wal_bench` example of golem-engine in release mode, runs it
# with its WAL directories under $GOLEM_WAL_BENCH_DIR (default /var/tmp: the
# real disk, not tmpfs), and writes to perf/results/wal-<timestamp>/:
#   command.txt  the command line
#   machine.txt  CPUs, memory, kernel, commit, filesystem and disk of the
#                WAL directory, load average before and after
#   table.txt    the text table (medians over the rounds)
#   wal.json     every round's figures and the medians
#   run.log      progress (one line per case and round)
# The example creates and removes its own temporary directory; it starts
# no process.
#
# Usage: perf/wal_bench.sh [duration_s] [rounds] [extra wal_bench args...]
#   e.g. perf/wal_bench.sh 5 1
#        perf/wal_bench.sh 2 3 --sizes 4096 --writers 1,16
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-5}"
rounds="${2:-1}"
shift $(( $# > 2 ? 2 : $# ))
dir="${GOLEM_WAL_BENCH_DIR:-/var/tmp}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="perf/results/wal-${stamp}"
mkdir -p "$out"

cargo build --release -p golem-engine --example wal_bench >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release/examples/wal_bench"
cmd=("$bin" --dir "$dir" --duration-s "$duration" --rounds "$rounds"
  --json-out "$out/wal.json" "$@")

{
  echo "perf/wal_bench.sh $duration $rounds $*"
  echo "${cmd[*]}"
} >"$out/command.txt"

{
  echo "# machine: $(nproc) CPUs ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r)"
  echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) ($(git status --porcelain -- . ':(exclude)perf/results' 2>/dev/null | wc -l) paths modified or untracked outside perf/results)"
  echo "# WAL directory parent: $dir"
  df -hT "$dir"
  lsblk -o NAME,TYPE,SIZE,ROTA,LOG-SEC,PHY-SEC,MOUNTPOINTS 2>/dev/null || true
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/machine.txt"

"${cmd[@]}" 2> >(tee "$out/run.log" >&2) | tee "$out/table.txt"

echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/machine.txt"
echo "results in $out"
