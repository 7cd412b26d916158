//! The SIP helper over UDP, TCP and IPv6 against the real kernel (issue 5): `statewall verify` with
//! examples/helpers/rules-sip.v4 / rules-sip.v6 on the crafted examples/helpers/sip.pcap (written by gen_sip.py),
//! from the client and from the registrar/proxy. Every run must AGREE and the media / inbound-call connections must
//! really have been RELATED (the ruleset lets new connections reach only udp/tcp 5060).
//!
//! The kernel tests are root only: without root or the tools they print "SKIP: ..." and pass, unless
//! STATEWALL_REQUIRE_KERNEL_TESTS=1 (CI), where they fail instead. The replay tests run everywhere.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;

fn helpers(file: &str) -> String {
    root().join("examples/helpers").join(file).display().to_string()
}

/// The packet counts of the kernel's `RELATED --ctstatus EXPECTED -j ACCEPT` rules: (udp v4, tcp v4, udp v6).
fn related_counts(dir: &std::path::Path) -> (u64, u64, u64) {
    let count = |file: &str, proto: &str| -> u64 {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let line = text
            .lines()
            .find(|l| {
                l.contains(&format!(
                    "-A stateful -p {proto} -m conntrack --ctstate RELATED --ctstatus EXPECTED"
                ))
            })
            .unwrap();
        line.trim_start_matches('[').split(':').next().unwrap().parse().unwrap()
    };
    (
        count("kernel-counters.txt", "udp"),
        count("kernel-counters.txt", "tcp"),
        count("kernel-counters6.txt", "udp"),
    )
}

/// Runs verify on sip.pcap with the host owning `locals` (an IPv4 and an IPv6 address); asserts agreement and
/// returns the artefact directory.
fn agree(locals: [&str; 2], name: &str) -> std::path::PathBuf {
    let dir = scratch(name);
    let out_dir = dir.display().to_string();
    let (rules, rules6, cap) = (helpers("rules-sip.v4"), helpers("rules-sip.v6"), helpers("sip.pcap"));
    let (code, out, err) = verify(&[
        "--rules",
        &rules,
        "--rules6",
        &rules6,
        "--local",
        locals[0],
        "--local",
        locals[1],
        "--max-gap",
        "2",
        "--no-progress",
        "--out",
        &out_dir,
        &cap,
    ]);
    assert_eq!(code, Some(0), "sip.pcap (local {locals:?}):\n{out}\n{err}");
    assert!(out.starts_with("AGREE"), "sip.pcap (local {locals:?}): {out}");
    assert!(out.contains("conntrack 19 kernel vs 19 engine entries"), "{out}");
    dir
}

/// From the client (10.2.0.2, fd02::2) and from the registrar/proxy (10.2.1.1, fd02::101): packet fates, rule
/// counters, conntrack table, the expectation table (/proc/net/nf_conntrack_expect, conntrack -L expect) and the
/// conntrack -E / -E expect event streams agree. The RELATED counters are the same on both sides and not zero:
/// IPv4 UDP 15 (the call's RTP and RTCP 4, the inbound call's INVITE and RTP 3, the TCP-signalled media 4, the
/// INVITE before the split UPDATE 4), TCP 1 (the registrar's SYN to the registered port 5072), IPv6 UDP 11 (the
/// call 4, the inbound call 3, the media-level c= line ending in ']' 4).
#[test]
fn crafted_sip_capture_agrees_with_the_kernel_from_both_endpoints() {
    if !kernel_available() {
        return;
    }
    let client = agree(["10.2.0.2/16", "fd02::2/64"], "kernel_sip_client");
    assert_eq!(related_counts(&client), (15, 1, 11));
    let server = agree(["10.2.1.1/16", "fd02::101/64"], "kernel_sip_server");
    assert_eq!(related_counts(&server), (15, 1, 11));
}

/// One `--verdicts` line: (ctstate, verdict, flow, reason).
fn verdicts(locals: [&str; 2], name: &str) -> Vec<(String, String, String, String)> {
    let dir = scratch(name);
    let path = dir.join("verdicts.jsonl").display().to_string();
    let o = statewall(&[
        "replay",
        "--rules",
        &helpers("rules-sip.v4"),
        "--rules6",
        &helpers("rules-sip.v6"),
        "--local",
        locals[0],
        "--local",
        locals[1],
        "--verdicts",
        &path,
        &helpers("sip.pcap"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            (s("ctstate"), s("verdict"), s("flow"), s("reason"))
        })
        .collect()
}

/// The (ctstate, verdict) of every packet of `flow`, in order.
fn fates(v: &[(String, String, String, String)], flow: &str) -> Vec<(String, String)> {
    v.iter().filter(|(_, _, f, _)| f == flow).map(|(s, d, _, _)| (s.clone(), d.clone())).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

const RELATED: (&str, &str) = ("RELATED", "accept");
const ESTABLISHED: (&str, &str) = ("ESTABLISHED", "accept");
const NEW_DROPPED: (&str, &str) = ("NEW", "drop");

/// SIP over UDP and TCP (IPv4) on the client: the media and the inbound calls are RELATED through the helper's
/// expectations (first packet of each direction that opens the entry), the media announced by the split UPDATE
/// and by the INVITE split before its Content-Length are not, nor the media after the BYE.
#[test]
fn replay_sip_media_and_inbound_calls_are_related() {
    let v = verdicts(["10.2.0.2/16", "fd02::2/64"], "kernel_sip_replay_v4");
    let cases: &[(&str, &[(&str, &str)])] = &[
        // SIP/UDP: RTP caller -> callee, answered inside its entry; RTCP callee -> caller
        ("udp 10.2.0.2:40000 -> 10.2.1.1:50000", &[RELATED, RELATED]),
        ("udp 10.2.1.1:50000 -> 10.2.0.2:40000", &[ESTABLISHED, ESTABLISHED]),
        ("udp 10.2.1.1:50001 -> 10.2.0.2:40001", &[RELATED, RELATED]),
        // the inbound call to the registered Contact port, and its own media; from a third party it is NEW
        // (sip_direct_signalling: the expectation names the registrar)
        ("udp 10.2.1.5:5060 -> 10.2.0.2:5070", &[NEW_DROPPED]),
        ("udp 10.2.1.1:5060 -> 10.2.0.2:5070", &[RELATED, ESTABLISHED]),
        ("udp 10.2.1.1:52000 -> 10.2.0.2:42000", &[RELATED, RELATED]),
        // after the BYE
        ("udp 10.2.1.1:50010 -> 10.2.0.2:40000", &[NEW_DROPPED]),
        // SIP/TCP: two messages per segment
        ("udp 10.2.0.2:40100 -> 10.2.1.1:50100", &[RELATED, RELATED]),
        ("udp 10.2.1.1:50101 -> 10.2.0.2:40101", &[RELATED, RELATED]),
        ("tcp 10.2.1.1:45000 -> 10.2.0.2:5072", &[RELATED, ESTABLISHED, ESTABLISHED, ESTABLISHED]),
        // a complete INVITE + half an UPDATE in one segment: only the INVITE is parsed
        ("udp 10.2.1.1:50200 -> 10.2.0.2:40200", &[RELATED, RELATED]),
        ("udp 10.2.1.1:50300 -> 10.2.0.2:40300", &[NEW_DROPPED, NEW_DROPPED]),
        ("udp 10.2.1.1:50400 -> 10.2.0.2:40400", &[NEW_DROPPED, NEW_DROPPED]),
        ("udp 10.2.1.1:50201 -> 10.2.0.2:40201", &[RELATED, RELATED]),
    ];
    for (flow, want) in cases {
        assert_eq!(fates(&v, flow), pairs(want), "{flow}");
    }
}

/// SIP over IPv6 on the client: the bracketed Contact [fd02::2]:5070 and the `c=IN IP6` media are expected; an
/// unbracketed Contact is not; a bracketed SDP address and an IPv4 one are no address (the helper drops the
/// INVITE, reason in the verdict); the de-registration closes the Contact port again.
#[test]
fn replay_sip_over_ipv6_media_and_inbound_calls_are_related() {
    let v = verdicts(["10.2.0.2/16", "fd02::2/64"], "kernel_sip_replay_v6");
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("udp fd02::2:40000 -> fd02::101:50000", &[RELATED, RELATED]),
        ("udp fd02::101:50001 -> fd02::2:40001", &[RELATED, RELATED]),
        ("udp fd02::101:52000 -> fd02::2:42000", &[RELATED, RELATED]),
        ("udp fd02::101:5060 -> fd02::2:5080", &[NEW_DROPPED]),
        ("udp fd02::101:50500 -> fd02::2:44000", &[NEW_DROPPED, NEW_DROPPED]),
        ("udp fd02::101:50700 -> fd02::2:44200", &[RELATED, RELATED]),
        ("udp fd02::101:50701 -> fd02::2:44201", &[RELATED, RELATED]),
        ("udp fd02::101:50600 -> fd02::2:44100", &[NEW_DROPPED, NEW_DROPPED]),
    ];
    for (flow, want) in cases {
        assert_eq!(fates(&v, flow), pairs(want), "{flow}");
    }
    // the inbound call (INVITE, BYE) while registered; after the de-registration the registrar cannot reach
    // the Contact port any more (from another source port: the call's own entry still holds 5060 -> 5070)
    assert_eq!(fates(&v, "udp fd02::101:5060 -> fd02::2:5070"), pairs(&[RELATED, ESTABLISHED]));
    assert_eq!(fates(&v, "udp fd02::101:5062 -> fd02::2:5070"), pairs(&[NEW_DROPPED]));
    let dropped: Vec<_> =
        v.iter().filter(|(_, _, _, r)| r.starts_with("sip:")).map(|(_, _, _, r)| r.as_str()).collect();
    assert_eq!(dropped, vec!["sip: cannot parse SDP message", "sip: cannot parse SDP message"]);
}
