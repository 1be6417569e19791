#!/bin/bash
# serve_prometheus.sh — real remote-write senders against `augur serve`.
#
#   node_exporter ──scrape 1 s──► Prometheus 2.42 ──remote write 1.0──► augur
#   node_exporter ──scrape 1 s──► vmagent        ──remote write 1.0──► augur
#
# augur is killed with SIGKILL in the middle of the stream and restarted on
# the same port; both senders retry. At the end:
#   - every sample in Prometheus' own store (job="node", up to a cut-off time
#     the remote-write queue has passed) is in augur, bit-exact, and augur
#     holds nothing else for that job — nothing lost, nothing doubled;
#   - vmagent's job ("node_vm"): every scrape arrived complete (all series
#     share up's timestamps), and vmagent saw no 4xx answer;
#   - augur's /metrics counts no refused samples and a SIGTERM stops it with
#     status 0.
# Everything runs on free loopback ports and is stopped on exit (trap).
# Needs: prometheus, prometheus-node-exporter, vmagent (Debian 12 packages),
# /usr/bin/python3, curl, $AUGUR_BIN.
set -uo pipefail

AUGUR_BIN=${AUGUR_BIN:?AUGUR_BIN must point at the augur binary}
PY=/usr/bin/python3
RUN_S=${SERVE_IT_RUN_S:-20}
for b in prometheus prometheus-node-exporter vmagent curl; do
  command -v "$b" >/dev/null || { echo "SKIP: $b not installed"; exit 0; }
done
[ -x "$PY" ] || { echo "SKIP: $PY missing"; exit 0; }

TMP=$(mktemp -d /tmp/augur-it-XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null
  done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] || continue
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date -u +%H:%M:%S)] $*"; }
fail() { echo "FAIL: $*"; for f in "$TMP"/*.log; do echo "--- $f (tail)"; tail -n 15 "$f"; done; exit 1; }

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() {  # url, seconds
  local i
  for i in $(seq 1 $(( $2 * 10 ))); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  return 1
}

NE_PORT=$(free_port); PROM_PORT=$(free_port); VM_PORT=$(free_port); AUGUR_PORT=$(free_port)
AUGUR_URL=http://127.0.0.1:$AUGUR_PORT
PROM_URL=http://127.0.0.1:$PROM_PORT

start_augur() {
  # Detection and the default rules write augur's own series into the same
  # store; this test checks that exactly what the senders sent is stored, so
  # they are off here (they have tests of their own).
  "$AUGUR_BIN" serve --web.listen-address=127.0.0.1:$AUGUR_PORT --storage.path="$TMP/augur" \
    --storage.retention=0 --log.level=info --detect.enabled=false --rules.defaults=false \
    >>"$TMP/augur.log" 2>&1 &
  AUGUR_PID=$!
  PIDS+=("$AUGUR_PID")
  wait_http "$AUGUR_URL/-/ready" 60 || fail "augur did not become ready"
}

log "node_exporter :$NE_PORT"
prometheus-node-exporter --web.listen-address=127.0.0.1:$NE_PORT --no-collector.systemd >"$TMP/node_exporter.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$NE_PORT/metrics" 20 || fail "node_exporter did not start"

log "augur :$AUGUR_PORT"
start_augur

cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['127.0.0.1:$NE_PORT']
remote_write:
  - url: $AUGUR_URL/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      max_samples_per_send: 2000
      min_backoff: 100ms
      max_backoff: 1s
EOF
log "prometheus :$PROM_PORT"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" \
  --web.listen-address=127.0.0.1:$PROM_PORT --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
wait_http "$PROM_URL/-/ready" 30 || fail "prometheus did not become ready"

cat >"$TMP/vmagent.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: node_vm
    static_configs:
      - targets: ['127.0.0.1:$NE_PORT']
EOF
log "vmagent :$VM_PORT"
vmagent -promscrape.config="$TMP/vmagent.yml" -remoteWrite.url="$AUGUR_URL/api/v1/write" \
  -remoteWrite.tmpDataPath="$TMP/vmagent-data" -remoteWrite.flushInterval=1s \
  -httpListenAddr=127.0.0.1:$VM_PORT -loggerLevel=WARN >"$TMP/vmagent.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$VM_PORT/metrics" 30 || fail "vmagent did not start"

half=$(( RUN_S / 2 ))
log "streaming ${half}s, then kill -9 augur"
sleep "$half"
kill -KILL "$AUGUR_PID"
wait "$AUGUR_PID" 2>/dev/null
sleep 2
log "restarting augur on the same port"
start_augur
sleep $(( RUN_S - half ))

# Cut-off: compare everything up to T_CUT, once Prometheus has sent past it.
T_CUT=$(( $(date +%s) - 2 ))
log "waiting for Prometheus' remote-write queue to pass t=$T_CUT"
ok=0
for _ in $(seq 1 60); do
  # Prometheus does not scrape itself here: read its own /metrics.
  sent=$(curl -sf "$PROM_URL/metrics" |
    awk '/^prometheus_remote_storage_queue_highest_sent_timestamp_seconds/ {print int($2)}' | sort -n | head -1)
  pending=$(curl -sf "$PROM_URL/metrics" |
    awk '/^prometheus_remote_storage_samples_pending/ {s += $2} END {print s+0}')
  if [ "${sent:-0}" -ge $(( T_CUT + 3 )) ] && [ "${pending:-1}" = 0 ]; then ok=1; break; fi
  sleep 1
done
[ $ok = 1 ] || fail "Prometheus' remote write did not catch up (highest sent ${sent:-?}, cut $T_CUT, pending ${pending:-?})"
sleep 2

log "comparing Prometheus' store with augur up to t=$T_CUT"
"$PY" - "$PROM_URL" "$AUGUR_URL" "$T_CUT" "http://127.0.0.1:$VM_PORT" <<'PYEOF' || fail "comparison failed"
import json, struct, sys, urllib.parse, urllib.request
from decimal import Decimal

prom, augur, tcut, vm = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def query(base, q, t):
    data = urllib.parse.urlencode({"query": q, "time": str(t)}).encode()
    with urllib.request.urlopen(base + "/api/v1/query", data, timeout=60) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise SystemExit("%s: %s" % (base, body))
    return body["data"]["result"]

def bits(s):
    return struct.pack("<d", float(s))

def load(base, sel):
    out = {}
    for s in query(base, sel + "[10m]", tcut):
        key = tuple(sorted(s["metric"].items()))
        if key in out:
            raise SystemExit("%s: series %s twice" % (base, key))
        out[key] = [(int(Decimal(str(t)) * 1000), bits(v)) for t, v in s["values"]]
    return out

p = load(prom, '{job="node"}')
# augur's own derived series (augur_anomaly_score keeps the scraped labels) are
# not what Prometheus sent: compare everything else, and only that.
a = load(augur, '{job="node",__name__!~"augur_.*"}')
np = sum(len(v) for v in p.values())
na = sum(len(v) for v in a.values())
print("prometheus: %d series, %d samples; augur: %d series, %d samples" % (len(p), np, len(a), na))
if np < 1000:
    raise SystemExit("too few samples in Prometheus (%d): did the scrape run?" % np)
missing = [k for k in p if k not in a]
extra = [k for k in a if k not in p]
diff = [k for k in p if k in a and p[k] != a[k]]
for name, lst in (("missing in augur", missing), ("only in augur", extra), ("different samples", diff)):
    for k in lst[:5]:
        print("%s: %s" % (name, dict(k)))
        if name == "different samples":
            ps, as_ = set(p[k]), set(a[k])
            print("   only prometheus:", sorted(ps - as_)[:5], " only augur:", sorted(as_ - ps)[:5])
if missing or extra or diff:
    raise SystemExit("%d missing, %d extra, %d different series" % (len(missing), len(extra), len(diff)))

# Nothing but the two jobs in augur (besides augur's own derived series:
# anomaly scores and rates, ALERTS from the default rules).
other = query(augur, 'count({__name__=~".+", __name__!~"augur_.*|ALERTS|ALERTS_FOR_STATE", job!~"node|node_vm"})', tcut)
if other:
    raise SystemExit("augur holds series of other jobs: %s" % other)

# vmagent: every scrape complete — each series has exactly up's timestamps
# (series that appeared or vanished mid-run excepted), no duplicates.
v = load(augur, '{job="node_vm"}')
up = [k for k in v if dict(k).get("__name__") == "up"]
if not up:
    raise SystemExit("no vmagent data in augur")
ts_up = [t for t, _ in v[up[0]]]
if len(ts_up) < 5 or len(set(ts_up)) != len(ts_up):
    raise SystemExit("vmagent up: %d samples (%d distinct)" % (len(ts_up), len(set(ts_up))))
want = set(ts_up)
short = [k for k in v if set(t for t, _ in v[k]) != want and len(v[k]) < len(want) - 2]
if len(short) > len(v) // 50:
    raise SystemExit("%d of %d vmagent series miss scrapes, e.g. %s" % (len(short), len(v), dict(short[0])))
with urllib.request.urlopen(vm + "/metrics", timeout=10) as r:
    vmm = r.read().decode()
bad = [l for l in vmm.splitlines() if l.startswith("vmagent_remotewrite_requests_total") and 'status_code="4' in l]
if bad:
    raise SystemExit("vmagent saw 4xx answers: %s" % bad)
print("vmagent: %d series, %d scrapes each" % (len(v), len(ts_up)))
PYEOF

m=$(curl -sf "$AUGUR_URL/metrics") || fail "augur /metrics"
refused=$(echo "$m" | awk '/^augur_samples_rejected_total/ {s += $2} END {print s+0}')
[ "$refused" = 0 ] || fail "augur refused $refused samples: $(echo "$m" | grep '^augur_samples_rejected_total' | grep -v ' 0$')"
echo "$m" | grep -E '^augur_samples_(ingested|duplicate)_total'

log "SIGTERM augur"
kill -TERM "$AUGUR_PID"
wait "$AUGUR_PID"
rc=$?
[ $rc = 0 ] || fail "augur exited with $rc after SIGTERM"
grep -q 'msg=stopped' "$TMP/augur.log" || fail "no 'stopped' log line"
log "PASS"
