//! The iptables-save parser (`rules::parse_family`, IPv4 and IPv6) on arbitrary UTF-8.
//!
//! Input: one selector byte (bit 0: ip6tables-save), then the text (inputs that are not UTF-8
//! are skipped). Invariants: no panic; a refusal carries a position inside the text; a ruleset
//! that parses prints (`-c` form and plain form) as text that parses again to the same model and
//! prints identically (print -> parse -> print is the identity), up to the order of the tables:
//! they are printed in reverse load order like the kernel lists them, so one round trip reverses
//! that order and a second one restores the exact text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rules::Family;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, text)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let family = if sel & 1 == 0 { Family::V4 } else { Family::V6 };
    // The syntax tree alone must not panic either (it accepts more than the compiler).
    let _ = rules::parse_ast_family(text, family);
    let rs = match rules::parse_family(text, family) {
        Ok(rs) => rs,
        Err(e) => {
            // The error renders and points inside the text (line 1-based).
            let _ = e.to_string();
            let (off, len) = e.span();
            assert!(
                off.checked_add(len).is_some_and(|end| end <= text.len()),
                "span {off}+{len} outside the text"
            );
            assert!(e.line() >= 1 && e.line() as usize <= text.lines().count() + 1, "line {}", e.line());
            return;
        }
    };
    assert_eq!(rs.family(), family);
    for counters in [true, false] {
        let once = rs.to_save_string(&rs.new_state(), counters);
        let rs2 = reparse(&once, family, text);
        let twice = rs2.to_save_string(&rs2.new_state(), counters);
        // The tables come out in reverse load order (as the kernel lists them after a restore into a
        // fresh namespace), so one round trip reverses their order and two restore it; the text of
        // each table is the same every time.
        assert_eq!(blocks(&once), blocks(&twice), "print -> parse -> print differs\n--- input\n{text}");
        let rs3 = reparse(&twice, family, text);
        let thrice = rs3.to_save_string(&rs3.new_state(), counters);
        assert_eq!(once, thrice, "two round trips differ\n--- input\n{text}");
        assert_eq!(rs.rule_count(), rs2.rule_count());
        // Per table, the same chains with the same number of rules (the models differ only in the
        // internal counter slots, which follow the load order).
        assert_eq!(shape(&rs), shape(&rs2), "the model changed through print -> parse\n--- input\n{text}");
    }
});

fn reparse(printed: &str, family: Family, text: &str) -> rules::Ruleset {
    match rules::parse_family(printed, family) {
        Ok(r) => r,
        Err(e) => panic!("printed ruleset does not parse: {e}\n--- input\n{text}\n--- printed\n{printed}"),
    }
}

/// The `*table ... COMMIT` blocks of a save text, sorted.
fn blocks(save: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in save.lines() {
        if line.starts_with('*') || out.is_empty() {
            out.push(String::new());
        }
        if let Some(b) = out.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    out.sort();
    out
}

fn shape(rs: &rules::Ruleset) -> Vec<(rules::Table, Vec<(String, usize)>)> {
    let mut t: Vec<_> = rs
        .tables()
        .iter()
        .map(|t| (t.table, t.chains.iter().map(|c| (c.name.to_string(), c.rules.len())).collect()))
        .collect();
    t.sort();
    t
}
