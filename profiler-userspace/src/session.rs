//! One attached set of target processes and the periodic work that keeps
//! its data current: the loaded programs, the sources draining them, the
//! processes found, the unwinder, the aggregate, the symbols and the thread
//! registry, all private. `record` runs a session to a file and `serve`
//! keeps one open; both read it through [`Snapshot`]s.

use std::{
    borrow::Cow,
    collections::HashMap,
    path::Path,
    rc::Rc,
    time::{Duration, Instant},
};

use profiler_common::{counters::Counter, futex::FutexInFlight, maps, offcpu::SwitchedOut};

use tracing::{debug, info, warn};

use profiler_common::maps::TargetMode;

use crate::{
    aggregate::Aggregate,
    attach::{Attached, GoWaitProbes, LoadConfig, Selection},
    go, inspect,
    model::{Event, OffCpuState, Origin, ProfileKind, Stack, TargetSpec, UnwindMode, Value},
    processes::Processes,
    procfs,
    snapshot::{Collected, Programs, Snapshot, TargetState},
    sources::Sources,
    symbolize::Symbols,
    target::{TargetExit, Targets, processes_named},
    threads::Threads,
    unwind::Unwinder,
};

/// Up to this many live processes, each one's mappings are re-read on
/// every mappings tick (libraries it loads, for the walker and the
/// symbolizer); above it (a cgroup, the whole machine) the walker's
/// requests alone bring tables up to date.
const MAPPINGS_EVERY_PROCESS: usize = 16;
/// Up to this many live processes, waits still under way are read from
/// each one's threads (a whole machine's would take too long).
const WAITS_IN_PROGRESS_PROCESSES: usize = 8;

/// How often the kernel maps are drained (and new stacks symbolized).
const DRAIN_EVERY: Duration = Duration::from_secs(1);
/// How often the target's mappings are re-read (libraries it loads, and a
/// started command's exec) so a target that exits is still symbolized.
const MAPPINGS_EVERY: Duration = Duration::from_millis(250);
/// How often the ring buffers are read and their copies unwound: often
/// enough that `--unwind auto` keeps copying (the ring stays under half
/// full) at tens of megabytes of copies a second.
const RINGS_EVERY: Duration = Duration::from_millis(25);

/// What a session's loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Read the rings (copied stacks, unwound while their binaries are
    /// mapped).
    Rings,
    /// Re-read the target's mappings (and the rings).
    Mappings,
    /// Drain the kernel's maps and name what is new.
    Drain,
}

/// The ticks of a session's loop: the first drain one period from now, the
/// others at once; a late tick delays the next rather than bunching up.
pub struct Ticks {
    drain: tokio::time::Interval,
    mappings: tokio::time::Interval,
    rings: tokio::time::Interval,
}

impl Ticks {
    pub fn new() -> Ticks {
        use tokio::time::{Instant, MissedTickBehavior, interval, interval_at};
        let mut drain = interval_at(Instant::now() + DRAIN_EVERY, DRAIN_EVERY);
        let mut mappings = interval(MAPPINGS_EVERY);
        let mut rings = interval(RINGS_EVERY);
        for tick in [&mut drain, &mut mappings, &mut rings] {
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        Ticks {
            drain,
            mappings,
            rings,
        }
    }

    /// The next tick due (cancel-safe: a tick not taken stays due).
    pub async fn next(&mut self) -> Tick {
        tokio::select! {
            biased;
            _ = self.drain.tick() => Tick::Drain,
            _ = self.mappings.tick() => Tick::Mappings,
            _ = self.rings.tick() => Tick::Rings,
        }
    }
}

impl Default for Ticks {
    fn default() -> Self {
        Ticks::new()
    }
}

/// Waits until `deadline`, or forever without one (a command's
/// `--duration`, in a `select!`).
pub async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Now, in nanoseconds since the Unix epoch (a profile's start time).
pub fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A copy of a session's data at one moment, to take differences from:
/// the data of the epoch then, which epoch, and when (monotonic ns).
pub struct Mark {
    data: Aggregate,
    epoch: u64,
    ns: u64,
}

impl Mark {
    /// Folds exited threads as the session did (see
    /// [`Session::fold_exited_threads`]), or its differences would be wrong.
    pub fn fold_threads(&mut self, folding: &HashMap<u32, u32>) {
        self.data.fold_threads(folding);
    }
}

/// Target processes with the programs attached to them.
pub struct Session {
    targets: Targets,
    /// The one process recorded, for a plain `--pid` or a command (the Go
    /// features and the userspace unwinder are for one process).
    primary: Option<u32>,
    processes: Processes,
    attached: Attached,
    sources: Sources,
    unwinder: Unwinder,
    aggregate: Aggregate,
    symbols: Symbols,
    threads: Threads,
    unwind_mode: UnwindMode,
    frequency: u64,
    /// Mappings ticks so far (a name is looked for every fourth).
    mapping_ticks: u64,
    /// For a Go target, how it was built (Go version, module, settings).
    go_build: Option<String>,
    /// For a Go target, its binary, and its wait reasons by number once
    /// read from the running process (see [`Session::read_go_reasons`]).
    go_binary: Option<Rc<go::GoBinary>>,
    go_reasons: Vec<String>,
    /// Reads of the wait reasons tried so far (they stop after a few).
    go_reason_reads: u32,
    /// The kinds recorded.
    kinds: Vec<ProfileKind>,
    /// When recording began.
    started: Instant,
    /// A long session's window (`serve --window`): `aggregate` holds the
    /// data since the last rotation, `previous` the epoch before it (let go
    /// at the next rotation); `epoch` counts rotations; and when the data
    /// kept begins.
    previous: Aggregate,
    epoch: u64,
    window_started: Instant,
    rotated_at: Instant,
    /// The events let go at rotations, without their stacks: the running
    /// totals (metrics) go on counting them.
    carried: Aggregate,
    /// What rotations let go: events, and addresses' names.
    pub evicted_events: u64,
    pub evicted_symbols: u64,
    /// Ids in the targets map found to be threads, not processes.
    thread_ids: std::collections::HashSet<u32>,
    /// Stack-map-full losses when last looked, and the last recycling.
    stack_maps_full: u64,
    last_recycle: Instant,
}

/// Where a Go binary's first page is mapped, against where it loads (0 when
/// it is not mapped yet: a started command before its exec).
fn go_bias(mappings: &[procfs::Mapping], exe: &str, binary: &go::GoBinary) -> u64 {
    mappings
        .iter()
        .filter(|m| m.path.as_deref() == Some(exe) && m.offset == 0)
        .map(|m| m.start)
        .min()
        .map_or(0, |start| start.saturating_sub(binary.first_load))
}

/// The most distinct events a long session keeps per rotation (two
/// rotations' worth are kept): a few hundred bytes each with their stacks.
pub const MAX_EPOCH_EVENTS: usize = 100_000;

/// Stack maps that fill up are recycled at most this often.
const RECYCLE_EVERY: Duration = Duration::from_secs(10);

/// Up to this many live processes have their threads listed from /proc on
/// every drain (names and liveness; the kernel names the others).
const CPU_THREADS_LIMIT: usize = 64;

/// How many drains may try to read a Go target's wait reasons (a started
/// command needs a moment after its exec).
const GO_REASON_READS: u32 = 5;

impl Session {
    /// Loads and attaches the programs for `targets` and starts recording
    /// (a started command is released and recorded from its exec on).
    pub fn start(
        mut targets: Targets,
        load: &LoadConfig,
        max_depth: usize,
    ) -> anyhow::Result<Self> {
        let primary = targets.primary().map(|t| t.pid);
        let executable = targets.primary().and_then(|t| t.executable.clone());
        let spawned = targets.is_spawned();
        let go = executable
            .as_deref()
            .is_some_and(|exe| go::is_go_executable(Path::new(exe)));
        if primary.is_none() && load.unwind == UnwindMode::Copy {
            anyhow::bail!(
                "--unwind copy unwinds the stacks of one process; for {} use --unwind dwarf (the default) or fp",
                targets.describe()
            );
        }
        let unwind = go::unwind_mode(load.unwind, go);
        let name = targets
            .primary()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        if unwind != load.unwind {
            info!(
                "{name} is a Go program: its stacks are walked by frame pointers in the kernel (Go code keeps them and has no .eh_frame), not --unwind {}",
                load.unwind.name()
            );
        }
        // A Go binary is read before loading: the Go wait probes go on it.
        let go_binary = match (go, executable.as_deref()) {
            (true, Some(exe)) => match go::GoBinary::read(exe) {
                Ok(binary) => binary.map(Rc::new),
                Err(err) => {
                    warn!("{exe}: {err}; its frames stay unnamed");
                    None
                }
            },
            _ => None,
        };
        let go_waits = match load.kinds.iter().find(|k| k.is_go()) {
            None => None,
            Some(kind) => {
                let (Some(binary), Some(exe), Some(pid)) =
                    (&go_binary, executable.as_deref(), primary)
                else {
                    anyhow::bail!(
                        "--profile {}: {} is not one Go program whose runtime can be read; the Go kinds need one (give --pid PID of a Go program)",
                        kind.name(),
                        targets.describe()
                    );
                };
                let sema_only = !load.kinds.contains(&ProfileKind::GoBlock);
                let probes = go::probes::wait_probes(binary, sema_only).map_err(|why| {
                    anyhow::anyhow!(
                        "cannot probe the Go runtime of {exe} for --profile {}: {why}",
                        kind.name()
                    )
                })?;
                // A running process's own file, even if replaced on disk since.
                let path = if spawned {
                    exe.to_owned()
                } else {
                    format!("/proc/{pid}/exe")
                };
                Some(GoWaitProbes {
                    path,
                    probes,
                    sema_only,
                })
            }
        };
        let selection = match (&targets.spec, &targets.cgroup) {
            (TargetSpec::Cgroup(_), Some(cgroup)) => Selection {
                mode: TargetMode::Cgroup,
                cgroup: (cgroup.id, cgroup.level),
                follow_forks: false,
            },
            (TargetSpec::All, _) => Selection {
                mode: TargetMode::All,
                cgroup: (0, 0),
                follow_forks: false,
            },
            (spec, _) => Selection::listed(spec.follows_forks()),
        };
        let load = &LoadConfig {
            selection,
            go_tgid: if go_waits.is_some() {
                primary.unwrap_or(0)
            } else {
                0
            },
            arm_on_exec: spawned,
            unwind,
            go_waits,
            ..load.clone()
        };
        let mut attached = Attached::load(load)?;
        let mut sources = Sources::open(&mut attached)?;
        let initial = targets.initial_pids();
        if selection.mode == TargetMode::Set {
            sources.add_targets(&initial)?;
        }
        let mut processes = Processes::new();
        let mut symbols = Symbols::new();
        for pid in &initial {
            processes.note(*pid, None);
            if !spawned {
                let mappings = procfs::read_mappings(*pid);
                if unwind == UnwindMode::Dwarf {
                    // The walker's tables are in place before the first event.
                    sources.refresh_unwind_tables(*pid, &mappings);
                }
                symbols.cache_mappings(*pid, &mappings);
            }
        }
        if !spawned {
            sources.arm()?;
        }
        // A started command arms the programs itself when its exec completes:
        // what the held child did before, as a copy of this program, is not
        // recorded.
        if let Some(target) = targets.primary_mut() {
            target.release()?;
        }
        let mut go_build = None;
        if let Some(pid) = primary {
            if spawned {
                // The command's image is in place (release returns after its
                // exec); the dynamic loader maps its libraries within
                // milliseconds. The walker's tables follow once the mappings
                // settle, so the command's own code is walked from its start.
                let mappings = settled_mappings(pid);
                if unwind == UnwindMode::Dwarf {
                    sources.refresh_unwind_tables(pid, &mappings);
                }
                symbols.cache_mappings(pid, &mappings);
                // Named as its new image names it.
                processes.forget(pid);
                processes.note(pid, Some(&name));
            }
            if let (Some(binary), Some(exe)) = (&go_binary, executable.as_deref()) {
                go_build = binary.build.as_ref().map(|b| b.summary());
                let bias = go_bias(&procfs::read_mappings(pid), exe, binary);
                sources.complete_go_stacks(binary.clone(), bias);
                symbols.add_go_binary(exe, binary.clone());
            }
        }
        let mut threads = Threads::default();
        threads.refresh(processes.alive().map(|p| p.pid));
        let mut session = Session {
            unwinder: Unwinder::new(primary.unwrap_or(0), max_depth),
            aggregate: Aggregate::new(),
            targets,
            primary,
            processes,
            attached,
            sources,
            symbols,
            threads,
            unwind_mode: load.unwind,
            frequency: load.frequency,
            mapping_ticks: 0,
            go_build,
            go_binary,
            go_reasons: Vec::new(),
            go_reason_reads: 0,
            kinds: load.kinds.clone(),
            started: Instant::now(),
            previous: Aggregate::new(),
            epoch: 0,
            window_started: Instant::now(),
            rotated_at: Instant::now(),
            thread_ids: Default::default(),
            stack_maps_full: 0,
            last_recycle: Instant::now(),
            carried: Aggregate::new(),
            evicted_events: 0,
            evicted_symbols: 0,
        };
        if !spawned {
            session.read_go_reasons();
        }
        Ok(session)
    }

    /// Reads a Go target's wait reasons (`runtime.waitReasonStrings`) from
    /// the running process, once, so Go waits are named as its Go version
    /// names them.
    fn read_go_reasons(&mut self) {
        let Some(binary) = &self.go_binary else {
            return;
        };
        let Some(target) = self.targets.primary() else {
            return;
        };
        if !self.go_reasons.is_empty()
            || self.go_reason_reads >= GO_REASON_READS
            || !target.is_alive()
        {
            return;
        }
        self.go_reason_reads += 1;
        let Some(exe) = target.executable.as_deref() else {
            return;
        };
        let bias = go_bias(&procfs::read_mappings(target.pid), exe, binary);
        match go::goroutines::wait_reasons(target.pid, binary, bias) {
            Ok(reasons) => self.go_reasons = reasons,
            Err(why) if self.go_reason_reads == GO_REASON_READS => warn!(
                "cannot read the Go runtime's wait reasons: {why}; Go waits are shown by number"
            ),
            Err(why) => debug!("Go wait reasons not read yet: {why}"),
        }
    }

    /// The one process recorded (a plain `--pid`, a command), if so.
    pub fn pid(&self) -> Option<u32> {
        self.primary
    }

    /// The process name of the one process recorded, else what is recorded
    /// in words.
    pub fn name(&self) -> String {
        match self.targets.primary() {
            Some(target) => target.name.clone(),
            None => self.targets.describe(),
        }
    }

    /// What is recorded, in words.
    pub fn describe(&self) -> String {
        self.targets.describe()
    }

    /// Resolves when every process given (`--pid`, the command) has exited;
    /// never for a cgroup, a name or the whole machine.
    pub async fn target_exited(&self) {
        self.targets.roots_exited().await
    }

    /// Whether any recorded process still runs.
    pub fn any_alive(&self) -> bool {
        self.processes.alive().next().is_some()
    }

    /// Does what a tick asks.
    pub fn on_tick(&mut self, tick: Tick) -> anyhow::Result<()> {
        match tick {
            Tick::Rings => {
                self.write_wanted_tables();
                self.read_rings()
            }
            Tick::Mappings => self.refresh_mappings(),
            Tick::Drain => self.drain()?,
        }
        Ok(())
    }

    /// Writes the walker's tables of the processes it asked for (new ones,
    /// new images, code mapped since), at once rather than at the next
    /// mappings tick.
    fn write_wanted_tables(&mut self) {
        if self.unwind_mode != UnwindMode::Dwarf || !self.attached.is_attached() {
            return;
        }
        for pid in self.sources.tables_wanted() {
            let mappings = procfs::read_mappings(pid);
            if !self.note_process(pid, Some(&mappings)) {
                self.symbols.cache_mappings(pid, &mappings);
            }
            if self.processes.is_alive(pid) {
                self.sources.refresh_unwind_tables(pid, &mappings);
            }
        }
    }

    /// Notes a process seen for the first time: named, its mappings (those
    /// just read, else read now) cached for the symbolizer. Returns whether
    /// it was new.
    fn note_process(&mut self, pid: u32, mappings: Option<&[procfs::Mapping]>) -> bool {
        // One gone already is named as the kernel saw its main thread.
        let fallback = self.threads.name(pid).map(str::to_owned);
        if !self.processes.note(pid, fallback.as_deref()) {
            return false;
        }
        debug!(pid, "new process recorded");
        match mappings {
            Some(mappings) => self.symbols.cache_mappings(pid, mappings),
            None => self
                .symbols
                .cache_mappings(pid, &procfs::read_mappings(pid)),
        }
        true
    }

    /// The mappings tick: for a few processes, one read of each one's
    /// mappings for the unwinder (libraries loaded since, while mapped) and
    /// the symbolizer; the copied stacks unwound while their binaries are
    /// still mapped; CPU times and exits.
    fn refresh_mappings(&mut self) {
        self.mapping_ticks += 1;
        let alive: Vec<u32> = self.processes.alive().map(|p| p.pid).collect();
        if alive.len() <= MAPPINGS_EVERY_PROCESS {
            for pid in alive {
                let mappings = procfs::read_mappings(pid);
                match self.unwind_mode {
                    UnwindMode::Dwarf => self.sources.refresh_unwind_tables(pid, &mappings),
                    UnwindMode::Copy if Some(pid) == self.primary => {
                        self.unwinder.refresh_modules(&mappings)
                    }
                    _ => {}
                }
                self.symbols.cache_mappings(pid, &mappings);
            }
        }
        self.read_rings();
        if self.mapping_ticks.is_multiple_of(4) {
            self.find_named();
        }
        self.read_cpu_time();
    }

    /// `--comm NAME`: adds the processes of that name started since.
    fn find_named(&mut self) {
        let TargetSpec::Comm(name) = &self.targets.spec else {
            return;
        };
        let name = name.clone();
        let new: Vec<u32> = processes_named(&name)
            .into_iter()
            .filter(|pid| !self.processes.is_alive(*pid))
            .collect();
        if new.is_empty() || !self.attached.is_attached() {
            return;
        }
        if let Err(err) = self.sources.add_targets(&new) {
            warn!("{err:#}");
        }
        for pid in new {
            let restarts = self.processes.restarts;
            let mappings = procfs::read_mappings(pid);
            self.note_process(pid, Some(&mappings));
            if self.processes.restarts > restarts {
                info!("{name} started again as PID {pid}: recording it");
            }
            if self.unwind_mode == UnwindMode::Dwarf {
                self.sources.refresh_unwind_tables(pid, &mappings);
            }
        }
    }

    /// The drain tick: everything the kernel counted since the last drain,
    /// symbolized.
    pub fn drain(&mut self) -> anyhow::Result<()> {
        self.read_rings();
        let noted = self.sources.drain(&mut self.aggregate)?;
        self.aggregate
            .set_recursion_misses(self.attached.recursion_misses());
        self.forget_drained_stacks();
        self.threads.note(noted);
        if self.targets.spec.follows_forks() {
            // Processes forked since, even those that have not run yet (a
            // thread's id, also in the map, is looked up once).
            let listed = self.sources.targets();
            self.thread_ids.retain(|tid| listed.contains(tid));
            for pid in listed {
                if self.processes.get(pid).is_some() || self.thread_ids.contains(&pid) {
                    continue;
                }
                if procfs::tgid_of(pid) == Some(pid) {
                    self.note_process(pid, None);
                } else {
                    self.thread_ids.insert(pid);
                }
            }
        }
        self.name_fresh();
        self.threads.refresh(
            self.processes
                .alive()
                .map(|p| p.pid)
                .take(CPU_THREADS_LIMIT),
        );
        self.read_go_reasons();
        // Stack maps that filled up since the last look are recycled (at
        // most every RECYCLE_EVERY): stacks then keep being taken.
        let totals = self.aggregate.totals();
        let full =
            totals.counter(Counter::UserStackMapFull) + totals.counter(Counter::KernelStackMapFull);
        if full > self.stack_maps_full && self.last_recycle.elapsed() >= RECYCLE_EVERY {
            self.stack_maps_full = full;
            self.last_recycle = Instant::now();
            self.recycle_stacks();
        }
        debug!(events = self.aggregate.len(), "drained");
        Ok(())
    }

    /// Waits still under way now, counted with the time waited so far and
    /// marked (`[still blocked]`): futex waits (futex kind) and blocks off
    /// the CPU (offcpu kind) of threads that have not come back. Each
    /// thread's stack is read from outside (as `dump` reads it); its wait
    /// counts from its start when the kernel saw it begin, else from the
    /// recording's start (it was blocked before). Call while the programs
    /// are attached and the target runs; returns how many were noted.
    pub fn note_waits_in_progress(&mut self) -> usize {
        let waits = self.waits_in_progress(self.started_ns(), &self.kinds.clone());
        let noted = waits.len();
        for (event, value) in waits {
            self.aggregate.add(event, value);
        }
        self.name_fresh();
        noted
    }

    /// Everything collected since `mark` (or from the start), with the
    /// waits of `kind` still under way now counted from their start or the
    /// mark's time, whichever is later, and marked — for a profile served
    /// now (`serve`), without adding them to what is collected (they are
    /// counted again, whole, when they end).
    pub fn snapshot_with_waits(&mut self, mark: Option<&Mark>, kind: ProfileKind) -> Snapshot<'_> {
        let since = mark.map_or_else(|| self.started_ns(), |m| m.ns);
        let waits = if self.attached.is_attached() {
            self.waits_in_progress(since, &[kind])
        } else {
            Vec::new()
        };
        let mut aggregate = match mark {
            Some(mark) => self.since(mark),
            None => {
                let mut all = self.aggregate.clone();
                all.add_events(&self.previous);
                all
            }
        };
        if !waits.is_empty() {
            // What is fresh in the copy was the session's to name.
            let _ = aggregate.take_fresh();
            for (event, value) in waits {
                aggregate.add(event, value);
            }
            let fresh = aggregate.take_fresh();
            self.name_stacks(fresh);
        }
        self.snapshot_of(vec![Cow::Owned(aggregate)])
    }

    /// What was collected since `mark`: from its epoch's data (the current
    /// one, or the one before after a rotation) on.
    fn since(&self, mark: &Mark) -> Aggregate {
        if mark.epoch == self.epoch {
            return self.aggregate.since(&mark.data);
        }
        // A rotation since: the rest of the mark's epoch, then all of this
        // one (the kernel's totals are this epoch's, which carry on).
        let mut since = if mark.epoch + 1 == self.epoch {
            self.previous.since(&mark.data)
        } else {
            Aggregate::new()
        };
        since.add_events(&self.aggregate);
        since.set_totals(self.aggregate.totals().since(mark.data.totals()));
        since
    }

    /// When recording began, on the kernel's clock (monotonic ns).
    fn started_ns(&self) -> u64 {
        monotonic_ns()
            .saturating_sub(u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// The waits of `kinds` (futex, offcpu) under way now, each with the
    /// time waited since its start or `since` (monotonic ns), whichever is
    /// later: see [`Session::note_waits_in_progress`].
    fn waits_in_progress(&mut self, since: u64, kinds: &[ProfileKind]) -> Vec<(Event, Value)> {
        let futex = kinds.contains(&ProfileKind::Futex) && self.kinds.contains(&ProfileKind::Futex);
        let offcpu =
            kinds.contains(&ProfileKind::OffCpu) && self.kinds.contains(&ProfileKind::OffCpu);
        let alive: Vec<u32> = self.processes.alive().map(|p| p.pid).collect();
        if !(futex || offcpu) || alive.is_empty() || alive.len() > WAITS_IN_PROGRESS_PROCESSES {
            return Vec::new();
        }
        // /proc first, the kernel's waits after: a thread /proc saw
        // blocked whose wait the kernel no longer holds has run since.
        let mut threads = Vec::new();
        for pid in alive {
            let read = if Some(pid) == self.primary {
                inspect::read_threads(pid, &mut self.unwinder)
            } else {
                inspect::read_threads(pid, &mut Unwinder::new(pid, self.unwinder.max_depth()))
            };
            match read {
                Ok(read) => threads.extend(read.into_iter().map(|t| (pid, t))),
                Err(err) => {
                    debug!("cannot read the threads of PID {pid} for their waits under way: {err}")
                }
            }
        }
        let now = monotonic_ns();
        let in_flight: HashMap<u32, FutexInFlight> = self
            .attached
            .hash_entries(maps::MAP_FUTEX_INFLIGHT)
            .into_iter()
            .collect();
        let switched_out: HashMap<u32, SwitchedOut> = self
            .attached
            .hash_entries(maps::MAP_SWITCHED_OUT)
            .into_iter()
            .collect();
        // Threads the kernel saw run during the recording: with no wait
        // under way in its maps, such a thread is not blocked since the
        // start (it ran after /proc was read). Only a thread never seen has
        // been blocked since before the recording.
        let pending = self.sources.noted_threads();
        let ran = |tid: u32| self.threads.seen_by_kernel(tid) || pending.contains(&tid);
        let mut noted = Vec::new();
        for (pid, thread) in threads {
            let waited = |start: Option<u64>| now.saturating_sub(start.unwrap_or(since).max(since));
            let futex_lock = match thread.activity {
                inspect::Activity::Syscall {
                    lock: Some(lock), ..
                } => Some(lock),
                _ => None,
            };
            let mut waits = Vec::new();
            if let Some(lock) = futex_lock.filter(|_| futex) {
                let start = match in_flight.get(&thread.tid) {
                    Some(wait) if wait.lock == lock => Some(Some(wait.start_ns)),
                    // Another wait since /proc was read, or none: it ran.
                    Some(_) => None,
                    None if ran(thread.tid) => None,
                    None => Some(None),
                };
                if let Some(start) = start {
                    waits.push((Origin::FutexWait, lock, waited(start)));
                }
            }
            if offcpu && matches!(thread.state, 'S' | 'D') {
                let start = match switched_out.get(&thread.tid) {
                    Some(out) if out.woken_ns == 0 && out.state == OffCpuState::Blocked as u32 => {
                        Some(Some(out.switched_out_ns))
                    }
                    // Woken, or preempted since: not blocked now.
                    Some(_) => None,
                    None if ran(thread.tid) => None,
                    None => Some(None),
                };
                if let Some(start) = start {
                    waits.push((Origin::OffCpu(OffCpuState::Blocked), 0, waited(start)));
                }
            }
            for (origin, lock, ns) in waits {
                let event = Event {
                    origin,
                    pid,
                    tid: thread.tid,
                    user: thread.user.clone(),
                    kernel: Stack::Empty,
                    lock,
                    waker: None,
                    in_progress: true,
                };
                noted.push((event, Value::one(ns)));
            }
        }
        noted
    }

    /// Detaches every program and drains what is left; the data stays
    /// readable. Idempotent.
    pub fn detach_and_drain(&mut self) -> anyhow::Result<()> {
        self.attached.detach();
        self.read_rings();
        let noted = self.sources.drain_all(&mut self.aggregate)?;
        self.aggregate
            .set_recursion_misses(self.attached.recursion_misses());
        self.threads.note(noted);
        // Which processes still run decides how their addresses are named.
        self.read_cpu_time();
        let alive: Vec<u32> = self.processes.alive().map(|p| p.pid).collect();
        if alive.len() <= MAPPINGS_EVERY_PROCESS {
            for pid in &alive {
                self.symbols
                    .cache_mappings(*pid, &procfs::read_mappings(*pid));
            }
        }
        self.threads
            .refresh(alive.iter().copied().take(CPU_THREADS_LIMIT));
        self.name_fresh();
        Ok(())
    }

    /// Reads the recorded processes' CPU times now, and notes those that
    /// exited (their walker tables are freed).
    pub fn read_cpu_time(&mut self) {
        for pid in self.processes.refresh() {
            debug!(pid, "recorded process exited");
            self.sources.forget_process(pid);
        }
    }

    /// The CPU time the processes sampled used while recorded, when it
    /// could be read: exact for a command we started and reaped (with the
    /// children it reaped), else the differences of reads of /proc (the
    /// last read of a process that exited is its final one when it was
    /// seen as a zombie).
    pub fn target_cpu(&self) -> Option<Duration> {
        if let Some(exact) = self.targets.primary().and_then(|t| t.spawned_cpu_time()) {
            let sampled = self.aggregate.processes_sampled();
            if sampled.len() <= 1 {
                return Some(exact);
            }
        }
        if !self.processes.cpu_known() {
            return None;
        }
        let sampled = self.aggregate.processes_sampled();
        Some(
            self.processes
                .all()
                .filter(|p| sampled.contains(&p.pid))
                .map(|p| p.cpu_used())
                .sum(),
        )
    }

    /// Ends the targets' part: reaps a command we started (stopping it
    /// first when `stop`), and says how the target ended, if it did (the
    /// one process recorded).
    pub fn finish_target(&mut self, stop: bool) -> Option<TargetExit> {
        let mut exit = None;
        for root in &mut self.targets.roots {
            exit = root.finish(stop);
        }
        exit.filter(|_| self.targets.roots.len() == 1)
    }

    /// For a Go target, how it was built (Go version, module, settings).
    pub fn go_build(&self) -> Option<&str> {
        self.go_build.as_deref()
    }

    /// Whether we started the target ourselves.
    pub fn is_spawned(&self) -> bool {
        self.targets.is_spawned()
    }

    /// A copy of the data now, to take a difference from later.
    pub fn mark(&self) -> Mark {
        Mark {
            data: self.aggregate.clone(),
            epoch: self.epoch,
            ns: monotonic_ns(),
        }
    }

    /// Lets go of the data older than the last rotation (a long session
    /// keeps between one and two rotation periods of it), keeping its sums
    /// without stacks for the running totals; marks (profiles being taken)
    /// stay valid over one rotation. Then forgets the names of addresses
    /// and processes nothing kept refers to, and recycles the kernel's
    /// stack storage. Returns how many events were let go.
    pub fn rotate(&mut self) -> usize {
        let dropped = std::mem::take(&mut self.previous);
        let evicted = dropped.len();
        self.carried.add_stackless(dropped);
        let totals = self.aggregate.totals().clone();
        self.previous = std::mem::replace(&mut self.aggregate, Aggregate::with_totals(totals));
        self.epoch += 1;
        self.window_started = self.rotated_at;
        self.rotated_at = Instant::now();
        self.evicted_events += evicted as u64;
        // Names of what is kept, and of processes still running.
        let (mut user, mut kernel) = Default::default();
        self.previous.addresses(&mut user, &mut kernel);
        let kept = self.previous.pids();
        let processes = &self.processes;
        let forgotten = self.symbols.retain(&user, &kernel, |pid| {
            kept.contains(&pid) || processes.is_alive(pid)
        });
        self.evicted_symbols += forgotten as u64;
        let carried = self.carried.pids();
        let gone: Vec<u32> = self
            .processes
            .all()
            .filter(|p| !p.alive && !kept.contains(&p.pid) && !carried.contains(&p.pid))
            .map(|p| p.pid)
            .collect();
        for pid in gone {
            self.processes.forget(pid);
        }
        self.recycle_stacks();
        debug!(evicted, forgotten, "rotated");
        evicted
    }

    /// Whether the data since the last rotation holds more distinct events
    /// than a long session keeps per rotation ([`MAX_EPOCH_EVENTS`]): a
    /// target whose stacks never repeat then rotates sooner, so memory
    /// stays bounded whatever the window.
    pub fn over_capacity(&self) -> bool {
        self.aggregate.len() > MAX_EPOCH_EVENTS
    }

    /// When the data kept begins (the start, or the rotation before last).
    pub fn window_started(&self) -> Instant {
        self.window_started
    }

    /// Everything kept with the running totals of what rotations let go
    /// (for the metrics: their counters never go back).
    pub fn snapshot_with_totals(&self) -> Snapshot<'_> {
        self.snapshot_of(vec![
            Cow::Borrowed(&self.aggregate),
            Cow::Borrowed(&self.previous),
            Cow::Borrowed(&self.carried),
        ])
    }

    /// The stack ids of the waits under way (switched out, in a futex
    /// wait, and with `parked`, parked goroutines: a long read for a Go
    /// program with many).
    fn in_flight_stacks(&self, parked: bool) -> std::collections::HashSet<i32> {
        let mut in_flight = std::collections::HashSet::new();
        for (_, out) in self
            .attached
            .hash_entries::<u32, SwitchedOut>(maps::MAP_SWITCHED_OUT)
        {
            in_flight.extend([
                out.user_stack_id,
                out.kernel_stack_id,
                out.waker.user_stack_id,
                out.waker.kernel_stack_id,
            ]);
        }
        for (_, wait) in self
            .attached
            .hash_entries::<u32, FutexInFlight>(maps::MAP_FUTEX_INFLIGHT)
        {
            in_flight.extend([wait.waker.user_stack_id, wait.waker.kernel_stack_id]);
        }
        if parked {
            for (_, parked) in self
                .attached
                .hash_entries::<u64, profiler_common::gowait::GoParked>(maps::MAP_GO_PARKED)
            {
                in_flight.insert(parked.user_stack_id);
            }
        }
        in_flight
    }

    /// Removes from the kernel's long-lived stack maps the stacks the last
    /// drain read and nothing still refers to (see
    /// `Sources::forget_drained_stacks`): ever-new stacks then do not fill
    /// them. Not for Go waits (reading every parked goroutine each second
    /// would cost too much): those are recycled at rotations and when full.
    fn forget_drained_stacks(&mut self) {
        if !self.attached.is_attached() || self.kinds.iter().any(|k| k.is_go()) {
            return;
        }
        let in_flight = self.in_flight_stacks(false);
        let removed = self.sources.forget_drained_stacks(in_flight);
        debug!(removed, "drained stacks removed from the kernel");
    }

    /// Recycles the kernel's long-lived stack maps, keeping the stacks of
    /// waits under way.
    pub fn recycle_stacks(&mut self) {
        if !self.attached.is_attached() {
            return;
        }
        let in_flight = self.in_flight_stacks(true);
        match self.sources.recycle_stacks(in_flight) {
            Ok(removed) => debug!(removed, "stack maps recycled"),
            Err(err) => warn!("{err:#}"),
        }
    }

    /// Everything kept (for `record`: everything collected).
    pub fn snapshot(&self) -> Snapshot<'_> {
        self.snapshot_of(vec![
            Cow::Borrowed(&self.aggregate),
            Cow::Borrowed(&self.previous),
        ])
    }

    /// What was collected since `mark`.
    pub fn snapshot_since(&self, mark: &Mark) -> Snapshot<'_> {
        self.snapshot_of(vec![Cow::Owned(self.since(mark))])
    }

    /// A snapshot of `parts` summed (the kernel's totals are the first's).
    fn snapshot_of<'s>(&'s self, parts: Vec<Cow<'s, Aggregate>>) -> Snapshot<'s> {
        let up = self.attached.is_attached() && self.any_alive();
        let primary = self.targets.primary();
        let target = TargetState {
            pid: self.primary.unwrap_or(0),
            name: self.name(),
            description: self.targets.describe(),
            executable: primary.and_then(|t| t.executable.clone()),
            up,
            threads: if up { self.threads.live().len() } else { 0 },
            processes: self.processes.alive().count(),
            restarts: self.processes.restarts,
            per_process: self.targets.spec.spans_processes(),
        };
        let programs = Programs {
            attachments: &self.attached.attachments,
            attached: self.attached.is_attached(),
            cpus: self.attached.cpus,
            kernel_cost: &self.attached.kernel_cost,
        };
        Snapshot {
            target,
            programs,
            frequency: self.frequency,
            unwind: self.unwinder.stats(),
            threads: &self.threads,
            collected: Collected::new(parts, &self.symbols),
            processes: &self.processes,
            evicted: crate::snapshot::Evicted {
                events: self.evicted_events,
                symbols: self.evicted_symbols,
                stacks: self.sources.recycled(),
            },
            go_reasons: &self.go_reasons,
        }
    }

    /// Folds the data of threads that have exited into one group per
    /// thread name, so a long session's memory follows the distinct stacks
    /// and thread names, not every thread that ever lived. Returns the
    /// folding (thread id -> group id) for [`Mark`]s kept elsewhere; empty
    /// once the target is gone. Call after a drain.
    pub fn fold_exited_threads(&mut self) -> HashMap<u32, u32> {
        let folding = self.threads.fold_exited(self.aggregate.threads(), "exited");
        if folding.is_empty() {
            return folding;
        }
        self.aggregate.fold_threads(&folding);
        self.previous.fold_threads(&folding);
        self.carried.fold_threads(&folding);
        self.sources
            .forget_threads(|tid| folding.contains_key(&tid));
        debug!(threads = folding.len(), "folded exited threads");
        folding
    }

    fn read_rings(&mut self) {
        self.sources
            .read_rings(&mut self.unwinder, &mut self.aggregate);
    }

    /// Symbolizes the stacks added since the last call, names new lock
    /// words, and names the processes of wakers from outside the target.
    fn name_fresh(&mut self) {
        let fresh = self.aggregate.take_fresh();
        self.name_stacks(fresh);
    }

    /// Names new stacks, locks and processes (a process seen for the first
    /// time is noted first, while it may still run).
    fn name_stacks(&mut self, fresh: crate::aggregate::Fresh) {
        let mut user = Vec::new();
        let mut kernel = Vec::new();
        for (pid, stack) in &fresh.user {
            if !self.symbols.knows(*pid) {
                self.note_process(*pid, None);
            }
            user.extend(stack.lookup_addrs().into_iter().map(|a| (*pid, a)));
        }
        for stack in &fresh.kernel {
            kernel.extend(stack.lookup_addrs());
        }
        let processes = &self.processes;
        self.symbols
            .resolve(user, kernel, |pid| processes.is_alive(pid));
        self.symbols.name_locks(fresh.locks);
        for tgid in fresh.processes {
            self.threads.note_process(tgid);
        }
    }
}

/// CLOCK_MONOTONIC now in nanoseconds: the kernel programs' clock
/// (`bpf_ktime_get_ns`).
/// The mappings of a command just started, once the dynamic loader has
/// mapped its libraries: read every millisecond until two reads agree
/// (at most a tenth of a second).
fn settled_mappings(pid: u32) -> Vec<procfs::Mapping> {
    let deadline = Instant::now() + Duration::from_millis(100);
    let mut last = procfs::read_mappings(pid);
    loop {
        std::thread::sleep(Duration::from_millis(1));
        let now = procfs::read_mappings(pid);
        let same = now.len() == last.len()
            && now
                .iter()
                .zip(&last)
                .all(|(a, b)| a.start == b.start && a.end == b.end);
        if same || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}
