//! The conntrack hash index (`src/index.rs`, compiled into this bench on its own since it is crate-private)
//! against `hashbrown::HashTable<u32>` as the table used it: find hit / miss at 1k and 1M nodes, each
//! node's key read from a side array of 112-byte entries (a slab slot of `Conn`) as the table's predicate
//! does, plus the index with the next lookups warmed ahead (`warm`, and `candidate` to warm the entry),
//! and both with each lookup waiting for the previous one (`-chained`: the latency of one lookup).
//!
//! `cargo bench -p statewall-conntrack --bench index`. For instruction and cache-miss counts under
//! callgrind, `INDEX_WORKLOAD=<implementation>:<hit|miss>:<nodes>` runs 65536 lookups once, in a
//! function named `lookups_*` (`valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*lookups_*'`);
//! `INDEX_MINTIME=<nodes>:<rounds>` prints the min and median ns per lookup over interleaved batches (a
//! figure that survives a loaded machine better than criterion's).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::hash::BuildHasher;
use std::hint::black_box;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use hashbrown::HashTable;

// cargo builds benches with cfg(test) but drops #[test] functions: the test module's imports and helpers, and
// what only the table uses, go unused here
#[path = "../src/index.rs"]
#[allow(unused_imports, dead_code)]
mod index;
use index::Index;

const SEED: u64 = 0x7374_6174_6577_616c;
/// Warm distance (lookups ahead) for the index line, and for the entry.
const AHEAD: usize = 8;
const AHEAD_ENTRY: usize = 4;

/// A stand-in for a slab slot of `Conn` (112 bytes): the key is what the predicate reads.
#[derive(Clone, Copy)]
struct Entry {
    key: u64,
    _rest: [u64; 13],
}

fn hash(key: u64) -> u64 {
    foldhash::fast::FixedState::with_seed(SEED).hash_one(key)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct World {
    entries: Vec<Entry>,
    index: Index,
    table: HashTable<u32>,
    /// (hash, key) of present keys in random order (drawn with replacement)
    hits: Vec<(u64, u64)>,
    /// (hash, key) of absent keys
    misses: Vec<(u64, u64)>,
}

fn world(n: usize, queries: usize) -> World {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // a key holds its node in its upper half (so a chained lookup can check its result opaquely)
    let entries: Vec<Entry> =
        (0..n as u64).map(|node| Entry { key: (node << 32) | (rng.next() >> 32), _rest: [0; 13] }).collect();
    let mut index = Index::new();
    index.reserve(n).unwrap();
    let mut table: HashTable<u32> = HashTable::new();
    table.reserve(n, |&node| hash(entries[node as usize].key));
    for (node, e) in entries.iter().enumerate() {
        let h = hash(e.key);
        index.insert(h, node as u32).unwrap();
        table.insert_unique(h, node as u32, |&node| hash(entries[node as usize].key));
    }
    let hits = (0..queries)
        .map(|_| {
            let k = entries[(rng.next() % n as u64) as usize].key;
            (hash(k), k)
        })
        .collect();
    // upper halves beyond the last node: absent
    let misses = (0..queries)
        .map(|_| {
            let k = rng.next() | (1 << 63);
            (hash(k), k)
        })
        .collect();
    World { entries, index, table, hits, misses }
}

#[inline(never)]
fn lookups_index(w: &World, qs: &[(u64, u64)]) -> u64 {
    let mut found = 0u64;
    for &(h, k) in qs {
        if let Some(node) = find(w, h, k) {
            found = found.wrapping_add(u64::from(node));
        }
    }
    found
}

#[inline(never)]
fn lookups_warm(w: &World, qs: &[(u64, u64)]) -> u64 {
    let mut found = 0u64;
    for (i, &(h, k)) in qs.iter().enumerate() {
        if let Some(&(ha, _)) = qs.get(i + AHEAD) {
            w.index.warm(ha);
        }
        if let Some(&(he, _)) = qs.get(i + AHEAD_ENTRY) {
            if let Some(node) = w.index.candidate(he) {
                black_box(w.entries.get(node as usize).map(|e| e.key));
            }
        }
        if let Some(node) = find(w, h, k) {
            found = found.wrapping_add(u64::from(node));
        }
    }
    found
}

#[inline(never)]
fn lookups_hashbrown(w: &World, qs: &[(u64, u64)]) -> u64 {
    let mut found = 0u64;
    for &(h, k) in qs {
        if let Some(&node) = w.table.find(h, |&node| w.entries.get(node as usize).is_some_and(|e| e.key == k))
        {
            found = found.wrapping_add(u64::from(node));
        }
    }
    found
}

/// The index's lookup of key `k` under hash `h`, comparing the entries' keys.
fn find(w: &World, h: u64, k: u64) -> Option<u32> {
    w.index.find(h, |node| w.entries.get(node as usize).is_some_and(|e| e.key == k))
}

/// Reads the index slots of a whole group first (independent loads, all in flight together), then the
/// entries they most likely name.
fn warm_group(w: &World, group: &[(u64, u64)]) {
    for &(h, _) in group {
        w.index.warm(h);
    }
    black_box(group.iter().fold(0, |acc, &(h, _)| {
        acc ^ w.index.candidate(h).and_then(|n| w.entries.get(n as usize)).map_or(0, |e| e.key)
    }));
}

/// Lookups in groups of `GROUP`: first the index slots of the whole group are read (independent loads,
/// all in flight together), then the entries they name, then the lookups run on warm lines.
#[inline(never)]
fn lookups_group(w: &World, qs: &[(u64, u64)]) -> u64 {
    const GROUP: usize = 16;
    let mut found = 0u64;
    for group in qs.chunks(GROUP) {
        warm_group(w, group);
        for &(h, k) in group {
            if let Some(node) = find(w, h, k) {
                found = found.wrapping_add(u64::from(node));
            }
        }
    }
    found
}

/// Lookups made one after the other: the next query's position depends on the previous result (by a
/// term that is 0 at run time: the node found xor the node in the key's upper half, 0 for a miss), so the
/// processor cannot overlap them. This is the latency a packet sees (for hits; a miss's result is a
/// predicted branch, which does not hold the next lookup back).
fn chained(qs: &[(u64, u64)], find: impl Fn(u64, u64) -> Option<u32>) -> u64 {
    let mut found = 0u64;
    let mut i = 0;
    while let Some(&(h, k)) = qs.get(i) {
        let f = find(h, k);
        let dep = f.map_or(0, |n| u64::from(n) ^ (k >> 32));
        found = found.wrapping_add(f.map_or(0, u64::from));
        i += 1 + dep as usize;
    }
    found
}

#[inline(never)]
fn lookups_index_chained(w: &World, qs: &[(u64, u64)]) -> u64 {
    chained(qs, |h, k| find(w, h, k))
}

/// [`lookups_group`]'s warming with chained lookups inside each group: what warming buys a loop whose
/// lookups cannot overlap (a packet path long enough to fill the processor's window does the same).
#[inline(never)]
fn lookups_group_chained(w: &World, qs: &[(u64, u64)]) -> u64 {
    const GROUP: usize = 16;
    let mut found = 0u64;
    for group in qs.chunks(GROUP) {
        warm_group(w, group);
        found = found.wrapping_add(chained(group, |h, k| find(w, h, k)));
    }
    found
}

#[inline(never)]
fn lookups_hashbrown_chained(w: &World, qs: &[(u64, u64)]) -> u64 {
    chained(qs, |h, k| {
        w.table.find(h, |&node| w.entries.get(node as usize).is_some_and(|e| e.key == k)).copied()
    })
}

type Lookups = fn(&World, &[(u64, u64)]) -> u64;
const IMPLS: [(&str, Lookups); 7] = [
    ("index", lookups_index),
    ("index-warm", lookups_warm),
    ("index-group", lookups_group),
    ("hashbrown", lookups_hashbrown),
    ("index-chained", lookups_index_chained),
    ("hashbrown-chained", lookups_hashbrown_chained),
    ("index-group-chained", lookups_group_chained),
];

/// Lookups per measured batch; the batches walk round-robin through `QUERIES` random queries, so that
/// at 1M nodes the index and the entries are cold as in a real table (not the same few lines each time).
const BATCH: usize = 4096;
const QUERIES: usize = 1 << 20;

/// Read a 64 MiB buffer, one load per line, to push the table out of the caches (L3 is 32 MiB here).
fn evict() {
    let v = vec![1u64; 8 << 20];
    black_box(v.iter().step_by(8).sum::<u64>());
}

fn bench(c: &mut Criterion) {
    for n in [1_000usize, 1_000_000] {
        let w = world(n, QUERIES);
        // all implementations agree
        let sums: Vec<u64> = IMPLS.iter().map(|(_, f)| f(&w, &w.hits)).collect();
        assert!(sums.windows(2).all(|p| p[0] == p[1]));
        assert!(IMPLS.iter().all(|(_, f)| f(&w, &w.misses) == 0));
        let mut g = c.benchmark_group(format!("index/{n}"));
        g.throughput(Throughput::Elements(BATCH as u64));
        for (what, qs) in [("hit", &w.hits), ("miss", &w.misses)] {
            for (name, f) in IMPLS {
                g.bench_with_input(BenchmarkId::new(name, what), qs, |b, qs| {
                    let mut at = 0;
                    b.iter(|| {
                        let batch = &qs[at..at + BATCH];
                        at = (at + BATCH) % QUERIES;
                        f(&w, black_box(batch))
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);

/// Per-lookup ns of each implementation, batches interleaved so that all see the same machine: (min,
/// median) over `rounds` batches. The minimum is the figure least disturbed by other processes.
fn min_times(n: usize, rounds: usize) {
    let w = world(n, QUERIES);
    let sets = [("hit", &w.hits), ("miss", &w.misses)];
    let mut times = vec![Vec::with_capacity(rounds); IMPLS.len() * sets.len()];
    // every run gets a batch of its own: a batch another run has just looked up would find the caches warm
    let mut at = 0;
    for _ in 0..rounds {
        for (s, (_, qs)) in sets.iter().enumerate() {
            for (i, (_, f)) in IMPLS.iter().enumerate() {
                let batch = &qs[at..at + BATCH];
                at = (at + BATCH) % QUERIES;
                let t0 = std::time::Instant::now();
                black_box(f(&w, black_box(batch)));
                times[s * IMPLS.len() + i].push(t0.elapsed().as_nanos() as f64 / BATCH as f64);
            }
        }
    }
    for (s, (what, _)) in sets.iter().enumerate() {
        for (i, (name, _)) in IMPLS.iter().enumerate() {
            let t = &mut times[s * IMPLS.len() + i];
            t.sort_by(f64::total_cmp);
            println!("{n:>8} {what:<4} {name:<19} min {:6.1} ns  median {:6.1} ns", t[0], t[t.len() / 2]);
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("INDEX_MINTIME") {
        // INDEX_MINTIME=<nodes>:<rounds>
        let (n, rounds) = spec.split_once(':').unwrap_or((&spec, "200"));
        min_times(n.parse().unwrap(), rounds.parse().unwrap());
        return;
    }
    if let Ok(spec) = std::env::var("INDEX_WORKLOAD") {
        let parts: Vec<&str> = spec.split(':').collect();
        let [name, what, n] = parts[..] else { panic!("INDEX_WORKLOAD=<impl>:<hit|miss>:<nodes>") };
        let w = world(n.parse().unwrap(), 65536);
        let qs = if what == "hit" { &w.hits } else { &w.misses };
        evict();
        let f = IMPLS.iter().find(|(i, _)| *i == name).unwrap().1;
        println!("{spec}: {}", f(&w, qs));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
