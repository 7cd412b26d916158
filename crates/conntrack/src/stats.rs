//! Conntrack statistics (`conntrack -S`, `/proc/net/stat/nf_conntrack`; reference §7.3).
//!
//! Contract: the counters mean what the kernel's per-CPU counters mean, summed over CPUs:
//! `invalid` = packets leaving conntrack-in without a ct for non-ICMP-error reasons; `error` = ICMP /
//! ICMPv6 error-path failures (not also counted as `invalid`); `drop` = packets conntrack dropped
//! (table full, confirm clash of a protocol without clash resolution); `early_drop` = entries evicted
//! to make room; `insert_failed` / `clash_resolve` = confirm-time clashes. `found`, `insert`,
//! `search_restart` and `chaintoolong` stay 0 in this single-threaded, NAT-less model.

use std::fmt;

/// Counters, as `conntrack -S` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub found: u64,
    pub invalid: u64,
    pub insert: u64,
    pub insert_failed: u64,
    pub drop: u64,
    pub early_drop: u64,
    pub error: u64,
    pub search_restart: u64,
    pub clash_resolve: u64,
    pub chaintoolong: u64,
    pub expect_new: u64,
    pub expect_create: u64,
    pub expect_delete: u64,
}

impl fmt::Display for Stats {
    /// One `conntrack -S` line for "cpu=0" (all counters summed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cpu=0   \tfound={} invalid={} insert={} insert_failed={} drop={} early_drop={} error={} search_restart={} clash_resolve={} chaintoolong={}",
            self.found,
            self.invalid,
            self.insert,
            self.insert_failed,
            self.drop,
            self.early_drop,
            self.error,
            self.search_restart,
            self.clash_resolve,
            self.chaintoolong
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_s_line() {
        let s = Stats { invalid: 2, error: 3, ..Stats::default() };
        assert_eq!(
            s.to_string(),
            "cpu=0   \tfound=0 invalid=2 insert=0 insert_failed=0 drop=0 early_drop=0 error=3 search_restart=0 clash_resolve=0 chaintoolong=0"
        );
    }
}
