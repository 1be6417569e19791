#!/bin/bash
# query_cache.sh — augur serve's range-query result cache over HTTP:
#   - the same query_range twice: the second is a cache hit
#     (augur_query_cache_requests_total on /metrics) with the same body;
#   - a backfill (text import) into the cached range: the next answer has the
#     new series, the cached one was invalidated;
#   - a series delete (admin API): the next answer lacks it;
#   - --query.cache-size=0: no cache (no counters), same answers.
# Needs: $AUGUR_BIN, curl, /usr/bin/python3. Free loopback ports; the server
# and its directory go away on exit.
set -euo pipefail
AUGUR="${AUGUR_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/cli/augur}"
[ -x "$AUGUR" ] || { echo "no augur binary at $AUGUR" >&2; exit 1; }
TMP=$(mktemp -d)
PID=
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # start [extra flags...]
  PORT=$(free_port)
  BASE="http://127.0.0.1:$PORT"
  "$AUGUR" serve --web.listen-address=127.0.0.1:$PORT --storage.path="$TMP/data" --storage.retention=0 \
    --log.level=warn --detect.enabled=false --rules.defaults=false "$@" >"$TMP/serve.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do curl -sf "$BASE/-/ready" >/dev/null && return 0; sleep 0.1; done
  cat "$TMP/serve.log" >&2
  echo "augur did not become ready" >&2
  exit 1
}

stop() {
  kill "$PID"
  wait "$PID" || true
  PID=
}

T0=1700000000000
# m{instance="a"|"b"}: counters every 15 s over one hour
/usr/bin/python3 - "$T0" >"$TMP/base.txt" <<'EOF'
import sys
t0 = int(sys.argv[1])
for inst, k in (("a", 1), ("b", 3)):
    for i in range(240):
        print(f'm{{instance="{inst}",job="j"}} {i * 15 * k} {t0 + i * 15000}')
EOF
/usr/bin/python3 - "$T0" >"$TMP/backfill.txt" <<'EOF'
import sys
t0 = int(sys.argv[1])
for i in range(80, 160):
    print(f'm{{instance="c",job="j"}} {i * 150} {t0 + i * 15000}')
EOF

S=$((T0 / 1000 + 300)); E=$((T0 / 1000 + 3585))
query() {
  curl -sf -G "$BASE/api/v1/query_range" --data-urlencode 'query=sum by (instance) (rate(m[5m]))' \
    -d start=$S -d end=$E -d step=15
}
counter() { # counter NAME -> value on /metrics (empty if absent)
  curl -sf "$BASE/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}
fail() { echo "FAIL: $*" >&2; exit 1; }

start
curl -sf -X POST --data-binary @"$TMP/base.txt" "$BASE/api/v1/import/prometheus" >/dev/null
R1=$(query)
R2=$(query)
[ "$R1" = "$R2" ] || fail "cached answer differs from the first"
[ "$(counter 'augur_query_cache_requests_total{result="miss"}')" = 1 ] || fail "expected one miss"
[ "$(counter 'augur_query_cache_requests_total{result="hit"}')" = 1 ] || fail "expected one hit"
grep -q '"instance":"a"' <<<"$R1" || fail "no series a in $R1"
grep -q '"instance":"c"' <<<"$R1" && fail "series c before the backfill"

curl -sf -X POST --data-binary @"$TMP/backfill.txt" "$BASE/api/v1/import/prometheus" >/dev/null
R3=$(query)
grep -q '"instance":"c"' <<<"$R3" || fail "the backfilled series c is missing: stale cached answer"
[ "$(counter augur_query_cache_invalidations_total)" = 1 ] || fail "expected one invalidation"
R4=$(query)
[ "$R3" = "$R4" ] || fail "cached answer after the backfill differs"

curl -sf -X POST -G "$BASE/api/v1/admin/tsdb/delete_series" --data-urlencode 'match[]=m{instance="a"}' >/dev/null
R5=$(query)
grep -q '"instance":"a"' <<<"$R5" && fail "deleted series a still answered: stale cached answer"
stop

start --query.cache-size=0
[ -z "$(counter augur_query_cache_entries)" ] || fail "cache counters with --query.cache-size=0"
R6=$(query)
[ "$R5" = "$R6" ] || fail "answer without the cache differs from the cached one"
stop
echo "query_cache: OK"
