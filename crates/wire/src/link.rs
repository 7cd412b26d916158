//! Link-layer framing: from a captured frame to the IP datagram inside it.
//!
//! Contract: [`strip_link`] takes a pcap LINKTYPE number and a frame and returns the IP bytes plus
//! what the link layer says about the packet ([`Frame`]). It never panics. Frames that carry
//! something other than IPv4/IPv6 are [`DecodeError::NotIp`] (with the ethertype or address
//! family), short headers are [`DecodeError::BadLink`], unknown link types are
//! [`DecodeError::UnsupportedLinkType`].
//!
//! Supported (numbers from the tcpdump.org LINKTYPE registry):
//! - 1 Ethernet, with any number of 802.1Q / 802.1ad / 0x9100 tags (the outermost VLAN id is
//!   reported); the packet type is derived from the destination MAC as `eth_type_trans` does.
//! - 113 Linux cooked (SLL) and 276 Linux cooked v2 (SLL2): packet type from the header.
//! - 101 (and 12, 14 as some platforms number it) raw IP; 228 raw IPv4; 229 raw IPv6.
//! - 0 BSD loopback (4-byte address family in the capturing host's byte order, either accepted)
//!   and 108 OpenBSD loopback (network byte order). AF_INET = 2; AF_INET6 = 10 (Linux), 24
//!   (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS).
//! - 239 NFLOG: the payload TLV (the packet type is unknown; the input interface index is
//!   reported when present).

use crate::packet::DecodeError;

/// Packet type as `skb->pkt_type` would have it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PktType {
    /// Addressed to this host (PACKET_HOST).
    Host,
    Broadcast,
    Multicast,
    /// Addressed to another host (PACKET_OTHERHOST, e.g. promiscuous capture).
    OtherHost,
    /// Sent by this host (PACKET_OUTGOING).
    Outgoing,
    /// The link layer does not say (raw IP, loopback, NFLOG...).
    Unknown,
}

/// A frame with its link layer removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The IP datagram (from the IP header on, as captured).
    pub ip: &'a [u8],
    pub pkttype: PktType,
    /// Outermost 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Interface index (SLL2, NFLOG input device).
    pub iface_index: Option<u32>,
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
}

impl<'a> Frame<'a> {
    fn bare(ip: &'a [u8]) -> Frame<'a> {
        Frame { ip, pkttype: PktType::Unknown, vlan: None, iface_index: None, src_mac: None, dst_mac: None }
    }
}

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW_ALT12: u32 = 12;
pub const LINKTYPE_RAW_ALT14: u32 = 14;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;
pub const LINKTYPE_NFLOG: u32 = 239;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_QINQ1: u16 = 0x9100;
const ARPHRD_ETHER: u16 = 1;

fn be16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn arr<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    let s = b.get(off..off.checked_add(N)?)?;
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    Some(a)
}

/// Strip the link layer of `frame` captured with link type `linktype`.
pub fn strip_link(linktype: u32, frame: &[u8]) -> Result<Frame<'_>, DecodeError> {
    // Untagged Ethernet carrying IP is nearly every frame: it is handled here, everything else out of line.
    if linktype == LINKTYPE_ETHERNET {
        ethernet(frame)
    } else {
        strip_other(linktype, frame)
    }
}

/// The link types other than Ethernet.
#[inline(never)]
fn strip_other(linktype: u32, frame: &[u8]) -> Result<Frame<'_>, DecodeError> {
    match linktype {
        LINKTYPE_ETHERNET => ethernet(frame),
        LINKTYPE_LINUX_SLL => sll(frame),
        LINKTYPE_LINUX_SLL2 => sll2(frame),
        LINKTYPE_RAW | LINKTYPE_RAW_ALT12 | LINKTYPE_RAW_ALT14 => raw(frame, None),
        LINKTYPE_IPV4 => raw(frame, Some(4)),
        LINKTYPE_IPV6 => raw(frame, Some(6)),
        LINKTYPE_NULL => null(frame),
        LINKTYPE_LOOP => loopback(frame),
        LINKTYPE_NFLOG => nflog(frame),
        n => Err(DecodeError::UnsupportedLinkType(n)),
    }
}

fn ip_ethertype(ethertype: u16) -> Result<(), DecodeError> {
    match ethertype {
        ETH_P_IP | ETH_P_IPV6 => Ok(()),
        other => Err(DecodeError::NotIp(u32::from(other))),
    }
}

/// Packet type from the destination MAC, as `eth_type_trans` classifies it (the capture does
/// not tell us our own MAC, so every unicast frame is taken as addressed to us).
#[inline(always)]
fn pkttype_from_mac(dst: &[u8; 6]) -> PktType {
    let [first, ..] = *dst;
    // The group bit first: a unicast destination needs no further look.
    if first & 1 == 0 {
        PktType::Host
    } else if *dst == [0xff; 6] {
        PktType::Broadcast
    } else {
        PktType::Multicast
    }
}

/// Ethernet II (IEEE 802.3 with EtherType), 802.1Q / 802.1ad tags skipped.
#[inline(always)]
fn ethernet(frame: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let Some((hdr, ip)) = frame.split_first_chunk::<14>() else {
        return Err(DecodeError::BadLink("Ethernet header truncated"));
    };
    // The header is 14 bytes, so these splits cannot fail (the compiler drops the checks).
    let (dst, rest) = hdr.split_first_chunk::<6>().unwrap_or((&[0; 6], &[]));
    let (src, rest) = rest.split_first_chunk::<6>().unwrap_or((&[0; 6], &[]));
    let ethertype = rest.first_chunk::<2>().copied().unwrap_or([0; 2]);
    // IPv4 or IPv6, tested without a branch between the two.
    if !((ethertype == ETH_P_IP.to_be_bytes()) | (ethertype == ETH_P_IPV6.to_be_bytes())) {
        return ethernet_tagged(frame, *dst, *src, u16::from_be_bytes(ethertype));
    }
    Ok(Frame {
        ip,
        pkttype: pkttype_from_mac(dst),
        vlan: None,
        iface_index: None,
        src_mac: Some(*src),
        dst_mac: Some(*dst),
    })
}

/// Ethernet whose first EtherType is not IP: VLAN tags to skip, or not IP at all.
#[inline(never)]
fn ethernet_tagged(
    frame: &[u8],
    dst: [u8; 6],
    src: [u8; 6],
    mut ethertype: u16,
) -> Result<Frame<'_>, DecodeError> {
    let mut off = 12usize;
    let mut vlan = None;
    // Each tag is 4 bytes, so the loop ends within frame.len() / 4 iterations.
    while matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ1) {
        let tci = be16(frame, off + 2).ok_or(DecodeError::BadLink("VLAN tag truncated"))?;
        if vlan.is_none() {
            vlan = Some(tci & 0x0fff);
        }
        off += 4;
        ethertype = be16(frame, off).ok_or(DecodeError::BadLink("VLAN tag truncated"))?;
    }
    ip_ethertype(ethertype)?;
    let ip = frame.get(off + 2..).unwrap_or(&[]);
    Ok(Frame {
        ip,
        pkttype: pkttype_from_mac(&dst),
        vlan,
        iface_index: None,
        src_mac: Some(src),
        dst_mac: Some(dst),
    })
}

/// `sll_pkttype` values (PACKET_HOST ... PACKET_OUTGOING).
fn sll_pkttype(v: u16) -> PktType {
    match v {
        0 => PktType::Host,
        1 => PktType::Broadcast,
        2 => PktType::Multicast,
        3 => PktType::OtherHost,
        4 => PktType::Outgoing,
        _ => PktType::Unknown,
    }
}

/// Link-layer address of a cooked header: a MAC when the hardware type is Ethernet.
fn sll_mac(hatype: u16, halen: usize, addr: &[u8]) -> Option<[u8; 6]> {
    if hatype == ARPHRD_ETHER && halen == 6 {
        arr(addr, 0)
    } else {
        None
    }
}

/// Linux cooked capture v1: 16-byte header.
fn sll(frame: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if frame.len() < 16 {
        return Err(DecodeError::BadLink("SLL header truncated"));
    }
    let pkttype = be16(frame, 0).unwrap_or(0xffff);
    let hatype = be16(frame, 2).unwrap_or(0);
    let halen = usize::from(be16(frame, 4).unwrap_or(0));
    let addr = frame.get(6..14).unwrap_or(&[]);
    let proto = be16(frame, 14).unwrap_or(0);
    ip_ethertype(proto)?;
    Ok(Frame {
        ip: frame.get(16..).unwrap_or(&[]),
        pkttype: sll_pkttype(pkttype),
        vlan: None,
        iface_index: None,
        src_mac: sll_mac(hatype, halen, addr),
        dst_mac: None,
    })
}

/// Linux cooked capture v2: 20-byte header with the interface index.
fn sll2(frame: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if frame.len() < 20 {
        return Err(DecodeError::BadLink("SLL2 header truncated"));
    }
    let proto = be16(frame, 0).unwrap_or(0);
    let ifindex = arr::<4>(frame, 4).map(u32::from_be_bytes);
    let hatype = be16(frame, 8).unwrap_or(0);
    let pkttype = frame.get(10).copied().unwrap_or(0xff);
    let halen = usize::from(frame.get(11).copied().unwrap_or(0));
    let addr = frame.get(12..20).unwrap_or(&[]);
    ip_ethertype(proto)?;
    Ok(Frame {
        ip: frame.get(20..).unwrap_or(&[]),
        pkttype: sll_pkttype(u16::from(pkttype)),
        vlan: None,
        iface_index: ifindex,
        src_mac: sll_mac(hatype, halen, addr),
        dst_mac: None,
    })
}

/// Raw IP, optionally of a fixed version.
fn raw(frame: &[u8], version: Option<u8>) -> Result<Frame<'_>, DecodeError> {
    if let (Some(want), Some(&b)) = (version, frame.first()) {
        if b >> 4 != want {
            return Err(DecodeError::BadLink("raw IP frame of the wrong IP version"));
        }
    }
    Ok(Frame::bare(frame))
}

fn af_is_ip(af: u32) -> bool {
    matches!(af, 2 | 10 | 24 | 28 | 30)
}

/// BSD loopback: address family in the capturing host's byte order.
fn null(frame: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let b: [u8; 4] = arr(frame, 0).ok_or(DecodeError::BadLink("loopback header truncated"))?;
    let le = u32::from_le_bytes(b);
    let be = u32::from_be_bytes(b);
    if af_is_ip(le) || af_is_ip(be) {
        Ok(Frame::bare(frame.get(4..).unwrap_or(&[])))
    } else {
        Err(DecodeError::NotIp(le.min(be)))
    }
}

/// OpenBSD loopback: address family in network byte order.
fn loopback(frame: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let b: [u8; 4] = arr(frame, 0).ok_or(DecodeError::BadLink("loopback header truncated"))?;
    let af = u32::from_be_bytes(b);
    if af_is_ip(af) {
        Ok(Frame::bare(frame.get(4..).unwrap_or(&[])))
    } else {
        Err(DecodeError::NotIp(af))
    }
}

const NFULA_IFINDEX_INDEV: u16 = 4;
const NFULA_PAYLOAD: u16 = 9;

/// NFLOG: 4-byte header (family, version, resource id) then TLVs whose length and type are in
/// the capturing host's byte order (little-endian in practice; big-endian tried as well).
fn nflog(frame: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let family = *frame.first().ok_or(DecodeError::BadLink("NFLOG header truncated"))?;
    if frame.len() < 4 {
        return Err(DecodeError::BadLink("NFLOG header truncated"));
    }
    if family != 2 && family != 10 {
        return Err(DecodeError::NotIp(u32::from(family)));
    }
    nflog_tlvs(frame, false)
        .or_else(|| nflog_tlvs(frame, true))
        .ok_or(DecodeError::BadLink("NFLOG payload TLV missing or malformed"))
}

fn nflog_tlvs(frame: &[u8], big_endian: bool) -> Option<Frame<'_>> {
    let rd16 = |off: usize| -> Option<u16> {
        let a: [u8; 2] = arr(frame, off)?;
        Some(if big_endian { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    };
    let mut off = 4usize;
    let mut ifindex = None;
    // Every TLV is at least 4 bytes, so `off` strictly increases.
    while off.checked_add(4)? <= frame.len() {
        let len = usize::from(rd16(off)?);
        let ty = rd16(off + 2)? & 0x7fff;
        if len < 4 {
            return None;
        }
        let value = frame.get(off + 4..off.checked_add(len)?)?;
        match ty {
            NFULA_PAYLOAD => {
                let mut f = Frame::bare(value);
                f.iface_index = ifindex;
                return Some(f);
            }
            NFULA_IFINDEX_INDEV => {
                ifindex = arr::<4>(value, 0).map(u32::from_be_bytes);
            }
            _ => {}
        }
        off = off.checked_add(len.checked_add(3)? & !3)?;
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const IP: &[u8] = &[0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];

    fn eth(dst: [u8; 6], tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        for t in tags {
            f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            f.extend_from_slice(&t.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Ethernet decoding as first written (one bounds-checked field read at a time), kept to check the
    /// fast path against.
    fn reference_ethernet(frame: &[u8]) -> Result<Frame<'_>, DecodeError> {
        let dst: [u8; 6] = arr(frame, 0).ok_or(DecodeError::BadLink("Ethernet header truncated"))?;
        let src: [u8; 6] = arr(frame, 6).ok_or(DecodeError::BadLink("Ethernet header truncated"))?;
        let mut off = 12usize;
        let mut vlan = None;
        let mut ethertype = be16(frame, off).ok_or(DecodeError::BadLink("Ethernet header truncated"))?;
        while matches!(ethertype, ETH_P_8021Q | ETH_P_8021AD | ETH_P_QINQ1) {
            let tci = be16(frame, off + 2).ok_or(DecodeError::BadLink("VLAN tag truncated"))?;
            if vlan.is_none() {
                vlan = Some(tci & 0x0fff);
            }
            off += 4;
            ethertype = be16(frame, off).ok_or(DecodeError::BadLink("VLAN tag truncated"))?;
        }
        ip_ethertype(ethertype)?;
        let pkttype = if dst.iter().all(|&b| b == 0xff) {
            PktType::Broadcast
        } else if dst[0] & 1 != 0 {
            PktType::Multicast
        } else {
            PktType::Host
        };
        let ip = frame.get(off + 2..).unwrap_or(&[]);
        Ok(Frame { ip, pkttype, vlan, iface_index: None, src_mac: Some(src), dst_mac: Some(dst) })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// The Ethernet fast path decodes exactly as the field-by-field reference, tags, truncation and
        /// all.
        #[test]
        fn ethernet_equals_reference(
            dst in proptest::prop_oneof![
                proptest::prelude::Just([0xffu8; 6]),
                proptest::prelude::Just([0x01u8, 0, 0x5e, 0, 0, 1]),
                proptest::prelude::Just([0xffu8, 0xff, 0xff, 0xff, 0xff, 0xfe]),
                proptest::prelude::any::<[u8; 6]>(),
            ],
            types in proptest::collection::vec(proptest::prop_oneof![
                proptest::prelude::Just(ETH_P_IP),
                proptest::prelude::Just(ETH_P_IPV6),
                proptest::prelude::Just(ETH_P_8021Q),
                proptest::prelude::Just(ETH_P_8021AD),
                proptest::prelude::Just(ETH_P_QINQ1),
                proptest::prelude::any::<u16>(),
            ], 1..4),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..30),
            cut in 0usize..60,
        ) {
            let mut f = dst.to_vec();
            f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
            for (i, t) in types.iter().enumerate() {
                f.extend_from_slice(&t.to_be_bytes());
                if i + 1 < types.len() {
                    f.extend_from_slice(&(0x1000u16 + i as u16).to_be_bytes());
                }
            }
            f.extend_from_slice(&tail);
            for frame in [&f[..], &f[..cut.min(f.len())]] {
                proptest::prop_assert_eq!(strip_link(LINKTYPE_ETHERNET, frame), reference_ethernet(frame));
            }
        }
    }

    #[test]
    fn ethernet_every_truncation() {
        let f = eth([0xff; 6], &[7], ETH_P_IPV6, IP);
        for n in 0..=f.len() {
            assert_eq!(strip_link(1, &f[..n]), reference_ethernet(&f[..n]), "{n} bytes");
        }
        let f = eth([0x33, 0x33, 0, 0, 0, 1], &[], ETH_P_IPV6, &[]);
        assert_eq!(strip_link(1, &f).unwrap().pkttype, PktType::Multicast);
        assert_eq!(strip_link(1, &f).unwrap().ip, &[] as &[u8]);
        assert_eq!(strip_link(1, &f[..13]), Err(DecodeError::BadLink("Ethernet header truncated")));
    }

    #[test]
    fn ethernet_plain_and_pkttype() {
        let f = eth([0, 1, 2, 3, 4, 5], &[], ETH_P_IP, IP);
        let fr = strip_link(1, &f).unwrap();
        assert_eq!(fr.ip, IP);
        assert_eq!(fr.pkttype, PktType::Host);
        assert_eq!(fr.src_mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(fr.dst_mac, Some([0, 1, 2, 3, 4, 5]));
        assert_eq!(fr.vlan, None);
        let f = eth([0xff; 6], &[], ETH_P_IP, IP);
        assert_eq!(strip_link(1, &f).unwrap().pkttype, PktType::Broadcast);
        let f = eth([0x01, 0, 0x5e, 0, 0, 1], &[], ETH_P_IPV6, IP);
        assert_eq!(strip_link(1, &f).unwrap().pkttype, PktType::Multicast);
    }

    #[test]
    fn ethernet_vlan_tags() {
        let f = eth([0, 1, 2, 3, 4, 5], &[0x2064, 0x0005], ETH_P_IP, IP);
        let fr = strip_link(1, &f).unwrap();
        assert_eq!(fr.vlan, Some(100));
        assert_eq!(fr.ip, IP);
        // Tag present but inner ethertype cut off.
        assert_eq!(strip_link(1, &f[..16]), Err(DecodeError::BadLink("VLAN tag truncated")));
    }

    #[test]
    fn ethernet_non_ip() {
        let f = eth([0xff; 6], &[], 0x0806, &[0; 28]);
        assert_eq!(strip_link(1, &f), Err(DecodeError::NotIp(0x0806)));
        assert!(matches!(strip_link(1, &f[..13]), Err(DecodeError::BadLink(_))));
    }

    #[test]
    fn linux_sll() {
        let mut f = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        f.extend_from_slice(IP);
        let fr = strip_link(113, &f).unwrap();
        assert_eq!(fr.pkttype, PktType::Outgoing);
        assert_eq!(fr.src_mac, Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(fr.ip, IP);
        f[14] = 0x08;
        f[15] = 0x06;
        assert_eq!(strip_link(113, &f), Err(DecodeError::NotIp(0x0806)));
        assert!(strip_link(113, &f[..15]).is_err());
    }

    #[test]
    fn linux_sll2() {
        let mut f = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 7, 0, 1, 3, 6, 9, 9, 9, 9, 9, 9, 0, 0];
        f.extend_from_slice(IP);
        let fr = strip_link(276, &f).unwrap();
        assert_eq!(fr.pkttype, PktType::OtherHost);
        assert_eq!(fr.iface_index, Some(7));
        assert_eq!(fr.src_mac, Some([9; 6]));
        assert_eq!(fr.ip, IP);
        assert!(strip_link(276, &f[..19]).is_err());
    }

    #[test]
    fn raw_variants() {
        for lt in [101, 12, 14, 228] {
            let fr = strip_link(lt, IP).unwrap();
            assert_eq!(fr.ip, IP);
            assert_eq!(fr.pkttype, PktType::Unknown);
        }
        assert!(strip_link(229, IP).is_err());
        assert_eq!(strip_link(147, IP), Err(DecodeError::UnsupportedLinkType(147)));
    }

    #[test]
    fn bsd_loopback_both_orders() {
        for hdr in [[2u8, 0, 0, 0], [0, 0, 0, 2], [30, 0, 0, 0], [0, 0, 0, 24]] {
            let mut f = hdr.to_vec();
            f.extend_from_slice(IP);
            assert_eq!(strip_link(0, &f).unwrap().ip, IP);
        }
        let mut f = vec![0, 0, 0, 7];
        f.extend_from_slice(IP);
        assert_eq!(strip_link(0, &f), Err(DecodeError::NotIp(7)));
        // OpenBSD loop: network order only.
        let mut f = vec![0, 0, 0, 2];
        f.extend_from_slice(IP);
        assert_eq!(strip_link(108, &f).unwrap().ip, IP);
        f[0] = 2;
        f[3] = 0;
        assert!(strip_link(108, &f).is_err());
    }

    #[test]
    fn nflog_payload() {
        let mut f = vec![2, 0, 0, 0];
        // NFULA_IFINDEX_INDEV (4), little-endian TLV header, value big-endian 3.
        f.extend_from_slice(&[8, 0, 4, 0, 0, 0, 0, 3]);
        // An odd-length TLV, padded.
        f.extend_from_slice(&[5, 0, 10, 0, 0xaa, 0, 0, 0]);
        let mut tlv = (4 + IP.len() as u16).to_le_bytes().to_vec();
        tlv.extend_from_slice(&[9, 0]);
        f.extend_from_slice(&tlv);
        f.extend_from_slice(IP);
        let fr = strip_link(239, &f).unwrap();
        assert_eq!(fr.ip, IP);
        assert_eq!(fr.iface_index, Some(3));
        assert!(strip_link(239, &f[..20]).is_err());
    }
}
