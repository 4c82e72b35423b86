//! Types shared by the kernel side (`profiler-ebpf`) and userspace: map keys,
//! counter indices and the names both sides use for maps and globals.
//!
//! Every type is `#[repr(C)]` and padding-free (only `u32`/`i32`/`u64`
//! fields), so the bytes the kernel writes are the bytes userspace reads.
#![cfg_attr(not(test), no_std)]

/// Name of the read-only global holding the target's tgid (process id).
pub const GLOBAL_TARGET_TGID: &str = "TARGET_TGID";

/// Names of the maps of the on-CPU profile. Maps come in two generations
/// (`_0`, `_1`): the kernel writes into the generation named by
/// [`CONTROL_GENERATION`] while userspace drains and clears the other, so a
/// drain never races with the writer and no count is lost.
pub const MAP_CPU_COUNTS: [&str; 2] = ["CPU_COUNTS_0", "CPU_COUNTS_1"];
/// Stack-trace maps of the two generations, referenced by [`SampleKey`].
pub const MAP_STACKS: [&str; 2] = ["STACKS_0", "STACKS_1"];
/// Per-CPU array of `u64` counters, indexed by [`Counter`].
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Array of `u32` control words, indexed by the `CONTROL_*` constants.
pub const MAP_CONTROL: &str = "CONTROL";

/// Index in [`MAP_CONTROL`] of the generation (0 or 1) the kernel writes to.
pub const CONTROL_GENERATION: u32 = 0;
/// Number of control words.
pub const CONTROL_LEN: u32 = 1;

/// Capacity of each stack-trace map (unique stacks per generation).
pub const STACK_MAP_ENTRIES: u32 = 16_384;
/// Capacity of each counts map (unique keys per generation).
pub const COUNTS_MAP_ENTRIES: u32 = 32_768;
/// Deepest stack the kernel records (the kernel's own default limit).
pub const MAX_STACK_DEPTH: u32 = 127;

/// One on-CPU sample key: the thread, and its user and kernel stacks.
///
/// A stack id is the id in the generation's stack map when non-negative, or
/// the negated errno of `bpf_get_stackid` when the stack could not be taken
/// (the sample is still counted; userspace reports why its stack is missing).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleKey {
    /// Process id.
    pub tgid: u32,
    /// Thread id.
    pub tid: u32,
    /// User stack id, or `-errno`.
    pub user_stack_id: i32,
    /// Kernel stack id, or `-errno` (`-EFAULT` when the thread was in user mode).
    pub kernel_stack_id: i32,
}

#[cfg(feature = "user")]
// SAFETY: `SampleKey` is `repr(C)`, has no padding and every bit pattern is valid.
unsafe impl aya::Pod for SampleKey {}

/// `errno` values `bpf_get_stackid` returns, as userspace decodes them.
pub mod stack_error {
    /// No stack: a kernel stack of a thread in user mode, or no user stack.
    pub const EFAULT: i32 = 14;
    /// The stack's hash bucket holds another stack (a collision).
    pub const EEXIST: i32 = 17;
    /// The stack map is full.
    pub const ENOMEM: i32 = 12;
}

/// Indices of the per-CPU counters in [`MAP_COUNTERS`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// On-CPU samples that hit a thread of the target.
    CpuSamples = 0,
    /// User stack not taken: the hash bucket held another stack.
    UserStackCollision = 1,
    /// User stack not taken: the stack map was full.
    UserStackMapFull = 2,
    /// User stack not taken: no user stack (thread exiting, kernel thread).
    UserStackMissing = 3,
    /// User stack not taken: any other error.
    UserStackOther = 4,
    /// Kernel stack not taken: collision.
    KernelStackCollision = 5,
    /// Kernel stack not taken: the stack map was full.
    KernelStackMapFull = 6,
    /// Kernel stack not taken: any other error.
    KernelStackOther = 7,
    /// Sample dropped: the counts map was full.
    CountsMapFull = 8,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 9] = [
        Counter::CpuSamples,
        Counter::UserStackCollision,
        Counter::UserStackMapFull,
        Counter::UserStackMissing,
        Counter::UserStackOther,
        Counter::KernelStackCollision,
        Counter::KernelStackMapFull,
        Counter::KernelStackOther,
        Counter::CountsMapFull,
    ];

    /// What the counter counts, as the report words it.
    pub const fn describe(self) -> &'static str {
        match self {
            Counter::CpuSamples => "samples of the target",
            Counter::UserStackCollision => "user stack lost: stack map hash collision",
            Counter::UserStackMapFull => "user stack lost: stack map full",
            Counter::UserStackMissing => "user stack missing (thread in exit or kernel thread)",
            Counter::UserStackOther => "user stack lost: other error",
            Counter::KernelStackCollision => "kernel stack lost: stack map hash collision",
            Counter::KernelStackMapFull => "kernel stack lost: stack map full",
            Counter::KernelStackOther => "kernel stack lost: other error",
            Counter::CountsMapFull => "sample dropped: counts map full",
        }
    }
}

/// Number of counters in [`MAP_COUNTERS`].
pub const COUNTER_LEN: u32 = Counter::ALL.len() as u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_indexed_in_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32);
        }
    }

    #[test]
    fn sample_key_has_no_padding() {
        assert_eq!(core::mem::size_of::<SampleKey>(), 16);
    }
}
