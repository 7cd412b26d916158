//! The FTP helper's parser (`conntrack::helper::ftp_parse`) on arbitrary segments, both directions,
//! IPv4 and IPv6 control connections.
//!
//! Invariants: no panic; the same answer twice; commands only in the original direction, replies
//! only in the reply direction; an EPSV match names the sender's own address; an EPRT match is of
//! the connection's family (the kernel's `try_eprt` checks the protocol digit).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use conntrack::helper::{ftp_parse, FtpCommand, FtpParse};
use conntrack::Dir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, seg)) = data.split_first() else { return };
    let dir = if sel & 1 == 0 { Dir::Original } else { Dir::Reply };
    let sender = if sel & 2 == 0 {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))
    } else {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10))
    };
    let r = ftp_parse(dir, seg, sender);
    // Pure function: same input, same answer.
    assert_eq!(r, ftp_parse(dir, seg, sender));
    if let FtpParse::Match { cmd, addr, .. } = r {
        match dir {
            Dir::Original => assert!(matches!(cmd, FtpCommand::Port | FtpCommand::Eprt)),
            Dir::Reply => assert!(matches!(cmd, FtpCommand::Pasv | FtpCommand::Epsv)),
        }
        if cmd == FtpCommand::Epsv {
            assert_eq!(addr, sender);
        }
        if cmd == FtpCommand::Eprt {
            assert_eq!(addr.is_ipv4(), sender.is_ipv4(), "EPRT named {addr} on a {sender} connection");
        }
    }
});
