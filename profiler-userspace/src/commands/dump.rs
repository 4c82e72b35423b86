//! `profiler dump`: what every thread of a process is doing right now, read
//! from outside without stopping it: each thread's name and state, the
//! system call it is in (for a futex wait, the lock, named as the futex
//! profile names it) and its user stack with file:line; for a Go program
//! also every goroutine, in the text of Go's own
//! `/debug/pprof/goroutine?debug=2`. Printed as text on stdout; `-o` also
//! writes it as a profile: of one sample per thread (folded, SVG, pprof
//! `threads/count`, speedscope), or for a Go program Go's goroutine
//! profile (`goroutine/count`).

use std::{fmt::Write as _, path::PathBuf, rc::Rc, time::Duration};

use anyhow::{Context as _, bail};

use super::output::Output;
use crate::{
    formats::{Format, folded::FoldedOptions},
    go::{
        self,
        goroutines::{GoRuntime, GoroutineError},
        listing,
    },
    inspect::{self, Activity, ThreadDump},
    model::{Frame, FrameKind, Profile, ProfileKind, Sample},
    procfs,
    session::unix_ns,
    symbolize::Symbols,
    unwind::Unwinder,
};

/// The checked settings of one `profiler dump`.
#[derive(Debug, Clone)]
pub struct DumpConfig {
    pub pid: u32,
    /// Files to write besides the text on stdout, each in its format.
    pub outputs: Vec<(Format, PathBuf)>,
}

/// Deepest stack a dump unwinds.
const MAX_DEPTH: usize = 256;

/// Dumps the threads of one process.
pub fn run(config: DumpConfig) -> anyhow::Result<()> {
    let pid = config.pid;
    let outputs = config
        .outputs
        .iter()
        .map(|(format, path)| Ok((*format, Output::open(path)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let name = procfs::read_comm(pid, pid).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "no process with PID {pid} exists; check the id with `ps -p {pid}` or `pgrep NAME`"
        ),
        _ => anyhow::Error::new(err).context(format!("cannot read /proc/{pid}/comm")),
    })?;
    if procfs::is_kernel_thread(pid) {
        bail!("PID {pid} ({name}) is a kernel thread; profiler dumps user processes");
    }
    let taken_unix_ns = unix_ns();
    let mappings = procfs::read_mappings(pid);
    let mut unwinder = Unwinder::new(pid, MAX_DEPTH);
    unwinder.refresh_modules(&mappings);
    let threads = inspect::read_threads(pid, &mut unwinder).map_err(|err| match err.kind() {
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot read the memory of PID {pid}: permission denied; run profiler as root (or as the process's user with ptrace allowed)"
        ),
        _ => anyhow::Error::new(err).context(format!("cannot read the threads of PID {pid}")),
    })?;

    let mut symbols = Symbols::new();
    symbols.cache_mappings(pid, &mappings);
    let addrs: Vec<(u32, u64)> = threads
        .iter()
        .flat_map(|t| t.user.lookup_addrs())
        .map(|a| (pid, a))
        .collect();
    let alive = procfs::is_alive(pid);
    symbols.resolve(addrs, Vec::new(), |_| alive);
    symbols.name_locks(threads.iter().filter_map(lock_of).map(|l| (pid, l)));

    let profile = Profile {
        kind: ProfileKind::Threads,
        pid,
        process_name: name.clone(),
        frequency: 0,
        duration: Duration::ZERO,
        samples: threads.iter().map(|t| sample(pid, t, &symbols)).collect(),
        executable: std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| Rc::from(p.to_string_lossy().as_ref())),
        mappings: symbols.code_mappings(pid),
        per_process: false,
    };
    print!("{}", render(pid, &name, &profile));
    let (profile, per_thread) = match goroutines(pid, &name, profile.executable.as_deref()) {
        Some(goroutines) => (goroutines, false),
        None => (profile, true),
    };
    for (format, output) in outputs {
        let what = output
            .write(
                &profile,
                format,
                FoldedOptions { per_thread },
                taken_unix_ns,
            )
            .context("cannot write the dump")?;
        eprintln!("profiler: wrote {what}");
    }
    Ok(())
}

/// For a Go program, prints its goroutines as Go's `debug=2` dump does and
/// returns its goroutine profile; `None` for any other program, or when
/// its goroutines cannot be read (which is said on stderr).
fn goroutines(pid: u32, name: &str, executable: Option<&str>) -> Option<Profile> {
    if !go::is_go_executable(std::path::Path::new(&format!("/proc/{pid}/exe"))) {
        return None;
    }
    let snapshot = GoRuntime::for_process(pid).and_then(|runtime| {
        let snapshot = runtime
            .snapshot()
            .map_err(|source| GoroutineError::Process { pid, source })?;
        Ok((runtime, snapshot))
    });
    let (runtime, snapshot) = match snapshot {
        Ok(read) => read,
        Err(err) => {
            eprintln!("profiler: the goroutines of PID {pid} were not read: {err}");
            return None;
        }
    };
    let shown = listing::program_goroutines(&snapshot).count();
    let runtime_own = snapshot.goroutines.len() - shown;
    let build = runtime.binary().build.as_ref().map_or_else(
        || format!("Go {}.{}", runtime.version().0, runtime.version().1),
        |b| b.summary(),
    );
    println!(
        "\ngoroutines: {shown} ({build}; {runtime_own} of the runtime's own not shown; {} changed while read and were skipped)\n",
        snapshot.skipped
    );
    print!("{}", listing::debug2(&runtime, &snapshot));
    Some(listing::profile(&runtime, &snapshot, name, executable))
}

fn lock_of(thread: &ThreadDump) -> Option<u64> {
    match thread.activity {
        Activity::Syscall { lock, .. } => lock,
        _ => None,
    }
}

/// What a thread is doing, as one phrase.
fn doing(pid: u32, thread: &ThreadDump, symbols: &Symbols) -> String {
    match &thread.activity {
        Activity::Running => "running".to_owned(),
        Activity::Blocked => "blocked outside a system call".to_owned(),
        Activity::Syscall {
            lock: Some(lock), ..
        } => format!("futex wait on {}", symbols.lock_name(pid, *lock)),
        Activity::Syscall { name, .. } => format!("in {name}"),
        Activity::Unreadable(why) => format!("unreadable: {why}"),
    }
}

/// One thread as a sample: what it does as the first frame, then its stack.
fn sample(pid: u32, thread: &ThreadDump, symbols: &Symbols) -> Sample {
    let mut frames = vec![Frame::marker(format!("[{}]", doing(pid, thread, symbols)))];
    frames.extend(symbols.frames(pid, &thread.user, true));
    Sample {
        pid,
        tid: thread.tid,
        thread_name: thread.name.as_str().into(),
        frames,
        value: 1,
        count: 1,
        lock: lock_of(thread).map(|l| symbols.lock_name(pid, l)),
        state: Some(procfs::state_name(thread.state)),
        ..Sample::default()
    }
}

/// The dump as text: a block per thread, its stack innermost first.
fn render(pid: u32, name: &str, profile: &Profile) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "PID {pid} ({name}): {} threads", profile.samples.len());
    for sample in &profile.samples {
        let (doing, stack) = sample.frames.split_first().map_or(("", &[][..]), |(d, s)| {
            let name: &str = &d.name;
            let doing = name.strip_prefix('[').and_then(|n| n.strip_suffix(']'));
            (doing.unwrap_or(name), s)
        });
        let _ = writeln!(
            out,
            "\nthread {} \"{}\" ({}): {doing}",
            sample.tid,
            sample.thread_name,
            sample.state.unwrap_or("?")
        );
        for frame in stack.iter().rev() {
            let _ = write!(out, "    {}", frame.name);
            match (&frame.file, frame.line, &frame.module) {
                (Some(file), Some(line), _) => {
                    let _ = write!(out, "  {file}:{line}");
                }
                (_, _, Some(module)) if frame.kind != FrameKind::Marker => {
                    let _ = write!(out, "  ({module})");
                }
                _ => {}
            }
            if frame.kind == FrameKind::Inlined {
                let _ = write!(out, "  [inlined]");
            }
            let _ = writeln!(out);
        }
    }
    out
}
