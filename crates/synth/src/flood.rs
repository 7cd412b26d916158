//! The "flood" scenario: a SYN flood against a conntrack table while established flows keep talking.
//!
//! Contract ([`FloodSpec`], defaults in brackets):
//! * Warm-up, the first simulated second: `established` [1 000] remote clients (198.51.100.0/24,
//!   203.0.113.0/24, client port 20 000 + i) connect to 192.0.2.10:33333, one every
//!   `1 s / established`: SYN, SYN/ACK, ACK, a 100-byte request and our ACK of it, 150 µs apart
//!   (no TCP options, windows 64 240, no window scaling). The final ACK of each handshake makes
//!   the entry ASSURED (SYN_RECV → ESTABLISHED).
//! * Then, for `seconds` [60] simulated seconds:
//!   - `rate` [50 000] SYNs per second to 192.0.2.10:33333, evenly spaced (whole microseconds),
//!     from spoofed sources in 198.18.0.0/15 (scrambled address and port 1 024-65 534, every
//!     (address, port) distinct; random ISN, window, TTL 40-127, IP id, no DF, an MSS option on half
//!     of them), never answered: every one is a new flow, an unreplied (non-ASSURED) conntrack entry
//!     in SYN_SENT or a packet dropped on a full table;
//!   - every established client sends, once per second (staggered by its index), a 100-byte
//!     PSH|ACK segment, acknowledged by us 100 µs later.
//! * Frames come out in timestamp order from an iterator ([`flood`]) without materialising the
//!   capture (3.1 M frames by default), deterministic in the seed like every scenario.
//!   [`crate::generate`] collects them (with `flows` as the rate), [`crate::write_pcap_stream`]
//!   streams them.
//! * Which frames are which is known from the frame alone: [`is_flood_frame`] (destination port
//!   33333 from 198.18.0.0/15).

use crate::packet::{flags, tcp_frame, Ip4, TcpSeg, OUR_IP};
use crate::rng::Rng;
use crate::{Frame, SynthError};
use wire::Time;

/// The port every flow goes to.
pub const FLOOD_PORT: u16 = 33333;
const NS_PER_SEC: u64 = 1_000_000_000;
const US: u64 = 1_000;
const REQUEST: usize = 100;
const WINDOW: u16 = 64_240;
const CLIENT_TTL: u8 = 54;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodSpec {
    pub seed: u64,
    /// First frame (rounded down to a microsecond).
    pub start: Time,
    /// New (flood) flows per simulated second, at least 1.
    pub rate: u64,
    /// Simulated seconds of flood after the one-second warm-up.
    pub seconds: u64,
    /// Established flows opened during the warm-up, at most 20 000 (distinct client ports).
    pub established: u32,
}

impl FloodSpec {
    /// The default flood: 50 000 new flows/s for 60 s against 1 000 established flows.
    pub fn new(seed: u64) -> FloodSpec {
        FloodSpec { seed, start: crate::DEFAULT_START, rate: 50_000, seconds: 60, established: 1_000 }
    }

    /// Number of frames the spec yields.
    pub fn frame_count(&self) -> u64 {
        let est = u64::from(self.established);
        est * 5 + self.rate.saturating_mul(self.seconds) + est * 2 * self.seconds
    }
}

/// True for a flood SYN produced by this scenario (Ethernet frame from 198.18.0.0/15 to :33333).
pub fn is_flood_frame(frame: &[u8]) -> bool {
    let src = frame.get(26..28);
    let dport = frame.get(36..38);
    matches!(src, Some([198, 18 | 19])) && dport == Some(&FLOOD_PORT.to_be_bytes()[..])
}

/// One established client's TCP state.
#[derive(Debug, Clone, Copy)]
struct Client {
    ip: [u8; 4],
    port: u16,
    /// Next sequence number of the client, and ours.
    seq: u32,
    our_seq: u32,
    id: u16,
    our_id: u16,
}

/// The frame iterator of a flood (see the module docs).
#[derive(Debug)]
pub struct Flood {
    spec: FloodSpec,
    rng: Rng,
    clients: Vec<Client>,
    /// The flood starts here (after the warm-up).
    flood_start: u64,
    /// Next warm-up step: client index * 5 + step.
    warm: u64,
    /// Next flood SYN index.
    syn: u64,
    /// Next established packet: ((second * established) + client) * 2 + (0 data, 1 our ACK).
    chat: u64,
    failed: bool,
}

/// The frames of `spec`, in time order.
pub fn flood(spec: &FloodSpec) -> Result<Flood, SynthError> {
    if spec.rate == 0 {
        return Err(SynthError::Build("flood rate must be at least 1 flow per second".into()));
    }
    if spec.established > 20_000 {
        return Err(SynthError::Build("at most 20000 established flows".into()));
    }
    let mut rng = Rng::new(spec.seed ^ 0xf100_d000_0000_0000);
    let clients = (0..spec.established)
        .map(|i| {
            let host = (i % 500) as u8;
            let ip = if host < 250 { [198, 51, 100, host + 1] } else { [203, 0, 113, host - 249] };
            Client {
                ip,
                port: 20_000u16.saturating_add(u16::try_from(i).unwrap_or(u16::MAX)),
                seq: rng.next_u32(),
                our_seq: rng.next_u32(),
                id: rng.next_u16(),
                our_id: rng.next_u16(),
            }
        })
        .collect();
    let start = spec.start.as_nanos() / US * US;
    Ok(Flood {
        spec: spec.clone(),
        rng,
        clients,
        flood_start: start.saturating_add(NS_PER_SEC),
        warm: 0,
        syn: 0,
        chat: 0,
        failed: false,
    })
}

impl Flood {
    fn start(&self) -> u64 {
        self.spec.start.as_nanos() / US * US
    }

    /// Spacing of the warm-up connections.
    fn warm_gap(&self) -> u64 {
        (NS_PER_SEC / u64::from(self.spec.established.max(1))) / US * US
    }

    fn warm_time(&self) -> Option<u64> {
        let est = u64::from(self.spec.established);
        (self.warm < est * 5)
            .then(|| self.start() + (self.warm / 5) * self.warm_gap() + (self.warm % 5) * 150 * US)
    }

    fn syn_time(&self) -> Option<u64> {
        let total = self.spec.rate.saturating_mul(self.spec.seconds);
        // k-th SYN at k / rate seconds, whole microseconds.
        let offset = u128::from(self.syn) * u128::from(NS_PER_SEC) / u128::from(self.spec.rate);
        let offset = u64::try_from(offset).ok()? / US * US;
        (self.syn < total).then(|| self.flood_start + offset)
    }

    fn chat_time(&self) -> Option<u64> {
        let est = u64::from(self.spec.established);
        if est == 0 || self.chat >= est * 2 * self.spec.seconds {
            return None;
        }
        let (pair, ack) = (self.chat / 2, self.chat % 2);
        let (second, client) = (pair / est, pair % est);
        Some(self.flood_start + second * NS_PER_SEC + client * self.warm_gap() + 500 * US + ack * 100 * US)
    }

    fn client_frame(&mut self, idx: usize, step: u64) -> Result<Vec<u8>, SynthError> {
        let c = self.clients.get_mut(idx).ok_or(SynthError::Internal("flood client"))?;
        let theirs = |c: &mut Client| {
            c.id = c.id.wrapping_add(1);
            Ip4 { src: c.ip, dst: OUR_IP, ttl: CLIENT_TTL, id: c.id, df: true, tos: 0 }
        };
        let ours = |c: &mut Client| {
            c.our_id = c.our_id.wrapping_add(1);
            Ip4 { src: OUR_IP, dst: c.ip, ttl: 64, id: c.our_id, df: true, tos: 0 }
        };
        let request = [0x42u8; REQUEST];
        let seg = |sport, dport, seq, ack, flags, payload| TcpSeg {
            sport,
            dport,
            seq,
            ack,
            flags,
            win: WINDOW,
            options: &[],
            payload,
        };
        let (ip, s) = match step {
            // SYN (the client's ISN is seq - 1 from here on).
            0 => {
                let ip = theirs(c);
                (ip, seg(c.port, FLOOD_PORT, c.seq, 0, flags::SYN, &[][..]))
            }
            1 => {
                let ip = ours(c);
                (
                    ip,
                    seg(
                        FLOOD_PORT,
                        c.port,
                        c.our_seq,
                        c.seq.wrapping_add(1),
                        flags::SYN | flags::ACK,
                        &[][..],
                    ),
                )
            }
            2 => {
                c.seq = c.seq.wrapping_add(1);
                c.our_seq = c.our_seq.wrapping_add(1);
                let ip = theirs(c);
                (ip, seg(c.port, FLOOD_PORT, c.seq, c.our_seq, flags::ACK, &[][..]))
            }
            // A request, then our ACK of it.
            3 => {
                let ip = theirs(c);
                let s = seg(c.port, FLOOD_PORT, c.seq, c.our_seq, flags::PSH | flags::ACK, &request[..]);
                c.seq = c.seq.wrapping_add(REQUEST as u32);
                (ip, s)
            }
            _ => {
                let ip = ours(c);
                (ip, seg(FLOOD_PORT, c.port, c.our_seq, c.seq, flags::ACK, &[][..]))
            }
        };
        tcp_frame(&ip, &s)
    }

    fn syn_frame(&mut self) -> Result<Vec<u8>, SynthError> {
        // The k-th SYN's (address, port) is unique: address = a bijective scramble of k mod 2^17, port
        // offset by k / 2^17 (fewer than 64 511 rounds for any rate * seconds below 8.4 * 10^9).
        let k = self.syn;
        let a = ((k & 0x1_ffff).wrapping_mul(0x9e37).wrapping_add(self.spec.seed)) & 0x1_ffff;
        let scatter = (a.wrapping_mul(0x2545_f491) >> 7) % 64_511;
        let sport = 1024 + ((k >> 17).wrapping_add(scatter) % 64_511) as u16;
        let src = [198, 18 | (a >> 16) as u8, (a >> 8) as u8, a as u8];
        let r = &mut self.rng;
        let ip = Ip4 { src, dst: OUR_IP, ttl: r.range(40, 128) as u8, id: r.next_u16(), df: false, tos: 0 };
        let mss = [2u8, 4, 0x05, 0xb4];
        let options: &[u8] = if r.chance(50) { &mss } else { &[] };
        let s = TcpSeg {
            sport,
            dport: FLOOD_PORT,
            seq: r.next_u32(),
            ack: 0,
            flags: flags::SYN,
            win: r.range_u16(512, 65535),
            options,
            payload: &[],
        };
        tcp_frame(&ip, &s)
    }
}

impl Iterator for Flood {
    type Item = Result<Frame, SynthError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = if let Some(t) = self.warm_time() {
            let (idx, step) = ((self.warm / 5) as usize, self.warm % 5);
            self.warm += 1;
            self.client_frame(idx, step).map(|data| Frame { ts: Time(t), data })
        } else {
            // Merge the flood and the chatter by time (chatter first on a tie).
            match (self.syn_time(), self.chat_time()) {
                (None, None) => return None,
                (Some(s), c) if c.is_none_or(|c| s < c) => {
                    self.syn += 1;
                    self.syn_frame().map(|data| Frame { ts: Time(s), data })
                }
                (_, Some(c)) => {
                    let est = u64::from(self.spec.established.max(1));
                    let (idx, step) = (((self.chat / 2) % est) as usize, 3 + self.chat % 2);
                    self.chat += 1;
                    self.client_frame(idx, step).map(|data| Frame { ts: Time(c), data })
                }
                (Some(_), None) => return None,
            }
        };
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn small() -> FloodSpec {
        FloodSpec { seed: 3, start: crate::DEFAULT_START, rate: 1_000, seconds: 3, established: 20 }
    }

    #[test]
    fn counts_order_and_kinds() {
        let spec = small();
        let frames: Vec<Frame> = flood(&spec).unwrap().map(Result::unwrap).collect();
        assert_eq!(frames.len() as u64, spec.frame_count());
        assert!(frames.windows(2).all(|w| w[0].ts <= w[1].ts), "time order");
        assert!(frames.iter().all(|f| f.ts.as_nanos() % 1_000 == 0));
        let syns: Vec<&Frame> = frames.iter().filter(|f| is_flood_frame(&f.data)).collect();
        assert_eq!(syns.len(), 3_000);
        // The flood starts after the one-second warm-up and ends within `seconds`.
        let t0 = crate::DEFAULT_START.as_nanos();
        assert!(syns.iter().all(|f| f.ts.as_nanos() >= t0 + 1_000_000_000));
        assert!(syns.iter().all(|f| f.ts.as_nanos() < t0 + 4_000_000_000));
        // Flood SYNs: SYN only, to :33333, padded to 60 bytes, every source address and port distinct.
        for f in &syns {
            assert_eq!(f.data[47], flags::SYN);
            assert_eq!(f.data.len(), 60);
        }
        let tuples: std::collections::HashSet<&[u8]> = syns.iter().map(|f| &f.data[26..36]).collect();
        assert_eq!(tuples.len(), syns.len());
        let big = FloodSpec { rate: 400_000, seconds: 1, established: 0, ..small() };
        let mut seen = std::collections::HashSet::new();
        for f in flood(&big).unwrap() {
            let f = f.unwrap();
            assert!(seen.insert([&f.data[26..30], &f.data[34..36]].concat()), "tuple repeated");
        }
        assert_eq!(seen.len(), 400_000);
        // Warm-up: 5 frames per client in the first second; then 2 per client per second.
        let warm = frames.iter().filter(|f| f.ts.as_nanos() < t0 + 1_000_000_000).count();
        assert_eq!(warm, 100);
    }

    #[test]
    fn frames_decode_and_established_sequence_numbers_follow() {
        let frames: Vec<Frame> = flood(&small()).unwrap().map(Result::unwrap).collect();
        // Client 0's segments: the SYN's seq + 1 is the first data seq, and each request advances by 100.
        let c0: Vec<wire::TcpHeader<'_>> = frames
            .iter()
            .filter_map(|f| {
                let fr = wire::link::strip_link(1, &f.data).unwrap();
                let p = wire::decode_ip(fr.ip).unwrap();
                match p.l4 {
                    wire::L4::Tcp(t) if t.sport == 20_000 => Some(t.clone()),
                    _ => None,
                }
            })
            .collect();
        assert_eq!(c0.len(), 1 + 1 + 1 + 3);
        let isn = c0[0].seq;
        assert_eq!(c0[1].seq, isn.wrapping_add(1));
        assert_eq!(c0[2].seq, isn.wrapping_add(1));
        assert_eq!(c0[3].seq, isn.wrapping_add(1 + 100));
        assert_eq!(c0[5].seq, isn.wrapping_add(1 + 300));
        assert!(wire::checksum::ipv4_header_ok(wire::link::strip_link(1, &frames[0].data).unwrap().ip));
    }

    #[test]
    fn deterministic_and_validated() {
        let a: Vec<Frame> = flood(&small()).unwrap().map(Result::unwrap).collect();
        let b: Vec<Frame> = flood(&small()).unwrap().map(Result::unwrap).collect();
        assert_eq!(a, b);
        let c: Vec<Frame> = flood(&FloodSpec { seed: 4, ..small() }).unwrap().map(Result::unwrap).collect();
        assert_ne!(a, c);
        assert!(flood(&FloodSpec { rate: 0, ..small() }).is_err());
        assert!(flood(&FloodSpec { established: 20_001, ..small() }).is_err());
        assert_eq!(FloodSpec::new(1).frame_count(), 5_000 + 3_000_000 + 120_000);
    }
}
