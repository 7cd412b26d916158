//! The "random" scenario: seed-driven mixes of ordinary and tricky traffic for kernel-agreement
//! testing (the capture is replayed through real netfilter and through statewall, and the verdicts
//! and conntrack tables compared).
//!
//! Contract: 100-400 frames, all checksums valid, timestamps sorted, byte-identical per seed;
//! every episode is a causally timed exchange between one *inside* endpoint and its peers, and
//! every TCP conversation that is not broken on purpose passes the flow checker (contiguous
//! sequence numbers, ACKs of sent data only, data within the advertised window).
//!
//! # Topology and the two host models it is meant for
//! Our host is 192.0.2.10 on its WAN side (gateway 192.0.2.1; remote hosts in 198.51.100.0/24 and
//! 203.0.113.0/24 behind it) and, when it is a router, 10.1.0.1/24 on lan0 with LAN hosts
//! 10.1.0.2-10.1.0.50 behind it. Each episode picks its inside endpoint ([`Mode`]):
//! * ~40 %: our host itself at 192.0.2.10 ↔ remote hosts (INPUT/OUTPUT);
//! * ~50 %: a LAN host ↔ remote hosts, *through* our host (FORWARD) — every episode kind below can
//!   run this way, including ICMP errors from remote routers to the LAN host quoting its packet;
//! * ~10 %: our lan0 address 10.1.0.1 ↔ LAN hosts (INPUT/OUTPUT on the LAN side).
//!
//! The captures are meant to be verified with (a) a one-interface host, `--local 192.0.2.10/24`
//! (eth0, forwarding off: the LAN traffic then exercises the not-forwarding path), and (b) a
//! router: wan0 = 192.0.2.10/24, lan0 = 10.1.0.1/24, default route via wan0, `forwarding = true`
//! (`examples/router/host.toml`).
//!
//! A forwarded packet appears once, as seen on the wire on the side its source lives on (the
//! verifier injects it there): a LAN host's frame goes from its MAC (02:00:00:01:00:xx) to our
//! lan0 (02:00:00:00:01:01) and carries the TTL the LAN host sent (64, or 128 for Windows); a
//! remote frame comes from the gateway to our eth0/wan0 MAC with the TTL it arrives with, also
//! when it is addressed to a LAN host. Frames our host sends (from 192.0.2.10 or 10.1.0.1) are
//! captured unpadded with TTL 64, all others padded to 60 bytes. Capture times are the times at
//! our host: LAN hosts are next to the capture point (their stacks react within the usual stack
//! delays), remote hosts one RTT away; LAN hosts seen from 10.1.0.1 are 0.15-2 ms away.
//!
//! # Episodes
//! Chosen with fixed weights per seed, overlapping in time: ordinary TCP dialogs (FIN or RST
//! close, sometimes with path-MTU discovery: a fragmentation-needed from a remote router and the
//! data re-sent in smaller segments); spurious retransmission with D-SACK; inbound loss
//! (a segment missing from the capture, duplicate ACKs with SACK, retransmission); reordering;
//! zero window with probes and a window update; out-of-window data answered by a duplicate ACK;
//! RSTs exact / in-window (answered by a challenge ACK, RFC 5961) / out of window / below the
//! last ACK; a SYN on an established tuple (challenge ACK, RST, new connection on the same tuple);
//! simultaneous open; mid-stream pickup (handshake not captured); FIN variants (FIN with data,
//! simultaneous close, half-close with data after the FIN, retransmitted FIN); UDP
//! request/response and unreplied streams; ICMP echo matching, unmatched reply, and reply with
//! another id; ICMP errors quoting existing flows (port unreachable, time exceeded from a router
//! for a TTL-limited probe, host unreachable for a SYN — administratively prohibited from the
//! LAN host itself when there is no router in between), unknown flows, and forged quotes (foreign
//! inner source — another LAN host for LAN endpoints — or quoting a packet we received, or
//! quoting another endpoint's packet); GRE (47) and ESP (50) in both directions.

use crate::packet::{flags, in_lan, raw_ip_frame, udp_frame, FrameId, Ip4, Trace, FW_LAN_IP, OUR_IP};
use crate::rng::Rng;
use crate::tcp::{AckLast, CloseStyle, Conn, Custom, EndCfg, Os, Side, MS, US};
use crate::world::{
    echo, icmp_error, icmp_error_raw, remote_pool, run_dialog, udp, Quote, Remote, Step, UdpEnd,
};
use crate::SynthError;
use etherparse::{icmpv4::DestUnreachableHeader, icmpv4::TimeExceededCode, Icmpv4Type};
use wire::Time;

/// Which inside endpoint an episode uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Our host at 192.0.2.10 ↔ remote hosts.
    Fw,
    /// A LAN host ↔ remote hosts, forwarded by our host.
    Lan,
    /// Our lan0 address 10.1.0.1 ↔ LAN hosts.
    LanFw,
}

/// The inside endpoint of the current episode (the end at or next to the capture point).
#[derive(Debug, Clone)]
pub(crate) struct Me {
    pub ip: [u8; 4],
    pub ttl: u8,
    pub os: Os,
    /// IP id counter for datagrams outside TCP connections (non-Linux stacks).
    pub ip_id: u16,
    pub mss: u16,
}

impl Me {
    fn ours(ip: [u8; 4], mss: u16) -> Me {
        Me { ip, ttl: 64, os: Os::Linux, ip_id: 0, mss }
    }

    pub(crate) fn end(&self, port: u16) -> EndCfg {
        EndCfg { ip: self.ip, port, ttl: self.ttl, os: self.os, mss: self.mss, local: true }
    }

    /// IP id of a DF datagram from an unconnected UDP socket: 0 on Linux (`ip_select_ident`),
    /// a global counter elsewhere.
    pub(crate) fn udp_id(&mut self) -> u16 {
        if self.os == Os::Linux {
            return 0;
        }
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }
}

/// A LAN host as seen from our host: initial TTL (no hop in between), sub-millisecond to 2 ms RTT.
fn lan_host(rng: &mut Rng, ip: [u8; 4]) -> Remote {
    let mut h = Remote::new(rng, ip);
    h.ttl = if h.os == Os::Windows { 128 } else { 64 };
    h.rtt = rng.range(150, 2_000) * US;
    h
}

/// `n` distinct LAN hosts from 10.1.0.2-10.1.0.50.
fn lan_pool(rng: &mut Rng, n: usize) -> Vec<Remote> {
    let mut ips: Vec<[u8; 4]> = (2u8..=50).map(|l| [10, 1, 0, l]).collect();
    rng.shuffle(&mut ips);
    ips.into_iter().take(n).map(|ip| lan_host(rng, ip)).collect()
}

/// A TCP 4-tuple (initiator first).
pub(crate) type Tuple = (([u8; 4], u16), ([u8; 4], u16));

/// What one episode was (for tests and diagnostics).
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Episode {
    pub kind: &'static str,
    pub mode: Mode,
    pub inside: [u8; 4],
    /// TCP connections the episode opened.
    pub tcp: Vec<Tuple>,
}

pub(crate) struct Cx {
    pub tr: Trace,
    pub hosts: Vec<Remote>,
    pub lan: Vec<Remote>,
    pub ports: Vec<u16>,
    /// Datagrams inside endpoints sent that ICMP errors may quote.
    pub ours: Vec<FrameId>,
    /// Datagrams inside endpoints received (for forged quotes).
    pub theirs: Vec<FrameId>,
    pub mode: Mode,
    pub me: Me,
    pub log: Vec<Episode>,
    /// Link MSS of every TCP end (1460 for IPv4 and 1440 for IPv6 on a 1500-byte MTU).
    pub mss: u16,
    /// Extension header bytes on the inside endpoint's and its peers' packets (IPv6 episodes).
    pub ext: (u32, u32),
}

impl Cx {
    /// A peer of the current inside endpoint: a remote host, or a LAN host for [`Mode::LanFw`].
    pub(crate) fn host(&mut self, rng: &mut Rng) -> Remote {
        let pool = if self.mode == Mode::LanFw { &self.lan } else { &self.hosts };
        let i = rng.range_usize(0, pool.len().saturating_sub(1));
        pool.get(i).cloned().unwrap_or_else(|| Remote::new(rng, [198, 51, 100, 99]))
    }

    pub(crate) fn port(&mut self, rng: &mut Rng) -> u16 {
        loop {
            let p = rng.range_u16(32768, 60999);
            if !self.ports.contains(&p) {
                self.ports.push(p);
                return p;
            }
        }
    }

    /// Records a TCP connection of the current episode.
    pub(crate) fn note(&mut self, c: &Conn) {
        let tuple = ((c.a.cfg.ip, c.a.cfg.port), (c.b.cfg.ip, c.b.cfg.port));
        if let Some(e) = self.log.last_mut() {
            e.tcp.push(tuple);
        }
    }

    /// A connection with the inside endpoint on a random side: server on 33333 / 22 / 443, or
    /// client.
    pub(crate) fn conn(&mut self, rng: &mut Rng) -> Conn {
        let h = self.host(rng);
        let mss = if rng.chance(80) { self.mss } else { self.mss - 60 };
        let remote = |port| EndCfg { ip: h.ip, port, ttl: h.ttl, os: h.os, mss, local: false };
        let me = self.me.clone();
        let lp = self.port(rng);
        let c = if rng.chance(50) {
            let sp = *rng.pick(&[33333u16, 22, 443]).unwrap_or(&33333);
            let rp = rng.range_u16(1024, 65535);
            Conn::new(remote(rp), me.end(sp), h.rtt, rng)
        } else {
            let dp = *rng.pick(&[33333u16, 443, 80, 6881]).unwrap_or(&443);
            Conn::new(me.end(lp), remote(dp), h.rtt, rng)
        };
        let mut c = c;
        c.v6 = self.tr.is_v6();
        c.ext_len = if c.a.cfg.local { self.ext } else { (self.ext.1, self.ext.0) };
        self.note(&c);
        c
    }

    /// Starts an episode: `roll` (0-99) picks the inside endpoint, ~40 % our host, ~50 % a LAN
    /// host, ~10 % our lan0 address.
    fn enter(&mut self, kind: &'static str, roll: u64, rng: &mut Rng) {
        let (mode, me) = match roll {
            0..=39 => (Mode::Fw, Me::ours(OUR_IP, self.mss)),
            40..=89 => {
                let i = rng.range_usize(0, self.lan.len().saturating_sub(1));
                let h = self.lan.get(i).cloned().unwrap_or_else(|| lan_host(rng, [10, 1, 0, 2]));
                (Mode::Lan, Me { ip: h.ip, ttl: h.ttl, os: h.os, ip_id: h.ip_id, mss: self.mss })
            }
            _ => (Mode::LanFw, Me::ours(FW_LAN_IP, self.mss)),
        };
        self.log.push(Episode { kind, mode, inside: me.ip, tcp: Vec::new() });
        self.mode = mode;
        self.me = me;
    }
}

pub(crate) type EpisodeFn = fn(&mut Cx, &mut Rng, Time) -> Result<(), SynthError>;

/// Episode kinds with their weights (out of 100).
pub(crate) const KINDS: &[(u64, &str, EpisodeFn)] = &[
    (12, "tcp_plain", tcp_plain),
    (5, "tcp_retrans", tcp_retrans),
    (5, "tcp_loss_or_reorder", tcp_loss_or_reorder),
    (4, "tcp_zero_window", tcp_zero_window),
    (4, "tcp_out_of_window", tcp_out_of_window),
    (7, "tcp_rst", tcp_rst),
    (4, "tcp_syn_on_established", tcp_syn_on_established),
    (4, "tcp_simultaneous_open", tcp_simultaneous_open),
    (4, "tcp_midstream", tcp_midstream),
    (8, "tcp_fin_variant", tcp_fin_variant),
    (10, "udp", udp_episode),
    (8, "icmp_echo", icmp_echo_episode),
    (12, "icmp_error", icmp_error_episode),
    (13, "other_proto", other_proto),
];

/// Generates the random scenario.
pub(crate) fn generate(seed: u64, start: Time) -> Result<Vec<crate::Frame>, SynthError> {
    Ok(generate_logged(seed, start)?.0)
}

/// Generates the random scenario and the list of its episodes.
pub(crate) fn generate_logged(
    seed: u64,
    start: Time,
) -> Result<(Vec<crate::Frame>, Vec<Episode>), SynthError> {
    run(Rng::new(seed ^ 0x0a4d_0000_0000_0000), start, KINDS, Trace::new(), 1460)
}

/// The episode driver shared by "random", "random6" and "random-mix": draws the host pools, a
/// frame target of 100-330, then episodes (kind by weight out of the table's total, inside
/// endpoint, start time) until the target is reached. For `KINDS` (total 100) the draws are
/// exactly those the "random" scenario has always made.
pub(crate) fn run(
    mut rng: Rng,
    start: Time,
    kinds: &[(u64, &'static str, EpisodeFn)],
    tr: Trace,
    mss: u16,
) -> Result<(Vec<crate::Frame>, Vec<Episode>), SynthError> {
    let total: u64 = kinds.iter().map(|k| k.0).sum();
    let hosts = remote_pool(&mut rng, 24, &[]);
    let lan = lan_pool(&mut rng, 8);
    let mut cx = Cx {
        tr,
        hosts,
        lan,
        ports: Vec::new(),
        ours: Vec::new(),
        theirs: Vec::new(),
        mode: Mode::Fw,
        me: Me::ours(OUR_IP, mss),
        log: Vec::new(),
        mss,
        ext: (0, 0),
    };
    let target = rng.range_usize(100, 330);
    let mut t = Time(start.as_nanos() / US * US);
    while cx.tr.len() < target {
        let mut r = rng.fork(cx.tr.len() as u64);
        let mut roll = rng.range(0, total.saturating_sub(1));
        let mut chosen = None;
        for (w, name, f) in kinds {
            if roll < *w {
                chosen = Some((*name, *f));
                break;
            }
            roll -= w;
        }
        let (name, f) = chosen.ok_or(SynthError::Internal("episode weights"))?;
        let who = rng.range(0, 99);
        cx.enter(name, who, &mut r);
        f(&mut cx, &mut r, t)?;
        t = t.add_nanos(rng.range(2, 250) * MS);
    }
    Ok((cx.tr.finish_checked()?, cx.log))
}

pub(crate) fn msg(rng: &mut Rng, from: Side, lo: usize, hi: usize) -> Step {
    let n = rng.range_usize(lo, hi);
    Step::Msg {
        from,
        data: rng.bytes(n),
        think_us: if rng.chance(60) { rng.range(100, 20_000) } else { rng.range(50_000, 500_000) },
    }
}

pub(crate) fn tcp_plain(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut c = cx.conn(rng);
    let mut steps = Vec::new();
    if cx.mode != Mode::LanFw && rng.chance(20) {
        // Path-MTU discovery (RFC 1191): the inside end's first write is one full-sized DF
        // segment that a remote router refuses with a fragmentation-needed.
        let n = c.mss_after_handshake(c.local_side()) as usize;
        steps.push(Step::Pmtu {
            data: rng.bytes(n),
            think_us: rng.range(100, 5_000),
            router: [203, 0, 113, 1],
            router_ttl: 250,
            router_ip_id: rng.next_u16(),
            mtu: if rng.chance(50) { 1280 } else { 1400 },
        });
    }
    for k in 0..rng.range(1, 4) {
        let from = if k % 2 == 0 { Side::A } else { Side::B };
        steps.push(msg(rng, from, 1, 6_000));
    }
    let first = if rng.chance(50) { Side::A } else { Side::B };
    if rng.chance(15) {
        steps.push(Step::Abort { from: first, think_us: rng.range(50_000, 300_000) });
    } else {
        let style = if rng.chance(50) {
            CloseStyle::Combined
        } else {
            CloseStyle::Separate { think_us: rng.range(100, 50_000) }
        };
        steps.push(Step::Close { first, style, think_us: rng.range(1_000, 300_000) });
    }
    run_dialog(&mut cx.tr, &mut c, t, &steps)?;
    Ok(())
}

/// Opens `c` and exchanges one request/response; returns the time after the response was ACKed.
pub(crate) fn established(cx: &mut Cx, rng: &mut Rng, c: &mut Conn, t: Time) -> Result<Time, SynthError> {
    let t3 = c.open(&mut cx.tr, t)?;
    let n = rng.range_usize(1, 1_200);
    let req = rng.bytes(n);
    let (d, _) = c.transfer(&mut cx.tr, t3, Side::A, &req, AckLast::Piggyback)?;
    let think = c.stack_delay() + rng.range(100, 5_000) * US;
    let t2 = c.react(d, Side::A, Side::B, think);
    let n = rng.range_usize(1, 3_000);
    let resp = rng.bytes(n);
    let (_, a) = c.transfer(&mut cx.tr, t2, Side::B, &resp, AckLast::Now)?;
    Ok(a)
}

/// Closes with FINs from `first` after the last packet at `t` (by `last_from`).
pub(crate) fn finish(
    cx: &mut Cx,
    rng: &mut Rng,
    c: &mut Conn,
    t: Time,
    last_from: Side,
) -> Result<Time, SynthError> {
    let first = if rng.chance(50) { Side::A } else { Side::B };
    let think = rng.range(1_000, 100_000) * US;
    let tc = c.react(t, last_from, first, think);
    c.close(&mut cx.tr, tc, first, CloseStyle::Combined)
}

fn rto(c: &Conn) -> u64 {
    (c.rtt * 3).max(200 * MS)
}

/// A data segment whose ACK is lost: the sender retransmits it after the RTO and the receiver
/// answers with a duplicate ACK carrying a D-SACK block (RFC 2883).
pub(crate) fn tcp_retrans(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut c = cx.conn(rng);
    let t0 = established(cx, rng, &mut c, t)?;
    let s = if rng.chance(50) { Side::A } else { Side::B };
    let r = s.other();
    let ts = c.react(t0, r, s, rng.range(1_000, 50_000) * US);
    let n = rng.range_usize(1, 1_000);
    let data = rng.bytes(n);
    let first = c.send(&mut cx.tr, ts, s, flags::ACK | flags::PSH, &data)?;
    // The receiver's ACK is lost on the path; it is captured only when we sent it.
    if c.end(r).cfg.local {
        let ta = c.react(ts, s, r, c.rtt / 10 + 40 * MS);
        c.send_with(
            &mut cx.tr,
            ta,
            r,
            Custom { flags: flags::ACK, deliver: false, advance: true, ..Custom::default() },
        )?;
    }
    let tr_t = ts.add_nanos(rto(&c));
    let again = c.send_with(
        &mut cx.tr,
        tr_t,
        s,
        Custom {
            flags: flags::ACK | flags::PSH,
            payload: data,
            seq: Some(first.seq),
            deliver: false,
            advance: false,
            ..Custom::default()
        },
    )?;
    let sack = if c.sack_ok { vec![(first.seq, first.end)] } else { Vec::new() };
    let d = c.stack_delay();
    let ta = c.react(again.t, s, r, d);
    c.send_with(
        &mut cx.tr,
        ta,
        r,
        Custom { flags: flags::ACK, sack, deliver: true, advance: true, ..Custom::default() },
    )?;
    finish(cx, rng, &mut c, ta, r)?;
    Ok(())
}

/// Three segments from the remote end: the first is lost before our capture (loss) or arrives
/// after the second (reordering); we send duplicate ACKs with SACK, then a cumulative ACK.
pub(crate) fn tcp_loss_or_reorder(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut c = cx.conn(rng);
    let t0 = established(cx, rng, &mut c, t)?;
    let local = c.local_side();
    let remote = local.other();
    let mss = c.end(remote).send_mss.max(1) as usize;
    let ts = c.react(t0, local, remote, rng.range(1_000, 30_000) * US);
    let reorder = rng.chance(50);
    let mut segs = Vec::new();
    let mut tt = ts;
    for _ in 0..3 {
        let data = rng.bytes(mss);
        let s = c.send_with(
            &mut cx.tr,
            tt,
            remote,
            Custom {
                flags: flags::ACK,
                payload: data.clone(),
                deliver: false,
                advance: true,
                ..Custom::default()
            },
        )?;
        segs.push((s, data));
        tt = tt.add_nanos(300 * US);
    }
    let [(s1, d1), (s2, _), (s3, _)] = segs.as_slice() else {
        return Err(SynthError::Internal("segments"));
    };
    let t_first = if reorder {
        // Segment 1 overtaken by 2 and 3.
        let late = s3.t.add_nanos(200 * US);
        cx.tr.retime(s1.id, late);
        late
    } else {
        cx.tr.remove(s1.id);
        Time::ZERO
    };
    // Duplicate ACKs for 2 and 3 (our rcv_nxt is still s1.seq).
    for (i, s) in [s2, s3].iter().enumerate() {
        let sack = if c.sack_ok { vec![(s2.seq, s.end)] } else { Vec::new() };
        let d = c.stack_delay();
        c.send_with(
            &mut cx.tr,
            s.t.add_nanos(d + i as u64),
            local,
            Custom { flags: flags::ACK, sack, deliver: true, advance: true, ..Custom::default() },
        )?;
    }
    let t_fill = if reorder {
        t_first
    } else {
        // Fast retransmit after the duplicate ACKs reach the sender.
        let tr_t = s3.t.add_nanos(c.rtt + 100 * US);
        c.send_with(
            &mut cx.tr,
            tr_t,
            remote,
            Custom {
                flags: flags::ACK,
                payload: d1.clone(),
                seq: Some(s1.seq),
                deliver: false,
                advance: false,
                ..Custom::default()
            },
        )?;
        tr_t
    };
    c.end_mut(local).rcv_nxt = s3.end;
    let d = c.stack_delay();
    let ta = t_fill.add_nanos(d);
    c.send(&mut cx.tr, ta, local, flags::ACK, &[])?;
    finish(cx, rng, &mut c, ta, local)?;
    Ok(())
}

/// The remote receiver closes its window; we probe (RFC 9293 §3.8.6.1), it re-opens.
pub(crate) fn tcp_zero_window(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut c = cx.conn(rng);
    let t0 = established(cx, rng, &mut c, t)?;
    let local = c.local_side();
    let remote = local.other();
    let ts = c.react(t0, remote, local, rng.range(1_000, 20_000) * US);
    let n = rng.range_usize(500, 6_000);
    let data = rng.bytes(n);
    let (_, ta) = c.transfer(&mut cx.tr, ts, local, &data, AckLast::Now)?;
    // Zero-window ACK from the remote (application stopped reading).
    let tz = ta.add_nanos(rng.range(1, 30) * MS);
    c.send_with(
        &mut cx.tr,
        tz,
        remote,
        Custom { flags: flags::ACK, win: Some(0), deliver: true, advance: true, ..Custom::default() },
    )?;
    let mut tp = tz;
    let mut backoff = rto(&c);
    for _ in 0..rng.range(1, 3) {
        tp = tp.add_nanos(backoff);
        backoff *= 2;
        // Window probe: one byte below snd_una, no data (Linux tcp_xmit_probe_skb).
        let una = c.end(local).snd_nxt;
        c.send_with(
            &mut cx.tr,
            tp,
            local,
            Custom {
                flags: flags::ACK,
                seq: Some(una.wrapping_sub(1)),
                deliver: false,
                advance: false,
                ..Custom::default()
            },
        )?;
        let d = c.stack_delay();
        tp = c.react(tp, local, remote, d);
        c.send_with(
            &mut cx.tr,
            tp,
            remote,
            Custom { flags: flags::ACK, win: Some(0), deliver: true, advance: true, ..Custom::default() },
        )?;
    }
    // Window update.
    let tu = tp.add_nanos(rng.range(20, 400) * MS);
    c.send(&mut cx.tr, tu, remote, flags::ACK, &[])?;
    let n = rng.range_usize(1, 3_000);
    let data = rng.bytes(n);
    let d = c.stack_delay();
    let (_, ta) = c.transfer(&mut cx.tr, c.react(tu, remote, local, d), local, &data, AckLast::Now)?;
    finish(cx, rng, &mut c, ta, remote)?;
    Ok(())
}

/// The remote end sends a segment far beyond our window; we answer with a duplicate ACK.
pub(crate) fn tcp_out_of_window(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut c = cx.conn(rng);
    let t0 = established(cx, rng, &mut c, t)?;
    let local = c.local_side();
    let remote = local.other();
    let ts = c.react(t0, local, remote, rng.range(1_000, 50_000) * US);
    let off = rng.range_u32(200_000, 50_000_000);
    let n = rng.range_usize(1, 1_000);
    let seq = c.end(remote).snd_nxt.wrapping_add(off);
    c.send_with(
        &mut cx.tr,
        ts,
        remote,
        Custom {
            flags: flags::ACK | flags::PSH,
            payload: rng.bytes(n),
            seq: Some(seq),
            deliver: false,
            advance: false,
            ..Custom::default()
        },
    )?;
    let ta = ts.add_nanos(c.stack_delay());
    c.send(&mut cx.tr, ta, local, flags::ACK, &[])?;
    finish(cx, rng, &mut c, ta, local)?;
    Ok(())
}

/// RSTs with exact, in-window, out-of-window and below-ACK sequence numbers.
pub(crate) fn tcp_rst(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut c = cx.conn(rng);
    let t0 = established(cx, rng, &mut c, t)?;
    let from = if rng.chance(70) { c.local_side().other() } else { c.local_side() };
    let nxt = c.end(from).snd_nxt;
    // Our Linux stack only ever sends exact RSTs; the odd ones come from the remote side.
    let variant = if from == c.local_side() { 0 } else { rng.range(0, 3) };
    let seq = match variant {
        0 => nxt,
        1 => nxt.wrapping_add(rng.range_u32(1, 20_000)),
        2 => nxt.wrapping_add(rng.range_u32(5_000_000, 1_000_000_000)),
        _ => nxt.wrapping_sub(rng.range_u32(1, 5_000)),
    };
    let with_ack = rng.chance(60);
    let tr_t = t0.add_nanos(rng.range(1, 500) * MS);
    let rst = c.send_with(
        &mut cx.tr,
        tr_t,
        from,
        Custom {
            flags: if with_ack { flags::RST | flags::ACK } else { flags::RST },
            seq: Some(seq),
            win: Some(0),
            deliver: false,
            advance: false,
            ..Custom::default()
        },
    )?;
    if variant == 0 {
        return Ok(());
    }
    let local = c.local_side();
    let mut last = rst.t;
    if variant == 1 && from != local {
        // RFC 5961 §3.2: challenge ACK for an in-window RST that is not exact.
        last = rst.t.add_nanos(c.stack_delay());
        c.send(&mut cx.tr, last, local, flags::ACK, &[])?;
    }
    finish(cx, rng, &mut c, last, from)?;
    Ok(())
}

/// A rebooted peer sends a fresh SYN on our established tuple: challenge ACK, RST from the peer
/// with the acknowledged sequence number, then its SYN again opens a new connection.
pub(crate) fn tcp_syn_on_established(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut c = cx.conn(rng);
    let t0 = established(cx, rng, &mut c, t)?;
    let local = c.local_side();
    let remote = local.other();
    let new_isn = rng.next_u32();
    let ts = t0.add_nanos(rng.range(100, 2_000) * MS);
    let syn_custom = |seq| Custom {
        flags: flags::SYN,
        seq: Some(seq),
        deliver: false,
        advance: false,
        ..Custom::default()
    };
    c.send_with(&mut cx.tr, ts, remote, syn_custom(new_isn))?;
    let tc = ts.add_nanos(c.stack_delay());
    c.send(&mut cx.tr, tc, local, flags::ACK, &[])?;
    // The peer has no such connection: RST with seq = the ACK it received (RFC 9293 §3.10.7.1).
    let ack_value = c.end(local).rcv_nxt;
    let tr_t = c.react(tc, local, remote, 50 * US);
    c.send_with(
        &mut cx.tr,
        tr_t,
        remote,
        Custom {
            flags: flags::RST,
            seq: Some(ack_value),
            win: Some(0),
            deliver: false,
            advance: false,
            ..Custom::default()
        },
    )?;
    // The peer's SYN retransmission one second later opens a new connection on the same tuple
    // (only when the peer is the client; a stray SYN towards our client port just dies).
    let mut c2 = Conn::new(c.a.cfg, c.b.cfg, c.rtt, rng);
    c2.v6 = c.v6;
    let t1 = ts.add_nanos(1_000 * MS);
    let steps = [
        msg(rng, Side::A, 1, 800),
        msg(rng, Side::B, 1, 800),
        Step::Close { first: Side::A, style: CloseStyle::Combined, think_us: 5_000 },
    ];
    if remote == Side::A {
        c2.a.isn = new_isn;
        c2.a.snd_nxt = new_isn;
        c2.a.peer_edge = new_isn;
        run_dialog(&mut cx.tr, &mut c2, t1, &steps)?;
    }
    Ok(())
}

/// Both ends send SYNs that cross (RFC 9293 §3.5 figure 8), then SYN/ACKs, then data.
pub(crate) fn tcp_simultaneous_open(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let h = cx.host(rng);
    let port = 33333;
    let rport = rng.range_u16(1024, 65535);
    let mut c = Conn::new(
        cx.me.end(port),
        EndCfg { ip: h.ip, port: rport, ttl: h.ttl, os: Os::Linux, mss: cx.mss, local: false },
        h.rtt,
        rng,
    );
    c.v6 = cx.tr.is_v6();
    cx.note(&c);
    // Our SYN leaves; the peer's SYN (sent before ours reached it) arrives a bit later.
    let a_syn = c.send_with(
        &mut cx.tr,
        t,
        Side::A,
        Custom { flags: flags::SYN, deliver: false, advance: true, ..Custom::default() },
    )?;
    c.negotiate();
    let tb = t.add_nanos(rng.range(1, c.rtt / US / 2) * US);
    c.send(&mut cx.tr, tb, Side::B, flags::SYN, &[])?;
    c.b.rcv_nxt = a_syn.end;
    // Our SYN/ACK answers the peer's SYN (same ISN); the peer's SYN/ACK crosses it.
    let tsa = tb.add_nanos(c.stack_delay());
    let synack = |seq| Custom {
        flags: flags::SYN | flags::ACK,
        seq: Some(seq),
        deliver: true,
        advance: false,
        ..Custom::default()
    };
    let a_isn = c.a.isn;
    let b_isn = c.b.isn;
    c.send_with(&mut cx.tr, tsa, Side::A, synack(a_isn))?;
    let tsb = t.add_nanos(c.rtt).max(tsa.add_nanos(US));
    c.send_with(&mut cx.tr, tsb, Side::B, synack(b_isn))?;
    let steps_t = tsb.add_nanos(c.stack_delay());
    let n = rng.range_usize(1, 1_000);
    let (d, _) = c.transfer(&mut cx.tr, steps_t, Side::A, &rng.bytes(n), AckLast::Piggyback)?;
    let n = rng.range_usize(1, 2_000);
    let tr2 = c.react(d, Side::A, Side::B, 2 * MS);
    let (_, a) = c.transfer(&mut cx.tr, tr2, Side::B, &rng.bytes(n), AckLast::Now)?;
    finish(cx, rng, &mut c, a, Side::A)?;
    Ok(())
}

/// An ordinary dialog whose handshake happened before the capture started.
pub(crate) fn tcp_midstream(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut c = cx.conn(rng);
    let first = cx.tr.len();
    let steps = [
        msg(rng, Side::A, 1, 3_000),
        msg(rng, Side::B, 1, 8_000),
        Step::Close {
            first: if rng.chance(50) { Side::A } else { Side::B },
            style: CloseStyle::Combined,
            think_us: rng.range(1_000, 100_000),
        },
    ];
    run_dialog(&mut cx.tr, &mut c, t, &steps)?;
    // Drop the handshake, and sometimes the first data packets too.
    let drop = 3 + rng.range_usize(0, 2);
    for i in first..first + drop {
        let id = cx.tr.id_at(i);
        cx.tr.remove(id);
    }
    Ok(())
}

pub(crate) fn tcp_fin_variant(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut c = cx.conn(rng);
    let t0 = established(cx, rng, &mut c, t)?;
    let a = if rng.chance(50) { Side::A } else { Side::B };
    let b = a.other();
    let ts = c.react(t0, b, a, rng.range(1, 200) * MS);
    match rng.range(0, 3) {
        0 => {
            // FIN carried by the last data segment.
            let n = rng.range_usize(1, 800);
            let s = c.send(&mut cx.tr, ts, a, flags::FIN | flags::ACK | flags::PSH, &rng.bytes(n))?;
            let d = c.stack_delay();
            let t2 = c.react(s.t, a, b, d);
            c.send(&mut cx.tr, t2, b, flags::FIN | flags::ACK, &[])?;
            let d = c.stack_delay();
            c.send(&mut cx.tr, c.react(t2, b, a, d), a, flags::ACK, &[])?;
        }
        1 => {
            // Simultaneous close: both FINs cross.
            let local = c.local_side();
            let remote = local.other();
            let fl = c.send_with(
                &mut cx.tr,
                ts,
                local,
                Custom { flags: flags::FIN | flags::ACK, deliver: false, advance: true, ..Custom::default() },
            )?;
            let tr_t = ts.add_nanos(rng.range(1, c.rtt / US / 2) * US);
            c.send(&mut cx.tr, tr_t, remote, flags::FIN | flags::ACK, &[])?;
            c.end_mut(remote).rcv_nxt = fl.end;
            let d = c.stack_delay();
            c.send(&mut cx.tr, tr_t.add_nanos(d), local, flags::ACK, &[])?;
            let tb = ts.add_nanos(c.rtt).max(tr_t.add_nanos(200 * US));
            c.send(&mut cx.tr, tb, remote, flags::ACK, &[])?;
        }
        2 => {
            // Half-close: `a` shuts down writing, `b` keeps sending, then closes.
            c.send(&mut cx.tr, ts, a, flags::FIN | flags::ACK, &[])?;
            let d = c.stack_delay();
            let t2 = c.react(ts, a, b, d);
            c.send(&mut cx.tr, t2, b, flags::ACK, &[])?;
            let n = rng.range_usize(1, 6_000);
            let (_, ta) = c.transfer(&mut cx.tr, t2.add_nanos(MS), b, &rng.bytes(n), AckLast::Now)?;
            let t3 = c.react(ta, a, b, rng.range(1, 50) * MS);
            c.send(&mut cx.tr, t3, b, flags::FIN | flags::ACK, &[])?;
            let d = c.stack_delay();
            c.send(&mut cx.tr, c.react(t3, b, a, d), a, flags::ACK, &[])?;
        }
        _ => {
            // The FIN is retransmitted (its ACK was lost), then the close completes.
            let f = c.send(&mut cx.tr, ts, a, flags::FIN | flags::ACK, &[])?;
            let tr_t = ts.add_nanos(rto(&c));
            c.send_with(
                &mut cx.tr,
                tr_t,
                a,
                Custom {
                    flags: flags::FIN | flags::ACK,
                    seq: Some(f.seq),
                    deliver: false,
                    advance: false,
                    ..Custom::default()
                },
            )?;
            c.close_reply(&mut cx.tr, tr_t, a)?;
        }
    }
    Ok(())
}

pub(crate) fn udp_episode(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut h = cx.host(rng);
    let me = UdpEnd { ip: cx.me.ip, port: if rng.chance(50) { 33333 } else { cx.port(rng) } };
    let peer = UdpEnd { ip: h.ip, port: rng.range_u16(1024, 65535) };
    let outbound = rng.chance(50);
    let (src, dst) = if outbound { (me, peer) } else { (peer, me) };
    let mut tt = t;
    if rng.chance(60) {
        // Request/response, possibly repeated.
        for _ in 0..rng.range(1, 3) {
            let n = rng.range_usize(8, 400);
            let q = rng.bytes(n);
            let id = if outbound { cx.me.udp_id() } else { h.next_id() };
            let ttl = if outbound { cx.me.ttl } else { h.ttl };
            let f = udp(&mut cx.tr, tt, src, dst, ttl, id, &q)?;
            if outbound {
                cx.ours.push(f);
            } else {
                cx.theirs.push(f);
            }
            let rt = if outbound {
                tt.add_nanos(h.rtt + rng.range(50, 2_000) * US)
            } else {
                tt.add_nanos(rng.range(30, 500) * US)
            };
            let n = rng.range_usize(8, 600);
            let r = rng.bytes(n);
            let id = if outbound { h.next_id() } else { cx.me.udp_id() };
            let ttl = if outbound { h.ttl } else { cx.me.ttl };
            udp(&mut cx.tr, rt, dst, src, ttl, id, &r)?;
            tt = rt.add_nanos(rng.range(1, 800) * MS);
        }
    } else {
        // An unreplied stream.
        for _ in 0..rng.range(3, 12) {
            let n = rng.range_usize(20, 200);
            let p = rng.bytes(n);
            let id = if outbound { cx.me.udp_id() } else { h.next_id() };
            let ttl = if outbound { cx.me.ttl } else { h.ttl };
            let f = udp(&mut cx.tr, tt, src, dst, ttl, id, &p)?;
            if outbound {
                cx.ours.push(f);
            }
            tt = tt.add_nanos(rng.range(5, 300) * MS);
        }
    }
    Ok(())
}

pub(crate) fn icmp_echo_episode(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut h = cx.host(rng);
    let id = rng.next_u16();
    let plen = rng.range_usize(8, 56);
    let payload = rng.bytes(plen);
    let outbound = rng.chance(50);
    let (me, my_ttl) = (cx.me.ip, cx.me.ttl);
    let (src, dst, ttl) = if outbound { (me, h.ip, my_ttl) } else { (h.ip, me, h.ttl) };
    let (rttl, rid_base) = if outbound { (h.ttl, h.next_id()) } else { (my_ttl, rng.next_u16()) };
    match rng.range(0, 3) {
        0 | 1 => {
            // Matching request/reply pairs.
            let mut tt = t;
            for seq in 1..=rng.range(1, 3) as u16 {
                let ipid = rng.next_u16();
                echo(&mut cx.tr, tt, src, dst, ttl, ipid, outbound, true, id, seq, &payload)?;
                let rt = tt.add_nanos(if outbound { h.rtt } else { 40 * US });
                echo(
                    &mut cx.tr,
                    rt,
                    dst,
                    src,
                    rttl,
                    rid_base.wrapping_add(seq),
                    false,
                    false,
                    id,
                    seq,
                    &payload,
                )?;
                tt = tt.add_nanos(1_000 * MS);
            }
        }
        2 => {
            // A reply nobody asked for.
            echo(&mut cx.tr, t, h.ip, me, h.ttl, h.next_id(), false, false, id, 1, &payload)?;
        }
        _ => {
            // The reply carries another id than the request.
            echo(&mut cx.tr, t, src, dst, ttl, rng.next_u16(), outbound, true, id, 1, &payload)?;
            let rt = t.add_nanos(if outbound { h.rtt } else { 40 * US });
            echo(&mut cx.tr, rt, dst, src, rttl, rid_base, false, false, id ^ 0x5555, 1, &payload)?;
        }
    }
    Ok(())
}

/// A UDP datagram from us that was never captured (quoted by errors about unknown flows).
pub(crate) fn phantom_datagram(rng: &mut Rng, src: [u8; 4], dst: [u8; 4]) -> Result<Vec<u8>, SynthError> {
    let ip = Ip4 { src, dst, ttl: 64, id: 0, df: true, tos: 0 };
    let n = rng.range_usize(10, 80);
    let f = udp_frame(&ip, rng.range_u16(1024, 65535), rng.range_u16(1024, 65535), &rng.bytes(n))?;
    Ok(crate::packet::ip_datagram(&f).unwrap_or_default().to_vec())
}

pub(crate) fn icmp_error_episode(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut h = cx.host(rng);
    let me = cx.me.ip;
    let unreach = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
    let mut variant = rng.range(0, 5);
    if variant == 1 && cx.mode == Mode::LanFw {
        // No router between our lan0 and a LAN host: a port unreachable instead.
        variant = 0;
    }
    match variant {
        0 => {
            // Port unreachable for a fresh datagram of the inside endpoint.
            let src = UdpEnd { ip: me, port: cx.port(rng) };
            let dst = UdpEnd { ip: h.ip, port: rng.range_u16(1024, 65535) };
            let n = rng.range_usize(10, 700);
            let f = udp(&mut cx.tr, t, src, dst, cx.me.ttl, rng.next_u16(), &rng.bytes(n))?;
            cx.ours.push(f);
            let q = if rng.chance(50) { Quote::Rfc792 } else { Quote::Linux576 };
            icmp_error(&mut cx.tr, t.add_nanos(h.rtt), h.ip, me, h.ttl, h.next_id(), unreach, f, q)?;
        }
        1 => {
            // Traceroute-style: TTL-limited datagram, time exceeded from a router `hops` away
            // from our host. A LAN host's probe needs one more hop (our host forwards it).
            let src = UdpEnd { ip: me, port: cx.port(rng) };
            let dst = UdpEnd { ip: h.ip, port: 33434 + rng.range_u16(0, 30) };
            let hops = rng.range(1, 4) as u8;
            let ttl = if cx.mode == Mode::Lan { hops + 1 } else { hops };
            let f = udp(&mut cx.tr, t, src, dst, ttl, rng.next_u16(), &[0u8; 32])?;
            let router = [203, 0, 113, 1 + hops];
            icmp_error(
                &mut cx.tr,
                t.add_nanos(u64::from(hops) * 2 * MS),
                router,
                me,
                255 - hops,
                rng.next_u16(),
                Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
                f,
                Quote::Rfc792,
            )?;
        }
        2 => {
            // Error about an earlier datagram of an inside endpoint (existing flow; the error
            // goes to that datagram's source), or about a phantom one of ours (unknown flow).
            let quoted = match rng.pick(&cx.ours).copied() {
                Some(f) if rng.chance(70) => cx.tr.datagram(f)?,
                _ => phantom_datagram(rng, me, h.ip)?,
            };
            let body = crate::world::quote_bytes(&quoted, Quote::Rfc792);
            let addr = |r: std::ops::Range<usize>| quoted.get(r).and_then(|d| <[u8; 4]>::try_from(d).ok());
            let src = addr(16..20).unwrap_or(h.ip);
            let dst = addr(12..16).unwrap_or(me);
            let ttl = if in_lan(src) { 64 } else { h.ttl };
            icmp_error_raw(&mut cx.tr, t, src, dst, ttl, h.next_id(), unreach, &body)?;
        }
        3 => {
            // Forged: the quoted packet was not sent by the inside endpoint (foreign inner
            // source; for a LAN host sometimes another LAN host).
            let other = if cx.mode == Mode::Lan && rng.chance(50) {
                [10, 1, 0, rng.range(2, 50) as u8]
            } else {
                [198, 51, 100, rng.range(2, 254) as u8]
            };
            let quoted = phantom_datagram(rng, other, h.ip)?;
            let body = crate::world::quote_bytes(&quoted, Quote::Rfc792);
            icmp_error_raw(&mut cx.tr, t, h.ip, me, h.ttl, h.next_id(), unreach, &body)?;
        }
        _ => {
            // Forged: quoting a packet an inside endpoint received (outer destination ≠ inner
            // source), or a host unreachable for a SYN the inside endpoint sent (from a remote
            // router; from the LAN host itself, administratively prohibited, on the LAN).
            if let Some(f) = rng.pick(&cx.theirs).copied() {
                let quoted = cx.tr.datagram(f)?;
                let body = crate::world::quote_bytes(&quoted, Quote::Rfc792);
                icmp_error_raw(&mut cx.tr, t, h.ip, me, h.ttl, h.next_id(), unreach, &body)?;
            } else {
                let mut c = cx.conn(rng);
                let local = c.local_side();
                if local == Side::A {
                    let syn = c.send(&mut cx.tr, t, Side::A, flags::SYN, &[])?;
                    let peer = c.end(Side::B).cfg;
                    let (src, ttl, code) = if cx.mode == Mode::LanFw {
                        (peer.ip, peer.ttl, DestUnreachableHeader::FilterProhibited)
                    } else {
                        ([203, 0, 113, 1], 250, DestUnreachableHeader::Host)
                    };
                    icmp_error(
                        &mut cx.tr,
                        t.add_nanos(c.rtt / 2),
                        src,
                        me,
                        ttl,
                        rng.next_u16(),
                        Icmpv4Type::DestinationUnreachable(code),
                        syn.id,
                        Quote::Rfc792,
                    )?;
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn other_proto(cx: &mut Cx, rng: &mut Rng, t: Time) -> Result<(), SynthError> {
    let mut h = cx.host(rng);
    let gre = rng.chance(50);
    let mut tt = t;
    let spi_out = rng.next_u32();
    let spi_in = rng.next_u32();
    for k in 0..rng.range(2, 6) as u32 {
        for outbound in [true, false] {
            if !outbound && rng.chance(30) {
                continue;
            }
            let (src, dst, ttl, id) = if outbound {
                (cx.me.ip, h.ip, cx.me.ttl, rng.next_u16())
            } else {
                (h.ip, cx.me.ip, h.ttl, h.next_id())
            };
            let ip = Ip4 { src, dst, ttl, id, df: !gre, tos: 0 };
            let n = rng.range_usize(40, 300);
            let (proto, payload) = if gre {
                // RFC 2784 GRE header (no options) carrying an IPv4 packet.
                let inner = phantom_datagram(rng, [10, 0, 0, 1], [10, 0, 0, 2])?;
                let mut v = vec![0, 0, 0x08, 0x00];
                v.extend_from_slice(&inner);
                (47u8, v)
            } else {
                // RFC 4303 ESP: SPI, sequence number, opaque ciphertext.
                let mut v = Vec::with_capacity(n + 8);
                v.extend_from_slice(&(if outbound { spi_out } else { spi_in }).to_be_bytes());
                v.extend_from_slice(&(k + 1).to_be_bytes());
                v.extend_from_slice(&rng.bytes(n));
                (50u8, v)
            };
            cx.tr.push(tt, raw_ip_frame(&ip, proto, &payload)?);
            tt = tt.add_nanos(if outbound { h.rtt / 2 + 1 } else { rng.range(10, 200) * MS });
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::check::verify_checksums;

    #[test]
    fn sizes_checksums_and_order_over_many_seeds() {
        for seed in 0..40 {
            let frames = generate(seed, crate::DEFAULT_START).unwrap();
            assert!((100..=400).contains(&frames.len()), "seed {seed}: {}", frames.len());
            assert!(frames.windows(2).all(|w| w[0].ts <= w[1].ts));
            for (i, f) in frames.iter().enumerate() {
                verify_checksums(&f.data).unwrap_or_else(|e| panic!("seed {seed} frame {i}: {e}"));
                etherparse::SlicedPacket::from_ethernet(&f.data).unwrap();
            }
        }
    }

    use crate::check::check_tcp;
    use crate::packet::{lan_host_mac, FW_LAN_MAC, GW_MAC, OUR_MAC};
    use crate::Frame;
    use std::collections::{BTreeMap, BTreeSet};

    /// Kinds whose TCP flows are protocol-correct from SYN to close (the others break the
    /// checker's invariants on purpose: capture gaps, odd RSTs, second SYNs, no handshake).
    const CLEAN: &[&str] = &["tcp_plain", "tcp_retrans", "tcp_zero_window", "tcp_fin_variant", "icmp_error"];
    /// Kinds whose every flow must show its anomaly to the checker.
    const BROKEN: &[&str] = &[
        "tcp_loss_or_reorder",
        "tcp_out_of_window",
        "tcp_syn_on_established",
        "tcp_simultaneous_open",
        "tcp_midstream",
    ];

    fn is_lan_host(ip: [u8; 4]) -> bool {
        in_lan(ip) && ip != FW_LAN_IP
    }

    fn ip4(f: &Frame) -> Option<([u8; 4], [u8; 4], u8, u8)> {
        let d = &f.data;
        if d[12..14] != [8, 0] {
            return None;
        }
        let a = |o: usize| <[u8; 4]>::try_from(&d[o..o + 4]).unwrap();
        Some((a(26), a(30), d[22], d[23]))
    }

    type Key = (([u8; 16], u16), ([u8; 16], u16));

    fn key(t: &Tuple) -> Key {
        let k = crate::check::key4;
        ((k(t.0 .0), t.0 .1), (k(t.1 .0), t.1 .1))
    }

    fn frames_of(frames: &[Frame], t: &Tuple) -> Vec<Frame> {
        frames
            .iter()
            .filter(|f| {
                crate::check::tcp_segments(std::slice::from_ref(f))
                    .first()
                    .is_some_and(|s| (s.src, s.dst) == key(t) || (s.dst, s.src) == key(t))
            })
            .cloned()
            .collect()
    }

    #[test]
    fn same_seed_same_capture_and_episodes() {
        for seed in [0u64, 5, 17] {
            let (a, la) = generate_logged(seed, crate::DEFAULT_START).unwrap();
            let (b, lb) = generate_logged(seed, crate::DEFAULT_START).unwrap();
            assert_eq!(a, b);
            assert_eq!(format!("{la:?}"), format!("{lb:?}"));
            assert_eq!(generate(seed, crate::DEFAULT_START).unwrap(), a);
            assert_ne!(generate(seed + 1, crate::DEFAULT_START).unwrap(), a);
        }
    }

    #[test]
    fn tcp_flows_pass_the_checker_over_40_seeds() {
        // Checked flows per inside endpoint kind.
        let mut checked: BTreeMap<&str, usize> = BTreeMap::new();
        let mut broken = 0;
        for seed in 0..40 {
            let (frames, log) = generate_logged(seed, crate::DEFAULT_START).unwrap();
            let mut clean = BTreeSet::new();
            for e in &log {
                for t in &e.tcp {
                    if CLEAN.contains(&e.kind) {
                        clean.insert(key(t));
                        let who = match e.mode {
                            Mode::Fw => "fw",
                            Mode::Lan => "lan",
                            Mode::LanFw => "lanfw",
                        };
                        *checked.entry(who).or_default() += 1;
                    } else if BROKEN.contains(&e.kind) {
                        let f = frames_of(&frames, t);
                        assert!(check_tcp(&f).is_err(), "seed {seed} {} {t:?} shows no anomaly", e.kind);
                        broken += 1;
                    }
                }
            }
            let sel: Vec<Frame> = frames
                .iter()
                .filter(|f| {
                    crate::check::tcp_segments(std::slice::from_ref(f))
                        .first()
                        .is_some_and(|s| clean.contains(&(s.src, s.dst)) || clean.contains(&(s.dst, s.src)))
                })
                .cloned()
                .collect();
            let reports = check_tcp(&sel).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            assert!(reports.iter().all(|r| r.segments >= 3));
        }
        assert!(checked["fw"] >= 40 && checked["lan"] >= 60 && checked["lanfw"] >= 5, "{checked:?}");
        assert!(broken >= 100, "{broken}");
    }

    #[test]
    fn both_kinds_of_endpoints_across_seeds_1_to_20() {
        let mut modes: BTreeMap<String, usize> = BTreeMap::new();
        let mut lan_kinds = BTreeSet::new();
        let (mut fw, mut fwd, mut lanfw) = (0, 0, 0);
        for seed in 1..=20 {
            let (frames, log) = generate_logged(seed, crate::DEFAULT_START).unwrap();
            for e in &log {
                *modes.entry(format!("{:?}", e.mode)).or_default() += 1;
                if e.mode == Mode::Lan {
                    assert!(is_lan_host(e.inside));
                    lan_kinds.insert(e.kind);
                }
            }
            for f in &frames {
                let Some((src, dst, _, _)) = ip4(f) else { continue };
                match (src, dst) {
                    (OUR_IP, _) | (_, OUR_IP) => fw += 1,
                    (FW_LAN_IP, d) | (d, FW_LAN_IP) if is_lan_host(d) => lanfw += 1,
                    (s, d) if is_lan_host(s) != is_lan_host(d) => fwd += 1,
                    (s, d) => panic!("seed {seed}: unexpected pair {s:?} -> {d:?}"),
                }
            }
        }
        assert!(fw > 300 && fwd > 300 && lanfw > 20, "fw {fw} forwarded {fwd} lan↔fw {lanfw}");
        let total: usize = modes.values().sum();
        let share = |m: &str| modes.get(m).copied().unwrap_or(0) * 100 / total;
        assert!((30..=50).contains(&share("Fw")), "{modes:?}");
        assert!((40..=60).contains(&share("Lan")), "{modes:?}");
        assert!((4..=16).contains(&share("LanFw")), "{modes:?}");
        // Every episode kind ran with a LAN host as the inside endpoint.
        for (_, k, _) in KINDS {
            assert!(lan_kinds.contains(k), "{k} never ran through the router");
        }
    }

    #[test]
    fn frames_are_as_seen_on_the_source_side() {
        for seed in 0..20 {
            for f in generate(seed, crate::DEFAULT_START).unwrap() {
                let Some((src, dst, ttl, proto)) = ip4(&f) else { continue };
                let macs = (
                    <[u8; 6]>::try_from(&f.data[6..12]).unwrap(),
                    <[u8; 6]>::try_from(&f.data[0..6]).unwrap(),
                );
                let ip_len = usize::from(u16::from_be_bytes([f.data[16], f.data[17]]));
                let padded = f.data.len() > 14 + ip_len;
                // Traceroute probes (UDP to 33434-33464) carry a small TTL.
                let probe =
                    proto == 17 && (33434..=33464).contains(&u16::from_be_bytes([f.data[36], f.data[37]]));
                let ctx = format!("seed {seed} {src:?} -> {dst:?}");
                if src == OUR_IP || src == FW_LAN_IP {
                    let want =
                        if src == OUR_IP { (OUR_MAC, GW_MAC) } else { (FW_LAN_MAC, lan_host_mac(dst)) };
                    assert_eq!(macs, want, "{ctx}");
                    assert!(!padded, "{ctx}");
                    assert!(ttl == 64 || (probe && ttl <= 4), "{ctx} ttl {ttl}");
                } else if is_lan_host(src) {
                    assert_eq!(macs, (lan_host_mac(src), FW_LAN_MAC), "{ctx}");
                    assert!(ttl == 64 || ttl == 128 || (probe && (2..=5).contains(&ttl)), "{ctx} ttl {ttl}");
                    assert!(f.data.len() >= 60, "{ctx}");
                } else {
                    assert_eq!(macs, (GW_MAC, OUR_MAC), "{ctx}");
                    assert!(f.data.len() >= 60, "{ctx}");
                }
            }
        }
    }

    #[test]
    fn remote_routers_send_errors_to_lan_hosts_quoting_their_packets() {
        let mut seen = BTreeSet::new();
        for seed in 0..40 {
            let frames = generate(seed, crate::DEFAULT_START).unwrap();
            for (i, f) in frames.iter().enumerate() {
                let Some((src, dst, _, 1)) = ip4(f) else { continue };
                let ty = f.data[34];
                if !is_lan_host(dst) || in_lan(src) || !(ty == 3 || ty == 11) {
                    continue;
                }
                let quoted = &f.data[42..14 + usize::from(u16::from_be_bytes([f.data[16], f.data[17]]))];
                if quoted[12..16] != dst {
                    continue; // forged quote
                }
                // Bit-exact prefix of a datagram the LAN host sent earlier.
                let earlier = frames[..i]
                    .iter()
                    .any(|g| crate::packet::ip_datagram(&g.data).is_some_and(|d| d.starts_with(quoted)));
                let code = f.data[35];
                let router = src[..3] == [203, 0, 113] && src[3] <= 5;
                if earlier {
                    seen.insert((ty, code, router));
                }
            }
        }
        // Time exceeded and fragmentation needed from routers, port unreachable from the peer.
        assert!(seen.contains(&(11, 0, true)), "{seen:?}");
        assert!(seen.contains(&(3, 4, true)), "{seen:?}");
        assert!(seen.iter().any(|(t, c, _)| (*t, *c) == (3, 3)), "{seen:?}");
    }

    #[test]
    fn seeds_cover_the_protocol_mix() {
        let mut protos = std::collections::BTreeSet::new();
        let mut rst = 0;
        for seed in 0..20 {
            for f in generate(seed, crate::DEFAULT_START).unwrap() {
                if f.data[12..14] == [8, 0] {
                    protos.insert(f.data[23]);
                    if f.data[23] == 6 && f.data[47] & flags::RST != 0 {
                        rst += 1;
                    }
                }
            }
        }
        for p in [1u8, 6, 17, 47, 50] {
            assert!(protos.contains(&p), "protocol {p} missing: {protos:?}");
        }
        assert!(rst > 5);
    }
}
