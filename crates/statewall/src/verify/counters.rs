//! Rule and policy counters: the kernel's `iptables-save -c` against the engine's, rule by rule.
//!
//! Contract: [`strip_suppression`] removes the two rules verify inserts at the top of raw OUTPUT (see
//! [`SUPPRESSION`]) and returns what the first one dropped; [`keep_tables`] drops the tables the ruleset does
//! not have (the kernel creates raw for the suppression rules); [`compare`] parses the rest with the same
//! parser as the ruleset and lists every built-in policy and every rule with both sides' `[packets:bytes]`,
//! named `table:chain:N` (or `table:chain:policy`) with the rule's text.

use rules::{RuleState, Ruleset};

/// The mark the injection raw socket puts on its packets (`SO_MARK`).
pub const MARK: u32 = 0x5377_c0de;

/// The rules inserted at the top of raw OUTPUT, as `iptables -t raw -I OUTPUT N` arguments and as
/// iptables-save prints them. The first drops everything the stack itself generates (RSTs, ICMP errors, echo
/// replies, REJECT replies: they lack the mark) before conntrack sees it: raw runs at priority -300, conntrack
/// at -200. The second clears the mark again so that the ruleset's own rules see the packet as the engine does.
pub const SUPPRESSION: [(&[&str], &str); 2] = [
    (
        &["-m", "mark", "!", "--mark", "0x5377c0de", "-j", "DROP"],
        "-A OUTPUT -m mark ! --mark 0x5377c0de -j DROP",
    ),
    (&["-j", "MARK", "--set-xmark", "0x0/0xffffffff"], "-A OUTPUT -j MARK --set-xmark 0x0/0xffffffff"),
];

/// Splits `[p:b] rest` into the counters and the rest.
fn split_counters(line: &str) -> Option<((u64, u64), &str)> {
    let rest = line.strip_prefix('[')?;
    let (c, rest) = rest.split_once(']')?;
    let (p, b) = c.split_once(':')?;
    Some(((p.trim().parse().ok()?, b.trim().parse().ok()?), rest.trim_start()))
}

/// Removes the suppression rules from raw OUTPUT. Returns the text and the DROP rule's counters (`None` if it
/// was not found: the kernel state is then not what verify set up).
pub fn strip_suppression(save: &str) -> (String, Option<(u64, u64)>) {
    let mut out = String::with_capacity(save.len());
    let mut table = "";
    let mut found = None;
    let mut pending: Vec<&str> = SUPPRESSION.iter().map(|(_, text)| *text).collect();
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim();
        }
        if table == "raw" {
            if let Some((c, rest)) = split_counters(line) {
                let norm = rest.split_whitespace().collect::<Vec<_>>().join(" ");
                if let Some(pos) = pending.iter().position(|p| *p == norm) {
                    if pos == 0 && found.is_none() && norm == SUPPRESSION[0].1 {
                        found = Some(c);
                    }
                    pending.remove(pos);
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, found)
}

/// Keeps only the tables named in `tables` (and drops comment lines).
pub fn keep_tables(save: &str, tables: &[&str]) -> String {
    let mut out = String::new();
    let mut keep = false;
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            keep = tables.contains(&t.trim());
        }
        if keep && !line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The `-A` lines of each (table, chain), in order, counters removed.
fn rule_texts(save: &str) -> Vec<(String, String, String)> {
    let mut table = String::new();
    let mut out = Vec::new();
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim().to_string();
            continue;
        }
        let rest = split_counters(line).map_or(line, |(_, r)| r);
        if let Some(r) = rest.strip_prefix("-A ") {
            let chain = r.split_whitespace().next().unwrap_or("").to_string();
            out.push((table.clone(), chain, rest.trim().to_string()));
        }
    }
    out
}

/// One counter on both sides.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CounterRow {
    /// `table:chain:N` or `table:chain:policy`.
    pub name: String,
    /// The rule as the kernel prints it (the engine's text when the kernel lacks it; the policy for policies).
    pub text: String,
    pub kernel: Option<(u64, u64)>,
    pub engine: Option<(u64, u64)>,
    /// The engine prints the rule differently (shown as a hint only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_text: Option<String>,
}

impl CounterRow {
    pub fn agrees(&self) -> bool {
        self.kernel == self.engine
    }
}

/// Parses iptables-save text, or ip6tables-save text when `v6`.
pub fn parse_save(text: &str, v6: bool) -> Result<Ruleset, rules::ParseError> {
    rules::parse_family(text, if v6 { rules::Family::V6 } else { rules::Family::V4 })
}

/// Every counter of the engine's ruleset against the kernel's save text (already stripped and filtered);
/// `v6`: both are ip6tables rulesets.
pub fn compare(
    kernel_save: &str,
    engine_rules: &Ruleset,
    state: &RuleState,
    v6: bool,
) -> Result<Vec<CounterRow>, String> {
    let kernel = parse_save(kernel_save, v6).map_err(|e| {
        format!("the kernel's iptables-save output does not parse: line {}: {}", e.line(), e.message())
    })?;
    let ktexts = rule_texts(kernel_save);
    let etexts = rule_texts(&engine_rules.to_save_string(state, false));
    let text_of = |texts: &[(String, String, String)], t: &str, c: &str, n: usize| -> Option<String> {
        texts.iter().filter(|(tt, cc, _)| tt == t && cc == c).nth(n).map(|(_, _, x)| x.clone())
    };
    let mut rows = Vec::new();
    for et in engine_rules.tables() {
        let tname = et.table.name();
        let kt = kernel.table(et.table);
        for ec in &et.chains {
            let kc = kt.and_then(|t| t.chain(&ec.name));
            if let Some((_, policy)) = ec.builtin {
                rows.push(CounterRow {
                    name: format!("{tname}:{}:policy", ec.name),
                    text: format!(
                        ":{} {}",
                        ec.name,
                        if policy == rules::Policy::Accept { "ACCEPT" } else { "DROP" }
                    ),
                    kernel: kc.map(|c| c.policy_counters),
                    engine: state.policy_counters(et.table, &ec.name),
                    engine_text: None,
                });
            }
            let n = ec.rules.len().max(kc.map_or(0, |c| c.rules.len()));
            for i in 0..n {
                let ktext = text_of(&ktexts, tname, &ec.name, i);
                let etext = text_of(&etexts, tname, &ec.name, i);
                let num = u32::try_from(i + 1).unwrap_or(u32::MAX);
                let engine =
                    if i < ec.rules.len() { state.rule_counters(et.table, &ec.name, num) } else { None };
                let engine_text = match (&ktext, &etext) {
                    (Some(k), Some(e)) if k != e => Some(e.clone()),
                    _ => None,
                };
                rows.push(CounterRow {
                    name: format!("{tname}:{}:{}", ec.name, i + 1),
                    text: ktext.or(etext).unwrap_or_default(),
                    kernel: kc.and_then(|c| c.rules.get(i)).map(|r| r.counters),
                    engine,
                    engine_text,
                });
            }
        }
        // Chains only the kernel has.
        if let Some(kt) = kt {
            for kc in kt.chains.iter().filter(|c| et.chain(&c.name).is_none()) {
                rows.push(CounterRow {
                    name: format!("{tname}:{}", kc.name),
                    text: "chain only in the kernel".into(),
                    kernel: Some(kc.policy_counters),
                    engine: None,
                    engine_text: None,
                });
            }
        }
    }
    Ok(rows)
}

/// True if every counter in the ruleset file is zero (then verify zeroes the kernel's counters after loading).
pub fn all_zero(rs: &Ruleset) -> bool {
    rs.tables()
        .iter()
        .flat_map(|t| t.chains.iter())
        .all(|c| c.policy_counters == (0, 0) && c.rules.iter().all(|r| r.counters == (0, 0)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const KERNEL: &str = "# Generated by iptables-save v1.8.9 on Fri Nov 27 12:39:44 2026
*raw
:PREROUTING ACCEPT [10:1000]
:OUTPUT ACCEPT [5:500]
[3:180] -A OUTPUT -m mark ! --mark 0x5377c0de -j DROP
[5:500] -A OUTPUT -j MARK --set-xmark 0x0/0xffffffff
COMMIT
*filter
:INPUT DROP [2:120]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [5:500]
[8:880] -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
[0:0] -A INPUT -p udp -m udp --dport 53 -j ACCEPT
COMMIT
";

    #[test]
    fn suppression_rules_are_removed_and_reported() {
        let (text, dropped) = strip_suppression(KERNEL);
        assert_eq!(dropped, Some((3, 180)));
        assert!(!text.contains("5377c0de") && !text.contains("MARK"));
        assert!(text.contains("[8:880] -A INPUT"));
        let only_filter = keep_tables(&text, &["filter"]);
        assert!(!only_filter.contains("*raw") && only_filter.starts_with("*filter"));
    }

    #[test]
    fn counters_compare_rule_by_rule() {
        let rules_text = "*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p udp -m udp --dport 53 -j ACCEPT
COMMIT
";
        let rs = rules::parse(rules_text).unwrap();
        assert!(all_zero(&rs));
        let engine = engine::Engine::new(rs, engine::Host::with_locals(&[]), conntrack::Config::default());
        let (text, _) = strip_suppression(KERNEL);
        let rows =
            compare(&keep_tables(&text, &["filter"]), engine.ruleset(), engine.rule_state(), false).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "filter:INPUT:policy",
                "filter:INPUT:1",
                "filter:INPUT:2",
                "filter:FORWARD:policy",
                "filter:OUTPUT:policy"
            ]
        );
        // The engine saw nothing: the kernel's non-zero counters disagree, the zero ones agree.
        let bad: Vec<&str> = rows.iter().filter(|r| !r.agrees()).map(|r| r.name.as_str()).collect();
        assert_eq!(bad, ["filter:INPUT:policy", "filter:INPUT:1", "filter:OUTPUT:policy"]);
        assert_eq!(rows[1].text, "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
        assert_eq!(rows[1].kernel, Some((8, 880)));
        assert_eq!(rows[1].engine, Some((0, 0)));
    }
}
