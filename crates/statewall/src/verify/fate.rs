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
//! - Identical packets (retransmissions, duplicates) are compared as counts: the kernel passed
//!   `min(observed, sent)` of them. Which ones is unknowable, so [`fates`] gives the kernel's passes to the
//!   packets the engine passed first; only a difference in counts shows as disagreement.

use std::collections::{HashMap, HashSet};

use engine::{Decision, Disposition, PacketPath, Verdict};

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
    Packet { src: [u8; 4], dst: [u8; 4], proto: u8, l4: Vec<u8> },
    Fragment(DatagramId),
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

/// The key of a packet about to be sent (`None` if it has no IPv4 header to speak of).
pub fn sent_key(ip: &[u8]) -> Option<Key> {
    let h = header(ip)?;
    Some(if h.fragment {
        Key::Fragment(h.id)
    } else {
        Key::Packet { src: h.id.src, dst: h.id.dst, proto: h.id.proto, l4: h.l4.to_vec() }
    })
}

/// Everything observed coming out of the kernel.
#[derive(Debug, Default)]
pub struct Observations {
    packets: HashMap<Key, u64>,
    datagrams: HashSet<DatagramId>,
    pub total: u64,
}

impl Observations {
    /// One IPv4 packet seen leaving by a peer or delivered to a local raw socket.
    pub fn handle_ip(&mut self, ip: &[u8]) {
        let Some(h) = header(ip) else { return };
        self.total += 1;
        self.datagrams.insert(h.id);
        if !h.fragment {
            let k = Key::Packet { src: h.id.src, dst: h.id.dst, proto: h.id.proto, l4: h.l4.to_vec() };
            *self.packets.entry(k).or_insert(0) += 1;
        }
    }

    fn count(&self, k: &Key) -> u64 {
        match k {
            Key::Packet { .. } => self.packets.get(k).copied().unwrap_or(0),
            Key::Fragment(d) => u64::from(self.datagrams.contains(d)),
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
            Key::Fragment(_) => {
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
            Key::Packet { .. } => {
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
}
