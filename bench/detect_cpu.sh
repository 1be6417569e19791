#!/bin/bash
# bench/detect_cpu.sh AUGUR_BIN [WORKLOAD_DIR] [PAIRS]
# Issue 6's server goal: ingest CPU with anomaly detection on <= 1.3 x with it off. Replays the
# shared remote-write workload (../shared/bench/rwgen.py --out /tmp/wl-100) with rwload.py into
# a fresh `augur serve` (fresh store, --storage.retention=0, --rules.defaults=false), PAIRS times
# with --detect.enabled=true and PAIRS times with false, alternated (on/off, then off/on, ...).
# Per run: the server's utime+stime from /proc/PID/stat (a) during the replay (just before the
# first body to just after the last answer) and (b) until the detector's queue is empty too
# (augur_detect_queue_bytes 0), per 1M samples; then the on/off ratio of every adjacent pair.
# Stops only the server it started, by PID.
set -u
AUGUR=${1:?augur binary}; WL=${2:-/tmp/wl-100}; PAIRS=${3:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
RWLOAD=${RWLOAD:-$HERE/../../shared/bench/rwload.py}
PORT=${PORT:-9402}
[ -x "$AUGUR" ] || { echo "detect_cpu.sh: $AUGUR is not executable" >&2; exit 2; }
[ -f "$WL/manifest.json" ] || { echo "detect_cpu.sh: $WL/manifest.json missing (rwgen.py --out $WL)" >&2; exit 2; }
[ -f "$RWLOAD" ] || { echo "detect_cpu.sh: rwload.py not found at $RWLOAD" >&2; exit 2; }
TCK=$(getconf CLK_TCK)
W=$(mktemp -d /tmp/detect_cpu.XXXXXX); SP=
cleanup() { [ -n "$SP" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
cpu() { awk -v t="$TCK" '{printf "%.2f", ($14+$15)/t}' /proc/$1/stat; }
metric() { curl -s "127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

run() { # $1 = true|false; appends one line to $W/runs
	local mode=$1 d=$W/data-$1 c0 c1 c2 q i
	rm -rf "$d"
	"$AUGUR" serve --web.listen-address=127.0.0.1:$PORT --storage.path="$d" --storage.retention=0 \
		--log.level=warn --rules.defaults=false --detect.enabled=$mode & SP=$!
	for i in $(seq 100); do curl -sf "127.0.0.1:$PORT/-/ready" >/dev/null && break; sleep 0.1; done
	c0=$(cpu $SP)
	/usr/bin/python3 "$RWLOAD" "$WL" "http://127.0.0.1:$PORT/api/v1/write" --json "$W/load.json" >/dev/null
	c1=$(cpu $SP)
	if [ "$mode" = true ]; then
		for i in $(seq 600); do
			q=$(metric augur_detect_queue_bytes); [ "${q:-1}" = 0 ] && break; sleep 0.1
		done
	fi
	c2=$(cpu $SP)
	local ds dd; ds=$(metric augur_detect_samples_total); dd=$(metric augur_detect_dropped_total)
	echo "$mode $c0 $c1 $c2 ${ds:--} ${dd:--}" \
		"$(/usr/bin/python3 -c "import json; j=json.load(open('$W/load.json')); print(j['samples_ok'], j['samples_failed'], j['wall_s'])")" >> $W/runs
	kill $SP; wait $SP 2>/dev/null; SP=
	rm -rf "$d"
}

for p in $(seq "$PAIRS"); do
	if [ $((p % 2)) = 1 ]; then run true; run false; else run false; run true; fi
done
/usr/bin/python3 - "$W/runs" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
print("detection  CPU s/1M during replay  incl. detector queue drained  detector samples  dropped  samples ok  failed  wall s")
for r in rows:
    ok = int(r[6]) / 1e6
    print("%-9s  %22.3f  %28.3f  %16s  %7s  %10s  %6s  %6s" % (
        "on" if r[0] == "true" else "off", (float(r[2]) - float(r[1])) / ok,
        (float(r[3]) - float(r[1])) / ok, r[4], r[5], r[6], r[7], r[8]))
def per(r, k):
    return (float(r[k]) - float(r[1])) / (int(r[6]) / 1e6)
for k, name in ((2, "during replay"), (3, "incl. drain")):
    ratios = [per(a if a[0] == "true" else b, k) / per(b if a[0] == "true" else a, k)
              for a, b in zip(rows[0::2], rows[1::2])]
    on = sorted(per(r, k) for r in rows if r[0] == "true")
    off = sorted(per(r, k) for r in rows if r[0] == "false")
    print("%s: on/off per adjacent pair %s; range %.2f-%.2f; median on / median off %.3f / %.3f = %.2f" % (
        name, " ".join("%.2f" % x for x in ratios), min(ratios), max(ratios),
        on[len(on) // 2], off[len(off) // 2], on[len(on) // 2] / off[len(off) // 2]))
EOF
