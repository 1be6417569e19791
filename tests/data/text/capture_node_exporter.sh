#!/bin/sh
# Capture a real node_exporter /metrics page for tests/test_textparse.c.
# Usage: tests/data/text/capture_node_exporter.sh [output file]
# Starts Debian's prometheus-node-exporter on a free loopback port, fetches
# /metrics once (text format 0.0.4), and stops the exporter.
set -eu
out=${1:-"$(dirname "$0")/node_exporter.txt"}
bin=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --web.listen-address="127.0.0.1:$port" >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
i=0
until curl -fsS -H 'Accept: text/plain;version=0.0.4' "http://127.0.0.1:$port/metrics" -o "$out.tmp" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 50 ] || { echo "node_exporter did not answer" >&2; exit 1; }
    sleep 0.1
done
mv "$out.tmp" "$out"
echo "wrote $out: $(wc -l <"$out") lines, $(grep -vc '^#' "$out") samples"
