//! Draining the kernel's maps into userspace aggregates.
//!
//! The kernel counts into one of two generations of maps. A drain flips the
//! generation, waits for programs still writing the old one to finish, then
//! reads every entry and its stacks out of the old generation and clears it.
//! Identical stacks are summed into raw keys, so each unique stack is later
//! symbolized once. Drains run periodically (the maps never fill on long
//! runs) and once more at the end.
//!
//! On-CPU stacks live in per-generation stack maps, cleared with their
//! generation. Off-CPU and futex stacks are taken at one event and counted at
//! a later one, so they live in one stack map that is never cleared during a
//! recording; their ids are resolved once and cached here.

use std::{collections::HashMap, hash::Hash, time::Duration};

use anyhow::Context as _;
use aya::{
    Pod,
    maps::{Array, Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, StackTraceMap},
};
use profiler_common::{
    CONTROL_GENERATION, Counter, FutexWaitKey, FutexWakeKey, HIST_BUCKETS, MAP_CONTROL,
    MAP_COUNTERS, MAP_CPU_COUNTS, MAP_FUTEX_HIST, MAP_FUTEX_WAITS, MAP_FUTEX_WAKES,
    MAP_LONG_STACKS, MAP_OFFCPU, MAP_RUNQ_HIST, MAP_STACKS, OffCpuKey, SampleKey, WaitStats,
    stack_error,
};

use crate::{
    attach::Attached,
    unwind::{CopiedStack, Unwind},
};

/// Why a stack is missing from a sample; the sample itself is still counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StackLoss {
    /// The kernel returned this errno from `bpf_get_stackid`.
    Errno(i32),
    /// The stack id was no longer in the stack map when drained.
    Vanished,
    /// The copied stack never reached userspace (ring buffer full).
    Dropped,
}

impl StackLoss {
    /// A frame name that says why the stack is missing.
    pub fn frame_name(self, user: bool) -> String {
        let side = if user { "user" } else { "kernel" };
        match self {
            StackLoss::Errno(stack_error::EEXIST) => {
                format!("[{side} stack lost: stack map collision]")
            }
            StackLoss::Errno(stack_error::ENOMEM) => format!("[{side} stack lost: stack map full]"),
            StackLoss::Errno(stack_error::EFAULT) => format!("[no {side} stack]"),
            StackLoss::Errno(errno) => format!("[{side} stack lost: errno {errno}]"),
            StackLoss::Vanished => format!("[{side} stack lost: evicted before drain]"),
            StackLoss::Dropped => format!("[{side} stack lost: ring buffer full]"),
        }
    }
}

/// A stack as the kernel recorded it: instruction pointers, leaf first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stack {
    Frames(Box<[u64]>),
    /// No frames: a kernel stack of a thread in user mode (the normal case),
    /// or a stack that was not asked for.
    Empty,
    Lost(StackLoss),
}

/// One unique on-CPU (thread, user stack, kernel stack).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawStack {
    pub tid: u32,
    pub user: Stack,
    pub kernel: Stack,
}

/// The thread that woke a blocked thread, with its stacks at the wake-up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Waker {
    pub tgid: u32,
    pub tid: u32,
    pub user: Stack,
    pub kernel: Stack,
}

/// Whether an off-CPU interval was a block or a preemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OffCpuState {
    /// Blocked (sleep, I/O, a lock): charged from switch-out to wake-up.
    Blocked,
    /// Preempted while runnable: all of it is run-queue delay.
    Preempted,
}

/// One unique off-CPU stack of one thread (and who woke it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffCpuStack {
    pub tid: u32,
    pub state: OffCpuState,
    pub user: Stack,
    pub kernel: Stack,
    pub waker: Option<Waker>,
}

/// One unique futex wait site.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FutexWait {
    pub uaddr: u64,
    pub tid: u32,
    pub user: Stack,
    /// The thread that woke the waiter (0 if no wake-up was seen: a timeout,
    /// or the lock word changed before the wait began), and its process.
    pub waker_tid: u32,
    pub waker_tgid: u32,
    /// The waker's user stack (kept only for wakers of the target itself).
    pub waker_user: Stack,
}

/// One unique futex wake site.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FutexWake {
    pub uaddr: u64,
    pub tid: u32,
    pub user: Stack,
    pub op: u32,
}

/// Count, total and longest of a set of waits, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waits {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

impl Waits {
    pub fn add(&mut self, other: Waits) {
        self.count += other.count;
        self.total_ns += other.total_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    fn from_per_cpu(values: &PerCpuValues<WaitStats>) -> Waits {
        let mut waits = Waits::default();
        for v in values.iter() {
            waits.add(Waits {
                count: v.count,
                total_ns: v.total_ns,
                max_ns: v.max_ns,
            });
        }
        waits
    }
}

/// What the drains since the last [`Collector::take_fresh`] added that
/// needs naming: the stacks of new entries, new lock words, and other
/// processes that woke the target. Symbolizing only these keeps a drain's
/// cost proportional to what is new, not to everything collected.
#[derive(Debug, Default)]
pub struct Fresh {
    /// Each new stack, with whether it is a user stack.
    pub stacks: Vec<(Stack, bool)>,
    pub locks: Vec<u64>,
    pub processes: Vec<u32>,
}

/// A key whose stacks, lock or waker must be named once it is first seen.
trait Noted {
    fn note(&self, fresh: &mut Fresh, target: u32);
}

impl Noted for RawStack {
    fn note(&self, fresh: &mut Fresh, _target: u32) {
        fresh.stacks.push((self.user.clone(), true));
        fresh.stacks.push((self.kernel.clone(), false));
    }
}

impl Noted for OffCpuStack {
    fn note(&self, fresh: &mut Fresh, target: u32) {
        fresh.stacks.push((self.user.clone(), true));
        fresh.stacks.push((self.kernel.clone(), false));
        if let Some(waker) = &self.waker {
            fresh.stacks.push((waker.kernel.clone(), false));
            // Other processes' user stacks are not symbolized, only named.
            if waker.tgid == target {
                fresh.stacks.push((waker.user.clone(), true));
            } else if waker.tgid != 0 {
                fresh.processes.push(waker.tgid);
            }
        }
    }
}

impl Noted for FutexWait {
    fn note(&self, fresh: &mut Fresh, target: u32) {
        fresh.stacks.push((self.user.clone(), true));
        if self.waker_tgid == target {
            fresh.stacks.push((self.waker_user.clone(), true));
        }
        fresh.locks.push(self.uaddr);
    }
}

impl Noted for FutexWake {
    fn note(&self, fresh: &mut Fresh, _target: u32) {
        fresh.stacks.push((self.user.clone(), true));
        fresh.locks.push(self.uaddr);
    }
}

/// The entry of `key`, noting the key in `fresh` when it is new.
fn slot<'m, K: Noted + Eq + Hash, V: Default>(
    map: &'m mut HashMap<K, V>,
    key: K,
    fresh: &mut Fresh,
    target: u32,
) -> &'m mut V {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::hash_map::Entry::Vacant(entry) => {
            entry.key().note(fresh, target);
            entry.insert(V::default())
        }
    }
}

/// Everything drained so far.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    /// On-CPU sample count per unique stack.
    pub stacks: HashMap<RawStack, u64>,
    pub offcpu: HashMap<OffCpuStack, Waits>,
    pub futex_waits: HashMap<FutexWait, Waits>,
    pub futex_wakes: HashMap<FutexWake, u64>,
    /// Run-queue delays, log2 buckets of nanoseconds.
    pub runq_hist: Vec<u64>,
    /// Futex wait durations, log2 buckets of nanoseconds.
    pub futex_hist: Vec<u64>,
    /// The kernel's counters, summed over CPUs, indexed by [`Counter`].
    pub counters: [u64; Counter::ALL.len()],
    /// Stack ids referenced by a count but gone from the stack map.
    pub vanished_stacks: u64,
    /// Thread names the kernel noted, by thread id.
    pub thread_names: HashMap<u32, String>,
}

impl Collected {
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters[counter as usize]
    }

    /// Every way a sample, stack or event can be lost, as a label, with how
    /// many were: the kernel's loss counters, and stacks evicted before
    /// they were read.
    pub fn losses(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL
            .iter()
            .filter(|c| c.is_loss())
            .map(|c| (c.label(), self.counter(*c)))
            .chain([("stack_evicted", self.vanished_stacks)])
            .collect()
    }

    /// Moves the entries of the threads in `folded` (thread id -> the id
    /// that stands for its folded group) under their group's id, summing
    /// entries that become equal, and forgets those threads' names.
    pub fn fold_threads(&mut self, folded: &HashMap<u32, u32>) {
        fn refold<K: ThreadKeyed + Eq + Hash, V: Default>(
            map: &mut HashMap<K, V>,
            folded: &HashMap<u32, u32>,
            add: impl Fn(&mut V, V),
        ) {
            for (mut key, value) in std::mem::take(map) {
                for tid in key.tids_mut().into_iter().flatten() {
                    if let Some(group) = folded.get(tid) {
                        *tid = *group;
                    }
                }
                add(map.entry(key).or_default(), value);
            }
        }
        refold(&mut self.stacks, folded, |sum, n| *sum += n);
        refold(&mut self.offcpu, folded, Waits::add);
        refold(&mut self.futex_waits, folded, Waits::add);
        refold(&mut self.futex_wakes, folded, |sum, n| *sum += n);
        self.thread_names.retain(|tid, _| !folded.contains_key(tid));
    }

    /// What was collected after `before` (an earlier copy of this): counts,
    /// totals and histograms subtracted. The longest wait of a stack cannot
    /// be subtracted; it stays the longest of the whole recording.
    pub fn since(&self, before: &Collected) -> Collected {
        fn counts<K: Clone + Eq + Hash>(
            now: &HashMap<K, u64>,
            then: &HashMap<K, u64>,
        ) -> HashMap<K, u64> {
            now.iter()
                .filter_map(|(k, n)| {
                    let added = n.saturating_sub(then.get(k).copied().unwrap_or(0));
                    (added > 0).then(|| (k.clone(), added))
                })
                .collect()
        }
        fn waits<K: Clone + Eq + Hash>(
            now: &HashMap<K, Waits>,
            then: &HashMap<K, Waits>,
        ) -> HashMap<K, Waits> {
            now.iter()
                .filter_map(|(k, w)| {
                    let old = then.get(k).copied().unwrap_or_default();
                    let added = Waits {
                        count: w.count.saturating_sub(old.count),
                        total_ns: w.total_ns.saturating_sub(old.total_ns),
                        max_ns: w.max_ns,
                    };
                    (added.count > 0).then(|| (k.clone(), added))
                })
                .collect()
        }
        let minus = |now: &[u64], then: &[u64]| -> Vec<u64> {
            now.iter()
                .zip(then.iter().chain(std::iter::repeat(&0)))
                .map(|(n, t)| n.saturating_sub(*t))
                .collect()
        };
        let mut counters = self.counters;
        for (now, then) in counters.iter_mut().zip(before.counters) {
            *now = now.saturating_sub(then);
        }
        Collected {
            stacks: counts(&self.stacks, &before.stacks),
            offcpu: waits(&self.offcpu, &before.offcpu),
            futex_waits: waits(&self.futex_waits, &before.futex_waits),
            futex_wakes: counts(&self.futex_wakes, &before.futex_wakes),
            runq_hist: minus(&self.runq_hist, &before.runq_hist),
            futex_hist: minus(&self.futex_hist, &before.futex_hist),
            counters,
            vanished_stacks: self.vanished_stacks.saturating_sub(before.vanished_stacks),
            thread_names: self.thread_names.clone(),
        }
    }
}

/// A key that belongs to one thread of the target, and may name the
/// thread that woke it.
trait ThreadKeyed {
    /// The thread ids in the key: its thread, and its waker if any.
    fn tids_mut(&mut self) -> [Option<&mut u32>; 2];
}

impl ThreadKeyed for RawStack {
    fn tids_mut(&mut self) -> [Option<&mut u32>; 2] {
        [Some(&mut self.tid), None]
    }
}

impl ThreadKeyed for FutexWake {
    fn tids_mut(&mut self) -> [Option<&mut u32>; 2] {
        [Some(&mut self.tid), None]
    }
}

impl ThreadKeyed for OffCpuStack {
    fn tids_mut(&mut self) -> [Option<&mut u32>; 2] {
        [Some(&mut self.tid), self.waker.as_mut().map(|w| &mut w.tid)]
    }
}

impl ThreadKeyed for FutexWait {
    fn tids_mut(&mut self) -> [Option<&mut u32>; 2] {
        [Some(&mut self.tid), Some(&mut self.waker_tid)]
    }
}

/// The never-cleared stack map's resolver, borrowing only the fields it
/// needs (so other maps of the collector stay usable alongside).
macro_rules! long_stacks {
    ($collector:expr) => {
        LongStacks {
            map: &$collector.long_stacks,
            cache: &mut $collector.long_cache,
            vanished: &mut $collector.collected.vanished_stacks,
        }
    };
}

/// Whether an off-CPU record (`profiler_common::OFFCPU_*`) was a preemption.
fn offcpu_state(state: u32) -> OffCpuState {
    if state == profiler_common::OFFCPU_PREEMPTED {
        OffCpuState::Preempted
    } else {
        OffCpuState::Blocked
    }
}

/// The waker of an off-CPU record, if a wake-up was seen.
fn waker_of(
    long: &mut LongStacks<'_>,
    woken: u32,
    tgid: u32,
    tid: u32,
    user_stack_id: i32,
    kernel_stack_id: i32,
) -> Option<Waker> {
    (woken != 0).then(|| Waker {
        tgid,
        tid,
        user: long.resolve(user_stack_id),
        kernel: long.resolve(kernel_stack_id),
    })
}

/// The maps taken out of the loaded object.
pub struct Collector {
    control: Array<MapData, u32>,
    counters: PerCpuArray<MapData, u64>,
    cpu_counts: [PerCpuHashMap<MapData, SampleKey, u64>; 2],
    stacks: [StackTraceMap<MapData>; 2],
    offcpu: [PerCpuHashMap<MapData, OffCpuKey, WaitStats>; 2],
    futex_waits: [PerCpuHashMap<MapData, FutexWaitKey, WaitStats>; 2],
    futex_wakes: [PerCpuHashMap<MapData, FutexWakeKey, u64>; 2],
    long_stacks: StackTraceMap<MapData>,
    /// Resolved long-lived stacks by id (the map is never cleared).
    long_cache: HashMap<i32, Stack>,
    runq_hist: PerCpuArray<MapData, u64>,
    futex_hist: PerCpuArray<MapData, u64>,
    /// Copied user stacks (`--unwind dwarf`).
    user_stacks: aya::maps::RingBuf<MapData>,
    thread_names: aya::maps::HashMap<MapData, u32, [u8; 16]>,
    /// Off-CPU intervals whose stacks came as copies (`--unwind dwarf`).
    offcpu_intervals: aya::maps::RingBuf<MapData>,
    /// Unwound switch-out stacks waiting for their interval, per thread,
    /// oldest first: (switch-out time, user stack, kernel stack).
    switched_out: HashMap<u32, std::collections::VecDeque<(u64, Stack, Stack)>>,
    generation: u32,
    /// The target's process id (its wakers' user stacks are symbolized).
    target: u32,
    fresh: Fresh,
    pub collected: Collected,
}

/// How long a drain waits after flipping generations: programs that read the
/// old generation finish within microseconds (they run with preemption off).
const GRACE: Duration = Duration::from_millis(5);

impl Collector {
    pub fn new(attached: &mut Attached, target: u32) -> anyhow::Result<Collector> {
        let mut take = |name: &'static str| -> anyhow::Result<Map> { Ok(attached.take_map(name)?) };
        // Both generations of a map, as its type.
        fn pair<T: TryFrom<Map, Error = aya::maps::MapError>>(
            take: &mut impl FnMut(&'static str) -> anyhow::Result<Map>,
            names: [&'static str; 2],
        ) -> anyhow::Result<[T; 2]> {
            Ok([T::try_from(take(names[0])?)?, T::try_from(take(names[1])?)?])
        }
        Ok(Collector {
            control: Array::try_from(take(MAP_CONTROL)?)?,
            counters: PerCpuArray::try_from(take(MAP_COUNTERS)?)?,
            cpu_counts: pair(&mut take, MAP_CPU_COUNTS)?,
            stacks: pair(&mut take, MAP_STACKS)?,
            offcpu: pair(&mut take, MAP_OFFCPU)?,
            futex_waits: pair(&mut take, MAP_FUTEX_WAITS)?,
            futex_wakes: pair(&mut take, MAP_FUTEX_WAKES)?,
            long_stacks: StackTraceMap::try_from(take(MAP_LONG_STACKS)?)?,
            long_cache: HashMap::new(),
            runq_hist: PerCpuArray::try_from(take(MAP_RUNQ_HIST)?)?,
            futex_hist: PerCpuArray::try_from(take(MAP_FUTEX_HIST)?)?,
            user_stacks: aya::maps::RingBuf::try_from(take(profiler_common::MAP_USER_STACKS)?)?,
            offcpu_intervals: aya::maps::RingBuf::try_from(take(
                profiler_common::MAP_OFFCPU_INTERVALS,
            )?)?,
            switched_out: HashMap::new(),
            thread_names: aya::maps::HashMap::try_from(take(profiler_common::MAP_THREAD_NAMES)?)?,
            generation: 0,
            target,
            fresh: Fresh::default(),
            collected: Collected {
                runq_hist: vec![0; HIST_BUCKETS as usize],
                futex_hist: vec![0; HIST_BUCKETS as usize],
                ..Collected::default()
            },
        })
    }

    /// Flips the generation and drains the one the kernel was writing.
    pub fn drain(&mut self) -> anyhow::Result<()> {
        let old = self.generation;
        let new = 1 - old;
        self.control
            .set(CONTROL_GENERATION, new, 0)
            .context("cannot switch the kernel to the other map generation")?;
        self.generation = new;
        std::thread::sleep(GRACE);
        self.drain_generation(old as usize)?;
        self.read_totals()?;
        Ok(())
    }

    /// Unwinds every copied user stack waiting in the ring buffer and counts
    /// it with its kernel stack.
    pub fn drain_user_stacks(&mut self, unwind: &mut Unwind) {
        while let Some(item) = self.user_stacks.next() {
            let Some(copy) = CopiedStack::parse(&item) else {
                continue;
            };
            let frames = unwind.unwind(&copy);
            let mut long = long_stacks!(self);
            let user = if frames.is_empty() {
                Stack::Lost(StackLoss::Errno(stack_error::EFAULT))
            } else {
                Stack::Frames(frames.into())
            };
            match copy.kind {
                profiler_common::SAMPLE_FUTEX_WAIT => {
                    let wait = FutexWait {
                        uaddr: copy.uaddr,
                        tid: copy.tid,
                        user,
                        waker_tid: 0,
                        waker_tgid: 0,
                        waker_user: Stack::Empty,
                    };
                    slot(
                        &mut self.collected.futex_waits,
                        wait,
                        &mut self.fresh,
                        self.target,
                    )
                    .add(Waits {
                        count: 1,
                        total_ns: copy.value_ns,
                        max_ns: copy.value_ns,
                    });
                }
                profiler_common::SAMPLE_SWITCH_OUT => {
                    let kernel = long.resolve(copy.kernel_stack_id);
                    self.switched_out
                        .entry(copy.tid)
                        .or_default()
                        .push_back((copy.uaddr, user, kernel));
                }
                profiler_common::SAMPLE_FUTEX_WAKE => {
                    let wake = FutexWake {
                        uaddr: copy.uaddr,
                        tid: copy.tid,
                        user,
                        op: copy.op,
                    };
                    *slot(
                        &mut self.collected.futex_wakes,
                        wake,
                        &mut self.fresh,
                        self.target,
                    ) += 1;
                }
                _ => {
                    let raw = RawStack {
                        tid: copy.tid,
                        user,
                        kernel: long.resolve(copy.kernel_stack_id),
                    };
                    *slot(
                        &mut self.collected.stacks,
                        raw,
                        &mut self.fresh,
                        self.target,
                    ) += 1;
                }
            }
        }
    }

    /// Joins off-CPU intervals with the stacks copied at their switch-outs
    /// (call after [`Collector::drain_user_stacks`]: a switch-out's stack is
    /// always sent before its interval).
    pub fn drain_offcpu_intervals(&mut self) {
        while let Some(item) = self.offcpu_intervals.next() {
            let Some(interval) = parse_interval(&item) else {
                continue;
            };
            let queue = self.switched_out.entry(interval.tid).or_default();
            // Older switch-outs never got an interval (blocks shorter than
            // --min-block, a lost record): they are done with.
            while queue
                .front()
                .is_some_and(|(out, _, _)| *out < interval.switched_out_ns)
            {
                queue.pop_front();
            }
            let (user, kernel) = match queue.front() {
                Some((out, _, _)) if *out == interval.switched_out_ns => {
                    let (_, user, kernel) =
                        queue.pop_front().unwrap_or((0, Stack::Empty, Stack::Empty));
                    (user, kernel)
                }
                _ => (
                    Stack::Lost(StackLoss::Dropped),
                    Stack::Lost(StackLoss::Dropped),
                ),
            };
            let mut long = long_stacks!(self);
            let raw = OffCpuStack {
                tid: interval.tid,
                state: offcpu_state(interval.state),
                user,
                kernel,
                waker: waker_of(
                    &mut long,
                    interval.woken,
                    interval.waker_tgid,
                    interval.waker_tid,
                    interval.waker_user_stack_id,
                    interval.waker_kernel_stack_id,
                ),
            };
            slot(
                &mut self.collected.offcpu,
                raw,
                &mut self.fresh,
                self.target,
            )
            .add(Waits {
                count: 1,
                total_ns: interval.charged_ns,
                max_ns: interval.charged_ns,
            });
        }
    }

    /// What was added since the last call (see [`Fresh`]).
    pub fn take_fresh(&mut self) -> Fresh {
        std::mem::take(&mut self.fresh)
    }

    /// Drops what is kept per thread for threads that have exited.
    pub fn forget_threads(&mut self, exited: &HashMap<u32, u32>) {
        self.switched_out.retain(|tid, _| !exited.contains_key(tid));
    }

    /// Starts recording (see `profiler_common::CONTROL_ARMED`).
    pub fn arm(&mut self) -> anyhow::Result<()> {
        self.control
            .set(profiler_common::CONTROL_ARMED, 1, 0)
            .context("cannot start the kernel side recording")
    }

    /// Drains both generations (after the programs are detached).
    pub fn drain_all(&mut self) -> anyhow::Result<()> {
        self.drain_generation(0)?;
        self.drain_generation(1)?;
        self.read_totals()?;
        Ok(())
    }

    fn drain_generation(&mut self, generation: usize) -> anyhow::Result<()> {
        self.drain_cpu(generation)?;
        let long = long_stacks!(self);
        drain_waits(
            long,
            &mut self.offcpu[generation],
            &mut self.collected.offcpu,
            (&mut self.fresh, self.target),
            |key, long| OffCpuStack {
                tid: key.tid,
                state: offcpu_state(key.state),
                user: long.resolve(key.user_stack_id),
                kernel: long.resolve(key.kernel_stack_id),
                waker: waker_of(
                    long,
                    key.woken,
                    key.waker_tgid,
                    key.waker_tid,
                    key.waker_user_stack_id,
                    key.waker_kernel_stack_id,
                ),
            },
        )?;
        let long = long_stacks!(self);
        drain_waits(
            long,
            &mut self.futex_waits[generation],
            &mut self.collected.futex_waits,
            (&mut self.fresh, self.target),
            |key, long| FutexWait {
                uaddr: key.uaddr,
                tid: key.tid,
                user: long.resolve(key.user_stack_id),
                waker_tid: key.waker_tid,
                waker_tgid: key.waker_tgid,
                waker_user: if key.waker_tgid == key.tgid {
                    long.resolve(key.waker_user_stack_id)
                } else {
                    Stack::Empty
                },
            },
        )?;
        let mut long = long_stacks!(self);
        let wakes = &mut self.futex_wakes[generation];
        for (key, per_cpu) in drain_entries(wakes)? {
            let raw = FutexWake {
                uaddr: key.uaddr,
                tid: key.tid,
                user: long.resolve(key.user_stack_id),
                op: key.op,
            };
            *slot(
                &mut self.collected.futex_wakes,
                raw,
                &mut self.fresh,
                self.target,
            ) += per_cpu.iter().sum::<u64>();
        }
        Ok(())
    }

    fn drain_cpu(&mut self, generation: usize) -> anyhow::Result<()> {
        let stack_map = &mut self.stacks[generation];
        let mut resolved: HashMap<i32, Stack> = HashMap::new();
        let vanished = &mut self.collected.vanished_stacks;
        for (key, per_cpu) in drain_entries(&mut self.cpu_counts[generation])? {
            let mut resolve = |id: i32| {
                resolved
                    .entry(id)
                    .or_insert_with(|| stack_of(stack_map, id, vanished))
                    .clone()
            };
            let raw = RawStack {
                tid: key.tid,
                user: resolve(key.user_stack_id),
                kernel: resolve(key.kernel_stack_id),
            };
            *slot(
                &mut self.collected.stacks,
                raw,
                &mut self.fresh,
                self.target,
            ) += per_cpu.iter().sum::<u64>();
        }
        let ids = stack_map
            .stack_ids()
            .collect::<Result<Vec<u32>, _>>()
            .context("cannot list the kernel's stack map")?;
        for id in ids {
            let _ = stack_map.remove(&id);
        }
        Ok(())
    }

    fn read_totals(&mut self) -> anyhow::Result<()> {
        // Read and removed: the kernel notes a thread again at its next
        // event, so each drain reads the threads active since the last one,
        // not every thread that ever ran.
        let named: Vec<(u32, [u8; 16])> = self.thread_names.iter().flatten().collect();
        for (tid, comm) in named {
            let _ = self.thread_names.remove(&tid);
            let len = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
            self.collected
                .thread_names
                .insert(tid, String::from_utf8_lossy(&comm[..len]).into_owned());
        }
        for counter in Counter::ALL {
            let per_cpu = self
                .counters
                .get(&(counter as u32), 0)
                .context("cannot read the kernel's counters")?;
            self.collected.counters[counter as usize] = per_cpu.iter().sum();
        }
        for (hist, out) in [
            (&self.runq_hist, &mut self.collected.runq_hist),
            (&self.futex_hist, &mut self.collected.futex_hist),
        ] {
            for (bucket, slot) in out.iter_mut().enumerate() {
                *slot = hist
                    .get(&(bucket as u32), 0)
                    .context("cannot read a histogram")?
                    .iter()
                    .sum();
            }
        }
        Ok(())
    }
}

/// The never-cleared stack map and the stacks resolved from it so far.
struct LongStacks<'a> {
    map: &'a StackTraceMap<MapData>,
    cache: &'a mut HashMap<i32, Stack>,
    vanished: &'a mut u64,
}

impl LongStacks<'_> {
    fn resolve(&mut self, id: i32) -> Stack {
        if id < 0 {
            return stack_of(self.map, id, self.vanished);
        }
        if let Some(stack) = self.cache.get(&id) {
            return stack.clone();
        }
        let stack = stack_of(self.map, id, self.vanished);
        self.cache.insert(id, stack.clone());
        stack
    }
}

/// Resolves a stack id (or `-errno`) against a stack map.
fn stack_of(map: &StackTraceMap<MapData>, id: i32, vanished: &mut u64) -> Stack {
    if id < 0 {
        return if -id == stack_error::EFAULT {
            Stack::Empty
        } else {
            tracing::debug!(errno = -id, "stack not taken");
            Stack::Lost(StackLoss::Errno(-id))
        };
    }
    match map.get(&(id as u32), 0) {
        Ok(trace) => {
            let ips: Box<[u64]> = trace.frames().iter().map(|f| f.ip).collect();
            if ips.is_empty() {
                Stack::Empty
            } else {
                Stack::Frames(ips)
            }
        }
        Err(_) => {
            *vanished += 1;
            Stack::Lost(StackLoss::Vanished)
        }
    }
}

/// Reads and removes every entry of a per-CPU hash map.
fn drain_entries<K: Pod + Eq + Hash, V: Pod>(
    map: &mut PerCpuHashMap<MapData, K, V>,
) -> anyhow::Result<Vec<(K, PerCpuValues<V>)>> {
    let keys = map
        .keys()
        .collect::<Result<Vec<K>, _>>()
        .context("cannot list a kernel map")?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        // An entry removed between listing and reading has nothing to count.
        if let Ok(values) = map.get(&key, 0) {
            out.push((key, values));
        }
        let _ = map.remove(&key);
    }
    Ok(out)
}

/// Drains a wait-statistics map into `into`, turning keys into raw stacks.
fn drain_waits<K: Pod + Eq + Hash, R: Noted + Eq + Hash>(
    mut long: LongStacks<'_>,
    map: &mut PerCpuHashMap<MapData, K, WaitStats>,
    into: &mut HashMap<R, Waits>,
    (fresh, target): (&mut Fresh, u32),
    mut raw: impl FnMut(&K, &mut LongStacks<'_>) -> R,
) -> anyhow::Result<()> {
    for (key, per_cpu) in drain_entries(map)? {
        let waits = Waits::from_per_cpu(&per_cpu);
        slot(into, raw(&key, &mut long), fresh, target).add(waits);
    }
    Ok(())
}

/// Reads a record laid out as `profiler_common::OffCpuInterval`.
fn parse_interval(bytes: &[u8]) -> Option<profiler_common::OffCpuInterval> {
    use std::mem::offset_of;

    use profiler_common::OffCpuInterval as I;
    let u32_at = |at: usize| Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_ne_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    Some(I {
        tid: u32_at(offset_of!(I, tid))?,
        state: u32_at(offset_of!(I, state))?,
        switched_out_ns: u64_at(offset_of!(I, switched_out_ns))?,
        charged_ns: u64_at(offset_of!(I, charged_ns))?,
        waker_tgid: u32_at(offset_of!(I, waker_tgid))?,
        waker_tid: u32_at(offset_of!(I, waker_tid))?,
        waker_user_stack_id: u32_at(offset_of!(I, waker_user_stack_id))? as i32,
        waker_kernel_stack_id: u32_at(offset_of!(I, waker_kernel_stack_id))? as i32,
        woken: u32_at(offset_of!(I, woken))?,
        reserved: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(tid: u32) -> RawStack {
        RawStack {
            tid,
            user: Stack::Frames(vec![0x1000, 0x2000].into()),
            kernel: Stack::Empty,
        }
    }

    fn wait(uaddr: u64) -> FutexWait {
        FutexWait {
            uaddr,
            tid: 7,
            user: Stack::Empty,
            waker_tid: 0,
            waker_tgid: 0,
            waker_user: Stack::Empty,
        }
    }

    #[test]
    fn since_keeps_only_what_was_added() {
        let mut before = Collected {
            runq_hist: vec![1, 2, 3],
            ..Collected::default()
        };
        before.stacks.insert(raw(1), 10);
        before.stacks.insert(raw(2), 4);
        before.futex_waits.insert(
            wait(0xa0),
            Waits {
                count: 3,
                total_ns: 300,
                max_ns: 200,
            },
        );
        before.counters[Counter::CpuSamples as usize] = 14;
        let mut now = before.clone();
        *now.stacks.entry(raw(1)).or_default() += 5;
        now.stacks.insert(raw(3), 2);
        now.futex_waits.entry(wait(0xa0)).or_default().add(Waits {
            count: 2,
            total_ns: 50,
            max_ns: 30,
        });
        now.futex_waits.insert(
            wait(0xb0),
            Waits {
                count: 1,
                total_ns: 9,
                max_ns: 9,
            },
        );
        now.runq_hist = vec![1, 5, 3];
        now.counters[Counter::CpuSamples as usize] = 21;

        let delta = now.since(&before);
        // Thread 2 added nothing: gone from the delta.
        assert_eq!(delta.stacks, HashMap::from([(raw(1), 5), (raw(3), 2)]));
        assert_eq!(delta.futex_waits[&wait(0xa0)].count, 2);
        assert_eq!(delta.futex_waits[&wait(0xa0)].total_ns, 50);
        assert_eq!(delta.futex_waits[&wait(0xb0)].total_ns, 9);
        assert_eq!(delta.runq_hist, vec![0, 3, 0]);
        assert_eq!(delta.counter(Counter::CpuSamples), 7);
    }

    #[test]
    fn exited_threads_fold_into_their_group() {
        let group = crate::profile::FOLDED_THREADS;
        let mut collected = Collected::default();
        collected.stacks.insert(raw(5), 3);
        collected.stacks.insert(raw(6), 4);
        collected.stacks.insert(raw(7), 1);
        let mut woken = wait(0xa0);
        woken.tid = 7;
        woken.waker_tid = 6;
        collected.futex_waits.insert(
            woken.clone(),
            Waits {
                count: 1,
                total_ns: 10,
                max_ns: 10,
            },
        );
        collected.thread_names.insert(5, "w".to_owned());
        collected.thread_names.insert(7, "main".to_owned());
        let folded = HashMap::from([(5, group), (6, group)]);
        collected.fold_threads(&folded);
        // 5 and 6 had the same stack: one entry of the group, summed.
        assert_eq!(
            collected.stacks,
            HashMap::from([(raw(group), 7), (raw(7), 1)])
        );
        // A live thread's wait keeps its thread, and its exited waker is
        // the group.
        let mut refolded = woken;
        refolded.waker_tid = group;
        assert_eq!(collected.futex_waits[&refolded].total_ns, 10);
        assert_eq!(
            collected.thread_names,
            HashMap::from([(7, "main".to_owned())])
        );
    }
}
