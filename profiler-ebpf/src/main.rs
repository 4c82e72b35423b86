//! The profiler's kernel side: a perf-event program that samples on-CPU
//! stacks of one process, scheduler tracepoints that time its off-CPU
//! intervals (with who woke it), and futex syscall tracepoints that time its
//! lock waits by lock address. Everything is counted in the kernel.
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
    bindings::{BPF_ANY, BPF_F_NO_PREALLOC, BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{map, perf_event, raw_tracepoint, tracepoint},
    maps::{Array, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
    programs::{
        PerfEventContext, RawTracePointContext, TracePointContext, tracing::StackIdContext,
    },
};
use profiler_common::{
    CONTROL_ARMED, CONTROL_GENERATION, CONTROL_LEN, COUNTER_LEN, COUNTS_MAP_ENTRIES, Counter,
    FutexInFlight, FutexWaitKey, FutexWakeKey, HIST_BUCKETS, INFLIGHT_MAP_ENTRIES,
    LONG_STACK_MAP_ENTRIES, OFFCPU_BLOCKED, OFFCPU_PREEMPTED, OffCpuKey, STACK_CHUNK,
    STACK_COPY_BYTES, STACK_MAP_ENTRIES, SampleKey, SwitchedOut, USER_STACKS_RING_BYTES,
    UserStackSample, WAIT_MAP_ENTRIES, WaitStats, futex_op, stack_error,
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

// Off-CPU and futex maps. Their stacks go to LONG_STACKS, which is never
// cleared during a recording (see profiler_common::MAP_LONG_STACKS).
#[map]
static LONG_STACKS: StackTrace = StackTrace::with_max_entries(LONG_STACK_MAP_ENTRIES, 0);
#[map]
static OFFCPU_0: PerCpuHashMap<OffCpuKey, WaitStats> =
    PerCpuHashMap::with_max_entries(WAIT_MAP_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
static OFFCPU_1: PerCpuHashMap<OffCpuKey, WaitStats> =
    PerCpuHashMap::with_max_entries(WAIT_MAP_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
static FUTEX_WAITS_0: PerCpuHashMap<FutexWaitKey, WaitStats> =
    PerCpuHashMap::with_max_entries(WAIT_MAP_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
static FUTEX_WAITS_1: PerCpuHashMap<FutexWaitKey, WaitStats> =
    PerCpuHashMap::with_max_entries(WAIT_MAP_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
static FUTEX_WAKES_0: PerCpuHashMap<FutexWakeKey, u64> =
    PerCpuHashMap::with_max_entries(WAIT_MAP_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
static FUTEX_WAKES_1: PerCpuHashMap<FutexWakeKey, u64> =
    PerCpuHashMap::with_max_entries(WAIT_MAP_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
static RUNQ_HIST: PerCpuArray<u64> = PerCpuArray::with_max_entries(HIST_BUCKETS, 0);
#[map]
static FUTEX_HIST: PerCpuArray<u64> = PerCpuArray::with_max_entries(HIST_BUCKETS, 0);
/// Threads of the target now switched out, by thread id.
#[map]
static SWITCHED_OUT: LruHashMap<u32, SwitchedOut> =
    LruHashMap::with_max_entries(INFLIGHT_MAP_ENTRIES, 0);
/// Names of the target's threads, noted when each is first seen.
#[map]
static THREAD_NAMES: LruHashMap<u32, [u8; 16]> =
    LruHashMap::with_max_entries(INFLIGHT_MAP_ENTRIES, 0);

/// Notes the current thread's name the first time it is seen.
#[inline(always)]
fn note_thread(tid: u32) {
    // SAFETY: a lookup; the value is not kept.
    if unsafe { THREAD_NAMES.get(tid) }.is_some() {
        return;
    }
    if let Ok(comm) = aya_ebpf::helpers::bpf_get_current_comm() {
        let _ = THREAD_NAMES.insert(tid, comm, BPF_NOEXIST as u64);
    }
}

/// Futex waits of the target under way, by thread id.
#[map]
static FUTEX_INFLIGHT: LruHashMap<u32, FutexInFlight> =
    LruHashMap::with_max_entries(INFLIGHT_MAP_ENTRIES, 0);

/// Copied user stacks for unwinding in userspace (`--unwind dwarf`).
#[map]
static USER_STACKS: RingBuf = RingBuf::with_byte_size(USER_STACKS_RING_BYTES, 0);

/// How cpu samples take user stacks (`profiler_common::UNWIND_*`).
#[unsafe(no_mangle)]
static UNWIND_DWARF: u32 = 0;
/// How futex waits and wakes take user stacks.
#[unsafe(no_mangle)]
static UNWIND_DWARF_FUTEX: u32 = 0;
/// How switch-outs take user stacks; copied ones send their intervals to
/// OFFCPU_INTERVALS.
#[unsafe(no_mangle)]
static UNWIND_DWARF_OFFCPU: u32 = 0;

/// Whether this event should copy its stack for userspace unwinding, by
/// the kind's `UNWIND_*` mode: always, never, or while the ring buffer is
/// less than half full (the rest take frame-pointer stacks in the kernel).
#[inline(always)]
fn copy_stack(mode: u32) -> bool {
    match mode {
        profiler_common::UNWIND_COPY => true,
        profiler_common::UNWIND_AUTO => {
            USER_STACKS.query(aya_ebpf::bindings::BPF_RB_AVAIL_DATA as u64)
                < u64::from(USER_STACKS_RING_BYTES / 2)
        }
        _ => false,
    }
}

/// Off-CPU intervals whose stacks were sent at their switch-out.
#[map]
static OFFCPU_INTERVALS: RingBuf = RingBuf::with_byte_size(1024 * 1024, 0);

/// Blocks shorter than this are dropped (and counted); set at load time.
#[unsafe(no_mangle)]
static MIN_BLOCK_NS: u64 = 0;
// Tracepoint field offsets, read by userspace from tracefs formats.
#[unsafe(no_mangle)]
static OFF_SWITCH_PREV_STATE: u32 = 32;
#[unsafe(no_mangle)]
static OFF_SWITCH_NEXT_PID: u32 = 56;
#[unsafe(no_mangle)]
static OFF_WAKING_PID: u32 = 24;
#[unsafe(no_mangle)]
static OFF_FUTEX_UADDR: u32 = 16;
#[unsafe(no_mangle)]
static OFF_FUTEX_OP: u32 = 24;
#[unsafe(no_mangle)]
static OFF_WAITV_WAITERS: u32 = 16;

/// Reads a global that userspace may rewrite at load time (volatile, so the
/// compiler cannot fold the initial value).
macro_rules! global {
    ($name:ident) => {{
        // SAFETY: a plain read of a global of the object.
        #[allow(unused_unsafe)]
        let value = unsafe { core::ptr::read_volatile(&$name) };
        value
    }};
}

/// Monotonic nanoseconds (`bpf_ktime_get_ns`).
#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: the helper takes no arguments and cannot fail.
    unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() }
}

#[inline(always)]
fn target_tgid() -> u32 {
    global!(TARGET_TGID)
}

/// Whether `tgid` is the target and recording has begun (see
/// `profiler_common::CONTROL_ARMED`).
#[inline(always)]
fn is_target(tgid: u32) -> bool {
    tgid == target_tgid() && tgid != 0 && matches!(CONTROL.get(CONTROL_ARMED), Some(1))
}

/// `sched_process_exec` (raw tracepoint, no tracefs needed): the target's
/// new image is in place, so recording begins.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn prf_exec(_ctx: RawTracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == target_tgid()
        && tgid != 0
        && let Some(armed) = CONTROL.get_ptr_mut(CONTROL_ARMED)
    {
        // SAFETY: a live array slot; a plain word store.
        unsafe { *armed = 1 };
    }
    0
}

#[inline(always)]
fn bump(counter: Counter) {
    bump_by(counter, 1);
}

#[inline(always)]
fn bump_by(counter: Counter, value: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; programs on one CPU do not preempt each other.
        unsafe { *slot += value };
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
    stack_id_of(ctx, stacks, user, false)
}

/// A waker's stack: a wake-up from an interrupt or a kernel thread has no
/// user stack, which is normal and not counted as a loss.
#[inline(always)]
fn waker_stack_id<C: StackIdContext>(ctx: &C, stacks: &StackTrace, user: bool) -> i32 {
    stack_id_of(ctx, stacks, user, true)
}

#[inline(always)]
fn stack_id_of<C: StackIdContext>(ctx: &C, stacks: &StackTrace, user: bool, waker: bool) -> i32 {
    let flags = if user { BPF_F_USER_STACK as u64 } else { 0 };
    // Off-CPU and futex stacks are kept across drains: see LONG_STACKS.
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

/// Adds one wait of `ns` to `key` in this CPU's slot of `stats`; counts a
/// full map under `full`.
#[inline(always)]
fn add_wait<K>(stats: &PerCpuHashMap<K, WaitStats>, key: &K, ns: u64, full: Counter) {
    if let Some(slot) = stats.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a live entry; nothing else writes it now.
        let slot = unsafe { &mut *slot };
        slot.count += 1;
        slot.total_ns += ns;
        if ns > slot.max_ns {
            slot.max_ns = ns;
        }
        return;
    }
    let first = WaitStats {
        count: 1,
        total_ns: ns,
        max_ns: ns,
    };
    if stats.insert(key, first, BPF_NOEXIST as u64).is_err() {
        bump(full);
    }
}

/// Adds `value` to `key` in this CPU's slot of `counts`; counts a full map
/// under `full`. Per-CPU values need no atomics (the BPF target has no
/// 64-bit atomic read-modify-write in `core`); userspace sums the CPUs.
#[inline(always)]
fn add_count<K>(counts: &PerCpuHashMap<K, u64>, key: &K, value: u64, full: Counter) {
    if let Some(slot) = counts.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a live entry; nothing else writes it now.
        unsafe { *slot += value };
        return;
    }
    if counts.insert(key, value, BPF_NOEXIST as u64).is_err() {
        bump(full);
    }
}

/// Counts `ns` in bucket floor(log2(ns)) of a per-CPU histogram.
#[inline(always)]
fn histogram(hist: &PerCpuArray<u64>, ns: u64) {
    let bucket = if ns == 0 { 0 } else { 63 - ns.leading_zeros() };
    if let Some(slot) = hist.get_ptr_mut(bucket) {
        // SAFETY: per-CPU slot.
        unsafe { *slot += 1 };
    }
}

/// On-CPU sampling: runs on every tick of the cpu-clock event on every CPU.
#[perf_event]
pub fn prf_cpu_sample(ctx: PerfEventContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    note_thread(pid_tgid as u32);
    bump(Counter::CpuSamples);
    if copy_stack(global!(UNWIND_DWARF)) {
        let event = StackEvent {
            kind: profiler_common::SAMPLE_CPU,
            op: 0,
            uaddr: 0,
            value_ns: 0,
            kernel: true,
        };
        copy_user_stack(&ctx, pid_tgid, &event);
        return 0;
    }
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
    add_count(counts, &key, 1, Counter::CountsMapFull);
    0
}

/// Offsets of `ip`, `sp` and `bp` in x86_64's `struct pt_regs` (a stable
/// layout: it is the user-kernel register frame).
const PT_REGS_IP: usize = 16 * 8;
const PT_REGS_SP: usize = 19 * 8;
const PT_REGS_BP: usize = 4 * 8;

/// What a copied stack is sent with.
struct StackEvent {
    kind: u32,
    op: u32,
    uaddr: u64,
    value_ns: u64,
    /// Whether to take the kernel stack too.
    kernel: bool,
}

/// Sends the thread's user registers and a copy of its user stack to
/// userspace. `task_pt_regs` holds the user registers whether the event
/// hit user or kernel mode (every entry from user mode saves them there).
#[inline(always)]
fn copy_user_stack<C: StackIdContext>(ctx: &C, pid_tgid: u64, event: &StackEvent) {
    use aya_ebpf::helpers::{
        bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_probe_read_user_buf,
    };
    // SAFETY: the helpers return the current task and its register frame.
    let regs = unsafe { aya_ebpf::helpers::bpf_task_pt_regs(bpf_get_current_task_btf()) };
    if regs == 0 {
        bump(Counter::UserRegsMissing);
        return;
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
        bump(Counter::UserRegsMissing);
        return;
    }
    let Some(mut entry) = USER_STACKS.reserve::<UserStackSample>(0) else {
        bump(Counter::UserStackRingFull);
        return;
    };
    let sample = entry.as_mut_ptr();
    // SAFETY: the reserved entry is ours until submitted; fields are written
    // through the raw pointer before it is handed over.
    unsafe {
        (*sample).tgid = (pid_tgid >> 32) as u32;
        (*sample).tid = pid_tgid as u32;
        (*sample).kernel_stack_id = if event.kernel {
            stack_id(ctx, &LONG_STACKS, false)
        } else {
            -stack_error::EFAULT
        };
        (*sample).kind = event.kind;
        (*sample).op = event.op;
        (*sample).uaddr = event.uaddr;
        (*sample).value_ns = event.value_ns;
        (*sample).ip = ip;
        (*sample).sp = sp;
        (*sample).bp = bp;
        let mut copied = 0u32;
        let mut chunk = 0usize;
        while chunk < STACK_COPY_BYTES / STACK_CHUNK {
            let offset = chunk * STACK_CHUNK;
            let dst = &mut (&mut (*sample).stack)[offset..offset + STACK_CHUNK];
            if bpf_probe_read_user_buf((sp as usize + offset) as *const u8, dst).is_err() {
                break;
            }
            copied += STACK_CHUNK as u32;
            chunk += 1;
        }
        (*sample).stack_len = copied;
    }
    entry.submit(0);
}

/// `sched:sched_switch`: a target thread switching out is remembered with its
/// stacks; one switching back in is charged its off-CPU time (blocked time up
/// to its wake-up, or preempted time) and its run-queue delay.
#[tracepoint]
pub fn prf_switch(ctx: TracePointContext) -> u32 {
    let now = now_ns();
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if is_target(tgid) {
        note_thread(pid_tgid as u32);
        switch_out(&ctx, pid_tgid as u32, now);
    }
    // SAFETY: reading a field of the tracepoint record at its format offset.
    let next: i32 = match unsafe { ctx.read_at(global!(OFF_SWITCH_NEXT_PID) as usize) } {
        Ok(pid) => pid,
        Err(_) => return 0,
    };
    switch_in(next as u32, now);
    0
}

#[inline(always)]
fn switch_out(ctx: &TracePointContext, tid: u32, now: u64) {
    // SAFETY: as above.
    let prev_state: i64 =
        unsafe { ctx.read_at(global!(OFF_SWITCH_PREV_STATE) as usize) }.unwrap_or(0);
    // The tracepoint reports a preempted task as TASK_REPORT_MAX (0x100) and a
    // runnable one (a yield) as 0; any of the low state bits is a block.
    let state = if prev_state & 0xff != 0 {
        OFFCPU_BLOCKED
    } else {
        OFFCPU_PREEMPTED
    };
    let dwarf = copy_stack(global!(UNWIND_DWARF_OFFCPU));
    if dwarf {
        let event = StackEvent {
            kind: profiler_common::SAMPLE_SWITCH_OUT,
            op: state,
            uaddr: now,
            value_ns: 0,
            kernel: true,
        };
        copy_user_stack(ctx, bpf_get_current_pid_tgid(), &event);
    }
    let (user_stack_id, kernel_stack_id) = if dwarf {
        // The stacks went to userspace with the copy.
        (-stack_error::EFAULT, -stack_error::EFAULT)
    } else {
        (
            stack_id(ctx, &LONG_STACKS, true),
            stack_id(ctx, &LONG_STACKS, false),
        )
    };
    let out = SwitchedOut {
        switched_out_ns: now,
        woken_ns: 0,
        user_stack_id,
        kernel_stack_id,
        waker_tgid: 0,
        waker_tid: 0,
        waker_user_stack_id: -stack_error::EFAULT,
        waker_kernel_stack_id: -stack_error::EFAULT,
        state,
        copied: u32::from(dwarf),
    };
    bump(Counter::Switches);
    if SWITCHED_OUT.insert(tid, out, BPF_ANY as u64).is_err() {
        bump(Counter::InFlightMapFull);
    }
}

#[inline(always)]
fn switch_in(tid: u32, now: u64) {
    // SAFETY: a copy of the entry is taken before it is removed.
    let Some(out) = (unsafe { SWITCHED_OUT.get(tid) }).copied() else {
        return;
    };
    let _ = SWITCHED_OUT.remove(tid);
    let off_ns = now.saturating_sub(out.switched_out_ns);
    let (charged_ns, runq_ns) = if out.state == OFFCPU_BLOCKED {
        if out.woken_ns != 0 && out.woken_ns >= out.switched_out_ns {
            (
                out.woken_ns - out.switched_out_ns,
                now.saturating_sub(out.woken_ns),
            )
        } else {
            (off_ns, 0)
        }
    } else {
        (off_ns, off_ns)
    };
    if runq_ns > 0 {
        bump(Counter::RunqDelays);
        bump_by(Counter::RunqDelayNs, runq_ns);
        histogram(&RUNQ_HIST, runq_ns);
    }
    if out.state == OFFCPU_BLOCKED && charged_ns < global!(MIN_BLOCK_NS) {
        bump(Counter::ShortBlocksDropped);
        return;
    }
    if out.copied == 1 {
        let interval = profiler_common::OffCpuInterval {
            tid,
            state: out.state,
            switched_out_ns: out.switched_out_ns,
            charged_ns,
            waker_tgid: out.waker_tgid,
            waker_tid: out.waker_tid,
            waker_user_stack_id: out.waker_user_stack_id,
            waker_kernel_stack_id: out.waker_kernel_stack_id,
            woken: u32::from(out.woken_ns != 0),
            reserved: 0,
        };
        if OFFCPU_INTERVALS
            .output::<profiler_common::OffCpuInterval>(&interval, 0)
            .is_err()
        {
            bump(Counter::UserStackRingFull);
        }
        return;
    }
    let key = OffCpuKey {
        tgid: target_tgid(),
        tid,
        user_stack_id: out.user_stack_id,
        kernel_stack_id: out.kernel_stack_id,
        waker_tgid: out.waker_tgid,
        waker_tid: out.waker_tid,
        waker_user_stack_id: out.waker_user_stack_id,
        waker_kernel_stack_id: out.waker_kernel_stack_id,
        state: out.state,
        woken: u32::from(out.woken_ns != 0),
    };
    let map = if generation() == 0 {
        &OFFCPU_0
    } else {
        &OFFCPU_1
    };
    add_wait(map, &key, charged_ns, Counter::OffCpuMapFull);
}

/// `sched:sched_waking`, run by the waker: if the wakee is a blocked thread
/// of the target, remember when and by whom (with the waker's stacks).
#[tracepoint]
pub fn prf_waking(ctx: TracePointContext) -> u32 {
    // SAFETY: reading a field of the tracepoint record at its format offset.
    let wakee: i32 = match unsafe { ctx.read_at(global!(OFF_WAKING_PID) as usize) } {
        Ok(pid) => pid,
        Err(_) => return 0,
    };
    let wakee = wakee as u32;
    let pid_tgid = bpf_get_current_pid_tgid();
    // Only the target's own user stacks can be symbolized; another process's
    // (or an interrupt's) is not taken.
    let own = (pid_tgid >> 32) as u32 == target_tgid();
    // Each map is tested on its own: a combined null test of two map values
    // compiles to `a | b`, which the verifier refuses on pointers.
    let mut user = None;
    if let Some(out) = SWITCHED_OUT.get_ptr_mut(wakee) {
        // SAFETY: a live entry of an LRU map; only this wake-up writes it now.
        let out = unsafe { &mut *out };
        if out.state == OFFCPU_BLOCKED && out.woken_ns == 0 {
            let id = if own {
                waker_stack_id(&ctx, &LONG_STACKS, true)
            } else {
                -stack_error::EFAULT
            };
            user = Some(id);
            out.woken_ns = now_ns();
            out.waker_tgid = (pid_tgid >> 32) as u32;
            out.waker_tid = pid_tgid as u32;
            out.waker_user_stack_id = id;
            // A waker of the target's own says who released the thread with
            // its user stack; for an interrupt or another process the kernel
            // stack is all there is (one stack walk saved per wake-up).
            out.waker_kernel_stack_id = if own {
                -stack_error::EFAULT
            } else {
                waker_stack_id(&ctx, &LONG_STACKS, false)
            };
        }
    }
    if let Some(wait) = FUTEX_INFLIGHT.get_ptr_mut(wakee) {
        // SAFETY: as above.
        let wait = unsafe { &mut *wait };
        if wait.waker_tid == 0 {
            wait.waker_tid = pid_tgid as u32;
            wait.waker_tgid = (pid_tgid >> 32) as u32;
            wait.waker_user_stack_id = match user {
                Some(id) => id,
                None if own => waker_stack_id(&ctx, &LONG_STACKS, true),
                None => -stack_error::EFAULT,
            };
        }
    }
    0
}

/// `syscalls:sys_enter_futex`: waits are remembered until their exit; wakes
/// are counted by lock address and the waker's stack.
#[tracepoint]
pub fn prf_futex_in(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    // SAFETY: reading fields of the tracepoint record at their format offsets.
    let (uaddr, op) = unsafe {
        (
            ctx.read_at::<u64>(global!(OFF_FUTEX_UADDR) as usize),
            ctx.read_at::<u64>(global!(OFF_FUTEX_OP) as usize),
        )
    };
    let (Ok(uaddr), Ok(op)) = (uaddr, op) else {
        return 0;
    };
    let cmd = (op as u32) & futex_op::CMD_MASK;
    let tid = pid_tgid as u32;
    if futex_op::is_wait(cmd) {
        wait_begins(tid, uaddr);
    } else if futex_op::is_wake(cmd) {
        bump(Counter::FutexWakes);
        if copy_stack(global!(UNWIND_DWARF_FUTEX)) {
            let event = StackEvent {
                kind: profiler_common::SAMPLE_FUTEX_WAKE,
                op: cmd,
                uaddr,
                value_ns: 0,
                kernel: false,
            };
            copy_user_stack(&ctx, pid_tgid, &event);
            return 0;
        }
        let key = FutexWakeKey {
            uaddr,
            tgid,
            tid,
            user_stack_id: stack_id(&ctx, &LONG_STACKS, true),
            op: cmd,
        };
        let map = if generation() == 0 {
            &FUTEX_WAKES_0
        } else {
            &FUTEX_WAKES_1
        };
        add_count(map, &key, 1, Counter::FutexMapFull);
    }
    0
}

#[inline(always)]
fn wait_begins(tid: u32, uaddr: u64) {
    let wait = FutexInFlight {
        start_ns: now_ns(),
        uaddr,
        waker_user_stack_id: -stack_error::EFAULT,
        waker_tid: 0,
        waker_tgid: 0,
        reserved: 0,
    };
    if FUTEX_INFLIGHT.insert(tid, wait, BPF_ANY as u64).is_err() {
        bump(Counter::InFlightMapFull);
    }
}

/// `syscalls:sys_enter_futex_waitv`: a wait on several futexes, named by the
/// first one.
#[tracepoint]
pub fn prf_waitv_in(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    // SAFETY: reading a field of the tracepoint record at its format offset.
    let Ok(waiters) = (unsafe { ctx.read_at::<u64>(global!(OFF_WAITV_WAITERS) as usize) }) else {
        return 0;
    };
    // struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 reserved; }
    // SAFETY: a checked read of user memory.
    let uaddr = unsafe { bpf_probe_read_user((waiters + 8) as *const u64) }.unwrap_or(0);
    wait_begins(pid_tgid as u32, uaddr);
    0
}

/// `syscalls:sys_exit_futex` and `sys_exit_futex_waitv`: a wait ends; it is
/// counted by lock address, the waiter's stack and the waker's stack.
#[tracepoint]
pub fn prf_futex_out(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    let tid = pid_tgid as u32;
    // SAFETY: a copy of the entry is taken before it is removed.
    let Some(wait) = (unsafe { FUTEX_INFLIGHT.get(tid) }).copied() else {
        return 0;
    };
    let _ = FUTEX_INFLIGHT.remove(tid);
    let ns = now_ns().saturating_sub(wait.start_ns);
    bump(Counter::FutexWaits);
    bump_by(Counter::FutexWaitNs, ns);
    histogram(&FUTEX_HIST, ns);
    if copy_stack(global!(UNWIND_DWARF_FUTEX)) {
        let event = StackEvent {
            kind: profiler_common::SAMPLE_FUTEX_WAIT,
            op: 0,
            uaddr: wait.uaddr,
            value_ns: ns,
            kernel: false,
        };
        copy_user_stack(&ctx, pid_tgid, &event);
        return 0;
    }
    let key = FutexWaitKey {
        uaddr: wait.uaddr,
        tgid,
        tid,
        user_stack_id: stack_id(&ctx, &LONG_STACKS, true),
        waker_user_stack_id: wait.waker_user_stack_id,
        waker_tid: wait.waker_tid,
        waker_tgid: wait.waker_tgid,
    };
    let map = if generation() == 0 {
        &FUTEX_WAITS_0
    } else {
        &FUTEX_WAITS_1
    };
    add_wait(map, &key, ns, Counter::FutexMapFull);
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
