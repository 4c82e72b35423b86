//! Draining the kernel's maps into userspace aggregates.
//!
//! The kernel counts samples in one of two generations of maps. A drain
//! flips the generation, waits for programs still writing the old one to
//! finish, then reads every count and its stacks out of the old generation
//! and clears it. Identical stacks are summed into [`RawStack`] keys, so each
//! unique stack is later symbolized once. Drains run periodically (the maps
//! never fill on long runs) and once more at the end.

use std::{collections::HashMap, time::Duration};

use anyhow::Context as _;
use aya::maps::{Array, Map, MapData, PerCpuArray, PerCpuHashMap, StackTraceMap};
use profiler_common::{
    CONTROL_GENERATION, Counter, MAP_CONTROL, MAP_COUNTERS, MAP_CPU_COUNTS, MAP_STACKS, SampleKey,
};

use crate::attach::Attached;

/// Why a stack is missing from a sample; the sample itself is still counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StackLoss {
    /// The kernel returned this errno from `bpf_get_stackid`.
    Errno(i32),
    /// The stack id was no longer in the stack map when drained.
    Vanished,
}

impl StackLoss {
    /// A frame name that says why the stack is missing.
    pub fn frame_name(self, user: bool) -> String {
        let side = if user { "user" } else { "kernel" };
        match self {
            StackLoss::Errno(profiler_common::stack_error::EEXIST) => {
                format!("[{side} stack lost: stack map collision]")
            }
            StackLoss::Errno(profiler_common::stack_error::ENOMEM) => {
                format!("[{side} stack lost: stack map full]")
            }
            StackLoss::Errno(profiler_common::stack_error::EFAULT) => format!("[no {side} stack]"),
            StackLoss::Errno(errno) => format!("[{side} stack lost: errno {errno}]"),
            StackLoss::Vanished => format!("[{side} stack lost: evicted before drain]"),
        }
    }
}

/// A stack as the kernel recorded it: instruction pointers, leaf first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stack {
    Frames(Box<[u64]>),
    /// No kernel frames: the thread was in user mode (the normal case).
    Empty,
    Lost(StackLoss),
}

/// One unique (thread, user stack, kernel stack).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawStack {
    pub tid: u32,
    pub user: Stack,
    pub kernel: Stack,
}

/// The samples drained so far and the kernel's counters.
#[derive(Debug, Default)]
pub struct Collected {
    /// Sample count per unique stack.
    pub stacks: HashMap<RawStack, u64>,
    /// The kernel's counters, summed over CPUs, indexed by [`Counter`].
    pub counters: [u64; Counter::ALL.len()],
    /// Drains done.
    pub drains: u64,
    /// Stack ids referenced by a count but gone from the stack map.
    pub vanished_stacks: u64,
}

impl Collected {
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters[counter as usize]
    }
}

/// The maps of the on-CPU profile, taken out of the loaded object.
pub struct Collector {
    control: Array<MapData, u32>,
    counters: PerCpuArray<MapData, u64>,
    counts: [PerCpuHashMap<MapData, SampleKey, u64>; 2],
    stacks: [StackTraceMap<MapData>; 2],
    generation: u32,
    pub collected: Collected,
}

/// How long a drain waits after flipping generations: programs that read the
/// old generation finish within microseconds (they run with preemption off).
const GRACE: Duration = Duration::from_millis(5);

impl Collector {
    pub fn new(attached: &mut Attached) -> anyhow::Result<Collector> {
        let take = |attached: &mut Attached, name: &'static str| -> anyhow::Result<Map> {
            Ok(attached.take_map(name)?)
        };
        let control = Array::try_from(take(attached, MAP_CONTROL)?)?;
        let counters = PerCpuArray::try_from(take(attached, MAP_COUNTERS)?)?;
        let counts = [
            PerCpuHashMap::try_from(take(attached, MAP_CPU_COUNTS[0])?)?,
            PerCpuHashMap::try_from(take(attached, MAP_CPU_COUNTS[1])?)?,
        ];
        let stacks = [
            StackTraceMap::try_from(take(attached, MAP_STACKS[0])?)?,
            StackTraceMap::try_from(take(attached, MAP_STACKS[1])?)?,
        ];
        Ok(Collector {
            control,
            counters,
            counts,
            stacks,
            generation: 0,
            collected: Collected::default(),
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
        self.read_counters()?;
        self.collected.drains += 1;
        Ok(())
    }

    /// Drains both generations (after the programs are detached).
    pub fn drain_all(&mut self) -> anyhow::Result<()> {
        self.drain_generation(0)?;
        self.drain_generation(1)?;
        self.read_counters()?;
        self.collected.drains += 1;
        Ok(())
    }

    fn drain_generation(&mut self, generation: usize) -> anyhow::Result<()> {
        let counts = &mut self.counts[generation];
        let stack_map = &mut self.stacks[generation];
        let keys = counts
            .keys()
            .collect::<Result<Vec<SampleKey>, _>>()
            .context("cannot list the kernel's sample counts")?;
        let mut resolved: HashMap<i32, Stack> = HashMap::new();
        let mut resolve = |id: i32, kernel: bool, vanished: &mut u64| -> Stack {
            if id < 0 {
                return if kernel && -id == profiler_common::stack_error::EFAULT {
                    Stack::Empty
                } else {
                    Stack::Lost(StackLoss::Errno(-id))
                };
            }
            resolved
                .entry(id)
                .or_insert_with(|| match stack_map.get(&(id as u32), 0) {
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
                })
                .clone()
        };
        for key in keys {
            let value: u64 = match counts.get(&key, 0) {
                Ok(per_cpu) => per_cpu.iter().sum(),
                // Removed between listing and reading: nothing to count.
                Err(_) => continue,
            };
            let raw = RawStack {
                tid: key.tid,
                user: resolve(
                    key.user_stack_id,
                    false,
                    &mut self.collected.vanished_stacks,
                ),
                kernel: resolve(
                    key.kernel_stack_id,
                    true,
                    &mut self.collected.vanished_stacks,
                ),
            };
            *self.collected.stacks.entry(raw).or_default() += value;
            let _ = counts.remove(&key);
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

    fn read_counters(&mut self) -> anyhow::Result<()> {
        for counter in Counter::ALL {
            let per_cpu = self
                .counters
                .get(&(counter as u32), 0)
                .context("cannot read the kernel's counters")?;
            self.collected.counters[counter as usize] = per_cpu.iter().sum();
        }
        Ok(())
    }
}
