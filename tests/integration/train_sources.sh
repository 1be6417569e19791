#!/bin/bash
# train_sources.sh — `augur train` and `augur eval` through the real binary on the sources that
# go through the serving feature module: a store directory written by `augur simulate
# --out.store` (labels: its failure events; also events recorded with `augur label failure`)
# and a simulator spec, for disks and GPUs. Checks: eval on the same source reproduces the
# training run's test-fold row exactly; --plot, --predictions and --ablate-neighbours work;
# bad sources (missing directory, no telemetry of the kind, no failure events, a model of
# another kind or another feature schema) exit 1 with a sentence naming the problem.
# Small sizes: seconds in a debug build.
set -uo pipefail

AUGUR_BIN=${AUGUR_BIN:?AUGUR_BIN must point at the augur binary}
TMP=$(mktemp -d /tmp/augur-train-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fail() {
  echo "FAIL: $*"
  for f in "$TMP"/*.txt; do [ -f "$f" ] && { echo "--- $f"; tail -n 12 "$f"; }; done
  exit 1
}
SMALL=(--epochs 2 --patience 2 --d-model 16 --d-ff 32 --d-head 16 --folds 3 --quiet)
ntam_row() { grep -E -m1 '^NTAM +[0-9]' "$1"; }
# expect_fail NAME PATTERN CMD...: exit status 1 (error) or 2 (usage) and PATTERN on stderr
expect_fail() {
  local name=$1 pat=$2
  shift 2
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
  local rc=$?
  [ $rc -eq 1 ] || [ $rc -eq 2 ] || fail "$name: exit $rc, want 1 or 2 ($(cat "$TMP/$name.err"))"
  grep -q -- "$pat" "$TMP/$name.err" || fail "$name: stderr lacks '$pat': $(cat "$TMP/$name.err")"
}

# ---- a simulated fleet in a store: disks and GPUs, hourly, with failures ----------------------
"$AUGUR_BIN" simulate --nodes 24 --disks 6 --gpus 4 --span 30d --interval 1h --hazard-scale 100 \
  --out.store "$TMP/st" --quiet || fail "simulate"

# disks from the store; eval on the same store gives the same test-fold row
"$AUGUR_BIN" train --kind disk --source "$TMP/st" --window 5 --horizon 3 "${SMALL[@]}" \
  --out "$TMP/disk.ntam" >"$TMP/train_disk.txt" || fail "train disk from store"
grep -q '^SMART rule' "$TMP/train_disk.txt" || fail "no SMART rule row"
grep -q '^logistic regression' "$TMP/train_disk.txt" || fail "no logistic row"
grep -q '^NTAM no-neighbour' "$TMP/train_disk.txt" || fail "no ablation row"
"$AUGUR_BIN" eval --model "$TMP/disk.ntam" --source "$TMP/st" --quiet >"$TMP/eval_disk.txt" ||
  fail "eval disk on store"
[ -n "$(ntam_row "$TMP/train_disk.txt")" ] || fail "no NTAM row"
[ "$(ntam_row "$TMP/train_disk.txt")" == "$(ntam_row "$TMP/eval_disk.txt")" ] ||
  fail "eval on the store differs from the training run's test fold"

# a rack-scope model (simulate labels 16 nodes a rack): eval reproduces its row, takes the scope
# from the model, refuses another explicit one; its baselines are exactly scope node's
"$AUGUR_BIN" train --kind disk --source "$TMP/st" --window 5 --horizon 3 "${SMALL[@]}" \
  --scope rack --out "$TMP/disk-rack.ntam" >"$TMP/train_disk_rack.txt" || fail "train --scope rack"
for s in "" "--scope rack"; do
  # shellcheck disable=SC2086
  "$AUGUR_BIN" eval --model "$TMP/disk-rack.ntam" --source "$TMP/st" $s --quiet \
    >"$TMP/eval_disk_rack.txt" || fail "eval rack model ($s)"
  [ "$(ntam_row "$TMP/train_disk_rack.txt")" == "$(ntam_row "$TMP/eval_disk_rack.txt")" ] ||
    fail "eval of the rack model differs from its training run ($s)"
  grep -qx 'neighbourhood scope rack, groups cut at 128 devices (whole nodes)' \
    "$TMP/eval_disk_rack.txt" || fail "eval does not name the model's scope"
done
# (the store has rack labels, so the rack model is another model: groups of up to 96 disks)
[ "$(ntam_row "$TMP/train_disk.txt")" != "$(ntam_row "$TMP/train_disk_rack.txt")" ] ||
  fail "the rack model scored exactly as the node model: no rack groups?"
for r in '^logistic regression' '^SMART rule'; do
  [ "$(grep -m1 "$r" "$TMP/train_disk.txt")" == "$(grep -m1 "$r" "$TMP/train_disk_rack.txt")" ] ||
    fail "rack run's baseline row '$r' differs from the node run's"
done
# the ablation's threshold-free columns (its detections are counted at NTAM's alarm threshold)
abl() { grep -m1 '^NTAM no-neighbour' "$1" | awk '{print $3, $4, $5, $6, $7, $8}'; }
[ -n "$(abl "$TMP/train_disk.txt")" ] && [ "$(abl "$TMP/train_disk.txt")" == "$(abl "$TMP/train_disk_rack.txt")" ] ||
  fail "rack run's ablation differs from the node run's"
expect_fail scopemismatch 'trained with --scope rack, not node' \
  "$AUGUR_BIN" eval --model "$TMP/disk-rack.ntam" --source "$TMP/st" --scope node
expect_fail scopemismatch2 'trained with --scope node, not pod' \
  "$AUGUR_BIN" eval --model "$TMP/disk.ntam" --source "$TMP/st" --scope pod
expect_fail evalbadscope "bad value 'racks' for --scope" \
  "$AUGUR_BIN" eval --model "$TMP/disk.ntam" --source "$TMP/st" --scope racks
expect_fail badscope "bad value 'row' for --scope" \
  "$AUGUR_BIN" train --kind disk --source "$TMP/st" --scope row --out "$TMP/x.ntam"
expect_fail noscope '--scope needs a value' \
  "$AUGUR_BIN" train --kind disk --source "$TMP/st" --out "$TMP/x.ntam" --scope
expect_fail badcap "bad value '1' for --scope-cap" \
  "$AUGUR_BIN" train --kind disk --source "$TMP/st" --scope rack --scope-cap 1 --out "$TMP/x.ntam"
expect_fail badcap2 "bad value '-3' for --scope-cap" \
  "$AUGUR_BIN" train --kind disk --source "$TMP/st" --scope rack --scope-cap -3 --out "$TMP/x.ntam"

# GPUs from the store (hourly windows); eval with plot, predictions and the ablation
"$AUGUR_BIN" train --kind gpu --source "$TMP/st" --window 12 --horizon 3 "${SMALL[@]}" \
  --out "$TMP/gpu.ntam" >"$TMP/train_gpu.txt" || fail "train gpu from store"
grep -q '^DBE/row-remap rule' "$TMP/train_gpu.txt" || fail "no GPU rule row"
"$AUGUR_BIN" eval --model "$TMP/gpu.ntam" --source "$TMP/st" --kind gpu --ablate-neighbours \
  --epochs 1 --plot "$TMP/pr.svg" --predictions "$TMP/pred.csv" --quiet >"$TMP/eval_gpu.txt" ||
  fail "eval gpu on store"
[ "$(ntam_row "$TMP/train_gpu.txt")" == "$(ntam_row "$TMP/eval_gpu.txt")" ] ||
  fail "GPU eval on the store differs from the training run's test fold"
grep -q '^NTAM no-neighbour' "$TMP/eval_gpu.txt" || fail "eval --ablate-neighbours: no row"
grep -q 'window 12 hours' "$TMP/eval_gpu.txt" || fail "eval: GPU window not in hours"
grep -q '<svg' "$TMP/pr.svg" || fail "no SVG"
head -1 "$TMP/pred.csv" | grep -qx 'uuid,instance,device,date,probability,label,ntam_no_neighbour,logistic,gpu_rule' ||
  fail "predictions header: $(head -1 "$TMP/pred.csv")"
scored=$(sed -n 's/.*; \([0-9]*\) scored samples (\([0-9]*\) positive).*/\1 \2/p' "$TMP/eval_gpu.txt")
rows=$(($(wc -l <"$TMP/pred.csv") - 1))
pos=$(awk -F, 'NR > 1 && $6 == 1' "$TMP/pred.csv" | wc -l)
[ "$scored" == "$rows $pos" ] || fail "predictions: $rows rows, $pos positive; report says '$scored'"
[ "$pos" -gt 0 ] || fail "no positive in the predictions"
awk -F, 'NR > 1 && $1 !~ /^GPU-/ { exit 1 }' "$TMP/pred.csv" || fail "a prediction row without a UUID"

# ---- the simulator: GPUs and disks, eval on the same spec reproduces the test fold -------------
GSPEC=sim:nodes=20,days=20,hazard=80
"$AUGUR_BIN" train --kind gpu --source "$GSPEC" --horizon 3 "${SMALL[@]}" --out "$TMP/gsim.ntam" \
  >"$TMP/train_gsim.txt" || fail "train gpu from the simulator"
"$AUGUR_BIN" eval --model "$TMP/gsim.ntam" --source "$GSPEC" --quiet >"$TMP/eval_gsim.txt" ||
  fail "eval gpu on the simulator"
[ "$(ntam_row "$TMP/train_gsim.txt")" == "$(ntam_row "$TMP/eval_gsim.txt")" ] ||
  fail "GPU eval on the simulator differs from the training run's test fold"
"$AUGUR_BIN" eval --model "$TMP/gsim.ntam" --source "$GSPEC,seed=2" --all-devices --quiet \
  >"$TMP/eval_gsim2.txt" || fail "eval gpu on another simulated fleet"
grep -q 'on all devices of the source' "$TMP/eval_gsim2.txt" || fail "--all-devices"
DSPEC=sim:nodes=30,days=30,hazard=60
"$AUGUR_BIN" train --kind disk --source "$DSPEC" --window 5 --horizon 3 "${SMALL[@]}" \
  --out "$TMP/dsim.ntam" >"$TMP/train_dsim.txt" || fail "train disk from the simulator"
"$AUGUR_BIN" eval --model "$TMP/dsim.ntam" --source "$DSPEC" --quiet >"$TMP/eval_dsim.txt" ||
  fail "eval disk on the simulator"
[ "$(ntam_row "$TMP/train_dsim.txt")" == "$(ntam_row "$TMP/eval_dsim.txt")" ] ||
  fail "disk eval on the simulator differs from the training run's test fold"
# a model trained on the simulator scores the store of another simulated fleet
"$AUGUR_BIN" eval --model "$TMP/gsim.ntam" --source "$TMP/st" --all-devices --quiet \
  >"$TMP/eval_cross.txt" || fail "simulator GPU model on the store"

# ---- labels recorded with augur label -------------------------------------------------------
"$AUGUR_BIN" simulate --nodes 6 --disks 3 --nvme 0 --gpus 0 --span 20d --interval 1h \
  --hazard-scale 0 --out.store "$TMP/nofail" --quiet || fail "simulate without failures"
expect_fail nofail 'no disk failure events' \
  "$AUGUR_BIN" train --kind disk --source "$TMP/nofail" --window 3 --horizon 2 "${SMALL[@]}" \
  --out "$TMP/x.ntam"
expect_fail nogpu 'no gpu telemetry' \
  "$AUGUR_BIN" train --kind gpu --source "$TMP/nofail" --out "$TMP/x.ntam"
for n in 1 2 3; do
  "$AUGUR_BIN" label failure --store "$TMP/nofail" --kind disk --instance "node-000$n" \
    --device sdb --time "2024-01-1${n}T06:00:00Z" --reason test >/dev/null ||
    fail "augur label failure"
done
"$AUGUR_BIN" train --kind disk --source "$TMP/nofail" --window 3 --horizon 2 "${SMALL[@]}" \
  --out "$TMP/lab.ntam" >"$TMP/train_lab.txt" 2>"$TMP/train_lab.err" ||
  fail "train on labels from augur label: $(cat "$TMP/train_lab.err")"
"$AUGUR_BIN" train --kind disk --source "$TMP/nofail" --window 3 --horizon 2 --epochs 1 \
  --d-model 16 --d-ff 32 --d-head 16 --folds 3 --out "$TMP/lab.ntam" >/dev/null \
  2>"$TMP/train_lab2.err" || fail "train on labels (verbose)"
grep -q '18 disk devices on 6 nodes .* 3 failures (0 events matched no device)' \
  "$TMP/train_lab2.err" || fail "the three labels were not matched: $(head -1 "$TMP/train_lab2.err")"

# ---- bad sources and models ---------------------------------------------------------------------
expect_fail missing 'no such file or store directory' \
  "$AUGUR_BIN" train --kind disk --source "$TMP/nope" --out "$TMP/x.ntam"
mkdir -p "$TMP/notastore"
expect_fail notastore 'not an augur store directory' \
  "$AUGUR_BIN" train --kind disk --source "$TMP/notastore" --out "$TMP/x.ntam"
expect_fail kindmismatch 'trained for gpu devices, not disk' \
  "$AUGUR_BIN" eval --kind disk --model "$TMP/gpu.ntam" --source "$TMP/st"
expect_fail gpuonnogpu 'no gpu telemetry' \
  "$AUGUR_BIN" eval --model "$TMP/gpu.ntam" --source "$TMP/nofail"
expect_fail gpucsv 'Backblaze CSV sources hold disks' \
  "$AUGUR_BIN" eval --model "$TMP/gpu.ntam" --source "$TMP/pred.csv"
expect_fail simnofail 'no GPU failed in 3 days' \
  "$AUGUR_BIN" train --kind gpu --source sim:nodes=2,days=3 --out "$TMP/x.ntam"
expect_fail badspec 'bad simulator spec' \
  "$AUGUR_BIN" train --kind gpu --source sim:nodes=3,bogus=1 --out "$TMP/x.ntam"
expect_fail mixed 'the only source' \
  "$AUGUR_BIN" train --kind disk --source "$TMP/st" --source "$TMP/st" --out "$TMP/x.ntam"
# a model trained on Backblaze CSV columns is refused on a store (another feature schema)
"$AUGUR_BIN" simulate --nodes 30 --disks 4 --nvme 0 --gpus 0 --span 30d --interval 1d \
  --hazard-scale 60 --out.disk-csv "$TMP/bb.csv" --quiet || fail "simulate CSV"
"$AUGUR_BIN" train --kind disk --source "$TMP/bb.csv" --window 3 --horizon 2 "${SMALL[@]}" \
  --out "$TMP/csv.ntam" >/dev/null 2>&1 || fail "train on CSV"
expect_fail csvmodel 'feature schema' \
  "$AUGUR_BIN" eval --model "$TMP/csv.ntam" --source "$TMP/st"
# the same CSV imported into a store: the importer labels each drive instance
# <datacenter>/<vault_id>/<pod_id> (the server) and pod <datacenter>/<vault_id> (the vault; the
# simulator writes vault_id = rack: 16 nodes x 4 disks); no rack label, so --scope rack keeps
# the node and --scope pod groups the vault
"$AUGUR_BIN" import backblaze --store "$TMP/bbst" "$TMP/bb.csv" >/dev/null 2>&1 || fail "import"
for sc in node:4 rack:4 pod:64; do
  "$AUGUR_BIN" train --kind disk --source "$TMP/bbst" --window 3 --horizon 2 --epochs 1 \
    --d-model 8 --d-ff 8 --d-head 8 --folds 3 --scope "${sc%%:*}" --out "$TMP/bb-${sc%%:*}.ntam" \
    >/dev/null 2>"$TMP/bbscope.err" || fail "train --scope ${sc%%:*} on the import"
  grep -q "largest ${sc%%:*}-day group ${sc##*:} " "$TMP/bbscope.err" ||
    fail "import, --scope ${sc%%:*}: $(grep -m1 'largest' "$TMP/bbscope.err")"
done
expect_fail csvscope 'needs a store directory or simulator source' \
  "$AUGUR_BIN" train --kind disk --source "$TMP/bb.csv" --window 3 --horizon 2 --scope pod \
  "${SMALL[@]}" --out "$TMP/x.ntam"
echo "PASS"
