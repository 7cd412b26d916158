//! The TCP tracker (reference §3; behaviour of `nf_conntrack_proto_tcp.c`, written from scratch).
//!
//! Contract:
//! - [`tcp_error`] is the pre-check (`tcp_error`): checksum at PREROUTING when enabled, and the flag
//!   combinations. A failure makes the packet INVALID without touching any entry.
//! - [`TcpConn::new_conn`] is `tcp_new`: only an original-direction SYN (SYN_SENT) or, with
//!   `tcp_loose`, an "ack"-class packet (mid-stream pickup, both directions BE_LIBERAL + SACK_PERM) may
//!   create an entry.
//! - [`TcpConn::packet`] runs the state table (§3.4), the special cases (§3.5), the window check
//!   (§3.6), the RST rules (§3.7) and the timeout selection (§3.9), and tells the caller what to do
//!   with the entry ([`TcpOutcome`]). Sequence arithmetic is modulo 2^32 (`before`/`after`).
//! - [`TcpConn::established_ack`], [`TcpConn::known_step`] and [`TcpConn::handshake_step`] take the common
//!   packets (an in-window ACK or FIN|ACK after the handshake's first two packets, the SYN on a new entry, the
//!   first SYN/ACK) without the table lookup and the special cases that cannot apply, and decide and change
//!   the entry exactly as [`TcpConn::packet`] does (proptests against it); anything else they leave untouched.

use std::fmt;

use wire::{TcpFlags, TcpHeader};

use crate::config::Config;
use crate::conn::{Dir, Status};

/// TCP conntrack states (`enum tcp_conntrack`), shown by `/proc` and `conntrack -L`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum TcpState {
    #[default]
    None,
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
    SynSent2,
}

impl TcpState {
    /// The kernel's name (`tcp_conntrack_names`).
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    fn column(self) -> usize {
        self as usize
    }

    /// States an early drop / GC under pressure may evict even when ASSURED (`tcp_can_early_drop`).
    pub fn can_early_drop(self) -> bool {
        matches!(
            self,
            TcpState::FinWait
                | TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::TimeWait
                | TcpState::Close
        )
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Packet class used to index the state table (`get_conntrack_index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Index {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    #[default]
    None,
}

impl Index {
    pub(crate) fn of(flags: TcpFlags) -> Index {
        if flags.rst() {
            Index::Rst
        } else if flags.syn() {
            if flags.ack() {
                Index::SynAck
            } else {
                Index::Syn
            }
        } else if flags.fin() {
            Index::Fin
        } else if flags.ack() {
            Index::Ack
        } else {
            Index::None
        }
    }
    fn row(self) -> usize {
        self as usize
    }
}

/// A cell of the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cell {
    To(TcpState),
    /// sIV
    Invalid,
    /// sIG
    Ignore,
}

use Cell::{Ignore as IG, Invalid as IV};
const NO: Cell = Cell::To(TcpState::None);
const SS: Cell = Cell::To(TcpState::SynSent);
const SR: Cell = Cell::To(TcpState::SynRecv);
const ES: Cell = Cell::To(TcpState::Established);
const FW: Cell = Cell::To(TcpState::FinWait);
const CW: Cell = Cell::To(TcpState::CloseWait);
const LA: Cell = Cell::To(TcpState::LastAck);
const TW: Cell = Cell::To(TcpState::TimeWait);
const CL: Cell = Cell::To(TcpState::Close);
const S2: Cell = Cell::To(TcpState::SynSent2);

/// The transition table, reference §3.4 (observed 6.18). `[dir][index][state]`; rows syn, synack,
/// fin, ack, rst, none; columns NO SS SR ES FW CW LA TW CL S2.
#[rustfmt::skip]
const TABLE: [[[Cell; 10]; 6]; 2] = [
    // ORIGINAL
    [
        /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    // REPLY
    [
        /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

// The NONE state never results from the table; keep the constant referenced.
const _: Cell = NO;

fn lookup(dir: Dir, index: Index, state: TcpState) -> Cell {
    TABLE
        .get(dir.index())
        .and_then(|d| d.get(index.row()))
        .and_then(|r| r.get(state.column()))
        .copied()
        .unwrap_or(Cell::Invalid)
}

/// `invalid state` messages naming the table cell: `[dir][index][state]`.
#[rustfmt::skip]
const INVALID_CELLS: [[[&str; 10]; 6]; 2] = [
    [
        ["invalid state: syn original in NONE", "invalid state: syn original in SYN_SENT", "invalid state: syn original in SYN_RECV", "invalid state: syn original in ESTABLISHED", "invalid state: syn original in FIN_WAIT", "invalid state: syn original in CLOSE_WAIT", "invalid state: syn original in LAST_ACK", "invalid state: syn original in TIME_WAIT", "invalid state: syn original in CLOSE", "invalid state: syn original in SYN_SENT2"],
        ["invalid state: synack original in NONE", "invalid state: synack original in SYN_SENT", "invalid state: synack original in SYN_RECV", "invalid state: synack original in ESTABLISHED", "invalid state: synack original in FIN_WAIT", "invalid state: synack original in CLOSE_WAIT", "invalid state: synack original in LAST_ACK", "invalid state: synack original in TIME_WAIT", "invalid state: synack original in CLOSE", "invalid state: synack original in SYN_SENT2"],
        ["invalid state: fin original in NONE", "invalid state: fin original in SYN_SENT", "invalid state: fin original in SYN_RECV", "invalid state: fin original in ESTABLISHED", "invalid state: fin original in FIN_WAIT", "invalid state: fin original in CLOSE_WAIT", "invalid state: fin original in LAST_ACK", "invalid state: fin original in TIME_WAIT", "invalid state: fin original in CLOSE", "invalid state: fin original in SYN_SENT2"],
        ["invalid state: ack original in NONE", "invalid state: ack original in SYN_SENT", "invalid state: ack original in SYN_RECV", "invalid state: ack original in ESTABLISHED", "invalid state: ack original in FIN_WAIT", "invalid state: ack original in CLOSE_WAIT", "invalid state: ack original in LAST_ACK", "invalid state: ack original in TIME_WAIT", "invalid state: ack original in CLOSE", "invalid state: ack original in SYN_SENT2"],
        ["invalid state: rst original in NONE", "invalid state: rst original in SYN_SENT", "invalid state: rst original in SYN_RECV", "invalid state: rst original in ESTABLISHED", "invalid state: rst original in FIN_WAIT", "invalid state: rst original in CLOSE_WAIT", "invalid state: rst original in LAST_ACK", "invalid state: rst original in TIME_WAIT", "invalid state: rst original in CLOSE", "invalid state: rst original in SYN_SENT2"],
        ["invalid state: none original in NONE", "invalid state: none original in SYN_SENT", "invalid state: none original in SYN_RECV", "invalid state: none original in ESTABLISHED", "invalid state: none original in FIN_WAIT", "invalid state: none original in CLOSE_WAIT", "invalid state: none original in LAST_ACK", "invalid state: none original in TIME_WAIT", "invalid state: none original in CLOSE", "invalid state: none original in SYN_SENT2"],
    ],
    [
        ["invalid state: syn reply in NONE", "invalid state: syn reply in SYN_SENT", "invalid state: syn reply in SYN_RECV", "invalid state: syn reply in ESTABLISHED", "invalid state: syn reply in FIN_WAIT", "invalid state: syn reply in CLOSE_WAIT", "invalid state: syn reply in LAST_ACK", "invalid state: syn reply in TIME_WAIT", "invalid state: syn reply in CLOSE", "invalid state: syn reply in SYN_SENT2"],
        ["invalid state: synack reply in NONE", "invalid state: synack reply in SYN_SENT", "invalid state: synack reply in SYN_RECV", "invalid state: synack reply in ESTABLISHED", "invalid state: synack reply in FIN_WAIT", "invalid state: synack reply in CLOSE_WAIT", "invalid state: synack reply in LAST_ACK", "invalid state: synack reply in TIME_WAIT", "invalid state: synack reply in CLOSE", "invalid state: synack reply in SYN_SENT2"],
        ["invalid state: fin reply in NONE", "invalid state: fin reply in SYN_SENT", "invalid state: fin reply in SYN_RECV", "invalid state: fin reply in ESTABLISHED", "invalid state: fin reply in FIN_WAIT", "invalid state: fin reply in CLOSE_WAIT", "invalid state: fin reply in LAST_ACK", "invalid state: fin reply in TIME_WAIT", "invalid state: fin reply in CLOSE", "invalid state: fin reply in SYN_SENT2"],
        ["invalid state: ack reply in NONE", "invalid state: ack reply in SYN_SENT", "invalid state: ack reply in SYN_RECV", "invalid state: ack reply in ESTABLISHED", "invalid state: ack reply in FIN_WAIT", "invalid state: ack reply in CLOSE_WAIT", "invalid state: ack reply in LAST_ACK", "invalid state: ack reply in TIME_WAIT", "invalid state: ack reply in CLOSE", "invalid state: ack reply in SYN_SENT2"],
        ["invalid state: rst reply in NONE", "invalid state: rst reply in SYN_SENT", "invalid state: rst reply in SYN_RECV", "invalid state: rst reply in ESTABLISHED", "invalid state: rst reply in FIN_WAIT", "invalid state: rst reply in CLOSE_WAIT", "invalid state: rst reply in LAST_ACK", "invalid state: rst reply in TIME_WAIT", "invalid state: rst reply in CLOSE", "invalid state: rst reply in SYN_SENT2"],
        ["invalid state: none reply in NONE", "invalid state: none reply in SYN_SENT", "invalid state: none reply in SYN_RECV", "invalid state: none reply in ESTABLISHED", "invalid state: none reply in FIN_WAIT", "invalid state: none reply in CLOSE_WAIT", "invalid state: none reply in LAST_ACK", "invalid state: none reply in TIME_WAIT", "invalid state: none reply in CLOSE", "invalid state: none reply in SYN_SENT2"],
    ],
];

/// The `invalid state` message of a table cell.
fn invalid_cell(dir: Dir, index: Index, state: TcpState) -> &'static str {
    INVALID_CELLS
        .get(dir.index())
        .and_then(|d| d.get(index.row()))
        .and_then(|r| r.get(state.column()))
        .copied()
        .unwrap_or("invalid state")
}

/// Why a packet hit an sIG cell (`invalid packet ignored in state X`), RFC 5961 cases named.
fn ignored_note(dir: Dir, index: Index, state: TcpState) -> &'static str {
    match (dir, index, state) {
        (Dir::Original, Index::Syn, TcpState::LastAck) => "ignored SYN in LAST_ACK (challenge ACK expected)",
        (Dir::Original, Index::Syn, TcpState::TimeWait | TcpState::Close) => {
            "ignored SYN on a closed tuple not closed by its sender (may resync on the SYN/ACK)"
        }
        (Dir::Original, Index::Syn, _) => "ignored SYN on established tuple (challenge ACK expected)",
        (Dir::Reply, Index::SynAck, _) => "ignored SYN/ACK (may answer an ignored SYN)",
        (Dir::Reply, Index::Ack, TcpState::SynSent) => "ignored ACK in SYN_SENT (challenge ACK or stale)",
        (_, _, TcpState::None) => "invalid packet ignored in state NONE",
        (_, _, TcpState::SynSent) => "invalid packet ignored in state SYN_SENT",
        (_, _, TcpState::SynRecv) => "invalid packet ignored in state SYN_RECV",
        (_, _, TcpState::Established) => "invalid packet ignored in state ESTABLISHED",
        (_, _, TcpState::FinWait) => "invalid packet ignored in state FIN_WAIT",
        (_, _, TcpState::CloseWait) => "invalid packet ignored in state CLOSE_WAIT",
        (_, _, TcpState::LastAck) => "invalid packet ignored in state LAST_ACK",
        (_, _, TcpState::TimeWait) => "invalid packet ignored in state TIME_WAIT",
        (_, _, TcpState::Close) => "invalid packet ignored in state CLOSE",
        (_, _, TcpState::SynSent2) => "invalid packet ignored in state SYN_SENT2",
    }
}

// Per-direction flags (`IP_CT_TCP_FLAG_*`).
pub(crate) const F_WINDOW_SCALE: u8 = 0x01;
pub(crate) const F_SACK_PERM: u8 = 0x02;
pub(crate) const F_CLOSE_INIT: u8 = 0x04;
pub(crate) const F_BE_LIBERAL: u8 = 0x08;
pub(crate) const F_DATA_UNACKNOWLEDGED: u8 = 0x10;
pub(crate) const F_MAXACK_SET: u8 = 0x20;
// Connection-wide `last_flags` bits.
const F_EXP_CHALLENGE_ACK: u8 = 0x40;
const F_SIMULTANEOUS_OPEN: u8 = 0x80;

/// Largest window scale (RFC 7323).
const MAX_WSCALE: u8 = 14;
/// `MAXACKWINCONST`.
const MAX_ACK_WIN_CONST: u32 = 66000;

/// `before(a, b)`: a < b modulo 2^32.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
/// `after(a, b)`: a > b modulo 2^32.
fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// Window-tracking data of one direction (`struct ip_ct_tcp_state`). Packed to 2-byte alignment (18 bytes,
/// no padding) so that an entry's TCP state stays small; fields are only ever read and written by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C, packed(2))]
pub(crate) struct Seen {
    pub(crate) td_end: u32,
    pub(crate) td_maxend: u32,
    pub(crate) td_maxwin: u32,
    pub(crate) td_maxack: u32,
    pub(crate) td_scale: u8,
    pub(crate) flags: u8,
}

impl Seen {
    /// `nf_ct_tcp_state_reset`: forget everything but BE_LIBERAL.
    fn reset(&mut self) {
        *self = Seen { flags: self.flags & F_BE_LIBERAL, ..Seen::default() };
    }
}

/// Per-connection TCP state (`struct ip_ct_tcp`): 56 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpConn {
    pub(crate) seen: [Seen; 2],
    pub(crate) last_seq: u32,
    pub(crate) last_ack: u32,
    pub(crate) last_end: u32,
    pub(crate) last_win: u16,
    pub(crate) state: TcpState,
    pub(crate) last_dir: u8,
    pub(crate) retrans: u8,
    pub(crate) last_index: Index,
    pub(crate) last_wscale: u8,
    pub(crate) last_flags: u8,
}

/// What the caller must do after [`TcpConn::packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpOutcome {
    /// Accepted. `timeout`: refresh the timer to now + that many seconds (with accounting); `None` =
    /// do not touch timer nor counters (SYN retransmit on an unreplied SYN_SENT entry). `assured`:
    /// set ASSURED.
    Accept { timeout: Option<u32>, assured: bool, note: Option<&'static str> },
    /// Accepted, but the entry has never seen a reply and this is an RST: account, then delete it.
    Kill,
    /// Accepted without changing the entry (sIG cells, old retransmissions, challenge ACKs); the
    /// note says why (the kernel's log text where it has one).
    Ignore(&'static str),
    /// INVALID. `shrink`: the invalid FIN/RST rule asks to lower an ASSURED entry's timer to the
    /// unacknowledged timeout if at least 120 s remain (`nf_tcp_handle_invalid`).
    Invalid { reason: &'static str, shrink: bool },
    /// SYN reopening a TIME_WAIT/CLOSE entry: delete it and look the packet up again.
    Reopen,
}

enum Window {
    Accept,
    Ignore(&'static str),
    Invalid(&'static str),
}

/// `tcp_error`: flag combination check (PSH, ECE, CWR ignored). The truncation checks are done by the
/// decoder (`L4::Malformed`), the checksum by the caller.
pub(crate) fn flags_valid(flags: TcpFlags) -> bool {
    // The remaining bits (FIN, SYN, RST, ACK, URG) are below 64: one bit per valid combination.
    let f = flags.0 & !(TcpFlags::PSH | TcpFlags::ECE | TcpFlags::CWR);
    VALID_FLAGS >> f & 1 != 0
}

/// The valid combinations (`tcp_valid_flags`) of FIN, SYN, RST, ACK and URG, as bits of a mask.
const VALID_FLAGS: u64 = {
    const SYN: u8 = TcpFlags::SYN;
    const ACK: u8 = TcpFlags::ACK;
    const FIN: u8 = TcpFlags::FIN;
    const RST: u8 = TcpFlags::RST;
    const URG: u8 = TcpFlags::URG;
    1 << SYN
        | 1 << (SYN | URG)
        | 1 << (SYN | ACK)
        | 1 << RST
        | 1 << (RST | ACK)
        | 1 << (FIN | ACK)
        | 1 << (FIN | ACK | URG)
        | 1 << ACK
        | 1 << (ACK | URG)
};

/// `end` of a segment: seq + payload + SYN + FIN (`segment_seq_plus_len`).
pub(crate) fn segment_end(h: &TcpHeader<'_>) -> u32 {
    let len = u32::try_from(h.payload_len).unwrap_or(u32::MAX);
    h.seq.wrapping_add(len).wrapping_add(u32::from(h.flags.syn())).wrapping_add(u32::from(h.flags.fin()))
}

/// `tcp_options`: window scale (capped at 14) and SACK-permitted. With an empty option area nothing
/// changes; otherwise the scale and all flags but BE_LIBERAL are reset first.
fn parse_options(opts: &[u8], st: &mut Seen) {
    if opts.is_empty() {
        return;
    }
    st.td_scale = 0;
    st.flags &= F_BE_LIBERAL;
    let mut i = 0usize;
    while let Some(&kind) = opts.get(i) {
        match kind {
            0 => return, // EOL
            1 => {
                i += 1; // NOP
            }
            _ => {
                let remaining = opts.len() - i;
                if remaining < 2 {
                    return;
                }
                let size = usize::from(opts.get(i + 1).copied().unwrap_or(0));
                if size < 2 || size > remaining {
                    return; // silly or partial option
                }
                if kind == 4 && size == 2 {
                    st.flags |= F_SACK_PERM;
                } else if kind == 3 && size == 3 {
                    st.td_scale = opts.get(i + 2).copied().unwrap_or(0).min(MAX_WSCALE);
                    st.flags |= F_WINDOW_SCALE;
                }
                i += size;
            }
        }
    }
}

/// `tcp_sack`: the highest SACK right edge after `sack` (starting value: the ack number). The aligned
/// timestamp-only option block is skipped without parsing.
fn parse_sack(opts: &[u8], mut sack: u32) -> u32 {
    if opts.is_empty() || (opts.len() == 12 && opts.get(..4) == Some(&[1, 1, 8, 10][..])) {
        return sack;
    }
    let mut i = 0usize;
    while let Some(&kind) = opts.get(i) {
        match kind {
            0 => return sack,
            1 => i += 1,
            _ => {
                let remaining = opts.len() - i;
                if remaining < 2 {
                    return sack;
                }
                let size = usize::from(opts.get(i + 1).copied().unwrap_or(0));
                if size < 2 || size > remaining {
                    return sack;
                }
                if kind == 5 && size >= 10 && (size - 2) % 8 == 0 {
                    let mut j = 0usize;
                    while j < size - 2 {
                        let off = i + 2 + j + 4;
                        if let Some(b) = opts.get(off..off + 4) {
                            let edge = u32::from_be_bytes([
                                b.first().copied().unwrap_or(0),
                                b.get(1).copied().unwrap_or(0),
                                b.get(2).copied().unwrap_or(0),
                                b.get(3).copied().unwrap_or(0),
                            ]);
                            if after(edge, sack) {
                                sack = edge;
                            }
                        }
                        j += 8;
                    }
                    return sack;
                }
                i += size;
            }
        }
    }
    sack
}

/// The timeouts of the TCP tracker in seconds, indexed by state, then RETRANS and UNACK.
struct Timeouts<'a>(&'a Config);

impl Timeouts<'_> {
    fn state(&self, s: TcpState) -> u32 {
        let c = self.0;
        match s {
            TcpState::None => 0,
            TcpState::SynSent => c.tcp_timeout_syn_sent,
            TcpState::SynRecv => c.tcp_timeout_syn_recv,
            TcpState::Established => c.tcp_timeout_established,
            TcpState::FinWait => c.tcp_timeout_fin_wait,
            TcpState::CloseWait => c.tcp_timeout_close_wait,
            TcpState::LastAck => c.tcp_timeout_last_ack,
            TcpState::TimeWait => c.tcp_timeout_time_wait,
            TcpState::Close => c.tcp_timeout_close,
            // no sysctl: only a timeout policy could change it
            TcpState::SynSent2 => 120,
        }
    }
    fn retrans(&self) -> u32 {
        self.0.tcp_timeout_max_retrans
    }
    fn unack(&self) -> u32 {
        self.0.tcp_timeout_unacknowledged
    }
}

impl TcpConn {
    pub fn state(&self) -> TcpState {
        self.state
    }

    /// `tcp_new`: tracker state for a packet that creates an entry, or why it cannot.
    pub(crate) fn new_conn(cfg: &Config, h: &TcpHeader<'_>) -> Result<TcpConn, &'static str> {
        let index = Index::of(h.flags);
        let end = segment_end(h);
        let mut c = TcpConn::default();
        match lookup(Dir::Original, index, TcpState::None) {
            Cell::To(TcpState::SynSent) => {
                let s = &mut c.seen[0];
                s.td_end = end;
                s.td_maxwin = u32::from(h.window).max(1);
                s.td_maxend = end;
                parse_options(h.options, s);
            }
            Cell::To(_) => {
                if !cfg.tcp_loose {
                    return Err("invalid new: mid-stream pickup disabled (nf_conntrack_tcp_loose=0)");
                }
                // Picked up in the middle: history lost, use what the packet says and be liberal.
                let s = &mut c.seen[0];
                s.td_end = end;
                s.td_maxwin = u32::from(h.window).max(1);
                s.td_maxend = end.wrapping_add(s.td_maxwin);
                c.seen[0].flags = F_SACK_PERM | F_BE_LIBERAL;
                c.seen[1].flags = F_SACK_PERM | F_BE_LIBERAL;
            }
            Cell::Invalid | Cell::Ignore => return Err(invalid_cell(Dir::Original, index, TcpState::None)),
        }
        c.last_index = Index::None;
        Ok(c)
    }

    /// `nf_conntrack_tcp_packet` after the pre-checks: `status` is the entry's status before this
    /// packet (SEEN_REPLY not yet set for the first reply).
    pub(crate) fn packet(&mut self, cfg: &Config, dir: Dir, status: Status, h: &TcpHeader<'_>) -> TcpOutcome {
        let d = dir.index();
        let index = Index::of(h.flags);
        let mut old_state = self.state;
        let mut cell = lookup(dir, index, old_state);
        let mut check_window = true;

        // §3.5.1: a SYN reopening a closed connection.
        if cell == SS && old_state >= TcpState::TimeWait {
            let close_init = (self.seen[0].flags | self.seen[1].flags) & F_CLOSE_INIT != 0;
            if close_init || (usize::from(self.last_dir) == d && self.last_index == Index::Rst) {
                return TcpOutcome::Reopen;
            }
            cell = Cell::Ignore;
        }

        let mut new_state = match cell {
            Cell::Ignore => {
                // §3.5.2: SYN/ACK answering a SYN we ignored: both ends are in sync, we are not.
                if index == Index::SynAck
                    && self.last_index == Index::Syn
                    && usize::from(self.last_dir) != d
                    && h.ack == self.last_end
                {
                    old_state = TcpState::SynSent;
                    let ld = usize::from(self.last_dir) & 1;
                    self.last_flags &= !F_EXP_CHALLENGE_ACK;
                    let last_flags = self.last_flags;
                    if let Some(s) = self.seen.get_mut(ld) {
                        s.td_end = self.last_end;
                        s.td_maxend = self.last_end;
                        s.td_maxwin = u32::from(self.last_win).max(1);
                        s.td_scale = self.last_wscale;
                        s.flags = last_flags;
                    }
                    if let Some(s) = self.seen.get_mut(d) {
                        s.reset();
                    }
                    TcpState::SynRecv
                } else {
                    self.remember_ignored(dir, index, old_state, h);
                    return TcpOutcome::Ignore(ignored_note(dir, index, old_state));
                }
            }
            Cell::Invalid => {
                return TcpOutcome::Invalid { reason: invalid_cell(dir, index, old_state), shrink: false };
            }
            Cell::To(s) => s,
        };

        match new_state {
            // §3.5.4: RFC 5961 challenge ACK answering an ignored SYN in LAST_ACK.
            TcpState::TimeWait
                if old_state == TcpState::LastAck
                    && index == Index::Ack
                    && usize::from(self.last_dir) != d
                    && self.last_index == Index::Syn
                    && self.last_flags & F_EXP_CHALLENGE_ACK != 0 =>
            {
                self.last_flags &= !F_EXP_CHALLENGE_ACK;
                return TcpOutcome::Ignore("challenge ACK answering an ignored SYN (state kept)");
            }
            TcpState::SynSent2 => {
                // §3.5.5: simultaneous open.
                self.last_flags |= F_SIMULTANEOUS_OPEN;
            }
            // §3.5.6: the final ACK of a simultaneous open.
            TcpState::SynRecv
                if dir == Dir::Reply && index == Index::Ack && self.last_flags & F_SIMULTANEOUS_OPEN != 0 =>
            {
                new_state = TcpState::Established;
            }
            TcpState::Close if index == Index::Rst => {
                // §3.7
                match self.rst_check(cfg, dir, status, old_state, h) {
                    RstCheck::Window => {}
                    RstCheck::SkipWindow => check_window = false,
                    RstCheck::KeepState => new_state = old_state,
                    RstCheck::KeepStateSkipWindow => {
                        new_state = old_state;
                        check_window = false;
                    }
                    RstCheck::Invalid => return TcpOutcome::Invalid { reason: "invalid rst", shrink: false },
                }
            }
            _ => {}
        }

        if check_window {
            match self.in_window(cfg, dir, index, h) {
                Window::Accept => {}
                Window::Ignore(note) => return TcpOutcome::Ignore(note),
                Window::Invalid(reason) => {
                    let shrink = self.handle_invalid(dir, index, status);
                    return TcpOutcome::Invalid { reason, shrink };
                }
            }
        }

        // In window: commit.
        self.last_index = index;
        self.last_dir = d as u8;
        self.state = new_state;
        if old_state != new_state && new_state == TcpState::FinWait {
            if let Some(s) = self.seen.get_mut(d) {
                s.flags |= F_CLOSE_INIT;
            }
        }

        // §3.9 timeout selection.
        let t = Timeouts(cfg);
        let mut timeout = self.timeout_after(cfg, new_state, index == Index::Rst);

        if !status.seen_reply() {
            // Only an RST came back (or nothing yet): nothing established, drop the entry.
            if h.flags.rst() {
                return TcpOutcome::Kill;
            }
            // A retransmitted SYN must not keep an unanswered entry alive.
            if index == Index::Syn && old_state == TcpState::SynSent {
                return TcpOutcome::Accept {
                    timeout: None,
                    assured: false,
                    note: Some("retransmitted SYN on an unreplied entry (timer not refreshed)"),
                };
            }
            // Mid-stream pickup without reply: no 5-day timeout.
            if new_state == TcpState::Established && timeout > t.unack() {
                timeout = t.unack();
            }
            return TcpOutcome::Accept { timeout: Some(timeout), assured: false, note: None };
        }
        let assured = !status.assured()
            && matches!(old_state, TcpState::SynRecv | TcpState::Established)
            && new_state == TcpState::Established;
        TcpOutcome::Accept { timeout: Some(timeout), assured, note: None }
    }

    /// IGNORE bookkeeping (§3.5.2 "otherwise"): remember the packet so a later SYN/ACK, RST or
    /// challenge ACK can be recognised.
    fn remember_ignored(&mut self, dir: Dir, index: Index, old_state: TcpState, h: &TcpHeader<'_>) {
        self.last_index = index;
        self.last_dir = dir.index() as u8;
        self.last_seq = h.seq;
        self.last_end = segment_end(h);
        self.last_win = h.window;
        if index == Index::Syn && dir == Dir::Original {
            let mut seen = Seen::default();
            self.last_flags = 0;
            self.last_wscale = 0;
            parse_options(h.options, &mut seen);
            if seen.flags & F_WINDOW_SCALE != 0 {
                self.last_flags |= F_WINDOW_SCALE;
                self.last_wscale = seen.td_scale;
            }
            if seen.flags & F_SACK_PERM != 0 {
                self.last_flags |= F_SACK_PERM;
            }
            if old_state == TcpState::LastAck {
                self.last_flags |= F_EXP_CHALLENGE_ACK;
            }
        }
        if old_state == TcpState::SynSent && index == Index::Ack && dir == Dir::Reply {
            self.last_ack = h.ack;
        }
    }

    /// §3.7 RST validation (table result CLOSE for an RST).
    fn rst_check(
        &self,
        cfg: &Config,
        dir: Dir,
        status: Status,
        old_state: TcpState,
        h: &TcpHeader<'_>,
    ) -> RstCheck {
        // Closing already: the tuple may have been reused, skip all validation.
        if self.state.can_early_drop() {
            return RstCheck::SkipWindow;
        }
        let d = dir.index();
        let receiver = self.seen.get(1 - d).copied().unwrap_or_default();
        let established = self.state == TcpState::Established && status.assured();
        let mut keep_state = false;
        if receiver.flags & F_MAXACK_SET != 0 && self.last_index != Index::Syn {
            let seq = h.seq;
            if seq == 0 && !established {
                // most likely answering a SYN we let through
                return RstCheck::Window;
            }
            if before(seq, receiver.td_maxack) && !cfg.tcp_ignore_invalid_rst {
                return RstCheck::Invalid;
            }
            if !established || seq == receiver.td_maxack {
                return RstCheck::Window;
            }
            // RST right after data in the same direction ("RST in a data train")
            if self.last_index == Index::Ack && usize::from(self.last_dir) == d && seq == self.last_end {
                return RstCheck::Window;
            }
            // In window but not exact: keep the state so a challenge ACK can follow.
            keep_state = true;
        }
        // An RST answering a SYN we let through must come from the SYN's peer: the SYN case checks
        // that the RST travels the other way (an RST in the SYN's own direction, e.g. a client's
        // RFC 9293 reset of an unacceptable SYN/ACK, `<SEQ=SEG.ACK><CTL=RST>` with ack field 0, must
        // not match the `last_end` of its own SYN). The half-open ACK case has no direction check.
        let answers_let_through =
            ((status.seen_reply() && self.last_index == Index::Syn && usize::from(self.last_dir) != d)
                || (!status.assured() && self.last_index == Index::Ack))
                && h.ack == self.last_end;
        let answers_challenge = old_state == TcpState::SynSent
            && self.last_index == Index::Ack
            && self.last_dir == 1
            && h.seq == self.last_ack;
        match (answers_let_through || answers_challenge, keep_state) {
            (true, false) => RstCheck::SkipWindow,
            (true, true) => RstCheck::KeepStateSkipWindow,
            (false, false) => RstCheck::Window,
            (false, true) => RstCheck::KeepState,
        }
    }

    /// `nf_tcp_handle_invalid`: returns whether the caller should lower the timer.
    fn handle_invalid(&mut self, dir: Dir, index: Index, status: Status) -> bool {
        if !status.assured() {
            return false;
        }
        if !matches!(index, Index::Rst | Index::Fin) {
            return false;
        }
        if usize::from(self.last_dir) != dir.index() && matches!(self.last_index, Index::Fin | Index::Rst) {
            return true;
        }
        self.last_index = index;
        self.last_dir = dir.index() as u8;
        false
    }

    /// `tcp_in_window` (§3.6).
    /// The timeout (seconds) an accepted packet moving the entry to `new_state` sets (reference §3.9):
    /// the retransmission timeout after too many retransmissions, the CLOSE timeout for an RST (6.18),
    /// the unacknowledged-data timeout while data is unacknowledged, the retransmission timeout after a
    /// zero window, each only when shorter than the state's own.
    #[inline(always)]
    fn timeout_after(&self, cfg: &Config, new_state: TcpState, rst: bool) -> u32 {
        let t = Timeouts(cfg);
        let t_new = t.state(new_state);
        let any_unacked = (self.seen[0].flags | self.seen[1].flags) & F_DATA_UNACKNOWLEDGED != 0;
        if self.retrans >= cfg.tcp_max_retrans && t_new > t.retrans() {
            t.retrans()
        } else if rst {
            t.state(TcpState::Close)
        } else if any_unacked && t_new > t.unack() {
            t.unack()
        } else if self.last_win == 0 && t_new > t.retrans() {
            t.retrans()
        } else {
            t_new
        }
    }

    fn in_window(&mut self, cfg: &Config, dir: Dir, index: Index, h: &TcpHeader<'_>) -> Window {
        let d = dir.index();
        let state = self.state;
        let [s0, s1] = &mut self.seen;
        let (sender, receiver) = if d == 0 { (s0, s1) } else { (s1, s0) };

        let mut seq = h.seq;
        let mut ack = h.ack;
        let mut sack = ack;
        let win_raw = h.window;
        let win = u32::from(win_raw);
        let mut end = segment_end(h);
        let syn = h.flags.syn();
        let has_ack = h.flags.ack();
        let rst = h.flags.rst();

        if receiver.flags & F_SACK_PERM != 0 {
            sack = parse_sack(h.options, sack);
        }
        // (NAT sequence adjustment would correct ack/sack here.)

        if sender.td_maxwin == 0 {
            // First packet seen from this direction.
            if syn {
                init_sender(sender, receiver, h.options, end, win, dir);
                if !has_ack {
                    // simultaneous open
                    return Window::Accept;
                }
            } else {
                // Mid-stream: use the packet's data.
                sender.td_end = end;
                let swin = win << sender.td_scale.min(MAX_WSCALE);
                sender.td_maxwin = swin.max(1);
                sender.td_maxend = end.wrapping_add(sender.td_maxwin);
                if receiver.td_maxwin == 0 {
                    // the other direction is unknown too: make checks 2 and 4 pass
                    receiver.td_end = sack;
                    receiver.td_maxend = sack;
                } else if sack == receiver.td_end.wrapping_add(1) {
                    // likely a keepalive reply
                    receiver.td_end = receiver.td_end.wrapping_add(1);
                }
            }
        } else if syn && after(end, sender.td_end) && matches!(state, TcpState::SynSent | TcpState::SynRecv) {
            // A new SYN (RFC 793 reinitialisation): start over for this direction.
            init_sender(sender, receiver, h.options, end, win, dir);
            if dir == Dir::Reply && !has_ack {
                return Window::Accept;
            }
        }

        if !has_ack || (rst && ack == 0) {
            // No ACK (or a broken RST|ACK with ack 0): pretend it acknowledges everything seen.
            ack = receiver.td_end;
            sack = receiver.td_end;
        }
        if rst && seq == 0 && state == TcpState::SynSent {
            // RST answering a SYN
            seq = sender.td_end;
            end = sender.td_end;
        }

        let liberal = cfg.tcp_be_liberal || sender.flags & F_BE_LIBERAL != 0;
        let fail = |verdict: Window| if liberal { Window::Accept } else { verdict };
        let max_ack_window = sender.td_maxwin.max(MAX_ACK_WIN_CONST);

        // 1. upper bound for sequence numbers
        if !before(seq, sender.td_maxend.wrapping_add(1)) {
            let overshot = end.wrapping_sub(sender.td_maxend).wrapping_add(1);
            let ack_ok = after(sack, receiver.td_end.wrapping_sub(max_ack_window).wrapping_sub(1));
            let in_recv_win = receiver.td_maxwin != 0
                && after(end, sender.td_end.wrapping_sub(receiver.td_maxwin).wrapping_sub(1));
            if in_recv_win
                && ack_ok
                && overshot <= receiver.td_maxwin
                && before(sack, receiver.td_end.wrapping_add(1))
            {
                // A sender exceeding the window a little: let the peer's ACK for it through later.
                sender.td_end = end;
                sender.flags |= F_DATA_UNACKNOWLEDGED;
                return fail(Window::Ignore("bytes more than expected (sender overshot the window)"));
            }
            return fail(Window::Invalid("SEQ is over upper bound (over the window of the receiver)"));
        }
        // 2. upper bound for acknowledgements
        if !before(sack, receiver.td_end.wrapping_add(1)) {
            return fail(Window::Invalid("ACK is over upper bound (ACKed data not seen yet)"));
        }
        // 3. lower bound for sequence numbers
        let in_recv_win = receiver.td_maxwin == 0
            || after(end, sender.td_end.wrapping_sub(receiver.td_maxwin).wrapping_sub(1));
        if !in_recv_win {
            return fail(Window::Ignore("SEQ is under lower bound (already ACKed data retransmitted)"));
        }
        // 4. lower bound for acknowledgements
        if !after(sack, receiver.td_end.wrapping_sub(max_ack_window).wrapping_sub(1)) {
            return fail(Window::Ignore("ignored ACK under lower bound (possible overly delayed)"));
        }

        self.record_window(d, index, Accepted { seq, ack, sack, win, win_raw, end, syn, has_ack });
        Window::Accept
    }

    /// The fast steps' window test: for an ACK-only segment (no SYN) from direction `d`, what
    /// [`TcpConn::record_window`] records when all four checks of `tcp_in_window` pass without relying on
    /// "be liberal"; `None` when one fails, or when the sender's window is not initialised yet
    /// (`td_maxwin` 0: its first packet, which the full tracker takes).
    #[inline(always)]
    fn ack_in_window(&self, d: usize, h: &TcpHeader<'_>) -> Option<Accepted> {
        let (sender, receiver) =
            if d == 0 { (self.seen[0], self.seen[1]) } else { (self.seen[1], self.seen[0]) };
        if sender.td_maxwin == 0 {
            return None;
        }
        let seq = h.seq;
        let ack = h.ack;
        let sack = if receiver.flags & F_SACK_PERM != 0 { parse_sack(h.options, ack) } else { ack };
        let end = segment_end(h);
        let max_ack_window = sender.td_maxwin.max(MAX_ACK_WIN_CONST);
        let in_window = before(seq, sender.td_maxend.wrapping_add(1))
            && before(sack, receiver.td_end.wrapping_add(1))
            && (receiver.td_maxwin == 0
                || after(end, sender.td_end.wrapping_sub(receiver.td_maxwin).wrapping_sub(1)))
            && after(sack, receiver.td_end.wrapping_sub(max_ack_window).wrapping_sub(1));
        let win = u32::from(h.window);
        in_window.then_some(Accepted {
            seq,
            ack,
            sack,
            win,
            win_raw: h.window,
            end,
            syn: false,
            has_ack: true,
        })
    }

    /// `tcp_in_window` once a segment passed the checks: the window bookkeeping of both directions and
    /// the retransmission counter (shared by [`TcpConn::in_window`] and the fast steps).
    #[inline(always)]
    fn record_window(&mut self, d: usize, index: Index, a: Accepted) {
        let Accepted { seq, ack, sack, mut win, win_raw, end, syn, has_ack } = a;
        let [s0, s1] = &mut self.seen;
        let (sender, receiver) = if d == 0 { (s0, s1) } else { (s1, s0) };
        if !syn {
            win <<= sender.td_scale.min(MAX_WSCALE);
        }
        let swin = win.wrapping_add(sack.wrapping_sub(ack));
        if sender.td_maxwin < swin {
            sender.td_maxwin = swin;
        }
        if after(end, sender.td_end) {
            sender.td_end = end;
            sender.flags |= F_DATA_UNACKNOWLEDGED;
        }
        if has_ack {
            if sender.flags & F_MAXACK_SET == 0 {
                sender.td_maxack = ack;
                sender.flags |= F_MAXACK_SET;
            } else if after(ack, sender.td_maxack) {
                sender.td_maxack = ack;
            }
        }
        if receiver.td_maxwin != 0 && after(end, sender.td_maxend) {
            receiver.td_maxwin = receiver.td_maxwin.wrapping_add(end.wrapping_sub(sender.td_maxend));
        }
        if after(sack.wrapping_add(win), receiver.td_maxend.wrapping_sub(1)) {
            receiver.td_maxend = sack.wrapping_add(win);
            if win == 0 {
                receiver.td_maxend = receiver.td_maxend.wrapping_add(1);
            }
        }
        if ack == receiver.td_end {
            receiver.flags &= !F_DATA_UNACKNOWLEDGED;
        }

        // Retransmission counter: identical pure ACK-class packets in a row.
        if index == Index::Ack {
            if usize::from(self.last_dir) == d
                && self.last_seq == seq
                && self.last_ack == ack
                && self.last_end == end
                && self.last_win == win_raw
            {
                self.retrans = self.retrans.saturating_add(1);
            } else {
                self.last_dir = d as u8;
                self.last_seq = seq;
                self.last_ack = ack;
                self.last_end = end;
                self.last_win = win_raw;
                self.retrans = 0;
            }
        }
    }

    /// The common case of [`TcpConn::packet`], decided without the state table: an ESTABLISHED entry
    /// that has seen a reply receives an ACK (PSH, ECE and CWR allowed, nothing else) from a direction
    /// whose window is known, and the segment passes all four `tcp_in_window` checks on its own (not
    /// through BE_LIBERAL). Then it makes exactly the changes [`TcpConn::packet`] makes and returns
    /// what that returns as [`TcpOutcome::Accept`] (the timeout; ASSURED is to be set unless it is).
    /// `None` for anything else, with the entry untouched: the caller runs [`TcpConn::packet`].
    #[inline(always)]
    pub(crate) fn established_ack(
        &mut self,
        cfg: &Config,
        dir: Dir,
        status: Status,
        h: &TcpHeader<'_>,
    ) -> Option<(u32, bool)> {
        const IGNORED: u8 = TcpFlags::PSH | TcpFlags::ECE | TcpFlags::CWR;
        // ESTABLISHED x ack -> ESTABLISHED in both directions (no special case applies).
        if self.state != TcpState::Established
            || h.flags.0 & !IGNORED != TcpFlags::ACK
            || !status.seen_reply()
        {
            return None;
        }
        let d = dir.index();
        let a = self.ack_in_window(d, h)?;
        self.record_window(d, Index::Ack, a);
        // (`last_dir` is `d` already: the retransmission bookkeeping of an ACK sets it)
        self.last_index = Index::Ack;
        // §3.9 for ESTABLISHED (not an RST).
        let timeout = self.timeout_after(cfg, TcpState::Established, false);
        Some((timeout, !status.assured()))
    }
}

impl TcpConn {
    /// The common cases of [`TcpConn::packet`] beyond [`TcpConn::established_ack`], decided without the state
    /// table's lookup and the special cases that cannot apply: an ACK or FIN|ACK (PSH, ECE and CWR allowed,
    /// nothing else) on an entry in SYN_RECV .. CLOSE, from a direction whose window is known, passing all
    /// four `tcp_in_window` checks on its own (not through BE_LIBERAL), and none of the special cases of
    /// §3.5 in play (the challenge ACK of §3.5.4, the simultaneous open's final ACK of §3.5.6). Then it makes
    /// exactly the changes [`TcpConn::packet`] makes and returns what that returns as [`TcpOutcome::Accept`]
    /// (the timeout; whether to set ASSURED). `None` for anything else, with the entry untouched.
    #[inline(always)]
    pub(crate) fn known_step(
        &mut self,
        cfg: &Config,
        dir: Dir,
        status: Status,
        h: &TcpHeader<'_>,
    ) -> Option<(u32, bool)> {
        const IGNORED: u8 = TcpFlags::PSH | TcpFlags::ECE | TcpFlags::CWR;
        let d = dir.index();
        let old_state = self.state;
        let fin = match h.flags.0 & !IGNORED {
            TcpFlags::ACK => false,
            f if f == TcpFlags::ACK | TcpFlags::FIN => true,
            _ => return None,
        };
        let index = if fin { Index::Fin } else { Index::Ack };
        // The transition table's cells for fin and ack in these states (both directions alike but for an
        // ack in SYN_RECV: the reply's keeps SYN_RECV).
        let new_state = match (old_state, fin) {
            (TcpState::SynRecv | TcpState::Established, true) => TcpState::FinWait,
            (TcpState::FinWait | TcpState::CloseWait | TcpState::LastAck, true) => TcpState::LastAck,
            (TcpState::SynRecv, false) if dir == Dir::Reply => {
                // §3.5.6: the final ACK of a simultaneous open (the full tracker)
                if self.last_flags & F_SIMULTANEOUS_OPEN != 0 {
                    return None;
                }
                TcpState::SynRecv
            }
            (TcpState::SynRecv | TcpState::Established, false) => TcpState::Established,
            (TcpState::FinWait | TcpState::CloseWait, false) => TcpState::CloseWait,
            (TcpState::LastAck, false) => {
                // §3.5.4: a challenge ACK answering an ignored SYN (the full tracker)
                if usize::from(self.last_dir) != d
                    && self.last_index == Index::Syn
                    && self.last_flags & F_EXP_CHALLENGE_ACK != 0
                {
                    return None;
                }
                TcpState::TimeWait
            }
            (TcpState::TimeWait, _) => TcpState::TimeWait,
            (TcpState::Close, _) => TcpState::Close,
            (TcpState::None | TcpState::SynSent | TcpState::SynSent2, _) => return None,
        };
        let a = self.ack_in_window(d, h)?;
        self.record_window(d, index, a);
        // In window: commit.
        self.last_index = index;
        self.last_dir = d as u8;
        self.state = new_state;
        if old_state != new_state && new_state == TcpState::FinWait {
            if let Some(s) = self.seen.get_mut(d) {
                s.flags |= F_CLOSE_INIT;
            }
        }
        // §3.9 (not an RST)
        let timeout = self.timeout_after(cfg, new_state, false);
        if !status.seen_reply() {
            // Mid-stream pickup without reply: no 5-day timeout.
            let unack = Timeouts(cfg).unack();
            let timeout = if new_state == TcpState::Established && timeout > unack { unack } else { timeout };
            return Some((timeout, false));
        }
        let assured = !status.assured()
            && matches!(old_state, TcpState::SynRecv | TcpState::Established)
            && new_state == TcpState::Established;
        Some((timeout, assured))
    }
}

impl TcpConn {
    /// The handshake's first two packets as [`TcpConn::packet`] takes them, without the state table's lookup
    /// and the special cases that cannot apply: a SYN (PSH, ECE and CWR allowed, nothing else) from the
    /// original direction on an entry [`TcpConn::new_conn`] just made (NONE, its window known), or a SYN/ACK
    /// from the reply direction on a SYN_SENT entry whose reply direction was never seen (its window is
    /// initialised from the SYN/ACK, `tcp_init_sender`), either passing all four `tcp_in_window` checks on its
    /// own. Then it makes exactly the changes [`TcpConn::packet`] makes and returns its [`TcpOutcome::Accept`]
    /// timeout (never ASSURED: the new state is not ESTABLISHED; nor the retransmitted SYN's or the mid-stream
    /// rule, which need SYN_SENT before a SYN or ESTABLISHED after). `None` for anything else, entry untouched.
    #[inline(always)]
    pub(crate) fn handshake_step(&mut self, cfg: &Config, dir: Dir, h: &TcpHeader<'_>) -> Option<u32> {
        const IGNORED: u8 = TcpFlags::PSH | TcpFlags::ECE | TcpFlags::CWR;
        let flags = h.flags.0 & !IGNORED;
        let (index, new_state) = match (self.state, dir) {
            (TcpState::None, Dir::Original) if flags == TcpFlags::SYN => (Index::Syn, TcpState::SynSent),
            (TcpState::SynSent, Dir::Reply) if flags == TcpFlags::SYN | TcpFlags::ACK => {
                (Index::SynAck, TcpState::SynRecv)
            }
            _ => return None,
        };
        let d = dir.index();
        let (mut sender, mut receiver) =
            if d == 0 { (self.seen[0], self.seen[1]) } else { (self.seen[1], self.seen[0]) };
        let seq = h.seq;
        let win = u32::from(h.window);
        let end = segment_end(h);
        let (ack, sack) = if index == Index::Syn {
            // `tcp_new` initialised the sender; no ACK: it acknowledges everything seen
            if sender.td_maxwin == 0 {
                return None;
            }
            (receiver.td_end, receiver.td_end)
        } else {
            // the reply direction's first packet: `tcp_init_sender` (on copies until the checks pass)
            if sender.td_maxwin != 0 {
                return None;
            }
            let sack = if receiver.flags & F_SACK_PERM != 0 { parse_sack(h.options, h.ack) } else { h.ack };
            init_sender(&mut sender, &mut receiver, h.options, end, win, dir);
            (h.ack, sack)
        };
        let max_ack_window = sender.td_maxwin.max(MAX_ACK_WIN_CONST);
        // The four checks of `tcp_in_window`, all passed.
        let in_window = before(seq, sender.td_maxend.wrapping_add(1))
            && before(sack, receiver.td_end.wrapping_add(1))
            && (receiver.td_maxwin == 0
                || after(end, sender.td_end.wrapping_sub(receiver.td_maxwin).wrapping_sub(1)))
            && after(sack, receiver.td_end.wrapping_sub(max_ack_window).wrapping_sub(1));
        if !in_window {
            return None;
        }
        if d == 0 {
            self.seen = [sender, receiver];
        } else {
            self.seen = [receiver, sender];
        }
        self.record_window(
            d,
            index,
            Accepted {
                seq,
                ack,
                sack,
                win,
                win_raw: h.window,
                end,
                syn: true,
                has_ack: index == Index::SynAck,
            },
        );
        // In window: commit.
        self.last_index = index;
        self.last_dir = d as u8;
        self.state = new_state;
        // §3.9 (not an RST)
        Some(self.timeout_after(cfg, new_state, false))
    }
}

/// What [`TcpConn::record_window`] needs of an accepted segment (`win`: the raw window, not scaled).
#[derive(Clone, Copy)]
struct Accepted {
    seq: u32,
    ack: u32,
    sack: u32,
    win: u32,
    win_raw: u16,
    end: u32,
    syn: bool,
    has_ack: bool,
}

enum RstCheck {
    Window,
    SkipWindow,
    KeepState,
    KeepStateSkipWindow,
    Invalid,
}

/// `tcp_init_sender`: (re)initialise a direction from its SYN or SYN/ACK.
fn init_sender(sender: &mut Seen, receiver: &mut Seen, opts: &[u8], end: u32, win: u32, dir: Dir) {
    sender.td_end = end;
    sender.td_maxend = end;
    sender.td_maxwin = win.max(1);
    parse_options(opts, sender);
    // RFC 7323: scaling only if both sides sent the option.
    if dir == Dir::Reply && !(sender.flags & F_WINDOW_SCALE != 0 && receiver.flags & F_WINDOW_SCALE != 0) {
        sender.td_scale = 0;
        receiver.td_scale = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::field_reassign_with_default)]
    use super::*;
    use crate::testutil::*;
    use crate::Config;

    #[test]
    fn state_names() {
        assert_eq!(TcpState::SynSent.to_string(), "SYN_SENT");
        assert_eq!(TcpState::SynSent2.to_string(), "SYN_SENT2");
        assert_eq!(TcpState::Established.name(), "ESTABLISHED");
    }

    #[test]
    fn flag_combinations() {
        let ok = |f: u8| flags_valid(TcpFlags(f));
        assert!(ok(TcpFlags::SYN));
        assert!(ok(TcpFlags::SYN | TcpFlags::ACK));
        assert!(ok(TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR));
        assert!(ok(TcpFlags::ACK | TcpFlags::PSH));
        assert!(ok(TcpFlags::FIN | TcpFlags::ACK | TcpFlags::URG));
        assert!(ok(TcpFlags::RST));
        assert!(ok(TcpFlags::RST | TcpFlags::ACK));
        assert!(!ok(0));
        assert!(!ok(TcpFlags::FIN));
        assert!(!ok(TcpFlags::SYN | TcpFlags::FIN));
        assert!(!ok(TcpFlags::SYN | TcpFlags::RST));
        assert!(!ok(TcpFlags::SYN | TcpFlags::ACK | TcpFlags::URG));
        assert!(!ok(TcpFlags::FIN | TcpFlags::PSH | TcpFlags::URG));
        assert!(!ok(TcpFlags::RST | TcpFlags::FIN));
        assert!(!ok(TcpFlags::URG));
        // every byte: the list of `tcp_valid_flags`, PSH, ECE and CWR ignored
        let list = [0x02u8, 0x22, 0x12, 0x04, 0x14, 0x11, 0x31, 0x10, 0x30];
        for f in 0..=255u8 {
            assert_eq!(ok(f), list.contains(&(f & !0xc8)), "flags {f:#04x}");
        }
    }

    #[test]
    fn seq_comparisons_wrap() {
        assert!(before(0xffff_fff0, 5));
        assert!(after(5, 0xffff_fff0));
        assert!(!before(5, 5));
    }

    #[test]
    fn options_parse_wscale_clamped_and_sack_perm() {
        let mut s = Seen { flags: F_BE_LIBERAL | F_CLOSE_INIT, ..Seen::default() };
        // MSS, SACK-perm, NOP, wscale 15
        parse_options(&[2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 15], &mut s);
        assert_eq!(s.td_scale, 14);
        assert_eq!(s.flags, F_BE_LIBERAL | F_SACK_PERM | F_WINDOW_SCALE);
        // a partial option stops parsing
        let mut s = Seen::default();
        parse_options(&[3, 3], &mut s);
        assert_eq!(s.flags, 0);
        // empty options leave everything untouched
        let mut s = Seen { td_scale: 7, flags: F_CLOSE_INIT, ..Seen::default() };
        parse_options(&[], &mut s);
        assert_eq!((s.td_scale, s.flags), (7, F_CLOSE_INIT));
    }

    #[test]
    fn sack_blocks_raise_the_ack() {
        // NOP NOP SACK with two blocks: [100,200) [300,400)
        let mut o = vec![1, 1, 5, 18];
        for v in [100u32, 200, 300, 400] {
            o.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(parse_sack(&o, 50), 400);
        assert_eq!(parse_sack(&o, 500), 500);
        // timestamp-only block is skipped
        assert_eq!(parse_sack(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], 7), 7);
    }

    #[test]
    fn table_matches_reference_cells() {
        assert_eq!(lookup(Dir::Original, Index::Syn, TcpState::None), SS);
        assert_eq!(lookup(Dir::Original, Index::SynAck, TcpState::SynRecv), SR);
        assert_eq!(lookup(Dir::Reply, Index::Syn, TcpState::TimeWait), SS);
        assert_eq!(lookup(Dir::Reply, Index::Ack, TcpState::SynSent), IG);
        assert_eq!(lookup(Dir::Reply, Index::SynAck, TcpState::SynSent), SR);
        assert_eq!(lookup(Dir::Original, Index::Ack, TcpState::SynSent), IV);
        assert_eq!(lookup(Dir::Original, Index::Fin, TcpState::CloseWait), LA);
        assert_eq!(lookup(Dir::Reply, Index::Rst, TcpState::SynSent2), CL);
        assert_eq!(lookup(Dir::Reply, Index::None, TcpState::Established), IV);
    }

    // ----- packet exchanges (client A:41000 ISN 1000, server B:8000 ISN 5000) -----

    const SYN_OPTS: [u8; 12] = [2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 7, 1, 1];

    fn c2s(flags: &'static str, seq: u32, ack: u32) -> Seg {
        tcp(A, 41000, B, 8000, flags, seq, ack)
    }
    fn s2c(flags: &'static str, seq: u32, ack: u32) -> Seg {
        tcp(B, 8000, A, 41000, flags, seq, ack)
    }

    /// SYN, SYN/ACK, ACK at t = 0, 0.01, 0.02.
    fn handshake(lab: &mut Lab) {
        assert_eq!(info(lab.pass(0.0, &c2s("S", 1000, 0).opts(&SYN_OPTS).bytes())), "NEW");
        assert_eq!(
            info(lab.pass(0.01, &s2c("SA", 5000, 1001).win(65160).opts(&SYN_OPTS).bytes())),
            "ESTABLISHED_REPLY"
        );
        assert_eq!(info(lab.pass(0.02, &c2s("A", 1001, 5001).win(502).bytes())), "ESTABLISHED");
    }

    #[test]
    fn three_way_handshake_is_assured_by_the_third_packet() {
        let mut lab = Lab::new();
        lab.pass(0.0, &c2s("S", 1000, 0).opts(&SYN_OPTS).bytes());
        assert_eq!(
            lab.proc(0.5),
            "ipv4     2 tcp      6 119 SYN_SENT src=10.99.0.1 dst=10.99.0.2 sport=41000 dport=8000 [UNREPLIED] src=10.99.0.2 dst=10.99.0.1 sport=8000 dport=41000 mark=0 zone=0 use=2\n"
        );
        lab.pass(0.01, &s2c("SA", 5000, 1001).win(65160).opts(&SYN_OPTS).bytes());
        // SYN_RECV: replied, not assured (reference §9 T3g)
        assert_eq!(
            lab.list(1.01),
            "tcp      6 59 SYN_RECV src=10.99.0.1 dst=10.99.0.2 sport=41000 dport=8000 src=10.99.0.2 dst=10.99.0.1 sport=8000 dport=41000 mark=0 use=1\n"
        );
        lab.pass(0.02, &c2s("A", 1001, 5001).win(502).bytes());
        assert_eq!(
            lab.proc(1.0),
            "ipv4     2 tcp      6 431999 ESTABLISHED src=10.99.0.1 dst=10.99.0.2 sport=41000 dport=8000 src=10.99.0.2 dst=10.99.0.1 sport=8000 dport=41000 [ASSURED] mark=0 zone=0 use=2\n"
        );
        assert_eq!(
            lab.list(1.0),
            "tcp      6 431999 ESTABLISHED src=10.99.0.1 dst=10.99.0.2 sport=41000 dport=8000 src=10.99.0.2 dst=10.99.0.1 sport=8000 dport=41000 [ASSURED] mark=0 use=1\n"
        );
        // window scale 7 negotiated by both sides
        let c = lab.ct.iter().next().unwrap();
        let ProtoStateView { scales, .. } = view(c);
        assert_eq!(scales, [7, 7]);
    }

    struct ProtoStateView {
        scales: [u8; 2],
    }
    fn view(c: &crate::Conn) -> ProtoStateView {
        match &c.proto {
            crate::conn::ProtoState::Tcp(t) => {
                ProtoStateView { scales: [t.seen[0].td_scale, t.seen[1].td_scale] }
            }
            _ => panic!("not tcp"),
        }
    }

    #[test]
    fn wscale_only_counts_when_both_sides_send_it() {
        let mut lab = Lab::new();
        lab.pass(0.0, &c2s("S", 1000, 0).opts(&SYN_OPTS).bytes());
        lab.pass(0.01, &s2c("SA", 5000, 1001).opts(&[2, 4, 5, 0xb4]).bytes());
        let c = lab.ct.iter().next().unwrap();
        assert_eq!(view(c).scales, [0, 0]);
    }

    #[test]
    fn a_far_out_of_window_ack_is_invalid_and_changes_nothing() {
        // reference §9 T3 / T9
        let mut lab = Lab::new();
        handshake(&mut lab);
        let before = lab.ct.iter().next().unwrap().expires();
        let bogus = c2s("A", 1001u32.wrapping_add(1 << 31), 5001).bytes();
        assert_eq!(info(lab.pass(1.0, &bogus)), "INVALID");
        assert_eq!(lab.ct.stats().invalid, 1);
        assert_eq!(lab.only(2.0), ("ESTABLISHED".into(), 431998));
        assert_eq!(lab.ct.iter().next().unwrap().expires(), before);
        // with be_liberal the same packet is accepted
        let mut cfg = Config::default();
        cfg.tcp_be_liberal = true;
        let mut lab = Lab::with(cfg);
        handshake(&mut lab);
        assert_eq!(info(lab.pass(1.0, &bogus)), "ESTABLISHED");
    }

    #[test]
    fn rst_below_max_ack_is_invalid_in_window_keeps_state_exact_closes() {
        // reference §9 T3 / T10
        let mut lab = Lab::new();
        handshake(&mut lab);
        assert_eq!(info(lab.pass(1.0, &c2s("R", 900, 0).bytes())), "INVALID");
        assert_eq!(lab.only(1.0).0, "ESTABLISHED");
        // in window, not exact: state kept for a challenge ACK, CLOSE timeout
        assert_eq!(info(lab.pass(2.0, &c2s("R", 1051, 0).bytes())), "ESTABLISHED");
        assert_eq!(lab.only(2.5), ("ESTABLISHED".into(), 9));
        // the exact one closes
        assert_eq!(info(lab.pass(3.0, &c2s("R", 1001, 0).bytes())), "ESTABLISHED");
        assert_eq!(lab.only(3.5), ("CLOSE".into(), 9));
        assert!(lab.proc(3.5).contains(" 9 CLOSE src=") && lab.proc(3.5).contains("[ASSURED]"));
    }

    #[test]
    fn ignore_invalid_rst_keeps_state_with_the_close_timer() {
        // reference §9 T9
        let mut cfg = Config::default();
        cfg.tcp_ignore_invalid_rst = true;
        let mut lab = Lab::with(cfg);
        handshake(&mut lab);
        assert_eq!(info(lab.pass(1.0, &c2s("R", 900, 0).bytes())), "ESTABLISHED");
        assert_eq!(lab.only(1.5), ("ESTABLISHED".into(), 9));
        // be_liberal does not waive the RST rule
        let mut cfg = Config::default();
        cfg.tcp_be_liberal = true;
        let mut lab = Lab::with(cfg);
        handshake(&mut lab);
        assert_eq!(info(lab.pass(1.0, &c2s("R", 900, 0).bytes())), "INVALID");
    }

    #[test]
    fn rst_answering_a_syn_deletes_the_unreplied_entry() {
        // reference §9 T3f: SYN to a closed port, RST|ACK back
        let mut lab = Lab::new();
        lab.pass(0.0, &tcp(A, 41001, B, 8009, "S", 1000, 0).bytes());
        let r = lab.pass(0.001, &tcp(B, 8009, A, 41001, "RA", 0, 1001).bytes());
        assert_eq!(info(r), "ESTABLISHED_REPLY");
        assert_eq!(lab.ct.len(), 0);
        // the packet still refers to the (dying) entry until the next packet
        if let crate::InResult::Tracked { id, .. } = r {
            assert!(lab.ct.conn(id).is_some_and(|c| c.status().dying()));
        }
        assert_eq!(lab.ct.count(), 1);
        assert_eq!(info(lab.pass(1.0, &tcp(A, 41001, B, 8009, "S", 2000, 0).bytes())), "NEW");
        assert_eq!((lab.ct.len(), lab.ct.count()), (1, 1));
    }

    #[test]
    fn packets_that_cannot_start_a_connection_are_invalid() {
        // reference §9 T3h / T3k
        let mut lab = Lab::new();
        assert_eq!(info(lab.pass(0.0, &c2s("SA", 1000, 1).bytes())), "INVALID");
        assert_eq!(info(lab.pass(0.0, &c2s("SF", 1000, 0).bytes())), "INVALID");
        assert_eq!(info(lab.pass(0.0, &c2s("FA", 1000, 1).bytes())), "INVALID");
        assert_eq!(info(lab.pass(0.0, &c2s("R", 1000, 0).bytes())), "INVALID");
        assert_eq!(info(lab.pass(0.0, &c2s("FPU", 1000, 0).bytes())), "INVALID");
        assert_eq!(info(lab.pass(0.0, &c2s("", 1000, 0).bytes())), "INVALID");
        assert_eq!(info(lab.pass(0.0, &c2s("S", 1000, 0).bad_checksum().bytes())), "INVALID");
        assert_eq!(lab.ct.stats().invalid, 7);
        assert_eq!(lab.ct.count(), 0);
        // checksums are not verified for locally generated packets, nor with checksum=0
        lab.hook = crate::Hook::LocalOut;
        assert_eq!(info(lab.pass(0.0, &c2s("S", 1000, 0).bad_checksum().bytes())), "NEW");
        let mut cfg = Config::default();
        cfg.checksum = false;
        let mut lab = Lab::with(cfg);
        lab.pass(0.0, &c2s("S", 1000, 0).bad_checksum().bytes());
        assert_eq!(lab.only(1.0), ("SYN_SENT".into(), 119));
    }

    #[test]
    fn truncated_tcp_header_is_invalid() {
        let mut lab = Lab::new();
        let mut b = c2s("S", 1000, 0).bytes();
        b[32] = 0x40; // data offset 4 (< 5)
        assert_eq!(info(lab.pass(0.0, &b)), "INVALID");
        assert_eq!(lab.ct.count(), 0);
    }

    #[test]
    fn loose_pickup_of_a_bare_ack() {
        // reference §9 T4
        let mut lab = Lab::new();
        let ack = tcp(A, 41010, B, 8000, "A", 7000, 9000).bytes();
        assert_eq!(info(lab.pass(0.0, &ack)), "NEW");
        assert_eq!(
            lab.list(0.5),
            "tcp      6 299 ESTABLISHED src=10.99.0.1 dst=10.99.0.2 sport=41010 dport=8000 [UNREPLIED] src=10.99.0.2 dst=10.99.0.1 sport=8000 dport=41010 mark=0 use=1\n"
        );
        // the peer answers: replied; the next accepted packet makes it ASSURED
        assert_eq!(
            info(lab.pass(1.0, &tcp(B, 8000, A, 41010, "A", 9000, 7000).bytes())),
            "ESTABLISHED_REPLY"
        );
        assert!(!lab.ct.iter().next().unwrap().status().assured());
        assert_eq!(info(lab.pass(2.0, &ack)), "ESTABLISHED");
        assert!(lab.ct.iter().next().unwrap().status().assured());
        // with loose = 0 the same ACK is INVALID
        let mut cfg = Config::default();
        cfg.tcp_loose = false;
        let mut lab = Lab::with(cfg);
        assert_eq!(info(lab.pass(0.0, &ack)), "INVALID");
        assert_eq!(lab.ct.count(), 0);
    }

    #[test]
    fn syn_retransmits_do_not_refresh_an_unreplied_entry() {
        // reference §9 T9c
        let mut lab = Lab::new();
        let syn = tcp(A, 41002, B, 8009, "S", 1000, 0).bytes();
        lab.pass(0.0, &syn);
        assert_eq!(lab.only(2.2), ("SYN_SENT".into(), 117));
        assert_eq!(info(lab.pass(2.2, &syn)), "NEW");
        assert_eq!(lab.only(2.2), ("SYN_SENT".into(), 117));
    }

    #[test]
    fn orderly_close_walks_fin_wait_close_wait_last_ack_time_wait() {
        let mut lab = Lab::new();
        handshake(&mut lab);
        lab.pass(1.0, &c2s("FA", 1001, 5001).bytes());
        assert_eq!(lab.only(1.0), ("FIN_WAIT".into(), 120));
        lab.pass(1.1, &s2c("A", 5001, 1002).bytes());
        // reference §9 T9: "59 CLOSE_WAIT [ASSURED]"
        assert_eq!(lab.only(2.0), ("CLOSE_WAIT".into(), 59));
        lab.pass(2.0, &s2c("FA", 5001, 1002).bytes());
        assert_eq!(lab.only(2.0), ("LAST_ACK".into(), 30));
        lab.pass(2.1, &c2s("A", 1002, 5002).bytes());
        assert_eq!(lab.only(2.1), ("TIME_WAIT".into(), 120));
        assert!(lab.ct.iter().next().unwrap().status().assured());
    }

    #[test]
    fn a_new_syn_reopens_a_time_wait_entry() {
        let mut lab = Lab::new();
        handshake(&mut lab);
        lab.pass(1.0, &c2s("FA", 1001, 5001).bytes());
        lab.pass(1.1, &s2c("FA", 5001, 1002).bytes());
        lab.pass(1.2, &c2s("A", 1002, 5002).bytes());
        assert_eq!(lab.only(1.2).0, "TIME_WAIT");
        // the client reuses the port: old entry deleted, fresh NEW entry
        assert_eq!(info(lab.pass(5.0, &c2s("S", 90000, 0).bytes())), "NEW");
        assert_eq!(lab.only(5.0), ("SYN_SENT".into(), 120));
        assert!(!lab.ct.iter().next().unwrap().status().seen_reply());
    }

    #[test]
    fn ignored_syn_then_syn_ack_resynchronises() {
        let mut lab = Lab::new();
        handshake(&mut lab);
        let before = lab.ct.iter().next().unwrap().expires();
        // client restarted with a new ISN: SYN is ignored (accepted, nothing changes)
        assert_eq!(info(lab.pass(10.0, &c2s("S", 777_000, 0).opts(&SYN_OPTS).bytes())), "ESTABLISHED");
        assert_eq!(lab.only(10.0).0, "ESTABLISHED");
        assert_eq!(lab.ct.iter().next().unwrap().expires(), before);
        // server answers it: both ends are in sync, we resync to SYN_RECV
        assert_eq!(
            info(lab.pass(10.1, &s2c("SA", 880_000, 777_001).opts(&SYN_OPTS).bytes())),
            "ESTABLISHED_REPLY"
        );
        assert_eq!(lab.only(10.1), ("SYN_RECV".into(), 60));
        assert_eq!(info(lab.pass(10.2, &c2s("A", 777_001, 880_001).bytes())), "ESTABLISHED");
        assert_eq!(lab.only(10.2), ("ESTABLISHED".into(), 432_000));
    }

    #[test]
    fn simultaneous_open() {
        let mut lab = Lab::new();
        lab.pass(0.0, &c2s("S", 1000, 0).bytes());
        assert_eq!(info(lab.pass(0.1, &s2c("S", 5000, 0).bytes())), "ESTABLISHED_REPLY");
        assert_eq!(lab.only(0.1).0, "SYN_SENT2");
        lab.pass(0.2, &c2s("SA", 1000, 5001).bytes());
        assert_eq!(lab.only(0.2).0, "SYN_RECV");
        lab.pass(0.3, &s2c("A", 5001, 1001).bytes());
        assert_eq!(lab.only(0.3).0, "ESTABLISHED");
    }

    #[test]
    fn unacknowledged_data_gets_the_unack_timeout() {
        // reference §3.9 rule 3 (§9 T3d)
        let mut lab = Lab::new();
        handshake(&mut lab);
        lab.pass(1.0, &c2s("PA", 1001, 5001).data(100).bytes());
        assert_eq!(lab.only(1.0), ("ESTABLISHED".into(), 300));
        lab.pass(1.1, &s2c("A", 5001, 1101).bytes());
        assert_eq!(lab.only(1.1), ("ESTABLISHED".into(), 432_000));
    }

    #[test]
    fn repeated_identical_acks_get_the_retrans_timeout() {
        let mut lab = Lab::new();
        handshake(&mut lab);
        let ack = c2s("A", 1001, 5001).win(502).bytes();
        lab.pass(1.0, &ack);
        lab.pass(1.1, &ack);
        assert_eq!(lab.only(1.1), ("ESTABLISHED".into(), 432_000));
        lab.pass(1.2, &ack);
        assert_eq!(lab.only(1.2), ("ESTABLISHED".into(), 300));
    }

    #[test]
    fn zero_window_gets_the_retrans_timeout() {
        let mut lab = Lab::new();
        handshake(&mut lab);
        lab.pass(1.0, &s2c("A", 5001, 1001).win(0).bytes());
        assert_eq!(lab.only(1.0), ("ESTABLISHED".into(), 300));
    }

    #[test]
    fn invalid_fin_from_both_sides_lowers_the_timer() {
        let mut lab = Lab::new();
        handshake(&mut lab);
        let far = 1001u32.wrapping_add(1 << 30);
        assert_eq!(info(lab.pass(1.0, &c2s("FA", far, 5001).bytes())), "INVALID");
        assert_eq!(lab.only(1.0).1, 431_999);
        let far = 5001u32.wrapping_add(1 << 30);
        assert_eq!(info(lab.pass(2.0, &s2c("FA", far, 1001).bytes())), "INVALID");
        assert_eq!(lab.only(2.0), ("ESTABLISHED".into(), 300));
    }

    #[test]
    fn challenge_ack_in_last_ack_does_not_close() {
        let mut lab = Lab::new();
        handshake(&mut lab);
        lab.pass(1.0, &c2s("FA", 1001, 5001).bytes());
        lab.pass(1.1, &s2c("FA", 5001, 1002).bytes());
        assert_eq!(lab.only(1.1).0, "LAST_ACK");
        // a new SYN is ignored and flags a possible challenge ACK
        assert_eq!(info(lab.pass(1.2, &c2s("S", 50_000, 0).bytes())), "ESTABLISHED");
        // the server's challenge ACK must not be taken for the last ACK
        assert_eq!(info(lab.pass(1.3, &s2c("A", 5002, 1002).bytes())), "ESTABLISHED_REPLY");
        assert_eq!(lab.only(1.3).0, "LAST_ACK");
    }

    #[test]
    fn rst_answering_an_ignored_syn_closes_without_window_check() {
        let mut lab = Lab::new();
        handshake(&mut lab);
        lab.pass(1.0, &c2s("S", 600_000, 0).bytes());
        assert_eq!(lab.only(1.0).0, "ESTABLISHED");
        assert_eq!(info(lab.pass(1.1, &s2c("RA", 0, 600_001).bytes())), "ESTABLISHED_REPLY");
        assert_eq!(lab.only(1.1), ("CLOSE".into(), 10));
    }

    /// Reference §3.7 rule 3 as the kernel spells it: the SYN case needs the RST to come from the
    /// SYN's peer. Our own RST, whose ack field (0) equals the never-recorded `last_end` (0) of our
    /// own in-window SYN, must not close the entry.
    #[test]
    fn stale_syn_ack_answered_by_our_rst_keeps_syn_sent_then_the_right_syn_ack_completes() {
        let mut lab = Lab::new();
        // t=0: our SYN
        assert_eq!(info(lab.pass(0.0, &c2s("S", 1000, 0).opts(&SYN_OPTS).bytes())), "NEW");
        // t=3 ms: a stale SYN/ACK acking an older ISN of ours, 2 M below: ignored (ACK under the
        // lower bound), though it initialised the server's window data, which stays
        let stale_ack = 1001u32.wrapping_sub(2_000_000);
        let r = lab.pass(0.003, &s2c("SA", 4_000_000_000, stale_ack).win(65160).opts(&SYN_OPTS).bytes());
        assert_eq!(info(r), "ESTABLISHED_REPLY");
        assert_eq!(lab.only(0.003), ("SYN_SENT".into(), 119));
        // t=3.03 ms: our RST <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.3), ack field 0. Not an answer
        // to a SYN we let through (same direction as our SYN): window-checked, under the lower
        // bound of the server's (persisting) window, so ignored: accepted, state and timer kept.
        let r = lab.pass(0.00303, &c2s("R", stale_ack, 0).win(0).bytes());
        assert_eq!(info(r), "ESTABLISHED");
        assert_eq!(lab.only(0.5), ("SYN_SENT".into(), 119));
        // t=20 ms: the right SYN/ACK re-initialises the server's direction (later ISN)
        assert_eq!(
            info(lab.pass(0.02, &s2c("SA", 5000, 1001).win(65160).opts(&SYN_OPTS).bytes())),
            "ESTABLISHED_REPLY"
        );
        assert_eq!(lab.only(0.02), ("SYN_RECV".into(), 60));
        assert_eq!(info(lab.pass(0.021, &c2s("A", 1001, 5001).win(502).bytes())), "ESTABLISHED");
        assert_eq!(info(lab.pass(0.022, &c2s("PA", 1001, 5001).win(502).data(300).bytes())), "ESTABLISHED");
        assert_eq!(
            info(lab.pass(0.04, &s2c("PA", 5001, 1301).win(509).data(1448).bytes())),
            "ESTABLISHED_REPLY"
        );
        assert_eq!(info(lab.pass(0.041, &c2s("FA", 1301, 6449).win(501).bytes())), "ESTABLISHED");
        assert_eq!(info(lab.pass(0.06, &s2c("FA", 6449, 1302).win(509).bytes())), "ESTABLISHED_REPLY");
        assert_eq!(info(lab.pass(0.061, &c2s("A", 1302, 6450).win(501).bytes())), "ESTABLISHED");
        assert_eq!(lab.only(0.061), ("TIME_WAIT".into(), 120));
        assert!(lab.ct.iter().next().unwrap().status().assured());
    }

    #[test]
    fn rst_in_the_direction_of_an_ignored_syn_does_not_answer_it() {
        let mut lab = Lab::new();
        handshake(&mut lab);
        // t=1: a new SYN from the client is ignored and recorded (end 600_001)
        assert_eq!(info(lab.pass(1.0, &c2s("S", 600_000, 0).bytes())), "ESTABLISHED");
        // t=1.1: an RST from the client itself with ack = that end, seq far below the window:
        // window-checked (SEQ under the lower bound, ignored), the entry stays ESTABLISHED
        assert_eq!(
            info(lab.pass(1.1, &c2s("R", 1001u32.wrapping_sub(2_000_000), 600_001).bytes())),
            "ESTABLISHED"
        );
        assert_eq!(lab.only(1.1).0, "ESTABLISHED");
        // t=1.2: the same from the server answers it: closed without window check
        assert_eq!(
            info(lab.pass(1.2, &s2c("R", 5001u32.wrapping_sub(2_000_000), 600_001).bytes())),
            "ESTABLISHED_REPLY"
        );
        assert_eq!(lab.only(1.2), ("CLOSE".into(), 10));
    }

    #[test]
    fn old_retransmissions_are_ignored() {
        let mut lab = Lab::new();
        handshake(&mut lab);
        for i in 0..10u32 {
            lab.pass(1.0, &c2s("PA", 1001 + i * 1000, 5001).data(1000).bytes());
            lab.pass(1.0, &s2c("A", 5001, 1001 + (i + 1) * 1000).bytes());
        }
        let before = lab.ct.iter().next().unwrap().expires();
        // a very old segment: under the lower bound, ignored (state and timer unchanged)
        let r = lab.pass(50.0, &c2s("PA", 1001u32.wrapping_sub(20_000_000), 5001).data(10).bytes());
        assert_eq!(info(r), "ESTABLISHED");
        assert_eq!(lab.ct.iter().next().unwrap().expires(), before);
    }
}

/// [`TcpConn::established_ack`] must be [`TcpConn::packet`] for the packets it takes: random entries and
/// random packet sequences in both directions, run through both on copies of the same entry.
#[cfg(test)]
mod established_ack_equivalence {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use proptest::prelude::*;

    use super::*;

    /// A packet built against the entry it meets: its seq / ack are an anchor of the entry's window data
    /// (the values the checks compare with) plus an offset, so that the checks' boundaries are hit.
    #[derive(Debug, Clone)]
    struct Step {
        reply: bool,
        flags: u8,
        seq: (u8, i64),
        ack: (u8, i64),
        window: u16,
        payload_len: usize,
        options: Vec<u8>,
    }

    /// An offset: mostly around 0 (boundaries), sometimes a window away, sometimes anything.
    fn offset() -> impl Strategy<Value = i64> {
        prop_oneof![
            4 => -3i64..=3,
            4 => -3000i64..=0,
            2 => -70_000i64..=70_000,
            1 => Just(66_000i64),
            1 => Just(-66_001i64),
            1 => any::<u32>().prop_map(i64::from),
        ]
    }

    fn flags() -> impl Strategy<Value = u8> {
        const A: u8 = TcpFlags::ACK;
        prop_oneof![
            10 => Just(A),
            6 => Just(A | TcpFlags::PSH),
            1 => Just(A | TcpFlags::ECE | TcpFlags::CWR),
            1 => Just(A | TcpFlags::URG),
            1 => Just(A | TcpFlags::FIN),
            1 => Just(A | TcpFlags::RST),
            1 => Just(TcpFlags::RST),
            1 => Just(TcpFlags::SYN),
            1 => Just(TcpFlags::SYN | A),
            1 => Just(0u8),
            1 => any::<u8>(),
        ]
    }

    fn options() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => Just(Vec::new()),
            2 => Just(vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]),
            // NOP NOP SACK with one block; the right edge is patched relative to the ack at run time
            2 => Just(vec![1, 1, 5, 10, 0, 0, 0, 0, 0, 0, 0, 0]),
            1 => Just(vec![1, 3, 3, 9]),
            1 => prop::collection::vec(any::<u8>(), 0..20),
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        (
            any::<bool>(),
            flags(),
            (prop_oneof![4 => Just(0u8), 1 => 0u8..6], offset()),
            (prop_oneof![4 => Just(2u8), 1 => 0u8..6], offset()),
            prop_oneof![1 => Just(0u16), 6 => any::<u16>()],
            prop_oneof![2 => Just(0usize), 3 => 0usize..3000, 1 => Just(70_000usize)],
            options(),
        )
            .prop_map(|(reply, flags, seq, ack, window, payload_len, options)| Step {
                reply,
                flags,
                seq,
                ack,
                window,
                payload_len,
                options,
            })
    }

    fn seen() -> impl Strategy<Value = Seen> {
        (
            any::<u32>(),
            prop_oneof![2 => Just(0u32), 3 => 0u32..200_000, 1 => any::<u32>()],
            prop_oneof![1 => Just(0u32), 4 => 1u32..2_000_000, 1 => any::<u32>()],
            any::<u32>(),
            prop_oneof![3 => Just(0u8), 3 => 0u8..=14, 1 => any::<u8>()],
            any::<u8>(),
        )
            .prop_map(|(end, ahead, maxwin, maxack, scale, flags)| Seen {
                td_end: end,
                td_maxend: end.wrapping_add(ahead),
                td_maxwin: maxwin,
                td_maxack: maxack,
                td_scale: scale,
                flags: flags & 0x3f,
            })
    }

    /// An entry: mostly ESTABLISHED (where the fast path applies), random window data and history.
    fn conn() -> impl Strategy<Value = TcpConn> {
        let state = prop_oneof![
            12 => Just(TcpState::Established),
            1 => Just(TcpState::SynRecv),
            1 => Just(TcpState::FinWait),
            1 => Just(TcpState::CloseWait),
            1 => Just(TcpState::TimeWait),
        ];
        let index = prop_oneof![Just(Index::Ack), Just(Index::Syn), Just(Index::Fin), Just(Index::Rst)];
        (
            seen(),
            seen(),
            state,
            index,
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<u16>()),
            (0u8..2, 0u8..4, any::<u8>(), any::<u8>()),
        )
            .prop_map(
                |(s0, s1, state, last_index, (seq, ack, end, win), (dir, retrans, wscale, lf))| TcpConn {
                    seen: [s0, s1],
                    last_seq: seq,
                    last_ack: ack,
                    last_end: end,
                    last_win: win,
                    state,
                    last_dir: dir,
                    retrans,
                    last_index,
                    last_wscale: wscale,
                    last_flags: lf,
                },
            )
    }

    fn config() -> impl Strategy<Value = Config> {
        (
            any::<bool>(),
            0u8..4,
            prop_oneof![Just(432_000u32), Just(100u32)],
            prop_oneof![Just(300u32), Just(60u32), Just(500u32)],
            prop_oneof![Just(300u32), Just(30u32), Just(600u32)],
        )
            .prop_map(|(liberal, max_retrans, est, retrans, unack)| Config {
                tcp_be_liberal: liberal,
                tcp_max_retrans: max_retrans,
                tcp_timeout_established: est,
                tcp_timeout_max_retrans: retrans,
                tcp_timeout_unacknowledged: unack,
                ..Config::default()
            })
    }

    fn status() -> impl Strategy<Value = Status> {
        prop_oneof![
            4 => Just(Status::SEEN_REPLY.bits() | Status::ASSURED.bits() | Status::CONFIRMED.bits()),
            2 => Just(Status::SEEN_REPLY.bits() | Status::CONFIRMED.bits()),
            1 => Just(Status::CONFIRMED.bits()),
            1 => Just(Status::SEEN_REPLY.bits()),
        ]
        .prop_map(Status::from_bits)
    }

    /// The value an anchor names in entry `t` for a packet from direction `d`.
    fn anchor(t: &TcpConn, d: usize, which: u8) -> u32 {
        let (sender, receiver) = (t.seen[d], t.seen[1 - d]);
        match which {
            0 => sender.td_end,
            1 => sender.td_maxend,
            2 => receiver.td_end,
            3 => receiver.td_end.wrapping_sub(sender.td_maxwin.max(MAX_ACK_WIN_CONST)),
            4 => sender.td_end.wrapping_sub(receiver.td_maxwin),
            _ => t.last_seq,
        }
    }

    /// Runs `step` against `t` through both paths: `fast` is the fast check under test. Returns the
    /// entry after the full tracker, and whether the fast path took the packet.
    fn both(
        fast: impl Fn(&mut TcpConn, &Config, Dir, Status, &TcpHeader<'_>) -> Option<(u32, bool)>,
        cfg: &Config,
        status: Status,
        t: &TcpConn,
        s: &Step,
    ) -> Result<(TcpConn, bool), TestCaseError> {
        let dir = if s.reply { Dir::Reply } else { Dir::Original };
        let d = dir.index();
        let seq = anchor(t, d, s.seq.0).wrapping_add(s.seq.1 as u32);
        let ack = anchor(t, d, s.ack.0).wrapping_add(s.ack.1 as u32);
        let mut options = s.options.clone();
        if options.len() == 12 && options[2] == 5 {
            options[8..12].copy_from_slice(&ack.wrapping_add(s.seq.1 as u32).to_be_bytes());
        }
        let h = TcpHeader {
            sport: 1,
            dport: 2,
            seq,
            ack,
            flags: TcpFlags(s.flags),
            window: s.window,
            checksum: 0,
            header_len: 20 + options.len(),
            options: &options,
            payload_len: s.payload_len,
            payload: &[],
        };
        let mut fast_conn = t.clone();
        let mut full_conn = t.clone();
        let full = full_conn.packet(cfg, dir, status, &h);
        match fast(&mut fast_conn, cfg, dir, status, &h) {
            Some((timeout, assured)) => {
                prop_assert_eq!(full, TcpOutcome::Accept { timeout: Some(timeout), assured, note: None });
                prop_assert_eq!(&fast_conn, &full_conn);
                Ok((full_conn, true))
            }
            None => {
                prop_assert_eq!(&fast_conn, t, "declined, but changed the entry");
                Ok((full_conn, false))
            }
        }
    }

    fn run(
        fast: impl Fn(&mut TcpConn, &Config, Dir, Status, &TcpHeader<'_>) -> Option<(u32, bool)> + Copy,
        cfg: &Config,
        status: Status,
        mut t: TcpConn,
        steps: &[Step],
    ) -> Result<usize, TestCaseError> {
        let mut taken = 0;
        for s in steps {
            let (next, fast) = both(fast, cfg, status, &t, s)?;
            taken += usize::from(fast);
            t = next;
        }
        Ok(taken)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_fast_step_is_the_full_tracker(
            cfg in config(),
            status in status(),
            t in conn(),
            steps in prop::collection::vec(step(), 1..24),
        ) {
            run(TcpConn::established_ack, &cfg, status, t, &steps)?;
        }
    }

    /// The generated cases do reach the fast path, and the property catches a fast check that is wrong
    /// at a boundary (each planted bug below is found).
    #[test]
    fn the_property_takes_the_fast_path_and_catches_planted_bugs() {
        use proptest::test_runner::{Config as RunnerConfig, TestRunner};
        let strategy = (config(), status(), conn(), prop::collection::vec(step(), 1..24));

        let quiet = |cases| RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() };

        let taken = std::cell::Cell::new(0usize);
        TestRunner::new(quiet(500))
            .run(&strategy, |(cfg, status, t, steps)| {
                taken.set(taken.get() + run(TcpConn::established_ack, &cfg, status, t, &steps)?);
                Ok(())
            })
            .unwrap();
        assert!(taken.get() > 400, "the fast path took only {} packets", taken.get());

        // Planted bugs: a fast check that lets one boundary case through (the full tracker then disagrees).
        type Fast = fn(&mut TcpConn, &Config, Dir, Status, &TcpHeader<'_>) -> Option<(u32, bool)>;
        let planted: [(&str, Fast); 4] = [
            ("check 1 one past the upper bound", |t, cfg, dir, status, h| {
                let d = dir.index();
                let past = TcpHeader { seq: h.seq.wrapping_sub(1), ..*h };
                let s = t.seen[d];
                if h.seq == s.td_maxend.wrapping_add(1) {
                    let mut u = t.clone();
                    let r = u.established_ack(cfg, dir, status, &past)?;
                    *t = u;
                    return Some(r);
                }
                t.established_ack(cfg, dir, status, h)
            }),
            ("a FIN taken as an ACK", |t, cfg, dir, status, h| {
                let plain = TcpHeader { flags: TcpFlags(h.flags.0 & !TcpFlags::FIN), ..*h };
                t.established_ack(cfg, dir, status, &plain)
            }),
            ("an unreplied entry taken", |t, cfg, dir, status, h| {
                let mut replied = status;
                replied.insert(Status::SEEN_REPLY);
                t.established_ack(cfg, dir, replied, h)
            }),
            ("the window of a zero-maxwin receiver", |t, cfg, dir, status, h| {
                let d = dir.index();
                let saved = t.seen[1 - d].td_maxwin;
                if saved == 0 {
                    t.seen[1 - d].td_maxwin = 1;
                    let r = t.established_ack(cfg, dir, status, h);
                    if r.is_none() {
                        t.seen[1 - d].td_maxwin = saved;
                    }
                    return r;
                }
                t.established_ack(cfg, dir, status, h)
            }),
        ];
        for (name, bug) in planted {
            let found = TestRunner::new(quiet(2000))
                .run(&strategy, |(cfg, status, t, steps)| run(bug, &cfg, status, t, &steps).map(|_| ()));
            assert!(found.is_err(), "planted bug not caught: {name}");
        }
    }

    /// Any state, so that [`TcpConn::known_step`] meets the ones it takes and the ones it must leave alone.
    fn conn_any() -> impl Strategy<Value = TcpConn> {
        let state = prop::sample::select(vec![
            TcpState::None,
            TcpState::SynSent,
            TcpState::SynRecv,
            TcpState::Established,
            TcpState::FinWait,
            TcpState::CloseWait,
            TcpState::LastAck,
            TcpState::TimeWait,
            TcpState::Close,
            TcpState::SynSent2,
        ]);
        (conn(), state, prop::bool::weighted(0.2), prop::bool::weighted(0.2)).prop_map(
            |(mut t, state, challenge, simultaneous)| {
                t.state = state;
                // the special cases' bits, often enough to meet them
                if challenge {
                    t.last_flags |= F_EXP_CHALLENGE_ACK;
                    t.last_index = Index::Syn;
                }
                if simultaneous {
                    t.last_flags |= F_SIMULTANEOUS_OPEN;
                }
                t
            },
        )
    }

    /// Steps with FIN|ACK as often as ACK.
    fn step_fin() -> impl Strategy<Value = Step> {
        const FA: u8 = TcpFlags::ACK | TcpFlags::FIN;
        (step(), prop_oneof![2 => Just(None), 1 => Just(Some(FA)), 1 => Just(Some(FA | TcpFlags::PSH))])
            .prop_map(|(mut s, f)| {
                if let Some(f) = f {
                    s.flags = f;
                }
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_known_step_is_the_full_tracker(
            cfg in config(),
            status in status(),
            t in conn_any(),
            steps in prop::collection::vec(step_fin(), 1..24),
        ) {
            run(TcpConn::known_step, &cfg, status, t, &steps)?;
        }
    }

    /// The generated cases reach [`TcpConn::known_step`] in every state it takes, and the property catches
    /// a step that skips a special case or a bit (each planted bug below is found).
    #[test]
    fn the_known_step_property_catches_planted_bugs() {
        use proptest::test_runner::{Config as RunnerConfig, TestRunner};
        let strategy = (config(), status(), conn_any(), prop::collection::vec(step_fin(), 1..24));
        let quiet = |cases| RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() };

        let states = std::cell::RefCell::new(std::collections::BTreeSet::new());
        TestRunner::new(quiet(1000))
            .run(&strategy, |(cfg, status, t, steps)| {
                let record = |t: &mut TcpConn, cfg: &Config, dir: Dir, status: Status, h: &TcpHeader<'_>| {
                    let old = t.state;
                    let r = t.known_step(cfg, dir, status, h);
                    if r.is_some() {
                        states.borrow_mut().insert((old, h.flags.fin()));
                    }
                    r
                };
                // (a closure is not `Copy` once it borrows: run the steps by hand)
                let mut t = t;
                for s in &steps {
                    let (next, _) = both(record, &cfg, status, &t, s)?;
                    t = next;
                }
                Ok(())
            })
            .unwrap();
        assert!(states.borrow().len() >= 12, "taken in {:?}", states.borrow());

        type Fast = fn(&mut TcpConn, &Config, Dir, Status, &TcpHeader<'_>) -> Option<(u32, bool)>;
        let planted: [(&str, Fast); 4] = [
            ("the challenge ACK in LAST_ACK taken", |t, cfg, dir, status, h| {
                let saved = t.last_flags;
                t.last_flags &= !F_EXP_CHALLENGE_ACK;
                let r = t.known_step(cfg, dir, status, h);
                t.last_flags = saved;
                r
            }),
            ("the simultaneous open's final ACK taken", |t, cfg, dir, status, h| {
                let saved = t.last_flags;
                t.last_flags &= !F_SIMULTANEOUS_OPEN;
                let r = t.known_step(cfg, dir, status, h);
                t.last_flags = saved;
                r
            }),
            ("CLOSE_INIT not set", |t, cfg, dir, status, h| {
                let r = t.known_step(cfg, dir, status, h);
                if r.is_some() {
                    t.seen[dir.index()].flags &= !F_CLOSE_INIT;
                }
                r
            }),
            ("a FIN taken as an ACK", |t, cfg, dir, status, h| {
                let plain = TcpHeader { flags: TcpFlags(h.flags.0 & !TcpFlags::FIN), ..*h };
                t.known_step(cfg, dir, status, &plain)
            }),
        ];
        for (name, bug) in planted {
            let found = TestRunner::new(quiet(3000))
                .run(&strategy, |(cfg, status, t, steps)| run(bug, &cfg, status, t, &steps).map(|_| ()));
            assert!(found.is_err(), "planted bug not caught: {name}");
        }
    }

    /// Steps with the handshake's flags as often as ACK.
    fn step_syn() -> impl Strategy<Value = Step> {
        const S: u8 = TcpFlags::SYN;
        const SA: u8 = TcpFlags::SYN | TcpFlags::ACK;
        (step(), prop_oneof![2 => Just(None), 2 => Just(Some(S)), 2 => Just(Some(SA)), 1 => Just(Some(SA | TcpFlags::ECE))])
            .prop_map(|(mut s, f)| {
                if let Some(f) = f {
                    s.flags = f;
                }
                s
            })
    }

    /// An entry at the handshake: as `tcp_new` leaves it (NONE) or after its SYN (SYN_SENT, the reply
    /// direction mostly unseen), and anything else now and then.
    fn conn_handshake() -> impl Strategy<Value = TcpConn> {
        (conn_any(), 0u8..4, any::<bool>()).prop_map(|(mut t, kind, reply_unseen)| {
            match kind {
                0 => {
                    t.state = TcpState::None;
                    t.seen[1] = Seen::default();
                }
                1 | 2 => {
                    t.state = TcpState::SynSent;
                    if reply_unseen {
                        t.seen[1] = Seen { flags: t.seen[1].flags & F_BE_LIBERAL, ..Seen::default() };
                    }
                }
                _ => {}
            }
            t
        })
    }

    /// The status of an entry at the handshake: no reply yet (unconfirmed, or confirmed), sometimes any.
    fn status_handshake() -> impl Strategy<Value = Status> {
        prop_oneof![
            2 => Just(Status::empty()),
            2 => Just(Status::CONFIRMED),
            1 => status(),
        ]
    }

    /// [`TcpConn::handshake_step`] in the form the properties take.
    fn handshake(
        t: &mut TcpConn,
        cfg: &Config,
        dir: Dir,
        _: Status,
        h: &TcpHeader<'_>,
    ) -> Option<(u32, bool)> {
        t.handshake_step(cfg, dir, h).map(|timeout| (timeout, false))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_handshake_step_is_the_full_tracker(
            cfg in config(),
            status in status_handshake(),
            t in conn_handshake(),
            steps in prop::collection::vec(step_syn(), 1..6),
        ) {
            run(handshake, &cfg, status, t, &steps)?;
        }
    }

    /// The generated cases take [`TcpConn::handshake_step`] for both packets, and the property catches a step
    /// that gets the window initialisation or a check wrong (each planted bug below is found).
    #[test]
    fn the_handshake_step_property_catches_planted_bugs() {
        use proptest::test_runner::{Config as RunnerConfig, TestRunner};
        let strategy =
            (config(), status_handshake(), conn_handshake(), prop::collection::vec(step_syn(), 1..6));
        let quiet = |cases| RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() };
        let taken = std::cell::RefCell::new(std::collections::BTreeSet::new());
        TestRunner::new(quiet(1000))
            .run(&strategy, |(cfg, status, t, steps)| {
                let record = |t: &mut TcpConn, cfg: &Config, dir: Dir, status: Status, h: &TcpHeader<'_>| {
                    let old = t.state;
                    let r = handshake(t, cfg, dir, status, h);
                    if r.is_some() {
                        taken.borrow_mut().insert(old);
                    }
                    r
                };
                let mut t = t;
                for s in &steps {
                    let (next, _) = both(record, &cfg, status, &t, s)?;
                    t = next;
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(taken.borrow().len(), 2, "taken in {:?}", taken.borrow());

        type Fast = fn(&mut TcpConn, &Config, Dir, Status, &TcpHeader<'_>) -> Option<(u32, bool)>;
        let planted: [(&str, Fast); 3] = [
            ("the SYN/ACK's window scale kept without the SYN's", |t, cfg, dir, status, h| {
                let r = handshake(t, cfg, dir, status, h);
                if r.is_some() && dir == Dir::Reply {
                    t.seen[1].td_scale = 14;
                }
                r
            }),
            ("check 2 one past its bound", |t, cfg, dir, status, h| {
                let past = TcpHeader { ack: h.ack.wrapping_sub(1), ..*h };
                if dir == Dir::Reply && h.ack == t.seen[0].td_end.wrapping_add(1) {
                    let mut u = t.clone();
                    let r = handshake(&mut u, cfg, dir, status, &past)?;
                    *t = u;
                    return Some(r);
                }
                handshake(t, cfg, dir, status, h)
            }),
            ("the reply's window initialised without the SYN/ACK's options", |t, cfg, dir, status, h| {
                let bare = TcpHeader { options: &[], ..*h };
                handshake(t, cfg, dir, status, if dir == Dir::Reply { &bare } else { h })
            }),
        ];
        for (name, bug) in planted {
            let found = TestRunner::new(quiet(3000))
                .run(&strategy, |(cfg, status, t, steps)| run(bug, &cfg, status, t, &steps).map(|_| ()));
            assert!(found.is_err(), "planted bug not caught: {name}");
        }
    }
}
