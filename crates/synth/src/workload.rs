//! Benchmark workloads: many protocol-correct flows, generated fast into one contiguous buffer.
//!
//! Contract: [`workload`] returns the same bytes for the same [`WorkloadSpec`]. It models the seed host
//! 192.0.2.10 (`examples/seed/rules.v4` accepts every packet after a real rule walk):
//! - flow `i` uses protocol `mix[i % mix.len()]`;
//! - even flows are inbound (a remote client's ephemeral port → 192.0.2.10:33333), odd flows outbound
//!   (192.0.2.10 from an ephemeral port → a remote host's port 33333);
//! - remote hosts come from the benchmarking range 198.18.0.0/15 (RFC 2544), so every 5-tuple is distinct
//!   for up to [`MAX_FLOWS`] flows;
//! - a TCP flow of `k` packets is a three-way handshake (SYN with MSS, SYN/ACK, ACK), then data segments of
//!   [`PAYLOAD`] bytes alternating client → server and server → client, each acknowledging everything
//!   received, and, when `k >= 6`, a close (FIN|ACK from the client, FIN|ACK from the server, last ACK). Every
//!   segment is in window for the kernel's window tracking (RFC 793 / `tcp_in_window`);
//! - a UDP flow of `k` packets alternates client → server and server → client datagrams;
//! - flows run in waves of `concurrency` flows: within a wave the first packet of every flow comes first,
//!   then the second of every flow, and so on, so the table holds `concurrency` live flows at once;
//! - timestamps advance by the same step between consecutive packets, chosen so that `rate` new flows start
//!   per simulated second.

use wire::Time;

use crate::SynthError;

/// Bytes of payload per data segment or datagram.
pub const PAYLOAD: usize = 32;
/// Upper bound on the number of flows (distinct 5-tuples).
pub const MAX_FLOWS: usize = 100_000_000;
/// Upper bound on the number of packets (about 90 bytes of memory each).
pub const MAX_PACKETS: u64 = 200_000_000;

const OUR_IP: [u8; 4] = [192, 0, 2, 10];
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const P2P_PORT: u16 = 33333;
/// 198.18.0.0/15.
const REMOTE_BASE: u32 = 0xc612_0000;
const REMOTE_HOSTS: u64 = 1 << 17;

/// A transport protocol of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::str::FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Proto, String> {
        match s.trim() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(format!("unknown protocol {other:?} in the mix (known: tcp, udp)")),
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSpec {
    pub flows: usize,
    pub packets_per_flow: usize,
    pub mix: Vec<Proto>,
    /// Live flows at once (default: all of them).
    pub concurrency: Option<usize>,
    /// New flows per simulated second.
    pub rate: u64,
    pub seed: u64,
    pub start: Time,
}

impl Default for WorkloadSpec {
    fn default() -> WorkloadSpec {
        WorkloadSpec {
            flows: 1000,
            packets_per_flow: 8,
            mix: vec![Proto::Tcp, Proto::Udp],
            concurrency: None,
            rate: 1_000_000,
            seed: 1,
            start: crate::DEFAULT_START,
        }
    }
}

/// One frame of a [`Frames`] buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRec {
    pub ts: Time,
    pub offset: usize,
    pub len: u32,
}

/// Ethernet II frames stored back to back (one allocation, whatever the count).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Frames {
    data: Vec<u8>,
    recs: Vec<FrameRec>,
}

impl Frames {
    pub fn len(&self) -> usize {
        self.recs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }
    /// Bytes held (frames and index).
    pub fn memory_bytes(&self) -> usize {
        self.data.capacity() + self.recs.capacity() * std::mem::size_of::<FrameRec>()
    }
    pub fn push(&mut self, ts: Time, frame: &[u8]) {
        let offset = self.data.len();
        self.data.extend_from_slice(frame);
        self.recs.push(FrameRec { ts, offset, len: u32::try_from(frame.len()).unwrap_or(u32::MAX) });
    }
    /// The frames in order, with their timestamps.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (Time, &[u8])> + '_ {
        self.recs.iter().map(|r| (r.ts, self.frame(r)))
    }
    pub fn records(&self) -> &[FrameRec] {
        &self.recs
    }
    pub fn frame(&self, r: &FrameRec) -> &[u8] {
        self.data.get(r.offset..r.offset + r.len as usize).unwrap_or(&[])
    }
    /// As a classic pcap (Ethernet, microsecond timestamps).
    pub fn write_pcap(&self, out: impl std::io::Write) -> std::io::Result<()> {
        let mut w = wire::capture::PcapWriter::new(out, 1, false)?;
        for (ts, f) in self.iter() {
            w.write_packet(ts, f)?;
        }
        w.into_inner().map(|_| ())
    }
}

/// splitmix64: a fixed, seedable mixing function (no state between flows).
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One flow's endpoints and running TCP state.
struct Flow {
    proto: Proto,
    client: ([u8; 4], u16),
    server: ([u8; 4], u16),
    /// Next sequence number to send, client and server.
    seq: [u32; 2],
}

impl Flow {
    fn new(spec: &WorkloadSpec, i: usize) -> Flow {
        let proto = spec.mix.get(i % spec.mix.len().max(1)).copied().unwrap_or(Proto::Tcp);
        let i64 = i as u64;
        // An odd multiplier permutes the host numbers, so neighbouring flows use distant hosts.
        let host = (i64.wrapping_mul(0x9e37) % REMOTE_HOSTS) as u32;
        let remote = (REMOTE_BASE + host).to_be_bytes();
        let port = 1024 + ((i64 / REMOTE_HOSTS) % 64_000) as u16;
        let (client, server) = if i.is_multiple_of(2) {
            ((remote, port), (OUR_IP, P2P_PORT))
        } else {
            ((OUR_IP, port), (remote, P2P_PORT))
        };
        let r = mix64(spec.seed ^ i64.wrapping_mul(0x2545_f491_4f6c_dd1d));
        Flow { proto, client, server, seq: [r as u32, (r >> 32) as u32] }
    }

    /// Appends packet `j` of `k` of this flow to `buf`.
    fn packet(&mut self, j: usize, k: usize, buf: &mut Vec<u8>) -> Result<(), SynthError> {
        let closing = k >= 6;
        let (from_client, flags, len) = match self.proto {
            Proto::Udp => (j.is_multiple_of(2), 0u8, PAYLOAD),
            Proto::Tcp => match j {
                0 => (true, SYN, 0),
                1 => (false, SYN | ACK, 0),
                2 => (true, ACK, 0),
                _ if closing && j == k - 3 => (true, FIN | ACK, 0),
                _ if closing && j == k - 2 => (false, FIN | ACK, 0),
                _ if closing && j == k - 1 => (true, ACK, 0),
                _ => (j % 2 == 1, ACK | PSH, PAYLOAD),
            },
        };
        let (src, dst) = if from_client { (self.client, self.server) } else { (self.server, self.client) };
        let side = usize::from(!from_client);
        let (mac_src, mac_dst) = if src.0 == OUR_IP { (OUR_MAC, GW_MAC) } else { (GW_MAC, OUR_MAC) };
        let b = etherparse::PacketBuilder::ethernet2(mac_src, mac_dst).ipv4(src.0, dst.0, 64);
        let payload = [0x5au8; PAYLOAD];
        let data = payload.get(..len).unwrap_or(&[]);
        let r = match self.proto {
            Proto::Udp => b.udp(src.1, dst.1).write(buf, data),
            Proto::Tcp => {
                let seq = self.seq.get(side).copied().unwrap_or(0);
                let ack = self.seq.get(1 - side).copied().unwrap_or(0);
                let mut t = b.tcp(src.1, dst.1, seq, 64_240);
                if flags & SYN != 0 {
                    t = t.syn();
                    t = t
                        .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
                        .map_err(|e| SynthError::Build(e.to_string()))?;
                }
                if flags & ACK != 0 {
                    t = t.ack(ack);
                }
                if flags & FIN != 0 {
                    t = t.fin();
                }
                if flags & PSH != 0 {
                    t = t.psh();
                }
                // SYN and FIN each take one sequence number.
                let used = len as u32 + u32::from(flags & (SYN | FIN) != 0);
                if let Some(s) = self.seq.get_mut(side) {
                    *s = s.wrapping_add(used);
                }
                t.write(buf, data)
            }
        };
        r.map_err(|e| SynthError::Build(e.to_string()))
    }
}

const FIN: u8 = 1;
const SYN: u8 = 2;
const PSH: u8 = 8;
const ACK: u8 = 16;

/// Generates the workload (see the module docs).
pub fn workload(spec: &WorkloadSpec) -> Result<Frames, SynthError> {
    if spec.flows > MAX_FLOWS {
        return Err(SynthError::TooManyFlows { requested: spec.flows, max: MAX_FLOWS });
    }
    let k = spec.packets_per_flow;
    let total = (spec.flows as u64).saturating_mul(k as u64);
    if total > MAX_PACKETS {
        return Err(SynthError::Build(format!(
            "{} flows × {k} packets = {total} packets: more than the {MAX_PACKETS} packet limit",
            spec.flows
        )));
    }
    if spec.mix.is_empty() {
        return Err(SynthError::Build("empty protocol mix".into()));
    }
    let rate = spec.rate.max(1);
    // Nanoseconds between consecutive packets: `rate` flows of `k` packets per second.
    let step = (1_000_000_000u64 / rate.saturating_mul(k.max(1) as u64)).max(1);
    let wave = spec.concurrency.unwrap_or(spec.flows).clamp(1, spec.flows.max(1));
    let mut out = Frames {
        data: Vec::with_capacity((total as usize).saturating_mul(86)),
        recs: Vec::with_capacity(total as usize),
    };
    let mut t = spec.start.as_nanos();
    let mut frame = Vec::with_capacity(128);
    let mut first = 0;
    while first < spec.flows {
        let last = (first + wave).min(spec.flows);
        let mut flows: Vec<Flow> = (first..last).map(|i| Flow::new(spec, i)).collect();
        for j in 0..k {
            for f in &mut flows {
                frame.clear();
                f.packet(j, k, &mut frame)?;
                out.push(Time(t), &frame);
                t += step;
            }
        }
        first = last;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn spec(flows: usize, k: usize) -> WorkloadSpec {
        WorkloadSpec { flows, packets_per_flow: k, ..WorkloadSpec::default() }
    }

    #[test]
    fn sizes_order_and_determinism() {
        let a = workload(&spec(10, 8)).unwrap();
        assert_eq!(a.len(), 80);
        assert_eq!(a, workload(&spec(10, 8)).unwrap());
        let ts: Vec<Time> = a.iter().map(|(t, _)| t).collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]));
        // 1 M flows/s × 8 packets: 125 ns apart.
        assert_eq!(ts[1].nanos_since(ts[0]), 125);
        let mut other = spec(10, 8);
        other.seed = 2;
        assert_ne!(a, workload(&other).unwrap());
    }

    #[test]
    fn tcp_flow_is_a_correct_dialog_and_udp_alternates() {
        let f =
            workload(&WorkloadSpec { mix: vec![Proto::Tcp], concurrency: Some(1), ..spec(2, 8) }).unwrap();
        let pkts: Vec<_> =
            f.iter().map(|(_, b)| etherparse::SlicedPacket::from_ethernet(b).unwrap()).collect();
        let tcp = |i: usize| match &pkts[i].transport {
            Some(etherparse::TransportSlice::Tcp(t)) => t.clone(),
            _ => panic!("not tcp"),
        };
        assert!(tcp(0).syn() && !tcp(0).ack() && tcp(0).destination_port() == 33333);
        assert!(
            tcp(1).syn() && tcp(1).ack() && tcp(1).acknowledgment_number() == tcp(0).sequence_number() + 1
        );
        assert_eq!(tcp(2).acknowledgment_number(), tcp(1).sequence_number() + 1);
        assert_eq!(tcp(3).sequence_number(), tcp(2).sequence_number());
        assert_eq!(tcp(4).acknowledgment_number(), tcp(3).sequence_number() + PAYLOAD as u32);
        assert!(tcp(5).fin() && tcp(6).fin() && !tcp(7).fin());
        assert_eq!(tcp(7).acknowledgment_number(), tcp(6).sequence_number() + 1);
        // The second flow is outbound: from our host to port 33333.
        assert_eq!(tcp(8).destination_port(), 33333);
        let u = workload(&WorkloadSpec { mix: vec![Proto::Udp], ..spec(1, 3) }).unwrap();
        assert_eq!(u.len(), 3);
    }

    #[test]
    fn limits_are_errors() {
        assert!(workload(&spec(MAX_FLOWS + 1, 1)).is_err());
        assert!(workload(&spec(MAX_FLOWS, 8)).is_err());
        assert!(workload(&WorkloadSpec { mix: vec![], ..spec(1, 1) }).is_err());
        assert!("sctp".parse::<Proto>().is_err());
    }

    #[test]
    fn distinct_tuples() {
        let f = workload(&WorkloadSpec { mix: vec![Proto::Udp], ..spec(300_000, 1) }).unwrap();
        let mut seen = std::collections::HashSet::new();
        for (_, b) in f.iter() {
            assert!(seen.insert(b[26..38].to_vec()), "duplicate tuple");
        }
    }
}
