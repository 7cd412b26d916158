//! The SIP helper's message logic (`conntrack::sip::process_msg`, `tcp_message_len`) over a
//! sequence of messages on one signalling entry, with a recording [`SipCtx`] written here (the
//! trait is public, so the real entry point is fuzzed, not a stand-in).
//!
//! Input: one flag byte (IPv6 entry, TCP, EXPECTED status, whether refreshes and expectations
//! succeed, whether another entry already expects the media), then messages separated by 0xff
//! bytes (never part of SIP text, so seeds are plain messages); message `i` travels in the reply
//! direction when bit `i % 3 + 5` of the flags is set.
//!
//! Invariants: no panic; media expectations are for an even RTP port >= 1024 of class audio,
//! video or image, from the other side of the signalling to the sender's own address
//! (`sip_direct_media`); signalling expectations are for the entry's protocol and the sender's own
//! address; the CSeq remembered for INVITE is never 0; a `tcp_message_len` result is a non-empty
//! prefix of the segment.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use conntrack::sip::{process_msg, tcp_message_len, SipCtx, CLASS_AUDIO, CLASS_IMAGE};
use libfuzzer_sys::fuzz_target;

struct Ctx {
    orig: IpAddr,
    reply_src: IpAddr,
    reply: bool,
    proto: u8,
    expected: bool,
    invite: u32,
    register: u32,
    add_ok: bool,
    refresh_ok: bool,
    elsewhere: bool,
    /// Expectations currently held (media and signalling): bounded like the kernel's per-class limits.
    held: usize,
}

impl Ctx {
    fn sender(&self) -> IpAddr {
        if self.reply {
            self.reply_src
        } else {
            self.orig
        }
    }
    fn peer(&self) -> IpAddr {
        if self.reply {
            self.orig
        } else {
            self.reply_src
        }
    }
}

impl SipCtx for Ctx {
    fn src(&self, reply: bool) -> IpAddr {
        if reply {
            self.reply_src
        } else {
            self.orig
        }
    }
    fn dir_reply(&self) -> bool {
        self.reply
    }
    fn proto(&self) -> u8 {
        self.proto
    }
    fn expected(&self) -> bool {
        self.expected
    }
    fn invite_cseq(&self) -> u32 {
        self.invite
    }
    fn set_invite_cseq(&mut self, cseq: u32) {
        assert_ne!(cseq, 0, "INVITE CSeq 0 remembered");
        self.invite = cseq;
    }
    fn register_cseq(&self) -> u32 {
        self.register
    }
    fn set_register_cseq(&mut self, cseq: u32) {
        self.register = cseq;
    }
    fn flush(&mut self, _media: bool) {
        self.held = self.held.saturating_sub(1);
    }
    fn media_expected_elsewhere(&self, _src: IpAddr, _dst: IpAddr, port: u16, class: u8) -> bool {
        assert!(port >= 1024, "media port {port}");
        assert!((CLASS_AUDIO..=CLASS_IMAGE).contains(&class));
        self.elsewhere
    }
    fn expect_media(&mut self, src: IpAddr, dst: IpAddr, rtp_port: u16, class: u8) -> bool {
        assert_eq!(rtp_port % 2, 0, "RTP port {rtp_port} is odd");
        assert!(rtp_port >= 1024, "RTP port {rtp_port}");
        assert!((CLASS_AUDIO..=CLASS_IMAGE).contains(&class), "class {class}");
        assert_eq!(dst, self.sender(), "media to a third party with sip_direct_media");
        assert_eq!(src, self.peer());
        if self.add_ok {
            self.held += 2;
        }
        self.add_ok
    }
    fn expect_signalling(&mut self, src: IpAddr, dst: IpAddr, proto: u8, _port: u16) -> bool {
        assert_eq!(proto, self.proto, "signalling expectation on another protocol");
        assert_eq!(dst, self.sender(), "signalling to a third party");
        assert_eq!(src, self.peer());
        if self.add_ok {
            self.held += 1;
        }
        self.add_ok
    }
    fn refresh_signalling(&mut self, dst: IpAddr, proto: u8, _port: u16, _expires: u32) -> bool {
        assert_eq!(proto, self.proto);
        let _ = dst;
        self.refresh_ok
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let v6 = flags & 1 != 0;
    let (orig, reply_src) = if v6 {
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        )
    } else {
        (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)))
    };
    let mut ctx = Ctx {
        orig,
        reply_src,
        reply: false,
        proto: if flags & 2 != 0 { 6 } else { 17 },
        expected: flags & 4 != 0,
        invite: 0,
        register: 0,
        add_ok: flags & 8 == 0,
        refresh_ok: flags & 16 == 0,
        elsewhere: flags & 0x80 != 0 && flags & 0x40 != 0,
        held: 0,
    };
    for (i, msg) in rest.split(|&b| b == 0xff).enumerate().take(64) {
        ctx.reply = flags & (1 << (i % 3 + 5)) != 0;
        let _ = process_msg(&mut ctx, msg);
        if let Some(n) = tcp_message_len(msg) {
            // The caller slices the segment with it: never empty, never past the bytes there (a
            // huge Content-Length wraps in 32 bits as in the kernel, so it may end anywhere).
            assert!(n > 0 && n <= msg.len(), "message length {n} of a {}-byte segment", msg.len());
        }
    }
});
