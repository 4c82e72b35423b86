//! The profiler's kernel side: a perf-event program that samples on-CPU
//! stacks of one process and counts them in the kernel.
//!
//! Every event is filtered by the target's tgid before anything else is done;
//! only the target's samples touch the maps. Stacks go into a stack-trace map,
//! and `(tgid, tid, user stack, kernel stack)` keys are counted in a per-CPU hash map.
//! Maps come in two generations so userspace can drain one while the kernel
//! fills the other (see `profiler_common::MAP_CPU_COUNTS`). Every failure is
//! counted in a per-CPU counter, and a sample whose stack could not be taken is
//! still counted under a negative stack id that says why.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::bpf_get_current_pid_tgid,
    macros::{map, perf_event},
    maps::{Array, PerCpuArray, PerCpuHashMap, StackTrace},
    programs::{PerfEventContext, tracing::StackIdContext},
};
use profiler_common::{
    CONTROL_GENERATION, CONTROL_LEN, COUNTER_LEN, COUNTS_MAP_ENTRIES, Counter, STACK_MAP_ENTRIES,
    SampleKey, stack_error,
};

/// The process to profile; set by userspace at load time.
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;

#[map]
static CONTROL: Array<u32> = Array::with_max_entries(CONTROL_LEN, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_LEN, 0);

#[map]
static STACKS_0: StackTrace = StackTrace::with_max_entries(STACK_MAP_ENTRIES, 0);
#[map]
static STACKS_1: StackTrace = StackTrace::with_max_entries(STACK_MAP_ENTRIES, 0);

// Not preallocated: preallocating 2 x 32k per-CPU entries costs the kernel a
// tenth of a second of CPU at load; entries are made on a stack's first sample.
#[map]
static CPU_COUNTS_0: PerCpuHashMap<SampleKey, u64> =
    PerCpuHashMap::with_max_entries(COUNTS_MAP_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
static CPU_COUNTS_1: PerCpuHashMap<SampleKey, u64> =
    PerCpuHashMap::with_max_entries(COUNTS_MAP_ENTRIES, BPF_F_NO_PREALLOC);

#[inline(always)]
fn target_tgid() -> u32 {
    // SAFETY: a plain read of a global that userspace may rewrite at load time;
    // the volatile read stops the compiler from folding the initial 0.
    unsafe { core::ptr::read_volatile(&TARGET_TGID) }
}

#[inline(always)]
fn bump(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; programs on one CPU do not preempt each other.
        unsafe { *slot += 1 };
    }
}

/// The generation the kernel writes to now (0 or 1).
#[inline(always)]
fn generation() -> u32 {
    match CONTROL.get(CONTROL_GENERATION) {
        Some(g) if *g == 1 => 1,
        _ => 0,
    }
}

/// Takes a stack id, or returns `-errno` and counts the reason.
#[inline(always)]
fn stack_id<C: StackIdContext>(ctx: &C, stacks: &StackTrace, user: bool) -> i32 {
    let flags = if user { BPF_F_USER_STACK as u64 } else { 0 };
    match ctx.get_stackid(stacks, flags) {
        Ok(id) => id as i32,
        Err(err) => {
            let errno = -err;
            let counter = match (user, errno) {
                // A thread sampled in user mode has no kernel stack: normal.
                (false, stack_error::EFAULT) => return -errno,
                (true, stack_error::EFAULT) => Counter::UserStackMissing,
                (true, stack_error::EEXIST) => Counter::UserStackCollision,
                (true, stack_error::ENOMEM) => Counter::UserStackMapFull,
                (true, _) => Counter::UserStackOther,
                (false, stack_error::EEXIST) => Counter::KernelStackCollision,
                (false, stack_error::ENOMEM) => Counter::KernelStackMapFull,
                (false, _) => Counter::KernelStackOther,
            };
            bump(counter);
            -errno
        }
    }
}

/// Adds `value` to `key` in this CPU's slot of `counts`; counts a full map.
///
/// Per-CPU values need no atomics (the BPF target has no 64-bit atomic
/// read-modify-write in `core`); userspace sums the CPUs when it drains.
#[inline(always)]
fn add(counts: &PerCpuHashMap<SampleKey, u64>, key: &SampleKey, value: u64) {
    if let Some(slot) = counts.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a live entry; nothing else writes it now.
        unsafe { *slot += value };
        return;
    }
    if counts.insert(key, value, BPF_NOEXIST as u64).is_err() {
        bump(Counter::CountsMapFull);
    }
}

/// On-CPU sampling: runs on every tick of the cpu-clock event on every CPU.
#[perf_event]
pub fn prf_cpu_sample(ctx: PerfEventContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid != target_tgid() || tgid == 0 {
        return 0;
    }
    bump(Counter::CpuSamples);
    let (stacks, counts) = if generation() == 0 {
        (&STACKS_0, &CPU_COUNTS_0)
    } else {
        (&STACKS_1, &CPU_COUNTS_1)
    };
    let key = SampleKey {
        tgid,
        tid: pid_tgid as u32,
        user_stack_id: stack_id(&ctx, stacks, true),
        kernel_stack_id: stack_id(&ctx, stacks, false),
    };
    add(counts, &key, 1);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
