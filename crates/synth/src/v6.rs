//! The "random6" scenario: the "random" episodes over IPv6, plus IPv6-only episodes (extension
//! headers, fragments, neighbour discovery, ICMPv6 errors quoting packets with extension headers).
//!
//! # Topology
//! The same hosts as "random", each with the IPv6 address its IPv4 address maps to ([`map4`]; the
//! decimal last octet is written as the last hex group so the text reads the same):
//! * our host: wan0 2001:db8:0:1::10 (192.0.2.10; gateway 2001:db8:0:1::1, MAC as in IPv4),
//!   lan0 2001:db8:0:2::1 (10.1.0.1);
//! * LAN hosts 2001:db8:0:2::2 – 2001:db8:0:2::50 (10.1.0.2-50, same MACs);
//! * remote hosts 2001:db8:100::/48 (198.51.100.x → 2001:db8:100::x) and 2001:db8:200::/48
//!   (203.0.113.x → 2001:db8:200::x; routers 2001:db8:200::1-5);
//! * link-local addresses `fe80::…ff:fe…` (modified EUI-64 of the MACs) for neighbour discovery.
//!
//! Meant for a one-interface host (`--local 2001:db8:0:1::10/64`) and a router host model
//! (wan0 2001:db8:0:1::10/64, lan0 2001:db8:0:2::1/64, default route via 2001:db8:0:1::1).
//!
//! # How the IPv4 episodes become IPv6
//! Episodes run unchanged on a [`Trace`] in IPv6 mode: every IPv4 frame pushed is translated
//! ([`translate`]): addresses mapped, TTL → hop limit, no fragmentation fields (DF is meaningless),
//! TCP/UDP checksums recomputed over the IPv6 pseudo-header, a flow label per direction of each
//! flow (hash of the flow, like Linux auto flow labels; 0 on ICMPv6 errors), and ICMP turned into
//! ICMPv6: echo 8/0 → 128/129; port / host / administratively prohibited unreachable → type 1 code
//! 4 / 3 / 1; fragmentation needed → packet too big (type 2) with the same MTU (1280 or 1400); time
//! exceeded → type 3. An ICMPv6 error quotes as much of the *translated* original as fits in 1280
//! bytes (RFC 4443 §2.4(c)), found by matching the IPv4 quote against the originals; a quote of a
//! packet never sent (unknown or forged flows) is translated header by header. TCP ends use MSS
//! 1440 (1380) instead of 1460 (1400), so segments stay within a 1500-byte MTU.
//!
//! # IPv6-only episodes
//! * `v6_ext`: a TCP dialog (sometimes with path-MTU discovery), UDP exchange, echo or ICMP error
//!   episode in which the inside endpoint's packets carry hop-by-hop options, destination options
//!   or both (PadN only), and sometimes the peer's a destination options header; errors then quote
//!   the extension headers.
//! * `v6_ptb_ext`: a TCP dialog whose inside packets carry destination options; its first full-sized
//!   segment draws a packet too big (MTU 1280) from router 2001:db8:200::1 quoting it with the
//!   extension header, and the data is re-sent in smaller segments (on the LAN side, a UDP
//!   exchange with a port unreachable quoting a datagram with destination options instead).
//! * `v6_unknown_ext_error`: unreachable / time exceeded quoting a datagram with a hop-by-hop or
//!   destination options header that was never sent (unknown flow).
//! * `v6_frag`: a fragmented datagram (fragment header; sometimes after a hop-by-hop header,
//!   sometimes with destination options inside the fragmentable part): a UDP response of 1.5-4 kB
//!   to a query, or a large echo request/reply, sent in order, out of order, with a partially
//!   overlapping fragment (RFC 5722: the datagram is discarded), with an exact duplicate, or as an
//!   atomic fragment (offset 0, M = 0, RFC 6946). Non-final fragments are multiples of 8 bytes.
//! * `v6_nd`: neighbour solicitation / advertisement on the side of the inside endpoint (address
//!   resolution to the solicited-node multicast group, unicast reachability probes, an unsolicited
//!   advertisement to ff02::1), hop limit 255, link-layer address options.
//!
//! Routing headers are left out: type 0 is deprecated and dropped, type 2 with segments left 0 is
//! discarded by Linux and type 4 (SRv6) is dropped where seg6 is disabled (the default), so none of
//! them is harmless to the local host.

use crate::packet::{
    ip_datagram, Ip4, Trace, V6State, FW_LAN_IP, FW_LAN_MAC, GW_IP, GW_MAC, OUR_IP, OUR_MAC,
};
use crate::random::{self, Cx, Episode, EpisodeFn, Mode};
use crate::raw::{self, eth_frame, icmpv6_bytes, ipv6_datagram, Ext, Ip6, Pseudo};
use crate::rng::Rng;
use crate::tcp::{CloseStyle, Side, MS, US};
use crate::world::{run_dialog, Step};
use crate::SynthError;
use wire::Time;

/// Most bytes of the offending packet an ICMPv6 error carries (1280 − 40 − 8).
pub(crate) const QUOTE_MAX: usize = 1232;

/// Writes the decimal digits of `d` as a hex group: 10 → 0x10, 254 → 0x254.
fn dec_as_hex(d: u8) -> u16 {
    let (h, t, o) = (u16::from(d / 100), u16::from(d / 10 % 10), u16::from(d % 10));
    (h << 8) | (t << 4) | o
}

fn addr6(prefix: [u16; 4], last: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    for (i, g) in prefix.iter().enumerate() {
        if let Some(d) = a.get_mut(i * 2..i * 2 + 2) {
            d.copy_from_slice(&g.to_be_bytes());
        }
    }
    if let Some(d) = a.get_mut(14..16) {
        d.copy_from_slice(&last.to_be_bytes());
    }
    a
}

/// The IPv6 address of a host of the "random" topology (see the module docs); other addresses
/// are embedded in 2001:db8:ff::/96.
pub(crate) fn map4(ip: [u8; 4]) -> [u8; 16] {
    match ip {
        [192, 0, 2, d] => addr6([0x2001, 0xdb8, 0, 1], dec_as_hex(d)),
        [10, 1, 0, d] => addr6([0x2001, 0xdb8, 0, 2], dec_as_hex(d)),
        [198, 51, 100, d] => addr6([0x2001, 0xdb8, 0x100, 0], dec_as_hex(d)),
        [203, 0, 113, d] => addr6([0x2001, 0xdb8, 0x200, 0], dec_as_hex(d)),
        [a, b, c, d] => {
            let mut v = addr6([0x2001, 0xdb8, 0xff, 0], 0);
            v[12..16].copy_from_slice(&[a, b, c, d]);
            v
        }
    }
}

/// The link-local address of a MAC (modified EUI-64, RFC 4291 appendix A).
pub(crate) fn link_local(mac: [u8; 6]) -> [u8; 16] {
    let [a, b, c, d, e, f] = mac;
    [0xfe, 0x80, 0, 0, 0, 0, 0, 0, a ^ 2, b, c, 0xff, 0xfe, d, e, f]
}

/// The solicited-node multicast group of `target` (ff02::1:ffXX:XXXX).
fn solicited_node(target: [u8; 16]) -> [u8; 16] {
    let mut g = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    g[13..16].copy_from_slice(&target[13..16]);
    g
}

/// The Ethernet multicast MAC of an IPv6 group (33:33 + low 32 bits, RFC 2464 §7).
fn multicast_mac(group: [u8; 16]) -> [u8; 6] {
    [0x33, 0x33, group[12], group[13], group[14], group[15]]
}

/// Extension headers added to the translated packets of the running episode (not to ICMP errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtPlan {
    /// The inside endpoint (IPv4 address before translation).
    pub inside: [u8; 4],
    /// Headers on the inside endpoint's packets.
    pub inside_ext: Vec<Ext>,
    /// Headers on its peers' packets.
    pub other_ext: Vec<Ext>,
}

/// The IPv6 datagram of an Ethernet frame (without link header or padding).
pub(crate) fn ip6_datagram(frame: &[u8]) -> Option<&[u8]> {
    if frame.get(12..14)? != [0x86, 0xdd] {
        return None;
    }
    let ip = frame.get(crate::packet::ETH_LEN..)?;
    let plen = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    ip.get(..40 + plen)
}

/// FNV-1a of a flow's direction, folded to a 20-bit flow label (never 0).
fn flow_label(src: &[u8; 16], dst: &[u8; 16], proto: u8, ports: &[u8]) -> u32 {
    let mut h = 0x811c_9dc5u32;
    for b in src.iter().chain(dst.iter()).chain(std::iter::once(&proto)).chain(ports.iter()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h ^ (h >> 20)) & 0xf_ffff | 1
}

fn bad() -> SynthError {
    SynthError::Internal("untranslatable IPv4 frame")
}

fn a4(d: &[u8], at: usize) -> Result<[u8; 4], SynthError> {
    d.get(at..at + 4).and_then(|s| <[u8; 4]>::try_from(s).ok()).ok_or_else(bad)
}

/// ICMPv4 error (type, code, bytes 4-7) → ICMPv6 error (type, code, bytes 4-7).
fn error_type(ty: u8, code: u8, rest: [u8; 4]) -> Result<(u8, u8, [u8; 4]), SynthError> {
    Ok(match (ty, code) {
        (3, 3) => (1, 4, [0; 4]),
        (3, 1) => (1, 3, [0; 4]),
        (3, 13) | (3, 9) | (3, 10) => (1, 1, [0; 4]),
        // Fragmentation needed: next-hop MTU in bytes 6-7 → packet too big with a 32-bit MTU.
        (3, 4) => (2, 0, [0, 0, rest[2], rest[3]]),
        (3, _) => (1, 0, [0; 4]),
        (11, c) => (3, c, [0; 4]),
        _ => return Err(bad()),
    })
}

/// The IPv6 form of an ICMP error's IPv4 quote: the translated original if it was sent (as much
/// as fits), else a header-by-header translation of the quote.
fn quote6(quoted: &[u8], frames: &[(Time, Vec<u8>)], st: &V6State) -> Result<Vec<u8>, SynthError> {
    if quoted.len() >= 28 {
        for (i, o) in st.orig.iter().enumerate().rev() {
            if ip_datagram(o).is_some_and(|d| d.starts_with(quoted)) {
                let d = frames.get(i).and_then(|(_, f)| ip6_datagram(f)).ok_or_else(bad)?;
                return Ok(d.get(..d.len().min(QUOTE_MAX)).unwrap_or_default().to_vec());
            }
        }
    }
    let ihl = usize::from(quoted.first().ok_or_else(bad)? & 0x0f) * 4;
    let total =
        usize::from(u16::from_be_bytes([*quoted.get(2).ok_or_else(bad)?, *quoted.get(3).ok_or_else(bad)?]));
    let proto = match *quoted.get(9).ok_or_else(bad)? {
        1 => 58,
        p => p,
    };
    let src = map4(a4(quoted, 12)?);
    let dst = map4(a4(quoted, 16)?);
    let ttl = *quoted.get(8).ok_or_else(bad)?;
    let body = quoted.get(ihl..).ok_or_else(bad)?;
    let mut v = ipv6_datagram(&Ip6 { src, dst, hop: ttl, tclass: 0, flow: 0 }, &[], proto, body)?;
    // The quoted packet was longer than what is quoted: keep its real payload length.
    let plen = u16::try_from(total.saturating_sub(ihl)).map_err(|_| bad())?;
    if let Some(d) = v.get_mut(4..6) {
        d.copy_from_slice(&plen.to_be_bytes());
    }
    Ok(v)
}

/// Translates one IPv4 frame to IPv6 (see the module docs); non-IPv4 frames pass unchanged.
pub(crate) fn translate(
    frame: &[u8],
    frames: &[(Time, Vec<u8>)],
    st: &V6State,
) -> Result<Vec<u8>, SynthError> {
    if frame.get(12..14) != Some(&[0x08, 0x00][..]) {
        return Ok(frame.to_vec());
    }
    let d = ip_datagram(frame).ok_or_else(bad)?;
    let ihl = usize::from(d.first().ok_or_else(bad)? & 0x0f) * 4;
    let frag = u16::from_be_bytes([*d.get(6).ok_or_else(bad)?, *d.get(7).ok_or_else(bad)?]);
    if frag & 0x3fff != 0 {
        return Err(SynthError::Internal("IPv4 fragment in IPv6 mode"));
    }
    let ttl = *d.get(8).ok_or_else(bad)?;
    let proto = *d.get(9).ok_or_else(bad)?;
    let (s4, d4) = (a4(d, 12)?, a4(d, 16)?);
    let (src, dst) = (map4(s4), map4(d4));
    let l4 = d.get(ihl..).ok_or_else(bad)?;
    let (next, body, flow, error) = match proto {
        6 | 17 => {
            let mut v = l4.to_vec();
            let at = if proto == 6 { 16 } else { 6 };
            v.get_mut(at..at + 2).ok_or_else(bad)?.fill(0);
            let mut c = raw::l4_checksum(Pseudo::V6(src, dst), proto, &v);
            if proto == 17 && c == 0 {
                c = 0xffff;
            }
            v.get_mut(at..at + 2).ok_or_else(bad)?.copy_from_slice(&c.to_be_bytes());
            let fl = flow_label(&src, &dst, proto, l4.get(..4).unwrap_or_default());
            (proto, v, fl, false)
        }
        1 => {
            let ty = *l4.first().ok_or_else(bad)?;
            let code = *l4.get(1).ok_or_else(bad)?;
            let rest: [u8; 4] = l4.get(4..8).and_then(|r| r.try_into().ok()).ok_or_else(bad)?;
            let payload = l4.get(8..).unwrap_or_default();
            match ty {
                8 | 0 => {
                    let t6 = if ty == 8 { 128 } else { 129 };
                    let fl = flow_label(&src, &dst, 58, &rest[..2]);
                    (58, icmpv6_bytes(src, dst, t6, code, rest, payload), fl, false)
                }
                _ => {
                    let (t6, c6, r6) = error_type(ty, code, rest)?;
                    let q = quote6(payload, frames, st)?;
                    (58, icmpv6_bytes(src, dst, t6, c6, r6, &q), 0, true)
                }
            }
        }
        p => (p, l4.to_vec(), flow_label(&src, &dst, p, &[]), false),
    };
    let exts: &[Ext] = match &st.ext {
        Some(plan) if !error => {
            if s4 == plan.inside {
                &plan.inside_ext
            } else {
                &plan.other_ext
            }
        }
        _ => &[],
    };
    let dg = ipv6_datagram(&Ip6 { src, dst, hop: ttl, tclass: 0, flow }, exts, next, &body)?;
    let smac: [u8; 6] = frame.get(6..12).and_then(|m| m.try_into().ok()).ok_or_else(bad)?;
    let dmac: [u8; 6] = frame.get(0..6).and_then(|m| m.try_into().ok()).ok_or_else(bad)?;
    let outbound = smac == OUR_MAC || smac == FW_LAN_MAC;
    Ok(eth_frame((smac, dmac), 0x86dd, &dg, outbound))
}

/// Episode table of "random6": the "random" kinds (a little less of each) and the IPv6-only ones.
pub(crate) const KINDS6: &[(u64, &str, EpisodeFn)] = &[
    (9, "tcp_plain", random::tcp_plain),
    (4, "tcp_retrans", random::tcp_retrans),
    (4, "tcp_loss_or_reorder", random::tcp_loss_or_reorder),
    (3, "tcp_zero_window", random::tcp_zero_window),
    (3, "tcp_out_of_window", random::tcp_out_of_window),
    (5, "tcp_rst", random::tcp_rst),
    (3, "tcp_syn_on_established", random::tcp_syn_on_established),
    (3, "tcp_simultaneous_open", random::tcp_simultaneous_open),
    (3, "tcp_midstream", random::tcp_midstream),
    (5, "tcp_fin_variant", random::tcp_fin_variant),
    (8, "udp", random::udp_episode),
    (7, "icmp_echo", random::icmp_echo_episode),
    (9, "icmp_error", random::icmp_error_episode),
    (4, "other_proto", random::other_proto),
    (8, "v6_ext", v6_ext),
    (5, "v6_ptb_ext", v6_ptb_ext),
    (3, "v6_unknown_ext_error", v6_unknown_ext_error),
    (9, "v6_frag", v6_frag),
    (5, "v6_nd", v6_nd),
];

/// Generates the random6 scenario and its episode list.
pub(crate) fn generate_logged(
    seed: u64,
    start: Time,
) -> Result<(Vec<crate::Frame>, Vec<Episode>), SynthError> {
    random::run(Rng::new(seed ^ 0x0a4d_0006_0000_0000), start, KINDS6, Trace::new_v6(), 1440)
}

fn pick_exts(rng: &mut Rng) -> Vec<Ext> {
    match rng.range(0, 2) {
        0 => vec![Ext::HopByHop],
        1 => vec![Ext::DestOpts],
        _ => vec![Ext::HopByHop, Ext::DestOpts],
    }
}

fn v6_ext(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let inside_ext = pick_exts(rng);
    let other_ext = if rng.chance(40) { vec![Ext::DestOpts] } else { Vec::new() };
    cx.ext = (8 * inside_ext.len() as u32, 8 * other_ext.len() as u32);
    cx.tr.set_ext(Some(ExtPlan { inside: cx.me.ip, inside_ext, other_ext }));
    let f: EpisodeFn = match rng.range(0, 3) {
        0 => random::tcp_plain,
        1 => random::udp_episode,
        2 => random::icmp_echo_episode,
        _ => random::icmp_error_episode,
    };
    let r = f(cx, rng, t);
    cx.tr.set_ext(None);
    cx.ext = (0, 0);
    r
}

fn v6_ptb_ext(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    cx.tr.set_ext(Some(ExtPlan { inside: cx.me.ip, inside_ext: vec![Ext::DestOpts], other_ext: Vec::new() }));
    cx.ext = (8, 0);
    let r = if cx.mode == Mode::LanFw {
        // No router between lan0 and a LAN host: a port unreachable quoting the datagram instead.
        random::icmp_error_episode(cx, rng, t)
    } else {
        let mut c = cx.conn(rng);
        let n = c.mss_after_handshake(c.local_side()) as usize;
        let steps = [
            Step::Pmtu {
                data: rng.bytes(n),
                think_us: rng.range(100, 5_000),
                router: [203, 0, 113, 1],
                router_ttl: 250,
                router_ip_id: rng.next_u16(),
                mtu: 1280,
            },
            random::msg(rng, Side::B, 1, 3_000),
            Step::Close { first: Side::A, style: CloseStyle::Combined, think_us: rng.range(1_000, 100_000) },
        ];
        run_dialog(&mut cx.tr, &mut c, t, &steps).map(|_| ())
    };
    cx.tr.set_ext(None);
    cx.ext = (0, 0);
    r
}

/// Frame from `src4` to `dst4` (IPv4 roles decide MACs and padding) as native IPv6.
#[allow(clippy::too_many_arguments)]
fn push6(
    cx: &mut Cx,
    t: Time,
    (src4, dst4): ([u8; 4], [u8; 4]),
    hop: u8,
    flow: u32,
    exts: &[Ext],
    proto: u8,
    l4: &[u8],
) -> Result<crate::packet::FrameId, SynthError> {
    let ip4 = Ip4 { src: src4, dst: dst4, ttl: hop, id: 0, df: false, tos: 0 };
    let ip = Ip6 { src: map4(src4), dst: map4(dst4), hop, tclass: 0, flow };
    let dg = ipv6_datagram(&ip, exts, proto, l4)?;
    Ok(cx.tr.push_native(t, eth_frame(ip4.macs(), 0x86dd, &dg, ip4.outbound())))
}

fn v6_unknown_ext_error(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let h = cx.host(rng);
    let me = cx.me.ip;
    let (src, dst) = (map4(me), map4(h.ip));
    let n = rng.range_usize(10, 300);
    let udp = raw::udp_bytes(Pseudo::V6(src, dst), cx.port(rng), rng.range_u16(1024, 65535), &rng.bytes(n))?;
    let exts = pick_exts(rng);
    let ghost = ipv6_datagram(
        &Ip6 { src, dst, hop: cx.me.ttl, tclass: 0, flow: rng.next_u32() & 0xf_ffff },
        &exts,
        17,
        &udp,
    )?;
    let quote = ghost.get(..ghost.len().min(QUOTE_MAX)).unwrap_or_default().to_vec();
    let (from, ty, code, hop) = if rng.chance(50) || cx.mode == Mode::LanFw {
        (h.ip, 1, 4, h.ttl)
    } else {
        ([203, 0, 113, 2], 3, 0, 253)
    };
    let l4 = icmpv6_bytes(map4(from), src, ty, code, [0; 4], &quote);
    push6(cx, t, (from, me), hop, 0, &[], 58, &l4)?;
    Ok(())
}

/// Sends the fragmentable part `frag_part` (starting with protocol `proto`) as fragments of at
/// most `chunk` bytes (a multiple of 8) per `variant` (0 in order, 1 out of order, 2 partial
/// overlap, 3 exact duplicate, 4 atomic fragment). Returns the time after the last fragment.
#[allow(clippy::too_many_arguments)]
fn send_fragments(
    cx: &mut Cx,
    t: Time,
    pair: ([u8; 4], [u8; 4]),
    hop: u8,
    unfrag: &[Ext],
    proto: u8,
    frag_part: &[u8],
    chunk: usize,
    variant: u64,
    id: u32,
    rng: &mut Rng,
) -> Result<Time, SynthError> {
    let flow = flow_label(&map4(pair.0), &map4(pair.1), proto, frag_part.get(..4).unwrap_or_default());
    let total = frag_part.len();
    let mut pieces: Vec<(usize, usize)> = Vec::new();
    if variant == 4 {
        pieces.push((0, total));
    } else {
        // Partial overlap: the second fragment starts 8-64 bytes inside the first (same bytes,
        // RFC 5722), every fragment still within the MTU.
        let mut back = if variant == 2 { rng.range_usize(1, 8) * 8 } else { 0 };
        let mut off = 0;
        while off < total {
            let n = chunk.min(total - off);
            pieces.push((off, n));
            off += n;
            if off < total {
                off -= back.min(n);
                back = 0;
            }
        }
    }
    match variant {
        1 => {
            // Out of order: the last fragment overtakes the others (or the order is reversed).
            if rng.chance(50) {
                pieces.reverse();
            } else if let Some(last) = pieces.pop() {
                pieces.insert(0, last);
            }
        }
        3 => {
            let k = rng.range_usize(0, pieces.len().saturating_sub(1));
            if let Some(p) = pieces.get(k).copied() {
                pieces.insert(k + 1, p);
            }
        }
        _ => {}
    }
    let mut tt = t;
    for (off, n) in pieces {
        let more = variant != 4 && off + n < total;
        let mut exts = unfrag.to_vec();
        exts.push(Ext::Fragment { offset8: (off / 8) as u16, more, id });
        let data = frag_part.get(off..off + n).ok_or(SynthError::Internal("fragment slice"))?;
        push6(cx, tt, pair, hop, flow, &exts, proto, data)?;
        tt = tt.add_nanos((n as u64 + 120) * 80 + rng.range(5, 60) * US);
    }
    Ok(tt)
}

fn v6_frag(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let h = cx.host(rng);
    let me = cx.me.ip;
    let (me6, peer6) = (map4(me), map4(h.ip));
    let variant = rng.range(0, 4);
    let unfrag = if rng.chance(20) { vec![Ext::HopByHop] } else { Vec::new() };
    let inner_opts = rng.chance(20);
    let mtu = if rng.chance(50) { 1280 } else { 1500 };
    let chunk = (mtu - 40 - 8 - unfrag.len() * 8) / 8 * 8;
    // The fragmentable part: optional destination options, then the upper-layer message.
    let frag_part = |proto: u8, l4: Vec<u8>| -> (u8, Vec<u8>) {
        if inner_opts {
            let mut v = vec![proto, 0, 1, 4, 0, 0, 0, 0];
            v.extend_from_slice(&l4);
            (60, v)
        } else {
            (proto, l4)
        }
    };
    let big = if variant == 4 { rng.range_usize(20, 400) } else { rng.range_usize(1_500, 4_000) };
    if rng.chance(50) {
        // UDP: a query from the inside endpoint, a (fragmented) response from the peer.
        let (qp, rp) = (cx.port(rng), *rng.pick(&[53u16, 443, 4433, 33333]).unwrap_or(&53));
        let n = rng.range_usize(20, 120);
        let q = raw::udp_bytes(Pseudo::V6(me6, peer6), qp, rp, &rng.bytes(n))?;
        let qflow = flow_label(&me6, &peer6, 17, q.get(..4).unwrap_or_default());
        push6(cx, t, (me, h.ip), cx.me.ttl, qflow, &[], 17, &q)?;
        let resp = raw::udp_bytes(Pseudo::V6(peer6, me6), rp, qp, &rng.bytes(big))?;
        let (proto, part) = frag_part(17, resp);
        let tr = t.add_nanos(h.rtt + rng.range(100, 3_000) * US);
        send_fragments(
            cx,
            tr,
            (h.ip, me),
            h.ttl,
            &unfrag,
            proto,
            &part,
            chunk,
            variant,
            rng.next_u32(),
            rng,
        )?;
    } else {
        // Echo with a large payload, fragmented by the sender's stack: in order from the inside
        // endpoint, per the variant from the peer (an overlapped request gets no reply).
        let id = rng.next_u16();
        let payload = rng.bytes(big);
        let outbound = rng.chance(50);
        let (a, b, a_hop, b_hop) =
            if outbound { (me, h.ip, cx.me.ttl, h.ttl) } else { (h.ip, me, h.ttl, cx.me.ttl) };
        let (a6, b6) = (map4(a), map4(b));
        let rest = [(id >> 8) as u8, id as u8, 0, 1];
        let req = icmpv6_bytes(a6, b6, 128, 0, rest, &payload);
        let (proto, part) = frag_part(58, req);
        let (req_variant, req_unfrag) =
            if outbound { (if variant == 4 { 4 } else { 0 }, Vec::new()) } else { (variant, unfrag.clone()) };
        let te = send_fragments(
            cx,
            t,
            (a, b),
            a_hop,
            &req_unfrag,
            proto,
            &part,
            chunk,
            req_variant,
            rng.next_u32(),
            rng,
        )?;
        if outbound || variant != 2 {
            let tr = if outbound { te.add_nanos(h.rtt) } else { te.add_nanos(rng.range(40, 400) * US) };
            let rep = icmpv6_bytes(b6, a6, 129, 0, rest, &payload);
            let (proto, part) = frag_part(58, rep);
            let (rep_variant, rep_unfrag) =
                if outbound { (variant, unfrag) } else { (if variant == 4 { 4 } else { 0 }, Vec::new()) };
            send_fragments(
                cx,
                tr,
                (b, a),
                b_hop,
                &rep_unfrag,
                proto,
                &part,
                chunk,
                rep_variant,
                rng.next_u32(),
                rng,
            )?;
        }
    }
    Ok(())
}

/// Neighbour solicitation (135) or advertisement (136) ICMPv6 body.
fn nd(src: [u8; 16], dst: [u8; 16], ty: u8, flags: u8, target: [u8; 16], mac: Option<[u8; 6]>) -> Vec<u8> {
    let mut body = target.to_vec();
    if let Some(m) = mac {
        // Source (1) or target (2) link-layer address option, length 1 (8 bytes).
        body.extend_from_slice(&[if ty == 135 { 1 } else { 2 }, 1]);
        body.extend_from_slice(&m);
    }
    icmpv6_bytes(src, dst, ty, 0, [flags, 0, 0, 0], &body)
}

fn push_nd(
    cx: &mut Cx,
    t: Time,
    eth: ([u8; 6], [u8; 6]),
    src: [u8; 16],
    dst: [u8; 16],
    body: &[u8],
) -> Result<(), SynthError> {
    let dg = ipv6_datagram(&Ip6 { src, dst, hop: 255, tclass: 0, flow: 0 }, &[], 58, body)?;
    let outbound = eth.0 == OUR_MAC || eth.0 == FW_LAN_MAC;
    cx.tr.push_native(t, eth_frame(eth, 0x86dd, &dg, outbound));
    Ok(())
}

fn v6_nd(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    // The neighbour on the inside endpoint's link and our interface there.
    let (my_mac, my_ip, peer_mac, peer_ip, router) = match cx.mode {
        Mode::Fw => (OUR_MAC, OUR_IP, GW_MAC, GW_IP, true),
        Mode::Lan => (crate::packet::lan_host_mac(cx.me.ip), cx.me.ip, FW_LAN_MAC, FW_LAN_IP, true),
        Mode::LanFw => {
            let h = cx.host(rng);
            (FW_LAN_MAC, FW_LAN_IP, crate::packet::lan_host_mac(h.ip), h.ip, false)
        }
    };
    let (me, peer) = (map4(my_ip), map4(peer_ip));
    let (me_ll, peer_ll) = (link_local(my_mac), link_local(peer_mac));
    let rflag = |is_router: bool| if is_router { 0x80 } else { 0 };
    // Routers set R in their advertisements: the gateway and our lan0 (forwarding).
    let me_router = cx.mode == Mode::LanFw;
    let mut tt = t;
    for _ in 0..rng.range(1, 2) {
        match rng.range(0, 3) {
            0 => {
                // We resolve the neighbour: multicast NS, solicited NA (S|O).
                let g = solicited_node(peer);
                push_nd(
                    cx,
                    tt,
                    (my_mac, multicast_mac(g)),
                    me_ll,
                    g,
                    &nd(me_ll, g, 135, 0, peer, Some(my_mac)),
                )?;
                tt = tt.add_nanos(rng.range(100, 2_000) * US);
                let na = nd(peer_ll, me_ll, 136, rflag(router) | 0x60, peer, Some(peer_mac));
                push_nd(cx, tt, (peer_mac, my_mac), peer_ll, me_ll, &na)?;
            }
            1 => {
                // The neighbour resolves us.
                let g = solicited_node(me);
                push_nd(
                    cx,
                    tt,
                    (peer_mac, multicast_mac(g)),
                    peer_ll,
                    g,
                    &nd(peer_ll, g, 135, 0, me, Some(peer_mac)),
                )?;
                tt = tt.add_nanos(rng.range(50, 500) * US);
                let na = nd(me_ll, peer_ll, 136, rflag(me_router) | 0x60, me, Some(my_mac));
                push_nd(cx, tt, (my_mac, peer_mac), me_ll, peer_ll, &na)?;
            }
            2 => {
                // Unicast reachability probe (no option) and its solicited answer without override.
                push_nd(cx, tt, (my_mac, peer_mac), me_ll, peer_ll, &nd(me_ll, peer_ll, 135, 0, peer, None))?;
                tt = tt.add_nanos(rng.range(100, 2_000) * US);
                push_nd(
                    cx,
                    tt,
                    (peer_mac, my_mac),
                    peer_ll,
                    me_ll,
                    &nd(peer_ll, me_ll, 136, rflag(router) | 0x40, peer, None),
                )?;
            }
            _ => {
                // Unsolicited advertisement to all nodes (override), e.g. after an address change.
                let all = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
                push_nd(
                    cx,
                    tt,
                    (peer_mac, multicast_mac(all)),
                    peer_ll,
                    all,
                    &nd(peer_ll, all, 136, rflag(router) | 0x20, peer, Some(peer_mac)),
                )?;
            }
        }
        tt = tt.add_nanos(rng.range(200, 3_000) * MS);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::check::{check_tcp, reassemble, tcp_segments, verify_checksums};
    use crate::Frame;
    use std::collections::{BTreeMap, BTreeSet};

    fn gen(seed: u64) -> (Vec<Frame>, Vec<Episode>) {
        generate_logged(seed, crate::DEFAULT_START).unwrap()
    }

    fn text(a: [u8; 16]) -> String {
        std::net::Ipv6Addr::from(a).to_string()
    }

    /// (next header after hop-by-hop/destination options, ext header numbers, offset of it).
    fn walk(ip: &[u8]) -> (u8, Vec<u8>, usize) {
        let (mut next, mut off, mut seen) = (ip[6], 40, Vec::new());
        while matches!(next, 0 | 60 | 44) {
            seen.push(next);
            let n = ip[off];
            off += if next == 44 { 8 } else { (usize::from(ip[off + 1]) + 1) * 8 };
            next = n;
            if seen.last() == Some(&44) {
                break;
            }
        }
        (next, seen, off)
    }

    #[test]
    fn addresses_read_like_their_ipv4_twins() {
        assert_eq!(text(map4(OUR_IP)), "2001:db8:0:1::10");
        assert_eq!(text(map4(GW_IP)), "2001:db8:0:1::1");
        assert_eq!(text(map4(FW_LAN_IP)), "2001:db8:0:2::1");
        assert_eq!(text(map4([10, 1, 0, 50])), "2001:db8:0:2::50");
        assert_eq!(text(map4([198, 51, 100, 7])), "2001:db8:100::7");
        assert_eq!(text(map4([203, 0, 113, 254])), "2001:db8:200::254");
        assert_eq!(text(link_local(OUR_MAC)), "fe80::ff:fe00:a");
        assert_eq!(text(solicited_node(map4(OUR_IP))), "ff02::1:ff00:10");
        // Distinct IPv4 addresses stay distinct.
        let all: BTreeSet<[u8; 16]> = (0..=255u8).map(|d| map4([198, 51, 100, d])).collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn every_frame_is_valid_ipv6_sorted_and_within_the_mtu() {
        let (mut rebuilt, mut dropped) = (0, 0);
        for seed in 0..30 {
            let (frames, _) = gen(seed);
            assert!((100..=400).contains(&frames.len()), "seed {seed}: {}", frames.len());
            assert!(frames.windows(2).all(|w| w[0].ts <= w[1].ts));
            for (i, f) in frames.iter().enumerate() {
                assert_eq!(f.data[12..14], [0x86, 0xdd], "seed {seed} frame {i}");
                let kind = verify_checksums(&f.data).unwrap_or_else(|e| panic!("seed {seed} frame {i}: {e}"));
                // etherparse reads on past a fragment header into a non-first fragment's data
                // (when the fragmentable part starts with destination options): the IPv6 layer
                // is checked by `lax` then.
                if kind == "ipv6-fragment" {
                    etherparse::LaxSlicedPacket::from_ethernet(&f.data).unwrap();
                } else {
                    etherparse::SlicedPacket::from_ethernet(&f.data).unwrap();
                }
                let len = ip6_datagram(&f.data).unwrap().len();
                assert!(len <= 1500, "seed {seed} frame {i}: {len} bytes");
            }
            // Fragmented datagrams that Linux would rebuild carry correct checksums.
            let (done, discarded) = reassemble(&frames);
            assert!(done.iter().all(|r| r.ok && r.v6 && (r.proto == 17 || r.proto == 58)), "seed {seed}");
            rebuilt += done.len();
            dropped += discarded;
        }
        assert!(rebuilt > 20 && dropped > 2, "{rebuilt} rebuilt, {dropped} discarded");
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        assert_eq!(gen(4).0, gen(4).0);
        assert_ne!(gen(4).0, gen(5).0);
        // Not the IPv4 scenario with other addresses: its own stream.
        assert_ne!(gen(4).0.len(), crate::random::generate(4, crate::DEFAULT_START).unwrap().len());
    }

    #[test]
    fn tcp_flows_pass_the_checker() {
        const CLEAN: &[&str] = &[
            "tcp_plain",
            "tcp_retrans",
            "tcp_zero_window",
            "tcp_fin_variant",
            "icmp_error",
            "v6_ext",
            "v6_ptb_ext",
        ];
        let mut checked = 0;
        for seed in 0..30 {
            let (frames, log) = gen(seed);
            let key = |e: ([u8; 4], u16)| (map4(e.0), e.1);
            let clean: BTreeSet<_> = log
                .iter()
                .filter(|e| CLEAN.contains(&e.kind))
                .flat_map(|e| e.tcp.iter().map(|t| (key(t.0), key(t.1))))
                .collect();
            checked += clean.len();
            let sel: Vec<Frame> = frames
                .iter()
                .filter(|f| {
                    tcp_segments(std::slice::from_ref(f))
                        .first()
                        .is_some_and(|s| clean.contains(&(s.src, s.dst)) || clean.contains(&(s.dst, s.src)))
                })
                .cloned()
                .collect();
            check_tcp(&sel).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        }
        assert!(checked > 60, "{checked}");
    }

    #[test]
    fn seeds_cover_extension_headers_fragments_nd_and_errors() {
        let mut ext_on: BTreeSet<(u8, u8)> = BTreeSet::new(); // (ext, upper protocol)
        let mut frag = BTreeMap::<&str, usize>::new();
        let mut icmp6: BTreeSet<u8> = BTreeSet::new();
        // ICMPv6 error types quoting an earlier datagram bit-exactly, and whether the quote had
        // an extension header.
        let mut quoted: BTreeSet<(u8, bool)> = BTreeSet::new();
        let mut nd_hops = BTreeSet::new();
        for seed in 0..40 {
            let (frames, _) = gen(seed);
            let mut first_off: BTreeMap<u32, usize> = BTreeMap::new();
            let mut pieces: BTreeMap<u32, Vec<(usize, usize)>> = BTreeMap::new();
            for (i, f) in frames.iter().enumerate() {
                let ip = ip6_datagram(&f.data).unwrap();
                let (next, exts, off) = walk(ip);
                for e in &exts {
                    if *e != 44 {
                        ext_on.insert((*e, next));
                    }
                }
                if exts.contains(&44) {
                    let fo = off - 8;
                    let fv = u16::from_be_bytes([ip[fo + 2], ip[fo + 3]]);
                    let id = u32::from_be_bytes(ip[fo + 4..fo + 8].try_into().unwrap());
                    let (o, n) = (usize::from(fv >> 3) * 8, ip.len() - off);
                    if fv & 0xfff9 == 0 {
                        *frag.entry("atomic").or_default() += 1;
                        continue;
                    }
                    first_off.entry(id).or_insert(o);
                    let list = pieces.entry(id).or_default();
                    if list.contains(&(o, n)) {
                        *frag.entry("duplicate").or_default() += 1;
                    } else if list.iter().any(|(a, m)| o < a + m && o + n > *a) {
                        *frag.entry("overlap").or_default() += 1;
                    }
                    list.push((o, n));
                    continue;
                }
                if next != 58 {
                    continue;
                }
                let ty = ip[off];
                icmp6.insert(ty);
                if ty == 135 || ty == 136 {
                    nd_hops.insert(ip[7]);
                }
                if (1..=3).contains(&ty) {
                    let q = &ip[off + 8..];
                    let earlier =
                        frames[..i].iter().any(|g| ip6_datagram(&g.data).is_some_and(|d| d.starts_with(q)));
                    if earlier {
                        quoted.insert((ty, matches!(q[6], 0 | 60)));
                    }
                }
            }
            *frag.entry("out_of_order").or_default() += first_off.values().filter(|o| **o > 0).count();
        }
        for e in [(0, 6), (60, 6), (0, 17), (60, 17), (0, 58), (60, 58)] {
            assert!(ext_on.contains(&e), "{e:?} missing: {ext_on:?}");
        }
        for k in ["atomic", "duplicate", "overlap", "out_of_order"] {
            assert!(frag.get(k).copied().unwrap_or(0) > 0, "{k}: {frag:?}");
        }
        for t in [1, 2, 3, 128, 129, 135, 136] {
            assert!(icmp6.contains(&t), "type {t}: {icmp6:?}");
        }
        assert_eq!(nd_hops, BTreeSet::from([255]));
        for q in [(1, false), (1, true), (2, false), (2, true), (3, false), (3, true)] {
            assert!(quoted.contains(&q), "{q:?}: {quoted:?}");
        }
    }

    #[test]
    fn translation_keeps_roles_macs_and_quotes() {
        // One IPv4 UDP datagram from a LAN host, then a port unreachable quoting its first 28
        // bytes: the IPv6 error quotes the whole translated datagram.
        let mut tr = Trace::new_v6();
        let host = [10, 1, 0, 7];
        let ip = Ip4 { src: host, dst: [198, 51, 100, 9], ttl: 64, id: 1, df: true, tos: 0 };
        let f = tr.push(Time(0), crate::packet::udp_frame(&ip, 1000, 53, &[7; 100]).unwrap());
        let quote = crate::world::quote_bytes(&tr.datagram(f).unwrap(), crate::world::Quote::Rfc792);
        let err = Ip4 { src: [198, 51, 100, 9], dst: host, ttl: 50, id: 2, df: false, tos: 0xc0 };
        let ty =
            etherparse::Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port);
        tr.push(Time(1_000), crate::packet::icmp_frame(&err, ty, &quote).unwrap());
        let frames = tr.finish_checked().unwrap();
        assert_eq!(frames[0].data[0..12], [FW_LAN_MAC, crate::packet::lan_host_mac(host)].concat()[..]);
        let d0 = ip6_datagram(&frames[0].data).unwrap();
        assert_eq!(text(d0[8..24].try_into().unwrap()), "2001:db8:0:2::7");
        let d1 = ip6_datagram(&frames[1].data).unwrap();
        assert_eq!((d1[6], d1[40], d1[41]), (58, 1, 4));
        assert_eq!(&d1[48..], d0);
        for f in &frames {
            verify_checksums(&f.data).unwrap();
        }
    }
}
