//! What `verify` found for one capture, and its text form.
//!
//! Contract: [`CaptureReport`] is the structured result (`--format json` prints it); [`CaptureReport::status`]
//! is `agree` only when every compared packet fate, every counter, the conntrack table and the conntrack-tools
//! views ([`Views`]) agree; a disagreement with packets the kernel could not see as captured is
//! `inconclusive`. [`text`] renders one line per capture and then the differences, side by side, at most
//! [`SHOW`] of each kind.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::counters::CounterRow;
use super::events::{EventDiff, Events};
use super::fate::Fate;
use super::table::CtDiff;
use super::views::{Count, Listing, StatDiff, Stats};

/// How many differences of each kind the text report lists (all of them are in `--out` and the JSON).
pub const SHOW: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Agree,
    Disagree,
    Inconclusive,
}

/// A packet whose fate differs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FateDiff {
    pub index: usize,
    pub kernel: Fate,
    pub engine: Fate,
    /// Sent packets sharing its key (identical packets; fragments of one datagram).
    pub group: usize,
    pub flow: Option<String>,
    pub path: Option<String>,
    pub ctstate: Option<String>,
    pub rule: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Packets {
    pub compared: usize,
    pub kernel_passed: usize,
    pub engine_passed: usize,
    pub differences: Vec<FateDiff>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub compared: usize,
    pub differences: Vec<CounterRow>,
    /// Why the counters could not be compared, if they could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Table {
    pub kernel_entries: usize,
    pub engine_entries: usize,
    /// Kernel read time minus the last send time.
    pub lag_ms: f64,
    pub tolerance_secs: f64,
    pub differences: Vec<CtDiff>,
}

/// Everything verify reports for one capture.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CaptureReport {
    pub capture: String,
    pub status: Status,
    pub frames: usize,
    pub sent: usize,
    pub skipped: BTreeMap<String, u64>,
    /// Set when the capture file ended early or was corrupt (only the records read were used).
    pub partial: Option<String>,
    /// Packets the kernel could not see as captured (`record N: why`), including sends it refused.
    pub unfaithful: Vec<String>,
    /// Packets seen coming out of the kernel (delivered or emitted).
    pub observed: u64,
    /// `[packets, bytes]` the suppression rule dropped (the stack's own replies).
    pub suppressed: Option<(u64, u64)>,
    /// The same in ip6tables (the stack's own IPv6 replies, MLD reports), when IPv6 is verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed6: Option<(u64, u64)>,
    pub packets: Packets,
    pub counters: Counters,
    pub conntrack: Table,
    /// What conntrack-tools print (`-L`, `-L -o extended`, `-S`, `-C`, `-E`) and /proc/net/stat.
    pub views: Views,
}

/// The conntrack-tools views compared.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Views {
    /// Why they were not compared (conntrack-tools not installed).
    pub skipped: Option<String>,
    /// `conntrack -L`.
    pub list: Option<Listing>,
    /// `conntrack -L -o extended`.
    pub extended: Option<Listing>,
    /// `conntrack -S` and `/proc/net/stat/nf_conntrack`.
    pub stats: Option<Stats>,
    /// `conntrack -C`.
    pub count: Option<Count>,
    /// `/proc/net/nf_conntrack_expect`.
    pub proc_expect: Option<Listing>,
    /// `conntrack -L expect`.
    pub list_expect: Option<Listing>,
    /// `conntrack -E -o timestamp`.
    pub events: Option<Events>,
    /// `conntrack -E expect -o timestamp`.
    pub expect_events: Option<Events>,
}

impl Views {
    /// Differences that make a disagreement.
    pub fn disagreements(&self) -> usize {
        self.list.as_ref().map_or(0, Listing::disagreements)
            + self.extended.as_ref().map_or(0, Listing::disagreements)
            + self.proc_expect.as_ref().map_or(0, Listing::disagreements)
            + self.list_expect.as_ref().map_or(0, Listing::disagreements)
            + self.stats.as_ref().map_or(0, |s| s.differences.len())
            + usize::from(self.count.as_ref().is_some_and(|c| !c.agrees()))
            + self.events.as_ref().map_or(0, Events::disagreements)
            + self.expect_events.as_ref().map_or(0, Events::disagreements)
    }
}

impl CaptureReport {
    /// Fills in `status` from the comparisons.
    pub fn decide(&mut self) {
        let agree = self.packets.differences.is_empty()
            && self.counters.differences.is_empty()
            && self.counters.error.is_none()
            && !self.conntrack.differences.iter().any(CtDiff::is_disagreement)
            && self.views.disagreements() == 0;
        self.status = if agree {
            Status::Agree
        } else if self.unfaithful.is_empty() {
            Status::Disagree
        } else {
            Status::Inconclusive
        };
    }

    fn table_disagreements(&self) -> usize {
        self.conntrack.differences.iter().filter(|d| d.is_disagreement()).count()
    }

    /// The one-line summary.
    pub fn line(&self) -> String {
        let status = match self.status {
            Status::Agree => "AGREE",
            Status::Disagree => "DISAGREE",
            Status::Inconclusive => "INCONCLUSIVE",
        };
        let skipped: u64 = self.skipped.values().sum();
        let views = if self.views.skipped.is_some() {
            "not compared".to_string()
        } else {
            format!("{} differences", self.views.disagreements())
        };
        format!(
            "{status:<12} {}: {} frames, {} sent ({skipped} skipped); fates {}/{} agree; counters {}/{} agree; \
conntrack {} kernel vs {} engine entries, {} differences (read lag {:.0} ms); views {views}",
            self.capture,
            self.frames,
            self.sent,
            self.packets.compared - self.packets.differences.len().min(self.packets.compared),
            self.packets.compared,
            self.counters.compared - self.counters.differences.len().min(self.counters.compared),
            self.counters.compared,
            self.conntrack.kernel_entries,
            self.conntrack.engine_entries,
            self.table_disagreements(),
            self.conntrack.lag_ms,
        )
    }
}

fn fate(f: Fate) -> &'static str {
    match f {
        Fate::Passed => "passed",
        Fate::Dropped => "dropped",
    }
}

fn counters(c: Option<(u64, u64)>) -> String {
    match c {
        Some((p, b)) => format!("[{p}:{b}]"),
        None => "(none)".into(),
    }
}

/// The text report of one capture: its line, then the differences.
pub fn text(r: &CaptureReport) -> String {
    let mut o = String::new();
    let _ = body(&mut o, r);
    o
}

fn body(o: &mut String, r: &CaptureReport) -> std::fmt::Result {
    writeln!(o, "{}", r.line())?;
    if let Some(p) = &r.partial {
        writeln!(o, "  partial capture: {p}")?;
    }
    for (why, n) in &r.skipped {
        writeln!(o, "  skipped {n}: {why}")?;
    }
    if let Some((p, b)) = r.suppressed {
        writeln!(o, "  stack replies suppressed in raw OUTPUT: {p} packets, {b} bytes")?;
    }
    if let Some((p, b)) = r.suppressed6 {
        writeln!(o, "  stack packets suppressed in ip6tables raw OUTPUT: {p} packets, {b} bytes")?;
    }
    if !r.packets.differences.is_empty() {
        writeln!(
            o,
            "  packets: {} of {} differ (kernel passed {}, engine passed {})",
            r.packets.differences.len(),
            r.packets.compared,
            r.packets.kernel_passed,
            r.packets.engine_passed
        )?;
        for d in r.packets.differences.iter().take(SHOW) {
            let group = if d.group > 1 { format!(" (1 of {} identical)", d.group) } else { String::new() };
            writeln!(
                o,
                "    #{:<6} kernel {:<7} engine {:<7} {}{group}",
                d.index,
                fate(d.kernel),
                fate(d.engine),
                d.flow.as_deref().unwrap_or("?")
            )?;
            writeln!(
                o,
                "             engine: path {}, {}, rule {}",
                d.path.as_deref().unwrap_or("-"),
                d.ctstate.as_deref().unwrap_or("-"),
                d.rule.as_deref().unwrap_or("-")
            )?;
        }
        more(o, r.packets.differences.len())?;
    }
    if let Some(e) = &r.counters.error {
        writeln!(o, "  counters: not compared: {e}")?;
    }
    if !r.counters.differences.is_empty() {
        writeln!(o, "  counters: {} of {} differ", r.counters.differences.len(), r.counters.compared)?;
        for c in r.counters.differences.iter().take(SHOW) {
            writeln!(o, "    {:<24} {}", c.name, c.text)?;
            let delta = match (c.kernel, c.engine) {
                (Some(k), Some(e)) => format!(
                    "  delta [{:+}:{:+}]",
                    i128::from(e.0) - i128::from(k.0),
                    i128::from(e.1) - i128::from(k.1)
                ),
                _ => String::new(),
            };
            writeln!(
                o,
                "    {:<24} kernel {}  engine {}{delta}",
                "",
                counters(c.kernel),
                counters(c.engine)
            )?;
            if let Some(t) = &c.engine_text {
                writeln!(o, "    {:<24} (engine prints it as: {t})", "")?;
            }
        }
        more(o, r.counters.differences.len())?;
    }
    if !r.conntrack.differences.is_empty() {
        writeln!(
            o,
            "  conntrack: kernel {} entries, engine {}: {} differences (lag {:.0} ms, tolerance ±{} s)",
            r.conntrack.kernel_entries,
            r.conntrack.engine_entries,
            r.table_disagreements(),
            r.conntrack.lag_ms,
            r.conntrack.tolerance_secs
        )?;
        for d in r.conntrack.differences.iter().take(SHOW) {
            ct_diff(o, d)?;
        }
        more(o, r.conntrack.differences.len())?;
    }
    views(o, &r.views)?;
    if !r.unfaithful.is_empty() {
        let why = match r.status {
            Status::Inconclusive => ": the differences above may come from them",
            _ => "",
        };
        writeln!(o, "  {} packets could not be shown to the kernel as captured{why}:", r.unfaithful.len())?;
        for u in r.unfaithful.iter().take(SHOW) {
            writeln!(o, "    {u}")?;
        }
        more(o, r.unfaithful.len())?;
    }
    Ok(())
}

fn ct_diff(o: &mut String, d: &CtDiff) -> std::fmt::Result {
    match d {
        CtDiff::Timeout { kernel, engine, expected, line } => writeln!(
            o,
            "    timeout: kernel {kernel} s, engine {engine} s (expected {expected:.1} at read time)\n      {line}"
        ),
        CtDiff::DeltaTime { kernel, engine, expected, line } => writeln!(
            o,
            "    delta-time: kernel {kernel} s, engine {engine} s (expected {expected:.1} at read time)\n      {line}"
        ),
        CtDiff::OnlyKernel { line } => writeln!(o, "    only in kernel: {line}"),
        CtDiff::OnlyEngine { line } => writeln!(o, "    only in engine: {line}"),
        CtDiff::ExpiredInLag { line } => {
            writeln!(o, "    (tolerated: expires within the read lag) only in engine: {line}")
        }
    }
}

fn views(o: &mut String, v: &Views) -> std::fmt::Result {
    if let Some(why) = &v.skipped {
        writeln!(o, "  views: not compared: {why}")?;
        return Ok(());
    }
    for (name, l) in [
        ("conntrack -L", &v.list),
        ("conntrack -L -o extended", &v.extended),
        ("/proc/net/nf_conntrack_expect", &v.proc_expect),
        ("conntrack -L expect", &v.list_expect),
    ] {
        let Some(l) = l else { continue };
        if l.differences.is_empty() {
            continue;
        }
        writeln!(
            o,
            "  {name}: kernel {} entries, engine {}: {} differences (lag {:.0} ms)",
            l.kernel_entries,
            l.engine_entries,
            l.disagreements(),
            l.lag_ms
        )?;
        for d in l.differences.iter().take(SHOW) {
            ct_diff(o, d)?;
        }
        more(o, l.differences.len())?;
    }
    if let Some(s) = v.stats.as_ref().filter(|s| !s.differences.is_empty()) {
        writeln!(o, "  statistics: {} differences (kernel CPUs {})", s.differences.len(), s.kernel_cpus)?;
        for d in s.differences.iter().take(SHOW) {
            match d {
                StatDiff::Counter { view, field, kernel, engine } => {
                    writeln!(o, "    {view}: {field}: kernel {kernel}, engine {engine}")?
                }
                StatDiff::Missing { view, field, kernel, engine } => {
                    writeln!(o, "    {view}: {field}: kernel {kernel:?}, engine {engine:?}")?
                }
                StatDiff::Shape { view, kernel, engine } => writeln!(
                    o,
                    "    {view}: line shape differs\n      kernel: {kernel:?}\n      engine: {engine:?}"
                )?,
            }
        }
        more(o, s.differences.len())?;
    }
    if let Some(c) = v.count.as_ref().filter(|c| !c.agrees()) {
        let k = c.kernel.map_or_else(|| "(not a number)".to_string(), |k| k.to_string());
        writeln!(o, "  conntrack -C: kernel {k}, engine {}..={} entries", c.engine_min, c.engine_max)?;
    }
    for (name, e) in [("events", &v.events), ("expectation events", &v.expect_events)] {
        let Some(e) = e else { continue };
        if let Some(n) = &e.note {
            writeln!(o, "  {name}: not compared: {n}")?;
        }
        if !e.differences.is_empty() {
            writeln!(
                o,
                "  {name}: kernel {}, engine {} over {} connections: {} differences (max packet skew {:.1} ms)",
                e.kernel_events,
                e.engine_events,
                e.connections,
                e.disagreements(),
                e.max_skew_ms
            )?;
            for d in e.differences.iter().take(SHOW) {
                match d {
                    EventDiff::Differs { kernel, engine, .. } => {
                        writeln!(o, "    differs:\n      kernel: {kernel}\n      engine: {engine}")?
                    }
                    EventDiff::OnlyKernel { line, .. } => writeln!(o, "    only in kernel: {line}")?,
                    EventDiff::OnlyEngine { line, .. } => writeln!(o, "    only in engine: {line}")?,
                    EventDiff::Timeout { kernel, engine, line } => {
                        writeln!(o, "    timeout: kernel {kernel} s, engine {engine} s\n      {line}")?
                    }
                    EventDiff::DeltaTime { kernel, engine, line } => {
                        writeln!(o, "    delta-time: kernel {kernel} s, engine {engine} s\n      {line}")?
                    }
                    EventDiff::Timestamp { skew_ms, line, .. } => {
                        writeln!(o, "    timestamp: kernel {skew_ms:+.1} ms from the engine's\n      {line}")?
                    }
                    EventDiff::ExpiredAfterEnd { line } => writeln!(
                        o,
                        "    (tolerated: expired while the kernel's state was read) only in kernel: {line}"
                    )?,
                }
            }
            more(o, e.differences.len())?;
        }
    }
    Ok(())
}

fn more(o: &mut String, n: usize) -> std::fmt::Result {
    if n > SHOW {
        writeln!(o, "    ... {} more (see --out or --format json)", n - SHOW)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn report() -> CaptureReport {
        CaptureReport {
            capture: "p2p.pcap".into(),
            status: Status::Agree,
            frames: 3,
            sent: 2,
            skipped: BTreeMap::from([("not IPv4".to_string(), 1)]),
            partial: None,
            unfaithful: vec![],
            observed: 1,
            suppressed: Some((1, 40)),
            suppressed6: None,
            packets: Packets { compared: 2, kernel_passed: 1, engine_passed: 1, differences: vec![] },
            counters: Counters { compared: 4, differences: vec![], error: None },
            conntrack: Table {
                kernel_entries: 1,
                engine_entries: 1,
                lag_ms: 210.0,
                tolerance_secs: 2.0,
                differences: vec![],
            },
            views: Views::default(),
        }
    }

    #[test]
    fn agreement_and_inconclusive_disagreement() {
        let mut r = report();
        r.decide();
        assert_eq!(r.status, Status::Agree);
        assert!(r.line().starts_with("AGREE        p2p.pcap: 3 frames, 2 sent (1 skipped); fates 2/2 agree"));
        r.counters.differences.push(CounterRow {
            name: "filter:INPUT:1".into(),
            text: "-A INPUT -j ACCEPT".into(),
            kernel: Some((2, 100)),
            engine: Some((3, 160)),
            engine_text: None,
        });
        r.decide();
        assert_eq!(r.status, Status::Disagree);
        let t = text(&r);
        assert!(t.contains("counters: 1 of 4 differ"), "{t}");
        assert!(t.contains("kernel [2:100]  engine [3:160]  delta [+1:+60]"), "{t}");
        r.unfaithful.push("record 7: truncated by the capture".into());
        r.decide();
        assert_eq!(r.status, Status::Inconclusive);
        assert!(text(&r).contains("the differences above may come from them"));
        // A difference tolerated in the table does not make a disagreement.
        let mut r = report();
        r.conntrack.differences.push(CtDiff::ExpiredInLag { line: "x".into() });
        r.decide();
        assert_eq!(r.status, Status::Agree);
    }

    #[test]
    fn a_view_difference_is_a_disagreement_and_shown() {
        let mut r = report();
        r.views.count = Some(Count { kernel: Some(3), engine_min: 2, engine_max: 3 });
        r.views.events = Some(Events {
            differences: vec![EventDiff::ExpiredAfterEnd { line: "[DESTROY] udp 17 src=a".into() }],
            ..Default::default()
        });
        r.decide();
        assert_eq!(r.status, Status::Agree, "a tolerated DESTROY and a count in range agree");
        assert!(r.line().ends_with("; views 0 differences"), "{}", r.line());
        r.views.stats = Some(Stats {
            compared: 18,
            kernel_cpus: 2,
            differences: vec![StatDiff::Counter {
                view: "conntrack -S".into(),
                field: "invalid".into(),
                kernel: 2,
                engine: 1,
            }],
        });
        r.views.count = Some(Count { kernel: Some(5), engine_min: 2, engine_max: 3 });
        r.decide();
        assert_eq!(r.status, Status::Disagree);
        let t = text(&r);
        assert!(t.contains("views 2 differences"), "{t}");
        assert!(t.contains("    conntrack -S: invalid: kernel 2, engine 1"), "{t}");
        assert!(t.contains("  conntrack -C: kernel 5, engine 2..=3 entries"), "{t}");
        // Without conntrack-tools: a note, not a disagreement.
        let mut r = report();
        r.views.skipped = Some("conntrack is not installed".into());
        r.decide();
        assert_eq!(r.status, Status::Agree);
        assert!(text(&r).contains("views: not compared: conntrack is not installed"));
    }
}
