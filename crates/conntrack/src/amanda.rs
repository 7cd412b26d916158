//! The Amanda parser (Linux 6.18 `nf_conntrack_amanda.c`, behaviour only).
//!
//! Contract ([`amanda_parse`]), for one reply-direction (client → server) UDP payload of an
//! Amanda control entry:
//! - The first `CONNECT ` anywhere in the payload starts the port list, which ends at the first
//!   `\n` after it (no newline: nothing).
//! - Within that line, the first `DATA `, `MESG ` and `INDEX ` (case-sensitive, each searched from
//!   the start of the line, in that order) are each followed by a decimal port: at most 5
//!   characters up to the end of the line are read, the digits among their start are the number,
//!   truncated to 16 bits. A port that comes out 0 (no digits, `0`, `65536`) ends the list: the
//!   remaining keywords are not looked at. A missing keyword is skipped.
//! - Each port found is a TCP expectation from the original-direction source (the Amanda server)
//!   to the original-direction destination and that port (done by the caller).

/// Which Amanda channel a port is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmandaChannel {
    Data,
    Mesg,
    Index,
}

const KEYS: [(&[u8], AmandaChannel); 3] =
    [(b"DATA ", AmandaChannel::Data), (b"MESG ", AmandaChannel::Mesg), (b"INDEX ", AmandaChannel::Index)];

/// The ports announced in one payload, in the order DATA, MESG, INDEX (absent ones skipped).
pub fn amanda_parse(payload: &[u8]) -> impl Iterator<Item = (AmandaChannel, u16)> {
    let mut out = [None; 3];
    if let Some(line) = connect_line(payload) {
        for ((key, chan), slot) in KEYS.into_iter().zip(out.iter_mut()) {
            let Some(at) = find(line, key) else { continue };
            let rest = line.get(at + key.len()..).unwrap_or(&[]);
            let digits = rest.get(..rest.len().min(5)).unwrap_or(&[]);
            let mut port: u16 = 0;
            for &d in digits.iter().take_while(|d| d.is_ascii_digit()) {
                port = port.wrapping_mul(10).wrapping_add(u16::from(d - b'0'));
            }
            if port == 0 {
                break;
            }
            *slot = Some((chan, port));
        }
    }
    out.into_iter().flatten()
}

/// The bytes after the first `CONNECT ` up to (not including) the next `\n`.
fn connect_line(payload: &[u8]) -> Option<&[u8]> {
    let start = find(payload, b"CONNECT ")? + 8;
    let rest = payload.get(start..)?;
    let stop = rest.iter().position(|&c| c == b'\n')?;
    rest.get(..stop)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use AmandaChannel::*;

    fn ports(s: &[u8]) -> Vec<(AmandaChannel, u16)> {
        amanda_parse(s).collect()
    }

    #[test]
    fn accepted_forms() {
        let rep = b"Amanda 2.4 REP HANDLE 000-00000000 SEQ 1\nCONNECT DATA 50001 MESG 50002 INDEX 50003\nOPTIONS features=1;\n";
        assert_eq!(ports(rep), vec![(Data, 50001), (Mesg, 50002), (Index, 50003)]);
        // any order on the line, missing keywords skipped
        assert_eq!(ports(b"CONNECT INDEX 7 DATA 9\n"), vec![(Data, 9), (Index, 7)]);
        assert_eq!(ports(b"xxCONNECT MESG 1234\n"), vec![(Mesg, 1234)]);
        // five characters at most, truncated to 16 bits
        assert_eq!(ports(b"CONNECT DATA 123456\n"), vec![(Data, 12345)]);
        assert_eq!(ports(b"CONNECT DATA 70000\n"), vec![(Data, 4464)]);
        // digits end at the first non-digit
        assert_eq!(ports(b"CONNECT DATA 12a45 MESG 3\n"), vec![(Data, 12), (Mesg, 3)]);
    }

    #[test]
    fn rejected_forms() {
        // no newline after CONNECT
        assert!(ports(b"CONNECT DATA 50001").is_empty());
        // keywords after the newline do not count
        assert!(ports(b"CONNECT \nDATA 50001\n").is_empty());
        // case-sensitive
        assert!(ports(b"connect DATA 1\n").is_empty());
        assert!(ports(b"CONNECT data 1\n").is_empty());
        // port 0 (or no digits, or 65536) ends the list
        assert_eq!(ports(b"CONNECT DATA 0 MESG 5 INDEX 6\n"), vec![]);
        assert_eq!(ports(b"CONNECT DATA x MESG 5\n"), vec![]);
        assert_eq!(ports(b"CONNECT DATA 7 MESG 65536 INDEX 6\n"), vec![(Data, 7)]);
        // the port at the very end of the line
        assert!(ports(b"CONNECT DATA \n").is_empty());
        assert!(ports(b"").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn amanda_parser_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = ports(&data);
            let mut m = b"CONNECT DATA ".to_vec();
            m.extend_from_slice(&data);
            assert!(ports(&m).len() <= 3);
        }
    }
}
