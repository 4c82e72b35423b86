//! The names both sides use for every map and global of the object, and
//! the maps' sizes. The kernel's statics carry exactly these names.
//!
//! Aggregation maps come in two generations (`_0`, `_1`): the kernel writes
//! into the generation named by `control::Control::Generation` while
//! userspace drains and clears the other, so a drain never races with the
//! writer and no count is lost.

// Globals, set by userspace at load time.

/// Which processes are recorded, a [`TargetMode`].
pub const GLOBAL_TARGET_MODE: &str = "TARGET_MODE";
/// The profiler's own tgid (never recorded, even with `--all`).
pub const GLOBAL_OWN_TGID: &str = "OWN_TGID";
/// With [`TargetMode::Cgroup`]: the cgroup v2 directory's id (its inode)
/// and its depth below the root.
pub const GLOBAL_CGROUP_ID: &str = "CGROUP_ID";
pub const GLOBAL_CGROUP_LEVEL: &str = "CGROUP_LEVEL";
/// 1: a process forked by a recorded one is recorded too (`--children`,
/// a started command's tree).
pub const GLOBAL_FOLLOW_FORKS: &str = "FOLLOW_FORKS";
/// `sched:sched_process_fork`'s `child_pid` field offset.
pub const GLOBAL_FORK_CHILD_PID: &str = "OFF_FORK_CHILD_PID";

/// How the kernel side picks the processes it records.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetMode {
    /// The tgids in [`MAP_TARGETS`] (and, with [`GLOBAL_FOLLOW_FORKS`],
    /// the processes they fork, added there by the kernel).
    Set = 0,
    /// Every process in one cgroup v2 directory or below it.
    Cgroup = 1,
    /// Every user process but the profiler itself.
    All = 2,
}
/// How user stacks are taken, a `stacks::UnwindMode`.
pub const GLOBAL_UNWIND_MODE: &str = "UNWIND_MODE";
/// The deepest user stack the DWARF walker takes (`--max-depth`, at most
/// `unwind::UNWIND_MAX_DEPTH`).
pub const GLOBAL_UNWIND_MAX_FRAMES: &str = "UNWIND_MAX_FRAMES";
/// Blocks shorter than this (ns) are dropped in the kernel, and counted.
pub const GLOBAL_MIN_BLOCK_NS: &str = "MIN_BLOCK_NS";
/// 1 when only Go lock contention is recorded (gomutex without goblock):
/// semaphore waits run from `runtime.semacquire1` to
/// `runtime.readyWithTime`, and gopark, ready and execute are not probed.
pub const GLOBAL_GO_SEMA_ONLY: &str = "GO_SEMA_ONLY";
/// Tracepoint field offsets, read from tracefs formats at load time.
pub const GLOBAL_SWITCH_PREV_STATE: &str = "OFF_SWITCH_PREV_STATE";
pub const GLOBAL_SWITCH_NEXT_PID: &str = "OFF_SWITCH_NEXT_PID";
/// `struct task_struct`'s `pid` offset, from the kernel's BTF.
pub const GLOBAL_TASK_PID: &str = "OFF_TASK_PID";
pub const GLOBAL_FUTEX_UADDR: &str = "OFF_FUTEX_UADDR";
pub const GLOBAL_FUTEX_OP: &str = "OFF_FUTEX_OP";
pub const GLOBAL_WAITV_WAITERS: &str = "OFF_WAITV_WAITERS";

// Control and accounting.

/// Hash of `u8` by tgid: the processes recorded ([`TargetMode::Set`]).
/// With fork following the kernel adds each child (a new thread's id is
/// added too, and removed at its exit).
pub const MAP_TARGETS: &str = "TARGETS";
/// Capacity of [`MAP_TARGETS`].
pub const TARGET_ENTRIES: u32 = 65_536;

/// Array of `u32` control words, indexed by `control::Control`.
pub const MAP_CONTROL: &str = "CONTROL";
/// Per-CPU array of `u64` counters, indexed by `counters::Counter`.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Per-CPU log2 histogram of run-queue delays (ns), [`HIST_BUCKETS`] buckets.
pub const MAP_RUNQ_HIST: &str = "RUNQ_HIST";
/// Per-CPU log2 histogram of futex wait durations (ns).
pub const MAP_FUTEX_HIST: &str = "FUTEX_HIST";
/// Buckets of the log2 histograms: bucket `i` counts values in
/// `[2^i, 2^(i+1))` nanoseconds (bucket 0 also holds 0).
pub const HIST_BUCKETS: u32 = 64;
/// LRU hash of `[u8; 16]` thread names (`comm`) by thread id, noted the
/// first time a thread of the target is seen (and again after userspace
/// read and removed it), so threads that exit between drains keep their
/// names.
pub const MAP_THREAD_NAMES: &str = "THREAD_NAMES";

// Events aggregated in the kernel: `event::EventKey` -> `event::Value`.

/// On-CPU samples, two generations.
pub const MAP_CPU_EVENTS: [&str; 2] = ["CPU_EVENTS_0", "CPU_EVENTS_1"];
/// Off-CPU intervals, two generations.
pub const MAP_OFFCPU_EVENTS: [&str; 2] = ["OFFCPU_EVENTS_0", "OFFCPU_EVENTS_1"];
/// Futex waits and wake calls, two generations.
pub const MAP_FUTEX_EVENTS: [&str; 2] = ["FUTEX_EVENTS_0", "FUTEX_EVENTS_1"];
/// Go waits (goroutine parks that ended), two generations.
pub const MAP_GO_EVENTS: [&str; 2] = ["GO_EVENTS_0", "GO_EVENTS_1"];
/// Capacity of the on-CPU event maps (unique keys per generation).
pub const CPU_EVENT_ENTRIES: u32 = 32_768;
/// Capacity of the off-CPU and futex event maps (per generation).
pub const WAIT_EVENT_ENTRIES: u32 = 16_384;

// Stacks.

/// Stack-trace maps of on-CPU samples, one per generation.
pub const MAP_STACKS: [&str; 2] = ["STACKS_0", "STACKS_1"];
/// Capacity of each on-CPU stack map (unique stacks per generation).
pub const STACK_MAP_ENTRIES: u32 = 16_384;
/// Stack-trace map for off-CPU and futex stacks. These stacks are taken at
/// one event (a switch-out, a wake-up) and counted at a later one, possibly
/// after a drain, so their ids must stay valid: this map is never cleared
/// during a recording (a full map is counted, and the report says so).
pub const MAP_LONG_STACKS: &str = "LONG_STACKS";
/// Capacity of the long-lived stack map.
pub const LONG_STACK_MAP_ENTRIES: u32 = 16_384;

// In-kernel DWARF unwinding (`--unwind dwarf`, see `unwind`).

/// Array of `unwind::UnwindRow`: every binary's table, one after another.
pub const MAP_UNWIND_ROWS: &str = "UNWIND_ROWS";
/// Array of `unwind::UnwindMapping`: each process's executable mappings,
/// sorted by start, in slots userspace allocates.
pub const MAP_UNWIND_MAPPINGS: &str = "UNWIND_MAPPINGS";
/// Hash of `unwind::ProcessTables` by tgid: where each process's mappings
/// are in [`MAP_UNWIND_MAPPINGS`]. Removed by the kernel at an exec.
pub const MAP_PROC_TABLES: &str = "PROC_TABLES";
/// LRU hash of `u32` by tgid: the process whose tables a forked child
/// uses until it has its own (its address space is a copy).
pub const MAP_FORK_PARENT: &str = "FORK_PARENT";
/// LRU hash of `u32` (1) by tgid: processes the walker met without
/// tables, or at code outside them (an exec, a library loaded since):
/// userspace (re)writes their tables and removes the entry.
pub const MAP_NEEDS_TABLES: &str = "NEEDS_TABLES";
/// Hash of `unwind::UserStack` by stack id: the stacks the walker took.
/// Never cleared during a recording (like [`MAP_LONG_STACKS`]).
pub const MAP_DWARF_STACKS: &str = "DWARF_STACKS";
/// Per-CPU array of `u64`: how each walk ended, per kind of event
/// (`unwind::quality_slot`).
pub const MAP_STACK_QUALITY: &str = "STACK_QUALITY";

// Ring buffers (`--unwind copy`).

/// Ring of `event::CopiedEvent`s: events that carry a copy of the user
/// stack for userspace to unwind.
pub const MAP_COPIES: &str = "COPIES";
/// Capacity of [`MAP_COPIES`] in bytes (a power of two).
pub const COPIES_RING_BYTES: u32 = 8 * 1024 * 1024;
/// Ring of `event::EventRecord`s: off-CPU intervals whose user stack was
/// copied at their switch-out.
pub const MAP_INTERVALS: &str = "INTERVALS";
/// Capacity of [`MAP_INTERVALS`] in bytes (a power of two).
pub const INTERVALS_RING_BYTES: u32 = 1024 * 1024;

// Per-thread state between two events. LRU maps: a thread that exits in
// the middle is eventually evicted.

/// `offcpu::SwitchedOut` by thread id: threads switched out now.
pub const MAP_SWITCHED_OUT: &str = "SWITCHED_OUT";
/// `futex::FutexInFlight` by thread id: futex waits under way.
pub const MAP_FUTEX_INFLIGHT: &str = "FUTEX_INFLIGHT";
/// `u64` by thread id: the time of the stack copy a thread's futex wake
/// call under way sent, so the waiters it wakes can name it as their
/// waker's stack.
pub const MAP_WAKE_COPIES: &str = "WAKE_COPIES";
/// `gowait::GoParked` by `g` address: goroutines parked now.
pub const MAP_GO_PARKED: &str = "GO_PARKED";
/// `u64` by `g` address: the semaphore a goroutine last called
/// `runtime.semacquire1` on (its park, if any, follows at once).
pub const MAP_GO_SEMA: &str = "GO_SEMA";
/// Capacity of the per-goroutine maps (not preallocated: an entry exists
/// only while its goroutine is parked, or between a semaphore acquire and
/// its park).
pub const GO_MAP_ENTRIES: u32 = 262_144;
/// Capacity of the per-thread maps.
pub const INFLIGHT_MAP_ENTRIES: u32 = 65_536;
