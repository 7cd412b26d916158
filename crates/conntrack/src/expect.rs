//! The expectation table (reference §8.2; `nf_conntrack_expect.c`).
//!
//! Contract:
//! - An [`Expectation`] is a tuple (source address exact or wildcard, source port wildcard or
//!   exact, destination address and port exact, L4 protocol), the master entry that created it,
//!   the helper, class 0, flags and an absolute expiry.
//! - Adding ([`Expectations::add`], `nf_ct_expect_related`): an expectation with the same tuple
//!   and mask from the same master replaces the old one (class differs: failure); one clashing
//!   with another master's (equal under the intersection of the masks) is a failure; if the master
//!   already has `max_expected` of the class the oldest is evicted; the table holding
//!   `nf_conntrack_expect_max` expectations is a failure.
//! - Matching ([`Expectations::take_match`], `nf_ct_find_expectation`): the newest expectation
//!   whose tuple matches the new packet's original tuple under its mask in the same zone; it only
//!   counts if its master is confirmed and alive (the caller checks); a non-PERMANENT one is
//!   consumed.
//! - Expectations die on their timer (driven by the caller's time), with their master, or when
//!   consumed / replaced / evicted; each removal counts as `expect_delete`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use wire::Time;

use crate::conn::ConnId;
use crate::tuple::{Tuple, TupleL4};

/// `NF_CT_EXPECT_PERMANENT`.
pub const FLAG_PERMANENT: u8 = 1 << 0;
/// `NF_CT_EXPECT_INACTIVE`.
pub const FLAG_INACTIVE: u8 = 1 << 1;
/// `NF_CT_EXPECT_USERSPACE`.
pub const FLAG_USERSPACE: u8 = 1 << 2;

/// Which parts of the source side must match (the destination side always must).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExpectMask {
    /// Source address must be equal (mask all ones) or is a wildcard (mask 0).
    pub src_addr: bool,
    /// Source port mask (0 = any port, 0xffff = exact).
    pub sport: u16,
}

/// One expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Expected original tuple of the related connection (source fields 0 where wildcard).
    pub tuple: Tuple,
    pub mask: ExpectMask,
    /// The entry whose helper created it.
    pub master: ConnId,
    /// The master's original tuple (for listings).
    pub master_tuple: Tuple,
    /// The master's zone id (expectations match packets of the same zone id).
    pub zone: u16,
    pub helper: &'static str,
    pub class: u8,
    pub flags: u8,
    pub expires: Time,
    /// The helper the expected entry gets (SIP signalling expectations: `sip`).
    pub child_helper: Option<&'static str>,
}

impl Expectation {
    /// Does a new connection with original tuple `t` in zone `zone` match (`nf_ct_tuple_mask_cmp`)?
    pub fn matches(&self, t: &Tuple, zone: u16) -> bool {
        let e = &self.tuple;
        if zone != self.zone || t.proto != e.proto || t.dst != e.dst {
            return false;
        }
        if self.mask.src_addr && t.src != e.src {
            return false;
        }
        if t.src.is_ipv4() != e.src.is_ipv4() {
            return false;
        }
        match (t.l4, e.l4) {
            (TupleL4::Ports { sport: a, dport: b }, TupleL4::Ports { sport: x, dport: y }) => {
                b == y && (a & self.mask.sport) == (x & self.mask.sport)
            }
            (TupleL4::None, TupleL4::None) => true,
            _ => false,
        }
    }

    /// Remaining lifetime in whole seconds (truncated).
    pub fn remaining_secs(&self, now: Time) -> u64 {
        self.expires.nanos_since(now) / Time::NANOS_PER_SEC
    }

    /// The source address mask as printed (`mask-src=`).
    pub fn mask_src_addr(&self) -> IpAddr {
        match (self.tuple.src, self.mask.src_addr) {
            (IpAddr::V4(_), true) => IpAddr::V4(std::net::Ipv4Addr::BROADCAST),
            (IpAddr::V4(_), false) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            (IpAddr::V6(_), true) => IpAddr::V6(std::net::Ipv6Addr::from([0xffu8; 16])),
            (IpAddr::V6(_), false) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        }
    }

    /// `expect_clash`: equal under the intersection of both source masks (destination exact).
    fn clashes(&self, other: &Expectation) -> bool {
        let mask = ExpectMask {
            src_addr: self.mask.src_addr && other.mask.src_addr,
            sport: self.mask.sport & other.mask.sport,
        };
        let probe = Expectation { mask, ..self.clone() };
        self.zone == other.zone && probe.matches(&other.tuple, other.zone)
    }

    fn same(&self, other: &Expectation) -> bool {
        self.tuple == other.tuple && self.mask == other.mask && self.zone == other.zone
    }

    /// A one-line description: helper, tuple, master (for decisions and traces).
    pub fn describe(&self) -> String {
        let ports = |t: &Tuple| match t.l4 {
            TupleL4::Ports { sport, dport } => format!(" sport={sport} dport={dport}"),
            _ => String::new(),
        };
        format!(
            "{} expectation proto={} src={} dst={}{} master src={} dst={}{}",
            self.helper,
            self.tuple.proto,
            self.tuple.src,
            self.tuple.dst,
            ports(&self.tuple),
            self.master_tuple.src,
            self.master_tuple.dst,
            ports(&self.master_tuple)
        )
    }
}

/// Why an expectation could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExpectError {
    /// Same tuple from the same master in another class (`-EALREADY`).
    #[error("expectation exists in another class")]
    Already,
    /// Clashes with another master's expectation (`-EBUSY`).
    #[error("expectation clashes with an existing one")]
    Busy,
    /// Per-master limit or `nf_conntrack_expect_max` reached (`-EMFILE`).
    #[error("expectation table full")]
    Full,
}

/// The table: expectations by insertion sequence (newest last) and their timers.
#[derive(Debug, Default)]
pub struct Expectations {
    by_seq: BTreeMap<u64, Expectation>,
    timers: BTreeSet<(u64, u64)>,
    next_seq: u64,
}

/// What a change removed (to count `expect_delete` and report events).
pub(crate) type Removed = Vec<Expectation>;

impl Expectations {
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Expectation> {
        self.by_seq.values()
    }

    /// Earliest expiry.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.first().map(|&(t, _)| Time(t))
    }

    /// The expectations of `master`, newest first (the kernel's per-master list order).
    pub(crate) fn of_master_newest_first(&self, master: ConnId) -> Vec<(u64, &Expectation)> {
        self.by_seq.iter().rev().filter(|(_, e)| e.master == master).map(|(&s, e)| (s, e)).collect()
    }

    /// The newest expectation matching `t` in `zone`, inactive ones included (`__nf_ct_expect_find`).
    pub(crate) fn find_any(&self, t: &Tuple, zone: u16) -> Option<&Expectation> {
        self.by_seq.values().rev().find(|e| e.matches(t, zone))
    }

    /// Give expectation `seq` a new expiry and clear `clear` from its flags.
    pub(crate) fn retime(&mut self, seq: u64, expires: Time, clear: u8) {
        if let Some(e) = self.by_seq.get_mut(&seq) {
            self.timers.remove(&(e.expires.0, seq));
            e.expires = expires;
            e.flags &= !clear;
            self.timers.insert((expires.0, seq));
        }
    }

    pub(crate) fn remove_seq(&mut self, seq: u64) -> Option<Expectation> {
        let e = self.by_seq.remove(&seq)?;
        self.timers.remove(&(e.expires.0, seq));
        Some(e)
    }

    /// Remove every expectation whose timer ran out at `now`.
    pub(crate) fn expire(&mut self, now: Time) -> Removed {
        let mut out = Vec::new();
        while let Some(&(t, seq)) = self.timers.first() {
            if t > now.0 {
                break;
            }
            match self.remove_seq(seq) {
                Some(e) => out.push(e),
                None => {
                    self.timers.remove(&(t, seq));
                }
            }
        }
        out
    }

    /// Remove the expectations of `master` (`nf_ct_remove_expectations`).
    pub(crate) fn remove_master(&mut self, master: ConnId) -> Removed {
        let seqs: Vec<u64> =
            self.by_seq.iter().filter(|(_, e)| e.master == master).map(|(&s, _)| s).collect();
        seqs.into_iter().filter_map(|s| self.remove_seq(s)).collect()
    }

    /// How many expectations of `class` `master` has.
    pub fn count_of(&self, master: ConnId, class: u8) -> usize {
        self.by_seq.values().filter(|e| e.master == master && e.class == class).count()
    }

    /// `nf_ct_expect_related`: add `new` (see the module contract). `max_expected` 0 = no limit.
    pub(crate) fn add(
        &mut self,
        new: Expectation,
        max_expected: usize,
        expect_max: usize,
        removed: &mut Removed,
    ) -> Result<(), ExpectError> {
        // newest first, like the hash chain
        let mut replace = None;
        for (&seq, e) in self.by_seq.iter().rev() {
            if e.master == new.master && e.same(&new) {
                if e.class != new.class {
                    return Err(ExpectError::Already);
                }
                replace = Some(seq);
                break;
            } else if e.clashes(&new) {
                return Err(ExpectError::Busy);
            }
        }
        if let Some(seq) = replace {
            // replaced: the limits are not looked at again
            removed.extend(self.remove_seq(seq));
            self.insert(new);
            return Ok(());
        }
        if max_expected > 0 && self.count_of(new.master, new.class) >= max_expected {
            // evict the oldest of this master and class
            let oldest = self
                .by_seq
                .iter()
                .find(|(_, e)| e.master == new.master && e.class == new.class)
                .map(|(&s, _)| s);
            if let Some(seq) = oldest {
                removed.extend(self.remove_seq(seq));
            }
            if self.count_of(new.master, new.class) >= max_expected {
                return Err(ExpectError::Full);
            }
        }
        if self.by_seq.len() >= expect_max {
            return Err(ExpectError::Full);
        }
        self.insert(new);
        Ok(())
    }

    fn insert(&mut self, e: Expectation) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.timers.insert((e.expires.0, seq));
        self.by_seq.insert(seq, e);
    }

    /// The newest active expectation matching `t` in `zone` (`nf_ct_find_expectation`), without
    /// removing it.
    pub(crate) fn find(&self, t: &Tuple, zone: u16) -> Option<(u64, &Expectation)> {
        self.by_seq
            .iter()
            .rev()
            .find(|(_, e)| e.flags & FLAG_INACTIVE == 0 && e.matches(t, zone))
            .map(|(&s, e)| (s, e))
    }

    /// Consume a matched expectation (unless PERMANENT): `Some` = it was removed.
    pub(crate) fn consume(&mut self, seq: u64) -> Option<Expectation> {
        if self.by_seq.get(&seq).is_some_and(|e| e.flags & FLAG_PERMANENT != 0) {
            return None;
        }
        self.remove_seq(seq)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(a: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, a))
    }

    fn exp(master: u32, src: u8, dport: u16, at: u64) -> Expectation {
        let tuple = Tuple { src: ip(src), dst: ip(9), proto: 6, l4: TupleL4::Ports { sport: 0, dport } };
        Expectation {
            tuple,
            mask: ExpectMask { src_addr: true, sport: 0 },
            master: ConnId(master, 0),
            master_tuple: tuple,
            zone: 0,
            helper: "ftp",
            class: 0,
            flags: 0,
            expires: Time(at),
            child_helper: None,
        }
    }

    fn pkt(src: u8, sport: u16, dport: u16) -> Tuple {
        Tuple { src: ip(src), dst: ip(9), proto: 6, l4: TupleL4::Ports { sport, dport } }
    }

    #[test]
    fn matching_uses_the_mask_and_exact_destination() {
        let e = exp(1, 2, 10000, 10);
        assert!(e.matches(&pkt(2, 4444, 10000), 0));
        assert!(!e.matches(&pkt(3, 4444, 10000), 0), "source address exact");
        assert!(!e.matches(&pkt(2, 4444, 10001), 0), "destination port exact");
        assert!(!e.matches(&pkt(2, 4444, 10000), 1), "zone");
        let mut any = e.clone();
        any.mask.src_addr = false;
        assert!(any.matches(&pkt(3, 1, 10000), 0));
    }

    #[test]
    fn same_master_replaces_other_master_clashes_limit_evicts_oldest() {
        let mut t = Expectations::default();
        let mut rm = Vec::new();
        t.add(exp(1, 2, 10000, 100), 1, 10, &mut rm).unwrap();
        // same tuple from the same master: replaced (new timer)
        t.add(exp(1, 2, 10000, 200), 1, 10, &mut rm).unwrap();
        assert_eq!((t.len(), rm.len()), (1, 1));
        assert_eq!(t.poll_timeout(), Some(Time(200)));
        // the same tuple from another master: clash
        assert_eq!(t.add(exp(2, 2, 10000, 300), 1, 10, &mut rm), Err(ExpectError::Busy));
        // a wildcard source clashes with an exact one for the same destination
        let mut wild = exp(2, 7, 10000, 300);
        wild.mask.src_addr = false;
        assert_eq!(t.add(wild, 1, 10, &mut rm), Err(ExpectError::Busy));
        // max_expected 1: a second one from master 1 evicts the first
        rm.clear();
        t.add(exp(1, 2, 10001, 300), 1, 10, &mut rm).unwrap();
        assert_eq!(rm.len(), 1);
        assert_eq!(t.iter().map(|e| e.tuple.dport()).collect::<Vec<_>>(), vec![Some(10001)]);
        // expect_max
        assert_eq!(t.add(exp(3, 2, 20000, 300), 1, 1, &mut rm), Err(ExpectError::Full));
    }

    #[test]
    fn timers_master_removal_and_consumption() {
        let mut t = Expectations::default();
        let mut rm = Vec::new();
        t.add(exp(1, 2, 10000, 100), 1, 10, &mut rm).unwrap();
        t.add(exp(2, 2, 10001, 50), 1, 10, &mut rm).unwrap();
        assert_eq!(t.expire(Time(49)).len(), 0);
        assert_eq!(t.expire(Time(50)).len(), 1);
        let (seq, _) = t.find(&pkt(2, 1, 10000), 0).unwrap();
        assert!(t.consume(seq).is_some());
        assert!(t.find(&pkt(2, 1, 10000), 0).is_none());
        t.add(exp(3, 2, 10002, 100), 1, 10, &mut rm).unwrap();
        assert_eq!(t.remove_master(ConnId(3, 0)).len(), 1);
        assert!(t.is_empty());
    }

    /// A SIP media expectation (class audio, 180 s) outlives nothing but its own timer here: the
    /// master lives 3600 s (sip_timeout). Created at 0.0, it is due at 180.0 exactly; the DESTROY
    /// event is stamped then with 0 s left, and the media packet after it is NEW.
    #[test]
    fn an_expectation_expires_on_its_own_timer() {
        use crate::testutil::{info, t, udp, Lab, A, B};
        use crate::Template;
        let mut lab = Lab::new();
        let sip = Template { helper: Some("sip".into()), ..Template::default() };
        let invite = b"INVITE sip:bob@10.99.0.2 SIP/2.0\r\nCSeq: 1 INVITE\r\nContent-Length: 60\r\n\r\nv=0\r\nc=IN IP4 10.99.0.1\r\nm=audio 40000 RTP/AVP 0\r\n";
        let (r, v) = lab.through(0.0, &udp(A, 5060, B, 5060, invite), Some(&sip));
        assert_eq!((info(r), v), ("NEW", crate::HelperVerdict::Accept));
        // RTP and RTCP from the callee to the caller
        let ports: Vec<_> = lab.ct.expectations().map(|e| e.tuple.dport()).collect();
        assert_eq!(ports, vec![Some(40000), Some(40001)]);
        assert_eq!(lab.ct.iter().next().unwrap().expires(), t(3600.0));
        let new_events = lab.events().into_iter().filter(|l| l.contains("master-src=")).count();
        assert_eq!(new_events, 2);
        // the next timer is the expectations'
        assert_eq!(lab.ct.poll_timeout(), Some(t(180.0)));
        lab.ct.handle_timeout(t(179.999));
        assert_eq!(lab.ct.expectations().count(), 2);
        assert!(lab.events().is_empty());
        lab.ct.handle_timeout(t(180.0));
        assert_eq!(lab.ct.expectations().count(), 0);
        let body = "proto=17 src=10.99.0.2 dst=10.99.0.1 sport=0 dport=4000";
        let ev: Vec<String> = lab.events().into_iter().filter(|l| l.contains("master-src=")).collect();
        assert_eq!(ev.len(), 2, "{ev:?}");
        for (e, port) in ev.iter().zip(["0", "1"]) {
            assert!(e.starts_with(&format!("[1700000180.000000]\t[DESTROY] 0 {body}{port} ")), "{e}");
            assert!(e.ends_with("class=1 helper=sip"), "{e}");
        }
        assert_eq!(lab.ct.stats().expect_delete, 2);
        // the master is still there, its own timer far away
        assert_eq!(lab.ct.len(), 1);
        assert_eq!(lab.ct.poll_timeout(), Some(t(3600.0)));
        // the media packet now starts a connection of its own
        let (r, _) = lab.through(181.0, &udp(B, 30000, A, 40000, b"rtp"), None);
        assert_eq!(info(r), "NEW");
        assert!(!lab.ct.conn(crate::testutil::ids(r)).unwrap().status().expected());
    }
}
