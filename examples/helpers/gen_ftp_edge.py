#!/usr/bin/env python3
"""Writes ftp-edge.pcap: FTP control sessions (client 10.1.0.2, server 10.1.1.1:21) whose PASV / EPSV /
PORT / EPRT numbers probe the helper's number parsing (octets > 255, ports > 65535, bare LF, bounce), each
followed by the data connection the reply announces. Used with rules.v4 by kernel_helpers.rs."""
import struct, sys

C, S = bytes([10, 1, 0, 2]), bytes([10, 1, 1, 1])
MC, MS = b"\x02\x00\x00\x00\x00\x02", b"\x02\x00\x00\x00\x01\x01"

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def tcp(src, sp, dst, dp, flags, seq, ack, data=b""):
    fl = sum({"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}[c] for c in flags)
    h = struct.pack("!HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, fl, 64240, 0, 0)
    seg = h + data
    c = csum(src + dst + struct.pack("!BBH", 0, 6, len(seg)) + seg)
    seg = seg[:16] + struct.pack("!H", c) + seg[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = (MS + MC if src == C else MC + MS) + b"\x08\x00"
    return eth + ip + seg

pkts = []
t = 1_700_000_000.0

def add(p):
    global t
    t += 0.01
    pkts.append((t, p))

def session(i, client_cmds, server_reply, data_port, active=False):
    cp = 40000 + i
    cs, ss = 1000, 5000
    add(tcp(C, cp, S, 21, "S", cs, 0)); cs += 1
    add(tcp(S, 21, C, cp, "SA", ss, cs)); ss += 1
    add(tcp(C, cp, S, 21, "A", cs, ss))
    for d in [b"220 hi\r\n"]:
        add(tcp(S, 21, C, cp, "PA", ss, cs, d)); ss += len(d)
    for d in client_cmds:
        add(tcp(C, cp, S, 21, "PA", cs, ss, d)); cs += len(d)
        if server_reply is None:
            r = b"200 ok\r\n"
            add(tcp(S, 21, C, cp, "PA", ss, cs, r)); ss += len(r)
    if server_reply is not None:
        add(tcp(S, 21, C, cp, "PA", ss, cs, server_reply)); ss += len(server_reply)
    add(tcp(C, cp, S, 21, "A", cs, ss))
    if data_port is not None:
        if active:
            add(tcp(S, 20, C, data_port, "S", 9000, 0))
            add(tcp(C, data_port, S, 20, "SA", 7000, 9001))
            add(tcp(S, 20, C, data_port, "A", 9001, 7001))
        else:
            dp = 50000 + i
            add(tcp(C, dp, S, data_port, "S", 7000, 0))
            add(tcp(S, data_port, C, dp, "SA", 9000, 7001))
            add(tcp(C, dp, S, data_port, "A", 7001, 9001))

session(0, [b"PASV\r\n"], b"227 Entering Passive Mode (10,1,1,1,39,16).\r\n", 10000)
# octet 257: packs to 10.1.1.1 without a range check
session(1, [b"PASV\r\n"], b"227 Entering Passive Mode (10,1,0,257,39,17).\r\n", 10001)
# EPSV port 65537: 1 when wrapped in 16 bits
session(2, [b"EPSV\r\n"], b"229 Entering Extended Passive Mode (|||65537|)\r\n", 1)
# p1 = 256: (256 << 8 | 2) truncated to 2
session(3, [b"PASV\r\n"], b"227 Entering Passive Mode (10,1,1,1,256,2).\r\n", 2)
# p2 = 300: the kernel ORs (39 << 8) | 300 = 10028
session(4, [b"PASV\r\n"], b"227 Entering Passive Mode (10,1,1,1,39,300).\r\n", 10028)
# active: EPRT with port 70000 (4464 when wrapped), PORT with octet 258 (10.1.0.258 -> 10.1.1.2: a bounce)
session(5, [b"USER x\r\n", b"EPRT |1|10.1.0.2|70000|\r\n"], None, 4464, active=True)
session(6, [b"USER x\r\n", b"PORT 10,1,0,258,39,20\r\n"], None, 10004, active=True)
# bare LF: dropped as a partial match
session(7, [b"USER x\r\n", b"PORT 10,1,0,2,39,21\n"], None, 10005, active=True)
# bounce to a third party, then a normal PORT on the same control connection
session(8, [b"USER x\r\n", b"PORT 10,1,0,9,39,22\r\n", b"PORT 10,1,0,2,39,23\r\n"], None, 10007, active=True)
# case-insensitive keyword, EPRT with another delimiter
session(9, [b"USER x\r\n", b"eprt !1!10.1.0.2!10008!\r\n"], None, 10008, active=True)

out = sys.argv[1] if len(sys.argv) > 1 else "ftp-edge.pcap"
with open(out, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ts, p in pkts:
        sec = int(ts); usec = int(round((ts - sec) * 1e6))
        f.write(struct.pack("<IIII", sec, usec, len(p), len(p)))
        f.write(p)
