//! The corpus against the real kernel: every row of the table in docs/KERNEL-AGREEMENT.md is re-measured with
//! `statewall verify` and must not be worse than recorded. `STATEWALL_UPDATE_AGREEMENT=1` rewrites the measured
//! columns (keeping the notes). Root only (see `kernel_available`); needs ../shared/corpus.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;
use common::*;

const START: &str = "<!-- corpus-table:start -->";
const END: &str = "<!-- corpus-table:end -->";

/// One table row.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    capture: String,
    local: String,
    frames: String,
    sent: String,
    fates: String,
    counters: String,
    conntrack: String,
    status: String,
    notes: String,
}

impl Row {
    fn parse(line: &str) -> Option<Row> {
        let cells: Vec<String> =
            line.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect();
        if cells.len() != 9 || !cells[0].starts_with('`') {
            return None;
        }
        Some(Row {
            capture: cells[0].trim_matches('`').to_string(),
            local: cells[1].clone(),
            frames: cells[2].clone(),
            sent: cells[3].clone(),
            fates: cells[4].clone(),
            counters: cells[5].clone(),
            conntrack: cells[6].clone(),
            status: cells[7].clone(),
            notes: cells[8].clone(),
        })
    }

    fn line(&self) -> String {
        format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.capture,
            self.local,
            self.frames,
            self.sent,
            self.fates,
            self.counters,
            self.conntrack,
            self.status,
            self.notes
        )
    }

    /// Differences recorded in a cell like "12/14" (fates, counters) or "3/3, 1 diff" (conntrack).
    fn diffs(cell: &str) -> Option<u64> {
        if let Some((_, d)) = cell.split_once(", ") {
            return d.split_whitespace().next()?.parse().ok();
        }
        let (a, b) = cell.split_once('/')?;
        Some(b.trim().parse::<u64>().ok()?.saturating_sub(a.trim().parse::<u64>().ok()?))
    }
}

fn measure(row: &Row, corpus: &std::path::Path) -> Row {
    let cap = corpus.join("pcaps").join(&row.capture).display().to_string();
    let rules = root().join("examples/logcount/rules.v4").display().to_string();
    let rules6 = root().join("examples/logcount/rules.v6").display().to_string();
    let mut args = vec!["--rules", &rules, "--local", &row.local, "--max-gap", "2", "--format", "json"];
    if row.local.contains(':') {
        args.extend_from_slice(&["--rules6", &rules6]);
    }
    args.push(&cap);
    let (code, stdout, stderr) = verify(&args);
    assert!(matches!(code, Some(0) | Some(1)), "{}: exit {code:?}\n{stderr}", row.capture);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let c = &v["captures"][0];
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
    let len = |x: &serde_json::Value| x.as_array().map_or(0, |a| a.len() as u64);
    let compared = n(&c["packets"]["compared"]);
    let fate_diffs = len(&c["packets"]["differences"]);
    let counters = n(&c["counters"]["compared"]);
    let counter_diffs = len(&c["counters"]["differences"]);
    Row {
        frames: n(&c["frames"]).to_string(),
        sent: n(&c["sent"]).to_string(),
        fates: format!("{}/{compared}", compared.saturating_sub(fate_diffs)),
        counters: format!("{}/{counters}", counters.saturating_sub(counter_diffs)),
        conntrack: format!(
            "{}/{}, {} diff",
            n(&c["conntrack"]["kernel_entries"]),
            n(&c["conntrack"]["engine_entries"]),
            len(&c["conntrack"]["differences"])
        ),
        status: c["status"].as_str().unwrap_or("?").to_string(),
        ..row.clone()
    }
}

#[test]
fn corpus_agreement_does_not_regress() {
    let Some(corpus) = corpus() else { return };
    if !kernel_available() {
        return;
    }
    let doc_path = root().join("docs/KERNEL-AGREEMENT.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let (head, rest) = doc.split_once(START).unwrap();
    let (table, tail) = rest.split_once(END).unwrap();
    let update = std::env::var("STATEWALL_UPDATE_AGREEMENT").as_deref() == Ok("1");
    let mut lines = Vec::new();
    let mut worse = Vec::new();
    let mut measured_rows = 0;
    for line in table.lines() {
        let Some(row) = Row::parse(line) else {
            lines.push(line.to_string());
            continue;
        };
        if row.local == "—" {
            lines.push(line.to_string());
            continue;
        }
        let now = measure(&row, &corpus);
        measured_rows += 1;
        if !update {
            for (what, before, after) in [
                ("fates", &row.fates, &now.fates),
                ("counters", &row.counters, &now.counters),
                ("conntrack", &row.conntrack, &now.conntrack),
            ] {
                let (b, a) = (Row::diffs(before), Row::diffs(after));
                if a.unwrap_or(u64::MAX) > b.unwrap_or(0) {
                    worse.push(format!("{} --local {}: {what} {before} -> {after}", row.capture, row.local));
                }
            }
            if row.status == "agree" && now.status != "agree" {
                worse.push(format!("{} --local {}: status agree -> {}", row.capture, row.local, now.status));
            }
        }
        lines.push(now.line());
    }
    assert!(measured_rows > 40, "the table lists too few captures: {measured_rows}");
    if update {
        let new = format!("{head}{START}{}\n{END}{tail}", lines.join("\n"));
        std::fs::write(&doc_path, new).unwrap();
        eprintln!("updated {}", doc_path.display());
    }
    assert!(worse.is_empty(), "kernel agreement regressed:\n{}", worse.join("\n"));
}
