//! `statewall verify`: the Linux kernel as the oracle.
//!
//! Contract: for each capture, verify builds a private topology of network namespaces from the host model
//! ([`netns`]), loads the ruleset into the firewall namespace with the real iptables, sends every IPv4
//! packet through the kernel on the path the host model gives it with the capture's timing ([`plan`], [`io`]),
//! and every IPv6 packet too when an IPv6 ruleset is given (`--rules6`, loaded with ip6tables; the firewall
//! then gets the model's IPv6 addresses and routes, see [`netns`] and [`ip6`]); it
//! records what came out and when each packet was actually sent, reads the kernel's counters and conntrack
//! table, then replays the same records with the recorded send times through the engine and compares packet
//! fates ([`fate`]), every rule and policy counter ([`counters`]) and the final conntrack table ([`table`]).
//! When conntrack-tools are installed it also compares what they print in the firewall namespace with the
//! engine's formatters ([`views`]: `conntrack -L`, `-L -o extended`, `-S`, `-C`, /proc/net/stat; [`events`]:
//! `conntrack -E -o timestamp`, listening from before the first packet until the state has been read); without
//! them those views are skipped with a note.
//!
//! Exit status: 0 every capture agrees; 1 some capture disagrees (or is inconclusive: it disagrees and some
//! packets could not be shown to the kernel as captured); 2 usage or environment errors (not root, a tool
//! missing, bad input, a namespace command failing, Ctrl-C).
//!
//! Everything given by the user is parsed with the same loaders as `replay` before anything is built; the
//! namespaces are always deleted (guard on drop, and a Ctrl-C/SIGTERM handler that makes the send loop stop).

pub mod counters;
pub mod events;
pub mod fate;
pub mod io;
pub mod ip6;
pub mod netns;
pub mod plan;
pub mod report;
pub mod table;
pub mod views;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use miette::Diagnostic;

use crate::cli::{Format, HostArgs};
use crate::load::{self, LoadedCapture};
use crate::replay;
use netns::{Backend, FirewallSetup, Topology};
use plan::{Plan, Step};
use report::{CaptureReport, Status};

/// Remaining-timeout tolerance when comparing conntrack tables (seconds).
pub const TOLERANCE_SECS: f64 = 2.0;
/// How long to wait after the last packet for stragglers before reading the kernel's state.
const STRAGGLERS: Duration = Duration::from_millis(200);

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The ruleset, in iptables-save format.
    #[arg(long, value_name = "FILE")]
    pub rules: PathBuf,
    #[command(flatten)]
    pub host: HostArgs,
    /// Which iptables loads the ruleset into the kernel.
    #[arg(long, value_enum, default_value = "legacy")]
    pub backend: Backend,
    /// Cap every inter-packet gap of the capture at this many milliseconds (the engine is replayed with the
    /// recorded send times, so both sides see the same clock either way).
    #[arg(long, value_name = "MS")]
    pub max_gap: Option<u64>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Go on with the next capture after a disagreement (the default).
    #[arg(long, conflicts_with = "fail_fast")]
    pub keep_going: bool,
    /// Stop after the first capture that disagrees.
    #[arg(long)]
    pub fail_fast: bool,
    /// Write the artefacts here: kernel and engine counters and tables, retimed.pcap, fates.jsonl, report.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Set the GLOBAL `net.netfilter.nf_conntrack_max` of this machine to N for the run (restored afterwards,
    /// also on error or Ctrl-C), and the engine's to the same value. It is global (read-only inside a
    /// namespace), so this affects the whole host while it runs: refused when the host's own table already holds
    /// N entries or more.
    #[arg(long, value_name = "N")]
    pub global_conntrack_max: Option<u64>,
    /// Test hook: a sysctl applied to the kernel side only (to prove a disagreement is caught).
    #[arg(long = "kernel-only-sysctl", value_name = "KEY=VALUE", hide = true)]
    pub kernel_only_sysctl: Vec<String>,
    /// One or more captures; each gets its own fresh topology.
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<PathBuf>,
}

/// Environment and setup failures (exit 2).
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum VerifyError {
    #[error(
        "statewall verify needs root: it builds network namespaces and loads the ruleset into a real kernel"
    )]
    NotRoot,
    #[error("`{tool}` not found in PATH: statewall verify needs it ({why})")]
    MissingTool { tool: String, why: &'static str },
    #[error("--sysctl {0}: {1}")]
    Sysctl(String, String),
    #[error("command failed ({status}): {cmd}\n{stderr}")]
    Command { cmd: String, status: String, stderr: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
    #[error("interrupted: the namespaces were removed")]
    Aborted,
}

/// The host arguments the engine side uses: the user's, plus `nf_conntrack_max` when `--global-conntrack-max`
/// gives the kernel a different global limit.
fn engine_host_args(args: &VerifyArgs) -> HostArgs {
    let mut h = args.host.clone();
    if let Some(n) = args.global_conntrack_max {
        h.sysctl.push(format!("net.netfilter.nf_conntrack_max={n}"));
    }
    h
}

const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const CONNTRACK_COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";

/// The machine-wide `nf_conntrack_max`, changed for the run and restored on drop.
struct GlobalConntrackMax {
    previous: String,
}

impl GlobalConntrackMax {
    fn set(n: u64) -> Result<GlobalConntrackMax, VerifyError> {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| VerifyError::Setup(format!("cannot read {p} (is nf_conntrack loaded?): {e}")))
        };
        let previous = read(CONNTRACK_MAX)?;
        let count: u64 = read(CONNTRACK_COUNT)?.parse().unwrap_or(u64::MAX);
        if n == 0 || count >= n {
            return Err(VerifyError::Setup(format!(
                "--global-conntrack-max {n}: this host's own conntrack table holds {count} entries; a global limit \
of {n} would drop its traffic"
            )));
        }
        std::fs::write(CONNTRACK_MAX, n.to_string())
            .map_err(|e| VerifyError::Setup(format!("cannot write {CONNTRACK_MAX}: {e}")))?;
        Ok(GlobalConntrackMax { previous })
    }
}

impl Drop for GlobalConntrackMax {
    fn drop(&mut self) {
        let _ = std::fs::write(CONNTRACK_MAX, &self.previous);
    }
}

/// The conntrack sysctls to write in the firewall namespace, as `net.netfilter.NAME` keys. The routing
/// switches are the host model's business; keys that are global (read-only in a child namespace) are refused.
pub fn kernel_sysctls(kv: &[String]) -> Result<Vec<(String, String)>, VerifyError> {
    let mut out = Vec::new();
    for s in kv {
        let Some((k, v)) = s.split_once('=') else {
            return Err(VerifyError::Sysctl(s.clone(), "expected KEY=VALUE".into()));
        };
        let (k, v) = (k.trim(), v.trim());
        let dotted = k.replace('/', ".");
        let dotted = dotted.trim_start_matches(".proc.sys.");
        // Per-namespace IPv4 reassembly settings (nf_defrag_ipv4 uses the stack's): written as given.
        if matches!(dotted, "net.ipv4.ipfrag_time" | "net.ipv4.ipfrag_high_thresh") {
            out.push((dotted.to_string(), v.to_string()));
            continue;
        }
        if matches!(
            dotted,
            "net.ipv4.ip_forward"
                | "net.ipv4.conf.all.forwarding"
                | "net.ipv6.conf.all.forwarding"
                | "net.ipv6.conf.default.forwarding"
        ) {
            continue;
        }
        if dotted.contains("nf_conntrack_ftp") {
            return Err(VerifyError::Sysctl(
                s.clone(),
                "the FTP helper's `loose` is a module parameter of the whole machine, not a namespace sysctl: \
the kernel side cannot be given it (use `statewall replay` for it)"
                    .into(),
            ));
        }
        let name = ["net.netfilter.", "net."].iter().find_map(|p| dotted.strip_prefix(p)).unwrap_or(dotted);
        if matches!(name, "nf_conntrack_max" | "nf_conntrack_buckets" | "nf_conntrack_expect_max") {
            return Err(VerifyError::Sysctl(
                s.clone(),
                format!(
                    "{name} is global: read-only inside a child network namespace, so the kernel side cannot \
be given this value (run `statewall replay` for it instead)"
                ),
            ));
        }
        out.push((format!("net.netfilter.{name}"), v.to_string()));
    }
    Ok(out)
}

fn find_in_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| d.join(tool).is_file())
}

fn check_environment(backend: Backend, ipv6: bool) -> Result<(), VerifyError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(VerifyError::NotRoot);
    }
    let mut tools = vec![
        ("ip".to_string(), "iproute2: namespaces, links, addresses"),
        ("sysctl".to_string(), "procps: namespace sysctls"),
        (backend.tool(""), "the suppression rules"),
        (backend.tool("-restore"), "loading the ruleset"),
        (backend.tool("-save"), "reading the counters back"),
    ];
    if ipv6 {
        tools.push((backend.tool6(""), "the IPv6 suppression rules"));
        tools.push((backend.tool6("-restore"), "loading the IPv6 ruleset"));
        tools.push((backend.tool6("-save"), "reading the IPv6 counters back"));
    }
    for (tool, why) in tools {
        if !find_in_path(&tool) {
            return Err(VerifyError::MissingTool { tool, why });
        }
    }
    Ok(())
}

/// The conntrack-tools program whose views are compared when it is installed.
const CONNTRACK_TOOL: &str = "conntrack";
const NO_CONNTRACK_TOOL: &str =
    "conntrack (conntrack-tools) is not installed: the conntrack -L/-S/-C/-E views are not compared";

/// The IPv6 ruleset file (`--rules6`), when given.
fn rules6_path(host: &HostArgs) -> Option<&Path> {
    host.rules6.as_deref()
}

/// The IPv6 ruleset: its text and its tables, parsed as ip6tables-save.
struct Rules6 {
    text: String,
    ruleset: rules::Ruleset,
}

fn load_rules6(host: &HostArgs) -> miette::Result<Option<Rules6>> {
    let Some(path) = rules6_path(host) else { return Ok(None) };
    let ruleset = load::ruleset_family(path, rules::Family::V6)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| miette::miette!("cannot read IPv6 ruleset {}: {e}", path.display()))?;
    Ok(Some(Rules6 { text, ruleset }))
}

pub fn run(args: &VerifyArgs) -> miette::Result<u8> {
    check_environment(args.backend, rules6_path(&args.host).is_some())?;
    // Everything the user gave, parsed before anything is built.
    let setup = replay::setup(&args.rules, &engine_host_args(args))?;
    let rules_text = std::fs::read_to_string(&args.rules)
        .map_err(|e| miette::miette!("cannot read ruleset {}: {e}", args.rules.display()))?;
    let rules6 = load_rules6(&args.host)?;
    let mut sysctls = kernel_sysctls(&args.host.sysctl)?;
    let extra = kernel_sysctls(&args.kernel_only_sysctl)?;
    sysctls.extend(extra);
    let captures = load::captures(&args.captures)?;
    if !find_in_path(CONNTRACK_TOOL) {
        eprintln!("note: {NO_CONNTRACK_TOOL}");
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|e| miette::miette!("cannot create {}: {e}", dir.display()))?;
    }
    drop(setup);

    // Restores the global value when dropped (end of run, error, Ctrl-C unwinding through here).
    let _global_max = match args.global_conntrack_max {
        Some(n) => Some(GlobalConntrackMax::set(n)?),
        None => None,
    };

    let abort = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&abort);
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .map_err(|e| miette::miette!("cannot install the Ctrl-C handler: {e}"))?;

    let mut reports = Vec::new();
    let several = captures.len() > 1;
    for (n, cap) in captures.iter().enumerate() {
        if abort.load(Ordering::SeqCst) {
            return Err(VerifyError::Aborted.into());
        }
        let id = u32::try_from(n).unwrap_or(u32::MAX);
        let out_dir =
            args.out
                .as_ref()
                .map(|d| if several { d.join(artefact_dir_name(n, &cap.path)) } else { d.clone() });
        let r = verify_capture(
            args,
            &rules_text,
            rules6.as_ref(),
            &sysctls,
            cap,
            id,
            &abort,
            out_dir.as_deref(),
        )?;
        if args.format == Format::Text {
            if several {
                println!("{}", r.line());
            } else {
                print!("{}", report::text(&r));
            }
            let _ = std::io::stdout().flush();
        }
        let stop = args.fail_fast && r.status != Status::Agree;
        reports.push(r);
        if stop {
            break;
        }
    }
    let agree = reports.iter().all(|r| r.status == Status::Agree);
    match args.format {
        Format::Text if several => {
            for r in reports.iter().filter(|r| r.status != Status::Agree) {
                print!("\n{}", report::text(r));
            }
            let bad = reports.iter().filter(|r| r.status != Status::Agree).count();
            println!("\n{} of {} captures agree", reports.len() - bad, reports.len());
        }
        Format::Text => {}
        Format::Json => {
            let v = serde_json::json!({ "agree": agree, "captures": reports });
            println!("{}", serde_json::to_string_pretty(&v).map_err(|e| miette::miette!("{e}"))?);
        }
    }
    Ok(if agree { 0 } else { 1 })
}

fn artefact_dir_name(n: usize, path: &Path) -> String {
    let stem = path.file_stem().map_or_else(|| "capture".into(), |s| s.to_string_lossy().into_owned());
    format!("{:03}-{stem}", n + 1)
}

/// What the kernel did with one capture.
struct KernelRun {
    stamps: Vec<wire::Time>,
    send_errors: Vec<(usize, String)>,
    observed: Vec<io::Observed>,
    read_at: wire::Time,
    conntrack: String,
    save: String,
    /// `ip6tables-save -c`, when IPv6 is verified.
    save6: Option<String>,
    /// What conntrack-tools printed (None: not installed).
    views: Option<views::KernelViews>,
    events: Option<events::KernelEvents>,
    /// `conntrack -E expect`.
    expect_events: Option<events::KernelEvents>,
}

fn kernel_run(
    args: &VerifyArgs,
    plan: &Plan,
    cap: &LoadedCapture,
    fw: &FirewallSetup<'_>,
    id: u32,
    abort: &AtomicBool,
) -> Result<KernelRun, VerifyError> {
    let names: Vec<String> = plan.interfaces.iter().map(|i| i.name.clone()).collect();
    let mut topo = Topology::new(id, &names);
    topo.build(plan, fw)?;
    let stop = Arc::new(AtomicBool::new(false));
    // Declared after `topo`, so dropped (threads joined, sockets closed) before the namespaces go.
    let (mut socks, observers) = io::open(&topo, plan, &stop)?;
    // Listening before the first packet (declared after `topo`: stopped before the namespaces go).
    let listener = if find_in_path(CONNTRACK_TOOL) { Some(events::Listener::start(&topo.fw)?) } else { None };
    let expect_listener = match listener {
        Some(_) => Some(events::Listener::start_expect(&topo.fw)?),
        None => None,
    };
    let sent =
        io::send_all(&mut socks, plan, &cap.capture.records, args.max_gap.map(Duration::from_millis), abort)?;
    std::thread::sleep(STRAGGLERS);
    let (read_at, conntrack) = io::read_conntrack(&topo.fw)?;
    let kviews = match listener {
        Some(_) => Some(views::read_kernel(&topo.fw)?),
        None => None,
    };
    let save = netns::ns_run(&topo.fw, &[&fw.backend.tool("-save"), "-c"], None)?;
    let save6 = match fw.ipv6 {
        Some(_) => Some(netns::ns_run(&topo.fw, &[&fw.backend.tool6("-save"), "-c"], None)?),
        None => None,
    };
    let kevents = listener.map(events::Listener::stop).transpose()?;
    let kexpect_events = expect_listener.map(events::Listener::stop).transpose()?;
    let observed = observers.finish();
    drop(socks);
    let left = topo.destroy();
    if !left.is_empty() {
        return Err(VerifyError::Setup(format!("namespaces left behind: {}", left.join(" "))));
    }
    Ok(KernelRun {
        stamps: sent.stamps,
        send_errors: sent.errors,
        observed,
        read_at,
        conntrack,
        save,
        save6,
        views: kviews,
        events: kevents,
        expect_events: kexpect_events,
    })
}

#[allow(clippy::too_many_arguments)]
fn verify_capture(
    args: &VerifyArgs,
    rules_text: &str,
    rules6: Option<&Rules6>,
    sysctls: &[(String, String)],
    cap: &LoadedCapture,
    id: u32,
    abort: &AtomicBool,
    out: Option<&Path>,
) -> miette::Result<CaptureReport> {
    let setup = replay::setup(&args.rules, &engine_host_args(args))?;
    let plan = Plan::build(&cap.capture.records, &setup.host, rules6.is_some());
    let tables: Vec<&str> = setup.ruleset.tables().iter().map(|t| t.table.name()).collect();
    let tables6: Vec<&str> =
        rules6.map(|r| r.ruleset.tables().iter().map(|t| t.table.name()).collect()).unwrap_or_default();
    let fw = FirewallSetup {
        backend: args.backend,
        rules_text,
        zero_counters: counters::all_zero(&setup.ruleset),
        tables: &tables,
        forwarding: setup.host.forwarding(),
        sysctls,
        ipv6: rules6.map(|r| netns::Rules6 {
            rules_text: &r.text,
            zero_counters: counters::all_zero(&r.ruleset),
            tables: &tables6,
        }),
    };
    let k = kernel_run(args, &plan, cap, &fw, id, abort)?;

    // The same records, stamped with the moments they were actually sent.
    let mut retimed = LoadedCapture { path: cap.path.clone(), capture: cap.capture.clone() };
    for (r, t) in retimed.capture.records.iter_mut().zip(&k.stamps) {
        r.ts = *t;
    }
    let mut decisions = Vec::with_capacity(retimed.capture.records.len());
    let mut engine_events = Vec::new();
    let mut engine_expect_events = Vec::new();
    // The time of the packet whose events are being drained: an event stamped with it was made by the packet.
    let current = std::cell::Cell::new(wire::Time(0));
    let (engine, _summary) = replay::run_engine_with(
        setup,
        std::slice::from_ref(&retimed),
        // Events cost time: only made when the kernel's are there to compare with.
        replay::RunOptions { events: k.events.is_some(), ..Default::default() },
        |p| {
            current.set(p.ts);
            decisions.push(p.decision.clone());
        },
        |e| {
            let ev = events::EngineEvent { event: e.clone(), by_packet: e.time == current.get() };
            if e.expect {
                engine_expect_events.push(ev);
            } else {
                engine_events.push(ev);
            }
        },
    );

    // Fates.
    let mut unfaithful = Vec::new();
    let mut sent_ips: Vec<Option<&[u8]>> = Vec::with_capacity(plan.steps.len());
    for (i, step) in plan.steps.iter().enumerate() {
        let refused = k.send_errors.iter().find(|(j, _)| *j == i);
        match (step, refused) {
            (Step::Send(s), None) => {
                if let Some(u) = &s.unfaithful {
                    unfaithful.push(format!("record {i}: {u}"));
                }
                sent_ips.push(Some(&s.ip));
            }
            (Step::Send(_), Some((_, e))) => {
                unfaithful.push(format!("record {i}: the kernel refused to send it: {e}"));
                sent_ips.push(None);
            }
            (Step::Skip(_), _) => sent_ips.push(None),
        }
    }
    let keys = fate::sent_keys(&sent_ips);
    let engine_fates: Vec<Option<fate::Fate>> = decisions.iter().map(fate::engine_fate).collect();
    let mut obs = fate::Observations::default();
    for o in &k.observed {
        match o {
            io::Observed::Ip(ip) => obs.handle_ip(ip),
            io::Observed::Delivered6 { src, proto, l4 } => obs.handle_delivered6(*src, *proto, l4),
        }
    }
    let fates = fate::fates(&keys, &engine_fates, &obs);
    let mut packets = report::Packets { compared: fates.len(), ..Default::default() };
    for f in &fates {
        packets.kernel_passed += usize::from(f.kernel == fate::Fate::Passed);
        packets.engine_passed += usize::from(f.engine == fate::Fate::Passed);
        if f.kernel != f.engine {
            let d = decisions.get(f.index);
            packets.differences.push(report::FateDiff {
                index: f.index,
                kernel: f.kernel,
                engine: f.engine,
                group: f.group,
                flow: d.and_then(|d| d.flow.as_ref()).map(|x| x.to_string()),
                path: d.and_then(|d| d.path).map(|p| p.as_str().to_string()),
                ctstate: d.and_then(|d| d.ctstate).map(|c| c.as_str().to_string()),
                rule: d.and_then(|d| d.rule.as_ref()).map(|r| r.to_string()),
            });
        }
    }

    // Counters.
    let (stripped, suppressed) = counters::strip_suppression(&k.save);
    let kernel_counters = counters::keep_tables(&stripped, &tables);
    let mut ctr = report::Counters::default();
    if suppressed.is_none() {
        ctr.error = Some("the suppression rule is missing from the kernel's raw OUTPUT".into());
    }
    match counters::compare(&kernel_counters, engine.ruleset(), engine.rule_state(), false) {
        Ok(rows) => {
            ctr.compared = rows.len();
            ctr.differences = rows.into_iter().filter(|r| !r.agrees()).collect();
        }
        Err(e) => ctr.error = Some(e),
    }
    let mut suppressed6 = None;
    let mut kernel_counters6 = String::new();
    if let Some(save6) = &k.save6 {
        let (stripped6, s6) = counters::strip_suppression(save6);
        suppressed6 = s6;
        kernel_counters6 = counters::keep_tables(&stripped6, &tables6);
        let mut errors = Vec::new();
        if s6.is_none() {
            errors.push("the suppression rule is missing from the kernel's ip6tables raw OUTPUT".to_string());
        }
        match engine.ruleset6() {
            Some((rs6, state6)) => match counters::compare(&kernel_counters6, rs6, state6, true) {
                Ok(rows) => {
                    ctr.compared += rows.len();
                    ctr.differences.extend(rows.into_iter().filter(|r| !r.agrees()).map(|mut r| {
                        r.name = format!("ip6:{}", r.name);
                        r
                    }));
                }
                Err(e) => errors.push(format!("IPv6: {e}")),
            },
            None => errors.push("the engine was given no IPv6 ruleset".into()),
        }
        if !errors.is_empty() {
            ctr.error = Some(ctr.error.take().into_iter().chain(errors).collect::<Vec<_>>().join("; "));
        }
    }

    // Conntrack tables: the engine's at its last packet, the kernel's at read time.
    let mut engine_ct = String::new();
    conntrack::write_proc(engine.conntrack(), engine.now(), &mut engine_ct)
        .map_err(|e| miette::miette!("formatting the conntrack table: {e}"))?;
    let lag_secs = k.read_at.0.saturating_sub(engine.now().0) as f64 / 1e9;
    let kt = table::parse(&k.conntrack);
    let et = table::parse(&engine_ct);
    let table = report::Table {
        kernel_entries: kt.len(),
        engine_entries: et.len(),
        lag_ms: lag_secs * 1000.0,
        tolerance_secs: TOLERANCE_SECS,
        differences: table::compare(&kt, &et, lag_secs, TOLERANCE_SECS),
    };

    let engine_views = views::engine_views(engine.conntrack(), engine.now())
        .map_err(|e| miette::miette!("formatting the conntrack views: {e}"))?;
    let views_report = compare_views(&k, &engine, &engine_views, &engine_events, &engine_expect_events);

    let sent = plan.steps.iter().filter(|s| matches!(s, Step::Send(_))).count();
    let mut r = CaptureReport {
        capture: cap.path.display().to_string(),
        status: Status::Agree,
        frames: cap.capture.records.len(),
        sent: sent.saturating_sub(k.send_errors.len()),
        skipped: plan.skipped(),
        partial: cap.capture.truncated.as_ref().map(|e| e.to_string()),
        unfaithful,
        observed: obs.total,
        suppressed,
        suppressed6,
        packets,
        counters: ctr,
        conntrack: table,
        views: views_report,
    };
    r.decide();

    if let Some(dir) = out {
        let mut engine_counters = String::new();
        engine
            .ruleset()
            .write_save(engine.rule_state(), true, &mut engine_counters)
            .map_err(|e| miette::miette!("formatting counters: {e}"))?;
        let mut engine_counters6 = String::new();
        if let Some((rs6, state6)) = engine.ruleset6() {
            rs6.write_save(state6, true, &mut engine_counters6)
                .map_err(|e| miette::miette!("formatting IPv6 counters: {e}"))?;
        }
        let mut lines = String::new();
        for f in &fates {
            let v = serde_json::json!({
                "index": f.index,
                "ts": k.stamps.get(f.index).map(|t| t.0),
                "kernel": f.kernel,
                "engine": f.engine,
                "group": f.group,
            });
            lines.push_str(&v.to_string());
            lines.push('\n');
        }
        let json = serde_json::to_string_pretty(&r).map_err(|e| miette::miette!("{e}"))?;
        write_artefacts(
            dir,
            &[
                ("kernel-counters.txt", kernel_counters.as_bytes()),
                ("kernel-counters-full.txt", k.save.as_bytes()),
                ("kernel-counters6.txt", kernel_counters6.as_bytes()),
                ("kernel-counters6-full.txt", k.save6.as_deref().unwrap_or("").as_bytes()),
                ("engine-counters6.txt", engine_counters6.as_bytes()),
                ("engine-counters.txt", engine_counters.as_bytes()),
                ("kernel-conntrack.txt", k.conntrack.as_bytes()),
                ("engine-conntrack.txt", engine_ct.as_bytes()),
                ("kernel-conntrack-L.txt", k.views.as_ref().map_or("", |v| v.list.as_str()).as_bytes()),
                ("engine-conntrack-L.txt", engine_views.list.as_bytes()),
                (
                    "kernel-conntrack-L-extended.txt",
                    k.views.as_ref().map_or("", |v| v.extended.as_str()).as_bytes(),
                ),
                ("engine-conntrack-L-extended.txt", engine_views.extended.as_bytes()),
                ("kernel-conntrack-S.txt", k.views.as_ref().map_or("", |v| v.stats.as_str()).as_bytes()),
                ("engine-conntrack-S.txt", engine_views.stats.as_bytes()),
                ("kernel-conntrack-C.txt", k.views.as_ref().map_or("", |v| v.count.as_str()).as_bytes()),
                ("engine-conntrack-C.txt", format!("{}\n", engine.conntrack().count()).as_bytes()),
                ("kernel-stat.txt", k.views.as_ref().map_or("", |v| v.proc_stat.as_str()).as_bytes()),
                ("engine-stat.txt", engine_views.proc_stat.as_bytes()),
                ("kernel-expect.txt", k.views.as_ref().map_or("", |v| v.proc_expect.as_str()).as_bytes()),
                ("engine-expect.txt", engine_views.proc_expect.as_bytes()),
                (
                    "kernel-conntrack-L-expect.txt",
                    k.views.as_ref().map_or("", |v| v.list_expect.as_str()).as_bytes(),
                ),
                ("engine-conntrack-L-expect.txt", engine_views.list_expect.as_bytes()),
                ("kernel-events.txt", k.events.as_ref().map_or("", |v| v.text.as_str()).as_bytes()),
                ("engine-events.txt", events::engine_text(&engine_events).as_bytes()),
                (
                    "kernel-expect-events.txt",
                    k.expect_events.as_ref().map_or("", |v| v.text.as_str()).as_bytes(),
                ),
                ("engine-expect-events.txt", events::engine_text(&engine_expect_events).as_bytes()),
                ("fates.jsonl", lines.as_bytes()),
                ("report.json", json.as_bytes()),
                ("report.txt", report::text(&r).as_bytes()),
            ],
            &retimed,
        )?;
    }
    Ok(r)
}

/// The conntrack-tools views, kernel against engine (skipped with a note when the tool is not installed).
fn compare_views(
    k: &KernelRun,
    engine: &engine::Engine,
    ev: &views::EngineViews,
    engine_events: &[events::EngineEvent],
    engine_expect_events: &[events::EngineEvent],
) -> report::Views {
    let (Some(kv), Some(ke)) = (&k.views, &k.events) else {
        return report::Views { skipped: Some(NO_CONNTRACK_TOOL.into()), ..Default::default() };
    };
    let now = engine.now();
    let lag = |t: wire::Time| t.0.saturating_sub(now.0) as f64 / 1e9;
    let mut expiry = std::collections::BTreeMap::new();
    for c in engine.conntrack().iter().filter(|c| !c.is_expired(now)) {
        let mut line = String::new();
        if conntrack::format::write_conntrack_l_line(c, now, &mut line).is_ok() {
            expiry.insert(events::flow_key(&line), c.expires());
        }
    }
    let mut expect_expiry = std::collections::BTreeMap::new();
    for e in engine.conntrack().expectations() {
        let mut line = String::new();
        if conntrack::format::write_conntrack_l_expect_line(e, now, &mut line).is_ok() {
            expect_expiry.insert(events::expect_key(&line), e.expires);
        }
    }
    report::Views {
        skipped: None,
        list: Some(views::compare_listing(
            &kv.list,
            &ev.list,
            table::LIST_TIMEOUT_FIELD,
            lag(kv.list_at),
            TOLERANCE_SECS,
        )),
        extended: Some(views::compare_listing(
            &kv.extended,
            &ev.extended,
            table::PROC_TIMEOUT_FIELD,
            lag(kv.extended_at),
            TOLERANCE_SECS,
        )),
        stats: Some(views::compare_stats(kv, ev)),
        count: Some(views::compare_count(&kv.count, &ev.remaining, lag(kv.extended_at), TOLERANCE_SECS)),
        proc_expect: Some(views::compare_listing(
            &kv.proc_expect,
            &ev.proc_expect,
            views::EXPECT_TIMEOUT_FIELD,
            lag(kv.proc_expect_at),
            TOLERANCE_SECS,
        )),
        list_expect: Some(views::compare_listing(
            &kv.list_expect,
            &ev.list_expect,
            views::EXPECT_TIMEOUT_FIELD,
            lag(kv.list_expect_at),
            TOLERANCE_SECS,
        )),
        events: Some(events::compare(ke, engine_events, now, &expiry, TOLERANCE_SECS)),
        expect_events: k
            .expect_events
            .as_ref()
            .map(|kx| events::compare_expect(kx, engine_expect_events, now, &expect_expiry, TOLERANCE_SECS)),
    }
}

fn write_artefacts(dir: &Path, files: &[(&str, &[u8])], retimed: &LoadedCapture) -> miette::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| miette::miette!("cannot create {}: {e}", dir.display()))?;
    for (name, bytes) in files {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| miette::miette!("writing {}: {e}", p.display()))?;
    }
    let p = dir.join("retimed.pcap");
    let err = |e: std::io::Error| miette::miette!("writing {}: {e}", p.display());
    let linktype = retimed.capture.records.first().map_or(1, |r| r.linktype);
    let file = std::fs::File::create(&p).map_err(err)?;
    let mut w = wire::PcapWriter::new(std::io::BufWriter::new(file), linktype, true).map_err(err)?;
    for r in retimed.capture.records.iter().filter(|r| r.linktype == linktype) {
        w.write_packet(r.ts, &r.data).map_err(err)?;
    }
    w.into_inner().map_err(err)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn sysctls_for_the_firewall_namespace() {
        let kv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let got = kernel_sysctls(&kv(&[
            "net.netfilter.nf_conntrack_tcp_loose=0",
            "nf_conntrack_udp_timeout = 60",
            "net/netfilter/nf_conntrack_acct=1",
            "net.ipv4.ip_forward=1",
        ]))
        .unwrap();
        assert_eq!(
            got,
            [
                ("net.netfilter.nf_conntrack_tcp_loose".to_string(), "0".to_string()),
                ("net.netfilter.nf_conntrack_udp_timeout".into(), "60".into()),
                ("net.netfilter.nf_conntrack_acct".into(), "1".into()),
            ]
        );
        let e = kernel_sysctls(&kv(&["net.netfilter.nf_conntrack_max=100"])).unwrap_err();
        assert!(e.to_string().contains("global"), "{e}");
        assert!(kernel_sysctls(&kv(&["net.nf_conntrack_max=1"])).is_err());
        assert!(kernel_sysctls(&kv(&["nonsense"])).is_err());
    }

    #[test]
    fn artefact_dirs_are_numbered() {
        assert_eq!(artefact_dir_name(0, Path::new("/x/p2p.pcap")), "001-p2p");
    }
}
