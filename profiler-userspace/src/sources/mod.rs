//! The kernel's maps and rings read into events: the first stage a sample
//! passes through in userspace.
//!
//! Two transports carry the one event shape (`profiler_common::event`):
//! aggregation maps the kernel sums into (`maps`), drained every second by
//! generation, and ring buffers of events that carry a copy of the user
//! stack (`rings`), read several times a second and unwound while their
//! binaries are mapped. Both turn a key into a [`crate::model::Event`]
//! through `events`, with stacks from `stacks`, and add it to the
//! [`Aggregate`]. The counters, histograms and thread names the kernel
//! keeps are read here too.

mod events;
mod maps;
mod rings;
mod stacks;

use anyhow::Context as _;
use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray, StackTraceMap};
use profiler_common::{control::Control, counters::Counter, maps as names};

use self::{maps::EventMaps, rings::Rings, stacks::KernelStacks};
use crate::{
    aggregate::{Aggregate, Totals},
    attach::Attached,
    unwind::{Unwinder, kernel::KernelTables},
};

/// How long a drain waits after flipping generations: programs that read the
/// old generation finish within microseconds (they run with preemption off).
const GRACE: std::time::Duration = std::time::Duration::from_millis(5);

/// Every map of the loaded object, taken out of it (so they stay readable
/// after the programs are detached).
pub struct Sources {
    control: Array<MapData, u32>,
    counters: PerCpuArray<MapData, u64>,
    runq_hist: PerCpuArray<MapData, u64>,
    futex_hist: PerCpuArray<MapData, u64>,
    thread_names: BpfHashMap<MapData, u32, [u8; 16]>,
    stacks: KernelStacks,
    /// The in-kernel DWARF walker's tables.
    tables: KernelTables,
    /// Processes the walker asked tables for.
    needs_tables: BpfHashMap<MapData, u32, u32>,
    /// The processes recorded (`TargetMode::Set`).
    targets: BpfHashMap<MapData, u32, u8>,
    /// How each walk ended (`profiler_common::unwind::quality_slot`).
    quality: PerCpuArray<MapData, u64>,
    events: EventMaps,
    rings: Rings,
    /// The generation the kernel writes to.
    generation: u32,
    /// Stacks recycled so far.
    recycled: u64,
    /// The long-lived stack ids the last drain's events named.
    drained_ids: std::collections::HashSet<i32>,
}

impl Sources {
    pub fn open(attached: &mut Attached) -> anyhow::Result<Sources> {
        let mut take = |name: &'static str| -> anyhow::Result<Map> { Ok(attached.take_map(name)?) };
        fn pair<T: TryFrom<Map, Error = aya::maps::MapError>>(
            take: &mut impl FnMut(&'static str) -> anyhow::Result<Map>,
            names: [&'static str; 2],
        ) -> anyhow::Result<[T; 2]> {
            Ok([T::try_from(take(names[0])?)?, T::try_from(take(names[1])?)?])
        }
        Ok(Sources {
            control: Array::try_from(take(names::MAP_CONTROL)?)?,
            counters: PerCpuArray::try_from(take(names::MAP_COUNTERS)?)?,
            runq_hist: PerCpuArray::try_from(take(names::MAP_RUNQ_HIST)?)?,
            futex_hist: PerCpuArray::try_from(take(names::MAP_FUTEX_HIST)?)?,
            thread_names: BpfHashMap::try_from(take(names::MAP_THREAD_NAMES)?)?,
            stacks: KernelStacks::new(
                pair(&mut take, names::MAP_STACKS)?,
                StackTraceMap::try_from(take(names::MAP_LONG_STACKS)?)?,
                BpfHashMap::try_from(take(names::MAP_DWARF_STACKS)?)?,
            ),
            tables: KernelTables::new(
                Array::try_from(take(names::MAP_UNWIND_ROWS)?)?,
                Array::try_from(take(names::MAP_UNWIND_MAPPINGS)?)?,
                BpfHashMap::try_from(take(names::MAP_PROC_TABLES)?)?,
            ),
            needs_tables: BpfHashMap::try_from(take(names::MAP_NEEDS_TABLES)?)?,
            targets: BpfHashMap::try_from(take(names::MAP_TARGETS)?)?,
            quality: PerCpuArray::try_from(take(names::MAP_STACK_QUALITY)?)?,
            events: EventMaps::new([
                pair(&mut take, names::MAP_CPU_EVENTS)?,
                pair(&mut take, names::MAP_OFFCPU_EVENTS)?,
                pair(&mut take, names::MAP_FUTEX_EVENTS)?,
                pair(&mut take, names::MAP_GO_EVENTS)?,
            ]),
            rings: Rings::new(
                aya::maps::RingBuf::try_from(take(names::MAP_COPIES)?)?,
                aya::maps::RingBuf::try_from(take(names::MAP_INTERVALS)?)?,
            ),
            generation: 0,
            recycled: 0,
            drained_ids: Default::default(),
        })
    }

    /// Starts recording (see `profiler_common::control::Control::Armed`).
    pub fn arm(&mut self) -> anyhow::Result<()> {
        self.control
            .set(Control::Armed as u32, 1, 0)
            .context("cannot start the kernel side recording")
    }

    /// The threads the kernel noted since the last drain (not yet read).
    pub fn noted_threads(&self) -> std::collections::HashSet<u32> {
        self.thread_names.keys().flatten().collect()
    }

    /// Records `pids` from now on (`TargetMode::Set`).
    pub fn add_targets(&mut self, pids: &[u32]) -> anyhow::Result<()> {
        for pid in pids {
            self.targets
                .insert(pid, 1, 0)
                .with_context(|| format!("cannot add PID {pid} to the processes recorded"))?;
        }
        Ok(())
    }

    /// The processes in the targets map now (those given, and those the
    /// kernel added as they were forked; a thread's id may be among them).
    pub fn targets(&self) -> std::collections::HashSet<u32> {
        self.targets.keys().flatten().collect()
    }

    /// Makes the DWARF walker's tables of `pid` its `mappings` (just read).
    pub fn refresh_unwind_tables(&mut self, pid: u32, mappings: &[crate::procfs::Mapping]) {
        if let Err(err) = self.tables.refresh(pid, mappings) {
            tracing::warn!("{err:#}");
        }
    }

    /// Forgets a process that has exited: its tables and its place in the
    /// targets map.
    pub fn forget_process(&mut self, pid: u32) {
        self.tables.forget(pid);
        let _ = self.targets.remove(&pid);
        let _ = self.needs_tables.remove(&pid);
    }

    /// What the DWARF walker's tables hold.
    pub fn unwind_tables(&self) -> &crate::unwind::kernel::TableStats {
        self.tables.stats()
    }

    /// The processes the walker asked tables for since the last call: new
    /// ones, new images, code mapped since their tables were written.
    pub fn tables_wanted(&mut self) -> Vec<u32> {
        let wanted: Vec<u32> = self.needs_tables.keys().flatten().collect();
        for pid in &wanted {
            let _ = self.needs_tables.remove(pid);
            // The kernel dropped them at an exec, or they miss code.
            self.tables.invalidate(*pid);
        }
        wanted
    }

    /// Reads the ring buffers: unwinds each copied stack (while its binaries
    /// are mapped) and adds the events to `into`.
    pub fn read_rings(&mut self, unwinder: &mut Unwinder, into: &mut Aggregate) {
        self.rings.read(&mut self.stacks, unwinder, into);
    }

    /// Flips the generation and drains the one the kernel was writing, with
    /// the counters, histograms and thread names. Returns the thread names
    /// the kernel noted since the last drain.
    pub fn drain(&mut self, into: &mut Aggregate) -> anyhow::Result<Vec<(u32, String)>> {
        let old = self.generation;
        let new = 1 - old;
        self.control
            .set(Control::Generation as u32, new, 0)
            .context("cannot switch the kernel to the other map generation")?;
        self.generation = new;
        std::thread::sleep(GRACE);
        self.drained_ids.clear();
        self.events
            .drain(old as usize, &mut self.stacks, into, &mut self.drained_ids)?;
        self.read_totals(into)
    }

    /// Removes from the long-lived stack maps the stacks the last drain's
    /// events named, but those the events of the generation being written
    /// or `in_flight` (waits under way) name: the maps then hold what is
    /// still to be read, not every stack ever walked. Returns how many were
    /// removed.
    pub fn forget_drained_stacks(
        &mut self,
        mut in_flight: std::collections::HashSet<i32>,
    ) -> usize {
        self.events
            .stack_ids(self.generation as usize, &mut in_flight);
        let removed = self.stacks.forget(&self.drained_ids, &in_flight);
        self.drained_ids.clear();
        self.recycled += removed as u64;
        removed
    }

    /// Drains both generations (after the programs are detached).
    pub fn drain_all(&mut self, into: &mut Aggregate) -> anyhow::Result<Vec<(u32, String)>> {
        for generation in 0..2 {
            self.events
                .drain(generation, &mut self.stacks, into, &mut self.drained_ids)?;
        }
        self.read_totals(into)
    }

    /// Recycles the long-lived stack maps: every stack that neither the
    /// events of the generation being written nor `in_flight` (waits under
    /// way) refer to is removed. Returns how many were.
    pub fn recycle_stacks(
        &mut self,
        mut in_flight: std::collections::HashSet<i32>,
    ) -> anyhow::Result<usize> {
        self.events
            .stack_ids(self.generation as usize, &mut in_flight);
        let removed = self.stacks.recycle(&in_flight)?;
        self.recycled += removed as u64;
        Ok(removed)
    }

    /// Stacks recycled so far.
    pub fn recycled(&self) -> u64 {
        self.recycled
    }

    /// Completes a Go target's stacks from here on (see `go::traceback`).
    pub fn complete_go_stacks(&mut self, binary: std::rc::Rc<crate::go::GoBinary>, bias: u64) {
        self.stacks.complete_go(binary, bias);
    }

    /// Drops what is kept per thread for threads that have exited.
    pub fn forget_threads(&mut self, exited: impl Fn(u32) -> bool) {
        self.rings.forget_threads(exited);
    }

    fn read_totals(&mut self, into: &mut Aggregate) -> anyhow::Result<Vec<(u32, String)>> {
        let mut totals = Totals::default();
        for counter in Counter::ALL {
            let per_cpu = self
                .counters
                .get(&(counter as u32), 0)
                .context("cannot read the kernel's counters")?;
            totals.counters[counter as usize] = per_cpu.iter().sum();
        }
        for (hist, out) in [
            (&self.runq_hist, &mut totals.runq_hist),
            (&self.futex_hist, &mut totals.futex_hist),
        ] {
            for (bucket, slot) in out.iter_mut().enumerate() {
                *slot = hist
                    .get(&(bucket as u32), 0)
                    .context("cannot read a histogram")?
                    .iter()
                    .sum();
            }
        }
        totals.vanished_stacks = self.stacks.vanished();
        for (slot, out) in totals.stack_quality.iter_mut().enumerate() {
            *out = self
                .quality
                .get(&(slot as u32), 0)
                .context("cannot read the stack walks' counts")?
                .iter()
                .sum();
        }
        totals.unwind_tables = self.tables.stats().clone();
        into.set_totals(totals);
        // Read and removed: the kernel notes a thread again at its next
        // event, so each drain reads the threads active since the last one,
        // not every thread that ever ran.
        let noted: Vec<(u32, [u8; 16])> = self.thread_names.iter().flatten().collect();
        let mut names = Vec::with_capacity(noted.len());
        for (tid, comm) in noted {
            let _ = self.thread_names.remove(&tid);
            let len = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
            names.push((tid, String::from_utf8_lossy(&comm[..len]).into_owned()));
        }
        Ok(names)
    }
}
