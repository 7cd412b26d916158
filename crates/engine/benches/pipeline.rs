//! Micro-benchmarks of the per-packet pipeline: decode, conntrack lookup (hit and miss), the TCP tracker on
//! one hot flow, and a full engine step (decode + conntrack + rules + verdict), with the seed ruleset.
//! Rule evaluation at 10 / 100 / 1k / 10k rules is in `crates/rules/benches`.
//!
//! `cargo bench -p statewall-engine` (criterion); CI runs them once in test mode
//! (`cargo bench -p statewall-engine -- --test`) only to prove they work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use synth::workload::{workload, Frames, Proto, WorkloadSpec};
use wire::Time;

const SEED_RULES: &str = include_str!("../../../examples/seed/rules.v4");

fn frames(flows: usize, k: usize, mix: Vec<Proto>) -> Frames {
    workload(&WorkloadSpec { flows, packets_per_flow: k, mix, ..WorkloadSpec::default() }).unwrap()
}

fn engine(rules: &str, max: usize) -> engine::Engine {
    let host = engine::Host::with_locals(&["192.0.2.10/24".parse().unwrap()]);
    let mut cfg = conntrack::Config::default();
    cfg.set("net.netfilter.nf_conntrack_max", &max.to_string()).unwrap();
    engine::Engine::new(rules::parse(rules).unwrap(), host, cfg)
}

fn decode(c: &mut Criterion) {
    let f = frames(1, 8, vec![Proto::Tcp]);
    let (_, frame) = f.iter().nth(3).unwrap();
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ethernet+ipv4+tcp", |b| {
        b.iter(|| {
            let l = wire::link::strip_link(1, black_box(frame)).unwrap();
            black_box(wire::decode_ip(l.ip).unwrap());
        })
    });
    g.finish();
}

/// A conntrack table holding `n` established TCP flows (the first three packets of each), and the frames.
fn loaded_table(n: usize) -> (conntrack::Conntrack, Frames) {
    let f = frames(n, 8, vec![Proto::Tcp]);
    let mut cfg = conntrack::Config::default();
    cfg.set("net.netfilter.nf_conntrack_max", &(2 * n).to_string()).unwrap();
    let mut ct = conntrack::Conntrack::new(cfg);
    for (ts, frame) in f.iter().take(3 * n) {
        let l = wire::link::strip_link(1, frame).unwrap();
        let p = wire::decode_ip(l.ip).unwrap();
        if let conntrack::InResult::Tracked { id, .. } =
            ct.handle_packet(ts, &p, conntrack::Hook::PreRouting, None)
        {
            ct.confirm(ts, id);
        }
    }
    (ct, f)
}

fn lookup(c: &mut Criterion) {
    let n = 100_000;
    let (mut ct, f) = loaded_table(n);
    // The handshake's last ACKs: lookups that hit, in flow order.
    let hits: Vec<Vec<u8>> = f.iter().skip(2 * n).take(n).map(|(_, b)| b.to_vec()).collect();
    let misses = frames(n, 1, vec![Proto::Tcp]);
    let misses: Vec<Vec<u8>> = misses
        .iter()
        .map(|(_, b)| {
            // Same shape, other flows: shift the remote port so none is in the table.
            let mut v = b.to_vec();
            v[34] ^= 0x80;
            v
        })
        .collect();
    let now = Time::from_secs(1_767_225_700);
    let mut g = c.benchmark_group("conntrack");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("lookup hit (100k flows, TCP ACK)", |b| {
        b.iter(|| {
            i = (i + 1) % hits.len();
            let l = wire::link::strip_link(1, &hits[i]).unwrap();
            let p = wire::decode_ip(l.ip).unwrap();
            black_box(ct.handle_packet(now, &p, conntrack::Hook::PreRouting, None));
        })
    });
    let mut j = 0usize;
    g.bench_function("lookup miss + new entry discarded (100k flows, SYN)", |b| {
        b.iter(|| {
            j = (j + 1) % misses.len();
            let l = wire::link::strip_link(1, &misses[j]).unwrap();
            let p = wire::decode_ip(l.ip).unwrap();
            if let conntrack::InResult::Tracked { id, .. } =
                ct.handle_packet(now, &p, conntrack::Hook::PreRouting, None)
            {
                ct.discard(id);
            }
        })
    });
    g.finish();
}

fn tcp_step(c: &mut Criterion) {
    let (mut ct, f) = loaded_table(1);
    let (ts, ack) = f.iter().nth(2).unwrap();
    let l = wire::link::strip_link(1, ack).unwrap();
    let p = wire::decode_ip(l.ip).unwrap();
    let mut g = c.benchmark_group("conntrack");
    g.throughput(Throughput::Elements(1));
    g.bench_function("TCP tracker step (one hot flow, duplicate ACK)", |b| {
        b.iter(|| black_box(ct.handle_packet(ts, black_box(&p), conntrack::Hook::PreRouting, None)))
    });
    g.finish();
}

fn engine_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    for (name, rules, fast) in [
        ("no rules", "", true),
        ("seed rules", SEED_RULES, true),
        ("seed rules, no fast path", SEED_RULES, false),
    ] {
        // One hot established flow: a duplicate ACK, again and again (decision written in place).
        let mut e = engine(rules, 1 << 20);
        e.set_fast_path(fast);
        let f = frames(1, 8, vec![Proto::Tcp]);
        let mut last = Time::ZERO;
        for (ts, frame) in f.iter().take(3) {
            e.handle_packet(ts, 1, frame);
            last = ts;
        }
        let (_, ack) = f.iter().nth(2).unwrap();
        let ack = ack.to_vec();
        let mut d = engine::Decision::default();
        let len = ack.len() as u32;
        g.bench_function(format!("hot flow, {name}"), |b| {
            b.iter(|| {
                e.handle_packet_into(last, 1, black_box(&ack), len, &mut d);
                black_box(&d);
            })
        });
        // 100k flows, 8 packets each, all live: the workload of `statewall bench`, replayed from the start
        // on a fresh engine per batch.
        let f = frames(100_000, 8, vec![Proto::Tcp, Proto::Udp]);
        g.bench_function(format!("100k flows x 8 packets, {name} (per 800k-packet batch)"), |b| {
            b.iter_batched(
                || {
                    let mut e = engine(rules, 1 << 20);
                    e.set_fast_path(fast);
                    e
                },
                |mut e| {
                    let mut d = engine::Decision::default();
                    for (ts, frame) in f.iter() {
                        e.handle_packet_into(ts, 1, frame, frame.len() as u32, &mut d);
                        black_box(&d);
                    }
                    e
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = decode, lookup, tcp_step, engine_step
}
criterion_main!(benches);
