//! nf_conntrack_max against the real kernel: a SYN flood (500 spoofed SYNs in 1 s) while 5 established flows keep
//! exchanging data, with the machine-wide limit at 64 (`verify --global-conntrack-max 64`, restored afterwards).
//! Its own test binary, so that no other kernel test runs while the global limit is low.
//!
//! Which entry an early drop evicts depends on the kernel's hash, whose seed is random per boot (reference §6),
//! so the contract checked is the kernel's: the table holds exactly `max` entries on both sides, the established
//! (ASSURED) flows are never evicted and lose no packet, "table full" drops happen on both sides, and only a few
//! flood SYNs (bucket luck) may differ in fate.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;

#[test]
fn syn_flood_against_conntrack_max_64() {
    if !kernel_available() {
        return;
    }
    let dir = scratch("kernel_limits");
    let pcap = dir.join("syn-flood.pcap");
    write_scenario(&pcap, "case:syn-flood", 1);
    let before = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").unwrap();
    let rules = root().join("examples/logcount/rules.v4").display().to_string();
    let p = pcap.display().to_string();
    let (code, stdout, stderr) = verify(&[
        "--rules",
        &rules,
        "--local",
        "192.0.2.10/24",
        "--max-gap",
        "2",
        "--global-conntrack-max",
        "64",
        "--format",
        "json",
        &p,
    ]);
    let after = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max").unwrap();
    assert_eq!(before, after, "the global nf_conntrack_max was not restored");
    assert!(matches!(code, Some(0) | Some(1)), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let c = &v["captures"][0];
    assert_eq!(c["conntrack"]["kernel_entries"], 64, "{stdout}");
    assert_eq!(c["conntrack"]["engine_entries"], 64, "{stdout}");
    let diffs = c["packets"]["differences"].as_array().unwrap();
    let compared = c["packets"]["compared"].as_u64().unwrap();
    assert!(compared > 700);
    assert!(diffs.len() as u64 <= compared / 50, "more than 2% of fates differ: {diffs:?}");
    for d in diffs {
        // Only flood SYNs to port 80 (from the spoofed sources) may differ; the established flows may not.
        let flow = d.to_string();
        assert!(flow.contains("-> 192.0.2.10:80"), "a non-flood packet differs: {d}");
    }
    // Every conntrack line that differs is an unreplied flood entry, never an ASSURED one.
    for line in c["conntrack"]["differences"].as_array().unwrap() {
        let text = line.to_string();
        assert!(!text.contains("ASSURED"), "an ASSURED entry differs: {text}");
    }
}
