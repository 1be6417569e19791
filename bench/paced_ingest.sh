#!/bin/bash
# bench/paced_ingest.sh AUGUR_BIN "SERVE FLAGS" SECONDS
# Sustained-ingest check: `augur simulate` (1,000 nodes, 15 s, 3 days of history) as a paced
# remote-write client at 35,000 samples/s into a fresh `augur serve`; prints the server's CPU
# share, CPU s per 1M samples, series and peak RSS over SECONDS after a 10 s warm-up.
set -u
AUGUR=${1:?augur binary}; MODE=${2:-}; DUR=${3:-180}
W=$(mktemp -d); mkdir -p /tmp/pace; trap 'rm -rf "$W"' EXIT
START=$(date -u -d '-3 days' +%Y-%m-%dT%H:%M:%SZ)
"$AUGUR" serve --web.listen-address=127.0.0.1:9401 --storage.path=$W/data --log.level=warn $MODE & SP=$!
sleep 1
timeout $((DUR+15)) "$AUGUR" simulate --nodes 1000 --interval 15s --span 3d --start $START --out.remote-write http://127.0.0.1:9401/api/v1/write --rw.rate 35000 > $W/sim.log 2>&1 & SIM=$!
sleep 10
C0=$(awk '{print $14+$15}' /proc/$SP/stat); S0=$(curl -s 127.0.0.1:9401/metrics | awk '/^augur_samples_ingested_total/ {print $2}')
sleep $DUR
C1=$(awk '{print $14+$15}' /proc/$SP/stat); S1=$(curl -s 127.0.0.1:9401/metrics | awk '/^augur_samples_ingested_total/ {print $2}')
M=$(curl -s 127.0.0.1:9401/metrics); SER=$(echo "$M" | awk '/^augur_series / {print $2}'); FL=$(echo "$M" | grep -E "^augur_(storage_)?flushes" | head -1)
HWM=$(awk '/VmHWM/ {print $2}' /proc/$SP/status)
python3 -c "c=($C1-$C0)/100; s=($S1-$S0); print('mode [%s]: %d s, samples/s %.0f, server CPU %.1f%% of one core, CPU s per 1M samples %.3f, series %s, peak RSS %.0f MiB (%.2f KiB/series) %s' % ('$MODE', $DUR, s/$DUR, c/$DUR*100, c/(s/1e6), '$SER', $HWM/1024, $HWM/float('$SER'), '$FL'))"
kill $SIM 2>/dev/null; kill $SP; wait $SP 2>/dev/null
