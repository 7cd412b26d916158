//! Bad input end to end: clear errors with file:line:column or byte offsets, exit 2, no outputs written;
//! truncated captures still give results, flagged partial (exit 3).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Runs replay with `rules` and expects exit 2, an error naming `rules_file:line:col`, and no output files.
fn expect_rule_error(name: &str, rules: &str, line_col: &str, needle: &str) {
    let dir = scratch(name);
    let r = write(&dir, "bad.v4", rules);
    let counters = dir.join("counters");
    let o = statewall(&[
        "replay",
        "--rules",
        &r,
        "--local",
        "192.0.2.10",
        "--counters",
        counters.to_str().unwrap(),
        &seed("p2p.pcap"),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("bad.v4:{line_col}")), "expected bad.v4:{line_col} in:\n{err}");
    assert!(err.to_lowercase().contains(&needle.to_lowercase()), "expected `{needle}` in:\n{err}");
    assert!(!counters.exists(), "outputs must not be written on error");
}

#[test]
fn unknown_match_module() {
    expect_rule_error(
        "unknown_match",
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m bogus --foo 1 -j ACCEPT\nCOMMIT\n",
        "3:",
        "bogus",
    );
}

#[test]
fn unknown_option() {
    expect_rule_error(
        "unknown_option",
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dportx 22 -j ACCEPT\nCOMMIT\n",
        "3:",
        "--dportx",
    );
}

#[test]
fn jump_to_missing_chain() {
    expect_rule_error(
        "missing_chain",
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j nowhere\nCOMMIT\n",
        "3:",
        "nowhere",
    );
}

#[test]
fn notrack_outside_raw() {
    expect_rule_error(
        "notrack_filter",
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j NOTRACK\nCOMMIT\n",
        "3:",
        "raw",
    );
}

#[test]
fn missing_commit() {
    expect_rule_error("missing_commit", "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n", "3:", "COMMIT");
}

#[test]
fn nat_is_not_supported_yet() {
    expect_rule_error("nat", "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", "1:", "nat");
}

#[test]
fn not_a_capture() {
    let dir = scratch("not_a_capture");
    let cap = write(&dir, "notes.txt", "this is not a capture file at all\n");
    let counters = dir.join("counters");
    let o = statewall(&[
        "replay",
        "--rules",
        &seed("rules.v4"),
        "--local",
        "192.0.2.10",
        "--counters",
        counters.to_str().unwrap(),
        &cap,
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("notes.txt"), "{err}");
    assert!(err.contains("not a pcap or pcapng"), "{err}");
    assert!(!counters.exists());
}

#[test]
fn truncated_capture_is_partial() {
    let dir = scratch("truncated_capture");
    let full = std::fs::read(root().join("examples/seed/p2p.pcap")).unwrap();
    let cut = &full[..full.len() * 2 / 3];
    let p = dir.join("cut.pcap");
    std::fs::write(&p, cut).unwrap();
    let o = statewall(&[
        "replay",
        "--rules",
        &seed("rules.v4"),
        "--local",
        "192.0.2.10",
        "--format",
        "json",
        p.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["partial"], true);
    assert!(v["packets"].as_u64().unwrap() > 10);
    let why = v["captures"][0]["partial"].as_str().unwrap();
    assert!(why.contains("at byte "), "{why}");
    assert!(stderr(&o).contains("partial capture"));
}

#[test]
fn bad_sysctl_and_host() {
    let o = statewall(&[
        "replay",
        "--rules",
        &seed("rules.v4"),
        "--sysctl",
        "net.netfilter.nf_conntrack_nope=1",
        &seed("p2p.pcap"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nf_conntrack_nope"), "{}", stderr(&o));
    let o = statewall(&["replay", "--rules", &seed("rules.v4"), "--local", "192.0.2.300", &seed("p2p.pcap")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("192.0.2.300"));
}

#[test]
fn corpus_never_loses_a_packet() {
    let Some(corpus) = corpus() else { return };
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(corpus.join("manifest.json")).unwrap()).unwrap();
    let rules = seed("rules.v4");
    for entry in manifest.as_array().unwrap() {
        let file = corpus.join("pcaps").join(entry["file"].as_str().unwrap());
        let o = statewall(&[
            "replay",
            "--rules",
            &rules,
            "--local",
            "192.0.2.10",
            "--format",
            "json",
            file.to_str().unwrap(),
        ]);
        assert!(matches!(o.status.code(), Some(0) | Some(3)), "{}: {}", file.display(), stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_every_packet_counted(&v, &file.display().to_string());
        let expected: u64 =
            entry["packets"].as_str().and_then(|s| s.parse().ok()).or(entry["packets"].as_u64()).unwrap();
        if v["partial"] == false {
            assert_eq!(v["packets"].as_u64().unwrap(), expected, "{}", file.display());
        }
    }
}
