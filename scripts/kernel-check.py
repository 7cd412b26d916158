#!/usr/bin/env python3
"""Interim kernel cross-check of `statewall replay` (host mode, IPv4, one interface eth0).

Usage (as root):
    scripts/kernel-check.py --rules RULES.v4 --local ADDR/LEN CAPTURE.pcap [--out DIR]
                            [--statewall BIN] [--mark M] [--keep-going]

What it does:
  1. Builds a private topology: namespace swk<pid>p (peer) and swk<pid>f (firewall), linked by a veth
     (swk<pid>v in the peer, eth0 in the firewall). The firewall has ADDR/LEN on eth0, rp_filter=0,
     ip_forward=0, redirects off, IPv6 disabled, a default route `dev eth0` and a permanent neighbour entry
     (the peer's MAC) for every remote IPv4 address of the capture, so no ARP is needed. The peer has no
     address at all, so it never answers. The ruleset is loaded with iptables-legacy-restore; then the
     stack-reply suppression rule `-t raw -I OUTPUT 1 -m mark ! --mark M -j DROP` is inserted (the
     injection raw socket carries SO_MARK M), and all counters are zeroed.
  2. Replays every IPv4 frame of the capture with the capture's relative timing: frames whose IPv4
     source is ADDR are sent from inside the firewall namespace with an IPPROTO_RAW socket (IP_HDRINCL,
     SO_MARK M), so they traverse OUTPUT/POSTROUTING; all others are sent from the peer namespace with an
     AF_PACKET socket bound to the peer veth, as Ethernet frames addressed to eth0's MAC. Non-IPv4 frames
     (ARP, IPv6, VLAN-tagged...) are not sent but counted and kept in the re-timed capture.
  3. Right after the last frame it reads /proc/net/nf_conntrack and `iptables-legacy-save -c` in the
     firewall namespace and writes into DIR: kernel-counters.txt (suppression rule removed),
     kernel-counters-full.txt (as read), kernel-conntrack.txt, retimed.pcap (all frames, same order,
     stamped with the actual send times, microsecond pcap), read_at_ns, and send-log.tsv.
  4. Runs `statewall replay --rules RULES --local ADDR/LEN --counters DIR/sw-counters.txt
     --conntrack DIR/sw-conntrack.txt --no-progress DIR/retimed.pcap` and compares every rule and policy
     counter (packets and bytes) of the tables present in RULES, and the conntrack tables as sets of lines
     (ignoring `use=`, order), the remaining timeout within +-2 s after subtracting the lag between the
     last frame and the kernel read (the engine reports remaining timeouts at the last frame's time).

  --recompare re-runs only step 4 on an existing --out DIR (e.g. after a statewall fix): no root needed.

Frames the kernel cannot see as captured (cut by the snaplen; malformed IP headers that a raw socket would
reject or rewrite) are listed in DIR/unfaithful.txt; if the results then disagree the run is inconclusive.
The kernel host is a plain host: ip_forward=0, and no multicast group joined except 224.0.0.1, so
non-local unicast and multicast to other groups die in routing after PREROUTING (never FORWARD/INPUT).

Exit status: 0 agreement, 1 disagreement, 2 environment error (not root, missing tool, send failure...) or
inconclusive (disagreement with unfaithful frames present).
The namespaces are always deleted (finally block, also on Ctrl-C / SIGTERM).

Python 3 standard library only (ctypes is used for setns(2)).
"""

import argparse
import ctypes
import ipaddress
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000
SO_MARK = 36
ETH_P_IP = 0x0800
DEFAULT_MARK = 0x5377C0DE
PEER_MAC = "02:73:77:00:00:01"
FW_MAC = "02:73:77:00:00:02"
WORKSPACE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class EnvError(Exception):
    """Something about the environment (not about statewall) went wrong: exit 2."""


# ----------------------------------------------------------------------------------------------- pcap


class Frame:
    __slots__ = ("ts_ns", "data", "orig_len", "ip", "kind", "unfaithful")

    def __init__(self, ts_ns, data, orig_len):
        self.ts_ns = ts_ns
        self.data = data
        self.orig_len = orig_len
        self.ip = None  # IPv4 packet bytes (from the Ethernet payload) when kind is 'local'/'remote'
        self.kind = "skip"
        self.unfaithful = None  # why the kernel cannot see this frame as captured, if it cannot


def read_pcap(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 24:
        raise EnvError(f"{path}: too short for a pcap header")
    magic = blob[:4]
    table = {
        b"\xd4\xc3\xb2\xa1": ("<", 1000),
        b"\xa1\xb2\xc3\xd4": (">", 1000),
        b"\x4d\x3c\xb2\xa1": ("<", 1),
        b"\xa1\xb2\x3c\x4d": (">", 1),
    }
    if magic not in table:
        raise EnvError(f"{path}: not a classic pcap file (pcapng is not supported by this script)")
    endian, frac_ns = table[magic]
    _vmaj, _vmin, _tz, _sig, snaplen, linktype = struct.unpack(endian + "HHiIII", blob[4:24])
    if linktype & 0xFFFF != 1:
        raise EnvError(f"{path}: link type {linktype}, only Ethernet (1) is supported")
    frames = []
    off = 24
    while off + 16 <= len(blob):
        sec, frac, incl, orig = struct.unpack(endian + "IIII", blob[off : off + 16])
        off += 16
        if off + incl > len(blob):
            print(f"warning: {path}: truncated record at byte {off - 16}, stopping", file=sys.stderr)
            break
        frames.append(Frame(sec * 1_000_000_000 + frac * frac_ns, blob[off : off + incl], orig))
        off += incl
    return frames, snaplen


def write_pcap_us(path, frames, stamps_ns, snaplen):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, max(snaplen, 65535), 1))
        for fr, ts in zip(frames, stamps_ns):
            us = ts // 1000
            f.write(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(fr.data), fr.orig_len))
            f.write(fr.data)


def classify(frames, local):
    """Marks each frame local/remote/skip; returns the set of remote IPv4 addresses."""
    remotes = set()
    local_b = local.packed
    for fr in frames:
        d = fr.data
        if len(d) < 14 + 20 or struct.unpack("!H", d[12:14])[0] != ETH_P_IP or d[14] >> 4 != 4:
            continue
        ip = d[14:]
        src, dst = ip[12:16], ip[16:20]
        fr.ip = ip
        fr.kind = "local" if src == local_b else "remote"
        ihl = (ip[0] & 15) * 4
        tot = struct.unpack("!H", ip[2:4])[0]
        if tot > len(ip) and fr.orig_len > len(d):
            # Cut by the capture's snaplen: from the peer the kernel drops it in ip_rcv (tot_len > skb len);
            # from the raw socket it would leave with a rewritten, shorter tot_len.
            fr.unfaithful = f"truncated (captured {len(d)} of {fr.orig_len} bytes, IP tot_len {tot})"
        elif fr.kind == "local" and (ihl < 20 or tot < ihl):
            # IP_HDRINCL: the kernel rejects ihl < 5 (EINVAL) and always rewrites tot_len.
            fr.unfaithful = f"malformed IP header (ihl {ihl}, tot_len {tot}) cannot leave a raw socket unchanged"
        for a in (src, dst):
            if a != local_b:
                remotes.add(ipaddress.IPv4Address(a))
    return remotes


# ---------------------------------------------------------------------------------------- namespaces

_libc = ctypes.CDLL(None, use_errno=True)


def setns_fd(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise EnvError(f"setns: {os.strerror(e)}")


class NetnsEnter:
    """Context manager: enter a named network namespace, return to the original one on exit."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.orig = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
        try:
            setns_fd(fd)
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        try:
            setns_fd(self.orig)
        finally:
            os.close(self.orig)
        return False


def run(cmd, input_text=None, check=True):
    p = subprocess.run(cmd, input=input_text, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise EnvError(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr.strip()}")
    return p


def nsrun(ns, cmd, **kw):
    return run(["ip", "netns", "exec", ns] + cmd, **kw)


class Topology:
    def __init__(self, local_if, remotes, mtu):
        pid = os.getpid()
        self.peer = f"swk{pid}p"
        self.fw = f"swk{pid}f"
        self.peer_if = f"swk{pid}v"
        self.local_if = local_if
        self.remotes = remotes
        self.mtu = mtu
        self.created = []

    def build(self):
        for ns in (self.peer, self.fw):
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
        # Both ends are created directly inside their namespaces: nothing appears in the host's namespace.
        run(["ip", "link", "add", self.peer_if, "netns", self.peer, "address", PEER_MAC, "type", "veth",
             "peer", "name", "eth0", "netns", self.fw, "address", FW_MAC])
        # Sysctls before the links come up (IPv6 off so no RS/MLD/DAD traffic ever reaches netfilter).
        for ns, ifs in ((self.peer, [self.peer_if]), (self.fw, ["eth0"])):
            keys = ["net.ipv4.ip_forward=0"]
            for i in ["all", "default", "lo"] + ifs:
                keys += [f"net.ipv6.conf.{i}.disable_ipv6=1", f"net.ipv4.conf.{i}.rp_filter=0",
                         f"net.ipv4.conf.{i}.accept_redirects=0", f"net.ipv4.conf.{i}.send_redirects=0"]
            nsrun(ns, ["sysctl", "-q", "-w"] + keys)
        for ns, dev in ((self.peer, self.peer_if), (self.fw, "eth0")):
            for m in (self.mtu, 9000, 1500):
                if nsrun(ns, ["ip", "link", "set", "dev", dev, "mtu", str(m)], check=False).returncode == 0:
                    break
        nsrun(self.fw, ["ip", "addr", "add", str(self.local_if), "dev", "eth0"])
        nsrun(self.fw, ["ip", "link", "set", "dev", "lo", "up"])
        nsrun(self.fw, ["ip", "link", "set", "dev", "eth0", "up"])
        nsrun(self.peer, ["ip", "link", "set", "dev", self.peer_if, "up"])
        nsrun(self.fw, ["ip", "route", "replace", "default", "dev", "eth0"])
        batch = []
        net = self.local_if.network
        for a in sorted(self.remotes):
            if a.is_multicast or a == ipaddress.IPv4Address("255.255.255.255") or a.is_unspecified:
                continue
            if a in net and (a == net.broadcast_address or a == net.network_address) and net.prefixlen < 31:
                continue
            batch.append(f"neigh replace {a} lladdr {PEER_MAC} dev eth0 nud permanent")
        if batch:
            nsrun(self.fw, ["ip", "-force", "-batch", "-"], input_text="\n".join(batch) + "\n", check=False)
        ipf = nsrun(self.fw, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()
        if ipf != "0":
            raise EnvError(f"ip_forward is {ipf} in {self.fw}")

    def destroy(self):
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.created = []


# -------------------------------------------------------------------------------------- counters


COUNTER_RULE = re.compile(r"^\[(\d+):(\d+)\]\s+(-A\s+(\S+)\s.*)$")
COUNTER_POLICY = re.compile(r"^:(\S+)\s+(\S+)\s+\[(\d+):(\d+)\]")


def parse_counters(text):
    """-> {table: {"policy": {chain: (policy, p, b)}, "rules": {chain: [(rule_text, p, b)]}}}"""
    tables = {}
    cur = None
    for line in text.splitlines():
        line = line.rstrip()
        if line.startswith("*"):
            cur = tables.setdefault(line[1:].strip(), {"policy": {}, "rules": {}})
        elif cur is None or not line or line.startswith("#") or line == "COMMIT":
            continue
        elif (m := COUNTER_POLICY.match(line)):
            cur["policy"][m.group(1)] = (m.group(2), int(m.group(3)), int(m.group(4)))
        elif (m := COUNTER_RULE.match(line)):
            cur["rules"].setdefault(m.group(4), []).append(
                (" ".join(m.group(3).split()), int(m.group(1)), int(m.group(2))))
        elif line.startswith("-A "):
            chain = line.split()[1]
            cur["rules"].setdefault(chain, []).append((" ".join(line.split()), None, None))
    return tables


def is_suppression(rule_text, mark):
    return rule_text.startswith("-A OUTPUT ") and "! --mark" in rule_text and "-j DROP" in rule_text and (
        f"0x{mark:x}" in rule_text or str(mark) in rule_text)


def strip_suppression(text, mark):
    """Removes the first raw OUTPUT suppression line; returns (text, (packets, bytes) or None)."""
    out, table, found = [], None, None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        m = COUNTER_RULE.match(line)
        if found is None and table == "raw" and m and is_suppression(" ".join(m.group(3).split()), mark):
            found = (int(m.group(1)), int(m.group(2)))
            continue
        out.append(line)
    return "\n".join(out) + "\n", found


def ruleset_tables(path):
    with open(path) as f:
        return [l[1:].strip() for l in f if l.startswith("*")]


def compare_counters(kernel, engine, tables):
    diffs = []
    for t in tables:
        k = kernel.get(t)
        e = engine.get(t)
        if k is None or e is None:
            diffs.append(f"table {t}: present in kernel={k is not None} engine={e is not None}")
            continue
        for chain in sorted(set(k["policy"]) | set(e["policy"])):
            kp, ep = k["policy"].get(chain), e["policy"].get(chain)
            if kp is None or ep is None:
                diffs.append(f"{t} :{chain}: chain present in kernel={kp is not None} engine={ep is not None}")
            elif kp[0] != "-" and (kp[1:] != ep[1:] or kp[0] != ep[0]):
                diffs.append(f"{t} :{chain} {kp[0]}: kernel [{kp[1]}:{kp[2]}]  engine {ep[0]} [{ep[1]}:{ep[2]}]")
        for chain in sorted(set(k["rules"]) | set(e["rules"])):
            kr, er = k["rules"].get(chain, []), e["rules"].get(chain, [])
            if len(kr) != len(er):
                diffs.append(f"{t} {chain}: {len(kr)} rules in kernel, {len(er)} in engine")
            for i, (a, b) in enumerate(zip(kr, er)):
                note = "" if a[0] == b[0] else f"   (engine text: {b[0]})"
                if a[1:] != b[1:]:
                    diffs.append(f"{t} #{i + 1} {a[0]}\n      kernel [{a[1]}:{a[2]}]  engine [{b[1]}:{b[2]}]"
                                 f"  delta [{(b[1] or 0) - (a[1] or 0):+d}:{(b[2] or 0) - (a[2] or 0):+d}]{note}")
    return diffs


# ------------------------------------------------------------------------------------- conntrack


def parse_conntrack(text):
    """-> list of (key, timeout, line). key = the line without the timeout and use= fields."""
    out = []
    for line in text.splitlines():
        toks = line.split()
        if len(toks) < 5:
            continue
        toks = [t for t in toks if not t.startswith("use=")]
        timeout = None
        if toks[4].isdigit():
            timeout = int(toks[4])
            toks = toks[:4] + ["T"] + toks[5:]
        out.append((" ".join(toks), timeout, line))
    return out


def compare_conntrack(kernel, engine, lag_s, tol=2.0):
    diffs = []
    kd, ed = {}, {}
    for k, t, line in kernel:
        kd.setdefault(k, []).append((t, line))
    for k, t, line in engine:
        ed.setdefault(k, []).append((t, line))
    for key in sorted(set(kd) | set(ed)):
        ks, es = sorted(kd.get(key, []), key=lambda x: x[0] or 0), sorted(ed.get(key, []), key=lambda x: x[0] or 0)
        for (kt, kl), (et, el) in zip(ks, es):
            if kt is None or et is None:
                continue
            expected = et - lag_s
            if abs(kt - expected) > tol:
                diffs.append(f"timeout: kernel {kt}, engine {et} (expected {expected:.1f} at read time)\n"
                             f"      {kl.strip()}")
        for _, kl in ks[len(es):]:
            diffs.append(f"only in kernel: {kl.strip()}")
        for et, el in es[len(ks):]:
            if et is not None and et - lag_s <= tol:
                diffs.append(f"(tolerated: expires within the read lag) only in engine: {el.strip()}")
            else:
                diffs.append(f"only in engine: {el.strip()}")
    hard = [d for d in diffs if not d.startswith("(tolerated")]
    return diffs, hard


# ----------------------------------------------------------------------------------------- replay


def open_sockets(topo, mark):
    with NetnsEnter(topo.fw):
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        raw.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    with NetnsEnter(topo.peer):
        pk = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: send only, never receives
        pk.bind((topo.peer_if, 0))
    return raw, pk


def replay(frames, raw, pk, log):
    """Sends the frames with the capture's relative timing; returns the send timestamps (ns, wall clock)."""
    eth = bytes.fromhex(FW_MAC.replace(":", "")) + bytes.fromhex(PEER_MAC.replace(":", "")) + b"\x08\x00"
    base_cap = frames[0].ts_ns if frames else 0
    base_mono = time.monotonic_ns() + 200_000_000
    stamps, errors = [], []
    for i, fr in enumerate(frames):
        target = base_mono + max(0, fr.ts_ns - base_cap)
        while True:
            now = time.monotonic_ns()
            if now >= target:
                break
            time.sleep(min((target - now) / 1e9, 0.5))
        ts = time.time_ns()
        stamps.append(ts)
        try:
            if fr.kind == "remote":
                pk.send(eth + fr.ip)
            elif fr.kind == "local":
                ip = fr.ip
                tot = struct.unpack("!H", ip[2:4])[0]
                if 20 <= tot <= len(ip):
                    ip = ip[:tot]
                raw.sendto(ip, (socket.inet_ntoa(ip[16:20]), 0))
        except OSError as e:
            if fr.unfaithful is None:
                errors.append(f"frame {i + 1} ({fr.kind}): {e}")
        log.write(f"{i + 1}\t{fr.kind}\t{fr.ts_ns - base_cap}\t{ts}\n")
    return stamps, errors


def read_kernel_state(topo):
    """Reads conntrack then counters in the firewall namespace. Returns (read_at_ns, ct_text, save_text)."""
    with NetnsEnter(topo.fw):
        read_at = time.time_ns()
        try:
            with open("/proc/net/nf_conntrack") as f:
                ct = f.read()
        except FileNotFoundError:
            ct = ""
    save = nsrun(topo.fw, ["iptables-legacy-save", "-c"]).stdout
    return read_at, ct, save


def ensure_statewall(path):
    if os.path.exists(path):
        return path
    print(f"building statewall ({path} missing)...", file=sys.stderr)
    p = subprocess.run(["cargo", "build", "--release", "-p", "statewall"], cwd=WORKSPACE)
    if p.returncode != 0 or not os.path.exists(path):
        raise EnvError("cargo build --release -p statewall failed")
    return path


def kernel_phase(a, out, local_if, tables):
    """Builds the topology, replays, reads the kernel state, writes the kernel files. -> env problems."""
    with open(a.rules) as f:
        rules_text = f.read()
    frames, snaplen = read_pcap(a.capture)
    remotes = classify(frames, local_if.ip)
    n_local = sum(fr.kind == "local" for fr in frames)
    n_remote = sum(fr.kind == "remote" for fr in frames)
    n_skip = len(frames) - n_local - n_remote
    if n_local + n_remote == 0:
        raise EnvError("no IPv4 frame in the capture")
    span = (frames[-1].ts_ns - frames[0].ts_ns) / 1e9
    biggest = max(len(fr.ip) for fr in frames if fr.ip is not None)
    print(f"capture   {a.capture}: {len(frames)} frames: {n_remote} IPv4 from peers, {n_local} IPv4 from "
          f"{local_if.ip}, {n_skip} skipped (not IPv4); {span:.3f} s; {len(remotes)} remote addresses")

    topo = Topology(local_if, remotes, max(1500, min(65535, biggest + 64)))
    try:
        topo.build()
        nsrun(topo.fw, ["iptables-legacy-restore"], input_text=rules_text)
        nsrun(topo.fw, ["iptables-legacy", "-t", "raw", "-I", "OUTPUT", "1", "-m", "mark", "!", "--mark",
                        f"0x{a.mark:x}", "-j", "DROP"])
        for t in set(tables) | {"raw"}:
            nsrun(topo.fw, ["iptables-legacy", "-t", t, "-Z"])
        pre = ""
        with NetnsEnter(topo.fw):
            try:
                with open("/proc/net/nf_conntrack") as f:
                    pre = f.read()
            except FileNotFoundError:
                pass
        if pre.strip():
            raise EnvError(f"conntrack table of {topo.fw} not empty before the replay:\n{pre}")
        sysctls = nsrun(topo.fw, ["sh", "-c", "cd /proc/sys/net/netfilter && grep -H . nf_conntrack_acct "
                                  "nf_conntrack_checksum nf_conntrack_tcp_loose nf_conntrack_tcp_be_liberal "
                                  "nf_conntrack_timestamp 2>/dev/null"], check=False).stdout.split()
        print(f"topology  {topo.peer} ({topo.peer_if}) <-> {topo.fw} (eth0 {local_if}), mark 0x{a.mark:x}; "
              + " ".join(s.replace("nf_conntrack_", "") for s in sysctls))
        raw, pk = open_sockets(topo, a.mark)
        print(f"replaying ({span:.1f} s)...", flush=True)
        with open(os.path.join(out, "send-log.tsv"), "w") as log:
            log.write("frame\tkind\tcapture_offset_ns\tsent_at_ns\n")
            stamps, errors = replay(frames, raw, pk, log)
        read_at, ct_text, save_text = read_kernel_state(topo)
        stat = ""
        with NetnsEnter(topo.fw):
            try:
                with open("/proc/net/stat/nf_conntrack") as f:
                    stat = f.read()
            except FileNotFoundError:
                pass
        raw.close()
        pk.close()
    finally:
        topo.destroy()
    left = [n for n in run(["ip", "netns", "list"]).stdout.split() if n.startswith(f"swk{os.getpid()}")]
    if left:
        print(f"warning: namespaces left behind: {left}", file=sys.stderr)

    with open(os.path.join(out, "kernel-counters-full.txt"), "w") as f:
        f.write(save_text)
    kc_text, supp = strip_suppression(save_text, a.mark)
    with open(os.path.join(out, "kernel-counters.txt"), "w") as f:
        f.write(kc_text)
    with open(os.path.join(out, "kernel-conntrack.txt"), "w") as f:
        f.write(ct_text)
    with open(os.path.join(out, "kernel-conntrack-stat.txt"), "w") as f:
        f.write(stat)
    with open(os.path.join(out, "read_at_ns"), "w") as f:
        f.write(f"{read_at}\n")
    write_pcap_us(os.path.join(out, "retimed.pcap"), frames, stamps, snaplen)
    print(f"kernel    read {(read_at - stamps[-1]) / 1e6:.1f} ms after the last frame; suppression rule dropped "
          f"{supp[0] if supp else '?'} stack-generated packets ({supp[1] if supp else '?'} bytes)")
    unfaithful = [f"frame {i + 1} ({fr.kind}): {fr.unfaithful}" for i, fr in enumerate(frames) if fr.unfaithful]
    with open(os.path.join(out, "unfaithful.txt"), "w") as f:
        f.write("".join(u + "\n" for u in unfaithful))
    problems = []
    if errors:
        problems.append(f"{len(errors)} send failures (the kernel did not see those frames):\n    "
                        + "\n    ".join(errors[:20]))
    if supp is None:
        problems.append("suppression rule not found in the kernel counters")
    return problems


def last_pcap_ns(path):
    frames, _ = read_pcap(path)
    if not frames:
        raise EnvError(f"{path}: empty")
    return frames[-1].ts_ns


def compare_phase(a, out, statewall, tables):
    """Runs statewall on DIR/retimed.pcap and compares with the kernel files. -> True on agreement."""
    try:
        with open(os.path.join(out, "kernel-counters.txt")) as f:
            kc_text = f.read()
        with open(os.path.join(out, "kernel-conntrack.txt")) as f:
            ct_text = f.read()
        with open(os.path.join(out, "read_at_ns")) as f:
            read_at = int(f.read().strip())
    except (OSError, ValueError) as e:
        raise EnvError(f"kernel results missing in {out}: {e}")
    retimed = os.path.join(out, "retimed.pcap")
    last_ns = last_pcap_ns(retimed)
    swc, swt = os.path.join(out, "sw-counters.txt"), os.path.join(out, "sw-conntrack.txt")
    cmd = [statewall, "replay", "--rules", a.rules, "--local", a.local, "--counters", swc, "--conntrack", swt,
           "--no-progress", retimed]
    p = subprocess.run(cmd, capture_output=True, text=True)
    with open(os.path.join(out, "sw-summary.txt"), "w") as f:
        f.write(p.stdout + p.stderr)
    if p.returncode not in (0, 3):
        raise EnvError(f"statewall failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    with open(swc) as f:
        engine_counters = parse_counters(f.read())
    with open(swt) as f:
        engine_ct = parse_conntrack(f.read())
    kernel_counters = parse_counters(kc_text)
    kernel_ct = parse_conntrack(ct_text)

    print("\n== kernel counters (suppression rule removed) ==")
    for line in kc_text.splitlines():
        if line and not line.startswith("#"):
            print("  " + line)
    ignored = sorted(set(kernel_counters) - set(tables))
    if ignored:
        print(f"(kernel tables not in the ruleset, not compared: {', '.join(ignored)})")

    cdiffs = compare_counters(kernel_counters, engine_counters, tables)
    # The engine's remaining timeouts are at the last frame's timestamp (the re-timed capture carries the
    # actual send times, truncated to microseconds); the kernel's are at read_at.
    lag_s = (read_at - last_ns) / 1e9
    tdiffs, thard = compare_conntrack(kernel_ct, engine_ct, lag_s, a.tolerance)

    print(f"\n== counters: {'AGREE' if not cdiffs else f'{len(cdiffs)} DIFFERENCES'} ==")
    for d in cdiffs:
        print("  " + d)
    print(f"\n== conntrack: kernel {len(kernel_ct)} entries, engine {len(engine_ct)}: "
          f"{'AGREE' if not thard else f'{len(thard)} DIFFERENCES'} (lag {lag_s * 1000:.1f} ms, "
          f"tolerance {a.tolerance} s) ==")
    for d in tdiffs:
        print("  " + d)
    print(f"\nfiles in {out}")
    return not cdiffs and not thard


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--local", required=True, help="ADDR/LEN of the firewall's eth0")
    ap.add_argument("--out", default=None, help="output directory (default: a new /tmp/kernel-check.XXXX)")
    ap.add_argument("--statewall", default=os.path.join(WORKSPACE, "target", "release", "statewall"))
    ap.add_argument("--mark", type=lambda s: int(s, 0), default=DEFAULT_MARK)
    ap.add_argument("--tolerance", type=float, default=2.0, help="timeout tolerance in seconds (2)")
    ap.add_argument("--recompare", action="store_true",
                    help="no kernel run: re-run statewall on --out DIR/retimed.pcap and compare with the "
                         "kernel files already there (CAPTURE is then ignored)")
    ap.add_argument("capture", nargs="?")
    a = ap.parse_args()

    try:
        local_if = ipaddress.IPv4Interface(a.local if "/" in a.local else a.local + "/32")
    except ValueError as e:
        raise EnvError(f"--local: {e}")
    tables = ruleset_tables(a.rules)
    statewall = ensure_statewall(a.statewall)
    out = a.out
    problems = []
    if a.recompare:
        if out is None:
            raise EnvError("--recompare needs --out DIR")
    else:
        if a.capture is None:
            raise EnvError("CAPTURE missing")
        if os.geteuid() != 0:
            raise EnvError("must run as root")
        for tool in ("ip", "iptables-legacy-restore", "iptables-legacy-save", "iptables-legacy", "sysctl"):
            if subprocess.run(["which", tool], capture_output=True).returncode != 0:
                raise EnvError(f"missing tool: {tool}")
        if out is None:
            import tempfile
            out = tempfile.mkdtemp(prefix="kernel-check.")
        os.makedirs(out, exist_ok=True)
        problems = kernel_phase(a, out, local_if, tables)
    agree = compare_phase(a, out, statewall, tables)
    for p in problems:
        print(f"ENV ERROR: {p}")
    unfaithful = []
    if os.path.exists(os.path.join(out, "unfaithful.txt")):
        with open(os.path.join(out, "unfaithful.txt")) as f:
            unfaithful = f.read().splitlines()
    if unfaithful:
        print(f"\nWARNING: {len(unfaithful)} IPv4 frames cannot reach the kernel as captured, so the kernel is no "
              f"oracle for them{'' if agree else ' and the differences above may come from them (exit 2)'}:")
        for u in unfaithful[:10]:
            print("    " + u)
        if len(unfaithful) > 10:
            print(f"    ... ({len(unfaithful) - 10} more in {out}/unfaithful.txt)")
    if problems or (unfaithful and not agree):
        return 2
    return 0 if agree else 1


def _sigterm(_sig, _frm):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGHUP, _sigterm)
    try:
        sys.exit(main())
    except EnvError as e:
        print(f"ENV ERROR: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(2)
