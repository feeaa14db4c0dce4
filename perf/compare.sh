#!/usr/bin/env bash
# GolemDB vs etcd vs redis: the same golem-loadgen workload against each, in
# one run on one machine, with a table of ratios.
#
# Starts, all on loopback with data in one temporary directory:
#   - one `golem node` (today: one node, one region, one voter — replication
#     across nodes is issue #5), every put acknowledged after fdatasync;
#   - a 3-member etcd cluster (Debian's etcd-server), its default durability
#     (fdatasync on every commit), linearizable reads (etcd's default);
#   - one redis-server without persistence (--save "" --appendonly no).
# Installs etcd-server, redis-server and protobuf-compiler (the etcd
# backend's gRPC stubs need protoc) with apt-get when missing. Runs put and
# get at each concurrency against each system, writes the JSON reports, the
# .hgrm files, an SVG latency plot per run and summary.txt (with the
# ratios) to
# perf/results/compare-<timestamp>/, and stops every process it started by
# its pid.
#
# Usage: perf/compare.sh [duration_s] [shards] [concurrencies...]
#   concurrencies: "connections:in_flight" pairs, default "1:1 4:32".
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${1:-10}"
shards="${2:-2}"
shift $(( $# > 2 ? 2 : $# ))
concurrencies=("$@")
[ ${#concurrencies[@]} -eq 0 ] && concurrencies=("1:1" "4:32")
keys="${GOLEM_PERF_KEYS:-10000}"
value_bytes=256
golem_port="${GOLEM_PERF_PORT:-17400}"
redis_port="${GOLEM_PERF_REDIS_PORT:-16379}"
etcd_base="${GOLEM_PERF_ETCD_PORT:-22379}"
etcd_client_ports=("$etcd_base" $((etcd_base + 1)) $((etcd_base + 2)))
etcd_peer_ports=($((etcd_base + 10)) $((etcd_base + 11)) $((etcd_base + 12)))
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="perf/results/compare-${stamp}"
mkdir -p "$out"

missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release -p golem-engine --bin golem >/dev/null
cargo build --release -p golem-loadgen --features etcd >/dev/null
bin="${CARGO_TARGET_DIR:-target}/release"

for p in "$golem_port" $((golem_port + shards - 1)) "$redis_port" \
  "${etcd_client_ports[@]}" "${etcd_peer_ports[@]}"; do
  if (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is in use: set GOLEM_PERF_PORT / GOLEM_PERF_ETCD_PORT / GOLEM_PERF_REDIS_PORT" >&2
    exit 1
  fi
done

tmp="$(mktemp -d -t golem-compare-XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 200); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

"$bin/golem" node --data-dir "$tmp/golem" --listen "127.0.0.1:${golem_port}" \
  --shards "$shards" --pin off >"$out/golem.log" 2>&1 &
pids+=($!)
golem_pids=($!)

cluster=""
for i in 0 1 2; do
  cluster+="${cluster:+,}e$i=http://127.0.0.1:${etcd_peer_ports[$i]}"
done
etcd_endpoints=""
etcd_pids=()
for i in 0 1 2; do
  cp="${etcd_client_ports[$i]}"; pp="${etcd_peer_ports[$i]}"
  etcd --name "e$i" --data-dir "$tmp/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "$cluster" --initial-cluster-state new \
    --initial-cluster-token golem-compare >"$out/etcd$i.log" 2>&1 &
  pids+=($!)
  etcd_pids+=($!)
  etcd_endpoints+="${etcd_endpoints:+,}127.0.0.1:$cp"
done

mkdir -p "$tmp/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$tmp/redis" >"$out/redis.log" 2>&1 &
pids+=($!)
redis_pids=($!)

# CPU time (user + system, in clock ticks) of the given processes.
clk_tck="$(getconf CLK_TCK)"
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") ))
  done
  echo "$total"
}

wait_port "$golem_port"
for p in "${etcd_client_ports[@]}"; do wait_port "$p"; done
wait_port "$redis_port"
sleep 2 # let etcd elect a leader

{
  echo "# GolemDB vs etcd vs redis, ${duration}s per run (+1 s warm-up), ${value_bytes} B values, ${keys} keys, uniform keys"
  echo "# golem: ONE node, ${shards} shards, one region, one voter (no replication yet: issue #5); puts durable (fdatasync)"
  echo "# etcd $(etcd --version | awk '/etcd Version/{print $3}'): 3 members on loopback, defaults (fdatasync per commit), linearizable gets"
  echo "# redis $(redis-server --version | awk '{print $3}' | tr -d v=): one node, no persistence"
  echo "# machine: $(nproc) CPUs ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), data on $(df -T "$tmp" | awk 'NR==2{print $2}'); servers and load generator share the CPUs"
  echo "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "# command: CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target} perf/compare.sh $duration $shards ${concurrencies[*]}"
} >"$out/summary.txt"

for conc in "${concurrencies[@]}"; do
  c="${conc%%:*}"; f="${conc##*:}"
  for mode in put get; do
    for backend in golem etcd redis; do
      case "$backend" in
        golem) target=(--addr "127.0.0.1:${golem_port}") ;;
        etcd) target=(--endpoints "$etcd_endpoints") ;;
        redis) target=(--endpoints "127.0.0.1:${redis_port}") ;;
      esac
      name="${backend}-${mode}-c${c}-f${f}"
      echo "== $name"
      server_pids_var="${backend}_pids[@]"
      cpu_before="$(cpu_ticks "${!server_pids_var}")"
      "$bin/golem-loadgen" --backend "$backend" "${target[@]}" --mode "$mode" \
        --connections "$c" --in-flight "$f" --duration-s "$duration" \
        --keys "$keys" --value-bytes "$value_bytes" \
        --json-out "$out/$name.json" --hgrm-dir "$out/hgrm-$name" \
        --svg-out "$out/$name.svg" >"$out/$name.txt"
      echo "$(( $(cpu_ticks "${!server_pids_var}") - cpu_before )) $clk_tck" >"$out/$name.cpu"
      tail -n 4 "$out/$name.txt"
    done
  done
done

python3 - "$out" "${concurrencies[@]}" <<'PY' | tee -a "$out/summary.txt"
import json, sys
out, concs = sys.argv[1], sys.argv[2:]
def run(b, mode, c, f):
    j = json.load(open(f"{out}/{b}-{mode}-c{c}-f{f}.json"))
    row = next(p for p in j["phases"] if p["phase"] == "run")
    op = "UPDATE" if mode == "put" else "READ"
    o = next(o for o in row["ops"] if o["op"] == op)
    return row["total_ops_per_s"], o["latency"]["p50_us"], o["latency"]["p99_us"], o["errors"]
def cpu_us_per_op(b, mode, c, f):
    # Server CPU (all members) over the whole invocation divided by its
    # operations. Put mode has no load phase; its 1 s warm-up is assumed to
    # run at the measured rate, so ops ≈ run ops × (duration + 1) / duration.
    ticks, hz = map(int, open(f"{out}/{b}-{mode}-c{c}-f{f}.cpu").read().split())
    j = json.load(open(f"{out}/{b}-{mode}-c{c}-f{f}.json"))
    row = next(p for p in j["phases"] if p["phase"] == "run")
    ops = sum(o["latency"]["count"] for o in row["ops"])
    d = row["takes_s"]
    return ticks / hz * 1e6 / (ops * (d + j["warmup_s"]) / d)
print()
print("| workload | golem ops/s | etcd ops/s | redis ops/s | golem/etcd | golem/redis | golem p50/p99 µs | etcd p50/p99 µs | redis p50/p99 µs |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for conc in concs:
    c, f = conc.split(":")
    for mode in ("put", "get"):
        g, e, r = (run(b, mode, c, f) for b in ("golem", "etcd", "redis"))
        errs = g[3] + e[3] + r[3]
        note = f" ({errs} errors)" if errs else ""
        print(f"| {mode}, {c} conn × {f} in flight{note} | {g[0]:,.0f} | {e[0]:,.0f} | {r[0]:,.0f} | "
              f"{g[0]/e[0]:.2f} | {g[0]/r[0]:.2f} | {g[1]:,}/{g[2]:,} | {e[1]:,}/{e[2]:,} | {r[1]:,}/{r[2]:,} |")
print()
print("Server CPU per put (µs, user+system of every server process; etcd: all 3 members):")
print()
print("| workload | golem | etcd | redis | golem/etcd |")
print("|---|---:|---:|---:|---:|")
for conc in concs:
    c, f = conc.split(":")
    g, e, r = (cpu_us_per_op(b, "put", c, f) for b in ("golem", "etcd", "redis"))
    print(f"| put, {c} conn × {f} in flight | {g:.1f} | {e:.1f} | {r:.1f} | {g/e:.2f} |")
PY
echo "results in $out"
