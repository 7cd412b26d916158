//! `replay --threads N` gives the results of one engine: the same verdict lines, counters, summary, events
//! and table entries (the table listed shard after shard), on the helper examples (expectations must meet
//! their master's shard), the seed example, generated scenarios through the router model, and the corpus.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::*;

/// Runs replay with 1 and with `threads` engines and compares every output; returns the packet count.
fn same_results(name: &str, rules: &[&str], capture: &str, threads: usize) -> usize {
    let dir = scratch(&format!("threads_{name}"));
    let mut outs = Vec::new();
    for t in [1, threads] {
        let p = |f: &str| dir.join(format!("{f}{t}")).display().to_string();
        let mut args: Vec<String> = vec!["replay".into()];
        args.extend(rules.iter().map(|s| s.to_string()));
        let t_s = t.to_string();
        for (flag, file) in [
            ("--verdicts", p("verdicts")),
            ("--counters", p("counters")),
            ("--conntrack", p("table")),
            ("--events", p("events")),
            ("--expect-events", p("expect")),
            ("--threads", t_s.clone()),
            ("--format", "json".into()),
        ] {
            args.push(flag.into());
            args.push(file);
        }
        args.push(capture.into());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = statewall(&argv);
        assert!(o.status.success() || o.status.code() == Some(3), "{name} t={t}: {}", stderr(&o));
        let mut summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        summary.as_object_mut().unwrap().remove("packets_per_sec");
        let read = |f: &str| std::fs::read_to_string(p(f)).unwrap();
        let mut table: Vec<String> = read("table").lines().map(str::to_string).collect();
        table.sort();
        outs.push((summary, read("verdicts"), read("counters"), table, read("events"), read("expect")));
    }
    let (a, b) = (&outs[0], &outs[1]);
    assert_eq!(a.0, b.0, "{name}: summary");
    assert!(a.1 == b.1, "{name}: verdict lines differ");
    assert_eq!(a.2, b.2, "{name}: counters");
    assert_eq!(a.3, b.3, "{name}: table entries");
    assert!(a.4 == b.4, "{name}: events differ");
    assert_eq!(a.5, b.5, "{name}: expectation events");
    a.1.lines().count()
}

#[test]
fn helpers_and_seed_examples_give_one_engine_results() {
    let h = |f: &str| root().join("examples/helpers").join(f).display().to_string();
    let cases: [(&str, Vec<String>, String); 4] = [
        (
            "ftp",
            vec![
                "--rules".into(),
                h("rules.v4"),
                "--rules6".into(),
                h("rules.v6"),
                "--local".into(),
                "10.99.0.1/24".into(),
            ],
            h("ftp-edge.pcap"),
        ),
        (
            "irc_amanda",
            vec!["--rules".into(), h("rules-irc-amanda-sip.v4"), "--local".into(), "10.1.0.2/16".into()],
            h("irc-amanda.pcap"),
        ),
        (
            "sip",
            vec![
                "--rules".into(),
                h("rules-sip.v4"),
                "--rules6".into(),
                h("rules-sip.v6"),
                "--local".into(),
                "10.99.0.1/24".into(),
            ],
            h("sip.pcap"),
        ),
        (
            "seed",
            vec!["--rules".into(), seed("rules.v4"), "--local".into(), "192.0.2.10/24".into()],
            seed("p2p.pcap"),
        ),
    ];
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
