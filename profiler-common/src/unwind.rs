//! In-kernel DWARF unwinding: the tables userspace derives from each
//! binary's `.eh_frame` and loads into the kernel (rows of call-frame rules
//! and the target's executable mappings), the stacks the kernel walks with
//! them, and how each walk ended.
//!
//! x86_64 only. A row says, from its `pc` up to the next row's, how to find
//! the canonical frame address (CFA: the caller's `rsp`) and where the
//! caller's `rbp` was saved; the return address is always at `CFA - 8`.

use crate::stacks::MAX_STACK_DEPTH;

/// How a row finds the CFA (the `cfa_rule` of an [`UnwindRow`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CfaRule {
    /// No call-frame information covers this address (a gap between FDEs):
    /// the walker tries frame pointers for this one frame, and counts it.
    None = 0,
    /// `CFA = rsp + cfa_offset`.
    Rsp = 1,
    /// `CFA = rbp + cfa_offset`.
    Rbp = 2,
    /// A PLT stub (the expression the linker emits for `.plt`):
    /// `CFA = rsp + cfa_offset + ((rip & 15) >= rbp_offset ? 8 : 0)`.
    Plt = 3,
    /// The return address is undefined: the outermost frame (`_start`,
    /// `clone3`'s child, `start_thread` in some glibc builds). A walk that
    /// reaches it is whole.
    End = 4,
    /// A signal trampoline (`__restore_rt`): the interrupted registers are
    /// in the `ucontext` at `rsp`.
    Signal = 5,
    /// A rule the walker cannot evaluate (another DWARF expression): the
    /// walk stops there, counted as truncated.
    Unsupported = 6,
    /// `CFA = *(rbp + cfa_offset)`: the expression gcc emits for a
    /// function that realigns its stack (`DW_OP_breg6 n; DW_OP_deref`, an
    /// over-aligned local), which keeps the caller's stack pointer in its
    /// frame.
    RbpDeref = 7,
}

impl CfaRule {
    pub const fn from_u8(value: u8) -> CfaRule {
        match value {
            1 => CfaRule::Rsp,
            2 => CfaRule::Rbp,
            3 => CfaRule::Plt,
            4 => CfaRule::End,
            5 => CfaRule::Signal,
            6 => CfaRule::Unsupported,
            7 => CfaRule::RbpDeref,
            _ => CfaRule::None,
        }
    }
}

/// Where a row finds the caller's `rbp` (the `rbp_rule` of an [`UnwindRow`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RbpRule {
    /// `rbp` is unchanged (the callee did not touch it, or restored it).
    Unchanged = 0,
    /// Saved at `CFA + rbp_offset`.
    AtCfa = 1,
    /// Another rule (an expression, another register): the caller's `rbp`
    /// is unknown; frames above that use it fall back or stop.
    Unknown = 2,
    /// Saved at `rbp + rbp_offset` (this frame's `rbp`): the expression
    /// `DW_OP_breg6 n` gcc emits beside [`CfaRule::RbpDeref`].
    AtRbp = 3,
}

/// One row of a binary's unwind table. Rows of one binary are sorted by
/// `pc`; a row holds from its `pc` up to the next row's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UnwindRow {
    /// The address the row starts at, relative to the binary's table base
    /// (see [`UnwindMapping::pc_adjust`]).
    pub pc: u32,
    pub cfa_offset: i32,
    /// For [`RbpRule::AtCfa`] the offset from the CFA; for [`CfaRule::Plt`]
    /// the threshold on `rip & 15`.
    pub rbp_offset: i16,
    /// A [`CfaRule`].
    pub cfa_rule: u8,
    /// A [`RbpRule`].
    pub rbp_rule: u8,
}

/// What the walker does in an executable mapping.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MappingKind {
    /// Look the address up in the rows `rows_start..rows_start + rows_len`.
    Table = 0,
    /// Walk frame pointers (Go binaries, whose code keeps them always, and
    /// binaries without `.eh_frame`).
    FramePointers = 1,
    /// Code with no file and no table (a JIT): the stack ends here with a
    /// frame that says so.
    Jit = 2,
}

/// One executable mapping of the target, as the walker sees it. Userspace
/// keeps them sorted by `start`, `UNWIND_MAPPINGS_LEN` of them valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UnwindMapping {
    pub start: u64,
    pub end: u64,
    /// `ip - pc_adjust` (wrapping, then truncated to 32 bits) is the row
    /// `pc` of an address in this mapping.
    pub pc_adjust: u64,
    pub rows_start: u32,
    pub rows_len: u32,
    /// A [`MappingKind`].
    pub kind: u32,
    pub reserved: u32,
}

/// Executable mappings the walker knows, of every process together: a
/// process's mappings take whole slots of [`UNWIND_MAPPING_SLOT`] entries
/// (see [`ProcessTables`]).
pub const UNWIND_MAPPING_ENTRIES: u32 = 512 * UNWIND_MAPPING_SLOT;
/// Entries of `UNWIND_MAPPINGS` per slot.
pub const UNWIND_MAPPING_SLOT: u32 = 256;
/// The most executable mappings one process may have known to the walker.
pub const UNWIND_PROCESS_MAPPINGS: u32 = 2048;
/// Processes the walker can hold tables for at once.
pub const UNWIND_PROCESS_ENTRIES: u32 = 16_384;

/// Where one process's executable mappings are in `UNWIND_MAPPINGS`
/// (`PROC_TABLES`, by tgid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessTables {
    pub first: u32,
    pub count: u32,
}

// SAFETY: `repr(C)`, two u32s, every bit pattern valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProcessTables {}
/// Rows of every binary's table together (12 bytes each).
pub const UNWIND_ROW_ENTRIES: u32 = 2 * 1024 * 1024;
/// The deepest stack the walker records.
pub const UNWIND_MAX_DEPTH: usize = MAX_STACK_DEPTH as usize;
/// Set in the stack id of a stack the walker recorded (in `DWARF_STACKS`,
/// not a kernel stack map): ids are `DWARF_ID_BIT | (hash & DWARF_ID_MASK)`,
/// non-negative like every stack id.
pub const DWARF_ID_BIT: i32 = 0x4000_0000;
pub const DWARF_ID_MASK: u64 = 0x3fff_ffff;

/// The stack id of a walked stack's hash.
#[inline(always)]
pub const fn dwarf_stack_id(hash: u64) -> i32 {
    DWARF_ID_BIT | (hash & DWARF_ID_MASK) as i32
}

/// Whether a (non-negative) stack id names a walked stack.
#[inline(always)]
pub const fn is_dwarf_stack_id(id: i32) -> bool {
    id >= 0 && id & DWARF_ID_BIT != 0
}

/// Capacity of `DWARF_STACKS` (not preallocated; about 1 KiB an entry).
pub const DWARF_STACK_ENTRIES: u32 = 32_768;

/// A stack the walker recorded, in `DWARF_STACKS` by [`dwarf_stack_id`].
/// Two stacks whose hashes share an id are told apart by `hash`: the second
/// is counted as a collision and its event keeps no stack.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UserStack {
    /// The full hash of the walk (frames, length and end).
    pub hash: u64,
    pub len: u32,
    /// A [`WalkEnd`].
    pub end: u32,
    pub ips: [u64; UNWIND_MAX_DEPTH],
}

/// A walk under way in the kernel (per CPU): the registers of the frame
/// being looked at, and the stack so far.
#[repr(C)]
pub struct WalkState {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    pub hash: u64,
    /// 0 while walking, else `WalkEnd + 1`.
    pub done: u32,
    /// 1 while `bp` holds the frame's real `rbp`.
    pub bp_known: u32,
    /// 1 while `ip` is the exact address of an instruction (the first
    /// frame, or one interrupted by a signal), not a return address: the
    /// walker looks up `ip - 1` otherwise, the call instruction.
    pub exact: u32,
    /// Frames walked by frame pointers for want of a row.
    pub fp_frames: u32,
    /// The walked process's mappings in `UNWIND_MAPPINGS` (its
    /// [`ProcessTables`], read once per walk): `count` 0 when it has none
    /// yet, and the whole stack is walked by frame pointers.
    pub mappings_first: u32,
    pub mappings: u32,
    pub stack: UserStack,
}

/// How a walk ended: whole, or why it stopped early. Counted per kind of
/// event (see [`StackKind`]) in `STACK_QUALITY`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WalkEnd {
    /// The outermost frame was reached (an `End` row, or a zero frame
    /// pointer or return address).
    Whole = 0,
    /// `UNWIND_MAX_DEPTH` frames were taken.
    DepthLimit = 1,
    /// An address in no known mapping (a library loaded since the
    /// mappings were read: userspace re-reads them when this moves).
    NoMapping = 2,
    /// An address in code with no file (a JIT).
    Jit = 3,
    /// Reading the stack failed (a bad CFA or frame pointer).
    ReadFailed = 4,
    /// A rule the walker cannot evaluate.
    Unsupported = 5,
    /// A frame needed `rbp`, which an earlier frame left unknown.
    RbpUnknown = 6,
    /// The stack map was full: the event counted, its stack lost.
    MapFull = 7,
    /// No user registers (a kernel thread, an exiting task).
    NoRegisters = 8,
}

impl WalkEnd {
    pub const COUNT: usize = 9;
    pub const ALL: [WalkEnd; WalkEnd::COUNT] = [
        WalkEnd::Whole,
        WalkEnd::DepthLimit,
        WalkEnd::NoMapping,
        WalkEnd::Jit,
        WalkEnd::ReadFailed,
        WalkEnd::Unsupported,
        WalkEnd::RbpUnknown,
        WalkEnd::MapFull,
        WalkEnd::NoRegisters,
    ];

    pub const fn from_u32(value: u32) -> Option<WalkEnd> {
        if (value as usize) < WalkEnd::COUNT {
            Some(WalkEnd::ALL[value as usize])
        } else {
            None
        }
    }

    /// The end in words, for the report.
    pub const fn describe(self) -> &'static str {
        match self {
            WalkEnd::Whole => "whole",
            WalkEnd::DepthLimit => "truncated at the depth limit (--max-depth)",
            WalkEnd::NoMapping => "truncated at code mapped after the tables were written",
            WalkEnd::Jit => "ended in JIT code (no file, no table)",
            WalkEnd::ReadFailed => "truncated: a stack read failed (a bad CFA or frame pointer)",
            WalkEnd::Unsupported => "truncated at a call-frame rule the walker cannot evaluate",
            WalkEnd::RbpUnknown => "truncated: a frame needed rbp, which was not saved",
            WalkEnd::MapFull => "lost: the stack map was full",
            WalkEnd::NoRegisters => "lost: no user registers",
        }
    }

    /// The end as a metric label value.
    pub const fn label(self) -> &'static str {
        match self {
            WalkEnd::Whole => "whole",
            WalkEnd::DepthLimit => "depth_limit",
            WalkEnd::NoMapping => "no_mapping",
            WalkEnd::Jit => "jit",
            WalkEnd::ReadFailed => "read_failed",
            WalkEnd::Unsupported => "unsupported_rule",
            WalkEnd::RbpUnknown => "rbp_unknown",
            WalkEnd::MapFull => "stack_map_full",
            WalkEnd::NoRegisters => "no_registers",
        }
    }
}

/// The events whose stacks the walker takes, for counting.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StackKind {
    Cpu = 0,
    OffCpu = 1,
    FutexWait = 2,
    FutexWake = 3,
    Waker = 4,
}

impl StackKind {
    pub const COUNT: usize = 5;
    pub const ALL: [StackKind; StackKind::COUNT] = [
        StackKind::Cpu,
        StackKind::OffCpu,
        StackKind::FutexWait,
        StackKind::FutexWake,
        StackKind::Waker,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            StackKind::Cpu => "cpu",
            StackKind::OffCpu => "offcpu",
            StackKind::FutexWait => "futex_wait",
            StackKind::FutexWake => "futex_wake",
            StackKind::Waker => "waker",
        }
    }
}

/// Slots of `STACK_QUALITY` (a per-CPU array of `u64`): per kind, one per
/// [`WalkEnd`], then the frames walked by frame pointers for want of a row
/// ([`QUALITY_FP_FRAMES`]).
pub const QUALITY_SLOTS_PER_KIND: u32 = WalkEnd::COUNT as u32 + 1;
/// The slot, after a kind's [`WalkEnd`]s, counting frames that had no
/// call-frame information and were walked by frame pointers.
pub const QUALITY_FP_FRAMES: u32 = WalkEnd::COUNT as u32;
pub const QUALITY_SLOTS: u32 = QUALITY_SLOTS_PER_KIND * StackKind::COUNT as u32;

/// The `STACK_QUALITY` slot of `end` for `kind`.
pub const fn quality_slot(kind: StackKind, end: WalkEnd) -> u32 {
    kind as u32 * QUALITY_SLOTS_PER_KIND + end as u32
}

/// The hash of a walked stack, as the kernel computes it frame by frame
/// (FNV-1a over the addresses' 64-bit words, then mixed); never 0 (0 says
/// "no DWARF stack" in an event key).
#[inline(always)]
pub const fn hash_step(hash: u64, ip: u64) -> u64 {
    (hash ^ ip).wrapping_mul(0x0000_0100_0000_01b3)
}

/// The start of [`hash_step`]'s chain.
pub const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// The final hash of a stack of `len` frames whose chain ended at `hash`.
#[inline(always)]
pub const fn hash_finish(hash: u64, len: u32) -> u64 {
    let mut h = hash ^ (len as u64);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    if h == 0 { 1 } else { h }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `repr(C)` data without padding; every bit pattern valid.
    unsafe impl aya::Pod for super::UnwindRow {}
    unsafe impl aya::Pod for super::UnwindMapping {}
    unsafe impl aya::Pod for super::UserStack {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_what_the_kernel_expects() {
        assert_eq!(core::mem::size_of::<UnwindRow>(), 12);
        assert_eq!(core::mem::size_of::<UnwindMapping>(), 40);
        assert_eq!(core::mem::size_of::<UserStack>(), 16 + 8 * UNWIND_MAX_DEPTH);
    }

    #[test]
    fn walk_ends_round_trip() {
        for end in WalkEnd::ALL {
            assert_eq!(WalkEnd::from_u32(end as u32), Some(end));
        }
        assert_eq!(WalkEnd::from_u32(99), None);
    }
}
