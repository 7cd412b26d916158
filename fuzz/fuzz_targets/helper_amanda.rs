//! The Amanda parser (`conntrack::amanda::amanda_parse`) on arbitrary reply payloads.
//!
//! Invariants: no panic; at most one port per channel, in the order DATA, MESG, INDEX; no port 0;
//! nothing without a `CONNECT ` line ended by a newline.
#![no_main]

use conntrack::amanda::{amanda_parse, AmandaChannel};
use libfuzzer_sys::fuzz_target;

fn rank(c: AmandaChannel) -> u8 {
    match c {
        AmandaChannel::Data => 0,
        AmandaChannel::Mesg => 1,
        AmandaChannel::Index => 2,
    }
}

fuzz_target!(|data: &[u8]| {
    let ports: Vec<(AmandaChannel, u16)> = amanda_parse(data).collect();
    assert!(ports.len() <= 3);
    assert!(ports.windows(2).all(|w| rank(w[0].0) < rank(w[1].0)), "{ports:?}");
    assert!(ports.iter().all(|&(_, p)| p != 0));
    if !ports.is_empty() {
        let at = data.windows(8).position(|w| w == b"CONNECT ").expect("ports without CONNECT");
        assert!(data[at + 8..].contains(&b'\n'), "ports without a newline after CONNECT");
    }
});
