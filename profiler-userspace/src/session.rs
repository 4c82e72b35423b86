//! One attached target and the periodic work that keeps its data current:
//! the loaded programs, the collector draining them, the unwinder and the
//! symbolizer. `record` runs a session to a file; `server` keeps one open.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use tracing::debug;

use crate::{
    attach::{Attached, LoadConfig},
    collect::{Collected, Collector},
    profile::{FOLDED_THREADS, Names, Profile, ProfileKind, lookup_addrs},
    symbolize::Symbolize,
    target::{self, Target},
    unwind::Unwind,
};

/// How often the kernel maps are drained (and new stacks symbolized).
const DRAIN_EVERY: Duration = Duration::from_secs(1);
/// How often the target's mappings are re-read (libraries it loads, and a
/// started command's exec) so a target that exits is still symbolized.
const MAPPINGS_EVERY: Duration = Duration::from_millis(250);

/// The drain and mappings ticks of a session's loop: the first drain one
/// period from now, the first mappings read at once; a late tick delays
/// the next rather than bunching up.
pub fn ticks() -> (tokio::time::Interval, tokio::time::Interval) {
    use tokio::time::{Instant, MissedTickBehavior, interval, interval_at};
    let mut drain = interval_at(Instant::now() + DRAIN_EVERY, DRAIN_EVERY);
    drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut mappings = interval(MAPPINGS_EVERY);
    mappings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    (drain, mappings)
}

/// Now, in nanoseconds since the Unix epoch (a profile's start time).
pub fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A target with the programs attached to it.
pub struct Session {
    pub target: Target,
    pub attached: Attached,
    pub collector: Collector,
    pub symbols: Symbolize,
    pub unwind: Unwind,
    names: Names,
    /// Names of the groups exited threads were folded into, by group id
    /// ([`FOLDED_THREADS`] and up), and the other way round.
    folded_names: HashMap<u32, String>,
    folded_groups: HashMap<String, u32>,
    unwind_mode: u32,
    /// The target's own CPU time when recording began (zero for a started
    /// command), and at the last mappings tick while it was alive.
    pub cpu_before: Option<Duration>,
    pub cpu_last: Option<Duration>,
}

impl Session {
    /// Loads and attaches the programs for `target` and starts recording
    /// (a started command is released and recorded from its exec on).
    pub fn start(mut target: Target, load: &LoadConfig, max_depth: usize) -> anyhow::Result<Self> {
        let mut attached = Attached::load(load)?;
        let mut collector = Collector::new(&mut attached, target.pid)?;
        let cpu_before = if target.is_spawned() {
            Some(Duration::ZERO)
        } else {
            target::cpu_time(target.pid)
        };
        if !target.is_spawned() {
            collector.arm()?;
        }
        // A started command arms the programs itself when its exec completes:
        // what the held child did before, as a copy of this program, is not
        // recorded.
        target.release()?;
        let mut symbols = Symbolize::new(target.pid);
        symbols.cache_mappings(&target::read_mappings(target.pid));
        target.refresh_thread_names();
        Ok(Session {
            unwind: Unwind::new(target.pid, max_depth),
            target,
            attached,
            collector,
            symbols,
            names: Names::default(),
            folded_names: HashMap::new(),
            folded_groups: HashMap::new(),
            unwind_mode: load.unwind,
            cpu_before,
            cpu_last: cpu_before,
        })
    }

    pub fn collected(&self) -> &Collected {
        &self.collector.collected
    }

    /// The frequent tick: one read of the mappings for the unwinder
    /// (libraries loaded since, while mapped) and the symbolizer, and the
    /// copied stacks unwound while their binaries are still mapped.
    pub fn refresh_mappings(&mut self) {
        let mappings = target::read_mappings(self.target.pid);
        if self.unwind_mode != profiler_common::UNWIND_FP {
            self.unwind.refresh_modules(&mappings);
        }
        self.drain_copies();
        self.symbols.cache_mappings(&mappings);
        if let Some(cpu) = target::cpu_time(self.target.pid) {
            self.cpu_last = Some(cpu);
        }
    }

    /// The drain tick: everything the kernel counted since the last drain,
    /// symbolized.
    pub fn drain(&mut self) -> anyhow::Result<()> {
        self.drain_copies();
        self.collector.drain()?;
        self.target.refresh_thread_names();
        let alive = self.target.is_alive();
        self.resolve_new(alive);
        debug!(stacks = self.collected().stacks.len(), "drained");
        Ok(())
    }

    /// Detaches every program and drains what is left; the data stays
    /// readable. Idempotent.
    pub fn detach_and_drain(&mut self) -> anyhow::Result<()> {
        self.attached.detach();
        self.drain_copies();
        self.collector.drain_all()?;
        let alive = self.target.is_alive();
        if alive {
            self.target.refresh_thread_names();
            self.symbols
                .cache_mappings(&target::read_mappings(self.target.pid));
        }
        self.resolve_new(alive);
        Ok(())
    }

    /// Reads the target's CPU time now (while it is alive).
    pub fn read_cpu_time(&mut self) {
        if let Some(cpu) = target::cpu_time(self.target.pid) {
            self.cpu_last = Some(cpu);
        }
    }

    /// A profile of one kind from `collected` (all of this session's data,
    /// or a part of it), every address symbolized.
    pub fn profile(
        &self,
        kind: ProfileKind,
        collected: &Collected,
        frequency: u64,
        duration: Duration,
    ) -> Profile {
        let mut profile = Profile::new(
            kind,
            self.target.pid,
            &self.target.name,
            frequency,
            duration,
        );
        profile.executable = self.target.executable.as_deref().map(Into::into);
        profile.with_samples(collected, &self.symbols, &self.names())
    }

    /// Thread names: those the kernel noted (threads that exited between
    /// drains), with the names read from /proc (the latest, for threads seen
    /// alive) on top; and the processes of wakers.
    pub fn names(&self) -> Names {
        let mut threads = self.folded_names.clone();
        threads.extend(
            self.collected()
                .thread_names
                .iter()
                .map(|(t, n)| (*t, n.clone())),
        );
        threads.extend(
            self.target
                .thread_names()
                .iter()
                .map(|(t, n)| (*t, n.clone())),
        );
        Names {
            threads,
            processes: self.names.processes.clone(),
        }
    }

    /// Folds the data of threads that have exited into one group per
    /// thread name, so a long session's memory follows the distinct stacks
    /// and thread names, not every thread that ever lived. Returns the
    /// folding (thread id -> group id) for copies of the data kept
    /// elsewhere; empty once the target is gone. Call after a drain.
    pub fn fold_exited_threads(&mut self) -> HashMap<u32, u32> {
        // Alive as of the last drain's refresh; none once the target is gone.
        let alive = self.target.live_threads();
        if alive.is_empty() {
            return HashMap::new();
        }
        let collected = self.collected();
        let mut exited: HashSet<u32> = HashSet::new();
        exited.extend(collected.stacks.keys().map(|k| k.tid));
        exited.extend(collected.offcpu.keys().map(|k| k.tid));
        exited.extend(collected.futex_waits.keys().map(|k| k.tid));
        exited.extend(collected.futex_wakes.keys().map(|k| k.tid));
        exited.retain(|tid| *tid < FOLDED_THREADS && !alive.contains(tid));
        if exited.is_empty() {
            return HashMap::new();
        }
        let names = self.names();
        let mut folded = HashMap::with_capacity(exited.len());
        for tid in exited {
            let name = names
                .threads
                .get(&tid)
                .cloned()
                .unwrap_or_else(|| self.target.name.clone());
            let next = FOLDED_THREADS + self.folded_groups.len() as u32;
            let group = *self.folded_groups.entry(name.clone()).or_insert(next);
            self.folded_names.insert(group, name);
            folded.insert(tid, group);
        }
        self.collector.collected.fold_threads(&folded);
        self.collector.forget_threads(&folded);
        self.target.forget_threads(folded.keys().copied());
        debug!(threads = folded.len(), "folded exited threads");
        folded
    }

    fn drain_copies(&mut self) {
        self.collector.drain_user_stacks(&mut self.unwind);
        self.collector.drain_offcpu_intervals();
    }

    /// Symbolizes the stacks drained since the last call, names new lock
    /// words, and names the processes of wakers from outside the target.
    fn resolve_new(&mut self, alive: bool) {
        let fresh = self.collector.take_fresh();
        let mut user = Vec::new();
        let mut kernel = Vec::new();
        for (stack, is_user) in &fresh.stacks {
            let addrs = lookup_addrs(stack);
            if *is_user {
                user.extend(addrs);
            } else {
                kernel.extend(addrs);
            }
        }
        self.symbols.resolve(user, kernel, alive);
        self.symbols.name_locks(fresh.locks);
        for tgid in fresh.processes {
            self.names.processes.entry(tgid).or_insert_with(|| {
                target::read_comm(tgid, tgid).unwrap_or_else(|_| "exited".to_owned())
            });
        }
    }
}
