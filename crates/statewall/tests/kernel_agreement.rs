//! The differential suite: generated scenarios through the real kernel and through statewall must agree 100%
//! (packet fates, every rule counter, the final conntrack table). Root only; see `kernel_available`.
//!
//! 200 scenarios of `synth --scenario random` (fixed seeds) over four rulesets and both host models:
//! - seeds 1-60: examples/seed/rules.v4, host mode (--local 192.0.2.10/24: LAN traffic is not routed);
//! - seeds 61-100: examples/seed/rules-notrack.v4, host mode;
//! - seeds 101-160: examples/router/rules.v4, router mode (examples/router/host.toml, INVALID dropped in
//!   FORWARD);
//! - seeds 161-200: examples/logcount/rules.v4 (logs and counts per state in every hook), router mode.
//!
//! Packets are sent with at most 2 ms between them (`--max-gap 2`); statewall replays the recorded send times.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;

fn scenarios(name: &str, scenario: &str, seeds: std::ops::RangeInclusive<u64>) -> Vec<String> {
    let dir = scratch(&format!("kernel_agreement_{name}"));
    seeds
        .map(|seed| {
            let path = dir.join(format!("{scenario}-{seed:03}.pcap"));
            write_scenario(&path, scenario, seed);
            path.display().to_string()
        })
        .collect()
}

fn agree(name: &str, rules: &str, host: &[&str], seeds: std::ops::RangeInclusive<u64>) {
    agree_scenario(name, "random", rules, host, seeds);
}

fn agree_scenario(
    name: &str,
    scenario: &str,
    rules: &str,
    host: &[&str],
    seeds: std::ops::RangeInclusive<u64>,
) {
    if !kernel_available() {
        return;
    }
    let n = seeds.clone().count();
    let caps = scenarios(name, scenario, seeds);
    let out = scratch(&format!("kernel_agreement_{name}_out"));
    let rules = root().join(rules).display().to_string();
    let host: Vec<String> = host
        .iter()
        .map(
            |a| if a.starts_with("examples/") { root().join(a).display().to_string() } else { a.to_string() },
        )
        .collect();
    let host: Vec<&str> = host.iter().map(String::as_str).collect();
    let out_s = out.display().to_string();
    let mut args = vec!["--rules", rules.as_str()];
    args.extend_from_slice(&host);
    args.extend_from_slice(&["--max-gap", "2", "--out", out_s.as_str()]);
    args.extend(caps.iter().map(String::as_str));
    let (code, stdout, stderr) = verify(&args);
    assert_eq!(
        code,
        Some(0),
        "{name}: kernel and statewall disagree (artefacts in {out_s}):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(&format!("{n} of {n} captures agree")), "{stdout}");
}

#[test]
fn random_scenarios_seed_ruleset_host_mode() {
    agree("seed", "examples/seed/rules.v4", &["--local", "192.0.2.10/24"], 1..=60);
}

#[test]
fn random_scenarios_notrack_ruleset_host_mode() {
    agree("notrack", "examples/seed/rules-notrack.v4", &["--local", "192.0.2.10/24"], 61..=100);
}

#[test]
fn random_scenarios_router_ruleset() {
    agree("router", "examples/router/rules.v4", &["--host", "examples/router/host.toml"], 101..=160);
}

#[test]
fn random_scenarios_logcount_ruleset_router_mode() {
    agree("logcount", "examples/logcount/rules.v4", &["--host", "examples/router/host.toml"], 161..=200);
}

// ----- issue #4: IPv6, fragments, GRE/SCTP/generic/UDP-Lite, zones and marks, named TCP/ICMP cases -----

const ROUTER: &[&str] = &["--host", "examples/router/host.toml"];
const ROUTER6: &[&str] = &["--rules6", "examples/router/rules.v6", "--host", "examples/router/host.toml"];
const LOGCOUNT6_ROUTER: &[&str] =
    &["--rules6", "examples/logcount/rules.v6", "--host", "examples/router/host.toml"];
const LOGCOUNT6_HOST: &[&str] =
    &["--rules6", "examples/logcount/rules.v6", "--local", "192.0.2.10/24", "--local", "2001:db8:0:1::10/64"];

#[test]
fn random6_router_rulesets() {
    agree_scenario("random6_router", "random6", "examples/router/rules.v4", ROUTER6, 1..=30);
}

#[test]
fn random6_logcount_router_mode() {
    agree_scenario("random6_logcount", "random6", "examples/logcount/rules.v4", LOGCOUNT6_ROUTER, 31..=50);
}

#[test]
fn random6_logcount_host_mode() {
    agree_scenario("random6_host", "random6", "examples/logcount/rules.v4", LOGCOUNT6_HOST, 51..=65);
}

#[test]
fn fragments_gre_sctp_generic_udplite() {
    agree_scenario("mix", "random-mix", "examples/logcount/rules.v4", ROUTER, 1..=40);
}

#[test]
fn zones_and_marks() {
    agree_scenario("zones", "random", "examples/zones/rules.v4", ROUTER, 201..=230);
}

/// The named cases of issue #4, each a capture of one behaviour (see the synth crate docs), through the
/// log-and-count rulesets in host mode.
#[test]
fn named_cases() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("kernel_agreement_cases");
    let mut caps = Vec::new();
    for name in synth::scenario_names().iter().filter(|n| n.starts_with("case:")) {
        let path = dir.join(format!("{}.pcap", name.trim_start_matches("case:")));
        write_scenario(&path, name, 1);
        caps.push(path.display().to_string());
    }
    assert!(caps.len() >= 12, "{caps:?}");
    let rules = root().join("examples/logcount/rules.v4").display().to_string();
    let rules6 = root().join("examples/logcount/rules.v6").display().to_string();
    let mut args = vec!["--rules", &rules, "--rules6", &rules6, "--local", "192.0.2.10/24"];
    args.extend_from_slice(&["--local", "2001:db8:0:1::10/64", "--max-gap", "2"]);
    args.extend(caps.iter().map(String::as_str));
    let (code, stdout, stderr) = verify(&args);
    assert_eq!(code, Some(0), "named cases disagree:\n{stdout}\n{stderr}");
}

/// Mid-stream pickup with `tcp_loose=0`: the kernel refuses to pick up, statewall too (and with the default
/// `tcp_loose=1` in `named_cases`, both pick it up).
#[test]
fn midstream_without_loose_pickup() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("kernel_agreement_midstream_noloose");
    let pcap = dir.join("midstream.pcap");
    write_scenario(&pcap, "case:midstream", 1);
    let rules = root().join("examples/logcount/rules.v4").display().to_string();
    let p = pcap.display().to_string();
    let (code, stdout, stderr) = verify(&[
        "--rules",
        &rules,
        "--local",
        "192.0.2.10/24",
        "--sysctl",
        "net.netfilter.nf_conntrack_tcp_loose=0",
        "--max-gap",
        "2",
        &p,
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
}
