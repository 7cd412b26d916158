//! The SCTP tracker (behaviour of the kernel's `nf_conntrack_proto_sctp.c`, written from scratch).
//!
//! Contract:
//! - [`sctp_error`] is the pre-check: at least the 12-byte common header, and at PREROUTING with
//!   `nf_conntrack_checksum=1` a correct CRC32c (RFC 9260 appendix A) over the whole SCTP packet.
//! - [`SctpConn::packet`] runs the chunk checks (`do_basic_checks`: COOKIE_ECHO / COOKIE_ACK only
//!   first, INIT / INIT_ACK / SHUTDOWN_COMPLETE alone, no zero-length chunk, at least one chunk), the
//!   out-of-the-blue rules for a new entry (`sctp_new`), the verification-tag checks (RFC 9260
//!   §8.5, §8.5.1) and the per-chunk state table, and says which timeout to arm (`None`: an INIT
//!   retransmitted on a CLOSED entry and a HEARTBEAT with a mismatching tag are accepted without
//!   refreshing the timer). ASSURED is set when ESTABLISHED is reached.
//! - States and their default timeouts: CLOSED 10 s, COOKIE_WAIT 3, COOKIE_ECHOED 3, ESTABLISHED
//!   210, SHUTDOWN_SENT 3, SHUTDOWN_RECD 3, SHUTDOWN_ACK_SENT 3, HEARTBEAT_SENT 30
//!   (`nf_conntrack_sctp_timeout_*`).

use std::fmt;

use crate::config::Config;
use crate::conn::Dir;

/// SCTP conntrack states (`enum sctp_conntrack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum SctpState {
    #[default]
    None,
    Closed,
    CookieWait,
    CookieEchoed,
    Established,
    ShutdownSent,
    ShutdownRecd,
    ShutdownAckSent,
    HeartbeatSent,
}

impl SctpState {
    /// The kernel's name (`sctp_conntrack_names`), printed by `/proc` and `conntrack -L`.
    pub fn name(self) -> &'static str {
        match self {
            SctpState::None => "NONE",
            SctpState::Closed => "CLOSED",
            SctpState::CookieWait => "COOKIE_WAIT",
            SctpState::CookieEchoed => "COOKIE_ECHOED",
            SctpState::Established => "ESTABLISHED",
            SctpState::ShutdownSent => "SHUTDOWN_SENT",
            SctpState::ShutdownRecd => "SHUTDOWN_RECD",
            SctpState::ShutdownAckSent => "SHUTDOWN_ACK_SENT",
            SctpState::HeartbeatSent => "HEARTBEAT_SENT",
        }
    }

    /// States an early drop / GC under pressure may evict even when ASSURED (`sctp_can_early_drop`).
    pub fn can_early_drop(self) -> bool {
        matches!(self, SctpState::ShutdownSent | SctpState::ShutdownRecd | SctpState::ShutdownAckSent)
    }

    fn column(self) -> usize {
        self as usize
    }

    /// The timeout of this state in seconds (`timeouts[state]`; NONE uses the CLOSED value).
    pub(crate) fn timeout(self, cfg: &Config) -> u32 {
        match self {
            SctpState::None | SctpState::Closed => cfg.sctp_timeout_closed,
            SctpState::CookieWait => cfg.sctp_timeout_cookie_wait,
            SctpState::CookieEchoed => cfg.sctp_timeout_cookie_echoed,
            SctpState::Established => cfg.sctp_timeout_established,
            SctpState::ShutdownSent => cfg.sctp_timeout_shutdown_sent,
            SctpState::ShutdownRecd => cfg.sctp_timeout_shutdown_recd,
            SctpState::ShutdownAckSent => cfg.sctp_timeout_shutdown_ack_sent,
            SctpState::HeartbeatSent => cfg.sctp_timeout_heartbeat_sent,
        }
    }
}

impl fmt::Display for SctpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// Chunk types (RFC 9260 §3.2).
const CID_DATA: u8 = 0;
const CID_INIT: u8 = 1;
const CID_INIT_ACK: u8 = 2;
const CID_HEARTBEAT: u8 = 4;
const CID_HEARTBEAT_ACK: u8 = 5;
const CID_ABORT: u8 = 6;
const CID_SHUTDOWN: u8 = 7;
const CID_SHUTDOWN_ACK: u8 = 8;
const CID_ERROR: u8 = 9;
const CID_COOKIE_ECHO: u8 = 10;
const CID_COOKIE_ACK: u8 = 11;
const CID_SHUTDOWN_COMPLETE: u8 = 14;
/// The T bit of ABORT / SHUTDOWN_COMPLETE: the tag is the peer's.
const CHUNK_FLAG_T: u8 = 0x01;

/// A cell of the state table: a state or `IV` (invalid).
type Cell = Option<SctpState>;
const NO: Cell = Some(SctpState::None);
const CL: Cell = Some(SctpState::Closed);
const CW: Cell = Some(SctpState::CookieWait);
const CE: Cell = Some(SctpState::CookieEchoed);
const ES: Cell = Some(SctpState::Established);
const SS: Cell = Some(SctpState::ShutdownSent);
const SR: Cell = Some(SctpState::ShutdownRecd);
const SA: Cell = Some(SctpState::ShutdownAckSent);
const HS: Cell = Some(SctpState::HeartbeatSent);
const IV: Cell = None;
const _: Cell = NO;

/// The kernel's transition table, `[dir][chunk row][state]`; rows init, init_ack, abort, shutdown,
/// shutdown_ack, error, cookie_echo, cookie_ack, shutdown_complete, heartbeat, heartbeat_ack;
/// columns NONE CLOSED COOKIE_WAIT COOKIE_ECHOED ESTABLISHED SHUTDOWN_SENT SHUTDOWN_RECD
/// SHUTDOWN_ACK_SENT HEARTBEAT_SENT.
#[rustfmt::skip]
const TABLE: [[[Cell; 9]; 11]; 2] = [
    // ORIGINAL
    [
        /* init          */ [CL, CL, CW, CE, ES, CL, CL, SA, CW],
        /* init_ack      */ [CL, CL, CW, CE, ES, SS, SR, SA, CL],
        /* abort         */ [CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* shutdown      */ [CL, CL, CW, CE, SS, SS, SR, SA, CL],
        /* shutdown_ack  */ [SA, CL, CW, CE, ES, SA, SA, SA, SA],
        /* error         */ [CL, CL, CW, CE, ES, SS, SR, SA, CL],
        /* cookie_echo   */ [CL, CL, CE, CE, ES, SS, SR, SA, CL],
        /* cookie_ack    */ [CL, CL, CW, ES, ES, SS, SR, SA, CL],
        /* shutdown_comp */ [CL, CL, CW, CE, ES, SS, SR, CL, CL],
        /* heartbeat     */ [HS, CL, CW, CE, ES, SS, SR, SA, HS],
        /* heartbeat_ack */ [CL, CL, CW, CE, ES, SS, SR, SA, HS],
    ],
    // REPLY
    [
        /* init          */ [IV, CL, CW, CE, ES, SS, SR, SA, IV],
        /* init_ack      */ [IV, CW, CW, CE, ES, SS, SR, SA, IV],
        /* abort         */ [IV, CL, CL, CL, CL, CL, CL, CL, IV],
        /* shutdown      */ [IV, CL, CW, CE, SR, SS, SR, SA, IV],
        /* shutdown_ack  */ [IV, CL, CW, CE, ES, SA, SA, SA, IV],
        /* error         */ [IV, CL, CW, CL, ES, SS, SR, SA, IV],
        /* cookie_echo   */ [IV, CL, CE, CE, ES, SS, SR, SA, IV],
        /* cookie_ack    */ [IV, CL, CW, ES, ES, SS, SR, SA, IV],
        /* shutdown_comp */ [IV, CL, CW, CE, ES, SS, SR, CL, IV],
        /* heartbeat     */ [IV, CL, CW, CE, ES, SS, SR, SA, HS],
        /* heartbeat_ack */ [IV, CL, CW, CE, ES, SS, SR, SA, ES],
    ],
];

/// `sctp_new_state`: chunk types without a row (DATA, SACK, ...) keep the state.
fn new_state(dir: Dir, cur: SctpState, chunk: u8) -> Cell {
    let row = match chunk {
        CID_INIT => 0,
        CID_INIT_ACK => 1,
        CID_ABORT => 2,
        CID_SHUTDOWN => 3,
        CID_SHUTDOWN_ACK => 4,
        CID_ERROR => 5,
        CID_COOKIE_ECHO => 6,
        CID_COOKIE_ACK => 7,
        CID_SHUTDOWN_COMPLETE => 8,
        CID_HEARTBEAT => 9,
        CID_HEARTBEAT_ACK => 10,
        _ => return Some(cur),
    };
    TABLE.get(dir.index()).and_then(|d| d.get(row)).and_then(|r| r.get(cur.column())).copied().flatten()
}

/// Per-connection SCTP state (`struct ip_ct_sctp`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SctpConn {
    pub(crate) state: SctpState,
    /// Verification tag expected in packets of each direction.
    pub(crate) vtag: [u32; 2],
    /// An INIT was seen from this direction (collision detection).
    pub(crate) init: [bool; 2],
    /// `SCTP_FLAG_HEARTBEAT_VTAG_FAILED`.
    hb_vtag_failed: bool,
    last_dir: u8,
}

/// The result of [`SctpConn::packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SctpOutcome {
    /// `Ok(Some(secs))`: accept and refresh; `Ok(None)`: accept without refreshing; `Err`: INVALID.
    pub(crate) verdict: Result<Option<u32>, &'static str>,
    /// The state changed (IPCT_PROTOINFO event), possibly before a later chunk was found invalid.
    pub(crate) state_changed: bool,
    /// ASSURED must be set (ESTABLISHED reached).
    pub(crate) assured: bool,
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off.checked_add(1)?)?]))
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([*s.first()?, *s.get(1)?, *s.get(2)?, *s.get(3)?]))
}

/// A chunk header: type, flags, and its offset in the SCTP packet.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    ty: u8,
    flags: u8,
    off: usize,
}

/// `for_each_sctp_chunk`: chunk headers from offset 12 while a 4-byte header fits; each chunk
/// advances by its length rounded up to 4. At most `l4.len() / 4` chunks, so bounded.
fn chunks(l4: &[u8]) -> impl Iterator<Item = (Chunk, u16)> + '_ {
    let mut off = 12usize;
    std::iter::from_fn(move || {
        let ty = *l4.get(off)?;
        let flags = *l4.get(off.checked_add(1)?)?;
        let len = be16(l4, off.checked_add(2)?)?;
        let here = Chunk { ty, flags, off };
        // a zero length stops the iteration after this chunk (the basic checks reject it)
        let step = (usize::from(len) + 3) & !3;
        off = if step == 0 { usize::MAX } else { off.checked_add(step)? };
        Some((here, len))
    })
}

/// Chunk-type bitmap (types 0..=255).
#[derive(Debug, Clone, Copy, Default)]
struct Map([u64; 4]);

impl Map {
    fn set(&mut self, ty: u8) {
        if let Some(w) = self.0.get_mut(usize::from(ty >> 6)) {
            *w |= 1u64 << (ty & 63);
        }
    }
    fn has(&self, ty: u8) -> bool {
        self.0.get(usize::from(ty >> 6)).is_some_and(|w| w & (1u64 << (ty & 63)) != 0)
    }
}

/// `do_basic_checks`: the chunk map, or `None` if the chunk layout is unacceptable.
fn basic_checks(l4: &[u8]) -> Option<Map> {
    let mut map = Map::default();
    let mut alone = false;
    let mut count = 0usize;
    for (c, len) in chunks(l4) {
        if matches!(c.ty, CID_INIT | CID_INIT_ACK | CID_SHUTDOWN_COMPLETE) {
            alone = true;
        }
        if ((matches!(c.ty, CID_COOKIE_ACK | CID_COOKIE_ECHO) || alone) && count != 0) || len == 0 {
            return None;
        }
        map.set(c.ty);
        count += 1;
    }
    (count != 0).then_some(map)
}

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78) as SCTP uses it.
#[cfg(test)]
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    crc32c_continue(0, data)
}

/// Is the SCTP checksum right? The field (bytes 8..12, little-endian on the wire as the CRC is
/// stored) is taken as zero while computing.
pub(crate) fn checksum_ok(l4: &[u8]) -> bool {
    let Some(stored) = l4.get(8..12) else { return false };
    let stored = u32::from_le_bytes([
        stored.first().copied().unwrap_or(0),
        stored.get(1).copied().unwrap_or(0),
        stored.get(2).copied().unwrap_or(0),
        stored.get(3).copied().unwrap_or(0),
    ]);
    // the header with a zeroed checksum field, then the rest, without copying the packet
    let zero = [0u8; 4];
    let parts: [&[u8]; 3] = [l4.get(..8).unwrap_or(&[]), &zero, l4.get(12..).unwrap_or(&[])];
    parts.iter().fold(0, |crc, part| crc32c_continue(crc, part)) == stored
}

/// CRC32c over `data` continuing from a finished CRC value `prev` (`crc32c(a ++ b)` =
/// `crc32c_continue(crc32c(a), b)`).
fn crc32c_continue(prev: u32, data: &[u8]) -> u32 {
    let mut crc = !prev;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// `sctp_error`: the common header must be there; the CRC is checked only when `check_crc`
/// (PREROUTING with `nf_conntrack_checksum=1`). The messages are the kernel's log texts.
pub(crate) fn sctp_error(l4: &[u8], claimed: usize, check_crc: bool) -> Result<(), &'static str> {
    if claimed < 12 || l4.len() < 12 {
        return Err("nf_ct_sctp: short packet");
    }
    if check_crc && !checksum_ok(l4) {
        return Err("nf_ct_sctp: bad CRC");
    }
    Ok(())
}

impl SctpConn {
    pub fn state(&self) -> SctpState {
        self.state
    }

    /// Verification tags (original, reply).
    pub fn vtags(&self) -> [u32; 2] {
        self.vtag
    }

    /// `sctp_new`: set up a new entry from its first packet, or say why it cannot create one.
    fn new_conn(l4: &[u8], vtag: u32) -> Result<SctpConn, &'static str> {
        let mut c = SctpConn::default();
        for (ch, _) in chunks(l4) {
            match new_state(Dir::Original, SctpState::None, ch.ty) {
                None | Some(SctpState::None) => {
                    return Err("sctp: invalid new (chunk cannot start an association)")
                }
                Some(_) => {}
            }
            match ch.ty {
                CID_INIT => {
                    // RFC 9260 §8.5.1 (A): an INIT carries tag 0
                    if vtag != 0 {
                        return Err("sctp: INIT with a non-zero verification tag");
                    }
                    let tag = init_tag(l4, ch.off).ok_or("sctp: INIT header truncated")?;
                    c.vtag[1] = tag;
                }
                CID_HEARTBEAT => c.vtag[0] = vtag,
                // out of the blue (SHUTDOWN_ACK etc.): the answer carries this tag (§8.4)
                _ => c.vtag[1] = vtag,
            }
            c.state = SctpState::None;
        }
        Ok(c)
    }

    /// `nf_conntrack_sctp_packet` after `sctp_error`. `this` is the entry's tracker state (`None`
    /// for a packet creating an entry: it is then built here and returned through `this`).
    pub(crate) fn packet(this: &mut Option<SctpConn>, cfg: &Config, dir: Dir, l4: &[u8]) -> SctpOutcome {
        let invalid =
            |reason: &'static str| SctpOutcome { verdict: Err(reason), state_changed: false, assured: false };
        let Some(vtag) = be32(l4, 4) else { return invalid("nf_ct_sctp: short packet") };
        let Some(map) = basic_checks(l4) else {
            return invalid("sctp: bad chunk layout (basic checks failed)");
        };
        let was_new = this.is_none();
        if was_new {
            // out-of-the-blue packets with these chunks must not create state (§8.4)
            if map.has(CID_ABORT) || map.has(CID_SHUTDOWN_COMPLETE) || map.has(CID_COOKIE_ACK) {
                return invalid("sctp: invalid new (ABORT / SHUTDOWN_COMPLETE / COOKIE_ACK out of the blue)");
            }
            match SctpConn::new_conn(l4, vtag) {
                Ok(c) => *this = Some(c),
                Err(reason) => return invalid(reason),
            }
        }
        let Some(ct) = this.as_mut() else { return invalid("sctp: no state") };
        let d = dir.index();
        let o = 1 - d;
        let tag = |ct: &SctpConn, i: usize| ct.vtag.get(i).copied().unwrap_or(0);

        // §8.5: the tag must be ours unless a chunk with its own rule is present
        let exempt = [
            CID_INIT,
            CID_SHUTDOWN_COMPLETE,
            CID_COOKIE_ECHO,
            CID_ABORT,
            CID_SHUTDOWN_ACK,
            CID_HEARTBEAT,
            CID_HEARTBEAT_ACK,
        ];
        if !exempt.iter().any(|&t| map.has(t)) && vtag != tag(ct, d) {
            return invalid("sctp: verification tag check failed");
        }

        let mut out = SctpOutcome { verdict: Ok(None), state_changed: false, assured: false };
        let mut ignore = false;
        let mut last_new = SctpState::None;
        for (ch, _) in chunks(l4) {
            match ch.ty {
                // §8.5.1 (A)
                CID_INIT if vtag != 0 => {
                    out.verdict = Err("sctp: INIT with a non-zero verification tag");
                    return out;
                }
                CID_ABORT | CID_SHUTDOWN_COMPLETE => {
                    // §8.5.1 (B), (C): own tag, or the peer's with the T bit
                    let want = if ch.flags & CHUNK_FLAG_T == 0 { tag(ct, d) } else { tag(ct, o) };
                    if vtag != want {
                        out.verdict = Err("sctp: ABORT / SHUTDOWN_COMPLETE with a wrong verification tag");
                        return out;
                    }
                }
                // §8.5.1 (D)
                CID_COOKIE_ECHO if vtag != tag(ct, d) => {
                    out.verdict = Err("sctp: COOKIE_ECHO with a wrong verification tag");
                    return out;
                }
                CID_COOKIE_ACK => ct.init = [false, false],
                CID_HEARTBEAT | CID_HEARTBEAT_ACK => {
                    if tag(ct, d) == 0 {
                        if let Some(v) = ct.vtag.get_mut(d) {
                            *v = vtag;
                        }
                    } else if vtag != tag(ct, d) {
                        if map.has(CID_DATA) || ignore {
                            out.verdict = Err("sctp: heartbeat with a wrong verification tag");
                            return out;
                        }
                        if ch.ty == CID_HEARTBEAT {
                            // maybe a new association after a restart: let it through unrefreshed
                            ct.hb_vtag_failed = true;
                            ct.last_dir = d as u8;
                            ignore = true;
                            continue;
                        }
                        // the answer to such a heartbeat from the other side: adopt the new tags
                        if !ct.hb_vtag_failed || usize::from(ct.last_dir) == d {
                            out.verdict = Err("sctp: heartbeat ack with a wrong verification tag");
                            return out;
                        }
                        ct.hb_vtag_failed = false;
                        if let Some(v) = ct.vtag.get_mut(d) {
                            *v = vtag;
                        }
                        if let Some(v) = ct.vtag.get_mut(o) {
                            *v = 0;
                        }
                    } else if ct.hb_vtag_failed {
                        ct.hb_vtag_failed = false;
                    }
                }
                _ => {}
            }

            let old = ct.state;
            let Some(new) = new_state(dir, old, ch.ty) else {
                out.verdict = Err("sctp: invalid state transition");
                return out;
            };
            last_new = new;

            if ch.ty == CID_INIT {
                let Some(itag) = init_tag(l4, ch.off) else {
                    out.verdict = Err("sctp: INIT header truncated");
                    return out;
                };
                if ct.init.get(d) == Some(&true) && ct.init.get(o) == Some(&true) {
                    if let Some(i) = ct.init.get_mut(o) {
                        *i = false;
                    }
                }
                if let Some(i) = ct.init.get_mut(d) {
                    *i = true;
                }
                if let Some(v) = ct.vtag.get_mut(o) {
                    *v = itag;
                }
                // an INIT retransmitted on a CLOSED entry must not keep it alive
                if new == SctpState::Closed && old == SctpState::Closed && !was_new {
                    ignore = true;
                }
            } else if ch.ty == CID_INIT_ACK {
                let Some(itag) = init_tag(l4, ch.off) else {
                    out.verdict = Err("sctp: INIT_ACK header truncated");
                    return out;
                };
                let peer = tag(ct, o);
                let init_d = ct.init.get(d) == Some(&true);
                let init_o = ct.init.get(o) == Some(&true);
                if !init_o && peer != 0 && peer != itag {
                    out.verdict = Err("sctp: INIT_ACK with a wrong initiate tag");
                    return out;
                }
                if init_d && init_o && peer != itag {
                    out.verdict = Err("sctp: INIT_ACK collision with a wrong initiate tag");
                    return out;
                }
                if let Some(v) = ct.vtag.get_mut(o) {
                    *v = itag;
                }
            }

            ct.state = new;
            if old != new {
                out.state_changed = true;
                if new == SctpState::Established {
                    out.assured = true;
                }
            }
        }
        if !ignore {
            out.verdict = Ok(Some(last_new.timeout(cfg)));
        }
        out
    }
}

/// The initiate tag of an INIT / INIT_ACK chunk at `off` (the whole 16-byte fixed part must be
/// there, as `skb_header_pointer` of `struct sctp_inithdr`).
fn init_tag(l4: &[u8], off: usize) -> Option<u32> {
    let start = off.checked_add(4)?;
    l4.get(start..start.checked_add(16)?)?;
    be32(l4, start)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn crc32c_known_answer() {
        // RFC 3720 B.4: 32 bytes of zeros
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_continue(crc32c(b"1234"), b"56789"), 0xE306_9283);
    }

    #[test]
    fn table_cells() {
        assert_eq!(new_state(Dir::Original, SctpState::None, CID_INIT), CL);
        assert_eq!(new_state(Dir::Reply, SctpState::Closed, CID_INIT_ACK), CW);
        assert_eq!(new_state(Dir::Original, SctpState::CookieWait, CID_COOKIE_ECHO), CE);
        assert_eq!(new_state(Dir::Reply, SctpState::CookieEchoed, CID_COOKIE_ACK), ES);
        assert_eq!(new_state(Dir::Reply, SctpState::None, CID_INIT), IV);
        assert_eq!(new_state(Dir::Reply, SctpState::HeartbeatSent, CID_HEARTBEAT_ACK), ES);
        // DATA keeps the state
        assert_eq!(new_state(Dir::Original, SctpState::Established, CID_DATA), ES);
    }

    #[test]
    fn basic_checks_follow_the_kernel() {
        let chunk = |ty: u8, len: u16| {
            let mut c = vec![ty, 0];
            c.extend_from_slice(&len.to_be_bytes());
            c.resize(usize::from((len + 3) & !3).max(4), 0);
            c
        };
        let pkt = |cs: &[Vec<u8>]| {
            let mut p = vec![0u8; 12];
            for c in cs {
                p.extend_from_slice(c);
            }
            p
        };
        assert!(basic_checks(&pkt(&[chunk(CID_INIT, 20)])).is_some());
        assert!(basic_checks(&pkt(&[])).is_none());
        assert!(basic_checks(&pkt(&[chunk(CID_DATA, 8), chunk(CID_INIT, 20)])).is_none());
        assert!(basic_checks(&pkt(&[chunk(CID_INIT, 20), chunk(CID_DATA, 8)])).is_none());
        assert!(basic_checks(&pkt(&[chunk(CID_COOKIE_ECHO, 8), chunk(CID_DATA, 8)])).is_some());
        assert!(basic_checks(&pkt(&[chunk(CID_DATA, 8), chunk(CID_COOKIE_ACK, 4)])).is_none());
        assert!(basic_checks(&pkt(&[chunk(CID_DATA, 0)])).is_none());
    }

    // ----- packet exchanges (client A:5000 tag 0x11111111, server B:6000 tag 0x22222222) -----
    use crate::testutil::*;
    use crate::Hook;

    const CT: u32 = 0x1111_1111;
    const ST: u32 = 0x2222_2222;

    fn c2s(vtag: u32, chunks: &[Vec<u8>]) -> Vec<u8> {
        sctp(A, 5000, B, 6000, vtag, chunks, false)
    }
    fn s2c(vtag: u32, chunks: &[Vec<u8>]) -> Vec<u8> {
        sctp(B, 6000, A, 5000, vtag, chunks, false)
    }
    fn data() -> Vec<u8> {
        sctp_chunk(CID_DATA, 3, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, b'h', b'i'])
    }
    fn state(lab: &Lab, at: f64) -> (String, u64) {
        let c = lab.ct.iter().next().unwrap();
        (c.sctp_state().unwrap().to_string(), c.remaining_secs(t(at)))
    }

    #[test]
    fn four_way_handshake_data_and_shutdown() {
        let mut lab = Lab::new();
        // INIT: CLOSED with 10 s (6.18 in a namespace pair: "sctp 132 9 CLOSED ... [UNREPLIED]")
        assert_eq!(info(lab.pass(0.0, &c2s(0, &[sctp_init(CID_INIT, CT)]))), "NEW");
        assert_eq!(
            lab.proc(0.3),
            "ipv4     2 sctp     132 9 CLOSED src=10.99.0.1 dst=10.99.0.2 sport=5000 dport=6000 [UNREPLIED] src=10.99.0.2 dst=10.99.0.1 sport=6000 dport=5000 mark=0 zone=0 use=2\n"
        );
        assert_eq!(
            lab.list(0.3),
            "sctp     132 9 CLOSED src=10.99.0.1 dst=10.99.0.2 sport=5000 dport=6000 [UNREPLIED] src=10.99.0.2 dst=10.99.0.1 sport=6000 dport=5000 mark=0 use=1\n"
        );
        // a retransmitted INIT is accepted but does not keep the entry alive
        let r = lab.pass(2.0, &c2s(0, &[sctp_init(CID_INIT, CT)]));
        assert_eq!(info(r), "NEW");
        assert!(note(r).is_some());
        assert_eq!(state(&lab, 2.0), ("CLOSED".into(), 8));
        // INIT_ACK with the client's tag: COOKIE_WAIT 3 s
        assert_eq!(info(lab.pass(2.1, &s2c(CT, &[sctp_init(CID_INIT_ACK, ST)]))), "ESTABLISHED_REPLY");
        assert_eq!(state(&lab, 2.1), ("COOKIE_WAIT".into(), 3));
        // COOKIE_ECHO (with data bundled) with the server's tag: COOKIE_ECHOED 3 s
        let echo = c2s(ST, &[sctp_chunk(CID_COOKIE_ECHO, 0, &[7; 16]), data()]);
        assert_eq!(info(lab.pass(2.2, &echo)), "ESTABLISHED");
        assert_eq!(state(&lab, 2.2), ("COOKIE_ECHOED".into(), 3));
        // COOKIE_ACK: ESTABLISHED 210 s and ASSURED
        lab.pass(2.3, &s2c(CT, &[sctp_chunk(CID_COOKIE_ACK, 0, &[])]));
        assert_eq!(state(&lab, 2.3), ("ESTABLISHED".into(), 210));
        assert!(lab.ct.iter().next().unwrap().status().assured());
        // DATA with a wrong tag: INVALID, nothing changes
        let r = lab.pass(3.0, &c2s(0xdead, &[data()]));
        assert_eq!(reason(r), "sctp: verification tag check failed");
        assert_eq!(state(&lab, 3.0), ("ESTABLISHED".into(), 209));
        // DATA with a bad CRC at PREROUTING: INVALID; the same from a local socket is fine
        let bad = sctp(A, 5000, B, 6000, ST, &[data()], true);
        assert_eq!(reason(lab.pass(3.1, &bad)), "nf_ct_sctp: bad CRC");
        lab.hook = Hook::LocalOut;
        assert_eq!(info(lab.pass(3.2, &bad)), "ESTABLISHED");
        lab.hook = Hook::PreRouting;
        assert_eq!(state(&lab, 3.2), ("ESTABLISHED".into(), 210));
        // SHUTDOWN, SHUTDOWN_ACK, SHUTDOWN_COMPLETE
        lab.pass(4.0, &c2s(ST, &[sctp_chunk(CID_SHUTDOWN, 0, &[0, 0, 0, 1])]));
        assert_eq!(state(&lab, 4.0), ("SHUTDOWN_SENT".into(), 3));
        lab.pass(4.1, &s2c(CT, &[sctp_chunk(CID_SHUTDOWN_ACK, 0, &[])]));
        assert_eq!(state(&lab, 4.1), ("SHUTDOWN_ACK_SENT".into(), 3));
        lab.pass(4.2, &c2s(ST, &[sctp_chunk(CID_SHUTDOWN_COMPLETE, 0, &[])]));
        assert_eq!(state(&lab, 4.2), ("CLOSED".into(), 10));
        // the events follow the state changes
        let ev = lab.events();
        let kinds: Vec<&str> = ev.iter().map(|l| l.split_whitespace().nth(5).unwrap_or("")).collect();
        assert_eq!(
            kinds,
            [
                "CLOSED",
                "COOKIE_WAIT",
                "COOKIE_ECHOED",
                "ESTABLISHED",
                "SHUTDOWN_SENT",
                "SHUTDOWN_ACK_SENT",
                "CLOSED"
            ]
        );
        assert!(ev[3].ends_with("[ASSURED]"));
    }

    #[test]
    fn out_of_the_blue_packets_do_not_create_entries() {
        let mut lab = Lab::new();
        // ABORT, SHUTDOWN_COMPLETE, COOKIE_ACK out of the blue (RFC 9260 §8.4)
        for ty in [CID_ABORT, CID_SHUTDOWN_COMPLETE, CID_COOKIE_ACK] {
            assert_eq!(info(lab.pass(0.0, &c2s(5, &[sctp_chunk(ty, 0, &[])]))), "INVALID");
        }
        // DATA cannot start an association; INIT must carry tag 0; INIT must be alone
        assert_eq!(info(lab.pass(0.0, &c2s(5, &[data()]))), "INVALID");
        assert_eq!(info(lab.pass(0.0, &c2s(5, &[sctp_init(CID_INIT, CT)]))), "INVALID");
        assert_eq!(info(lab.pass(0.0, &c2s(0, &[sctp_init(CID_INIT, CT), data()]))), "INVALID");
        // a short header
        assert_eq!(reason(lab.pass(0.0, &ipv4(A, B, 132, &[0, 1, 0, 2, 0, 0]))), "nf_ct_sctp: short packet");
        assert_eq!((lab.ct.count(), lab.ct.stats().invalid), (0, 7));
        // a HEARTBEAT starts HEARTBEAT_SENT (30 s), answered to ESTABLISHED
        assert_eq!(info(lab.pass(1.0, &c2s(9, &[sctp_chunk(CID_HEARTBEAT, 0, &[0, 1, 0, 4])]))), "NEW");
        assert_eq!(state(&lab, 1.0), ("HEARTBEAT_SENT".into(), 30));
        lab.pass(1.1, &s2c(8, &[sctp_chunk(CID_HEARTBEAT_ACK, 0, &[0, 1, 0, 4])]));
        assert_eq!(state(&lab, 1.1), ("ESTABLISHED".into(), 210));
    }

    #[test]
    fn sctp_timeouts_are_sysctls() {
        let mut cfg = Config::default();
        cfg.set("net.netfilter.nf_conntrack_sctp_timeout_closed", "42").unwrap();
        let mut lab = Lab::with(cfg);
        lab.pass(0.0, &c2s(0, &[sctp_init(CID_INIT, CT)]));
        assert_eq!(state(&lab, 0.0), ("CLOSED".into(), 42));
    }
}
