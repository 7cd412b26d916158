//! The views conntrack-tools print: `conntrack -L` (plain and `-o extended`), `conntrack -S`, `conntrack -C`
//! and `/proc/net/stat/nf_conntrack`, the kernel's against the engine's formatters.
//!
//! Contract:
//! - [`read_kernel`] runs the tools in the firewall namespace right after `/proc/net/nf_conntrack` was read
//!   (stdout only: the `N flow entries have been shown` trailer goes to stderr) and records when each listing
//!   was started.
//! - The listings are compared like the /proc table ([`super::table`]): multisets of lines, byte for byte but
//!   for `use=`, the remaining timeout (third field in `-L`, fifth in `-o extended`) within the tolerance after
//!   the read lag, and `delta-time=`.
//! - Statistics: the kernel prints one line per CPU (`-S`) or one hex row per CPU (/proc); the counters that do
//!   not depend on the CPU layout or on timing ([`STAT_FIELDS`]) are summed over CPUs and compared with the
//!   engine's. Each kernel line must also have the engine line's shape (the same text once every number is
//!   masked, the CPU number included), and the /proc header must be the same.
//! - The expectation table: `/proc/net/nf_conntrack_expect` and `conntrack -L expect`, read right after the
//!   listings, compared the same way with the remaining timeout in the first field ([`EXPECT_TIMEOUT_FIELD`]).
//! - `conntrack -C` (the namespace's entry count) must lie between the engine's entries that are certainly
//!   still alive at the read (remaining timeout minus the lag above the tolerance) and all its live entries at
//!   its last packet.

use std::collections::BTreeMap;

use super::table::{self, CtDiff, CtLine};
use super::VerifyError;

/// The `conntrack -S` counters compared (summed over CPUs). `search_restart` is left out: it counts lockless
/// lookup restarts, which depend on concurrent table changes.
pub const STAT_FIELDS: [&str; 9] = [
    "found",
    "invalid",
    "insert",
    "insert_failed",
    "drop",
    "early_drop",
    "error",
    "clash_resolve",
    "chaintoolong",
];

/// The remaining timeout of an expectation line (`/proc/net/nf_conntrack_expect`, `conntrack -L expect`).
pub const EXPECT_TIMEOUT_FIELD: usize = 0;

/// What the tools printed in the firewall namespace.
#[derive(Debug, Clone, Default)]
pub struct KernelViews {
    /// `conntrack -L` and when it was started.
    pub list: String,
    pub list_at: wire::Time,
    /// `conntrack -L -o extended` and when it was started.
    pub extended: String,
    pub extended_at: wire::Time,
    /// `conntrack -S`.
    pub stats: String,
    /// `conntrack -C`.
    pub count: String,
    /// `/proc/net/stat/nf_conntrack`.
    pub proc_stat: String,
    /// `/proc/net/nf_conntrack_expect` and when it was read.
    pub proc_expect: String,
    pub proc_expect_at: wire::Time,
    /// `conntrack -L expect` and when it was started.
    pub list_expect: String,
    pub list_expect_at: wire::Time,
}

/// Runs the tools in namespace `ns` (`ip netns exec`).
pub fn read_kernel(ns: &str) -> Result<KernelViews, VerifyError> {
    let run = |args: &[&str]| super::netns::ns_run(ns, args, None);
    let list_at = super::io::now();
    let list = run(&["conntrack", "-L"])?;
    let extended_at = super::io::now();
    let extended = run(&["conntrack", "-L", "-o", "extended"])?;
    let stats = run(&["conntrack", "-S"])?;
    let count = run(&["conntrack", "-C"])?;
    let proc_stat = super::io::in_netns(ns, || {
        std::fs::read_to_string("/proc/thread-self/net/stat/nf_conntrack")
            .map_err(|e| VerifyError::Io { what: "reading /proc/net/stat/nf_conntrack".into(), source: e })
    })?;
    let proc_expect_at = super::io::now();
    let proc_expect = super::io::in_netns(ns, || {
        std::fs::read_to_string("/proc/thread-self/net/nf_conntrack_expect")
            .map_err(|e| VerifyError::Io { what: "reading /proc/net/nf_conntrack_expect".into(), source: e })
    })?;
    let list_expect_at = super::io::now();
    // `conntrack -L expect` lists the IPv4 family only; the IPv6 expectations need `-f ipv6`.
    let mut list_expect = run(&["conntrack", "-L", "expect"])?;
    list_expect.push_str(&run(&["conntrack", "-L", "expect", "-f", "ipv6"])?);
    Ok(KernelViews {
        list,
        list_at,
        extended,
        extended_at,
        stats,
        count,
        proc_stat,
        proc_expect,
        proc_expect_at,
        list_expect,
        list_expect_at,
    })
}

/// The engine's side of the same views.
#[derive(Debug, Clone, Default)]
pub struct EngineViews {
    pub list: String,
    pub extended: String,
    pub stats: String,
    pub proc_stat: String,
    /// `/proc/net/nf_conntrack_expect` and `conntrack -L expect`.
    pub proc_expect: String,
    pub list_expect: String,
    /// The live entries at the last packet with their remaining timeouts (seconds).
    pub remaining: Vec<u64>,
}

/// Formats the engine's views at its last packet.
pub fn engine_views(ct: &conntrack::Conntrack, now: wire::Time) -> Result<EngineViews, std::fmt::Error> {
    let mut v = EngineViews::default();
    conntrack::write_conntrack_l(ct, now, &mut v.list)?;
    conntrack::write_conntrack_l_extended(ct, now, &mut v.extended)?;
    conntrack::write_stats_conntrack_s(ct, &mut v.stats)?;
    conntrack::write_proc_stat(ct, &mut v.proc_stat)?;
    conntrack::write_proc_expect(ct, now, &mut v.proc_expect)?;
    conntrack::write_conntrack_l_expect(ct, now, &mut v.list_expect)?;
    v.remaining = ct.iter().filter(|c| !c.is_expired(now)).map(|c| c.remaining_secs(now)).collect();
    Ok(v)
}

/// A listing compared: how many lines each side has and the differences.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Listing {
    pub kernel_entries: usize,
    pub engine_entries: usize,
    pub lag_ms: f64,
    pub differences: Vec<CtDiff>,
}

impl Listing {
    pub fn disagreements(&self) -> usize {
        self.differences.iter().filter(|d| d.is_disagreement()).count()
    }
}

/// Compares one listing whose timeout is field `timeout_field`; `lag_secs` is its read time minus the engine's
/// last packet.
pub fn compare_listing(
    kernel: &str,
    engine: &str,
    timeout_field: usize,
    lag_secs: f64,
    tolerance: f64,
) -> Listing {
    let k: Vec<CtLine> = table::parse_with(kernel, timeout_field);
    let e: Vec<CtLine> = table::parse_with(engine, timeout_field);
    Listing {
        kernel_entries: k.len(),
        engine_entries: e.len(),
        lag_ms: lag_secs * 1000.0,
        differences: table::compare(&k, &e, lag_secs, tolerance),
    }
}

/// A statistics difference.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StatDiff {
    /// A counter (summed over CPUs) differs.
    Counter { view: String, field: String, kernel: u64, engine: u64 },
    /// A counter is missing on one side.
    Missing { view: String, field: String, kernel: Option<u64>, engine: Option<u64> },
    /// A kernel line does not have the shape of the engine's (numbers masked).
    Shape { view: String, kernel: String, engine: String },
}

/// Replaces every run of ASCII digits by `N`.
fn shape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_num = false;
    for ch in line.chars() {
        if ch.is_ascii_digit() {
            if !in_num {
                out.push('N');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(ch);
        }
    }
    out
}

/// The shape of a /proc/net/stat row: every 8-digit hex word replaced by `N`.
fn hex_shape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while !rest.is_empty() {
        let word_len = rest.find(' ').unwrap_or(rest.len());
        let word = rest.get(..word_len).unwrap_or("");
        if word.len() == 8 && word.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push('N');
        } else {
            out.push_str(word);
        }
        let spaces = rest.get(word_len..).unwrap_or("");
        let n = spaces.len() - spaces.trim_start_matches(' ').len();
        out.push_str(spaces.get(..n).unwrap_or(""));
        rest = spaces.get(n..).unwrap_or("");
    }
    out
}

/// `conntrack -S` counters, summed over the CPU lines.
pub fn parse_conntrack_s(text: &str) -> BTreeMap<String, u64> {
    let mut sums = BTreeMap::new();
    for line in text.lines() {
        for (k, v) in line.split_whitespace().filter_map(|t| t.split_once('=')) {
            if k == "cpu" {
                continue;
            }
            if let Ok(v) = v.parse::<u64>() {
                let e: &mut u64 = sums.entry(k.to_string()).or_default();
                *e = e.saturating_add(v);
            }
        }
    }
    sums
}

/// `/proc/net/stat/nf_conntrack` counters, summed over the CPU rows, under their `conntrack -S` names
/// (`clashres` is `clash_resolve`, `chainlength` is `chaintoolong`, `icmp_error` is `error`). `entries` is the
/// namespace total repeated on every row: kept once.
pub fn parse_proc_stat(text: &str) -> BTreeMap<String, u64> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().map(|h| h.split_whitespace().collect()).unwrap_or_default();
    let mut sums = BTreeMap::new();
    for row in lines {
        for (name, word) in header.iter().zip(row.split_whitespace()) {
            let Ok(v) = u64::from_str_radix(word, 16) else { continue };
            let name = match *name {
                "clashres" => "clash_resolve",
                "chainlength" => "chaintoolong",
                "icmp_error" => "error",
                n => n,
            };
            let e: &mut u64 = sums.entry(name.to_string()).or_default();
            *e = if name == "entries" { v } else { e.saturating_add(v) };
        }
    }
    sums
}

/// Compares the [`STAT_FIELDS`] of two summed views named `view`.
fn compare_counters(
    view: &str,
    kernel: &BTreeMap<String, u64>,
    engine: &BTreeMap<String, u64>,
    out: &mut Vec<StatDiff>,
) {
    for field in STAT_FIELDS {
        match (kernel.get(field), engine.get(field)) {
            (Some(&k), Some(&e)) if k == e => {}
            (Some(&k), Some(&e)) => {
                out.push(StatDiff::Counter { view: view.into(), field: field.into(), kernel: k, engine: e })
            }
            (k, e) => out.push(StatDiff::Missing {
                view: view.into(),
                field: field.into(),
                kernel: k.copied(),
                engine: e.copied(),
            }),
        }
    }
}

/// Every kernel line `i` must have the shape of the engine's line `min(i, per_cpu_from)` (per-CPU rows from
/// `per_cpu_from` on, all shaped like the engine's single row).
fn compare_shapes(
    view: &str,
    kernel: &str,
    engine: &str,
    shape_of: fn(&str) -> String,
    per_cpu_from: usize,
    out: &mut Vec<StatDiff>,
) {
    let elines: Vec<&str> = engine.lines().collect();
    for (i, kl) in kernel.lines().enumerate() {
        let Some(el) = elines.get(i.min(per_cpu_from)) else {
            out.push(StatDiff::Shape { view: view.into(), kernel: kl.into(), engine: String::new() });
            continue;
        };
        if shape_of(kl) != shape_of(el) {
            out.push(StatDiff::Shape { view: view.into(), kernel: kl.into(), engine: (*el).into() });
        }
    }
}

/// The statistics views compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Counters compared (both views).
    pub compared: usize,
    pub kernel_cpus: usize,
    pub differences: Vec<StatDiff>,
}

/// `conntrack -S` and `/proc/net/stat/nf_conntrack`, kernel against engine.
pub fn compare_stats(k: &KernelViews, e: &EngineViews) -> Stats {
    let mut differences = Vec::new();
    compare_counters(
        "conntrack -S",
        &parse_conntrack_s(&k.stats),
        &parse_conntrack_s(&e.stats),
        &mut differences,
    );
    compare_shapes("conntrack -S", &k.stats, &e.stats, shape, 0, &mut differences);
    compare_counters(
        "/proc/net/stat/nf_conntrack",
        &parse_proc_stat(&k.proc_stat),
        &parse_proc_stat(&e.proc_stat),
        &mut differences,
    );
    compare_shapes("/proc/net/stat/nf_conntrack", &k.proc_stat, &e.proc_stat, hex_shape, 1, &mut differences);
    Stats { compared: 2 * STAT_FIELDS.len(), kernel_cpus: k.stats.lines().count(), differences }
}

/// `conntrack -C` against the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Count {
    /// What `conntrack -C` printed (None: not a number).
    pub kernel: Option<u64>,
    /// Engine entries certainly alive at the read, and all its live entries at its last packet.
    pub engine_min: u64,
    pub engine_max: u64,
}

impl Count {
    pub fn agrees(&self) -> bool {
        self.kernel.is_some_and(|k| (self.engine_min..=self.engine_max).contains(&k))
    }
}

/// The count check; `lag_secs`: the count's read time minus the engine's last packet.
pub fn compare_count(kernel: &str, remaining: &[u64], lag_secs: f64, tolerance: f64) -> Count {
    let alive = remaining.iter().filter(|&&t| t as f64 - lag_secs > tolerance).count();
    Count { kernel: kernel.trim().parse().ok(), engine_min: alive as u64, engine_max: remaining.len() as u64 }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    // What a 2-CPU kernel printed (T7c of the reference, spread over two CPUs).
    const S2: &str = "cpu=0   \tfound=0 invalid=1 insert=0 insert_failed=0 drop=0 early_drop=0 error=3 search_restart=0 clash_resolve=0 chaintoolong=0 \n\
cpu=1   \tfound=0 invalid=1 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 search_restart=7 clash_resolve=0 chaintoolong=0 \n";
    const PROC2: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
00000001  00000000 00000000 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000003  00000000 00000000 00000000 00000000\n\
00000001  00000000 00000000 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000\n";

    fn engine_with(invalid: u64, error: u64) -> EngineViews {
        let s = conntrack::Stats { invalid, error, ..Default::default() };
        EngineViews {
            stats: format!("{s} \n"),
            proc_stat: PROC2.lines().take(2).map(|l| format!("{l}\n")).collect::<String>().replace(
                "00000001  00000000 00000000 00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000003",
                &format!(
                    "00000001  00000000 00000000 00000000 {invalid:08x} 00000000 00000000 00000000 00000000 00000000 00000000 00000000 {error:08x}"
                ),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn per_cpu_statistics_are_summed_and_shaped_like_the_engines() {
        let k = KernelViews { stats: S2.into(), proc_stat: PROC2.into(), ..Default::default() };
        assert_eq!(parse_conntrack_s(S2)["invalid"], 2);
        assert_eq!(parse_proc_stat(PROC2)["error"], 3);
        assert_eq!(parse_proc_stat(PROC2)["entries"], 1);
        let s = compare_stats(&k, &engine_with(2, 3));
        assert_eq!(s.differences, vec![], "search_restart is not compared");
        assert_eq!(s.kernel_cpus, 2);
        let s = compare_stats(&k, &engine_with(1, 3));
        assert_eq!(
            s.differences,
            vec![
                StatDiff::Counter {
                    view: "conntrack -S".into(),
                    field: "invalid".into(),
                    kernel: 2,
                    engine: 1
                },
                StatDiff::Counter {
                    view: "/proc/net/stat/nf_conntrack".into(),
                    field: "invalid".into(),
                    kernel: 2,
                    engine: 1
                },
            ]
        );
    }

    #[test]
    fn a_line_of_another_shape_is_a_difference() {
        // The engine forgot the tool's trailing space.
        let k = KernelViews { stats: S2.into(), proc_stat: PROC2.into(), ..Default::default() };
        let mut e = engine_with(2, 3);
        e.stats = e.stats.replace(" \n", "\n");
        let s = compare_stats(&k, &e);
        assert_eq!(s.differences.len(), 2, "{:?}", s.differences);
        assert!(s
            .differences
            .iter()
            .all(|d| matches!(d, StatDiff::Shape { view, .. } if view == "conntrack -S")));
    }

    #[test]
    fn listings_compare_with_the_timeout_in_the_third_field() {
        let k = "udp      17 27 src=203.0.113.80 dst=192.0.2.10 sport=41966 dport=33333 [UNREPLIED] src=192.0.2.10 dst=203.0.113.80 sport=33333 dport=41966 mark=0 use=1\n";
        let e = k.replace(" 27 ", " 29 ");
        let l = compare_listing(k, &e, table::LIST_TIMEOUT_FIELD, 1.5, 2.0);
        assert_eq!((l.kernel_entries, l.engine_entries, l.disagreements()), (1, 1, 0));
        let l = compare_listing(k, &e.replace(" 29 ", " 59 "), table::LIST_TIMEOUT_FIELD, 1.5, 2.0);
        assert!(matches!(l.differences.as_slice(), [CtDiff::Timeout { kernel: 27, engine: 59, .. }]));
        // One space less after the protocol name: byte for byte, a difference.
        let l =
            compare_listing(k, &e.replace("udp      17", "udp     17"), table::LIST_TIMEOUT_FIELD, 1.5, 2.0);
        assert_eq!(l.disagreements(), 2, "{:?}", l.differences);
    }

    #[test]
    fn the_count_lies_between_certainly_alive_and_all_live_entries() {
        // Entries with 29 s, 1 s and 0 s left at the last packet; the count was read 0.5 s later.
        let c = compare_count("3\n", &[29, 1, 0], 0.5, 2.0);
        assert_eq!((c.engine_min, c.engine_max), (1, 3));
        assert!(c.agrees());
        assert!(compare_count("1", &[29, 1, 0], 0.5, 2.0).agrees());
        assert!(!compare_count("4", &[29, 1, 0], 0.5, 2.0).agrees());
        assert!(!compare_count("0", &[29, 1, 0], 0.5, 2.0).agrees());
        assert!(!compare_count("x", &[], 0.5, 2.0).agrees());
    }
}
