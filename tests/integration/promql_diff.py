#!/usr/bin/python3
"""PromQL differential test: the same deterministic data in a real Prometheus
(Debian's 2.42, remote-write receiver) and in augur (written with tsdb_append
by tests/test_promql_diff in harness mode, queried in-process through
qapi_handle); every query of tests/data/promql/exprs.txt runs on both as
instant queries at several times and as range queries; answers must agree:
same status, same result type, same label sets, same timestamps, values equal
within 1e-9 relative or both NaN (order too, for sort/sort_desc).

Usage: promql_diff.py --harness BUILD/tests/test_promql_diff [--prometheus /usr/bin/prometheus]
                      [--exprs FILE] [--keep DIR] [--record DIR] [--json OUT]
Exit 0 when every divergence is listed in docs/promql-differences.md's table
(by expression), 1 otherwise.
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import snappy

T0 = 1700000000000  # 2023-11-14T22:13:20Z, ms
STEP = 15000
TICKS = 241  # 0 .. 60 min
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
STALE_BITS = 0x7FF0000000000002


# ---------------------------------------------------------------- data
def gen_data(seed=42):
    rnd = random.Random(seed)
    series = []  # (labels dict, [(t, value, bits or None)])

    def add(labels, pts):
        series.append((labels, pts))

    def grid(fn, ticks=range(TICKS)):
        out = []
        for i in ticks:
            v = fn(i)
            if v is None:
                continue
            out.append((T0 + i * STEP, v))
        return out

    # counters with resets
    for inst in range(4):
        for method in ("get", "post"):
            v = 0.0
            pts = []
            resets = {(1, "get"): [100], (2, "post"): [60, 170], (3, "get"): [239]}.get((inst, method), [])
            for i in range(TICKS):
                if i in resets:
                    v = float(rnd.randint(0, 3))
                else:
                    v += rnd.randint(0, 20) * (inst + 1)
                pts.append((T0 + i * STEP, v))
            add({"__name__": "http_requests_total", "job": "api", "instance": "i%d" % inst, "method": method}, pts)
    # gauges (random walk, negative values)
    for inst in range(5):
        v = rnd.uniform(-10, 40)
        pts = []
        for i in range(TICKS):
            v += rnd.uniform(-2, 2)
            pts.append((T0 + i * STEP, round(v, 3)))
        add({"__name__": "node_temp", "job": "node", "instance": "n%d" % inst}, pts)
    # gaps longer than the lookback
    add({"__name__": "gappy", "job": "gap"},
        grid(lambda i: float(i % 7) if (i <= 40 or 80 <= i <= 120 or i >= 200) else None))
    # staleness markers
    s1 = grid(lambda i: float(i) if i <= 100 or i >= 150 else None)
    s1.append((T0 + 101 * STEP, STALE))
    s1.sort()
    add({"__name__": "stale_series", "job": "stale", "instance": "s1"}, s1)
    s2 = grid(lambda i: 2.0 * i if i < 180 else None)
    s2.append((T0 + 180 * STEP, STALE))
    add({"__name__": "stale_series", "job": "stale", "instance": "s2"}, s2)
    # special values
    add({"__name__": "weird", "job": "weird", "kind": "nan"}, grid(lambda i: float("nan") if i % 5 == 0 else float(i)))
    add({"__name__": "weird", "job": "weird", "kind": "inf"},
        grid(lambda i: float("inf") if i % 11 == 0 else (float("-inf") if i % 13 == 0 else float(i % 4))))
    add({"__name__": "weird", "job": "weird", "kind": "neg"}, grid(lambda i: -1.5 * (i % 9) - 0.25))
    add({"__name__": "weird", "job": "weird", "kind": "zero"}, grid(lambda i: 0.0))
    add({"__name__": "weird", "job": "weird", "kind": "big"}, grid(lambda i: 1e300 * (1 + i % 3)))
    add({"__name__": "weird", "job": "weird", "kind": "small"}, grid(lambda i: 1e-300 * (1 + i % 3)))
    # histogram buckets
    bounds = ["0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
    for inst in range(2):
        counts = [0] * len(bounds)
        total_sum = 0.0
        per = {b: [] for b in bounds}
        sums, cnts = [], []
        for i in range(TICKS):
            for _ in range(rnd.randint(0, 6)):
                x = rnd.expovariate(2.0)
                total_sum += x
                for j, b in enumerate(bounds):
                    if b == "+Inf" or x <= float(b):
                        counts[j] += 1
            t = T0 + i * STEP
            for j, b in enumerate(bounds):
                per[b].append((t, float(counts[j])))
            sums.append((t, round(total_sum, 6)))
            cnts.append((t, float(counts[-1])))
        for b in bounds:
            add({"__name__": "lat_bucket", "job": "api", "instance": "i%d" % inst, "le": b}, per[b])
        add({"__name__": "lat_sum", "job": "api", "instance": "i%d" % inst}, sums)
        add({"__name__": "lat_count", "job": "api", "instance": "i%d" % inst}, cnts)
    # many series
    for idx in range(60):
        ph = rnd.uniform(0, 6.28)
        amp = rnd.uniform(1, 100)
        add({"__name__": "many", "job": "many", "idx": "%03d" % idx, "grp": "g%d" % (idx % 6)},
            grid(lambda i, ph=ph, amp=amp: round(amp * math.sin(ph + i / 20.0), 4)))
    # info metric for group_left joins
    for inst in range(4):
        add({"__name__": "info_meta", "job": "api", "instance": "i%d" % inst, "version": "v%d" % (1 + inst % 2)},
            grid(lambda i: 1.0))
    for inst in range(4):
        add({"__name__": "up", "job": "api", "instance": "i%d" % inst}, grid(lambda i, k=inst: 0.0 if (k == 3 and 100 < i < 140) else 1.0))
    # awkward label values
    add({"__name__": "label_chars", "job": "chars", "path": '/a b"c\\d', "unicode": "h\u00e9llo\u2713"}, grid(lambda i: 3.0))
    # irregular intervals
    t = T0
    pts = []
    while t <= T0 + 60 * 60000:
        pts.append((t, float(len(pts) * 3 + rnd.randint(0, 2))))
        t += rnd.randint(3000, 40000)
    add({"__name__": "jitter", "job": "jit"}, pts)
    add({"__name__": "sparse", "job": "sparse"}, [(T0 + 600000, 5.0), (T0 + 1800000, 7.0), (T0 + 3000000, 4.0)])
    add({"__name__": "dup_a", "job": "dup", "x": "1"}, grid(lambda i: 1.0))
    add({"__name__": "dup_b", "job": "dup", "x": "1"}, grid(lambda i: 2.0))
    # a second copy of the counter label set under another name (for on/ignoring)
    for inst in range(4):
        add({"__name__": "http_errors_total", "job": "api", "instance": "i%d" % inst, "method": "get"},
            grid(lambda i, k=inst: float(i * (k + 1) // 3)))
    return series


def bits_of(v):
    return struct.unpack("<Q", struct.pack("<d", v))[0]


def esc(s):
    return s.replace("%", "%25").replace("\t", "%09").replace("\n", "%0A")


def write_data(series, path):
    with open(path, "w") as f:
        for labels, pts in series:
            f.write("S\t" + "\t".join("%s=%s" % (k, esc(v)) for k, v in sorted(labels.items())) + "\n")
            for t, v in pts:
                f.write("%d %x\n" % (t, bits_of(v)))


# ---------------------------------------------------------------- remote write
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_bytes(field, payload):
    return varint((field << 3) | 2) + varint(len(payload)) + payload


def encode_ts(labels, pts):
    out = bytearray()
    for k, v in sorted(labels.items()):
        out += pb_bytes(1, pb_bytes(1, k.encode()) + pb_bytes(2, v.encode()))
    for t, v in pts:
        smp = b"\x09" + struct.pack("<d", v) + b"\x10" + varint(t & 0xFFFFFFFFFFFFFFFF)
        out += pb_bytes(2, smp)
    return bytes(out)


def remote_write(url, series):
    # Prometheus refuses samples older than its head's max time - 1h, so the
    # data goes in 5-minute windows, all series per window.
    t_end = max(t for _, pts in series for t, _ in pts)
    w = T0
    while w <= t_end:
        body = bytearray()
        for labels, pts in series:
            sel = [(t, v) for t, v in pts if w <= t < w + 300000]
            if sel:
                body += pb_bytes(1, encode_ts(labels, sel))
        if body:
            req = urllib.request.Request(url, data=snappy.compress(bytes(body)), method="POST", headers={
                "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                "X-Prometheus-Remote-Write-Version": "0.1.0"})
            with urllib.request.urlopen(req, timeout=30) as r:
                if r.status // 100 != 2:
                    raise RuntimeError("remote write: %d" % r.status)
        w += 300000


# ---------------------------------------------------------------- queries
def load_exprs(path):
    out = []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        out.append(line)
    return out


INSTANT_TIMES = [T0 + 30 * 60000, T0 + 60 * 60000, T0 + 63 * 60000 + 7500]
RANGES = [(T0, T0 + 60 * 60000, 60), (T0 + 10 * 60000 + 500, T0 + 70 * 60000, 37)]


def sec(ms):
    return ("%.3f" % (ms / 1000.0)).rstrip("0").rstrip(".")


def make_queries(exprs):
    qs = []  # (expr, path, params)
    for e in exprs:
        instant_only = e.startswith("I:")
        x = e[2:].strip() if instant_only else e
        for t in INSTANT_TIMES:
            qs.append((x, "query", {"query": x, "time": sec(t)}))
        if not instant_only:
            for s, en, st in RANGES:
                qs.append((x, "query_range", {"query": x, "start": sec(s), "end": sec(en), "step": str(st)}))
    return qs


def write_queries(qs, path):
    with open(path, "w", encoding="utf-8") as f:
        for _, p, prm in qs:
            ex = prm["query"].replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            if p == "query":
                f.write("query\t%s\t%s\n" % (prm["time"], ex))
            else:
                f.write("query_range\t%s\t%s\t%s\t%s\n" % (prm["start"], prm["end"], prm["step"], ex))


def prom_query(base, path, params):
    data = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(base + "/api/v1/" + path, data=data, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ---------------------------------------------------------------- compare
def fval(s):
    return float(s)  # Python parses "NaN", "+Inf", "-Inf"


def close(a, b):
    x, y = fval(a), fval(b)
    if math.isnan(x) and math.isnan(y):
        return True
    if x == y:
        return True
    if math.isinf(x) or math.isinf(y) or math.isnan(x) or math.isnan(y):
        return False
    return abs(x - y) <= 1e-9 * max(abs(x), abs(y))


def key(m):
    return tuple(sorted(m.items()))


def compare(expr, want_status, want, got_status, got):
    """Returns None when equal, else a short reason."""
    try:
        w = json.loads(want)
        g = json.loads(got)
    except ValueError as e:
        return "bad json: %s" % e
    if w["status"] != g["status"]:
        return "status %s/%d vs prometheus %s/%d (%s)" % (g["status"], got_status, w["status"], want_status,
                                                           w.get("error", g.get("error", ""))[:150])
    if w["status"] != "success":
        if want_status != got_status:
            return "error code %d vs prometheus %d" % (got_status, want_status)
        return None
    wd, gd = w["data"], g["data"]
    if wd["resultType"] != gd["resultType"]:
        return "resultType %s vs %s" % (gd["resultType"], wd["resultType"])
    rt = wd["resultType"]
    if rt in ("scalar", "string"):
        if wd["result"][0] != gd["result"][0]:
            return "time %r vs %r" % (gd["result"], wd["result"])
        if rt == "string":
            return None if wd["result"][1] == gd["result"][1] else "string %r vs %r" % (gd["result"], wd["result"])
        return None if close(wd["result"][1], gd["result"][1]) else "value %r vs %r" % (gd["result"], wd["result"])
    field = "value" if rt == "vector" else "values"
    wm = {key(x["metric"]): x[field] for x in wd["result"]}
    gm = {key(x["metric"]): x[field] for x in gd["result"]}
    if len(wm) != len(wd["result"]) or len(gm) != len(gd["result"]):
        return "duplicate label sets in a result"
    if set(wm) != set(gm):
        miss = [dict(k) for k in set(wm) - set(gm)][:2]
        extra = [dict(k) for k in set(gm) - set(wm)][:2]
        return "label sets differ: missing %s extra %s (%d vs %d)" % (miss, extra, len(gm), len(wm))
    for k in wm:
        a, b = wm[k], gm[k]
        if rt == "vector":
            a, b = [a], [b]
        if len(a) != len(b):
            return "%s: %d points vs %d" % (dict(k), len(b), len(a))
        for p, q in zip(a, b):
            if p[0] != q[0]:
                return "%s: time %r vs %r" % (dict(k), q[0], p[0])
            if not close(p[1], q[1]):
                return "%s @%r: %s vs prometheus %s" % (dict(k), p[0], q[1], p[1])
    if rt == "vector" and re.match(r"^\s*sort(_desc)?\(", expr):
        wv = [x["value"][1] for x in wd["result"]]
        gv = [x["value"][1] for x in gd["result"]]
        if not all(close(a, b) for a, b in zip(wv, gv)):
            return "order differs"
    return None


def known_differences(repo):
    """Expressions listed in docs/promql-differences.md (lines '| `expr` | ...')."""
    p = os.path.join(repo, "docs", "promql-differences.md")
    out = set()
    if os.path.exists(p):
        for line in open(p, encoding="utf-8"):
            m = re.match(r"^\|\s*`(.+?)`\s*\|", line)
            if m:
                out.add(m.group(1).replace("\\|", "|"))
    return out


# ---------------------------------------------------------------- main
def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.abspath(os.path.join(here, "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--harness", required=True)
    ap.add_argument("--prometheus", default="/usr/bin/prometheus")
    ap.add_argument("--exprs", default=os.path.join(repo, "tests", "data", "promql", "exprs.txt"))
    ap.add_argument("--keep")
    ap.add_argument("--record")
    ap.add_argument("--json")
    ap.add_argument("--show", type=int, default=40)
    a = ap.parse_args()

    work = a.keep or tempfile.mkdtemp(prefix="augur-promql-diff-")
    os.makedirs(work, exist_ok=True)
    series = gen_data()
    exprs = load_exprs(a.exprs)
    qs = make_queries(exprs)
    write_data(series, os.path.join(work, "data.txt"))
    write_queries(qs, os.path.join(work, "queries.tsv"))

    # Prometheus: empty config (no scrape: a self-scrape would put wall-clock
    # samples in the head and every older sample would be out of bounds)
    port = free_port()
    cfg = os.path.join(work, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  evaluation_interval: 1m\n")
    pdir = os.path.join(work, "prom-data")
    shutil.rmtree(pdir, ignore_errors=True)
    plog = open(os.path.join(work, "prometheus.log"), "w")
    proc = subprocess.Popen([a.prometheus, "--config.file=" + cfg, "--storage.tsdb.path=" + pdir,
                             "--web.listen-address=127.0.0.1:%d" % port, "--web.enable-remote-write-receiver",
                             "--storage.tsdb.retention.time=100y", "--query.max-samples=100000000"],
                            stdout=plog, stderr=subprocess.STDOUT)
    base = "http://127.0.0.1:%d" % port
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("prometheus did not become ready (see %s/prometheus.log)" % work)
            time.sleep(0.2)
        remote_write(base + "/api/v1/write", series)
        expected = [prom_query(base, p, prm) for _, p, prm in qs]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        plog.close()
    with open(os.path.join(work, "expected.tsv"), "w", encoding="utf-8") as f:
        for st, body in expected:
            f.write("%d\t%s\n" % (st, body.replace("\n", "")))

    env = dict(os.environ, AUGUR_PROMQL_DIFF_DATA=os.path.join(work, "data.txt"),
               AUGUR_PROMQL_DIFF_QUERIES=os.path.join(work, "queries.tsv"),
               AUGUR_PROMQL_DIFF_OUT=os.path.join(work, "answers.tsv"))
    r = subprocess.run([a.harness], env=env, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:])
        raise RuntimeError("harness failed")
    got = []
    for line in open(os.path.join(work, "answers.tsv"), encoding="utf-8"):
        st, body = line.rstrip("\n").split("\t", 1)
        got.append((int(st), body))
    assert len(got) == len(qs), (len(got), len(qs))

    known = known_differences(repo)
    diffs = []
    matched = 0
    for (expr, p, prm), (ws, wb), (gs, gb) in zip(qs, expected, got):
        why = compare(expr, ws, wb, gs, gb)
        if why is None:
            matched += 1
        else:
            diffs.append({"expr": expr, "path": p, "params": prm, "why": why, "known": expr in known})
    unknown = [d for d in diffs if not d["known"]]
    for d in unknown[:a.show]:
        print("DIFF %s %s: %s\n     %s" % (d["path"], {k: v for k, v in d["params"].items() if k != "query"},
                                          d["expr"], d["why"][:400]))
    summary = {"expressions": len(exprs), "queries": len(qs), "matched": matched, "differ": len(diffs),
               "differ_known": len(diffs) - len(unknown), "differ_unknown": len(unknown),
               "expressions_differing": sorted(set(d["expr"] for d in diffs))}
    print(json.dumps({k: v for k, v in summary.items() if k != "expressions_differing"}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"summary": summary, "diffs": diffs}, f, indent=1)
    if a.record:
        os.makedirs(a.record, exist_ok=True)
        for n in ("data.txt", "queries.tsv", "expected.tsv"):
            shutil.copy(os.path.join(work, n), os.path.join(a.record, n))
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if not unknown else 1)


if __name__ == "__main__":
    main()
