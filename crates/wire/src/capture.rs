//! Capture files: streaming pcap and pcapng reading ([`CaptureReader`]), whole-file parsing on top of
//! it ([`parse_capture`]), pcap writing.
//!
//! Contract:
//! - The format is recognised by its magic: classic pcap in either byte order with microsecond
//!   (0xa1b2c3d4) or nanosecond (0xa1b23c4d) timestamps, or pcapng (0x0a0d0d0a), with any number of
//!   sections and interfaces (each with its own link type, `if_tsresol` and `if_tsoffset`) and
//!   Enhanced, Simple and obsolete Packet blocks. Other blocks are skipped.
//! - Records come in file order with a 0-based `index` and the byte `offset` of their record header /
//!   block in the file.
//! - Reading is incremental: when the file is cut short or becomes unparseable after a valid header,
//!   every complete record before the problem is given and then the error (with its byte offset).
//!   Only an unusable file header (for pcapng: the first section header block) is an `Err` of
//!   [`CaptureReader::new`] / [`parse_capture`].
//! - Memory is bounded whatever the file says: [`CaptureReader`] holds one reused buffer of at most
//!   about [`MAX_BLOCK`] bytes. A record whose captured length exceeds the bytes left is `Truncated`,
//!   one larger than [`MAX_CAPLEN`] is `Malformed`. A pcapng block longer than [`MAX_BLOCK`] is read
//!   through without being kept: skipped when of a type that is skipped anyway, `Malformed` when its
//!   contents matter (section header, interface description, packet blocks).
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
//! - A read error of the underlying reader (other than an interrupted call) is `Io` at the offset
//!   where reading stopped.

use std::io::{self, Read, Write};

use crate::time::Time;

/// Largest captured length accepted for one record (256 KiB, the largest snaplen tcpdump uses).
pub const MAX_CAPLEN: u32 = 256 * 1024;

/// Largest pcapng block [`CaptureReader`] keeps in memory (16 MiB).
pub const MAX_BLOCK: usize = 16 * 1024 * 1024;

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

/// One captured packet as [`CaptureReader`] gives it: the same fields as [`Record`], the data borrowed
/// from the reader's buffer (valid until the next call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// 0-based packet index in the file.
    pub index: usize,
    pub ts: Time,
    /// pcap LINKTYPE of the frame.
    pub linktype: u32,
    /// Captured length (`data.len()`).
    pub caplen: u32,
    /// Length on the wire as the file says.
    pub origlen: u32,
    pub data: &'a [u8],
    /// pcapng interface (unique across sections); `None` for classic pcap.
    pub interface: Option<u32>,
    /// Byte offset of the record header / block in the file.
    pub offset: u64,
}

impl RecordRef<'_> {
    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record {
            index: self.index,
            ts: self.ts,
            linktype: self.linktype,
            caplen: self.caplen,
            origlen: self.origlen,
            data: self.data.to_vec(),
            interface: self.interface,
            offset: self.offset,
        }
    }
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
    #[error("cannot read capture at byte {offset}: {what}")]
    Io { offset: u64, what: String },
}

const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_EPB: u32 = 6;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_PB: u32 = 2;

fn truncated(offset: u64, what: impl Into<String>) -> CaptureError {
    CaptureError::Truncated { offset, what: what.into() }
}

fn malformed(offset: u64, what: impl Into<String>) -> CaptureError {
    CaptureError::Malformed { offset, what: what.into() }
}

/// Parse a whole pcap or pcapng file held in memory: every record of a [`CaptureReader`] over `bytes`,
/// owned, and the error that stopped it early, if any.
pub fn parse_capture(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let mut reader = CaptureReader::new(bytes)?;
    let mut records = Vec::new();
    let mut stop = None;
    while let Some(r) = reader.next_record() {
        match r {
            Ok(r) => records.push(r.to_record()),
            Err(e) => {
                stop = Some(e);
                break;
            }
        }
    }
    Ok(Capture { format: reader.format(), records, truncated: stop })
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
fn parse_idb(body: &[u8], big: bool, offset: u64) -> Result<NgIface, CaptureError> {
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

/// Reads start with this much buffer; it doubles up to [`READ_CHUNK_MAX`] (or the block being read).
const READ_CHUNK_MIN: usize = 64 * 1024;
const READ_CHUNK_MAX: usize = 1024 * 1024;

/// Container state.
#[derive(Debug)]
enum Format {
    Pcap {
        big: bool,
        nanos: bool,
        linktype: u32,
    },
    PcapNg {
        /// Byte order of the current section.
        big: bool,
        /// Interfaces of the current section.
        ifaces: Vec<NgIface>,
        /// Interfaces of earlier sections, to number interfaces uniquely.
        iface_base: u32,
        /// The previous record's time (for Simple Packet Blocks).
        last_ts: Time,
    },
}

/// What one pcapng block turned out to be.
enum Block {
    /// A packet: its fields, the data's range inside the block.
    Packet {
        iface: u32,
        linktype: u32,
        ts: Time,
        caplen: u32,
        origlen: u32,
        data: (usize, usize),
    },
    Other,
}

/// A record found in the buffer: its fields (data left empty) and the data's range in the buffer.
type Found = (RecordRef<'static>, (usize, usize));

/// Streaming capture reader: one record at a time from any [`Read`], through one reused buffer.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let file = std::fs::File::open("x.pcap")?;
/// let mut reader = wire::capture::CaptureReader::new(file)?;
/// while let Some(r) = reader.next_record() {
///     let r = r?; // a truncated or corrupt file: the records before were good
///     println!("{} {} bytes", r.index, r.data.len());
/// }
/// # Ok(()) }
/// ```
pub struct CaptureReader<R: Read> {
    src: R,
    /// Bytes read and not consumed yet: `buf[start..end]`, the first one at file offset `pos`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    pos: u64,
    /// The source said end of file.
    eof: bool,
    /// An error or the end was given: nothing more.
    done: bool,
    index: usize,
    format: Format,
}

impl<R: Read> std::fmt::Debug for CaptureReader<R> {
    // Not the buffer: it is up to a megabyte of packet bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("format", &self.format())
            .field("position", &self.pos)
            .field("index", &self.index)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcapng: the first section header block). Fails when it is not a capture,
    /// or is cut short or corrupt there.
    pub fn new(src: R) -> Result<Self, CaptureError> {
        let mut r = CaptureReader {
            src,
            buf: Vec::new(),
            start: 0,
            end: 0,
            pos: 0,
            eof: false,
            done: false,
            index: 0,
            format: Format::Pcap { big: false, nanos: false, linktype: 0 },
        };
        r.fill(24)?;
        let Some(magic_be) = (Rd { b: r.window(), big: true }).u32(0) else {
            return Err(truncated(0, "file shorter than a magic number"));
        };
        match magic_be {
            0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => {
                let big = matches!(magic_be, 0xa1b2_c3d4 | 0xa1b2_3c4d);
                let nanos = matches!(magic_be, 0xa1b2_3c4d | 0x4d3c_b2a1);
                let rd = Rd { b: r.window(), big };
                // The link type field's upper bits may carry FCS information; the type is the low 28 bits.
                let Some(linktype) = rd.u32(20) else {
                    return Err(truncated(0, "pcap file header"));
                };
                r.format = Format::Pcap { big, nanos, linktype: linktype & 0x0fff_ffff };
                r.consume(24);
            }
            PCAPNG_SHB => {
                r.format =
                    Format::PcapNg { big: false, ifaces: Vec::new(), iface_base: 0, last_ts: Time::ZERO };
                // The first block is the section header: any problem there makes the file unusable.
                r.ng_block()?;
            }
            magic => return Err(CaptureError::NotACapture { magic }),
        }
        Ok(r)
    }

    /// Which container the file is.
    pub fn format(&self) -> CaptureFormat {
        match self.format {
            Format::Pcap { .. } => CaptureFormat::Pcap,
            Format::PcapNg { .. } => CaptureFormat::PcapNg,
        }
    }

    /// Bytes of the file consumed so far (the offset of the next record or block).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next record, or the error that ends the file early (given once), or `None` at the end.
    pub fn next_record(&mut self) -> Option<Result<RecordRef<'_>, CaptureError>> {
        if self.done {
            return None;
        }
        let step = match self.format {
            Format::Pcap { .. } => self.pcap_record(),
            Format::PcapNg { .. } => self.ng_record(),
        };
        match step {
            Ok(Some((rec, (a, b)))) => {
                self.index += 1;
                Some(Ok(RecordRef { data: self.buf.get(a..b).unwrap_or(&[]), ..rec }))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// The unconsumed bytes in the buffer.
    fn window(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or(&[])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.pos = self.pos.saturating_add(n as u64);
    }

    /// Reads until at least `need` bytes are buffered or the file ends; whether they are.
    fn fill(&mut self, need: usize) -> Result<bool, CaptureError> {
        while self.end - self.start < need {
            if self.eof {
                return Ok(false);
            }
            if self.buf.len() - self.start < need || self.end == self.buf.len() {
                // Move what is left to the front, growing the buffer when it is too small.
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                let grown = if self.buf.len() < READ_CHUNK_MAX {
                    (self.buf.len() * 2).clamp(READ_CHUNK_MIN, READ_CHUNK_MAX)
                } else {
                    self.buf.len()
                };
                let want = grown.max(need);
                if want > self.buf.len() {
                    self.buf.resize(want, 0);
                }
            }
            let Some(space) = self.buf.get_mut(self.end..) else {
                return Ok(false);
            };
            match self.src.read(space) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let offset = self.pos.saturating_add((self.end - self.start) as u64);
                    return Err(CaptureError::Io { offset, what: e.to_string() });
                }
            }
        }
        Ok(true)
    }

    /// Is there anything left to read?
    fn at_end(&mut self) -> Result<bool, CaptureError> {
        Ok(!self.fill(1)?)
    }

    /// One classic pcap record: its fields and the data's range in the buffer (consumed already).
    fn pcap_record(&mut self) -> Result<Option<Found>, CaptureError> {
        let Format::Pcap { big, nanos, linktype } = self.format else { return Ok(None) };
        if self.at_end()? {
            return Ok(None);
        }
        let offset = self.pos;
        self.fill(16)?;
        let rd = Rd { b: self.window(), big };
        let (Some(sec), Some(frac), Some(caplen), Some(origlen)) =
            (rd.u32(0), rd.u32(4), rd.u32(8), rd.u32(12))
        else {
            return Err(truncated(offset, "packet record header"));
        };
        if caplen > MAX_CAPLEN {
            return Err(malformed(offset, format!("captured length {caplen} > {MAX_CAPLEN}")));
        }
        let total = 16 + caplen as usize;
        if !self.fill(total)? {
            return Err(truncated(offset, "packet data"));
        }
        let frac = if nanos { frac.min(999_999_999) } else { frac.min(999_999).saturating_mul(1000) };
        let ts = Time::from_secs(u64::from(sec)).add_nanos(u64::from(frac));
        let data = (self.start + 16, self.start + total);
        self.consume(total);
        let rec = RecordRef {
            index: self.index,
            ts,
            linktype,
            caplen,
            origlen,
            data: &[],
            interface: None,
            offset,
        };
        Ok(Some((rec, data)))
    }

    /// pcapng blocks up to the next packet: its fields and the data's range in the buffer.
    fn ng_record(&mut self) -> Result<Option<Found>, CaptureError> {
        loop {
            if self.at_end()? {
                return Ok(None);
            }
            let offset = self.pos;
            if let Block::Packet { iface, linktype, ts, caplen, origlen, data } = self.ng_block()? {
                let base = match &self.format {
                    Format::PcapNg { iface_base, .. } => *iface_base,
                    Format::Pcap { .. } => 0,
                };
                let rec = RecordRef {
                    index: self.index,
                    ts,
                    linktype,
                    caplen,
                    origlen,
                    data: &[],
                    interface: Some(base.saturating_add(iface)),
                    offset,
                };
                return Ok(Some((rec, data)));
            }
        }
    }

    /// Reads and interprets one pcapng block at the current position and consumes it. A packet's data
    /// range stays valid in the buffer until the next read.
    fn ng_block(&mut self) -> Result<Block, CaptureError> {
        let offset = self.pos;
        let Format::PcapNg { big: section_big, .. } = self.format else { return Ok(Block::Other) };
        let mut big = section_big;
        self.fill(12)?;
        let head = self.window();
        // The section header's byte-order magic decides the byte order of everything up to the next one,
        // its own length field included.
        let is_shb = Rd { b: head, big: true }.u32(0) == Some(PCAPNG_SHB);
        if is_shb {
            match (Rd { b: head, big: true }).u32(8) {
                Some(0x1a2b_3c4d) => big = true,
                Some(0x4d3c_2b1a) => big = false,
                Some(m) => return Err(malformed(offset, format!("bad section byte-order magic {m:#010x}"))),
                None => return Err(truncated(offset, "pcapng section header")),
            }
        }
        let rd = Rd { b: head, big };
        let (Some(ty), Some(len)) = (rd.u32(0), rd.u32(4)) else {
            return Err(truncated(offset, "pcapng block header"));
        };
        let len = len as usize;
        if len < 12 || !len.is_multiple_of(4) {
            return Err(malformed(offset, format!("bad pcapng block length {len}")));
        }
        if len > MAX_BLOCK {
            return self.ng_skip_huge(offset, ty, len, big);
        }
        if !self.fill(len)? {
            return Err(truncated(offset, "pcapng block"));
        }
        let block = self.buf.get(self.start..self.start + len).unwrap_or(&[]);
        if (Rd { b: block, big }).u32(len - 4) != Some(len as u32) {
            return Err(malformed(offset, "pcapng block lengths disagree"));
        }
        let body = block.get(8..len - 4).unwrap_or(&[]);
        let body_at = self.start + 8;
        let brd = Rd { b: body, big };
        let Format::PcapNg { big: cur_big, ifaces, iface_base, last_ts } = &mut self.format else {
            return Ok(Block::Other);
        };
        let out = match ty {
            PCAPNG_SHB => {
                if brd.u16(4) != Some(1) {
                    return Err(malformed(
                        offset,
                        format!("unsupported pcapng version {}", brd.u16(4).unwrap_or(0)),
                    ));
                }
                *cur_big = big;
                *iface_base = iface_base.saturating_add(u32::try_from(ifaces.len()).unwrap_or(u32::MAX));
                ifaces.clear();
                Block::Other
            }
            PCAPNG_IDB => {
                ifaces.push(parse_idb(body, big, offset)?);
                Block::Other
            }
            PCAPNG_EPB | PCAPNG_PB => {
                // EPB: if_id u32; PB (obsolete): if_id u16, drops u16. Then ts_hi, ts_lo, caplen, origlen, data.
                let iface = if ty == PCAPNG_EPB { brd.u32(0) } else { brd.u16(0).map(u32::from) };
                let (Some(iface), Some(hi), Some(lo), Some(caplen), Some(origlen)) =
                    (iface, brd.u32(4), brd.u32(8), brd.u32(12), brd.u32(16))
                else {
                    return Err(malformed(offset, "packet block too short"));
                };
                if caplen > MAX_CAPLEN {
                    return Err(malformed(offset, format!("captured length {caplen} > {MAX_CAPLEN}")));
                }
                if body.len() < 20 + caplen as usize {
                    return Err(malformed(offset, "captured length exceeds block"));
                }
                let Some(idb) = ifaces.get(iface as usize) else {
                    return Err(malformed(offset, format!("packet on undeclared interface {iface}")));
                };
                let ts = ng_time(idb, (u64::from(hi) << 32) | u64::from(lo));
                *last_ts = ts;
                let data = (body_at + 20, body_at + 20 + caplen as usize);
                Block::Packet { iface, linktype: idb.linktype, ts, caplen, origlen, data }
            }
            PCAPNG_SPB => {
                let Some(idb) = ifaces.first() else {
                    return Err(malformed(offset, "simple packet block without interface"));
                };
                let Some(origlen) = brd.u32(0) else {
                    return Err(malformed(offset, "simple packet block too short"));
                };
                let mut caplen = origlen.min(u32::try_from(body.len().saturating_sub(4)).unwrap_or(u32::MAX));
                if idb.snaplen != 0 {
                    caplen = caplen.min(idb.snaplen);
                }
                if caplen > MAX_CAPLEN {
                    return Err(malformed(offset, format!("captured length {caplen} > {MAX_CAPLEN}")));
                }
                // caplen <= body.len() - 4 by construction.
                let data = (body_at + 4, body_at + 4 + caplen as usize);
                Block::Packet { iface: 0, linktype: idb.linktype, ts: *last_ts, caplen, origlen, data }
            }
            _ => Block::Other,
        };
        self.consume(len);
        Ok(out)
    }

    /// A block longer than [`MAX_BLOCK`]: read through it without keeping it. Cut short: `Truncated`;
    /// its trailing length different: `Malformed`; a block whose contents matter: `Malformed` (too large
    /// to hold); otherwise skipped like any unknown block.
    fn ng_skip_huge(&mut self, offset: u64, ty: u32, len: usize, big: bool) -> Result<Block, CaptureError> {
        let mut left = len - 4;
        while left > 0 {
            if !self.fill(1)? {
                return Err(truncated(offset, "pcapng block"));
            }
            let n = left.min(self.end - self.start);
            self.consume(n);
            left -= n;
        }
        if !self.fill(4)? {
            return Err(truncated(offset, "pcapng block"));
        }
        if (Rd { b: self.window(), big }).u32(0) != Some(len as u32) {
            return Err(malformed(offset, "pcapng block lengths disagree"));
        }
        if matches!(ty, PCAPNG_SHB | PCAPNG_IDB | PCAPNG_EPB | PCAPNG_PB | PCAPNG_SPB) {
            return Err(malformed(offset, format!("pcapng block of {len} bytes > {MAX_BLOCK}")));
        }
        self.consume(4);
        Ok(Block::Other)
    }
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

    /// A reader handing out at most `step` bytes per call (and failing after `fail_at` bytes, if set).
    struct Trickle<'a> {
        b: &'a [u8],
        step: usize,
        fail_at: Option<usize>,
        given: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.fail_at.is_some_and(|f| self.given >= f) {
                return Err(io::Error::other("disk on fire"));
            }
            let mut n = self.step.min(out.len()).min(self.b.len());
            if let Some(f) = self.fail_at {
                n = n.min(f - self.given);
            }
            out[..n].copy_from_slice(&self.b[..n]);
            self.b = &self.b[n..];
            self.given += n;
            Ok(n)
        }
    }

    /// Everything a reader gives, owned: the header error, or the records and the stopping error.
    fn drain<R: Read>(r: R) -> Result<(CaptureFormat, Vec<Record>, Option<CaptureError>), CaptureError> {
        let mut reader = CaptureReader::new(r)?;
        let mut recs = Vec::new();
        let mut stop = None;
        while let Some(x) = reader.next_record() {
            match x {
                Ok(r) => recs.push(r.to_record()),
                Err(e) => {
                    assert!(stop.is_none(), "two errors");
                    stop = Some(e);
                }
            }
        }
        assert!(reader.next_record().is_none());
        Ok((reader.format(), recs, stop))
    }

    /// The reader in small and odd-sized reads gives exactly what `parse_capture` gives.
    fn reader_agrees(f: &[u8], what: &str) {
        let want = parse_capture(f).map(|c| (c.format, c.records, c.truncated));
        for step in [1, 3, 16, 4093, usize::MAX] {
            let got = drain(Trickle { b: f, step, fail_at: None, given: 0 });
            assert_eq!(got, want, "{what}, reads of {step}");
        }
    }

    fn capture_files() -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")];
        match std::fs::read_dir("/work/shared/corpus/pcaps") {
            Ok(_) => dirs.push("/work/shared/corpus/pcaps".into()),
            Err(e) => eprintln!("skipping the shared corpus: {e}"),
        }
        while let Some(d) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn reader_equals_parse_capture_on_every_file_and_prefix() {
        let files = capture_files();
        assert!(!files.is_empty());
        for p in &files {
            let f = std::fs::read(p).unwrap();
            reader_agrees(&f, &p.display().to_string());
            // Prefixes: every cut in the first 300 bytes, then about 64 spread over the file.
            let stride = (f.len() / 64).max(1);
            for cut in (0..f.len().min(300)).chain((300..f.len()).step_by(stride)) {
                let want = parse_capture(&f[..cut]).map(|c| (c.format, c.records, c.truncated));
                let got = drain(Trickle { b: &f[..cut], step: 4093, fail_at: None, given: 0 });
                assert_eq!(got, want, "{} cut at {cut}", p.display());
            }
        }
        reader_agrees(&multi_section_pcapng(), "multi-section pcapng");
        reader_agrees(&pcap_file(true, true, 1, &[(1, 2, b"abcdef"), (3, 4, b"gh")]), "pcap");
    }

    #[test]
    fn reader_streams_records_with_offsets() {
        let f = pcap_file(false, false, 101, &[(1, 2, b"abcdef"), (3, 4, b"gh")]);
        let mut r = CaptureReader::new(Trickle { b: &f, step: 5, fail_at: None, given: 0 }).unwrap();
        assert_eq!(r.format(), CaptureFormat::Pcap);
        assert_eq!(r.position(), 24);
        let a = r.next_record().unwrap().unwrap();
        assert_eq!((a.index, a.offset, a.data, a.caplen, a.origlen), (0, 24, &b"abcdef"[..], 6, 16));
        let b = r.next_record().unwrap().unwrap();
        assert_eq!((b.index, b.offset, b.data, b.ts), (1, 24 + 22, &b"gh"[..], Time(3_000_004_000)));
        assert_eq!(r.position(), f.len() as u64);
        assert!(r.next_record().is_none());
        assert!(r.next_record().is_none());
    }

    #[test]
    fn reader_read_error_is_io_after_the_good_records() {
        let f = pcap_file(false, false, 1, &[(1, 2, b"abcdef"), (3, 4, b"gh")]);
        let (_, recs, stop) = drain(Trickle { b: &f, step: 7, fail_at: Some(50), given: 0 }).unwrap();
        assert_eq!(recs.len(), 1);
        assert!(matches!(stop, Some(CaptureError::Io { offset: 50, .. })), "{stop:?}");
        assert!(stop.unwrap().to_string().contains("disk on fire"));
        // In the header: the file is unusable.
        let e = CaptureReader::new(Trickle { b: &f, step: 7, fail_at: Some(10), given: 0 }).unwrap_err();
        assert!(matches!(e, CaptureError::Io { .. }));
    }

    #[test]
    fn reader_huge_blocks_read_through_not_held() {
        let big_len = MAX_BLOCK + 4096;
        let mut f = shb(false);
        f.extend(idb(false, 1, 0, None));
        f.extend(epb(false, 0, 1, b"before"));
        // A custom block (type 0x0bad) larger than MAX_BLOCK: skipped like any unknown block.
        let huge = block(false, 0x0bad, &vec![0u8; big_len - 12]);
        f.extend(&huge);
        f.extend(epb(false, 0, 2, b"after"));
        let (_, recs, stop) = drain(Trickle { b: &f, step: 65536, fail_at: None, given: 0 }).unwrap();
        assert_eq!(stop, None);
        assert_eq!(
            recs.iter().map(|r| r.data.as_slice()).collect::<Vec<_>>(),
            vec![&b"before"[..], b"after"]
        );
        assert_eq!(recs[1].offset, (f.len() - epb(false, 0, 2, b"after").len()) as u64);
        // Cut inside it: truncated there.
        let at = f.len() - huge.len() - epb(false, 0, 2, b"after").len();
        let c = parse_capture(&f[..at + 100]).unwrap();
        assert_eq!(c.records.len(), 1);
        assert!(matches!(c.truncated, Some(CaptureError::Truncated { offset, .. }) if offset == at as u64));
        // A packet block that large cannot be held: malformed.
        let mut g = shb(false);
        g.extend(idb(false, 1, 0, None));
        let at = g.len();
        g.extend(epb(false, 0, 1, &vec![0u8; big_len]));
        let c = parse_capture(&g).unwrap();
        assert!(c.records.is_empty());
        assert!(
            matches!(&c.truncated, Some(CaptureError::Malformed { offset, what }) if *offset == at as u64 && what.contains("bytes >")),
            "{:?}",
            c.truncated
        );
    }

    proptest::proptest! {
        /// Any damage to a valid file, read in any chunk size: the reader gives what `parse_capture` gives.
        #[test]
        fn reader_any_chunking_equals_parse_capture(
            ng in proptest::bool::ANY,
            edits in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 0..4),
            cut in 0usize..4096,
            step in 1usize..200,
        ) {
            let mut f = if ng {
                multi_section_pcapng()
            } else {
                pcap_file(true, false, 1, &[(1, 2, b"abcdef"), (3, 1_000_000, b"gh"), (5, 6, b"")])
            };
            for (at, v) in edits {
                let i = at % f.len();
                f[i] = v;
            }
            f.truncate(cut % (f.len() + 1));
            let want = parse_capture(&f).map(|c| (c.format, c.records, c.truncated));
            proptest::prop_assert_eq!(drain(Trickle { b: &f, step, fail_at: None, given: 0 }), want);
        }
    }
}
