#!/bin/bash
# alert_alertmanager.sh — augur's rule evaluation and Alertmanager sender
# against Debian's real prometheus-alertmanager (0.25), on loopback ports:
#
#   - a score written into augur makes the rule fire; the alert shows up in
#     Alertmanager's GET /api/v2/alerts with the rule's labels (stable
#     identity) and the templated annotations (score);
#   - resends (every second here) do not duplicate it;
#   - after an Alertmanager restart (alerts live only in its memory) the
#     alert comes back through resends;
#   - when the score falls the alert resolves and leaves the active list;
#   - SIGHUP and POST /-/reload re-read the rule file; a broken file is
#     refused and the running rules stay;
#   - augur check rules exit codes; augur drain list/pause against the
#     running server; augur_notifications_* on /metrics.
# Needs: prometheus-alertmanager, curl, /usr/bin/python3, $AUGUR_BIN.
set -uo pipefail

AUGUR_BIN=${AUGUR_BIN:?AUGUR_BIN must point at the augur binary}
AUGUR_SRC=${AUGUR_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
AM_BIN=/usr/bin/prometheus-alertmanager
PY=/usr/bin/python3
[ -x "$AM_BIN" ] || { echo "SKIP: $AM_BIN not installed"; exit 0; }
command -v curl >/dev/null || { echo "SKIP: curl missing"; exit 0; }
[ -x "$PY" ] || { echo "SKIP: $PY missing"; exit 0; }

TMP=$(mktemp -d /tmp/augur-alert-it-XXXXXX)
AM_PID=
AUGUR_PID=
stop_pid() {
  local p=$1
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
}
cleanup() {
  stop_pid "$AUGUR_PID"
  stop_pid "$AM_PID"
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date -u +%H:%M:%S)] $*"; }
fail() {
  echo "FAIL: $*"
  for f in "$TMP"/*.log; do echo "--- $f (tail)"; tail -n 20 "$f"; done
  exit 1
}
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_http() { # url seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  return 1
}

AMP=$(free_port)
AP=$(free_port)
cat > "$TMP/am.yml" <<YML
route:
  receiver: "null"
  group_wait: 1s
receivers:
  - name: "null"
YML
start_am() {
  rm -rf "$TMP/am-data"
  "$AM_BIN" --config.file="$TMP/am.yml" --storage.path="$TMP/am-data" \
    --web.listen-address=127.0.0.1:$AMP --cluster.listen-address= \
    >>"$TMP/alertmanager.log" 2>&1 &
  AM_PID=$!
  wait_http "http://127.0.0.1:$AMP/-/ready" 30 || fail "alertmanager did not start"
}

cat > "$TMP/rules.yml" <<'YML'
groups:
  - name: it
    interval: 1s
    rules:
      - alert: DiskRiskIT
        expr: augur_failure_probability{kind="disk"} > 0.8
        for: 2s
        labels:
          severity: warning
        annotations:
          summary: "disk {{ $labels.device }} on {{ $labels.instance }} at risk"
          risk: '{{ printf "%.2f" $value }}'
YML

# augur check rules: exit codes.
"$AUGUR_BIN" check rules "$TMP/rules.yml" >/dev/null || fail "check rules on a valid file"
"$AUGUR_BIN" check rules "$AUGUR_SRC/tests/data/rules/bad.yml" >"$TMP/check.out"
[ $? = 1 ] || fail "check rules on a bad file should exit 1"
grep -q 'bad.yml:8:14: group "broken", rule 2, "BadFor"' "$TMP/check.out" || fail "check rules message"
"$AUGUR_BIN" check >/dev/null 2>&1; [ $? = 2 ] || fail "check without args should exit 2"

start_am
log "alertmanager on $AMP"
"$AUGUR_BIN" serve --web.listen-address=127.0.0.1:$AP --storage.path="$TMP/data" \
  --rules.file="$TMP/rules.yml" --rules.defaults=false \
  --alertmanager.url=http://127.0.0.1:$AMP --rules.evaluation-interval=1s \
  --rules.alert.resend-delay=1s --drain.interval=1s --detect.enabled=false \
  >"$TMP/augur.log" 2>&1 &
AUGUR_PID=$!
wait_http "http://127.0.0.1:$AP/-/ready" 30 || fail "augur did not start"
log "augur on $AP"

put_score() {
  printf 'augur_failure_probability{kind="disk",instance="node7:9100",device="sdb",serial="WX123"} %s\n' "$1" |
    curl -sf -X POST --data-binary @- "http://127.0.0.1:$AP/api/v1/import/prometheus" ||
    fail "import"
}
am_alerts() { # prints one line per active DiskRiskIT alert: labels|annotations
  curl -sf "http://127.0.0.1:$AMP/api/v2/alerts?filter=alertname%3D%22DiskRiskIT%22" | "$PY" -c '
import json,sys
for a in json.load(sys.stdin):
    l=a["labels"]; an=a["annotations"]
    print(json.dumps(l,sort_keys=True)+"|"+json.dumps(an,sort_keys=True)+"|"+a["status"]["state"])'
}
wait_alerts() { # count seconds
  for _ in $(seq 1 $(( $2 * 5 ))); do
    [ "$(am_alerts | wc -l)" = "$1" ] && return 0
    sleep 0.2
  done
  return 1
}
keep_scoring() { # value seconds: a fresh sample every 0.5 s
  for _ in $(seq 1 $(( $2 * 2 ))); do put_score "$1"; sleep 0.5; done
}

put_score 0.93
wait_alerts 1 20 || fail "alert did not reach alertmanager"
A=$(am_alerts)
log "alertmanager has: $A"
want_l='{"alertname": "DiskRiskIT", "device": "sdb", "instance": "node7:9100", "kind": "disk", "serial": "WX123", "severity": "warning"}'
want_a='{"risk": "0.93", "summary": "disk sdb on node7:9100 at risk"}'
[ "${A%%|*}" = "$want_l" ] || fail "labels: ${A%%|*}"
rest=${A#*|}
[ "${rest%%|*}" = "$want_a" ] || fail "annotations: ${rest%%|*}"

# Resends (1 s) for 4 s, the score changing: still one alert, same
# identity, the new score in its annotations.
keep_scoring 0.95 4
[ "$(am_alerts | wc -l)" = 1 ] || fail "resends duplicated the alert: $(am_alerts)"
am_alerts | grep -q '"risk": "0.95"' || fail "annotation not updated: $(am_alerts)"

# Alertmanager restart: it forgets everything; resends bring the alert back.
stop_pid "$AM_PID"
AM_PID=
log "alertmanager stopped"
keep_scoring 0.95 2
start_am
log "alertmanager restarted"
put_score 0.95
wait_alerts 1 20 || fail "alert did not come back after the Alertmanager restart"

# Metrics.
M=$(curl -sf "http://127.0.0.1:$AP/metrics")
echo "$M" | grep -q "^augur_notifications_sent_total{alertmanager=\"http://127.0.0.1:$AMP/api/v2/alerts\"} [1-9]" ||
  fail "augur_notifications_sent_total missing"
echo "$M" | grep -q '^augur_notifications_errors_total{.*} [1-9]' || fail "errors not counted during the outage"
echo "$M" | grep -q '^augur_notifications_queue_length{' || fail "queue length missing"

# ALERTS series in augur's own store.
curl -sf "http://127.0.0.1:$AP/api/v1/query" --data-urlencode 'query=ALERTS{alertname="DiskRiskIT",alertstate="firing"}' |
  grep -q '"device":"sdb"' || fail "ALERTS series not queryable"
curl -sf "http://127.0.0.1:$AP/api/v1/alerts" | grep -q '"state":"firing"' || fail "/api/v1/alerts"

# Score falls: resolved (endsAt = now), leaves the active list.
put_score 0.1
wait_alerts 0 15 || fail "alert did not resolve: $(am_alerts)"
log "resolved"

# Reload: a second rule by SIGHUP, a broken file refused by POST /-/reload.
cat >> "$TMP/rules.yml" <<'YML'
      - alert: SecondRule
        expr: vector(1)
YML
kill -HUP "$AUGUR_PID"
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$AP/api/v1/rules" | grep -q '"name":"SecondRule"' && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$AP/api/v1/rules" | grep -q '"name":"SecondRule"' || fail "SIGHUP reload"
kill -0 "$AUGUR_PID" || fail "augur exited on SIGHUP"
echo "groups: [ {name: x, rules: [ {alert: Y, expr: 'sum('} ] } ]" > "$TMP/rules.yml"
code=$(curl -s -o "$TMP/reload.out" -w '%{http_code}' -X POST "http://127.0.0.1:$AP/-/reload")
[ "$code" = 500 ] || fail "broken rules reload answered $code"
grep -q 'could not parse expression' "$TMP/reload.out" || fail "reload error message"
curl -sf "http://127.0.0.1:$AP/api/v1/rules" | grep -q '"name":"SecondRule"' || fail "old rules lost"

# Drain CLI against the running server (dry run defaults).
"$AUGUR_BIN" drain --url=http://127.0.0.1:$AP list | grep -q '"dry_run":true' || fail "drain list"
"$AUGUR_BIN" drain --url=http://127.0.0.1:$AP pause >/dev/null || fail "drain pause"
"$AUGUR_BIN" drain --url=http://127.0.0.1:$AP list | grep -q '"paused":true' || fail "paused"
"$AUGUR_BIN" drain --url=http://127.0.0.1:$AP approve nosuch 2>"$TMP/drain.err"
[ $? = 1 ] || fail "approve of an unknown node should fail"
grep -q 'HTTP 404' "$TMP/drain.err" || fail "approve error"
[ -s "$TMP/data/drain-audit.jsonl" ] || fail "no drain audit log"

stop_pid "$AUGUR_PID"
AUGUR_PID=
log "PASS"
