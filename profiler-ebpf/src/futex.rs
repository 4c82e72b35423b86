//! Futex waits and wakes from the futex syscall tracepoints: a wait is
//! timed from entry to exit and counted by lock address, the waiter's stack
//! and its waker's; a wake call is counted by lock address and the waking
//! stack (the code that released the lock).

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    maps::PerCpuHashMap,
    programs::TracePointContext,
};
use profiler_common::{
    counters::Counter,
    event::{EventKey, Origin, Value, WakerKey},
    futex::{FutexInFlight, futex_op},
    unwind::StackKind,
};

use crate::{
    maps::{
        FUTEX_EVENTS_0, FUTEX_EVENTS_1, FUTEX_HIST, FUTEX_INFLIGHT, LONG_STACKS, OFF_FUTEX_OP,
        OFF_FUTEX_UADDR, OFF_WAITV_WAITERS, WAKE_COPIES, global,
    },
    shared::{add_event, bump, bump_by, copies, generation, histogram, now_ns, send_copy},
    target::is_target,
    unwind::user_stack_id,
};

#[inline(always)]
fn futex_events() -> &'static PerCpuHashMap<EventKey, Value> {
    if generation() == 0 {
        &FUTEX_EVENTS_0
    } else {
        &FUTEX_EVENTS_1
    }
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
            ctx.read_at::<u64>(global(&OFF_FUTEX_UADDR) as usize),
            ctx.read_at::<u64>(global(&OFF_FUTEX_OP) as usize),
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
        let mut key = EventKey {
            lock: uaddr,
            ..EventKey::new(Origin::FutexWake, tgid, tid)
        };
        if copies() {
            // The copy is this wake call's event, and the stack the waiters
            // it wakes name as their waker's (see prf_waking).
            let now = now_ns();
            key.user_copy_ns = now;
            if send_copy(&ctx, &key, 1, false) {
                let _ = WAKE_COPIES.insert(tid, now, BPF_ANY as u64);
            }
            return 0;
        }
        key.user_stack_id = user_stack_id(&ctx, &LONG_STACKS, StackKind::FutexWake);
        add_event(futex_events(), &key, 1, Counter::FutexMapFull);
    }
    0
}

#[inline(always)]
fn wait_begins(tid: u32, lock: u64) {
    let wait = FutexInFlight {
        start_ns: now_ns(),
        lock,
        waker: WakerKey::NOT_WOKEN,
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
    let Ok(waiters) = (unsafe { ctx.read_at::<u64>(global(&OFF_WAITV_WAITERS) as usize) }) else {
        return 0;
    };
    // struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 reserved; }
    // SAFETY: a checked read of user memory.
    let uaddr = unsafe { bpf_probe_read_user((waiters + 8) as *const u64) }.unwrap_or(0);
    wait_begins(pid_tgid as u32, uaddr);
    0
}

/// `syscalls:sys_exit_futex` and `sys_exit_futex_waitv`: a wake call is
/// over (its copy may no longer name a waker); a wait ends and is counted by
/// lock address, the waiter's stack and the waker's stack.
#[tracepoint]
pub fn prf_futex_out(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    let tid = pid_tgid as u32;
    if copies() {
        let _ = WAKE_COPIES.remove(tid);
    }
    // SAFETY: a copy of the entry is taken before it is removed.
    let Some(wait) = (unsafe { FUTEX_INFLIGHT.get(tid) }).copied() else {
        return 0;
    };
    let _ = FUTEX_INFLIGHT.remove(tid);
    let ns = now_ns().saturating_sub(wait.start_ns);
    bump(Counter::FutexWaits);
    bump_by(Counter::FutexWaitNs, ns);
    histogram(&FUTEX_HIST, ns);
    let mut key = EventKey {
        lock: wait.lock,
        waker: wait.waker,
        ..EventKey::new(Origin::FutexWait, tgid, tid)
    };
    if copies() {
        send_copy(&ctx, &key, ns, false);
        return 0;
    }
    // Map keys hold stack ids only (a copy time would make every key unique).
    key.waker.user_copy_ns = 0;
    key.user_stack_id = user_stack_id(&ctx, &LONG_STACKS, StackKind::FutexWait);
    add_event(futex_events(), &key, ns, Counter::FutexMapFull);
    0
}
