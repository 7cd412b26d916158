//! Test helpers: hand-built IPv4 datagrams (with correct checksums) and a small "lab" that pushes
//! them through conntrack-in and the confirm hook like the engine does.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used, clippy::too_many_arguments)]

use std::net::Ipv4Addr;

use wire::checksum::{internet_checksum, l4_checksum_v4};
use wire::Time;

use crate::{Config, Conntrack, Hook, InResult};

pub const A: [u8; 4] = [10, 99, 0, 1];
pub const B: [u8; 4] = [10, 99, 0, 2];
pub const C: [u8; 4] = [10, 99, 0, 3];

pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = 20 + l4.len();
    let mut h = vec![0x45, 0, (total >> 8) as u8, total as u8, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let c = internet_checksum(&h);
    h[10] = (c >> 8) as u8;
    h[11] = c as u8;
    h.extend_from_slice(l4);
    h
}

fn flags_of(s: &str) -> u8 {
    let mut f = 0;
    for ch in s.chars() {
        f |= match ch {
            'F' => 0x01,
            'S' => 0x02,
            'R' => 0x04,
            'P' => 0x08,
            'A' => 0x10,
            'U' => 0x20,
            'E' => 0x40,
            'C' => 0x80,
            _ => 0,
        };
    }
    f
}

/// A TCP segment description.
#[derive(Clone, Debug)]
pub struct Seg {
    pub src: [u8; 4],
    pub sport: u16,
    pub dst: [u8; 4],
    pub dport: u16,
    pub flags: &'static str,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    pub opts: Vec<u8>,
    pub payload: usize,
    pub bad_checksum: bool,
    /// Payload bytes (else `payload` bytes of 'x').
    pub text: Option<Vec<u8>>,
}

/// `tcp(A, 41000, B, 8000, "S", seq, ack)` with window 64240, no options, no payload.
pub fn tcp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: &'static str,
    seq: u32,
    ack: u32,
) -> Seg {
    Seg {
        src,
        sport,
        dst,
        dport,
        flags,
        seq,
        ack,
        win: 64240,
        opts: Vec::new(),
        payload: 0,
        bad_checksum: false,
        text: None,
    }
}

impl Seg {
    pub fn win(mut self, w: u16) -> Seg {
        self.win = w;
        self
    }
    pub fn data(mut self, n: usize) -> Seg {
        self.payload = n;
        self
    }
    pub fn opts(mut self, o: &[u8]) -> Seg {
        let mut o = o.to_vec();
        while o.len() & 3 != 0 {
            o.push(1);
        }
        self.opts = o;
        self
    }
    /// Carry these payload bytes.
    pub fn text(mut self, t: &[u8]) -> Seg {
        self.payload = t.len();
        self.text = Some(t.to_vec());
        self
    }
    pub fn bad_checksum(mut self) -> Seg {
        self.bad_checksum = true;
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        let hl = 20 + self.opts.len();
        let mut t = Vec::with_capacity(hl + self.payload);
        t.extend_from_slice(&self.sport.to_be_bytes());
        t.extend_from_slice(&self.dport.to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&self.ack.to_be_bytes());
        t.push(((hl / 4) as u8) << 4);
        t.push(flags_of(self.flags));
        t.extend_from_slice(&self.win.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(&self.opts);
        match &self.text {
            Some(text) => t.extend_from_slice(text),
            None => t.resize(hl + self.payload, b'x'),
        }
        let mut c = l4_checksum_v4(Ipv4Addr::from(self.src), Ipv4Addr::from(self.dst), 6, &t);
        if self.bad_checksum {
            c ^= 0x5555;
        }
        t[16] = (c >> 8) as u8;
        t[17] = c as u8;
        ipv4(self.src, self.dst, 6, &t)
    }
}

pub fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut c = l4_checksum_v4(Ipv4Addr::from(src), Ipv4Addr::from(dst), 17, &u);
    if c == 0 {
        c = 0xffff;
    }
    u[6] = (c >> 8) as u8;
    u[7] = c as u8;
    ipv4(src, dst, 17, &u)
}

pub fn icmp(src: [u8; 4], dst: [u8; 4], ty: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(payload);
    let c = internet_checksum(&m);
    m[2] = (c >> 8) as u8;
    m[3] = c as u8;
    ipv4(src, dst, 1, &m)
}

pub fn echo(src: [u8; 4], dst: [u8; 4], ty: u8, id: u16, seq: u16) -> Vec<u8> {
    let [a, b] = id.to_be_bytes();
    let [c, d] = seq.to_be_bytes();
    icmp(src, dst, ty, 0, [a, b, c, d], b"ping")
}

/// An ICMP error from `from` to `to` quoting the first 28 bytes of `offending`.
pub fn icmp_error(from: [u8; 4], to: [u8; 4], ty: u8, code: u8, offending: &[u8]) -> Vec<u8> {
    let q = &offending[..offending.len().min(28)];
    icmp(from, to, ty, code, [0; 4], q)
}

pub fn t(secs: f64) -> Time {
    Time::from_secs(1_700_000_000).add_nanos((secs * 1e9).round() as u64)
}

/// Conntrack plus the confirm step of an engine whose rules accept (`pass`) or drop (`drop`).
pub struct Lab {
    pub ct: Conntrack,
    pub hook: Hook,
}

impl Lab {
    pub fn new() -> Lab {
        Lab::with(Config::default())
    }
    pub fn with(cfg: Config) -> Lab {
        Lab { ct: Conntrack::new(cfg), hook: Hook::PreRouting }
    }
    /// Conntrack-in only.
    pub fn inn(&mut self, at: f64, bytes: &[u8]) -> InResult {
        let p = wire::decode_ip(bytes).expect("test packet decodes");
        self.ct.handle_packet(t(at), &p, self.hook, None)
    }
    /// Conntrack-in, rules accept, confirm.
    pub fn pass(&mut self, at: f64, bytes: &[u8]) -> InResult {
        let r = self.inn(at, bytes);
        if let InResult::Tracked { id, .. } = r {
            self.ct.confirm(t(at), id);
        }
        r
    }
    /// Conntrack-in, rules drop the packet.
    pub fn drop(&mut self, at: f64, bytes: &[u8]) -> InResult {
        let r = self.inn(at, bytes);
        if let InResult::Tracked { id, .. } = r {
            self.ct.discard(id);
        }
        r
    }
    /// `/proc/net/nf_conntrack` at `at`.
    pub fn proc(&self, at: f64) -> String {
        let mut s = String::new();
        crate::write_proc(&self.ct, t(at), &mut s).unwrap();
        s
    }
    /// `conntrack -L` at `at`.
    pub fn list(&self, at: f64) -> String {
        let mut s = String::new();
        crate::write_conntrack_l(&self.ct, t(at), &mut s).unwrap();
        s
    }
    /// The only entry's TCP state name and remaining seconds.
    pub fn only(&self, at: f64) -> (String, u64) {
        let all: Vec<_> = self.ct.iter().collect();
        assert_eq!(all.len(), 1, "expected exactly one entry, got {}", self.proc(at));
        let c = all[0];
        (c.tcp_state().map(|s| s.to_string()).unwrap_or_default(), c.remaining_secs(t(at)))
    }
}

/// The ctinfo name of a result, "INVALID" or "DROP".
pub fn info(r: InResult) -> &'static str {
    match r {
        InResult::Tracked { info, .. } => match info {
            crate::CtInfo::New => "NEW",
            crate::CtInfo::Established => "ESTABLISHED",
            crate::CtInfo::Related => "RELATED",
            crate::CtInfo::EstablishedReply => "ESTABLISHED_REPLY",
            crate::CtInfo::RelatedReply => "RELATED_REPLY",
        },
        InResult::Untracked => "UNTRACKED",
        InResult::Invalid { .. } => "INVALID",
        InResult::Drop { .. } => "DROP",
    }
}

// ----- IPv6 -----

pub const A6: &str = "fd99::1";
pub const B6: &str = "fd99::2";
pub const R6: &str = "fe80::1";

pub fn v6(s: &str) -> std::net::Ipv6Addr {
    s.parse().unwrap()
}

/// An IPv6 datagram; `ext` = extension headers as (next header of *this* header's type, bytes):
/// each entry is (type, body) where body is the header without its next-header byte handled here.
pub fn ipv6_ext(src: &str, dst: &str, hop: u8, ext: &[(u8, Vec<u8>)], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    let first = ext.first().map_or(proto, |e| e.0);
    for (i, (_, body)) in ext.iter().enumerate() {
        let next = ext.get(i + 1).map_or(proto, |e| e.0);
        let mut h = body.clone();
        h[0] = next;
        payload.extend_from_slice(&h);
    }
    payload.extend_from_slice(l4);
    let mut b = vec![0x60, 0, 0, 0];
    b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    b.push(first);
    b.push(hop);
    b.extend_from_slice(&v6(src).octets());
    b.extend_from_slice(&v6(dst).octets());
    b.extend_from_slice(&payload);
    b
}

pub fn udp6(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = wire::checksum::l4_checksum_v6(v6(src), v6(dst), 17, &u);
    u[6] = (c >> 8) as u8;
    u[7] = c as u8;
    ipv6_ext(src, dst, 64, &[], 17, &u)
}

/// ICMPv6 message with a correct checksum, optional extension headers before it.
pub fn icmp6_ext(
    src: &str,
    dst: &str,
    hop: u8,
    ext: &[(u8, Vec<u8>)],
    ty: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    let c = wire::checksum::l4_checksum_v6(v6(src), v6(dst), 58, &m);
    m[2] = (c >> 8) as u8;
    m[3] = c as u8;
    ipv6_ext(src, dst, hop, ext, 58, &m)
}

pub fn icmp6(src: &str, dst: &str, ty: u8, code: u8, rest: [u8; 4], body: &[u8]) -> Vec<u8> {
    icmp6_ext(src, dst, 64, &[], ty, code, rest, body)
}

pub fn echo6(src: &str, dst: &str, ty: u8, id: u16, seq: u16) -> Vec<u8> {
    let [a, b] = id.to_be_bytes();
    let [c, d] = seq.to_be_bytes();
    icmp6(src, dst, ty, 0, [a, b, c, d], b"ping")
}

/// A destination-options extension header (8 bytes, PadN).
pub fn dstopts() -> (u8, Vec<u8>) {
    (60, vec![0, 0, 1, 4, 0, 0, 0, 0])
}

/// A fragment header with `offset` (bytes) and the MF flag.
pub fn frag_hdr(offset: u16, more: bool, id: u32) -> (u8, Vec<u8>) {
    let field = (offset & 0xfff8) | u16::from(more);
    let mut h = vec![0, 0];
    h.extend_from_slice(&field.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    (44, h)
}

// ----- SCTP -----

pub fn sctp_chunk(ty: u8, flags: u8, body: &[u8]) -> Vec<u8> {
    let len = 4 + body.len();
    let mut c = vec![ty, flags];
    c.extend_from_slice(&(len as u16).to_be_bytes());
    c.extend_from_slice(body);
    while c.len() % 4 != 0 {
        c.push(0);
    }
    c
}

/// INIT / INIT_ACK chunk with initiate tag `tag`.
pub fn sctp_init(ty: u8, tag: u32) -> Vec<u8> {
    let mut b = tag.to_be_bytes().to_vec();
    b.extend_from_slice(&65535u32.to_be_bytes());
    b.extend_from_slice(&[0, 1, 0, 1]);
    b.extend_from_slice(&100u32.to_be_bytes());
    sctp_chunk(ty, 0, &b)
}

/// An IPv4 SCTP packet with a correct CRC32c (unless `bad_crc`).
pub fn sctp(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    vtag: u32,
    chunks: &[Vec<u8>],
    bad_crc: bool,
) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    for c in chunks {
        p.extend_from_slice(c);
    }
    let mut crc = crate::sctp::crc32c(&p);
    if bad_crc {
        crc ^= 1;
    }
    p[8..12].copy_from_slice(&crc.to_le_bytes());
    ipv4(src, dst, 132, &p)
}

/// The tracked entry of a result.
pub fn ids(r: InResult) -> crate::ConnId {
    match r {
        InResult::Tracked { id, .. } => id,
        other => panic!("not tracked: {other:?}"),
    }
}

/// The note of a tracked result.
pub fn note(r: InResult) -> Option<&'static str> {
    match r {
        InResult::Tracked { note, .. } => note,
        _ => None,
    }
}

/// The reason of an INVALID / DROP result.
pub fn reason(r: InResult) -> &'static str {
    match r {
        InResult::Invalid { reason } | InResult::Drop { reason } => reason,
        _ => "",
    }
}

impl Lab {
    /// Conntrack-in with a template, rules accept, confirm.
    pub fn pass_tmpl(&mut self, at: f64, bytes: &[u8], tmpl: &crate::Template) -> InResult {
        let p = wire::decode_ip(bytes).expect("test packet decodes");
        let r = self.ct.handle_packet(t(at), &p, self.hook, Some(tmpl));
        if let InResult::Tracked { id, .. } = r {
            self.ct.confirm(t(at), id);
        }
        r
    }
    /// All queued events as `conntrack -E -o timestamp` lines.
    pub fn events(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        while let Some(e) = self.ct.poll_event() {
            let mut s = String::new();
            crate::write_event(&e, &mut s).unwrap();
            v.push(s.trim_end_matches('\n').to_string());
        }
        v
    }
}

impl Lab {
    /// Conntrack-in (with an optional template), the helper step, then confirm (or discard when
    /// the helper drops the packet), as the engine's confirm hook does.
    pub fn through(
        &mut self,
        at: f64,
        bytes: &[u8],
        tmpl: Option<&crate::Template>,
    ) -> (InResult, crate::HelperVerdict) {
        let p = wire::decode_ip(bytes).expect("test packet decodes");
        let r = self.ct.handle_packet(t(at), &p, self.hook, tmpl);
        let mut v = crate::HelperVerdict::Accept;
        if let InResult::Tracked { id, info, .. } = r {
            v = self.ct.help(t(at), id, info, &p);
            match v {
                crate::HelperVerdict::Accept => self.ct.confirm(t(at), id),
                crate::HelperVerdict::Drop(_) => self.ct.discard(id),
            }
        }
        (r, v)
    }
    /// `/proc/net/nf_conntrack_expect` at `at`.
    pub fn proc_expect(&self, at: f64) -> String {
        let mut s = String::new();
        crate::write_proc_expect(&self.ct, t(at), &mut s).unwrap();
        s
    }
    /// `conntrack -L expect` at `at`.
    pub fn list_expect(&self, at: f64) -> String {
        let mut s = String::new();
        crate::write_conntrack_l_expect(&self.ct, t(at), &mut s).unwrap();
        s
    }
}

/// An IPv6 TCP segment with `text` as payload and a correct checksum.
pub fn tcp6(
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    flags: &'static str,
    seq: u32,
    ack: u32,
    text: &[u8],
) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.push(5 << 4);
    t.push(flags_of(flags));
    t.extend_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(text);
    let c = wire::checksum::l4_checksum_v6(v6(src), v6(dst), 6, &t);
    t[16] = (c >> 8) as u8;
    t[17] = c as u8;
    ipv6_ext(src, dst, 64, &[], 6, &t)
}
