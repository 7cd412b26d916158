//! Rule evaluation at 10 / 100 / 1k / 10k ClassBench-style rules: the classifier walk
//! (`Ruleset::evaluate`) against the linear reference walk (`Ruleset::evaluate_linear`), for
//! packets evaluated as NEW (first packet of a connection) and as ESTABLISHED. Each iteration
//! evaluates the same 1024 packets (half seed traffic walking the whole mix, half headers built
//! to match a random rule of the mix); throughput is in packets.
//!
//! `cargo bench -p statewall-rules --bench classify` (add `-- --quick` for a short run, or
//! `-- --test` to only check that every benchmark runs).
//!
//! For instruction and cache counts, `CLASSIFY_PROFILE=<rules>,<new|established>,<rounds>` runs
//! only that case's classifier loop a fixed number of rounds (no criterion), e.g.
//! `CLASSIFY_PROFILE=10000,new,200 valgrind --tool=callgrind --cache-sim=yes
//! --toggle-collect='*Ruleset>::evaluate' target/release/deps/classify-*`: the collected counts
//! divided by `rounds * 1024` are per packet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rules::bench_support::{bench_ct, classbench_packets, classbench_ruleset, BenchPacket};
use rules::{CtMatch, CtState, Hook, PacketCtx, PktType, Table, UnicastHost};
use wire::Time;

const PACKETS: usize = 1024;

/// The context of `pkt` (benchmark packet `bp`) arriving for INPUT with conntrack view `ct` (the caller's
/// copy, which a target may change).
fn input_ctx<'a>(pkt: &'a wire::Packet<'a>, bp: &'a BenchPacket, ct: &'a mut CtMatch) -> PacketCtx<'a> {
    PacketCtx {
        now: Time::ZERO,
        pkt,
        in_iface: Some(bp.in_iface.as_str()),
        out_iface: None,
        mark: 0,
        ct,
        pkttype: PktType::Host,
        host: &UnicastHost,
        effects: Vec::new(),
        trace: None,
    }
}

/// Evaluates `rounds` times the 1024 packets of the `n`-rule case, as the benchmark does.
fn profile(n: usize, state: CtState, rounds: usize) -> usize {
    let rs = rules::parse(&classbench_ruleset(n, 1)).expect("generated ruleset parses");
    let packets = classbench_packets(n, 1, PACKETS);
    let decoded: Vec<wire::Packet<'_>> =
        packets.iter().map(|p| wire::decode_ip(&p.datagram).expect("generated packet decodes")).collect();
    let cts: Vec<CtMatch> = decoded.iter().map(|p| bench_ct(p, state)).collect();
    let mut st = rs.new_state();
    let mut accepted = 0usize;
    for _ in 0..rounds {
        for ((pkt, ct), bp) in decoded.iter().zip(&cts).zip(&packets) {
            let mut ct = ct.clone();
            let o = rs.evaluate(Table::Filter, Hook::Input, &mut input_ctx(pkt, bp, &mut ct), &mut st);
            accepted += usize::from(o.verdict == rules::Verdict::Accept);
        }
    }
    black_box(accepted)
}

fn rule_evaluation(c: &mut Criterion) {
    if let Ok(spec) = std::env::var("CLASSIFY_PROFILE") {
        let mut it = spec.split(',');
        let n = it.next().and_then(|v| v.parse().ok()).unwrap_or(10_000);
        let state = if it.next() == Some("established") { CtState::Established } else { CtState::New };
        let rounds = it.next().and_then(|v| v.parse().ok()).unwrap_or(100);
        println!("accepted {}", profile(n, state, rounds));
        return;
    }
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(PACKETS as u64));
    for n in [10usize, 100, 1_000, 10_000] {
        let rs = rules::parse(&classbench_ruleset(n, 1)).expect("generated ruleset parses");
        let packets = classbench_packets(n, 1, PACKETS);
        let decoded: Vec<wire::Packet<'_>> =
            packets.iter().map(|p| wire::decode_ip(&p.datagram).expect("generated packet decodes")).collect();
        for (state, state_name) in [(CtState::New, "new"), (CtState::Established, "established")] {
            let cts: Vec<CtMatch> = decoded.iter().map(|p| bench_ct(p, state)).collect();
            for (mode, linear) in [("classifier", false), ("linear", true)] {
                if linear && n >= 1_000 {
                    g.sample_size(10);
                    g.measurement_time(Duration::from_secs(3));
                } else {
                    g.sample_size(30);
                    g.measurement_time(Duration::from_secs(2));
                }
                let mut st = rs.new_state();
                g.bench_with_input(BenchmarkId::new(format!("{mode}/{state_name}"), n), &n, |b, _| {
                    b.iter(|| {
                        let mut accepted = 0usize;
                        for ((pkt, ct), bp) in decoded.iter().zip(&cts).zip(&packets) {
                            let mut ct = ct.clone();
                            let mut ctx = input_ctx(pkt, bp, &mut ct);
                            let o = if linear {
                                rs.evaluate_linear(Table::Filter, Hook::Input, &mut ctx, &mut st)
                            } else {
                                rs.evaluate(Table::Filter, Hook::Input, &mut ctx, &mut st)
                            };
                            accepted += usize::from(o.verdict == rules::Verdict::Accept);
                        }
                        black_box(accepted)
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, rule_evaluation);
criterion_main!(benches);
