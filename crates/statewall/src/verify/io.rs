//! Sending the capture through the kernel and watching what comes out. OS side.
//!
//! Contract:
//! - Sockets are opened by a short-lived thread that has entered the namespace (`setns` on
//!   `/var/run/netns/NAME`); a socket keeps the namespace it was created in, so the main thread then uses it.
//! - Packets from the firewall host itself leave a raw `IPPROTO_RAW` socket (`IP_HDRINCL`, `SO_MARK`
//!   [`MARK`]): they traverse OUTPUT and POSTROUTING like the stack's own, and the mark lets them past the
//!   suppression rule. All other packets are Ethernet frames sent by an `AF_PACKET` socket bound to the
//!   peer's veth, addressed to the firewall interface's MAC, IP bytes unchanged.
//! - Observation: one `AF_PACKET` socket per peer (the same socket that sends there: the kernel never loops
//!   a socket's own frames back to it, so only what the firewall emits is seen), and one raw IP socket per
//!   protocol in the firewall namespace (a raw socket gets a copy of each datagram delivered locally, in
//!   `ip_local_deliver_finish`, i.e. after the INPUT hook accepted it and after defragmentation). One thread
//!   per socket drains it while the main thread sends; [`Observers::finish`] stops and joins them.
//! - IPv6 (when the plan has it): the firewall's own packets leave an `AF_INET6` `IPPROTO_RAW` socket, which
//!   sends the IPv6 header it is given as is (header included implicitly, `SO_MARK` [`MARK`]); link-local
//!   and multicast destinations are scoped to the interface the host model routes them out of. Peers send
//!   frames with ethertype 0x86DD (to the `33:33:...` group address for multicast destinations, as a real
//!   sender would). Local delivery is seen by one raw `AF_INET6` socket per upper-layer protocol, which gets
//!   the upper-layer bytes and the source address only ([`Observed::Delivered6`]).

use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sched::CloneFlags;
use pnet_datalink::{DataLinkReceiver, DataLinkSender};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use wire::{Record, Time};

use super::counters::MARK;
use super::netns::Topology;
use super::plan::{Plan, Step, Via};
use super::VerifyError;

const POLL: Duration = Duration::from_millis(20);
/// Largest frame read back (an IPv4 packet of 64 KiB plus the Ethernet header).
const FRAME_MAX: usize = 65_536 + 64;

/// Runs `f` on a thread that has entered network namespace `ns`.
pub fn in_netns<T: Send>(
    ns: &str,
    f: impl FnOnce() -> Result<T, VerifyError> + Send,
) -> Result<T, VerifyError> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = File::open(&path)
                .map_err(|e| VerifyError::Io { what: format!("opening {path}"), source: e })?;
            nix::sched::setns(&fd, CloneFlags::CLONE_NEWNET).map_err(|e| VerifyError::Io {
                what: format!("entering namespace {ns}"),
                source: std::io::Error::from(e),
            })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(VerifyError::Setup(format!("the thread working in namespace {ns} panicked"))))
    })
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VerifyError {
    let what = what.into();
    move |source| VerifyError::Io { what, source }
}

/// The sockets of one run.
pub struct Sockets {
    raw: Socket,
    raw6: Option<Socket>,
    peers: Vec<PeerTx>,
    /// Interface index of each plan interface in the firewall namespace (IPv6 scope ids).
    scopes: Vec<u32>,
}

/// A peer's sender, with its own and the firewall interface's MAC.
struct PeerTx {
    tx: Box<dyn DataLinkSender>,
    mac: [u8; 6],
    fw_mac: [u8; 6],
}

/// One packet seen coming out of the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// A whole IP packet: leaving by a peer, or an IPv4 packet delivered locally.
    Ip(Vec<u8>),
    /// An IPv6 packet delivered locally to the raw socket of `proto`: its source and upper-layer bytes.
    Delivered6 { src: Ipv6Addr, proto: u8, l4: Vec<u8> },
}

/// Opens the sending sockets and starts the observers.
pub fn open(
    topo: &Topology,
    plan: &Plan,
    stop: &Arc<AtomicBool>,
) -> Result<(Sockets, Observers), VerifyError> {
    let (raw, raw6, locals, locals6) = in_netns(&topo.fw, || {
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))
            .map_err(io_err("opening the raw injection socket"))?;
        raw.set_header_included_v4(true).map_err(io_err("IP_HDRINCL"))?;
        raw.set_mark(MARK).map_err(io_err("SO_MARK"))?;
        raw.set_broadcast(true).map_err(io_err("SO_BROADCAST"))?;
        let mut locals = Vec::new();
        for &p in &plan.local_protos {
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(i32::from(p))))
                .map_err(io_err(format!("opening a raw socket for protocol {p}")))?;
            s.set_read_timeout(Some(POLL)).map_err(io_err("SO_RCVTIMEO"))?;
            let _ = s.set_recv_buffer_size(8 << 20);
            locals.push(s);
        }
        let mut raw6 = None;
        let mut locals6 = Vec::new();
        if plan.ipv6 {
            // IPPROTO_RAW on AF_INET6 includes the header implicitly (inet6_create sets hdrincl).
            let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(255)))
                .map_err(io_err("opening the raw IPv6 injection socket"))?;
            s.set_mark(MARK).map_err(io_err("SO_MARK"))?;
            raw6 = Some(s);
            for &p in &plan.local_protos6 {
                let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(i32::from(p))))
                    .map_err(io_err(format!("opening a raw IPv6 socket for next header {p}")))?;
                s.set_read_timeout(Some(POLL)).map_err(io_err("SO_RCVTIMEO"))?;
                let _ = s.set_recv_buffer_size(8 << 20);
                locals6.push((p, s));
            }
        }
        Ok((raw, raw6, locals, locals6))
    })?;
    let mut observers = Observers { stop: Arc::clone(stop), threads: Vec::new() };
    for s in locals {
        let stop = Arc::clone(stop);
        observers.threads.push(std::thread::spawn(move || drain_raw(s, &stop)));
    }
    for (p, s) in locals6 {
        let stop = Arc::clone(stop);
        observers.threads.push(std::thread::spawn(move || drain_raw6(s, p, &stop)));
    }
    let scopes = if plan.ipv6 {
        let idx = topo.fw_ifindexes()?;
        plan.interfaces
            .iter()
            .map(|i| idx.iter().find(|(n, _)| *n == i.name).map_or(0, |(_, x)| *x))
            .collect()
    } else {
        Vec::new()
    };
    let mut peers = Vec::new();
    for p in &topo.peers {
        let dev = p.dev.clone();
        let (tx, rx) = in_netns(&p.ns, move || {
            let iface = pnet_datalink::interfaces()
                .into_iter()
                .find(|i| i.name == dev)
                .ok_or_else(|| VerifyError::Setup(format!("interface {dev} not found in its namespace")))?;
            let cfg = pnet_datalink::Config {
                read_buffer_size: FRAME_MAX,
                write_buffer_size: FRAME_MAX,
                read_timeout: Some(POLL),
                promiscuous: false,
                ..Default::default()
            };
            match pnet_datalink::channel(&iface, cfg).map_err(io_err(format!("AF_PACKET socket on {dev}")))? {
                pnet_datalink::Channel::Ethernet(tx, rx) => Ok((tx, rx)),
                _ => Err(VerifyError::Setup("unexpected AF_PACKET channel type".into())),
            }
        })?;
        let stop = Arc::clone(stop);
        observers.threads.push(std::thread::spawn(move || drain_link(rx, &stop)));
        peers.push(PeerTx { tx, mac: p.mac, fw_mac: p.fw_mac });
    }
    Ok((Sockets { raw, raw6, peers, scopes }, observers))
}

/// The Ethernet header a peer puts in front of `ip`: to the firewall's MAC, or for an IPv6 multicast
/// destination to its `33:33` group address (RFC 2464 section 7).
pub fn eth_header(ip: &[u8], peer_mac: [u8; 6], fw_mac: [u8; 6]) -> [u8; 14] {
    let v6 = ip.first().map(|b| b >> 4) == Some(6);
    let mut h = [0u8; 14];
    let mut dst = fw_mac;
    if v6 && ip.get(24) == Some(&0xff) {
        if let Some(g) = ip.get(36..40) {
            dst = [0x33, 0x33, g.first().copied().unwrap_or(0), g.get(1).copied().unwrap_or(0), 0, 0];
            if let (Some(a), Some(b)) = (g.get(2), g.get(3)) {
                dst[4] = *a;
                dst[5] = *b;
            }
        }
    }
    let ethertype: u16 = if v6 { 0x86dd } else { 0x0800 };
    for (d, s) in h.iter_mut().zip(dst.iter().chain(&peer_mac).chain(&ethertype.to_be_bytes())) {
        *d = *s;
    }
    h
}

fn keep_going(e: &std::io::Error, stop: &AtomicBool) -> bool {
    if stop.load(Ordering::SeqCst) {
        return false;
    }
    if !matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
    ) {
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

fn drain_raw(s: Socket, stop: &AtomicBool) -> Vec<Observed> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; FRAME_MAX];
    loop {
        match (&s).read(&mut buf) {
            Ok(n) => out.push(Observed::Ip(buf.get(..n).unwrap_or(&[]).to_vec())),
            Err(e) if keep_going(&e, stop) => {}
            Err(_) => return out,
        }
    }
}

/// A raw IPv6 socket: the sender is peeked (`MSG_PEEK`), then the datagram read.
fn drain_raw6(s: Socket, proto: u8, stop: &AtomicBool) -> Vec<Observed> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; FRAME_MAX];
    loop {
        let got = s.peek_sender().and_then(|from| Ok((from, (&s).read(&mut buf)?)));
        match got {
            Ok((from, n)) => {
                if let Some(a) = from.as_socket_ipv6() {
                    let l4 = buf.get(..n).unwrap_or(&[]).to_vec();
                    out.push(Observed::Delivered6 { src: *a.ip(), proto, l4 });
                }
            }
            Err(e) if keep_going(&e, stop) => {}
            Err(_) => return out,
        }
    }
}

fn drain_link(mut rx: Box<dyn DataLinkReceiver>, stop: &AtomicBool) -> Vec<Observed> {
    let mut out = Vec::new();
    loop {
        match rx.next() {
            Ok(frame) => {
                // IP frames only (the firewall sends no ARP or neighbour discovery: every neighbour is
                // permanent).
                if matches!(frame.get(12..14), Some([0x08, 0x00] | [0x86, 0xdd])) {
                    if let Some(ip) = frame.get(14..) {
                        out.push(Observed::Ip(ip.to_vec()));
                    }
                }
            }
            Err(e) if keep_going(&e, stop) => {}
            Err(_) => return out,
        }
    }
}

/// The observing threads. Dropping stops and joins them (so no socket outlives the run).
pub struct Observers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Observed>>>,
}

impl Observers {
    /// Stops the observers once their sockets are drained; every packet they saw.
    pub fn finish(mut self) -> Vec<Observed> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for t in self.threads.drain(..) {
            if let Ok(v) = t.join() {
                all.extend(v);
            }
        }
        all
    }
}

impl Drop for Observers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The wall clock (`CLOCK_REALTIME`) in ns since the epoch.
pub fn now() -> Time {
    Time(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    )
}

/// What the send loop did.
pub struct Sent {
    /// Actual send time of every record (also of those not sent: the moment their turn came).
    pub stamps: Vec<Time>,
    /// Records the kernel refused, with the error.
    pub errors: Vec<(usize, String)>,
}

/// Sends every step with the capture's gaps (each capped at `max_gap` when given). Checks `abort` between
/// packets and while waiting.
pub fn send_all(
    socks: &mut Sockets,
    plan: &Plan,
    records: &[Record],
    max_gap: Option<Duration>,
    abort: &AtomicBool,
) -> Result<Sent, VerifyError> {
    let mut stamps = Vec::with_capacity(records.len());
    let mut errors = Vec::new();
    let mut target = Instant::now() + Duration::from_millis(20);
    let mut prev: Option<Time> = None;
    let mut frame = Vec::with_capacity(FRAME_MAX);
    for (i, (r, step)) in records.iter().zip(&plan.steps).enumerate() {
        let gap = Duration::from_nanos(prev.map_or(0, |p| r.ts.0.saturating_sub(p.0)));
        prev = Some(r.ts);
        target += max_gap.map_or(gap, |m| gap.min(m));
        loop {
            if abort.load(Ordering::SeqCst) {
                return Err(VerifyError::Aborted);
            }
            let left = target.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        stamps.push(now());
        let Step::Send(s) = step else { continue };
        let res = match (s.via, s.dst) {
            (Via::Local, IpAddr::V4(dst)) => {
                socks.raw.send_to(&s.ip, &SockAddr::from(SocketAddrV4::new(dst, 0))).map(drop)
            }
            (Via::Local, IpAddr::V6(dst)) => match &socks.raw6 {
                Some(raw6) => {
                    let scope = s.out.and_then(|n| socks.scopes.get(n)).copied().unwrap_or(0);
                    raw6.send_to(&s.ip, &SockAddr::from(SocketAddrV6::new(dst, 0, 0, scope))).map(drop)
                }
                None => Err(std::io::Error::other("no raw IPv6 socket")),
            },
            (Via::Peer(n), _) => match socks.peers.get_mut(n) {
                Some(PeerTx { tx, mac, fw_mac }) => {
                    frame.clear();
                    frame.extend_from_slice(&eth_header(&s.ip, *mac, *fw_mac));
                    frame.extend_from_slice(&s.ip);
                    tx.send_to(&frame, None).unwrap_or(Ok(()))
                }
                None => Err(std::io::Error::other("no peer for this interface")),
            },
        };
        if let Err(e) = res {
            errors.push((i, e.to_string()));
        }
    }
    Ok(Sent { stamps, errors })
}

/// Reads `/proc/net/nf_conntrack` of namespace `ns` (through the reading thread's own view,
/// `/proc/thread-self/net`) and the moment it was read.
pub fn read_conntrack(ns: &str) -> Result<(Time, String), VerifyError> {
    in_netns(ns, || {
        let at = now();
        match std::fs::read_to_string("/proc/thread-self/net/nf_conntrack") {
            Ok(t) => Ok((at, t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((at, String::new())),
            Err(e) => Err(VerifyError::Io { what: "reading /proc/net/nf_conntrack".into(), source: e }),
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::verify::ip6::tests::{ip6, A};

    const PEER: [u8; 6] = [2, 0x73, 0x77, 0, 0, 1];
    const FW: [u8; 6] = [2, 0x73, 0x77, 0, 0, 2];

    #[test]
    fn ethernet_headers_per_family_and_destination() {
        let v4 = crate::verify::plan::tests::udp_ip([203, 0, 113, 80], [192, 0, 2, 10], 1, 2, b"", 1, 0);
        assert_eq!(eth_header(&v4, PEER, FW), [2, 0x73, 0x77, 0, 0, 2, 2, 0x73, 0x77, 0, 0, 1, 8, 0]);
        let uni = ip6(A, "2001:db8::10", 59, b"");
        assert_eq!(eth_header(&uni, PEER, FW)[..6], FW);
        assert_eq!(eth_header(&uni, PEER, FW)[12..], [0x86, 0xdd]);
        // Neighbour solicitation to the solicited-node group of 2001:db8::10.
        let ns = ip6(A, "ff02::1:ff00:10", 58, b"");
        assert_eq!(eth_header(&ns, PEER, FW)[..6], [0x33, 0x33, 0xff, 0, 0, 0x10]);
    }
}
