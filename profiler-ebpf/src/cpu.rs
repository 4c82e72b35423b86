//! On-CPU sampling: one event per tick of the cpu-clock perf event that
//! lands on a thread of the target.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::perf_event, programs::PerfEventContext};
use profiler_common::{
    counters::Counter,
    event::{EventKey, Origin},
    unwind::StackKind,
};

use crate::{
    maps::{CPU_EVENTS_0, CPU_EVENTS_1, STACKS_0, STACKS_1},
    shared::{add_event, bump, copies, generation, send_copy, stack_id},
    target::{is_target, note_thread},
    unwind::user_stack_id,
};

/// Runs on every tick of the cpu-clock event on every CPU.
#[perf_event]
pub fn prf_cpu_sample(ctx: PerfEventContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    let tid = pid_tgid as u32;
    note_thread(tid);
    bump(Counter::CpuSamples);
    let mut key = EventKey::new(Origin::Cpu, tgid, tid);
    if copies() {
        send_copy(&ctx, &key, 1, true);
        return 0;
    }
    let (stacks, events) = if generation() == 0 {
        (&STACKS_0, &CPU_EVENTS_0)
    } else {
        (&STACKS_1, &CPU_EVENTS_1)
    };
    key.user_stack_id = user_stack_id(&ctx, stacks, StackKind::Cpu);
    key.kernel_stack_id = stack_id(&ctx, stacks, false);
    add_event(events, &key, 1, Counter::CountsMapFull);
    0
}
