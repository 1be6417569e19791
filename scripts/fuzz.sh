#!/usr/bin/env bash
# scripts/fuzz.sh BUILD_DIR SECONDS — run every fuzz/fuzz_* target for SECONDS
# from its seed corpus (fuzz/corpus/<target>/), two at a time. New inputs go
# to a scratch corpus, not the repo. Fails if any target finds a crash; the
# crashing input is left in BUILD_DIR/fuzz-artifacts/ to be kept as a
# regression test.
set -uo pipefail
BUILD=$1
SECS=${2:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ART="$BUILD/fuzz-artifacts"
mkdir -p "$ART"
fail=0
pids=()
names=()
for bin in "$BUILD"/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    scratch="$BUILD/fuzz-corpus/$name"
    mkdir -p "$scratch"
    seed="$ROOT/fuzz/corpus/$name"
    [ -d "$seed" ] || seed=""
    "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$ART/$name-" "$scratch" $seed >"$BUILD/$name.log" 2>&1 &
    pids+=($!)
    names+=("$name")
    if [ ${#pids[@]} -ge 2 ]; then
        wait "${pids[0]}" || { echo "fuzz: ${names[0]} FAILED"; tail -30 "$BUILD/${names[0]}.log"; fail=1; }
        pids=("${pids[@]:1}")
        names=("${names[@]:1}")
    fi
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { echo "fuzz: ${names[$i]} FAILED"; tail -30 "$BUILD/${names[$i]}.log"; fail=1; }
done
for log in "$BUILD"/fuzz_*.log; do
    [ -f "$log" ] && echo "fuzz: $(basename "$log" .log): $(grep -E 'stat::number_of_executed_units' "$log" | tail -1)"
done
exit $fail
