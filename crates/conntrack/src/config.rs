//! Conntrack sysctls (`/proc/sys/net/netfilter/nf_conntrack_*`).
//!
//! Contract: [`Config::default`] holds the kernel 6.18 defaults of a 64-bit machine with more than 4 GiB
//! of RAM (reference §0, §3.9, §4). [`Config::set`] accepts a sysctl by any of its usual spellings
//! (`net.netfilter.nf_conntrack_X`, `net/netfilter/nf_conntrack_X`, `nf_conntrack_X`, and the
//! `net.nf_conntrack_max` alias) and rejects, like the kernel's sysctl handlers, values that do not
//! parse or are out of range. Timeouts are whole seconds.

/// `HZ` of the reference kernel (Debian: `CONFIG_HZ_250`). Jiffies-based sysctls reject values above
/// `INT_MAX / HZ` (`proc_dointvec_jiffies`).
const HZ: u64 = 250;
const MAX_TIMEOUT_SECS: u64 = (i32::MAX as u64) / HZ;

/// Why a sysctl could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown conntrack sysctl `{0}`")]
    UnknownKey(String),
    #[error("sysctl `{key}` is read-only")]
    ReadOnly { key: String },
    #[error("invalid value `{value}` for sysctl `{key}`: {reason}")]
    BadValue { key: String, value: String, reason: &'static str },
}

/// The conntrack sysctls that influence tracking and output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub tcp_timeout_syn_sent: u32,
    pub tcp_timeout_syn_recv: u32,
    pub tcp_timeout_established: u32,
    pub tcp_timeout_fin_wait: u32,
    pub tcp_timeout_close_wait: u32,
    pub tcp_timeout_last_ack: u32,
    pub tcp_timeout_time_wait: u32,
    pub tcp_timeout_close: u32,
    pub tcp_timeout_max_retrans: u32,
    pub tcp_timeout_unacknowledged: u32,
    /// `nf_conntrack_tcp_loose`: pick up established connections from a bare ACK.
    pub tcp_loose: bool,
    /// `nf_conntrack_tcp_be_liberal`: waive window-check failures.
    pub tcp_be_liberal: bool,
    /// `nf_conntrack_tcp_ignore_invalid_rst`: do not mark RSTs below the peer's max ack INVALID.
    pub tcp_ignore_invalid_rst: bool,
    /// `nf_conntrack_tcp_max_retrans`.
    pub tcp_max_retrans: u8,
    pub udp_timeout: u32,
    pub udp_timeout_stream: u32,
    pub icmp_timeout: u32,
    pub icmpv6_timeout: u32,
    pub generic_timeout: u32,
    pub gre_timeout: u32,
    pub gre_timeout_stream: u32,
    pub sctp_timeout_closed: u32,
    pub sctp_timeout_cookie_wait: u32,
    pub sctp_timeout_cookie_echoed: u32,
    pub sctp_timeout_established: u32,
    pub sctp_timeout_shutdown_sent: u32,
    pub sctp_timeout_shutdown_recd: u32,
    pub sctp_timeout_shutdown_ack_sent: u32,
    pub sctp_timeout_heartbeat_sent: u32,
    /// `nf_conntrack_checksum`: verify L4 checksums at PREROUTING.
    pub checksum: bool,
    /// `nf_conntrack_max`; 0 means no limit (6.18 behaviour, reference §9 T8b).
    pub max: u32,
    /// `nf_conntrack_buckets`: the (virtual) hash size, used to model the bucket-local early drop.
    pub buckets: u32,
    /// `nf_conntrack_acct`: new entries get packet/byte counters.
    pub acct: bool,
    /// `nf_conntrack_timestamp`: new entries get a start timestamp (`delta-time=`).
    pub timestamp: bool,
    /// `nf_conntrack_expect_max`: the expectation table limit (adding beyond it fails).
    pub expect_max: u32,
    /// The FTP helper's `loose` module parameter (`/sys/module/nf_conntrack_ftp/parameters/loose`,
    /// global, default off): expect the address a PORT/EPRT/227 names even when it is not the
    /// sender's. Set with `nf_conntrack_ftp.loose` / `net.netfilter.nf_conntrack_ftp_loose` /
    /// `nf_conntrack_ftp.loose` (accepts 0/1, Y/N).
    pub ftp_loose: bool,
    /// `nf_conntrack_log_invalid` (no effect here; accepted for completeness).
    pub log_invalid: u8,
    /// `nf_conntrack_events` (no effect here; accepted for completeness).
    pub events: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tcp_timeout_syn_sent: 120,
            tcp_timeout_syn_recv: 60,
            tcp_timeout_established: 432_000,
            tcp_timeout_fin_wait: 120,
            tcp_timeout_close_wait: 60,
            tcp_timeout_last_ack: 30,
            tcp_timeout_time_wait: 120,
            tcp_timeout_close: 10,
            tcp_timeout_max_retrans: 300,
            tcp_timeout_unacknowledged: 300,
            tcp_loose: true,
            tcp_be_liberal: false,
            tcp_ignore_invalid_rst: false,
            tcp_max_retrans: 3,
            udp_timeout: 30,
            udp_timeout_stream: 120,
            icmp_timeout: 30,
            icmpv6_timeout: 30,
            generic_timeout: 600,
            gre_timeout: 30,
            gre_timeout_stream: 180,
            sctp_timeout_closed: 10,
            sctp_timeout_cookie_wait: 3,
            sctp_timeout_cookie_echoed: 3,
            sctp_timeout_established: 210,
            sctp_timeout_shutdown_sent: 3,
            sctp_timeout_shutdown_recd: 3,
            sctp_timeout_shutdown_ack_sent: 3,
            sctp_timeout_heartbeat_sent: 30,
            checksum: true,
            max: 262_144,
            buckets: 262_144,
            acct: false,
            timestamp: false,
            expect_max: 4096,
            ftp_loose: false,
            log_invalid: 0,
            events: 2,
        }
    }
}

/// Strip the accepted prefixes; returns the bare `nf_conntrack_*` name.
fn normalize(key: &str) -> &str {
    let k = key.trim();
    for prefix in
        ["/proc/sys/net/netfilter/", "net.netfilter.", "net/netfilter/", "/proc/sys/net/", "net.", "net/"]
    {
        if let Some(rest) = k.strip_prefix(prefix) {
            return rest;
        }
    }
    k
}

fn bad(key: &str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError::BadValue { key: key.to_string(), value: value.to_string(), reason }
}

fn parse_u64(key: &str, value: &str) -> Result<u64, ConfigError> {
    value.trim().parse::<u64>().map_err(|_| bad(key, value, "not a non-negative integer"))
}

fn parse_range(key: &str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let v = parse_u64(key, value)?;
    if v < min || v > max {
        return Err(bad(key, value, "out of range"));
    }
    Ok(v)
}

impl Config {
    /// Set one sysctl. Accepts `net.netfilter.nf_conntrack_tcp_timeout_established`,
    /// `net/netfilter/...`, the bare `nf_conntrack_...` name and `net.nf_conntrack_max`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let name = normalize(key);
        let timeout = |slot: &mut u32| -> Result<(), ConfigError> {
            let v = parse_range(key, value, 0, MAX_TIMEOUT_SECS)?;
            *slot = u32::try_from(v).map_err(|_| bad(key, value, "out of range"))?;
            Ok(())
        };
        let boolean = |slot: &mut bool| -> Result<(), ConfigError> {
            // proc_dou8vec_minmax with [0, 1]
            *slot = parse_range(key, value, 0, 1)? == 1;
            Ok(())
        };
        match name {
            "nf_conntrack_tcp_timeout_syn_sent" => timeout(&mut self.tcp_timeout_syn_sent),
            "nf_conntrack_tcp_timeout_syn_recv" => timeout(&mut self.tcp_timeout_syn_recv),
            "nf_conntrack_tcp_timeout_established" => timeout(&mut self.tcp_timeout_established),
            "nf_conntrack_tcp_timeout_fin_wait" => timeout(&mut self.tcp_timeout_fin_wait),
            "nf_conntrack_tcp_timeout_close_wait" => timeout(&mut self.tcp_timeout_close_wait),
            "nf_conntrack_tcp_timeout_last_ack" => timeout(&mut self.tcp_timeout_last_ack),
            "nf_conntrack_tcp_timeout_time_wait" => timeout(&mut self.tcp_timeout_time_wait),
            "nf_conntrack_tcp_timeout_close" => timeout(&mut self.tcp_timeout_close),
            "nf_conntrack_tcp_timeout_max_retrans" => timeout(&mut self.tcp_timeout_max_retrans),
            "nf_conntrack_tcp_timeout_unacknowledged" => timeout(&mut self.tcp_timeout_unacknowledged),
            "nf_conntrack_tcp_loose" => boolean(&mut self.tcp_loose),
            "nf_conntrack_tcp_be_liberal" => boolean(&mut self.tcp_be_liberal),
            "nf_conntrack_tcp_ignore_invalid_rst" => boolean(&mut self.tcp_ignore_invalid_rst),
            "nf_conntrack_tcp_max_retrans" => {
                self.tcp_max_retrans = u8::try_from(parse_range(key, value, 0, 255)?)
                    .map_err(|_| bad(key, value, "out of range"))?;
                Ok(())
            }
            "nf_conntrack_udp_timeout" => timeout(&mut self.udp_timeout),
            "nf_conntrack_udp_timeout_stream" => timeout(&mut self.udp_timeout_stream),
            "nf_conntrack_icmp_timeout" => timeout(&mut self.icmp_timeout),
            "nf_conntrack_icmpv6_timeout" => timeout(&mut self.icmpv6_timeout),
            "nf_conntrack_generic_timeout" => timeout(&mut self.generic_timeout),
            "nf_conntrack_gre_timeout" => timeout(&mut self.gre_timeout),
            "nf_conntrack_gre_timeout_stream" => timeout(&mut self.gre_timeout_stream),
            "nf_conntrack_sctp_timeout_closed" => timeout(&mut self.sctp_timeout_closed),
            "nf_conntrack_sctp_timeout_cookie_wait" => timeout(&mut self.sctp_timeout_cookie_wait),
            "nf_conntrack_sctp_timeout_cookie_echoed" => timeout(&mut self.sctp_timeout_cookie_echoed),
            "nf_conntrack_sctp_timeout_established" => timeout(&mut self.sctp_timeout_established),
            "nf_conntrack_sctp_timeout_shutdown_sent" => timeout(&mut self.sctp_timeout_shutdown_sent),
            "nf_conntrack_sctp_timeout_shutdown_recd" => timeout(&mut self.sctp_timeout_shutdown_recd),
            "nf_conntrack_sctp_timeout_shutdown_ack_sent" => {
                timeout(&mut self.sctp_timeout_shutdown_ack_sent)
            }
            "nf_conntrack_sctp_timeout_heartbeat_sent" => timeout(&mut self.sctp_timeout_heartbeat_sent),
            "nf_conntrack_checksum" => boolean(&mut self.checksum),
            "nf_conntrack_acct" => boolean(&mut self.acct),
            "nf_conntrack_timestamp" => boolean(&mut self.timestamp),
            "nf_conntrack_max" => {
                // proc_dointvec_minmax [0, INT_MAX]; 0 = unlimited on 6.18
                let v = parse_range(key, value, 0, i32::MAX as u64)?;
                self.max = u32::try_from(v).map_err(|_| bad(key, value, "out of range"))?;
                Ok(())
            }
            "nf_conntrack_buckets" => {
                // nf_conntrack_hash_resize: 0 is EINVAL; the kernel caps the allocation size.
                let v = parse_range(key, value, 1, u64::from(u32::MAX / 8))?;
                self.buckets = u32::try_from(v).map_err(|_| bad(key, value, "out of range"))?;
                Ok(())
            }
            "nf_conntrack_expect_max" => {
                let v = parse_range(key, value, 1, i32::MAX as u64)?;
                self.expect_max = u32::try_from(v).map_err(|_| bad(key, value, "out of range"))?;
                Ok(())
            }
            "nf_conntrack_log_invalid" => {
                self.log_invalid = u8::try_from(parse_range(key, value, 0, 255)?)
                    .map_err(|_| bad(key, value, "out of range"))?;
                Ok(())
            }
            "nf_conntrack_events" => {
                self.events = u8::try_from(parse_range(key, value, 0, 2)?)
                    .map_err(|_| bad(key, value, "out of range"))?;
                Ok(())
            }
            "nf_conntrack_ftp.loose"
            | "nf_conntrack_ftp_loose"
            | "nf_conntrack_ftp/parameters/loose"
            | "/sys/module/nf_conntrack_ftp/parameters/loose" => {
                // a module parameter of type bool: 0/1, y/n
                self.ftp_loose = match value.trim() {
                    "1" | "y" | "Y" => true,
                    "0" | "n" | "N" => false,
                    _ => return Err(bad(key, value, "not a boolean (0/1, Y/N)")),
                };
                Ok(())
            }
            "nf_conntrack_count" | "nf_conntrack_expect_count" => {
                Err(ConfigError::ReadOnly { key: key.to_string() })
            }
            _ => Err(ConfigError::UnknownKey(key.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_the_kernel_ones() {
        let c = Config::default();
        assert_eq!(c.tcp_timeout_established, 432_000);
        assert_eq!(c.tcp_timeout_syn_sent, 120);
        assert_eq!(c.udp_timeout, 30);
        assert_eq!(c.udp_timeout_stream, 120);
        assert_eq!(c.generic_timeout, 600);
        assert_eq!(c.max, 262_144);
        assert!(c.tcp_loose && !c.tcp_be_liberal && c.checksum && !c.acct);
    }

    #[test]
    fn all_key_spellings_are_accepted() {
        let mut c = Config::default();
        c.set("net.netfilter.nf_conntrack_tcp_timeout_established", "100").unwrap();
        assert_eq!(c.tcp_timeout_established, 100);
        c.set("nf_conntrack_tcp_timeout_established", "200").unwrap();
        assert_eq!(c.tcp_timeout_established, 200);
        c.set("net/netfilter/nf_conntrack_tcp_timeout_established", "300").unwrap();
        assert_eq!(c.tcp_timeout_established, 300);
        c.set("net.nf_conntrack_max", "4").unwrap();
        assert_eq!(c.max, 4);
        c.set("nf_conntrack_max", "0").unwrap();
        assert_eq!(c.max, 0);
        c.set("nf_conntrack_acct", "1").unwrap();
        assert!(c.acct);
    }

    #[test]
    fn every_tcp_and_sctp_sysctl_of_the_kernel_is_settable() {
        // Documentation/networking/nf_conntrack-sysctl.rst (6.18) and /proc/sys/net/netfilter
        let keys = [
            "nf_conntrack_tcp_be_liberal",
            "nf_conntrack_tcp_ignore_invalid_rst",
            "nf_conntrack_tcp_loose",
            "nf_conntrack_tcp_max_retrans",
            "nf_conntrack_tcp_timeout_close",
            "nf_conntrack_tcp_timeout_close_wait",
            "nf_conntrack_tcp_timeout_established",
            "nf_conntrack_tcp_timeout_fin_wait",
            "nf_conntrack_tcp_timeout_last_ack",
            "nf_conntrack_tcp_timeout_max_retrans",
            "nf_conntrack_tcp_timeout_syn_recv",
            "nf_conntrack_tcp_timeout_syn_sent",
            "nf_conntrack_tcp_timeout_time_wait",
            "nf_conntrack_tcp_timeout_unacknowledged",
            "nf_conntrack_sctp_timeout_closed",
            "nf_conntrack_sctp_timeout_cookie_wait",
            "nf_conntrack_sctp_timeout_cookie_echoed",
            "nf_conntrack_sctp_timeout_established",
            "nf_conntrack_sctp_timeout_shutdown_sent",
            "nf_conntrack_sctp_timeout_shutdown_recd",
            "nf_conntrack_sctp_timeout_shutdown_ack_sent",
            "nf_conntrack_sctp_timeout_heartbeat_sent",
        ];
        let mut c = Config::default();
        for k in keys {
            c.set(&format!("net.netfilter.{k}"), "1").unwrap();
        }
        assert_eq!((c.sctp_timeout_established, c.tcp_timeout_close, c.tcp_max_retrans), (1, 1, 1));
        assert!(c.tcp_be_liberal && c.tcp_ignore_invalid_rst && c.tcp_loose);
        c.set("net.netfilter.nf_conntrack_max", "64").unwrap();
        assert_eq!(c.max, 64);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_rejected() {
        let mut c = Config::default();
        let e = c.set("nf_conntrack_bogus", "1").unwrap_err();
        assert!(e.to_string().contains("nf_conntrack_bogus"));
        assert!(matches!(c.set("nf_conntrack_tcp_loose", "2"), Err(ConfigError::BadValue { .. })));
        assert!(c.set("nf_conntrack_udp_timeout", "x").is_err());
        assert!(c.set("nf_conntrack_udp_timeout", "-1").is_err());
        assert!(c.set("nf_conntrack_udp_timeout", "99999999").is_err());
        assert!(c.set("nf_conntrack_buckets", "0").is_err());
        assert!(matches!(c.set("nf_conntrack_count", "1"), Err(ConfigError::ReadOnly { .. })));
        assert!(c.set("net.netfilter.nf_conntrack_ftp.loose", "2").is_err());
        assert_eq!(c, Config::default());
    }

    #[test]
    fn ftp_loose_module_parameter() {
        let mut c = Config::default();
        assert!(!c.ftp_loose);
        c.set("net.netfilter.nf_conntrack_ftp.loose", "1").unwrap();
        assert!(c.ftp_loose);
        c.set("/sys/module/nf_conntrack_ftp/parameters/loose", "N").unwrap();
        assert!(!c.ftp_loose);
        c.set("nf_conntrack_ftp_loose", "Y").unwrap();
        assert!(c.ftp_loose);
    }
}
