//! Which packets of a capture are shown to the kernel, from where, and where their copies should appear.
//!
//! Contract: [`Plan::build`] looks at every record once, with the host model only (no OS access), and gives
//! one [`Step`] per record, in order, so indices line up with the engine's replay of the same records:
//! - a packet whose IPv4 source is an address of the host is emitted inside the firewall namespace
//!   ([`Via::Local`]), so it traverses OUTPUT and POSTROUTING like the stack's own traffic;
//! - any other IPv4 packet is injected from the peer namespace of the interface its *source* lives behind
//!   (`Host::classify`'s reverse-path interface, [`Via::Peer`]);
//! - everything else (ARP, IPv6, undecodable link layers, sources no interface leads to) is skipped, with the
//!   reason.
//!
//! A step that is sent but cannot reach the kernel exactly as captured (cut by the snaplen, or a header the raw
//! socket would reject or rewrite) carries an `unfaithful` note: the kernel is no oracle for it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use engine::host::{AddrKind, PathKind, LOOPBACK};
use engine::Host;
use wire::Record;

/// Where a packet is shown to the kernel from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Injected as an Ethernet frame from the peer of firewall interface `n` (index into [`Plan::interfaces`]).
    Peer(usize),
    /// Emitted by a raw socket inside the firewall namespace (`IP_HDRINCL`).
    Local,
}

/// Where a copy of the packet shows up when the kernel lets it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Delivered locally: a raw socket of the packet's protocol gets a copy (INPUT accepted it).
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
    /// The IPv4 packet to send, as captured (link-layer padding beyond the IP total length removed for local
    /// sends, which the kernel would otherwise count into the rewritten total length).
    pub ip: Vec<u8>,
    pub dst: Ipv4Addr,
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
}

/// The whole plan for one capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub interfaces: Vec<Iface>,
    /// IP protocols of packets expected to be delivered locally (one raw receive socket each).
    pub local_protos: BTreeSet<u8>,
    /// Largest IPv4 packet sent (to size the MTU).
    pub max_ip_len: usize,
}

impl Plan {
    pub fn build(records: &[Record], host: &Host) -> Plan {
        let interfaces: Vec<Iface> = host
            .interfaces()
            .iter()
            .filter(|i| i.name != LOOPBACK)
            .map(|i| Iface {
                name: i.name.clone(),
                addresses: i
                    .addresses
                    .iter()
                    .filter_map(|p| match p.addr {
                        IpAddr::V4(a) => Some((a, p.len)),
                        IpAddr::V6(_) => None,
                    })
                    .collect(),
                remotes: BTreeSet::new(),
                routes: host
                    .explicit_routes()
                    .iter()
                    .filter(|r| r.dev == i.name)
                    .filter_map(|r| match r.dst.addr {
                        IpAddr::V4(a) => Some((a, r.dst.len)),
                        IpAddr::V6(_) => None,
                    })
                    .collect(),
            })
            .collect();
        let mut plan = Plan { steps: Vec::new(), interfaces, local_protos: BTreeSet::new(), max_ip_len: 0 };
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

    fn note_remote(&mut self, host: &Host, addr: Ipv4Addr) {
        let ip = IpAddr::V4(addr);
        if host.is_local(ip) || host.addr_kind(ip) != AddrKind::Unicast {
            return;
        }
        if let Some(n) = self.iface_index(host.route(ip)) {
            if let Some(i) = self.interfaces.get_mut(n) {
                i.remotes.insert(addr);
            }
        }
    }

    fn step(&mut self, r: &Record, host: &Host) -> Step {
        let frame = match wire::strip_link(r.linktype, &r.data) {
            Ok(f) => f,
            Err(e) => return Step::Skip(format!("not sent: {e}")),
        };
        let ip = frame.ip;
        match ip.first().map(|b| b >> 4) {
            Some(4) => {}
            Some(6) => return Step::Skip("IPv6: not sent (IPv4 only)".into()),
            _ => return Step::Skip("not IPv4".into()),
        }
        let (Some(src), Some(dst), Some(&proto)) = (addr_at(ip, 12), addr_at(ip, 16), ip.get(9)) else {
            return Step::Skip("IPv4 header shorter than 20 bytes: not sent".into());
        };
        let (path, in_if, out_if) = host.classify(IpAddr::V4(src), IpAddr::V4(dst));
        let via = if host.is_local(IpAddr::V4(src)) {
            Via::Local
        } else {
            match self.iface_index(in_if) {
                Some(n) => Via::Peer(n),
                None => return Step::Skip("no interface leads to the source address: not sent".into()),
            }
        };
        let expect = match path {
            PathKind::Input | PathKind::Loopback => Expect::Delivered,
            PathKind::Output | PathKind::Forward => match self.iface_index(out_if) {
                Some(n) => Expect::Leaves(n),
                None => Expect::Nowhere,
            },
            PathKind::Unrouted(_) => Expect::Nowhere,
        };
        self.note_remote(host, src);
        self.note_remote(host, dst);
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
        Step::Send(Send { via, expect, ip: bytes.to_vec(), dst, unfaithful })
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
        let p = Plan::build(&recs, &host());
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
        let p = Plan::build(&recs, &host());
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
}
