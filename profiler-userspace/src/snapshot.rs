//! What a session hands its renderers (the report, the metrics, health and
//! the pprof endpoints): the target's state, the attached programs, the
//! statistics, the thread registry, and the collected events, from which
//! it builds the profiles (every address named) and the summaries the
//! report and metrics give.

use std::{borrow::Cow, collections::HashMap, rc::Rc, time::Duration};

use profiler_common::counters::Counter;

use crate::{
    aggregate::{Aggregate, Totals},
    attach::ProgramCost,
    go,
    model::{
        Event, FOLDED_THREADS, Frame, FrameKind, OffCpuState, Origin, Profile, ProfileKind,
        STILL_BLOCKED, Sample, Stack, Value, Waker, WokenBy, thread_label,
    },
    processes::Processes,
    symbolize::{SymbolizeStats, Symbols},
    threads::Threads,
    unwind::UnwindStats,
};

/// The target as a snapshot sees it.
#[derive(Debug, Clone)]
pub struct TargetState {
    /// The one process recorded (a plain `--pid`, a command), else 0.
    pub pid: u32,
    /// Its process name (`comm`), else what is recorded in words.
    pub name: String,
    /// What is recorded, in words (`PID 42 (nginx) and its descendants`).
    pub description: String,
    pub executable: Option<String>,
    /// Whether any recorded process still runs.
    pub up: bool,
    /// Threads alive at the last drain (0 once every process is gone).
    pub threads: usize,
    /// Recorded processes alive now.
    pub processes: usize,
    /// Times the recorded processes all exited and a new one appeared.
    pub restarts: u64,
    /// Whether the recording may hold several processes (stacks then
    /// start with their process).
    pub per_process: bool,
}

/// The programs in the kernel.
#[derive(Debug, Clone, Copy)]
pub struct Programs<'s> {
    /// Each program and where it is (or was) attached, as a phrase.
    pub attachments: &'s [String],
    /// Whether they are still attached.
    pub attached: bool,
    /// How many CPUs the sampler runs on.
    pub cpus: usize,
    /// What each program cost in the kernel (once detached, and only when
    /// the kernel kept BPF statistics).
    pub kernel_cost: &'s [ProgramCost],
}

/// What a long session let go to stay within its memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evicted {
    /// Events older than the window (their sums stay in the totals).
    pub events: u64,
    /// Names of addresses nothing referred to any more.
    pub symbols: u64,
    /// Stacks recycled from the kernel's long-lived stack maps.
    pub stacks: u64,
}

/// One view of a session's data.
pub struct Snapshot<'s> {
    pub target: TargetState,
    pub programs: Programs<'s>,
    /// On-CPU samples per second per CPU.
    pub frequency: u64,
    /// What the userspace unwinder did (nothing when stacks were only
    /// walked in the kernel).
    pub unwind: &'s UnwindStats,
    pub threads: &'s Threads,
    pub collected: Collected<'s>,
    /// Every process recorded.
    pub processes: &'s Processes,
    pub evicted: Evicted,
    /// A Go target's wait reasons by number (its
    /// `runtime.waitReasonStrings`); empty when unknown.
    pub go_reasons: &'s [String],
}

/// The events collected (all of them, or a difference), and the symbols
/// that name their addresses and locks.
pub struct Collected<'s> {
    /// Summed: a session's window is two epochs (and the running totals
    /// of what it let go); the kernel's totals are the first part's.
    parts: Vec<Cow<'s, Aggregate>>,
    symbols: &'s Symbols,
}

impl<'s> Collected<'s> {
    pub fn new(mut parts: Vec<Cow<'s, Aggregate>>, symbols: &'s Symbols) -> Collected<'s> {
        if parts.is_empty() {
            parts.push(Cow::Owned(Aggregate::default()));
        }
        Collected { parts, symbols }
    }

    /// Every event of every part (an event in two parts comes twice: the
    /// values sum).
    fn events(&self) -> impl Iterator<Item = (&Event, &Value)> {
        self.parts.iter().flat_map(|p| p.events())
    }

    fn totals(&self) -> &Totals {
        self.parts
            .first()
            .map(|p| p.totals())
            .unwrap_or_else(|| empty_totals())
    }
}

/// Totals of nothing (for a snapshot with no part, which `new` prevents).
fn empty_totals() -> &'static Totals {
    static EMPTY: std::sync::OnceLock<Totals> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Totals::default)
}

/// Off-CPU time by state.
#[derive(Debug, Clone, Copy, Default)]
pub struct OffCpuSplit {
    pub blocked: Value,
    pub preempted: Value,
}

/// One futex word: its waits, who waited and who released it.
#[derive(Debug, Clone)]
pub struct LockSummary {
    /// The process whose address it is.
    pub pid: u32,
    pub lock: u64,
    /// Its variable name, or its address and mapping.
    pub name: Rc<str>,
    pub waits: Value,
    /// Wait time under the Go runtime's idle parking.
    pub idle_ns: u64,
    /// The waiting stack with the most wait time, and that time.
    pub top_waiter: Option<(Vec<Frame>, u64)>,
    /// The releasing stack (the waker's at the wake-up) with the most wait
    /// time, and that time.
    pub top_waker: Option<(Vec<Frame>, u64)>,
    /// Wait time whose releasing stack is known (a user stack of the
    /// waker, not lost).
    pub released_ns: u64,
    pub wake_calls: u64,
    /// The stack that called futex wake most, and how often.
    pub top_wake_call: Option<(Vec<Frame>, u64)>,
}

impl<'s> Snapshot<'s> {
    /// Addresses left unnamed, by reason.
    pub fn unknown(&self) -> &SymbolizeStats {
        &self.collected.symbols.stats
    }

    /// The kernel's counters and histograms.
    pub fn totals(&self) -> &Totals {
        self.collected.totals()
    }

    pub fn counter(&self, counter: Counter) -> u64 {
        self.totals().counter(counter)
    }

    /// Every way something can be lost, with how many were.
    pub fn losses(&self) -> Vec<(&'static str, u64)> {
        self.totals().losses()
    }

    /// A thread's name, falling back to the process name for threads that
    /// were never seen alive.
    pub fn thread_name(&self, tid: u32) -> &str {
        self.threads.name(tid).unwrap_or(&self.target.name)
    }

    /// The profile of one kind, every address named.
    pub fn profile(&self, kind: ProfileKind, duration: Duration) -> Profile {
        let mut names: HashMap<u32, Rc<str>> = HashMap::new();
        let mut thread_name = |tid: u32| -> Rc<str> {
            names
                .entry(tid)
                .or_insert_with(|| self.thread_name(tid).into())
                .clone()
        };
        let mut processes: HashMap<u32, Rc<str>> = HashMap::new();
        let mut process_name = |pid: u32| -> Rc<str> {
            processes
                .entry(pid)
                .or_insert_with(|| self.processes.name(pid).unwrap_or("?").into())
                .clone()
        };
        let mut samples = Vec::new();
        for (event, value) in self.collected.events() {
            let sample = match (kind, event.origin) {
                (ProfileKind::Cpu, Origin::Cpu) => Sample {
                    frames: self.own_frames(event),
                    ..Sample::default()
                },
                (ProfileKind::OffCpu, Origin::OffCpu(state)) => {
                    let own = self.own_frames(event);
                    let state = match state {
                        OffCpuState::Preempted => "preempted",
                        OffCpuState::Blocked if go::is_runtime_idle(&own) => go::IDLE_STATE,
                        OffCpuState::Blocked => "blocked",
                    };
                    let mut frames = vec![Frame::marker(format!("[{state}]"))];
                    frames.extend(own);
                    Sample {
                        frames,
                        state: Some(state),
                        waker: event.waker.as_ref().map(|w| self.woken_by(event.pid, w)),
                        ..Sample::default()
                    }
                }
                (ProfileKind::Futex, Origin::FutexWait) => {
                    let waiter = self.collected.symbols.frames(event.pid, &event.user, true);
                    let lock = self.collected.symbols.lock_name(event.pid, event.lock);
                    let lock: Rc<str> = if go::is_runtime_idle(&waiter) {
                        go::idle_lock_name(&lock).into()
                    } else {
                        lock
                    };
                    let mut frames = vec![Frame::marker(lock.to_string())];
                    frames.extend(waiter);
                    Sample {
                        frames,
                        lock: Some(lock),
                        waker: event.waker.as_ref().map(|w| self.woken_by(event.pid, w)),
                        ..Sample::default()
                    }
                }
                (ProfileKind::GoBlock, Origin::GoWait { reason, .. }) => {
                    let waiter = self.collected.symbols.frames(event.pid, &event.user, true);
                    let reason = self.go_reason(reason, &waiter);
                    let class = go::wait_class(&reason);
                    let marker = match class {
                        go::WaitClass::Contention => format!("[{reason}]"),
                        other => format!("[{reason} ({})]", other.name()),
                    };
                    let mut frames = vec![Frame::marker(marker)];
                    frames.extend(waiter);
                    Sample {
                        frames,
                        state: Some(class.name()),
                        reason: Some(reason.into()),
                        waker: Some(self.go_woken_by(event.waker.as_ref())),
                        ..Sample::default()
                    }
                }
                (ProfileKind::GoMutex, Origin::GoWait { reason, sema }) => {
                    let waiter = self.collected.symbols.frames(event.pid, &event.user, true);
                    let reason = self.go_reason(reason, &waiter);
                    if !go::is_mutex(&reason) {
                        continue;
                    }
                    let lock: Rc<str> = if sema && event.lock != 0 {
                        self.collected.symbols.lock_name(
                            event.pid,
                            event.lock.wrapping_sub(go::semaphore_offset(&reason)),
                        )
                    } else {
                        "[lock not seen]".into()
                    };
                    // Charged to the unlocking stack, as Go's mutex profile
                    // does; a waiter made runnable otherwise keeps its own.
                    let mut frames = vec![Frame::marker(lock.to_string())];
                    match &event.waker {
                        Some(waker) => frames.extend(self.collected.symbols.frames(
                            waker.tgid,
                            &waker.user,
                            true,
                        )),
                        None => {
                            frames.push(Frame::marker("[unlocker not seen]".to_owned()));
                            frames.extend(waiter.iter().cloned());
                        }
                    }
                    Sample {
                        frames,
                        lock: Some(lock),
                        state: Some(go::WaitClass::Contention.name()),
                        reason: Some(reason.into()),
                        waiting: Some(waiter),
                        ..Sample::default()
                    }
                }
                _ => continue,
            };
            let mut sample = sample;
            if event.in_progress {
                // After the lock or the state: `[blocked];[still blocked];...`
                let at = sample
                    .frames
                    .iter()
                    .take_while(|f| f.kind == FrameKind::Marker)
                    .count();
                sample
                    .frames
                    .insert(at, Frame::marker(STILL_BLOCKED.to_owned()));
                sample.in_progress = true;
            }
            samples.push(Sample {
                pid: event.pid,
                process: process_name(event.pid),
                tid: event.tid,
                thread_name: thread_name(event.tid),
                value: value.total,
                count: value.count,
                ..sample
            });
        }
        // A stable order: formats and tests see the same output each run.
        samples.sort_by(|a, b| {
            b.value
                .cmp(&a.value)
                .then_with(|| a.pid.cmp(&b.pid))
                .then_with(|| a.tid.cmp(&b.tid))
                .then_with(|| a.frames.len().cmp(&b.frames.len()))
        });
        Profile {
            kind,
            pid: self.target.pid,
            process_name: self.target.name.clone(),
            frequency: self.frequency,
            duration,
            samples,
            executable: self.target.executable.as_deref().map(Into::into),
            mappings: self.collected.symbols.code_mappings(self.target.pid),
            per_process: self.target.per_process,
        }
    }

    /// Off-CPU time blocked and preempted (nothing needs naming).
    pub fn offcpu_split(&self) -> OffCpuSplit {
        let mut split = OffCpuSplit::default();
        for (event, value) in self.collected.events() {
            match event.origin {
                Origin::OffCpu(OffCpuState::Blocked) => split.blocked.add(*value),
                Origin::OffCpu(OffCpuState::Preempted) => split.preempted.add(*value),
                _ => {}
            }
        }
        split
    }

    /// On-CPU samples by thread name (nothing needs naming).
    pub fn samples_by_thread(&self) -> HashMap<String, u64> {
        let mut by_thread: HashMap<String, u64> = HashMap::new();
        for (event, value) in self.collected.events() {
            if event.origin == Origin::Cpu {
                *by_thread
                    .entry(self.thread_name(event.tid).to_owned())
                    .or_default() += value.total;
            }
        }
        by_thread
    }

    /// Every futex word waited on or woken, most waited first (a word is
    /// one process's: the same address in two processes is two locks).
    pub fn locks(&self) -> Vec<LockSummary> {
        type Stacks<'a> = HashMap<(u32, &'a Stack), u64>;
        #[derive(Default)]
        struct Lock<'a> {
            waits: Value,
            idle_ns: u64,
            released_ns: u64,
            waiters: Stacks<'a>,
            wakers: Stacks<'a>,
            wake_calls: u64,
            wake_sites: Stacks<'a>,
        }
        let mut locks: HashMap<(u32, u64), Lock<'_>> = HashMap::new();
        for (event, value) in self.collected.events() {
            let key = (event.pid, event.lock);
            match event.origin {
                Origin::FutexWait => {
                    let lock = locks.entry(key).or_default();
                    lock.waits.add(*value);
                    if go::is_runtime_idle(&self.collected.symbols.frames(
                        event.pid,
                        &event.user,
                        true,
                    )) {
                        lock.idle_ns += value.total;
                    }
                    *lock.waiters.entry((event.pid, &event.user)).or_default() += value.total;
                    if let Some(waker) = &event.waker {
                        *lock.wakers.entry((waker.tgid, &waker.user)).or_default() += value.total;
                        if matches!(waker.user, Stack::Frames(_)) {
                            lock.released_ns += value.total;
                        }
                    }
                }
                Origin::FutexWake => {
                    let lock = locks.entry(key).or_default();
                    lock.wake_calls += value.count;
                    *lock.wake_sites.entry((event.pid, &event.user)).or_default() += value.count;
                }
                Origin::Cpu | Origin::OffCpu(_) | Origin::GoWait { .. } => {}
            }
        }
        let top = |by_stack: &Stacks<'_>| {
            by_stack
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map(|((pid, stack), n)| (self.collected.symbols.frames(*pid, stack, true), *n))
        };
        let mut summaries: Vec<LockSummary> = locks
            .iter()
            .map(|((pid, addr), lock)| LockSummary {
                pid: *pid,
                lock: *addr,
                name: self.collected.symbols.lock_name(*pid, *addr),
                waits: lock.waits,
                idle_ns: lock.idle_ns,
                top_waiter: top(&lock.waiters),
                top_waker: top(&lock.wakers),
                released_ns: lock.released_ns,
                wake_calls: lock.wake_calls,
                top_wake_call: top(&lock.wake_sites),
            })
            .collect();
        summaries.sort_by(|a, b| {
            b.waits
                .total
                .cmp(&a.waits.total)
                .then(a.lock.cmp(&b.lock))
                .then(a.pid.cmp(&b.pid))
        });
        summaries
    }

    /// Futex waits by lock name, as the futex profile names the locks (a Go
    /// program's idle runtime threads parked on a futex are `[Go runtime
    /// idle] ...`): (waits, nanoseconds). Stacks are looked at only for Go
    /// programs, so this stays cheap for a long session's many stacks.
    pub fn futex_waits_by_lock(&self) -> HashMap<String, (u64, u64)> {
        let mut by_lock: HashMap<String, (u64, u64)> = HashMap::new();
        for (event, value) in self.collected.events() {
            if event.origin != Origin::FutexWait {
                continue;
            }
            let name = self.collected.symbols.lock_name(event.pid, event.lock);
            let idle = self.processes.is_go(event.pid)
                && go::is_runtime_idle(&self.collected.symbols.frames(
                    event.pid,
                    &event.user,
                    true,
                ));
            let name = if idle {
                go::idle_lock_name(&name)
            } else {
                name.to_string()
            };
            let entry = by_lock.entry(name).or_default();
            entry.0 += value.count;
            entry.1 += value.total;
        }
        by_lock
    }

    /// On-CPU samples by process, most first: (PID, name, samples).
    pub fn samples_by_process(&self) -> Vec<(u32, String, u64)> {
        let mut by_pid: HashMap<u32, u64> = HashMap::new();
        for (event, value) in self.collected.events() {
            if event.origin == Origin::Cpu {
                *by_pid.entry(event.pid).or_default() += value.total;
            }
        }
        let mut out: Vec<(u32, String, u64)> = by_pid
            .into_iter()
            .map(|(pid, n)| (pid, self.processes.name(pid).unwrap_or("?").to_owned(), n))
            .collect();
        out.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        out
    }

    /// An event's own stack: user frames from the outermost caller down,
    /// then kernel frames down to the leaf.
    fn own_frames(&self, event: &Event) -> Vec<Frame> {
        let mut frames = self.collected.symbols.frames(event.pid, &event.user, true);
        frames.extend(self.collected.symbols.frames(0, &event.kernel, false));
        frames
    }

    /// The name of a Go wait reason, made as fine as Go 1.22+ names it
    /// (see `go::refine_reason`).
    fn go_reason(&self, reason: u8, waiter: &[Frame]) -> String {
        go::refine_reason(go::reason_name(self.go_reasons, reason), waiter)
    }

    /// Who made a parked goroutine runnable: another goroutine's code
    /// (`runtime.ready`), or the scheduler without it.
    fn go_woken_by(&self, waker: Option<&Waker>) -> WokenBy {
        match waker {
            Some(waker) => WokenBy {
                who: "made runnable by a goroutine".to_owned(),
                frames: self.collected.symbols.frames(waker.tgid, &waker.user, true),
            },
            None => WokenBy {
                who: "made runnable by the scheduler (network poller, timer or GC)".to_owned(),
                frames: Vec::new(),
            },
        }
    }

    /// Who a waker was, and its stack (its user stack only for the target's
    /// own threads: another process's is not named).
    fn woken_by(&self, pid: u32, waker: &Waker) -> WokenBy {
        let recorded = matches!(waker.user, Stack::Frames(_));
        let mut frames = Vec::new();
        if recorded {
            frames.extend(self.collected.symbols.frames(waker.tgid, &waker.user, true));
        }
        frames.extend(self.collected.symbols.frames(0, &waker.kernel, false));
        let who = if waker.tgid == 0 {
            "woken by the kernel: an interrupt on an idle CPU".to_owned()
        } else if waker.tgid == pid && waker.tid >= FOLDED_THREADS {
            let name = self.threads.name(waker.tid).unwrap_or("?");
            format!("woken by thread {}", thread_label(name, waker.tid))
        } else if waker.tgid == pid {
            format!("woken by thread {}", waker.tid)
        } else {
            let name = self
                .processes
                .name(waker.tgid)
                .or_else(|| self.threads.process(waker.tgid))
                .unwrap_or("?");
            format!("woken by {name} (pid {})", waker.tgid)
        };
        WokenBy { who, frames }
    }
}
