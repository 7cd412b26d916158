//! What the engine decided about one packet.

use rules::RuleRef;

/// The netfilter path a packet took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketPath {
    /// To a local address: PREROUTING → INPUT.
    Input,
    /// From a local address: OUTPUT → POSTROUTING.
    Output,
    /// Through the host: PREROUTING → FORWARD → POSTROUTING.
    Forward,
    /// Both ends local: OUTPUT → POSTROUTING → (lo) PREROUTING → INPUT.
    Loopback,
    /// PREROUTING only: the routing decision discarded the packet (not for us with forwarding off,
    /// multicast group not joined, martian source, no route).
    Prerouting,
}

impl PacketPath {
    pub fn as_str(self) -> &'static str {
        match self {
            PacketPath::Input => "input",
            PacketPath::Output => "output",
            PacketPath::Forward => "forward",
            PacketPath::Loopback => "loopback",
            PacketPath::Prerouting => "prerouting",
        }
    }
}

/// The fate of a filtered packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
            Verdict::Reject => "reject",
        }
    }
}

/// The connection-tracking state the packet had when the filter table saw it (xt_conntrack's classes:
/// direction folded away).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CtStateLabel {
    New,
    Established,
    Related,
    Invalid,
    Untracked,
}

impl CtStateLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            CtStateLabel::New => "NEW",
            CtStateLabel::Established => "ESTABLISHED",
            CtStateLabel::Related => "RELATED",
            CtStateLabel::Invalid => "INVALID",
            CtStateLabel::Untracked => "UNTRACKED",
        }
    }
    pub const ALL: [CtStateLabel; 5] = [
        CtStateLabel::New,
        CtStateLabel::Established,
        CtStateLabel::Related,
        CtStateLabel::Invalid,
        CtStateLabel::Untracked,
    ];
}

/// An interface name as the kernel keeps it (`IFNAMSIZ`: at most 15 bytes), stored inline: a decision names
/// its interfaces without allocating or sharing anything.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfaceName {
    len: u8,
    bytes: [u8; 15],
}

impl IfaceName {
    /// `name`, cut to 15 bytes at a character boundary if longer (the host model refuses longer names).
    pub fn new(name: &str) -> IfaceName {
        let mut end = name.len().min(15);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; 15];
        let src = name.as_bytes().get(..end).unwrap_or(&[]);
        if let Some(dst) = bytes.get_mut(..end) {
            dst.copy_from_slice(src);
        }
        IfaceName { len: end as u8, bytes }
    }

    pub fn as_str(&self) -> &str {
        self.bytes.get(..usize::from(self.len)).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }
}

impl std::ops::Deref for IfaceName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for IfaceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for IfaceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reply a REJECT target would have generated (reported, never replayed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectReply {
    /// `tcp-reset`, `icmp-port-unreachable`, ...
    pub kind: String,
    /// Addressed to the packet's source.
    pub to: std::net::IpAddr,
    /// False when the kernel would not send anything (nf_reject: no RST answers an RST; no ICMP error answers an
    /// ICMP error, a fragment that is not the first, or a broadcast/multicast).
    pub sent: bool,
}

/// What happened to the packet as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// An IPv4 packet that went through the hooks.
    Filtered,
    /// Not an IP packet (ARP, LLDP...). Passed by the host's IP firewall untouched.
    NotIp { ethertype: u32 },
    /// Link or IP layer could not be decoded; the reason names the defect.
    Undecodable { reason: String },
    /// Decoded but not filtered: no ruleset for this family yet (IPv6).
    NotFiltered { reason: &'static str },
    /// A fragment held by defragmentation waiting for the rest of its datagram (the datagram's fate is reported
    /// on the fragment that completes it).
    FragmentHeld,
    /// A fragment dropped by defragmentation (overlap, too big, timeout...).
    FragmentDropped { reason: &'static str },
    /// Dropped by IPv4 input (`ip_rcv_core`) before any netfilter hook: bad header checksum. No chain sees it
    /// and conntrack never does.
    IpInputDrop { reason: &'static str },
}

/// The engine's answer for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub disposition: Disposition,
    pub path: Option<PacketPath>,
    pub verdict: Option<Verdict>,
    /// State seen by the filter table (after conntrack); `None` when not filtered.
    pub ctstate: Option<CtStateLabel>,
    /// True when this packet travelled in the reply direction of its connection.
    pub reply_dir: bool,
    /// The rule that decided: the one that dropped or rejected, else the deciding rule of the filter table
    /// (or of the last table run when filter has no chain for that hook). `None`: no table had a chain on
    /// this path (the kernel accepts).
    pub rule: Option<RuleRef>,
    /// Why conntrack judged the packet INVALID, or why conntrack dropped it (table full, or a helper at the
    /// confirm hook: e.g. "ftp: partial matching of `PORT'"; then `verdict` is drop and `rule` is `None`).
    pub ct_reason: Option<&'static str>,
    /// Conntrack itself dropped the packet (table full).
    pub ct_dropped: bool,
    /// Why conntrack accepted the packet without changing its entry (TCP "ignore" outcomes), when it did.
    pub ct_note: Option<&'static str>,
    /// TRACE: every rule the packet traversed (`table:chain:rule|return|policy:N`) and conntrack's verdict, in
    /// order; empty unless tracing is on.
    pub trace: Vec<String>,
    /// Why routing discarded the packet after PREROUTING (path `Prerouting`).
    pub route_reason: Option<&'static str>,
    /// This packet created a conntrack entry that got confirmed.
    pub ct_created: bool,
    pub in_iface: Option<IfaceName>,
    pub out_iface: Option<IfaceName>,
    pub reject: Option<RejectReply>,
    /// LOG target records, `table:chain:rule prefix`.
    pub logs: Vec<String>,
    /// The packet's addresses and ports (for reports), when it decoded as IP.
    pub flow: Option<FlowSummary>,
    /// For a packet that is RELATED because a helper's expectation matched (the first packets of an FTP data
    /// connection, a TFTP transfer): the expectation, described (helper, tuple, master).
    pub expectation: Option<String>,
}

/// A short description of a packet's flow, for reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowSummary {
    pub proto: u8,
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    /// TCP/UDP ports.
    pub ports: Option<(u16, u16)>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// For ICMP errors: the quoted datagram's flow.
    pub quoted: Option<Box<FlowSummary>>,
}

/// A copy of `a` made variant by variant: a whole-enum copy of a freshly decoded address loads it wider
/// than the decoder stored it, and stalls on the decoder's stores.
#[inline(always)]
fn addr(a: &std::net::IpAddr) -> std::net::IpAddr {
    match a {
        std::net::IpAddr::V4(v) => std::net::IpAddr::V4(*v),
        std::net::IpAddr::V6(v) => std::net::IpAddr::V6(*v),
    }
}

impl FlowSummary {
    // Inlined: built in place in the decision (a returned copy stalls on its own fresh stores).
    #[inline]
    pub fn of(pkt: &wire::Packet<'_>) -> FlowSummary {
        let icmp = match &pkt.l4 {
            wire::L4::Icmp(i) => Some((i.icmp_type, i.code)),
            _ => None,
        };
        let quoted = match &pkt.l4 {
            wire::L4::Icmp(i) if pkt.is_icmp_error() => {
                wire::packet::decode_quoted(i.payload).ok().map(|q| {
                    let ports = match (q.ip.proto, q.l4) {
                        (6 | 17 | 136 | 132, [a, b, c, d, ..]) => {
                            Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])))
                        }
                        _ => None,
                    };
                    let icmp = match (q.ip.proto, q.l4) {
                        (1 | 58, [t, c, ..]) => Some((*t, *c)),
                        _ => None,
                    };
                    Box::new(FlowSummary {
                        proto: q.ip.proto,
                        src: q.ip.src,
                        dst: q.ip.dst,
                        ports,
                        icmp,
                        quoted: None,
                    })
                })
            }
            _ => None,
        };
        FlowSummary {
            proto: pkt.ip.proto,
            src: pkt.ip.src,
            dst: pkt.ip.dst,
            ports: pkt.ports(),
            icmp,
            quoted,
        }
    }

    /// Make `slot` describe `pkt` ([`FlowSummary::of`]), field by field when it already holds a summary
    /// (a decision reused for many packets: no whole-struct copy of a freshly built summary).
    #[inline]
    pub fn write(slot: &mut Option<FlowSummary>, pkt: &wire::Packet<'_>) {
        match slot {
            Some(f) if !pkt.is_icmp_error() => {
                f.proto = pkt.ip.proto;
                f.src = addr(&pkt.ip.src);
                f.dst = addr(&pkt.ip.dst);
                f.ports = pkt.ports();
                f.icmp = match &pkt.l4 {
                    wire::L4::Icmp(i) => Some((i.icmp_type, i.code)),
                    _ => None,
                };
                if f.quoted.is_some() {
                    f.quoted = None;
                }
            }
            _ => *slot = Some(FlowSummary::of(pkt)),
        }
    }

    pub fn proto_name(&self) -> String {
        match self.proto {
            1 => "icmp".into(),
            6 => "tcp".into(),
            17 => "udp".into(),
            58 => "icmpv6".into(),
            n => format!("proto-{n}"),
        }
    }
}

impl std::fmt::Display for FlowSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.ports, self.icmp) {
            (Some((sp, dp)), _) => {
                write!(f, "{} {}:{} -> {}:{}", self.proto_name(), self.src, sp, self.dst, dp)?
            }
            (None, Some((t, c))) => write!(f, "icmp {} -> {} type {t} code {c}", self.src, self.dst)?,
            _ => write!(f, "{} {} -> {}", self.proto_name(), self.src, self.dst)?,
        }
        if let Some(q) = &self.quoted {
            write!(f, " quoting [{q}]")?;
        }
        Ok(())
    }
}

impl Decision {
    pub(crate) fn unfiltered(disposition: Disposition) -> Decision {
        Decision {
            disposition,
            path: None,
            verdict: None,
            ctstate: None,
            reply_dir: false,
            rule: None,
            ct_reason: None,
            ct_dropped: false,
            ct_note: None,
            trace: Vec::new(),
            route_reason: None,
            ct_created: false,
            in_iface: None,
            out_iface: None,
            reject: None,
            logs: Vec::new(),
            flow: None,
            expectation: None,
        }
    }

    /// Make this the decision `Decision::unfiltered(disposition)` would be, keeping the buffers of `trace`
    /// and `logs` (a caller handling many packets reuses one decision).
    // Inlined: the disposition is written in place (passed by reference, its fresh stores stall the copy).
    #[inline]
    pub(crate) fn reset(&mut self, disposition: Disposition) {
        self.reset_keeping_rule_and_flow(disposition);
        self.rule = None;
        self.flow = None;
    }

    /// [`Decision::reset`] except for `rule` and `flow`, which the caller sets next (a rule naming the
    /// same rule again is left alone; a flow summary is rewritten in place).
    // Always inlined: the disposition is written in place from the caller's value (passed to a call, a
    // freshly stored one is loaded back wider than it was stored, and stalls).
    #[inline(always)]
    pub(crate) fn reset_keeping_rule_and_flow(&mut self, disposition: Disposition) {
        self.disposition = disposition;
        self.clear_outcome();
    }

    /// The fields [`Decision::reset_keeping_rule_and_flow`] clears besides the disposition.
    fn clear_outcome(&mut self) {
        // Field by field (the same fields as `unfiltered`): no whole-struct temporary to build and drop.
        self.path = None;
        self.verdict = None;
        self.ctstate = None;
        self.reply_dir = false;
        self.ct_reason = None;
        self.ct_dropped = false;
        self.ct_note = None;
        self.trace.clear();
        self.route_reason = None;
        self.ct_created = false;
        self.in_iface = None;
        self.out_iface = None;
        self.reject = None;
        self.logs.clear();
        self.expectation = None;
    }
}

impl Default for Decision {
    /// An empty decision (nothing decided yet), to pass to [`crate::Engine::handle_packet_into`].
    fn default() -> Decision {
        Decision::unfiltered(Disposition::Filtered)
    }
}

#[cfg(test)]
mod tests {
    use super::IfaceName;

    #[test]
    fn interface_names_are_kept_inline_up_to_15_bytes() {
        assert_eq!(IfaceName::new("eth0").as_str(), "eth0");
        assert_eq!(&*IfaceName::new("lo"), "lo");
        assert_eq!(IfaceName::new("abcdefghijklmnopq").as_str(), "abcdefghijklmno");
        // never cut inside a character
        assert_eq!(IfaceName::new("abcdefghijklmné").as_str(), "abcdefghijklmn");
        assert_eq!(format!("{:?} {}", IfaceName::new("wan0"), IfaceName::new("wan0")), "\"wan0\" wan0");
    }
}
