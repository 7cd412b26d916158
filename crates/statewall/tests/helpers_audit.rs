//! `statewall helpers` end to end: the audit of the FTP/TFTP helpers on the corpus FTP captures (skipped with a
//! printed reason when ../shared/corpus is absent) and on examples/helpers/ftp-edge.pcap, with the helper
//! ruleset of examples/helpers and with the seed ruleset (no helper at all).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;

fn helpers_file(file: &str) -> String {
    root().join("examples/helpers").join(file).display().to_string()
}

/// Runs `statewall helpers --format json` and returns (exit code, parsed report).
fn audit(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut all = vec!["helpers", "--format", "json"];
    all.extend_from_slice(args);
    let o = statewall(&all);
    let v =
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

fn kinds(v: &serde_json::Value) -> Vec<String> {
    v["warnings"].as_array().unwrap().iter().map(|w| w["kind"].as_str().unwrap().to_string()).collect()
}

#[test]
fn passive_ftp_every_data_connection_is_related_through_an_ftp_expectation() {
    let Some(corpus) = corpus() else { return };
    let cap = corpus.join("pcaps/suricata-verify__ftp__ftp-download-passive.pcap").display().to_string();
    let rules = helpers_file("rules.v4");
    let (code, v) = audit(&["--rules", &rules, "--local", "172.23.0.3/24", &cap]);
    assert_eq!(code, Some(0));
    // one control connection, from the host itself: helper given by the raw OUTPUT rule
    let masters = v["masters"].as_array().unwrap();
    assert_eq!(masters.len(), 1, "{v:#}");
    assert_eq!(masters[0]["helper"], "ftp");
    assert_eq!(masters[0]["rule"], "raw:OUTPUT:1");
    assert_eq!(masters[0]["flow"], "tcp 172.23.0.3:41790 -> 172.23.0.2:21");
    // three 227 replies, three expectations, each used by exactly one RELATED packet
    let exps = v["expectations"].as_array().unwrap();
    assert_eq!(exps.len(), 3);
    let ports: Vec<u64> = exps.iter().map(|e| e["dport"].as_u64().unwrap()).collect();
    assert_eq!(ports, [21001, 21008, 21008]);
    for e in exps {
        assert_eq!(e["helper"], "ftp");
        assert_eq!(e["command"], "227");
        assert_eq!(e["master"], 0);
        assert_eq!(e["fate"], "used");
        assert_eq!(e["mask_sport"], 0);
        assert_eq!(e["related_packets"].as_array().unwrap().len(), 1);
    }
    let related = v["related"].as_array().unwrap();
    assert_eq!(related.len(), 3);
    for (i, r) in related.iter().enumerate() {
        assert_eq!(r["ctstate"], "RELATED");
        assert_eq!(r["verdict"], "accept");
        assert_eq!(r["rule"], "filter:stateful:2");
        assert_eq!(r["expectation"], i);
    }
    assert!(v["helper_drops"].as_array().unwrap().is_empty());
    assert!(!kinds(&v).contains(&"no-helper".to_string()));
    // the PREROUTING rules restrict neither -i nor -s
    assert!(kinds(&v).contains(&"helper-rule-unrestricted".to_string()));
}

#[test]
fn active_ftp_expectations_come_from_port_commands() {
    let Some(corpus) = corpus() else { return };
    let cap = corpus.join("pcaps/suricata-verify__ftp__ftp-download-active.pcap").display().to_string();
    let rules = helpers_file("rules.v4");
    let (code, v) = audit(&["--rules", &rules, "--local", "172.23.0.3/24", &cap]);
    assert_eq!(code, Some(0));
    let exps = v["expectations"].as_array().unwrap();
    assert_eq!(exps.len(), 3, "{v:#}");
    for e in exps {
        assert_eq!(e["command"], "PORT");
        // the server connects back to the client that sent PORT
        assert_eq!(e["dst"], "172.23.0.3");
        assert_eq!(e["src"], "172.23.0.2");
    }
    let related = v["related"].as_array().unwrap();
    assert_eq!(related.len(), 3);
    assert!(related.iter().all(|r| r["ctstate"] == "RELATED" && r["verdict"] == "accept"));
}

#[test]
fn without_a_ct_helper_rule_the_audit_reminds_that_helpers_are_not_automatic() {
    let Some(corpus) = corpus() else { return };
    let cap = corpus.join("pcaps/suricata-verify__ftp__ftp-download-passive.pcap").display().to_string();
    let rules = seed("rules.v4");
    let (code, v) = audit(&["--rules", &rules, "--local", "172.23.0.3/24", &cap]);
    assert_eq!(code, Some(0));
    assert!(v["helper_rules"].as_array().unwrap().is_empty());
    assert!(v["expectations"].as_array().unwrap().is_empty());
    assert!(v["related"].as_array().unwrap().is_empty());
    let w = v["warnings"].as_array().unwrap();
    let no_helper: Vec<_> = w.iter().filter(|w| w["kind"] == "no-helper").collect();
    assert_eq!(no_helper.len(), 1, "{v:#}");
    let msg = no_helper[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("tcp/21 (ftp)") && msg.contains("Linux 6.0") && msg.contains("NEW, not RELATED"),
        "{msg}"
    );
    // and the text report says it too
    let o = statewall(&["helpers", "--rules", &rules, "--local", "172.23.0.3/24", &cap]);
    assert!(stdout(&o).contains("no helper assigned"), "{}", stdout(&o));
}

#[test]
fn ftp_bounce_is_reported_and_gets_no_expectation() {
    let Some(corpus) = corpus() else { return };
    let cap = corpus.join("pcaps/suricata-verify__ftp__ftp-bounce__test.pcap").display().to_string();
    let rules = helpers_file("rules.v4");
    let (code, v) = audit(&["--rules", &rules, "--local", "1.1.1.2/24", &cap]);
    assert_eq!(code, Some(0));
    let bounces: Vec<_> =
        v["warnings"].as_array().unwrap().iter().filter(|w| w["kind"] == "ftp-bounce").collect();
    assert_eq!(bounces.len(), 1, "{v:#}");
    assert!(bounces[0]["message"].as_str().unwrap().contains("2.2.2.3"));
    // only the valid PORT (naming the client itself) created an expectation
    let exps = v["expectations"].as_array().unwrap();
    assert_eq!(exps.len(), 1);
    assert_eq!(exps[0]["dst"], "1.1.1.2");
}

#[test]
fn crafted_edge_capture_expectations_drops_and_bounces() {
    let cap = helpers_file("ftp-edge.pcap");
    let rules = helpers_file("rules.v4");
    let (code, v) = audit(&["--rules", &rules, "--local", "10.1.0.2/16", &cap]);
    assert_eq!(code, Some(0));
    assert_eq!(v["masters"].as_array().unwrap().len(), 10, "{v:#}");
    let exps = v["expectations"].as_array().unwrap();
    assert_eq!(exps.len(), 8);
    // the kernel packs numbers without range checks: 227 (10,1,0,257,39,17) expects 10.1.1.1:10001,
    // 229 (|||65537|) port 1, EPRT port 70000 -> 4464
    let expected: Vec<&str> = exps.iter().map(|e| e["expected"].as_str().unwrap()).collect();
    assert!(expected.contains(&"tcp 10.1.0.2:* -> 10.1.1.1:10001"), "{expected:?}");
    assert!(expected.contains(&"tcp 10.1.0.2:* -> 10.1.1.1:1"), "{expected:?}");
    assert!(expected.contains(&"tcp 10.1.1.1:* -> 10.1.0.2:4464"), "{expected:?}");
    assert!(exps.iter().all(|e| e["fate"] == "used"));
    assert_eq!(v["related"].as_array().unwrap().len(), 8);
    // bare LF: the helper's partial-match drop
    let drops = v["helper_drops"].as_array().unwrap();
    assert_eq!(drops.len(), 1);
    assert_eq!(drops[0]["helper"], "ftp");
    assert!(drops[0]["reason"].as_str().unwrap().starts_with("ftp: partial matching"));
    // the bounce to a third party and the PORT whose packed address is not the sender's
    assert_eq!(kinds(&v).iter().filter(|k| *k == "ftp-bounce").count(), 2);
}

#[test]
fn helper_for_a_client_outside_the_connected_subnets_is_flagged() {
    let cap = helpers_file("ftp-edge.pcap");
    let rules = helpers_file("rules.v4");
    // the host is the FTP server this time; its clients are on no connected subnet
    let (code, v) = audit(&["--rules", &rules, "--local", "10.1.1.1/32", &cap]);
    assert_eq!(code, Some(0));
    assert!(v["masters"].as_array().unwrap().iter().all(|m| m["rule"] == "raw:PREROUTING:1"));
    assert!(kinds(&v).contains(&"untrusted-client".to_string()), "{v:#}");
}

#[test]
fn bad_input_exits_2_and_a_truncated_capture_exits_3() {
    let rules = helpers_file("rules.v4");
    let o = statewall(&["helpers", "--rules", "/nonexistent/rules", &helpers_file("ftp-edge.pcap")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let dir = scratch("helpers_truncated");
    let bytes = std::fs::read(helpers_file("ftp-edge.pcap")).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let o = statewall(&["helpers", "--rules", &rules, "--local", "10.1.0.2/16", &cut.display().to_string()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stdout(&o).contains("Expectations created"));
}
