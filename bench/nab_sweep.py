#!/usr/bin/python3
"""One-at-a-time sweep of detect_config_t settings on the NAB dev subset, fold by fold.

Usage: bench/nab_sweep.py [BENCH_NAB] [NAB_DIR]   (defaults: build-nab/bench/bench_nab ../shared/data/nab)

For every setting and value runs `bench_nab --folds --set k=v` and prints the total
(standard / low FP / low FN) and each fold's change against the defaults; `*` marks a value
that improves low FN on both folds (neither below -0.02, sum above 0.1). Then, for
score_decay, the two-fold check of picking a value: the best value on one fold, scored on
the other.
"""
import re
import subprocess
import sys

B = sys.argv[1] if len(sys.argv) > 1 else "build-nab/bench/bench_nab"
NAB = sys.argv[2] if len(sys.argv) > 2 else "../shared/data/nab"


def run(sets):
    a = [B, "--nab", NAB, "--folds"]
    for s in sets:
        a += ["--set", s]
    o = subprocess.run(a, capture_output=True, text=True, check=True).stdout
    tot = [float(x) for x in re.findall(r"^\S+\s+score\s+([-\d.]+)", o, re.M)]
    folds = [[float(x) for x in re.findall(
        r"(?:standard|reward_low_FP_rate|reward_low_FN_rate) ([-\d.]+)", l)]
        for l in o.splitlines() if l.startswith("fold")]
    if len(tot) != 3 or len(folds) != 2:
        sys.exit("nab_sweep.py: unexpected bench_nab output:\n" + o)
    return tot, folds


GRID = {
    "alpha_fast": [0.15, 0.18, 0.22, 0.25], "alpha_slow": [0.007, 0.008, 0.012, 0.015],
    "alpha_season": [0.07, 0.08, 0.12, 0.15], "huber_k": [2.5, 2.75, 3.25, 3.5],
    "spot_q": [0.93, 0.94, 0.96, 0.97], "cusum_k": [0.4, 0.45, 0.55, 0.6],
    "refractory": [0.9998, 0.99985, 0.99993, 0.99995], "onset_margin": [1.05, 1.08, 1.12, 1.15],
    "novelty_k": [0.3, 0.35, 0.45, 0.5], "sub_alarm": [0.15, 0.18, 0.22, 0.25],
    "novelty_decay": [0.999, 0.9993, 0.9997, 0.9998], "novelty_repeat": [0.4, 0.45, 0.55, 0.6],
    "season_gate": [2, 2.5, 3.5, 4], "score_decay": [0.8, 0.85, 0.93, 0.95],
    "score_repeat": [0.0, 0.05, 0.15, 0.2], "score_margin": [1.5, 1.75, 2.5, 3],
    "warmup": [130, 140, 160, 170], "gap_weight": [0.1, 0.15, 0.25, 0.3],
}

base_t, base_f = run([])
print("defaults  tot %.2f/%.2f/%.2f  fold 0 %.2f/%.2f/%.2f  fold 1 %.2f/%.2f/%.2f" %
      tuple(base_t + base_f[0] + base_f[1]))
for k, vs in GRID.items():
    for v in vs:
        t, f = run(["%s=%g" % (k, v)])
        d0 = [f[0][i] - base_f[0][i] for i in range(3)]
        d1 = [f[1][i] - base_f[1][i] for i in range(3)]
        flag = "*" if d0[2] >= -0.02 and d1[2] >= -0.02 and d0[2] + d1[2] > 0.1 else ""
        print("%-14s %-8g tot %.2f/%.2f/%.2f  f0 %+.2f/%+.2f/%+.2f  f1 %+.2f/%+.2f/%+.2f %s" %
              ((k, v) + tuple(t) + tuple(d0) + tuple(d1) + (flag,)))

PICK = {
    "score_decay": (0.9, [0.85, 0.88, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99]),
    "gap_weight": (0.2, [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1]),
}
for k, (dflt, vals) in PICK.items():
    res = {v: run(["%s=%g" % (k, v)]) for v in vals}
    for v in vals:
        t, f = res[v]
        print("%-12s %-6g tot %.2f/%.2f/%.2f  fold 0 %.2f/%.2f/%.2f  fold 1 %.2f/%.2f/%.2f" %
              ((k, v) + tuple(t + f[0] + f[1])))
    for name, pi in (("standard", 0), ("low FP", 1), ("low FN", 2)):
        for a in (0, 1):
            # ties go to the value nearest the default
            best = max(vals, key=lambda v: (res[v][1][a][pi], -abs(v - dflt)))
            print("%s, %s: best on fold %d = %g; fold %d %.2f (default %.2f)" %
                  (k, name, a, best, 1 - a, res[best][1][1 - a][pi], res[dflt][1][1 - a][pi]))
