//! Name tables and value parsers shared by the compiler and the printer: protocol names
//! (`/etc/protocols` of netbase, as `getprotobyname`/`getprotobynumber` see it), service names
//! (`/etc/services`), ICMP type names (libipt_icmp), numbers the way `xtables_strtoui` reads them
//! (base 0: decimal, `0x` hex, leading-`0` octal) and IPv4 addresses the way
//! `xtables_numeric_to_ipaddr` reads them (missing trailing bytes are zero: `10` = `10.0.0.0`).
//! For ip6tables: IPv6 addresses and masks (`inet_pton` / `xtables_ip6parse_any`), their text as
//! glibc's `inet_ntop` writes it, ICMPv6 type names (libip6t_icmp6) and ipv6header names.

use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::model::ipv6hdr;

const PROTOCOLS: &str = include_str!("data/protocols.txt");
const SERVICES: &str = include_str!("data/services.txt");

/// `xtables_strtoui(s, base 0)` with an upper bound.
pub(crate) fn parse_uint(s: &str, max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.is_empty() {
            return None;
        }
        u64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(s.get(1..)?, 8).ok()?
    } else {
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u64>().ok()?
    };
    (v <= max).then_some(v)
}

/// Protocol number for a `-p` argument (already lower-cased): number, `all`, a name or alias from
/// /etc/protocols, or one of xtables' built-in names (`icmpv6`, `mh`).
pub(crate) fn parse_proto(s: &str) -> Option<u8> {
    if let Some(n) = parse_uint(s, 255) {
        return u8::try_from(n).ok();
    }
    if s == "all" {
        return Some(0);
    }
    for line in PROTOCOLS.lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(num)) = (it.next(), it.next()) else { continue };
        if name == s || it.any(|a| a == s) {
            return num.parse().ok();
        }
    }
    match s {
        "icmpv6" => Some(58),
        "mh" | "ipv6-mh" => Some(135),
        _ => None,
    }
}

/// `getprotobynumber(n)->p_name`, as iptables-save prints `-p`.
pub(crate) fn proto_name(n: u8) -> Option<&'static str> {
    for line in PROTOCOLS.lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(num)) = (it.next(), it.next()) else { continue };
        if num.parse::<u16>().ok() == Some(u16::from(n)) {
            return Some(name);
        }
    }
    None
}

/// A port: number 0..=65535 or a service name of `proto` (tcp/udp).
pub(crate) fn parse_port(s: &str, proto: &str) -> Option<u16> {
    if let Some(n) = parse_uint(s, 65535) {
        return u16::try_from(n).ok();
    }
    for line in SERVICES.lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(pp)) = (it.next(), it.next()) else { continue };
        let Some((port, p)) = pp.split_once('/') else { continue };
        if p == proto && (name == s || it.any(|a| a == s)) {
            return port.parse().ok();
        }
    }
    None
}

/// An IPv4 address as xtables parses it (1 to 4 dotted numbers; missing bytes are zero).
pub(crate) fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut b = [0u8; 4];
    for (slot, p) in b.iter_mut().zip(parts.iter()) {
        *slot = u8::try_from(parse_uint(p, 255)?).ok()?;
    }
    Some(Ipv4Addr::from(b))
}

/// A mask: `/len` (0..=32) or a full dotted mask.
pub(crate) fn parse_mask(s: &str) -> Option<u32> {
    if s.contains('.') {
        if s.split('.').count() != 4 {
            return None;
        }
        return parse_ipv4(s).map(u32::from);
    }
    let len = parse_uint(s, 32)?;
    Some(prefix_mask(u8::try_from(len).ok()?))
}

pub(crate) fn prefix_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32u32.saturating_sub(u32::from(len.min(32))))
    }
}

/// Prefix length of a contiguous mask.
pub(crate) fn mask_len(mask: u32) -> Option<u8> {
    let len = mask.leading_ones();
    (prefix_mask(u8::try_from(len).ok()?) == mask).then(|| u8::try_from(len).ok()).flatten()
}

/// A 128-bit mask of `len` leading ones.
pub(crate) fn prefix_mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128u32.saturating_sub(u32::from(len.min(128))))
    }
}

/// Prefix length of a contiguous 128-bit mask.
pub(crate) fn mask_len6(mask: u128) -> Option<u8> {
    let len = u8::try_from(mask.leading_ones()).ok()?;
    (prefix_mask6(len) == mask).then_some(len)
}

/// A numeric IPv6 address as `inet_pton(AF_INET6)` reads it (no zone index, no brackets).
pub(crate) fn parse_ipv6(s: &str) -> Option<Ipv6Addr> {
    if s.contains('%') {
        return None;
    }
    s.parse().ok()
}

/// An ip6tables mask: an IPv6 address (any bit pattern) or a prefix length 0..=128.
pub(crate) fn parse_mask6(s: &str) -> Option<u128> {
    if s.contains(':') {
        return parse_ipv6(s).map(u128::from);
    }
    let len = parse_uint(s, 128)?;
    Some(prefix_mask6(u8::try_from(len).ok()?))
}

/// An IPv6 address as glibc's `inet_ntop` writes it: lower-case hex groups, the first longest run
/// of two or more zero groups as `::`, and a dotted IPv4 tail for `::a.b.c.d` and
/// `::ffff:a.b.c.d`.
pub(crate) fn fmt_ipv6(a: Ipv6Addr) -> String {
    let w = a.segments();
    // Longest run of zero words (first one on a tie), only if at least 2 long.
    let (mut best, mut cur): ((usize, usize), (usize, usize)) = ((0, 0), (0, 0));
    for (i, x) in w.iter().enumerate() {
        if *x == 0 {
            if cur.1 == 0 {
                cur.0 = i;
            }
            cur.1 = cur.1.saturating_add(1);
            if cur.1 > best.1 {
                best = cur;
            }
        } else {
            cur.1 = 0;
        }
    }
    let run = (best.1 >= 2).then_some(best);
    let mut out = String::new();
    let mut i = 0usize;
    while i < 8 {
        if let Some((start, len)) = run {
            if i == start {
                out.push_str("::");
                i = i.saturating_add(len);
                continue;
            }
        }
        if i > 0 && !out.ends_with(':') {
            out.push(':');
        }
        let embedded = run.is_some_and(|(s, l)| s == 0 && (l == 6 || (l == 5 && w.get(5) == Some(&0xffff))));
        if i == 6 && embedded {
            let [.., b0, b1, b2, b3] = a.octets();
            let _ = write!(out, "{b0}.{b1}.{b2}.{b3}");
            break;
        }
        let _ = write!(out, "{:x}", w.get(i).copied().unwrap_or(0));
        i = i.saturating_add(1);
    }
    out
}

/// One entry of the ICMP type table: name, type, code range.
pub(crate) struct IcmpName {
    pub name: &'static str,
    pub icmp_type: u8,
    pub code_min: u8,
    pub code_max: u8,
}

const fn icmp(name: &'static str, icmp_type: u8, code_min: u8, code_max: u8) -> IcmpName {
    IcmpName { name, icmp_type, code_min, code_max }
}

/// libxtables' ICMPv4 names (iptables 1.8.9), in table order (prefix matching uses this order).
pub(crate) static ICMP_NAMES: &[IcmpName] = &[
    icmp("any", 0xFF, 0, 0xFF),
    icmp("echo-reply", 0, 0, 0xFF),
    icmp("destination-unreachable", 3, 0, 0xFF),
    icmp("network-unreachable", 3, 0, 0),
    icmp("host-unreachable", 3, 1, 1),
    icmp("protocol-unreachable", 3, 2, 2),
    icmp("port-unreachable", 3, 3, 3),
    icmp("fragmentation-needed", 3, 4, 4),
    icmp("source-route-failed", 3, 5, 5),
    icmp("network-unknown", 3, 6, 6),
    icmp("host-unknown", 3, 7, 7),
    icmp("network-prohibited", 3, 9, 9),
    icmp("host-prohibited", 3, 10, 10),
    icmp("TOS-network-unreachable", 3, 11, 11),
    icmp("TOS-host-unreachable", 3, 12, 12),
    icmp("communication-prohibited", 3, 13, 13),
    icmp("host-precedence-violation", 3, 14, 14),
    icmp("precedence-cutoff", 3, 15, 15),
    icmp("source-quench", 4, 0, 0xFF),
    icmp("redirect", 5, 0, 0xFF),
    icmp("network-redirect", 5, 0, 0),
    icmp("host-redirect", 5, 1, 1),
    icmp("TOS-network-redirect", 5, 2, 2),
    icmp("TOS-host-redirect", 5, 3, 3),
    icmp("echo-request", 8, 0, 0xFF),
    icmp("router-advertisement", 9, 0, 0xFF),
    icmp("router-solicitation", 10, 0, 0xFF),
    icmp("time-exceeded", 11, 0, 0xFF),
    icmp("ttl-zero-during-transit", 11, 0, 0),
    icmp("ttl-zero-during-reassembly", 11, 1, 1),
    icmp("parameter-problem", 12, 0, 0xFF),
    icmp("ip-header-bad", 12, 0, 0),
    icmp("required-option-missing", 12, 1, 1),
    icmp("timestamp-request", 13, 0, 0xFF),
    icmp("timestamp-reply", 14, 0, 0xFF),
    icmp("address-mask-request", 17, 0, 0xFF),
    icmp("address-mask-reply", 18, 0, 0xFF),
];

/// Aliases iptables accepts besides the table (exact names only).
pub(crate) static ICMP_ALIASES: &[(&str, &str)] =
    &[("pong", "echo-reply"), ("ping", "echo-request"), ("ttl-exceeded", "time-exceeded")];

/// Parse an `--icmp-type` value: `any`, `TYPE`, `TYPE/CODE` or a (prefix of a) name.
pub(crate) fn parse_icmp_type(s: &str) -> Result<(u8, u8, u8), String> {
    let lookup = |name: &str| ICMP_NAMES.iter().find(|n| n.name.eq_ignore_ascii_case(name));
    if let Some((_, target)) = ICMP_ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(s)) {
        if let Some(n) = lookup(target) {
            return Ok((n.icmp_type, n.code_min, n.code_max));
        }
    }
    let candidates: Vec<&IcmpName> = ICMP_NAMES
        .iter()
        .filter(|n| {
            n.name.len() >= s.len() && n.name.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s))
        })
        .collect();
    if !s.is_empty() && !s.starts_with(|c: char| c.is_ascii_digit()) {
        return match candidates.as_slice() {
            [one] => Ok((one.icmp_type, one.code_min, one.code_max)),
            [] => Err(format!("unknown ICMP type `{s}`")),
            [a, b, ..] => Err(format!("ambiguous ICMP type `{s}`: `{}` or `{}`?", a.name, b.name)),
        };
    }
    let (t, c) = match s.split_once('/') {
        Some((t, c)) => (t, Some(c)),
        None => (s, None),
    };
    let t = parse_uint(t, 255)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(|| format!("invalid ICMP type `{s}`"))?;
    match c {
        None => Ok((t, 0, 0xFF)),
        Some(c) => {
            let c = parse_uint(c, 255)
                .and_then(|v| u8::try_from(v).ok())
                .ok_or_else(|| format!("invalid ICMP code `{s}`"))?;
            Ok((t, c, c))
        }
    }
}

/// libip6t_icmp6's ICMPv6 names (iptables 1.8.9), aliases in place, in table order: a name is
/// matched by case-insensitive prefix and must fit exactly one entry.
pub(crate) static ICMPV6_NAMES: &[IcmpName] = &[
    icmp("destination-unreachable", 1, 0, 0xFF),
    icmp("no-route", 1, 0, 0),
    icmp("communication-prohibited", 1, 1, 1),
    icmp("beyond-scope", 1, 2, 2),
    icmp("address-unreachable", 1, 3, 3),
    icmp("port-unreachable", 1, 4, 4),
    icmp("failed-policy", 1, 5, 5),
    icmp("reject-route", 1, 6, 6),
    icmp("packet-too-big", 2, 0, 0xFF),
    icmp("time-exceeded", 3, 0, 0xFF),
    icmp("ttl-exceeded", 3, 0, 0xFF),
    icmp("ttl-zero-during-transit", 3, 0, 0),
    icmp("ttl-zero-during-reassembly", 3, 1, 1),
    icmp("parameter-problem", 4, 0, 0xFF),
    icmp("bad-header", 4, 0, 0),
    icmp("unknown-header-type", 4, 1, 1),
    icmp("unknown-option", 4, 2, 2),
    icmp("echo-request", 128, 0, 0xFF),
    icmp("ping", 128, 0, 0xFF),
    icmp("echo-reply", 129, 0, 0xFF),
    icmp("pong", 129, 0, 0xFF),
    icmp("router-solicitation", 133, 0, 0xFF),
    icmp("router-advertisement", 134, 0, 0xFF),
    icmp("neighbour-solicitation", 135, 0, 0xFF),
    icmp("neighbor-solicitation", 135, 0, 0xFF),
    icmp("neighbour-advertisement", 136, 0, 0xFF),
    icmp("neighbor-advertisement", 136, 0, 0xFF),
    icmp("redirect", 137, 0, 0xFF),
];

/// Parse an `--icmpv6-type` value as libip6t_icmp6 does: a unique (prefix of a) name, else
/// `TYPE` or `TYPE/CODE` numbers (0-255).
pub(crate) fn parse_icmpv6_type(s: &str) -> Result<(u8, u8, u8), String> {
    let hits: Vec<&IcmpName> = ICMPV6_NAMES
        .iter()
        .filter(|n| n.name.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)))
        .collect();
    match hits.as_slice() {
        [one] => return Ok((one.icmp_type, one.code_min, one.code_max)),
        [a, b, ..] => return Err(format!("Ambiguous ICMPv6 type `{s}': `{}' or `{}'?", a.name, b.name)),
        [] => {}
    }
    let (t, c) = match s.split_once('/') {
        Some((t, c)) => (t, Some(c)),
        None => (s, None),
    };
    let t = parse_uint(t, 255)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or_else(|| format!("Unknown ICMPv6 type `{s}'"))?;
    match c {
        None => Ok((t, 0, 0xFF)),
        Some(c) => {
            let c = parse_uint(c, 255)
                .and_then(|v| u8::try_from(v).ok())
                .ok_or_else(|| format!("Unknown ICMPv6 code `{s}'"))?;
            Ok((t, c, c))
        }
    }
}

/// libip6t_ipv6header's own header names (used when /etc/protocols has no such name).
const IPV6HDR_NAMES: &[(&str, u8)] = &[
    ("hop-by-hop", 0),
    ("protocol", 255),
    ("hop", 0),
    ("dst", 60),
    ("route", 43),
    ("frag", 44),
    ("auth", 51),
    ("esp", 50),
    ("none", 59),
    ("prot", 255),
    ("0", 0),
    ("60", 60),
    ("43", 43),
    ("44", 44),
    ("51", 51),
    ("50", 50),
    ("59", 59),
    ("255", 255),
];

/// (protocol number, ipv6header bit) in ip6tables-save print order; 255 stands for "a protocol".
pub(crate) const IPV6HDR_BITS: [(u8, u8); 8] = [
    (0, ipv6hdr::HOPOPTS),
    (60, ipv6hdr::DSTOPTS),
    (43, ipv6hdr::ROUTING),
    (44, ipv6hdr::FRAGMENT),
    (51, ipv6hdr::AH),
    (50, ipv6hdr::ESP),
    (59, ipv6hdr::NONE),
    (255, ipv6hdr::PROTO),
];

/// `getprotobyname(s)`: exact (case-sensitive) name or alias from /etc/protocols.
fn protocol_by_name(s: &str) -> Option<u8> {
    for line in PROTOCOLS.lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(num)) = (it.next(), it.next()) else { continue };
        if name == s || it.any(|a| a == s) {
            return num.parse().ok();
        }
    }
    None
}

/// One `--header` list item to its bit, as libip6t_ipv6header does (a protocol name first, then
/// its own names). Error text as ip6tables prints it.
pub(crate) fn parse_ipv6hdr_item(s: &str) -> Result<u8, String> {
    let proto = protocol_by_name(s)
        .or_else(|| IPV6HDR_NAMES.iter().find(|(n, _)| *n == s).map(|(_, p)| *p))
        .ok_or_else(|| format!("unknown header `{s}' specified"))?;
    IPV6HDR_BITS
        .iter()
        .find(|(p, _)| *p == proto)
        .map(|(_, b)| *b)
        .ok_or_else(|| format!("unknown header `{proto}' specified"))
}

/// The name ip6tables-save prints for an ipv6header protocol number.
pub(crate) fn ipv6hdr_name(proto: u8) -> &'static str {
    if proto != 0 {
        if let Some(n) = proto_name(proto) {
            return n;
        }
    }
    IPV6HDR_NAMES.iter().find(|(_, p)| *p == proto).map_or("", |(n, _)| n)
}

/// Address type names of xt_addrtype, bit n = RTN type n.
pub(crate) static ADDRTYPE_NAMES: &[&str] = &[
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn numbers_are_read_like_xtables_strtoui() {
        assert_eq!(parse_uint("17", 255), Some(17));
        assert_eq!(parse_uint("0x11", 255), Some(17));
        assert_eq!(parse_uint("021", 255), Some(17));
        assert_eq!(parse_uint("256", 255), None);
        assert_eq!(parse_uint("1a", 255), None);
        assert_eq!(parse_uint("", 255), None);
    }

    #[test]
    fn protocols() {
        assert_eq!(parse_proto("tcp"), Some(6));
        assert_eq!(parse_proto("ipv6-icmp"), Some(58));
        assert_eq!(parse_proto("icmpv6"), Some(58));
        assert_eq!(parse_proto("all"), Some(0));
        assert_eq!(parse_proto("bogus"), None);
        assert_eq!(proto_name(58), Some("ipv6-icmp"));
        assert_eq!(proto_name(2), Some("igmp"));
        assert_eq!(proto_name(99), None);
    }

    #[test]
    fn ports_and_addresses() {
        assert_eq!(parse_port("ssh", "tcp"), Some(22));
        assert_eq!(parse_port("www", "tcp"), Some(80));
        assert_eq!(parse_port("70000", "tcp"), None);
        assert_eq!(parse_ipv4("10"), Some(Ipv4Addr::new(10, 0, 0, 0)));
        assert_eq!(parse_ipv4("10.1"), Some(Ipv4Addr::new(10, 1, 0, 0)));
        assert_eq!(parse_ipv4("1.2.3.4.5"), None);
        assert_eq!(parse_mask("255.0.255.0"), Some(0xff00_ff00));
        assert_eq!(parse_mask("8"), Some(0xff00_0000));
        assert_eq!(mask_len(0xffff_0000), Some(16));
        assert_eq!(mask_len(0xff00_ff00), None);
        assert_eq!(mask_len(0), Some(0));
    }

    #[test]
    fn icmp_types() {
        assert_eq!(parse_icmp_type("echo-request"), Ok((8, 0, 255)));
        assert_eq!(parse_icmp_type("echo-req"), Ok((8, 0, 255)));
        assert_eq!(parse_icmp_type("ping"), Ok((8, 0, 255)));
        assert_eq!(parse_icmp_type("port-unreachable"), Ok((3, 3, 3)));
        assert_eq!(parse_icmp_type("3/4"), Ok((3, 4, 4)));
        assert_eq!(parse_icmp_type("any"), Ok((255, 0, 255)));
        assert!(parse_icmp_type("echo").is_err());
        assert!(parse_icmp_type("3/300").is_err());
    }

    #[test]
    fn ipv6_text_is_glibc_inet_ntop() {
        let f = |s: &str| fmt_ipv6(s.parse().unwrap());
        assert_eq!(f("2001:DB8:0:0::5"), "2001:db8::5");
        assert_eq!(f("::"), "::");
        assert_eq!(f("::1"), "::1");
        assert_eq!(f("::ffff:1.2.3.4"), "::ffff:1.2.3.4");
        assert_eq!(f("::1.2.3.4"), "::1.2.3.4");
        assert_eq!(f("::2:3"), "::0.2.0.3");
        assert_eq!(f("::ffff:0:1.2.3.4"), "::ffff:0:102:304");
        assert_eq!(f("1:0:0:2:0:0:0:3"), "1:0:0:2::3");
        assert_eq!(f("1:0:0:2:0:0:3:4"), "1::2:0:0:3:4");
        assert_eq!(f("0:0:0:0:0:1:0:0"), "::1:0:0");
        assert_eq!(f("1:0:2:3:4:5:6:7"), "1:0:2:3:4:5:6:7");
        assert_eq!(f("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(f("fe80::"), "fe80::");
    }

    #[test]
    fn ipv6_masks() {
        assert_eq!(parse_mask6("64"), Some(u128::MAX << 64));
        assert_eq!(parse_mask6("0x40"), Some(u128::MAX << 64));
        assert_eq!(parse_mask6("0"), Some(0));
        assert_eq!(parse_mask6("129"), None);
        assert_eq!(parse_mask6("64.0"), None);
        assert_eq!(parse_mask6("ffff:ffff::"), Some(u128::MAX << 96));
        assert_eq!(mask_len6(u128::MAX << 96), Some(32));
        assert_eq!(mask_len6(u128::MAX), Some(128));
        assert_eq!(mask_len6(0), Some(0));
        assert_eq!(mask_len6(1), None);
        assert_eq!(parse_ipv6("fe80::1%eth0"), None);
        assert_eq!(parse_ipv6("[::1]"), None);
    }

    #[test]
    fn icmpv6_types_like_libip6t_icmp6() {
        assert_eq!(parse_icmpv6_type("echo-request"), Ok((128, 0, 255)));
        assert_eq!(parse_icmpv6_type("ECHO-REQUEST"), Ok((128, 0, 255)));
        assert_eq!(parse_icmpv6_type("ping"), Ok((128, 0, 255)));
        assert_eq!(parse_icmpv6_type("no-route"), Ok((1, 0, 0)));
        assert_eq!(parse_icmpv6_type("neighbour-adv"), Ok((136, 0, 255)));
        assert_eq!(parse_icmpv6_type("neighbor-solicitation"), Ok((135, 0, 255)));
        assert_eq!(parse_icmpv6_type("ttl-exceeded"), Ok((3, 0, 255)));
        assert_eq!(parse_icmpv6_type("1/0x3"), Ok((1, 3, 3)));
        assert_eq!(parse_icmpv6_type("255"), Ok((255, 0, 255)));
        assert_eq!(
            parse_icmpv6_type("echo").unwrap_err(),
            "Ambiguous ICMPv6 type `echo': `echo-request' or `echo-reply'?"
        );
        assert!(parse_icmpv6_type("neighbo").is_err());
        assert_eq!(parse_icmpv6_type("any").unwrap_err(), "Unknown ICMPv6 type `any'");
        assert_eq!(parse_icmpv6_type("1/").unwrap_err(), "Unknown ICMPv6 code `1/'");
        assert_eq!(parse_icmpv6_type("300").unwrap_err(), "Unknown ICMPv6 type `300'");
    }

    #[test]
    fn ipv6header_names() {
        assert_eq!(parse_ipv6hdr_item("hop-by-hop"), Ok(ipv6hdr::HOPOPTS));
        assert_eq!(parse_ipv6hdr_item("hopopt"), Ok(ipv6hdr::HOPOPTS));
        assert_eq!(parse_ipv6hdr_item("ipv6-opts"), Ok(ipv6hdr::DSTOPTS));
        assert_eq!(parse_ipv6hdr_item("auth"), Ok(ipv6hdr::AH));
        assert_eq!(parse_ipv6hdr_item("255"), Ok(ipv6hdr::PROTO));
        assert_eq!(parse_ipv6hdr_item("prot"), Ok(ipv6hdr::PROTO));
        assert_eq!(parse_ipv6hdr_item("tcp").unwrap_err(), "unknown header `6' specified");
        assert_eq!(parse_ipv6hdr_item("HOP").unwrap_err(), "unknown header `HOP' specified");
        let names: Vec<&str> = IPV6HDR_BITS.iter().map(|(p, _)| ipv6hdr_name(*p)).collect();
        assert_eq!(
            names,
            ["hop-by-hop", "ipv6-opts", "ipv6-route", "ipv6-frag", "ah", "esp", "ipv6-nonxt", "protocol"]
        );
    }
}
