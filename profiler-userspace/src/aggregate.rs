//! Events summed by shape: the one store every source adds to, which takes
//! differences (a profile over the last N seconds), folds the data of
//! exited threads, and notes what each drain added that still needs naming.

use std::collections::{HashMap, HashSet, hash_map::Entry};

use profiler_common::{
    counters::Counter,
    maps::HIST_BUCKETS,
    unwind::{QUALITY_FP_FRAMES, QUALITY_SLOTS, QUALITY_SLOTS_PER_KIND, StackKind, WalkEnd},
};

use crate::{
    go,
    model::{Event, Origin, Stack, Value},
};

/// The kernel's own running totals: its counters, histograms and the stacks
/// that vanished before they were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// Summed over CPUs, indexed by [`Counter`].
    pub counters: [u64; Counter::ALL.len()],
    /// Run-queue delays, log2 buckets of nanoseconds.
    pub runq_hist: Vec<u64>,
    /// Futex wait durations, log2 buckets of nanoseconds.
    pub futex_hist: Vec<u64>,
    /// Stack ids referenced by an event but gone from their map.
    pub vanished_stacks: u64,
    /// How the in-kernel DWARF walks ended, by
    /// `profiler_common::unwind::quality_slot`.
    pub stack_quality: Vec<u64>,
    /// What the DWARF walker's tables held.
    pub unwind_tables: crate::unwind::kernel::TableStats,
    /// Events the programs missed because a BPF program was already
    /// running on that CPU (the kernel's `recursion_misses`).
    pub recursion_misses: u64,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            counters: [0; Counter::ALL.len()],
            runq_hist: vec![0; HIST_BUCKETS as usize],
            futex_hist: vec![0; HIST_BUCKETS as usize],
            vanished_stacks: 0,
            stack_quality: vec![0; QUALITY_SLOTS as usize],
            unwind_tables: Default::default(),
            recursion_misses: 0,
        }
    }
}

impl Totals {
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters[counter as usize]
    }

    /// How many of `kind`'s in-kernel DWARF walks ended in `end`.
    pub fn walks(&self, kind: StackKind, end: WalkEnd) -> u64 {
        self.quality_slot(kind, end as u32)
    }

    /// Frames of `kind`'s walks taken by frame pointers for want of
    /// call-frame information (a fallback).
    pub fn walk_fallbacks(&self, kind: StackKind) -> u64 {
        self.quality_slot(kind, QUALITY_FP_FRAMES)
    }

    fn quality_slot(&self, kind: StackKind, slot: u32) -> u64 {
        self.stack_quality
            .get((kind as u32 * QUALITY_SLOTS_PER_KIND + slot) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Every way a sample, stack or event can be lost, as a label, with how
    /// many were: the kernel's loss counters, and stacks evicted before
    /// they were read.
    pub fn losses(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL
            .iter()
            .filter(|c| c.is_loss())
            .map(|c| (c.label(), self.counter(*c)))
            .chain([
                ("stack_evicted", self.vanished_stacks),
                ("bpf_recursion", self.recursion_misses),
            ])
            .collect()
    }

    /// What the counters and histograms added after `before`.
    pub fn since(&self, before: &Totals) -> Totals {
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
        Totals {
            counters,
            runq_hist: minus(&self.runq_hist, &before.runq_hist),
            futex_hist: minus(&self.futex_hist, &before.futex_hist),
            vanished_stacks: self.vanished_stacks.saturating_sub(before.vanished_stacks),
            stack_quality: minus(&self.stack_quality, &before.stack_quality),
            unwind_tables: self.unwind_tables.clone(),
            recursion_misses: self
                .recursion_misses
                .saturating_sub(before.recursion_misses),
        }
    }
}

/// What the sources added since the last [`Aggregate::take_fresh`] that
/// needs naming: the stacks of new events, new lock words, and other
/// processes that woke the target. Naming only these keeps a drain's cost
/// proportional to what is new, not to everything collected.
#[derive(Debug, Default)]
pub struct Fresh {
    /// Each new user stack, with its process.
    pub user: Vec<(u32, Stack)>,
    pub kernel: Vec<Stack>,
    /// New lock words, with their process.
    pub locks: Vec<(u32, u64)>,
    /// Processes of wakers whose user stacks were not taken (named only).
    pub processes: Vec<u32>,
}

impl Fresh {
    fn note(&mut self, event: &Event) {
        self.user.push((event.pid, event.user.clone()));
        self.kernel.push(event.kernel.clone());
        match event.origin {
            Origin::FutexWait | Origin::FutexWake => self.locks.push((event.pid, event.lock)),
            // A Go semaphore lies inside its lock (see
            // `go::waits::semaphore_offset`): the lock is named too.
            Origin::GoWait { sema: true, .. } if event.lock != 0 => self.locks.extend(
                go::SEMAPHORE_OFFSETS
                    .iter()
                    .map(|offset| (event.pid, event.lock.wrapping_sub(*offset))),
            ),
            _ => {}
        }
        if let Some(waker) = &event.waker {
            self.kernel.push(waker.kernel.clone());
            // A waker whose user stack was taken is of a recorded process;
            // other processes are only named.
            if matches!(waker.user, Stack::Frames(_)) {
                self.user.push((waker.tgid, waker.user.clone()));
            } else if waker.tgid != 0 {
                self.processes.push(waker.tgid);
            }
        }
    }
}

/// Events by shape. Hashed with foldhash: an event's key holds its stacks,
/// and a long session hashes hundreds of thousands of them.
type EventMap = HashMap<Event, Value, foldhash::fast::RandomState>;

/// Everything collected: each distinct event with the sum of its values,
/// and the kernel's totals.
#[derive(Debug, Default)]
pub struct Aggregate {
    events: EventMap,
    totals: Totals,
    fresh: Fresh,
}

impl Clone for Aggregate {
    /// A copy of the data; what is still to be named stays with the
    /// original.
    fn clone(&self) -> Self {
        Aggregate {
            events: self.events.clone(),
            totals: self.totals.clone(),
            fresh: Fresh::default(),
        }
    }
}

impl Aggregate {
    pub fn new() -> Aggregate {
        Aggregate::default()
    }

    /// An empty aggregate that starts from these kernel totals.
    pub fn with_totals(totals: Totals) -> Aggregate {
        Aggregate {
            totals,
            ..Aggregate::default()
        }
    }

    /// Adds `other`'s events (its totals are left out).
    pub fn add_events(&mut self, other: &Aggregate) {
        for (event, value) in &other.events {
            self.events.entry(event.clone()).or_default().add(*value);
        }
    }

    /// Adds `value` to `event`'s sum, noting a new event's stacks and lock
    /// for naming.
    pub fn add(&mut self, event: Event, value: Value) {
        match self.events.entry(event) {
            Entry::Occupied(entry) => entry.into_mut().add(value),
            Entry::Vacant(entry) => {
                self.fresh.note(entry.key());
                entry.insert(value);
            }
        }
    }

    /// Replaces the kernel's totals with newer ones (they are cumulative).
    pub fn set_totals(&mut self, totals: Totals) {
        self.totals = totals;
    }

    /// Notes the programs' recursion misses (read apart from the maps).
    pub fn set_recursion_misses(&mut self, misses: u64) {
        self.totals.recursion_misses = misses;
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    pub fn events(&self) -> impl Iterator<Item = (&Event, &Value)> {
        self.events.iter()
    }

    /// How many distinct events there are.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// What was added since the last call (see [`Fresh`]).
    pub fn take_fresh(&mut self) -> Fresh {
        std::mem::take(&mut self.fresh)
    }

    /// The threads whose events are held.
    /// The processes with on-CPU samples.
    pub fn processes_sampled(&self) -> std::collections::HashSet<u32> {
        self.events
            .keys()
            .filter(|e| e.origin == Origin::Cpu)
            .map(|e| e.pid)
            .collect()
    }

    pub fn threads(&self) -> impl Iterator<Item = u32> + '_ {
        self.events.keys().map(|e| e.tid)
    }

    /// What was collected after `before` (an earlier copy of this): values,
    /// totals and histograms subtracted; events that added nothing left out.
    pub fn since(&self, before: &Aggregate) -> Aggregate {
        Aggregate {
            events: self
                .events
                .iter()
                .filter_map(|(event, value)| {
                    let old = before.events.get(event).copied().unwrap_or_default();
                    let added = value.since(old);
                    (added.count > 0).then(|| (event.clone(), added))
                })
                .collect(),
            totals: self.totals.since(&before.totals),
            fresh: Fresh::default(),
        }
    }

    /// Adds `other`'s events without their stacks (their sums by process,
    /// thread, lock and origin stay; for running totals that outlive the
    /// stacks).
    pub fn add_stackless(&mut self, other: Aggregate) {
        for (mut event, value) in other.events {
            event.user = Stack::Empty;
            event.kernel = Stack::Empty;
            if let Some(waker) = &mut event.waker {
                waker.user = Stack::Empty;
                waker.kernel = Stack::Empty;
            }
            event.in_progress = false;
            self.events.entry(event).or_default().add(value);
        }
    }

    /// Every process and user address, and every kernel address, the
    /// events name (to keep their symbols).
    pub fn addresses(&self, user: &mut HashSet<(u32, u64)>, kernel: &mut HashSet<u64>) {
        for event in self.events.keys() {
            user.extend(
                event
                    .user
                    .lookup_addrs()
                    .into_iter()
                    .map(|a| (event.pid, a)),
            );
            kernel.extend(event.kernel.lookup_addrs());
            if let Some(waker) = &event.waker {
                user.extend(
                    waker
                        .user
                        .lookup_addrs()
                        .into_iter()
                        .map(|a| (waker.tgid, a)),
                );
                kernel.extend(waker.kernel.lookup_addrs());
            }
        }
    }

    /// The processes the events name (their own, and their wakers').
    pub fn pids(&self) -> HashSet<u32> {
        let mut pids = HashSet::new();
        for event in self.events.keys() {
            pids.insert(event.pid);
            if let Some(waker) = &event.waker {
                pids.insert(waker.tgid);
            }
        }
        pids
    }

    /// Moves the events of the threads in `folding` (thread id -> the id
    /// that stands for its folded group, as thread and as waker) under
    /// their group's id, summing events that become equal.
    pub fn fold_threads(&mut self, folding: &HashMap<u32, u32>) {
        if folding.is_empty() {
            return;
        }
        // Only the events of the threads folded are rekeyed (a long
        // session holds many more than churn folds at a time).
        let moved: Vec<Event> = self
            .events
            .keys()
            .filter(|event| {
                folding.contains_key(&event.tid)
                    || event
                        .waker
                        .as_ref()
                        .is_some_and(|w| folding.contains_key(&w.tid))
            })
            .cloned()
            .collect();
        for mut event in moved {
            let Some(value) = self.events.remove(&event) else {
                continue;
            };
            if let Some(group) = folding.get(&event.tid) {
                event.tid = *group;
            }
            if let Some(waker) = &mut event.waker
                && let Some(group) = folding.get(&waker.tid)
            {
                waker.tid = *group;
            }
            self.events.entry(event).or_default().add(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FOLDED_THREADS, Waker};

    fn sample(tid: u32) -> Event {
        Event {
            origin: Origin::Cpu,
            pid: 1,
            tid,
            user: Stack::Frames(vec![0x1000, 0x2000].into()),
            kernel: Stack::Empty,
            lock: 0,
            waker: None,
            in_progress: false,
        }
    }

    fn wait(lock: u64) -> Event {
        Event {
            origin: Origin::FutexWait,
            pid: 1,
            tid: 7,
            user: Stack::Empty,
            kernel: Stack::Empty,
            lock,
            waker: None,
            in_progress: false,
        }
    }

    fn waits(count: u64, total: u64, max: u64) -> Value {
        Value { count, total, max }
    }

    #[test]
    fn since_keeps_only_what_was_added() {
        let mut before = Aggregate::new();
        before.add(sample(1), waits(10, 10, 1));
        before.add(sample(2), waits(4, 4, 1));
        before.add(wait(0xa0), waits(3, 300, 200));
        let mut totals = Totals::default();
        totals.runq_hist[..3].copy_from_slice(&[1, 2, 3]);
        totals.counters[Counter::CpuSamples as usize] = 14;
        before.set_totals(totals.clone());
        let mut now = before.clone();
        now.add(sample(1), waits(5, 5, 1));
        now.add(sample(3), waits(2, 2, 1));
        now.add(wait(0xa0), waits(2, 50, 30));
        now.add(wait(0xb0), waits(1, 9, 9));
        totals.runq_hist[..3].copy_from_slice(&[1, 5, 3]);
        totals.counters[Counter::CpuSamples as usize] = 21;
        now.set_totals(totals);

        let delta = now.since(&before);
        let get = |e: &Event| delta.events.get(e).copied();
        // Thread 2 added nothing: gone from the delta.
        assert_eq!(delta.len(), 4);
        assert_eq!(get(&sample(1)).map(|v| v.count), Some(5));
        assert_eq!(get(&sample(2)), None);
        assert_eq!(get(&sample(3)).map(|v| v.count), Some(2));
        assert_eq!(get(&wait(0xa0)), Some(waits(2, 50, 200)));
        assert_eq!(get(&wait(0xb0)).map(|v| v.total), Some(9));
        assert_eq!(delta.totals().runq_hist[..3], [0, 3, 0]);
        assert_eq!(delta.totals().counter(Counter::CpuSamples), 7);
    }

    #[test]
    fn exited_threads_fold_into_their_group() {
        let group = FOLDED_THREADS;
        let mut aggregate = Aggregate::new();
        aggregate.add(sample(5), waits(3, 3, 1));
        aggregate.add(sample(6), waits(4, 4, 1));
        aggregate.add(sample(7), waits(1, 1, 1));
        let mut woken = wait(0xa0);
        woken.waker = Some(Waker {
            tgid: 1,
            tid: 6,
            user: Stack::Empty,
            kernel: Stack::Empty,
        });
        aggregate.add(woken.clone(), waits(1, 10, 10));
        aggregate.fold_threads(&HashMap::from([(5, group), (6, group)]));
        // 5 and 6 had the same stack: one entry of the group, summed.
        assert_eq!(
            aggregate.events.get(&sample(group)).map(|v| v.count),
            Some(7)
        );
        assert_eq!(aggregate.events.get(&sample(7)).map(|v| v.count), Some(1));
        // A live thread's wait keeps its thread, and its exited waker is
        // the group.
        let mut refolded = woken;
        if let Some(waker) = &mut refolded.waker {
            waker.tid = group;
        }
        assert_eq!(aggregate.events.get(&refolded).map(|v| v.total), Some(10));
    }

    #[test]
    fn new_events_are_noted_for_naming_once() {
        let mut aggregate = Aggregate::new();
        aggregate.add(wait(0xa0), waits(1, 5, 5));
        aggregate.add(wait(0xa0), waits(1, 5, 5));
        let fresh = aggregate.take_fresh();
        assert_eq!(fresh.locks, [(1, 0xa0)]);
        assert_eq!((fresh.user.len(), fresh.kernel.len()), (1, 1));
        assert!(aggregate.take_fresh().locks.is_empty());
        assert!(aggregate.clone().take_fresh().user.is_empty());
    }
}
