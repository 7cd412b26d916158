//! Frame rendering and the capture timeline.
//!
//! Contract: every frame is rendered through etherparse's `PacketBuilder`, so IPv4 header checksums and
//! TCP/UDP/ICMP checksums are always correct; the caller supplies every other field (IP id, TTL, DF,
//! TOS) explicitly so the generator can mimic the stacks involved. Frames arriving from the wire are
//! padded to the Ethernet minimum of 60 bytes (as a NIC delivers them to a capture); frames leaving our
//! host are captured before padding, exactly as `tcpdump -i eth0` shows locally generated frames.
//!
//! The [`Trace`] collects rendered frames with capture timestamps in any order; `finish` sorts them
//! stably by time, so generators can emit each conversation causally without coordinating with the
//! others (interleaving falls out of the timestamps).

use crate::SynthError;
use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv4Type, Icmpv6Type, IpHeaders, IpNumber,
    Ipv4Extensions, Ipv4Header, Ipv6Extensions, Ipv6FlowLabel, Ipv6Header, PacketBuilder, TcpHeader,
};
use wire::Time;

/// Our host's MAC (the capture is taken on its eth0).
pub(crate) const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
/// The default gateway's MAC: every remote packet enters and leaves through it.
pub(crate) const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Our host.
pub(crate) const OUR_IP: [u8; 4] = [192, 0, 2, 10];
/// The home router: default gateway and DNS resolver.
pub(crate) const GW_IP: [u8; 4] = [192, 0, 2, 1];
/// Our host's LAN-side address when it is a router (interface lan0, 10.1.0.1/24).
pub(crate) const FW_LAN_IP: [u8; 4] = [10, 1, 0, 1];
/// Our host's lan0 MAC.
pub(crate) const FW_LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];

/// True for an address of the LAN behind our host (10.1.0.0/24), our own lan0 address included.
pub(crate) fn in_lan(ip: [u8; 4]) -> bool {
    matches!(ip, [10, 1, 0, _])
}

/// The MAC of a LAN host: 02:00:00:01:<third octet>:<last octet>.
pub(crate) fn lan_host_mac(ip: [u8; 4]) -> [u8; 6] {
    let [_, _, c, d] = ip;
    [0x02, 0, 0, 0x01, c, d]
}

/// TCP flag bits as they appear in byte 13 of the header.
pub(crate) mod flags {
    pub(crate) const FIN: u8 = 0x01;
    pub(crate) const SYN: u8 = 0x02;
    pub(crate) const RST: u8 = 0x04;
    pub(crate) const PSH: u8 = 0x08;
    pub(crate) const ACK: u8 = 0x10;
    pub(crate) const URG: u8 = 0x20;
    pub(crate) const ECE: u8 = 0x40;
    pub(crate) const CWR: u8 = 0x80;
}

/// Ethernet minimum frame length without FCS.
const ETH_MIN: usize = 60;
/// Ethernet II header length.
pub(crate) const ETH_LEN: usize = 14;

/// IPv4 header fields the generator chooses per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ip4 {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub ttl: u8,
    pub id: u16,
    pub df: bool,
    /// The whole TOS byte (DSCP << 2 | ECN).
    pub tos: u8,
}

impl Ip4 {
    /// True when our host sends the packet (from 192.0.2.10 on eth0/wan0 or from 10.1.0.1 on lan0):
    /// captured unpadded.
    pub(crate) fn outbound(&self) -> bool {
        self.src == OUR_IP || self.src == FW_LAN_IP
    }

    /// Link addresses as seen on the wire on the side the source lives on: our wan frames go to
    /// the gateway, our lan0 frames to the LAN host; a LAN host's frames go to our lan0; every
    /// other source is remote and arrives from the gateway at our eth0/wan0 (also when it is
    /// addressed to a LAN host we forward it to).
    pub(crate) fn macs(&self) -> ([u8; 6], [u8; 6]) {
        if self.src == OUR_IP {
            (OUR_MAC, GW_MAC)
        } else if self.src == FW_LAN_IP {
            (FW_LAN_MAC, lan_host_mac(self.dst))
        } else if in_lan(self.src) {
            (lan_host_mac(self.src), FW_LAN_MAC)
        } else {
            (GW_MAC, OUR_MAC)
        }
    }

    fn header(&self) -> Result<Ipv4Header, SynthError> {
        let mut h = Ipv4Header::new(0, self.ttl, IpNumber(255), self.src, self.dst)
            .map_err(|e| SynthError::Build(e.to_string()))?;
        h.identification = self.id;
        h.dont_fragment = self.df;
        h.dscp = etherparse::IpDscp::try_new(self.tos >> 2).map_err(|e| SynthError::Build(e.to_string()))?;
        h.ecn = etherparse::IpEcn::try_new(self.tos & 3).map_err(|e| SynthError::Build(e.to_string()))?;
        Ok(h)
    }

    fn builder(&self) -> Result<etherparse::PacketBuilderStep<etherparse::IpHeaders>, SynthError> {
        let (s, d) = self.macs();
        Ok(PacketBuilder::ethernet2(s, d).ip(IpHeaders::Ipv4(self.header()?, Ipv4Extensions::default())))
    }

    pub(crate) fn finish(&self, mut v: Vec<u8>) -> Vec<u8> {
        if !self.outbound() && v.len() < ETH_MIN {
            v.resize(ETH_MIN, 0);
        }
        v
    }
}

fn build_err(e: impl std::fmt::Display) -> SynthError {
    SynthError::Build(e.to_string())
}

/// One TCP segment's header fields and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TcpSeg<'a> {
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
    /// Raw option bytes, already padded to a multiple of 4.
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

/// Renders an Ethernet/IPv4/TCP frame.
pub(crate) fn tcp_frame(ip: &Ip4, seg: &TcpSeg<'_>) -> Result<Vec<u8>, SynthError> {
    let mut h = TcpHeader::new(seg.sport, seg.dport, seg.seq, seg.win);
    h.acknowledgment_number = seg.ack;
    h.fin = seg.flags & flags::FIN != 0;
    h.syn = seg.flags & flags::SYN != 0;
    h.rst = seg.flags & flags::RST != 0;
    h.psh = seg.flags & flags::PSH != 0;
    h.ack = seg.flags & flags::ACK != 0;
    h.urg = seg.flags & flags::URG != 0;
    h.ece = seg.flags & flags::ECE != 0;
    h.cwr = seg.flags & flags::CWR != 0;
    h.set_options_raw(seg.options).map_err(build_err)?;
    let mut v = Vec::new();
    ip.builder()?.tcp_header(h).write_to_vec(&mut v, seg.payload).map_err(build_err)?;
    Ok(ip.finish(v))
}

/// Renders an Ethernet/IPv4/UDP frame.
pub(crate) fn udp_frame(ip: &Ip4, sport: u16, dport: u16, payload: &[u8]) -> Result<Vec<u8>, SynthError> {
    let mut v = Vec::new();
    ip.builder()?.udp(sport, dport).write_to_vec(&mut v, payload).map_err(build_err)?;
    Ok(ip.finish(v))
}

/// Renders an Ethernet/IPv4/ICMP frame; `payload` follows the 8-byte ICMP header (echo data, or the
/// quoted datagram of an error).
pub(crate) fn icmp_frame(ip: &Ip4, icmp: Icmpv4Type, payload: &[u8]) -> Result<Vec<u8>, SynthError> {
    let mut v = Vec::new();
    ip.builder()?.icmpv4(icmp).write_to_vec(&mut v, payload).map_err(build_err)?;
    Ok(ip.finish(v))
}

/// Renders an Ethernet/IPv4 frame of an arbitrary IP protocol (GRE, ESP, ...).
pub(crate) fn raw_ip_frame(ip: &Ip4, proto: u8, payload: &[u8]) -> Result<Vec<u8>, SynthError> {
    let mut v = Vec::new();
    ip.builder()?.write_to_vec(&mut v, IpNumber(proto), payload).map_err(build_err)?;
    Ok(ip.finish(v))
}

/// Renders an Ethernet ARP frame (Ethernet/IPv4 addresses).
pub(crate) fn arp_frame(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    op: ArpOperation,
    sender: ([u8; 6], [u8; 4]),
    target: ([u8; 6], [u8; 4]),
) -> Result<Vec<u8>, SynthError> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &sender.0,
        &sender.1,
        &target.0,
        &target.1,
    )
    .map_err(build_err)?;
    let mut v = Vec::new();
    PacketBuilder::ethernet2(eth_src, eth_dst).arp(arp).write_to_vec(&mut v).map_err(build_err)?;
    if eth_src != OUR_MAC && v.len() < ETH_MIN {
        v.resize(ETH_MIN, 0);
    }
    Ok(v)
}

/// Renders an Ethernet/IPv6/ICMPv6 frame with hop limit 255 (neighbour discovery).
pub(crate) fn icmpv6_frame(
    eth: ([u8; 6], [u8; 6]),
    src: [u8; 16],
    dst: [u8; 16],
    icmp: Icmpv6Type,
    payload: &[u8],
) -> Result<Vec<u8>, SynthError> {
    let ip = Ipv6Header {
        traffic_class: 0,
        flow_label: Ipv6FlowLabel::ZERO,
        payload_length: 0,
        next_header: IpNumber(58),
        hop_limit: 255,
        source: src,
        destination: dst,
    };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(eth.0, eth.1)
        .ip(IpHeaders::Ipv6(ip, Ipv6Extensions::default()))
        .icmpv6(icmp)
        .write_to_vec(&mut v, payload)
        .map_err(build_err)?;
    Ok(v)
}

/// The IPv4 datagram inside an Ethernet frame (header + payload, without link header or padding),
/// as an ICMP error would quote it.
pub(crate) fn ip_datagram(frame: &[u8]) -> Option<&[u8]> {
    let ip = frame.get(ETH_LEN..)?;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    ip.get(..total)
}

/// Capture timeline: frames with timestamps, pushed in any order.
///
/// In IPv6 mode ([`Trace::new_v6`], the "random6" scenario) every IPv4 frame pushed is translated
/// to IPv6 on the way in ([`crate::v6::translate`]); the IPv4 originals are kept so ICMP errors can
/// still be built by quoting them, and the translation then quotes the IPv6 original instead.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    frames: Vec<(Time, Vec<u8>)>,
    v6: Option<V6State>,
}

/// IPv6-mode state of a [`Trace`].
#[derive(Debug, Default)]
pub(crate) struct V6State {
    /// IPv4 original of each pushed frame (empty for frames pushed natively).
    pub orig: Vec<Vec<u8>>,
    /// Extension headers added to the translated packets of the running episode.
    pub ext: Option<crate::v6::ExtPlan>,
    /// First translation failure (reported by [`Trace::finish_checked`]).
    pub err: Option<SynthError>,
}

/// Index of a frame pushed into a [`Trace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameId(usize);

impl Trace {
    pub(crate) fn new() -> Trace {
        Trace::default()
    }

    /// Adds a frame; the timestamp is truncated to whole microseconds (pcap resolution), which
    /// keeps causally ordered packets ordered (truncation is monotonic).
    pub(crate) fn push(&mut self, ts: Time, data: Vec<u8>) -> FrameId {
        let ts = Time(ts.as_nanos() / 1_000 * 1_000);
        let data = match self.v6.take() {
            None => data,
            Some(mut st) => {
                let out = crate::v6::translate(&data, &self.frames, &st).unwrap_or_else(|e| {
                    st.err.get_or_insert(e);
                    data.clone()
                });
                st.orig.push(data);
                self.v6 = Some(st);
                out
            }
        };
        self.frames.push((ts, data));
        FrameId(self.frames.len() - 1)
    }

    /// A trace in IPv6 mode (see the type docs).
    pub(crate) fn new_v6() -> Trace {
        Trace { frames: Vec::new(), v6: Some(V6State::default()) }
    }

    /// True in IPv6 mode.
    pub(crate) fn is_v6(&self) -> bool {
        self.v6.is_some()
    }

    /// Adds a frame that is already in its final form (no translation in IPv6 mode).
    pub(crate) fn push_native(&mut self, ts: Time, data: Vec<u8>) -> FrameId {
        let ts = Time(ts.as_nanos() / 1_000 * 1_000);
        if let Some(st) = self.v6.as_mut() {
            st.orig.push(Vec::new());
        }
        self.frames.push((ts, data));
        FrameId(self.frames.len() - 1)
    }

    /// Sets (or clears) the extension headers of the running episode (IPv6 mode only).
    pub(crate) fn set_ext(&mut self, plan: Option<crate::v6::ExtPlan>) {
        if let Some(st) = self.v6.as_mut() {
            st.ext = plan;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// The id the `i`-th pushed frame got.
    pub(crate) fn id_at(&self, i: usize) -> FrameId {
        FrameId(i)
    }

    /// Bytes of the IP datagram of a pushed frame (what an ICMP error quotes).
    pub(crate) fn datagram(&self, id: FrameId) -> Result<Vec<u8>, SynthError> {
        let frame = match &self.v6 {
            Some(st) => st.orig.get(id.0),
            None => self.frames.get(id.0).map(|(_, f)| f),
        };
        frame
            .and_then(|f| ip_datagram(f))
            .map(<[u8]>::to_vec)
            .ok_or(SynthError::Internal("quoted frame is not IPv4"))
    }

    /// Drops a frame from the capture (the packet was lost before reaching the capture point).
    pub(crate) fn remove(&mut self, id: FrameId) {
        if let Some(f) = self.frames.get_mut(id.0) {
            f.1.clear();
        }
    }

    /// Moves a frame to another capture time (reordering on the path).
    pub(crate) fn retime(&mut self, id: FrameId, ts: Time) {
        if let Some(f) = self.frames.get_mut(id.0) {
            f.0 = ts;
        }
    }

    /// [`Trace::finish`], failing if an IPv6-mode translation failed.
    pub(crate) fn finish_checked(mut self) -> Result<Vec<crate::Frame>, SynthError> {
        if let Some(e) = self.v6.as_mut().and_then(|st| st.err.take()) {
            return Err(e);
        }
        Ok(self.finish())
    }

    /// Frames sorted by capture time; frames with equal timestamps keep their push order.
    pub(crate) fn finish(self) -> Vec<crate::Frame> {
        let mut v: Vec<crate::Frame> = self
            .frames
            .into_iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|(ts, data)| crate::Frame { ts, data })
            .collect();
        v.sort_by_key(|f| f.ts);
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn ip(src: [u8; 4], dst: [u8; 4]) -> Ip4 {
        Ip4 { src, dst, ttl: 64, id: 0x1234, df: true, tos: 0 }
    }

    #[test]
    fn outbound_tcp_frame_has_our_macs_and_fields() {
        let opts = [1u8, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
        let f = tcp_frame(
            &ip(OUR_IP, [198, 51, 100, 7]),
            &TcpSeg {
                sport: 40000,
                dport: 33333,
                seq: 1000,
                ack: 2000,
                flags: flags::ACK | flags::PSH,
                win: 502,
                options: &opts,
                payload: b"hello",
            },
        )
        .unwrap();
        assert_eq!(&f[0..6], &GW_MAC);
        assert_eq!(&f[6..12], &OUR_MAC);
        assert_eq!(f.len(), 14 + 20 + 32 + 5);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv4(v4)) = &p.net else { panic!("not ipv4") };
        assert_eq!(v4.header().identification(), 0x1234);
        assert!(v4.header().dont_fragment());
        let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("not tcp") };
        assert_eq!(t.sequence_number(), 1000);
        assert_eq!(t.acknowledgment_number(), 2000);
        assert!(t.psh() && t.ack() && !t.syn());
        assert_eq!(t.options(), &opts);
    }

    #[test]
    fn inbound_short_frames_are_padded_outbound_are_not() {
        let i = udp_frame(&ip([198, 51, 100, 7], OUR_IP), 1, 2, b"x").unwrap();
        assert_eq!(i.len(), 60);
        assert_eq!(&i[0..6], &OUR_MAC);
        let o = udp_frame(&ip(OUR_IP, [198, 51, 100, 7]), 1, 2, b"x").unwrap();
        assert_eq!(o.len(), 14 + 20 + 8 + 1);
        // The quoted datagram excludes the padding.
        assert_eq!(ip_datagram(&i).unwrap().len(), 29);
    }

    #[test]
    fn lan_frames_carry_the_macs_of_their_source_side() {
        let host = [10, 1, 0, 7];
        // A LAN host's packet to a remote host, as it reaches our lan0: padded, its own TTL.
        let f = udp_frame(&Ip4 { ttl: 128, ..ip(host, [203, 0, 113, 9]) }, 1, 2, b"x").unwrap();
        assert_eq!((&f[0..6], &f[6..12]), (&FW_LAN_MAC[..], &lan_host_mac(host)[..]));
        assert_eq!((f.len(), f[22]), (60, 128));
        // The answer enters from the gateway on our wan side.
        let r = udp_frame(&ip([203, 0, 113, 9], host), 2, 1, b"y").unwrap();
        assert_eq!((&r[0..6], &r[6..12]), (&OUR_MAC[..], &GW_MAC[..]));
        // Our lan0 address talks to the LAN host directly and is captured unpadded.
        let o = udp_frame(&ip(FW_LAN_IP, host), 3, 4, b"z").unwrap();
        assert_eq!((&o[0..6], &o[6..12]), (&lan_host_mac(host)[..], &FW_LAN_MAC[..]));
        assert_eq!(o.len(), 14 + 20 + 8 + 1);
        assert!(in_lan(host) && in_lan(FW_LAN_IP) && !in_lan(OUR_IP) && !in_lan([10, 1, 1, 7]));
    }

    #[test]
    fn trace_sorts_stably_by_time() {
        let mut t = Trace::new();
        t.push(Time(5_000), vec![1]);
        t.push(Time(1_000), vec![2]);
        let gone = t.push(Time(3_000), vec![9]);
        t.push(Time(5_999), vec![3]);
        t.remove(gone);
        let out = t.finish();
        let d: Vec<u8> = out.iter().map(|f| f.data[0]).collect();
        assert_eq!(d, vec![2, 1, 3]);
    }
}
