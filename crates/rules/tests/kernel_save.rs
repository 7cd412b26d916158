//! Our printer against real `iptables-legacy-save -c` output.
//!
//! Each `tests/data/NAME.rules` was loaded with `iptables-legacy-restore -c` into a fresh network
//! namespace (kernel 6.18, iptables 1.8.9) and `NAME.save` is what `iptables-legacy-save -c` printed
//! (minus its two comment lines). Parsing the input and printing must give exactly that text, and
//! the kernel's text must be a fixed point of parse+print. `NAME.rules6` / `NAME.save6` are the
//! same for ip6tables (`ip6tables-legacy-restore -c` / `ip6tables-legacy-save -c`).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use rules::Family;

fn data(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    std::fs::read_to_string(&p).unwrap()
}

fn check(name: &str) {
    check_family(name, Family::V4)
}

fn check_family(name: &str, family: Family) {
    let suffix = if family == Family::V6 { "6" } else { "" };
    let input = data(&format!("{name}.rules{suffix}"));
    let kernel = data(&format!("{name}.save{suffix}"));
    let rs = rules::parse_family(&input, family).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(rs.family(), family);
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
    let again = rules::parse_family(&kernel, family).unwrap();
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

#[test]
fn all_options6_print_like_ip6tables_legacy_save() {
    check_family("all_options", Family::V6);
}

#[test]
fn ip6tables_files_are_refused_as_iptables_and_vice_versa() {
    let v6 = data("all_options.rules6");
    let e = rules::parse(&v6).unwrap_err();
    assert_eq!(
        (e.kind(), e.line(), e.token()),
        (rules::ErrorKind::UnknownOption, 10, "--icmpv6-type"),
        "{e}"
    );
    assert!(e.hint().is_some_and(|h| h.contains("ip6tables")), "{e}");
    let v4 = data("all_options.rules");
    assert!(rules::parse_family(&v4, Family::V6).is_err());
}
