//! Test-only validators: independent checksum verification and a TCP conversation checker that
//! replays a capture and asserts seq/ack/window consistency per flow.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

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

/// Verifies every checksum of an Ethernet frame (IPv4 header, TCP/UDP/ICMP, ICMPv6) with an
/// implementation independent from the one used to build it. Returns the L3 kind.
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
            let l4 = &ip[ihl..total];
            let proto = ip[9];
            let ok = match proto {
                6 | 17 => {
                    let mut acc = sum16(0, &ip[12..20]);
                    acc += u32::from(proto) + l4.len() as u32;
                    fold(sum16(acc, l4)) == 0xffff
                }
                1 => fold(sum16(0, l4)) == 0xffff,
                _ => true,
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
            let l4 = &ip[40..40 + plen];
            let mut acc = sum16(0, &ip[8..40]);
            acc += u32::from(ip[6]) + plen as u32;
            if fold(sum16(acc, l4)) == 0xffff {
                Ok("ipv6")
            } else {
                Err("icmpv6 checksum".into())
            }
        }
        _ => Err(format!("ethertype {ethertype:#x}")),
    }
}

/// One TCP segment as seen in a capture.
#[derive(Debug, Clone)]
pub(crate) struct Seg {
    pub idx: usize,
    pub src: ([u8; 4], u16),
    pub dst: ([u8; 4], u16),
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
        let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(t))) = (&p.net, &p.transport) else {
            continue;
        };
        let h = ip.header();
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
            src: (h.source(), t.source_port()),
            dst: (h.destination(), t.destination_port()),
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
            ip_id: h.identification(),
            df: h.dont_fragment(),
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
    type Key = (([u8; 4], u16), ([u8; 4], u16));
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
                let scale = if s.syn || !both_ws { 0 } else { d[i].ws.unwrap_or(0) };
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
