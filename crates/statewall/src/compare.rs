//! `statewall compare`: the same captures through two rulesets, and what changes.
//!
//! Reported: every packet whose verdict changes (with both deciding rules and states), ICMP errors that lose
//! RELATED (path-MTU and unreachable signals a NOTRACK silently breaks), state-only changes in aggregate, and
//! the conntrack table under each ruleset (peak, time-weighted average, final, connections created) with the
//! connections only one ruleset tracks, grouped by the port they share.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use engine::{CtStateLabel, Disposition, FlowSummary};
use wire::Time;

use crate::cli::{CompareArgs, Format};
use crate::load;
use crate::replay::{self, PacketResult, Summary};

#[derive(Clone)]
struct Brief {
    ts: Time,
    verdict: Option<&'static str>,
    ctstate: Option<CtStateLabel>,
    rule: Option<String>,
    path: Option<&'static str>,
    flow: Option<FlowSummary>,
}

struct Side {
    rules: String,
    packets: Vec<Brief>,
    created: Vec<FlowSummary>,
    summary: Summary,
}

/// One ruleset's engine while the captures stream through it.
struct SideRun {
    rules: String,
    run: replay::Runner,
    packets: Vec<Brief>,
    created: Vec<FlowSummary>,
}

impl SideRun {
    fn new(path: &std::path::Path, args: &CompareArgs) -> miette::Result<SideRun> {
        let setup = replay::setup(path, &args.host)?;
        Ok(SideRun {
            rules: path.display().to_string(),
            run: replay::Runner::new(setup, replay::RunOptions::default()),
            packets: Vec::new(),
            created: Vec::new(),
        })
    }

    fn handle(&mut self, file: usize, r: &wire::capture::RecordRef<'_>) {
        let p: PacketResult = self.run.handle_packet(file, r.index, r.ts, r.linktype, r.data, r.origlen);
        // Events are off (RunOptions::default()): nothing is queued, but never let anything pile up.
        while self.run.poll_event().is_some() {}
        let d = &p.decision;
        if d.ct_created {
            if let Some(f) = &d.flow {
                self.created.push(f.clone());
            }
        }
        self.packets.push(Brief {
            ts: p.ts,
            verdict: match d.disposition {
                Disposition::Filtered => d.verdict.map(|v| v.as_str()),
                _ => None,
            },
            ctstate: d.ctstate,
            rule: d.rule.as_ref().map(|r| r.to_string()),
            path: d.path.map(|p| p.as_str()),
            flow: d.flow.clone(),
        });
    }

    fn finish(self) -> Side {
        let (_engine, summary) = self.run.finish();
        Side { rules: self.rules, packets: self.packets, created: self.created, summary }
    }
}

pub fn run(args: &CompareArgs) -> miette::Result<u8> {
    let [a_path, b_path] = args.rules.as_slice() else {
        return Err(miette::miette!("compare needs exactly two rulesets: --rules A --rules B"));
    };
    // Parse both rulesets before any work, so a bad one fails fast.
    load::ruleset(a_path)?;
    load::ruleset(b_path)?;
    let mut caps = load::open_captures(&args.captures)?;
    let mut a = SideRun::new(a_path, args)?;
    let mut b = SideRun::new(b_path, args)?;
    // One pass over the captures, both engines in lockstep.
    let mut feed = replay::Feed::new(!args.host.no_progress, &mut caps);
    while let Some(step) = feed.next_step() {
        match step {
            replay::FeedStep::Begin { path, format } => {
                a.run.begin_capture(path, format);
                b.run.begin_capture(path, format);
            }
            replay::FeedStep::Packet { file, r } => {
                a.handle(file, &r);
                b.handle(file, &r);
            }
            replay::FeedStep::End { packets, partial } => {
                a.run.end_capture(packets, partial);
                b.run.end_capture(packets, partial);
            }
        }
    }
    feed.finish();
    let (a, b) = (a.finish(), b.finish());
    let report = Report::build(&a, &b);
    let out = match args.format {
        Format::Text => report.text(&a, &b, args.show),
        Format::Json => {
            serde_json::to_string_pretty(&report.json(&a, &b)).map_err(|e| miette::miette!("{e}"))? + "\n"
        }
    };
    print!("{out}");
    Ok(if a.summary.partial { crate::EXIT_PARTIAL } else { 0 })
}

/// One packet whose outcome differs.
struct Change {
    index: usize,
    a: Brief,
    b: Brief,
}

/// Changed packets of one connection with the same outcome pair, listed together.
struct ChangeGroup {
    first: usize,
    count: u64,
    a: Brief,
    b: Brief,
}

type FlowKey = (u8, std::net::IpAddr, std::net::IpAddr, Option<(u16, u16)>, Option<(u8, u8)>);

struct Report {
    verdict_changes: Vec<Change>,
    /// Verdict changes grouped by connection (both directions) and outcome pair, in order of first packet.
    change_groups: Vec<ChangeGroup>,
    /// (from verdict, to verdict, B's rule) -> count
    verdict_groups: BTreeMap<(String, String, String), u64>,
    state_only: BTreeMap<(String, String), u64>,
    lost_related: Vec<Change>,
    only_a: Vec<FlowSummary>,
    only_b: Vec<FlowSummary>,
}

fn key(f: &FlowSummary) -> FlowKey {
    (f.proto, f.src, f.dst, f.ports, f.icmp)
}

/// The same key for both directions of a connection (ICMP errors stay per packet).
fn conn_key(f: &FlowSummary, index: usize) -> (FlowKey, usize) {
    if f.quoted.is_some() {
        return (key(f), index);
    }
    let fwd = key(f);
    let rev = (f.proto, f.dst, f.src, f.ports.map(|(s, d)| (d, s)), f.icmp);
    (if (fwd.1, fwd.3) <= (rev.1, rev.3) { fwd } else { rev }, 0)
}

fn st(s: Option<CtStateLabel>) -> &'static str {
    s.map(CtStateLabel::as_str).unwrap_or("-")
}

fn outcome(p: &Brief) -> (Option<&'static str>, Option<&str>, Option<CtStateLabel>) {
    (p.verdict, p.rule.as_deref(), p.ctstate)
}

impl Report {
    fn build(a: &Side, b: &Side) -> Report {
        let mut r = Report {
            verdict_changes: Vec::new(),
            change_groups: Vec::new(),
            verdict_groups: BTreeMap::new(),
            state_only: BTreeMap::new(),
            lost_related: Vec::new(),
            only_a: Vec::new(),
            only_b: Vec::new(),
        };
        let mut group_of: HashMap<((FlowKey, usize), String), usize> = HashMap::new();
        for (i, (pa, pb)) in a.packets.iter().zip(&b.packets).enumerate() {
            if pa.verdict != pb.verdict {
                r.verdict_changes.push(Change { index: i, a: pa.clone(), b: pb.clone() });
                *r.verdict_groups
                    .entry((
                        pa.verdict.unwrap_or("-").to_string(),
                        pb.verdict.unwrap_or("-").to_string(),
                        pb.rule.clone().unwrap_or_else(|| "-".into()),
                    ))
                    .or_default() += 1;
                if let Some(f) = &pa.flow {
                    let k = (conn_key(f, i), format!("{:?}{:?}", outcome(pa), outcome(pb)));
                    match group_of.get(&k).and_then(|g| r.change_groups.get_mut(*g)) {
                        Some(g) => g.count += 1,
                        None => {
                            group_of.insert(k, r.change_groups.len());
                            r.change_groups.push(ChangeGroup {
                                first: i,
                                count: 1,
                                a: pa.clone(),
                                b: pb.clone(),
                            });
                        }
                    }
                }
            } else if pa.ctstate != pb.ctstate {
                *r.state_only.entry((st(pa.ctstate).into(), st(pb.ctstate).into())).or_default() += 1;
            }
            let icmp_error = pa.flow.as_ref().is_some_and(|f| f.quoted.is_some());
            if icmp_error
                && pa.ctstate == Some(CtStateLabel::Related)
                && pb.ctstate != Some(CtStateLabel::Related)
            {
                r.lost_related.push(Change { index: i, a: pa.clone(), b: pb.clone() });
            }
        }
        let ka: HashSet<_> = a.created.iter().map(key).collect();
        let kb: HashSet<_> = b.created.iter().map(key).collect();
        r.only_a = a.created.iter().filter(|f| !kb.contains(&key(f))).cloned().collect();
        r.only_b = b.created.iter().filter(|f| !ka.contains(&key(f))).cloned().collect();
        r
    }

    fn line(p: &Brief) -> String {
        format!(
            "{} ({}, {})",
            p.verdict.unwrap_or("-"),
            p.rule.as_deref().unwrap_or("no rule"),
            st(p.ctstate)
        )
    }

    fn text(&self, a: &Side, b: &Side, show: usize) -> String {
        let mut o = String::new();
        let _ = self.write_text(&mut o, a, b, show);
        o
    }

    fn write_text(&self, o: &mut String, a: &Side, b: &Side, show: usize) -> std::fmt::Result {
        let t0 = a.packets.first().map(|p| p.ts).unwrap_or(Time::ZERO);
        let rel = |t: Time| t.nanos_since(t0) as f64 / 1e9;
        writeln!(o, "A = {}", a.rules)?;
        writeln!(o, "B = {}", b.rules)?;
        let caps: Vec<String> = a.summary.captures.iter().map(|c| c.path.clone()).collect();
        writeln!(o, "capture: {} ({} packets)", caps.join(", "), a.summary.packets)?;
        writeln!(o)?;
        let (n, c) = (self.verdict_changes.len(), self.change_groups.len());
        writeln!(
            o,
            "Verdict changes: {n} packet{} in {c} connection{}",
            if n == 1 { "" } else { "s" },
            if c == 1 { "" } else { "s" }
        )?;
        for ((va, vb, rule), n) in &self.verdict_groups {
            writeln!(o, "  {n:>6}  {va} -> {vb}, decided under B by {rule}")?;
        }
        for g in self.change_groups.iter().take(show) {
            writeln!(
                o,
                "  #{:<6} {:>9.3}s {:<7} {} ({} packet{})\n            A: {}\n            B: {}",
                g.first,
                rel(g.a.ts),
                g.a.path.unwrap_or("-"),
                g.a.flow.as_ref().map(|f| f.to_string()).unwrap_or_default(),
                g.count,
                if g.count == 1 { "" } else { "s" },
                Self::line(&g.a),
                Self::line(&g.b)
            )?;
        }
        if self.change_groups.len() > show {
            writeln!(o, "  ... {} more connections (raise --show)", self.change_groups.len() - show)?;
        }
        writeln!(o)?;
        writeln!(o, "ICMP errors that lose RELATED under B: {}", self.lost_related.len())?;
        if !self.lost_related.is_empty() {
            writeln!(
                o,
                "  (errors about connections B does not track have nothing to be RELATED to: path-MTU and unreachable signals are lost)"
            )?;
        }
        for c in self.lost_related.iter().take(show) {
            writeln!(
                o,
                "  #{:<6} {:>9.3}s {}\n            A: {}\n            B: {}",
                c.index,
                rel(c.a.ts),
                c.a.flow.as_ref().map(|f| f.to_string()).unwrap_or_default(),
                Self::line(&c.a),
                Self::line(&c.b)
            )?;
        }
        writeln!(o)?;
        let same: u64 = self.state_only.values().sum();
        writeln!(o, "Same verdict, different ctstate: {same} packets")?;
        for ((sa, sb), n) in &self.state_only {
            writeln!(o, "  {n:>6}  {sa} -> {sb}")?;
        }
        writeln!(o)?;
        writeln!(o, "Conntrack table          {:>10} {:>10}", "A", "B")?;
        let (sa, sb) = (&a.summary, &b.summary);
        writeln!(o, "  peak entries           {:>10} {:>10}", sa.table_peak, sb.table_peak)?;
        writeln!(o, "  average entries        {:>10.1} {:>10.1}", sa.table_average, sb.table_average)?;
        writeln!(o, "  final entries          {:>10} {:>10}", sa.table_final, sb.table_final)?;
        writeln!(o, "  connections confirmed  {:>10} {:>10}", sa.connections, sb.connections)?;
        writeln!(o, "  INVALID packets        {:>10} {:>10}", sa.invalid, sb.invalid)?;
        writeln!(
            o,
            "Entries saved by B: peak {}, final {}, connections {}",
            sa.table_peak as i64 - sb.table_peak as i64,
            sa.table_final as i64 - sb.table_final as i64,
            sa.connections as i64 - sb.connections as i64
        )?;
        for (label, flows) in [("only under A", &self.only_a), ("only under B", &self.only_b)] {
            if flows.is_empty() {
                continue;
            }
            write!(o, "Connections tracked {label}: {}", flows.len())?;
            let groups = group_by_port(flows);
            let parts: Vec<String> = groups.iter().map(|(k, n)| format!("{k} {n}")).collect();
            writeln!(o, " ({})", parts.join(", "))?;
        }
        Ok(())
    }

    fn json(&self, a: &Side, b: &Side) -> serde_json::Value {
        let change = |c: &Change| {
            serde_json::json!({
                "index": c.index,
                "flow": c.a.flow.as_ref().map(|f| f.to_string()),
                "path": c.a.path,
                "a": {"verdict": c.a.verdict, "rule": c.a.rule, "ctstate": st(c.a.ctstate)},
                "b": {"verdict": c.b.verdict, "rule": c.b.rule, "ctstate": st(c.b.ctstate)},
            })
        };
        let table = |s: &Summary| {
            serde_json::json!({"peak": s.table_peak, "average": s.table_average, "final": s.table_final,
                "connections": s.connections, "invalid": s.invalid})
        };
        serde_json::json!({
            "a": a.rules, "b": b.rules,
            "packets": a.summary.packets,
            "verdict_changes": self.verdict_changes.iter().map(change).collect::<Vec<_>>(),
            "lost_related": self.lost_related.iter().map(change).collect::<Vec<_>>(),
            "state_only_changes": self.state_only.iter().map(|((x, y), n)| serde_json::json!({"a": x, "b": y, "packets": n})).collect::<Vec<_>>(),
            "table": {"a": table(&a.summary), "b": table(&b.summary)},
            "connections_only_a": group_by_port(&self.only_a).into_iter().collect::<BTreeMap<_, _>>(),
            "connections_only_b": group_by_port(&self.only_b).into_iter().collect::<BTreeMap<_, _>>(),
        })
    }
}

/// Groups connections by the port that best explains them: for each flow, whichever of its two ports is the
/// most common among all the flows (so `33333` wins over the peers' random ports). ICMP and portless
/// protocols group by protocol.
fn group_by_port(flows: &[FlowSummary]) -> Vec<(String, u64)> {
    let mut freq: HashMap<(u8, u16), u64> = HashMap::new();
    for f in flows {
        if let Some((s, d)) = f.ports {
            *freq.entry((f.proto, s)).or_default() += 1;
            if d != s {
                *freq.entry((f.proto, d)).or_default() += 1;
            }
        }
    }
    let mut groups: BTreeMap<String, u64> = BTreeMap::new();
    for f in flows {
        let k = match f.ports {
            Some((s, d)) => {
                let fs = freq.get(&(f.proto, s)).copied().unwrap_or(0);
                let fd = freq.get(&(f.proto, d)).copied().unwrap_or(0);
                let port = if fs > fd || (fs == fd && s < d) { s } else { d };
                format!("{}/{}", f.proto_name(), port)
            }
            None => f.proto_name(),
        };
        *groups.entry(k).or_default() += 1;
    }
    let mut v: Vec<(String, u64)> = groups.into_iter().collect();
    v.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
    v
}
