//! Where the Go runtime keeps the statistics [`super::runtime_stats`]
//! reads, per Go release, on amd64: byte offsets of the fields of
//! `runtime.mstats` (the variable `runtime.memstats`), of its
//! `consistentHeapStats` and `heapStatsDelta`, of `runtime.gcControllerState`
//! (`runtime.gcController`), of the two fixallocs of `runtime.mheap`
//! (`runtime.mheap_`), of `runtime.m` (`alllink`), of `runtime.schedt`
//! (`runtime.sched`) and of `runtime.p`.
//!
//! Measured from the DWARF of an unstripped build of each release that
//! has a toolchain here (Go 1.19.8, 1.21.13, 1.22.10, 1.23.9, 1.24.11,
//! 1.25.5, 1.26.6, 1.27.3; `tests/workloads/go/memstats.go`, read with
//! Go's `debug/dwarf`). Go 1.20 had no toolchain to measure and is refused
//! (its `schedt` differs from 1.19's, so guessing would read garbage).
//!
//! What moved:
//!
//! - `heapStatsDelta.inPtrScalarBits` was dropped in 1.25 (the delta is
//!   1,168 bytes instead of 1,176; every `mstats` field after `heapStats`
//!   24 bytes down);
//! - `gcControllerState` lost its `consMark`/`consMarkController` in 1.21
//!   (the heap-goal and heap fields 32 bytes down);
//! - `m.alllink`, `mheap`'s fixallocs, `schedt` and `p.gFree` move in
//!   nearly every release; `schedt.gFree` and `p.gFree` count with
//!   `gList.size` from 1.25 (`stack.size` + `noStack.size` for the
//!   scheduler's list) instead of one `n`.
//!
//! The size classes (`class_to_size`, 68 classes) are the same in every
//! release known (source: `runtime/sizeclasses.go`,
//! `internal/runtime/gc/sizeclasses.go` from 1.25).

/// Byte offsets of the fields of `runtime.heapStatsDelta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaLayout {
    /// `unsafe.Sizeof(heapStatsDelta{})`.
    pub size: u64,
    pub committed: u64,
    pub released: u64,
    pub in_heap: u64,
    pub in_stacks: u64,
    pub in_work_bufs: u64,
    /// Up to 1.24.
    pub in_ptr_scalar_bits: Option<u64>,
    pub tiny_alloc_count: u64,
    pub large_alloc: u64,
    pub large_alloc_count: u64,
    /// `[NUM_SIZE_CLASSES]uint64`.
    pub small_alloc_count: u64,
    pub large_free: u64,
    pub large_free_count: u64,
    /// `[NUM_SIZE_CLASSES]uint64`.
    pub small_free_count: u64,
}

/// How `memoryLimitHeapGoal` keeps headroom under the memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headroom {
    /// Go 1.19: a fixed 1 MiB (`memoryLimitHeapGoalHeadroom`).
    Fixed,
    /// Go 1.21+: 3% of the goal, at least 1 MiB
    /// (`memoryLimitHeapGoalHeadroomPercent`,
    /// `memoryLimitMinHeapGoalHeadroom`).
    Percent,
}

/// Byte offsets of what is read, per release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsLayout {
    // runtime.mstats (runtime.memstats); heapStats is at 0.
    pub delta: DeltaLayout,
    /// `heapStats.gen` (a u32; `stats [3]heapStatsDelta` is at 0).
    pub heap_stats_gen: u64,
    pub stacks_sys: u64,
    pub mspan_sys: u64,
    pub mcache_sys: u64,
    pub buckhash_sys: u64,
    pub gc_misc_sys: u64,
    pub other_sys: u64,
    pub last_gc_unix: u64,
    pub pause_total_ns: u64,
    /// `[256]uint64`.
    pub pause_ns: u64,
    /// `[256]uint64`.
    pub pause_end: u64,
    /// A u32; `numforcedgc` (u32) follows it.
    pub numgc: u64,

    // runtime.gcControllerState (runtime.gcController).
    /// `gcPercent` (an i32) is at 0 and `memoryLimit` (an i64) at 8 in
    /// every release.
    pub gc_percent_heap_goal: u64,
    pub sweep_dist_min_trigger: u64,
    pub triggered: u64,
    pub heap_marked: u64,
    pub heap_free: u64,
    pub total_alloc: u64,
    pub total_free: u64,
    pub mapped_ready: u64,
    pub headroom: Headroom,

    // runtime.mheap (runtime.mheap_): two fixallocs, whose `size` is at 0
    // and `inuse` at [`FIXALLOC_INUSE`].
    pub spanalloc: u64,
    pub cachealloc: u64,

    /// `runtime.m.alllink`.
    pub m_alllink: u64,

    // runtime.schedt (runtime.sched).
    /// `ngsys` (a u32).
    pub sched_ngsys: u64,
    /// `gFree` (its `lock` first).
    pub sched_gfree: u64,
    /// The i32 counts of `gFree` (`n` up to 1.24; `stack.size` and
    /// `noStack.size` from 1.25): offsets in `schedt`, 0 for none.
    pub sched_gfree_counts: [u64; 2],
    /// `runtime.p.gFree.n` (`gFree.size` from 1.25), an i32.
    pub p_gfree_count: u64,
}

/// The number of size classes (`_NumSizeClasses`, `gc.NumSizeClasses`).
pub const NUM_SIZE_CLASSES: usize = 68;

/// The size of the objects of each size class (`class_to_size`; class 0
/// is for large objects).
pub const CLASS_TO_SIZE: [u16; NUM_SIZE_CLASSES] = [
    0, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320,
    352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792,
    2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728,
    10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672,
    32768,
];

/// The length of `mstats.pause_ns` (and `pause_end`).
pub const PAUSE_RING: u64 = 256;

/// Where `inuse` is in a `runtime.fixalloc` (size, first, arg, list,
/// chunk, nchunk + nalloc, inuse).
pub const FIXALLOC_INUSE: u64 = 48;

/// `gcControllerState.gcPercent` (i32) and `memoryLimit` (i64).
pub const GC_PERCENT: u64 = 0;
pub const MEMORY_LIMIT: u64 = 8;

/// `heapStatsDelta` up to 1.24.
const DELTA_119: DeltaLayout = DeltaLayout {
    size: 1176,
    committed: 0,
    released: 8,
    in_heap: 16,
    in_stacks: 24,
    in_work_bufs: 32,
    in_ptr_scalar_bits: Some(40),
    tiny_alloc_count: 48,
    large_alloc: 56,
    large_alloc_count: 64,
    small_alloc_count: 72,
    large_free: 616,
    large_free_count: 624,
    small_free_count: 632,
};

/// `heapStatsDelta` from 1.25: no `inPtrScalarBits`.
const DELTA_125: DeltaLayout = DeltaLayout {
    size: 1168,
    committed: 0,
    released: 8,
    in_heap: 16,
    in_stacks: 24,
    in_work_bufs: 32,
    in_ptr_scalar_bits: None,
    tiny_alloc_count: 40,
    large_alloc: 48,
    large_alloc_count: 56,
    small_alloc_count: 64,
    large_free: 608,
    large_free_count: 616,
    small_free_count: 624,
};

/// Go 1.19.
const GO119: StatsLayout = StatsLayout {
    delta: DELTA_119,
    heap_stats_gen: 3528,
    stacks_sys: 3544,
    mspan_sys: 3552,
    mcache_sys: 3560,
    buckhash_sys: 3568,
    gc_misc_sys: 3576,
    other_sys: 3584,
    last_gc_unix: 3592,
    pause_total_ns: 3600,
    pause_ns: 3608,
    pause_end: 5656,
    numgc: 7704,
    gc_percent_heap_goal: 104,
    sweep_dist_min_trigger: 112,
    triggered: 120,
    heap_marked: 184,
    heap_free: 320,
    total_alloc: 328,
    total_free: 336,
    mapped_ready: 344,
    headroom: Headroom::Fixed,
    spanalloc: 92224,
    cachealloc: 92296,
    m_alllink: 336,
    sched_ngsys: 72,
    sched_gfree: 152,
    sched_gfree_counts: [176, 0],
    p_gfree_count: 2472,
};

/// Go 1.21: the pacer's fields 32 bytes down.
const GO121: StatsLayout = StatsLayout {
    gc_percent_heap_goal: 72,
    sweep_dist_min_trigger: 80,
    triggered: 88,
    heap_marked: 152,
    heap_free: 288,
    total_alloc: 296,
    total_free: 304,
    mapped_ready: 312,
    headroom: Headroom::Percent,
    spanalloc: 92232,
    cachealloc: 92304,
    sched_gfree: 160,
    sched_gfree_counts: [184, 0],
    ..GO119
};

const GO122: StatsLayout = StatsLayout {
    spanalloc: 92296,
    cachealloc: 92368,
    m_alllink: 328,
    ..GO121
};

const GO123: StatsLayout = StatsLayout {
    p_gfree_count: 2464,
    ..GO122
};

const GO124: StatsLayout = StatsLayout {
    m_alllink: 352,
    ..GO123
};

/// Go 1.25: `inPtrScalarBits` gone, the free lists counted by `gList`.
const GO125: StatsLayout = StatsLayout {
    delta: DELTA_125,
    heap_stats_gen: 3504,
    stacks_sys: 3520,
    mspan_sys: 3528,
    mcache_sys: 3536,
    buckhash_sys: 3544,
    gc_misc_sys: 3552,
    other_sys: 3560,
    last_gc_unix: 3568,
    pause_total_ns: 3576,
    pause_ns: 3584,
    pause_end: 5632,
    numgc: 7680,
    spanalloc: 92320,
    cachealloc: 92392,
    m_alllink: 344,
    sched_ngsys: 80,
    sched_gfree: 168,
    sched_gfree_counts: [184, 200],
    p_gfree_count: 2464,
    ..GO124
};

/// Go 1.26 and 1.27.
const GO126: StatsLayout = StatsLayout {
    cachealloc: 92464,
    m_alllink: 352,
    sched_ngsys: 96,
    sched_gfree: 184,
    sched_gfree_counts: [200, 216],
    p_gfree_count: 2472,
    ..GO125
};

/// The releases known, for the errors.
pub const KNOWN: &str = "Go 1.19 and 1.21 to 1.27";

/// The layout in Go `major.minor`, if known.
pub fn layout(version: (u32, u32)) -> Option<&'static StatsLayout> {
    match version {
        (1, 19) => Some(&GO119),
        (1, 21) => Some(&GO121),
        (1, 22) => Some(&GO122),
        (1, 23) => Some(&GO123),
        (1, 24) => Some(&GO124),
        (1, 25) => Some(&GO125),
        (1, 26 | 27) => Some(&GO126),
        _ => None,
    }
}

impl StatsLayout {
    /// How many bytes of `runtime.memstats` are read: up to `numgc` and
    /// `numforcedgc`.
    pub fn memstats_len(&self) -> u64 {
        self.numgc + 8
    }

    /// How many bytes of `runtime.gcController` are read.
    pub fn gc_controller_len(&self) -> u64 {
        [
            MEMORY_LIMIT,
            self.gc_percent_heap_goal,
            self.sweep_dist_min_trigger,
            self.triggered,
            self.heap_marked,
            self.heap_free,
            self.total_alloc,
            self.total_free,
            self.mapped_ready,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
            + 8
    }

    /// How many bytes of `runtime.sched` are read (from 0).
    pub fn sched_len(&self) -> u64 {
        let [a, b] = self.sched_gfree_counts;
        self.sched_ngsys.max(a).max(b) + 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_known_and_refused() {
        for minor in [19, 21, 22, 23, 24, 25, 26, 27] {
            let l = layout((1, minor)).expect("known");
            // The delta's arrays are 68 words; the three deltas, gen and
            // the lock come before stacks_sys.
            assert_eq!(
                l.delta.small_free_count - l.delta.small_alloc_count,
                NUM_SIZE_CLASSES as u64 * 8 + 16
            );
            assert_eq!(
                l.delta.small_free_count + NUM_SIZE_CLASSES as u64 * 8,
                l.delta.size
            );
            assert_eq!(l.heap_stats_gen, 3 * l.delta.size);
            assert_eq!(l.stacks_sys, l.heap_stats_gen + 16);
            assert_eq!(l.pause_end, l.pause_ns + PAUSE_RING * 8);
            assert_eq!(l.numgc, l.pause_end + PAUSE_RING * 8);
            assert_eq!(
                l.delta.in_ptr_scalar_bits.is_some(),
                minor < 25,
                "1.{minor}"
            );
            assert_eq!(l.headroom == Headroom::Fixed, minor == 19);
            assert!(l.cachealloc > l.spanalloc);
            assert!(l.sched_gfree_counts[0] > l.sched_gfree);
            assert_eq!(l.sched_gfree_counts[1] != 0, minor >= 25, "1.{minor}");
            assert!(l.memstats_len() > l.numgc && l.gc_controller_len() > l.mapped_ready);
        }
        for refused in [(1, 18), (1, 20), (1, 28), (2, 0)] {
            assert_eq!(layout(refused), None, "{refused:?}");
        }
    }

    /// Spot checks against the DWARF measurements.
    #[test]
    fn measured_offsets() {
        let l = layout((1, 19)).expect("known");
        assert_eq!((l.numgc, l.last_gc_unix, l.m_alllink), (7704, 3592, 336));
        let l = layout((1, 27)).expect("known");
        assert_eq!((l.numgc, l.pause_ns, l.mapped_ready), (7680, 3584, 312));
        assert_eq!((l.spanalloc, l.cachealloc), (92320, 92464));
        let l = layout((1, 24)).expect("known");
        assert_eq!((l.m_alllink, l.p_gfree_count), (352, 2464));
        assert_eq!(CLASS_TO_SIZE[5], 48);
        assert_eq!(CLASS_TO_SIZE[NUM_SIZE_CLASSES - 1], 32768);
    }
}
