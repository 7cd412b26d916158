//! `statewall verify` against the real kernel (root only): the seed example agrees for every seed ruleset, a
//! deliberate difference is caught, Ctrl-C cleans up, and no namespace is ever left behind.
//!
//! Without root or the tools these tests print "SKIP: ..." and pass, unless STATEWALL_REQUIRE_KERNEL_TESTS=1
//! (CI), where they fail instead.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn seed_example_agrees_with_the_kernel_for_every_seed_ruleset() {
    if !kernel_available() {
        return;
    }
    let pcap = seed("p2p.pcap");
    for rules in ["rules.v4", "rules-notrack.v4", "rules-notrack-late.v4", "rules-notrack-fixed.v4"] {
        let r = seed(rules);
        let (code, out, err) = verify(&["--rules", &r, "--local", "192.0.2.10/24", "--max-gap", "2", &pcap]);
        assert_eq!(code, Some(0), "{rules}:\n{out}\n{err}");
        assert!(out.starts_with("AGREE"), "{rules}: {out}");
        assert!(out.contains("fates 1765/1765 agree"), "{rules}: {out}");
    }
}

/// With the capture's own timing (43 s): the UDP 2-second stream rule, ASSURED and the remaining timeouts are
/// compared on a real clock, not a compressed one.
#[test]
fn seed_example_agrees_in_real_time() {
    if !kernel_available() {
        return;
    }
    let (code, out, err) =
        verify(&["--rules", &seed("rules.v4"), "--local", "192.0.2.10/24", &seed("p2p.pcap")]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("fates 1765/1765 agree"), "{out}");
}

/// The nft backend of iptables (the same rules through nf_tables' xt compatibility) agrees too.
#[test]
fn seed_example_agrees_with_the_nft_backend() {
    if !kernel_available() {
        return;
    }
    let nft = std::process::Command::new("sh").args(["-c", "command -v iptables-nft-restore"]).output();
    if !nft.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP: iptables-nft-restore not installed");
        return;
    }
    for rules in ["rules.v4", "rules-notrack.v4"] {
        let args =
            ["--rules", &seed(rules), "--local", "192.0.2.10/24", "--backend", "nft", "--max-gap", "2"];
        let pcap = seed("p2p.pcap");
        let mut all: Vec<&str> = args.to_vec();
        all.push(&pcap);
        let (code, out, err) = verify(&all);
        assert_eq!(code, Some(0), "{rules}:\n{out}\n{err}");
    }
}

#[test]
fn a_kernel_configured_differently_is_caught() {
    if !kernel_available() {
        return;
    }
    // The kernel keeps UDP entries 90 s, the engine the default 30 s: the tables must disagree (exit 1), in
    // every one of several captures verified in one run, each with its own topology.
    let dir = scratch("verify_disagreement");
    let pcap = seed("p2p.pcap");
    let r = seed("rules.v4");
    let (code, out, err) = verify(&[
        "--rules",
        &r,
        "--local",
        "192.0.2.10/24",
        "--max-gap",
        "1",
        "--kernel-only-sysctl",
        "net.netfilter.nf_conntrack_udp_timeout=90",
        "--format",
        "json",
        "--out",
        dir.to_str().unwrap(),
        &pcap,
        &pcap,
    ]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["agree"], false);
    let caps = v["captures"].as_array().unwrap();
    assert_eq!(caps.len(), 2);
    for c in caps {
        assert_eq!(c["status"], "disagree");
        assert_eq!(c["packets"]["differences"].as_array().unwrap().len(), 0, "fates still agree");
        let diffs = c["conntrack"]["differences"].as_array().unwrap();
        assert!(diffs.iter().any(|d| d["kind"] == "timeout" && d["kernel"].as_u64() > Some(60)), "{c}");
    }
    for f in ["retimed.pcap", "kernel-counters.txt", "engine-conntrack.txt", "fates.jsonl"] {
        assert!(dir.join("001-p2p").join(f).exists(), "{f}");
        assert!(dir.join("002-p2p").join(f).exists(), "{f}");
    }
}

#[test]
fn global_sysctls_are_refused() {
    if !kernel_available() {
        return;
    }
    let (code, _, err) = verify(&[
        "--rules",
        &seed("rules.v4"),
        "--local",
        "192.0.2.10/24",
        "--sysctl",
        "net.netfilter.nf_conntrack_max=10",
        &seed("p2p.pcap"),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("nf_conntrack_max is global"), "{err}");
}

#[test]
fn interrupting_removes_the_namespaces() {
    if !kernel_available() {
        return;
    }
    // No --max-gap: the capture's own timing (about 43 s), interrupted after a second.
    let child = Command::new(env!("CARGO_BIN_EXE_statewall"))
        .args(["verify", "--rules", &seed("rules.v4"), "--local", "192.0.2.10/24", &seed("p2p.pcap")])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut built = false;
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        if !leftovers(pid).is_empty() {
            built = true;
            break;
        }
    }
    assert!(built, "the topology never appeared");
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert_eq!(leftovers(pid), Vec::<String>::new(), "namespaces left behind after Ctrl-C");
}

/// A small router capture: lan0 10.1.0.0/24, wan0 default route; forwarded TCP (with a retransmission), UDP,
/// ICMP echo, a fragmented datagram, NEW from the WAN (dropped), pings to the router, a packet from it.
mod router {
    use std::net::Ipv4Addr;
    use wire::checksum::{internet_checksum, l4_checksum_v4};

    pub const HOST: &str = r#"
forwarding = true
[[interface]]
name = "wan0"
addresses = ["192.0.2.1/24"]
[[interface]]
name = "lan0"
addresses = ["10.1.0.1/24"]
[[route]]
dst = "0.0.0.0/0"
dev = "wan0"
"#;

    pub const RULES: &str = "*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lan0 -p icmp -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan0 -o wan0 -m conntrack --ctstate NEW -j ACCEPT
COMMIT
";

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn ip(src: &str, dst: &str, proto: u8, l4: &[u8], id: u16, frag: u16) -> Vec<u8> {
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0]);
        h.extend_from_slice(&a(src).octets());
        h.extend_from_slice(&a(dst).octets());
        let c = internet_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(l4);
        h
    }

    fn tcp(src: &str, dst: &str, ports: (u16, u16), seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&ports.0.to_be_bytes());
        s.extend_from_slice(&ports.1.to_be_bytes());
        s.extend_from_slice(&seq.to_be_bytes());
        s.extend_from_slice(&ack.to_be_bytes());
        s.extend_from_slice(&[0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
        s.extend_from_slice(data);
        let c = l4_checksum_v4(a(src), a(dst), 6, &s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        ip(src, dst, 6, &s, 1, 0)
    }

    fn udp_seg(src: &str, dst: &str, sp: u16, dp: u16, data: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&sp.to_be_bytes());
        s.extend_from_slice(&dp.to_be_bytes());
        s.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        s.extend_from_slice(&[0, 0]);
        s.extend_from_slice(data);
        let c = l4_checksum_v4(a(src), a(dst), 17, &s);
        s[6..8].copy_from_slice(&c.to_be_bytes());
        s
    }

    fn udp(src: &str, dst: &str, sp: u16, dp: u16, data: &[u8]) -> Vec<u8> {
        ip(src, dst, 17, &udp_seg(src, dst, sp, dp, data), 1, 0)
    }

    fn echo(src: &str, dst: &str, kind: u8, id: u16) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0, 1, b'p', b'i', b'n', b'g']);
        let c = internet_checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        ip(src, dst, 1, &m, 1, 0)
    }

    pub fn pcap() -> Vec<u8> {
        let (l, w, x, fw) = ("10.1.0.5", "198.51.100.7", "203.0.113.9", "10.1.0.1");
        let web = (40000, 80);
        let back = (80, 40000);
        let seg = udp_seg(l, w, 6000, 7000, &[9; 40]);
        let packets = vec![
            tcp(l, w, web, 1000, 0, 0x02, b""),
            tcp(w, l, back, 5000, 1001, 0x12, b""),
            tcp(l, w, web, 1001, 5001, 0x10, b""),
            tcp(l, w, web, 1001, 5001, 0x18, b"GET / HTTP/1.0\r\n\r\n"),
            tcp(w, l, back, 5001, 1019, 0x18, b"HTTP/1.0 200 OK\r\n\r\nhello"),
            tcp(w, l, back, 5001, 1019, 0x18, b"HTTP/1.0 200 OK\r\n\r\nhello"),
            tcp(l, w, web, 1019, 5026, 0x11, b""),
            tcp(w, l, back, 5026, 1020, 0x11, b""),
            tcp(l, w, web, 1020, 5027, 0x10, b""),
            tcp(x, l, (5555, 22), 1, 0, 0x02, b""),
            udp(l, w, 5353, 53, b"query"),
            udp(w, l, 53, 5353, b"answer"),
            echo(l, w, 8, 7),
            echo(w, l, 0, 7),
            echo(x, fw, 8, 9),
            echo(l, fw, 8, 9),
            udp(fw, l, 123, 123, b"ntp"),
            ip(l, w, 17, &seg[..24], 0x4242, 0x2000),
            ip(l, w, 17, &seg[24..], 0x4242, 3),
        ];
        let mut w = wire::PcapWriter::new(Vec::new(), 1, true).unwrap();
        for (i, p) in packets.iter().enumerate() {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
            f.extend_from_slice(p);
            w.write_packet(wire::Time(1_700_000_000_000_000_000 + i as u64 * 10_000_000), &f).unwrap();
        }
        w.into_inner().unwrap()
    }
}

#[test]
fn forward_mode_router_agrees() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("verify_forward");
    let (pcap, host, rules) = (dir.join("router.pcap"), dir.join("host.toml"), dir.join("router.v4"));
    std::fs::write(&pcap, router::pcap()).unwrap();
    std::fs::write(&host, router::HOST).unwrap();
    std::fs::write(&rules, router::RULES).unwrap();
    let (code, out, err) = verify(&[
        "--rules",
        rules.to_str().unwrap(),
        "--host",
        host.to_str().unwrap(),
        "--max-gap",
        "2",
        "--format",
        "json",
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["captures"][0];
    assert_eq!(c["sent"], 19);
    // Passed: the TCP exchange up to the data (twice the retransmitted reply), UDP, echo both ways, the lan
    // ping to the router, the router's own packet, both fragments.
    assert_eq!(c["packets"]["kernel_passed"], 14, "{c}");
    assert!(c["conntrack"]["kernel_entries"].as_u64() >= Some(5), "{c}");
}

/// IPv6 needs the ip6tables tools as well.
fn ipv6_kernel_available() -> bool {
    kernel_available()
        && skip_unless_available(
            missing_tool(&["ip6tables-legacy", "ip6tables-legacy-restore", "ip6tables-legacy-save"])
                .map(|t| format!("{t} missing")),
            "IPv6 verify needs ip6tables-legacy",
        )
}

fn data(file: &str) -> String {
    root().join("crates/statewall/tests/data").join(file).display().to_string()
}

/// The IPv6 corpus capture of a host resolving over DNS: two queries from the host, one whole reply, a lone
/// last fragment of a lost reply (never reassembled), and a reply in three fragments.
#[test]
fn ipv6_fragmented_dns_agrees_with_the_kernel() {
    if !ipv6_kernel_available() {
        return;
    }
    let Some(corpus) = corpus() else {
        eprintln!("SKIP: ../shared/corpus not present");
        return;
    };
    let pcap = corpus.join("pcaps/zeek__ipv6-fragmented-dns.pcap");
    let (code, out, err) = verify(&[
        "--rules",
        &data("dns6.v4"),
        "--rules6",
        &data("dns6.v6"),
        "--local",
        "2001:470:1f11:81f:d138:5f55:6d4:1fe2/64",
        "--max-gap",
        "200",
        "--format",
        "json",
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["captures"][0];
    assert_eq!(c["sent"], 8, "{c}");
    // Everything passes but the lone fragment.
    assert_eq!(c["packets"]["kernel_passed"], 7, "{c}");
    assert_eq!(c["conntrack"]["kernel_entries"], 2, "{c}");
    assert!(c["suppressed6"].is_array(), "the ip6tables suppression rule was found: {c}");
}

/// Without --rules6 IPv6 packets are not sent, and nothing else changes.
#[test]
fn ipv6_is_skipped_without_rules6() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("verify_no_rules6");
    let pcap = dir.join("router6.pcap");
    std::fs::write(&pcap, router6::pcap()).unwrap();
    let (code, out, err) = verify(&[
        "--rules",
        &data("dns6.v4"),
        "--local",
        "2001:db8:1::1/64",
        "--format",
        "json",
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["captures"][0];
    assert_eq!(c["sent"], 0, "{c}");
    assert_eq!(c["skipped"]["IPv6: not sent (no --rules6)"].as_u64(), c["frames"].as_u64(), "{c}");
}

/// An IPv6 router: lan0 2001:db8:1::/64, wan0 with the default route; forwarded TCP (with a retransmission),
/// UDP, ICMPv6 echo, a fragmented datagram, NEW from the WAN (dropped), pings to the router from both
/// sides, a unicast neighbour solicitation to it (untracked), a packet from the router itself.
mod router6 {
    use std::net::Ipv6Addr;
    use wire::checksum::l4_checksum_v6;

    pub const HOST: &str = r#"
forwarding = true
[[interface]]
name = "wan0"
addresses = ["192.0.2.1/24", "2001:db8:ffff::1/64"]
[[interface]]
name = "lan0"
addresses = ["10.1.0.1/24", "2001:db8:1::1/64"]
[[route]]
dst = "0.0.0.0/0"
dev = "wan0"
[[route]]
dst = "::/0"
dev = "wan0"
"#;

    pub const RULES6: &str = "*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lan0 -p ipv6-icmp -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan0 -o wan0 -m conntrack --ctstate NEW -j ACCEPT
COMMIT
";

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn ip6(src: &str, dst: &str, next: u8, hop_limit: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, hop_limit]);
        p.extend_from_slice(&a(src).octets());
        p.extend_from_slice(&a(dst).octets());
        p.extend_from_slice(rest);
        p
    }

    fn tcp(src: &str, dst: &str, ports: (u16, u16), seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&ports.0.to_be_bytes());
        s.extend_from_slice(&ports.1.to_be_bytes());
        s.extend_from_slice(&seq.to_be_bytes());
        s.extend_from_slice(&ack.to_be_bytes());
        s.extend_from_slice(&[0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
        s.extend_from_slice(data);
        let c = l4_checksum_v6(a(src), a(dst), 6, &s);
        s[16..18].copy_from_slice(&c.to_be_bytes());
        ip6(src, dst, 6, 64, &s)
    }

    fn udp_seg(src: &str, dst: &str, sp: u16, dp: u16, data: &[u8]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&sp.to_be_bytes());
        s.extend_from_slice(&dp.to_be_bytes());
        s.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        s.extend_from_slice(&[0, 0]);
        s.extend_from_slice(data);
        let c = l4_checksum_v6(a(src), a(dst), 17, &s);
        s[6..8].copy_from_slice(&c.to_be_bytes());
        s
    }

    fn udp(src: &str, dst: &str, sp: u16, dp: u16, data: &[u8]) -> Vec<u8> {
        ip6(src, dst, 17, 64, &udp_seg(src, dst, sp, dp, data))
    }

    fn icmp6(src: &str, dst: &str, hop_limit: u8, kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind, 0, 0, 0];
        m.extend_from_slice(body);
        let c = l4_checksum_v6(a(src), a(dst), 58, &m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        ip6(src, dst, 58, hop_limit, &m)
    }

    fn echo(src: &str, dst: &str, kind: u8, id: u16) -> Vec<u8> {
        let mut b = id.to_be_bytes().to_vec();
        b.extend_from_slice(&[0, 1, b'p', b'i', b'n', b'g']);
        icmp6(src, dst, 64, kind, &b)
    }

    fn fragment(src: &str, dst: &str, part: &[u8], offset: usize, more: bool, id: u32) -> Vec<u8> {
        let mut f = vec![17, 0];
        f.extend_from_slice(&((((offset / 8) as u16) << 3) | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(part);
        ip6(src, dst, 44, 64, &f)
    }

    pub fn pcap() -> Vec<u8> {
        let (l, w, x, fw) = ("2001:db8:1::5", "2001:db8:77::7", "2001:db8:66::9", "2001:db8:1::1");
        let web = (40000, 80);
        let back = (80, 40000);
        let seg = udp_seg(l, w, 6000, 7000, &[9; 40]); // 48 bytes
        let mut ns = vec![0, 0, 0, 0];
        ns.extend_from_slice(&a(fw).octets());
        ns.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 5]); // source link-layer address option
        let packets = vec![
            tcp(l, w, web, 1000, 0, 0x02, b""),
            tcp(w, l, back, 5000, 1001, 0x12, b""),
            tcp(l, w, web, 1001, 5001, 0x10, b""),
            tcp(l, w, web, 1001, 5001, 0x18, b"GET / HTTP/1.0\r\n\r\n"),
            tcp(w, l, back, 5001, 1019, 0x18, b"HTTP/1.0 200 OK\r\n\r\nhello"),
            tcp(w, l, back, 5001, 1019, 0x18, b"HTTP/1.0 200 OK\r\n\r\nhello"),
            tcp(l, w, web, 1019, 5025, 0x11, b""),
            tcp(w, l, back, 5025, 1020, 0x11, b""),
            tcp(l, w, web, 1020, 5026, 0x10, b""),
            tcp(x, l, (5555, 22), 1, 0, 0x02, b""),
            udp(l, w, 5353, 53, b"query"),
            udp(w, l, 53, 5353, b"answer"),
            echo(l, w, 128, 7),
            echo(w, l, 129, 7),
            echo(x, fw, 128, 9),
            echo(l, fw, 128, 9),
            icmp6(l, fw, 255, 135, &ns),
            udp(fw, l, 123, 123, b"ntp"),
            fragment(l, w, &seg[..24], 0, true, 0x4242),
            fragment(l, w, &seg[24..], 24, false, 0x4242),
        ];
        let mut out = wire::PcapWriter::new(Vec::new(), 1, true).unwrap();
        for (i, p) in packets.iter().enumerate() {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
            f.extend_from_slice(p);
            out.write_packet(wire::Time(1_700_000_000_000_000_000 + i as u64 * 10_000_000), &f).unwrap();
        }
        out.into_inner().unwrap()
    }
}

#[test]
fn ipv6_forward_mode_router_agrees() {
    if !ipv6_kernel_available() {
        return;
    }
    let dir = scratch("verify_forward6");
    let (pcap, host, rules6) = (dir.join("router6.pcap"), dir.join("host.toml"), dir.join("router.v6"));
    std::fs::write(&pcap, router6::pcap()).unwrap();
    std::fs::write(&host, router6::HOST).unwrap();
    std::fs::write(&rules6, router6::RULES6).unwrap();
    let (code, out, err) = verify(&[
        "--rules",
        &seed("rules.v4"),
        "--rules6",
        rules6.to_str().unwrap(),
        "--host",
        host.to_str().unwrap(),
        "--max-gap",
        "2",
        "--format",
        "json",
        "--out",
        dir.join("out").to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["captures"][0];
    assert_eq!(c["sent"], 20, "{c}");
    assert_eq!(c["unfaithful"].as_array().map(Vec::len), Some(0), "{c}");
    // Passed: the whole TCP exchange (twice the retransmitted reply), UDP, echo both ways, the LAN ping and
    // the neighbour solicitation to the router, the router's own packet, both fragments. Dropped: NEW from
    // the WAN, the WAN's ping to the router.
    assert_eq!(c["packets"]["kernel_passed"], 18, "{c}");
    assert_eq!(c["conntrack"]["kernel_entries"], 6, "TCP, UDP twice, two echoes, the router's own: {c}");
    assert!(dir.join("out/kernel-counters6.txt").exists());
}

/// A kernel keeping ICMPv6 entries 90 s (the engine: 30 s): the IPv6 entries of the table must disagree.
#[test]
fn ipv6_kernel_configured_differently_is_caught() {
    if !ipv6_kernel_available() {
        return;
    }
    let dir = scratch("verify_disagreement6");
    let (pcap, host, rules6) = (dir.join("router6.pcap"), dir.join("host.toml"), dir.join("router.v6"));
    std::fs::write(&pcap, router6::pcap()).unwrap();
    std::fs::write(&host, router6::HOST).unwrap();
    std::fs::write(&rules6, router6::RULES6).unwrap();
    let (code, out, err) = verify(&[
        "--rules",
        &seed("rules.v4"),
        "--rules6",
        rules6.to_str().unwrap(),
        "--host",
        host.to_str().unwrap(),
        "--max-gap",
        "2",
        "--kernel-only-sysctl",
        "net.netfilter.nf_conntrack_icmpv6_timeout=90",
        "--format",
        "json",
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["captures"][0];
    assert_eq!(c["packets"]["differences"].as_array().unwrap().len(), 0, "fates still agree: {c}");
    let diffs = c["conntrack"]["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 2, "the two echo entries: {c}");
    assert!(diffs.iter().all(|d| d["kind"] == "timeout" && d["line"].as_str().unwrap().contains("icmpv6")));
}

/// True when conntrack-tools are installed (else prints a SKIP line).
fn conntrack_tool() -> bool {
    let ok =
        Command::new("sh").args(["-c", "command -v conntrack"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: conntrack (conntrack-tools) not installed");
    }
    ok
}

/// What conntrack-tools print in the firewall namespace (`-L`, `-L -o extended`, `-S`, `-C`, `-E -o timestamp`)
/// agrees with the engine's formatters for the seed example, and every view is in the artefacts.
#[test]
fn conntrack_tool_views_agree_for_the_seed_example() {
    if !kernel_available() || !conntrack_tool() {
        return;
    }
    let dir = scratch("verify_views");
    let (code, out, err) = verify(&[
        "--rules",
        &seed("rules.v4"),
        "--local",
        "192.0.2.10/24",
        "--max-gap",
        "2",
        "--format",
        "json",
        "--out",
        dir.to_str().unwrap(),
        &seed("p2p.pcap"),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let views = &v["captures"][0]["views"];
    assert_eq!(views["skipped"], serde_json::Value::Null);
    for listing in ["list", "extended"] {
        assert_eq!(views[listing]["kernel_entries"], 76, "{views}");
        assert_eq!(views[listing]["engine_entries"], 76, "{views}");
        assert_eq!(views[listing]["differences"].as_array().unwrap().len(), 0, "{views}");
    }
    assert_eq!(views["stats"]["compared"], 18);
    assert_eq!(views["stats"]["differences"].as_array().unwrap().len(), 0, "{views}");
    assert_eq!(views["count"]["kernel"], 76);
    let ev = &views["events"];
    assert!(ev["kernel_events"].as_u64().unwrap() > 200, "{ev}");
    assert_eq!(ev["kernel_events"], ev["engine_events"]);
    assert_eq!(ev["timestamps_compared"], ev["engine_events"], "no timer expired during the run: {ev}");
    assert!(ev["max_skew_ms"].as_f64().unwrap() < 50.0, "{ev}");
    assert_eq!(ev["differences"].as_array().unwrap().len(), 0, "{ev}");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(read("kernel-conntrack-L.txt").lines().count(), 76);
    assert_eq!(read("kernel-conntrack-C.txt").trim(), "76");
    assert!(read("kernel-conntrack-S.txt").starts_with("cpu=0"));
    assert!(read("kernel-stat.txt").starts_with("entries  clashres found"));
    assert!(read("engine-conntrack-L-extended.txt").starts_with("ipv4     2 "));
    let kev = read("kernel-events.txt");
    let eev = read("engine-events.txt");
    assert_eq!(kev.lines().count(), eev.lines().count());
    assert!(kev.lines().next().unwrap().contains("\t    [NEW] "), "{kev}");
}

/// A kernel that sends no events (`nf_conntrack_events=0` on the kernel side only): fates, counters and tables
/// still agree, the events do not (every one is the engine's only), and that alone is a disagreement.
#[test]
fn a_kernel_without_events_is_caught() {
    if !kernel_available() || !conntrack_tool() {
        return;
    }
    let (code, out, err) = verify(&[
        "--rules",
        &seed("rules.v4"),
        "--local",
        "192.0.2.10/24",
        "--max-gap",
        "1",
        "--kernel-only-sysctl",
        "net.netfilter.nf_conntrack_events=0",
        "--format",
        "json",
        &seed("p2p.pcap"),
    ]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["captures"][0];
    assert_eq!(c["status"], "disagree");
    assert_eq!(c["packets"]["differences"].as_array().unwrap().len(), 0);
    assert_eq!(c["counters"]["differences"].as_array().unwrap().len(), 0);
    assert_eq!(c["conntrack"]["differences"].as_array().unwrap().len(), 0);
    let ev = &c["views"]["events"];
    assert_eq!(ev["kernel_events"], 0, "{ev}");
    let diffs = ev["differences"].as_array().unwrap();
    assert_eq!(diffs.len() as u64, ev["engine_events"].as_u64().unwrap());
    assert!(diffs.iter().all(|d| d["kind"] == "only_engine"), "{ev}");
}

/// Without conntrack-tools in PATH the views are skipped with a note, and the rest is verified as before.
#[test]
fn views_are_skipped_without_conntrack_tools() {
    if !kernel_available() {
        return;
    }
    // A PATH with every tool verify needs but conntrack.
    let bin = scratch("verify_no_conntrack_bin");
    for tool in ["ip", "sysctl", "iptables-legacy", "iptables-legacy-restore", "iptables-legacy-save"] {
        let o = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().unwrap();
        let path = String::from_utf8_lossy(&o.stdout).trim().to_string();
        std::os::unix::fs::symlink(&path, bin.join(tool)).unwrap();
    }
    let child = Command::new(env!("CARGO_BIN_EXE_statewall"))
        .args(["verify", "--rules", &seed("rules.v4"), "--local", "192.0.2.10/24", "--max-gap", "1"])
        .arg(seed("p2p.pcap"))
        .env("PATH", &bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_eq!(leftovers(pid), Vec::<String>::new(), "namespaces left behind");
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert!(err.contains("conntrack (conntrack-tools) is not installed"), "{err}");
    assert!(out.contains("views not compared"), "{out}");
    assert!(out.contains("views: not compared:"), "{out}");
}
