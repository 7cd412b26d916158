//! Helpers shared by the end-to-end tests: run the real binary.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn seed(file: &str) -> String {
    root().join("examples/seed").join(file).display().to_string()
}

pub fn statewall(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_statewall"))
        .args(args)
        .arg("--no-progress")
        .current_dir(root())
        .output()
        .unwrap()
}

pub fn statewall_raw(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_statewall"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh scratch directory under target/ (unique per test name).
pub fn scratch(name: &str) -> PathBuf {
    let d = root().join("target/e2e-scratch").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The shared corpus, if this machine has it.
pub fn corpus() -> Option<PathBuf> {
    let d = root().join("../shared/corpus");
    if d.join("manifest.json").exists() {
        Some(d)
    } else {
        eprintln!("SKIP: ../shared/corpus not present on this machine");
        None
    }
}

/// True when the kernel tests can run here (root, iproute2, iptables-legacy). Otherwise prints why and returns
/// false, unless STATEWALL_REQUIRE_KERNEL_TESTS=1 (CI), where it panics.
pub fn kernel_available() -> bool {
    let not_root = Command::new("id").arg("-u").output().map(|o| o.stdout != b"0\n").unwrap_or(true);
    let why = if not_root {
        Some("not root".to_string())
    } else {
        missing_tool(&["ip", "iptables-legacy", "iptables-legacy-restore", "iptables-legacy-save", "sysctl"])
            .map(|t| format!("{t} missing"))
    };
    skip_unless_available(why, "statewall verify needs root and iproute2/iptables-legacy")
}

/// The first of `tools` not in PATH.
pub fn missing_tool<'a>(tools: &[&'a str]) -> Option<&'a str> {
    tools.iter().copied().find(|t| {
        !Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// `why` = None: available. Otherwise prints the SKIP reason and returns false, or panics when
/// STATEWALL_REQUIRE_KERNEL_TESTS=1 (CI) so that a broken setup fails instead of skipping.
pub fn skip_unless_available(why: Option<String>, what: &str) -> bool {
    let Some(why) = why else { return true };
    assert!(
        std::env::var("STATEWALL_REQUIRE_KERNEL_TESTS").as_deref() != Ok("1"),
        "kernel tests required (STATEWALL_REQUIRE_KERNEL_TESTS=1) but {why}"
    );
    eprintln!("SKIP: {what}: {why}");
    false
}

/// Writes scenario `name` (synth) with `seed` to `path`.
pub fn write_scenario(path: &Path, name: &str, seed: u64) {
    let spec = synth::ScenarioSpec { name: name.into(), seed, flows: None, start: synth::DEFAULT_START };
    synth::write_pcap(&synth::generate(&spec).unwrap(), std::fs::File::create(path).unwrap()).unwrap();
}

/// Nothing lost: every packet of a replay summary (JSON) is counted under exactly one disposition.
pub fn assert_every_packet_counted(summary: &serde_json::Value, what: &str) {
    let parts = [
        "filtered",
        "not_ip",
        "not_filtered",
        "undecodable",
        "fragments_held",
        "fragments_dropped",
        "ip_input_drops",
    ];
    let sum: u64 = parts.iter().map(|k| summary[*k].as_u64().unwrap()).sum();
    assert_eq!(sum, summary["packets"].as_u64().unwrap(), "{what}");
}

/// Namespaces of the statewall process `pid` still present.
pub fn leftovers(pid: u32) -> Vec<String> {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("sw{pid:x}-");
    String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Runs verify; returns (exit code, stdout, stderr) after checking no namespace of that run survived.
pub fn verify(args: &[&str]) -> (Option<i32>, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_statewall"))
        .arg("verify")
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_eq!(leftovers(pid), Vec::<String>::new(), "namespaces left behind");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs replay twice, with the extra arguments `variants[0]` and `variants[1]`, and asserts that every
/// output is the same: summary (wall-clock rate and fast-path count aside), verdict lines, counters, table
/// entries (in any order), events and expectation events. Returns the packet count and both JSON summaries.
pub fn same_replay_results(
    name: &str,
    rules: &[&str],
    capture: &str,
    variants: [&[&str]; 2],
) -> (usize, Vec<serde_json::Value>) {
    let dir = scratch(&format!("same_{name}"));
    let mut outs = Vec::new();
    let mut summaries = Vec::new();
    for (t, extra) in variants.iter().enumerate() {
        let p = |f: &str| dir.join(format!("{f}{t}")).display().to_string();
        let mut args: Vec<String> = vec!["replay".into()];
        args.extend(rules.iter().map(|s| s.to_string()));
        args.extend(extra.iter().map(|s| s.to_string()));
        for (flag, file) in [
            ("--verdicts", p("verdicts")),
            ("--counters", p("counters")),
            ("--conntrack", p("table")),
            ("--events", p("events")),
            ("--expect-events", p("expect")),
            ("--format", "json".into()),
        ] {
            args.push(flag.into());
            args.push(file);
        }
        args.push(capture.into());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = statewall(&argv);
        assert!(o.status.success() || o.status.code() == Some(3), "{name} {extra:?}: {}", stderr(&o));
        let full: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut summary = full.clone();
        summary.as_object_mut().unwrap().remove("packets_per_sec");
        summary.as_object_mut().unwrap().remove("fast_path_packets");
        summaries.push(full);
        let read = |f: &str| std::fs::read_to_string(p(f)).unwrap();
        let mut table: Vec<String> = read("table").lines().map(str::to_string).collect();
        table.sort();
        outs.push((summary, read("verdicts"), read("counters"), table, read("events"), read("expect")));
    }
    let (a, b) = (&outs[0], &outs[1]);
    assert_eq!(a.0, b.0, "{name}: summary");
    if a.1 != b.1 {
        let first = a.1.lines().zip(b.1.lines()).position(|(x, y)| x != y);
        let line = |s: &str, i: Option<usize>| i.and_then(|i| s.lines().nth(i)).unwrap_or("").to_string();
        panic!(
            "{name}: verdict lines differ first at {first:?}:\n{}\n{}",
            line(&a.1, first),
            line(&b.1, first)
        );
    }
    assert_eq!(a.2, b.2, "{name}: counters");
    assert_eq!(a.3, b.3, "{name}: table entries");
    assert!(a.4 == b.4, "{name}: events differ");
    assert_eq!(a.5, b.5, "{name}: expectation events");
    (a.1.lines().count(), summaries)
}

/// The bundled examples with the arguments that make them meaningful (each host's own addresses, so that
/// the traffic is filtered and the helpers see it): (name, ruleset and host arguments, capture).
pub fn example_cases() -> Vec<(&'static str, Vec<String>, String)> {
    let h = |f: &str| root().join("examples/helpers").join(f).display().to_string();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    vec![
        (
            "ftp",
            args(&["--rules", &h("rules.v4"), "--rules6", &h("rules.v6"), "--local", "10.1.0.2/16"]),
            h("ftp-edge.pcap"),
        ),
        (
            "irc_amanda",
            args(&["--rules", &h("rules-irc-amanda-sip.v4"), "--local", "10.1.0.2/16"]),
            h("irc-amanda.pcap"),
        ),
        (
            "sip",
            args(&[
                "--rules",
                &h("rules-sip.v4"),
                "--rules6",
                &h("rules-sip.v6"),
                "--local",
                "10.2.0.2/16",
                "--local",
                "fd02::2/64",
            ]),
            h("sip.pcap"),
        ),
        ("seed", args(&["--rules", &seed("rules.v4"), "--local", "192.0.2.10/24"]), seed("p2p.pcap")),
    ]
}
