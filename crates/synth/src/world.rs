//! Shared scenario plumbing: remote host pools, UDP/ICMP emission, ICMP error quoting, and the
//! TCP dialog runner that turns a list of application steps into a causally timed conversation.
//!
//! Contract: everything here is deterministic given the [`Rng`] passed in; times are capture times
//! at our host (see [`crate::tcp`]).

use crate::packet::{icmp_frame, udp_frame, FrameId, Ip4, Trace};
use crate::rng::Rng;
use crate::tcp::{AckLast, CloseStyle, Conn, Os, Side, US};
use crate::SynthError;
use etherparse::Icmpv4Type;
use wire::Time;

/// A remote host as seen from our capture point.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub ip: [u8; 4],
    pub ttl: u8,
    pub os: Os,
    /// Round-trip time from our host, ns (5-80 ms).
    pub rtt: u64,
    /// IP id counter for datagrams this host sends outside TCP connections.
    pub ip_id: u16,
}

impl Remote {
    pub(crate) fn new(rng: &mut Rng, ip: [u8; 4]) -> Remote {
        let os = match rng.range(0, 9) {
            0..=4 => Os::Linux,
            5..=7 => Os::Windows,
            _ => Os::Mac,
        };
        // Initial TTL 64 (Linux, macOS) or 128 (Windows) minus 6-20 hops: 52-58 or 108-118.
        let ttl = match os {
            Os::Windows => 128 - rng.range(10, 20) as u8,
            _ => 64 - rng.range(6, 12) as u8,
        };
        Remote { ip, ttl, os, rtt: rng.range(5_000, 80_000) * US, ip_id: rng.next_u16() }
    }

    pub(crate) fn next_id(&mut self) -> u16 {
        let id = self.ip_id;
        self.ip_id = self.ip_id.wrapping_add(1);
        id
    }
}

/// `n` distinct remote hosts drawn from 198.51.100.0/24 and 203.0.113.0/24 (TEST-NET-2/3),
/// skipping `exclude`.
pub(crate) fn remote_pool(rng: &mut Rng, n: usize, exclude: &[[u8; 4]]) -> Vec<Remote> {
    let mut candidates: Vec<[u8; 4]> = Vec::with_capacity(506);
    for last in 2u8..=254 {
        candidates.push([198, 51, 100, last]);
        candidates.push([203, 0, 113, last]);
    }
    candidates.retain(|c| !exclude.contains(c));
    rng.shuffle(&mut candidates);
    candidates.into_iter().take(n).map(|ip| Remote::new(rng, ip)).collect()
}

/// A UDP datagram endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UdpEnd {
    pub ip: [u8; 4],
    pub port: u16,
}

/// Emits one UDP datagram.
pub(crate) fn udp(
    tr: &mut Trace,
    t: Time,
    src: UdpEnd,
    dst: UdpEnd,
    ttl: u8,
    id: u16,
    payload: &[u8],
) -> Result<FrameId, SynthError> {
    let ip = Ip4 {
        src: src.ip,
        dst: dst.ip,
        ttl,
        id,
        // Linux and Windows set DF on UDP (path MTU discovery "want" mode).
        df: true,
        tos: 0,
    };
    Ok(tr.push(t, udp_frame(&ip, src.port, dst.port, payload)?))
}

/// Emits an ICMP echo request or reply.
#[allow(clippy::too_many_arguments)]
pub(crate) fn echo(
    tr: &mut Trace,
    t: Time,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    ip_id: u16,
    df: bool,
    request: bool,
    id: u16,
    seq: u16,
    payload: &[u8],
) -> Result<FrameId, SynthError> {
    let hdr = etherparse::IcmpEchoHeader { id, seq };
    let ty = if request { Icmpv4Type::EchoRequest(hdr) } else { Icmpv4Type::EchoReply(hdr) };
    let ip = Ip4 { src, dst, ttl, id: ip_id, df, tos: 0 };
    Ok(tr.push(t, icmp_frame(&ip, ty, payload)?))
}

/// How much of the offending datagram an ICMP error quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quote {
    /// IP header + first 8 bytes of payload (RFC 792 minimum; typical of routers).
    Rfc792,
    /// As much as fits in a 576-byte error (Linux `icmp_send`, RFC 1812 §4.3.2.3).
    Linux576,
}

/// Bytes of `datagram` an ICMP error would carry.
pub(crate) fn quote_bytes(datagram: &[u8], q: Quote) -> Vec<u8> {
    let ihl = datagram.first().map_or(20, |b| usize::from(b & 0x0f) * 4);
    let n = match q {
        Quote::Rfc792 => ihl + 8,
        Quote::Linux576 => 576 - 20 - 8,
    };
    datagram.get(..n.min(datagram.len())).unwrap_or_default().to_vec()
}

/// Emits an ICMP error from `src` to `dst` quoting the frame `quoted` (bit-exact).
#[allow(clippy::too_many_arguments)]
pub(crate) fn icmp_error(
    tr: &mut Trace,
    t: Time,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    ip_id: u16,
    ty: Icmpv4Type,
    quoted: FrameId,
    q: Quote,
) -> Result<FrameId, SynthError> {
    let dgram = tr.datagram(quoted)?;
    let body = quote_bytes(&dgram, q);
    icmp_error_raw(tr, t, src, dst, ttl, ip_id, ty, &body)
}

/// Emits an ICMP error carrying arbitrary quoted bytes (forged or unknown flows).
#[allow(clippy::too_many_arguments)]
pub(crate) fn icmp_error_raw(
    tr: &mut Trace,
    t: Time,
    src: [u8; 4],
    dst: [u8; 4],
    ttl: u8,
    ip_id: u16,
    ty: Icmpv4Type,
    body: &[u8],
) -> Result<FrameId, SynthError> {
    // Errors are sent with TOS 0xc0 (internetwork control) and without DF (Linux icmp_send).
    let ip = Ip4 { src, dst, ttl, id: ip_id, df: false, tos: 0xc0 };
    Ok(tr.push(t, icmp_frame(&ip, ty, body)?))
}

/// One application-level step of a TCP dialog.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// `from` writes `data` `think_us` after the previous step allows it.
    Msg {
        from: Side,
        data: Vec<u8>,
        think_us: u64,
    },
    /// Our host sends `data` (exactly one full-sized segment, DF) that a router on the path drops
    /// with a fragmentation-needed (RFC 1191); we lower the MSS and retransmit it in smaller
    /// segments. The ICMP error is recorded in `DialogOut::pmtu_icmp`.
    Pmtu {
        data: Vec<u8>,
        think_us: u64,
        router: [u8; 4],
        router_ttl: u8,
        router_ip_id: u16,
        mtu: u16,
    },
    Close {
        first: Side,
        style: CloseStyle,
        think_us: u64,
    },
    Abort {
        from: Side,
        think_us: u64,
    },
}

impl Step {
    fn actor(&self, local: Side) -> Side {
        match self {
            Step::Msg { from, .. } => *from,
            Step::Pmtu { .. } => local,
            Step::Close { first, .. } => *first,
            Step::Abort { from, .. } => *from,
        }
    }

    fn think(&self) -> u64 {
        match self {
            Step::Msg { think_us, .. }
            | Step::Pmtu { think_us, .. }
            | Step::Close { think_us, .. }
            | Step::Abort { think_us, .. } => *think_us,
        }
    }
}

/// Result of [`run_dialog`].
#[derive(Debug, Clone, Default)]
pub(crate) struct DialogOut {
    pub end: Time,
    /// The 1500-byte segment and the fragmentation-needed quoting it (Step::Pmtu).
    pub pmtu_icmp: Option<(FrameId, FrameId)>,
}

/// Runs the handshake at `t0`, then `steps`. Delays: a step by the other side than the previous
/// one starts when the previous data has reached it (+ think); a step by the same side starts once
/// its previous data was acknowledged (+ think).
pub(crate) fn run_dialog(
    tr: &mut Trace,
    c: &mut Conn,
    t0: Time,
    steps: &[Step],
) -> Result<DialogOut, SynthError> {
    let mut out = DialogOut::default();
    let local = c.local_side();
    let t3 = c.open(tr, t0)?;
    // (actor, time of its last data, time of the last ACK of that data)
    let mut prev_actor = Side::A;
    let mut prev_data = t3;
    let mut prev_ack = t3;
    let mut prev_acker = Side::A;
    for (k, step) in steps.iter().enumerate() {
        let actor = step.actor(local);
        let think = step.think() * US;
        let mut t = if actor != prev_actor {
            c.react(prev_data, prev_actor, actor, think)
        } else {
            c.react(prev_ack, prev_acker, actor, think)
        };
        // With paced segments the actor's own last ACK of the previous transfer can be later than
        // the last data segment's send time: the next write follows it (never reorders it).
        let busy = c.end(actor).last_tx;
        if busy > t {
            t = busy.add_nanos(think.max(US));
        }
        let next = steps.get(k + 1);
        let last_mode = match next {
            Some(n) if n.actor(local) != actor && n.think() < 40_000 => AckLast::Piggyback,
            Some(_) if k < 2 => AckLast::Now,
            Some(_) => AckLast::Delayed,
            None => AckLast::Now,
        };
        match step {
            Step::Msg { from, data, .. } => {
                let (d, a) = c.transfer(tr, t, *from, data, last_mode)?;
                prev_data = d;
                prev_ack = if last_mode == AckLast::Piggyback { d } else { a };
                prev_acker = if last_mode == AckLast::Piggyback { *from } else { from.other() };
            }
            Step::Pmtu { data, router, router_ttl, router_ip_id, mtu, .. } => {
                let router = (*router, *router_ttl, *router_ip_id);
                let (d, a, big, icmp) = pmtu_step(tr, c, t, local, data, router, *mtu)?;
                out.pmtu_icmp = Some((big, icmp));
                prev_data = d;
                prev_ack = a;
                prev_acker = local.other();
            }
            Step::Close { first, style, .. } => {
                let end = c.close(tr, t, *first, *style)?;
                prev_data = end;
                prev_ack = end;
                prev_acker = *first;
            }
            Step::Abort { from, .. } => {
                let s = c.abort(tr, t, *from)?;
                prev_data = s.t;
                prev_ack = s.t;
                prev_acker = *from;
            }
        }
        prev_actor = actor;
        out.end = out.end.max(prev_data).max(prev_ack);
    }
    Ok(out)
}

fn pmtu_step(
    tr: &mut Trace,
    c: &mut Conn,
    t: Time,
    local: Side,
    data: &[u8],
    router: ([u8; 4], u8, u16),
    mtu: u16,
) -> Result<(Time, Time, FrameId, FrameId), SynthError> {
    use crate::packet::flags;
    use crate::tcp::Custom;
    let remote = local.other();
    let seq = c.end(local).snd_nxt;
    // The full-sized segment leaves our host but never reaches the peer.
    let big = c.send_with(
        tr,
        t,
        local,
        Custom {
            flags: flags::ACK | flags::PSH,
            payload: data.to_vec(),
            deliver: false,
            advance: true,
            ..Custom::default()
        },
    )?;
    // The router sits about 40 % of the way: its error arrives 0.4 RTT later.
    let t_icmp = t.add_nanos(c.rtt * 2 / 5);
    let icmp = icmp_error(
        tr,
        t_icmp,
        router.0,
        c.end(local).cfg.ip,
        router.1,
        router.2,
        Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: mtu,
        }),
        big.id,
        Quote::Rfc792,
    )?;
    c.pmtu(local, mtu);
    let mss = c.end(local).send_mss.max(1) as usize;
    let mut ts = t_icmp.add_nanos(c.stack_delay());
    let mut off = 0usize;
    let mut last = None;
    while off < data.len() {
        let n = (data.len() - off).min(mss);
        let chunk = data.get(off..off + n).unwrap_or_default();
        let fin = off + n == data.len();
        let s = c.send_with(
            tr,
            ts,
            local,
            Custom {
                flags: if fin { flags::ACK | flags::PSH } else { flags::ACK },
                payload: chunk.to_vec(),
                seq: Some(seq.wrapping_add(off as u32)),
                deliver: true,
                advance: false,
                ..Custom::default()
            },
        )?;
        last = Some(s);
        off += n;
        ts = ts.add_nanos(15 * US);
    }
    let last = last.ok_or(SynthError::Internal("empty pmtu segment"))?;
    let d = c.stack_delay();
    let ta = c.react(last.t, local, remote, d);
    c.send_with(
        tr,
        ta,
        remote,
        Custom {
            flags: flags::ACK,
            ack: Some(last.end),
            ecr: Some(last.tsval),
            deliver: true,
            advance: true,
            ..Custom::default()
        },
    )?;
    Ok((last.t, ta, big.id, icmp))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::tcp::MS;

    #[test]
    fn pool_is_distinct_and_in_test_nets() {
        let mut rng = Rng::new(5);
        let p = remote_pool(&mut rng, 100, &[[198, 51, 100, 77]]);
        assert_eq!(p.len(), 100);
        let mut ips: Vec<[u8; 4]> = p.iter().map(|r| r.ip).collect();
        ips.sort_unstable();
        ips.dedup();
        assert_eq!(ips.len(), 100);
        assert!(p.iter().all(|r| r.ip != [198, 51, 100, 77]));
        assert!(p.iter().all(|r| (52..=58).contains(&r.ttl) || (108..=118).contains(&r.ttl)));
        assert!(p.iter().all(|r| (5 * MS..=80 * MS).contains(&r.rtt)));
    }

    #[test]
    fn quotes_are_prefixes_of_the_datagram() {
        let d: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
        let mut d = d;
        d[0] = 0x45;
        assert_eq!(quote_bytes(&d, Quote::Rfc792), d[..28].to_vec());
        assert_eq!(quote_bytes(&d, Quote::Linux576).len(), 548);
        assert_eq!(quote_bytes(&d[..100], Quote::Linux576).len(), 100);
    }
}
