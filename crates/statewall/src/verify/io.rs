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

use std::fs::File;
use std::io::Read;
use std::net::SocketAddrV4;
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
    peers: Vec<(Box<dyn DataLinkSender>, Vec<u8>)>,
}

/// Opens the sending sockets and starts the observers.
pub fn open(
    topo: &Topology,
    plan: &Plan,
    stop: &Arc<AtomicBool>,
) -> Result<(Sockets, Observers), VerifyError> {
    let (raw, locals) = in_netns(&topo.fw, || {
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
        Ok((raw, locals))
    })?;
    let mut observers = Observers { stop: Arc::clone(stop), threads: Vec::new() };
    for s in locals {
        let stop = Arc::clone(stop);
        observers.threads.push(std::thread::spawn(move || drain_raw(s, &stop)));
    }
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
        let mut eth = Vec::with_capacity(14);
        eth.extend_from_slice(&p.fw_mac);
        eth.extend_from_slice(&p.mac);
        eth.extend_from_slice(&0x0800u16.to_be_bytes());
        peers.push((tx, eth));
    }
    Ok((Sockets { raw, peers }, observers))
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

fn drain_raw(s: Socket, stop: &AtomicBool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; FRAME_MAX];
    loop {
        match (&s).read(&mut buf) {
            Ok(n) => out.push(buf.get(..n).unwrap_or(&[]).to_vec()),
            Err(e) if keep_going(&e, stop) => {}
            Err(_) => return out,
        }
    }
}

fn drain_link(mut rx: Box<dyn DataLinkReceiver>, stop: &AtomicBool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match rx.next() {
            Ok(frame) => {
                // IPv4 frames only (the firewall sends no ARP: every neighbour is permanent).
                if frame.get(12..14) == Some(&[0x08, 0x00]) {
                    if let Some(ip) = frame.get(14..) {
                        out.push(ip.to_vec());
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
    threads: Vec<JoinHandle<Vec<Vec<u8>>>>,
}

impl Observers {
    /// Stops the observers once their sockets are drained; every IPv4 packet they saw.
    pub fn finish(mut self) -> Vec<Vec<u8>> {
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
        let res = match s.via {
            Via::Local => socks.raw.send_to(&s.ip, &SockAddr::from(SocketAddrV4::new(s.dst, 0))).map(drop),
            Via::Peer(n) => match socks.peers.get_mut(n) {
                Some((tx, eth)) => {
                    frame.clear();
                    frame.extend_from_slice(eth.as_slice());
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
