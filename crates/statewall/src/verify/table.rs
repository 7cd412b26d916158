//! Conntrack tables: the kernel's `/proc/net/nf_conntrack` against the engine's, as multisets of lines.
//!
//! Contract: every field is compared except `use=` (a reference count) and the remaining timeout (the number
//! after the protocol numbers). The kernel's table is read a little after the last packet, the engine's is
//! written at the last packet's time, so the engine's timeout minus that lag must be within `tolerance`
//! seconds of the kernel's. An entry only the engine has is tolerated when it expires within the lag (the
//! kernel no longer lists it).

use std::collections::BTreeMap;

/// One table line, split for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtLine {
    /// The line without `use=` and with the timeout replaced by `T`.
    pub key: String,
    pub timeout: Option<u64>,
    pub line: String,
}

pub fn parse(text: &str) -> Vec<CtLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut toks: Vec<&str> = line.split_whitespace().filter(|t| !t.starts_with("use=")).collect();
        if toks.len() < 5 {
            continue;
        }
        let mut timeout = None;
        if let Some(t) = toks.get_mut(4) {
            if let Ok(v) = t.parse::<u64>() {
                timeout = Some(v);
                *t = "T";
            }
        }
        out.push(CtLine { key: toks.join(" "), timeout, line: line.trim().to_string() });
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
