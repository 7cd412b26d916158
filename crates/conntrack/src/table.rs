//! The connection table and conntrack-in / confirm (reference §1.4, §2.1, §4, §5, §6).
//!
//! Contract:
//! - Entries live in a `Slab<Conn>`; confirmed entries are hashed twice in a `hashbrown::HashTable<u32>`
//!   (one node per direction, node = slab index * 2 + direction) keyed by (tuple, zone) with foldhash
//!   under a fixed seed, so runs are deterministic. A timer set orders confirmed entries by expiry,
//!   and an index of "virtual buckets" (`nf_conntrack_buckets`) models the bucket-local early drop.
//! - [`Conntrack::handle_packet`] is conntrack-in: it looks the packet up (an expired entry found on
//!   the way is deleted and treated as absent), runs the protocol tracker (which updates confirmed
//!   entries at once, whatever the rules decide later), or allocates a new *unconfirmed* entry that
//!   counts toward `nf_conntrack_max` but is invisible to lookups and listings until
//!   [`Conntrack::confirm`]. [`Conntrack::discard`] frees an unconfirmed entry whose packet died.
//! - The clock only moves forward: a packet older than the latest time seen is handled at the latest
//!   time (so timers never run backwards).
//! - An entry deleted while its packet still refers to it (an RST on an unreplied TCP entry) stays
//!   readable through [`Conntrack::conn`] until the next packet or timeout is handled.

use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::net::IpAddr;

use foldhash::quality::FixedState;
use hashbrown::HashTable;
use slab::Slab;
use wire::{IcmpHeader, Packet, Time, L4};

use crate::config::Config;
use crate::conn::{Conn, ConnId, Counter, CtInfo, Dir, ProtoState, Status, Template};
use crate::stats::Stats;
use crate::tcp::{flags_valid, TcpConn, TcpOutcome};
use crate::tuple::{
    l4_part, Tuple, TupleL4, PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE,
};

/// Where conntrack-in runs. Checksums are verified only at PREROUTING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `ipv4_conntrack_in` / `ipv6_conntrack_in` (forwarded and incoming packets).
    PreRouting,
    /// `ipv4_conntrack_local` (locally generated packets).
    LocalOut,
}

/// Result of conntrack-in for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InResult {
    /// The packet has a conntrack entry (possibly a new, unconfirmed one).
    Tracked { id: ConnId, info: CtInfo },
    /// No entry: ctstate INVALID (conntrack itself lets the packet continue).
    Invalid { reason: &'static str },
    /// Conntrack drops the packet (table full and nothing could be evicted).
    Drop { reason: &'static str },
}

/// Seed of the table hash: fixed, so that bucket-dependent behaviour (early drop) is reproducible.
const HASH_SEED: u64 = 0x7374_6174_6577_616c;
/// `NF_CT_EVICTION_RANGE`: buckets scanned by an early drop.
const EVICTION_RANGE: u32 = 8;
/// UDP "stream" detection window (`stream_ts = creation + 2 s`).
const UDP_STREAM_NS: u64 = 2 * Time::NANOS_PER_SEC;
/// `nf_tcp_handle_invalid` only lowers timers with at least this much left.
const SHRINK_MIN_REMAINING_NS: u64 = 120 * Time::NANOS_PER_SEC;

fn secs_ns(secs: u32) -> u64 {
    u64::from(secs).saturating_mul(Time::NANOS_PER_SEC)
}

fn tuple_hash(t: &Tuple, zone: u16) -> u64 {
    FixedState::with_seed(HASH_SEED).hash_one((t, zone))
}

/// The hash of a table node (slab index * 2 + direction).
fn node_hash(conns: &Slab<Conn>, node: u32) -> u64 {
    let idx = (node >> 1) as usize;
    let dir = (node & 1) as usize;
    conns.get(idx).and_then(|c| c.tuples.get(dir).map(|t| tuple_hash(t, c.zone))).unwrap_or(0)
}

/// What the tracker decided, applied by [`Conntrack::apply`].
enum Action {
    Refresh {
        secs: u32,
        assured: bool,
    },
    /// Accepted without refreshing the timer or counters.
    Keep,
    /// Accept, account, then delete the entry (the packet keeps it until the next call).
    Kill,
    Invalid(&'static str),
    /// Invalid FIN/RST on an ASSURED entry: maybe lower its timer.
    InvalidShrink(&'static str),
    Reopen,
}

enum Track {
    Accept,
    Invalid(&'static str),
    Reopen,
}

enum AllocError {
    NoInverse,
    Full,
}

/// ICMPv6 types conntrack leaves untracked (neighbour discovery, MLD, multicast router discovery).
fn icmpv6_untracked_type(ty: u8) -> bool {
    matches!(ty, 130..=136 | 143 | 151 | 152)
}

/// Whether conntrack marks this packet UNTRACKED by itself (ICMPv6 ND/MLD, reference §4.4): the
/// engine should treat it like `-j NOTRACK` (ctstate UNTRACKED) instead of calling
/// [`Conntrack::handle_packet`] (which reports it INVALID).
pub fn auto_untracked(pkt: &Packet<'_>) -> bool {
    match &pkt.l4 {
        L4::Icmp(i) => {
            pkt.ip.version == 6 && pkt.ip.proto == PROTO_ICMPV6 && icmpv6_untracked_type(i.icmp_type)
        }
        _ => false,
    }
}

/// Connection tracking for one network namespace.
#[derive(Debug)]
pub struct Conntrack {
    config: Config,
    conns: Slab<Conn>,
    table: HashTable<u32>,
    /// (absolute expiry ns, slab index) of every hashed entry.
    timers: BTreeSet<(u64, u32)>,
    /// (virtual bucket << 32 | node) of every hashed node.
    buckets: BTreeSet<u64>,
    confirmed: usize,
    next_gen: u32,
    now: Time,
    /// A deleted entry still referenced by the packet being processed.
    pending_free: Option<usize>,
    stats: Stats,
}

impl Conntrack {
    pub fn new(config: Config) -> Self {
        Conntrack {
            config,
            conns: Slab::new(),
            table: HashTable::new(),
            timers: BTreeSet::new(),
            buckets: BTreeSet::new(),
            confirmed: 0,
            next_gen: 0,
            now: Time::ZERO,
            pending_free: None,
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Confirmed entries (what `/proc/net/nf_conntrack` lists), including any expired ones not yet
    /// reaped by [`Conntrack::handle_timeout`].
    pub fn len(&self) -> usize {
        self.confirmed
    }

    pub fn is_empty(&self) -> bool {
        self.confirmed == 0
    }

    /// All allocated entries, unconfirmed ones in flight included (`nf_conntrack_count`).
    pub fn count(&self) -> usize {
        self.conns.len()
    }

    /// Confirmed, live entries in slab order (deterministic for a given packet sequence).
    pub fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.conns.iter().map(|(_, c)| c).filter(|c| c.status.confirmed() && !c.status.dying())
    }

    /// The entry behind `id`, if it still exists (confirmed or not).
    pub fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(id.0 as usize).filter(|c| c.gen == id.1)
    }

    /// The handle of a confirmed entry whose original tuple is `orig` in `zone`.
    pub fn find(&self, orig: &Tuple, zone: u16) -> Option<ConnId> {
        let (idx, _) = self.find_node(orig, zone)?;
        let c = self.conns.get(idx)?;
        if c.orig() != orig {
            return None;
        }
        Some(ConnId(u32::try_from(idx).ok()?, c.gen))
    }

    /// `CONNMARK --set-mark` and friends.
    pub fn set_mark(&mut self, id: ConnId, mark: u32) {
        if let Some(c) = self.conn_mut(id) {
            c.mark = mark;
        }
    }

    /// Earliest expiry among confirmed entries.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.first().map(|&(t, _)| Time(t))
    }

    /// Delete every confirmed entry whose timer ran out at `now` (expiry <= now).
    pub fn handle_timeout(&mut self, now: Time) {
        let now = self.advance(now);
        self.release_pending();
        while let Some(&(t, idx)) = self.timers.first() {
            if t > now.0 {
                break;
            }
            self.delete(idx as usize);
        }
    }

    /// `conntrack -F`: delete every confirmed entry.
    pub fn flush(&mut self) {
        self.release_pending();
        let all: Vec<usize> =
            self.conns.iter().filter(|(_, c)| c.status.confirmed()).map(|(i, _)| i).collect();
        for idx in all {
            self.delete(idx);
        }
    }

    /// The confirm hook: hash an unconfirmed entry, start its timer at now + its timeout and set
    /// CONFIRMED. No-op for confirmed entries (reply packets, later packets of the flow).
    pub fn confirm(&mut self, now: Time, id: ConnId) {
        let now = self.advance(now);
        let idx = id.0 as usize;
        let Some(c) = self.conn(id) else { return };
        if c.status.confirmed() {
            return;
        }
        if c.status.dying() {
            self.conns.try_remove(idx);
            self.stats.drop += 1;
            return;
        }
        let zone = c.zone;
        let proto = c.l4proto();
        let tuples = c.tuples;
        let clash = tuples.iter().any(|t| self.lookup(now, t, zone).is_some());
        if clash {
            // Another entry for the same flow got in first (cannot happen with sequential packets
            // unless the caller interleaves them). Protocols with clash resolution merge; TCP and
            // ICMPv4 lose the packet.
            self.conns.try_remove(idx);
            if matches!(proto, PROTO_TCP | PROTO_ICMP) {
                self.stats.insert_failed += 1;
                self.stats.drop += 1;
            } else {
                self.stats.clash_resolve += 1;
            }
            return;
        }
        if let Some(c) = self.conns.get_mut(idx) {
            c.timeout = now.0.saturating_add(c.timeout);
            c.created = now;
            c.status.insert(Status::CONFIRMED);
        }
        self.hash_in(idx);
    }

    /// The packet that created an unconfirmed entry died before confirmation: free the entry.
    pub fn discard(&mut self, id: ConnId) {
        if self.conn(id).is_some_and(|c| !c.status.confirmed()) {
            self.conns.try_remove(id.0 as usize);
        }
    }

    /// conntrack-in for a packet that is not untracked (see the module contract).
    pub fn handle_packet(
        &mut self,
        now: Time,
        pkt: &Packet<'_>,
        hook: Hook,
        template: Option<&Template>,
    ) -> InResult {
        let now = self.advance(now);
        self.release_pending();
        let zone = template.map_or(0, |t| t.zone);
        let v6 = pkt.ip.version == 6;

        // ipv4_get_l4proto / ipv6_get_l4proto: no transport header to look at.
        if matches!(pkt.l4, L4::Fragment) {
            return self.invalid("non-first fragment");
        }

        // ICMP / ICMPv6: pre-checks and the RELATED path for errors.
        let proto = pkt.ip.proto;
        if (proto == PROTO_ICMP && !v6) || (proto == PROTO_ICMPV6 && v6) {
            match &pkt.l4 {
                L4::Icmp(icmp) => {
                    if let Some(r) = self.icmp_pre(now, pkt, icmp, hook, zone) {
                        return r;
                    }
                }
                _ => return self.error("icmp: short header"),
            }
        }

        let tuple = match packet_tuple(pkt) {
            Ok(t) => t,
            Err(reason) => return self.invalid(reason),
        };

        // At most one repeat: a SYN reopening a closed entry is looked up again after deleting it.
        for _ in 0..2 {
            let (idx, dir, is_new) = match self.lookup(now, &tuple, zone) {
                Some((idx, dir)) => (idx, dir, false),
                None => match self.alloc(now, &tuple, zone, template) {
                    Ok(idx) => (idx, Dir::Original, true),
                    Err(AllocError::NoInverse) => return self.invalid("tuple cannot be inverted"),
                    Err(AllocError::Full) => {
                        self.stats.drop += 1;
                        return InResult::Drop { reason: "table full" };
                    }
                },
            };
            let Some(c) = self.conns.get(idx) else {
                return self.invalid("internal: entry vanished");
            };
            let info = if dir == Dir::Reply {
                CtInfo::EstablishedReply
            } else if c.status.seen_reply() {
                CtInfo::Established
            } else if c.status.expected() {
                CtInfo::Related
            } else {
                CtInfo::New
            };
            let id = ConnId(idx as u32, c.gen);
            match self.track(now, idx, dir, is_new, pkt, hook) {
                Track::Accept => {
                    if dir == Dir::Reply {
                        if let Some(c) = self.conns.get_mut(idx) {
                            c.status.insert(Status::SEEN_REPLY);
                        }
                    }
                    return InResult::Tracked { id, info };
                }
                Track::Invalid(reason) => {
                    if is_new {
                        self.conns.try_remove(idx);
                    }
                    return self.invalid(reason);
                }
                Track::Reopen => {
                    self.delete(idx);
                }
            }
        }
        self.invalid("tcp: reopen loop")
    }

    // ----- internals -----

    fn advance(&mut self, now: Time) -> Time {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    fn invalid(&mut self, reason: &'static str) -> InResult {
        self.stats.invalid += 1;
        InResult::Invalid { reason }
    }

    fn error(&mut self, reason: &'static str) -> InResult {
        self.stats.error += 1;
        InResult::Invalid { reason }
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(id.0 as usize).filter(|c| c.gen == id.1)
    }

    fn release_pending(&mut self) {
        if let Some(idx) = self.pending_free.take() {
            if self.conns.get(idx).is_some_and(|c| c.status.dying()) {
                self.conns.try_remove(idx);
            }
        }
    }

    fn bucket_of(&self, hash: u64) -> u64 {
        // reciprocal_scale of the upper 32 bits
        ((hash >> 32) * u64::from(self.config.buckets.max(1))) >> 32
    }

    fn find_node(&self, tuple: &Tuple, zone: u16) -> Option<(usize, Dir)> {
        let h = tuple_hash(tuple, zone);
        let conns = &self.conns;
        self.table
            .find(h, |&node| {
                let idx = (node >> 1) as usize;
                let dir = (node & 1) as usize;
                conns.get(idx).is_some_and(|c| c.zone == zone && c.tuples.get(dir) == Some(tuple))
            })
            .map(|&node| {
                let idx = (node >> 1) as usize;
                // A flow whose reply tuple equals its original tuple (same address and port on both
                // ends): the kernel's chain has the reply node in front, so it is found as a reply.
                let same = conns.get(idx).is_some_and(|c| c.tuples[0] == c.tuples[1]);
                let dir = if same { Dir::Reply } else { Dir::from_index((node & 1) as usize) };
                (idx, dir)
            })
    }

    /// Lookup with lazy expiry.
    fn lookup(&mut self, now: Time, tuple: &Tuple, zone: u16) -> Option<(usize, Dir)> {
        let (idx, dir) = self.find_node(tuple, zone)?;
        if self.conns.get(idx).is_some_and(|c| c.is_expired(now)) {
            self.delete(idx);
            return None;
        }
        Some((idx, dir))
    }

    fn hash_in(&mut self, idx: usize) {
        let Some(c) = self.conns.get(idx) else { return };
        let Ok(base) = u32::try_from(idx) else { return };
        let expiry = c.timeout;
        let zone = c.zone;
        let hashes = [tuple_hash(&c.tuples[0], zone), tuple_hash(&c.tuples[1], zone)];
        for (dir, h) in hashes.into_iter().enumerate() {
            let node = (base << 1) | dir as u32;
            let conns = &self.conns;
            self.table.insert_unique(h, node, |&n| node_hash(conns, n));
            let b = self.bucket_of(h);
            self.buckets.insert((b << 32) | u64::from(node));
        }
        self.timers.insert((expiry, base));
        self.confirmed += 1;
    }

    fn unhash(&mut self, idx: usize) {
        let Some(c) = self.conns.get(idx) else { return };
        let Ok(base) = u32::try_from(idx) else { return };
        let expiry = c.timeout;
        let zone = c.zone;
        let hashes = [tuple_hash(&c.tuples[0], zone), tuple_hash(&c.tuples[1], zone)];
        for (dir, h) in hashes.into_iter().enumerate() {
            let node = (base << 1) | dir as u32;
            if let Ok(e) = self.table.find_entry(h, |&n| n == node) {
                e.remove();
            }
            let b = self.bucket_of(h);
            self.buckets.remove(&((b << 32) | u64::from(node)));
        }
        self.timers.remove(&(expiry, base));
        self.confirmed = self.confirmed.saturating_sub(1);
    }

    fn is_hashed(c: &Conn) -> bool {
        c.status.confirmed() && !c.status.dying()
    }

    /// Delete an entry now (expiry, early drop, reopen, flush).
    fn delete(&mut self, idx: usize) {
        if self.conns.get(idx).is_some_and(Self::is_hashed) {
            self.unhash(idx);
        }
        self.conns.try_remove(idx);
        if self.pending_free == Some(idx) {
            self.pending_free = None;
        }
    }

    /// Delete an entry the current packet still refers to: unhash now, free later.
    fn kill_for_packet(&mut self, idx: usize) {
        if self.conns.get(idx).is_some_and(Self::is_hashed) {
            self.unhash(idx);
        }
        if let Some(c) = self.conns.get_mut(idx) {
            c.status.insert(Status::DYING);
        }
        if !self.conns.get(idx).is_some_and(|c| c.status.confirmed()) {
            // an unconfirmed entry is freed by confirm/discard
            return;
        }
        self.release_pending();
        self.pending_free = Some(idx);
    }

    fn set_expiry(&mut self, idx: usize, expiry: u64) {
        let Some(c) = self.conns.get_mut(idx) else { return };
        if !Self::is_hashed(c) {
            c.timeout = expiry;
            return;
        }
        let old = c.timeout;
        if old == expiry {
            return;
        }
        c.timeout = expiry;
        if let Ok(base) = u32::try_from(idx) {
            self.timers.remove(&(old, base));
            self.timers.insert((expiry, base));
        }
    }

    /// `nf_ct_refresh_acct`.
    fn refresh(&mut self, now: Time, idx: usize, secs: u32, dir: Dir, bytes: u64) {
        let Some(c) = self.conns.get_mut(idx) else { return };
        c.account(dir, bytes);
        if c.status.contains(Status::FIXED_TIMEOUT) {
            return;
        }
        if c.status.confirmed() {
            let expiry = now.0.saturating_add(secs_ns(secs));
            self.set_expiry(idx, expiry);
        } else {
            c.timeout = secs_ns(secs);
        }
    }

    /// `init_conntrack` / `__nf_conntrack_alloc`, including the table limit and early drop.
    fn alloc(
        &mut self,
        now: Time,
        tuple: &Tuple,
        zone: u16,
        template: Option<&Template>,
    ) -> Result<usize, AllocError> {
        let reply = tuple.invert().ok_or(AllocError::NoInverse)?;
        let max = self.config.max;
        if max != 0 && self.conns.len() >= max as usize {
            let h = tuple_hash(tuple, zone);
            if !self.early_drop(now, h) {
                return Err(AllocError::Full);
            }
        }
        // Node numbers are slab index * 2 + direction in a u32.
        if self.conns.vacant_key() > (u32::MAX >> 1) as usize {
            return Err(AllocError::Full);
        }
        let proto = match tuple.proto {
            PROTO_TCP => ProtoState::Tcp(TcpConn::default()),
            PROTO_UDP => ProtoState::Udp { stream_deadline: now.add_nanos(UDP_STREAM_NS) },
            PROTO_UDPLITE => ProtoState::UdpLite,
            PROTO_ICMP | PROTO_ICMPV6 => ProtoState::Icmp,
            PROTO_GRE => ProtoState::Gre {
                timeout: self.config.gre_timeout,
                stream_timeout: self.config.gre_timeout_stream,
            },
            _ => ProtoState::Generic,
        };
        let helper = template.and_then(|t| t.helper.as_deref()).map(Box::<str>::from);
        let mut status = Status::empty();
        if helper.is_some() {
            status.insert(Status::HELPER);
        }
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        // (Expectation lookup would go here: EXPECTED status, master, helper of the expectation.)
        let conn = Conn {
            tuples: [*tuple, reply],
            status,
            mark: 0,
            zone,
            tstamp: self.config.timestamp,
            gen,
            timeout: 0,
            created: now,
            proto,
            helper,
            acct: self.config.acct.then(|| Box::new([Counter::default(), Counter::default()])),
        };
        Ok(self.conns.insert(conn))
    }

    /// `early_drop`: scan up to 8 consecutive virtual buckets from the new tuple's bucket; in each,
    /// reap expired entries and evict every non-ASSURED one; stop at the first bucket that evicted.
    fn early_drop(&mut self, now: Time, hash: u64) -> bool {
        let nbuckets = u64::from(self.config.buckets.max(1));
        let mut bucket = self.bucket_of(hash);
        for _ in 0..EVICTION_RANGE {
            let lo = bucket << 32;
            let hi = lo | u64::from(u32::MAX);
            let mut idxs: Vec<usize> =
                self.buckets.range(lo..=hi).map(|&k| ((k & u64::from(u32::MAX)) >> 1) as usize).collect();
            idxs.dedup();
            let mut drops = 0u64;
            for idx in idxs {
                let Some(c) = self.conns.get(idx) else { continue };
                if !Self::is_hashed(c) {
                    continue;
                }
                if c.is_expired(now) {
                    self.delete(idx);
                    continue;
                }
                if c.status.assured() {
                    continue;
                }
                self.delete(idx);
                drops += 1;
            }
            if drops > 0 {
                self.stats.early_drop += drops;
                return true;
            }
            bucket = (bucket + 1) % nbuckets;
        }
        false
    }

    /// ICMP / ICMPv6 pre-checks (`nf_conntrack_icmpv4_error`, `nf_conntrack_icmpv6_error`).
    /// `Some` = done (RELATED or failure); `None` = continue with normal tracking.
    fn icmp_pre(
        &mut self,
        now: Time,
        pkt: &Packet<'_>,
        icmp: &IcmpHeader<'_>,
        hook: Hook,
        zone: u16,
    ) -> Option<InResult> {
        if hook == Hook::PreRouting
            && self.config.checksum
            && wire::checksum::l4_checksum_ok(pkt) == Some(false)
        {
            return Some(self.error("icmp: bad checksum"));
        }
        let ty = icmp.icmp_type;
        if pkt.ip.version == 6 {
            if icmpv6_untracked_type(ty) {
                // the kernel marks these UNTRACKED; see `auto_untracked`
                return Some(InResult::Invalid { reason: "icmpv6: neighbour discovery / MLD is untracked" });
            }
            if ty >= 128 {
                return None;
            }
        } else {
            if ty > 18 {
                return Some(self.error("icmp: invalid type"));
            }
            // errors: unreachable, source quench, redirect, time exceeded, parameter problem
            if !matches!(ty, 3 | 4 | 5 | 11 | 12) {
                return None;
            }
        }
        Some(self.related(now, pkt, icmp.payload, zone))
    }

    /// `nf_conntrack_inet_error`: find the entry an ICMP error quotes.
    fn related(&mut self, now: Time, pkt: &Packet<'_>, quoted: &[u8], zone: u16) -> InResult {
        let Ok(q) = wire::packet::decode_quoted(quoted) else {
            return self.error("icmp error: quoted header unusable");
        };
        if q.ip.version != pkt.ip.version {
            return self.error("icmp error: quoted header of another family");
        }
        if q.ip.frag.is_some_and(|f| !f.is_first()) {
            return self.error("icmp error: quoted non-first fragment");
        }
        let Ok(l4) = l4_part(q.ip.proto, q.l4) else {
            return self.error("icmp error: quoted transport header too short");
        };
        let inner = Tuple { src: q.ip.src, dst: q.ip.dst, proto: q.ip.proto, l4 };
        let Some(target) = inner.invert() else {
            return self.error("icmp error: quoted tuple cannot be inverted");
        };
        let Some((idx, dir)) = self.lookup(now, &target, zone) else {
            return self.error("icmp error: no related connection");
        };
        let Some(c) = self.conns.get(idx) else {
            return self.error("icmp error: no related connection");
        };
        // The matched direction's destination must be where the error goes.
        if c.tuple(dir).dst != pkt.ip.dst {
            return self.error("icmp error: outer daddr != inner");
        }
        let info = match dir {
            Dir::Original => CtInfo::Related,
            Dir::Reply => CtInfo::RelatedReply,
        };
        InResult::Tracked { id: ConnId(idx as u32, c.gen), info }
    }

    /// Run the protocol tracker and apply its decision.
    fn track(
        &mut self,
        now: Time,
        idx: usize,
        dir: Dir,
        is_new: bool,
        pkt: &Packet<'_>,
        hook: Hook,
    ) -> Track {
        let action = self.decide(now, idx, dir, is_new, pkt, hook);
        self.apply(now, idx, dir, pkt, action)
    }

    fn checksum_bad(&self, pkt: &Packet<'_>, hook: Hook) -> bool {
        hook == Hook::PreRouting && self.config.checksum && wire::checksum::l4_checksum_ok(pkt) == Some(false)
    }

    fn decide(
        &mut self,
        now: Time,
        idx: usize,
        dir: Dir,
        is_new: bool,
        pkt: &Packet<'_>,
        hook: Hook,
    ) -> Action {
        let checksum_bad = self.checksum_bad(pkt, hook);
        let cfg = &self.config;
        let Some(c) = self.conns.get_mut(idx) else {
            return Action::Invalid("internal: entry vanished");
        };
        let v6 = pkt.ip.version == 6;
        let status = c.status;
        match c.l4proto() {
            PROTO_TCP => {
                let h = match &pkt.l4 {
                    L4::Tcp(h) => h,
                    _ => return Action::Invalid("tcp: truncated packet"),
                };
                if checksum_bad {
                    return Action::Invalid("tcp: bad checksum");
                }
                if !flags_valid(h.flags) {
                    return Action::Invalid("tcp: invalid flag combination");
                }
                if is_new {
                    match TcpConn::new_conn(cfg, h) {
                        Ok(t) => c.proto = ProtoState::Tcp(t),
                        Err(reason) => return Action::Invalid(reason),
                    }
                }
                let Some(t) = c.tcp_mut() else {
                    return Action::Invalid("internal: not a tcp entry");
                };
                match t.packet(cfg, dir, status, h) {
                    TcpOutcome::Accept { timeout: Some(secs), assured } => Action::Refresh { secs, assured },
                    TcpOutcome::Accept { timeout: None, .. } | TcpOutcome::Ignore => Action::Keep,
                    TcpOutcome::Kill => Action::Kill,
                    TcpOutcome::Invalid { reason, shrink } => {
                        if shrink {
                            Action::InvalidShrink(reason)
                        } else {
                            Action::Invalid(reason)
                        }
                    }
                    TcpOutcome::Reopen => Action::Reopen,
                }
            }
            PROTO_UDP => {
                let u = match &pkt.l4 {
                    L4::Udp(u) => u,
                    _ => return Action::Invalid("udp: truncated or malformed packet"),
                };
                // checksum 0 = none (also accepted for IPv6, as udp_error does)
                if u.checksum != 0 && checksum_bad {
                    return Action::Invalid("udp: bad checksum");
                }
                let deadline = match c.proto {
                    ProtoState::Udp { stream_deadline } => stream_deadline,
                    _ => now,
                };
                if status.seen_reply() {
                    // still active after two seconds: a stream
                    if now > deadline {
                        Action::Refresh {
                            secs: cfg.udp_timeout_stream,
                            assured: !status.contains(Status::NAT_CLASH),
                        }
                    } else {
                        Action::Refresh { secs: cfg.udp_timeout, assured: false }
                    }
                } else {
                    Action::Refresh { secs: cfg.udp_timeout, assured: false }
                }
            }
            PROTO_UDPLITE => {
                if let Err(reason) = udplite_error(pkt, hook, cfg.checksum) {
                    return Action::Invalid(reason);
                }
                if status.seen_reply() {
                    Action::Refresh {
                        secs: cfg.udp_timeout_stream,
                        assured: !status.contains(Status::NAT_CLASH),
                    }
                } else {
                    Action::Refresh { secs: cfg.udp_timeout, assured: false }
                }
            }
            PROTO_ICMP => {
                if v6 {
                    return Action::Invalid("icmp: not IPv4");
                }
                let ty = match c.tuples[0].l4 {
                    TupleL4::Icmp { ty, .. } => ty,
                    _ => 255,
                };
                // only requests create entries (echo, timestamp, info, address mask)
                if is_new && !matches!(ty, 8 | 13 | 15 | 17) {
                    return Action::Invalid("icmp: type cannot create a connection");
                }
                Action::Refresh { secs: cfg.icmp_timeout, assured: false }
            }
            PROTO_ICMPV6 => {
                if !v6 {
                    return Action::Invalid("icmpv6: not IPv6");
                }
                let ty = match c.tuples[0].l4 {
                    TupleL4::Icmp { ty, .. } => ty,
                    _ => 0,
                };
                // echo request and node information query create entries
                if is_new && !matches!(ty, 128 | 139) {
                    return Action::Invalid("icmpv6: type cannot create a connection");
                }
                Action::Refresh { secs: cfg.icmpv6_timeout, assured: false }
            }
            PROTO_GRE => {
                let (timeout, stream) = match c.proto {
                    ProtoState::Gre { timeout, stream_timeout } => (timeout, stream_timeout),
                    _ => (cfg.gre_timeout, cfg.gre_timeout_stream),
                };
                if status.seen_reply() {
                    Action::Refresh { secs: stream, assured: !status.contains(Status::NAT_CLASH) }
                } else {
                    Action::Refresh { secs: timeout, assured: false }
                }
            }
            _ => Action::Refresh { secs: cfg.generic_timeout, assured: false },
        }
    }

    fn apply(&mut self, now: Time, idx: usize, dir: Dir, pkt: &Packet<'_>, action: Action) -> Track {
        let bytes = pkt.ip.total_len as u64;
        match action {
            Action::Refresh { secs, assured } => {
                self.refresh(now, idx, secs, dir, bytes);
                if assured {
                    if let Some(c) = self.conns.get_mut(idx) {
                        c.status.insert(Status::ASSURED);
                    }
                }
                Track::Accept
            }
            Action::Keep => Track::Accept,
            Action::Kill => {
                if let Some(c) = self.conns.get_mut(idx) {
                    c.account(dir, bytes);
                }
                self.kill_for_packet(idx);
                Track::Accept
            }
            Action::Invalid(reason) => Track::Invalid(reason),
            Action::InvalidShrink(reason) => {
                let unack = secs_ns(self.config.tcp_timeout_unacknowledged);
                if let Some(c) = self.conns.get(idx) {
                    if Self::is_hashed(c) && !c.status.contains(Status::FIXED_TIMEOUT) {
                        let remaining = c.expires().nanos_since(now);
                        if remaining >= SHRINK_MIN_REMAINING_NS && remaining > unack {
                            self.set_expiry(idx, now.0.saturating_add(unack));
                        }
                    }
                }
                Track::Invalid(reason)
            }
            Action::Reopen => Track::Reopen,
        }
    }
}

/// The packet's original-direction tuple (`nf_ct_get_tuple`).
fn packet_tuple(pkt: &Packet<'_>) -> Result<Tuple, &'static str> {
    let proto = pkt.ip.proto;
    let l4 = match &pkt.l4 {
        L4::Tcp(h) => TupleL4::Ports { sport: h.sport, dport: h.dport },
        L4::Udp(u) => TupleL4::Ports { sport: u.sport, dport: u.dport },
        L4::Icmp(i) => TupleL4::Icmp { ty: i.icmp_type, code: i.code, id: i.id() },
        L4::Other(b) => l4_part(proto, b).map_err(|_| "transport header too short for a tuple")?,
        L4::Malformed { .. } => {
            // The tuple needs only the ports; the tracker rejects the packet afterwards.
            let raw = pkt.bytes.get(pkt.ip.header_len..).unwrap_or(&[]);
            l4_part(proto, raw).map_err(|_| "transport header too short for a tuple")?
        }
        L4::Fragment => return Err("non-first fragment"),
    };
    Ok(Tuple { src: pkt.ip.src, dst: pkt.ip.dst, proto, l4 })
}

/// `udplite_error`: header present, checksum coverage 0 (= all) or within [8, length], checksum
/// mandatory, and right at PREROUTING when enabled.
fn udplite_error(pkt: &Packet<'_>, hook: Hook, checksum: bool) -> Result<(), &'static str> {
    let claimed = pkt.ip.total_len.saturating_sub(pkt.ip.header_len);
    let raw = pkt.bytes.get(pkt.ip.header_len..).unwrap_or(&[]);
    if claimed < 8 || raw.len() < 8 {
        return Err("udplite: short packet");
    }
    let be16 = |o: usize| -> u16 {
        u16::from_be_bytes([raw.get(o).copied().unwrap_or(0), raw.get(o + 1).copied().unwrap_or(0)])
    };
    let mut cscov = usize::from(be16(4));
    if cscov == 0 {
        cscov = claimed;
    } else if cscov < 8 || cscov > claimed {
        return Err("udplite: invalid checksum coverage");
    }
    if be16(6) == 0 {
        return Err("udplite: checksum missing");
    }
    if hook == Hook::PreRouting && checksum {
        if let Some(covered) = raw.get(..cscov) {
            // nf_checksum_partial: pseudo-header with the full length; the kernel passes
            // IPPROTO_UDP (17) as the pseudo-header protocol here.
            if partial_checksum(pkt.ip.src, pkt.ip.dst, PROTO_UDP, claimed, covered) != 0 {
                return Err("udplite: bad checksum");
            }
        }
    }
    Ok(())
}

fn partial_checksum(src: IpAddr, dst: IpAddr, proto: u8, len: usize, data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut add = |b: &[u8]| {
        let mut chunks = b.chunks_exact(2);
        for c in &mut chunks {
            if let [x, y] = c {
                acc += u64::from(u16::from_be_bytes([*x, *y]));
            }
        }
        if let [x] = chunks.remainder() {
            acc += u64::from(u16::from_be_bytes([*x, 0]));
        }
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            add(&s.octets());
            add(&d.octets());
        }
        _ => return 0,
    }
    add(data);
    acc += u64::from(proto) + len as u64;
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::field_reassign_with_default)]
    use super::*;
    use crate::testutil::*;

    fn ids(r: InResult) -> ConnId {
        match r {
            InResult::Tracked { id, .. } => id,
            other => panic!("not tracked: {other:?}"),
        }
    }

    #[test]
    fn udp_original_packets_stay_new_until_a_reply() {
        let mut lab = Lab::new();
        let q = udp(A, 4000, B, 53, b"query");
        let r = udp(B, 53, A, 4000, b"answer");
        // first packet: NEW, unconfirmed (invisible) until the confirm hook
        let first = lab.inn(0.0, &q);
        assert_eq!(info(first), "NEW");
        assert_eq!((lab.ct.len(), lab.ct.count()), (0, 1));
        lab.ct.confirm(t(0.0), ids(first));
        assert_eq!((lab.ct.len(), lab.ct.count()), (1, 1));
        // a retransmitted query is still NEW
        assert_eq!(info(lab.pass(0.5, &q)), "NEW");
        // the first reply is ESTABLISHED_REPLY and sets SEEN_REPLY
        assert_eq!(info(lab.pass(0.6, &r)), "ESTABLISHED_REPLY");
        assert!(lab.ct.iter().next().unwrap().status().seen_reply());
        // from then on the original direction is ESTABLISHED
        assert_eq!(info(lab.pass(0.7, &q)), "ESTABLISHED");
        assert_eq!(lab.ct.len(), 1);
    }

    #[test]
    fn a_dropped_first_packet_leaves_no_entry() {
        let mut lab = Lab::new();
        let p = udp(A, 4000, B, 6000, b"x");
        assert_eq!(info(lab.drop(0.0, &p)), "NEW");
        assert_eq!((lab.ct.len(), lab.ct.count()), (0, 0));
        assert_eq!(lab.proc(1.0), "");
        // the next one creates a fresh entry
        assert_eq!(info(lab.pass(1.0, &p)), "NEW");
        assert_eq!(lab.ct.len(), 1);
    }

    #[test]
    fn udp_two_second_rule_makes_a_stream_assured() {
        // reference §9 T2
        let mut lab = Lab::new();
        let q = udp(A, 4100, B, 5300, b"q");
        let r = udp(B, 5300, A, 4100, b"r");
        lab.pass(0.0, &q);
        lab.pass(0.01, &r);
        let c = lab.ct.iter().next().unwrap();
        assert!(!c.status().assured());
        assert_eq!(c.remaining_secs(t(0.02)), 29);
        // second exchange before 2 s: still 30 s, not assured
        lab.pass(1.5, &q);
        lab.pass(1.51, &r);
        let c = lab.ct.iter().next().unwrap();
        assert!(!c.status().assured());
        assert_eq!(c.remaining_secs(t(1.52)), 29);
        // after 2 s: 120 s and ASSURED
        lab.pass(2.5, &q);
        lab.pass(2.51, &r);
        let c = lab.ct.iter().next().unwrap();
        assert!(c.status().assured());
        assert_eq!(c.remaining_secs(t(2.52)), 119);
    }

    #[test]
    fn an_unreplied_udp_flow_never_becomes_a_stream() {
        let mut lab = Lab::new();
        let q = udp(A, 4100, B, 5300, b"q");
        for i in 0..10 {
            lab.pass(f64::from(i), &q);
        }
        let c = lab.ct.iter().next().unwrap();
        assert!(!c.status().assured() && !c.status().seen_reply());
        assert_eq!(c.remaining_secs(t(9.0)), 30);
    }

    #[test]
    fn expired_entries_are_replaced_on_lookup_and_reaped_by_timeout() {
        let mut lab = Lab::new();
        let q = udp(A, 4000, B, 53, b"q");
        lab.pass(0.0, &q);
        lab.pass(0.1, &udp(B, 53, A, 4000, b"r"));
        assert_eq!(lab.ct.poll_timeout(), Some(t(30.1)));
        // at exactly the expiry the entry is gone: the query is NEW again on a fresh entry
        assert_eq!(info(lab.pass(30.1, &q)), "NEW");
        let c = lab.ct.iter().next().unwrap();
        assert!(!c.status().seen_reply());
        assert_eq!(lab.ct.len(), 1);
        // nothing more: handle_timeout reaps it at 60.1
        lab.ct.handle_timeout(t(60.0));
        assert_eq!(lab.ct.len(), 1);
        lab.ct.handle_timeout(t(60.1));
        assert_eq!(lab.ct.len(), 0);
        assert_eq!(lab.ct.poll_timeout(), None);
    }

    #[test]
    fn time_going_backwards_is_handled_at_the_latest_time() {
        let mut lab = Lab::new();
        let q = udp(A, 4000, B, 53, b"q");
        lab.pass(10.0, &q);
        let before = lab.ct.iter().next().unwrap().expires();
        // a packet stamped earlier does not pull the timer back
        lab.pass(5.0, &q);
        assert_eq!(lab.ct.iter().next().unwrap().expires(), before);
    }

    #[test]
    fn non_first_fragments_are_invalid() {
        let mut lab = Lab::new();
        let mut b = udp(A, 4000, B, 53, b"q");
        b[6] = 0x00;
        b[7] = 0x10; // fragment offset 128 bytes
        let c = internet_checksum_fix(&mut b);
        assert!(c);
        assert_eq!(info(lab.pass(0.0, &b)), "INVALID");
        assert_eq!(lab.ct.stats().invalid, 1);
        assert_eq!(lab.ct.count(), 0);
    }

    fn internet_checksum_fix(b: &mut [u8]) -> bool {
        b[10] = 0;
        b[11] = 0;
        let c = wire::checksum::internet_checksum(&b[..20]);
        b[10] = (c >> 8) as u8;
        b[11] = c as u8;
        true
    }

    #[test]
    fn icmp_echo_request_and_reply() {
        // reference §9 T5b
        let mut lab = Lab::new();
        assert_eq!(info(lab.pass(0.0, &echo(A, B, 8, 0x4242, 1))), "NEW");
        assert_eq!(info(lab.pass(0.001, &echo(B, A, 0, 0x4242, 1))), "ESTABLISHED_REPLY");
        assert_eq!(info(lab.pass(1.0, &echo(A, B, 8, 0x4242, 2))), "ESTABLISHED");
        assert_eq!(
            lab.list(1.5),
            "icmp     1 29 src=10.99.0.1 dst=10.99.0.2 type=8 code=0 id=16962 src=10.99.0.2 dst=10.99.0.1 type=0 code=0 id=16962 mark=0 use=1\n"
        );
        let c = lab.ct.iter().next().unwrap();
        assert!(!c.status().assured());
    }

    #[test]
    fn icmp_types_that_cannot_be_tracked() {
        // reference §9 T5c
        let mut lab = Lab::new();
        // unsolicited echo reply: INVALID (invalid stat)
        assert_eq!(info(lab.pass(0.0, &echo(A, B, 0, 7, 1))), "INVALID");
        assert_eq!(lab.ct.stats().invalid, 1);
        // type 42: INVALID on the error path (error stat)
        assert_eq!(info(lab.pass(0.0, &icmp(A, B, 42, 0, [0; 4], b""))), "INVALID");
        assert_eq!(lab.ct.stats().error, 1);
        // router advertisement (9): no inverse
        assert_eq!(info(lab.pass(0.0, &icmp(A, B, 9, 0, [0; 4], b""))), "INVALID");
        assert_eq!(lab.ct.stats().invalid, 2);
        // timestamp request creates type=13 / type=14
        assert_eq!(info(lab.pass(0.0, &echo(A, B, 13, 77, 0))), "NEW");
        let c = lab.ct.iter().next().unwrap();
        assert_eq!(c.reply().l4, TupleL4::Icmp { ty: 14, code: 0, id: 77 });
        assert_eq!(lab.ct.len(), 1);
        assert_eq!(lab.ct.count(), 1);
    }

    #[test]
    fn icmp_error_is_related_and_leaves_the_entry_alone() {
        // reference §9 T1 / T5a
        let mut lab = Lab::new();
        let q = udp(A, 4000, B, 5999, b"hello");
        lab.pass(0.0, &q);
        let before = lab.ct.iter().next().unwrap().expires();
        let unreach = icmp_error(B, A, 3, 3, &q);
        assert_eq!(info(lab.pass(0.5, &unreach)), "RELATED_REPLY");
        let c = lab.ct.iter().next().unwrap();
        assert!(!c.status().seen_reply());
        assert_eq!(c.expires(), before);
        // an error from a router on the way, going to the original sender, too
        assert_eq!(info(lab.pass(0.6, &icmp_error(C, A, 11, 0, &q))), "RELATED_REPLY");
        // an error about the original direction travelling towards B: RELATED
        let r = udp(B, 5999, A, 4000, b"x");
        assert_eq!(info(lab.pass(0.7, &icmp_error(A, B, 3, 3, &r))), "RELATED");
        assert_eq!(lab.ct.stats().error, 0);
        assert!(lab.proc(1.0).contains("[UNREPLIED]"));
    }

    #[test]
    fn icmp_error_failures_count_as_error_not_invalid() {
        let mut lab = Lab::new();
        let q = udp(A, 4000, B, 5999, b"hello");
        // quoting a flow that does not exist
        assert_eq!(info(lab.pass(0.0, &icmp_error(B, A, 3, 3, &q))), "INVALID");
        lab.pass(0.1, &q);
        // right flow, wrong outer destination (B -> C while the flow's reply goes to A)
        assert_eq!(info(lab.pass(0.2, &icmp_error(B, C, 3, 3, &q))), "INVALID");
        // quoted header truncated before the ports
        assert_eq!(info(lab.pass(0.3, &icmp(B, A, 3, 3, [0; 4], &q[..22]))), "INVALID");
        assert_eq!(lab.ct.stats().error, 3);
        assert_eq!(lab.ct.stats().invalid, 0);
        // bad checksum on an echo request at PREROUTING: error
        let mut e = echo(A, B, 8, 1, 1);
        e[22] ^= 0xff;
        assert_eq!(info(lab.pass(0.4, &e)), "INVALID");
        assert_eq!(lab.ct.stats().error, 4);
        // ... but not checked for locally generated packets
        lab.hook = Hook::LocalOut;
        assert_eq!(info(lab.pass(0.5, &e)), "NEW");
    }

    #[test]
    fn generic_protocols_share_one_entry_per_address_pair() {
        // reference §4.3 / §9 T12
        let mut lab = Lab::new();
        let p = ipv4(A, B, 253, b"whatever");
        assert_eq!(info(lab.pass(0.0, &p)), "NEW");
        assert_eq!(info(lab.pass(0.1, &ipv4(A, B, 253, b"other"))), "NEW");
        assert_eq!(info(lab.pass(0.2, &ipv4(B, A, 253, b"back"))), "ESTABLISHED_REPLY");
        assert_eq!(lab.ct.len(), 1);
        lab.pass(0.3, &ipv4(A, C, 253, b"x"));
        assert_eq!(lab.ct.len(), 2);
        assert_eq!(
            lab.proc(1.3).lines().nth(1).unwrap(),
            "ipv4     2 unknown  253 599 src=10.99.0.1 dst=10.99.0.3 [UNREPLIED] src=10.99.0.3 dst=10.99.0.1 mark=0 zone=0 use=2"
        );
    }

    #[test]
    fn gre_v0_is_keyed_with_zero_keys() {
        let mut lab = Lab::new();
        let p = ipv4(A, B, 47, &[0x20, 0x00, 0x08, 0x00, 0, 0, 0, 5, 0x45]);
        lab.pass(0.0, &p);
        assert_eq!(
            lab.proc(0.5),
            "ipv4     2 gre      47 29 timeout=30, stream_timeout=180 src=10.99.0.1 dst=10.99.0.2 srckey=0x0 dstkey=0x0 [UNREPLIED] src=10.99.0.2 dst=10.99.0.1 srckey=0x0 dstkey=0x0 mark=0 zone=0 use=2\n"
        );
        lab.pass(1.0, &ipv4(B, A, 47, &[0x20, 0x00, 0x08, 0x00, 0, 0, 0, 5, 0x45]));
        lab.pass(2.0, &p);
        let c = lab.ct.iter().next().unwrap();
        assert!(c.status().assured());
        assert_eq!(c.remaining_secs(t(2.0)), 180);
    }

    #[test]
    fn table_full_drops_when_the_bucket_scan_finds_nothing() {
        // reference §9 T8a: 8 unreplied UDP flows, max 4 => 4 entries, drop=4, early_drop=0
        let mut cfg = Config::default();
        cfg.max = 4;
        let mut lab = Lab::with(cfg);
        let mut results = Vec::new();
        for i in 0..8u16 {
            results.push(info(lab.pass(f64::from(i) * 0.01, &udp(A, 20000 + i, B, 7000, b"x"))));
        }
        assert_eq!(results, ["NEW", "NEW", "NEW", "NEW", "DROP", "DROP", "DROP", "DROP"]);
        assert_eq!(lab.ct.len(), 4);
        assert_eq!((lab.ct.stats().drop, lab.ct.stats().early_drop), (4, 0));
        // existing flows still work
        assert_eq!(info(lab.pass(0.5, &udp(B, 7000, A, 20000, b"r"))), "ESTABLISHED_REPLY");
    }

    #[test]
    fn early_drop_evicts_unassured_entries_of_the_scanned_buckets() {
        let mut cfg = Config::default();
        cfg.max = 2;
        cfg.buckets = 1; // every entry is in the one bucket scanned
        let mut lab = Lab::with(cfg);
        lab.pass(0.0, &udp(A, 1, B, 7000, b"x"));
        lab.pass(0.0, &udp(A, 2, B, 7000, b"x"));
        assert_eq!(info(lab.pass(0.1, &udp(A, 3, B, 7000, b"x"))), "NEW");
        // both old unassured entries of the bucket were evicted
        assert_eq!(lab.ct.stats().early_drop, 2);
        assert_eq!(lab.ct.len(), 1);
        // an ASSURED entry is never evicted
        let mut cfg = Config::default();
        cfg.max = 1;
        cfg.buckets = 1;
        let mut lab = Lab::with(cfg);
        let q = udp(A, 1, B, 7000, b"x");
        let r = udp(B, 7000, A, 1, b"y");
        lab.pass(0.0, &q);
        lab.pass(0.1, &r);
        lab.pass(3.0, &q);
        assert!(lab.ct.iter().next().unwrap().status().assured());
        assert_eq!(info(lab.pass(3.1, &udp(A, 2, B, 7000, b"x"))), "DROP");
        assert_eq!(lab.ct.len(), 1);
    }

    #[test]
    fn max_zero_means_unlimited() {
        let mut cfg = Config::default();
        cfg.max = 0;
        let mut lab = Lab::with(cfg);
        for i in 0..3u16 {
            assert_eq!(info(lab.pass(0.0, &udp(A, i, B, 7000, b"x"))), "NEW");
        }
        assert_eq!(lab.ct.len(), 3);
    }

    #[test]
    fn unconfirmed_entries_count_toward_the_limit() {
        let mut cfg = Config::default();
        cfg.max = 1;
        let mut lab = Lab::with(cfg);
        let first = lab.inn(0.0, &udp(A, 1, B, 7000, b"x"));
        assert_eq!(info(first), "NEW");
        // still in flight: the table is full
        assert_eq!(info(lab.inn(0.0, &udp(A, 2, B, 7000, b"x"))), "DROP");
        lab.ct.discard(ids(first));
        assert_eq!(info(lab.pass(0.0, &udp(A, 2, B, 7000, b"x"))), "NEW");
    }

    #[test]
    fn zones_separate_identical_tuples() {
        let mut lab = Lab::new();
        let b = udp(A, 1, B, 7000, b"x");
        let p = wire::decode_ip(&b).unwrap();
        let z1 = Template { zone: 1, helper: Some("ftp".into()) };
        let r = lab.ct.handle_packet(t(0.0), &p, Hook::PreRouting, Some(&z1));
        lab.ct.confirm(t(0.0), ids(r));
        let r0 = lab.ct.handle_packet(t(0.1), &p, Hook::PreRouting, None);
        assert_eq!(info(r0), "NEW");
        lab.ct.confirm(t(0.1), ids(r0));
        assert_eq!(lab.ct.len(), 2);
        let c = lab.ct.conn(ids(r)).unwrap();
        assert_eq!((c.zone(), c.helper()), (1, Some("ftp")));
        assert!(c.status().contains(Status::HELPER));
        assert!(lab.list(0.5).contains("zone=1 helper=ftp use=1"));
        // the zone-1 entry is found again with the template
        let again = lab.ct.handle_packet(t(0.2), &p, Hook::PreRouting, Some(&z1));
        assert_eq!(ids(again), ids(r));
    }

    #[test]
    fn marks_and_stale_ids() {
        let mut lab = Lab::new();
        let r = lab.pass(0.0, &udp(A, 1, B, 7000, b"x"));
        lab.ct.set_mark(ids(r), 42);
        assert!(lab.proc(0.0).contains(" mark=42 zone=0 "));
        lab.ct.handle_timeout(t(100.0));
        // the slot is reused by a new entry; the old id does not alias it
        let r2 = lab.pass(100.0, &udp(A, 2, B, 7000, b"x"));
        assert!(lab.ct.conn(ids(r)).is_none());
        assert!(lab.ct.conn(ids(r2)).is_some());
    }

    #[test]
    fn accounting_counts_l3_bytes() {
        // reference §9 T7b: "hello" and "hello world" => 33 + 39 = 72 bytes
        let mut cfg = Config::default();
        cfg.acct = true;
        cfg.timestamp = true;
        let mut lab = Lab::with(cfg);
        lab.pass(0.0, &udp(A, 4444, B, 6001, b"hello"));
        lab.pass(0.5, &udp(A, 4444, B, 6001, b"hello world"));
        assert_eq!(
            lab.proc(1.9),
            "ipv4     2 udp      17 28 src=10.99.0.1 dst=10.99.0.2 sport=4444 dport=6001 packets=2 bytes=72 [UNREPLIED] src=10.99.0.2 dst=10.99.0.1 sport=6001 dport=4444 packets=0 bytes=0 mark=0 zone=0 delta-time=1 use=2\n"
        );
    }

    #[test]
    fn udp_bad_checksum_is_invalid_only_at_prerouting() {
        let mut lab = Lab::new();
        let mut b = udp(A, 1, B, 7000, b"x");
        b[27] ^= 0x01;
        assert_eq!(info(lab.pass(0.0, &b)), "INVALID");
        assert_eq!(lab.ct.count(), 0);
        let mut cfg = Config::default();
        cfg.checksum = false;
        let mut lab = Lab::with(cfg);
        assert_eq!(info(lab.pass(0.0, &b)), "NEW");
        // zero checksum = none
        let mut z = udp(A, 1, B, 7001, b"x");
        z[26] = 0;
        z[27] = 0;
        let mut lab = Lab::new();
        assert_eq!(info(lab.pass(0.0, &z)), "NEW");
    }

    #[test]
    fn truncated_udp_is_invalid() {
        let mut lab = Lab::new();
        let mut b = udp(A, 1, B, 7000, b"xyz");
        // UDP length larger than the datagram
        b[24] = 0;
        b[25] = 200;
        assert_eq!(info(lab.pass(0.0, &b)), "INVALID");
        assert_eq!(lab.ct.count(), 0);
        assert_eq!(lab.ct.stats().invalid, 1);
    }

    #[test]
    fn icmpv6_neighbour_discovery_is_untracked() {
        // IPv6 + ICMPv6 neighbour solicitation (135)
        let mut b = vec![0x60, 0, 0, 0, 0, 8, 58, 255];
        b.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        b.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2]);
        b.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
        let p = wire::decode_ip(&b).unwrap();
        assert!(auto_untracked(&p));
        let mut ct = Conntrack::new(Config::default());
        let r = ct.handle_packet(t(0.0), &p, Hook::LocalOut, None);
        assert!(matches!(r, InResult::Invalid { .. }));
        assert_eq!(ct.count(), 0);
        assert_eq!(ct.stats().invalid, 0);
    }
}

#[cfg(test)]
impl Conntrack {
    /// Internal consistency: every confirmed live entry is hashed twice, timed once, bucketed twice.
    fn check_invariants(&self) {
        let live = self.iter().count();
        assert_eq!(live, self.confirmed);
        assert_eq!(self.table.len(), 2 * live);
        assert_eq!(self.buckets.len(), 2 * live);
        assert_eq!(self.timers.len(), live);
        for c in self.iter() {
            assert!(self.timers.contains(&(
                c.timeout,
                self.find_node(c.orig(), c.zone).map_or(u32::MAX, |(i, _)| i as u32)
            )));
            assert!(self.find_node(c.reply(), c.zone).is_some());
        }
    }
}

#[cfg(test)]
mod proptests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::field_reassign_with_default)]
    use super::*;
    use crate::testutil::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Step {
        /// milliseconds relative to the previous step (may be negative: capture clock going back)
        dt_ms: i64,
        from: usize,
        to: usize,
        kind: u8,
        sport: u16,
        dport: u16,
        flags: usize,
        seq: usize,
        ack: usize,
        data: bool,
        accept: bool,
        local: bool,
        timeout: bool,
    }

    const HOSTS: [[u8; 4]; 3] = [A, B, C];
    const FLAGS: [&str; 10] = ["S", "SA", "A", "PA", "FA", "R", "RA", "", "SF", "U"];
    const SEQS: [u32; 6] = [0, 1000, 1001, 5000, 5001, 0x8000_0000];

    fn step() -> impl Strategy<Value = Step> {
        (
            (-3000i64..8000, 0usize..3, 0usize..3, 0u8..6, prop::sample::select(vec![80u16, 1000, 1001])),
            (prop::sample::select(vec![80u16, 1000]), 0usize..10, 0usize..6, 0usize..6),
            (any::<bool>(), prop::bool::weighted(0.8), prop::bool::weighted(0.2), prop::bool::weighted(0.1)),
        )
            .prop_map(
                |(
                    (dt_ms, from, to, kind, sport),
                    (dport, flags, seq, ack),
                    (data, accept, local, timeout),
                )| Step {
                    dt_ms,
                    from,
                    to,
                    kind,
                    sport,
                    dport,
                    flags,
                    seq,
                    ack,
                    data,
                    accept,
                    local,
                    timeout,
                },
            )
    }

    fn bytes(s: &Step) -> Vec<u8> {
        let (src, dst) = (HOSTS[s.from], HOSTS[s.to]);
        match s.kind {
            0 | 1 => {
                let mut seg = tcp(src, s.sport, dst, s.dport, FLAGS[s.flags], SEQS[s.seq], SEQS[s.ack]);
                if s.data {
                    seg = seg.data(10);
                }
                seg.bytes()
            }
            2 => udp(src, s.sport, dst, s.dport, b"payload"),
            3 => {
                let ty = [8u8, 0, 3, 13, 42, 11][s.flags % 6];
                if ty == 3 || ty == 11 {
                    let inner = udp(dst, s.dport, src, s.sport, b"payload");
                    icmp_error(src, dst, ty, 3, &inner)
                } else {
                    echo(src, dst, ty, s.sport, s.dport)
                }
            }
            4 => ipv4(src, dst, 47, &[0, 0, 0x08, 0]),
            _ => ipv4(src, dst, 253, b"x"),
        }
    }

    fn run(steps: &[Step], monotonic: bool) -> (Vec<String>, Stats) {
        let mut cfg = Config::default();
        cfg.max = 6;
        cfg.buckets = 4;
        let mut ct = Conntrack::new(cfg);
        let mut clock: i64 = 1_000_000;
        let mut latest: i64 = 0;
        let mut outs = Vec::new();
        for s in steps {
            clock = (clock + s.dt_ms).max(0);
            latest = latest.max(clock);
            let at = if monotonic { latest } else { clock };
            let now = Time(at as u64 * 1_000_000);
            if s.timeout {
                ct.handle_timeout(now);
            } else {
                let b = bytes(s);
                let p = wire::decode_ip(&b).unwrap();
                let hook = if s.local { Hook::LocalOut } else { Hook::PreRouting };
                match ct.handle_packet(now, &p, hook, None) {
                    InResult::Tracked { id, .. } => {
                        if s.accept {
                            ct.confirm(now, id);
                        } else {
                            ct.discard(id);
                        }
                    }
                    InResult::Invalid { .. } | InResult::Drop { .. } => {}
                }
            }
            assert!(ct.len() <= 6, "table over max");
            assert!(ct.count() <= 7, "allocations over max");
            ct.check_invariants();
            let mut out = String::new();
            crate::write_proc(&ct, Time(latest as u64 * 1_000_000), &mut out).unwrap();
            outs.push(out);
        }
        (outs, *ct.stats())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_exchanges_keep_the_table_sane(steps in prop::collection::vec(step(), 1..60)) {
            let (raw, raw_stats) = run(&steps, false);
            // a clock going backwards is the same as the clock standing still
            let (mono, mono_stats) = run(&steps, true);
            prop_assert_eq!(raw, mono);
            prop_assert_eq!(raw_stats, mono_stats);
        }
    }
}
