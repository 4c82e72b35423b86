//! What every program uses: the clock, counters, the generation being
//! written, stack ids, summing a value under a key, histograms, and sending
//! an event with a copy of the user stack.

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{
        bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_probe_read_user_buf, bpf_task_pt_regs,
    },
    maps::{PerCpuArray, PerCpuHashMap, StackTrace},
    programs::tracing::StackIdContext,
};
use profiler_common::{
    control::Control,
    counters::Counter,
    event::{CopiedEvent, EventKey, Value},
    stacks::{STACK_CHUNK, STACK_COPY_BYTES, UnwindMode, stack_error},
};

use crate::maps::{CONTROL, COPIES, COUNTERS, LONG_STACKS, UNWIND_MODE, global};

/// Monotonic nanoseconds (`bpf_ktime_get_ns`).
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: the helper takes no arguments and cannot fail.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn bump(counter: Counter) {
    bump_by(counter, 1);
}

#[inline(always)]
pub fn bump_by(counter: Counter, value: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; programs on one CPU do not preempt each other.
        unsafe { *slot += value };
    }
}

/// The generation the kernel writes to now (0 or 1).
#[inline(always)]
pub fn generation() -> u32 {
    match CONTROL.get(Control::Generation as u32) {
        Some(g) if *g == 1 => 1,
        _ => 0,
    }
}

/// Takes a stack id, or returns `-errno` and counts the reason.
#[inline(always)]
pub fn stack_id<C: StackIdContext>(ctx: &C, stacks: &StackTrace, user: bool) -> i32 {
    stack_id_of(ctx, stacks, user, false)
}

/// A waker's stack: a wake-up from an interrupt or a kernel thread has no
/// user stack, which is normal and not counted as a loss.
#[inline(always)]
pub fn waker_stack_id<C: StackIdContext>(ctx: &C, stacks: &StackTrace, user: bool) -> i32 {
    stack_id_of(ctx, stacks, user, true)
}

#[inline(always)]
fn stack_id_of<C: StackIdContext>(ctx: &C, stacks: &StackTrace, user: bool, waker: bool) -> i32 {
    let flags = if user { BPF_F_USER_STACK as u64 } else { 0 };
    match ctx.get_stackid(stacks, flags) {
        Ok(id) => id as i32,
        Err(err) => {
            let errno = -err;
            let counter = match (user, errno) {
                // A thread sampled in user mode has no kernel stack: normal.
                (false, stack_error::EFAULT) => return -errno,
                (true, stack_error::EFAULT) if waker => return -errno,
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

/// Adds one event of `value` to `key` in this CPU's slot of `events`;
/// counts a full map under `full`. Per-CPU values need no atomics (the BPF
/// target has no 64-bit atomic read-modify-write in `core`); userspace sums
/// the CPUs.
#[inline(always)]
pub fn add_event(
    events: &PerCpuHashMap<EventKey, Value>,
    key: &EventKey,
    value: u64,
    full: Counter,
) {
    if let Some(slot) = events.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a live entry; nothing else writes it now.
        let slot = unsafe { &mut *slot };
        slot.count += 1;
        slot.total += value;
        if value > slot.max {
            slot.max = value;
        }
        return;
    }
    let first = Value {
        count: 1,
        total: value,
        max: value,
    };
    if events.insert(key, first, BPF_NOEXIST as u64).is_err() {
        bump(full);
    }
}

/// Counts `ns` in bucket floor(log2(ns)) of a per-CPU histogram.
#[inline(always)]
pub fn histogram(hist: &PerCpuArray<u64>, ns: u64) {
    let bucket = if ns == 0 { 0 } else { 63 - ns.leading_zeros() };
    if let Some(slot) = hist.get_ptr_mut(bucket) {
        // SAFETY: per-CPU slot.
        unsafe { *slot += 1 };
    }
}

const COPY: u32 = UnwindMode::Copy as u32;

/// Whether events copy their user stacks for userspace to unwind
/// (`--unwind copy`).
#[inline(always)]
pub fn copies() -> bool {
    global(&UNWIND_MODE) == COPY
}

/// Offsets of `ip`, `sp` and `bp` in x86_64's `struct pt_regs` (a stable
/// layout: it is the user-kernel register frame).
const PT_REGS_IP: usize = 16 * 8;
const PT_REGS_SP: usize = 19 * 8;
const PT_REGS_BP: usize = 4 * 8;

/// The current thread's user registers: `ip`, `sp`, `bp`. Every entry into
/// the kernel from user mode saves them in `task_pt_regs`, so they are the
/// user registers whether the event hit user or kernel mode.
#[inline(always)]
pub fn user_registers() -> Option<(u64, u64, u64)> {
    // SAFETY: the helpers return the current task and its register frame.
    let regs = unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) };
    if regs == 0 {
        return None;
    }
    let regs = regs as usize;
    // SAFETY: checked reads of kernel memory at fixed offsets of pt_regs.
    let (ip, sp, bp) = unsafe {
        (
            bpf_probe_read_kernel((regs + PT_REGS_IP) as *const u64).unwrap_or(0),
            bpf_probe_read_kernel((regs + PT_REGS_SP) as *const u64).unwrap_or(0),
            bpf_probe_read_kernel((regs + PT_REGS_BP) as *const u64).unwrap_or(0),
        )
    };
    if ip == 0 || sp == 0 {
        return None;
    }
    Some((ip, sp, bp))
}

/// Sends `key` and `value` with the thread's user registers and a copy of
/// its user stack to userspace; with `kernel`, the kernel stack is taken
/// into `LONG_STACKS` and named in the record. `task_pt_regs` holds the
/// user registers whether the event hit user or kernel mode (every entry
/// from user mode saves them there). Returns whether the record was sent
/// (a loss is counted).
#[inline(always)]
pub fn send_copy<C: StackIdContext>(ctx: &C, key: &EventKey, value: u64, kernel: bool) -> bool {
    let Some((ip, sp, bp)) = user_registers() else {
        bump(Counter::UserRegsMissing);
        return false;
    };
    let Some(mut entry) = COPIES.reserve::<CopiedEvent>(0) else {
        bump(Counter::UserStackRingFull);
        return false;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: the reserved entry is ours until submitted; fields are written
    // through the raw pointer (the record is far larger than the BPF stack).
    unsafe {
        (*record).key = *key;
        if kernel {
            (*record).key.kernel_stack_id = stack_id(ctx, &LONG_STACKS, false);
        }
        (*record).value = value;
        (*record).ip = ip;
        (*record).sp = sp;
        (*record).bp = bp;
        (*record).reserved = 0;
        let mut copied = 0u32;
        let mut chunk = 0usize;
        while chunk < STACK_COPY_BYTES / STACK_CHUNK {
            let offset = chunk * STACK_CHUNK;
            let dst = &mut (&mut (*record).stack)[offset..offset + STACK_CHUNK];
            if bpf_probe_read_user_buf((sp as usize + offset) as *const u8, dst).is_err() {
                break;
            }
            copied += STACK_CHUNK as u32;
            chunk += 1;
        }
        (*record).stack_len = copied;
    }
    entry.submit(0);
    true
}
