//! Helpers shared by the end-to-end tests: run the real binary.
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Output;

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
