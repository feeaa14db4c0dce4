#!/usr/bin/env bash
# A replica added to a region holding SIZE_MIB of data catches up by
# snapshot: wall time, snapshot throughput and peak memory on both sides
# (issue #5: "catches up with bounded memory on both sides").
#
# Starts a PD (--initial-replicas 3) and three `golem node`s (1 shard each,
# --memtable-kib moderate so most data ends up in LSM segments), loads
# SIZE_MIB of ~4 KiB values into the cluster's single region
# (golem-loadgen, YCSB load phase), then starts a fourth node and times
# `golem ctl region add-peer <region> <store4> --wait-s 600` (learner,
# snapshot, promotion). Records the leader node's and the new node's VmHWM
# (peak RSS) and VmRSS before and after, samples their RSS every 0.5 s
# during the add, takes the snapshot's size and duration from the sender's
# "snapshot sent ... bytes=" log line, then checks that the new node serves:
# moves the leadership to it (`ctl transfer-leader`) and compares scans of
# a sample of keys with the same scans made before the add. Writes
# perf/results/snapshot-large-<stamp>.md (plus the logs' snapshot lines)
# and stops every process by its pid.
#
# Usage: perf/snapshot_large.sh [size_mib]
#   GOLEM_PERF_PORT (default 17900), MEMTABLE_KIB (default 16384),
#   VALUE_BYTES (default 4096), SNAP_MIB_PER_SEC (the nodes'
#   --snapshot-send-mib-per-sec; default: the node's default, 100; 0 lifts it)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
. perf/lib.sh

size_mib="${1:-1024}"
base="${GOLEM_PERF_PORT:-17900}"
memtable_kib="${MEMTABLE_KIB:-16384}"
value_bytes="${VALUE_BYTES:-4096}"
snap_flags=()
if [ -n "${SNAP_MIB_PER_SEC:-}" ]; then snap_flags=(--snapshot-send-mib-per-sec "$SNAP_MIB_PER_SEC"); fi
records=$((size_mib * 1024 * 1024 / value_bytes))
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="perf/results/snapshot-large-${stamp}.md"
mkdir -p perf/results

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

status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
now() { date +%s.%N; }

logs="$(mktemp -d -t golem-perf-snap-logs-XXXXXX)"; dirs+=("$logs")
pd_port=$((base + 90))
pd="127.0.0.1:${pd_port}"
d="$(mktemp -d -t golem-perf-snap-pd-XXXXXX)"; dirs+=("$d")
"$bin/golem" pd --listen "$pd" --data-dir "$d" --initial-replicas 3 --no-scheduling >"$logs/pd.log" 2>&1 &
pids+=($!)
node_pids=()
node_dirs=()
start_node() {
  local i="$1" port=$((base + 10 * $1))
  local d; d="$(mktemp -d -t golem-perf-snap-node-XXXXXX)"; dirs+=("$d"); node_dirs[$i]="$d"
  RUST_LOG=info "$bin/golem" node --data-dir "$d" --listen "127.0.0.1:${port}" --shards 1 \
    --pin off --pd "$pd" --memtable-kib "$memtable_kib" "${snap_flags[@]}" >"$logs/node$i.log" 2>&1 &
  node_pids[$i]=$!; pids+=($!)
}
for i in 0 1 2; do start_node "$i"; done
for i in 0 1 2; do golem_wait_port $((base + 10 * i)); done
ctl() { "$bin/golem" ctl --pd "$pd" --timeout-ms 60000 "$@"; }
for _ in $(seq 1 100); do
  ctl --json region list --limit 10 2>/dev/null | grep -q '"leader":{' && break
  sleep 0.2
done

# Load.
t0=$(now)
"$bin/golem-loadgen" --addr "127.0.0.1:${base}" -P workloada --phase load \
  -p recordcount="$records" -p fieldcount=1 -p fieldlength="$value_bytes" \
  --connections 4 --in-flight 16 >"$logs/load.txt" 2>&1
t1=$(now)
load_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
echo "loaded ${records} records of ${value_bytes} B in ${load_s} s" >&2
sleep 5

region_json="$(ctl --json region list --limit 10)"
region=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1])["regions"]; print(r[0]["id"])' "$region_json")
leader_store=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1])["regions"]; print(r[0]["leader"]["store"])' "$region_json")
store_of_port() {
  ctl --json store list | python3 -c 'import json,sys
want=sys.argv[1]
for s in json.load(sys.stdin)["stores"]:
    if s["addr"].endswith(":"+want): print(s["id"])' "$1"
}
leader_idx=""
for i in 0 1 2; do
  [ "$(store_of_port $((base + 10 * i)))" = "$leader_store" ] && leader_idx=$i
done
leader_pid="${node_pids[$leader_idx]}"
du_leader=$(du -sm "${node_dirs[$leader_idx]}" | cut -f1)

# Sample keys, read before the add (served by the current leader).
samples=(user1 user3 user5 user7 user9)
sample_reads() {
  for s in "${samples[@]}"; do ctl --hex scan --start "$(printf '%s' "$s" | xxd -p)" --limit 100; done | md5sum | cut -d' ' -f1
}
sample_keys() {
  for s in "${samples[@]}"; do ctl --hex scan --start "$(printf '%s' "$s" | xxd -p)" --limit 100; done | wc -l
}
before_md5=$(sample_reads 2>/dev/null)
sampled=$(sample_keys 2>/dev/null)

# The new node.
start_node 3
golem_wait_port $((base + 30))
new_pid="${node_pids[3]}"
new_store=""
for _ in $(seq 1 100); do
  new_store=$(store_of_port $((base + 30)))
  [ -n "$new_store" ] && break
  sleep 0.2
done
sleep 1
lead_hwm0=$(status_kib "$leader_pid" VmHWM); lead_rss0=$(status_kib "$leader_pid" VmRSS)
new_hwm0=$(status_kib "$new_pid" VmHWM); new_rss0=$(status_kib "$new_pid" VmRSS)
lead_anon0=$(status_kib "$leader_pid" RssAnon); new_anon0=$(status_kib "$new_pid" RssAnon)

# Sample RSS during the add.
(
  while kill -0 "$leader_pid" 2>/dev/null; do
    echo "$(date +%s.%N) $(status_kib "$leader_pid" VmRSS) $(status_kib "$new_pid" VmRSS) $(status_kib "$leader_pid" RssAnon) $(status_kib "$new_pid" RssAnon)"
    sleep 0.2
  done
) >"$logs/rss.txt" &
sampler=$!; pids+=("$sampler")

t2=$(now)
add_ok=true
ctl region add-peer "$region" "$new_store" --wait-s 600 >"$logs/add.txt" 2>&1 || add_ok=false
t3=$(now)
add_s=$(awk -v a="$t2" -v b="$t3" 'BEGIN {printf "%.1f", b - a}')
sleep 2
kill "$sampler" 2>/dev/null || true
lead_hwm1=$(status_kib "$leader_pid" VmHWM); lead_rss1=$(status_kib "$leader_pid" VmRSS)
new_hwm1=$(status_kib "$new_pid" VmHWM); new_rss1=$(status_kib "$new_pid" VmRSS)
lead_anon1=$(status_kib "$leader_pid" RssAnon); new_anon1=$(status_kib "$new_pid" RssAnon)
rss_max=$(awk 'BEGIN {l = 0; n = 0; la = 0; na = 0} {if ($2 > l) l = $2; if ($3 > n) n = $3; if ($4 > la) la = $4; if ($5 > na) na = $5} END {print l, n, la, na}' "$logs/rss.txt")
du_new=$(du -sm "${node_dirs[3]}" | cut -f1)

# The sender's log line (bytes) and the install on the receiver.
sent_line=$(grep -h 'snapshot sent' "$logs"/node[0-2].log | tail -1 || true)
sent_bytes=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$sent_line")
sent_at=$(cut -d' ' -f1 <<<"$sent_line")
snap_lines=$(grep -h -i 'snapshot' "$logs"/node*.log | grep -v DEBUG | cut -c1-300 | tail -20 || true)
# The first snapshot-related line on the new node marks the transfer's start.
first_new=$(grep -h -i 'snapshot' "$logs/node3.log" | head -1 | cut -d' ' -f1 || true)
snap_s=$(python3 - "$first_new" "$sent_at" <<'EOF'
import sys, datetime
def t(s):
    s = s.rstrip("Z")
    return datetime.datetime.fromisoformat(s[:26])
try:
    print(f"{(t(sys.argv[2]) - t(sys.argv[1])).total_seconds():.1f}")
except Exception:
    print("-")
EOF
)
mbps=$(awk -v b="${sent_bytes:-0}" -v s="$snap_s" 'BEGIN { if (s + 0 > 0) printf "%.1f", b / 1e6 / s; else printf "-" }')
add_mbps=$(awk -v b="${sent_bytes:-0}" -v s="$add_s" 'BEGIN { if (s + 0 > 0) printf "%.1f", b / 1e6 / s; else printf "-" }')

# The new node serves: lead from it and read the sample back.
t4=$(now)
transfer_ok=true
ctl transfer-leader user5 "$new_store" >"$logs/transfer.txt" 2>&1 || transfer_ok=false
t5=$(now)
transfer_s=$(awk -v a="$t4" -v b="$t5" 'BEGIN {printf "%.2f", b - a}')
# The PD learns the new leader from its next heartbeat (polled every 0.5 s).
for _ in $(seq 1 50); do
  leader_now=$(ctl --json region list --limit 10 | python3 -c 'import json,sys; r=json.load(sys.stdin)["regions"]; print(r[0]["leader"]["store"])')
  [ "$leader_now" = "$new_store" ] && break
  sleep 0.2
done
after_md5=$(sample_reads 2>/dev/null || echo failed)
if [ "$before_md5" = "$after_md5" ] && [ "$leader_now" = "$new_store" ]; then verdict="same ${sampled} pairs read back from store ${new_store} as leader"; else verdict="MISMATCH: before ${before_md5}, after ${after_md5}, leader store ${leader_now}"; fi

{
  echo "# Snapshot of a large region to a new replica"
  echo
  echo "Command: \`${SNAP_MIB_PER_SEC:+SNAP_MIB_PER_SEC=$SNAP_MIB_PER_SEC }perf/snapshot_large.sh ${size_mib}\` at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown);"
  echo "machine: $(nproc) vCPUs, $(free -g | awk '/Mem:/{print $2}') GiB, load before the add $(cut -d' ' -f1-3 /proc/loadavg), disk free $(df -h /tmp | awk 'NR==2 {print $4}')."
  echo "PD + 3 nodes (1 shard each, --memtable-kib ${memtable_kib}), ${records} records of ${value_bytes} B loaded with golem-loadgen (YCSB load, 4 × 16) in ${load_s} s; leader's data dir ${du_leader} MiB. Then a 4th node, and \`ctl region add-peer ${region} ${new_store} --wait-s 600\`."
  echo
  echo "| figure | value |"
  echo "|---|---:|"
  echo "| add-peer wall time (learner + snapshot + promotion) | ${add_s} s ($( $add_ok && echo ok || echo FAILED )) |"
  echo "| snapshot bytes sent (sender's log) | ${sent_bytes:-?} |"
  echo "| snapshot transfer (new node's first snapshot line → \"snapshot sent\") | ${snap_s} s, ${mbps} MB/s |"
  echo "| bytes sent / add-peer wall time | ${add_mbps} MB/s |"
  echo "| new node's data dir after | ${du_new} MiB |"
  echo "| leader node (store ${leader_store}) VmHWM before → after | $(mib "$lead_hwm0") → $(mib "$lead_hwm1") MiB |"
  echo "| leader node VmRSS before → after (max sampled during) | $(mib "$lead_rss0") → $(mib "$lead_rss1") MiB ($(mib "$(cut -d' ' -f1 <<<"$rss_max")")) |"
  echo "| new node (store ${new_store}) VmHWM before → after | $(mib "$new_hwm0") → $(mib "$new_hwm1") MiB |"
  echo "| new node VmRSS before → after (max sampled during) | $(mib "$new_rss0") → $(mib "$new_rss1") MiB ($(mib "$(cut -d' ' -f2 <<<"$rss_max")")) |"
  echo "| RssAnon (heap, not mmap'd files) leader before → after (max sampled) | $(mib "$lead_anon0") → $(mib "$lead_anon1") MiB ($(mib "$(cut -d' ' -f3 <<<"$rss_max")")) |"
  echo "| RssAnon new node before → after (max sampled) | $(mib "$new_anon0") → $(mib "$new_anon1") MiB ($(mib "$(cut -d' ' -f4 <<<"$rss_max")")) |"
  echo "| transfer-leader to the new node | ${transfer_s} s ($( $transfer_ok && echo ok || echo FAILED )) |"
  echo "| read-back check | ${verdict} |"
  echo
  echo "add-peer output: \`$(tr '\n' ' ' <"$logs/add.txt")\`"
  echo
  echo "Snapshot lines of the nodes' logs (last 20):"
  echo
  echo '```'
  echo "$snap_lines"
  echo '```'
} >"$out"
cat "$out"
