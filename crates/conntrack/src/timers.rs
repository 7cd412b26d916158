//! Expiry without a timer per entry, and the virtual hash buckets of the early drop.
//!
//! Contract of [`Wheel`]: entries are registered by absolute expiry (ns). [`Wheel::due`] yields, in
//! (expiry, index) order, exactly the registered entries whose *current* expiry is `<= now`, as an
//! ordered set keyed by (expiry, index) would. The kernel keeps one `timeout` field per entry and lets its
//! GC worker find expired entries; we keep the same single field and make refreshes free:
//! - far timers live in coarse slots ([`SLOT_NS`] wide), as doubly linked lists threaded through one array
//!   indexed by entry (8 bytes per entry). A refresh that pushes the expiry later costs nothing: the entry
//!   stays in its (earlier) slot and is moved to its right slot when that slot comes due; a refresh to an
//!   earlier slot moves it in constant time, to that slot or, when it is far ahead, to a slot about 29 s
//!   ahead ([`LEAD_SLOTS`]), so that the next steps down of a closing connection's timer stay there;
//! - timers within the current slot live in an exactly ordered near set, so expiry happens at the exact
//!   nanosecond, in the exact order. When slots come due their entries are sorted once into a run that is
//!   consumed from the front (the entries of a slot were mostly appended in expiry order, so the sort is
//!   mostly a check); an entry leaving the run from elsewhere is marked dead in place (found by binary
//!   search) and skipped. Entries that reach the near set later (a short timeout, a refresh to an earlier
//!   time) go to a small ordered set beside the run;
//! - [`Wheel::next`] is never later than the real next expiry (it may be a slot start, earlier).
//!
//! The owner stores, per entry, where it is registered ([`Place`]) and its current expiry, and passes
//! them in; the wheel holds only indices.
//!
//! [`Chains`]: the entries of each virtual bucket (`nf_conntrack_buckets`), as singly linked lists of
//! nodes (entry index × 2 + direction) threaded through one array, for the bucket-local early drop
//! (`early_drop`, `NF_CT_EVICTION_RANGE`). Lists are kept oldest first with a tail per bucket, so that
//! expiry, which mostly unlinks the oldest entries, does not walk them. The owner keeps them only once
//! it needs them ([`Chains::activate`]): a table that never fills pays nothing for them.

use std::collections::{BTreeMap, BTreeSet};

/// Slot width: 2^30 ns (about 1.07 s).
pub const SLOT_NS: u64 = 1 << 30;

/// Where an entry's timer is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Place {
    #[default]
    None,
    /// In the exactly ordered near set, under the entry's expiry (which the owner keeps).
    Near,
    /// In this coarse slot (possibly earlier than its expiry's slot).
    Slot(u64),
}

/// How far past the slot after now's an entry whose expiry moves to an earlier slot is registered at most
/// ([`Wheel::moved`]): that lead slot starts no later than 27 slots (29 s) from now, before the slot of any
/// expiry 30 s or more from then. A connection's timer mostly comes down in steps (TCP: SYN_SENT 120 s, then
/// SYN_RECV 60 s after the SYN/ACK; ESTABLISHED, then FIN_WAIT 120 s and LAST_ACK 30 s as it closes). Each step
/// down to a slot before the registered one unlinks and relinks the entry (its list neighbours are touched);
/// registered within 29 s of now, the next steps down (to 30 s or more from then) stay where they are.
/// The entry moves on to its expiry's slot when the registered one comes due, as an entry whose expiry went
/// later does.
pub(crate) const LEAD_SLOTS: u64 = 26;

/// How far (in slots) an entry's registration may lag behind its expiry's slot: [`Place::pack`] keeps the
/// slot's low 31 bits and [`Wheel::update`] registers again rather than let the lag reach this.
pub(crate) const MAX_LAG: u64 = 1 << 30;

impl Place {
    /// Packed into 4 bytes: 0 = none, 2 = near, odd = a slot's low 31 bits. [`Place::unpack`] restores the
    /// slot from the entry's current expiry (a registration is never later than its expiry's slot and lags
    /// it by less than `MAX_LAG` slots).
    pub fn pack(self) -> u32 {
        match self {
            Place::None => 0,
            Place::Near => 2,
            Place::Slot(s) => ((s as u32) << 1) | 1,
        }
    }
    /// The place packed in `v` for an entry expiring at `expiry` (ns).
    pub fn unpack(v: u32, expiry: u64) -> Place {
        if v & 1 == 0 {
            return if v == 0 { Place::None } else { Place::Near };
        }
        let es = expiry / SLOT_NS;
        let lag = u64::from((es as u32 & 0x7fff_ffff).wrapping_sub(v >> 1) & 0x7fff_ffff);
        Place::Slot(es.saturating_sub(lag))
    }
}

/// The timer structure (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct Wheel {
    /// The near entries moved in by [`Wheel::advance`]: (expiry, entry, dead), sorted by (expiry, entry)
    /// with unique keys; `run[pos..]` is pending and `run[pos]`, when present, is alive.
    run: Vec<(u64, u32, bool)>,
    pos: usize,
    /// The near entries placed there one by one (between advances).
    late: BTreeSet<(u64, u32)>,
    /// The first entry of each coarse slot's list.
    slots: BTreeMap<u64, u32>,
    /// Per entry index: (previous, next) entry of its slot's list, [`NIL`] at the ends. Every registered
    /// entry is in exactly one place (a slot's list or the near set), so a refresh to an earlier slot
    /// moves it in constant time and nothing stale is left behind.
    links: Vec<[u32; 2]>,
    /// Slots below this number were already moved into `near`.
    horizon: u64,
    len: usize,
    /// The first key of `slots` and the first expiry of `near`, kept as they change: [`Wheel::next`] is
    /// asked for every packet.
    first_slot: Option<u64>,
    near_first: Option<u64>,
    /// The last entry of a slot's list, when known: (slot, entry). New entries mostly go to the slot the
    /// previous one went to (the same timeout from about the same time), and are appended there without
    /// looking the slot up (the order within a slot does not matter: [`Wheel::advance`] sorts).
    tail: Option<(u64, u32)>,
}

/// The owner's side of the registrations: per entry, where its timer is registered and its current expiry
/// (the wheel holds only indices). [`Wheel::advance`] reads and updates them as it moves entries.
pub trait Places {
    /// Calls `f` with entry `idx`'s place and current expiry (nothing when the index is free) and, when it
    /// returns a place, records that the entry is now registered there.
    fn visit(&mut self, idx: u32, f: impl FnOnce(Place, u64) -> Option<Place>);
}

impl Wheel {
    /// Number of registered entries.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held (approximate for the ordered containers: their elements).
    pub fn memory_bytes(&self) -> usize {
        self.links.capacity() * 8 + self.slots.len() * 16 + self.run.capacity() * 16 + self.late.len() * 16
    }

    /// Room for entries with indices below `entries` without reallocating.
    pub fn reserve(&mut self, entries: usize) {
        self.links.reserve_exact(entries.saturating_sub(self.links.len()));
    }

    /// Register entry `idx` (not registered yet) expiring at `expiry`; returns its place.
    #[inline]
    pub fn insert(&mut self, idx: u32, expiry: u64) -> Place {
        self.len += 1;
        self.place(idx, expiry)
    }

    #[inline]
    fn place(&mut self, idx: u32, expiry: u64) -> Place {
        let slot = expiry / SLOT_NS;
        if slot < self.horizon {
            return self.place_late(idx, expiry);
        }
        self.push(slot, idx);
        Place::Slot(slot)
    }

    /// [`Wheel::place`] for an expiry in a slot already moved: into the late set.
    #[cold]
    fn place_late(&mut self, idx: u32, expiry: u64) -> Place {
        self.late.insert((expiry, idx));
        self.near_first = Some(self.near_first.map_or(expiry, |f| f.min(expiry)));
        Place::Near
    }

    fn link(&self, idx: u32) -> [u32; 2] {
        self.links.get(idx as usize).copied().unwrap_or([NIL, NIL])
    }

    fn set_link(&mut self, idx: u32, side: usize, to: u32) {
        if let Some(l) = self.links.get_mut(idx as usize).and_then(|l| l.get_mut(side)) {
            *l = to;
        }
    }

    /// Puts `idx` into `slot`'s list: after the known last entry of that slot, else at the front.
    #[inline]
    fn push(&mut self, slot: u64, idx: u32) {
        let i = idx as usize;
        if self.links.len() <= i {
            self.grow_links(i);
        }
        if let Some((s, last)) = self.tail {
            if s == slot {
                if let Some(l) = self.links.get_mut(i) {
                    *l = [last, NIL];
                }
                self.set_link(last, 1, idx);
                self.tail = Some((slot, idx));
                return;
            }
        }
        self.push_front(slot, idx);
    }

    /// Entry indices are dense: grow past `i` by a step ([`grown`]), so that most pushes find room.
    #[cold]
    #[inline(never)]
    fn grow_links(&mut self, i: usize) {
        self.links.resize(grown(i), [NIL, NIL]);
    }

    /// [`Wheel::push`] at the front of the list.
    fn push_front(&mut self, slot: u64, idx: u32) {
        let i = idx as usize;
        self.first_slot = Some(self.first_slot.map_or(slot, |f| f.min(slot)));
        let head = self.slots.entry(slot).or_insert(NIL);
        let old = std::mem::replace(head, idx);
        if let Some(l) = self.links.get_mut(i) {
            *l = [NIL, old];
        }
        if old != NIL {
            self.set_link(old, 0, idx);
        } else {
            // alone in its slot: it is the last
            self.tail = Some((slot, idx));
        }
    }

    /// Takes `idx` out of `slot`'s list.
    fn unlink(&mut self, slot: u64, idx: u32) {
        let [prev, next] = self.link(idx);
        if self.tail == Some((slot, idx)) {
            self.tail = (prev != NIL).then_some((slot, prev));
        }
        if prev == NIL {
            self.unlink_head(slot, idx, next);
        } else {
            self.set_link(prev, 1, next);
        }
        if next != NIL {
            self.set_link(next, 0, prev);
        }
        if let Some(l) = self.links.get_mut(idx as usize) {
            *l = [NIL, NIL];
        }
    }

    /// [`Wheel::unlink`] of the first entry of `slot`'s list (`next` follows it): one look at the slot.
    fn unlink_head(&mut self, slot: u64, idx: u32, next: u32) {
        use std::collections::btree_map::Entry;
        let Entry::Occupied(mut head) = self.slots.entry(slot) else { return };
        if *head.get() != idx {
            return;
        }
        if next != NIL {
            head.insert(next);
            return;
        }
        head.remove();
        if self.first_slot == Some(slot) {
            self.first_slot = self.slots.keys().next().copied();
        }
    }

    /// The entries of the list starting at `head` (bounded by the number registered).
    fn list(&self, head: u32, out: &mut Vec<u32>) {
        let mut cur = head;
        for _ in 0..=self.len {
            if cur == NIL {
                break;
            }
            out.push(cur);
            cur = self.link(cur)[1];
        }
    }

    /// Does an entry registered at `at` stay there when its expiry becomes `expiry`? Yes for a slot no later
    /// than the new expiry's and not too far behind it (the packed place stays valid): the entry is moved
    /// when its slot comes due. [`Wheel::update`] is then a no-op, so a refresh may test this first.
    #[inline]
    pub fn keeps(at: Place, expiry: u64) -> bool {
        match at {
            Place::Slot(s) => {
                let es = expiry / SLOT_NS;
                es >= s && es - s < MAX_LAG
            }
            Place::None | Place::Near => false,
        }
    }

    /// The expiry of registered entry `idx` changes from `old` to `expiry` at `now` (ns, no earlier than the
    /// last [`Wheel::advance`]); returns its new place.
    pub fn update(&mut self, idx: u32, at: Place, old: u64, expiry: u64, now: u64) -> Place {
        if Self::keeps(at, expiry) {
            return at;
        }
        self.moved(idx, at, old, expiry, now)
    }

    /// [`Wheel::update`] of an entry that does not stay where it is (`!Wheel::keeps(at, expiry)`). An entry
    /// refreshed to an earlier slot goes to that slot or, when it is further than [`LEAD_SLOTS`] past the slot
    /// after now's, to the slot [`LEAD_SLOTS`] past that one (see there).
    pub fn moved(&mut self, idx: u32, at: Place, old: u64, expiry: u64, now: u64) -> Place {
        match at {
            Place::None => self.insert(idx, expiry),
            Place::Near => {
                self.remove_near(old, idx);
                self.place(idx, expiry)
            }
            // Earlier (or too far later): move it.
            Place::Slot(s) => {
                self.unlink(s, idx);
                let es = expiry / SLOT_NS;
                // (never a slot already moved: the horizon is at most the slot after now's)
                let lead = (now / SLOT_NS + 1).max(self.horizon).saturating_add(LEAD_SLOTS);
                if es < s && es > lead && es - lead < MAX_LAG {
                    self.push(lead, idx);
                    return Place::Slot(lead);
                }
                self.place(idx, expiry)
            }
        }
    }

    /// Entry `idx`, registered under `expiry`, goes away.
    pub fn remove(&mut self, idx: u32, at: Place, expiry: u64) {
        match at {
            Place::None => return,
            Place::Near => {
                self.remove_near(expiry, idx);
            }
            Place::Slot(s) => self.unlink(s, idx),
        }
        self.len = self.len.saturating_sub(1);
    }

    /// The earliest expiry, exactly: the near set's first, or the earliest current expiry of the entries
    /// registered in the slots that start before it (`state(idx)`: an entry's place and current expiry, as
    /// [`Places::visit`] gives them). Usually looks at one slot; [`Wheel::next`] is the constant-time lower
    /// bound.
    pub fn next_exact(&self, state: impl Fn(u32) -> Option<(Place, u64)>) -> Option<u64> {
        let mut best = self.near_first_entry().map(|(e, _)| e);
        let mut idxs = Vec::new();
        for (&slot, &head) in &self.slots {
            if best.is_some_and(|b| b <= slot.saturating_mul(SLOT_NS)) {
                break;
            }
            idxs.clear();
            self.list(head, &mut idxs);
            for &idx in &idxs {
                if let Some((_, expiry)) = state(idx) {
                    best = Some(best.map_or(expiry, |b| b.min(expiry)));
                }
            }
        }
        best
    }

    /// No later than the earliest expiry. Constant time (the firsts are kept as they change).
    pub fn next(&self) -> Option<u64> {
        let slot = self.first_slot.map(|s| s.saturating_mul(SLOT_NS));
        match (self.near_first, slot) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The first (expiry, entry) of the near set: the run's front or the late set's first.
    fn near_first_entry(&self) -> Option<(u64, u32)> {
        let run = self.run.get(self.pos).map(|&(e, i, _)| (e, i));
        match (run, self.late.first().copied()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the run's front past dead entries; an exhausted run is emptied (keeping its buffer).
    #[inline]
    fn skip_dead(&mut self) {
        while self.run.get(self.pos).is_some_and(|&(_, _, dead)| dead) {
            self.pos += 1;
        }
        if self.pos >= self.run.len() {
            self.run.clear();
            self.pos = 0;
        }
    }

    fn remove_near(&mut self, expiry: u64, idx: u32) {
        let key = (expiry, idx);
        if self.run.get(self.pos).is_some_and(|&(e, i, _)| (e, i) == key) {
            // the usual case: the earliest entry expires
            self.pos += 1;
            self.skip_dead();
        } else if !self.late.remove(&key) {
            // behind the run's front: marked dead where it is (keys in the run are unique)
            let pending = self.run.get(self.pos..).unwrap_or_default();
            let at = self.pos + pending.partition_point(|&(e, i, _)| (e, i) < key);
            if let Some(x) = self.run.get_mut(at).filter(|x| (x.0, x.1) == key) {
                x.2 = true;
            }
        }
        if self.near_first == Some(expiry) {
            self.near_first = self.near_first_entry().map(|(e, _)| e);
        }
    }

    /// Moves every slot starting at or before `now` into the near set (or, for entries whose expiry moved
    /// later, into their own slot). `places` gives each entry's current place and expiry and records the new
    /// place of every entry moved (once per entry). Constant time when no slot comes due.
    #[inline]
    pub fn advance(&mut self, now: u64, places: &mut impl Places) {
        if now / SLOT_NS < self.horizon {
            return;
        }
        self.advance_slots(now, places);
    }

    /// [`Wheel::advance`] when at least one slot comes due.
    fn advance_slots(&mut self, now: u64, places: &mut impl Places) {
        let target = now / SLOT_NS + 1;
        self.horizon = target;
        // Everything near now expires before the slots being moved start (they were at or beyond the old
        // horizon): the moved entries are appended to the run, after its live rest, and sorted there.
        if self.pos > 0 {
            self.run.drain(..self.pos);
            self.pos = 0;
        }
        self.run.retain(|&(_, _, dead)| !dead);
        let start = self.run.len();
        while let Some((&slot, &head)) = self.slots.first_key_value() {
            if slot >= target {
                break;
            }
            self.slots.remove(&slot);
            if self.tail.is_some_and(|(s, _)| s == slot) {
                self.tail = None;
            }
            let mut cur = head;
            // Bounded by the number registered.
            for _ in 0..=self.len {
                if cur == NIL {
                    break;
                }
                let next = self.link(cur)[1];
                if let Some(l) = self.links.get_mut(cur as usize) {
                    *l = [NIL, NIL];
                }
                // Only entries still registered here: one refreshed to an earlier slot was moved already.
                places.visit(cur, |place, expiry| {
                    if place != Place::Slot(slot) {
                        return None;
                    }
                    let es = expiry / SLOT_NS;
                    if es < target {
                        self.run.push((expiry, cur, false));
                        Some(Place::Near)
                    } else {
                        self.push(es, cur);
                        Some(Place::Slot(es))
                    }
                });
                cur = next;
            }
        }
        self.first_slot = self.slots.keys().next().copied();
        if let Some(new) = self.run.get_mut(start..) {
            // A slot's list is mostly in expiry order already (appended as entries came): usually a check.
            if !new.is_sorted_by_key(|&(e, i, _)| (e, i)) {
                new.sort_unstable_by_key(|&(e, i, _)| (e, i));
            }
        }
        self.near_first = self.near_first_entry().map(|(e, _)| e);
    }

    /// The earliest near entry if it expires at or before `now` (call [`Wheel::advance`] first).
    pub fn first_due(&self, now: u64) -> Option<(u64, u32)> {
        self.near_first_entry().filter(|&(e, _)| e <= now)
    }

    /// [`Wheel::first_due`] and [`Wheel::remove`] of what it gives, in one step: the owner then records the
    /// entry as not registered ([`Place::None`]).
    #[inline]
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, u32)> {
        // the kept first is exact for the near set
        if self.near_first.is_none_or(|e| e > now) {
            return None;
        }
        self.pop_near()
    }

    /// The entry `ahead` places behind the front of the near run, if there is one: a hint of what will
    /// expire soon (it may have left the run, and late entries may come before it), for prefetching.
    #[inline]
    pub fn upcoming(&self, ahead: usize) -> Option<u32> {
        self.run.get(self.pos.checked_add(ahead)?).map(|&(_, i, _)| i)
    }

    /// Takes the first near entry out.
    #[inline]
    fn pop_near(&mut self) -> Option<(u64, u32)> {
        if !self.late.is_empty() {
            return self.pop_near_late();
        }
        // the usual case: the run's front, and the next one becomes the first
        let &(e, i, _) = self.run.get(self.pos)?;
        self.pos += 1;
        self.skip_dead();
        self.near_first = self.run.get(self.pos).map(|&(e, _, _)| e);
        self.len = self.len.saturating_sub(1);
        Some((e, i))
    }

    /// [`Wheel::pop_near`] with late entries: the earlier of the run's front and the late set's first.
    #[cold]
    fn pop_near_late(&mut self) -> Option<(u64, u32)> {
        let run = self.run.get(self.pos).map(|&(e, i, _)| (e, i));
        let key = match (run, self.late.first().copied()) {
            (Some(r), Some(l)) if l < r => self.late.pop_first(),
            (Some(r), _) => {
                self.pos += 1;
                self.skip_dead();
                Some(r)
            }
            (None, _) => self.late.pop_first(),
        }?;
        self.near_first = self.near_first_entry().map(|(e, _)| e);
        self.len = self.len.saturating_sub(1);
        Some(key)
    }
}

const NIL: u32 = u32::MAX;

/// The length a per-index array grows to so that it holds index `i`: the next multiple of [`GROW_STEP`], so
/// that dense indices resize it once per step (the vector's capacity still doubles) and it never holds more
/// than a step beyond the largest index (indices come from the table's slab).
fn grown(i: usize) -> usize {
    (i / GROW_STEP).saturating_add(1).saturating_mul(GROW_STEP)
}

/// See [`grown`].
const GROW_STEP: usize = 1024;

/// Virtual bucket chains (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct Chains {
    /// Oldest node of each bucket.
    heads: Vec<u32>,
    /// Newest node of each bucket (where the next one is linked).
    tails: Vec<u32>,
    /// Next (newer) node per node (entry index × 2 + direction).
    next: Vec<u32>,
    len: usize,
    /// Whether the owner keeps the chains up to date (see [`Chains::activate`]).
    active: bool,
}

impl Chains {
    /// Whether the owner links and unlinks nodes as entries come and go. Until it does, nothing is linked:
    /// bucket membership is a function of each entry's hash, so the owner may link every entry at once
    /// when it first needs the chains (the early drop of a full table) and keep them from then on.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// From now on the owner keeps the chains (it links every entry it has, then each new one).
    pub fn activate(&mut self) {
        self.active = true;
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        (self.heads.capacity() + self.tails.capacity() + self.next.capacity()) * 4
    }

    /// Number of nodes linked.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn buckets(&self) -> usize {
        self.heads.len()
    }

    /// Room for nodes below `nodes` without reallocating.
    pub fn reserve(&mut self, nodes: usize) {
        self.next.reserve_exact(nodes.saturating_sub(self.next.len()));
    }

    /// Empties the chains and sets the bucket count.
    pub fn reset(&mut self, buckets: usize) {
        self.heads.clear();
        self.heads.resize(buckets.max(1), NIL);
        self.tails.clear();
        self.tails.resize(buckets.max(1), NIL);
        self.next.clear();
        self.len = 0;
    }

    /// Links `node` into `bucket`, as its newest node. The lists run oldest first, so that removing entries
    /// in the order they were linked (expiry, mostly) unlinks at the head without a walk; they are presented
    /// newest first, as the kernel's bucket lists are walked.
    pub fn insert(&mut self, bucket: usize, node: u32) {
        self.room(node);
        self.link(bucket, node);
    }

    /// Links both nodes of entry `entry` (entry × 2 + direction): the original one into `buckets[0]`, the
    /// reply one into `buckets[1]` ([`Chains::insert`] twice, in that order). Nothing for an entry whose
    /// node numbers do not fit a `u32`.
    #[inline]
    pub fn insert_entry(&mut self, buckets: [usize; 2], entry: u32) {
        let Some(node) = entry.checked_mul(2) else { return };
        self.room(node | 1);
        self.link(buckets[0], node);
        self.link(buckets[1], node | 1);
    }

    /// Makes `node` addressable in `next` (and the buckets exist).
    #[inline]
    fn room(&mut self, node: u32) {
        if self.heads.is_empty() {
            self.reset(1);
        }
        let n = node as usize;
        if self.next.len() <= n {
            self.grow_next(n);
        }
    }

    /// Node numbers are dense: grow past `n` by a step ([`grown`]), so that most inserts find room.
    #[cold]
    #[inline(never)]
    fn grow_next(&mut self, n: usize) {
        self.next.resize(grown(n), NIL);
    }

    /// The list of `bucket` (taken modulo the bucket count).
    #[inline]
    fn bucket(&self, bucket: usize) -> usize {
        let len = self.heads.len();
        if bucket < len {
            bucket
        } else {
            bucket.checked_rem(len).unwrap_or(0)
        }
    }

    #[inline]
    fn link(&mut self, bucket: usize, node: u32) {
        let b = self.bucket(bucket);
        if let Some(slot) = self.next.get_mut(node as usize) {
            *slot = NIL;
        }
        let Some(t) = self.tails.get_mut(b) else { return };
        // a bucket's tail is NIL exactly when its list is empty
        let tail = std::mem::replace(t, node);
        if tail == NIL {
            if let Some(h) = self.heads.get_mut(b) {
                *h = node;
            }
        } else if let Some(x) = self.next.get_mut(tail as usize) {
            *x = node;
        }
        self.len += 1;
    }

    /// Unlinks both nodes of entry `entry` from their buckets ([`Chains::remove`] twice).
    #[inline]
    pub fn remove_entry(&mut self, buckets: [usize; 2], entry: u32) {
        let Some(node) = entry.checked_mul(2) else { return };
        self.remove(buckets[0], node);
        self.remove(buckets[1], node | 1);
    }

    /// Unlinks `node` from `bucket` (nothing if it is not there).
    #[inline]
    pub fn remove(&mut self, bucket: usize, node: u32) {
        if self.heads.is_empty() || node == NIL {
            return;
        }
        let b = self.bucket(bucket);
        let after = self.next.get(node as usize).copied().unwrap_or(NIL);
        let Some(&head) = self.heads.get(b) else { return };
        if head == node {
            // the usual case (oldest first): no walk
            if let Some(h) = self.heads.get_mut(b) {
                *h = after;
            }
            if after == NIL {
                if let Some(t) = self.tails.get_mut(b) {
                    *t = NIL;
                }
            }
            self.len = self.len.saturating_sub(1);
            return;
        }
        let mut prev = head;
        let mut cur = self.next.get(head as usize).copied().unwrap_or(NIL);
        // Bounded by the number of linked nodes.
        for _ in 0..self.len {
            if cur == NIL {
                return;
            }
            if cur == node {
                if let Some(p) = self.next.get_mut(prev as usize) {
                    *p = after;
                }
                if after == NIL {
                    if let Some(t) = self.tails.get_mut(b) {
                        *t = prev;
                    }
                }
                self.len = self.len.saturating_sub(1);
                return;
            }
            prev = cur;
            cur = self.next.get(cur as usize).copied().unwrap_or(NIL);
        }
    }

    /// The nodes of `bucket`, newest first.
    pub fn nodes(&self, bucket: usize) -> Vec<u32> {
        let mut out = Vec::new();
        self.extend_nodes(bucket, &mut out);
        out
    }

    /// Appends the nodes of `bucket`, newest first, to `out`.
    pub fn extend_nodes(&self, bucket: usize, out: &mut Vec<u32>) {
        if self.heads.is_empty() {
            return;
        }
        let start = out.len();
        let mut cur = self.heads.get(bucket % self.heads.len()).copied().unwrap_or(NIL);
        // Bounded by the number of linked nodes.
        for _ in 0..=self.len {
            if cur == NIL {
                break;
            }
            out.push(cur);
            cur = self.next.get(cur as usize).copied().unwrap_or(NIL);
        }
        if let Some(seg) = out.get_mut(start..) {
            seg.reverse();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Drives a wheel and a plain ordered set side by side.
    struct Model {
        wheel: Wheel,
        place: Vec<Place>,
        expiry: Vec<u64>,
        live: Vec<bool>,
        set: BTreeSet<(u64, u32)>,
        /// Expire with [`Wheel::pop_due`] (else [`Wheel::first_due`] and [`Wheel::remove`]).
        pop: bool,
    }

    /// The model's per-entry records, as the wheel's owner keeps them.
    struct Records<'a> {
        place: &'a mut Vec<Place>,
        expiry: &'a [u64],
        live: &'a [bool],
        /// Entries moved by the last advance (each at most once).
        moved: Vec<u32>,
    }

    impl Places for Records<'_> {
        fn visit(&mut self, i: u32, f: impl FnOnce(Place, u64) -> Option<Place>) {
            if !self.live[i as usize] {
                return;
            }
            if let Some(p) = f(self.place[i as usize], self.expiry[i as usize]) {
                assert!(!self.moved.contains(&i), "entry {i} moved twice");
                self.moved.push(i);
                self.place[i as usize] = p;
            }
        }
    }

    impl Model {
        fn due(&mut self, now: u64) -> Vec<(u64, u32)> {
            let mut records =
                Records { place: &mut self.place, expiry: &self.expiry, live: &self.live, moved: Vec::new() };
            self.wheel.advance(now, &mut records);
            let place = &mut self.place;
            let mut out = Vec::new();
            loop {
                let due = if self.pop {
                    self.wheel.pop_due(now)
                } else {
                    let due = self.wheel.first_due(now);
                    if let Some((e, i)) = due {
                        self.wheel.remove(i, place[i as usize], e);
                    }
                    due
                };
                let Some((e, i)) = due else { break };
                place[i as usize] = Place::None;
                self.live[i as usize] = false;
                out.push((e, i));
            }
            out
        }
    }

    /// Plays `ops` (insert or refresh, remove, clock step by `v / step_div`) on `n` entries against an
    /// ordered set.
    fn drive(n: usize, ops: Vec<(u8, u32, u64)>, step_div: u64) -> Result<(), TestCaseError> {
        let mut m = Model {
            wheel: Wheel::default(),
            place: vec![Place::None; n],
            expiry: vec![0; n],
            live: vec![false; n],
            set: BTreeSet::new(),
            pop: false,
        };
        let mut now = 0u64;
        for (op, i, v) in ops {
            let iu = i as usize % n;
            let i = iu as u32;
            match op {
                0 | 1 => {
                    let e = now + v;
                    if m.live[iu] {
                        m.set.remove(&(m.expiry[iu], i));
                        m.place[iu] = m.wheel.update(i, m.place[iu], m.expiry[iu], e, now);
                    } else {
                        m.live[iu] = true;
                        m.place[iu] = m.wheel.insert(i, e);
                    }
                    m.expiry[iu] = e;
                    m.set.insert((e, i));
                }
                2 => {
                    if m.live[iu] {
                        m.set.remove(&(m.expiry[iu], i));
                        m.wheel.remove(i, m.place[iu], m.expiry[iu]);
                        m.place[iu] = Place::None;
                        m.live[iu] = false;
                    }
                }
                _ => {
                    // both ways of expiring
                    m.pop = op % 2 == 0;
                    if let (Some(n), Some(&(real, _))) = (m.wheel.next(), m.set.first()) {
                        prop_assert!(n <= real);
                    }
                    // the kept firsts are those of the sets
                    let near = m.wheel.near_first_entry().map(|(e, _)| e);
                    let slot = m.wheel.slots.keys().next().map(|s| s * SLOT_NS);
                    prop_assert_eq!(m.wheel.next(), near.into_iter().chain(slot).min());
                    let (place, expiry, live) = (&m.place, &m.expiry, &m.live);
                    let st = |i: u32| live[i as usize].then(|| (place[i as usize], expiry[i as usize]));
                    prop_assert_eq!(m.wheel.next_exact(st), m.set.first().map(|&(e, _)| e));
                    now += v / step_div;
                    let got = m.due(now);
                    let mut want = Vec::new();
                    while let Some(&(e, j)) = m.set.first() {
                        if e > now {
                            break;
                        }
                        m.set.remove(&(e, j));
                        want.push((e, j));
                    }
                    prop_assert_eq!(got, want);
                }
            }
            prop_assert_eq!(m.wheel.len(), m.set.len());
            // the run: pending part sorted with unique keys, its front alive, and it holds exactly the live
            // near entries that are not in the late set
            let w = &m.wheel;
            let pending = &w.run[w.pos..];
            prop_assert!(pending.windows(2).all(|p| (p[0].0, p[0].1) < (p[1].0, p[1].1)));
            prop_assert!(pending.first().is_none_or(|x| !x.2));
            let mut near: Vec<(u64, u32)> =
                pending.iter().filter(|x| !x.2).map(|x| (x.0, x.1)).chain(w.late.iter().copied()).collect();
            near.sort_unstable();
            let mut want: Vec<(u64, u32)> = (0..n)
                .filter(|&j| m.live[j] && m.place[j] == Place::Near)
                .map(|j| (m.expiry[j], j as u32))
                .collect();
            want.sort_unstable();
            prop_assert_eq!(near, want);
        }
        Ok(())
    }

    proptest! {
        /// Whatever the sequence of inserts, refreshes (later and earlier), removals and clock steps, the
        /// wheel expires exactly what an ordered set expires, in the same order, and never promises a
        /// next expiry later than the real one.
        #[test]
        fn wheel_equals_an_ordered_set(ops in proptest::collection::vec((0u8..5, 0u32..16, 0u64..8_000_000_000), 1..300)) {
            drive(16, ops, 4)?;
        }

        /// Timers of minutes (refreshes far earlier than the registration: moved to the lead slot, then on to
        /// their own when it comes due) expire as an ordered set.
        #[test]
        fn long_timers_expire_as_an_ordered_set(ops in proptest::collection::vec((0u8..5, 0u32..16, 0u64..200 * SLOT_NS), 1..300)) {
            drive(16, ops, 8)?;
        }

        /// The same with many entries per slot and small clock steps: runs of many near entries, left from
        /// the front and from the middle (refreshes, removals), and late entries beside them.
        #[test]
        fn crowded_slots_expire_as_an_ordered_set(ops in proptest::collection::vec((0u8..5, 0u32..64, 0u64..3 * SLOT_NS), 1..400)) {
            drive(64, ops, 64)?;
        }
    }

    #[test]
    fn per_index_arrays_grow_by_steps() {
        assert_eq!(grown(0), GROW_STEP);
        assert_eq!(grown(GROW_STEP - 1), GROW_STEP);
        assert_eq!(grown(GROW_STEP), 2 * GROW_STEP);
        assert_eq!(grown(5 * GROW_STEP + 3), 6 * GROW_STEP);
        let mut w = Wheel::default();
        w.reserve(100);
        w.insert(99, SLOT_NS);
        assert_eq!(w.links.len(), GROW_STEP);
        let mut c = Chains::default();
        c.reset(2);
        c.insert_entry([0, 1], 7);
        assert_eq!(c.next.len(), GROW_STEP);
        assert_eq!(c.nodes(1), vec![15]);
    }

    #[test]
    fn places_pack_into_4_bytes() {
        let end = u64::MAX / SLOT_NS;
        for (p, expiry) in [
            (Place::None, 0),
            (Place::Near, 5),
            (Place::Slot(0), 0),
            (Place::Slot(0), (MAX_LAG - 1) * SLOT_NS),
            (Place::Slot(end), u64::MAX),
            (Place::Slot(end - MAX_LAG + 1), u64::MAX),
            (Place::Slot(0x8000_0000), 0x8000_0001 * SLOT_NS),
            (Place::Slot(0xffff_ffff), 0x1_0000_0005 * SLOT_NS + 7),
        ] {
            assert_eq!(Place::unpack(p.pack(), expiry), p, "{p:?} {expiry}");
        }
    }

    #[test]
    fn a_far_later_expiry_registers_again() {
        let mut w = Wheel::default();
        let at = w.insert(1, 10 * SLOT_NS);
        assert_eq!(at, Place::Slot(10));
        // later, within the lag: stays
        assert_eq!(w.update(1, at, 10 * SLOT_NS, 20 * SLOT_NS, 0), Place::Slot(10));
        // too far later: registered again under its own slot
        let far = (10 + MAX_LAG) * SLOT_NS;
        assert_eq!(w.update(1, at, 20 * SLOT_NS, far, 0), Place::Slot(10 + MAX_LAG));
        assert_eq!(w.next_exact(|_| Some((Place::Slot(10 + MAX_LAG), far))), Some(far));
    }

    #[test]
    fn chains_link_and_unlink() {
        let mut c = Chains::default();
        c.reset(4);
        for n in [1, 5, 9] {
            c.insert(1, n);
        }
        c.insert(2, 3);
        assert_eq!(c.nodes(1), vec![9, 5, 1]);
        c.remove(1, 5);
        assert_eq!(c.nodes(1), vec![9, 1]);
        c.remove(1, 9);
        c.remove(1, 7);
        assert_eq!(c.nodes(1), vec![1]);
        assert_eq!(c.nodes(2), vec![3]);
        assert_eq!(c.len(), 2);
        // Unlinking the newest node moves the tail back: the next node links after the right one.
        c.insert(1, 11);
        c.remove(1, 11);
        c.insert(1, 13);
        assert_eq!(c.nodes(1), vec![13, 1]);
        c.remove(1, 1);
        c.remove(1, 13);
        assert_eq!(c.nodes(1), Vec::<u32>::new());
        c.insert(1, 15);
        assert_eq!(c.nodes(1), vec![15]);
    }

    #[test]
    fn chains_link_and_unlink_whole_entries() {
        let mut a = Chains::default();
        let mut b = Chains::default();
        a.reset(4);
        b.reset(4);
        for (e, buckets) in [(0u32, [1usize, 2usize]), (3, [1, 1]), (5, [6, 2])] {
            a.insert_entry(buckets, e);
            b.insert(buckets[0], e * 2);
            b.insert(buckets[1], e * 2 + 1);
        }
        for bucket in 0..4 {
            assert_eq!(a.nodes(bucket), b.nodes(bucket));
        }
        // bucket 6 is bucket 2 of 4
        assert_eq!(a.nodes(2), vec![11, 10, 1]);
        assert_eq!(a.nodes(1), vec![7, 6, 0]);
        // the middle entry (not at its buckets' heads) and the oldest one
        a.remove_entry([1, 1], 3);
        assert_eq!(a.nodes(1), vec![0]);
        a.remove_entry([1, 2], 0);
        assert_eq!(a.nodes(1), Vec::<u32>::new());
        assert_eq!(a.nodes(2), vec![11, 10]);
        assert_eq!(a.len(), 2);
        // entries whose nodes do not fit a u32 are refused
        a.insert_entry([0, 0], u32::MAX);
        assert_eq!(a.len(), 2);
    }

    proptest! {
        /// Chains behave like a list per bucket, newest first, under any mix of links and unlinks.
        #[test]
        fn chains_match_a_list_model(ops in proptest::collection::vec((0usize..3, 0u32..12, any::<bool>()), 0..200)) {
            let mut c = Chains::default();
            c.reset(3);
            let mut model: Vec<Vec<u32>> = vec![Vec::new(); 3];
            for (b, n, link) in ops {
                let linked = model.iter().any(|l| l.contains(&n));
                if link && !linked {
                    c.insert(b, n);
                    model[b].insert(0, n);
                } else if !link {
                    c.remove(b, n);
                    model[b].retain(|&x| x != n);
                }
                for (i, l) in model.iter().enumerate() {
                    prop_assert_eq!(&c.nodes(i), l);
                }
                prop_assert_eq!(c.len(), model.iter().map(Vec::len).sum::<usize>());
            }
        }
    }

    /// A timer coming down from 120 s to 60 s (a TCP handshake) is registered about 30 s ahead, where its next
    /// step down to 30 s a little later stays; it is moved on when that slot comes due and expires exactly.
    #[test]
    fn steps_down_are_registered_ahead_once() {
        struct One(Place, u64);
        impl Places for One {
            fn visit(&mut self, _: u32, f: impl FnOnce(Place, u64) -> Option<Place>) {
                if let Some(p) = f(self.0, self.1) {
                    self.0 = p;
                }
            }
        }
        let s = SLOT_NS;
        let mut w = Wheel::default();
        let mut e = One(Place::None, 0);
        w.advance(10 * s, &mut e);
        assert_eq!(w.horizon, 11);
        let t0 = 10 * s + 5;
        e.1 = t0 + 120_000_000_000;
        e.0 = w.insert(0, e.1);
        assert_eq!(e.0, Place::Slot(e.1 / s));
        // 60 s: earlier than the registration and further than the lead: registered at the lead
        let sr = t0 + 60_000_000_000;
        e.0 = w.update(0, e.0, e.1, sr, t0);
        e.1 = sr;
        assert_eq!(e.0, Place::Slot(11 + LEAD_SLOTS));
        assert!(Place::unpack(e.0.pack(), e.1) == e.0);
        // 30 s from a little later: stays
        let la = t0 + 1_000_000_000 + 30_000_000_000;
        assert!(Wheel::keeps(e.0, la));
        e.1 = la;
        // the lead slot comes due: moved on to the expiry's slot, then expires exactly
        w.advance((11 + LEAD_SLOTS) * s, &mut e);
        assert_eq!(e.0, Place::Slot(la / s));
        assert_eq!(w.pop_due(la - 1), None);
        w.advance(la, &mut e);
        assert_eq!(w.pop_due(la), Some((la, 0)));
        assert!(w.is_empty());
        // a step down within the lead goes to its own slot
        let mut w = Wheel::default();
        w.advance(10 * s, &mut e);
        let p = w.insert(1, t0 + 120_000_000_000);
        assert_eq!(
            w.update(1, p, t0 + 120_000_000_000, t0 + 20_000_000_000, t0),
            Place::Slot((t0 + 20_000_000_000) / s)
        );
        // the lead follows the clock, not the horizon (no slot came due yet: it stays at 0)
        let mut w = Wheel::default();
        let t1 = 1_700_000_000 * 1_000_000_000u64;
        let p = w.insert(2, t1 + 120_000_000_000);
        let at = w.update(2, p, t1 + 120_000_000_000, t1 + 60_000_000_000, t1);
        assert_eq!(at, Place::Slot(t1 / s + 1 + LEAD_SLOTS));
        assert_eq!(Place::unpack(at.pack(), t1 + 60_000_000_000), at);
    }
}
