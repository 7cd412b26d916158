//! Packet decoding for statewall.
//!
//! Contract: every function here is total over arbitrary bytes. Decoding never panics; what cannot be
//! decoded is reported as a typed error (the caller counts it, nothing is silently skipped).
//!
//! Layers:
//! - [`time`]: the capture clock ([`Time`], nanoseconds since the Unix epoch).
//! - [`packet`]: our own L3/L4 metadata ([`Packet`]) decoded from an IP datagram (on top of etherparse).
//! - [`link`]: link-layer framing (Ethernet + 802.1Q, Linux SLL/SLL2, raw IP, BSD loopback).
//! - [`capture`]: pcap / pcapng reading (with byte offsets on errors) and pcap writing.
//! - [`checksum`]: Internet checksums as conntrack verifies them.
//! - [`defrag`]: IPv4/IPv6 reassembly as `nf_defrag_ipv4` / `nf_defrag_ipv6` do it before the raw table.
#![forbid(unsafe_code)]

pub mod capture;
pub mod checksum;
pub mod defrag;
pub mod link;
pub mod packet;
pub mod time;

pub use capture::{parse_capture, Capture, CaptureError, CaptureFormat, PcapWriter, Record};
pub use defrag::{Defrag, DefragConfig, DefragResult, DefragStats};
pub use link::{strip_link, Frame, PktType};
pub use packet::{
    decode_ip, decode_quoted, peek_flow4, DecodeError, FlowPeek, Fragment, IcmpHeader, IpHeader, Packet,
    Quoted, TcpFlags, TcpHeader, UdpHeader, L4,
};
pub use time::Time;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(p) = decode_ip(&bytes) {
                prop_assert!(p.bytes.len() <= bytes.len());
                prop_assert!(p.ip.header_len <= p.bytes.len());
                let _ = checksum::l4_checksum_ok(&p);
                let mut d = defrag::Defrag::default();
                let _ = d.handle_fragment(Time::from_secs(1), &p);
            }
            let _ = packet::decode_quoted(&bytes);
            let _ = checksum::ipv4_header_ok(&bytes);
            for lt in [0, 1, 12, 14, 101, 108, 113, 228, 229, 239, 276, 9999] {
                if let Ok(f) = link::strip_link(lt, &bytes) {
                    let _ = decode_ip(f.ip);
                }
            }
        }

        /// IP-looking inputs reach the deeper paths more often.
        #[test]
        fn ip_like_inputs_never_panic(
            v in prop_oneof![Just(0x45u8), Just(0x46u8), Just(0x4fu8), Just(0x60u8)],
            proto in prop_oneof![Just(0u8), Just(6u8), Just(17u8), Just(1u8), Just(58u8), Just(44u8), Just(51u8), Just(60u8), any::<u8>()],
            mut rest in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut bytes = vec![v];
            bytes.append(&mut rest);
            if bytes.len() > 9 && v >> 4 == 4 { bytes[9] = proto; }
            if bytes.len() > 6 && v >> 4 == 6 { bytes[6] = proto; }
            if let Ok(p) = decode_ip(&bytes) {
                let _ = checksum::l4_checksum_ok(&p);
                let mut d = defrag::Defrag::default();
                let _ = d.handle_fragment(Time::from_secs(1), &p);
                let _ = d.handle_fragment(Time::from_secs(2), &p);
            }
            let _ = packet::decode_quoted(&bytes);
        }

        #[test]
        fn parse_capture_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = capture::parse_capture(&bytes);
        }

        /// Valid headers followed by garbage exercise the record/block paths.
        #[test]
        fn parse_capture_garbage_after_header(
            ng in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut f: Vec<u8> = if ng {
                let mut v = vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0];
                v.extend_from_slice(&[0xff; 8]);
                v.extend_from_slice(&[28, 0, 0, 0]);
                // IDB, Ethernet
                v.extend_from_slice(&[1, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0]);
                v
            } else {
                let mut v = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
                v.extend_from_slice(&[0; 8]);
                v.extend_from_slice(&[0xff, 0xff, 0, 0, 1, 0, 0, 0]);
                v
            };
            f.extend_from_slice(&tail);
            if let Ok(c) = capture::parse_capture(&f) {
                for r in &c.records {
                    prop_assert!(r.data.len() <= f.len());
                }
            }
        }

        /// Random fragments of one datagram never panic and never produce more than 64 KiB.
        #[test]
        fn defrag_random_fragments(frags in proptest::collection::vec((0u16..200, 1usize..64, any::<bool>()), 1..30)) {
            let mut d = defrag::Defrag::default();
            for (i, (off8, len, more)) in frags.into_iter().enumerate() {
                let mut f = vec![0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
                f.extend(std::iter::repeat_n(i as u8, len));
                let tl = f.len() as u16;
                f[2..4].copy_from_slice(&tl.to_be_bytes());
                let field = off8 | if more { 0x2000 } else { 0 };
                f[6..8].copy_from_slice(&field.to_be_bytes());
                let p = decode_ip(&f).unwrap();
                if let defrag::DefragResult::Complete(out) = d.handle_fragment(Time::from_secs(1), &p) {
                    prop_assert!(out.len() <= 65535);
                    let q = decode_ip(&out).unwrap();
                    prop_assert_eq!(q.ip.total_len, out.len());
                    prop_assert!(q.ip.frag.is_none());
                }
            }
        }
    }
}
