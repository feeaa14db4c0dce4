#!/usr/bin/env bash
# PD scheduling on real processes (issue #6), all on this one machine
# (loopback): how long a split takes once a region crosses its threshold,
# how long a full repair takes after a node is killed, and how even regions,
# leaders and bytes are after a new node is balanced in.
#
# (a) split: a fresh PD + 3 nodes (one region) with --split-region-bytes
#     SPLIT_BYTES; one writer puts 4000-byte values (one `golem ctl put` per
#     key, paced) and logs the bytes written after each acknowledged put;
#     the PD's region list is polled every 100 ms. Reported: the time from
#     the put that took the written bytes past the threshold to the first
#     poll showing the PD's size above it, and to 2 regions. Repeated.
# (b) repair: PD (--max-store-down-time-ms DOWN_MS) + 4 nodes, a few
#     regions; kill -9 of the node holding the most replicas; reported: the
#     time from the kill to every region at 3 voters on live stores, with
#     and without the down-time threshold. Repeated.
# (c) balance: PD + 3 nodes split into many regions by writing with a small
#     threshold; a 4th node joins; balancing is over when `operator list`
#     has been empty for 5 s. Reported: how long that took, the operators
#     seen, replicas moved back to a store they had left (ping-pong), and
#     max/min per store of regions, leaders and approximate bytes.
#
# Writes perf/results/scheduling-<stamp>.md (and the logs next to it, in
# scheduling-<stamp>-logs/), stops every process by its pid.
#
# Usage: perf/scheduling.sh [split_repeats] [repair_repeats]
# Env: SPLIT_BYTES (1048576), DOWN_MS (11000: above two 5 s store heartbeats), BALANCE_SPLIT_BYTES (32768),
#      BALANCE_WRITE_KIB (1600), GOLEM_PERF_PORT (18500), PARTS (abc: which of (a), (b), (c) run),
#      GOLEM_BIN (a golem binary to measure instead of building this tree's, e.g. a baseline),
#      LABEL (a name for the report, e.g. baseline)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
. perf/lib.sh

split_repeats="${1:-3}"
repair_repeats="${2:-2}"
split_bytes="${SPLIT_BYTES:-1048576}"
down_ms="${DOWN_MS:-11000}"
balance_split_bytes="${BALANCE_SPLIT_BYTES:-32768}"
balance_write_kib="${BALANCE_WRITE_KIB:-1600}"
base="${GOLEM_PERF_PORT:-18500}"
parts="${PARTS:-abc}"
label="${LABEL:+-$LABEL}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
report="perf/results/scheduling-${stamp}${label}.md"
logs="perf/results/scheduling-${stamp}${label}-logs"
mkdir -p "$logs"

if [[ -n "${GOLEM_BIN:-}" ]]; then
  golem="$GOLEM_BIN"
else
  cargo build --release --bin golem >/dev/null
  golem="${CARGO_TARGET_DIR:-target}/release/golem"
fi

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

now_ms() { date +%s%3N; }

pd_addr=""
node_pids=()
node_ports=()
# start_cluster NAME PD_FLAGS...: a PD (--initial-replicas 3) and 3 nodes.
# Node flags come from $node_flags.
start_cluster() {
  local name="$1"; shift
  local pd_port=$((base + 90)) d
  pd_addr="127.0.0.1:${pd_port}"
  d="$(mktemp -d -t golem-sched-pd-XXXXXX)"; dirs+=("$d")
  "$golem" pd --listen "$pd_addr" --data-dir "$d" --initial-replicas 3 --tick-ms 20 "$@" \
    >"$logs/$name-pd.log" 2>&1 &
  pids+=($!)
  node_pids=()
  node_ports=()
  # A node listens only once the cluster has formed (3 stores joined).
  for i in 0 1 2; do spawn_node "$name"; done
  for port in "${node_ports[@]}"; do golem_wait_port "$port"; done
}

# add_node NAME: one more node (it joins empty), waits until it listens.
add_node() {
  spawn_node "$1"
  golem_wait_port "${node_ports[-1]}"
}

# spawn_node NAME: starts one more node.
spawn_node() {
  local name="$1" i="${#node_pids[@]}" d port
  port=$((base + 10 * i))
  d="$(mktemp -d -t golem-sched-node-XXXXXX)"; dirs+=("$d")
  # shellcheck disable=SC2086
  "$golem" node --data-dir "$d" --listen "127.0.0.1:${port}" --shards 1 --pin off \
    --tick-ms 20 --pd "$pd_addr" $node_flags >"$logs/$name-node$i.log" 2>&1 &
  pids+=($!)
  node_pids+=($!)
  node_ports+=("$port")
}

ctl() { "$golem" ctl --pd "$pd_addr" "$@"; }
regions_json() { ctl --json region list 2>/dev/null || { sleep 0.2; ctl --json region list; }; }

# wait_writable: until a put through the PD succeeds (the first region has
# a leader).
wait_writable() {
  for _ in $(seq 1 300); do
    ctl put __probe x >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the cluster never took a write" >&2
  return 1
}

value="$(head -c 4000 /dev/zero | tr '\0' v)"

# write_keys PREFIX COUNT PACE_S LOG: puts COUNT keys of 4000 bytes,
# sleeping PACE_S between puts; logs "ms cumulative_bytes" per put.
write_keys() {
  local prefix="$1" count="$2" pace="$3" log="$4" total=0 k
  for i in $(seq -w 1 "$count"); do
    k="${prefix}${i}"
    ctl put "$k" "$value" >/dev/null
    total=$((total + ${#k} + ${#value}))
    echo "$(now_ms) $total" >>"$log"
    [[ "$pace" == 0 ]] || sleep "$pace"
  done
}

# wait_quiet SECONDS LIMIT_S: until `operator list` has been empty for
# SECONDS in a row (polled every 500 ms); fails after LIMIT_S.
wait_quiet() {
  local want="$1" limit="$2" quiet=0 start
  start="$(now_ms)"
  while (( $(now_ms) - start < limit * 1000 )); do
    if [[ "$(ctl --json operator list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["operators"]))')" == 0 ]]; then
      quiet=$((quiet + 1))
      (( quiet >= want * 2 )) && return 0
    else
      quiet=0
    fi
    sleep 0.5
  done
  return 1
}

{
  echo "# PD scheduling on real processes (perf/scheduling.sh)"
  echo
  echo "- machine: $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg) at start"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); binary: ${GOLEM_BIN:-this tree, release}; parts: $parts"
  echo "- command: perf/scheduling.sh $* (SPLIT_BYTES=$split_bytes DOWN_MS=$down_ms BALANCE_SPLIT_BYTES=$balance_split_bytes BALANCE_WRITE_KIB=$balance_write_kib)"
  echo "- every process: --tick-ms 20; nodes --shards 1 --pin off; all on loopback, sharing the CPUs with the writer and the pollers"
  echo
} >"$report"

# ---------------------------------------------------------------- (a) split
if [[ "$parts" == *a* ]]; then
echo "== (a) split latency" >&2
{
  echo "## (a) Time from crossing the split threshold to the split"
  echo
  echo "Threshold --split-region-bytes $split_bytes; nodes --memtable-kib 64 (sizes come"
  echo "from segments, so a memtable's worth may be unreported); 4000-byte values written by"
  echo "one \`golem ctl put\` per key with 20 ms between puts (~120-180 KiB/s)."
  echo "\"PD sees\": first poll (100 ms) whose approximate size is above the threshold."
  echo
  echo "| run | written at split, KiB | crossing → PD sees size, ms | crossing → 2 regions, ms |"
  echo "|---|---:|---:|---:|"
} >>"$report"
node_flags="--memtable-kib 64"
for run in $(seq 1 "$split_repeats"); do
  start_cluster "split$run" --split-region-bytes "$split_bytes"
  wait_writable
  wlog="$logs/split$run-writes.txt"; plog="$logs/split$run-polls.txt"
  : >"$wlog"; : >"$plog"
  write_keys "k" 9999 0.02 "$wlog" &
  writer=$!
  pids+=("$writer")
  limit=$(( $(now_ms) + 120000 ))
  while (( $(now_ms) < limit )); do
    line="$(regions_json | python3 -c '
import json,sys
r=json.load(sys.stdin)["regions"]
print(len(r), max(x["approximate_size_bytes"] for x in r))')"
    echo "$(now_ms) $line" >>"$plog"
    [[ "${line%% *}" -ge 2 ]] && break
    sleep 0.1
  done
  kill "$writer" 2>/dev/null || true
  wait "$writer" 2>/dev/null || true
  python3 - "$wlog" "$plog" "$split_bytes" "$run" >>"$report" <<'EOF'
import sys
wlog, plog, t, run = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
writes = [tuple(map(int, l.split())) for l in open(wlog) if l.strip()]
polls = [tuple(map(int, l.split())) for l in open(plog) if l.strip()]
cross = next((ms for ms, b in writes if b > t), None)
seen = next((ms for ms, n, size in polls if size > t), None)
split = next((ms for ms, n, size in polls if n >= 2), None)
at_split = max((b for ms, b in writes if split and ms <= split), default=0)
f = lambda x: "never" if x is None or cross is None else str(x - cross)
print(f"| {run} | {at_split // 1024} | {f(seen)} | {f(split)} |")
EOF
  cleanup
done
echo >>"$report"
fi

# --------------------------------------------------------------- (b) repair
if [[ "$parts" == *b* ]]; then
echo "== (b) repair" >&2
{
  echo "## (b) Time to full repair after a node is killed"
  echo
  echo "PD --max-store-down-time-ms $down_ms --split-region-bytes 65536; 4 nodes (the 4th joins"
  echo "empty), --memtable-kib 16; ~400 KiB written, then quiet (no operator for 3 s); kill -9"
  echo "of the node with the most replicas. Polled every 200 ms."
  echo
  echo "| run | regions | replicas on the killed store | kill → PD says Down, ms | kill → all regions 3 live voters, ms | minus the down time, ms | PD says Down → all repaired, ms |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
} >>"$report"
node_flags="--memtable-kib 16"
for run in $(seq 1 "$repair_repeats"); do
  start_cluster "repair$run" --split-region-bytes 65536 --max-store-down-time-ms "$down_ms" \
    --schedule-interval-ms 500
  add_node "repair$run"
  wait_writable
  write_keys "k" 100 0 /dev/null
  sleep 5
  wait_quiet 3 60 || echo "repair run $run: operators still running before the kill" >&2
  regions_json >"$logs/repair$run-before.json"
  ctl --json store list >"$logs/repair$run-stores.json"
  # The store with the most replicas, and its node's port.
  read -r victim_store victim_port on_dead nregions < <(python3 - "$logs/repair$run-before.json" "$logs/repair$run-stores.json" <<'EOF'
import json, sys, collections
rs = json.load(open(sys.argv[1]))["regions"]
stores = {s["id"]: s["addr"] for s in json.load(open(sys.argv[2]))["stores"]}
c = collections.Counter(p["store"] for r in rs for p in r["peers"])
s, n = c.most_common(1)[0]
print(s, stores[s].split(":")[1], n, len(rs))
EOF
)
  victim=""
  for i in "${!node_ports[@]}"; do [[ "${node_ports[$i]}" == "$victim_port" ]] && victim="${node_pids[$i]}"; done
  t_kill="$(now_ms)"
  kill -9 "$victim"
  wait "$victim" 2>/dev/null || true
  t_down=""; t_done=""
  plog="$logs/repair$run-polls.txt"; : >"$plog"
  while (( $(now_ms) - t_kill < 120000 )); do
    if [[ -z "$t_down" ]] && ctl --json store list | python3 -c '
import json,sys
s=[x for x in json.load(sys.stdin)["stores"] if x["id"]=='"$victim_store"']
sys.exit(0 if s and s[0]["state"]=="Down" else 1)'; then
      t_down="$(now_ms)"
    fi
    state="$(regions_json | python3 -c '
import json,sys
rs=json.load(sys.stdin)["regions"]
dead='"$victim_store"'
ok=sum(1 for r in rs if len(r["peers"])==3 and all(p["role"]=="voter" and p["store"]!=dead for p in r["peers"]))
print(len(rs), ok)')"
    echo "$(now_ms) $state" >>"$plog"
    set -- $state
    if [[ "$1" == "$2" ]]; then t_done="$(now_ms)"; break; fi
    sleep 0.2
  done
  d_down="never"; [[ -n "$t_down" ]] && d_down=$((t_down - t_kill))
  d_done="never"; d_net="-"; d_repair="-"
  [[ -n "$t_done" ]] && { d_done=$((t_done - t_kill)); d_net=$((d_done - down_ms)); }
  [[ -n "$t_done" && -n "$t_down" ]] && d_repair=$((t_done - t_down))
  echo "| $run | $nregions | $on_dead | $d_down | $d_done | $d_net | $d_repair |" >>"$report"
  # Where the time went: the replica checker's operators in the PD log.
  python3 - "$logs/repair$run-pd.log" "${t_down:-0}" "$run" >>"$logs/repair-where.md" <<'EOF2' || true
import re, sys, datetime
log, t_down, run = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ansi = re.compile(r"\x1b\[[0-9;]*m")
def ms(line):
    ts = line.split()[0].rstrip("Z")
    d = datetime.datetime.fromisoformat(ts[:26]).replace(tzinfo=datetime.timezone.utc)
    return int(d.timestamp() * 1000)
created, ended = {}, {}
for raw in open(log, errors="replace"):
    line = ansi.sub("", raw)
    m = re.search(r"operator (created|finished|timeout|epoch-changed|cancelled) id=(\d+)", line)
    if not m:
        continue
    if m.group(1) == "created":
        if 'source="replica"' in line:
            created[m.group(2)] = ms(line)
    elif m.group(2) in created:
        ended[m.group(2)] = (ms(line), m.group(1))
c = sorted(created.values())
after = [t for t in c if t >= t_down - 1000]
durs = sorted(ended[i][0] - created[i] for i in created if i in ended)
rel = lambda t: "-" if not t_down else str(t - t_down)
med = durs[len(durs) // 2] if durs else "-"
print(f"| {run} | {len(after)} | {rel(after[0]) if after else '-'} | {rel(after[-1]) if after else '-'} | "
      f"{med} | {max(durs) if durs else '-'} | {sum(1 for v in ended.values() if v[1] != 'finished')} |")
EOF2
  regions_json >"$logs/repair$run-after.json"
  cleanup
done
{
  echo
  echo "Where the time goes (the PD log's replica-checker operators; times from the poll that saw"
  echo "the store Down; an operator's duration is from its creation to its end):"
  echo
  echo "| run | repair operators | Down → first created, ms | Down → last created, ms | median duration, ms | max duration, ms | not finished |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  cat "$logs/repair-where.md"
} >>"$report"
echo >>"$report"
fi

# -------------------------------------------------------------- (c) balance
if [[ "$parts" == *c* ]]; then
echo "== (c) balance" >&2
node_flags="--memtable-kib 16"
start_cluster "balance" --split-region-bytes "$balance_split_bytes" --schedule-interval-ms 1000
wait_writable
write_keys "k" $((balance_write_kib * 1024 / 4000)) 0 /dev/null
# Splits trail the writes: wait until the region count has not changed for
# 10 s (at most 120 s), then until no operator runs.
last=0; same=0; t0="$(now_ms)"
while (( $(now_ms) - t0 < 120000 && same < 20 )); do
  n="$(regions_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["regions"]))')"
  if [[ "$n" == "$last" ]]; then same=$((same + 1)); else same=0; last="$n"; fi
  sleep 0.5
done
wait_quiet 3 60 || true
regions_json >"$logs/balance-before.json"
t_add="$(now_ms)"
add_node "balance"
plog="$logs/balance-polls.jsonl"; : >"$plog"
quiet=0; t_quiet=""
while (( $(now_ms) - t_add < 300000 )); do
  ops="$(ctl --json operator list)"
  rs="$(regions_json)"
  printf '{"ms":%s,"ops":%s,"regions":%s}\n' "$(now_ms)" "$ops" "$rs" >>"$plog"
  if python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["operators"] else 1)' "$ops"; then
    quiet=0; t_quiet=""
  else
    [[ -z "$t_quiet" ]] && t_quiet="$(now_ms)"
    quiet=$((quiet + 1))
    # Quiet for 5 s, and the new node was heard from (it holds something,
    # or 30 s have passed).
    if (( quiet >= 10 )); then
      if python3 -c '
import json,sys
rs=json.loads(sys.argv[1])["regions"]
print(len(set(p["store"] for r in rs for p in r["peers"])))' "$rs" | grep -q '^4$' \
         || (( $(now_ms) - t_add > 30000 )); then
        break
      fi
    fi
  fi
  sleep 0.5
done
ctl --json store list >"$logs/balance-stores.json"
python3 - "$plog" "$t_add" "$t_quiet" "$logs/balance-stores.json" >>"$report" <<'EOF'
import json, sys, collections
plog, t_add = sys.argv[1], int(sys.argv[2])
t_quiet = int(sys.argv[3]) if sys.argv[3] else None
polls = [json.loads(l) for l in open(plog) if l.strip()]
first = polls[0]["regions"]["regions"]
last = polls[-1]["regions"]["regions"]
stores = sorted(s["id"] for s in json.load(open(sys.argv[4]))["stores"])
ops = {}
for p in polls:
    for o in p["ops"]["operators"]:
        ops.setdefault(json.dumps(o.get("id", o), sort_keys=True), o)
# Ping-pong: a region whose replica set left a store and came back to it.
hist = collections.defaultdict(list)
for p in polls:
    for r in p["regions"]["regions"]:
        s = frozenset(x["store"] for x in r["peers"])
        h = hist[r["id"]]
        if not h or h[-1] != s:
            h.append(s)
pingpong = []
for rid, h in hist.items():
    left = set()
    for a, b in zip(h, h[1:]):
        back = (b - a) & left
        if back:
            pingpong.append((rid, sorted(back)))
        left |= a - b
def per_store(rs):
    reg = collections.Counter({s: 0 for s in stores})
    lead = collections.Counter({s: 0 for s in stores})
    size = collections.Counter({s: 0 for s in stores})
    for r in rs:
        for x in r["peers"]:
            reg[x["store"]] += 1
            size[x["store"]] += r["approximate_size_bytes"]
        if r.get("leader"):
            lead[r["leader"]["store"]] += 1
    return reg, lead, size
def ratio(c):
    lo, hi = min(c.values()), max(c.values())
    return "inf" if lo == 0 else f"{hi / lo:.2f}"
print("## (c) Evenness after a 4th node joins")
print()
b_reg, b_lead, b_size = per_store(first)
before = sorted(set(x["store"] for r in first for x in r["peers"]))
a_reg, a_lead, a_size = per_store(last)
print(f"{len(first)} regions before the join ({len(last)} after); balancing is over when "
      "`operator list` has been empty for 5 s (polled every 500 ms, with the region list).")
print()
settle = "did not settle within 300 s" if t_quiet is None else f"{(t_quiet - t_add) / 1000:.1f} s"
print(f"- join → last operator gone: {settle}; distinct operators seen: {len(ops)}")
print(f"- replicas moved back to a store they had left (ping-pong): {len(pingpong)}"
      + (f" {pingpong[:10]}" if pingpong else ""))
print()
print("| store | regions before | regions after | leaders before | leaders after | approx. KiB after |")
print("|---|---:|---:|---:|---:|---:|")
for s in stores:
    print(f"| {s} | {b_reg[s]} | {a_reg[s]} | {b_lead[s]} | {a_lead[s]} | {a_size[s] // 1024} |")
print(f"| max/min | {ratio({s: b_reg[s] for s in before})} | {ratio(a_reg)} | "
      f"{ratio({s: b_lead[s] for s in before})} | {ratio(a_lead)} | {ratio(a_size)} |")
print()
print("(\"before\" ratios are over the 3 original stores.)")
print()
EOF
cleanup
fi

echo "results in $report" >&2
cat "$report"
