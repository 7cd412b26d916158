//! iptables rulesets for statewall: parse, compile, evaluate, print.
//!
//! Contract:
//! - [`parse_ast`] reads iptables-save / iptables-restore text (iptables 1.8.9, IPv4) into a syntax
//!   tree with source positions ([`ast`]); [`parse_ast_family`] / [`parse_family`] read
//!   ip6tables-save text too ([`Family::V6`]): IPv6 addresses, the libip6t_* modules, ip6tables'
//!   REJECT types, no `-f`.
//! - [`parse`] also compiles it into a [`Ruleset`]: an immutable, always-valid model (every jump
//!   target exists, no loops, targets valid for their table/chain, policies only on built-in
//!   chains), independent of the iptables text. Any refusal is a [`ParseError`] with line, column,
//!   byte span, the offending token, what was expected and a hint.
//! - [`Ruleset::evaluate`] runs one packet through a built-in chain as the kernel's `ipt_do_table`
//!   does (first match, jumps/goto/RETURN, policies, counters, hotdrop) using a [`PacketCtx`]
//!   filled by the engine (the conntrack view, interfaces, marks, host model for addrtype). Chains
//!   of [`MIN_INDEXED_RULES`] rules or more go through a classifier built at compile time (per
//!   chain, an index on prefixes, port ranges, protocol, state and devices that yields the rules
//!   that may match, each then evaluated in order by the same matcher; a candidate whose every test
//!   is in its index summary is decided from the summary alone), with exactly the results of the
//!   linear reference walk [`Ruleset::evaluate_linear`]. Shorter chains test each rule's summary
//!   before the rule; in a table with only short chains, the walk also skips to the next rule
//!   whose state and protocol tests pass through per-chain bit masks, tests devices itself, and
//!   decides a rule whose every test it has made without running the rule.
//! - [`bench_support`] generates ClassBench-style rulesets and packets for benchmarks.
//! - [`Ruleset::write_save`] prints what `iptables-legacy-save` (or `ip6tables-legacy-save`) prints
//!   for the same ruleset.
//! - With [`PacketCtx::trace`] set, the evaluator records every rule traversed as the kernel's
//!   TRACE target logs it ([`TraceEntry`], `filter:INPUT:rule:3`).
//!
//! Supported: tables raw, mangle, filter; matches tcp, udp, icmp, multiport, iprange, conntrack,
//! state, mark, connmark, comment, length, ttl, limit, addrtype, pkttype, helper (IPv6: icmp6, hl,
//! ipv6header, frag instead of icmp and ttl); targets ACCEPT, DROP,
//! RETURN, REJECT, LOG, NOTRACK, CT, MARK, CONNMARK, jumps and gotos. Time only enters through
//! [`PacketCtx::now`].
//!
//! Helpers: `CT --helper NAME` is accepted only for a helper the kernel registers for the rule's
//! family and `-p` ([`helper_names`]); `-m helper` tests the helper of the entry's master
//! ([`CtView::master_helper`]), as xt_helper does.
#![forbid(unsafe_code)]

pub mod ast;
pub mod bench_support;
mod classify;
mod compile;
mod error;
mod eval;
mod model;
mod names;
mod save;
mod spec;

pub use classify::MIN_INDEXED_RULES;
pub use compile::compile;
pub use error::{ErrorKind, ParseError};
pub use eval::{
    status, ChainName, CtMatch, CtState, CtView, Effect, HostModel, Outcome, PacketCtx, Recording, RuleId,
    RuleRef, RuleState, TraceEntry, TraceKind, UnicastHost, Verdict,
};
pub use model::*;

/// Parse iptables-save text into a syntax tree (no value checking).
pub fn parse_ast(text: &str) -> Result<ast::File, ParseError> {
    ast::parse_file(text)
}

/// Parse iptables-save (`V4`) or ip6tables-save (`V6`) text into a syntax tree.
pub fn parse_ast_family(text: &str, family: Family) -> Result<ast::File, ParseError> {
    ast::parse_file_family(text, family)
}

/// Parse and compile iptables-save text into a valid IPv4 [`Ruleset`].
pub fn parse(text: &str) -> Result<Ruleset, ParseError> {
    parse_family(text, Family::V4)
}

/// Parse and compile iptables-save (`V4`) or ip6tables-save (`V6`) text into a valid [`Ruleset`]
/// of that family.
pub fn parse_family(text: &str, family: Family) -> Result<Ruleset, ParseError> {
    compile(&parse_ast_family(text, family)?)
}

impl Ruleset {
    /// iptables-save text; `with_counters` gives the `iptables-save -c` form. No comment lines.
    pub fn write_save(
        &self,
        state: &RuleState,
        with_counters: bool,
        out: &mut dyn std::fmt::Write,
    ) -> std::fmt::Result {
        save::write_save(self, state, with_counters, out)
    }

    /// iptables-save text as a `String`.
    pub fn to_save_string(&self, state: &RuleState, with_counters: bool) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_save(state, with_counters, &mut s);
        s
    }
}
