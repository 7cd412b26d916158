//! The SIP helper's message logic (Linux 6.18 `nf_conntrack_sip.c`, behaviour only, without NAT;
//! module defaults `sip_direct_media=1`, `sip_direct_signalling=1`, `sip_timeout=3600`).
//!
//! Contract ([`process_msg`], one SIP message; [`tcp_message_len`] splits a TCP segment):
//! - A message starting with `SIP/2.0 ` (case-insensitive) is a response, else a request. A
//!   request whose first bytes are `INVITE`, `UPDATE`, `ACK`, `PRACK`, `BYE` or `REGISTER`
//!   (case-insensitive, nothing checked after the name) needs a `CSeq:` header with a non-zero
//!   number, else the packet is dropped; so does every response (and a non-zero status code).
//! - Headers are found at line starts anywhere in the message (also in the body), full or compact
//!   name, then optional whitespace / continuation lines, `:`; a line that starts with the header
//!   name but has no colon after it ends the search.
//! - INVITE (request): media expectations are flushed, the SDP processed, and on success its CSeq
//!   is remembered. UPDATE / ACK / PRACK requests: the SDP is processed. BYE: media expectations
//!   flushed. Responses to INVITE / UPDATE / PRACK (matched by the method after the CSeq number):
//!   1xx/2xx process the SDP; others flush the media expectations if the CSeq is the INVITE's.
//! - Addresses (`sip_parse_addr`) are of the entry's family. IPv4: a dotted quad. IPv6: the
//!   kernel's `in6_pton` literal rules up to the first byte that is not a hex digit, `:` or `.`;
//!   in SIP URIs (Contact) the literal must be inside `[` `]` (`sip:alice@[fd00::1]:5070`), else
//!   the header value is unparsable; in SDP it must be bare (`c=IN IP6 [fd00::1]` is no address:
//!   the kernel drops such an INVITE when no other `c=` line applies).
//! - SDP: after a `v=<digits>` line, the session `c=IN IP4 <addr>` (`c=IN IP6 <addr>` on an IPv6
//!   entry; a `c=` line of the other family counts as none) (before the first `m=`) and up
//!   to three `m=audio|video|image <port>` lines (port 0 skipped; outside 1024..=65535: drop),
//!   each with its own `c=` or the session's (neither: drop). With `sip_direct_media` the media
//!   address must be the sender's own address, else nothing is expected; the RTP (even port) and
//!   RTCP (port + 1) expectations are UDP from the other side of the signalling to that address,
//!   class audio (1), video (2) or image (3), unless another SIP entry already expects the same
//!   media in the same class. Failing to add them drops the packet.
//! - REGISTER (not on an expected entry): an `Expires:` header and/or a Contact URI `expires=`
//!   parameter (0: no expectation), the Contact address must be the sender's own, the
//!   `transport=` parameter must match the entry's protocol; the expectation is signalling class
//!   0, from the registrar (`sip_direct_signalling`) to the contact address and port (default
//!   5060), PERMANENT and INACTIVE, with the SIP helper for the new entry. Its CSeq is
//!   remembered; a 2xx response with that CSeq activates the expectation named by a Contact
//!   (refreshing its timer to the contact's expiry); a final non-2xx response or no matching
//!   contact removes the first signalling expectation.
//! - TCP (`sip_help_tcp`): a segment holds messages back to back; each ends `Content-Length`
//!   bytes after the first `\r\n\r\n` that follows the header's number. Parsing stops, with the
//!   packet accepted, at a message without that header, number or blank line, or one longer than
//!   the rest of the segment: a message split over two segments is parsed in neither.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Expectation classes of the SIP helper (`sip_expectation_classes`).
pub const CLASS_SIGNALLING: u8 = 0;
pub const CLASS_AUDIO: u8 = 1;
pub const CLASS_VIDEO: u8 = 2;
pub const CLASS_IMAGE: u8 = 3;

/// `(max_expected, timeout seconds, name)` of a SIP expectation class.
pub fn class_policy(class: u8) -> (usize, u32, &'static str) {
    match class {
        CLASS_SIGNALLING => (1, 180, "signalling"),
        CLASS_AUDIO => (4, 180, "audio"),
        CLASS_VIDEO => (4, 180, "video"),
        _ => (2, 180, "image"),
    }
}

/// The master entry timeout set on every SIP packet with payload (`sip_timeout`).
pub const SIP_TIMEOUT: u32 = 3600;

/// What the SIP logic needs from the entry and the expectation table (implemented by the table).
pub trait SipCtx {
    /// Source address of direction `reply` (false: original) of the entry.
    fn src(&self, reply: bool) -> IpAddr;
    /// The direction of the packet being parsed (true: reply).
    fn dir_reply(&self) -> bool;
    /// The entry's L4 protocol.
    fn proto(&self) -> u8;
    /// The entry has EXPECTED status.
    fn expected(&self) -> bool;
    fn invite_cseq(&self) -> u32;
    fn set_invite_cseq(&mut self, cseq: u32);
    fn register_cseq(&self) -> u32;
    fn set_register_cseq(&mut self, cseq: u32);
    /// Remove the entry's media expectations (`media`) or its first signalling one.
    fn flush(&mut self, media: bool);
    /// Another SIP entry already has an expectation of `class` matching UDP `src` → `dst:port`.
    fn media_expected_elsewhere(&self, src: IpAddr, dst: IpAddr, port: u16, class: u8) -> bool;
    /// Add the RTP and RTCP expectations (`nf_ct_expect_related` twice, the first undone if the
    /// second fails); false if they could not be added.
    fn expect_media(&mut self, src: IpAddr, dst: IpAddr, rtp_port: u16, class: u8) -> bool;
    /// Add the PERMANENT + INACTIVE signalling expectation; false if it could not be added.
    fn expect_signalling(&mut self, src: IpAddr, dst: IpAddr, proto: u8, port: u16) -> bool;
    /// Activate and re-time the signalling expectation to `dst:port`/`proto`; true if found.
    fn refresh_signalling(&mut self, dst: IpAddr, proto: u8, port: u16, expires: u32) -> bool;
}

/// The helper's decision on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipVerdict {
    Accept,
    Drop(&'static str),
}

const MIN_LEN: usize = 11; // "SIP/2.0 200"

/// Byte `i` of `d`, NUL past the end (what the kernel's string functions see there).
fn at(d: &[u8], i: usize) -> u8 {
    d.get(i).copied().unwrap_or(0)
}

fn eq_nocase(d: &[u8], i: usize, s: &[u8]) -> bool {
    d.get(i..i + s.len()).is_some_and(|w| w.eq_ignore_ascii_case(s))
}

fn eq_case(d: &[u8], i: usize, s: &[u8]) -> bool {
    d.get(i..i + s.len()).is_some_and(|w| w == s)
}

fn string_len(d: &[u8], i: usize, limit: usize) -> usize {
    (i..limit).take_while(|&k| at(d, k).is_ascii_alphabetic()).count()
}

fn digits_len(d: &[u8], i: usize, limit: usize) -> usize {
    (i..limit).take_while(|&k| at(d, k).is_ascii_digit()).count()
}

/// `simple_strtoul(.., 10)`: value (wrapping) and end offset.
fn strtoul10(d: &[u8], i: usize) -> (u64, usize) {
    let mut v: u64 = 0;
    let mut k = i;
    while at(d, k).is_ascii_digit() {
        v = v.wrapping_mul(10).wrapping_add(u64::from(at(d, k) - b'0'));
        k += 1;
    }
    (v, k)
}

/// `simple_strtoul(.., 0)`: base from the prefix (`0x` hex, `0` octal, else decimal).
fn strtoul0(d: &[u8], i: usize) -> (u64, usize) {
    let mut k = i;
    let base: u64 = if at(d, k) == b'0' {
        if at(d, k + 1).eq_ignore_ascii_case(&b'x') && at(d, k + 2).is_ascii_hexdigit() {
            k += 2;
            16
        } else {
            8
        }
    } else {
        10
    };
    let mut v: u64 = 0;
    loop {
        let c = at(d, k);
        let Some(x) = (c as char).to_digit(16).map(u64::from) else { break };
        if x >= base {
            break;
        }
        v = v.wrapping_mul(base).wrapping_add(x);
        k += 1;
    }
    (v, k)
}

/// `in4_pton(.., delim -1)`: a dotted quad (octets <= 255) ended by any character that is not
/// a digit, hex letter or dot (hex letters fail), or the end. Returns the address and its end.
fn in4_pton(d: &[u8], i: usize, limit: usize) -> Option<(Ipv4Addr, usize)> {
    let mut out = [0u8; 4];
    let mut n = 0usize;
    let mut w: u32 = 0;
    let mut seen = false;
    let mut k = i;
    loop {
        // past the length: NUL, a delimiter; 0xff equals the -1 delimiter on signed-char machines
        let c = if k < limit { at(d, k) } else { 0 };
        let delim = c == 0 || c == 0xff || c == b':' || !(c.is_ascii_hexdigit() || c == b'.');
        if c.is_ascii_digit() {
            w = w * 10 + u32::from(c - b'0');
            seen = true;
            if w > 255 {
                return None;
            }
        } else if c == b'.' || delim {
            if !seen {
                return None;
            }
            *out.get_mut(n)? = w as u8;
            n += 1;
            w = 0;
            seen = false;
            if delim {
                return (n == 4).then_some((Ipv4Addr::from(out), k));
            }
        } else {
            // a hex letter
            return None;
        }
        if n >= 4 {
            return None;
        }
        k += 1;
    }
}

/// The address family of the entry being helped: it selects the address parser and the SDP
/// `IN IP4 ` / `IN IP6 ` forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(a: IpAddr) -> Family {
        if a.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

/// `in6_pton(.., delim -1)`: the literal runs up to the first byte that is not a hex digit, `:`
/// or `.` (with delimiter -1 every other byte ends it, as do NUL and the limit); the kernel's
/// IPv6 literal rules then apply to that run. Returns the address and its end.
fn in6_pton_any(d: &[u8], i: usize, limit: usize) -> Option<(Ipv6Addr, usize)> {
    let limit = limit.min(d.len());
    let run = (i..limit)
        .take_while(|&k| matches!(at(d, k), b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' | b':' | b'.'))
        .count();
    let (a, len) = crate::helper::in6_pton(d.get(i..i + run)?, 0)?;
    Some((a, i + len))
}

/// `sip_parse_addr`: an IPv4 dotted quad for an IPv4 entry; for an IPv6 entry an IPv6 literal,
/// inside `[` `]` in SIP URIs (`uri`), bare in SDP (a leading `[` is no address there; a `]`
/// after the literal just ends it: checked on 6.18.44 with `statewall verify`). Returns the
/// address and the end of what was parsed (past the `]` of a URI).
fn parse_addr(d: &[u8], i: usize, limit: usize, fam: Family, uri: bool) -> Option<(IpAddr, usize)> {
    match fam {
        Family::V4 => {
            let (a, end) = in4_pton(d, i, limit)?;
            (end != i).then_some((IpAddr::V4(a), end))
        }
        Family::V6 if uri => {
            if !(i < limit && at(d, i) == b'[') {
                return None;
            }
            let (a, end) = in6_pton_any(d, i + 1, limit)?;
            (end < limit && at(d, end) == b']').then_some((IpAddr::V6(a), end + 1))
        }
        Family::V6 => {
            let (a, end) = in6_pton_any(d, i, limit)?;
            Some((IpAddr::V6(a), end))
        }
    }
}

/// `epaddr_len`: address and optional `:digits`.
fn epaddr_len(d: &[u8], i: usize, limit: usize, fam: Family) -> usize {
    let Some((_, mut k)) = parse_addr(d, i, limit, fam, true) else { return 0 };
    if at(d, k) == b':' {
        k += 1;
        k += digits_len(d, k, limit);
    }
    k - i
}

/// `skp_epaddr_len`: skip user info up to `@` on the same line; returns (shift, length).
fn skp_epaddr_len(d: &[u8], i: usize, limit: usize, fam: Family) -> (usize, usize) {
    let mut k = i;
    while k < limit && !matches!(at(d, k), b'@' | b'\r' | b'\n') {
        k += 1;
    }
    let start = if k < limit && at(d, k) == b'@' { k + 1 } else { i };
    (start - i, epaddr_len(d, start, limit, fam))
}

fn media_len(d: &[u8], i: usize, limit: usize) -> usize {
    let len = string_len(d, i, limit);
    let k = i + len;
    if k >= limit || at(d, k) != b' ' {
        return 0;
    }
    len + 1 + digits_len(d, k + 1, limit)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Match {
    Digits,
    SkpEpaddr,
    /// `sdp_addr_len`: an address without brackets, no port.
    SdpAddr,
    Media,
}

struct Hdr {
    name: &'static [u8],
    cname: Option<&'static [u8]>,
    search: Option<&'static [u8]>,
    m: Match,
}

const CSEQ: Hdr = Hdr { name: b"CSeq", cname: None, search: None, m: Match::Digits };
const CONTACT: Hdr = Hdr { name: b"Contact", cname: Some(b"m"), search: Some(b"sip:"), m: Match::SkpEpaddr };
const CONTENT_LENGTH: Hdr =
    Hdr { name: b"Content-Length", cname: Some(b"l"), search: None, m: Match::Digits };
const EXPIRES: Hdr = Hdr { name: b"Expires", cname: None, search: None, m: Match::Digits };

/// A header value's match length; returns (shift, length).
fn match_len(m: Match, d: &[u8], i: usize, limit: usize, fam: Family) -> (usize, usize) {
    match m {
        Match::Digits => (0, digits_len(d, i, limit)),
        Match::SkpEpaddr => skp_epaddr_len(d, i, limit, fam),
        Match::SdpAddr => (0, parse_addr(d, i, limit, fam, false).map_or(0, |(_, end)| end - i)),
        Match::Media => (0, media_len(d, i, limit)),
    }
}

/// `sip_follow_continuation`: past a line end, the start of a continuation line's text.
fn follow_continuation(d: &[u8], i: usize, limit: usize) -> Option<usize> {
    let mut k = i + 1;
    if k >= limit {
        return None;
    }
    if at(d, k - 1) == b'\r' && at(d, k) == b'\n' {
        k += 1;
        if k >= limit {
            return None;
        }
    }
    if !matches!(at(d, k), b' ' | b'\t') {
        return None;
    }
    while k < limit && matches!(at(d, k), b' ' | b'\t') {
        k += 1;
    }
    Some(k)
}

fn skip_whitespace(d: &[u8], i: usize, limit: usize) -> Option<usize> {
    let mut k = i;
    while k < limit {
        match at(d, k) {
            b' ' => k += 1,
            b'\r' | b'\n' => {
                // the kernel's loop increments after following the continuation
                k = follow_continuation(d, k, limit)? + 1;
            }
            _ => break,
        }
    }
    Some(k)
}

/// `ct_sip_header_search`: `needle` (case-insensitive) within a header value and its
/// continuation lines.
fn header_search(d: &[u8], i: usize, limit: usize, needle: &[u8]) -> Option<usize> {
    let limit = limit.checked_sub(needle.len())?;
    let mut k = i;
    while k < limit {
        if matches!(at(d, k), b'\r' | b'\n') {
            // the kernel's loop increments after following the continuation
            k = follow_continuation(d, k, limit)? + 1;
            continue;
        }
        if eq_nocase(d, k, needle) {
            return Some(k);
        }
        k += 1;
    }
    None
}

enum Got {
    NotFound,
    /// Unparsable value; the offset the kernel reports with it.
    Bad(usize),
    Found(usize, usize),
}

/// The start of the line after the first line break (CR, LF or CR LF) at or after `k`, when that start is
/// inside `d`: how both header searches step from line to line.
fn next_line(d: &[u8], mut k: usize) -> Option<usize> {
    let limit = d.len();
    while k < limit && !matches!(at(d, k), b'\r' | b'\n') {
        k += 1;
    }
    k += 1;
    if k < limit && at(d, k - 1) == b'\r' && at(d, k) == b'\n' {
        k += 1;
    }
    (k < limit).then_some(k)
}

/// `ct_sip_get_header` from `dataoff`.
fn get_header(d: &[u8], dataoff: usize, h: &Hdr, fam: Family) -> Got {
    let limit = d.len();
    let mut k = dataoff;
    while let Some(start) = next_line(d, k) {
        k = start;
        if matches!(at(d, k), b' ' | b'\t') {
            k += 1;
            continue;
        }
        if limit - k >= h.name.len() && eq_nocase(d, k, h.name) {
            k += h.name.len();
        } else if let Some(c) = h.cname.filter(|c| {
            limit - k > c.len() && eq_nocase(d, k, c) && !at(d, k + c.len()).is_ascii_alphabetic()
        }) {
            k += c.len();
        } else {
            k += 1;
            continue;
        }
        let Some(j) = skip_whitespace(d, k, limit) else { break };
        k = j;
        if at(d, k) != b':' {
            break;
        }
        k += 1;
        if k >= limit {
            break;
        }
        let Some(j) = skip_whitespace(d, k, limit) else { break };
        k = j;
        let matchoff = k;
        if let Some(s) = h.search {
            let Some(j) = header_search(d, k, limit, s) else { return Got::Bad(matchoff) };
            k = j + s.len();
        }
        let (shift, len) = match_len(h.m, d, k, limit, fam);
        if len == 0 {
            return Got::Bad(matchoff);
        }
        return Got::Found(k + shift, len);
    }
    Got::NotFound
}

/// `ct_sip_next_header`: the next comma-separated value of the same header.
fn next_header(d: &[u8], dataoff: usize, h: &Hdr, fam: Family) -> Got {
    let limit = d.len();
    let Some(k) = header_search(d, dataoff, limit, b",") else { return Got::NotFound };
    let Some(s) = h.search else { return Got::NotFound };
    let Some(k) = header_search(d, k, limit, s) else { return Got::NotFound };
    let k = k + s.len();
    let (shift, len) = match_len(h.m, d, k, limit, fam);
    if len == 0 {
        return Got::Bad(k);
    }
    Got::Found(k + shift, len)
}

/// `ct_sip_walk_headers`.
fn walk_headers(
    d: &[u8],
    mut dataoff: usize,
    h: &Hdr,
    fam: Family,
    in_header: Option<&mut bool>,
) -> Option<(usize, usize)> {
    let mut flag = in_header;
    if let Some(f) = flag.as_deref_mut() {
        if *f {
            loop {
                match next_header(d, dataoff, h, fam) {
                    Got::Found(o, l) => return Some((o, l)),
                    Got::NotFound => break,
                    Got::Bad(o) => dataoff = dataoff.checked_add(o)?,
                }
            }
            *f = false;
        }
    }
    loop {
        match get_header(d, dataoff, h, fam) {
            Got::Found(o, l) => {
                if let Some(f) = flag {
                    *f = true;
                }
                return Some((o, l));
            }
            Got::NotFound => return None,
            Got::Bad(o) => dataoff = dataoff.checked_add(o)?,
        }
    }
}

/// `ct_sip_parse_header_uri`: Ok(None) nothing, Err(()) unparsable (-1), Ok(Some((addr, port,
/// matchoff, matchlen, end)))
#[allow(clippy::type_complexity)]
fn parse_header_uri(
    d: &[u8],
    dataoff: usize,
    h: &Hdr,
    fam: Family,
    in_header: Option<&mut bool>,
) -> Result<Option<(IpAddr, u16, usize, usize, usize)>, ()> {
    let Some((mo, ml)) = walk_headers(d, dataoff, h, fam, in_header) else { return Ok(None) };
    let (addr, mut c) = parse_addr(d, mo, d.len(), fam, true).ok_or(())?;
    let port = if at(d, c) == b':' {
        c += 1;
        let (p, end) = strtoul10(d, c);
        c = end;
        if !(1024..=65535).contains(&p) {
            return Err(());
        }
        p as u16
    } else {
        5060
    };
    Ok(Some((addr, port, mo, ml, c)))
}

/// `ct_sip_parse_param` bounds: the value of `name` up to the next comma.
fn param_start(d: &[u8], dataoff: usize, name: &[u8]) -> Option<usize> {
    let limit = header_search(d, dataoff, d.len(), b",").unwrap_or(d.len());
    header_search(d, dataoff, limit, name).map(|s| s + name.len())
}

/// `ct_sip_parse_transport`: the protocol named by `transport=` (must be the entry's), or the
/// entry's.
fn parse_transport(d: &[u8], dataoff: usize, ct_proto: u8) -> Option<u8> {
    let Some(s) = param_start(d, dataoff, b"transport=") else { return Some(ct_proto) };
    let p = if eq_nocase(d, s, b"TCP") {
        crate::tuple::PROTO_TCP
    } else if eq_nocase(d, s, b"UDP") {
        crate::tuple::PROTO_UDP
    } else {
        return None;
    };
    (p == ct_proto).then_some(p)
}

/// `ct_sip_parse_numerical_param` (6.18: -1 when the value has no digits): Ok(None) absent.
fn numerical_param(d: &[u8], dataoff: usize, name: &[u8]) -> Result<Option<u32>, ()> {
    let Some(s) = param_start(d, dataoff, name) else { return Ok(None) };
    let (v, end) = strtoul0(d, s);
    if end == s {
        return Err(());
    }
    Ok(Some(v as u32))
}

// SDP

struct SdpHdr {
    name: &'static [u8],
    search: Option<&'static [u8]>,
    m: Match,
}

const SDP_VERSION: SdpHdr = SdpHdr { name: b"v=", search: None, m: Match::Digits };
const SDP_CONN4: SdpHdr = SdpHdr { name: b"c=", search: Some(b"IN IP4 "), m: Match::SdpAddr };
const SDP_CONN6: SdpHdr = SdpHdr { name: b"c=", search: Some(b"IN IP6 "), m: Match::SdpAddr };
const SDP_MEDIA: SdpHdr = SdpHdr { name: b"m=", search: None, m: Match::Media };

/// `ct_sdp_header_search`: case-sensitive, within the line.
fn sdp_header_search(d: &[u8], i: usize, limit: usize, needle: &[u8]) -> Option<usize> {
    let limit = limit.checked_sub(needle.len())?;
    (i..limit).take_while(|&k| !matches!(at(d, k), b'\r' | b'\n')).find(|&k| eq_case(d, k, needle))
}

/// `ct_sip_get_sdp_header`: Ok(None) not found (or `term` reached), Err(()) unparsable.
fn get_sdp_header(
    d: &[u8],
    dataoff: usize,
    h: &SdpHdr,
    term: Option<&SdpHdr>,
    fam: Family,
) -> Result<Option<(usize, usize)>, ()> {
    let limit = d.len();
    let mut k = dataoff;
    while let Some(start) = next_line(d, k) {
        k = start;
        if term.is_some_and(|t| limit - k >= t.name.len() && eq_nocase(d, k, t.name)) {
            break;
        } else if limit - k >= h.name.len() && eq_nocase(d, k, h.name) {
            k += h.name.len();
        } else {
            k += 1;
            continue;
        }
        if let Some(s) = h.search {
            k = sdp_header_search(d, k, limit, s).ok_or(())? + s.len();
        }
        let (shift, len) = match_len(h.m, d, k, limit, fam);
        if len == 0 {
            return Err(());
        }
        return Ok(Some((k + shift, len)));
    }
    Ok(None)
}

/// `ct_sip_parse_sdp_addr`: the connection address of the `c=` line (before `m=`). The form
/// searched is the entry's family (`IN IP4 ` or `IN IP6 `): a `c=` line of the other family is
/// unparsable, as if there were none.
fn sdp_addr(d: &[u8], dataoff: usize, fam: Family) -> Option<(IpAddr, usize, usize)> {
    let h = match fam {
        Family::V4 => &SDP_CONN4,
        Family::V6 => &SDP_CONN6,
    };
    let (o, l) = get_sdp_header(d, dataoff, h, Some(&SDP_MEDIA), fam).ok()??;
    let (a, _) = parse_addr(d, o, o + l, fam, false)?;
    Some((a, o, l))
}

const MEDIA_TYPES: [(&[u8], u8); 3] =
    [(b"audio ", CLASS_AUDIO), (b"video ", CLASS_VIDEO), (b"image ", CLASS_IMAGE)];

/// `process_sdp`.
fn process_sdp<C: SipCtx>(ctx: &mut C, d: &[u8]) -> SipVerdict {
    let fam = Family::of(ctx.src(false));
    let Ok(Some((sdpoff, _))) = get_sdp_header(d, 0, &SDP_VERSION, None, fam) else {
        return SipVerdict::Accept;
    };
    let caddr = sdp_addr(d, sdpoff, fam).map(|(a, _, _)| a);
    let mut mediaoff = sdpoff;
    let mut i = 0;
    while i < MEDIA_TYPES.len() {
        let Ok(Some((mo, ml))) = get_sdp_header(d, mediaoff, &SDP_MEDIA, None, fam) else { break };
        mediaoff = mo;
        let Some((tname, class)) =
            MEDIA_TYPES.iter().find(|(n, _)| ml >= n.len() && eq_case(d, mo, n)).copied()
        else {
            mediaoff += ml;
            continue;
        };
        mediaoff += tname.len();
        let (port, _) = strtoul10(d, mediaoff);
        if port == 0 {
            continue;
        }
        if !(1024..=65535).contains(&port) {
            return SipVerdict::Drop("sip: wrong port");
        }
        let rtp_addr = match sdp_addr(d, mediaoff, fam) {
            Some((a, _, _)) => a,
            None => match caddr {
                Some(a) => a,
                None => return SipVerdict::Drop("sip: cannot parse SDP message"),
            },
        };
        let v = set_expected_rtp_rtcp(ctx, rtp_addr, port as u16, class);
        if v != SipVerdict::Accept {
            return v;
        }
        i += 1;
    }
    SipVerdict::Accept
}

/// `set_expected_rtp_rtcp` without NAT, `sip_direct_media=1`.
fn set_expected_rtp_rtcp<C: SipCtx>(ctx: &mut C, daddr: IpAddr, port: u16, class: u8) -> SipVerdict {
    let reply = ctx.dir_reply();
    // media only between the signalling endpoints: the address must be the sender's own
    if daddr != ctx.src(reply) {
        return SipVerdict::Accept;
    }
    let saddr = ctx.src(!reply);
    if ctx.media_expected_elsewhere(saddr, daddr, port, class) {
        return SipVerdict::Accept;
    }
    let base = port & !1;
    if ctx.expect_media(saddr, daddr, base, class) {
        SipVerdict::Accept
    } else {
        SipVerdict::Drop("sip: cannot add expectation for RTP")
    }
}

/// `process_register_request`.
fn register_request<C: SipCtx>(ctx: &mut C, d: &[u8], cseq: u32) -> SipVerdict {
    if ctx.expected() {
        return SipVerdict::Accept;
    }
    let fam = Family::of(ctx.src(false));
    let mut expires: u32 = match get_header(d, 0, &EXPIRES, fam) {
        Got::Found(o, _) => strtoul10(d, o).0 as u32,
        _ => 0,
    };
    let (addr, port, mo, ml) = match parse_header_uri(d, 0, &CONTACT, fam, None) {
        Err(()) => return SipVerdict::Drop("sip: cannot parse contact"),
        Ok(None) => return SipVerdict::Accept,
        Ok(Some((a, p, mo, ml, _))) => (a, p, mo, ml),
    };
    let reply = ctx.dir_reply();
    // no third-party registrations
    if addr != ctx.src(reply) {
        return SipVerdict::Accept;
    }
    let Some(proto) = parse_transport(d, mo + ml, ctx.proto()) else { return SipVerdict::Accept };
    match numerical_param(d, mo + ml, b"expires=") {
        Err(()) => return SipVerdict::Drop("sip: cannot parse expires"),
        Ok(Some(v)) => expires = v,
        Ok(None) => {}
    }
    if expires != 0 {
        let src = ctx.src(!reply);
        if !ctx.expect_signalling(src, addr, proto, port) {
            return SipVerdict::Drop("sip: cannot add expectation");
        }
    }
    ctx.set_register_cseq(cseq);
    SipVerdict::Accept
}

/// `process_register_response`.
fn register_response<C: SipCtx>(ctx: &mut C, d: &[u8], cseq: u32, code: u64) -> SipVerdict {
    if ctx.register_cseq() != cseq {
        return SipVerdict::Accept;
    }
    if (100..=199).contains(&code) {
        return SipVerdict::Accept;
    }
    if (200..=299).contains(&code) {
        let fam = Family::of(ctx.src(false));
        let expires: u32 = match get_header(d, 0, &EXPIRES, fam) {
            Got::Found(o, _) => strtoul10(d, o).0 as u32,
            _ => 0,
        };
        let mut coff = 0usize;
        let mut in_contact = false;
        // the response travels back: the contact must be this packet's destination
        let dst = ctx.src(!ctx.dir_reply());
        loop {
            let (addr, port, mo, ml, end) =
                match parse_header_uri(d, coff, &CONTACT, fam, Some(&mut in_contact)) {
                    Err(()) => return SipVerdict::Drop("sip: cannot parse contact"),
                    Ok(None) => break,
                    Ok(Some(x)) => x,
                };
            coff = end;
            if addr != dst {
                continue;
            }
            let Some(proto) = parse_transport(d, mo + ml, ctx.proto()) else { continue };
            let c_expires = match numerical_param(d, mo + ml, b"expires=") {
                Err(()) => return SipVerdict::Drop("sip: cannot parse expires"),
                Ok(Some(v)) => v,
                Ok(None) => expires,
            };
            if c_expires == 0 {
                break;
            }
            if ctx.refresh_signalling(addr, proto, port, c_expires) {
                return SipVerdict::Accept;
            }
        }
    }
    ctx.flush(false);
    SipVerdict::Accept
}

#[derive(Clone, Copy)]
enum Method {
    Invite,
    Update,
    Ack,
    Prack,
    Bye,
    Register,
}

const METHODS: [(&[u8], Method); 6] = [
    (b"INVITE", Method::Invite),
    (b"UPDATE", Method::Update),
    (b"ACK", Method::Ack),
    (b"PRACK", Method::Prack),
    (b"BYE", Method::Bye),
    (b"REGISTER", Method::Register),
];

/// The CSeq number (`None`: missing or 0 → the kernel drops) and where the method after it starts.
fn cseq(d: &[u8]) -> Option<(u32, usize)> {
    let Got::Found(o, l) = get_header(d, 0, &CSEQ, Family::V4) else { return None };
    let (v, _) = strtoul10(d, o);
    let v = v as u32;
    (v != 0).then_some((v, o + l + 1))
}

/// The length of the first message of a TCP stream segment (`sip_help_tcp`): from the start of
/// `d` to the first `\r\n\r\n` after the `Content-Length` number (the header need not be the
/// last one), plus that many bytes. `None` ends the segment's parsing with the packet accepted:
/// no such header, no number, no blank line after it, or a message longer than what `d` holds
/// (a message split over segments is never parsed, neither its first part nor the rest).
pub fn tcp_message_len(d: &[u8]) -> Option<usize> {
    // the header's value is digits only: the family does not matter
    let Got::Found(o, _) = get_header(d, 0, &CONTENT_LENGTH, Family::V4) else { return None };
    let (clen, end) = strtoul10(d, o);
    if end == o {
        return None;
    }
    let blank = (end..).take_while(|&k| k + 4 <= d.len()).find(|&k| eq_case(d, k, b"\r\n\r\n"))?;
    // the length and the message length are 32-bit in the kernel: a huge Content-Length wraps
    // (a wrap to exactly 0 would make the kernel loop; it ends the parsing here)
    let len = (blank as u32).wrapping_add(4).wrapping_add(clen as u32) as usize;
    (len != 0 && len <= d.len()).then_some(len)
}

/// `process_sip_msg` for one message `d` (see the module contract).
pub fn process_msg<C: SipCtx>(ctx: &mut C, d: &[u8]) -> SipVerdict {
    if d.len() < MIN_LEN {
        return SipVerdict::Accept;
    }
    if !eq_nocase(d, 0, b"SIP/2.0 ") {
        // a request
        let Some(&(_, method)) = METHODS.iter().find(|(n, _)| eq_nocase(d, 0, n)) else {
            return SipVerdict::Accept;
        };
        let Some((cseq, _)) = cseq(d) else { return SipVerdict::Drop("sip: cannot parse cseq") };
        return match method {
            Method::Invite => {
                ctx.flush(true);
                let v = process_sdp(ctx, d);
                if v == SipVerdict::Accept {
                    ctx.set_invite_cseq(cseq);
                }
                v
            }
            Method::Update | Method::Ack | Method::Prack => process_sdp(ctx, d),
            Method::Bye => {
                ctx.flush(true);
                SipVerdict::Accept
            }
            Method::Register => register_request(ctx, d, cseq),
        };
    }
    let (code, _) = strtoul10(d, 8);
    if code == 0 {
        return SipVerdict::Drop("sip: cannot get code");
    }
    let Some((cseq, matchend)) = cseq(d) else { return SipVerdict::Drop("sip: cannot parse cseq") };
    for (name, method) in METHODS {
        if matches!(method, Method::Ack | Method::Bye) {
            continue;
        }
        if d.len() < matchend + name.len() || !eq_nocase(d, matchend, name) {
            continue;
        }
        return match method {
            Method::Register => register_response(ctx, d, cseq, code),
            _ => {
                if (100..=299).contains(&code) {
                    process_sdp(ctx, d)
                } else {
                    if ctx.invite_cseq() == cseq {
                        ctx.flush(true);
                    }
                    SipVerdict::Accept
                }
            }
        };
    }
    SipVerdict::Accept
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// A recording context: client 10.0.0.1 (original source) ↔ proxy 10.0.0.2.
    #[derive(Default)]
    struct Rec {
        reply: bool,
        expected: bool,
        invite: u32,
        register: u32,
        log: Vec<String>,
        refresh_ok: bool,
        /// An IPv6 entry: client fd00::1 ↔ proxy fd00::2.
        v6: bool,
    }

    const CLIENT: &str = "10.0.0.1";
    const PROXY: &str = "10.0.0.2";

    impl SipCtx for Rec {
        fn src(&self, reply: bool) -> IpAddr {
            match (self.v6, reply) {
                (false, false) => CLIENT,
                (false, true) => PROXY,
                (true, false) => "fd00::1",
                (true, true) => "fd00::2",
            }
            .parse()
            .unwrap()
        }
        fn dir_reply(&self) -> bool {
            self.reply
        }
        fn proto(&self) -> u8 {
            17
        }
        fn expected(&self) -> bool {
            self.expected
        }
        fn invite_cseq(&self) -> u32 {
            self.invite
        }
        fn set_invite_cseq(&mut self, c: u32) {
            self.invite = c;
        }
        fn register_cseq(&self) -> u32 {
            self.register
        }
        fn set_register_cseq(&mut self, c: u32) {
            self.register = c;
        }
        fn flush(&mut self, media: bool) {
            self.log.push(format!("flush media={media}"));
        }
        fn media_expected_elsewhere(&self, _: IpAddr, _: IpAddr, _: u16, _: u8) -> bool {
            false
        }
        fn expect_media(&mut self, src: IpAddr, dst: IpAddr, port: u16, class: u8) -> bool {
            self.log.push(format!("media {src}->{dst}:{port} class {class}"));
            true
        }
        fn expect_signalling(&mut self, src: IpAddr, dst: IpAddr, proto: u8, port: u16) -> bool {
            self.log.push(format!("signalling {src}->{dst}:{port}/{proto}"));
            true
        }
        fn refresh_signalling(&mut self, dst: IpAddr, proto: u8, port: u16, expires: u32) -> bool {
            self.log.push(format!("refresh {dst}:{port}/{proto} {expires}"));
            self.refresh_ok
        }
    }

    const INVITE: &str = "INVITE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@10.0.0.1>\r\nContent-Length: 100\r\n\r\nv=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 49171 RTP/AVP 0\r\nm=video 0 RTP/AVP 31\r\nm=video 51372 RTP/AVP 31\r\n";

    #[test]
    fn invite_with_sdp_expects_rtp_and_rtcp_per_medium() {
        let mut r = Rec::default();
        assert_eq!(process_msg(&mut r, INVITE.as_bytes()), SipVerdict::Accept);
        assert_eq!(
            r.log,
            vec![
                "flush media=true",
                "media 10.0.0.2->10.0.0.1:49170 class 1",
                "media 10.0.0.2->10.0.0.1:51372 class 2"
            ]
        );
        assert_eq!(r.invite, 7);
        // a 200 OK from the proxy naming its own address
        let ok = "SIP/2.0 200 OK\r\nCSeq: 7 INVITE\r\nContent-Length: 50\r\n\r\nv=0\r\nc=IN IP4 10.0.0.2\r\nm=audio 3000 RTP/AVP 0\r\n";
        let mut r2 = Rec { reply: true, ..Rec::default() };
        assert_eq!(process_msg(&mut r2, ok.as_bytes()), SipVerdict::Accept);
        assert_eq!(r2.log, vec!["media 10.0.0.1->10.0.0.2:3000 class 1"]);
        // media toward a third address: nothing (sip_direct_media)
        let third = ok.replace("c=IN IP4 10.0.0.2", "c=IN IP4 10.0.0.9");
        let mut r3 = Rec { reply: true, ..Rec::default() };
        assert_eq!(process_msg(&mut r3, third.as_bytes()), SipVerdict::Accept);
        assert!(r3.log.is_empty());
    }

    #[test]
    fn rejected_forms_drop() {
        // no CSeq on a known request, CSeq 0, a response without code
        let mut r = Rec::default();
        assert!(matches!(process_msg(&mut r, b"INVITE sip:x SIP/2.0\r\n\r\n"), SipVerdict::Drop(_)));
        assert!(matches!(process_msg(&mut r, b"BYE sip:x SIP/2.0\r\nCSeq: 0 BYE\r\n"), SipVerdict::Drop(_)));
        assert!(matches!(process_msg(&mut r, b"SIP/2.0 OK\r\nCSeq: 1 INVITE\r\n"), SipVerdict::Drop(_)));
        // unknown methods and short messages pass
        assert_eq!(process_msg(&mut r, b"OPTIONS sip:x SIP/2.0\r\n\r\n"), SipVerdict::Accept);
        assert_eq!(process_msg(&mut r, b"SIP/2.0 2"), SipVerdict::Accept);
        // a media port below 1024 drops; no connection address drops
        let bad = INVITE.replace("49171", "80");
        assert!(matches!(process_msg(&mut Rec::default(), bad.as_bytes()), SipVerdict::Drop(_)));
        let noc = INVITE.replace("c=IN IP4 10.0.0.1\r\n", "");
        assert!(matches!(process_msg(&mut Rec::default(), noc.as_bytes()), SipVerdict::Drop(_)));
        // the CSeq header must be followed by a colon: "CSeqx" ends the search
        assert!(matches!(
            process_msg(&mut Rec::default(), b"BYE sip:x SIP/2.0\r\nCSeqx: 1\r\nCSeq: 1 BYE\r\n"),
            SipVerdict::Drop(_)
        ));
    }

    #[test]
    fn register_and_its_response() {
        let reg = "REGISTER sip:10.0.0.2 SIP/2.0\r\nCSeq: 3 REGISTER\r\nContact: <sip:alice@10.0.0.1:5070>;expires=600\r\nExpires: 0\r\n\r\n";
        let mut r = Rec::default();
        assert_eq!(process_msg(&mut r, reg.as_bytes()), SipVerdict::Accept);
        assert_eq!(r.log, vec!["signalling 10.0.0.2->10.0.0.1:5070/17"]);
        assert_eq!(r.register, 3);
        // expires 0 (header) without a contact parameter: no expectation
        let zero = "REGISTER sip:10.0.0.2 SIP/2.0\r\nCSeq: 4 REGISTER\r\nm: <sip:alice@10.0.0.1>\r\nExpires: 0\r\n\r\n";
        let mut r = Rec::default();
        process_msg(&mut r, zero.as_bytes());
        assert!(r.log.is_empty());
        assert_eq!(r.register, 4);
        // third-party contact and TCP transport on a UDP entry: nothing
        for c in ["<sip:alice@10.0.0.7>", "<sip:alice@10.0.0.1;transport=tcp>"] {
            let m = format!(
                "REGISTER sip:10.0.0.2 SIP/2.0\r\nCSeq: 5 REGISTER\r\nContact: {c}\r\nExpires: 60\r\n\r\n"
            );
            let mut r = Rec::default();
            process_msg(&mut r, m.as_bytes());
            assert!(r.log.is_empty(), "{c}");
        }
        // a contact port outside 1024..=65535 drops
        let m = "REGISTER sip:10.0.0.2 SIP/2.0\r\nCSeq: 5 REGISTER\r\nContact: <sip:a@10.0.0.1:80>\r\n\r\n";
        assert!(matches!(process_msg(&mut Rec::default(), m.as_bytes()), SipVerdict::Drop(_)));
        // the response: refresh by contact (several contacts in one header), else flush
        let ok = "SIP/2.0 200 OK\r\nCSeq: 3 REGISTER\r\nContact: <sip:x@10.0.0.9>, <sip:alice@10.0.0.1:5070>;expires=300\r\n\r\n";
        let mut r = Rec { reply: true, register: 3, refresh_ok: true, ..Rec::default() };
        process_msg(&mut r, ok.as_bytes());
        assert_eq!(r.log, vec!["refresh 10.0.0.1:5070/17 300"]);
        let mut r = Rec { reply: true, register: 3, ..Rec::default() };
        process_msg(&mut r, b"SIP/2.0 403 Forbidden\r\nCSeq: 3 REGISTER\r\n\r\n");
        assert_eq!(r.log, vec!["flush media=false"]);
        // another CSeq or a provisional response: nothing
        let mut r = Rec { reply: true, register: 2, ..Rec::default() };
        process_msg(&mut r, b"SIP/2.0 403 Forbidden\r\nCSeq: 3 REGISTER\r\n\r\n");
        process_msg(&mut r, b"SIP/2.0 100 Trying\r\nCSeq: 2 REGISTER\r\n\r\n");
        assert!(r.log.is_empty());
    }

    #[test]
    fn error_response_to_the_invite_flushes_media() {
        let mut r = Rec { reply: true, invite: 9, ..Rec::default() };
        process_msg(&mut r, b"SIP/2.0 486 Busy\r\nCSeq: 9 INVITE\r\n\r\n");
        process_msg(&mut r, b"SIP/2.0 486 Busy\r\nCSeq: 8 INVITE\r\n\r\n");
        assert_eq!(r.log, vec!["flush media=true"]);
    }

    #[test]
    fn address_and_number_parsing() {
        assert_eq!(in4_pton(b"1.2.3.4>", 0, 8).map(|(a, e)| (a.to_string(), e)), Some(("1.2.3.4".into(), 7)));
        assert!(in4_pton(b"1.2.3.256", 0, 9).is_none());
        assert!(in4_pton(b"1.2.3.4a", 0, 8).is_none());
        assert!(in4_pton(b"1.2.3", 0, 5).is_none());
        assert_eq!(strtoul0(b"0x1f", 0), (31, 4));
        assert_eq!(strtoul0(b"017", 0), (15, 3));
        assert_eq!(strtoul0(b"600;", 0), (600, 3));
    }

    fn v6(reply: bool) -> Rec {
        Rec { v6: true, reply, ..Rec::default() }
    }

    fn addr(d: &str, fam: Family, brackets: bool) -> Option<(String, usize)> {
        parse_addr(d.as_bytes(), 0, d.len(), fam, brackets).map(|(a, e)| (a.to_string(), e))
    }

    #[test]
    fn ipv6_addresses_accepted_and_rejected() {
        let v6 = Family::V6;
        // URIs need the brackets; the end is past the ']'
        assert_eq!(addr("[fd00::1]:5070", v6, true), Some(("fd00::1".into(), 9)));
        assert_eq!(addr("[2001:db8:0:0:1:0:0:1]>", v6, true), Some(("2001:db8::1:0:0:1".into(), 22)));
        assert_eq!(addr("[::ffff:10.0.0.1]", v6, true), Some(("::ffff:10.0.0.1".into(), 17)));
        assert_eq!(addr("fd00::1", v6, true), None, "no '['");
        assert_eq!(addr("[fd00::1", v6, true), None, "no ']'");
        assert_eq!(addr("[fd00::1>", v6, true), None, "another byte ends the literal");
        // SDP: bare literals; a leading '[' is no address, a ']' after it only ends it
        assert_eq!(addr("fd00::1\r\n", v6, false), Some(("fd00::1".into(), 7)));
        assert_eq!(addr("[fd00::1]\r\n", v6, false), None);
        assert_eq!(addr("[fd00::1 x", v6, false), None);
        assert_eq!(addr("fd00::1]\r\n", v6, false), Some(("fd00::1".into(), 7)));
        assert_eq!(addr("FD00::A/64", v6, false), Some(("fd00::a".into(), 7)));
        // malformed literals
        for bad in
            ["[fd00::1::2]", "[12345::1]", "[fd00:]", "[1:2:3:4:5:6:7:8:9]", "[]", "[::1.2.3]", "[::1.2.3.a]"]
        {
            assert_eq!(addr(bad, v6, true), None, "{bad}");
        }
        // an IPv4 entry never takes an IPv6 literal and vice versa
        assert_eq!(addr("[fd00::1]", Family::V4, true), None);
        assert_eq!(addr("10.0.0.1", v6, false), None, "a dotted quad alone is not an IPv6 literal");
        assert_eq!(addr("10.0.0.1", Family::V4, true), Some(("10.0.0.1".into(), 8)));
    }

    const INVITE6: &str = "INVITE sip:bob@[fd00::2] SIP/2.0\r\nVia: SIP/2.0/UDP [fd00::1]:5060\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@[fd00::1]>\r\nContent-Length: 100\r\n\r\nv=0\r\no=- 1 1 IN IP6 fd00::1\r\nc=IN IP6 fd00::1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\nm=video 51372 RTP/AVP 31\r\nc=IN IP6 fd00::1]\r\n";

    #[test]
    fn ipv6_sdp_expects_media_and_the_family_must_match() {
        let mut r = v6(false);
        assert_eq!(process_msg(&mut r, INVITE6.as_bytes()), SipVerdict::Accept);
        assert_eq!(
            r.log,
            vec![
                "flush media=true",
                "media fd00::2->fd00::1:49170 class 1",
                "media fd00::2->fd00::1:51372 class 2"
            ]
        );
        assert_eq!(r.invite, 7);
        // the 200 OK from the proxy, its own address in the media c= line only
        let ok = "SIP/2.0 200 OK\r\nCSeq: 7 INVITE\r\nContent-Length: 50\r\n\r\nv=0\r\nm=audio 3000 RTP/AVP 0\r\nc=IN IP6 fd00::2\r\n";
        let mut r = v6(true);
        assert_eq!(process_msg(&mut r, ok.as_bytes()), SipVerdict::Accept);
        assert_eq!(r.log, vec!["media fd00::1->fd00::2:3000 class 1"]);
        // a third-party address: nothing expected
        let mut r = v6(true);
        process_msg(&mut r, ok.replace("fd00::2", "fd00::9").as_bytes());
        assert!(r.log.is_empty());
        // an IPv4 c= line on an IPv6 entry is no connection address: the media line drops the packet
        let mut r = v6(false);
        let four = INVITE6
            .replace("c=IN IP6 fd00::1", "c=IN IP4 10.0.0.1")
            .replace("c=IN IP6 fd00::1]", "c=IN IP4 10.0.0.1");
        assert_eq!(process_msg(&mut r, four.as_bytes()), SipVerdict::Drop("sip: cannot parse SDP message"));
        // and an IPv6 one on an IPv4 entry
        let six_on_four = INVITE.replace("c=IN IP4 10.0.0.1", "c=IN IP6 fd00::1");
        assert_eq!(
            process_msg(&mut Rec::default(), six_on_four.as_bytes()),
            SipVerdict::Drop("sip: cannot parse SDP message")
        );
        // brackets in SDP: no address (6.18.44 drops such an INVITE)
        let br = INVITE6
            .replace("c=IN IP6 fd00::1\r\n", "c=IN IP6 [fd00::1]\r\n")
            .replace("c=IN IP6 fd00::1]", "");
        assert_eq!(
            process_msg(&mut v6(false), br.as_bytes()),
            SipVerdict::Drop("sip: cannot parse SDP message")
        );
        // a bad literal in c= is unparsable too
        let bad =
            INVITE6.replace("c=IN IP6 fd00::1\r\n", "c=IN IP6 fd00:::1\r\n").replace("c=IN IP6 fd00::1]", "");
        assert_eq!(
            process_msg(&mut v6(false), bad.as_bytes()),
            SipVerdict::Drop("sip: cannot parse SDP message")
        );
    }

    #[test]
    fn ipv6_register_needs_a_bracketed_contact() {
        let reg = |contact: &str| {
            format!("REGISTER sip:[fd00::2] SIP/2.0\r\nCSeq: 3 REGISTER\r\nContact: {contact}\r\nExpires: 600\r\n\r\n")
        };
        let mut r = v6(false);
        assert_eq!(process_msg(&mut r, reg("<sip:alice@[fd00::1]:5070>").as_bytes()), SipVerdict::Accept);
        assert_eq!(r.log, vec!["signalling fd00::2->fd00::1:5070/17"]);
        assert_eq!(r.register, 3);
        let mut r = v6(false);
        process_msg(&mut r, reg("<sip:[fd00::1]>").as_bytes());
        assert_eq!(r.log, vec!["signalling fd00::2->fd00::1:5060/17"]);
        // without brackets the contact is skipped as unparsable: accepted, nothing expected
        for c in ["<sip:alice@fd00::1>", "<sip:alice@[fd00::1>", "<sip:alice@[fd00::7]:5070>"] {
            let mut r = v6(false);
            assert_eq!(process_msg(&mut r, reg(c).as_bytes()), SipVerdict::Accept, "{c}");
            assert!(r.log.is_empty(), "{c}");
        }
        // a bracketed contact with a port out of range drops
        assert!(matches!(
            process_msg(&mut v6(false), reg("<sip:a@[fd00::1]:80>").as_bytes()),
            SipVerdict::Drop(_)
        ));
        // the 200 OK refreshes it by the bracketed contact
        let ok =
            "SIP/2.0 200 OK\r\nCSeq: 3 REGISTER\r\nContact: <sip:alice@[fd00::1]:5070>;expires=300\r\n\r\n";
        let mut r = Rec { v6: true, reply: true, register: 3, refresh_ok: true, ..Rec::default() };
        process_msg(&mut r, ok.as_bytes());
        assert_eq!(r.log, vec!["refresh fd00::1:5070/17 300"]);
    }

    #[test]
    fn tcp_messages_are_delimited_by_content_length_and_the_blank_line() {
        let a = "INVITE sip:b SIP/2.0\r\nContent-Length: 5\r\nCSeq: 1 INVITE\r\n\r\nhello";
        // Content-Length need not be the last header
        assert_eq!(tcp_message_len(a.as_bytes()), Some(a.len()));
        let two = format!("{a}BYE sip:b SIP/2.0\r\nCSeq: 2 BYE\r\nl: 0\r\n\r\n");
        assert_eq!(tcp_message_len(two.as_bytes()), Some(a.len()));
        assert_eq!(tcp_message_len(&two.as_bytes()[a.len()..]), Some(two.len() - a.len()));
        // a message longer than the segment (split over two): nothing parsed
        assert_eq!(tcp_message_len(&a.as_bytes()[..a.len() - 1]), None);
        // no blank line, no number, no header
        assert_eq!(tcp_message_len(b"INVITE sip:b SIP/2.0\r\nContent-Length: 5\r\n"), None);
        assert_eq!(tcp_message_len(b"INVITE sip:b SIP/2.0\r\nContent-Length: x\r\n\r\nhello"), None);
        assert_eq!(tcp_message_len(b"INVITE sip:b SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n"), None);
        // the message length is 32-bit: a huge Content-Length wraps (here to 9 bytes), and a wrap
        // to exactly 0 ends the parsing
        let wrap = |clen: u64| format!("INVITE x\r\nl: {clen}\r\n\r\n");
        assert_eq!(tcp_message_len(wrap((1 << 32) - 18).as_bytes()), Some(9));
        assert_eq!(tcp_message_len(wrap((1 << 32) - 27).as_bytes()), None);
    }

    proptest::proptest! {
        #[test]
        fn sip_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), reply: bool, v6: bool) {
            let mut r = Rec { reply, v6, register: 1, invite: 1, ..Rec::default() };
            let _ = process_msg(&mut r, &data);
            let _ = tcp_message_len(&data);
            for prefix in [&INVITE.as_bytes()[..60], &INVITE6.as_bytes()[..150], b"SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\nContact: <sip:a@[fd00::1", b"REGISTER x\r\nCSeq: 1\r\nm: sip:", b"INVITE x\r\nl: 12\r\n\r\nv=0\r\nc=IN IP6 "] {
                let mut m = prefix.to_vec();
                m.extend_from_slice(&data);
                let _ = process_msg(&mut r, &m);
            }
        }
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::tcp_message_len;

    /// From the `helper_sip` fuzz target: a Content-Length of 66 nines wraps the 32-bit message
    /// length (as in the kernel) to less than the headers; the length must still be a non-empty
    /// prefix of the segment, so the caller can slice with it.
    #[test]
    fn a_wrapping_content_length_stays_inside_the_segment() {
        let mut m = b"REGISTER sip:10.0.0.2 SIP/2.0\r\nCSeq: 3 REGISTER\r\nContent-Length: 0".to_vec();
        m.extend(std::iter::repeat_n(b'9', 66));
        m.extend_from_slice(b"\r\n\r\nSIP/2.0 200 OK\r\n");
        let blank = m.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
        for cut in blank..=m.len() {
            let seg = m.get(..cut).unwrap_or(&[]);
            if let Some(n) = tcp_message_len(seg) {
                assert!(n > 0 && n <= seg.len(), "length {n} of a {cut}-byte segment");
            }
        }
        // 10^66 - 1 is -1 modulo 2^32: the kernel's 32-bit length ends one byte before the end
        // of the blank line.
        assert_eq!(tcp_message_len(&m), Some(blank + 3));
    }
}
