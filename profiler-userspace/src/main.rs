//! The `profiler` binary: parses the command line, runs the command, prints
//! the whole error chain once and maps it to an exit code.
//!
//! A sample's path, module by module: `cli` (what to do) -> `target` (the
//! process) -> `attach` (programs in the kernel) -> `collect` (maps drained
//! into unique stacks) -> `symbolize` (addresses to frames) -> `profile` (the
//! model) -> `export` (files) and `report` (stderr); `session` keeps one
//! target attached, `record` drives it to files and `server` serves it over
//! HTTP (metrics, health, pprof).

mod attach;
mod cli;
mod collect;
mod export;
mod profile;
mod record;
mod report;
mod server;
mod session;
mod symbolize;
mod target;
mod unwind;

use std::process::ExitCode;

use clap::Parser as _;

/// Exit code for bad input (the same as clap's usage errors).
const EXIT_USAGE: u8 = 2;
/// Exit code for everything else that went wrong.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    let outcome = match cli.command {
        cli::Command::Record(args) => args.into_config().map(record::run),
        cli::Command::Serve(args) => args.into_config().map(server::run),
    };
    match outcome {
        Err(err) => {
            eprintln!("profiler: error: {err:#}");
            ExitCode::from(EXIT_USAGE)
        }
        Ok(Ok(())) => ExitCode::SUCCESS,
        // `-o - | head`: the reader left; that is not an error.
        Ok(Err(err)) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Ok(Err(err)) => {
            eprintln!("profiler: error: {err:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "profiler=info",
        1 => "profiler=debug",
        _ => "profiler=trace,aya=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}
