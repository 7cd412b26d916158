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
