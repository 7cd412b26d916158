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

/// Adds `w` to the 64-bit ones'-complement accumulator `acc` (the carry out of bit 63 wraps around
/// into bit 0, RFC 1071 §2(C): since 2^64 ≡ 1 (mod 2^16 - 1) the folded value is unchanged).
#[inline(always)]
fn add_carry(acc: u64, w: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(w);
    // With a carry out, `s` is at most 2^64 - 2: adding it back cannot overflow.
    s + u64::from(carry)
}

/// Ones'-complement sum of `data` read as native-endian 16-bit words (odd length padded with a zero
/// byte), added to `acc`; not folded.
///
/// The ones'-complement sum is byte-order independent (RFC 1071 §2(B)): summing words read in the
/// machine's order gives the byte-swapped sum on a little-endian machine, which [`fold`] undoes. Eight
/// bytes at a time into 64-bit accumulators with end-around carry (RFC 1071 §2(C), §4.1 "deferred
/// carries"); every word starts at an even offset of `data`, so the 16-bit words keep their pairing.
/// Two independent accumulators (16 bytes a round), so that the additions do not all wait on one carry
/// chain.
#[inline(always)]
fn sum_ne(data: &[u8], acc: u64) -> u64 {
    let mut rounds = data.chunks_exact(16);
    let [mut a0, mut a1] = [acc, 0];
    for c in &mut rounds {
        let (w0, w1) = c.split_first_chunk::<8>().unwrap_or((&[0; 8], &[]));
        let w1 = w1.first_chunk::<8>().unwrap_or(&[0; 8]);
        a0 = add_carry(a0, u64::from_ne_bytes(*w0));
        a1 = add_carry(a1, u64::from_ne_bytes(*w1));
    }
    let mut acc = add_carry(a0, a1);
    let mut rest = rounds.remainder();
    if let Some((w, r)) = rest.split_first_chunk::<8>() {
        acc = add_carry(acc, u64::from_ne_bytes(*w));
        rest = r;
    }
    // At most 7 bytes left: the remaining additions are below 2^33 in total and are carried as one.
    let mut tail = 0u64;
    if let Some((a, r)) = rest.split_first_chunk::<4>() {
        tail += u64::from(u32::from_ne_bytes(*a));
        rest = r;
    }
    if let Some((a, r)) = rest.split_first_chunk::<2>() {
        tail += u64::from(u16::from_ne_bytes(*a));
        rest = r;
    }
    if let Some(&last) = rest.first() {
        tail += u64::from(u16::from_ne_bytes([last, 0]));
    }
    add_carry(acc, tail)
}

/// Folds a native-order accumulator from [`sum_ne`] to the 16-bit ones'-complement sum in network
/// byte order (not complemented). Zero only when every word summed was zero.
#[inline(always)]
fn fold(acc: u64) -> u16 {
    let (s, carry) = ((acc >> 32) as u32).overflowing_add(acc as u32);
    // With a carry out, `s` is at most 2^32 - 2.
    let x = s + u32::from(carry);
    let (s, carry) = ((x >> 16) as u16).overflowing_add(x as u16);
    u16::from_be(s + u16::from(carry))
}

/// The pseudo-header of RFC 9293 §3.1 / RFC 768 (addresses, zero byte, protocol, length), as a
/// native-order accumulator. The length is summed as a 64-bit big-endian number, which is what the
/// 16-bit field holds whenever the segment is shorter than 64 KiB.
#[inline(always)]
fn pseudo_v4(src: &Ipv4Addr, dst: &Ipv4Addr, proto: u8, len: usize) -> u64 {
    let acc = u64::from(u32::from_ne_bytes(src.octets()))
        + u64::from(u32::from_ne_bytes(dst.octets()))
        + u64::from(u16::from_ne_bytes([0, proto]));
    add_carry(acc, (len as u64).to_be())
}

/// The IPv6 pseudo-header of RFC 8200 §8.1 (addresses, 32-bit length, zeros, next header).
#[inline(always)]
fn pseudo_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, len: usize) -> u64 {
    let acc = sum_ne(&src.octets(), u64::from(u16::from_ne_bytes([0, next_header])));
    let acc = sum_ne(&dst.octets(), acc);
    add_carry(acc, (len as u64).to_be())
}

/// RFC 1071 checksum of `data` (complemented).
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum_ne(data, 0))
}

/// Checksum of a TCP/UDP/... segment with the IPv4 pseudo-header (complemented).
pub fn l4_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_bytes: &[u8]) -> u16 {
    !fold(sum_ne(l4_bytes, pseudo_v4(&src, &dst, proto, l4_bytes.len())))
}

/// Checksum of an upper-layer packet with the IPv6 pseudo-header (complemented).
pub fn l4_checksum_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, l4_bytes: &[u8]) -> u16 {
    !fold(sum_ne(l4_bytes, pseudo_v6(&src, &dst, next_header, l4_bytes.len())))
}

/// Whether an IPv4 header is structurally valid and its header checksum is right (what
/// `ip_rcv_core` checks before netfilter sees the packet: version, IHL >= 5, header present,
/// checksum).
pub fn ipv4_header_ok(bytes: &[u8]) -> bool {
    // Fewer than 20 bytes can never hold a valid header.
    let Some((fixed, rest)) = bytes.split_first_chunk::<20>() else {
        return false;
    };
    let [first, ..] = *fixed;
    if first >> 4 != 4 {
        return false;
    }
    let hl = usize::from(first & 0x0f) * 4;
    let Some(options) = hl.checked_sub(20).and_then(|n| rest.get(..n)) else {
        return false;
    };
    let acc = sum_ne(fixed, 0);
    let acc = if options.is_empty() { acc } else { sum_ne(options, acc) };
    // A correct header sums to 0xffff (its complement, the checksum over it, is 0).
    fold(acc) == 0xffff
}

/// Verify the transport checksum as conntrack does at PREROUTING.
///
/// `None` when it cannot be verified: fragment, L4 not fully captured, malformed L4 header, or a
/// protocol conntrack does not checksum here.
pub fn l4_checksum_ok(pkt: &Packet) -> Option<bool> {
    if pkt.ip.frag.is_some() {
        return None;
    }
    let l4 = pkt.bytes.get(pkt.ip.header_len..pkt.ip.total_len)?;
    let proto = pkt.ip.proto;
    let with_pseudo = match &pkt.l4 {
        L4::Tcp(_) if proto == PROTO_TCP => true,
        // `udp_error` accepts a zero checksum ("none computed") without summing.
        L4::Udp(u) if proto == PROTO_UDP => {
            if u.checksum == 0 {
                return Some(true);
            }
            true
        }
        // ICMPv4 has no pseudo-header.
        L4::Icmp(_) if pkt.ip.version == 4 && proto == PROTO_ICMP => false,
        L4::Icmp(_) if pkt.ip.version == 6 && proto == PROTO_ICMPV6 => true,
        _ => return None,
    };
    let acc = if with_pseudo {
        match (&pkt.ip.src, &pkt.ip.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_v4(s, d, proto, l4.len()),
            (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_v6(s, d, proto, l4.len()),
            _ => return None,
        }
    } else {
        0
    };
    // Right when the sum is 0xffff (the checksum over the segment, its complement, is 0).
    Some(fold(sum_ne(l4, acc)) == 0xffff)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::packet::decode_ip;
    use etherparse::PacketBuilder;

    /// The textbook RFC 1071 sum: one big-endian 16-bit word at a time, odd length padded with zero,
    /// carries folded at the end. Not complemented.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for c in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    fn reference_checksum(data: &[u8]) -> u16 {
        !reference_sum(data)
    }

    /// The IPv4 header check as first written: byte-by-byte validation, then the textbook sum.
    fn reference_ipv4_header_ok(bytes: &[u8]) -> bool {
        let Some(&first) = bytes.first() else { return false };
        let hl = usize::from(first & 0x0f) * 4;
        first >> 4 == 4 && hl >= 20 && bytes.get(..hl).is_some_and(|h| reference_checksum(h) == 0)
    }

    /// Bytes biased toward the values where ones'-complement arithmetic has edge cases.
    fn edgy_bytes(max: usize) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            prop_oneof![Just(0u8), Just(0xffu8), Just(0xfeu8), Just(1u8), any::<u8>()],
            0..max,
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// The 8-bytes-at-a-time native-order sum equals the textbook sum, for every length and every
        /// alignment of the slice in memory.
        #[test]
        fn fast_sum_equals_reference(data in edgy_bytes(300), skip in 0usize..16) {
            let data = data.get(skip.min(data.len())..).unwrap_or(&[]);
            proptest::prop_assert_eq!(fold(sum_ne(data, 0)), reference_sum(data));
            proptest::prop_assert_eq!(internet_checksum(data), reference_checksum(data));
        }

        /// The pseudo-header sums equal the textbook sum over the pseudo-header spelled out in bytes.
        #[test]
        fn fast_pseudo_header_sums_equal_reference(
            data in edgy_bytes(200),
            a in proptest::prelude::any::<[u8; 16]>(),
            b in proptest::prelude::any::<[u8; 16]>(),
            proto in proptest::prelude::any::<u8>(),
            fill in proptest::prelude::any::<bool>(),
        ) {
            let (a, b) = if fill { ([0xff; 16], [0xff; 16]) } else { (a, b) };
            let (s4, d4) = (Ipv4Addr::from([a[0], a[1], a[2], a[3]]), Ipv4Addr::from([b[0], b[1], b[2], b[3]]));
            let mut v4 = [&s4.octets()[..], &d4.octets()[..], &[0, proto], &(data.len() as u16).to_be_bytes()].concat();
            v4.extend_from_slice(&data);
            proptest::prop_assert_eq!(l4_checksum_v4(s4, d4, proto, &data), reference_checksum(&v4));
            let (s6, d6) = (Ipv6Addr::from(a), Ipv6Addr::from(b));
            let mut v6 = [&a[..], &b[..], &(data.len() as u32).to_be_bytes(), &[0, 0, 0, proto]].concat();
            v6.extend_from_slice(&data);
            proptest::prop_assert_eq!(l4_checksum_v6(s6, d6, proto, &data), reference_checksum(&v6));
        }

        /// The IPv4 header check agrees with the byte-by-byte one, on headers whose checksum is right
        /// (fixed up) or not, with any version/IHL nibble and any truncation.
        #[test]
        fn ipv4_header_check_equals_reference(
            mut h in edgy_bytes(70),
            first in proptest::prelude::any::<u8>(),
            fix in proptest::prelude::any::<bool>(),
            cut in 0usize..70,
        ) {
            if let Some(b) = h.first_mut() {
                *b = if fix { 0x40 | (first & 0x0f) } else { first };
            }
            let hl = usize::from(first & 0x0f) * 4;
            if fix && hl >= 20 && h.len() >= hl {
                h[10] = 0;
                h[11] = 0;
                let c = reference_checksum(&h[..hl]);
                h[10..12].copy_from_slice(&c.to_be_bytes());
            }
            for bytes in [&h[..], &h[..cut.min(h.len())]] {
                proptest::prop_assert_eq!(ipv4_header_ok(bytes), reference_ipv4_header_ok(bytes));
            }
        }
    }

    #[test]
    fn ones_complement_edge_cases() {
        for len in 0..40 {
            for v in [0u8, 0xff, 0x80, 0x01] {
                let data = vec![v; len];
                assert_eq!(internet_checksum(&data), reference_checksum(&data), "{len} x {v:#x}");
            }
        }
        // Words summing to exactly 0xffff (checksum 0) and to a multiple of 0xffff.
        assert_eq!(internet_checksum(&[0xff, 0x00, 0x00, 0xff]), 0);
        assert_eq!(internet_checksum(&[0xff, 0xff]), 0);
        assert_eq!(internet_checksum(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xff, 0xff]), 0);
        assert_eq!(internet_checksum(&[0; 9]), 0xffff);
        // A 64-bit accumulator overflowing many times over.
        let big = vec![0xffu8; 70_000];
        assert_eq!(internet_checksum(&big), reference_checksum(&big));
        assert_eq!(add_carry(u64::MAX, 1), 1);
        assert_eq!(add_carry(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(fold(0), 0);
        assert_eq!(fold(u64::MAX), 0xffff);
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
