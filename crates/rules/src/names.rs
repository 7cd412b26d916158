//! Name tables and value parsers shared by the compiler and the printer: protocol names
//! (`/etc/protocols` of netbase, as `getprotobyname`/`getprotobynumber` see it), service names
//! (`/etc/services`), ICMP type names (libipt_icmp), numbers the way `xtables_strtoui` reads them
//! (base 0: decimal, `0x` hex, leading-`0` octal) and IPv4 addresses the way
//! `xtables_numeric_to_ipaddr` reads them (missing trailing bytes are zero: `10` = `10.0.0.0`).

use std::net::Ipv4Addr;

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
}
