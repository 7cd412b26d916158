//! Conntrack tuples (reference §2.3).
//!
//! Contract: a [`Tuple`] is (source address, destination address, L4 protocol number, L4 part). The L4
//! part follows the kernel's `nf_conntrack_tuple` union: ports for TCP, UDP and UDP-Lite; (type, code,
//! echo id) for ICMP / ICMPv6; GRE keys are stored in [`TupleL4::Ports`] (`sport` = source key, `dport`
//! = destination key, as the kernel's `u.all` view); nothing for every other protocol. The zone is not
//! part of the tuple; the table keys on (tuple, zone).

use std::net::{IpAddr, Ipv4Addr};

pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_GRE: u8 = 47;
pub(crate) const PROTO_ICMPV6: u8 = 58;
pub(crate) const PROTO_SCTP: u8 = 132;
pub(crate) const PROTO_UDPLITE: u8 = 136;

/// The L4 part of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TupleL4 {
    /// TCP / UDP / UDP-Lite ports (GRE: source and destination keys).
    Ports { sport: u16, dport: u16 },
    /// ICMP / ICMPv6: type, code and echo identifier (the sequence number is not part of it).
    Icmp { ty: u8, code: u8, id: u16 },
    /// Protocols tracked by address pair only.
    None,
}

/// One direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub l4: TupleL4,
}

/// Hashes as few integer words (the flow table hashes a tuple on every packet): for IPv4 the two addresses
/// in one 64-bit word, then protocol and L4 part in another. Equal tuples hash equally.
impl std::hash::Hash for Tuple {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        match (self.src, self.dst) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                h.write_u64((u64::from(u32::from(a)) << 32) | u64::from(u32::from(b)))
            }
            (a, b) => {
                let wide = |ip: IpAddr| match ip {
                    IpAddr::V4(v) => u128::from(u32::from(v)) | (1 << 64),
                    IpAddr::V6(v) => u128::from(v),
                };
                h.write_u128(wide(a));
                h.write_u128(wide(b));
            }
        }
        let l4 = match self.l4 {
            TupleL4::Ports { sport, dport } => (1 << 40) | (u64::from(sport) << 16) | u64::from(dport),
            TupleL4::Icmp { ty, code, id } => {
                (2 << 40) | (u64::from(ty) << 24) | (u64::from(code) << 16) | u64::from(id)
            }
            TupleL4::None => 3 << 40,
        };
        h.write_u64(l4 | (u64::from(self.proto) << 48));
    }
}

/// ICMP types that have an inverse, as `nf_conntrack_invert_icmp_tuple`: echo 8<->0, timestamp
/// 13<->14, info 15<->16, address mask 17<->18.
fn icmp_inverse(ty: u8) -> Option<u8> {
    match ty {
        8 => Some(0),
        0 => Some(8),
        13 => Some(14),
        14 => Some(13),
        15 => Some(16),
        16 => Some(15),
        17 => Some(18),
        18 => Some(17),
        _ => None,
    }
}

/// ICMPv6: echo 128<->129, node information 139<->140.
fn icmpv6_inverse(ty: u8) -> Option<u8> {
    match ty {
        128 => Some(129),
        129 => Some(128),
        139 => Some(140),
        140 => Some(139),
        _ => None,
    }
}

impl Tuple {
    /// The tuple of a packet travelling the other way (`nf_ct_invert_tuple`). `None` when the
    /// protocol cannot be inverted (ICMP types without a reply type).
    pub fn invert(&self) -> Option<Tuple> {
        let l4 = match self.l4 {
            TupleL4::Ports { sport, dport } => TupleL4::Ports { sport: dport, dport: sport },
            TupleL4::Icmp { ty, code, id } => {
                let inv = if self.proto == PROTO_ICMPV6 { icmpv6_inverse(ty)? } else { icmp_inverse(ty)? };
                TupleL4::Icmp { ty: inv, code, id }
            }
            TupleL4::None => TupleL4::None,
        };
        Some(Tuple { src: self.dst, dst: self.src, proto: self.proto, l4 })
    }

    /// A hash (with `seed`, of the tuple in `zone`) that is the same for the tuple and its inverse: the
    /// table's index finds an entry from either direction with one node (`nf_conntrack_find` hashes each
    /// direction's tuple; one symmetric hash lets a single node stand for both). Equal tuples hash equally.
    pub(crate) fn sym_hash(&self, seed: u64, zone: u16) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        if let Some(k) = Key4::of(self) {
            return k.sym_hash(seed, zone);
        }
        let mut h = foldhash::fast::FixedState::with_seed(seed).build_hasher();
        let (l4, kind) = pack_l4(self.l4);
        let l4 = sym_l4(self.proto, l4, kind);
        let (sport, dport) = match self.l4 {
            TupleL4::Ports { sport, dport } => (sport, dport),
            _ => (0, 0),
        };
        let wide = |ip: IpAddr| match ip {
            IpAddr::V4(v) => u128::from(u32::from(v)) | (1 << 64),
            IpAddr::V6(v) => u128::from(v),
        };
        let ea = (wide(self.src), sport);
        let eb = (wide(self.dst), dport);
        let (lo, hi) = if ea <= eb { (ea, eb) } else { (eb, ea) };
        h.write_u128(lo.0);
        h.write_u128(hi.0);
        h.write_u64((u64::from(lo.1) << 16) | u64::from(hi.1));
        h.write_u64(
            u64::from(l4) | (u64::from(kind) << 40) | (u64::from(self.proto) << 48) | (u64::from(zone) << 32),
        );
        h.finish()
    }

    /// Source port (TCP/UDP/UDP-Lite; GRE source key), if the tuple has ports.
    pub fn sport(&self) -> Option<u16> {
        match self.l4 {
            TupleL4::Ports { sport, .. } => Some(sport),
            _ => None,
        }
    }

    /// Destination port (TCP/UDP/UDP-Lite; GRE destination key), if the tuple has ports.
    pub fn dport(&self) -> Option<u16> {
        match self.l4 {
            TupleL4::Ports { dport, .. } => Some(dport),
            _ => None,
        }
    }
}

/// The L4 kinds of a packed L4 part ([`pack_l4`]).
pub(crate) const KIND_PORTS: u8 = 0;
pub(crate) const KIND_ICMP: u8 = 1;
pub(crate) const KIND_NONE: u8 = 2;

/// An L4 part in 32 bits (ports: source high, destination low; ICMP: type, code, id) plus its kind.
pub(crate) fn pack_l4(l4: TupleL4) -> (u32, u8) {
    match l4 {
        TupleL4::Ports { sport, dport } => ((u32::from(sport) << 16) | u32::from(dport), KIND_PORTS),
        TupleL4::Icmp { ty, code, id } => {
            ((u32::from(ty) << 24) | (u32::from(code) << 16) | u32::from(id), KIND_ICMP)
        }
        TupleL4::None => (0, KIND_NONE),
    }
}

/// The L4 part packed by [`pack_l4`].
pub(crate) fn unpack_l4(v: u32, kind: u8) -> TupleL4 {
    match kind {
        KIND_PORTS => TupleL4::Ports { sport: (v >> 16) as u16, dport: v as u16 },
        KIND_ICMP => TupleL4::Icmp { ty: (v >> 24) as u8, code: (v >> 16) as u8, id: v as u16 },
        _ => TupleL4::None,
    }
}

/// The part of a packed L4 part that does not change under inversion: ICMP with the smaller of the type
/// and its inverse; ports (swapped by inversion) and nothing else count as 0 (they go with the addresses).
fn sym_l4(proto: u8, l4: u32, kind: u8) -> u32 {
    match kind {
        KIND_ICMP => {
            let ty = (l4 >> 24) as u8;
            let inv = if proto == PROTO_ICMPV6 { icmpv6_inverse(ty) } else { icmp_inverse(ty) };
            let ty = inv.map_or(ty, |i| i.min(ty));
            (l4 & 0x00ff_ffff) | (u32::from(ty) << 24)
        }
        _ => 0,
    }
}

/// The full 128-bit product of `a` and `b`, its halves xored (foldhash's and wyhash's mixing step).
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Constants of [`Key4::sym_hash`] (hexadecimal digits of pi, as foldhash's): odd-looking, dense
/// words, so that no input word is multiplied by zero unless it equals a constant.
const MIX: [u64; 4] =
    [0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344, 0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89];

/// An IPv4 tuple in the compact form entries keep it in: lookups compare integers, not tuples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key4 {
    pub(crate) src: u32,
    pub(crate) dst: u32,
    /// Packed L4 part ([`pack_l4`]).
    pub(crate) l4: u32,
    pub(crate) proto: u8,
    pub(crate) kind: u8,
}

impl Key4 {
    /// The compact form of an IPv4 tuple (`None` for IPv6).
    pub(crate) fn of(t: &Tuple) -> Option<Key4> {
        match (t.src, t.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let (l4, kind) = pack_l4(t.l4);
                Some(Key4 { src: u32::from(s), dst: u32::from(d), l4, proto: t.proto, kind })
            }
            _ => None,
        }
    }

    /// [`Tuple::invert`] in compact form.
    pub(crate) fn invert(self) -> Option<Key4> {
        let l4 = match self.kind {
            KIND_PORTS => self.l4.rotate_left(16),
            KIND_ICMP => {
                let ty = (self.l4 >> 24) as u8;
                let inv = if self.proto == PROTO_ICMPV6 { icmpv6_inverse(ty)? } else { icmp_inverse(ty)? };
                (self.l4 & 0x00ff_ffff) | (u32::from(inv) << 24)
            }
            _ => self.l4,
        };
        Some(Key4 { src: self.dst, dst: self.src, l4, ..self })
    }

    pub(crate) fn tuple(self) -> Tuple {
        Tuple {
            src: IpAddr::V4(Ipv4Addr::from(self.src)),
            dst: IpAddr::V4(Ipv4Addr::from(self.dst)),
            proto: self.proto,
            l4: unpack_l4(self.l4, self.kind),
        }
    }

    /// [`Tuple::sym_hash`] of the tuple: two multiply-folds (the mixing step of foldhash and wyhash) over
    /// the canonically ordered (address, port) ends and the direction-free rest, where a general-purpose
    /// hasher spends half its work on buffering. Its upper half (the index tag) depends on every input bit.
    #[inline]
    pub(crate) fn sym_hash(self, seed: u64, zone: u16) -> u64 {
        // (address, port) of each end, in a canonical order
        let (ea, eb) = if self.kind == KIND_PORTS {
            (
                (u64::from(self.src) << 16) | u64::from(self.l4 >> 16),
                (u64::from(self.dst) << 16) | u64::from(self.l4 & 0xffff),
            )
        } else {
            (u64::from(self.src) << 16, u64::from(self.dst) << 16)
        };
        let l4 = sym_l4(self.proto, self.l4, self.kind);
        let rest = u64::from(l4)
            | (u64::from(self.kind) << 40)
            | (u64::from(self.proto) << 48)
            | (u64::from(zone) << 32);
        let ends = fold_mul(ea.min(eb) ^ seed ^ MIX[0], ea.max(eb) ^ MIX[1]);
        fold_mul(ends ^ MIX[2], rest ^ MIX[3])
    }
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    let hi = *b.get(off)?;
    let lo = *b.get(off.checked_add(1)?)?;
    Some(u16::from_be_bytes([hi, lo]))
}

/// Why the L4 part of a tuple could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TupleError {
    /// Too few L4 bytes (`skb_header_pointer` failed).
    Short,
    /// GRE version 1 carrying something other than PPP.
    GreNotPpp,
}

/// The L4 part of a tuple from raw L4 bytes, as `nf_ct_get_tuple` builds it (used for quoted
/// datagrams inside ICMP errors and for headers the wire decoder could not parse).
pub(crate) fn l4_part(proto: u8, l4: &[u8]) -> Result<TupleL4, TupleError> {
    match proto {
        PROTO_TCP | PROTO_UDP | PROTO_UDPLITE | PROTO_SCTP => {
            // only the first four bytes are needed
            let sport = be16(l4, 0).ok_or(TupleError::Short)?;
            let dport = be16(l4, 2).ok_or(TupleError::Short)?;
            Ok(TupleL4::Ports { sport, dport })
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            if l4.len() < 8 {
                return Err(TupleError::Short);
            }
            let ty = *l4.first().ok_or(TupleError::Short)?;
            let code = *l4.get(1).ok_or(TupleError::Short)?;
            let id = be16(l4, 4).ok_or(TupleError::Short)?;
            Ok(TupleL4::Icmp { ty, code, id })
        }
        PROTO_GRE => gre_keys(l4),
        _ => Ok(TupleL4::None),
    }
}

/// GRE keys (`gre_pkt_to_tuple`): version 0 (or a header too short to tell) behaves like the generic
/// tracker with keys 0; version 1 must carry PPP (0x880b) and then keys on the call id (the source
/// key comes from the PPTP helper's keymap, which we do not have: 0).
pub(crate) fn gre_keys(l4: &[u8]) -> Result<TupleL4, TupleError> {
    let zero = TupleL4::Ports { sport: 0, dport: 0 };
    let Some(flags) = be16(l4, 0) else {
        return Ok(zero);
    };
    if l4.len() < 4 || flags & 0x0007 != 1 {
        return Ok(zero);
    }
    if l4.len() < 8 {
        return Ok(zero);
    }
    if be16(l4, 2) != Some(0x880b) {
        return Err(TupleError::GreNotPpp);
    }
    let call_id = be16(l4, 6).ok_or(TupleError::Short)?;
    Ok(TupleL4::Ports { sport: 0, dport: call_id })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(a: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, a))
    }

    #[test]
    fn ports_swap_on_invert() {
        let t =
            Tuple { src: ip(1), dst: ip(2), proto: PROTO_TCP, l4: TupleL4::Ports { sport: 1000, dport: 80 } };
        let r = t.invert().unwrap();
        assert_eq!(r.src, ip(2));
        assert_eq!(r.sport(), Some(80));
        assert_eq!(r.dport(), Some(1000));
        assert_eq!(r.invert().unwrap(), t);
    }

    #[test]
    fn icmp_echo_inverts_to_reply_and_others_do_not() {
        let t =
            Tuple { src: ip(1), dst: ip(2), proto: PROTO_ICMP, l4: TupleL4::Icmp { ty: 8, code: 0, id: 7 } };
        assert_eq!(t.invert().unwrap().l4, TupleL4::Icmp { ty: 0, code: 0, id: 7 });
        let mut t9 = t;
        t9.l4 = TupleL4::Icmp { ty: 9, code: 0, id: 0 };
        assert!(t9.invert().is_none());
        let mut v6 = t;
        v6.proto = PROTO_ICMPV6;
        v6.l4 = TupleL4::Icmp { ty: 128, code: 0, id: 5 };
        assert_eq!(v6.invert().unwrap().l4, TupleL4::Icmp { ty: 129, code: 0, id: 5 });
    }

    #[test]
    fn the_index_hash_is_the_same_from_both_directions() {
        let v6 = |a: u16| IpAddr::V6(std::net::Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, a));
        let tuples = [
            Tuple { src: ip(1), dst: ip(2), proto: PROTO_TCP, l4: TupleL4::Ports { sport: 1000, dport: 80 } },
            Tuple { src: ip(1), dst: ip(1), proto: PROTO_UDP, l4: TupleL4::Ports { sport: 7, dport: 9 } },
            Tuple { src: ip(1), dst: ip(2), proto: PROTO_ICMP, l4: TupleL4::Icmp { ty: 8, code: 0, id: 7 } },
            Tuple { src: ip(3), dst: ip(2), proto: 253, l4: TupleL4::None },
            Tuple { src: v6(1), dst: v6(2), proto: PROTO_UDP, l4: TupleL4::Ports { sport: 5, dport: 53 } },
            Tuple {
                src: v6(1),
                dst: v6(2),
                proto: PROTO_ICMPV6,
                l4: TupleL4::Icmp { ty: 128, code: 0, id: 3 },
            },
        ];
        for t in tuples {
            let r = t.invert().unwrap();
            assert_eq!(t.sym_hash(7, 0), r.sym_hash(7, 0), "{t:?}");
            assert_ne!(t.sym_hash(7, 0), t.sym_hash(7, 1), "{t:?}");
            if let Some(k) = Key4::of(&t) {
                assert_eq!(k.invert(), Key4::of(&r));
                assert_eq!(k.tuple(), t);
            }
        }
        // another flow between the same hosts hashes elsewhere
        let a = tuples[0];
        let mut b = a;
        b.l4 = TupleL4::Ports { sport: 1001, dport: 80 };
        assert_ne!(a.sym_hash(7, 0), b.sym_hash(7, 0));
    }

    /// The index files a node under the hash's upper 32 bits (its tag; the home slot is the tag's low bits):
    /// flows that differ in one field only (a client port, a client address, a server port, the zone)
    /// must spread over the slots as random tags would: 2^16 keys into 2^16 slots fill 1 - 1/e ≈ 63.2%.
    #[test]
    fn the_compact_hash_spreads_flows_that_differ_in_one_field() {
        let base = Key4 {
            src: 0xc000_020a,
            dst: 0xc633_0001,
            l4: (40_000 << 16) | 443,
            proto: PROTO_TCP,
            kind: KIND_PORTS,
        };
        let vary: [&dyn Fn(u32) -> (Key4, u16); 5] = [
            &|i| (Key4 { l4: (i << 16) | 443, ..base }, 0),
            &|i| (Key4 { src: 0x0a00_0000 | i, ..base }, 0),
            &|i| (Key4 { l4: (40_000 << 16) | i, ..base }, 0),
            &|i| (Key4 { dst: i << 16, ..base }, 0),
            &|i| (base, i as u16),
        ];
        for (n, f) in vary.iter().enumerate() {
            let mut seen = vec![false; 1 << 16];
            let mut tags = std::collections::HashSet::new();
            for i in 0..1u32 << 16 {
                let (k, zone) = f(i);
                let h = k.sym_hash(7, zone);
                tags.insert(h >> 32);
                seen[((h >> 32) & 0xffff) as usize] = true;
            }
            let filled = seen.iter().filter(|&&s| s).count() as f64 / f64::from(1u32 << 16);
            assert!((0.62..0.645).contains(&filled), "variation {n}: {filled}");
            assert!(tags.len() > 65_000, "variation {n}: {} distinct tags", tags.len());
        }
    }

    #[test]
    fn l4_part_needs_enough_bytes() {
        assert_eq!(l4_part(PROTO_UDP, &[0, 1, 0]), Err(TupleError::Short));
        assert_eq!(l4_part(PROTO_UDP, &[0, 1, 0, 2]), Ok(TupleL4::Ports { sport: 1, dport: 2 }));
        assert_eq!(l4_part(PROTO_ICMP, &[8, 0, 0, 0, 0, 9, 0]), Err(TupleError::Short));
        assert_eq!(
            l4_part(PROTO_ICMP, &[8, 0, 0, 0, 0, 9, 0, 1]),
            Ok(TupleL4::Icmp { ty: 8, code: 0, id: 9 })
        );
        assert_eq!(l4_part(253, &[]), Ok(TupleL4::None));
    }

    #[test]
    fn gre_versions() {
        // v0 with a key: keys 0 like generic
        assert_eq!(
            gre_keys(&[0x20, 0x00, 0x08, 0x00, 0, 0, 0, 5]),
            Ok(TupleL4::Ports { sport: 0, dport: 0 })
        );
        // v1 PPP: call id
        assert_eq!(
            gre_keys(&[0x30, 0x81, 0x88, 0x0b, 0, 4, 0x12, 0x34]),
            Ok(TupleL4::Ports { sport: 0, dport: 0x1234 })
        );
        // v1 not PPP: untrackable
        assert_eq!(gre_keys(&[0x30, 0x81, 0x08, 0x00, 0, 4, 0x12, 0x34]), Err(TupleError::GreNotPpp));
    }
}
