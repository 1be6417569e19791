#!/bin/bash
# serve_recovery.sh — `augur serve` killed with SIGKILL after acknowledging
# 600,000 samples (all still in the WAL), then started again on the same
# store. Checks: until the WAL is replayed /-/ready answers 503 (or nothing
# yet), never 200; the log shows the replay ("replaying WAL after a crash",
# then "WAL replayed" with every sample) before "ready"; once ready, every
# acknowledged sample is there (queried back). Loopback only, stopped on exit.
set -uo pipefail

AUGUR_BIN=${AUGUR_BIN:?AUGUR_BIN must point at the augur binary}
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "SKIP: python3 not installed"; exit 0; }

TMP=$(mktemp -d /tmp/augur-recovery-XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL: $*"; for f in "$TMP"/*.log; do echo "--- $f"; tail -n 15 "$f"; done; exit 1; }
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
start() { # $1: log file
  "$AUGUR_BIN" serve --web.listen-address=127.0.0.1:$PORT --storage.path="$TMP/data" \
    --storage.retention=0 --detect.enabled=false >"$1" 2>&1 &
  AUGUR_PID=$!
  PIDS+=("$AUGUR_PID")
}

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
start "$TMP/augur1.log"
for _ in $(seq 1 100); do
  curl -sf "$URL/-/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "$URL/-/ready" >/dev/null || fail "augur did not become ready"

# 2,000 series x 300 samples at 15 s, a body per timestamp; every POST must
# be acknowledged (2xx) before the kill.
"$PY" - "$URL" <<'EOF' || fail "import"
import sys, time, urllib.request
url = sys.argv[1] + "/api/v1/import/prometheus"
now = int(time.time() * 1000)
for j in range(300):
    t = now - (300 - j) * 15000
    body = "".join('rec_test{i="%d",job="r"} %d.%d %d\n' % (i, j, i % 10, t) for i in range(2000))
    req = urllib.request.Request(url, data=body.encode(), method="POST")
    with urllib.request.urlopen(req) as r:
        if r.status // 100 != 2:
            sys.exit("status %d" % r.status)
EOF
kill -KILL "$AUGUR_PID"
{ wait "$AUGUR_PID"; } 2>/dev/null
ls "$TMP/data/wal/"*.wal >/dev/null 2>&1 || fail "no WAL left after the kill"

start "$TMP/augur2.log"
# poll readiness: 503 (or no answer yet) until the replay is done, then 200
seen503=0
codes=""
for _ in $(seq 1 2400); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/-/ready" 2>/dev/null)
  if [ "$code" = 200 ]; then break; fi
  case "$code" in
    503) seen503=1 ;;
    000) ;;
    *) fail "/-/ready answered $code while starting" ;;
  esac
  kill -0 "$AUGUR_PID" 2>/dev/null || fail "augur exited while starting"
  sleep 0.05
done
[ "$code" = 200 ] || fail "not ready after 120 s"
grep -q 'msg="replaying WAL after a crash"' "$TMP/augur2.log" || fail "no replay start logged"
# every sample posted (augur's own series add a few)
nrep=$(grep -o 'msg="WAL replayed" segments=[0-9]* samples=[0-9]*' "$TMP/augur2.log" | head -1 | sed 's/.*samples=//')
[ -n "$nrep" ] && [ "$nrep" -ge 600000 ] || fail "WAL replayed line missing or count ${nrep:-none} < 600000"
# the replay is logged before readiness
lr=$(grep -n 'msg="WAL replayed"' "$TMP/augur2.log" | head -1 | cut -d: -f1)
ly=$(grep -n 'msg=ready' "$TMP/augur2.log" | head -1 | cut -d: -f1)
[ -n "$ly" ] && [ "$lr" -lt "$ly" ] || fail "ready logged before the replay finished"

"$PY" - "$URL" <<'EOF' || fail "query back"
import json, sys, urllib.parse, urllib.request
def q(expr):
    u = sys.argv[1] + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(u) as r:
        d = json.load(r)
    return float(d["data"]["result"][0]["value"][1])
n = q('count(count_over_time(rec_test{job="r"}[2h]))')
s = q('sum(count_over_time(rec_test{job="r"}[2h]))')
if n != 2000 or s != 600000:
    sys.exit("series %g samples %g, want 2000 and 600000" % (n, s))
EOF
echo "ok: replayed $nrep samples; /-/ready 503 seen while opening: $seen503"
