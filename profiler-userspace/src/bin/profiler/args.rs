//! The command line: flags parsed once by clap and checked into the plain
//! configs the library's commands read ([`RecordConfig`], [`ServeConfig`]).

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use profiler::{
    commands::{
        diff::{CompareSettings, DiffConfig},
        dump::DumpConfig,
        goroutines::GoroutinesConfig,
        record::{OutputSpec, RecordCompare, RecordConfig},
        serve::{DEFAULT_LISTEN, ServeConfig},
        top::TopConfig,
    },
    compare::{DiffOptions, Gate},
    formats::Format,
    model::{LoadedKind, LoadedProfile, ProfileKind, TargetSpec, UnwindMode},
    procfs, target,
};

/// A zero-instrumentation profiler for Linux, on eBPF.
#[derive(Debug, Parser)]
#[command(name = "profiler", version, about, long_about = None)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record a profile of a running process (--pid) or of a command you start
    /// (after `--`), then write it out and print a short report on stderr.
    Record(Box<RecordArgs>),
    /// Stay attached to a running process and serve what it does over HTTP:
    /// Prometheus metrics (/metrics), health (/healthz) and pprof profiles on
    /// demand (/debug/pprof/profile, /debug/pprof/mutex, /debug/pprof/block),
    /// as Go's net/http/pprof serves them.
    Serve(ServeArgs),
    /// Print what every thread of a process is doing right now (its state,
    /// the system call it is in, the lock of a futex wait, its stack),
    /// read from outside without stopping it; for a Go program also every
    /// goroutine, as Go's own /debug/pprof/goroutine?debug=2 shows them.
    Dump(DumpArgs),
    /// Watch a Go program's goroutines and list, per creation site (the
    /// `go` statement), how many live, start and end and how fast they
    /// grow: leak suspects first.
    Goroutines(GoroutinesArgs),
    /// Compare two profiles (folded or pprof, ours or other tools', Go's
    /// goroutine dumps): which functions' shares changed most, which stacks
    /// appeared and vanished, goroutines per creation site; fail (exit 1)
    /// when a gate trips, for CI. Exit 2 when a file cannot be read.
    Diff(DiffArgs),
    /// A live view of where the whole machine (or one process: --pid)
    /// spends its time, refreshed every second: processes by CPU, and a
    /// process's functions, locks, off-CPU time, threads and goroutines.
    /// Full-screen on a terminal; piped, a plain table every second.
    Top(TopArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sudo profiler top\n  sudo profiler top --pid 4242\n  sudo profiler top --pid 4242 --duration 5s | head -40\n\nKeys: Tab switch view, s sort, w window (1 s, 10 s, since start), space pause, / filter, Enter drill into a process, Esc back, ? help, q quit."
)]
pub struct TopArgs {
    /// What to watch; without any of these, the whole machine (--all).
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub stacks: StackArgs,

    /// Stop after this long ("30s"); without it, until q, Ctrl-C or (for
    /// one --pid, piped) the target's exit.
    #[arg(short, long, value_name = "DURATION")]
    pub duration: Option<String>,

    /// Rows of each table printed when stdout is not a terminal.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub rows: usize,

    /// Print plain tables even on a terminal.
    #[arg(long)]
    pub plain: bool,
}

impl TopArgs {
    /// Checks every flag and turns them into a [`TopConfig`].
    pub fn into_config(self) -> anyhow::Result<TopConfig> {
        let t = &self.target;
        let target = if t.pid.is_empty() && t.cgroup.is_none() && t.comm.is_none() && !t.children {
            TargetSpec::All
        } else {
            self.target.spec(Vec::new())?
        };
        let (frequency, unwind, max_depth) = self.stacks.check()?;
        Ok(TopConfig {
            target,
            frequency,
            unwind,
            max_depth,
            duration: self.duration.as_deref().map(parse_duration).transpose()?,
            rows: self.rows,
            plain: self.plain,
        })
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  profiler diff base.pb.gz new.pb.gz\n  profiler diff base.folded new.folded -o diff.svg --max-regression 15%\n  profiler diff go-cpu.pprof ours.pb.gz --fail-on 'total:main.handle*>+5pp'\n  profiler diff dump1.txt dump2.txt --fail-on 'goroutines:main.worker*>+100'\n\nExit status: 0 within the gates, 1 when a gate trips, 2 when a profile cannot be read or compared."
)]
pub struct DiffArgs {
    /// The baseline: folded stacks (ours, inferno-collapse-*, bcc -f), pprof
    /// (ours, Go's runtime/pprof and net/http/pprof: cpu, heap, mutex,
    /// block, goroutine; gzipped or not), or a Go goroutine dump (Go's
    /// debug=2 or debug=1 text, or `profiler dump`'s output).
    #[arg(value_name = "BASE")]
    pub base: PathBuf,

    /// The profile to compare with the baseline, of the same kind.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,

    /// Also write a differential flamegraph (an .svg): the new profile's
    /// shape, red where it grew, blue where it shrank.
    #[arg(short, long, value_name = "FILE.svg")]
    pub output: Option<PathBuf>,

    /// How many functions, stacks and goroutine sites to list (0: all).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub top: usize,

    /// text (a table) or json.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: String,

    #[command(flatten)]
    pub gates: GateArgs,
}

/// How two profiles are compared and the gates the change is held to
/// (`diff`, and `record --compare`).
#[derive(Debug, Args)]
pub struct GateArgs {
    /// Fail (exit 1) when the change passes a bound:
    /// SCOPE:PATTERN>+AMOUNT, SCOPE self, total or goroutines, PATTERN a
    /// glob on function (or creation site) names, AMOUNT points of share
    /// (5pp), percent of the base (10%), or a number (goroutines; raw
    /// values with --absolute). E.g. 'total:main.handle*>+5pp',
    /// 'self:*>+10%', 'goroutines:main.worker*>+100'. Changes within
    /// sampling noise (3 sigma) do not trip. Give it several times.
    #[arg(long = "fail-on", value_name = "GATE")]
    pub fail_on: Vec<String>,

    /// Fail when any function's self share grows by more than PERCENT of
    /// its base share (beyond sampling noise), e.g. 15%.
    #[arg(long, value_name = "PERCENT")]
    pub max_regression: Option<String>,

    /// Compare raw values (samples, nanoseconds, bytes) instead of shares
    /// of each profile's total.
    #[arg(long)]
    pub absolute: bool,

    /// The sample type to compare, as go tool pprof's -sample_index: a
    /// name (cpu, samples, inuse_space, alloc_objects, delay, contentions)
    /// or an index; by default each file's default (the last type).
    #[arg(long, value_name = "TYPE")]
    pub sample_index: Option<String>,
}

impl GateArgs {
    /// Whether any of these flags was given.
    fn any(&self) -> bool {
        !self.fail_on.is_empty()
            || self.max_regression.is_some()
            || self.absolute
            || self.sample_index.is_some()
    }

    /// The checked settings (`top` and output chosen by the command).
    fn settings(&self, top: usize) -> anyhow::Result<CompareSettings> {
        let mut gates = self
            .fail_on
            .iter()
            .map(|g| Gate::parse(g))
            .collect::<anyhow::Result<Vec<Gate>>>()?;
        if let Some(text) = &self.max_regression {
            gates.push(Gate::max_regression(text)?);
        }
        for gate in &gates {
            gate.applies(self.absolute)?;
        }
        Ok(CompareSettings {
            options: DiffOptions {
                sample_index: self.sample_index.clone(),
                absolute: self.absolute,
            },
            gates,
            top,
            json: false,
            svg: None,
        })
    }
}

impl DiffArgs {
    /// Checks every flag and turns them into a [`DiffConfig`].
    pub fn into_config(self) -> anyhow::Result<DiffConfig> {
        let mut settings = self.gates.settings(self.top)?;
        settings.json = match self.format.as_str() {
            "text" | "table" => false,
            "json" => true,
            other => bail!("--format: unknown format {other:?}; choose text or json"),
        };
        if let Some(svg) = &self.output {
            if Format::from_path(svg) != Some(Format::Svg) {
                bail!(
                    "-o {}: diff writes a differential flamegraph; give a file name ending in .svg",
                    svg.display()
                );
            }
            settings.svg = Some(svg.clone());
        }
        Ok(DiffConfig {
            base: self.base,
            new: self.new,
            settings,
        })
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sudo profiler goroutines --pid 4242\n  sudo profiler goroutines --pid 4242 --duration 2m --interval 5s --fail-on-growth 100"
)]
pub struct GoroutinesArgs {
    /// The Go process to watch.
    #[arg(short, long, value_name = "PID", allow_hyphen_values = true)]
    pub pid: String,

    /// How long to watch ("30s", "2m").
    #[arg(short, long, value_name = "DURATION", default_value = "30s")]
    pub duration: String,

    /// Time between two snapshots of every goroutine ("1s", "500ms").
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub interval: String,

    /// Exit with status 1 when a creation site's live goroutines grow by
    /// more than N a minute (for CI).
    #[arg(long, value_name = "N")]
    pub fail_on_growth: Option<f64>,

    /// How many creation sites to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
}

impl GoroutinesArgs {
    /// Checks every flag and turns them into a [`GoroutinesConfig`].
    pub fn into_config(self) -> anyhow::Result<GoroutinesConfig> {
        let pid = parse_pid(&self.pid)?;
        let duration = parse_duration(&self.duration)?;
        let interval = parse_duration(&self.interval).map_err(|err| {
            anyhow::anyhow!("{}", err.to_string().replace("--duration", "--interval"))
        })?;
        if interval > duration {
            bail!(
                "--interval {} is longer than --duration {}: at least two snapshots are needed",
                self.interval,
                self.duration
            );
        }
        if let Some(limit) = self.fail_on_growth
            && !(limit.is_finite() && limit >= 0.0)
        {
            bail!(
                "--fail-on-growth takes a number of goroutines a minute (0 or more), got {limit}"
            );
        }
        Ok(GoroutinesConfig {
            pid,
            duration,
            interval,
            fail_on_growth: self.fail_on_growth,
            top: self.top.max(1),
        })
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sudo profiler dump --pid 4242\n  sudo profiler dump --pid 4242 -o threads.pb.gz -o threads.folded"
)]
pub struct DumpArgs {
    /// The process to dump, every thread of it.
    #[arg(short, long, value_name = "PID", allow_hyphen_values = true)]
    pub pid: String,

    /// Also write the dump to FILE (one sample per thread); the extension
    /// picks the format: .folded or .txt, .svg, .pb.gz or .pprof, .json
    /// (speedscope). Give it several times for several formats.
    #[arg(short, long, value_name = "FILE")]
    pub output: Vec<PathBuf>,

    /// The format of the files, whatever their extension: folded, svg,
    /// pprof, speedscope.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

impl DumpArgs {
    /// Checks every flag and turns them into a [`DumpConfig`].
    pub fn into_config(self) -> anyhow::Result<DumpConfig> {
        let pid = parse_pid(&self.pid)?;
        let format = self.format.as_deref().map(Format::parse).transpose()?;
        let outputs = self
            .output
            .into_iter()
            .map(|path| {
                if path.is_dir() {
                    bail!(
                        "cannot write the dump to {}: it is a directory; give a file name such as {}/threads.folded",
                        path.display(),
                        path.display()
                    );
                }
                Ok((Format::for_output(&path, format)?, path))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(DumpConfig { pid, outputs })
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sudo profiler serve --pid 4242\n  go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=5\n  curl http://127.0.0.1:6060/metrics"
)]
pub struct ServeArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// With one --pid: when the process exits, record the next process of
    /// the same name (a restarted service) as --comm NAME does.
    #[arg(long)]
    pub follow: bool,

    /// How much data serve keeps, so its memory stays flat however long it
    /// runs ("10m", "1h"): profiles without ?seconds= cover between half of
    /// it and all of it, ?seconds=N may ask for at most half of it; the
    /// metrics' counters keep counting what is let go.
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub window: String,

    /// Where to listen. Loopback by default; any other address (0.0.0.0:6060)
    /// lets other hosts read this process's stacks, and is logged as a
    /// warning.
    #[arg(long, value_name = "ADDRESS:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: String,

    #[command(flatten)]
    pub stacks: StackArgs,

    /// How many locks get their own `lock` label in the metrics: the first K
    /// locks by wait time; the rest are summed under lock="other".
    #[arg(long, value_name = "K", default_value_t = 20)]
    pub top_locks: usize,

    /// For a Go program, do not time every goroutine park (Go's block
    /// profile: /debug/pprof/block and the profiler_go_block_* metrics).
    /// Timing them probes every park and wake-up of every goroutine, about
    /// 4.6 us of CPU each (`cargo xtask bench gowaits`: 4x the CPU time of a
    /// program parking 100k times a second); this saves that. Go lock
    /// contention (/debug/pprof/mutex) stays on: it probes only contended
    /// locks.
    #[arg(long)]
    pub no_go_block: bool,
}

/// Which processes to record, for `record` and `serve` alike.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The processes to profile, every thread of each, including threads
    /// they create while recorded: a comma list, or the flag repeated. A
    /// thread id stands for its process.
    #[arg(short, long, value_name = "PID[,PID...]", allow_hyphen_values = true)]
    pub pid: Vec<String>,

    /// With --pid: also every descendant, those running now and those
    /// forked (or exec'd) later, followed in the kernel. For servers that
    /// fork workers (nginx, PostgreSQL, gunicorn, php-fpm, Apache).
    #[arg(long)]
    pub children: bool,

    /// Every process in this cgroup v2 directory or below it, now and
    /// later: a systemd unit's (/sys/fs/cgroup/system.slice/NAME.service)
    /// or a container's. A path relative to the cgroup2 mount works too.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<std::path::PathBuf>,

    /// Every process named NAME (as /proc/PID/comm and `ps -o comm` show
    /// it), those running now and those started later: a service that
    /// restarts is picked up again.
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,

    /// The whole machine: every user process but the profiler itself.
    #[arg(short = 'a', long)]
    pub all: bool,
}

impl TargetArgs {
    /// The processes to record; `command` is what follows `--` (record
    /// only).
    pub fn spec(self, command: Vec<String>) -> anyhow::Result<TargetSpec> {
        let mut pids = Vec::new();
        for text in &self.pid {
            for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                pids.push(parse_pid(part)?);
            }
        }
        if !self.pid.is_empty() && pids.is_empty() {
            bail!("--pid takes a process id (a positive number), got an empty list");
        }
        let given = [
            !pids.is_empty(),
            !command.is_empty(),
            self.cgroup.is_some(),
            self.comm.is_some(),
            self.all,
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            bail!(
                "give one of --pid, --cgroup, --comm, --all or a command after `--`, not several"
            );
        }
        if self.children && pids.is_empty() {
            bail!(
                "--children follows the descendants of the processes given with --pid (a command after `--` is followed anyway)"
            );
        }
        Ok(if !pids.is_empty() {
            TargetSpec::Pids {
                pids,
                children: self.children,
            }
        } else if !command.is_empty() {
            TargetSpec::Command(command)
        } else if let Some(path) = self.cgroup {
            TargetSpec::Cgroup(path)
        } else if let Some(name) = self.comm {
            TargetSpec::Comm(name)
        } else if self.all {
            TargetSpec::All
        } else {
            bail!(
                "nothing to profile: give --pid PID for a running process (--children for its descendants too), --cgroup PATH, --comm NAME, --all, or a command after `--` (profiler record -- ./my-program)"
            )
        })
    }
}

/// How samples and stacks are taken, for `record` and `serve` alike.
#[derive(Debug, Args)]
pub struct StackArgs {
    /// On-CPU samples per second per CPU.
    #[arg(
        short = 'F',
        long,
        value_name = "HZ",
        default_value = "99",
        allow_hyphen_values = true
    )]
    pub frequency: String,

    /// How user stacks are walked: dwarf (in the kernel, with tables made
    /// from each binary's .eh_frame: whole stacks for code without frame
    /// pointers, at any event rate), fp (frame pointers only, in the kernel:
    /// the cheapest, but stacks through code built without frame pointers —
    /// most distribution libraries, -O2 C, Rust release builds — are cut
    /// short or skip callers), copy (a copy of each stack unwound in
    /// userspace: for comparison; events beyond what the copy ring holds
    /// lose their stacks, counted), auto (copy while the ring keeps up,
    /// frame pointers beyond). Go programs are always walked by frame
    /// pointers.
    #[arg(long, value_name = "MODE", default_value = "dwarf")]
    pub unwind: String,

    /// Deepest user stack kept (frames beyond are cut, and counted).
    #[arg(long, value_name = "FRAMES", default_value_t = profiler_common::stacks::MAX_STACK_DEPTH as usize)]
    pub max_depth: usize,
}

impl StackArgs {
    /// The checked frequency (Hz), unwind mode and depth limit.
    fn check(&self) -> anyhow::Result<(u64, UnwindMode, usize)> {
        let frequency = parse_frequency(&self.frequency)?;
        let unwind = parse_unwind(&self.unwind)?;
        if self.max_depth == 0 {
            bail!("--max-depth must be at least 1 frame");
        }
        Ok((frequency, unwind, self.max_depth))
    }
}

impl ServeArgs {
    /// Checks every flag and turns them into a [`ServeConfig`].
    pub fn into_config(self) -> anyhow::Result<ServeConfig> {
        let mut target = self.target.spec(Vec::new())?;
        if self.follow {
            let Some(pid) = target.single_pid() else {
                bail!(
                    "--follow takes one --pid (for a cgroup or a name, new processes are followed anyway)"
                );
            };
            let name = procfs::read_comm(pid, pid).map_err(|_| {
                anyhow::anyhow!("no process with PID {pid} exists; check the id with `ps -p {pid}`")
            })?;
            target = TargetSpec::Comm(name);
        }
        let listen = parse_listen(&self.listen)?;
        let (frequency, unwind, max_depth) = self.stacks.check()?;
        if self.top_locks == 0 {
            bail!("--top-locks must be at least 1 (locks beyond it are labelled \"other\")");
        }
        let window = parse_duration(&self.window).map_err(|err| {
            anyhow::anyhow!("{}", err.to_string().replace("--duration", "--window"))
        })?;
        if window < Duration::from_secs(2) {
            bail!("--window must be at least 2 s (profiles over ?seconds=N need half of it)");
        }
        Ok(ServeConfig {
            window,
            target,
            listen,
            frequency,
            unwind,
            max_depth,
            top_locks: self.top_locks,
            go_block: !self.no_go_block,
        })
    }
}

/// Parses `--listen`: an address and a port, a host name allowed.
pub fn parse_listen(text: &str) -> anyhow::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs as _;
    let usage = || {
        format!("--listen takes ADDRESS:PORT such as 127.0.0.1:6060 or 0.0.0.0:6060, got {text:?}")
    };
    if let Ok(addr) = text.trim().parse() {
        return Ok(addr);
    }
    if !text.contains(':') {
        bail!("{}", usage());
    }
    text.trim()
        .to_socket_addrs()
        .with_context(usage)?
        .next()
        .with_context(usage)
}

/// Parses `--unwind`.
pub fn parse_unwind(text: &str) -> anyhow::Result<UnwindMode> {
    UnwindMode::from_name(text)
        .with_context(|| format!("--unwind: unknown mode {text:?}; choose dwarf, fp, copy or auto"))
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sudo profiler record --pid 4242 --duration 10s -o cpu.svg\n  sudo profiler record -o cpu.folded -o cpu.pb.gz -- ./my-service --flag\n  sudo profiler record --pid 4242 --profile all --duration 30s -o wait.pb.gz\n  sudo profiler record --pid 4242 --profile offcpu --min-block 1ms -o off.svg"
)]
pub struct RecordArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// How long to record ("10s", "500ms", "2m"); without it, until Ctrl-C or
    /// the target's exit.
    #[arg(short, long, value_name = "DURATION")]
    pub duration: Option<String>,

    #[command(flatten)]
    pub stacks: StackArgs,

    /// What to profile, a comma list of: cpu (on-CPU samples), offcpu (time
    /// switched out: blocked, preempted, and who woke it), futex (lock waits
    /// by lock address), for Go programs gomutex, goblock and goheap (Go's
    /// own heap profile, read from the runtime at the end: pprof or folded
    /// by bytes in use), or all (goheap included for a Go --pid, left out
    /// with a note when its runtime records no heap profile).
    #[arg(long, value_name = "KINDS", default_value = "cpu")]
    pub profile: String,

    /// Turn a Go program's own sampling on for the recording (--pid only):
    /// heap=SIZE (runtime.MemProfileRate, bytes per heap sample, e.g. 512K),
    /// mutex=N (as SetMutexProfileFraction(N)), block=NS (as
    /// SetBlockProfileRate(NS); 1: every event), comma-separated. Written
    /// into the running process and put back at the end (duration, Ctrl-C,
    /// SIGTERM); this changes what the program does. Never done unless asked.
    #[arg(long, value_name = "RATES")]
    pub go_rates: Option<String>,

    /// Drop off-CPU blocks shorter than this in the kernel ("1ms", "500us");
    /// the report says how many were dropped.
    #[arg(long, value_name = "DURATION")]
    pub min_block: Option<String>,

    /// Where to write the profile; the extension picks the format: .folded
    /// or .txt (collapsed stacks), .svg (flamegraph), .pb.gz or .pprof
    /// (pprof), .json (speedscope). Give it several times for several
    /// formats. With several kinds, each gets its own file: out.folded ->
    /// out.cpu.folded, out.offcpu.folded, out.futex.folded.
    #[arg(short, long, value_name = "FILE", default_value = "profile.folded")]
    pub output: Vec<PathBuf>,

    /// The output format, whatever the extension: folded, svg, pprof,
    /// speedscope.
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// Split stacks by thread: a `thread-name-tid` frame under the process.
    #[arg(long)]
    pub per_thread: bool,

    /// How many functions the report lists by self and by total share.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,

    /// Compare the recording with a baseline profile when it ends (as
    /// `profiler diff BASE`), print the table after the report, and exit 1
    /// when a gate (--fail-on, --max-regression) trips.
    #[arg(long, value_name = "BASE")]
    pub compare: Option<PathBuf>,

    #[command(flatten)]
    pub gates: GateArgs,

    /// The command to start and profile until it exits (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Parses `--profile`: a comma list of kinds, or `all` (with the Go kinds
/// for a `go` target).
pub fn parse_kinds(text: &str, go: bool) -> anyhow::Result<Vec<ProfileKind>> {
    let mut kinds = Vec::new();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match (word, ProfileKind::from_name(word)) {
            ("all", _) => {
                kinds.extend(ProfileKind::ALL);
                if go {
                    kinds.extend(ProfileKind::GO);
                }
            }
            (_, Some(kind)) => kinds.push(kind),
            (other, None) => bail!(
                "--profile: unknown kind {other:?}; choose from cpu, offcpu, futex, gomutex, goblock, goheap (Go programs), all (comma-separated)"
            ),
        }
    }
    if kinds.is_empty() {
        bail!(
            "--profile needs at least one kind: cpu, offcpu, futex, gomutex, goblock, goheap or all"
        );
    }
    kinds.sort();
    kinds.dedup();
    Ok(kinds)
}

/// The output file of each kind: `-o` itself for one kind; for several, the
/// kind's name before the extension (out.folded -> out.cpu.folded).
#[cfg(test)]
pub fn output_paths(
    output: &std::path::Path,
    kinds: &[ProfileKind],
) -> anyhow::Result<Vec<PathBuf>> {
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    output_paths_named(output, &names)
}

/// [`output_paths`] for profiles named `names` (a kind's name, `goheap`).
pub fn output_paths_named(
    output: &std::path::Path,
    names: &[&str],
) -> anyhow::Result<Vec<PathBuf>> {
    if names.len() == 1 {
        return Ok(vec![output.to_owned()]);
    }
    if output == std::path::Path::new("-") {
        bail!("with several profile kinds each goes to its own file: give -o a file name, not -");
    }
    let file_name = output
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile".to_owned());
    // The kind goes before the whole extension, `.pb.gz` included.
    let (stem, ext) = match file_name.to_ascii_lowercase().strip_suffix(".pb.gz") {
        Some(_) => (
            file_name[..file_name.len() - ".pb.gz".len()].to_owned(),
            Some(file_name[file_name.len() - "pb.gz".len()..].to_owned()),
        ),
        None => match file_name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), Some(ext.to_owned())),
            _ => (file_name.clone(), None),
        },
    };
    Ok(names
        .iter()
        .map(|kind| {
            let name = match &ext {
                Some(ext) => format!("{stem}.{kind}.{ext}"),
                None => format!("{stem}.{kind}"),
            };
            output.with_file_name(name)
        })
        .collect())
}

/// The kernel's cap on sampling frequencies.
const MAX_SAMPLE_RATE_PATH: &str = "/proc/sys/kernel/perf_event_max_sample_rate";

impl RecordArgs {
    /// Checks every flag and turns them into a [`RecordConfig`].
    pub fn into_config(self) -> anyhow::Result<RecordConfig> {
        let target = self.target.spec(self.command)?;
        let duration = self.duration.as_deref().map(parse_duration).transpose()?;
        let (frequency, unwind, max_depth) = self.stacks.check()?;
        let executable = target::executable_of(&target);
        let go = executable
            .as_deref()
            .is_some_and(profiler::go::is_go_executable);
        // goheap is no recorded kind: a snapshot read at the end.
        let (profile, go_heap) = split_go_heap(&self.profile, go);
        let kinds = match (profile.trim().is_empty(), go_heap) {
            (true, Some(_)) => Vec::new(),
            _ => parse_kinds(&profile, go)?,
        };
        // Through `all`, only for a running Go process (read at the end).
        let go_heap = match (go_heap, &target) {
            (Some(true), TargetSpec::Command(_)) => None,
            (Some(_), TargetSpec::Command(_)) => bail!(
                "--profile goheap reads a running Go program's heap profile from its memory: give --pid PID"
            ),
            (go_heap, _) => go_heap,
        };
        if let (Some(exe), false, Some(_)) = (&executable, go, go_heap) {
            bail!(
                "--profile goheap: {} is not a Go program; goheap reads the Go runtime's own heap profile",
                exe.display()
            );
        }
        let go_rates = match &self.go_rates {
            None => None,
            Some(text) if let Err(err) = profiler::go::rates::RatesRequest::parse(text) => {
                bail!("--go-rates: {err}")
            }
            Some(_) if target.single_pid().is_none() => {
                bail!("--go-rates sets the rates in a running Go program: give --pid PID")
            }
            Some(_) if !go => bail!(
                "--go-rates: {} is not a Go program",
                executable
                    .as_deref()
                    .map_or_else(|| "the target".to_owned(), |e| e.display().to_string())
            ),
            Some(text) => Some(
                profiler::go::rates::RatesRequest::parse(text)
                    .map_err(|err| anyhow::anyhow!("--go-rates: {err}"))?,
            ),
        };
        if let (Some(exe), false) = (&executable, go)
            && let Some(kind) = kinds.iter().find(|k| k.is_go())
        {
            bail!(
                "--profile {}: {} is not a Go program; the Go kinds read the Go runtime (for any program, futex and offcpu show lock waits and blocking)",
                kind.name(),
                exe.display()
            );
        }
        let min_block = match &self.min_block {
            Some(text) => {
                if !kinds.contains(&ProfileKind::OffCpu) {
                    bail!("--min-block applies to off-CPU profiles: add --profile offcpu");
                }
                parse_duration(text).map_err(|err| {
                    anyhow::anyhow!("{}", err.to_string().replace("--duration", "--min-block"))
                })?
            }
            None => Duration::ZERO,
        };
        let format = self.format.as_deref().map(Format::parse).transpose()?;
        let mut outputs = Vec::new();
        let mut heap_outputs = Vec::new();
        let mut names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        if go_heap.is_some() {
            names.push("goheap");
        }
        for output in &self.output {
            if output.is_dir() {
                bail!(
                    "cannot write the profile to {}: it is a directory; give a file name such as {}/cpu.folded",
                    output.display(),
                    output.display()
                );
            }
            let mut paths = output_paths_named(output, &names)?;
            if go_heap.is_some() {
                let path = paths.pop().context("a path for goheap")?;
                let format = Format::for_output(output, format)?;
                match (profiler::commands::go_heap::heap_format_ok(format), go_heap) {
                    (true, _) => heap_outputs.push((format, path)),
                    (false, Some(false)) => bail!(
                        "--profile goheap is written as pprof (.pb.gz) or folded stacks (.folded), not {}",
                        format.name()
                    ),
                    (false, _) => {}
                }
            }
            for (kind, path) in kinds.iter().zip(paths) {
                let format = Format::for_output(output, format)?;
                outputs.push(OutputSpec {
                    kind: *kind,
                    format,
                    path,
                });
            }
        }
        let compare = match &self.compare {
            None if self.gates.any() => bail!(
                "--fail-on, --max-regression, --absolute and --sample-index apply to a comparison: add --compare BASE"
            ),
            None => None,
            Some(_)
                if self
                    .gates
                    .fail_on
                    .iter()
                    .any(|g| g.trim_start().starts_with("goroutine")) =>
            {
                bail!(
                    "--fail-on goroutines:... compares goroutine profiles or dumps, which a recording does not take; use profiler diff on two dumps"
                )
            }
            Some(path) => {
                let base = profiler::formats::read::load(path)?;
                Some(RecordCompare {
                    kind: compared_kind(&base, &kinds)?,
                    base,
                    settings: self.gates.settings(self.top)?,
                })
            }
        };
        Ok(RecordConfig {
            compare,
            target,
            duration,
            frequency,
            kinds,
            min_block,
            outputs,
            per_thread: self.per_thread,
            top: self.top,
            unwind,
            max_depth,
            go_heap_optional: go_heap == Some(true),
            go_heap: heap_outputs,
            go_rates,
        })
    }
}

/// The recorded kind `record --compare` compares with a baseline of
/// `base`'s kind.
fn compared_kind(base: &LoadedProfile, kinds: &[ProfileKind]) -> anyhow::Result<ProfileKind> {
    let wanted: &[ProfileKind] = match base.kind() {
        LoadedKind::Cpu => &[ProfileKind::Cpu],
        LoadedKind::OffCpu => &[ProfileKind::OffCpu],
        LoadedKind::Contention => &[
            ProfileKind::Futex,
            ProfileKind::GoMutex,
            ProfileKind::GoBlock,
        ],
        LoadedKind::Unknown => kinds,
        other => bail!(
            "--compare: {} is a {} profile, which a recording does not take; compare two of them with profiler diff",
            base.origin,
            other.name()
        ),
    };
    wanted
        .iter()
        .find(|k| kinds.contains(k))
        .copied()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--compare: {} is a {} profile, but this recording takes {}; add --profile {}",
                base.origin,
                base.kind().name(),
                kinds
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                wanted.first().map_or("cpu", |k| k.name())
            )
        })
}

/// Takes `goheap` (and `all`'s goheap, for a Go program) out of the
/// `--profile` list: the rest, and whether goheap was asked for (`Some(true)`
/// when only through `all`).
pub fn split_go_heap(text: &str, go: bool) -> (String, Option<bool>) {
    let mut rest = Vec::new();
    let mut named = false;
    let mut all = false;
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word {
            "goheap" | "go-heap" => named = true,
            "all" => {
                all = true;
                rest.push(word);
            }
            _ => rest.push(word),
        }
    }
    let heap = match (named, all && go) {
        (true, _) => Some(false),
        (false, true) => Some(true),
        (false, false) => None,
    };
    (rest.join(","), heap)
}

/// Parses a process id: a positive integer that is not our own.
pub fn parse_pid(text: &str) -> anyhow::Result<u32> {
    let pid: i64 = text
        .trim()
        .parse()
        .with_context(|| format!("--pid takes a process id (a positive number), got {text:?}"))?;
    if pid <= 0 || pid > i64::from(i32::MAX) {
        bail!("--pid takes a process id greater than 0, got {pid}");
    }
    let pid = pid as u32;
    if pid == std::process::id() {
        bail!("--pid {pid} is the profiler itself; give the id of the process to profile");
    }
    Ok(pid)
}

/// Parses a duration such as "10s", "250ms" or "1m"; a bare number is seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let trimmed = text.trim();
    let duration = match trimmed.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => bail!("--duration must be longer than zero, got {text:?}"),
        Err(_) => humantime::parse_duration(trimmed).map_err(|err| {
            anyhow::anyhow!("--duration takes a time such as 10s, 500ms or 2m; {text:?}: {err}")
        })?,
    };
    if duration.is_zero() {
        bail!("--duration must be longer than zero, got {text:?}");
    }
    Ok(duration)
}

/// Above this frequency the cost of sampling is worth a warning.
const HIGH_FREQUENCY: u64 = 1000;

/// Parses a sampling frequency in Hz: positive, and within the kernel's cap;
/// a high one gets a one-line warning of its cost.
pub fn parse_frequency(text: &str) -> anyhow::Result<u64> {
    let hz: i64 = text.trim().parse().with_context(|| {
        format!("--frequency takes a whole number of samples per second (e.g. 99), got {text:?}")
    })?;
    if hz <= 0 {
        bail!("--frequency must be a positive number of samples per second (e.g. 99), got {hz}");
    }
    let hz = hz as u64;
    if let Ok(max) = std::fs::read_to_string(MAX_SAMPLE_RATE_PATH)
        && let Ok(max) = max.trim().parse::<u64>()
        && hz > max
    {
        bail!(
            "--frequency {hz} is above this kernel's limit of {max} Hz ({MAX_SAMPLE_RATE_PATH}); choose a lower frequency"
        );
    }
    if hz > HIGH_FREQUENCY {
        // Each sample costs about 1 to 3 us of the CPU it interrupts (the
        // stack walk, the map update; `cargo xtask bench unwind`).
        let percent = hz as f64 * 2e-6 * 100.0;
        eprintln!(
            "warning: --frequency {hz} takes {hz} samples per second on every CPU, costing about {percent:.0}% of each busy CPU (around 2 us a sample) and skewing what is measured; 99 (the default) is enough for most profiles"
        );
    }
    Ok(hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").ok(), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("2").ok(), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m").ok(), Some(Duration::from_secs(60)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-3s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn frequencies() {
        assert_eq!(parse_frequency("99").ok(), Some(99));
        assert!(parse_frequency("0").is_err());
        assert!(parse_frequency("-5").is_err());
        assert!(parse_frequency("fast").is_err());
    }

    #[test]
    fn kinds_and_outputs() {
        use std::path::Path;
        assert_eq!(parse_kinds("cpu", false).ok(), Some(vec![ProfileKind::Cpu]));
        assert_eq!(
            parse_kinds("futex,cpu,futex", false).ok(),
            Some(vec![ProfileKind::Cpu, ProfileKind::Futex])
        );
        assert_eq!(
            parse_kinds("all", false).ok(),
            Some(ProfileKind::ALL.to_vec())
        );
        let go: Vec<ProfileKind> = ProfileKind::ALL
            .into_iter()
            .chain(ProfileKind::GO)
            .collect();
        assert_eq!(parse_kinds("all", true).ok(), Some(go));
        assert_eq!(
            parse_kinds("goblock,gomutex", false).ok(),
            Some(vec![ProfileKind::GoMutex, ProfileKind::GoBlock])
        );
        assert!(parse_kinds("gpu", false).is_err());
        assert!(parse_kinds(",", false).is_err());
        let all = ProfileKind::ALL;
        let paths = output_paths(Path::new("dir/out.folded"), &all).ok();
        assert_eq!(
            paths,
            Some(vec![
                "dir/out.cpu.folded".into(),
                "dir/out.offcpu.folded".into(),
                "dir/out.futex.folded".into()
            ])
        );
        assert_eq!(
            output_paths(Path::new("out"), &all[..2]).ok(),
            Some(vec!["out.cpu".into(), "out.offcpu".into()])
        );
        assert_eq!(
            output_paths(Path::new("x.folded"), &all[..1]).ok(),
            Some(vec!["x.folded".into()])
        );
        assert_eq!(
            output_paths(Path::new("/t/p.pb.gz"), &all[1..]).ok(),
            Some(vec!["/t/p.offcpu.pb.gz".into(), "/t/p.futex.pb.gz".into()])
        );
        assert!(output_paths(Path::new("-"), &all).is_err());
    }

    #[test]
    fn go_heap_words() {
        assert_eq!(
            split_go_heap("cpu,goheap", true),
            ("cpu".into(), Some(false))
        );
        assert_eq!(split_go_heap("goheap", false), (String::new(), Some(false)));
        assert_eq!(split_go_heap("all", true), ("all".into(), Some(true)));
        assert_eq!(
            split_go_heap("all,goheap", true),
            ("all".into(), Some(false))
        );
        assert_eq!(split_go_heap("all", false), ("all".into(), None));
        assert_eq!(split_go_heap("cpu", true), ("cpu".into(), None));
        let names = ["cpu", "goheap"];
        assert_eq!(
            output_paths_named(std::path::Path::new("h.pb.gz"), &names).ok(),
            Some(vec!["h.cpu.pb.gz".into(), "h.goheap.pb.gz".into()])
        );
    }

    #[test]
    fn pids() {
        assert_eq!(parse_pid("4242").ok(), Some(4242));
        assert!(parse_pid("0").is_err());
        assert!(parse_pid("-1").is_err());
        assert!(parse_pid("abc").is_err());
        assert!(parse_pid(&std::process::id().to_string()).is_err());
    }
}
