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
    let why = if Command::new("id").arg("-u").output().map(|o| o.stdout != b"0\n").unwrap_or(true) {
        Some("not root".to_string())
    } else {
        ["ip", "iptables-legacy", "iptables-legacy-restore", "iptables-legacy-save", "sysctl"]
            .iter()
            .find(|t| {
                Command::new("sh")
                    .args(["-c", &format!("command -v {t}")])
                    .output()
                    .map_or(true, |o| !o.status.success())
            })
            .map(|t| format!("{t} missing"))
    };
    match why {
        None => true,
        Some(why) => {
            assert!(
                std::env::var("STATEWALL_REQUIRE_KERNEL_TESTS").as_deref() != Ok("1"),
                "kernel tests required (STATEWALL_REQUIRE_KERNEL_TESTS=1) but {why}"
            );
            eprintln!("SKIP: statewall verify needs root and iproute2/iptables-legacy: {why}");
            false
        }
    }
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
