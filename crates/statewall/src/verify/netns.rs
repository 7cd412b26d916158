//! The private topology: one firewall namespace, one peer namespace per firewall interface, veth pairs between
//! them. OS side (runs `ip`, `sysctl`, `iptables-*`).
//!
//! Contract: [`Topology`] owns every namespace it created and deletes them all when dropped (on success, on
//! error, while unwinding from a panic, and after Ctrl-C once the send loop has noticed the abort flag). Both
//! veth ends are created directly inside their namespaces, so nothing ever appears in the caller's namespace.
//! Peers have no address at all and never answer; the firewall gets the host model's interface names,
//! addresses and forwarding switch, `rp_filter=0`, no redirects, IPv6 off (no router solicitations or MLD
//! reaching netfilter), and a permanent neighbour entry for every remote address of the capture on the
//! interface the host model routes it to, so no ARP is ever needed.
//!
//! With an IPv6 ruleset the firewall's interfaces (never the peers', which stay silent) get IPv6 with exactly
//! the host model's addresses: the sysctls are written while the links are down (no automatic link-local
//! address, `addr_gen_mode=1`; no duplicate address detection, router solicitations, autoconfiguration or
//! redirects; `forwarding` as the model says), addresses are added `nodad`, and every remote IPv6 address gets
//! a permanent neighbour entry, so no neighbour discovery is needed. What the stack still sends itself (MLD
//! reports of the solicited-node groups) dies in the suppression rules, which ip6tables gets too.
//!
//! Both rulesets and the suppression rules are in place before any link comes up, so nothing reaches
//! netfilter before them.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use super::plan::Plan;
use super::VerifyError;

/// Which iptables flavour loads the ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Legacy,
    Nft,
}

impl Backend {
    pub fn tool(self, suffix: &str) -> String {
        match self {
            Backend::Legacy => format!("iptables-legacy{suffix}"),
            Backend::Nft => format!("iptables-nft{suffix}"),
        }
    }

    /// The ip6tables tool of this flavour.
    pub fn tool6(self, suffix: &str) -> String {
        match self {
            Backend::Legacy => format!("ip6tables-legacy{suffix}"),
            Backend::Nft => format!("ip6tables-nft{suffix}"),
        }
    }
}

/// Runs a command, feeding `input` on stdin; its stdout, or an error with its stderr.
pub fn run(args: &[&str], input: Option<&str>) -> Result<String, VerifyError> {
    let (prog, rest) = args.split_first().ok_or_else(|| VerifyError::Setup("empty command".into()))?;
    let mut cmd = Command::new(prog);
    cmd.args(rest).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let shown = args.join(" ");
    let io = |e: std::io::Error| VerifyError::Io { what: format!("running {shown}"), source: e };
    let mut child = cmd.spawn().map_err(io)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(io)?;
    }
    let out = child.wait_with_output().map_err(io)?;
    if !out.status.success() {
        return Err(VerifyError::Command {
            cmd: shown,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command inside namespace `ns`.
pub fn ns_run(ns: &str, args: &[&str], input: Option<&str>) -> Result<String, VerifyError> {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all, input)
}

/// One peer: a namespace holding the far end of the veth of one firewall interface.
#[derive(Debug, Clone)]
pub struct Peer {
    pub ns: String,
    /// The veth end inside the peer namespace (named like the namespace: unique, under 16 characters).
    pub dev: String,
    pub mac: [u8; 6],
    /// The firewall interface (host model name) and its MAC.
    pub fw_if: String,
    pub fw_mac: [u8; 6],
}

/// The namespaces of one run. Dropping it deletes them.
#[derive(Debug)]
pub struct Topology {
    pub fw: String,
    pub peers: Vec<Peer>,
    created: Vec<String>,
}

fn mac_string(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Settings for building the firewall namespace.
pub struct FirewallSetup<'a> {
    pub backend: Backend,
    pub rules_text: &'a str,
    /// Zero every counter after loading (the file's counters are all zero).
    pub zero_counters: bool,
    /// Tables of the ruleset (zeroed when `zero_counters`).
    pub tables: &'a [&'a str],
    pub forwarding: bool,
    /// `net.netfilter.*` keys and values for the firewall namespace.
    pub sysctls: &'a [(String, String)],
    /// The IPv6 side, when IPv6 is verified too.
    pub ipv6: Option<Rules6<'a>>,
}

/// The ip6tables ruleset for the firewall namespace.
pub struct Rules6<'a> {
    pub rules_text: &'a str,
    pub zero_counters: bool,
    pub tables: &'a [&'a str],
}

impl Topology {
    /// Names for run `id` of this process (`sw<pid>-<id>f`, `sw<pid>-<id>p<n>`: unique, at most 15
    /// characters). Nothing is created yet.
    pub fn new(id: u32, interfaces: &[String]) -> Topology {
        let base = format!("sw{:x}-{:x}", std::process::id(), id);
        let peers = interfaces
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let n = u8::try_from(i).unwrap_or(u8::MAX);
                Peer {
                    ns: format!("{base}p{i}"),
                    dev: format!("{base}p{i}"),
                    mac: [0x02, 0x73, 0x77, 0x00, n, 0x01],
                    fw_if: name.clone(),
                    fw_mac: [0x02, 0x73, 0x77, 0x00, n, 0x02],
                }
            })
            .collect();
        Topology { fw: format!("{base}f"), peers, created: Vec::new() }
    }

    /// Creates the namespaces and links, configures addresses, neighbours and routes from `plan`, loads the
    /// ruleset with the suppression rules and writes the sysctls. On error the namespaces created so far are
    /// deleted when `self` drops.
    pub fn build(&mut self, plan: &Plan, fw: &FirewallSetup<'_>) -> Result<(), VerifyError> {
        if self.peers.len() > 250 {
            return Err(VerifyError::Setup("too many interfaces in the host model (at most 250)".into()));
        }
        let mut names = vec![self.fw.clone()];
        names.extend(self.peers.iter().map(|p| p.ns.clone()));
        for ns in names {
            run(&["ip", "netns", "add", &ns], None)?;
            self.created.push(ns);
        }
        let fwns = self.fw.clone();
        let mtu = plan.max_ip_len.clamp(1500, 65535);
        for p in &self.peers {
            run(
                &[
                    "ip",
                    "link",
                    "add",
                    &p.dev,
                    "netns",
                    &p.ns,
                    "address",
                    &mac_string(p.mac),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &p.fw_if,
                    "netns",
                    &fwns,
                    "address",
                    &mac_string(p.fw_mac),
                ],
                None,
            )?;
            // Sysctls before the links come up, so that no IPv6 autoconfiguration traffic ever starts.
            sysctl_iface_defaults(&p.ns, &[p.dev.as_str()], false)?;
            for m in [mtu, 9000, 1500] {
                let a = run(&["ip", "-n", &p.ns, "link", "set", "dev", &p.dev, "mtu", &m.to_string()], None);
                let b =
                    run(&["ip", "-n", &fwns, "link", "set", "dev", &p.fw_if, "mtu", &m.to_string()], None);
                if a.is_ok() && b.is_ok() {
                    break;
                }
            }
        }
        let ifs: Vec<&str> = self.peers.iter().map(|p| p.fw_if.as_str()).collect();
        sysctl_iface_defaults(&fwns, &ifs, fw.forwarding)?;
        if fw.ipv6.is_some() {
            sysctl_ipv6(&fwns, &ifs, fw.forwarding)?;
        }
        // The rulesets (and the suppression rules on top of raw OUTPUT) before any link is up.
        load_rules(&fwns, fw.backend, false, fw.rules_text, fw.zero_counters, fw.tables)?;
        if let Some(r6) = &fw.ipv6 {
            load_rules(&fwns, fw.backend, true, r6.rules_text, r6.zero_counters, r6.tables)?;
        }
        for (k, v) in fw.sysctls {
            ns_run(&fwns, &["sysctl", "-q", "-w", &format!("{k}={v}")], None).map_err(|e| {
                VerifyError::Sysctl(
                    format!("{k}={v}"),
                    format!("cannot be set in the firewall namespace: {e}"),
                )
            })?;
        }
        let mut batch = String::new();
        for (p, iface) in self.peers.iter().zip(&plan.interfaces) {
            for (a, len) in &iface.addresses {
                batch.push_str(&format!("addr add {a}/{len} dev {}\n", p.fw_if));
            }
            for (a, len) in &iface.addresses6 {
                batch.push_str(&format!("addr add {a}/{len} dev {} nodad\n", p.fw_if));
            }
        }
        batch.push_str("link set dev lo up\n");
        for p in &self.peers {
            batch.push_str(&format!("link set dev {} up\n", p.fw_if));
        }
        for (p, iface) in self.peers.iter().zip(&plan.interfaces) {
            for (a, len) in &iface.routes {
                let mask = if *len == 0 { 0 } else { u32::MAX << (32 - u32::from((*len).min(32))) };
                let net = std::net::Ipv4Addr::from(u32::from(*a) & mask);
                batch.push_str(&format!("route replace {net}/{len} dev {}\n", p.fw_if));
            }
            for a in &iface.remotes {
                batch.push_str(&format!(
                    "neigh replace {a} lladdr {} dev {} nud permanent\n",
                    mac_string(p.mac),
                    p.fw_if
                ));
                if !iface.addresses.iter().any(|(la, len)| same_subnet(*la, *len, *a)) {
                    batch.push_str(&format!("route replace {a}/32 dev {}\n", p.fw_if));
                }
            }
            batch.push_str(&routes6(iface, &p.fw_if, &mac_string(p.mac)));
        }
        run(&["ip", "-n", &fwns, "-batch", "-"], Some(&batch))?;
        for p in &self.peers {
            run(&["ip", "-n", &p.ns, "link", "set", "dev", &p.dev, "up"], None)?;
        }
        let fwd = ns_run(&fwns, &["sysctl", "-n", "net.ipv4.ip_forward"], None)?;
        if fwd.trim() != if fw.forwarding { "1" } else { "0" } {
            return Err(VerifyError::Setup(format!("net.ipv4.ip_forward is {} in {fwns}", fwd.trim())));
        }
        if fw.ipv6.is_some() {
            let fwd = ns_run(&fwns, &["sysctl", "-n", "net.ipv6.conf.all.forwarding"], None)?;
            if fwd.trim() != if fw.forwarding { "1" } else { "0" } {
                return Err(VerifyError::Setup(format!(
                    "net.ipv6.conf.all.forwarding is {} in {fwns}",
                    fwd.trim()
                )));
            }
        }
        Ok(())
    }

    /// The interface index of every firewall interface (`ip -o link` in the firewall namespace).
    pub fn fw_ifindexes(&self) -> Result<Vec<(String, u32)>, VerifyError> {
        Ok(parse_ifindexes(&run(&["ip", "-n", &self.fw, "-o", "link", "show"], None)?))
    }

    /// Deletes the namespaces now; returns the ones `ip netns list` still shows afterwards.
    pub fn destroy(&mut self) -> Vec<String> {
        for ns in self.created.drain(..).rev() {
            let _ = run(&["ip", "netns", "del", &ns], None);
        }
        let prefix = format!("sw{:x}-", std::process::id());
        match run(&["ip", "netns", "list"], None) {
            Ok(list) => list
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| {
                    n.starts_with(&prefix) && (*n == self.fw || self.peers.iter().any(|p| p.ns == *n))
                })
                .map(str::to_string)
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.created.drain(..).rev() {
            let _ = run(&["ip", "netns", "del", &ns], None);
        }
    }
}

/// Loads a ruleset with `iptables-restore` (`ip6tables-restore` when `v6`), inserts the suppression rules on
/// top of raw OUTPUT, and zeroes the counters when asked.
fn load_rules(
    ns: &str,
    backend: Backend,
    v6: bool,
    text: &str,
    zero: bool,
    tables: &[&str],
) -> Result<(), VerifyError> {
    let tool = |suffix: &str| if v6 { backend.tool6(suffix) } else { backend.tool(suffix) };
    ns_run(ns, &[&tool("-restore"), "--counters"], Some(text))?;
    let ipt = tool("");
    for (n, (args, _)) in super::counters::SUPPRESSION.iter().enumerate() {
        let pos = (n + 1).to_string();
        let mut a = vec![ipt.as_str(), "-w", "-t", "raw", "-I", "OUTPUT", &pos];
        a.extend_from_slice(args);
        ns_run(ns, &a, None)?;
    }
    if zero {
        for t in tables.iter().copied().chain(["raw"]) {
            ns_run(ns, &[&ipt, "-w", "-t", t, "-Z"], None)?;
        }
    }
    Ok(())
}

/// `ip -batch` lines for one interface's IPv6 routes (the model's, on-link), its remotes' permanent
/// neighbour entries, and a /128 route for each remote no connected subnet covers.
fn routes6(iface: &super::plan::Iface, dev: &str, peer_mac: &str) -> String {
    let mut batch = String::new();
    for (a, len) in &iface.routes6 {
        let net = Ipv6Addr::from(u128::from(*a) & v6_mask(*len));
        batch.push_str(&format!("route replace {net}/{len} dev {dev}\n"));
    }
    for a in &iface.remotes6 {
        batch.push_str(&format!("neigh replace {a} lladdr {peer_mac} dev {dev} nud permanent\n"));
        let covered = iface
            .addresses6
            .iter()
            .any(|(la, len)| (u128::from(*la) & v6_mask(*len)) == (u128::from(*a) & v6_mask(*len)));
        if !covered {
            batch.push_str(&format!("route replace {a}/128 dev {dev}\n"));
        }
    }
    batch
}

fn v6_mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// `N: NAME[@PEER]: ...` lines of `ip -o link show` as (name, index).
fn parse_ifindexes(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let index = parts.next()?.trim().parse().ok()?;
            let name = parts.next()?.trim();
            let name = name.split('@').next()?;
            Some((name.to_string(), index))
        })
        .collect()
}

fn same_subnet(a: Ipv4Addr, len: u8, b: Ipv4Addr) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) };
    (u32::from(a) & mask) == (u32::from(b) & mask)
}

/// IPv4 forwarding, no IPv6, no reverse-path filter, no redirects, for `ifs` and the defaults.
fn sysctl_iface_defaults(ns: &str, ifs: &[&str], forwarding: bool) -> Result<(), VerifyError> {
    let mut keys = vec![format!("net/ipv4/ip_forward={}", u8::from(forwarding))];
    for i in ["all", "default", "lo"].iter().chain(ifs) {
        keys.push(format!("net/ipv6/conf/{i}/disable_ipv6=1"));
        keys.push(format!("net/ipv4/conf/{i}/rp_filter=0"));
        keys.push(format!("net/ipv4/conf/{i}/accept_redirects=0"));
        keys.push(format!("net/ipv4/conf/{i}/send_redirects=0"));
    }
    let mut args = vec!["sysctl", "-q", "-w"];
    args.extend(keys.iter().map(String::as_str));
    ns_run(ns, &args, None).map(drop)
}

/// IPv6 on for the firewall's interfaces (written while they are down): forwarding as the model says, no
/// automatic link-local address, no DAD, router solicitations, router advertisements, autoconfiguration,
/// temporary addresses or redirects.
fn sysctl_ipv6(ns: &str, ifs: &[&str], forwarding: bool) -> Result<(), VerifyError> {
    let mut args = vec!["sysctl".to_string(), "-q".into(), "-w".into()];
    args.extend(ipv6_sysctls(ifs, forwarding));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ns_run(ns, &args, None).map(drop)
}

fn ipv6_sysctls(ifs: &[&str], forwarding: bool) -> Vec<String> {
    // all.forwarding first: writing it sets every interface's own switch.
    let mut keys = vec![format!("net/ipv6/conf/all/forwarding={}", u8::from(forwarding))];
    for i in ["all", "default", "lo"].iter().chain(ifs) {
        for k in [
            "accept_ra=0",
            "autoconf=0",
            "router_solicitations=0",
            "accept_dad=0",
            "dad_transmits=0",
            "accept_redirects=0",
            "use_tempaddr=0",
        ] {
            keys.push(format!("net/ipv6/conf/{i}/{k}"));
        }
        if !matches!(*i, "all" | "lo") {
            keys.push(format!("net/ipv6/conf/{i}/addr_gen_mode=1"));
        }
    }
    for i in ["all", "default", "lo"].iter().chain(ifs) {
        keys.push(format!("net/ipv6/conf/{i}/disable_ipv6=0"));
    }
    keys
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_run_and_short() {
        let t = Topology::new(0xfff, &["eth0".into(), "lan0".into()]);
        assert!(t.fw.len() <= 15 && t.peers.iter().all(|p| p.ns.len() <= 15 && p.dev.len() <= 15), "{t:?}");
        let u = Topology::new(0xffe, &["eth0".into()]);
        assert_ne!(t.fw, u.fw);
        assert_ne!(t.peers[0].mac, t.peers[1].mac);
        assert!(same_subnet(
            "192.0.2.10".parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
            24,
            Ipv4Addr::new(192, 0, 2, 1)
        ));
        assert!(!same_subnet(Ipv4Addr::new(192, 0, 2, 10), 24, Ipv4Addr::new(203, 0, 113, 1)));
    }

    #[test]
    fn ipv6_routes_neighbours_and_sysctls() {
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
        let iface = super::super::plan::Iface {
            name: "eth0".into(),
            addresses: vec![],
            remotes: Default::default(),
            routes: vec![],
            addresses6: vec![(a("2001:db8::10"), 64)],
            remotes6: [a("2001:db8::1"), a("2001:db8:ff::9")].into_iter().collect(),
            routes6: vec![(a("::"), 0), (a("2001:db8:5::1"), 48)],
        };
        let b = routes6(&iface, "eth0", "02:73:77:00:00:01");
        assert_eq!(
            b,
            "route replace ::/0 dev eth0\n\
route replace 2001:db8:5::/48 dev eth0\n\
neigh replace 2001:db8::1 lladdr 02:73:77:00:00:01 dev eth0 nud permanent\n\
neigh replace 2001:db8:ff::9 lladdr 02:73:77:00:00:01 dev eth0 nud permanent\n\
route replace 2001:db8:ff::9/128 dev eth0\n"
        );
        let k = ipv6_sysctls(&["eth0"], true);
        assert_eq!(k[0], "net/ipv6/conf/all/forwarding=1");
        assert!(k.contains(&"net/ipv6/conf/eth0/addr_gen_mode=1".to_string()));
        assert!(!k.contains(&"net/ipv6/conf/all/addr_gen_mode=1".to_string()));
        let enable = k.iter().position(|x| x == "net/ipv6/conf/eth0/disable_ipv6=0");
        let ra = k.iter().position(|x| x == "net/ipv6/conf/eth0/accept_ra=0");
        assert!(ra < enable, "everything is set before IPv6 comes on");
        assert_eq!(Backend::Legacy.tool6("-save"), "ip6tables-legacy-save");
        assert_eq!(Backend::Nft.tool6(""), "ip6tables-nft");
    }

    #[test]
    fn interface_indexes_from_ip_link() {
        let text = "1: lo: <LOOPBACK> mtu 65536 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: eth0@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\\    link/ether 02:73:77:00:00:02
7: lan0@if8: <BROADCAST> mtu 1500
";
        assert_eq!(
            parse_ifindexes(text),
            [("lo".to_string(), 1), ("eth0".to_string(), 2), ("lan0".to_string(), 7)]
        );
    }
}
