//! The evaluator: one packet through one built-in chain, as `ipt_do_table` does it.
//!
//! Contract: [`Ruleset::evaluate`] walks the chain of `hook` in `table` first-match: a rule matches
//! when its fixed part (`ip_packet_match`) and then every match, in order, match. A matching rule's
//! counters grow by one packet and the packet's L3 length, whatever its target. Non-terminating
//! targets (LOG, MARK, CONNMARK, NOTRACK, CT) update the [`PacketCtx`] and append an [`Effect`];
//! ACCEPT/DROP/REJECT end the walk; a jump pushes the return position, a goto does not; RETURN or
//! falling off a user chain pops it, and with nothing to pop the base chain's policy applies and
//! its counters grow (the kernel jumps to the chain's underflow rule). A match that cannot read
//! the header it needs "hotdrops" the packet: the verdict is DROP, attributed to that rule, whose
//! counters do not grow. Nothing here reads a clock: `ctx.now` drives the limit buckets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use wire::{Packet, Time};

use crate::compile::{CREDITS_PER_JIFFY, HZ};
use crate::model::*;

/// The host's routing view for `-m addrtype` (`inet_dev_addr_type`).
pub trait HostModel {
    /// The RTN type(s) of `addr`, looked up for device `iface` (`None` = any device).
    fn addr_type(&self, addr: IpAddr, iface: Option<&str>) -> AddrTypes;
}

/// A host model that knows nothing: every address is UNICAST.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnicastHost;

impl HostModel for UnicastHost {
    fn addr_type(&self, _addr: IpAddr, _iface: Option<&str>) -> AddrTypes {
        AddrTypes::UNICAST
    }
}

/// Conntrack state of a tracked packet, direction folded away (as xt_conntrack/xt_state see it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtState {
    New,
    Established,
    Related,
}

/// The conntrack entry as the matches see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtView {
    pub state: CtState,
    /// This packet travels in the reply direction.
    pub reply_dir: bool,
    /// Kernel status bits (EXPECTED=1, SEEN_REPLY=2, ASSURED=4, CONFIRMED=8, SRC_NAT=16, DST_NAT=32).
    pub status: u32,
    pub l4proto: u8,
    pub orig_src: IpAddr,
    pub orig_dst: IpAddr,
    pub repl_src: IpAddr,
    pub repl_dst: IpAddr,
    pub orig_sport: Option<u16>,
    pub orig_dport: Option<u16>,
    pub repl_sport: Option<u16>,
    pub repl_dport: Option<u16>,
    /// Remaining lifetime in whole seconds.
    pub expires_secs: u64,
    /// ctmark.
    pub mark: u32,
    pub helper: Option<String>,
}

/// Status bit values.
pub mod status {
    pub const EXPECTED: u32 = 1 << 0;
    pub const SEEN_REPLY: u32 = 1 << 1;
    pub const ASSURED: u32 = 1 << 2;
    pub const CONFIRMED: u32 = 1 << 3;
    pub const SRC_NAT: u32 = 1 << 4;
    pub const DST_NAT: u32 = 1 << 5;
    pub const TEMPLATE: u32 = 1 << 11;
}

/// What conntrack attached to the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtMatch {
    /// No conntrack entry (INVALID: rejected by a tracker, or conntrack has not run yet).
    Invalid,
    /// Marked untracked (NOTRACK / CT --notrack).
    Untracked,
    Tracked(CtView),
}

/// A side effect of a non-terminating target, for the engine to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The skb mark became this value (MARK, CONNMARK --restore-mark).
    SetMark(u32),
    /// The conntrack mark became this value (CONNMARK --set-*/--save-mark).
    SetCtMark(u32),
    /// The packet was marked untracked (NOTRACK, CT --notrack).
    Notrack,
    /// A CT template was attached (used by conntrack when it creates the entry).
    CtTemplate(CtTarget),
    /// A LOG rule matched.
    Log { log: LogTarget, rule: RuleRef },
}

/// Everything the matches look at, and what targets update.
pub struct PacketCtx<'a> {
    pub now: Time,
    pub pkt: &'a Packet<'a>,
    /// Input device (`None` on OUTPUT).
    pub in_iface: Option<&'a str>,
    /// Output device (`None` on PREROUTING/INPUT).
    pub out_iface: Option<&'a str>,
    /// skb mark (MARK updates it for the following rules).
    pub mark: u32,
    pub ct: CtMatch,
    pub pkttype: PktType,
    pub host: &'a dyn HostModel,
    pub effects: Vec<Effect>,
}

/// The final verdict of a chain walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Reject(RejectWith),
}

/// Which rule decided: `rule` is 1-based within `chain`, `None` = the chain's policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleRef {
    pub table: Table,
    pub chain: Arc<str>,
    pub rule: Option<u32>,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rule {
            Some(n) => write!(f, "{}:{}:{n}", self.table, self.chain),
            None => write!(f, "{}:{}:policy", self.table, self.chain),
        }
    }
}

/// Verdict and deciding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub rule: RuleRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    credit: u32,
    prev: Option<u64>,
}

/// (first rule slot, rule count, policy slot) of one chain.
type ChainSlots = (usize, usize, Option<usize>);

/// Mutable per-ruleset state: rule and policy counters, limit buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleState {
    rules: Vec<(u64, u64)>,
    policies: Vec<(u64, u64)>,
    limits: Vec<Bucket>,
    /// (table, chain) -> (first rule slot, rule count, policy slot).
    index: HashMap<(Table, Arc<str>), ChainSlots>,
}

impl RuleState {
    /// Counters of rule `rule_1based` of `chain` in `table`.
    pub fn rule_counters(&self, table: Table, chain: &str, rule_1based: u32) -> Option<(u64, u64)> {
        let &(first, count, _) = self.index.get(&(table, Arc::from(chain)))?;
        let i = usize::try_from(rule_1based).ok()?.checked_sub(1)?;
        if i >= count {
            return None;
        }
        self.rules.get(first.checked_add(i)?).copied()
    }
    /// Policy counters of built-in `chain` in `table`.
    pub fn policy_counters(&self, table: Table, chain: &str) -> Option<(u64, u64)> {
        let &(_, _, p) = self.index.get(&(table, Arc::from(chain)))?;
        self.policies.get(p?).copied()
    }
    pub(crate) fn rule_slot(&self, slot: usize) -> (u64, u64) {
        self.rules.get(slot).copied().unwrap_or((0, 0))
    }
    pub(crate) fn policy_slot(&self, slot: usize) -> (u64, u64) {
        self.policies.get(slot).copied().unwrap_or((0, 0))
    }
    fn count(v: &mut [(u64, u64)], slot: usize, bytes: u64) {
        if let Some(c) = v.get_mut(slot) {
            c.0 = c.0.saturating_add(1);
            c.1 = c.1.saturating_add(bytes);
        }
    }
}

/// Result of one match.
enum M {
    Yes,
    No,
    Hotdrop,
}

impl From<bool> for M {
    fn from(b: bool) -> M {
        if b {
            M::Yes
        } else {
            M::No
        }
    }
}

/// Facts about the packet computed once per walk.
struct Facts<'p> {
    src: Option<Ipv4Addr>,
    dst: Option<Ipv4Addr>,
    /// Fragment offset in 8-byte units (as `ipt_do_table`'s `fragoff`).
    fragoff: u16,
    /// Transport bytes present in the skb (from the IP header length to the datagram end).
    l4: &'p [u8],
    len: u64,
}

fn v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

impl<'p> Facts<'p> {
    fn new(pkt: &'p Packet<'p>) -> Self {
        let end = pkt.bytes.len().min(pkt.ip.total_len);
        let l4 = pkt.bytes.get(pkt.ip.header_len..end).unwrap_or(&[]);
        Facts {
            src: v4(pkt.ip.src),
            dst: v4(pkt.ip.dst),
            fragoff: pkt.ip.frag.map_or(0, |f| f.offset / 8),
            l4,
            len: u64::try_from(pkt.ip.total_len).unwrap_or(u64::MAX),
        }
    }
    fn u16_at(&self, i: usize) -> Option<u16> {
        let b = self.l4.get(i..i.checked_add(2)?)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }
}

fn ip_match(ip: &IpSpec, f: &Facts<'_>, ctx: &PacketCtx<'_>) -> bool {
    let addr = |spec: &Option<Neg<AddrMask>>, a: Option<Ipv4Addr>| match spec {
        None => true,
        Some(s) => a.is_some_and(|a| s.value.contains(a)) != s.negated,
    };
    if !addr(&ip.src, f.src) || !addr(&ip.dst, f.dst) {
        return false;
    }
    let dev = |spec: &Option<Neg<Iface>>, d: Option<&str>| match spec {
        None => true,
        Some(s) => s.value.matches(d.unwrap_or("")) != s.negated,
    };
    if !dev(&ip.in_iface, ctx.in_iface) || !dev(&ip.out_iface, ctx.out_iface) {
        return false;
    }
    if let Some(p) = ip.proto {
        if (ctx.pkt.ip.proto == p.value) == p.negated {
            return false;
        }
    }
    if let Some(neg) = ip.fragment {
        // -f matches non-first fragments only; `! -f` the rest.
        if (f.fragoff != 0) == neg {
            return false;
        }
    }
    true
}

fn port_in(r: &Neg<Range<u16>>, p: u16) -> bool {
    r.value.contains(p) != r.negated
}

fn tcp_match(t: &TcpMatch, f: &Facts<'_>) -> M {
    if f.fragoff != 0 {
        // xt_tcpudp: a TCP fragment at offset 8 bytes tries to overwrite the flags: drop it.
        return if f.fragoff == 1 { M::Hotdrop } else { M::No };
    }
    if f.l4.len() < 20 {
        return M::Hotdrop;
    }
    let (Some(sp), Some(dp), Some(&doff), Some(&flags)) =
        (f.u16_at(0), f.u16_at(2), f.l4.get(12), f.l4.get(13))
    else {
        return M::Hotdrop;
    };
    if !port_in(&t.sport, sp) || !port_in(&t.dport, dp) {
        return M::No;
    }
    if let Some(fl) = t.flags {
        if ((flags & fl.value.0) == fl.value.1) == fl.negated {
            return M::No;
        }
    }
    if let Some(o) = t.option {
        let hdr = usize::from(doff >> 4) * 4;
        if hdr < 20 {
            return M::Hotdrop;
        }
        let optlen = hdr - 20;
        if optlen == 0 {
            return o.negated.into();
        }
        let Some(opts) = f.l4.get(20..hdr) else {
            return M::Hotdrop;
        };
        let mut i = 0usize;
        while let Some(&kind) = opts.get(i) {
            if kind == o.value {
                return (!o.negated).into();
            }
            i = if kind < 2 {
                i.saturating_add(1)
            } else {
                // The length byte may lie just past the options (the kernel reads it from the skb).
                let l = f.l4.get(20usize.saturating_add(i).saturating_add(1)).copied().unwrap_or(0);
                i.saturating_add(if l == 0 { 1 } else { usize::from(l) })
            };
        }
        return o.negated.into();
    }
    M::Yes
}

fn udp_match(u: &UdpMatch, f: &Facts<'_>) -> M {
    if f.fragoff != 0 {
        return M::No;
    }
    let (Some(sp), Some(dp)) = (f.u16_at(0), f.u16_at(2)) else {
        return M::Hotdrop;
    };
    if f.l4.len() < 8 {
        return M::Hotdrop;
    }
    (port_in(&u.sport, sp) && port_in(&u.dport, dp)).into()
}

fn state_bits(ct: &CtMatch, with_nat: bool) -> u16 {
    match ct {
        CtMatch::Invalid => StateSet::INVALID,
        CtMatch::Untracked => StateSet::UNTRACKED,
        CtMatch::Tracked(v) => {
            let mut b = match v.state {
                CtState::New => StateSet::NEW,
                CtState::Established => StateSet::ESTABLISHED,
                CtState::Related => StateSet::RELATED,
            };
            if with_nat {
                if v.status & status::SRC_NAT != 0 {
                    b |= StateSet::SNAT;
                }
                if v.status & status::DST_NAT != 0 {
                    b |= StateSet::DNAT;
                }
            }
            b
        }
    }
}

fn ct_addr(spec: &Option<Neg<AddrMask>>, a: IpAddr) -> bool {
    match spec {
        None => true,
        Some(s) => v4(a).is_some_and(|a| s.value.contains(a)) != s.negated,
    }
}

fn ct_port(spec: &Option<Neg<Range<u16>>>, p: Option<u16>) -> bool {
    match spec {
        None => true,
        Some(s) => port_in(s, p.unwrap_or(0)),
    }
}

fn conntrack_match(c: &ConntrackMatch, ct: &CtMatch) -> bool {
    if let Some(s) = c.state {
        if (s.value.0 & state_bits(ct, true) != 0) == s.negated {
            return false;
        }
    }
    let CtMatch::Tracked(v) = ct else {
        // xt_conntrack: without a ct only --ctstate is considered.
        return c.state.is_some();
    };
    if let Some(reply) = c.dir_reply {
        if v.reply_dir != reply {
            return false;
        }
    }
    if !ct_addr(&c.orig_src, v.orig_src)
        || !ct_addr(&c.orig_dst, v.orig_dst)
        || !ct_addr(&c.repl_src, v.repl_src)
        || !ct_addr(&c.repl_dst, v.repl_dst)
    {
        return false;
    }
    if let Some(p) = c.proto {
        if (v.l4proto == p.value) == p.negated {
            return false;
        }
    }
    if !ct_port(&c.orig_sport, v.orig_sport)
        || !ct_port(&c.orig_dport, v.orig_dport)
        || !ct_port(&c.repl_sport, v.repl_sport)
        || !ct_port(&c.repl_dport, v.repl_dport)
    {
        return false;
    }
    if let Some(s) = c.status {
        if (s.value & v.status != 0) == s.negated {
            return false;
        }
    }
    if let Some(e) = c.expire {
        if e.value.contains(v.expires_secs) == e.negated {
            return false;
        }
    }
    true
}

fn limit_match(l: &LimitMatch, b: &mut Bucket, now: Time) -> bool {
    // xt_limit: credits accrue per jiffy (HZ=250), capped at the burst; a packet costs `cost`.
    let now_j = now.as_nanos() / (1_000_000_000 / HZ);
    let prev = b.prev.unwrap_or(now_j);
    let elapsed = now_j.saturating_sub(prev);
    b.prev = Some(prev.max(now_j));
    let add = elapsed.wrapping_mul(u64::from(CREDITS_PER_JIFFY));
    // The kernel adds an unsigned long to a u32: the sum wraps at 2^32.
    b.credit = (u64::from(b.credit).wrapping_add(add) & u64::from(u32::MAX)) as u32;
    if b.credit > l.credit_cap {
        b.credit = l.credit_cap;
    }
    if b.credit >= l.cost {
        b.credit -= l.cost;
        true
    } else {
        false
    }
}

fn pkttype_match(p: &Neg<PktType>, ctx: &PacketCtx<'_>, f: &Facts<'_>) -> bool {
    let ty = match ctx.pkttype {
        PktType::Loopback => {
            if ctx.pkt.is_v4() && f.dst.is_some_and(|d| d.is_multicast()) || !ctx.pkt.is_v4() {
                PktType::Multicast
            } else {
                PktType::Broadcast
            }
        }
        t => t,
    };
    (ty == p.value) != p.negated
}

fn addrtype_match(a: &AddrTypeMatch, ctx: &PacketCtx<'_>) -> bool {
    let dev = if a.limit_iface_in {
        ctx.in_iface
    } else if a.limit_iface_out {
        ctx.out_iface
    } else {
        None
    };
    if let Some(s) = a.src {
        if ctx.host.addr_type(ctx.pkt.ip.src, dev).intersects(s.value) == s.negated {
            return false;
        }
    }
    if let Some(d) = a.dst {
        if ctx.host.addr_type(ctx.pkt.ip.dst, dev).intersects(d.value) == d.negated {
            return false;
        }
    }
    true
}

fn run_match(m: &Match, f: &Facts<'_>, ctx: &PacketCtx<'_>, limits: &mut [Bucket]) -> M {
    match m {
        Match::Tcp(t) => tcp_match(t, f),
        Match::Udp(u) => udp_match(u, f),
        Match::Icmp(i) => {
            if f.fragoff != 0 {
                return M::No;
            }
            let (Some(&ty), Some(&code)) = (f.l4.first(), f.l4.get(1)) else {
                return M::Hotdrop;
            };
            if f.l4.len() < 8 {
                return M::Hotdrop;
            }
            ((i.icmp_type == 0xFF || (ty == i.icmp_type && i.codes.contains(code))) != i.negated).into()
        }
        Match::Multiport(mp) => {
            if f.fragoff != 0 {
                return M::No;
            }
            let (Some(sp), Some(dp)) = (f.u16_at(0), f.u16_at(2)) else {
                return M::Hotdrop;
            };
            let hit = mp.ports.iter().any(|r| match mp.dir {
                PortDir::Source => r.contains(sp),
                PortDir::Destination => r.contains(dp),
                PortDir::Either => r.contains(sp) || r.contains(dp),
            });
            (hit != mp.negated).into()
        }
        Match::IpRange(r) => {
            let test = |spec: &Option<Neg<Range<Ipv4Addr>>>, a: Option<Ipv4Addr>| match spec {
                None => true,
                Some(s) => a.is_some_and(|a| s.value.contains(a)) != s.negated,
            };
            (test(&r.src, f.src) && test(&r.dst, f.dst)).into()
        }
        Match::Conntrack(c) => conntrack_match(c, &ctx.ct).into(),
        Match::State(s) => ((s.value.0 & state_bits(&ctx.ct, false) != 0) != s.negated).into(),
        Match::Mark(m) => (((ctx.mark & m.value.mask) == m.value.value) != m.negated).into(),
        Match::ConnMark(m) => match &ctx.ct {
            CtMatch::Tracked(v) => (((v.mark & m.value.mask) == m.value.value) != m.negated).into(),
            _ => M::No,
        },
        Match::Comment(_) => M::Yes,
        Match::Length(l) => {
            let len = u16::try_from(ctx.pkt.ip.total_len).unwrap_or(u16::MAX);
            (l.value.contains(len) != l.negated).into()
        }
        Match::Ttl(t) => {
            let ttl = ctx.pkt.ip.ttl;
            match *t {
                TtlMatch::Eq(v) => ttl == v,
                TtlMatch::Ne(v) => ttl != v,
                TtlMatch::Lt(v) => ttl < v,
                TtlMatch::Gt(v) => ttl > v,
            }
            .into()
        }
        Match::Limit(l) => match limits.get_mut(l.slot) {
            Some(b) => limit_match(l, b, ctx.now).into(),
            None => M::No,
        },
        Match::AddrType(a) => addrtype_match(a, ctx).into(),
        Match::PktType(p) => pkttype_match(p, ctx, f).into(),
    }
}

/// A template conntrack as `-m state/conntrack` see it after `-j CT` (info NEW, status
/// TEMPLATE|CONFIRMED, zero tuple).
fn template_view(c: &CtTarget) -> CtView {
    let zero = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    CtView {
        state: CtState::New,
        reply_dir: false,
        status: status::TEMPLATE | status::CONFIRMED,
        l4proto: 0,
        orig_src: zero,
        orig_dst: zero,
        repl_src: zero,
        repl_dst: zero,
        orig_sport: None,
        orig_dport: None,
        repl_sport: None,
        repl_dport: None,
        expires_secs: 0,
        mark: 0,
        helper: c.helper.clone(),
    }
}

/// Apply a non-terminating target.
fn apply(target: &Target, ctx: &mut PacketCtx<'_>, rule: impl FnOnce() -> RuleRef) {
    match target {
        Target::Log(l) => ctx.effects.push(Effect::Log { log: l.clone(), rule: rule() }),
        // Only a packet without any ct attached becomes untracked or gets a template (xt_CT).
        Target::Notrack if ctx.ct == CtMatch::Invalid => {
            ctx.ct = CtMatch::Untracked;
            ctx.effects.push(Effect::Notrack);
        }
        Target::Ct(c) if ctx.ct == CtMatch::Invalid => {
            if c.notrack {
                ctx.ct = CtMatch::Untracked;
                ctx.effects.push(Effect::Notrack);
            } else {
                ctx.ct = CtMatch::Tracked(template_view(c));
                ctx.effects.push(Effect::CtTemplate(c.clone()));
            }
        }
        Target::Mark { value, mask } => {
            ctx.mark = (ctx.mark & !mask) ^ value;
            ctx.effects.push(Effect::SetMark(ctx.mark));
        }
        Target::ConnMark(op) => {
            let mark = ctx.mark;
            let CtMatch::Tracked(v) = &mut ctx.ct else { return };
            match *op {
                ConnMarkOp::Set { value, mask } => {
                    let new = (v.mark & !mask) ^ value;
                    if new != v.mark {
                        v.mark = new;
                        ctx.effects.push(Effect::SetCtMark(new));
                    }
                }
                ConnMarkOp::Save { nfmask, ctmask } => {
                    let new = (v.mark & !ctmask) ^ (mark & nfmask);
                    if new != v.mark {
                        v.mark = new;
                        ctx.effects.push(Effect::SetCtMark(new));
                    }
                }
                ConnMarkOp::Restore { nfmask, ctmask } => {
                    let new = (mark & !nfmask) ^ (v.mark & ctmask);
                    ctx.mark = new;
                    ctx.effects.push(Effect::SetMark(new));
                }
            }
        }
        _ => {}
    }
}

impl Ruleset {
    /// Fresh state: counters as given in the file, limit buckets full.
    pub fn new_state(&self) -> RuleState {
        let mut rules = vec![(0, 0); self.rule_slots];
        let mut policies = vec![(0, 0); self.policy_slots];
        let mut index = HashMap::new();
        for t in &self.tables {
            for c in &t.chains {
                for r in &c.rules {
                    if let Some(s) = rules.get_mut(r.slot) {
                        *s = r.counters;
                    }
                }
                let policy = c.builtin.map(|_| c.policy_slot);
                if let Some(p) = policy.and_then(|p| policies.get_mut(p)) {
                    *p = c.policy_counters;
                }
                let first = c.rules.first().map_or(0, |r| r.slot);
                index.insert((t.table, c.name.clone()), (first, c.rules.len(), policy));
            }
        }
        let limits = self.limit_slots.iter().map(|&(credit, _)| Bucket { credit, prev: None }).collect();
        RuleState { rules, policies, limits, index }
    }

    /// Runs the built-in chain `hook` of `table` on one packet. If the table or chain is not
    /// loaded the packet is accepted (as with no table), attributed to the chain's policy.
    pub fn evaluate(
        &self,
        table: Table,
        hook: Hook,
        ctx: &mut PacketCtx<'_>,
        state: &mut RuleState,
    ) -> Outcome {
        let policy_ref = |chain: Arc<str>| RuleRef { table, chain, rule: None };
        let Some(t) = self.table(table) else {
            return Outcome { verdict: Verdict::Accept, rule: policy_ref(Arc::from(hook.chain_name())) };
        };
        let Some((base, base_chain)) = t.hook_chain(hook) else {
            return Outcome { verdict: Verdict::Accept, rule: policy_ref(Arc::from(hook.chain_name())) };
        };
        let pkt = ctx.pkt;
        let facts = Facts::new(pkt);
        // Return stack (chain, next rule); depth is bounded by the chain count (no loops).
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let (mut ci, mut ri) = (base, 0usize);
        while let Some(chain) = t.chains.get(ci) {
            let Some(rule) = chain.rules.get(ri) else {
                // Fell off the end: pop, or the base chain's policy.
                match stack.pop() {
                    Some((c, r)) => {
                        (ci, ri) = (c, r);
                        continue;
                    }
                    None => break,
                }
            };
            let here = |ci: usize, ri: usize| RuleRef {
                table,
                chain: t.chains.get(ci).map_or_else(|| Arc::from(""), |c| c.name.clone()),
                rule: u32::try_from(ri.saturating_add(1)).ok(),
            };
            if !ip_match(&rule.ip, &facts, ctx) {
                ri = ri.saturating_add(1);
                continue;
            }
            let mut matched = true;
            for m in &rule.matches {
                match run_match(m, &facts, ctx, &mut state.limits) {
                    M::Yes => {}
                    M::No => {
                        matched = false;
                        break;
                    }
                    M::Hotdrop => return Outcome { verdict: Verdict::Drop, rule: here(ci, ri) },
                }
            }
            if !matched {
                ri = ri.saturating_add(1);
                continue;
            }
            RuleState::count(&mut state.rules, rule.slot, facts.len);
            match &rule.target {
                Target::Accept => return Outcome { verdict: Verdict::Accept, rule: here(ci, ri) },
                Target::Drop => return Outcome { verdict: Verdict::Drop, rule: here(ci, ri) },
                Target::Reject(w) => return Outcome { verdict: Verdict::Reject(*w), rule: here(ci, ri) },
                Target::Return => match stack.pop() {
                    Some((c, r)) => (ci, ri) = (c, r),
                    None => break,
                },
                Target::Jump(to) => {
                    stack.push((ci, ri.saturating_add(1)));
                    (ci, ri) = (*to, 0);
                }
                Target::Goto(to) => (ci, ri) = (*to, 0),
                other => {
                    apply(other, ctx, || here(ci, ri));
                    ri = ri.saturating_add(1);
                }
            }
        }
        // Underflow: the base chain's policy (its counters grow).
        RuleState::count(&mut state.policies, base_chain.policy_slot, facts.len);
        let verdict = match base_chain.builtin {
            Some((_, Policy::Drop)) => Verdict::Drop,
            _ => Verdict::Accept,
        };
        Outcome { verdict, rule: policy_ref(base_chain.name.clone()) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use wire::{Fragment, IpHeader, L4};

    const SEED: &str = include_str!("../tests/data/seed_filter.rules");
    const NOTRACK: &str = include_str!("../tests/data/seed_notrack.rules");

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    /// An IPv4 datagram: 20-byte header + `l4` bytes; `frag` = (offset in bytes, more).
    struct Dgram {
        bytes: Vec<u8>,
        proto: u8,
        frag: Option<Fragment>,
        ttl: u8,
    }

    fn dgram(proto: u8, l4: &[u8]) -> Dgram {
        let mut bytes = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0];
        bytes.extend_from_slice(&A.octets());
        bytes.extend_from_slice(&B.octets());
        bytes.extend_from_slice(l4);
        let len = u16::try_from(bytes.len()).unwrap().to_be_bytes();
        bytes[2] = len[0];
        bytes[3] = len[1];
        Dgram { bytes, proto, frag: None, ttl: 64 }
    }

    fn tcp(sport: u16, dport: u16, flags: u8) -> Dgram {
        let mut h = Vec::new();
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        dgram(6, &h)
    }

    fn udp(sport: u16, dport: u16) -> Dgram {
        let mut h = Vec::new();
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&[0, 8, 0, 0]);
        dgram(17, &h)
    }

    fn icmp(ty: u8, code: u8) -> Dgram {
        dgram(1, &[ty, code, 0, 0, 0, 1, 0, 1])
    }

    impl Dgram {
        fn packet(&self) -> Packet<'_> {
            Packet {
                bytes: &self.bytes,
                ip: IpHeader {
                    version: 4,
                    src: IpAddr::V4(A),
                    dst: IpAddr::V4(B),
                    proto: self.proto,
                    ttl: self.ttl,
                    tos: 0,
                    id: 1,
                    df: false,
                    frag: self.frag,
                    header_len: 20,
                    total_len: self.bytes.len(),
                },
                l4: L4::Other(&self.bytes[20..]),
            }
        }
    }

    fn view(state: CtState) -> CtView {
        CtView {
            state,
            reply_dir: false,
            status: status::CONFIRMED,
            l4proto: 17,
            orig_src: IpAddr::V4(A),
            orig_dst: IpAddr::V4(B),
            repl_src: IpAddr::V4(B),
            repl_dst: IpAddr::V4(A),
            orig_sport: Some(1000),
            orig_dport: Some(53),
            repl_sport: Some(53),
            repl_dport: Some(1000),
            expires_secs: 30,
            mark: 0,
            helper: None,
        }
    }

    struct Run<'a> {
        rs: &'a Ruleset,
        st: RuleState,
    }

    impl<'a> Run<'a> {
        fn new(rs: &'a Ruleset) -> Self {
            Run { rs, st: rs.new_state() }
        }
        /// Evaluate at `secs` with ct `ct`, input iface `eth0`; returns outcome and ctx leftovers.
        fn go(
            &mut self,
            table: Table,
            hook: Hook,
            d: &Dgram,
            ct: CtMatch,
            secs: f64,
        ) -> (Outcome, CtMatch, u32, Vec<Effect>) {
            self.go_if(table, hook, d, ct, secs, Some("eth0"), 0)
        }
        #[allow(clippy::too_many_arguments)]
        fn go_if(
            &mut self,
            table: Table,
            hook: Hook,
            d: &Dgram,
            ct: CtMatch,
            secs: f64,
            in_iface: Option<&str>,
            mark: u32,
        ) -> (Outcome, CtMatch, u32, Vec<Effect>) {
            let pkt = d.packet();
            let mut ctx = PacketCtx {
                now: Time::from_secs_f64(secs),
                pkt: &pkt,
                in_iface,
                out_iface: None,
                mark,
                ct,
                pkttype: PktType::Host,
                host: &UnicastHost,
                effects: Vec::new(),
            };
            let o = self.rs.evaluate(table, hook, &mut ctx, &mut self.st);
            (o, ctx.ct, ctx.mark, ctx.effects)
        }
    }

    fn at(o: &Outcome) -> String {
        format!("{:?} {}", o.verdict, o.rule)
    }

    #[test]
    fn seed_ruleset_decisions_and_counters() {
        let rs = crate::parse(SEED).unwrap();
        let mut r = Run::new(&rs);
        let (f, i) = (Table::Filter, Hook::Input);
        // t=0 established reply of a UDP flow: rule 1.
        let (o, ..) = r.go(f, i, &udp(53, 1000), CtMatch::Tracked(view(CtState::Established)), 0.0);
        assert_eq!(at(&o), "Accept filter:INPUT:1");
        // t=1 INVALID packet on eth0: rule 3 drops it.
        let (o, ..) = r.go(f, i, &tcp(1, 2, 0x10), CtMatch::Invalid, 1.0);
        assert_eq!(at(&o), "Drop filter:INPUT:3");
        // the same on lo: rule 2 accepts first.
        let (o, ..) = r.go_if(f, i, &tcp(1, 2, 0x10), CtMatch::Invalid, 1.0, Some("lo"), 0);
        assert_eq!(at(&o), "Accept filter:INPUT:2");
        // t=2 ping request NEW: rule 4; an echo reply NEW is not type 8 and falls to the policy.
        let (o, ..) = r.go(f, i, &icmp(8, 0), CtMatch::Tracked(view(CtState::New)), 2.0);
        assert_eq!(at(&o), "Accept filter:INPUT:4");
        let (o, ..) = r.go(f, i, &icmp(0, 0), CtMatch::Tracked(view(CtState::New)), 2.0);
        assert_eq!(at(&o), "Drop filter:INPUT:policy");
        // t=3 UDP NEW to 33333: jump to `udp`, accepted there.
        let (o, ..) = r.go(f, i, &udp(4000, 33333), CtMatch::Tracked(view(CtState::New)), 3.0);
        assert_eq!(at(&o), "Accept filter:udp:1");
        // t=4 UDP NEW elsewhere: back from `udp`, rule 7 rejects.
        let (o, ..) = r.go(f, i, &udp(4000, 9), CtMatch::Tracked(view(CtState::New)), 4.0);
        assert_eq!(at(&o), "Reject(IcmpPortUnreachable) filter:INPUT:7");
        // t=5 TCP SYN to 33333 -> tcp:1; a NEW ACK is not a SYN -> tcp-reset.
        let (o, ..) = r.go(f, i, &tcp(5000, 33333, 0x02), CtMatch::Tracked(view(CtState::New)), 5.0);
        assert_eq!(at(&o), "Accept filter:tcp:1");
        let (o, ..) = r.go(f, i, &tcp(5000, 33333, 0x10), CtMatch::Tracked(view(CtState::New)), 5.0);
        assert_eq!(at(&o), "Reject(TcpReset) filter:INPUT:8");
        // GRE NEW: policy DROP.
        let (o, ..) = r.go(f, i, &dgram(47, &[0; 8]), CtMatch::Tracked(view(CtState::New)), 6.0);
        assert_eq!(at(&o), "Drop filter:INPUT:policy");

        let st = &r.st;
        let udp_len = 28u64;
        assert_eq!(st.rule_counters(f, "INPUT", 1), Some((1, udp_len)));
        assert_eq!(st.rule_counters(f, "INPUT", 3), Some((1, 40)));
        assert_eq!(st.rule_counters(f, "INPUT", 5), Some((2, 2 * udp_len)), "the jump counts both");
        assert_eq!(st.rule_counters(f, "udp", 1), Some((1, udp_len)));
        assert_eq!(st.rule_counters(f, "INPUT", 6), Some((1, 40)));
        assert_eq!(st.rule_counters(f, "INPUT", 8), Some((1, 40)));
        assert_eq!(st.policy_counters(f, "INPUT"), Some((2, 28 + 28)));
        assert_eq!(st.rule_counters(f, "INPUT", 11), None);
        assert_eq!(st.policy_counters(f, "udp"), None);
        let save = rs.to_save_string(st, true);
        assert!(save.contains(":INPUT DROP [2:56]"), "{save}");
        assert!(save.contains("[2:56] -A INPUT -p udp -m conntrack --ctstate NEW -j udp"), "{save}");
    }

    #[test]
    fn goto_returns_to_the_caller_of_the_chain_that_jumped() {
        let rs = crate::parse(
            "*filter\n:INPUT DROP [0:0]\n:a - [0:0]\n:b - [0:0]\n\
             -A INPUT -p udp -j a\n-A INPUT -p udp -j ACCEPT\n-A INPUT -p tcp -g b\n\
             -A a -g b\n-A a -j DROP\n-A b -j RETURN\nCOMMIT\n",
        )
        .unwrap();
        let mut r = Run::new(&rs);
        let (o, ..) = r.go(Table::Filter, Hook::Input, &udp(1, 2), CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Accept filter:INPUT:2");
        assert_eq!(r.st.rule_counters(Table::Filter, "a", 2), Some((0, 0)));
        // A goto from the base chain: RETURN in `b` applies the policy, which counts.
        let (o, ..) = r.go(Table::Filter, Hook::Input, &tcp(1, 2, 2), CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Drop filter:INPUT:policy");
        assert_eq!(r.st.policy_counters(Table::Filter, "INPUT"), Some((1, 40)));
        assert_eq!(r.st.rule_counters(Table::Filter, "b", 1), Some((2, 68)));
    }

    #[test]
    fn return_in_a_base_chain_applies_the_counted_policy() {
        let rs =
            crate::parse("*filter\n:INPUT ACCEPT [5:50]\n-A INPUT -j RETURN\n-A INPUT -j DROP\nCOMMIT\n")
                .unwrap();
        let mut r = Run::new(&rs);
        let (o, ..) = r.go(Table::Filter, Hook::Input, &udp(1, 2), CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Accept filter:INPUT:policy");
        assert_eq!(r.st.policy_counters(Table::Filter, "INPUT"), Some((6, 78)));
        assert_eq!(r.st.rule_counters(Table::Filter, "INPUT", 1), Some((1, 28)));
    }

    #[test]
    fn negations_and_fragments() {
        let rs = crate::parse(
            "*filter\n:INPUT ACCEPT [0:0]\n\
             -A INPUT -f -j LOG\n\
             -A INPUT -p udp ! --dport 53 -j DROP\n\
             -A INPUT ! -p udp -s 192.0.2.0/24 ! -i eth1 -j REJECT\n\
             COMMIT\n",
        )
        .unwrap();
        let mut r = Run::new(&rs);
        let (f, i) = (Table::Filter, Hook::Input);
        let (o, ..) = r.go(f, i, &udp(1, 53), CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Accept filter:INPUT:policy");
        let (o, ..) = r.go(f, i, &udp(1, 54), CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Drop filter:INPUT:2");
        // A non-first fragment: -f matches (LOG), port matches never do, not even negated.
        let mut frag = udp(1, 54);
        frag.frag = Some(Fragment { offset: 1480, more: false });
        let (o, _, _, fx) = r.go(f, i, &frag, CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Accept filter:INPUT:policy");
        assert!(matches!(&fx[..], [Effect::Log { rule, .. }] if rule.to_string() == "filter:INPUT:1"));
        let (o, ..) = r.go(f, i, &tcp(1, 2, 2), CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Reject(IcmpPortUnreachable) filter:INPUT:3");
        let (o, ..) = r.go_if(f, i, &tcp(1, 2, 2), CtMatch::Invalid, 0.0, Some("eth1"), 0);
        assert_eq!(at(&o), "Accept filter:INPUT:policy");
    }

    #[test]
    fn truncated_transport_headers_are_hotdropped() {
        let rs = crate::parse(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp -j LOG\n-A INPUT -p tcp --dport 22 -j ACCEPT\n\
             -A INPUT -p udp --dport 1 -j ACCEPT\nCOMMIT\n",
        )
        .unwrap();
        let mut r = Run::new(&rs);
        let short_tcp = dgram(6, &[0, 1, 0, 22, 0, 0, 0, 0, 0, 0]);
        let (o, ..) = r.go(Table::Filter, Hook::Input, &short_tcp, CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Drop filter:INPUT:2");
        assert_eq!(r.st.rule_counters(Table::Filter, "INPUT", 2), Some((0, 0)));
        let short_udp = dgram(17, &[0, 1, 0, 1]);
        let (o, ..) = r.go(Table::Filter, Hook::Input, &short_udp, CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Drop filter:INPUT:3");
        assert_eq!(r.st.rule_counters(Table::Filter, "INPUT", 1), Some((1, 24)));
        // A TCP fragment at offset 8 bytes is dropped by the tcp match.
        let mut evil = dgram(6, &[0; 12]);
        evil.frag = Some(Fragment { offset: 8, more: false });
        let (o, ..) = r.go(Table::Filter, Hook::Input, &evil, CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Drop filter:INPUT:2");
    }

    #[test]
    fn conntrack_match_without_a_ct_only_looks_at_ctstate() {
        let rs = crate::parse(
            "*filter\n:INPUT ACCEPT [0:0]\n\
             -A INPUT -m conntrack --ctproto 6 -j DROP\n\
             -A INPUT -m conntrack --ctstate INVALID --ctproto 6 -j REJECT\n\
             -A INPUT -m conntrack --ctstate UNTRACKED -j DROP\n\
             -A INPUT -m conntrack --ctstatus ASSURED,SEEN_REPLY --ctexpire 20:40 --ctdir ORIGINAL --ctorigsrc 192.0.2.0/24 --ctrepldstport 1000 -j LOG\n\
             -A INPUT -m conntrack ! --ctstatus ASSURED -m state --state NEW -j ACCEPT\n\
             COMMIT\n",
        )
        .unwrap();
        let mut r = Run::new(&rs);
        let (f, i) = (Table::Filter, Hook::Input);
        let (o, ..) = r.go(f, i, &udp(1, 2), CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Reject(IcmpPortUnreachable) filter:INPUT:2");
        let (o, ..) = r.go(f, i, &udp(1, 2), CtMatch::Untracked, 0.0);
        assert_eq!(at(&o), "Drop filter:INPUT:3");
        let mut v = view(CtState::New);
        v.status |= status::SEEN_REPLY;
        let (o, _, _, fx) = r.go(f, i, &udp(1, 2), CtMatch::Tracked(v.clone()), 0.0);
        assert_eq!(at(&o), "Accept filter:INPUT:5");
        assert_eq!(fx.len(), 1);
        v.reply_dir = true;
        let (_, _, _, fx) = r.go(f, i, &udp(1, 2), CtMatch::Tracked(v.clone()), 0.0);
        assert!(fx.is_empty(), "--ctdir ORIGINAL does not match a reply");
        v.reply_dir = false;
        v.expires_secs = 41;
        let (_, _, _, fx) = r.go(f, i, &udp(1, 2), CtMatch::Tracked(v.clone()), 0.0);
        assert!(fx.is_empty());
        v.status |= status::ASSURED;
        let (o, ..) = r.go(f, i, &udp(1, 2), CtMatch::Tracked(v), 0.0);
        assert_eq!(at(&o), "Accept filter:INPUT:policy");
    }

    #[test]
    fn mark_and_connmark_arithmetic() {
        let rs = crate::parse(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n\
             -A PREROUTING -j MARK --set-xmark 0x5/0xf\n\
             -A PREROUTING -m mark --mark 0x5/0xf -j MARK --or-mark 0x100\n\
             -A PREROUTING -j CONNMARK --save-mark --nfmask 0xff00 --ctmask 0xffff\n\
             -A PREROUTING -j MARK --and-mark 0xff\n\
             -A PREROUTING -j CONNMARK --restore-mark --nfmask 0xf00 --ctmask 0xf00\n\
             -A PREROUTING -m connmark --mark 0xf100/0xff00 -j CONNMARK --xor-mark 0x1\n\
             COMMIT\n",
        )
        .unwrap();
        let mut r = Run::new(&rs);
        let mut v = view(CtState::New);
        v.mark = 0xabcd_0000;
        let (o, ct, mark, fx) = r.go_if(
            Table::Mangle,
            Hook::PreRouting,
            &udp(1, 2),
            CtMatch::Tracked(v),
            0.0,
            Some("eth0"),
            0xf0f3,
        );
        assert_eq!(at(&o), "Accept mangle:PREROUTING:policy");
        // 0xf0f3 -> (&!0xf)^5 = 0xf0f5 -> |0x100 = 0xf1f5; ct: (0xabcd0000 & !0xffff) ^ (0xf1f5 & 0xff00)
        // = 0xabcdf100; mark & 0xff = 0xf5; restore: (0xf5 & !0xf00) ^ (0xabcdf100 & 0xf00) = 0x1f5.
        assert_eq!(mark, 0x1f5);
        let CtMatch::Tracked(v) = ct else { panic!() };
        assert_eq!(v.mark, 0xabcd_f101);
        assert_eq!(
            fx,
            [
                Effect::SetMark(0xf0f5),
                Effect::SetMark(0xf1f5),
                Effect::SetCtMark(0xabcd_f100),
                Effect::SetMark(0xf5),
                Effect::SetMark(0x1f5),
                Effect::SetCtMark(0xabcd_f101),
            ]
        );
    }

    #[test]
    fn limit_is_a_token_bucket_on_packet_time() {
        let rs = crate::parse(
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -m limit --limit 2/sec --limit-burst 3 -j ACCEPT\nCOMMIT\n",
        )
        .unwrap();
        let mut r = Run::new(&rs);
        let mut go = |t: f64| r.go(Table::Filter, Hook::Input, &udp(1, 2), CtMatch::Invalid, t).0.verdict;
        // Burst of 3 at t=100, then one every 0.5 s.
        assert_eq!(
            [go(100.0), go(100.0), go(100.0), go(100.0)],
            [Verdict::Accept, Verdict::Accept, Verdict::Accept, Verdict::Drop]
        );
        assert_eq!(go(100.4), Verdict::Drop);
        assert_eq!(go(100.5), Verdict::Accept);
        assert_eq!(go(100.6), Verdict::Drop);
        // A long pause refills only up to the burst.
        assert_eq!(
            [go(200.0), go(200.0), go(200.0), go(200.0)],
            [Verdict::Accept, Verdict::Accept, Verdict::Accept, Verdict::Drop]
        );
    }

    #[test]
    fn notrack_in_a_raw_user_chain() {
        let rs = crate::parse(NOTRACK).unwrap();
        let mut r = Run::new(&rs);
        let (o, ct, _, fx) = r.go(Table::Raw, Hook::PreRouting, &udp(4000, 33333), CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Accept raw:p2p_notrack:2");
        assert_eq!(ct, CtMatch::Untracked);
        assert_eq!(fx, [Effect::Notrack]);
        let (o, ct, _, fx) = r.go(Table::Raw, Hook::PreRouting, &udp(4000, 53), CtMatch::Invalid, 0.0);
        assert_eq!(at(&o), "Accept raw:PREROUTING:policy");
        assert_eq!((ct, fx.len()), (CtMatch::Invalid, 0));
        // The filter table then accepts it as UNTRACKED.
        let (o, ..) = r.go(Table::Filter, Hook::Input, &udp(4000, 33333), CtMatch::Untracked, 0.0);
        assert_eq!(at(&o), "Accept filter:INPUT:2");
        assert!(rs.has_chain(Table::Raw, Hook::Output));
        assert!(!rs.has_chain(Table::Raw, Hook::Input));
        assert!(!rs.has_chain(Table::Mangle, Hook::Input));
        assert_eq!(rs.rule_count(), 9);
    }

    #[test]
    fn ct_template_is_seen_as_new_by_later_raw_rules() {
        let rs = crate::parse(
            "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp --dport 21 -j CT --helper ftp\n\
             -A PREROUTING -m state --state NEW -j NOTRACK\nCOMMIT\n",
        )
        .unwrap();
        let mut r = Run::new(&rs);
        let (_, ct, _, fx) = r.go(Table::Raw, Hook::PreRouting, &tcp(1000, 21, 2), CtMatch::Invalid, 0.0);
        assert!(matches!(&fx[..], [Effect::CtTemplate(c)] if c.helper.as_deref() == Some("ftp")));
        assert!(matches!(ct, CtMatch::Tracked(v) if v.status & status::TEMPLATE != 0));
        assert_eq!(r.st.rule_counters(Table::Raw, "PREROUTING", 2), Some((1, 40)));
    }

    struct Host;
    impl HostModel for Host {
        fn addr_type(&self, addr: IpAddr, iface: Option<&str>) -> AddrTypes {
            match (addr, iface) {
                (IpAddr::V4(a), _) if a == B => AddrTypes::LOCAL,
                (_, Some("eth9")) => AddrTypes::BLACKHOLE,
                _ => AddrTypes::UNICAST,
            }
        }
    }

    #[test]
    fn addrtype_pkttype_interfaces_ttl_length() {
        let rs = crate::parse(
            "*filter\n:INPUT ACCEPT [0:0]\n\
             -A INPUT -i wg+ -m addrtype --src-type BLACKHOLE --limit-iface-in -j DROP\n\
             -A INPUT -m addrtype --dst-type LOCAL ! --src-type LOCAL -m pkttype --pkt-type broadcast -j LOG\n\
             -A INPUT -m ttl --ttl-lt 10 -j DROP\n\
             -A INPUT -m length --length 29:100 -j DROP\n\
             -A INPUT -m iprange --src-range 192.0.2.0-192.0.2.9 -m addrtype --dst-type LOCAL -j REJECT --reject-with icmp-admin-prohibited\n\
             COMMIT\n",
        )
        .unwrap();
        let pkt_of = udp(1, 2);
        let p = pkt_of.packet();
        let mut st = rs.new_state();
        let eval = |iface: &str, pkttype: PktType, ttl: u8, st: &mut RuleState| {
            let mut d = udp(1, 2);
            d.ttl = ttl;
            let pkt = d.packet();
            let mut ctx = PacketCtx {
                now: Time::ZERO,
                pkt: &pkt,
                in_iface: Some(iface),
                out_iface: None,
                mark: 0,
                ct: CtMatch::Invalid,
                pkttype,
                host: &Host,
                effects: Vec::new(),
            };
            let o = rs.evaluate(Table::Filter, Hook::Input, &mut ctx, st);
            (at(&o), ctx.effects.len())
        };
        assert_eq!(
            eval("eth9", PktType::Host, 64, &mut st),
            ("Reject(IcmpAdminProhibited) filter:INPUT:5".into(), 0)
        );
        assert_eq!(eval("wg0", PktType::Host, 64, &mut st).0, "Reject(IcmpAdminProhibited) filter:INPUT:5");
        assert_eq!(eval("eth0", PktType::Broadcast, 64, &mut st).1, 1);
        assert_eq!(eval("eth0", PktType::Host, 9, &mut st).0, "Drop filter:INPUT:3");
        assert_eq!(p.ip.total_len, 28);
    }
}
