#!/usr/bin/env bash
# How even the load is across stores after the PD's hot-region scheduling
# (issue #6), with balance-hot-region off and on, side by side, all on this
# one machine (loopback).
#
# Per run: a fresh PD + 3 nodes (--shards 1); RECORDS ordered YCSB records
# (user000000 …, VALUE_BYTES each) loaded with golem-loadgen into the one
# region, then `ctl region split` into REGIONS regions of equal record
# ranges; the first HOT_REGIONS regions (the ones the workload touches) all
# get their leader on one store, and the cold ones are led by the other two
# (`ctl operator add transfer-leader`), so leader counts are even and
# balance-leader has nothing to do. That setup runs under a PD started with
# --no-scheduling (balance-leader would fight the transfers while counts are
# uneven); the PD then restarts on its directory with the run's flags
# (schedulers and the hot cache are soft state). Then golem-loadgen runs a zipfian
# workload over the first HOT_REGIONS × RECORDS/REGIONS records only (so
# only the hot regions), open loop at a fixed rate, for DURATION_S; the
# PD's store list and region list are sampled every second.
#
# Workloads: read (95% reads / 5% updates, READ_OPS ops/s) and write (5% /
# 95%, WRITE_OPS ops/s). Modes: off (the hot thresholds set so high that no
# region is ever hot: --hot-region-schedule-limit 0 is refused, the limit
# must be at least 1) and on (the PD's defaults). Same seed and data in
# each. Load-based split and merges are off (they would reshape the hot
# regions instead), and the size threshold is far above the data.
#
# Reported per run: per-store read and written bytes/s (the nodes' store
# heartbeats, every 5 s) and leader counts; max/min of the per-store load
# averaged over the last 30 s, the first time after the load started that
# max/min fell below 1.5 (and whether it stayed), operators created by
# source (PD log), client throughput and p99.
#
# Writes perf/results/hot-balance-<stamp>.md (logs and samples next to it
# in hot-balance-<stamp>-logs/); stops every process by its pid.
#
# Usage: perf/hot_balance.sh
# Env: DURATION_S (90), RECORDS (5400), REGIONS (18), HOT_REGIONS (6),
#      VALUE_BYTES (1000), READ_OPS (3000), WRITE_OPS (1000), SEED (1),
#      WORKLOADS ("read write"), MODES ("off on"), GOLEM_PERF_PORT (18800),
#      GOLEM_BIN_DIR (golem + golem-loadgen to use instead of building this tree's)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
. perf/lib.sh

duration_s="${DURATION_S:-90}"
records="${RECORDS:-5400}"
nregions="${REGIONS:-18}"
hot_regions="${HOT_REGIONS:-6}"
value_bytes="${VALUE_BYTES:-1000}"
read_ops="${READ_OPS:-3000}"
write_ops="${WRITE_OPS:-1000}"
seed="${SEED:-1}"
workloads="${WORKLOADS:-read write}"
modes="${MODES:-off on}"
base="${GOLEM_PERF_PORT:-18800}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
report="perf/results/hot-balance-${stamp}.md"
logs="perf/results/hot-balance-${stamp}-logs"
mkdir -p "$logs"

if [[ -n "${GOLEM_BIN_DIR:-}" ]]; then
  bin="$GOLEM_BIN_DIR"
else
  cargo build --release --bin golem --bin golem-loadgen >/dev/null
  bin="${CARGO_TARGET_DIR:-target}/release"
fi
golem="$bin/golem"

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

pd_addr="127.0.0.1:$((base + 90))"
per_region=$((records / nregions))
hot_records=$((per_region * hot_regions))
pad=6
key_of() { printf 'user%0*d' "$pad" "$1"; }

ctl() { "$golem" ctl --pd "$pd_addr" "$@"; }
regions_json() { ctl --json region list 2>/dev/null || { sleep 0.2; ctl --json region list; }; }

pd_pid=""
pd_dir=""
# start_pd LOG PD_FLAGS...: the PD on $pd_dir (kept across restarts).
start_pd() {
  local log="$1"; shift
  "$golem" pd --listen "$pd_addr" --data-dir "$pd_dir" --initial-replicas 3 --tick-ms 20 \
    --schedule-interval-ms 500 --split-region-bytes 1073741824 --split-region-keys 100000000 \
    --split-region-qps 0 --split-region-bytes-per-sec 0 --max-merge-region-bytes 0 "$@" \
    >>"$log" 2>&1 &
  pd_pid=$!
  pids+=("$pd_pid")
}

# start_cluster NAME: a PD that creates no operators of its own (the
# layout is set up by hand: balance-leader would fight it) and 3 nodes;
# waits until each listens.
start_cluster() {
  local name="$1" d i port
  pd_dir="$(mktemp -d -t golem-hot-pd-XXXXXX)"; dirs+=("$pd_dir")
  start_pd "$logs/$name-pd-setup.log" --no-scheduling
  for i in 0 1 2; do
    port=$((base + 10 * i))
    d="$(mktemp -d -t golem-hot-node-XXXXXX)"; dirs+=("$d")
    "$golem" node --data-dir "$d" --listen "127.0.0.1:${port}" --shards 1 --pin off \
      --tick-ms 20 --pd "$pd_addr" >"$logs/$name-node$i.log" 2>&1 &
    pids+=($!)
  done
  for i in 0 1 2; do golem_wait_port $((base + 10 * i)); done
}

# restart_pd NAME PD_FLAGS...: the PD again on its directory with the
# run's schedulers (their state is soft: the region list comes back with
# the nodes' next heartbeats); waits until it lists every region with a leader.
restart_pd() {
  local name="$1"; shift
  kill "$pd_pid"; wait "$pd_pid" 2>/dev/null || true
  start_pd "$logs/$name-pd.log" "$@"
  golem_wait_port $((base + 90))
  wait_regions "$name"
}

# wait_regions NAME: until the PD lists every region, each with a leader
# (bounded: 30 s).
wait_regions() {
  for _ in $(seq 1 150); do
    [[ "$(regions_json 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin)["regions"]; print(len(r) if all(x.get("leader") for x in r) else 0)' 2>/dev/null)" == "$nregions" ]] && return 0
    sleep 0.2
  done
  echo "$1: the PD never listed $nregions regions with leaders" >&2
}

wait_writable() {
  for _ in $(seq 1 300); do
    ctl put __probe x >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the cluster never took a write" >&2
  return 1
}

# ops_count: operators running on the PD.
ops_count() {
  ctl --json operator list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["operators"]))'
}

# wait_quiet SECONDS LIMIT_S: until no operator has run for SECONDS.
wait_quiet() {
  local want="$1" limit="$2" quiet=0 start
  start="$(now_ms)"
  while (( $(now_ms) - start < limit * 1000 )); do
    if [[ "$(ops_count)" == 0 ]]; then
      quiet=$((quiet + 1))
      (( quiet >= want * 4 )) && return 0
    else
      quiet=0
    fi
    sleep 0.25
  done
  return 1
}

# split_all: splits the one region at every region boundary (highest key
# first, so the first region is always the one to split).
# A split the PD does not know the region of yet is tried again (bounded).
split_all() {
  local first i try
  for ((i = nregions - 1; i >= 1; i--)); do
    for try in 1 2 3 4 5 6 7 8 9 10; do
      first="$(regions_json | python3 -c 'import json,sys; print(min(json.load(sys.stdin)["regions"], key=lambda r: r["start"])["id"])')"
      ctl region split "$first" "$(key_of $((i * per_region)))" >>"$logs/split.log" 2>&1 && break
      (( try < 10 )) || { echo "split at record $((i * per_region)) failed" >&2; return 1; }
      sleep 0.5
    done
  done
}

# layout: prints "region store" transfers that put the hot regions' leaders
# on one store and the cold ones' evenly on the other two.
layout() {
  regions_json | python3 -c '
import json, sys, collections
hot_end = sys.argv[1]
rs = sorted(json.load(sys.stdin)["regions"], key=lambda r: r["start"])
stores = sorted({p["store"] for r in rs for p in r["peers"]})
hot = [r for r in rs if r["end"] != "" and r["end"] <= hot_end]
cold = [r for r in rs if r not in hot]
c = collections.Counter(r["leader"]["store"] for r in hot if r.get("leader"))
src = max(stores, key=lambda s: (c[s], -s))
others = [s for s in stores if s != src]
want = {r["id"]: src for r in hot}
for i, r in enumerate(cold):
    want[r["id"]] = others[i % len(others)]
for r in rs:
    if (r.get("leader") or {}).get("store") != want[r["id"]]:
        print(r["id"], want[r["id"]])
print("src", src)
' "$(key_of "$hot_records")"
}

# arrange: transfers until the layout holds (bounded); prints the hot store.
arrange() {
  local src="" moves region store
  for _ in $(seq 1 20); do
    moves="$(layout)"
    src="$(awk '$1=="src"{print $2}' <<<"$moves")"
    [[ "$(grep -vc '^src' <<<"$moves" || true)" == 0 ]] && { echo "$src"; return 0; }
    while read -r region store; do
      [[ "$region" == src ]] && continue
      ctl operator add transfer-leader "$region" "$store" >>"$logs/arrange.log" 2>&1 || true
    done <<<"$moves"
    sleep 1.5
  done
  echo "the leader layout never held" >&2
  echo "$src"
}

# sampler OUT: one JSON line per second (time, stores, regions) until killed.
sampler() {
  local out="$1"
  while true; do
    {
      printf '{"ms":%s,"stores":' "$(now_ms)"
      ctl --json store list 2>/dev/null | tr -d '\n' || printf 'null'
      printf ',"regions":'
      ctl --json region list 2>/dev/null | tr -d '\n' || printf 'null'
      printf '}\n'
    } >>"$out"
    sleep 1
  done
}

# analyse NAME WORKLOAD HOT_STORE T0_MS T1_MS SAMPLES PD_RUN_LOG RUN_JSON BEFORE_JSON:
# one JSON summary line of a run; analyse --table SUMMARIES: the report's tables.
analyse() {
  python3 - "$@" <<'EOF'
import collections, json, re, sys

RATIO_GOAL = 1.5
LAST_S = 30
INF = float("inf")

def ratio(vals):
    lo, hi = min(vals), max(vals)
    if hi == 0:
        return 1.0
    return INF if lo == 0 else hi / lo

def fmt_ratio(x):
    return "∞" if x is None or x == INF else f"{x:.2f}"

if sys.argv[1] == "--table":
    runs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
    print("## Results")
    print()
    print("Load: the bytes/s of the workload's kind (read for `read-*`, written for `write-*`) per store,")
    print(f"averaged over the last {LAST_S} s of the run; `max/min` of those averages (∞: a store at 0).")
    print("`< 1.5 at`: the first sample (6 s or more after the load began) whose per-store max/min was")
    print("below 1.5, and whether it stayed below for the rest of the run. Operators: created by the PD")
    print("during the run, by source. Hot regions: the ones the workload touches.")
    print()
    print("| run | hot store | load per store, last 30 s, KiB/s | max/min | < 1.5 at | stayed | leaders per store, end | hot regions' leaders per store, end | operators created | ops/s | p99 ms (read / update) | errors |")
    print("|---|---:|---|---:|---|---|---|---|---|---:|---|---:|")
    for r in runs:
        loads = " / ".join(f"s{s}: {v / 1024:.0f}" for s, v in sorted(r["last_loads"].items(), key=lambda x: int(x[0])))
        below = "never" if r["below_at_s"] is None else f"{r['below_at_s']:.0f} s"
        stayed = "-" if r["below_at_s"] is None else ("yes" if r["stayed"] else "no")
        leaders = " / ".join(f"s{k}: {v}" for k, v in sorted(r["leaders_end"].items(), key=lambda x: int(x[0])))
        hot_leaders = " / ".join(f"s{k}: {v}" for k, v in sorted(r["hot_leaders_end"].items(), key=lambda x: int(x[0])))
        ops = ", ".join(f"{k} {v}" for k, v in sorted(r["ops"].items())) or "none"
        p99 = " / ".join(f"{r['p99_ms'].get(k, '-')}" for k in ("READ", "UPDATE"))
        print(f"| {r['name']} | s{r['hot_store']} | {loads} | {fmt_ratio(r['last_ratio'])} | {below} | {stayed} | {leaders} | {hot_leaders} | {ops} | {r['ops_per_s']:.0f} | {p99} | {r['errors']} |")
    print()
    print("Per-store max/min of the workload's load through each run (one sample in five; s: seconds since the load began):")
    print()
    for r in runs:
        series = ", ".join(f"{t:.0f}s {fmt_ratio(x)}" for t, x in r["series"][::5])
        print(f"- {r['name']}: {series}")
    print()
    sys.exit(0)

name, wl, hot_store, t0, t1, samples, pdlog, runjson, beforejson = sys.argv[1:10]
t0, t1 = int(t0), int(t1)
field = "read_bytes_per_sec" if wl == "read" else "written_bytes_per_sec"
before = json.load(open(beforejson))["regions"]
rows = []
for line in open(samples):
    try:
        s = json.loads(line)
    except ValueError:
        continue
    if not s.get("stores") or not s.get("regions"):
        continue
    loads = {st["id"]: st.get(field, 0) for st in s["stores"]["stores"] if st["state"] == "Up"}
    rows.append((s["ms"], loads, s["regions"]["regions"]))
series = [((ms - t0) / 1000, ratio(list(l.values()))) for ms, l, _ in rows if l]
end_s = (t1 - t0) / 1000
last = [l for ms, l, _ in rows if (ms - t0) / 1000 >= end_s - LAST_S]
stores = sorted({s for l in last for s in l})
avg = {s: sum(l.get(s, 0) for l in last) / max(len(last), 1) for s in stores}
# From 6 s on: every store has sent a heartbeat covering the load.
live = [(t, x) for t, x in series if t >= 6]
below = next((t for t, x in live if x < RATIO_GOAL), None)
stayed = below is not None and all(x < RATIO_GOAL for t, x in live if t >= below)
hot_ids = {r["id"] for r in before if (r.get("leader") or {}).get("store") == int(hot_store)}
leaders_end, hot_leaders_end = collections.Counter(), collections.Counter()
if rows:
    for rg in rows[-1][2]:
        if rg.get("leader"):
            leaders_end[rg["leader"]["store"]] += 1
            if rg["id"] in hot_ids:
                hot_leaders_end[rg["leader"]["store"]] += 1
for s in stores:
    leaders_end.setdefault(s, 0)
    hot_leaders_end.setdefault(s, 0)
ansi = re.compile(r"\x1b\[[0-9;]*m")
ops = collections.Counter()
for raw in open(pdlog, errors="replace"):
    line = ansi.sub("", raw)
    if "operator created" in line:
        m = re.search(r'source="?([a-z-]+)', line)
        ops[m.group(1) if m else "?"] += 1
try:
    rep = json.load(open(runjson))
except (OSError, ValueError):
    rep = {}
p99 = {o["op"]: round(o["latency"]["p99_us"] / 1000, 1) for o in rep.get("ops", [])}
errors = sum(o.get("errors", 0) for o in rep.get("ops", []))
clean = lambda x: None if x == INF else x
print(json.dumps({
    "name": name, "hot_store": int(hot_store),
    "last_loads": {str(s): v for s, v in avg.items()},
    "last_ratio": clean(ratio(list(avg.values()))) if avg else None,
    "below_at_s": below, "stayed": stayed,
    "leaders_end": {str(k): v for k, v in leaders_end.items()},
    "hot_leaders_end": {str(k): v for k, v in hot_leaders_end.items()},
    "ops": dict(ops), "ops_per_s": rep.get("total_ops_per_s", 0.0), "p99_ms": p99, "errors": errors,
    "series": [(t, clean(x)) for t, x in series],
}))
EOF
}

{
  echo "# Load evenness after hot-region scheduling, off vs on (perf/hot_balance.sh)"
  echo
  echo "- machine: $(nproc) CPUs, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg) at start"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); binaries: ${GOLEM_BIN_DIR:-this tree, release}"
  echo "- command: DURATION_S=$duration_s RECORDS=$records REGIONS=$nregions HOT_REGIONS=$hot_regions VALUE_BYTES=$value_bytes READ_OPS=$read_ops WRITE_OPS=$write_ops SEED=$seed WORKLOADS=\"$workloads\" MODES=\"$modes\" perf/hot_balance.sh"
  echo "- PD + 3 nodes, --shards 1 --pin off --tick-ms 20, PD --schedule-interval-ms 500, no size/load split, no merge;"
  echo "  the layout is set up under --no-scheduling, then the PD restarts on its directory with the run's flags;"
  echo "  $records records of $value_bytes B in $nregions regions of $per_region; the workload touches records 0..$((hot_records - 1)) (the first $hot_regions regions, all led by one store at the start; leader counts even)"
  echo "- off: --hot-region-bytes-per-sec and --hot-region-keys-per-sec 10^15 (no region is ever hot; balance-leader and the rest as usual); on: the PD's defaults (64 KiB/s or 256 keys/s, 3 reports, limit 4, tolerance 5%)"
  echo "- load: golem-loadgen zipfian (scrambled) over those records, open loop, 4 connections × 32 in flight, seed $seed, $duration_s s (+1 s warm-up)"
  echo "- store load: the nodes' StoreStats read/written bytes per second (a store heartbeat every 5 s; read at the PD every 1 s)"
  echo
} >"$report"

summaries="$logs/summary.tsv"
: >"$summaries"

for wl in $workloads; do
  case "$wl" in
    read) rp=0.95; up=0.05; target="$read_ops" ;;
    write) rp=0.05; up=0.95; target="$write_ops" ;;
    *) echo "unknown workload $wl" >&2; exit 2 ;;
  esac
  for mode in $modes; do
    name="$wl-$mode"
    echo "== $name" >&2
    case "$mode" in
      off) hot_flags=(--hot-region-bytes-per-sec 1000000000000000 --hot-region-keys-per-sec 1000000000000000) ;;
      on) hot_flags=() ;;
      *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    start_cluster "$name"
    wait_writable
    addr="127.0.0.1:${base}"
    "$bin/golem-loadgen" --addr "$addr" -P workloadb --phase load \
      -p recordcount="$records" -p insertorder=ordered -p zeropadding="$pad" \
      -p fieldcount=1 -p fieldlength="$value_bytes" --seed "$seed" \
      --json-out "$logs/$name-load.json" >"$logs/$name-load.txt" 2>&1
    split_all
    wait_regions "$name"
    hot_store="$(arrange)"
    wait_quiet 1 30 || echo "$name: operators still running after the layout" >&2
    restart_pd "$name" "${hot_flags[@]}"
    regions_json >"$logs/$name-before.json"
    pd_lines="$(wc -l <"$logs/$name-pd.log")"
    samples="$logs/$name-samples.jsonl"
    : >"$samples"
    sampler "$samples" &
    sampler_pid=$!
    pids+=("$sampler_pid")
    t0="$(now_ms)"
    "$bin/golem-loadgen" --addr "$addr" -P workloadb --phase run \
      -p recordcount="$hot_records" -p insertorder=ordered -p zeropadding="$pad" \
      -p fieldcount=1 -p fieldlength="$value_bytes" -p requestdistribution=zipfian \
      -p readproportion="$rp" -p updateproportion="$up" -p target="$target" \
      -p operationcount=$((target * (duration_s + 10))) --connections 4 --in-flight 32 --duration-s "$duration_s" --warmup-s 1 \
      --seed "$seed" --json-out "$logs/$name-run.json" >"$logs/$name-run.txt" 2>&1 ||
      echo "$name: golem-loadgen failed (see $logs/$name-run.txt)" >&2
    t1="$(now_ms)"
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    tail -n +"$((pd_lines + 1))" "$logs/$name-pd.log" >"$logs/$name-pd-run.log"
    analyse "$name" "$wl" "$hot_store" "$t0" "$t1" \
      "$samples" "$logs/$name-pd-run.log" "$logs/$name-run.json" "$logs/$name-before.json" \
      >>"$summaries"
    cleanup
  done
done

analyse --table "$summaries" >>"$report"
echo "report: $report" >&2
