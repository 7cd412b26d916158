//! The established-flow fast path (remembered rule paths) changes nothing: `replay` and `replay
//! --no-fast-path` give the same verdict lines, counters, summary, table and events, on the examples,
//! generated router scenarios, the corpus, and a ruleset written to trip the cache (marks set in raw and
//! mangle, CONNMARK, status and direction matches, per-packet matches placed after flow matches, LOG, user
//! chains with RETURN, several tables; and one whose key-only walks are shared between flows). Each case
//! also checks that the fast path was really taken.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::*;

/// Compares the two runs and returns the packets the fast path took.
fn check(name: &str, rules: &[&str], capture: &str) -> u64 {
    let (n, summaries) = same_replay_results(name, rules, capture, [&[], &["--no-fast-path"]]);
    assert!(n > 0, "{name}: no packets");
    assert_eq!(summaries[1]["fast_path_packets"], 0, "{name}: --no-fast-path took the fast path");
    summaries[0]["fast_path_packets"].as_u64().unwrap()
}

/// A ruleset where some walks of established flows are flow-invariant and others are not.
const TRICKY: &str = "\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 53 -j MARK --set-xmark 0x5/0xff
-A PREROUTING -p tcp -m tcp --sport 443 -j MARK --set-xmark 0x7/0xff
-A OUTPUT -p udp -j MARK --set-xmark 0x9/0xff
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:tally - [0:0]
-A PREROUTING -m conntrack --ctstate NEW -p tcp -m tcp --dport 80 -j CONNMARK --set-xmark 0x10/0xff
-A PREROUTING -m connmark --mark 0x10/0xff -m conntrack --ctstatus ASSURED -j tally
-A PREROUTING -m mark --mark 0x7/0xff -j tally
-A FORWARD -m conntrack --ctdir REPLY -j tally
-A POSTROUTING -m conntrack --ctstate ESTABLISHED -m length --length 0:100 -j tally
-A POSTROUTING -p tcp -m tcp --tcp-flags FIN,RST,ACK ACK -m conntrack --ctstate ESTABLISHED
-A tally -p tcp -m multiport --ports 22,80,443 -j RETURN
-A tally -m addrtype --dst-type LOCAL
-A tally -p udp -m pkttype --pkt-type unicast
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:est - [0:0]
-A INPUT -m conntrack --ctstate ESTABLISHED -j est
-A INPUT -m conntrack --ctstate RELATED,NEW -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j LOG --log-prefix \"inv \"
-A est -p tcp -m tcp --sport 22 -m ttl --ttl-gt 60 -j DROP
-A est -m mark --mark 0x5/0xff -j ACCEPT
-A est -p tcp -m tcp --dport 8080 -j LOG --log-prefix \"alt \"
-A est -m conntrack --ctstatus SEEN_REPLY -m connmark ! --mark 0x10/0xff -j ACCEPT
-A est -m connmark --mark 0x10/0xff -p tcp -m tcp --tcp-flags SYN,ACK ACK -j ACCEPT
-A est -j RETURN
-A FORWARD -m conntrack --ctstate ESTABLISHED -p tcp -m tcp --tcp-flags RST RST -j DROP
-A FORWARD -m conntrack --ctstate ESTABLISHED -m iprange --src-range 10.1.0.2-10.1.0.9 -j ACCEPT
COMMIT
";

/// Without a raw table (the express lane): walks decided by rules testing only the path key's facts
/// (their paths are offered to every flow) next to walks that also test the flow, after jumps, in
/// user chains, and behind key-only rules.
const KEYED: &str = "\
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:chk - [0:0]
-A PREROUTING -m conntrack --ctstate ESTABLISHED --ctdir ORIGINAL -m comment --comment originals -j ACCEPT
-A PREROUTING -m conntrack --ctstate ESTABLISHED -j chk
-A PREROUTING -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A chk -p udp -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED -m connmark --mark 0x0 -j ACCEPT
-A POSTROUTING -m pkttype --pkt-type unicast -m conntrack --ctstate ESTABLISHED -j ACCEPT
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate ESTABLISHED --ctdir REPLY -j ACCEPT
-A INPUT -m conntrack --ctstate ESTABLISHED -p tcp -j ACCEPT
-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,NEW -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED --ctdir REPLY -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED --ctstatus ASSURED -j ACCEPT
-A FORWARD -m conntrack --ctstate ESTABLISHED -i eth0 -j ACCEPT
-A FORWARD -m conntrack --ctstate RELATED,NEW,ESTABLISHED -j ACCEPT
-A OUTPUT -m mark --mark 0x1 -j DROP
-A OUTPUT -m conntrack --ctstate ESTABLISHED -s 10.0.0.0/8 -j ACCEPT
COMMIT
";

/// Stateful forwarding that lets most corpus traffic through, counting per state and direction.
const STATEFUL: &str = "\
*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:count - [0:0]
-A PREROUTING -j count
-A FORWARD -j count
-A POSTROUTING -j count
-A count -m conntrack --ctstate ESTABLISHED --ctdir ORIGINAL
-A count -m conntrack --ctstate ESTABLISHED --ctdir REPLY
-A count -m conntrack --ctstatus ASSURED
-A count -m conntrack --ctstatus SEEN_REPLY
-A count -p tcp -m multiport --dports 80,443
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -p udp -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -p icmp -j ACCEPT
COMMIT
";

/// `rules` without its raw table.
fn without_raw(rules: &str) -> String {
    let (head, rest) = rules.split_once("*raw\n").unwrap();
    let (_, tail) = rest.split_once("COMMIT\n").unwrap();
    format!("{head}{tail}")
}

#[test]
fn examples_give_the_same_results_with_and_without_the_fast_path() {
    let cases = example_cases();
    for (name, rules, cap) in cases {
        let r: Vec<&str> = rules.iter().map(String::as_str).collect();
        let fast = check(&format!("fast_{name}"), &r, &cap);
        assert!(fast > 10, "{name}: the fast path was taken {fast} times");
    }
}

#[test]
fn generated_router_scenarios_give_the_same_results() {
    let dir = scratch("fast_random");
    let host = root().join("examples/router/host.toml").display().to_string();
    let tricky = dir.join("tricky.v4");
    std::fs::write(&tricky, TRICKY).unwrap();
    // Without the raw table, established packets take the engine's express lane (conntrack-in first).
    let tricky_noraw = dir.join("tricky-noraw.v4");
    std::fs::write(&tricky_noraw, without_raw(TRICKY)).unwrap();
    let keyed = dir.join("keyed.v4");
    std::fs::write(&keyed, KEYED).unwrap();
    let mut fast = 0;
    for rules in [
        root().join("examples/router/rules.v4"),
        root().join("examples/logcount/rules.v4"),
        tricky.clone(),
        tricky_noraw.clone(),
        keyed.clone(),
    ] {
        let rules = rules.display().to_string();
        for (name, seed) in [("random", 3), ("random", 17), ("random-mix", 5), ("case:syn-flood", 1)] {
            let cap = dir.join(format!("{}-{seed}.pcap", name.replace(':', "_")));
            if !cap.exists() {
                write_scenario(&cap, name, seed);
            }
            let args = ["--rules", rules.as_str(), "--host", host.as_str()];
            let tag = format!("fast_{}{seed}_{}", name.replace(':', "_"), fast);
            fast += check(&tag, &args, &cap.display().to_string());
        }
    }
    assert!(fast > 100, "the fast path was taken {fast} times");
}

#[test]
fn corpus_captures_give_the_same_results() {
    let Some(corpus) = corpus() else { return };
    let dir = scratch("fast_corpus");
    let tricky = dir.join("tricky.v4");
    std::fs::write(&tricky, TRICKY).unwrap();
    let stateful = dir.join("stateful.v4");
    std::fs::write(&stateful, STATEFUL).unwrap();
    let stateful6 = dir.join("stateful.v6");
    std::fs::write(&stateful6, STATEFUL.replace("-p icmp", "-p ipv6-icmp")).unwrap();
    let tricky_noraw = dir.join("tricky-noraw.v4");
    std::fs::write(&tricky_noraw, without_raw(TRICKY)).unwrap();
    let keyed = dir.join("keyed.v4");
    std::fs::write(&keyed, KEYED).unwrap();
    let sets = [(stateful, Some(stateful6)), (tricky, None), (tricky_noraw, None), (keyed, None)];
    let (mut n, mut fast) = (0, 0);
    for (i, (r4, r6)) in sets.iter().enumerate() {
        for entry in std::fs::read_dir(corpus.join("pcaps")).unwrap() {
            let path = entry.unwrap().path();
            let name =
                format!("fast{i}_{}", path.file_name().unwrap().to_string_lossy().replace(['.', '-'], "_"));
            let mut args = vec!["--rules".to_string(), r4.display().to_string()];
            if let Some(r6) = r6 {
                args.extend(["--rules6".to_string(), r6.display().to_string()]);
            }
            // Forwarding on, a default route: most corpus packets take the FORWARD path.
            args.extend([
                "--host".to_string(),
                root().join("examples/router/host.toml").display().to_string(),
            ]);
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            fast += check(&name, &a, &path.display().to_string());
            n += 1;
        }
    }
    assert!(n > 40, "{n} captures");
    assert!(fast > 1000, "the fast path was taken {fast} times");
}
