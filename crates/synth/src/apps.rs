//! Application payloads: DNS (RFC 1035), Mainline DHT KRPC (BEP 5, bencoded), BitTorrent peer wire
//! messages (BEP 3), TLS-framed records (RFC 8446 record layer, opaque contents), plain HTTP/1.1 and
//! ICMP echo data.
//!
//! Contract: every function returns a bounded buffer whose size is decided by its arguments; the
//! contents look like the real protocol on the wire (decoders such as tshark dissect them), but no
//! field is meant to be semantically meaningful beyond that.

use crate::rng::Rng;

/// DNS record types used.
pub(crate) const QTYPE_A: u16 = 1;
pub(crate) const QTYPE_AAAA: u16 = 28;

fn dns_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let l = label.as_bytes();
        let n = l.len().min(63);
        out.push(n as u8);
        out.extend_from_slice(l.get(..n).unwrap_or_default());
    }
    out.push(0);
}

/// A recursive query (RD set) for `name`/`qtype`, class IN.
pub(crate) fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    dns_name(&mut v, name);
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&[0, 1]);
    v
}

/// The answer to [`dns_query`]: NOERROR, RA set, one A record per address (name compressed as a
/// pointer to the question), or no answer (e.g. AAAA for a v4-only name).
pub(crate) fn dns_response(id: u16, name: &str, qtype: u16, addrs: &[[u8; 4]], ttl: u32) -> Vec<u8> {
    let answers: Vec<&[u8; 4]> = if qtype == QTYPE_A { addrs.iter().collect() } else { Vec::new() };
    let mut v = Vec::with_capacity(64 + 16 * answers.len());
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&[0x81, 0x80, 0, 1]);
    v.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    dns_name(&mut v, name);
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&[0, 1]);
    for a in answers {
        v.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        v.extend_from_slice(&ttl.to_be_bytes());
        v.extend_from_slice(&[0, 4]);
        v.extend_from_slice(a);
    }
    v
}

fn bstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
}

/// DHT query kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DhtQuery {
    Ping,
    FindNode,
    GetPeers,
}

/// A KRPC query: `d1:ad2:id20:..[6:target20:..|9:info_hash20:..]e1:q..1:t2:..1:y1:qe`.
pub(crate) fn dht_query(rng: &mut Rng, kind: DhtQuery, node_id: &[u8; 20], tid: [u8; 2]) -> Vec<u8> {
    let mut v = Vec::with_capacity(128);
    v.extend_from_slice(b"d1:ad2:id");
    bstr(&mut v, node_id);
    let q: &[u8] = match kind {
        DhtQuery::Ping => b"ping",
        DhtQuery::FindNode => {
            v.extend_from_slice(b"6:target");
            bstr(&mut v, &rng.bytes(20));
            b"find_node"
        }
        DhtQuery::GetPeers => {
            v.extend_from_slice(b"9:info_hash");
            bstr(&mut v, &rng.bytes(20));
            b"get_peers"
        }
    };
    v.extend_from_slice(b"e1:q");
    bstr(&mut v, q);
    v.extend_from_slice(b"1:t");
    bstr(&mut v, &tid);
    v.extend_from_slice(b"1:y1:qe");
    v
}

/// A KRPC response to a query of `kind` (compact node info: 26 bytes per node).
pub(crate) fn dht_response(rng: &mut Rng, kind: DhtQuery, node_id: &[u8; 20], tid: [u8; 2]) -> Vec<u8> {
    let mut v = Vec::with_capacity(300);
    v.extend_from_slice(b"d1:rd2:id");
    bstr(&mut v, node_id);
    match kind {
        DhtQuery::Ping => {}
        DhtQuery::FindNode => {
            v.extend_from_slice(b"5:nodes");
            let n = rng.range_usize(4, 8) * 26;
            bstr(&mut v, &rng.bytes(n));
        }
        DhtQuery::GetPeers => {
            v.extend_from_slice(b"5:nodes");
            let n = rng.range_usize(2, 8) * 26;
            bstr(&mut v, &rng.bytes(n));
            v.extend_from_slice(b"5:token");
            bstr(&mut v, &rng.bytes(8));
        }
    }
    v.extend_from_slice(b"e1:t");
    bstr(&mut v, &tid);
    v.extend_from_slice(b"1:y1:re");
    v
}

/// BitTorrent handshake (68 bytes): pstrlen, "BitTorrent protocol", reserved (DHT + extension
/// protocol bits), info_hash, peer_id.
pub(crate) fn bt_handshake(info_hash: &[u8; 20], peer_id: &[u8; 20]) -> Vec<u8> {
    let mut v = Vec::with_capacity(68);
    v.push(19);
    v.extend_from_slice(b"BitTorrent protocol");
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]);
    v.extend_from_slice(info_hash);
    v.extend_from_slice(peer_id);
    v
}

fn bt_msg(id: u8, body: &[u8]) -> Vec<u8> {
    let len = (body.len() + 1) as u32;
    let mut v = Vec::with_capacity(body.len() + 5);
    v.extend_from_slice(&len.to_be_bytes());
    v.push(id);
    v.extend_from_slice(body);
    v
}

pub(crate) fn bt_unchoke() -> Vec<u8> {
    bt_msg(1, &[])
}

pub(crate) fn bt_interested() -> Vec<u8> {
    bt_msg(2, &[])
}

pub(crate) fn bt_have(index: u32) -> Vec<u8> {
    bt_msg(4, &index.to_be_bytes())
}

/// Bitfield message with `nbytes` bytes of piece bits (mostly set).
pub(crate) fn bt_bitfield(rng: &mut Rng, nbytes: usize) -> Vec<u8> {
    let bits: Vec<u8> =
        (0..nbytes).map(|_| if rng.chance(85) { 0xff } else { rng.next_u16() as u8 }).collect();
    bt_msg(5, &bits)
}

/// Requests for `count` consecutive 16 KiB blocks of piece `index`.
pub(crate) fn bt_requests(index: u32, count: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..count {
        let mut body = Vec::with_capacity(12);
        body.extend_from_slice(&index.to_be_bytes());
        body.extend_from_slice(&(i * 16384).to_be_bytes());
        body.extend_from_slice(&16384u32.to_be_bytes());
        v.extend_from_slice(&bt_msg(6, &body));
    }
    v
}

/// The `count` piece messages answering [`bt_requests`] (13-byte header + 16 KiB each).
pub(crate) fn bt_pieces(rng: &mut Rng, index: u32, count: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..count {
        let mut body = Vec::with_capacity(16384 + 8);
        body.extend_from_slice(&index.to_be_bytes());
        body.extend_from_slice(&(i * 16384).to_be_bytes());
        body.extend_from_slice(&rng.bytes(16384));
        v.extend_from_slice(&bt_msg(7, &body));
    }
    v
}

/// TLS records of `content_type` (22 handshake, 23 application data) totalling `len` bytes on the
/// wire, each record at most 16 384 + 256 bytes of body.
pub(crate) fn tls_records(rng: &mut Rng, content_type: u8, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut left = len;
    while left > 5 {
        let body = (left - 5).min(16384 + 256);
        v.push(content_type);
        v.extend_from_slice(&[0x03, if content_type == 22 && v.len() == 1 { 0x01 } else { 0x03 }]);
        v.extend_from_slice(&(body as u16).to_be_bytes());
        v.extend_from_slice(&rng.bytes(body));
        left -= body + 5;
    }
    v.extend_from_slice(&rng.bytes(left));
    v
}

/// A ClientHello-sized first flight (517 bytes, like current browsers with padding).
pub(crate) fn tls_client_hello(rng: &mut Rng) -> Vec<u8> {
    let mut v = tls_records(rng, 22, 517);
    // Handshake type ClientHello, 3-byte length, legacy version 3.3.
    for (i, b) in [1u8, 0, 1, 0xfc, 3, 3].iter().enumerate() {
        if let Some(x) = v.get_mut(5 + i) {
            *x = *b;
        }
    }
    v
}

pub(crate) fn http_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

/// An HTTP/1.1 200 response with a `body_len`-byte HTML body.
pub(crate) fn http_response(body_len: usize) -> Vec<u8> {
    const FILLER: &[u8] = b"<p>This domain is for use in illustrative examples in documents.</p>\n";
    let mut body = Vec::with_capacity(body_len);
    body.extend_from_slice(b"<!doctype html>\n<html><head><title>Example Domain</title></head><body>\n");
    while body.len() < body_len {
        body.extend_from_slice(FILLER);
    }
    body.truncate(body_len);
    let mut v = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: {body_len}\r\nCache-Control: max-age=604800\r\nServer: ECAcc (nyd/D184)\r\nConnection: keep-alive\r\n\r\n"
    )
    .into_bytes();
    v.extend_from_slice(&body);
    v
}

/// iputils `ping` payload (56 bytes): 16-byte struct timeval, then 0x10, 0x11, ... (Linux layout
/// with 64-bit time_t seconds and microseconds).
pub(crate) fn ping_payload_linux(ts_us: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(56);
    v.extend_from_slice(&(ts_us / 1_000_000).to_le_bytes());
    v.extend_from_slice(&(ts_us % 1_000_000).to_le_bytes());
    v.extend((0x10u8..0x38).take(40));
    v
}

/// Windows `ping` payload (32 bytes "abcdefghijklmnopqrstuvwabcdefghi").
pub(crate) fn ping_payload_windows() -> Vec<u8> {
    b"abcdefghijklmnopqrstuvwabcdefghi".to_vec()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn dns_query_and_answer_layout() {
        let q = dns_query(0xbeef, "example.com", QTYPE_A);
        assert_eq!(&q[..4], &[0xbe, 0xef, 0x01, 0x00]);
        assert_eq!(&q[12..25], b"\x07example\x03com\x00");
        assert_eq!(q.len(), 12 + 13 + 4);
        let r = dns_response(0xbeef, "example.com", QTYPE_A, &[[93, 184, 215, 14]], 300);
        assert_eq!(&r[6..8], &[0, 1]);
        // The question is copied verbatim; the answer ends with the address.
        assert_eq!(&r[12..29], &q[12..29]);
        assert_eq!(&r[r.len() - 4..], &[93, 184, 215, 14]);
        let r6 = dns_response(1, "example.com", QTYPE_AAAA, &[[1, 2, 3, 4]], 300);
        assert_eq!(&r6[6..8], &[0, 0]);
    }

    #[test]
    fn dht_messages_are_bencoded_dicts() {
        let mut rng = Rng::new(1);
        let id = [7u8; 20];
        let q = dht_query(&mut rng, DhtQuery::Ping, &id, *b"aa");
        assert!(q.starts_with(b"d1:ad2:id20:"));
        assert!(q.ends_with(b"e1:q4:ping1:t2:aa1:y1:qe"));
        let r = dht_response(&mut rng, DhtQuery::FindNode, &id, *b"aa");
        assert!(r.ends_with(b"1:t2:aa1:y1:re"));
    }

    #[test]
    fn bittorrent_framing() {
        let h = bt_handshake(&[1; 20], &[2; 20]);
        assert_eq!(h.len(), 68);
        assert_eq!(bt_requests(3, 2).len(), 34);
        let mut rng = Rng::new(2);
        assert_eq!(bt_pieces(&mut rng, 3, 2).len(), 2 * (13 + 16384));
        assert_eq!(bt_bitfield(&mut rng, 100).len(), 105);
    }

    #[test]
    fn tls_records_have_exact_length() {
        let mut rng = Rng::new(3);
        for len in [6usize, 517, 4000, 40_000] {
            let v = tls_records(&mut rng, 23, len);
            assert_eq!(v.len(), len);
            assert_eq!(v[0], 23);
        }
        let ch = tls_client_hello(&mut rng);
        assert_eq!(&ch[..3], &[22, 3, 1]);
        assert_eq!(ch[5], 1);
    }

    #[test]
    fn http_response_has_exact_body() {
        let r = http_response(1256);
        let s = String::from_utf8(r).unwrap();
        let (_, body) = s.split_once("\r\n\r\n").unwrap();
        assert_eq!(body.len(), 1256);
        assert!(s.contains("Content-Length: 1256\r\n"));
    }

    #[test]
    fn ping_payloads() {
        assert_eq!(ping_payload_linux(1_767_225_600_123_456).len(), 56);
        assert_eq!(ping_payload_windows().len(), 32);
    }
}
