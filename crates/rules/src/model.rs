//! The compiled ruleset model, independent of the iptables text.
//!
//! Contract: a [`Ruleset`] can only be built by [`crate::compile`] (or a future nftables front end)
//! and is always valid: every jump/goto target is an index of an existing user chain of the same
//! table, the jump graph has no cycles, targets only appear where the kernel accepts them, and
//! policies exist only on built-in chains. Chains of a table are stored built-ins first (in hook
//! order) then user chains sorted by name (the order iptables-save prints them). A ruleset belongs
//! to one [`Family`]: every address in it (rule, conntrack and iprange addresses) is of that family.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The address family of a ruleset: iptables (IPv4) or ip6tables (IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Family {
    #[default]
    V4,
    V6,
}

impl Family {
    /// The tool whose save format the ruleset uses.
    pub fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
    /// Whether `a` belongs to this family.
    pub fn holds(self, a: IpAddr) -> bool {
        matches!((self, a), (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_)))
    }
    /// Address width in bits (32 or 128).
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// An iptables table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Raw,
    Mangle,
    Filter,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Raw => "raw",
            Table::Mangle => "mangle",
            Table::Filter => "filter",
        }
    }
    /// Built-in chains of the table, in iptables-save order.
    pub fn hooks(self) -> &'static [Hook] {
        match self {
            Table::Raw => &[Hook::PreRouting, Hook::Output],
            Table::Mangle => &[Hook::PreRouting, Hook::Input, Hook::Forward, Hook::Output, Hook::PostRouting],
            Table::Filter => &[Hook::Input, Hook::Forward, Hook::Output],
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A netfilter hook (= built-in chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    PreRouting,
    Input,
    Forward,
    Output,
    PostRouting,
}

impl Hook {
    pub const ALL: [Hook; 5] =
        [Hook::PreRouting, Hook::Input, Hook::Forward, Hook::Output, Hook::PostRouting];
    /// The built-in chain name.
    pub fn chain_name(self) -> &'static str {
        match self {
            Hook::PreRouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::PostRouting => "POSTROUTING",
        }
    }
    pub(crate) fn bit(self) -> u8 {
        match self {
            Hook::PreRouting => 1,
            Hook::Input => 2,
            Hook::Forward => 4,
            Hook::Output => 8,
            Hook::PostRouting => 16,
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.chain_name())
    }
}

/// A value with an optional `!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neg<T> {
    pub value: T,
    pub negated: bool,
}

/// An inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range<T> {
    pub min: T,
    pub max: T,
}

impl<T: PartialOrd + Copy> Range<T> {
    pub fn contains(&self, v: T) -> bool {
        v >= self.min && v <= self.max
    }
}

/// Address and mask of one family (`addr` already masked for -s/-d, as iptables stores it).
/// `mask` is an address of the same family (all ones = host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrMask {
    pub addr: IpAddr,
    pub mask: IpAddr,
}

impl AddrMask {
    /// IPv4 address and mask bits.
    pub fn v4(addr: Ipv4Addr, mask: u32) -> AddrMask {
        AddrMask { addr: IpAddr::V4(addr), mask: IpAddr::V4(Ipv4Addr::from(mask)) }
    }
    /// IPv6 address and mask bits.
    pub fn v6(addr: Ipv6Addr, mask: u128) -> AddrMask {
        AddrMask { addr: IpAddr::V6(addr), mask: IpAddr::V6(Ipv6Addr::from(mask)) }
    }
    /// `(a ^ addr) & mask == 0`; an address of the other family never matches.
    pub fn contains(&self, a: IpAddr) -> bool {
        match (a, self.addr, self.mask) {
            (IpAddr::V4(a), IpAddr::V4(b), IpAddr::V4(m)) => {
                (u32::from(a) ^ u32::from(b)) & u32::from(m) == 0
            }
            (IpAddr::V6(a), IpAddr::V6(b), IpAddr::V6(m)) => {
                (u128::from(a) ^ u128::from(b)) & u128::from(m) == 0
            }
            _ => false,
        }
    }
    /// The mask is zero (matches every address of the family).
    pub fn is_any(&self) -> bool {
        match self.mask {
            IpAddr::V4(m) => u32::from(m) == 0,
            IpAddr::V6(m) => u128::from(m) == 0,
        }
    }
    /// Prefix length of a contiguous mask.
    pub fn prefix_len(&self) -> Option<u8> {
        match self.mask {
            IpAddr::V4(m) => crate::names::mask_len(u32::from(m)),
            IpAddr::V6(m) => crate::names::mask_len6(u128::from(m)),
        }
    }
}

/// Interface name; `wildcard` = trailing `+` (prefix match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub wildcard: bool,
}

impl Iface {
    /// ip_tables' interface comparison (a missing device has the empty name).
    pub fn matches(&self, dev: &str) -> bool {
        if self.wildcard {
            dev.starts_with(self.name.as_str())
        } else {
            dev == self.name
        }
    }
}

/// The fixed part of every rule (`struct ipt_ip`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpSpec {
    pub src: Option<Neg<AddrMask>>,
    pub dst: Option<Neg<AddrMask>>,
    pub in_iface: Option<Neg<Iface>>,
    pub out_iface: Option<Neg<Iface>>,
    /// Protocol number. IPv4: 0 (`-p all`) is represented by `None`. IPv6: `Some(0)` is `-p all`,
    /// which ip6tables still flags as a protocol test (`IP6T_F_PROTO`: the upper-layer header must
    /// be found) although ip6tables-save prints nothing for it.
    pub proto: Option<Neg<u8>>,
    /// `-f` (`Some(false)`) / `! -f` (`Some(true)`); IPv4 only.
    pub fragment: Option<bool>,
}

impl IpSpec {
    /// `unconditional()` of ip_tables/ip6_tables: an all-zero `ipt_ip`/`ip6t_ip6` (no address,
    /// interface, protocol or fragment test).
    pub fn is_unconditional(&self) -> bool {
        let addr = |a: &Option<Neg<AddrMask>>| a.as_ref().is_none_or(|a| a.value.is_any() && !a.negated);
        let dev = |i: &Option<Neg<Iface>>| {
            i.as_ref().is_none_or(|i| i.value.name.is_empty() && i.value.wildcard && !i.negated)
        };
        addr(&self.src)
            && addr(&self.dst)
            && dev(&self.in_iface)
            && dev(&self.out_iface)
            && self.proto.is_none()
            && self.fragment.is_none()
    }
}

/// TCP match (`xt_tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpMatch {
    pub sport: Neg<Range<u16>>,
    pub dport: Neg<Range<u16>>,
    /// (mask, comp).
    pub flags: Option<Neg<(u8, u8)>>,
    pub option: Option<Neg<u8>>,
}

/// UDP match (`xt_udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpMatch {
    pub sport: Neg<Range<u16>>,
    pub dport: Neg<Range<u16>>,
}

/// ICMP match (`icmp`: type 255 = any) and ICMPv6 match (`icmp6`: no "any"); code range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpMatch {
    pub icmp_type: u8,
    pub codes: Range<u8>,
    pub negated: bool,
}

/// Which ports multiport compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortDir {
    Source,
    Destination,
    Either,
}

/// multiport (revision 1): up to 15 slots, a range taking two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiportMatch {
    pub dir: PortDir,
    pub ports: Vec<Range<u16>>,
    pub negated: bool,
}

/// iprange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRangeMatch {
    pub src: Option<Neg<Range<IpAddr>>>,
    pub dst: Option<Neg<Range<IpAddr>>>,
}

/// A set of conntrack states (xt_conntrack / xt_state bits; SNAT/DNAT only via `--ctstate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateSet(pub u16);

impl StateSet {
    pub const INVALID: u16 = 1 << 0;
    pub const ESTABLISHED: u16 = 1 << 1;
    pub const RELATED: u16 = 1 << 2;
    pub const NEW: u16 = 1 << 3;
    pub const SNAT: u16 = 1 << 6;
    pub const DNAT: u16 = 1 << 7;
    pub const UNTRACKED: u16 = 1 << 8;
    /// iptables-save print order with names.
    pub const NAMES: [(&'static str, u16); 7] = [
        ("INVALID", Self::INVALID),
        ("NEW", Self::NEW),
        ("RELATED", Self::RELATED),
        ("ESTABLISHED", Self::ESTABLISHED),
        ("UNTRACKED", Self::UNTRACKED),
        ("SNAT", Self::SNAT),
        ("DNAT", Self::DNAT),
    ];
}

/// conntrack match (revision 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConntrackMatch {
    pub state: Option<Neg<StateSet>>,
    pub proto: Option<Neg<u8>>,
    pub orig_src: Option<Neg<AddrMask>>,
    pub orig_dst: Option<Neg<AddrMask>>,
    pub repl_src: Option<Neg<AddrMask>>,
    pub repl_dst: Option<Neg<AddrMask>>,
    pub orig_sport: Option<Neg<Range<u16>>>,
    pub orig_dport: Option<Neg<Range<u16>>>,
    pub repl_sport: Option<Neg<Range<u16>>>,
    pub repl_dport: Option<Neg<Range<u16>>>,
    /// Status bits (kernel values); any-of.
    pub status: Option<Neg<u32>>,
    pub expire: Option<Neg<Range<u64>>>,
    /// `Some(true)` = REPLY, `Some(false)` = ORIGINAL.
    pub dir_reply: Option<bool>,
}

impl ConntrackMatch {
    /// Whether it tests more of the conntrack view than the state, status and direction: the
    /// tuples, the protocol or the remaining lifetime.
    pub fn reads_details(&self) -> bool {
        self.proto.is_some()
            || self.orig_src.is_some()
            || self.orig_dst.is_some()
            || self.repl_src.is_some()
            || self.repl_dst.is_some()
            || self.orig_sport.is_some()
            || self.orig_dport.is_some()
            || self.repl_sport.is_some()
            || self.repl_dport.is_some()
            || self.expire.is_some()
    }
}

/// Mark value/mask test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkMask {
    pub value: u32,
    pub mask: u32,
}

/// ttl match mode (also the IPv6 `hl` match: hop limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlMatch {
    Eq(u8),
    Ne(u8),
    Lt(u8),
    Gt(u8),
}

/// limit match parameters (xt_limit units: `avg` in 1/10000 s per packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitMatch {
    pub avg: u32,
    pub burst: u32,
    /// Kernel-derived: credits per packet, bucket size.
    pub cost: u32,
    pub credit_cap: u32,
    /// Index of this match's bucket in [`crate::RuleState`].
    pub(crate) slot: usize,
}

/// Address type bitset (bit n = RTN type n: UNSPEC=0, UNICAST=1, LOCAL=2, BROADCAST=3, ANYCAST=4,
/// MULTICAST=5, BLACKHOLE=6, UNREACHABLE=7, PROHIBIT=8, THROW=9, NAT=10, XRESOLVE=11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct AddrTypes(pub u16);

impl AddrTypes {
    pub const UNSPEC: AddrTypes = AddrTypes(1 << 0);
    pub const UNICAST: AddrTypes = AddrTypes(1 << 1);
    pub const LOCAL: AddrTypes = AddrTypes(1 << 2);
    pub const BROADCAST: AddrTypes = AddrTypes(1 << 3);
    pub const ANYCAST: AddrTypes = AddrTypes(1 << 4);
    pub const MULTICAST: AddrTypes = AddrTypes(1 << 5);
    pub const BLACKHOLE: AddrTypes = AddrTypes(1 << 6);
    pub const UNREACHABLE: AddrTypes = AddrTypes(1 << 7);
    pub const PROHIBIT: AddrTypes = AddrTypes(1 << 8);
    pub const THROW: AddrTypes = AddrTypes(1 << 9);
    pub const NAT: AddrTypes = AddrTypes(1 << 10);
    pub const XRESOLVE: AddrTypes = AddrTypes(1 << 11);
    pub fn intersects(self, other: AddrTypes) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for AddrTypes {
    type Output = AddrTypes;
    fn bitor(self, rhs: AddrTypes) -> AddrTypes {
        AddrTypes(self.0 | rhs.0)
    }
}

/// addrtype match (revision 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrTypeMatch {
    pub src: Option<Neg<AddrTypes>>,
    pub dst: Option<Neg<AddrTypes>>,
    pub limit_iface_in: bool,
    pub limit_iface_out: bool,
}

/// Link-layer packet type (`skb->pkt_type`) as the pkttype match sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PktType {
    /// PACKET_HOST ("unicast").
    Host,
    Broadcast,
    Multicast,
    OtherHost,
    /// PACKET_LOOPBACK (looped-back multicast): xt_pkttype reclassifies it from the address.
    Loopback,
}

/// `ipv6header` header bits (ip6t_ipv6header.h), in ip6tables-save print order.
pub mod ipv6hdr {
    pub const HOPOPTS: u8 = 0x80;
    pub const DSTOPTS: u8 = 0x40;
    pub const ROUTING: u8 = 0x20;
    pub const FRAGMENT: u8 = 0x10;
    pub const AH: u8 = 0x08;
    pub const ESP: u8 = 0x04;
    pub const NONE: u8 = 0x02;
    /// An upper-layer protocol header follows.
    pub const PROTO: u8 = 0x01;
}

/// `-m ipv6header`: which extension headers the packet has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6HeaderMatch {
    /// [`ipv6hdr`] bits.
    pub headers: u8,
    pub negated: bool,
    /// `--soft`: the packet contains at least these (instead of exactly these).
    pub soft: bool,
}

/// `-m frag`: the IPv6 fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragMatch {
    /// Identification range (default 0..=u32::MAX).
    pub ids: Neg<Range<u32>>,
    /// `--fraglen` (stored and printed; the kernel does not test it).
    pub len: Option<Neg<u32>>,
    pub reserved: bool,
    pub first: bool,
    pub more: bool,
    pub last: bool,
}

/// One match of a rule, evaluated in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    Tcp(TcpMatch),
    Udp(UdpMatch),
    Icmp(IcmpMatch),
    Multiport(MultiportMatch),
    IpRange(IpRangeMatch),
    Conntrack(ConntrackMatch),
    /// `-m state --state` (same semantics as a `--ctstate`-only conntrack match).
    State(Neg<StateSet>),
    Mark(Neg<MarkMask>),
    ConnMark(Neg<MarkMask>),
    Comment(String),
    Length(Neg<Range<u16>>),
    Ttl(TtlMatch),
    Limit(LimitMatch),
    AddrType(AddrTypeMatch),
    PktType(Neg<PktType>),
    /// `-m icmp6 --icmpv6-type` (IPv6).
    Icmp6(IcmpMatch),
    /// `-m hl` (IPv6 hop limit).
    Hl(TtlMatch),
    Ipv6Header(Ipv6HeaderMatch),
    Frag(FragMatch),
    /// `-m helper --helper NAME` (xt_helper): the packet's conntrack entry is an expected
    /// connection whose **master** has a helper named like this. The name is stored as the kernel
    /// keeps it (at most 29 bytes); `""` matches any master helper. See [`crate::CtView::master_helper`].
    Helper(Neg<String>),
}

/// REJECT's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectWith {
    IcmpNetUnreachable,
    IcmpHostUnreachable,
    IcmpPortUnreachable,
    IcmpProtoUnreachable,
    IcmpNetProhibited,
    IcmpHostProhibited,
    IcmpAdminProhibited,
    TcpReset,
    /// ip6tables' `icmp6-no-route` (ICMPv6 1/0).
    Icmp6NoRoute,
    /// `icmp6-adm-prohibited` (1/1).
    Icmp6AdmProhibited,
    /// `icmp6-addr-unreachable` (1/3).
    Icmp6AddrUnreachable,
    /// `icmp6-port-unreachable` (1/4), ip6tables' default.
    Icmp6PortUnreachable,
    /// `icmp6-policy-fail` (1/5).
    Icmp6PolicyFail,
    /// `icmp6-reject-route` (1/6).
    Icmp6RejectRoute,
}

impl RejectWith {
    /// ip6tables' reject types in libip6t_REJECT's table order (prefix matching uses it).
    pub const ALL_V6: [RejectWith; 7] = [
        RejectWith::Icmp6NoRoute,
        RejectWith::Icmp6AdmProhibited,
        RejectWith::Icmp6AddrUnreachable,
        RejectWith::Icmp6PortUnreachable,
        RejectWith::TcpReset,
        RejectWith::Icmp6PolicyFail,
        RejectWith::Icmp6RejectRoute,
    ];
    pub const ALL: [RejectWith; 8] = [
        RejectWith::IcmpNetUnreachable,
        RejectWith::IcmpHostUnreachable,
        RejectWith::IcmpPortUnreachable,
        RejectWith::IcmpProtoUnreachable,
        RejectWith::IcmpNetProhibited,
        RejectWith::IcmpHostProhibited,
        RejectWith::IcmpAdminProhibited,
        RejectWith::TcpReset,
    ];
    /// The iptables name (`icmp-port-unreachable`...).
    pub fn name(self) -> &'static str {
        match self {
            RejectWith::IcmpNetUnreachable => "icmp-net-unreachable",
            RejectWith::IcmpHostUnreachable => "icmp-host-unreachable",
            RejectWith::IcmpPortUnreachable => "icmp-port-unreachable",
            RejectWith::IcmpProtoUnreachable => "icmp-proto-unreachable",
            RejectWith::IcmpNetProhibited => "icmp-net-prohibited",
            RejectWith::IcmpHostProhibited => "icmp-host-prohibited",
            RejectWith::IcmpAdminProhibited => "icmp-admin-prohibited",
            RejectWith::TcpReset => "tcp-reset",
            RejectWith::Icmp6NoRoute => "icmp6-no-route",
            RejectWith::Icmp6AdmProhibited => "icmp6-adm-prohibited",
            RejectWith::Icmp6AddrUnreachable => "icmp6-addr-unreachable",
            RejectWith::Icmp6PortUnreachable => "icmp6-port-unreachable",
            RejectWith::Icmp6PolicyFail => "icmp6-policy-fail",
            RejectWith::Icmp6RejectRoute => "icmp6-reject-route",
        }
    }
    pub(crate) fn alias(self) -> &'static str {
        match self {
            RejectWith::IcmpNetUnreachable => "net-unreach",
            RejectWith::IcmpHostUnreachable => "host-unreach",
            RejectWith::IcmpPortUnreachable => "port-unreach",
            RejectWith::IcmpProtoUnreachable => "proto-unreach",
            RejectWith::IcmpNetProhibited => "net-prohib",
            RejectWith::IcmpHostProhibited => "host-prohib",
            RejectWith::IcmpAdminProhibited => "admin-prohib",
            RejectWith::TcpReset => "tcp-rst",
            RejectWith::Icmp6NoRoute => "no-route",
            RejectWith::Icmp6AdmProhibited => "adm-prohibited",
            RejectWith::Icmp6AddrUnreachable => "addr-unreach",
            RejectWith::Icmp6PortUnreachable => "port-unreach",
            RejectWith::Icmp6PolicyFail => "policy-fail",
            RejectWith::Icmp6RejectRoute => "reject-route",
        }
    }
    /// Whether the reply is an ICMPv6 message (an ip6tables reject type).
    pub fn is_icmpv6(self) -> bool {
        !matches!(self, RejectWith::TcpReset) && !RejectWith::ALL.contains(&self)
    }
    /// ICMP (IPv4 types) or ICMPv6 (IPv6 types, see [`RejectWith::is_icmpv6`]) type/code sent
    /// (None for tcp-reset).
    pub fn icmp(self) -> Option<(u8, u8)> {
        match self {
            RejectWith::IcmpNetUnreachable => Some((3, 0)),
            RejectWith::IcmpHostUnreachable => Some((3, 1)),
            RejectWith::IcmpProtoUnreachable => Some((3, 2)),
            RejectWith::IcmpPortUnreachable => Some((3, 3)),
            RejectWith::IcmpNetProhibited => Some((3, 9)),
            RejectWith::IcmpHostProhibited => Some((3, 10)),
            RejectWith::IcmpAdminProhibited => Some((3, 13)),
            RejectWith::TcpReset => None,
            RejectWith::Icmp6NoRoute => Some((1, 0)),
            RejectWith::Icmp6AdmProhibited => Some((1, 1)),
            RejectWith::Icmp6AddrUnreachable => Some((1, 3)),
            RejectWith::Icmp6PortUnreachable => Some((1, 4)),
            RejectWith::Icmp6PolicyFail => Some((1, 5)),
            RejectWith::Icmp6RejectRoute => Some((1, 6)),
        }
    }
}

/// LOG target parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTarget {
    pub prefix: String,
    /// Syslog level 0..=7 (default 4).
    pub level: u8,
    pub tcp_sequence: bool,
    pub tcp_options: bool,
    pub ip_options: bool,
    pub uid: bool,
    pub macdecode: bool,
}

/// Conntrack zone direction of `CT --zone*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZoneDir {
    Both,
    Orig,
    Reply,
}

/// CT target (template attached before conntrack runs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CtTarget {
    pub notrack: bool,
    /// `--helper NAME`. Unless `notrack`, always one of [`helper_names`] for the rule's family and
    /// `-p`. `--helper ""` is stored as `None` (the kernel sees no helper; iptables-save omits it).
    pub helper: Option<String>,
    pub timeout: Option<String>,
    /// Bitset in the order new, related, destroy, reply, assured, protoinfo, helper, mark,
    /// natseqinfo, secmark.
    pub ctevents: u16,
    pub expevents: u16,
    pub zone: u16,
    pub zone_dir: ZoneDir,
}

/// The conntrack helpers a 6.18 kernel (all helper modules built in, default module parameters)
/// registers for `family` and L4 protocol `l4proto`, in the order statewall lists them. `CT
/// --helper NAME` is accepted only for one of these (`__nf_conntrack_helper_find`: exact,
/// case-sensitive name, the rule's family or an any-family helper, the rule's `-p`). Checked on
/// the live kernel: irc, pptp, snmp, snmp_trap and netbios-ns exist for IPv4 only; H.245 (the
/// h323 helper for H.245 over UDP) for both families. Protocols other than TCP and UDP have none.
pub fn helper_names(family: Family, l4proto: u8) -> &'static [&'static str] {
    match (family, l4proto) {
        (Family::V4, 6) => &["ftp", "irc", "sip", "Q.931", "pptp", "sane"],
        (Family::V6, 6) => &["ftp", "sip", "Q.931", "sane"],
        (Family::V4, 17) => &["tftp", "sip", "amanda", "H.245", "RAS", "snmp", "snmp_trap", "netbios-ns"],
        (Family::V6, 17) => &["tftp", "sip", "amanda", "H.245", "RAS"],
        _ => &[],
    }
}

/// `CT --ctevents` names, bit i = entry i.
pub(crate) const CT_EVENTS: [&str; 10] =
    ["new", "related", "destroy", "reply", "assured", "protoinfo", "helper", "mark", "natseqinfo", "secmark"];

/// CONNMARK operations (xt_CONNMARK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnMarkOp {
    /// ctmark = (ctmark & !mask) ^ value.
    Set { value: u32, mask: u32 },
    /// ctmark = (ctmark & !ctmask) ^ (mark & nfmask).
    Save { nfmask: u32, ctmask: u32 },
    /// mark = (mark & !nfmask) ^ (ctmark & ctmask).
    Restore { nfmask: u32, ctmask: u32 },
}

/// What a rule does when all its matches match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No `-j`: count and continue.
    None,
    Accept,
    Drop,
    Return,
    Reject(RejectWith),
    /// Index of a user chain of the same table.
    Jump(usize),
    Goto(usize),
    Log(LogTarget),
    Notrack,
    Ct(CtTarget),
    /// mark = (mark & !mask) ^ value.
    Mark {
        value: u32,
        mask: u32,
    },
    ConnMark(ConnMarkOp),
}

/// A rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub ip: IpSpec,
    pub matches: Vec<Match>,
    pub target: Target,
    /// Counters given in the file (`[p:b]`).
    pub counters: (u64, u64),
    pub(crate) slot: usize,
}

/// Policy of a built-in chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Accept,
    Drop,
}

/// A chain: built-in (with hook and policy) or user-defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: Arc<str>,
    pub builtin: Option<(Hook, Policy)>,
    pub rules: Vec<Rule>,
    /// Policy counters from the file.
    pub policy_counters: (u64, u64),
    pub(crate) policy_slot: usize,
}

/// One table's chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRules {
    pub table: Table,
    pub chains: Vec<Chain>,
    /// The position of each hook's built-in chain in `chains` ([`Hook::ALL`] order).
    pub(crate) hooks: [Option<usize>; 5],
}

impl TableRules {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| &*c.name == name)
    }
    pub(crate) fn hook_chain(&self, hook: Hook) -> Option<(usize, &Chain)> {
        let i = (*self.hooks.get(hook as usize)?)?;
        Some((i, self.chains.get(i)?))
    }

    pub(crate) fn new(table: Table, chains: Vec<Chain>) -> TableRules {
        let hooks =
            Hook::ALL.map(|hook| chains.iter().position(|c| matches!(c.builtin, Some((h, _)) if h == hook)));
        TableRules { table, chains, hooks }
    }
}

/// A compiled, valid ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    pub(crate) family: Family,
    /// Tables in file order.
    pub(crate) tables: Vec<TableRules>,
    pub(crate) rule_slots: usize,
    pub(crate) policy_slots: usize,
    pub(crate) limit_slots: Vec<(u32, u32)>,
    /// The classifier of each table (same order as `tables`), derived from the rules.
    pub(crate) index: Vec<crate::classify::TableIndex>,
    /// One bit per loaded (table, hook) built-in chain ([`Ruleset::chain_bit`]).
    pub(crate) chain_mask: u32,
    /// Per (table, hook) at `table * 5 + hook`: when that table has no indexed chain (the short
    /// walk), its position in `tables` and the hook's built-in chain's position in it.
    pub(crate) short: [Option<(u32, u32)>; 15],
    /// Per (table, hook) at `table * 5 + hook`: how many leading rules of that built-in chain test
    /// only what every ESTABLISHED packet of one path and direction shares, whatever its flow
    /// ([`crate::eval::key_only`]; see [`crate::Recording::is_flow_independent`]).
    pub(crate) key_prefix: [u32; 15],
    /// Some match reads more of the conntrack view than its state, status, direction and mark
    /// ([`Ruleset::reads_conn_details`]).
    pub(crate) details: bool,
}

impl Ruleset {
    /// IPv4 (iptables) or IPv6 (ip6tables).
    pub fn family(&self) -> Family {
        self.family
    }
    /// The tables, in the order they were given.
    pub fn tables(&self) -> &[TableRules] {
        &self.tables
    }
    pub fn table(&self, table: Table) -> Option<&TableRules> {
        self.tables.iter().find(|t| t.table == table)
    }
    /// Whether some match reads the conntrack view's tuples, protocol, remaining lifetime or
    /// helpers (`--ctproto`, `--ctorigsrc` and the other tuple tests, `--ctexpire`, `-m helper`).
    /// When none does, a view holding only the state, status, direction and ctmark gives every
    /// rule the same result.
    pub fn reads_conn_details(&self) -> bool {
        self.details
    }

    /// Whether `table` is loaded and has the built-in chain `hook`.
    pub fn has_chain(&self, table: Table, hook: Hook) -> bool {
        self.chain_mask & Ruleset::chain_bit(table, hook) != 0
    }

    pub(crate) fn chain_bit(table: Table, hook: Hook) -> u32 {
        1 << (table as u32 * 5 + hook as u32)
    }
    /// Total number of rules (all tables and chains).
    pub fn rule_count(&self) -> usize {
        self.rule_slots
    }
}
