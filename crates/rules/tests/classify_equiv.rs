//! The classifier walk ([`Ruleset::evaluate`]) against the linear reference walk
//! ([`Ruleset::evaluate_linear`]): random rulesets (prefixes, port ranges, protocols, states,
//! devices, negations, limits, marks, jumps, gotos, RETURNs, NOTRACK/CT) and random packets
//! (including fragments, short headers and odd TCP data offsets) must give the same verdict,
//! deciding rule, effects, marks, conntrack view, TRACE and, after every packet, the same counters
//! and limit buckets.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use rules::{
    status, CtMatch, CtState, CtView, Family, Hook, PacketCtx, PktType, RuleState, Ruleset, Table,
    UnicastHost,
};
use wire::Time;

const SRC: &[&str] = &[
    "",
    "-s 10.0.0.0/8",
    "-s 10.1.0.0/16",
    "-s 10.1.2.0/24",
    "-s 10.1.2.3",
    "-s 10.1.2.4/31",
    "! -s 10.1.2.0/24",
    "-s 10.0.1.0/255.0.255.0",
    "-s 128.0.0.0/1",
    "-s 192.0.2.0/24",
];
const DST: &[&str] = &[
    "",
    "-d 192.0.2.10",
    "-d 192.0.2.0/24",
    "-d 192.0.0.0/8",
    "! -d 192.0.2.10",
    "-d 10.1.2.3",
    "-d 0.0.0.0/0",
    "-d 198.18.0.0/15",
];
const IFACE: &[&str] = &["", "-i eth0", "-i eth+", "! -i eth1", "-o eth1", "-i lo", "! -o eth0"];
/// Protocol and transport matches (each needing its own `-p`).
const L4: &[&str] = &[
    "",
    "-p tcp",
    "-p udp",
    "-p icmp",
    "! -p tcp",
    "-p 47",
    "-p tcp -m tcp --dport 22",
    "-p tcp -m tcp --dport 80",
    "-p tcp -m tcp --dport 1000:2000",
    "-p tcp -m tcp --dport 1024:65535",
    "-p tcp -m tcp ! --dport 80",
    "-p tcp -m tcp --sport 1024: --dport 22",
    "-p tcp -m tcp --sport 80",
    "-p tcp -m tcp --tcp-flags SYN,ACK SYN --dport 80",
    "-p tcp -m tcp --tcp-option 2 --dport 22",
    "-p tcp -m tcp --tcp-option 3 -m multiport --dports 22,80",
    "-p tcp -m tcp --tcp-option 3",
    "-p udp -m udp --dport 53",
    "-p udp -m udp --dport 1000:1100",
    "-p udp -m udp --sport 53",
    "-p udp -m udp ! --sport 53",
    "-p tcp -m multiport --dports 22,80,1000:1100",
    "-p udp -m multiport --sports 53,1024:2000",
    "-p tcp -m multiport ! --dports 22,80",
    "-p tcp -m multiport --ports 80,1500",
    "-p icmp -m icmp --icmp-type 8",
    "-p icmp -m icmp --icmp-type any",
    "-f",
    "! -f -p udp",
    "-p tcp -m limit --limit 2/sec --limit-burst 2 -m tcp --dport 80",
    "-p tcp -m tcp --dport 80 -m limit --limit 2/sec --limit-burst 2",
];
const EXTRA: &[&str] = &[
    "",
    "",
    "-m conntrack --ctstate NEW",
    "-m conntrack --ctstate RELATED,ESTABLISHED",
    "-m conntrack --ctstate INVALID",
    "-m conntrack ! --ctstate NEW",
    "-m conntrack --ctstate UNTRACKED",
    "-m conntrack --ctstate SNAT",
    "-m state --state NEW",
    "-m state --state ESTABLISHED",
    "-m mark --mark 0x1/0x1",
    "-m length --length 0:60",
    "-m limit --limit 1/sec --limit-burst 1",
    "-m comment --comment x",
    "-m ttl --ttl-gt 10",
];
const TARGET: &[&str] = &[
    "-j ACCEPT",
    "-j DROP",
    "-j REJECT",
    "",
    "-j RETURN",
    "-j LOG",
    "-j MARK --set-xmark 0x1/0x1",
    "-j JUMP",
    "-j GOTO",
    "-j ACCEPT",
    "-j DROP",
];

type RuleIdx = (usize, usize, usize, usize, usize, usize, usize);

fn rule_strategy() -> impl Strategy<Value = RuleIdx> {
    (0..SRC.len(), 0..DST.len(), 0..IFACE.len(), 0..L4.len(), 0..EXTRA.len(), 0..TARGET.len(), 0usize..4)
}

const CHAINS: [&str; 4] = ["INPUT", "c1", "c2", "c3"];

/// A filter table; chain `i` only jumps to chains after it (no loops). `raw` adds a raw PREROUTING
/// chain with NOTRACK / CT rules followed by state tests.
fn ruleset_text(chains: &[Vec<RuleIdx>], raw: &[RuleIdx]) -> String {
    let mut s = String::new();
    if !raw.is_empty() {
        s.push_str("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:r1 - [0:0]\n");
        // A user chain that changes the conntrack state the caller's index looked up.
        s.push_str("-A r1 -p udp -j NOTRACK\n-A r1 -s 10.0.0.0/8 -j CT --ctevents new\n");
        s.push_str("-A r1 -p tcp -m tcp --dport 80 -j CT --notrack\n");
        for (i, &(src, dst, _, l4, extra, target, _)) in raw.iter().enumerate() {
            let t = match (target + i) % 6 {
                5 => "-j r1",
                0 => "-j NOTRACK",
                1 => "-j CT --notrack",
                2 => "-j CT --ctevents new",
                3 => "",
                _ => ["-j ACCEPT", "-j DROP"][i % 2],
            };
            let t = if i % 3 == 0 && target < 6 { "" } else { t };
            s.push_str(&format!("-A PREROUTING {} {} {} {} {t}\n", SRC[src], DST[dst], L4[l4], EXTRA[extra]));
        }
        s.push_str("COMMIT\n");
    }
    s.push_str("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for c in &CHAINS[1..] {
        s.push_str(&format!(":{c} - [0:0]\n"));
    }
    for (ci, rules) in chains.iter().enumerate() {
        for &(src, dst, iface, l4, extra, target, to) in rules {
            let later = CHAINS.len() - 1 - ci;
            let mut t = TARGET[target].to_string();
            if t.contains("JUMP") || t.contains("GOTO") {
                if later == 0 {
                    t = "-j RETURN".into();
                } else {
                    let dest = CHAINS[ci + 1 + to % later];
                    t = if t.contains("JUMP") { format!("-j {dest}") } else { format!("-g {dest}") };
                }
            }
            if ci == 0 && t == "-j RETURN" {
                t = "-j ACCEPT".into();
            }
            // `-o` is refused in INPUT.
            let iface = if ci == 0 && IFACE[iface].contains("-o") { "" } else { IFACE[iface] };
            s.push_str(&format!(
                "-A {} {} {} {iface} {} {} {t}\n",
                CHAINS[ci], SRC[src], DST[dst], L4[l4], EXTRA[extra]
            ));
        }
    }
    s.push_str("COMMIT\n");
    s
}

const ADDRS: [Ipv4Addr; 6] = [
    Ipv4Addr::new(10, 1, 2, 3),
    Ipv4Addr::new(10, 1, 2, 4),
    Ipv4Addr::new(10, 2, 1, 9),
    Ipv4Addr::new(192, 0, 2, 10),
    Ipv4Addr::new(198, 19, 0, 1),
    Ipv4Addr::new(200, 1, 1, 1),
];
const PORTS: [u16; 9] = [22, 80, 53, 1000, 1024, 1500, 2000, 65535, 5];
const PROTOS: [u8; 5] = [6, 17, 1, 47, 6];

/// (src, dst, proto, sport, dport, flags, shape, in_iface, ct, mark, ttl)
type PktIdx = (usize, usize, usize, usize, usize, u8, usize, usize, usize, u32, u8);

fn packet_strategy() -> impl Strategy<Value = PktIdx> {
    (
        0..ADDRS.len(),
        0..ADDRS.len(),
        0..PROTOS.len(),
        0..PORTS.len(),
        0..PORTS.len(),
        any::<u8>(),
        0usize..12,
        0usize..4,
        0usize..7,
        0u32..3,
        prop_oneof![Just(64u8), Just(5u8)],
    )
}

/// An IPv4 datagram. `shape`: 0..=5 regular; 6 truncated L4 (4 bytes); 7 non-first fragment
/// (offset 8 bytes); 8 fragment at offset 16; 9 first fragment (MF); 10 TCP data offset 4;
/// 11 TCP data offset 15 with the options missing.
fn datagram(p: &PktIdx) -> Vec<u8> {
    let &(s, d, proto, sp, dp, flags, shape, ..) = p;
    let proto = PROTOS[proto];
    let mut l4: Vec<u8> = match proto {
        6 => {
            let mut h = Vec::new();
            h.extend_from_slice(&PORTS[sp].to_be_bytes());
            h.extend_from_slice(&PORTS[dp].to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x60, flags, 0xff, 0xff, 0, 0, 0, 0]);
            // MSS option (kind 2).
            h.extend_from_slice(&[2, 4, 5, 0xb4]);
            h
        }
        17 => {
            let mut h = Vec::new();
            h.extend_from_slice(&PORTS[sp].to_be_bytes());
            h.extend_from_slice(&PORTS[dp].to_be_bytes());
            h.extend_from_slice(&[0, 8, 0, 0]);
            h
        }
        1 => vec![if flags & 1 == 0 { 8 } else { 0 }, 0, 0, 0, 0, 1, 0, 1],
        _ => vec![0, 0, 8, 0, 1, 2, 3, 4],
    };
    let mut frag: u16 = 0;
    match shape {
        6 => l4.truncate(4),
        7 => frag = 1,
        8 => frag = 2,
        9 => frag = 0x2000,
        10 if proto == 6 => l4[12] = 0x40,
        11 if proto == 6 => l4[12] = 0xf0,
        _ => {}
    }
    let mut b = vec![0x45, 0, 0, 0, 0, 1];
    b.extend_from_slice(&frag.to_be_bytes());
    b.extend_from_slice(&[p.10, proto, 0, 0]);
    b.extend_from_slice(&ADDRS[s].octets());
    b.extend_from_slice(&ADDRS[d].octets());
    b.extend_from_slice(&l4);
    let len = u16::try_from(b.len()).unwrap().to_be_bytes();
    b[2] = len[0];
    b[3] = len[1];
    b
}

fn ct_of(p: &PktIdx, pkt: &wire::Packet<'_>) -> CtMatch {
    let state = match p.8 {
        0 => return CtMatch::Invalid,
        1 => return CtMatch::Untracked,
        2 | 5 => CtState::New,
        3 => CtState::Established,
        _ => CtState::Related,
    };
    CtMatch::Tracked(CtView {
        state,
        reply_dir: false,
        status: status::CONFIRMED | if p.8 == 5 { status::SRC_NAT } else { 0 },
        l4proto: pkt.ip.proto,
        orig_src: pkt.ip.src,
        orig_dst: pkt.ip.dst,
        repl_src: pkt.ip.dst,
        repl_dst: pkt.ip.src,
        orig_sport: None,
        orig_dport: None,
        repl_sport: None,
        repl_dport: None,
        expires_secs: 30,
        mark: 0,
        helper: None,
        master_helper: None,
    })
}

/// Runs every packet through (table, hook) with both walks and compares everything.
fn check(rs: &Ruleset, packets: &[(PktIdx, Vec<u8>)], table: Table, hook: Hook, trace: bool) {
    let mut fast = rs.new_state();
    let mut slow = rs.new_state();
    for (i, (p, bytes)) in packets.iter().enumerate() {
        let pkt = wire::decode_ip(bytes).unwrap();
        let ifaces = [Some("eth0"), Some("eth1"), Some("lo"), None];
        let run = |st: &mut RuleState, classify: bool| {
            let mut ctx = PacketCtx {
                now: Time::from_secs(u64::try_from(i).unwrap() / 3),
                pkt: &pkt,
                in_iface: ifaces[p.7],
                out_iface: None,
                mark: p.9,
                ct: &mut ct_of(p, &pkt),
                pkttype: PktType::Host,
                host: &UnicastHost,
                effects: Vec::new(),
                trace: trace.then(Vec::new),
            };
            let o = if classify {
                rs.evaluate(table, hook, &mut ctx, st)
            } else {
                rs.evaluate_linear(table, hook, &mut ctx, st)
            };
            (o, ctx.effects, ctx.mark, ctx.ct.clone(), ctx.trace)
        };
        let a = run(&mut fast, true);
        let b = run(&mut slow, false);
        assert_eq!(a, b, "packet {i} {p:?}");
        assert_eq!(fast, slow, "state after packet {i}");
    }
    assert_eq!(rs.to_save_string(&fast, true), rs.to_save_string(&slow, true));
}

fn chains_strategy(min: usize) -> impl Strategy<Value = Vec<Vec<RuleIdx>>> {
    (
        proptest::collection::vec(rule_strategy(), min..min + 40),
        proptest::collection::vec(rule_strategy(), 0..30),
        proptest::collection::vec(rule_strategy(), 0..25),
        proptest::collection::vec(rule_strategy(), 10..30),
    )
        .prop_map(|(a, b, c, d)| vec![a, b, c, d])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn classifier_equals_linear_walk(
        chains in chains_strategy(16),
        packets in proptest::collection::vec(packet_strategy(), 1..40),
        trace in any::<bool>(),
    ) {
        let text = ruleset_text(&chains, &[]);
        let rs = rules::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let packets: Vec<(PktIdx, Vec<u8>)> = packets.into_iter().map(|p| { let d = datagram(&p); (p, d) }).collect();
        check(&rs, &packets, Table::Filter, Hook::Input, trace);
    }

    #[test]
    fn classifier_follows_notrack_and_ct_in_raw(
        raw in proptest::collection::vec(rule_strategy(), 16..50),
        packets in proptest::collection::vec(packet_strategy(), 1..30),
    ) {
        let text = ruleset_text(&[vec![]], &raw);
        let rs = rules::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let packets: Vec<(PktIdx, Vec<u8>)> = packets.into_iter().map(|p| { let d = datagram(&p); (p, d) }).collect();
        check(&rs, &packets, Table::Raw, Hook::PreRouting, true);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Short chains of a table that has an indexed chain are walked linearly with each rule's
    /// summary tested first: here every packet reaches them (INPUT: 16 rules matching no test
    /// address, then a jump to c1 and a goto to c2).
    #[test]
    fn classifier_equals_linear_walk_in_short_chains(
        c1 in proptest::collection::vec(rule_strategy(), 1..15),
        c2 in proptest::collection::vec(rule_strategy(), 1..15),
        c3 in proptest::collection::vec(rule_strategy(), 0..15),
        packets in proptest::collection::vec(packet_strategy(), 1..40),
        trace in any::<bool>(),
    ) {
        let mut text = ruleset_text(&[vec![], c1, c2, c3], &[]);
        let mut input: String = (0..16).map(|i| format!("-A INPUT -s 203.0.113.{i} -p tcp -j DROP\n")).collect();
        input.push_str("-A INPUT -j c1\n-A INPUT -g c2\nCOMMIT\n");
        text.truncate(text.len() - "COMMIT\n".len());
        text.push_str(&input);
        let rs = rules::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let packets: Vec<(PktIdx, Vec<u8>)> = packets.into_iter().map(|p| { let d = datagram(&p); (p, d) }).collect();
        check(&rs, &packets, Table::Filter, Hook::Input, trace);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A table whose chains are all short (none indexed) takes the short walk: each rule's
    /// summary first, an exact rule decided from its summary alone.
    #[test]
    fn short_walk_equals_linear_walk(
        c0 in proptest::collection::vec(rule_strategy(), 0..16),
        c1 in proptest::collection::vec(rule_strategy(), 0..16),
        c2 in proptest::collection::vec(rule_strategy(), 0..16),
        c3 in proptest::collection::vec(rule_strategy(), 0..16),
        packets in proptest::collection::vec(packet_strategy(), 1..40),
        trace in any::<bool>(),
    ) {
        let text = ruleset_text(&[c0, c1, c2, c3], &[]);
        let rs = rules::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let packets: Vec<(PktIdx, Vec<u8>)> = packets.into_iter().map(|p| { let d = datagram(&p); (p, d) }).collect();
        check(&rs, &packets, Table::Filter, Hook::Input, trace);
    }

    /// The short walk when NOTRACK / CT change the conntrack state its summaries test.
    #[test]
    fn short_walk_follows_notrack_and_ct_in_raw(
        raw in proptest::collection::vec(rule_strategy(), 1..16),
        packets in proptest::collection::vec(packet_strategy(), 1..30),
    ) {
        let text = ruleset_text(&[vec![]], &raw);
        let rs = rules::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let packets: Vec<(PktIdx, Vec<u8>)> = packets.into_iter().map(|p| { let d = datagram(&p); (p, d) }).collect();
        check(&rs, &packets, Table::Raw, Hook::PreRouting, true);
    }
}

/// Rules from a small alphabet of addresses and ports, so that many rules share a key: long
/// lists, which the classifier turns into nested indexes.
fn crowded_rule_strategy() -> impl Strategy<Value = RuleIdx> {
    (
        proptest::sample::select(vec![0usize, 1, 2, 3, 4, 5, 7, 8]),
        proptest::sample::select(vec![0usize, 1, 2, 5, 7]),
        0..IFACE.len(),
        // tcp 22 / 80 / 1000:2000 / 1024:, sport 80, udp 53 / sport 53, multiports, plain tcp/udp.
        proptest::sample::select(vec![6usize, 7, 8, 9, 12, 17, 19, 21, 22, 1, 2, 6, 7, 17]),
        0..EXTRA.len(),
        0..TARGET.len(),
        0usize..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    #[test]
    fn classifier_equals_linear_walk_with_crowded_keys(
        input in proptest::collection::vec(crowded_rule_strategy(), 40..160),
        c1 in proptest::collection::vec(crowded_rule_strategy(), 0..60),
        c2 in proptest::collection::vec(rule_strategy(), 0..20),
        c3 in proptest::collection::vec(crowded_rule_strategy(), 16..40),
        packets in proptest::collection::vec(packet_strategy(), 1..40),
        trace in any::<bool>(),
    ) {
        let text = ruleset_text(&[input, c1, c2, c3], &[]);
        let rs = rules::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let packets: Vec<(PktIdx, Vec<u8>)> = packets.into_iter().map(|p| { let d = datagram(&p); (p, d) }).collect();
        check(&rs, &packets, Table::Filter, Hook::Input, trace);
    }
}

const SRC6: &[&str] =
    &["", "-s 2001:db8::/32", "-s 2001:db8::1", "! -s 2001:db8::/64", "-s 2001:db8:0:1::/64"];
const DST6: &[&str] = &["", "-d 2001:db8::2", "-d 2001:db8::/48", "-d ::/1"];
const L46: &[&str] = &[
    "",
    "-p tcp -m tcp --dport 80",
    "-p udp -m udp --dport 53",
    "-p ipv6-icmp",
    "-p all",
    "-p tcp -m multiport --dports 22,80",
    "-m frag --fragfirst",
    "-m frag --fragmore -p udp -m udp --dport 53",
    "-p udp -m udp --sport 1000:2000",
];
const ADDRS6: [&str; 4] = ["2001:db8::1", "2001:db8::2", "2001:db8:0:1::5", "fe80::1"];

type Rule6 = (usize, usize, usize, usize, usize);
type Pkt6 = (usize, usize, usize, usize, usize, usize, usize);

fn rules6(n: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Rule6>> {
    proptest::collection::vec((0..SRC6.len(), 0..DST6.len(), 0..L46.len(), 0..EXTRA.len(), 0..7usize), n)
}

fn packets6() -> impl Strategy<Value = Vec<Pkt6>> {
    proptest::collection::vec(
        (0..4usize, 0..4usize, 0..3usize, 0..PORTS.len(), 0..PORTS.len(), 0..4usize, 0..7usize),
        1..30,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn classifier_equals_linear_walk_ipv6(rules in rules6(16..60), packets in packets6()) {
        check_ipv6(&rules, &packets);
    }

    /// A short IPv6 chain: the short walk (summaries on the first 32 address bits).
    #[test]
    fn short_walk_equals_linear_walk_ipv6(rules in rules6(1..16), packets in packets6()) {
        check_ipv6(&rules, &packets);
    }
}

/// An IPv6 INPUT chain of `rules`: both walks agree on every packet.
fn check_ipv6(rules: &[Rule6], packets: &[Pkt6]) {
    {
        let mut text =
            String::from("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
        for &(s, d, l, e, t) in rules {
            let t = TARGET[t];
            let extra = EXTRA[e].replace("-m ttl --ttl-gt", "-m hl --hl-gt");
            text.push_str(&format!("-A INPUT {} {} {} {extra} {t}\n", SRC6[s], DST6[d], L46[l]));
        }
        text.push_str("COMMIT\n");
        let rs = rules::parse_family(&text, Family::V6).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut fast = rs.new_state();
        let mut slow = rs.new_state();
        for (i, &(s, d, proto, sp, dp, shape, ct)) in packets.iter().enumerate() {
            let proto = [6u8, 17, 58][proto];
            let mut l4 = Vec::new();
            l4.extend_from_slice(&PORTS[sp].to_be_bytes());
            l4.extend_from_slice(&PORTS[dp].to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 2, 0xff, 0xff, 0, 0, 0, 0]);
            if proto != 6 {
                l4.truncate(8);
            }
            // shape: 0 plain; 1 first fragment; 2 non-first fragment; 3 truncated transport.
            let (next, mut payload) = match shape {
                1 => (44u8, vec![proto, 0, 0, 1, 0, 0, 0, 7]),
                2 => (44u8, vec![proto, 0, 0, 8, 0, 0, 0, 7]),
                _ => (proto, Vec::new()),
            };
            if shape == 3 {
                l4.truncate(4);
            }
            payload.extend_from_slice(&l4);
            let mut b = vec![0x60, 0, 0, 0];
            b.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
            b.extend_from_slice(&[next, 64]);
            b.extend_from_slice(&ADDRS6[s].parse::<Ipv6Addr>().unwrap().octets());
            b.extend_from_slice(&ADDRS6[d].parse::<Ipv6Addr>().unwrap().octets());
            b.extend_from_slice(&payload);
            let pkt = wire::decode_ip(&b).unwrap();
            let idx: PktIdx = (0, 0, 0, 0, 0, 0, 0, 0, ct, 0, 64);
            let run = |st: &mut RuleState, classify: bool| {
                let mut ctx = PacketCtx {
                    now: Time::from_secs(u64::try_from(i).unwrap()),
                    pkt: &pkt,
                    in_iface: Some("eth0"),
                    out_iface: None,
                    mark: 0,
                    ct: &mut ct_of(&idx, &pkt),
                    pkttype: PktType::Host,
                    host: &UnicastHost,
                    effects: Vec::new(),
                    trace: Some(Vec::new()),
                };
                let o = if classify {
                    rs.evaluate(Table::Filter, Hook::Input, &mut ctx, st)
                } else {
                    rs.evaluate_linear(Table::Filter, Hook::Input, &mut ctx, st)
                };
                (o, ctx.effects, ctx.mark, ctx.ct.clone(), ctx.trace)
            };
            let a = run(&mut fast, true);
            let b = run(&mut slow, false);
            assert_eq!(a, b, "packet {i}");
            assert_eq!(&fast, &slow);
        }
    }
}

/// A chain long enough to be indexed, where the deciding rule sits deep: both walks agree, and
/// the counters show exactly the rules that matched.
#[test]
fn deep_rule_in_an_indexed_chain() {
    let mut text = String::from(
        "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:sub - [0:0]\n",
    );
    for i in 0..200u32 {
        text.push_str(&format!(
            "-A INPUT -s 10.{}.{}.0/24 -p tcp -m tcp --dport {} -j DROP\n",
            i / 250,
            i % 250,
            1000 + i
        ));
    }
    text.push_str("-A INPUT -d 192.0.2.10 -p tcp -j LOG\n");
    text.push_str("-A INPUT -p tcp -m conntrack --ctstate NEW -j sub\n");
    text.push_str("-A INPUT -d 192.0.2.10 -p tcp -m tcp --dport 22 -j ACCEPT\n");
    for i in 0..20u32 {
        text.push_str(&format!("-A sub -s 172.16.{i}.0/24 -j DROP\n"));
    }
    text.push_str("-A sub -p tcp -m tcp --dport 22 -j RETURN\n");
    text.push_str("COMMIT\n");
    let rs = rules::parse(&text).unwrap();
    let p: PktIdx = (0, 3, 0, 4, 0, 2, 0, 0, 2, 0, 64);
    let d = datagram(&p);
    check(&rs, &[(p, d.clone()), (p, d)], Table::Filter, Hook::Input, true);
    let mut st = rs.new_state();
    let bytes = datagram(&p);
    let pkt = wire::decode_ip(&bytes).unwrap();
    let mut ctx = PacketCtx {
        now: Time::ZERO,
        pkt: &pkt,
        in_iface: Some("eth0"),
        out_iface: None,
        mark: 0,
        ct: &mut ct_of(&p, &pkt),
        pkttype: PktType::Host,
        host: &UnicastHost,
        effects: Vec::new(),
        trace: Some(Vec::new()),
    };
    let o = rs.evaluate(Table::Filter, Hook::Input, &mut ctx, &mut st);
    assert_eq!(o.rule.to_string(), "filter:INPUT:203");
    let trace: Vec<String> = ctx.trace.unwrap().iter().map(ToString::to_string).collect();
    assert_eq!(
        trace,
        ["filter:INPUT:rule:201", "filter:INPUT:rule:202", "filter:sub:rule:21", "filter:INPUT:rule:203"]
    );
    assert_eq!(st.rule_counters(Table::Filter, "INPUT", 1), Some((0, 0)));
    assert_eq!(st.rule_counters(Table::Filter, "sub", 21).map(|c| c.0), Some(1));
    let _ = IpAddr::V4(ADDRS[0]);
}
