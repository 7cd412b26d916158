//! IP reassembly as netfilter's defrag hooks do it (`nf_defrag_ipv4` → `ip_defrag`,
//! `nf_defrag_ipv6` → `nf_ct_frag6_gather`), before the raw table. Sans-IO: time is an argument.
//!
//! Contract (behaviour of `net/ipv4/ip_fragment.c`, `net/ipv4/inet_fragment.c`,
//! `net/ipv6/netfilter/nf_conntrack_reasm.c`, Linux 6.x):
//! - Queues are keyed by (src, dst, protocol, id) for IPv4 and (src, dst, id) for IPv6. A queue
//!   expires `ipfrag_time` (30 s) / `nf_conntrack_frag6_timeout` (60 s) after it was *created*;
//!   later fragments do not extend it.
//! - Fragments are kept as contiguous "runs". A fragment entirely inside an existing run is a
//!   duplicate: it is dropped and the queue kept. Any other overlap drops the whole queue
//!   (RFC 5722 behaviour, applied to IPv4 too since 2018).
//! - IPv4: a non-last fragment whose length is not a multiple of 8 is trimmed; an inconsistent
//!   last fragment, data beyond a known end, or an empty fragment drops the whole queue. IPv6: a
//!   non-last fragment not a multiple of 8 drops the queue and the fragment itself continues
//!   unreassembled ([`DefragResult::Unchanged`]); the other inconsistencies only drop the fragment.
//! - When the first and last fragments are in and every byte is present, the datagram is rebuilt:
//!   IPv4 with the first fragment's header, new total length, DF only if the largest fragment had
//!   DF, recomputed header checksum; IPv6 with the first fragment's unfragmentable part, the
//!   fragment header removed and the payload length fixed. ECN bits are merged as
//!   `ip_frag_ecn_table` does (Not-ECT mixed with ECT/CE is invalid: the queue is dropped).
//!   A result larger than 65535 bytes is dropped.
//! - Memory: each queue and fragment is charged an approximation of the kernel's accounting
//!   (queue size + skb truesize). While the charge exceeds `high_thresh` (4 MiB), every fragment is
//!   dropped, as `inet_frag_find` refuses to look up or create queues (there is no LRU eviction
//!   since Linux 4.17).
//! - Left out: `ipfrag_max_dist` (reinitialising a queue after 64 other fragments from the same
//!   source), per-interface keys for link-local IPv6, conntrack zones.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::checksum::internet_checksum;
use crate::packet::Packet;
use crate::time::Time;

/// Outcome of feeding one packet to [`Defrag::handle_fragment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefragResult {
    /// The datagram is complete: its reassembled bytes (from the IP header on).
    Complete(Vec<u8>),
    /// The fragment was queued; nothing continues for now.
    Held,
    /// The fragment (and possibly its queue) was dropped.
    Dropped { reason: &'static str },
    /// The packet continues unchanged: not a fragment, or an IPv6 fragment netfilter lets through
    /// without reassembly (non-last fragment whose length is not a multiple of 8).
    Unchanged,
}

/// Tunables (kernel defaults in [`Default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragConfig {
    /// `net.ipv4.ipfrag_time`.
    pub ipv4_timeout_secs: u64,
    /// `net.netfilter.nf_conntrack_frag6_timeout`.
    pub ipv6_timeout_secs: u64,
    /// `ipfrag_high_thresh` / `nf_conntrack_frag6_high_thresh`, per family, in bytes.
    pub high_thresh: usize,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig { ipv4_timeout_secs: 30, ipv6_timeout_secs: 60, high_thresh: 4 * 1024 * 1024 }
    }
}

/// Counters (in the spirit of the `Ip: Reasm*` SNMP counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefragStats {
    pub reassembled: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub overlaps: u64,
    pub duplicates: u64,
    /// Fragments refused because of the memory limit.
    pub over_limit: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum FragKey {
    V4 { src: [u8; 4], dst: [u8; 4], proto: u8, id: u16 },
    V6 { src: [u8; 16], dst: [u8; 16], id: u32 },
}

impl FragKey {
    fn is_v6(&self) -> bool {
        matches!(self, FragKey::V6 { .. })
    }
}

/// A contiguous stretch of received data.
#[derive(Debug)]
struct Run {
    start: usize,
    end: usize,
    data: Vec<u8>,
}

#[derive(Debug)]
struct Queue {
    deadline: Time,
    serial: u64,
    runs: Vec<Run>,
    /// Known or presumed end of the datagram payload.
    len: usize,
    /// Bytes received.
    meat: usize,
    first_in: bool,
    last_in: bool,
    /// IPv4: the first fragment's IP header. IPv6: its unfragmentable part (before the fragment
    /// header).
    head: Vec<u8>,
    /// IPv6: offset in `head` of the next-header byte that names the fragment header.
    nhoff: usize,
    /// IPv6: next header carried by the first fragment's fragment header.
    frag_next: u8,
    ecn: u8,
    max_size: usize,
    max_df_size: usize,
    /// Memory charged for this queue.
    mem: usize,
}

/// Approximate kernel `sizeof(struct ipq)` / `frag_queue`.
const QUEUE_SIZE: usize = 200;

/// Approximate skb truesize of a received frame carrying `ip_len` bytes of IP (driver dependent in
/// the kernel; a 1500-byte frame is 2944 bytes, as the `ip_fragment.c` comment states).
fn truesize(ip_len: usize) -> usize {
    (ip_len + 14 + 320).next_power_of_two() + 896
}

const ECN_NOT_ECT: u8 = 1;
const ECN_ECT_1: u8 = 2;
const ECN_ECT_0: u8 = 4;
const ECN_CE: u8 = 8;

/// `ip_frag_ecn_table`: the ECN codepoint to OR into the header, or `None` when the mix is invalid.
fn ecn_merge(bits: u8) -> Option<u8> {
    if bits & ECN_NOT_ECT != 0 && bits & (ECN_ECT_0 | ECN_ECT_1 | ECN_CE) != 0 {
        None
    } else if bits & ECN_CE != 0 && bits & (ECN_ECT_0 | ECN_ECT_1) != 0 {
        Some(3)
    } else {
        Some(0)
    }
}

fn ecn_bit(codepoint: u8) -> u8 {
    1 << (codepoint & 3)
}

enum Step {
    Queued,
    Dup,
    /// Drop the fragment, keep the queue.
    DropFrag(&'static str),
    /// Drop the fragment and the whole queue.
    Kill(&'static str),
    /// IPv6: drop the queue, let the fragment through.
    KillPass,
}

enum Insert {
    Ok,
    Dup,
    Overlap,
}

/// `inet_frag_queue_insert` over runs.
fn insert_run(runs: &mut Vec<Run>, offset: usize, end: usize, data: &[u8]) -> Insert {
    match runs.last_mut() {
        None => {}
        Some(last) if last.end < end => {
            if offset < last.end {
                return Insert::Overlap;
            }
            if offset == last.end {
                last.data.extend_from_slice(data);
                last.end = end;
                return Insert::Ok;
            }
        }
        Some(_) => {
            let mut at = runs.len();
            for (i, r) in runs.iter().enumerate() {
                if end <= r.start {
                    at = i;
                    break;
                }
                if offset >= r.end {
                    continue;
                }
                return if offset >= r.start && end <= r.end { Insert::Dup } else { Insert::Overlap };
            }
            runs.insert(at, Run { start: offset, end, data: data.to_vec() });
            return Insert::Ok;
        }
    }
    runs.push(Run { start: offset, end, data: data.to_vec() });
    Insert::Ok
}

/// Locate the IPv6 fragment header: (offset of the next-header byte naming it, its offset).
fn find_frag_header(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut next = *bytes.get(6)?;
    let mut nhoff = 6usize;
    let mut off = 40usize;
    loop {
        let len = match next {
            44 => return Some((nhoff, off)),
            0 | 43 | 60 => (usize::from(*bytes.get(off + 1)?) + 1) * 8,
            51 => (usize::from(*bytes.get(off + 1)?) + 2) * 4,
            _ => return None,
        };
        nhoff = off;
        next = *bytes.get(off)?;
        off = off.checked_add(len)?;
        if off > bytes.len() {
            return None;
        }
    }
}

/// The reassembler.
#[derive(Debug, Default)]
pub struct Defrag {
    config: DefragConfig,
    queues: HashMap<FragKey, Queue>,
    deadlines: BTreeMap<(Time, u64), FragKey>,
    next_serial: u64,
    mem_v4: usize,
    mem_v6: usize,
    stats: DefragStats,
}

impl Defrag {
    pub fn new(config: DefragConfig) -> Self {
        Defrag { config, ..Default::default() }
    }

    pub fn stats(&self) -> DefragStats {
        self.stats
    }

    /// Number of incomplete datagrams held.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// When the next queue expires.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.deadlines.keys().next().map(|(t, _)| *t)
    }

    /// Expire every queue whose deadline is at or before `now`; returns how many.
    pub fn handle_timeout(&mut self, now: Time) -> usize {
        let mut n = 0;
        while let Some((&(t, serial), &key)) = self.deadlines.iter().next() {
            if t > now {
                break;
            }
            self.deadlines.remove(&(t, serial));
            self.remove_queue(&key);
            self.stats.timeouts += 1;
            self.stats.failed += 1;
            n += 1;
        }
        n
    }

    fn mem_mut(&mut self, v6: bool) -> &mut usize {
        if v6 {
            &mut self.mem_v6
        } else {
            &mut self.mem_v4
        }
    }

    fn remove_queue(&mut self, key: &FragKey) -> Option<Queue> {
        let q = self.queues.remove(key)?;
        self.deadlines.remove(&(q.deadline, q.serial));
        let mem = self.mem_mut(key.is_v6());
        *mem = mem.saturating_sub(q.mem);
        Some(q)
    }

    fn kill(&mut self, key: &FragKey, reason: &'static str) -> DefragResult {
        self.remove_queue(key);
        self.stats.failed += 1;
        DefragResult::Dropped { reason }
    }

    /// Feed one packet. Non-fragments give [`DefragResult::Unchanged`]. Queues whose deadline
    /// has passed are expired first (counted in [`DefragStats::timeouts`]).
    pub fn handle_fragment(&mut self, now: Time, pkt: &Packet) -> DefragResult {
        self.handle_timeout(now);
        let Some(frag) = pkt.ip.frag else {
            return DefragResult::Unchanged;
        };
        let total = pkt.ip.total_len;
        let Some(bytes) = pkt.bytes.get(..total) else {
            return DefragResult::Dropped { reason: "fragment not fully captured" };
        };
        let (key, hdr_end, head_end, nhoff, frag_next, ecn, df) = match (pkt.ip.src, pkt.ip.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let key = FragKey::V4 {
                    src: s.octets(),
                    dst: d.octets(),
                    proto: pkt.ip.proto,
                    id: pkt.ip.id as u16,
                };
                let hl = pkt.ip.header_len;
                (key, hl, hl, 0, 0, ecn_bit(pkt.ip.tos), pkt.ip.df)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let Some((nhoff, fhoff)) = find_frag_header(bytes) else {
                    return DefragResult::Unchanged;
                };
                let frag_next = bytes.get(fhoff).copied().unwrap_or(59);
                let key = FragKey::V6 { src: s.octets(), dst: d.octets(), id: pkt.ip.id };
                (key, fhoff + 8, fhoff, nhoff, frag_next, ecn_bit(pkt.ip.tos), false)
            }
            _ => return DefragResult::Dropped { reason: "mixed address families" },
        };
        let v6 = key.is_v6();
        let Some(payload) = bytes.get(hdr_end..) else {
            return DefragResult::Dropped { reason: "fragment header beyond datagram" };
        };
        let offset = usize::from(frag.offset);
        let mut end = offset + payload.len();
        if v6 && end > 65535 {
            return DefragResult::Dropped { reason: "fragment offset too large" };
        }
        if *self.mem_mut(v6) > self.config.high_thresh {
            self.stats.over_limit += 1;
            self.stats.failed += 1;
            return DefragResult::Dropped { reason: "fragment memory above high_thresh" };
        }
        if !self.queues.contains_key(&key) {
            let secs = if v6 { self.config.ipv6_timeout_secs } else { self.config.ipv4_timeout_secs };
            let serial = self.next_serial;
            self.next_serial += 1;
            let deadline = now.add_secs(secs);
            self.deadlines.insert((deadline, serial), key);
            self.queues.insert(
                key,
                Queue {
                    deadline,
                    serial,
                    runs: Vec::new(),
                    len: 0,
                    meat: 0,
                    first_in: false,
                    last_in: false,
                    head: Vec::new(),
                    nhoff: 0,
                    frag_next: 0,
                    ecn: 0,
                    max_size: 0,
                    max_df_size: 0,
                    mem: QUEUE_SIZE,
                },
            );
            *self.mem_mut(v6) += QUEUE_SIZE;
        }
        let Some(q) = self.queues.get_mut(&key) else {
            return DefragResult::Dropped { reason: "no queue" };
        };
        // The checks of ip_frag_queue / nf_ct_frag6_queue, in their order.
        let step = 'step: {
            if !frag.more {
                if end < q.len || (q.last_in && end != q.len) {
                    break 'step if v6 {
                        Step::DropFrag("inconsistent last fragment")
                    } else {
                        Step::Kill("inconsistent last fragment")
                    };
                }
                q.last_in = true;
                q.len = end;
            } else {
                if end & 7 != 0 {
                    if v6 {
                        break 'step Step::KillPass;
                    }
                    end &= !7;
                }
                if end > q.len {
                    if q.last_in {
                        break 'step if v6 {
                            Step::DropFrag("data beyond the last fragment")
                        } else {
                            Step::Kill("data beyond the last fragment")
                        };
                    }
                    q.len = end;
                }
            }
            if end == offset {
                break 'step if v6 { Step::DropFrag("empty fragment") } else { Step::Kill("empty fragment") };
            }
            let data = payload.get(..end - offset).unwrap_or(payload);
            match insert_run(&mut q.runs, offset, end, data) {
                Insert::Dup => Step::Dup,
                Insert::Overlap => Step::Kill("overlapping fragment"),
                Insert::Ok => Step::Queued,
            }
        };
        match step {
            Step::Queued => {}
            Step::Dup => {
                self.stats.duplicates += 1;
                return DefragResult::Dropped { reason: "duplicate fragment" };
            }
            Step::DropFrag(reason) => {
                self.stats.failed += 1;
                return DefragResult::Dropped { reason };
            }
            Step::Kill(reason) => {
                if reason == "overlapping fragment" {
                    self.stats.overlaps += 1;
                }
                return self.kill(&key, reason);
            }
            Step::KillPass => {
                self.remove_queue(&key);
                self.stats.failed += 1;
                return DefragResult::Unchanged;
            }
        }
        let charge = truesize(total);
        q.mem += charge;
        q.meat += end - offset;
        q.ecn |= ecn;
        if offset == 0 {
            q.first_in = true;
            q.head = bytes.get(..head_end).unwrap_or(&[]).to_vec();
            q.nhoff = nhoff;
            q.frag_next = frag_next;
        }
        let fragsize = end - offset + hdr_end;
        q.max_size = q.max_size.max(fragsize);
        if df {
            q.max_df_size = q.max_df_size.max(fragsize);
        }
        let done = q.first_in && q.last_in && q.meat == q.len;
        *self.mem_mut(v6) += charge;
        if !done {
            return DefragResult::Held;
        }
        let Some(q) = self.remove_queue(&key) else {
            return DefragResult::Dropped { reason: "no queue" };
        };
        match reassemble(&q, v6) {
            Ok(bytes) => {
                self.stats.reassembled += 1;
                DefragResult::Complete(bytes)
            }
            Err(reason) => {
                self.stats.failed += 1;
                DefragResult::Dropped { reason }
            }
        }
    }
}

/// Build the datagram of a complete queue (`ip_frag_reasm` / `nf_ct_frag6_reasm`).
fn reassemble(q: &Queue, v6: bool) -> Result<Vec<u8>, &'static str> {
    let ecn = ecn_merge(q.ecn).ok_or("invalid ECN mix across fragments")?;
    let mut out = q.head.clone();
    if v6 {
        let payload_len = (q.head.len().saturating_sub(40)) + q.len;
        let pl = u16::try_from(payload_len).map_err(|_| "reassembled datagram larger than 65535 bytes")?;
        out.reserve(q.len);
        if let Some(b) = out.get_mut(q.nhoff) {
            *b = q.frag_next;
        }
        if let Some(b) = out.get_mut(4..6) {
            b.copy_from_slice(&pl.to_be_bytes());
        }
        if let Some(b) = out.get_mut(1) {
            *b |= ecn << 4;
        }
    } else {
        let total = q.head.len() + q.len;
        let tl = u16::try_from(total).map_err(|_| "reassembled datagram larger than 65535 bytes")?;
        out.reserve(q.len);
        if let Some(b) = out.get_mut(2..4) {
            b.copy_from_slice(&tl.to_be_bytes());
        }
        if let Some(b) = out.get_mut(1) {
            *b |= ecn;
        }
        let frag_off: u16 = if q.max_df_size == q.max_size { 0x4000 } else { 0 };
        if let Some(b) = out.get_mut(6..8) {
            b.copy_from_slice(&frag_off.to_be_bytes());
        }
        if let Some(b) = out.get_mut(10..12) {
            b.copy_from_slice(&[0, 0]);
        }
        let csum = internet_checksum(&out);
        if let Some(b) = out.get_mut(10..12) {
            b.copy_from_slice(&csum.to_be_bytes());
        }
    }
    for r in &q.runs {
        out.extend_from_slice(&r.data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::checksum::ipv4_header_ok;
    use crate::packet::{decode_ip, L4};
    use etherparse::PacketBuilder;

    /// A UDP datagram with `n` payload bytes (0, 1, 2, ...).
    fn udp_v4(n: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1234, 53)
            .write(&mut out, &payload)
            .unwrap();
        out[4..6].copy_from_slice(&0x4242u16.to_be_bytes());
        out[6..8].copy_from_slice(&[0, 0]); // no DF: the fragments below carry none either
        out[10..12].copy_from_slice(&[0, 0]);
        let c = internet_checksum(&out[..20]);
        out[10..12].copy_from_slice(&c.to_be_bytes());
        out
    }

    /// Fragment `dgram` (20-byte header) at payload offsets [start, end).
    fn frag_v4(dgram: &[u8], start: usize, end: usize, more: bool) -> Vec<u8> {
        let mut f = dgram[..20].to_vec();
        f.extend_from_slice(&dgram[20 + start..20 + end]);
        let tl = f.len() as u16;
        f[2..4].copy_from_slice(&tl.to_be_bytes());
        let field = (start / 8) as u16 | if more { 0x2000 } else { 0 };
        f[6..8].copy_from_slice(&field.to_be_bytes());
        f[10..12].copy_from_slice(&[0, 0]);
        let c = internet_checksum(&f[..20]);
        f[10..12].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn feed(d: &mut Defrag, t: u64, bytes: &[u8]) -> DefragResult {
        d.handle_fragment(Time::from_secs(t), &decode_ip(bytes).unwrap())
    }

    #[test]
    fn in_order_reassembly() {
        let dg = udp_v4(100); // 108 bytes of UDP
        let mut d = Defrag::default();
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 0, 48, true)), DefragResult::Held);
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 48, 96, true)), DefragResult::Held);
        let DefragResult::Complete(out) = feed(&mut d, 2, &frag_v4(&dg, 96, 108, false)) else { panic!() };
        assert_eq!(out, dg);
        assert!(ipv4_header_ok(&out));
        let p = decode_ip(&out).unwrap();
        assert!(matches!(p.l4, L4::Udp(_)));
        assert_eq!(crate::checksum::l4_checksum_ok(&p), Some(true));
        assert_eq!(d.queue_count(), 0);
        assert_eq!(d.stats().reassembled, 1);
        assert_eq!(d.mem_v4, 0);
    }

    #[test]
    fn out_of_order_reassembly() {
        let dg = udp_v4(100);
        let mut d = Defrag::default();
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 96, 108, false)), DefragResult::Held);
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 0, 48, true)), DefragResult::Held);
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 48, 96, true)), DefragResult::Complete(dg.clone()));
    }

    #[test]
    fn duplicate_is_dropped_queue_kept() {
        let dg = udp_v4(100);
        let mut d = Defrag::default();
        let f0 = frag_v4(&dg, 0, 48, true);
        assert_eq!(feed(&mut d, 1, &f0), DefragResult::Held);
        assert_eq!(feed(&mut d, 1, &f0), DefragResult::Dropped { reason: "duplicate fragment" });
        // Contained in the run, not identical: also a duplicate.
        assert_eq!(
            feed(&mut d, 1, &frag_v4(&dg, 8, 24, true)),
            DefragResult::Dropped { reason: "duplicate fragment" }
        );
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 48, 108, false)), DefragResult::Complete(dg));
        assert_eq!(d.stats().duplicates, 2);
    }

    #[test]
    fn overlap_drops_whole_queue() {
        let dg = udp_v4(100);
        let mut d = Defrag::default();
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 0, 48, true)), DefragResult::Held);
        assert_eq!(
            feed(&mut d, 1, &frag_v4(&dg, 40, 96, true)),
            DefragResult::Dropped { reason: "overlapping fragment" }
        );
        assert_eq!(d.queue_count(), 0);
        // The rest arrives: a new queue, never complete without the head.
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 48, 108, false)), DefragResult::Held);
        assert_eq!(d.stats().overlaps, 1);
    }

    #[test]
    fn overlap_spanning_two_runs() {
        let dg = udp_v4(100);
        let mut d = Defrag::default();
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 96, 108, false)), DefragResult::Held);
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 0, 16, true)), DefragResult::Held);
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 16, 32, true)), DefragResult::Held);
        // [0,16) and [16,32) are separate runs (the second was not appended at the tail):
        // a fragment covering both is an overlap, not a duplicate.
        assert_eq!(
            feed(&mut d, 1, &frag_v4(&dg, 8, 24, true)),
            DefragResult::Dropped { reason: "overlapping fragment" }
        );
    }

    #[test]
    fn timeout_from_creation() {
        let dg = udp_v4(100);
        let mut d = Defrag::default();
        assert_eq!(feed(&mut d, 100, &frag_v4(&dg, 0, 48, true)), DefragResult::Held);
        assert_eq!(d.poll_timeout(), Some(Time::from_secs(130)));
        // A later fragment does not extend the deadline.
        assert_eq!(feed(&mut d, 120, &frag_v4(&dg, 48, 96, true)), DefragResult::Held);
        assert_eq!(d.poll_timeout(), Some(Time::from_secs(130)));
        assert_eq!(d.handle_timeout(Time::from_secs(129)), 0);
        assert_eq!(d.handle_timeout(Time::from_secs(130)), 1);
        assert_eq!(d.poll_timeout(), None);
        assert_eq!(d.queue_count(), 0);
        // The tail after expiry starts a fresh queue.
        assert_eq!(feed(&mut d, 131, &frag_v4(&dg, 96, 108, false)), DefragResult::Held);
        assert_eq!(d.stats().timeouts, 1);
    }

    #[test]
    fn expiry_happens_before_a_late_fragment() {
        let dg = udp_v4(100);
        let mut d = Defrag::default();
        assert_eq!(feed(&mut d, 0, &frag_v4(&dg, 0, 96, true)), DefragResult::Held);
        assert_eq!(feed(&mut d, 31, &frag_v4(&dg, 96, 108, false)), DefragResult::Held);
        assert_eq!(d.stats().timeouts, 1);
    }

    #[test]
    fn inconsistent_last_fragment_kills_queue() {
        let dg = udp_v4(100);
        let mut d = Defrag::default();
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 96, 108, false)), DefragResult::Held);
        assert!(matches!(feed(&mut d, 1, &frag_v4(&dg, 48, 104, false)), DefragResult::Dropped { .. }));
        assert_eq!(d.queue_count(), 0);
        // Data beyond a known end.
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 48, 56, false)), DefragResult::Held);
        assert_eq!(
            feed(&mut d, 1, &frag_v4(&dg, 56, 64, true)),
            DefragResult::Dropped { reason: "data beyond the last fragment" }
        );
    }

    #[test]
    fn non_multiple_of_8_is_trimmed() {
        let dg = udp_v4(100);
        let mut d = Defrag::default();
        // 50 bytes with MF: trimmed to 48.
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 0, 50, true)), DefragResult::Held);
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 48, 108, false)), DefragResult::Complete(dg));
    }

    #[test]
    fn oversized_datagram_dropped() {
        let dg = udp_v4(1480);
        let mut d = Defrag::default();
        assert_eq!(feed(&mut d, 1, &frag_v4(&dg, 0, 1480, true)), DefragResult::Held);
        // Last fragment at offset 65520 with 100 bytes: 20 + 65620 > 65535.
        let mut last = frag_v4(&dg, 0, 100, false);
        last[6..8].copy_from_slice(&((65520 / 8) as u16).to_be_bytes());
        last[10..12].copy_from_slice(&[0, 0]);
        let c = internet_checksum(&last[..20]);
        last[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(feed(&mut d, 1, &last), DefragResult::Held);
        assert_eq!(d.queue_count(), 1);
    }

    #[test]
    fn memory_limit_refuses_fragments() {
        let dg = udp_v4(100);
        let mut d = Defrag::new(DefragConfig { high_thresh: 10_000, ..Default::default() });
        let mut held = 0;
        for id in 0..100u16 {
            let mut f = frag_v4(&dg, 0, 48, true);
            f[4..6].copy_from_slice(&id.to_be_bytes());
            match feed(&mut d, 1, &f) {
                DefragResult::Held => held += 1,
                DefragResult::Dropped { reason } => assert_eq!(reason, "fragment memory above high_thresh"),
                other => panic!("{other:?}"),
            }
        }
        assert!(held > 0 && held < 100, "{held}");
        assert!(d.stats().over_limit > 0);
        // Expiry frees memory: fragments are accepted again.
        d.handle_timeout(Time::from_secs(100));
        assert_eq!(feed(&mut d, 100, &frag_v4(&dg, 0, 48, true)), DefragResult::Held);
    }

    #[test]
    fn df_and_ecn_in_reassembled_header() {
        let dg = udp_v4(100);
        let mut d = Defrag::default();
        let mut a = frag_v4(&dg, 0, 96, true);
        let mut b = frag_v4(&dg, 96, 108, false);
        // ECT(0) on one, CE on the other => CE; DF on the largest => DF.
        a[1] = 0x02;
        b[1] = 0x03;
        a[6] |= 0x40;
        for f in [&mut a, &mut b] {
            f[10..12].copy_from_slice(&[0, 0]);
            let c = internet_checksum(&f[..20]);
            f[10..12].copy_from_slice(&c.to_be_bytes());
        }
        assert_eq!(feed(&mut d, 1, &a), DefragResult::Held);
        let DefragResult::Complete(out) = feed(&mut d, 1, &b) else { panic!() };
        assert_eq!(out[1] & 3, 3);
        assert_eq!(out[6] & 0x40, 0x40);
        assert!(ipv4_header_ok(&out));
        // Not-ECT mixed with ECT is invalid.
        let mut d = Defrag::default();
        let mut a = frag_v4(&dg, 0, 96, true);
        a[1] = 0x02;
        a[10..12].copy_from_slice(&[0, 0]);
        let c = internet_checksum(&a[..20]);
        a[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(feed(&mut d, 1, &a), DefragResult::Held);
        assert!(matches!(feed(&mut d, 1, &frag_v4(&dg, 96, 108, false)), DefragResult::Dropped { .. }));
    }

    #[test]
    fn non_fragment_and_truncated() {
        let dg = udp_v4(10);
        let mut d = Defrag::default();
        assert_eq!(feed(&mut d, 1, &dg), DefragResult::Unchanged);
        let f = frag_v4(&udp_v4(100), 0, 48, true);
        assert_eq!(
            feed(&mut d, 1, &f[..50]),
            DefragResult::Dropped { reason: "fragment not fully captured" }
        );
    }

    /// IPv6 UDP datagram whose unfragmentable part includes a hop-by-hop header.
    fn udp_v6(n: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
        let mut out = Vec::new();
        PacketBuilder::ipv6([0x20; 16], [0x30; 16], 64).udp(1234, 53).write(&mut out, &payload).unwrap();
        // Insert a hop-by-hop header (8 bytes) as the unfragmentable part.
        let inner = out[6];
        out[6] = 0;
        out.splice(40..40, [inner, 0, 1, 4, 0, 0, 0, 0]);
        let pl = (out.len() - 40) as u16;
        out[4..6].copy_from_slice(&pl.to_be_bytes());
        out
    }

    /// Fragment of `dgram` (40 + 8 unfragmentable) covering fragmentable bytes [start, end).
    fn frag_v6(dgram: &[u8], start: usize, end: usize, more: bool) -> Vec<u8> {
        let mut f = dgram[..48].to_vec();
        let inner = f[40];
        f[40] = 44;
        let field = start as u16 | u16::from(more);
        f.extend_from_slice(&[inner, 0]);
        f.extend_from_slice(&field.to_be_bytes());
        f.extend_from_slice(&0xcafe_f00du32.to_be_bytes());
        f.extend_from_slice(&dgram[48 + start..48 + end]);
        let pl = (f.len() - 40) as u16;
        f[4..6].copy_from_slice(&pl.to_be_bytes());
        f
    }

    #[test]
    fn ipv6_reassembly() {
        let dg = udp_v6(100);
        let mut d = Defrag::default();
        assert_eq!(feed(&mut d, 1, &frag_v6(&dg, 64, 108, false)), DefragResult::Held);
        assert_eq!(d.poll_timeout(), Some(Time::from_secs(61)));
        assert_eq!(feed(&mut d, 1, &frag_v6(&dg, 0, 64, true)), DefragResult::Complete(dg.clone()));
        let p = decode_ip(&dg).unwrap();
        assert_eq!(crate::checksum::l4_checksum_ok(&p), Some(true));
    }

    #[test]
    fn ipv6_unaligned_passes_through_and_overlap_kills() {
        let dg = udp_v6(100);
        let mut d = Defrag::default();
        assert_eq!(feed(&mut d, 1, &frag_v6(&dg, 0, 60, true)), DefragResult::Unchanged);
        assert_eq!(d.queue_count(), 0);
        assert_eq!(feed(&mut d, 1, &frag_v6(&dg, 0, 64, true)), DefragResult::Held);
        assert_eq!(
            feed(&mut d, 1, &frag_v6(&dg, 56, 108, false)),
            DefragResult::Dropped { reason: "overlapping fragment" }
        );
        // Atomic fragment: complete at once, fragment header removed.
        let atomic = frag_v6(&dg, 0, 108, false);
        assert_eq!(feed(&mut d, 2, &atomic), DefragResult::Complete(dg));
    }
}

#[cfg(test)]
mod corpus_tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::packet::{decode_ip, L4};

    /// Run every fragment of a corpus capture through a [`Defrag`]; returns the outcomes.
    fn run(name: &str) -> Option<(Vec<DefragResult>, Defrag)> {
        let path = std::path::Path::new("/work/shared/corpus/pcaps").join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("skipping: {} unavailable", path.display());
            return None;
        };
        let cap = crate::capture::parse_capture(&bytes).unwrap();
        let mut d = Defrag::default();
        let mut out = Vec::new();
        for r in &cap.records {
            let Ok(f) = crate::link::strip_link(r.linktype, &r.data) else { continue };
            let Ok(p) = decode_ip(f.ip) else { continue };
            if p.ip.frag.is_some() {
                out.push(d.handle_fragment(r.ts, &p));
            }
        }
        Some((out, d))
    }

    fn completes(v: &[DefragResult]) -> Vec<Vec<u8>> {
        v.iter()
            .filter_map(|r| match r {
                DefragResult::Complete(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn three_tiny_fragments_make_a_syn() {
        let Some((v, _)) = run("suricata-verify__defrag__bug-6887-defrag-ipv4-tcp-syn__frag-ip-tcp-syn.pcap")
        else {
            return;
        };
        let c = completes(&v);
        assert_eq!(c.len(), 1, "{v:?}");
        let p = decode_ip(&c[0]).unwrap();
        let L4::Tcp(t) = &p.l4 else { panic!("{:?}", p.l4) };
        assert!(t.flags.syn());
    }

    #[test]
    fn fragmented_syn_options_split() {
        let Some((v, _)) = run("zeek__ipv4__fragmented-syn.pcap") else { return };
        let c = completes(&v);
        assert_eq!(c.len(), 1, "{v:?}");
        let p = decode_ip(&c[0]).unwrap();
        let L4::Tcp(t) = &p.l4 else { panic!("{:?}", p.l4) };
        assert_eq!(t.header_len, 40);
    }

    #[test]
    fn conflicting_first_fragment() {
        // First fragment [0,16) (18 bytes with MF, trimmed), last fragment [48,164) (a hole
        // remains), then a different first fragment [0,304) reaching beyond the known end: the
        // whole queue is dropped (ip_frag_queue "data beyond end" path).
        let Some((v, d)) = run("zeek__ipv4__fragmented-1.pcap") else { return };
        assert_eq!(
            v,
            vec![
                DefragResult::Held,
                DefragResult::Held,
                DefragResult::Dropped { reason: "data beyond the last fragment" }
            ]
        );
        assert_eq!(d.queue_count(), 0);
    }

    #[test]
    fn afs_volume() {
        let Some((v, d)) = run("tcpdump__afs.pcap") else { return };
        let c = completes(&v);
        assert_eq!(v.len(), 200);
        assert_eq!(c.len(), 51, "{:?}", d.stats());
        assert_eq!(d.queue_count(), 0);
        for b in &c {
            let p = decode_ip(b).unwrap();
            assert!(matches!(p.l4, L4::Udp(_)));
            assert!(crate::checksum::ipv4_header_ok(b));
            assert_eq!(crate::checksum::l4_checksum_ok(&p), Some(true));
        }
    }

    #[test]
    fn ipv6_dns_fragments() {
        let Some((v, d)) = run("zeek__ipv6-fragmented-dns.pcap") else { return };
        let c = completes(&v);
        assert_eq!(c.len(), 1, "{:?}", d.stats());
        for b in &c {
            let p = decode_ip(b).unwrap();
            assert!(p.ip.frag.is_none());
            assert!(matches!(p.l4, L4::Udp(_)), "{:?}", p.l4);
            assert_eq!(crate::checksum::l4_checksum_ok(&p), Some(true));
        }
    }

    #[test]
    fn ipv6_duplicated_middle_fragment() {
        let Some((v, d)) = run("suricata-verify__ipv6-evasion__ipv6-malformed-fragments-1__frag-1.pcap")
        else {
            return;
        };
        // Echo request in fragments with the middle one sent twice, first with hop limit 1 and
        // 'Z' filler, then with the real 'A' data: the second copy is a duplicate and dropped,
        // the first data wins, so the reassembled echo request fails its checksum.
        let c = completes(&v);
        assert_eq!(c.len(), 1);
        assert_eq!(d.stats().duplicates, 1);
        let p = decode_ip(&c[0]).unwrap();
        let L4::Icmp(i) = &p.l4 else { panic!("{:?}", p.l4) };
        assert_eq!(i.icmp_type, 128);
        assert!(i.payload.contains(&b'Z'));
        assert_eq!(crate::checksum::l4_checksum_ok(&p), Some(false));
    }
}
