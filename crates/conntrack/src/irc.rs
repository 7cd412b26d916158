//! The IRC DCC parser (reference §8.5; Linux 6.18 `nf_conntrack_irc.c`, behaviour only).
//!
//! Contract ([`dcc_parse`]), for one original-direction (client → server) TCP payload:
//! - At most the first [`MAX_SEARCH_SIZE`] (4095) bytes are looked at.
//! - Leading spaces, CR and LF are skipped while more than 10 bytes remain; if more than 10 bytes
//!   remain then, the text must start with `PRIVMSG ` (case-insensitive), else nothing is parsed.
//! - Then, while more than 26 bytes remain: the first ` :` found must be followed directly by
//!   `\1DCC ` (else the search ends); after it, each of `SEND `, `CHAT `, `MOVE `, `TSEND `,
//!   `SCHAT ` (case-sensitive, tried in that order, each at the position where the previous match
//!   left off) introduces `<argument> <ip> <port>`: the argument is skipped up to the first space
//!   (the space must come while at least 12 bytes remain after it), a `\n` must follow somewhere in
//!   the payload, the IP is a decimal number (the address as one 32-bit integer, accumulated
//!   modulo 2^32 like `simple_strtoul` truncated to 32 bits), then spaces, then the decimal port
//!   (modulo 2^16). A command that does not parse is skipped; so is one whose IP is not the
//!   client's own address or whose port is 0 ("Forged DCC command"). The first good command
//!   wins: at most one expectation per packet.
//! - The newline check may look at the byte right after the 4095 searched bytes (the kernel
//!   reads one byte past its search window; for a linear skb that is the next payload byte), given
//!   as `beyond`.

use std::net::Ipv4Addr;

/// The kernel's search window (`MAX_SEARCH_SIZE`).
pub const MAX_SEARCH_SIZE: usize = 4095;

/// The DCC sub-commands the helper knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DccCommand {
    Send,
    Chat,
    Move,
    Tsend,
    Schat,
}

const DCC_PROTOS: [(&[u8], DccCommand); 5] = [
    (b"SEND ", DccCommand::Send),
    (b"CHAT ", DccCommand::Chat),
    (b"MOVE ", DccCommand::Move),
    (b"TSEND ", DccCommand::Tsend),
    (b"SCHAT ", DccCommand::Schat),
];

/// What the helper found in one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DccParse {
    /// No DCC command that parses.
    None,
    /// Only DCC commands naming another address than the client's, or port 0 (the kernel logs
    /// "Forged DCC command" and ignores them); the last one.
    Forged { cmd: DccCommand, addr: Ipv4Addr, port: u16 },
    /// A DCC command the kernel expects a connection for.
    Match { cmd: DccCommand, addr: Ipv4Addr, port: u16 },
}

/// Parse a client → server payload. `client` are the addresses the DCC IP may name (the
/// original-direction source and the reply-direction destination: equal without NAT); `beyond`
/// is the payload byte right after the search window, if the payload is longer than it.
pub fn dcc_parse(payload: &[u8], beyond: Option<u8>, client: [Ipv4Addr; 2]) -> DccParse {
    let data = payload.get(..payload.len().min(MAX_SEARCH_SIZE)).unwrap_or(&[]);
    let n = data.len();
    let mut p = 0usize;
    // leading whitespace
    while p + 10 < n {
        match data.get(p) {
            Some(b' ' | b'\r' | b'\n') => p += 1,
            _ => break,
        }
    }
    if p + 10 < n {
        let word = data.get(p..p + 8).unwrap_or(&[]);
        if !word.eq_ignore_ascii_case(b"PRIVMSG ") {
            return DccParse::None;
        }
        p += 8;
    }
    let mut forged = DccParse::None;
    while p + 26 < n {
        if data.get(p..p + 2) != Some(b" :") {
            p += 1;
            continue;
        }
        p += 2;
        // the message must start with the CTCP DCC marker, else the search ends
        if data.get(p..p + 5) != Some(b"\x01DCC ") {
            return forged;
        }
        p += 5;
        for (word, cmd) in DCC_PROTOS {
            if !data.get(p..).is_some_and(|d| d.starts_with(word)) {
                continue;
            }
            p += word.len();
            let Some((ip, port)) = parse_args(data, p, beyond) else { continue };
            let addr = Ipv4Addr::from(ip);
            if !client.contains(&addr) || port == 0 {
                forged = DccParse::Forged { cmd, addr, port };
                continue;
            }
            return DccParse::Match { cmd, addr, port };
        }
    }
    forged
}

/// `parse_dcc`: skip the argument to its space, require a newline up to and including the byte
/// after the window, then `<ip> <port>` in decimal.
fn parse_args(data: &[u8], start: usize, beyond: Option<u8>) -> Option<(u32, u16)> {
    let n = data.len();
    let byte = |i: usize| if i < n { data.get(i).copied() } else { beyond.filter(|_| i == n) };
    let mut q = start;
    loop {
        let c = byte(q)?;
        q += 1;
        if c == b' ' {
            break;
        }
        if q + 12 > n {
            return None;
        }
    }
    if !(q..=n).any(|i| byte(i) == Some(b'\n')) {
        return None;
    }
    let mut ip: u32 = 0;
    while let Some(d) = byte(q).filter(u8::is_ascii_digit) {
        ip = ip.wrapping_mul(10).wrapping_add(u32::from(d - b'0'));
        q += 1;
    }
    while byte(q) == Some(b' ') {
        if q >= n {
            return None;
        }
        q += 1;
    }
    let mut port: u16 = 0;
    while let Some(d) = byte(q).filter(u8::is_ascii_digit) {
        port = port.wrapping_mul(10).wrapping_add(u16::from(d - b'0'));
        q += 1;
    }
    Some((ip, port))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const C2: [Ipv4Addr; 2] = [CLIENT, CLIENT];
    /// 10.1.0.2 as the decimal DCC form.
    const IP: u32 = 167_837_698;

    fn parse(s: &[u8]) -> DccParse {
        dcc_parse(s, None, C2)
    }

    fn send(port: u16) -> DccParse {
        DccParse::Match { cmd: DccCommand::Send, addr: CLIENT, port }
    }

    #[test]
    fn accepted_forms() {
        let m = format!("PRIVMSG bob :\x01DCC SEND file.txt {IP} 5000 1234\x01\r\n");
        assert_eq!(parse(m.as_bytes()), send(5000));
        // case-insensitive PRIVMSG, leading whitespace, several blanks before the port
        let m = format!("\r\n  privmsg bob :\x01DCC CHAT chat {IP}    6000\x01\n");
        assert_eq!(parse(m.as_bytes()), DccParse::Match { cmd: DccCommand::Chat, addr: CLIENT, port: 6000 });
        for (w, cmd) in
            [("MOVE", DccCommand::Move), ("TSEND", DccCommand::Tsend), ("SCHAT", DccCommand::Schat)]
        {
            let m = format!("PRIVMSG bob :\x01DCC {w} f {IP} 7000\x01\n");
            assert_eq!(parse(m.as_bytes()), DccParse::Match { cmd, addr: CLIENT, port: 7000 }, "{w}");
        }
        // the port wraps in 16 bits, the address in 32
        let m = format!("PRIVMSG bob :\x01DCC SEND f {IP} 70000\x01\n");
        assert_eq!(parse(m.as_bytes()), send(4464));
        let m = format!("PRIVMSG bob :\x01DCC SEND f {} 5000\x01\n", u64::from(IP) + (1u64 << 32));
        assert_eq!(parse(m.as_bytes()), send(5000));
        // the first space after the command ends the argument: a quoted name with spaces fails, a
        // later well-formed command in the same message still counts
        let m = format!("PRIVMSG bob :\x01DCC SEND \"a b\" {IP} 5000\x01 x :\x01DCC SEND f {IP} 5001\x01\n");
        assert_eq!(parse(m.as_bytes()), send(5001));
    }

    #[test]
    fn forged_address_and_port_zero_are_ignored() {
        let m = b"PRIVMSG bob :\x01DCC SEND f 167837699 5000\x01\n";
        assert_eq!(
            parse(m),
            DccParse::Forged { cmd: DccCommand::Send, addr: Ipv4Addr::new(10, 1, 0, 3), port: 5000 }
        );
        let m = format!("PRIVMSG bob :\x01DCC SEND f {IP} 0\x01\n");
        assert_eq!(parse(m.as_bytes()), DccParse::Forged { cmd: DccCommand::Send, addr: CLIENT, port: 0 });
        // the NAT form: the reply destination also counts
        let m = b"PRIVMSG bob :\x01DCC SEND f 167837699 5000\x01\n";
        let r = dcc_parse(m, None, [CLIENT, Ipv4Addr::new(10, 1, 0, 3)]);
        assert!(matches!(r, DccParse::Match { port: 5000, .. }));
    }

    #[test]
    fn rejected_forms() {
        // not a PRIVMSG
        let m = format!("NOTICE bob :\x01DCC SEND file {IP} 5000\x01\n");
        assert_eq!(parse(m.as_bytes()), DccParse::None);
        // the first " :" must start the DCC (CTCP inside a PING is not a DCC)
        let m = format!("PRIVMSG bob :hello \x01DCC SEND file {IP} 5000\x01\n");
        assert_eq!(parse(m.as_bytes()), DccParse::None);
        let m = format!("PRIVMSG bob : \x01DCC SEND file {IP} 5000\x01\n");
        assert_eq!(parse(m.as_bytes()), DccParse::None);
        // lower-case sub-command
        let m = format!("PRIVMSG bob :\x01DCC send file {IP} 5000\x01\n");
        assert_eq!(parse(m.as_bytes()), DccParse::None);
        // partial line: no newline anywhere after the argument
        let m = format!("PRIVMSG bob :\x01DCC SEND file {IP} 5000\x01");
        assert_eq!(parse(m.as_bytes()), DccParse::None);
        // a newline right after the window counts (the kernel reads one byte past it)
        assert_eq!(dcc_parse(m.as_bytes(), Some(b'\n'), C2), send(5000));
        // too short: fewer than 27 bytes after PRIVMSG
        assert_eq!(parse(b"PRIVMSG b :\x01DCC SEND f 1 2\n"), DccParse::None);
        // the argument's space too close to the end
        let m = format!("PRIVMSG bob :\x01DCC SEND {} 1\n", "x".repeat(20));
        assert_eq!(parse(m.as_bytes()), DccParse::None);
        // beyond the 4095-byte window
        let m = format!("PRIVMSG bob :{}\x01DCC SEND file {IP} 5000\x01\n", "y".repeat(4100));
        assert_eq!(parse(m.as_bytes()), DccParse::None);
    }

    #[test]
    fn a_short_message_skips_the_privmsg_check() {
        // with 10 or fewer bytes left after whitespace the PRIVMSG check is skipped, but then the
        // DCC loop needs more than 26 bytes: nothing
        assert_eq!(parse(b"          \x01DCC SEND"), DccParse::None);
        assert_eq!(parse(b""), DccParse::None);
    }

    proptest::proptest! {
        #[test]
        fn dcc_parser_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), b: Option<u8>) {
            let _ = dcc_parse(&data, b, C2);
            let mut m = b"PRIVMSG x :\x01DCC SEND ".to_vec();
            m.extend_from_slice(&data);
            let _ = dcc_parse(&m, b, C2);
        }
    }
}
