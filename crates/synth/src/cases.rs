//! Named cases (`case:NAME`): short deterministic captures of exactly one conntrack behaviour each
//! (issue #4's list), between our host 192.0.2.10 (local, Linux) and 198.51.100.7 (Linux, 20 ms
//! away, TTL 54). The seed only varies ISNs, ports, IP ids and payload bytes; the packet sequence
//! is fixed. Ports: our ephemeral ports are 32768-60999; the peer's server ports are 443 / 22 / 80.
//!
//! | case | capture |
//! |---|---|
//! | `rst-window` | we connect to :443, request/response; the peer then sends 4 RSTs that conntrack must call INVALID without touching the entry: RST\|ACK at seq + 2^31 and RST 50 M-1 G beyond the window (out of window), RST at seq − 1 and RST\|ACK 1000-50 000 below the sequence we acknowledged (below td_maxack); our stack ignores them (RFC 5961 §3.2); one more request/response proves the flow alive; then the exact RST\|ACK (seq = our last ACK) closes it |
//! | `rst-close-wait` | we connect to :80, request/response, we close first (FIN\|ACK), the peer ACKs it (CLOSE_WAIT), 50 ms later the peer sends an in-window but inexact RST (seq = next + 1-2000); our stack answers with a challenge ACK |
//! | `retrans-acked` | we connect to :443, request; the peer's one-segment response is ACKed by us (captured) but the ACK is lost after the capture point; the peer retransmits the already-acknowledged segment after its RTO (220 ms) and we answer with a duplicate ACK carrying a D-SACK block (RFC 2883); the peer then sends a second response and the connection closes with FINs |
//! | `stale-synack` | our SYN to :443; 3 ms later a stale SYN/ACK (another ISN, ack = an older ISN of ours + 1, 100 k-5 M below the current one) which we answer with RST seq = its ack (RFC 9293 §3.10.7.3); the right SYN/ACK one RTT after the SYN, our ACK, request/response, FIN close |
//! | `syn-live-tuple` | the peer connects to our :22, request/response; 1-2 s later the (rebooted) peer sends a SYN with a new ISN on the same tuple; we answer with a challenge ACK; the peer answers that with RST seq = its ack; 1 s after its first SYN the peer's retransmitted SYN opens a new connection on the same tuple (request/response, FIN close) |
//! | `wscale-255` | the peer connects to our :22 with window scale 255 in its SYN (both stacks use 14, RFC 7323 §2.3); we answer with scale 7; 1-3 kB request, 20-60 kB response, FIN close |
//! | `all-flags` | a lone segment with all eight flags (FIN SYN RST PSH ACK URG ECE CWR) from 198.51.100.7 to our :80 (no answer), then the peer connects to our :22, request/response, sends an all-flags segment on that flow (exact seq/ack), and the connection continues (request/response, FIN close) as behind a ruleset that drops INVALID |
//! | `midstream` | our connection to :443 with its handshake (and nothing else) missing from the capture: request, response, second request/response, FIN close from us; the first captured packet is our request |
//! | `icmp-unknown` | three ICMP errors quoting flows that never existed: port unreachable from the peer quoting a whole UDP datagram of ours to its :53, host unreachable from router 203.0.113.1 quoting a TCP SYN of ours to its :443, time exceeded from 203.0.113.1 quoting an echo request of ours |
//! | `icmp6-ext-ptb` | IPv6: 2001:db8:0:1::10 connects to [2001:db8:100::7]:443; every packet of ours carries a destination options header; our first full-sized segment (1500 bytes) draws a packet too big (MTU 1280) from router 2001:db8:200::1 quoting 1232 bytes of it, extension header included; we re-send the data in smaller segments, get the response, FIN close |
//! | `overlap-frags` | three UDP queries of ours to the peer's :53, each answered by a 3000-4000-byte response in 3 fragments (no DF): the 2nd fragment of the first answer starts 24 bytes inside the 1st with the same bytes (partial overlap); the second answer's 2nd fragment overlaps the 1st by 24 bytes with different bytes (conflicting); the third answer is followed by a fragment lying entirely inside its 1st fragment with different bytes (conflicting, contained: a duplicate to Linux) |
//! | `syn-flood` | 5 clients (198.51.100.7 and 4 others) connect to our :443 and keep exchanging requests and responses every ~150 ms for 2 s; meanwhile (0.3-1.3 s) 500 SYNs from 500 spoofed sources in 203.0.113.0/24 and 198.51.100.0/24 (random ports, ISNs, windows, TTLs, IP ids, no DF, MSS option or none) hit our :80 and get no answer; then the 5 connections close with FINs |

use crate::packet::{flags, icmp_frame, tcp_frame, udp_frame, Ip4, TcpSeg, Trace, OUR_IP};
use crate::raw::{ipv4_frame, Frag4, Pseudo};
use crate::rng::Rng;
use crate::tcp::{AckLast, CloseStyle, Conn, Custom, EndCfg, Os, Side, MS, US};
use crate::world::{run_dialog, Step};
use crate::SynthError;
use etherparse::{icmpv4::DestUnreachableHeader, icmpv4::TimeExceededCode, Icmpv4Type};
use wire::Time;

/// The peer of every case.
pub(crate) const PEER: [u8; 4] = [198, 51, 100, 7];
const PEER_TTL: u8 = 54;
const RTT: u64 = 20 * MS;
/// The router between us and the peer.
const ROUTER: [u8; 4] = [203, 0, 113, 1];

type CaseFn = fn(&mut Rng, Time) -> Result<Trace, SynthError>;

/// The named cases, in documentation order.
pub(crate) const CASES: &[(&str, CaseFn)] = &[
    ("case:rst-window", rst_window),
    ("case:rst-close-wait", rst_close_wait),
    ("case:retrans-acked", retrans_acked),
    ("case:stale-synack", stale_synack),
    ("case:syn-live-tuple", syn_live_tuple),
    ("case:wscale-255", wscale_255),
    ("case:all-flags", all_flags),
    ("case:midstream", midstream),
    ("case:icmp-unknown", icmp_unknown),
    ("case:icmp6-ext-ptb", icmp6_ext_ptb),
    ("case:overlap-frags", overlap_frags),
    ("case:syn-flood", syn_flood),
];

/// Generates the case `name` (with its `case:` prefix).
pub(crate) fn generate(name: &str, seed: u64, start: Time) -> Result<Vec<crate::Frame>, SynthError> {
    let (_, f) = CASES
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| SynthError::UnknownScenario(name.to_string()))?;
    let mut rng = Rng::new(seed ^ 0xca5e_0000_0000_0000);
    f(&mut rng, Time(start.as_nanos() / US * US))?.finish_checked()
}

fn ours(port: u16) -> EndCfg {
    EndCfg { ip: OUR_IP, port, ttl: 64, os: Os::Linux, mss: 1460, local: true }
}

fn peer(port: u16) -> EndCfg {
    EndCfg { ip: PEER, port, ttl: PEER_TTL, os: Os::Linux, mss: 1460, local: false }
}

fn eph(rng: &mut Rng) -> u16 {
    rng.range_u16(32768, 60999)
}

/// We connect to the peer's `port`.
fn outbound(rng: &mut Rng, port: u16) -> Conn {
    let p = eph(rng);
    Conn::new(ours(p), peer(port), RTT, rng)
}

/// The peer connects to our `port`.
fn inbound(rng: &mut Rng, port: u16) -> Conn {
    let p = eph(rng);
    Conn::new(peer(p), ours(port), RTT, rng)
}

/// Handshake, then a request from A and a response from B (ACKed at once); returns the time of
/// the last packet.
fn open_exchange(
    tr: &mut Trace,
    rng: &mut Rng,
    c: &mut Conn,
    t: Time,
    resp: usize,
) -> Result<Time, SynthError> {
    let t3 = c.open(tr, t)?;
    exchange(tr, rng, c, t3, Side::A, resp)
}

/// A request from A `think` after `t` (seen from `after`), and B's response ACKed at once.
fn exchange(
    tr: &mut Trace,
    rng: &mut Rng,
    c: &mut Conn,
    t: Time,
    after: Side,
    resp: usize,
) -> Result<Time, SynthError> {
    let think = rng.range(200, 2_000) * US;
    let ts = c.react(t, after, Side::A, think);
    let n = rng.range_usize(50, 400);
    let (d, _) = c.transfer(tr, ts, Side::A, &rng.bytes(n), AckLast::Piggyback)?;
    let d2 = c.react(d, Side::A, Side::B, 300 * US);
    let (_, a) = c.transfer(tr, d2, Side::B, &rng.bytes(resp), AckLast::Now)?;
    Ok(a)
}

fn rst_window(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new();
    let mut c = outbound(rng, 443);
    let mut tt = open_exchange(&mut tr, rng, &mut c, t, 2_000)?;
    let nxt = c.b.snd_nxt;
    let odd = [
        (flags::RST | flags::ACK, nxt.wrapping_add(0x8000_0000)),
        (flags::RST, nxt.wrapping_add(rng.range_u32(50_000_000, 1_000_000_000))),
        (flags::RST, nxt.wrapping_sub(1)),
        (flags::RST | flags::ACK, nxt.wrapping_sub(rng.range_u32(1_000, 50_000))),
    ];
    for (fl, seq) in odd {
        tt = tt.add_nanos(rng.range(50, 150) * MS);
        let ack = if fl & flags::ACK != 0 { None } else { Some(0) };
        let custom = Custom { flags: fl, seq: Some(seq), ack, win: Some(0), ..Custom::default() };
        c.send_with(&mut tr, tt, Side::B, custom)?;
    }
    let tt = exchange(&mut tr, rng, &mut c, tt.add_nanos(100 * MS), Side::B, 500)?;
    let exact = Custom { flags: flags::RST | flags::ACK, win: Some(0), ..Custom::default() };
    c.send_with(&mut tr, tt.add_nanos(rng.range(50, 150) * MS), Side::B, exact)?;
    Ok(tr)
}

fn rst_close_wait(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new();
    let mut c = outbound(rng, 80);
    let tt = open_exchange(&mut tr, rng, &mut c, t, 1_500)?;
    let tf = tt.add_nanos(rng.range(1, 30) * MS);
    c.send(&mut tr, tf, Side::A, flags::FIN | flags::ACK, &[])?;
    let ta = c.react(tf, Side::A, Side::B, 50 * US);
    c.send(&mut tr, ta, Side::B, flags::ACK, &[])?;
    let tr_t = ta.add_nanos(50 * MS);
    let seq = c.b.snd_nxt.wrapping_add(rng.range_u32(1, 2_000));
    let rst = Custom { flags: flags::RST | flags::ACK, seq: Some(seq), win: Some(0), ..Custom::default() };
    c.send_with(&mut tr, tr_t, Side::B, rst)?;
    // RFC 5961 §3.2: an in-window RST that is not exact draws a challenge ACK.
    let ack = Custom { flags: flags::ACK, ..Custom::default() };
    c.send_with(&mut tr, tr_t.add_nanos(40 * US), Side::A, ack)?;
    Ok(tr)
}

fn retrans_acked(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new();
    let mut c = outbound(rng, 443);
    let t3 = c.open(&mut tr, t)?;
    let n = rng.range_usize(50, 400);
    let (d, _) = c.transfer(&mut tr, t3, Side::A, &rng.bytes(n), AckLast::Piggyback)?;
    let n = rng.range_usize(200, 1_200);
    let data = rng.bytes(n);
    let s =
        c.send(&mut tr, c.react(d, Side::A, Side::B, 300 * US), Side::B, flags::ACK | flags::PSH, &data)?;
    // Our ACK is captured, then lost on the way to the peer.
    let ta = s.t.add_nanos(c.stack_delay());
    c.send(&mut tr, ta, Side::A, flags::ACK, &[])?;
    let again = c.send_with(
        &mut tr,
        s.t.add_nanos(220 * MS),
        Side::B,
        Custom { flags: flags::ACK | flags::PSH, payload: data, seq: Some(s.seq), ..Custom::default() },
    )?;
    let dsack = Custom {
        flags: flags::ACK,
        sack: vec![(s.seq, s.end)],
        deliver: true,
        advance: true,
        ..Custom::default()
    };
    let td = again.t.add_nanos(c.stack_delay());
    c.send_with(&mut tr, td, Side::A, dsack)?;
    let n = rng.range_usize(100, 3_000);
    let (_, a) =
        c.transfer(&mut tr, c.react(td, Side::A, Side::B, MS), Side::B, &rng.bytes(n), AckLast::Now)?;
    c.close(&mut tr, a.add_nanos(20 * MS), Side::A, CloseStyle::Combined)?;
    Ok(tr)
}

fn stale_synack(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new();
    let mut c = outbound(rng, 443);
    c.send(&mut tr, t, Side::A, flags::SYN, &[])?;
    c.negotiate();
    let stale_ack = c.a.isn.wrapping_sub(rng.range_u32(100_000, 5_000_000));
    let stale = Custom {
        flags: flags::SYN | flags::ACK,
        seq: Some(rng.next_u32()),
        ack: Some(stale_ack),
        ..Custom::default()
    };
    let ts = t.add_nanos(3 * MS);
    c.send_with(&mut tr, ts, Side::B, stale)?;
    // Linux answers from SYN_SENT with a bare RST without options (tcp_v4_send_reset).
    let ip = Ip4 { src: OUR_IP, dst: PEER, ttl: 64, id: 0, df: true, tos: 0 };
    let rst = TcpSeg {
        sport: c.a.cfg.port,
        dport: 443,
        seq: stale_ack,
        ack: 0,
        flags: flags::RST,
        win: 0,
        options: &[],
        payload: &[],
    };
    tr.push(ts.add_nanos(30 * US), tcp_frame(&ip, &rst)?);
    let t2 = c.react(t, Side::A, Side::B, 60 * US);
    c.send(&mut tr, t2, Side::B, flags::SYN | flags::ACK, &[])?;
    let t3 = t2.add_nanos(c.stack_delay());
    c.send(&mut tr, t3, Side::A, flags::ACK, &[])?;
    let a = exchange(&mut tr, rng, &mut c, t3, Side::A, 1_800)?;
    c.close(&mut tr, a.add_nanos(10 * MS), Side::A, CloseStyle::Combined)?;
    Ok(tr)
}

fn syn_live_tuple(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new();
    let mut c = inbound(rng, 22);
    let tt = open_exchange(&mut tr, rng, &mut c, t, 900)?;
    let new_isn = rng.next_u32();
    let ts = tt.add_nanos(rng.range(1_000, 2_000) * MS);
    let syn = Custom { flags: flags::SYN, seq: Some(new_isn), ..Custom::default() };
    c.send_with(&mut tr, ts, Side::A, syn)?;
    let tc = ts.add_nanos(c.stack_delay());
    c.send(&mut tr, tc, Side::B, flags::ACK, &[])?;
    // The peer has no such connection: RST with seq = the ack it received (RFC 9293 §3.10.7.1).
    let ack_value = c.b.rcv_nxt;
    let rst =
        Custom { flags: flags::RST, seq: Some(ack_value), ack: Some(0), win: Some(0), ..Custom::default() };
    c.send_with(&mut tr, c.react(tc, Side::B, Side::A, 50 * US), Side::A, rst)?;
    let mut c2 = Conn::new(c.a.cfg, c.b.cfg, c.rtt, rng);
    c2.a.isn = new_isn;
    c2.a.snd_nxt = new_isn;
    c2.a.peer_edge = new_isn;
    let steps = [
        crate::random::msg(rng, Side::A, 1, 800),
        crate::random::msg(rng, Side::B, 1, 800),
        Step::Close { first: Side::A, style: CloseStyle::Combined, think_us: 5_000 },
    ];
    run_dialog(&mut tr, &mut c2, ts.add_nanos(1_000 * MS), &steps)?;
    Ok(tr)
}

fn wscale_255(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new();
    let mut c = inbound(rng, 22);
    c.a.ws_offer = Some(255);
    let steps = [
        crate::random::msg(rng, Side::A, 1_000, 3_000),
        crate::random::msg(rng, Side::B, 20_000, 60_000),
        Step::Close { first: Side::A, style: CloseStyle::Combined, think_us: 20_000 },
    ];
    run_dialog(&mut tr, &mut c, t, &steps)?;
    Ok(tr)
}

fn all_flags(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new();
    let ip = Ip4 { src: PEER, dst: OUR_IP, ttl: PEER_TTL, id: rng.next_u16(), df: false, tos: 0 };
    let seg = TcpSeg {
        sport: rng.range_u16(1024, 65535),
        dport: 80,
        seq: rng.next_u32(),
        ack: rng.next_u32(),
        flags: 0xff,
        win: 1024,
        options: &[],
        payload: &[],
    };
    tr.push(t, tcp_frame(&ip, &seg)?);
    let mut c = inbound(rng, 22);
    let tt = open_exchange(&mut tr, rng, &mut c, t.add_nanos(200 * MS), 700)?;
    let weird = Custom { flags: 0xff, ..Custom::default() };
    let tw = tt.add_nanos(rng.range(20, 200) * MS);
    c.send_with(&mut tr, tw, Side::A, weird)?;
    let ta = exchange(&mut tr, rng, &mut c, tw.add_nanos(50 * MS), Side::A, 1_200)?;
    c.close(&mut tr, ta.add_nanos(10 * MS), Side::A, CloseStyle::Combined)?;
    Ok(tr)
}

fn midstream(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new();
    let mut c = outbound(rng, 443);
    let steps = [
        crate::random::msg(rng, Side::A, 100, 800),
        crate::random::msg(rng, Side::B, 500, 6_000),
        crate::random::msg(rng, Side::A, 100, 800),
        crate::random::msg(rng, Side::B, 500, 3_000),
        Step::Close { first: Side::A, style: CloseStyle::Combined, think_us: 30_000 },
    ];
    // The handshake happened before the capture started: drop it.
    run_dialog(&mut tr, &mut c, t, &steps)?;
    for i in 0..3 {
        let id = tr.id_at(i);
        tr.remove(id);
    }
    Ok(tr)
}

fn icmp_unknown(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new();
    let mine = |id: u16| Ip4 { src: OUR_IP, dst: PEER, ttl: 64, id, df: true, tos: 0 };
    let dgram = |f: Vec<u8>| crate::packet::ip_datagram(&f).map(<[u8]>::to_vec).unwrap_or_default();
    // A DNS query of ours that was never sent: quoted whole by the peer's stack.
    let n = rng.range_usize(20, 60);
    let q = dgram(udp_frame(&mine(0), eph(rng), 53, &rng.bytes(n))?);
    let err = |src, id| Ip4 { src, dst: OUR_IP, ttl: PEER_TTL, id, df: false, tos: 0xc0 };
    tr.push(
        t,
        icmp_frame(
            &err(PEER, rng.next_u16()),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
            &q,
        )?,
    );
    // A SYN of ours that was never sent: IP header + 8 bytes quoted by a router.
    let syn = TcpSeg {
        sport: eph(rng),
        dport: 443,
        seq: rng.next_u32(),
        ack: 0,
        flags: flags::SYN,
        win: 64240,
        options: &[2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7],
        payload: &[],
    };
    let s = dgram(tcp_frame(&mine(rng.next_u16()), &syn)?);
    let r = Ip4 { ttl: 250, ..err(ROUTER, rng.next_u16()) };
    let unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Host);
    tr.push(t.add_nanos(300 * MS), icmp_frame(&r, unreach, s.get(..28).unwrap_or_default())?);
    // An echo request of ours that was never sent, expired in transit.
    let hdr = etherparse::IcmpEchoHeader { id: rng.next_u16(), seq: 1 };
    let e = dgram(icmp_frame(
        &Ip4 { ttl: 1, ..mine(rng.next_u16()) },
        Icmpv4Type::EchoRequest(hdr),
        &rng.bytes(56),
    )?);
    let r = Ip4 { ttl: 250, ..err(ROUTER, rng.next_u16()) };
    let te = Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit);
    tr.push(t.add_nanos(600 * MS), icmp_frame(&r, te, e.get(..28).unwrap_or_default())?);
    Ok(tr)
}

fn icmp6_ext_ptb(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new_v6();
    tr.set_ext(Some(crate::v6::ExtPlan {
        inside: OUR_IP,
        inside_ext: vec![crate::raw::Ext::DestOpts],
        other_ext: Vec::new(),
    }));
    let p = eph(rng);
    let mut c = Conn::new(EndCfg { mss: 1440, ..ours(p) }, EndCfg { mss: 1440, ..peer(443) }, RTT, rng);
    c.v6 = true;
    c.ext_len = (8, 0);
    let n = c.mss_after_handshake(Side::A) as usize;
    let steps = [
        Step::Pmtu {
            data: rng.bytes(n),
            think_us: 500,
            router: ROUTER,
            router_ttl: 250,
            router_ip_id: 0,
            mtu: 1280,
        },
        crate::random::msg(rng, Side::B, 500, 3_000),
        Step::Close { first: Side::A, style: CloseStyle::Combined, think_us: 20_000 },
    ];
    run_dialog(&mut tr, &mut c, t, &steps)?;
    Ok(tr)
}

fn overlap_frags(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new();
    let mut tt = t;
    for variant in 0..3 {
        let qport = eph(rng);
        let n = rng.range_usize(30, 60);
        let q = Ip4 { src: OUR_IP, dst: PEER, ttl: 64, id: 0, df: true, tos: 0 };
        tr.push(tt, udp_frame(&q, qport, 53, &rng.bytes(n))?);
        let n = rng.range_usize(3_000, 4_000);
        let answer = crate::raw::udp_bytes(Pseudo::V4(PEER, OUR_IP), 53, qport, &rng.bytes(n))?;
        let ip = Ip4 { src: PEER, dst: OUR_IP, ttl: PEER_TTL, id: rng.next_u16(), df: false, tos: 0 };
        let total = answer.len();
        let slice = |a: usize, b: usize| answer.get(a..b).map(<[u8]>::to_vec).unwrap_or_default();
        // (offset, bytes, more fragments); fragments stay within a 1500-byte MTU.
        let pieces: Vec<(usize, Vec<u8>, bool)> = match variant {
            // The 2nd fragment starts 24 bytes inside the 1st, same bytes.
            0 => vec![
                (0, slice(0, 1480), true),
                (1456, slice(1456, 2936), true),
                (2936, slice(2936, total), false),
            ],
            // The same overlap, with different bytes in the overlapping 24.
            1 => {
                let mut b = rng.bytes(24);
                b.extend_from_slice(&slice(1480, 2936));
                vec![(0, slice(0, 1480), true), (1456, b, true), (2936, slice(2936, total), false)]
            }
            // A late fragment entirely inside the 1st, different bytes.
            _ => vec![
                (0, slice(0, 1480), true),
                (1480, slice(1480, 2960), true),
                (2960, slice(2960, total), false),
                (400, rng.bytes(512), true),
            ],
        };
        let mut tf = tt.add_nanos(RTT + rng.range(100, 900) * US);
        for (off, bytes, more) in pieces {
            tr.push(tf, ipv4_frame(&ip, 17, Some(Frag4 { offset8: (off / 8) as u16, more }), &bytes)?);
            tf = tf.add_nanos(130 * US);
        }
        tt = tf.add_nanos(rng.range(200, 600) * MS);
    }
    Ok(tr)
}

fn syn_flood(rng: &mut Rng, t: Time) -> Result<Trace, SynthError> {
    let mut tr = Trace::new();
    let clients = [PEER, [198, 51, 100, 21], [198, 51, 100, 160], [203, 0, 113, 45], [203, 0, 113, 200]];
    for (k, ip) in clients.iter().enumerate() {
        let rtt = (10 + 7 * k as u64) * MS;
        let p = eph(rng);
        let mut c = Conn::new(EndCfg { ip: *ip, ..peer(p) }, ours(443), rtt, rng);
        let mut steps = Vec::new();
        for _ in 0..12 {
            steps.push(Step::Msg {
                from: Side::A,
                data: {
                    let n = rng.range_usize(40, 300);
                    rng.bytes(n)
                },
                think_us: rng.range(100_000, 160_000),
            });
            steps.push(Step::Msg {
                from: Side::B,
                data: {
                    let n = rng.range_usize(200, 4_000);
                    rng.bytes(n)
                },
                think_us: rng.range(200, 2_000),
            });
        }
        steps.push(Step::Close { first: Side::A, style: CloseStyle::Combined, think_us: 50_000 });
        run_dialog(&mut tr, &mut c, t.add_nanos(k as u64 * 23 * MS), &steps)?;
    }
    // 500 distinct spoofed sources (none of the clients), 2 ms apart.
    let mut sources: Vec<[u8; 4]> = (1u8..=254)
        .flat_map(|d| [[198, 51, 100, d], [203, 0, 113, d]])
        .filter(|s| !clients.contains(s))
        .collect();
    rng.shuffle(&mut sources);
    let flood = t.add_nanos(300 * MS);
    for (i, src) in sources.iter().take(500).enumerate() {
        let ip = Ip4 {
            src: *src,
            dst: OUR_IP,
            ttl: rng.range(40, 250) as u8,
            id: rng.next_u16(),
            df: false,
            tos: 0,
        };
        let mss: &[u8] = if rng.chance(50) { &[2, 4, 5, 180] } else { &[] };
        let seg = TcpSeg {
            sport: rng.range_u16(1024, 65535),
            dport: 80,
            seq: rng.next_u32(),
            ack: 0,
            flags: flags::SYN,
            win: *rng.pick(&[512u16, 1024, 5840, 29200, 64240]).unwrap_or(&1024),
            options: mss,
            payload: &[],
        };
        tr.push(flood.add_nanos(i as u64 * 2 * MS + rng.range(0, 1_500) * US), tcp_frame(&ip, &seg)?);
    }
    Ok(tr)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::check::{check_tcp, key4, tcp_segments, verify_checksums, Seg};
    use crate::Frame;

    fn case(name: &str) -> Vec<Frame> {
        generate(&format!("case:{name}"), 1, crate::DEFAULT_START).unwrap()
    }

    fn segs(name: &str) -> Vec<Seg> {
        tcp_segments(&case(name))
    }

    fn from_peer(s: &Seg) -> bool {
        s.src.0 == key4(PEER)
    }

    #[test]
    fn every_case_is_valid_deterministic_and_seeded() {
        assert_eq!(CASES.len(), 12);
        for (name, _) in CASES {
            assert!(crate::scenario_names().contains(name), "{name} not listed");
            let a = generate(name, 1, crate::DEFAULT_START).unwrap();
            assert_eq!(a, generate(name, 1, crate::DEFAULT_START).unwrap(), "{name}");
            assert_ne!(a, generate(name, 2, crate::DEFAULT_START).unwrap(), "{name} ignores the seed");
            assert!(a.windows(2).all(|w| w[0].ts <= w[1].ts), "{name}");
            assert!(a[0].ts.nanos_since(crate::DEFAULT_START) < 100 * MS, "{name}");
            for (i, f) in a.iter().enumerate() {
                verify_checksums(&f.data).unwrap_or_else(|e| panic!("{name} frame {i}: {e}"));
                etherparse::SlicedPacket::from_ethernet(&f.data).unwrap();
                assert!(f.data.len() <= 1514, "{name} frame {i}");
            }
        }
        assert!(generate("case:nope", 1, crate::DEFAULT_START).is_err());
    }

    #[test]
    fn protocol_correct_cases_pass_the_tcp_checker() {
        for name in ["retrans-acked", "wscale-255", "icmp6-ext-ptb", "syn-flood"] {
            let r = check_tcp(&case(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!r.is_empty(), "{name}");
        }
        // The others break a checker invariant on purpose.
        for name in
            ["rst-window", "stale-synack", "syn-live-tuple", "all-flags", "midstream", "rst-close-wait"]
        {
            assert!(check_tcp(&case(name)).is_err(), "{name}");
        }
    }

    #[test]
    fn rst_window_four_odd_rsts_then_the_exact_one() {
        let s = segs("rst-window");
        let our_ack =
            |before: usize| s[..before].iter().filter(|x| !from_peer(x)).map(|x| x.ack).next_back().unwrap();
        let rsts: Vec<usize> = (0..s.len()).filter(|&i| s[i].rst).collect();
        assert_eq!(rsts.len(), 5);
        assert!(rsts.iter().all(|&i| from_peer(&s[i])));
        for &i in &rsts[..4] {
            let d = s[i].seq.wrapping_sub(our_ack(i)) as i32;
            assert!(!(0..=1_000_000).contains(&d), "odd RST {d} from the acknowledged sequence");
        }
        let last = *rsts.last().unwrap();
        assert_eq!(last, s.len() - 1);
        assert_eq!(s[last].seq, our_ack(last));
        // The flow is used between the odd RSTs and the exact one.
        assert!(s[rsts[3]..last].iter().any(|x| x.len > 0 && !from_peer(x)));
    }

    #[test]
    fn rst_close_wait_inexact_rst_after_our_acked_fin() {
        let s = segs("rst-close-wait");
        let n = s.len();
        let (fin, ack, rst, chal) = (&s[n - 4], &s[n - 3], &s[n - 2], &s[n - 1]);
        assert!(fin.fin && !from_peer(fin));
        assert!(from_peer(ack) && ack.ack == fin.seq + 1 && !ack.fin);
        assert!(from_peer(rst) && rst.rst);
        let off = rst.seq.wrapping_sub(ack.seq);
        assert!((1..=2_000).contains(&off), "{off}");
        assert!(!from_peer(chal) && chal.ackf && chal.ack == ack.seq);
    }

    #[test]
    fn retrans_acked_resends_data_we_acknowledged() {
        let s = segs("retrans-acked");
        let (i, d) = s.iter().enumerate().find(|(_, x)| from_peer(x) && x.len > 0).unwrap();
        let j = s.iter().rposition(|x| from_peer(x) && x.seq == d.seq && x.len == d.len).unwrap();
        assert!(j > i);
        assert!(s[i + 1..j].iter().any(|x| !from_peer(x) && x.ack == d.seq + d.len));
        let r = check_tcp(&case("retrans-acked")).unwrap();
        assert_eq!(r[0].retransmissions, 1);
    }

    #[test]
    fn stale_synack_is_reset_then_the_right_one_arrives() {
        let s = segs("stale-synack");
        assert!(s[0].syn && !s[0].ackf);
        assert!(s[1].syn && s[1].ackf && s[1].ack != s[0].seq + 1);
        assert!(s[2].rst && !s[2].ackf && s[2].seq == s[1].ack && !from_peer(&s[2]));
        assert!(s[3].syn && s[3].ackf && s[3].ack == s[0].seq + 1);
    }

    #[test]
    fn syn_live_tuple_challenge_ack_rst_new_connection() {
        let s = segs("syn-live-tuple");
        let syns: Vec<&Seg> = s.iter().filter(|x| x.syn && !x.ackf).collect();
        assert_eq!(syns.len(), 3);
        assert!(syns.iter().all(|x| x.src == syns[0].src && x.dst == syns[0].dst));
        assert_ne!(syns[0].seq, syns[1].seq);
        assert_eq!(syns[1].seq, syns[2].seq);
        let k = s.iter().position(|x| x.syn && x.seq == syns[1].seq).unwrap();
        assert!(!from_peer(&s[k + 1]) && s[k + 1].ackf && !s[k + 1].syn);
        assert!(s[k + 2].rst && s[k + 2].seq == s[k + 1].ack);
        assert!(s.iter().filter(|x| x.syn && x.ackf).count() == 2);
    }

    #[test]
    fn wscale_255_offered_and_answered_with_7() {
        let s = segs("wscale-255");
        assert_eq!((s[0].wscale, s[1].wscale), (Some(255), Some(7)));
        assert!(s.iter().filter(|x| from_peer(x)).map(|x| x.len).sum::<u32>() >= 1_000);
        assert!(s.iter().filter(|x| !from_peer(x)).map(|x| x.len).sum::<u32>() >= 20_000);
    }

    #[test]
    fn all_flags_alone_and_on_a_flow() {
        let f = case("all-flags");
        let all: Vec<usize> = (0..f.len()).filter(|&i| f[i].data[47] == 0xff).collect();
        assert_eq!(all.len(), 2);
        let s = tcp_segments(&f);
        let lone = &s[all[0]];
        assert_eq!(s.iter().filter(|x| x.src == lone.src).count(), 1);
        let on_flow = &s[all[1]];
        assert!(s.iter().filter(|x| x.src == on_flow.src).count() > 5);
        assert!(s[all[1] + 1..].iter().any(|x| x.src == on_flow.src && x.len > 0));
    }

    #[test]
    fn midstream_starts_with_our_data() {
        let s = segs("midstream");
        assert!(s.iter().all(|x| !x.syn));
        assert!(!from_peer(&s[0]) && s[0].len > 0);
        assert!(s.iter().any(|x| x.fin));
    }

    #[test]
    fn icmp_unknown_quotes_packets_never_sent() {
        let f = case("icmp-unknown");
        assert_eq!(f.len(), 3);
        let types: Vec<(u8, u8)> = f.iter().map(|x| (x.data[34], x.data[35])).collect();
        assert_eq!(types, vec![(3, 3), (3, 1), (11, 0)]);
        for x in &f {
            assert_eq!(x.data[42 + 12..42 + 16], OUR_IP);
            assert_eq!(x.data[42 + 16..42 + 20], PEER);
        }
    }

    #[test]
    fn icmp6_ptb_quotes_our_segment_with_its_destination_options() {
        let f = case("icmp6-ext-ptb");
        let i = f.iter().position(|x| x.data[20] == 58).unwrap();
        let ip = crate::v6::ip6_datagram(&f[i].data).unwrap();
        assert_eq!((ip[40], u32::from_be_bytes(ip[44..48].try_into().unwrap())), (2, 1280));
        let q = &ip[48..];
        assert_eq!((q.len(), q[6], q[40]), (1232, 60, 6));
        assert!(f[..i].iter().any(|g| crate::v6::ip6_datagram(&g.data).is_some_and(|d| d.starts_with(q))));
        // Everything after the error fits the 1280-byte path.
        for g in &f[i + 1..] {
            if g.data[6..12] == crate::packet::OUR_MAC {
                assert!(g.data.len() - 14 <= 1280);
            }
        }
    }

    #[test]
    fn overlap_frags_one_overlap_one_conflict_one_contained() {
        let f = case("overlap-frags");
        let (done, discarded) = crate::check::reassemble(&f);
        // Partial overlaps discard the first two answers; the third is rebuilt with its first bytes.
        assert_eq!((done.len(), discarded), (1, 2));
        assert!(done[0].ok);
        assert!(f.iter().all(|x| x.data.len() <= 1514));
        assert_eq!(f.len(), 3 * 4 + 1);
    }

    #[test]
    fn syn_flood_500_sources_while_5_flows_talk() {
        let f = case("syn-flood");
        let s = tcp_segments(&f);
        let flood: Vec<&Seg> = s.iter().filter(|x| x.dst.1 == 80).collect();
        assert_eq!(flood.len(), 500);
        assert!(flood.iter().all(|x| x.syn && !x.ackf));
        let srcs: std::collections::BTreeSet<_> = flood.iter().map(|x| x.src.0).collect();
        assert_eq!(srcs.len(), 500);
        let (t0, t1) = (f[flood[0].idx].ts, f[flood[499].idx].ts);
        assert!(t1.nanos_since(t0) <= 1_100 * MS);
        let during = s.iter().filter(|x| x.len > 0 && f[x.idx].ts > t0 && f[x.idx].ts < t1).count();
        assert!(during >= 20, "{during} data segments during the flood");
        let reports = check_tcp(&f).unwrap();
        assert_eq!(reports.len(), 5);
    }
}
