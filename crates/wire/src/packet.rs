//! Our own view of an IP datagram: the fields conntrack and the rules need, decoded once.
//!
//! [`decode_ip`] takes the bytes of an IP datagram (IPv4 or IPv6, starting at the IP header, as far as
//! captured) and returns a [`Packet`] borrowing them. It never panics. A packet whose L3 header is
//! unusable is a [`DecodeError`]; a packet whose L3 header is fine but whose L4 header is short or
//! inconsistent still decodes, with `l4 = L4::Malformed` (conntrack will judge it INVALID like the
//! kernel does, and the rules can still match on L3 fields).

use std::net::IpAddr;

/// A decoded IP datagram.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    /// The datagram bytes from the IP header on (as captured; may be shorter than `ip.total_len`
    /// when the capture was snaplen-truncated).
    pub bytes: &'a [u8],
    pub ip: IpHeader,
    pub l4: L4<'a>,
}

/// L3 header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpHeader {
    /// 4 or 6.
    pub version: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The transport protocol number (IPv6: after walking extension headers).
    pub proto: u8,
    /// TTL / hop limit.
    pub ttl: u8,
    /// TOS / traffic class byte.
    pub tos: u8,
    /// IPv4 identification (IPv6: fragment header identification, else 0).
    pub id: u32,
    /// Don't-fragment bit (IPv4).
    pub df: bool,
    /// `Some` when this datagram is a fragment (MF set or offset non-zero).
    pub frag: Option<Fragment>,
    /// Length of the IP header(s) in bytes (IPv4 IHL*4; IPv6 40 + extension headers walked).
    pub header_len: usize,
    /// The datagram length claimed by the header (IPv4 total length; IPv6 40 + payload length).
    /// This is the "L3 length" the kernel accounts and `-m length` matches.
    pub total_len: usize,
}

/// Fragment information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of this fragment's data in bytes.
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
}

impl Fragment {
    /// A non-first fragment carries no L4 header.
    pub fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// TCP flags byte (CWR ECE URG ACK PSH RST SYN FIN, low bit FIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
    pub fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
    pub fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    pub fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    pub fn rst(self) -> bool {
        self.has(Self::RST)
    }
    pub fn ack(self) -> bool {
        self.has(Self::ACK)
    }
}

/// Transport layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4<'a> {
    Tcp(TcpHeader<'a>),
    Udp(UdpHeader),
    /// ICMPv4 (proto 1) or ICMPv6 (proto 58); `ip.version` tells which.
    Icmp(IcmpHeader<'a>),
    /// A protocol we have no parser for (GRE, ESP, ...): the bytes after the IP header.
    Other(&'a [u8]),
    /// A non-first fragment: no transport header here.
    Fragment,
    /// The transport header is short or inconsistent (truncated capture, bad data offset,
    /// UDP length out of range...). `reason` names the defect.
    Malformed {
        reason: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpHeader<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
    pub checksum: u16,
    /// Header length in bytes (doff * 4), validated 20..=60 and within the datagram.
    pub header_len: usize,
    /// Raw option bytes (header_len - 20 bytes).
    pub options: &'a [u8],
    /// Payload length computed as the kernel does: ip.total_len - ip.header_len - header_len.
    pub payload_len: usize,
    /// Payload bytes actually captured (may be shorter than `payload_len`).
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpHeader {
    pub sport: u16,
    pub dport: u16,
    /// The UDP length field.
    pub length: u16,
    pub checksum: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpHeader<'a> {
    pub icmp_type: u8,
    pub code: u8,
    pub checksum: u16,
    /// Bytes 4..8 of the ICMP header (echo: id, seq; frag-needed: unused + MTU).
    pub rest: [u8; 4],
    /// Everything after the 8-byte header (for errors: the quoted datagram).
    pub payload: &'a [u8],
}

impl IcmpHeader<'_> {
    /// Identifier of echo/timestamp/info messages (bytes 4..6, network order).
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.rest[0], self.rest[1]])
    }
    pub fn seq(&self) -> u16 {
        u16::from_be_bytes([self.rest[2], self.rest[3]])
    }
}

/// Why an IP datagram could not be decoded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown IP version {0}")]
    BadVersion(u8),
    #[error("IPv4 header truncated or invalid: {0}")]
    BadIpv4(&'static str),
    #[error("IPv6 header truncated or invalid: {0}")]
    BadIpv6(&'static str),
    #[error("unsupported link type {0}")]
    UnsupportedLinkType(u32),
    #[error("link-layer header truncated or invalid: {0}")]
    BadLink(&'static str),
    #[error("not an IP packet (ethertype/protocol {0:#06x})")]
    NotIp(u32),
}

impl Packet<'_> {
    pub fn is_v4(&self) -> bool {
        self.ip.version == 4
    }
    /// An ICMP error message (IPv4 types 3, 4, 5, 11, 12; ICMPv6 types below 128): the kind that quotes a
    /// datagram, that conntrack looks up as RELATED and that no stack answers with another error.
    pub fn is_icmp_error(&self) -> bool {
        match &self.l4 {
            L4::Icmp(i) if self.is_v4() => matches!(i.icmp_type, 3 | 4 | 5 | 11 | 12),
            L4::Icmp(i) => i.icmp_type < 128,
            _ => false,
        }
    }

    /// Source and destination ports for TCP/UDP.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match &self.l4 {
            L4::Tcp(t) => Some((t.sport, t.dport)),
            L4::Udp(u) => Some((u.sport, u.dport)),
            _ => None,
        }
    }
}

/// Decode an IP datagram (IPv4 or IPv6 by the version nibble).
///
/// Contract:
/// - IPv4: version 4, IHL >= 5, the whole IP header captured and `total_len >= header_len`, else
///   [`DecodeError::BadIpv4`]. Bytes captured beyond `total_len` (Ethernet padding) are cut off, as
///   `ip_rcv_core` trims the skb to the IP total length. Fewer captured bytes than `total_len`
///   (snaplen truncation) is accepted: what is there is decoded.
/// - IPv6: the fixed header and every extension header (hop-by-hop, routing, fragment, destination
///   options, AH) up to the transport header must be captured and lie within `40 + payload_length`,
///   else [`DecodeError::BadIpv6`]. A payload length of 0 with a hop-by-hop header (jumbogram) is
///   rejected; a payload length of 0 otherwise is simply an empty datagram.
/// - The walk stops at a non-first IPv6 fragment (like `ipv6_skip_exthdr`), leaving `proto` as the
///   fragment header's next header.
/// - L4 problems never fail the decode: they give [`L4::Malformed`].
pub fn decode_ip(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
    // A well-formed IPv4 TCP datagram (nearly every packet) is decoded in one straight line; everything
    // else out of line.
    match decode_v4_plain(bytes, PROTO_TCP, |rest, claimed| tcp_header_fast(rest, claimed).map(L4::Tcp)) {
        Some(p) => Ok(p),
        None => decode_not_tcp(bytes),
    }
}

/// The addresses, protocol and ports of an IPv4 TCP or UDP datagram, read at their fixed places without
/// decoding or validating anything else: a hint (e.g. to warm the memory a lookup will read), not a
/// decode. `None` for other datagrams, fragments after the first, and headers not captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowPeek {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// See [`FlowPeek`].
#[inline]
pub fn peek_flow4(bytes: &[u8]) -> Option<FlowPeek> {
    let (hdr, _) = bytes.split_first_chunk::<20>()?;
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    let proto = hdr[9];
    let frag_offset = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff;
    if hdr[0] >> 4 != 4 || ihl < 20 || frag_offset != 0 || !(proto == PROTO_TCP || proto == PROTO_UDP) {
        return None;
    }
    let (ports, _) = bytes.get(ihl..)?.split_first_chunk::<4>()?;
    Some(FlowPeek {
        src: u32::from_be_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]),
        dst: u32::from_be_bytes([hdr[16], hdr[17], hdr[18], hdr[19]]),
        proto,
        sport: u16::from_be_bytes([ports[0], ports[1]]),
        dport: u16::from_be_bytes([ports[2], ports[3]]),
    })
}

/// [`decode_ip`] of anything but a well-formed IPv4 TCP datagram: well-formed IPv4 UDP / ICMP and IPv6
/// TCP / UDP / ICMPv6 datagrams without extension headers in one straight line each (one function each,
/// so that none pays for the others), the rest (including every error) by the general path.
#[inline(never)]
fn decode_not_tcp(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
    match bytes.first().map(|b| b >> 4) {
        Some(4) => match bytes.get(9).copied() {
            Some(PROTO_UDP) => decode_v4_udp(bytes),
            Some(PROTO_ICMP) => decode_v4_icmp(bytes),
            _ => decode_general(bytes),
        },
        Some(6) => match bytes.get(6).copied() {
            Some(PROTO_TCP) => decode_v6_tcp(bytes),
            Some(PROTO_UDP) => decode_v6_udp(bytes),
            Some(PROTO_ICMPV6) => decode_v6_icmp(bytes),
            _ => decode_general(bytes),
        },
        _ => decode_general(bytes),
    }
}

#[inline(never)]
fn decode_v4_udp(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
    match decode_v4_plain(bytes, PROTO_UDP, |rest, claimed| udp_header_fast(rest, claimed).map(L4::Udp)) {
        Some(p) => Ok(p),
        None => decode_general(bytes),
    }
}

#[inline(never)]
fn decode_v4_icmp(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
    match decode_v4_plain(bytes, PROTO_ICMP, |rest, _| icmp_header_fast(rest).map(L4::Icmp)) {
        Some(p) => Ok(p),
        None => decode_general(bytes),
    }
}

#[inline(never)]
fn decode_v6_tcp(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
    match decode_v6_plain(bytes, PROTO_TCP, |rest, claimed| tcp_header_fast(rest, claimed).map(L4::Tcp)) {
        Some(p) => Ok(p),
        None => decode_general(bytes),
    }
}

#[inline(never)]
fn decode_v6_udp(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
    match decode_v6_plain(bytes, PROTO_UDP, |rest, claimed| udp_header_fast(rest, claimed).map(L4::Udp)) {
        Some(p) => Ok(p),
        None => decode_general(bytes),
    }
}

#[inline(never)]
fn decode_v6_icmp(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
    match decode_v6_plain(bytes, PROTO_ICMPV6, |rest, _| icmp_header_fast(rest).map(L4::Icmp)) {
        Some(p) => Ok(p),
        None => decode_general(bytes),
    }
}

/// [`decode_ip`] of an IPv6 datagram without extension headers (next header `next`, which must be a
/// transport protocol) whose transport header `l4` decodes without error. `None` for anything else (left
/// to [`decode_general`]).
#[inline(always)]
fn decode_v6_plain<'a>(
    bytes: &'a [u8],
    next: u8,
    l4: impl FnOnce(&'a [u8], usize) -> Option<L4<'a>>,
) -> Option<Packet<'a>> {
    let h = bytes.first_chunk::<40>()?;
    let [b0, b1, _, _, pl0, pl1, nh, hop_limit, ..] = *h;
    if b0 >> 4 != 6 || nh != next {
        return None;
    }
    let claimed = usize::from(u16::from_be_bytes([pl0, pl1]));
    let total_len = 40 + claimed;
    // Bytes beyond the payload length are not part of the datagram.
    let bytes = bytes.get(..total_len).unwrap_or(bytes);
    let l4 = l4(bytes.get(40..)?, claimed)?;
    let src = chunk::<16>(h, 8).copied().unwrap_or_default();
    let dst = chunk::<16>(h, 24).copied().unwrap_or_default();
    let ip = IpHeader {
        version: 6,
        src: IpAddr::from(src),
        dst: IpAddr::from(dst),
        proto: next,
        ttl: hop_limit,
        // The traffic class straddles bytes 0 and 1.
        tos: (b0 << 4) | (b1 >> 4),
        id: 0,
        df: false,
        frag: None,
        header_len: 40,
        total_len,
    };
    Some(Packet { bytes, ip, l4 })
}

/// [`decode_ip`] of the common case: an unfragmented IPv4 datagram without IP options, of protocol
/// `proto`, whose transport header `l4` decodes without error (given the bytes after the IP header and
/// the length the IP header claims for them). `None` for anything else (left to [`decode_general`]).
#[inline(always)]
fn decode_v4_plain<'a>(
    bytes: &'a [u8],
    proto: u8,
    l4: impl FnOnce(&'a [u8], usize) -> Option<L4<'a>>,
) -> Option<Packet<'a>> {
    let h = bytes.first_chunk::<20>()?;
    let [b0, tos, tl0, tl1, id0, id1, fl0, fl1, ttl, p, _, _, ..] = *h;
    let frag_field = u16::from_be_bytes([fl0, fl1]);
    // Version 4, IHL 5; neither MF nor a fragment offset.
    if b0 != 0x45 || p != proto || frag_field & 0x3fff != 0 {
        return None;
    }
    let total_len = usize::from(u16::from_be_bytes([tl0, tl1]));
    let claimed = total_len.checked_sub(20)?;
    // Ethernet padding beyond the datagram is not part of it.
    let bytes = bytes.get(..total_len).unwrap_or(bytes);
    let l4 = l4(bytes.get(20..)?, claimed)?;
    let src = chunk::<4>(h, 12).copied().unwrap_or_default();
    let dst = chunk::<4>(h, 16).copied().unwrap_or_default();
    let ip = IpHeader {
        version: 4,
        src: IpAddr::from(src),
        dst: IpAddr::from(dst),
        proto,
        ttl,
        tos,
        id: u32::from(u16::from_be_bytes([id0, id1])),
        df: frag_field & 0x4000 != 0,
        frag: None,
        header_len: 20,
        total_len,
    };
    Some(Packet { bytes, ip, l4 })
}

/// [`decode_ip`] of anything.
#[inline(never)]
fn decode_general(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let first = *bytes.first().ok_or(DecodeError::Empty)?;
    let (ip, bytes) = match first >> 4 {
        4 => parse_v4(bytes, Mode::Strict)?,
        6 => parse_v6(bytes, Mode::Strict)?,
        v => return Err(DecodeError::BadVersion(v)),
    };
    let rest = bytes.get(ip.header_len..).unwrap_or(&[]);
    let l4 = decode_l4(&ip, rest);
    Ok(Packet { bytes, ip, l4 })
}

/// A datagram quoted inside an ICMP / ICMPv6 error: usually the IP header plus the first 8 bytes of
/// the transport header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted<'a> {
    /// The quoted IP header. `total_len` is the original datagram's claim and usually exceeds what
    /// is quoted.
    pub ip: IpHeader,
    /// The bytes after the IP header(s), however few.
    pub l4: &'a [u8],
}

/// Lenient decode of a quoted datagram (ICMP error payload).
///
/// Only the IP header (and for IPv6 the extension headers) must be present; `total_len` is not
/// compared with the bytes present, except that bytes beyond a plausible `total_len` are cut off.
pub fn decode_quoted(bytes: &[u8]) -> Result<Quoted<'_>, DecodeError> {
    let first = *bytes.first().ok_or(DecodeError::Empty)?;
    let (ip, bytes) = match first >> 4 {
        4 => parse_v4(bytes, Mode::Lenient)?,
        6 => parse_v6(bytes, Mode::Lenient)?,
        v => return Err(DecodeError::BadVersion(v)),
    };
    let l4 = bytes.get(ip.header_len..).unwrap_or(&[]);
    Ok(Quoted { ip, l4 })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A datagram as received: lengths are checked against the header claims.
    Strict,
    /// A quoted datagram: only the headers need to be present.
    Lenient,
}

pub(crate) const PROTO_HOPOPTS: u8 = 0;
pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_ROUTING: u8 = 43;
pub(crate) const PROTO_FRAGMENT: u8 = 44;
pub(crate) const PROTO_AH: u8 = 51;
pub(crate) const PROTO_ICMPV6: u8 = 58;
pub(crate) const PROTO_DSTOPTS: u8 = 60;

fn be16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_be_bytes(a))
}

fn byte(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

fn arr<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    let s = b.get(off..off.checked_add(N)?)?;
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    Some(a)
}

/// IPv4 header (RFC 791). Returns the header and the datagram bytes (cut to `total_len` if longer).
#[inline(always)]
fn parse_v4(bytes: &[u8], mode: Mode) -> Result<(IpHeader, &[u8]), DecodeError> {
    let Some(h) = bytes.first_chunk::<20>() else {
        return Err(DecodeError::BadIpv4("shorter than 20 bytes"));
    };
    let [b0, tos, tl0, tl1, id0, id1, fl0, fl1, ttl, proto, _, _, ..] = *h;
    let ihl = usize::from(b0 & 0x0f);
    if ihl < 5 {
        return Err(DecodeError::BadIpv4("IHL < 5"));
    }
    let header_len = ihl * 4;
    if bytes.len() < header_len {
        return Err(DecodeError::BadIpv4("options truncated"));
    }
    let total_len = usize::from(u16::from_be_bytes([tl0, tl1]));
    let bytes = if total_len < header_len {
        if mode == Mode::Strict {
            return Err(DecodeError::BadIpv4("total length < header length"));
        }
        bytes
    } else {
        // Ethernet padding beyond the datagram is not part of it.
        bytes.get(..total_len).unwrap_or(bytes)
    };
    let frag_field = u16::from_be_bytes([fl0, fl1]);
    let offset = (frag_field & 0x1fff).wrapping_mul(8);
    let more = frag_field & 0x2000 != 0;
    // Offsets 12..20 of the 20-byte header: the lookups cannot fail.
    let src = chunk::<4>(h, 12).copied().unwrap_or_default();
    let dst = chunk::<4>(h, 16).copied().unwrap_or_default();
    let ip = IpHeader {
        version: 4,
        src: IpAddr::from(src),
        dst: IpAddr::from(dst),
        proto,
        ttl,
        tos,
        id: u32::from(u16::from_be_bytes([id0, id1])),
        df: frag_field & 0x4000 != 0,
        frag: (more || offset != 0).then_some(Fragment { offset, more }),
        header_len,
        total_len,
    };
    Ok((ip, bytes))
}

/// IPv6 header (RFC 8200) plus the extension-header walk (as `ipv6_skip_exthdr` does it).
fn parse_v6(bytes: &[u8], mode: Mode) -> Result<(IpHeader, &[u8]), DecodeError> {
    if bytes.len() < 40 {
        return Err(DecodeError::BadIpv6("shorter than 40 bytes"));
    }
    let payload_len = usize::from(be16(bytes, 4).ok_or(DecodeError::BadIpv6("truncated"))?);
    let total_len = 40 + payload_len;
    let mut next = byte(bytes, 6);
    if payload_len == 0 && next == PROTO_HOPOPTS && mode == Mode::Strict {
        return Err(DecodeError::BadIpv6("jumbogram (payload length 0) unsupported"));
    }
    let bytes = match mode {
        Mode::Strict => bytes.get(..total_len).unwrap_or(bytes),
        Mode::Lenient => bytes.get(..total_len.max(40)).unwrap_or(bytes),
    };
    // The walk must stay inside the datagram (strict) or inside what is present (lenient).
    let limit = match mode {
        Mode::Strict => total_len,
        Mode::Lenient => bytes.len(),
    };
    let tc_hi = byte(bytes, 0) & 0x0f;
    let tc_lo = byte(bytes, 1) >> 4;
    let src: [u8; 16] = arr(bytes, 8).ok_or(DecodeError::BadIpv6("truncated"))?;
    let dst: [u8; 16] = arr(bytes, 24).ok_or(DecodeError::BadIpv6("truncated"))?;
    let mut off = 40usize;
    let mut frag = None;
    let mut id = 0u32;
    // At most one extension header per 8 bytes of a 64 KiB datagram: the loop is bounded by `off`
    // strictly increasing within `limit`.
    loop {
        let hdr_len = match next {
            PROTO_HOPOPTS | PROTO_ROUTING | PROTO_DSTOPTS => {
                let l = bytes.get(off + 1).ok_or(DecodeError::BadIpv6("extension header truncated"))?;
                (usize::from(*l) + 1) * 8
            }
            PROTO_AH => {
                let l = bytes.get(off + 1).ok_or(DecodeError::BadIpv6("AH header truncated"))?;
                (usize::from(*l) + 2) * 4
            }
            PROTO_FRAGMENT => 8,
            _ => break,
        };
        let end = off + hdr_len;
        if end > limit {
            return Err(DecodeError::BadIpv6("extension header beyond datagram"));
        }
        if end > bytes.len() {
            return Err(DecodeError::BadIpv6("extension header truncated"));
        }
        let this = next;
        next = byte(bytes, off);
        if this == PROTO_FRAGMENT {
            let field = be16(bytes, off + 2).unwrap_or(0);
            let f = Fragment { offset: field & 0xfff8, more: field & 1 != 0 };
            id = be32(bytes, off + 4).unwrap_or(0);
            frag = Some(f);
            off = end;
            if !f.is_first() {
                // A non-first fragment: what follows is data, not a header.
                break;
            }
        } else {
            off = end;
        }
    }
    let ip = IpHeader {
        version: 6,
        src: IpAddr::from(src),
        dst: IpAddr::from(dst),
        proto: next,
        ttl: byte(bytes, 7),
        tos: (tc_hi << 4) | tc_lo,
        id,
        df: false,
        frag,
        header_len: off,
        total_len,
    };
    Ok((ip, bytes))
}

/// The transport header, from `rest` (the captured bytes after the IP header(s)).
#[inline(always)]
fn decode_l4<'a>(ip: &IpHeader, rest: &'a [u8]) -> L4<'a> {
    if ip.frag.is_some_and(|f| !f.is_first()) {
        return L4::Fragment;
    }
    // What the header claims follows the IP header(s) (the kernel's view of the L4 length).
    let claimed = ip.total_len.saturating_sub(ip.header_len);
    match (ip.proto, ip.version) {
        (PROTO_TCP, _) => decode_tcp(rest, claimed),
        (PROTO_UDP, _) => decode_udp(rest, claimed),
        (PROTO_ICMP, 4) | (PROTO_ICMPV6, 6) => decode_icmp(rest, claimed),
        _ => L4::Other(rest),
    }
}

/// `N` bytes of `b` from `off`, if there.
#[inline(always)]
fn chunk<const N: usize>(b: &[u8], off: usize) -> Option<&[u8; N]> {
    b.get(off..)?.first_chunk::<N>()
}

/// TCP (RFC 9293), with the `tcp_error` length checks: full 20-byte header, 20 <= doff*4, and the
/// header within the datagram.
#[inline(always)]
fn decode_tcp(rest: &[u8], claimed: usize) -> L4<'_> {
    match tcp_header(rest, claimed) {
        Ok(t) => L4::Tcp(t),
        Err(reason) => L4::Malformed { reason },
    }
}

/// [`decode_tcp`], with the defect as the error.
#[inline(always)]
fn tcp_header(rest: &[u8], claimed: usize) -> Result<TcpHeader<'_>, &'static str> {
    if claimed < 20 {
        return Err("TCP header beyond end of datagram");
    }
    let Some(h) = rest.first_chunk::<20>() else {
        return Err("TCP header not captured");
    };
    let [sp0, sp1, dp0, dp1, _, _, _, _, _, _, _, _, doff, flags, w0, w1, c0, c1, _, _] = *h;
    let header_len = usize::from(doff >> 4) * 4;
    if header_len < 20 {
        return Err("TCP data offset < 5");
    }
    if header_len > claimed {
        return Err("TCP data offset beyond end of datagram");
    }
    let Some((header, payload)) = rest.split_at_checked(header_len) else {
        return Err("TCP options not captured");
    };
    // Offsets 4..12 of the 20-byte header: the lookups cannot fail.
    let seq = chunk::<4>(h, 4).copied().unwrap_or_default();
    let ack = chunk::<4>(h, 8).copied().unwrap_or_default();
    Ok(TcpHeader {
        sport: u16::from_be_bytes([sp0, sp1]),
        dport: u16::from_be_bytes([dp0, dp1]),
        seq: u32::from_be_bytes(seq),
        ack: u32::from_be_bytes(ack),
        flags: TcpFlags(flags),
        window: u16::from_be_bytes([w0, w1]),
        checksum: u16::from_be_bytes([c0, c1]),
        header_len,
        options: header.get(20..).unwrap_or(&[]),
        payload_len: claimed - header_len,
        payload,
    })
}

/// [`tcp_header`] when it succeeds, `None` when it would not. Given `rest.len() <= claimed` (what is
/// captured after the IP header never exceeds what the header claims, once the datagram is cut to its
/// total length), a captured header of at least 20 bytes and at most `rest.len()` also satisfies
/// [`tcp_header`]'s checks against `claimed`, so those are not repeated.
#[inline(always)]
fn tcp_header_fast(rest: &[u8], claimed: usize) -> Option<TcpHeader<'_>> {
    let h = rest.first_chunk::<20>()?;
    let [sp0, sp1, dp0, dp1, _, _, _, _, _, _, _, _, doff, flags, w0, w1, c0, c1, _, _] = *h;
    let header_len = usize::from(doff >> 4) * 4;
    if header_len < 20 {
        return None;
    }
    let (header, payload) = rest.split_at_checked(header_len)?;
    let payload_len = claimed.checked_sub(header_len)?;
    let seq = chunk::<4>(h, 4).copied().unwrap_or_default();
    let ack = chunk::<4>(h, 8).copied().unwrap_or_default();
    Some(TcpHeader {
        sport: u16::from_be_bytes([sp0, sp1]),
        dport: u16::from_be_bytes([dp0, dp1]),
        seq: u32::from_be_bytes(seq),
        ack: u32::from_be_bytes(ack),
        flags: TcpFlags(flags),
        window: u16::from_be_bytes([w0, w1]),
        checksum: u16::from_be_bytes([c0, c1]),
        header_len,
        options: header.get(20..).unwrap_or(&[]),
        payload_len,
        payload,
    })
}

/// [`decode_udp`] when it gives [`L4::Udp`], `None` when it would not. Given `rest.len() <= claimed`
/// (see [`tcp_header_fast`]), a captured 8-byte header implies `claimed >= 8`.
#[inline(always)]
fn udp_header_fast(rest: &[u8], claimed: usize) -> Option<UdpHeader> {
    let &[sp0, sp1, dp0, dp1, l0, l1, c0, c1] = rest.first_chunk::<8>()?;
    let length = u16::from_be_bytes([l0, l1]);
    if length < 8 || usize::from(length) > claimed {
        return None;
    }
    Some(UdpHeader {
        sport: u16::from_be_bytes([sp0, sp1]),
        dport: u16::from_be_bytes([dp0, dp1]),
        length,
        checksum: u16::from_be_bytes([c0, c1]),
    })
}

/// [`decode_icmp`] when it gives [`L4::Icmp`], `None` when it would not. Given `rest.len() <= claimed`
/// (see [`tcp_header_fast`]), a captured 8-byte header implies `claimed >= 8`.
#[inline(always)]
fn icmp_header_fast(rest: &[u8]) -> Option<IcmpHeader<'_>> {
    let (&[icmp_type, code, c0, c1, r0, r1, r2, r3], payload) = rest.split_first_chunk::<8>()?;
    Some(IcmpHeader {
        icmp_type,
        code,
        checksum: u16::from_be_bytes([c0, c1]),
        rest: [r0, r1, r2, r3],
        payload,
    })
}

/// UDP (RFC 768) with the `udp_error` checks: 8-byte header, 8 <= length <= bytes after the IP header.
#[inline(always)]
fn decode_udp(rest: &[u8], claimed: usize) -> L4<'_> {
    if claimed < 8 {
        return L4::Malformed { reason: "UDP header beyond end of datagram" };
    }
    let Some(&[sp0, sp1, dp0, dp1, l0, l1, c0, c1]) = rest.first_chunk::<8>() else {
        return L4::Malformed { reason: "UDP header not captured" };
    };
    let length = u16::from_be_bytes([l0, l1]);
    if length < 8 {
        return L4::Malformed { reason: "UDP length < 8" };
    }
    if usize::from(length) > claimed {
        return L4::Malformed { reason: "UDP length beyond end of datagram" };
    }
    L4::Udp(UdpHeader {
        sport: u16::from_be_bytes([sp0, sp1]),
        dport: u16::from_be_bytes([dp0, dp1]),
        length,
        checksum: u16::from_be_bytes([c0, c1]),
    })
}

/// ICMP (RFC 792) / ICMPv6 (RFC 4443): the 8-byte header must be there.
#[inline(always)]
fn decode_icmp(rest: &[u8], claimed: usize) -> L4<'_> {
    if claimed < 8 {
        return L4::Malformed { reason: "ICMP header beyond end of datagram" };
    }
    let Some((&[icmp_type, code, c0, c1, r0, r1, r2, r3], payload)) = rest.split_first_chunk::<8>() else {
        return L4::Malformed { reason: "ICMP header not captured" };
    };
    L4::Icmp(IcmpHeader {
        icmp_type,
        code,
        checksum: u16::from_be_bytes([c0, c1]),
        rest: [r0, r1, r2, r3],
        payload,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    /// The decoder as first written (one bounds-checked field read at a time), kept to check the fast
    /// paths against. IPv6 header parsing is shared (unchanged).
    mod reference {
        use super::super::{arr, be16, be32, byte};
        use super::super::{
            parse_v6, DecodeError, Fragment, IcmpHeader, IpAddr, IpHeader, Mode, Packet, Quoted, TcpFlags,
            TcpHeader, UdpHeader, L4, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP,
        };

        pub(super) fn decode_ip(bytes: &[u8]) -> Result<Packet<'_>, DecodeError> {
            let first = *bytes.first().ok_or(DecodeError::Empty)?;
            let (ip, bytes) = match first >> 4 {
                4 => parse_v4(bytes, Mode::Strict)?,
                6 => parse_v6(bytes, Mode::Strict)?,
                v => return Err(DecodeError::BadVersion(v)),
            };
            let rest = bytes.get(ip.header_len..).unwrap_or(&[]);
            let l4 = decode_l4(&ip, rest);
            Ok(Packet { bytes, ip, l4 })
        }

        pub(super) fn decode_quoted(bytes: &[u8]) -> Result<Quoted<'_>, DecodeError> {
            let first = *bytes.first().ok_or(DecodeError::Empty)?;
            let (ip, bytes) = match first >> 4 {
                4 => parse_v4(bytes, Mode::Lenient)?,
                6 => parse_v6(bytes, Mode::Lenient)?,
                v => return Err(DecodeError::BadVersion(v)),
            };
            let l4 = bytes.get(ip.header_len..).unwrap_or(&[]);
            Ok(Quoted { ip, l4 })
        }

        /// IPv4 header (RFC 791). Returns the header and the datagram bytes (cut to `total_len` if longer).
        fn parse_v4(bytes: &[u8], mode: Mode) -> Result<(IpHeader, &[u8]), DecodeError> {
            if bytes.len() < 20 {
                return Err(DecodeError::BadIpv4("shorter than 20 bytes"));
            }
            let ihl = usize::from(byte(bytes, 0) & 0x0f);
            if ihl < 5 {
                return Err(DecodeError::BadIpv4("IHL < 5"));
            }
            let header_len = ihl * 4;
            if bytes.len() < header_len {
                return Err(DecodeError::BadIpv4("options truncated"));
            }
            let total_len = usize::from(be16(bytes, 2).ok_or(DecodeError::BadIpv4("truncated"))?);
            let bytes = if total_len < header_len {
                if mode == Mode::Strict {
                    return Err(DecodeError::BadIpv4("total length < header length"));
                }
                bytes
            } else {
                // Ethernet padding beyond the datagram is not part of it.
                bytes.get(..total_len).unwrap_or(bytes)
            };
            let frag_field = be16(bytes, 6).unwrap_or(0);
            let offset = (frag_field & 0x1fff).wrapping_mul(8);
            let more = frag_field & 0x2000 != 0;
            let src: [u8; 4] = arr(bytes, 12).ok_or(DecodeError::BadIpv4("truncated"))?;
            let dst: [u8; 4] = arr(bytes, 16).ok_or(DecodeError::BadIpv4("truncated"))?;
            let ip = IpHeader {
                version: 4,
                src: IpAddr::from(src),
                dst: IpAddr::from(dst),
                proto: byte(bytes, 9),
                ttl: byte(bytes, 8),
                tos: byte(bytes, 1),
                id: u32::from(be16(bytes, 4).unwrap_or(0)),
                df: frag_field & 0x4000 != 0,
                frag: (more || offset != 0).then_some(Fragment { offset, more }),
                header_len,
                total_len,
            };
            Ok((ip, bytes))
        }

        /// The transport header, from `rest` (the captured bytes after the IP header(s)).
        fn decode_l4<'a>(ip: &IpHeader, rest: &'a [u8]) -> L4<'a> {
            if ip.frag.is_some_and(|f| !f.is_first()) {
                return L4::Fragment;
            }
            // What the header claims follows the IP header(s) (the kernel's view of the L4 length).
            let claimed = ip.total_len.saturating_sub(ip.header_len);
            match (ip.proto, ip.version) {
                (PROTO_TCP, _) => decode_tcp(rest, claimed),
                (PROTO_UDP, _) => decode_udp(rest, claimed),
                (PROTO_ICMP, 4) | (PROTO_ICMPV6, 6) => decode_icmp(rest, claimed),
                _ => L4::Other(rest),
            }
        }

        /// TCP (RFC 9293), with the `tcp_error` length checks: full 20-byte header, 20 <= doff*4, and the
        /// header within the datagram.
        fn decode_tcp(rest: &[u8], claimed: usize) -> L4<'_> {
            if claimed < 20 {
                return L4::Malformed { reason: "TCP header beyond end of datagram" };
            }
            if rest.len() < 20 {
                return L4::Malformed { reason: "TCP header not captured" };
            }
            let header_len = usize::from(byte(rest, 12) >> 4) * 4;
            if header_len < 20 {
                return L4::Malformed { reason: "TCP data offset < 5" };
            }
            if header_len > claimed {
                return L4::Malformed { reason: "TCP data offset beyond end of datagram" };
            }
            let Some(options) = rest.get(20..header_len) else {
                return L4::Malformed { reason: "TCP options not captured" };
            };
            L4::Tcp(TcpHeader {
                sport: be16(rest, 0).unwrap_or(0),
                dport: be16(rest, 2).unwrap_or(0),
                seq: be32(rest, 4).unwrap_or(0),
                ack: be32(rest, 8).unwrap_or(0),
                flags: TcpFlags(byte(rest, 13)),
                window: be16(rest, 14).unwrap_or(0),
                checksum: be16(rest, 16).unwrap_or(0),
                header_len,
                options,
                payload_len: claimed - header_len,
                payload: rest.get(header_len..).unwrap_or(&[]),
            })
        }

        /// UDP (RFC 768) with the `udp_error` checks: 8-byte header, 8 <= length <= bytes after the IP header.
        fn decode_udp(rest: &[u8], claimed: usize) -> L4<'_> {
            if claimed < 8 {
                return L4::Malformed { reason: "UDP header beyond end of datagram" };
            }
            if rest.len() < 8 {
                return L4::Malformed { reason: "UDP header not captured" };
            }
            let length = be16(rest, 4).unwrap_or(0);
            if length < 8 {
                return L4::Malformed { reason: "UDP length < 8" };
            }
            if usize::from(length) > claimed {
                return L4::Malformed { reason: "UDP length beyond end of datagram" };
            }
            L4::Udp(UdpHeader {
                sport: be16(rest, 0).unwrap_or(0),
                dport: be16(rest, 2).unwrap_or(0),
                length,
                checksum: be16(rest, 6).unwrap_or(0),
            })
        }

        /// ICMP (RFC 792) / ICMPv6 (RFC 4443): the 8-byte header must be there.
        fn decode_icmp(rest: &[u8], claimed: usize) -> L4<'_> {
            if claimed < 8 {
                return L4::Malformed { reason: "ICMP header beyond end of datagram" };
            }
            let Some(r) = arr::<4>(rest, 4) else {
                return L4::Malformed { reason: "ICMP header not captured" };
            };
            L4::Icmp(IcmpHeader {
                icmp_type: byte(rest, 0),
                code: byte(rest, 1),
                checksum: be16(rest, 2).unwrap_or(0),
                rest: r,
                payload: rest.get(8..).unwrap_or(&[]),
            })
        }
    }

    /// Old and new decodes agree field by field (`Packet` has no `PartialEq`).
    fn same_decode(bytes: &[u8]) -> Result<(), proptest::test_runner::TestCaseError> {
        match (decode_ip(bytes), reference::decode_ip(bytes)) {
            (Ok(p), Ok(r)) => {
                proptest::prop_assert_eq!(p.bytes, r.bytes);
                proptest::prop_assert_eq!(p.ip, r.ip);
                proptest::prop_assert_eq!(p.l4, r.l4);
            }
            (p, r) => proptest::prop_assert_eq!(p.err(), r.err()),
        }
        proptest::prop_assert_eq!(decode_quoted(bytes), reference::decode_quoted(bytes));
        Ok(())
    }

    prop_compose! {
        /// An IPv4 datagram with every length field near (or off) its edges: any IHL, total length
        /// around the real length, fragment bits, a transport header with any data offset / UDP length.
        fn ipv4_edgy()(
            ihl in prop_oneof![3 => Just(5u8), 1 => Just(6u8), 2 => 0u8..16],
            tl_delta in -30i32..30,
            frag in prop_oneof![Just(0u16), Just(0x4000u16), Just(0x2000u16), Just(0x0005u16), any::<u16>()],
            proto in prop_oneof![
                4 => Just(PROTO_TCP),
                2 => Just(PROTO_UDP),
                1 => Just(PROTO_ICMP),
                1 => Just(PROTO_ICMPV6),
                1 => any::<u8>(),
            ],
            doff in prop_oneof![Just(5u8), Just(8u8), 0u8..16],
            udp_delta in -10i32..10,
            mut header in proptest::collection::vec(any::<u8>(), 60),
            mut l4 in proptest::collection::vec(any::<u8>(), 0..90),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) -> Vec<u8> {
            header.truncate(usize::from(ihl.max(5)) * 4);
            header[0] = 0x40 | ihl;
            header[6..8].copy_from_slice(&frag.to_be_bytes());
            header[9] = proto;
            if let Some(b) = l4.get_mut(12) {
                if proto == PROTO_TCP {
                    *b = (doff << 4) | (*b & 0x0f);
                }
            }
            if proto == PROTO_UDP && l4.len() >= 8 {
                let len = (l4.len() as i32 + udp_delta).clamp(0, 0xffff) as u16;
                l4[4..6].copy_from_slice(&len.to_be_bytes());
            }
            let mut bytes = header;
            bytes.extend_from_slice(&l4);
            let total = (bytes.len() as i32 + tl_delta).clamp(0, 0xffff) as u16;
            bytes[2..4].copy_from_slice(&total.to_be_bytes());
            if truncate {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        }
    }

    prop_compose! {
        /// An IPv6 datagram with the payload length near (or off) the real one, a transport header or an
        /// extension header first, any data offset / UDP length.
        fn ipv6_edgy()(
            next in prop_oneof![
                4 => Just(PROTO_TCP),
                2 => Just(PROTO_UDP),
                2 => Just(PROTO_ICMPV6),
                1 => Just(PROTO_HOPOPTS),
                1 => Just(PROTO_FRAGMENT),
                1 => Just(PROTO_DSTOPTS),
                1 => any::<u8>(),
            ],
            version in prop_oneof![6 => Just(6u8), 1 => any::<u8>()],
            pl_delta in -30i32..30,
            doff in prop_oneof![Just(5u8), Just(8u8), 0u8..16],
            udp_delta in -10i32..10,
            mut header in proptest::collection::vec(any::<u8>(), 40),
            mut l4 in proptest::collection::vec(any::<u8>(), 0..90),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) -> Vec<u8> {
            header[0] = (version << 4) | (header[0] & 0x0f);
            header[6] = next;
            if next == PROTO_TCP {
                if let Some(b) = l4.get_mut(12) {
                    *b = (doff << 4) | (*b & 0x0f);
                }
            }
            if next == PROTO_UDP && l4.len() >= 8 {
                let len = (l4.len() as i32 + udp_delta).clamp(0, 0xffff) as u16;
                l4[4..6].copy_from_slice(&len.to_be_bytes());
            }
            let pl = (l4.len() as i32 + pl_delta).clamp(0, 0xffff) as u16;
            header[4..6].copy_from_slice(&pl.to_be_bytes());
            let mut bytes = header;
            bytes.extend_from_slice(&l4);
            if truncate {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// A peek at an IPv4 datagram that decodes as TCP or UDP (first fragment or whole) names its
        /// addresses, protocol and ports.
        #[test]
        fn peek_names_the_flow_decode_finds(bytes in ipv4_edgy()) {
            if let Ok(p) = decode_ip(&bytes) {
                if matches!(p.l4, L4::Tcp(_) | L4::Udp(_)) {
                    let (IpAddr::V4(s), IpAddr::V4(d)) = (p.ip.src, p.ip.dst) else {
                        return Err(TestCaseError::fail("not IPv4"));
                    };
                    let want = p.ports().map(|(sport, dport)| FlowPeek {
                        src: u32::from(s), dst: u32::from(d), proto: p.ip.proto, sport, dport,
                    });
                    prop_assert_eq!(peek_flow4(&bytes), want);
                }
            }
        }

        /// The field-at-a-time reference and the fast decoder agree on IPv4 datagrams near every edge.
        #[test]
        fn decode_equals_reference_ipv4(bytes in ipv4_edgy()) {
            same_decode(&bytes)?;
        }

        /// ... and on IPv6 datagrams near every edge.
        #[test]
        fn decode_equals_reference_ipv6(bytes in ipv6_edgy()) {
            same_decode(&bytes)?;
        }

        /// ... and on arbitrary bytes (mostly errors, some IPv6).
        #[test]
        fn decode_equals_reference_random(
            first in prop_oneof![Just(0x45u8), Just(0x60u8), any::<u8>()],
            mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            if let Some(b) = bytes.first_mut() {
                *b = first;
            }
            same_decode(&bytes)?;
        }
    }

    #[test]
    fn decode_equals_reference_on_built_packets() {
        let mut cases = vec![v4_tcp_syn(b""), v4_tcp_syn(&[1u8; 40]), v6_udp()];
        let mut icmp = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .icmpv4_echo_request(1, 2)
            .write(&mut icmp, b"ping")
            .unwrap();
        cases.push(icmp);
        let mut tcp_opts = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .tcp(1, 2, 3, 4)
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
            .write(&mut tcp_opts, b"data")
            .unwrap();
        cases.push(tcp_opts);
        for c in &cases {
            for n in 0..=c.len() {
                same_decode(&c[..n]).unwrap();
            }
        }
    }

    fn v4_tcp_syn(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(40000, 80, 1000, 64240).syn();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn peeks_see_only_ipv4_tcp_and_udp_first_fragments() {
        let tcp = v4_tcp_syn(b"hi");
        let flow = peek_flow4(&tcp).unwrap();
        assert_eq!(
            (flow.src, flow.dst, flow.proto, flow.sport, flow.dport),
            (0x0a00_0001, 0x0a00_0002, 6, 40000, 80)
        );
        assert_eq!(peek_flow4(&tcp[..21]), None, "ports not captured");
        let mut later = tcp.clone();
        later[7] = 1; // fragment offset 8
        assert_eq!(peek_flow4(&later), None);
        assert_eq!(peek_flow4(&v6_udp()), None);
    }

    #[test]
    fn ipv4_tcp_syn_decodes() {
        let bytes = v4_tcp_syn(b"hello");
        let p = decode_ip(&bytes).unwrap();
        assert!(p.is_v4());
        assert_eq!(p.ip.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(p.ip.dst, IpAddr::from([10, 0, 0, 2]));
        assert_eq!(p.ip.proto, PROTO_TCP);
        assert_eq!(p.ip.ttl, 64);
        assert_eq!(p.ip.header_len, 20);
        assert_eq!(p.ip.total_len, 45);
        assert_eq!(p.ip.frag, None);
        assert_eq!(p.ports(), Some((40000, 80)));
        let L4::Tcp(t) = &p.l4 else { panic!("{:?}", p.l4) };
        assert!(t.flags.syn() && !t.flags.ack());
        assert_eq!(t.seq, 1000);
        assert_eq!(t.window, 64240);
        assert_eq!(t.header_len, 20);
        assert_eq!(t.payload_len, 5);
        assert_eq!(t.payload, b"hello");
    }

    #[test]
    fn ethernet_padding_is_cut() {
        let mut bytes = v4_tcp_syn(b"");
        bytes.extend_from_slice(&[0u8; 6]);
        let p = decode_ip(&bytes).unwrap();
        assert_eq!(p.bytes.len(), 40);
        let L4::Tcp(t) = &p.l4 else { panic!() };
        assert_eq!(t.payload_len, 0);
        assert!(t.payload.is_empty());
    }

    #[test]
    fn snaplen_truncation_keeps_claimed_payload_len() {
        let bytes = v4_tcp_syn(&[7u8; 100]);
        let p = decode_ip(&bytes[..50]).unwrap();
        assert_eq!(p.ip.total_len, 140);
        let L4::Tcp(t) = &p.l4 else { panic!() };
        assert_eq!(t.payload_len, 100);
        assert_eq!(t.payload.len(), 10);
        // Header cut in the middle of TCP: L3 fine, L4 malformed.
        let p = decode_ip(&bytes[..30]).unwrap();
        assert_eq!(p.l4, L4::Malformed { reason: "TCP header not captured" });
    }

    #[test]
    fn bad_ipv4_headers() {
        assert_eq!(decode_ip(&[]).unwrap_err(), DecodeError::Empty);
        assert_eq!(decode_ip(&[0x50; 30]).unwrap_err(), DecodeError::BadVersion(5));
        let good = v4_tcp_syn(b"");
        assert!(matches!(decode_ip(&good[..19]), Err(DecodeError::BadIpv4(_))));
        let mut b = good.clone();
        b[0] = 0x44; // IHL 4
        assert_eq!(decode_ip(&b).unwrap_err(), DecodeError::BadIpv4("IHL < 5"));
        let mut b = good.clone();
        b[0] = 0x4f; // IHL 15 = 60 bytes > 40 captured
        assert_eq!(decode_ip(&b).unwrap_err(), DecodeError::BadIpv4("options truncated"));
        let mut b = good.clone();
        b[2] = 0;
        b[3] = 19;
        assert_eq!(decode_ip(&b).unwrap_err(), DecodeError::BadIpv4("total length < header length"));
    }

    #[test]
    fn tcp_bad_data_offset() {
        let mut b = v4_tcp_syn(b"");
        b[32] = 0x40; // doff 4
        assert_eq!(decode_ip(&b).unwrap().l4, L4::Malformed { reason: "TCP data offset < 5" });
        b[32] = 0x60; // doff 6 = 24 bytes > 20 in datagram
        assert_eq!(
            decode_ip(&b).unwrap().l4,
            L4::Malformed { reason: "TCP data offset beyond end of datagram" }
        );
    }

    #[test]
    fn tcp_options_are_exposed() {
        let b = PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .tcp(1, 2, 3, 4)
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap();
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        let p = decode_ip(&out).unwrap();
        let L4::Tcp(t) = &p.l4 else { panic!() };
        assert_eq!(t.header_len, 24);
        assert_eq!(t.options, &[2, 4, 0x05, 0xb4]);
    }

    #[test]
    fn udp_length_checks() {
        let b = PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64).udp(53, 5353);
        let mut out = Vec::new();
        b.write(&mut out, b"abcd").unwrap();
        let p = decode_ip(&out).unwrap();
        assert_eq!(
            p.l4,
            L4::Udp(UdpHeader { sport: 53, dport: 5353, length: 12, checksum: be16(&out, 26).unwrap() })
        );
        let mut bad = out.clone();
        bad[24..26].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(decode_ip(&bad).unwrap().l4, L4::Malformed { reason: "UDP length < 8" });
        bad[24..26].copy_from_slice(&13u16.to_be_bytes());
        assert_eq!(
            decode_ip(&bad).unwrap().l4,
            L4::Malformed { reason: "UDP length beyond end of datagram" }
        );
        // Shorter than the remaining bytes is fine (trailing data ignored, as udp_error does).
        bad[24..26].copy_from_slice(&8u16.to_be_bytes());
        assert!(matches!(decode_ip(&bad).unwrap().l4, L4::Udp(_)));
    }

    #[test]
    fn icmp_echo() {
        let b = PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64).icmpv4_echo_request(0x1234, 7);
        let mut out = Vec::new();
        b.write(&mut out, b"ping").unwrap();
        let p = decode_ip(&out).unwrap();
        let L4::Icmp(i) = &p.l4 else { panic!() };
        assert_eq!((i.icmp_type, i.code, i.id(), i.seq()), (8, 0, 0x1234, 7));
        assert_eq!(i.payload, b"ping");
        assert_eq!(decode_ip(&out[..27]).unwrap().l4, L4::Malformed { reason: "ICMP header not captured" });
    }

    #[test]
    fn ipv4_fragments() {
        let mut first = v4_tcp_syn(&[0u8; 16]);
        first[6] = 0x20; // MF
        let p = decode_ip(&first).unwrap();
        assert_eq!(p.ip.frag, Some(Fragment { offset: 0, more: true }));
        assert!(matches!(p.l4, L4::Tcp(_)));
        let mut later = first.clone();
        later[6] = 0x00;
        later[7] = 0x05; // offset 40, last
        let p = decode_ip(&later).unwrap();
        assert_eq!(p.ip.frag, Some(Fragment { offset: 40, more: false }));
        assert_eq!(p.l4, L4::Fragment);
        let mut df = v4_tcp_syn(b"");
        df[6] = 0x40;
        let p = decode_ip(&df).unwrap();
        assert!(p.ip.df);
        assert_eq!(p.ip.frag, None);
    }

    fn v6_udp() -> Vec<u8> {
        let b = PacketBuilder::ipv6([0xfe; 16], [0x20; 16], 33).udp(1000, 2000);
        let mut out = Vec::new();
        b.write(&mut out, b"xyz").unwrap();
        out
    }

    #[test]
    fn ipv6_udp_decodes() {
        let out = v6_udp();
        let p = decode_ip(&out).unwrap();
        assert_eq!(p.ip.version, 6);
        assert_eq!(p.ip.ttl, 33);
        assert_eq!(p.ip.header_len, 40);
        assert_eq!(p.ip.total_len, 51);
        assert_eq!(p.ports(), Some((1000, 2000)));
    }

    /// Insert an extension header of `kind` right after the fixed header.
    fn with_ext(mut pkt: Vec<u8>, kind: u8, body: &[u8]) -> Vec<u8> {
        let inner = pkt[6];
        pkt[6] = kind;
        let mut ext = vec![inner];
        ext.extend_from_slice(body);
        let plen = u16::from_be_bytes([pkt[4], pkt[5]]) + ext.len() as u16;
        pkt[4..6].copy_from_slice(&plen.to_be_bytes());
        pkt.splice(40..40, ext);
        pkt
    }

    #[test]
    fn ipv6_extension_headers_walked() {
        // hop-by-hop (8 bytes) then destination options (16 bytes), then UDP.
        let p1 = with_ext(v6_udp(), PROTO_DSTOPTS, &[1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let p2 = with_ext(p1, PROTO_HOPOPTS, &[0, 1, 4, 0, 0, 0, 0]);
        let p = decode_ip(&p2).unwrap();
        assert_eq!(p.ip.proto, PROTO_UDP);
        assert_eq!(p.ip.header_len, 40 + 8 + 16);
        assert_eq!(p.ports(), Some((1000, 2000)));
        // Cut inside the extension headers: L3 undecodable.
        assert!(matches!(decode_ip(&p2[..50]), Err(DecodeError::BadIpv6(_))));
    }

    #[test]
    fn ipv6_fragment_header() {
        // first fragment, id 0xdeadbeef, MF
        let first = with_ext(v6_udp(), PROTO_FRAGMENT, &[0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
        let p = decode_ip(&first).unwrap();
        assert_eq!(p.ip.frag, Some(Fragment { offset: 0, more: true }));
        assert_eq!(p.ip.id, 0xdeadbeef);
        assert_eq!(p.ip.header_len, 48);
        assert!(matches!(p.l4, L4::Udp(_)));
        // non-first: offset 8 (field 0x0008), last
        let later = with_ext(v6_udp(), PROTO_FRAGMENT, &[0, 0, 8, 0, 0, 0, 9]);
        let p = decode_ip(&later).unwrap();
        assert_eq!(p.ip.frag, Some(Fragment { offset: 8, more: false }));
        assert_eq!(p.ip.proto, PROTO_UDP);
        assert_eq!(p.l4, L4::Fragment);
    }

    #[test]
    fn ipv6_payload_length_checks() {
        let mut out = v6_udp();
        out.extend_from_slice(&[0; 8]); // padding cut
        assert_eq!(decode_ip(&out).unwrap().bytes.len(), 51);
        let mut jumbo = with_ext(v6_udp(), PROTO_HOPOPTS, &[0, 0xc2, 4, 0, 0, 0, 0]);
        jumbo[4] = 0;
        jumbo[5] = 0;
        assert!(matches!(decode_ip(&jumbo), Err(DecodeError::BadIpv6(_))));
        assert!(matches!(decode_ip(&out[..39]), Err(DecodeError::BadIpv6(_))));
    }

    #[test]
    fn quoted_datagram_is_lenient() {
        let full = v4_tcp_syn(&[0u8; 100]);
        let q = decode_quoted(&full[..28]).unwrap();
        assert_eq!(q.ip.total_len, 140);
        assert_eq!(q.l4.len(), 8);
        assert_eq!(q.ip.proto, PROTO_TCP);
        let v6 = with_ext(v6_udp(), PROTO_DSTOPTS, &[0, 1, 4, 0, 0, 0, 0]);
        let q = decode_quoted(&v6[..52]).unwrap();
        assert_eq!(q.ip.proto, PROTO_UDP);
        assert_eq!(q.ip.header_len, 48);
        assert_eq!(q.l4.len(), 4);
        assert!(decode_quoted(&full[..12]).is_err());
    }
}
