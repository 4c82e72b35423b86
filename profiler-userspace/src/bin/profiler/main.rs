//! The `profiler` binary, thin over the library: parses the command line
//! (`args`), runs the command, prints the whole error chain once and maps
//! it to an exit code.

mod args;

use std::process::ExitCode;

use clap::Parser as _;

/// Exit code for bad input (the same as clap's usage errors).
const EXIT_USAGE: u8 = 2;
/// Exit code for everything else that went wrong.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_logging(cli.verbose);
    let outcome = match cli.command {
        // Its own statuses: 1 when a gate trips, 2 for any error (a file
        // that cannot be read or two profiles that cannot be compared).
        args::Command::Diff(args) => {
            return match args.into_config().and_then(profiler::commands::diff::run) {
                Ok(false) => ExitCode::SUCCESS,
                Ok(true) => ExitCode::from(EXIT_FAILURE),
                Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("profiler: error: {err:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
        args::Command::Record(args) => (*args).into_config().map(profiler::commands::record::run),
        args::Command::Serve(args) => args.into_config().map(profiler::commands::serve::run),
        args::Command::Dump(args) => args.into_config().map(profiler::commands::dump::run),
        args::Command::Top(args) => args.into_config().map(profiler::commands::top::run),
        args::Command::Goroutines(args) => {
            args.into_config().map(profiler::commands::goroutines::run)
        }
    };
    match outcome {
        Err(err) => {
            eprintln!("profiler: error: {err:#}");
            ExitCode::from(EXIT_USAGE)
        }
        Ok(Ok(())) => ExitCode::SUCCESS,
        // `-o - | head`: the reader left; that is not an error.
        Ok(Err(err)) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        // `record --compare`: the comparison was printed, the gates said
        // which tripped.
        Ok(Err(err))
            if err
                .downcast_ref::<profiler::commands::diff::GatesTripped>()
                .is_some() =>
        {
            eprintln!("profiler: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
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
