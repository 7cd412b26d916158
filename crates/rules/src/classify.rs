//! The classifier: per chain, an index built once at compile time that narrows a packet's walk to
//! the rules that may match it, so a 10k-rule chain costs a few lookups instead of 10k tests.
//!
//! Contract: for every chain of at least [`MIN_INDEXED_RULES`] rules, [`ChainIndex::gather`] gives
//! a sorted, duplicate-free list of rule positions (the *candidates*) that contains every rule
//! that matches the packet **or hotdrops it**. The evaluator then walks the candidates in rule
//! order and evaluates each one fully with the same matcher as the linear walk, so verdicts,
//! deciding rules, counters, side effects of matches (limit buckets) and targets, jumps, gotos,
//! RETURNs, policies and TRACE are exactly those of `ipt_do_table`'s first-match walk: a skipped
//! rule is one whose matcher would have said "no" without side effects.
//!
//! How a rule is indexed: each rule is filed under exactly one *key*, the most selective of the
//! conditions it is known to need, chosen by a cost (how broad the condition is, times how many
//! rules could share it, then times how many rules that first choice actually filed under it):
//! - its non-negated `-s` or `-d` prefix (contiguous mask, not /0);
//! - its non-negated destination or source port range(s) from a `tcp`/`udp` match or a
//!   `multiport --dports/--sports` match, with the rule's non-negated `-p`;
//! - its non-negated `-p`;
//! - its non-negated `--state` / `--ctstate` set;
//! - its non-negated, non-wildcard `-i` or `-o` device;
//! - none of these: the rule is always a candidate.
//!
//! Keys from `-s`, `-d`, `-p`, `-i`, `-o` are tested by `ip_packet_match` before any match runs, so a
//! rule failing them neither hotdrops nor touches a limit bucket. A key from a match is used only
//! when no earlier match of the rule has a side effect (`limit`) or may hotdrop (`frag`), and only
//! for *regular* packets ([`PacketKeys::new`]): the ruleset's family, not a non-first fragment, an
//! upper-layer protocol found, at least 8 transport bytes and for TCP a complete header (data
//! offset >= 5, all of it present). On such a packet the tcp/udp/icmp/multiport matches cannot
//! hotdrop, so a rule whose key fails simply does not match. Every other packet takes the linear
//! walk. The conntrack state can change during a walk (NOTRACK, CT): the evaluator gathers again
//! when it does.
//!
//! Lists: every key's rules are written to the chain's *pool* as one list of 32-byte rule
//! summaries (rule position, the addresses, protocol, first ports and state test the rule is
//! known to need; see [`Summary`]), its last entry flagged or followed by a control entry (end,
//! link to the enclosing prefix's list). Reading a list tests each summary on the spot, without
//! branches, so only the few rules that may match are sorted and loaded by the evaluator, and a
//! list costs sequential reads of one region. A prefix's list also holds the rules of the
//! prefixes enclosing it while that makes at most [`FLAT_MAX`] entries (one region instead of a
//! chain of dependent reads); past that it links to its parent's list.
//!
//! Exact rules: a rule whose every test is one its summary makes (see [`exact`]: addresses,
//! protocol, the ports of a plain `tcp`/`udp` match, a state test, comments) matches a regular
//! packet exactly when its summary admits it. Its candidates carry [`CAND_EXACT`] (and its target
//! when ACCEPT or DROP), and the evaluator counts it and applies that target without loading or
//! testing the rule. A long list (more than [`NEST_FROM`] rules, e.g. a
//! popular port) whose rules can mostly be filed under a second key becomes a *nested index*
//! over them (same structure, at most [`MAX_DEPTH`] levels, a budget of [`NEST_BUDGET`] pool
//! entries per rule of the chain in all), so a crowded key does not cost a long scan.
//!
//! Chains walked linearly (shorter than [`MIN_INDEXED_RULES`]) get their rules' summaries too,
//! and, up to 64 rules, a [`ShortChain`]: per conntrack state and per protocol a bit mask of the
//! rules whose summary's state and protocol tests pass (the two tests every packet of a walk
//! shares), and each rule's `-i` / `-o`. The walk goes from one rule of the masks to the next,
//! tests its devices and then its summary (unless the summary tests nothing more), and decides a
//! rule exact but for its devices without running it. The masks only narrow what the summaries
//! admit, so the rules skipped are rules the linear walk finds not matching.
//!
//! Lookups: prefixes (and port ranges, split into aligned power-of-two blocks, at most 30 per
//! range) are nested or disjoint, so each field is a laminar set of prefixes cut into elementary
//! intervals. A direct table on the top bits of the key (at most 2^16 slots, about four per
//! prefix) names the slot's single interval, or the slot's few intervals to count through, or
//! for a crowded slot a level-2 table on the next bits (about two sub-slots per interval, at most
//! 256); the interval names the pool position of its deepest prefix's list, which ends by linking
//! to the list of the enclosing prefix, and so on (lists are written enclosing prefixes first, so
//! links go backwards and a scan ends). Protocols are one table lookup naming the protocol's list
//! and port indexes. Memory is linear in the number of rules: at most 15 port ranges × 30 blocks
//! per rule, one control entry per list, the nested indexes' budget, and per field a slot table
//! of at most eight entries per prefix (2^16 at most), level-2 tables of at most four entries per
//! interval and the intervals themselves (at most two per prefix, plus one per slot).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::model::*;
use wire::Packet;

/// Chains shorter than this are walked linearly (an index would not pay off).
pub const MIN_INDEXED_RULES: usize = 16;
/// Chains longer than this are walked linearly too (keeps every pool position below 2^31).
const MAX_INDEXED_RULES: usize = 1 << 20;

/// No list / no interval.
const NONE: u32 = u32::MAX;
/// Lists longer than this get a nested index over their rules (when it narrows them).
const NEST_FROM: usize = 8;
/// Nesting depth limit (a chain's own index is depth 0).
const MAX_DEPTH: u32 = 2;
/// Pool entries the nested indexes of a chain may use in all, per rule of the chain.
const NEST_BUDGET: usize = 8;
/// A slot holding more than one interval.
const MULTI: u32 = u32::MAX - 1;
/// Flag of a slot entry naming a level-2 table (pool positions stay below it).
const L2: u32 = 1 << 31;
/// Slots with more intervals than this get a level-2 table.
const L2_FROM: usize = 6;
/// A level-2 table has about two sub-slots per interval of its slot, at most `2^L2_BITS`.
const L2_BITS: u32 = 8;
/// Level-2 entries: the table's sub-slot bits sit above this shift in the slot entry, its
/// first entry below.
const L2_SHIFT: u32 = 27;

/// Control entries of a pool (in [`Summary::state`]'s top bits, which no state uses): every
/// list ends with an entry flagged [`LAST`], or with [`END`] or [`LINK`]; `rule` holds the
/// argument.
const CTRL: u16 = 1 << 15;
/// End of the list.
const END: u16 = CTRL;
/// The list goes on at pool position `rule` (an earlier list: the parent prefix's).
const LINK: u16 = CTRL | 1 << 14;
/// The candidates of nested index `subs[rule]`, then the next entry.
const SUB: u16 = CTRL | 1 << 13;
/// Flag of a rule entry or [`SUB`] entry ending its list (saves an [`END`] entry).
const LAST: u16 = 1 << 12;

/// State bit positions used by [`StateSet`] (INVALID..NEW, SNAT, DNAT, UNTRACKED).
const STATE_BITS: usize = 9;

/// A gathered candidate is `position << CAND_SHIFT | flags`: sorting candidates sorts positions.
pub(crate) const CAND_SHIFT: u32 = 3;
/// Flag: the rule is [exact](exact): on a regular packet it matches (without side effects or a
/// hotdrop) exactly when its summary admits the packet, so the walk need not run its tests.
pub(crate) const CAND_EXACT: u32 = 1;
/// Flag of an exact rule: its target is ACCEPT.
pub(crate) const CAND_ACCEPT: u32 = 2;
/// Flag of an exact rule: its target is DROP.
pub(crate) const CAND_DROP: u32 = 4;

/// An unsigned key type a prefix index works on (ports: u16, IPv4: u32, IPv6: u128).
pub(crate) trait Key: Copy + Ord + std::fmt::Debug {
    const WIDTH: u32;
    /// `self >> shift` as a slot number (`shift` below the width, leaving at most 24 bits).
    fn top(self, shift: u32) -> usize;
    /// The first key of slot `s`.
    fn slot_start(s: usize, bits: u32) -> Self;
    /// The last key of the prefix starting at `self` of length `len`.
    fn last(self, len: u32) -> Self;
    /// `self` with everything after the first `len` bits cleared.
    fn masked(self, len: u32) -> Self;
    fn succ(self) -> Option<Self>;
}

macro_rules! impl_key {
    ($t:ty) => {
        impl Key for $t {
            const WIDTH: u32 = <$t>::BITS;
            #[inline]
            fn top(self, shift: u32) -> usize {
                // Shifts are below the width by construction (a wider one would wrap).
                self.wrapping_shr(shift) as usize
            }
            fn slot_start(s: usize, bits: u32) -> Self {
                if bits == 0 || bits > Self::WIDTH {
                    return 0;
                }
                <$t>::try_from(s).unwrap_or(0).checked_shl(Self::WIDTH - bits).unwrap_or(0)
            }
            fn last(self, len: u32) -> Self {
                if len >= Self::WIDTH {
                    self
                } else {
                    self | (<$t>::MAX >> len)
                }
            }
            fn masked(self, len: u32) -> Self {
                if len >= Self::WIDTH {
                    self
                } else if len == 0 {
                    0
                } else {
                    self & !(<$t>::MAX >> len)
                }
            }
            fn succ(self) -> Option<Self> {
                self.checked_add(1)
            }
        }
    };
}
impl_key!(u16);
impl_key!(u32);
impl_key!(u128);

/// A laminar set of prefixes, each with a list of rules, cut into elementary intervals; each
/// interval names the pool position of its deepest prefix's list, whose end links to the
/// enclosing prefix's list, and so on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrefixIndex<K> {
    /// `WIDTH - bits` for a table of `2^bits` slots: a key's slot is `key >> shift`.
    shift: u32,
    /// Per slot: the first interval starting in it, and the list of its deepest prefix when the
    /// slot is a single interval (else [`MULTI`] or a level-2 table); one extra entry at the end.
    slots: Vec<(u32, u32)>,
    /// Level-2 tables (2^b sub-slots and the end each), same encoding.
    l2: Vec<(u32, u32)>,
    /// Start of each elementary interval (sorted; every slot start is one of them) and the
    /// list of the deepest prefix containing it, or [`NONE`].
    ivs: Vec<(K, u32)>,
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Writes a list: `emit(rules, inherited, parent list)` writes the summaries of `rules`, then those
/// of `inherited` (at most [`NEST_FROM`] rules in all: never a nested index), then the link to
/// `parent` ([`NONE`]: the end), and returns its pool position.
type Emit<'a> = dyn FnMut(&[u32], &[u32], u32) -> u32 + 'a;

/// A prefix's list holds the rules of its enclosing prefixes too (instead of linking to the
/// parent's list, a dependent memory access) while it has at most this many entries.
const FLAT_MAX: usize = 8;

impl<K: Key> PrefixIndex<K> {
    /// Builds from (prefix value, prefix length, rule); each prefix's rule list (sorted) is
    /// written by `emit`, enclosing prefixes first.
    fn build(mut entries: Vec<(K, u32, u32)>, emit: &mut Emit<'_>) -> Self {
        for e in &mut entries {
            e.1 = e.1.min(K::WIDTH);
            e.0 = e.0.masked(e.1);
        }
        entries.sort_unstable();
        entries.dedup();
        // Distinct prefixes in (start, length) order, which puts a parent before its children,
        // with their rules.
        let mut prefixes: Vec<(K, K)> = Vec::new();
        let mut rules: Vec<Vec<u32>> = Vec::new();
        for chunk in entries.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
            if let Some(&(v, l, _)) = chunk.first() {
                prefixes.push((v, v.last(l)));
                rules.push(chunk.iter().map(|e| e.2).collect());
            }
        }
        // Parents: the innermost open prefix still containing this one. Lists are written in
        // this order, so a parent's position is known before its children's. A short list
        // carries its ancestors' rules itself (`flat`: all of them, when it does), a longer one
        // links to its parent's list.
        let mut stack: Vec<usize> = Vec::new();
        let mut pos: Vec<u32> = Vec::with_capacity(prefixes.len());
        let mut flat: Vec<Option<Vec<u32>>> = Vec::with_capacity(prefixes.len());
        for (j, &(_, last)) in prefixes.iter().enumerate() {
            while let Some(&top) = stack.last() {
                if prefixes.get(top).is_some_and(|p| p.1 >= last) {
                    break;
                }
                stack.pop();
            }
            let own = rules.get(j).map_or(&[][..], Vec::as_slice);
            let parent = stack.last().copied();
            let inherited = match parent {
                None => Some(&[][..]),
                Some(t) => flat.get(t).and_then(|f| f.as_deref()),
            };
            match inherited.filter(|i| own.len().saturating_add(i.len()) <= FLAT_MAX.min(NEST_FROM)) {
                Some(inh) => {
                    pos.push(emit(own, inh, NONE));
                    flat.push(Some([own, inh].concat()));
                }
                None => {
                    let parent = parent.and_then(|t| pos.get(t)).copied().unwrap_or(NONE);
                    pos.push(emit(own, &[], parent));
                    flat.push(None);
                }
            }
            stack.push(j);
        }
        // About four slots per prefix (most keys then resolve in the slot), at most 2^16.
        let want = prefixes.len().saturating_mul(4).max(2).next_power_of_two().trailing_zeros();
        let bits = want.clamp(1, 16).min(K::WIDTH);
        let slots = 1usize << bits;
        let mut bounds: Vec<K> = Vec::with_capacity(slots + prefixes.len() * 2);
        bounds.extend((0..slots).map(|s| K::slot_start(s, bits)));
        for &(v, last) in &prefixes {
            bounds.push(v);
            if let Some(n) = last.succ() {
                bounds.push(n);
            }
        }
        bounds.sort_unstable();
        bounds.dedup();
        // Sweep: at each boundary close the prefixes that ended, open those starting here.
        let mut deepest = Vec::with_capacity(bounds.len());
        stack.clear();
        let mut next = 0usize;
        for &x in &bounds {
            while let Some(&top) = stack.last() {
                if prefixes.get(top).is_some_and(|p| p.1 >= x) {
                    break;
                }
                stack.pop();
            }
            while let Some(&(v, _)) = prefixes.get(next) {
                if v != x {
                    break;
                }
                stack.push(next);
                next += 1;
            }
            deepest.push(stack.last().and_then(|&t| pos.get(t)).copied().unwrap_or(NONE));
        }
        let mut firsts: Vec<usize> =
            (0..slots).map(|s| bounds.partition_point(|&b| b < K::slot_start(s, bits))).collect();
        firsts.push(bounds.len());
        // Level 1: per slot, its first interval and its list when it holds a single interval. A
        // slot holding more than a few intervals gets a level-2 table on the next 8 bits (the
        // entry's first interval stays, for the slot's bounds).
        let mut table: Vec<(u32, u32)> = Vec::with_capacity(slots + 1);
        let mut l2: Vec<(u32, u32)> = Vec::new();
        let deep = |i: usize| deepest.get(i).copied().unwrap_or(NONE);
        for (s, w) in firsts.windows(2).enumerate() {
            let (a, b) = match *w {
                [a, b] => (a, b),
                _ => continue,
            };
            let tag = if b == a + 1 {
                deep(a)
            } else if b - a > L2_FROM && bits < K::WIDTH && l2.len() < 1 << L2_SHIFT {
                // A crowded slot: a table on the next bits, about two sub-slots per interval.
                let sb =
                    ((b - a) * 2).next_power_of_two().trailing_zeros().clamp(1, L2_BITS).min(K::WIDTH - bits);
                let t = len32(l2.len()) | sb << L2_SHIFT | L2;
                let last = (1usize << sb) - 1;
                for sub in 0..=last {
                    let start = K::slot_start(s.wrapping_shl(sb) | sub, bits + sb);
                    // The interval containing the sub-slot's start, up to the last one starting in it.
                    let first = bounds.partition_point(|&x| x <= start).saturating_sub(1).max(a);
                    let end = if sub == last {
                        b
                    } else {
                        let next = K::slot_start(s.wrapping_shl(sb) | (sub + 1), bits + sb);
                        bounds.partition_point(|&x| x < next)
                    };
                    let tag = if end == first + 1 { deep(first) } else { MULTI };
                    l2.push((len32(first), tag));
                }
                l2.push((len32(b), NONE));
                t
            } else {
                MULTI
            };
            table.push((len32(a), tag));
        }
        table.push((len32(bounds.len()), NONE));
        let ivs = bounds.into_iter().zip(deepest).collect();
        PrefixIndex { shift: K::WIDTH - bits, slots: table, l2, ivs }
    }

    /// The list of the deepest prefix containing `k`, or [`NONE`].
    #[inline(always)]
    fn lookup(&self, k: K) -> u32 {
        let s = k.top(self.shift);
        let Some(&[(a, tag), (b, _)]) = self.slots.get(s..s.wrapping_add(2)) else {
            return NONE;
        };
        // Pool positions are below L2; NONE and MULTI have it set.
        if tag < L2 || tag == NONE {
            return tag;
        }
        let (lo, hi) = if tag == MULTI {
            (a, b)
        } else {
            let sb = (tag & !L2) >> L2_SHIFT;
            let t = (tag & ((1 << L2_SHIFT) - 1)) as usize;
            let sub = t.saturating_add(k.top(self.shift.saturating_sub(sb)) & ((1 << sb) - 1));
            let Some(&[(f, tag2), (nf, _)]) = self.l2.get(sub..sub.wrapping_add(2)) else {
                return NONE;
            };
            if tag2 != MULTI {
                return tag2;
            }
            // One more: the interval containing the next sub-slot's start may hold `k`.
            (f, nf.saturating_add(1).min(b))
        };
        let Some(seg) = self.ivs.get(lo as usize..hi as usize) else { return NONE };
        // Short segments (the usual case): a branch-free count the compiler vectorizes.
        let i = if seg.len() <= 64 {
            seg.iter().map(|&(x, _)| usize::from(x <= k)).sum()
        } else {
            seg.partition_point(|&(x, _)| x <= k)
        };
        match i.checked_sub(1) {
            Some(i) => seg.get(i).map_or(NONE, |iv| iv.1),
            None => NONE,
        }
    }
}

/// Source or destination address index of the ruleset's family.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AddrIndex {
    V4(PrefixIndex<u32>),
    V6(PrefixIndex<u128>),
}

impl AddrIndex {
    /// The list of the deepest prefix containing the address (`k32` for IPv4, `k128` for IPv6).
    #[inline]
    fn lookup(&self, k32: u32, k128: u128) -> u32 {
        match self {
            AddrIndex::V4(ix) => ix.lookup(k32),
            AddrIndex::V6(ix) => ix.lookup(k128),
        }
    }
}

/// An address as the summaries compare it: IPv4 whole, IPv6 its first 32 bits.
fn addr32(a: IpAddr) -> u32 {
    match a {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => u32::try_from(u128::from(a) >> 96).unwrap_or(0),
    }
}

/// [`Summary::flags`] bits: the six tests' inversions, in the order [`Summary::admits`] packs
/// their results, then whether the protocol is tested at all.
mod sf {
    pub const SRC_NEG: u8 = 1;
    pub const DST_NEG: u8 = 2;
    pub const PROTO_NEG: u8 = 4;
    pub const SPORT_NEG: u8 = 8;
    pub const DPORT_NEG: u8 = 16;
    pub const STATE_NEG: u8 = 32;
    pub const NEG: u8 = 63;
    pub const PROTO: u8 = 64;
}

/// A rule and its cheap necessary conditions (32 bytes, stored inline in the index's lists so
/// testing them costs no extra memory access), tested on gathered candidates before the evaluator
/// loads the rule: the address and protocol tests of `ip_packet_match` (IPv4:
/// exactly; IPv6: the first 32 bits of non-negated prefixes), and, from the matches before the
/// first one with a side effect or a possible hotdrop, the first tcp/udp port tests and the first
/// state test (sound for regular packets only, the only ones gathered for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    src: u32,
    src_mask: u32,
    dst: u32,
    dst_mask: u32,
    /// Port ranges as (first port, last - first): one wrapping subtraction and one comparison
    /// test a port; the full range (not negated) tests nothing.
    sport: (u16, u16),
    dport: (u16, u16),
    /// State bits (no state test: none, inverted); for a control entry ([`CTRL`] set) its kind.
    state: u16,
    proto: u8,
    flags: u8,
    /// The rule's position in its chain, or a control entry's argument.
    rule: u32,
}

impl Summary {
    /// A control entry of the pool ([`END`], [`LINK`], [`SUB`]).
    fn control(kind: u16, arg: u32) -> Summary {
        Summary {
            src: 0,
            src_mask: 0,
            dst: 0,
            dst_mask: 0,
            sport: (0, 0),
            dport: (0, 0),
            state: kind,
            proto: 0,
            flags: 0,
            rule: arg,
        }
    }

    /// `fast`: the candidate may carry the [`CAND_EXACT`] flags (the chain's counter slots are
    /// contiguous, so the walk can name an exact rule's slot without loading the rule).
    fn of(rule: &Rule, family: Family, pos: u32, fast: bool) -> Summary {
        let mut flags = 0u8;
        let mut addr = |a: &Option<Neg<AddrMask>>, neg_flag: u8| match a {
            // IPv6: a negated prefix says nothing about the first 32 bits alone.
            Some(n) if !(n.negated && family == Family::V6) => {
                if n.negated {
                    flags |= neg_flag;
                }
                let m = addr32(n.value.mask);
                (addr32(n.value.addr) & m, m)
            }
            _ => (0, 0),
        };
        let (src, src_mask) = addr(&rule.ip.src, sf::SRC_NEG);
        let (dst, dst_mask) = addr(&rule.ip.dst, sf::DST_NEG);
        // IPv6 `-p all` matches any protocol found.
        let proto = rule.ip.proto.filter(|p| family == Family::V4 || p.value != 0);
        let mut sm = Summary {
            src,
            src_mask,
            dst,
            dst_mask,
            sport: (0, u16::MAX),
            dport: (0, u16::MAX),
            state: 0,
            proto: proto.map_or(0, |p| p.value),
            // No state test: "in no state", inverted.
            flags: flags | sf::STATE_NEG,
            rule: pos << CAND_SHIFT | if fast { cand_flags(rule, family) } else { 0 },
        };
        let mut state = false;
        if let Some(p) = proto {
            sm.flags |= sf::PROTO | if p.negated { sf::PROTO_NEG } else { 0 };
        }
        let mut ports = false;
        for m in &rule.matches {
            match m {
                Match::Tcp(TcpMatch { sport, dport, .. }) | Match::Udp(UdpMatch { sport, dport })
                    if !ports =>
                {
                    let want = if matches!(m, Match::Tcp(_)) { 6 } else { 17 };
                    // (The parser refuses min > max; such a range would not be taken.)
                    let valid = sport.value.min <= sport.value.max && dport.value.min <= dport.value.max;
                    if proto == Some(Neg { value: want, negated: false }) && valid {
                        sm.sport = (sport.value.min, sport.value.max - sport.value.min);
                        sm.dport = (dport.value.min, dport.value.max - dport.value.min);
                        sm.flags |= if sport.negated { sf::SPORT_NEG } else { 0 };
                        sm.flags |= if dport.negated { sf::DPORT_NEG } else { 0 };
                        ports = true;
                    }
                }
                Match::State(st) | Match::Conntrack(ConntrackMatch { state: Some(st), .. }) if !state => {
                    sm.state = st.value.0;
                    sm.flags &= !sf::STATE_NEG;
                    sm.flags |= if st.negated { sf::STATE_NEG } else { 0 };
                    state = true;
                }
                _ => {}
            }
            if matches!(m, Match::Limit(_) | Match::Frag(_)) {
                break;
            }
        }
        sm
    }

    /// Whether a rule with this summary may match (or hotdrop) the regular packet `k`.
    #[inline]
    fn admits(&self, k: &SumKeys, ct_bits: u16) -> bool {
        // The six tests without branches, packed in the order of the inversion flags.
        let port = |(lo, span): (u16, u16), p: u16| u8::from(p.wrapping_sub(lo) <= span);
        let tests = u8::from((k.src32 ^ self.src) & self.src_mask == 0)
            | u8::from((k.dst32 ^ self.dst) & self.dst_mask == 0) << 1
            | u8::from((k.proto == self.proto) | (self.flags & sf::PROTO == 0)) << 2
            | port(self.sport, k.sport) << 3
            | port(self.dport, k.dport) << 4
            | u8::from(self.state & ct_bits != 0) << 5;
        tests ^ (self.flags & sf::NEG) == sf::NEG
    }
}

/// Whether `rule` is *exact* for regular packets of `family` ([`PacketKeys::new`]): every test
/// it makes is one its [`Summary`] makes the same way, and none has a side effect or can hotdrop.
/// That is: no device, no `-f`; IPv4 addresses (IPv6: none, the summary sees 32 bits of them);
/// a protocol that is not IPv6's `-p all`; and as matches only the first `tcp` (ports only, no
/// flags or options; `xt_tcpudp` cannot hotdrop a complete header) or `udp` match of the rule's
/// non-negated `-p`, the first `state` (without SNAT/DNAT, which `xt_state` does not see) or
/// state-only `conntrack` match (`xt_conntrack` tests the state first, then nothing else), and
/// comments. Each such match is flow-invariant and reads no changeable fact, so a recording
/// walk that skips them records the same.
fn exact(rule: &Rule, family: Family) -> bool {
    let ip = &rule.ip;
    if ip.in_iface.is_some() || ip.out_iface.is_some() {
        return false;
    }
    exact_but_devices(rule, family)
}

/// [`exact`] but for the devices: a rule whose only other tests are its `-i` / `-o` (which a
/// short chain's walk tests itself, [`DevTest`]).
fn exact_but_devices(rule: &Rule, family: Family) -> bool {
    let ip = &rule.ip;
    if ip.fragment.is_some() {
        return false;
    }
    let v4 = |a: &Option<Neg<AddrMask>>| {
        a.as_ref().is_none_or(|n| n.value.addr.is_ipv4() && n.value.mask.is_ipv4() && family == Family::V4)
    };
    if !v4(&ip.src) || !v4(&ip.dst) {
        return false;
    }
    if family == Family::V6 && ip.proto.is_some_and(|p| p.value == 0) {
        return false;
    }
    let proto = ip.proto.filter(|p| !p.negated).map(|p| p.value);
    let valid =
        |a: &Neg<Range<u16>>, b: &Neg<Range<u16>>| a.value.min <= a.value.max && b.value.min <= b.value.max;
    let (mut ports, mut state) = (false, false);
    for m in &rule.matches {
        match m {
            Match::Tcp(TcpMatch { flags: None, option: None, sport, dport })
                if !ports && proto == Some(6) && valid(sport, dport) =>
            {
                ports = true;
            }
            Match::Udp(UdpMatch { sport, dport }) if !ports && proto == Some(17) && valid(sport, dport) => {
                ports = true;
            }
            Match::State(s) if !state && s.value.0 & (StateSet::SNAT | StateSet::DNAT) == 0 => state = true,
            Match::Conntrack(ConntrackMatch {
                state: Some(_),
                proto: None,
                orig_src: None,
                orig_dst: None,
                repl_src: None,
                repl_dst: None,
                orig_sport: None,
                orig_dport: None,
                repl_sport: None,
                repl_dport: None,
                status: None,
                expire: None,
                dir_reply: None,
            }) if !state => state = true,
            Match::Comment(_) => {}
            _ => return false,
        }
    }
    true
}

/// The candidate flags of `rule` ([`CAND_EXACT`], with its target when ACCEPT or DROP).
fn cand_flags(rule: &Rule, family: Family) -> u32 {
    if !exact(rule, family) {
        return 0;
    }
    exact_flags(rule)
}

/// The candidate flags of an exact rule: [`CAND_EXACT`], with its target when ACCEPT or DROP.
fn exact_flags(rule: &Rule) -> u32 {
    CAND_EXACT
        | match rule.target {
            Target::Accept => CAND_ACCEPT,
            Target::Drop => CAND_DROP,
            _ => 0,
        }
}

/// The index of one chain (or, nested, of the rules of one long list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainIndex {
    /// The lists: runs of rule summaries (each list sorted by rule position) ended by a control
    /// entry.
    pool: Vec<Summary>,
    /// Lists (pool positions, or [`NONE`]) of the rules always candidates,
    always: u32,
    /// Per protocol number: 1 + its entry in `protos`, or 0.
    proto_at: [u16; 256],
    /// The lists and port indexes of the protocols that have some.
    protos: Vec<ProtoIndex>,
    /// Rules keyed on a state set, by state bit position.
    state: [u32; STATE_BITS],
    /// The state bits with a list.
    state_bits: u16,
    /// (output device?, name as [`dev_code`], rules).
    iface: Vec<(bool, u64, u32)>,
    src: Option<AddrIndex>,
    dst: Option<AddrIndex>,
    /// Nested indexes, named by [`SUB`] entries.
    subs: Vec<ChainIndex>,
    /// How many rules are filed under an address, port or device key (the others being under
    /// broad keys or always candidates): a nested index is kept only when it narrows.
    narrowed: usize,
    /// The counter slot of the chain's first rule; rule `i`'s is `first_slot + i` (checked when
    /// building: otherwise no candidate carries [`CAND_EXACT`]).
    pub(crate) first_slot: usize,
}

/// The rules keyed on one protocol, or on its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProtoIndex {
    /// Rules keyed on the protocol alone.
    list: u32,
    dport: Option<PrefixIndex<u16>>,
    sport: Option<PrefixIndex<u16>>,
}

/// Per table: one entry per chain (same order), `None` for chains walked linearly.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TableIndex {
    pub(crate) chains: Vec<Option<ChainIndex>>,
    /// Some chain is indexed (else packets need no device codes).
    pub(crate) any: bool,
    /// Some chain is indexed or has summaries: regular packets get [`PacketKeys`].
    pub(crate) keyed: bool,
    /// Per chain (same order): a chain walked linearly, its rules' summaries and masks (`None`
    /// for indexed chains), which the walk tests before the rules themselves.
    linear: Vec<Option<ShortChain>>,
    /// Per protocol number: its column in every [`ShortChain::proto_masks`] (0: a protocol no
    /// summary of the table names).
    proto_col: [u8; 256],
}

/// The state combinations [`ShortChain::state_masks`] has a row for: one of INVALID,
/// ESTABLISHED, RELATED, NEW, UNTRACKED, with or without SNAT and DNAT.
const STATE_ROWS: usize = 20;
/// Masks cover this many rules; a longer chain walked linearly tests every summary.
const MASK_RULES: usize = 64;

/// The row of `ct_bits` (as `state_bits` gives them: one state, maybe NAT bits) in the state
/// masks; [`STATE_ROWS`] (no row) for any other combination.
#[inline]
pub(crate) fn state_row(ct_bits: u16) -> usize {
    // By the state's bit position: INVALID, ESTABLISHED, RELATED, NEW, -, -, -, -, UNTRACKED.
    const BASE: [u8; 9] = [0, 1, 2, 3, 0xFF, 0xFF, 0xFF, 0xFF, 4];
    let nat = usize::from((ct_bits >> 6) & 3);
    let state = ct_bits & !(StateSet::SNAT | StateSet::DNAT);
    match BASE.get(state.trailing_zeros() as usize) {
        Some(&b) if state.is_power_of_two() && b != 0xFF => usize::from(b) * 4 + nat,
        _ => STATE_ROWS,
    }
}

/// The conntrack state bits of row `row` of the state masks.
fn row_bits(row: usize) -> u16 {
    let base =
        [StateSet::INVALID, StateSet::ESTABLISHED, StateSet::RELATED, StateSet::NEW, StateSet::UNTRACKED];
    let nat = u16::try_from(row % 4).unwrap_or(0) << 6;
    base.get(row / 4).map_or(0, |b| b | nat)
}

/// A chain walked linearly: its rules' summaries, and (for at most [`MASK_RULES`] rules) bit masks
/// over its rule positions of the two summary tests every packet of a walk shares, the state and
/// the protocol, so the walk goes from one rule that may match to the next without testing the
/// others (a packet-classification bit vector per field, as in Lakshman and Stiliadis' scheme).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShortChain {
    sums: Box<[Summary]>,
    /// Per [`state_row`]: the rules whose state test the row's states pass.
    state_masks: [u64; STATE_ROWS],
    /// Per protocol column ([`TableIndex::proto_col`]): the rules whose protocol test it passes.
    proto_masks: Box<[u64]>,
    /// The rules whose summaries test nothing but the state and the protocol: in both masks, they
    /// are admitted without testing the summary again.
    covered: u64,
    /// The rules with a device test (`-i` / `-o`), made before the summary's; and those tests,
    /// per rule (empty for a chain too long for masks).
    dev_mask: u64,
    devs: Box<[DevTest]>,
    /// Per rule: its candidate flags when the summary and the device test admit the packet
    /// ([`CAND_EXACT`] for a rule [exact] but for its devices, with its target).
    flags: Box<[u8]>,
}

/// A rule's device tests (`-i`, `-o`) as `ip_packet_match` makes them (a missing device has the
/// empty name).
#[derive(Debug, Clone, PartialEq, Eq)]
struct DevTest {
    input: Option<Neg<Iface>>,
    output: Option<Neg<Iface>>,
}

impl DevTest {
    #[inline]
    fn admits(&self, in_dev: &str, out_dev: &str) -> bool {
        let ok = |spec: &Option<Neg<Iface>>, d: &str| {
            spec.as_ref().is_none_or(|s| s.value.matches(d) != s.negated)
        };
        ok(&self.input, in_dev) && ok(&self.output, out_dev)
    }
}

impl ShortChain {
    fn build(sums: Box<[Summary]>, rules: &[Rule], family: Family, protos: &[u8]) -> ShortChain {
        let masked = sums.len() <= MASK_RULES && sums.len() == rules.len();
        let mask_of = |test: &dyn Fn(&Summary) -> bool| -> u64 {
            if !masked {
                return u64::MAX;
            }
            sums.iter().enumerate().filter(|(_, sm)| test(sm)).fold(0u64, |m, (i, _)| m | 1u64 << i)
        };
        // Exactly the state and protocol tests of `Summary::admits`.
        let state_ok = |sm: &Summary, bits: u16| (sm.state & bits != 0) != (sm.flags & sf::STATE_NEG != 0);
        let proto_ok = |sm: &Summary, same: &dyn Fn(u8) -> bool| {
            sm.flags & sf::PROTO == 0 || same(sm.proto) != (sm.flags & sf::PROTO_NEG != 0)
        };
        let state_masks = std::array::from_fn(|row| mask_of(&|sm| state_ok(sm, row_bits(row))));
        // Column 0: a protocol no summary names; then the table's protocols in order.
        let mut proto_masks = vec![mask_of(&|sm| proto_ok(sm, &|_| false))];
        proto_masks.extend(protos.iter().map(|&p| mask_of(&|sm| proto_ok(sm, &|q| q == p))));
        let covered = mask_of(&|sm| {
            let full = |(lo, span): (u16, u16)| lo == 0 && span == u16::MAX;
            sm.src_mask == 0
                && sm.dst_mask == 0
                && full(sm.sport)
                && full(sm.dport)
                && sm.flags & (sf::SRC_NEG | sf::DST_NEG | sf::SPORT_NEG | sf::DPORT_NEG) == 0
        });
        let covered = if masked { covered } else { 0 };
        let (mut dev_mask, mut devs, mut flags) = (0u64, Vec::new(), Vec::new());
        if masked {
            for (i, r) in rules.iter().enumerate() {
                if r.ip.in_iface.is_some() || r.ip.out_iface.is_some() {
                    dev_mask |= 1 << i;
                }
                devs.push(DevTest { input: r.ip.in_iface.clone(), output: r.ip.out_iface.clone() });
                let f = if exact_but_devices(r, family) { exact_flags(r) } else { 0 };
                flags.push(u8::try_from(f).unwrap_or(0));
            }
        }
        ShortChain {
            sums,
            state_masks,
            proto_masks: proto_masks.into_boxed_slice(),
            covered,
            dev_mask,
            devs: devs.into_boxed_slice(),
            flags: flags.into_boxed_slice(),
        }
    }

    /// The rules that may match a packet of protocol column `col` ([`TableIndex::proto_col`]) and
    /// conntrack state row `row` ([`state_row`]), as far as the masks tell (all ones for a chain
    /// too long for masks).
    #[inline]
    pub(crate) fn cands(&self, col: usize, row: usize) -> u64 {
        let state = self.state_masks.get(row).copied().unwrap_or(u64::MAX);
        state & self.proto_masks.get(col).copied().unwrap_or(u64::MAX)
    }

    /// The first rule at or after `ri` among `cands` ([`ShortChain::cands`]) whose device test
    /// (input and output device names `devs`) and summary admit the regular packet `k` with
    /// conntrack state bits `ct_bits`, and its candidate flags; the chain's length (flags 0) when
    /// none does.
    #[inline(always)]
    pub(crate) fn next(
        &self,
        cands: u64,
        ri: usize,
        k: &SumKeys,
        ct_bits: u16,
        (in_dev, out_dev): (&str, &str),
    ) -> (usize, u32) {
        if self.flags.len() != self.sums.len() {
            // Too long for masks.
            return next_admitted(&self.sums, ri, k, ct_bits);
        }
        // The candidates from `ri` on.
        let mut left = u64::MAX.checked_shl(u32::try_from(ri).unwrap_or(u32::MAX)).map_or(0, |m| cands & m);
        while left != 0 {
            let r = left.trailing_zeros() as usize;
            left &= left - 1;
            let Some(sm) = self.sums.get(r) else { break };
            if self.dev_mask & (1 << r) != 0 && !self.devs.get(r).is_some_and(|d| d.admits(in_dev, out_dev)) {
                continue;
            }
            if self.covered & (1 << r) != 0 || sm.admits(k, ct_bits) {
                return (r, self.flags.get(r).copied().map_or(0, u32::from));
            }
        }
        (self.sums.len(), 0)
    }

    /// How many rules the chain has.
    pub(crate) fn len(&self) -> usize {
        self.sums.len()
    }
}

/// (protocol, destination port?).
type PortField = (u8, bool);

/// (prefix value, prefix length, rule position).
type Entry<K> = (K, u32, u32);

/// The key a rule is filed under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RuleKey {
    Src(u128, u32),
    Dst(u128, u32),
    Port { proto: u8, dst: bool, ranges: Vec<(u16, u16)> },
    Proto(u8),
    State(u16),
    Iface { out: bool, name: String },
    Always,
}

impl RuleKey {
    /// How broad the condition is (relative weight; lower is more selective).
    fn breadth(&self, family: Family) -> u64 {
        match self {
            RuleKey::Src(_, l) | RuleKey::Dst(_, l) => {
                // Lengths scaled to 32 bits so IPv6 /64s weigh like IPv4 /16s.
                let l = l.saturating_mul(32) / u32::from(family.bits());
                match l {
                    24.. => 1,
                    16..=23 => 2,
                    8..=15 => 4,
                    _ => 16,
                }
            }
            RuleKey::Port { ranges, .. } => {
                let w: u64 = ranges.iter().map(|&(a, b)| u64::from(b.saturating_sub(a)) + 1).sum();
                match w {
                    0..=1 => 1,
                    2..=64 => 2,
                    65..=1024 => 4,
                    _ => 16,
                }
            }
            RuleKey::Iface { .. } => 8,
            RuleKey::State(s) => 16 * u64::from(s.count_ones()).max(1),
            RuleKey::Proto(_) => 32,
            RuleKey::Always => u64::MAX,
        }
    }
}

fn addr_key(spec: &Option<Neg<AddrMask>>, family: Family) -> Option<(u128, u32)> {
    let s = spec.as_ref()?;
    if s.negated {
        return None;
    }
    let len = u32::from(s.value.prefix_len()?);
    if len == 0 {
        return None;
    }
    match (family, s.value.addr) {
        (Family::V4, IpAddr::V4(a)) => Some((u128::from(u32::from(a)), len)),
        (Family::V6, IpAddr::V6(a)) => Some((u128::from(a), len)),
        _ => None,
    }
}

fn iface_key(spec: &Option<Neg<Iface>>, out: bool) -> Option<RuleKey> {
    let s = spec.as_ref()?;
    (!s.negated && !s.value.wildcard).then(|| RuleKey::Iface { out, name: s.value.name.clone() })
}

fn port_key(proto: u8, dst: bool, r: &Neg<Range<u16>>) -> Option<RuleKey> {
    let full = r.value.min == 0 && r.value.max == u16::MAX;
    (!r.negated && !full).then(|| RuleKey::Port { proto, dst, ranges: vec![(r.value.min, r.value.max)] })
}

/// Every key the rule could be filed under (see the module docs for why each is sound).
fn rule_keys(rule: &Rule, family: Family) -> Vec<RuleKey> {
    let mut keys = Vec::new();
    if let Some((v, l)) = addr_key(&rule.ip.src, family) {
        keys.push(RuleKey::Src(v, l));
    }
    if let Some((v, l)) = addr_key(&rule.ip.dst, family) {
        keys.push(RuleKey::Dst(v, l));
    }
    keys.extend(iface_key(&rule.ip.in_iface, false));
    keys.extend(iface_key(&rule.ip.out_iface, true));
    // IPv6 `-p all` (0) matches any protocol found.
    let proto =
        rule.ip.proto.filter(|p| !p.negated && (family == Family::V4 || p.value != 0)).map(|p| p.value);
    if let Some(p) = proto {
        keys.push(RuleKey::Proto(p));
    }
    for m in &rule.matches {
        match m {
            Match::Tcp(TcpMatch { sport, dport, .. }) | Match::Udp(UdpMatch { sport, dport }) => {
                let want = if matches!(m, Match::Tcp(_)) { 6 } else { 17 };
                if proto == Some(want) {
                    keys.extend(port_key(want, true, dport));
                    keys.extend(port_key(want, false, sport));
                }
            }
            Match::Multiport(mp) if !mp.negated && mp.dir != PortDir::Either => {
                if let Some(p) = proto {
                    let ranges = mp.ports.iter().map(|r| (r.min, r.max)).collect();
                    keys.push(RuleKey::Port { proto: p, dst: mp.dir == PortDir::Destination, ranges });
                }
            }
            Match::State(s) if !s.negated => keys.push(RuleKey::State(s.value.0)),
            Match::Conntrack(c) => {
                if let Some(s) = c.state.filter(|s| !s.negated) {
                    keys.push(RuleKey::State(s.value.0));
                }
            }
            _ => {}
        }
        // Later matches are not reached without this one's side effect / possible hotdrop.
        if matches!(m, Match::Limit(_) | Match::Frag(_)) {
            break;
        }
    }
    keys
}

/// Port range split into aligned power-of-two blocks (value, prefix length).
fn port_blocks(min: u16, max: u16, out: &mut Vec<(u16, u32)>) {
    let (mut lo, hi) = (u32::from(min), u32::from(max));
    while lo <= hi {
        // Largest aligned block starting at lo and ending at or before hi.
        let mut size = if lo == 0 { 1u32 << 16 } else { 1u32 << lo.trailing_zeros().min(16) };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push((u16::try_from(lo).unwrap_or(u16::MAX), 16 - size.trailing_zeros()));
        lo += size;
    }
}

impl ChainIndex {
    /// The index of `chain`, or `None` when it is too short to need one.
    pub(crate) fn build(chain: &Chain, family: Family) -> Option<ChainIndex> {
        // Past 2^20 rules pool positions could reach the flags: walk linearly.
        if chain.rules.len() < MIN_INDEXED_RULES || chain.rules.len() > MAX_INDEXED_RULES {
            return None;
        }
        let first_slot = chain.rules.first().map_or(0, |r| r.slot);
        let fast = chain.rules.iter().enumerate().all(|(i, r)| first_slot.checked_add(i) == Some(r.slot));
        let summaries: Vec<Summary> =
            chain.rules.iter().enumerate().map(|(i, r)| Summary::of(r, family, len32(i), fast)).collect();
        let members = chain.rules.iter().enumerate().map(|(i, r)| (len32(i), rule_keys(r, family))).collect();
        // Nested indexes may hold a rule again under other keys: their total size is capped.
        let mut budget = chain.rules.len().saturating_mul(NEST_BUDGET).saturating_add(4096);
        let mut ix = ChainIndex::build_set(members, &summaries, family, 0, &mut budget)?;
        ix.first_slot = first_slot;
        Some(ix)
    }

    /// The index over `members` (rule position, keys it may still be filed under), nested
    /// `depth` levels deep; a nested one (`depth > 0`) only if its lists fit in what is left of
    /// `budget` (pool entries), which they use up.
    fn build_set(
        members: Vec<(u32, Vec<RuleKey>)>,
        summaries: &[Summary],
        family: Family,
        depth: u32,
        budget: &mut usize,
    ) -> Option<ChainIndex> {
        // First choice: how many rules could share each key. Second: how many rules the first
        // choice actually filed under it (a rule leaving a crowded key for a quiet one).
        let mut count: HashMap<&RuleKey, u64> = HashMap::new();
        for k in members.iter().flat_map(|m| &m.1) {
            *count.entry(k).or_insert(0) += 1;
        }
        let pick = |keys: &[RuleKey], load: &HashMap<&RuleKey, u64>, own: Option<usize>| {
            keys.iter()
                .enumerate()
                .min_by_key(|&(i, k)| {
                    let others = load.get(k).copied().unwrap_or(0).saturating_sub(u64::from(own == Some(i)));
                    (others + 1).saturating_mul(k.breadth(family))
                })
                .map(|(i, _)| i)
        };
        let first: Vec<Option<usize>> = members.iter().map(|m| pick(&m.1, &count, None)).collect();
        let mut load: HashMap<&RuleKey, u64> = HashMap::new();
        for (m, f) in members.iter().zip(&first) {
            if let Some(k) = f.and_then(|i| m.1.get(i)) {
                *load.entry(k).or_insert(0) += 1;
            }
        }
        let picks: Vec<Option<usize>> =
            members.iter().zip(&first).map(|(m, &f)| pick(&m.1, &load, f)).collect();
        drop(load);
        drop(count);
        // Each rule's other keys, for the nested indexes of long lists.
        let mut rest: HashMap<u32, Vec<RuleKey>> = HashMap::new();
        let mut chosen = Vec::with_capacity(members.len());
        for ((r, mut keys), p) in members.into_iter().zip(picks) {
            let key = match p {
                Some(i) if i < keys.len() => keys.swap_remove(i),
                _ => RuleKey::Always,
            };
            keys.retain(|k| *k != key);
            chosen.push((r, key));
            rest.insert(r, keys);
        }
        let mut narrowed = 0usize;
        let mut src = Vec::new();
        let mut dst = Vec::new();
        let mut ports: Vec<(PortField, Vec<Entry<u16>>)> = Vec::new();
        let mut protos: Vec<(u8, u32)> = Vec::new();
        let mut states: Vec<(usize, u32)> = Vec::new();
        let mut ifaces: Vec<(bool, u64, u32)> = Vec::new();
        let mut always = Vec::new();
        let mut blocks = Vec::new();
        for (r, key) in chosen {
            narrowed += usize::from(matches!(
                key,
                RuleKey::Src(..) | RuleKey::Dst(..) | RuleKey::Port { .. } | RuleKey::Iface { .. }
            ));
            match key {
                RuleKey::Src(v, l) => src.push((v, l, r)),
                RuleKey::Dst(v, l) => dst.push((v, l, r)),
                RuleKey::Port { proto, dst, ranges } => {
                    let slot = match ports.iter().position(|(k, _)| *k == (proto, dst)) {
                        Some(i) => i,
                        None => {
                            ports.push(((proto, dst), Vec::new()));
                            ports.len() - 1
                        }
                    };
                    blocks.clear();
                    for (a, b) in ranges {
                        port_blocks(a, b, &mut blocks);
                    }
                    if let Some((_, v)) = ports.get_mut(slot) {
                        v.extend(blocks.iter().map(|&(p, l)| (p, l, r)));
                    }
                }
                RuleKey::Proto(p) => protos.push((p, r)),
                RuleKey::State(s) => {
                    states.extend((0..STATE_BITS).filter(|b| s & (1 << b) != 0).map(|b| (b, r)));
                }
                RuleKey::Iface { out, name } => ifaces.push((out, dev_code(&name), r)),
                RuleKey::Always => always.push(r),
            }
        }
        if depth > 0 {
            // Entries, plus about as much again for control entries and lookup tables.
            let entries = src.len()
                + dst.len()
                + ports.iter().map(|p| p.1.len()).sum::<usize>()
                + protos.len()
                + states.len()
                + ifaces.len()
                + always.len();
            *budget = budget.checked_sub(entries.saturating_mul(2))?;
        }
        let mut pool: Vec<Summary> = Vec::new();
        let mut subs: Vec<ChainIndex> = Vec::new();
        // Writes one list: its summaries (or, for a long list whose rules can mostly be filed
        // under a second key, a nested index over them), then the link to `parent` or the end.
        let mut emit = |rules: &[u32], inherited: &[u32], parent: u32| -> u32 {
            if rules.is_empty() && inherited.is_empty() {
                return parent;
            }
            let at = len32(pool.len());
            let mut nested = false;
            if rules.len() > NEST_FROM && depth < MAX_DEPTH {
                let members = rules.iter().map(|&r| (r, rest.get(&r).cloned().unwrap_or_default())).collect();
                if let Some(sub) = ChainIndex::build_set(members, summaries, family, depth + 1, budget) {
                    if sub.narrowed.saturating_mul(2) >= rules.len() {
                        pool.push(Summary::control(SUB, len32(subs.len())));
                        subs.push(sub);
                        nested = true;
                    }
                }
            }
            if !nested {
                pool.extend(
                    rules.iter().chain(inherited).filter_map(|&r| summaries.get(r as usize).copied()),
                );
            }
            let written = len32(pool.len()) > at;
            match pool.last_mut() {
                Some(e) if parent == NONE && written => e.state |= LAST,
                _ if parent == NONE => pool.push(Summary::control(END, 0)),
                _ => pool.push(Summary::control(LINK, parent)),
            }
            at
        };
        let mut ix = ChainIndex {
            pool: Vec::new(),
            always: NONE,
            proto_at: [0; 256],
            protos: Vec::new(),
            state: [NONE; STATE_BITS],
            state_bits: 0,
            iface: Vec::new(),
            src: None,
            dst: None,
            subs: Vec::new(),
            narrowed,
            first_slot: 0,
        };
        ix.always = emit(&always, &[], NONE);
        let proto_ix = |ix: &mut ChainIndex, p: u8| -> Option<usize> {
            let at = ix.proto_at.get_mut(usize::from(p))?;
            if *at == 0 {
                ix.protos.push(ProtoIndex { list: NONE, dport: None, sport: None });
                *at = u16::try_from(ix.protos.len()).ok()?;
            }
            usize::from(*at).checked_sub(1)
        };
        protos.sort_unstable();
        for chunk in protos.chunk_by(|a, b| a.0 == b.0) {
            if let Some(&(p, _)) = chunk.first() {
                let rules: Vec<u32> = chunk.iter().map(|e| e.1).collect();
                let list = emit(&rules, &[], NONE);
                if let Some(e) = proto_ix(&mut ix, p).and_then(|i| ix.protos.get_mut(i)) {
                    e.list = list;
                }
            }
        }
        states.sort_unstable();
        for chunk in states.chunk_by(|a, b| a.0 == b.0) {
            if let Some(&(b, _)) = chunk.first() {
                let rules: Vec<u32> = chunk.iter().map(|e| e.1).collect();
                if let Some(s) = ix.state.get_mut(b) {
                    *s = emit(&rules, &[], NONE);
                    ix.state_bits |= 1 << b;
                }
            }
        }
        ifaces.sort_unstable();
        for chunk in ifaces.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
            if let Some(&(out, name, _)) = chunk.first() {
                let rules: Vec<u32> = chunk.iter().map(|e| e.2).collect();
                ix.iface.push((out, name, emit(&rules, &[], NONE)));
            }
        }
        let mut addr = |v: Vec<(u128, u32, u32)>| {
            if v.is_empty() {
                return None;
            }
            Some(match family {
                Family::V4 => AddrIndex::V4(PrefixIndex::build(
                    v.into_iter().map(|(a, l, r)| (u32::try_from(a).unwrap_or(0), l, r)).collect(),
                    &mut emit,
                )),
                Family::V6 => AddrIndex::V6(PrefixIndex::build(v, &mut emit)),
            })
        };
        ix.src = addr(src);
        ix.dst = addr(dst);
        ports.sort_by_key(|(k, _)| *k);
        for ((proto, dst), entries) in ports {
            let pi = Some(PrefixIndex::build(entries, &mut emit));
            if let Some(e) = proto_ix(&mut ix, proto).and_then(|i| ix.protos.get_mut(i)) {
                if dst {
                    e.dport = pi;
                } else {
                    e.sport = pi;
                }
            }
        }
        ix.pool = pool;
        ix.subs = subs;
        Some(ix)
    }

    /// Appends the candidates for `keys` with conntrack state bits `ct_bits` to `out` (each
    /// `position << CAND_SHIFT | flags`), sorted and without duplicates (only the part appended).
    pub(crate) fn gather(&self, keys: &PacketKeys<'_>, ct_bits: u16, out: &mut Vec<u32>) {
        let start = out.len();
        self.collect(keys, ct_bits, out);
        let Some(seg) = out.get_mut(start..) else { return };
        if seg.len() <= 1 {
            return;
        }
        if seg.len() <= 16 {
            // A few candidates (the usual case): insertion sort.
            for i in 1..seg.len() {
                let mut j = i;
                while j > 0 {
                    match (seg.get(j - 1), seg.get(j)) {
                        (Some(&a), Some(&b)) if a > b => seg.swap(j - 1, j),
                        _ => break,
                    }
                    j -= 1;
                }
            }
        } else {
            seg.sort_unstable();
        }
        // Drop duplicates (a rule filed under several state bits or port blocks).
        let mut w = 0usize;
        let mut prev = None;
        for i in 0..seg.len() {
            let Some(&v) = seg.get(i) else { break };
            if prev == Some(v) {
                continue;
            }
            prev = Some(v);
            if let Some(d) = seg.get_mut(w) {
                *d = v;
            }
            w += 1;
        }
        out.truncate(start + w);
    }

    /// [`ChainIndex::gather`] without the final sort: appends the candidates of every list the
    /// packet selects.
    fn collect(&self, keys: &PacketKeys<'_>, ct_bits: u16, out: &mut Vec<u32>) {
        // The lookups first (independent loads that overlap), then the lists.
        let src = self.src.as_ref().map_or(NONE, |ix| ix.lookup(keys.src32, keys.src));
        let dst = self.dst.as_ref().map_or(NONE, |ix| ix.lookup(keys.dst32, keys.dst));
        let proto = self.proto_at.get(usize::from(keys.proto)).copied().unwrap_or(0);
        let (mut plist, mut dport, mut sport) = (NONE, NONE, NONE);
        if let Some(p) = usize::from(proto).checked_sub(1).and_then(|i| self.protos.get(i)) {
            plist = p.list;
            dport = p.dport.as_ref().map_or(NONE, |ix| ix.lookup(keys.dport));
            sport = p.sport.as_ref().map_or(NONE, |ix| ix.lookup(keys.sport));
        }
        self.scan(self.always, keys, ct_bits, out);
        self.scan(plist, keys, ct_bits, out);
        let mut bits = ct_bits & self.state_bits;
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if let Some(&at) = self.state.get(b) {
                self.scan(at, keys, ct_bits, out);
            }
        }
        for &(out_dir, name, at) in &self.iface {
            if name == if out_dir { keys.out_dev } else { keys.in_dev } {
                self.scan(at, keys, ct_bits, out);
            }
        }
        self.scan(src, keys, ct_bits, out);
        self.scan(dst, keys, ct_bits, out);
        self.scan(dport, keys, ct_bits, out);
        self.scan(sport, keys, ct_bits, out);
    }

    /// Appends the rules of the list at pool position `at` (and of the lists it links to) whose
    /// summaries admit the packet.
    #[inline]
    fn scan(&self, at: u32, keys: &PacketKeys<'_>, ct_bits: u16, out: &mut Vec<u32>) {
        let sk = keys.sum();
        // A list runs forward to its last entry; a link goes back to a list written earlier
        // (before this list's start `at`), so this ends.
        let mut at = at as usize;
        'lists: while let Some(list) = self.pool.get(at..) {
            for e in list {
                if e.state & CTRL == 0 {
                    if e.admits(&sk, ct_bits) {
                        out.push(e.rule);
                    }
                } else if e.state == LINK && (e.rule as usize) < at {
                    at = e.rule as usize;
                    continue 'lists;
                } else if e.state & !LAST == SUB {
                    if let Some(sub) = self.subs.get(e.rule as usize) {
                        sub.collect(keys, ct_bits, out);
                    }
                } else {
                    return;
                }
                if e.state & LAST != 0 {
                    return;
                }
            }
            return;
        }
    }
}

/// A device name as the index compares it: its first and last four bytes and its length. Equal
/// names give equal codes (different names may share one: a candidate the matcher then refuses).
fn dev_code(name: &str) -> u64 {
    let b = name.as_bytes();
    let word = |at: usize| -> u64 {
        b.get(at..at.saturating_add(4))
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map_or(0, |w| u64::from(u32::from_le_bytes(w)))
    };
    let n = b.len();
    // Two (possibly overlapping) 4-byte words: the first and the last four bytes.
    let head =
        if n >= 4 { word(0) | word(n - 4) << 32 } else { b.iter().fold(0u64, |x, &c| x << 8 | u64::from(c)) };
    head ^ (n as u64) << 59
}

/// Short: the index is derived from the rules and large.
impl std::fmt::Debug for TableIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let indexed: Vec<usize> =
            self.chains.iter().enumerate().filter(|(_, c)| c.is_some()).map(|(i, _)| i).collect();
        f.debug_struct("TableIndex").field("indexed_chains", &indexed).finish()
    }
}

impl TableIndex {
    pub(crate) fn build(t: &TableRules, family: Family) -> TableIndex {
        let chains: Vec<Option<ChainIndex>> = t.chains.iter().map(|c| ChainIndex::build(c, family)).collect();
        let any = chains.iter().any(Option::is_some);
        // Every chain walked linearly, short or not, gets its rules' summaries: testing one costs
        // a few instructions, and an exact rule's summary decides it without running its matches.
        let sums: Vec<Option<Box<[Summary]>>> = t
            .chains
            .iter()
            .zip(&chains)
            .map(|(c, ix)| match ix {
                None => Some(
                    c.rules.iter().enumerate().map(|(i, r)| Summary::of(r, family, len32(i), true)).collect(),
                ),
                Some(_) => None,
            })
            .collect();
        // The protocols the summaries test, each a column of the protocol masks (at most 255).
        let mut protos: Vec<u8> = sums
            .iter()
            .flatten()
            .flat_map(|l| l.iter())
            .filter(|sm| sm.flags & sf::PROTO != 0)
            .map(|sm| sm.proto)
            .collect();
        protos.sort_unstable();
        protos.dedup();
        protos.truncate(255);
        let mut proto_col = [0u8; 256];
        for (i, &p) in protos.iter().enumerate() {
            if let Some(c) = proto_col.get_mut(usize::from(p)) {
                *c = u8::try_from(i + 1).unwrap_or(0);
            }
        }
        let linear: Vec<Option<ShortChain>> = sums
            .into_iter()
            .zip(&t.chains)
            .map(|(l, c)| l.map(|l| ShortChain::build(l, &c.rules, family, &protos)))
            .collect();
        let keyed = any || linear.iter().flatten().any(|l| l.len() != 0);
        TableIndex { chains, any, keyed, linear, proto_col }
    }

    /// For chain `ci` walked linearly, on a regular packet with keys `k` and conntrack state bits
    /// `ct_bits`: the first rule at or after `ri` whose summary admits the packet (the rules
    /// skipped cannot match it, see [`Summary`]) and its candidate flags, or the chain's length
    /// (flags 0) when none does. `None` for a chain without summaries (indexed): test each rule.
    #[inline]
    pub(crate) fn next_admitted(
        &self,
        ci: usize,
        ri: usize,
        k: &PacketKeys<'_>,
        ct_bits: u16,
    ) -> Option<(usize, u32)> {
        Some(next_admitted(&self.short(ci)?.sums, ri, &k.sum(), ct_bits))
    }

    /// Chain `ci` when it is walked linearly (`None`: indexed).
    #[inline]
    pub(crate) fn short(&self, ci: usize) -> Option<&ShortChain> {
        self.linear.get(ci)?.as_ref()
    }

    /// The protocol column of `proto` in the masks of [`ShortChain`]s.
    #[inline]
    pub(crate) fn proto_col(&self, proto: u8) -> usize {
        usize::from(self.proto_col.get(usize::from(proto)).copied().unwrap_or(0))
    }
}

/// In `sums`, the summaries of a chain's rules: the first rule at or after `ri` whose summary
/// admits the regular packet `k` with conntrack state bits `ct_bits`, and its candidate flags;
/// the chain's length (flags 0) when none does.
#[inline]
fn next_admitted(sums: &[Summary], ri: usize, k: &SumKeys, ct_bits: u16) -> (usize, u32) {
    let rest = sums.get(ri..).unwrap_or(&[]);
    match rest.iter().position(|sm| sm.admits(k, ct_bits)) {
        Some(off) => {
            (ri.saturating_add(off), rest.get(off).map_or(0, |sm| sm.rule & ((1 << CAND_SHIFT) - 1)))
        }
        None => (sums.len(), 0),
    }
}

/// The fields of a regular packet a [`Summary`] tests ([`PacketKeys`] has them too).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SumKeys {
    pub src32: u32,
    pub dst32: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl SumKeys {
    /// The fields of `pkt` if it is regular ([`PacketKeys::new`] of its facts is `Some`),
    /// straight from the packet: the short walk needs nothing else.
    #[inline]
    pub(crate) fn short(family: Family, pkt: &Packet<'_>) -> Option<SumKeys> {
        PacketKeys::of(family, crate::eval::Regular::of(pkt), pkt.ip.proto).map(|k| k.sum())
    }
}

/// The fields of a regular packet the index looks up (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacketKeys<'a> {
    /// IPv6 addresses (IPv4: 0, unused).
    pub src: u128,
    pub dst: u128,
    /// IPv4 addresses; IPv6: their first 32 bits, as [`Summary`] compares them.
    pub src32: u32,
    pub dst32: u32,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    /// The devices as [`dev_code`] (a missing device has the empty name).
    pub in_dev: u64,
    pub out_dev: u64,
    pub _dev: std::marker::PhantomData<&'a str>,
}

impl<'a> PacketKeys<'a> {
    /// The keys of a regular packet, `None` for a packet the linear walk must handle.
    pub(crate) fn new(
        family: Family,
        f: &crate::eval::Facts<'_>,
        proto: u8,
        in_iface: Option<&'a str>,
        out_iface: Option<&'a str>,
    ) -> Option<PacketKeys<'a>> {
        let k = Self::of(family, f.regular(), proto)?;
        Some(PacketKeys {
            in_dev: dev_code(in_iface.unwrap_or("")),
            out_dev: dev_code(out_iface.unwrap_or("")),
            ..k
        })
    }

    /// The fields [`Summary`] tests.
    #[inline(always)]
    pub(crate) fn sum(&self) -> SumKeys {
        SumKeys {
            src32: self.src32,
            dst32: self.dst32,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
        }
    }

    #[inline(always)]
    fn of(family: Family, f: crate::eval::Regular<'_>, proto: u8) -> Option<PacketKeys<'a>> {
        let l4 = f.l4;
        if (family == Family::V6) != f.v6 || f.fragoff != 0 || f.v6_proto_unknown || l4.len() < 8 {
            return None;
        }
        // IPv4 lookups use the 32-bit forms only.
        let (src, dst, src32, dst32) = match (family, f.src, f.dst) {
            (Family::V4, IpAddr::V4(s), IpAddr::V4(d)) => (0, 0, u32::from(s), u32::from(d)),
            (Family::V6, IpAddr::V6(s), IpAddr::V6(d)) => {
                let (s, d) = (u128::from(s), u128::from(d));
                (s, d, u32::try_from(s >> 96).unwrap_or(0), u32::try_from(d >> 96).unwrap_or(0))
            }
            _ => return None,
        };
        if proto == 6 {
            let hdr = usize::from(*l4.get(12)? >> 4) * 4;
            if hdr < 20 || l4.len() < hdr {
                return None;
            }
        }
        let &[s0, s1, d0, d1] = <&[u8; 4]>::try_from(l4.get(..4)?).ok()?;
        Some(PacketKeys {
            src,
            dst,
            src32,
            dst32,
            proto,
            sport: u16::from_be_bytes([s0, s1]),
            dport: u16::from_be_bytes([d0, d1]),
            in_dev: 0,
            out_dev: 0,
            _dev: std::marker::PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// A test pool: `Some(rule)` entries, `None` ends a list, `Link(p)` as `Err(p)`.
    type TestPool = Vec<Result<Option<u32>, u32>>;

    fn build4(entries: Vec<(u32, u32, u32)>) -> (PrefixIndex<u32>, TestPool) {
        let mut pool: TestPool = Vec::new();
        let ix = PrefixIndex::build(entries, &mut |rules: &[u32], inherited: &[u32], parent: u32| {
            let at = len32(pool.len());
            pool.extend(rules.iter().chain(inherited).map(|&r| Ok(Some(r))));
            pool.push(if parent == NONE { Ok(None) } else { Err(parent) });
            at
        });
        (ix, pool)
    }

    fn collect4(ix: &PrefixIndex<u32>, pool: &TestPool, a: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = ix.lookup(a) as usize;
        while let Some(e) = pool.get(at) {
            match *e {
                Ok(Some(r)) => out.push(r),
                Ok(None) => break,
                Err(p) => {
                    assert!((p as usize) < at, "links go back");
                    at = p as usize;
                    continue;
                }
            }
            at += 1;
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn prefix_index_finds_every_containing_prefix() {
        let ip = |a: u8, b: u8, c: u8, d: u8| u32::from_be_bytes([a, b, c, d]);
        let (ix, pool) = build4(vec![
            (ip(10, 0, 0, 0), 8, 0),
            (ip(10, 1, 0, 0), 16, 1),
            (ip(10, 1, 2, 3), 32, 2),
            (ip(10, 1, 2, 3), 32, 3),
            (ip(192, 0, 2, 0), 24, 4),
            (ip(10, 0, 0, 0), 8, 5),
            (0x8000_0000, 1, 6),
        ]);
        assert_eq!(collect4(&ix, &pool, ip(10, 1, 2, 3)), [0, 1, 2, 3, 5]);
        assert_eq!(collect4(&ix, &pool, ip(10, 1, 2, 4)), [0, 1, 5]);
        assert_eq!(collect4(&ix, &pool, ip(10, 2, 0, 0)), [0, 5]);
        assert_eq!(collect4(&ix, &pool, ip(11, 0, 0, 0)), Vec::<u32>::new());
        assert_eq!(collect4(&ix, &pool, ip(192, 0, 2, 255)), [4, 6]);
        assert_eq!(collect4(&ix, &pool, ip(192, 0, 3, 0)), [6]);
        assert_eq!(collect4(&ix, &pool, u32::MAX), [6]);
        assert_eq!(collect4(&ix, &pool, 0), Vec::<u32>::new());
    }

    #[test]
    fn exact_rules_are_those_whose_summary_says_everything() {
        let cases = [
            (
                "-s 10.0.0.0/8 -p tcp -m tcp --dport 80 -m conntrack --ctstate NEW -j ACCEPT",
                CAND_EXACT | CAND_ACCEPT,
            ),
            (
                "! -d 10.1.2.3 -p udp -m udp ! --sport 53 -m comment --comment x -j DROP",
                CAND_EXACT | CAND_DROP,
            ),
            ("-m state --state ESTABLISHED -j LOG", CAND_EXACT),
            ("-p tcp -m tcp --dport 80 -j REJECT", CAND_EXACT),
            // Tests the summary does not make: flags, a device, -f, a second port match, SNAT.
            ("-p tcp -m tcp --tcp-flags SYN,ACK SYN -j ACCEPT", 0),
            ("-i eth0 -j ACCEPT", 0),
            ("-f -j DROP", 0),
            ("-p tcp -m tcp --dport 80 -m tcp --sport 1 -j ACCEPT", 0),
            ("-p tcp -m multiport --dports 22,80 -j ACCEPT", 0),
            ("-m conntrack --ctstate NEW --ctproto tcp -j ACCEPT", 0),
            ("-m conntrack --ctstate SNAT -j ACCEPT", CAND_EXACT | CAND_ACCEPT),
            ("-m state --state NEW -m conntrack --ctstate NEW -j ACCEPT", 0),
            ("-m mark --mark 1 -j ACCEPT", 0),
        ];
        let mut text =
            String::from("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
        for (r, _) in &cases {
            text.push_str(&format!("-A INPUT {r}\n"));
        }
        text.push_str("COMMIT\n");
        let (rs, ci) = input_index(&text);
        for (rule, (r, want)) in rs.tables[0].chains[ci].rules.iter().zip(cases) {
            assert_eq!(cand_flags(rule, Family::V4), want, "{r}");
        }
        // IPv6: the summary sees 32 bits of an address, so an address test is never exact.
        let rs6 = crate::parse_family(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -s 2001:db8::/64 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n",
            Family::V6,
        )
        .unwrap();
        let rules6 = &rs6.tables[0].chains.iter().find(|c| &*c.name == "INPUT").unwrap().rules;
        assert_eq!(cand_flags(&rules6[0], Family::V6), 0);
        assert_eq!(cand_flags(&rules6[1], Family::V6), CAND_EXACT | CAND_ACCEPT);
    }

    #[test]
    fn state_rows_name_one_state_and_its_nat_bits() {
        assert_eq!(state_row(StateSet::INVALID), 0);
        assert_eq!(state_row(StateSet::NEW), 12);
        assert_eq!(state_row(StateSet::ESTABLISHED | StateSet::SNAT | StateSet::DNAT), 7);
        assert_eq!(state_row(StateSet::UNTRACKED), 16);
        for row in 0..STATE_ROWS {
            assert_eq!(state_row(row_bits(row)), row);
        }
        // Not one state: no row (the masks then let every rule through).
        assert_eq!(state_row(StateSet::NEW | StateSet::ESTABLISHED), STATE_ROWS);
        assert_eq!(state_row(0), STATE_ROWS);
        assert_eq!(state_row(StateSet::SNAT), STATE_ROWS);
    }

    /// The seed ruleset's INPUT chain as the short walk sees it: a new UDP packet from eth0 to
    /// port 33333 leaves rules 2 (`-i lo`, which its device test then refuses), 5 (the jump to
    /// `udp`, exact) and 7 (the REJECT); an established one rule 1 only, decided by its summary.
    #[test]
    fn short_chain_masks_leave_the_rules_a_packet_may_match() {
        let rs = crate::parse(include_str!("../tests/data/seed_filter.rules")).unwrap();
        let t = &rs.tables[0];
        let ix = &rs.index[0];
        assert!(ix.keyed && !ix.any);
        let input = t.chains.iter().position(|c| &*c.name == "INPUT").unwrap();
        let sc = ix.short(input).unwrap();
        let k = SumKeys { src32: 0xc000_0201, dst32: 0xc633_6407, sport: 40000, dport: 33333, proto: 17 };
        let bits = |m: u64| (0..64).filter(|i| m & 1 << i != 0).map(|i| i + 1).collect::<Vec<_>>();
        let new = sc.cands(ix.proto_col(17), state_row(StateSet::NEW));
        assert_eq!(bits(new), [2, 5, 7]);
        // From eth0: rule 2 is refused by its device test; rule 5 is exact (jump: no verdict flag).
        assert_eq!(sc.next(new, 0, &k, StateSet::NEW, ("eth0", "")), (4, CAND_EXACT));
        // From lo: rule 2, exact but for its device, decides.
        assert_eq!(sc.next(new, 0, &k, StateSet::NEW, ("lo", "")), (1, CAND_EXACT | CAND_ACCEPT));
        // After rule 5: rule 7 (REJECT is not exact-with-verdict: its target still runs).
        assert_eq!(sc.next(new, 5, &k, StateSet::NEW, ("eth0", "")), (6, CAND_EXACT));
        let est = sc.cands(ix.proto_col(17), state_row(StateSet::ESTABLISHED));
        assert_eq!(bits(est), [1, 2, 7]);
        assert_eq!(sc.next(est, 0, &k, StateSet::ESTABLISHED, ("eth0", "")), (0, CAND_EXACT | CAND_ACCEPT));
        // A protocol no rule names (GRE): only the rules without a protocol test.
        assert_eq!(bits(sc.cands(ix.proto_col(47), state_row(StateSet::NEW))), [2]);
        // The udp chain's rule needs its port: another port falls off the chain.
        let udp = t.chains.iter().position(|c| &*c.name == "udp").unwrap();
        let sc = ix.short(udp).unwrap();
        let cands = sc.cands(ix.proto_col(17), state_row(StateSet::NEW));
        assert_eq!(sc.next(cands, 0, &k, StateSet::NEW, ("eth0", "")), (0, CAND_EXACT | CAND_ACCEPT));
        let other = SumKeys { dport: 53, ..k };
        assert_eq!(sc.next(cands, 0, &other, StateSet::NEW, ("eth0", "")), (1, 0));
    }

    #[test]
    fn short_lists_hold_their_enclosing_prefixes_rules() {
        let ip = |a: u8, b: u8, c: u8| u32::from_be_bytes([a, b, c, 0]);
        // 10/8 ⊃ 10.1/16 ⊃ 10.1.2/24, one rule each: the /24's list is the three rules, no link.
        let (ix, pool) = build4(vec![(ip(10, 0, 0), 8, 0), (ip(10, 1, 0), 16, 1), (ip(10, 1, 2), 24, 2)]);
        assert!(pool.iter().all(|e| e.is_ok()), "{pool:?}");
        let at = ix.lookup(ip(10, 1, 2) | 7) as usize;
        assert_eq!(pool[at..at + 4], [Ok(Some(2)), Ok(Some(1)), Ok(Some(0)), Ok(None)]);
        // A parent with FLAT_MAX rules: its children link to it instead.
        let mut entries: Vec<(u32, u32, u32)> = (0..FLAT_MAX as u32).map(|r| (ip(10, 0, 0), 8, r)).collect();
        entries.push((ip(10, 1, 0), 16, 100));
        let (ix, pool) = build4(entries);
        let at = ix.lookup(ip(10, 1, 0)) as usize;
        assert_eq!(pool[at..at + 2], [Ok(Some(100)), Err(0)]);
        assert_eq!(collect4(&ix, &pool, ip(10, 1, 0)), [0, 1, 2, 3, 4, 5, 6, 7, 100]);
    }

    #[test]
    fn prefix_index_agrees_with_brute_force() {
        // A deterministic pseudo-random laminar-or-not mix of prefixes (any set of prefixes is
        // laminar) checked at every boundary and its neighbours.
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for clustered in [false, true] {
            let mut entries = Vec::new();
            for r in 0..300u32 {
                let len = u32::try_from(next() % 33).unwrap();
                let v = u32::try_from(next() & 0xFFFF_FFFF).unwrap() & 0xF0F0_FFFF;
                // Clustered: most prefixes inside 10.1.0.0/16 (one crowded slot: level-2 tables).
                let (v, len) = if clustered && r % 10 != 0 {
                    (0x0a01_0000 | (v & 0xFFFF), len.max(17))
                } else {
                    (v, len)
                };
                entries.push((v, len, r));
            }
            let (ix, pool) = build4(entries.clone());
            assert!(!clustered || !ix.l2.is_empty());
            let mut probes = vec![0u32, u32::MAX];
            for _ in 0..2000 {
                let r = u32::try_from(next() & 0xFFFF_FFFF).unwrap();
                probes.push(if r % 2 == 0 { 0x0a01_0000 | (r >> 16) } else { r });
            }
            for &(v, l, _) in &entries {
                let v = v.masked(l);
                probes.extend([v, v.wrapping_sub(1), v.last(l), v.last(l).wrapping_add(1)]);
            }
            for p in probes {
                let want: Vec<u32> =
                    entries.iter().filter(|&&(v, l, _)| v.masked(l) == p.masked(l)).map(|e| e.2).collect();
                assert_eq!(collect4(&ix, &pool, p), want, "probe {p:#x}");
            }
        }
    }

    /// Pool entries of an index and its nested ones.
    fn weight(ix: &ChainIndex) -> usize {
        ix.pool.len() + ix.subs.iter().map(weight).sum::<usize>()
    }

    fn input_index(text: &str) -> (crate::Ruleset, usize) {
        let rs = crate::parse(text).unwrap();
        let ci = rs.tables[0].chains.iter().position(|c| &*c.name == "INPUT").unwrap();
        (rs, ci)
    }

    #[test]
    fn long_lists_become_nested_indexes() {
        // 12 rules per /24 source (one long list each), told apart by their ports.
        let mut text =
            String::from("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
        for i in 0..120u32 {
            text.push_str(&format!(
                "-A INPUT -s 10.0.{}.0/24 -p tcp -m tcp --dport {} -j DROP\n",
                i % 10,
                1000 + i
            ));
        }
        text.push_str("COMMIT\n");
        let (rs, ci) = input_index(&text);
        let ix = rs.index[0].chains[ci].as_ref().unwrap();
        assert!(!ix.subs.is_empty());
        // A packet from 10.0.3.9 to port 1013 has one candidate: rule 14 (0-based 13).
        let bytes = [
            &[0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 3, 9, 192, 0, 2, 10][..],
            &[0x30, 0x39, 0x03, 0xf5, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0],
        ]
        .concat();
        let pkt = wire::decode_ip(&bytes).unwrap();
        let f = crate::eval::Facts::new(&pkt);
        let keys = PacketKeys::new(Family::V4, &f, 6, Some("eth0"), None).unwrap();
        let mut out = Vec::new();
        ix.gather(&keys, StateSet::NEW, &mut out);
        // Exact (addresses, protocol, ports only) and DROP: the walk needs nothing more.
        assert_eq!(out, [13 << CAND_SHIFT | CAND_EXACT | CAND_DROP]);
    }

    #[test]
    fn nested_indexes_stay_within_their_budget() {
        // Every rule shares its destination ports with every other and has wide source port
        // ranges (many blocks each): nesting them all would hold each rule once per block pair.
        let mut text =
            String::from("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
        let n = 400usize;
        for i in 0..n {
            text.push_str(&format!(
                "-A INPUT -p tcp -m multiport --dports 1:1000,2001:3000,4001:5000 -m multiport --sports {}:{},{}:{} -j DROP\n",
                1 + i,
                30000 + i,
                40001 + i,
                65000 - i
            ));
        }
        text.push_str("COMMIT\n");
        let (rs, ci) = input_index(&text);
        let ix = rs.index[0].chains[ci].as_ref().unwrap();
        let nested: usize = ix.subs.iter().map(weight).sum();
        assert!(nested <= n * NEST_BUDGET + 4096, "{nested}");
    }

    #[test]
    fn port_ranges_split_into_aligned_blocks() {
        let blocks = |a, b| {
            let mut v = Vec::new();
            port_blocks(a, b, &mut v);
            v
        };
        assert_eq!(blocks(80, 80), [(80, 16)]);
        assert_eq!(blocks(0, 65535), [(0, 0)]);
        assert_eq!(blocks(1024, 65535), [(1024, 6), (2048, 5), (4096, 4), (8192, 3), (16384, 2), (32768, 1)]);
        assert_eq!(blocks(65535, 65535), [(65535, 16)]);
        for (a, b) in [(1u16, 1000u16), (3, 65534), (60000, 65535), (0, 0)] {
            let v = blocks(a, b);
            assert!(v.len() <= 30);
            let covered: u32 = v.iter().map(|&(_, l)| 1u32 << (16 - l)).sum();
            assert_eq!(covered, u32::from(b - a) + 1);
            for &(p, l) in &v {
                assert!(p >= a && u32::from(p.last(l)) <= u32::from(b));
            }
        }
    }
}
