//! Syntax tree of an iptables-save / iptables-restore file, with source positions.
//!
//! Contract: [`parse_file`] accepts exactly the line structure iptables-restore 1.8.9 accepts
//! (`*table`, `:CHAIN POLICY [p:b]`, `[p:b] -A chain ...`, `COMMIT`, `#` comments, blank lines) and
//! splits each rule into its base options, its match modules (explicit `-m` and implicit protocol
//! modules, loaded at the point iptables loads them) and its target, emulating `getopt_long`
//! (exact long names first, then unambiguous prefixes, newest module first). It does not judge
//! values: that is [`crate::compile`]'s job. Every token keeps its line, column and byte span.
//!
//! Tokenizing follows iptables-restore's `add_param_to_argv`: whitespace separates arguments; a
//! double quote opens a quoted part in which a backslash escapes the next character; a closing
//! quote ends the argument (so `""` is an empty argument). Single quotes are ordinary characters.

use crate::error::{ErrorKind, ParseError};
use crate::model::Family;
use crate::spec::{self, BaseId, ModuleSpec, OptSpec};

/// A position in the input: 1-based line and column (characters), byte offset and byte length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: u32,
    pub column: u32,
    pub offset: usize,
    pub len: usize,
}

/// One argument as iptables-restore would pass it, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub span: Span,
}

/// A whole file: the table blocks in file order, and the family it was read as (iptables-save
/// or ip6tables-save: the modules and options available depend on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub family: Family,
    pub tables: Vec<TableBlock>,
}

/// `*name` ... `COMMIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableBlock {
    pub name: Token,
    pub items: Vec<Item>,
    pub commit: Span,
}

/// A chain declaration or a rule, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Chain(ChainDecl),
    Rule(RuleLine),
}

/// `:NAME POLICY [p:b]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDecl {
    pub name: Token,
    pub policy: Token,
    pub counters: Option<Counters>,
}

/// `[packets:bytes]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub span: Span,
}

/// `[p:b] -A chain <base options> <matches> <target>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleLine {
    /// The whole line.
    pub span: Span,
    pub counters: Option<Counters>,
    pub chain: Token,
    pub base: Vec<BaseOpt>,
    pub matches: Vec<MatchAst>,
    pub target: Option<TargetAst>,
}

/// Which base option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseKind {
    Source,
    Destination,
    Protocol,
    InInterface,
    OutInterface,
    Fragment,
}

/// A base option (`-s`, `-d`, `-p`, `-i`, `-o`, `-f`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseOpt {
    pub kind: BaseKind,
    pub negated: bool,
    /// The option as written.
    pub opt: Token,
    pub arg: Option<Token>,
}

/// A match module and the options given to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchAst {
    pub name: Token,
    /// Loaded implicitly from `-p` (no `-m` written).
    pub implicit: bool,
    pub options: Vec<OptionAst>,
}

/// `-j NAME` / `-g NAME` and the target's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAst {
    pub goto: bool,
    pub name: Token,
    pub options: Vec<OptionAst>,
}

/// One module option: canonical name, the option token, `!`, arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionAst {
    pub name: &'static str,
    pub opt: Token,
    pub negated: bool,
    pub args: Vec<Token>,
}

/// Parse iptables-save text into a [`File`].
pub fn parse_file(text: &str) -> Result<File, ParseError> {
    parse_file_family(text, Family::V4)
}

/// Parse iptables-save (`V4`) or ip6tables-save (`V6`) text into a [`File`].
pub fn parse_file_family(text: &str, family: Family) -> Result<File, ParseError> {
    let mut tables: Vec<TableBlock> = Vec::new();
    let mut open: Option<(Token, Vec<Item>)> = None;
    let mut offset = 0usize;
    let mut last_span = Span { line: 1, column: 1, offset: 0, len: 0 };
    for (idx, raw_line) in text.split('\n').enumerate() {
        let line_no = u32::try_from(idx.saturating_add(1)).unwrap_or(u32::MAX);
        let line_start = offset;
        offset = offset.saturating_add(raw_line.len()).saturating_add(1);
        if raw_line.trim_start().starts_with('#') {
            continue; // comment line
        }
        let tokens = tokenize(raw_line, line_no, line_start)?;
        let Some(first) = tokens.first() else {
            continue; // blank line
        };
        last_span = span_end(raw_line, line_no, line_start);
        if let Some(rest) = first.text.strip_prefix('*') {
            if let Some((t, _)) = &open {
                return Err(ParseError::new(
                    ErrorKind::MissingCommit,
                    &first.span,
                    &first.text,
                    format!("table {} is not terminated by COMMIT before this table", t.text),
                )
                .with_expected("COMMIT")
                .with_hint("end every table block with a line `COMMIT`"));
            }
            let name = Token {
                text: rest.to_string(),
                span: Span {
                    column: first.span.column.saturating_add(1),
                    offset: first.span.offset.saturating_add(1),
                    len: first.span.len.saturating_sub(1),
                    ..first.span
                },
            };
            if let Some(extra) = tokens.get(1) {
                return Err(syntax(extra, "unexpected text after the table name", "end of line"));
            }
            if name.text.is_empty() {
                return Err(syntax(first, "missing table name", "`*filter`, `*mangle` or `*raw`"));
            }
            open = Some((name, Vec::new()));
            continue;
        }
        let Some((_, items)) = open.as_mut() else {
            return Err(syntax(first, "line outside of a table block", "`*table` first"));
        };
        if first.text == "COMMIT" {
            if let Some(extra) = tokens.get(1) {
                return Err(syntax(extra, "unexpected text after COMMIT", "end of line"));
            }
            let commit = first.span;
            if let Some((name, items)) = open.take() {
                tables.push(TableBlock { name, items, commit });
            }
            continue;
        }
        if first.text.starts_with(':') {
            items.push(Item::Chain(parse_chain_line(&tokens)?));
            continue;
        }
        let span = Span { line: line_no, column: 1, offset: line_start, len: raw_line.len() };
        items.push(Item::Rule(parse_rule_line(tokens, span, family)?));
    }
    if let Some((name, _)) = open {
        return Err(ParseError::new(
            ErrorKind::MissingCommit,
            &last_span,
            "",
            format!("end of input inside table {} (missing COMMIT)", name.text),
        )
        .with_expected("COMMIT")
        .with_hint("iptables-restore applies a table only at its COMMIT line"));
    }
    Ok(File { family, tables })
}

fn span_end(line: &str, line_no: u32, line_start: usize) -> Span {
    let col = u32::try_from(line.chars().count().saturating_add(1)).unwrap_or(u32::MAX);
    Span { line: line_no, column: col, offset: line_start.saturating_add(line.len()), len: 0 }
}

fn syntax(tok: &Token, msg: &str, expected: &str) -> ParseError {
    ParseError::new(ErrorKind::Syntax, &tok.span, &tok.text, msg.to_string()).with_expected(expected)
}

/// Split one line into arguments the way iptables-restore does.
fn tokenize(line: &str, line_no: u32, line_start: usize) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut start: Option<(usize, u32)> = None; // byte index in line, column
    let mut quote_open = false;
    let mut quoted = false;
    let mut escaped = false;
    let mut col: u32 = 0;
    let push = |out: &mut Vec<Token>, cur: &mut String, start: &mut Option<(usize, u32)>, end: usize| {
        let (s, c) = start.take().unwrap_or((end, 1));
        out.push(Token {
            text: std::mem::take(cur),
            span: Span {
                line: line_no,
                column: c,
                offset: line_start.saturating_add(s),
                len: end.saturating_sub(s),
            },
        });
    };
    for (i, ch) in line.char_indices() {
        col = col.saturating_add(1);
        let next = i.saturating_add(ch.len_utf8());
        if quote_open {
            if escaped {
                cur.push(ch);
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == '"' {
                quote_open = false;
                // A closing quote ends the argument (even an empty one).
                push(&mut out, &mut cur, &mut start, next);
                quoted = false;
            } else {
                cur.push(ch);
            }
            continue;
        }
        match ch {
            '"' => {
                if start.is_none() {
                    start = Some((i, col));
                }
                quote_open = true;
                quoted = true;
            }
            ' ' | '\t' | '\r' => {
                if !cur.is_empty() || quoted {
                    push(&mut out, &mut cur, &mut start, i);
                    quoted = false;
                }
            }
            _ => {
                if start.is_none() {
                    start = Some((i, col));
                }
                cur.push(ch);
            }
        }
    }
    if quote_open {
        let (s, c) = start.unwrap_or((0, 1));
        let span = Span {
            line: line_no,
            column: c,
            offset: line_start.saturating_add(s),
            len: line.len().saturating_sub(s),
        };
        return Err(ParseError::new(ErrorKind::Syntax, &span, &cur, "unterminated double quote".into())
            .with_expected("a closing `\"`"));
    }
    if !cur.is_empty() {
        push(&mut out, &mut cur, &mut start, line.len());
    }
    Ok(out)
}

fn parse_counters(tok: &Token) -> Option<Counters> {
    let inner = tok.text.strip_prefix('[')?.strip_suffix(']')?;
    let (p, b) = inner.split_once(':')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(p) || !digits(b) {
        return None;
    }
    Some(Counters { packets: p.parse().ok()?, bytes: b.parse().ok()?, span: tok.span })
}

fn parse_chain_line(tokens: &[Token]) -> Result<ChainDecl, ParseError> {
    let Some(first) = tokens.first() else {
        return Err(ParseError::new(ErrorKind::Syntax, &Span::default(), "", "empty chain line".into()));
    };
    let name = Token {
        text: first.text.get(1..).unwrap_or("").to_string(),
        span: Span {
            column: first.span.column.saturating_add(1),
            offset: first.span.offset.saturating_add(1),
            len: first.span.len.saturating_sub(1),
            ..first.span
        },
    };
    if name.text.is_empty() {
        return Err(syntax(first, "missing chain name", "`:NAME POLICY [packets:bytes]`"));
    }
    let Some(policy) = tokens.get(1).cloned() else {
        return Err(ParseError::new(
            ErrorKind::BadPolicy,
            &first.span,
            &first.text,
            format!("chain {} has no policy", name.text),
        )
        .with_expected("ACCEPT, DROP, or `-` for a user chain"));
    };
    let counters = match tokens.get(2) {
        None => None,
        Some(t) => Some(parse_counters(t).ok_or_else(|| {
            ParseError::new(ErrorKind::BadValue, &t.span, &t.text, "bad chain counters".into())
                .with_expected("[packets:bytes]")
        })?),
    };
    if let Some(extra) = tokens.get(3) {
        return Err(syntax(extra, "unexpected text after the chain counters", "end of line"));
    }
    Ok(ChainDecl { name, policy, counters })
}

/// A loaded module during getopt emulation: its spec and where its options go.
enum Owner {
    Match(usize),
    Target,
}

struct Loaded {
    spec: &'static ModuleSpec,
    owner: Owner,
}

enum Resolved {
    Base(BaseId),
    Module(usize, &'static OptSpec),
}

fn resolve_long(name: &str, loaded: &[Loaded], family: Family) -> Result<Option<Resolved>, Vec<String>> {
    // ip6tables has no `--fragment`.
    let base =
        || spec::BASE_LONG.iter().filter(move |(_, id)| !(family == Family::V6 && *id == BaseId::Fragment));
    // Exact match first: base options, then modules newest first (iptables merges the options
    // of a newly loaded module in front of the older ones).
    if let Some((_, id)) = base().find(|(n, _)| *n == name) {
        return Ok(Some(Resolved::Base(*id)));
    }
    for (li, l) in loaded.iter().enumerate().rev() {
        if let Some((_, o)) = l.spec.names().find(|(n, _)| *n == name) {
            return Ok(Some(Resolved::Module(li, o)));
        }
    }
    // Then unambiguous prefixes (getopt_long abbreviations).
    let mut found: Vec<(Resolved, String)> = Vec::new();
    let mut seen_base: Vec<BaseId> = Vec::new();
    for (n, id) in base() {
        if n.starts_with(name) && !seen_base.contains(id) {
            seen_base.push(*id);
            found.push((Resolved::Base(*id), format!("--{n}")));
        }
    }
    for (li, l) in loaded.iter().enumerate().rev() {
        let mut seen: Vec<&'static str> = Vec::new();
        for (n, o) in l.spec.names() {
            if n.starts_with(name) && !seen.contains(&o.name) {
                seen.push(o.name);
                found.push((Resolved::Module(li, o), format!("--{n}")));
            }
        }
    }
    if found.len() > 1 {
        return Err(found.into_iter().map(|(_, n)| n).collect());
    }
    Ok(found.pop().map(|(r, _)| r))
}

/// The module iptables loads implicitly for `-p NAME` when an option is unknown.
fn implicit_module(proto: &str, family: Family) -> Option<&'static str> {
    let lower = proto.to_ascii_lowercase();
    let name = match crate::names::parse_uint(&lower, 255) {
        Some(n) => crate::names::proto_name(u8::try_from(n).ok()?)?.to_string(),
        None => lower,
    };
    match (name.as_str(), family) {
        ("tcp", _) => Some("tcp"),
        ("udp", _) => Some("udp"),
        ("icmp", Family::V4) => Some("icmp"),
        // libxtables maps every spelling of ICMPv6 to the icmp6 module.
        ("ipv6-icmp" | "icmpv6" | "icmp6", Family::V6) => Some("icmp6"),
        _ => None,
    }
}

fn parse_rule_line(tokens: Vec<Token>, span: Span, family: Family) -> Result<RuleLine, ParseError> {
    let mut iter = tokens.into_iter().peekable();
    let mut counters = None;
    if let Some(t) = iter.peek() {
        if t.text.starts_with('[') {
            let t = t.clone();
            counters = Some(parse_counters(&t).ok_or_else(|| {
                ParseError::new(ErrorKind::BadValue, &t.span, &t.text, "bad rule counters".into())
                    .with_expected("[packets:bytes]")
            })?);
            iter.next();
        }
    }
    let mut chain: Option<Token> = None;
    let mut base: Vec<BaseOpt> = Vec::new();
    let mut matches: Vec<MatchAst> = Vec::new();
    let mut target: Option<TargetAst> = None;
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut proto: Option<String> = None;
    let mut proto_used = false;
    let mut invert: Option<Token> = None;

    while let Some(tok) = iter.next() {
        if tok.text == "!" {
            if invert.is_some() {
                return Err(ParseError::new(
                    ErrorKind::BadNegation,
                    &tok.span,
                    "!",
                    "multiple consecutive ! not allowed".into(),
                ));
            }
            invert = Some(tok);
            continue;
        }
        // Split the option token into name and inline argument.
        let (resolved_name, inline_arg, is_long): (String, Option<String>, bool) =
            if let Some(long) = tok.text.strip_prefix("--") {
                match long.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string()), true),
                    None => (long.to_string(), None, true),
                }
            } else if let Some(short) = tok.text.strip_prefix('-') {
                let mut chars = short.chars();
                let Some(c) = chars.next() else {
                    return Err(bad_argument(&tok));
                };
                let rest: String = chars.collect();
                (c.to_string(), if rest.is_empty() { None } else { Some(rest) }, false)
            } else {
                return Err(bad_argument(&tok));
            };
        if resolved_name.is_empty() {
            return Err(bad_argument(&tok));
        }
        let mut attempt = 0;
        let resolved = loop {
            let r = if is_long {
                resolve_long(&resolved_name, &loaded, family).map_err(|cands| {
                    ParseError::new(
                        ErrorKind::AmbiguousOption,
                        &tok.span,
                        &tok.text,
                        format!("option `{}` is ambiguous", tok.text),
                    )
                    .with_expected(cands.join(", "))
                    .with_hint("write the option name in full")
                })?
            } else {
                resolved_name.chars().next().and_then(spec::base_short).map(Resolved::Base)
            };
            if let Some(r) = r {
                break r;
            }
            // Unknown option: iptables loads the module named after `-p` once, then retries.
            if is_long && attempt == 0 && !proto_used {
                if let Some(p) = &proto {
                    if let Some(m) = implicit_module(p, family).and_then(|n| spec::match_spec(n, family)) {
                        proto_used = true;
                        attempt += 1;
                        matches.push(MatchAst {
                            name: Token { text: m.name.to_string(), span: tok.span },
                            implicit: true,
                            options: Vec::new(),
                        });
                        loaded.push(Loaded { spec: m, owner: Owner::Match(matches.len().saturating_sub(1)) });
                        continue;
                    }
                }
            }
            let mut e = ParseError::new(
                ErrorKind::UnknownOption,
                &tok.span,
                &tok.text,
                format!("unknown option `{}`", tok.text),
            );
            // What was expected: the options of the modules loaded so far, and the closest spelling.
            let mut known: Vec<&'static str> = Vec::new();
            for l in &loaded {
                for (n, _) in l.spec.names() {
                    if !known.contains(&n) {
                        known.push(n);
                    }
                }
            }
            if !known.is_empty() {
                let mut modules: Vec<&str> = Vec::new();
                for l in &loaded {
                    if !modules.contains(&l.spec.name) {
                        modules.push(l.spec.name);
                    }
                }
                let shown: Vec<String> = known.iter().take(12).map(|n| format!("--{n}")).collect();
                e = e.with_expected(format!(
                    "an option of {} ({}{})",
                    modules.join(", "),
                    shown.join(", "),
                    if known.len() > 12 { ", ..." } else { "" }
                ));
                let close = known
                    .iter()
                    .map(|n| (edit_distance(n, &resolved_name), *n))
                    .filter(|(d, _)| *d <= 2)
                    .min();
                if let Some((_, n)) = close {
                    e = e.with_hint(format!("did you mean `--{n}`?"));
                }
            }
            if let Some(p) = &proto {
                let lower = p.to_ascii_lowercase();
                if spec::KNOWN_UNSUPPORTED_MATCHES.contains(&lower.as_str()) {
                    e = e.with_hint(format!("the {lower} match module is not supported by statewall"));
                }
            } else if matches!(
                resolved_name.as_str(),
                "dport" | "sport" | "syn" | "tcp-flags" | "icmp-type" | "icmpv6-type"
            ) {
                e = e.with_hint(match family {
                    Family::V4 => {
                        "port and flag options need `-p tcp`/`-p udp`/`-p icmp` (or `-m tcp`...) first"
                    }
                    Family::V6 => {
                        "port and type options need `-p tcp`/`-p udp`/`-p ipv6-icmp` (or `-m tcp`...) first"
                    }
                });
            }
            if family == Family::V4 && resolved_name == "icmpv6-type" {
                e = e.with_hint(
                    "`--icmpv6-type` belongs to ip6tables: is this an ip6tables-save (IPv6) file?",
                );
            }
            if family == Family::V6 && resolved_name == "icmp-type" {
                e = e.with_hint("ip6tables matches ICMPv6 with `-p ipv6-icmp --icmpv6-type TYPE`");
            }
            if family == Family::V6
                && resolved_name.starts_with("frag")
                && "fragment".starts_with(&resolved_name)
            {
                e = e.with_hint("`-f` is not supported in IPv6, use `-m frag` instead");
            }
            return Err(e);
        };
        let negated = invert.take();
        match resolved {
            Resolved::Base(id) => {
                if let Some(n) = &negated {
                    if !id.invertible() {
                        return Err(ParseError::new(
                            ErrorKind::BadNegation,
                            &n.span,
                            "!",
                            format!("option `{}` cannot be inverted", tok.text),
                        ));
                    }
                }
                if id == BaseId::Fragment && family == Family::V6 {
                    return Err(ParseError::new(
                        ErrorKind::UnknownOption,
                        &tok.span,
                        &tok.text,
                        format!("`{}` is not an ip6tables option", tok.text),
                    )
                    .with_hint(
                        "`-f` is not supported in IPv6, use `-m frag` (e.g. `-m frag --fragmore`) instead",
                    ));
                }
                if id == BaseId::Unsupported {
                    return Err(ParseError::new(
                        ErrorKind::Syntax,
                        &tok.span,
                        &tok.text,
                        format!("`{}` is not supported in a ruleset file", tok.text),
                    )
                    .with_expected("-A CHAIN followed by the rule")
                    .with_hint("statewall reads iptables-save output: rules are `-A` lines"));
                }
                let arg = if id.takes_arg() {
                    Some(take_arg(&tok, inline_arg, &mut iter)?)
                } else {
                    if let Some(a) = inline_arg {
                        return Err(ParseError::new(
                            ErrorKind::Syntax,
                            &tok.span,
                            &tok.text,
                            format!("option `{}` takes no argument (got `{a}`)", tok.text),
                        )
                        .with_hint("this option is a flag: write it alone, without a value"));
                    }
                    None
                };
                let kind = match id {
                    BaseId::Append => {
                        if chain.is_some() {
                            return Err(ParseError::new(
                                ErrorKind::ConflictingOptions,
                                &tok.span,
                                &tok.text,
                                "more than one -A in a rule".into(),
                            ));
                        }
                        chain = arg;
                        continue;
                    }
                    BaseId::Match => {
                        let Some(name) = arg else { continue };
                        let Some(m) = spec::match_spec(&name.text, family) else {
                            let mut e = ParseError::new(
                                ErrorKind::UnknownMatch,
                                &name.span,
                                &name.text,
                                format!("unknown match module `{}`", name.text),
                            )
                            .with_expected(format!("one of {}", spec::match_names(family)));
                            if let Some(other) = spec::other_family_match(&name.text, family) {
                                e = e.with_hint(format!(
                                    "`{}` is an {} match: {} rulesets cannot use it{}",
                                    name.text,
                                    other.tool(),
                                    family.tool(),
                                    match name.text.as_str() {
                                        "ttl" => " (use `-m hl`)",
                                        "hl" => " (use `-m ttl`)",
                                        "icmp" => " (use `-p ipv6-icmp -m icmp6`)",
                                        "icmp6" => " (use `-p icmp -m icmp`)",
                                        _ => "",
                                    }
                                ));
                            } else if spec::KNOWN_UNSUPPORTED_MATCHES.contains(&name.text.as_str()) {
                                e = e.with_hint(format!(
                                    "iptables has a `{}` match but statewall does not model it",
                                    name.text
                                ));
                            }
                            return Err(e);
                        };
                        // An alias (`-m icmpv6`) is stored under the module's own name.
                        let name = Token { text: m.name.to_string(), span: name.span };
                        matches.push(MatchAst { name, implicit: false, options: Vec::new() });
                        loaded.push(Loaded { spec: m, owner: Owner::Match(matches.len().saturating_sub(1)) });
                        continue;
                    }
                    BaseId::Jump | BaseId::Goto => {
                        let Some(name) = arg else { continue };
                        if target.is_some() {
                            return Err(ParseError::new(
                                ErrorKind::ConflictingOptions,
                                &tok.span,
                                &tok.text,
                                "multiple -j/-g flags not allowed".into(),
                            ));
                        }
                        let goto = id == BaseId::Goto;
                        if !goto {
                            if let Some(t) = spec::target_spec(&name.text) {
                                loaded.push(Loaded { spec: t, owner: Owner::Target });
                            }
                        }
                        target = Some(TargetAst { goto, name, options: Vec::new() });
                        continue;
                    }
                    BaseId::Source => BaseKind::Source,
                    BaseId::Destination => BaseKind::Destination,
                    BaseId::Protocol => {
                        proto = arg.as_ref().map(|a| a.text.clone());
                        BaseKind::Protocol
                    }
                    BaseId::InInterface => BaseKind::InInterface,
                    BaseId::OutInterface => BaseKind::OutInterface,
                    BaseId::Fragment => BaseKind::Fragment,
                    BaseId::Unsupported => continue,
                };
                if base.iter().any(|b| b.kind == kind) {
                    return Err(ParseError::new(
                        ErrorKind::ConflictingOptions,
                        &tok.span,
                        &tok.text,
                        format!("option `{}` given more than once", tok.text),
                    ));
                }
                base.push(BaseOpt { kind, negated: negated.is_some(), opt: tok, arg });
            }
            Resolved::Module(li, ospec) => {
                if let Some(n) = &negated {
                    if !ospec.invert {
                        return Err(ParseError::new(
                            ErrorKind::BadNegation,
                            &n.span,
                            "!",
                            format!("option `--{}` cannot be inverted", ospec.name),
                        ));
                    }
                }
                let mut args = Vec::new();
                match ospec.nargs {
                    0 => {
                        if let Some(a) = inline_arg {
                            return Err(ParseError::new(
                                ErrorKind::Syntax,
                                &tok.span,
                                &tok.text,
                                format!("option `--{}` takes no argument (got `{a}`)", ospec.name),
                            )
                            .with_hint("this option is a flag: write it alone, without `=value`"));
                        }
                    }
                    1 => args.push(take_arg(&tok, inline_arg, &mut iter)?),
                    _ => {
                        args.push(take_arg(&tok, inline_arg, &mut iter)?);
                        match iter.peek() {
                            Some(t) if !t.text.starts_with('-') && !t.text.starts_with('!') => {
                                if let Some(t) = iter.next() {
                                    args.push(t);
                                }
                            }
                            _ => {
                                return Err(ParseError::new(
                                    ErrorKind::MissingArgument,
                                    &tok.span,
                                    &tok.text,
                                    format!("--{} requires two args", ospec.name),
                                )
                                .with_expected("MASK COMP, e.g. `--tcp-flags SYN,ACK SYN`"));
                            }
                        }
                    }
                }
                let opt = OptionAst { name: ospec.name, opt: tok, negated: negated.is_some(), args };
                let Some(l) = loaded.get(li) else { continue };
                let list = match l.owner {
                    Owner::Match(mi) => matches.get_mut(mi).map(|m| &mut m.options),
                    Owner::Target => target.as_mut().map(|t| &mut t.options),
                };
                if let Some(list) = list {
                    list.push(opt);
                }
            }
        }
    }
    if let Some(n) = invert {
        return Err(ParseError::new(
            ErrorKind::BadNegation,
            &n.span,
            "!",
            "`!` at the end of the rule".into(),
        )
        .with_expected("an option after `!`"));
    }
    let Some(chain) = chain else {
        return Err(ParseError::new(ErrorKind::Syntax, &span, "", "rule line without -A CHAIN".into())
            .with_expected("`-A CHAIN ...`"));
    };
    Ok(RuleLine { span, counters, chain, base, matches, target })
}

fn bad_argument(tok: &Token) -> ParseError {
    ParseError::new(ErrorKind::Syntax, &tok.span, &tok.text, format!("bad argument `{}`", tok.text))
        .with_expected("an option (`-x` or `--name`)")
}

fn take_arg(
    opt: &Token,
    inline: Option<String>,
    iter: &mut std::iter::Peekable<std::vec::IntoIter<Token>>,
) -> Result<Token, ParseError> {
    let arg = match inline {
        Some(text) => Token {
            text,
            span: Span {
                column: opt.span.column.saturating_add(2),
                offset: opt.span.offset.saturating_add(2),
                len: opt.span.len.saturating_sub(2),
                ..opt.span
            },
        },
        None => iter.next().ok_or_else(|| {
            ParseError::new(
                ErrorKind::MissingArgument,
                &opt.span,
                &opt.text,
                format!("option `{}` requires an argument", opt.text),
            )
        })?,
    };
    if arg.text == "!" {
        return Err(ParseError::new(
            ErrorKind::BadNegation,
            &arg.span,
            "!",
            format!("intrapositioned negation (`{} ! value`) is not supported", opt.text),
        )
        .with_hint(format!("write `! {} value`", opt.text)));
    }
    Ok(arg)
}

/// Levenshtein distance, for "did you mean" hints (short strings only).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        tokenize(s, 1, 0).unwrap().into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn tokenizer_follows_iptables_restore_quoting() {
        assert_eq!(toks(r#"-m comment --comment "a b""#), ["-m", "comment", "--comment", "a b"]);
        assert_eq!(toks(r#"--log-prefix "x: " -j"#), ["--log-prefix", "x: ", "-j"]);
        assert_eq!(toks(r#""a \"q\" \\ z""#), [r#"a "q" \ z"#]);
        assert_eq!(toks(r#"a"b c"d"#), ["ab c", "d"]);
        assert_eq!(toks(r#"x "" y"#), ["x", "", "y"]);
        assert_eq!(toks("'single quoted'"), ["'single", "quoted'"]);
        assert_eq!(toks("  a\t\tb  "), ["a", "b"]);
    }

    #[test]
    fn token_spans_point_into_the_line() {
        let t = tokenize(r#"-A x "q r" y"#, 3, 100).unwrap();
        assert_eq!(t[2].span, Span { line: 3, column: 6, offset: 105, len: 5 });
        assert_eq!(t[3].span, Span { line: 3, column: 12, offset: 111, len: 1 });
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        assert_eq!(tokenize(r#"a "b"#, 1, 0).unwrap_err().kind(), ErrorKind::Syntax);
    }

    #[test]
    fn implicit_module_is_loaded_where_first_needed() {
        let f =
            parse_file("*filter\n-A INPUT -p tcp -m conntrack --ctstate NEW --dport 22 -j ACCEPT\nCOMMIT\n")
                .unwrap();
        let Item::Rule(r) = &f.tables[0].items[0] else { panic!() };
        let names: Vec<_> = r.matches.iter().map(|m| (m.name.text.as_str(), m.implicit)).collect();
        assert_eq!(names, [("conntrack", false), ("tcp", true)]);
        assert_eq!(r.matches[1].options[0].name, "dport");
    }

    #[test]
    fn prefixes_resolve_like_getopt() {
        // `--dport` is a prefix of multiport's `--dports`.
        let f = parse_file("*filter\n-A INPUT -p tcp -m multiport --dport 5\nCOMMIT\n").unwrap();
        let Item::Rule(r) = &f.tables[0].items[0] else { panic!() };
        assert_eq!(r.matches.len(), 1);
        assert_eq!(r.matches[0].options[0].name, "dports");
        // exact `--dport` of tcp wins over the prefix.
        let f = parse_file("*filter\n-A INPUT -p tcp --syn -m multiport --dport 5\nCOMMIT\n").unwrap();
        let Item::Rule(r) = &f.tables[0].items[0] else { panic!() };
        assert_eq!(r.matches[0].options.len(), 2);
        assert!(r.matches[1].options.is_empty());
        // `--so` fits --source and --source-port: ambiguous.
        let e = parse_file("*filter\n-A INPUT -p tcp --syn --so 1\nCOMMIT\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AmbiguousOption);
    }

    #[test]
    fn newest_module_owns_duplicate_option_names() {
        let f = parse_file("*filter\n-A INPUT -m mark --mark 1 -m connmark --mark 2\nCOMMIT\n").unwrap();
        let Item::Rule(r) = &f.tables[0].items[0] else { panic!() };
        assert_eq!(r.matches[0].options.len(), 1);
        assert_eq!(r.matches[1].options[0].args[0].text, "2");
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let f = parse_file("# Generated by \"x\n\n*raw\n  # indented\nCOMMIT\n# Completed\n").unwrap();
        assert_eq!(f.tables.len(), 1);
        assert_eq!(f.tables[0].commit.line, 5);
    }

    #[test]
    fn structure_errors() {
        let e = parse_file("*filter\n:INPUT ACCEPT [0:0]\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingCommit);
        let e = parse_file("-A INPUT\n").unwrap_err();
        assert_eq!((e.kind(), e.line()), (ErrorKind::Syntax, 1));
        let e = parse_file("*filter\n-A INPUT -s ! 1.2.3.4\nCOMMIT\n").unwrap_err();
        assert_eq!((e.kind(), e.line(), e.column()), (ErrorKind::BadNegation, 2, 13));
        let e = parse_file("*filter\n-A INPUT ! ! -s 1.2.3.4\nCOMMIT\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadNegation);
        let e = parse_file("*filter\n-A INPUT -p tcp --tcp-flags SYN\nCOMMIT\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::MissingArgument);
    }
}
