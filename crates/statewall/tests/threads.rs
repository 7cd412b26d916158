//! `replay --threads N` gives the results of one engine: the same verdict lines, counters, summary, events
//! and table entries (the table listed shard after shard), on the helper examples (expectations must meet
//! their master's shard), the seed example, generated scenarios through the router model, and the corpus.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::*;

/// Runs replay with 1 and with `threads` engines and compares every output; returns the packet count.
fn same_results(name: &str, rules: &[&str], capture: &str, threads: usize) -> usize {
    let t = threads.to_string();
    same_replay_results(name, rules, capture, [&["--threads", "1"], &["--threads", t.as_str()]]).0
}

#[test]
fn helpers_and_seed_examples_give_one_engine_results() {
    let cases = example_cases();
    for (name, rules, cap) in cases {
        let r: Vec<&str> = rules.iter().map(String::as_str).collect();
        for threads in [2, 3] {
            assert!(same_results(&format!("{name}{threads}"), &r, &cap, threads) > 100);
        }
    }
}

#[test]
fn generated_router_scenarios_give_one_engine_results() {
    let dir = scratch("threads_random");
    let host = root().join("examples/router/host.toml").display().to_string();
    let rules = root().join("examples/logcount/rules.v4").display().to_string();
    for (name, seed) in [("random", 3), ("random", 17), ("random-mix", 5), ("case:syn-flood", 1)] {
        let cap = dir.join(format!("{}-{seed}.pcap", name.replace(':', "_")));
        write_scenario(&cap, name, seed);
        let args = ["--rules", rules.as_str(), "--host", host.as_str()];
        same_results(&format!("{}{seed}", name.replace(':', "_")), &args, &cap.display().to_string(), 2);
    }
}

#[test]
fn corpus_captures_give_one_engine_results() {
    let Some(corpus) = corpus() else { return };
    let rules = root().join("examples/logcount/rules.v4").display().to_string();
    let rules6 = root().join("examples/logcount/rules.v6").display().to_string();
    let mut n = 0;
    for entry in std::fs::read_dir(corpus.join("pcaps")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().replace(['.', '-'], "_");
        let args = ["--rules", rules.as_str(), "--rules6", rules6.as_str(), "--local", "192.168.1.1/24"];
        n += same_results(&name, &args, &path.display().to_string(), 2);
    }
    assert!(n > 1000, "{n} packets");
}

#[test]
fn limit_rulesets_are_refused_and_stats_too() {
    let dir = scratch("threads_refused");
    let rules = dir.join("limit.v4");
    std::fs::write(
        &rules,
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m limit --limit 1/sec -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    let r = rules.display().to_string();
    let o = statewall(&["replay", "--rules", &r, "--threads", "2", &seed("p2p.pcap")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("-m limit"), "{}", stderr(&o));
    let stats = dir.join("stats").display().to_string();
    let o = statewall(&[
        "replay",
        "--rules",
        &seed("rules.v4"),
        "--threads",
        "2",
        "--stats",
        &stats,
        &seed("p2p.pcap"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--stats"), "{}", stderr(&o));
}

#[test]
fn a_full_table_is_reported_as_inexact() {
    let o = statewall(&[
        "replay",
        "--rules",
        &seed("rules.v4"),
        "--local",
        "192.0.2.10/24",
        "--sysctl",
        "net.netfilter.nf_conntrack_max=8",
        "--threads",
        "2",
        &seed("p2p.pcap"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("nf_conntrack_max (8)"), "{}", stderr(&o));
}
