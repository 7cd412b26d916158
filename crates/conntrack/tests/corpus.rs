//! Replays the shared pcap corpus through conntrack (every packet at PREROUTING, rules accept
//! everything): nothing panics, the table stays consistent, and a few captures give the verdicts the
//! kernel gives them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use conntrack::{Config, Conntrack, Hook, InResult};

const CORPUS: &str = "/work/shared/corpus/pcaps";

/// Per packet: the ctinfo name, "INVALID", "DROP" or "-" (not an IP packet).
fn replay(path: &Path, ct: &mut Conntrack) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let Ok(cap) = wire::capture::parse_capture(&bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rec in &cap.records {
        if ct.poll_timeout().is_some_and(|t| t <= rec.ts) {
            ct.handle_timeout(rec.ts);
        }
        let Ok(frame) = wire::link::strip_link(rec.linktype, &rec.data) else {
            out.push("-".to_string());
            continue;
        };
        let Ok(pkt) = wire::decode_ip(frame.ip) else {
            out.push("-".to_string());
            continue;
        };
        let r = ct.handle_packet(rec.ts, &pkt, Hook::PreRouting, None);
        let label = match r {
            InResult::Tracked { id, info, .. } => {
                ct.confirm(rec.ts, id);
                format!("{info:?}")
            }
            InResult::Untracked => "UNTRACKED".to_string(),
            InResult::Invalid { .. } => "INVALID".to_string(),
            InResult::Drop { .. } => "DROP".to_string(),
        };
        out.push(label);
        assert!(ct.len() <= ct.count());
    }
    out
}

fn corpus() -> Option<Vec<std::path::PathBuf>> {
    let dir = Path::new(CORPUS);
    if !dir.is_dir() {
        println!("skipping: {CORPUS} not present");
        return None;
    }
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    Some(files)
}

#[test]
fn every_capture_replays_without_panicking() {
    let Some(files) = corpus() else { return };
    for f in files {
        let mut ct = Conntrack::new(Config::default());
        let labels = replay(&f, &mut ct);
        let mut text = String::new();
        conntrack::write_proc(&ct, wire::Time(u64::MAX / 2), &mut text).unwrap();
        let invalid = labels.iter().filter(|l| *l == "INVALID").count();
        println!(
            "{}: {} packets, {} INVALID, {} entries",
            f.file_name().unwrap().to_string_lossy(),
            labels.len(),
            invalid,
            ct.len()
        );
    }
}

fn labels_of(name: &str) -> Option<Vec<String>> {
    let files = corpus()?;
    let f = files.into_iter().find(|f| f.ends_with(name))?;
    let mut ct = Conntrack::new(Config::default());
    Some(replay(&f, &mut ct))
}

#[test]
fn handshake_then_data_far_out_of_window_is_invalid() {
    let Some(l) = labels_of("suricata-verify__firewall__tcp-session-stream-out-of-window.pcap") else {
        return;
    };
    assert_eq!(l, ["New", "EstablishedReply", "INVALID"]);
}

#[test]
fn all_flags_set_is_invalid() {
    let Some(l) = labels_of("tcpdump__tcp_eight_lowest_weight_flags_set.pcap") else { return };
    assert_eq!(l, ["INVALID"]);
}

#[test]
fn pings_are_new_then_replied() {
    let Some(l) = labels_of("zeek__icmp__5-pings.pcap") else { return };
    assert_eq!(l.len(), 10);
    for pair in l.chunks(2) {
        assert_eq!(pair[1], "EstablishedReply");
    }
}
