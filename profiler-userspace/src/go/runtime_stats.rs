//! The Go runtime's own metrics of a running Go program, read from outside
//! through `/proc/PID/mem` (no agent, no ptrace, the program never
//! stopped), for Go 1.19 and 1.21 to 1.27, stripped or not: what
//! Prometheus' client_golang exports as `go_*` (its Go collector's default
//! set), with the same meanings, so that dashboards and alerts written for
//! programs that export them work for programs that do not.
//!
//! # Where each value comes from
//!
//! client_golang (1.12+, built with Go 1.17+) computes its `go_memstats_*`
//! from `runtime/metrics`, not from `runtime.ReadMemStats`; the runtime
//! computes both from the same variables, and this reader computes each
//! value as `runtime/metrics` does (`runtime/metrics.go`,
//! `heapStatsAggregate` and `sysStatsAggregate`), from:
//!
//! - **`runtime.memstats`** (`mstats`): its `heapStats`, the runtime's
//!   *consistent* heap statistics: three `heapStatsDelta`s whose sum is the
//!   total (allocations and frees counted by size class, tiny allocations,
//!   large objects, and the bytes committed, released, in the heap, in
//!   stacks, in GC work buffers); its `*_sys` counters; and the GC's own
//!   record: `numgc`, `numforcedgc`, `last_gc_unix`, `pause_total_ns`, and
//!   the ring of the last 256 pauses `pause_ns`.
//! - **`runtime.gcController`**: the heap goal's inputs (`gcPercentHeapGoal`,
//!   `sweepDistMinTrigger`, `triggered`, `heapMarked`, `memoryLimit` and,
//!   for the memory-limit goal, `heapFree`, `totalAlloc`, `totalFree`,
//!   `mappedReady`), `gcPercent` (GOGC) and `memoryLimit` (GOMEMLIMIT).
//!   The goal is computed as `gcControllerState.heapGoal` does, with the
//!   release's headroom rule (1 MiB in 1.19; 3%, at least 1 MiB, from
//!   1.21).
//! - **`runtime.mheap_`**: `spanalloc.inuse`, `cachealloc.inuse`.
//! - **`runtime.allm`**: the list of every M (OS thread), walked by
//!   `m.alllink`: its length is what `runtime.ThreadCreateProfile(nil)`
//!   returns, client_golang's `go_threads`.
//! - **`runtime.sched`**, **`runtime.allp`**, **`runtime.allgs`**: the
//!   goroutine count `runtime.NumGoroutine()` returns (`gcount`: every `g`
//!   ever made, less those on the scheduler's and each P's free lists, less
//!   the runtime's own), and GOMAXPROCS (the length of `allp`).
//!
//! In a stripped binary each variable is found from the code of a runtime
//! function that uses it ([`super::stats_code`]); the fields by a
//! per-release table measured from DWARF ([`super::stats_layout`]);
//! another release is refused with a sentence rather than read as garbage.
//! What is found is checked in memory before it is trusted (see
//! [`RuntimeStats::new`]).
//!
//! # Consistency
//!
//! The program runs on while it is read:
//!
//! - The consistent heap statistics are rotated by `runtime/metrics.Read`
//!   (the runtime's only reader besides `ReadMemStats`, which stops the
//!   world): it moves the writers to the next delta, adds the previous
//!   delta to the current one and clears it. Between those two steps the
//!   sum of the three counts some allocations twice. Outside a rotation,
//!   the delta after the writers' one (`stats[(gen+1)%3]`) is all zero. So
//!   `runtime.memstats` is read whole, twice, and the second read is used
//!   only when both are clean (that delta zero) with the same `gen`, and
//!   the GC's record (`numgc`, `numforcedgc`, `last_gc_unix`,
//!   `pause_total_ns`, written one after another at the end of a cycle)
//!   is the same in both; else it is read again, [`MAX_READS`] times at
//!   most, then [`RuntimeStats::read`] fails for this time.
//! - The heap goal's memory-limit inputs are read again until they satisfy
//!   the invariant the runtime itself waits for (`heapFree + heapAlloc <=
//!   mappedReady`), [`MAX_READS`] times at most.
//! - The thread list, the free lists and the goroutine count are read as
//!   the runtime reads them for `ThreadCreateProfile` and `NumGoroutine`:
//!   without a lock, so as racy as Go's own answer.
//!
//! # What differs from `runtime.ReadMemStats`
//!
//! `ReadMemStats` stops the world and first flushes every P's allocation
//! cache; `runtime/metrics` (and so client_golang, and this reader) does
//! not: a span cached by a P counts as allocated for its free slots too
//! until it is handed back, so `heap_alloc_bytes` and `heap_objects` can
//! be above `ReadMemStats`' `HeapAlloc`/`HeapObjects` by at most the free
//! slots of the spans cached (a few spans per P and size class). Every
//! other value is the same computation on the same variables; the GC's
//! record (`NumGC`, `LastGC`, `PauseTotalNs`, `PauseNs`) is exact.
//!
//! # Cost
//!
//! A [`RuntimeStats::read`] is about a dozen reads of `/proc/PID/mem`
//! (two of 7.7 KB for `memstats`), plus one per thread and one per P:
//! tens of microseconds (see `tests/tests/go_runtime_stats.rs`).

use std::{collections::HashSet, fs::File, io, rc::Rc};

use super::{
    GoBinary,
    binary::{ProcessBinaryError, process_binary},
    stats_code::{
        find_allgs, find_allm, find_allp, find_gc_controller, find_memstats, find_mheap, find_sched,
    },
    stats_layout::{
        self, CLASS_TO_SIZE, FIXALLOC_INUSE, GC_PERCENT, Headroom, MEMORY_LIMIT, NUM_SIZE_CLASSES,
        PAUSE_RING, StatsLayout,
    },
};
use crate::procfs;

/// A value whose reads do not settle is read this many times at most.
pub const MAX_READS: usize = 8;
/// More threads than this in `allm` is taken for garbage.
const MAX_THREADS: usize = 1 << 17;
/// More Ps than this in `allp` is taken for garbage.
const MAX_PROCS: u64 = 1 << 16;
/// More goroutines than this in `allgs` is taken for garbage.
const MAX_GOROUTINES: u64 = 1 << 26;

/// Why the runtime's statistics cannot be read from a process.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeStatsError {
    /// The program is not one this reader knows (the sentence says why).
    #[error("cannot read the Go runtime's statistics: {0}")]
    Unsupported(String),
    /// The runtime's data were not found where they should be.
    #[error("cannot read the Go runtime's statistics: its {what} was not found: {why}")]
    NotFound { what: &'static str, why: String },
    /// The process cannot be read (gone, or no permission).
    #[error("cannot read the Go runtime's statistics of process {pid}: {source}")]
    Process { pid: u32, source: io::Error },
}

/// The runtime's metrics at one moment, named after client_golang's
/// metrics (`go_` + the field name, except where noted). Byte counts are
/// bytes, times nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoStats {
    /// `go_info{version}`: the Go version that built the program
    /// (`go1.27.3`), as `runtime.Version()` says it.
    pub go_version: String,
    /// `go_goroutines`: `runtime.NumGoroutine()`. `None` if the scheduler's
    /// data were not found (see [`RuntimeStats::missing`]).
    pub goroutines: Option<u64>,
    /// `go_threads`: the OS threads the runtime made and still has
    /// (`runtime.ThreadCreateProfile(nil)`, the length of `allm`). `None`
    /// if not found or the list did not read as one.
    pub threads: Option<u64>,
    /// `go_sched_gomaxprocs_threads`: GOMAXPROCS (the length of `allp`).
    pub gomaxprocs: Option<u64>,
    /// `go_gc_gogc_percent`: GOGC (-1 when off; client_golang exports it
    /// as `/gc/gogc:percent` does, as an unsigned number).
    pub gogc_percent: i64,
    /// `go_gc_gomemlimit_bytes`: GOMEMLIMIT (`math.MaxInt64` when unset).
    pub gomemlimit_bytes: u64,

    /// `go_memstats_alloc_bytes` and `go_memstats_heap_alloc_bytes`
    /// (`/memory/classes/heap/objects:bytes`).
    pub heap_alloc_bytes: u64,
    /// `go_memstats_alloc_bytes_total` (`/gc/heap/allocs:bytes`).
    pub alloc_bytes_total: u64,
    /// `go_memstats_mallocs_total` (`/gc/heap/allocs:objects` +
    /// `/gc/heap/tiny/allocs:objects`).
    pub mallocs_total: u64,
    /// `go_memstats_frees_total` (`/gc/heap/frees:objects` +
    /// `/gc/heap/tiny/allocs:objects`).
    pub frees_total: u64,
    /// `go_memstats_heap_objects` (`/gc/heap/objects:objects`).
    pub heap_objects: u64,
    /// `go_memstats_heap_inuse_bytes` (objects + unused).
    pub heap_inuse_bytes: u64,
    /// `go_memstats_heap_idle_bytes` (released + free).
    pub heap_idle_bytes: u64,
    /// `go_memstats_heap_released_bytes`.
    pub heap_released_bytes: u64,
    /// `go_memstats_heap_sys_bytes` (in use + idle).
    pub heap_sys_bytes: u64,
    /// `go_memstats_stack_inuse_bytes` (`/memory/classes/heap/stacks:bytes`).
    pub stack_inuse_bytes: u64,
    /// `go_memstats_stack_sys_bytes` (+ `/memory/classes/os-stacks:bytes`).
    pub stack_sys_bytes: u64,
    /// `go_memstats_mspan_inuse_bytes`. `None` if `mheap_` was not found.
    pub mspan_inuse_bytes: Option<u64>,
    /// `go_memstats_mspan_sys_bytes`.
    pub mspan_sys_bytes: u64,
    /// `go_memstats_mcache_inuse_bytes`. `None` if `mheap_` was not found.
    pub mcache_inuse_bytes: Option<u64>,
    /// `go_memstats_mcache_sys_bytes`.
    pub mcache_sys_bytes: u64,
    /// `go_memstats_buck_hash_sys_bytes`.
    pub buck_hash_sys_bytes: u64,
    /// `go_memstats_gc_sys_bytes` (`/memory/classes/metadata/other:bytes`).
    pub gc_sys_bytes: u64,
    /// `go_memstats_other_sys_bytes`.
    pub other_sys_bytes: u64,
    /// `go_memstats_sys_bytes` (`/memory/classes/total:bytes`).
    pub sys_bytes: u64,
    /// `go_memstats_next_gc_bytes` (`/gc/heap/goal:bytes`).
    pub next_gc_bytes: u64,

    /// `go_memstats_last_gc_time_seconds` × 1e9: when the last GC ended
    /// (Unix time in nanoseconds; 0 before the first).
    pub last_gc_unix_ns: u64,
    /// Completed GC cycles (`MemStats.NumGC`): `go_gc_duration_seconds_count`.
    pub gc_cycles: u64,
    /// GC cycles forced by the program (`runtime.GC()`; `NumForcedGC`).
    pub forced_gc_cycles: u64,
    /// The total of the GC's stop-the-world pauses (`PauseTotalNs`):
    /// `go_gc_duration_seconds_sum` × 1e9.
    pub gc_pause_total_ns: u64,
    /// The last pauses (up to 256), most recent first, as
    /// `runtime/debug.ReadGCStats` gives them (`GCStats.Pause`); see
    /// [`GoStats::pause_quantiles`].
    pub recent_pauses_ns: Vec<u64>,
}

impl GoStats {
    /// The pause quantiles 0, 0.25, 0.5, 0.75 and 1 of
    /// [`GoStats::recent_pauses_ns`], computed as
    /// `runtime/debug.ReadGCStats` computes `PauseQuantiles` with five
    /// entries (what client_golang exports as `go_gc_duration_seconds`'s
    /// quantiles): all 0 before the first GC.
    pub fn pause_quantiles(&self) -> [u64; 5] {
        let mut sorted = self.recent_pauses_ns.clone();
        sorted.sort_unstable();
        let mut out = [0u64; 5];
        let Some(&max) = sorted.last() else {
            return out;
        };
        let n = sorted.len();
        for (i, q) in out.iter_mut().enumerate().take(4) {
            *q = sorted.get(n * i / 4).copied().unwrap_or(0);
        }
        out[4] = max;
        out
    }
}

/// The process addresses of the scheduler's data, for the goroutine count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scheduler {
    sched: u64,
    allp: u64,
    allgs: u64,
}

/// What is known of one Go process to read its runtime's statistics: its
/// release, the layouts, and where each variable is.
pub struct RuntimeStats {
    pid: u32,
    version: (u32, u32),
    go_version: String,
    layout: &'static StatsLayout,
    bias: u64,
    /// Process addresses.
    memstats: u64,
    gc_controller: u64,
    mheap: Result<u64, String>,
    allm: Result<u64, String>,
    scheduler: Result<Scheduler, String>,
    mem: File,
}

/// The consistent heap statistics, summed, and the rest of `memstats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Memstats {
    generation: u32,
    /// `stats[(gen+1)%3]` is all zero: no rotation in progress.
    clean: bool,
    committed: i64,
    released: i64,
    in_heap: i64,
    in_stacks: i64,
    in_work_bufs: i64,
    in_ptr_scalar_bits: i64,
    tiny_alloc_count: u64,
    large_alloc: u64,
    large_alloc_count: u64,
    large_free: u64,
    large_free_count: u64,
    small_alloc_count: Vec<u64>,
    small_free_count: Vec<u64>,
    stacks_sys: u64,
    mspan_sys: u64,
    mcache_sys: u64,
    buckhash_sys: u64,
    gc_misc_sys: u64,
    other_sys: u64,
    last_gc_unix: u64,
    pause_total_ns: u64,
    pause_ns: Vec<u64>,
    numgc: u32,
    numforcedgc: u32,
}

impl Memstats {
    /// Parses `data`, the first [`StatsLayout::memstats_len`] bytes of
    /// `runtime.memstats`; `None` if it is short or `gen` is not 0, 1 or 2.
    fn parse(data: &[u8], layout: &StatsLayout) -> Option<Memstats> {
        let d = &layout.delta;
        let generation = u32_at(data, layout.heap_stats_gen)?;
        if generation >= 3 {
            return None;
        }
        // Sums a field over the three deltas.
        let sum = |field: u64| -> Option<u64> {
            (0..3).try_fold(0u64, |total, k| {
                Some(total.wrapping_add(u64_at(data, k * d.size + field)?))
            })
        };
        let signed = |field: u64| sum(field).map(u64::cast_signed);
        let array = |field: u64| -> Option<Vec<u64>> {
            (0..NUM_SIZE_CLASSES as u64)
                .map(|i| sum(field + i * 8))
                .collect()
        };
        let next = u64::from((generation + 1) % 3);
        let start = usize::try_from(next * d.size).ok()?;
        let end = usize::try_from((next + 1) * d.size).ok()?;
        let clean = data.get(start..end)?.iter().all(|b| *b == 0);
        let pause_ns = (0..PAUSE_RING)
            .map(|i| u64_at(data, layout.pause_ns + i * 8))
            .collect::<Option<Vec<u64>>>()?;
        Some(Memstats {
            generation,
            clean,
            committed: signed(d.committed)?,
            released: signed(d.released)?,
            in_heap: signed(d.in_heap)?,
            in_stacks: signed(d.in_stacks)?,
            in_work_bufs: signed(d.in_work_bufs)?,
            in_ptr_scalar_bits: d.in_ptr_scalar_bits.map_or(Some(0), signed)?,
            tiny_alloc_count: sum(d.tiny_alloc_count)?,
            large_alloc: sum(d.large_alloc)?,
            large_alloc_count: sum(d.large_alloc_count)?,
            large_free: sum(d.large_free)?,
            large_free_count: sum(d.large_free_count)?,
            small_alloc_count: array(d.small_alloc_count)?,
            small_free_count: array(d.small_free_count)?,
            stacks_sys: u64_at(data, layout.stacks_sys)?,
            mspan_sys: u64_at(data, layout.mspan_sys)?,
            mcache_sys: u64_at(data, layout.mcache_sys)?,
            buckhash_sys: u64_at(data, layout.buckhash_sys)?,
            gc_misc_sys: u64_at(data, layout.gc_misc_sys)?,
            other_sys: u64_at(data, layout.other_sys)?,
            last_gc_unix: u64_at(data, layout.last_gc_unix)?,
            pause_total_ns: u64_at(data, layout.pause_total_ns)?,
            pause_ns,
            numgc: u32_at(data, layout.numgc)?,
            numforcedgc: u32_at(data, layout.numgc + 4)?,
        })
    }

    /// Whether `self`, read after `earlier`, can be used: both clean, no
    /// rotation between them, and the GC's record the same.
    fn settled_after(&self, earlier: &Memstats) -> bool {
        self.clean
            && earlier.clean
            && self.generation == earlier.generation
            && self.numgc == earlier.numgc
            && self.numforcedgc == earlier.numforcedgc
            && self.last_gc_unix == earlier.last_gc_unix
            && self.pause_total_ns == earlier.pause_total_ns
    }

    /// Whether it can be the runtime's: the sanity checks of
    /// [`RuntimeStats::new`].
    fn plausible(&self) -> Result<(), String> {
        if self.committed <= 0 || self.in_heap <= 0 || self.in_heap > self.committed {
            return Err(format!(
                "heap bytes committed {} and in use {} are not a heap's",
                self.committed, self.in_heap
            ));
        }
        if self.mspan_sys == 0 || self.mcache_sys == 0 {
            return Err("no memory is counted for spans or caches".to_owned());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(u64::MAX, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
            });
        // Go was released in 2009; a day of clock skew is allowed.
        const GO_EPOCH_NS: u64 = 1_257_894_000_000_000_000;
        const DAY_NS: u64 = 86_400_000_000_000;
        if self.last_gc_unix != 0
            && (self.last_gc_unix < GO_EPOCH_NS || self.last_gc_unix > now.saturating_add(DAY_NS))
        {
            return Err(format!(
                "the last GC's time {} is not a time",
                self.last_gc_unix
            ));
        }
        if (self.numgc == 0) != (self.last_gc_unix == 0) || self.numforcedgc > self.numgc {
            return Err(format!(
                "{} GC cycles ({} forced) with the last at {}",
                self.numgc, self.numforcedgc, self.last_gc_unix
            ));
        }
        Ok(())
    }

    /// The GC's last pauses, most recent first (`readGCStats_m`).
    fn recent_pauses(&self) -> Vec<u64> {
        let ring = u32::try_from(PAUSE_RING).unwrap_or(u32::MAX);
        let n = self.numgc.min(ring);
        (0..n)
            .filter_map(|i| {
                let j = self.numgc.wrapping_sub(1).wrapping_sub(i) % ring;
                self.pause_ns.get(usize::try_from(j).ok()?).copied()
            })
            .collect()
    }
}

/// The inputs of the heap goal (`gcControllerState`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Controller {
    gc_percent: i32,
    memory_limit: i64,
    gc_percent_heap_goal: u64,
    sweep_dist_min_trigger: u64,
    triggered: u64,
    heap_marked: u64,
    heap_free: u64,
    total_alloc: u64,
    total_free: u64,
    mapped_ready: u64,
}

impl Controller {
    fn parse(data: &[u8], layout: &StatsLayout) -> Option<Controller> {
        Some(Controller {
            gc_percent: u32_at(data, GC_PERCENT)?.cast_signed(),
            memory_limit: u64_at(data, MEMORY_LIMIT)?.cast_signed(),
            gc_percent_heap_goal: u64_at(data, layout.gc_percent_heap_goal)?,
            sweep_dist_min_trigger: u64_at(data, layout.sweep_dist_min_trigger)?,
            triggered: u64_at(data, layout.triggered)?,
            heap_marked: u64_at(data, layout.heap_marked)?,
            heap_free: u64_at(data, layout.heap_free)?,
            total_alloc: u64_at(data, layout.total_alloc)?,
            total_free: u64_at(data, layout.total_free)?,
            mapped_ready: u64_at(data, layout.mapped_ready)?,
        })
    }

    /// The invariant `memoryLimitHeapGoal` waits for.
    fn settled(&self) -> bool {
        self.heap_free
            .checked_add(self.total_alloc.wrapping_sub(self.total_free))
            .is_some_and(|sum| sum <= self.mapped_ready)
    }

    /// `gcControllerState.heapGoal()` (`heapGoalInternal`), in Go's
    /// wrapping uint64 arithmetic.
    fn heap_goal(&self, headroom: Headroom) -> u64 {
        const MIN_RUNWAY: u64 = 64 << 10;
        let mut goal = self.gc_percent_heap_goal;
        let limit_goal = self.memory_limit_heap_goal(headroom);
        if limit_goal < goal {
            return limit_goal;
        }
        goal = goal.max(self.sweep_dist_min_trigger);
        if self.triggered != u64::MAX && goal < self.triggered.wrapping_add(MIN_RUNWAY) {
            goal = self.triggered.wrapping_add(MIN_RUNWAY);
        }
        goal
    }

    /// `gcControllerState.memoryLimitHeapGoal()`.
    fn memory_limit_heap_goal(&self, headroom: Headroom) -> u64 {
        const MIN_HEADROOM: u64 = 1 << 20;
        let heap_alloc = self.total_alloc.wrapping_sub(self.total_free);
        let memory_limit = self.memory_limit.cast_unsigned();
        let non_heap = self
            .mapped_ready
            .wrapping_sub(self.heap_free)
            .wrapping_sub(heap_alloc);
        let overage = self.mapped_ready.saturating_sub(memory_limit);
        if non_heap.wrapping_add(overage) >= memory_limit {
            return self.heap_marked;
        }
        let mut goal = memory_limit.wrapping_sub(non_heap.wrapping_add(overage));
        let room = match headroom {
            Headroom::Fixed => MIN_HEADROOM,
            Headroom::Percent => (goal / 100 * 3).max(MIN_HEADROOM),
        };
        goal = if goal < room || goal - room < room {
            room
        } else {
            goal - room
        };
        goal.max(self.heap_marked)
    }
}

impl RuntimeStats {
    /// Prepares to read the runtime's statistics of process `pid`, running
    /// `binary` loaded at `bias` (process address minus ELF address).
    ///
    /// Fails, with a sentence saying why, for a Go release whose layouts
    /// are not known (other than 1.19 and 1.21 to 1.27), when
    /// `runtime.memstats` or `runtime.gcController` is not found in the
    /// code or does not read as one (sane heap and GC counters), or when
    /// the process cannot be read. The threads (`allm`), the goroutine
    /// count (`sched`, `allp`, `allgs`) and `mheap_` are optional: if one
    /// is not found, its values are `None` and [`RuntimeStats::missing`]
    /// says why.
    pub fn new(
        pid: u32,
        binary: Rc<GoBinary>,
        bias: u64,
    ) -> Result<RuntimeStats, RuntimeStatsError> {
        let Some(build) = binary.build.as_ref() else {
            return Err(RuntimeStatsError::Unsupported(
                "the binary has no Go build info (.go.buildinfo), so its Go release, which \
                 decides where the runtime keeps its statistics, is unknown"
                    .to_owned(),
            ));
        };
        let Some(version) = build.go_release() else {
            return Err(RuntimeStatsError::Unsupported(format!(
                "the Go version {:?} recorded in the binary does not parse",
                build.go_version
            )));
        };
        let Some(layout) = stats_layout::layout(version) else {
            return Err(unknown_release(&build.go_version));
        };
        let not_found =
            |what: &'static str| move |why: String| RuntimeStatsError::NotFound { what, why };
        let memstats = find_memstats(&binary, layout).map_err(not_found("memstats"))?;
        let gc_controller = find_gc_controller(&binary).map_err(not_found("gcController"))?;
        let mheap = find_mheap(&binary, layout);
        let allm = find_allm(&binary, layout);
        let scheduler = (|| {
            Ok::<_, String>(Scheduler {
                sched: find_sched(&binary, layout)?,
                allp: find_allp(&binary)?,
                allgs: find_allgs(&binary)?,
            })
        })();
        let mem = File::open(format!("/proc/{pid}/mem"))
            .map_err(|source| RuntimeStatsError::Process { pid, source })?;
        let at = |address: u64| address.wrapping_add(bias);
        let stats = RuntimeStats {
            pid,
            version,
            go_version: build.go_version.clone(),
            layout,
            bias,
            memstats: at(memstats),
            gc_controller: at(gc_controller),
            mheap: mheap.map(at),
            allm: allm.map(at),
            scheduler: scheduler.map(|s| Scheduler {
                sched: at(s.sched),
                allp: at(s.allp),
                allgs: at(s.allgs),
            }),
            mem,
        };
        stats.check()?;
        Ok(stats)
    }

    /// [`RuntimeStats::new`] for the executable of process `pid`: reads
    /// the binary (`/proc/PID/exe`) and its load bias from the mappings.
    pub fn for_process(pid: u32) -> Result<RuntimeStats, RuntimeStatsError> {
        let (binary, bias) = process_binary(pid).map_err(|err| match err {
            ProcessBinaryError::Process(source) => RuntimeStatsError::Process { pid, source },
            ProcessBinaryError::Unsupported(why) => RuntimeStatsError::Unsupported(why),
        })?;
        RuntimeStats::new(pid, binary, bias)
    }

    /// The process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The Go release, `(1, 27)` for go1.27.3.
    pub fn version(&self) -> (u32, u32) {
        self.version
    }

    /// The runtime variables found, as (name, ELF address): for checking
    /// against a symbol table. Those not found are left out.
    pub fn variables(&self) -> Vec<(&'static str, u64)> {
        let elf = |address: u64| address.wrapping_sub(self.bias);
        let mut out = vec![
            ("runtime.memstats", elf(self.memstats)),
            ("runtime.gcController", elf(self.gc_controller)),
        ];
        if let Ok(mheap) = self.mheap {
            out.push(("runtime.mheap_", elf(mheap)));
        }
        if let Ok(allm) = self.allm {
            out.push(("runtime.allm", elf(allm)));
        }
        if let Ok(s) = self.scheduler {
            out.push(("runtime.sched", elf(s.sched)));
            out.push(("runtime.allp", elf(s.allp)));
            out.push(("runtime.allgs", elf(s.allgs)));
        }
        out
    }

    /// The optional values that cannot be read from this program, each
    /// with why (empty when everything was found).
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(why) = &self.mheap {
            out.push(format!(
                "mspan and mcache bytes in use (runtime.mheap_ not found: {why})"
            ));
        }
        if let Err(why) = &self.allm {
            out.push(format!("threads (runtime.allm not found: {why})"));
        }
        if let Err(why) = &self.scheduler {
            out.push(format!(
                "goroutines and GOMAXPROCS (the scheduler's data not found: {why})"
            ));
        }
        out
    }

    /// Reads the statistics now (see the module's description). Errors when
    /// the process cannot be read (it has exited) or its heap statistics
    /// did not settle in [`MAX_READS`] reads.
    pub fn read(&self) -> io::Result<GoStats> {
        let m = self.read_memstats()?;
        let c = self.read_controller()?;
        let (mspan_inuse, mcache_inuse) = match self.read_fixallocs() {
            Some((span, cache)) => (Some(span), Some(cache)),
            None => (None, None),
        };
        let (goroutines, gomaxprocs) = match self.read_goroutine_count() {
            Some((g, p)) => (Some(g), Some(p)),
            None => (None, None),
        };
        let threads = self.read_threads();

        let mut total_allocs = m.large_alloc_count;
        let mut total_frees = m.large_free_count;
        let mut total_allocated = m.large_alloc;
        let mut total_freed = m.large_free;
        for ((&size, &allocs), &frees) in CLASS_TO_SIZE
            .iter()
            .zip(&m.small_alloc_count)
            .zip(&m.small_free_count)
        {
            total_allocs = total_allocs.wrapping_add(allocs);
            total_frees = total_frees.wrapping_add(frees);
            total_allocated = total_allocated.wrapping_add(allocs.wrapping_mul(u64::from(size)));
            total_freed = total_freed.wrapping_add(frees.wrapping_mul(u64::from(size)));
        }
        let unsigned = i64::cast_unsigned;
        let heap_free = unsigned(
            m.committed
                .wrapping_sub(m.in_heap)
                .wrapping_sub(m.in_stacks)
                .wrapping_sub(m.in_work_bufs)
                .wrapping_sub(m.in_ptr_scalar_bits),
        );
        let heap_inuse = unsigned(m.in_heap);
        let heap_idle = unsigned(m.released).wrapping_add(heap_free);
        Ok(GoStats {
            go_version: self.go_version.clone(),
            goroutines,
            threads,
            gomaxprocs,
            gogc_percent: i64::from(c.gc_percent),
            gomemlimit_bytes: c.memory_limit.cast_unsigned(),
            heap_alloc_bytes: total_allocated.wrapping_sub(total_freed),
            alloc_bytes_total: total_allocated,
            mallocs_total: total_allocs.wrapping_add(m.tiny_alloc_count),
            frees_total: total_frees.wrapping_add(m.tiny_alloc_count),
            heap_objects: total_allocs.wrapping_sub(total_frees),
            heap_inuse_bytes: heap_inuse,
            heap_idle_bytes: heap_idle,
            heap_released_bytes: unsigned(m.released),
            heap_sys_bytes: heap_inuse.wrapping_add(heap_idle),
            stack_inuse_bytes: unsigned(m.in_stacks),
            stack_sys_bytes: unsigned(m.in_stacks).wrapping_add(m.stacks_sys),
            mspan_inuse_bytes: mspan_inuse,
            mspan_sys_bytes: m.mspan_sys,
            mcache_inuse_bytes: mcache_inuse,
            mcache_sys_bytes: m.mcache_sys,
            buck_hash_sys_bytes: m.buckhash_sys,
            gc_sys_bytes: unsigned(m.in_work_bufs.wrapping_add(m.in_ptr_scalar_bits))
                .wrapping_add(m.gc_misc_sys),
            other_sys_bytes: m.other_sys,
            sys_bytes: unsigned(m.committed.wrapping_add(m.released))
                .wrapping_add(m.stacks_sys)
                .wrapping_add(m.mspan_sys)
                .wrapping_add(m.mcache_sys)
                .wrapping_add(m.buckhash_sys)
                .wrapping_add(m.gc_misc_sys)
                .wrapping_add(m.other_sys),
            next_gc_bytes: c.heap_goal(self.layout.headroom),
            last_gc_unix_ns: m.last_gc_unix,
            gc_cycles: u64::from(m.numgc),
            forced_gc_cycles: u64::from(m.numforcedgc),
            gc_pause_total_ns: m.pause_total_ns,
            recent_pauses_ns: m.recent_pauses(),
        })
    }

    /// Checks what was found in memory (see [`RuntimeStats::new`]).
    fn check(&self) -> Result<(), RuntimeStatsError> {
        let pid = self.pid;
        let process = |source| RuntimeStatsError::Process { pid, source };
        let data = self
            .read_bytes(self.memstats, self.layout.memstats_len())
            .map_err(process)?;
        let not_one = |what: &'static str, address: u64, why: String| RuntimeStatsError::NotFound {
            what,
            why: format!("what was read at {address:#x} is not one: {why}"),
        };
        Memstats::parse(&data, self.layout)
            .ok_or_else(|| "its heap statistics' generation is not 0, 1 or 2".to_owned())
            .and_then(|m| m.plausible())
            .map_err(|why| not_one("memstats", self.memstats, why))?;
        let data = self
            .read_bytes(self.gc_controller, self.layout.gc_controller_len())
            .map_err(process)?;
        let c = Controller::parse(&data, self.layout).unwrap_or_default();
        if c.memory_limit <= 0 || c.gc_percent < -1 || c.mapped_ready == 0 {
            return Err(not_one(
                "gcController",
                self.gc_controller,
                format!(
                    "GOGC {}, memory limit {}, {} bytes mapped",
                    c.gc_percent, c.memory_limit, c.mapped_ready
                ),
            ));
        }
        Ok(())
    }

    /// `len` bytes at `address`, or an error if they cannot all be read.
    fn read_bytes(&self, address: u64, len: u64) -> io::Result<Vec<u8>> {
        let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)];
        if procfs::read_memory(&self.mem, address, &mut data) < data.len() {
            return Err(io::Error::other(format!(
                "cannot read {len} bytes at {address:#x} in process {}: has it exited?",
                self.pid
            )));
        }
        Ok(data)
    }

    /// `runtime.memstats`, read until it settles.
    fn read_memstats(&self) -> io::Result<Memstats> {
        let mut earlier: Option<Memstats> = None;
        for _ in 0..MAX_READS {
            let data = self.read_bytes(self.memstats, self.layout.memstats_len())?;
            let now = Memstats::parse(&data, self.layout);
            if let (Some(earlier), Some(now)) = (&earlier, &now)
                && now.settled_after(earlier)
            {
                return Ok(now.clone());
            }
            earlier = now;
        }
        Err(io::Error::other(format!(
            "the heap statistics of process {} (runtime.memstats at {:#x}) did not read the \
             same twice in {MAX_READS} reads",
            self.pid, self.memstats
        )))
    }

    /// `runtime.gcController`, read until its memory-limit inputs agree.
    fn read_controller(&self) -> io::Result<Controller> {
        let mut last = Controller::default();
        for _ in 0..MAX_READS {
            let data = self.read_bytes(self.gc_controller, self.layout.gc_controller_len())?;
            last = Controller::parse(&data, self.layout).unwrap_or_default();
            if last.settled() {
                break;
            }
        }
        Ok(last)
    }

    /// `mheap_.spanalloc.inuse` and `mheap_.cachealloc.inuse`, if found
    /// and sane (a whole number of objects of the fixalloc's size).
    fn read_fixallocs(&self) -> Option<(u64, u64)> {
        let mheap = *self.mheap.as_ref().ok()?;
        let start = self.layout.spanalloc;
        let data = self
            .read_bytes(
                mheap.wrapping_add(start),
                self.layout.cachealloc + FIXALLOC_INUSE + 8 - start,
            )
            .ok()?;
        let inuse = |fixalloc: u64| -> Option<u64> {
            let size = u64_at(&data, fixalloc - start)?;
            let inuse = u64_at(&data, fixalloc - start + FIXALLOC_INUSE)?;
            (size != 0 && inuse.is_multiple_of(size)).then_some(inuse)
        };
        Some((
            inuse(self.layout.spanalloc)?,
            inuse(self.layout.cachealloc)?,
        ))
    }

    /// The length of `allm`, as `ThreadCreateProfile` counts it; `None` if
    /// not found, or the list does not read as one (a pointer that cannot
    /// be read, misaligned, a loop, too long).
    fn read_threads(&self) -> Option<u64> {
        let allm = *self.allm.as_ref().ok()?;
        let mut m = self.read_word(allm)?;
        let mut seen = HashSet::new();
        while m != 0 {
            if !m.is_multiple_of(8) || !seen.insert(m) || seen.len() > MAX_THREADS {
                return None;
            }
            m = self.read_word(m.wrapping_add(self.layout.m_alllink))?;
        }
        u64::try_from(seen.len()).ok()
    }

    /// `gcount()` (`runtime.NumGoroutine()`) and the length of `allp`.
    fn read_goroutine_count(&self) -> Option<(u64, u64)> {
        let s = *self.scheduler.as_ref().ok()?;
        let l = self.layout;
        let slice = |header: u64, max: u64| -> Option<(u64, u64)> {
            let data = self.read_bytes(header, 24).ok()?;
            let (array, len, cap) = (u64_at(&data, 0)?, u64_at(&data, 8)?, u64_at(&data, 16)?);
            (len <= cap && cap <= max && (len == 0 || (array != 0 && array.is_multiple_of(8))))
                .then_some((array, len))
        };
        let (_, allglen) = slice(s.allgs, MAX_GOROUTINES)?;
        let sched = self.read_bytes(s.sched, l.sched_len()).ok()?;
        let mut n = i64::try_from(allglen).ok()?;
        n -= i64::from(u32_at(&sched, l.sched_ngsys)?.cast_signed());
        for count in l.sched_gfree_counts.into_iter().filter(|&c| c != 0) {
            n -= i64::from(u32_at(&sched, count)?.cast_signed());
        }
        let (array, procs) = slice(s.allp, MAX_PROCS)?;
        let pointers = self.read_bytes(array, procs * 8).ok()?;
        for i in 0..procs {
            let p = u64_at(&pointers, i * 8)?;
            if p == 0 || !p.is_multiple_of(8) {
                return None;
            }
            let data = self.read_bytes(p.wrapping_add(l.p_gfree_count), 4).ok()?;
            n -= i64::from(u32_at(&data, 0)?.cast_signed());
        }
        Some((u64::try_from(n.max(1)).ok()?, procs))
    }

    /// The 8-byte word at `address`.
    fn read_word(&self, address: u64) -> Option<u64> {
        let data = self.read_bytes(address, 8).ok()?;
        u64_at(&data, 0)
    }
}

/// The refusal of a release whose layouts are not known (Go 1.20, whose
/// toolchain was not here to measure, and releases after 1.27).
fn unknown_release(go_version: &str) -> RuntimeStatsError {
    RuntimeStatsError::Unsupported(format!(
        "the program was built with {go_version}, and where the runtime keeps its statistics \
         is known for {} only",
        stats_layout::KNOWN
    ))
}

/// The little-endian u64 at `at` in `data`.
fn u64_at(data: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    Some(u64::from_le_bytes(
        data.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The little-endian u32 at `at` in `data`.
fn u32_at(data: &[u8], at: u64) -> Option<u32> {
    let at = usize::try_from(at).ok()?;
    Some(u32::from_le_bytes(
        data.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> &'static StatsLayout {
        stats_layout::layout((1, 27)).expect("known")
    }

    fn put(data: &mut [u8], at: u64, value: u64) {
        let at = at as usize;
        data[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    fn put32(data: &mut [u8], at: u64, value: u32) {
        let at = at as usize;
        data[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// A `memstats` of Go 1.27 made by hand: 10 large allocations of 1 MiB
    /// (4 freed), 1,000 objects of 48 bytes (size class 5; 400 freed), 7
    /// tiny allocations, spread over deltas 1 and 2 with `gen` 2 (the
    /// writers' delta is 2, the accumulated one 1, and delta 0 must be
    /// zero), 3 GCs.
    fn fake_memstats() -> Vec<u8> {
        let l = layout();
        let d = &l.delta;
        let mut data = vec![0u8; l.memstats_len() as usize];
        let a = d.size;
        put(&mut data, a + d.committed, 100 << 20);
        put(&mut data, a + d.in_heap, 80 << 20);
        put(&mut data, a + d.released, 4 << 20);
        put(&mut data, a + d.in_stacks, 1 << 20);
        put(&mut data, a + d.in_work_bufs, 1 << 19);
        put(&mut data, a + d.large_alloc, 8 << 20);
        put(&mut data, a + d.large_alloc_count, 8);
        put(&mut data, a + d.large_free, 4 << 20);
        put(&mut data, a + d.large_free_count, 4);
        put(&mut data, a + d.small_alloc_count + 5 * 8, 900);
        put(&mut data, a + d.small_free_count + 5 * 8, 400);
        put(&mut data, a + d.tiny_alloc_count, 7);
        // The writers' delta (2): the rest.
        let w = 2 * d.size;
        put(&mut data, w + d.large_alloc, 2 << 20);
        put(&mut data, w + d.large_alloc_count, 2);
        put(&mut data, w + d.small_alloc_count + 5 * 8, 100);
        put(&mut data, w + d.committed, (-(1i64 << 20)).cast_unsigned());
        put32(&mut data, l.heap_stats_gen, 2);
        put(&mut data, l.stacks_sys, 1 << 16);
        put(&mut data, l.mspan_sys, 1 << 17);
        put(&mut data, l.mcache_sys, 1 << 14);
        put(&mut data, l.buckhash_sys, 1 << 12);
        put(&mut data, l.gc_misc_sys, 1 << 18);
        put(&mut data, l.other_sys, 1 << 19);
        put(&mut data, l.last_gc_unix, 1_700_000_000_000_000_000);
        put(&mut data, l.pause_total_ns, 600);
        for (i, pause) in [100u64, 200, 300].iter().enumerate() {
            put(&mut data, l.pause_ns + i as u64 * 8, *pause);
        }
        put32(&mut data, l.numgc, 3);
        put32(&mut data, l.numgc + 4, 1);
        data
    }

    fn fake_controller() -> Vec<u8> {
        let l = layout();
        let mut data = vec![0u8; l.gc_controller_len() as usize];
        put32(&mut data, GC_PERCENT, 100);
        put(&mut data, MEMORY_LIMIT, i64::MAX.cast_unsigned());
        put(&mut data, l.gc_percent_heap_goal, 150 << 20);
        put(&mut data, l.triggered, u64::MAX);
        put(&mut data, l.heap_marked, 75 << 20);
        put(&mut data, l.heap_free, 10 << 20);
        put(&mut data, l.total_alloc, 500 << 20);
        put(&mut data, l.total_free, 420 << 20);
        put(&mut data, l.mapped_ready, 120 << 20);
        data
    }

    /// A reader of this process's memory at the given addresses.
    fn fake_stats(
        memstats: u64,
        gc_controller: u64,
        allm: Result<u64, String>,
        scheduler: Result<Scheduler, String>,
    ) -> RuntimeStats {
        RuntimeStats {
            pid: std::process::id(),
            version: (1, 27),
            go_version: "go1.27.3".to_owned(),
            layout: layout(),
            bias: 0,
            memstats,
            gc_controller,
            mheap: Err("not made".to_owned()),
            allm,
            scheduler,
            mem: File::open("/proc/self/mem").expect("own memory"),
        }
    }

    #[test]
    fn computes_as_runtime_metrics_does() {
        let memstats = fake_memstats();
        let controller = fake_controller();
        // Three Ms (the last one's alllink nil).
        let l = layout();
        let mut ms = vec![vec![0u8; l.m_alllink as usize + 8]; 3];
        let addresses: Vec<u64> = ms.iter().map(|m| m.as_ptr() as u64).collect();
        put(&mut ms[0], l.m_alllink, addresses[1]);
        put(&mut ms[1], l.m_alllink, addresses[2]);
        let addresses: Vec<u64> = ms.iter().map(|m| m.as_ptr() as u64).collect();
        let allm = [addresses[0]];
        // Scheduler: 50 gs, 3 system, 4 + 2 free in sched, 2 Ps with 1
        // and 3 free.
        let mut sched = vec![0u8; l.sched_len() as usize];
        put32(&mut sched, l.sched_ngsys, 3);
        put32(&mut sched, l.sched_gfree_counts[0], 4);
        put32(&mut sched, l.sched_gfree_counts[1], 2);
        let mut ps = vec![vec![0u8; l.p_gfree_count as usize + 8]; 2];
        put32(&mut ps[0], l.p_gfree_count, 1);
        put32(&mut ps[1], l.p_gfree_count, 3);
        let p_pointers: Vec<u64> = ps.iter().map(|p| p.as_ptr() as u64).collect();
        let allp = [p_pointers.as_ptr() as u64, 2, 2];
        let gs = vec![0u64; 50];
        let allgs = [gs.as_ptr() as u64, 50, 64];
        let stats = fake_stats(
            memstats.as_ptr() as u64,
            controller.as_ptr() as u64,
            Ok(allm.as_ptr() as u64),
            Ok(Scheduler {
                sched: sched.as_ptr() as u64,
                allp: allp.as_ptr() as u64,
                allgs: allgs.as_ptr() as u64,
            }),
        );
        stats.check().expect("plausible");
        let s = stats.read().expect("reads");
        assert_eq!(s.heap_alloc_bytes, (10 << 20) - (4 << 20) + 600 * 48);
        assert_eq!(s.alloc_bytes_total, (10 << 20) + 1000 * 48);
        assert_eq!(s.heap_objects, 10 - 4 + 1000 - 400);
        assert_eq!((s.mallocs_total, s.frees_total), (1017, 411));
        assert_eq!(s.heap_inuse_bytes, 80 << 20);
        let heap_free = (99u64 << 20) - (80 << 20) - (1 << 20) - (1 << 19);
        assert_eq!(s.heap_idle_bytes, (4 << 20) + heap_free);
        assert_eq!(s.heap_sys_bytes, (80 << 20) + (4 << 20) + heap_free);
        assert_eq!(s.stack_sys_bytes, (1 << 20) + (1 << 16));
        assert_eq!(s.gc_sys_bytes, (1 << 19) + (1 << 18));
        assert_eq!(
            s.sys_bytes,
            (103 << 20) + (1 << 16) + (1 << 17) + (1 << 14) + (1 << 12) + (1 << 18) + (1 << 19)
        );
        // Not limited by memory: the GOGC goal.
        assert_eq!(s.next_gc_bytes, 150 << 20);
        assert_eq!((s.gogc_percent, s.gomemlimit_bytes), (100, i64::MAX as u64));
        assert_eq!((s.gc_cycles, s.forced_gc_cycles), (3, 1));
        assert_eq!(s.recent_pauses_ns, vec![300, 200, 100]);
        assert_eq!(s.pause_quantiles(), [100, 100, 200, 300, 300]);
        assert_eq!(s.threads, Some(3));
        assert_eq!(s.goroutines, Some(50 - 3 - 4 - 2 - 1 - 3));
        assert_eq!(s.gomaxprocs, Some(2));
        assert_eq!(s.mspan_inuse_bytes, None);

        // A rotation in progress (gen 1: delta 2, after the writers' 1,
        // not cleared yet): never settles.
        let mut dirty = fake_memstats();
        put32(&mut dirty, l.heap_stats_gen, 1);
        let stats = fake_stats(
            dirty.as_ptr() as u64,
            controller.as_ptr() as u64,
            Ok(allm.as_ptr() as u64),
            Err("not made".to_owned()),
        );
        assert!(stats.read().is_err());
        drop((ms, ps, gs));
    }

    #[test]
    fn unknown_releases_are_refused_with_a_sentence() {
        for version in ["go1.20.14", "go1.28.0"] {
            let text = unknown_release(version).to_string();
            assert_eq!(
                text,
                format!(
                    "cannot read the Go runtime's statistics: the program was built with \
                     {version}, and where the runtime keeps its statistics is known for Go 1.19 \
                     and 1.21 to 1.27 only"
                )
            );
        }
    }

    #[test]
    fn heap_goal_as_the_pacer() {
        let c = Controller::parse(&fake_controller(), layout()).expect("parses");
        assert!(c.settled());
        assert_eq!(c.heap_goal(Headroom::Percent), 150 << 20);
        // The sweep distance and the trigger push it up.
        let pushed = Controller {
            sweep_dist_min_trigger: 160 << 20,
            ..c
        };
        assert_eq!(pushed.heap_goal(Headroom::Percent), 160 << 20);
        let triggered = Controller {
            triggered: 150 << 20,
            ..c
        };
        assert_eq!(
            triggered.heap_goal(Headroom::Percent),
            (150 << 20) + (64 << 10)
        );
        // A memory limit of 100 MiB: non-heap memory is 120 - 10 - 80 =
        // 30 MiB, overage 20 MiB, so 50 MiB less headroom.
        let limited = Controller {
            memory_limit: 100 << 20,
            heap_marked: 20 << 20,
            ..c
        };
        assert_eq!(limited.heap_goal(Headroom::Fixed), (50 << 20) - (1 << 20));
        assert_eq!(
            limited.heap_goal(Headroom::Percent),
            (50 << 20) - ((50 << 20) / 100 * 3)
        );
        // Non-heap memory above the limit: the live heap.
        let tight = Controller {
            memory_limit: 60 << 20,
            ..c
        };
        assert_eq!(tight.heap_goal(Headroom::Percent), 75 << 20);
        // Extreme values: an answer, no panic.
        for v in [0u64, 1, u64::MAX, 1 << 63] {
            let c = Controller {
                gc_percent: -1,
                memory_limit: v.cast_signed(),
                gc_percent_heap_goal: v,
                sweep_dist_min_trigger: v,
                triggered: v.wrapping_sub(1),
                heap_marked: v,
                heap_free: v,
                total_alloc: 0,
                total_free: v,
                mapped_ready: v,
            };
            let _ = c.heap_goal(Headroom::Fixed);
            let _ = c.heap_goal(Headroom::Percent);
            let _ = c.settled();
        }
    }

    #[test]
    fn pauses_and_quantiles() {
        let l = layout();
        let mut data = fake_memstats();
        // 300 GCs: the ring has wrapped; the last pause is at 299 % 256.
        for i in 0..PAUSE_RING {
            put(&mut data, l.pause_ns + i * 8, 1000 + i);
        }
        put32(&mut data, l.numgc, 300);
        let m = Memstats::parse(&data, l).expect("parses");
        let pauses = m.recent_pauses();
        assert_eq!(pauses.len(), 256);
        assert_eq!(pauses[0], 1000 + 299 % 256);
        assert_eq!(pauses[1], 1000 + 298 % 256);
        assert_eq!(pauses[255], 1000 + 300 % 256);
        let stats = GoStats {
            recent_pauses_ns: pauses,
            ..empty_stats()
        };
        assert_eq!(stats.pause_quantiles(), [1000, 1064, 1128, 1192, 1255]);
        assert_eq!(empty_stats().pause_quantiles(), [0; 5]);
    }

    fn empty_stats() -> GoStats {
        GoStats {
            go_version: String::new(),
            goroutines: None,
            threads: None,
            gomaxprocs: None,
            gogc_percent: 0,
            gomemlimit_bytes: 0,
            heap_alloc_bytes: 0,
            alloc_bytes_total: 0,
            mallocs_total: 0,
            frees_total: 0,
            heap_objects: 0,
            heap_inuse_bytes: 0,
            heap_idle_bytes: 0,
            heap_released_bytes: 0,
            heap_sys_bytes: 0,
            stack_inuse_bytes: 0,
            stack_sys_bytes: 0,
            mspan_inuse_bytes: None,
            mspan_sys_bytes: 0,
            mcache_inuse_bytes: None,
            mcache_sys_bytes: 0,
            buck_hash_sys_bytes: 0,
            gc_sys_bytes: 0,
            other_sys_bytes: 0,
            sys_bytes: 0,
            next_gc_bytes: 0,
            last_gc_unix_ns: 0,
            gc_cycles: 0,
            forced_gc_cycles: 0,
            gc_pause_total_ns: 0,
            recent_pauses_ns: Vec::new(),
        }
    }

    /// A xorshift generator, for garbage.
    fn noise(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Garbage everywhere (random bytes, short data, lists that loop,
    /// pointers to nowhere): errors or any values, never a panic or a
    /// hang.
    #[test]
    fn garbage_never_panics() {
        let l = layout();
        assert!(Memstats::parse(&[], l).is_none());
        assert!(Memstats::parse(&fake_memstats()[..100], l).is_none());
        assert!(Controller::parse(&[1, 2, 3], l).is_none());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..50 {
            let mut memstats: Vec<u8> = (0..l.memstats_len())
                .map(|_| noise(&mut state) as u8)
                .collect();
            if round % 2 == 0 {
                put32(&mut memstats, l.heap_stats_gen, (round / 2) % 3);
            }
            let controller: Vec<u8> = (0..l.gc_controller_len())
                .map(|_| noise(&mut state) as u8)
                .collect();
            // An M list that loops (m0 → m1 → m0), and random Ms.
            let mut ms = vec![vec![0u8; l.m_alllink as usize + 8]; 2];
            let a: Vec<u64> = ms.iter().map(|m| m.as_ptr() as u64).collect();
            put(&mut ms[0], l.m_alllink, a[1]);
            put(&mut ms[1], l.m_alllink, a[0]);
            let allm = [if round % 3 == 0 {
                noise(&mut state)
            } else {
                a[0]
            }];
            let random: Vec<u64> = (0..8).map(|_| noise(&mut state)).collect();
            let scheduler = Scheduler {
                sched: random.as_ptr() as u64,
                allp: random.as_ptr() as u64 + 8,
                allgs: random.as_ptr() as u64 + 16,
            };
            let stats = fake_stats(
                memstats.as_ptr() as u64,
                controller.as_ptr() as u64,
                Ok(allm.as_ptr() as u64),
                Ok(scheduler),
            );
            let started = std::time::Instant::now();
            let _ = stats.check();
            if let Ok(s) = stats.read() {
                assert_eq!(s.threads, None, "a loop is not a list");
                let _ = s.pause_quantiles();
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
            drop(ms);
        }
        // Unmapped addresses: errors.
        let stats = fake_stats(16, 32, Ok(48), Err("none".to_owned()));
        assert!(stats.read().is_err());
        assert!(stats.check().is_err());
        assert_eq!(stats.missing().len(), 2);
    }
}
