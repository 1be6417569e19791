#!/bin/bash
# serve_tls_auth.sh — `augur serve` over HTTPS with an auth file, driven by
# curl and by a real Prometheus remote_write with basic_auth and TLS
# (insecure_skip_verify against a throwaway self-signed certificate).
# Checks: the handshake works, credentials per role are enforced (401),
# Prometheus' basic_auth is accepted (samples arrive, no refusals), and
# SIGTERM ends augur with status 0. Everything on loopback, stopped on exit.
set -uo pipefail

AUGUR_BIN=${AUGUR_BIN:?AUGUR_BIN must point at the augur binary}
PY=/usr/bin/python3
for b in openssl curl prometheus prometheus-node-exporter; do
  command -v "$b" >/dev/null || { echo "SKIP: $b not installed"; exit 0; }
done

TMP=$(mktemp -d /tmp/augur-tls-XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] || continue
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL: $*"; for f in "$TMP"/*.log; do echo "--- $f"; tail -n 15 "$f"; done; exit 1; }
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 || fail "openssl"
cat >"$TMP/auth" <<EOF2
write basic  prom:rw-secret
read  bearer reader-token
admin bearer admin-token
EOF2
chmod 600 "$TMP/auth"

PORT=$(free_port); NE_PORT=$(free_port); PROM_PORT=$(free_port)
URL=https://127.0.0.1:$PORT
"$AUGUR_BIN" serve --web.listen-address=127.0.0.1:$PORT --storage.path="$TMP/data" \
  --storage.retention=0 --web.auth-file="$TMP/auth" --web.tls-cert-file="$TMP/cert.pem" \
  --web.tls-key-file="$TMP/key.pem" >"$TMP/augur.log" 2>&1 &
AUGUR_PID=$!
PIDS+=("$AUGUR_PID")
for _ in $(seq 1 100); do curl -ksf -o /dev/null "$URL/-/ready" && break; sleep 0.1; done
curl -ksf -o /dev/null "$URL/-/ready" || fail "augur over TLS not ready"
# Plain HTTP on the TLS port gets no HTTP answer.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$PORT/-/healthy")
[ "$code" != 200 ] || fail "plain HTTP answered on the TLS port"

c() { curl -ks -o /dev/null -w '%{http_code}' "$@"; }
[ "$(c "$URL/metrics")" = 401 ] || fail "/metrics without a token"
[ "$(c -H 'Authorization: Bearer nope' "$URL/metrics")" = 401 ] || fail "/metrics wrong token"
[ "$(c -H 'Authorization: Bearer reader-token' "$URL/metrics")" = 200 ] || fail "/metrics read token"
[ "$(c -u prom:rw-secret --data-binary 'x 1' "$URL/api/v1/import/prometheus")" = 204 ] || fail "import basic auth"
[ "$(c -u prom:wrong --data-binary 'x 1' "$URL/api/v1/import/prometheus")" = 401 ] || fail "import wrong password"
[ "$(c -H 'Authorization: Bearer reader-token' -XPOST "$URL/internal/force_flush")" = 401 ] || fail "flush with read token"
[ "$(c -H 'Authorization: Bearer admin-token' -XPOST "$URL/internal/force_flush")" = 204 ] || fail "flush with admin token"

prometheus-node-exporter --web.listen-address=127.0.0.1:$NE_PORT --no-collector.systemd \
  >"$TMP/node_exporter.log" 2>&1 &
PIDS+=($!)
cat >"$TMP/prometheus.yml" <<EOF2
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: node
    static_configs: [{targets: ['127.0.0.1:$NE_PORT']}]
remote_write:
  - url: $URL/api/v1/write
    basic_auth: {username: prom, password: rw-secret}
    tls_config: {insecure_skip_verify: true}
    queue_config: {batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}
EOF2
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prom" \
  --web.listen-address=127.0.0.1:$PROM_PORT --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
ok=0
for _ in $(seq 1 60); do
  n=$(curl -ksf -H 'Authorization: Bearer reader-token' "$URL/metrics" |
    awk '/^augur_samples_ingested_total/ {print $2}')
  if [ "${n:-0}" -gt 2000 ]; then ok=1; break; fi
  sleep 1
done
[ $ok = 1 ] || fail "Prometheus' samples did not arrive over TLS + basic auth (ingested ${n:-0})"
m=$(curl -ksf -H 'Authorization: Bearer reader-token' "$URL/metrics")
echo "$m" | grep -q 'augur_http_requests_total{handler="write",code="204"}' || fail "no 204 writes"
if echo "$m" | grep -q 'augur_http_requests_total{handler="write",code="40'; then fail "4xx writes"; fi
echo "ingested $n samples from Prometheus over TLS with basic auth"

kill -TERM "$AUGUR_PID"
wait "$AUGUR_PID"
rc=$?
[ $rc = 0 ] || fail "augur exited with $rc"
echo PASS
