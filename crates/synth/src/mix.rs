//! The "random-mix" scenario: IPv4 episodes of the protocols "random" leaves out or only touches:
//! fragments, GRE with keys and PPTP-style version 1, SCTP associations, generic protocols and
//! UDP-Lite, between some ordinary TCP/UDP/ICMP episodes. Same topology, host models, contract
//! (100-400 frames, valid checksums including SCTP CRC32c, sorted, byte-identical per seed) and
//! inside-endpoint mix as "random" (see [`crate::random`]); its own seed stream, so "random" is
//! untouched.
//!
//! # Episodes
//! * `frag4`: a UDP datagram of 1.5-5 kB (a response to a query of the inside endpoint) or a large
//!   echo request/reply, fragmented without DF at 1480-byte boundaries (576-byte path sometimes):
//!   in order; out of order (last first, or reversed); a partially overlapping fragment carrying the
//!   same bytes (Linux drops the whole datagram); a conflicting fragment entirely inside an earlier
//!   one (a duplicate to Linux: dropped, the first data wins); an exact duplicate fragment. Our own
//!   stack always fragments in order; the odd variants come from the peer.
//! * `gre`: GRE version 0 without key, with a key (one per direction), with checksum + key +
//!   sequence number (RFC 2890), carrying IPv4 or Ethernet frames; or GRE version 1 as PPTP uses it
//!   (RFC 2637: key = payload length + peer's call id, sequence numbers, piggy-backed and bare
//!   acknowledgements, PPP frames inside).
//! * `sctp`: an association (RFC 9260): INIT (verification tag 0), INIT-ACK with a state cookie,
//!   COOKIE-ECHO, COOKIE-ACK, DATA/SACK exchanges, sometimes a HEARTBEAT/HEARTBEAT-ACK pair after
//!   an idle period, then SHUTDOWN / SHUTDOWN-ACK / SHUTDOWN-COMPLETE or an ABORT from either side;
//!   every packet carries the receiver's tag and a correct CRC32c.
//! * `generic`: protocol 253 or 254 (experimental) datagrams both ways, or one way only.
//! * `udplite`: UDP-Lite (136) request/response or a one-way stream, checksum coverage 8 (header
//!   only) or 0 (whole datagram). Checksums follow RFC 3828 (protocol 136 in the pseudo-header, as
//!   Linux UDP-Lite sockets send them). Note: Linux conntrack verifies UDP-Lite checksums at
//!   PREROUTING with protocol 17 in the pseudo-header (`udplite_error` passes `IPPROTO_UDP`), so
//!   with `nf_conntrack_checksum=1` it calls these packets INVALID there (checked on a 6.x kernel:
//!   the RFC form is INVALID, the protocol-17 form NEW).
//! * ordinary `tcp_plain`, `udp`, `icmp_echo` and `other_proto` (GRE v0 / ESP) episodes from
//!   "random".

use crate::packet::Ip4;
use crate::random::{self, Cx, Episode, EpisodeFn};
use crate::raw::{self, ipv4_frame, sctp_bytes, sctp_chunk, Frag4, Pseudo};
use crate::rng::Rng;
use crate::tcp::{MS, US};
use crate::world::Remote;
use crate::SynthError;
use wire::Time;

/// Episode table of "random-mix".
pub(crate) const KINDS_MIX: &[(u64, &str, EpisodeFn)] = &[
    (10, "tcp_plain", random::tcp_plain),
    (6, "udp", random::udp_episode),
    (5, "icmp_echo", random::icmp_echo_episode),
    (4, "other_proto", random::other_proto),
    (22, "frag4", frag4),
    (14, "gre", gre),
    (20, "sctp", sctp),
    (8, "generic", generic),
    (11, "udplite", udplite),
];

/// Generates the random-mix scenario and its episode list.
pub(crate) fn generate_logged(
    seed: u64,
    start: Time,
) -> Result<(Vec<crate::Frame>, Vec<Episode>), SynthError> {
    random::run(Rng::new(seed ^ 0x0a4d_4d49_5800_0000), start, KINDS_MIX, crate::packet::Trace::new(), 1460)
}

/// The inside endpoint's and a peer's IPv4 header templates for one episode.
fn ends(cx: &Cx, h: &Remote, df: bool) -> (Ip4, Ip4) {
    let me = Ip4 { src: cx.me.ip, dst: h.ip, ttl: cx.me.ttl, id: 0, df, tos: 0 };
    let peer = Ip4 { src: h.ip, dst: cx.me.ip, ttl: h.ttl, id: 0, df, tos: 0 };
    (me, peer)
}

/// Serialisation gap between back-to-back packets of `len` bytes (~100 Mbit/s).
fn gap(len: usize) -> u64 {
    (len as u64 + 38) * 80 + 2 * US
}

/// Sends `payload` (the whole L4 message of protocol `proto`) as IPv4 fragments of `chunk` bytes
/// (a multiple of 8) per `variant`: 0 in order, 1 out of order, 2 partial overlap (same bytes),
/// 3 conflicting fragment inside an earlier one, 4 exact duplicate. Returns the last send time.
#[allow(clippy::too_many_arguments)]
fn fragments(
    cx: &mut Cx,
    rng: &mut Rng,
    t: Time,
    ip: &Ip4,
    proto: u8,
    payload: &[u8],
    chunk: usize,
    variant: u64,
) -> Result<Time, SynthError> {
    let total = payload.len();
    let mut pieces: Vec<(usize, usize, Option<Vec<u8>>)> = Vec::new();
    // Partial overlap: the second fragment starts 8-128 bytes inside the first (same bytes), every
    // fragment still within the MTU.
    let mut back = if variant == 2 { rng.range_usize(1, 16) * 8 } else { 0 };
    let mut off = 0;
    while off < total {
        let n = chunk.min(total - off);
        pieces.push((off, n, None));
        off += n;
        if off < total {
            off -= back.min(n);
            back = 0;
        }
    }
    match variant {
        1 => {
            if rng.chance(50) {
                pieces.reverse();
            } else if let Some(last) = pieces.pop() {
                pieces.insert(0, last);
            }
        }
        3 => {
            // A later copy of part of fragment k with different bytes (8-byte aligned, strictly
            // inside it).
            let k = rng.range_usize(0, pieces.len().saturating_sub(2));
            if let Some((o, n, _)) = pieces.get(k).cloned() {
                let len = (rng.range_usize(1, (n / 8).saturating_sub(2).max(1)) * 8).min(n);
                let start = o + (n - len) / 16 * 8;
                pieces.insert(k + 1, (start, len, Some(rng.bytes(len))));
            }
        }
        4 => {
            let k = rng.range_usize(0, pieces.len().saturating_sub(1));
            if let Some(p) = pieces.get(k).cloned() {
                pieces.insert(k + 1, p);
            }
        }
        _ => {}
    }
    let mut tt = t;
    for (off, n, data) in pieces {
        let bytes = match data {
            Some(d) => d,
            None => payload.get(off..off + n).ok_or(SynthError::Internal("fragment slice"))?.to_vec(),
        };
        let frag = Frag4 { offset8: (off / 8) as u16, more: off + n < total };
        cx.tr.push(tt, ipv4_frame(ip, proto, Some(frag), &bytes)?);
        tt = tt.add_nanos(gap(n + 20));
    }
    Ok(tt)
}

fn frag4(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut h = cx.host(rng);
    let (mut me, mut peer) = ends(cx, &h, false);
    let variant = rng.range(0, 4);
    let chunk = if rng.chance(80) { 1480 } else { 552 };
    let big = rng.range_usize(1_500, 5_000);
    if rng.chance(55) {
        // UDP query (DF, unfragmented) and a large fragmented answer.
        let qp = cx.port(rng);
        let rp = *rng.pick(&[53u16, 4433, 33333, 27015]).unwrap_or(&53);
        let n = rng.range_usize(20, 120);
        let q = raw::udp_bytes(Pseudo::V4(me.src, me.dst), qp, rp, &rng.bytes(n))?;
        me.id = cx.me.udp_id();
        me.df = true;
        cx.tr.push(t, ipv4_frame(&me, 17, None, &q)?);
        let r = raw::udp_bytes(Pseudo::V4(peer.src, peer.dst), rp, qp, &rng.bytes(big))?;
        peer.id = h.next_id();
        let tr = t.add_nanos(h.rtt + rng.range(100, 3_000) * US);
        fragments(cx, rng, tr, &peer, 17, &r, chunk, variant)?;
    } else {
        // Large echo: the request fragmented by its sender, the reply by the other side; odd
        // variants only from the peer, and a datagram it spoiled gets no answer.
        let outbound = rng.chance(50);
        let id = rng.next_u16();
        let seq = rng.range_u16(1, 20);
        let data = rng.bytes(big);
        let rest = [(id >> 8) as u8, id as u8, (seq >> 8) as u8, seq as u8];
        let (mut a, mut b) = if outbound { (me, peer) } else { (peer, me) };
        a.id = if outbound { rng.next_u16() } else { h.next_id() };
        b.id = if outbound { h.next_id() } else { rng.next_u16() };
        let req = raw::icmpv4_bytes(8, 0, rest, &data);
        let te = fragments(cx, rng, t, &a, 1, &req, chunk, if outbound { 0 } else { variant })?;
        if outbound || variant == 0 || variant == 1 || variant == 3 || variant == 4 {
            let tr = if outbound { te.add_nanos(h.rtt) } else { te.add_nanos(rng.range(40, 400) * US) };
            let rep = raw::icmpv4_bytes(0, 0, rest, &data);
            fragments(cx, rng, tr, &b, 1, &rep, chunk, if outbound { variant } else { 0 })?;
        }
    }
    Ok(())
}

/// GRE header: flags/version word, protocol, then the optional fields present in `flags`.
fn gre_header(
    flags_ver: u16,
    proto: u16,
    csum_body: Option<&[u8]>,
    key: Option<u32>,
    seq: Option<u32>,
    ack: Option<u32>,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&flags_ver.to_be_bytes());
    v.extend_from_slice(&proto.to_be_bytes());
    let csum_at = v.len();
    if csum_body.is_some() {
        v.extend_from_slice(&[0, 0, 0, 0]);
    }
    if let Some(k) = key {
        v.extend_from_slice(&k.to_be_bytes());
    }
    if let Some(s) = seq {
        v.extend_from_slice(&s.to_be_bytes());
    }
    if let Some(a) = ack {
        v.extend_from_slice(&a.to_be_bytes());
    }
    if let Some(body) = csum_body {
        v.extend_from_slice(body);
        let c = raw::fold(raw::sum(0, &v));
        if let Some(d) = v.get_mut(csum_at..csum_at + 2) {
            d.copy_from_slice(&c.to_be_bytes());
        }
    }
    v
}

fn gre(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut h = cx.host(rng);
    let (mut me, mut peer) = ends(cx, &h, false);
    let mut my_id = rng.next_u16();
    let mut tt = t;
    let kind = rng.range(0, 3);
    // PPTP: call ids of both ends, sequence numbers per direction.
    let (my_call, peer_call) = (rng.range_u16(1, 65535), rng.range_u16(1, 65535));
    let (mut my_seq, mut peer_seq) = (0u32, 0u32);
    let (mut my_rcvd, mut peer_rcvd): (Option<u32>, Option<u32>) = (None, None);
    let (my_key, peer_key) = (rng.next_u32(), rng.next_u32());
    let ether = rng.chance(30);
    for _ in 0..rng.range(2, 7) {
        for outbound in [true, false] {
            if !outbound && rng.chance(25) {
                continue;
            }
            let n = rng.range_usize(40, 600);
            let body = rng.bytes(n);
            let (ip, ttl_id) = if outbound {
                my_id = my_id.wrapping_add(1);
                (&mut me, my_id)
            } else {
                (&mut peer, h.next_id())
            };
            ip.id = ttl_id;
            let g: Vec<u8> = match kind {
                0 => gre_header(0, if ether { 0x6558 } else { 0x0800 }, None, None, None, None)
                    .into_iter()
                    .chain(body)
                    .collect(),
                1 => {
                    // Keyed (RFC 2890), sometimes with checksum and sequence number.
                    let key = Some(if outbound { my_key } else { peer_key });
                    if rng.chance(50) {
                        gre_header(0x2000, 0x0800, None, key, None, None).into_iter().chain(body).collect()
                    } else {
                        let seq = if outbound { &mut my_seq } else { &mut peer_seq };
                        *seq += 1;
                        gre_header(0xb000, 0x0800, Some(&body), key, Some(*seq), None)
                    }
                }
                _ => {
                    // PPTP enhanced GRE: K and S bits, version 1, protocol PPP; the key's high half
                    // is the payload length, the low half the receiver's call id; A piggy-backs the
                    // highest sequence number received.
                    let mut ppp = vec![0xff, 0x03, 0x00, 0x21];
                    ppp.extend_from_slice(&body);
                    let (seq, rcvd, call) = if outbound {
                        (&mut my_seq, &mut my_rcvd, peer_call)
                    } else {
                        (&mut peer_seq, &mut peer_rcvd, my_call)
                    };
                    *seq += 1;
                    let ack = rcvd.take();
                    let fv = 0x3001 | if ack.is_some() { 0x0080 } else { 0 };
                    let key = (u32::from(ppp.len() as u16) << 16) | u32::from(call);
                    let s = *seq;
                    if outbound {
                        peer_rcvd = Some(s);
                    } else {
                        my_rcvd = Some(s);
                    }
                    gre_header(fv, 0x880b, None, Some(key), Some(s), ack).into_iter().chain(ppp).collect()
                }
            };
            cx.tr.push(tt, ipv4_frame(ip, 47, None, &g)?);
            tt = tt.add_nanos(if outbound { h.rtt / 2 + 1 } else { rng.range(10, 200) * MS });
        }
    }
    if kind == 2 {
        // A bare acknowledgement (no payload, no S bit) closes the burst.
        if let Some(a) = my_rcvd.take() {
            my_id = my_id.wrapping_add(1);
            me.id = my_id;
            let g = gre_header(0x2081, 0x880b, None, Some(u32::from(peer_call)), None, Some(a));
            cx.tr.push(tt.add_nanos(rng.range(1, 100) * MS), ipv4_frame(&me, 47, None, &g)?);
        }
    }
    Ok(())
}

/// SCTP chunk types (RFC 9260 §3.2).
mod chunk {
    pub(crate) const DATA: u8 = 0;
    pub(crate) const INIT: u8 = 1;
    pub(crate) const INIT_ACK: u8 = 2;
    pub(crate) const SACK: u8 = 3;
    pub(crate) const HEARTBEAT: u8 = 4;
    pub(crate) const HEARTBEAT_ACK: u8 = 5;
    pub(crate) const ABORT: u8 = 6;
    pub(crate) const SHUTDOWN: u8 = 7;
    pub(crate) const SHUTDOWN_ACK: u8 = 8;
    pub(crate) const COOKIE_ECHO: u8 = 10;
    pub(crate) const COOKIE_ACK: u8 = 11;
    pub(crate) const SHUTDOWN_COMPLETE: u8 = 14;
}

/// One SCTP end of an association.
struct SctpEnd {
    ip: Ip4,
    port: u16,
    /// The tag this end chose (the peer puts it in every packet to this end).
    tag: u32,
    /// Next TSN this end sends.
    tsn: u32,
    /// Highest TSN received in order from the peer.
    cum: u32,
    ssn: u16,
    ip_id: u16,
}

fn init_body(tag: u32, tsn: u32, streams: u16, extra: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + extra.len());
    v.extend_from_slice(&tag.to_be_bytes());
    v.extend_from_slice(&106_496u32.to_be_bytes());
    v.extend_from_slice(&streams.to_be_bytes());
    v.extend_from_slice(&streams.to_be_bytes());
    v.extend_from_slice(&tsn.to_be_bytes());
    // Supported address types: IPv4 (RFC 9260 §3.3.2.1.6), padded; ECN capable (0x8000).
    v.extend_from_slice(&[0, 12, 0, 6, 0, 5, 0, 0, 0x80, 0, 0, 4]);
    v.extend_from_slice(extra);
    v
}

struct Sctp {
    ends: [SctpEnd; 2],
}

impl Sctp {
    fn end(&self, i: usize) -> &SctpEnd {
        let [a, b] = &self.ends;
        if i == 0 {
            a
        } else {
            b
        }
    }

    fn end_mut(&mut self, i: usize) -> &mut SctpEnd {
        let [a, b] = &mut self.ends;
        if i == 0 {
            a
        } else {
            b
        }
    }

    /// Sends `chunks` from end `i` (0 = the initiator) with verification tag `vtag` (None = the
    /// peer's tag).
    fn send(
        &mut self,
        cx: &mut Cx,
        t: Time,
        i: usize,
        vtag: Option<u32>,
        chunks: &[u8],
    ) -> Result<(), SynthError> {
        let peer_tag = self.ends.get(1 - i).map(|e| e.tag).unwrap_or_default();
        let peer_port = self.ends.get(1 - i).map(|e| e.port).unwrap_or_default();
        let e = self.ends.get_mut(i).ok_or(SynthError::Internal("sctp end"))?;
        e.ip_id = e.ip_id.wrapping_add(1);
        let mut ip = e.ip;
        // Linux SCTP leaves the IP id 0 on DF packets.
        ip.id = 0;
        let p = sctp_bytes(e.port, peer_port, vtag.unwrap_or(peer_tag), chunks);
        cx.tr.push(t, ipv4_frame(&ip, 132, None, &p)?);
        Ok(())
    }

    fn data(&mut self, i: usize, payload: &[u8]) -> Vec<u8> {
        let Some(e) = self.ends.get_mut(i) else { return Vec::new() };
        let mut v = Vec::with_capacity(12 + payload.len());
        v.extend_from_slice(&e.tsn.to_be_bytes());
        v.extend_from_slice(&0u16.to_be_bytes());
        v.extend_from_slice(&e.ssn.to_be_bytes());
        // PPID 0 (unspecified).
        v.extend_from_slice(&0u32.to_be_bytes());
        v.extend_from_slice(payload);
        e.tsn = e.tsn.wrapping_add(1);
        e.ssn = e.ssn.wrapping_add(1);
        let tsn = e.tsn.wrapping_sub(1);
        if let Some(p) = self.ends.get_mut(1 - i) {
            p.cum = tsn;
        }
        // Flags: B|E (unfragmented user message).
        sctp_chunk(chunk::DATA, 0x03, &v)
    }

    fn sack(&self, i: usize) -> Vec<u8> {
        let cum = self.ends.get(i).map(|e| e.cum).unwrap_or_default();
        let mut v = cum.to_be_bytes().to_vec();
        v.extend_from_slice(&106_496u32.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0]);
        sctp_chunk(chunk::SACK, 0, &v)
    }
}

fn sctp(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let h = cx.host(rng);
    let (me, peer) = ends(cx, &h, true);
    let inside_first = rng.chance(50);
    let server_port = *rng.pick(&[2905u16, 3868, 5060, 9899, 36412, 38412]).unwrap_or(&2905);
    let client_port = if rng.chance(50) { server_port } else { cx.port(rng) };
    let mut mk = |ip: Ip4, port: u16| {
        let tsn = rng.next_u32();
        SctpEnd { ip, port, tag: rng.next_u32().max(1), tsn, cum: 0, ssn: 0, ip_id: 0 }
    };
    let (a, b) = if inside_first {
        (mk(me, client_port), mk(peer, server_port))
    } else {
        (mk(peer, client_port), mk(me, server_port))
    };
    let mut s = Sctp { ends: [a, b] };
    // One-way delay from each end to the capture point: the inside end is at it.
    let hop = |i: usize| -> u64 {
        if (i == 0) == inside_first {
            0
        } else {
            h.rtt
        }
    };
    let think = |rng: &mut Rng| rng.range(20, 400) * US;
    let mut tt = t;
    // Handshake: INIT (tag 0), INIT-ACK with cookie, COOKIE-ECHO, COOKIE-ACK.
    let (a_tag, a_tsn) = (s.end(0).tag, s.end(0).tsn);
    s.send(cx, tt, 0, Some(0), &sctp_chunk(chunk::INIT, 0, &init_body(a_tag, a_tsn, 10, &[])))?;
    let b_tsn = s.end(1).tsn;
    s.end_mut(1).cum = a_tsn.wrapping_sub(1);
    s.end_mut(0).cum = b_tsn.wrapping_sub(1);
    tt = tt.add_nanos(hop(1) + think(rng));
    let n = rng.range_usize(32, 200);
    let cookie = rng.bytes(n);
    let mut cookie_param = vec![0, 7];
    cookie_param.extend_from_slice(&((4 + cookie.len()) as u16).to_be_bytes());
    cookie_param.extend_from_slice(&cookie);
    while cookie_param.len() % 4 != 0 {
        cookie_param.push(0);
    }
    let b_tag = s.end(1).tag;
    s.send(cx, tt, 1, None, &sctp_chunk(chunk::INIT_ACK, 0, &init_body(b_tag, b_tsn, 10, &cookie_param)))?;
    tt = tt.add_nanos(hop(0) + think(rng));
    s.send(cx, tt, 0, None, &sctp_chunk(chunk::COOKIE_ECHO, 0, &cookie))?;
    tt = tt.add_nanos(hop(1) + think(rng));
    s.send(cx, tt, 1, None, &sctp_chunk(chunk::COOKIE_ACK, 0, &[]))?;
    // DATA / SACK exchanges, requests from the initiator.
    for _ in 0..rng.range(1, 4) {
        tt = tt.add_nanos(hop(0) + rng.range(1, 200) * MS);
        let n = rng.range_usize(10, 800);
        let d = s.data(0, &rng.bytes(n));
        s.send(cx, tt, 0, None, &d)?;
        tt = tt.add_nanos(hop(1) + think(rng));
        let n = rng.range_usize(10, 1_200);
        let mut c = s.sack(1);
        c.extend_from_slice(&s.data(1, &rng.bytes(n)));
        s.send(cx, tt, 1, None, &c)?;
        // The delayed SACK (200 ms, RFC 9260 §6.2).
        tt = tt.add_nanos(200 * MS);
        let c = s.sack(0);
        s.send(cx, tt, 0, None, &c)?;
    }
    if rng.chance(40) {
        // Idle: a heartbeat from either end, echoed.
        let i = rng.range_usize(0, 1);
        tt = tt.add_nanos(rng.range(1_000, 5_000) * MS);
        let mut info = vec![0, 1];
        let opaque = rng.bytes(36);
        info.extend_from_slice(&((4 + opaque.len()) as u16).to_be_bytes());
        info.extend_from_slice(&opaque);
        s.send(cx, tt, i, None, &sctp_chunk(chunk::HEARTBEAT, 0, &info))?;
        tt = tt.add_nanos(hop(1 - i) + think(rng));
        s.send(cx, tt, 1 - i, None, &sctp_chunk(chunk::HEARTBEAT_ACK, 0, &info))?;
    }
    let closer = rng.range_usize(0, 1);
    tt = tt.add_nanos(hop(closer) + rng.range(1, 300) * MS);
    if rng.chance(75) {
        // Graceful: SHUTDOWN (cumulative TSN ack), SHUTDOWN-ACK, SHUTDOWN-COMPLETE (T = 0).
        let cum = s.ends.get(closer).map(|e| e.cum).unwrap_or_default();
        s.send(cx, tt, closer, None, &sctp_chunk(chunk::SHUTDOWN, 0, &cum.to_be_bytes()))?;
        tt = tt.add_nanos(hop(1 - closer) + think(rng));
        s.send(cx, tt, 1 - closer, None, &sctp_chunk(chunk::SHUTDOWN_ACK, 0, &[]))?;
        tt = tt.add_nanos(hop(closer) + think(rng));
        s.send(cx, tt, closer, None, &sctp_chunk(chunk::SHUTDOWN_COMPLETE, 0, &[]))?;
    } else {
        // ABORT with a "user initiated abort" cause (12), T = 0: the peer's tag.
        s.send(cx, tt, closer, None, &sctp_chunk(chunk::ABORT, 0, &[0, 12, 0, 4]))?;
    }
    Ok(())
}

fn generic(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut h = cx.host(rng);
    let (mut me, mut peer) = ends(cx, &h, false);
    let proto = if rng.chance(50) { 253 } else { 254 };
    let both = rng.chance(70);
    let mut tt = t;
    for _ in 0..rng.range(2, 6) {
        me.id = rng.next_u16();
        let n = rng.range_usize(8, 300);
        cx.tr.push(tt, ipv4_frame(&me, proto, None, &rng.bytes(n))?);
        if both {
            peer.id = h.next_id();
            let n = rng.range_usize(8, 300);
            cx.tr.push(
                tt.add_nanos(h.rtt + rng.range(50, 900) * US),
                ipv4_frame(&peer, proto, None, &rng.bytes(n))?,
            );
        }
        tt = tt.add_nanos(rng.range(20, 1_500) * MS);
    }
    Ok(())
}

fn udplite(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut h = cx.host(rng);
    let (mut me, mut peer) = ends(cx, &h, true);
    let my_port = cx.port(rng);
    let peer_port = *rng.pick(&[5004u16, 5060, 9000, 33333]).unwrap_or(&5004);
    let coverage = if rng.chance(60) { 8 } else { 0 };
    let reply = rng.chance(60);
    let outbound = rng.chance(60);
    let mut tt = t;
    for _ in 0..rng.range(2, 8) {
        let n = rng.range_usize(20, 400);
        let (a, ap, bp) =
            if outbound { (&mut me, my_port, peer_port) } else { (&mut peer, peer_port, my_port) };
        a.id = if outbound { rng.next_u16() } else { h.next_id() };
        let p = raw::udplite_bytes(Pseudo::V4(a.src, a.dst), ap, bp, coverage, &rng.bytes(n))?;
        cx.tr.push(tt, ipv4_frame(a, 136, None, &p)?);
        if reply {
            let (b, bp2, ap2) =
                if outbound { (&mut peer, peer_port, my_port) } else { (&mut me, my_port, peer_port) };
            b.id = if outbound { h.next_id() } else { rng.next_u16() };
            let n = rng.range_usize(20, 400);
            let r = raw::udplite_bytes(Pseudo::V4(b.src, b.dst), bp2, ap2, coverage, &rng.bytes(n))?;
            let back = if outbound { h.rtt } else { rng.range(50, 900) * US };
            cx.tr.push(tt.add_nanos(back + rng.range(20, 500) * US), ipv4_frame(b, 136, None, &r)?);
        }
        tt = tt.add_nanos(rng.range(20, 700) * MS);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::type_complexity)]
mod tests {
    use super::*;
    use crate::check::{check_tcp, reassemble, tcp_segments, verify_checksums};
    use crate::Frame;
    use std::collections::{BTreeMap, BTreeSet};

    fn gen(seed: u64) -> Vec<Frame> {
        generate_logged(seed, crate::DEFAULT_START).unwrap().0
    }

    /// (protocol, L4 bytes) of unfragmented IPv4 frames.
    fn l4(f: &Frame) -> Option<(u8, &[u8])> {
        let d = &f.data;
        if d[12..14] != [8, 0] || u16::from_be_bytes([d[20], d[21]]) & 0x3fff != 0 {
            return None;
        }
        let total = usize::from(u16::from_be_bytes([d[16], d[17]]));
        Some((d[23], &d[34..14 + total]))
    }

    #[test]
    fn sizes_checksums_decoding_and_order() {
        let (mut rebuilt, mut dropped) = (0, 0);
        for seed in 0..30 {
            let frames = gen(seed);
            assert!((100..=400).contains(&frames.len()), "seed {seed}: {}", frames.len());
            assert!(frames.windows(2).all(|w| w[0].ts <= w[1].ts));
            for (i, f) in frames.iter().enumerate() {
                verify_checksums(&f.data).unwrap_or_else(|e| panic!("seed {seed} frame {i}: {e}"));
                etherparse::SlicedPacket::from_ethernet(&f.data).unwrap();
                assert!(f.data.len() <= 1514, "seed {seed} frame {i}");
            }
            let (done, discarded) = reassemble(&frames);
            assert!(done.iter().all(|r| r.ok && !r.v6 && (r.proto == 1 || r.proto == 17)), "seed {seed}");
            rebuilt += done.len();
            dropped += discarded;
            // The ordinary TCP dialogs stay protocol-correct.
            check_tcp(&frames).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
        assert!(rebuilt > 30 && dropped > 3, "{rebuilt} rebuilt, {dropped} discarded");
        assert_eq!(gen(3), gen(3));
        assert_ne!(gen(3), gen(4));
    }

    #[test]
    fn sctp_associations_are_complete_and_tagged() {
        let mut chunks = BTreeSet::new();
        let mut assocs = 0;
        for seed in 0..30 {
            // Per association (ports): the init tags of both ends.
            let mut tags: BTreeMap<((u8, u8), u16, u16), (u32, u32)> = BTreeMap::new();
            for f in gen(seed) {
                let Some((132, p)) = l4(&f) else { continue };
                // Ends told apart by the last address byte and port (both may use the same port).
                let (sp, dp) = (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]]));
                let (sa, da) = (f.data[29], f.data[33]);
                let vtag = u32::from_be_bytes(p[4..8].try_into().unwrap());
                let ty = p[12];
                chunks.insert(ty);
                match ty {
                    1 => {
                        assert_eq!(vtag, 0);
                        tags.insert(
                            ((sa, da), sp, dp),
                            (u32::from_be_bytes(p[16..20].try_into().unwrap()), 0),
                        );
                        assocs += 1;
                    }
                    2 => {
                        let t = tags.get_mut(&((da, sa), dp, sp)).unwrap();
                        assert_eq!(vtag, t.0);
                        t.1 = u32::from_be_bytes(p[16..20].try_into().unwrap());
                    }
                    _ => {
                        // Every other packet carries the receiver's tag.
                        let want = match (tags.get(&((sa, da), sp, dp)), tags.get(&((da, sa), dp, sp))) {
                            (Some(t), _) => t.1,
                            (_, Some(t)) => t.0,
                            _ => panic!("seed {seed}: chunk {ty} outside an association"),
                        };
                        assert_eq!(vtag, want, "seed {seed} chunk {ty}");
                    }
                }
            }
        }
        assert!(assocs > 10);
        for t in [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 14] {
            assert!(chunks.contains(&t), "chunk {t}: {chunks:?}");
        }
    }

    #[test]
    fn gre_udplite_generic_and_fragment_variants_are_covered() {
        let mut gre = BTreeSet::new();
        let mut cov = BTreeSet::new();
        let mut protos = BTreeSet::new();
        let mut frag = BTreeMap::<&str, usize>::new();
        for seed in 0..30 {
            let frames = gen(seed);
            let mut seen: BTreeMap<(u16, [u8; 4]), Vec<(usize, usize, Vec<u8>)>> = BTreeMap::new();
            for f in &frames {
                let d = &f.data;
                if d[12..14] == [8, 0] && u16::from_be_bytes([d[20], d[21]]) & 0x3fff != 0 {
                    let fo = u16::from_be_bytes([d[20], d[21]]);
                    let total = usize::from(u16::from_be_bytes([d[16], d[17]]));
                    let (o, b) = (usize::from(fo & 0x1fff) * 8, d[34..14 + total].to_vec());
                    let key = (u16::from_be_bytes([d[18], d[19]]), d[26..30].try_into().unwrap());
                    let list = seen.entry(key).or_default();
                    if list.is_empty() && o > 0 {
                        *frag.entry("out_of_order").or_default() += 1;
                    }
                    for (lo, ln, lb) in list.iter() {
                        let (e, le) = (o + b.len(), lo + ln);
                        if (o, b.len()) == (*lo, *ln) && b == *lb {
                            *frag.entry("duplicate").or_default() += 1;
                        } else if o >= *lo && e <= le && b[..] != lb[o - lo..e - lo] {
                            *frag.entry("conflict_inside").or_default() += 1;
                        } else if o < le && e > *lo && !(o >= *lo && e <= le) {
                            *frag.entry("partial_overlap").or_default() += 1;
                        }
                    }
                    list.push((o, b.len(), b));
                    continue;
                }
                let Some((proto, p)) = l4(f) else { continue };
                protos.insert(proto);
                match proto {
                    47 => {
                        gre.insert((p[0] & 0xb0, p[1] & 0x87, u16::from_be_bytes([p[2], p[3]])));
                    }
                    136 => {
                        cov.insert(u16::from_be_bytes([p[4], p[5]]));
                    }
                    _ => {}
                }
            }
        }
        for p in [1, 6, 17, 47, 132, 136] {
            assert!(protos.contains(&p), "protocol {p}: {protos:?}");
        }
        assert!(protos.contains(&253) && protos.contains(&254));
        // v0 plain (IPv4 and Ethernet inside), keyed, C|K|S; v1 PPTP with and without ack.
        for g in [
            (0, 0, 0x0800),
            (0, 0, 0x6558),
            (0x20, 0, 0x0800),
            (0xb0, 0, 0x0800),
            (0x30, 0x81, 0x880b),
            (0x30, 0x01, 0x880b),
            (0x20, 0x81, 0x880b),
        ] {
            assert!(gre.contains(&g), "gre {g:x?}: {gre:x?}");
        }
        assert_eq!(cov, BTreeSet::from([0, 8]));
        for k in ["out_of_order", "duplicate", "conflict_inside", "partial_overlap"] {
            assert!(frag.get(k).copied().unwrap_or(0) > 0, "{k}: {frag:?}");
        }
        let _ = tcp_segments(&[]);
    }
}
