//! `replay --threads N`: several engines, one result.
//!
//! Contract: the packets are split between N engines (shards), each on its own thread, by
//! [`crate::bench::shard_of`], a hash of the unordered address pair (of the quoted datagram for an ICMP
//! error), so both directions of a connection, the ICMP errors about it and a helper's data connections
//! between the same two hosts meet in the same table. Every shard also sees every other packet's timestamp
//! ([`engine::Engine::handle_tick`]), so its clock and its expiries run exactly as in one engine. The main
//! thread reads the captures, and merges the shards' answers back into capture order: per-packet results,
//! the summary (the table size after each packet is the sum of the shards' tables), the events (per packet,
//! by time), and the rule counters ([`rules::RuleState::merge_counts`]).
//!
//! The results equal those of one engine, with these limits, checked rather than assumed:
//! - a ruleset with `-m limit` (a token bucket shared by all packets) is refused;
//! - `nf_conntrack_max` bounds one table: when the merged table reaches it, the shards would have dropped
//!   and early-dropped differently, and [`Sharded::inexact`] says so;
//! - listings of the table (`--conntrack`) hold the same entries, shard after shard, in each shard's order.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use engine::{Decision, Engine};
use wire::Time;

use crate::load::OpenCapture;
use crate::replay::{engine_for, Feed, FeedStep, PacketResult, RunOptions, Setup, Summary, Tally};

/// Records per batch handed to the shards.
const BATCH: usize = 4096;

/// One record of a batch (its bytes are in [`Batch::data`]).
struct Rec {
    index: usize,
    file: usize,
    file_index: usize,
    ts: Time,
    linktype: u32,
    origlen: u32,
    shard: usize,
    start: usize,
    end: usize,
}

#[derive(Default)]
struct Batch {
    recs: Vec<Rec>,
    data: Vec<u8>,
}

/// What a shard says about one record of a batch (only when it has something to say).
struct Item {
    /// Position in the batch.
    pos: usize,
    /// The shard's table size after it.
    len: usize,
    /// The engine clock after it.
    now: Time,
    decision: Option<Decision>,
    events: Vec<conntrack::Event>,
}

/// The result of a sharded replay.
pub struct Sharded {
    pub summary: Summary,
    /// The shards' engines (counters in [`Sharded::counters`]).
    pub engines: Vec<Engine>,
    /// The merged rule counters (IPv4, and IPv6 when there is an IPv6 ruleset).
    pub counters: rules::RuleState,
    pub counters6: Option<rules::RuleState>,
    /// Why the results may differ from one engine's, when they may.
    pub inexact: Option<String>,
}

fn shard_loop(me: usize, mut engine: Engine, rx: Receiver<Arc<Batch>>, tx: SyncSender<Vec<Item>>) -> Engine {
    while let Ok(batch) = rx.recv() {
        let mut items = Vec::new();
        let mut len = engine.conntrack().len();
        for (pos, r) in batch.recs.iter().enumerate() {
            let (decision, events) = if r.shard == me {
                let data = batch.data.get(r.start..r.end).unwrap_or(&[]);
                (Some(engine.handle_packet_on_wire(r.ts, r.linktype, data, r.origlen)), true)
            } else {
                engine.handle_tick(r.ts);
                (None, false)
            };
            let mut evs = Vec::new();
            while let Some(e) = engine.poll_event() {
                evs.push(e);
            }
            let now_len = engine.conntrack().len();
            if events || now_len != len || !evs.is_empty() {
                items.push(Item { pos, len: now_len, now: engine.now(), decision, events: evs });
            }
            len = now_len;
        }
        if tx.send(items).is_err() {
            break;
        }
    }
    engine
}

/// Merges one batch: the shards' items in capture order, into the tally and the sinks.
#[allow(clippy::too_many_arguments)]
fn merge(
    batch: &Batch,
    outs: Vec<Vec<Item>>,
    lens: &mut [usize],
    tally: &mut Tally,
    sink: &mut impl FnMut(&PacketResult),
    events: &mut impl FnMut(&conntrack::Event),
    max: usize,
    inexact: &mut Option<String>,
) {
    let mut iters: Vec<_> = outs.into_iter().map(|v| v.into_iter().peekable()).collect();
    for (pos, r) in batch.recs.iter().enumerate() {
        let mut decision = None;
        let mut now = r.ts;
        let mut evs: Vec<conntrack::Event> = Vec::new();
        for (shard, it) in iters.iter_mut().enumerate() {
            while let Some(item) = it.next_if(|i| i.pos == pos) {
                if let Some(l) = lens.get_mut(shard) {
                    *l = item.len;
                }
                if item.decision.is_some() {
                    decision = item.decision;
                    now = item.now;
                }
                evs.extend(item.events);
            }
        }
        let total: usize = lens.iter().sum();
        let Some(d) = decision else { continue };
        if inexact.is_none() && (d.ct_dropped || (max > 0 && total >= max)) {
            *inexact = Some(format!(
                "the conntrack table reached nf_conntrack_max ({max}) at packet #{}: shards drop and early-drop \
                 on their own tables, one engine on one table; rerun with --threads 1 for kernel-exact results",
                r.index
            ));
        }
        tally.record(&d, r.ts, now, total);
        sink(&PacketResult { index: r.index, file: r.file, file_index: r.file_index, ts: r.ts, decision: d });
        // Expiries first (stamped with their expiry), then this packet's own events.
        evs.sort_by_key(|e| e.time);
        for e in &evs {
            events(e);
        }
    }
}

/// Replays the captures on `threads` shards (see the module docs). Errors: a ruleset with shared state, or a
/// shard that died.
pub fn run(
    setup: Setup,
    captures: &mut [OpenCapture],
    opts: RunOptions,
    threads: usize,
    mut sink: impl FnMut(&PacketResult),
    mut events: impl FnMut(&conntrack::Event),
) -> miette::Result<Sharded> {
    if setup.ruleset.has_shared_state() || setup.ruleset6.as_ref().is_some_and(|r| r.has_shared_state()) {
        return Err(miette::miette!(
            help = "run with --threads 1",
            "--threads {threads}: the ruleset uses -m limit, whose token bucket is shared by every packet; \
             split between engines it would not give the kernel's answers"
        ));
    }
    let max = setup.config.max as usize;
    let base = setup.ruleset.new_state();
    let base6 = setup.ruleset6.as_ref().map(|r| r.new_state());
    let mut tally = Tally::default();
    let mut lens = vec![0usize; threads];
    let mut inexact = None;
    let (engines, failed) = std::thread::scope(|s| {
        let mut to_shards = Vec::new();
        let mut from_shards = Vec::new();
        let mut handles = Vec::new();
        for me in 0..threads {
            let (btx, brx) = sync_channel::<Arc<Batch>>(2);
            let (otx, orx) = sync_channel::<Vec<Item>>(2);
            let engine = engine_for(&setup, opts);
            handles.push(s.spawn(move || shard_loop(me, engine, brx, otx)));
            to_shards.push(btx);
            from_shards.push(orx);
        }
        let mut failed = false;
        // The batch the shards are working on, merged once the next one is on its way.
        let mut pending: Option<Arc<Batch>> = None;
        let mut collect =
            |b: Arc<Batch>, lens: &mut [usize], tally: &mut Tally, inexact: &mut Option<String>| -> bool {
                let mut outs = Vec::with_capacity(threads);
                for rx in &from_shards {
                    match rx.recv() {
                        Ok(o) => outs.push(o),
                        Err(_) => return false,
                    }
                }
                merge(&b, outs, lens, tally, &mut sink, &mut events, max, inexact);
                true
            };
        let mut batch = Batch::default();
        let mut index = 0usize;
        let mut feed = Feed::new(opts.progress, captures);
        loop {
            let step = feed.next_step();
            let boundary = !matches!(step, Some(FeedStep::Packet { .. }));
            if let Some(FeedStep::Packet { file, r }) = &step {
                let start = batch.data.len();
                batch.data.extend_from_slice(r.data);
                batch.recs.push(Rec {
                    index,
                    file: *file,
                    file_index: r.index,
                    ts: r.ts,
                    linktype: r.linktype,
                    origlen: r.origlen,
                    shard: crate::bench::shard_of(r.linktype, r.data, threads),
                    start,
                    end: batch.data.len(),
                });
                index += 1;
            }
            if batch.recs.len() >= BATCH || (boundary && !batch.recs.is_empty()) {
                let b = Arc::new(std::mem::take(&mut batch));
                if to_shards.iter().any(|tx| tx.send(Arc::clone(&b)).is_err()) {
                    failed = true;
                    break;
                }
                if let Some(p) = pending.replace(b) {
                    if !collect(p, &mut lens, &mut tally, &mut inexact) {
                        failed = true;
                        break;
                    }
                }
            }
            if boundary {
                // Capture boundaries are recorded in order: everything before them is merged first.
                if let Some(p) = pending.take() {
                    if !collect(p, &mut lens, &mut tally, &mut inexact) {
                        failed = true;
                        break;
                    }
                }
                match step {
                    Some(FeedStep::Begin { path, format }) => tally.begin_capture(path, format),
                    Some(FeedStep::End { packets, partial }) => tally.end_capture(packets, partial),
                    _ => break,
                }
            }
        }
        feed.finish();
        drop(to_shards);
        let engines: Vec<Engine> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        failed |= engines.len() != threads;
        (engines, failed)
    });
    if failed {
        return Err(miette::miette!("--threads {threads}: a shard stopped unexpectedly"));
    }
    let mut counters = base.clone();
    let mut counters6 = base6.clone();
    for e in &engines {
        counters.merge_counts(e.rule_state(), &base);
        if let (Some(c6), Some(b6), Some((_, st6))) = (counters6.as_mut(), base6.as_ref(), e.ruleset6()) {
            c6.merge_counts(st6, b6);
        }
    }
    let table_final = engines.iter().map(|e| e.conntrack().len()).sum();
    let regressions = engines.iter().map(|e| e.stats().clock_regressions).sum();
    let mut summary = tally.finish(table_final, regressions);
    summary.fast_path_packets = engines.iter().map(|e| e.fast_path_stats().0).sum();
    Ok(Sharded { summary, engines, counters, counters6, inexact })
}
