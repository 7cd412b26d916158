#!/usr/bin/env python3
"""Summarize $OVS_DIR/logs/<run>/: best (= from the minimum time) and median
of every figure over the repetitions. Usage: summarize.py LOGDIR [LOGDIR...] (several dirs are pooled)"""
import collections
import glob
import os
import re
import statistics
import sys

dirs = sys.argv[1:]
PCAP_PKTS = {"flows200k": 1_600_000, "flows1m": 8_000_000}
PCAP_FLOWS = {"flows200k": 200_000, "flows1m": 1_000_000}

rates = collections.defaultdict(list)   # (test, figure) -> [value, ...] higher is better
other = collections.defaultdict(list)   # (test, figure) -> [value, ...]
maxrss = collections.defaultdict(list)

for path in sorted(p for d in dirs for p in glob.glob(os.path.join(d, "*.txt"))):
    base = os.path.basename(path)
    m = re.match(r"(.+)\.(\d+)\.txt$", base)
    if not m:
        continue
    test = m.group(1)
    text = open(path).read()
    tm = re.search(r"TIME:wall=([\d.]+):user=([\d.]+):sys=([\d.]+):maxrss_kb=(\d+)", text)
    if tm:
        wall, user, sys_, rss = float(tm[1]), float(tm[2]), float(tm[3]), int(tm[4])
        maxrss[test].append(rss)
    if test.startswith("bench-"):
        n = int(test.rsplit("-", 1)[1])
        ms = re.search(r"conntrack:\s+(\d+) ms", text)
        if ms:
            rates[(test, "Mpps (printed ms, wall)")].append(n / int(ms[1]) / 1e3)
        if tm:
            rates[(test, "Mpps (process user+sys)")].append(n / (user + sys_) / 1e6)
    elif test.startswith("ovstest-pcap-"):
        name = test[len("ovstest-pcap-"):]
        n = PCAP_PKTS[name]
        if tm:
            rates[(test, "Mpps (whole process wall, incl. pcap read + printf)")].append(n / wall / 1e6)
            rates[(test, "Mpps (whole process user+sys)")].append(n / (user + sys_) / 1e6)
    if test.startswith("statewall-bench-"):
        for sm in re.finditer(r"^no rules\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", text, re.M):
            rates[(test, "statewall Mpps (its own timer, wall)")].append(int(sm[1]) / float(sm[2]) / 1e6)
            other[(test, "statewall B/conn (its report)")].append(float(sm[7]))
    for lm in re.finditer(r"^  (.+?): (\d+) pkts, wall ([\d.]+) s = ([\d.]+) Mpps .*?cpu ([\d.]+) s = ([\d.]+) Mpps", text, re.M):
        label = re.sub(r"pass \d+", "pass", lm[1])
        rates[(test, label + " [wall]")].append(float(lm[4]))
        rates[(test, label + " [cpu]")].append(float(lm[6]))
    for rm in re.finditer(r"=> ([\d.]+) bytes/conn", text):
        other[(test, "RSS growth bytes/conn")].append(float(rm[1]))
    for im in re.finditer(r"inv=(\d+)", text):
        if int(im[1]):
            other[(test, "INVALID packets (!)")].append(int(im[1]))


def fmt(v):
    return f"{v:.3f}" if v < 100 else f"{v:.0f}"


print(f"{'test':34} {'figure':62} {'best':>8} {'median':>8}  n  all")
for (test, fig), vs in sorted(rates.items()):
    print(f"{test:34} {fig:62} {fmt(max(vs)):>8} {fmt(statistics.median(vs)):>8} {len(vs):2}  "
          + " ".join(fmt(v) for v in vs))
for (test, fig), vs in sorted(other.items()):
    print(f"{test:34} {fig:62} {fmt(min(vs)):>8} {fmt(statistics.median(vs)):>8} {len(vs):2}  "
          + " ".join(fmt(v) for v in vs))
for test, vs in sorted(maxrss.items()):
    print(f"{test:34} {'max RSS kB':62} {min(vs):>8} {statistics.median(vs):>8} {len(vs):2}")
a, b = maxrss.get("ovstest-pcap-flows200k"), maxrss.get("ovstest-pcap-flows1m")
if a and b:
    per = (statistics.median(b) - statistics.median(a)) * 1024 / (PCAP_FLOWS["flows1m"] - PCAP_FLOWS["flows200k"])
    print(f"ovstest pcap max-RSS difference 1M vs 200k flows: {per:.1f} bytes/conn (median RSS)")
