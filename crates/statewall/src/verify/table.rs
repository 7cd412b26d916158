//! Conntrack tables: the kernel's listing against the engine's, as multisets of lines. Used for
//! `/proc/net/nf_conntrack` and for `conntrack -L` (plain and `-o extended`).
//!
//! Contract: lines are compared byte for byte (spacing included) except `use=` (a reference count, removed),
//! the remaining timeout (the field at the index given to [`parse_with`]: [`PROC_TIMEOUT_FIELD`] in /proc and
//! `-o extended`, [`LIST_TIMEOUT_FIELD`] in `conntrack -L`) and `delta-time=` (seconds since creation, with the
//! timestamp extension). The kernel's table is read a little after the last packet, the engine's is written at
//! the last packet's time, so the engine's timeout minus that lag (its delta-time plus that lag) must be within
//! `tolerance` seconds of the kernel's. An entry only the engine has is tolerated when it expires within the lag
//! (the kernel no longer lists it).

use std::collections::BTreeMap;

/// Index of the remaining timeout among the whitespace-separated fields of a `/proc/net/nf_conntrack` or
/// `conntrack -L -o extended` line (`ipv4 2 udp 17 TIMEOUT ...`).
pub const PROC_TIMEOUT_FIELD: usize = 4;
/// The same in a `conntrack -L` line (`udp 17 TIMEOUT ...`).
pub const LIST_TIMEOUT_FIELD: usize = 2;

/// One table line, split for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtLine {
    /// The line without `use=`, with the timeout replaced by `T` and the delta-time by `D`.
    pub key: String,
    pub timeout: Option<u64>,
    /// `delta-time=` seconds, when present.
    pub delta: Option<u64>,
    pub line: String,
}

/// A line with its variable fields masked: the key, the timeout (if the field at `timeout_field` is a number)
/// and the delta-time. The spacing between the fields that stay is kept as it was.
pub fn mask(line: &str, timeout_field: Option<usize>) -> (String, Option<u64>, Option<u64>) {
    let mut key = String::with_capacity(line.len());
    let mut timeout = None;
    let mut delta = None;
    let mut prev_end = 0;
    let mut n = 0;
    let mut rest = line;
    let mut offset = 0;
    loop {
        let trimmed = rest.trim_start();
        if trimmed.is_empty() {
            break;
        }
        let start = offset + (rest.len() - trimmed.len());
        let len = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
        let tok = trimmed.get(..len).unwrap_or("");
        let sep = line.get(prev_end..start).unwrap_or("");
        prev_end = start + len;
        offset = prev_end;
        rest = trimmed.get(len..).unwrap_or("");
        let idx = n;
        n += 1;
        if tok.starts_with("use=") {
            continue;
        }
        key.push_str(sep);
        if Some(idx) == timeout_field {
            if let Ok(v) = tok.parse::<u64>() {
                timeout = Some(v);
                key.push('T');
                continue;
            }
        }
        if let Some(v) = tok.strip_prefix("delta-time=").and_then(|v| v.parse::<u64>().ok()) {
            delta = Some(v);
            key.push_str("delta-time=D");
            continue;
        }
        key.push_str(tok);
    }
    key.push_str(line.get(prev_end..).unwrap_or(""));
    (key, timeout, delta)
}

/// `/proc/net/nf_conntrack` lines.
pub fn parse(text: &str) -> Vec<CtLine> {
    parse_with(text, PROC_TIMEOUT_FIELD)
}

/// Listing lines whose remaining timeout is field `timeout_field`.
pub fn parse_with(text: &str, timeout_field: usize) -> Vec<CtLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.split_whitespace().count() <= timeout_field {
            continue;
        }
        let (key, timeout, delta) = mask(line, Some(timeout_field));
        out.push(CtLine { key, timeout, delta, line: line.trim().to_string() });
    }
    out
}

/// One difference.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CtDiff {
    Timeout {
        kernel: u64,
        engine: u64,
        expected: f64,
        line: String,
    },
    /// `delta-time=` (timestamp extension) out of tolerance.
    DeltaTime {
        kernel: u64,
        engine: u64,
        expected: f64,
        line: String,
    },
    OnlyKernel {
        line: String,
    },
    OnlyEngine {
        line: String,
    },
    /// Only the engine has it, but it expires within the read lag: not a disagreement.
    ExpiredInLag {
        line: String,
    },
}

impl CtDiff {
    pub fn is_disagreement(&self) -> bool {
        !matches!(self, CtDiff::ExpiredInLag { .. })
    }
}

pub fn compare(kernel: &[CtLine], engine: &[CtLine], lag_secs: f64, tolerance: f64) -> Vec<CtDiff> {
    let mut k: BTreeMap<&str, Vec<&CtLine>> = BTreeMap::new();
    let mut e: BTreeMap<&str, Vec<&CtLine>> = BTreeMap::new();
    for l in kernel {
        k.entry(&l.key).or_default().push(l);
    }
    for l in engine {
        e.entry(&l.key).or_default().push(l);
    }
    let mut keys: Vec<&str> = k.keys().chain(e.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let mut ks = k.get(key).cloned().unwrap_or_default();
        let mut es = e.get(key).cloned().unwrap_or_default();
        ks.sort_by_key(|l| l.timeout);
        es.sort_by_key(|l| l.timeout);
        for (kl, el) in ks.iter().zip(es.iter()) {
            if let (Some(kt), Some(et)) = (kl.timeout, el.timeout) {
                let expected = et as f64 - lag_secs;
                if (kt as f64 - expected).abs() > tolerance {
                    out.push(CtDiff::Timeout { kernel: kt, engine: et, expected, line: kl.line.clone() });
                }
            }
            if let (Some(kd), Some(ed)) = (kl.delta, el.delta) {
                let expected = ed as f64 + lag_secs;
                if (kd as f64 - expected).abs() > tolerance {
                    out.push(CtDiff::DeltaTime { kernel: kd, engine: ed, expected, line: kl.line.clone() });
                }
            }
        }
        for kl in ks.iter().skip(es.len()) {
            out.push(CtDiff::OnlyKernel { line: kl.line.clone() });
        }
        for el in es.iter().skip(ks.len()) {
            let expires_in_lag = el.timeout.is_some_and(|t| t as f64 - lag_secs <= tolerance);
            out.push(if expires_in_lag {
                CtDiff::ExpiredInLag { line: el.line.clone() }
            } else {
                CtDiff::OnlyEngine { line: el.line.clone() }
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const UDP: &str =
        "ipv4     2 udp      17 TIMEOUT src=203.0.113.80 dst=192.0.2.10 sport=41966 dport=33333 \
src=192.0.2.10 dst=203.0.113.80 sport=33333 dport=41966 mark=0 zone=0 use=USE";

    fn line(timeout: u64, use_: u32) -> String {
        UDP.replace("TIMEOUT", &timeout.to_string()).replace("USE", &use_.to_string())
    }

    #[test]
    fn timeouts_compare_after_the_read_lag() {
        // The engine wrote its table at the last packet (29 s left); the kernel read 1.4 s later (27 s left).
        let engine = parse(&line(29, 2));
        let kernel = parse(&line(27, 1));
        assert_eq!(compare(&kernel, &engine, 1.4, 2.0), vec![], "use= ignored, timeout within tolerance");
        let d = compare(&kernel, &engine, 0.0, 1.0);
        assert!(matches!(d.as_slice(), [CtDiff::Timeout { kernel: 27, engine: 29, .. }]), "{d:?}");
    }

    #[test]
    fn masking_keeps_the_spacing_and_drops_use() {
        let (key, timeout, delta) = mask(
            "udp      17 28 src=10.99.0.1 dst=10.99.0.2 sport=4444 dport=6001 mark=0 delta-time=1 use=1",
            Some(LIST_TIMEOUT_FIELD),
        );
        assert_eq!(
            key,
            "udp      17 T src=10.99.0.1 dst=10.99.0.2 sport=4444 dport=6001 mark=0 delta-time=D"
        );
        assert_eq!((timeout, delta), (Some(28), Some(1)));
        // The same line with one space less after the protocol name is another key.
        let (other, _, _) = mask("udp     17 28 src=10.99.0.1", Some(LIST_TIMEOUT_FIELD));
        assert_ne!(other.get(..12), key.get(..12));
        // No number at the timeout's place (a DESTROY event): nothing masked there.
        assert_eq!(mask("[DESTROY] udp 17 src=1.2.3.4", Some(3)).0, "[DESTROY] udp 17 src=1.2.3.4");
    }

    #[test]
    fn delta_time_compares_after_the_read_lag() {
        let e = parse_with("udp      17 28 src=10.99.0.1 mark=0 delta-time=1 use=1", LIST_TIMEOUT_FIELD);
        let k = parse_with("udp      17 27 src=10.99.0.1 mark=0 delta-time=2 use=1", LIST_TIMEOUT_FIELD);
        assert_eq!(compare(&k, &e, 1.0, 2.0), vec![]);
        let k = parse_with("udp      17 27 src=10.99.0.1 mark=0 delta-time=9 use=1", LIST_TIMEOUT_FIELD);
        assert!(matches!(
            compare(&k, &e, 1.0, 2.0).as_slice(),
            [CtDiff::DeltaTime { kernel: 9, engine: 1, .. }]
        ));
    }

    #[test]
    fn missing_entries_are_named_and_lag_expiry_tolerated() {
        let engine = parse(&format!("{}\n{}\n", line(29, 2), line(1, 2).replace("41966", "5")));
        let kernel = parse(&line(29, 2).replace("mark=0", "mark=1"));
        let d = compare(&kernel, &engine, 0.5, 2.0);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d.iter().any(|x| matches!(x, CtDiff::OnlyKernel { line } if line.contains("mark=1"))));
        assert!(d.iter().any(|x| matches!(x, CtDiff::OnlyEngine { line } if line.contains("mark=0"))));
        assert!(d.iter().any(|x| matches!(x, CtDiff::ExpiredInLag { .. })));
        assert_eq!(d.iter().filter(|x| x.is_disagreement()).count(), 2);
    }
}
