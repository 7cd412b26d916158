//! The capture clock. Time is always an argument in statewall: nothing reads the wall clock.

/// A point in time: nanoseconds since the Unix epoch (capture timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    pub const ZERO: Time = Time(0);
    pub const NANOS_PER_SEC: u64 = 1_000_000_000;

    pub fn from_secs(s: u64) -> Time {
        Time(s.saturating_mul(Self::NANOS_PER_SEC))
    }
    pub fn from_secs_f64(s: f64) -> Time {
        Time((s * 1e9) as u64)
    }
    pub fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// `self + secs` seconds, saturating.
    pub fn add_secs(self, secs: u64) -> Time {
        Time(self.0.saturating_add(secs.saturating_mul(Self::NANOS_PER_SEC)))
    }
    pub fn add_nanos(self, n: u64) -> Time {
        Time(self.0.saturating_add(n))
    }
    /// Nanoseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub fn nanos_since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
