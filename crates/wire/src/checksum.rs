//! Internet checksums (RFC 1071) as conntrack verifies them.
//!
//! Contract:
//! - [`internet_checksum`] returns the ones'-complement of the ones'-complement sum of `data`
//!   (odd length padded with a zero byte). Over data whose checksum field is correct it returns 0;
//!   over data whose checksum field is zero it returns the value to store there.
//! - [`l4_checksum_v4`] / [`l4_checksum_v6`] do the same with the pseudo-header prepended
//!   (RFC 9293 §3.1, RFC 768, RFC 8200 §8.1). The pseudo-header length is `l4_bytes.len()`.
//!   When building a UDP datagram, a computed value of 0 must be stored as 0xffff (RFC 768).
//! - [`l4_checksum_ok`] follows `nf_ip_checksum` / `nf_ip6_checksum`: the sum covers everything
//!   after the IP header(s) up to the end of the datagram (`total_len`, not the UDP length field),
//!   with that length in the pseudo-header. ICMPv4 has no pseudo-header. A UDP checksum of 0 means
//!   "no checksum" and is accepted for IPv4 and IPv6 alike (`udp_error` returns early on it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::packet::{Packet, L4, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

/// Ones'-complement sum of 16-bit big-endian words, not folded. Eight bytes at a time, as two 32-bit words:
/// since 2^16 ≡ 1 (mod 2^16 - 1), a sum of 32-bit big-endian words folds to the same value (RFC 1071 §2).
fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut wide = data.chunks_exact(8);
    for c in &mut wide {
        let w = u64::from_be_bytes(c.try_into().unwrap_or([0; 8]));
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut chunks = wide.remainder().chunks_exact(2);
    for c in &mut chunks {
        if let [a, b] = c {
            acc += u64::from(u16::from_be_bytes([*a, *b]));
        }
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

#[cfg(test)]
fn sum_words_16(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| {
            u64::from(u16::from_be_bytes([c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0)]))
        })
        .sum()
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // `acc` now fits in 16 bits.
    u16::try_from(acc).unwrap_or(0xffff)
}

/// RFC 1071 checksum of `data` (complemented).
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum_words(data, 0))
}

/// Checksum of a TCP/UDP/... segment with the IPv4 pseudo-header (complemented).
pub fn l4_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_bytes: &[u8]) -> u16 {
    let mut acc = sum_words(&src.octets(), 0);
    acc = sum_words(&dst.octets(), acc);
    acc += u64::from(proto);
    acc += l4_bytes.len() as u64;
    !fold(sum_words(l4_bytes, acc))
}

/// Checksum of an upper-layer packet with the IPv6 pseudo-header (complemented).
pub fn l4_checksum_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, l4_bytes: &[u8]) -> u16 {
    let mut acc = sum_words(&src.octets(), 0);
    acc = sum_words(&dst.octets(), acc);
    acc += l4_bytes.len() as u64;
    acc += u64::from(next_header);
    !fold(sum_words(l4_bytes, acc))
}

/// Whether an IPv4 header is structurally valid and its header checksum is right (what
/// `ip_rcv_core` checks before netfilter sees the packet: version, IHL >= 5, header present,
/// checksum).
pub fn ipv4_header_ok(bytes: &[u8]) -> bool {
    let Some(&first) = bytes.first() else {
        return false;
    };
    if first >> 4 != 4 {
        return false;
    }
    let hl = usize::from(first & 0x0f) * 4;
    if hl < 20 {
        return false;
    }
    match bytes.get(..hl) {
        Some(h) => internet_checksum(h) == 0,
        None => false,
    }
}

/// Verify the transport checksum as conntrack does at PREROUTING.
///
/// `None` when it cannot be verified: fragment, L4 not fully captured, malformed L4 header, or a
/// protocol conntrack does not checksum here.
pub fn l4_checksum_ok(pkt: &Packet) -> Option<bool> {
    if pkt.ip.frag.is_some() {
        return None;
    }
    let end = pkt.ip.total_len;
    let l4 = pkt.bytes.get(pkt.ip.header_len..end)?;
    let proto = pkt.ip.proto;
    let with_pseudo = |proto: u8| -> Option<bool> {
        let sum = match (pkt.ip.src, pkt.ip.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => l4_checksum_v4(s, d, proto, l4),
            (IpAddr::V6(s), IpAddr::V6(d)) => l4_checksum_v6(s, d, proto, l4),
            _ => return None,
        };
        Some(sum == 0)
    };
    match &pkt.l4 {
        L4::Tcp(_) if proto == PROTO_TCP => with_pseudo(PROTO_TCP),
        L4::Udp(u) if proto == PROTO_UDP => {
            if u.checksum == 0 {
                Some(true)
            } else {
                with_pseudo(PROTO_UDP)
            }
        }
        L4::Icmp(_) if pkt.ip.version == 4 && proto == PROTO_ICMP => Some(internet_checksum(l4) == 0),
        L4::Icmp(_) if pkt.ip.version == 6 && proto == PROTO_ICMPV6 => with_pseudo(PROTO_ICMPV6),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::packet::decode_ip;
    use etherparse::PacketBuilder;

    proptest::proptest! {
        /// The 8-bytes-at-a-time sum folds to what the plain 16-bit sum folds to, for every length.
        #[test]
        fn wide_sum_equals_word_sum(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            proptest::prop_assert_eq!(fold(sum_words(&data, 0)), fold(sum_words_16(&data)));
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example words: 0001 f203 f4f5 f6f7 -> sum ddf2, checksum 220d.
        assert_eq!(internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0x220d);
        // Odd length pads with zero.
        assert_eq!(internet_checksum(&[0xff]), !0xff00);
        assert_eq!(internet_checksum(&[]), 0xffff);
    }

    fn built(b: etherparse::PacketBuilderStep<etherparse::UdpHeader>) -> Vec<u8> {
        let mut out = Vec::new();
        b.write(&mut out, b"payload!").unwrap();
        out
    }

    #[test]
    fn good_and_bad_tcp_udp_icmp_v4() {
        let mut tcp = Vec::new();
        PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64)
            .tcp(1, 2, 3, 4)
            .syn()
            .write(&mut tcp, b"x")
            .unwrap();
        assert!(ipv4_header_ok(&tcp));
        assert_eq!(l4_checksum_ok(&decode_ip(&tcp).unwrap()), Some(true));
        tcp[40] ^= 1;
        assert_eq!(l4_checksum_ok(&decode_ip(&tcp).unwrap()), Some(false));

        let mut udp = built(PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64).udp(1, 2));
        assert_eq!(l4_checksum_ok(&decode_ip(&udp).unwrap()), Some(true));
        udp[30] ^= 0x55;
        assert_eq!(l4_checksum_ok(&decode_ip(&udp).unwrap()), Some(false));
        udp[26..28].copy_from_slice(&[0, 0]); // no checksum
        assert_eq!(l4_checksum_ok(&decode_ip(&udp).unwrap()), Some(true));

        let mut icmp = Vec::new();
        PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut icmp, b"abc")
            .unwrap();
        assert_eq!(l4_checksum_ok(&decode_ip(&icmp).unwrap()), Some(true));
        icmp[29] ^= 1;
        assert_eq!(l4_checksum_ok(&decode_ip(&icmp).unwrap()), Some(false));
        // Truncated capture: cannot verify.
        assert_eq!(l4_checksum_ok(&decode_ip(&icmp[..30]).unwrap()), None);
    }

    #[test]
    fn v6_udp_icmpv6() {
        let mut udp = built(PacketBuilder::ipv6([1; 16], [2; 16], 64).udp(1, 2));
        assert_eq!(l4_checksum_ok(&decode_ip(&udp).unwrap()), Some(true));
        udp[50] ^= 1;
        assert_eq!(l4_checksum_ok(&decode_ip(&udp).unwrap()), Some(false));
        udp[46..48].copy_from_slice(&[0, 0]);
        assert_eq!(l4_checksum_ok(&decode_ip(&udp).unwrap()), Some(true));
        let mut icmp = Vec::new();
        PacketBuilder::ipv6([1; 16], [2; 16], 64).icmpv6_echo_request(7, 8).write(&mut icmp, b"hi").unwrap();
        assert_eq!(l4_checksum_ok(&decode_ip(&icmp).unwrap()), Some(true));
        icmp[45] ^= 1;
        assert_eq!(l4_checksum_ok(&decode_ip(&icmp).unwrap()), Some(false));
    }

    #[test]
    fn helpers_produce_storable_values() {
        let src = Ipv4Addr::new(192, 0, 2, 1);
        let dst = Ipv4Addr::new(198, 51, 100, 2);
        let mut seg = vec![0x12, 0x34, 0x00, 0x35, 0x00, 0x0a, 0x00, 0x00, 0xab, 0xcd];
        let c = l4_checksum_v4(src, dst, 17, &seg);
        seg[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(l4_checksum_v4(src, dst, 17, &seg), 0);
        let s6 = Ipv6Addr::LOCALHOST;
        seg[6..8].copy_from_slice(&[0, 0]);
        let c = l4_checksum_v6(s6, s6, 17, &seg);
        seg[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(l4_checksum_v6(s6, s6, 17, &seg), 0);
    }

    #[test]
    fn ipv4_header_checks() {
        let mut tcp = Vec::new();
        PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64).tcp(1, 2, 3, 4).write(&mut tcp, b"").unwrap();
        assert!(ipv4_header_ok(&tcp));
        tcp[8] = 1; // TTL changed, checksum stale
        assert!(!ipv4_header_ok(&tcp));
        assert!(!ipv4_header_ok(&tcp[..19]));
        assert!(!ipv4_header_ok(&[]));
    }

    fn corpus_checksums(name: &str) -> Option<Vec<Option<bool>>> {
        let path = std::path::Path::new("/work/shared/corpus/pcaps").join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("skipping: {} unavailable", path.display());
            return None;
        };
        let cap = crate::capture::parse_capture(&bytes).unwrap();
        Some(
            cap.records
                .iter()
                .map(|r| {
                    let f = crate::link::strip_link(r.linktype, &r.data).unwrap();
                    l4_checksum_ok(&decode_ip(f.ip).unwrap())
                })
                .collect(),
        )
    }

    #[test]
    fn corpus_bad_checksums_detected() {
        if let Some(v) = corpus_checksums("zeek__chksums__ip4-tcp-bad-chksum.pcap") {
            assert_eq!(v, vec![Some(false)]);
        }
        if let Some(v) = corpus_checksums("zeek__chksums__ip6-udp-bad-chksum.pcap") {
            assert_eq!(v, vec![Some(false)]);
        }
        if let Some(v) = corpus_checksums("zeek__chksums__localhost-bad-chksum.pcap") {
            assert_eq!(v.iter().filter(|c| **c == Some(false)).count(), 6, "{v:?}");
            assert_eq!(v.iter().filter(|c| **c == Some(true)).count(), 4, "{v:?}");
        }
        if let Some(v) = corpus_checksums("tcpdump__ssh.pcap") {
            assert!(v.iter().all(|c| c.is_some()), "{v:?}");
        }
    }
}
