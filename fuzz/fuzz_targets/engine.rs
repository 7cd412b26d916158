//! The whole engine (link decode, IP input, defragmentation, conntrack with helpers, the rules) over
//! an arbitrary sequence of packets and clock steps, structure-aware with `arbitrary`.
//!
//! Packets are raw bytes or built from structured fields: IPv4 (options, fragments with offsets and
//! MF) and IPv6 (extension headers, fragment headers), TCP (flags, options, sequence and
//! acknowledgement numbers relative to what each direction of the flow has sent so far, so
//! handshakes, teardowns and in-window data happen), UDP, ICMP / ICMPv6 echo and errors quoting
//! one of the earlier packets, SCTP / GRE / other protocols as bytes, and payloads that speak the
//! helpers' protocols (FTP, TFTP, IRC DCC, Amanda, SIP). Addresses and ports come from small pools
//! so that flows meet again. Delivery is raw IP (with a chosen packet type) or a link-layer frame
//! (Ethernet with VLAN tags, Linux SLL, any link type with arbitrary header bytes), optionally
//! captured shorter than it was on the wire.
//!
//! Inputs that start with a pcap or pcapng magic number are replayed as captures instead (so the
//! real captures of the seed corpus drive the engine too, and their mutations stay captures).
//!
//! The engine runs a shipped ruleset (the helpers one assigns FTP/TFTP/IRC/Amanda/SIP helpers)
//! on the router host of `examples/router`, with a small `nf_conntrack_max` most of the time (so
//! early drop and table-full drops happen).
//!
//! `STATEWALL_FUZZ_CLOCK_MAX_NS=N` clamps every packet time to N ns: a way to keep fuzzing the rest
//! while a bug at some time is open (it was used for F2 in docs/ROBUSTNESS.md, fixed the same day).
//! Unset, the clock goes up to `u64::MAX`.
//!
//! `STATEWALL_FUZZ_PRINT=1` prints the decoded input (setup and steps) before running it, for triage.
//!
//! Invariants checked:
//! - each packet yields exactly one decision (the engine's packet count moves by one); a filtered
//!   packet has a verdict, and a ctstate unless conntrack itself dropped it (table full), which is
//!   a DROP;
//! - the conntrack table (confirmed entries, and all allocated ones) never exceeds
//!   `nf_conntrack_max`;
//! - `poll_timeout` / `handle_timeout` make progress: after expiring what is due at the announced
//!   time, the next timeout is later than the engine's clock;
//! - the views render: `/proc/net/nf_conntrack`, `conntrack -L` (plain and extended), the
//!   expectation listings, `conntrack -S`, `/proc/net/stat/nf_conntrack`, the events, and the
//!   rulesets with their counters (iptables-save -c) which parse again.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use engine::{Disposition, Engine, Host};
use libfuzzer_sys::fuzz_target;
use wire::link::PktType;
use wire::Time;

const RULES_V4: [&str; 5] = [
    include_str!("../../examples/helpers/rules.v4"),
    include_str!("../../examples/helpers/rules-irc-amanda-sip.v4"),
    include_str!("../../examples/seed/rules.v4"),
    include_str!("../../examples/router/rules.v4"),
    include_str!("../../examples/seed/rules-notrack.v4"),
];
const RULES_V6: [&str; 2] =
    [include_str!("../../examples/helpers/rules.v6"), include_str!("../../examples/router/rules.v6")];
const HOST: &str = include_str!("../../examples/router/host.toml");

struct Fixed {
    v4: Vec<rules::Ruleset>,
    v6: Vec<rules::Ruleset>,
    host: Host,
}

/// The shipped rulesets and host, parsed once per fuzzing process.
fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| Fixed {
        v4: RULES_V4.iter().map(|t| rules::parse(t).expect("shipped v4 ruleset")).collect(),
        v6: RULES_V6
            .iter()
            .map(|t| rules::parse_family(t, rules::Family::V6).expect("shipped v6 ruleset"))
            .collect(),
        host: Host::from_toml(HOST).expect("shipped host"),
    })
}

const V4_POOL: [[u8; 4]; 12] = [
    [192, 0, 2, 10], // the router's WAN address
    [192, 0, 2, 20],
    [198, 51, 100, 7],
    [203, 0, 113, 5],
    [10, 1, 0, 1], // the router's LAN address
    [10, 1, 0, 5],
    [127, 0, 0, 1],
    [224, 0, 0, 1],
    [255, 255, 255, 255],
    [0, 0, 0, 0],
    [192, 0, 2, 255],
    [10, 1, 0, 6],
];
const V6_POOL: [[u16; 8]; 8] = [
    [0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x10], // the router's WAN address
    [0x2001, 0xdb8, 0, 1, 0, 0, 0, 0x20],
    [0x2001, 0xdb8, 0, 2, 0, 0, 0, 5],
    [0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 1],
    [0, 0, 0, 0, 0, 0, 0, 1],
    [0xff02, 0, 0, 0, 0, 0, 0, 1],
    [0xfe80, 0, 0, 0, 0, 0, 0, 1],
    [0x2001, 0xdb8, 0, 2, 0, 0, 0, 1], // the router's LAN address
];
const PORTS: [u16; 16] =
    [21, 69, 5060, 6667, 10080, 80, 443, 22, 53, 33333, 1024, 2000, 40000, 50000, 65535, 0];

#[derive(Arbitrary, Debug)]
struct Input {
    setup: Setup,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
struct Setup {
    ruleset: u8,
    ruleset6: u8,
    forwarding: bool,
    /// `nf_conntrack_max` = 1 + max % 24, or the default when 255.
    max: u8,
    loose: bool,
    liberal: bool,
    checksum: bool,
    tracing: bool,
    /// A small fragment memory threshold.
    small_frag_mem: bool,
    /// `nf_conntrack_buckets` (small: a big table costs every run a large zeroed allocation).
    buckets: u8,
}

#[derive(Arbitrary, Debug)]
struct Step {
    time: TimeStep,
    delivery: Delivery,
    pkt: Pkt,
}

#[derive(Arbitrary, Debug)]
enum TimeStep {
    Same,
    Micros(u16),
    Millis(u16),
    Secs(u8),
    Minutes(u8),
    Hours(u16),
    /// The capture's clock goes backwards.
    BackMillis(u16),
    /// Expire what is due at the announced timeout before the packet.
    Expire,
    /// Render every view before the packet.
    Views,
    /// An absolute capture time (ns since the epoch).
    At(u64),
}

#[derive(Arbitrary, Debug)]
enum Delivery {
    Ip(u8),
    Ethernet {
        dst: u8,
        vlans: u8,
    },
    Sll {
        pkttype: u8,
    },
    /// Any link type (index into a list of the supported ones and a few others), with arbitrary
    /// header bytes in front of the IP datagram.
    Link {
        linktype: u8,
        header: Vec<u8>,
    },
    /// Captured shorter than on the wire (snaplen).
    Snap {
        keep: u16,
    },
    /// The packet is a whole frame of this link type, `wire_len` long on the wire (capture mode).
    Frame {
        linktype: u32,
        wire_len: u32,
    },
}

#[derive(Arbitrary, Debug)]
enum Pkt {
    Raw(Vec<u8>),
    V4(Ip4, Body),
    V6(Ip6, Body),
    /// One of the last packets again (a retransmission), possibly with a byte changed.
    Again {
        back: u8,
        flip: Option<(u16, u8)>,
    },
}

#[derive(Arbitrary, Debug)]
struct Ip4 {
    src: u8,
    dst: u8,
    ttl: u8,
    tos: u8,
    id: u8,
    df: bool,
    options: Vec<u8>,
    frag: Option<Frag>,
    mangle: u8,
    mangle_arg: u16,
}

#[derive(Arbitrary, Debug)]
struct Ip6 {
    src: u8,
    dst: u8,
    hlim: u8,
    flow: u32,
    ext: Vec<Ext6>,
    frag: Option<Frag>,
    mangle: u8,
    mangle_arg: u16,
}

#[derive(Arbitrary, Debug)]
enum Ext6 {
    HopByHop(Vec<u8>),
    DestOpts(Vec<u8>),
    Routing {
        kind: u8,
        left: u8,
        data: Vec<u8>,
    },
    /// A raw header with any next-header number and length byte.
    Raw {
        nh: u8,
        bytes: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Frag {
    /// Piece `piece` of the datagram's payload cut into `pieces` 8-byte-aligned parts.
    Piece { id: u8, piece: u8, pieces: u8 },
    /// Any offset / MF / slice of the payload.
    Raw { id: u8, offset: u16, more: bool, from: u16, len: u16 },
}

#[derive(Arbitrary, Debug)]
enum Body {
    Tcp(Tcp),
    Udp(Udp),
    Icmp { ty: u8, code: u8, rest: u32, data: Vec<u8> },
    Echo { reply: bool, id: u8, seq: u16 },
    IcmpErr(IcmpErr),
    Sctp { sport: Port, dport: Port, vtag: u32, chunks: Vec<u8> },
    Gre(Vec<u8>),
    Other { proto: u8, data: Vec<u8> },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Port {
    Pool(u8),
    Any(u16),
}

#[derive(Arbitrary, Debug)]
enum Seq {
    /// What this direction sent so far (its next sequence number), plus a small delta.
    Next(i8),
    Near(i32),
    Abs(u32),
}

#[derive(Arbitrary, Debug)]
struct Tcp {
    sport: Port,
    dport: Port,
    seq: Seq,
    ack: Seq,
    /// FIN SYN RST PSH ACK URG ECE CWR.
    flags: u8,
    window: u16,
    urg: u16,
    options: Vec<TcpOpt>,
    payload: Payload,
    /// A data offset other than the real one.
    doff: Option<u8>,
}

#[derive(Arbitrary, Debug)]
enum TcpOpt {
    Mss(u16),
    Wscale(u8),
    SackPerm,
    Sack(Vec<(i16, u16)>),
    Ts(u32, u32),
    Nop,
    End,
    Raw { kind: u8, len: u8, data: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
struct Udp {
    sport: Port,
    dport: Port,
    payload: Payload,
    /// A UDP length other than the real one.
    len: Option<u16>,
    zero_csum: bool,
}

#[derive(Arbitrary, Debug)]
enum Payload {
    None,
    Bytes(Vec<u8>),
    Ftp(Ftp),
    Tftp { op: u8, name: u8 },
    Irc { cmd: u8, addr: u8, port: Port, raw_addr: Option<u32> },
    Amanda { data: Port, mesg: Port, index: Port, text: u8 },
    Sip(Sip),
}

#[derive(Arbitrary, Debug)]
enum Ftp {
    Port { addr: u8, port: u16 },
    Eprt { v6: bool, addr: u8, port: u16 },
    Pasv { addr: u8, port: u16 },
    Epsv { port: u16 },
    Line(u8, Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Sip {
    Invite { cseq: u8, media: u8, audio: u16, video: u16 },
    Response { code: u16, cseq: u8, method: u8, media: u8, audio: u16 },
    Register { cseq: u8, contact: u8, port: u16, expires: u16, transport: u8 },
    Bye { cseq: u8 },
}

#[derive(Arbitrary, Debug)]
struct IcmpErr {
    ty: u8,
    code: u8,
    /// Which earlier packet is quoted (0 = the last).
    quote: u8,
    /// How many bytes of it (beyond the IP header).
    keep: u16,
    /// The error uses the addresses of its IP header's fields; else it comes from the quoted
    /// packet's destination back to its source (when the families agree).
    own_addrs: bool,
    /// Change one byte of the quote.
    flip: Option<(u16, u8)>,
}

/// What the harness remembers between packets: what each direction of a TCP flow sent so far, and
/// the last datagrams (for ICMP errors and retransmissions).
#[derive(Default)]
struct World {
    next_seq: HashMap<(IpAddr, IpAddr, u16, u16), u32>,
    history: Vec<Vec<u8>>,
}

const HISTORY: usize = 16;

fn v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::from(V4_POOL[usize::from(i) % V4_POOL.len()])
}

fn v6(i: u8) -> Ipv6Addr {
    let s = V6_POOL[usize::from(i) % V6_POOL.len()];
    Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
}

fn port(p: Port) -> u16 {
    match p {
        Port::Pool(i) => PORTS[usize::from(i) % PORTS.len()],
        Port::Any(v) => v,
    }
}

fn addr_text(a: IpAddr, sep: char) -> String {
    match a {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}{sep}{}{sep}{}{sep}{}", o[0], o[1], o[2], o[3])
        }
        IpAddr::V6(a) => a.to_string(),
    }
}

/// The payload's bytes. `src` / `dst`: the addresses of the packet carrying it (helpers' messages
/// name the sender's own address most of the time, as the helpers require).
fn payload(p: &Payload, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let pick = |i: u8| -> IpAddr {
        match (i % 4, src) {
            (0 | 1, _) => src,
            (2, _) => dst,
            (_, IpAddr::V4(_)) => IpAddr::V4(v4(i / 4)),
            (_, IpAddr::V6(_)) => IpAddr::V6(v6(i / 4)),
        }
    };
    match p {
        Payload::None => Vec::new(),
        Payload::Bytes(b) => b.clone(),
        Payload::Ftp(f) => match f {
            Ftp::Port { addr, port } => {
                format!("PORT {},{},{}\r\n", addr_text(pick(*addr), ','), port >> 8, port & 0xff).into_bytes()
            }
            Ftp::Eprt { v6, addr, port } => {
                let a = pick(*addr);
                let fam = if *v6 || a.is_ipv6() { 2 } else { 1 };
                format!("EPRT |{fam}|{}|{port}|\r\n", addr_text(a, '.')).into_bytes()
            }
            Ftp::Pasv { addr, port } => format!(
                "227 Entering Passive Mode ({},{},{}).\r\n",
                addr_text(pick(*addr), ','),
                port >> 8,
                port & 0xff
            )
            .into_bytes(),
            Ftp::Epsv { port } => format!("229 Entering Extended Passive Mode (|||{port}|)\r\n").into_bytes(),
            Ftp::Line(k, rest) => {
                let kw: &[u8] = match k % 6 {
                    0 => b"PORT ",
                    1 => b"EPRT ",
                    2 => b"227 ",
                    3 => b"229 ",
                    4 => b"USER anonymous\r\n",
                    _ => b"",
                };
                let mut v = kw.to_vec();
                v.extend_from_slice(rest);
                v
            }
        },
        Payload::Tftp { op, name } => {
            let mut v = vec![0, op % 7];
            v.extend_from_slice(format!("file{name}").as_bytes());
            v.extend_from_slice(b"\0octet\0");
            v
        }
        Payload::Irc { cmd, addr, port: p, raw_addr } => {
            let a = match (raw_addr, pick(*addr)) {
                (Some(n), _) => *n,
                (None, IpAddr::V4(a)) => u32::from(a),
                (None, IpAddr::V6(_)) => 0x0a01_0005,
            };
            let c = ["SEND", "CHAT", "MOVE", "TSEND", "SCHAT", "RESUME"][usize::from(*cmd) % 6];
            format!("PRIVMSG bob :\u{1}DCC {c} file.txt {a} {} 1024\u{1}\r\n", port(*p)).into_bytes()
        }
        Payload::Amanda { data, mesg, index, text } => {
            let mut s = String::from("Amanda 2.4 REP HANDLE 000-00000000 SEQ 1\n");
            match text % 3 {
                0 => s.push_str(&format!(
                    "CONNECT DATA {} MESG {} INDEX {}\n",
                    port(*data),
                    port(*mesg),
                    port(*index)
                )),
                1 => s.push_str(&format!("CONNECT DATA {}\n", port(*data))),
                _ => s.push_str(&format!("CONNECT MESG {} INDEX {}", port(*mesg), port(*index))),
            }
            s.into_bytes()
        }
        Payload::Sip(m) => sip(m, src, dst, &pick),
    }
}

fn sdp(addr: IpAddr, audio: u16, video: u16) -> String {
    let fam = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = format!(
        "v=0\r\no=- 1 1 IN {fam} {addr}\r\nc=IN {fam} {addr}\r\nt=0 0\r\nm=audio {audio} RTP/AVP 0\r\n"
    );
    if video != 0 {
        s.push_str(&format!("m=video {video} RTP/AVP 31\r\n"));
    }
    s
}

fn sip(m: &Sip, src: IpAddr, dst: IpAddr, pick: &dyn Fn(u8) -> IpAddr) -> Vec<u8> {
    let s = match m {
        Sip::Invite { cseq, media, audio, video } => {
            let body = sdp(pick(*media), *audio, *video);
            format!(
                "INVITE sip:bob@{dst} SIP/2.0\r\nVia: SIP/2.0/UDP {src}:5060\r\nCSeq: {cseq} INVITE\r\nContact: <sip:alice@{src}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        Sip::Response { code, cseq, method, media, audio } => {
            let meth = ["INVITE", "UPDATE", "PRACK", "REGISTER", "BYE", "OPTIONS"][usize::from(*method) % 6];
            let body = sdp(pick(*media), *audio, 0);
            format!(
                "SIP/2.0 {} OK\r\nCSeq: {cseq} {meth}\r\nContact: <sip:alice@{src}:5060>;expires=60\r\nContent-Length: {}\r\n\r\n{body}",
                code % 700,
                body.len()
            )
        }
        Sip::Register { cseq, contact, port, expires, transport } => {
            let t = ["", ";transport=udp", ";transport=tcp", ";transport=sctp"][usize::from(*transport) % 4];
            let c = pick(*contact);
            let c = if c.is_ipv6() { format!("[{c}]") } else { c.to_string() };
            format!(
                "REGISTER sip:{dst} SIP/2.0\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@{c}:{port}{t}>;expires={expires}\r\nExpires: {expires}\r\nContent-Length: 0\r\n\r\n"
            )
        }
        Sip::Bye { cseq } => {
            format!("BYE sip:bob@{dst} SIP/2.0\r\nCSeq: {cseq} BYE\r\nContent-Length: 0\r\n\r\n")
        }
    };
    s.into_bytes()
}

fn tcp_options(opts: &[TcpOpt], base: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for o in opts {
        let bytes: Vec<u8> = match o {
            TcpOpt::Mss(m) => vec![2, 4, (m >> 8) as u8, *m as u8],
            TcpOpt::Wscale(s) => vec![3, 3, *s],
            TcpOpt::SackPerm => vec![4, 2],
            TcpOpt::Sack(blocks) => {
                let mut b = vec![5, 2];
                for &(l, r) in blocks.iter().take(4) {
                    let left = base.wrapping_add(l as i32 as u32);
                    let right = left.wrapping_add(u32::from(r));
                    b.extend_from_slice(&left.to_be_bytes());
                    b.extend_from_slice(&right.to_be_bytes());
                }
                b[1] = b.len() as u8;
                b
            }
            TcpOpt::Ts(a, b) => {
                let mut t = vec![8, 10];
                t.extend_from_slice(&a.to_be_bytes());
                t.extend_from_slice(&b.to_be_bytes());
                t
            }
            TcpOpt::Nop => vec![1],
            TcpOpt::End => vec![0],
            TcpOpt::Raw { kind, len, data } => {
                let mut b = vec![*kind, *len];
                b.extend(data.iter().take(38));
                b
            }
        };
        if v.len() + bytes.len() > 40 {
            break;
        }
        v.extend_from_slice(&bytes);
    }
    while !v.len().is_multiple_of(4) {
        v.push(1);
    }
    v
}

/// The L4 protocol number and bytes (checksum filled in later).
fn l4(body: &Body, src: IpAddr, dst: IpAddr, w: &mut World, six: bool) -> (u8, Vec<u8>, Option<usize>) {
    match body {
        Body::Tcp(t) => {
            let (sp, dp) = (port(t.sport), port(t.dport));
            let key = (src, dst, sp, dp);
            let rkey = (dst, src, dp, sp);
            let mine = w.next_seq.get(&key).copied().unwrap_or(0x1000_0000 ^ u32::from(sp) << 8);
            let theirs = w.next_seq.get(&rkey).copied().unwrap_or(0);
            let rel = |s: &Seq, base: u32| match s {
                Seq::Next(d) => base.wrapping_add(*d as i32 as u32),
                Seq::Near(d) => base.wrapping_add(*d as u32),
                Seq::Abs(v) => *v,
            };
            let seq = rel(&t.seq, mine);
            let ack = rel(&t.ack, theirs);
            let data = payload(&t.payload, src, dst);
            let opts = tcp_options(&t.options, theirs);
            let hl = 20 + opts.len();
            let doff = t.doff.map_or(hl / 4, |d| usize::from(d % 16));
            let flags = t.flags;
            let mut v = Vec::with_capacity(hl + data.len());
            v.extend_from_slice(&sp.to_be_bytes());
            v.extend_from_slice(&dp.to_be_bytes());
            v.extend_from_slice(&seq.to_be_bytes());
            v.extend_from_slice(&ack.to_be_bytes());
            v.push((doff as u8) << 4);
            v.push(flags);
            v.extend_from_slice(&t.window.to_be_bytes());
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&t.urg.to_be_bytes());
            v.extend_from_slice(&opts);
            v.extend_from_slice(&data);
            let used = data.len() as u32 + (flags & 0x03).count_ones();
            w.next_seq.insert(key, seq.wrapping_add(used));
            if w.next_seq.len() > 256 {
                w.next_seq.clear();
            }
            (6, v, Some(16))
        }
        Body::Udp(u) => {
            let data = payload(&u.payload, src, dst);
            let len = u.len.unwrap_or((8 + data.len()) as u16);
            let mut v = Vec::with_capacity(8 + data.len());
            v.extend_from_slice(&port(u.sport).to_be_bytes());
            v.extend_from_slice(&port(u.dport).to_be_bytes());
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&data);
            (17, v, if u.zero_csum && !six { None } else { Some(6) })
        }
        Body::Icmp { ty, code, rest, data } => {
            let mut v = vec![*ty, *code, 0, 0];
            v.extend_from_slice(&rest.to_be_bytes());
            v.extend_from_slice(data);
            (if six { 58 } else { 1 }, v, Some(2))
        }
        Body::Echo { reply, id, seq } => {
            let ty = match (six, reply) {
                (false, false) => 8,
                (false, true) => 0,
                (true, false) => 128,
                (true, true) => 129,
            };
            let mut v = vec![ty, 0, 0, 0, 0, *id];
            v.extend_from_slice(&seq.to_be_bytes());
            v.extend_from_slice(b"ping");
            (if six { 58 } else { 1 }, v, Some(2))
        }
        Body::IcmpErr(e) => {
            let ty = if six {
                [1u8, 2, 3, 4][usize::from(e.ty) % 4]
            } else {
                [3u8, 11, 12, 4, 5][usize::from(e.ty) % 5]
            };
            let mut v = vec![ty, e.code % 16, 0, 0, 0, 0, 0, 0];
            if !w.history.is_empty() {
                let i = w.history.len() - 1 - usize::from(e.quote) % w.history.len();
                let q = &w.history[i];
                let ihl = if q.first().is_some_and(|b| b >> 4 == 6) { 40 } else { 20 };
                let keep = (ihl + usize::from(e.keep)).min(q.len()).min(1200);
                let mut q = q[..keep].to_vec();
                if let Some((at, b)) = e.flip {
                    if !q.is_empty() {
                        let at = usize::from(at) % q.len();
                        q[at] ^= b;
                    }
                }
                v.extend_from_slice(&q);
            }
            (if six { 58 } else { 1 }, v, Some(2))
        }
        Body::Sctp { sport, dport, vtag, chunks } => {
            let mut v = Vec::with_capacity(12 + chunks.len());
            v.extend_from_slice(&port(*sport).to_be_bytes());
            v.extend_from_slice(&port(*dport).to_be_bytes());
            v.extend_from_slice(&vtag.to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, 0]);
            v.extend_from_slice(chunks);
            (132, v, None)
        }
        Body::Gre(b) => (47, b.clone(), None),
        Body::Other { proto, data } => (*proto, data.clone(), None),
    }
}

fn fill_l4_checksum(l4: &mut [u8], at: Option<usize>, src: IpAddr, dst: IpAddr, proto: u8) {
    let Some(at) = at else { return };
    if l4.len() < at + 2 {
        return;
    }
    let c = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) if proto == 1 => wire::checksum::internet_checksum(l4),
        (IpAddr::V4(s), IpAddr::V4(d)) => wire::checksum::l4_checksum_v4(s, d, proto, l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => wire::checksum::l4_checksum_v6(s, d, proto, l4),
        _ => return,
    };
    let c = if c == 0 && proto == 17 { 0xffff } else { c };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// The part of `payload` (the whole datagram's payload) a fragment carries, its offset in bytes
/// and MF; `None` for an unfragmented datagram.
fn frag_slice(f: &Frag, payload: &[u8]) -> (u32, u16, bool, Vec<u8>) {
    match f {
        Frag::Piece { id, piece, pieces } => {
            let pieces = usize::from(pieces % 4) + 1;
            let piece = usize::from(*piece) % pieces;
            let size = payload.len().div_ceil(pieces).div_ceil(8) * 8;
            let from = (piece * size).min(payload.len());
            let to = (from + size).min(payload.len());
            let last = to >= payload.len();
            (u32::from(*id), (from / 8) as u16, !last, payload[from..to].to_vec())
        }
        Frag::Raw { id, offset, more, from, len } => {
            let from = usize::from(*from).min(payload.len());
            let to = (from + usize::from(*len)).min(payload.len());
            (u32::from(*id), offset & 0x1fff, *more, payload[from..to].to_vec())
        }
    }
}

fn mangle(v: &mut Vec<u8>, how: u8, arg: u16, l4_csum_at: Option<usize>) {
    match how {
        250 if v.len() > 11 => v[10] ^= 0x5a,
        251 => {
            if let Some(at) = l4_csum_at {
                if let Some(b) = v.get_mut(at) {
                    *b ^= 0xa5;
                }
            }
        }
        252 if v.len() > 3 => v[2..4].copy_from_slice(&arg.to_be_bytes()),
        253 => v.truncate(usize::from(arg)),
        254 => v.extend(std::iter::repeat_n(0u8, usize::from(arg % 64))),
        255 if !v.is_empty() => {
            let at = usize::from(arg) % v.len();
            v[at] ^= (arg >> 8) as u8 | 1;
        }
        _ => {}
    }
}

/// For an ICMP error that answers the quoted packet: (quoted destination, quoted source).
fn answer_addrs(body: &Body, w: &World) -> Option<(IpAddr, IpAddr)> {
    let Body::IcmpErr(e) = body else { return None };
    if e.own_addrs || w.history.is_empty() {
        return None;
    }
    let q = &w.history[w.history.len() - 1 - usize::from(e.quote) % w.history.len()];
    match q.first()? >> 4 {
        4 => {
            let s: [u8; 4] = q.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = q.get(16..20)?.try_into().ok()?;
            Some((IpAddr::from(d), IpAddr::from(s)))
        }
        6 => {
            let s: [u8; 16] = q.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = q.get(24..40)?.try_into().ok()?;
            Some((IpAddr::from(d), IpAddr::from(s)))
        }
        _ => None,
    }
}

fn build_v4(h: &Ip4, body: &Body, w: &mut World) -> Vec<u8> {
    let (src, dst) = match answer_addrs(body, w) {
        Some((IpAddr::V4(s), IpAddr::V4(d))) => (s, d),
        _ => (v4(h.src), v4(h.dst)),
    };
    let (proto, mut l4b, csum_at) = l4(body, IpAddr::V4(src), IpAddr::V4(dst), w, false);
    fill_l4_checksum(&mut l4b, csum_at, IpAddr::V4(src), IpAddr::V4(dst), proto);
    let mut opts: Vec<u8> = h.options.iter().copied().take(40).collect();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let whole = datagram4(h, src, dst, proto, &opts, &l4b, 0, false, u16::from(h.id));
    remember(w, &whole);
    let mut out = match &h.frag {
        None => whole,
        Some(f) => {
            let (id, off, more, part) = frag_slice(f, &l4b);
            datagram4(h, src, dst, proto, &opts, &part, off, more, id as u16)
        }
    };
    let at = csum_at.map(|c| 20 + opts.len() + c);
    mangle(&mut out, h.mangle, h.mangle_arg, at);
    out
}

#[allow(clippy::too_many_arguments)]
fn datagram4(
    h: &Ip4,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    opts: &[u8],
    payload: &[u8],
    off: u16,
    more: bool,
    id: u16,
) -> Vec<u8> {
    let hl = 20 + opts.len();
    let total = (hl + payload.len()).min(65535) as u16;
    let mut v = Vec::with_capacity(hl + payload.len());
    v.push(0x40 | (hl / 4) as u8);
    v.push(h.tos);
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&id.to_be_bytes());
    let ff = (u16::from(h.df) << 14) | (u16::from(more) << 13) | (off & 0x1fff);
    v.extend_from_slice(&ff.to_be_bytes());
    v.push(h.ttl);
    v.push(proto);
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(opts);
    let c = wire::checksum::internet_checksum(&v[..hl]);
    v[10..12].copy_from_slice(&c.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn ext6(e: &Ext6, next: u8) -> (u8, Vec<u8>) {
    let padded = |nh: u8, data: &[u8]| {
        let mut v = vec![next, 0];
        v.extend(data.iter().take(254));
        while !v.len().is_multiple_of(8) {
            v.push(0);
        }
        v[1] = (v.len() / 8 - 1) as u8;
        (nh, v)
    };
    match e {
        Ext6::HopByHop(d) => padded(0, d),
        Ext6::DestOpts(d) => padded(60, d),
        Ext6::Routing { kind, left, data } => {
            let mut d = vec![*kind, *left, 0, 0, 0, 0];
            d.extend(data.iter().take(64));
            padded(43, &d)
        }
        Ext6::Raw { nh, bytes } => {
            let mut v = vec![next];
            v.extend(bytes.iter().take(64));
            (*nh, v)
        }
    }
}

fn build_v6(h: &Ip6, body: &Body, w: &mut World) -> Vec<u8> {
    let (src, dst) = match answer_addrs(body, w) {
        Some((IpAddr::V6(s), IpAddr::V6(d))) => (s, d),
        _ => (v6(h.src), v6(h.dst)),
    };
    let (proto, mut l4b, csum_at) = l4(body, IpAddr::V6(src), IpAddr::V6(dst), w, true);
    fill_l4_checksum(&mut l4b, csum_at, IpAddr::V6(src), IpAddr::V6(dst), proto);
    // Extension headers, innermost last: build from the L4 header outwards.
    let mut chain: Vec<u8> = Vec::new();
    let mut next = proto;
    for e in h.ext.iter().take(4).rev() {
        let (nh, mut b) = ext6(e, next);
        b.extend_from_slice(&chain);
        chain = b;
        next = nh;
    }
    let mut whole_payload = chain.clone();
    whole_payload.extend_from_slice(&l4b);
    let whole = datagram6(h, src, dst, next, &whole_payload);
    remember(w, &whole);
    let mut out = match &h.frag {
        None => whole,
        Some(f) => {
            // The unfragmentable part (the extension headers) stays in front of the fragment header.
            let (id, off, more, part) = frag_slice(f, &l4b);
            let mut p = chain;
            // Point the last extension header (or the IPv6 header) at the fragment header.
            let fh_next = proto;
            let mut fh = vec![fh_next, 0];
            fh.extend_from_slice(&((off << 3) | u16::from(more)).to_be_bytes());
            fh.extend_from_slice(&(0x5eed_0000 | id).to_be_bytes());
            let outer = if p.is_empty() {
                44
            } else {
                set_last_next(&mut p, 44);
                next
            };
            p.extend_from_slice(&fh);
            p.extend_from_slice(&part);
            datagram6(h, src, dst, outer, &p)
        }
    };
    let at = csum_at.map(|c| 40 + c);
    mangle(&mut out, h.mangle, h.mangle_arg, at);
    out
}

/// Rewrite the next-header byte of the last extension header in `chain`.
fn set_last_next(chain: &mut [u8], nh: u8) {
    let mut off = 0usize;
    let mut last = None;
    while off + 1 < chain.len() {
        last = Some(off);
        off += (usize::from(chain[off + 1]) + 1) * 8;
    }
    if let Some(l) = last {
        chain[l] = nh;
    }
}

fn datagram6(h: &Ip6, src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + payload.len());
    v.extend_from_slice(&(0x6000_0000 | (h.flow & 0x0fff_ffff)).to_be_bytes());
    v.extend_from_slice(&(payload.len().min(65535) as u16).to_be_bytes());
    v.push(next);
    v.push(h.hlim);
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(payload);
    v
}

fn remember(w: &mut World, d: &[u8]) {
    if w.history.len() == HISTORY {
        w.history.remove(0);
    }
    w.history.push(d.to_vec());
}

fn pkttype(sel: u8) -> PktType {
    match sel % 6 {
        0 => PktType::Host,
        1 => PktType::Unknown,
        2 => PktType::Outgoing,
        3 => PktType::Broadcast,
        4 => PktType::Multicast,
        _ => PktType::OtherHost,
    }
}

const LINKTYPES: [u32; 12] = [1, 113, 276, 101, 12, 14, 228, 229, 0, 108, 239, 147];

/// The latest packet time allowed (`STATEWALL_FUZZ_CLOCK_MAX_NS`), read once.
fn clock_max() -> u64 {
    static MAX: OnceLock<u64> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("STATEWALL_FUZZ_CLOCK_MAX_NS").ok().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
    })
}

fn run(input: &Input) {
    let fx = fixed();
    let s = &input.setup;
    let mut host = fx.host.clone();
    host.set_forwarding(s.forwarding);
    let mut cfg = conntrack::Config::default();
    if s.max != 255 {
        cfg.max = 1 + u32::from(s.max % 24);
    }
    cfg.buckets = [1, 16, 64, 1024][usize::from(s.buckets % 4)];
    cfg.tcp_loose = !s.loose;
    cfg.tcp_be_liberal = s.liberal;
    cfg.checksum = !s.checksum;
    let max = cfg.max;
    let make = || {
        let rs = fx.v4[usize::from(s.ruleset) % fx.v4.len()].clone();
        let mut e = Engine::new(rs, host.clone(), cfg.clone());
        if s.ruleset6 % 4 != 3 {
            e = e.with_ipv6_rules(fx.v6[usize::from(s.ruleset6) % fx.v6.len()].clone());
        }
        e.set_tracing(s.tracing);
        if s.small_frag_mem {
            e.set_defrag_config(wire::DefragConfig {
                ipv4_timeout_secs: 30,
                ipv6_timeout_secs: 60,
                high_thresh: 2048,
            });
        }
        e
    };
    let mut e = make();
    // The same engine walking every table for every packet: the fast path must change nothing.
    let mut slow = make();
    slow.set_fast_path(false);
    let mut w = World::default();
    let mut reparsed = false;
    let mut now = Time::from_secs(1_700_000_000);
    for (i, step) in input.steps.iter().take(200).enumerate() {
        match step.time {
            TimeStep::Same => {}
            TimeStep::Micros(v) => now = now.add_nanos(u64::from(v) * 1_000),
            TimeStep::Millis(v) => now = now.add_nanos(u64::from(v) * 1_000_000),
            TimeStep::Secs(v) => now = now.add_nanos(u64::from(v) * 1_000_000_000),
            TimeStep::Minutes(v) => now = now.add_nanos(u64::from(v) * 60_000_000_000),
            TimeStep::Hours(v) => now = now.add_nanos(u64::from(v) * 3_600_000_000_000),
            TimeStep::BackMillis(v) => now = Time(now.0.saturating_sub(u64::from(v) * 1_000_000)),
            TimeStep::At(t) => now = Time(t),
            TimeStep::Expire => {
                if let Some(t) = e.poll_timeout() {
                    e.handle_timeout(t);
                    slow.handle_timeout(t);
                    if let Some(n) = e.poll_timeout() {
                        assert!(
                            n > e.now(),
                            "timeout {n:?} still due after handle_timeout({t:?}) at {:?}",
                            e.now()
                        );
                    }
                    now = now.max(t);
                }
            }
            TimeStep::Views => {
                views(&mut e, !reparsed);
                reparsed = true;
            }
        }
        now = Time(now.0.min(clock_max()));
        let ip = match &step.pkt {
            Pkt::Raw(b) => b.clone(),
            Pkt::V4(h, b) => build_v4(h, b, &mut w),
            Pkt::V6(h, b) => build_v6(h, b, &mut w),
            Pkt::Again { back, flip } => {
                if w.history.is_empty() {
                    continue;
                }
                let mut d = w.history[w.history.len() - 1 - usize::from(*back) % w.history.len()].clone();
                if let (Some((at, b)), false) = (flip, d.is_empty()) {
                    let at = usize::from(*at) % d.len();
                    d[at] ^= *b;
                }
                d
            }
        };
        let before = e.stats().packets;
        let deliver = |e: &mut Engine| match &step.delivery {
            Delivery::Ip(t) => e.handle_ip(now, &ip, pkttype(*t)),
            Delivery::Ethernet { dst, vlans } => {
                let mut f = match dst % 4 {
                    0 => vec![0x02, 0, 0, 0, 0, 1],
                    1 => vec![0xff; 6],
                    2 => vec![0x01, 0, 0x5e, 0, 0, 1],
                    _ => vec![0x33, 0x33, 0, 0, 0, 1],
                };
                f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2]);
                for _ in 0..vlans % 3 {
                    f.extend_from_slice(&[0x81, 0x00, 0, 7]);
                }
                let et: u16 = if ip.first().is_some_and(|b| b >> 4 == 6) { 0x86dd } else { 0x0800 };
                f.extend_from_slice(&et.to_be_bytes());
                f.extend_from_slice(&ip);
                e.handle_packet(now, 1, &f)
            }
            Delivery::Sll { pkttype } => {
                let mut f = vec![0, pkttype % 6, 0, 1, 0, 6, 2, 0, 0, 0, 0, 3, 0, 0];
                let et: u16 = if ip.first().is_some_and(|b| b >> 4 == 6) { 0x86dd } else { 0x0800 };
                f.extend_from_slice(&et.to_be_bytes());
                f.extend_from_slice(&ip);
                e.handle_packet(now, 113, &f)
            }
            Delivery::Link { linktype, header } => {
                let lt = LINKTYPES[usize::from(*linktype) % LINKTYPES.len()];
                let mut f: Vec<u8> = header.iter().copied().take(64).collect();
                f.extend_from_slice(&ip);
                e.handle_packet(now, lt, &f)
            }
            Delivery::Frame { linktype, wire_len } => e.handle_packet_on_wire(now, *linktype, &ip, *wire_len),
            Delivery::Snap { keep } => {
                let keep = usize::from(*keep).min(ip.len());
                e.handle_packet_on_wire(now, 101, &ip[..keep], ip.len() as u32)
            }
        };
        let d = deliver(&mut e);
        assert_eq!(d, deliver(&mut slow), "packet {i}: the fast path changed the decision");
        assert_eq!(e.stats().packets, before + 1, "packet {i}: not exactly one decision");
        if d.disposition == Disposition::Filtered {
            // Conntrack itself may drop (table full) before any table sees the packet: no ctstate then.
            assert!(d.verdict.is_some(), "packet {i}: filtered without a verdict: {d:?}");
            assert!(d.ctstate.is_some() || d.ct_dropped, "packet {i}: filtered without a ctstate: {d:?}");
        }
        if d.ct_dropped {
            assert_eq!(d.verdict, Some(engine::Verdict::Drop), "packet {i}: conntrack dropped but {d:?}");
        }
        let ct = e.conntrack();
        if max != 0 {
            assert!(ct.len() <= max as usize, "packet {i}: {} entries > nf_conntrack_max {max}", ct.len());
            assert!(
                ct.count() <= max as usize,
                "packet {i}: {} allocated > nf_conntrack_max {max}",
                ct.count()
            );
        }
        // Keep the event queue from growing without bound over long inputs.
        while e.poll_event().is_some() {}
        while slow.poll_event().is_some() {}
    }
    assert_eq!(e.rule_state(), slow.rule_state(), "the fast path changed the counters");
    assert_eq!(e.ruleset6().map(|r| r.1), slow.ruleset6().map(|r| r.1), "the fast path changed the counters");
    let table = |e: &Engine| {
        let mut t = String::new();
        conntrack::write_conntrack_l_extended(e.conntrack(), e.now(), &mut t).expect("conntrack -L");
        t
    };
    assert_eq!(table(&e), table(&slow), "the fast path changed the table");
    views(&mut e, false);
}

/// Render every view; `reparse`: also print the rulesets with their counters and parse them again
/// (costly: once per run at most).
fn views(e: &mut Engine, reparse: bool) {
    let now = e.now();
    let ct = e.conntrack();
    let mut s = String::new();
    conntrack::write_proc(ct, now, &mut s).expect("proc");
    // One line per entry alive at `now` (expired entries not reaped yet are not listed).
    let alive = ct.iter().filter(|c| !c.is_expired(now)).count();
    assert_eq!(s.lines().count(), alive, "/proc/net/nf_conntrack lines vs entries");
    assert!(alive <= ct.len());
    s.clear();
    conntrack::write_conntrack_l(ct, now, &mut s).expect("conntrack -L");
    s.clear();
    conntrack::write_conntrack_l_extended(ct, now, &mut s).expect("conntrack -L -o extended");
    s.clear();
    conntrack::write_proc_expect(ct, now, &mut s).expect("proc expect");
    s.clear();
    conntrack::write_conntrack_l_expect(ct, now, &mut s).expect("conntrack -L expect");
    s.clear();
    conntrack::write_stats_conntrack_s(ct, &mut s).expect("conntrack -S");
    s.clear();
    conntrack::write_proc_stat(ct, &mut s).expect("proc stat");
    s.clear();
    while let Some(ev) = e.poll_event() {
        conntrack::write_event(&ev, &mut s).expect("event");
    }
    if !reparse {
        return;
    }
    let saved = e.ruleset().to_save_string(e.rule_state(), true);
    let again = rules::parse(&saved).expect("iptables-save -c output parses");
    assert_eq!(again.rule_count(), e.ruleset().rule_count());
    if let Some((rs6, st6)) = e.ruleset6() {
        let saved6 = rs6.to_save_string(st6, true);
        rules::parse_family(&saved6, rules::Family::V6).expect("ip6tables-save -c output parses");
    }
}

/// Capture mode: the records of a pcap / pcapng (the seeds are real captures) replayed at their
/// own times, with a setup chosen by the file's length (the helpers rulesets most of the time).
fn from_capture(data: &[u8]) -> Option<Input> {
    let cap = wire::parse_capture(data).ok()?;
    let sel = data.len() as u8;
    let setup = Setup {
        ruleset: sel % 3,
        ruleset6: sel / 4 % 2,
        forwarding: sel & 8 == 0,
        max: if sel & 16 == 0 { 255 } else { 7 },
        loose: false,
        liberal: false,
        checksum: false,
        tracing: sel & 32 != 0,
        small_frag_mem: false,
        buckets: 2,
    };
    let steps = cap
        .records
        .into_iter()
        .map(|r| Step {
            time: TimeStep::At(r.ts.0),
            delivery: Delivery::Frame { linktype: r.linktype, wire_len: r.origlen },
            pkt: Pkt::Raw(r.data),
        })
        .collect();
    Some(Input { setup, steps })
}

fuzz_target!(|data: &[u8]| {
    let capture = matches!(
        data.get(..4),
        Some(
            [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0xc3, 0xd4]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x0a, 0x0d, 0x0d, 0x0a]
        )
    );
    let input = if capture {
        from_capture(data)
    } else {
        Input::arbitrary_take_rest(arbitrary::Unstructured::new(data)).ok()
    };
    if let Some(input) = input {
        if std::env::var_os("STATEWALL_FUZZ_PRINT").is_some() {
            // Triage: show the decoded steps of the input being run.
            eprintln!("{input:#?}");
        }
        run(&input);
    }
});
