//! The "seed" scenario: a home host running a p2p client (see the crate docs for the inventory).

use crate::apps::{self, DhtQuery, QTYPE_A, QTYPE_AAAA};
use crate::packet::{arp_frame, icmpv6_frame, Trace, GW_IP, GW_MAC, OUR_IP, OUR_MAC};
use crate::rng::Rng;
use crate::tcp::{CloseStyle, Conn, EndCfg, Os, Side, MS, US};
use crate::world::{echo, icmp_error, remote_pool, run_dialog, udp, Quote, Remote, Step, UdpEnd};
use crate::SynthError;
use etherparse::{icmpv4::DestUnreachableHeader, ArpOperation, Icmpv4Type, Icmpv6Type};
use wire::Time;

/// The p2p client's TCP and UDP port.
pub(crate) const P2P_PORT: u16 = 33333;
/// Peer whose port-unreachable answers one of our DHT queries.
pub(crate) const UNREACH_PEER: [u8; 4] = [198, 51, 100, 77];
/// Router on the path that sends the fragmentation-needed.
pub(crate) const PMTU_ROUTER: [u8; 4] = [203, 0, 113, 1];
/// Host that scans us.
pub(crate) const SCANNER: [u8; 4] = [203, 0, 113, 66];
/// Host that pings us.
pub(crate) const PINGER: [u8; 4] = [198, 51, 100, 200];
/// A host with no DNS server that we query anyway.
pub(crate) const DEAD_RESOLVER: [u8; 4] = [198, 51, 100, 53];
/// Ports the scanner probes with SYNs.
pub(crate) const SCAN_PORTS: [u16; 20] =
    [21, 22, 23, 25, 53, 80, 110, 135, 139, 143, 443, 445, 993, 995, 1723, 3306, 3389, 5900, 8080, 8443];
/// Web servers of the browsing part.
pub(crate) const WEB: [([u8; 4], u16, &str); 4] = [
    ([93, 184, 215, 14], 443, "example.com"),
    ([151, 101, 1, 69], 443, "cdn.example.org"),
    ([140, 82, 112, 3], 443, "github.com"),
    ([93, 184, 215, 14], 80, "example.com"),
];

/// Counts per category (fixed for every seed; see the crate docs).
pub(crate) const INBOUND_TCP: usize = 15;
pub(crate) const OUTBOUND_TCP: usize = 8;
pub(crate) const UDP_IN_QUERIES: usize = 25;
pub(crate) const UDP_OUT_QUERIES: usize = 20;
pub(crate) const UDP_OUT_UNANSWERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Chatty,
    Upload,
    UploadPmtu,
    Download,
    ResetByPeer,
    ResetByUs,
}

fn secs(start: Time, s: f64) -> Time {
    // Whole microseconds: the pcap is microsecond-resolution.
    start.add_nanos((s * 1e6) as u64 * US)
}

/// Rounds a time down to a whole microsecond.
fn us_floor(t: Time) -> Time {
    Time(t.as_nanos() / US * US)
}

struct Ctx {
    tr: Trace,
    start: Time,
    node_id: [u8; 20],
    used_ports: Vec<u16>,
}

impl Ctx {
    fn ephemeral(&mut self, rng: &mut Rng) -> u16 {
        loop {
            // Linux ip_local_port_range default 32768-60999.
            let p = rng.range_u16(32768, 60999);
            if !self.used_ports.contains(&p) {
                self.used_ports.push(p);
                return p;
            }
        }
    }
}

fn remote_mss(rng: &mut Rng) -> u16 {
    if rng.chance(75) {
        1460
    } else {
        *rng.pick(&[1452u16, 1440, 1400, 1380]).unwrap_or(&1460)
    }
}

fn our_end(port: u16) -> EndCfg {
    EndCfg { ip: OUR_IP, port, ttl: 64, os: Os::Linux, mss: 1460, local: true }
}

fn remote_end(r: &Remote, port: u16, mss: u16) -> EndCfg {
    EndCfg { ip: r.ip, port, ttl: r.ttl, os: r.os, mss, local: false }
}

fn think(rng: &mut Rng, lo_us: u64, hi_us: u64) -> u64 {
    rng.range(lo_us, hi_us)
}

/// Generates the seed scenario.
pub(crate) fn generate(seed: u64, start: Time) -> Result<Vec<crate::Frame>, SynthError> {
    let start = us_floor(start);
    let mut root = Rng::new(seed ^ 0x5eed_0000_0000_0001);
    let mut node_rng = root.fork(1);
    let mut node_id = [0u8; 20];
    node_rng.fill(&mut node_id);
    let mut cx = Ctx { tr: Trace::new(), start, node_id, used_ports: Vec::new() };
    let mut pool_rng = root.fork(2);
    let exclude = [UNREACH_PEER, PMTU_ROUTER, SCANNER, PINGER, DEAD_RESOLVER];
    let pool = remote_pool(&mut pool_rng, 48, &exclude);

    stray(&mut cx, &mut root.fork(3))?;
    dns(&mut cx, &mut root.fork(4))?;
    inbound_tcp(&mut cx, &mut root.fork(5), &pool)?;
    outbound_tcp(&mut cx, &mut root.fork(6), &pool)?;
    dht(&mut cx, &mut root.fork(7), &pool)?;
    browsing(&mut cx, &mut root.fork(8))?;
    pings(&mut cx, &mut root.fork(9))?;
    scan(&mut cx, &mut root.fork(10))?;
    Ok(cx.tr.finish())
}

/// ARP exchange with the gateway and one IPv6 neighbour solicitation.
fn stray(cx: &mut Ctx, rng: &mut Rng) -> Result<(), SynthError> {
    let t = cx.start;
    let req = arp_frame(OUR_MAC, [0xff; 6], ArpOperation::REQUEST, (OUR_MAC, OUR_IP), ([0; 6], GW_IP))?;
    cx.tr.push(t, req);
    let rep = arp_frame(GW_MAC, OUR_MAC, ArpOperation::REPLY, (GW_MAC, GW_IP), (OUR_MAC, OUR_IP))?;
    cx.tr.push(t.add_nanos(rng.range(250, 600) * US), rep);
    // The router resolves our link-local address (fe80::ff:fe00:a, EUI-64 of 02:00:00:00:00:0a):
    // NS to the solicited-node group ff02::1:ff00:a, with a source link-layer address option.
    let mut src = [0u8; 16];
    src[0] = 0xfe;
    src[1] = 0x80;
    src[15] = 1;
    let mut dst = [0u8; 16];
    dst[0] = 0xff;
    dst[1] = 0x02;
    dst[11] = 1;
    dst[12] = 0xff;
    dst[15] = 0x0a;
    let mut target = [0u8; 16];
    target[0] = 0xfe;
    target[1] = 0x80;
    target[11] = 0xff;
    target[12] = 0xfe;
    target[15] = 0x0a;
    let mut body = target.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&GW_MAC);
    let ns = icmpv6_frame(
        (GW_MAC, [0x33, 0x33, 0xff, 0, 0, 0x0a]),
        src,
        dst,
        Icmpv6Type::NeighborSolicitation,
        &body,
    )?;
    cx.tr.push(secs(cx.start, 24.5 + rng.range(0, 400) as f64 / 1000.0), ns);
    Ok(())
}

/// glibc-style lookups: A and AAAA in parallel from one connected socket to the gateway, plus one
/// query to a host without a DNS server (answered by an ICMP port unreachable).
fn dns(cx: &mut Ctx, rng: &mut Rng) -> Result<(), SynthError> {
    let lookups: [(&str, f64, [u8; 4]); 5] = [
        ("router.bittorrent.com", 0.30, [198, 51, 100, 31]),
        ("dht.transmissionbt.com", 0.36, [203, 0, 113, 45]),
        ("example.com", 4.90, [93, 184, 215, 14]),
        ("cdn.example.org", 11.90, [151, 101, 1, 69]),
        ("github.com", 20.90, [140, 82, 112, 3]),
    ];
    for (name, at, addr) in lookups {
        let port = cx.ephemeral(rng);
        let me = UdpEnd { ip: OUR_IP, port };
        let gw = UdpEnd { ip: GW_IP, port: 53 };
        let mut id_ctr = rng.next_u16();
        let t0 = secs(cx.start, at);
        let mut t = t0;
        let mut replies = Vec::new();
        for qtype in [QTYPE_A, QTYPE_AAAA] {
            let qid = rng.next_u16();
            let q = apps::dns_query(qid, name, qtype);
            udp(&mut cx.tr, t, me, gw, 64, id_ctr, &q)?;
            id_ctr = id_ctr.wrapping_add(1);
            let rt = t.add_nanos(rng.range(400, 9_000) * US);
            replies.push((rt, qid, qtype));
            t = t.add_nanos(rng.range(40, 120) * US);
        }
        for (rt, qid, qtype) in replies {
            let r = apps::dns_response(qid, name, qtype, &[addr], rng.range_u32(60, 3600));
            // dnsmasq answers from an unconnected socket: DF and IP id 0.
            udp(&mut cx.tr, rt, gw, me, 64, 0, &r)?;
        }
    }
    // A stale resolver entry: the host answers with a port unreachable (Linux: 576-byte quote).
    let port = cx.ephemeral(rng);
    let me = UdpEnd { ip: OUR_IP, port };
    let dead = UdpEnd { ip: DEAD_RESOLVER, port: 53 };
    let t = secs(cx.start, 26.2);
    let q = apps::dns_query(rng.next_u16(), "tracker.example.net", QTYPE_A);
    let qf = udp(&mut cx.tr, t, me, dead, 64, rng.next_u16(), &q)?;
    let mut dead_host = Remote::new(rng, DEAD_RESOLVER);
    dead_host.os = Os::Linux;
    icmp_error(
        &mut cx.tr,
        t.add_nanos(dead_host.rtt),
        DEAD_RESOLVER,
        OUR_IP,
        60,
        dead_host.next_id(),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        qf,
        Quote::Linux576,
    )?;
    Ok(())
}

fn bt_ids(rng: &mut Rng) -> ([u8; 20], [u8; 20]) {
    let mut h = [0u8; 20];
    rng.fill(&mut h);
    let mut p = [0u8; 20];
    rng.fill(&mut p);
    p[..8].copy_from_slice(b"-TR4060-");
    (h, p)
}

/// Inbound p2p TCP: 15 peers connect to our port 33333.
fn inbound_tcp(cx: &mut Ctx, rng: &mut Rng, pool: &[Remote]) -> Result<(), SynthError> {
    let mut roles = vec![Role::Chatty; 7];
    roles.extend([Role::Upload; 3]);
    roles.extend([Role::Download; 2]);
    roles.extend([Role::ResetByPeer, Role::ResetByUs]);
    rng.shuffle(&mut roles);
    // The PMTU case is pinned to the middle of the capture.
    roles.insert(7, Role::UploadPmtu);
    let mut starts: Vec<f64> = (0..INBOUND_TCP).map(|_| rng.range(1_000, 36_000) as f64 / 1000.0).collect();
    starts.sort_by(f64::total_cmp);
    let (info_hash, _) = bt_ids(rng);
    for (i, (role, at)) in roles.iter().zip(starts).enumerate() {
        let peer = pool.get(i).ok_or(SynthError::Internal("remote pool too small"))?;
        let mss = if *role == Role::UploadPmtu { 1460 } else { remote_mss(rng) };
        let sport = rng.range_u16(10_000, 64_999);
        let mut c = Conn::new(remote_end(peer, sport, mss), our_end(P2P_PORT), peer.rtt, rng);
        let (_, their_id) = bt_ids(rng);
        let mut steps = vec![Step::Msg {
            from: Side::A,
            data: apps::bt_handshake(&info_hash, &their_id),
            think_us: think(rng, 300, 5_000),
        }];
        let mut ours = apps::bt_handshake(&info_hash, &cx.node_id);
        if *role == Role::UploadPmtu {
            // Handshake + bitfield sized to exactly one full segment: a 1500-byte DF packet.
            let mss = c.mss_after_handshake(Side::B) as usize;
            let bf = mss.saturating_sub(ours.len() + 5);
            ours.extend(apps::bt_bitfield(rng, bf));
            steps.push(Step::Pmtu {
                data: ours,
                think_us: think(rng, 200, 3_000),
                router: PMTU_ROUTER,
                router_ttl: 251,
                router_ip_id: rng.next_u16(),
                mtu: 1400,
            });
        } else {
            let n = rng.range_usize(40, 400);
            ours.extend(apps::bt_bitfield(rng, n));
            steps.push(Step::Msg { from: Side::B, data: ours, think_us: think(rng, 200, 3_000) });
        }
        let mut theirs = {
            let n = rng.range_usize(40, 400);
            apps::bt_bitfield(rng, n)
        };
        theirs.extend(apps::bt_interested());
        steps.push(Step::Msg { from: Side::A, data: theirs, think_us: think(rng, 3_000, 30_000) });
        let mut unchoke = apps::bt_unchoke();
        for _ in 0..rng.range(0, 4) {
            unchoke.extend(apps::bt_have(rng.range_u32(0, 4000)));
        }
        steps.push(Step::Msg { from: Side::B, data: unchoke, think_us: think(rng, 200, 2_000) });
        if *role == Role::ResetByPeer {
            steps.push(Step::Abort { from: Side::A, think_us: think(rng, 60_000, 600_000) });
            run_dialog(&mut cx.tr, &mut c, secs(cx.start, at), &steps)?;
            continue;
        }
        let piece = rng.range_u32(0, 4000);
        match role {
            Role::Download => {
                let blocks = rng.range_u32(2, 4);
                steps.push(Step::Msg {
                    from: Side::B,
                    data: {
                        let mut v = apps::bt_interested();
                        v.extend(apps::bt_requests(piece, blocks));
                        v
                    },
                    think_us: think(rng, 50_000, 400_000),
                });
                steps.push(Step::Msg {
                    from: Side::A,
                    data: apps::bt_pieces(rng, piece, blocks),
                    think_us: think(rng, 500, 8_000),
                });
                steps.push(Step::Msg {
                    from: Side::B,
                    data: apps::bt_have(piece),
                    think_us: think(rng, 60_000, 900_000),
                });
            }
            _ => {
                let blocks = match role {
                    Role::Upload | Role::UploadPmtu => rng.range_u32(4, 8),
                    _ => 1,
                };
                steps.push(Step::Msg {
                    from: Side::A,
                    data: apps::bt_requests(piece, blocks),
                    think_us: think(rng, 3_000, 30_000),
                });
                steps.push(Step::Msg {
                    from: Side::B,
                    data: apps::bt_pieces(rng, piece, blocks),
                    think_us: think(rng, 300, 3_000),
                });
                steps.push(Step::Msg {
                    from: Side::A,
                    data: apps::bt_have(piece),
                    think_us: think(rng, 80_000, 1_200_000),
                });
            }
        }
        if *role == Role::ResetByUs {
            steps.push(Step::Abort { from: Side::B, think_us: think(rng, 100_000, 800_000) });
        } else {
            // Alternate who closes; mix combined and separate FIN exchanges.
            let first = if i % 2 == 0 { Side::A } else { Side::B };
            let style = if rng.chance(50) {
                CloseStyle::Combined
            } else {
                CloseStyle::Separate { think_us: think(rng, 200, 20_000) }
            };
            steps.push(Step::Close { first, style, think_us: think(rng, 200_000, 3_000_000) });
        }
        run_dialog(&mut cx.tr, &mut c, secs(cx.start, at), &steps)?;
    }
    Ok(())
}

/// Outbound p2p TCP: we connect to 8 peers (6 on port 33333, 2 on other high ports).
fn outbound_tcp(cx: &mut Ctx, rng: &mut Rng, pool: &[Remote]) -> Result<(), SynthError> {
    let (info_hash, _) = bt_ids(rng);
    for i in 0..OUTBOUND_TCP {
        let peer = pool.get(INBOUND_TCP + i).ok_or(SynthError::Internal("remote pool too small"))?;
        let dport = match i {
            3 => 6881,
            6 => 51413,
            _ => P2P_PORT,
        };
        let sport = cx.ephemeral(rng);
        let at = rng.range(2_000, 34_000) as f64 / 1000.0;
        let mss = remote_mss(rng);
        let mut c = Conn::new(our_end(sport), remote_end(peer, dport, mss), peer.rtt, rng);
        let (_, their_id) = bt_ids(rng);
        let mut steps = vec![
            Step::Msg {
                from: Side::A,
                data: apps::bt_handshake(&info_hash, &cx.node_id),
                think_us: think(rng, 50, 400),
            },
            Step::Msg {
                from: Side::B,
                data: {
                    let mut v = apps::bt_handshake(&info_hash, &their_id);
                    v.extend({
                        let n = rng.range_usize(40, 400);
                        apps::bt_bitfield(rng, n)
                    });
                    v
                },
                think_us: think(rng, 500, 20_000),
            },
            Step::Msg {
                from: Side::A,
                data: {
                    let mut v = {
                        let n = rng.range_usize(40, 400);
                        apps::bt_bitfield(rng, n)
                    };
                    v.extend(apps::bt_interested());
                    v
                },
                think_us: think(rng, 200, 2_000),
            },
            Step::Msg { from: Side::B, data: apps::bt_unchoke(), think_us: think(rng, 1_000, 30_000) },
        ];
        let piece = rng.range_u32(0, 4000);
        let blocks = rng.range_u32(1, 3);
        steps.push(Step::Msg {
            from: Side::A,
            data: apps::bt_requests(piece, blocks),
            think_us: think(rng, 200, 2_000),
        });
        steps.push(Step::Msg {
            from: Side::B,
            data: apps::bt_pieces(rng, piece, blocks),
            think_us: think(rng, 500, 10_000),
        });
        steps.push(Step::Msg {
            from: Side::A,
            data: apps::bt_have(piece),
            think_us: think(rng, 60_000, 500_000),
        });
        let first = if i % 3 == 0 { Side::B } else { Side::A };
        let style = if rng.chance(50) {
            CloseStyle::Combined
        } else {
            CloseStyle::Separate { think_us: think(rng, 200, 20_000) }
        };
        steps.push(Step::Close { first, style, think_us: think(rng, 300_000, 4_000_000) });
        run_dialog(&mut cx.tr, &mut c, secs(cx.start, at), &steps)?;
    }
    Ok(())
}

/// DHT chatter on UDP 33333: inbound queries answered by us, outbound queries (some unanswered),
/// and one query answered by a port unreachable from 198.51.100.77.
fn dht(cx: &mut Ctx, rng: &mut Rng, pool: &[Remote]) -> Result<(), SynthError> {
    let me = UdpEnd { ip: OUR_IP, port: P2P_PORT };
    let mut hosts: Vec<(Remote, u16, [u8; 20])> = pool
        .iter()
        .skip(5)
        .take(40)
        .map(|r| {
            let mut id = [0u8; 20];
            rng.fill(&mut id);
            (r.clone(), rng.range_u16(1025, 65000), id)
        })
        .collect();
    let kinds = [DhtQuery::Ping, DhtQuery::FindNode, DhtQuery::GetPeers];
    // Inbound: 25 queries from 20 hosts (the first five ask twice).
    for q in 0..UDP_IN_QUERIES {
        let h = if q < 20 { 20 + q } else { 20 + (q - 20) };
        let Some((host, port, id)) = hosts.get_mut(h) else {
            return Err(SynthError::Internal("dht pool"));
        };
        let kind = *rng.pick(&kinds).unwrap_or(&DhtQuery::Ping);
        let tid = [rng.next_u16() as u8, rng.next_u16() as u8];
        let t = secs(cx.start, rng.range(500, 44_000) as f64 / 1000.0);
        let peer = UdpEnd { ip: host.ip, port: *port };
        let query = apps::dht_query(rng, kind, id, tid);
        let ip_id = host.next_id();
        udp(&mut cx.tr, t, peer, me, host.ttl, ip_id, &query)?;
        let resp = apps::dht_response(rng, kind, &cx.node_id, tid);
        let tr_t = t.add_nanos(rng.range(60, 900) * US);
        // Our unconnected UDP socket with DF: IP id 0.
        udp(&mut cx.tr, tr_t, me, peer, 64, 0, &resp)?;
    }
    // Outbound: 20 queries to 20 hosts, the last five unanswered.
    for q in 0..UDP_OUT_QUERIES {
        let Some((host, port, id)) = hosts.get_mut(q) else {
            return Err(SynthError::Internal("dht pool"));
        };
        let kind = *rng.pick(&kinds).unwrap_or(&DhtQuery::Ping);
        let tid = [rng.next_u16() as u8, rng.next_u16() as u8];
        let t = secs(cx.start, rng.range(600, 44_000) as f64 / 1000.0);
        let peer = UdpEnd { ip: host.ip, port: *port };
        let query = apps::dht_query(rng, kind, &cx.node_id, tid);
        udp(&mut cx.tr, t, me, peer, 64, 0, &query)?;
        if q < UDP_OUT_QUERIES - UDP_OUT_UNANSWERED {
            let resp = apps::dht_response(rng, kind, id, tid);
            let rt = t.add_nanos(host.rtt + rng.range(50, 5_000) * US);
            let ip_id = host.next_id();
            udp(&mut cx.tr, rt, peer, me, host.ttl, ip_id, &resp)?;
        }
    }
    // A stale node: the peer's stack answers with a port unreachable quoting our query.
    let mut stale = Remote::new(rng, UNREACH_PEER);
    stale.os = Os::Linux;
    stale.ttl = 55;
    let port = rng.range_u16(1025, 65000);
    let t = secs(cx.start, 13.0 + rng.range(0, 500) as f64 / 1000.0);
    let tid = [rng.next_u16() as u8, rng.next_u16() as u8];
    let query = apps::dht_query(rng, DhtQuery::GetPeers, &cx.node_id, tid);
    let qf = udp(&mut cx.tr, t, me, UdpEnd { ip: UNREACH_PEER, port }, 64, 0, &query)?;
    icmp_error(
        &mut cx.tr,
        t.add_nanos(stale.rtt),
        UNREACH_PEER,
        OUR_IP,
        stale.ttl,
        stale.next_id(),
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        qf,
        Quote::Linux576,
    )?;
    Ok(())
}

/// Browsing: three HTTPS sessions and one plain HTTP fetch.
fn browsing(cx: &mut Ctx, rng: &mut Rng) -> Result<(), SynthError> {
    let starts = [5.0, 12.0, 21.0, 30.5];
    for (i, ((ip, port, host), at)) in WEB.iter().zip(starts).enumerate() {
        let mut server = Remote::new(rng, *ip);
        server.os = Os::Linux;
        server.ttl = 64 - rng.range(7, 12) as u8;
        let sport = cx.ephemeral(rng);
        let mut c = Conn::new(our_end(sport), remote_end(&server, *port, 1460), server.rtt, rng);
        let steps = if *port == 443 {
            vec![
                Step::Msg {
                    from: Side::A,
                    data: apps::tls_client_hello(rng),
                    think_us: think(rng, 100, 600),
                },
                Step::Msg {
                    from: Side::B,
                    data: {
                        let n = rng.range_usize(3_800, 5_600);
                        apps::tls_records(rng, 22, n)
                    },
                    think_us: think(rng, 300, 4_000),
                },
                Step::Msg {
                    from: Side::A,
                    data: {
                        let mut v = apps::tls_records(rng, 20, 6);
                        v.extend(apps::tls_records(rng, 23, 74));
                        v.extend({
                            let n = rng.range_usize(380, 620);
                            apps::tls_records(rng, 23, n)
                        });
                        v
                    },
                    think_us: think(rng, 500, 3_000),
                },
                Step::Msg {
                    from: Side::B,
                    data: {
                        let n = rng.range_usize(18_000, 90_000);
                        apps::tls_records(rng, 23, n)
                    },
                    think_us: think(rng, 2_000, 30_000),
                },
                Step::Close {
                    first: if i == 1 { Side::A } else { Side::B },
                    style: CloseStyle::Combined,
                    think_us: think(rng, 1_000_000, 4_000_000),
                },
            ]
        } else {
            vec![
                Step::Msg {
                    from: Side::A,
                    data: apps::http_request(host, "/"),
                    think_us: think(rng, 100, 600),
                },
                Step::Msg {
                    from: Side::B,
                    data: apps::http_response(1256),
                    think_us: think(rng, 300, 3_000),
                },
                Step::Close {
                    first: Side::A,
                    style: CloseStyle::Separate { think_us: think(rng, 100, 2_000) },
                    think_us: think(rng, 800_000, 2_000_000),
                },
            ]
        };
        run_dialog(&mut cx.tr, &mut c, secs(cx.start, at), &steps)?;
    }
    Ok(())
}

/// We ping the gateway 4 times; a Windows host pings us twice.
fn pings(cx: &mut Ctx, rng: &mut Rng) -> Result<(), SynthError> {
    let id = rng.next_u16();
    let mut ip_id = rng.next_u16();
    for seq in 1..=4u16 {
        let t = secs(cx.start, 7.0 + f64::from(seq)).add_nanos(rng.range(0, 900) * US);
        let payload = apps::ping_payload_linux(t.as_nanos() / US);
        echo(&mut cx.tr, t, OUR_IP, GW_IP, 64, ip_id, true, true, id, seq, &payload)?;
        ip_id = ip_id.wrapping_add(1);
        let rt = t.add_nanos(rng.range(250, 700) * US);
        echo(&mut cx.tr, rt, GW_IP, OUR_IP, 64, rng.next_u16(), false, false, id, seq, &payload)?;
    }
    let mut pinger = Remote::new(rng, PINGER);
    pinger.os = Os::Windows;
    pinger.ttl = 113;
    let id = 1u16;
    for k in 0..2u16 {
        let t = secs(cx.start, 15.2 + f64::from(k)).add_nanos(rng.range(0, 5_000) * US);
        let seq = 0x0150 + k;
        let payload = apps::ping_payload_windows();
        let rid = pinger.next_id();
        echo(&mut cx.tr, t, PINGER, OUR_IP, pinger.ttl, rid, false, true, id, seq, &payload)?;
        // Kernel echo replies: no DF, hashed IP id.
        let rt = t.add_nanos(rng.range(20, 80) * US);
        echo(&mut cx.tr, rt, OUR_IP, PINGER, 64, rng.next_u16(), false, false, id, seq, &payload)?;
    }
    Ok(())
}

/// A SYN scan of 20 ports plus one UDP probe; nothing from us is captured (the firewall answers).
fn scan(cx: &mut Ctx, rng: &mut Rng) -> Result<(), SynthError> {
    use crate::packet::{flags, tcp_frame, Ip4, TcpSeg};
    let mut ports = SCAN_PORTS;
    rng.shuffle(&mut ports);
    let sport = rng.range_u16(40_000, 65_000);
    let seq = rng.next_u32();
    let mut t = secs(cx.start, 18.0);
    let ttl = 45;
    // nmap -sS: window 1024, MSS 1460 only, no DF, random IP ids.
    let opts = [2u8, 4, 0x05, 0xb4];
    for p in ports {
        let ip = Ip4 { src: SCANNER, dst: OUR_IP, ttl, id: rng.next_u16(), df: false, tos: 0 };
        let f = tcp_frame(
            &ip,
            &TcpSeg {
                sport,
                dport: p,
                seq,
                ack: 0,
                flags: flags::SYN,
                win: 1024,
                options: &opts,
                payload: &[],
            },
        )?;
        cx.tr.push(t, f);
        t = t.add_nanos(rng.range(300, 3_000) * US);
    }
    // SNMP probe to a closed port.
    let probe = [
        0x30u8, 0x26, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x19, 0x02,
        0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c, 0x06, 0x08, 0x2b, 0x06, 0x01,
        0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
    ];
    let ip = Ip4 { src: SCANNER, dst: OUR_IP, ttl, id: rng.next_u16(), df: false, tos: 0 };
    let f = crate::packet::udp_frame(&ip, sport, 161, &probe)?;
    cx.tr.push(t.add_nanos(ms(40)), f);
    Ok(())
}

fn ms(n: u64) -> u64 {
    n * MS
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::check::{check_tcp, key4, tcp_segments, verify_checksums};
    use crate::packet::ip_datagram;
    use crate::{Frame, DEFAULT_SEED, DEFAULT_START};
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn seed_frames() -> Vec<Frame> {
        generate(DEFAULT_SEED, DEFAULT_START).unwrap()
    }

    #[test]
    fn every_frame_decodes_and_has_valid_checksums() {
        let frames = seed_frames();
        let mut arp = 0;
        let mut v6 = 0;
        for (i, f) in frames.iter().enumerate() {
            match verify_checksums(&f.data) {
                Ok("arp") => arp += 1,
                Ok("ipv6") => v6 += 1,
                Ok(_) => {
                    SlicedPacket::from_ethernet(&f.data).unwrap_or_else(|e| panic!("frame {i}: {e}"));
                }
                Err(e) => panic!("frame {i}: {e}"),
            }
        }
        assert_eq!((arp, v6), (2, 1));
    }

    #[test]
    fn timestamps_are_sorted_whole_microseconds_within_a_minute() {
        let frames = seed_frames();
        assert!(frames.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert!(frames.iter().all(|f| f.ts.as_nanos() % 1_000 == 0));
        assert_eq!(frames[0].ts, DEFAULT_START);
        let span = frames.last().unwrap().ts.nanos_since(DEFAULT_START);
        assert!((30 * 1_000_000_000..60 * 1_000_000_000).contains(&span), "{span}");
        assert!((300..=2000).contains(&frames.len()), "{}", frames.len());
    }

    #[test]
    fn tcp_conversations_are_self_consistent() {
        let frames = seed_frames();
        let reports = check_tcp(&frames).unwrap();
        // 15 inbound + 8 outbound p2p + 4 browsing; scan SYNs are lone SYNs.
        assert_eq!(reports.len(), INBOUND_TCP + OUTBOUND_TCP + WEB.len());
        assert_eq!(reports.iter().filter(|r| r.rst).count(), 2);
        assert_eq!(reports.iter().filter(|r| r.closed_by_fin).count(), 25);
        // Exactly one retransmission episode: the PMTU one (two segments re-sending the data).
        assert_eq!(reports.iter().map(|r| r.retransmissions).sum::<usize>(), 2);
        assert_eq!(reports.iter().filter(|r| r.retransmissions > 0).count(), 1);
        assert!(reports.iter().all(|r| r.bytes[0] > 0 && r.bytes[1] > 0));
        assert!(reports.iter().all(|r| r.pushes[0] > 0 && r.pushes[1] > 0));
        // Several peers move more than 64 kB in one direction (multi-segment rounds).
        assert!(reports.iter().filter(|r| r.bytes[1] > 64_000).count() >= 3);
    }

    #[test]
    fn our_tcp_ip_ids_follow_linux() {
        let frames = seed_frames();
        let segs = tcp_segments(&frames);
        let mut last: std::collections::HashMap<(u16, [u8; 16], u16), u16> = Default::default();
        for s in segs.iter().filter(|s| s.src.0 == key4(OUR_IP)) {
            if s.syn && s.ackf {
                assert_eq!(s.ip_id, 0, "SYN/ACK from a listener");
                continue;
            }
            let k = (s.src.1, s.dst.0, s.dst.1);
            if let Some(prev) = last.insert(k, s.ip_id) {
                assert_eq!(s.ip_id, prev.wrapping_add(1));
            }
        }
    }

    #[test]
    fn scan_has_no_answer_from_us() {
        let frames = seed_frames();
        let segs = tcp_segments(&frames);
        let scan: Vec<_> = segs.iter().filter(|s| s.src.0 == key4(SCANNER)).collect();
        assert_eq!(scan.len(), SCAN_PORTS.len());
        assert!(scan.iter().all(|s| s.syn && !s.ackf && s.win == 1024));
        assert!(!segs.iter().any(|s| s.dst.0 == key4(SCANNER)));
        let udp_to_us_from_scanner = frames
            .iter()
            .filter_map(|f| SlicedPacket::from_ethernet(&f.data).ok())
            .filter(|p| {
                matches!((&p.net, &p.transport), (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(_))) if ip.header().source() == SCANNER)
            })
            .count();
        assert_eq!(udp_to_us_from_scanner, 1);
    }

    /// Every ICMP error quotes bytes identical to a packet that appeared earlier in the capture.
    #[test]
    fn icmp_errors_quote_earlier_packets_bit_exact() {
        let frames = seed_frames();
        let mut seen = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let p = SlicedPacket::from_ethernet(&f.data).unwrap_or_else(|e| panic!("{i}: {e}"));
            let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
                continue;
            };
            let Icmpv4Type::DestinationUnreachable(code) = icmp.header().icmp_type else {
                continue;
            };
            let quoted = icmp.payload();
            let original = frames[..i]
                .iter()
                .position(|g| {
                    ip_datagram(&g.data).is_some_and(|d| d.len() >= quoted.len() && d.starts_with(quoted))
                })
                .unwrap_or_else(|| panic!("ICMP error {i} quotes nothing earlier"));
            let orig = ip_datagram(&frames[original].data).unwrap();
            assert!(frames[original].ts < f.ts);
            // The quoted packet is ours and the error comes back to us.
            assert_eq!(&orig[12..16], &OUR_IP);
            let Some(NetSlice::Ipv4(outer)) = &p.net else { panic!() };
            assert_eq!(outer.header().destination(), OUR_IP);
            assert_eq!(outer.header().slice()[1], 0xc0);
            seen.push((code, outer.header().source(), quoted.len(), orig.len(), orig[9]));
        }
        seen.sort_by_key(|s| s.1);
        assert_eq!(seen.len(), 3);
        // DNS to the dead resolver: whole datagram quoted (Linux, < 548 bytes).
        assert_eq!(seen[0].0, DestUnreachableHeader::Port);
        assert_eq!(seen[0].1, DEAD_RESOLVER);
        assert_eq!(seen[0].2, seen[0].3);
        // DHT query from port 33333 to the stale peer.
        assert_eq!(seen[1].0, DestUnreachableHeader::Port);
        assert_eq!(seen[1].1, UNREACH_PEER);
        assert_eq!((seen[1].2, seen[1].4), (seen[1].3, 17));
        // Fragmentation needed, MTU 1400, for a 1500-byte TCP segment, 28 bytes quoted.
        assert_eq!(seen[2].0, DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 });
        assert_eq!(seen[2].1, PMTU_ROUTER);
        assert_eq!((seen[2].2, seen[2].3, seen[2].4), (28, 1500, 6));
    }

    #[test]
    fn frag_needed_quotes_our_33333_segment_with_df_and_we_resegment() {
        let frames = seed_frames();
        let segs = tcp_segments(&frames);
        let big: Vec<_> = segs.iter().filter(|s| s.src.0 == key4(OUR_IP) && s.len + 52 == 1500).collect();
        assert!(!big.is_empty());
        let pmtu = big
            .iter()
            .find(|b| {
                segs.iter().any(|s| s.src == b.src && s.dst == b.dst && s.seq == b.seq && s.len == 1348)
            })
            .unwrap();
        assert_eq!(pmtu.src.1, P2P_PORT);
        assert!(pmtu.df);
        // After the error, our segments on that flow fit the 1400-byte path.
        assert!(segs
            .iter()
            .filter(|s| s.src == pmtu.src && s.dst == pmtu.dst && s.idx > pmtu.idx + 1)
            .all(|s| s.len <= 1348));
    }

    #[test]
    fn udp_dht_and_dns_counts() {
        let frames = seed_frames();
        let mut to_p2p = 0;
        let mut from_p2p = 0;
        let mut dns_q = 0;
        let mut dns_r = 0;
        for f in &frames {
            let Ok(p) = SlicedPacket::from_ethernet(&f.data) else {
                continue;
            };
            let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(u))) = (&p.net, &p.transport) else {
                continue;
            };
            let h = ip.header();
            if h.destination() == OUR_IP && u.destination_port() == P2P_PORT {
                to_p2p += 1;
            }
            if h.source() == OUR_IP && u.source_port() == P2P_PORT {
                from_p2p += 1;
                // Unconnected socket with DF: IP id 0.
                assert_eq!(h.identification(), 0);
                assert!(h.dont_fragment());
            }
            if u.destination_port() == 53 {
                dns_q += 1;
            }
            if u.source_port() == 53 {
                dns_r += 1;
            }
        }
        // 25 inbound queries + 15 answers to our queries.
        assert_eq!(to_p2p, UDP_IN_QUERIES + UDP_OUT_QUERIES - UDP_OUT_UNANSWERED);
        // 25 answers + 20 queries + the one answered by a port unreachable.
        assert_eq!(from_p2p, UDP_IN_QUERIES + UDP_OUT_QUERIES + 1);
        assert_eq!((dns_q, dns_r), (11, 10));
    }

    #[test]
    fn documented_totals_for_the_default_seed() {
        let frames = seed_frames();
        // Keep in sync with the crate docs.
        assert_eq!(frames.len(), DOC_TOTAL_FRAMES);
    }

    /// Total frames of `seed` with [`DEFAULT_SEED`] (quoted in the crate docs).
    const DOC_TOTAL_FRAMES: usize = 1768;
}
