//! ClassBench-style synthetic rulesets and packets, for benchmarks (`cargo bench -p
//! statewall-rules`, `statewall bench --rules-synthetic N`).
//!
//! Contract: [`classbench_ruleset`] returns the same iptables-save text for the same `(n, seed)`:
//! a `*filter` table with `n` rules in all (at least the 10 of the seed ruleset). The first `n - 10`
//! are a ClassBench-like ACL mix in the spirit of the ClassBench "acl" seeds (Taylor & Turner,
//! 2005): source and destination prefixes /8../32 drawn around a few hundred clustered networks
//! (source wildcard in about a third of the rules), exact and range destination ports, some
//! source port ranges and multiport lists, TCP/UDP/ICMP/any, some `--ctstate` rules, some `-i`
//! devices, ACCEPT/DROP/REJECT/LOG, and about a tenth of the rules in user chains entered by a
//! jump on a /16 source prefix. No ClassBench rule matches the seed host's traffic (every prefix
//! avoids 192.0.2.0/24 and the benchmark range 198.18.0.0/15, and every rule has one), so that
//! traffic walks the whole mix before the seed ruleset (`examples/seed/rules.v4`: ESTABLISHED,
//! `lo`, INVALID, ping, then the `tcp`/`udp` chains accepting port 33333) decides it, for both
//! NEW and ESTABLISHED packets.
//!
//! [`classbench_packets`] gives packets for the same `(n, seed)`: half seed traffic (a client in
//! 198.18.0.0/15 to 192.0.2.10 port 33333, TCP SYN or UDP), half headers built to match a randomly
//! chosen ClassBench rule (as ClassBench's trace generator does). [`bench_ct`] gives the
//! conntrack view to evaluate a packet as NEW or ESTABLISHED.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use wire::Packet;

use crate::eval::{status, CtMatch, CtState, CtView};

/// Rules of the seed ruleset appended after the mix.
pub const SEED_RULES: usize = 10;

const SEED_TAIL: &str = "\
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -p icmp -m icmp --icmp-type 8 -m conntrack --ctstate NEW -j ACCEPT
-A INPUT -p udp -m conntrack --ctstate NEW -j udp
-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -j tcp
-A INPUT -p udp -j REJECT --reject-with icmp-port-unreachable
-A INPUT -p tcp -j REJECT --reject-with tcp-reset
-A udp -p udp -m udp --dport 33333 -m conntrack --ctstate NEW -j ACCEPT
-A tcp -p tcp -m tcp --dport 33333 -m conntrack --ctstate NEW -j ACCEPT
";

/// The seed host.
pub const SEED_HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// The seed host's service port.
pub const SEED_PORT: u16 = 33333;

/// splitmix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when n is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// True with probability `pct`%.
    fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn u16(&mut self) -> u16 {
        u16::try_from(self.next() & 0xFFFF).unwrap_or(0)
    }
    fn u32(&mut self) -> u32 {
        u32::try_from(self.next() & 0xFFFF_FFFF).unwrap_or(0)
    }
}

const WELL_KNOWN: [u16; 16] = [20, 21, 22, 23, 25, 53, 80, 110, 123, 143, 161, 443, 993, 3306, 5432, 8080];

#[derive(Debug, Clone, Copy)]
struct Prefix {
    addr: u32,
    len: u32,
}

impl Prefix {
    fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len.min(32))
        }
    }
    fn overlaps(self, other: Prefix) -> bool {
        let m = self.mask() & other.mask();
        (self.addr ^ other.addr) & m == 0
    }
    /// A random address inside.
    fn pick(self, rng: &mut Rng) -> u32 {
        (self.addr & self.mask()) | (rng.u32() & !self.mask())
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let a = Ipv4Addr::from(self.addr & self.mask());
        if self.len == 32 {
            write!(f, "{a}")
        } else {
            write!(f, "{a}/{}", self.len)
        }
    }
}

/// Ranges no generated prefix may touch: the seed network and the benchmark range.
const AVOID: [Prefix; 3] = [
    Prefix { addr: 0xC000_0200, len: 24 },
    Prefix { addr: 0xC612_0000, len: 15 },
    Prefix { addr: 0x7F00_0000, len: 8 },
];

/// One generated rule (the fields packets are built from).
#[derive(Debug, Clone)]
struct Spec {
    chain: usize,
    src: Option<Prefix>,
    dst: Option<Prefix>,
    /// 6, 17, 1 or 0 (any).
    proto: u8,
    sport: Option<(u16, u16)>,
    dport: Option<(u16, u16)>,
    multiport: Option<Vec<u16>>,
    icmp_echo: bool,
    state: Option<&'static str>,
    iface: Option<u8>,
    target: String,
}

struct Generated {
    /// Rules of INPUT (chain 0) and of user chains cb1.. (chain i), in order.
    specs: Vec<Spec>,
    chains: usize,
}

fn generate(n: usize, seed: u64) -> Generated {
    let mut rng = Rng(seed ^ 0x5eed_c1a5_5b0c_0001);
    let mix = n.saturating_sub(SEED_RULES);
    // Clustered networks: a few hundred /16s (ClassBench addresses cluster by network).
    let nets: Vec<u32> = (0..256)
        .map(|_| loop {
            let a = rng.u32() & 0xFFFF_0000;
            let p = Prefix { addr: a, len: 16 };
            if a >> 24 != 0 && a >> 24 < 224 && !AVOID.iter().any(|v| v.overlaps(p)) {
                break a;
            }
        })
        .collect();
    let mut prefix = |rng: &mut Rng, lens: &[(u64, u32)]| -> Prefix {
        loop {
            let total: u64 = lens.iter().map(|l| l.0).sum();
            let mut k = rng.below(total);
            let mut len = 32;
            for &(w, l) in lens {
                if k < w {
                    len = l;
                    break;
                }
                k -= w;
            }
            let net =
                nets.get(usize::try_from(rng.below(nets.len() as u64)).unwrap_or(0)).copied().unwrap_or(0);
            let addr = if len <= 16 { net } else { net | (rng.u32() & 0xFFFF) };
            let p = Prefix { addr: addr & Prefix { addr, len }.mask(), len };
            if !AVOID.iter().any(|v| v.overlaps(p)) {
                return p;
            }
        }
    };
    const SRC_LENS: [(u64, u32); 7] = [(40, 32), (20, 24), (15, 16), (8, 28), (7, 20), (6, 12), (4, 8)];
    const DST_LENS: [(u64, u32); 6] = [(50, 32), (20, 24), (12, 16), (8, 28), (6, 20), (4, 8)];
    let mut specs = Vec::with_capacity(mix);
    // User chains: about a tenth of the rules, 20..=80 per chain (entered from 0.2% of the places).
    let mut chains = 1usize;
    let mut i = 0usize;
    while i < mix {
        let left = mix - i;
        if left > 40 && rng.below(1000) < 2 {
            // A jump rule on a /16 source, then the chain's rules (sources inside it).
            let size = usize::try_from(20 + rng.below(61)).unwrap_or(20).min(left - 1);
            let base = prefix(&mut rng, &[(1, 16)]);
            let chain = chains;
            chains += 1;
            specs.push(Spec {
                chain: 0,
                src: Some(base),
                dst: None,
                proto: 0,
                sport: None,
                dport: None,
                multiport: None,
                icmp_echo: false,
                state: None,
                iface: None,
                target: format!("-j cb{chain}"),
            });
            for _ in 0..size {
                let mut s = rule(&mut rng, &mut prefix, &SRC_LENS, &DST_LENS);
                let len = s.src.map_or(24, |p| p.len.max(17));
                s.src = Some(Prefix { addr: (base.addr & 0xFFFF_0000) | (rng.u32() & 0xFFFF), len });
                if let Some(p) = s.src.as_mut() {
                    p.addr &= p.mask();
                }
                s.chain = chain;
                specs.push(s);
            }
            i += size + 1;
        } else {
            specs.push(rule(&mut rng, &mut prefix, &SRC_LENS, &DST_LENS));
            i += 1;
        }
    }
    Generated { specs, chains }
}

fn rule(
    rng: &mut Rng,
    prefix: &mut impl FnMut(&mut Rng, &[(u64, u32)]) -> Prefix,
    src_lens: &[(u64, u32)],
    dst_lens: &[(u64, u32)],
) -> Spec {
    let src = (!rng.pct(33)).then(|| prefix(rng, src_lens));
    // Every rule keeps one address test so the seed traffic never matches it.
    let dst = (src.is_none() || !rng.pct(12)).then(|| prefix(rng, dst_lens));
    let proto = match rng.below(100) {
        0..=49 => 6,
        50..=79 => 17,
        80..=89 => 1,
        _ => 0,
    };
    let (mut sport, mut dport, mut multiport) = (None, None, None);
    if proto == 6 || proto == 17 {
        dport = match rng.below(100) {
            0..=39 => {
                let p = WELL_KNOWN.get(usize::try_from(rng.below(16)).unwrap_or(0)).copied().unwrap_or(80);
                Some((p, p))
            }
            40..=59 => {
                let p = 1024 + rng.u16() % 60000;
                Some((p, p))
            }
            60..=69 => Some((1024, 65535)),
            70..=74 => Some((0, 1023)),
            75..=84 => {
                let a = rng.u16() % 60000;
                Some((a, a.saturating_add(1 + rng.u16() % 200)))
            }
            85..=89 => {
                multiport = Some(
                    (0..1 + rng.below(5))
                        .map(|_| {
                            WELL_KNOWN.get(usize::try_from(rng.below(16)).unwrap_or(0)).copied().unwrap_or(80)
                        })
                        .collect(),
                );
                None
            }
            _ => None,
        };
        sport = match rng.below(100) {
            0..=9 => Some((1024, 65535)),
            10..=14 => {
                let p = WELL_KNOWN.get(usize::try_from(rng.below(16)).unwrap_or(0)).copied().unwrap_or(53);
                Some((p, p))
            }
            _ => None,
        };
    }
    let icmp_echo = proto == 1 && rng.pct(50);
    let state = match rng.below(100) {
        0..=11 => Some("NEW"),
        12..=15 => Some("RELATED,ESTABLISHED"),
        16..=17 => Some("INVALID"),
        _ => None,
    };
    let iface = rng.pct(10).then(|| u8::try_from(rng.below(4)).unwrap_or(0));
    let target = match rng.below(100) {
        0..=44 => "-j ACCEPT",
        45..=84 => "-j DROP",
        85..=91 => {
            if proto == 6 {
                "-j REJECT --reject-with tcp-reset"
            } else {
                "-j REJECT --reject-with icmp-port-unreachable"
            }
        }
        92..=95 => "-j LOG --log-prefix \"cb \"",
        _ => "-j DROP",
    };
    Spec {
        chain: 0,
        src,
        dst,
        proto,
        sport,
        dport,
        multiport,
        icmp_echo,
        state,
        iface,
        target: target.to_string(),
    }
}

fn write_rule(s: &Spec, out: &mut String) {
    let chain = if s.chain == 0 { "INPUT".to_string() } else { format!("cb{}", s.chain) };
    let _ = write!(out, "-A {chain}");
    if let Some(p) = s.src {
        let _ = write!(out, " -s {p}");
    }
    if let Some(p) = s.dst {
        let _ = write!(out, " -d {p}");
    }
    if let Some(i) = s.iface {
        let _ = write!(out, " -i eth{i}");
    }
    let name = match s.proto {
        6 => Some("tcp"),
        17 => Some("udp"),
        1 => Some("icmp"),
        _ => None,
    };
    if let Some(name) = name {
        let _ = write!(out, " -p {name}");
        if s.sport.is_some() || s.dport.is_some() {
            let _ = write!(out, " -m {name}");
        }
        let range = |(a, b): (u16, u16)| if a == b { a.to_string() } else { format!("{a}:{b}") };
        if let Some(r) = s.sport {
            let _ = write!(out, " --sport {}", range(r));
        }
        if let Some(r) = s.dport {
            let _ = write!(out, " --dport {}", range(r));
        }
        if let Some(m) = &s.multiport {
            let list: Vec<String> = m.iter().map(u16::to_string).collect();
            let _ = write!(out, " -m multiport --dports {}", list.join(","));
        }
        if s.icmp_echo {
            let _ = write!(out, " -m icmp --icmp-type 8");
        }
    }
    if let Some(st) = s.state {
        let _ = write!(out, " -m conntrack --ctstate {st}");
    }
    let _ = writeln!(out, " {}", s.target);
}

/// A ClassBench-style `*filter` ruleset of `n` rules (at least the seed ruleset's 10), see the
/// module docs.
pub fn classbench_ruleset(n: usize, seed: u64) -> String {
    let g = generate(n, seed);
    let mut out = String::from("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for c in 1..g.chains {
        let _ = writeln!(out, ":cb{c} - [0:0]");
    }
    out.push_str(":tcp - [0:0]\n:udp - [0:0]\n");
    for s in &g.specs {
        write_rule(s, &mut out);
    }
    out.push_str(SEED_TAIL);
    out.push_str("COMMIT\n");
    out
}

/// A benchmark packet: the IPv4 datagram and its input device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchPacket {
    pub datagram: Vec<u8>,
    pub in_iface: String,
}

fn datagram(src: u32, dst: u32, proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let l4: Vec<u8> = match proto {
        6 => {
            let mut h = Vec::with_capacity(20);
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            // seq 1, ack 0, data offset 5, SYN, window 65535.
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
            h
        }
        17 => {
            let mut h = Vec::with_capacity(40);
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            h.extend_from_slice(&[0, 40, 0, 0]);
            h.extend_from_slice(&[0u8; 32]);
            h
        }
        1 => vec![8, 0, 0, 0, 0, 1, 0, 1],
        _ => vec![0u8; 8],
    };
    let total = u16::try_from(20 + l4.len()).unwrap_or(u16::MAX).to_be_bytes();
    let mut b = Vec::with_capacity(20 + l4.len());
    b.extend_from_slice(&[0x45, 0, total[0], total[1], 0, 1, 0x40, 0, 64, proto, 0, 0]);
    b.extend_from_slice(&src.to_be_bytes());
    b.extend_from_slice(&dst.to_be_bytes());
    b.extend_from_slice(&l4);
    b
}

/// `count` packets for the ruleset of the same `(n, seed)`, see the module docs.
pub fn classbench_packets(n: usize, seed: u64, count: usize) -> Vec<BenchPacket> {
    let g = generate(n, seed);
    let mut rng = Rng(seed ^ 0x7ace_0000_0000_0002);
    let mut out = Vec::with_capacity(count.min(1 << 24));
    let bench = Prefix { addr: 0xC612_0000, len: 15 };
    for _ in 0..count {
        let seed_traffic = g.specs.is_empty() || rng.pct(50);
        let pick = usize::try_from(rng.below(g.specs.len() as u64)).unwrap_or(0);
        let spec = g.specs.get(pick).filter(|_| !seed_traffic);
        let Some(s) = spec else {
            let proto = if rng.pct(50) { 6 } else { 17 };
            let src = bench.pick(&mut rng);
            let sport = 1024 + rng.u16() % 60000;
            out.push(BenchPacket {
                datagram: datagram(src, u32::from(SEED_HOST), proto, sport, SEED_PORT),
                in_iface: "eth0".into(),
            });
            continue;
        };
        let any = Prefix { addr: 0, len: 0 };
        let src = s.src.unwrap_or(any).pick(&mut rng);
        let dst = s.dst.unwrap_or(any).pick(&mut rng);
        let proto = if s.proto == 0 { 6 } else { s.proto };
        let in_range = |rng: &mut Rng, r: Option<(u16, u16)>, default: u16| match r {
            Some((a, b)) => {
                a.saturating_add(u16::try_from(rng.below(u64::from(b - a.min(b)) + 1)).unwrap_or(0))
            }
            None => default,
        };
        let (eph, any_port) = (1024 + rng.u16() % 60000, 1 + rng.u16() % 65000);
        let sport = in_range(&mut rng, s.sport, eph);
        let mut dport = in_range(&mut rng, s.dport, any_port);
        if let Some(m) = &s.multiport {
            dport = m.get(usize::try_from(rng.below(m.len() as u64)).unwrap_or(0)).copied().unwrap_or(80);
        }
        let in_iface = format!("eth{}", s.iface.unwrap_or(0));
        out.push(BenchPacket { datagram: datagram(src, dst, proto, sport, dport), in_iface });
    }
    out
}

/// The conntrack view of `pkt` as a NEW (original direction) or ESTABLISHED (reply direction seen,
/// assured) connection, for evaluating benchmark packets.
pub fn bench_ct(pkt: &Packet<'_>, state: CtState) -> CtMatch {
    let ports = match pkt.bytes.get(20..24) {
        Some(&[a, b, c, d]) if pkt.ip.proto == 6 || pkt.ip.proto == 17 => {
            Some((u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])))
        }
        _ => None,
    };
    let st = match state {
        CtState::New => status::CONFIRMED,
        _ => status::CONFIRMED | status::SEEN_REPLY | status::ASSURED,
    };
    let (src, dst): (IpAddr, IpAddr) = (pkt.ip.src, pkt.ip.dst);
    CtMatch::Tracked(CtView {
        state,
        reply_dir: false,
        status: st,
        l4proto: pkt.ip.proto,
        orig_src: src,
        orig_dst: dst,
        repl_src: dst,
        repl_dst: src,
        orig_sport: ports.map(|p| p.0),
        orig_dport: ports.map(|p| p.1),
        repl_sport: ports.map(|p| p.1),
        repl_dport: ports.map(|p| p.0),
        expires_secs: 120,
        mark: 0,
        helper: None,
        master_helper: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::{Hook, PacketCtx, PktType, Table, UnicastHost, Verdict};
    use wire::Time;

    fn run(rs: &crate::Ruleset, p: &BenchPacket, state: CtState, linear: bool) -> crate::Outcome {
        let pkt = wire::decode_ip(&p.datagram).unwrap();
        let mut st = rs.new_state();
        let mut ctx = PacketCtx {
            now: Time::ZERO,
            pkt: &pkt,
            in_iface: Some(&p.in_iface),
            out_iface: None,
            mark: 0,
            ct: &mut bench_ct(&pkt, state),
            pkttype: PktType::Host,
            host: &UnicastHost,
            effects: Vec::new(),
            trace: None,
        };
        if linear {
            rs.evaluate_linear(Table::Filter, Hook::Input, &mut ctx, &mut st)
        } else {
            rs.evaluate(Table::Filter, Hook::Input, &mut ctx, &mut st)
        }
    }

    #[test]
    fn ruleset_has_n_rules_parses_and_is_deterministic() {
        for n in [0, 10, 11, 100, 1000, 3000] {
            let text = classbench_ruleset(n, 7);
            assert_eq!(text, classbench_ruleset(n, 7));
            let rs = crate::parse(&text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(rs.rule_count(), n.max(SEED_RULES), "n = {n}");
        }
        assert_ne!(classbench_ruleset(100, 1), classbench_ruleset(100, 2));
    }

    #[test]
    fn seed_traffic_walks_the_mix_and_is_accepted_by_the_seed_rules() {
        let rs = crate::parse(&classbench_ruleset(2000, 3)).unwrap();
        let packets = classbench_packets(2000, 3, 400);
        let mut seed = 0;
        for p in &packets {
            let pkt = wire::decode_ip(&p.datagram).unwrap();
            if pkt.ip.dst != IpAddr::V4(SEED_HOST) {
                continue;
            }
            seed += 1;
            let new = run(&rs, p, CtState::New, false);
            assert_eq!(new.verdict, Verdict::Accept);
            let chain = if pkt.ip.proto == 6 { "tcp" } else { "udp" };
            assert_eq!(new.rule.to_string(), format!("filter:{chain}:1"));
            let est = run(&rs, p, CtState::Established, false);
            let input = rs.table(Table::Filter).unwrap().chain("INPUT").unwrap().rules.len();
            // The seed ruleset's first rule (INPUT has 8 of its 10 rules).
            assert_eq!(est.rule.to_string(), format!("filter:INPUT:{}", input - 8 + 1));
        }
        assert!(seed > 150, "{seed}");
    }

    #[test]
    fn rule_packets_hit_the_mix_and_both_walks_agree() {
        let rs = crate::parse(&classbench_ruleset(1500, 9)).unwrap();
        let tail = rs.rule_count() - SEED_RULES;
        let mut in_mix = 0;
        for p in classbench_packets(1500, 9, 300) {
            for state in [CtState::New, CtState::Established] {
                let fast = run(&rs, &p, state, false);
                assert_eq!(fast, run(&rs, &p, state, true));
                if fast.rule.chain.starts_with("cb")
                    || (&*fast.rule.chain == "INPUT" && fast.rule.rule.is_some_and(|r| (r as usize) <= tail))
                {
                    in_mix += 1;
                }
            }
        }
        assert!(in_mix > 150, "{in_mix}");
    }
}
