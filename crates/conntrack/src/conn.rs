//! A conntrack entry and the small types around it (reference §2).
//!
//! Contract: a [`Conn`] stores its original tuple; the reply tuple is the inverse of it unless the entry's
//! extension overrides it (NAT will make `reply` differ from the inverse of `orig`). It keeps the kernel's
//! status bits ([`Status`], same bit values as `enum ip_conntrack_status`), the
//! mark, the zone, an optional helper name, the per-protocol tracker state and, when the entry was
//! created with `nf_conntrack_acct=1` / `nf_conntrack_timestamp=1`, counters / a start time. Its
//! timer is absolute once confirmed; before confirmation it is relative (the kernel adds "now" at
//! confirmation), and [`Conn::expires`] reports creation time + that relative timeout.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wire::Time;

use crate::helper::Help;
use crate::sctp::{SctpConn, SctpState};
use crate::tcp::{TcpConn, TcpState};
use crate::timers::Place;
use crate::tuple::{pack_l4, unpack_l4, Key4, Tuple, TupleL4, KIND_PORTS};

/// Connection status bits (`enum ip_conntrack_status`, value = 1 << bit). The kernel defines bits 0-15;
/// higher bits are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Status(u16);

impl Status {
    pub const EXPECTED: Status = Status(1 << 0);
    pub const SEEN_REPLY: Status = Status(1 << 1);
    pub const ASSURED: Status = Status(1 << 2);
    pub const CONFIRMED: Status = Status(1 << 3);
    pub const SRC_NAT: Status = Status(1 << 4);
    pub const DST_NAT: Status = Status(1 << 5);
    pub const SEQ_ADJUST: Status = Status(1 << 6);
    pub const SRC_NAT_DONE: Status = Status(1 << 7);
    pub const DST_NAT_DONE: Status = Status(1 << 8);
    pub const DYING: Status = Status(1 << 9);
    pub const FIXED_TIMEOUT: Status = Status(1 << 10);
    pub const TEMPLATE: Status = Status(1 << 11);
    pub const NAT_CLASH: Status = Status(1 << 12);
    pub const HELPER: Status = Status(1 << 13);
    pub const OFFLOAD: Status = Status(1 << 14);
    pub const HW_OFFLOAD: Status = Status(1 << 15);

    pub const fn empty() -> Status {
        Status(0)
    }
    /// Bits above 15 are dropped.
    pub const fn from_bits(bits: u32) -> Status {
        Status(bits as u16)
    }
    pub const fn bits(self) -> u32 {
        self.0 as u32
    }
    /// All bits of `other` are set.
    pub const fn contains(self, other: Status) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn insert(&mut self, other: Status) {
        self.0 |= other.0;
    }
    pub fn remove(&mut self, other: Status) {
        self.0 &= !other.0;
    }
    pub const fn confirmed(self) -> bool {
        self.contains(Status::CONFIRMED)
    }
    pub const fn seen_reply(self) -> bool {
        self.contains(Status::SEEN_REPLY)
    }
    pub const fn assured(self) -> bool {
        self.contains(Status::ASSURED)
    }
    pub const fn expected(self) -> bool {
        self.contains(Status::EXPECTED)
    }
    pub const fn dying(self) -> bool {
        self.contains(Status::DYING)
    }
}

impl std::ops::BitOr for Status {
    type Output = Status;
    fn bitor(self, rhs: Status) -> Status {
        Status(self.0 | rhs.0)
    }
}

/// Direction of a packet relative to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Original,
    Reply,
}

impl Dir {
    pub(crate) fn index(self) -> usize {
        match self {
            Dir::Original => 0,
            Dir::Reply => 1,
        }
    }
    pub(crate) fn from_index(i: usize) -> Dir {
        if i == 0 {
            Dir::Original
        } else {
            Dir::Reply
        }
    }
    pub fn opposite(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

/// Per-packet conntrack info (`enum ip_conntrack_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtInfo {
    /// Original direction, before any reply was accepted.
    New,
    /// Original direction after a reply was seen.
    Established,
    /// Original direction of an expected connection, or an ICMP error about an original-direction flow.
    Related,
    /// Reply direction (already for the very first reply).
    EstablishedReply,
    /// ICMP error travelling in the reply direction of the matched entry.
    RelatedReply,
}

impl CtInfo {
    pub fn is_reply(self) -> bool {
        matches!(self, CtInfo::EstablishedReply | CtInfo::RelatedReply)
    }
    pub fn dir(self) -> Dir {
        if self.is_reply() {
            Dir::Reply
        } else {
            Dir::Original
        }
    }
}

/// Opaque handle on an entry: slab index + generation (a stale handle never aliases a newer entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub(crate) u32, pub(crate) u32);

/// Which directions a conntrack zone applies to (`CT --zone` / `--zone-orig` / `--zone-reply`,
/// `NF_CT_ZONE_DIR_*`). A zone bound to one direction only is the default zone (0) for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ZoneDir {
    /// `--zone N`: both directions (`NF_CT_DEFAULT_ZONE_DIR`).
    #[default]
    Both,
    /// `--zone-orig N`: only the original direction.
    Orig,
    /// `--zone-reply N`: only the reply direction.
    Reply,
}

impl ZoneDir {
    /// Does a zone with these directions apply to direction `dir` (`nf_ct_zone_id`)?
    pub fn applies(self, dir: Dir) -> bool {
        match self {
            ZoneDir::Both => true,
            ZoneDir::Orig => dir == Dir::Original,
            ZoneDir::Reply => dir == Dir::Reply,
        }
    }
    /// The zone id seen in direction `dir` for zone `id` with these directions (`nf_ct_zone_id`).
    pub fn id(self, id: u16, dir: Dir) -> u16 {
        if self.applies(dir) {
            id
        } else {
            0
        }
    }
}

/// What `-j CT` attached in the raw table; used only when a packet creates an entry (and, for
/// the zone, to look the packet up, as `nf_ct_zone_tmpl`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub zone: u16,
    /// Directions the zone applies to (`--zone-orig` / `--zone-reply`; `Both` for `--zone`).
    pub zone_dir: ZoneDir,
    /// Helper name (`--helper`); recorded on the entry (HELPER status bit, `helper=` in `conntrack -L`).
    pub helper: Option<String>,
}

/// Packet and byte counters of one direction (`nf_conn_counter`); bytes are L3 lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// What an expected connection keeps about its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Related {
    pub(crate) master: ConnId,
    /// The master's helper (the one that created the expectation).
    pub(crate) master_helper: &'static str,
    pub(crate) expectation: Box<str>,
}

/// Per-protocol tracker state.
#[derive(Debug, Clone)]
pub(crate) enum ProtoState {
    Tcp(TcpConn),
    /// UDP: the "stream" deadline (creation + 2 s), in ns.
    Udp {
        stream_deadline: u64,
    },
    UdpLite,
    Icmp,
    /// GRE timeouts are per entry (a PPTP helper could change them).
    Gre {
        timeout: u32,
        stream_timeout: u32,
    },
    Sctp(SctpConn),
    Generic,
}

/// Everything an entry rarely has, in one box (`nf_ct_ext`): IPv6 addresses, an overridden reply tuple,
/// helper state, the expectation link, counters and the timestamp.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ext {
    /// IPv6 entry: the original source and destination (the inline IPv4 fields are then unused).
    pub(crate) v6: Option<[Ipv6Addr; 2]>,
    /// A reply tuple that is not the inverse of the original one (NAT, later). `None`: the inverse.
    pub(crate) reply: Option<Box<Tuple>>,
    /// Helper extension (`nf_conn_help`): name, help function, FTP line tracking.
    pub(crate) help: Option<Box<Help>>,
    /// For an expected connection: its master and the expectation it matched.
    pub(crate) related: Option<Box<Related>>,
    /// Accounting extension (`nf_conntrack_acct=1` at creation).
    pub(crate) acct: Option<Box<[Counter; 2]>>,
    /// Timestamp extension (`nf_conntrack_timestamp=1` at creation): the start time, set at confirmation.
    pub(crate) tstamp: Option<Time>,
    /// The zone id (`CT --zone`), when not 0.
    pub(crate) zone: u16,
}

impl Ext {
    /// Heap bytes of the box and what it points to.
    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Ext>()
            + self.reply.as_ref().map_or(0, |_| std::mem::size_of::<Tuple>())
            + self.help.as_ref().map_or(0, |_| std::mem::size_of::<Help>())
            + self.related.as_ref().map_or(0, |_| std::mem::size_of::<Related>())
            + self.acct.as_ref().map_or(0, |_| std::mem::size_of::<[Counter; 2]>())
    }
}

/// The L4 part's kind, in [`Conn::bits`].
const KIND_MASK: u8 = 0b11;
/// The zone's directions, in [`Conn::bits`] (2 bits).
const ZONE_DIR_SHIFT: u8 = 2;
const ZONE_DIR_MASK: u8 = 0b11 << ZONE_DIR_SHIFT;
/// The cached event bits (`EV_*`, 4 bits), in [`Conn::bits`].
const ECACHE_SHIFT: u8 = 4;

/// A conntrack entry.
///
/// Layout (an IPv4 TCP entry is 104 bytes, nothing else allocated): the original tuple is stored compactly
/// (IPv4 addresses inline, IPv6 ones in the extension box), the reply tuple is derived (the inverse of the
/// original) unless the extension overrides it, and everything rare lives in one optional extension box (`Ext`).
#[derive(Debug, Clone)]
pub struct Conn {
    /// Confirmed: absolute expiry in ns. Unconfirmed: the creation time in ns (the kernel starts the
    /// timer at confirmation; [`Conn::expires`] reports creation + the relative timeout until then).
    pub(crate) timeout: u64,
    pub(crate) ext: Option<Box<Ext>>,
    /// Original source / destination (IPv4; unused for IPv6).
    src: u32,
    dst: u32,
    /// Original L4 part, packed ([`pack_l4`]).
    l4: u32,
    pub(crate) mark: u32,
    pub(crate) gen: u32,
    /// Confirmed: where the entry's timer is registered in the table's [`crate::timers::Wheel`] (packed
    /// [`crate::timers::Place`], see [`Conn::place`]). Unconfirmed: the relative timeout in seconds.
    timer: u32,
    /// Opaque per-direction tags for the owner of the table (the engine's cached rule paths);
    /// zero on a new entry, never read by conntrack.
    pub(crate) tags: [u16; 2],
    pub(crate) status: Status,
    l4proto: u8,
    /// L4 kind (2 bits), zone directions (2 bits), cached event bits (4 bits: `nf_conntrack_ecache`,
    /// delivered at the confirm hook).
    bits: u8,
    pub(crate) proto: ProtoState,
}

impl Conn {
    /// A new unconfirmed entry for original tuple `orig`, created at `now`.
    pub(crate) fn new(
        orig: &Tuple,
        zone: u16,
        zone_dir: ZoneDir,
        gen: u32,
        now: Time,
        proto: ProtoState,
    ) -> Conn {
        if let Some(k) = Key4::of(orig) {
            return Conn::new4(k, zone, zone_dir, gen, now, proto);
        }
        let (l4, kind) = pack_l4(orig.l4);
        let wide = |ip: IpAddr| match ip {
            IpAddr::V4(v) => v.to_ipv6_mapped(),
            IpAddr::V6(v) => v,
        };
        let v6 = Some([wide(orig.src), wide(orig.dst)]);
        let ext = Some(Box::new(Ext { v6, zone, ..Ext::default() }));
        Conn::build(Key4 { src: 0, dst: 0, l4, proto: orig.proto, kind }, ext, zone_dir, gen, now, proto)
    }

    /// [`Conn::new`] for an IPv4 original tuple in compact form: the entry is filled from the key's words
    /// (no [`Tuple`] is built and packed again); only a zone other than 0 needs the extension box.
    #[inline]
    pub(crate) fn new4(
        key: Key4,
        zone: u16,
        zone_dir: ZoneDir,
        gen: u32,
        now: Time,
        proto: ProtoState,
    ) -> Conn {
        let ext = (zone != 0).then(|| Box::new(Ext { zone, ..Ext::default() }));
        Conn::build(key, ext, zone_dir, gen, now, proto)
    }

    /// The entry with the stored words of `key` (addresses unused when `ext` holds IPv6 ones).
    #[inline]
    fn build(
        key: Key4,
        ext: Option<Box<Ext>>,
        zone_dir: ZoneDir,
        gen: u32,
        now: Time,
        proto: ProtoState,
    ) -> Conn {
        let zd = match zone_dir {
            ZoneDir::Both => 0,
            ZoneDir::Orig => 1,
            ZoneDir::Reply => 2,
        };
        Conn {
            timeout: now.0,
            ext,
            src: key.src,
            dst: key.dst,
            l4: key.l4,
            mark: 0,
            gen,
            timer: 0,
            tags: [0; 2],
            status: Status::empty(),
            l4proto: key.proto,
            bits: (key.kind & KIND_MASK) | (zd << ZONE_DIR_SHIFT),
            proto,
        }
    }

    /// Where the timer of a confirmed entry is registered.
    pub(crate) fn place(&self) -> Place {
        Place::unpack(self.timer, self.timeout)
    }
    /// Record where the timer is registered (for the entry's current expiry).
    pub(crate) fn set_place(&mut self, place: Place) {
        self.timer = place.pack();
    }
    /// An unconfirmed entry's relative timeout (`ct->timeout` before confirmation), in seconds.
    pub(crate) fn set_relative_timeout(&mut self, secs: u32) {
        self.timer = secs;
    }
    /// Confirmation: the timer starts at `now` with the relative timeout; the place is set by the wheel.
    pub(crate) fn start_timer(&mut self, now: Time) {
        self.timeout = now.0.saturating_add(u64::from(self.timer).saturating_mul(Time::NANOS_PER_SEC));
        self.timer = Place::None.pack();
    }
    /// The cached event bits.
    pub(crate) fn ecache(&self) -> u8 {
        self.bits >> ECACHE_SHIFT
    }
    /// Cache more event bits.
    pub(crate) fn cache_events(&mut self, ev: u8) {
        self.bits |= (ev & 0x0f) << ECACHE_SHIFT;
    }
    /// Forget the cached event bits (delivered).
    pub(crate) fn clear_events(&mut self) {
        self.bits &= !(0x0f << ECACHE_SHIFT);
    }

    /// The extension box, created on first use.
    pub(crate) fn ext_mut(&mut self) -> &mut Ext {
        self.ext.get_or_insert_with(Box::default)
    }

    pub(crate) fn help_ref(&self) -> Option<&Help> {
        self.ext.as_deref().and_then(|e| e.help.as_deref())
    }
    pub(crate) fn help_mut(&mut self) -> Option<&mut Help> {
        self.ext.as_deref_mut().and_then(|e| e.help.as_deref_mut())
    }
    fn related_ref(&self) -> Option<&Related> {
        self.ext.as_deref().and_then(|e| e.related.as_deref())
    }

    /// The direction `t` is a tuple of (the reply one when both tuples are equal), if any.
    pub(crate) fn dir_of(&self, t: &Tuple) -> Option<Dir> {
        if self.reply() == *t {
            Some(Dir::Reply)
        } else if self.orig() == *t {
            Some(Dir::Original)
        } else {
            None
        }
    }

    /// Does the reply tuple differ from the inverse of the original one (NAT)?
    pub(crate) fn reply_overridden(&self) -> bool {
        self.ext.as_deref().is_some_and(|e| e.reply.is_some())
    }

    /// The owner's tag for direction `dir` (0 until [`crate::Conntrack::set_tag`] sets it).
    pub fn tag(&self, dir: Dir) -> u16 {
        match dir {
            Dir::Original => self.tags[0],
            Dir::Reply => self.tags[1],
        }
    }
    /// Asks the processor to bring the entry's cache lines in (a 104-byte entry spans two or three:
    /// its first field, its protocol state and its packed tuple are fetched), without waiting for
    /// them, for [`crate::Conntrack::warm`].
    pub(crate) fn prefetch(&self) {
        mem_prefetch::prefetch_read_data::<_, 3>(self);
        mem_prefetch::prefetch_read_data::<_, 3>(&self.proto);
        mem_prefetch::prefetch_read_data::<_, 3>(&self.src);
    }
    /// The original tuple in compact form, for an IPv4 entry.
    pub(crate) fn key4(&self) -> Option<Key4> {
        if self.ext.as_deref().is_some_and(|e| e.v6.is_some()) {
            return None;
        }
        Some(Key4 {
            src: self.src,
            dst: self.dst,
            l4: self.l4,
            proto: self.l4proto,
            kind: self.bits & KIND_MASK,
        })
    }
    /// For an entry without extension (IPv4, zone 0, reply = inverse of the original): the direction of
    /// the packet whose tuple is `k` and inverse `kinv` (the reply one when both tuples are equal).
    #[inline]
    pub(crate) fn plain_dir_of(&self, k: &Key4, kinv: Option<&Key4>) -> Option<Dir> {
        // An inverse has the protocol and L4 kind of its tuple: compare those once.
        if self.l4proto != k.proto || self.bits & KIND_MASK != k.kind {
            return None;
        }
        let same = |t: &Key4| self.src == t.src && self.dst == t.dst && self.l4 == t.l4;
        if kinv.is_some_and(same) {
            Some(Dir::Reply)
        } else if same(k) {
            Some(Dir::Original)
        } else {
            None
        }
    }
    pub fn orig(&self) -> Tuple {
        if self.ext.is_none() && self.bits & KIND_MASK == KIND_PORTS {
            // the common case, built directly
            return Tuple {
                src: IpAddr::V4(Ipv4Addr::from(self.src)),
                dst: IpAddr::V4(Ipv4Addr::from(self.dst)),
                proto: self.l4proto,
                l4: TupleL4::Ports { sport: (self.l4 >> 16) as u16, dport: self.l4 as u16 },
            };
        }
        if let Some(k) = self.key4() {
            return k.tuple();
        }
        let (src, dst) = match self.ext.as_deref().and_then(|e| e.v6) {
            Some([s, d]) => (IpAddr::V6(s), IpAddr::V6(d)),
            None => (IpAddr::V4(Ipv4Addr::from(self.src)), IpAddr::V4(Ipv4Addr::from(self.dst))),
        };
        Tuple { src, dst, proto: self.l4proto, l4: unpack_l4(self.l4, self.bits & KIND_MASK) }
    }
    pub fn reply(&self) -> Tuple {
        if self.ext.is_none() && self.bits & KIND_MASK == KIND_PORTS {
            // the common case, built directly: addresses and ports swapped
            return Tuple {
                src: IpAddr::V4(Ipv4Addr::from(self.dst)),
                dst: IpAddr::V4(Ipv4Addr::from(self.src)),
                proto: self.l4proto,
                l4: TupleL4::Ports { sport: self.l4 as u16, dport: (self.l4 >> 16) as u16 },
            };
        }
        if let Some(r) = self.ext.as_deref().and_then(|e| e.reply.as_deref()) {
            return *r;
        }
        // Entries are only created for invertible tuples.
        if let Some(k) = self.key4() {
            return k.invert().unwrap_or(k).tuple();
        }
        let o = self.orig();
        o.invert().unwrap_or(o)
    }
    /// The tuple of direction `dir`.
    pub fn tuple(&self, dir: Dir) -> Tuple {
        match dir {
            Dir::Original => self.orig(),
            Dir::Reply => self.reply(),
        }
    }
    pub fn status(&self) -> Status {
        self.status
    }
    pub fn mark(&self) -> u32 {
        self.mark
    }
    /// The zone id (as given to `CT --zone`/`--zone-orig`/`--zone-reply`).
    pub fn zone(&self) -> u16 {
        self.ext.as_deref().map_or(0, |e| e.zone)
    }
    /// The directions the zone applies to.
    pub fn zone_dir(&self) -> ZoneDir {
        match (self.bits & ZONE_DIR_MASK) >> ZONE_DIR_SHIFT {
            1 => ZoneDir::Orig,
            2 => ZoneDir::Reply,
            _ => ZoneDir::Both,
        }
    }
    /// The zone id used for lookups of direction `dir` (`nf_ct_zone_id`).
    pub fn zone_id(&self, dir: Dir) -> u16 {
        let zone = self.zone();
        if zone == 0 {
            return 0;
        }
        self.zone_dir().id(zone, dir)
    }
    pub fn helper(&self) -> Option<&str> {
        self.help_ref().map(|h| &*h.name)
    }
    /// The master of an expected connection (`ct->master`).
    pub fn master(&self) -> Option<ConnId> {
        self.related_ref().map(|r| r.master)
    }
    /// For an expected connection: the helper of its master (what `-m helper` matches), kept for
    /// the entry's whole life.
    pub fn master_helper(&self) -> Option<&str> {
        self.related_ref().map(|r| r.master_helper)
    }
    /// For an expected connection: the expectation it matched, described (helper, tuple, master).
    pub fn expectation(&self) -> Option<&str> {
        self.related_ref().map(|r| &*r.expectation)
    }
    pub fn l4proto(&self) -> u8 {
        self.l4proto
    }
    /// Absolute expiry; for an unconfirmed entry: creation time + its timeout.
    pub fn expires(&self) -> Time {
        if self.status.confirmed() {
            Time(self.timeout)
        } else {
            Time(self.timeout).add_nanos(u64::from(self.timer).saturating_mul(Time::NANOS_PER_SEC))
        }
    }
    /// Remaining lifetime in whole seconds (truncated), 0 if past.
    pub fn remaining_secs(&self, now: Time) -> u64 {
        self.expires().nanos_since(now) / Time::NANOS_PER_SEC
    }
    /// Has the entry's timer run out at `now` (`nf_ct_is_expired`: expiry <= now)?
    pub fn is_expired(&self, now: Time) -> bool {
        self.expires() <= now
    }
    pub fn tcp_state(&self) -> Option<TcpState> {
        match &self.proto {
            ProtoState::Tcp(t) => Some(t.state),
            _ => None,
        }
    }
    /// SCTP state, for SCTP entries.
    pub fn sctp_state(&self) -> Option<SctpState> {
        match &self.proto {
            ProtoState::Sctp(s) => Some(s.state),
            _ => None,
        }
    }
    /// The TCP or SCTP state, compared before and after a packet (a PROTOINFO event when it changed).
    pub(crate) fn proto_state(&self) -> (Option<TcpState>, Option<SctpState>) {
        match &self.proto {
            ProtoState::Tcp(t) => (Some(t.state), None),
            ProtoState::Sctp(s) => (None, Some(s.state)),
            _ => (None, None),
        }
    }
    /// The protocol state name `/proc` and `conntrack -L` print (TCP and SCTP), if any.
    pub fn proto_state_name(&self) -> Option<&'static str> {
        match &self.proto {
            ProtoState::Tcp(t) => Some(t.state.name()),
            ProtoState::Sctp(s) => Some(s.state.name()),
            _ => None,
        }
    }
    /// Counters (original, reply) if the entry has the accounting extension.
    pub fn counters(&self) -> Option<[Counter; 2]> {
        self.ext.as_deref().and_then(|e| e.acct.as_deref()).copied()
    }
    /// Start time of the timestamp extension, if the entry has one.
    pub fn timestamp_start(&self) -> Option<Time> {
        self.ext.as_deref().and_then(|e| e.tstamp)
    }
    /// GRE (timeout, stream timeout) in seconds.
    pub fn gre_timeouts(&self) -> Option<(u32, u32)> {
        match self.proto {
            ProtoState::Gre { timeout, stream_timeout } => Some((timeout, stream_timeout)),
            _ => None,
        }
    }

    pub(crate) fn tcp_mut(&mut self) -> Option<&mut TcpConn> {
        match &mut self.proto {
            ProtoState::Tcp(t) => Some(t),
            _ => None,
        }
    }

    pub(crate) fn account(&mut self, dir: Dir, bytes: u64) {
        if let Some(acct) = self.ext.as_deref_mut().and_then(|e| e.acct.as_deref_mut()) {
            if let Some(c) = acct.get_mut(dir.index()) {
                c.packets = c.packets.saturating_add(1);
                c.bytes = c.bytes.saturating_add(bytes);
            }
        }
    }
}

impl fmt::Display for CtInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CtInfo::New => "NEW",
            CtInfo::Established => "ESTABLISHED",
            CtInfo::Related => "RELATED",
            CtInfo::EstablishedReply => "ESTABLISHED_REPLY",
            CtInfo::RelatedReply => "RELATED_REPLY",
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn status_bits_have_kernel_values() {
        assert_eq!(Status::SEEN_REPLY.bits(), 2);
        assert_eq!(Status::ASSURED.bits(), 4);
        assert_eq!(Status::CONFIRMED.bits(), 8);
        assert_eq!(Status::HELPER.bits(), 1 << 13);
        let mut s = Status::empty();
        s.insert(Status::ASSURED | Status::CONFIRMED);
        assert!(s.assured() && s.confirmed() && !s.seen_reply());
        s.remove(Status::ASSURED);
        assert!(!s.assured());
    }

    #[test]
    fn entries_stay_compact() {
        // The entry itself (the timer wheel's place included); the all-in figure per connection is measured by
        // `statewall bench` (docs/PERFORMANCE.md). Guard against growth.
        let size = std::mem::size_of::<Conn>();
        assert!(size <= 104, "Conn is {size} bytes");
        assert!(std::mem::size_of::<TcpConn>() <= 56);
    }

    #[test]
    fn tuples_are_stored_compactly_and_derived() {
        use std::net::Ipv6Addr;
        let t = Tuple {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            proto: 1,
            l4: crate::TupleL4::Icmp { ty: 8, code: 0, id: 77 },
        };
        let c = Conn::new(&t, 0, ZoneDir::Both, 0, Time(5), ProtoState::Icmp);
        assert!(c.ext.is_none());
        assert_eq!(c.orig(), t);
        assert_eq!(c.reply(), t.invert().unwrap());
        assert_eq!(c.expires(), Time(5));
        let v6 = Tuple {
            src: IpAddr::V6(Ipv6Addr::LOCALHOST),
            dst: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9)),
            proto: 17,
            l4: crate::TupleL4::Ports { sport: 1, dport: 2 },
        };
        let mut c = Conn::new(&v6, 3, ZoneDir::Orig, 0, Time(5), ProtoState::UdpLite);
        assert_eq!(c.orig(), v6);
        assert_eq!(c.reply(), v6.invert().unwrap());
        assert_eq!((c.zone(), c.zone_id(Dir::Original), c.zone_id(Dir::Reply)), (3, 3, 0));
        c.cache_events(0b1010);
        assert_eq!(c.ecache(), 0b1010);
        assert_eq!(c.zone_dir(), ZoneDir::Orig);
        c.clear_events();
        assert_eq!(c.ecache(), 0);
    }

    #[test]
    fn entries_built_from_compact_keys_are_the_tuple_built_ones() {
        let ip = |a: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 0, a));
        let tuples = [
            Tuple { src: ip(1), dst: ip(2), proto: 6, l4: TupleL4::Ports { sport: 1000, dport: 80 } },
            Tuple { src: ip(3), dst: ip(1), proto: 17, l4: TupleL4::Ports { sport: 53, dport: 5353 } },
            Tuple { src: ip(1), dst: ip(2), proto: 1, l4: TupleL4::Icmp { ty: 8, code: 0, id: 7 } },
            Tuple { src: ip(1), dst: ip(2), proto: 253, l4: TupleL4::None },
        ];
        for t in tuples {
            for (zone, zone_dir) in
                [(0, ZoneDir::Both), (5, ZoneDir::Both), (3, ZoneDir::Orig), (4, ZoneDir::Reply)]
            {
                let k = Key4::of(&t).unwrap();
                let a = Conn::new4(k, zone, zone_dir, 9, Time(5), ProtoState::Generic);
                let b = Conn::new(&t, zone, zone_dir, 9, Time(5), ProtoState::Generic);
                for c in [&a, &b] {
                    assert_eq!((c.orig(), c.reply()), (t, t.invert().unwrap()), "{t:?}");
                    assert_eq!(
                        (c.zone(), c.zone_dir(), c.l4proto(), c.key4()),
                        (zone, zone_dir, t.proto, Some(k))
                    );
                    assert_eq!(
                        (c.zone_id(Dir::Original), c.zone_id(Dir::Reply)),
                        (zone_dir.id(zone, Dir::Original), zone_dir.id(zone, Dir::Reply))
                    );
                    // only a zone needs the extension box
                    assert_eq!(c.ext.is_some(), zone != 0);
                    assert_eq!(
                        (c.gen, c.expires(), c.status, c.mark, c.ecache()),
                        (9, Time(5), Status::empty(), 0, 0)
                    );
                }
            }
        }
    }

    #[test]
    fn ctinfo_direction() {
        assert_eq!(CtInfo::New.dir(), Dir::Original);
        assert_eq!(CtInfo::Related.dir(), Dir::Original);
        assert!(CtInfo::RelatedReply.is_reply());
        assert_eq!(CtInfo::EstablishedReply.dir(), Dir::Reply);
        assert_eq!(Dir::Reply.opposite(), Dir::Original);
    }
}
