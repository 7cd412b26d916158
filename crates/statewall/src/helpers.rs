//! `statewall helpers`: an audit of the conntrack application helpers (FTP, TFTP, ...) for one ruleset and
//! some traffic.
//!
//! Contract:
//! - The captures run through one engine with TRACE on, exactly as `replay` runs them. After every packet the
//!   expectation table (`Conntrack::expectations()`) is compared with the one before: an expectation that
//!   appeared was created by that packet (by the helper of its master, at the confirm hook); one that
//!   vanished was consumed (a packet was RELATED thanks to it), or expired, replaced or died with its master.
//! - A master is a confirmed entry that got a helper. Its assigning rule is the last `-j CT` rule of the raw
//!   table the entry's first packet traversed (a later CT target replaces the template, as in the kernel),
//!   read from that packet's TRACE.
//! - RELATED packets are those whose decision names the expectation that matched (`Decision::expectation`);
//!   helper drops are packets dropped at the confirm hook with a helper's reason (`ftp: ...`).
//! - Warnings are heuristics, not verdicts: "trusted" means an address of the host or inside one of its
//!   connected subnets (`--local A/LEN`, `--host`); everything else is treated as an untrusted peer.
//! - Exit status as `replay`: 0 done, 2 bad input (nothing written), 3 done on a partial capture.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;

use conntrack::helper::{ftp_parse, FtpCommand, FtpParse};
use conntrack::{Dir, Expectation, Tuple, TupleL4};
use engine::{Decision, Disposition, Engine, FlowSummary, PacketPath, Verdict};
use rules::{Match, PortDir, Ruleset, Table, Target};

use crate::cli::{Format, HelpersArgs};
use crate::load::{self, OpenCapture};
use crate::replay::{self, CaptureInfo, Setup};

/// The port a helper listens on by default (the kernel modules' default `ports=` parameter).
pub fn standard_port(helper: &str) -> Option<u16> {
    Some(match helper {
        "ftp" => 21,
        "tftp" => 69,
        "irc" => 6667,
        "sip" => 5060,
        "amanda" => 10080,
        "Q.931" => 1720,
        "RAS" => 1719,
        "pptp" => 1723,
        "sane" => 6566,
        "snmp" => 161,
        "snmp_trap" => 162,
        "netbios-ns" => 137,
        _ => return None,
    })
}

/// The helper whose well-known port a new connection targets (for the "no helper assigned" reminder).
fn well_known(proto: u8, dport: u16) -> Option<&'static str> {
    match (proto, dport) {
        (6, 21) => Some("ftp"),
        (17, 69) => Some("tftp"),
        (6 | 17, 5060) => Some("sip"),
        (6, 6667) => Some("irc"),
        (17, 10080) => Some("amanda"),
        _ => None,
    }
}

/// A `-j CT --helper` rule of the raw table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HelperRule {
    /// `raw:PREROUTING:1`.
    pub rule: String,
    pub family: &'static str,
    /// The rule as iptables-save prints it.
    pub text: String,
    pub helper: String,
    /// Connections this rule gave their helper to.
    pub masters: u64,
}

/// A connection that got a helper.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Master {
    pub id: usize,
    pub helper: String,
    /// The assigning rule (`None`: not seen in the trace, e.g. the entry predates the capture's first packet).
    pub rule: Option<String>,
    /// Its first packet (0-based over all captures).
    pub packet: usize,
    pub ts: f64,
    pub flow: String,
    pub client: IpAddr,
    pub client_trusted: bool,
    pub in_iface: Option<String>,
    pub expectations: usize,
}

/// One expectation the traffic created.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExpectRecord {
    pub id: usize,
    pub helper: &'static str,
    /// The packet whose helper run created it.
    pub created_by_packet: usize,
    pub created_ts: f64,
    /// That packet's flow.
    pub created_by_flow: String,
    /// FTP: the command or reply that announced it (PORT, EPRT, 227, 229).
    pub command: Option<&'static str>,
    /// The expected connection, `tcp 10.0.0.2:* -> 10.0.0.3:20001` (`*`: any source port).
    pub expected: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub dport: Option<u16>,
    /// Source address mask, as /proc/net/nf_conntrack_expect prints it.
    pub mask_src: IpAddr,
    /// Source port mask (0: any port).
    pub mask_sport: u16,
    /// The master's id in `masters` (when its first packet was seen).
    pub master: Option<usize>,
    /// The master's original direction.
    pub master_flow: String,
    pub timeout_secs: u64,
    /// Packets RELATED thanks to it.
    pub related_packets: Vec<usize>,
    /// `used`, `removed` (expired, replaced, or died with its master) or `pending` (still there at the end).
    pub fate: &'static str,
    /// Index of the packet at which it was used or vanished.
    pub ended_at_packet: Option<usize>,
}

/// A packet that was RELATED only because an expectation matched.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RelatedPacket {
    pub packet: usize,
    pub ts: f64,
    pub flow: String,
    pub path: Option<&'static str>,
    pub verdict: Option<&'static str>,
    pub ctstate: Option<&'static str>,
    /// The deciding rule (`filter:FORWARD:2`).
    pub rule: Option<String>,
    /// The expectation's id in `expectations`.
    pub expectation: Option<usize>,
    pub description: String,
}

/// A packet a helper dropped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HelperDrop {
    pub packet: usize,
    pub ts: f64,
    pub flow: String,
    pub helper: String,
    pub reason: &'static str,
}

/// New connections to a helper's well-known port that got no helper.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Unhelped {
    pub helper: &'static str,
    pub proto: &'static str,
    pub port: u16,
    pub connections: u64,
    pub first_packet: usize,
    pub first_flow: String,
}

/// A risky pattern.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Warning {
    /// `helper-rule-unrestricted`, `untrusted-client`, `nonstandard-port`, `untrusted-trigger`, `ftp-bounce`,
    /// `no-helper`.
    pub kind: &'static str,
    pub message: String,
    pub packet: Option<usize>,
    pub rule: Option<String>,
}

/// Everything the audit found (the JSON output is this, serialised).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Audit {
    pub captures: Vec<CaptureInfo>,
    pub partial: bool,
    pub packets: u64,
    pub helper_rules: Vec<HelperRule>,
    pub masters: Vec<Master>,
    pub expectations: Vec<ExpectRecord>,
    pub related: Vec<RelatedPacket>,
    pub helper_drops: Vec<HelperDrop>,
    pub unhelped: Vec<Unhelped>,
    pub warnings: Vec<Warning>,
}

/// Is `ip` the host's or in one of its connected subnets?
fn trusted(host: &engine::Host, ip: IpAddr) -> bool {
    host.is_local(&ip) || host.interfaces().iter().any(|i| i.addresses.iter().any(|p| p.contains(ip)))
}

/// The original tuple of the connection a packet belongs to (TCP/UDP only).
fn orig_tuple(f: &FlowSummary, reply: bool) -> Option<Tuple> {
    let (sp, dp) = f.ports?;
    let t = Tuple { src: f.src, dst: f.dst, proto: f.proto, l4: TupleL4::Ports { sport: sp, dport: dp } };
    if reply {
        t.invert()
    } else {
        Some(t)
    }
}

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        132 => "sctp",
        136 => "udplite",
        _ => "ip",
    }
}

fn endpoint(a: IpAddr, port: Option<u16>) -> String {
    let host = match a {
        IpAddr::V6(_) => format!("[{a}]"),
        IpAddr::V4(_) => a.to_string(),
    };
    match port {
        Some(p) => format!("{host}:{p}"),
        None => format!("{host}:*"),
    }
}

fn tuple_text(t: &Tuple) -> String {
    let (sp, dp) = match t.l4 {
        TupleL4::Ports { sport, dport } => (Some(sport), Some(dport)),
        _ => (None, None),
    };
    format!("{} {} -> {}", proto_name(t.proto), endpoint(t.src, sp), endpoint(t.dst, dp))
}

/// The expected connection: wildcard parts shown as `*`.
fn expected_text(e: &Expectation) -> String {
    let src = if e.mask.src_addr { e.tuple.src.to_string() } else { "*".to_string() };
    let src = if e.mask.src_addr && e.tuple.src.is_ipv6() { format!("[{src}]") } else { src };
    let sport = match (e.tuple.l4, e.mask.sport) {
        (TupleL4::Ports { sport, .. }, 0xffff) => sport.to_string(),
        (TupleL4::Ports { .. }, _) => "*".to_string(),
        _ => "*".to_string(),
    };
    let dport = e.tuple.dport();
    format!("{} {src}:{sport} -> {}", proto_name(e.tuple.proto), endpoint(e.tuple.dst, dport))
}

fn command_name(c: FtpCommand) -> &'static str {
    match c {
        FtpCommand::Port => "PORT",
        FtpCommand::Eprt => "EPRT",
        FtpCommand::Pasv => "227",
        FtpCommand::Epsv => "229",
    }
}

/// `raw:CHAIN:rule:N` from a TRACE entry.
fn raw_rule_step(step: &str) -> Option<(&str, usize)> {
    let rest = step.strip_prefix("raw:")?;
    let (chain, n) = rest.rsplit_once(":rule:")?;
    Some((chain, n.parse().ok()?))
}

fn rule_at<'r>(rs: &'r Ruleset, chain: &str, n: usize) -> Option<&'r rules::Rule> {
    rs.table(Table::Raw)?.chain(chain)?.rules.get(n.checked_sub(1)?)
}

/// The helper template the packet's raw-table traversal left (the last CT rule it hit), with the rule.
fn assigning_rule(rs: &Ruleset, trace: &[String]) -> Option<(String, Option<String>)> {
    let mut found = None;
    for step in trace {
        let Some((chain, n)) = raw_rule_step(step) else { continue };
        if let Some(Target::Ct(ct)) = rule_at(rs, chain, n).map(|r| &r.target) {
            found = Some((format!("raw:{chain}:{n}"), if ct.notrack { None } else { ct.helper.clone() }));
        }
    }
    found
}

/// `-A` lines of the raw table by (chain, 1-based index), from the ruleset's own iptables-save output.
fn raw_rule_texts(rs: &Ruleset, state: &rules::RuleState) -> HashMap<(String, usize), String> {
    let text = rs.to_save_string(state, false);
    let mut out = HashMap::new();
    let mut in_raw = false;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            in_raw = t.trim() == "raw";
            continue;
        }
        if !in_raw {
            continue;
        }
        if let Some(rest) = line.strip_prefix("-A ") {
            let Some(chain) = rest.split_whitespace().next() else { continue };
            let n = counts.entry(chain.to_string()).or_insert(0);
            *n += 1;
            out.insert((chain.to_string(), *n), line.to_string());
        }
    }
    out
}

/// Destination ports a rule restricts to: `None` when it has no destination-port test.
fn rule_dports(r: &rules::Rule) -> Option<(Vec<rules::Range<u16>>, bool)> {
    let full = |x: &rules::Range<u16>| x.min == 0 && x.max == u16::MAX;
    for m in &r.matches {
        match m {
            Match::Tcp(t) if !full(&t.dport.value) || t.dport.negated => {
                return Some((vec![t.dport.value], t.dport.negated))
            }
            Match::Udp(u) if !full(&u.dport.value) || u.dport.negated => {
                return Some((vec![u.dport.value], u.dport.negated))
            }
            Match::Multiport(mp) if mp.dir != PortDir::Source => return Some((mp.ports.clone(), mp.negated)),
            _ => {}
        }
    }
    None
}

fn ranges_text(rs: &[rules::Range<u16>]) -> String {
    let v: Vec<String> = rs
        .iter()
        .map(|r| if r.min == r.max { r.min.to_string() } else { format!("{}:{}", r.min, r.max) })
        .collect();
    v.join(",")
}

/// The static part: every `CT --helper` rule, with the warnings its matches deserve.
fn helper_rules(
    rs: &Ruleset,
    state: &rules::RuleState,
    family: &'static str,
    out: &mut Vec<HelperRule>,
    warnings: &mut Vec<Warning>,
) {
    let texts = raw_rule_texts(rs, state);
    let Some(raw) = rs.table(Table::Raw) else { return };
    for chain in &raw.chains {
        for (i, r) in chain.rules.iter().enumerate() {
            let Target::Ct(ct) = &r.target else { continue };
            let Some(helper) = ct.helper.as_ref().filter(|_| !ct.notrack) else { continue };
            let n = i.saturating_add(1);
            let id = format!("raw:{}:{n}", chain.name);
            let text = texts.get(&(chain.name.to_string(), n)).cloned().unwrap_or_default();
            // OUTPUT sees only locally generated traffic; every other chain may see what arrives from outside.
            let arriving = &*chain.name != "OUTPUT";
            if arriving && r.ip.in_iface.is_none() && r.ip.src.is_none() {
                warnings.push(Warning {
                    kind: "helper-rule-unrestricted",
                    message: format!(
                        "{id} ({family}) assigns helper {helper} to traffic from any interface and any source \
(no -i/-s): peers on untrusted networks can drive the helper and open expectations. `{text}`"
                    ),
                    packet: None,
                    rule: Some(id.clone()),
                });
            }
            let std = standard_port(helper);
            match (rule_dports(r), std) {
                (None, Some(p)) => warnings.push(Warning {
                    kind: "nonstandard-port",
                    message: format!(
                        "{id} assigns helper {helper} on every destination port (no --dport), not only {p}: \
the helper parses any traffic it matches. `{text}`"
                    ),
                    packet: None,
                    rule: Some(id.clone()),
                }),
                (Some((ranges, negated)), Some(p)) => {
                    let only_std = !negated && ranges.iter().all(|x| x.min == p && x.max == p);
                    if !only_std {
                        warnings.push(Warning {
                            kind: "nonstandard-port",
                            message: format!(
                                "{id} assigns helper {helper} on destination port(s) {}{} (the standard port is \
{p}). `{text}`",
                                if negated { "! " } else { "" },
                                ranges_text(&ranges)
                            ),
                            packet: None,
                            rule: Some(id.clone()),
                        });
                    }
                }
                _ => {}
            }
            out.push(HelperRule { rule: id, family, text, helper: helper.clone(), masters: 0 });
        }
    }
}

/// The running audit: state carried from packet to packet.
struct Auditor {
    audit: Audit,
    /// Live expectations and their record ids (table order).
    live: Vec<(Expectation, usize)>,
    /// `Expectation::describe()` of each record (what `Decision::expectation` names).
    describes: Vec<String>,
    /// Masters by original tuple.
    masters: HashMap<Tuple, usize>,
    /// `no-helper` tallies by (helper, proto, port).
    unhelped: BTreeMap<(&'static str, u8, u16), Unhelped>,
    /// Per-rule tallies of masters whose client is untrusted: (count, first packet, first flow).
    untrusted_clients: BTreeMap<String, (u64, usize, String, String)>,
    /// Per (helper, port) tallies of masters on a non-standard port.
    odd_ports: BTreeMap<(String, u16), (u64, usize, String)>,
}

fn ts_secs(t: wire::Time) -> f64 {
    t.as_secs_f64()
}

impl Auditor {
    fn new() -> Auditor {
        Auditor {
            audit: Audit::default(),
            live: Vec::new(),
            describes: Vec::new(),
            masters: HashMap::new(),
            unhelped: BTreeMap::new(),
            untrusted_clients: BTreeMap::new(),
            odd_ports: BTreeMap::new(),
        }
    }

    /// One packet: its decision, its bytes (for the FTP commands) and the engine after it.
    fn handle_packet(
        &mut self,
        index: usize,
        ts: wire::Time,
        linktype: u32,
        frame: &[u8],
        d: &Decision,
        engine: &Engine,
    ) {
        self.audit.packets += 1;
        let host = engine.host();
        let flow_text = d.flow.as_ref().map(|f| f.to_string()).unwrap_or_else(|| "-".into());
        let mut ftp_cmd: Option<(FtpCommand, IpAddr, u16)> = None;

        if let (Disposition::Filtered, Some(f)) = (&d.disposition, &d.flow) {
            let v4 = f.src.is_ipv4();
            let rs = if v4 { Some(engine.ruleset()) } else { engine.ruleset6().map(|(r, _)| r) };
            let orig = orig_tuple(f, d.reply_dir);
            // a new master?
            if d.ct_created {
                if let (Some(rs), Some(orig)) = (rs, orig) {
                    self.new_connection(index, ts, d, f, &orig, rs, engine);
                }
            }
            // FTP commands on a master with the ftp helper (the bounce check)
            if let Some(mid) = orig.and_then(|o| self.masters.get(&o).copied()) {
                let is_ftp = self.audit.masters.get(mid).is_some_and(|m| m.helper == "ftp");
                if is_ftp && d.verdict == Some(Verdict::Accept) {
                    ftp_cmd = ftp_command(linktype, frame, d.reply_dir, f.src);
                }
            }
            if let Some((cmd, addr, port)) = ftp_cmd {
                if addr != f.src {
                    let loose = engine.conntrack().config().ftp_loose;
                    self.audit.warnings.push(Warning {
                        kind: "ftp-bounce",
                        message: format!(
                            "packet #{index} ({flow_text}): {} names {} port {port}, not the sender {}: an FTP \
bounce attempt; {}",
                            command_name(cmd),
                            addr,
                            f.src,
                            if loose {
                                "nf_conntrack_ftp.loose=1 is set, so the helper EXPECTED a connection to that \
third party"
                            } else {
                                "the helper refused it (no expectation)"
                            }
                        ),
                        packet: Some(index),
                        rule: None,
                    });
                }
            }
            // helper drops
            if let (Some(reason), Some(Verdict::Drop)) = (d.ct_reason, d.verdict) {
                if let Some((helper, _)) = reason.split_once(':') {
                    if standard_port(helper).is_some() || helper == "H.245" {
                        self.audit.helper_drops.push(HelperDrop {
                            packet: index,
                            ts: ts_secs(ts),
                            flow: flow_text.clone(),
                            helper: helper.to_string(),
                            reason,
                        });
                    }
                }
            }
        }

        // expectations: what this packet created and what it consumed or let die
        let now: Vec<&Expectation> = engine.conntrack().expectations().collect();
        let unchanged = now.len() == self.live.len() && now.iter().zip(&self.live).all(|(a, (b, _))| *a == b);
        let mut consumed: Option<usize> = None;
        if let Some(desc) = &d.expectation {
            consumed = self.live.iter().rev().find(|(e, _)| e.describe() == *desc).map(|(_, id)| *id);
            // the one matched (a permanent one stays, a normal one is gone by now)
            if consumed.is_none() {
                consumed = self
                    .describes
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(id, x)| {
                        *x == desc && self.audit.expectations.get(*id).is_some_and(|r| r.fate != "removed")
                    })
                    .map(|(id, _)| id);
            }
        }
        if !unchanged {
            let mut next = Vec::with_capacity(now.len());
            let mut old = std::mem::take(&mut self.live);
            for e in now {
                match old.iter().position(|(o, _)| o == e) {
                    Some(i) => next.push(old.swap_remove(i)),
                    None => {
                        let id = self.new_expectation(index, ts, e, d, &flow_text, ftp_cmd, host, engine);
                        next.push((e.clone(), id));
                    }
                }
            }
            for (_, id) in old {
                if let Some(r) = self.audit.expectations.get_mut(id) {
                    r.fate = if consumed == Some(id) { "used" } else { "removed" };
                    r.ended_at_packet = Some(index);
                }
            }
            self.live = next;
        }
        if d.expectation.is_some() {
            if let Some(r) = consumed.and_then(|id| self.audit.expectations.get_mut(id)) {
                r.related_packets.push(index);
                if r.fate == "pending" {
                    r.fate = "used";
                }
            }
            self.audit.related.push(RelatedPacket {
                packet: index,
                ts: ts_secs(ts),
                flow: flow_text,
                path: d.path.map(PacketPath::as_str),
                verdict: d.verdict.map(Verdict::as_str),
                ctstate: d.ctstate.map(|c| c.as_str()),
                rule: d.rule.as_ref().map(|r| r.to_string()),
                expectation: consumed,
                description: d.expectation.clone().unwrap_or_default(),
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn new_connection(
        &mut self,
        index: usize,
        ts: wire::Time,
        d: &Decision,
        f: &FlowSummary,
        orig: &Tuple,
        rs: &Ruleset,
        engine: &Engine,
    ) {
        let host = engine.host();
        let assigned = assigning_rule(rs, &d.trace);
        // the entry itself says which helper it has (zone 0 lookup; the trace is the fallback)
        let ct_helper = engine
            .conntrack()
            .find(orig, 0)
            .and_then(|id| engine.conntrack().conn(id))
            .and_then(|c| c.helper().map(str::to_string));
        let helper = ct_helper.or_else(|| assigned.as_ref().and_then(|(_, h)| h.clone()));
        let Some(helper) = helper else {
            // no helper: is this a helper's well-known port?
            if d.expectation.is_none() {
                if let Some(h) = orig.dport().and_then(|p| well_known(orig.proto, p)) {
                    let port = orig.dport().unwrap_or(0);
                    let e = self.unhelped.entry((h, orig.proto, port)).or_insert_with(|| Unhelped {
                        helper: h,
                        proto: proto_name(orig.proto),
                        port,
                        connections: 0,
                        first_packet: index,
                        first_flow: f.to_string(),
                    });
                    e.connections += 1;
                }
            }
            return;
        };
        let rule = assigned.filter(|(_, h)| h.as_deref() == Some(helper.as_str())).map(|(r, _)| r);
        let id = self.audit.masters.len();
        let client = orig.src;
        let client_trusted = trusted(host, client);
        let flow = tuple_text(orig);
        if let Some(r) = &rule {
            if let Some(hr) = self.audit.helper_rules.iter_mut().find(|h| {
                &h.rule == r && (h.family == "ipv4") == f.src.is_ipv4() // same family's ruleset
            }) {
                hr.masters += 1;
            }
            // OUTPUT: the client is this host; only traffic arriving from elsewhere is a risk
            if !client_trusted && d.path != Some(PacketPath::Output) {
                let e = self.untrusted_clients.entry(format!("{r}\u{0}{helper}")).or_insert((
                    0,
                    index,
                    flow.clone(),
                    client.to_string(),
                ));
                e.0 += 1;
            }
        }
        if let (Some(p), Some(dport)) = (standard_port(&helper), orig.dport()) {
            if p != dport {
                let e = self.odd_ports.entry((helper.clone(), dport)).or_insert((0, index, flow.clone()));
                e.0 += 1;
            }
        }
        self.audit.masters.push(Master {
            id,
            helper,
            rule,
            packet: index,
            ts: ts_secs(ts),
            flow,
            client,
            client_trusted,
            in_iface: d.in_iface.as_deref().map(str::to_string),
            expectations: 0,
        });
        self.masters.insert(*orig, id);
    }

    #[allow(clippy::too_many_arguments)]
    fn new_expectation(
        &mut self,
        index: usize,
        ts: wire::Time,
        e: &Expectation,
        d: &Decision,
        flow_text: &str,
        ftp_cmd: Option<(FtpCommand, IpAddr, u16)>,
        host: &engine::Host,
        engine: &Engine,
    ) -> usize {
        let id = self.audit.expectations.len();
        let master = self.masters.get(&e.master_tuple).copied();
        if let Some(m) = master.and_then(|m| self.audit.masters.get_mut(m)) {
            m.expectations += 1;
        }
        // who sent the packet that created it, and toward whom does it open a port?
        if let Some(f) = &d.flow {
            if !trusted(host, f.src) && trusted(host, e.tuple.dst) {
                self.audit.warnings.push(Warning {
                    kind: "untrusted-trigger",
                    message: format!(
                        "packet #{index} ({flow_text}) from {}, outside the host's connected subnets, made the \
{} helper expect {} toward {}, a local/LAN address",
                        f.src,
                        e.helper,
                        expected_text(e),
                        e.tuple.dst
                    ),
                    packet: Some(index),
                    rule: None,
                });
            }
        }
        let now = engine.now();
        self.audit.expectations.push(ExpectRecord {
            id,
            helper: e.helper,
            created_by_packet: index,
            created_ts: ts_secs(ts),
            created_by_flow: flow_text.to_string(),
            command: ftp_cmd.map(|(c, _, _)| command_name(c)),
            expected: expected_text(e),
            src: e.tuple.src,
            dst: e.tuple.dst,
            proto: e.tuple.proto,
            dport: e.tuple.dport(),
            mask_src: e.mask_src_addr(),
            mask_sport: e.mask.sport,
            master,
            master_flow: tuple_text(&e.master_tuple),
            timeout_secs: e.remaining_secs(now),
            related_packets: Vec::new(),
            fate: "pending",
            ended_at_packet: None,
        });
        self.describes.push(e.describe());
        id
    }

    fn finish(mut self) -> Audit {
        for (k, (n, first, flow, client)) in std::mem::take(&mut self.untrusted_clients) {
            let (rule, helper) = k.split_once('\u{0}').unwrap_or((&k, ""));
            self.audit.warnings.push(Warning {
                kind: "untrusted-client",
                message: format!(
                    "{rule} gave helper {helper} to {n} connection(s) from outside the host's connected subnets \
(first: packet #{first}, {flow}, client {client}): the helper parses what untrusted peers send"
                ),
                packet: Some(first),
                rule: Some(rule.to_string()),
            });
        }
        for ((helper, port), (n, first, flow)) in std::mem::take(&mut self.odd_ports) {
            let std = standard_port(&helper).unwrap_or(0);
            self.audit.warnings.push(Warning {
                kind: "nonstandard-port",
                message: format!(
                    "helper {helper} ran on {n} connection(s) to port {port}, not its standard port {std} \
(first: packet #{first}, {flow})"
                ),
                packet: Some(first),
                rule: None,
            });
        }
        let any_rule = !self.audit.helper_rules.is_empty();
        for (_, u) in std::mem::take(&mut self.unhelped) {
            let why = if any_rule {
                "no CT --helper rule matched them".to_string()
            } else {
                "the ruleset has no `-j CT --helper` rule at all".to_string()
            };
            self.audit.warnings.push(Warning {
                kind: "no-helper",
                message: format!(
                    "no helper assigned: {} new connection(s) to {}/{} ({}) got no {} helper (first: packet \
#{}, {}): {why}. Since Linux 6.0 helpers are never assigned automatically, so their data connections \
will be NEW, not RELATED. Add e.g. `-t raw -A PREROUTING -p {} --dport {} -j CT --helper {}` (and OUTPUT \
for clients on the host)",
                    u.connections,
                    u.proto,
                    u.port,
                    u.helper,
                    u.helper,
                    u.first_packet,
                    u.first_flow,
                    u.proto,
                    u.port,
                    u.helper
                ),
                packet: Some(u.first_packet),
                rule: None,
            });
            self.audit.unhelped.push(u);
        }
        self.audit
    }
}

/// An FTP command or reply in this packet's payload that the kernel's parser would accept (whatever the
/// line-start tracking says): the command, the address and the port it names.
fn ftp_command(
    linktype: u32,
    frame: &[u8],
    reply: bool,
    sender: IpAddr,
) -> Option<(FtpCommand, IpAddr, u16)> {
    let f = wire::link::strip_link(linktype, frame).ok()?;
    let pkt = wire::packet::decode_ip(f.ip).ok()?;
    let wire::L4::Tcp(h) = &pkt.l4 else { return None };
    if h.payload.is_empty() {
        return None;
    }
    let dir = if reply { Dir::Reply } else { Dir::Original };
    match ftp_parse(dir, h.payload, sender) {
        FtpParse::Match { cmd, addr, port } => Some((cmd, addr, port)),
        _ => None,
    }
}

/// Runs the audit.
pub fn audit(setup: Setup, captures: &mut [OpenCapture]) -> Audit {
    let mut config = setup.config;
    let _ = config.set("net.netfilter.nf_conntrack_events", "0");
    let mut engine = Engine::new(setup.ruleset, setup.host, config);
    if let Some(r6) = setup.ruleset6 {
        engine = engine.with_ipv6_rules(r6);
    }
    engine.set_tracing(true);
    engine.set_defrag_config(setup.defrag);
    let mut a = Auditor::new();
    helper_rules(
        engine.ruleset(),
        engine.rule_state(),
        "ipv4",
        &mut a.audit.helper_rules,
        &mut a.audit.warnings,
    );
    if let Some((r6, st6)) = engine.ruleset6() {
        helper_rules(r6, st6, "ipv6", &mut a.audit.helper_rules, &mut a.audit.warnings);
    }
    let mut index = 0usize;
    // One streaming pass over each capture.
    let mut feed = replay::Feed::new(false, captures);
    while let Some(step) = feed.next_step() {
        match step {
            replay::FeedStep::Begin { path, format } => a.audit.captures.push(CaptureInfo {
                path: path.display().to_string(),
                format: format!("{format:?}").to_lowercase(),
                packets: 0,
                partial: None,
            }),
            replay::FeedStep::Packet { r, .. } => {
                let d = engine.handle_packet_on_wire(r.ts, r.linktype, r.data, r.origlen);
                a.handle_packet(index, r.ts, r.linktype, r.data, &d, &engine);
                index += 1;
            }
            replay::FeedStep::End { packets, partial } => {
                if let Some(c) = a.audit.captures.last_mut() {
                    c.packets = packets;
                    c.partial = partial.map(|e| e.to_string());
                }
            }
        }
    }
    feed.finish();
    a.audit.partial = a.audit.captures.iter().any(|c| c.partial.is_some());
    a.finish()
}

/// The admin-readable report.
pub fn text(a: &Audit) -> String {
    let mut s = String::new();
    let total: usize = a.captures.iter().map(|c| c.packets).sum();
    for c in &a.captures {
        let _ = writeln!(s, "capture       {} ({}, {} packets)", c.path, c.format, c.packets);
    }
    let _ = writeln!(s, "packets       {total}");
    let _ = writeln!(s);
    let _ = writeln!(s, "Helper rules ({}):", a.helper_rules.len());
    if a.helper_rules.is_empty() {
        let _ = writeln!(s, "  none: no `-j CT --helper` rule in the raw table");
    }
    for r in &a.helper_rules {
        let _ = writeln!(
            s,
            "  {:<22} {} helper {:<6} assigned to {} connection(s)   {}",
            r.rule, r.family, r.helper, r.masters, r.text
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Connections with a helper ({}):", a.masters.len());
    for m in &a.masters {
        let _ = writeln!(
            s,
            "  M{} {:<6} {}  first packet #{}  via {}{}{}",
            m.id,
            m.helper,
            m.flow,
            m.packet,
            m.rule.as_deref().unwrap_or("(rule not seen)"),
            m.in_iface.as_deref().map(|i| format!("  in {i}")).unwrap_or_default(),
            if m.client_trusted { "" } else { "  [client outside the connected subnets]" }
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Expectations created ({}):", a.expectations.len());
    for e in &a.expectations {
        let master = e.master.map(|m| format!("M{m}")).unwrap_or_else(|| e.master_flow.clone());
        let _ = writeln!(
            s,
            "  E{} {:<5} expect {}  (mask-src={} mask-sport={:#06x}, {} s)",
            e.id, e.helper, e.expected, e.mask_src, e.mask_sport, e.timeout_secs
        );
        let related = if e.related_packets.is_empty() {
            String::new()
        } else {
            let v: Vec<String> = e.related_packets.iter().map(|p| format!("#{p}")).collect();
            format!("; RELATED: {}", v.join(" "))
        };
        let _ = writeln!(
            s,
            "      created by packet #{}{} ({}) of {master}; {}{related}",
            e.created_by_packet,
            e.command.map(|c| format!(" {c}")).unwrap_or_default(),
            e.created_by_flow,
            match (e.fate, e.ended_at_packet) {
                ("used", Some(p)) => format!("used at #{p}"),
                ("removed", Some(p)) => format!("gone unused at #{p} (expired, replaced or master gone)"),
                ("pending", _) => "still pending at the end".to_string(),
                (f, _) => f.to_string(),
            }
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Packets RELATED only thanks to an expectation ({}):", a.related.len());
    for r in &a.related {
        let _ = writeln!(
            s,
            "  #{:<6} {}  {} {} by {}{}",
            r.packet,
            r.flow,
            r.ctstate.unwrap_or("-"),
            r.verdict.unwrap_or("-"),
            r.rule.as_deref().unwrap_or("(no rule: policy of an empty path)"),
            r.expectation.map(|e| format!("  (E{e})")).unwrap_or_default()
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Packets dropped by a helper ({}):", a.helper_drops.len());
    for d in &a.helper_drops {
        let _ = writeln!(s, "  #{:<6} {}  {}", d.packet, d.flow, d.reason);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Warnings ({}):", a.warnings.len());
    for w in &a.warnings {
        let _ = writeln!(s, "  [{}] {}", w.kind, w.message);
    }
    s
}

pub fn run(args: &HelpersArgs) -> miette::Result<u8> {
    let setup = replay::setup(&args.rules, &args.host)?;
    let mut captures = load::open_captures(&args.captures)?;
    let a = audit(setup, &mut captures);
    let out = match args.format {
        Format::Text => text(&a),
        Format::Json => serde_json::to_string_pretty(&a).map_err(|e| miette::miette!("{e}"))? + "\n",
    };
    print!("{out}");
    Ok(replay::exit_status(&a.captures))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn raw_rule_steps_are_read_from_trace_entries() {
        assert_eq!(raw_rule_step("raw:PREROUTING:rule:2"), Some(("PREROUTING", 2)));
        assert_eq!(raw_rule_step("raw:my:chain:rule:10"), Some(("my:chain", 10)));
        assert_eq!(raw_rule_step("raw:OUTPUT:policy:3"), None);
        assert_eq!(raw_rule_step("filter:INPUT:rule:1"), None);
    }

    #[test]
    fn the_last_ct_rule_traversed_decides_the_helper() {
        let rs = rules::parse(
            "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp\n\
-A PREROUTING -p tcp -j CT --zone 1\nCOMMIT\n",
        )
        .unwrap();
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            assigning_rule(&rs, &t(&["raw:PREROUTING:rule:1", "raw:PREROUTING:policy:3"])),
            Some(("raw:PREROUTING:1".to_string(), Some("ftp".to_string())))
        );
        // a later CT without a helper replaces the template: no helper
        assert_eq!(
            assigning_rule(&rs, &t(&["raw:PREROUTING:rule:1", "raw:PREROUTING:rule:2"])),
            Some(("raw:PREROUTING:2".to_string(), None))
        );
        assert_eq!(assigning_rule(&rs, &t(&["raw:PREROUTING:policy:3"])), None);
    }

    #[test]
    fn helper_rules_warn_on_missing_restrictions_and_odd_ports() {
        let rs = rules::parse(
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A PREROUTING -i eth1 -p tcp -m tcp --dport 21 -j CT --helper ftp\n\
-A PREROUTING -p tcp -m tcp --dport 2121 -j CT --helper ftp\n\
-A OUTPUT -p udp -j CT --helper tftp\nCOMMIT\n",
        )
        .unwrap();
        let st = rs.new_state();
        let (mut out, mut w) = (Vec::new(), Vec::new());
        helper_rules(&rs, &st, "ipv4", &mut out, &mut w);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].text, "-A PREROUTING -i eth1 -p tcp -m tcp --dport 21 -j CT --helper ftp");
        let got: Vec<(&str, Option<&str>)> = w.iter().map(|w| (w.kind, w.rule.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("helper-rule-unrestricted", Some("raw:PREROUTING:2")),
                ("nonstandard-port", Some("raw:PREROUTING:2")),
                ("nonstandard-port", Some("raw:OUTPUT:1")),
            ]
        );
    }

    #[test]
    fn tuples_are_printed_with_bracketed_ipv6() {
        let t = Tuple {
            src: "2001:db8::1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: 17,
            l4: TupleL4::Ports { sport: 40000, dport: 69 },
        };
        assert_eq!(tuple_text(&t), "udp [2001:db8::1]:40000 -> 10.0.0.2:69");
        assert_eq!(standard_port("tftp"), Some(69));
        assert_eq!(well_known(6, 21), Some("ftp"));
        assert_eq!(well_known(17, 21), None);
    }
}
