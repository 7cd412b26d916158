//! Errors of [`crate::parse`] / [`crate::parse_ast`].
//!
//! Every error points at the offending token: 1-based line and column, and a byte span (offset, length)
//! into the input text, ready for a `miette` label. It says what was found, what was expected and how to
//! fix it: a hint specific to the error where the site knows one, else the hint of its [`ErrorKind`].

use std::fmt;

/// The category of a [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A line that is not `*table`, `:chain`, a rule, `COMMIT`, a comment or blank.
    Syntax,
    /// `*nat` / `*security`: known to iptables, not modelled yet.
    UnsupportedTable,
    /// A table name iptables does not know.
    UnknownTable,
    /// A table appears twice in one file.
    DuplicateTable,
    /// End of input (or a new `*table`) before `COMMIT`.
    MissingCommit,
    /// A `:chain` line declaring a chain twice.
    DuplicateChain,
    /// A rule for a chain that was not declared (and is not built in).
    UnknownChain,
    /// A policy on a user chain, a `-` policy problem, or an invalid policy.
    BadPolicy,
    /// Bad chain name (too long, reserved).
    BadChainName,
    /// `-m NAME` with a module we do not know.
    UnknownMatch,
    /// `-j NAME` that is neither a chain nor a known target.
    UnknownTarget,
    /// An option no loaded module knows.
    UnknownOption,
    /// An option prefix that fits several options.
    AmbiguousOption,
    /// An option without its argument.
    MissingArgument,
    /// A value that does not parse (address, port, number, name...).
    BadValue,
    /// `!` where it is not allowed.
    BadNegation,
    /// An option given twice, or two options that exclude each other.
    ConflictingOptions,
    /// A module without its mandatory option.
    MissingOption,
    /// A jump/goto to a chain that does not exist or cannot be jumped to.
    BadJump,
    /// Chains that jump into each other in a loop.
    Loop,
    /// A target or match used in a table/chain/protocol context the kernel refuses.
    InvalidContext,
}

/// The hint of an error whose site gives no more specific one: what the kind of mistake usually takes to fix.
fn default_hint(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Syntax => {
            "iptables-save lines are `*TABLE`, `:CHAIN POLICY [packets:bytes]`, `[packets:bytes] -A CHAIN \
             OPTIONS`, `COMMIT` and `#` comments"
        }
        ErrorKind::UnsupportedTable => "statewall models the raw, mangle and filter tables",
        ErrorKind::UnknownTable => "iptables knows the tables raw, mangle, filter, nat and security",
        ErrorKind::DuplicateTable => "write each table once per file",
        ErrorKind::MissingCommit => "end every table block with a line `COMMIT`",
        ErrorKind::DuplicateChain => "declare each chain once per table",
        ErrorKind::UnknownChain => "declare the chain with `:NAME - [0:0]` before its rules",
        ErrorKind::BadPolicy => "built-in chains take ACCEPT or DROP, user chains `-`",
        ErrorKind::BadChainName => {
            "chain names are at most 28 characters, not starting with `-` or `!`, and not a target name"
        }
        ErrorKind::UnknownMatch => {
            "check the module name; a module statewall does not model has to be left out (see `iptables -m NAME \
             --help` for what it does)"
        }
        ErrorKind::UnknownTarget => "use a built-in target or a user chain declared in the same table",
        ErrorKind::UnknownOption => {
            "check the spelling, and that the module owning the option is loaded before it with `-m NAME` (or \
             `-p PROTO` for tcp, udp and icmp)"
        }
        ErrorKind::AmbiguousOption => "write the option's full name",
        ErrorKind::MissingArgument => "give the option its value right after it",
        ErrorKind::BadValue => "write the value in the form expected (as iptables-save prints it)",
        ErrorKind::BadNegation => "a single `!` goes right before an option that can be negated",
        ErrorKind::ConflictingOptions => "give each option once, and only one of the options that exclude each other",
        ErrorKind::MissingOption => "add the module's mandatory option",
        ErrorKind::BadJump => "jump (-j) or go (-g) to user chains declared in the same table",
        ErrorKind::Loop => "a chain may not reach itself again through jumps and gotos: break the cycle",
        ErrorKind::InvalidContext => {
            "the kernel refuses this here: move the rule to a table, chain or protocol where it is valid"
        }
    }
}

/// A ruleset text error with its position (boxed: errors are rare, results stay small).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError(Box<Inner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    kind: ErrorKind,
    line: u32,
    column: u32,
    offset: usize,
    len: usize,
    token: String,
    message: String,
    expected: Option<String>,
    hint: Option<String>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        write!(f, "line {}, column {}: {}", e.line, e.column, e.message)?;
        if !e.token.is_empty() {
            write!(f, " (at `{}`)", e.token)?;
        }
        if let Some(x) = &e.expected {
            write!(f, "; expected {x}")?;
        }
        if let Some(h) = &e.hint {
            write!(f, "; hint: {h}")?;
        }
        Ok(())
    }
}

impl ParseError {
    pub(crate) fn new(kind: ErrorKind, at: &crate::ast::Span, token: &str, message: String) -> Self {
        ParseError(Box::new(Inner {
            kind,
            line: at.line,
            column: at.column,
            offset: at.offset,
            len: at.len,
            token: token.to_string(),
            message,
            expected: None,
            hint: Some(default_hint(kind).to_string()),
        }))
    }
    pub(crate) fn with_expected(mut self, e: impl Into<String>) -> Self {
        self.0.expected = Some(e.into());
        self
    }
    pub(crate) fn with_hint(mut self, h: impl Into<String>) -> Self {
        self.0.hint = Some(h.into());
        self
    }
    /// The category.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }
    /// 1-based line.
    pub fn line(&self) -> u32 {
        self.0.line
    }
    /// 1-based column (in characters).
    pub fn column(&self) -> u32 {
        self.0.column
    }
    /// (byte offset, byte length) of the offending token in the input.
    pub fn span(&self) -> (usize, usize) {
        (self.0.offset, self.0.len)
    }
    /// The offending token as written (unquoted).
    pub fn token(&self) -> &str {
        &self.0.token
    }
    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.0.message
    }
    /// What was expected instead, when known.
    pub fn expected(&self) -> Option<&str> {
        self.0.expected.as_deref()
    }
    /// How to fix it (always present: the error's own hint, or its kind's).
    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }
}
