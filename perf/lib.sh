# Shared helpers of the perf scripts (source it; it runs nothing by itself).

# golem_start_node BIN_DIR PORT SHARDS LOG: starts `golem node` on
# 127.0.0.1:PORT with its data in a new temporary directory, stops it by
# its pid (and removes the data) when the calling script exits, and returns
# once shard 0 accepts connections. Sets GOLEM_NODE_PID.
golem_start_node() {
  local bin="$1" port="$2" shards="$3" log="$4"
  GOLEM_NODE_DATA="$(mktemp -d -t golem-perf-XXXXXX)"
  "$bin/golem" node --data-dir "$GOLEM_NODE_DATA" --listen "127.0.0.1:${port}" \
    --shards "$shards" --pin off >"$log" 2>&1 &
  GOLEM_NODE_PID=$!
  trap 'kill "$GOLEM_NODE_PID" 2>/dev/null || true; wait "$GOLEM_NODE_PID" 2>/dev/null || true; rm -rf "$GOLEM_NODE_DATA"' EXIT
  golem_wait_port "$port"
}

# golem_wait_port PORT: waits (up to 20 s) until 127.0.0.1:PORT accepts.
golem_wait_port() {
  for _ in $(seq 1 200); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}
