#!/usr/bin/python3
"""Dashboard-query latency, side by side: augur vs VictoriaMetrics vs Prometheus.

Starts each server fresh on a loopback port (one at a time for the load, all
of them for the queries), replays the same remote-write workload into each with
../shared/bench/rwload.py, flushes, then runs the query set REPS times
round-robin against the servers (the order rotated every round, so that no
server always runs right after another one's heavy query and its garbage
collection) and prints median and p99 latency per query
and server, the ratio augur/best-peer, and the peak RSS of each server after
the queries.

  /usr/bin/python3 bench/query_peers.py /tmp/wl-100 [--reps 30] [--augur build-rel/cli/augur]
                                       [--cache on|off|both]

VictoriaMetrics caches rollup results between identical queries, so its
repeated-query median reflects that cache. --cache off starts it with
-search.disableCache (engine against engine); both (the default) runs a second
VictoriaMetrics with the cache off on the same data and prints both columns.
augur has a range-query result cache too (on by default): `augur` runs with
it, `augur-nocache` (--query.cache-size=0) without, so the table has both
pairings: augur vs vm (caches on), augur-nocache vs vm-nocache and prom
(engines). Prometheus has no result cache. The last rows give each server's
CPU seconds (user + system, from /proc) over the timed query rounds. --warmup
rounds (default 1) run first, untimed; the cold answers are checked against
the warm ones, so a cache cannot return something else the second time.

The workload comes from ../shared/bench/rwgen.py (2026-01-01T00:00Z, 1 h, 15 s).
Answers are compared too (same series count and values within 1e-9), so a fast
wrong answer does not count.
"""
import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "bench"))
START = 1767225600  # 2026-01-01T00:00:00Z
END = START + 3600 - 15

QUERIES = [
    ("cpu by instance (range)", "query_range",
     {"query": 'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))'}),
    ("topk 10 net rx (range)", "query_range",
     {"query": "topk(10, rate(node_network_receive_bytes_total[5m]))"}),
    ("one node load1 (range)", "query_range",
     {"query": 'node_load1{instance="node-0042:9100"}'}),
    ("regex disk read (range)", "query_range",
     {"query": 'sum by (instance) (rate(node_disk_read_bytes_total{device=~"sd.*|nvme.*|vd.*"}[5m]))'}),
    ("avg memory available (instant)", "query",
     {"query": "avg by (instance) (node_memory_MemAvailable_bytes)"}),
    ("count by job (instant)", "query", {"query": "count by (job) (up)"}),
    ("label values instance", "label/instance/values", {}),
    ("series fs avail", "series", {"match[]": "node_filesystem_avail_bytes"}),
]


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_ready(url, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.2)
    return False


def rss_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid):
    """user + system CPU seconds of a process (and its waited-for children)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tck


def get(base, path, params):
    p = dict(params)
    if path == "query_range":
        p.update({"start": START + 300, "end": END, "step": 15})
    elif path == "query":
        p.update({"time": END})
    elif path in ("series",) or path.startswith("label/"):
        p.update({"start": START, "end": END})
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(p)}"
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as r:
        body = r.read()
    dt = time.perf_counter() - t0
    return dt, json.loads(body)


def summarize(ans):
    """A comparable digest of an answer: sorted (labels, values)."""
    d = ans.get("data")
    if isinstance(d, list):
        return sorted(json.dumps(x, sort_keys=True) for x in d)
    res = d.get("result", [])
    out = []
    for s in res:
        vals = s.get("values") or ([s["value"]] if "value" in s else [])
        out.append((json.dumps(s.get("metric", {}), sort_keys=True), [(float(t), float(v)) for t, v in vals]))
    return sorted(out)


def same(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, str):
            if x != y:
                return False
            continue
        if x[0] != y[0] or len(x[1]) != len(y[1]):
            return False
        for (t1, v1), (t2, v2) in zip(x[1], y[1]):
            if t1 != t2:
                return False
            if math.isnan(v1) and math.isnan(v2):
                continue
            if abs(v1 - v2) > 1e-9 * max(1.0, abs(v1), abs(v2)):
                return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed rounds first (each server gets the same): caches, page cache, JIT-free warm state")
    ap.add_argument("--augur", default=os.path.join(HERE, "..", "build-rel", "cli", "augur"))
    ap.add_argument("--cache", "--vm-cache", dest="vm_cache", choices=("on", "off", "both"), default="both",
                    help="result caches of augur and VictoriaMetrics: on, off, or both (a server of each either way)")
    ap.add_argument("--dump", help="write each server's first answer per query into this directory")
    a = ap.parse_args()
    vms = {"on": ["vm"], "off": ["vm-nocache"], "both": ["vm", "vm-nocache"]}[a.vm_cache]
    augurs = {"on": ["augur"], "off": ["augur-nocache"], "both": ["augur", "augur-nocache"]}[a.vm_cache]
    servers = augurs + vms + ["prom"]
    tmp = tempfile.mkdtemp(prefix="augur-qbench-")
    procs = {}
    try:
        ports = {k: free_port() for k in servers}
        cmds = {
            "augur": [a.augur, "serve", f"--web.listen-address=127.0.0.1:{ports['augur']}",
                      f"--storage.path={tmp}/augur", "--storage.retention=0", "--log.level=warn"],
            "vm": ["/usr/bin/victoria-metrics", f"-httpListenAddr=127.0.0.1:{ports['vm']}",
                   f"-storageDataPath={tmp}/vm", "-retentionPeriod=100y", "-search.maxSeries=1000000",
                   "-search.maxUniqueTimeseries=1000000", "-loggerLevel=ERROR"],
            "prom": ["/usr/bin/prometheus", f"--web.listen-address=127.0.0.1:{ports['prom']}",
                     f"--storage.tsdb.path={tmp}/prom", "--web.enable-remote-write-receiver",
                     "--web.enable-admin-api", f"--config.file={tmp}/prom.yml",
                     "--query.max-samples=1000000000", "--log.level=error"],
        }
        if "augur-nocache" in servers:
            cmds["augur-nocache"] = [a.augur, "serve", f"--web.listen-address=127.0.0.1:{ports['augur-nocache']}",
                                     f"--storage.path={tmp}/augur-nocache", "--storage.retention=0",
                                     "--log.level=warn", "--query.cache-size=0"]
        if "vm-nocache" in servers:
            cmds["vm-nocache"] = ["/usr/bin/victoria-metrics", f"-httpListenAddr=127.0.0.1:{ports['vm-nocache']}",
                                  f"-storageDataPath={tmp}/vm-nocache", "-retentionPeriod=100y",
                                  "-search.maxSeries=1000000", "-search.maxUniqueTimeseries=1000000",
                                  "-loggerLevel=ERROR"]
            cmds["vm-nocache"].append("-search.disableCache")
        with open(f"{tmp}/prom.yml", "w") as f:
            f.write("global:\n  scrape_interval: 1h\n")
        flush = {
            "augur": ("POST", "/internal/force_flush"),
            "augur-nocache": ("POST", "/internal/force_flush"),
            "vm": ("GET", "/internal/force_flush"),
            "vm-nocache": ("GET", "/internal/force_flush"),
            "prom": None,
        }
        for name in servers:
            procs[name] = subprocess.Popen(cmds[name], stdout=subprocess.DEVNULL,
                                           stderr=open(f"{tmp}/{name}.log", "w"))
            base = f"http://127.0.0.1:{ports[name]}"
            ready = base + ("/health" if name.startswith("vm") else "/-/ready")
            if not wait_ready(ready):
                sys.exit(f"{name} did not start; see {tmp}/{name}.log")
            print(f"{name}: loading {a.workload}", file=sys.stderr)
            subprocess.run(["/usr/bin/python3", os.path.join(SHARED, "rwload.py"), a.workload,
                            base + "/api/v1/write"], check=True, stdout=subprocess.DEVNULL)
            if flush[name]:
                req = urllib.request.Request(base + flush[name][1], method=flush[name][0])
                urllib.request.urlopen(req, timeout=300).read()
        time.sleep(3)  # VM makes flushed data searchable after ~1 s
        lat = {q[0]: {n: [] for n in procs} for q in QUERIES}
        answers = {}
        cpu0 = {}
        for rep in range(-a.warmup, a.reps):
            if rep == 0:
                cpu0 = {n: cpu_s(procs[n].pid) for n in procs}
            names = list(procs)
            k = rep % len(names)  # rotate: each server follows each other one (and its GC) equally often
            names = names[k:] + names[:k]
            for qname, path, params in QUERIES:
                for name in names:
                    dt, ans = get(f"http://127.0.0.1:{ports[name]}", path, params)
                    if rep < 0:
                        if rep == -a.warmup:
                            answers[(qname, name)] = summarize(ans)  # cold answer, compared too
                        continue
                    lat[qname][name].append(dt)
                    if rep == 0:
                        if a.warmup and not same(answers[(qname, name)], summarize(ans)):
                            print(f"WARNING {name}: {qname}: the warm answer differs from the cold one",
                                  file=sys.stderr)
                        answers[(qname, name)] = summarize(ans)
                        if a.dump:
                            os.makedirs(a.dump, exist_ok=True)
                            fn = "".join(ch if ch.isalnum() else "_" for ch in qname)
                            with open(os.path.join(a.dump, f"{fn}.{name}.json"), "w") as f:
                                json.dump(ans, f, sort_keys=True)
        cpu1 = {n: cpu_s(procs[n].pid) for n in procs}
        cols = servers
        print(f"reps: {a.reps}; latency in ms, median / p99; ratios median / p99; 'match' compares augur's "
              "answers to Prometheus'; vm-nocache = VictoriaMetrics with -search.disableCache, "
              "augur-nocache = augur with --query.cache-size=0")
        # ratios: each augur against the peers of its pairing (cache on: vm;
        # cache off: vm-nocache and prom); a single-augur run compares with all
        pairs = []
        for au in augurs:
            if len(augurs) == 1:
                peers = [n for n in cols if not n.startswith("augur")]
            elif au == "augur":
                peers = [n for n in cols if n == "vm"] or ["prom"]
            else:
                peers = [n for n in cols if n in ("vm-nocache", "prom")]
            pairs.append((au, peers))
        rh = " | ".join(f"{au} / fastest of {'+'.join(p)}" for au, p in pairs)
        print("| query | " + " | ".join(cols) + f" | {rh} | match |")
        print("|---" * (len(cols) + len(pairs) + 2) + "|")
        for qname, _, _ in QUERIES:
            cells = []
            med = {}
            p99s = {}
            for name in cols:
                v = sorted(lat[qname][name])
                med[name] = statistics.median(v)
                p99s[name] = v[min(len(v) - 1, int(math.ceil(0.99 * len(v))) - 1)]
                cells.append(f"{med[name]*1e3:.2f} / {p99s[name]*1e3:.2f}")
            ratios = []
            for au, peers in pairs:
                ratios.append(f"{med[au] / min(med[n] for n in peers):.2f} / "
                              f"{p99s[au] / min(p99s[n] for n in peers):.2f}")
            match = "yes" if all(same(answers[(qname, au)], answers[(qname, "prom")]) for au in augurs) else "NO"
            print(f"| {qname} | " + " | ".join(cells) + " | " + " | ".join(ratios) + f" | {match} |")
        blank = " |" * len(pairs)
        print("| server CPU s, all rounds | " + " | ".join(
            f"{cpu1[n] - cpu0[n]:.2f}" for n in cols) + blank + " |")
        print("| peak RSS MiB after queries | " + " | ".join(
            f"{rss_hwm_mib(procs[n].pid):.0f}" for n in cols) + blank + " |")
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
