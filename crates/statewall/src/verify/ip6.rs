//! IPv6 header walking and fragment reassembly, as far as verify needs them to recognise a packet it sent
//! among the ones the kernel let out. Pure: bytes in, views out.
//!
//! Contract:
//! - [`header`] reads the fixed header (RFC 8200 section 3) and cuts the payload at the payload length (a
//!   jumbogram's zero length is not followed).
//! - [`walk`] follows the extension headers the kernel's input path walks itself (hop-by-hop, routing,
//!   destination options, AH) to the upper-layer header, or stops at a fragment header. An atomic fragment
//!   (offset 0, no M flag) is walked through: the kernel treats it as an unfragmented packet (RFC 6946).
//! - [`reassemble`] joins the fragmentable parts of one datagram the way the kernel accepts them (RFC 8200
//!   section 4.5, RFC 5722): contiguous from 0, identical duplicates ignored, any other overlap or a fragment
//!   past the end or the 65535-byte payload limit kills the datagram, non-final fragments a multiple of 8.

use std::net::Ipv6Addr;

/// Extension header numbers walked (RFC 8200 section 4).
pub const HOP_BY_HOP: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const AUTH: u8 = 51;
pub const DEST_OPTS: u8 = 60;
/// The largest payload an IPv6 header (without a jumbo option) can describe.
pub const MAX_PAYLOAD: usize = 65_535;

/// The fixed header of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip6<'a> {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The payload length field.
    pub payload_len: usize,
    pub next: u8,
    /// The bytes after the fixed header, at most `payload_len` of them.
    pub payload: &'a [u8],
}

/// The fixed header, or `None` if `ip` is not a whole IPv6 header.
pub fn header(ip: &[u8]) -> Option<Ip6<'_>> {
    if ip.first()? >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]));
    let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
    let rest = ip.get(40..)?;
    Some(Ip6 {
        src: Ipv6Addr::from(src),
        dst: Ipv6Addr::from(dst),
        payload_len,
        next: *ip.get(6)?,
        payload: rest.get(..payload_len).unwrap_or(rest),
    })
}

/// Where the header chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upper<'a> {
    /// The upper-layer protocol (or an extension header verify does not walk) and its bytes.
    Whole { proto: u8, l4: &'a [u8] },
    /// A (non-atomic) fragment: its header fields and the fragmentable part it carries.
    Fragment { id: u32, offset: usize, more: bool, next: u8, data: &'a [u8] },
}

/// Walks the extension headers starting with `next` over `bytes`; `None` if one is cut short.
pub fn walk(mut next: u8, mut bytes: &[u8]) -> Option<Upper<'_>> {
    loop {
        let len = match next {
            HOP_BY_HOP | ROUTING | DEST_OPTS => (usize::from(*bytes.get(1)?) + 1) * 8,
            AUTH => (usize::from(*bytes.get(1)?) + 2) * 4,
            FRAGMENT => {
                let nh = *bytes.first()?;
                let off = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]);
                let id = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
                let data = bytes.get(8..)?;
                let (offset, more) = (usize::from(off >> 3) * 8, off & 1 == 1);
                if offset == 0 && !more {
                    // Atomic fragment: processed as a whole packet.
                    next = nh;
                    bytes = data;
                    continue;
                }
                return Some(Upper::Fragment { id, offset, more, next: nh, data });
            }
            _ => return Some(Upper::Whole { proto: next, l4: bytes }),
        };
        let nh = *bytes.first()?;
        bytes = bytes.get(len..)?;
        next = nh;
    }
}

/// One fragment of a datagram: offset of its data in the fragmentable part, the M flag, the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub offset: usize,
    pub more: bool,
    pub data: Vec<u8>,
}

/// The fragmentable part of a datagram from its pieces (in any order), or `None` while it is incomplete or
/// when the kernel would discard it.
pub fn reassemble(pieces: &[Piece]) -> Option<Vec<u8>> {
    let mut sorted: Vec<&Piece> = pieces.iter().collect();
    sorted.sort_by_key(|p| (p.offset, p.data.len()));
    sorted.dedup_by(|a, b| a.offset == b.offset && a.data == b.data && a.more == b.more);
    let mut out = Vec::new();
    let mut done = false;
    for p in sorted {
        let end = p.offset.checked_add(p.data.len())?;
        if done || p.offset != out.len() || end > MAX_PAYLOAD || (p.more && p.data.len() % 8 != 0) {
            return None;
        }
        out.extend_from_slice(&p.data);
        done = !p.more;
    }
    done.then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;

    pub const A: &str = "2001:db8:1::5";
    pub const B: &str = "2001:db8:2::7";

    /// An IPv6 packet: fixed header (hop limit 64), `next`, then `rest` as the payload.
    pub fn ip6(src: &str, dst: &str, next: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(rest);
        p
    }

    /// A fragment header.
    pub fn frag(next: u8, offset: usize, more: bool, id: u32) -> Vec<u8> {
        let off = ((offset / 8) as u16) << 3 | u16::from(more);
        let mut h = vec![next, 0];
        h.extend_from_slice(&off.to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h
    }

    #[test]
    fn header_cuts_ethernet_padding_and_walks_options() {
        // Destination options (8 bytes) then UDP, with 6 bytes of link-layer padding behind.
        let mut rest = vec![17, 0, 1, 4, 0, 0, 0, 0];
        rest.extend_from_slice(&[0x10, 0x00, 0x00, 0x35, 0, 10, 0, 0, b'h', b'i']);
        let mut p = ip6(A, B, DEST_OPTS, &rest);
        p.extend_from_slice(&[0; 6]);
        let h = header(&p).unwrap();
        assert_eq!((h.src.to_string().as_str(), h.payload.len()), (A, 18));
        let Some(Upper::Whole { proto: 17, l4 }) = walk(h.next, h.payload) else { panic!() };
        assert_eq!(l4.len(), 10);
        assert_eq!(header(&p[..39]), None, "shorter than the fixed header");
        assert_eq!(walk(DEST_OPTS, &[17, 1, 0, 0]), None, "options cut short");
    }

    #[test]
    fn fragments_and_atomic_fragments() {
        let mut f = frag(17, 16, true, 0xabcd);
        f.extend_from_slice(&[7; 8]);
        assert_eq!(
            walk(FRAGMENT, &f),
            Some(Upper::Fragment { id: 0xabcd, offset: 16, more: true, next: 17, data: &[7; 8][..] })
        );
        let mut atomic = frag(58, 0, false, 9);
        atomic.extend_from_slice(&[128, 0, 0, 0]);
        assert_eq!(walk(FRAGMENT, &atomic), Some(Upper::Whole { proto: 58, l4: &[128, 0, 0, 0][..] }));
    }

    #[test]
    fn reassembly_as_the_kernel_accepts_it() {
        let p = |offset: usize, more: bool, data: &[u8]| Piece { offset, more, data: data.to_vec() };
        let whole = reassemble(&[p(8, false, &[2; 4]), p(0, true, &[1; 8])]).unwrap();
        assert_eq!(whole, [[1u8; 8].as_slice(), &[2; 4]].concat());
        assert!(reassemble(&[p(0, true, &[1; 8]), p(0, true, &[1; 8]), p(8, false, &[2])]).is_some(), "dup");
        assert_eq!(reassemble(&[p(0, true, &[1; 8])]), None, "no last fragment");
        assert_eq!(reassemble(&[p(0, true, &[1; 16]), p(8, false, &[2; 8])]), None, "overlap (RFC 5722)");
        assert_eq!(reassemble(&[p(0, true, &[1; 8]), p(16, false, &[2])]), None, "hole");
        assert_eq!(reassemble(&[p(0, true, &[1; 7]), p(7, false, &[2])]), None, "not a multiple of 8");
        assert_eq!(reassemble(&[p(0, true, &[1; 8]), p(65_528, false, &[2; 8])]), None, "past 65535");
    }
}
