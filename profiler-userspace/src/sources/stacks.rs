//! Stack ids into stacks: on-CPU samples name stacks in their generation's
//! stack map (read at the drain, then cleared with it); every other event,
//! and every stack the DWARF walker took, names them in a long-lived map,
//! whose stacks are resolved once and cached here, and which is recycled
//! (every stack nothing still refers to removed) during a long session. A Go target's stacks get
//! the frame a frame-pointer walk misses (see `go::traceback`).

use std::{collections::HashMap, rc::Rc};

use anyhow::Context as _;
use aya::maps::{HashMap as BpfHashMap, MapData, StackTraceMap};
use profiler_common::{
    stacks::stack_error,
    unwind::{UserStack, is_dwarf_stack_id},
};

use crate::{
    go::GoBinary,
    model::{Stack, StackLoss},
};

/// A Go target's binary and its load bias, to complete its stacks.
type GoTarget = (Rc<GoBinary>, u64);

/// The kernel's stack maps.
pub struct KernelStacks {
    /// On-CPU stacks, one map per generation.
    generations: [StackTraceMap<MapData>; 2],
    long: StackTraceMap<MapData>,
    /// Stacks the in-kernel DWARF walker took (never cleared during a
    /// recording, like `long`).
    dwarf: BpfHashMap<MapData, i32, UserStack>,
    /// Resolved long-lived and walked stacks by id.
    long_cache: HashMap<i32, Stack>,
    /// Stack ids referenced by an event but gone from their map.
    vanished: u64,
    go: Option<GoTarget>,
}

impl KernelStacks {
    pub fn new(
        generations: [StackTraceMap<MapData>; 2],
        long: StackTraceMap<MapData>,
        dwarf: BpfHashMap<MapData, i32, UserStack>,
    ) -> Self {
        KernelStacks {
            generations,
            long,
            dwarf,
            long_cache: HashMap::new(),
            vanished: 0,
            go: None,
        }
    }

    /// Completes the stacks of a Go target from here on (`bias`: process
    /// address minus ELF address).
    pub fn complete_go(&mut self, binary: Rc<GoBinary>, bias: u64) {
        self.go = Some((binary, bias));
    }

    /// Stack ids that were gone from their map when an event named them.
    pub fn vanished(&self) -> u64 {
        self.vanished
    }

    /// A stack of the long-lived map (every origin but on-CPU samples).
    pub fn long(&mut self, id: i32) -> Stack {
        if id < 0 {
            return lost(id);
        }
        if let Some(stack) = self.long_cache.get(&id) {
            return stack.clone();
        }
        let stack = if is_dwarf_stack_id(id) {
            read_dwarf(&self.dwarf, id, &mut self.vanished)
        } else {
            read(&self.long, id, &mut self.vanished, self.go.as_ref())
        };
        self.long_cache.insert(id, stack.clone());
        stack
    }

    /// Removes from the long-lived stack maps (and from the cache) every
    /// stack no event still to be read refers to (`referenced`), so the
    /// maps do not fill up over a long session. Returns how many were
    /// removed. A stack walked again later is stored again.
    pub fn recycle(
        &mut self,
        referenced: &std::collections::HashSet<i32>,
    ) -> anyhow::Result<usize> {
        let mut removed = 0;
        let dwarf: Vec<i32> = self.dwarf.keys().flatten().collect();
        for id in dwarf {
            if !referenced.contains(&id) && self.dwarf.remove(&id).is_ok() {
                removed += 1;
            }
        }
        let long = self
            .long
            .stack_ids()
            .collect::<Result<Vec<u32>, _>>()
            .context("cannot list the kernel's long-lived stack map")?;
        for id in long {
            if !referenced.contains(&(id as i32)) && self.long.remove(&id).is_ok() {
                removed += 1;
            }
        }
        self.long_cache.retain(|id, _| referenced.contains(id));
        Ok(removed)
    }

    /// Removes the stacks of `ids` (those events just drained named) from
    /// the long-lived maps and the cache, but those in `referenced` (still
    /// to be read: events of the generation being written, waits under
    /// way). A stack walked again is stored again. Returns how many were
    /// removed.
    pub fn forget(
        &mut self,
        ids: &std::collections::HashSet<i32>,
        referenced: &std::collections::HashSet<i32>,
    ) -> usize {
        let mut removed = 0;
        for id in ids.difference(referenced) {
            let gone = if is_dwarf_stack_id(*id) {
                self.dwarf.remove(id).is_ok()
            } else {
                self.long.remove(&(*id as u32)).is_ok()
            };
            self.long_cache.remove(id);
            removed += usize::from(gone);
        }
        removed
    }

    /// A resolver for the on-CPU stacks of one generation, caching within
    /// one drain (many samples share a stack).
    pub fn generation(&mut self, generation: usize) -> GenerationStacks<'_> {
        GenerationStacks {
            map: &self.generations[generation],
            dwarf: &self.dwarf,
            cache: HashMap::new(),
            vanished: &mut self.vanished,
            go: self.go.as_ref(),
        }
    }

    /// Empties a generation's stack map once its samples are drained.
    pub fn clear_generation(&mut self, generation: usize) -> anyhow::Result<()> {
        let map = &mut self.generations[generation];
        let ids = map
            .stack_ids()
            .collect::<Result<Vec<u32>, _>>()
            .context("cannot list the kernel's stack map")?;
        for id in ids {
            let _ = map.remove(&id);
        }
        Ok(())
    }
}

/// The on-CPU stacks of one generation, while it is drained.
pub struct GenerationStacks<'a> {
    map: &'a StackTraceMap<MapData>,
    dwarf: &'a BpfHashMap<MapData, i32, UserStack>,
    cache: HashMap<i32, Stack>,
    vanished: &'a mut u64,
    go: Option<&'a GoTarget>,
}

impl GenerationStacks<'_> {
    pub fn get(&mut self, id: i32) -> Stack {
        if id < 0 {
            return lost(id);
        }
        let (map, dwarf, vanished, go) = (self.map, self.dwarf, &mut *self.vanished, self.go);
        self.cache
            .entry(id)
            .or_insert_with(|| {
                if is_dwarf_stack_id(id) {
                    read_dwarf(dwarf, id, vanished)
                } else {
                    read(map, id, vanished, go)
                }
            })
            .clone()
    }
}

/// The stack a negative id (`-errno`) stands for.
fn lost(id: i32) -> Stack {
    if -id == stack_error::EFAULT {
        Stack::Empty
    } else {
        tracing::debug!(errno = -id, "stack not taken");
        Stack::Lost(StackLoss::Errno(-id))
    }
}

/// A stack the DWARF walker took: its frames, leaf first.
fn read_dwarf(map: &BpfHashMap<MapData, i32, UserStack>, id: i32, vanished: &mut u64) -> Stack {
    match map.get(&id, 0) {
        Ok(stack) => {
            let len = (stack.len as usize).min(stack.ips.len());
            match stack.ips.get(..len) {
                Some(ips) if !ips.is_empty() => Stack::Frames(ips.into()),
                _ => Stack::Empty,
            }
        }
        Err(_) => {
            *vanished += 1;
            Stack::Lost(StackLoss::Vanished)
        }
    }
}

fn read(map: &StackTraceMap<MapData>, id: i32, vanished: &mut u64, go: Option<&GoTarget>) -> Stack {
    match map.get(&(id as u32), 0) {
        Ok(trace) => {
            let mut ips: Vec<u64> = trace.frames().iter().map(|f| f.ip).collect();
            if let Some((binary, bias)) = go {
                binary.complete_stack(&mut ips, *bias);
            }
            if ips.is_empty() {
                Stack::Empty
            } else {
                Stack::Frames(ips.into())
            }
        }
        Err(_) => {
            *vanished += 1;
            Stack::Lost(StackLoss::Vanished)
        }
    }
}
