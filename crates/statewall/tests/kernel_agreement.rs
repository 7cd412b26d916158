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

fn scenarios(name: &str, seeds: std::ops::RangeInclusive<u64>) -> Vec<String> {
    let dir = scratch(&format!("kernel_agreement_{name}"));
    seeds
        .map(|seed| {
            let spec =
                synth::ScenarioSpec { name: "random".into(), seed, flows: None, start: synth::DEFAULT_START };
            let frames = synth::generate(&spec).unwrap();
            let path = dir.join(format!("random-{seed:03}.pcap"));
            synth::write_pcap(&frames, std::fs::File::create(&path).unwrap()).unwrap();
            path.display().to_string()
        })
        .collect()
}

fn agree(name: &str, rules: &str, host: &[&str], seeds: std::ops::RangeInclusive<u64>) {
    if !kernel_available() {
        return;
    }
    let n = seeds.clone().count();
    let caps = scenarios(name, seeds);
    let out = scratch(&format!("kernel_agreement_{name}_out"));
    let rules = root().join(rules).display().to_string();
    let out_s = out.display().to_string();
    let mut args = vec!["--rules", rules.as_str()];
    args.extend_from_slice(host);
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
