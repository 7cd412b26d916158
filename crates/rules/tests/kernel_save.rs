//! Our printer against real `iptables-legacy-save -c` output.
//!
//! Each `tests/data/NAME.rules` was loaded with `iptables-legacy-restore -c` into a fresh network
//! namespace (kernel 6.18, iptables 1.8.9) and `NAME.save` is what `iptables-legacy-save -c` printed
//! (minus its two comment lines). Parsing the input and printing must give exactly that text, and
//! the kernel's text must be a fixed point of parse+print.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

fn data(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    std::fs::read_to_string(&p).unwrap()
}

fn check(name: &str) {
    let input = data(&format!("{name}.rules"));
    let kernel = data(&format!("{name}.save"));
    let rs = rules::parse(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
    let ours = rs.to_save_string(&rs.new_state(), true);
    if ours != kernel {
        for (i, (a, b)) in ours.lines().zip(kernel.lines()).enumerate() {
            if a != b {
                panic!("{name}: first difference at output line {}:\n ours:   {a}\n kernel: {b}", i + 1);
            }
        }
        panic!(
            "{name}: outputs differ in length: ours {} lines, kernel {}",
            ours.lines().count(),
            kernel.lines().count()
        );
    }
    // The canonical text is a fixed point, up to table order (iptables-save lists the most
    // recently loaded table first, so a save/restore cycle reverses the table order).
    let again = rules::parse(&kernel).unwrap();
    assert_eq!(tables(&again.to_save_string(&again.new_state(), true)), tables(&kernel));
    // Without counters: the same minus the `[p:b] ` rule prefixes.
    let plain: String = kernel
        .lines()
        .map(|l| if l.starts_with('[') { l.split_once(' ').map_or(l, |(_, r)| r) } else { l })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(rs.to_save_string(&rs.new_state(), false), plain);
}

fn tables(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = text.split_inclusive("COMMIT\n").map(str::to_string).collect();
    blocks.sort();
    blocks
}

#[test]
fn all_options_print_like_iptables_legacy_save() {
    check("all_options");
}

#[test]
fn seed_filter_prints_like_iptables_legacy_save() {
    check("seed_filter");
}

#[test]
fn seed_notrack_prints_like_iptables_legacy_save() {
    check("seed_notrack");
}
