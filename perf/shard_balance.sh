#!/usr/bin/env bash
# Balance across the shards of each node (issue #6), on real processes on
# this one machine (loopback): how uneven a node's shards are after the PD
# splits one region into many (every split stays on its parent's shard),
# and how long balance-shard takes to even them.
#
# A PD (--split-region-bytes SPLIT_BYTES) + 3 nodes with SHARDS shards each
# and small memtables; one writer puts WRITE_KIB of 4000-byte values
# through the PD. Phase 1 runs with balance-shard off
# (--shard-schedule-limit 0): once the region count has not changed for
# STABLE_S s (size reports come every 10 s), the per-node, per-shard
# replica and leader counts are recorded ("before"). Then the PD is
# restarted on its data directory with balance-shard on
# (--shard-schedule-limit LIMIT) and, unless KEEP_SPLITTING=1, no more
# size-based splits (1 GiB threshold: a split during the balancing would
# put a new region on its parent's shard and move the goal): the region list is
# polled every 500 ms until every node's shards differ by at most one
# replica and no operator runs; reported: the time from the restart to
# that, and per node max/min of replicas and leaders over its shards,
# before and after (from the PD's region list: each peer's shard), with
# the nodes' own per-shard report (`store list`) after. Every key is read
# back at the end.
#
# Writes perf/results/shard-balance-<stamp>.md (logs in
# shard-balance-<stamp>-logs/), stops every process by its pid.
#
# Usage: perf/shard_balance.sh
# Env: SHARDS (2), SPLIT_BYTES (32768), WRITE_KIB (800), LIMIT (4),
#      MOVES_PER_STORE (2), STABLE_S (25), KEEP_SPLITTING (0),
#      GOLEM_PERF_PORT (18700)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
. perf/lib.sh

shards="${SHARDS:-2}"
split_bytes="${SPLIT_BYTES:-32768}"
write_kib="${WRITE_KIB:-800}"
limit="${LIMIT:-4}"
stable_s="${STABLE_S:-25}"
per_store="${MOVES_PER_STORE:-2}"
keep_splitting="${KEEP_SPLITTING:-0}"
base="${GOLEM_PERF_PORT:-18700}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
report="perf/results/shard-balance-${stamp}.md"
logs="perf/results/shard-balance-${stamp}-logs"
mkdir -p "$logs"

cargo build --release --bin golem >/dev/null
golem="${CARGO_TARGET_DIR:-target}/release/golem"

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

pd_port=$((base + 90))
pd_addr="127.0.0.1:${pd_port}"
pd_dir="$(mktemp -d -t golem-shardbal-pd-XXXXXX)"; dirs+=("$pd_dir")
pd_pid=""
# start_pd LOG SHARD_LIMIT SPLIT_BYTES
start_pd() {
  "$golem" pd --listen "$pd_addr" --data-dir "$pd_dir" --initial-replicas 3 --tick-ms 20 \
    --split-region-bytes "$3" --shard-schedule-limit "$2" \
    --shard-moves-per-store-max "$per_store" >"$1" 2>&1 &
  pd_pid=$!
  pids+=("$pd_pid")
  golem_wait_port "$pd_port"
}

start_pd "$logs/pd-off.log" 0 "$split_bytes"
for i in 0 1 2; do
  port=$((base + 10 * i))
  d="$(mktemp -d -t golem-shardbal-node-XXXXXX)"; dirs+=("$d")
  "$golem" node --data-dir "$d" --listen "127.0.0.1:${port}" --shards "$shards" --pin off \
    --tick-ms 20 --memtable-kib 16 --pd "$pd_addr" >"$logs/node$i.log" 2>&1 &
  pids+=($!)
done
for i in 0 1 2; do golem_wait_port $((base + 10 * i)); done

ctl() { "$golem" ctl --pd "$pd_addr" "$@"; }
regions_json() { ctl --json region list --limit 10000 2>/dev/null || { sleep 0.3; ctl --json region list --limit 10000; }; }
nregions() { regions_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["regions"]))'; }

for _ in $(seq 1 300); do ctl put __probe x >/dev/null 2>&1 && break; sleep 0.1; done
value="$(head -c 4000 /dev/zero | tr '\0' v)"
keys=$((write_kib * 1024 / 4000))
t_write="$(now_ms)"
for i in $(seq -w 1 "$keys"); do ctl put "k$i" "$value" >/dev/null; done
echo "wrote $keys keys in $(( $(now_ms) - t_write )) ms" >&2

# Splits trail the writes: until the region count has not changed for
# STABLE_S s.
last=0; same=0; t0="$(now_ms)"
while (( $(now_ms) - t0 < 240000 && same < stable_s * 2 )); do
  n="$(nregions)"
  if [[ "$n" == "$last" ]]; then same=$((same + 1)); else same=0; last="$n"; fi
  sleep 0.5
done
regions_json >"$logs/before.json"

# Balance-shard on: the PD restarts on its directory (its schedulers are
# soft state; the region list comes back with the next heartbeats).
kill "$pd_pid"; wait "$pd_pid" 2>/dev/null || true
t_on="$(now_ms)"
split_on=1073741824
[[ "$keep_splitting" == 1 ]] && split_on="$split_bytes"
start_pd "$logs/pd-on.log" "$limit" "$split_on"
plog="$logs/polls.jsonl"; : >"$plog"
t_done=""
while (( $(now_ms) - t_on < 300000 )); do
  ops="$(ctl --json operator list 2>/dev/null || echo '{"operators":[1]}')"
  rs="$(regions_json 2>/dev/null || echo '{"regions":[]}')"
  printf '{"ms":%s,"ops":%s,"regions":%s}\n' "$(now_ms)" "$ops" "$rs" >>"$plog"
  if python3 - "$ops" "$rs" "$last" <<'EOF'
import json, sys, collections
ops = json.loads(sys.argv[1])["operators"]
rs = json.loads(sys.argv[2])["regions"]
c = collections.defaultdict(lambda: collections.Counter())
for r in rs:
    for p in r["peers"]:
        c[p["store"]][p["shard"]] += 1
even = len(c) == 3 and all(len(v) >= 2 and max(v.values()) - min(v.values()) <= 1 for v in c.values())
sys.exit(0 if even and not ops and len(rs) >= int(sys.argv[3]) else 1)
EOF
  then t_done="$(now_ms)"; break; fi
  sleep 0.5
done
sleep 6 # a store heartbeat (5 s) with the nodes' own per-shard counts
ctl --json store list >"$logs/stores-after.json"
regions_json >"$logs/after.json"
bad=0
for i in $(seq -w 1 "$keys"); do
  got="$(ctl get "k$i" 2>/dev/null || true)"
  [[ "$got" == "$value" ]] || bad=$((bad + 1))
done

{
  echo "# Balance across the shards of each node: $stamp"
  echo
  echo "3 nodes × $shards shards (\`--pin off\`, one 2-core machine shared with other work), PD"
  echo "\`--split-region-bytes $split_bytes\`, $keys keys of 4000 bytes written through the PD;"
  echo "balance-shard off while the PD splits (until the region count is stable for ${stable_s} s), then on"
  echo "(\`--shard-schedule-limit $limit\`, \`--shard-moves-per-store-max $per_store\`; size splits"
  echo "$([[ "$keep_splitting" == 1 ]] && echo "still on" || echo "off"))."
  echo "Release build. Command: \`perf/shard_balance.sh\`"
  echo "(SHARDS=$shards SPLIT_BYTES=$split_bytes WRITE_KIB=$write_kib LIMIT=$limit MOVES_PER_STORE=$per_store STABLE_S=$stable_s KEEP_SPLITTING=$keep_splitting)."
  echo
  python3 - "$logs/before.json" "$logs/after.json" "$logs/stores-after.json" "$plog" "$t_on" "$t_done" "$shards" <<'EOF'
import json, sys, collections
before = json.load(open(sys.argv[1]))["regions"]
after = json.load(open(sys.argv[2]))["regions"]
stores = json.load(open(sys.argv[3]))["stores"]
polls = [json.loads(l) for l in open(sys.argv[4]) if l.strip()]
t_on = int(sys.argv[5]); t_done = int(sys.argv[6]) if sys.argv[6] else None
shards = int(sys.argv[7])
def per_shard(rs):
    reg = collections.defaultdict(lambda: [0] * shards)
    lead = collections.defaultdict(lambda: [0] * shards)
    for r in rs:
        for p in r["peers"]:
            reg[p["store"]][p["shard"]] += 1
        if r.get("leader"):
            lead[r["leader"]["store"]][r["leader"]["shard"]] += 1
    return reg, lead
def ratio(v):
    lo, hi = min(v), max(v)
    return "inf" if lo == 0 else f"{hi / lo:.2f}"
ops = {}
for p in polls:
    for o in p["ops"]["operators"]:
        if isinstance(o, dict):
            ops[o["id"]] = o
by_src = collections.Counter(o["source"] for o in ops.values())
# Ping-pong: a replica moved back to a (store, shard) its region had left.
hist = collections.defaultdict(list)
for p in polls:
    for r in p["regions"]["regions"]:
        s = frozenset((x["store"], x["shard"]) for x in r["peers"])
        if not hist[r["id"]] or hist[r["id"]][-1] != s:
            hist[r["id"]].append(s)
back = 0
for h in hist.values():
    left = set()
    for a, b in zip(h, h[1:]):
        back += len((b - a) & left)
        left |= a - b
b_reg, b_lead = per_shard(before)
a_reg, a_lead = per_shard(after)
print(f"- regions: {len(before)} before, {len(after)} after")
took = "did not settle within 300 s" if t_done is None else f"{(t_done - t_on) / 1000:.1f} s"
print(f"- balance-shard on → every node's shards within one replica and no operator running: {took}")
print(f"- operators seen (polled every 500 ms): {dict(by_src)}; a replica moved back to a shard it had left: {back}")
print()
print("| store | replicas per shard before | after | max/min before | after | leaders per shard before | after | max/min before | after |")
print("|---|---|---|---:|---:|---|---|---:|---:|")
for s in sorted(set(b_reg) | set(a_reg)):
    print(f"| {s} | {b_reg[s]} | {a_reg[s]} | {ratio(b_reg[s])} | {ratio(a_reg[s])} | "
          f"{b_lead[s]} | {a_lead[s]} | {ratio(b_lead[s])} | {ratio(a_lead[s])} |")
print()
print("The nodes' own per-shard report after (`store list`, regions/leaders/busy ‰ per shard):")
print()
for st in sorted(stores, key=lambda x: x["id"]):
    print(f"- store {st['id']}: " + ", ".join(
        f"shard {l['shard']} {l['region_count']}/{l['leader_count']}/{l['busy_permille']}‰" for l in st["shards"]))
EOF
  echo
  echo "- keys read back after the moves: $((keys - bad)) of $keys"
} >"$report"
cleanup
echo "results in $report" >&2
cat "$report"
