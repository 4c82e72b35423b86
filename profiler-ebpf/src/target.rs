//! Which processes are recorded, and since when: the filter every program
//! applies first (a set of tgids, a cgroup, or the whole machine), the
//! processes forked by recorded ones followed, the arming of a started
//! command at its exec, and the names of the recorded threads.

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_get_current_ancestor_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use profiler_common::{control::Control, counters::Counter, maps::TargetMode, stacks::UnwindMode};

use crate::{
    maps::{
        CGROUP_ID, CGROUP_LEVEL, CONTROL, FOLLOW_FORKS, FORK_PARENT, NEEDS_TABLES,
        OFF_FORK_CHILD_PID, OWN_TGID, PROC_TABLES, TARGET_MODE, TARGETS, THREAD_NAMES, UNWIND_MODE,
        global,
    },
    shared::bump,
};

const SET: u32 = TargetMode::Set as u32;
const CGROUP: u32 = TargetMode::Cgroup as u32;
const ALL: u32 = TargetMode::All as u32;

/// Whether the current task, of process `tgid`, is recorded and recording
/// has begun (see `profiler_common::control::Control::Armed`). Every
/// caller asks about the task running now (the cgroup test reads it).
#[inline(always)]
pub fn is_target(tgid: u32) -> bool {
    if tgid == 0 || !matches!(CONTROL.get(Control::Armed as u32), Some(1)) {
        return false;
    }
    match global(&TARGET_MODE) {
        ALL => tgid != global(&OWN_TGID),
        CGROUP => {
            // SAFETY: the helper reads the current task's cgroup.
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(global(&CGROUP_LEVEL) as i32) };
            id == global(&CGROUP_ID) && tgid != global(&OWN_TGID)
        }
        _ => listed(tgid),
    }
}

/// Whether `tgid` is in the set of recorded processes.
#[inline(always)]
fn listed(tgid: u32) -> bool {
    // SAFETY: a lookup; nothing is kept.
    unsafe { TARGETS.get(&tgid) }.is_some()
}

/// `sched_process_exec` (raw tracepoint, no tracefs needed): a recorded
/// process has a new image. For a started command this is when recording
/// begins; the walker's tables of the old image are dropped, and userspace
/// told to write the new ones.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn prf_exec(_ctx: RawTracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if global(&TARGET_MODE) == SET
        && listed(tgid)
        && let Some(armed) = CONTROL.get_ptr_mut(Control::Armed as u32)
    {
        // SAFETY: a live array slot; a plain word store.
        unsafe { *armed = 1 };
    }
    if global(&UNWIND_MODE) == UnwindMode::Dwarf as u32 && is_target(tgid) {
        let _ = PROC_TABLES.remove(&tgid);
        let _ = FORK_PARENT.remove(&tgid);
        let _ = NEEDS_TABLES.insert(&tgid, &1, BPF_ANY as u64);
    }
    0
}

/// `sched:sched_process_fork`, run by the parent: a process (or thread)
/// started by a recorded process is recorded too when forks are followed,
/// and walks with its parent's tables until it has its own (its address
/// space is a copy). A new thread's id is added as well (the tracepoint
/// does not tell the two apart); it is removed when the thread exits.
#[tracepoint]
pub fn prf_fork(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if !is_target(tgid) {
        return 0;
    }
    // SAFETY: reading a field of the tracepoint record at its format offset.
    let child: i32 = match unsafe { ctx.read_at(global(&OFF_FORK_CHILD_PID) as usize) } {
        Ok(pid) => pid,
        Err(_) => return 0,
    };
    let child = child as u32;
    if child == tgid {
        return 0;
    }
    if global(&TARGET_MODE) == SET
        && global(&FOLLOW_FORKS) == 1
        && TARGETS.insert(&child, &1, BPF_ANY as u64).is_err()
    {
        bump(Counter::TargetsFull);
    }
    if global(&UNWIND_MODE) == UnwindMode::Dwarf as u32 {
        // SAFETY: lookups; values are copied out.
        let from = if unsafe { PROC_TABLES.get(&tgid) }.is_some() {
            Some(tgid)
        } else {
            unsafe { FORK_PARENT.get(&tgid) }.copied()
        };
        if let Some(from) = from {
            let _ = FORK_PARENT.insert(&child, &from, BPF_ANY as u64);
        }
    }
    0
}

/// `sched_process_exit` (raw tracepoint), run by each exiting thread: a
/// thread's id that fork following added is removed (a process's own
/// entry stays until userspace sees it gone).
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn prf_exit(_ctx: RawTracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (tgid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if tid != tgid {
        let _ = TARGETS.remove(&tid);
        let _ = FORK_PARENT.remove(&tid);
    }
    0
}

/// Notes the current thread's name, and notes it again when it changed (a
/// thread that names itself after it started, then exits before userspace
/// reads /proc, keeps the name it gave itself).
#[inline(always)]
pub fn note_thread(tid: u32) {
    let Ok(comm) = bpf_get_current_comm() else {
        return;
    };
    match THREAD_NAMES.get_ptr_mut(tid) {
        Some(noted) => {
            // SAFETY: a live entry of an LRU map; 16 bytes read as two
            // words (a byte-wise compare would need memcmp).
            unsafe {
                let old = noted as *const u64;
                let new = comm.as_ptr() as *const u64;
                if core::ptr::read_unaligned(old) != core::ptr::read_unaligned(new)
                    || core::ptr::read_unaligned(old.add(1))
                        != core::ptr::read_unaligned(new.add(1))
                {
                    *noted = comm;
                }
            }
        }
        None => {
            let _ = THREAD_NAMES.insert(tid, comm, BPF_NOEXIST as u64);
        }
    }
}
