#!/usr/bin/env bash
# Restart time of a `golem node` against the size of the WAL it must replay.
#
# For each case NAME:RECORDS:MEMTABLE_KIB it starts one node (data in a new
# temporary directory, RUST_LOG=info), loads RECORDS records with
# golem-loadgen (YCSB load phase: one field of VALUE_BYTES bytes per record,
# 4 connections x 32 in flight), writes a probe key with `golem ctl put` as
# the very last write, waits SETTLE_S seconds (the raft loop's once-a-second
# WAL deletion and LSM flushes run), then kill -9s the node by its pid and
# measures what is on disk:
#   - WAL allocated (du of data_dir/wal: segments are preallocated),
#   - WAL written (per segment, the bytes up to its last non-zero byte),
#   - LSM (du of data_dir/lsm).
# Then, REPS times: drops the page cache (sync; echo 3 > drop_caches, then
# reads the golem binary back so only the data is cold) and restarts the
# node ("cold"), kill -9s it, restarts it at once without dropping anything
# ("warm"), kill -9s it. Before every start it waits until nothing listens
# on the port any more (see wait_port_free). Each restart is timed from just
# before the exec until (a) shard 0's port accepts a TCP connection and
# (b) `golem ctl get` of the probe key answers the probe's value (the node
# serves reads and has applied the whole replayed log). The log's "WAL recovered" (shard 0),
# "region recovered" and "node ready" lines are also placed on that time
# line. At the end it restarts once more and counts the keys with paged
# `golem ctl scan`s (must be RECORDS + 1) to check that nothing was lost.
#
# The one stand-alone region lives on shard 0, so all data is in shard 0's
# WAL and LSM. The raft loop forces an LSM flush once 4 WAL segments are kept
# only for the memtable, so with 64 MiB segments at most ~4 x 64 MiB can be
# left to replay whatever the memtable size.
#
# Usage: perf/restart_bench.sh [reps] [NAME:RECORDS:MEMTABLE_KIB ...]
#   default cases: wal16:15000:1048576 wal64:60000:1048576
#                  wal240:225000:1048576 small-mt:225000:4096
# Environment: GOLEM_BIN_DIR (golem + golem-loadgen; default: cargo build
# --release into ${CARGO_TARGET_DIR:-target}), GOLEM_PERF_PORT (18400),
# VALUE_BYTES (1024), SETTLE_S (3), DROP_CACHES (1; 0 = never drop),
# WAL_SEGMENT_MIB (64), SHARDS (2), GOLEM_BUILD_NOTE (where the binary
# comes from, recorded in setup.txt).
# Writes perf/results/restart-<timestamp>/{summary.md,raw.tsv,*.log,*.json}.
set -euo pipefail
cd "$(dirname "$0")/.."

reps="${1:-3}"
shift $(( $# > 0 ? 1 : 0 ))
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(wal16:15000:1048576 wal64:60000:1048576 \
  wal240:225000:1048576 small-mt:225000:4096)
port="${GOLEM_PERF_PORT:-18400}"
value_bytes="${VALUE_BYTES:-1024}"
settle="${SETTLE_S:-3}"
drop="${DROP_CACHES:-1}"
segment_mib="${WAL_SEGMENT_MIB:-64}"
shards="${SHARDS:-2}"
if [ -n "${GOLEM_BIN_DIR:-}" ]; then
  bin="$GOLEM_BIN_DIR"
else
  cargo build --release --bin golem --bin golem-loadgen >/dev/null
  bin="${CARGO_TARGET_DIR:-target}/release"
fi
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="perf/results/restart-${stamp}"
mkdir -p "$out"
raw="$out/raw.tsv"
printf 'case\trecords\tmemtable_kib\trep\tcache\tt0_ns\tport_ms\tready_ms\tvm_hwm_kib\tlog\tstatus\n' >"$raw"
{
  echo "command: perf/restart_bench.sh $reps ${cases[*]}"
  echo "env: GOLEM_BIN_DIR=$bin GOLEM_PERF_PORT=$port VALUE_BYTES=$value_bytes SETTLE_S=$settle DROP_CACHES=$drop WAL_SEGMENT_MIB=$segment_mib SHARDS=$shards"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)${GOLEM_BUILD_NOTE:+ (binary: $GOLEM_BUILD_NOTE)}"
  echo "binary: $(ls -l --time-style=+%FT%T "$bin/golem" | awk '{print $6}') $(sha256sum "$bin/golem" | cut -c1-16)"
  echo "machine: $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "filesystem: $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2{print $2" on "$1}')"
} >"$out/setup.txt"

node_pid=""
data=""
cleanup() {
  if [ -n "$node_pid" ]; then kill -9 "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
  if [ -n "$data" ]; then rm -rf "$data"; fi
}
trap cleanup EXIT

now_ns() { date +%s%N; }

# start_node LOG MEMTABLE_KIB: starts the node on $data, sets node_pid and t0.
start_node() {
  t0="$(now_ns)"
  RUST_LOG=info "$bin/golem" node --data-dir "$data" --listen "127.0.0.1:${port}" \
    --shards "$shards" --pin off --memtable-kib "$2" --wal-segment-mib "$segment_mib" \
    >"$1" 2>&1 &
  node_pid=$!
}

# wait_port DEADLINE_S: 0 once shard 0 accepts, 1 on timeout or node death.
wait_port() {
  local end=$(( $(date +%s) + $1 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    kill -0 "$node_pid" 2>/dev/null || return 1
    (echo >"/dev/tcp/127.0.0.1/${port}") 2>/dev/null && return 0
    sleep 0.005
  done
  return 1
}

# wait_probe EXPECTED DEADLINE_S: 0 once `ctl get probe` answers EXPECTED.
wait_probe() {
  local end=$(( $(date +%s) + $2 )) v
  while [ "$(date +%s)" -lt "$end" ]; do
    kill -0 "$node_pid" 2>/dev/null || return 1
    v="$("$bin/golem" ctl --addr "127.0.0.1:${port}" --timeout-ms 1000 get restart-probe 2>/dev/null || true)"
    [ "$v" = "$1" ] && return 0
    sleep 0.005
  done
  return 1
}

# wait_port_free: returns once nothing listens on shard 0's port. After a
# kill -9 the node's listening socket outlives the reaped process for a few
# ms (seen: 5-25 ms; the io_uring teardown is deferred); a restart in that
# window pays the node's 100 ms "waiting for it to go away" probe and a
# TCP probe would connect to the dead listener.
wait_port_free() {
  for _ in $(seq 1 2000); do
    [ -z "$(ss -Htln "sport = :${port}")" ] && return 0
    sleep 0.005
  done
  echo "something still listens on ${port}" >&2
  return 1
}

kill9() {
  kill -9 "$node_pid"
  wait "$node_pid" 2>/dev/null || true
  node_pid=""
  wait_port_free
}

drop_caches() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
  cat "$bin/golem" >/dev/null   # only the data should be cold, not the binary
}

# One restart, timed; appends a row to raw.tsv. Returns 1 if it failed.
timed_restart() { # case records memtable rep cache expected
  local log="$out/restart-$1-r$4-$5.log" status=ok port_ms=-1 ready_ms=-1 hwm=-1
  start_node "$log" "$3"
  if wait_port 300; then
    port_ms=$(( ($(now_ns) - t0) / 1000000 ))
    if wait_probe "$6" 300; then
      ready_ms=$(( ($(now_ns) - t0) / 1000000 ))
      hwm="$(awk '/VmHWM/{print $2}' "/proc/$node_pid/status")"
    else
      status=no-probe
    fi
  else
    status=no-port
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$t0" \
    "$port_ms" "$ready_ms" "$hwm" "$(basename "$log")" "$status" >>"$raw"
  echo "  $1 rep $4 $5: port ${port_ms} ms, ready ${ready_ms} ms ($status)"
  if kill -0 "$node_pid" 2>/dev/null; then kill9; else wait "$node_pid" 2>/dev/null || true; node_pid=""; wait_port_free; fi
  [ "$status" = ok ]
}

# count_keys: paged scans over the whole key space; prints the key count.
count_keys() {
  python3 - "$bin/golem" "127.0.0.1:${port}" <<'PY'
import json, subprocess, sys
golem, addr = sys.argv[1], sys.argv[2]
start, n = "", 0
while True:
    r = subprocess.run([golem, "ctl", "--addr", addr, "--hex", "--json", "--timeout-ms", "60000",
                        "scan", "--start", start, "--limit", "10000"],
                       check=True, capture_output=True, text=True)
    j = json.loads(r.stdout)
    n += len(j["pairs"])
    if not j["pairs"] or not j["more"]:
        break
    start = j["pairs"][-1]["key"] + "00"   # the next key after the last one
print(n)
PY
}

sizes_tsv="$out/sizes.tsv"
printf 'case\trecords\tmemtable_kib\tload_s\tload_ops_s\twal_alloc_bytes\twal_written_bytes\twal_segments\tlsm_bytes\tlsm_files\tkeys_after\n' >"$sizes_tsv"
for c in "${cases[@]}"; do
  IFS=: read -r name records memtable <<<"$c"
  echo "== $name: $records records of $value_bytes B, memtable $memtable KiB"
  data="$(mktemp -d -t golem-restart-XXXXXX)"
  start_node "$out/load-$name.log" "$memtable"
  wait_port 30
  t_load="$(now_ns)"
  "$bin/golem-loadgen" --addr "127.0.0.1:${port}" -P workloada --phase load \
    -p recordcount="$records" -p fieldcount=1 -p fieldlength="$value_bytes" \
    --connections 4 --in-flight 32 --json-out "$out/load-$name.json" >"$out/load-$name.txt"
  load_s="$(python3 -c "print(f'{($(now_ns) - $t_load) / 1e9:.1f}')")"
  probe="$name-$records-$stamp"
  "$bin/golem" ctl --addr "127.0.0.1:${port}" put restart-probe "$probe" >/dev/null
  sleep "$settle"
  kill9

  wal_alloc="$(du -s --block-size=1 "$data/wal" | cut -f1)"
  lsm_bytes="$(du -s --block-size=1 "$data/lsm" | cut -f1)"
  wal_segments="$(find "$data/wal" -name '*.wal' | wc -l)"
  lsm_files="$(find "$data/lsm" -type f | wc -l)"
  wal_written="$(python3 - "$data/wal" <<'PY'
import os, sys
total = 0
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        if f.endswith(".wal"):
            with open(os.path.join(root, f), "rb") as fh:
                total += len(fh.read().rstrip(b"\0"))
print(total)
PY
)"
  ls -lR "$data" >"$out/files-$name.txt"
  echo "  WAL ${wal_alloc} B allocated, ${wal_written} B written, ${wal_segments} segments; LSM ${lsm_bytes} B in ${lsm_files} files"

  failed=0
  for r in $(seq 1 "$reps"); do
    if [ "$drop" = 1 ]; then
      drop_caches
      timed_restart "$name" "$records" "$memtable" "$r" cold "$probe" || failed=1
    fi
    [ "$failed" = 1 ] && break
    timed_restart "$name" "$records" "$memtable" "$r" warm "$probe" || { failed=1; break; }
  done

  keys_after=-1
  if [ "$failed" = 0 ]; then
    start_node "$out/verify-$name.log" "$memtable"
    wait_port 300 && wait_probe "$probe" 300 && keys_after="$(count_keys)"
    kill9
    echo "  keys after the restarts: $keys_after (expected $((records + 1)))"
  fi
  ops_s="$(python3 -c "import json; print(round(json.load(open('$out/load-$name.json'))['total_ops_per_s']))" 2>/dev/null || echo -1)"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$records" "$memtable" "$load_s" "$ops_s" \
    "$wal_alloc" "$wal_written" "$wal_segments" "$lsm_bytes" "$lsm_files" "$keys_after" >>"$sizes_tsv"
  rm -rf "$data"; data=""
done

python3 - "$out" "$value_bytes" <<'PY'
import csv, datetime, re, statistics, sys
out, value_bytes = sys.argv[1], sys.argv[2]
MiB = 1 << 20
sizes = {r["case"]: r for r in csv.DictReader(open(f"{out}/sizes.tsv"), delimiter="\t")}
rows = list(csv.DictReader(open(f"{out}/raw.tsv"), delimiter="\t"))

def log_ms(path, t0_ns):
    """Offsets (ms from t0) of the recovery milestones in a node log."""
    marks, recovered = {}, ""
    for line in open(path, errors="replace"):
        m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d+)Z", line)
        if not m:
            continue
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=datetime.timezone.utc).timestamp() * 1e9 + int(m.group(2).ljust(9, "0")[:9])
        ms = (t - t0_ns) / 1e6
        if "WAL recovered" in line and "shard-0" in line:
            marks.setdefault("wal", ms)
        elif "region recovered" in line:
            marks.setdefault("region", ms)
            recovered = line.split("region recovered", 1)[1].strip()
        elif "node ready" in line:
            marks.setdefault("node", ms)
    return marks, recovered

print_rows = []
for r in rows:
    marks, recovered = log_ms(f"{out}/{r['log']}", int(r["t0_ns"]))
    r.update({k: marks.get(k, float("nan")) for k in ("wal", "region", "node")})
    r["recovered"] = recovered

def med(xs):
    xs = [x for x in xs if x == x and x >= 0]
    return statistics.median(xs) if xs else float("nan")

lines = []
lines.append("# Restart time against WAL size\n")
lines.append("```\n" + open(f"{out}/setup.txt").read() + "```\n")
lines.append(f"One record = one put of a {value_bytes} B value (YCSB load phase, key `user<hash>`). "
             "Times in ms from just before the exec of `golem node`; median (min–max) over the "
             "repetitions. *cold*: page cache dropped before the restart (binary read back); "
             "*warm*: restarted at once after the cold run's kill -9.\n")
lines.append("| case | records | memtable KiB | WAL allocated MiB | WAL written MiB | LSM MiB | cache | n | WAL read (shard 0) ms | region recovered ms | node ready ms | port accepts ms | probe get answered ms | peak RSS MiB | keys after |")
lines.append("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, s in sizes.items():
    for cache in ("cold", "warm"):
        rs = [r for r in rows if r["case"] == name and r["cache"] == cache]
        if not rs:
            continue
        ok = [r for r in rs if r["status"] == "ok"]
        def fmt(key, src=ok):
            xs = [float(r[key]) for r in src]
            xs = [x for x in xs if x == x and x >= 0]
            if not xs:
                return "–"
            return f"{statistics.median(xs):.0f} ({min(xs):.0f}–{max(xs):.0f})"
        hwm = med([float(r["vm_hwm_kib"]) / 1024 for r in ok])
        bad = "" if len(ok) == len(rs) else f" ({len(rs) - len(ok)} FAILED)"
        lines.append(f"| {name} | {s['records']} | {s['memtable_kib']} | {int(s['wal_alloc_bytes']) / MiB:.0f} | "
                     f"{int(s['wal_written_bytes']) / MiB:.1f} | {int(s['lsm_bytes']) / MiB:.1f} | {cache} | {len(rs)}{bad} | "
                     f"{fmt('wal')} | {fmt('region')} | {fmt('node')} | {fmt('port_ms')} | {fmt('ready_ms')} | "
                     f"{hwm:.0f} | {s['keys_after']} |")
lines.append("\nLoad phase and files:\n")
lines.append("| case | load s | load ops/s | WAL segments | LSM files |")
lines.append("|---|---:|---:|---:|---:|")
for name, s in sizes.items():
    lines.append(f"| {name} | {s['load_s']} | {s['load_ops_s']} | {s['wal_segments']} | {s['lsm_files']} |")
lines.append("\n\"region recovered\" line of each restart:\n")
lines.append("```")
for r in rows:
    lines.append(f"{r['case']:<10} r{r['rep']} {r['cache']:<4} {r['status']:<8} {r['recovered']}")
lines.append("```")
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "results in $out"
