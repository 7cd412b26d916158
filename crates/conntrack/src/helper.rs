//! Application helpers: FTP and TFTP (reference §8.1, §8.3, §8.4; `nf_conntrack_ftp.c`,
//! `nf_conntrack_tftp.c`); the IRC and Amanda parsers are in [`crate::irc`] and [`crate::amanda`].
//!
//! Contract:
//! - A helper is attached to an entry only through a template (`-j CT --helper NAME`); the entry
//!   keeps the name (HELPER status bit, `helper=` in `conntrack -L`). Known names with a help
//!   function: `ftp` (TCP), `tftp` (UDP), `irc` (TCP, IPv4) and `amanda` (UDP); any other name
//!   is recorded but parses nothing.
//! - [`crate::Conntrack::help`] runs the helper at the confirm hook for packets of entries with a
//!   helper, except RELATED_REPLY packets (`nf_confirm`). It returns [`HelperVerdict::Drop`] when
//!   the kernel's helper returns NF_DROP (FTP partial match, expectation that cannot be added).
//! - FTP (this module's [`ftp_parse`]): only ESTABLISHED / ESTABLISHED_REPLY payload segments are
//!   looked at, and only those starting at a sequence number recorded right after a segment that
//!   ended in `\n` in the same direction (two remembered per direction). Original direction:
//!   `PORT` and `EPRT`; reply direction: `227 ` and `229 `. Once the keyword is there, anything
//!   that does not parse to the end is a partial match (drop). The number parsing follows the
//!   kernel: decimal numbers accumulate in 32 bits and are packed into the address / 16-bit port
//!   with no range check (6.18 behaviour, checked with `statewall verify`); EPRT/EPSV ports
//!   accumulate in 16 bits and must not be 0.
//! - The address named by PORT/EPRT/227 must be the sender's own address in the control
//!   connection, else no expectation (FTP bounce), unless `loose` (the module parameter
//!   `nf_conntrack_ftp.loose`, see [`crate::Config::ftp_loose`]) is set, in which case the named
//!   address is expected.
//! - TFTP: a read (1) or write (2) request on the helper's entry, whatever its ctinfo, expects
//!   UDP from the server's address (any port) to the client's address and port.
//! - IRC (`nf_conntrack_irc.c`): on original-direction ESTABLISHED payload of an IPv4 entry, a
//!   DCC command ([`crate::irc::dcc_parse`]) naming the client's own address and a non-zero port
//!   expects TCP from any address and port to the client (reply-direction destination) and that
//!   port; at most 8 per entry (the oldest evicted), 300 s.
//! - Amanda (`nf_conntrack_amanda.c`): every reply-direction packet sets the entry's timeout to
//!   300 s (`master_timeout`); a `CONNECT` line ([`crate::amanda::amanda_parse`]) expects TCP from
//!   the original source to the original destination and each port announced; at most 3 per
//!   entry, 180 s. A port that cannot be expected drops the packet (the other ports are still
//!   tried).
//! - SIP (`nf_conntrack_sip.c`, IPv4 and IPv6, no NAT): every packet with payload sets the entry's
//!   timeout to 3600 s (`sip_timeout`); UDP datagrams are one message, TCP segments (ESTABLISHED
//!   either way) a sequence of complete messages delimited by `Content-Length`; see [`crate::sip`]
//!   for what is parsed and expected (addresses of the entry's family). Signalling expectations
//!   carry the SIP helper to the new entry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::conn::Dir;

/// Which help function an entry's helper has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HelperKind {
    Ftp,
    Tftp,
    /// IRC DCC (IPv4 TCP; [`crate::irc`]).
    Irc,
    /// Amanda (UDP; [`crate::amanda`]).
    Amanda,
    /// SIP (UDP and TCP; [`crate::sip`]).
    Sip,
}

impl HelperKind {
    /// The help function registered under `name` for L4 protocol `proto` (helpers are looked up
    /// by name and protocol).
    pub fn lookup(name: &str, proto: u8) -> Option<HelperKind> {
        match (name, proto) {
            ("ftp", crate::tuple::PROTO_TCP) => Some(HelperKind::Ftp),
            ("tftp", crate::tuple::PROTO_UDP) => Some(HelperKind::Tftp),
            ("irc", crate::tuple::PROTO_TCP) => Some(HelperKind::Irc),
            ("amanda", crate::tuple::PROTO_UDP) => Some(HelperKind::Amanda),
            ("sip", crate::tuple::PROTO_UDP | crate::tuple::PROTO_TCP) => Some(HelperKind::Sip),
            _ => None,
        }
    }

    /// The expectation policy (max_expected, timeout seconds) of `class`.
    pub(crate) fn policy(self, class: u8) -> (usize, u32) {
        match self {
            HelperKind::Sip => {
                let (max, timeout, _) = crate::sip::class_policy(class);
                (max, timeout)
            }
            HelperKind::Ftp | HelperKind::Tftp => (1, 300),
            // max_dcc_channels, dcc_timeout
            HelperKind::Irc => (8, 300),
            HelperKind::Amanda => (3, 180),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HelperKind::Ftp => "ftp",
            HelperKind::Tftp => "tftp",
            HelperKind::Irc => "irc",
            HelperKind::Amanda => "amanda",
            HelperKind::Sip => "sip",
        }
    }
}

/// What a helper decided about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperVerdict {
    Accept,
    /// The helper drops the packet (NF_DROP from the help function); the reason is the kernel's
    /// helper log text.
    Drop(&'static str),
}

/// Per-entry helper data (`nf_conn_help`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Help {
    pub(crate) name: Box<str>,
    pub(crate) kind: Option<HelperKind>,
    pub(crate) ftp: FtpState,
    /// SIP: the CSeq of the last INVITE and REGISTER handled (`nf_ct_sip_master`).
    pub(crate) sip_invite_cseq: u32,
    pub(crate) sip_register_cseq: u32,
}

/// How many "sequence number after a newline" values FTP remembers per direction.
const NUM_SEQ_TO_REMEMBER: usize = 2;

/// FTP line-start tracking (`nf_ct_ftp_master`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FtpState {
    seq_aft_nl: [[u32; NUM_SEQ_TO_REMEMBER]; 2],
    seq_aft_nl_num: [u8; 2],
}

fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl FtpState {
    /// Is `seq` one of the remembered line starts of direction `dir`?
    pub(crate) fn at_line_start(&self, dir: Dir, seq: u32) -> bool {
        let d = dir.index();
        let n = usize::from(self.seq_aft_nl_num.get(d).copied().unwrap_or(0));
        self.seq_aft_nl.get(d).is_some_and(|s| s.iter().take(n).any(|&x| x == seq))
    }

    /// Remember `nl_seq` (the sequence number after a segment ending in `\n`): appended while
    /// there is room, else it replaces the older of the two if it is newer.
    pub(crate) fn record_line_start(&mut self, dir: Dir, nl_seq: u32) {
        let d = dir.index();
        let (Some(seqs), Some(num)) = (self.seq_aft_nl.get_mut(d), self.seq_aft_nl_num.get_mut(d)) else {
            return;
        };
        let n = usize::from(*num);
        if seqs.iter().take(n).any(|&x| x == nl_seq) {
            return;
        }
        if n < NUM_SEQ_TO_REMEMBER {
            if let Some(slot) = seqs.get_mut(n) {
                *slot = nl_seq;
                *num += 1;
            }
            return;
        }
        let oldest = if before(seqs[0], seqs[1]) { 0 } else { 1 };
        if let Some(slot) = seqs.get_mut(oldest) {
            if before(*slot, nl_seq) {
                *slot = nl_seq;
            }
        }
    }
}

/// Which FTP command or reply matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FtpCommand {
    Port,
    Eprt,
    Pasv,
    Epsv,
}

/// Result of parsing one FTP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtpParse {
    /// No keyword at the start of the segment: accepted, nothing expected.
    NoMatch,
    /// The keyword (given) is there but the rest does not parse: the kernel drops the packet.
    Partial(&'static str),
    /// A full match: the address (the sender's own for EPSV) and port named.
    Match { cmd: FtpCommand, addr: IpAddr, port: u16 },
}

/// One search pattern of `nf_conntrack_ftp.c`.
struct Search {
    pattern: &'static [u8],
    /// Character to skip to after the keyword (0 = none).
    skip: u8,
    /// Terminator of the numbers (0 = any non-number character).
    term: u8,
    cmd: FtpCommand,
}

const SEARCH_ORIGINAL: [Search; 2] = [
    Search { pattern: b"PORT", skip: b' ', term: b'\r', cmd: FtpCommand::Port },
    Search { pattern: b"EPRT", skip: b' ', term: b'\r', cmd: FtpCommand::Eprt },
];

const SEARCH_REPLY: [Search; 2] = [
    Search { pattern: b"227 ", skip: 0, term: 0, cmd: FtpCommand::Pasv },
    Search { pattern: b"229 ", skip: b'(', term: b')', cmd: FtpCommand::Epsv },
];

/// Parse an FTP segment sent in direction `dir` of a control connection whose sender address in
/// that direction is `sender` (the address EPSV implies; its family selects IPv4 or IPv6 forms).
pub fn ftp_parse(dir: Dir, data: &[u8], sender: IpAddr) -> FtpParse {
    let searches = match dir {
        Dir::Original => &SEARCH_ORIGINAL,
        Dir::Reply => &SEARCH_REPLY,
    };
    for s in searches {
        match find_pattern(data, s, sender) {
            Found::None => continue,
            Found::Partial => {
                return FtpParse::Partial(match s.cmd {
                    FtpCommand::Port => "ftp: partial matching of `PORT'",
                    FtpCommand::Eprt => "ftp: partial matching of `EPRT'",
                    FtpCommand::Pasv => "ftp: partial matching of `227 '",
                    FtpCommand::Epsv => "ftp: partial matching of `229 '",
                })
            }
            Found::Match(addr, port) => return FtpParse::Match { cmd: s.cmd, addr, port },
        }
    }
    FtpParse::NoMatch
}

enum Found {
    None,
    Partial,
    Match(IpAddr, u16),
}

fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// `find_pattern`: keyword at the start (case-insensitive), optional skip character, numbers.
fn find_pattern(data: &[u8], s: &Search, sender: IpAddr) -> Found {
    let plen = s.pattern.len();
    if data.is_empty() {
        return Found::None;
    }
    if data.len() <= plen {
        // a segment shorter than the keyword that starts like it
        let prefix = s.pattern.get(..data.len()).unwrap_or(&[]);
        return if eq_ignore_case(data, prefix) { Found::Partial } else { Found::None };
    }
    if !eq_ignore_case(data.get(..plen).unwrap_or(&[]), s.pattern) {
        return Found::None;
    }
    let mut i = plen;
    if s.skip != 0 {
        // scan to the skip character; reaching the last byte without it is partial
        loop {
            match data.get(i) {
                Some(&c) if c == s.skip => break,
                Some(_) if i + 1 == data.len() => return Found::Partial,
                Some(_) => i += 1,
                None => return Found::Partial,
            }
        }
        i += 1;
    }
    let rest = data.get(i..).unwrap_or(&[]);
    let got = match s.cmd {
        FtpCommand::Port => try_rfc959(rest, s.term),
        FtpCommand::Pasv => try_rfc1123(rest),
        FtpCommand::Eprt => try_eprt(rest, sender),
        FtpCommand::Epsv => try_epsv(rest).map(|p| (sender, p)),
    };
    match got {
        Some((addr, port)) => Found::Match(addr, port),
        None => Found::Partial,
    }
}

/// `try_number`: `n` decimal numbers separated by `sep` and ended by `term` (0 = any character
/// that is neither a digit nor `sep`). Numbers accumulate in 32 bits, wrapping. Returns the
/// numbers and the offset of the terminator; `None` if the data ends first or something else
/// comes.
fn try_number<const N: usize>(data: &[u8], sep: u8, term: u8) -> Option<([u32; N], usize)> {
    let mut nums = [0u32; N];
    let mut i = 0usize;
    for (len, &c) in data.iter().enumerate() {
        if i >= N {
            return None;
        }
        if c.is_ascii_digit() {
            let slot = nums.get_mut(i)?;
            *slot = slot.wrapping_mul(10).wrapping_add(u32::from(c - b'0'));
        } else if c == sep {
            i += 1;
        } else {
            if (c == term || term == 0) && i + 1 == N && len > 0 {
                return Some((nums, len));
            }
            return None;
        }
    }
    None
}

/// `h1,h2,h3,h4,p1,p2`: the octets are packed with shifts and ORs into 32 bits and the port into
/// 16 bits, as the kernel does (no range check on 6.18).
fn try_rfc959(data: &[u8], term: u8) -> Option<(IpAddr, u16)> {
    let ([a, b, c, d, p1, p2], _) = try_number::<6>(data, b',', term)?;
    let ip = (a << 24) | (b << 16) | (c << 8) | d;
    let port = ((p1 << 8) | p2) as u16;
    Some((IpAddr::V4(Ipv4Addr::from(ip)), port))
}

/// 227 replies (RFC 1123): scan to the first digit, then the six numbers with any terminator.
fn try_rfc1123(data: &[u8]) -> Option<(IpAddr, u16)> {
    let start = data.iter().position(u8::is_ascii_digit)?;
    try_rfc959(data.get(start..)?, 0)
}

/// `get_port`: digits accumulated in 16 bits (wrapping) up to `delim`; 0 or another character fails.
fn get_port(data: &[u8], start: usize, delim: u8) -> Option<u16> {
    let mut port: u16 = 0;
    for &c in data.get(start..)? {
        if c == delim {
            return (port != 0).then_some(port);
        } else if c.is_ascii_digit() {
            port = port.wrapping_mul(10).wrapping_add(u16::from(c - b'0'));
        } else {
            return None;
        }
    }
    None
}

/// A valid EPRT/EPSV delimiter: printable ASCII 33..126 and not a digit.
fn eprt_delim(c: u8) -> bool {
    (33..=126).contains(&c) && !c.is_ascii_digit()
}

/// `|1|a.b.c.d|port|` or `|2|ipv6|port|`; the protocol digit must be the connection's family.
fn try_eprt(data: &[u8], sender: IpAddr) -> Option<(IpAddr, u16)> {
    if data.len() <= 3 {
        return None;
    }
    let (&delim, &proto, &d2) = (data.first()?, data.get(1)?, data.get(2)?);
    if !eprt_delim(delim) || d2 != delim {
        return None;
    }
    let v6 = sender.is_ipv6();
    if (!v6 && proto != b'1') || (v6 && proto != b'2') {
        return None;
    }
    let rest = data.get(3..)?;
    let (addr, length) = if proto == b'1' {
        let ([a, b, c, d], len) = try_number::<4>(rest, b'.', delim)?;
        (IpAddr::V4(Ipv4Addr::from((a << 24) | (b << 16) | (c << 8) | d)), len)
    } else {
        let (a, len) = in6_pton(rest, delim)?;
        (IpAddr::V6(a), len)
    };
    if length == 0 {
        return None;
    }
    let port = get_port(data, 3 + length + 1, delim)?;
    Some((addr, port))
}

/// EPSV reply `|||port|`: three identical delimiters then the port.
fn try_epsv(data: &[u8]) -> Option<u16> {
    if data.len() <= 3 {
        return None;
    }
    let delim = *data.first()?;
    if !eprt_delim(delim) || data.get(1) != Some(&delim) || data.get(2) != Some(&delim) {
        return None;
    }
    get_port(data, 3, delim)
}

// Character classes of the kernel's IPv6 literal parser (`in6_pton`).
const X_XDIGIT: u32 = 0x0001_0000;
const X_DIGIT: u32 = 0x0002_0000;
const X_COLON_MASK: u32 = 0x0070_0000;
const X_COLON_1: u32 = 0x0010_0000;
const X_COLON_2: u32 = 0x0020_0000;
const X_COLON_1_2: u32 = 0x0040_0000;
const X_DOT: u32 = 0x0080_0000;
const X_DELIM: u32 = 0x1000_0000;
const X_NULL: u32 = 0x2000_0000;
const X_UNKNOWN: u32 = 0x4000_0000;

/// Classify one character: the delimiter and NUL end the literal, ':' and '.' are separators,
/// hex digits carry their value.
fn classify(c: u8, delim: u8) -> u32 {
    if c == delim || c == 0 {
        return X_DELIM;
    }
    if c == b':' {
        return X_COLON_MASK;
    }
    if c == b'.' {
        return X_DOT;
    }
    match c {
        b'0'..=b'9' => u32::from(c - b'0') | X_XDIGIT | X_DIGIT,
        b'a'..=b'f' => u32::from(c - b'a' + 10) | X_XDIGIT,
        b'A'..=b'F' => u32::from(c - b'A' + 10) | X_XDIGIT,
        _ => X_UNKNOWN,
    }
}

/// Character `i` of `src`, or NUL past the end (the kernel reads a NUL once the length is used up).
fn at(src: &[u8], i: usize) -> u8 {
    src.get(i).copied().unwrap_or(0)
}

/// `in4_pton` as used inside an IPv6 literal: dotted quad of decimal octets (each <= 255) ended
/// by the delimiter (or ':'). Returns the bytes and the offset of the end.
fn in4_pton(src: &[u8], delim: u8) -> Option<([u8; 4], usize)> {
    let mut out = [0u8; 4];
    let mut n = 0usize;
    let mut w: u32 = 0;
    let mut seen = false;
    let mut i = 0usize;
    loop {
        let c = classify(at(src, i), delim);
        if c & (X_DIGIT | X_DOT | X_DELIM | X_COLON_MASK) == 0 {
            return None;
        }
        if c & (X_DOT | X_DELIM | X_COLON_MASK) != 0 {
            if !seen {
                return None;
            }
            *out.get_mut(n)? = (w & 0xff) as u8;
            w = 0;
            seen = false;
            n += 1;
            if c & (X_DELIM | X_COLON_MASK) != 0 {
                if n != 4 {
                    return None;
                }
                return Some((out, i));
            }
        } else {
            w = w.wrapping_mul(10).wrapping_add(c & 0xff);
            seen = true;
            if w > 255 {
                return None;
            }
        }
        if n >= 4 {
            return None;
        }
        i += 1;
        if i > src.len() {
            return None;
        }
    }
}

/// `in6_pton`: an IPv6 literal ended by `delim` (or NUL / the end of the data). Returns the
/// address and the offset of the character that ended it.
pub(crate) fn in6_pton(src: &[u8], delim: u8) -> Option<(Ipv6Addr, usize)> {
    let mut buf = [0u8; 16];
    let mut d = 0usize; // bytes written
    let mut dc: Option<usize> = None; // position of "::"
    let mut tok: Option<usize> = None;
    let mut state = X_COLON_1_2 | X_XDIGIT | X_NULL;
    let mut w: u32 = 0;
    let mut i = 0usize;
    let end;
    loop {
        let c = classify(at(src, i), delim);
        if c & state == 0 {
            return None;
        }
        if c & (X_DELIM | X_COLON_MASK) != 0 {
            if state & X_NULL == 0 {
                *buf.get_mut(d)? = ((w >> 8) & 0xff) as u8;
                *buf.get_mut(d + 1)? = (w & 0xff) as u8;
                d += 2;
            }
            w = 0;
            if c & X_DELIM != 0 {
                end = i;
                break;
            }
            state = match state & X_COLON_MASK {
                X_COLON_2 => {
                    dc = Some(d);
                    let mut s = X_XDIGIT | X_DELIM;
                    if d >= 16 {
                        s |= X_NULL;
                    }
                    s
                }
                m if m == X_COLON_1 | X_COLON_1_2 => X_XDIGIT | X_COLON_2,
                X_COLON_1 => X_XDIGIT,
                X_COLON_1_2 => X_COLON_2,
                _ => 0,
            };
            tok = Some(i + 1);
        } else if c & X_DOT != 0 {
            let from = tok.unwrap_or(i);
            let (v4, off) = in4_pton(src.get(from..)?, delim)?;
            buf.get_mut(d..d + 4)?.copy_from_slice(&v4);
            d += 4;
            end = from + off;
            break;
        } else {
            w = (w << 4) | (c & 0xff);
            state = X_COLON_1 | X_DELIM;
            if w & 0xf000 == 0 {
                state |= X_XDIGIT;
            }
            if dc.is_none() && d + 2 < 16 {
                state |= X_COLON_1_2;
                state &= !X_DELIM;
            }
            if d + 2 >= 16 {
                state &= !(X_COLON_1 | X_COLON_1_2);
            }
        }
        if (dc.is_some() && d + 4 < 16) || d + 4 == 16 {
            state |= X_DOT;
        }
        if d >= 16 {
            state &= !(X_XDIGIT | X_COLON_MASK);
        }
        i += 1;
        if i > src.len() {
            return None;
        }
    }
    let mut out = [0u8; 16];
    match dc {
        Some(dc) => {
            // bytes before "::" stay in front, the ones after it go to the end
            let head = buf.get(..dc)?;
            let tail = buf.get(dc..d)?;
            out.get_mut(..dc)?.copy_from_slice(head);
            let start = 16usize.checked_sub(tail.len())?;
            out.get_mut(start..)?.copy_from_slice(tail);
        }
        None => {
            if d != 16 {
                // the kernel copies its zero-filled buffer; a short address keeps trailing zeros
            }
            out = buf;
        }
    }
    Some((Ipv6Addr::from(out), end))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 1));
    const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 99, 0, 2));

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    fn m(cmd: FtpCommand, addr: IpAddr, port: u16) -> FtpParse {
        FtpParse::Match { cmd, addr, port }
    }

    #[test]
    fn port_command_forms() {
        let o = Dir::Original;
        assert_eq!(ftp_parse(o, b"PORT 10,99,0,1,39,17\r\n", CLIENT), m(FtpCommand::Port, CLIENT, 10001));
        // case-insensitive keyword, anything up to the first space
        assert_eq!(ftp_parse(o, b"port 10,99,0,1,0,21\r\n", CLIENT), m(FtpCommand::Port, CLIENT, 21));
        assert_eq!(ftp_parse(o, b"PORTX 1,2,3,4,0,1\r\n", CLIENT), m(FtpCommand::Port, v4(1, 2, 3, 4), 1));
        // bare LF: the terminator must be CR
        assert_eq!(
            ftp_parse(o, b"PORT 10,99,0,1,39,17\n", CLIENT),
            FtpParse::Partial("ftp: partial matching of `PORT'")
        );
        // too few / too many numbers, other characters
        assert!(matches!(ftp_parse(o, b"PORT 10,99,0,1,39\r\n", CLIENT), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"PORT 10,99,0,1,39,17,1\r\n", CLIENT), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"PORT 10,99,0,1,39,x\r\n", CLIENT), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"PORT  10,99,0,1,39,17\r\n", CLIENT), FtpParse::Partial(_)));
        // no space before the end of the segment; segment shorter than the keyword
        assert!(matches!(ftp_parse(o, b"PORT\r\n", CLIENT), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"POR", CLIENT), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"p", CLIENT), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"E", CLIENT), FtpParse::Partial(_)));
        // no keyword
        assert_eq!(ftp_parse(o, b"USER x\r\n", CLIENT), FtpParse::NoMatch);
        assert_eq!(ftp_parse(o, b" PORT 1,2,3,4,5,6\r\n", CLIENT), FtpParse::NoMatch);
        // empty numbers count as 0; numbers are packed without range checks
        assert_eq!(ftp_parse(o, b"PORT 10,99,0,,0,1\r\n", CLIENT), m(FtpCommand::Port, v4(10, 99, 0, 0), 1));
        assert_eq!(
            ftp_parse(o, b"PORT 10,99,0,257,1,0\r\n", CLIENT),
            m(FtpCommand::Port, v4(10, 99, 1, 1), 256)
        );
        assert_eq!(ftp_parse(o, b"PORT 10,99,0,1,256,1\r\n", CLIENT), m(FtpCommand::Port, CLIENT, 1));
        // replies are not looked for in the original direction
        assert_eq!(ftp_parse(o, b"227 Entering (10,99,0,2,39,16)\r\n", CLIENT), FtpParse::NoMatch);
    }

    #[test]
    fn eprt_forms() {
        let o = Dir::Original;
        assert_eq!(ftp_parse(o, b"EPRT |1|10.99.0.1|6275|\r\n", CLIENT), m(FtpCommand::Eprt, CLIENT, 6275));
        assert_eq!(ftp_parse(o, b"EPRT !1!10.99.0.1!6275!\r\n", CLIENT), m(FtpCommand::Eprt, CLIENT, 6275));
        // digit or non-printable delimiters, mismatched delimiters, wrong family digit
        assert!(matches!(ftp_parse(o, b"EPRT 111.99.0.1|6275|\r\n", CLIENT), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"EPRT |1!10.99.0.1|6275|\r\n", CLIENT), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"EPRT |2|::1|6275|\r\n", CLIENT), FtpParse::Partial(_)));
        // port 0, missing final delimiter, other characters in the port
        assert!(matches!(ftp_parse(o, b"EPRT |1|10.99.0.1|0|\r\n", CLIENT), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"EPRT |1|10.99.0.1|6275\r\n", CLIENT), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"EPRT |1|10.99.0.1|62x5|\r\n", CLIENT), FtpParse::Partial(_)));
        // the port accumulates in 16 bits
        assert_eq!(ftp_parse(o, b"EPRT |1|10.99.0.1|65537|\r\n", CLIENT), m(FtpCommand::Eprt, CLIENT, 1));
        // IPv6
        let c6: IpAddr = "fd99::1".parse().unwrap();
        assert_eq!(ftp_parse(o, b"EPRT |2|fd99::1|6275|\r\n", c6), m(FtpCommand::Eprt, c6, 6275));
        assert_eq!(ftp_parse(o, b"EPRT |2|FD99:0:0:0:0:0:0:1|6275|\r\n", c6), m(FtpCommand::Eprt, c6, 6275));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(ftp_parse(o, b"EPRT |2|::ffff:10.1.2.3|99|\r\n", c6), m(FtpCommand::Eprt, mapped, 99));
        assert!(matches!(ftp_parse(o, b"EPRT |2|fd99:::1|6275|\r\n", c6), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"EPRT |2|fd99::g|6275|\r\n", c6), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(o, b"EPRT |1|10.99.0.1|6275|\r\n", c6), FtpParse::Partial(_)));
    }

    #[test]
    fn pasv_and_epsv_replies() {
        let r = Dir::Reply;
        assert_eq!(
            ftp_parse(r, b"227 Entering Passive Mode (10,99,0,2,39,16).\r\n", SERVER),
            m(FtpCommand::Pasv, SERVER, 10000)
        );
        // no parentheses needed: the first digit starts the numbers, any terminator
        assert_eq!(ftp_parse(r, b"227 =10,99,0,2,39,16\r\n", SERVER), m(FtpCommand::Pasv, SERVER, 10000));
        // numbers running to the end of the segment, no digit at all
        assert!(matches!(ftp_parse(r, b"227 x 10,99,0,2,39,16", SERVER), FtpParse::Partial(_)));
        assert!(matches!(ftp_parse(r, b"227 nothing here\r\n", SERVER), FtpParse::Partial(_)));
        // "227" without the space is not the keyword once longer than it
        assert_eq!(ftp_parse(r, b"227-multi\r\n", SERVER), FtpParse::NoMatch);
        assert!(matches!(ftp_parse(r, b"22", SERVER), FtpParse::Partial(_)));
        assert_eq!(
            ftp_parse(r, b"229 Entering Extended Passive Mode (|||6446|)\r\n", SERVER),
            m(FtpCommand::Epsv, SERVER, 6446)
        );
        assert!(matches!(ftp_parse(r, b"229 Entering (||6446|)\r\n", SERVER), FtpParse::Partial(_)));
        assert!(matches!(
            ftp_parse(r, b"229 Entering Extended Passive Mode\r\n", SERVER),
            FtpParse::Partial(_)
        ));
        assert!(matches!(ftp_parse(r, b"229 (|||0|)\r\n", SERVER), FtpParse::Partial(_)));
        assert_eq!(ftp_parse(r, b"230 Logged in\r\n", SERVER), FtpParse::NoMatch);
        // commands are not looked for in the reply direction
        assert_eq!(ftp_parse(r, b"PORT 1,2,3,4,5,6\r\n", SERVER), FtpParse::NoMatch);
    }

    #[test]
    fn line_starts_keep_the_two_newest() {
        let mut s = FtpState::default();
        let o = Dir::Original;
        assert!(!s.at_line_start(o, 100));
        s.record_line_start(o, 100);
        s.record_line_start(o, 200);
        s.record_line_start(o, 200);
        assert!(s.at_line_start(o, 100) && s.at_line_start(o, 200));
        assert!(!s.at_line_start(Dir::Reply, 100));
        // a newer one replaces the oldest; an older one is ignored
        s.record_line_start(o, 300);
        assert!(!s.at_line_start(o, 100) && s.at_line_start(o, 200) && s.at_line_start(o, 300));
        s.record_line_start(o, 50);
        assert!(!s.at_line_start(o, 50));
    }

    proptest::proptest! {
        #[test]
        fn ftp_parser_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), reply: bool, six: bool) {
            let sender: IpAddr = if six { "fd99::2".parse().unwrap() } else { SERVER };
            let dir = if reply { Dir::Reply } else { Dir::Original };
            let _ = ftp_parse(dir, &data, sender);
            let mut with_kw = b"EPRT |2|".to_vec();
            with_kw.extend_from_slice(&data);
            let _ = ftp_parse(Dir::Original, &with_kw, sender);
            let _ = in6_pton(&data, b'|');
        }
    }
}

#[cfg(test)]
mod exchanges {
    //! Packet exchanges through conntrack with the helper step (client A:40000, server B:21;
    //! client ISN 1000, server ISN 5000).
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::field_reassign_with_default)]
    use crate::testutil::*;
    use crate::{Config, HelperVerdict, InResult, Status, Template};

    fn ftp_tmpl() -> Template {
        Template { helper: Some("ftp".into()), ..Template::default() }
    }

    /// The control connection's state: next client and server sequence numbers.
    struct Ftp {
        lab: Lab,
        cseq: u32,
        sseq: u32,
        now: f64,
    }

    impl Ftp {
        fn new(cfg: Config) -> Ftp {
            let mut lab = Lab::with(cfg);
            let tm = ftp_tmpl();
            assert_eq!(
                info(lab.through(0.0, &tcp(A, 40000, B, 21, "S", 1000, 0).bytes(), Some(&tm)).0),
                "NEW"
            );
            lab.through(0.01, &tcp(B, 21, A, 40000, "SA", 5000, 1001).bytes(), None);
            lab.through(0.02, &tcp(A, 40000, B, 21, "A", 1001, 5001).bytes(), None);
            Ftp { lab, cseq: 1001, sseq: 5001, now: 0.02 }
        }
        /// Client sends `text`; returns (ctinfo, helper verdict).
        fn client(&mut self, text: &[u8]) -> (&'static str, HelperVerdict) {
            self.now += 0.01;
            let seg = tcp(A, 40000, B, 21, if text.is_empty() { "A" } else { "PA" }, self.cseq, self.sseq)
                .text(text);
            let (r, v) = self.lab.through(self.now, &seg.bytes(), None);
            if v == HelperVerdict::Accept {
                self.cseq = self.cseq.wrapping_add(text.len() as u32);
            }
            (info(r), v)
        }
        fn server(&mut self, text: &[u8]) -> (&'static str, HelperVerdict) {
            self.now += 0.01;
            let seg = tcp(B, 21, A, 40000, "PA", self.sseq, self.cseq).text(text);
            let (r, v) = self.lab.through(self.now, &seg.bytes(), None);
            if v == HelperVerdict::Accept {
                self.sseq = self.sseq.wrapping_add(text.len() as u32);
            }
            (info(r), v)
        }
        fn expectations(&self) -> usize {
            self.lab.ct.expectations().count()
        }
    }

    const OK: HelperVerdict = HelperVerdict::Accept;

    #[test]
    fn pasv_expects_the_client_to_the_server_port_and_the_data_syn_is_related() {
        // reference §9 T11 (PASV)
        let mut f = Ftp::new(Config::default());
        assert_eq!(f.server(b"220 hi\r\n"), ("ESTABLISHED_REPLY", OK));
        assert_eq!(f.client(b"USER x\r\n"), ("ESTABLISHED", OK));
        assert_eq!(f.server(b"331 pw\r\n"), ("ESTABLISHED_REPLY", OK));
        assert_eq!(f.client(b"PASV\r\n"), ("ESTABLISHED", OK));
        assert_eq!(f.expectations(), 0);
        assert_eq!(f.server(b"227 Entering Passive Mode (10,99,0,2,39,16).\r\n"), ("ESTABLISHED_REPLY", OK));
        assert_eq!(
            f.lab.list_expect(0.2),
            "299 proto=6 src=10.99.0.1 dst=10.99.0.2 sport=0 dport=10000 mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=10.99.0.1 master-dst=10.99.0.2 sport=40000 dport=21 class=0 helper=ftp\n"
        );
        assert_eq!(
            f.lab.proc_expect(0.2),
            "299 l3proto = 2 proto=6 src=10.99.0.1 dst=10.99.0.2 sport=0 dport=10000 ftp\n"
        );
        assert_eq!(f.lab.ct.stats().expect_create, 1);
        // the data connection from any client port
        let (r, _) = f.lab.through(1.0, &tcp(A, 40001, B, 10000, "S", 7000, 0).bytes(), None);
        assert_eq!(info(r), "RELATED");
        let id = ids(r);
        let c = f.lab.ct.conn(id).unwrap();
        assert!(c.status().contains(Status::EXPECTED) && c.helper().is_none());
        assert!(c.expectation().unwrap().starts_with("ftp expectation proto=6 src=10.99.0.1 dst=10.99.0.2"));
        assert!(f.lab.ct.conn(c.master().unwrap()).unwrap().helper() == Some("ftp"));
        assert_eq!(c.master_helper(), Some("ftp"));
        assert_eq!(f.expectations(), 0, "consumed");
        assert_eq!((f.lab.ct.stats().expect_new, f.lab.ct.stats().expect_delete), (1, 1));
        // a retransmitted SYN is still RELATED; the answer ESTABLISHED_REPLY; then ESTABLISHED
        assert_eq!(
            info(f.lab.through(1.5, &tcp(A, 40001, B, 10000, "S", 7000, 0).bytes(), None).0),
            "RELATED"
        );
        assert_eq!(
            info(f.lab.through(1.6, &tcp(B, 10000, A, 40001, "SA", 9000, 7001).bytes(), None).0),
            "ESTABLISHED_REPLY"
        );
        assert_eq!(
            info(f.lab.through(1.7, &tcp(A, 40001, B, 10000, "A", 7001, 9001).bytes(), None).0),
            "ESTABLISHED"
        );
        // a second data connection is not expected any more
        assert_eq!(info(f.lab.through(2.0, &tcp(A, 40002, B, 10000, "S", 7000, 0).bytes(), None).0), "NEW");
    }

    #[test]
    fn the_first_segment_of_each_direction_is_never_parsed() {
        // reference §9 T11: PORT as the client's first payload creates nothing
        let mut f = Ftp::new(Config::default());
        assert_eq!(f.client(b"PORT 10,99,0,1,39,17\r\n"), ("ESTABLISHED", OK));
        assert_eq!(f.expectations(), 0);
        f.server(b"200 ok\r\n");
        // now at a recorded line start: parsed
        assert_eq!(f.client(b"PORT 10,99,0,1,39,17\r\n"), ("ESTABLISHED", OK));
        assert_eq!(f.expectations(), 1);
        let e = f.lab.ct.expectations().next().unwrap();
        // from the server (any port) to the client's port
        assert_eq!((e.tuple.src, e.tuple.dst, e.tuple.dport()), (ip(B), ip(A), Some(10001)));
        // the server's data SYN (active mode) is RELATED
        assert_eq!(info(f.lab.through(1.0, &tcp(B, 20, A, 10001, "S", 100, 0).bytes(), None).0), "RELATED");
    }

    fn ip(a: [u8; 4]) -> std::net::IpAddr {
        std::net::IpAddr::from(a)
    }

    #[test]
    fn partial_matches_are_dropped_and_not_recorded() {
        let mut f = Ftp::new(Config::default());
        f.server(b"220 hi\r\n");
        f.client(b"USER x\r\n");
        // bare LF after PORT numbers (reference §9 T11): dropped, retransmission dropped too
        let drop = HelperVerdict::Drop("ftp: partial matching of `PORT'");
        assert_eq!(f.client(b"PORT 10,99,0,1,39,17\n").1, drop);
        assert_eq!(f.client(b"PORT 10,99,0,1,39,17\n").1, drop);
        assert_eq!(f.expectations(), 0);
        // the same seq with a proper command goes through
        assert_eq!(f.client(b"PORT 10,99,0,1,39,17\r\n").1, OK);
        assert_eq!(f.expectations(), 1);
        // a command split over two segments: the first part is partial
        f.server(b"200 ok\r\n");
        assert_eq!(f.client(b"POR").1, HelperVerdict::Drop("ftp: partial matching of `PORT'"));
        // EPRT with a bad delimiter
        assert_eq!(
            f.client(b"EPRT 1|10.99.0.1|5|\r\n").1,
            HelperVerdict::Drop("ftp: partial matching of `EPRT'")
        );
        // no keyword: fine
        assert_eq!(f.client(b"LIST\r\n").1, OK);
    }

    #[test]
    fn a_segment_not_ending_in_newline_shifts_parsing() {
        let mut f = Ftp::new(Config::default());
        f.server(b"220 hi\r\n");
        f.client(b"USER x\r\n");
        // "NOOP" without a newline: the next segment does not start a line
        assert_eq!(f.client(b"NOOP").1, OK);
        assert_eq!(f.client(b"\r\nPORT 10,99,0,1,39,17\r\n").1, OK);
        assert_eq!(f.client(b"PORT 10,99,0,1,39,18\r\n").1, OK);
        // only the last one was at a line start
        let ports: Vec<_> = f.lab.ct.expectations().map(|e| e.tuple.dport()).collect();
        assert_eq!(ports, vec![Some(10002)]);
    }

    #[test]
    fn bounce_to_a_third_party_is_not_expected_unless_loose() {
        let mut f = Ftp::new(Config::default());
        f.server(b"220 hi\r\n");
        f.client(b"USER x\r\n");
        // PORT naming C instead of the client itself: accepted, nothing expected
        assert_eq!(f.client(b"PORT 10,99,0,3,39,17\r\n"), ("ESTABLISHED", OK));
        assert_eq!(f.expectations(), 0);
        // a PASV reply naming another server
        assert_eq!(f.server(b"227 Entering Passive Mode (10,99,0,3,39,16)\r\n").1, OK);
        assert_eq!(f.expectations(), 0);
        let mut cfg = Config::default();
        cfg.ftp_loose = true;
        let mut f = Ftp::new(cfg);
        f.server(b"220 hi\r\n");
        f.client(b"USER x\r\n");
        f.client(b"PORT 10,99,0,3,39,17\r\n");
        let e = f.lab.ct.expectations().next().unwrap();
        assert_eq!((e.tuple.src, e.tuple.dst, e.tuple.dport()), (ip(B), ip(C), Some(10001)));
    }

    #[test]
    fn epsv_and_a_new_command_replace_the_pending_expectation() {
        let mut f = Ftp::new(Config::default());
        f.server(b"220 hi\r\n");
        f.client(b"EPSV\r\n");
        assert_eq!(f.server(b"229 Entering Extended Passive Mode (|||6446|)\r\n").1, OK);
        assert_eq!(f.lab.ct.expectations().next().unwrap().tuple.dport(), Some(6446));
        // max_expected 1: a second one evicts the first
        f.client(b"EPSV\r\n");
        f.server(b"229 Entering Extended Passive Mode (|||6447|)\r\n");
        let ports: Vec<_> = f.lab.ct.expectations().map(|e| e.tuple.dport()).collect();
        assert_eq!(ports, vec![Some(6447)]);
        assert_eq!((f.lab.ct.stats().expect_create, f.lab.ct.stats().expect_delete), (2, 1));
    }

    #[test]
    fn expectations_time_out_after_300_s_and_die_with_their_master() {
        let mut f = Ftp::new(Config::default());
        f.server(b"220 hi\r\n");
        f.client(b"PASV\r\n");
        f.server(b"227 (10,99,0,2,39,16)\r\n");
        // the client acknowledges (else the control entry would sit at the 300 s "unacknowledged" timeout)
        f.client(b"");
        assert_eq!(f.expectations(), 1);
        let created = f.now - 0.01;
        assert_eq!(f.lab.ct.poll_timeout(), Some(t(created + 300.0)));
        f.lab.ct.handle_timeout(t(created + 299.9));
        assert_eq!(f.expectations(), 1);
        f.lab.ct.handle_timeout(t(created + 300.0));
        assert_eq!(f.expectations(), 0);
        // a data SYN now is NEW
        assert_eq!(
            info(f.lab.through(created + 301.0, &tcp(A, 40001, B, 10000, "S", 7000, 0).bytes(), None).0),
            "NEW"
        );
        // removal with the master (here: conntrack -F)
        f.now = created + 302.0;
        f.client(b"PASV\r\n");
        f.server(b"227 (10,99,0,2,39,17)\r\n");
        assert_eq!(f.expectations(), 1);
        f.lab.ct.flush();
        assert_eq!(f.expectations(), 0);
    }

    #[test]
    fn the_data_connection_inherits_the_connmark() {
        let mut f = Ftp::new(Config::default());
        let master = f.lab.ct.iter().next().map(|c| c.orig()).unwrap();
        let id = f.lab.ct.find(&master, 0).unwrap();
        f.lab.ct.set_mark(id, 7);
        f.server(b"220 hi\r\n");
        f.client(b"PASV\r\n");
        f.server(b"227 (10,99,0,2,39,16)\r\n");
        let (r, _) = f.lab.through(1.0, &tcp(A, 40001, B, 10000, "S", 7000, 0).bytes(), None);
        assert_eq!(f.lab.ct.conn(ids(r)).unwrap().mark(), 7);
    }

    #[test]
    fn ftp_over_ipv6_with_eprt() {
        let mut lab = Lab::new();
        let tm = ftp_tmpl();
        let seg =
            |src: &str, sp: u16, dst: &str, dp: u16, fl: &'static str, seq: u32, ack: u32, text: &[u8]| {
                tcp6(src, sp, dst, dp, fl, seq, ack, text)
            };
        lab.through(0.0, &seg(A6, 40000, B6, 21, "S", 1000, 0, b""), Some(&tm));
        lab.through(0.01, &seg(B6, 21, A6, 40000, "SA", 5000, 1001, b""), None);
        lab.through(0.02, &seg(A6, 40000, B6, 21, "A", 1001, 5001, b""), None);
        lab.through(0.03, &seg(B6, 21, A6, 40000, "PA", 5001, 1001, b"220 hi\r\n"), None);
        lab.through(0.04, &seg(A6, 40000, B6, 21, "PA", 1001, 5009, b"USER x\r\n"), None);
        let (r, v) =
            lab.through(0.05, &seg(A6, 40000, B6, 21, "PA", 1009, 5009, b"EPRT |2|fd99::1|6275|\r\n"), None);
        assert_eq!((info(r), v), ("ESTABLISHED", HelperVerdict::Accept));
        assert_eq!(
            lab.proc_expect(0.1),
            "299 l3proto = 10 proto=6 src=fd99:0000:0000:0000:0000:0000:0000:0002 dst=fd99:0000:0000:0000:0000:0000:0000:0001 sport=0 dport=6275 ftp\n"
        );
        assert!(lab.list_expect(0.1).contains("mask-src=ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(info(lab.through(1.0, &seg(B6, 20, A6, 6275, "S", 1, 0, b""), None).0), "RELATED");
    }

    #[test]
    fn tftp_read_request_expects_the_answer_from_any_server_port() {
        let mut lab = Lab::new();
        let tm = Template { helper: Some("tftp".into()), ..Template::default() };
        let rrq = udp(A, 3000, B, 69, b"\x00\x01file\x00octet\x00");
        // the very first packet creates the expectation
        let (r, v) = lab.through(0.0, &rrq, Some(&tm));
        assert_eq!((info(r), v), ("NEW", HelperVerdict::Accept));
        assert_eq!(
            lab.proc_expect(0.5),
            "299 l3proto = 2 proto=17 src=10.99.0.2 dst=10.99.0.1 sport=0 dport=3000 tftp\n"
        );
        // the data from another server port is RELATED and consumes it
        let data = udp(B, 49152, A, 3000, b"\x00\x03\x00\x01data");
        let (r, _) = lab.through(0.1, &data, None);
        assert_eq!(info(r), "RELATED");
        assert!(lab.ct.conn(ids(r)).unwrap().status().expected());
        assert_eq!(lab.ct.expectations().count(), 0);
        // the client's ACK is the first reply-direction packet of that entry
        assert_eq!(
            info(lab.through(0.2, &udp(A, 3000, B, 49152, b"\x00\x04\x00\x01"), None).0),
            "ESTABLISHED_REPLY"
        );
        // DATA/ACK/ERROR opcodes on the control entry create nothing
        lab.through(0.3, &udp(A, 3000, B, 69, b"\x00\x04\x00\x01"), None);
        assert_eq!(lab.ct.expectations().count(), 0);
        // a write request does
        lab.through(0.4, &udp(A, 3000, B, 69, b"\x00\x02f\x00octet\x00"), None);
        assert_eq!(lab.ct.expectations().count(), 1);
    }

    #[test]
    fn expectation_events_are_new_on_insert_and_destroy_on_consume_and_expiry() {
        // kernel (6.18, conntrack -E expect -o timestamp): NEW with the full timeout, DESTROY with the
        // timeout left when the data connection consumed it; an unused one is destroyed at its expiry
        let mut lab = Lab::new();
        let tm = Template { helper: Some("tftp".into()), ..Template::default() };
        lab.through(0.0, &udp(A, 3000, B, 69, b"\x00\x01file\x00octet\x00"), Some(&tm));
        lab.through(1.5, &udp(B, 49152, A, 3000, b"\x00\x03\x00\x01data"), None);
        let ev: Vec<String> = lab.events().into_iter().filter(|l| l.contains("master-src=")).collect();
        let body = "proto=17 src=10.99.0.2 dst=10.99.0.1 sport=0 dport=3000 mask-src=255.255.255.255 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=10.99.0.1 master-dst=10.99.0.2 sport=3000 dport=69 class=0 helper=tftp";
        assert_eq!(
            ev,
            vec![
                format!("[{}.000000]\t    [NEW] 300 {body}", 1_700_000_000u64),
                format!("[{}.500000]\t[DESTROY] 298 {body}", 1_700_000_001u64),
            ]
        );
        // a write request nobody answers: the expectation goes with its master when the master's
        // 30 s UDP timer runs out (nf_ct_remove_expectations), stamped then, 270 s left
        lab.through(10.0, &udp(A, 3001, B, 69, b"\x00\x02f\x00octet\x00"), Some(&tm));
        lab.events();
        lab.ct.handle_timeout(t(400.0));
        let ev: Vec<String> = lab.events().into_iter().filter(|l| l.contains("master-src=")).collect();
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(ev[0].starts_with("[1700000040.000000]\t[DESTROY] 270 proto=17"), "{ev:?}");
        // with nf_conntrack_events=0 nothing is queued
        let mut cfg = crate::Config::default();
        cfg.events = 0;
        let mut lab = Lab::with(cfg);
        lab.through(0.0, &udp(A, 3000, B, 69, b"\x00\x01file\x00octet\x00"), Some(&tm));
        assert!(lab.events().is_empty());
    }

    #[test]
    fn a_helper_on_the_wrong_protocol_or_unknown_does_nothing() {
        let mut lab = Lab::new();
        let tm = Template { helper: Some("tftp".into()), ..Template::default() };
        // tftp on TCP: recorded, no help function
        let (r, v) = lab.through(0.0, &tcp(A, 3000, B, 69, "S", 1, 0).bytes(), Some(&tm));
        assert_eq!(v, HelperVerdict::Accept);
        assert_eq!(lab.ct.conn(ids(r)).unwrap().helper(), Some("tftp"));
        let sip = Template { helper: Some("sip".into()), ..Template::default() };
        lab.through(0.1, &udp(A, 5060, B, 5060, b"\x00\x01"), Some(&sip));
        assert_eq!(lab.ct.expectations().count(), 0);
        assert!(matches!(lab.inn(0.2, &udp(B, 1, A, 3000, b"x")), InResult::Tracked { .. }));
    }

    #[test]
    fn expect_max_refuses_and_the_helper_drops() {
        let mut cfg = Config::default();
        cfg.expect_max = 1;
        let mut lab = Lab::with(cfg);
        let tm = Template { helper: Some("tftp".into()), ..Template::default() };
        assert_eq!(
            lab.through(0.0, &udp(A, 3000, B, 69, b"\x00\x01f\x00"), Some(&tm)).1,
            HelperVerdict::Accept
        );
        // another client's request: the table is full, the packet dropped, its entry gone
        let (_, v) = lab.through(0.1, &udp(C, 3000, B, 69, b"\x00\x01f\x00"), Some(&tm));
        assert_eq!(v, HelperVerdict::Drop("tftp: cannot add expectation"));
        assert_eq!(lab.ct.len(), 1);
    }

    /// An IRC session A:40000 → B:6667 with the irc helper; returns the lab and the client's seq.
    fn irc_session() -> (Lab, u32) {
        let mut lab = Lab::new();
        let tm = Template { helper: Some("irc".into()), ..Template::default() };
        lab.through(0.0, &tcp(A, 40000, B, 6667, "S", 1000, 0).bytes(), Some(&tm));
        lab.through(0.01, &tcp(B, 6667, A, 40000, "SA", 5000, 1001).bytes(), None);
        lab.through(0.02, &tcp(A, 40000, B, 6667, "A", 1001, 5001).bytes(), None);
        (lab, 1001)
    }

    /// 10.99.0.1 (A) as a DCC address.
    const A_DCC: u32 = 174_260_225;

    #[test]
    fn irc_dcc_send_expects_anyone_to_the_client_port() {
        let (mut lab, seq) = irc_session();
        let msg = format!("PRIVMSG bob :\x01DCC SEND file.bin {A_DCC} 5000 1024\x01\r\n");
        let (r, v) =
            lab.through(0.1, &tcp(A, 40000, B, 6667, "PA", seq, 5001).text(msg.as_bytes()).bytes(), None);
        assert_eq!((info(r), v), ("ESTABLISHED", HelperVerdict::Accept));
        assert_eq!(
            lab.list_expect(0.2),
            "299 proto=6 src=0.0.0.0 dst=10.99.0.1 sport=0 dport=5000 mask-src=0.0.0.0 mask-dst=255.255.255.255 sport=0 dport=65535 master-src=10.99.0.1 master-dst=10.99.0.2 sport=40000 dport=6667 class=0 helper=irc\n"
        );
        // the peer (any address, any port) connects to the client
        let (r, _) = lab.through(1.0, &tcp(C, 33000, A, 5000, "S", 1, 0).bytes(), None);
        assert_eq!(info(r), "RELATED");
        assert_eq!(lab.ct.expectations().count(), 0);
    }

    #[test]
    fn irc_forged_port_zero_reply_direction_and_first_packet_create_nothing() {
        let (mut lab, mut seq) = irc_session();
        for msg in [
            // another address than the client's
            format!("PRIVMSG bob :\x01DCC SEND f {} 5000\x01\r\n", A_DCC + 1),
            // port 0
            format!("PRIVMSG bob :\x01DCC CHAT chat {A_DCC} 0\x01\r\n"),
            // not at the start of the message
            format!("PRIVMSG bob :hi \x01DCC SEND f {A_DCC} 5000\x01\r\n"),
        ] {
            let (_, v) =
                lab.through(0.1, &tcp(A, 40000, B, 6667, "PA", seq, 5001).text(msg.as_bytes()).bytes(), None);
            assert_eq!(v, HelperVerdict::Accept);
            seq = seq.wrapping_add(msg.len() as u32);
        }
        // from the server: not looked at
        let msg = format!("PRIVMSG bob :\x01DCC SEND f {A_DCC} 5000\x01\r\n");
        lab.through(0.2, &tcp(B, 6667, A, 40000, "PA", 5001, seq).text(msg.as_bytes()).bytes(), None);
        assert_eq!(lab.ct.expectations().count(), 0);
    }

    #[test]
    fn irc_keeps_eight_dcc_channels() {
        let (mut lab, mut seq) = irc_session();
        for port in 5000..5009u16 {
            let msg = format!("PRIVMSG bob :\x01DCC SEND f {A_DCC} {port}\x01\r\n");
            lab.through(0.1, &tcp(A, 40000, B, 6667, "PA", seq, 5001).text(msg.as_bytes()).bytes(), None);
            seq = seq.wrapping_add(msg.len() as u32);
        }
        let ports: Vec<_> = lab.ct.expectations().map(|e| e.tuple.dport().unwrap()).collect();
        assert_eq!(ports, (5001..5009).collect::<Vec<_>>(), "the oldest evicted");
        assert!(lab.ct.expectations().all(|e| e.expires == t(0.1 + 300.0)), "dcc_timeout 300 s");
    }

    #[test]
    fn amanda_reply_expects_the_announced_ports_from_the_server_and_refreshes() {
        let mut lab = Lab::new();
        let tm = Template { helper: Some("amanda".into()), ..Template::default() };
        // the server (A) asks the client (B) on 10080
        lab.through(
            0.0,
            &udp(A, 850, B, 10080, b"Amanda 2.6 REQ HANDLE 000 SEQ 1\nSERVICE sendbackup\n"),
            Some(&tm),
        );
        assert_eq!(lab.ct.expectations().count(), 0, "requests are not parsed");
        let rep = b"Amanda 2.6 REP HANDLE 000 SEQ 1\nCONNECT DATA 50001 MESG 50002 INDEX 50003\n";
        let (r, v) = lab.through(1.0, &udp(B, 10080, A, 850, rep), None);
        assert_eq!((info(r), v), ("ESTABLISHED_REPLY", HelperVerdict::Accept));
        assert_eq!(
            lab.proc_expect(1.5),
            "179 l3proto = 2 proto=6 src=10.99.0.1 dst=10.99.0.2 sport=0 dport=50001 amanda\n\
             179 l3proto = 2 proto=6 src=10.99.0.1 dst=10.99.0.2 sport=0 dport=50002 amanda\n\
             179 l3proto = 2 proto=6 src=10.99.0.1 dst=10.99.0.2 sport=0 dport=50003 amanda\n"
        );
        // the master now lives 300 s (master_timeout), not the UDP 30 s
        assert_eq!(lab.ct.iter().next().unwrap().expires(), t(301.0));
        // the server connects to the DATA port from any port: RELATED; another source is not
        assert_eq!(info(lab.through(2.0, &tcp(A, 40000, B, 50001, "S", 1, 0).bytes(), None).0), "RELATED");
        assert_eq!(info(lab.through(2.1, &tcp(C, 40000, B, 50002, "S", 1, 0).bytes(), None).0), "NEW");
    }
}
