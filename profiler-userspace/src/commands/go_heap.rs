//! A Go program's own profiling as `record` and `serve` use it: the heap
//! profile (`--profile goheap`, `/debug/pprof/heap`), read from the
//! runtime's memory-profile buckets at the end of a recording or per
//! request (a snapshot, not an event stream), and the runtime's sampling
//! rates (`--go-rates`), set for a recording and put back however it ends.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
    rc::Rc,
};

use anyhow::Context as _;
use tracing::{info, warn};

use crate::{
    formats::{Format, pprof_heap::HeapPprof},
    go::{
        heap::{GoHeap, HeapProfile, HeapSample},
        rates::{GoRates, RatesGuard, RatesRequest, ticks_per_second},
    },
    session::unix_ns,
};

/// How the report and errors tell the user to turn heap sampling on.
pub const HOW_TO_SAMPLE: &str = "`profiler record --pid PID --go-rates heap=512K --profile goheap` \
     samples from the start of the recording and puts the rate back at its end";

/// The formats goheap is written in.
pub fn heap_format_ok(format: Format) -> bool {
    matches!(format, Format::Pprof | Format::Folded)
}

/// One file of the heap profile, opened before anything is attached (so an
/// unwritable path fails first) and removed again if nothing is written.
struct HeapFile {
    format: Format,
    path: PathBuf,
    file: Option<File>,
    created: bool,
    kept: bool,
}

impl HeapFile {
    fn open(format: Format, path: &Path) -> anyhow::Result<HeapFile> {
        if path == Path::new("-") {
            return Ok(HeapFile {
                format,
                path: path.to_owned(),
                file: None,
                created: false,
                kept: true,
            });
        }
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .with_context(|| {
                format!(
                    "cannot write the Go heap profile to {} (checked before attaching); choose a writable path with -o",
                    path.display()
                )
            })?;
        Ok(HeapFile {
            format,
            path: path.to_owned(),
            file: Some(file),
            created: !existed,
            kept: false,
        })
    }

    fn write(&mut self, heap: &HeapPprof<'_>, taken_unix_ns: i64) -> anyhow::Result<String> {
        self.kept = true;
        let write = |out: &mut dyn std::io::Write| -> std::io::Result<()> {
            let mut out = BufWriter::new(out);
            match self.format {
                Format::Folded => heap.write_folded(&mut out)?,
                _ => heap.write_pprof(taken_unix_ns, &mut out)?,
            }
            out.flush()
        };
        match self.file.take() {
            None => {
                write(&mut std::io::stdout().lock())
                    .context("cannot write the Go heap profile to stdout")?;
                Ok(format!("{} to stdout", self.format.name()))
            }
            Some(mut file) => {
                file.set_len(0)
                    .with_context(|| format!("cannot truncate {}", self.path.display()))?;
                write(&mut file).with_context(|| {
                    format!(
                        "cannot write the Go heap profile to {}",
                        self.path.display()
                    )
                })?;
                Ok(format!("{} ({})", self.path.display(), self.format.name()))
            }
        }
    }
}

impl Drop for HeapFile {
    fn drop(&mut self) {
        if !self.kept && self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The heap profile's files of one recording.
pub struct HeapOutputs {
    files: Vec<HeapFile>,
    /// Asked for through `all`: a program whose runtime records nothing is
    /// a note, not an error.
    optional: bool,
    /// Why the profile is left out (found when the recording started).
    skip: Option<String>,
}

/// The heap profile as read at the end of a recording.
pub struct HeapTaken {
    pid: u32,
    heap: GoHeap,
    profile: HeapProfile,
    samples: Vec<HeapSample>,
    taken_unix_ns: i64,
}

impl HeapOutputs {
    /// Opens every file; `optional` when asked for through `all`.
    pub fn open(outputs: &[(Format, PathBuf)], optional: bool) -> anyhow::Result<HeapOutputs> {
        let files = outputs
            .iter()
            .map(|(format, path)| HeapFile::open(*format, path))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(HeapOutputs {
            files,
            optional,
            skip: None,
        })
    }

    /// Whether the heap profile was asked for.
    pub fn wanted(&self) -> bool {
        !self.files.is_empty()
    }

    /// Whether the recording can end with a heap profile of `pid` (read
    /// once now): an error saying what to do when it cannot and was asked
    /// for by name; through `all`, a note for the end.
    pub fn check(&mut self, pid: u32) -> anyhow::Result<()> {
        if !self.wanted() {
            return Ok(());
        }
        match read_heap(pid) {
            Ok(_) => Ok(()),
            Err(err) if self.optional => {
                self.skip = Some(format!("{err:#}"));
                Ok(())
            }
            Err(err) => Err(err.context("--profile goheap")),
        }
    }

    /// Whether a missing heap profile is only a note (asked for through
    /// `all`).
    pub fn optional(&self) -> bool {
        self.optional
    }

    /// Reads the heap profile of `pid` now, or says why not.
    pub fn read(&self, pid: u32) -> Result<HeapTaken, String> {
        if let Some(skip) = &self.skip {
            return Err(skip.clone());
        }
        read_heap(pid).map_err(|err| format!("{err:#}"))
    }

    /// Writes `taken` to every file; the phrases say what was written.
    pub fn write(mut self, taken: &HeapTaken, process_name: &str) -> anyhow::Result<Vec<String>> {
        let executable = std::fs::read_link(format!("/proc/{}/exe", taken.pid))
            .ok()
            .map(|p| Rc::from(p.to_string_lossy().as_ref()));
        let heap = taken.pprof(process_name, executable);
        self.files
            .iter_mut()
            .map(|file| file.write(&heap, taken.taken_unix_ns))
            .collect()
    }
}

impl HeapTaken {
    fn pprof<'a>(&'a self, process_name: &'a str, executable: Option<Rc<str>>) -> HeapPprof<'a> {
        HeapPprof {
            pid: self.pid,
            process_name,
            executable,
            rate: self.profile.rate,
            go_version: self
                .heap
                .binary()
                .build
                .as_ref()
                .map(|b| b.go_version.as_str()),
            samples: &self.samples,
        }
    }

    /// The report's lines: totals, the rate, and the functions holding the
    /// most memory in use (the innermost frame of each record).
    pub fn report(&self, top: usize) -> String {
        use std::fmt::Write as _;
        let total = self.profile.total();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Go heap profile (as of the last GC, MemProfileRate {}): {} in use in {} objects; {} allocated in {} objects; {} records",
            self.profile.rate,
            bytes(total.inuse_space),
            total.inuse_objects,
            bytes(total.alloc_space),
            total.alloc_objects,
            self.profile.records.len()
        );
        let mut by_function: Vec<(Rc<str>, i64)> = Vec::new();
        for sample in &self.samples {
            let Some(leaf) = sample.frames.iter().rev().find(|f| f.is_user_code()) else {
                continue;
            };
            match by_function.iter_mut().find(|(name, _)| *name == leaf.name) {
                Some((_, v)) => *v = v.saturating_add(sample.values.inuse_space),
                None => by_function.push((leaf.name.clone(), sample.values.inuse_space)),
            }
        }
        by_function.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let shown: Vec<_> = by_function
            .iter()
            .filter(|(_, v)| *v > 0)
            .take(top)
            .collect();
        if !shown.is_empty() {
            let _ = writeln!(out, "  in use by allocating function:");
            for (name, value) in shown {
                let share = 100.0 * *value as f64 / total.inuse_space.max(1) as f64;
                let _ = writeln!(out, "    {:>10}  {share:5.1}%  {name}", bytes(*value));
            }
        }
        out
    }
}

/// `n` bytes for people.
fn bytes(n: i64) -> String {
    let f = n as f64;
    if f.abs() >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", f / (1u64 << 30) as f64)
    } else if f.abs() >= (1 << 20) as f64 {
        format!("{:.2} MiB", f / (1 << 20) as f64)
    } else if f.abs() >= 1024.0 {
        format!("{:.1} KiB", f / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Reads the heap profile of Go process `pid`; an error (a sentence saying
/// what to do) when the runtime records nothing.
fn read_heap(pid: u32) -> anyhow::Result<HeapTaken> {
    let heap = GoHeap::for_process(pid)?;
    let profile = heap
        .read()
        .with_context(|| format!("cannot read Go's heap profile of process {pid}"))?;
    if let Some(disabled) = profile.disabled {
        anyhow::bail!("{}", disabled.explain(HOW_TO_SAMPLE));
    }
    let executable: Option<Rc<str>> = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| Rc::from(p.to_string_lossy().as_ref()));
    let samples = heap.samples(&profile, executable.as_ref());
    Ok(HeapTaken {
        pid,
        heap,
        profile,
        samples,
        taken_unix_ns: unix_ns(),
    })
}

/// `/debug/pprof/heap` of `serve`: the heap profile of `pid` now, gzipped
/// pprof; `Err` is the sentence to answer with.
pub fn heap_pprof_now(pid: u32) -> Result<Vec<u8>, String> {
    let taken = read_heap(pid).map_err(|err| format!("{err:#}"))?;
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| format!("pid-{pid}"));
    let executable = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| Rc::from(p.to_string_lossy().as_ref()));
    let mut bytes = Vec::new();
    taken
        .pprof(&name, executable)
        .write_pprof(taken.taken_unix_ns, &mut bytes)
        .map_err(|err| format!("cannot build the heap profile: {err}"))?;
    Ok(bytes)
}

/// Sets Go's profiling rates in process `pid` as `request` asks, warning
/// that this changes the program; the guard puts the old ones back.
pub fn set_rates(pid: u32, request: RatesRequest) -> anyhow::Result<RatesGuard> {
    let rates = GoRates::for_process(pid)?;
    let now = rates
        .read()
        .with_context(|| format!("cannot read Go's profiling rates of process {pid}"))?;
    let ticks = if request.block_ns.is_some_and(|ns| ns > 1) {
        ticks_per_second()
    } else {
        1e9
    };
    let wanted = request.applied_to(now, ticks);
    let guard = rates
        .set_until_dropped(wanted)
        .with_context(|| format!("cannot set Go's profiling rates of process {pid}"))?;
    warn!(
        "--go-rates changes what process {pid} does until the recording ends: its runtime now samples with {wanted} (was {now}), spending time and memory on it, and its own profiles show the samples; the old rates are put back at the end (not if the profiler is killed with SIGKILL)"
    );
    Ok(guard)
}

/// Puts the rates back, saying so (or why not).
pub fn restore_rates(guard: RatesGuard) {
    let pid = guard.rates().pid();
    let before = guard.before();
    match guard.restore() {
        Ok(back) if back == before => {
            info!("Go's profiling rates of process {pid} put back: {back}")
        }
        Ok(back) => warn!(
            "Go's profiling rates of process {pid} put back where the program had not changed them since: {back} (was {before} before the recording)"
        ),
        Err(err) => {
            warn!("cannot put back Go's profiling rates of process {pid} ({before}): {err}")
        }
    }
}
