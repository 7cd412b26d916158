//! Capture files: pcap (on top of `pcap-file`'s slice parser) and pcapng reading, pcap writing.
//!
//! Contract:
//! - [`parse_capture`] recognises the format by its magic: classic pcap in either byte order with
//!   microsecond (0xa1b2c3d4) or nanosecond (0xa1b23c4d) timestamps, or pcapng (0x0a0d0d0a), with
//!   any number of sections and interfaces (each with its own link type, `if_tsresol` and
//!   `if_tsoffset`) and Enhanced, Simple and obsolete Packet blocks. Other blocks are skipped.
//! - Records are returned in file order with a 0-based `index` and the byte `offset` of their
//!   record header / block in the file.
//! - Parsing is incremental: when the file is cut short or becomes unparseable after a valid
//!   header, all complete records before the problem are returned and `truncated` carries the
//!   error (with its byte offset). Only an unusable file header is an `Err`.
//! - Lengths are never trusted for allocation: a record whose captured length exceeds the bytes
//!   left is `Truncated`, one larger than [`MAX_CAPLEN`] is `Malformed`.
//! - Timestamps are kept as the file says them, in file order (going backwards or repeating is the
//!   consumer's business: the engine's clock never runs backwards); sub-second fields that are out of
//!   range in classic pcap (usec >= 1_000_000, nsec >= 1_000_000_000) are clamped to the largest valid
//!   value. pcapng `if_tsresol` takes every value libpcap gives a meaning to (10^-n and 2^-n, finer
//!   than nanoseconds included, truncated to nanoseconds); only 10^-39 and finer is `Malformed`.
//!   `if_tsoffset` (seconds, signed) is added. The conversion to [`Time`] saturates at both ends
//!   (before 1970 → 0, beyond 2554 → `u64::MAX` ns). Simple Packet Blocks carry no timestamp and get
//!   the previous record's.
//! - Lengths: a captured length above the file's snaplen is accepted as is (the bytes are there); an
//!   original length below the captured length is reported as the file says (the engine takes the
//!   larger of the two as the length on the wire).
//! - pcapng `interface` numbers are made unique across sections: the first interface of the second
//!   section follows the last of the first one.

use std::io::{self, Write};

use pcap_file::pcap::{PcapParser, PcapTsResolution};
use pcap_file::Endianness;

use crate::time::Time;

/// Largest captured length accepted for one record (256 KiB, the largest snaplen tcpdump uses).
pub const MAX_CAPLEN: u32 = 256 * 1024;

/// Which container the capture was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    Pcap,
    PcapNg,
}

/// A parsed capture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub format: CaptureFormat,
    pub records: Vec<Record>,
    /// Why parsing stopped before the end of the file, if it did.
    pub truncated: Option<CaptureError>,
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 0-based packet index in the file.
    pub index: usize,
    pub ts: Time,
    /// pcap LINKTYPE of the frame.
    pub linktype: u32,
    /// Captured length (`data.len()`).
    pub caplen: u32,
    /// Length on the wire as the file says.
    pub origlen: u32,
    pub data: Vec<u8>,
    /// pcapng interface (unique across sections); `None` for classic pcap.
    pub interface: Option<u32>,
    /// Byte offset of the record header / block in the file.
    pub offset: u64,
}

/// Why a capture could not be (fully) read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("not a pcap or pcapng file (magic {magic:#010x})")]
    NotACapture { magic: u32 },
    #[error("capture truncated at byte {offset}: {what}")]
    Truncated { offset: u64, what: String },
    #[error("malformed capture at byte {offset}: {what}")]
    Malformed { offset: u64, what: String },
}

const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_EPB: u32 = 6;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_PB: u32 = 2;

fn truncated(offset: usize, what: impl Into<String>) -> CaptureError {
    CaptureError::Truncated { offset: offset as u64, what: what.into() }
}

fn malformed(offset: usize, what: impl Into<String>) -> CaptureError {
    CaptureError::Malformed { offset: offset as u64, what: what.into() }
}

/// Parse a whole pcap or pcapng file held in memory.
pub fn parse_capture(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let Some(magic_be) = (Rd { b: bytes, big: true }).u32(0) else {
        return Err(truncated(0, "file shorter than a magic number"));
    };
    match magic_be {
        0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => parse_pcap(bytes),
        PCAPNG_SHB => parse_pcapng(bytes),
        magic => Err(CaptureError::NotACapture { magic }),
    }
}

struct Rd<'a> {
    b: &'a [u8],
    big: bool,
}

impl Rd<'_> {
    fn u32(&self, off: usize) -> Option<u32> {
        let s = self.b.get(off..off.checked_add(4)?)?;
        let a = [*s.first()?, *s.get(1)?, *s.get(2)?, *s.get(3)?];
        Some(if self.big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }
    fn u16(&self, off: usize) -> Option<u16> {
        let s = self.b.get(off..off.checked_add(2)?)?;
        let a = [*s.first()?, *s.get(1)?];
        Some(if self.big { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    }
}

fn parse_pcap(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let (mut rem, parser) = PcapParser::new(bytes).map_err(|e| match e {
        pcap_file::pcap::PcapParseError::IncompleteBuffer(..) => truncated(0, "pcap file header"),
        other => malformed(0, other.to_string()),
    })?;
    let header = parser.header();
    let big = header.endianness == Endianness::Big;
    let nanos = header.ts_resolution == PcapTsResolution::NanoSecond;
    // The link type field's upper bits may carry FCS information; the type is the low 28 bits.
    let linktype = Rd { b: bytes, big }.u32(20).unwrap_or(0) & 0x0fff_ffff;
    let mut records = Vec::new();
    let mut stop = None;
    while !rem.is_empty() {
        let offset = bytes.len() - rem.len();
        let rd = Rd { b: rem, big };
        let (Some(caplen), Some(origlen)) = (rd.u32(8), rd.u32(12)) else {
            stop = Some(truncated(offset, "packet record header"));
            break;
        };
        if caplen > MAX_CAPLEN {
            stop = Some(malformed(offset, format!("captured length {caplen} > {MAX_CAPLEN}")));
            break;
        }
        if caplen as usize > rem.len() - 16 {
            stop = Some(truncated(offset, "packet data"));
            break;
        }
        let (next, raw) = match parser.next_raw_packet(rem) {
            Ok(v) => v,
            Err(e) => {
                stop = Some(truncated(offset, e.to_string()));
                break;
            }
        };
        let frac =
            if nanos { raw.ts_frac.min(999_999_999) } else { raw.ts_frac.min(999_999).saturating_mul(1000) };
        let ts = Time::from_secs(u64::from(raw.ts_sec)).add_nanos(u64::from(frac));
        records.push(Record {
            index: records.len(),
            ts,
            linktype,
            caplen,
            origlen,
            data: raw.data.to_vec(),
            interface: None,
            offset: offset as u64,
        });
        rem = next;
    }
    Ok(Capture { format: CaptureFormat::Pcap, records, truncated: stop })
}

/// One pcapng interface: link type, snaplen and timestamp units.
#[derive(Debug, Clone, Copy)]
struct NgIface {
    linktype: u32,
    snaplen: u32,
    /// Timestamp units per second (`if_tsresol`: 10^n or 2^n; default 10^6).
    units: u128,
    /// `if_tsoffset`, seconds added to every timestamp.
    offset_secs: i64,
}

/// Timestamp units per second for an `if_tsresol` byte: bit 7 clear = 10^-n, set = 2^-n. Every value
/// has a meaning (libpcap accepts finer than nanoseconds too: picosecond captures exist); only
/// resolutions too fine for 128-bit arithmetic (10^-39 and finer) are refused.
fn tsresol_units(v: u8) -> Option<u128> {
    if v & 0x80 != 0 {
        1u128.checked_shl(u32::from(v & 0x7f))
    } else {
        10u128.checked_pow(u32::from(v))
    }
}

/// `raw` units since the epoch (plus the interface's offset) as a [`Time`], saturating at both ends.
fn ng_time(iface: &NgIface, raw: u64) -> Time {
    let units = iface.units.max(1);
    let secs = u128::from(raw) / units;
    let frac = u128::from(raw) % units;
    // frac < units <= 2^127: multiply after dividing the units down when they are huge.
    let frac_ns = match frac.checked_mul(1_000_000_000) {
        Some(x) => x / units,
        None => frac / (units / 1_000_000_000),
    };
    let ns = i128::try_from(secs.saturating_mul(1_000_000_000).saturating_add(frac_ns)).unwrap_or(i128::MAX);
    let ns = ns.saturating_add(i128::from(iface.offset_secs).saturating_mul(1_000_000_000));
    Time(u64::try_from(ns.max(0)).unwrap_or(u64::MAX))
}

/// pcapng Interface Description Block body (after type and length).
fn parse_idb(body: &[u8], big: bool, offset: usize) -> Result<NgIface, CaptureError> {
    let rd = Rd { b: body, big };
    let (Some(linktype), Some(snaplen)) = (rd.u16(0), rd.u32(4)) else {
        return Err(malformed(offset, "interface description block too short"));
    };
    let mut iface = NgIface { linktype: u32::from(linktype), snaplen, units: 1_000_000, offset_secs: 0 };
    let mut at = 8usize;
    // Options: code u16, length u16, value padded to 4 bytes; opt_endofopt (0) or the end of the body stops.
    while let (Some(code), Some(len)) = (rd.u16(at), rd.u16(at.saturating_add(2))) {
        let value = at.saturating_add(4);
        let len = usize::from(len);
        let Some(v) = body.get(value..value.saturating_add(len)) else {
            return Err(malformed(offset, "interface option runs past its block"));
        };
        match (code, v) {
            (0, _) => break,
            (9, [r]) => {
                iface.units = tsresol_units(*r)
                    .ok_or_else(|| malformed(offset, format!("if_tsresol {r:#04x} is beyond any clock")))?;
            }
            (14, _) if len == 8 => {
                let lo = rd.u32(value).unwrap_or(0);
                let hi = rd.u32(value + 4).unwrap_or(0);
                let (first, second) = if big { (lo, hi) } else { (hi, lo) };
                iface.offset_secs = ((u64::from(first) << 32) | u64::from(second)) as i64;
            }
            _ => {}
        }
        at = value.saturating_add(len.div_ceil(4) * 4);
    }
    Ok(iface)
}

fn parse_pcapng(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let mut records: Vec<Record> = Vec::new();
    let mut stop = None;
    // Interfaces of the current section; earlier sections' count, to number interfaces uniquely.
    let mut ifaces: Vec<NgIface> = Vec::new();
    let mut iface_base: u32 = 0;
    let mut big = false;
    let mut last_ts = Time::ZERO;
    let mut offset = 0usize;
    while offset < bytes.len() {
        let rest = bytes.get(offset..).unwrap_or(&[]);
        // The section header's byte-order magic decides the byte order of everything up to the next one,
        // its own length field included.
        let is_shb = Rd { b: rest, big: true }.u32(0) == Some(PCAPNG_SHB);
        if is_shb {
            match (Rd { b: rest, big: true }).u32(8) {
                Some(0x1a2b_3c4d) => big = true,
                Some(0x4d3c_2b1a) => big = false,
                Some(m) => {
                    let e = malformed(offset, format!("bad section byte-order magic {m:#010x}"));
                    if offset == 0 {
                        return Err(e);
                    }
                    stop = Some(e);
                    break;
                }
                None => {
                    let e = truncated(offset, "pcapng section header");
                    if offset == 0 {
                        return Err(e);
                    }
                    stop = Some(e);
                    break;
                }
            }
        }
        let rd = Rd { b: rest, big };
        let (Some(ty), Some(len)) = (rd.u32(0), rd.u32(4)) else {
            stop = Some(truncated(offset, "pcapng block header"));
            break;
        };
        let len = len as usize;
        if len < 12 || !len.is_multiple_of(4) {
            let e = malformed(offset, format!("bad pcapng block length {len}"));
            if offset == 0 {
                return Err(e);
            }
            stop = Some(e);
            break;
        }
        let Some(block) = rest.get(..len) else {
            let e = truncated(offset, "pcapng block");
            if offset == 0 {
                return Err(e);
            }
            stop = Some(e);
            break;
        };
        if (Rd { b: block, big }).u32(len - 4) != Some(len as u32) {
            let e = malformed(offset, "pcapng block lengths disagree");
            if offset == 0 {
                return Err(e);
            }
            stop = Some(e);
            break;
        }
        let body = block.get(8..len - 4).unwrap_or(&[]);
        let brd = Rd { b: body, big };
        let pkt = match ty {
            PCAPNG_SHB => {
                if brd.u16(4) != Some(1) {
                    let e =
                        malformed(offset, format!("unsupported pcapng version {}", brd.u16(4).unwrap_or(0)));
                    if offset == 0 {
                        return Err(e);
                    }
                    stop = Some(e);
                    break;
                }
                iface_base = iface_base.saturating_add(u32::try_from(ifaces.len()).unwrap_or(u32::MAX));
                ifaces.clear();
                None
            }
            PCAPNG_IDB => {
                match parse_idb(body, big, offset) {
                    Ok(i) => ifaces.push(i),
                    Err(e) => {
                        stop = Some(e);
                        break;
                    }
                }
                None
            }
            PCAPNG_EPB | PCAPNG_PB => {
                // EPB: if_id u32; PB (obsolete): if_id u16, drops u16. Then ts_hi, ts_lo, caplen, origlen, data.
                let iface = if ty == PCAPNG_EPB { brd.u32(0) } else { brd.u16(0).map(u32::from) };
                let (Some(iface), Some(hi), Some(lo), Some(caplen), Some(origlen)) =
                    (iface, brd.u32(4), brd.u32(8), brd.u32(12), brd.u32(16))
                else {
                    stop = Some(malformed(offset, "packet block too short"));
                    break;
                };
                if caplen > MAX_CAPLEN {
                    stop = Some(malformed(offset, format!("captured length {caplen} > {MAX_CAPLEN}")));
                    break;
                }
                let Some(data) = body.get(20..20 + caplen as usize) else {
                    stop = Some(malformed(offset, "captured length exceeds block"));
                    break;
                };
                let Some(idb) = ifaces.get(iface as usize) else {
                    stop = Some(malformed(offset, format!("packet on undeclared interface {iface}")));
                    break;
                };
                let ts = ng_time(idb, (u64::from(hi) << 32) | u64::from(lo));
                Some((iface, idb.linktype, ts, caplen, origlen, data))
            }
            PCAPNG_SPB => {
                let Some(idb) = ifaces.first() else {
                    stop = Some(malformed(offset, "simple packet block without interface"));
                    break;
                };
                let Some(origlen) = brd.u32(0) else {
                    stop = Some(malformed(offset, "simple packet block too short"));
                    break;
                };
                let mut caplen = origlen.min(u32::try_from(body.len().saturating_sub(4)).unwrap_or(u32::MAX));
                if idb.snaplen != 0 {
                    caplen = caplen.min(idb.snaplen);
                }
                if caplen > MAX_CAPLEN {
                    stop = Some(malformed(offset, format!("captured length {caplen} > {MAX_CAPLEN}")));
                    break;
                }
                let data = body.get(4..4 + caplen as usize).unwrap_or(&[]);
                Some((0, idb.linktype, last_ts, caplen, origlen, data))
            }
            _ => None,
        };
        if let Some((iface, linktype, ts, caplen, origlen, data)) = pkt {
            last_ts = ts;
            records.push(Record {
                index: records.len(),
                ts,
                linktype,
                caplen,
                origlen,
                data: data.to_vec(),
                interface: Some(iface_base.saturating_add(iface)),
                offset: offset as u64,
            });
        }
        offset += len;
    }
    Ok(Capture { format: CaptureFormat::PcapNg, records, truncated: stop })
}

/// Writes classic pcap (little-endian, micro- or nanosecond timestamps) to any writer.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    w: W,
    nanos: bool,
}

/// Snaplen written in the file header.
const WRITER_SNAPLEN: u32 = MAX_CAPLEN;

impl<W: Write> PcapWriter<W> {
    /// Write the file header. `linktype` is the pcap LINKTYPE (1 Ethernet, 101 raw IP...).
    pub fn new(mut w: W, linktype: u32, nanos: bool) -> io::Result<Self> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&magic.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&WRITER_SNAPLEN.to_le_bytes());
        h.extend_from_slice(&linktype.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapWriter { w, nanos })
    }

    /// Append one packet (captured length = original length = `data.len()`).
    pub fn write_packet(&mut self, ts: Time, data: &[u8]) -> io::Result<()> {
        let secs = u32::try_from(ts.0 / Time::NANOS_PER_SEC).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "timestamp beyond the pcap range (2106)")
        })?;
        let sub = ts.0 % Time::NANOS_PER_SEC;
        let frac = if self.nanos { sub } else { sub / 1000 };
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&l| l <= WRITER_SNAPLEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "packet larger than the snaplen"))?;
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&u32::try_from(frac).unwrap_or(0).to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)
    }

    /// Flush and return the writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::path::Path;

    fn corpus(name: &str) -> Option<Vec<u8>> {
        let p = Path::new("/work/shared/corpus/pcaps").join(name);
        match std::fs::read(&p) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("skipping: {} unavailable ({e})", p.display());
                None
            }
        }
    }

    fn pcap_file(big: bool, nanos: bool, linktype: u32, recs: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let w32 = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let w16 = |v: u16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut f = Vec::new();
        f.extend_from_slice(&w32(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
        f.extend_from_slice(&w16(2));
        f.extend_from_slice(&w16(4));
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&w32(65535));
        f.extend_from_slice(&w32(linktype));
        for (sec, frac, data) in recs {
            f.extend_from_slice(&w32(*sec));
            f.extend_from_slice(&w32(*frac));
            f.extend_from_slice(&w32(data.len() as u32));
            f.extend_from_slice(&w32(data.len() as u32 + 10));
            f.extend_from_slice(data);
        }
        f
    }

    #[test]
    fn pcap_both_byte_orders_and_resolutions() {
        for big in [false, true] {
            for nanos in [false, true] {
                let f = pcap_file(big, nanos, 101, &[(10, 5, b"abc"), (11, 999, b"")]);
                let c = parse_capture(&f).unwrap();
                assert_eq!(c.format, CaptureFormat::Pcap);
                assert_eq!(c.truncated, None);
                assert_eq!(c.records.len(), 2);
                let r = &c.records[0];
                let mult = if nanos { 1 } else { 1000 };
                assert_eq!(r.ts, Time(10_000_000_000 + 5 * mult));
                assert_eq!((r.linktype, r.caplen, r.origlen), (101, 3, 13));
                assert_eq!(r.data, b"abc");
                assert_eq!((r.index, r.offset, r.interface), (0, 24, None));
                assert_eq!(c.records[1].offset, 24 + 16 + 3);
                assert_eq!(c.records[1].index, 1);
            }
        }
    }

    #[test]
    fn pcap_invalid_subsecond_clamped() {
        let f = pcap_file(false, false, 1, &[(1, 1_000_000, b"x"), (1, u32::MAX, b"y")]);
        let c = parse_capture(&f).unwrap();
        assert_eq!(c.records[0].ts, Time(1_999_999_000));
        assert_eq!(c.records[1].ts, Time(1_999_999_000));
        let f = pcap_file(true, true, 1, &[(1, 1_000_000_000, b"x")]);
        assert_eq!(parse_capture(&f).unwrap().records[0].ts, Time(1_999_999_999));
    }

    #[test]
    fn pcap_huge_caplen_is_malformed_not_allocated() {
        let mut f = pcap_file(false, false, 1, &[(1, 0, b"abcd")]);
        f[24 + 8..24 + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        let c = parse_capture(&f).unwrap();
        assert!(c.records.is_empty());
        assert!(matches!(c.truncated, Some(CaptureError::Malformed { offset: 24, .. })));
        f[24 + 8..24 + 12].copy_from_slice(&100u32.to_le_bytes());
        let c = parse_capture(&f).unwrap();
        assert!(matches!(c.truncated, Some(CaptureError::Truncated { offset: 24, .. })));
    }

    #[test]
    fn not_a_capture() {
        let e = parse_capture(b"GIF89a........................").unwrap_err();
        assert_eq!(e, CaptureError::NotACapture { magic: 0x4749_4638 });
        assert!(e.to_string().contains("magic 0x47494638"));
        assert!(matches!(parse_capture(b"\xd4\xc3"), Err(CaptureError::Truncated { offset: 0, .. })));
        assert!(matches!(
            parse_capture(&pcap_file(false, false, 1, &[])[..20]),
            Err(CaptureError::Truncated { offset: 0, .. })
        ));
    }

    #[test]
    fn writer_roundtrip() {
        for nanos in [false, true] {
            let mut w = PcapWriter::new(Vec::new(), 1, nanos).unwrap();
            w.write_packet(Time(1_500_000_000_123_456_789), b"hello").unwrap();
            w.write_packet(Time(1_500_000_001_000_000_000), b"").unwrap();
            let bytes = w.into_inner().unwrap();
            let c = parse_capture(&bytes).unwrap();
            assert_eq!(c.records.len(), 2);
            let want = if nanos { 1_500_000_000_123_456_789 } else { 1_500_000_000_123_456_000 };
            assert_eq!(c.records[0].ts, Time(want));
            assert_eq!(c.records[0].data, b"hello");
            assert_eq!(c.records[0].linktype, 1);
            assert_eq!(c.records[1].ts, Time(1_500_000_001_000_000_000));
        }
        let mut w = PcapWriter::new(Vec::new(), 101, false).unwrap();
        assert!(w.write_packet(Time(u64::MAX), b"x").is_err());
    }

    // --- pcapng builders (little-endian unless stated) ---

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
        let w16 = |v: u16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        body.extend_from_slice(&w16(1));
        body.extend_from_slice(&w16(0));
        body.extend_from_slice(&[0xff; 8]);
        block(big, PCAPNG_SHB, &body)
    }

    fn idb(big: bool, linktype: u16, snaplen: u32, tsresol: Option<u8>) -> Vec<u8> {
        let w16 = |v: u16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let w32 = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut body = w16(linktype).to_vec();
        body.extend_from_slice(&w16(0));
        body.extend_from_slice(&w32(snaplen));
        if let Some(r) = tsresol {
            body.extend_from_slice(&w16(9));
            body.extend_from_slice(&w16(1));
            body.extend_from_slice(&[r, 0, 0, 0]);
            body.extend_from_slice(&[0, 0, 0, 0]);
        }
        block(big, 1, &body)
    }

    fn epb(big: bool, iface: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let w32 = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut body = w32(iface).to_vec();
        body.extend_from_slice(&w32((ts >> 32) as u32));
        body.extend_from_slice(&w32(ts as u32));
        body.extend_from_slice(&w32(data.len() as u32));
        body.extend_from_slice(&w32(data.len() as u32));
        body.extend_from_slice(data);
        block(big, PCAPNG_EPB, &body)
    }

    fn multi_section_pcapng() -> Vec<u8> {
        let mut f = shb(false);
        f.extend(idb(false, 1, 0, None)); // iface 0: Ethernet, microseconds
        f.extend(idb(false, 101, 0, Some(9))); // iface 1: raw, nanoseconds
        f.extend(epb(false, 0, 1_000_000, b"eth0"));
        f.extend(epb(false, 1, 2_000_000_001, b"raw1"));
        // Simple packet block: interface 0, no timestamp.
        let mut spb = 5u32.to_le_bytes().to_vec();
        spb.extend_from_slice(b"simpl");
        f.extend(block(false, PCAPNG_SPB, &spb));
        // A name resolution block is skipped.
        f.extend(block(false, 4, &[0, 0, 0, 0]));
        // Second section, big-endian, its own interface numbering.
        f.extend(shb(true));
        f.extend(idb(true, 113, 0, Some(3)));
        f.extend(epb(true, 0, 5_000, b"sll"));
        // Obsolete packet block (if_id u16, drops u16).
        let mut pb = 0u16.to_be_bytes().to_vec();
        pb.extend_from_slice(&0u16.to_be_bytes());
        pb.extend_from_slice(&0u32.to_be_bytes());
        pb.extend_from_slice(&6_000u32.to_be_bytes());
        pb.extend_from_slice(&2u32.to_be_bytes());
        pb.extend_from_slice(&2u32.to_be_bytes());
        pb.extend_from_slice(b"pb");
        f.extend(block(true, PCAPNG_PB, &pb));
        f
    }

    #[test]
    fn pcapng_sections_interfaces_and_block_kinds() {
        let f = multi_section_pcapng();
        let c = parse_capture(&f).unwrap();
        assert_eq!(c.format, CaptureFormat::PcapNg);
        assert_eq!(c.truncated, None);
        let got: Vec<_> =
            c.records.iter().map(|r| (r.index, r.ts, r.linktype, r.interface, r.data.as_slice())).collect();
        assert_eq!(
            got,
            vec![
                (0, Time(1_000_000_000), 1, Some(0), &b"eth0"[..]),
                (1, Time(2_000_000_001), 101, Some(1), &b"raw1"[..]),
                (2, Time(2_000_000_001), 1, Some(0), &b"simpl"[..]),
                (3, Time(5_000_000_000), 113, Some(2), &b"sll"[..]),
                (4, Time(6_000_000_000), 113, Some(2), &b"pb"[..]),
            ]
        );
        // Offsets point at the blocks.
        for r in &c.records {
            let ty = u32::from_le_bytes(f[r.offset as usize..r.offset as usize + 4].try_into().unwrap());
            let ty_be = u32::from_be_bytes(f[r.offset as usize..r.offset as usize + 4].try_into().unwrap());
            assert!([2, 3, 6].contains(&ty) || [2, 3, 6].contains(&ty_be));
        }
    }

    fn idb_opts(big: bool, linktype: u16, opts: &[(u16, &[u8])]) -> Vec<u8> {
        let w16 = |v: u16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut body = w16(linktype).to_vec();
        body.extend_from_slice(&w16(0));
        body.extend_from_slice(&[0, 0, 0, 0]);
        for (code, v) in opts {
            body.extend_from_slice(&w16(*code));
            body.extend_from_slice(&w16(v.len() as u16));
            body.extend_from_slice(v);
            while !body.len().is_multiple_of(4) {
                body.push(0);
            }
        }
        body.extend_from_slice(&[0, 0, 0, 0]);
        block(big, PCAPNG_IDB, &body)
    }

    /// One EPB at raw timestamp `ts` on an interface with `if_tsresol` = `resol`: its time in ns.
    fn ts_with_resol(resol: u8, ts: u64) -> Result<Time, CaptureError> {
        let mut f = shb(false);
        f.extend(idb_opts(false, 101, &[(9, &[resol])]));
        f.extend(epb(false, 0, ts, b"x"));
        let c = parse_capture(&f).unwrap();
        match c.truncated {
            Some(e) => Err(e),
            None => Ok(c.records[0].ts),
        }
    }

    #[test]
    fn pcapng_every_tsresol_has_a_meaning() {
        // Decimal: seconds, milliseconds, nanoseconds, picoseconds (finer than ns: truncated).
        assert_eq!(ts_with_resol(0, 7), Ok(Time::from_secs(7)));
        assert_eq!(ts_with_resol(3, 7_001), Ok(Time(7_001_000_000)));
        assert_eq!(ts_with_resol(9, 7_000_000_001), Ok(Time(7_000_000_001)));
        assert_eq!(ts_with_resol(12, 7_000_000_001_999), Ok(Time(7_000_000_001)));
        assert_eq!(ts_with_resol(19, u64::MAX), Ok(Time(1_844_674_407)));
        assert_eq!(ts_with_resol(38, u64::MAX), Ok(Time(0)));
        // Binary: 2^0 (seconds), 2^-10, 2^-30 (finer than ns), 2^-63, 2^-127.
        assert_eq!(ts_with_resol(0x80, 5), Ok(Time::from_secs(5)));
        assert_eq!(ts_with_resol(0x8a, 1024 * 3 + 512), Ok(Time(3_500_000_000)));
        assert_eq!(ts_with_resol(0x80 | 30, 3 << 30), Ok(Time::from_secs(3)));
        assert_eq!(ts_with_resol(0x80 | 63, 1 << 62), Ok(Time(500_000_000)));
        assert_eq!(ts_with_resol(0xff, u64::MAX), Ok(Time(0)));
        // Too fine for any clock: the block is malformed, the file partial.
        assert!(matches!(ts_with_resol(39, 1), Err(CaptureError::Malformed { .. })));
        // Seconds resolution and the largest raw value: far beyond 2106, saturated.
        assert_eq!(ts_with_resol(0, u64::MAX), Ok(Time(u64::MAX)));
    }

    #[test]
    fn pcapng_tsoffset_and_saturation() {
        let t = |off: i64, ts: u64| {
            let mut f = shb(true);
            f.extend(idb_opts(true, 1, &[(14, &off.to_be_bytes()), (9, &[6])]));
            f.extend(epb(true, 0, ts, b"x"));
            parse_capture(&f).unwrap().records[0].ts
        };
        assert_eq!(t(100, 1_500_000), Time(101_500_000_000));
        assert_eq!(t(-1, 1_500_000), Time(500_000_000));
        // Before the epoch: 0.
        assert_eq!(t(-10, 1_500_000), Time::ZERO);
        assert_eq!(t(i64::MAX, 1), Time(u64::MAX));
        let mut f = shb(false);
        f.extend(idb_opts(false, 1, &[(14, &(-2i64).to_le_bytes())]));
        f.extend(epb(false, 0, 3_000_000, b"x"));
        assert_eq!(parse_capture(&f).unwrap().records[0].ts, Time::from_secs(1));
    }

    #[test]
    fn pcapng_structural_lies() {
        // Block lengths that disagree, are not a multiple of 4, or are too short: malformed at that block.
        let mut good = shb(false);
        good.extend(idb(false, 1, 0, None));
        let at = good.len();
        good.extend(epb(false, 0, 1, b"abcd"));
        let mut f = good.clone();
        let n = f.len();
        f[n - 4] ^= 4;
        let c = parse_capture(&f).unwrap();
        assert!(matches!(c.truncated, Some(CaptureError::Malformed { offset, .. }) if offset == at as u64));
        let mut f = good.clone();
        f[at + 4] = 13;
        assert!(matches!(parse_capture(&f).unwrap().truncated, Some(CaptureError::Malformed { .. })));
        let mut f = good.clone();
        f[at + 4..at + 8].copy_from_slice(&8u32.to_le_bytes());
        assert!(matches!(parse_capture(&f).unwrap().truncated, Some(CaptureError::Malformed { .. })));
        // A second section with a bad byte-order magic stops there; the first section's packets stay.
        let mut f = good.clone();
        let mut bad = shb(false);
        bad[8..12].copy_from_slice(&[1, 2, 3, 4]);
        f.extend(bad);
        let c = parse_capture(&f).unwrap();
        assert_eq!(c.records.len(), 1);
        assert!(matches!(c.truncated, Some(CaptureError::Malformed { .. })));
        // ... and as the first block, the file is not usable at all.
        let mut bad = shb(false);
        bad[8..12].copy_from_slice(&[1, 2, 3, 4]);
        assert!(parse_capture(&bad).is_err());
        // A version other than 1.x is refused like libpcap does.
        let mut v2 = shb(false);
        v2[12..14].copy_from_slice(&2u16.to_le_bytes());
        assert!(parse_capture(&v2).is_err());
        // An interface option running past its block.
        let mut f = shb(false);
        let mut body = 1u16.to_le_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&9u16.to_le_bytes());
        body.extend_from_slice(&200u16.to_le_bytes());
        f.extend(block(false, PCAPNG_IDB, &body));
        assert!(matches!(parse_capture(&f).unwrap().truncated, Some(CaptureError::Malformed { .. })));
    }

    #[test]
    fn pcapng_bad_interface_stops_with_offset() {
        let mut f = shb(false);
        f.extend(idb(false, 1, 0, None));
        f.extend(epb(false, 0, 1, b"ok"));
        let off = f.len();
        f.extend(epb(false, 7, 1, b"bad"));
        let c = parse_capture(&f).unwrap();
        assert_eq!(c.records.len(), 1);
        assert!(matches!(c.truncated, Some(CaptureError::Malformed { offset, .. }) if offset == off as u64));
    }

    /// Cutting a valid file anywhere never panics and keeps every record that ends before the cut.
    fn check_every_cut(f: &[u8]) {
        let full = parse_capture(f).unwrap();
        assert_eq!(full.truncated, None);
        for cut in 0..f.len() {
            match parse_capture(&f[..cut]) {
                Ok(c) => {
                    let complete = full
                        .records
                        .iter()
                        .filter(|r| {
                            let next = full
                                .records
                                .iter()
                                .find(|n| n.index == r.index + 1)
                                .map_or(f.len() as u64, |n| n.offset);
                            next <= cut as u64
                        })
                        .count();
                    assert!(c.records.len() >= complete, "cut {cut}: {} < {complete}", c.records.len());
                    assert_eq!(c.records[..], full.records[..c.records.len()]);
                    if cut < f.len() && c.records.len() < full.records.len() {
                        assert!(c.truncated.is_some() || cut as u64 <= full.records[c.records.len()].offset);
                    }
                }
                Err(e) => {
                    assert!(matches!(e, CaptureError::Truncated { .. } | CaptureError::Malformed { .. }))
                }
            }
        }
    }

    #[test]
    fn truncated_files_every_offset() {
        check_every_cut(&pcap_file(false, false, 1, &[(1, 2, b"abcdef"), (3, 4, b"gh"), (5, 6, b"")]));
        check_every_cut(&pcap_file(true, true, 1, &[(1, 2, b"abcdef"), (3, 4, b"gh")]));
        check_every_cut(&multi_section_pcapng());
        for name in ["tcpdump__tcp-handshake-nano.pcap", "zeek__pcapng-multi-interface.pcapng"] {
            if let Some(f) = corpus(name) {
                check_every_cut(&f);
            }
        }
    }

    #[test]
    fn corpus_nanosecond_sll() {
        let Some(f) = corpus("tcpdump__tcp-handshake-nano.pcap") else { return };
        let c = parse_capture(&f).unwrap();
        assert_eq!(c.records.len(), 3);
        assert_eq!(c.records[0].ts, Time(1_418_145_369_924_505_488));
        assert_eq!(c.records[2].ts, Time(1_418_145_370_052_115_157));
        assert!(c.records.iter().all(|r| r.linktype == 113));
    }

    #[test]
    fn corpus_invalid_micro() {
        let Some(f) = corpus("tcpdump__timestamp_invalid_micro.pcap") else { return };
        let c = parse_capture(&f).unwrap();
        assert_eq!(c.truncated, None);
        assert_eq!(c.records.len(), 3);
        assert_eq!(c.records[0].ts, Time(1_418_145_369_999_999_000));
        assert_eq!(c.records[1].ts, Time(1_418_145_370_999_999_000));
        assert_eq!(c.records[2].ts, Time(1_418_145_370_999_999_000));
    }

    #[test]
    fn corpus_time_2106() {
        let Some(f) = corpus("tcpdump__time_2106_overflow.pcapng") else { return };
        let c = parse_capture(&f).unwrap();
        assert_eq!(c.records.len(), 1);
        assert_eq!(c.records[0].ts, Time::from_secs(1 << 32));
        assert_eq!(c.records[0].linktype, 1);
    }

    #[test]
    fn corpus_multi_interface() {
        let Some(f) = corpus("zeek__pcapng-multi-interface.pcapng") else { return };
        let c = parse_capture(&f).unwrap();
        assert_eq!(c.truncated, None);
        assert_eq!(c.records.len(), 6);
        // Nanosecond interfaces: tcpdump shows these truncated to microseconds.
        assert_eq!(c.records[0].ts.0 / 1000, 1_767_663_089_500_330);
        assert_eq!(c.records[5].ts.0 / 1000, 1_767_663_437_140_942);
        let ifaces: std::collections::BTreeSet<_> = c.records.iter().map(|r| r.interface).collect();
        assert!(ifaces.len() >= 2, "{ifaces:?}");
        assert!(c.records.iter().all(|r| r.linktype == 1));
    }

    #[test]
    fn corpus_all_files_parse_and_decode() {
        let dir = Path::new("/work/shared/corpus/pcaps");
        let Ok(entries) = std::fs::read_dir(dir) else {
            eprintln!("skipping: {} absent", dir.display());
            return;
        };
        let mut total_ok = 0;
        for e in entries {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            let c = parse_capture(&bytes).unwrap();
            assert_eq!(c.truncated, None, "{}", p.display());
            assert!(!c.records.is_empty(), "{}", p.display());
            let mut ip_ok = 0;
            for r in &c.records {
                if let Ok(fr) = crate::link::strip_link(r.linktype, &r.data) {
                    if crate::packet::decode_ip(fr.ip).is_ok() {
                        ip_ok += 1;
                    }
                }
            }
            eprintln!("{}: {ip_ok}/{} decoded", p.display(), c.records.len());
            total_ok += ip_ok;
        }
        assert!(total_ok > 2000, "{total_ok}");
    }
}
