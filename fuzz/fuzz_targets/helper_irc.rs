//! The IRC DCC parser (`conntrack::irc::dcc_parse`) on arbitrary client payloads.
//!
//! Input: 8 bytes of client addresses (original source, reply destination), then the payload
//! (cut at the kernel's search window, the next byte passed as `beyond` as the helper does).
//! Invariants: no panic; a `Match` names one of the client's addresses and a non-zero port; a
//! `Forged` result names another address or port 0.
#![no_main]

use std::net::Ipv4Addr;

use conntrack::irc::{dcc_parse, DccParse, MAX_SEARCH_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, payload)) = data.split_first_chunk::<8>() else { return };
    let a = Ipv4Addr::new(head[0], head[1], head[2], head[3]);
    // Mostly the same address twice (no NAT), as the helper passes it.
    let b = if head[4] == 0xff { Ipv4Addr::new(head[5], head[6], head[7], head[4]) } else { a };
    let client = [a, b];
    let beyond = payload.get(MAX_SEARCH_SIZE).copied();
    match dcc_parse(payload, beyond, client) {
        DccParse::None => {}
        DccParse::Match { addr, port, .. } => {
            assert!(client.contains(&addr), "match names {addr}, not the client {client:?}");
            assert_ne!(port, 0);
        }
        DccParse::Forged { addr, port, .. } => {
            assert!(!client.contains(&addr) || port == 0, "forged {addr}:{port} is the client's");
        }
    }
});
