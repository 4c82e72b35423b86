//! Every map and global of the object, named as `profiler_common::maps`
//! names them for userspace.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace},
};
use profiler_common::{
    control::CONTROL_LEN,
    counters::COUNTER_LEN,
    event::{EventKey, Value},
    futex::FutexInFlight,
    gowait::GoParked,
    maps::{
        COPIES_RING_BYTES, CPU_EVENT_ENTRIES, GO_MAP_ENTRIES, HIST_BUCKETS, INFLIGHT_MAP_ENTRIES,
        INTERVALS_RING_BYTES, LONG_STACK_MAP_ENTRIES, STACK_MAP_ENTRIES, TARGET_ENTRIES,
        WAIT_EVENT_ENTRIES,
    },
    offcpu::SwitchedOut,
    unwind::{
        DWARF_STACK_ENTRIES, ProcessTables, QUALITY_SLOTS, UNWIND_MAPPING_ENTRIES,
        UNWIND_PROCESS_ENTRIES, UNWIND_ROW_ENTRIES, UnwindMapping, UnwindRow, UserStack, WalkState,
    },
};

// Globals userspace sets at load time (read with `global`).

/// Which processes are recorded, a `profiler_common::maps::TargetMode`.
#[unsafe(no_mangle)]
pub static TARGET_MODE: u32 = 0;
/// The profiler's own process (never recorded).
#[unsafe(no_mangle)]
pub static OWN_TGID: u32 = 0;
/// `TargetMode::Cgroup`: the cgroup's id and depth.
#[unsafe(no_mangle)]
pub static CGROUP_ID: u64 = 0;
#[unsafe(no_mangle)]
pub static CGROUP_LEVEL: u32 = 0;
/// 1: processes forked by recorded ones are recorded.
#[unsafe(no_mangle)]
pub static FOLLOW_FORKS: u32 = 0;
#[unsafe(no_mangle)]
pub static OFF_FORK_CHILD_PID: u32 = 20;
/// How user stacks are taken, a `profiler_common::stacks::UnwindMode`.
#[unsafe(no_mangle)]
pub static UNWIND_MODE: u32 = 0;
/// The deepest user stack the DWARF walker takes.
#[unsafe(no_mangle)]
pub static UNWIND_MAX_FRAMES: u32 = 127;
/// Blocks shorter than this are dropped (and counted).
#[unsafe(no_mangle)]
pub static MIN_BLOCK_NS: u64 = 0;
/// 1: only semaphore waits are timed, from semacquire1 to readyWithTime
/// (gomutex without goblock).
#[unsafe(no_mangle)]
pub static GO_SEMA_ONLY: u32 = 0;
// Tracepoint field offsets, read by userspace from tracefs formats.
#[unsafe(no_mangle)]
pub static OFF_SWITCH_PREV_STATE: u32 = 32;
#[unsafe(no_mangle)]
pub static OFF_SWITCH_NEXT_PID: u32 = 56;
/// `struct task_struct`'s `pid` (the thread id), from the kernel's BTF.
#[unsafe(no_mangle)]
pub static OFF_TASK_PID: u32 = 0;
#[unsafe(no_mangle)]
pub static OFF_FUTEX_UADDR: u32 = 16;
#[unsafe(no_mangle)]
pub static OFF_FUTEX_OP: u32 = 24;
#[unsafe(no_mangle)]
pub static OFF_WAITV_WAITERS: u32 = 16;

/// Reads a global that userspace may rewrite at load time (volatile, so the
/// compiler cannot fold the initial value).
#[inline(always)]
pub fn global<T: Copy>(value: &'static T) -> T {
    // SAFETY: a plain read of a global of the object.
    unsafe { core::ptr::read_volatile(value) }
}

// Control and accounting.

#[map]
pub static CONTROL: Array<u32> = Array::with_max_entries(CONTROL_LEN, 0);
/// The processes recorded (`TargetMode::Set`), by tgid.
#[map]
pub static TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(TARGET_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_LEN, 0);
#[map]
pub static RUNQ_HIST: PerCpuArray<u64> = PerCpuArray::with_max_entries(HIST_BUCKETS, 0);
#[map]
pub static FUTEX_HIST: PerCpuArray<u64> = PerCpuArray::with_max_entries(HIST_BUCKETS, 0);
/// Names of the target's threads, noted when each is first seen.
#[map]
pub static THREAD_NAMES: LruHashMap<u32, [u8; 16]> =
    LruHashMap::with_max_entries(INFLIGHT_MAP_ENTRIES, 0);

// Events aggregated in the kernel, two generations each. Not preallocated:
// preallocating tens of thousands of per-CPU entries costs the kernel a
// tenth of a second of CPU at load; entries are made on a key's first event.

#[map]
pub static CPU_EVENTS_0: PerCpuHashMap<EventKey, Value> =
    PerCpuHashMap::with_max_entries(CPU_EVENT_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub static CPU_EVENTS_1: PerCpuHashMap<EventKey, Value> =
    PerCpuHashMap::with_max_entries(CPU_EVENT_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub static OFFCPU_EVENTS_0: PerCpuHashMap<EventKey, Value> =
    PerCpuHashMap::with_max_entries(WAIT_EVENT_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub static OFFCPU_EVENTS_1: PerCpuHashMap<EventKey, Value> =
    PerCpuHashMap::with_max_entries(WAIT_EVENT_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub static FUTEX_EVENTS_0: PerCpuHashMap<EventKey, Value> =
    PerCpuHashMap::with_max_entries(WAIT_EVENT_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub static FUTEX_EVENTS_1: PerCpuHashMap<EventKey, Value> =
    PerCpuHashMap::with_max_entries(WAIT_EVENT_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub static GO_EVENTS_0: PerCpuHashMap<EventKey, Value> =
    PerCpuHashMap::with_max_entries(WAIT_EVENT_ENTRIES, BPF_F_NO_PREALLOC);
#[map]
pub static GO_EVENTS_1: PerCpuHashMap<EventKey, Value> =
    PerCpuHashMap::with_max_entries(WAIT_EVENT_ENTRIES, BPF_F_NO_PREALLOC);

// Stacks: on-CPU stacks per generation (cleared with it); off-CPU, futex
// and Go wait stacks in one map that is never cleared during a recording (see
// profiler_common::maps::MAP_LONG_STACKS).

#[map]
pub static STACKS_0: StackTrace = StackTrace::with_max_entries(STACK_MAP_ENTRIES, 0);
#[map]
pub static STACKS_1: StackTrace = StackTrace::with_max_entries(STACK_MAP_ENTRIES, 0);
#[map]
pub static LONG_STACKS: StackTrace = StackTrace::with_max_entries(LONG_STACK_MAP_ENTRIES, 0);

// In-kernel DWARF unwinding (`--unwind dwarf`).

/// Every binary's unwind table, one after another (written by userspace).
#[map]
pub static UNWIND_ROWS: Array<UnwindRow> = Array::with_max_entries(UNWIND_ROW_ENTRIES, 0);
/// Each process's executable mappings, sorted by start, in slots.
#[map]
pub static UNWIND_MAPPINGS: Array<UnwindMapping> =
    Array::with_max_entries(UNWIND_MAPPING_ENTRIES, 0);
/// Where each process's mappings are, by tgid.
#[map]
pub static PROC_TABLES: HashMap<u32, ProcessTables> =
    HashMap::with_max_entries(UNWIND_PROCESS_ENTRIES, BPF_F_NO_PREALLOC);
/// The process whose tables a forked child uses until it has its own.
#[map]
pub static FORK_PARENT: LruHashMap<u32, u32> =
    LruHashMap::with_max_entries(UNWIND_PROCESS_ENTRIES, 0);
/// Processes walked without (whole) tables, for userspace to (re)write.
#[map]
pub static NEEDS_TABLES: LruHashMap<u32, u32> =
    LruHashMap::with_max_entries(UNWIND_PROCESS_ENTRIES, 0);
/// The stacks the walker took, by stack id.
#[map]
pub static DWARF_STACKS: HashMap<i32, UserStack> =
    HashMap::with_max_entries(DWARF_STACK_ENTRIES, BPF_F_NO_PREALLOC);
/// How each walk ended, per kind of event.
#[map]
pub static STACK_QUALITY: PerCpuArray<u64> = PerCpuArray::with_max_entries(QUALITY_SLOTS, 0);
/// The walk under way on each CPU.
#[map]
pub static UNWIND_WALK: PerCpuArray<WalkState> = PerCpuArray::with_max_entries(1, 0);

// Ring buffers (`--unwind copy|auto`).

/// Events with a copy of the user stack, for unwinding in userspace.
#[map]
pub static COPIES: RingBuf = RingBuf::with_byte_size(COPIES_RING_BYTES, 0);
/// Off-CPU intervals whose user stack was copied at their switch-out.
#[map]
pub static INTERVALS: RingBuf = RingBuf::with_byte_size(INTERVALS_RING_BYTES, 0);

// Per-thread state between two events.

/// Threads of the target now switched out, by thread id.
#[map]
pub static SWITCHED_OUT: LruHashMap<u32, SwitchedOut> =
    LruHashMap::with_max_entries(INFLIGHT_MAP_ENTRIES, 0);
/// Futex waits of the target under way, by thread id.
#[map]
pub static FUTEX_INFLIGHT: LruHashMap<u32, FutexInFlight> =
    LruHashMap::with_max_entries(INFLIGHT_MAP_ENTRIES, 0);
/// The copy time of the stack of a futex wake call under way, by thread id.
#[map]
pub static WAKE_COPIES: LruHashMap<u32, u64> =
    LruHashMap::with_max_entries(INFLIGHT_MAP_ENTRIES, 0);

// Per-goroutine state between two events, by `g` address. Plain hash maps
// (an LRU map would evict a parked goroutine silently): a full map is
// counted.

/// Goroutines of the target parked now.
#[map]
pub static GO_PARKED: HashMap<u64, GoParked> =
    HashMap::with_max_entries(GO_MAP_ENTRIES, BPF_F_NO_PREALLOC);
/// The semaphore each goroutine last called `runtime.semacquire1` on.
#[map]
pub static GO_SEMA: HashMap<u64, u64> =
    HashMap::with_max_entries(GO_MAP_ENTRIES, BPF_F_NO_PREALLOC);
