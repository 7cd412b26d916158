//! iptables rulesets for statewall: parse, compile, evaluate, print.
//!
//! Contract:
//! - [`parse_ast`] reads iptables-save / iptables-restore text (iptables 1.8.9, IPv4) into a syntax
//!   tree with source positions ([`ast`]).
//! - [`parse`] also compiles it into a [`Ruleset`]: an immutable, always-valid model (every jump
//!   target exists, no loops, targets valid for their table/chain, policies only on built-in
//!   chains), independent of the iptables text. Any refusal is a [`ParseError`] with line, column,
//!   byte span, the offending token, what was expected and a hint.
//! - [`Ruleset::evaluate`] runs one packet through a built-in chain as the kernel's `ipt_do_table`
//!   does (first match, jumps/goto/RETURN, policies, counters, hotdrop) using a [`PacketCtx`]
//!   filled by the engine (the conntrack view, interfaces, marks, host model for addrtype).
//! - [`Ruleset::write_save`] prints what `iptables-legacy-save` prints for the same ruleset.
//!
//! Supported: tables raw, mangle, filter; matches tcp, udp, icmp, multiport, iprange, conntrack,
//! state, mark, connmark, comment, length, ttl, limit, addrtype, pkttype; targets ACCEPT, DROP,
//! RETURN, REJECT, LOG, NOTRACK, CT, MARK, CONNMARK, jumps and gotos. Time only enters through
//! [`PacketCtx::now`].
#![forbid(unsafe_code)]

pub mod ast;
mod compile;
mod error;
mod eval;
mod model;
mod names;
mod save;
mod spec;

pub use compile::compile;
pub use error::{ErrorKind, ParseError};
pub use eval::{
    status, CtMatch, CtState, CtView, Effect, HostModel, Outcome, PacketCtx, RuleRef, RuleState, UnicastHost,
    Verdict,
};
pub use model::*;

/// Parse iptables-save text into a syntax tree (no value checking).
pub fn parse_ast(text: &str) -> Result<ast::File, ParseError> {
    ast::parse_file(text)
}

/// Parse and compile iptables-save text into a valid [`Ruleset`].
pub fn parse(text: &str) -> Result<Ruleset, ParseError> {
    compile(&parse_ast(text)?)
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
