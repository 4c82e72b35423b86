//! The in-kernel DWARF walker (`--unwind dwarf`): a user stack walked from
//! the thread's saved user registers with the tables userspace derived from
//! each binary's `.eh_frame` (`UNWIND_MAPPINGS`, `UNWIND_ROWS`), frame by
//! frame in a `bpf_loop` (verified once, not per frame), stored by hash in
//! `DWARF_STACKS` and named by a stack id like a kernel stack map's. How
//! every walk ended is counted per kind of event.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_get_current_pid_tgid, bpf_loop, bpf_probe_read_user},
    maps::StackTrace,
    programs::tracing::StackIdContext,
};
use profiler_common::{
    counters::Counter,
    stacks::stack_error,
    unwind::{
        CfaRule, HASH_SEED, MappingKind, QUALITY_FP_FRAMES, QUALITY_SLOTS_PER_KIND, RbpRule,
        StackKind, UNWIND_MAX_DEPTH, UnwindMapping, UnwindRow, WalkEnd, WalkState, dwarf_stack_id,
        hash_finish, hash_step,
    },
};

use crate::{
    maps::{
        DWARF_STACKS, FORK_PARENT, NEEDS_TABLES, PROC_TABLES, STACK_QUALITY, UNWIND_MAPPINGS,
        UNWIND_MAX_FRAMES, UNWIND_MODE, UNWIND_ROWS, UNWIND_WALK, global,
    },
    shared::{bump, stack_id, user_registers, waker_stack_id},
};

const DWARF: u32 = profiler_common::stacks::UnwindMode::Dwarf as u32;

/// The current thread's user stack id for an event of `kind`: walked here
/// (`--unwind dwarf`) or by frame pointers into `stacks`.
#[inline(always)]
pub fn user_stack_id<C: StackIdContext>(ctx: &C, stacks: &StackTrace, kind: StackKind) -> i32 {
    if global(&UNWIND_MODE) == DWARF {
        return dwarf_stack(kind);
    }
    stack_id(ctx, stacks, true)
}

/// A waker's user stack id (see `shared::waker_stack_id`).
#[inline(always)]
pub fn waker_user_stack_id<C: StackIdContext>(ctx: &C, stacks: &StackTrace) -> i32 {
    if global(&UNWIND_MODE) == DWARF {
        return dwarf_stack(StackKind::Waker);
    }
    waker_stack_id(ctx, stacks, true)
}

/// Where the interrupted registers are, from `rsp` in a signal trampoline:
/// `struct ucontext` starts there (the handler's return popped the
/// trampoline's address), its `uc_mcontext` 40 bytes in, holding `rbp`,
/// `rsp` and `rip` at 80, 120 and 128.
const SIGCONTEXT: u64 = 40;
const SIG_BP: u64 = SIGCONTEXT + 80;
const SIG_SP: u64 = SIGCONTEXT + 120;
const SIG_IP: u64 = SIGCONTEXT + 128;

/// Bounds of the binary searches (2^11 mappings, 2^22 rows are more than
/// the maps hold).
const MAPPING_SEARCH_STEPS: u32 = 11;
const ROW_SEARCH_STEPS: u32 = 22;

/// Walks the current thread's user stack; returns its stack id, or
/// `-errno` when it has none (counted under `kind`).
#[inline(always)]
pub fn dwarf_stack(kind: StackKind) -> i32 {
    let Some((ip, sp, bp)) = user_registers() else {
        quality(kind, WalkEnd::NoRegisters as u32);
        return -stack_error::EFAULT;
    };
    let Some(walk) = UNWIND_WALK.get_ptr_mut(0) else {
        return -stack_error::EFAULT;
    };
    // SAFETY: this CPU's scratch slot; nothing else uses it until we return.
    let walk = unsafe { &mut *walk };
    walk.ip = ip;
    walk.sp = sp;
    walk.bp = bp;
    walk.hash = HASH_SEED;
    walk.done = 0;
    walk.bp_known = 1;
    walk.exact = 1;
    walk.fp_frames = 0;
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // The process's own tables, else (a child forked since) its parent's,
    // else none yet: userspace is asked for them either way, and a stack
    // with no tables is walked by frame pointers.
    // SAFETY: lookups; values are copied out.
    let tables = match unsafe { PROC_TABLES.get(&tgid) } {
        Some(own) => Some(*own),
        None => {
            needs_tables(tgid);
            match unsafe { FORK_PARENT.get(&tgid) } {
                Some(parent) => unsafe { PROC_TABLES.get(parent) }.copied(),
                None => None,
            }
        }
    };
    (walk.mappings_first, walk.mappings) = match tables {
        Some(t) => (t.first, t.count),
        None => (0, 0),
    };
    walk.stack.len = 0;
    // SAFETY: the callback is a BPF function taking (index, ctx); no context.
    unsafe {
        bpf_loop(
            global(&UNWIND_MAX_FRAMES).min(UNWIND_MAX_DEPTH as u32),
            step as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
    }
    let end = if walk.done == 0 {
        WalkEnd::DepthLimit as u32
    } else {
        walk.done - 1
    };
    if walk.fp_frames > 0 {
        quality_add(kind, QUALITY_FP_FRAMES, u64::from(walk.fp_frames));
    }
    walk.stack.end = end;
    let hash = hash_finish(walk.hash, walk.stack.len | (end << 16));
    walk.stack.hash = hash;
    let id = dwarf_stack_id(hash);
    match DWARF_STACKS.insert(id, &walk.stack, BPF_NOEXIST as u64) {
        Ok(()) => {}
        Err(err) if -err == stack_error::EEXIST => {
            // SAFETY: a lookup; the hash is copied out.
            let known = unsafe { DWARF_STACKS.get(id) }.map(|s| s.hash);
            if known != Some(hash) {
                bump(Counter::UserStackCollision);
                quality(kind, end);
                return -stack_error::EEXIST;
            }
        }
        Err(_) => {
            bump(Counter::UserStackMapFull);
            quality(kind, WalkEnd::MapFull as u32);
            return -stack_error::ENOMEM;
        }
    }
    quality(kind, end);
    id
}

#[inline(always)]
fn quality(kind: StackKind, end: u32) {
    quality_add(kind, end, 1);
}

#[inline(always)]
fn quality_add(kind: StackKind, slot: u32, value: u64) {
    if let Some(counter) = STACK_QUALITY.get_ptr_mut(kind as u32 * QUALITY_SLOTS_PER_KIND + slot) {
        // SAFETY: per-CPU slot.
        unsafe { *counter += value };
    }
}

/// Ends the walk with `end`; returns 1 (stop the loop).
#[inline(always)]
fn finish(walk: &mut WalkState, end: WalkEnd) -> i64 {
    walk.done = end as u32 + 1;
    1
}

/// One frame: records `ip`, then finds the caller's registers. Returns 0
/// to go on, 1 to stop.
#[inline(never)]
extern "C" fn step(_index: u32, _ctx: *mut c_void) -> i64 {
    let Some(walk) = UNWIND_WALK.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch slot (see dwarf_stack).
    let walk = unsafe { &mut *walk };
    if walk.done != 0 {
        return 1;
    }
    let len = walk.stack.len as usize;
    let Some(slot) = walk.stack.ips.get_mut(len) else {
        return finish(walk, WalkEnd::DepthLimit);
    };
    *slot = walk.ip;
    walk.stack.len = len as u32 + 1;
    walk.hash = hash_step(walk.hash, walk.ip);
    // A return address may be one past its call's function: look up the
    // call instruction instead.
    let at = if walk.exact == 1 {
        walk.ip
    } else {
        walk.ip.wrapping_sub(1)
    };
    walk.exact = 0;
    if walk.mappings == 0 {
        walk.fp_frames += 1;
        return frame_pointer_step(walk);
    }
    let Some(mapping) = find_mapping(at, walk.mappings_first, walk.mappings) else {
        needs_tables((bpf_get_current_pid_tgid() >> 32) as u32);
        return finish(walk, WalkEnd::NoMapping);
    };
    if mapping.kind == MappingKind::Jit as u32 {
        return finish(walk, WalkEnd::Jit);
    }
    if mapping.kind == MappingKind::FramePointers as u32 {
        return frame_pointer_step(walk);
    }
    let pc = at.wrapping_sub(mapping.pc_adjust) as u32;
    let Some(row) = find_row(mapping, pc) else {
        walk.fp_frames += 1;
        return frame_pointer_step(walk);
    };
    let cfa = match CfaRule::from_u8(row.cfa_rule) {
        CfaRule::Rsp => walk.sp.wrapping_add(row.cfa_offset as i64 as u64),
        CfaRule::Rbp => {
            if walk.bp_known == 0 {
                return finish(walk, WalkEnd::RbpUnknown);
            }
            walk.bp.wrapping_add(row.cfa_offset as i64 as u64)
        }
        CfaRule::Plt => {
            let extra = if (walk.ip & 15) as i16 >= row.rbp_offset {
                8
            } else {
                0
            };
            walk.sp
                .wrapping_add(row.cfa_offset as i64 as u64)
                .wrapping_add(extra)
        }
        CfaRule::RbpDeref => {
            if walk.bp_known == 0 {
                return finish(walk, WalkEnd::RbpUnknown);
            }
            let at = walk.bp.wrapping_add(row.cfa_offset as i64 as u64);
            // SAFETY: a checked read of the target's user memory.
            match unsafe { bpf_probe_read_user(at as *const u64) } {
                Ok(cfa) => cfa,
                Err(_) => return finish(walk, WalkEnd::ReadFailed),
            }
        }
        CfaRule::End => return finish(walk, WalkEnd::Whole),
        CfaRule::Signal => return signal_step(walk),
        CfaRule::Unsupported => return finish(walk, WalkEnd::Unsupported),
        CfaRule::None => {
            walk.fp_frames += 1;
            return frame_pointer_step(walk);
        }
    };
    // SAFETY: checked reads of the target's user memory.
    let Ok(ra) = (unsafe { bpf_probe_read_user((cfa.wrapping_sub(8)) as *const u64) }) else {
        return finish(walk, WalkEnd::ReadFailed);
    };
    if row.rbp_rule == RbpRule::AtCfa as u8 || row.rbp_rule == RbpRule::AtRbp as u8 {
        let base = if row.rbp_rule == RbpRule::AtCfa as u8 {
            cfa
        } else if walk.bp_known == 1 {
            walk.bp
        } else {
            return finish(walk, WalkEnd::RbpUnknown);
        };
        let at = base.wrapping_add(row.rbp_offset as i64 as u64);
        // SAFETY: as above.
        match unsafe { bpf_probe_read_user(at as *const u64) } {
            Ok(bp) => {
                walk.bp = bp;
                walk.bp_known = 1;
            }
            Err(_) => return finish(walk, WalkEnd::ReadFailed),
        }
    } else if row.rbp_rule == RbpRule::Unknown as u8 {
        walk.bp_known = 0;
    }
    walk.sp = cfa;
    walk.ip = ra;
    if ra == 0 {
        return finish(walk, WalkEnd::Whole);
    }
    0
}

/// A frame walked by its frame pointer: the caller's `rbp` is saved at
/// `rbp`, the return address above it. A zero frame pointer is the
/// outermost frame.
#[inline(always)]
fn frame_pointer_step(walk: &mut WalkState) -> i64 {
    if walk.bp_known == 0 {
        return finish(walk, WalkEnd::RbpUnknown);
    }
    let bp = walk.bp;
    if bp == 0 {
        return finish(walk, WalkEnd::Whole);
    }
    if bp < walk.sp {
        // A frame pointer below the stack pointer is no frame pointer.
        return finish(walk, WalkEnd::ReadFailed);
    }
    // SAFETY: checked reads of the target's user memory.
    let (Ok(next_bp), Ok(ra)) = (unsafe {
        (
            bpf_probe_read_user(bp as *const u64),
            bpf_probe_read_user((bp + 8) as *const u64),
        )
    }) else {
        return finish(walk, WalkEnd::ReadFailed);
    };
    walk.bp = next_bp;
    walk.sp = bp + 16;
    walk.ip = ra;
    if ra == 0 {
        return finish(walk, WalkEnd::Whole);
    }
    0
}

/// A signal trampoline: the interrupted registers are in its `ucontext`.
#[inline(always)]
fn signal_step(walk: &mut WalkState) -> i64 {
    let sp = walk.sp;
    // SAFETY: checked reads of the target's user memory.
    let (Ok(bp), Ok(next_sp), Ok(ip)) = (unsafe {
        (
            bpf_probe_read_user((sp + SIG_BP) as *const u64),
            bpf_probe_read_user((sp + SIG_SP) as *const u64),
            bpf_probe_read_user((sp + SIG_IP) as *const u64),
        )
    }) else {
        return finish(walk, WalkEnd::ReadFailed);
    };
    walk.bp = bp;
    walk.bp_known = 1;
    walk.sp = next_sp;
    walk.ip = ip;
    walk.exact = 1;
    if ip == 0 {
        return finish(walk, WalkEnd::Whole);
    }
    0
}

/// Asks userspace for `tgid`'s tables (a new process, a new image, or
/// code mapped since they were written).
#[inline(always)]
fn needs_tables(tgid: u32) {
    // SAFETY: a lookup; nothing is kept.
    if unsafe { NEEDS_TABLES.get(&tgid) }.is_none() {
        let _ = NEEDS_TABLES.insert(&tgid, &1, BPF_ANY as u64);
    }
}

/// The executable mapping holding `ip` (binary search of the `count`
/// sorted mappings from `first`).
#[inline(always)]
fn find_mapping(ip: u64, first: u32, count: u32) -> Option<&'static UnwindMapping> {
    // The last mapping whose start is <= ip.
    let (mut lo, mut hi) = (0u32, count);
    let mut i = 0;
    while i < MAPPING_SEARCH_STEPS {
        if lo >= hi {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        match UNWIND_MAPPINGS.get(first.wrapping_add(mid)) {
            Some(m) if m.start <= ip => lo = mid + 1,
            Some(_) => hi = mid,
            None => return None,
        }
        i += 1;
    }
    if lo == 0 {
        return None;
    }
    let mapping = UNWIND_MAPPINGS.get(first.wrapping_add(lo - 1))?;
    if ip < mapping.end {
        Some(mapping)
    } else {
        None
    }
}

/// The row of `mapping`'s table that covers `pc` (the last row whose pc is
/// <= `pc`), if any.
#[inline(always)]
fn find_row(mapping: &UnwindMapping, pc: u32) -> Option<&'static UnwindRow> {
    let start = mapping.rows_start;
    let (mut lo, mut hi) = (start, start.wrapping_add(mapping.rows_len));
    if hi < lo {
        return None;
    }
    let mut i = 0;
    while i < ROW_SEARCH_STEPS {
        if lo >= hi {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        match UNWIND_ROWS.get(mid) {
            Some(row) if row.pc <= pc => lo = mid + 1,
            Some(_) => hi = mid,
            None => return None,
        }
        i += 1;
    }
    if lo == start {
        return None;
    }
    UNWIND_ROWS.get(lo - 1)
}
