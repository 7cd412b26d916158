#!/usr/bin/env python3
"""Writes sip.pcap: SIP through the sip conntrack helper, between the client 10.2.0.2 and the
registrar/proxy 10.2.1.1 (IPv6: fd02::2 and fd02::101), every media stream between those two (the
helper's sip_direct_media default):

- SIP/UDP (5060 <-> 5060): REGISTER with a Contact port 5070 and its 200 OK (signalling expectation,
  activated by the answer), INVITE with SDP and 200 OK with SDP (RTP/RTCP media expectations both
  ways), RTP and RTCP flows that are RELATED through them, an inbound call from the registrar to the
  registered Contact port 5070 (RELATED through the signalling expectation, while the same INVITE
  from a third party 10.2.1.5 is NEW: sip_direct_signalling; that entry gets the sip helper and its
  own INVITE/200 OK create media expectations used by one more RTP flow, and its BYE flushes them),
  the first call's BYE, and a media packet after that BYE flushed the expectations (NEW).
- SIP/TCP (client ports 40100.. -> 5060): a REGISTER and an INVITE in one segment (Content-Length not
  the last header of the INVITE), the two 200 OKs in one segment, the media and an inbound TCP
  connection to the registered port 5072; a segment holding a complete INVITE plus the first part of
  an UPDATE whose rest comes in the next segment (the kernel parses only complete messages: the
  INVITE's media is expected, the split UPDATE's is not); a message split before its Content-Length.
- SIP/UDP over IPv6: the same call with a bracketed Contact [fd02::2]:5070 and `c=IN IP6` SDP; a
  REGISTER with an unbracketed Contact (nothing expected: port 5080 stays closed); INVITEs whose SDP
  address is bracketed (no address: the helper drops it), has a media-level c= line ending in `]`
  (expected), or is IPv4 (no address of the entry's family: dropped); a de-registration (Expires: 0)
  whose 200 OK removes the signalling expectation (port 5070 closed again). No IPv6 expectation is
  left at the end (verify's kernel-side `conntrack -L expect` lists IPv4 only).

Used with rules-sip.v4 / rules-sip.v6 by crates/statewall/tests/kernel_sip.rs."""
import ipaddress, struct, sys

C, S, P = bytes([10, 2, 0, 2]), bytes([10, 2, 1, 1]), bytes([10, 2, 1, 5])
C6, S6 = ipaddress.IPv6Address("fd02::2").packed, ipaddress.IPv6Address("fd02::101").packed
MAC = {C: b"\x02\x00\x00\x02\x00\x02", S: b"\x02\x00\x00\x02\x01\x01", P: b"\x02\x00\x00\x02\x01\x05",
       C6: b"\x02\x00\x00\x06\x00\x02", S6: b"\x02\x00\x00\x06\x01\x01"}

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF

def pseudo(src, dst, proto, n):
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, n)
    return src + dst + struct.pack("!IxxxB", n, proto)

def ip(src, dst, proto, seg):
    if len(src) == 4:
        h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), 1, 0x4000, 64, proto, 0, src, dst)
        h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
        return MAC[dst] + MAC[src] + b"\x08\x00" + h + seg
    h = struct.pack("!IHBB16s16s", 6 << 28, len(seg), proto, 64, src, dst)
    return MAC[dst] + MAC[src] + b"\x86\xdd" + h + seg

def tcp(src, sp, dst, dp, flags, seq, ack, data=b""):
    fl = sum({"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}[c] for c in flags)
    h = struct.pack("!HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, fl, 64240, 0, 0)
    seg = h + data
    c = csum(pseudo(src, dst, 6, len(seg)) + seg)
    return ip(src, dst, 6, seg[:16] + struct.pack("!H", c) + seg[18:])

def udp(src, sp, dst, dp, data):
    seg = struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data
    c = csum(pseudo(src, dst, 17, len(seg)) + seg) or 0xFFFF
    return ip(src, dst, 17, seg[:6] + struct.pack("!H", c) + seg[8:])

pkts = []
t = 1_700_000_000 * 1_000_000  # microseconds

def add(p):
    global t
    t += 10_000
    pkts.append((t, p))

def a(addr):
    """An address as SIP/SDP text (IPv6 without brackets)."""
    return str(ipaddress.ip_address(addr))

def sdp(addr, port, media="audio"):
    fam = "IP4" if len(addr) == 4 else "IP6"
    return ("v=0\r\no=- 1 1 IN %s %s\r\ns=-\r\nc=IN %s %s\r\nt=0 0\r\nm=%s %d RTP/AVP 0\r\n"
            % (fam, a(addr), fam, a(addr), media, port)).encode()

def msg(first, headers, body=b""):
    h = "".join("%s\r\n" % x for x in headers)
    return ("%s\r\n%sContent-Length: %d\r\n\r\n" % (first, h, len(body))).encode() + body

def uri(addr, port=None):
    host = a(addr) if len(addr) == 4 else "[%s]" % a(addr)
    return host if port is None else "%s:%d" % (host, port)

def rtp(src, sp, dst, dp, n=2):
    for i in range(n):
        add(udp(src, sp, dst, dp, b"\x80\x00" + struct.pack("!HI", i, i * 160) + b"\0" * 24))

# ---------- SIP/UDP over IPv4 ----------
def udp_call(c, s, contact_port, mc, ms, inbound_mc, inbound_ms, tag):
    via = "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s" % (uri(c, 5060), tag)
    reg = msg("REGISTER sip:%s SIP/2.0" % uri(s), [via, "CSeq: 1 REGISTER",
              "Contact: <sip:alice@%s>" % uri(c, contact_port), "Expires: 600"])
    add(udp(c, 5060, s, 5060, reg))
    add(udp(s, 5060, c, 5060, msg("SIP/2.0 200 OK", [via, "CSeq: 1 REGISTER",
        "Contact: <sip:alice@%s>;expires=600" % uri(c, contact_port)])))
    inv = msg("INVITE sip:bob@%s SIP/2.0" % uri(s), [via, "CSeq: 2 INVITE",
              "Contact: <sip:alice@%s>" % uri(c, 5060), "Content-Type: application/sdp"], sdp(c, mc))
    add(udp(c, 5060, s, 5060, inv))
    add(udp(s, 5060, c, 5060, msg("SIP/2.0 100 Trying", [via, "CSeq: 2 INVITE"])))
    add(udp(s, 5060, c, 5060, msg("SIP/2.0 200 OK", [via, "CSeq: 2 INVITE",
        "Content-Type: application/sdp"], sdp(s, ms))))
    add(udp(c, 5060, s, 5060, msg("ACK sip:bob@%s SIP/2.0" % uri(s), [via, "CSeq: 2 ACK"])))
    # RTP from the caller to the callee's announced port, RTCP from the callee to the caller's
    rtp(c, mc, s, ms)
    rtp(s, ms, c, mc)
    rtp(s, ms + 1, c, mc + 1)
    rtp(c, mc + 1, s, ms + 1)
    # sip_direct_signalling: only the registrar may reach the registered Contact port, not a third party
    if len(c) == 4:
        add(udp(P, 5060, c, contact_port, msg("INVITE sip:alice@%s SIP/2.0" % uri(c, contact_port),
            ["CSeq: 1 INVITE"])))
    # an inbound call: the registrar reaches the registered Contact port
    ivia = "Via: SIP/2.0/UDP %s;branch=z9hG4bKin%s" % (uri(s, 5060), tag)
    add(udp(s, 5060, c, contact_port, msg("INVITE sip:alice@%s SIP/2.0" % uri(c, contact_port),
        [ivia, "CSeq: 7 INVITE", "Content-Type: application/sdp"], sdp(s, inbound_ms))))
    add(udp(c, contact_port, s, 5060, msg("SIP/2.0 200 OK", [ivia, "CSeq: 7 INVITE",
        "Content-Type: application/sdp"], sdp(c, inbound_mc))))
    rtp(s, inbound_ms, c, inbound_mc)
    rtp(c, inbound_mc, s, inbound_ms)
    # the registrar hangs up: the inbound call's unused media expectations go
    add(udp(s, 5060, c, contact_port, msg("BYE sip:alice@%s SIP/2.0" % uri(c, contact_port),
        [ivia, "CSeq: 8 BYE"])))
    add(udp(c, contact_port, s, 5060, msg("SIP/2.0 200 OK", [ivia, "CSeq: 8 BYE"])))
    # BYE flushes the first call's media expectations (see the stream after the call)
    add(udp(c, 5060, s, 5060, msg("BYE sip:bob@%s SIP/2.0" % uri(s), [via, "CSeq: 3 BYE"])))
    add(udp(s, 5060, c, 5060, msg("SIP/2.0 200 OK", [via, "CSeq: 3 BYE"])))

udp_call(C, S, 5070, 40000, 50000, 42000, 52000, "u4")
# the caller's RTP stream was answered inside its own entry, so the expectation toward the caller's
# RTP port was never used; the BYE removed it: a stream to that port is NEW now
rtp(S, 50010, C, 40000, 1)

# ---------- SIP/TCP over IPv4 ----------
class Tcp:
    def __init__(self, c, cp, s, sp):
        self.c, self.cp, self.s, self.sp = c, cp, s, sp
        self.cs, self.ss = 1000, 5000
        add(tcp(c, cp, s, sp, "S", self.cs, 0)); self.cs += 1
        add(tcp(s, sp, c, cp, "SA", self.ss, self.cs)); self.ss += 1
        add(tcp(c, cp, s, sp, "A", self.cs, self.ss))
    def client(self, data):
        add(tcp(self.c, self.cp, self.s, self.sp, "PA", self.cs, self.ss, data)); self.cs += len(data)
        add(tcp(self.s, self.sp, self.c, self.cp, "A", self.ss, self.cs))
    def server(self, data):
        add(tcp(self.s, self.sp, self.c, self.cp, "PA", self.ss, self.cs, data)); self.ss += len(data)
        add(tcp(self.c, self.cp, self.s, self.sp, "A", self.cs, self.ss))
    def close(self):
        add(tcp(self.c, self.cp, self.s, self.sp, "FA", self.cs, self.ss)); self.cs += 1
        add(tcp(self.s, self.sp, self.c, self.cp, "FA", self.ss, self.cs)); self.ss += 1
        add(tcp(self.c, self.cp, self.s, self.sp, "A", self.cs, self.ss))

via_t = "Via: SIP/2.0/TCP %s;branch=z9hG4bKt1" % uri(C, 40100)
k = Tcp(C, 40100, S, 5060)
reg = msg("REGISTER sip:%s SIP/2.0" % uri(S), [via_t, "CSeq: 1 REGISTER",
          "Contact: <sip:alice@%s;transport=tcp>" % uri(C, 5072), "Expires: 300"])
body = sdp(C, 40100)
# Content-Length before CSeq: the message still ends at the blank line after the headers
inv = ("INVITE sip:bob@%s SIP/2.0\r\n%s\r\nContent-Length: %d\r\nCSeq: 2 INVITE\r\n"
       "Content-Type: application/sdp\r\n\r\n" % (uri(S), via_t, len(body))).encode() + body
k.client(reg + inv)
k.server(msg("SIP/2.0 200 OK", [via_t, "CSeq: 1 REGISTER",
             "Contact: <sip:alice@%s;transport=tcp>;expires=300" % uri(C, 5072)])
         + msg("SIP/2.0 200 OK", [via_t, "CSeq: 2 INVITE", "Content-Type: application/sdp"], sdp(S, 50100)))
rtp(C, 40100, S, 50100)
rtp(S, 50101, C, 40101)
# the registrar opens a TCP connection to the registered port (any source port)
inb = Tcp(S, 45000, C, 5072)
inb.close()

# a complete INVITE and the first part of an UPDATE in one segment, the rest in the next
k2 = Tcp(C, 40101, S, 5060)
via2 = "Via: SIP/2.0/TCP %s;branch=z9hG4bKt2" % uri(C, 40101)
inv2 = msg("INVITE sip:bob@%s SIP/2.0" % uri(S), [via2, "CSeq: 1 INVITE"], sdp(C, 40200))
upd = msg("UPDATE sip:bob@%s SIP/2.0" % uri(S), [via2, "CSeq: 2 UPDATE"], sdp(C, 40300, "video"))
cut = len(upd) - 20
k2.client(inv2 + upd[:cut])
k2.client(upd[cut:])
rtp(S, 50200, C, 40200)   # RELATED (the INVITE)
rtp(S, 50300, C, 40300)   # NEW (the split UPDATE was never parsed)
# a message split before its Content-Length header: the second segment starts with it
inv3 = msg("INVITE sip:bob@%s SIP/2.0" % uri(S), [via2, "CSeq: 3 INVITE"], sdp(C, 40400))
cut = inv3.index(b"Content-Length")
k2.client(inv3[:cut])
k2.client(inv3[cut:])
rtp(S, 50400, C, 40400)   # NEW
# the split INVITE was never parsed (it would have flushed the media expectations first): the
# second INVITE's RTCP expectation still stands
rtp(S, 50201, C, 40201)   # RELATED
k2.close()
k.close()

# ---------- SIP/UDP over IPv6 ----------
udp_call(C6, S6, 5070, 40000, 50000, 42000, 52000, "u6")
via6 = "Via: SIP/2.0/UDP %s;branch=z9hG4bKv6" % uri(C6, 5060)
# an unbracketed Contact is not parsed: nothing expected, the registrar cannot reach port 5080
add(udp(C6, 5060, S6, 5060, msg("REGISTER sip:%s SIP/2.0" % uri(S6), [via6, "CSeq: 10 REGISTER",
    "Contact: <sip:alice@%s:5080>" % a(C6), "Expires: 600"])))
add(udp(S6, 5060, C6, 5060, msg("SIP/2.0 200 OK", [via6, "CSeq: 10 REGISTER"])))
add(udp(S6, 5060, C6, 5080, msg("OPTIONS sip:alice@%s SIP/2.0" % uri(C6, 5080), [via6, "CSeq: 1 OPTIONS"])))
# SDP takes a bare address only: `c=IN IP6 [fd02::2]` is no connection address, and with no other
# c= line the helper drops the INVITE (6.18.44); its media port stays closed
body6 = ("v=0\r\no=- 1 1 IN IP6 %s\r\ns=-\r\nc=IN IP6 [%s]\r\nt=0 0\r\nm=audio 44000 RTP/AVP 0\r\n"
         % (a(C6), a(C6))).encode()
add(udp(C6, 5060, S6, 5060, msg("INVITE sip:bob@%s SIP/2.0" % uri(S6), [via6, "CSeq: 11 INVITE"], body6)))
rtp(S6, 50500, C6, 44000)  # NEW
# a media-level c= line overrides the session's; a ']' after the literal only ends it
body6 = ("v=0\r\no=- 1 1 IN IP6 %s\r\ns=-\r\nc=IN IP6 fd02::99\r\nt=0 0\r\nm=audio 44200 RTP/AVP 0\r\n"
         "c=IN IP6 %s]\r\n" % (a(C6), a(C6))).encode()
add(udp(C6, 5060, S6, 5060, msg("INVITE sip:bob@%s SIP/2.0" % uri(S6), [via6, "CSeq: 12 INVITE"], body6)))
rtp(S6, 50700, C6, 44200)  # RELATED
rtp(S6, 50701, C6, 44201)  # RELATED
# a re-INVITE whose SDP names an IPv4 address: no connection address of the entry's family, dropped
add(udp(C6, 5060, S6, 5060, msg("INVITE sip:bob@%s SIP/2.0" % uri(S6), [via6, "CSeq: 13 INVITE"],
                                sdp(C, 44100))))
rtp(S6, 50600, C6, 44100)  # NEW
# de-registration (Expires: 0): the 200 OK removes the signalling expectation
add(udp(C6, 5060, S6, 5060, msg("REGISTER sip:%s SIP/2.0" % uri(S6), [via6, "CSeq: 14 REGISTER",
    "Contact: <sip:alice@%s>" % uri(C6, 5070), "Expires: 0"])))
add(udp(S6, 5060, C6, 5060, msg("SIP/2.0 200 OK", [via6, "CSeq: 14 REGISTER",
    "Contact: <sip:alice@%s>" % uri(C6, 5070), "Expires: 0"])))
# (from another registrar port: the inbound call's own entry still holds 5060 -> 5070)
add(udp(S6, 5062, C6, 5070, msg("OPTIONS sip:alice@%s SIP/2.0" % uri(C6, 5070), [via6, "CSeq: 2 OPTIONS"])))

out = sys.argv[1] if len(sys.argv) > 1 else "sip.pcap"
with open(out, "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ts, p in pkts:
        sec, usec = divmod(ts, 1_000_000)
        f.write(struct.pack("<IIII", sec, usec, len(p), len(p)))
        f.write(p)
