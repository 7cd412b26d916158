//! The host model: which addresses are local, which interface a packet arrives on or leaves by.
//!
//! A replay has no real routing table, so the user describes the host: either `--local ADDR` (repeatable) for
//! a one-interface host (`eth0`, default route through it), or a TOML file with several interfaces, their
//! addresses and routes:
//!
//! ```toml
//! [[interface]]
//! name = "eth0"
//! addresses = ["192.0.2.10/24"]
//!
//! [[interface]]
//! name = "eth1"
//! addresses = ["10.1.0.1/24"]
//!
//! [[route]]
//! dst = "0.0.0.0/0"
//! dev = "eth0"
//! ```
//!
//! Loopback (`lo`, 127.0.0.0/8 and ::1) always exists. Route lookup is longest-prefix match over the explicit
//! routes and the connected subnets of the interface addresses, as the kernel's main table would hold them.
//! Address types follow the kernel's local/broadcast/multicast routes (what `-m addrtype` asks the FIB).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The interface name used for loopback.
pub const LOOPBACK: &str = "lo";

/// An address with a prefix length (`192.0.2.10/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = v4_mask(self.len);
                (u32::from(a) & mask) == (u32::from(b) & mask)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = v6_mask(self.len);
                (u128::from(a) & mask) == (u128::from(b) & mask)
            }
            _ => false,
        }
    }

    /// The subnet broadcast address (IPv4, prefixes shorter than /31).
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        match self.addr {
            IpAddr::V4(a) if self.len < 31 => Some(Ipv4Addr::from(u32::from(a) | !v4_mask(self.len))),
            _ => None,
        }
    }
}

impl std::str::FromStr for Prefix {
    type Err = HostError;
    fn from_str(s: &str) -> Result<Self, HostError> {
        let bad = || HostError::BadAddress(s.to_string());
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            Some(l) => l.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if len > max {
            return Err(bad());
        }
        Ok(Prefix { addr, len })
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

fn v4_mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn v6_mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// One interface of the modelled host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub addresses: Vec<Prefix>,
}

/// A route: destination prefix to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Prefix,
    pub dev: String,
}

/// Errors building a host model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    #[error("bad address or prefix `{0}` (expected e.g. 192.0.2.10 or 192.0.2.10/24)")]
    BadAddress(String),
    #[error("bad host file: {0}")]
    Toml(String),
    #[error("route to {dst} names unknown interface `{dev}`")]
    UnknownDevice { dst: String, dev: String },
    #[error("interface `{0}` is declared twice")]
    DuplicateInterface(String),
    #[error("bad interface name `{0}` (1-15 characters, no spaces or '/')")]
    BadInterfaceName(String),
}

/// Where a packet goes through the host (the three netfilter paths, plus loopback which takes two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Input,
    Output,
    Forward,
    Loopback,
    /// An incoming packet the routing decision discards after PREROUTING (`ip_route_input_slow`): it never
    /// reaches INPUT or FORWARD, and its new conntrack entry is never confirmed.
    Unrouted(Unrouted),
}

/// Why routing discards an incoming packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrouted {
    /// Not for us and `net.ipv4.ip_forward=0` (the kernel's default): `no_route`, dropped by `ip_error`.
    NotForwarding,
    /// Forwarding is on but no route leads to the destination.
    NoRoute,
    /// Multicast to a group the host has not joined (`ip_check_mc_rcu` fails).
    MulticastNotJoined,
    /// A source address no host may receive from (`martian source`: multicast, limited broadcast,
    /// 0.0.0.0/8 unless it is a DHCP-style 0.0.0.0 → 255.255.255.255, loopback from the wire).
    MartianSource,
}

impl Unrouted {
    pub fn reason(self) -> &'static str {
        match self {
            Unrouted::NotForwarding => "not routed: not a local address and forwarding is off (ip_forward=0)",
            Unrouted::NoRoute => "not routed: no route to the destination",
            Unrouted::MulticastNotJoined => "not routed: multicast group not joined",
            Unrouted::MartianSource => "not routed: martian source address",
        }
    }
}

/// Address type as the kernel's FIB classifies it (`RTN_*`), for `-m addrtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrKind {
    Unspec,
    Unicast,
    Local,
    Broadcast,
    Multicast,
}

/// The modelled host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    interfaces: Vec<Interface>,
    routes: Vec<Route>,
    /// The routes given by the user (the rest of `routes` are the connected subnets).
    explicit_routes: Vec<Route>,
    /// `net.ipv4.ip_forward` (kernel default 0).
    forwarding: bool,
    /// IPv4 multicast groups joined (the kernel always joins 224.0.0.1 on an up interface).
    groups: Vec<IpAddr>,
    /// Derived from the above at construction, for the per-packet lookups: every local address, and the
    /// indices of `routes` by decreasing prefix length (ties: later routes first, as the longest-prefix
    /// choice below breaks them).
    locals: Vec<IpAddr>,
    by_len: Vec<usize>,
    /// The same for IPv4 as integers: the local addresses, every subnet broadcast address, and the IPv4
    /// routes in `by_len` order as (network, mask, index of the route's device in `interfaces`), so that
    /// routing an IPv4 address compares words.
    locals4: Vec<u32>,
    bcasts4: Vec<u32>,
    routes4: Vec<(u32, u32, usize)>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HostFile {
    /// `net.ipv4.ip_forward`.
    #[serde(default)]
    forwarding: bool,
    /// Multicast groups joined besides 224.0.0.1.
    #[serde(default)]
    multicast_groups: Vec<String>,
    #[serde(default)]
    interface: Vec<IfaceFile>,
    #[serde(default)]
    route: Vec<RouteFile>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IfaceFile {
    name: String,
    #[serde(default)]
    addresses: Vec<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    dst: String,
    dev: String,
    #[serde(default)]
    #[allow(dead_code)]
    via: Option<String>,
}

impl Host {
    /// A one-interface host (`eth0`) owning `addrs`, default route through eth0.
    pub fn with_locals(addrs: &[Prefix]) -> Host {
        let eth0 = Interface { name: "eth0".into(), addresses: addrs.to_vec() };
        let routes = vec![
            Route { dst: Prefix { addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), len: 0 }, dev: "eth0".into() },
            Route { dst: Prefix { addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED), len: 0 }, dev: "eth0".into() },
        ];
        Host::build(vec![eth0], routes)
    }

    /// Parses the TOML host description (see the module docs).
    pub fn from_toml(text: &str) -> Result<Host, HostError> {
        let file: HostFile = toml::from_str(text).map_err(|e| HostError::Toml(e.to_string()))?;
        let mut interfaces: Vec<Interface> = Vec::new();
        for i in file.interface {
            if i.name.is_empty() || i.name.len() > 15 || i.name.contains(['/', ' ']) {
                return Err(HostError::BadInterfaceName(i.name));
            }
            if i.name == LOOPBACK || interfaces.iter().any(|x| x.name == i.name) {
                return Err(HostError::DuplicateInterface(i.name));
            }
            let addresses = i.addresses.iter().map(|a| a.parse()).collect::<Result<Vec<Prefix>, _>>()?;
            interfaces.push(Interface { name: i.name, addresses });
        }
        let mut routes = Vec::new();
        for r in file.route {
            let dst: Prefix = r.dst.parse()?;
            if !interfaces.iter().any(|i| i.name == r.dev) {
                return Err(HostError::UnknownDevice { dst: r.dst, dev: r.dev });
            }
            routes.push(Route { dst, dev: r.dev });
        }
        let mut host = Host::build(interfaces, routes);
        host.forwarding = file.forwarding;
        for g in file.multicast_groups {
            let ip: IpAddr = g.trim().parse().map_err(|_| HostError::BadAddress(g.clone()))?;
            if !ip.is_multicast() {
                return Err(HostError::BadAddress(g));
            }
            host.groups.push(ip);
        }
        Ok(host)
    }

    /// Sets `net.ipv4.ip_forward` (also settable with `--sysctl net.ipv4.ip_forward=1`).
    pub fn set_forwarding(&mut self, on: bool) {
        self.forwarding = on;
    }

    pub fn forwarding(&self) -> bool {
        self.forwarding
    }

    /// The routes the user gave (default routes included), without the connected subnets.
    pub fn explicit_routes(&self) -> &[Route] {
        &self.explicit_routes
    }

    /// The multicast groups the host has joined (224.0.0.1 always).
    pub fn multicast_groups(&self) -> &[IpAddr] {
        &self.groups
    }

    fn build(mut interfaces: Vec<Interface>, mut routes: Vec<Route>) -> Host {
        let explicit_routes = routes.clone();
        interfaces.insert(
            0,
            Interface {
                name: LOOPBACK.into(),
                addresses: vec![
                    Prefix { addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), len: 8 },
                    Prefix { addr: IpAddr::V6(Ipv6Addr::LOCALHOST), len: 128 },
                ],
            },
        );
        // Connected routes, as the kernel adds them for each address.
        for i in &interfaces {
            for a in &i.addresses {
                routes.push(Route { dst: Prefix { addr: a.addr, len: a.len }, dev: i.name.clone() });
            }
        }
        let groups = vec![IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1))];
        let locals = interfaces.iter().flat_map(|i| i.addresses.iter().map(|a| a.addr)).collect();
        let bcasts4 = interfaces
            .iter()
            .flat_map(|i| i.addresses.iter())
            .filter_map(|a| a.broadcast())
            .map(u32::from)
            .collect();
        let mut by_len: Vec<usize> = (0..routes.len()).rev().collect();
        by_len.sort_by_key(|&i| std::cmp::Reverse(routes.get(i).map_or(0, |r| r.dst.len)));
        let locals4 = interfaces
            .iter()
            .flat_map(|i| i.addresses.iter())
            .filter_map(|a| match a.addr {
                IpAddr::V4(v) => Some(u32::from(v)),
                IpAddr::V6(_) => None,
            })
            .collect();
        // Every route's device is an interface (checked when parsing; connected routes are the interfaces').
        let routes4 = by_len
            .iter()
            .filter_map(|&i| {
                let r = routes.get(i)?;
                let dev = interfaces.iter().position(|x| x.name == r.dev)?;
                match r.dst {
                    Prefix { addr: IpAddr::V4(a), len } => {
                        let mask = v4_mask(len);
                        Some((u32::from(a) & mask, mask, dev))
                    }
                    _ => None,
                }
            })
            .collect();
        Host {
            interfaces,
            routes,
            explicit_routes,
            forwarding: false,
            groups,
            locals,
            bcasts4,
            by_len,
            locals4,
            routes4,
        }
    }

    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// True if `ip` is an address of this host (any interface, including all of 127.0.0.0/8 as the kernel's
    /// local table holds it). By reference: a caller's copy of a freshly decoded address, loaded wider
    /// than the decoder stored it, stalls on the decoder's stores.
    #[inline]
    pub fn is_local(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.is_local4(u32::from(*v4)),
            IpAddr::V6(_) => self.locals.contains(ip),
        }
    }

    /// [`Host::is_local`] for an IPv4 address as a word (a plain loop over the few a host has: the generic
    /// slice search costs more to set up).
    #[inline]
    fn is_local4(&self, a: u32) -> bool {
        if a >> 24 == 127 {
            return true;
        }
        for &l in &self.locals4 {
            if l == a {
                return true;
            }
        }
        false
    }

    /// The kernel's address type for `ip`.
    pub fn addr_kind(&self, ip: IpAddr) -> AddrKind {
        if ip.is_unspecified() {
            return AddrKind::Unspec;
        }
        if self.is_local(&ip) {
            return AddrKind::Local;
        }
        if ip.is_multicast() {
            return AddrKind::Multicast;
        }
        if let IpAddr::V4(v4) = ip {
            if v4 == Ipv4Addr::BROADCAST {
                return AddrKind::Broadcast;
            }
            if self.bcasts4.contains(&u32::from(v4)) {
                return AddrKind::Broadcast;
            }
        }
        AddrKind::Unicast
    }

    /// Output interface toward `dst` (longest-prefix match), `None` when unroutable.
    pub fn route(&self, dst: IpAddr) -> Option<&str> {
        if self.is_local(&dst) {
            return Some(LOOPBACK);
        }
        // The longest prefix; among equal ones the last route (`by_len` is ordered that way).
        if let IpAddr::V4(v4) = dst {
            let a = u32::from(v4);
            return self
                .routes4
                .iter()
                .find(|&&(net, mask, _)| a & mask == net)
                .and_then(|&(_, _, i)| self.interfaces.get(i))
                .map(|x| x.name.as_str());
        }
        self.by_len
            .iter()
            .filter_map(|&i| self.routes.get(i))
            .find(|r| r.dst.contains(dst))
            .map(|r| r.dev.as_str())
    }

    /// Classify a packet's path and its interfaces (in, out) from its addresses, as the kernel's routing
    /// decision would (`ip_route_input_slow` for packets from elsewhere).
    pub fn classify(&self, src: IpAddr, dst: IpAddr) -> (PathKind, Option<&str>, Option<&str>) {
        if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
            let (kind, i, o) = self.classify4(u32::from(s), u32::from(d));
            return (kind, self.name_of(i), self.name_of(o));
        }
        self.classify_any(src, dst)
    }

    /// [`Host::classify`] with the interfaces as indices in [`Host::interfaces`] (`lo` is
    /// [`Host::LOOPBACK_INDEX`]).
    pub fn classify_index(&self, src: IpAddr, dst: IpAddr) -> (PathKind, Option<usize>, Option<usize>) {
        if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
            return self.classify4(u32::from(s), u32::from(d));
        }
        let (kind, i, o) = self.classify_any(src, dst);
        (kind, self.index_of(i), self.index_of(o))
    }

    /// The index of `lo` in [`Host::interfaces`]: always the first.
    pub const LOOPBACK_INDEX: usize = 0;

    fn name_of(&self, i: Option<usize>) -> Option<&str> {
        self.interfaces.get(i?).map(|x| x.name.as_str())
    }

    fn index_of(&self, name: Option<&str>) -> Option<usize> {
        let name = name?;
        self.interfaces.iter().position(|x| x.name == name)
    }

    /// [`Host::classify_index`] for IPv4 addresses as words (the same decisions in the same order as
    /// [`Host::classify_any`], tested against it): what routing costs for each packet of a flow the
    /// engine's route cache does not hold.
    fn classify4(&self, src: u32, dst: u32) -> (PathKind, Option<usize>, Option<usize>) {
        const LO: usize = Host::LOOPBACK_INDEX;
        // Plain loops over the few words a host has (the generic slice searches cost more to set up).
        let is_local = |a: u32| self.is_local4(a);
        // The device of the route to a non-local address.
        let route_out = |a: u32| -> Option<usize> {
            for &(net, mask, dev) in &self.routes4 {
                if a & mask == net {
                    return Some(dev);
                }
            }
            None
        };
        let route = |a: u32| -> Option<usize> {
            if is_local(a) {
                return Some(LO);
            }
            route_out(a)
        };
        let broadcast = |a: u32| {
            if a == u32::MAX {
                return true;
            }
            for &b in &self.bcasts4 {
                if b == a {
                    return true;
                }
            }
            false
        };
        let dst_kind = if dst == 0 {
            AddrKind::Unspec
        } else if is_local(dst) {
            AddrKind::Local
        } else if dst >> 28 == 0xe {
            AddrKind::Multicast
        } else if broadcast(dst) {
            AddrKind::Broadcast
        } else {
            AddrKind::Unicast
        };
        let src_local = is_local(src);
        if src_local && dst_kind == AddrKind::Local {
            return (PathKind::Loopback, Some(LO), Some(LO));
        }
        if src_local {
            return (PathKind::Output, None, route(dst));
        }
        // (The source is not local here: its route is never `lo`.)
        let in_if = route_out(src).filter(|&d| d != LO);
        // `martian_source` on words: multicast, limited broadcast, loopback, and 0.0.0.0/8 except the
        // all-zero source to the limited broadcast.
        let martian = src >> 28 == 0xe
            || src == u32::MAX
            || src >> 24 == 127
            || (src >> 24 == 0 && !(src == 0 && dst == u32::MAX));
        if martian {
            return (PathKind::Unrouted(Unrouted::MartianSource), in_if, None);
        }
        match dst_kind {
            AddrKind::Local | AddrKind::Broadcast => (PathKind::Input, in_if, None),
            AddrKind::Multicast if self.joined(IpAddr::V4(Ipv4Addr::from(dst)), self.name_of(in_if)) => {
                (PathKind::Input, in_if, None)
            }
            AddrKind::Multicast => (PathKind::Unrouted(Unrouted::MulticastNotJoined), in_if, None),
            _ if !self.forwarding => (PathKind::Unrouted(Unrouted::NotForwarding), in_if, None),
            _ => match route(dst) {
                Some(out) => (PathKind::Forward, in_if, Some(out)),
                None => (PathKind::Unrouted(Unrouted::NoRoute), in_if, None),
            },
        }
    }

    /// [`Host::classify`] for any addresses, through the generic address lookups.
    fn classify_any(&self, src: IpAddr, dst: IpAddr) -> (PathKind, Option<&str>, Option<&str>) {
        let src_local = self.is_local(&src);
        let dst_kind = self.addr_kind(dst);
        if src_local && matches!(dst_kind, AddrKind::Local) {
            return (PathKind::Loopback, Some(LOOPBACK), Some(LOOPBACK));
        }
        if src_local {
            return (PathKind::Output, None, self.route(dst));
        }
        // Reverse path: the interface the source lives behind is where the packet came in.
        let in_if = self.route(src).filter(|d| *d != LOOPBACK);
        if self.martian_source(src, dst) {
            return (PathKind::Unrouted(Unrouted::MartianSource), in_if, None);
        }
        match dst_kind {
            AddrKind::Local | AddrKind::Broadcast => (PathKind::Input, in_if, None),
            AddrKind::Multicast if self.joined(dst, in_if) => (PathKind::Input, in_if, None),
            AddrKind::Multicast => (PathKind::Unrouted(Unrouted::MulticastNotJoined), in_if, None),
            _ if !self.forwarding => (PathKind::Unrouted(Unrouted::NotForwarding), in_if, None),
            _ => match self.route(dst) {
                Some(out) => (PathKind::Forward, in_if, Some(out)),
                None => (PathKind::Unrouted(Unrouted::NoRoute), in_if, None),
            },
        }
    }

    /// Whether the host is a member of multicast group `group`: the configured groups, 224.0.0.1 and ff02::1
    /// (every up interface joins the all-nodes groups), ff02::2 when forwarding (a router joins all-routers),
    /// and the solicited-node group ff02::1:ffXX:XXXX of each IPv6 address (addrconf joins it on the address's
    /// own interface: membership is per interface, so `iface` is where the packet arrived).
    pub fn joined(&self, group: IpAddr, iface: Option<&str>) -> bool {
        if self.groups.contains(&group) {
            return true;
        }
        let IpAddr::V6(g) = group else { return false };
        let seg = g.segments();
        if g == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1) {
            return true;
        }
        if self.forwarding && g == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2) {
            return true;
        }
        let solicited = seg[..6] == [0xff02, 0, 0, 0, 0, 1] && seg[6] >> 8 == 0xff;
        solicited
            && self
                .interfaces
                .iter()
                .filter(|i| iface.is_none_or(|name| name == i.name))
                .flat_map(|i| i.addresses.iter())
                .any(|a| match a.addr {
                    IpAddr::V6(u) => {
                        let o = u.octets();
                        let go = g.octets();
                        o[13..] == go[13..]
                    }
                    IpAddr::V4(_) => false,
                })
    }

    /// Source addresses `ip_route_input_slow` rejects on packets from the wire.
    fn martian_source(&self, src: IpAddr, dst: IpAddr) -> bool {
        match src {
            IpAddr::V4(s) => {
                if s.is_multicast() || s.is_broadcast() || s.is_loopback() {
                    return true;
                }
                // 0.0.0.0/8: only the all-zero source to the limited broadcast (DHCP discovery) passes.
                if s.octets()[0] == 0 {
                    return !(s.is_unspecified() && dst == IpAddr::V4(Ipv4Addr::BROADCAST));
                }
                false
            }
            IpAddr::V6(s) => s.is_multicast() || s.is_loopback(),
        }
    }
}

impl rules::HostModel for Host {
    /// `-m addrtype`: the FIB type of `addr`. With `--limit-iface-in/out` the kernel asks whether the address
    /// is local *to that device*; we model a local address as belonging to its own interface (and `lo`).
    fn addr_type(&self, addr: IpAddr, iface: Option<&str>) -> rules::AddrTypes {
        let kind = self.addr_kind(addr);
        let kind = match (kind, iface) {
            (AddrKind::Local, Some(dev)) if dev != LOOPBACK => {
                let on_dev = self
                    .interfaces
                    .iter()
                    .any(|i| i.name == dev && i.addresses.iter().any(|a| a.addr == addr));
                if on_dev {
                    AddrKind::Local
                } else {
                    AddrKind::Unicast
                }
            }
            (k, _) => k,
        };
        match kind {
            AddrKind::Unspec => rules::AddrTypes::UNSPEC,
            AddrKind::Unicast => rules::AddrTypes::UNICAST,
            AddrKind::Local => rules::AddrTypes::LOCAL,
            AddrKind::Broadcast => rules::AddrTypes::BROADCAST,
            AddrKind::Multicast => rules::AddrTypes::MULTICAST,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_interface_host_paths() {
        let h = Host::with_locals(&["192.0.2.10/24".parse().unwrap()]);
        assert_eq!(h.classify(ip("198.51.100.1"), ip("192.0.2.10")), (PathKind::Input, Some("eth0"), None));
        assert_eq!(h.classify(ip("192.0.2.10"), ip("198.51.100.1")), (PathKind::Output, None, Some("eth0")));
        assert_eq!(
            h.classify(ip("198.51.100.1"), ip("203.0.113.5")).0,
            PathKind::Unrouted(Unrouted::NotForwarding),
            "ip_forward=0 by default"
        );
        assert_eq!(
            h.classify(ip("198.51.100.1"), ip("224.0.0.251")).0,
            PathKind::Unrouted(Unrouted::MulticastNotJoined)
        );
        assert_eq!(h.classify(ip("198.51.100.1"), ip("224.0.0.1")).0, PathKind::Input);
        let h6 = Host::with_locals(&["2001:db8::10/64".parse().unwrap()]);
        assert_eq!(h6.classify(ip("fe80::1"), ip("ff02::1")).0, PathKind::Input);
        assert_eq!(h6.classify(ip("fe80::1"), ip("ff02::1:ff00:10")).0, PathKind::Input, "solicited-node");
        assert_eq!(
            h6.classify(ip("fe80::1"), ip("ff02::1:ff00:11")).0,
            PathKind::Unrouted(Unrouted::MulticastNotJoined)
        );
        assert_eq!(
            h6.classify(ip("fe80::1"), ip("ff02::2")).0,
            PathKind::Unrouted(Unrouted::MulticastNotJoined)
        );
        assert_eq!(h.classify(ip("127.0.0.1"), ip("192.0.2.10")).0, PathKind::Loopback);
        assert_eq!(h.classify(ip("0.0.0.0"), ip("255.255.255.255")).0, PathKind::Input);
        assert_eq!(
            h.classify(ip("0.1.2.3"), ip("192.0.2.10")).0,
            PathKind::Unrouted(Unrouted::MartianSource)
        );
        assert_eq!(
            h.classify(ip("224.1.1.1"), ip("192.0.2.10")).0,
            PathKind::Unrouted(Unrouted::MartianSource)
        );
        let mut r = h.clone();
        r.set_forwarding(true);
        assert_eq!(
            r.classify(ip("198.51.100.1"), ip("203.0.113.5")),
            (PathKind::Forward, Some("eth0"), Some("eth0"))
        );
        assert_eq!(h.classify(ip("127.0.0.1"), ip("127.0.0.1")).0, PathKind::Loopback);
        assert_eq!(h.classify(ip("192.0.2.10"), ip("192.0.2.10")).0, PathKind::Loopback);
        assert_eq!(h.classify(ip("192.0.2.7"), ip("192.0.2.255")).0, PathKind::Input);
        assert_eq!(h.addr_kind(ip("192.0.2.255")), AddrKind::Broadcast);
        assert_eq!(h.addr_kind(ip("224.0.0.251")), AddrKind::Multicast);
        assert_eq!(h.addr_kind(ip("127.3.4.5")), AddrKind::Local);
        assert_eq!(h.addr_kind(ip("0.0.0.0")), AddrKind::Unspec);
    }

    /// Routing an IPv4 address through the word-sized tables gives what the generic longest-prefix scan
    /// over every route gives (overlapping prefixes, equal-length ties, local and loopback addresses).
    #[test]
    fn ipv4_routing_equals_the_generic_scan() {
        let h = Host::from_toml(
            r#"
forwarding = true
[[interface]]
name = "wan0"
addresses = ["192.0.2.10/24", "2001:db8::10/64"]
[[interface]]
name = "lan0"
addresses = ["10.1.0.1/16", "10.1.2.1/24"]
[[interface]]
name = "dmz0"
addresses = ["10.1.2.200/24"]
[[route]]
dst = "0.0.0.0/0"
dev = "wan0"
[[route]]
dst = "10.0.0.0/8"
dev = "dmz0"
[[route]]
dst = "10.1.2.0/24"
dev = "wan0"
"#,
        )
        .unwrap();
        let generic_local =
            |ip: IpAddr| matches!(ip, IpAddr::V4(v) if v.is_loopback()) || h.locals.contains(&ip);
        let generic_route = |dst: IpAddr| -> Option<&str> {
            if generic_local(dst) {
                return Some(LOOPBACK);
            }
            h.by_len
                .iter()
                .filter_map(|&i| h.routes.get(i))
                .find(|r| r.dst.contains(dst))
                .map(|r| r.dev.as_str())
        };
        let mut x = 0x1234_5678u32;
        let mut addrs: Vec<u32> =
            ["10.1.2.200", "10.1.2.1", "10.1.0.1", "192.0.2.10", "127.9.9.9", "0.0.0.0"]
                .iter()
                .map(|a| u32::from(a.parse::<Ipv4Addr>().unwrap()))
                .collect();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // bias toward the configured networks
            addrs.push(match x % 4 {
                0 => 0x0a01_0200 | (x >> 24),
                1 => 0x0a01_0000 | (x >> 16),
                2 => 0xc000_0200 | (x >> 24),
                _ => x,
            });
        }
        for &a in &addrs {
            let ip = IpAddr::V4(Ipv4Addr::from(a));
            assert_eq!(h.is_local(&ip), generic_local(ip), "{ip}");
            assert_eq!(h.route(ip), generic_route(ip), "{ip}");
        }
        // Whole classifications, with forwarding on and off (special addresses included).
        let special = [
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "224.0.0.251",
            "239.1.2.3",
            "192.0.2.255",
            "127.0.0.1",
        ];
        let mut pool: Vec<IpAddr> = special.iter().map(|a| ip(a)).collect();
        pool.extend(addrs.iter().step_by(97).map(|&a| IpAddr::V4(Ipv4Addr::from(a))));
        let mut h = h;
        for forwarding in [true, false] {
            h.set_forwarding(forwarding);
            for &s in &pool {
                for &d in &pool {
                    assert_eq!(h.classify(s, d), h.classify_any(s, d), "{s} -> {d}");
                }
            }
        }
    }

    #[test]
    fn toml_router() {
        let h = Host::from_toml(
            r#"
forwarding = true
multicast_groups = ["224.0.0.251"]
[[interface]]
name = "wan0"
addresses = ["192.0.2.10/24"]
[[interface]]
name = "lan0"
addresses = ["10.1.0.1/24"]
[[route]]
dst = "0.0.0.0/0"
dev = "wan0"
"#,
        )
        .unwrap();
        assert_eq!(
            h.classify(ip("10.1.0.5"), ip("8.8.8.8")),
            (PathKind::Forward, Some("lan0"), Some("wan0"))
        );
        assert_eq!(
            h.classify(ip("8.8.8.8"), ip("10.1.0.5")),
            (PathKind::Forward, Some("wan0"), Some("lan0"))
        );
        assert_eq!(h.classify(ip("10.1.0.5"), ip("10.1.0.1")), (PathKind::Input, Some("lan0"), None));
        assert_eq!(h.classify(ip("10.1.0.5"), ip("224.0.0.251")).0, PathKind::Input);
    }

    #[test]
    fn toml_errors() {
        let e = Host::from_toml("[[route]]\ndst=\"0.0.0.0/0\"\ndev=\"x\"\n").unwrap_err();
        assert!(matches!(e, HostError::UnknownDevice { .. }));
        assert!(matches!(
            Host::from_toml("[[interface]]\nname=\"a\"\naddresses=[\"1.2.3.4/40\"]"),
            Err(HostError::BadAddress(_))
        ));
        assert!(matches!(Host::from_toml("bogus = 1"), Err(HostError::Toml(_))));
    }
}
