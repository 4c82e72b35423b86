//! Go waits from entry uprobes on the Go runtime (never return probes: a
//! uretprobe rewrites the return address on the goroutine stack and Go's
//! own unwinder then crashes the program). A goroutine's park
//! (`runtime.gopark`) is remembered by its `g` with its stack and wait
//! reason; its wake-up (`runtime.ready`, called by the code that makes it
//! runnable: a channel send, an unlock) counts the wait under the parked
//! stack, the reason and the waking stack. Goroutines made runnable
//! without `ready` (the network poller, GC workers) are counted when they
//! run again (`runtime.execute`), with no waker. When only lock
//! contention is asked for (`GO_SEMA_ONLY`), far fewer probes fire: a
//! semaphore wait runs from `runtime.semacquire1` to
//! `runtime.readyWithTime` (see [`prf_go_sema`]). The semaphore a
//! `sync.Mutex`, `RWMutex` or `WaitGroup` waits on comes from
//! `runtime.semacquire1`, which parks right after.
//!
//! Registers follow Go's internal ABI: arguments in RAX, RBX, RCX, RDI,
//! RSI...; R14 holds the current `g` in Go code.

use aya_ebpf::{
    bindings::BPF_ANY,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::uprobe,
    maps::PerCpuHashMap,
    programs::ProbeContext,
};
use profiler_common::{
    counters::Counter,
    event::{EventKey, Origin, Value, WakerKey},
    gowait::{GoParked, REASON_MASK, STATE_SEMA},
    stacks::stack_error,
};

use crate::{
    maps::{GO_EVENTS_0, GO_EVENTS_1, GO_PARKED, GO_SEMA, GO_SEMA_ONLY, LONG_STACKS, global},
    shared::{add_event, bump, bump_by, generation, now_ns, stack_id, waker_stack_id},
    target::is_target,
};

#[inline(always)]
fn go_events() -> &'static PerCpuHashMap<EventKey, Value> {
    if generation() == 0 {
        &GO_EVENTS_0
    } else {
        &GO_EVENTS_1
    }
}

/// The target's tgid, when the current thread is one of its threads and
/// recording has begun.
#[inline(always)]
fn target() -> Option<u32> {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    is_target(tgid).then_some(tgid)
}

/// `runtime.semacquire1(addr *uint32, ...)`: the semaphore a goroutine may
/// park on next.
///
/// When only lock contention is recorded (`GO_SEMA_ONLY`), this is where
/// the wait starts: the goroutine is remembered as parked on `addr` with
/// its stack (a slow-path acquire that gets the semaphore without parking
/// is overwritten by the goroutine's next one), and
/// `runtime.readyWithTime` ends it. Neither `gopark` nor `ready`, which
/// fire for every park of every kind, is probed then.
#[uprobe]
pub fn prf_go_sema(ctx: ProbeContext) -> u32 {
    if target().is_none() {
        return 0;
    }
    // SAFETY: the probe's own register frame.
    let (g, addr) = unsafe { ((*ctx.regs).r14, (*ctx.regs).rax) };
    if global(&GO_SEMA_ONLY) != 0 {
        let parked = GoParked {
            parked_ns: now_ns(),
            lock: addr,
            user_stack_id: stack_id(&ctx, &LONG_STACKS, true),
            // The reason is named in userspace from the stack.
            state: REASON_MASK | STATE_SEMA,
        };
        if GO_PARKED.insert(g, parked, BPF_ANY as u64).is_err() {
            bump(Counter::GoParkedMapFull);
        }
        return 0;
    }
    if GO_SEMA.insert(g, addr, BPF_ANY as u64).is_err() {
        bump(Counter::GoSemaMapFull);
    }
    0
}

/// `runtime.readyWithTime(s *sudog, ...)`: `runtime.semrelease1` makes the
/// semaphore's waiter `s.g` (the sudog's first field) runnable: its wait
/// ends, charged to this (the releasing) stack. Probed only with
/// `GO_SEMA_ONLY`.
#[uprobe]
pub fn prf_go_sema_ready(ctx: ProbeContext) -> u32 {
    let Some(tgid) = target() else {
        return 0;
    };
    // SAFETY: the probe's own register frame; the sudog is read as user
    // memory (a failed read is no goroutine).
    let sudog = unsafe { (*ctx.regs).rax };
    let gp = unsafe { bpf_probe_read_user(sudog as *const u64) }.unwrap_or(0);
    let Some(parked) = take_parked(gp) else {
        bump(Counter::GoWakeParkUnseen);
        return 0;
    };
    bump(Counter::GoParks);
    wait_ends(tgid, parked, goroutine_waker(&ctx, tgid));
    0
}

/// `runtime.gopark(unlockf, lock, reason waitReason, ...)`: the current
/// goroutine parks; its stack, reason and semaphore are remembered.
#[uprobe]
pub fn prf_go_park(ctx: ProbeContext) -> u32 {
    if target().is_none() {
        return 0;
    }
    let now = now_ns();
    // SAFETY: the probe's own register frame.
    let (g, reason) = unsafe { ((*ctx.regs).r14, (*ctx.regs).rcx as u32 & REASON_MASK) };
    // A semaphore noted by this goroutine is the one it parks on now when
    // the park is a semaphore's (userspace keeps it only for those
    // reasons); taken either way, so it is never used twice.
    // SAFETY: a copy of the entry is taken before it is removed.
    let (lock, state) = match unsafe { GO_SEMA.get(g) }.copied() {
        Some(addr) => {
            let _ = GO_SEMA.remove(g);
            (addr, reason | STATE_SEMA)
        }
        None => (0, reason),
    };
    bump(Counter::GoParks);
    let parked = GoParked {
        parked_ns: now,
        lock,
        user_stack_id: stack_id(&ctx, &LONG_STACKS, true),
        state,
    };
    if GO_PARKED.insert(g, parked, BPF_ANY as u64).is_err() {
        bump(Counter::GoParkedMapFull);
    }
    0
}

/// `runtime.ready(gp *g, ...)`: the current code makes a parked goroutine
/// runnable; its wait ends, woken by this stack.
#[uprobe]
pub fn prf_go_ready(ctx: ProbeContext) -> u32 {
    let Some(tgid) = target() else {
        return 0;
    };
    // SAFETY: the probe's own register frame.
    let gp = unsafe { (*ctx.regs).rax };
    // The waking stack is walked only for a park that was seen (walks are
    // the costly part of this probe).
    let Some(parked) = take_parked(gp) else {
        bump(Counter::GoWakeParkUnseen);
        return 0;
    };
    wait_ends(tgid, parked, goroutine_waker(&ctx, tgid));
    0
}

/// `runtime.execute(gp *g, ...)`: a goroutine runs again. One still
/// remembered as parked was made runnable without `ready`.
#[uprobe]
pub fn prf_go_execute(ctx: ProbeContext) -> u32 {
    let Some(tgid) = target() else {
        return 0;
    };
    // SAFETY: the probe's own register frame.
    let gp = unsafe { (*ctx.regs).rax };
    // Most goroutines run again after `ready`, which took their park.
    if let Some(parked) = take_parked(gp) {
        wait_ends(tgid, parked, WakerKey::NOT_WOKEN);
    }
    0
}

/// The code running now as the waker of a goroutine: its user stack
/// (goroutines have no kernel side).
#[inline(always)]
fn goroutine_waker(ctx: &ProbeContext, tgid: u32) -> WakerKey {
    WakerKey {
        tgid,
        tid: 0,
        user_stack_id: waker_stack_id(ctx, &LONG_STACKS, true),
        kernel_stack_id: -stack_error::EFAULT,
        user_copy_ns: 0,
        woken: 1,
        reserved: 0,
    }
}

/// The park remembered for goroutine `gp`, taken out of the map (one
/// lookup: the probes that end waits are on the runtime's hot paths).
#[inline(always)]
fn take_parked(gp: u64) -> Option<GoParked> {
    if gp == 0 {
        return None;
    }
    // SAFETY: a copy of the entry is taken before it is removed.
    let parked = unsafe { GO_PARKED.get(gp) }.copied()?;
    let _ = GO_PARKED.remove(gp);
    Some(parked)
}

/// A goroutine's wait ends now: counted under its parked stack, reason and
/// lock, and the waker.
#[inline(always)]
fn wait_ends(tgid: u32, parked: GoParked, waker: WakerKey) {
    let ns = now_ns().saturating_sub(parked.parked_ns);
    bump(Counter::GoWaits);
    bump_by(Counter::GoWaitNs, ns);
    let key = EventKey {
        state: parked.state,
        user_stack_id: parked.user_stack_id,
        lock: parked.lock,
        waker,
        ..EventKey::new(Origin::GoWait, tgid, 0)
    };
    add_event(go_events(), &key, ns, Counter::GoMapFull);
}
