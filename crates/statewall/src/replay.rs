//! `statewall replay`: the driver that feeds captures to one engine, and its outputs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use engine::{CtStateLabel, Decision, Disposition, Engine, PacketPath, Verdict};
use wire::Time;

use crate::cli::{Format, HostArgs, ReplayArgs, StatsFormat, TableFormat};
use crate::load::{self, LoadedCapture, OpenCapture};
use crate::report;

/// One packet's result, as the outputs need it.
pub struct PacketResult {
    /// 0-based index over all captures, in order.
    pub index: usize,
    /// Which capture file (0-based) and the index inside it.
    pub file: usize,
    pub file_index: usize,
    pub ts: Time,
    pub decision: Decision,
}

/// Per-capture facts for the summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaptureInfo {
    pub path: String,
    pub format: String,
    pub packets: usize,
    /// Set when the file ended early or was corrupt: what and where.
    pub partial: Option<String>,
}

/// Everything `replay` reports (the JSON summary is this, serialised).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub captures: Vec<CaptureInfo>,
    pub partial: bool,
    pub packets: u64,
    pub filtered: u64,
    pub by_path: BTreeMap<String, u64>,
    pub by_verdict: BTreeMap<String, u64>,
    pub by_ctstate: BTreeMap<String, u64>,
    pub invalid: u64,
    pub not_ip: u64,
    pub not_filtered: u64,
    pub undecodable: u64,
    pub undecodable_reasons: BTreeMap<String, u64>,
    pub fragments_held: u64,
    pub fragments_dropped: u64,
    /// Dropped by IPv4 input before any hook (bad header checksum).
    pub ip_input_drops: u64,
    pub reject_replies: u64,
    pub conntrack_drops: u64,
    /// The first packet conntrack dropped ("nf_conntrack: table full, dropping packet"): index and time.
    pub first_conntrack_drop: Option<(usize, f64)>,
    pub clock_regressions: u64,
    pub table_peak: usize,
    pub table_final: usize,
    /// Time-weighted mean table size over the capture's duration.
    pub table_average: f64,
    /// Entries created (confirmed) during the replay.
    pub connections: u64,
    pub first_ts: Option<f64>,
    pub last_ts: Option<f64>,
    pub duration_secs: f64,
    /// Packets whose rule walk after conntrack a remembered path replaced (the established-flow fast path;
    /// 0 with `--no-fast-path`).
    pub fast_path_packets: u64,
    /// Wall-clock processing rate (the only non-deterministic figure; left out of golden tests).
    pub packets_per_sec: f64,
}

/// A resolved replay setup.
pub struct Setup {
    pub ruleset: rules::Ruleset,
    /// The IPv6 ruleset (`--rules6`).
    pub ruleset6: Option<rules::Ruleset>,
    pub host: engine::Host,
    pub config: conntrack::Config,
    pub defrag: wire::defrag::DefragConfig,
}

pub fn setup(rules_path: &Path, host: &HostArgs) -> miette::Result<Setup> {
    let ruleset6 = match &host.rules6 {
        Some(p) => Some(load::ruleset_family(p, rules::Family::V6)?),
        None => None,
    };
    Ok(Setup {
        ruleset: load::ruleset(rules_path)?,
        ruleset6,
        host: load::host(host)?,
        config: load::conntrack_config(host)?,
        defrag: load::defrag_config(host)?,
    })
}

/// How to run the engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    pub progress: bool,
    /// Record each packet's TRACE in its decision.
    pub tracing: bool,
    /// Produce conntrack events (`conntrack -E`) for the event sink. Off, the engine runs with
    /// `nf_conntrack_events=0` and never formats an event (half the cost of a new connection otherwise).
    pub events: bool,
    /// Walk every table for every packet (no remembered rule paths; the results are the same).
    pub no_fast_path: bool,
}

/// Runs every record of `captures` (loaded whole) through a fresh engine, calling `sink` for each packet and
/// `events` for each conntrack event (drained after every packet and at the end).
pub fn run_engine_with(
    setup: Setup,
    captures: &[LoadedCapture],
    opts: RunOptions,
    mut sink: impl FnMut(&PacketResult),
    mut events: impl FnMut(&conntrack::Event),
) -> (Engine, Summary) {
    let mut run = Runner::new(setup, opts);
    let total: usize = captures.iter().map(|c| c.capture.records.len()).sum();
    let bar =
        progress_bar(opts.progress, total as u64, 100_000, "{pos}/{len} packets ({per_sec}, eta {eta})");
    for (file, c) in captures.iter().enumerate() {
        run.begin_capture(&c.path, c.capture.format);
        for r in &c.capture.records {
            let p = run.handle_packet(file, r.index, r.ts, r.linktype, &r.data, r.origlen);
            sink(&p);
            while let Some(e) = run.poll_event() {
                events(&e);
            }
            if let Some(b) = &bar {
                if run.packets().is_multiple_of(4096) {
                    b.set_position(run.packets() as u64);
                }
            }
        }
        run.end_capture(c.capture.records.len(), c.capture.truncated.as_ref());
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    while let Some(e) = run.poll_event() {
        events(&e);
    }
    run.finish()
}

/// [`run_engine_with`] over opened captures, in one streaming pass over each (the progress bar counts bytes).
pub fn run_stream(
    setup: Setup,
    captures: &mut [OpenCapture],
    opts: RunOptions,
    mut sink: impl FnMut(&PacketResult),
    mut events: impl FnMut(&conntrack::Event),
) -> (Engine, Summary) {
    let mut run = Runner::new(setup, opts);
    let mut feed = Feed::new(opts.progress, captures);
    while let Some(step) = feed.next_step() {
        match step {
            FeedStep::Begin { path, format } => run.begin_capture(path, format),
            FeedStep::Packet { file, r } => {
                let p = run.handle_packet(file, r.index, r.ts, r.linktype, r.data, r.origlen);
                sink(&p);
                while let Some(e) = run.poll_event() {
                    events(&e);
                }
            }
            FeedStep::End { packets, partial } => run.end_capture(packets, partial),
        }
    }
    feed.finish();
    while let Some(e) = run.poll_event() {
        events(&e);
    }
    run.finish()
}

/// What [`Feed`] hands out: a capture starts, one of its packets, it ends (with its packet count and what
/// stopped it early).
pub enum FeedStep<'a> {
    Begin { path: &'a Path, format: wire::capture::CaptureFormat },
    Packet { file: usize, r: wire::capture::RecordRef<'a> },
    End { packets: usize, partial: Option<&'a wire::CaptureError> },
}

/// Walks opened captures in order, one record at a time, with a progress bar over their bytes.
pub struct Feed<'c> {
    captures: &'c mut [OpenCapture],
    file: usize,
    /// The current file has been announced (`Begin` given).
    begun: bool,
    packets: usize,
    stop: Option<wire::CaptureError>,
    /// Bytes of the files before the current one.
    done_bytes: u64,
    bar: Option<indicatif::ProgressBar>,
}

impl<'c> Feed<'c> {
    pub fn new(progress: bool, captures: &'c mut [OpenCapture]) -> Self {
        let total: u64 = captures.iter().map(|c| c.size).sum();
        let bar = progress_bar(
            progress,
            total,
            8 << 20,
            "{bytes}/{total_bytes} ({binary_bytes_per_sec}, eta {eta})",
        );
        Feed { captures, file: 0, begun: false, packets: 0, stop: None, done_bytes: 0, bar }
    }

    /// The next step, `None` after the last capture's `End`.
    pub fn next_step(&mut self) -> Option<FeedStep<'_>> {
        let c = self.captures.get_mut(self.file)?;
        if !self.begun {
            self.begun = true;
            self.packets = 0;
            self.stop = None;
            return Some(FeedStep::Begin { path: &c.path, format: c.reader.format() });
        }
        if self.stop.is_none() {
            match c.reader.next_record() {
                Some(Ok(r)) => {
                    self.packets += 1;
                    if let Some(b) = &self.bar {
                        if self.packets.is_multiple_of(4096) {
                            b.set_position(self.done_bytes.saturating_add(r.offset));
                        }
                    }
                    return Some(FeedStep::Packet { file: self.file, r });
                }
                Some(Err(e)) => self.stop = Some(e),
                None => {}
            }
        }
        // This file is over.
        self.done_bytes = self.done_bytes.saturating_add(c.size);
        self.file += 1;
        self.begun = false;
        Some(FeedStep::End { packets: self.packets, partial: self.stop.as_ref() })
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// A fresh engine for `setup` with `opts` (events off unless asked for: formatting them costs).
pub fn engine_for(setup: &Setup, opts: RunOptions) -> Engine {
    let mut config = setup.config.clone();
    if !opts.events {
        // Events only matter to a consumer; the sysctl exists in every kernel (default 2).
        let _ = config.set("net.netfilter.nf_conntrack_events", "0");
    }
    let mut engine = Engine::new(setup.ruleset.clone(), setup.host.clone(), config);
    if let Some(r6) = &setup.ruleset6 {
        engine = engine.with_ipv6_rules(r6.clone());
    }
    engine.set_tracing(opts.tracing);
    engine.set_fast_path(!opts.no_fast_path);
    engine.set_defrag_config(setup.defrag);
    engine
}

/// One engine fed packet by packet, keeping the [`Summary`].
pub struct Runner {
    engine: Engine,
    tally: Tally,
    index: usize,
}

/// The summary's running figures, fed one decision at a time (by [`Runner`], or by the sharded replay from
/// its merged stream).
pub struct Tally {
    pub s: Summary,
    index: usize,
    last_sample: Option<(Time, usize)>,
    area: f64,
    started: std::time::Instant,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            s: Summary::default(),
            index: 0,
            last_sample: None,
            area: 0.0,
            started: std::time::Instant::now(),
        }
    }
}

impl Tally {
    /// A capture file starts.
    pub fn begin_capture(&mut self, path: &Path, format: wire::capture::CaptureFormat) {
        self.s.captures.push(CaptureInfo {
            path: path.display().to_string(),
            format: format!("{format:?}").to_lowercase(),
            packets: 0,
            partial: None,
        });
    }

    /// The current capture file is over: `packets` records, stopped early by `partial` if set.
    pub fn end_capture(&mut self, packets: usize, partial: Option<&wire::CaptureError>) {
        if let Some(c) = self.s.captures.last_mut() {
            c.packets = packets;
            c.partial = partial.map(|e| e.to_string());
        }
    }

    /// One packet's decision; `now` is the engine clock after it and `len` the table size.
    pub fn record(&mut self, d: &Decision, ts: Time, now: Time, len: usize) {
        let s = &mut self.s;
        account(s, d);
        if d.ct_dropped && s.first_conntrack_drop.is_none() {
            s.first_conntrack_drop = Some((self.index, ts.as_secs_f64()));
        }
        if let Some((t0, l0)) = self.last_sample {
            self.area += l0 as f64 * now.nanos_since(t0) as f64 / 1e9;
        }
        self.last_sample = Some((now, len));
        s.first_ts.get_or_insert(now.as_secs_f64());
        s.last_ts = Some(now.as_secs_f64());
        s.table_peak = s.table_peak.max(len);
        self.index += 1;
    }

    /// The finished summary: `table_final` entries left, `clock_regressions` counted.
    pub fn finish(self, table_final: usize, clock_regressions: u64) -> Summary {
        let Tally { mut s, area, started, .. } = self;
        let elapsed = started.elapsed().as_secs_f64();
        s.partial = s.captures.iter().any(|c| c.partial.is_some());
        s.duration_secs = match (s.first_ts, s.last_ts) {
            (Some(a), Some(b)) => (b - a).max(0.0),
            _ => 0.0,
        };
        s.table_average = if s.duration_secs > 0.0 { area / s.duration_secs } else { s.table_peak as f64 };
        s.table_final = table_final;
        s.clock_regressions = clock_regressions;
        s.packets_per_sec = if elapsed > 0.0 { s.packets as f64 / elapsed } else { 0.0 };
        s
    }
}

impl Runner {
    pub fn new(setup: Setup, opts: RunOptions) -> Self {
        Runner { engine: engine_for(&setup, opts), tally: Tally::default(), index: 0 }
    }

    /// Packets handled so far.
    pub fn packets(&self) -> usize {
        self.index
    }

    /// A capture file starts.
    pub fn begin_capture(&mut self, path: &Path, format: wire::capture::CaptureFormat) {
        self.tally.begin_capture(path, format);
    }

    /// The current capture file is over: `packets` records, stopped early by `partial` if set.
    pub fn end_capture(&mut self, packets: usize, partial: Option<&wire::CaptureError>) {
        self.tally.end_capture(packets, partial);
    }

    /// One record of capture `file` (its `file_index`-th) through the engine.
    pub fn handle_packet(
        &mut self,
        file: usize,
        file_index: usize,
        ts: Time,
        linktype: u32,
        data: &[u8],
        origlen: u32,
    ) -> PacketResult {
        let d = self.engine.handle_packet_on_wire(ts, linktype, data, origlen);
        let (now, len) = (self.engine.now(), self.engine.conntrack().len());
        self.tally.record(&d, ts, now, len);
        let p = PacketResult { index: self.index, file, file_index, ts, decision: d };
        self.index += 1;
        p
    }

    /// The next pending conntrack event.
    pub fn poll_event(&mut self) -> Option<conntrack::Event> {
        self.engine.poll_event()
    }

    /// The engine and the finished summary.
    pub fn finish(self) -> (Engine, Summary) {
        let Runner { engine, tally, .. } = self;
        let mut s = tally.finish(engine.conntrack().len(), engine.stats().clock_regressions);
        s.fast_path_packets = engine.fast_path_stats().0;
        (engine, s)
    }
}

fn progress_bar(enabled: bool, total: u64, min: u64, counts: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || total < min || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!("{{spinner}} {{wide_bar}} {counts}"))
    {
        bar.set_style(style);
    }
    Some(bar)
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    // No allocation on the common path (the key is almost always there already).
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

fn account(s: &mut Summary, d: &Decision) {
    s.packets += 1;
    match &d.disposition {
        Disposition::Filtered => {
            s.filtered += 1;
            if let Some(p) = d.path {
                bump(&mut s.by_path, p.as_str());
            }
            if let Some(v) = d.verdict {
                bump(&mut s.by_verdict, v.as_str());
            }
            if let Some(c) = d.ctstate {
                bump(&mut s.by_ctstate, c.as_str());
                if c == CtStateLabel::Invalid {
                    s.invalid += 1;
                }
            }
            if d.reject.as_ref().is_some_and(|r| r.sent) {
                s.reject_replies += 1;
            }
            if d.ct_dropped {
                s.conntrack_drops += 1;
            }
            if d.ct_created {
                s.connections += 1;
            }
        }
        Disposition::NotIp { .. } => s.not_ip += 1,
        Disposition::NotFiltered { .. } => s.not_filtered += 1,
        Disposition::Undecodable { reason } => {
            s.undecodable += 1;
            bump(&mut s.undecodable_reasons, reason);
        }
        Disposition::FragmentHeld => s.fragments_held += 1,
        Disposition::FragmentDropped { .. } => s.fragments_dropped += 1,
        Disposition::IpInputDrop { .. } => s.ip_input_drops += 1,
    }
}

/// One JSON line for `--verdicts`.
pub fn verdict_line(p: &PacketResult, multi_file: bool) -> String {
    let d = &p.decision;
    let mut o = serde_json::Map::new();
    if multi_file {
        o.insert("file".into(), p.file.into());
        o.insert("file_index".into(), p.file_index.into());
    }
    let (disposition, reason) = match &d.disposition {
        Disposition::Filtered => ("filtered", None),
        Disposition::NotIp { ethertype } => ("not-ip", Some(format!("ethertype {ethertype:#06x}"))),
        Disposition::Undecodable { reason } => ("undecodable", Some(reason.clone())),
        Disposition::NotFiltered { reason } => ("not-filtered", Some((*reason).to_string())),
        Disposition::FragmentHeld => ("fragment-held", None),
        Disposition::FragmentDropped { reason } => ("fragment-dropped", Some((*reason).to_string())),
        Disposition::IpInputDrop { reason } => ("ip-input-drop", Some((*reason).to_string())),
    };
    o.insert("path".into(), d.path.map(PacketPath::as_str).into());
    o.insert("verdict".into(), d.verdict.map(Verdict::as_str).into());
    o.insert("ctstate".into(), d.ctstate.map(CtStateLabel::as_str).into());
    o.insert("rule".into(), d.rule.as_ref().map(|r| r.to_string()).into());
    if disposition != "filtered" {
        o.insert("disposition".into(), disposition.into());
    }
    if let Some(r) = reason.or(d.route_reason.map(str::to_string)).or(d.ct_reason.map(str::to_string)) {
        o.insert("reason".into(), r.into());
    }
    if d.reply_dir {
        o.insert("dir".into(), "reply".into());
    }
    if let Some(f) = &d.flow {
        o.insert("flow".into(), f.to_string().into());
    }
    if let Some(r) = &d.reject {
        o.insert(
            "reject".into(),
            serde_json::json!({"with": r.kind, "to": r.to.to_string(), "sent": r.sent}),
        );
    }
    if !d.logs.is_empty() {
        o.insert("log".into(), d.logs.clone().into());
    }
    if let Some(n) = d.ct_note {
        o.insert("ct_note".into(), n.into());
    }
    if let Some(x) = &d.expectation {
        o.insert("expectation".into(), x.clone().into());
    }
    if !d.trace.is_empty() {
        o.insert("trace".into(), d.trace.clone().into());
    }
    // `ts` is exact decimal seconds with nanoseconds: a JSON number, written by hand because an f64 would
    // round it.
    let rest = serde_json::Value::Object(o).to_string();
    let ts = format!("{}.{:09}", p.ts.0 / 1_000_000_000, p.ts.0 % 1_000_000_000);
    match rest.strip_prefix('{') {
        Some("}") | None => format!("{{\"index\":{},\"ts\":{ts}}}", p.index),
        Some(tail) => format!("{{\"index\":{},\"ts\":{ts},{tail}", p.index),
    }
}

fn create(path: &PathBuf) -> miette::Result<std::io::BufWriter<std::fs::File>> {
    let f =
        std::fs::File::create(path).map_err(|e| miette::miette!("cannot create {}: {e}", path.display()))?;
    Ok(std::io::BufWriter::new(f))
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> miette::Report + '_ {
    move |e| miette::miette!("writing {}: {e}", path.display())
}

/// A streaming output file; the first write error is kept and reported at the end.
struct Stream<'a> {
    path: &'a Path,
    w: std::io::BufWriter<std::fs::File>,
    error: Option<std::io::Error>,
}

impl<'a> Stream<'a> {
    fn open(path: Option<&'a PathBuf>) -> miette::Result<Option<Stream<'a>>> {
        match path {
            Some(p) => Ok(Some(Stream { path: p, w: create(p)?, error: None })),
            None => Ok(None),
        }
    }
    fn line(&mut self, text: &str) {
        if self.error.is_none() {
            if let Err(e) = writeln!(self.w, "{text}") {
                self.error = Some(e);
            }
        }
    }
    fn finish(mut self) -> miette::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(io_err(self.path)(e));
        }
        self.w.flush().map_err(io_err(self.path))
    }
}

/// One `--trace` line: the packet, then every step it took.
fn trace_line(p: &PacketResult) -> String {
    let d = &p.decision;
    let ts = format!("{}.{:06}", p.ts.0 / 1_000_000_000, (p.ts.0 % 1_000_000_000) / 1000);
    let flow = d.flow.as_ref().map(|f| f.to_string()).unwrap_or_else(|| "-".into());
    let path = d.path.map(PacketPath::as_str).unwrap_or("-");
    let verdict = d.verdict.map(Verdict::as_str).unwrap_or("-");
    let mut steps = d.trace.join(" ");
    if let Some(r) = d.route_reason {
        steps.push_str(&format!(" routing: {r}"));
    }
    if let Some(x) = &d.expectation {
        steps.push_str(&format!(" [RELATED through {x}]"));
    }
    match &d.disposition {
        Disposition::Filtered => {}
        Disposition::IpInputDrop { reason } => steps.push_str(&format!("ip-input: {reason}")),
        Disposition::NotIp { ethertype } => steps.push_str(&format!("not IP (ethertype {ethertype:#06x})")),
        Disposition::Undecodable { reason } => steps.push_str(&format!("undecodable: {reason}")),
        Disposition::NotFiltered { reason } => steps.push_str(&format!("not filtered: {reason}")),
        Disposition::FragmentHeld => steps.push_str("defrag: held for reassembly"),
        Disposition::FragmentDropped { reason } => steps.push_str(&format!("defrag: dropped ({reason})")),
    }
    format!("#{} {ts} {path} {flow}: {steps} => {verdict}", p.index)
}

pub fn run(args: &ReplayArgs) -> miette::Result<u8> {
    // Everything that can fail on bad input happens before any output file is created.
    let setup = setup(&args.rules, &args.host)?;
    let has_v6 = setup.ruleset6.is_some();
    if args.counters6.is_some() && !has_v6 {
        return Err(miette::miette!("--counters6 needs an IPv6 ruleset (--rules6)"));
    }
    let mut captures = load::open_captures(&args.captures)?;
    let mut verdicts = Stream::open(args.verdicts.as_ref())?;
    let mut trace = Stream::open(args.trace.as_ref())?;
    let mut events = Stream::open(args.events.as_ref())?;
    let mut expect_events = Stream::open(args.expect_events.as_ref())?;
    let multi = captures.len() > 1;
    let opts = RunOptions {
        progress: !args.host.no_progress,
        tracing: args.trace.is_some(),
        events: args.events.is_some() || args.expect_events.is_some(),
        no_fast_path: args.no_fast_path,
    };
    if args.threads == 0 || args.threads > 64 {
        return Err(miette::miette!("--threads must be between 1 and 64"));
    }
    if args.threads > 1 && args.stats.is_some() {
        return Err(miette::miette!(
            help = "run with --threads 1 for --stats",
            "--stats sums conntrack's per-CPU counters of one table; it is not merged across --threads shards"
        ));
    }
    let mut on_packet = |p: &PacketResult| {
        if let Some(s) = verdicts.as_mut() {
            s.line(&verdict_line(p, multi));
        }
        if let Some(s) = trace.as_mut() {
            s.line(&trace_line(p));
        }
    };
    let mut on_event = |e: &conntrack::Event| {
        // conntrack -E and conntrack -E expect are separate listeners: separate files
        let stream = if e.expect { expect_events.as_mut() } else { events.as_mut() };
        if let Some(s) = stream {
            let mut text = String::new();
            if conntrack::write_event(e, &mut text).is_ok() {
                s.line(text.trim_end_matches('\n'));
            }
        }
    };
    let (engines, summary, counters, counters6) = if args.threads > 1 {
        let r = crate::shard::run(setup, &mut captures, opts, args.threads, &mut on_packet, &mut on_event)?;
        if let Some(why) = &r.inexact {
            eprintln!("warning: {why}");
        }
        (r.engines, r.summary, Some(r.counters), r.counters6)
    } else {
        let (engine, summary) = run_stream(setup, &mut captures, opts, &mut on_packet, &mut on_event);
        (vec![engine], summary, None, None)
    };
    for s in [verdicts, trace, events, expect_events].into_iter().flatten() {
        s.finish()?;
    }
    let Some(engine) = engines.first() else {
        return Err(miette::miette!("internal: no engine"));
    };
    if let Some(path) = &args.counters {
        let mut text = String::new();
        engine
            .ruleset()
            .write_save(counters.as_ref().unwrap_or(engine.rule_state()), true, &mut text)
            .map_err(|e| miette::miette!("formatting counters: {e}"))?;
        std::fs::write(path, text).map_err(io_err(path))?;
    }
    if let (Some(path), Some((r6, st6))) = (&args.counters6, engine.ruleset6()) {
        let mut text = String::new();
        r6.write_save(counters6.as_ref().unwrap_or(st6), true, &mut text)
            .map_err(|e| miette::miette!("formatting counters: {e}"))?;
        std::fs::write(path, text).map_err(io_err(path))?;
    }
    if let Some(path) = &args.conntrack {
        let mut text = String::new();
        for e in &engines {
            let (ct, now) = (e.conntrack(), e.now());
            match args.conntrack_format {
                TableFormat::Proc => conntrack::write_proc(ct, now, &mut text),
                TableFormat::Conntrack => conntrack::write_conntrack_l(ct, now, &mut text),
                TableFormat::Extended => conntrack::write_conntrack_l_extended(ct, now, &mut text),
            }
            .map_err(|e| miette::miette!("formatting conntrack table: {e}"))?;
        }
        std::fs::write(path, text).map_err(io_err(path))?;
    }
    if let Some(path) = &args.stats {
        let mut text = String::new();
        match args.stats_format {
            StatsFormat::Conntrack => conntrack::write_stats_conntrack_s(engine.conntrack(), &mut text),
            StatsFormat::Proc => conntrack::write_proc_stat(engine.conntrack(), &mut text),
        }
        .map_err(|e| miette::miette!("formatting statistics: {e}"))?;
        std::fs::write(path, text).map_err(io_err(path))?;
    }
    let out = match args.format {
        Format::Text => report::summary_text(&summary, engine, &args.rules),
        Format::Json => serde_json::to_string_pretty(&summary).map_err(|e| miette::miette!("{e}"))? + "\n",
    };
    print!("{out}");
    Ok(exit_status(&summary.captures))
}

/// Warns on stderr about every capture that ended early, and gives the exit status: 0, or
/// [`crate::EXIT_PARTIAL`] when results cover only part of the input.
pub fn exit_status(captures: &[CaptureInfo]) -> u8 {
    let mut partial = false;
    for c in captures {
        if let Some(p) = &c.partial {
            partial = true;
            eprintln!(
                "warning: {}: partial capture: {p}; results cover the {} packets read",
                c.path, c.packets
            );
        }
    }
    if partial {
        crate::EXIT_PARTIAL
    } else {
        0
    }
}
