//! Arbitrary frames and clocks through a full engine never panic, and every packet is decided exactly once.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use engine::{Disposition, Engine, Host};
use proptest::prelude::*;
use wire::Time;

const RULES: &str = include_str!("../../../examples/seed/rules-notrack.v4");

fn ip_like() -> impl Strategy<Value = Vec<u8>> {
    // Mostly well-formed IPv4 headers with random tails, so the fuzzing reaches L4 and conntrack.
    (any::<u8>(), prop::collection::vec(any::<u8>(), 0..80), prop::sample::select(vec![1u8, 6, 17, 47, 50]))
        .prop_map(|(flags, tail, proto)| {
            let total = (20 + tail.len()) as u16;
            let mut v =
                vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, flags & 0x60, 0, 64, proto, 0, 0];
            let (ours, peer) = ([192, 0, 2, 10], [198, 51, 100, if flags & 1 == 0 { 7 } else { 8 }]);
            if flags & 2 == 0 {
                v.extend_from_slice(&ours);
                v.extend_from_slice(&peer);
            } else {
                v.extend_from_slice(&peer);
                v.extend_from_slice(&ours);
            }
            if flags & 4 == 0 {
                // A valid header checksum most of the time, so packets get past IP input.
                let c = wire::checksum::internet_checksum(&v[..20]);
                v[10..12].copy_from_slice(&c.to_be_bytes());
            }
            v.extend_from_slice(&tail);
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn engine_never_panics(
        frames in prop::collection::vec(
            (prop_oneof![ip_like(), prop::collection::vec(any::<u8>(), 0..100)], 0u64..5_000_000_000, any::<bool>()),
            1..60,
        )
    ) {
        let rs = rules::parse(RULES).unwrap();
        let host = Host::with_locals(&["192.0.2.10/24".parse().unwrap()]);
        let mut e = Engine::new(rs, host, conntrack::Config::default());
        let mut now = Time::from_secs(1_000);
        let mut filtered = 0u64;
        for (bytes, step, back) in &frames {
            // Time jumps forward and sometimes backwards.
            now = if *back { Time(now.0.saturating_sub(*step)) } else { now.add_nanos(*step) };
            let d = e.handle_ip(now, bytes, wire::link::PktType::Unknown);
            if d.disposition == Disposition::Filtered {
                filtered += 1;
                prop_assert!(d.verdict.is_some() && d.ctstate.is_some());
            }
            if let Some(t) = e.poll_timeout() {
                prop_assert!(t >= Time::from_secs(1_000));
            }
        }
        prop_assert_eq!(e.stats().packets, frames.len() as u64);
        // Packets reaching the INPUT policy are a subset of the filtered ones.
        let policy = e.rule_state().policy_counters(rules::Table::Filter, "INPUT").map(|c| c.0).unwrap_or(0);
        prop_assert!(policy <= filtered);
    }
}
