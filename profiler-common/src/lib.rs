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

/// Stack-trace map for off-CPU and futex stacks. These stacks are taken at
/// one event (a switch-out, a wake-up) and counted at a later one, possibly
/// after a drain, so their ids must stay valid: this map is never cleared
/// during a recording (a full map is counted, and the report says so).
pub const MAP_LONG_STACKS: &str = "LONG_STACKS";
/// Off-CPU time by [`OffCpuKey`] (values: [`WaitStats`]), two generations.
pub const MAP_OFFCPU: [&str; 2] = ["OFFCPU_0", "OFFCPU_1"];
/// Futex waits by [`FutexWaitKey`] (values: [`WaitStats`]), two generations.
pub const MAP_FUTEX_WAITS: [&str; 2] = ["FUTEX_WAITS_0", "FUTEX_WAITS_1"];
/// Futex wake calls by [`FutexWakeKey`] (values: `u64` calls), two generations.
pub const MAP_FUTEX_WAKES: [&str; 2] = ["FUTEX_WAKES_0", "FUTEX_WAKES_1"];
/// Per-CPU log2 histogram of run-queue delays (ns), [`HIST_BUCKETS`] buckets.
pub const MAP_RUNQ_HIST: &str = "RUNQ_HIST";
/// Per-CPU log2 histogram of futex wait durations (ns).
pub const MAP_FUTEX_HIST: &str = "FUTEX_HIST";
/// Buckets of the log2 histograms: bucket `i` counts values in `[2^i, 2^(i+1))`
/// nanoseconds (bucket 0 also holds 0).
pub const HIST_BUCKETS: u32 = 64;

/// Capacity of the long-lived stack map.
pub const LONG_STACK_MAP_ENTRIES: u32 = 16_384;
/// Capacity of the off-CPU and futex aggregation maps (per generation).
pub const WAIT_MAP_ENTRIES: u32 = 16_384;
/// Capacity of the per-thread in-flight maps (switched-out threads, futex
/// waits under way). LRU maps: a thread that exits while switched out is
/// eventually evicted.
pub const INFLIGHT_MAP_ENTRIES: u32 = 65_536;

/// Globals holding tracepoint field offsets, read from tracefs at load time.
pub const GLOBAL_MIN_BLOCK_NS: &str = "MIN_BLOCK_NS";
pub const GLOBAL_SWITCH_PREV_STATE: &str = "OFF_SWITCH_PREV_STATE";
pub const GLOBAL_SWITCH_NEXT_PID: &str = "OFF_SWITCH_NEXT_PID";
pub const GLOBAL_WAKING_PID: &str = "OFF_WAKING_PID";
pub const GLOBAL_FUTEX_UADDR: &str = "OFF_FUTEX_UADDR";
pub const GLOBAL_FUTEX_OP: &str = "OFF_FUTEX_OP";
pub const GLOBAL_WAITV_WAITERS: &str = "OFF_WAITV_WAITERS";

/// [`OffCpuKey::state`]: the thread blocked (sleep, I/O, a lock...).
pub const OFFCPU_BLOCKED: u32 = 0;
/// [`OffCpuKey::state`]: the thread was preempted while runnable.
pub const OFFCPU_PREEMPTED: u32 = 1;

/// Off-CPU time of one thread, by the stacks it switched out on and, for
/// blocks, the thread that woke it. Stack ids are in [`MAP_LONG_STACKS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OffCpuKey {
    pub tgid: u32,
    pub tid: u32,
    pub user_stack_id: i32,
    pub kernel_stack_id: i32,
    /// The waker's process and thread (0 when no wake-up was seen: preempted,
    /// or woken before the switch-out completed).
    pub waker_tgid: u32,
    pub waker_tid: u32,
    pub waker_user_stack_id: i32,
    pub waker_kernel_stack_id: i32,
    /// [`OFFCPU_BLOCKED`] or [`OFFCPU_PREEMPTED`].
    pub state: u32,
    /// 1 when a wake-up was seen (the waker fields are then valid; a waker
    /// of tgid 0 is the kernel: an interrupt on an idle CPU).
    pub woken: u32,
}

/// Count, total and longest of a set of waits, in nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitStats {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

/// One futex wait site: the lock word's address, the waiting thread and its
/// user stack, and the user stack of the thread that woke it (if seen).
/// Stack ids are in [`MAP_LONG_STACKS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FutexWaitKey {
    pub uaddr: u64,
    pub tgid: u32,
    pub tid: u32,
    pub user_stack_id: i32,
    pub waker_user_stack_id: i32,
    pub waker_tid: u32,
    /// The waker's process (another process's stack is not symbolized).
    pub waker_tgid: u32,
}

/// One futex wake site: the lock word's address and the waking thread's user
/// stack (the code that released the lock). Stack ids are in
/// [`MAP_LONG_STACKS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FutexWakeKey {
    pub uaddr: u64,
    pub tgid: u32,
    pub tid: u32,
    pub user_stack_id: i32,
    /// The futex command (`FUTEX_WAKE`, `FUTEX_UNLOCK_PI`, ...).
    pub op: u32,
}

/// A thread of the target switched out and not yet back on a CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SwitchedOut {
    pub switched_out_ns: u64,
    /// When it was woken (0 until then).
    pub woken_ns: u64,
    pub user_stack_id: i32,
    pub kernel_stack_id: i32,
    pub waker_tgid: u32,
    pub waker_tid: u32,
    pub waker_user_stack_id: i32,
    pub waker_kernel_stack_id: i32,
    pub state: u32,
    /// 1 when the stacks went to userspace as a copy (the interval then
    /// goes there too); 0 when they are ids in [`MAP_LONG_STACKS`].
    pub copied: u32,
}

/// A futex wait under way.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FutexInFlight {
    pub start_ns: u64,
    pub uaddr: u64,
    pub waker_user_stack_id: i32,
    pub waker_tid: u32,
    pub waker_tgid: u32,
    pub reserved: u32,
}

/// Futex commands (`op & FUTEX_CMD_MASK`), linux/futex.h.
pub mod futex_op {
    pub const CMD_MASK: u32 = !(128 | 256);
    pub const WAIT: u32 = 0;
    pub const WAKE: u32 = 1;
    pub const REQUEUE: u32 = 3;
    pub const CMP_REQUEUE: u32 = 4;
    pub const WAKE_OP: u32 = 5;
    pub const LOCK_PI: u32 = 6;
    pub const UNLOCK_PI: u32 = 7;
    pub const WAIT_BITSET: u32 = 9;
    pub const WAKE_BITSET: u32 = 10;
    pub const WAIT_REQUEUE_PI: u32 = 11;
    pub const CMP_REQUEUE_PI: u32 = 12;
    pub const LOCK_PI2: u32 = 13;

    /// Whether the command waits (blocks the caller until woken).
    pub const fn is_wait(cmd: u32) -> bool {
        matches!(
            cmd,
            WAIT | LOCK_PI | WAIT_BITSET | WAIT_REQUEUE_PI | LOCK_PI2
        )
    }

    /// Whether the command wakes (or requeues) waiters.
    pub const fn is_wake(cmd: u32) -> bool {
        matches!(
            cmd,
            WAKE | REQUEUE | CMP_REQUEUE | WAKE_OP | UNLOCK_PI | WAKE_BITSET | CMP_REQUEUE_PI
        )
    }

    /// The command's name, for reports.
    pub const fn name(cmd: u32) -> &'static str {
        match cmd {
            WAIT => "FUTEX_WAIT",
            WAKE => "FUTEX_WAKE",
            REQUEUE => "FUTEX_REQUEUE",
            CMP_REQUEUE => "FUTEX_CMP_REQUEUE",
            WAKE_OP => "FUTEX_WAKE_OP",
            LOCK_PI => "FUTEX_LOCK_PI",
            UNLOCK_PI => "FUTEX_UNLOCK_PI",
            WAIT_BITSET => "FUTEX_WAIT_BITSET",
            WAKE_BITSET => "FUTEX_WAKE_BITSET",
            WAIT_REQUEUE_PI => "FUTEX_WAIT_REQUEUE_PI",
            CMP_REQUEUE_PI => "FUTEX_CMP_REQUEUE_PI",
            LOCK_PI2 => "FUTEX_LOCK_PI2",
            _ => "FUTEX_?",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all): `repr(C)`, no padding, every bit pattern valid.
    unsafe impl aya::Pod for super::OffCpuKey {}
    unsafe impl aya::Pod for super::WaitStats {}
    unsafe impl aya::Pod for super::FutexWaitKey {}
    unsafe impl aya::Pod for super::FutexWakeKey {}
}

/// Ring buffer of [`UserStackSample`]s (DWARF unwinding mode).
pub const MAP_USER_STACKS: &str = "USER_STACKS";
/// Global: how cpu samples take user stacks, an `UNWIND_*` value.
pub const GLOBAL_UNWIND_DWARF: &str = "UNWIND_DWARF";
/// Frame-pointer stacks walked in the kernel (`--unwind fp`).
pub const UNWIND_FP: u32 = 0;
/// Always copy the stack for userspace unwinding (`--unwind dwarf`); an
/// event that finds the ring buffer full is dropped and counted.
pub const UNWIND_COPY: u32 = 1;
/// Copy the stack while the ring buffer is less than half full, else take a
/// frame-pointer stack in the kernel (`--unwind auto`): whole stacks at
/// moderate rates, every event counted at any rate.
pub const UNWIND_AUTO: u32 = 2;
/// Bytes of user stack copied per sample, in [`STACK_CHUNK`] chunks.
pub const STACK_COPY_BYTES: usize = 16 * 1024;
/// The stack is copied in chunks of this size, as far as it is readable.
pub const STACK_CHUNK: usize = 1024;
/// Capacity of the user-stack ring buffer in bytes (a power of two).
pub const USER_STACKS_RING_BYTES: u32 = 8 * 1024 * 1024;

/// Global: how futex waits and wakes take user stacks, an `UNWIND_*` value
/// (copied ones come to userspace one by one).
pub const GLOBAL_UNWIND_DWARF_FUTEX: &str = "UNWIND_DWARF_FUTEX";

/// [`UserStackSample::kind`]: an on-CPU sample.
pub const SAMPLE_CPU: u32 = 0;
/// [`UserStackSample::kind`]: a futex wait that ended (`value_ns` long).
pub const SAMPLE_FUTEX_WAIT: u32 = 1;
/// [`UserStackSample::kind`]: a futex wake call (`op` is the command).
pub const SAMPLE_FUTEX_WAKE: u32 = 2;
/// [`UserStackSample::kind`]: a thread switched out (`uaddr` holds the
/// switch-out time, which with the thread id names the interval an
/// [`OffCpuInterval`] later closes).
pub const SAMPLE_SWITCH_OUT: u32 = 3;
/// Global: how switch-outs take user stacks, an `UNWIND_*` value.
pub const GLOBAL_UNWIND_DWARF_OFFCPU: &str = "UNWIND_DWARF_OFFCPU";
/// Ring buffer of [`OffCpuInterval`]s (`--unwind dwarf` off-CPU profiles).
pub const MAP_OFFCPU_INTERVALS: &str = "OFFCPU_INTERVALS";

/// An off-CPU interval that ended, for a stack sent at its switch-out as a
/// [`SAMPLE_SWITCH_OUT`] sample with the same `tid` and `switched_out_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OffCpuInterval {
    pub tid: u32,
    /// [`OFFCPU_BLOCKED`] or [`OFFCPU_PREEMPTED`].
    pub state: u32,
    pub switched_out_ns: u64,
    /// Time charged: blocked (to the wake-up) or preempted.
    pub charged_ns: u64,
    pub waker_tgid: u32,
    pub waker_tid: u32,
    pub waker_user_stack_id: i32,
    pub waker_kernel_stack_id: i32,
    /// 1 when a wake-up was seen.
    pub woken: u32,
    pub reserved: u32,
}

/// An event for userspace unwinding: the thread's user registers and a copy
/// of its user stack from `rsp` up; the kernel stack, if any, is an id in
/// [`MAP_LONG_STACKS`].
#[repr(C)]
#[derive(Clone, Copy)]
pub struct UserStackSample {
    pub tgid: u32,
    pub tid: u32,
    pub kernel_stack_id: i32,
    /// Bytes of `stack` that hold the copy (a multiple of [`STACK_CHUNK`]).
    pub stack_len: u32,
    /// [`SAMPLE_CPU`], [`SAMPLE_FUTEX_WAIT`] or [`SAMPLE_FUTEX_WAKE`].
    pub kind: u32,
    /// The futex command of a wake.
    pub op: u32,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// The lock word of a futex event.
    pub uaddr: u64,
    /// How long a futex wait lasted.
    pub value_ns: u64,
    pub stack: [u8; STACK_COPY_BYTES],
}

/// LRU hash of `[u8; 16]` thread names (`comm`) by thread id, noted the
/// first time a thread of the target is seen, so threads that exit between
/// drains keep their names.
pub const MAP_THREAD_NAMES: &str = "THREAD_NAMES";

/// Index in [`MAP_CONTROL`] of the generation (0 or 1) the kernel writes to.
pub const CONTROL_GENERATION: u32 = 0;
/// Index in [`MAP_CONTROL`] of the armed flag: the programs ignore every
/// event until it is 1. Userspace sets it for `--pid`; for a command the
/// profiler starts, the exec of the target sets it, so nothing the held
/// child did before its new image was in place is recorded.
pub const CONTROL_ARMED: u32 = 1;
/// Number of control words.
pub const CONTROL_LEN: u32 = 2;

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
    /// Switch-outs of the target's threads seen.
    Switches = 9,
    /// Blocks shorter than `--min-block`, dropped in the kernel.
    ShortBlocksDropped = 10,
    /// Off-CPU interval dropped: the off-CPU map was full.
    OffCpuMapFull = 11,
    /// Run-queue delays measured (wake-up or preemption to switch-in).
    RunqDelays = 12,
    /// Sum of the run-queue delays, in nanoseconds.
    RunqDelayNs = 13,
    /// Futex waits completed.
    FutexWaits = 14,
    /// Futex wake calls.
    FutexWakes = 15,
    /// Futex wait or wake dropped: a futex map was full.
    FutexMapFull = 16,
    /// A switch-out or futex wait could not be remembered (in-flight map full).
    InFlightMapFull = 17,
    /// DWARF-mode sample dropped: the user-stack ring buffer was full.
    UserStackRingFull = 18,
    /// DWARF-mode sample without user registers.
    UserRegsMissing = 19,
    /// Sum of the futex wait durations, in nanoseconds (every wait, also
    /// those whose stack or map entry was lost).
    FutexWaitNs = 20,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 21] = [
        Counter::CpuSamples,
        Counter::UserStackCollision,
        Counter::UserStackMapFull,
        Counter::UserStackMissing,
        Counter::UserStackOther,
        Counter::KernelStackCollision,
        Counter::KernelStackMapFull,
        Counter::KernelStackOther,
        Counter::CountsMapFull,
        Counter::Switches,
        Counter::ShortBlocksDropped,
        Counter::OffCpuMapFull,
        Counter::RunqDelays,
        Counter::RunqDelayNs,
        Counter::FutexWaits,
        Counter::FutexWakes,
        Counter::FutexMapFull,
        Counter::InFlightMapFull,
        Counter::UserStackRingFull,
        Counter::UserRegsMissing,
        Counter::FutexWaitNs,
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
            Counter::Switches => "switch-outs of the target's threads",
            Counter::ShortBlocksDropped => "blocks shorter than --min-block dropped",
            Counter::OffCpuMapFull => "off-CPU interval dropped: off-CPU map full",
            Counter::RunqDelays => "run-queue delays measured",
            Counter::RunqDelayNs => "run-queue delay, total ns",
            Counter::FutexWaits => "futex waits",
            Counter::FutexWakes => "futex wake calls",
            Counter::FutexMapFull => "futex event dropped: futex map full",
            Counter::InFlightMapFull => "event dropped: in-flight map full",
            Counter::UserStackRingFull => "sample dropped: user-stack ring buffer full",
            Counter::UserRegsMissing => "sample without user registers",
            Counter::FutexWaitNs => "futex wait time, total ns",
        }
    }

    /// The counter as a metric label value (`reason="..."` for losses).
    pub const fn label(self) -> &'static str {
        match self {
            Counter::CpuSamples => "cpu_samples",
            Counter::UserStackCollision => "user_stack_collision",
            Counter::UserStackMapFull => "user_stack_map_full",
            Counter::UserStackMissing => "user_stack_missing",
            Counter::UserStackOther => "user_stack_error",
            Counter::KernelStackCollision => "kernel_stack_collision",
            Counter::KernelStackMapFull => "kernel_stack_map_full",
            Counter::KernelStackOther => "kernel_stack_error",
            Counter::CountsMapFull => "counts_map_full",
            Counter::Switches => "switches",
            Counter::ShortBlocksDropped => "short_block",
            Counter::OffCpuMapFull => "offcpu_map_full",
            Counter::RunqDelays => "runq_delays",
            Counter::RunqDelayNs => "runq_delay_ns",
            Counter::FutexWaits => "futex_waits",
            Counter::FutexWakes => "futex_wakes",
            Counter::FutexMapFull => "futex_map_full",
            Counter::InFlightMapFull => "inflight_map_full",
            Counter::UserStackRingFull => "user_stack_ring_full",
            Counter::UserRegsMissing => "user_regs_missing",
            Counter::FutexWaitNs => "futex_wait_ns",
        }
    }

    /// Whether the counter counts something lost (as opposed to a tally).
    pub const fn is_loss(self) -> bool {
        !matches!(
            self,
            Counter::CpuSamples
                | Counter::Switches
                | Counter::RunqDelays
                | Counter::RunqDelayNs
                | Counter::FutexWaits
                | Counter::FutexWakes
                | Counter::FutexWaitNs
                | Counter::ShortBlocksDropped
        )
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
    fn keys_have_no_padding() {
        assert_eq!(core::mem::size_of::<SampleKey>(), 16);
        assert_eq!(core::mem::size_of::<OffCpuKey>(), 40);
        assert_eq!(core::mem::size_of::<FutexWaitKey>(), 32);
        assert_eq!(core::mem::size_of::<FutexWakeKey>(), 24);
        assert_eq!(core::mem::size_of::<SwitchedOut>(), 48);
        assert_eq!(core::mem::size_of::<FutexInFlight>(), 32);
        assert_eq!(core::mem::size_of::<OffCpuInterval>(), 48);
    }

    #[test]
    fn futex_commands() {
        assert!(futex_op::is_wait(0) && futex_op::is_wait(13));
        assert!(futex_op::is_wake(1) && futex_op::is_wake(7));
        assert!(!futex_op::is_wait(1) && !futex_op::is_wake(0));
        // FUTEX_WAIT | FUTEX_PRIVATE_FLAG
        assert_eq!(128 & futex_op::CMD_MASK, futex_op::WAIT);
    }
}
