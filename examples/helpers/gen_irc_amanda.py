#!/usr/bin/env python3
"""Writes irc-amanda.pcap: IRC sessions (client 10.1.0.2, server 10.1.1.1:6667) sending DCC commands the
irc helper accepts (SEND, CHAT) and ignores (forged address, port 0, DCC not at the start of the message,
NOTICE, DCC from the server), each followed by the DCC peer 10.1.1.5 connecting to the announced port; and
Amanda exchanges (server 10.1.1.1:850 -> client 10.1.0.2:10080) whose reply's CONNECT line announces
ports (a normal one, port 0 ending the list, a 16-bit wrap), each followed by the server's connections to
them. Used with rules-irc-amanda-sip.v4 by crates/statewall/tests/kernel_helpers.rs."""
import struct, sys

C, S, P = bytes([10, 1, 0, 2]), bytes([10, 1, 1, 1]), bytes([10, 1, 1, 5])
MAC = {C: b"\x02\x00\x00\x00\x00\x02", S: b"\x02\x00\x00\x00\x01\x01", P: b"\x02\x00\x00\x00\x01\x05"}
C_DCC = (10 << 24) | (1 << 16) | 2  # 10.1.0.2 as the DCC decimal form

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def ip(src, dst, proto, seg):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, 64, proto, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return MAC[dst] + MAC[src] + b"\x08\x00" + h + seg

def tcp(src, sp, dst, dp, flags, seq, ack, data=b""):
    fl = sum({"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}[c] for c in flags)
    h = struct.pack("!HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, fl, 64240, 0, 0)
    seg = h + data
    c = csum(src + dst + struct.pack("!BBH", 0, 6, len(seg)) + seg)
    return ip(src, dst, 6, seg[:16] + struct.pack("!H", c) + seg[18:])

def udp(src, sp, dst, dp, data):
    seg = struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data
    c = csum(src + dst + struct.pack("!BBH", 0, 17, len(seg)) + seg) or 0xFFFF
    return ip(src, dst, 17, seg[:6] + struct.pack("!H", c) + seg[8:])

pkts = []
t = 1_700_000_000.0

def add(p):
    global t
    t += 0.01
    pkts.append((t, p))

def connect(src, sp, dst, dp):
    add(tcp(src, sp, dst, dp, "S", 9000, 0))
    add(tcp(dst, dp, src, sp, "SA", 7000, 9001))
    add(tcp(src, sp, dst, dp, "A", 9001, 7001))

def irc(i, line, dcc_port, from_server=False):
    cp = 40000 + i
    cs, ss = 1000, 5000
    add(tcp(C, cp, S, 6667, "S", cs, 0)); cs += 1
    add(tcp(S, 6667, C, cp, "SA", ss, cs)); ss += 1
    add(tcp(C, cp, S, 6667, "A", cs, ss))
    for d in [b"NICK alice\r\n", b"USER alice 0 * :Alice\r\n"]:
        add(tcp(C, cp, S, 6667, "PA", cs, ss, d)); cs += len(d)
    r = b":irc 001 alice :Welcome\r\n"
    add(tcp(S, 6667, C, cp, "PA", ss, cs, r)); ss += len(r)
    if from_server:
        add(tcp(S, 6667, C, cp, "PA", ss, cs, line)); ss += len(line)
        add(tcp(C, cp, S, 6667, "A", cs, ss))
    else:
        add(tcp(C, cp, S, 6667, "PA", cs, ss, line)); cs += len(line)
        add(tcp(S, 6667, C, cp, "A", ss, cs))
    connect(P, 50000 + i, C, dcc_port)

irc(0, b"PRIVMSG bob :\x01DCC SEND file.bin %d 5000 1024\x01\r\n" % C_DCC, 5000)
irc(1, b"privmsg bob :\x01DCC CHAT chat %d 5001\x01\r\n" % C_DCC, 5001)
# forged: the address is not the client's
irc(2, b"PRIVMSG bob :\x01DCC SEND file.bin %d 5002 1024\x01\r\n" % (C_DCC + 7), 5002)
# port 0
irc(3, b"PRIVMSG bob :\x01DCC SEND file.bin %d 0 1024\x01\r\n" % C_DCC, 5003)
# the DCC is not at the start of the message
irc(4, b"PRIVMSG bob :hey \x01DCC SEND file.bin %d 5004 1024\x01\r\n" % C_DCC, 5004)
# not a PRIVMSG
irc(5, b"NOTICE bob :\x01DCC SEND file.bin %d 5005 1024\x01\r\n" % C_DCC, 5005)
# from the server: not parsed
irc(6, b":bob!b@h PRIVMSG alice :\x01DCC SEND file.bin %d 5006 1024\x01\r\n" % C_DCC, 5006, from_server=True)
# no newline after the numbers (a partial line): not parsed
irc(7, b"PRIVMSG bob :\x01DCC SEND file.bin %d 5007 1024\x01" % C_DCC, 5007)
# the port wraps in 16 bits: 70000 -> 4464
irc(8, b"PRIVMSG bob :\x01DCC SEND file.bin %d 70000 1024\x01\r\n" % C_DCC, 4464)

def amanda(i, connect_line, ports):
    sp = 850 + i
    add(udp(S, sp, C, 10080, b"Amanda 2.6 REQ HANDLE 000-%08x SEQ 1\nSERVICE sendbackup\n" % i))
    add(udp(C, 10080, S, sp, b"Amanda 2.6 REP HANDLE 000-%08x SEQ 1\n%s\n" % (i, connect_line)))
    for n, p in enumerate(ports):
        connect(S, 41000 + 10 * i + n, C, p)

amanda(0, b"CONNECT DATA 50001 MESG 50002 INDEX 50003", [50001, 50002, 50003])
# port 0 ends the list: MESG 50012 is not expected
amanda(1, b"CONNECT DATA 0 MESG 50012 INDEX 50013", [50012, 50013])
# 70000 wraps to 4464; the keywords in another order
amanda(2, b"CONNECT INDEX 50023 DATA 70000", [4464, 50023])
# no CONNECT
amanda(3, b"OPTIONS features=1; DATA 50031", [50031])

out = sys.argv[1] if len(sys.argv) > 1 else "irc-amanda.pcap"
with open(out, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ts, p in pkts:
        sec = int(ts); usec = int(round((ts - sec) * 1e6))
        f.write(struct.pack("<IIII", sec, usec, len(p), len(p)))
        f.write(p)
