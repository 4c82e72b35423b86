//! The aggregation maps: every key the kernel summed in one generation,
//! read, resolved into an event with its stacks, added to the aggregate,
//! and removed.

use std::hash::Hash;

use anyhow::Context as _;
use aya::{
    Pod,
    maps::{MapData, PerCpuHashMap, PerCpuValues},
};
use profiler_common::{
    event::{EventKey, Origin, Value as KernelValue},
    unwind::is_dwarf_stack_id,
};

use super::{
    events::{event_of, waker_of},
    stacks::KernelStacks,
};
use crate::{
    aggregate::Aggregate,
    model::{Stack, Value},
};

type EventMap = PerCpuHashMap<MapData, EventKey, KernelValue>;

/// The on-CPU, off-CPU, futex and Go wait event maps, each in two
/// generations.
pub struct EventMaps {
    maps: [[EventMap; 2]; 4],
}

impl EventMaps {
    pub fn new(maps: [[EventMap; 2]; 4]) -> Self {
        EventMaps { maps }
    }

    /// Every stack id the events of `generation` name (the generation the
    /// kernel writes to now: its stacks must stay).
    pub fn stack_ids(&self, generation: usize, into: &mut std::collections::HashSet<i32>) {
        for pair in &self.maps {
            for key in pair[generation].keys().flatten() {
                into.extend([
                    key.user_stack_id,
                    key.kernel_stack_id,
                    key.waker.user_stack_id,
                    key.waker.kernel_stack_id,
                ]);
            }
        }
    }

    /// Moves every event of `generation` into `into`, and clears the
    /// generation's on-CPU stacks (its samples were the only users).
    pub fn drain(
        &mut self,
        generation: usize,
        stacks: &mut KernelStacks,
        into: &mut Aggregate,
        used: &mut std::collections::HashSet<i32>,
    ) -> anyhow::Result<()> {
        for pair in &mut self.maps {
            let entries = drain_entries(&mut pair[generation])?;
            // The long-lived stacks they name (an on-CPU sample's kernel
            // and frame-pointer stacks are its generation's, cleared anyway).
            for (key, _) in &entries {
                let on_cpu = key.origin() == Some(Origin::Cpu);
                used.extend(
                    [
                        key.user_stack_id,
                        key.kernel_stack_id,
                        key.waker.user_stack_id,
                        key.waker.kernel_stack_id,
                    ]
                    .into_iter()
                    .filter(|id| *id >= 0 && (!on_cpu || is_dwarf_stack_id(*id))),
                );
            }
            // On-CPU samples name their generation's stacks (read before
            // that map is cleared); every other origin the long-lived map.
            let on_cpu: Vec<Option<(Stack, Stack)>> = {
                let mut generation = stacks.generation(generation);
                entries
                    .iter()
                    .map(|(key, _)| {
                        (key.origin() == Some(Origin::Cpu)).then(|| {
                            (
                                generation.get(key.user_stack_id),
                                generation.get(key.kernel_stack_id),
                            )
                        })
                    })
                    .collect()
            };
            for ((key, per_cpu), on_cpu) in entries.iter().zip(on_cpu) {
                let (user, kernel) = on_cpu.unwrap_or_else(|| {
                    (
                        stacks.long(key.user_stack_id),
                        stacks.long(key.kernel_stack_id),
                    )
                });
                let waker = waker_of(&key.waker, stacks, None);
                match event_of(key, user, kernel, waker) {
                    Some(event) => into.add(event, sum(per_cpu)),
                    None => tracing::debug!(origin = key.origin, "unknown event in a map"),
                }
            }
        }
        stacks.clear_generation(generation)
    }
}

/// The value of a key summed over the CPUs.
fn sum(per_cpu: &PerCpuValues<KernelValue>) -> Value {
    let mut value = Value::default();
    for v in per_cpu.iter() {
        value.add(Value::from(*v));
    }
    value
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
