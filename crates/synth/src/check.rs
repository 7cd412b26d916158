//! Test-only validators: independent checksum verification and a TCP conversation checker that
//! replays a capture and asserts seq/ack/window consistency per flow.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::type_complexity)]

use crate::tcp::seq_after;
use crate::Frame;
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use std::collections::HashMap;

/// RFC 1071 one's-complement sum, folded.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = it.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// CRC32c with a lookup table (independent from the bitwise one in `raw`).
fn crc32c_table(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, e) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
        }
        *e = c;
    }
    let mut crc = 0xffff_ffffu32;
    for b in data {
        crc = table[((crc ^ u32::from(*b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Checks the upper-layer checksum of an unfragmented datagram; `pseudo` is the pseudo-header
/// address sum.
fn l4_ok(proto: u8, pseudo: u32, l4: &[u8]) -> bool {
    match proto {
        6 | 17 | 58 => {
            if proto == 17 && l4[6..8] == [0, 0] {
                return true;
            }
            fold(sum16(pseudo + u32::from(proto) + l4.len() as u32, l4)) == 0xffff
        }
        136 => {
            // UDP-Lite: coverage 0 = everything; the pseudo-header carries the full length.
            let cov = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
            let covered = if cov == 0 { l4.len() } else { cov };
            l4[6..8] != [0, 0] && fold(sum16(pseudo + 136 + l4.len() as u32, &l4[..covered])) == 0xffff
        }
        132 => {
            let mut z = l4.to_vec();
            z[8..12].fill(0);
            u32::from_le_bytes(l4[8..12].try_into().unwrap()) == crc32c_table(&z)
        }
        // GRE with the C bit: checksum over the GRE header and payload.
        47 if l4[0] & 0x80 != 0 => fold(sum16(0, l4)) == 0xffff,
        _ => true,
    }
}

/// Verifies every checksum of an Ethernet frame (IPv4 header, TCP/UDP/UDP-Lite/ICMP/ICMPv6, SCTP
/// CRC32c, GRE) with an implementation independent from the one used to build it; fragments get
/// only their IP header checked (see [`reassemble`]). Returns the L3 kind.
pub(crate) fn verify_checksums(frame: &[u8]) -> Result<&'static str, String> {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    match ethertype {
        0x0806 => Ok("arp"),
        0x0800 => {
            let ip = &frame[14..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if fold(sum16(0, &ip[..ihl])) != 0xffff {
                return Err("ipv4 header checksum".into());
            }
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                return Ok("ipv4-fragment");
            }
            let l4 = &ip[ihl..total];
            let proto = ip[9];
            let ok = match proto {
                1 => fold(sum16(0, l4)) == 0xffff,
                p => l4_ok(p, sum16(0, &ip[12..20]), l4),
            };
            if ok {
                Ok("ipv4")
            } else {
                Err(format!("l4 checksum (proto {proto})"))
            }
        }
        0x86dd => {
            let ip = &frame[14..];
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let mut next = ip[6];
            let mut off = 40;
            loop {
                match next {
                    0 | 60 | 43 => {
                        next = ip[off];
                        off += (usize::from(ip[off + 1]) + 1) * 8;
                    }
                    44 => {
                        let fo = u16::from_be_bytes([ip[off + 2], ip[off + 3]]);
                        if fo & 0xfff9 != 0 {
                            return Ok("ipv6-fragment");
                        }
                        // Atomic fragment: the rest is a whole datagram.
                        next = ip[off];
                        off += 8;
                    }
                    _ => break,
                }
            }
            let l4 = &ip[off..40 + plen];
            if l4_ok(next, sum16(0, &ip[8..40]), l4) {
                Ok("ipv6")
            } else {
                Err(format!("ipv6 l4 checksum (next header {next})"))
            }
        }
        _ => Err(format!("ethertype {ethertype:#x}")),
    }
}

/// A datagram rebuilt from fragments.
#[derive(Debug, Clone)]
pub(crate) struct Reassembled {
    pub v6: bool,
    /// Upper-layer protocol (after IPv6 destination options inside the fragmentable part).
    pub proto: u8,
    /// Upper-layer checksum verified.
    pub ok: bool,
}

/// What happened to each fragmented datagram of a capture, the way Linux reassembles: a fragment
/// lying within data already received is dropped as a duplicate (the first bytes win); a partial
/// overlap discards the datagram (RFC 5722 / `inet_frag_queue_insert`). Returns the complete
/// datagrams and the number of discarded ones.
pub(crate) fn reassemble(frames: &[Frame]) -> (Vec<Reassembled>, usize) {
    type Key = (Vec<u8>, Vec<u8>, u32, u8);
    // (offset, bytes, more), first-frame proto info, discarded
    let mut groups: HashMap<Key, (Vec<(usize, Vec<u8>, bool)>, bool)> = HashMap::new();
    let mut order: Vec<Key> = Vec::new();
    let mut out = Vec::new();
    let mut discarded = 0;
    for f in frames {
        let d = &f.data;
        let (key, off, more, bytes, v6, pseudo) = match u16::from_be_bytes([d[12], d[13]]) {
            0x0800 => {
                let ip = &d[14..];
                let fo = u16::from_be_bytes([ip[6], ip[7]]);
                if fo & 0x3fff == 0 {
                    continue;
                }
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
                let key = (
                    ip[12..16].to_vec(),
                    ip[16..20].to_vec(),
                    u32::from(u16::from_be_bytes([ip[4], ip[5]])),
                    ip[9],
                );
                (
                    key,
                    usize::from(fo & 0x1fff) * 8,
                    fo & 0x2000 != 0,
                    ip[ihl..total].to_vec(),
                    false,
                    sum16(0, &ip[12..20]),
                )
            }
            0x86dd => {
                let ip = &d[14..];
                let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                let (mut next, mut o) = (ip[6], 40);
                while next == 0 || next == 60 {
                    next = ip[o];
                    o += (usize::from(ip[o + 1]) + 1) * 8;
                }
                if next != 44 {
                    continue;
                }
                let fo = u16::from_be_bytes([ip[o + 2], ip[o + 3]]);
                if fo & 0xfff9 == 0 {
                    continue; // atomic: checked as a whole datagram
                }
                let id = u32::from_be_bytes(ip[o + 4..o + 8].try_into().unwrap());
                let key = (ip[8..24].to_vec(), ip[24..40].to_vec(), id, ip[o]);
                (
                    key,
                    usize::from(fo >> 3) * 8,
                    fo & 1 != 0,
                    ip[o + 8..40 + plen].to_vec(),
                    true,
                    sum16(0, &ip[8..40]),
                )
            }
            _ => continue,
        };
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        let g = groups.entry(key.clone()).or_default();
        if g.1 {
            continue;
        }
        let end = off + bytes.len();
        let mut dup = false;
        for (o, b, _) in &g.0 {
            let e = o + b.len();
            if off >= *o && end <= e {
                dup = true;
            } else if off < e && end > *o {
                g.1 = true;
            }
        }
        if g.1 {
            discarded += 1;
            continue;
        }
        if dup {
            continue;
        }
        g.0.push((off, bytes, more));
        // Complete when contiguous from 0 to a last fragment.
        let mut pieces = g.0.clone();
        pieces.sort_by_key(|p| p.0);
        let mut next_off = 0;
        let mut done = false;
        for (o, b, m) in &pieces {
            if *o != next_off {
                break;
            }
            next_off += b.len();
            if !m {
                done = true;
            }
        }
        if !done {
            continue;
        }
        let mut data: Vec<u8> = pieces.iter().flat_map(|p| p.1.clone()).collect();
        let mut proto = key.3;
        if v6 && proto == 60 {
            proto = data[0];
            data.drain(..(usize::from(data[1]) + 1) * 8);
        }
        let ok = if proto == 1 { fold(sum16(0, &data)) == 0xffff } else { l4_ok(proto, pseudo, &data) };
        out.push(Reassembled { v6, proto, ok });
        g.1 = true;
    }
    (out, discarded)
}

/// The IPv4 address as an IPv4-mapped IPv6 address (the flow key of [`Seg`]).
pub(crate) fn key4(ip: [u8; 4]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[10] = 0xff;
    k[11] = 0xff;
    k[12..].copy_from_slice(&ip);
    k
}

/// One TCP segment as seen in a capture.
#[derive(Debug, Clone)]
pub(crate) struct Seg {
    pub idx: usize,
    pub src: ([u8; 16], u16),
    pub dst: ([u8; 16], u16),
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ackf: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
    pub win: u16,
    pub len: u32,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub ts: bool,
    pub ip_id: u16,
    pub df: bool,
}

pub(crate) fn tcp_segments(frames: &[Frame]) -> Vec<Seg> {
    let mut out = Vec::new();
    for (idx, f) in frames.iter().enumerate() {
        let Ok(p) = SlicedPacket::from_ethernet(&f.data) else {
            continue;
        };
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            continue;
        };
        let (src, dst, ip_id, df) = match &p.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header();
                (key4(h.source()), key4(h.destination()), h.identification(), h.dont_fragment())
            }
            // IPv6 has no DF bit and no IP id: never fragmented on the way, as if DF.
            Some(NetSlice::Ipv6(ip)) => (ip.header().source(), ip.header().destination(), 0, true),
            _ => continue,
        };
        let mut mss = None;
        let mut wscale = None;
        let mut ts = false;
        for o in t.options_iterator() {
            match o.unwrap() {
                etherparse::TcpOptionElement::MaximumSegmentSize(m) => mss = Some(m),
                etherparse::TcpOptionElement::WindowScale(w) => wscale = Some(w),
                etherparse::TcpOptionElement::Timestamp(_, _) => ts = true,
                _ => {}
            }
        }
        out.push(Seg {
            idx,
            src: (src, t.source_port()),
            dst: (dst, t.destination_port()),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            syn: t.syn(),
            ackf: t.ack(),
            fin: t.fin(),
            rst: t.rst(),
            psh: t.psh(),
            win: t.window_size(),
            len: t.payload().len() as u32,
            mss,
            wscale,
            ts,
            ip_id,
            df,
        });
    }
    out
}

#[derive(Debug, Default, Clone)]
struct Dir {
    isn: Option<u32>,
    nxt: u32,
    max_ack: Option<u32>,
    mss_offer: Option<u16>,
    ws: Option<u8>,
    ts: bool,
    /// Right edge of the window this direction's receiver advertised.
    edge: Option<u32>,
    fin: bool,
    /// The peer acknowledged this direction's FIN.
    fin_acked: bool,
}

/// Summary of a checked flow.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlowReport {
    pub segments: usize,
    pub bytes: [u64; 2],
    pub rst: bool,
    pub closed_by_fin: bool,
    pub retransmissions: usize,
    /// Segments with PSH per direction.
    pub pushes: [usize; 2],
}

/// Checks every TCP conversation that starts with a SYN: contiguous sequence numbers (an exact
/// retransmission of already-sent bytes is allowed), ACKs never beyond what the peer sent and never
/// decreasing, data within the peer's advertised window and at most the negotiated MSS, RSTs with
/// the exact next sequence number, FIN exchanges completed by a final ACK. Flows whose first
/// segment is not a SYN, and lone SYNs (scans), are skipped.
pub(crate) fn check_tcp(frames: &[Frame]) -> Result<Vec<FlowReport>, String> {
    type Key = (([u8; 16], u16), ([u8; 16], u16));
    let segs = tcp_segments(frames);
    let mut flows: HashMap<Key, Vec<Seg>> = HashMap::new();
    let mut order: Vec<Key> = Vec::new();
    for s in segs {
        let k = if s.src <= s.dst { (s.src, s.dst) } else { (s.dst, s.src) };
        if !flows.contains_key(&k) {
            order.push(k);
        }
        flows.entry(k).or_default().push(s);
    }
    let mut reports = Vec::new();
    for k in order {
        let list = &flows[&k];
        let first = &list[0];
        if !first.syn || first.ackf {
            return Err(format!("flow {k:?} does not start with a SYN"));
        }
        if list.len() == 1 {
            continue;
        }
        let a = first.src;
        let mut d = [Dir::default(), Dir::default()];
        let mut rep = FlowReport::default();
        let both_ws = list.iter().filter(|s| s.syn).all(|s| s.wscale.is_some())
            && list.iter().filter(|s| s.syn).count() >= 2;
        let both_ts =
            list.iter().filter(|s| s.syn).all(|s| s.ts) && list.iter().filter(|s| s.syn).count() >= 2;
        let mut closed = false;
        for s in list {
            let i = usize::from(s.src != a);
            let j = 1 - i;
            let ctx = || format!("flow {k:?} frame {} dir {i}", s.idx);
            if closed {
                return Err(format!("{}: segment after close", ctx()));
            }
            if !s.df {
                return Err(format!("{}: TCP without DF", ctx()));
            }
            rep.segments += 1;
            let end = s.seq.wrapping_add(s.len).wrapping_add(u32::from(s.syn)).wrapping_add(u32::from(s.fin));
            if s.syn {
                if d[i].isn.is_some() {
                    return Err(format!("{}: second SYN", ctx()));
                }
                d[i].isn = Some(s.seq);
                d[i].nxt = end;
                d[i].mss_offer = s.mss;
                d[i].ws = s.wscale;
                d[i].ts = s.ts;
                if s.ackf {
                    // SYN/ACK: options only if offered in the SYN.
                    if (s.wscale.is_some() && d[j].ws.is_none()) || (s.ts && !d[j].ts) {
                        return Err(format!("{}: SYN/ACK option not offered by SYN", ctx()));
                    }
                }
            } else {
                let Some(_) = d[i].isn else {
                    return Err(format!("{}: data before SYN", ctx()));
                };
                if s.ts != both_ts {
                    return Err(format!("{}: timestamp option mismatch", ctx()));
                }
                // No gap; retransmissions must stay below what was sent.
                if seq_after(s.seq, d[i].nxt) {
                    return Err(format!("{}: sequence gap", ctx()));
                }
                if s.seq != d[i].nxt && !s.rst {
                    if seq_after(end, d[i].nxt) {
                        return Err(format!("{}: partial overlap", ctx()));
                    }
                    rep.retransmissions += 1;
                }
                if s.rst && s.seq != d[i].nxt {
                    return Err(format!("{}: RST not at the exact next sequence", ctx()));
                }
                // Window: data end within the receiver's advertised right edge.
                if let Some(edge) = d[i].edge {
                    if s.len > 0 && seq_after(end.wrapping_sub(u32::from(s.fin)), edge) {
                        return Err(format!("{}: beyond the peer's window", ctx()));
                    }
                }
                // MSS: peer's offer minus timestamps.
                let mss =
                    u32::from(d[j].mss_offer.unwrap_or(536)).saturating_sub(if both_ts { 12 } else { 0 });
                if s.len > mss {
                    return Err(format!("{}: {} bytes > MSS {mss}", ctx(), s.len));
                }
                if seq_after(end, d[i].nxt) {
                    d[i].nxt = end;
                }
                rep.bytes[i] += u64::from(s.len);
                if s.psh {
                    if s.len == 0 {
                        return Err(format!("{}: PSH without data", ctx()));
                    }
                    rep.pushes[i] += 1;
                }
            }
            if s.ackf {
                if seq_after(s.ack, d[j].nxt) {
                    return Err(format!("{}: ACK beyond what the peer sent", ctx()));
                }
                if let Some(m) = d[i].max_ack {
                    if seq_after(m, s.ack) {
                        return Err(format!("{}: ACK went backwards", ctx()));
                    }
                }
                d[i].max_ack = Some(s.ack);
                // Shifts above 14 are taken as 14 (RFC 7323 §2.3).
                let scale = if s.syn || !both_ws { 0 } else { d[i].ws.unwrap_or(0).min(14) };
                let edge = s.ack.wrapping_add(u32::from(s.win) << scale);
                d[j].edge = Some(match d[j].edge {
                    Some(e) if seq_after(e, edge) => e,
                    _ => edge,
                });
            }
            if s.rst {
                rep.rst = true;
                closed = true;
            }
            if s.fin {
                d[i].fin = true;
            }
            if s.ackf && d[j].fin && s.ack == d[j].nxt {
                d[j].fin_acked = true;
            }
            if d[0].fin_acked && d[1].fin_acked {
                // Both FINs acknowledged (the final ACK; after a simultaneous close, the later
                // of the two ACKs that cross).
                rep.closed_by_fin = true;
                closed = true;
            }
        }
        if !rep.rst && !rep.closed_by_fin {
            return Err(format!("flow {k:?} never closed"));
        }
        reports.push(rep);
    }
    Ok(reports)
}
