//! `statewall`: replay captures through a netfilter-exact firewall model.
//!
//! The binary owns everything that touches the OS (files, terminal, wall clock for the packets/s figure);
//! the engine it drives is sans-IO.
#![forbid(unsafe_code)]

mod bench;
mod cli;
mod compare;
mod helpers;
mod load;
mod replay;
mod report;
mod shard;
mod verify;

use std::process::ExitCode;

use clap::Parser;

/// Exit status: 0 ok, 1 (compare: the rulesets differ is NOT an error; reserved), 2 usage/input errors,
/// 3 completed on partial input (a truncated or corrupt capture).
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_PARTIAL: u8 = 3;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Replay(args) => replay::run(&args),
        cli::Command::Compare(args) => compare::run(&args),
        cli::Command::Synth(args) => run_synth(&args),
        cli::Command::Verify(args) => verify::run(&args),
        cli::Command::Helpers(args) => helpers::run(&args),
        cli::Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(report) => {
            eprintln!("{report:?}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run_synth(args: &cli::SynthArgs) -> miette::Result<u8> {
    if args.scenario == "flows" {
        // The workload `statewall bench` times, with the same options.
        let spec = args.workload.spec(args.flows.unwrap_or(synth::DEFAULT_FLOWS), args.seed);
        let frames = synth::workload::workload(&spec).map_err(|e| miette::miette!("synth: {e}"))?;
        let file = std::fs::File::create(&args.out)
            .map_err(|e| miette::miette!("cannot create {}: {e}", args.out.display()))?;
        let mut w = std::io::BufWriter::new(file);
        frames.write_pcap(&mut w).map_err(|e| miette::miette!("writing {}: {e}", args.out.display()))?;
        use std::io::Write;
        w.flush().map_err(|e| miette::miette!("writing {}: {e}", args.out.display()))?;
        eprintln!("wrote {} packets to {}", frames.len(), args.out.display());
        return Ok(0);
    }
    let spec = synth::ScenarioSpec {
        name: args.scenario.clone(),
        seed: args.seed,
        flows: args.flows,
        start: synth::DEFAULT_START,
    };
    // Streamed: the flood scenario is millions of frames, written as they are generated.
    let frames = synth::stream(&spec).map_err(|e| miette::miette!("synth: {e}"))?;
    let file = std::fs::File::create(&args.out)
        .map_err(|e| miette::miette!("cannot create {}: {e}", args.out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let n = synth::write_pcap_stream(frames, &mut w)
        .map_err(|e| miette::miette!("writing {}: {e}", args.out.display()))?;
    use std::io::Write;
    w.flush().map_err(|e| miette::miette!("writing {}: {e}", args.out.display()))?;
    eprintln!("wrote {n} packets to {}", args.out.display());
    Ok(0)
}
