//! Which process is recorded, and since when: the tgid filter every
//! program applies first, the arming of a started command at its exec, and
//! the names of the target's threads.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use profiler_common::control::Control;

use crate::maps::{CONTROL, TARGET_TGID, THREAD_NAMES, global};

#[inline(always)]
pub fn target_tgid() -> u32 {
    global(&TARGET_TGID)
}

/// Whether `tgid` is the target and recording has begun (see
/// `profiler_common::control::Control::Armed`).
#[inline(always)]
pub fn is_target(tgid: u32) -> bool {
    tgid == target_tgid() && tgid != 0 && matches!(CONTROL.get(Control::Armed as u32), Some(1))
}

/// `sched_process_exec` (raw tracepoint, no tracefs needed): the target's
/// new image is in place, so recording begins.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn prf_exec(_ctx: RawTracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == target_tgid()
        && tgid != 0
        && let Some(armed) = CONTROL.get_ptr_mut(Control::Armed as u32)
    {
        // SAFETY: a live array slot; a plain word store.
        unsafe { *armed = 1 };
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
