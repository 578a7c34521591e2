#!/usr/bin/env bash
# The README's commands on a fresh clone of HEAD with the `node` first on PATH when this starts
# (.ci/run passes the machine's own PATH, before .ci/node-env.sh): `npm ci && npm start` must
# bring the demo up, `npm test` must pass (the npm scripts run on the pinned devDependency node),
# and under a node older than 22.12 `node bin/lead-notifier.js --help` must print exactly the
# one-line message and exit 1.
# Only committed changes are checked (the clone is of HEAD). Usage: scripts/old-node-check.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY

command -v node >/dev/null || { echo "old-node-check: no node on PATH" >&2; exit 1; }
machine_node=$(node -p process.versions.node)
echo "old-node-check: machine node $machine_node ($(command -v node)), npm $(npm --version)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lead-notifier-old-node.XXXXXX")
start_pid=
cleanup() {
  if [ -n "$start_pid" ] && kill -0 "$start_pid" 2>/dev/null; then kill -KILL -- "-$start_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "old-node-check: FAILED: $1" >&2
  [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 40 "$2" >&2
  exit 1
}

git clone -q "$repo" "$tmp/repo"
cd "$tmp/repo"

# 1. npm ci (as the README writes it; the EBADENGINE warnings of an old node go to the log)
t0=$SECONDS
npm ci >"$tmp/ci.log" 2>&1 || fail "npm ci" "$tmp/ci.log"
echo "old-node-check: npm ci ok in $((SECONDS - t0)) s; npm scripts run on $(npm exec -c 'node --version')"

# 2. npm start: the demo up until it prints its inbox URL, then SIGINT and exit 0. The signal
# goes to the demo's process (npm's child), not to npm: npm itself exits 130 whenever it gets a
# SIGINT (so Ctrl-C on `npm start` always shows 130), whatever its script returns. npm start runs
# in its own session so that everything it started can be found and, on failure, killed.
# DEMO_HTTP_PORT=0 so a busy :8080 does not fail it.
t0=$SECONDS
DEMO_HTTP_PORT=0 setsid npm start >"$tmp/start.log" 2>&1 &
start_pid=$!
up=
for _ in $(seq 1 120); do
  if grep -q 'http://127\.0\.0\.1:[0-9]*' "$tmp/start.log"; then up=1; break; fi
  kill -0 "$start_pid" 2>/dev/null || break
  sleep 0.5
done
[ -n "$up" ] || fail "npm start did not print the demo URL within 60 s" "$tmp/start.log"
sleep 2 # let it settle (the generator, the worker's first poll) before stopping it
demo_pid=$(pgrep -s "$start_pid" -f '^node bin/lead-notifier\.js demo' | head -n1) ||
  fail "npm start: no 'node bin/lead-notifier.js demo' process" "$tmp/start.log"
demo_node=$(readlink "/proc/$demo_pid/exe" 2>/dev/null || echo "?")
kill -INT "$demo_pid"
rc=
for _ in $(seq 1 40); do
  if ! kill -0 "$start_pid" 2>/dev/null; then
    rc=0
    wait "$start_pid" || rc=$?
    break
  fi
  sleep 0.5
done
[ -n "$rc" ] || fail "npm start did not stop within 20 s of SIGINT" "$tmp/start.log"
start_pid=
[ "$rc" -eq 0 ] || fail "npm start exited $rc after SIGINT" "$tmp/start.log"
echo "old-node-check: npm start: demo up on $demo_node ($(grep -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/start.log" | head -n1)), stopped by SIGINT, exit 0, $((SECONDS - t0)) s"

# 3. npm test: the unit tests only, to keep CI time down (the whole suite runs after this step
# in .ci/run, on the provisioned node; what this proves is that `npm test` itself starts vitest
# on the pinned node from a fresh `npm ci`).
t0=$SECONDS
npm test -- test/unit >"$tmp/test.log" 2>&1 || fail "npm test -- test/unit" "$tmp/test.log"
echo "old-node-check: npm test -- test/unit ok in $((SECONDS - t0)) s: $(sed 's/\x1b\[[0-9;]*m//g' "$tmp/test.log" | grep -E '^ *Tests ' | tr -s ' ' | head -n1)"

# 4. The guard, under the machine's node when it is older than the supported one.
if node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a<22||(a===22&&b<12)?0:1)'; then
  want="lead-notifier needs Node.js >= 22.12 (this is $machine_node)"
  rc=0
  node bin/lead-notifier.js --help >"$tmp/guard.out" 2>"$tmp/guard.err" || rc=$?
  [ "$rc" -eq 1 ] || fail "node bin/lead-notifier.js --help exited $rc under node $machine_node, not 1" "$tmp/guard.err"
  [ ! -s "$tmp/guard.out" ] || fail "node bin/lead-notifier.js --help wrote to stdout under node $machine_node" "$tmp/guard.out"
  [ "$(cat "$tmp/guard.err")" = "$want" ] && [ "$(wc -l <"$tmp/guard.err")" -eq 1 ] ||
    fail "node bin/lead-notifier.js --help under node $machine_node: stderr is not the one line '$want'" "$tmp/guard.err"
  echo "old-node-check: guard ok: $want"
else
  echo "old-node-check: guard not checked: the machine's node $machine_node is supported"
fi
