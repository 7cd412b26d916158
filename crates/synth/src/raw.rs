//! Hand-rolled builders for what etherparse's `PacketBuilder` cannot express: IPv4 fragments, IPv6
//! with extension headers and fragment headers, TCP segments with any flag combination over IPv6,
//! SCTP (CRC32c), UDP-Lite, GRE with keys / PPTP (version 1) headers, and neighbour discovery.
//!
//! Contract: every builder returns complete, correctly checksummed bytes (RFC 1071 sums over the
//! RFC 768 / RFC 8200 §8.1 pseudo-headers, UDP checksum 0 sent as 0xffff; UDP-Lite over the covered
//! bytes with the full length in the pseudo-header, RFC 3828; SCTP CRC32c stored in the byte order of
//! RFC 9260 appendix A, i.e. the reflected CRC's little-endian bytes). Frames keep the crate's link
//! conventions: the caller gives the MACs, frames not sent by our host are padded to 60 bytes.

use crate::packet::{Ip4, ETH_LEN};
use crate::SynthError;

/// RFC 1071 one's-complement sum of `data` added to `acc` (64-bit accumulator, folded later).
pub(crate) fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        if let [a, b] = w {
            acc += u64::from(u16::from_be_bytes([*a, *b]));
        }
    }
    if let [b] = it.remainder() {
        acc += u64::from(*b) << 8;
    }
    acc
}

/// Folds and complements an accumulated sum.
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Network or transport addresses of a pseudo-header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pseudo {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

impl Pseudo {
    /// Sum of the pseudo-header for upper-layer protocol `proto` and upper-layer length `len`.
    fn acc(&self, proto: u8, len: usize) -> u64 {
        let (a, b) = match self {
            Pseudo::V4(s, d) => (sum(0, s), sum(0, d)),
            Pseudo::V6(s, d) => (sum(0, s), sum(0, d)),
        };
        a + b + u64::from(proto) + len as u64
    }
}

/// Checksum of an upper-layer message whose checksum field is zero.
pub(crate) fn l4_checksum(p: Pseudo, proto: u8, l4: &[u8]) -> u16 {
    fold(sum(p.acc(proto, l4.len()), l4))
}

fn put_u16(v: &mut [u8], at: usize, x: u16) {
    if let Some(d) = v.get_mut(at..at + 2) {
        d.copy_from_slice(&x.to_be_bytes());
    }
}

/// A UDP datagram with its checksum (0 is sent as 0xffff, RFC 768).
pub(crate) fn udp_bytes(p: Pseudo, sport: u16, dport: u16, payload: &[u8]) -> Result<Vec<u8>, SynthError> {
    let len = u16::try_from(8 + payload.len()).map_err(|_| SynthError::Build("udp too long".into()))?;
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    let c = match l4_checksum(p, 17, &v) {
        0 => 0xffff,
        c => c,
    };
    put_u16(&mut v, 6, c);
    Ok(v)
}

/// A UDP-Lite datagram (RFC 3828, protocol 136): `coverage` 0 covers the whole datagram, otherwise
/// the first `coverage` bytes (≥ 8). The checksum is mandatory (never 0).
pub(crate) fn udplite_bytes(
    p: Pseudo,
    sport: u16,
    dport: u16,
    coverage: u16,
    payload: &[u8],
) -> Result<Vec<u8>, SynthError> {
    let total = 8 + payload.len();
    if coverage != 0 && (coverage < 8 || usize::from(coverage) > total) {
        return Err(SynthError::Build("udp-lite coverage".into()));
    }
    let mut v = Vec::with_capacity(total);
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&coverage.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    let covered = if coverage == 0 { total } else { usize::from(coverage) };
    // Pseudo-header length is the whole datagram; the sum covers `covered` bytes only.
    let c = fold(sum(p.acc(136, total), v.get(..covered).unwrap_or_default()));
    put_u16(&mut v, 6, if c == 0 { 0xffff } else { c });
    Ok(v)
}

/// An ICMPv6 message (RFC 4443): type, code, the 4 bytes after the checksum, then `body`.
pub(crate) fn icmpv6_bytes(
    src: [u8; 16],
    dst: [u8; 16],
    ty: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&[ty, code, 0, 0]);
    v.extend_from_slice(&rest);
    v.extend_from_slice(body);
    let c = l4_checksum(Pseudo::V6(src, dst), 58, &v);
    put_u16(&mut v, 2, c);
    v
}

/// An ICMPv4 message: type, code, the 4 bytes after the checksum, then `body`.
pub(crate) fn icmpv4_bytes(ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + body.len());
    v.extend_from_slice(&[ty, code, 0, 0]);
    v.extend_from_slice(&rest);
    v.extend_from_slice(body);
    let c = fold(sum(0, &v));
    put_u16(&mut v, 2, c);
    v
}

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78), as SCTP uses it (RFC 9260 appendix A).
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

/// One SCTP chunk: type, flags, value; padded to a multiple of 4 (padding not counted in the length).
pub(crate) fn sctp_chunk(ty: u8, flags: u8, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut v = Vec::with_capacity(len + 3);
    v.push(ty);
    v.push(flags);
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.extend_from_slice(value);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

/// An SCTP packet (common header + chunks) with its CRC32c.
pub(crate) fn sctp_bytes(sport: u16, dport: u16, vtag: u32, chunks: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + chunks.len());
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&vtag.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(chunks);
    let c = crc32c(&v);
    if let Some(d) = v.get_mut(8..12) {
        d.copy_from_slice(&c.to_le_bytes());
    }
    v
}

/// IPv4 fragment position: offset in 8-byte units and the more-fragments flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frag4 {
    pub offset8: u16,
    pub more: bool,
}

/// An Ethernet/IPv4 frame carrying `payload` as protocol `proto`, optionally as a fragment
/// (`frag`); the header is written by hand so fragment fields can be set.
pub(crate) fn ipv4_frame(
    ip: &Ip4,
    proto: u8,
    frag: Option<Frag4>,
    payload: &[u8],
) -> Result<Vec<u8>, SynthError> {
    let total = u16::try_from(20 + payload.len()).map_err(|_| SynthError::Build("ipv4 too long".into()))?;
    let (smac, dmac) = ip.macs();
    let mut v = Vec::with_capacity(ETH_LEN + usize::from(total));
    v.extend_from_slice(&dmac);
    v.extend_from_slice(&smac);
    v.extend_from_slice(&[0x08, 0x00]);
    let mut fl = if ip.df { 0x4000u16 } else { 0 };
    if let Some(f) = frag {
        fl |= (f.offset8 & 0x1fff) | if f.more { 0x2000 } else { 0 };
    }
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&[0x45, ip.tos]);
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&ip.id.to_be_bytes());
    h.extend_from_slice(&fl.to_be_bytes());
    h.extend_from_slice(&[ip.ttl, proto, 0, 0]);
    h.extend_from_slice(&ip.src);
    h.extend_from_slice(&ip.dst);
    let c = fold(sum(0, &h));
    put_u16(&mut h, 10, c);
    v.extend_from_slice(&h);
    v.extend_from_slice(payload);
    Ok(ip.finish(v))
}

/// An IPv6 extension header (RFC 8200 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ext {
    /// Hop-by-hop options (0) with one PadN option (8 bytes; harmless to every node).
    HopByHop,
    /// Destination options (60) with one PadN option (8 bytes).
    DestOpts,
    /// Fragment header (44): offset in 8-byte units, more-fragments flag, identification.
    Fragment { offset8: u16, more: bool, id: u32 },
}

impl Ext {
    fn number(&self) -> u8 {
        match self {
            Ext::HopByHop => 0,
            Ext::DestOpts => 60,
            Ext::Fragment { .. } => 44,
        }
    }

    fn write(&self, next: u8, v: &mut Vec<u8>) {
        match self {
            // PadN (type 1) of 4 zero bytes fills the 8-byte header.
            Ext::HopByHop | Ext::DestOpts => v.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]),
            Ext::Fragment { offset8, more, id } => {
                let fo = ((offset8 & 0x1fff) << 3) | u16::from(*more);
                v.extend_from_slice(&[next, 0]);
                v.extend_from_slice(&fo.to_be_bytes());
                v.extend_from_slice(&id.to_be_bytes());
            }
        }
    }
}

/// IPv6 header fields the generator chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ip6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub hop: u8,
    pub tclass: u8,
    /// 20-bit flow label.
    pub flow: u32,
}

/// The IPv6 datagram (header, extension headers in the given order, then `l4` as protocol
/// `proto`), without link header.
pub(crate) fn ipv6_datagram(ip: &Ip6, exts: &[Ext], proto: u8, l4: &[u8]) -> Result<Vec<u8>, SynthError> {
    let plen =
        u16::try_from(exts.len() * 8 + l4.len()).map_err(|_| SynthError::Build("ipv6 too long".into()))?;
    let mut v = Vec::with_capacity(40 + usize::from(plen));
    let first = u32::from(0x60u8) << 24 | u32::from(ip.tclass) << 20 | (ip.flow & 0xf_ffff);
    v.extend_from_slice(&first.to_be_bytes());
    v.extend_from_slice(&plen.to_be_bytes());
    v.push(exts.first().map_or(proto, Ext::number));
    v.push(ip.hop);
    v.extend_from_slice(&ip.src);
    v.extend_from_slice(&ip.dst);
    for (i, e) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map_or(proto, Ext::number);
        e.write(next, &mut v);
    }
    v.extend_from_slice(l4);
    Ok(v)
}

/// Wraps an IP datagram of `ethertype` in an Ethernet frame, padded unless `outbound`.
pub(crate) fn eth_frame(eth: ([u8; 6], [u8; 6]), ethertype: u16, datagram: &[u8], outbound: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(ETH_LEN + datagram.len().max(46));
    v.extend_from_slice(&eth.1);
    v.extend_from_slice(&eth.0);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(datagram);
    if !outbound && v.len() < 60 {
        v.resize(60, 0);
    }
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_values() {
        // "123456789" (the CRC catalogue check value) and 32 zero bytes (RFC 3720 B.4).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn sctp_checksum_is_stored_little_endian_and_verifies() {
        let chunk = sctp_chunk(11, 0, &[]);
        let p = sctp_bytes(5060, 40000, 0x0102_0304, &chunk);
        assert_eq!(p.len(), 16);
        let stored = u32::from_le_bytes(p[8..12].try_into().unwrap());
        let mut z = p.clone();
        z[8..12].fill(0);
        assert_eq!(stored, crc32c(&z));
        // Chunk padding: a 5-byte value is padded to 12 bytes, length says 9.
        let c = sctp_chunk(0, 3, &[1, 2, 3, 4, 5]);
        assert_eq!((c.len(), u16::from_be_bytes([c[2], c[3]])), (12, 9));
    }

    #[test]
    fn udp_and_udplite_checksums_verify() {
        let p = Pseudo::V4([192, 0, 2, 10], [198, 51, 100, 7]);
        let u = udp_bytes(p, 1, 2, b"hello").unwrap();
        assert_eq!(fold(sum(p.acc(17, u.len()), &u)), 0);
        let l = udplite_bytes(p, 1, 2, 8, b"payload not covered").unwrap();
        assert_eq!(fold(sum(p.acc(136, l.len()), &l[..8])), 0);
        assert!(udplite_bytes(p, 1, 2, 4, b"x").is_err());
        assert_ne!(u16::from_be_bytes([l[6], l[7]]), 0);
    }

    #[test]
    fn ipv6_extension_chain_links_next_headers() {
        let ip = Ip6 { src: [1; 16], dst: [2; 16], hop: 64, tclass: 0, flow: 0x12345 };
        let d = ipv6_datagram(
            &ip,
            &[Ext::HopByHop, Ext::Fragment { offset8: 3, more: true, id: 7 }, Ext::DestOpts],
            17,
            &[0; 8],
        )
        .unwrap();
        assert_eq!(d[6], 0);
        assert_eq!(d[40], 44);
        assert_eq!(d[48], 60);
        assert_eq!(u16::from_be_bytes([d[50], d[51]]), (3 << 3) | 1);
        assert_eq!(d[56], 17);
        assert_eq!(u16::from_be_bytes([d[4], d[5]]), 24 + 8);
        assert_eq!(u32::from_be_bytes([d[0], d[1], d[2], d[3]]) & 0xf_ffff, 0x12345);
    }

    #[test]
    fn ipv4_fragment_fields_and_header_checksum() {
        let ip = Ip4 { src: [198, 51, 100, 7], dst: [192, 0, 2, 10], ttl: 55, id: 0x4242, df: false, tos: 0 };
        let f = ipv4_frame(&ip, 17, Some(Frag4 { offset8: 185, more: true }), &[0u8; 1480]).unwrap();
        assert_eq!(u16::from_be_bytes([f[20], f[21]]), 0x2000 | 185);
        assert_eq!(fold(sum(0, &f[14..34])), 0);
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::NetSlice::Ipv4(v4)) = &p.net else { panic!() };
        assert!(v4.header().more_fragments());
        assert_eq!(v4.header().fragments_offset().value(), 185);
    }
}
