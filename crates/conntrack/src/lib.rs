//! Kernel-exact connection tracking (Linux 6.18 `nf_conntrack`) for statewall.
//!
//! Contract: for the same packets at the same times, [`Conntrack`] gives every packet the same
//! ctinfo (NEW / ESTABLISHED / RELATED / their reply forms, or no ct = INVALID) and builds the same
//! table (tuples, states, status bits, timers) as the kernel's conntrack, as described in the
//! statewall netfilter reference (§1.4, §2-§7). Everything is driven by explicit time arguments; there
//! are no globals, threads or clocks. Packets arrive through [`Conntrack::handle_packet`] (conntrack-in
//! at PREROUTING or OUTPUT), new entries become visible with [`Conntrack::confirm`] (the confirm hook)
//! or disappear with [`Conntrack::discard`], and timers are driven by [`Conntrack::poll_timeout`] /
//! [`Conntrack::handle_timeout`].
//!
//! Modules:
//! - [`config`]: the sysctls ([`Config`]).
//! - [`tuple`]: tuples ([`Tuple`], [`TupleL4`]).
//! - [`conn`]: an entry ([`Conn`], [`Status`], [`CtInfo`], [`Dir`], [`ConnId`], [`Template`]).
//! - [`tcp`]: the TCP tracker (state table, window tracking, timeouts).
//! - [`table`]: the table, conntrack-in, confirm, expiry, early drop, UDP/ICMP/GRE/generic trackers.
//! - [`format`]: `/proc/net/nf_conntrack` and `conntrack -L` output.
//! - [`stats`]: `conntrack -S` counters.
//!
//! ICMPv6 neighbour discovery / MLD packets are UNTRACKED by the kernel's conntrack itself:
//! [`Conntrack::handle_packet`] returns [`InResult::Untracked`] for them ([`auto_untracked`] tells
//! in advance). Events (`conntrack -E`) are queued and drained with [`Conntrack::poll_event`].
//!
//! Modules (continued):
//! - [`sctp`]: the SCTP tracker. [`event`]: `conntrack -E` events.
//! - [`timers`]: expiry without a timer per entry (a coarse wheel with an exact near set; refreshing an
//!   entry's timer costs nothing until its slot comes due) and the virtual bucket chains of early drop.
//!   [`Conntrack::poll_timeout`] is exact; [`Conntrack::next_check`] is its constant-time lower bound for
//!   per-packet checks.
//!
//! Helpers and expectations: [`helper`] (FTP, TFTP; IRC DCC in [`irc`], Amanda in [`amanda`], SIP in [`sip`];
//! [`Conntrack::help`] is the helper step of the
//! confirm hook) and [`expect`] (the expectation table; expected connections get EXPECTED status,
//! their master and its mark, and RELATED ctinfo until a reply). Listings: [`write_proc_expect`],
//! [`write_conntrack_l_expect`].
//!
//! Memory: an IPv4 entry without helper, accounting, timestamp or zone is one 104-byte [`Conn`] (no
//! allocation); the hash index holds one 8-byte slot (hash tag and node) per entry at most half full,
//! under a hash that is the same from both directions ([`table`]); the timer wheel and the early-drop
//! chains take 8 bytes each per entry.
//!
//! Not modelled yet: NAT (an entry's extension can carry a reply tuple other than the inverse of the
//! original one, and such entries get one index node per direction), timeout policies, the other
//! helpers (H.323, PPTP, ... are recorded by name but parse nothing). DCCP is tracked as a generic
//! protocol, as on 6.18.
#![forbid(unsafe_code)]

pub mod amanda;
pub mod config;
pub mod conn;
pub mod event;
pub mod expect;
pub mod format;
pub mod helper;
mod index;
pub mod irc;
pub mod sctp;
pub mod sip;
pub mod stats;
pub mod table;
pub mod tcp;
pub mod timers;
pub mod tuple;

#[cfg(test)]
mod testutil;

pub use config::{Config, ConfigError};
pub use conn::{Conn, ConnId, Counter, CtInfo, Dir, Status, Template, ZoneDir};
pub use event::{Event, EventKind};
pub use expect::{ExpectMask, Expectation};
pub use format::{
    write_conntrack_l, write_conntrack_l_expect, write_conntrack_l_extended, write_event, write_proc,
    write_proc_expect, write_proc_stat, write_stats_conntrack_s,
};
pub use helper::{HelperKind, HelperVerdict};
pub use sctp::SctpState;
pub use stats::Stats;
pub use table::{auto_untracked, ConfirmOutcome, Conntrack, FastFacts, Hook, InResult};
pub use tcp::TcpState;
pub use tuple::{Tuple, TupleL4};
