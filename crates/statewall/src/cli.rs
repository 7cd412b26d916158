//! Command-line arguments ("low" args: what the user typed; `load` turns them into a resolved setup).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "statewall",
    version,
    about = "A netfilter-compatible stateful firewall engine: replay captures \
through your iptables ruleset exactly as the Linux kernel would."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a ruleset over captures: per-packet verdicts, rule counters and the conntrack table.
    ///
    /// Exit status: 0 done, 2 bad usage or input (nothing written), 3 done on partial input (a capture
    /// was truncated or corrupt; results cover the packets read before the defect).
    Replay(ReplayArgs),
    /// Run two rulesets over the same captures and show what changes.
    Compare(CompareArgs),
    /// Write synthetic traffic to a pcap file.
    Synth(SynthArgs),
    /// Check statewall against the running Linux kernel: send the captures through real netfilter in private
    /// network namespaces, replay them through statewall with the same timing, and compare packet fates,
    /// rule counters and conntrack tables.
    ///
    /// Needs root. Exit status: 0 everything agrees, 1 a capture disagrees (or is inconclusive), 2 usage or
    /// environment errors.
    Verify(crate::verify::VerifyArgs),
    /// Audit the conntrack application helpers (FTP, TFTP, ...): every expectation the captures create, the
    /// rule that assigned each helper, the packets that were RELATED only thanks to an expectation, helper
    /// drops, and warnings for risky patterns.
    ///
    /// Exit status: 0 done, 2 bad usage or input, 3 done on partial input (a truncated or corrupt capture).
    Helpers(HelpersArgs),
    /// Time the engine alone (decode + conntrack + rules + verdict) on a synthetic workload or on captures
    /// loaded fully into memory first, pinned to one core per shard: Mpps, ns/packet, new connections/s,
    /// peak table size and memory per tracked connection, without and with the ruleset.
    Bench(crate::bench::BenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct HostArgs {
    /// The IPv6 ruleset, in ip6tables-save format. Without it IPv6 packets are counted but not filtered.
    #[arg(long, value_name = "FILE")]
    pub rules6: Option<PathBuf>,
    /// An address of the firewall host (repeatable), on a single interface `eth0`. ADDR or ADDR/LEN.
    #[arg(long = "local", value_name = "ADDR")]
    pub local: Vec<String>,
    /// A TOML host description: interfaces, addresses, routes (see docs/HOST.md).
    #[arg(long = "host", value_name = "FILE", conflicts_with = "local")]
    pub host: Option<PathBuf>,
    /// A sysctl, e.g. net.netfilter.nf_conntrack_tcp_loose=0 (repeatable). Every net.netfilter.nf_conntrack_*
    /// key, plus net.ipv4.ip_forward (default 0: packets for other hosts die after PREROUTING).
    #[arg(long = "sysctl", value_name = "KEY=VALUE")]
    pub sysctl: Vec<String>,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    Proc,
    Conntrack,
    Extended,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsFormat {
    Conntrack,
    Proc,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The ruleset, in iptables-save format.
    #[arg(long, value_name = "FILE")]
    pub rules: PathBuf,
    #[command(flatten)]
    pub host: HostArgs,
    /// Write the rule counters, in `iptables-save -c` format.
    #[arg(long, value_name = "FILE")]
    pub counters: Option<PathBuf>,
    /// Write the IPv6 rule counters, in `ip6tables-save -c` format (with --rules6).
    #[arg(long, value_name = "FILE")]
    pub counters6: Option<PathBuf>,
    /// Write the final conntrack table, in /proc/net/nf_conntrack format (see --conntrack-format).
    #[arg(long, value_name = "FILE")]
    pub conntrack: Option<PathBuf>,
    /// Write one JSON object per packet (JSON Lines).
    #[arg(long, value_name = "FILE")]
    pub verdicts: Option<PathBuf>,
    /// Format of --conntrack: proc (/proc/net/nf_conntrack), conntrack (`conntrack -L`), extended
    /// (`conntrack -L -o extended`).
    #[arg(long, value_enum, default_value = "proc")]
    pub conntrack_format: TableFormat,
    /// Write conntrack statistics at the end: `conntrack -S` lines, or /proc/net/stat/nf_conntrack with
    /// --stats-format proc.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "conntrack")]
    pub stats_format: StatsFormat,
    /// Write conntrack events (NEW, UPDATE, DESTROY) as `conntrack -E -o timestamp` prints them.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Write expectation events (NEW, DESTROY) as `conntrack -E expect -o timestamp` prints them.
    #[arg(long, value_name = "FILE")]
    pub expect_events: Option<PathBuf>,
    /// Write, for every packet, the rules it traversed (like the TRACE target) and conntrack's verdict with its
    /// reason; the same list goes into --verdicts as `trace`.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Summary format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Engines (shards) running in parallel, the packets split by a symmetric flow hash; the results are
    /// those of one engine (a ruleset with -m limit is refused; a warning says when the table filled up).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Walk every table for every packet. By default an ESTABLISHED packet whose flow direction already
    /// took a walk that depended only on its flow skips the tables after conntrack and grows the same
    /// counters; the results are identical either way (this is for checking that, and for measuring).
    #[arg(long)]
    pub no_fast_path: bool,
    /// pcap or pcapng files, replayed in order as one capture.
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The two rulesets: `--rules A --rules B`.
    #[arg(long, value_name = "FILE", num_args = 1, required = true)]
    pub rules: Vec<PathBuf>,
    #[command(flatten)]
    pub host: HostArgs,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// How many changed packets to list individually (the rest are summarised).
    #[arg(long, default_value_t = 50)]
    pub show: usize,
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct HelpersArgs {
    /// The ruleset, in iptables-save format.
    #[arg(long, value_name = "FILE")]
    pub rules: PathBuf,
    #[command(flatten)]
    pub host: HostArgs,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// pcap or pcapng files, replayed in order as one capture.
    #[arg(required = true, value_name = "CAPTURE")]
    pub captures: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Scenario: seed (the p2p example), flows (benchmark traffic), random / random6 / random-mix
    /// (kernel-agreement fodder: IPv4, IPv6, fragments+GRE+SCTP+generic+UDP-Lite), or case:NAME (one behaviour
    /// each: rst-window, rst-close-wait, retrans-acked, stale-synack, syn-live-tuple, wscale-255, all-flags,
    /// midstream, icmp-unknown, icmp6-ext-ptb, overlap-frags, syn-flood), or flood (a SYN flood of --flows new
    /// flows per second, default 50000, for 60 s while 1000 established flows keep sending).
    #[arg(long)]
    pub scenario: String,
    #[arg(long, value_name = "FILE.pcap")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of flows (scenario flows); new flows per second (scenario flood).
    #[arg(long)]
    pub flows: Option<usize>,
    /// Scenario flows: the shape of `statewall bench`'s workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,
}

/// The synthetic benchmark workload's shape (`statewall bench`, `statewall synth --scenario flows`).
#[derive(Args, Debug, Clone)]
pub struct WorkloadArgs {
    /// Packets per flow (TCP: 3WHS, data, and a close when >= 6).
    #[arg(long, default_value_t = 8)]
    pub packets_per_flow: usize,
    /// Protocols, used round-robin by flow (tcp, udp).
    #[arg(long, default_value = "tcp,udp", value_delimiter = ',')]
    pub mix: Vec<synth::workload::Proto>,
    /// New flows per simulated second.
    #[arg(long, default_value_t = 1_000_000)]
    pub rate: u64,
    /// Flows live at once (default: all).
    #[arg(long)]
    pub concurrency: Option<usize>,
}

impl WorkloadArgs {
    pub fn spec(&self, flows: usize, seed: u64) -> synth::workload::WorkloadSpec {
        synth::workload::WorkloadSpec {
            flows,
            packets_per_flow: self.packets_per_flow,
            mix: self.mix.clone(),
            concurrency: self.concurrency,
            rate: self.rate,
            seed,
            start: synth::DEFAULT_START,
        }
    }
}
