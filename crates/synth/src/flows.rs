//! The "flows" scenario: many short, independent, protocol-correct flows for benchmarks.
//!
//! Contract: `n` TCP connections of exactly 8 packets each (SYN, SYN/ACK, ACK, request, response
//! acknowledging the request, FIN|ACK from the client acknowledging the response, FIN|ACK from the
//! server, final ACK), alternating inbound (remote client → 192.0.2.10:33333) and outbound
//! (192.0.2.10 from an ephemeral port → remote:33333), plus `ceil(n/2)` UDP query/response pairs,
//! alternating inbound to :33333 and outbound from :33333. Flows start every ~500 µs (about 2000
//! new TCP connections per second), so hundreds overlap; every 5-tuple is distinct for
//! `n ≤ 14 000 000` (remote host = i mod 500, port derived from i / 500).

use crate::packet::{Trace, OUR_IP};
use crate::rng::Rng;
use crate::tcp::{CloseStyle, Conn, EndCfg, Os, Side, US};
use crate::world::{remote_pool, run_dialog, udp, Remote, Step, UdpEnd};
use crate::SynthError;
use wire::Time;

const HOSTS: usize = 500;
const P2P_PORT: u16 = 33333;

fn end(r: &Remote, port: u16) -> EndCfg {
    EndCfg { ip: r.ip, port, ttl: r.ttl, os: r.os, mss: 1460, local: false }
}

fn ours(port: u16) -> EndCfg {
    EndCfg { ip: OUR_IP, port, ttl: 64, os: Os::Linux, mss: 1460, local: true }
}

pub(crate) fn generate(seed: u64, start: Time, n: usize) -> Result<Vec<crate::Frame>, SynthError> {
    let mut rng = Rng::new(seed ^ 0xf10f_5000_0000_0000);
    let hosts = remote_pool(&mut rng, HOSTS, &[]);
    let mut tr = Trace::new();
    let mut t = Time(start.as_nanos() / US * US);
    for i in 0..n {
        let host = hosts.get(i % HOSTS).ok_or(SynthError::Internal("host pool"))?;
        let slot = (i / HOSTS) as u64;
        let (a, b) = if i % 2 == 0 {
            let rport = 10_000 + (slot % 55_000) as u16;
            (end(host, rport), ours(P2P_PORT))
        } else {
            let lport = 32_768 + (slot % 28_232) as u16;
            (ours(lport), end(host, P2P_PORT))
        };
        let mut c = Conn::new(a, b, host.rtt, &mut rng);
        let req_len = rng.range_usize(40, 600);
        let resp_len = rng.range_usize(100, 1300);
        let steps = [
            Step::Msg { from: Side::A, data: rng.bytes(req_len), think_us: rng.range(20, 400) },
            Step::Msg { from: Side::B, data: rng.bytes(resp_len), think_us: rng.range(50, 2_000) },
            Step::Close { first: Side::A, style: CloseStyle::Combined, think_us: rng.range(50, 2_000) },
        ];
        run_dialog(&mut tr, &mut c, t, &steps)?;
        if i % 2 == 0 {
            let k = i / 2;
            let host = hosts.get((k * 7 + 3) % HOSTS).ok_or(SynthError::Internal("host pool"))?;
            let peer = UdpEnd { ip: host.ip, port: 20_000 + ((k / HOSTS) % 40_000) as u16 };
            let me = UdpEnd { ip: OUR_IP, port: P2P_PORT };
            let (ql, rl) = (rng.range_usize(40, 120), rng.range_usize(40, 400));
            let q = rng.bytes(ql);
            let r = rng.bytes(rl);
            let tq = t.add_nanos(rng.range(10, 400) * US);
            if k % 2 == 0 {
                udp(&mut tr, tq, peer, me, host.ttl, rng.next_u16(), &q)?;
                udp(&mut tr, tq.add_nanos(rng.range(30, 300) * US), me, peer, 64, 0, &r)?;
            } else {
                udp(&mut tr, tq, me, peer, 64, 0, &q)?;
                let rt = tq.add_nanos(host.rtt + rng.range(30, 3_000) * US);
                udp(&mut tr, rt, peer, me, host.ttl, rng.next_u16(), &r)?;
            }
        }
        t = t.add_nanos(rng.range(300, 700) * US);
    }
    Ok(tr.finish())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::check::{check_tcp, verify_checksums};

    #[test]
    fn eight_packets_per_connection_plus_udp_pairs() {
        let frames = generate(3, crate::DEFAULT_START, 101).unwrap();
        assert_eq!(frames.len(), 101 * 8 + 51 * 2);
        for f in &frames {
            verify_checksums(&f.data).unwrap();
        }
        let reports = check_tcp(&frames).unwrap();
        assert_eq!(reports.len(), 101);
        assert!(reports.iter().all(|r| r.segments == 8 && r.closed_by_fin));
    }

    #[test]
    fn flows_interleave() {
        let frames = generate(4, crate::DEFAULT_START, 200).unwrap();
        // The first connection's final ACK comes after later connections' SYNs.
        let segs = crate::check::tcp_segments(&frames);
        let first = segs[0].src;
        let last_of_first = segs.iter().rposition(|s| s.src == first || s.dst == first).unwrap();
        let syns_before = segs[..last_of_first].iter().filter(|s| s.syn && !s.ackf).count();
        assert!(syns_before > 5, "{syns_before}");
    }

    #[test]
    fn zero_flows_is_empty() {
        assert!(generate(1, crate::DEFAULT_START, 0).unwrap().is_empty());
    }
}
