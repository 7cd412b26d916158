//! The FTP and TFTP helpers against the real kernel (issue 5): `statewall verify` with the helper rulesets of
//! examples/helpers on the corpus FTP/TFTP captures (both endpoints local in turn) and on the crafted
//! examples/helpers/ftp-edge.pcap (number parsing edges, bare LF, bounce). Every run must AGREE and the data
//! connections must really have been RELATED (the ruleset lets new connections reach only 21 and 69).
//!
//! Root only: without root or the tools these tests print "SKIP: ..." and pass, unless
//! STATEWALL_REQUIRE_KERNEL_TESTS=1 (CI), where they fail instead. The corpus cases also need ../shared/corpus.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;

fn helpers(file: &str) -> String {
    root().join("examples/helpers").join(file).display().to_string()
}

/// Runs verify on one capture and asserts agreement; returns the text report.
fn agree(capture: &str, local: &str, v6: bool) -> String {
    agree_with("rules.v4", capture, local, v6)
}

/// [`agree`] with another IPv4 ruleset of examples/helpers.
fn agree_with(rules: &str, capture: &str, local: &str, v6: bool) -> String {
    let rules = helpers(rules);
    let rules6 = helpers("rules.v6");
    let mut args = vec!["--rules", &rules, "--local", local, "--max-gap", "2", "--no-progress"];
    if v6 {
        args.extend_from_slice(&["--rules6", &rules6]);
    }
    args.push(capture);
    let (code, out, err) = verify(&args);
    assert_eq!(code, Some(0), "{capture} (local {local}):\n{out}\n{err}");
    assert!(out.starts_with("AGREE"), "{capture} (local {local}): {out}");
    out
}

#[test]
fn corpus_ftp_and_tftp_captures_agree_with_the_kernel() {
    if !kernel_available() {
        return;
    }
    let Some(corpus) = corpus() else { return };
    let cases: &[(&str, &[&str], bool)] = &[
        ("suricata-verify__ftp__ftp-download-active.pcap", &["172.23.0.3/24", "172.23.0.2/24"], false),
        ("suricata-verify__ftp__ftp-download-passive.pcap", &["172.23.0.3/24", "172.23.0.2/24"], false),
        ("suricata-verify__ftp__ftp-bounce__test.pcap", &["1.1.1.2/24", "2.2.2.1/24"], false),
        ("zeek__ftp__ipv4.pcap", &["141.142.220.235/24", "199.233.217.249/24"], false),
        (
            "zeek__ftp__ipv6.pcap",
            &["2001:470:1f11:81f:c999:d94:aa7c:2e3e/64", "2001:470:4867:99::21/64"],
            true,
        ),
        ("tcpdump__tftp.pcap", &["192.168.1.1/24", "192.168.1.2/24"], false),
    ];
    for (file, locals, v6) in cases {
        let cap = corpus.join("pcaps").join(file).display().to_string();
        for local in *locals {
            agree(&cap, local, *v6);
        }
    }
}

#[test]
fn crafted_ftp_edge_cases_agree_with_the_kernel() {
    if !kernel_available() {
        return;
    }
    let cap = helpers("ftp-edge.pcap");
    for local in ["10.1.0.2/16", "10.1.1.1/16"] {
        let out = agree(&cap, local, false);
        assert!(out.contains("conntrack 18 kernel vs 18 engine entries"), "{local}: {out}");
    }
}

/// The data connections are RELATED on both sides (the counters of the RELATED+EXPECTED rule agree and are not
/// zero), so the agreement above is about the helper, not about everything being dropped.
#[test]
fn ftp_edge_data_connections_are_related() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("kernel_helpers_related");
    let out_dir = dir.display().to_string();
    let (code, out, err) = verify(&[
        "--rules",
        &helpers("rules.v4"),
        "--local",
        "10.1.0.2/16",
        "--max-gap",
        "2",
        "--no-progress",
        "--out",
        &out_dir,
        &helpers("ftp-edge.pcap"),
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let counters = std::fs::read_to_string(dir.join("kernel-counters.txt")).unwrap();
    let line = counters
        .lines()
        .find(|l| l.contains("-A stateful -m conntrack --ctstate RELATED -m conntrack --ctstatus EXPECTED"))
        .unwrap();
    // 8 expected data connections: PASV, octet 257, EPSV 65537, p1 256, p2 300 (all packed without range
    // checks on 6.18), EPRT port 70000, the PORT after a refused bounce, lower-case eprt
    assert!(line.starts_with("[8:"), "{line}");
}

/// Runs verify with `rules` on `capture` (local `local`) keeping the artefacts; returns the kernel's packet count
/// of the RELATED+EXPECTED accept rule.
fn related_accepted(rules: &str, capture: &str, local: &str, name: &str) -> u64 {
    let dir = scratch(name);
    let out_dir = dir.display().to_string();
    let (code, out, err) = verify(&[
        "--rules",
        &helpers(rules),
        "--local",
        local,
        "--max-gap",
        "2",
        "--no-progress",
        "--out",
        &out_dir,
        capture,
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.starts_with("AGREE"), "{capture} (local {local}): {out}");
    let counters = std::fs::read_to_string(dir.join("kernel-counters.txt")).unwrap();
    let line = counters
        .lines()
        .find(|l| l.contains("-A stateful -m conntrack --ctstate RELATED -m conntrack --ctstatus EXPECTED"))
        .unwrap();
    line.trim_start_matches('[').split(':').next().unwrap().parse().unwrap()
}

/// IRC DCC (SEND, CHAT accepted; forged address, port 0, DCC not at the start of the message, NOTICE, DCC from
/// the server, partial line ignored; 16-bit port wrap) and Amanda (CONNECT DATA/MESG/INDEX, port 0 ending the
/// list, wrap, no CONNECT) in examples/helpers/irc-amanda.pcap agree from both endpoints, and the expected
/// connections were really RELATED: 3 DCC connections to the client and 5 Amanda data connections.
#[test]
fn crafted_irc_dcc_and_amanda_agree_with_the_kernel() {
    if !kernel_available() {
        return;
    }
    let cap = helpers("irc-amanda.pcap");
    assert_eq!(
        related_accepted("rules-irc-amanda-sip.v4", &cap, "10.1.0.2/16", "kernel_helpers_irc_client"),
        8
    );
    // on the IRC server only the Amanda connections it opens itself pass OUTPUT
    assert_eq!(
        related_accepted("rules-irc-amanda-sip.v4", &cap, "10.1.1.1/16", "kernel_helpers_irc_server"),
        5
    );
}

/// The corpus SIP/UDP capture (REGISTER with 401/403/200 answers, INVITEs with SDP, 183 with SDP, CANCEL, 4xx
/// answers) through the sip helper agrees from the client and from both servers: the master entries' 3600 s
/// sip_timeout and the expectation counters (`expect_create` / `expect_delete` of the REGISTER signalling and
/// RTP/RTCP media expectations and their flushes) are compared with the kernel's.
#[test]
fn corpus_sip_capture_agrees_with_the_kernel() {
    if !kernel_available() {
        return;
    }
    let Some(corpus) = corpus() else { return };
    let cap = corpus.join("pcaps").join("zeek__sip__wireshark.pcap").display().to_string();
    for local in ["192.168.1.2/24", "212.242.33.35/24", "200.68.120.81/24"] {
        agree_with("rules-irc-amanda-sip.v4", &cap, local, false);
    }
}
