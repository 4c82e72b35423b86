//! `profiler record`: the path of one recording from start to file. Check
//! the outputs, find or start the target, attach, drain periodically until
//! the duration, a signal or the target's exit, then detach, drain the rest,
//! symbolize, write one profile per kind and print the report.

use std::{path::PathBuf, time::Instant};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

use super::{
    diff::{self, CompareSettings},
    go_heap,
    output::Output,
    report::Report,
};
use crate::{
    attach::{self, LoadConfig},
    formats::{Format, folded::FoldedOptions},
    go::rates::RatesRequest,
    model::{LoadedProfile, Profile, ProfileKind, TargetSpec, UnwindMode},
    session::{Session, Ticks, unix_ns},
    target::Targets,
};

/// The checked settings of one `profiler record`.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    pub target: TargetSpec,
    pub duration: Option<std::time::Duration>,
    pub frequency: u64,
    /// The kinds asked for, each once, in [`ProfileKind::ALL`] order.
    pub kinds: Vec<ProfileKind>,
    pub min_block: std::time::Duration,
    /// Every file to write: which kind, in which format, where.
    pub outputs: Vec<OutputSpec>,
    pub per_thread: bool,
    /// How many functions the report lists.
    pub top: usize,
    pub unwind: UnwindMode,
    pub max_depth: usize,
    /// `--profile goheap`: the Go heap profile's files (empty: not asked).
    pub go_heap: Vec<(Format, PathBuf)>,
    /// goheap came with `all`: skipped with a note when it cannot be had.
    pub go_heap_optional: bool,
    /// `--go-rates`: Go's own sampling rates, set for the recording.
    pub go_rates: Option<RatesRequest>,
    /// `--compare BASE`: compare the recording with a baseline at the end.
    pub compare: Option<RecordCompare>,
}

/// `record --compare`: the baseline, read before recording, and the kind
/// recorded that is compared with it.
#[derive(Debug, Clone)]
pub struct RecordCompare {
    pub base: LoadedProfile,
    pub kind: ProfileKind,
    pub settings: CompareSettings,
}

/// One file `record` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub kind: ProfileKind,
    pub format: Format,
    pub path: PathBuf,
}

/// Why the recording stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Duration,
    Interrupted,
    Terminated,
    TargetExited,
}

impl Ending {
    fn describe(self) -> &'static str {
        match self {
            Ending::Duration => "duration reached",
            Ending::Interrupted => "stopped by Ctrl-C",
            Ending::Terminated => "stopped by SIGTERM",
            Ending::TargetExited => "the target exited",
        }
    }
}

/// The one Go process the Go heap profile and `--go-rates` read.
fn go_pid(session: &Session) -> anyhow::Result<u32> {
    session.pid().ok_or_else(|| {
        anyhow::anyhow!("the Go heap profile and --go-rates read one Go process: give --pid PID")
    })
}

/// Runs one recording.
pub fn run(config: RecordConfig) -> anyhow::Result<()> {
    attach::preflight()?;
    let outputs = config
        .outputs
        .iter()
        .map(|spec| Output::open(&spec.path))
        .collect::<anyhow::Result<Vec<Output>>>()?;
    let mut heap_outputs = go_heap::HeapOutputs::open(&config.go_heap, config.go_heap_optional)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _runtime_context = runtime.enter();
    let targets = Targets::open(&config.target)?;
    let load = LoadConfig {
        min_block: config.min_block,
        ..LoadConfig::listed(
            config.kinds.clone(),
            config.frequency,
            config.unwind,
            config.max_depth,
        )
    };
    let mut session = Session::start(targets, &load, config.max_depth)?;
    let started = Instant::now();
    let start_unix_ns = unix_ns();
    let mut kinds: Vec<&str> = config.kinds.iter().map(|k| k.name()).collect();
    if heap_outputs.wanted() {
        kinds.push("goheap");
    }
    let how_long = match (config.duration, &config.target) {
        (Some(d), _) => format!(" for {:.1} s", d.as_secs_f64()),
        (None, TargetSpec::Command(_)) => " until the command exits".to_owned(),
        (None, TargetSpec::Pids { .. }) => " until it exits".to_owned(),
        (None, _) => String::new(),
    };
    info!(
        "recording {} of {}{how_long}; Ctrl-C to stop",
        kinds.join(", "),
        session.describe()
    );

    // Handled from here on, so rates set below are put back on either.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    // Put back by `restore_rates` below, or by the guard's drop on an error.
    let rates = match config.go_rates {
        Some(request) => Some(go_heap::set_rates(go_pid(&session)?, request)?),
        None => None,
    };
    if heap_outputs.wanted() {
        heap_outputs.check(go_pid(&session)?)?;
    }
    let following = matches!(config.target, TargetSpec::Pids { children: true, .. });
    let ending = runtime.block_on(async {
        let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
        let mut ticks = Ticks::new();
        loop {
            tokio::select! {
                () = crate::session::until(deadline) => break Ok::<_, anyhow::Error>(Ending::Duration),
                _ = sigint.recv() => break Ok(Ending::Interrupted),
                _ = sigterm.recv() => break Ok(Ending::Terminated),
                () = session.target_exited(), if !following => break Ok(Ending::TargetExited),
                tick = ticks.next() => {
                    session.on_tick(tick)?;
                    // `--children`: the given processes and every
                    // descendant are gone.
                    if tick == crate::session::Tick::Drain
                        && following
                        && !session.any_alive()
                    {
                        break Ok(Ending::TargetExited);
                    }
                }
            }
        }
    })?;
    let duration = started.elapsed();
    // The heap as of now (before the rates go back: it is scaled by the
    // rate its samples were taken at), then the rates.
    let heap = match (heap_outputs.wanted(), ending) {
        (false, _) => None,
        (true, Ending::TargetExited) => Some(Err(
            "the target exited before its Go heap profile could be read".to_owned(),
        )),
        (true, _) => Some(
            go_pid(&session)
                .map_err(|e| e.to_string())
                .and_then(|pid| heap_outputs.read(pid)),
        ),
    };
    if let Some(rates) = rates {
        go_heap::restore_rates(rates);
    }

    // Waits still under way count with the time waited so far; then stop
    // sampling, and read everything left in both generations.
    if ending != Ending::TargetExited {
        session.note_waits_in_progress();
        session.read_cpu_time();
    }
    session.detach_and_drain()?;
    let target_exit = session.finish_target(ending != Ending::TargetExited);
    let target_exit = match (ending, target_exit) {
        (Ending::TargetExited, Some(exit)) => Some(exit.to_string()),
        (Ending::TargetExited, None) => Some("exited".to_owned()),
        (_, Some(exit)) if !session.is_spawned() => Some(exit.to_string()),
        _ => None,
    };

    let snapshot = session.snapshot();
    let profiles: Vec<Profile> = config
        .kinds
        .iter()
        .map(|kind| snapshot.profile(*kind, duration))
        .collect();
    let options = FoldedOptions {
        per_thread: config.per_thread,
    };
    let mut written: Vec<(&Profile, String)> = Vec::with_capacity(profiles.len());
    for (spec, output) in config.outputs.iter().zip(outputs) {
        let Some(profile) = profiles.iter().find(|p| p.kind == spec.kind) else {
            continue;
        };
        let what = output.write(profile, spec.format, options, start_unix_ns)?;
        match written.iter_mut().find(|(p, _)| p.kind == spec.kind) {
            Some((_, all)) => {
                all.push_str("; ");
                all.push_str(&what);
            }
            None => written.push((profile, what)),
        }
    }
    let report = Report {
        snapshot: &snapshot,
        profiles: written,
        ended: ending.describe().to_owned(),
        target_exit,
        target_cpu: session.target_cpu(),
        min_block: config.min_block,
        top: config.top,
        go_build: session.go_build(),
    };
    eprint!("{}", report.render());
    match heap {
        Some(Ok(taken)) => {
            let written = heap_outputs.write(&taken, &session.name())?;
            eprint!("{}", taken.report(config.top));
            eprintln!("  written to {}", written.join("; "));
        }
        Some(Err(note)) if heap_outputs.optional() => {
            eprintln!("Go heap profile left out: {note}");
        }
        Some(Err(why)) => anyhow::bail!("--profile goheap: {why}"),
        None => {}
    }
    if let Some(compare) = &config.compare
        && let Some(profile) = profiles.iter().find(|p| p.kind == compare.kind)
    {
        // On stderr with the report: stdout may be the profile (`-o -`).
        eprintln!(
            "\nCompared with {} ({} profile):",
            compare.base.origin,
            compare.kind.name()
        );
        let recorded = diff::recorded(profile)?;
        let tripped = diff::compare(
            &compare.base,
            &recorded,
            &compare.settings,
            &mut std::io::stderr().lock(),
        )?;
        if tripped > 0 {
            return Err(diff::GatesTripped(tripped).into());
        }
    }
    Ok(())
}
