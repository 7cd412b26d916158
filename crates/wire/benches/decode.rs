//! Micro-benchmarks of the per-packet wire work on the engine's hot path: stripping the link layer,
//! decoding the IP datagram, and the checksums verified at PREROUTING (IPv4 header, transport).
//!
//! `cargo bench -p statewall-wire` (criterion); `cargo bench -p statewall-wire -- --test` runs each once
//! to prove they work. Instruction counts (callgrind) are the repeatable measure on a shared machine;
//! these timings are a second opinion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::PacketBuilder;

/// An Ethernet frame of `kind` with `payload_len` bytes of payload, as the benchmark workload sends them.
fn frame(kind: &str, payload_len: usize) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 0x0a]);
    let payload = vec![0x5a; payload_len];
    let mut out = Vec::new();
    match kind {
        "tcp4" => eth
            .ipv4([198, 18, 0, 1], [192, 0, 2, 10], 64)
            .tcp(40000, 33333, 1, 64240)
            .ack(7)
            .psh()
            .write(&mut out, &payload),
        "udp4" => eth.ipv4([198, 18, 0, 1], [192, 0, 2, 10], 64).udp(40000, 33333).write(&mut out, &payload),
        "icmp4" => {
            eth.ipv4([198, 18, 0, 1], [192, 0, 2, 10], 64).icmpv4_echo_request(1, 2).write(&mut out, &payload)
        }
        "tcp6" => {
            eth.ipv6([0x20; 16], [0x21; 16], 64).tcp(40000, 33333, 1, 64240).ack(7).write(&mut out, &payload)
        }
        "udp6" => eth.ipv6([0x20; 16], [0x21; 16], 64).udp(40000, 33333).write(&mut out, &payload),
        other => panic!("unknown frame kind {other}"),
    }
    .unwrap();
    out
}

fn link(c: &mut Criterion) {
    let f = frame("tcp4", 32);
    let mut g = c.benchmark_group("strip_link");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ethernet", |b| b.iter(|| black_box(wire::strip_link(1, black_box(&f)).unwrap())));
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_ip");
    g.throughput(Throughput::Elements(1));
    for kind in ["tcp4", "udp4", "icmp4", "tcp6", "udp6"] {
        let f = frame(kind, 32);
        let ip = &f[14..];
        g.bench_function(kind, |b| b.iter(|| black_box(wire::decode_ip(black_box(ip)).unwrap())));
    }
    g.finish();
}

fn checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Elements(1));
    let f = frame("tcp4", 32);
    let ip = &f[14..];
    g.bench_function("ipv4_header_ok", |b| {
        b.iter(|| black_box(wire::checksum::ipv4_header_ok(black_box(ip))))
    });
    for (kind, len) in [("tcp4", 32), ("tcp4", 1460), ("udp4", 32), ("tcp6", 32)] {
        let f = frame(kind, len);
        let p = wire::decode_ip(&f[14..]).unwrap();
        assert_eq!(wire::checksum::l4_checksum_ok(&p), Some(true));
        g.bench_function(format!("l4_checksum_ok/{kind}/{len}"), |b| {
            b.iter(|| black_box(wire::checksum::l4_checksum_ok(black_box(&p))))
        });
    }
    g.finish();
}

criterion_group!(benches, link, decode, checksum);
criterion_main!(benches);
