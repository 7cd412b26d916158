//! Which packets of a capture are shown to the kernel, from where, and where their copies should appear.
//!
//! Contract: [`Plan::build`] looks at every record once, with the host model only (no OS access), and gives
//! one [`Step`] per record, in order, so indices line up with the engine's replay of the same records:
//! - a packet whose IPv4 source is an address of the host is emitted inside the firewall namespace
//!   ([`Via::Local`]), so it traverses OUTPUT and POSTROUTING like the stack's own traffic;
//! - any other IPv4 packet is injected from the peer namespace of the interface its *source* lives behind
//!   (`Host::classify`'s reverse-path interface, [`Via::Peer`]);
//! - IPv6 packets the same way when the capture is verified with an IPv6 ruleset (`ipv6`), else skipped;
//! - everything else (ARP, undecodable link layers, sources no interface leads to) is skipped, with the
//!   reason.
//!
//! A step that is sent but cannot reach the kernel exactly as captured (cut by the snaplen, or a header the raw
//! socket would reject or rewrite) carries an `unfaithful` note: the kernel is no oracle for it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use engine::host::{AddrKind, PathKind, LOOPBACK};
use engine::Host;
use wire::Record;

use super::ip6;

/// Where a packet is shown to the kernel from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Injected as an Ethernet frame from the peer of firewall interface `n` (index into [`Plan::interfaces`]).
    Peer(usize),
    /// Emitted by a raw socket inside the firewall namespace (`IP_HDRINCL`; for IPv6 an `IPPROTO_RAW` socket,
    /// which sends the given header as is).
    Local,
}

/// Where a copy of the packet shows up when the kernel lets it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Delivered locally: a raw socket of the packet's protocol gets a copy (INPUT accepted it). For IPv6 the
    /// protocol at the end of the extension header chain.
    Delivered,
    /// Leaves by firewall interface `n`: the peer sees the frame.
    Leaves(usize),
    /// Routing discards it after PREROUTING: nothing should appear anywhere.
    Nowhere,
}

/// A packet that is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub via: Via,
    pub expect: Expect,
    /// The IP packet to send, as captured (link-layer padding beyond the IP total length, or the IPv6 payload
    /// length, removed for local sends: the raw socket would send it).
    pub ip: Vec<u8>,
    pub dst: IpAddr,
    /// The interface the host model routes it out of, if any (the scope of link-local and multicast
    /// destinations for local IPv6 sends).
    pub out: Option<usize>,
    /// Why the kernel cannot see this packet as captured, if it cannot.
    pub unfaithful: Option<String>,
}

/// One record's fate in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Skip(String),
    Send(Send),
}

/// One firewall interface of the topology (from the host model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    /// IPv4 addresses with prefix length.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// Remote unicast addresses the host model routes through this interface (neighbour entries, and a /32
    /// route when no connected subnet of the interface covers them).
    pub remotes: BTreeSet<Ipv4Addr>,
    /// The host model's own IPv4 routes through this interface (e.g. the default route), so that the kernel
    /// routes what the model routes, multicast included.
    pub routes: Vec<(Ipv4Addr, u8)>,
    /// The same three for IPv6 (filled only when the plan sends IPv6).
    pub addresses6: Vec<(Ipv6Addr, u8)>,
    pub remotes6: BTreeSet<Ipv6Addr>,
    pub routes6: Vec<(Ipv6Addr, u8)>,
}

/// The whole plan for one capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub interfaces: Vec<Iface>,
    /// IP protocols of packets expected to be delivered locally (one raw receive socket each).
    pub local_protos: BTreeSet<u8>,
    /// The same for IPv6: upper-layer protocols (one raw IPv6 receive socket each).
    pub local_protos6: BTreeSet<u8>,
    /// IPv6 is verified too: the firewall gets IPv6 addresses and routes, the ip6tables ruleset, and a raw
    /// IPv6 socket for its own packets.
    pub ipv6: bool,
    /// Largest IP packet sent (to size the MTU).
    pub max_ip_len: usize,
}

fn v4_of(addr: IpAddr) -> Option<Ipv4Addr> {
    match addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

fn v6_of(addr: IpAddr) -> Option<Ipv6Addr> {
    match addr {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    }
}

impl Plan {
    /// The plan for `records` on `host`; IPv6 packets are sent only when `ipv6` (an IPv6 ruleset is given).
    pub fn build(records: &[Record], host: &Host, ipv6: bool) -> Plan {
        let interfaces: Vec<Iface> = host
            .interfaces()
            .iter()
            .filter(|i| i.name != LOOPBACK)
            .map(|i| {
                let routes = host.explicit_routes().iter().filter(|r| r.dev == i.name);
                Iface {
                    name: i.name.clone(),
                    addresses: i.addresses.iter().filter_map(|p| Some((v4_of(p.addr)?, p.len))).collect(),
                    remotes: BTreeSet::new(),
                    routes: routes.clone().filter_map(|r| Some((v4_of(r.dst.addr)?, r.dst.len))).collect(),
                    addresses6: if ipv6 {
                        i.addresses.iter().filter_map(|p| Some((v6_of(p.addr)?, p.len))).collect()
                    } else {
                        Vec::new()
                    },
                    remotes6: BTreeSet::new(),
                    routes6: if ipv6 {
                        routes.filter_map(|r| Some((v6_of(r.dst.addr)?, r.dst.len))).collect()
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        let mut plan = Plan {
            steps: Vec::new(),
            interfaces,
            local_protos: BTreeSet::new(),
            local_protos6: BTreeSet::new(),
            ipv6,
            max_ip_len: 0,
        };
        for r in records {
            let step = plan.step(r, host);
            if let Step::Send(s) = &step {
                plan.max_ip_len = plan.max_ip_len.max(s.ip.len());
            }
            plan.steps.push(step);
        }
        plan
    }

    fn iface_index(&self, name: Option<&str>) -> Option<usize> {
        let name = name?;
        self.interfaces.iter().position(|i| i.name == name)
    }

    fn note_remote(&mut self, host: &Host, ip: IpAddr) {
        if host.is_local(&ip) || host.addr_kind(ip) != AddrKind::Unicast {
            return;
        }
        if let Some(n) = self.iface_index(host.route(ip)) {
            if let Some(i) = self.interfaces.get_mut(n) {
                match ip {
                    IpAddr::V4(a) => i.remotes.insert(a),
                    IpAddr::V6(a) => i.remotes6.insert(a),
                };
            }
        }
    }

    /// Where a packet from `src` to `dst` is sent from and where it should show up, as the host model
    /// routes it; `None` when no interface leads to the source.
    fn route(&mut self, host: &Host, src: IpAddr, dst: IpAddr) -> Option<(Via, Expect, Option<usize>)> {
        let (path, in_if, out_if) = host.classify(src, dst);
        let out = self.iface_index(out_if);
        let via = if host.is_local(&src) { Via::Local } else { Via::Peer(self.iface_index(in_if)?) };
        let expect = match path {
            PathKind::Input | PathKind::Loopback => Expect::Delivered,
            PathKind::Output | PathKind::Forward => match out {
                Some(n) => Expect::Leaves(n),
                None => Expect::Nowhere,
            },
            PathKind::Unrouted(_) => Expect::Nowhere,
        };
        self.note_remote(host, src);
        self.note_remote(host, dst);
        Some((via, expect, out))
    }

    fn step(&mut self, r: &Record, host: &Host) -> Step {
        let frame = match wire::strip_link(r.linktype, &r.data) {
            Ok(f) => f,
            Err(e) => return Step::Skip(format!("not sent: {e}")),
        };
        let ip = frame.ip;
        match ip.first().map(|b| b >> 4) {
            Some(4) => {}
            Some(6) if self.ipv6 => return self.step6(r, ip, host),
            Some(6) => return Step::Skip("IPv6: not sent (no --rules6)".into()),
            _ => return Step::Skip("not IPv4".into()),
        }
        let (Some(src), Some(dst), Some(&proto)) = (addr_at(ip, 12), addr_at(ip, 16), ip.get(9)) else {
            return Step::Skip("IPv4 header shorter than 20 bytes: not sent".into());
        };
        let Some((via, expect, out)) = self.route(host, IpAddr::V4(src), IpAddr::V4(dst)) else {
            return Step::Skip("no interface leads to the source address: not sent".into());
        };
        let ihl = usize::from(ip.first().map_or(0, |b| b & 0x0f)) * 4;
        let tot = usize::from(u16::from_be_bytes([
            ip.get(2).copied().unwrap_or(0),
            ip.get(3).copied().unwrap_or(0),
        ]));
        let mut unfaithful = None;
        let mut bytes = ip;
        if tot > ip.len() && r.origlen > r.caplen {
            // Cut by the snaplen: from a peer, ip_rcv drops it (total length beyond the buffer); from the raw
            // socket it would leave with a rewritten, shorter total length.
            unfaithful =
                Some(format!("truncated by the capture (captured {} of {} bytes)", r.caplen, r.origlen));
        } else if via == Via::Local {
            if ihl < 20 || tot < ihl {
                // raw_send_hdrinc refuses ihl < 5 and always rewrites the total length.
                unfaithful = Some(format!(
                    "IP header (ihl {ihl}, total length {tot}) cannot leave a raw socket as is"
                ));
            } else if tot > ip.len() {
                unfaithful = Some(format!(
                    "total length {tot} beyond the {} captured bytes: the raw socket rewrites it",
                    ip.len()
                ));
            } else if let Some(b) = ip.get(..tot) {
                bytes = b;
            }
            let frag = u16::from_be_bytes([ip.get(6).copied().unwrap_or(0), ip.get(7).copied().unwrap_or(0)]);
            let id = u16::from_be_bytes([ip.get(4).copied().unwrap_or(0), ip.get(5).copied().unwrap_or(0)]);
            if unfaithful.is_none() && frag & 0x3fff != 0 && id == 0 {
                // raw_send_hdrinc picks a fresh IP id when it is 0: the fragment no longer belongs to its
                // datagram.
                unfaithful = Some("fragment with IP id 0: the raw socket gives it a new id".into());
            }
        }
        if expect == Expect::Delivered {
            if proto == 0 || proto == 255 {
                if unfaithful.is_none() {
                    unfaithful = Some(format!("protocol {proto}: no raw socket can observe its delivery"));
                }
            } else {
                self.local_protos.insert(proto);
            }
        }
        Step::Send(Send { via, expect, ip: bytes.to_vec(), dst: IpAddr::V4(dst), out, unfaithful })
    }

    /// An IPv6 packet. A raw `IPPROTO_RAW` IPv6 socket sends the header it is given unchanged
    /// (`rawv6_send_hdrinc` rewrites nothing), so only a cut capture or a delivery no raw socket can see makes
    /// a packet unfaithful.
    fn step6(&mut self, r: &Record, ip: &[u8], host: &Host) -> Step {
        let Some(h) = ip6::header(ip) else {
            return Step::Skip("IPv6 header shorter than 40 bytes: not sent".into());
        };
        let (src, dst) = (IpAddr::V6(h.src), IpAddr::V6(h.dst));
        let Some((via, expect, out)) = self.route(host, src, dst) else {
            return Step::Skip("no interface leads to the source address: not sent".into());
        };
        let whole = h.payload_len.saturating_add(40);
        let mut unfaithful = None;
        let mut bytes = ip;
        if whole > ip.len() && r.origlen > r.caplen {
            // From a peer, ipv6_rcv drops it (payload length beyond the buffer); the engine sees the same cut.
            unfaithful =
                Some(format!("truncated by the capture (captured {} of {} bytes)", r.caplen, r.origlen));
        } else if h.payload_len == 0 && h.next == ip6::HOP_BY_HOP && ip.len() > 40 {
            unfaithful = Some("jumbogram (payload length 0): not followed".into());
        } else if via == Via::Local {
            if let Some(b) = ip.get(..whole) {
                bytes = b;
            }
        }
        if expect == Expect::Delivered {
            let upper = match ip6::walk(h.next, h.payload) {
                Some(ip6::Upper::Whole { proto, l4 }) => Some((proto, Some(l4))),
                Some(ip6::Upper::Fragment { offset: 0, next, data, .. }) => match ip6::walk(next, data) {
                    Some(ip6::Upper::Whole { proto, .. }) => Some((proto, None)),
                    _ => None,
                },
                Some(ip6::Upper::Fragment { next, .. }) if !is_ext(next) => Some((next, None)),
                // A later fragment whose datagram starts with extension headers: its first fragment names
                // the protocol.
                Some(ip6::Upper::Fragment { .. }) => None,
                None => Some((h.next, None)),
            };
            let unseen = match upper {
                Some((255, _)) => Some("next header 255: no raw socket can observe its delivery"),
                // rawv6_rcv_skb verifies the checksum of ICMPv6 raw sockets and drops the copy.
                Some((58, Some(l4))) if wire::checksum::l4_checksum_v6(h.src, h.dst, 58, l4) != 0 => {
                    Some("ICMPv6 with a bad checksum: the raw ICMPv6 socket drops its copy, delivery unseen")
                }
                Some((proto, _)) => {
                    self.local_protos6.insert(proto);
                    None
                }
                None => None,
            };
            if unfaithful.is_none() {
                unfaithful = unseen.map(str::to_string);
            }
        }
        Step::Send(Send { via, expect, ip: bytes.to_vec(), dst, out, unfaithful })
    }

    /// Frames not sent, by reason.
    pub fn skipped(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for s in &self.steps {
            if let Step::Skip(why) = s {
                *m.entry(why.clone()).or_insert(0) += 1;
            }
        }
        m
    }
}

fn is_ext(next: u8) -> bool {
    matches!(next, ip6::HOP_BY_HOP | ip6::ROUTING | ip6::FRAGMENT | ip6::AUTH | ip6::DEST_OPTS)
}

fn addr_at(ip: &[u8], at: usize) -> Option<Ipv4Addr> {
    let b: [u8; 4] = ip.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;
    use wire::Time;

    /// An Ethernet frame carrying a minimal IPv4 UDP packet.
    pub fn udp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&udp_ip(src, dst, sport, dport, payload, 0x1234, 0));
        f
    }

    pub fn udp_ip(
        src: [u8; 4],
        dst: [u8; 4],
        sp: u16,
        dp: u16,
        payload: &[u8],
        id: u16,
        frag: u16,
    ) -> Vec<u8> {
        let tot = (28 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
        ip[2..4].copy_from_slice(&tot.to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        ip.extend_from_slice(&sp.to_be_bytes());
        ip.extend_from_slice(&dp.to_be_bytes());
        ip.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(payload);
        ip
    }

    pub fn record(index: usize, t_ms: u64, data: Vec<u8>) -> Record {
        Record {
            index,
            ts: Time(1_000_000_000 + t_ms * 1_000_000),
            linktype: 1,
            caplen: data.len() as u32,
            origlen: data.len() as u32,
            data,
            interface: None,
            offset: 0,
        }
    }

    fn host() -> Host {
        Host::with_locals(&["192.0.2.10/24".parse().unwrap()])
    }

    #[test]
    fn host_mode_paths_and_remotes() {
        let arp = {
            let mut f = vec![0xff; 6];
            f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
            f.extend_from_slice(&[0; 28]);
            f
        };
        let recs = vec![
            record(0, 0, arp),
            record(1, 1, udp_frame([203, 0, 113, 80], [192, 0, 2, 10], 4000, 33333, b"hello")),
            record(2, 2, udp_frame([192, 0, 2, 10], [203, 0, 113, 80], 33333, 4000, b"hi")),
            record(3, 3, udp_frame([203, 0, 113, 80], [198, 51, 100, 1], 1, 2, b"")),
            record(4, 4, udp_frame([192, 0, 2, 1], [192, 0, 2, 255], 1, 2, b"")),
        ];
        let p = Plan::build(&recs, &host(), false);
        assert!(matches!(&p.steps[0], Step::Skip(_)));
        let Step::Send(s1) = &p.steps[1] else { panic!() };
        assert_eq!((s1.via, s1.expect), (Via::Peer(0), Expect::Delivered));
        let Step::Send(s2) = &p.steps[2] else { panic!() };
        assert_eq!((s2.via, s2.expect), (Via::Local, Expect::Leaves(0)));
        let Step::Send(s3) = &p.steps[3] else { panic!() };
        assert_eq!(s3.expect, Expect::Nowhere, "ip_forward=0: dies after PREROUTING");
        let Step::Send(s4) = &p.steps[4] else { panic!() };
        assert_eq!(s4.expect, Expect::Delivered, "subnet broadcast is delivered");
        assert_eq!(p.local_protos, BTreeSet::from([17]));
        let remotes: Vec<String> = p.interfaces[0].remotes.iter().map(|a| a.to_string()).collect();
        assert_eq!(remotes, ["192.0.2.1", "198.51.100.1", "203.0.113.80"], "no broadcast, no local address");
        assert_eq!(p.skipped().values().sum::<u64>(), 1);
    }

    #[test]
    fn unfaithful_packets_are_named() {
        let mut cut = record(0, 0, udp_frame([203, 0, 113, 80], [192, 0, 2, 10], 1, 2, &[7; 100]));
        cut.data.truncate(60);
        cut.caplen = 60;
        let mut bad_ihl = udp_frame([192, 0, 2, 10], [203, 0, 113, 80], 1, 2, b"");
        bad_ihl[14] = 0x44;
        let mut padded = udp_frame([192, 0, 2, 10], [203, 0, 113, 80], 1, 2, b"x");
        padded.extend_from_slice(&[0; 10]);
        let recs = vec![cut, record(1, 0, bad_ihl), record(2, 0, padded)];
        let p = Plan::build(&recs, &host(), false);
        let u: Vec<Option<String>> = p
            .steps
            .iter()
            .map(|s| match s {
                Step::Send(s) => s.unfaithful.clone(),
                Step::Skip(_) => None,
            })
            .collect();
        assert!(u[0].as_deref().unwrap().contains("truncated"));
        assert!(u[1].as_deref().unwrap().contains("ihl 16"));
        assert_eq!(u[2], None);
        let Step::Send(s) = &p.steps[2] else { panic!() };
        assert_eq!(s.ip.len(), 29, "Ethernet padding stripped before a local send");
    }

    fn host6() -> Host {
        Host::with_locals(&["192.0.2.10/24".parse().unwrap(), "2001:db8::10/64".parse().unwrap()])
    }

    fn eth6(ip: Vec<u8>) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f.extend_from_slice(&ip);
        f
    }

    /// An ICMPv6 echo request with a correct checksum (`good`) or a wrong one.
    fn echo6(src: &str, dst: &str, good: bool) -> Vec<u8> {
        let mut m = vec![128, 0, 0, 0, 0, 7, 0, 1, b'p'];
        let c = wire::checksum::l4_checksum_v6(src.parse().unwrap(), dst.parse().unwrap(), 58, &m);
        m[2..4].copy_from_slice(&(if good { c } else { c ^ 1 }).to_be_bytes());
        ip6(src, dst, 58, &m)
    }

    use crate::verify::ip6::tests::{frag, ip6};

    #[test]
    fn ipv6_is_skipped_without_rules6() {
        let recs = vec![record(0, 0, eth6(echo6("2001:db8::1", "2001:db8::10", true)))];
        let p = Plan::build(&recs, &host6(), false);
        assert_eq!(p.steps, [Step::Skip("IPv6: not sent (no --rules6)".into())]);
        assert!(p.interfaces[0].addresses6.is_empty() && p.interfaces[0].routes6.is_empty());
    }

    #[test]
    fn ipv6_host_mode_paths_remotes_and_sockets() {
        let mut padded = echo6("2001:db8::10", "2001:db8:9::9", true);
        padded.extend_from_slice(&[0; 6]);
        let mut first = frag(17, 0, true, 77);
        first.extend_from_slice(&[0x10, 0, 0, 53, 0, 24, 0, 0]);
        let recs = vec![
            // t=0 ping from the LAN to the firewall: delivered to the ICMPv6 raw socket.
            record(0, 0, eth6(echo6("2001:db8::1", "2001:db8::10", true))),
            // t=1 the firewall's own ping out (Ethernet padding behind it): raw socket, leaves by eth0.
            record(1, 1, eth6(padded)),
            // t=2 not for us, forwarding off: dies after PREROUTING.
            record(2, 2, eth6(echo6("2001:db8::1", "2001:db8:9::9", true))),
            // t=3 a bad checksum on a delivered ICMPv6 packet: its copy is never seen.
            record(3, 3, eth6(echo6("2001:db8::1", "2001:db8::10", false))),
            // t=4 the first fragment of a UDP datagram to us: the UDP raw socket sees the datagram.
            record(4, 4, eth6(ip6("2001:db8::1", "2001:db8::10", 44, &first))),
        ];
        let p = Plan::build(&recs, &host6(), true);
        let sends: Vec<&Send> = p
            .steps
            .iter()
            .map(|s| match s {
                Step::Send(s) => s,
                Step::Skip(w) => panic!("{w}"),
            })
            .collect();
        assert_eq!(
            (sends[0].via, sends[0].expect, sends[0].unfaithful.as_deref()),
            (Via::Peer(0), Expect::Delivered, None)
        );
        assert_eq!((sends[1].via, sends[1].expect, sends[1].out), (Via::Local, Expect::Leaves(0), Some(0)));
        assert_eq!(sends[1].ip.len(), 40 + 9, "padding stripped before a local send");
        assert_eq!(sends[2].expect, Expect::Nowhere);
        assert!(sends[3].unfaithful.as_deref().unwrap().contains("bad checksum"));
        assert_eq!(sends[4].expect, Expect::Delivered);
        assert_eq!(p.local_protos6, BTreeSet::from([17, 58]));
        assert!(p.local_protos.is_empty());
        let i = &p.interfaces[0];
        assert_eq!(i.addresses6, [("2001:db8::10".parse().unwrap(), 64)]);
        assert_eq!(i.routes6, [(Ipv6Addr::UNSPECIFIED, 0)]);
        let remotes: Vec<String> = i.remotes6.iter().map(|a| a.to_string()).collect();
        assert_eq!(remotes, ["2001:db8::1", "2001:db8:9::9"], "no local address");
    }
}
