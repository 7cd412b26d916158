//! Human-readable summaries.

use std::fmt::Write;
use std::path::Path;

use engine::Engine;

use crate::replay::Summary;

fn get(map: &std::collections::BTreeMap<String, u64>, k: &str) -> u64 {
    map.get(k).copied().unwrap_or(0)
}

/// The `replay` summary as text. Deterministic except the packets/s line.
pub fn summary_text(s: &Summary, engine: &Engine, rules: &Path) -> String {
    let mut o = String::new();
    let _ = summary_body(&mut o, s, engine, rules);
    let _ = writeln!(
        o,
        "fast path     {} packets skipped the rule walk after conntrack (remembered paths)",
        s.fast_path_packets
    );
    let _ = writeln!(o, "rate          {:.0} packets/s (wall clock)", s.packets_per_sec);
    o
}

/// Everything but the wall-clock rate.
pub fn summary_body(o: &mut String, s: &Summary, engine: &Engine, rules: &Path) -> std::fmt::Result {
    for c in &s.captures {
        let partial = if c.partial.is_some() { " PARTIAL" } else { "" };
        writeln!(o, "capture       {} ({}, {} packets){partial}", c.path, c.format, c.packets)?;
        if let Some(p) = &c.partial {
            writeln!(o, "              stopped early: {p}")?;
        }
    }
    writeln!(o, "rules         {} ({} rules)", rules.display(), engine.ruleset().rule_count())?;
    let locals: Vec<String> = engine
        .host()
        .interfaces()
        .iter()
        .filter(|i| i.name != engine::host::LOOPBACK)
        .map(|i| {
            let a: Vec<String> = i.addresses.iter().map(|a| a.to_string()).collect();
            format!("{} {}", i.name, a.join(" "))
        })
        .collect();
    writeln!(
        o,
        "host          {}",
        if locals.is_empty() { "(no local address)".into() } else { locals.join(", ") }
    )?;
    writeln!(o, "duration      {:.3} s of traffic", s.duration_secs)?;
    writeln!(o)?;
    writeln!(o, "packets       {}{}", s.packets, if s.partial { " (partial input)" } else { "" })?;
    writeln!(
        o,
        "  filtered    {:>8}  input {}, output {}, forward {}, loopback {}, dropped by routing {}",
        s.filtered,
        get(&s.by_path, "input"),
        get(&s.by_path, "output"),
        get(&s.by_path, "forward"),
        get(&s.by_path, "loopback"),
        get(&s.by_path, "prerouting")
    )?;
    writeln!(o, "  accept      {:>8}", get(&s.by_verdict, "accept"))?;
    writeln!(o, "  drop        {:>8}", get(&s.by_verdict, "drop"))?;
    writeln!(
        o,
        "  reject      {:>8}  ({} replies would be sent)",
        get(&s.by_verdict, "reject"),
        s.reject_replies
    )?;
    writeln!(o, "  not IP      {:>8}  (ARP and other non-IP frames, not filtered)", s.not_ip)?;
    writeln!(o, "  not filtered{:>8}  (IPv6 without --rules6)", s.not_filtered)?;
    writeln!(o, "  undecodable {:>8}", s.undecodable)?;
    for (r, n) in &s.undecodable_reasons {
        writeln!(o, "    {n:>6}  {r}")?;
    }
    if s.ip_input_drops > 0 {
        writeln!(
            o,
            "  IP input    {:>8}  dropped by IPv4 input before PREROUTING (bad header checksum, truncated)",
            s.ip_input_drops
        )?;
    }
    if s.fragments_held + s.fragments_dropped > 0 {
        writeln!(
            o,
            "  fragments   {:>8} held for reassembly, {} dropped",
            s.fragments_held, s.fragments_dropped
        )?;
    }
    write!(o, "by ctstate   ")?;
    for st in engine::CtStateLabel::ALL {
        write!(o, " {} {}", st.as_str(), get(&s.by_ctstate, st.as_str()))?;
    }
    writeln!(o)?;
    writeln!(
        o,
        "conntrack     peak {} entries, final {}, average {:.1}; {} connections confirmed; {} INVALID packets; {} dropped by conntrack",
        s.table_peak, s.table_final, s.table_average, s.connections, s.invalid, s.conntrack_drops
    )?;
    if let Some((i, ts)) = s.first_conntrack_drop {
        writeln!(
            o,
            "table full    {} packets dropped by conntrack (\"nf_conntrack: table full, dropping packet\"), the first \
             at packet #{i} (ts {ts:.6})",
            s.conntrack_drops
        )?;
    }
    if s.clock_regressions > 0 {
        writeln!(o, "clock         {} packets stamped earlier than their predecessor (processed at the previous time)", s.clock_regressions)?;
    }
    Ok(())
}
