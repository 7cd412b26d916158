//! Properties of the engine over generated packet exchanges (well-formed TCP, UDP and ICMP between a few hosts
//! and ours, with correct checksums so that conntrack tracks them, plus some garbage), with lying clocks:
//! - every packet is counted exactly once: under one disposition, and, when filtered, once by the counting rules
//!   of the hooks it traversed (raw PREROUTING/OUTPUT before conntrack, filter INPUT/OUTPUT after it, unless
//!   conntrack dropped it);
//! - the table (unconfirmed entries included) never holds more than `nf_conntrack_max`, and every packet
//!   conntrack refused is one `drop` in its statistics;
//! - timestamps going backwards change nothing: an engine fed a lying clock decides, lists and schedules exactly
//!   like one fed the running maximum of those timestamps (its clock), and counts the regressions.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::Ipv4Addr;

use engine::{Decision, Disposition, Engine, Host, PacketPath};
use proptest::prelude::*;
use wire::Time;

const RULES: &str = "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING
-A OUTPUT
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT
-A OUTPUT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -p tcp -m tcp --dport 22 --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT
-A INPUT -p udp -m udp --dport 53 -j ACCEPT
-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A INPUT -p tcp -j REJECT --reject-with tcp-reset
-A OUTPUT -m conntrack --ctstate INVALID -j DROP
COMMIT
";

/// Established packets decided by their state alone, in both directions (flow-independent paths).
const STATEFUL: &str = "*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT DROP [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p udp -m udp --dport 53 -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A OUTPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A OUTPUT -p tcp -m tcp --dport 80 -j ACCEPT
-A OUTPUT -p udp -j ACCEPT
-A OUTPUT -p icmp -j ACCEPT
COMMIT
";

const US: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// One generated packet: who sends, which flow, what kind.
#[derive(Debug, Clone)]
struct Pkt {
    /// Remote host 198.51.100.(1..=4).
    peer: u8,
    /// True: we send it.
    outbound: bool,
    /// 0 TCP to :22, 1 TCP to :80, 2 UDP to :53, 3 ICMP echo, 4 garbage.
    kind: u8,
    /// Source port choice (flows recur).
    port: u16,
    /// TCP flags / ICMP type choice.
    flags: u8,
    seq: u32,
    ack: u32,
    payload: u8,
    garbage: Vec<u8>,
}

fn pkt() -> impl Strategy<Value = Pkt> {
    (
        1u8..=4,
        any::<bool>(),
        0u8..5,
        0u16..3,
        any::<u8>(),
        prop_oneof![Just(1000u32), Just(1001), any::<u32>()],
        prop_oneof![Just(0u32), Just(5001), any::<u32>()],
        0u8..40,
        prop::collection::vec(any::<u8>(), 0..60),
    )
        .prop_map(|(peer, outbound, kind, port, flags, seq, ack, payload, garbage)| Pkt {
            peer,
            outbound,
            kind,
            port,
            flags,
            seq,
            ack,
            payload,
            garbage,
        })
}

/// The IPv4 datagram of `p`, checksums right.
fn render(p: &Pkt) -> Vec<u8> {
    if p.kind == 4 {
        return p.garbage.clone();
    }
    let remote = Ipv4Addr::new(198, 51, 100, p.peer);
    let (src, dst) = if p.outbound { (US, remote) } else { (remote, US) };
    let client_port = 40_000 + p.port;
    let server = match p.kind {
        0 => 22,
        1 => 80,
        _ => 53,
    };
    // The remote host is the client; our host answers from the server port.
    let (sport, dport) = if p.outbound { (server, client_port) } else { (client_port, server) };
    let payload = vec![0x61u8; usize::from(p.payload)];
    let (proto, mut l4) = match p.kind {
        0 | 1 => {
            let flags = [0x02u8, 0x12, 0x10, 0x18, 0x11, 0x04, 0x14, p.flags][usize::from(p.flags % 8)];
            let mut t = Vec::new();
            t.extend_from_slice(&sport.to_be_bytes());
            t.extend_from_slice(&dport.to_be_bytes());
            t.extend_from_slice(&p.seq.to_be_bytes());
            t.extend_from_slice(&p.ack.to_be_bytes());
            t.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
            t.extend_from_slice(if flags & 0x02 != 0 { &[] } else { &payload[..] });
            (6u8, t)
        }
        2 => {
            let mut u = Vec::new();
            u.extend_from_slice(&sport.to_be_bytes());
            u.extend_from_slice(&dport.to_be_bytes());
            u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            u.extend_from_slice(&[0, 0]);
            u.extend_from_slice(&payload);
            (17u8, u)
        }
        _ => {
            let ty = if p.flags.is_multiple_of(2) { 8 } else { 0 };
            let mut i = vec![ty, 0, 0, 0];
            i.extend_from_slice(&p.port.to_be_bytes());
            i.extend_from_slice(&[0, 1]);
            i.extend_from_slice(&payload);
            (1u8, i)
        }
    };
    let sum = if proto == 1 {
        wire::checksum::internet_checksum(&l4)
    } else {
        wire::checksum::l4_checksum_v4(src, dst, proto, &l4)
    };
    let at = match proto {
        6 => 16,
        17 => 6,
        _ => 2,
    };
    l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, proto, 0, 0];
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = wire::checksum::internet_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&l4);
    ip
}

/// `rules` without its raw table.
fn without_raw(rules: &str) -> String {
    let start = rules.find("*raw\n").unwrap();
    let end = start + rules[start..].find("COMMIT\n").unwrap() + "COMMIT\n".len();
    format!("{}{}", &rules[..start], &rules[end..])
}

fn engine(max: u32) -> Engine {
    let mut cfg = conntrack::Config::default();
    cfg.set("net.netfilter.nf_conntrack_max", &max.to_string()).unwrap();
    let host = Host::with_locals(&["192.0.2.10/24".parse().unwrap()]);
    Engine::new(rules::parse(RULES).unwrap(), host, cfg)
}

/// Everything time-independent a decision says.
fn summary(d: &Decision) -> String {
    format!("{d:?}")
}

fn table(e: &Engine) -> String {
    let mut s = String::new();
    conntrack::write_proc(e.conntrack(), e.now(), &mut s).unwrap();
    s
}

/// A step: the packet, and how the capture's clock moved (ms; negative = backwards).
fn steps() -> impl Strategy<Value = Vec<(Pkt, i64)>> {
    prop::collection::vec(
        (pkt(), prop_oneof![4 => 0i64..2_000, 1 => -200_000i64..0, 1 => Just(0i64)]),
        1..120,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_packet_is_counted_exactly_once(steps in steps(), max in prop_oneof![Just(0u32), 1u32..6, Just(1000)]) {
        let mut e = engine(max);
        let mut now = Time::from_secs(1_000_000);
        let mut per_disposition = [0u64; 7];
        let (mut raw_pre, mut raw_out, mut filter_in, mut filter_out, mut ct_dropped) = (0u64, 0, 0, 0, 0);
        for (p, dt) in &steps {
            now = Time(now.0.saturating_add_signed(dt * 1_000_000));
            let d = e.handle_ip(now, &render(p), wire::link::PktType::Unknown);
            let slot = match &d.disposition {
                Disposition::Filtered => 0,
                Disposition::NotIp { .. } => 1,
                Disposition::NotFiltered { .. } => 2,
                Disposition::Undecodable { .. } => 3,
                Disposition::FragmentHeld => 4,
                Disposition::FragmentDropped { .. } => 5,
                Disposition::IpInputDrop { .. } => 6,
            };
            per_disposition[slot] += 1;
            if d.disposition == Disposition::Filtered {
                // Filtered: a path and a verdict; a state unless conntrack dropped the packet before the filter.
                prop_assert!(d.verdict.is_some() && d.path.is_some(), "{d:?}");
                prop_assert!(d.ctstate.is_some() != d.ct_dropped, "{d:?}");
                ct_dropped += u64::from(d.ct_dropped);
                match d.path.unwrap() {
                    PacketPath::Input => {
                        raw_pre += 1;
                        filter_in += u64::from(!d.ct_dropped);
                    }
                    PacketPath::Output => {
                        raw_out += 1;
                        filter_out += u64::from(!d.ct_dropped);
                    }
                    PacketPath::Prerouting | PacketPath::Forward => raw_pre += 1,
                    PacketPath::Loopback => prop_assert!(false, "no loopback traffic here"),
                }
            }
            // The table never holds more than the limit, unconfirmed entries included.
            if max > 0 {
                prop_assert!(e.conntrack().count() <= max as usize);
                prop_assert!(e.conntrack().len() <= max as usize);
            }
        }
        prop_assert_eq!(per_disposition.iter().sum::<u64>(), steps.len() as u64);
        prop_assert_eq!(e.stats().packets, steps.len() as u64);
        let rs = e.rule_state();
        let count = |t, c| rs.rule_counters(t, c, 1).unwrap().0;
        prop_assert_eq!(count(rules::Table::Raw, "PREROUTING"), raw_pre);
        prop_assert_eq!(count(rules::Table::Raw, "OUTPUT"), raw_out);
        prop_assert_eq!(count(rules::Table::Filter, "INPUT"), filter_in);
        prop_assert_eq!(count(rules::Table::Filter, "OUTPUT"), filter_out);
        // conntrack -S `drop`: exactly the packets conntrack refused.
        prop_assert_eq!(e.conntrack().stats().drop, ct_dropped);
        if max == 1000 {
            prop_assert_eq!(ct_dropped, 0);
        }
    }

    /// The fast path (remembered paths, the express lane, flow-independent paths and the routes lanes keep)
    /// changes nothing: every decision, in full, every counter and the table are those of the full walk, with
    /// and without a raw table.
    #[test]
    fn the_fast_path_decides_exactly_like_the_full_walk(steps in steps(), which in 0..3) {
        let rules = match which {
            0 => RULES.to_string(),
            1 => without_raw(RULES),
            // Walks decided by the state alone: shared between flows (and taken without routing again).
            _ => STATEFUL.to_string(),
        };
        let mk = |fast: bool| {
            let host = Host::with_locals(&["192.0.2.10/24".parse().unwrap()]);
            let mut e = Engine::new(rules::parse(&rules).unwrap(), host, conntrack::Config::default());
            e.set_fast_path(fast);
            e
        };
        let (mut fast, mut full) = (mk(true), mk(false));
        let mut now = Time::from_secs(1_000_000);
        for (p, dt) in &steps {
            now = Time(now.0.saturating_add_signed(dt * 1_000_000));
            let frame = render(p);
            let a = fast.handle_ip(now, &frame, wire::link::PktType::Unknown);
            let b = full.handle_ip(now, &frame, wire::link::PktType::Unknown);
            prop_assert_eq!(a, b);
        }
        let counters = |e: &Engine| e.ruleset().to_save_string(e.rule_state(), true);
        prop_assert_eq!(counters(&fast), counters(&full));
        prop_assert_eq!(table(&fast), table(&full));
        prop_assert_eq!(full.fast_path_stats().0, 0);
    }

    #[test]
    fn a_lying_clock_is_the_running_maximum(steps in steps(), max in prop_oneof![Just(3u32), Just(1000)]) {
        let mut lying = engine(max);
        let mut honest = engine(max);
        let mut now = Time::from_secs(1_000_000);
        // The engine's clock starts at 0.
        let mut latest = Time::ZERO;
        let mut regressions = 0u64;
        for (p, dt) in &steps {
            now = Time(now.0.saturating_add_signed(dt * 1_000_000));
            if now < latest {
                regressions += 1;
            }
            latest = latest.max(now);
            let bytes = render(p);
            let a = lying.handle_ip(now, &bytes, wire::link::PktType::Unknown);
            let b = honest.handle_ip(latest, &bytes, wire::link::PktType::Unknown);
            prop_assert_eq!(summary(&a), summary(&b));
            // The engine's clock is the running maximum and the next expiry is the same.
            prop_assert_eq!(lying.now(), latest);
            prop_assert_eq!(lying.poll_timeout(), honest.poll_timeout());
            // Nothing due is left pending: the next expiry is never in the engine's past.
            if let Some(t) = lying.poll_timeout() {
                prop_assert!(t >= lying.now(), "{t:?} < {:?}", lying.now());
            }
        }
        prop_assert_eq!(table(&lying), table(&honest));
        prop_assert_eq!(lying.stats().clock_regressions, regressions);
        prop_assert_eq!(honest.stats().clock_regressions, 0);
        // Expiring at a time before the clock changes nothing either.
        lying.handle_timeout(Time::from_secs(1));
        honest.handle_timeout(latest);
        prop_assert_eq!(table(&lying), table(&honest));
    }
}

/// The generator really reaches conntrack: established flows, INVALID packets and table-full drops occur.
#[test]
fn the_generator_reaches_deep_states() {
    let open = |seq, ack, flags, outbound| Pkt {
        peer: 1,
        outbound,
        kind: 0,
        port: 0,
        flags,
        seq,
        ack,
        payload: 5,
        garbage: vec![],
    };
    let mut e = engine(1000);
    let t = Time::from_secs(1_000_000);
    let syn = e.handle_ip(t, &render(&open(1000, 0, 0, false)), wire::link::PktType::Unknown);
    assert_eq!(syn.verdict, Some(engine::Verdict::Accept), "{syn:?}");
    let synack =
        e.handle_ip(t.add_nanos(1_000), &render(&open(5000, 1001, 1, true)), wire::link::PktType::Unknown);
    assert_eq!(synack.ctstate, Some(engine::CtStateLabel::Established), "{synack:?}");
    let ack =
        e.handle_ip(t.add_nanos(2_000), &render(&open(1001, 5001, 2, false)), wire::link::PktType::Unknown);
    assert_eq!(ack.ctstate, Some(engine::CtStateLabel::Established), "{ack:?}");
    assert!(e.conntrack().iter().any(|c| c.status().assured()));
    // Full table: a new flow is dropped by conntrack.
    let mut e = engine(1);
    e.handle_ip(t, &render(&open(1000, 0, 0, false)), wire::link::PktType::Unknown);
    let udp = Pkt { kind: 2, ..open(0, 0, 0, false) };
    let d = e.handle_ip(t, &render(&udp), wire::link::PktType::Unknown);
    assert!(d.ct_dropped, "{d:?}");
}
