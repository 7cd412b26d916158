//! The conntrack hash index (`src/index.rs`, compiled into this bench on its own since it is crate-private)
//! against `hashbrown::HashTable<u32>` as the table used it: find hit / miss at 1k and 1M nodes, each
//! node's key read from a side array of 112-byte entries (a slab slot of `Conn`) as the table's predicate
//! does, plus the index with the next lookups warmed ahead (`warm`, and `candidate` to warm the entry).
//!
//! `cargo bench -p statewall-conntrack --bench index`. For instruction and cache-miss counts under
//! callgrind, `INDEX_WORKLOAD=<index|warm|hashbrown>:<hit|miss>:<nodes>` runs 65536 lookups once, in a
//! function named `lookups_*` (`valgrind --tool=callgrind --cache-sim=yes --toggle-collect='*lookups_*'`).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::hash::BuildHasher;
use std::hint::black_box;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use hashbrown::HashTable;

// cargo builds benches with cfg(test) but drops #[test] functions: the test module's imports go unused
#[path = "../src/index.rs"]
#[allow(unused_imports)]
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
    let mut seen = std::collections::HashSet::new();
    let mut entries = Vec::with_capacity(n);
    while entries.len() < n {
        let key = rng.next();
        if seen.insert(key) {
            entries.push(Entry { key, _rest: [0; 13] });
        }
    }
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
    let mut misses = Vec::with_capacity(queries);
    while misses.len() < queries {
        let k = rng.next();
        if !seen.contains(&k) {
            misses.push((hash(k), k));
        }
    }
    World { entries, index, table, hits, misses }
}

#[inline(never)]
fn lookups_index(w: &World, qs: &[(u64, u64)]) -> u64 {
    let mut found = 0u64;
    for &(h, k) in qs {
        if let Some(node) = w.index.find(h, |node| w.entries.get(node as usize).is_some_and(|e| e.key == k)) {
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
            black_box(w.index.warm(ha));
        }
        if let Some(&(he, _)) = qs.get(i + AHEAD_ENTRY) {
            if let Some(node) = w.index.candidate(he) {
                black_box(w.entries.get(node as usize).map(|e| e.key));
            }
        }
        if let Some(node) = w.index.find(h, |node| w.entries.get(node as usize).is_some_and(|e| e.key == k)) {
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

type Lookups = fn(&World, &[(u64, u64)]) -> u64;
const IMPLS: [(&str, Lookups); 3] =
    [("index", lookups_index), ("index-warm", lookups_warm), ("hashbrown", lookups_hashbrown)];

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

fn main() {
    if let Ok(spec) = std::env::var("INDEX_WORKLOAD") {
        let parts: Vec<&str> = spec.split(':').collect();
        let [name, what, n] = parts[..] else { panic!("INDEX_WORKLOAD=<impl>:<hit|miss>:<nodes>") };
        let w = world(n.parse().unwrap(), 65536);
        let qs = if what == "hit" { &w.hits } else { &w.misses };
        evict();
        let f = IMPLS.iter().find(|(i, _)| *i == name || (name == "warm" && *i == "index-warm")).unwrap().1;
        println!("{spec}: {}", f(&w, qs));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
