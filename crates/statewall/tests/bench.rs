//! `statewall bench` works (no timing assertions: benchmarks measure, tests don't): the synthetic workload
//! is accepted in full by the seed ruleset and by a generated 100-rule ruleset, every flow creates one
//! entry, one and two shards see the same packets and verdicts, and a capture can be benchmarked.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use common::*;

fn bench(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["bench", "--format", "json"];
    a.extend_from_slice(args);
    let o = statewall(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn synthetic_workload_is_accepted_after_a_real_rule_walk() {
    for threads in ["1", "2"] {
        let v = bench(&[
            "--rules",
            &seed("rules.v4"),
            "--rules-synthetic",
            "100",
            "--flows",
            "2000",
            "--threads",
            threads,
        ]);
        assert_eq!(v["packets"], 16_000);
        let runs = v["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 3, "no rules, seed rules, synthetic rules");
        for r in runs {
            assert_eq!(r["packets"], 16_000, "{r}");
            assert_eq!(r["accepted"], 16_000, "{r}");
            assert_eq!(r["new_connections"], 2_000, "{r}");
            assert_eq!(r["peak_entries"], 2_000, "{r}");
            assert!(r["mpps"].as_f64().unwrap() > 0.0);
        }
        assert_eq!(runs[2]["name"], "synthetic 100 rules");
    }
}

#[test]
fn a_capture_can_be_benchmarked() {
    let v = bench(&["--rules", &seed("rules.v4"), "--no-baseline", &seed("p2p.pcap")]);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    let total =
        r["accepted"].as_u64().unwrap() + r["dropped"].as_u64().unwrap() + r["other"].as_u64().unwrap();
    assert_eq!(total, r["packets"].as_u64().unwrap());
    assert!(r["dropped"].as_u64().unwrap() > 0, "the seed capture has rejected packets");
}

#[test]
fn bad_arguments_are_errors() {
    let o = statewall(&["bench", "--flows", "10", "--mix", "sctp"]);
    assert_eq!(o.status.code(), Some(2));
    let o = statewall(&["bench", "--flows", "10", "--threads", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--threads"), "{}", stderr(&o));
}

#[test]
fn synth_flows_writes_the_bench_workload() {
    let dir = scratch("bench_synth_flows");
    let cap = dir.join("flows.pcap").display().to_string();
    let o =
        statewall_raw(&["synth", "--scenario", "flows", "--flows", "300", "--mix", "udp,tcp", "--out", &cap]);
    assert!(o.status.success(), "{}", stderr(&o));
    let from_file = bench(&["--rules", &seed("rules.v4"), "--no-baseline", &cap]);
    let generated =
        bench(&["--rules", &seed("rules.v4"), "--no-baseline", "--flows", "300", "--mix", "udp,tcp"]);
    assert_eq!(from_file["packets"], 2400);
    for key in ["packets", "accepted", "new_connections", "peak_entries", "final_entries"] {
        assert_eq!(from_file["runs"][0][key], generated["runs"][0][key], "{key}");
    }
}
