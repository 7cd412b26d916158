//! Classic pcap output (microsecond timestamps, LINKTYPE_ETHERNET).
//!
//! Contract: writes the 24-byte global header (magic 0xa1b2c3d4 in little-endian byte order,
//! version 2.4, snaplen 262144, linktype 1) and one record per frame with the timestamp split into
//! seconds and microseconds (truncated) and caplen = len = frame length.

use crate::Frame;
use std::io::Write;

const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 262_144;

/// Writes `frames` as a microsecond-resolution pcap file.
pub fn write_pcap(frames: &[Frame], out: impl Write) -> std::io::Result<()> {
    write_pcap_stream(frames.iter().map(Ok::<_, std::convert::Infallible>), out).map(|_| ())
}

/// Writes frames as they come (a generator's output, never held whole); returns how many were
/// written. A generator error stops the file there and is returned as an I/O error.
pub fn write_pcap_stream<F: std::borrow::Borrow<Frame>, E: std::fmt::Display>(
    frames: impl IntoIterator<Item = Result<F, E>>,
    mut out: impl Write,
) -> std::io::Result<u64> {
    let mut hdr = Vec::with_capacity(24);
    hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    hdr.extend_from_slice(&2u16.to_le_bytes());
    hdr.extend_from_slice(&4u16.to_le_bytes());
    hdr.extend_from_slice(&0i32.to_le_bytes());
    hdr.extend_from_slice(&0u32.to_le_bytes());
    hdr.extend_from_slice(&SNAPLEN.to_le_bytes());
    hdr.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    out.write_all(&hdr)?;
    let mut n = 0u64;
    for f in frames {
        let f = f.map_err(|e| std::io::Error::other(e.to_string()))?;
        let f = f.borrow();
        n += 1;
        let ns = f.ts.as_nanos();
        let secs = u32::try_from(ns / 1_000_000_000)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "timestamp beyond 2106"))?;
        let usecs = ((ns % 1_000_000_000) / 1_000) as u32;
        let len = u32::try_from(f.data.len())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
        let mut rec = Vec::with_capacity(16);
        rec.extend_from_slice(&secs.to_le_bytes());
        rec.extend_from_slice(&usecs.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        out.write_all(&rec)?;
        out.write_all(&f.data)?;
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use wire::Time;

    #[test]
    fn header_and_record_layout() {
        let frames = vec![Frame { ts: Time(1_767_225_600_123_456_789), data: vec![0xaa; 60] }];
        let mut out = Vec::new();
        write_pcap(&frames, &mut out).unwrap();
        assert_eq!(out.len(), 24 + 16 + 60);
        assert_eq!(&out[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(out[20..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(out[24..28].try_into().unwrap()), 1_767_225_600);
        assert_eq!(u32::from_le_bytes(out[28..32].try_into().unwrap()), 123_456);
        assert_eq!(u32::from_le_bytes(out[32..36].try_into().unwrap()), 60);
        assert_eq!(u32::from_le_bytes(out[36..40].try_into().unwrap()), 60);
    }

    #[test]
    fn empty_capture_is_just_the_header() {
        let mut out = Vec::new();
        write_pcap(&[], &mut out).unwrap();
        assert_eq!(out.len(), 24);
    }
}
