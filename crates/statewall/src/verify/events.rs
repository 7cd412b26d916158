//! Conntrack events: what `conntrack -E -o timestamp` prints in the firewall namespace against the engine's
//! events (`Engine::poll_event`, printed by `conntrack::write_event`).
//!
//! Contract:
//! - [`Listener::start`] runs `conntrack -E -o timestamp` in the firewall namespace and returns once its netlink
//!   socket has joined the conntrack event groups (seen in the namespace's `/proc/net/netlink`), before the
//!   first packet is sent: with `nf_conntrack_events=2` (the default) the kernel only attaches the event
//!   extension to entries created while a listener exists. [`Listener::stop`] ends it (SIGTERM, after which it
//!   prints what it has and exits) once the kernel's state has been read.
//! - Both sides' lines go through the same parser ([`parse`]); they are grouped by connection (the protocol and
//!   the original tuple, [`flow_key`]) and each connection's events are compared as an ordered list (aligned
//!   by longest common subsequence): the type label and the text byte for byte (spacing included), except the
//!   remaining timeout (within the tolerance; NEW and UPDATE only, relative to the event itself so no lag
//!   correction) and `delta-time=` (DESTROY with the timestamp extension).
//! - Timestamps: the tool stamps a message when it prints it (`gettimeofday`), the engine an event with the
//!   recorded send time of the packet behind it. A packet's event must be stamped within
//!   [`TIMESTAMP_TOLERANCE_MS`] of the engine's. A timer's DESTROY is stamped by the engine at the entry's
//!   expiry, by the kernel whenever its garbage collector (or a table read) gets to it: it must not be earlier.
//! - The suppressed stack packets die in raw OUTPUT before conntrack, so they make no events on either side.
//! - A DESTROY only the kernel has, for an entry the engine still holds at its last packet and that expires by
//!   the time of that DESTROY (within the tolerance), is tolerated: the kernel reaps entries that expire while
//!   its state is read, the engine's clock stops at the last packet.
//! - Expectation events: a second listener, `conntrack -E expect -o timestamp` ([`Listener::start_expect`]),
//!   against the engine's expectation events ([`conntrack::Event::expect`]), compared the same way
//!   ([`compare_expect`]) with the timeout in the field after the type label (NEW and DESTROY both carry it)
//!   and an expectation identified by its line without the timeout and the flags ([`expect_key`]).
//! - If the tool reports that its socket overran (ENOBUFS: events lost), the events are not compared (a note).

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use conntrack::EventKind;
use wire::Time;

use super::table;
use super::VerifyError;

/// How far apart a packet's event may be stamped on the two sides (milliseconds).
pub const TIMESTAMP_TOLERANCE_MS: f64 = 50.0;
/// The listener's socket receive buffer (`conntrack -b`).
const BUFFER: &str = "16777216";
/// How long the listener may take to join the event groups.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Alignment of longer per-connection lists falls back to position by position.
const LCS_MAX_CELLS: usize = 4_000_000;

/// A running `conntrack -E`. Dropping it kills it.
pub struct Listener {
    child: Option<Child>,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

/// What the listener printed.
#[derive(Debug, Clone, Default)]
pub struct KernelEvents {
    pub text: String,
    pub stderr: String,
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> Option<JoinHandle<String>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

/// How many netfilter netlink sockets (protocol 12) of namespace `ns` have joined multicast groups.
fn listening(ns: &str) -> Result<usize, VerifyError> {
    super::io::in_netns(ns, || {
        let t = std::fs::read_to_string("/proc/thread-self/net/netlink")
            .map_err(|e| VerifyError::Io { what: "reading /proc/net/netlink".into(), source: e })?;
        Ok(t.lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1) == Some(&"12") && f.get(3).is_some_and(|g| !g.trim_start_matches('0').is_empty())
            })
            .count())
    })
}

impl Listener {
    /// Starts `conntrack -E -o timestamp` in namespace `ns` and waits until it listens.
    pub fn start(ns: &str) -> Result<Listener, VerifyError> {
        Self::start_with(ns, &["-E", "-o", "timestamp", "-b", BUFFER])
    }

    /// Starts `conntrack -E expect -o timestamp` in namespace `ns` and waits until it listens (the tool refuses
    /// `-b` with `expect`: default socket buffer).
    pub fn start_expect(ns: &str) -> Result<Listener, VerifyError> {
        Self::start_with(ns, &["-E", "expect", "-o", "timestamp"])
    }

    fn start_with(ns: &str, tool_args: &[&str]) -> Result<Listener, VerifyError> {
        let before = listening(ns)?;
        let mut args = vec!["netns", "exec", ns, "conntrack"];
        args.extend_from_slice(tool_args);
        let shown = format!("ip {}", args.join(" "));
        let mut child = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| VerifyError::Io { what: format!("running {shown}"), source: e })?;
        let out = reader(child.stdout.take());
        let err = reader(child.stderr.take());
        let mut l = Listener { child: Some(child), out, err };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if listening(ns)? > before {
                return Ok(l);
            }
            let exited = l.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let stderr = l.err.take().and_then(|h| h.join().ok()).unwrap_or_default();
                return Err(VerifyError::Command {
                    cmd: shown,
                    status: status.to_string(),
                    stderr: stderr.trim().to_string(),
                });
            }
            if Instant::now() > deadline {
                return Err(VerifyError::Setup(format!("{shown} did not start listening within 5 s")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the listener (SIGTERM: it prints what it has received and exits) and returns what it printed.
    pub fn stop(mut self) -> Result<KernelEvents, VerifyError> {
        // Messages already queued on its socket are printed before the signal is handled.
        std::thread::sleep(Duration::from_millis(50));
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let termed = Command::new("kill")
                .args(["-TERM", &pid])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !termed {
                let _ = child.kill();
            }
            child
                .wait()
                .map_err(|e| VerifyError::Io { what: "waiting for conntrack -E".into(), source: e })?;
        }
        let text = self.out.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = self.err.take().and_then(|h| h.join().ok()).unwrap_or_default();
        Ok(KernelEvents { text, stderr })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One event line, split for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvLine {
    /// The tool's timestamp (the engine's event time for engine lines).
    pub time: Option<Time>,
    pub kind: Option<EventKind>,
    /// The line after the timestamp, type label included, with the timeout replaced by `T` and the delta-time
    /// by `D`.
    pub key: String,
    pub timeout: Option<u64>,
    pub delta: Option<u64>,
    /// The connection: protocol and original tuple.
    pub flow: String,
    /// The line as printed after the timestamp (trimmed), for reports.
    pub line: String,
}

/// `[secs.usecs]` at the start of `line`: the time and the rest.
fn split_timestamp(line: &str) -> (Option<Time>, &str) {
    let Some(rest) = line.strip_prefix('[') else { return (None, line) };
    let Some((stamp, after)) = rest.split_once(']') else { return (None, line) };
    let Some((s, us)) = stamp.split_once('.') else { return (None, line) };
    let (Ok(s), Ok(us)) = (s.trim().parse::<u64>(), us.trim().parse::<u64>()) else { return (None, line) };
    let ns = s.checked_mul(Time::NANOS_PER_SEC).and_then(|v| v.checked_add(us.saturating_mul(1000)));
    (ns.map(Time), after)
}

/// The connection a listing or event line is about: the protocol name and number, the original tuple (from the
/// first `src=` to the next, without counters and `[UNREPLIED]`) and any `zone=`.
pub fn flow_key(text: &str) -> String {
    let toks: Vec<&str> =
        text.split_whitespace().filter(|t| !t.starts_with('[') || *t == "[UNREPLIED]").collect();
    let mut key: Vec<&str> = toks.iter().take(2).copied().collect();
    let mut srcs = 0;
    for t in &toks {
        if t.starts_with("src=") {
            srcs += 1;
        }
        if srcs == 1 && !t.starts_with("packets=") && !t.starts_with("bytes=") && *t != "[UNREPLIED]" {
            key.push(t);
        }
    }
    key.extend(toks.iter().filter(|t| t.starts_with("zone=")));
    key.join(" ")
}

/// An expectation in an event line (after the type label): the line without the timeout (first field) and
/// the flags (`PERMANENT`, `INACTIVE`, `USERSPACE`; INACTIVE is cleared without an event).
pub fn expect_key(text: &str) -> String {
    text.split_whitespace()
        .skip(1)
        .filter(|t| !t.split(',').all(|f| matches!(f, "PERMANENT" | "INACTIVE" | "USERSPACE")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses `conntrack -E -o timestamp` output.
pub fn parse(text: &str) -> Vec<EvLine> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| parse_line(l, false)).collect()
}

/// Parses `conntrack -E expect -o timestamp` output.
pub fn parse_expect(text: &str) -> Vec<EvLine> {
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| parse_line(l, true)).collect()
}

fn parse_line(line: &str, expect: bool) -> EvLine {
    let (time, body) = split_timestamp(line);
    let trimmed = body.trim_start();
    let (label, after) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
    let kind = match label {
        "[NEW]" => Some(EventKind::New),
        "[UPDATE]" => Some(EventKind::Update),
        "[DESTROY]" => Some(EventKind::Destroy),
        _ => None,
    };
    // Fields: label, protocol name, number, timeout (expectations: label, timeout).
    let (key, timeout, delta) = table::mask(body, Some(if expect { 1 } else { 3 }));
    let flow = if expect { expect_key(after) } else { flow_key(after) };
    EvLine { time, kind, key, timeout, delta, flow, line: trimmed.to_string() }
}

/// One engine event, with whether a packet made it (stamped with that packet's time) or a timer (stamped with
/// the expiry).
#[derive(Debug, Clone)]
pub struct EngineEvent {
    pub event: conntrack::Event,
    pub by_packet: bool,
}

/// One difference.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventDiff {
    /// The n-th differing event of a connection, on both sides.
    Differs {
        flow: String,
        kernel: String,
        engine: String,
    },
    OnlyKernel {
        flow: String,
        line: String,
    },
    OnlyEngine {
        flow: String,
        line: String,
    },
    Timeout {
        kernel: u64,
        engine: u64,
        line: String,
    },
    DeltaTime {
        kernel: u64,
        engine: u64,
        line: String,
    },
    /// Stamped too far apart (`kernel_ns`, `engine_ns`: ns since the epoch).
    Timestamp {
        kernel_ns: u64,
        engine_ns: u64,
        skew_ms: f64,
        line: String,
    },
    /// Only the kernel has it: a DESTROY of an entry that expired while the kernel's state was read. Not a
    /// disagreement.
    ExpiredAfterEnd {
        line: String,
    },
}

impl EventDiff {
    pub fn is_disagreement(&self) -> bool {
        !matches!(self, EventDiff::ExpiredAfterEnd { .. })
    }
}

/// The events compared.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Events {
    pub kernel_events: usize,
    pub engine_events: usize,
    pub connections: usize,
    pub timestamps_compared: usize,
    /// Largest |kernel - engine| stamp of a packet's event (ms).
    pub max_skew_ms: f64,
    pub tolerance_secs: f64,
    pub timestamp_tolerance_ms: f64,
    /// Why the events were not compared, if they were not.
    pub note: Option<String>,
    pub differences: Vec<EventDiff>,
}

impl Events {
    pub fn disagreements(&self) -> usize {
        self.differences.iter().filter(|d| d.is_disagreement()).count()
    }
}

/// The engine's events as the tool prints them.
pub fn engine_text(events: &[EngineEvent]) -> String {
    let mut s = String::new();
    for e in events {
        // Writing into a String cannot fail.
        let _ = conntrack::write_event(&e.event, &mut s);
    }
    s
}

/// Alignment of two lists: pairs (kernel index, engine index) matched, in order.
fn align(k: &[&EvLine], e: &[&(EvLine, bool)]) -> Vec<(usize, usize)> {
    let (n, m) = (k.len(), e.len());
    if n.saturating_mul(m) > LCS_MAX_CELLS {
        return (0..n.min(m))
            .filter(|&i| k.get(i).map(|x| &x.key) == e.get(i).map(|x| &x.0.key))
            .map(|i| (i, i))
            .collect();
    }
    let w = m + 1;
    let mut t = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let same = k.get(i).map(|x| &x.key) == e.get(j).map(|x| &x.0.key);
            let v = if same {
                t.get((i + 1) * w + j + 1).copied().unwrap_or(0) + 1
            } else {
                let down = t.get((i + 1) * w + j).copied().unwrap_or(0);
                let right = t.get(i * w + j + 1).copied().unwrap_or(0);
                down.max(right)
            };
            if let Some(c) = t.get_mut(i * w + j) {
                *c = v;
            }
        }
    }
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if k.get(i).map(|x| &x.key) == e.get(j).map(|x| &x.0.key) {
            out.push((i, j));
            i += 1;
            j += 1;
        } else if t.get((i + 1) * w + j).copied().unwrap_or(0) >= t.get(i * w + j + 1).copied().unwrap_or(0) {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Compares the kernel's events with the engine's. `engine_end`: the engine's clock at its last packet;
/// `expiry`: the expiry time of every entry the engine still holds then, by [`flow_key`].
pub fn compare(
    kernel: &KernelEvents,
    engine: &[EngineEvent],
    engine_end: Time,
    expiry: &BTreeMap<String, Time>,
    tolerance: f64,
) -> Events {
    compare_with(kernel, engine, engine_end, expiry, tolerance, false)
}

/// [`compare`] for expectation events; `expiry` by [`expect_key`].
pub fn compare_expect(
    kernel: &KernelEvents,
    engine: &[EngineEvent],
    engine_end: Time,
    expiry: &BTreeMap<String, Time>,
    tolerance: f64,
) -> Events {
    compare_with(kernel, engine, engine_end, expiry, tolerance, true)
}

fn compare_with(
    kernel: &KernelEvents,
    engine: &[EngineEvent],
    engine_end: Time,
    expiry: &BTreeMap<String, Time>,
    tolerance: f64,
    expect: bool,
) -> Events {
    let mut r = Events {
        engine_events: engine.len(),
        tolerance_secs: tolerance,
        timestamp_tolerance_ms: TIMESTAMP_TOLERANCE_MS,
        ..Default::default()
    };
    let klines = if expect { parse_expect(&kernel.text) } else { parse(&kernel.text) };
    r.kernel_events = klines.len();
    if kernel.stderr.contains("ENOBUFS") {
        r.note = Some("the listener's socket overran (ENOBUFS): the kernel's events are incomplete".into());
        return r;
    }
    let elines: Vec<(EvLine, bool)> = engine
        .iter()
        .map(|e| {
            let mut s = String::new();
            let _ = conntrack::write_event(&e.event, &mut s);
            let mut l = parse_line(s.trim_end_matches('\n'), expect);
            l.time = Some(e.event.time);
            (l, e.by_packet)
        })
        .collect();
    let mut kflows: BTreeMap<&str, Vec<&EvLine>> = BTreeMap::new();
    for l in &klines {
        kflows.entry(&l.flow).or_default().push(l);
    }
    let mut eflows: BTreeMap<&str, Vec<&(EvLine, bool)>> = BTreeMap::new();
    for l in &elines {
        eflows.entry(&l.0.flow).or_default().push(l);
    }
    let mut flows: Vec<&str> = kflows.keys().chain(eflows.keys()).copied().collect();
    flows.sort_unstable();
    flows.dedup();
    r.connections = flows.len();
    let tol_ns = TIMESTAMP_TOLERANCE_MS * 1e6;
    let tol_end_ns = (tolerance * 1e9) as u64;
    for flow in flows {
        let ks = kflows.get(flow).cloned().unwrap_or_default();
        let es = eflows.get(flow).cloned().unwrap_or_default();
        let pairs = align(&ks, &es);
        let (mut ki, mut ei) = (0, 0);
        let flush = |r: &mut Events, kr: std::ops::Range<usize>, er: std::ops::Range<usize>| {
            let kl: Vec<&EvLine> = kr.filter_map(|i| ks.get(i).copied()).collect();
            let el: Vec<&EvLine> = er.filter_map(|j| es.get(j).map(|x| &x.0)).collect();
            for (a, b) in kl.iter().zip(&el) {
                r.differences.push(EventDiff::Differs {
                    flow: flow.to_string(),
                    kernel: a.line.clone(),
                    engine: b.line.clone(),
                });
            }
            for a in kl.iter().skip(el.len()) {
                let expired = a.kind == Some(EventKind::Destroy)
                    && a.time.is_some_and(|t| {
                        t >= engine_end
                            && expiry.get(flow).is_some_and(|x| x.0 <= t.0.saturating_add(tol_end_ns))
                    });
                r.differences.push(if expired {
                    EventDiff::ExpiredAfterEnd { line: a.line.clone() }
                } else {
                    EventDiff::OnlyKernel { flow: flow.to_string(), line: a.line.clone() }
                });
            }
            for b in el.iter().skip(kl.len()) {
                r.differences.push(EventDiff::OnlyEngine { flow: flow.to_string(), line: b.line.clone() });
            }
        };
        for &(i, j) in &pairs {
            flush(&mut r, ki..i, ei..j);
            ki = i + 1;
            ei = j + 1;
            let (Some(k), Some((e, by_packet))) = (ks.get(i), es.get(j)) else { continue };
            if let (Some(kt), Some(et)) = (k.timeout, e.timeout) {
                if (kt as f64 - et as f64).abs() > tolerance {
                    r.differences.push(EventDiff::Timeout { kernel: kt, engine: et, line: k.line.clone() });
                }
            }
            if let (Some(kd), Some(ed)) = (k.delta, e.delta) {
                if (kd as f64 - ed as f64).abs() > tolerance {
                    r.differences.push(EventDiff::DeltaTime { kernel: kd, engine: ed, line: k.line.clone() });
                }
            }
            if let (Some(kt), Some(et)) = (k.time, e.time) {
                let skew = (i128::from(kt.0) - i128::from(et.0)) as f64;
                let bad = if *by_packet {
                    r.timestamps_compared += 1;
                    r.max_skew_ms = r.max_skew_ms.max(skew.abs() / 1e6);
                    skew.abs() > tol_ns
                } else {
                    skew < -tol_ns
                };
                if bad {
                    r.differences.push(EventDiff::Timestamp {
                        kernel_ns: kt.0,
                        engine_ns: et.0,
                        skew_ms: skew / 1e6,
                        line: k.line.clone(),
                    });
                }
            }
        }
        flush(&mut r, ki..ks.len(), ei..es.len());
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000_000_000;
    const NEW: &str = "    [NEW] udp      17 30 src=203.0.113.80 dst=192.0.2.10 sport=41966 dport=53 [UNREPLIED] src=192.0.2.10 dst=203.0.113.80 sport=53 dport=41966";
    const UPD: &str = " [UPDATE] udp      17 30 src=203.0.113.80 dst=192.0.2.10 sport=41966 dport=53 src=192.0.2.10 dst=203.0.113.80 sport=53 dport=41966";
    const DES: &str = "[DESTROY] udp      17 src=203.0.113.80 dst=192.0.2.10 sport=41966 dport=53 src=192.0.2.10 dst=203.0.113.80 sport=53 dport=41966";

    fn stamp(ns: u64) -> String {
        format!("[{}.{:06}]\t", ns / 1_000_000_000, (ns % 1_000_000_000) / 1000)
    }

    fn kernel(lines: &[(u64, &str)]) -> KernelEvents {
        let text = lines.iter().map(|(t, l)| format!("{}{l}\n", stamp(T0 + t))).collect();
        KernelEvents { text, stderr: String::new() }
    }

    fn ev(ms: u64, kind: EventKind, label_line: &str, by_packet: bool) -> EngineEvent {
        let line = label_line.trim_start().split_once(' ').unwrap().1.to_string();
        let event = conntrack::Event { time: Time(T0 + ms * 1_000_000), kind, expect: false, line };
        EngineEvent { event, by_packet }
    }

    #[test]
    fn lines_parse_into_kind_flow_and_masked_timeout() {
        let l = parse_line(&format!("{}{NEW}", stamp(T0 + 1_000)), false);
        assert_eq!(l.time, Some(Time(T0 + 1_000)));
        assert_eq!(l.kind, Some(EventKind::New));
        assert_eq!(l.timeout, Some(30));
        assert!(l.key.starts_with("\t    [NEW] udp      17 T src="), "{:?}", l.key);
        assert_eq!(l.flow, "udp 17 src=203.0.113.80 dst=192.0.2.10 sport=41966 dport=53");
        let d = parse_line(&format!("{}{DES}", stamp(T0)), false);
        assert_eq!((d.kind, d.timeout, &d.flow), (Some(EventKind::Destroy), None, &l.flow));
    }

    #[test]
    fn expectation_events_are_compared_by_expectation_with_their_timeout() {
        // What conntrack -E expect printed (6.18): NEW with the full timeout, DESTROY when consumed.
        const XN: &str = "    [NEW] 300 proto=17 src=127.0.0.1 dst=127.0.0.1 sport=0 dport=4000 mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=127.0.0.1 master-dst=127.0.0.1 sport=4000 dport=69 class=0 helper=tftp";
        const XD: &str = "[DESTROY] 298 proto=17 src=127.0.0.1 dst=127.0.0.1 sport=0 dport=4000 mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=127.0.0.1 master-dst=127.0.0.1 sport=4000 dport=69 class=0 helper=tftp";
        let l = parse_line(&format!("{}{XD}", stamp(T0)), true);
        assert_eq!((l.kind, l.timeout), (Some(EventKind::Destroy), Some(298)));
        assert_eq!(l.flow, parse_line(XN, true).flow);
        assert!(l.flow.starts_with("proto=17 src=127.0.0.1"), "{}", l.flow);
        let k = kernel(&[(1_000_000, XN), (1_501_000_000, XD)]);
        let e = [ev(0, EventKind::New, XN, true), ev(1_500, EventKind::Destroy, XD, true)];
        let r = compare_expect(&k, &e, Time(T0), &BTreeMap::new(), 2.0);
        assert_eq!((r.kernel_events, r.engine_events, r.connections), (2, 2, 1));
        assert_eq!(r.differences, vec![]);
        // the engine kept it 100 s less
        let e = [
            ev(0, EventKind::New, &XN.replace(" 300 ", " 200 "), true),
            ev(1_500, EventKind::Destroy, XD, true),
        ];
        let r = compare_expect(&k, &e, Time(T0), &BTreeMap::new(), 2.0);
        assert!(matches!(r.differences.as_slice(), [EventDiff::Timeout { kernel: 300, engine: 200, .. }]));
        // no DESTROY on the engine's side
        let r = compare_expect(&k, &e[..1], Time(T0), &BTreeMap::new(), 2.0);
        assert!(
            r.differences.iter().any(|d| matches!(d, EventDiff::OnlyKernel { .. })),
            "{:?}",
            r.differences
        );
    }

    #[test]
    fn a_udp_exchange_agrees_within_the_timestamp_tolerance() {
        // Query at 0 ms, answer at 10 ms; the kernel's tool printed each 3 ms later.
        let k = kernel(&[(3_000_000, NEW), (13_000_000, UPD)]);
        let e = [ev(0, EventKind::New, NEW, true), ev(10, EventKind::Update, UPD, true)];
        let r = compare(&k, &e, Time(T0 + 10_000_000), &BTreeMap::new(), 2.0);
        assert_eq!(r.differences, vec![]);
        assert_eq!((r.kernel_events, r.engine_events, r.connections, r.timestamps_compared), (2, 2, 1, 2));
        assert!((r.max_skew_ms - 3.0).abs() < 1e-6);
        // Printed 80 ms late: a timestamp difference.
        let k = kernel(&[(3_000_000, NEW), (90_000_000, UPD)]);
        let r = compare(&k, &e, Time(T0 + 10_000_000), &BTreeMap::new(), 2.0);
        assert!(matches!(r.differences.as_slice(), [EventDiff::Timestamp { .. }]), "{:?}", r.differences);
    }

    #[test]
    fn a_missing_update_and_a_different_text_are_named() {
        let k = kernel(&[
            (0, NEW),
            (10_000_000, UPD),
            (100_000_000, &UPD.replace("dport=41966", "dport=41966 mark=1")),
        ]);
        let e = [ev(0, EventKind::New, NEW, true), ev(100, EventKind::Update, UPD, true)];
        let r = compare(&k, &e, Time(T0 + 100_000_000), &BTreeMap::new(), 2.0);
        // The engine's UPDATE aligns with the kernel's first one (90 ms earlier); the kernel's second is extra.
        assert_eq!(r.disagreements(), 2, "{:?}", r.differences);
        assert!(r
            .differences
            .iter()
            .any(|d| matches!(d, EventDiff::OnlyKernel { line, .. } if line.contains("mark=1"))));
        assert!(r.differences.iter().any(|d| matches!(d, EventDiff::Timestamp { .. })));
        // A text difference at the same place is shown side by side.
        let k = kernel(&[(0, &NEW.replace("[UNREPLIED] ", ""))]);
        let r = compare(&k, &e[..1], Time(T0), &BTreeMap::new(), 2.0);
        assert!(
            matches!(&r.differences[..], [EventDiff::Differs { kernel, engine, .. }] if !kernel.contains("UNREPLIED") && engine.contains("UNREPLIED"))
        );
    }

    #[test]
    fn a_destroy_after_the_end_of_an_entry_expiring_then_is_tolerated() {
        let e = [ev(0, EventKind::New, NEW, true)];
        let flow = parse_line(NEW, false).flow;
        // The engine's entry expires at 30 s; the kernel reaped it at 30.4 s while its state was read.
        let expiry = BTreeMap::from([(flow, Time(T0 + 30_000_000_000))]);
        let k = kernel(&[(0, NEW), (30_400_000_000, DES)]);
        let r = compare(&k, &e, Time(T0 + 29_000_000_000), &expiry, 2.0);
        assert!(matches!(r.differences.as_slice(), [EventDiff::ExpiredAfterEnd { .. }]));
        assert_eq!(r.disagreements(), 0);
        // Destroyed 10 s before it should expire: a disagreement.
        let k = kernel(&[(0, NEW), (20_000_000_000, DES)]);
        let r = compare(&k, &e, Time(T0 + 19_000_000_000), &expiry, 2.0);
        assert!(matches!(r.differences.as_slice(), [EventDiff::OnlyKernel { .. }]));
    }

    #[test]
    fn a_timers_destroy_may_be_printed_late_but_not_early() {
        let e = [ev(0, EventKind::New, NEW, true), ev(30_000, EventKind::Destroy, DES, false)];
        let k = kernel(&[(0, NEW), (33_000_000_000, DES)]);
        assert_eq!(compare(&k, &e, Time(T0 + 40_000_000_000), &BTreeMap::new(), 2.0).differences, vec![]);
        let k = kernel(&[(0, NEW), (29_000_000_000, DES)]);
        let r = compare(&k, &e, Time(T0 + 40_000_000_000), &BTreeMap::new(), 2.0);
        assert!(matches!(r.differences.as_slice(), [EventDiff::Timestamp { .. }]));
    }

    #[test]
    fn an_overrun_listener_is_a_note() {
        let k = KernelEvents {
            text: format!("{}{NEW}\n", stamp(T0)),
            stderr: "WARNING: We have hit ENOBUFS! We are losing events.\n".into(),
        };
        let r = compare(&k, &[], Time(T0), &BTreeMap::new(), 2.0);
        assert!(r.note.is_some() && r.differences.is_empty());
    }
}
