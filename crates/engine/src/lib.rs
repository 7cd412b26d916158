//! The hook pipeline: one packet in, one [`Decision`] out, exactly along the kernel's hook order.
//!
//! Contract (sans-IO): [`Engine::handle_packet`] takes the packet's time and bytes; nothing here reads a clock,
//! a file or a socket. Time never runs backwards inside the engine: a packet stamped earlier than the previous
//! one is processed at the previous time (captures lie; the kernel's jiffies don't).
//! [`Engine::poll_timeout`] says when the next conntrack entry expires and [`Engine::handle_timeout`] expires
//! it; `handle_packet` also expires what is due, so a replay driver need not call them.
//! [`Engine::handle_tick`] moves the clock for a packet another engine handles (sharding: every shard sees
//! every timestamp, so expiry runs as in one engine).
//!
//! Order per path (Linux `nf_hook` priorities, see netfilter-reference §1.1):
//! - to a local address: PREROUTING [defrag, raw, conntrack-in, mangle] → routing → INPUT [mangle, filter,
//!   confirm];
//! - forwarded: PREROUTING [...] → FORWARD [mangle, filter] → POSTROUTING [mangle, confirm];
//! - from a local address: OUTPUT [defrag, raw, conntrack-local, mangle, filter] → POSTROUTING [mangle,
//!   confirm];
//! - loopback (both ends local): the OUTPUT path, then PREROUTING/INPUT on `lo` where conntrack finds the
//!   entry already attached and does nothing (reference §1.1 "Loopback").
//!
//! ESTABLISHED packets whose flow already took a flow-invariant walk skip the rule walk after conntrack and
//! grow the same counters (see `fastpath.rs`); [`Engine::set_fast_path`] turns that off, with identical results.
#![forbid(unsafe_code)]

mod decision;
mod engine;
mod fastpath;
pub mod host;

pub use decision::{
    CtStateLabel, Decision, Disposition, FlowSummary, IfaceName, PacketPath, RejectReply, Verdict,
};
pub use engine::{Engine, EngineStats, WarmBatch, WARM_MAX};
pub use host::{Host, HostError};
