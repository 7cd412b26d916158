//! From the syntax tree to a valid [`Ruleset`].
//!
//! Contract: [`compile`] accepts what iptables-restore 1.8.9 plus the 6.18 kernel's checkentry
//! functions accept (for the supported tables, matches and targets) and refuses the rest with a
//! [`ParseError`] pointing at the offending token. Values are stored the way the kernel stores them
//! (e.g. `-s` addresses masked, MARK operations folded into value/mask), so printing them back gives
//! iptables-save's canonical text. The file's [`Family`] decides the address syntax (IPv4 for
//! iptables, IPv6 for ip6tables), the modules available and their checkentry rules.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::ast::{self, BaseKind, Item, OptionAst, Span, Token};
use crate::error::{ErrorKind, ParseError};
use crate::model::*;
use crate::names;

/// xt_limit's constants for a HZ=250 kernel: credits per jiffy = 128, HZ * CPJ = 32000.
pub(crate) const HZ: u64 = 250;
pub(crate) const CREDITS_PER_JIFFY: u32 = 128;
const XT_LIMIT_SCALE: u32 = 10_000;

/// xt_limit `user2credits`, with the kernel's u32 wrap-around.
pub(crate) fn user2credits(user: u32) -> u32 {
    let hz_cpj = (HZ as u32).wrapping_mul(CREDITS_PER_JIFFY);
    if user > u32::MAX / hz_cpj {
        (user / XT_LIMIT_SCALE).wrapping_mul(hz_cpj)
    } else {
        user.wrapping_mul(hz_cpj) / XT_LIMIT_SCALE
    }
}

fn err(kind: ErrorKind, tok: &Token, msg: impl Into<String>) -> ParseError {
    ParseError::new(kind, &tok.span, &tok.text, msg.into())
}

fn bad(tok: &Token, what: &str, expected: &str) -> ParseError {
    err(ErrorKind::BadValue, tok, format!("invalid {what} `{}`", tok.text))
        .with_expected(expected.to_string())
}

/// A rule before jump targets are resolved to indices.
struct PendingRule {
    rule: Rule,
    jump: Option<(String, bool, Token)>,
    line: Span,
}

struct PendingChain {
    name: String,
    builtin: Option<(Hook, Policy)>,
    counters: (u64, u64),
    rules: Vec<PendingRule>,
}

/// Compile a syntax tree (of the family it was parsed as).
pub fn compile(file: &ast::File) -> Result<Ruleset, ParseError> {
    let family = file.family;
    let mut tables: Vec<TableRules> = Vec::new();
    let mut rule_slots = 0usize;
    let mut policy_slots = 0usize;
    let mut limit_slots: Vec<(u32, u32)> = Vec::new();
    for block in &file.tables {
        let table = match block.name.text.as_str() {
            "raw" => Table::Raw,
            "mangle" => Table::Mangle,
            "filter" => Table::Filter,
            "nat" | "security" => {
                return Err(err(
                    ErrorKind::UnsupportedTable,
                    &block.name,
                    format!("table {} is not supported yet", block.name.text),
                )
                .with_expected("raw, mangle or filter")
                .with_hint("remove this table block (statewall models raw, mangle and filter)"))
            }
            _ => {
                return Err(err(
                    ErrorKind::UnknownTable,
                    &block.name,
                    format!("unknown table `{}`", block.name.text),
                )
                .with_expected("raw, mangle or filter"))
            }
        };
        if tables.iter().any(|t| t.table == table) {
            return Err(err(ErrorKind::DuplicateTable, &block.name, format!("table {table} appears twice"))
                .with_hint("merge the two blocks into one"));
        }
        let mut chains: Vec<PendingChain> = table
            .hooks()
            .iter()
            .map(|h| PendingChain {
                name: h.chain_name().to_string(),
                builtin: Some((*h, Policy::Accept)),
                counters: (0, 0),
                rules: Vec::new(),
            })
            .collect();
        let mut declared: Vec<String> = Vec::new();
        for item in &block.items {
            match item {
                Item::Chain(decl) => declare_chain(table, decl, &mut chains, &mut declared)?,
                Item::Rule(line) => {
                    let Some(ci) = chains.iter().position(|c| c.name == line.chain.text) else {
                        return Err(err(
                            ErrorKind::UnknownChain,
                            &line.chain,
                            format!(
                                "rule for chain `{}`, which is not declared in table {table}",
                                line.chain.text
                            ),
                        )
                        .with_hint(format!("declare it first with `:{} - [0:0]`", line.chain.text)));
                    };
                    let hook = chains.get(ci).and_then(|c| c.builtin.map(|(h, _)| h));
                    let user_chains: Vec<&str> =
                        chains.iter().filter(|c| c.builtin.is_none()).map(|c| c.name.as_str()).collect();
                    let pending = compile_rule(family, table, hook, line, &user_chains)?;
                    if let Some(c) = chains.get_mut(ci) {
                        c.rules.push(pending);
                    }
                }
            }
        }
        // iptables-save order: built-ins in hook order, then user chains sorted by name.
        let (mut built, mut user): (Vec<PendingChain>, Vec<PendingChain>) =
            chains.into_iter().partition(|c| c.builtin.is_some());
        user.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        built.append(&mut user);
        let index: HashMap<String, usize> =
            built.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
        let mut out_chains: Vec<Chain> = Vec::with_capacity(built.len());
        let mut edges: Vec<Vec<(usize, Span, Token)>> = Vec::with_capacity(built.len());
        for pc in built {
            let mut rules = Vec::with_capacity(pc.rules.len());
            let mut e = Vec::new();
            for mut pr in pc.rules {
                if let Some((name, goto, tok)) = pr.jump.take() {
                    let Some(&ti) = index.get(&name) else {
                        return Err(err(ErrorKind::BadJump, &tok, format!("chain `{name}` does not exist")));
                    };
                    pr.rule.target = if goto { Target::Goto(ti) } else { Target::Jump(ti) };
                    e.push((ti, pr.line, tok));
                }
                for m in &mut pr.rule.matches {
                    if let Match::Limit(l) = m {
                        l.slot = limit_slots.len();
                        limit_slots.push((l.credit_cap, l.credit_cap));
                    }
                }
                pr.rule.slot = rule_slots;
                rule_slots = rule_slots.saturating_add(1);
                rules.push(pr.rule);
            }
            edges.push(e);
            out_chains.push(Chain {
                name: Arc::from(pc.name.as_str()),
                builtin: pc.builtin,
                rules,
                policy_counters: pc.counters,
                policy_slot: if pc.builtin.is_some() {
                    policy_slots = policy_slots.saturating_add(1);
                    policy_slots.saturating_sub(1)
                } else {
                    usize::MAX
                },
            });
        }
        check_loops(&edges, &out_chains)?;
        let hooks = hook_masks(&edges, &out_chains);
        check_hook_contexts(&out_chains, &hooks, block)?;
        tables.push(TableRules::new(table, out_chains));
    }
    let index: Vec<_> = tables.iter().map(|t| crate::classify::TableIndex::build(t, family)).collect();
    let chain_mask = tables
        .iter()
        .flat_map(|t| {
            Hook::ALL
                .into_iter()
                .filter(|&h| t.hook_chain(h).is_some())
                .map(|h| Ruleset::chain_bit(t.table, h))
        })
        .fold(0, |m, b| m | b);
    let mut short = [None; 15];
    for (ti, (t, ix)) in tables.iter().zip(&index).enumerate() {
        let ix: &crate::classify::TableIndex = ix;
        if !ix.keyed || ix.any {
            continue;
        }
        for h in Hook::ALL {
            let at = short.get_mut(t.table as usize * 5 + h as usize);
            if let (Some(at), Some((base, _))) = (at, t.hook_chain(h)) {
                *at = u32::try_from(ti).ok().zip(u32::try_from(base).ok());
            }
        }
    }
    let mut key_prefix = [0; 15];
    for t in &tables {
        for h in Hook::ALL {
            let at = key_prefix.get_mut(t.table as usize * 5 + h as usize);
            if let (Some(at), Some((_, c))) = (at, t.hook_chain(h)) {
                let n = c.rules.iter().take_while(|r| crate::eval::key_only(r)).count();
                *at = u32::try_from(n).unwrap_or(u32::MAX);
            }
        }
    }
    let details = tables.iter().flat_map(|t| &t.chains).flat_map(|c| &c.rules).flat_map(|r| &r.matches).any(
        |m| match m {
            Match::Conntrack(c) => c.reads_details(),
            Match::Helper(_) => true,
            _ => false,
        },
    );
    Ok(Ruleset {
        family,
        tables,
        rule_slots,
        policy_slots,
        limit_slots,
        index,
        chain_mask,
        short,
        key_prefix,
        details,
    })
}

fn declare_chain(
    table: Table,
    decl: &ast::ChainDecl,
    chains: &mut Vec<PendingChain>,
    declared: &mut Vec<String>,
) -> Result<(), ParseError> {
    let name = &decl.name.text;
    if declared.contains(name) {
        return Err(err(ErrorKind::DuplicateChain, &decl.name, format!("chain `{name}` declared twice")));
    }
    declared.push(name.clone());
    let counters = decl.counters.map(|c| (c.packets, c.bytes)).unwrap_or((0, 0));
    if let Some(c) = chains.iter_mut().find(|c| &c.name == name && c.builtin.is_some()) {
        let policy = match decl.policy.text.as_str() {
            "ACCEPT" => Policy::Accept,
            "DROP" => Policy::Drop,
            "-" => Policy::Accept,
            _ => {
                return Err(err(
                    ErrorKind::BadPolicy,
                    &decl.policy,
                    format!("invalid policy `{}` for built-in chain {name}", decl.policy.text),
                )
                .with_expected("ACCEPT or DROP"))
            }
        };
        c.builtin = c.builtin.map(|(h, _)| (h, policy));
        c.counters = counters;
        return Ok(());
    }
    if decl.policy.text != "-" {
        return Err(err(
            ErrorKind::BadPolicy,
            &decl.policy,
            format!(
                "policy `{}` on user chain `{name}`: only built-in chains have a policy",
                decl.policy.text
            ),
        )
        .with_expected("`-`")
        .with_hint(format!(
            "write `:{name} - [0:0]`; built-in chains of table {table} are {}",
            table.hooks().iter().map(|h| h.chain_name()).collect::<Vec<_>>().join(", ")
        )));
    }
    if name.len() > 28 {
        return Err(err(
            ErrorKind::BadChainName,
            &decl.name,
            format!("chain name `{name}` too long (must be under 29 chars)"),
        ));
    }
    if name.starts_with('-')
        || name.starts_with('!')
        || crate::spec::STANDARD_TARGETS.contains(&name.as_str())
        || crate::spec::target_spec(name).is_some()
    {
        return Err(err(ErrorKind::BadChainName, &decl.name, format!("invalid chain name `{name}`"))
            .with_hint("chain names may not start with `-`/`!` or be a target name"));
    }
    chains.push(PendingChain { name: name.clone(), builtin: None, counters: (0, 0), rules: Vec::new() });
    Ok(())
}

fn check_loops(edges: &[Vec<(usize, Span, Token)>], chains: &[Chain]) -> Result<(), ParseError> {
    // Iterative three-colour DFS over the jump graph.
    let n = chains.len();
    let mut colour = vec![0u8; n];
    for start in 0..n {
        if colour.get(start) != Some(&0) {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        if let Some(c) = colour.get_mut(start) {
            *c = 1;
        }
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let out = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if let Some((to, _, tok)) = out.get(*next) {
                *next = next.saturating_add(1);
                match colour.get(*to).copied() {
                    Some(1) => {
                        let from = chains.get(node).map(|c| c.name.to_string()).unwrap_or_default();
                        return Err(err(
                            ErrorKind::Loop,
                            tok,
                            format!("jump from chain `{from}` to `{}` closes a loop", tok.text),
                        )
                        .with_hint(
                            "iptables refuses rulesets whose chains jump into each other in a cycle",
                        ));
                    }
                    Some(0) => {
                        if let Some(c) = colour.get_mut(*to) {
                            *c = 1;
                        }
                        stack.push((*to, 0));
                    }
                    _ => {}
                }
            } else {
                if let Some(c) = colour.get_mut(node) {
                    *c = 2;
                }
                stack.pop();
            }
        }
    }
    Ok(())
}

/// For each chain, the set of hooks (bits) from which it is reachable.
fn hook_masks(edges: &[Vec<(usize, Span, Token)>], chains: &[Chain]) -> Vec<u8> {
    let mut mask = vec![0u8; chains.len()];
    for (i, c) in chains.iter().enumerate() {
        let Some((hook, _)) = c.builtin else { continue };
        let mut stack = vec![i];
        let mut seen = vec![false; chains.len()];
        while let Some(x) = stack.pop() {
            if seen.get(x).copied().unwrap_or(true) {
                continue;
            }
            if let Some(s) = seen.get_mut(x) {
                *s = true;
            }
            if let Some(m) = mask.get_mut(x) {
                *m |= hook.bit();
            }
            for (to, _, _) in edges.get(x).map(Vec::as_slice).unwrap_or(&[]) {
                stack.push(*to);
            }
        }
    }
    mask
}

/// Checks that depend on the hooks a rule can run in (xt_addrtype's interface limits).
fn check_hook_contexts(chains: &[Chain], hooks: &[u8], block: &ast::TableBlock) -> Result<(), ParseError> {
    for (ci, c) in chains.iter().enumerate() {
        let mask = hooks.get(ci).copied().unwrap_or(0);
        for (ri, r) in c.rules.iter().enumerate() {
            for m in &r.matches {
                let Match::AddrType(a) = m else { continue };
                let bad_in = a.limit_iface_in && mask & (Hook::PostRouting.bit() | Hook::Output.bit()) != 0;
                let bad_out = a.limit_iface_out && mask & (Hook::PreRouting.bit() | Hook::Input.bit()) != 0;
                if bad_in || bad_out {
                    let line = rule_line(block, &c.name, ri);
                    let tok = Token { text: String::new(), span: line };
                    return Err(err(
                        ErrorKind::InvalidContext,
                        &tok,
                        format!(
                            "addrtype: --limit-iface-{} cannot be used in a chain reached from {}",
                            if bad_in { "in" } else { "out" },
                            if bad_in { "OUTPUT/POSTROUTING" } else { "PREROUTING/INPUT" }
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn rule_line(block: &ast::TableBlock, chain: &str, idx: usize) -> Span {
    block
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Rule(r) if r.chain.text == chain => Some(r.span),
            _ => None,
        })
        .nth(idx)
        .unwrap_or_default()
}

fn compile_rule(
    family: Family,
    table: Table,
    hook: Option<Hook>,
    line: &ast::RuleLine,
    user_chains: &[&str],
) -> Result<PendingRule, ParseError> {
    let mut ip = IpSpec::default();
    for b in &line.base {
        let arg = b.arg.as_ref();
        match b.kind {
            BaseKind::Source | BaseKind::Destination => {
                let Some(a) = arg else { continue };
                let v = Neg { value: parse_addr_mask(a, true, family)?, negated: b.negated };
                if b.kind == BaseKind::Source {
                    ip.src = Some(v);
                } else {
                    ip.dst = Some(v);
                }
            }
            BaseKind::Protocol => {
                let Some(a) = arg else { continue };
                let lower = a.text.to_ascii_lowercase();
                let p = names::parse_proto(&lower).ok_or_else(|| {
                    err(ErrorKind::BadValue, a, format!("unknown protocol `{}` specified", a.text))
                        .with_expected("a protocol name (tcp, udp, icmp, all, ...) or number 0-255")
                })?;
                if p == 0 {
                    if b.negated {
                        return Err(err(
                            ErrorKind::BadValue,
                            a,
                            "rule would never match protocol (`! -p all`)",
                        ));
                    }
                    if family == Family::V6 {
                        // ip6tables sets IP6T_F_PROTO even for `-p all`.
                        ip.proto = Some(Neg { value: 0, negated: false });
                    }
                } else {
                    ip.proto = Some(Neg { value: p, negated: b.negated });
                }
            }
            BaseKind::InInterface | BaseKind::OutInterface => {
                let Some(a) = arg else { continue };
                let input = b.kind == BaseKind::InInterface;
                if let Some(h) = hook {
                    let refused = if input {
                        matches!(h, Hook::Output | Hook::PostRouting)
                    } else {
                        matches!(h, Hook::PreRouting | Hook::Input)
                    };
                    if refused {
                        return Err(err(
                            ErrorKind::InvalidContext,
                            &b.opt,
                            format!("can't use {} with {}", if input { "-i" } else { "-o" }, h.chain_name()),
                        )
                        .with_hint(if input {
                            "OUTPUT and POSTROUTING have no input interface"
                        } else {
                            "PREROUTING and INPUT have no output interface"
                        }));
                    }
                }
                if a.text.len() > 15 {
                    return Err(err(
                        ErrorKind::BadValue,
                        a,
                        format!("interface name `{}` must be shorter than IFNAMSIZ (15)", a.text),
                    ));
                }
                if a.text.is_empty() {
                    return Err(bad(a, "interface name", "a name like eth0 or eth+"));
                }
                let (name, wildcard) = match a.text.strip_suffix('+') {
                    Some(n) => (n.to_string(), true),
                    None => (a.text.clone(), false),
                };
                let v = Some(Neg { value: Iface { name, wildcard }, negated: b.negated });
                if input {
                    ip.in_iface = v;
                } else {
                    ip.out_iface = v;
                }
            }
            BaseKind::Fragment => ip.fragment = Some(b.negated),
        }
    }
    let mut matches = Vec::with_capacity(line.matches.len());
    for m in &line.matches {
        matches.push(compile_match(m, &ip, family)?);
    }
    let (target, jump) = match &line.target {
        None => (Target::None, None),
        Some(t) => compile_target(family, table, &ip, t, user_chains)?,
    };
    Ok(PendingRule {
        rule: Rule {
            ip,
            matches,
            target,
            counters: line.counters.map(|c| (c.packets, c.bytes)).unwrap_or((0, 0)),
            slot: 0,
        },
        jump,
        line: line.span,
    })
}

/// An address of `family` with an optional mask. `mask_addr`: store the address masked (as
/// -s/-d do).
fn parse_addr_mask(tok: &Token, mask_addr: bool, family: Family) -> Result<AddrMask, ParseError> {
    match family {
        Family::V4 => parse_addr_mask4(tok, mask_addr),
        Family::V6 => parse_addr_mask6(tok, mask_addr),
    }
}

/// `ADDR[/len|/mask]` as `xtables_ip6parse_any` reads it: a numeric IPv6 address (host names are not
/// resolved), a prefix length 0-128 or an IPv6 mask.
fn parse_addr_mask6(tok: &Token, mask_addr: bool) -> Result<AddrMask, ParseError> {
    let text = tok.text.as_str();
    if text.contains(',') {
        return Err(err(ErrorKind::BadValue, tok, format!("multiple addresses `{text}` are not supported"))
            .with_hint("write one rule per address"));
    }
    let (a, m) = match text.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (text, None),
    };
    let addr = names::parse_ipv6(a).ok_or_else(|| {
        let e = bad(
            tok,
            "IPv6 address",
            "a numeric IPv6 address like 2001:db8::/32 (host names are not resolved)",
        );
        if names::parse_ipv4(a).is_some() && a.contains('.') {
            e.with_hint("this is an ip6tables ruleset: IPv4 addresses belong in the iptables (IPv4) ruleset")
        } else if a.contains('%') {
            e.with_hint("ip6tables does not accept a zone index (`%eth0`)")
        } else {
            e
        }
    })?;
    let mask = match m {
        None => u128::MAX,
        Some(m) => {
            names::parse_mask6(m).ok_or_else(|| bad(tok, "address mask", "/0-/128 or an IPv6 mask"))?
        }
    };
    let addr = if mask_addr { Ipv6Addr::from(u128::from(addr) & mask) } else { addr };
    Ok(AddrMask::v6(addr, mask))
}

/// `a.b.c.d[/len|/mask]`. `mask_addr`: store the address masked (as -s/-d do).
fn parse_addr_mask4(tok: &Token, mask_addr: bool) -> Result<AddrMask, ParseError> {
    let text = tok.text.as_str();
    if text.contains(',') {
        return Err(err(ErrorKind::BadValue, tok, format!("multiple addresses `{text}` are not supported"))
            .with_hint("write one rule per address"));
    }
    let (a, m) = match text.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (text, None),
    };
    let addr = names::parse_ipv4(a).ok_or_else(|| {
        let e =
            bad(tok, "IPv4 address", "a numeric IPv4 address like 10.0.0.0/8 (host names are not resolved)");
        if names::parse_ipv6(a).is_some() {
            e.with_hint("this is an iptables ruleset: IPv6 addresses belong in the ip6tables (IPv6) ruleset")
        } else {
            e
        }
    })?;
    let mask = match m {
        None => u32::MAX,
        Some(m) => names::parse_mask(m).ok_or_else(|| bad(tok, "address mask", "/0-/32 or a dotted mask"))?,
    };
    let addr = if mask_addr { Ipv4Addr::from(u32::from(addr) & mask) } else { addr };
    Ok(AddrMask::v4(addr, mask))
}

fn only_once(opts: &[OptionAst]) -> Result<(), ParseError> {
    for (i, o) in opts.iter().enumerate() {
        if opts.iter().take(i).any(|p| p.name == o.name) {
            return Err(err(
                ErrorKind::ConflictingOptions,
                &o.opt,
                format!("option `--{}` given more than once", o.name),
            ));
        }
    }
    Ok(())
}

fn arg(o: &OptionAst) -> Result<&Token, ParseError> {
    o.args.first().ok_or_else(|| {
        err(ErrorKind::MissingArgument, &o.opt, format!("option `--{}` requires an argument", o.name))
    })
}

fn port_range(tok: &Token, proto: &str) -> Result<Range<u16>, ParseError> {
    let port = |s: &str, default: u16| -> Result<u16, ParseError> {
        if s.is_empty() {
            return Ok(default);
        }
        names::parse_port(s, proto).ok_or_else(|| {
            err(ErrorKind::BadValue, tok, format!("invalid port/service `{s}` specified"))
                .with_expected("a port 0-65535, a service name, or a range a:b")
        })
    };
    let r = match tok.text.split_once(':') {
        None => {
            let p = port(&tok.text, 0)?;
            if tok.text.is_empty() {
                return Err(bad(tok, "port", "a port 0-65535"));
            }
            Range { min: p, max: p }
        }
        Some((a, b)) => Range { min: port(a, 0)?, max: port(b, u16::MAX)? },
    };
    Ok(r)
}

fn number_range<T: TryFrom<u64> + Copy>(tok: &Token, max: u64, what: &str) -> Result<Range<T>, ParseError> {
    let num = |s: &str, default: u64| -> Result<T, ParseError> {
        let v = if s.is_empty() { Some(default) } else { names::parse_uint(s, max) };
        v.and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| bad(tok, what, &format!("a number 0-{max} or a range a:b")))
    };
    match tok.text.split_once(':') {
        None if tok.text.is_empty() => Err(bad(tok, what, "a number")),
        None => {
            let v = num(&tok.text, 0)?;
            Ok(Range { min: v, max: v })
        }
        Some((a, b)) => Ok(Range { min: num(a, 0)?, max: num(b, max)? }),
    }
}

fn u32_value(tok: &Token, s: &str, what: &str) -> Result<u32, ParseError> {
    names::parse_uint(s, u64::from(u32::MAX))
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| bad(tok, what, "a 32-bit number (decimal or 0x hex)"))
}

/// `value[/mask]`, mask defaulting to all ones.
fn mark_mask(tok: &Token) -> Result<(u32, u32), ParseError> {
    match tok.text.split_once('/') {
        Some((v, m)) => Ok((u32_value(tok, v, "mark")?, u32_value(tok, m, "mask")?)),
        None => Ok((u32_value(tok, &tok.text, "mark")?, u32::MAX)),
    }
}

fn name_list<T: Copy + std::ops::BitOr<Output = T>>(
    tok: &Token,
    table: &[(&str, T)],
    what: &str,
    zero: T,
) -> Result<T, ParseError> {
    let mut acc = zero;
    for part in tok.text.split(',') {
        let Some((_, v)) = table.iter().find(|(n, _)| n.eq_ignore_ascii_case(part)) else {
            return Err(err(ErrorKind::BadValue, tok, format!("bad {what} `{part}`"))
                .with_expected(table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")));
        };
        acc = acc | *v;
    }
    Ok(acc)
}

fn require_proto(m: &Token, ip: &IpSpec, allowed: &[u8], what: &str) -> Result<(), ParseError> {
    match ip.proto {
        Some(Neg { value, negated: false }) if allowed.contains(&value) => Ok(()),
        _ => Err(err(ErrorKind::InvalidContext, m, format!("the {} match needs {what}", m.text))
            .with_hint(format!("add `{what}` before `-m {}` (the kernel refuses it otherwise)", m.text))),
    }
}

fn compile_match(m: &ast::MatchAst, ip: &IpSpec, family: Family) -> Result<Match, ParseError> {
    let opts = &m.options;
    only_once(opts)?;
    let name = m.name.text.as_str();
    let missing = |what: &str| {
        err(ErrorKind::MissingOption, &m.name, format!("{name}: option {what} must be specified"))
    };
    Ok(match name {
        "tcp" | "udp" => {
            require_proto(&m.name, ip, &[if name == "tcp" { 6 } else { 17 }], &format!("-p {name}"))?;
            let full = Neg { value: Range { min: 0, max: u16::MAX }, negated: false };
            let (mut sport, mut dport, mut flags, mut option) = (full, full, None, None);
            for o in opts {
                match o.name {
                    "sport" => sport = Neg { value: port_range(arg(o)?, name)?, negated: o.negated },
                    "dport" => dport = Neg { value: port_range(arg(o)?, name)?, negated: o.negated },
                    "syn" | "tcp-flags" => {
                        if flags.is_some() {
                            return Err(err(
                                ErrorKind::ConflictingOptions,
                                &o.opt,
                                "only one of `--syn` or `--tcp-flags` allowed",
                            ));
                        }
                        let v = if o.name == "syn" {
                            (0x17, 0x02)
                        } else {
                            let mask = tcp_flags(arg(o)?)?;
                            let comp = tcp_flags(o.args.get(1).unwrap_or(arg(o)?))?;
                            (mask, comp)
                        };
                        flags = Some(Neg { value: v, negated: o.negated });
                    }
                    "tcp-option" => {
                        let t = arg(o)?;
                        let v = names::parse_uint(&t.text, 255)
                            .filter(|v| *v >= 1)
                            .and_then(|v| u8::try_from(v).ok())
                            .ok_or_else(|| bad(t, "TCP option", "a number 1-255"))?;
                        option = Some(Neg { value: v, negated: o.negated });
                    }
                    _ => {}
                }
            }
            for (r, o) in [(&sport, "sport"), (&dport, "dport")] {
                if r.value.min > r.value.max {
                    let t = opts.iter().find(|x| x.name == o).and_then(|x| x.args.first()).unwrap_or(&m.name);
                    return Err(err(ErrorKind::BadValue, t, "invalid portrange (min > max)"));
                }
            }
            if name == "tcp" {
                Match::Tcp(TcpMatch { sport, dport, flags, option })
            } else {
                Match::Udp(UdpMatch { sport, dport })
            }
        }
        "icmp" => {
            require_proto(&m.name, ip, &[1], "-p icmp")?;
            let o = opts.first().ok_or_else(|| missing("--icmp-type"))?;
            let t = arg(o)?;
            let (ty, cmin, cmax) = names::parse_icmp_type(&t.text).map_err(|e| {
                err(ErrorKind::BadValue, t, e)
                    .with_expected("a type number, TYPE/CODE or a name like echo-request")
            })?;
            Match::Icmp(IcmpMatch {
                icmp_type: ty,
                codes: Range { min: cmin, max: cmax },
                negated: o.negated,
            })
        }
        "multiport" => {
            require_proto(
                &m.name,
                ip,
                &[6, 17, 136, 132, 33],
                "-p tcp, -p udp, -p udplite, -p sctp or -p dccp",
            )?;
            if let Some(o) = opts.get(1) {
                return Err(err(
                    ErrorKind::ConflictingOptions,
                    &o.opt,
                    "multiport: only one of --sports, --dports, --ports allowed",
                ));
            }
            let o = opts.first().ok_or_else(|| missing("--sports, --dports or --ports"))?;
            let dir = match o.name {
                "sports" => PortDir::Source,
                "dports" => PortDir::Destination,
                _ => PortDir::Either,
            };
            let t = arg(o)?;
            let pname = if ip.proto.map(|p| p.value) == Some(17) { "udp" } else { "tcp" };
            let mut ports = Vec::new();
            let mut slots = 0usize;
            for part in t.text.split(',') {
                let p = |s: &str| {
                    names::parse_port(s, pname).ok_or_else(|| {
                        err(ErrorKind::BadValue, t, format!("invalid port/service `{s}` specified"))
                    })
                };
                let r = match part.split_once(':') {
                    Some((a, b)) => {
                        let r = Range { min: p(a)?, max: p(b)? };
                        if r.min >= r.max {
                            return Err(err(ErrorKind::BadValue, t, "invalid portrange specified")
                                .with_hint("a multiport range needs low < high"));
                        }
                        slots = slots.saturating_add(2);
                        r
                    }
                    None => {
                        let v = p(part)?;
                        slots = slots.saturating_add(1);
                        Range { min: v, max: v }
                    }
                };
                if slots > 15 {
                    return Err(err(ErrorKind::BadValue, t, "too many ports specified")
                        .with_hint("multiport takes at most 15 ports (a range counts as two)"));
                }
                ports.push(r);
            }
            Match::Multiport(MultiportMatch { dir, ports, negated: o.negated })
        }
        "iprange" => {
            let mut r = IpRangeMatch { src: None, dst: None };
            for o in opts {
                let t = arg(o)?;
                let (a, b) = t.text.split_once('-').unwrap_or((t.text.as_str(), t.text.as_str()));
                let parse = |s: &str| match family {
                    Family::V4 => names::parse_ipv4(s)
                        .map(IpAddr::V4)
                        .ok_or_else(|| bad(t, "address range", "a.b.c.d-e.f.g.h")),
                    Family::V6 => names::parse_ipv6(s).map(IpAddr::V6).ok_or_else(|| {
                        bad(t, "address range", "an IPv6 range like 2001:db8::1-2001:db8::ff")
                    }),
                };
                let v = Some(Neg { value: Range { min: parse(a)?, max: parse(b)? }, negated: o.negated });
                if o.name == "src-range" {
                    r.src = v;
                } else {
                    r.dst = v;
                }
            }
            if r.src.is_none() && r.dst.is_none() {
                return Err(err(
                    ErrorKind::MissingOption,
                    &m.name,
                    "iprange match: you must specify `--src-range' or `--dst-range'",
                ));
            }
            Match::IpRange(r)
        }
        "conntrack" => {
            let mut c = ConntrackMatch::default();
            if opts.is_empty() {
                return Err(err(
                    ErrorKind::MissingOption,
                    &m.name,
                    "conntrack: at least one option is required",
                ));
            }
            for o in opts {
                let t = arg(o)?;
                let neg = o.negated;
                match o.name {
                    "ctstate" => {
                        let names: Vec<(&str, u16)> = StateSet::NAMES.to_vec();
                        let v = name_list(t, &names, "ctstate", 0u16)?;
                        c.state = Some(Neg { value: StateSet(v), negated: neg });
                    }
                    "ctproto" => {
                        let p = names::parse_proto(&t.text.to_ascii_lowercase())
                            .ok_or_else(|| bad(t, "protocol", "a protocol name or number"))?;
                        c.proto = Some(Neg { value: p, negated: neg });
                    }
                    "ctorigsrc" | "ctorigdst" | "ctreplsrc" | "ctrepldst" => {
                        let mut v = parse_addr_mask(t, false, family)?;
                        if v.prefix_len().is_none() {
                            // libxt_conntrack keeps only a prefix length: a non-contiguous
                            // mask ends up as a host match (iptables-save prints no mask).
                            v.mask = match v.mask {
                                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::BROADCAST),
                                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
                            };
                        }
                        let v = Some(Neg { value: v, negated: neg });
                        match o.name {
                            "ctorigsrc" => c.orig_src = v,
                            "ctorigdst" => c.orig_dst = v,
                            "ctreplsrc" => c.repl_src = v,
                            _ => c.repl_dst = v,
                        }
                    }
                    "ctorigsrcport" | "ctorigdstport" | "ctreplsrcport" | "ctrepldstport" => {
                        let r = match t.text.split_once(':') {
                            Some((a, b)) => Range { min: any_port(t, a)?, max: any_port(t, b)? },
                            None => {
                                let p = any_port(t, &t.text)?;
                                Range { min: p, max: p }
                            }
                        };
                        let v = Some(Neg { value: r, negated: neg });
                        match o.name {
                            "ctorigsrcport" => c.orig_sport = v,
                            "ctorigdstport" => c.orig_dport = v,
                            "ctreplsrcport" => c.repl_sport = v,
                            _ => c.repl_dport = v,
                        }
                    }
                    "ctstatus" => {
                        let table = [
                            ("NONE", 0u32),
                            ("EXPECTED", 1),
                            ("SEEN_REPLY", 2),
                            ("ASSURED", 4),
                            ("CONFIRMED", 8),
                        ];
                        c.status = Some(Neg { value: name_list(t, &table, "ctstatus", 0u32)?, negated: neg });
                    }
                    "ctexpire" => {
                        c.expire = Some(Neg {
                            value: number_range::<u64>(t, u64::from(u32::MAX), "expire time")?,
                            negated: neg,
                        });
                    }
                    "ctdir" => {
                        c.dir_reply = Some(if t.text.eq_ignore_ascii_case("ORIGINAL") {
                            false
                        } else if t.text.eq_ignore_ascii_case("REPLY") {
                            true
                        } else {
                            return Err(bad(t, "direction", "ORIGINAL or REPLY"));
                        });
                    }
                    _ => {}
                }
            }
            Match::Conntrack(c)
        }
        "state" => {
            let o = opts.first().ok_or_else(|| missing("--state"))?;
            let t = arg(o)?;
            let table = [
                ("INVALID", StateSet::INVALID),
                ("ESTABLISHED", StateSet::ESTABLISHED),
                ("NEW", StateSet::NEW),
                ("RELATED", StateSet::RELATED),
                ("UNTRACKED", StateSet::UNTRACKED),
            ];
            Match::State(Neg { value: StateSet(name_list(t, &table, "state", 0u16)?), negated: o.negated })
        }
        "mark" | "connmark" => {
            let o = opts.first().ok_or_else(|| missing("--mark"))?;
            let (value, mask) = mark_mask(arg(o)?)?;
            let v = Neg { value: MarkMask { value, mask }, negated: o.negated };
            if name == "mark" {
                Match::Mark(v)
            } else {
                Match::ConnMark(v)
            }
        }
        "comment" => {
            let o = opts.first().ok_or_else(|| missing("--comment"))?;
            // xt_comment stores at most 255 bytes; iptables truncates silently.
            Match::Comment(truncate(&arg(o)?.text, 255))
        }
        "length" => {
            let o = opts.first().ok_or_else(|| missing("--length"))?;
            Match::Length(Neg { value: number_range::<u16>(arg(o)?, 65535, "length")?, negated: o.negated })
        }
        "ttl" => {
            let o = opts.first().ok_or_else(|| {
                err(
                    ErrorKind::MissingOption,
                    &m.name,
                    "TTL match: you must specify one of `--ttl-eq', `--ttl-lt', `--ttl-gt'",
                )
            })?;
            if let Some(second) = opts.get(1) {
                return Err(err(
                    ErrorKind::ConflictingOptions,
                    &second.opt,
                    "ttl: only one of --ttl-eq, --ttl-lt, --ttl-gt allowed",
                ));
            }
            let t = arg(o)?;
            let v = names::parse_uint(&t.text, 255)
                .and_then(|v| u8::try_from(v).ok())
                .ok_or_else(|| bad(t, "TTL", "0-255"))?;
            Match::Ttl(match (o.name, o.negated) {
                ("ttl-eq", false) => TtlMatch::Eq(v),
                ("ttl-eq", true) => TtlMatch::Ne(v),
                ("ttl-lt", _) => TtlMatch::Lt(v),
                _ => TtlMatch::Gt(v),
            })
        }
        "limit" => {
            let mut avg = XT_LIMIT_SCALE.saturating_mul(3600) / 3; // default 3/hour
            let mut burst = 5u32;
            for o in opts {
                let t = arg(o)?;
                if o.name == "limit" {
                    avg = parse_rate(t)?;
                } else {
                    burst = names::parse_uint(&t.text, 10_000)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| bad(t, "burst", "a number 0-10000"))?;
                }
            }
            // xt_limit checkentry: refuse a zero burst and avg*burst overflowing the credits.
            if burst == 0 || user2credits(avg.wrapping_mul(burst)) < user2credits(avg) {
                return Err(err(
                    ErrorKind::InvalidContext,
                    &m.name,
                    format!("limit: overflow, try lower: {avg}/{burst}"),
                )
                .with_hint(
                    "the kernel refuses this rate/burst combination (Numerical result out of range)",
                ));
            }
            let cap = user2credits(avg.wrapping_mul(burst));
            // The bucket slot is assigned once the chains are in their final order.
            Match::Limit(LimitMatch { avg, burst, cost: user2credits(avg), credit_cap: cap, slot: 0 })
        }
        "addrtype" => {
            let mut a = AddrTypeMatch { src: None, dst: None, limit_iface_in: false, limit_iface_out: false };
            let table: Vec<(&str, AddrTypes)> =
                names::ADDRTYPE_NAMES.iter().enumerate().map(|(i, n)| (*n, AddrTypes(1 << i))).collect();
            for o in opts {
                match o.name {
                    "src-type" => {
                        a.src = Some(Neg {
                            value: name_list(arg(o)?, &table, "address type", AddrTypes(0))?,
                            negated: o.negated,
                        })
                    }
                    "dst-type" => {
                        a.dst = Some(Neg {
                            value: name_list(arg(o)?, &table, "address type", AddrTypes(0))?,
                            negated: o.negated,
                        })
                    }
                    "limit-iface-in" => a.limit_iface_in = true,
                    _ => a.limit_iface_out = true,
                }
            }
            if a.limit_iface_in && a.limit_iface_out {
                let o = opts
                    .iter()
                    .rev()
                    .find(|o| o.name.starts_with("limit-iface"))
                    .map(|o| &o.opt)
                    .unwrap_or(&m.name);
                return Err(err(
                    ErrorKind::ConflictingOptions,
                    o,
                    "addrtype: --limit-iface-in cannot be used together with --limit-iface-out",
                ));
            }
            if a.src.is_none() && a.dst.is_none() {
                return Err(err(
                    ErrorKind::MissingOption,
                    &m.name,
                    "addrtype: you must specify --src-type or --dst-type",
                ));
            }
            if family == Family::V6 {
                // xt_addrtype checkentry for IPv6.
                let all = a.src.map_or(0, |v| v.value.0) | a.dst.map_or(0, |v| v.value.0);
                let refused = if all & AddrTypes::BLACKHOLE.0 != 0 {
                    Some("ipv6 BLACKHOLE matching not supported")
                } else if all >= AddrTypes::PROHIBIT.0 {
                    Some("ipv6 PROHIBIT (THROW, NAT ..) matching not supported")
                } else if all & AddrTypes::BROADCAST.0 != 0 {
                    Some("ipv6 does not support BROADCAST matching")
                } else {
                    None
                };
                if let Some(why) = refused {
                    let o = opts.iter().find(|o| o.name.ends_with("-type")).and_then(|o| o.args.first());
                    return Err(err(
                        ErrorKind::InvalidContext,
                        o.unwrap_or(&m.name),
                        format!("addrtype: {why}"),
                    )
                    .with_expected("UNSPEC, UNICAST, LOCAL, ANYCAST, MULTICAST or UNREACHABLE"));
                }
            }
            Match::AddrType(a)
        }
        "pkttype" => {
            let o = opts.first().ok_or_else(|| missing("--pkt-type"))?;
            let t = arg(o)?;
            let v = match t.text.to_ascii_lowercase().as_str() {
                "unicast" | "host" => PktType::Host,
                "broadcast" => PktType::Broadcast,
                "multicast" => PktType::Multicast,
                "otherhost" => PktType::OtherHost,
                _ => return Err(bad(t, "packet type", "unicast, broadcast, multicast or otherhost")),
            };
            Match::PktType(Neg { value: v, negated: o.negated })
        }
        "helper" => {
            let o = opts.first().ok_or_else(|| missing("--helper"))?;
            // xt_helper_info.name holds 29 bytes and a NUL; iptables truncates silently. Any name
            // is accepted (the match only compares strings at run time).
            Match::Helper(Neg { value: truncate(&arg(o)?.text, 29), negated: o.negated })
        }
        "icmp6" => {
            require_proto(&m.name, ip, &[58], "-p ipv6-icmp")?;
            let o = opts.first().ok_or_else(|| missing("--icmpv6-type"))?;
            let t = arg(o)?;
            let (ty, cmin, cmax) = names::parse_icmpv6_type(&t.text).map_err(|e| {
                err(ErrorKind::BadValue, t, e)
                    .with_expected("a type number, TYPE/CODE or a name like echo-request")
            })?;
            Match::Icmp6(IcmpMatch {
                icmp_type: ty,
                codes: Range { min: cmin, max: cmax },
                negated: o.negated,
            })
        }
        "hl" => {
            let o = opts.first().ok_or_else(|| {
                err(
                    ErrorKind::MissingOption,
                    &m.name,
                    "hl: you must specify one of `--hl-eq', `--hl-lt', `--hl-gt'",
                )
            })?;
            if let Some(second) = opts.get(1) {
                return Err(err(
                    ErrorKind::ConflictingOptions,
                    &second.opt,
                    format!("hl: option \"--{}\" cannot be used together with \"--{}\"", second.name, o.name),
                ));
            }
            let t = arg(o)?;
            let v = names::parse_uint(&t.text, 255)
                .and_then(|v| u8::try_from(v).ok())
                .ok_or_else(|| bad(t, "hop limit", "0-255"))?;
            Match::Hl(match (o.name, o.negated) {
                ("hl-eq", false) => TtlMatch::Eq(v),
                ("hl-eq", true) => TtlMatch::Ne(v),
                ("hl-lt", _) => TtlMatch::Lt(v),
                _ => TtlMatch::Gt(v),
            })
        }
        "ipv6header" => {
            let mut h = Ipv6HeaderMatch { headers: 0, negated: false, soft: false };
            let mut seen = false;
            for o in opts {
                if o.name == "soft" {
                    h.soft = true;
                    continue;
                }
                seen = true;
                let t = arg(o)?;
                for item in t.text.split(',').filter(|i| !i.is_empty()) {
                    h.headers |= names::parse_ipv6hdr_item(item).map_err(|e| {
                        err(ErrorKind::BadValue, t, e).with_expected(
                            "hop-by-hop (hop), ipv6-opts (dst), ipv6-route (route), ipv6-frag (frag), \
                             ah (auth), esp, ipv6-nonxt (none), protocol (prot) or their numbers",
                        )
                    })?;
                }
                if h.headers == 0 {
                    return Err(err(ErrorKind::BadValue, t, "ip6t_ipv6header: cannot parse header names"));
                }
                h.negated = o.negated;
            }
            if !seen {
                return Err(missing("--header"));
            }
            Match::Ipv6Header(h)
        }
        "frag" => {
            // Built from locals at the end: with the fields assigned in place, the release build of rustc
            // 1.95 set `reserved` and `first` whenever `--fragid` was given (seen in the release-mode unit tests
            // that CI runs with the benches; the debug build was right).
            let mut ids = Neg { value: Range { min: 0, max: u32::MAX }, negated: false };
            let mut len = None;
            let (mut reserved, mut first, mut more, mut last) = (false, false, false, false);
            for o in opts {
                match o.name {
                    "fragid" => {
                        let t = arg(o)?;
                        let id = |s: &str, default: u32| -> Result<u32, ParseError> {
                            if s.is_empty() {
                                return Ok(default);
                            }
                            names::parse_uint(s, u64::from(u32::MAX))
                                .and_then(|v| u32::try_from(v).ok())
                                .ok_or_else(|| bad(t, "fragment id", "a number 0-4294967295 or a range a:b"))
                        };
                        let (min, max) = match t.text.split_once(':') {
                            Some((a, b)) => (id(a, 0)?, id(b, u32::MAX)?),
                            None if t.text.is_empty() => return Err(bad(t, "fragment id", "a number")),
                            None => {
                                let v = id(&t.text, 0)?;
                                (v, v)
                            }
                        };
                        ids = Neg { value: Range { min, max }, negated: o.negated };
                    }
                    "fraglen" => {
                        let t = arg(o)?;
                        let v = u32_value(t, &t.text, "fragment header length")?;
                        len = Some(Neg { value: v, negated: o.negated });
                    }
                    "fragres" => reserved = true,
                    "fragfirst" => first = true,
                    _ => {
                        if more || last {
                            return Err(err(
                                ErrorKind::ConflictingOptions,
                                &o.opt,
                                "frag: option \"--fragmore\" cannot be used together with \"--fraglast\"",
                            ));
                        }
                        if o.name == "fragmore" {
                            more = true;
                        } else {
                            last = true;
                        }
                    }
                }
            }
            Match::Frag(FragMatch { ids, len, reserved, first, more, last })
        }
        _ => return Err(err(ErrorKind::UnknownMatch, &m.name, format!("unknown match module `{name}`"))),
    })
}

fn any_port(t: &Token, s: &str) -> Result<u16, ParseError> {
    names::parse_port(s, "tcp")
        .or_else(|| names::parse_port(s, "udp"))
        .ok_or_else(|| err(ErrorKind::BadValue, t, format!("invalid port/service `{s}` specified")))
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    s.get(..end).unwrap_or("").to_string()
}

fn tcp_flags(t: &Token) -> Result<u8, ParseError> {
    let table = [
        ("FIN", 1u8),
        ("SYN", 2),
        ("RST", 4),
        ("PSH", 8),
        ("ACK", 16),
        ("URG", 32),
        ("ALL", 0x3f),
        ("NONE", 0),
    ];
    let mut v = 0u8;
    for part in t.text.split(',') {
        let Some((_, b)) = table.iter().find(|(n, _)| n.eq_ignore_ascii_case(part)) else {
            return Err(err(ErrorKind::BadValue, t, format!("unknown TCP flag `{part}`"))
                .with_expected("FIN, SYN, RST, PSH, ACK, URG, ALL or NONE"));
        };
        v |= b;
    }
    Ok(v)
}

/// libxt_limit `parse_rate`: `N[/second|minute|hour|day]` (any prefix of the unit).
fn parse_rate(t: &Token) -> Result<u32, ParseError> {
    let (num, unit) = match t.text.split_once('/') {
        Some((n, u)) => (n, Some(u)),
        None => (t.text.as_str(), None),
    };
    let mult: u32 = match unit {
        None => 1,
        Some(u) => {
            let is = |full: &str| {
                !u.is_empty()
                    && u.len() <= full.len()
                    && full.get(..u.len()).is_some_and(|p| p.eq_ignore_ascii_case(u))
            };
            if is("second") {
                1
            } else if is("minute") {
                60
            } else if is("hour") {
                3600
            } else if is("day") {
                86_400
            } else {
                return Err(bad(t, "rate", "N/sec, N/minute, N/hour or N/day"));
            }
        }
    };
    // atoi: leading digits.
    let digits: String = num.chars().take_while(|c| c.is_ascii_digit()).collect();
    let r: u64 = digits.parse().unwrap_or(0);
    if r == 0 {
        return Err(bad(t, "rate", "N/sec, N/minute, N/hour or N/day with N > 0"));
    }
    let v = u64::from(XT_LIMIT_SCALE).saturating_mul(u64::from(mult)) / r;
    if v == 0 {
        return Err(err(ErrorKind::BadValue, t, format!("rate too fast `{}`", t.text)));
    }
    u32::try_from(v).map_err(|_| bad(t, "rate", "a smaller rate"))
}

type PendingTarget = (Target, Option<(String, bool, Token)>);

/// `xt_ct_find_proto`: `CT --helper`/`--timeout` need a positive, non-zero `-p` in the rule.
fn ct_needs_proto(ip: &IpSpec, a: &Token) -> Result<u8, ParseError> {
    match ip.proto {
        Some(Neg { value, negated: false }) if value != 0 => Ok(value),
        _ => Err(err(
            ErrorKind::InvalidContext,
            a,
            "CT: you must specify a L4 protocol and not use inversions on it",
        )
        .with_hint("add e.g. `-p tcp` to the rule")),
    }
}

/// `nf_conntrack_helper_try_module_get(name, family, proto)`: the helper must exist for the
/// rule's family and protocol (the kernel refuses the rule with ENOENT, "No such helper").
fn ct_helper_known(family: Family, proto: u8, a: &Token) -> Result<(), ParseError> {
    let known = helper_names(family, proto);
    if known.contains(&a.text.as_str()) {
        return Ok(());
    }
    let p = names::proto_name(proto).map_or_else(|| proto.to_string(), str::to_string);
    let e = err(ErrorKind::BadValue, a, format!("CT: no such helper `{}` for {family} protocol {p}", a.text));
    if known.is_empty() {
        return Err(
            e.with_expected("a rule with `-p tcp` or `-p udp` (no helper exists for other protocols)")
        );
    }
    let e = e.with_expected(format!("one of {}", known.join(", ")));
    // Say where the name exists, when the mistake is the family or the protocol.
    let elsewhere: Vec<String> = [(Family::V4, 6u8), (Family::V4, 17), (Family::V6, 6), (Family::V6, 17)]
        .iter()
        .filter(|(f, p)| helper_names(*f, *p).contains(&a.text.as_str()))
        .map(|(f, p)| format!("{f} {}", if *p == 6 { "tcp" } else { "udp" }))
        .collect();
    Err(if !elsewhere.is_empty() {
        e.with_hint(format!("helper `{}` exists only for {}", a.text, elsewhere.join(", ")))
    } else if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(&a.text)) {
        e.with_hint(format!("helper names are case-sensitive: `{k}`"))
    } else {
        e
    })
}

fn compile_target(
    family: Family,
    table: Table,
    ip: &IpSpec,
    t: &ast::TargetAst,
    user_chains: &[&str],
) -> Result<PendingTarget, ParseError> {
    let name = t.name.text.as_str();
    if !t.goto {
        match name {
            "ACCEPT" => return Ok((Target::Accept, None)),
            "DROP" => return Ok((Target::Drop, None)),
            "RETURN" => return Ok((Target::Return, None)),
            "QUEUE" => return Err(err(ErrorKind::UnknownTarget, &t.name, "target QUEUE is not supported")),
            _ => {}
        }
    }
    if user_chains.contains(&name) {
        return Ok((Target::None, Some((name.to_string(), t.goto, t.name.clone()))));
    }
    if table.hooks().iter().any(|h| h.chain_name() == name) {
        return Err(err(ErrorKind::BadJump, &t.name, format!("cannot jump to built-in chain {name}")));
    }
    if t.goto {
        let e = err(ErrorKind::BadJump, &t.name, format!("goto `{name}` is not a chain"));
        return Err(
            if crate::spec::STANDARD_TARGETS.contains(&name) || crate::spec::target_spec(name).is_some() {
                e.with_hint(format!("use `-j {name}`"))
            } else {
                e.with_hint(format!("declare it with `:{name} - [0:0]` before this rule"))
            },
        );
    }
    let opts = &t.options;
    only_once(opts)?;
    let in_table = |only: Table| -> Result<(), ParseError> {
        if table == only {
            Ok(())
        } else {
            Err(err(
                ErrorKind::InvalidContext,
                &t.name,
                format!("target {name} is only valid in the {only} table, not {table}"),
            ))
        }
    };
    let target = match name {
        "REJECT" => {
            in_table(Table::Filter)?;
            let mut with = match family {
                Family::V4 => RejectWith::IcmpPortUnreachable,
                Family::V6 => RejectWith::Icmp6PortUnreachable,
            };
            if let Some(o) = opts.first() {
                let a = arg(o)?;
                let found = match family {
                    Family::V4 => RejectWith::ALL.into_iter().find(|w| {
                        w.name().eq_ignore_ascii_case(&a.text) || w.alias().eq_ignore_ascii_case(&a.text)
                    }),
                    // libip6t_REJECT: the first entry whose name or alias starts with the text.
                    Family::V6 => RejectWith::ALL_V6.into_iter().find(|w| {
                        let prefix =
                            |n: &str| n.get(..a.text.len()).is_some_and(|p| p.eq_ignore_ascii_case(&a.text));
                        prefix(w.name()) || prefix(w.alias())
                    }),
                };
                with = found.ok_or_else(|| {
                    let names = match family {
                        Family::V4 => RejectWith::ALL.map(|w| w.name()).join(", "),
                        Family::V6 => RejectWith::ALL_V6.map(|w| w.name()).join(", "),
                    };
                    let e = err(ErrorKind::BadValue, a, format!("unknown reject type `{}`", a.text)).with_expected(names);
                    if family == Family::V6 && a.text.to_ascii_lowercase().starts_with("icmp-") {
                        e.with_hint("ip6tables answers with ICMPv6: e.g. icmp6-port-unreachable, icmp6-adm-prohibited")
                    } else {
                        e
                    }
                })?;
                if with == RejectWith::TcpReset && ip.proto != Some(Neg { value: 6, negated: false }) {
                    return Err(err(
                        ErrorKind::InvalidContext,
                        a,
                        "REJECT --reject-with tcp-reset is only valid with -p tcp",
                    )
                    .with_hint("add `-p tcp` to the rule"));
                }
            }
            Target::Reject(with)
        }
        "LOG" => {
            let mut l = LogTarget {
                prefix: String::new(),
                level: 4,
                tcp_sequence: false,
                tcp_options: false,
                ip_options: false,
                uid: false,
                macdecode: false,
            };
            for o in opts {
                match o.name {
                    "log-level" => {
                        let a = arg(o)?;
                        let levels =
                            ["emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"];
                        l.level = match names::parse_uint(&a.text, 7) {
                            Some(v) => u8::try_from(v).unwrap_or(4),
                            None if a.text.eq_ignore_ascii_case("panic") => 0,
                            None => levels
                                .iter()
                                .position(|n| n.eq_ignore_ascii_case(&a.text))
                                .and_then(|p| u8::try_from(p).ok())
                                .ok_or_else(|| {
                                    bad(
                                        a,
                                        "log level",
                                        "0-7 or emerg, alert, crit, error, warning, notice, info, debug",
                                    )
                                })?,
                        };
                    }
                    "log-prefix" => {
                        let a = arg(o)?;
                        if a.text.is_empty() {
                            return Err(err(
                                ErrorKind::BadValue,
                                a,
                                "--log-prefix must have a minimum length of 1 character",
                            ));
                        }
                        // ipt_log_info.prefix holds 29 characters; iptables truncates.
                        l.prefix = truncate(&a.text, 29);
                    }
                    "log-tcp-sequence" => l.tcp_sequence = true,
                    "log-tcp-options" => l.tcp_options = true,
                    "log-ip-options" => l.ip_options = true,
                    "log-uid" => l.uid = true,
                    _ => l.macdecode = true,
                }
            }
            Target::Log(l)
        }
        "NOTRACK" => {
            in_table(Table::Raw)?;
            Target::Notrack
        }
        "CT" => {
            in_table(Table::Raw)?;
            let mut c = CtTarget {
                notrack: false,
                helper: None,
                timeout: None,
                ctevents: 0,
                expevents: 0,
                zone: 0,
                zone_dir: ZoneDir::Both,
            };
            let mut zone_seen = false;
            // Checked after all options are read, as xt_ct_tg_check does: with `--notrack` the
            // kernel looks neither at the protocol nor at the helper or timeout names.
            let mut helper_tok: Option<&Token> = None;
            let mut timeout_tok: Option<&Token> = None;
            for o in opts {
                match o.name {
                    "notrack" => c.notrack = true,
                    "helper" => {
                        let a = arg(o)?;
                        // An empty name is no helper at all (`info->helper[0] == 0`).
                        if !a.text.is_empty() {
                            helper_tok = Some(a);
                            c.helper = Some(a.text.clone());
                        }
                    }
                    "timeout" => {
                        let a = arg(o)?;
                        if !a.text.is_empty() {
                            timeout_tok = Some(a);
                            c.timeout = Some(a.text.clone());
                        }
                    }
                    "ctevents" | "expevents" => {
                        let a = arg(o)?;
                        let table: Vec<(&str, u16)> = if o.name == "ctevents" {
                            CT_EVENTS.iter().enumerate().map(|(i, n)| (*n, 1u16 << i)).collect()
                        } else {
                            vec![("new", 1u16)]
                        };
                        let v = name_list(a, &table, "event", 0u16)?;
                        if o.name == "ctevents" {
                            c.ctevents = v;
                        } else {
                            c.expevents = v;
                        }
                    }
                    _ => {
                        let a = arg(o)?;
                        if zone_seen {
                            return Err(err(
                                ErrorKind::ConflictingOptions,
                                &o.opt,
                                "CT: only one --zone option allowed",
                            ));
                        }
                        zone_seen = true;
                        c.zone = names::parse_uint(&a.text, 65535)
                            .and_then(|v| u16::try_from(v).ok())
                            .ok_or_else(|| bad(a, "zone", "a number 0-65535"))?;
                        c.zone_dir = match o.name {
                            "zone-orig" => ZoneDir::Orig,
                            "zone-reply" => ZoneDir::Reply,
                            _ => ZoneDir::Both,
                        };
                    }
                }
            }
            if !c.notrack {
                if let Some(a) = helper_tok {
                    let proto = ct_needs_proto(ip, a)?;
                    ct_helper_known(family, proto, a)?;
                }
                if let Some(a) = timeout_tok {
                    ct_needs_proto(ip, a)?;
                }
            }
            Target::Ct(c)
        }
        "MARK" | "CONNMARK" => {
            let is_ct = name == "CONNMARK";
            let ops: Vec<&OptionAst> =
                opts.iter().filter(|o| !matches!(o.name, "mask" | "nfmask" | "ctmask")).collect();
            let Some(op) = ops.first() else {
                return Err(err(
                    ErrorKind::MissingOption,
                    &t.name,
                    if is_ct {
                        "CONNMARK target: no operation specified".to_string()
                    } else {
                        "MARK: one of the --set-xmark, --{and,or,xor,set}-mark options is required"
                            .to_string()
                    },
                ));
            };
            if let Some(second) = ops.get(1) {
                return Err(err(
                    ErrorKind::ConflictingOptions,
                    &second.opt,
                    format!("{name}: `--{}` cannot be used together with `--{}`", op.name, second.name),
                ));
            }
            let masks: Vec<&OptionAst> =
                opts.iter().filter(|o| matches!(o.name, "mask" | "nfmask" | "ctmask")).collect();
            let (value, mask) = match op.name {
                "set-xmark" => Some(mark_mask(arg(op)?)?),
                // --set-mark v/m: xt_MARK/xt_CONNMARK clear m|v then xor v.
                "set-mark" => {
                    let (v, m) = mark_mask(arg(op)?)?;
                    Some((v, m | v))
                }
                "and-mark" => Some((0, !u32_value(arg(op)?, &arg(op)?.text, "mask")?)),
                "or-mark" => {
                    let v = u32_value(arg(op)?, &arg(op)?.text, "mask")?;
                    Some((v, v))
                }
                "xor-mark" => Some((u32_value(arg(op)?, &arg(op)?.text, "mask")?, 0)),
                _ => None,
            }
            .map_or((0, 0), |x| x);
            if !is_ct {
                Target::Mark { value, mask }
            } else if matches!(op.name, "save-mark" | "restore-mark") {
                let (mut nfmask, mut ctmask) = (u32::MAX, u32::MAX);
                for mo in &masks {
                    let a = arg(mo)?;
                    let v = u32_value(a, &a.text, "mask")?;
                    match mo.name {
                        "mask" => {
                            nfmask = v;
                            ctmask = v;
                        }
                        "nfmask" => nfmask = v,
                        _ => ctmask = v,
                    }
                }
                if op.name == "save-mark" {
                    Target::ConnMark(ConnMarkOp::Save { nfmask, ctmask })
                } else {
                    Target::ConnMark(ConnMarkOp::Restore { nfmask, ctmask })
                }
            } else {
                if let Some(mo) = masks.first() {
                    return Err(err(
                        ErrorKind::ConflictingOptions,
                        &mo.opt,
                        format!("CONNMARK: --{} is only valid with --save-mark/--restore-mark", mo.name),
                    ));
                }
                Target::ConnMark(ConnMarkOp::Set { value, mask })
            }
        }
        _ => {
            return Err(err(ErrorKind::UnknownTarget, &t.name, format!("no chain or target named `{name}`"))
                .with_expected(
                    "ACCEPT, DROP, RETURN, REJECT, LOG, MARK, CONNMARK, NOTRACK, CT or a declared user chain",
                )
                .with_hint(format!(
                    "if `{name}` is a chain, declare it with `:{name} - [0:0]` before this rule"
                )))
        }
    };
    Ok((target, None))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn limit_credits_match_the_kernel_for_hz_250() {
        // 3/hour: avg = 12_000_000.
        assert_eq!(user2credits(12_000_000), 12_000_000 / 10_000 * 32_000);
        assert_eq!(user2credits(2000), 6400);
        // 3/day with burst 5 overflows (the kernel answers ERANGE); 2/day does not.
        let a = 288_000_000u32;
        assert!(user2credits(a.wrapping_mul(5)) < user2credits(a));
        let a = 432_000_000u32;
        assert!(user2credits(a.wrapping_mul(5)) >= user2credits(a));
    }

    fn filter_input(rules: &str) -> Ruleset {
        crate::parse(&format!("*filter\n:INPUT ACCEPT [0:0]\n:u - [0:0]\n{rules}COMMIT\n")).unwrap()
    }

    #[test]
    fn conn_details_are_read_only_by_tuple_lifetime_and_helper_matches() {
        let plain =
            "-A INPUT -m conntrack --ctstate ESTABLISHED --ctstatus ASSURED --ctdir REPLY -j ACCEPT\n\
                     -A INPUT -m state --state NEW -m connmark --mark 1 -p tcp --dport 22 -j ACCEPT\n";
        assert!(!filter_input(plain).reads_conn_details());
        for extra in [
            "-m conntrack --ctproto udp",
            "-m conntrack --ctorigsrc 10.0.0.1",
            "-m conntrack --ctorigdst 10.0.0.1",
            "-m conntrack --ctreplsrc 10.0.0.1",
            "-m conntrack --ctrepldst 10.0.0.1",
            "-m conntrack --ctorigsrcport 53",
            "-m conntrack --ctorigdstport 53",
            "-m conntrack --ctreplsrcport 53",
            "-m conntrack --ctrepldstport 53",
            "-m conntrack --ctexpire 10:20",
            "-m helper --helper ftp",
        ] {
            // Also when only a user chain holds it.
            let rs = filter_input(&format!("{plain}-A u {extra} -j ACCEPT\n"));
            assert!(rs.reads_conn_details(), "{extra}");
        }
    }

    #[test]
    fn the_key_only_prefix_stops_at_the_first_rule_testing_the_flow() {
        let rs = filter_input(
            "-A INPUT -m conntrack --ctstate ESTABLISHED --ctdir REPLY -m comment --comment c -j ACCEPT\n\
             -A INPUT -m mark --mark 1 -m connmark --mark 2 -m pkttype --pkt-type unicast -j u\n\
             -A INPUT -m state --state RELATED -m conntrack --ctstatus ASSURED -j ACCEPT\n\
             -A INPUT -i eth0 -j ACCEPT\n-A INPUT -j ACCEPT\n",
        );
        assert_eq!(rs.key_prefix[Table::Filter as usize * 5 + Hook::Input as usize], 3);
        for first in [
            "-s 10.0.0.0/8",
            "-p tcp",
            "! -i eth1",
            "-f",
            "-m conntrack --ctorigsrc 10.0.0.1",
            "-m ttl --ttl-gt 3",
        ] {
            let rs = filter_input(&format!("-A INPUT {first} -j ACCEPT\n-A INPUT -j ACCEPT\n"));
            assert_eq!(rs.key_prefix[Table::Filter as usize * 5 + Hook::Input as usize], 0, "{first}");
        }
    }

    fn print6(rule: &str) -> Result<String, String> {
        let text = format!("*filter\n:INPUT ACCEPT [0:0]\n{rule}\nCOMMIT\n");
        let rs = crate::parse_family(&text, Family::V6).map_err(|e| e.to_string())?;
        let out = rs.to_save_string(&rs.new_state(), false);
        Ok(out.lines().find(|l| l.starts_with("-A")).unwrap_or("").to_string())
    }

    #[test]
    fn ip6tables_spellings_seen_on_the_live_tool() {
        // Each pair: what we were given, what ip6tables-legacy-save printed after restore.
        for (given, printed) in [
            ("-A INPUT -p IPv6-ICMP --icmpv6-type 1", "-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 1"),
            ("-A INPUT -p icmp -j ACCEPT", "-A INPUT -p icmp -j ACCEPT"),
            ("-A INPUT -p mh -j ACCEPT", "-A INPUT -p mobility-header -j ACCEPT"),
            (
                "-A INPUT -p icmpv6 -m icmp6 --icmpv6-type 1 -m icmp6 --icmpv6-type 2",
                "-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 1 -m icmp6 --icmpv6-type 2",
            ),
            ("-A INPUT -s ::/0 -p all", "-A INPUT"),
            ("-A INPUT ! -s ::/0", "-A INPUT ! -s ::/0"),
            ("-A INPUT -s ::", "-A INPUT -s ::/128"),
            ("-A INPUT -m frag ! --fragid 0:4294967295", "-A INPUT -m frag"),
            (
                "-A INPUT -m ipv6header ! --header none --soft",
                "-A INPUT -m ipv6header ! --header ipv6-nonxt --soft",
            ),
            (
                "-A INPUT -m ipv6header --header 255,59,50,51,44",
                "-A INPUT -m ipv6header --header ipv6-frag,ah,esp,ipv6-nonxt,protocol",
            ),
            ("-A INPUT -m addrtype --src-type UNREACHABLE", "-A INPUT -m addrtype --src-type UNREACHABLE"),
            ("-A INPUT -m conntrack --ctorigsrc ::1/0", "-A INPUT -m conntrack --ctorigsrc ::1/0"),
        ] {
            assert_eq!(print6(given).as_deref(), Ok(printed), "{given}");
        }
        for refused in [
            "-A INPUT -p icmp6 -j ACCEPT",
            "-A INPUT -m ipv6header --header ,",
            "-A INPUT -j REJECT --reject-with ''",
            "-A INPUT -m addrtype --src-type NAT",
            "-A INPUT -m conntrack --ctorigsrc 2001:db8::1/129",
            "-A INPUT -m iprange --src-range 2001:db8::1/64-2001:db8::f",
            "-A INPUT -s 2001:db8::1,2001:db8::2",
            "-A INPUT -p tcp -m tcp --dport 1 -p udp",
            "-A INPUT -m ipv6header --header esp --header ah",
        ] {
            assert!(print6(refused).is_err(), "{refused} should be refused");
        }
    }

    fn raw_rule(rule: &str, family: Family) -> Result<String, ParseError> {
        let text = format!("*raw\n:PREROUTING ACCEPT [0:0]\n{rule}\nCOMMIT\n");
        let rs = crate::parse_family(&text, family)?;
        let out = rs.to_save_string(&rs.new_state(), false);
        Ok(out.lines().find(|l| l.starts_with("-A")).unwrap_or("").to_string())
    }

    /// The accepted/refused matrix probed with iptables-legacy-restore / ip6tables-legacy-restore
    /// on the live 6.18 kernel (`-A PREROUTING -p P -j CT --helper NAME`).
    #[test]
    fn ct_helper_names_per_family_and_protocol_as_the_live_kernel() {
        let probe = [
            "ftp",
            "tftp",
            "irc",
            "sip",
            "amanda",
            "H.245",
            "Q.931",
            "RAS",
            "pptp",
            "sane",
            "snmp",
            "snmp_trap",
            "netbios-ns",
            "h323",
            "FTP",
            "ftp-21",
            "ftpx",
            "ft",
            "broadcast",
            "gre",
        ];
        let live = [
            (Family::V4, "tcp", "ftp irc sip Q.931 pptp sane"),
            (Family::V4, "udp", "tftp sip amanda H.245 RAS snmp snmp_trap netbios-ns"),
            (Family::V4, "sctp", ""),
            (Family::V4, "udplite", ""),
            (Family::V4, "icmp", ""),
            (Family::V6, "tcp", "ftp sip Q.931 sane"),
            (Family::V6, "udp", "tftp sip amanda H.245 RAS"),
            (Family::V6, "sctp", ""),
            (Family::V6, "ipv6-icmp", ""),
        ];
        for (family, proto, accepted) in live {
            let ours: Vec<&str> = probe
                .iter()
                .copied()
                .filter(|h| raw_rule(&format!("-A PREROUTING -p {proto} -j CT --helper {h}"), family).is_ok())
                .collect();
            assert_eq!(ours.join(" "), accepted, "{family} {proto}");
        }
    }

    #[test]
    fn ct_helper_checks_follow_xt_ct_tg_check() {
        let v4 = |r: &str| raw_rule(r, Family::V4).map_err(|e| e.to_string());
        // Live: with --notrack the kernel checks neither the protocol nor the names.
        assert_eq!(
            v4("-A PREROUTING -p udp -j CT --notrack --helper nosuch").unwrap(),
            "-A PREROUTING -p udp -j CT --notrack --helper nosuch"
        );
        assert_eq!(
            v4("-A PREROUTING -j CT --helper ftp --notrack").unwrap(),
            "-A PREROUTING -j CT --notrack --helper ftp"
        );
        // Live: an empty name is no helper (no protocol needed) and is not printed.
        assert_eq!(v4("-A PREROUTING -j CT --helper \"\"").unwrap(), "-A PREROUTING -j CT");
        assert_eq!(v4("-A PREROUTING ! -p tcp -j CT --helper \"\"").unwrap(), "-A PREROUTING ! -p tcp -j CT");
        // Numeric protocol, and names printed unquoted by libxt_CT.
        assert_eq!(
            v4("-A PREROUTING -p 6 -j CT --helper Q.931").unwrap(),
            "-A PREROUTING -p tcp -j CT --helper Q.931"
        );
        // The protocol is checked before the name, and a negated one is refused.
        let e = v4("-A PREROUTING ! -p tcp -j CT --helper nosuch").unwrap_err();
        assert!(e.contains("you must specify a L4 protocol"), "{e}");
        let e = v4("-A PREROUTING -p udp -j CT --helper ftp").unwrap_err();
        assert!(e.contains("no such helper `ftp` for IPv4 protocol udp"), "{e}");
        assert!(e.contains("exists only for IPv4 tcp, IPv6 tcp"), "{e}");
        let e = v4("-A PREROUTING -p tcp -j CT --helper FTP").unwrap_err();
        assert!(e.contains("case-sensitive: `ftp`"), "{e}");
        // Live: twice is an iptables error.
        assert!(v4("-A PREROUTING -p tcp -j CT --helper ftp --helper irc").is_err());
    }

    #[test]
    fn helper_match_is_stored_as_the_kernel_keeps_it() {
        let v4 = |r: &str| raw_rule(r, Family::V4).map_err(|e| e.to_string());
        // Live iptables-legacy-save output for each.
        for (given, printed) in [
            ("-A PREROUTING -m helper --helper ftp", "-A PREROUTING -m helper --helper ftp"),
            ("-A PREROUTING -m helper ! --helper ftp", "-A PREROUTING -m helper ! --helper ftp"),
            ("-A PREROUTING -m helper --helper Q.931", "-A PREROUTING -m helper --helper \"Q.931\""),
            ("-A PREROUTING -m helper --helper \"\"", "-A PREROUTING -m helper --helper \"\""),
            ("-A PREROUTING -m helper --helper \"a b\"", "-A PREROUTING -m helper --helper \"a b\""),
            ("-A PREROUTING -m helper --helper nosuch", "-A PREROUTING -m helper --helper nosuch"),
            (
                "-A PREROUTING -m helper --helper abcdefghijklmnopqrstuvwxyz01234567890123456789",
                "-A PREROUTING -m helper --helper abcdefghijklmnopqrstuvwxyz012",
            ),
        ] {
            assert_eq!(v4(given).unwrap(), printed, "{given}");
            assert_eq!(raw_rule(given, Family::V6).unwrap(), printed, "{given}");
        }
        // Live: mandatory, once.
        assert!(v4("-A PREROUTING -m helper").unwrap_err().contains("--helper must be specified"));
        assert!(v4("-A PREROUTING -m helper --helper ftp --helper irc").is_err());
    }
}
