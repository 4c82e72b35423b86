//! Off-CPU time from the scheduler's tracepoints: a target thread switching
//! out is remembered with its stacks; switching back in, it is charged its
//! off-CPU time (blocked time up to its wake-up, or preempted time) and its
//! run-queue delay. Wake-ups note who woke a blocked thread or a futex
//! waiter of the target.

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use profiler_common::{
    counters::Counter,
    event::{EventKey, EventRecord, Origin, WakerKey},
    offcpu::{OffCpuState, SwitchedOut},
    stacks::stack_error,
    unwind::StackKind,
};

use crate::{
    maps::{
        FUTEX_INFLIGHT, INTERVALS, LONG_STACKS, MIN_BLOCK_NS, OFF_SWITCH_NEXT_PID,
        OFF_SWITCH_PREV_STATE, OFF_TASK_PID, OFFCPU_EVENTS_0, OFFCPU_EVENTS_1, RUNQ_HIST,
        SWITCHED_OUT, WAKE_COPIES, global,
    },
    shared::{
        add_event, bump, bump_by, copies, generation, histogram, now_ns, send_copy, stack_id,
        waker_stack_id,
    },
    target::{is_target, note_thread},
    unwind::{user_stack_id, waker_user_stack_id},
};

const BLOCKED: u32 = OffCpuState::Blocked as u32;

/// `sched:sched_switch`.
#[tracepoint]
pub fn prf_switch(ctx: TracePointContext) -> u32 {
    let now = now_ns();
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if is_target(tgid) {
        note_thread(pid_tgid as u32);
        switch_out(&ctx, tgid, pid_tgid as u32, now);
    }
    // SAFETY: reading a field of the tracepoint record at its format offset.
    let next: i32 = match unsafe { ctx.read_at(global(&OFF_SWITCH_NEXT_PID) as usize) } {
        Ok(pid) => pid,
        Err(_) => return 0,
    };
    switch_in(next as u32, now);
    0
}

#[inline(always)]
fn switch_out(ctx: &TracePointContext, tgid: u32, tid: u32, now: u64) {
    // SAFETY: as above.
    let prev_state: i64 =
        unsafe { ctx.read_at(global(&OFF_SWITCH_PREV_STATE) as usize) }.unwrap_or(0);
    // The tracepoint reports a preempted task as TASK_REPORT_MAX (0x100) and a
    // runnable one (a yield) as 0; any of the low state bits is a block.
    let state = if prev_state & 0xff != 0 {
        OffCpuState::Blocked
    } else {
        OffCpuState::Preempted
    } as u32;
    let copied = copies();
    if copied {
        // The user stack goes to userspace now; the interval that ends this
        // switch-out names it by this thread and time.
        let key = EventKey {
            state,
            user_copy_ns: now,
            ..EventKey::new(Origin::SwitchOut, tgid, tid)
        };
        send_copy(ctx, &key, 0, false);
    }
    let out = SwitchedOut {
        switched_out_ns: now,
        woken_ns: 0,
        user_stack_id: if copied {
            -stack_error::EFAULT
        } else {
            user_stack_id(ctx, &LONG_STACKS, StackKind::OffCpu)
        },
        kernel_stack_id: stack_id(ctx, &LONG_STACKS, false),
        state,
        copied: u32::from(copied),
        waker: WakerKey::NOT_WOKEN,
        tgid,
        reserved: 0,
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
    let (charged_ns, runq_ns) = if out.state == BLOCKED {
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
    if out.state == BLOCKED && charged_ns < global(&MIN_BLOCK_NS) {
        bump(Counter::ShortBlocksDropped);
        return;
    }
    let mut key = EventKey {
        state: out.state,
        user_stack_id: out.user_stack_id,
        kernel_stack_id: out.kernel_stack_id,
        waker: out.waker,
        ..EventKey::new(Origin::OffCpu, out.tgid, tid)
    };
    if out.copied == 1 {
        key.user_copy_ns = out.switched_out_ns;
        let record = EventRecord {
            key,
            value: charged_ns,
        };
        if INTERVALS.output::<EventRecord>(&record, 0).is_err() {
            bump(Counter::UserStackRingFull);
        }
        return;
    }
    // Map keys hold stack ids only (a copy time would make every key unique).
    key.waker.user_copy_ns = 0;
    let events = if generation() == 0 {
        &OFFCPU_EVENTS_0
    } else {
        &OFFCPU_EVENTS_1
    };
    add_event(events, &key, charged_ns, Counter::OffCpuMapFull);
}

/// How recent a waker's stack copy must be to belong to the wake-up being
/// seen: a futex wake call wakes its waiters within microseconds, so an
/// older copy is stale (its syscall's exit was never seen).
const WAKE_COPY_FRESH_NS: u64 = 10_000_000;

/// The time of the stack copy the current thread's futex wake call under
/// way sent, if any (see `MAP_WAKE_COPIES`).
#[inline(always)]
fn wake_copy(tid: u32, now: u64) -> u64 {
    // SAFETY: a lookup; the value is copied out.
    match unsafe { WAKE_COPIES.get(tid) } {
        Some(&at) if now.saturating_sub(at) < WAKE_COPY_FRESH_NS => at,
        _ => 0,
    }
}

/// `sched_waking` (a raw tracepoint), run by the waker: if the wakee is a
/// blocked thread of the target, or one waiting on a futex, remember when
/// and by whom (with the waker's stacks). A raw tracepoint, not a classic
/// one: the kernel then skips it only if it is already running on that CPU,
/// not whenever any tracing program is (a wake-up from an interrupt that
/// lands in a futex program was lost so, about 2% of them under a lock- and
/// sleep-heavy load).
#[raw_tracepoint(tracepoint = "sched_waking")]
pub fn prf_waking(ctx: RawTracePointContext) -> u32 {
    // The first argument is the woken task; its thread id sits at the
    // offset the kernel's BTF gives.
    let task: u64 = ctx.arg(0);
    // SAFETY: a kernel read through the helper, which fails safely.
    let wakee: i32 = match unsafe {
        bpf_probe_read_kernel((task + u64::from(global(&OFF_TASK_PID))) as *const i32)
    } {
        Ok(pid) => pid,
        Err(_) => return 0,
    };
    let wakee = wakee as u32;
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    // Only a recorded process's user stacks can be symbolized; another
    // process's (or an interrupt's) is not taken. Asked only for a wake-up
    // of a waiter (most wake-ups on the machine are not).
    let own = || is_target(tgid);
    // Each map is tested on its own: a combined null test of two map values
    // compiles to `a | b`, which the verifier refuses on pointers.
    let mut user = None;
    if let Some(out) = SWITCHED_OUT.get_ptr_mut(wakee) {
        // SAFETY: a live entry of an LRU map; only this wake-up writes it now.
        let out = unsafe { &mut *out };
        if out.state == BLOCKED && out.woken_ns == 0 {
            let now = now_ns();
            let own = own();
            let id = if own {
                waker_user_stack_id(&ctx, &LONG_STACKS)
            } else {
                -stack_error::EFAULT
            };
            user = Some(id);
            out.woken_ns = now;
            out.waker = WakerKey {
                tgid,
                tid,
                user_stack_id: id,
                // A waker of the target's own says who released the thread
                // with its user stack; for an interrupt or another process the
                // kernel stack is all there is (one stack walk saved per
                // wake-up).
                kernel_stack_id: if own {
                    -stack_error::EFAULT
                } else {
                    waker_stack_id(&ctx, &LONG_STACKS, false)
                },
                user_copy_ns: if own { wake_copy(tid, now) } else { 0 },
                woken: 1,
                reserved: 0,
            };
        }
    }
    if let Some(wait) = FUTEX_INFLIGHT.get_ptr_mut(wakee) {
        // SAFETY: as above.
        let wait = unsafe { &mut *wait };
        if wait.waker.woken == 0 {
            let own = own();
            wait.waker = WakerKey {
                tgid,
                tid,
                user_stack_id: match user {
                    Some(id) => id,
                    None if own => waker_user_stack_id(&ctx, &LONG_STACKS),
                    None => -stack_error::EFAULT,
                },
                kernel_stack_id: -stack_error::EFAULT,
                user_copy_ns: if own { wake_copy(tid, now_ns()) } else { 0 },
                woken: 1,
                reserved: 0,
            };
        }
    }
    0
}
