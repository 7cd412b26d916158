//! Live check of the printer against the real `iptables-legacy-save -c` on this machine: every ruleset in
//! tests/data and examples/seed is loaded into a fresh network namespace with `iptables-legacy-restore -c`, and
//! what the kernel prints back must equal our printer's output for the same file. The ip6tables
//! rulesets (`*.rules6`, `*.v6`) go through `ip6tables-legacy-restore -c` / `ip6tables-legacy-save -c`
//! and [`rules::parse_family`] with [`rules::Family::V6`].
//!
//! Needs root, `ip` and iptables-legacy. Skipped with a printed reason otherwise, unless
//! STATEWALL_REQUIRE_KERNEL_TESTS=1 (CI), where a missing prerequisite fails the test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A network namespace deleted on drop (also when the test fails).
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("swr-{}-{tag}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status().unwrap().success();
        assert!(ok, "ip netns add {name} failed");
        Netns(name)
    }
    fn exec(&self, args: &[&str], stdin: Option<&Path>) -> String {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(p) = stdin {
            c.stdin(std::fs::File::open(p).unwrap());
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn prerequisites() -> Result<(), String> {
    let uid = Command::new("id").arg("-u").output().map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    for tool in [
        "ip",
        "iptables-legacy-restore",
        "iptables-legacy-save",
        "ip6tables-legacy-restore",
        "ip6tables-legacy-save",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_err(|e| e.to_string())?;
        if !found.status.success() {
            return Err(format!("{tool} not installed"));
        }
    }
    Ok(())
}

fn sorted_tables(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text.split_inclusive("COMMIT\n").map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn printer_matches_live_iptables_legacy_save() {
    if let Err(why) = prerequisites() {
        if std::env::var("STATEWALL_REQUIRE_KERNEL_TESTS").is_ok_and(|v| v == "1") {
            panic!("kernel tests required but unavailable: {why}");
        }
        eprintln!("SKIP printer_matches_live_iptables_legacy_save: {why}");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = Vec::new();
    let mut dirs = vec![root.join("tests/data")];
    for e in std::fs::read_dir(root.join("../../examples")).unwrap() {
        dirs.push(e.unwrap().path());
    }
    for dir in dirs {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("rules" | "v4" | "rules6" | "v6")) {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.iter().any(|p| p.extension().is_some_and(|x| x == "rules6")), "no IPv6 ruleset found");
    for (i, p) in files.iter().enumerate() {
        let v6 = matches!(p.extension().and_then(|x| x.to_str()), Some("rules6" | "v6"));
        let (restore, save, family) = if v6 {
            ("ip6tables-legacy-restore", "ip6tables-legacy-save", rules::Family::V6)
        } else {
            ("iptables-legacy-restore", "iptables-legacy-save", rules::Family::V4)
        };
        let ns = Netns::new(&i.to_string());
        ns.exec(&[restore, "-c"], Some(p));
        let kernel: String = ns
            .exec(&[save, "-c"], None)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let rs = rules::parse_family(&std::fs::read_to_string(p).unwrap(), family).unwrap();
        let ours = rs.to_save_string(&rs.new_state(), true);
        // Table order depends on module load order in the kernel: compare the tables as a set.
        assert_eq!(sorted_tables(&ours), sorted_tables(&kernel), "{}", p.display());
    }
}
