//! Table listings, byte-exact (reference §7.1, §7.2).
//!
//! Contract:
//! - [`write_proc`] writes `/proc/net/nf_conntrack` lines (`ct_seq_show`) for every confirmed entry
//!   still alive at `now`, remaining time truncated to whole seconds, `zone=` always, `use=2`.
//!   IPv6 addresses are printed like `%pI6` (eight 4-digit groups, no compression).
//! - [`write_conntrack_l`] writes `conntrack -L` lines (libnetfilter_conntrack's default output):
//!   no L3 columns, `zone=` only when non-zero, `helper=` when set, `use=1`, compressed IPv6.
//! - [`write_conntrack_l_extended`]: `conntrack -L -o extended` (the same with the L3 columns).
//! - `zone-orig=N` / `zone-reply=N` follow the tuple of their direction; `zone=N` (direction-less
//!   zones) comes after the mark (always in `/proc`, only when non-zero in `conntrack -L`).
//! - [`write_stats_conntrack_s`] / [`write_proc_stat`]: `conntrack -S` and `/proc/net/stat/nf_conntrack`.
//! - [`write_event`]: a `conntrack -E -o timestamp` line. Event messages carry no `use=`, the mark only
//!   when non-zero (or just changed), and counters / `delta-time` only in DESTROY messages.
//! - [`write_proc_expect`] / [`write_conntrack_l_expect`]: `/proc/net/nf_conntrack_expect` and
//!   `conntrack -L expect` (reference §7.2), oldest expectation first.
//! - Entries come in the table's deterministic order (not the kernel's hash order).

use std::fmt::{self, Write};
use std::net::IpAddr;

use wire::Time;

use crate::conn::{Conn, Dir, Status, ZoneDir};
use crate::event::{Event, EventKind};
use crate::expect::Expectation;
use crate::table::Conntrack;
use crate::tuple::{
    Tuple, TupleL4, PROTO_GRE, PROTO_ICMP, PROTO_ICMPV6, PROTO_SCTP, PROTO_TCP, PROTO_UDP, PROTO_UDPLITE,
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
        PROTO_SCTP => "sctp",
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
        PROTO_SCTP => "sctp",
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

/// `zone-orig=N ` / `zone-reply=N ` after the tuple of `dir` when the zone is bound to that
/// direction only. `/proc` (`ct_show_zone`) prints it even for id 0; netlink omits id 0.
fn write_dir_zone(out: &mut dyn Write, c: &Conn, dir: Dir, proc_style: bool) -> fmt::Result {
    if c.zone() == 0 && !proc_style {
        return Ok(());
    }
    match (c.zone_dir(), dir) {
        (ZoneDir::Orig, Dir::Original) => write!(out, "zone-orig={} ", c.zone()),
        (ZoneDir::Reply, Dir::Reply) => write!(out, "zone-reply={} ", c.zone()),
        _ => Ok(()),
    }
}

fn l3_columns(c: &Conn) -> (&'static str, u8) {
    match c.orig().src {
        IpAddr::V4(_) => ("ipv4", 2),
        IpAddr::V6(_) => ("ipv6", 10),
    }
}

/// `delta-time` as libnetfilter_conntrack computes it: whole seconds of the stop time (or of now)
/// minus whole seconds of the start time.
fn lib_delta(start: Time, stop: Time) -> u64 {
    (stop.0 / Time::NANOS_PER_SEC).saturating_sub(start.0 / Time::NANOS_PER_SEC)
}

/// One `/proc/net/nf_conntrack` line for `c` at `now` (with the newline).
pub fn write_proc_line(c: &Conn, now: Time, out: &mut dyn Write) -> fmt::Result {
    let (l3, l3num) = l3_columns(c);
    let proto = c.l4proto();
    write!(out, "{l3:<8} {l3num} {:<8} {proto} ", proc_l4_name(proto))?;
    if !c.status().contains(Status::OFFLOAD) {
        write!(out, "{} ", c.remaining_secs(now))?;
    }
    if let Some(s) = c.proto_state_name() {
        write!(out, "{s} ")?;
    }
    if let Some((t, st)) = c.gre_timeouts() {
        write!(out, "timeout={t}, stream_timeout={st} ")?;
    }
    write_tuple(out, &c.orig(), true)?;
    write_dir_zone(out, c, Dir::Original, true)?;
    write_counter(out, c, 0)?;
    if !c.status().seen_reply() {
        out.write_str("[UNREPLIED] ")?;
    }
    write_tuple(out, &c.reply(), true)?;
    write_dir_zone(out, c, Dir::Reply, true)?;
    write_counter(out, c, 1)?;
    write_flag(out, c.status())?;
    write!(out, "mark={} ", c.mark())?;
    if c.zone_dir() == ZoneDir::Both {
        // `zone=0` included (ct_show_zone)
        write!(out, "zone={} ", c.zone())?;
    }
    if let Some(start) = c.timestamp_start() {
        write!(out, "delta-time={} ", now.nanos_since(start) / Time::NANOS_PER_SEC)?;
    }
    out.write_str("use=2\n")
}

/// What a libnetfilter_conntrack-style line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LibStyle {
    /// `conntrack -L` (`extended`: with the L3 columns, `-o extended`).
    List { extended: bool },
    /// A `conntrack -E` message.
    /// `bits`: the cached event bits (`EV_*`) delivered with the message.
    Event { kind: EventKind, bits: u8 },
}

/// A line in libnetfilter_conntrack's default format (`__snprintf_conntrack_default`), without
/// the newline and without a trailing space.
fn write_lib(c: &Conn, now: Time, style: LibStyle, out: &mut dyn Write) -> fmt::Result {
    let mut line = String::new();
    let w: &mut dyn Write = &mut line;
    let proto = c.l4proto();
    if let LibStyle::List { extended: true } = style {
        let (l3, l3num) = l3_columns(c);
        write!(w, "{l3:<8} {l3num} ")?;
    }
    write!(w, "{:<8} {proto} ", lib_l4_name(proto))?;
    let destroy = matches!(style, LibStyle::Event { kind: EventKind::Destroy, .. });
    let remaining = c.remaining_secs(now);
    // ctnetlink_dump_timeout: skipped when zero for DESTROY messages
    if !(destroy && remaining == 0) {
        write!(w, "{remaining} ")?;
    }
    // ctnetlink_conntrack_event: an UPDATE carries the protocol info only when it changed (IPCT_PROTOINFO)
    let proto_info = match style {
        LibStyle::Event { kind: EventKind::Update, bits } => bits & crate::event::EV_PROTOINFO != 0,
        _ => true,
    };
    if let Some(s) = c.proto_state_name().filter(|_| proto_info) {
        write!(w, "{s} ")?;
    }
    // counters and the timestamp are in dumps and in DESTROY events only
    let with_acct = !matches!(style, LibStyle::Event { kind: EventKind::New | EventKind::Update, .. });
    write_tuple(w, &c.orig(), false)?;
    write_dir_zone(w, c, Dir::Original, false)?;
    if with_acct {
        write_counter(w, c, 0)?;
    }
    if !c.status().seen_reply() {
        w.write_str("[UNREPLIED] ")?;
    }
    write_tuple(w, &c.reply(), false)?;
    write_dir_zone(w, c, Dir::Reply, false)?;
    if with_acct {
        write_counter(w, c, 1)?;
    }
    write_flag(w, c.status())?;
    match style {
        // dumps always carry the mark; events only when set or when it changed
        LibStyle::List { .. } => write!(w, "mark={} ", c.mark())?,
        LibStyle::Event { bits, .. } => {
            if c.mark() != 0 || bits & crate::event::EV_MARK != 0 {
                write!(w, "mark={} ", c.mark())?;
            }
        }
    }
    if c.zone_dir() == ZoneDir::Both && c.zone() != 0 {
        write!(w, "zone={} ", c.zone())?;
    }
    if let Some(start) = c.timestamp_start() {
        match style {
            LibStyle::List { .. } => write!(w, "delta-time={} ", lib_delta(start, now))?,
            LibStyle::Event { kind: EventKind::Destroy, .. } => {
                // nf_ct_delete: an expired entry's stop time is its expiry time
                let stop = if c.is_expired(now) { c.expires() } else { now };
                write!(w, "delta-time={} ", lib_delta(start, stop))?;
            }
            LibStyle::Event { .. } => {}
        }
    }
    if let Some(h) = c.helper() {
        write!(w, "helper={h} ")?;
    }
    if let LibStyle::List { .. } = style {
        w.write_str("use=1 ")?;
    }
    out.write_str(line.trim_end())
}

/// One `conntrack -L` line for `c` at `now` (with the newline).
pub fn write_conntrack_l_line(c: &Conn, now: Time, out: &mut dyn Write) -> fmt::Result {
    write_lib(c, now, LibStyle::List { extended: false }, out)?;
    out.write_char('\n')
}

/// One `conntrack -L -o extended` line for `c` at `now` (with the newline).
pub fn write_conntrack_l_extended_line(c: &Conn, now: Time, out: &mut dyn Write) -> fmt::Result {
    write_lib(c, now, LibStyle::List { extended: true }, out)?;
    out.write_char('\n')
}

/// The text of a `conntrack -E` message for `c` at `now` (no label, no timestamp, no newline).
pub(crate) fn event_text(c: &Conn, now: Time, kind: EventKind, bits: u8) -> String {
    let mut s = String::new();
    // writing into a String cannot fail
    let _ = write_lib(c, now, LibStyle::Event { kind, bits }, &mut s);
    s
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

/// `conntrack -L -o extended` for every confirmed entry alive at `now` (no stderr trailer).
pub fn write_conntrack_l_extended(ct: &Conntrack, now: Time, out: &mut dyn Write) -> fmt::Result {
    for c in ct.iter().filter(|c| !c.is_expired(now)) {
        write_conntrack_l_extended_line(c, now, out)?;
    }
    Ok(())
}

/// `print_tuple` of an expectation as `/proc/net/nf_conntrack_expect` shows it.
fn write_expect_tuple(out: &mut dyn Write, t: &Tuple, full_v6: bool) -> fmt::Result {
    write_tuple(out, t, full_v6)
}

fn expect_flags(e: &Expectation) -> Vec<&'static str> {
    let mut v = Vec::new();
    if e.flags & crate::expect::FLAG_PERMANENT != 0 {
        v.push("PERMANENT");
    }
    if e.flags & crate::expect::FLAG_INACTIVE != 0 {
        v.push("INACTIVE");
    }
    if e.flags & crate::expect::FLAG_USERSPACE != 0 {
        v.push("USERSPACE");
    }
    v
}

/// `/proc/net/nf_conntrack_expect` (`exp_seq_show`) for every expectation alive at `now`:
/// `<secs> l3proto = <n> proto=<n> <tuple> [PERMANENT][,INACTIVE][,USERSPACE] <helper>`.
pub fn write_proc_expect(ct: &Conntrack, now: Time, out: &mut dyn Write) -> fmt::Result {
    for e in ct.expectations().filter(|e| e.expires > now) {
        let l3 = if e.tuple.src.is_ipv4() { 2 } else { 10 };
        write!(out, "{} l3proto = {l3} proto={} ", e.remaining_secs(now), e.tuple.proto)?;
        write_expect_tuple(out, &e.tuple, true)?;
        let flags = expect_flags(e);
        out.write_str(&flags.join(","))?;
        if !flags.is_empty() {
            out.write_char(' ')?;
        }
        // helpers with named expectation classes print `helper/class`
        if e.helper == "sip" {
            writeln!(out, "{}/{}", e.helper, crate::sip::class_policy(e.class).2)?;
        } else {
            writeln!(out, "{}", e.helper)?;
        }
    }
    Ok(())
}

/// `conntrack -L expect` (libnetfilter_conntrack's default expectation format) for every
/// expectation alive at `now` (no stderr trailer).
pub fn write_conntrack_l_expect(ct: &Conntrack, now: Time, out: &mut dyn Write) -> fmt::Result {
    for e in ct.expectations().filter(|e| e.expires > now) {
        write_conntrack_l_expect_line(e, now, out)?;
        out.write_char('\n')?;
    }
    Ok(())
}

/// One expectation as `conntrack -L expect` and `conntrack -E expect` print it (without newline):
/// `<secs> proto=<n> <tuple> mask-src=.. mask-dst=.. [sport= dport=] master-src=.. master-dst=..
/// [sport= dport=] [PERMANENT[,INACTIVE][,USERSPACE] ]class=<n> helper=<name>`.
pub fn write_conntrack_l_expect_line(e: &Expectation, now: Time, out: &mut dyn Write) -> fmt::Result {
    write!(out, "{} proto={} ", e.remaining_secs(now), e.tuple.proto)?;
    write_tuple(out, &e.tuple, false)?;
    // the mask: source as masked, destination all ones
    let (mask_dst, sport_mask) = match e.tuple.dst {
        IpAddr::V4(_) => (IpAddr::V4(std::net::Ipv4Addr::BROADCAST), e.mask.sport),
        IpAddr::V6(_) => (IpAddr::V6(std::net::Ipv6Addr::from([0xffu8; 16])), e.mask.sport),
    };
    write!(out, "mask-src={} mask-dst={mask_dst} ", e.mask_src_addr())?;
    if let TupleL4::Ports { .. } = e.tuple.l4 {
        write!(out, "sport={sport_mask} dport=65535 ")?;
    }
    let m = &e.master_tuple;
    write!(out, "master-src={} master-dst={} ", m.src, m.dst)?;
    if let TupleL4::Ports { sport, dport } = m.l4 {
        write!(out, "sport={sport} dport={dport} ")?;
    }
    // libnetfilter_conntrack joins the flags with commas (kernel 6.18: `PERMANENT,INACTIVE class=0`)
    let flags = expect_flags(e);
    if !flags.is_empty() {
        write!(out, "{} ", flags.join(","))?;
    }
    write!(out, "class={} helper={}", e.class, e.helper)
}

/// `conntrack -S`: one line (this model has a single CPU), with the tool's trailing space.
pub fn write_stats_conntrack_s(ct: &Conntrack, out: &mut dyn Write) -> fmt::Result {
    writeln!(out, "{} ", ct.stats())
}

/// `/proc/net/stat/nf_conntrack`: the header and one line of 8-digit hex counters (`ct_cpu_seq_show`;
/// `entries` is `nf_conntrack_count`, `new`, `ignore` and `delete` are always 0).
pub fn write_proc_stat(ct: &Conntrack, out: &mut dyn Write) -> fmt::Result {
    let s = ct.stats();
    out.write_str(
        "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n",
    )?;
    let h = |v: u64| format!("{:08x}", v & 0xffff_ffff);
    writeln!(
        out,
        "{}  {} {} {} {} {} {} {} {} {} {} {} {}  {} {} {} {}",
        h(ct.count() as u64),
        h(s.clash_resolve),
        h(s.found),
        h(0),
        h(s.invalid),
        h(0),
        h(0),
        h(s.chaintoolong),
        h(s.insert),
        h(s.insert_failed),
        h(s.drop),
        h(s.early_drop),
        h(s.error),
        h(s.expect_new),
        h(s.expect_create),
        h(s.expect_delete),
        h(s.search_restart),
    )
}

/// One `conntrack -E -o timestamp` line: `[secs.usecs]\t` then the right-aligned message type
/// (`    [NEW]`, ` [UPDATE]`, `[DESTROY]`), a space and the message (with the newline).
pub fn write_event(e: &Event, out: &mut dyn Write) -> fmt::Result {
    let secs = e.time.0 / Time::NANOS_PER_SEC;
    let usecs = (e.time.0 % Time::NANOS_PER_SEC) / 1000;
    let label = match e.kind {
        EventKind::New => "[NEW]",
        EventKind::Update => "[UPDATE]",
        EventKind::Destroy => "[DESTROY]",
    };
    writeln!(out, "[{secs}.{usecs:06}]\t{label:>9} {}", e.line)
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

    #[test]
    fn update_events_carry_the_tcp_state_only_when_it_changed() {
        // ctnetlink_conntrack_event: protoinfo only with IPCT_PROTOINFO (kernel oracle: zones scenarios)
        let mut lab = Lab::new();
        lab.pass(0.0, &tcp(A, 41000, B, 8000, "S", 1000, 0).bytes());
        lab.pass(0.01, &tcp(B, 8000, A, 41000, "SA", 5000, 1001).bytes());
        lab.pass(0.02, &tcp(A, 41000, B, 8000, "A", 1001, 5001).bytes());
        lab.events();
        let orig = lab.ct.iter().next().unwrap().orig();
        let id = lab.ct.find(&orig, 0).unwrap();
        lab.ct.set_mark(id, 1);
        lab.pass(0.03, &tcp(A, 41000, B, 8000, "A", 1001, 5001).bytes());
        let ev = lab.events();
        assert_eq!(ev.len(), 1);
        assert!(ev[0].contains("[UPDATE] tcp      6 432000 src=10.99.0.1"), "{}", ev[0]);
        assert!(ev[0].contains("mark=1"), "{}", ev[0]);
    }
}

#[cfg(test)]
mod expect_format_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::expect::{ExpectMask, Expectation, FLAG_INACTIVE, FLAG_PERMANENT};
    use crate::ConnId;

    fn sip_signalling(flags: u8) -> Expectation {
        let t = |s: &str, d: &str, sp, dp| Tuple {
            src: s.parse().unwrap(),
            dst: d.parse().unwrap(),
            proto: 17,
            l4: TupleL4::Ports { sport: sp, dport: dp },
        };
        Expectation {
            tuple: t("0.0.0.0", "192.168.1.2", 0, 5060),
            mask: ExpectMask { src_addr: false, sport: 0 },
            master: ConnId(0, 0),
            master_tuple: t("192.168.1.2", "212.242.33.35", 5060, 5060),
            zone: 0,
            helper: "sip",
            class: 0,
            flags,
            expires: Time::from_secs(1_000),
            child_helper: Some("sip"),
        }
    }

    /// libnetfilter_conntrack joins the flags with commas; seen on 6.18 with a SIP REGISTER
    /// (`... PERMANENT,INACTIVE class=0 helper=sip`).
    #[test]
    fn conntrack_l_expect_joins_flags_with_commas() {
        let mut s = String::new();
        write_conntrack_l_expect_line(
            &sip_signalling(FLAG_PERMANENT | FLAG_INACTIVE),
            Time::from_secs(700),
            &mut s,
        )
        .unwrap();
        assert!(s.starts_with("300 proto=17 "), "{s}");
        assert!(s.ends_with(" PERMANENT,INACTIVE class=0 helper=sip"), "{s}");
        let mut s = String::new();
        write_conntrack_l_expect_line(&sip_signalling(0), Time::from_secs(700), &mut s).unwrap();
        assert!(s.ends_with(" sport=5060 dport=5060 class=0 helper=sip"), "{s}");
    }
}
