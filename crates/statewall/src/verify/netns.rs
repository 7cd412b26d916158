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

use std::io::Write;
use std::net::Ipv4Addr;
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
        let mut batch = String::new();
        for (p, iface) in self.peers.iter().zip(&plan.interfaces) {
            for (a, len) in &iface.addresses {
                batch.push_str(&format!("addr add {a}/{len} dev {}\n", p.fw_if));
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
        }
        run(&["ip", "-n", &fwns, "-batch", "-"], Some(&batch))?;
        for p in &self.peers {
            run(&["ip", "-n", &p.ns, "link", "set", "dev", &p.dev, "up"], None)?;
        }
        let fwd = ns_run(&fwns, &["sysctl", "-n", "net.ipv4.ip_forward"], None)?;
        if fwd.trim() != if fw.forwarding { "1" } else { "0" } {
            return Err(VerifyError::Setup(format!("net.ipv4.ip_forward is {} in {fwns}", fwd.trim())));
        }

        // The ruleset, then the suppression rules on top of raw OUTPUT.
        ns_run(&fwns, &[&fw.backend.tool("-restore"), "--counters"], Some(fw.rules_text))?;
        let ipt = fw.backend.tool("");
        for (n, (args, _)) in super::counters::SUPPRESSION.iter().enumerate() {
            let pos = (n + 1).to_string();
            let mut a = vec![ipt.as_str(), "-w", "-t", "raw", "-I", "OUTPUT", &pos];
            a.extend_from_slice(args);
            ns_run(&fwns, &a, None)?;
        }
        if fw.zero_counters {
            for t in fw.tables.iter().copied().chain(["raw"]) {
                ns_run(&fwns, &[&ipt, "-w", "-t", t, "-Z"], None)?;
            }
        }
        for (k, v) in fw.sysctls {
            ns_run(&fwns, &["sysctl", "-q", "-w", &format!("{k}={v}")], None).map_err(|e| {
                VerifyError::Sysctl(
                    format!("{k}={v}"),
                    format!("cannot be set in the firewall namespace: {e}"),
                )
            })?;
        }
        Ok(())
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
}
