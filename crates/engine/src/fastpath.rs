//! The established-flow fast path: rule paths remembered per conntrack entry direction.
//!
//! Contract. After conntrack has classified a packet as ESTABLISHED (either direction) on the
//! INPUT, OUTPUT or FORWARD path, the mangle and filter tables that follow would see a packet whose
//! flow facts (addresses, ports, protocol, interfaces, conntrack view) are those of every other
//! packet of the same entry direction. When a full walk of those tables was flow-invariant
//! ([`rules::Recording`]: no match read a per-packet field, no non-terminating target ran) and
//! accepted, its counters and deciding rules are remembered here, and the entry's direction is
//! tagged ([`conntrack::Conn::tag`]) with a lane: the remembered path together with the
//! direction's routing decision (the same for all its packets: same addresses, and the engine's
//! host never changes), so that the express lane routes none of them again. A later packet of that direction
//! whose conntrack status, ctmark, skb mark and packet type are those the path was recorded with
//! skips the rule walk: the same counters grow by its length, and the same rules are named. Any
//! difference, tracing, a forwarded packet about to exceed its TTL, or a path not remembered, takes
//! the full walk. The raw table and conntrack always run; so does the confirm hook (helpers).
//!
//! Paths are shared between entries that recorded identical ones, and never change once stored;
//! at most [`MAX_PATHS`] are kept (then new walks are simply not remembered).
//!
//! A walk that was also flow-independent ([`Recording::is_flow_independent`]: decided by rules that
//! test nothing but the key's facts) holds for every entry: its path is offered ([`PathCache::shared`])
//! to an entry direction that has none yet, under the same key, so that a new flow's first
//! ESTABLISHED packets do not walk the tables again. At most [`MAX_SHARED`] such paths are offered.
//! A new entry's original direction is tagged at once with a lane that holds only its route (path
//! 0), which its first ESTABLISHED packet completes with such a shared path.

use std::collections::HashMap;

use rules::{Recording, RuleId, RuleRef};

use crate::decision::PacketPath;
use crate::engine::{Iface, Route};

/// A lane: a remembered path (its tag) and the route of the entry directions that take it. Conntrack entries
/// are tagged with lanes (see [`PathCache::lane`]).
type LaneKey = (u16, PacketPath, Option<Iface>, Option<Iface>);

/// Tags are `u16` with 0 meaning "none".
pub(crate) const MAX_PATHS: usize = u16::MAX as usize;

/// How many flow-independent paths are offered to entries without one (one per path, direction and
/// family is the usual need).
pub(crate) const MAX_SHARED: usize = 16;

/// What a remembered walk depended on beyond the entry's constant facts. The facts the walk never read
/// ([`Reads`]) are left out (zero / `None`), so that a change to them does not forget the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PathKey {
    pub v4: bool,
    pub path: PacketPath,
    pub reply: bool,
    /// The entry's status bits and ctmark after conntrack-in.
    pub status: u32,
    pub ctmark: u32,
    /// The skb mark entering the first table after conntrack (raw may set it).
    pub mark: u32,
    pub pkttype: Option<rules::PktType>,
}

impl PathKey {
    /// The key as one word, for comparing under a mask ([`Reads::bits`]): status, ctmark and skb mark
    /// in bits 0, 32 and 64, the packet type (0: none) at 96, then the path, direction and family.
    #[inline]
    fn packed(&self) -> u128 {
        let pkttype = self.pkttype.map_or(0, |t| t as u128 + 1);
        u128::from(self.status)
            | u128::from(self.ctmark) << 32
            | u128::from(self.mark) << 64
            | pkttype << 96
            | (self.path as u128) << 100
            | u128::from(self.reply) << 104
            | u128::from(self.v4) << 105
    }
}

/// The changeable facts a walk read (from [`rules::Recording`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reads {
    pub status: bool,
    pub ctmark: bool,
    pub mark: bool,
    pub pkttype: bool,
}

impl Reads {
    pub fn of(rec: &Recording) -> Reads {
        Reads {
            status: rec.reads_status(),
            ctmark: rec.reads_ctmark(),
            mark: rec.reads_mark(),
            pkttype: rec.reads_pkttype(),
        }
    }

    /// The bits of [`PathKey::packed`] that [`Reads::mask`] keeps.
    fn bits(self) -> u128 {
        let word = |read: bool| if read { u128::from(u32::MAX) } else { 0 };
        let status = if self.status { u128::from(u32::MAX) } else { u128::from(NAT) };
        let pkttype = if self.pkttype { 0xf << 96 } else { 0 };
        status | word(self.ctmark) << 32 | word(self.mark) << 64 | pkttype | !0u128 << 100
    }

    /// `key` with the facts not read left out. The NAT status bits are always kept: the state match
    /// reads them (SNAT/DNAT virtual states) and they never change once an entry exists.
    pub fn mask(self, key: PathKey) -> PathKey {
        PathKey {
            status: if self.status { key.status } else { key.status & NAT },
            ctmark: if self.ctmark { key.ctmark } else { 0 },
            mark: if self.mark { key.mark } else { 0 },
            pkttype: if self.pkttype { key.pkttype } else { None },
            ..key
        }
    }
}

const NAT: u32 = rules::status::SRC_NAT | rules::status::DST_NAT;

/// A remembered walk: its key, the counters it grew (and the facts it read), and the rules the decision
/// names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CachedPath {
    /// Masked with the facts `counts` read.
    pub key: PathKey,
    pub counts: Recording,
    /// The filter table's deciding rule, and the last other table's, when those tables ran.
    pub filter_rule: Option<RuleId>,
    pub last_rule: Option<RuleId>,
}

#[derive(Debug, Default)]
pub(crate) struct PathCache {
    paths: Vec<CachedPath>,
    /// Per path (same index): the mask of the facts its walk read and its key under that mask, as words
    /// ([`PathKey::packed`]: a lookup is one masked compare), and the reference naming its deciding rule
    /// (`filter_rule`, else `last_rule`), all fixed when it is stored, so that a packet taking it neither
    /// works them out nor names the rule again.
    fixed: Vec<(u128, u128, Option<RuleRef>)>,
    index: HashMap<CachedPath, u16, foldhash::fast::FixedState>,
    /// The tags most recently found or stored, checked before hashing (a few paths serve most flows).
    recent: [u16; RECENT],
    next_recent: usize,
    /// The flow-independent paths, offered to any entry direction without a path.
    shared: Vec<u16>,
    /// The lanes, by lane tag - 1, and their tags.
    lanes: Vec<LaneKey>,
    lane_index: HashMap<LaneKey, u16, foldhash::fast::FixedState>,
    /// The lanes last made or found, checked before hashing (a few serve most entries: one per path
    /// and direction, and the route-only lanes of new entries).
    recent_lanes: [Option<(LaneKey, u16)>; RECENT],
    next_recent_lane: usize,
    /// The recording of the walk in progress (reused buffer).
    pub rec: Recording,
    pub hits: u64,
}

const RECENT: usize = 8;

impl PathCache {
    /// The path behind `tag`, if `tag` names one.
    pub fn get(&self, tag: u16) -> Option<&CachedPath> {
        self.paths.get(usize::from(tag).checked_sub(1)?)
    }

    /// The path behind `tag` when it was recorded under `key` (masked with the facts it read), with the
    /// reference naming its deciding rule.
    #[inline(always)]
    pub fn lookup(&self, tag: u16, key: PathKey) -> Option<(&CachedPath, Option<&RuleRef>)> {
        let i = usize::from(tag).checked_sub(1)?;
        let (mask, want, name) = self.fixed.get(i)?;
        if key.packed() & mask != *want {
            return None;
        }
        Some((self.paths.get(i)?, name.as_ref()))
    }

    /// The path (0: none yet) and route of lane `lane` (a conntrack entry direction's tag; 0: none).
    // Inlined: a returned copy of this small tuple, read back wider than it was written, stalls.
    #[inline(always)]
    pub fn lane(&self, lane: u16) -> Option<(u16, Route)> {
        let &(tag, path, i, o) = self.lanes.get(usize::from(lane).checked_sub(1)?)?;
        Some((tag, (crate::engine::kind_of(path)?, i, o)))
    }

    /// The lane of path `tag` (0: none yet, only the route is known) taken with `route` (INPUT, OUTPUT or
    /// FORWARD), made now if new; `None` when there are too many.
    pub fn lane_tag(&mut self, tag: u16, (kind, i, o): Route) -> Option<u16> {
        let key = (tag, crate::engine::path_of(kind)?, i, o);
        if let Some(&(_, l)) = self.recent_lanes.iter().flatten().find(|(k, _)| *k == key) {
            return Some(l);
        }
        let l = match self.lane_index.get(&key) {
            Some(&l) => l,
            None => {
                if self.lanes.len() >= MAX_PATHS {
                    return None;
                }
                let l = u16::try_from(self.lanes.len().checked_add(1)?).ok()?;
                self.lanes.push(key);
                self.lane_index.insert(key, l);
                l
            }
        };
        if let Some(slot) = self.recent_lanes.get_mut(self.next_recent_lane % RECENT) {
            *slot = Some((key, l));
        }
        self.next_recent_lane = self.next_recent_lane.wrapping_add(1);
        Some(l)
    }

    /// A flow-independent path recorded under `key` (masked with the facts it read), for an entry
    /// direction that has no path of its own.
    pub fn shared(&self, key: PathKey) -> Option<u16> {
        self.shared.iter().copied().find(|&t| self.lookup(t, key).is_some())
    }

    /// The tag of the path recorded as `rec` (the buffer) under `key` (masked here with the facts the walk
    /// read) with the rules the walk named, stored now if no identical path is; `None` when the cache is
    /// full. A flow-independent recording is also offered to other entries ([`PathCache::shared`]).
    /// `name` names a rule (called only when the path is new).
    pub fn remember(
        &mut self,
        key: PathKey,
        filter_rule: Option<RuleId>,
        last_rule: Option<RuleId>,
        name: impl FnOnce(RuleId) -> RuleRef,
    ) -> Option<u16> {
        let tag = self.store(key, filter_rule, last_rule, name)?;
        if self.rec.is_flow_independent() && self.shared.len() < MAX_SHARED && !self.shared.contains(&tag) {
            self.shared.push(tag);
        }
        Some(tag)
    }

    fn store(
        &mut self,
        key: PathKey,
        filter_rule: Option<RuleId>,
        last_rule: Option<RuleId>,
        name: impl FnOnce(RuleId) -> RuleRef,
    ) -> Option<u16> {
        let reads = Reads::of(&self.rec);
        let key = reads.mask(key);
        let same = |p: &CachedPath| {
            p.key == key && p.counts == self.rec && p.filter_rule == filter_rule && p.last_rule == last_rule
        };
        if let Some(&t) = self.recent.iter().find(|&&t| self.get(t).is_some_and(same)) {
            return Some(t);
        }
        let path = CachedPath { key, counts: self.rec.clone(), filter_rule, last_rule };
        let tag = match self.index.get(&path) {
            Some(&t) => t,
            None => {
                if self.paths.len() >= MAX_PATHS {
                    return None;
                }
                let tag = u16::try_from(self.paths.len().checked_add(1)?).ok()?;
                self.paths.push(path.clone());
                self.fixed.push((reads.bits(), key.packed(), filter_rule.or(last_rule).map(name)));
                self.index.insert(path, tag);
                tag
            }
        };
        if let Some(slot) = self.recent.get_mut(self.next_recent % RECENT) {
            *slot = tag;
        }
        self.next_recent = self.next_recent.wrapping_add(1);
        Some(tag)
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::host::PathKind;

    /// A distinct key for each `n` below 20 (path, direction, family), with `status` and `mark`.
    fn key(n: u16, status: u32, mark: u32) -> PathKey {
        let paths = [
            PacketPath::Input,
            PacketPath::Output,
            PacketPath::Forward,
            PacketPath::Loopback,
            PacketPath::Prerouting,
        ];
        PathKey {
            v4: n / 10 == 0,
            path: paths[usize::from(n % 5)],
            reply: (n / 5) % 2 == 1,
            status,
            ctmark: 0,
            mark,
            pkttype: Some(rules::PktType::Host),
        }
    }

    fn name(_: RuleId) -> RuleRef {
        RuleRef {
            table: rules::Table::Filter,
            chain: rules::ChainName::Builtin(rules::Hook::Input),
            rule: None,
        }
    }

    fn any_key() -> impl proptest::strategy::Strategy<Value = PathKey> {
        use proptest::prelude::*;
        let small = prop_oneof![Just(0u32), Just(1), Just(rules::status::SRC_NAT), any::<u32>()];
        (0u16..20, small.clone(), small.clone(), small, 0usize..6).prop_map(|(n, status, ctmark, mark, t)| {
            let types = [
                rules::PktType::Host,
                rules::PktType::Broadcast,
                rules::PktType::Multicast,
                rules::PktType::OtherHost,
                rules::PktType::Loopback,
            ];
            PathKey { ctmark, pkttype: types.get(t).copied(), ..key(n, status, mark) }
        })
    }

    proptest::proptest! {
        /// The masked word compare a lookup makes is the comparison of the masked keys.
        #[test]
        fn packed_compare_is_the_masked_key_compare(
            a in any_key(),
            b in any_key(),
            read in proptest::prelude::any::<[bool; 4]>(),
        ) {
            let r = Reads { status: read[0], ctmark: read[1], mark: read[2], pkttype: read[3] };
            let words = a.packed() & r.bits() == r.mask(b).packed();
            proptest::prop_assert_eq!(words, r.mask(a) == r.mask(b));
            proptest::prop_assert!(a.packed() & r.bits() == r.mask(a).packed());
        }
    }

    #[test]
    fn lanes_name_a_path_and_a_route_once() {
        let mut c = PathCache::default();
        let (eth0, eth1) = (Some(Iface(1)), Some(Iface(2)));
        let input = (PathKind::Input, eth0, None);
        let fwd = (PathKind::Forward, eth0, eth1);
        assert_eq!(c.lane_tag(0, input), Some(1));
        assert_eq!(c.lane_tag(0, input), Some(1), "a recent lane again");
        assert_eq!(c.lane_tag(3, input), Some(2));
        assert_eq!(c.lane_tag(3, fwd), Some(3));
        assert_eq!(c.lane_tag(0, input), Some(1), "found again");
        assert_eq!(c.lane_tag(3, (PathKind::Forward, eth1, eth0)), Some(4));
        assert_eq!(c.lane_tag(3, (PathKind::Loopback, None, None)), None);
        assert_eq!(c.lane(0), None);
        assert_eq!(c.lane(1), Some((0, input)));
        assert_eq!(c.lane(3), Some((3, fwd)));
        assert_eq!(c.lane(4), Some((3, (PathKind::Forward, eth1, eth0))));
        assert_eq!(c.lane(5), None);
        // Past the recent lanes: found through the index.
        for t in 10..20 {
            assert_eq!(c.lane_tag(t, fwd), Some(t - 5));
        }
        assert_eq!(c.lane_tag(0, input), Some(1));
        assert_eq!(c.lane_tag(10, fwd), Some(5));
    }

    #[test]
    fn identical_paths_share_a_tag_and_tags_start_at_one() {
        let mut c = PathCache::default();
        assert_eq!(c.remember(key(0, 0, 0), None, None, name), Some(1));
        assert_eq!(c.remember(key(1, 0, 0), None, None, name), Some(2));
        assert_eq!(c.remember(key(0, 0, 0), None, None, name), Some(1));
        // A walk that read neither the status nor the mark is the same path whatever they are.
        assert_eq!(c.remember(key(0, 4, 7), None, None, name), Some(1));
        // Past the recent tags: found through the index.
        for n in 2..20 {
            assert_eq!(c.remember(key(n, 0, 0), None, None, name), Some(n + 1));
        }
        assert_eq!(c.remember(key(0, 0, 0), None, None, name), Some(1));
        assert_eq!(c.len(), 20);
        assert_eq!(c.get(0), None);
        assert_eq!(c.get(2).map(|p| p.key.path), Some(PacketPath::Output));
        assert_eq!(c.get(21), None);
    }
}
