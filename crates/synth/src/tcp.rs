//! A TCP conversation model that emits protocol-correct segments seen from our host's capture point.
//!
//! Contract: as long as the high-level operations ([`Conn::open`], [`Conn::transfer`],
//! [`Conn::close`], [`Conn::abort`]) are used, every emitted segment satisfies the checks of the
//! kernel's conntrack window tracking (`tcp_in_window`): sequence numbers are contiguous, ACKs never
//! acknowledge more than was sent, and no byte is sent beyond the right edge of the window the peer
//! advertised (ack + window << wscale, the SYN window unscaled, RFC 7323 §2.2). The low-level
//! [`Conn::send_with`] lets the "random" scenario break any of these on purpose.
//!
//! Timing: all times are *capture* times at our host. A packet from a remote end is captured when it
//! arrives; the remote reacts to one of our packets one RTT after we sent it (`react`).
//!
//! Stack behaviour mimicked (per [`Os`]): SYN option layouts and windows of Linux, Windows and macOS;
//! options are only echoed in the SYN/ACK when offered in the SYN (RFC 7323, RFC 2018); timestamps on
//! every segment when both sides offered them; MSS = min(peer MSS, own) − 12 with timestamps; Linux
//! sends SYN/ACKs from a listener with IP id 0 (DF set, no connected socket) and uses a per-socket
//! random IP id counter afterwards; receivers ACK every second full segment (RFC 1122 §4.2.3.2).

use crate::packet::{flags, tcp_frame, FrameId, Ip4, TcpSeg, Trace};
use crate::rng::Rng;
use crate::SynthError;
use wire::Time;

/// Which end of a connection: `A` opened it (sent the SYN), `B` accepted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    A,
    B,
}

impl Side {
    pub(crate) fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Operating-system flavour of a TCP end (option layout, default windows, TS clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Os {
    Linux,
    Windows,
    Mac,
}

/// What to do about the ACK of the last segment of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckLast {
    /// ACK it at once (quick-ACK mode).
    Now,
    /// The delayed-ACK timer (40 ms, Linux `TCP_DELACK_MIN`) fires.
    Delayed,
    /// No pure ACK: the receiver's next segment (its reply or FIN) carries the acknowledgement.
    Piggyback,
}

/// How a connection is closed with FINs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseStyle {
    /// The peer answers the FIN with its own FIN|ACK (application closes at once).
    Combined,
    /// The peer ACKs the FIN, closes later (`think` after its ACK).
    Separate { think_us: u64 },
}

/// Static description of one end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndCfg {
    pub ip: [u8; 4],
    pub port: u16,
    pub ttl: u8,
    pub os: Os,
    /// MSS offered in the SYN (MTU − 40).
    pub mss: u16,
    /// True for our host (the capture point).
    pub local: bool,
}

/// Dynamic per-end state.
#[derive(Debug, Clone)]
pub(crate) struct End {
    pub cfg: EndCfg,
    pub ip_id: u16,
    pub isn: u32,
    pub snd_nxt: u32,
    pub rcv_nxt: u32,
    pub ws_offer: Option<u8>,
    pub sack_offer: bool,
    pub ts_offer: bool,
    pub ts_base: u32,
    pub ts_recent: u32,
    pub syn_win: u16,
    /// Receive window in bytes (what we would advertise before scaling).
    pub rcv_wnd: u32,
    pub rcv_wnd_max: u32,
    /// Right edge of the window the peer advertised to us (highest ack + scaled window).
    pub peer_edge: u32,
    /// Effective sending MSS (set by the handshake; lowered by PMTU discovery).
    pub send_mss: u32,
    /// Own MTU-derived MSS limit (1460 for a 1500 MTU; lowered by a fragmentation-needed).
    pub mtu_mss: u32,
    pub cwnd: u32,
    /// Serialisation time per byte on this end's bottleneck link (ns/byte).
    pub ns_per_byte: u64,
    /// Capture time of the latest segment this end emitted.
    pub last_tx: Time,
}

/// seq comparison modulo 2^32: `a` after `b`.
pub(crate) fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl End {
    fn new(cfg: EndCfg, rng: &mut Rng) -> End {
        let (ws, syn_win, rcv_max) = match cfg.os {
            Os::Linux => (Some(7u8), 64240u16, 6 * 1024 * 1024u32),
            Os::Windows => (Some(8), 64240, 4 * 1024 * 1024),
            Os::Mac => (Some(6), 65535, 2 * 1024 * 1024),
        };
        let ts = !matches!(cfg.os, Os::Windows);
        let isn = rng.next_u32();
        End {
            cfg,
            ip_id: rng.next_u16(),
            isn,
            snd_nxt: isn,
            rcv_nxt: 0,
            ws_offer: ws,
            sack_offer: true,
            ts_offer: ts,
            ts_base: rng.next_u32(),
            ts_recent: 0,
            syn_win,
            rcv_wnd: u32::from(syn_win),
            rcv_wnd_max: rcv_max,
            peer_edge: isn,
            send_mss: 536,
            mtu_mss: u32::from(cfg.mss),
            cwnd: 10,
            ns_per_byte: if cfg.local { 8 } else { rng.range(80, 1600) },
            last_tx: Time::ZERO,
        }
    }
}

/// Overrides for a hand-crafted segment ([`Conn::send_with`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Custom {
    pub flags: u8,
    pub payload: Vec<u8>,
    pub seq: Option<u32>,
    pub ack: Option<u32>,
    pub win: Option<u16>,
    pub ecr: Option<u32>,
    pub sack: Vec<(u32, u32)>,
    /// Update the receiver's state as if it got the segment in order.
    pub deliver: bool,
    /// Advance the sender's `snd_nxt` past the segment.
    pub advance: bool,
}

/// Record of an emitted segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    pub id: FrameId,
    pub seq: u32,
    pub end: u32,
    pub tsval: u32,
    pub t: Time,
}

/// One TCP connection between `A` (initiator) and `B`.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub a: End,
    pub b: End,
    /// Round-trip time between our host and the remote end, ns.
    pub rtt: u64,
    pub ws_ok: bool,
    pub ts_ok: bool,
    pub sack_ok: bool,
    /// The connection runs over IPv6 (40 more header bytes per segment: MSS = MTU − 60).
    pub v6: bool,
    /// Extension header bytes on every packet of A and of B (IPv6 sticky options): taken off the
    /// sending MSS like Linux `icsk_ext_hdr_len`.
    pub ext_len: (u32, u32),
    /// Local stack reaction time (µs) range for ACKs and SYN/ACKs.
    rng: Rng,
}

pub(crate) const US: u64 = 1_000;
pub(crate) const MS: u64 = 1_000_000;

impl Conn {
    pub(crate) fn new(a: EndCfg, b: EndCfg, rtt: u64, rng: &mut Rng) -> Conn {
        let mut own = rng.fork(0x7c9);
        let a = End::new(a, &mut own);
        let b = End::new(b, &mut own);
        Conn { a, b, rtt, ws_ok: false, ts_ok: false, sack_ok: false, v6: false, ext_len: (0, 0), rng: own }
    }

    pub(crate) fn end(&self, s: Side) -> &End {
        match s {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    pub(crate) fn end_mut(&mut self, s: Side) -> &mut End {
        match s {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn ext_of(&self, s: Side) -> u32 {
        match s {
            Side::A => self.ext_len.0,
            Side::B => self.ext_len.1,
        }
    }

    /// The local side, if any.
    pub(crate) fn local_side(&self) -> Side {
        if self.a.cfg.local {
            Side::A
        } else {
            Side::B
        }
    }

    /// Capture time at which `to` reacts (after `think_ns`) to a packet `from` sent/captured at `t`.
    pub(crate) fn react(&self, t: Time, from: Side, to: Side, think_ns: u64) -> Time {
        let hop = if self.end(from).cfg.local && !self.end(to).cfg.local { self.rtt } else { 0 };
        t.add_nanos(hop).add_nanos(think_ns)
    }

    /// A short stack reaction delay (ACK generation, SYN/ACK), 15-90 µs.
    pub(crate) fn stack_delay(&mut self) -> u64 {
        self.rng.range(15, 90) * US
    }

    fn scale_of(&self, s: Side) -> u8 {
        if self.ws_ok {
            self.end(s).ws_offer.unwrap_or(0).min(14)
        } else {
            0
        }
    }

    /// Raw window field `s` advertises now (non-SYN).
    pub(crate) fn adv_win(&self, s: Side) -> u16 {
        let e = self.end(s);
        let raw = e.rcv_wnd >> self.scale_of(s);
        raw.min(65535) as u16
    }

    fn tsval(&self, s: Side, t: Time) -> u32 {
        let e = self.end(s);
        // Remote clocks run on send time; one-way delay ≈ rtt/2.
        let send_ns = if e.cfg.local { t.as_nanos() } else { t.as_nanos().saturating_sub(self.rtt / 2) };
        e.ts_base.wrapping_add((send_ns / MS) as u32)
    }

    fn syn_options(&self, s: Side, synack: bool, tsval: u32) -> Vec<u8> {
        let e = self.end(s);
        let peer = self.end(s.other());
        let ws = if synack {
            if peer.ws_offer.is_some() {
                e.ws_offer
            } else {
                None
            }
        } else {
            e.ws_offer
        };
        let sack = e.sack_offer && (!synack || peer.sack_offer);
        let ts = e.ts_offer && (!synack || peer.ts_offer);
        let ecr = if synack { e.ts_recent } else { 0 };
        let mss = e.cfg.mss.to_be_bytes();
        let mut o = vec![2, 4, mss[0], mss[1]];
        let tsb = |o: &mut Vec<u8>| {
            o.extend_from_slice(&[8, 10]);
            o.extend_from_slice(&tsval.to_be_bytes());
            o.extend_from_slice(&ecr.to_be_bytes());
        };
        match e.cfg.os {
            Os::Linux => {
                // Linux tcp_options_write: MSS, SACK-perm folded into the TS word, NOP+WS.
                if ts {
                    if sack {
                        o.extend_from_slice(&[4, 2]);
                    } else {
                        o.extend_from_slice(&[1, 1]);
                    }
                    tsb(&mut o);
                } else if sack {
                    o.extend_from_slice(&[1, 1, 4, 2]);
                }
                if let Some(w) = ws {
                    o.extend_from_slice(&[1, 3, 3, w]);
                }
            }
            Os::Windows => {
                if let Some(w) = ws {
                    o.extend_from_slice(&[1, 3, 3, w]);
                }
                if ts {
                    o.extend_from_slice(&[1, 1]);
                    tsb(&mut o);
                }
                if sack {
                    o.extend_from_slice(&[1, 1, 4, 2]);
                }
            }
            Os::Mac => {
                if let Some(w) = ws {
                    o.extend_from_slice(&[1, 3, 3, w]);
                }
                if ts {
                    o.extend_from_slice(&[1, 1]);
                    tsb(&mut o);
                }
                if sack {
                    o.extend_from_slice(&[4, 2, 0, 0]);
                }
            }
        }
        while o.len() % 4 != 0 {
            o.push(0);
        }
        o
    }

    fn data_options(&self, tsval: u32, ecr: u32, sack: &[(u32, u32)]) -> Vec<u8> {
        let mut o = Vec::new();
        if self.ts_ok {
            o.extend_from_slice(&[1, 1, 8, 10]);
            o.extend_from_slice(&tsval.to_be_bytes());
            o.extend_from_slice(&ecr.to_be_bytes());
        }
        if !sack.is_empty() {
            let room = if self.ts_ok { 3 } else { 4 };
            let blocks: Vec<&(u32, u32)> = sack.iter().take(room).collect();
            o.extend_from_slice(&[1, 1, 5, (2 + 8 * blocks.len()) as u8]);
            for (l, r) in blocks {
                o.extend_from_slice(&l.to_be_bytes());
                o.extend_from_slice(&r.to_be_bytes());
            }
        }
        o
    }

    /// Next IP id for a segment from `s`.
    fn next_ip_id(&mut self, s: Side, fl: u8) -> u16 {
        let e = self.end_mut(s);
        // A Linux listener answers a SYN before a connected socket exists: DF set, IP id 0
        // (ip_select_ident on an unconnected socket).
        if e.cfg.os == Os::Linux && fl & flags::SYN != 0 && fl & flags::ACK != 0 {
            return 0;
        }
        let id = e.ip_id;
        e.ip_id = e.ip_id.wrapping_add(1);
        id
    }

    /// Emits a normal segment from `from` (seq = snd_nxt, ack = rcv_nxt) and delivers it.
    pub(crate) fn send(
        &mut self,
        tr: &mut Trace,
        t: Time,
        from: Side,
        fl: u8,
        payload: &[u8],
    ) -> Result<Sent, SynthError> {
        self.send_with(
            tr,
            t,
            from,
            Custom {
                flags: fl,
                payload: payload.to_vec(),
                deliver: true,
                advance: true,
                ..Custom::default()
            },
        )
    }

    /// Emits a segment with explicit overrides.
    pub(crate) fn send_with(
        &mut self,
        tr: &mut Trace,
        t: Time,
        from: Side,
        c: Custom,
    ) -> Result<Sent, SynthError> {
        let to = from.other();
        let syn = c.flags & flags::SYN != 0;
        let synack = syn && c.flags & flags::ACK != 0;
        let tsval = self.tsval(from, t);
        let seq = c.seq.unwrap_or(self.end(from).snd_nxt);
        let ack = if c.flags & flags::ACK != 0 {
            c.ack.unwrap_or(self.end(from).rcv_nxt)
        } else {
            c.ack.unwrap_or(0)
        };
        let win = match c.win {
            Some(w) => w,
            // Linux answers with 65160 (45 × 1448) when timestamps are on, its SYN window otherwise.
            None if synack && self.end(from).cfg.os == Os::Linux && self.ts_ok => 65160,
            None if syn => self.end(from).syn_win,
            None => self.adv_win(from),
        };
        let ecr = c.ecr.unwrap_or(self.end(from).ts_recent);
        let options =
            if syn { self.syn_options(from, synack, tsval) } else { self.data_options(tsval, ecr, &c.sack) };
        let plen = u32::try_from(c.payload.len()).map_err(|_| SynthError::Internal("payload"))?;
        let end = seq
            .wrapping_add(plen)
            .wrapping_add(u32::from(syn))
            .wrapping_add(u32::from(c.flags & flags::FIN != 0));
        let id = self.next_ip_id(from, c.flags);
        let (fe, te) = (self.end(from), self.end(to));
        let ip = Ip4 { src: fe.cfg.ip, dst: te.cfg.ip, ttl: fe.cfg.ttl, id, df: true, tos: 0 };
        let frame = tcp_frame(
            &ip,
            &TcpSeg {
                sport: fe.cfg.port,
                dport: te.cfg.port,
                seq,
                ack,
                flags: c.flags,
                win,
                options: &options,
                payload: &c.payload,
            },
        )?;
        let fid = tr.push(t, frame);
        let e = self.end_mut(from);
        e.last_tx = e.last_tx.max(t);
        if c.advance && seq_after(end, self.end(from).snd_nxt) {
            self.end_mut(from).snd_nxt = end;
        }
        if c.deliver {
            let scale = if syn { 0 } else { self.scale_of(from) };
            let ts_ok = self.ts_ok || (syn && self.end(from).ts_offer);
            let r = self.end_mut(to);
            if syn {
                r.rcv_nxt = end;
            } else if seq == r.rcv_nxt && seq_after(end, r.rcv_nxt) {
                r.rcv_nxt = end;
                if plen > 0 {
                    r.rcv_wnd = r.rcv_wnd.saturating_add(plen).min(r.rcv_wnd_max);
                }
            }
            if ts_ok {
                r.ts_recent = tsval;
            }
            if c.flags & flags::ACK != 0 {
                let edge = ack.wrapping_add(u32::from(win) << scale);
                if seq_after(edge, r.peer_edge) {
                    r.peer_edge = edge;
                }
            }
        }
        Ok(Sent { id: fid, seq, end, tsval, t })
    }

    /// Three-way handshake starting at `t`; returns the capture time of the third packet (the ACK).
    pub(crate) fn open(&mut self, tr: &mut Trace, t: Time) -> Result<Time, SynthError> {
        self.send(tr, t, Side::A, flags::SYN, &[])?;
        self.negotiate();
        let d = self.stack_delay();
        let t2 = self.react(t, Side::A, Side::B, d);
        self.send(tr, t2, Side::B, flags::SYN | flags::ACK, &[])?;
        let d = self.stack_delay();
        let t3 = self.react(t2, Side::B, Side::A, d);
        self.send(tr, t3, Side::A, flags::ACK, &[])?;
        Ok(t3)
    }

    /// Fixes the negotiated options once both SYN offers are known (A's SYN, B's answer).
    pub(crate) fn negotiate(&mut self) {
        self.ws_ok = self.a.ws_offer.is_some() && self.b.ws_offer.is_some();
        self.ts_ok = self.a.ts_offer && self.b.ts_offer;
        self.sack_ok = self.a.sack_offer && self.b.sack_offer;
        let ts_cost = if self.ts_ok { 12 } else { 0 };
        let a_mss = u32::from(self.a.cfg.mss);
        let b_mss = u32::from(self.b.cfg.mss);
        let (xa, xb) = self.ext_len;
        self.a.send_mss = b_mss.min(self.a.mtu_mss).saturating_sub(ts_cost + xa).max(64);
        self.b.send_mss = a_mss.min(self.b.mtu_mss).saturating_sub(ts_cost + xb).max(64);
        // After the handshake both ends advertise their (scaled) buffers.
        for e in [&mut self.a, &mut self.b] {
            e.rcv_wnd = e.rcv_wnd.max(u32::from(e.syn_win));
        }
    }

    /// The sending MSS `s` will use once the handshake has negotiated the options.
    pub(crate) fn mss_after_handshake(&self, s: Side) -> u32 {
        let ts = self.a.ts_offer && self.b.ts_offer;
        let own = self.end(s).mtu_mss;
        let peer = u32::from(self.end(s.other()).cfg.mss);
        peer.min(own).saturating_sub(if ts { 12 } else { 0 } + self.ext_of(s)).max(64)
    }

    /// Lowers `s`'s MSS after a fragmentation-needed with next-hop MTU `mtu` (RFC 1191).
    pub(crate) fn pmtu(&mut self, s: Side, mtu: u16) {
        let ts_cost = if self.ts_ok { 12 } else { 0 };
        let hdr = if self.v6 { 60 } else { 40 };
        let ext = self.ext_of(s);
        let e = self.end_mut(s);
        e.mtu_mss = u32::from(mtu).saturating_sub(hdr);
        e.send_mss = e.send_mss.min(e.mtu_mss.saturating_sub(ts_cost + ext)).max(64);
    }

    /// Sends `data` from `from` to the other end, as slow-start rounds limited by cwnd and by the
    /// peer's advertised window; the receiver ACKs every second segment. Returns the capture time of
    /// the last data segment and of the last ACK emitted.
    pub(crate) fn transfer(
        &mut self,
        tr: &mut Trace,
        t0: Time,
        from: Side,
        data: &[u8],
        last: AckLast,
    ) -> Result<(Time, Time), SynthError> {
        let to = from.other();
        let mut off = 0usize;
        let mut t = t0;
        let mut last_data = t0;
        let mut last_ack = t0;
        while off < data.len() {
            let e = self.end(from);
            let mss = e.send_mss.max(1) as usize;
            let usable = e.peer_edge.wrapping_sub(e.snd_nxt) as i32;
            if usable <= 0 {
                return Err(SynthError::Internal("transfer into a closed window"));
            }
            let remaining = data.len() - off;
            let round = remaining.min(e.cwnd as usize * mss).min(usable as usize);
            let ns_per_byte = e.ns_per_byte;
            let mut sent: Vec<Sent> = Vec::new();
            let mut pos = 0usize;
            let mut ts = t;
            while pos < round {
                let n = (round - pos).min(mss);
                let chunk =
                    data.get(off + pos..off + pos + n).ok_or(SynthError::Internal("transfer slice"))?;
                let final_seg = off + pos + n == data.len();
                let fl = if final_seg { flags::ACK | flags::PSH } else { flags::ACK };
                let s = self.send(tr, ts, from, fl, chunk)?;
                sent.push(s);
                pos += n;
                ts = ts.add_nanos((n as u64 + 66) * ns_per_byte);
            }
            off += round;
            if let Some(l) = sent.last() {
                last_data = l.t;
            }
            // ACKs: every second segment, and the round's last one. Segments we send reach the
            // peer spaced by the path's bottleneck (the remote end's link), which paces its ACKs.
            let bottleneck = self.end(to).ns_per_byte;
            let pace = self.end(from).cfg.local && !self.end(to).cfg.local;
            let mut acks: Vec<(Time, &Sent)> = Vec::new();
            let mut prev = Time::ZERO;
            let mut arrive = Time::ZERO;
            for (i, s) in sent.iter().enumerate() {
                let len = u64::from(s.end.wrapping_sub(s.seq));
                arrive = if pace { arrive.add_nanos((len + 66) * bottleneck).max(s.t) } else { s.t };
                let is_last = i + 1 == sent.len();
                let transfer_done = is_last && off == data.len();
                let delay = if transfer_done {
                    match last {
                        AckLast::Now => Some(self.stack_delay()),
                        AckLast::Delayed => Some(40 * MS + self.stack_delay()),
                        AckLast::Piggyback => None,
                    }
                } else if i % 2 == 1 || is_last {
                    Some(self.stack_delay())
                } else {
                    None
                };
                if let Some(d) = delay {
                    let mut ta = self.react(arrive, from, to, d);
                    if ta <= prev {
                        ta = prev.add_nanos(US);
                    }
                    prev = ta;
                    acks.push((ta, s));
                }
            }
            for (ta, s) in acks {
                self.send_with(
                    tr,
                    ta,
                    to,
                    Custom {
                        flags: flags::ACK,
                        ack: Some(s.end),
                        ecr: Some(s.tsval),
                        deliver: true,
                        advance: true,
                        ..Custom::default()
                    },
                )?;
                last_ack = ta;
            }
            let e = self.end_mut(from);
            e.cwnd = (e.cwnd * 2).min(128);
            if off < data.len() {
                let d = self.stack_delay();
                t = self.react(last_ack, to, from, d);
            }
        }
        Ok((last_data, last_ack))
    }

    /// Closes with FINs, `first` closing first at `t`. Returns the time of the last packet.
    pub(crate) fn close(
        &mut self,
        tr: &mut Trace,
        t: Time,
        first: Side,
        style: CloseStyle,
    ) -> Result<Time, SynthError> {
        let second = first.other();
        self.send(tr, t, first, flags::FIN | flags::ACK, &[])?;
        let d = self.stack_delay();
        let t_fin2 = match style {
            CloseStyle::Combined => self.react(t, first, second, d),
            CloseStyle::Separate { think_us } => {
                let ta = self.react(t, first, second, d);
                self.send(tr, ta, second, flags::ACK, &[])?;
                ta.add_nanos(think_us.max(1) * US)
            }
        };
        self.send(tr, t_fin2, second, flags::FIN | flags::ACK, &[])?;
        let d = self.stack_delay();
        let t_last = self.react(t_fin2, second, first, d);
        self.send(tr, t_last, first, flags::ACK, &[])?;
        Ok(t_last)
    }

    /// Answers a FIN already sent by `first` at `t`: the peer's FIN|ACK, then `first`'s final ACK.
    pub(crate) fn close_reply(&mut self, tr: &mut Trace, t: Time, first: Side) -> Result<Time, SynthError> {
        let second = first.other();
        let d = self.stack_delay();
        let t2 = self.react(t, first, second, d);
        self.send(tr, t2, second, flags::FIN | flags::ACK, &[])?;
        let d = self.stack_delay();
        let t3 = self.react(t2, second, first, d);
        self.send(tr, t3, first, flags::ACK, &[])?;
        Ok(t3)
    }

    /// Abortive close: `from` sends RST|ACK with the exact next sequence number.
    pub(crate) fn abort(&mut self, tr: &mut Trace, t: Time, from: Side) -> Result<Sent, SynthError> {
        let win = if self.end(from).cfg.os == Os::Windows { Some(0) } else { None };
        self.send_with(
            tr,
            t,
            from,
            Custom {
                flags: flags::RST | flags::ACK,
                win,
                deliver: false,
                advance: false,
                ..Custom::default()
            },
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::packet::OUR_IP;
    use etherparse::{SlicedPacket, TransportSlice};

    fn conn(os_remote: Os) -> Conn {
        let mut rng = Rng::new(9);
        Conn::new(
            EndCfg { ip: [198, 51, 100, 20], port: 51000, ttl: 54, os: os_remote, mss: 1460, local: false },
            EndCfg { ip: OUR_IP, port: 33333, ttl: 64, os: Os::Linux, mss: 1460, local: true },
            30 * MS,
            &mut rng,
        )
    }

    struct Seg {
        t: Time,
        from_a: bool,
        seq: u32,
        ack: u32,
        syn: bool,
        fin: bool,
        rst: bool,
        win: u16,
        len: u32,
        ip_id: u16,
    }

    fn segs(c: &Conn, tr: Trace) -> Vec<Seg> {
        tr.finish()
            .iter()
            .map(|f| {
                let p = SlicedPacket::from_ethernet(&f.data).unwrap();
                let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!() };
                let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!() };
                Seg {
                    t: f.ts,
                    from_a: ip.header().source() == c.a.cfg.ip,
                    seq: t.sequence_number(),
                    ack: t.acknowledgment_number(),
                    syn: t.syn(),
                    fin: t.fin(),
                    rst: t.rst(),
                    win: t.window_size(),
                    len: t.payload().len() as u32,
                    ip_id: ip.header().identification(),
                }
            })
            .collect()
    }

    #[test]
    fn handshake_exchange_close_reads_like_a_capture() {
        let mut c = conn(Os::Linux);
        let mut tr = Trace::new();
        let t0 = Time::from_secs(1_767_225_600);
        // Peer (remote A) connects to us at t0; we answer within 90 µs; its ACK comes one RTT later.
        let t = c.open(&mut tr, t0).unwrap();
        assert!(t.nanos_since(t0) >= 30 * MS);
        let req = vec![7u8; 300];
        let (td, _) = c.transfer(&mut tr, t, Side::A, &req, AckLast::Piggyback).unwrap();
        let resp = vec![9u8; 20_000];
        let (td2, ta2) = c.transfer(&mut tr, td.add_nanos(200 * US), Side::B, &resp, AckLast::Now).unwrap();
        assert!(ta2 > td2);
        c.close(&mut tr, ta2.add_nanos(MS), Side::A, CloseStyle::Combined).unwrap();
        let a_isn = c.a.isn;
        let b_isn = c.b.isn;
        let s = segs(&c, tr);
        // SYN, SYN/ACK (Linux listener: IP id 0), ACK.
        assert!(s[0].syn && s[0].from_a && s[0].seq == a_isn);
        assert!(s[1].syn && !s[1].from_a && s[1].ack == a_isn.wrapping_add(1));
        assert_eq!(s[1].ip_id, 0);
        assert!(!s[2].syn && s[2].from_a && s[2].ack == b_isn.wrapping_add(1));
        // Request, then the response's first segment acknowledges it (piggyback).
        assert_eq!(s[3].len, 300);
        assert!(!s[4].from_a && s[4].ack == a_isn.wrapping_add(301));
        // Data never exceeds MSS 1448 (timestamps negotiated) and is contiguous per direction.
        let mut next_b = b_isn.wrapping_add(1);
        for x in s.iter().filter(|x| !x.from_a && !x.syn) {
            assert!(x.len <= 1448);
            assert_eq!(x.seq, next_b);
            next_b = next_b.wrapping_add(x.len + u32::from(x.fin));
        }
        // Times are monotonic in capture order and the close ends with A's final ACK.
        assert!(s.windows(2).all(|w| w[0].t <= w[1].t));
        let last = s.last().unwrap();
        assert!(last.from_a && !last.fin && last.ack == next_b);
        assert!(s.iter().all(|x| !x.rst));
        assert!(s.iter().filter(|x| !x.syn).all(|x| x.win > 0));
    }

    #[test]
    fn windows_peer_without_timestamps_gets_full_mss_and_no_ts() {
        let mut c = conn(Os::Windows);
        let mut tr = Trace::new();
        let t = c.open(&mut tr, Time::from_secs(10)).unwrap();
        assert!(!c.ts_ok && c.ws_ok && c.sack_ok);
        assert_eq!(c.b.send_mss, 1460);
        c.transfer(&mut tr, t, Side::B, &[1u8; 5000], AckLast::Now).unwrap();
        let f = tr.finish();
        // SYN/ACK from Linux without TS: MSS, NOP NOP SACK-perm, NOP WS.
        let p = SlicedPacket::from_ethernet(&f[1].data).unwrap();
        let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!() };
        assert_eq!(t.options(), &[2, 4, 5, 180, 1, 1, 4, 2, 1, 3, 3, 7]);
    }

    #[test]
    fn transfer_respects_peer_window() {
        let mut c = conn(Os::Mac);
        let mut tr = Trace::new();
        let t = c.open(&mut tr, Time::from_secs(10)).unwrap();
        // Mac receiver: 65535 raw SYN window, scale 6. Send 300 kB from us.
        c.transfer(&mut tr, t, Side::B, &vec![3u8; 300_000], AckLast::Now).unwrap();
        let s = segs(&c, tr);
        let mut edge = 0u32;
        for x in &s {
            if x.from_a && !x.rst {
                let scale = if x.syn { 0 } else { 6 };
                edge = x.ack.wrapping_add(u32::from(x.win) << scale);
            } else if !x.syn {
                assert!(!seq_after(x.seq.wrapping_add(x.len), edge));
            }
        }
    }

    #[test]
    fn abort_uses_exact_sequence() {
        let mut c = conn(Os::Linux);
        let mut tr = Trace::new();
        let t = c.open(&mut tr, Time::from_secs(10)).unwrap();
        let r = c.abort(&mut tr, t.add_nanos(MS), Side::B).unwrap();
        assert_eq!(r.seq, c.b.isn.wrapping_add(1));
    }
}
