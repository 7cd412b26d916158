//! The conntrack table's hash index: an open-addressing table of `u64` slots, each holding a 32-bit hash
//! tag and a 32-bit node together, so that a lookup costs one cache miss in the index before the entry
//! itself (a control-byte table with separate buckets costs two).
//!
//! Contract:
//! - A *node* is a caller-chosen `u32` (the table uses slab index * 2 + direction); `u32::MAX` cannot be
//!   stored. A node is filed under a caller-computed `u64` hash; different nodes may share a hash (and
//!   equal nodes are not detected: the caller inserts a node only when it is absent).
//! - Only the upper 32 bits of the hash are kept (the *tag*); the home slot is `tag & mask`, so growth and
//!   deletion never need the caller's hash function. [`Index::find`] calls the caller's predicate, in
//!   probe order, on the nodes whose tag equals the hash's and returns the first it accepts; the probe
//!   order is a function of the insertion/removal history only (no randomness), but callers must not
//!   depend on it.
//! - Linear probing over a power-of-two number of slots (8 to a 64-byte cache line), at most half full:
//!   at that load a probe rarely leaves the home slot's line. Removal shifts the following
//!   cluster back (no tombstones), so probe lengths never degrade with churn.
//! - The index grows by doubling when an insert would pass half load (rehashing from the stored tags), or
//!   to the size [`Index::reserve`] asks for; it never shrinks. Allocation failures are reported, never
//!   aborts: an index that cannot grow keeps accepting nodes while it has a free slot beyond the one
//!   every probe needs to stop.
//! - [`Index::home`] is the slot a hash probes first and [`Index::warm`] reads it, so a batch loop can
//!   touch the index lines of the next packets before it processes them; [`Index::candidate`] names the
//!   first node near the home slot with the hash's tag, so the entry can be warmed too. Safe Rust has no
//!   prefetch, so warming is a plain load that holds the processor's window until it completes: it pays
//!   when lookups cannot overlap anyway (a group of packets whose slots, then entries, are read first,
//!   before the long per-packet work), and costs in a tight loop of independent lookups, which the
//!   processor already overlaps (see `benches/index.rs`).

/// Slots per 64-byte cache line, and the smallest slot count.
const LINE: usize = 8;
/// Largest slot count: the home position comes from a 32-bit tag (and the count must fit a `usize`).
const MAX_SLOTS: usize = 1 << if usize::BITS > 32 { 32 } else { usize::BITS - 1 };

/// Why the index refused a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IndexError {
    /// `u32::MAX` is reserved (a slot stores node + 1, 0 meaning empty).
    #[error("node {0} cannot be indexed")]
    Node(u32),
    /// The index is full and could not grow to the given slot count.
    #[error("the conntrack index cannot grow to {0} slots")]
    Grow(usize),
}

/// The index: slot = (tag << 32) | (node + 1), 0 = empty.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    /// A power of two of them (or none). 8-byte slots never straddle cache lines, so aligning the array
    /// to 64 bytes would not change how often a probe crosses one.
    slots: Vec<u64>,
    /// Slot count - 1 (0 while there are no slots).
    mask: usize,
    /// Nodes held.
    len: usize,
    /// Most slots it may grow to ([`MAX_SLOTS`]; smaller in tests of a full index).
    limit: usize,
}

impl Default for Index {
    fn default() -> Self {
        Self { slots: Vec::new(), mask: 0, len: 0, limit: MAX_SLOTS }
    }
}

/// The stored tag of a hash.
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// The slot value of a node under a tag (`None` for the reserved node).
fn pack(tag: u32, node: u32) -> Option<u64> {
    let n = node.checked_add(1)?;
    Some((u64::from(tag) << 32) | u64::from(n))
}

/// The node of a non-empty slot.
fn node_of(slot: u64) -> u32 {
    (slot as u32).wrapping_sub(1)
}

impl Index {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An index that cannot grow beyond `slots` slots (as if memory ran out).
    #[cfg(test)]
    fn with_limit(slots: usize) -> Self {
        Self { limit: slots, ..Self::default() }
    }

    /// Nodes held (the table's invariant checks and the bench, which compiles this file on its own).
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[allow(dead_code)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes the index holds without growing (half its slots).
    pub(crate) fn capacity(&self) -> usize {
        self.slots() / 2
    }

    /// Heap bytes of the slots (8 per slot).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<u64>()
    }

    fn slots(&self) -> usize {
        self.slots.len()
    }

    fn slot(&self, i: usize) -> u64 {
        self.slots.get(i).copied().unwrap_or(0)
    }

    fn slot_mut(&mut self, i: usize) -> Option<&mut u64> {
        self.slots.get_mut(i)
    }

    fn home_of_tag(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    /// The slot `hash` probes first (0 while the index has no slots).
    pub(crate) fn home(&self, hash: u64) -> usize {
        self.home_of_tag(tag_of(hash))
    }

    /// Asks the processor to bring `hash`'s home slot's cache line in, without waiting for it, so that a
    /// batch loop can warm the lines of its next lookups.
    pub(crate) fn warm(&self, hash: u64) {
        if let Some(s) = self.slots.get(self.home(hash)) {
            mem_prefetch::prefetch_read_data::<_, 3>(s);
        }
    }

    /// The first node stored under `hash`'s tag from the home slot to the end of its aligned group of 8
    /// slots (64 bytes, not necessarily one cache line: the array is only 8-byte aligned): the entry
    /// [`Index::find`] will most likely try first (so its memory can be warmed too).
    pub(crate) fn candidate(&self, hash: u64) -> Option<u32> {
        let tag = tag_of(hash);
        let home = self.home_of_tag(tag);
        let end = (home | (LINE - 1)).saturating_add(1);
        for &s in self.slots.get(home..end)? {
            if s == 0 {
                return None;
            }
            if (s >> 32) as u32 == tag {
                return Some(node_of(s));
            }
        }
        None
    }

    /// The first node, in probe order, stored under `hash`'s tag and accepted by `eq`. The home slot is
    /// tried inline (where a lookup almost always ends), the rest of the probe out of line.
    #[inline(always)]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let home = self.home_of_tag(tag);
        let s = *self.slots.get(home)?;
        if s == 0 {
            return None;
        }
        if (s >> 32) as u32 == tag && eq(node_of(s)) {
            return Some(node_of(s));
        }
        // The predicate by reference: a by-value copy of its just-built captures stalls on their stores.
        self.find_after(home, tag, &mut eq)
    }

    /// [`Index::find`] past the home slot `home` (its other `slots - 1` probes).
    #[inline(never)]
    fn find_after(&self, home: usize, tag: u32, eq: &mut impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = home;
        // Bounded: a half-full index always has an empty slot to stop at.
        for _ in 1..self.slots.len() {
            i = (i + 1) & self.mask;
            let s = *self.slots.get(i)?;
            if s == 0 {
                return None;
            }
            if (s >> 32) as u32 == tag && eq(node_of(s)) {
                return Some(node_of(s));
            }
        }
        None
    }

    /// Size the index to hold `n` nodes without growing. Fails only if the memory cannot be had (the
    /// index is then unchanged).
    pub(crate) fn reserve(&mut self, n: usize) -> Result<(), IndexError> {
        if n <= self.capacity() {
            return Ok(());
        }
        let want = n
            .checked_mul(2)
            .and_then(usize::checked_next_power_of_two)
            .ok_or(IndexError::Grow(usize::MAX))?;
        self.resize(want.max(LINE))
    }

    /// File `node` under `hash`. The node must not be in the index already.
    pub(crate) fn insert(&mut self, hash: u64, node: u32) -> Result<(), IndexError> {
        let value = pack(tag_of(hash), node).ok_or(IndexError::Node(node))?;
        let need = self.len.saturating_add(1);
        if need > self.capacity() {
            let want = self.slots().saturating_mul(2).max(LINE);
            if let Err(e) = self.resize(want) {
                // keep one slot empty so that every probe ends
                if need >= self.slots() {
                    return Err(e);
                }
            }
        }
        let mut i = self.home(hash);
        for _ in 0..self.slots() {
            if let Some(s) = self.slot_mut(i) {
                if *s == 0 {
                    *s = value;
                    self.len = need;
                    return Ok(());
                }
            }
            i = (i + 1) & self.mask;
        }
        Err(IndexError::Grow(self.slots()))
    }

    /// Remove `node` filed under `hash`; false if it is not there.
    pub(crate) fn remove(&mut self, hash: u64, node: u32) -> bool {
        let Some(value) = pack(tag_of(hash), node) else { return false };
        let mut i = self.home(hash);
        let mut found = None;
        for _ in 0..self.slots() {
            let s = self.slot(i);
            if s == 0 {
                break;
            }
            if s == value {
                found = Some(i);
                break;
            }
            i = (i + 1) & self.mask;
        }
        let Some(mut hole) = found else { return false };
        // Backward shift: a later slot of the cluster moves into the hole unless its home lies cyclically
        // in (hole, j], where it must stay reachable.
        let mut j = hole;
        for _ in 0..self.slots() {
            j = (j + 1) & self.mask;
            let s = self.slot(j);
            if s == 0 {
                break;
            }
            let home = self.home_of_tag((s >> 32) as u32);
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                if let Some(h) = self.slot_mut(hole) {
                    *h = s;
                }
                hole = j;
            }
        }
        if let Some(h) = self.slot_mut(hole) {
            *h = 0;
        }
        self.len = self.len.saturating_sub(1);
        true
    }

    /// Rehash into `slots` slots (a power of two, at least one line), if that is more than now.
    fn resize(&mut self, slots: usize) -> Result<(), IndexError> {
        if slots <= self.slots() {
            return Ok(());
        }
        if slots > self.limit || !slots.is_power_of_two() {
            return Err(IndexError::Grow(slots));
        }
        let mut new = Vec::new();
        new.try_reserve_exact(slots).map_err(|_| IndexError::Grow(slots))?;
        new.resize(slots, 0);
        let old = std::mem::replace(&mut self.slots, new);
        self.mask = slots - 1;
        // Old slots in index order: the new layout depends on the old one only.
        for &s in &old {
            if s == 0 {
                continue;
            }
            let mut i = self.home_of_tag((s >> 32) as u32);
            for _ in 0..slots {
                match self.slot_mut(i) {
                    Some(d) if *d == 0 => {
                        *d = s;
                        break;
                    }
                    _ => i = (i + 1) & self.mask,
                }
            }
        }
        Ok(())
    }

    /// Every (tag, node) held, in slot order (for tests and consistency checks).
    #[cfg(test)]
    fn entries(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.slots.iter().filter(|&&s| s != 0).map(|&s| ((s >> 32) as u32, node_of(s)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// A hash whose tag is `tag` (the low half is ignored by the index).
    fn h(tag: u32) -> u64 {
        (u64::from(tag) << 32) | 0xdead_beef
    }

    /// Every slot holds a node reachable from its home without crossing an empty slot.
    fn check_reachable(ix: &Index) {
        let n = ix.slots();
        for i in 0..n {
            let s = ix.slot(i);
            if s == 0 {
                continue;
            }
            let mut k = ix.home_of_tag((s >> 32) as u32);
            while k != i {
                assert_ne!(ix.slot(k), 0, "slot {i} unreachable from its home");
                k = (k + 1) & ix.mask;
            }
        }
        assert_eq!(ix.entries().count(), ix.len());
        assert!(ix.len() < ix.slots() || ix.slots() == 0, "a free slot ends every probe");
    }

    #[test]
    fn empty_index_finds_nothing() {
        let ix = Index::new();
        assert_eq!(ix.len(), 0);
        assert!(ix.is_empty());
        assert_eq!(ix.capacity(), 0);
        assert_eq!(ix.memory_bytes(), 0);
        assert_eq!(ix.find(h(7), |_| true), None);
        ix.warm(h(7)); // no slots: nothing to fetch, no panic
        assert_eq!(ix.candidate(h(7)), None);
        let mut ix = ix;
        assert!(!ix.remove(h(7), 3));
    }

    #[test]
    fn insert_find_remove() {
        let mut ix = Index::new();
        ix.insert(h(1), 10).unwrap();
        ix.insert(h(2), 20).unwrap();
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.capacity(), 4);
        assert_eq!(ix.memory_bytes(), 64);
        assert_eq!(ix.find(h(1), |n| n == 10), Some(10));
        assert_eq!(ix.find(h(2), |_| true), Some(20));
        // the predicate only sees nodes under the same tag
        let mut seen = Vec::new();
        assert_eq!(
            ix.find(h(1), |n| {
                seen.push(n);
                false
            }),
            None
        );
        assert_eq!(seen, [10]);
        assert_eq!(ix.find(h(3), |_| true), None);
        assert!(!ix.remove(h(1), 20), "wrong hash");
        assert!(ix.remove(h(1), 10));
        assert!(!ix.remove(h(1), 10));
        assert_eq!(ix.find(h(1), |_| true), None);
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn reserved_node_is_refused() {
        let mut ix = Index::new();
        assert_eq!(ix.insert(h(1), u32::MAX), Err(IndexError::Node(u32::MAX)));
        ix.insert(h(1), u32::MAX - 1).unwrap();
        assert_eq!(ix.find(h(1), |_| true), Some(u32::MAX - 1));
        assert!(!ix.remove(h(1), u32::MAX));
    }

    /// An index that cannot grow fills past half load, keeping one slot free so that misses still end.
    #[test]
    fn full_index_refuses_the_last_slot() {
        let mut ix = Index::with_limit(16);
        for n in 0..15 {
            ix.insert(h(n % 3), n).unwrap();
        }
        assert_eq!(ix.slots(), 16);
        assert_eq!(ix.insert(h(9), 15), Err(IndexError::Grow(32)));
        assert_eq!(ix.len(), 15);
        assert_eq!(ix.reserve(9), Err(IndexError::Grow(32)));
        assert_eq!(ix.find(h(9), |_| true), None, "a miss ends at the free slot");
        for n in 0..15 {
            assert_eq!(ix.find(h(n % 3), |m| m == n), Some(n));
        }
        assert!(ix.remove(h(1), 4));
        ix.insert(h(9), 15).unwrap();
        assert_eq!(ix.find(h(9), |_| true), Some(15));
        check_reachable(&ix);
    }

    /// `warm` reads the home slot; `candidate` looks no further than the home slot's group of 8.
    #[test]
    fn warm_and_candidate_read_the_home_line() {
        let mut ix = Index::new();
        ix.reserve(8).unwrap();
        assert_eq!(ix.slots(), 16);
        assert_eq!(ix.home(h(6)), 6);
        assert_eq!(ix.home(h(6 + 16)), 6, "the home comes from the tag's low bits");
        ix.insert(h(6), 1).unwrap();
        ix.insert(h(6), 2).unwrap();
        ix.insert(h(7 + 16), 3).unwrap(); // homed at 7, pushed to 8: the next line
        ix.warm(h(6));
        ix.warm(h(9));
        assert_eq!(ix.candidate(h(6)), Some(1));
        assert_eq!(ix.candidate(h(7 + 16)), None, "beyond the home line");
        assert_eq!(ix.find(h(7 + 16), |_| true), Some(3));
        assert_eq!(ix.candidate(h(7)), None, "same home, other tag");
        assert_eq!(ix.candidate(h(8 + 16)), None);
        assert!(ix.remove(h(6), 1));
        assert_eq!(ix.candidate(h(6)), Some(2));
        assert_eq!(ix.candidate(h(7 + 16)), Some(3), "shifted back into its home line");
    }

    #[test]
    fn shared_hash_nodes_are_tried_in_insertion_order() {
        let mut ix = Index::new();
        for n in 0..3 {
            ix.insert(h(5), n).unwrap();
        }
        let mut seen = Vec::new();
        assert_eq!(
            ix.find(h(5), |n| {
                seen.push(n);
                n == 2
            }),
            Some(2)
        );
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(ix.candidate(h(5)), Some(0));
        assert!(ix.remove(h(5), 0));
        assert_eq!(ix.candidate(h(5)), Some(1));
        assert_eq!(ix.find(h(5), |_| true), Some(1));
    }

    #[test]
    fn grows_by_doubling_past_half_load() {
        let mut ix = Index::new();
        for n in 0..4 {
            ix.insert(h(n), n).unwrap();
        }
        assert_eq!(ix.slots(), 8);
        ix.insert(h(4), 4).unwrap();
        assert_eq!(ix.slots(), 16);
        assert_eq!(ix.capacity(), 8);
        for n in 5..100u32 {
            ix.insert(h(n.wrapping_mul(0x9e37_79b9)), n).unwrap();
        }
        assert_eq!(ix.slots(), 256);
        for n in 0..5 {
            assert_eq!(ix.find(h(n), |m| m == n), Some(n));
        }
        for n in 5..100u32 {
            assert_eq!(ix.find(h(n.wrapping_mul(0x9e37_79b9)), |m| m == n), Some(n));
        }
        check_reachable(&ix);
    }

    #[test]
    fn reserve_sizes_up_front_and_never_shrinks() {
        let mut ix = Index::new();
        ix.reserve(1000).unwrap();
        assert_eq!(ix.slots(), 2048);
        assert_eq!(ix.capacity(), 1024);
        assert_eq!(ix.memory_bytes(), 2048 * 8);
        for n in 0..1024u32 {
            ix.insert(h(n.wrapping_mul(0x85eb_ca6b)), n).unwrap();
        }
        assert_eq!(ix.slots(), 2048, "no growth within the reservation");
        ix.reserve(10).unwrap();
        assert_eq!(ix.slots(), 2048);
        ix.insert(h(7), 5000).unwrap();
        assert_eq!(ix.slots(), 4096);
        assert_eq!(ix.reserve(usize::MAX), Err(IndexError::Grow(usize::MAX)));
        assert_eq!(ix.slots(), 4096);
        check_reachable(&ix);
    }

    #[test]
    fn probe_wraps_around_the_end() {
        let mut ix = Index::new();
        // all homed at the last slot of 8
        for n in 0..4 {
            ix.insert(h(7), n).unwrap();
        }
        assert_eq!(ix.slot(7) >> 32, 7);
        assert_eq!(ix.slot(0) >> 32, 7);
        assert_eq!(ix.find(h(7), |n| n == 3), Some(3));
        // a node homed at 0 lands behind the wrapped cluster and stays findable as it shifts back
        ix.remove(h(7), 3);
        ix.insert(h(8), 9).unwrap();
        assert!(ix.remove(h(7), 0));
        check_reachable(&ix);
        assert_eq!(ix.find(h(8), |n| n == 9), Some(9));
        assert!(ix.remove(h(7), 1));
        assert!(ix.remove(h(7), 2));
        assert_eq!(ix.find(h(8), |n| n == 9), Some(9));
        assert_eq!(ix.slot(0), pack(8, 9).unwrap(), "shifted home");
        check_reachable(&ix);
    }

    /// Churn at exactly half load over a small table with clustered homes: every node stays findable
    /// (backward shift correctness).
    #[test]
    fn churn_at_half_load_keeps_every_node_findable() {
        let mut ix = Index::new();
        ix.reserve(512).unwrap();
        let slots = ix.slots();
        let mut model: HashMap<u32, u64> = HashMap::new();
        let mut x: u64 = 0x1234_5678_9abc_def0;
        let mut next = || {
            // xorshift: deterministic
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut node = 0u32;
        for round in 0..20_000u32 {
            if model.len() < slots / 2 {
                // homes crowd into a quarter of the table, tags repeat often
                let tag = ((next() % 64) as u32) * 4 + ((next() % 4) as u32) * 1024;
                ix.insert(h(tag), node).unwrap();
                model.insert(node, h(tag));
                node += 1;
            } else {
                let victim = *model
                    .keys()
                    .min_by_key(|&&k| (u64::from(k) * 0x9e37_79b9 + u64::from(round)) % 997)
                    .unwrap();
                let hash = model.remove(&victim).unwrap();
                assert!(ix.remove(hash, victim));
            }
            if round % 1000 == 0 {
                check_reachable(&ix);
            }
        }
        assert_eq!(ix.slots(), slots, "half load never grows");
        assert_eq!(ix.len(), model.len());
        for (&n, &hash) in &model {
            assert_eq!(ix.find(hash, |m| m == n), Some(n));
        }
        check_reachable(&ix);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Remove(usize),
        Find(u64, u32),
        Reserve(usize),
    }

    /// Hashes drawn from a small set: equal hashes, equal tags with different low halves, tags sharing
    /// their home bits.
    fn hash() -> impl Strategy<Value = u64> {
        (0u32..12, 0u32..3, 0u64..2)
            .prop_map(|(home, high, low)| (u64::from(home | (high << 20)) << 32) | low)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => hash().prop_map(Op::Insert),
            3 => any::<usize>().prop_map(Op::Remove),
            3 => (hash(), 0u32..8).prop_map(|(h, m)| Op::Find(h, m)),
            1 => (0usize..40).prop_map(Op::Reserve),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_a_model(ops in proptest::collection::vec(op(), 1..300)) {
            let mut ix = Index::new();
            // node -> hash, and insertion order (the probe order of equal-tag nodes)
            let mut model: HashMap<u32, u64> = HashMap::new();
            let mut next = 0u32;
            for op in ops {
                match op {
                    Op::Insert(hash) => {
                        ix.insert(hash, next).unwrap();
                        model.insert(next, hash);
                        next += 1;
                    }
                    Op::Remove(pick) => {
                        let mut nodes: Vec<u32> = model.keys().copied().collect();
                        nodes.sort_unstable();
                        if let Some(&n) = nodes.get(pick % (nodes.len() + 1)) {
                            let hash = model.remove(&n).unwrap();
                            // a wrong hash with the same low half misses
                            prop_assert!(!ix.remove(hash ^ (1 << 52), n));
                            prop_assert!(ix.remove(hash, n));
                        } else {
                            prop_assert!(!ix.remove(pick as u64, next));
                        }
                    }
                    Op::Find(hash, m) => {
                        // eq accepts nodes congruent to m mod 8: the model's answer is the set of
                        // such nodes under the same tag; the index must return one of them iff any
                        let tag = hash >> 32;
                        let want: Vec<u32> = model
                            .iter()
                            .filter(|&(&n, &hh)| hh >> 32 == tag && n % 8 == m)
                            .map(|(&n, _)| n)
                            .collect();
                        let mut calls = Vec::new();
                        let got = ix.find(hash, |n| {
                            calls.push(n);
                            n % 8 == m
                        });
                        match got {
                            Some(n) => prop_assert!(want.contains(&n)),
                            None => prop_assert!(want.is_empty()),
                        }
                        // eq saw only same-tag nodes, each once
                        for &n in &calls {
                            prop_assert_eq!(model.get(&n).map(|&hh| hh >> 32), Some(tag));
                        }
                        let mut dedup = calls.clone();
                        dedup.sort_unstable();
                        dedup.dedup();
                        prop_assert_eq!(dedup.len(), calls.len());
                        // an exact-node predicate finds every held node
                        let all = model.iter().filter(|&(_, &hh)| hh >> 32 == tag);
                        for (&n, _) in all {
                            prop_assert_eq!(ix.find(hash, |x| x == n), Some(n));
                        }
                    }
                    Op::Reserve(n) => {
                        ix.reserve(n).unwrap();
                        prop_assert!(ix.capacity() >= n);
                    }
                }
                prop_assert_eq!(ix.len(), model.len());
                prop_assert!(ix.len() <= ix.capacity());
            }
            check_reachable(&ix);
            for (&n, &hash) in &model {
                prop_assert_eq!(ix.find(hash, |x| x == n), Some(n));
            }
        }
    }
}
