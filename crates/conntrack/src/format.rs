//! Table listings, byte-exact (reference §7.1, §7.2).
//!
//! Contract:
//! - [`write_proc`] writes `/proc/net/nf_conntrack` lines (`ct_seq_show`) for every confirmed entry
//!   still alive at `now`, remaining time truncated to whole seconds, `zone=` always, `use=2`.
//!   IPv6 addresses are printed like `%pI6` (eight 4-digit groups, no compression).
//! - [`write_conntrack_l`] writes `conntrack -L` lines (libnetfilter_conntrack's default output):
//!   no L3 columns, `zone=` only when non-zero, `helper=` when set, `use=1`, compressed IPv6.
//! - Entries come in the table's deterministic order (not the kernel's hash order).

use std::fmt::{self, Write};
use std::net::IpAddr;

use wire::Time;

use crate::conn::{Conn, Status};
use crate::table::Conntrack;
use crate::tuple::{
    Tuple, TupleL4, PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE,
};

/// L4 protocol name as the kernel's `/proc` prints it (`l4proto_name`).
fn proc_l4_name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
        PROTO_ICMPV6 => "icmpv6",
        PROTO_UDPLITE => "udplite",
        PROTO_GRE => "gre",
        132 => "sctp",
        _ => "unknown",
    }
}

/// L4 protocol name as libnetfilter_conntrack prints it.
fn lib_l4_name(proto: u8) -> &'static str {
    match proto {
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        PROTO_ICMP => "icmp",
        PROTO_ICMPV6 => "icmpv6",
        PROTO_UDPLITE => "udplite",
        PROTO_GRE => "gre",
        132 => "sctp",
        33 => "dccp",
        _ => "unknown",
    }
}

struct ProcAddr(IpAddr);

impl fmt::Display for ProcAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => {
                for (i, seg) in a.segments().iter().enumerate() {
                    if i > 0 {
                        f.write_char(':')?;
                    }
                    write!(f, "{seg:04x}")?;
                }
                Ok(())
            }
        }
    }
}

/// `src=.. dst=.. <l4 part> ` (trailing space), `full_v6` selects the `/proc` address style.
fn write_tuple(out: &mut dyn Write, t: &Tuple, full_v6: bool) -> fmt::Result {
    if full_v6 {
        write!(out, "src={} dst={} ", ProcAddr(t.src), ProcAddr(t.dst))?;
    } else {
        write!(out, "src={} dst={} ", t.src, t.dst)?;
    }
    match (t.proto, t.l4) {
        (PROTO_GRE, TupleL4::Ports { sport, dport }) => {
            write!(out, "srckey={sport:#x} dstkey={dport:#x} ")
        }
        (_, TupleL4::Ports { sport, dport }) => write!(out, "sport={sport} dport={dport} "),
        (_, TupleL4::Icmp { ty, code, id }) => write!(out, "type={ty} code={code} id={id} "),
        (_, TupleL4::None) => Ok(()),
    }
}

fn write_counter(out: &mut dyn Write, c: &Conn, dir: usize) -> fmt::Result {
    if let Some(counters) = c.counters() {
        if let Some(k) = counters.get(dir) {
            write!(out, "packets={} bytes={} ", k.packets, k.bytes)?;
        }
    }
    Ok(())
}

fn write_flag(out: &mut dyn Write, s: Status) -> fmt::Result {
    if s.contains(Status::HW_OFFLOAD) {
        out.write_str("[HW_OFFLOAD] ")
    } else if s.contains(Status::OFFLOAD) {
        out.write_str("[OFFLOAD] ")
    } else if s.assured() {
        out.write_str("[ASSURED] ")
    } else {
        Ok(())
    }
}

/// One `/proc/net/nf_conntrack` line for `c` at `now` (with the newline).
pub fn write_proc_line(c: &Conn, now: Time, out: &mut dyn Write) -> fmt::Result {
    let (l3, l3num) = match c.orig().src {
        IpAddr::V4(_) => ("ipv4", 2),
        IpAddr::V6(_) => ("ipv6", 10),
    };
    let proto = c.l4proto();
    write!(out, "{l3:<8} {l3num} {:<8} {proto} ", proc_l4_name(proto))?;
    if !c.status().contains(Status::OFFLOAD) {
        write!(out, "{} ", c.remaining_secs(now))?;
    }
    if let Some(s) = c.tcp_state() {
        write!(out, "{s} ")?;
    }
    if let Some((t, st)) = c.gre_timeouts() {
        write!(out, "timeout={t}, stream_timeout={st} ")?;
    }
    write_tuple(out, c.orig(), true)?;
    write_counter(out, c, 0)?;
    if !c.status().seen_reply() {
        out.write_str("[UNREPLIED] ")?;
    }
    write_tuple(out, c.reply(), true)?;
    write_counter(out, c, 1)?;
    write_flag(out, c.status())?;
    write!(out, "mark={} ", c.mark())?;
    write!(out, "zone={} ", c.zone())?;
    if let Some(start) = c.timestamp_start() {
        write!(out, "delta-time={} ", now.nanos_since(start) / Time::NANOS_PER_SEC)?;
    }
    out.write_str("use=2\n")
}

/// One `conntrack -L` line for `c` at `now` (with the newline).
pub fn write_conntrack_l_line(c: &Conn, now: Time, out: &mut dyn Write) -> fmt::Result {
    let proto = c.l4proto();
    write!(out, "{:<8} {proto} ", lib_l4_name(proto))?;
    write!(out, "{} ", c.remaining_secs(now))?;
    if let Some(s) = c.tcp_state() {
        write!(out, "{s} ")?;
    }
    write_tuple(out, c.orig(), false)?;
    write_counter(out, c, 0)?;
    if !c.status().seen_reply() {
        out.write_str("[UNREPLIED] ")?;
    }
    write_tuple(out, c.reply(), false)?;
    write_counter(out, c, 1)?;
    write_flag(out, c.status())?;
    write!(out, "mark={} ", c.mark())?;
    if c.zone() != 0 {
        write!(out, "zone={} ", c.zone())?;
    }
    if let Some(start) = c.timestamp_start() {
        // libnetfilter_conntrack: whole wall-clock seconds now minus whole seconds at start
        let delta = (now.0 / Time::NANOS_PER_SEC).saturating_sub(start.0 / Time::NANOS_PER_SEC);
        write!(out, "delta-time={delta} ")?;
    }
    if let Some(h) = c.helper() {
        write!(out, "helper={h} ")?;
    }
    out.write_str("use=1\n")
}

/// `/proc/net/nf_conntrack` for every confirmed entry alive at `now`.
pub fn write_proc(ct: &Conntrack, now: Time, out: &mut dyn Write) -> fmt::Result {
    for c in ct.iter().filter(|c| !c.is_expired(now)) {
        write_proc_line(c, now, out)?;
    }
    Ok(())
}

/// `conntrack -L` for every confirmed entry alive at `now` (the stderr trailer is not included).
pub fn write_conntrack_l(ct: &Conntrack, now: Time, out: &mut dyn Write) -> fmt::Result {
    for c in ct.iter().filter(|c| !c.is_expired(now)) {
        write_conntrack_l_line(c, now, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::field_reassign_with_default)]
    use crate::testutil::*;
    use crate::Config;

    #[test]
    fn proc_and_list_match_the_reference_udp_example() {
        // reference §9 T1: one unanswered datagram, read back a fraction of a second later
        let mut lab = Lab::new();
        lab.pass(0.0, &udp(A, 4000, B, 5003, b"x"));
        assert_eq!(
            lab.proc(0.3),
            "ipv4     2 udp      17 29 src=10.99.0.1 dst=10.99.0.2 sport=4000 dport=5003 [UNREPLIED] src=10.99.0.2 dst=10.99.0.1 sport=5003 dport=4000 mark=0 zone=0 use=2\n"
        );
        assert_eq!(
            lab.list(0.3),
            "udp      17 29 src=10.99.0.1 dst=10.99.0.2 sport=4000 dport=5003 [UNREPLIED] src=10.99.0.2 dst=10.99.0.1 sport=5003 dport=4000 mark=0 use=1\n"
        );
        // expired entries are not listed even before they are reaped
        assert_eq!(lab.proc(30.0), "");
    }

    #[test]
    fn list_with_accounting_and_timestamp() {
        // reference §9 T7b (conntrack -L form)
        let mut cfg = Config::default();
        cfg.acct = true;
        cfg.timestamp = true;
        let mut lab = Lab::with(cfg);
        lab.pass(0.0, &udp(A, 4444, B, 6001, b"hello"));
        lab.pass(0.5, &udp(A, 4444, B, 6001, b"hello world"));
        assert_eq!(
            lab.list(1.9),
            "udp      17 28 src=10.99.0.1 dst=10.99.0.2 sport=4444 dport=6001 packets=2 bytes=72 [UNREPLIED] src=10.99.0.2 dst=10.99.0.1 sport=6001 dport=4444 packets=0 bytes=0 mark=0 delta-time=1 use=1\n"
        );
    }

    fn udp6(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&9u16.to_be_bytes());
        u.extend_from_slice(&[0, 0, b'x']);
        let c = wire::checksum::l4_checksum_v6(src, dst, 17, &u);
        u[6] = (c >> 8) as u8;
        u[7] = c as u8;
        let mut b = vec![0x60, 0, 0, 0, 0, u.len() as u8, 17, 64];
        b.extend_from_slice(&src.octets());
        b.extend_from_slice(&dst.octets());
        b.extend_from_slice(&u);
        b
    }

    #[test]
    fn ipv6_addresses_are_full_in_proc_and_compressed_in_list() {
        let a: std::net::Ipv6Addr = "fd99::1".parse().unwrap();
        let b: std::net::Ipv6Addr = "fd99::2".parse().unwrap();
        let mut lab = Lab::new();
        lab.pass(0.0, &udp6(a, b, 4000, 53));
        assert_eq!(
            lab.proc(0.5),
            "ipv6     10 udp      17 29 src=fd99:0000:0000:0000:0000:0000:0000:0001 dst=fd99:0000:0000:0000:0000:0000:0000:0002 sport=4000 dport=53 [UNREPLIED] src=fd99:0000:0000:0000:0000:0000:0000:0002 dst=fd99:0000:0000:0000:0000:0000:0000:0001 sport=53 dport=4000 mark=0 zone=0 use=2\n"
        );
        assert_eq!(
            lab.list(0.5),
            "udp      17 29 src=fd99::1 dst=fd99::2 sport=4000 dport=53 [UNREPLIED] src=fd99::2 dst=fd99::1 sport=53 dport=4000 mark=0 use=1\n"
        );
    }
}
