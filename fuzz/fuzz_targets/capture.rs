//! The capture reader (`wire::parse_capture`) on arbitrary bytes: classic pcap (both byte
//! orders, micro/nano) and pcapng.
//!
//! Invariants: no panic; records are numbered 0.., at increasing offsets inside the file, with
//! `caplen == data.len() <= MAX_CAPLEN`; what the records hold never exceeds the input (no
//! allocation the file did not pay for); every record is returned or the stop is reported: an
//! independent walk of the record framing (written here) finds exactly as many packet records as
//! were returned when no `truncated` error is given; the pcap writer re-reads what it wrote.
//!
//! Inputs are fuzzed as-is, and a second time behind a fixed header (bit 0 of the first byte
//! chooses pcap or pcapng), so mutations reach the record loop instead of the magic number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::capture::MAX_CAPLEN;
use wire::{parse_capture, CaptureFormat, PcapWriter, Time};

fn rd32(b: &[u8], off: usize, big: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(if big { u32::from_be_bytes(s) } else { u32::from_le_bytes(s) })
}

/// Packet records in a classic pcap, walking only the record headers, and whether the walk
/// reached the end of the file cleanly.
fn walk_pcap(b: &[u8]) -> (usize, bool) {
    let big = matches!(b.get(..4), Some([0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d]));
    let mut off = 24usize;
    let mut n = 0;
    while off < b.len() {
        let Some(caplen) = rd32(b, off + 8, big) else { return (n, false) };
        if caplen > MAX_CAPLEN || b.len() - off - 16 < caplen as usize {
            return (n, false);
        }
        off += 16 + caplen as usize;
        n += 1;
    }
    (n, true)
}

/// Packet blocks (EPB, SPB, obsolete PB) in a pcapng, walking only block types and lengths.
fn walk_pcapng(b: &[u8]) -> (usize, bool) {
    let mut off = 0usize;
    let mut n = 0;
    let mut big = false;
    while off < b.len() {
        if rd32(b, off, false) == Some(0x0a0d_0d0a) {
            match b.get(off + 8..off + 12) {
                Some([0x1a, 0x2b, 0x3c, 0x4d]) => big = true,
                Some([0x4d, 0x3c, 0x2b, 0x1a]) => big = false,
                _ => return (n, false),
            }
        }
        let (Some(ty), Some(len)) = (rd32(b, off, big), rd32(b, off + 4, big)) else { return (n, false) };
        if len < 12 || !len.is_multiple_of(4) || len as usize > b.len() - off {
            return (n, false);
        }
        if matches!(ty, 2 | 3 | 6) {
            n += 1;
        }
        off += len as usize;
    }
    (n, true)
}

fn check(bytes: &[u8]) {
    let Ok(cap) = parse_capture(bytes) else { return };
    let mut held = 0usize;
    let mut last_off = None;
    for (i, r) in cap.records.iter().enumerate() {
        assert_eq!(r.index, i);
        assert_eq!(r.caplen as usize, r.data.len());
        assert!(r.caplen <= MAX_CAPLEN);
        assert!(r.offset < bytes.len() as u64);
        assert!(last_off.is_none_or(|o| r.offset > o), "record offsets not increasing");
        last_off = Some(r.offset);
        held += r.data.len();
        match cap.format {
            CaptureFormat::Pcap => assert!(r.interface.is_none()),
            CaptureFormat::PcapNg => assert!(r.interface.is_some()),
        }
    }
    assert!(held <= bytes.len(), "records hold {held} bytes from a {}-byte file", bytes.len());
    if cap.truncated.is_none() {
        let (n, clean) = match cap.format {
            CaptureFormat::Pcap => walk_pcap(bytes),
            CaptureFormat::PcapNg => walk_pcapng(bytes),
        };
        assert!(clean, "the reader reported no problem but the framing is broken");
        assert_eq!(n, cap.records.len(), "packet records lost without a report");
    }
    // The writer re-reads: same data and timestamps (within the pcap range) for one link type.
    let Some(first) = cap.records.first() else { return };
    if cap
        .records
        .iter()
        .all(|r| r.linktype == first.linktype && r.ts.0 / Time::NANOS_PER_SEC <= u64::from(u32::MAX))
    {
        let mut w = PcapWriter::new(Vec::new(), first.linktype, true).expect("header");
        for r in &cap.records {
            w.write_packet(r.ts, &r.data).expect("write");
        }
        let out = w.into_inner().expect("flush");
        let again = parse_capture(&out).expect("re-read");
        assert!(again.truncated.is_none());
        assert_eq!(again.records.len(), cap.records.len());
        for (a, b) in again.records.iter().zip(&cap.records) {
            assert_eq!((a.ts, &a.data, a.linktype), (b.ts, &b.data, b.linktype));
        }
    }
}

const PCAP_HDR: [u8; 24] =
    [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0];
const PCAPNG_SHB: [u8; 28] = [
    0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 28, 0, 0, 0,
];

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some((&sel, rest)) = data.split_first() {
        let mut v = Vec::with_capacity(rest.len() + 28);
        v.extend_from_slice(if sel & 1 == 0 { &PCAP_HDR[..] } else { &PCAPNG_SHB[..] });
        v.extend_from_slice(rest);
        check(&v);
    }
});
