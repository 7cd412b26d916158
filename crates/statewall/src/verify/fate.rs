//! Matching the packets sent with the copies observed, and each packet's fate on both sides.
//!
//! Contract:
//! - A sent packet is identified by [`Key`]: source, destination, protocol and the bytes from the transport
//!   header to the end of the IP total length. Those are what the kernel never rewrites on our paths: a
//!   forwarded packet gets a new TTL and header checksum (`ip_forward`), a raw-socket packet a new total
//!   length, header checksum and, when it was 0, IP id (`raw_send_hdrinc`).
//! - Fragments are identified by their datagram (source, destination, protocol, IP id): defragmentation holds
//!   them and the datagram leaves re-fragmented or is delivered whole, so a fragment passed when any piece of
//!   its datagram came out.
//! - IPv6 packets are keyed the same way on their upper layer: source, destination, the protocol at the end
//!   of the extension header chain and its bytes (see [`super::ip6`]); the hop limit is all forwarding
//!   changes. A raw IPv6 socket delivers only the upper-layer bytes and the source address, so a packet
//!   delivered locally matches on source, protocol and bytes (the destination is one of the firewall's own
//!   addresses; TCP, UDP and ICMPv6 checksums cover it anyway).
//! - IPv6 fragments: a forwarded datagram leaves re-fragmented under an identification of the kernel's
//!   choosing, so both sides are reassembled ([`super::ip6::reassemble`]) and a fragment passed when its whole
//!   datagram came out (delivered, or forwarded in pieces). A datagram the kernel cannot reassemble has no
//!   whole form and can never be seen passing.
//! - Identical packets (retransmissions, duplicates) are compared as counts: the kernel passed
//!   `min(observed, sent)` of them. Which ones is unknowable, so [`fates`] gives the kernel's passes to the
//!   packets the engine passed first; only a difference in counts shows as disagreement.

use std::collections::{HashMap, HashSet};

use engine::{Decision, Disposition, PacketPath, Verdict};

use super::ip6;

/// A datagram: what all its fragments share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatagramId {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub id: u16,
}

/// What identifies a sent packet among the observed ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Packet {
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        l4: Vec<u8>,
    },
    Fragment(DatagramId),
    Packet6 {
        src: [u8; 16],
        dst: [u8; 16],
        proto: u8,
        l4: Vec<u8>,
    },
    /// An IPv6 fragment: its datagram, and the datagram's upper layer once reassembled (`None` when the sent
    /// fragments do not make a datagram the kernel accepts).
    Fragment6 {
        src: [u8; 16],
        dst: [u8; 16],
        id: u32,
        whole: Option<(u8, Vec<u8>)>,
    },
}

/// A packet passed (came out somewhere) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fate {
    Passed,
    Dropped,
}

struct Header<'a> {
    id: DatagramId,
    fragment: bool,
    l4: &'a [u8],
}

fn header(ip: &[u8]) -> Option<Header<'_>> {
    let b0 = *ip.first()?;
    if b0 >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(b0 & 0x0f) * 4;
    let tot = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let id = u16::from_be_bytes([*ip.get(4)?, *ip.get(5)?]);
    let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
    let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
    let end = tot.min(ip.len());
    let l4 = ip.get(ihl..end).unwrap_or(&[]);
    Some(Header { id: DatagramId { src, dst, proto: *ip.get(9)?, id }, fragment: frag & 0x3fff != 0, l4 })
}

/// The key of a packet about to be sent (`None` if it has no IP header to speak of). IPv6 fragments get no
/// whole form here: see [`sent_keys`].
pub fn sent_key(ip: &[u8]) -> Option<Key> {
    if ip.first().map(|b| b >> 4) == Some(6) {
        return Some(match view6(ip)? {
            View6::Whole(k) => k,
            View6::Fragment { src, dst, id, .. } => Key::Fragment6 { src, dst, id, whole: None },
        });
    }
    let h = header(ip)?;
    Some(if h.fragment {
        Key::Fragment(h.id)
    } else {
        Key::Packet { src: h.id.src, dst: h.id.dst, proto: h.id.proto, l4: h.l4.to_vec() }
    })
}

/// The keys of the packets sent, in order (`None` where nothing was sent), IPv6 fragments resolved to their
/// datagrams: the fragments of one datagram are collected in sending order until they reassemble; a later
/// fragment with the same identification starts a new datagram.
pub fn sent_keys(ips: &[Option<&[u8]>]) -> Vec<Option<Key>> {
    let mut keys: Vec<Option<Key>> = ips.iter().map(|ip| ip.and_then(sent_key)).collect();
    let mut open: HashMap<Id6, (Vec<usize>, Frags6)> = HashMap::new();
    let mut resolved: Vec<(Vec<usize>, Whole)> = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let Some(View6::Fragment { src, dst, id, piece, next }) = ip.and_then(view6) else { continue };
        let entry = open.entry((src, dst, id)).or_default();
        entry.0.push(i);
        if let Some(whole) = entry.1.add(piece, next) {
            if let Some((idx, _)) = open.remove(&(src, dst, id)) {
                resolved.push((idx, Some(whole)));
            }
        }
    }
    resolved.extend(open.into_values().map(|(idx, _)| (idx, None)));
    for (idx, whole) in resolved {
        for i in idx {
            if let Some(Some(Key::Fragment6 { whole: w, .. })) = keys.get_mut(i) {
                *w = whole.clone();
            }
        }
    }
    keys
}

type Id6 = ([u8; 16], [u8; 16], u32);
/// A datagram's upper layer: protocol and bytes.
type Whole = Option<(u8, Vec<u8>)>;

/// The fragments of one IPv6 datagram collected so far.
#[derive(Debug, Default)]
struct Frags6 {
    pieces: Vec<ip6::Piece>,
    /// The next header of the fragmentable part (from the first fragment).
    next: Option<u8>,
}

impl Frags6 {
    /// Adds a piece; the datagram's upper layer once it is complete.
    fn add(&mut self, piece: ip6::Piece, next: u8) -> Option<(u8, Vec<u8>)> {
        if piece.offset == 0 {
            self.next = Some(next);
        }
        self.pieces.push(piece);
        let whole = ip6::reassemble(&self.pieces)?;
        match ip6::walk(self.next?, &whole)? {
            ip6::Upper::Whole { proto, l4 } => Some((proto, l4.to_vec())),
            ip6::Upper::Fragment { .. } => None,
        }
    }
}

enum View6 {
    Whole(Key),
    Fragment { src: [u8; 16], dst: [u8; 16], id: u32, next: u8, piece: ip6::Piece },
}

fn view6(ip: &[u8]) -> Option<View6> {
    let h = ip6::header(ip)?;
    let (src, dst) = (h.src.octets(), h.dst.octets());
    Some(match ip6::walk(h.next, h.payload)? {
        ip6::Upper::Whole { proto, l4 } => View6::Whole(Key::Packet6 { src, dst, proto, l4: l4.to_vec() }),
        ip6::Upper::Fragment { id, offset, more, next, data } => {
            View6::Fragment { src, dst, id, next, piece: ip6::Piece { offset, more, data: data.to_vec() } }
        }
    })
}

/// Everything observed coming out of the kernel.
#[derive(Debug, Default)]
pub struct Observations {
    packets: HashMap<Key, u64>,
    datagrams: HashSet<DatagramId>,
    /// IPv6 packets delivered locally: source, protocol, upper-layer bytes.
    delivered6: HashMap<([u8; 16], u8, Vec<u8>), u64>,
    /// IPv6 fragments seen leaving, by the identification the kernel gave them, until they reassemble.
    frags6: HashMap<Id6, Frags6>,
    pub total: u64,
}

impl Observations {
    /// One IP packet seen leaving by a peer, or an IPv4 packet delivered to a local raw socket.
    pub fn handle_ip(&mut self, ip: &[u8]) {
        if ip.first().map(|b| b >> 4) == Some(6) {
            match view6(ip) {
                Some(View6::Whole(k)) => {
                    self.total += 1;
                    *self.packets.entry(k).or_insert(0) += 1;
                }
                Some(View6::Fragment { src, dst, id, next, piece }) => {
                    self.total += 1;
                    let f = self.frags6.entry((src, dst, id)).or_default();
                    if let Some((proto, l4)) = f.add(piece, next) {
                        self.frags6.remove(&(src, dst, id));
                        *self.packets.entry(Key::Packet6 { src, dst, proto, l4 }).or_insert(0) += 1;
                    }
                }
                None => {}
            }
            return;
        }
        let Some(h) = header(ip) else { return };
        self.total += 1;
        self.datagrams.insert(h.id);
        if !h.fragment {
            let k = Key::Packet { src: h.id.src, dst: h.id.dst, proto: h.id.proto, l4: h.l4.to_vec() };
            *self.packets.entry(k).or_insert(0) += 1;
        }
    }

    /// One IPv6 packet delivered to the local raw socket of protocol `proto` (which sees only the source
    /// address and the upper-layer bytes).
    pub fn handle_delivered6(&mut self, src: std::net::Ipv6Addr, proto: u8, l4: &[u8]) {
        self.total += 1;
        *self.delivered6.entry((src.octets(), proto, l4.to_vec())).or_insert(0) += 1;
    }

    fn count(&self, k: &Key) -> u64 {
        match k {
            Key::Packet { .. } => self.packets.get(k).copied().unwrap_or(0),
            Key::Fragment(d) => u64::from(self.datagrams.contains(d)),
            Key::Packet6 { src, proto, l4, .. } => {
                let delivered = self.delivered6.get(&(*src, *proto, l4.clone())).copied().unwrap_or(0);
                self.packets.get(k).copied().unwrap_or(0).saturating_add(delivered)
            }
            Key::Fragment6 { src, dst, whole: Some((proto, l4)), .. } => {
                let k = Key::Packet6 { src: *src, dst: *dst, proto: *proto, l4: l4.clone() };
                self.count(&k).min(1)
            }
            Key::Fragment6 { whole: None, .. } => 0,
        }
    }
}

/// The engine's view of one packet: passed, dropped, or not a verdict on its own (`None`: not filtered, or a
/// fragment held for its datagram).
pub fn engine_fate(d: &Decision) -> Option<Fate> {
    match &d.disposition {
        Disposition::Filtered => {
            let passed = d.path != Some(PacketPath::Prerouting)
                && !d.ct_dropped
                && matches!(d.verdict, None | Some(Verdict::Accept));
            Some(if passed { Fate::Passed } else { Fate::Dropped })
        }
        Disposition::Undecodable { .. }
        | Disposition::FragmentDropped { .. }
        | Disposition::IpInputDrop { .. } => Some(Fate::Dropped),
        Disposition::FragmentHeld | Disposition::NotIp { .. } | Disposition::NotFiltered { .. } => None,
    }
}

/// One compared packet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PacketFate {
    /// 0-based record index in the capture.
    pub index: usize,
    pub kernel: Fate,
    pub engine: Fate,
    /// How many sent packets share this packet's key (identical packets, or fragments of one datagram).
    pub group: usize,
}

/// Kernel and engine fates of the sent packets. `keys[i]` is `Some` for each record that was sent (and
/// reached the kernel); `engine[i]` is [`engine_fate`] of record `i`.
pub fn fates(keys: &[Option<Key>], engine: &[Option<Fate>], obs: &Observations) -> Vec<PacketFate> {
    let mut groups: HashMap<&Key, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        if let Some(k) = k {
            groups.entry(k).or_default().push(i);
        }
    }
    let mut out: Vec<PacketFate> = Vec::new();
    for (k, idx) in &groups {
        let eng = |i: usize| engine.get(i).copied().flatten();
        match k {
            Key::Fragment(_) | Key::Fragment6 { .. } => {
                // The datagram's fate is decided on the fragment that completes it; all its fragments share it.
                let e = if idx.iter().any(|&i| eng(i) == Some(Fate::Passed)) {
                    Fate::Passed
                } else {
                    Fate::Dropped
                };
                let kf = if obs.count(k) > 0 { Fate::Passed } else { Fate::Dropped };
                for &i in idx {
                    out.push(PacketFate { index: i, kernel: kf, engine: e, group: idx.len() });
                }
            }
            Key::Packet { .. } | Key::Packet6 { .. } => {
                let n = idx.len() as u64;
                let mut kernel_left = obs.count(k).min(n);
                let mut order: Vec<usize> = idx.clone();
                // Give the kernel's passes to the packets the engine passed first (stable within each class).
                order.sort_by_key(|&i| (eng(i) != Some(Fate::Passed), i));
                for i in order {
                    let kf = if kernel_left > 0 {
                        kernel_left -= 1;
                        Fate::Passed
                    } else {
                        Fate::Dropped
                    };
                    let e = eng(i).unwrap_or(Fate::Dropped);
                    out.push(PacketFate { index: i, kernel: kf, engine: e, group: idx.len() });
                }
            }
        }
    }
    out.sort_by_key(|f| f.index);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::verify::plan::tests::udp_ip;

    const A: [u8; 4] = [203, 0, 113, 80];
    const B: [u8; 4] = [192, 0, 2, 10];

    #[test]
    fn forwarded_copy_matches_despite_ttl_checksum_and_id() {
        let sent = udp_ip(A, B, 4000, 53, b"query", 0, 0);
        let mut seen = sent.clone();
        seen[8] -= 1; // TTL, decremented by ip_forward
        seen[10] = 0xab; // header checksum
        seen[4] = 0x77; // fresh id from a raw socket
        let mut obs = Observations::default();
        obs.handle_ip(&seen);
        let k = sent_key(&sent).unwrap();
        assert_eq!(obs.count(&k), 1);
        let other = udp_ip(A, B, 4000, 53, b"QUERY", 0, 0);
        assert_eq!(obs.count(&sent_key(&other).unwrap()), 0, "payload differs");
    }

    #[test]
    fn retransmissions_compare_as_counts() {
        // Three identical datagrams at t=0, 1, 2 ms; the kernel let two through; the engine passed the last two.
        let p = udp_ip(A, B, 4000, 53, b"again", 1, 0);
        let keys = vec![sent_key(&p), sent_key(&p), sent_key(&p)];
        let mut obs = Observations::default();
        obs.handle_ip(&p);
        obs.handle_ip(&p);
        let engine = vec![Some(Fate::Dropped), Some(Fate::Passed), Some(Fate::Passed)];
        let f = fates(&keys, &engine, &obs);
        assert!(f.iter().all(|x| x.kernel == x.engine && x.group == 3), "{f:?}");
        // If the engine passes all three, exactly one disagreement.
        let engine = vec![Some(Fate::Passed); 3];
        let f = fates(&keys, &engine, &obs);
        assert_eq!(f.iter().filter(|x| x.kernel != x.engine).count(), 1);
    }

    #[test]
    fn fragments_follow_their_datagram() {
        let first = udp_ip(A, B, 4000, 53, &[1; 16], 0x4242, 0x2000); // MF
        let second = udp_ip(A, B, 4000, 53, &[2; 16], 0x4242, 3); // offset 24
        let keys = vec![sent_key(&first), None, sent_key(&second)];
        // The engine held the first fragment and accepted the datagram on the second.
        let engine = vec![None, None, Some(Fate::Passed)];
        let mut obs = Observations::default();
        let reassembled = udp_ip(A, B, 4000, 53, &[1; 40], 0x4242, 0);
        obs.handle_ip(&reassembled);
        let f = fates(&keys, &engine, &obs);
        assert_eq!(f.len(), 2);
        assert!(f.iter().all(|x| x.kernel == Fate::Passed && x.engine == Fate::Passed && x.group == 2));
        // Nothing came out: both fragments dropped by the kernel, disagreeing with the engine.
        let f = fates(&keys, &engine, &Observations::default());
        assert!(f.iter().all(|x| x.kernel == Fate::Dropped && x.engine == Fate::Passed));
    }

    use crate::verify::ip6::tests::{frag, ip6, A as A6, B as B6};

    fn udp6(payload: &[u8]) -> Vec<u8> {
        let mut u = vec![0x10, 0x00, 0x00, 0x35];
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0xbe, 0xef]);
        u.extend_from_slice(payload);
        u
    }

    #[test]
    fn ipv6_forwarded_and_delivered_copies_match() {
        let sent = ip6(A6, B6, 17, &udp6(b"query"));
        let mut forwarded = sent.clone();
        forwarded[7] -= 1; // hop limit, decremented by ip6_forward
        let mut obs = Observations::default();
        obs.handle_ip(&forwarded);
        let k = sent_key(&sent).unwrap();
        assert_eq!(obs.count(&k), 1);
        assert_eq!(obs.count(&sent_key(&ip6(A6, B6, 17, &udp6(b"QUERY"))).unwrap()), 0);
        // Delivered locally: the raw socket gave the UDP bytes and the source only.
        let mut obs = Observations::default();
        obs.handle_delivered6(A6.parse().unwrap(), 17, &udp6(b"query"));
        assert_eq!(obs.count(&k), 1);
        let from_elsewhere = ip6("2001:db8:3::1", B6, 17, &udp6(b"query"));
        assert_eq!(obs.count(&sent_key(&from_elsewhere).unwrap()), 0, "another source");
        // Destination options in front of UDP: the key is the upper layer.
        let mut opts = vec![17, 0, 1, 4, 0, 0, 0, 0];
        opts.extend_from_slice(&udp6(b"query"));
        let with_opts = ip6(A6, B6, 60, &opts);
        assert_eq!(obs.count(&sent_key(&with_opts).unwrap()), 1);
    }

    #[test]
    fn ipv6_fragments_follow_their_reassembled_datagram() {
        // t=0, t=1: a UDP datagram in two fragments (id 7); t=2: a lone fragment that never completes.
        let udp = udp6(&[5; 24]); // 32 bytes
        let piece = |offset: usize, more: bool, id: u32| {
            let mut f = frag(17, offset, more, id);
            f.extend_from_slice(&udp[offset..if more { offset + 16 } else { udp.len() }]);
            ip6(A6, B6, 44, &f)
        };
        let sent = [piece(0, true, 7), piece(16, false, 7), piece(0, true, 8)];
        let keys = sent_keys(&[Some(&sent[0]), None, Some(&sent[1]), Some(&sent[2])]);
        assert_eq!(keys[0], keys[2], "one datagram");
        assert!(matches!(&keys[0], Some(Key::Fragment6 { whole: Some((17, l4)), .. }) if *l4 == udp));
        assert!(matches!(&keys[3], Some(Key::Fragment6 { whole: None, .. })));
        // The kernel forwarded it re-fragmented at other boundaries, under its own identification.
        let mut obs = Observations::default();
        for (offset, end, more) in [(0, 8, true), (8, 32, false)] {
            let mut f = frag(17, offset, more, 0xdead);
            f.extend_from_slice(&udp[offset..end]);
            obs.handle_ip(&ip6(A6, B6, 44, &f));
        }
        let engine = vec![None, None, Some(Fate::Passed), Some(Fate::Dropped)];
        let f = fates(&keys, &engine, &obs);
        assert_eq!(f.len(), 3);
        assert!(f.iter().all(|x| x.kernel == x.engine), "{f:?}");
        assert_eq!((f[0].kernel, f[0].group), (Fate::Passed, 2));
        // Delivered whole instead: the same verdict.
        let mut obs = Observations::default();
        obs.handle_delivered6(A6.parse().unwrap(), 17, &udp);
        assert!(fates(&keys, &engine, &obs).iter().all(|x| x.kernel == x.engine));
        // Nothing came out: the datagram was dropped.
        let f = fates(&keys, &engine, &Observations::default());
        assert_eq!(f.iter().filter(|x| x.kernel != x.engine).count(), 2);
    }
}
