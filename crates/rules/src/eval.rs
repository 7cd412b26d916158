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
//!
//! IPv6 packets are matched as `ip6t_do_table` does: `-p` tests the upper-layer protocol found
//! after the extension headers (`ipv6_find_hdr`, which `wire` already walked into `ip.proto`),
//! `ip.ttl` is the hop limit, the fragment offset L4 matches see is in bytes (so the IPv4
//! "offset 1" TCP check never fires), and `ipv6header` / `frag` walk the extension header chain
//! in `pkt.bytes` themselves.
//!
//! Tracing: with `ctx.trace = Some(..)` every rule whose matches all matched is recorded, in
//! order, as the kernel's TRACE target logs it (`trace_packet` of ip_tables/ip6_tables): "rule",
//! or — for an unconditional rule with a standard verdict (no `-j`, ACCEPT, DROP, RETURN), which
//! the kernel cannot tell from a chain tail — "policy" in a built-in chain and "return" in a user
//! chain; falling off a user chain records its implicit RETURN ("return", rule count + 1) and the
//! base chain's policy records "policy" (rule count + 1).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use wire::{Packet, Time};

use crate::classify::{
    state_row, PacketKeys, SumKeys, TableIndex, CAND_ACCEPT, CAND_DROP, CAND_EXACT, CAND_SHIFT,
};
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
    /// The helper attached to this entry itself (`helper=` in `conntrack -L`). No match reads it:
    /// `-m helper` looks at [`CtView::master_helper`] only.
    pub helper: Option<String>,
    /// For an expected connection (one created from an expectation, `ct->master` set): the helper
    /// of its master entry, for the whole life of the entry (not only while RELATED). `None` when
    /// the entry has no master or the master has no helper. This is what `-m helper --helper NAME`
    /// tests (xt_helper): the control connection itself, although it has a helper, never matches.
    pub master_helper: Option<String>,
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
    /// The packet's conntrack view, borrowed from the caller (CONNMARK and the raw table's NOTRACK / CT
    /// targets update it in place for the rules after them; the caller reads it back).
    pub ct: &'a mut CtMatch,
    pub pkttype: PktType,
    pub host: &'a dyn HostModel,
    pub effects: Vec<Effect>,
    /// `Some`: record every rule traversed, like the TRACE target (see the module docs). `None`
    /// costs nothing.
    pub trace: Option<Vec<TraceEntry>>,
}

/// What a traced rule was, in the words of the kernel's TRACE log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceKind {
    /// "rule": a rule whose matches all matched (its target is then followed).
    Rule,
    /// "return": the implicit RETURN at the end of a user chain (or an unconditional standard
    /// verdict rule in a user chain).
    Return,
    /// "policy": the built-in chain's policy (or an unconditional standard verdict rule in it).
    Policy,
}

impl TraceKind {
    /// "rule", "return" or "policy".
    pub fn name(self) -> &'static str {
        match self {
            TraceKind::Rule => "rule",
            TraceKind::Return => "return",
            TraceKind::Policy => "policy",
        }
    }
}

/// One TRACE line: `table:chain:kind:N` (N is the 1-based position in the chain; a chain's
/// tail — implicit RETURN or policy — is its rule count + 1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceEntry {
    /// The chain and position; `rule` is always `Some`.
    pub rule: RuleRef,
    pub kind: TraceKind,
}

impl std::fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            self.rule.table,
            self.rule.chain,
            self.kind.name(),
            self.rule.rule.unwrap_or(0)
        )
    }
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
    pub chain: ChainName,
    pub rule: Option<u32>,
}

/// A chain's name: a built-in chain's is static (copied without reference counting, as the engine
/// names a rule for every packet), a user chain's shared. Compares, hashes and prints as the name.
#[derive(Clone)]
pub enum ChainName {
    Builtin(Hook),
    User(Arc<str>),
}

impl ChainName {
    /// The name of `chain` (built-in or not).
    pub fn of(chain: &Chain) -> ChainName {
        // A built-in chain is named after its hook (the compiler makes only those built-in).
        match chain.builtin {
            Some((hook, _)) => ChainName::Builtin(hook),
            None => ChainName::User(chain.name.clone()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ChainName::Builtin(h) => h.chain_name(),
            ChainName::User(n) => n,
        }
    }

    /// The same chain name without comparing the text (a user chain's: the same allocation).
    fn same(&self, chain: &Chain) -> bool {
        match (self, chain.builtin) {
            (ChainName::Builtin(h), Some((hook, _))) => *h == hook,
            (ChainName::User(n), _) => Arc::ptr_eq(n, &chain.name),
            _ => false,
        }
    }
}

impl std::ops::Deref for ChainName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for ChainName {
    fn eq(&self, other: &ChainName) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ChainName {}

impl std::hash::Hash for ChainName {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl std::fmt::Debug for ChainName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for ChainName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ChainName {
    fn from(name: &str) -> ChainName {
        ChainName::User(Arc::from(name))
    }
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rule {
            Some(n) => write!(f, "{}:{}:{n}", self.table, self.chain),
            None => write!(f, "{}:{}:policy", self.table, self.chain),
        }
    }
}

/// A rule or chain policy of one compiled [`Ruleset`], by position: copied without touching the chain
/// name's reference count (the engine handles one per packet); [`Ruleset::rule_ref`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(RuleAt);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RuleAt {
    /// Rule `rule` (1-based; `None` = the policy) of chain `ci` of table `ti`.
    Rule { table: Table, ti: u32, ci: u32, rule: Option<u32> },
    /// The table or its built-in chain for `hook` is not loaded (accepted, "policy").
    Absent { table: Table, hook: Hook },
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
    scratch: Scratch,
}

/// Reused buffer for the classifier's candidate lists (a stack of per-chain segments), so a walk
/// does not allocate. Not part of the state's value: it never compares or clones.
#[derive(Default)]
struct Scratch(Vec<u32>, Vec<Frame>);

impl Clone for Scratch {
    fn clone(&self) -> Scratch {
        Scratch::default()
    }
}

impl PartialEq for Scratch {
    fn eq(&self, _: &Scratch) -> bool {
        true
    }
}

impl Eq for Scratch {}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

/// The candidates of the chain being walked: `scratch[start..end]` (sorted, each
/// `position << CAND_SHIFT | flags`), the next one at `cur`, gathered with conntrack state bits
/// `ct_bits`; rule `i`'s counter slot is `first_slot + i`. `None` = every rule.
#[derive(Debug, Clone, Copy)]
struct Cands {
    start: usize,
    end: usize,
    cur: usize,
    ct_bits: u16,
    first_slot: usize,
}

/// A return position: chain, next rule, and that chain's candidates.
#[derive(Debug, Clone, Copy)]
struct Frame {
    ci: usize,
    ri: usize,
    cands: Option<Cands>,
}

/// Gathers the candidates of chain `ci` on top of the scratch stack (`None`: walk linearly).
fn enter(
    index: Option<&TableIndex>,
    keys: Option<&PacketKeys<'_>>,
    ci: usize,
    ct: &CtMatch,
    scratch: &mut Vec<u32>,
) -> Option<Cands> {
    let (index, keys) = (index?, keys?);
    let ix = index.chains.get(ci)?.as_ref()?;
    let ct_bits = state_bits(ct, true);
    let start = scratch.len();
    ix.gather(keys, ct_bits, scratch);
    Some(Cands { start, end: scratch.len(), cur: start, ct_bits, first_slot: ix.first_slot })
}

impl RuleState {
    /// Adds to these counters what `other` counted since `base`, the state both started from (the sharded
    /// replay: several engines, one ruleset, one set of counters in the end). Limit buckets are not merged:
    /// a ruleset with `limit` matches is never sharded ([`Ruleset::has_shared_state`]).
    pub fn merge_counts(&mut self, other: &RuleState, base: &RuleState) {
        let add = |mine: &mut [(u64, u64)], theirs: &[(u64, u64)], start: &[(u64, u64)]| {
            for ((m, t), b) in mine.iter_mut().zip(theirs).zip(start) {
                m.0 = m.0.wrapping_add(t.0.wrapping_sub(b.0));
                m.1 = m.1.wrapping_add(t.1.wrapping_sub(b.1));
            }
        };
        add(&mut self.rules, &other.rules, &base.rules);
        add(&mut self.policies, &other.policies, &base.policies);
    }

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

/// What one evaluation did, for a caller that caches a flow's rule path (the engine's
/// established-flow fast path): the counters it grew, in order, and whether its whole result can
/// only depend on what every packet of one flow direction shares.
///
/// The contract of [`Recording::is_flow_invariant`]: two packets that are not fragments, have the
/// same addresses, protocol, ports, interfaces, `pkttype`, skb mark and conntrack view (its remaining
/// lifetime aside), evaluated against the same state, get the same verdict, the same deciding rule,
/// the same counters grown and no effects. Evaluations that ran a match reading anything else (TCP
/// flags or options, length, TTL, `limit`, `--ctexpire`, ...), ran a non-terminating target, or
/// hotdropped, are not flow-invariant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Recording {
    /// Rule slots; policy slots carry [`POLICY_BIT`].
    counts: Vec<u32>,
    variant: bool,
    /// Some walk's result may depend on the flow's own facts (see [`Recording::is_flow_independent`]).
    bound: bool,
    /// Which of the per-entry facts that can change during a flow's life the evaluated matches read
    /// (`READS_*`): a fact never read cannot have changed the result.
    reads: u8,
}

const READS_STATUS: u8 = 1;
const READS_CTMARK: u8 = 2;
const READS_MARK: u8 = 4;
const READS_PKTTYPE: u8 = 8;

const POLICY_BIT: u32 = 1 << 31;

impl Recording {
    /// Forget everything recorded (keeps the buffer).
    pub fn clear(&mut self) {
        self.counts.clear();
        self.variant = false;
        self.bound = false;
        self.reads = 0;
    }

    /// Some evaluated match read the conntrack status bits (`--ctstatus`). When none did, only the
    /// NAT bits (which never change once an entry exists) can have mattered.
    pub fn reads_status(&self) -> bool {
        self.reads & READS_STATUS != 0
    }
    /// Some evaluated match read the conntrack mark (`-m connmark`).
    pub fn reads_ctmark(&self) -> bool {
        self.reads & READS_CTMARK != 0
    }
    /// Some evaluated match read the skb mark (`-m mark`).
    pub fn reads_mark(&self) -> bool {
        self.reads & READS_MARK != 0
    }
    /// Some evaluated match read the packet type (`-m pkttype`).
    pub fn reads_pkttype(&self) -> bool {
        self.reads & READS_PKTTYPE != 0
    }

    /// See the type's docs.
    pub fn is_flow_invariant(&self) -> bool {
        !self.variant
    }

    /// Flow-invariant, and more: every walk recorded was decided by a rule (or a policy) of its
    /// built-in chain that it reached testing only facts the engine's path key holds, so any flow's
    /// ESTABLISHED packet on the same path, in the same direction, with the same key facts, gets the
    /// same result. Exactly one counter grew per walk (no earlier rule matched), and that rule and
    /// every rule before it in the chain is [`key_only`]: unconditional in its address, interface,
    /// protocol and fragment part, with only state, `--ctstatus`, `--ctdir`, mark, ctmark, pkttype
    /// and comment matches. A table whose chain is not loaded counts as decided (nothing ran).
    pub fn is_flow_independent(&self) -> bool {
        !self.variant && !self.bound
    }

    /// How many counter updates were recorded.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    fn push(&mut self, slot: usize, policy: bool) {
        match u32::try_from(slot) {
            Ok(s) if s < POLICY_BIT => self.counts.push(if policy { s | POLICY_BIT } else { s }),
            _ => self.variant = true,
        }
    }
}

impl RuleState {
    /// Grow the counters `rec` recorded, by one packet of `pkt`'s length: exactly what evaluating
    /// `pkt` would have counted, when `rec` is flow-invariant and `pkt` shares its flow facts.
    pub fn count_recorded(&mut self, rec: &Recording, pkt: &Packet<'_>) {
        let bytes = counted_len(pkt);
        for &c in &rec.counts {
            let slot = (c & !POLICY_BIT) as usize;
            if c & POLICY_BIT != 0 {
                RuleState::count(&mut self.policies, slot, bytes);
            } else {
                RuleState::count(&mut self.rules, slot, bytes);
            }
        }
    }
}

/// The bytes a rule's counter grows by for `pkt`: the datagram's L3 length.
fn counted_len(pkt: &Packet<'_>) -> u64 {
    u64::try_from(pkt.ip.total_len).unwrap_or(u64::MAX)
}

/// What a walk tells its recorder; `()` records nothing (the walk is compiled once per recorder, so
/// evaluating without recording costs nothing extra).
trait Recorder {
    /// Whether this recorder records anything (`()` does not: the walk skips what only feeds it).
    const RECORDS: bool = true;
    /// The walk's result depends on more than the flow (see [`Recording`]).
    fn variant(&mut self);
    /// Match `m` is evaluated.
    fn runs(&mut self, m: &Match);
    /// A rule's (or, with `policy`, a policy's) counters grew.
    fn counted(&mut self, slot: usize, policy: bool);
}

impl Recorder for () {
    const RECORDS: bool = false;
    fn variant(&mut self) {}
    fn runs(&mut self, _: &Match) {}
    fn counted(&mut self, _: usize, _: bool) {}
}

impl Recorder for Recording {
    fn variant(&mut self) {
        self.variant = true;
    }
    fn runs(&mut self, m: &Match) {
        if !flow_invariant(m) {
            self.variant = true;
        }
        self.reads |= reads_of(m);
    }
    fn counted(&mut self, slot: usize, policy: bool) {
        self.push(slot, policy);
    }
}

/// Which changeable per-entry facts a flow-invariant match reads (`READS_*`).
fn reads_of(m: &Match) -> u8 {
    match m {
        Match::Conntrack(c) if c.status.is_some() => READS_STATUS,
        Match::ConnMark(_) => READS_CTMARK,
        Match::Mark(_) => READS_MARK,
        Match::PktType(_) => READS_PKTTYPE,
        _ => 0,
    }
}

/// Whether `rule` tests only what the engine's path key holds for an ESTABLISHED packet (see
/// [`Recording::is_flow_independent`]): no address, interface, protocol or fragment test, and only
/// matches on the conntrack state, status and direction, the marks and the packet type.
pub(crate) fn key_only(rule: &Rule) -> bool {
    rule.ip.is_unconditional()
        && rule.matches.iter().all(|m| match m {
            Match::State(_) | Match::Mark(_) | Match::ConnMark(_) | Match::PktType(_) | Match::Comment(_) => {
                true
            }
            Match::Conntrack(c) => !c.reads_details(),
            _ => false,
        })
}

/// Whether a match reads only facts shared by every packet of a flow direction (see [`Recording`]).
fn flow_invariant(m: &Match) -> bool {
    match m {
        Match::Tcp(t) => t.flags.is_none() && t.option.is_none(),
        Match::Udp(_)
        | Match::Multiport(_)
        | Match::IpRange(_)
        | Match::State(_)
        | Match::Mark(_)
        | Match::ConnMark(_)
        | Match::Comment(_)
        | Match::AddrType(_)
        | Match::PktType(_)
        | Match::Helper(_) => true,
        Match::Conntrack(c) => c.expire.is_none(),
        Match::Icmp(_)
        | Match::Icmp6(_)
        | Match::Length(_)
        | Match::Ttl(_)
        | Match::Hl(_)
        | Match::Limit(_)
        | Match::Ipv6Header(_)
        | Match::Frag(_) => false,
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

/// IPv6 extension headers as `ipv6_ext_hdr` knows them (hop-by-hop, routing, fragment, AH,
/// no-next-header, destination options).
fn ipv6_ext_hdr(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 44 | 51 | 59 | 60)
}

/// Facts about the packet computed once per walk.
pub(crate) struct Facts<'p> {
    pub(crate) v6: bool,
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    /// `fragoff` as the matches see it: IPv4 in 8-byte units (`ipt_do_table`), IPv6 in bytes
    /// (`ipv6_find_hdr`).
    pub(crate) fragoff: u16,
    /// IPv6: `ipv6_find_hdr` cannot name the upper-layer protocol (a non-first fragment followed
    /// by another extension header): every `-p` rule hotdrops the packet.
    pub(crate) v6_proto_unknown: bool,
    /// The datagram bytes present (up to its claimed length), for extension header walks.
    dgram: &'p [u8],
    /// Transport bytes present in the skb (from the IP header length to the datagram end).
    pub(crate) l4: &'p [u8],
    len: u64,
}

/// What decides whether a packet is regular for the classifier ([`PacketKeys`]), as [`Facts`]
/// has it.
#[derive(Clone, Copy)]
pub(crate) struct Regular<'p> {
    pub(crate) v6: bool,
    pub(crate) fragoff: u16,
    pub(crate) v6_proto_unknown: bool,
    pub(crate) l4: &'p [u8],
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
}

impl<'p> Regular<'p> {
    #[inline(always)]
    pub(crate) fn of(pkt: &'p Packet<'p>) -> Regular<'p> {
        let end = pkt.bytes.len().min(pkt.ip.total_len);
        let v6 = !pkt.is_v4();
        let offset = pkt.ip.frag.map_or(0, |f| f.offset);
        Regular {
            v6,
            fragoff: if v6 { offset } else { offset / 8 },
            v6_proto_unknown: v6 && offset != 0 && ipv6_ext_hdr(pkt.ip.proto) && pkt.ip.proto != 59,
            l4: pkt.bytes.get(pkt.ip.header_len..end).unwrap_or(&[]),
            src: pkt.ip.src,
            dst: pkt.ip.dst,
        }
    }
}

impl<'p> Facts<'p> {
    pub(crate) fn new(pkt: &'p Packet<'p>) -> Self {
        let end = pkt.bytes.len().min(pkt.ip.total_len);
        let dgram = pkt.bytes.get(..end).unwrap_or(pkt.bytes);
        let r = Regular::of(pkt);
        Facts {
            v6: r.v6,
            src: r.src,
            dst: r.dst,
            fragoff: r.fragoff,
            v6_proto_unknown: r.v6_proto_unknown,
            dgram,
            l4: r.l4,
            len: counted_len(pkt),
        }
    }

    /// [`Facts::new`] out of line, for the short walk, which rarely needs them (inlined, they
    /// would crowd its loop).
    #[inline(never)]
    fn cold(pkt: &'p Packet<'p>) -> Self {
        Facts::new(pkt)
    }

    /// The facts [`PacketKeys`] reads.
    pub(crate) fn regular(&self) -> Regular<'p> {
        Regular {
            v6: self.v6,
            fragoff: self.fragoff,
            v6_proto_unknown: self.v6_proto_unknown,
            l4: self.l4,
            src: self.src,
            dst: self.dst,
        }
    }

    fn u16_at(&self, i: usize) -> Option<u16> {
        let b = self.l4.get(i..i.checked_add(2)?)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }
}

/// The keys of `pkt` for the short walk and their protocol column in `ix`'s masks (`None`: an
/// irregular packet).
#[inline]
fn short_keys(family: Family, pkt: &Packet<'_>, ix: &TableIndex) -> Option<(SumKeys, usize)> {
    let k = SumKeys::short(family, pkt)?;
    Some((k, ix.proto_col(k.proto)))
}

/// `ip_packet_match` / `ip6_packet_match`.
fn ip_match(ip: &IpSpec, f: &Facts<'_>, ctx: &PacketCtx<'_>) -> M {
    let addr = |spec: &Option<Neg<AddrMask>>, a: IpAddr| match spec {
        None => true,
        Some(s) => s.value.contains(a) != s.negated,
    };
    if !addr(&ip.src, f.src) || !addr(&ip.dst, f.dst) {
        return M::No;
    }
    let dev = |spec: &Option<Neg<Iface>>, d: Option<&str>| match spec {
        None => true,
        Some(s) => s.value.matches(d.unwrap_or("")) != s.negated,
    };
    if !dev(&ip.in_iface, ctx.in_iface) || !dev(&ip.out_iface, ctx.out_iface) {
        return M::No;
    }
    if let Some(p) = ip.proto {
        if f.v6 {
            if f.v6_proto_unknown {
                // ipv6_find_hdr failed with a zero fragment offset: hotdrop.
                return M::Hotdrop;
            }
            // ip6_packet_match: protocol 0 (`-p all`) matches any found protocol.
            let hit = ctx.pkt.ip.proto == p.value;
            if hit == p.negated && (hit || (p.value != 0 && !p.negated)) {
                return M::No;
            }
        } else if (ctx.pkt.ip.proto == p.value) == p.negated {
            return M::No;
        }
    }
    if let Some(neg) = ip.fragment {
        // -f matches non-first fragments only; `! -f` the rest.
        if (f.fragoff != 0) == neg {
            return M::No;
        }
    }
    M::Yes
}

/// `ip6t_ext_hdr`: the headers ipv6header walks (extension headers plus ESP).
fn ip6t_ext_hdr(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 44 | 50 | 51 | 59 | 60)
}

/// ip6t_ipv6header's walk: which headers the datagram has ([`ipv6hdr`] bits), `None` if the chain
/// runs out of the datagram (no match).
fn ipv6_header_flags(dgram: &[u8]) -> Option<u8> {
    let skb_len = i64::try_from(dgram.len()).ok()?;
    let mut next = *dgram.get(6)?;
    let mut ptr: i64 = 40;
    let mut flags = 0u8;
    while ip6t_ext_hdr(next) {
        if next == 59 {
            flags |= ipv6hdr::NONE;
            break;
        }
        if skb_len - ptr < 2 {
            return None;
        }
        if next == 50 {
            flags |= ipv6hdr::ESP;
            break;
        }
        let at = usize::try_from(ptr).ok()?;
        let (nh, l) = (*dgram.get(at)?, i64::from(*dgram.get(at.checked_add(1)?)?));
        let hdrlen = match next {
            44 => 8,
            51 => (l + 2) * 4,
            _ => (l + 1) * 8,
        };
        flags |= match next {
            0 => ipv6hdr::HOPOPTS,
            43 => ipv6hdr::ROUTING,
            44 => ipv6hdr::FRAGMENT,
            51 => ipv6hdr::AH,
            60 => ipv6hdr::DSTOPTS,
            _ => return None,
        };
        next = nh;
        ptr += hdrlen;
        if ptr > skb_len {
            break;
        }
    }
    if next != 59 && next != 50 {
        flags |= ipv6hdr::PROTO;
    }
    Some(flags)
}

fn ipv6header_match(h: &Ipv6HeaderMatch, f: &Facts<'_>) -> M {
    let Some(have) = ipv6_header_flags(f.dgram) else {
        return M::No;
    };
    let inv = if h.negated { 0xFF } else { 0 };
    if h.soft {
        ((have ^ h.headers ^ inv) & h.headers == 0).into()
    } else {
        ((have == h.headers) != h.negated).into()
    }
}

/// `ipv6_find_hdr(skb, NEXTHDR_FRAGMENT)`: offset of the fragment header, `Err(true)` = hotdrop
/// (header chain truncated), `Err(false)` = no fragment header.
fn find_fragment_header(dgram: &[u8]) -> Result<usize, bool> {
    let mut next = *dgram.get(6).ok_or(true)?;
    let mut ptr = 40usize;
    // Each step advances by at least 8 bytes: bounded by the datagram length.
    while next != 44 {
        if !ipv6_ext_hdr(next) || next == 59 {
            return Err(false);
        }
        let nh = *dgram.get(ptr).ok_or(true)?;
        let l = usize::from(*dgram.get(ptr.saturating_add(1)).ok_or(true)?);
        let hdrlen = if next == 51 { (l + 2) * 4 } else { (l + 1) * 8 };
        next = nh;
        ptr = ptr.saturating_add(hdrlen);
    }
    Ok(ptr)
}

fn frag_match(m: &FragMatch, f: &Facts<'_>) -> M {
    let at = match find_fragment_header(f.dgram) {
        Ok(at) => at,
        Err(true) => return M::Hotdrop,
        Err(false) => return M::No,
    };
    let Some(h) = at.checked_add(8).and_then(|end| f.dgram.get(at..end)) else {
        return M::Hotdrop;
    };
    let (Some(&reserved), Some(&o0), Some(&o1)) = (h.get(1), h.get(2), h.get(3)) else {
        return M::Hotdrop;
    };
    let off = u16::from_be_bytes([o0, o1]);
    let id = h.get(4..8).and_then(|b| <[u8; 4]>::try_from(b).ok()).map_or(0, u32::from_be_bytes);
    let more = off & 1 != 0;
    // ip6t_frag: the id range, then each flag given must hold (`--fragres`: reserved fields zero,
    // `--fragfirst`: offset zero, `--fragmore` / `--fraglast`: M set / clear). `--fraglen` is not
    // tested by the kernel.
    let reserved_ok = !m.reserved || (reserved == 0 && off & 0x6 == 0);
    let first_ok = !m.first || off & !0x7 == 0;
    let more_ok = !m.more || more;
    let last_ok = !m.last || !more;
    (m.ids.value.contains(id) != m.ids.negated && reserved_ok && first_ok && more_ok && last_ok).into()
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
        Some(s) => s.value.contains(a) != s.negated,
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

/// xt_helper: no conntrack entry, no master or a master without helper gives the inversion flag;
/// otherwise `""` matches any helper, and a name matches when it *starts with* the master helper's
/// name (the kernel compares only `strlen(helper->name)` bytes: `ftp-2121` matches helper `ftp`).
fn helper_match(h: &Neg<String>, ct: &CtMatch) -> bool {
    let master = match ct {
        CtMatch::Tracked(v) => v.master_helper.as_deref(),
        CtMatch::Invalid | CtMatch::Untracked => None,
    };
    match master {
        None => h.negated,
        Some(name) => (h.value.is_empty() || h.value.starts_with(name)) != h.negated,
    }
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
            if matches!(f.dst, IpAddr::V4(d) if d.is_multicast()) || f.v6 {
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
            let test = |spec: &Option<Neg<Range<IpAddr>>>, a: IpAddr| match spec {
                None => true,
                Some(s) => {
                    let same = s.value.min.is_ipv4() == a.is_ipv4() && s.value.max.is_ipv4() == a.is_ipv4();
                    (same && s.value.contains(a)) != s.negated
                }
            };
            (test(&r.src, f.src) && test(&r.dst, f.dst)).into()
        }
        Match::Conntrack(c) => conntrack_match(c, &*ctx.ct).into(),
        Match::State(s) => ((s.value.0 & state_bits(&*ctx.ct, false) != 0) != s.negated).into(),
        Match::Mark(m) => (((ctx.mark & m.value.mask) == m.value.value) != m.negated).into(),
        Match::ConnMark(m) => match &*ctx.ct {
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
        Match::Icmp6(i) => {
            // ip6t icmp6_match: no "any" type; the 8-byte header must be there.
            if f.fragoff != 0 {
                return M::No;
            }
            let (Some(&ty), Some(&code)) = (f.l4.first(), f.l4.get(1)) else {
                return M::Hotdrop;
            };
            if f.l4.len() < 8 {
                return M::Hotdrop;
            }
            ((ty == i.icmp_type && i.codes.contains(code)) != i.negated).into()
        }
        Match::Hl(t) => {
            let hl = ctx.pkt.ip.ttl;
            match *t {
                TtlMatch::Eq(v) => hl == v,
                TtlMatch::Ne(v) => hl != v,
                TtlMatch::Lt(v) => hl < v,
                TtlMatch::Gt(v) => hl > v,
            }
            .into()
        }
        Match::Ipv6Header(h) => ipv6header_match(h, f),
        Match::Frag(m) => frag_match(m, f),
        Match::Helper(h) => helper_match(h, &*ctx.ct).into(),
    }
}

/// Record a TRACE entry if tracing is on.
#[inline(always)]
fn trace(ctx: &mut PacketCtx<'_>, entry: impl FnOnce() -> TraceEntry) {
    if let Some(t) = ctx.trace.as_mut() {
        t.push(entry());
    }
}

/// A chain's tail entry (implicit RETURN or policy): position rule count + 1.
fn tail_ref(table: Table, chain: &Chain) -> RuleRef {
    RuleRef {
        table,
        chain: ChainName::of(chain),
        rule: u32::try_from(chain.rules.len().saturating_add(1)).ok(),
    }
}

/// `get_chainname_rulenum`: an unconditional rule with a standard target and a negative verdict
/// (no target = XT_CONTINUE, ACCEPT, DROP, RETURN) is indistinguishable from a chain tail.
fn trace_kind(rule: &Rule, chain: &Chain) -> TraceKind {
    let standard = matches!(rule.target, Target::None | Target::Accept | Target::Drop | Target::Return);
    if standard && rule.matches.is_empty() && rule.ip.is_unconditional() {
        if chain.builtin.is_some() {
            TraceKind::Policy
        } else {
            TraceKind::Return
        }
    } else {
        TraceKind::Rule
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
        // A template has no master.
        master_helper: None,
    }
}

/// Apply a non-terminating target.
fn apply(target: &Target, ctx: &mut PacketCtx<'_>, rule: impl FnOnce() -> RuleRef) {
    match target {
        Target::Log(l) => ctx.effects.push(Effect::Log { log: l.clone(), rule: rule() }),
        // Only a packet without any ct attached becomes untracked or gets a template (xt_CT).
        Target::Notrack if *ctx.ct == CtMatch::Invalid => {
            *ctx.ct = CtMatch::Untracked;
            ctx.effects.push(Effect::Notrack);
        }
        Target::Ct(c) if *ctx.ct == CtMatch::Invalid => {
            if c.notrack {
                *ctx.ct = CtMatch::Untracked;
                ctx.effects.push(Effect::Notrack);
            } else {
                *ctx.ct = CtMatch::Tracked(template_view(c));
                ctx.effects.push(Effect::CtTemplate(c.clone()));
            }
        }
        Target::Mark { value, mask } => {
            ctx.mark = (ctx.mark & !mask) ^ value;
            ctx.effects.push(Effect::SetMark(ctx.mark));
        }
        Target::ConnMark(op) => {
            let mark = ctx.mark;
            let CtMatch::Tracked(v) = &mut *ctx.ct else { return };
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
    /// Whether evaluation keeps state shared by all packets besides the counters (`-m limit` token
    /// buckets): such a ruleset gives different results when packets are split between engines.
    pub fn has_shared_state(&self) -> bool {
        !self.limit_slots.is_empty()
    }

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
        RuleState { rules, policies, limits, index, scratch: Scratch::default() }
    }

    /// Runs the built-in chain `hook` of `table` on one packet. If the table or chain is not
    /// loaded the packet is accepted (as with no table), attributed to the chain's policy.
    ///
    /// Chains of at least [`crate::MIN_INDEXED_RULES`] rules are walked through their classifier
    /// index (only the rules that may match are evaluated); the result, counters, effects and
    /// trace are exactly those of [`Ruleset::evaluate_linear`].
    pub fn evaluate(
        &self,
        table: Table,
        hook: Hook,
        ctx: &mut PacketCtx<'_>,
        state: &mut RuleState,
    ) -> Outcome {
        self.outcome(self.classified(table, hook, ctx, state, &mut ()))
    }

    /// [`Ruleset::evaluate`], naming the deciding rule by position, and recording into `rec` when given
    /// (appended; see [`Recording`]) the counters grown and whether the result is flow-invariant.
    pub fn evaluate_id(
        &self,
        table: Table,
        hook: Hook,
        ctx: &mut PacketCtx<'_>,
        state: &mut RuleState,
        rec: Option<&mut Recording>,
    ) -> (Verdict, RuleId) {
        match rec {
            Some(r) => {
                let before = r.len();
                let out = self.classified(table, hook, ctx, state, r);
                let grown = r.len().saturating_sub(before);
                let decided = match out.1 .0 {
                    RuleAt::Absent { .. } => grown == 0,
                    _ => grown == 1 && self.key_decided(out.1),
                };
                if !decided {
                    r.bound = true;
                }
                out
            }
            None => self.classified(table, hook, ctx, state, &mut ()),
        }
    }

    /// Whether `id` is a rule of a built-in chain, or its policy, that a walk reaching it without
    /// any rule matching before got to by [`key_only`] rules alone, and that is itself one (see
    /// [`Recording::is_flow_independent`]).
    fn key_decided(&self, id: RuleId) -> bool {
        let RuleAt::Rule { table, ti, ci, rule } = id.0 else { return true };
        let chain = self.tables.get(ti as usize).and_then(|t| t.chains.get(ci as usize));
        let Some((hook, len)) = chain.and_then(|c| Some((c.builtin?.0, c.rules.len()))) else {
            return false;
        };
        let Some(&prefix) = self.key_prefix.get(table as usize * 5 + hook as usize) else {
            return false;
        };
        match rule {
            Some(n) => n <= prefix,
            None => usize::try_from(prefix).is_ok_and(|p| p == len),
        }
    }

    /// The rule `id` names (`id` must come from this ruleset).
    pub fn rule_ref(&self, id: RuleId) -> RuleRef {
        match id.0 {
            RuleAt::Rule { table, ti, ci, rule } => {
                let chain = self.tables.get(ti as usize).and_then(|t| t.chains.get(ci as usize));
                RuleRef { table, chain: chain.map_or_else(|| ChainName::from(""), ChainName::of), rule }
            }
            RuleAt::Absent { table, hook } => RuleRef { table, chain: ChainName::Builtin(hook), rule: None },
        }
    }

    /// Whether `r` is the rule `id` names (without cloning anything).
    pub fn names(&self, id: RuleId, r: &RuleRef) -> bool {
        match id.0 {
            RuleAt::Rule { table, ti, ci, rule } => {
                let chain = self.tables.get(ti as usize).and_then(|t| t.chains.get(ci as usize));
                table == r.table && rule == r.rule && chain.is_some_and(|c| r.chain.same(c))
            }
            RuleAt::Absent { table, hook } => {
                table == r.table && r.rule.is_none() && &*r.chain == hook.chain_name()
            }
        }
    }

    #[inline]
    fn outcome(&self, (verdict, id): (Verdict, RuleId)) -> Outcome {
        Outcome { verdict, rule: self.rule_ref(id) }
    }

    /// The reference evaluator: every rule of every chain in order, as `ipt_do_table` does.
    /// Same results as [`Ruleset::evaluate`], slower on long chains.
    pub fn evaluate_linear(
        &self,
        table: Table,
        hook: Hook,
        ctx: &mut PacketCtx<'_>,
        state: &mut RuleState,
    ) -> Outcome {
        self.outcome(self.walk(table, hook, ctx, state, false, &mut ()))
    }

    /// The classifier walk: [`Ruleset::walk_short`] for a table without indexed chains, else
    /// [`Ruleset::walk`] (kept out of line: the common short case pays for neither its frame nor
    /// its set-up).
    #[inline(always)]
    fn classified<R: Recorder>(
        &self,
        table: Table,
        hook: Hook,
        ctx: &mut PacketCtx<'_>,
        state: &mut RuleState,
        rec: &mut R,
    ) -> (Verdict, RuleId) {
        match self.short.get(table as usize * 5 + hook as usize) {
            Some(&Some((ti, base))) => {
                self.walk_short((table, hook), ti as usize, base as usize, ctx, state, rec)
            }
            _ => self.walk(table, hook, ctx, state, true, rec),
        }
    }

    #[inline(never)]
    fn walk<R: Recorder>(
        &self,
        table: Table,
        hook: Hook,
        ctx: &mut PacketCtx<'_>,
        state: &mut RuleState,
        classify: bool,
        rec: &mut R,
    ) -> (Verdict, RuleId) {
        let absent = (Verdict::Accept, RuleId(RuleAt::Absent { table, hook }));
        let Some(ti) = self.tables.iter().position(|t| t.table == table) else { return absent };
        let Some(t) = self.tables.get(ti) else { return absent };
        let Some((base, base_chain)) = t.hook_chain(hook) else { return absent };
        let ti32 = u32::try_from(ti).unwrap_or(u32::MAX);
        let at = |ci: usize, rule: Option<u32>| {
            RuleId(RuleAt::Rule { table, ti: ti32, ci: u32::try_from(ci).unwrap_or(u32::MAX), rule })
        };
        let pkt = ctx.pkt;
        let facts = Facts::new(pkt);
        if facts.fragoff != 0 || facts.v6_proto_unknown {
            rec.variant();
        }
        let RuleState { rules: rule_counters, policies, limits, scratch, .. } = state;
        let Scratch(scratch, stack) = scratch;
        scratch.clear();
        stack.clear();
        // (A table without indexed chains takes `walk_short` instead, unless walking linearly.)
        let index = if classify { self.index.get(ti).filter(|ix| ix.any) } else { None };
        // Irregular packets (fragments, short headers, ...) take the linear walk everywhere.
        let keys = index
            .and_then(|_| PacketKeys::new(self.family, &facts, pkt.ip.proto, ctx.in_iface, ctx.out_iface));
        let keys = keys.as_ref();
        // Return stack (reused); depth is bounded by the chain count (no loops).
        let (mut ci, mut ri) = (base, 0usize);
        let mut cands = enter(index, keys, ci, &*ctx.ct, scratch);
        while let Some(chain) = t.chains.get(ci) {
            // The candidate's flags (linear walk: none).
            let mut fast = 0u32;
            if let Some(c) = cands.as_mut() {
                // The next candidate at or after `ri`; past the last one, the chain's end.
                while c.cur < c.end && scratch.get(c.cur).is_some_and(|&r| ((r >> CAND_SHIFT) as usize) < ri)
                {
                    c.cur += 1;
                }
                (ri, fast) = match scratch.get(c.cur) {
                    Some(&r) if c.cur < c.end => ((r >> CAND_SHIFT) as usize, r & ((1 << CAND_SHIFT) - 1)),
                    _ => (chain.rules.len(), 0),
                };
            } else if let (Some(ix), Some(k)) = (index, keys) {
                // A short chain of an indexed table: skip the rules whose summaries refuse the
                // packet.
                if let Some((next, f)) = ix.next_admitted(ci, ri, k, state_bits(&*ctx.ct, true)) {
                    (ri, fast) = (next, f);
                }
            }
            // Leaving the current chain: drop its candidates, restore the caller's (gathered again
            // if a target changed the conntrack state meanwhile).
            let pop = |stack: &mut Vec<Frame>,
                       cands: Option<Cands>,
                       scratch: &mut Vec<u32>,
                       ct: &CtMatch|
             -> Option<(usize, usize, Option<Cands>)> {
                if let Some(c) = cands {
                    scratch.truncate(c.start);
                }
                let f = stack.pop()?;
                let mut back = f.cands;
                if let Some(c) = back {
                    if c.ct_bits != state_bits(ct, true) {
                        scratch.truncate(c.start);
                        back = enter(index, keys, f.ci, ct, scratch);
                    }
                }
                Some((f.ci, f.ri, back))
            };
            let Some(rule) = chain.rules.get(ri) else {
                // Fell off the end: pop, or the base chain's policy. A user chain's tail is its
                // implicit RETURN rule, which TRACE logs.
                if chain.builtin.is_none() {
                    trace(ctx, || TraceEntry { rule: tail_ref(table, chain), kind: TraceKind::Return });
                }
                match pop(stack, cands, scratch, &*ctx.ct) {
                    Some((c, r, k)) => {
                        (ci, ri, cands) = (c, r, k);
                        continue;
                    }
                    None => break,
                }
            };
            let here = |ci: usize, ri: usize| RuleRef {
                table,
                chain: t.chains.get(ci).map_or_else(|| ChainName::from(""), ChainName::of),
                rule: u32::try_from(ri.saturating_add(1)).ok(),
            };
            let slot = match fast & CAND_EXACT {
                // An exact candidate matches: its summary admitted the packet, and its tests are
                // those (see `classify::exact`), so the rule itself is not even loaded (walking
                // linearly: only its slot).
                CAND_EXACT => cands.map_or(rule.slot, |c| c.first_slot.saturating_add(ri)),
                _ => {
                    match ip_match(&rule.ip, &facts, ctx) {
                        M::Yes => {}
                        M::No => {
                            ri = ri.saturating_add(1);
                            continue;
                        }
                        M::Hotdrop => {
                            rec.variant();
                            return (Verdict::Drop, at(ci, u32::try_from(ri.saturating_add(1)).ok()));
                        }
                    }
                    let mut matched = true;
                    for m in &rule.matches {
                        rec.runs(m);
                        match run_match(m, &facts, ctx, limits) {
                            M::Yes => {}
                            M::No => {
                                matched = false;
                                break;
                            }
                            M::Hotdrop => {
                                rec.variant();
                                return (Verdict::Drop, at(ci, u32::try_from(ri.saturating_add(1)).ok()));
                            }
                        }
                    }
                    if !matched {
                        ri = ri.saturating_add(1);
                        continue;
                    }
                    rule.slot
                }
            };
            RuleState::count(rule_counters, slot, facts.len);
            rec.counted(slot, false);
            trace(ctx, || TraceEntry { rule: here(ci, ri), kind: trace_kind(rule, chain) });
            if fast & (CAND_ACCEPT | CAND_DROP) != 0 {
                let v = if fast & CAND_ACCEPT != 0 { Verdict::Accept } else { Verdict::Drop };
                return (v, at(ci, u32::try_from(ri.saturating_add(1)).ok()));
            }
            match &rule.target {
                Target::Accept => return (Verdict::Accept, at(ci, u32::try_from(ri.saturating_add(1)).ok())),
                Target::Drop => return (Verdict::Drop, at(ci, u32::try_from(ri.saturating_add(1)).ok())),
                Target::Reject(w) => {
                    return (Verdict::Reject(*w), at(ci, u32::try_from(ri.saturating_add(1)).ok()))
                }
                Target::Return => match pop(stack, cands, scratch, &*ctx.ct) {
                    Some((c, r, k)) => (ci, ri, cands) = (c, r, k),
                    None => break,
                },
                Target::Jump(to) => {
                    stack.push(Frame { ci, ri: ri.saturating_add(1), cands });
                    (ci, ri) = (*to, 0);
                    cands = enter(index, keys, ci, &*ctx.ct, scratch);
                }
                Target::Goto(to) => {
                    if let Some(c) = cands {
                        scratch.truncate(c.start);
                    }
                    (ci, ri) = (*to, 0);
                    cands = enter(index, keys, ci, &*ctx.ct, scratch);
                }
                Target::None => ri = ri.saturating_add(1),
                other => {
                    rec.variant();
                    apply(other, ctx, || here(ci, ri));
                    ri = ri.saturating_add(1);
                    // NOTRACK / CT change the state the index looked up: gather again.
                    if let Some(c) = cands {
                        if c.ct_bits != state_bits(&*ctx.ct, true) {
                            scratch.truncate(c.start);
                            cands = enter(index, keys, ci, &*ctx.ct, scratch);
                        }
                    }
                }
            }
        }
        self.underflow(table, ti32, (base, base_chain), ctx, policies, facts.len, rec)
    }

    /// Underflow of base chain `base`: its policy decides, and its counters grow.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn underflow<R: Recorder>(
        &self,
        table: Table,
        ti32: u32,
        (base, base_chain): (usize, &Chain),
        ctx: &mut PacketCtx<'_>,
        policies: &mut [(u64, u64)],
        len: u64,
        rec: &mut R,
    ) -> (Verdict, RuleId) {
        RuleState::count(policies, base_chain.policy_slot, len);
        rec.counted(base_chain.policy_slot, true);
        trace(ctx, || TraceEntry { rule: tail_ref(table, base_chain), kind: TraceKind::Policy });
        let verdict = match base_chain.builtin {
            Some((_, Policy::Drop)) => Verdict::Drop,
            _ => Verdict::Accept,
        };
        let ci = u32::try_from(base).unwrap_or(u32::MAX);
        (verdict, RuleId(RuleAt::Rule { table, ti: ti32, ci, rule: None }))
    }

    /// [`Ruleset::walk`] for a table without indexed chains (all short), table index `ti`, base
    /// chain `base`: the same first-match walk, but a regular packet ([`SumKeys::short`]) goes
    /// from one rule its chain's state and protocol masks leave to the next, skips those whose
    /// device test or summary refuses it, and decides a rule exact but for its devices (see
    /// `classify::exact`) without running its tests, as the indexed walk does for its candidates.
    /// No candidate lists: this is the common short-ruleset case, where the per-rule and per-walk
    /// overheads are what costs (an empty base chain goes straight to its policy; the packet's
    /// facts are computed only if a rule must run its tests).
    #[inline(never)]
    fn walk_short<R: Recorder>(
        &self,
        (table, hook): (Table, Hook),
        ti: usize,
        base: usize,
        ctx: &mut PacketCtx<'_>,
        state: &mut RuleState,
        rec: &mut R,
    ) -> (Verdict, RuleId) {
        let t = self.tables.get(ti);
        let (Some(t), Some(ix), Some(base_chain)) =
            (t, self.index.get(ti), t.and_then(|t| t.chains.get(base)))
        else {
            // (Not for a compiled ruleset: `short` names loaded chains.)
            return self.walk(table, hook, ctx, state, true, rec);
        };
        let ti32 = u32::try_from(ti).unwrap_or(u32::MAX);
        let at = |ci: usize, ri: usize| {
            let (ci, rule) =
                (u32::try_from(ci).unwrap_or(u32::MAX), u32::try_from(ri.saturating_add(1)).ok());
            RuleId(RuleAt::Rule { table, ti: ti32, ci, rule })
        };
        let pkt = ctx.pkt;
        let len = counted_len(pkt);
        // The packet's facts, computed when a rule or the keys first need them (a walk deciding
        // from masks, device tests and summaries alone never does).
        let mut facts: Option<Facts<'_>> = None;
        if R::RECORDS {
            let f = facts.get_or_insert_with(|| Facts::cold(pkt));
            if f.fragoff != 0 || f.v6_proto_unknown {
                rec.variant();
            }
        }
        if base_chain.rules.is_empty() {
            // An empty built-in chain (OUTPUT or FORWARD often are): its policy, nothing else.
            return self.underflow(table, ti32, (base, base_chain), ctx, &mut state.policies, len, rec);
        }
        let devs = (ctx.in_iface.unwrap_or(""), ctx.out_iface.unwrap_or(""));
        let RuleState { rules: rule_counters, policies, limits, scratch, .. } = state;
        let stack = &mut scratch.1;
        stack.clear();
        // The packet's keys and protocol column, looked up when a chain with rules is first
        // entered (an empty chain needs none); `None`: an irregular packet, every rule is tested.
        let (mut keys, mut looked) = (None::<(SumKeys, usize)>, false);
        // The conntrack state bits the summaries test and their row in the state masks (NOTRACK /
        // CT change them: see below).
        let mut ct_bits = state_bits(&*ctx.ct, true);
        let mut row = state_row(ct_bits);
        let (mut ci, mut ri) = (base, 0usize);
        'chains: while let Some(chain) = t.chains.get(ci) {
            let rules = chain.rules.as_slice();
            let short = match rules.is_empty() {
                true => None,
                false => ix.short(ci).filter(|s| s.len() == rules.len()),
            };
            if short.is_some() && !looked {
                keys = short_keys(self.family, pkt, ix);
                looked = true;
            }
            let short = short.zip(keys.as_ref());
            // The rules the state and protocol masks leave (the chain's summaries tell the rest).
            let mut cands = short.map_or(0, |(sc, &(_, col))| sc.cands(col, row));
            loop {
                // The candidate's flags (no summaries: none, test the rule).
                let mut fast = 0u32;
                if let Some((sc, (k, _))) = short {
                    (ri, fast) = sc.next(cands, ri, k, ct_bits, devs);
                }
                let Some(rule) = rules.get(ri) else {
                    // Fell off the end: pop, or the base chain's policy. A user chain's tail is its
                    // implicit RETURN rule, which TRACE logs.
                    if chain.builtin.is_none() {
                        trace(ctx, || TraceEntry { rule: tail_ref(table, chain), kind: TraceKind::Return });
                    }
                    match stack.pop() {
                        Some(f) => {
                            (ci, ri) = (f.ci, f.ri);
                            continue 'chains;
                        }
                        None => break 'chains,
                    }
                };
                if fast & CAND_EXACT == 0 {
                    // Not exact: the rule's own tests, as `ipt_do_table` runs them.
                    let facts = facts.get_or_insert_with(|| Facts::cold(pkt));
                    match ip_match(&rule.ip, facts, ctx) {
                        M::Yes => {}
                        M::No => {
                            ri = ri.saturating_add(1);
                            continue;
                        }
                        M::Hotdrop => {
                            rec.variant();
                            return (Verdict::Drop, at(ci, ri));
                        }
                    }
                    let mut matched = true;
                    for m in &rule.matches {
                        rec.runs(m);
                        match run_match(m, facts, ctx, limits) {
                            M::Yes => {}
                            M::No => {
                                matched = false;
                                break;
                            }
                            M::Hotdrop => {
                                rec.variant();
                                return (Verdict::Drop, at(ci, ri));
                            }
                        }
                    }
                    if !matched {
                        ri = ri.saturating_add(1);
                        continue;
                    }
                }
                RuleState::count(rule_counters, rule.slot, len);
                rec.counted(rule.slot, false);
                let here = || RuleRef {
                    table,
                    chain: ChainName::of(chain),
                    rule: u32::try_from(ri.saturating_add(1)).ok(),
                };
                trace(ctx, || TraceEntry { rule: here(), kind: trace_kind(rule, chain) });
                if fast & (CAND_ACCEPT | CAND_DROP) != 0 {
                    let v = if fast & CAND_ACCEPT != 0 { Verdict::Accept } else { Verdict::Drop };
                    return (v, at(ci, ri));
                }
                match &rule.target {
                    Target::Accept => return (Verdict::Accept, at(ci, ri)),
                    Target::Drop => return (Verdict::Drop, at(ci, ri)),
                    Target::Reject(w) => return (Verdict::Reject(*w), at(ci, ri)),
                    Target::Return => match stack.pop() {
                        Some(f) => {
                            (ci, ri) = (f.ci, f.ri);
                            continue 'chains;
                        }
                        None => break 'chains,
                    },
                    Target::Jump(to) => {
                        stack.push(Frame { ci, ri: ri.saturating_add(1), cands: None });
                        (ci, ri) = (*to, 0);
                        continue 'chains;
                    }
                    Target::Goto(to) => {
                        (ci, ri) = (*to, 0);
                        continue 'chains;
                    }
                    Target::None => ri = ri.saturating_add(1),
                    other => {
                        rec.variant();
                        apply(other, ctx, here);
                        ri = ri.saturating_add(1);
                        // NOTRACK / CT change the state the summaries test.
                        ct_bits = state_bits(&*ctx.ct, true);
                        row = state_row(ct_bits);
                        if let Some((sc, &(_, col))) = short {
                            cands = sc.cands(col, row);
                        }
                    }
                }
            }
        }
        self.underflow(table, ti32, (base, base_chain), ctx, policies, len, rec)
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
            master_helper: None,
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
            mut ct: CtMatch,
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
                ct: &mut ct,
                pkttype: PktType::Host,
                host: &UnicastHost,
                effects: Vec::new(),
                trace: None,
            };
            let o = self.rs.evaluate(table, hook, &mut ctx, &mut self.st);
            (o, ctx.ct.clone(), ctx.mark, ctx.effects)
        }
    }

    fn at(o: &Outcome) -> String {
        format!("{:?} {}", o.verdict, o.rule)
    }

    /// Evaluates with recording; returns the outcome and the recording.
    fn recorded(rs: &Ruleset, st: &mut RuleState, d: &Dgram, mut ct: CtMatch) -> (Outcome, Recording) {
        let pkt = d.packet();
        let mut ctx = PacketCtx {
            now: Time::from_secs_f64(0.0),
            pkt: &pkt,
            in_iface: Some("eth0"),
            out_iface: None,
            mark: 0,
            ct: &mut ct,
            pkttype: PktType::Host,
            host: &UnicastHost,
            effects: Vec::new(),
            trace: None,
        };
        let mut rec = Recording::default();
        let (verdict, id) = rs.evaluate_id(Table::Filter, Hook::Input, &mut ctx, st, Some(&mut rec));
        (Outcome { verdict, rule: rs.rule_ref(id) }, rec)
    }

    #[test]
    fn recordings_say_which_walks_depend_on_the_flow_only_and_replay_their_counters() {
        let rs = crate::parse(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:est - [0:0]\n\
             -A INPUT -m conntrack --ctstate ESTABLISHED -j est\n\
             -A INPUT -p udp -m udp --dport 9 -m conntrack --ctstate NEW -j LOG --log-prefix x\n\
             -A INPUT -m conntrack --ctstate NEW -p tcp -m tcp --tcp-flags SYN SYN -j ACCEPT\n\
             -A est -p udp -m udp --sport 53 -m comment --comment count\n\
             -A est -p tcp -m tcp --sport 22 -m length --length 0:100 -j DROP\n\
             -A est -p udp -j ACCEPT\n\
             COMMIT\n",
        )
        .unwrap();
        let mut st = rs.new_state();
        let est = || CtMatch::Tracked(view(CtState::Established));
        // UDP from port 53: INPUT:1 (jump), est:1 (no target), est:3 accepts. Flow-invariant.
        let (o, rec) = recorded(&rs, &mut st, &udp(53, 1000), est());
        assert_eq!(at(&o), "Accept filter:est:3");
        assert!(rec.is_flow_invariant());
        assert_eq!(rec.len(), 3);
        // Replaying the recording grows exactly what evaluating grows.
        let mut replayed = rs.new_state();
        let mut st2 = rs.new_state();
        for _ in 0..3 {
            let _ = recorded(&rs, &mut st2, &udp(53, 1000), est());
            replayed.count_recorded(&rec, &udp(53, 1000).packet());
        }
        assert_eq!(replayed, st2);
        assert_eq!(replayed.rule_counters(Table::Filter, "est", 1), Some((3, 3 * 28)));
        // TCP from port 22: the length match runs, so the walk depends on the packet.
        let (o, rec) = recorded(&rs, &mut st, &tcp(22, 1000, 0x10), est());
        assert_eq!(at(&o), "Drop filter:est:2");
        assert!(!rec.is_flow_invariant());
        // TCP from another port: est:2 stops at its port, the length match never runs; est falls off its
        // end, INPUT:2 (udp) and INPUT:3 (NEW) do not match, the policy drops: invariant.
        let (o, rec) = recorded(&rs, &mut st, &tcp(80, 1000, 0x10), est());
        assert_eq!(at(&o), "Drop filter:INPUT:policy");
        assert!(rec.is_flow_invariant());
        assert_eq!(rec.len(), 2, "the jump and the policy");
        // NEW TCP: the flags match runs.
        let (_, rec) = recorded(&rs, &mut st, &tcp(80, 1000, 0x02), CtMatch::Tracked(view(CtState::New)));
        assert!(!rec.is_flow_invariant());
        // NEW UDP to port 9: a LOG target runs.
        let (_, rec) = recorded(&rs, &mut st, &udp(1000, 9), CtMatch::Tracked(view(CtState::New)));
        assert!(!rec.is_flow_invariant());
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

    /// Live 6.18 (FTP PASV over lo, `-j CT --helper ftp` in raw OUTPUT): every packet of the data
    /// connection matched `--helper ftp`, `--helper ""` and `--helper ftp-xyz` but not `ft` or
    /// `irc`; no packet of the control connection (which carries the helper itself) matched
    /// `--helper ftp` or `--helper ""`, all matched `! --helper ftp`.
    #[test]
    fn helper_match_looks_at_the_master_helper_like_the_live_kernel() {
        let rs = crate::parse(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             -A INPUT -m helper --helper ftp\n-A INPUT -m helper --helper \"\"\n\
             -A INPUT -m helper --helper ftp-xyz\n-A INPUT -m helper --helper ft\n\
             -A INPUT -m helper --helper irc\n-A INPUT -m helper ! --helper ftp\n\
             -A INPUT -m helper ! --helper \"\"\nCOMMIT\n",
        )
        .unwrap();
        let mut r = Run::new(&rs);
        let (f, i) = (Table::Filter, Hook::Input);
        let hits = |r: &Run<'_>| -> Vec<u64> {
            (1..=7).map(|n| r.st.rule_counters(f, "INPUT", n).map_or(0, |c| c.0)).collect()
        };
        // t=0 the data connection's first packet (RELATED, EXPECTED, master has helper ftp).
        let mut data = view(CtState::Related);
        data.status |= status::EXPECTED;
        data.master_helper = Some("ftp".into());
        r.go(f, i, &tcp(20, 10000, 0x02), CtMatch::Tracked(data.clone()), 0.0);
        assert_eq!(hits(&r), [1, 1, 1, 0, 0, 0, 0]);
        // t=1 its later packets are ESTABLISHED and still match: ct->master stays.
        data.state = CtState::Established;
        r.go(f, i, &tcp(20, 10000, 0x10), CtMatch::Tracked(data), 1.0);
        assert_eq!(hits(&r), [2, 2, 2, 0, 0, 0, 0]);
        // t=2 the control connection has the helper itself but no master: only the negations.
        let mut control = view(CtState::Established);
        control.helper = Some("ftp".into());
        r.go(f, i, &tcp(1000, 21, 0x10), CtMatch::Tracked(control), 2.0);
        assert_eq!(hits(&r), [2, 2, 2, 0, 0, 1, 1]);
        // t=3 no conntrack entry, untracked: the inversion flag alone decides.
        r.go(f, i, &tcp(1000, 21, 0x10), CtMatch::Invalid, 3.0);
        r.go(f, i, &tcp(1000, 21, 0x10), CtMatch::Untracked, 3.0);
        assert_eq!(hits(&r), [2, 2, 2, 0, 0, 3, 3]);
        // t=4 an expected entry whose master has no helper (e.g. expectation via ctnetlink).
        let mut orphan = view(CtState::Related);
        orphan.status |= status::EXPECTED;
        r.go(f, i, &udp(1, 2), CtMatch::Tracked(orphan), 4.0);
        assert_eq!(hits(&r), [2, 2, 2, 0, 0, 4, 4]);
    }

    #[test]
    fn helper_match_with_another_master_helper() {
        let rs = crate::parse(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m helper ! --helper tftp -j DROP\n\
             -A INPUT -m helper --helper \"Q.931\" -j REJECT\nCOMMIT\n",
        )
        .unwrap();
        let mut r = Run::new(&rs);
        let (f, i) = (Table::Filter, Hook::Input);
        let mut v = view(CtState::Related);
        v.master_helper = Some("tftp".into());
        let (o, ..) = r.go(f, i, &udp(69, 1000), CtMatch::Tracked(v.clone()), 0.0);
        assert_eq!(at(&o), "Accept filter:INPUT:policy");
        v.master_helper = Some("Q.931".into());
        let (o, ..) = r.go(f, i, &udp(69, 1000), CtMatch::Tracked(v), 1.0);
        assert_eq!(at(&o), "Drop filter:INPUT:1");
    }

    #[test]
    fn a_template_never_matches_the_helper_match() {
        // Raw rules after `CT --helper ftp` see the template, which has no master.
        let rs = crate::parse(
            "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -j CT --helper ftp\n\
             -A PREROUTING -m helper --helper \"\" -j NOTRACK\nCOMMIT\n",
        )
        .unwrap();
        let mut r = Run::new(&rs);
        let (_, ct, _, fx) = r.go(Table::Raw, Hook::PreRouting, &tcp(1000, 21, 2), CtMatch::Invalid, 0.0);
        assert!(
            matches!(ct, CtMatch::Tracked(v) if v.helper.as_deref() == Some("ftp") && v.master_helper.is_none())
        );
        assert_eq!(fx.len(), 1);
        assert_eq!(r.st.rule_counters(Table::Raw, "PREROUTING", 2), Some((0, 0)));
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
                ct: &mut CtMatch::Invalid,
                pkttype,
                host: &Host,
                effects: Vec::new(),
                trace: None,
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

    // ---- IPv6 (ip6tables rulesets) ----

    /// An IPv6 datagram from 2001:db8::1 to 2001:db8::2 with hop limit `hl`: `exts` are
    /// (header type, body after the next-header byte), then the upper-layer header `proto`/`l4`.
    fn v6(exts: &[(u8, &[u8])], proto: u8, l4: &[u8], hl: u8) -> Vec<u8> {
        let mut payload = Vec::new();
        for (i, (_, body)) in exts.iter().enumerate() {
            payload.push(exts.get(i + 1).map_or(proto, |e| e.0));
            payload.extend_from_slice(body);
        }
        payload.extend_from_slice(l4);
        let mut b = vec![0x60, 0, 0, 0];
        b.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        b.push(exts.first().map_or(proto, |e| e.0));
        b.push(hl);
        b.extend_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&"2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        b.extend_from_slice(&payload);
        b
    }

    const ECHO6: [u8; 8] = [128, 0, 0, 0, 0, 1, 0, 1];
    const UDP6: [u8; 8] = [0x0f, 0xa0, 0x00, 0x35, 0, 8, 0, 0];
    /// Destination options (8 bytes: next, len 0, PadN 4).
    const DSTOPT: (u8, &[u8]) = (60, &[0, 1, 4, 0, 0, 0, 0]);
    const HOPOPT: (u8, &[u8]) = (0, &[0, 1, 4, 0, 0, 0, 0]);
    /// Fragment header: offset 0, more fragments, id 0x1234.
    const FRAG_FIRST: (u8, &[u8]) = (44, &[0, 0, 1, 0, 0, 0x12, 0x34]);

    /// Evaluates `bytes` in filter INPUT; returns the outcome and the trace.
    fn eval6(rs: &Ruleset, st: &mut RuleState, bytes: &[u8]) -> (String, Vec<String>) {
        let pkt = wire::decode_ip(bytes).unwrap();
        let mut ctx = PacketCtx {
            now: Time::ZERO,
            pkt: &pkt,
            in_iface: Some("eth0"),
            out_iface: None,
            mark: 0,
            ct: &mut CtMatch::Invalid,
            pkttype: PktType::Host,
            host: &UnicastHost,
            effects: Vec::new(),
            trace: Some(Vec::new()),
        };
        let o = rs.evaluate(Table::Filter, Hook::Input, &mut ctx, st);
        let trace = ctx.trace.unwrap_or_default().iter().map(ToString::to_string).collect();
        (at(&o), trace)
    }

    fn rules6(body: &str) -> Ruleset {
        crate::parse_family(
            &format!(
                "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{body}COMMIT\n"
            ),
            Family::V6,
        )
        .unwrap()
    }

    #[test]
    fn ipv6_addresses_protocol_after_extension_headers_and_icmp6() {
        let rs = rules6(
            "-A INPUT -s 2001:db8::/ffff:ffff:0:0:0:0:0:fffe -p udp -j LOG\n\
             -A INPUT -p ipv6-opts -j DROP\n\
             -A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type echo-reply -j DROP\n\
             -A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type echo-request -m hl --hl-gt 10 -j ACCEPT\n\
             -A INPUT ! -s 2001:db8::1 -j DROP\n\
             -A INPUT -m length --length 48 -j REJECT\n\
             -A INPUT -p all -j REJECT --reject-with icmp6-adm-prohibited\n",
        );
        let mut st = rs.new_state();
        // An echo request behind a destination options header: `-p ipv6-icmp` sees ICMPv6, not 60.
        let echo = v6(&[DSTOPT], 58, &ECHO6, 64);
        assert_eq!(eval6(&rs, &mut st, &echo).0, "Accept filter:INPUT:4");
        // Hop limit 5: rule 4 fails on hl; length is 40 + payload (8 + 8) = 56, so rule 7 rejects.
        let low = v6(&[DSTOPT], 58, &ECHO6, 5);
        assert_eq!(eval6(&rs, &mut st, &low).0, "Reject(Icmp6AdmProhibited) filter:INPUT:7");
        // A bare echo request of 48 bytes: `-m length` counts the 40-byte header.
        let bare = v6(&[], 58, &ECHO6, 5);
        assert_eq!(eval6(&rs, &mut st, &bare).0, "Reject(Icmp6PortUnreachable) filter:INPUT:6");
        // UDP from 2001:db8::1 matches the odd mask (last bit ignored): LOG, then (48 bytes) rule 6.
        let udp6 = v6(&[], 17, &UDP6, 64);
        let (o, trace) = eval6(&rs, &mut st, &udp6);
        assert_eq!(o, "Reject(Icmp6PortUnreachable) filter:INPUT:6");
        assert_eq!(trace, ["filter:INPUT:rule:1", "filter:INPUT:rule:6"]);
        assert_eq!(st.rule_counters(Table::Filter, "INPUT", 1), Some((1, 48)));
        assert_eq!(st.rule_counters(Table::Filter, "INPUT", 2), Some((0, 0)));
    }

    #[test]
    fn icmp6_match_needs_its_header_and_has_no_any() {
        let rs = rules6(
            "-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 255 -j ACCEPT\n\
             -A INPUT -p ipv6-icmp -m icmp6 ! --icmpv6-type 1/4 -j REJECT\n",
        );
        let mut st = rs.new_state();
        // Type 1 code 4 (port unreachable): neither rule; the policy drops.
        let unreach = v6(&[], 58, &[1, 4, 0, 0, 0, 0, 0, 0], 64);
        assert_eq!(eval6(&rs, &mut st, &unreach).0, "Drop filter:INPUT:policy");
        // Type 1 code 3: rule 2 (inverted).
        let addr = v6(&[], 58, &[1, 3, 0, 0, 0, 0, 0, 0], 64);
        assert_eq!(eval6(&rs, &mut st, &addr).0, "Reject(Icmp6PortUnreachable) filter:INPUT:2");
        // A 4-byte ICMPv6 header: the icmp6 match hotdrops (rule 1, not counted).
        let short = v6(&[], 58, &[128, 0, 0, 0], 64);
        assert_eq!(eval6(&rs, &mut st, &short).0, "Drop filter:INPUT:1");
        assert_eq!(st.rule_counters(Table::Filter, "INPUT", 1), Some((0, 0)));
    }

    #[test]
    fn ipv6header_hard_and_soft() {
        let rs = rules6(
            "-A INPUT -m ipv6header --header hop,dst,prot -j DROP\n\
             -A INPUT -m ipv6header ! --header frag --soft -m ipv6header --header dst --soft -j REJECT\n\
             -A INPUT -m ipv6header --header none -j LOG\n\
             -A INPUT -m ipv6header --header prot -j ACCEPT\n",
        );
        let mut st = rs.new_state();
        let both = v6(&[HOPOPT, DSTOPT], 17, &UDP6, 64);
        assert_eq!(eval6(&rs, &mut st, &both).0, "Drop filter:INPUT:1");
        // Only dst options: not exactly hop,dst,prot; no fragment header and has dst: rule 2.
        let dst = v6(&[DSTOPT], 17, &UDP6, 64);
        assert_eq!(eval6(&rs, &mut st, &dst).0, "Reject(Icmp6PortUnreachable) filter:INPUT:2");
        // A first fragment with dst options: rule 2's `! --header frag --soft` fails.
        let frag = v6(&[FRAG_FIRST, DSTOPT], 17, &UDP6, 64);
        assert_eq!(eval6(&rs, &mut st, &frag).0, "Drop filter:INPUT:policy");
        // No next header at all: `none` (hard) matches, then nothing else.
        let none = v6(&[], 59, &[], 64);
        let (o, trace) = eval6(&rs, &mut st, &none);
        assert_eq!(o, "Drop filter:INPUT:policy");
        assert_eq!(trace, ["filter:INPUT:rule:3", "filter:INPUT:policy:5"]);
        // Plain UDP: exactly `prot`.
        let plain = v6(&[], 17, &UDP6, 64);
        assert_eq!(eval6(&rs, &mut st, &plain).0, "Accept filter:INPUT:4");
    }

    #[test]
    fn frag_match_reads_the_fragment_header() {
        let rs = rules6(
            "-A INPUT -m frag --fragid 0x1000:0x1fff --fraglast -j DROP\n\
             -A INPUT -m frag --fragid 0x1234 --fragfirst --fragmore -j LOG\n\
             -A INPUT -m frag --fragres -j REJECT\n\
             -A INPUT -m frag ! --fragid 0x1234 -j ACCEPT\n",
        );
        let mut st = rs.new_state();
        // First fragment (offset 0, M=1, id 0x1234) behind hop-by-hop: rule 2 logs, rule 3
        // matches (`--fragres`: the reserved fields must be zero, as ip6t_frag tests them).
        let first = v6(&[HOPOPT, FRAG_FIRST], 17, &UDP6, 64);
        let (o, trace) = eval6(&rs, &mut st, &first);
        assert_eq!(o, "Reject(Icmp6PortUnreachable) filter:INPUT:3");
        assert_eq!(trace, ["filter:INPUT:rule:2", "filter:INPUT:rule:3"]);
        // Last fragment at offset 8 with id 0x1234: rule 1 (--fraglast, id in range).
        let last = v6(&[(44, &[0, 0, 8, 0, 0, 0x12, 0x34])], 17, &[0; 8], 64);
        assert_eq!(eval6(&rs, &mut st, &last).0, "Drop filter:INPUT:1");
        // Reserved bits set in the offset field, id 0x99: not rule 3; rule 4 (id is not 0x1234).
        let res = v6(&[(44, &[0, 0, 0x10 | 0x2, 0, 0, 0, 0x99])], 17, &[0; 8], 64);
        assert_eq!(eval6(&rs, &mut st, &res).0, "Accept filter:INPUT:4");
        // No fragment header: no frag rule matches.
        let plain = v6(&[], 17, &UDP6, 64);
        assert_eq!(eval6(&rs, &mut st, &plain).0, "Drop filter:INPUT:policy");
    }

    #[test]
    fn non_first_ipv6_fragment_and_l4_matches() {
        let rs = rules6(
            "-A INPUT -p udp --dport 53 -j ACCEPT\n\
             -A INPUT -p udp -j REJECT\n",
        );
        let mut st = rs.new_state();
        // A non-first fragment: `-p udp` matches (the fragment header names UDP) but the udp match
        // never does (fragoff != 0, no hotdrop: IPv6 offsets are in bytes).
        let later = v6(&[(44, &[0, 0, 8, 0, 0, 0, 7])], 17, &[0, 0, 0, 53, 0, 8, 0, 0], 64);
        assert_eq!(eval6(&rs, &mut st, &later).0, "Reject(Icmp6PortUnreachable) filter:INPUT:2");
        // A non-first fragment followed by a destination options header: ipv6_find_hdr fails with
        // offset 0 and every `-p` rule hotdrops.
        let odd = v6(&[(44, &[0, 0, 8, 0, 0, 0, 7]), DSTOPT], 17, &UDP6, 64);
        assert_eq!(eval6(&rs, &mut st, &odd).0, "Drop filter:INPUT:1");
    }

    #[test]
    fn ipv6_iprange_conntrack_and_addrtype() {
        struct Local6;
        impl HostModel for Local6 {
            fn addr_type(&self, addr: IpAddr, _iface: Option<&str>) -> AddrTypes {
                if addr == "2001:db8::2".parse::<IpAddr>().unwrap() {
                    AddrTypes::LOCAL
                } else {
                    AddrTypes::UNICAST
                }
            }
        }
        let rs = rules6(
            "-A INPUT -m iprange --src-range 2001:db8::1-2001:db8::f -m addrtype --dst-type LOCAL -j LOG\n\
             -A INPUT -m conntrack --ctorigsrc 2001:db8::/64 --ctrepldst 2001:db8::1 -j ACCEPT\n",
        );
        let bytes = v6(&[], 17, &UDP6, 64);
        let pkt = wire::decode_ip(&bytes).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        let mut v = view(CtState::New);
        (v.orig_src, v.orig_dst, v.repl_src, v.repl_dst) = (a, b, b, a);
        let mut st = rs.new_state();
        let mut ctx = PacketCtx {
            now: Time::ZERO,
            pkt: &pkt,
            in_iface: Some("eth0"),
            out_iface: None,
            mark: 0,
            ct: &mut CtMatch::Tracked(v),
            pkttype: PktType::Host,
            host: &Local6,
            effects: Vec::new(),
            trace: None,
        };
        let o = rs.evaluate(Table::Filter, Hook::Input, &mut ctx, &mut st);
        assert_eq!(at(&o), "Accept filter:INPUT:2");
        assert_eq!(ctx.effects.len(), 1, "LOG rule 1 matched");
        assert!(ctx.trace.is_none());
    }

    // ---- TRACE ----

    #[test]
    fn trace_lists_rules_returns_and_policies_like_the_kernel() {
        let rs = crate::parse(
            "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:a - [0:0]\n:b - [0:0]\n\
             -A INPUT -p udp -j a\n\
             -A INPUT -p tcp -g b\n\
             -A INPUT -s 192.0.2.0/24\n\
             -A INPUT -p icmp -j ACCEPT\n\
             -A INPUT -s 0.0.0.0/0 -j DROP\n\
             -A a -p udp --dport 9 -j RETURN\n\
             -A a -j LOG\n\
             -A a -j RETURN\n\
             -A b -p tcp --dport 80 -j ACCEPT\n\
             COMMIT\n",
        )
        .unwrap();
        let run = |d: &Dgram| {
            let pkt = d.packet();
            let mut st = rs.new_state();
            let mut ctx = PacketCtx {
                now: Time::ZERO,
                pkt: &pkt,
                in_iface: Some("eth0"),
                out_iface: None,
                mark: 0,
                ct: &mut CtMatch::Invalid,
                pkttype: PktType::Host,
                host: &UnicastHost,
                effects: Vec::new(),
                trace: Some(Vec::new()),
            };
            let o = rs.evaluate(Table::Filter, Hook::Input, &mut ctx, &mut st);
            let t: Vec<String> = ctx.trace.unwrap_or_default().iter().map(ToString::to_string).collect();
            (at(&o), t)
        };
        // UDP to 9: into `a`, an explicit (conditional) RETURN is a "rule"; back in INPUT the
        // counting rule 3 has no target but a condition ("rule"); rule 5 (`-s 0/0 -j DROP`) is
        // unconditional with a standard verdict, so the kernel calls it "policy".
        let (o, t) = run(&udp(1, 9));
        assert_eq!(o, "Drop filter:INPUT:5");
        assert_eq!(
            t,
            ["filter:INPUT:rule:1", "filter:a:rule:1", "filter:INPUT:rule:3", "filter:INPUT:policy:5"]
        );
        // UDP to 10: LOG ("rule"), then the unconditional `-j RETURN` reads as "return".
        let (_, t) = run(&udp(1, 10));
        assert_eq!(t[1..3], ["filter:a:rule:2".to_string(), "filter:a:return:3".to_string()]);
        // TCP to 81: goto b, falls off b (implicit RETURN: rule count + 1 = 2), which returns to
        // INPUT's caller: none, so the policy applies (rule count + 1 = 6).
        let (o, t) = run(&tcp(1, 81, 2));
        assert_eq!(o, "Drop filter:INPUT:policy");
        assert_eq!(t, ["filter:INPUT:rule:2", "filter:b:return:2", "filter:INPUT:policy:6"]);
        // ICMP: rule 4 accepts.
        let (_, t) = run(&icmp(8, 0));
        assert_eq!(t, ["filter:INPUT:rule:3", "filter:INPUT:rule:4"]);
        let e = TraceEntry {
            rule: RuleRef { table: Table::Raw, chain: ChainName::from("PREROUTING"), rule: Some(9) },
            kind: TraceKind::Policy,
        };
        assert_eq!(e.to_string(), "raw:PREROUTING:policy:9");
    }

    #[test]
    fn trace_of_a_hotdrop_stops_before_the_rule() {
        let rs = crate::parse(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j LOG\n-A INPUT -p tcp --dport 1 -j DROP\nCOMMIT\n",
        )
        .unwrap();
        let d = dgram(6, &[0, 1, 0, 1]);
        let pkt = d.packet();
        let mut st = rs.new_state();
        let mut ctx = PacketCtx {
            now: Time::ZERO,
            pkt: &pkt,
            in_iface: None,
            out_iface: None,
            mark: 0,
            ct: &mut CtMatch::Invalid,
            pkttype: PktType::Host,
            host: &UnicastHost,
            effects: Vec::new(),
            trace: Some(Vec::new()),
        };
        let o = rs.evaluate(Table::Filter, Hook::Input, &mut ctx, &mut st);
        assert_eq!(at(&o), "Drop filter:INPUT:2");
        // `-j LOG` without conditions is still a "rule" (LOG is not a standard target).
        assert_eq!(
            ctx.trace.unwrap().iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["filter:INPUT:rule:1"]
        );
    }
}
