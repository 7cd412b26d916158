//! The engine: host model + conntrack + rules, driven packet by packet.

use std::net::IpAddr;

use conntrack::{ConfirmOutcome, Conntrack, CtInfo, InResult};
use rules::{CtMatch, CtState, CtView, Effect, Hook, PacketCtx, RuleId, RuleRef, RuleState, Ruleset, Table};
use wire::link::PktType;
use wire::{Packet, Time};

use crate::decision::{CtStateLabel, Decision, Disposition, IfaceName, PacketPath, RejectReply, Verdict};
use crate::fastpath::{PathCache, PathKey};
use crate::host::{AddrKind, Host, PathKind};

/// Running totals the engine keeps (the replay driver keeps the per-verdict ones from the decisions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub packets: u64,
    /// Packets whose timestamp was earlier than the previous packet's (processed at the previous time).
    pub clock_regressions: u64,
    pub peak_entries: usize,
}

/// One statewall engine: a ruleset, its counters, a conntrack table and a host model. No global state:
/// run one per shard.
pub struct Engine {
    ruleset: Ruleset,
    rule_state: RuleState,
    /// The IPv6 ruleset (ip6tables); without one, IPv6 packets are decoded and counted but not filtered.
    ruleset6: Option<(Ruleset, RuleState)>,
    ct: Conntrack,
    host: std::sync::Arc<Host>,
    defrag: wire::defrag::Defrag,
    now: Time,
    stats: EngineStats,
    /// Record the rules each packet traverses (TRACE) in its decision.
    tracing: bool,
    /// The host model's routing decisions, remembered (the host never changes once the engine has it).
    routes: RouteCache,
    /// Rule paths remembered per conntrack entry direction (the established-flow fast path).
    paths: PathCache,
    fast_path: bool,
    /// Each interface's name as decisions carry it, by [`Iface`] index (`lo` last), built once: naming
    /// a packet's interfaces copies them (no string handling per packet).
    iface_names: Vec<IfaceName>,
    /// The rules decisions named last, to name them again without rebuilding the references.
    named: Named,
    /// Some rule reads more of the conntrack view than state, status, direction and ctmark
    /// ([`Ruleset::reads_conn_details`]): only then does the view carry the tuples, lifetime and helpers.
    view_details: bool,
}

/// Most frames [`Engine::warm`] looks at in one call.
pub const WARM_MAX: usize = 32;

/// The lookup hashes of a batch of frames, between [`Engine::warm_index`] and [`Engine::warm_entries`].
#[derive(Debug, Clone, Copy)]
pub struct WarmBatch {
    hashes: [u64; WARM_MAX],
    n: usize,
}

impl Default for WarmBatch {
    fn default() -> WarmBatch {
        WarmBatch { hashes: [0; WARM_MAX], n: 0 }
    }
}

impl WarmBatch {
    fn hashes(&self) -> &[u64] {
        self.hashes.get(..self.n).unwrap_or(&[])
    }
}

/// Table size from which [`Engine::warm`] warms: about 4 MiB of entries, well past the L2 caches (smaller
/// tables mostly hit in cache, and warming would only add work).
const WARM_FROM_ENTRIES: usize = 32 * 1024;

/// A direct-mapped memo of [`Host::classify`], keyed by the address pair: IPv4 pairs as one word (a
/// small slot, cheap to check and to fill), IPv6 pairs in slots of their own.
struct RouteCache {
    v4: Vec<Option<(u64, Route)>>,
    v6: Vec<Option<RouteSlot>>,
}

#[derive(Clone, Copy)]
struct RouteSlot {
    src: IpAddr,
    dst: IpAddr,
    route: Route,
}

const ROUTE_SLOTS: usize = 4096;
const ROUTE_SLOTS6: usize = 1024;

impl RouteCache {
    fn new() -> RouteCache {
        RouteCache { v4: vec![None; ROUTE_SLOTS], v6: vec![None; ROUTE_SLOTS6] }
    }

    /// `host.classify(src, dst)`, remembered; interfaces as [`Iface`] indices.
    fn classify(&mut self, host: &Host, src: IpAddr, dst: IpAddr) -> Route {
        if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
            let key = u64::from(u32::from(s)) << 32 | u64::from(u32::from(d));
            let i = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize % ROUTE_SLOTS;
            if let Some(Some((k, r))) = self.v4.get(i) {
                if *k == key {
                    return *r;
                }
            }
            let route = Self::route(host, src, dst);
            if let Some(slot) = self.v4.get_mut(i) {
                *slot = Some((key, route));
            }
            return route;
        }
        let word = |ip: IpAddr| match ip {
            IpAddr::V4(v) => u64::from(u32::from(v)),
            IpAddr::V6(v) => {
                let b = u128::from(v);
                (b as u64) ^ ((b >> 64) as u64)
            }
        };
        let h = word(src).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ word(dst).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        let i = (h >> 52) as usize % ROUTE_SLOTS6;
        if let Some(Some(r)) = self.v6.get(i) {
            if r.src == src && r.dst == dst {
                return r.route;
            }
        }
        let route = Self::route(host, src, dst);
        if let Some(slot) = self.v6.get_mut(i) {
            *slot = Some(RouteSlot { src, dst, route });
        }
        route
    }

    fn route(host: &Host, src: IpAddr, dst: IpAddr) -> Route {
        let (kind, in_if, out_if) = host.classify_index(src, dst);
        (kind, in_if.and_then(Iface::at), out_if.and_then(Iface::at))
    }
}

/// A routing decision: the path and the in and out interfaces.
pub(crate) type Route = (PathKind, Option<Iface>, Option<Iface>);

/// An interface of the engine's host: its index in [`Host::interfaces`], or `lo` (the host never changes
/// once the engine has it, so the index always names the same interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Iface(pub(crate) u32);

impl Iface {
    const LO: Iface = Iface(u32::MAX);

    /// The interface at index `i` of [`Host::interfaces`].
    fn at(i: usize) -> Option<Iface> {
        if i == Host::LOOPBACK_INDEX {
            return Some(Iface::LO);
        }
        u32::try_from(i).ok().map(Iface)
    }

    fn name(self, host: &Host) -> Option<&str> {
        if self == Iface::LO {
            return Some(crate::host::LOOPBACK);
        }
        host.interfaces().get(self.0 as usize).map(|x| x.name.as_str())
    }
}

fn iface_name(host: &Host, i: Option<Iface>) -> Option<&str> {
    i?.name(host)
}

/// The rules decisions named most recently (a flow's two directions usually name two), by rule identity
/// and ruleset (IPv6 or not): naming one again clones the reference (no reference counting for built-in
/// chains) instead of rebuilding it.
#[derive(Default)]
struct Named {
    recent: [Option<(bool, RuleId, RuleRef)>; 4],
    next: usize,
}

impl Named {
    /// Make `slot` name rule `id` of `rs` (the ruleset `v6` says). A slot that already names it, as
    /// one of the rules named recently, is left alone; a recent rule is cloned; any other is built.
    fn write(&mut self, v6: bool, id: RuleId, rs: &Ruleset, slot: &mut Option<RuleRef>) {
        let recent = self.recent.iter().flatten().find(|(nv6, nid, _)| *nv6 == v6 && *nid == id);
        if let Some((_, _, r)) = recent {
            if !slot.as_ref().is_some_and(|s| same_ref(s, r)) {
                *slot = Some(r.clone());
            }
            return;
        }
        let r = rs.rule_ref(id);
        if let Some(e) = self.recent.get_mut(self.next % 4) {
            *e = Some((v6, id, r.clone()));
        }
        self.next = self.next.wrapping_add(1);
        *slot = Some(r);
    }
}

/// `a == b`, cheaply for the references [`Named`] hands out (a user chain's name is shared).
fn same_ref(a: &RuleRef, b: &RuleRef) -> bool {
    a.rule == b.rule
        && a.table == b.table
        && match (&a.chain, &b.chain) {
            (rules::ChainName::Builtin(x), rules::ChainName::Builtin(y)) => x == y,
            (rules::ChainName::User(x), rules::ChainName::User(y)) => std::sync::Arc::ptr_eq(x, y) || x == y,
            _ => false,
        }
}

/// Interface `i`'s name as a decision carries it, from the names built once (`lo` is the last).
fn iface_label(names: &[IfaceName], i: Option<Iface>) -> Option<IfaceName> {
    let i = i?;
    if i == Iface::LO {
        return names.last().copied();
    }
    names.get(i.0 as usize).copied()
}

/// Where conntrack-in runs for a path.
fn ct_hook(path: PacketPath) -> conntrack::Hook {
    match path {
        PacketPath::Output | PacketPath::Loopback => conntrack::Hook::LocalOut,
        PacketPath::Input | PacketPath::Forward | PacketPath::Prerouting => conntrack::Hook::PreRouting,
    }
}

/// How far [`Engine::express`] took a packet.
enum Lane {
    /// Decided.
    Done,
    /// Not taken: nothing ran.
    NotTaken,
    /// Conntrack-in ran (raw has no chain): its result, for the rest of the walk, and the packet's route if
    /// the lane found it.
    Tracked(InResult, Option<Route>),
}

/// The state of one packet's walk through the hooks.
struct Walk {
    mark: u32,
    ct: CtMatch,
    /// The tracked entry (if any) and whether this packet is the one creating it.
    conn: Option<(conntrack::ConnId, CtInfo)>,
    untracked: bool,
    template: Option<conntrack::Template>,
    in_iface: Option<Iface>,
    out_iface: Option<Iface>,
    /// The deciding rule of the filter table, and of the last other table run (the decision names the
    /// filter one when filter ran; each rule reference is kept once, not cloned).
    filter_rule: Option<RuleId>,
    last_rule: Option<RuleId>,
    logs: Vec<String>,
    ct_reason: Option<&'static str>,
    /// Why conntrack ignored the packet (accepted it without changing the entry), when it did.
    ct_note: Option<&'static str>,
    /// TRACE lines, when tracing.
    trace: Option<Vec<String>>,
    /// The conntrack view must be rebuilt before the next table (the ctmark or the status changed).
    view_stale: bool,
    /// The tables after conntrack record their walk into the path cache's buffer, to remember it under
    /// this key (taken after conntrack-in).
    recording: Option<PathKey>,
    /// Non-zero: this remembered path replaced the tables after conntrack. Its rules name the decision's
    /// rule, and the state label and direction come from conntrack's classification (`walk.ct` was not
    /// built).
    fast_tag: u16,
    /// Conntrack-in's result when [`Engine::express`] ran it (raw has no chain for the first hook).
    pre: Option<InResult>,
}

impl Engine {
    pub fn new(ruleset: Ruleset, host: Host, ct_config: conntrack::Config) -> Engine {
        let rule_state = ruleset.new_state();
        let iface_names = host
            .interfaces()
            .iter()
            .map(|i| IfaceName::new(&i.name))
            .chain(std::iter::once(IfaceName::new(crate::host::LOOPBACK)))
            .collect();
        Engine {
            view_details: ruleset.reads_conn_details(),
            iface_names,
            named: Named::default(),
            routes: RouteCache::new(),
            ruleset,
            rule_state,
            ruleset6: None,
            ct: Conntrack::new(ct_config),
            host: std::sync::Arc::new(host),
            defrag: wire::defrag::Defrag::default(),
            now: Time::ZERO,
            stats: EngineStats::default(),
            tracing: false,
            paths: PathCache::default(),
            fast_path: true,
        }
    }

    /// Use remembered rule paths for ESTABLISHED packets (on by default). Results are identical either way;
    /// off, every packet walks every table.
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
    }

    /// Packets whose rule walk a remembered path replaced, and the number of distinct paths remembered.
    pub fn fast_path_stats(&self) -> (u64, usize) {
        (self.paths.hits, self.paths.len())
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// Record, for every packet, the rules it traverses (like the TRACE target) and conntrack's verdict, in
    /// [`Decision::trace`]. Off by default (it costs an allocation per packet).
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    /// Reassembly settings (`ipfrag_time`, `nf_conntrack_frag6_timeout`, the memory threshold). Resets the
    /// fragment queues: set it before the first packet.
    pub fn set_defrag_config(&mut self, cfg: wire::defrag::DefragConfig) {
        self.defrag = wire::defrag::Defrag::new(cfg);
    }

    /// The next conntrack event (`conntrack -E`: NEW, UPDATE, DESTROY), in the order they happened.
    pub fn poll_event(&mut self) -> Option<conntrack::Event> {
        self.ct.poll_event()
    }

    /// Filter IPv6 packets with `ruleset6` (the ip6tables tables).
    pub fn with_ipv6_rules(mut self, ruleset6: Ruleset) -> Engine {
        let state = ruleset6.new_state();
        self.view_details |= ruleset6.reads_conn_details();
        self.ruleset6 = Some((ruleset6, state));
        self.named = Named::default();
        self
    }

    /// The IPv6 ruleset and its counters, when one was given.
    pub fn ruleset6(&self) -> Option<(&Ruleset, &RuleState)> {
        self.ruleset6.as_ref().map(|(r, s)| (r, s))
    }
    pub fn rule_state(&self) -> &RuleState {
        &self.rule_state
    }
    pub fn conntrack(&self) -> &Conntrack {
        &self.ct
    }
    pub fn host(&self) -> &Host {
        &self.host
    }
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }
    /// The engine's clock: the latest time it has seen.
    pub fn now(&self) -> Time {
        self.now
    }

    /// When the next conntrack entry or fragment queue expires.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.ct.poll_timeout().into_iter().chain(self.defrag.poll_timeout()).min()
    }

    /// Time passes to `now` without a packet for this engine (another shard's packet): the clock moves
    /// forward and what is due expires, as a packet at `now` would make happen, but nothing is counted (an
    /// earlier `now` is ignored, not counted as a clock regression).
    pub fn handle_tick(&mut self, now: Time) {
        if now > self.now {
            self.now = now;
        }
        self.expire_due();
    }

    /// Expire what is due at `now` (never moves the clock backwards).
    pub fn handle_timeout(&mut self, now: Time) {
        let now = self.advance(now);
        self.ct.handle_timeout(now);
        self.defrag.handle_timeout(now);
    }

    fn advance(&mut self, now: Time) -> Time {
        if now < self.now {
            self.stats.clock_regressions += 1;
        } else {
            self.now = now;
        }
        self.now
    }

    /// One captured frame of link type `linktype` (pcap LINKTYPE_* numbers), as long on the wire as captured.
    pub fn handle_packet(&mut self, now: Time, linktype: u32, frame: &[u8]) -> Decision {
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        self.handle_packet_on_wire(now, linktype, frame, len)
    }

    /// One captured frame whose length on the wire was `wire_len` (the capture's original length: a snaplen
    /// cuts what was captured, not what the kernel received).
    pub fn handle_packet_on_wire(
        &mut self,
        now: Time,
        linktype: u32,
        frame: &[u8],
        wire_len: u32,
    ) -> Decision {
        let mut d = Decision::default();
        self.handle_packet_into(now, linktype, frame, wire_len, &mut d);
        d
    }

    /// [`Engine::handle_packet_on_wire`], writing the decision into `out` (whatever it held before is
    /// replaced; its buffers are reused). For callers handling many packets.
    pub fn handle_packet_into(
        &mut self,
        now: Time,
        linktype: u32,
        frame: &[u8],
        wire_len: u32,
        out: &mut Decision,
    ) {
        let now = self.begin(now);
        match wire::link::strip_link(linktype, frame) {
            Ok(f) => {
                let link_header = frame.len().saturating_sub(f.ip.len());
                let ip_wire_len = (wire_len as usize).max(frame.len()).saturating_sub(link_header);
                self.handle_ip_at(now, f.ip, f.pkttype, ip_wire_len, out)
            }
            Err(wire::DecodeError::NotIp(t)) => out.reset(Disposition::NotIp { ethertype: t }),
            Err(e) => out.reset(Disposition::Undecodable { reason: e.to_string() }),
        }
        self.stats.peak_entries = self.stats.peak_entries.max(self.ct.len());
    }

    /// Warm the memory the next packets will read, before handling them: for each frame (at most
    /// [`WARM_MAX`]), the conntrack index slot and entry its lookup will most likely read. Worth it only
    /// when the table is far bigger than the caches (then each packet's lookup would miss in memory
    /// twice, one packet after the other, and warming a batch overlaps those misses); with a smaller table
    /// it does nothing. Prefetches and reads only: decisions never depend on it. Returns how many entries
    /// were asked for. [`Engine::warm_index`] and [`Engine::warm_entries`] are its two halves,
    /// for a caller that pipelines batches (the slots of one batch fetched while an earlier one is
    /// handled, its entries later).
    pub fn warm<'a>(&self, frames: impl IntoIterator<Item = (u32, &'a [u8])>) -> u64 {
        let mut batch = WarmBatch::default();
        self.warm_index(frames, &mut batch);
        self.warm_entries(&batch)
    }

    /// The first half of [`Engine::warm`]: the lookup hashes of `frames` (at most [`WARM_MAX`]) into
    /// `batch`, and their index slots prefetched (nothing when the table is small).
    pub fn warm_index<'a>(&self, frames: impl IntoIterator<Item = (u32, &'a [u8])>, batch: &mut WarmBatch) {
        batch.n = 0;
        if self.ct.len() < WARM_FROM_ENTRIES {
            return;
        }
        for (linktype, frame) in frames.into_iter().take(WARM_MAX) {
            // A peek at the flow, not a decode: a wrong hint only warms the wrong lines.
            let Ok(f) = wire::link::strip_link(linktype, frame) else { continue };
            let Some(flow) = wire::peek_flow4(f.ip) else { continue };
            if let Some(slot) = batch.hashes.get_mut(batch.n) {
                *slot = Conntrack::lookup_hash(&flow);
                batch.n += 1;
            }
        }
        self.ct.warm_slots(batch.hashes());
    }

    /// The second half of [`Engine::warm`]: the entries `batch`'s slots name, prefetched.
    pub fn warm_entries(&self, batch: &WarmBatch) -> u64 {
        self.ct.warm_entries(batch.hashes())
    }

    /// One IP datagram (no link layer).
    pub fn handle_ip(&mut self, now: Time, bytes: &[u8], pkttype: PktType) -> Decision {
        let mut d = Decision::default();
        let now = self.begin(now);
        self.handle_ip_at(now, bytes, pkttype, bytes.len(), &mut d);
        self.stats.peak_entries = self.stats.peak_entries.max(self.ct.len());
        d
    }

    /// A packet arrives at `now`: count it, move the clock (never backwards) and expire what is due. The
    /// packet's time.
    fn begin(&mut self, now: Time) -> Time {
        self.stats.packets += 1;
        let now = self.advance(now);
        self.expire_due();
        now
    }

    /// Expire what is due at the engine's clock, if anything is (a constant-time check first).
    fn expire_due(&mut self) {
        let now = self.now;
        // Conntrack's check is constant time and no later than its next expiry.
        let due = |t: Option<Time>| t.is_some_and(|t| t <= now);
        if due(self.ct.next_check()) || due(self.defrag.poll_timeout()) {
            self.ct.handle_timeout(now);
            self.defrag.handle_timeout(now);
        }
    }

    /// `wire_len`: the datagram's length as received (at least the captured bytes).
    fn handle_ip_at(
        &mut self,
        now: Time,
        bytes: &[u8],
        pkttype: PktType,
        wire_len: usize,
        out: &mut Decision,
    ) {
        // Borrowed from the result, not moved out of it (a moved copy of a freshly written packet stalls).
        let decoded = wire::decode_ip(bytes);
        let pkt = match &decoded {
            Ok(p) => p,
            Err(e) => return out.reset(Disposition::Undecodable { reason: e.to_string() }),
        };
        if !pkt.is_v4() && self.ruleset6.is_none() {
            return out.reset(Disposition::NotFiltered { reason: "IPv6: no IPv6 ruleset" });
        }
        // ip_rcv_core validates the header of packets arriving from a device before NF_INET_PRE_ROUTING: a bad
        // header checksum (e.g. a capture taken on the sender with checksum offload) never reaches netfilter.
        // Locally generated packets get their header checksum filled in by the stack. A packet is locally
        // generated exactly when its source is local (the OUTPUT and loopback paths of the routing decision).
        let src_local = self.host.is_local(&pkt.ip.src);
        let input_drop = if src_local {
            None
        } else if pkt.is_v4() && !wire::checksum::ipv4_header_ok(bytes) {
            Some("bad IPv4 header checksum")
        } else if wire_len < pkt.ip.total_len {
            // ... and it drops a datagram shorter on the wire than its header's total length.
            Some("truncated: shorter on the wire than its IP header says")
        } else {
            None
        };
        if let Some(reason) = input_drop {
            out.reset(Disposition::IpInputDrop { reason });
            out.verdict = Some(Verdict::Drop);
            out.flow = Some(crate::decision::FlowSummary::of(pkt));
            return;
        }
        // Defragmentation runs first (priority -400), before the raw table: the rules and conntrack only ever
        // see whole datagrams (nf_defrag_ipv4).
        if pkt.ip.frag.is_some() {
            match self.defrag.handle_fragment(now, pkt) {
                wire::defrag::DefragResult::Held => return out.reset(Disposition::FragmentHeld),
                wire::defrag::DefragResult::Unchanged => {}
                wire::defrag::DefragResult::Dropped { reason } => {
                    return out.reset(Disposition::FragmentDropped { reason })
                }
                wire::defrag::DefragResult::Complete(whole) => {
                    return match wire::decode_ip(&whole) {
                        Ok(p) => {
                            // The route is decided once per datagram (a reassembled one has its fragments'
                            // addresses).
                            let route = self.routes.classify(&self.host, p.ip.src, p.ip.dst);
                            self.filter(now, &p, pkttype, route, out)
                        }
                        Err(e) => out.reset(Disposition::Undecodable { reason: e.to_string() }),
                    };
                }
            }
        }
        let (pre, route) = match self.express(now, pkt, pkttype, src_local, out) {
            Lane::Done => return,
            Lane::NotTaken => (None, None),
            Lane::Tracked(r, route) => (Some(r), route),
        };
        let route = match route {
            Some(r) => r,
            None => self.routes.classify(&self.host, pkt.ip.src, pkt.ip.dst),
        };
        self.filter_from(now, pkt, pkttype, route, out, pre)
    }

    /// The established-flow express lane, for a whole datagram whose path's first hook (OUTPUT for a local
    /// source, else PREROUTING) has no raw chain: then raw changes nothing and conntrack-in runs first. When it
    /// finds an ESTABLISHED packet whose entry direction carries a remembered path ([`crate::fastpath`]) and
    /// whose confirm hook has nothing to do, the decision is written here, exactly as the full walk would write
    /// it, without building the walk's state. The direction's lane tag also holds its routing decision (the
    /// same for every packet of the direction: same addresses, and the host never changes), so such a packet
    /// is not routed again. Otherwise the caller continues the walk after conntrack-in with its result and
    /// the route, when the lane had to find it ([`Lane::Tracked`]), or from the start when the lane did not
    /// apply.
    fn express(
        &mut self,
        now: Time,
        pkt: &Packet<'_>,
        pkttype: PktType,
        src_local: bool,
        out: &mut Decision,
    ) -> Lane {
        if !self.fast_path || self.tracing {
            return Lane::NotTaken;
        }
        let (first_hook, ct_hook) = match src_local {
            true => (Hook::Output, conntrack::Hook::LocalOut),
            false => (Hook::PreRouting, conntrack::Hook::PreRouting),
        };
        let v4 = pkt.is_v4();
        if self.ruleset_for(v4).is_none_or(|rs| rs.has_chain(Table::Raw, first_hook)) {
            return Lane::NotTaken;
        }
        let r = self.ct.handle_packet(now, pkt, ct_hook, None);
        let InResult::Tracked { id, info, note } = r else { return Lane::Tracked(r, None) };
        let Some((reply, dir)) = established_dir(info) else { return Lane::Tracked(r, None) };
        let Some(facts) = self.ct.fast_facts(id, dir).filter(|f| f.settled) else {
            return Lane::Tracked(r, None);
        };
        // The direction's remembered path and route, or the route found now (and a shared path, below).
        let (tag, route) = match self.paths.lane(facts.tag) {
            Some((tag, route)) => (tag, route),
            None => (0, self.routes.classify(&self.host, pkt.ip.src, pkt.ip.dst)),
        };
        let (kind, in_if, out_if) = route;
        // (A forwarded packet whose TTL would expire takes the full path.)
        let Some(path) = path_of(kind).filter(|&p| p != PacketPath::Forward || pkt.ip.ttl > 1) else {
            return Lane::Tracked(r, Some(route));
        };
        // No raw chain ran: the skb mark is still 0.
        let key = self.key_of(pkt, pkttype, path, reply, &facts, 0);
        let adopted = tag == 0;
        let tag = match adopted {
            true => match self.paths.shared(key) {
                Some(t) => t,
                None => return Lane::Tracked(r, Some(route)),
            },
            false => tag,
        };
        let Some((p, name)) = self.paths.lookup(tag, key) else {
            return Lane::Tracked(r, Some(route));
        };
        let state = match (v4, self.ruleset6.as_mut()) {
            (false, Some((_, st))) => st,
            _ => &mut self.rule_state,
        };
        state.count_recorded(&p.counts, pkt);
        // The path's own reference to its deciding rule: cloned only when the decision names another.
        match name {
            Some(r) if out.rule.as_ref().is_some_and(|o| same_ref(o, r)) => {}
            _ => out.rule = name.cloned(),
        }
        self.paths.hits += 1;
        if adopted {
            // Later packets of this direction find the path, and their route, directly.
            self.tag_lane(id, dir, tag, route);
        }
        out.reset_keeping_rule_and_flow(Disposition::Filtered);
        out.path = Some(path);
        out.in_iface = iface_label(&self.iface_names, in_if);
        out.out_iface = iface_label(&self.iface_names, out_if);
        crate::decision::FlowSummary::write(&mut out.flow, pkt);
        out.verdict = Some(Verdict::Accept);
        out.ctstate = Some(CtStateLabel::Established);
        out.reply_dir = reply;
        out.ct_note = note;
        Lane::Done
    }

    /// Make `slot` name rule `id` of the ruleset that decided (`v6`: the IPv6 one, when there is one),
    /// or nothing. A slot already naming it is left alone (no reference-count traffic: an atomic per
    /// packet stalls on the stores of a new entry).
    fn name_rule(&mut self, v6: bool, id: Option<RuleId>, slot: &mut Option<RuleRef>) {
        let Some(id) = id else {
            *slot = None;
            return;
        };
        let v6 = v6 && self.ruleset6.is_some();
        let rs = match (v6, &self.ruleset6) {
            (true, Some((r6, _))) => r6,
            _ => &self.ruleset,
        };
        self.named.write(v6, id, rs, slot);
    }

    /// Walk the hooks for a whole (reassembled) datagram.
    /// `route`: the host model's classification of the datagram (path, in and out interfaces).
    fn filter(
        &mut self,
        now: Time,
        pkt: &Packet<'_>,
        pkttype: PktType,
        route: Route,
        decision: &mut Decision,
    ) {
        self.filter_from(now, pkt, pkttype, route, decision, None)
    }

    /// [`Engine::filter`]; with `pre`, raw (which has no chain for the path's first hook) and
    /// conntrack-in already ran ([`Engine::express`]) and `pre` is conntrack-in's result.
    fn filter_from(
        &mut self,
        now: Time,
        pkt: &Packet<'_>,
        pkttype: PktType,
        route: Route,
        decision: &mut Decision,
        pre: Option<InResult>,
    ) {
        let (route, in_if, out_if) = route;
        let path = match route {
            PathKind::Input => PacketPath::Input,
            PathKind::Output => PacketPath::Output,
            PathKind::Forward => PacketPath::Forward,
            PathKind::Loopback => PacketPath::Loopback,
            PathKind::Unrouted(_) => PacketPath::Prerouting,
        };
        let mut walk = Walk {
            mark: 0,
            ct: CtMatch::Invalid,
            conn: None,
            untracked: false,
            template: None,
            in_iface: in_if,
            out_iface: out_if,
            filter_rule: None,
            last_rule: None,
            logs: Vec::new(),
            ct_reason: None,
            ct_note: None,
            trace: self.tracing.then(Vec::new),
            view_stale: false,
            recording: None,
            fast_tag: 0,
            pre,
        };
        // The previous decision's rule is kept until this one is named: it is left alone when this one names
        // the same.
        decision.reset_keeping_rule_and_flow(Disposition::Filtered);
        decision.path = Some(path);
        decision.in_iface = iface_label(&self.iface_names, in_if);
        decision.out_iface = iface_label(&self.iface_names, out_if);
        crate::decision::FlowSummary::write(&mut decision.flow, pkt);
        if let PathKind::Unrouted(why) = route {
            decision.route_reason = Some(why.reason());
        }

        let result = self.walk(now, pkt, pkttype, path, &mut walk, decision);
        // Confirmation (nf_confirm, last hook) happens only if every hook accepted; otherwise the unconfirmed
        // entry dies with the packet (reference §1.4).
        let verdict = match result {
            Ok(()) => Verdict::Accept,
            Err((v, rule)) => {
                if let Some((id, _)) = walk.conn {
                    self.ct.discard(id);
                }
                decision.rule = rule;
                match v {
                    rules::Verdict::Reject(with) => {
                        decision.reject = Some(reject_reply(pkt, with.name(), &self.host));
                        Verdict::Reject
                    }
                    _ => Verdict::Drop,
                }
            }
        };
        if verdict == Verdict::Accept {
            let remembered = self.paths.get(walk.fast_tag).and_then(|p| p.filter_rule.or(p.last_rule));
            let id = remembered.or(walk.filter_rule).or(walk.last_rule);
            self.name_rule(!pkt.is_v4(), id, &mut decision.rule);
        }
        decision.verdict = Some(verdict);
        // A packet conntrack itself dropped never got a state (NF_DROP in conntrack-in).
        match walk.conn.filter(|_| walk.fast_tag != 0) {
            Some((_, info)) => {
                decision.ctstate = Some(CtStateLabel::Established);
                decision.reply_dir = info == CtInfo::EstablishedReply;
            }
            None => {
                decision.ctstate = if decision.ct_dropped { None } else { Some(label(&walk.ct)) };
                decision.reply_dir = matches!(&walk.ct, CtMatch::Tracked(v) if v.reply_dir);
            }
        }
        // RELATED because an expectation matched (not an ICMP error): name the expectation.
        if let Some((id, CtInfo::Related)) = walk.conn {
            decision.expectation = self
                .ct
                .conn(id)
                .filter(|c| c.l4proto() == pkt.ip.proto)
                .and_then(|c| c.expectation())
                .map(str::to_string);
        }
        decision.ct_reason = walk.ct_reason;
        decision.ct_note = walk.ct_note;
        if let Some(t) = walk.trace.take() {
            decision.trace = t;
        }
        if !walk.logs.is_empty() {
            decision.logs = walk.logs;
        }
    }

    /// Runs the tables of `path` in hook order. `Err` carries the terminal verdict and the rule that gave it.
    fn walk(
        &mut self,
        now: Time,
        pkt: &Packet<'_>,
        pkttype: PktType,
        path: PacketPath,
        walk: &mut Walk,
        decision: &mut Decision,
    ) -> Result<(), (rules::Verdict, Option<RuleRef>)> {
        let pre = walk.pre.take();
        let first_hook = match path {
            PacketPath::Input | PacketPath::Forward | PacketPath::Prerouting => Hook::PreRouting,
            PacketPath::Output | PacketPath::Loopback => Hook::Output,
        };
        // raw: before conntrack, so state matches see "no ct" (INVALID). With `pre`, raw had no chain.
        if pre.is_none() {
            self.table(now, pkt, pkttype, Table::Raw, first_hook, walk)?;
        }
        // conntrack-in / conntrack-local.
        if walk.untracked {
            walk.ct = CtMatch::Untracked;
        } else {
            let r = match pre {
                Some(r) => r,
                None => self.ct.handle_packet(now, pkt, ct_hook(path), walk.template.as_ref()),
            };
            match r {
                InResult::Tracked { id, info, note } => {
                    walk.conn = Some((id, info));
                    walk.ct_note = note;
                    if let Some((key, tag, adopted)) = self.fast_key(pkt, pkttype, path, walk, id, info) {
                        if self.fast_walk(now, pkt, key, tag, walk, decision)? {
                            if adopted {
                                self.tag_walk_lane(id, key, tag, walk);
                            }
                            return Ok(());
                        }
                        walk.recording = Some(key);
                        self.paths.rec.clear();
                    }
                    walk.ct = self.view(now, id, info);
                }
                InResult::Untracked => {
                    // ICMPv6 neighbour discovery and MLD: conntrack itself leaves them untracked.
                    walk.ct = CtMatch::Untracked;
                }
                InResult::Invalid { reason } => {
                    walk.ct = CtMatch::Invalid;
                    walk.ct_reason = Some(reason);
                }
                InResult::Drop { reason } => {
                    walk.ct_reason = Some(reason);
                    decision.ct_dropped = true;
                    return Err((rules::Verdict::Drop, None));
                }
            }
        }
        if let Some(lines) = walk.trace.as_mut() {
            let state = label(&walk.ct).as_str();
            let line = match (walk.ct_reason, walk.ct_note) {
                (Some(r), _) => format!("conntrack:{state} ({r})"),
                (None, Some(n)) => format!("conntrack:{state} (ignored: {n})"),
                (None, None) => format!("conntrack:{state}"),
            };
            lines.push(line);
        }
        let hooks: &[(Table, Hook)] = match path {
            PacketPath::Input => &[
                (Table::Mangle, Hook::PreRouting),
                (Table::Mangle, Hook::Input),
                (Table::Filter, Hook::Input),
            ],
            PacketPath::Forward => &[
                (Table::Mangle, Hook::PreRouting),
                (Table::Mangle, Hook::Forward),
                (Table::Filter, Hook::Forward),
                (Table::Mangle, Hook::PostRouting),
            ],
            PacketPath::Output | PacketPath::Loopback => &[
                (Table::Mangle, Hook::Output),
                (Table::Filter, Hook::Output),
                (Table::Mangle, Hook::PostRouting),
            ],
            PacketPath::Prerouting => &[(Table::Mangle, Hook::PreRouting)],
        };
        // ip_forward() decrements the TTL after routing and before the FORWARD hook, and drops a packet whose
        // TTL would expire (time exceeded) without running FORWARD at all.
        let forwarded = match path {
            PacketPath::Forward => {
                let mut p = pkt.clone();
                p.ip.ttl = p.ip.ttl.saturating_sub(1);
                Some(p)
            }
            _ => None,
        };
        // The rule of the last non-filter table before conntrack (raw), kept aside while the tables after it
        // record theirs.
        let raw_last = if walk.recording.is_some() { walk.last_rule.take() } else { None };
        for &(table, hook) in hooks {
            let seen = match (&forwarded, hook) {
                (Some(f), Hook::Forward | Hook::PostRouting) => {
                    if pkt.ip.ttl <= 1 {
                        decision.route_reason = Some("not forwarded: TTL exceeded (ip_forward)");
                        return Err((rules::Verdict::Drop, None));
                    }
                    f
                }
                _ => pkt,
            };
            self.table(now, seen, pkttype, table, hook, walk)?;
        }
        if path == PacketPath::Prerouting {
            // The routing decision drops it: no rule decides, and the unconfirmed entry dies with it.
            return Err((rules::Verdict::Drop, None));
        }
        if let Some(key) = walk.recording {
            self.remember(key, walk);
            if walk.last_rule.is_none() {
                walk.last_rule = raw_last;
            }
        }
        self.confirm(now, pkt, walk, decision)?;
        if let (Some((id, CtInfo::New)), true, Some(kind)) = (walk.conn, decision.ct_created, kind_of(path)) {
            // The new entry's original direction keeps its route (a lane without a path yet): its first
            // ESTABLISHED packet takes a flow-independent path without being routed again.
            if self.fast_path {
                self.tag_lane(id, conntrack::Dir::Original, 0, (kind, walk.in_iface, walk.out_iface));
            }
        }
        if path == PacketPath::Loopback {
            // Back in through `lo`: the skb still carries its ct, conntrack-in does nothing, and raw's state
            // matches already see the real state (reference §9 T13).
            walk.in_iface = Some(Iface::LO);
            walk.out_iface = None;
            let filter_out = walk.filter_rule.take();
            for (table, hook) in [
                (Table::Raw, Hook::PreRouting),
                (Table::Mangle, Hook::PreRouting),
                (Table::Mangle, Hook::Input),
                (Table::Filter, Hook::Input),
            ] {
                self.table(now, pkt, pkttype, table, hook, walk)?;
            }
            if walk.filter_rule.is_none() {
                walk.filter_rule = filter_out;
            }
        }
        Ok(())
    }

    /// The key under which this packet's walk after conntrack may be remembered or looked up, when the fast
    /// path applies: ESTABLISHED in either direction, on INPUT, OUTPUT or FORWARD (a forwarded packet whose TTL
    /// would expire takes the full path), not traced, no template or NOTRACK from raw.
    fn fast_key(
        &self,
        pkt: &Packet<'_>,
        pkttype: PktType,
        path: PacketPath,
        walk: &Walk,
        id: conntrack::ConnId,
        info: CtInfo,
    ) -> Option<(PathKey, u16, bool)> {
        if !self.fast_path || walk.trace.is_some() || walk.untracked {
            return None;
        }
        if pkt.ip.frag.is_some() {
            return None;
        }
        self.path_key(pkt, pkttype, path, id, info, walk.mark)
            .map(|(key, tag, _, adopted)| (key, tag, adopted))
    }

    /// The key an ESTABLISHED packet's remembered path is looked up under on INPUT, OUTPUT or FORWARD (a
    /// forwarded packet whose TTL would expire takes the full path), with skb mark `mark` entering the
    /// tables after conntrack; with its entry direction's path tag (or a flow-independent path's, which the
    /// direction then adopts: the last flag), and whether the entry's confirm hook has nothing to do.
    fn path_key(
        &self,
        pkt: &Packet<'_>,
        pkttype: PktType,
        path: PacketPath,
        id: conntrack::ConnId,
        info: CtInfo,
        mark: u32,
    ) -> Option<(PathKey, u16, bool, bool)> {
        let (reply, dir) = established_dir(info)?;
        match path {
            PacketPath::Input | PacketPath::Output => {}
            PacketPath::Forward if pkt.ip.ttl > 1 => {}
            _ => return None,
        }
        let facts = self.ct.fast_facts(id, dir)?;
        let key = self.key_of(pkt, pkttype, path, reply, &facts, mark);
        // The direction's lane names its path (and route: the same path here). A direction without one takes a
        // flow-independent path recorded under the same key, if there is one (adopted: the caller tags the
        // direction with it once taken).
        let (tag, adopted) = match self.paths.lane(facts.tag) {
            Some((t, (kind, _, _))) if t != 0 && path_of(kind) == Some(path) => (t, false),
            _ => self.paths.shared(key).map_or((0, false), |t| (t, true)),
        };
        Some((key, tag, facts.settled, adopted))
    }

    /// The key of an ESTABLISHED packet's path (`reply`: its direction) from its entry's facts, with skb
    /// mark `mark` entering the tables after conntrack.
    fn key_of(
        &self,
        pkt: &Packet<'_>,
        pkttype: PktType,
        path: PacketPath,
        reply: bool,
        facts: &conntrack::FastFacts,
        mark: u32,
    ) -> PathKey {
        PathKey {
            v4: pkt.is_v4(),
            path,
            reply,
            status: facts.status,
            ctmark: facts.mark,
            mark,
            pkttype: Some(rules_pkttype(pkttype, pkt, &self.host)),
        }
    }

    /// The ruleset for the packet's family: `None` for IPv6 without an IPv6 ruleset.
    fn ruleset_for(&self, v4: bool) -> Option<&Ruleset> {
        match (v4, &self.ruleset6) {
            (true, _) => Some(&self.ruleset),
            (false, r6) => r6.as_ref().map(|(r, _)| r),
        }
    }

    /// The fast path: if the entry's direction carries a remembered path recorded under `key`, grow its
    /// counters, name its rules and run the confirm hook; `Ok(true)` then ends the walk.
    fn fast_walk(
        &mut self,
        now: Time,
        pkt: &Packet<'_>,
        key: PathKey,
        tag: u16,
        walk: &mut Walk,
        decision: &mut Decision,
    ) -> Result<bool, (rules::Verdict, Option<RuleRef>)> {
        let Some((p, _)) = self.paths.lookup(tag, key) else {
            return Ok(false);
        };
        let state = match (key.v4, self.ruleset6.as_mut()) {
            (false, Some((_, st))) => st,
            _ => &mut self.rule_state,
        };
        state.count_recorded(&p.counts, pkt);
        // The rules it names are read from the path when the decision is made.
        walk.fast_tag = tag;
        self.paths.hits += 1;
        self.confirm(now, pkt, walk, decision)?;
        Ok(true)
    }

    /// After a walk through the tables after conntrack, recorded under `key`, accepted: remember it for the
    /// entry's direction if it was flow-invariant (then it had no effects: the key still holds).
    fn remember(&mut self, key: PathKey, walk: &Walk) {
        if !self.paths.rec.is_flow_invariant() {
            return;
        }
        let Some((id, _)) = walk.conn else { return };
        let rs = match (key.v4, &self.ruleset6) {
            (false, Some((r6, _))) => r6,
            _ => &self.ruleset,
        };
        let tag = self.paths.remember(key, walk.filter_rule, walk.last_rule, |id| rs.rule_ref(id));
        if let Some(tag) = tag {
            self.tag_walk_lane(id, key, tag, walk);
        }
    }

    /// Tag entry `id`'s direction `dir` with the lane of path `tag` (0: none yet) and `route`.
    fn tag_lane(&mut self, id: conntrack::ConnId, dir: conntrack::Dir, tag: u16, route: Route) {
        if let Some(lane) = self.paths.lane_tag(tag, route) {
            self.ct.set_tag(id, dir, lane);
        }
    }

    /// [`Engine::tag_lane`] for the direction (`key.reply`) and route of a walk on `key.path`.
    fn tag_walk_lane(&mut self, id: conntrack::ConnId, key: PathKey, tag: u16, walk: &Walk) {
        let Some(kind) = kind_of(key.path) else { return };
        let dir = if key.reply { conntrack::Dir::Reply } else { conntrack::Dir::Original };
        self.tag_lane(id, dir, tag, (kind, walk.in_iface, walk.out_iface));
    }

    /// The confirm hook (nf_confirm): the entry's helper first (except for RELATED_REPLY packets), then
    /// confirmation. A helper that drops the packet (FTP partial match, expectation refused) ends the walk: the
    /// packet is dropped by conntrack and its unconfirmed entry dies with it.
    fn confirm(
        &mut self,
        now: Time,
        pkt: &Packet<'_>,
        walk: &mut Walk,
        decision: &mut Decision,
    ) -> Result<(), (rules::Verdict, Option<RuleRef>)> {
        if let Some((id, info)) = walk.conn {
            match self.ct.confirm_hook(now, id, info, pkt) {
                ConfirmOutcome::Settled => {}
                ConfirmOutcome::Drop(reason) => {
                    walk.ct_reason = Some(reason);
                    if let Some(lines) = walk.trace.as_mut() {
                        lines.push(format!("conntrack:helper drop ({reason})"));
                    }
                    return Err((rules::Verdict::Drop, None));
                }
                ConfirmOutcome::Confirmed { created } => {
                    if created && matches!(info, CtInfo::New | CtInfo::Related) {
                        decision.ct_created = true;
                    }
                }
            }
            walk.view_stale = true;
        }
        Ok(())
    }

    /// Build the rules' view of the packet's conntrack entry (its tuples, lifetime and helpers only when a rule
    /// reads them: `view_details`).
    fn view(&self, now: Time, id: conntrack::ConnId, info: CtInfo) -> CtMatch {
        let Some(c) = self.ct.conn(id) else { return CtMatch::Invalid };
        let state = match info {
            CtInfo::New => CtState::New,
            CtInfo::Established | CtInfo::EstablishedReply => CtState::Established,
            CtInfo::Related | CtInfo::RelatedReply => CtState::Related,
        };
        if !self.view_details {
            // No rule reads the rest: it is left empty (building the tuples costs more than the walk).
            let none = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
            return CtMatch::Tracked(CtView {
                state,
                reply_dir: matches!(info, CtInfo::EstablishedReply | CtInfo::RelatedReply),
                status: c.status().bits(),
                l4proto: c.l4proto(),
                orig_src: none,
                orig_dst: none,
                repl_src: none,
                repl_dst: none,
                orig_sport: None,
                orig_dport: None,
                repl_sport: None,
                repl_dport: None,
                expires_secs: 0,
                mark: c.mark(),
                helper: None,
                master_helper: None,
            });
        }
        let (o, r) = (c.orig(), c.reply());
        let ports = |t: &conntrack::Tuple| match t.l4 {
            conntrack::TupleL4::Ports { sport, dport } => (Some(sport), Some(dport)),
            _ => (None, None),
        };
        let (osp, odp) = ports(&o);
        let (rsp, rdp) = ports(&r);
        CtMatch::Tracked(CtView {
            state,
            reply_dir: matches!(info, CtInfo::EstablishedReply | CtInfo::RelatedReply),
            status: c.status().bits(),
            l4proto: c.l4proto(),
            orig_src: o.src,
            orig_dst: o.dst,
            repl_src: r.src,
            repl_dst: r.dst,
            orig_sport: osp,
            orig_dport: odp,
            repl_sport: rsp,
            repl_dport: rdp,
            expires_secs: c.remaining_secs(now),
            mark: c.mark(),
            helper: c.helper().map(str::to_string),
            // xt_helper looks at the master's helper only; expectations (issue #5) fill this in.
            master_helper: c.master_helper().map(str::to_string),
        })
    }

    /// Runs one table's chain for `hook`, applying the non-terminating targets' effects.
    #[inline]
    fn table(
        &mut self,
        now: Time,
        pkt: &Packet<'_>,
        pkttype: PktType,
        table: Table,
        hook: Hook,
        walk: &mut Walk,
    ) -> Result<(), (rules::Verdict, Option<RuleRef>)> {
        if !self.ruleset_for(pkt.is_v4()).is_some_and(|rs| rs.has_chain(table, hook)) {
            return Ok(());
        }
        self.run_table(now, pkt, pkttype, table, hook, walk)
    }

    /// [`Engine::table`] for a table with a chain for `hook` (out of line: a table without one costs
    /// only the test).
    #[inline(never)]
    fn run_table(
        &mut self,
        now: Time,
        pkt: &Packet<'_>,
        pkttype: PktType,
        table: Table,
        hook: Hook,
        walk: &mut Walk,
    ) -> Result<(), (rules::Verdict, Option<RuleRef>)> {
        // Refresh the view when an earlier table changed the ctmark or confirmation changed the status (the
        // remaining lifetime cannot change within one packet's walk: the clock does not move).
        if let (Some((id, info)), true) = (walk.conn, walk.view_stale) {
            walk.ct = self.view(now, id, info);
            walk.view_stale = false;
        }
        let mut ctx = PacketCtx {
            now,
            pkt,
            in_iface: iface_name(&self.host, walk.in_iface),
            out_iface: iface_name(&self.host, walk.out_iface),
            mark: walk.mark,
            ct: &mut walk.ct,
            pkttype: rules_pkttype(pkttype, pkt, &self.host),
            host: &*self.host,
            effects: Vec::new(),
            trace: walk.trace.as_ref().map(|_| Vec::new()),
        };
        let rec = if walk.recording.is_some() { Some(&mut self.paths.rec) } else { None };
        let (rs, (verdict, rule)) = match (pkt.is_v4(), self.ruleset6.as_mut()) {
            (false, Some((r, st))) => (&*r, r.evaluate_id(table, hook, &mut ctx, st, rec)),
            _ => (&self.ruleset, self.ruleset.evaluate_id(table, hook, &mut ctx, &mut self.rule_state, rec)),
        };
        let effects = std::mem::take(&mut ctx.effects);
        if let (Some(lines), Some(entries)) = (walk.trace.as_mut(), ctx.trace.take()) {
            lines.extend(entries.iter().map(|e| e.to_string()));
        }
        walk.mark = ctx.mark;
        for e in effects {
            match e {
                Effect::SetCtMark(m) => {
                    if let Some((id, _)) = walk.conn {
                        self.ct.set_mark(id, m);
                        walk.view_stale = true;
                    }
                }
                Effect::Notrack => {
                    // NOTRACK / CT --notrack: only while no ct is attached (xt_CT: a packet that already carries a
                    // ct, e.g. on loopback, is left alone).
                    if walk.conn.is_none() {
                        walk.untracked = true;
                        walk.ct = CtMatch::Untracked;
                    }
                }
                Effect::CtTemplate(t) => {
                    if walk.conn.is_none() {
                        let zone_dir = match t.zone_dir {
                            rules::ZoneDir::Both => conntrack::ZoneDir::Both,
                            rules::ZoneDir::Orig => conntrack::ZoneDir::Orig,
                            rules::ZoneDir::Reply => conntrack::ZoneDir::Reply,
                        };
                        walk.template =
                            Some(conntrack::Template { zone: t.zone, zone_dir, helper: t.helper });
                    }
                }
                Effect::Log { log, rule } => {
                    walk.logs.push(format!("{rule} {}", log.prefix).trim_end().to_string())
                }
                Effect::SetMark(_) => {}
            }
        }
        match verdict {
            rules::Verdict::Accept => {
                if table == Table::Filter {
                    walk.filter_rule = Some(rule);
                } else {
                    walk.last_rule = Some(rule);
                }
                Ok(())
            }
            v => Err((v, Some(rs.rule_ref(rule)))),
        }
    }
}

/// The routing decision of a path the fast path remembers (INPUT, OUTPUT, FORWARD).
pub(crate) fn kind_of(path: PacketPath) -> Option<PathKind> {
    match path {
        PacketPath::Input => Some(PathKind::Input),
        PacketPath::Output => Some(PathKind::Output),
        PacketPath::Forward => Some(PathKind::Forward),
        PacketPath::Loopback | PacketPath::Prerouting => None,
    }
}

/// The path of a routing decision the fast path remembers (INPUT, OUTPUT, FORWARD).
pub(crate) fn path_of(kind: PathKind) -> Option<PacketPath> {
    match kind {
        PathKind::Input => Some(PacketPath::Input),
        PathKind::Output => Some(PacketPath::Output),
        PathKind::Forward => Some(PacketPath::Forward),
        PathKind::Loopback | PathKind::Unrouted(_) => None,
    }
}

/// The direction of an ESTABLISHED packet (reply or not, and as conntrack names it); `None` otherwise.
fn established_dir(info: CtInfo) -> Option<(bool, conntrack::Dir)> {
    match info {
        CtInfo::Established => Some((false, conntrack::Dir::Original)),
        CtInfo::EstablishedReply => Some((true, conntrack::Dir::Reply)),
        _ => None,
    }
}

fn label(ct: &CtMatch) -> CtStateLabel {
    match ct {
        CtMatch::Invalid => CtStateLabel::Invalid,
        CtMatch::Untracked => CtStateLabel::Untracked,
        CtMatch::Tracked(v) => match v.state {
            CtState::New => CtStateLabel::New,
            CtState::Established => CtStateLabel::Established,
            CtState::Related => CtStateLabel::Related,
        },
    }
}

/// `skb->pkt_type` as xt_pkttype sees it: from the link layer when the capture tells (Ethernet destination,
/// SLL packet type), else from the destination address class.
fn rules_pkttype(t: PktType, pkt: &Packet<'_>, host: &Host) -> rules::PktType {
    match t {
        PktType::Host | PktType::Outgoing => rules::PktType::Host,
        PktType::Broadcast => rules::PktType::Broadcast,
        PktType::Multicast => rules::PktType::Multicast,
        PktType::OtherHost => rules::PktType::OtherHost,
        PktType::Unknown => match host.addr_kind(pkt.ip.dst) {
            AddrKind::Broadcast => rules::PktType::Broadcast,
            AddrKind::Multicast => rules::PktType::Multicast,
            _ => rules::PktType::Host,
        },
    }
}

/// What REJECT would send back (nf_reject_ipv4): no RST in answer to an RST, no ICMP error about an ICMP error,
/// nothing for non-first fragments or for broadcast/multicast destinations.
fn reject_reply(pkt: &Packet<'_>, kind: &str, host: &Host) -> RejectReply {
    let non_first_frag = pkt.ip.frag.is_some_and(|f| !f.is_first());
    let sent = if kind == "tcp-reset" {
        matches!(&pkt.l4, wire::L4::Tcp(t) if !t.flags.rst()) && !non_first_frag
    } else {
        // icmp_send / icmpv6_send never answer an ICMP error.
        let dst_kind = host.addr_kind(pkt.ip.dst);
        !pkt.is_icmp_error()
            && !non_first_frag
            && !matches!(dst_kind, AddrKind::Broadcast | AddrKind::Multicast)
            && !matches!(pkt.ip.src, IpAddr::V4(a) if a.is_broadcast() || a.is_multicast() || a.is_unspecified())
            && !matches!(pkt.ip.src, IpAddr::V6(a) if a.is_multicast() || a.is_unspecified())
    };
    RejectReply { kind: kind.to_string(), to: pkt.ip.src, sent }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    //! Hook-order tests written as packet exchanges with explicit times (host 192.0.2.10 on eth0).
    use super::*;
    use etherparse::PacketBuilder;

    const HOST: [u8; 4] = [192, 0, 2, 10];
    const PEER: [u8; 4] = [198, 51, 100, 7];

    /// The route memo answers exactly what the host model answers, on hits and misses, for every kind of
    /// address pair, on the one-interface host and on the router.
    #[test]
    fn route_cache_equals_the_host_model() {
        let router = Host::from_toml(include_str!("../../../examples/router/host.toml")).unwrap();
        let plain = Host::with_locals(&["192.0.2.10/24".parse().unwrap()]);
        let addrs: Vec<IpAddr> = [
            "192.0.2.10",
            "192.0.2.1",
            "192.0.2.255",
            "10.1.0.1",
            "10.1.0.7",
            "10.1.0.255",
            "198.51.100.7",
            "127.0.0.1",
            "224.0.0.1",
            "224.0.0.251",
            "255.255.255.255",
            "0.0.0.0",
            "2001:db8:0:1::10",
            "2001:db8:0:2::5",
            "2001:db8:100::1",
            "ff02::1",
            "fe80::1",
            "::1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        for host in [&router, &plain] {
            let mut cache = RouteCache::new();
            for _round in 0..2 {
                for &a in &addrs {
                    for &b in &addrs {
                        let (k, i, o) = cache.classify(host, a, b);
                        let named = (k, iface_name(host, i), iface_name(host, o));
                        assert_eq!(named, host.classify(a, b), "{a} -> {b}");
                    }
                }
            }
        }
    }

    fn engine(rules: &str) -> Engine {
        let rs = rules::parse(rules).unwrap();
        let host = Host::with_locals(&["192.0.2.10/24".parse().unwrap()]);
        Engine::new(rs, host, conntrack::Config::default())
    }

    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ipv4(src, dst, 64).udp(sport, dport);
        let mut v = Vec::new();
        b.write(&mut v, b"hello").unwrap();
        v
    }

    fn tcp(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        seq: u32,
        ack: Option<u32>,
        syn: bool,
    ) -> Vec<u8> {
        seg(src, dst, sport, dport, seq, ack, syn, &[])
    }

    fn t(ms: u64) -> Time {
        Time::from_secs(1_700_000_000).add_nanos(ms * 1_000_000)
    }

    fn send(e: &mut Engine, ms: u64, pkt: &[u8]) -> Decision {
        e.handle_ip(t(ms), pkt, PktType::Unknown)
    }

    const STATEFUL: &str = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
        -A INPUT -p udp -m udp --dport 53 -j ACCEPT\n\
        -A INPUT -p udp -j REJECT --reject-with icmp-port-unreachable\n\
        -A INPUT -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n";

    #[test]
    fn outbound_then_reply_is_established() {
        let mut e = engine(STATEFUL);
        let d = send(&mut e, 0, &udp(HOST, PEER, 40000, 5000));
        assert_eq!(d.path, Some(PacketPath::Output));
        assert_eq!(d.ctstate, Some(CtStateLabel::New));
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:OUTPUT:policy");
        assert!(d.ct_created);
        let d = send(&mut e, 10, &udp(PEER, HOST, 5000, 40000));
        assert_eq!(d.path, Some(PacketPath::Input));
        assert_eq!(d.in_iface.as_deref(), Some("eth0"));
        assert_eq!((d.verdict, d.ctstate), (Some(Verdict::Accept), Some(CtStateLabel::Established)));
        assert!(d.reply_dir);
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:INPUT:1");
        assert_eq!(e.conntrack().len(), 1);
    }

    /// The first reply of each of `flows` UDP flows out of the host, each after its own request; the
    /// fast path hits before and after the last reply, and the last reply's decision.
    fn first_replies(rules: &str, flows: u16) -> (u64, u64, Decision) {
        let mut e = engine(rules);
        let mut last = None;
        let mut before = 0;
        for f in 0..flows {
            let port = 40000 + f;
            send(&mut e, u64::from(f) * 10, &udp(HOST, PEER, port, 5000));
            before = e.fast_path_stats().0;
            last = Some(send(&mut e, u64::from(f) * 10 + 5, &udp(PEER, HOST, 5000, port)));
        }
        (before, e.fast_path_stats().0, last.unwrap())
    }

    #[test]
    fn a_flow_independent_path_serves_the_first_established_packet_of_other_flows() {
        // INPUT's first rule tests only the state: the first flow's reply walk holds for every flow.
        let (before, after, d) = first_replies(STATEFUL, 3);
        assert_eq!(after, before + 1, "the third flow's first reply took the shared path");
        assert_eq!((d.verdict, d.ctstate), (Some(Verdict::Accept), Some(CtStateLabel::Established)));
        assert!(d.reply_dir);
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:INPUT:1");
        // A protocol test ahead of it: the walk depends on the flow, nothing is shared.
        let proto_first =
            STATEFUL.replace("-A INPUT -m conntrack", "-A INPUT -p tcp -j DROP\n-A INPUT -m conntrack");
        let (before, after, d) = first_replies(&proto_first, 3);
        assert_eq!(after, before, "a flow-dependent walk was shared");
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:INPUT:2");
        // A key-only rule that jumps to a chain testing the flow, then a key-only rule deciding: two
        // counters grew, and the user chain's test depends on the flow.
        let jump = STATEFUL.replace(
            ":OUTPUT ACCEPT [0:0]\n",
            ":OUTPUT ACCEPT [0:0]\n:chk - [0:0]\n-A chk -p udp -m udp --sport 4 -j DROP\n\
             -A INPUT -m conntrack --ctstate ESTABLISHED -j chk\n",
        );
        let (before, after, d) = first_replies(&jump, 3);
        assert_eq!(after, before, "a walk through a user chain was shared");
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:INPUT:2");
    }

    #[test]
    fn warming_asks_for_the_entries_of_known_flows_once_the_table_is_big() {
        let mut e = engine(STATEFUL);
        let flow = |i: u32| {
            let [_, _, a, b] = i.to_be_bytes();
            udp(HOST, [198, 51, a, b], 40000, 5000)
        };
        // A raw frame (link type 101) of each flow.
        let known: Vec<Vec<u8>> = (0..4).map(flow).collect();
        fn frames(v: &[Vec<u8>]) -> Vec<(u32, &[u8])> {
            v.iter().map(|f| (101u32, f.as_slice())).collect()
        }
        send(&mut e, 0, &known[0]);
        assert_eq!(e.warm(frames(&known)), 0, "a small table is not warmed");
        for i in 1..=WARM_FROM_ENTRIES as u32 {
            send(&mut e, 1, &flow(i));
        }
        assert_eq!(e.warm(frames(&known)), 4);
        let unknown: Vec<Vec<u8>> = (0..3).map(|i| udp(HOST, [203, 0, 113, i], 1, 2)).collect();
        assert_eq!(e.warm(frames(&unknown)), 0);
        // The two halves, with other batches in between, are the whole.
        let (mut a, mut b) = (WarmBatch::default(), WarmBatch::default());
        e.warm_index(frames(&known), &mut a);
        e.warm_index(frames(&unknown), &mut b);
        assert_eq!((e.warm_entries(&b), e.warm_entries(&a)), (0, 4));
    }

    #[test]
    fn tuple_lifetime_and_protocol_matches_see_the_entry() {
        let rules = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            -A INPUT -m conntrack --ctstate ESTABLISHED --ctproto udp --ctorigsrc 192.0.2.10 \
            --ctrepldst 192.0.2.10 --ctorigdstport 5000 --ctreplsrcport 5000 --ctexpire 1:30 -j ACCEPT\n\
            -A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT\nCOMMIT\n";
        let mut e = engine(rules);
        send(&mut e, 0, &udp(HOST, PEER, 40000, 5000));
        let d = send(&mut e, 10, &udp(PEER, HOST, 5000, 40000));
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:INPUT:1");
        // Another flow: same tests, other port.
        send(&mut e, 20, &udp(HOST, PEER, 40001, 5001));
        let d = send(&mut e, 30, &udp(PEER, HOST, 5001, 40001));
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:INPUT:2");
    }

    #[test]
    fn rules_of_built_in_chains_are_named_without_reference_counting() {
        let mut e = engine(STATEFUL);
        send(&mut e, 0, &udp(HOST, PEER, 40000, 5000));
        let reply = udp(PEER, HOST, 5000, 40000);
        let mut d = Decision::default();
        let len = reply.len() as u32;
        for ms in [10, 20, 30] {
            e.handle_packet_into(t(ms), 228, &reply, len, &mut d);
            let r = d.rule.as_ref().unwrap();
            assert_eq!(r.to_string(), "filter:INPUT:1");
            // A built-in chain's name is static: naming it per packet costs no reference counting.
            assert!(matches!(r.chain, rules::ChainName::Builtin(Hook::Input)));
        }
        assert!(e.fast_path_stats().0 >= 1);
    }

    #[test]
    fn dropped_first_packet_leaves_no_entry() {
        // The unconfirmed entry dies with the packet (nf_confirm never runs): reference §1.4, §9 T7a.
        let mut e = engine(STATEFUL);
        let d = send(&mut e, 0, &udp(PEER, HOST, 5000, 6000));
        assert_eq!(d.verdict, Some(Verdict::Reject));
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:INPUT:3");
        let r = d.reject.unwrap();
        assert_eq!((r.kind.as_str(), r.sent), ("icmp-port-unreachable", true));
        assert_eq!(e.conntrack().len(), 0);
        assert_eq!(e.conntrack().count(), 0);
        // Accepted: confirmed.
        let d = send(&mut e, 5, &udp(PEER, HOST, 5000, 53));
        assert_eq!(d.verdict, Some(Verdict::Accept));
        assert_eq!(e.conntrack().len(), 1);
    }

    #[test]
    fn raw_table_sees_invalid_and_notrack_gives_untracked() {
        let rules = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            -A PREROUTING -m conntrack --ctstate INVALID -j MARK --set-mark 7\n\
            -A PREROUTING -p udp -m udp --dport 6000 -j NOTRACK\nCOMMIT\n\
            *filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            -A INPUT -m conntrack --ctstate UNTRACKED -m mark --mark 7 -j ACCEPT\nCOMMIT\n";
        let mut e = engine(rules);
        let d = send(&mut e, 0, &udp(PEER, HOST, 5000, 6000));
        assert_eq!((d.verdict, d.ctstate), (Some(Verdict::Accept), Some(CtStateLabel::Untracked)));
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:INPUT:1");
        assert_eq!(e.conntrack().len(), 0);
        let counters = e.rule_state().rule_counters(Table::Raw, "PREROUTING", 1).unwrap();
        assert_eq!(counters.0, 1, "raw saw the packet before conntrack: INVALID");
    }

    #[test]
    fn tcp_reset_not_sent_for_rst_and_rule_order() {
        let mut e = engine(STATEFUL);
        let d = send(&mut e, 0, &tcp(PEER, HOST, 4000, 22, 1, None, true));
        assert_eq!(d.verdict, Some(Verdict::Reject));
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:INPUT:4");
        assert!(d.reject.as_ref().unwrap().sent);
        assert_eq!(e.conntrack().len(), 0);
    }

    #[test]
    fn forward_path_and_connmark() {
        let rules = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
            :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
            -A FORWARD -p udp -j CONNMARK --set-mark 0x5\nCOMMIT\n\
            *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            -A FORWARD -m connmark --mark 0x5 -j ACCEPT\nCOMMIT\n";
        let rs = rules::parse(rules).unwrap();
        let mut host = Host::with_locals(&["192.0.2.10/24".parse().unwrap()]);
        host.set_forwarding(true);
        let mut e = Engine::new(rs, host, conntrack::Config::default());
        let d = send(&mut e, 0, &udp(PEER, [203, 0, 113, 9], 1, 2));
        assert_eq!(d.path, Some(PacketPath::Forward));
        assert_eq!((d.in_iface.as_deref(), d.out_iface.as_deref()), (Some("eth0"), Some("eth0")));
        assert_eq!(d.verdict, Some(Verdict::Accept));
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:FORWARD:1");
        let c = e.conntrack().iter().next().unwrap();
        assert_eq!(c.mark(), 5);
    }

    #[test]
    fn not_for_us_without_forwarding_dies_after_prerouting() {
        // ip_forward=0: ip_route_input_slow has no route for it; only PREROUTING ran and the new entry is
        // never confirmed (found with the kernel oracle on zeek__wikipedia.pcap).
        let rules = "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
            :OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -m conntrack --ctstate NEW\nCOMMIT\n\
            *filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        let mut e = engine(rules);
        for (ms, dst) in [(0, [203, 0, 113, 9]), (1, [224, 0, 0, 251])] {
            let d = send(&mut e, ms, &udp(PEER, dst, 1, 2));
            assert_eq!(d.path, Some(PacketPath::Prerouting));
            assert_eq!(d.verdict, Some(Verdict::Drop));
            assert_eq!(d.rule, None);
            assert!(d.route_reason.is_some());
        }
        assert_eq!(
            e.rule_state().rule_counters(Table::Mangle, "PREROUTING", 1),
            Some((2, 66)),
            "2 × 33-byte datagrams"
        );
        assert_eq!(e.rule_state().policy_counters(Table::Filter, "FORWARD"), Some((0, 0)));
        assert_eq!(e.conntrack().len(), 0);
        assert_eq!(e.conntrack().count(), 0);
    }

    #[test]
    fn forwarding_decrements_ttl_before_forward_and_drops_expiring_packets() {
        let rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            -A FORWARD -m ttl --ttl-eq 63\nCOMMIT\n";
        let rs = rules::parse(rules).unwrap();
        let mut host = Host::with_locals(&["192.0.2.10/24".parse().unwrap()]);
        host.set_forwarding(true);
        let mut e = Engine::new(rs, host, conntrack::Config::default());
        let d = send(&mut e, 0, &udp(PEER, [203, 0, 113, 9], 1, 2));
        assert_eq!(d.verdict, Some(Verdict::Accept));
        assert_eq!(
            e.rule_state().rule_counters(Table::Filter, "FORWARD", 1).unwrap().0,
            1,
            "TTL 64 seen as 63"
        );
        let mut low = udp(PEER, [203, 0, 113, 9], 3, 4);
        low[8] = 1; // TTL 1, with a fixed-up header checksum
        low[10] = 0;
        low[11] = 0;
        let c = wire::checksum::internet_checksum(&low[..20]);
        low[10..12].copy_from_slice(&c.to_be_bytes());
        let d = send(&mut e, 1, &low);
        assert_eq!((d.verdict, d.rule.clone()), (Some(Verdict::Drop), None));
        assert!(d.route_reason.is_some());
        assert_eq!(e.rule_state().policy_counters(Table::Filter, "FORWARD").unwrap().0, 1);
    }

    #[test]
    fn bad_header_checksum_from_the_wire_never_reaches_netfilter() {
        let mut e = engine(STATEWALL_COUNT);
        let mut p = udp(PEER, HOST, 5000, 53);
        p[10] ^= 0xff;
        let d = send(&mut e, 0, &p);
        assert!(matches!(d.disposition, Disposition::IpInputDrop { .. }));
        assert_eq!(d.verdict, Some(Verdict::Drop));
        assert_eq!(e.rule_state().policy_counters(Table::Filter, "INPUT"), Some((0, 0)));
        // Locally generated: the stack fills the checksum in, so a bad one in the capture is irrelevant.
        let mut p = udp(HOST, PEER, 5000, 53);
        p[10] ^= 0xff;
        assert_eq!(send(&mut e, 1, &p).disposition, Disposition::Filtered);
    }

    const STATEWALL_COUNT: &str =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

    #[test]
    fn loopback_goes_out_and_back_in() {
        let rules = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            -A INPUT -i lo -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";
        let mut e = engine(rules);
        let d = send(&mut e, 0, &udp([127, 0, 0, 1], [127, 0, 0, 1], 1000, 2000));
        assert_eq!(d.path, Some(PacketPath::Loopback));
        assert_eq!(d.verdict, Some(Verdict::Accept));
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:INPUT:1");
        assert_eq!(e.conntrack().len(), 1, "confirmed in POSTROUTING of lo");
    }

    #[test]
    fn entries_expire_on_the_packet_clock_and_clock_never_runs_back() {
        let mut e = engine(STATEFUL);
        send(&mut e, 0, &udp(HOST, PEER, 40000, 5000));
        assert_eq!(e.conntrack().len(), 1);
        let due = e.poll_timeout().unwrap();
        assert_eq!(due, t(30_000), "UDP unreplied: 30 s");
        // A packet stamped in the past is processed at the engine's time.
        send(&mut e, 29_000, &udp(HOST, PEER, 40001, 5000));
        let d = send(&mut e, 1_000, &udp(PEER, HOST, 5000, 40000));
        assert_eq!(d.ctstate, Some(CtStateLabel::Established));
        assert_eq!(e.stats().clock_regressions, 1);
        // The reply was processed at 29 s (clamped), which refreshed the first entry to 29 + 30 s (the first
        // reply still gets the unreplied timeout, reference §4.1); the second entry also expires at 59 s.
        e.handle_timeout(t(30_000));
        assert_eq!(e.conntrack().len(), 2);
        e.handle_timeout(t(58_999));
        assert_eq!(e.conntrack().len(), 2);
        e.handle_timeout(t(59_000));
        assert_eq!(e.conntrack().len(), 0);
    }

    #[test]
    fn undecodable_and_ipv6_are_counted_not_filtered() {
        let mut e = engine(STATEFUL);
        let d = send(&mut e, 0, &[0x45, 0, 0]);
        assert!(matches!(d.disposition, Disposition::Undecodable { .. }));
        let d = e.handle_packet(t(1), wire::link::LINKTYPE_ETHERNET, &[0xff; 14]);
        assert!(matches!(d.disposition, Disposition::NotIp { .. } | Disposition::Undecodable { .. }));
        let v6 = {
            let b = PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64).udp(1, 2);
            let mut v = Vec::new();
            b.write(&mut v, b"x").unwrap();
            v
        };
        let d = send(&mut e, 2, &v6);
        assert!(matches!(d.disposition, Disposition::NotFiltered { .. }));
        assert_eq!(e.stats().packets, 3);
    }

    #[allow(clippy::too_many_arguments)]
    fn seg(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        seq: u32,
        ack: Option<u32>,
        syn: bool,
        data: &[u8],
    ) -> Vec<u8> {
        let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, seq, 64240);
        if syn {
            b = b.syn();
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        if !data.is_empty() {
            b = b.psh();
        }
        let mut v = Vec::new();
        b.write(&mut v, data).unwrap();
        v
    }

    #[test]
    fn ftp_helper_drops_partial_matches_and_makes_the_data_connection_related() {
        // Host = FTP server 192.0.2.10:21, client 198.51.100.7:40000 (client ISN 1000, server ISN 5000).
        let rules = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            -A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp\nCOMMIT\n\
            *filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
            -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
            -A INPUT -p tcp -m tcp --dport 21 -j ACCEPT\nCOMMIT\n";
        let mut e = engine(rules);
        let c2s = |seq, ack, syn, data: &[u8]| seg(PEER, HOST, 40000, 21, seq, ack, syn, data);
        let s2c = |seq, ack, syn, data: &[u8]| seg(HOST, PEER, 21, 40000, seq, ack, syn, data);
        assert_eq!(send(&mut e, 0, &c2s(1000, None, true, b"")).verdict, Some(Verdict::Accept));
        send(&mut e, 1, &s2c(5000, Some(1001), true, b""));
        send(&mut e, 2, &c2s(1001, Some(5001), false, b""));
        assert!(e.conntrack().iter().any(|c| c.helper() == Some("ftp")));
        send(&mut e, 3, &s2c(5001, Some(1001), false, b"220 hi\r\n"));
        send(&mut e, 4, &c2s(1001, Some(5009), false, b"USER x\r\n"));
        send(&mut e, 5, &s2c(5009, Some(1009), false, b"331 pw\r\n"));
        // bare LF after PORT: conntrack drops it at the confirm hook (reference §9 T11)
        let d = send(&mut e, 6, &c2s(1009, Some(5017), false, b"PORT 198,51,100,7,39,16\n"));
        assert_eq!(d.verdict, Some(Verdict::Drop));
        assert_eq!(d.ct_reason, Some("ftp: partial matching of `PORT'"));
        assert_eq!((d.rule, d.ctstate), (None, Some(CtStateLabel::Established)));
        // the filter rule that accepted it still counted it (the helper runs after the filter table)
        assert_eq!(e.rule_state().rule_counters(Table::Filter, "INPUT", 1).unwrap().0, 3);
        // PASV, then the server's 227 (locally generated: OUTPUT, confirm at POSTROUTING)
        assert_eq!(
            send(&mut e, 7, &c2s(1009, Some(5017), false, b"PASV\r\n")).verdict,
            Some(Verdict::Accept)
        );
        let d = send(
            &mut e,
            8,
            &s2c(5017, Some(1015), false, b"227 Entering Passive Mode (192,0,2,10,39,16).\r\n"),
        );
        assert_eq!(d.verdict, Some(Verdict::Accept));
        assert_eq!(e.conntrack().expectations().count(), 1);
        // the data connection's SYN: RELATED through the expectation, accepted by rule 1
        let d = send(&mut e, 9, &seg(PEER, HOST, 40001, 10000, 7000, None, true, b""));
        assert_eq!((d.verdict, d.ctstate), (Some(Verdict::Accept), Some(CtStateLabel::Related)));
        assert_eq!(d.rule.as_ref().unwrap().to_string(), "filter:INPUT:1");
        let exp = d.expectation.unwrap();
        assert!(
            exp.starts_with("ftp expectation proto=6 src=198.51.100.7 dst=192.0.2.10 sport=0 dport=10000"),
            "{exp}"
        );
        assert!(d.ct_created);
        assert_eq!(e.conntrack().expectations().count(), 0);
        // a second data SYN from another port is plain NEW and dropped by the policy
        let d = send(&mut e, 10, &seg(PEER, HOST, 40002, 10000, 7000, None, true, b""));
        assert_eq!(
            (d.verdict, d.ctstate, d.expectation),
            (Some(Verdict::Drop), Some(CtStateLabel::New), None)
        );
    }
}
