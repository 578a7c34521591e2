#!/usr/bin/env bash
# container-smoke.sh - build the image with podman and prove, end to end, that the container works:
# non-root, HEALTHCHECK passes, a Lead inserted into the org emulator is emailed to an SMTP sink,
# the SQLite file lands in the /data volume, and `podman stop` (SIGTERM) exits 0.
#
# Everything runs on loopback: the org emulator (`lead-notifier emulator`) and an SMTP sink
# (smtp-server + mailparser from node_modules) run on the host, the container uses the host
# network. Needs podman, Node 24 (`. .ci/node-env.sh` is sourced) and `npm ci` done.
#
# Usage: sudo scripts/container-smoke.sh     (root: podman with runc, as on the CI machines)
# env:   TAG=localhost/lead-notifier:smoke  NAME=lead-notifier-smoke  KEEP=1 (keep container,
#        volume and work dir)  NO_BUILD=1 (reuse TAG)  NO_CACHE=1 (cold build)  RUNTIME=runc
#        WAIT=60 (seconds per wait)
#        MAKE_BASE=/work/shared/tools/container/make-base.sh (builds a local node:24-slim when the
#        base image is missing and no registry is reachable)
# Exit: 0 when every check passed, 1 otherwise (the summary says which).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
# shellcheck disable=SC1091
. .ci/node-env.sh

TAG=${TAG:-localhost/lead-notifier:smoke}
NAME=${NAME:-lead-notifier-smoke}
VOLUME=${VOLUME:-$NAME-data}
WAIT=${WAIT:-60}
RUNTIME=${RUNTIME:-$(command -v runc >/dev/null && echo runc || echo '')}
MAKE_BASE=${MAKE_BASE:-/work/shared/tools/container/make-base.sh}
# Rlimits within what this sandbox allows (podman's defaults are above its hard limits).
NOFILE=$(ulimit -Hn); [ "$NOFILE" = unlimited ] && NOFILE=1048576
P=(podman); [ -n "$RUNTIME" ] && P+=(--runtime "$RUNTIME")
UL=(--ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=32768:32768")
export no_proxy='*' NO_PROXY='*' # every URL below is loopback

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lead-notifier-smoke.XXXXXX")
declare -A RESULT
FAILED=0
PIDS=()
pass() { RESULT[$1]="PASS  $2"; echo "== $1: PASS ($2)"; }
fail() { RESULT[$1]="FAIL  $2"; FAILED=1; echo "== $1: FAIL ($2)" >&2; }
# podman without systemd logs a "healthcheck timer" error on every create/remove: not ours
quiet() { "$@" 2>&1 | { grep -v 'systemd' || true; }; return "${PIPESTATUS[0]}"; }
ms() { date +%s%3N; }

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  if [ -z "${KEEP:-}" ]; then
    quiet "${P[@]}" rm -f -t 0 "$NAME" >/dev/null
    quiet podman volume rm -f "$VOLUME" >/dev/null
    rm -rf "$WORK"
  else
    echo "kept: container $NAME, volume $VOLUME, work dir $WORK"
  fi
}
trap cleanup EXIT

free_port() {
  node -e "const s=require('node:net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}
wait_for_line() { # FILE REGEX -> prints the first matching line
  for _ in $(seq $((WAIT * 5))); do
    grep -m1 -E "$2" "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# --- 1. build ------------------------------------------------------------------------------
if ! podman image exists docker.io/library/node:24-slim && [ -x "$MAKE_BASE" ]; then
  echo "== no node:24-slim here: building the local stand-in with $MAKE_BASE"
  "$MAKE_BASE" || exit 1
fi
if [ -z "${NO_BUILD:-}" ]; then
  t0=$(ms)
  # shellcheck disable=SC2046
  if ! quiet "${P[@]}" build --format docker --network host "${UL[@]}" $([ -n "${NO_CACHE:-}" ] && echo --no-cache) \
    --build-arg "REVISION=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    -t "$TAG" . >"$WORK/build.log"; then
    tail -30 "$WORK/build.log"
    fail build "podman build failed"
    exit 1
  fi
  BUILD_S=$(awk "BEGIN{printf \"%.1f\", ($(ms) - $t0) / 1000}")
fi
SIZE=$(podman image inspect -f '{{.Size}}' "$TAG")
SIZE_MB=$(awk "BEGIN{printf \"%.0f\", $SIZE / 1000000}")
pass build "${BUILD_S:+$BUILD_S s, }image $SIZE_MB MB ($TAG)"

# --- 2. host side: org emulator, SMTP sink, config -----------------------------------------
node bin/lead-notifier.js emulator --port 0 >"$WORK/emulator.out" 2>"$WORK/emulator.err" &
PIDS+=($!)
EMU_URL=$(wait_for_line "$WORK/emulator.out" '^http://') || {
  cat "$WORK/emulator.err"
  fail emulator "did not start"
  exit 1
}

# The SMTP sink: smtp-server on loopback; prints one JSON line per message (mailparser).
SMTP_SINK='
const { SMTPServer } = require("smtp-server");
const { simpleParser } = require("mailparser");
const server = new SMTPServer({
  authOptional: true, disabledCommands: ["STARTTLS", "AUTH"], logger: false,
  onData(stream, session, cb) {
    simpleParser(stream).then((m) => {
      console.log(JSON.stringify({ subject: m.subject, from: m.from?.text, to: m.to?.text,
        messageId: m.messageId, rcptTo: session.envelope.rcptTo.map((r) => r.address) }));
      cb();
    }, cb);
  },
});
server.listen(0, "127.0.0.1", () => console.log("listening " + server.server.address().port));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
'
node -e "$SMTP_SINK" >"$WORK/smtp.out" 2>"$WORK/smtp.err" &
PIDS+=($!)
SMTP_PORT=$(wait_for_line "$WORK/smtp.out" '^listening ' | cut -d' ' -f2) || {
  cat "$WORK/smtp.err"
  fail smtp-sink "did not start"
  exit 1
}
HTTP_PORT=$(free_port)
echo "== emulator $EMU_URL, SMTP sink 127.0.0.1:$SMTP_PORT, notifier HTTP 127.0.0.1:$HTTP_PORT"

mkdir -p "$WORK/config/templates"
cat >"$WORK/config/notifier.yaml" <<EOF
salesforce:
  loginUrl: $EMU_URL
  auth:
    flow: client_credentials
    clientId: \${SF_CLIENT_ID}
    clientSecret: \${SF_CLIENT_SECRET}
smtp:
  host: 127.0.0.1
  port: $SMTP_PORT
  secure: false
  ignoreTLS: true
store: sqlite:/data/notifier.db
http:
  host: 127.0.0.1
  port: \${LEAD_NOTIFIER_HTTP_PORT}
shutdownTimeout: 20s
rules:
  - name: smoke-leads
    object: Lead
    schedule: '*/2 * * * * *'
    startFrom: now
    select: [LastName, Company, Email]
    email:
      from: 'Lead desk <leads@example.com>'
      to: '{{Email}}'
      subject: 'New lead: {{LastName}} ({{Company}})'
      text: templates/lead.text.hbs
EOF
printf 'New lead {{LastName}} at {{Company}} <{{Email}}> (record {{Id}}).\n' >"$WORK/config/templates/lead.text.hbs"
# the container runs as uid 1000: the mounted config must be readable by it
chmod -R a+rX "$WORK/config"

# --- 3. run ----------------------------------------------------------------------------------
quiet "${P[@]}" rm -f -t 0 "$NAME" >/dev/null
quiet podman volume rm -f "$VOLUME" >/dev/null
quiet podman volume create "$VOLUME" >/dev/null
# As the Kubernetes manifest runs it: read-only root (podman adds a tmpfs /tmp), no capabilities,
# no privilege escalation.
quiet "${P[@]}" run -d --name "$NAME" --network host "${UL[@]}" \
  --read-only --cap-drop ALL --security-opt no-new-privileges \
  -v "$WORK/config:/config:ro" -v "$VOLUME:/data" \
  -e SF_CLIENT_ID=emulator-client -e SF_CLIENT_SECRET=emulator-secret \
  -e LEAD_NOTIFIER_HTTP_PORT="$HTTP_PORT" \
  "$TAG" >/dev/null || {
  fail run "podman run failed"
  exit 1
}
t_start=$(ms)

# HEALTHCHECK, run the way the engine would (podman needs systemd to schedule it itself)
hc=""
for _ in $(seq "$WAIT"); do
  [ "$(podman inspect "$NAME" --format '{{.State.Running}}')" = true ] || break
  if quiet podman healthcheck run "$NAME" >"$WORK/hc.out"; then hc=ok && break; fi
  sleep 1
done
if [ -n "$hc" ]; then
  pass healthcheck "podman healthcheck run: healthy after $(((($(ms) - t_start) + 500) / 1000)) s"
else
  fail healthcheck "$(tr '\n' ' ' <"$WORK/hc.out") state=$(podman inspect "$NAME" --format '{{.State.Status}}'); GET /healthz on :$HTTP_PORT -> $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/healthz")"
fi

uid=$(quiet podman exec "$NAME" id -u)
if [[ "$uid" =~ ^[0-9]+$ ]] && [ "$uid" != 0 ]; then
  pass non-root "uid $uid ($(quiet podman exec "$NAME" id -un))"
else fail non-root "id -u gave '$uid'"; fi

# --- 4. end to end: a Lead inserted into the org is emailed once ----------------------------
# Wait for the rule's first poll: with startFrom: now, that poll fixes what counts as new.
for _ in $(seq "$WAIT"); do podman logs "$NAME" 2>&1 | grep -q '"msg":"poll"' && break; sleep 1; done
t_insert=$(ms)
ins=$(curl -sS -X POST -H 'content-type: application/json' \
  -d '{"records":[{"LastName":"Smoke","Company":"Test","Email":"smoke@example.com"}]}' \
  "$EMU_URL/__emulator/records/Lead")
LEAD_ID=$(node -p 'JSON.parse(process.argv[1]).ids[0]' "$ins" 2>/dev/null) || LEAD_ID=""
if [ -z "$LEAD_ID" ]; then
  fail end-to-end "insert through the control API failed: $ins"
elif line=$(wait_for_line "$WORK/smtp.out" 'New lead: Smoke'); then
  pass end-to-end "Lead $LEAD_ID -> email '$(node -p 'JSON.parse(process.argv[1]).subject' "$line")' to $(node -p 'JSON.parse(process.argv[1]).rcptTo.join()' "$line") in $(((($(ms) - t_insert) + 500) / 1000)) s"
else
  fail end-to-end "no email at the sink within ${WAIT}s; container log tail: $(podman logs --tail 5 "$NAME" 2>&1 | tr '\n' ' ')"
fi
sleep 3 # two more poll ticks: the record must not be mailed again
n=$(grep -c 'New lead: Smoke' "$WORK/smtp.out")
if [ "$n" = 1 ]; then pass exactly-once "1 email after further polls"; else fail exactly-once "$n emails for one Lead"; fi

ready=$(curl -s -o "$WORK/readyz.json" -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/readyz")
echo "== /readyz: HTTP $ready $(head -c 300 "$WORK/readyz.json" 2>/dev/null)"

# --- 5. the SQLite file lives in the /data volume ------------------------------------------
db=$(quiet podman exec "$NAME" sh -c 'ls -ln /data/notifier.db 2>&1')
if [[ "$db" == -* ]]; then
  pass data-volume "$(echo "$db" | awk '{print "/data/notifier.db uid " $3 ", " $5 " bytes"}') in volume $VOLUME"
else fail data-volume "$db"; fi

# --- 6. SIGTERM drains and exits 0 ---------------------------------------------------------
POLLS_BEFORE=$(podman logs "$NAME" 2>&1 | grep '"msg":"poll"')
t_stop=$(ms)
quiet "${P[@]}" stop -t 30 "$NAME" >/dev/null
STOP_S=$(awk "BEGIN{printf \"%.1f\", ($(ms) - $t_stop) / 1000}")
code=$(podman inspect "$NAME" --format '{{.State.ExitCode}}')
if [ "$code" = 0 ]; then
  pass sigterm "podman stop -> exit code 0 after $STOP_S s"
else fail sigterm "exit code $code after $STOP_S s (143 = SIGTERM not handled, 137 = killed)"; fi
podman logs --tail 3 "$NAME" 2>&1 | sed 's/^/   log: /'
mp=$(podman volume inspect -f '{{.Mountpoint}}' "$VOLUME")
if [ -s "$mp/notifier.db" ]; then
  pass data-persisted "$(find "$mp" -mindepth 1 -printf '%f ')in $mp after stop"
else fail data-persisted "no notifier.db in $mp"; fi

# --- 7. restart on the same volume: the ledger survives, nothing is sent twice ----------------
quiet "${P[@]}" start "$NAME" >/dev/null
for _ in $(seq "$WAIT"); do [ "$(podman logs "$NAME" 2>&1 | grep -c '"msg":"poll"')" -gt "$(grep -c . <<<"$POLLS_BEFORE")" ] && break; sleep 1; done
curl -sS -X POST -H 'content-type: application/json' \
  -d '{"records":[{"LastName":"Smoke2","Company":"Test","Email":"smoke2@example.com"}]}' \
  "$EMU_URL/__emulator/records/Lead" >/dev/null
if wait_for_line "$WORK/smtp.out" 'New lead: Smoke2' >/dev/null; then
  sleep 3
  n1=$(grep -c 'New lead: Smoke ' "$WORK/smtp.out")
  if [ "$n1" = 1 ]; then pass restart "after a restart on the same volume: new Lead mailed, first one not re-sent"
  else fail restart "first Lead mailed $n1 times after the restart"; fi
else fail restart "no email for a Lead inserted after the restart"; fi
quiet "${P[@]}" stop -t 30 "$NAME" >/dev/null

# --- summary ---------------------------------------------------------------------------------
echo
echo "container smoke summary ($TAG)"
for k in build healthcheck non-root end-to-end exactly-once data-volume sigterm data-persisted restart; do
  printf '  %-15s %s\n' "$k" "${RESULT[$k]:-not run}"
done
exit "$FAILED"
