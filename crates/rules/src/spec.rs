//! Option tables of the match and target modules we understand (names, arity, invertibility), as
//! the iptables 1.8.9 extensions declare them. Used by the getopt emulation in [`crate::ast`].

use crate::model::Family;

/// One long option of a module.
#[derive(Debug)]
pub(crate) struct OptSpec {
    /// Canonical name (the one the compiler dispatches on).
    pub name: &'static str,
    /// Other spellings accepted by iptables.
    pub aliases: &'static [&'static str],
    /// Number of arguments (0, 1 or 2).
    pub nargs: u8,
    /// Whether `!` may precede it.
    pub invert: bool,
}

/// A match or target module.
#[derive(Debug)]
pub(crate) struct ModuleSpec {
    pub name: &'static str,
    pub opts: &'static [OptSpec],
}

impl ModuleSpec {
    pub(crate) fn names(&self) -> impl Iterator<Item = (&'static str, &'static OptSpec)> + '_ {
        self.opts
            .iter()
            .flat_map(|o| std::iter::once(o.name).chain(o.aliases.iter().copied()).map(move |n| (n, o)))
    }
}

const fn o(name: &'static str, nargs: u8, invert: bool) -> OptSpec {
    OptSpec { name, aliases: &[], nargs, invert }
}
const fn oa(name: &'static str, aliases: &'static [&'static str], nargs: u8, invert: bool) -> OptSpec {
    OptSpec { name, aliases, nargs, invert }
}

static TCP: ModuleSpec = ModuleSpec {
    name: "tcp",
    opts: &[
        oa("sport", &["source-port"], 1, true),
        oa("dport", &["destination-port"], 1, true),
        o("syn", 0, true),
        o("tcp-flags", 2, true),
        o("tcp-option", 1, true),
    ],
};
static UDP: ModuleSpec = ModuleSpec {
    name: "udp",
    opts: &[oa("sport", &["source-port"], 1, true), oa("dport", &["destination-port"], 1, true)],
};
static ICMP: ModuleSpec = ModuleSpec { name: "icmp", opts: &[o("icmp-type", 1, true)] };
static MULTIPORT: ModuleSpec = ModuleSpec {
    name: "multiport",
    opts: &[
        oa("sports", &["source-ports"], 1, true),
        oa("dports", &["destination-ports"], 1, true),
        o("ports", 1, true),
    ],
};
static IPRANGE: ModuleSpec =
    ModuleSpec { name: "iprange", opts: &[o("src-range", 1, true), o("dst-range", 1, true)] };
static CONNTRACK: ModuleSpec = ModuleSpec {
    name: "conntrack",
    opts: &[
        o("ctstate", 1, true),
        o("ctproto", 1, true),
        o("ctorigsrc", 1, true),
        o("ctorigdst", 1, true),
        o("ctreplsrc", 1, true),
        o("ctrepldst", 1, true),
        o("ctorigsrcport", 1, true),
        o("ctorigdstport", 1, true),
        o("ctreplsrcport", 1, true),
        o("ctrepldstport", 1, true),
        o("ctstatus", 1, true),
        o("ctexpire", 1, true),
        o("ctdir", 1, false),
    ],
};
static STATE: ModuleSpec = ModuleSpec { name: "state", opts: &[o("state", 1, true)] };
static MARK: ModuleSpec = ModuleSpec { name: "mark", opts: &[o("mark", 1, true)] };
static CONNMARK: ModuleSpec = ModuleSpec { name: "connmark", opts: &[o("mark", 1, true)] };
static COMMENT: ModuleSpec = ModuleSpec { name: "comment", opts: &[o("comment", 1, false)] };
static LENGTH: ModuleSpec = ModuleSpec { name: "length", opts: &[o("length", 1, true)] };
static TTL: ModuleSpec = ModuleSpec {
    name: "ttl",
    opts: &[oa("ttl-eq", &["ttl"], 1, true), o("ttl-lt", 1, false), o("ttl-gt", 1, false)],
};
static LIMIT: ModuleSpec =
    ModuleSpec { name: "limit", opts: &[o("limit", 1, false), o("limit-burst", 1, false)] };
static ADDRTYPE: ModuleSpec = ModuleSpec {
    name: "addrtype",
    opts: &[
        o("src-type", 1, true),
        o("dst-type", 1, true),
        o("limit-iface-in", 0, false),
        o("limit-iface-out", 0, false),
    ],
};
static PKTTYPE: ModuleSpec = ModuleSpec { name: "pkttype", opts: &[o("pkt-type", 1, true)] };
static HELPER: ModuleSpec = ModuleSpec { name: "helper", opts: &[o("helper", 1, true)] };

static ICMP6: ModuleSpec = ModuleSpec { name: "icmp6", opts: &[o("icmpv6-type", 1, true)] };
static HL: ModuleSpec = ModuleSpec {
    name: "hl",
    opts: &[oa("hl-eq", &["hl"], 1, true), o("hl-lt", 1, false), o("hl-gt", 1, false)],
};
static IPV6HEADER: ModuleSpec =
    ModuleSpec { name: "ipv6header", opts: &[o("header", 1, true), o("soft", 0, false)] };
static FRAG: ModuleSpec = ModuleSpec {
    name: "frag",
    opts: &[
        o("fragid", 1, true),
        o("fraglen", 1, true),
        o("fragres", 0, false),
        o("fragfirst", 0, false),
        o("fragmore", 0, false),
        o("fraglast", 0, false),
    ],
};

/// Modules of both families (libxt_*).
static MATCHES: &[&ModuleSpec] = &[
    &TCP, &UDP, &MULTIPORT, &IPRANGE, &CONNTRACK, &STATE, &MARK, &CONNMARK, &COMMENT, &LENGTH, &LIMIT,
    &ADDRTYPE, &PKTTYPE, &HELPER,
];
/// iptables-only modules (libipt_*).
static MATCHES_V4: &[&ModuleSpec] = &[&ICMP, &TTL];
/// ip6tables-only modules (libip6t_*).
static MATCHES_V6: &[&ModuleSpec] = &[&ICMP6, &HL, &IPV6HEADER, &FRAG];

static REJECT: ModuleSpec = ModuleSpec { name: "REJECT", opts: &[o("reject-with", 1, false)] };
static LOG: ModuleSpec = ModuleSpec {
    name: "LOG",
    opts: &[
        o("log-level", 1, false),
        o("log-prefix", 1, false),
        o("log-tcp-sequence", 0, false),
        o("log-tcp-options", 0, false),
        o("log-ip-options", 0, false),
        o("log-uid", 0, false),
        o("log-macdecode", 0, false),
    ],
};
static NOTRACK: ModuleSpec = ModuleSpec { name: "NOTRACK", opts: &[] };
static CT: ModuleSpec = ModuleSpec {
    name: "CT",
    opts: &[
        o("notrack", 0, false),
        o("helper", 1, false),
        o("timeout", 1, false),
        o("ctevents", 1, false),
        o("expevents", 1, false),
        o("zone", 1, false),
        o("zone-orig", 1, false),
        o("zone-reply", 1, false),
    ],
};
static MARK_T: ModuleSpec = ModuleSpec {
    name: "MARK",
    opts: &[
        o("set-xmark", 1, false),
        o("set-mark", 1, false),
        o("and-mark", 1, false),
        o("or-mark", 1, false),
        o("xor-mark", 1, false),
    ],
};
static CONNMARK_T: ModuleSpec = ModuleSpec {
    name: "CONNMARK",
    opts: &[
        o("set-xmark", 1, false),
        o("set-mark", 1, false),
        o("and-mark", 1, false),
        o("or-mark", 1, false),
        o("xor-mark", 1, false),
        o("save-mark", 0, false),
        o("restore-mark", 0, false),
        o("mask", 1, false),
        o("nfmask", 1, false),
        o("ctmask", 1, false),
    ],
};

static TARGETS: &[&ModuleSpec] = &[&REJECT, &LOG, &NOTRACK, &CT, &MARK_T, &CONNMARK_T];

/// Standard verdict names (`-j ACCEPT`...). QUEUE is recognised only to be refused.
pub(crate) const STANDARD_TARGETS: &[&str] = &["ACCEPT", "DROP", "RETURN", "QUEUE"];

/// The match module `name` of `family`. As libxtables does, `icmpv6` and `ipv6-icmp` name the
/// `icmp6` module.
pub(crate) fn match_spec(name: &str, family: Family) -> Option<&'static ModuleSpec> {
    let own = match family {
        Family::V4 => MATCHES_V4,
        Family::V6 => MATCHES_V6,
    };
    let name = match (family, name) {
        (Family::V6, "icmpv6" | "ipv6-icmp") => "icmp6",
        _ => name,
    };
    MATCHES.iter().chain(own.iter()).copied().find(|m| m.name == name)
}

/// Names of the supported match modules of `family`, for messages.
pub(crate) fn match_names(family: Family) -> String {
    let own = match family {
        Family::V4 => MATCHES_V4,
        Family::V6 => MATCHES_V6,
    };
    let v: Vec<&str> = MATCHES.iter().chain(own.iter()).map(|m| m.name).collect();
    v.join(", ")
}

/// Whether `name` is a match module of the other family only (e.g. `icmp6` in an iptables file).
pub(crate) fn other_family_match(name: &str, family: Family) -> Option<Family> {
    let other = match family {
        Family::V4 => Family::V6,
        Family::V6 => Family::V4,
    };
    (match_spec(name, family).is_none() && match_spec(name, other).is_some()).then_some(other)
}

pub(crate) fn target_spec(name: &str) -> Option<&'static ModuleSpec> {
    TARGETS.iter().copied().find(|m| m.name == name)
}

/// Match modules iptables has but statewall does not model (for a better error message).
pub(crate) const KNOWN_UNSUPPORTED_MATCHES: &[&str] = &[
    "sctp",
    "dccp",
    "udplite",
    "esp",
    "ah",
    "hashlimit",
    "recent",
    "set",
    "string",
    "u32",
    "time",
    "owner",
    "physdev",
    "policy",
    "connlimit",
    "connbytes",
    "dscp",
    "tos",
    "ecn",
    "mac",
    "socket",
    "cgroup",
    "bpf",
    "realm",
    "statistic",
    "quota",
    "rpfilter",
    "devgroup",
    "cpu",
    "nfacct",
    "osf",
    "ipvs",
    "cluster",
    "rt",
    "hbh",
    "dst",
    "mh",
    "tcpmss",
    "connlabel",
    "condition",
    "geoip",
];

/// Base (non-module) long options of iptables, for getopt-style prefix resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BaseId {
    Append,
    Source,
    Destination,
    Protocol,
    InInterface,
    OutInterface,
    Jump,
    Goto,
    Match,
    Fragment,
    /// A command or flag that has no place in a ruleset line (e.g. `--delete`, `--list`).
    Unsupported,
}

pub(crate) static BASE_LONG: &[(&str, BaseId)] = &[
    ("append", BaseId::Append),
    ("source", BaseId::Source),
    ("src", BaseId::Source),
    ("destination", BaseId::Destination),
    ("dst", BaseId::Destination),
    ("protocol", BaseId::Protocol),
    ("in-interface", BaseId::InInterface),
    ("out-interface", BaseId::OutInterface),
    ("jump", BaseId::Jump),
    ("goto", BaseId::Goto),
    ("match", BaseId::Match),
    ("fragment", BaseId::Fragment),
    ("delete", BaseId::Unsupported),
    ("insert", BaseId::Unsupported),
    ("replace", BaseId::Unsupported),
    ("list", BaseId::Unsupported),
    ("list-rules", BaseId::Unsupported),
    ("flush", BaseId::Unsupported),
    ("zero", BaseId::Unsupported),
    ("new-chain", BaseId::Unsupported),
    ("delete-chain", BaseId::Unsupported),
    ("policy", BaseId::Unsupported),
    ("rename-chain", BaseId::Unsupported),
    ("check", BaseId::Unsupported),
    ("table", BaseId::Unsupported),
    ("numeric", BaseId::Unsupported),
    ("verbose", BaseId::Unsupported),
    ("wait", BaseId::Unsupported),
    ("wait-interval", BaseId::Unsupported),
    ("exact", BaseId::Unsupported),
    ("version", BaseId::Unsupported),
    ("help", BaseId::Unsupported),
    ("line-numbers", BaseId::Unsupported),
    ("modprobe", BaseId::Unsupported),
    ("set-counters", BaseId::Unsupported),
    ("ipv4", BaseId::Unsupported),
    ("ipv6", BaseId::Unsupported),
];

pub(crate) fn base_short(c: char) -> Option<BaseId> {
    Some(match c {
        'A' => BaseId::Append,
        's' => BaseId::Source,
        'd' => BaseId::Destination,
        'p' => BaseId::Protocol,
        'i' => BaseId::InInterface,
        'o' => BaseId::OutInterface,
        'j' => BaseId::Jump,
        'g' => BaseId::Goto,
        'm' => BaseId::Match,
        'f' => BaseId::Fragment,
        'D' | 'I' | 'R' | 'L' | 'S' | 'F' | 'Z' | 'N' | 'X' | 'P' | 'E' | 'C' | 't' | 'n' | 'v' | 'w'
        | 'W' | 'x' | 'h' | 'V' | 'c' | '4' | '6' => BaseId::Unsupported,
        _ => return None,
    })
}

impl BaseId {
    pub(crate) fn takes_arg(self) -> bool {
        !matches!(self, BaseId::Fragment | BaseId::Unsupported)
    }
    pub(crate) fn invertible(self) -> bool {
        matches!(
            self,
            BaseId::Source
                | BaseId::Destination
                | BaseId::Protocol
                | BaseId::InInterface
                | BaseId::OutInterface
                | BaseId::Fragment
        )
    }
}
