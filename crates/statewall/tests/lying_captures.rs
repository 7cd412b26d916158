//! Captures that lie, end to end through `statewall replay`: every file is built here, byte by byte, from the
//! frames of the synth `seed` scenario (the p2p host 192.0.2.10 behind `examples/seed/rules.v4`).
//!
//! Defined behaviour checked:
//! - timestamps going backwards or repeating: the packet is handled at the latest time seen (the engine clock
//!   never runs backwards), counted in `clock_regressions`; verdicts and the conntrack table are those of the
//!   same capture with its timestamps made monotonic;
//! - far future (2106, u32 seconds max; pcapng beyond): handled, entries expire across the gap;
//! - invalid sub-second fields (usec >= 10^6, nsec >= 10^9): clamped to the last valid value of that second;
//!   odd pcapng `if_tsresol` values (seconds, 2^-n, picoseconds) are honoured;
//! - caplen > len, caplen > snaplen: the captured bytes are used, the length on the wire is the larger one;
//! - snaplen-truncated packets: decoded as far as their bytes go: a whole TCP header is tracked as the kernel
//!   (which saw the whole packet) would; a cut transport header is INVALID; a cut IP header is undecodable;
//! - unknown link types: counted as undecodable and named in the summary;
//! - pcapng with several sections of both byte orders and several interfaces of different link types;
//! - files cut mid-header (exit 2, nothing written) and mid-record (results for what was read, exit 3).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;

use std::path::{Path, PathBuf};

/// One record of a hand-made pcap: seconds, sub-second field, captured bytes, original length.
struct Rec {
    sec: u32,
    frac: u32,
    data: Vec<u8>,
    origlen: u32,
}

impl Rec {
    fn new(ts_ns: u64, data: &[u8]) -> Rec {
        Rec {
            sec: (ts_ns / 1_000_000_000) as u32,
            frac: ((ts_ns % 1_000_000_000) / 1000) as u32,
            data: data.to_vec(),
            origlen: data.len() as u32,
        }
    }
}

/// A classic pcap (little-endian unless `big`; microseconds unless `nanos`).
fn pcap(big: bool, nanos: bool, snaplen: u32, linktype: u32, recs: &[Rec]) -> Vec<u8> {
    let w32 = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
    let w16 = |v: u16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut f = Vec::new();
    f.extend_from_slice(&w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    f.extend_from_slice(&w16(2));
    f.extend_from_slice(&w16(4));
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&w32(snaplen));
    f.extend_from_slice(&w32(linktype));
    for r in recs {
        f.extend_from_slice(&w32(r.sec));
        f.extend_from_slice(&w32(r.frac));
        f.extend_from_slice(&w32(r.data.len() as u32));
        f.extend_from_slice(&w32(r.origlen));
        f.extend_from_slice(&r.data);
    }
    f
}

/// The first `n` frames of the seed scenario (Ethernet), with their timestamps in ns.
fn seed_frames(n: usize) -> Vec<(u64, Vec<u8>)> {
    let frames = synth::generate(&synth::ScenarioSpec::new("seed", 1)).unwrap();
    frames.into_iter().take(n).map(|f| (f.ts.as_nanos(), f.data)).collect()
}

struct Run {
    code: Option<i32>,
    /// The verdict lines as written.
    raw_verdicts: Vec<String>,
    summary: serde_json::Value,
    verdicts: Vec<serde_json::Value>,
    conntrack: String,
    stderr: String,
    text: String,
}

/// Replays `bytes` (written as `name` in the scratch dir `dir`) and collects every output.
fn replay(dir: &Path, name: &str, bytes: &[u8]) -> Run {
    let cap = dir.join(name);
    std::fs::write(&cap, bytes).unwrap();
    replay_files(dir, name, &[cap])
}

fn replay_files(dir: &Path, tag: &str, caps: &[PathBuf]) -> Run {
    let verdicts = dir.join(format!("{tag}.verdicts"));
    let conntrack = dir.join(format!("{tag}.conntrack"));
    let _ = std::fs::remove_file(&verdicts);
    let _ = std::fs::remove_file(&conntrack);
    let mut args: Vec<String> = [
        "replay",
        "--rules",
        &seed("rules.v4"),
        "--local",
        "192.0.2.10/24",
        "--format",
        "json",
        "--verdicts",
        verdicts.to_str().unwrap(),
        "--conntrack",
        conntrack.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(caps.iter().map(|c| c.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = statewall(&argv);
    let out = stdout(&o);
    let summary = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    let raw_verdicts: Vec<String> =
        std::fs::read_to_string(&verdicts).unwrap_or_default().lines().map(str::to_string).collect();
    let verdicts = raw_verdicts.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    // The text summary too (it names what was wrong).
    let mut targs = argv.clone();
    let fmt = targs.iter().position(|a| *a == "json").unwrap();
    targs[fmt] = "text";
    let text = stdout(&statewall(&targs));
    Run {
        code: o.status.code(),
        raw_verdicts,
        summary,
        verdicts,
        conntrack: std::fs::read_to_string(&conntrack).unwrap_or_default(),
        stderr: stderr(&o),
        text,
    }
}

/// A verdict line without its timestamp (the capture's, which is what differs between the runs compared).
fn without_ts(v: &serde_json::Value) -> serde_json::Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove("ts");
    v
}

#[test]
fn timestamps_backwards_and_equal_are_handled_at_the_latest_time() {
    let dir = scratch("lying_backwards");
    let frames = seed_frames(300);
    // Every 7th packet is stamped 30 s before its predecessor, every 5th the same as it (some both).
    let mut lying = Vec::new();
    let mut monotonic = Vec::new();
    let (mut prev, mut latest) = (0u64, 0u64);
    let mut backwards = 0;
    for (i, (ts, data)) in frames.iter().enumerate() {
        let t = if i > 0 && i % 7 == 0 {
            backwards += 1;
            prev - 30_000_000_000
        } else if i > 0 && i % 5 == 0 {
            prev
        } else {
            *ts
        };
        latest = latest.max(t);
        lying.push(Rec::new(t, data));
        monotonic.push(Rec::new(latest, data));
        prev = t;
    }
    let a = replay(&dir, "lying.pcap", &pcap(false, false, 65535, 1, &lying));
    let b = replay(&dir, "monotonic.pcap", &pcap(false, false, 65535, 1, &monotonic));
    assert_eq!(a.code, Some(0), "{}", a.stderr);
    assert_eq!(b.code, Some(0), "{}", b.stderr);
    assert_every_packet_counted(&a.summary, "lying");
    // Regressions are counted (one per packet stamped before the latest time; equal stamps are not).
    let regressions = a.summary["clock_regressions"].as_u64().unwrap();
    assert!(regressions >= backwards, "{regressions} < {backwards}");
    assert_eq!(b.summary["clock_regressions"], 0);
    // Same decisions, same table (timeouts included) as with the timestamps made monotonic.
    assert_eq!(a.verdicts.len(), 300);
    let va: Vec<_> = a.verdicts.iter().map(without_ts).collect();
    let vb: Vec<_> = b.verdicts.iter().map(without_ts).collect();
    assert_eq!(va, vb);
    assert_eq!(a.conntrack, b.conntrack);
    assert!(!a.conntrack.is_empty());
    // The verdict lines keep the capture's own timestamps.
    assert_eq!(a.verdicts[7]["ts"].as_f64().unwrap(), lying[7].sec as f64 + lying[7].frac as f64 / 1e6);
    for k in ["filtered", "packets", "connections", "table_peak", "table_final", "last_ts"] {
        assert_eq!(a.summary[k], b.summary[k], "{k}");
    }
}

#[test]
fn far_future_timestamps_2106() {
    let dir = scratch("lying_2106");
    let frames = seed_frames(200);
    let mut recs: Vec<Rec> = frames.iter().map(|(t, d)| Rec::new(*t, d)).collect();
    // The last 100 packets jump to the last second pcap can say (2106-02-07T06:28:15Z), then one goes back.
    for (k, r) in recs.iter_mut().enumerate().skip(100) {
        r.sec = u32::MAX;
        r.frac = (k as u32) * 1000;
    }
    recs.push(Rec::new(frames[0].0, &frames[0].1));
    for nanos in [false, true] {
        let bytes = pcap(nanos, nanos, 65535, 1, &recs);
        let r = replay(&dir, &format!("future-{nanos}.pcap"), &bytes);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert_every_packet_counted(&r.summary, "2106");
        assert_eq!(r.summary["packets"], 201);
        let last = r.summary["last_ts"].as_f64().unwrap();
        assert!(last >= u32::MAX as f64, "{last}");
        assert!(r.summary["clock_regressions"].as_u64().unwrap() >= 1);
        // 80 years later every entry of the first part has expired: what is left was created (or refreshed)
        // in 2106, with timeouts no longer than the longest (ESTABLISHED, 5 days).
        for line in r.conntrack.lines() {
            let timeout: u64 = line.split_whitespace().nth(4).unwrap().parse().unwrap();
            assert!(timeout <= 432_000, "{line}");
        }
        // The packet stamped 2026 after the jump is handled in 2106, like its neighbours.
        assert_eq!(r.verdicts.len(), 201);
        assert_eq!(r.verdicts[200]["index"], 200);
    }
}

#[test]
fn invalid_subsecond_fields_are_clamped() {
    let dir = scratch("lying_subsecond");
    let frames = seed_frames(4);
    let base = (frames[0].0 / 1_000_000_000) as u32;
    for nanos in [false, true] {
        let over = if nanos { 1_000_000_000 } else { 1_000_000 };
        let recs: Vec<Rec> = frames
            .iter()
            .zip([0, over, u32::MAX, 5])
            .map(|((_, d), frac)| Rec { sec: base, frac, data: d.clone(), origlen: d.len() as u32 })
            .collect();
        let r = replay(&dir, &format!("subsec-{nanos}.pcap"), &pcap(false, nanos, 65535, 1, &recs));
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let last_valid = if nanos { "999999999" } else { "999999000" };
        for i in [1, 2] {
            let want = format!("\"ts\":{base}.{last_valid},");
            assert!(r.raw_verdicts[i].contains(&want), "packet {i}: {} lacks {want}", r.raw_verdicts[i]);
        }
        // The next packet, stamped earlier within the same second, is a regression, handled at .999999.
        assert_eq!(r.summary["clock_regressions"], 1);
    }
}

#[test]
fn lengths_that_disagree() {
    let dir = scratch("lying_lengths");
    let frames = seed_frames(60);
    let honest: Vec<Rec> = frames.iter().map(|(t, d)| Rec::new(*t, d)).collect();
    let reference = replay(&dir, "honest.pcap", &pcap(false, false, 65535, 1, &honest));
    // caplen > len (the original length claims less than was captured), and caplen > the header's snaplen.
    let mut short_len: Vec<Rec> = frames.iter().map(|(t, d)| Rec::new(*t, d)).collect();
    for r in &mut short_len {
        r.origlen = 20;
    }
    let a = replay(&dir, "caplen-over-len.pcap", &pcap(false, false, 65535, 1, &short_len));
    let b = replay(&dir, "caplen-over-snaplen.pcap", &pcap(true, false, 40, 1, &honest));
    for r in [&a, &b] {
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert_every_packet_counted(&r.summary, "lengths");
        let v: Vec<_> = r.verdicts.iter().map(without_ts).collect();
        let w: Vec<_> = reference.verdicts.iter().map(without_ts).collect();
        assert_eq!(v, w, "the captured bytes decide");
        assert_eq!(r.conntrack, reference.conntrack);
    }
}

/// Offset of the TCP header in an Ethernet/IPv4 frame, if it is one.
fn tcp_at(frame: &[u8]) -> Option<usize> {
    (frame.get(12..14)? == [8, 0] && *frame.get(23)? == 6).then(|| 14 + usize::from(frame[14] & 0x0f) * 4)
}

#[test]
fn snaplen_truncated_packets_are_decoded_as_far_as_their_bytes_go() {
    let dir = scratch("lying_snaplen");
    let frames = seed_frames(400);
    let honest: Vec<Rec> = frames.iter().map(|(t, d)| Rec::new(*t, d)).collect();
    let reference = replay(&dir, "honest.pcap", &pcap(false, false, 65535, 1, &honest));
    // tcpdump -s 54..: every TCP packet keeps its headers but loses its payload.
    let headers_only: Vec<Rec> = frames
        .iter()
        .map(|(t, d)| {
            let keep = tcp_at(d).map_or(d.len(), |at| (at + usize::from(d[at + 12] >> 4) * 4).min(d.len()));
            Rec { data: d[..keep].to_vec(), ..Rec::new(*t, d) }
        })
        .collect();
    assert!(headers_only.iter().zip(&honest).any(|(a, b)| a.data.len() < b.data.len()));
    let r = replay(&dir, "headers.pcap", &pcap(false, false, 64, 1, &headers_only));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // The kernel saw the whole packets: same verdicts, states and table (the payload was never needed).
    let v: Vec<_> = r.verdicts.iter().map(without_ts).collect();
    let w: Vec<_> = reference.verdicts.iter().map(without_ts).collect();
    assert_eq!(v, w);
    assert_eq!(r.conntrack, reference.conntrack);

    // Cut inside the TCP header (IP header whole): the transport header is unusable, the packet INVALID
    // (dropped by the INVALID rule) — but still filtered and counted. Cut inside the IP header: undecodable.
    let syn = frames.iter().position(|(_, d)| tcp_at(d).is_some()).unwrap();
    let (t, d) = &frames[syn];
    let at = tcp_at(d).unwrap();
    let recs = vec![
        Rec { data: d[..at + 10].to_vec(), ..Rec::new(*t, d) },
        Rec { data: d[..14 + 12].to_vec(), ..Rec::new(*t + 1000, d) },
    ];
    let r = replay(&dir, "cut.pcap", &pcap(false, false, 36, 1, &recs));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_every_packet_counted(&r.summary, "cut");
    assert_eq!(r.verdicts[0]["ctstate"], "INVALID", "{:?}", r.verdicts[0]);
    assert_eq!(r.verdicts[0]["verdict"], "drop");
    assert_eq!(r.verdicts[1]["disposition"], "undecodable", "{:?}", r.verdicts[1]);
    assert_eq!(r.summary["invalid"], 1);
    assert_eq!(r.summary["undecodable"], 1);
}

#[test]
fn unknown_link_types_are_counted_and_named() {
    let dir = scratch("lying_linktype");
    let frames = seed_frames(10);
    let recs: Vec<Rec> = frames.iter().map(|(t, d)| Rec::new(*t, d)).collect();
    // LINKTYPE_USER0 (147): nobody knows what is inside.
    let r = replay(&dir, "user0.pcap", &pcap(false, false, 65535, 147, &recs));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_every_packet_counted(&r.summary, "user0");
    assert_eq!(r.summary["undecodable"], 10);
    assert_eq!(r.summary["undecodable_reasons"]["unsupported link type 147"], 10, "{}", r.summary);
    assert!(r.text.contains("unsupported link type 147"), "{}", r.text);
    assert_eq!(r.verdicts[0]["reason"], "unsupported link type 147");
    assert_eq!(r.conntrack, "");
}

// --- pcapng ---

fn block(big: bool, ty: u32, body: &[u8]) -> Vec<u8> {
    let w32 = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    let len = body.len() as u32 + 12;
    let mut b = w32(ty).to_vec();
    b.extend_from_slice(&w32(len));
    b.extend_from_slice(&body);
    b.extend_from_slice(&w32(len));
    b
}

fn shb(big: bool) -> Vec<u8> {
    let mut body = if big { 0x1a2b_3c4du32.to_be_bytes() } else { 0x1a2b_3c4du32.to_le_bytes() }.to_vec();
    body.extend_from_slice(&if big { 1u16.to_be_bytes() } else { 1u16.to_le_bytes() });
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&[0xff; 8]);
    block(big, 0x0a0d_0d0a, &body)
}

fn idb(big: bool, linktype: u16, tsresol: u8) -> Vec<u8> {
    let w16 = |v: u16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut body = w16(linktype).to_vec();
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    body.extend_from_slice(&w16(9));
    body.extend_from_slice(&w16(1));
    body.extend_from_slice(&[tsresol, 0, 0, 0]);
    body.extend_from_slice(&[0, 0, 0, 0]);
    block(big, 1, &body)
}

/// Enhanced packet block with a timestamp in the interface's units.
fn epb(big: bool, iface: u32, units: u64, data: &[u8]) -> Vec<u8> {
    let w32 = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut body = w32(iface).to_vec();
    body.extend_from_slice(&w32((units >> 32) as u32));
    body.extend_from_slice(&w32(units as u32));
    body.extend_from_slice(&w32(data.len() as u32));
    body.extend_from_slice(&w32(data.len() as u32));
    body.extend_from_slice(data);
    block(big, 6, &body)
}

/// Linux cooked (SLL) header for an IPv4 packet arriving from outside.
fn sll(ip: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    v.extend_from_slice(ip);
    v
}

#[test]
fn pcapng_sections_byte_orders_interfaces_and_resolutions() {
    let dir = scratch("lying_pcapng");
    let frames = seed_frames(120);
    let honest: Vec<Rec> = frames.iter().map(|(t, d)| Rec::new(*t, d)).collect();
    let reference = replay(&dir, "honest.pcap", &pcap(false, false, 65535, 1, &honest));
    // Section 1 (little-endian): Ethernet in microseconds (if_tsresol 6), raw IP in 2^-10 s, and an
    // interface of an unknown link type. Section 2 (big-endian, its own interface numbering): SLL in 2^-20 s,
    // Ethernet in nanoseconds. The packets alternate over the known interfaces. (Picoseconds cannot say 2026 in
    // 64 bits: the wire unit tests cover them.)
    let mut f = shb(false);
    f.extend(idb(false, 1, 6));
    f.extend(idb(false, 101, 0x80 | 10));
    f.extend(idb(false, 147, 6));
    let mut second = shb(true);
    second.extend(idb(true, 113, 0x80 | 20));
    second.extend(idb(true, 1, 9));
    for (i, (t, d)) in frames.iter().enumerate() {
        let ip = &d[14..];
        let big = i >= 60;
        if i == 60 {
            f.extend(&second);
        }
        // Frames that are not IPv4 (ARP, IPv6) stay on the Ethernet interface of their section.
        let alt = if d[12..14] == [8, 0] { i % 2 } else { usize::from(big) };
        let block = match (big, alt) {
            (false, 0) => epb(false, 0, t / 1000, d),
            // 2^-10 s units round the time down (up to 1 ms): compared by verdict, not time.
            (false, _) => epb(false, 1, ((u128::from(*t) << 10) / 1_000_000_000) as u64, ip),
            (true, 0) => epb(true, 0, ((u128::from(*t) << 20) / 1_000_000_000) as u64, &sll(ip)),
            (true, _) => epb(true, 1, *t, d),
        };
        f.extend(block);
        if !big && i % 40 == 0 {
            // Now and then a packet on the unknown interface.
            f.extend(epb(false, 2, t / 1000, b"???"));
        }
    }
    let r = replay(&dir, "multi.pcapng", &f);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stderr, r.text);
    assert_every_packet_counted(&r.summary, "pcapng");
    assert_eq!(r.summary["captures"][0]["format"], "pcapng");
    assert_eq!(r.summary["packets"], 122);
    assert_eq!(r.summary["undecodable_reasons"]["unsupported link type 147"], 2, "{}", r.summary);
    // The interfaces of the second section follow those of the first.
    assert_eq!(r.verdicts.len(), 122);
    let strip = |v: &serde_json::Value| {
        let mut v = without_ts(v);
        v.as_object_mut().unwrap().remove("index");
        v
    };
    let got: Vec<_> =
        r.verdicts.iter().filter(|v| v["reason"] != "unsupported link type 147").map(strip).collect();
    let want: Vec<_> = reference.verdicts.iter().map(strip).collect();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "packet {i}");
    }
}

#[test]
fn files_cut_mid_header_and_mid_record() {
    let dir = scratch("lying_cut");
    let frames = seed_frames(30);
    let recs: Vec<Rec> = frames.iter().map(|(t, d)| Rec::new(*t, d)).collect();
    let whole = pcap(false, false, 65535, 1, &recs);
    let mut ng = shb(true);
    ng.extend(idb(true, 1, 6));
    for (t, d) in &frames {
        ng.extend(epb(true, 0, t / 1000, d));
    }
    // Mid file header (pcap: 24 bytes; pcapng: inside the section header block): nothing usable, exit 2, no
    // output written.
    for (name, bytes) in [("head.pcap", &whole[..20]), ("head.pcapng", &ng[..20])] {
        let r = replay(&dir, name, bytes);
        assert_eq!(r.code, Some(2), "{name}: {}", r.stderr);
        assert!(r.stderr.contains(name) && r.stderr.contains("truncated"), "{name}: {}", r.stderr);
        assert!(r.raw_verdicts.is_empty());
    }
    // Mid record header, mid packet data, mid pcapng block: the packets before the cut are results, the
    // capture is flagged partial with the byte offset, exit 3.
    let rec3 = 24 + recs.iter().take(3).map(|r| 16 + r.data.len()).sum::<usize>();
    for (name, bytes, read) in [
        ("rechead.pcap", &whole[..rec3 + 7], 3),
        ("recdata.pcap", &whole[..rec3 + 16 + 5], 3),
        ("block.pcapng", &ng[..ng.len() - 3], 29),
    ] {
        let r = replay(&dir, name, bytes);
        assert_eq!(r.code, Some(3), "{name}: {}", r.stderr);
        assert_eq!(r.summary["partial"], true);
        assert_eq!(r.summary["packets"], read, "{name}");
        assert_every_packet_counted(&r.summary, name);
        let why = r.summary["captures"][0]["partial"].as_str().unwrap();
        assert!(why.contains("truncated at byte "), "{why}");
        assert!(r.stderr.contains("partial capture"), "{}", r.stderr);
        assert!(r.text.contains("PARTIAL"), "{}", r.text);
        assert_eq!(r.verdicts.len(), read as usize);
    }
}
