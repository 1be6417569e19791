#!/bin/bash
# recovery_compare.sh — one crashed store, opened by two builds of bench_recovery
# back to back (each on its own copy): replay alone (--ro), then replay + seal,
# then a check that every acknowledged sample is there once (new build only).
# OLD_MODES=--ro runs the old build's read-only open only.
#   [BUILD_ARGS=--kill-in-flush] [OLD_MODES=--ro] bench/recovery_compare.sh OLD_BIN NEW_BIN SHAPE SERIES SAMPLES [TIMEOUT_S]
set -euo pipefail
OLD=$1 NEW=$2 SHAPE=$3 SERIES=$4 SAMPLES=$5 TO=${6:-900}
D=/tmp/augur-rec-$SHAPE-$SERIES-$SAMPLES
rm -rf "$D" "$D.a"
"$NEW" build "$D" --shape "$SHAPE" --series "$SERIES" --samples "$SAMPLES" ${BUILD_ARGS:-}
for which in old new; do
  BIN=$OLD; [ $which = new ] && BIN=$NEW
  MODES="--ro rw"; [ $which = old ] && MODES=${OLD_MODES:-$MODES}
  for mode in $MODES; do
    [ "$mode" = rw ] && mode=""
    rm -rf "$D.a"; cp -a "$D" "$D.a"
    echo -n "$which: "
    timeout "$TO" "$BIN" open "$D.a" ${mode:+"$mode"} || echo "(stopped after $TO s or failed: $?)"
  done
done
"$NEW" open "$D.a" --verify --shape "$SHAPE" --series "$SERIES" --samples "$SAMPLES"
rm -rf "$D" "$D.a"
