//! Go's heap profile read from a running program's memory, Go 1.19 to
//! 1.27, stripped or not, without stopping it or asking it: the same
//! records `runtime/pprof.WriteHeapProfile` (and `/debug/pprof/heap`)
//! writes, taken where the runtime keeps them.
//!
//! What the runtime keeps (`runtime/mprof.go`): when an allocation is
//! sampled (about one per `runtime.MemProfileRate` bytes), it finds the
//! bucket of its stack and object size in a hash table and counts it; every
//! bucket is also on the list `runtime.mbuckets` (newest first, linked by
//! `allnext`, never freed nor changed once published). A bucket is a
//! header, its stack (return addresses, as `runtime.callers` gives them)
//! and a `memRecord`:
//!
//! | bytes | 1.19–1.26 | 1.27 |
//! |---|---|---|
//! | header | next, allnext, typ (1 = memory), hash, size, nstk: 48 | same |
//! | stack | nstk words (at most 32 up to 1.22, 1024 from 1.23) | same |
//! | `memRecord` | `active` and `future[3]`, each allocs, frees, alloc_bytes, free_bytes: 128 | allocs, frees only: 64 (bytes are counts × `bucket.size`) |
//!
//! Allocations count towards heap-profile cycle C+2 and frees towards
//! C+1 (C is `runtime.mProfCycle >> 1`); a cycle is added to `active` once
//! the GC has finished with it, so the profile shows the heap as of the
//! last GC. [`GoHeap::read`] combines them exactly as `runtime.MemProfile`
//! (1.19–1.22) and `runtime.memProfileInternal` (1.23+) do, without
//! changing anything: per bucket `active + future[C % 3]` (the cycle the
//! runtime may not have flushed yet); and if that is zero in every bucket
//! (no GC yet), `active` plus all three futures. Every bucket is kept, as
//! runtime/pprof keeps them (its `inuseZero` is true).
//!
//! Where the variables are: see [`super::mprof`] (found from the code, so
//! stripped binaries work alike). Nothing read is trusted: the list is
//! bounded ([`MAX_BUCKETS`]), each bucket must read as a memory bucket
//! with a stack within the release's limit, and the cycle is read before
//! and after the walk (a GC that moved to a new cycle meanwhile makes the
//! walk start again, [`MAX_ATTEMPTS`] times at most). The program is not
//! stopped: a bucket the GC is flushing at the very moment its record is
//! read (two stores, nanoseconds apart) can show one cycle twice or not
//! at all.
//!
//! Values: [`HeapRecord`] holds the sampled counts as the runtime keeps
//! them. Go's pprof output scales them by the sampling rate
//! (`scaleHeapSample` in `runtime/pprof/protomem.go`): [`HeapProfile::
//! scaled`] does the same, release by release. Memory profiling is off in
//! a program that does not link runtime/pprof ([`HeapDisabled`]): then
//! [`super::rates`] can turn the runtime's sampling on.

use std::{fs::File, io, rc::Rc};

use super::{
    binary::GoBinary,
    mprof::{self, ProfilingVariables},
    offsets,
    pclntab::GoFrame,
};
use crate::{model::Frame, procfs};

/// More buckets than this on the list is taken for garbage.
pub const MAX_BUCKETS: usize = 1 << 21;
/// A walk that raced a new heap-profile cycle is done again this many
/// times at most (then the last one is used).
pub const MAX_ATTEMPTS: usize = 4;
/// Bytes of the bucket header (`runtime.bucket`): next, allnext, typ,
/// hash, size, nstk.
const BUCKET_HEADER: u64 = 48;
/// `runtime.memProfile`, the bucket type of the memory profile.
const MEM_PROFILE: u64 = 1;
/// `runtime.mProfCycleWrap`: the cycle (the value `>> 1`) stays below it.
const CYCLE_WRAP: u32 = 3 * (2 << 24);
/// Bucket memory is read in windows of this size.
const WINDOW: u64 = 16 << 10;
/// Go's default `runtime.MemProfileRate` (512 KiB).
pub const DEFAULT_MEM_PROFILE_RATE: i64 = 512 * 1024;

/// Why the heap profile cannot be read from a process.
#[derive(Debug, thiserror::Error)]
pub enum HeapError {
    /// The program is not one this reader knows (the sentence says why).
    #[error("cannot read Go's heap profile: {0}")]
    Unsupported(String),
    /// The runtime's data were not found where they should be.
    #[error("cannot read Go's heap profile: the Go runtime's {what} was not found: {why}")]
    NotFound { what: &'static str, why: String },
    /// The process cannot be read (gone, or no permission).
    #[error("cannot read Go's heap profile of process {pid}: {source}")]
    Process { pid: u32, source: io::Error },
}

/// Why the runtime records no new allocations: its sampling rate is 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapDisabled {
    /// The program does not link runtime/pprof (nor calls
    /// `runtime.MemProfile`), so Go's linker set
    /// `runtime.disableMemoryProfiling` and the runtime set
    /// `MemProfileRate` to 0 at start.
    NotLinked,
    /// `runtime.MemProfileRate` is 0 although the program links the
    /// profile: it set the rate so itself (or `GODEBUG=memprofilerate=0`).
    RateZero,
}

impl HeapDisabled {
    /// The sentence for people, with `how` naming the way to set the rate
    /// in the running program (e.g. the profiler's flag).
    pub fn explain(self, how: &str) -> String {
        match self {
            HeapDisabled::NotLinked => format!(
                "Go's heap profile is off in this program: it does not link runtime/pprof, so \
                 Go's linker turned memory profiling off (runtime.MemProfileRate is 0) and the \
                 runtime records no allocations. To see its heap, turn the runtime's own \
                 sampling on in the running program ({how}; only allocations made from then on \
                 are seen), or build it with `import _ \"net/http/pprof\"` (or runtime/pprof)."
            ),
            HeapDisabled::RateZero => format!(
                "Go's heap profile is off in this program: runtime.MemProfileRate is 0 (the \
                 program set it so, or GODEBUG=memprofilerate=0), so the runtime records no new \
                 allocations. To see its heap, turn the runtime's sampling on in the running \
                 program ({how}; only allocations made from then on are seen)."
            ),
        }
    }
}

impl std::fmt::Display for HeapDisabled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.explain(&format!(
            "set runtime.MemProfileRate, e.g. to Go's default {DEFAULT_MEM_PROFILE_RATE}"
        )))
    }
}

/// One bucket of the heap profile: one stack and object size, its sampled
/// allocations and frees as the runtime counts them (not scaled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapRecord {
    /// Process addresses, innermost first, as the runtime recorded them:
    /// return addresses (symbolize each at `pc - 1`, as
    /// [`GoHeap::frames`] does). Up to Go 1.26 the stack starts at the
    /// caller of `mallocgc` (usually still a runtime function such as
    /// `runtime.newobject` or `runtime.makeslice`); from 1.26 it may start
    /// with more runtime frames. Go's profile hides the leading runtime
    /// frames ([`GoHeap::shown_stack`]).
    pub stack: Vec<u64>,
    /// `bucket.size`: the size of each object (its size class).
    pub object_size: u64,
    pub alloc_objects: u64,
    pub alloc_bytes: u64,
    pub free_objects: u64,
    pub free_bytes: u64,
}

impl HeapRecord {
    /// Objects allocated and not yet freed (as of the last GC).
    pub fn inuse_objects(&self) -> u64 {
        self.alloc_objects.saturating_sub(self.free_objects)
    }

    /// Bytes allocated and not yet freed (as of the last GC).
    pub fn inuse_bytes(&self) -> u64 {
        self.alloc_bytes.saturating_sub(self.free_bytes)
    }
}

/// A record's four values as Go's heap profile gives them, scaled by the
/// sampling rate, in pprof's order of sample types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapValues {
    /// `alloc_objects/count`
    pub alloc_objects: i64,
    /// `alloc_space/bytes`
    pub alloc_space: i64,
    /// `inuse_objects/count`
    pub inuse_objects: i64,
    /// `inuse_space/bytes`
    pub inuse_space: i64,
}

/// The heap profile read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapProfile {
    /// The Go release, `(1, 27)` for go1.27.3.
    pub version: (u32, u32),
    /// `runtime.MemProfileRate` when read: on average one sample per this
    /// many bytes allocated (1: every allocation; 0: none). Go's profile
    /// calls it the period (`space/bytes`) and scales by it.
    pub rate: i64,
    /// Every bucket, newest first.
    pub records: Vec<HeapRecord>,
    /// Whether (and why) no new allocations are being recorded.
    pub disabled: Option<HeapDisabled>,
    /// `runtime.mProfCycle >> 1`: the heap-profile cycle (one per GC).
    pub cycle: u32,
}

impl HeapProfile {
    /// A record's values as Go's heap profile of this release writes them
    /// (see [`scale`]).
    pub fn scaled(&self, record: &HeapRecord) -> HeapValues {
        scale(record, self.rate, self.version)
    }

    /// The sum of every record's scaled values.
    pub fn total(&self) -> HeapValues {
        self.records
            .iter()
            .fold(HeapValues::default(), |mut total, record| {
                let v = self.scaled(record);
                total.alloc_objects = total.alloc_objects.saturating_add(v.alloc_objects);
                total.alloc_space = total.alloc_space.saturating_add(v.alloc_space);
                total.inuse_objects = total.inuse_objects.saturating_add(v.inuse_objects);
                total.inuse_space = total.inuse_space.saturating_add(v.inuse_space);
                total
            })
    }
}

/// A record's values scaled as Go's `writeHeapProto` scales them in
/// `version` (`scaleHeapSample`, `runtime/pprof/protomem.go`): a sample of
/// objects of size S is taken with probability `1 - exp(-S/rate)`, so
/// counts and bytes are divided by it; with `rate <= 1` nothing is scaled
/// (every allocation was taken, or the rate is unknown).
///
/// - Go 1.19–1.26, from counts and bytes: `scaleHeapSample(count, bytes,
///   rate)` with the mean size `bytes / count`, for the allocated values
///   and for the in-use ones (allocated minus freed);
/// - Go 1.27, from counts and the object size: `scaleHeapSample(count,
///   size, rate)` gives `count * scale` and `count * size * scale`.
///
/// Each value is truncated to an integer, as Go does (`int64(float64)`).
pub fn scale(record: &HeapRecord, rate: i64, version: (u32, u32)) -> HeapValues {
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let alloc_objects = signed(record.alloc_objects);
    let inuse_objects = alloc_objects.wrapping_sub(signed(record.free_objects));
    if version >= (1, 27) {
        let size = signed(record.object_size);
        let (alloc_objects, alloc_space) = scale_by_size(alloc_objects, size, rate);
        let (inuse_objects, inuse_space) = scale_by_size(inuse_objects, size, rate);
        HeapValues {
            alloc_objects,
            alloc_space,
            inuse_objects,
            inuse_space,
        }
    } else {
        let alloc_bytes = signed(record.alloc_bytes);
        let inuse_bytes = alloc_bytes.wrapping_sub(signed(record.free_bytes));
        let (alloc_objects, alloc_space) = scale_by_bytes(alloc_objects, alloc_bytes, rate);
        let (inuse_objects, inuse_space) = scale_by_bytes(inuse_objects, inuse_bytes, rate);
        HeapValues {
            alloc_objects,
            alloc_space,
            inuse_objects,
            inuse_space,
        }
    }
}

/// `scaleHeapSample(count, size, rate)` of Go 1.19–1.26 (`size` the bytes
/// of all `count` objects).
pub fn scale_by_bytes(count: i64, size: i64, rate: i64) -> (i64, i64) {
    if count == 0 || size == 0 {
        return (0, 0);
    }
    if rate <= 1 {
        return (count, size);
    }
    let mean = size as f64 / count as f64;
    let scale = 1.0 / (1.0 - (-mean / rate as f64).exp());
    ((count as f64 * scale) as i64, (size as f64 * scale) as i64)
}

/// `scaleHeapSample(count, avgSize, rate)` of Go 1.27 (`size` the bytes of
/// one object).
pub fn scale_by_size(count: i64, size: i64, rate: i64) -> (i64, i64) {
    if count == 0 || size == 0 {
        return (0, 0);
    }
    let bytes = count.wrapping_mul(size);
    if rate <= 1 {
        return (count, bytes);
    }
    let scale = 1.0 / (1.0 - (-(size as f64) / rate as f64).exp());
    ((count as f64 * scale) as i64, (bytes as f64 * scale) as i64)
}

/// A record as profiles show it: the frames Go's heap profile shows (see
/// [`GoHeap::shown_stack`]), root first with inlined calls expanded, as the
/// other Go profiles hold them ([`GoFrame::into_frame`]), and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapSample {
    pub frames: Vec<Frame>,
    /// Scaled as Go's heap profile scales them.
    pub values: HeapValues,
    /// The size of each object (`bucket.size`): the `bytes` label Go's
    /// heap profile gives each sample.
    pub object_size: u64,
}

/// How the release lays out a bucket's `memRecord`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordLayout {
    /// Words per `memRecordCycle`: 4 (allocs, frees, alloc_bytes,
    /// free_bytes) up to 1.26, 2 (allocs, frees) from 1.27.
    cycle_words: usize,
    /// The most frames a bucket holds: `maxStack` 32 up to 1.22,
    /// `maxProfStackDepth` 1024 from 1.23.
    max_stack: u64,
}

impl RecordLayout {
    fn of(version: (u32, u32)) -> RecordLayout {
        RecordLayout {
            cycle_words: if version >= (1, 27) { 2 } else { 4 },
            max_stack: if version >= (1, 23) { 1024 } else { 32 },
        }
    }

    /// Bytes of a `memRecord`: `active` and `future[3]`.
    fn record_len(self) -> u64 {
        4 * 8 * self.cycle_words as u64
    }
}

/// One `memRecordCycle`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cycle {
    allocs: u64,
    frees: u64,
    alloc_bytes: u64,
    free_bytes: u64,
}

impl Cycle {
    fn add(self, other: Cycle) -> Cycle {
        Cycle {
            allocs: self.allocs.wrapping_add(other.allocs),
            frees: self.frees.wrapping_add(other.frees),
            alloc_bytes: self.alloc_bytes.wrapping_add(other.alloc_bytes),
            free_bytes: self.free_bytes.wrapping_add(other.free_bytes),
        }
    }
}

/// A bucket as read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawBucket {
    size: u64,
    stack: Vec<u64>,
    /// `active`, then `future[0..3]`.
    cycles: [Cycle; 4],
}

/// What is known of one Go process to read its heap profile: its binary
/// and load bias, its release, and where the runtime's profiling variables
/// are.
pub struct GoHeap {
    pid: u32,
    binary: Rc<GoBinary>,
    bias: u64,
    version: (u32, u32),
    layout: RecordLayout,
    /// Whether the program links the heap profile (else Go's linker
    /// disabled memory profiling).
    linked: bool,
    /// ELF addresses of `MemProfileRate`, `mbuckets`, `mProfCycle`.
    elf: [u64; 3],
    mem: File,
}

impl GoHeap {
    /// Prepares to read the heap profile of process `pid`, running
    /// `binary` loaded at `bias` (process address minus ELF address).
    /// Fails, with a sentence saying why, for a Go release other than
    /// 1.19–1.27, a binary whose runtime variables cannot be found (or do
    /// not read as expected), or a process whose memory cannot be read.
    pub fn new(pid: u32, binary: Rc<GoBinary>, bias: u64) -> Result<GoHeap, HeapError> {
        let version = release(&binary)?;
        let variables = ProfilingVariables::find(&binary);
        let not_found = |what: &'static str| move |why: String| HeapError::NotFound { what, why };
        let rate = variables
            .mem_profile_rate
            .map_err(not_found("sampling rate (runtime.MemProfileRate)"))?;
        let buckets = variables
            .mbuckets
            .map_err(not_found("bucket list (runtime.mbuckets)"))?;
        let cycle = variables
            .mprof_cycle
            .map_err(not_found("profile cycle (runtime.mProfCycle)"))?;
        let mem = mprof::open_memory(pid).map_err(|source| HeapError::Process { pid, source })?;
        let heap = GoHeap {
            pid,
            linked: mprof::memory_profiling_linked(&binary),
            binary,
            bias,
            version,
            layout: RecordLayout::of(version),
            elf: [rate, buckets, cycle],
            mem,
        };
        for (what, elf, len) in [
            ("runtime.MemProfileRate", rate, 8),
            ("runtime.mbuckets", buckets, 8),
            ("runtime.mProfCycle", cycle, 4),
        ] {
            let at = elf.wrapping_add(bias);
            if !mprof::in_writable_mapping(pid, at, len) {
                return Err(HeapError::NotFound {
                    what: "profiling variables",
                    why: format!(
                        "{what} found at {at:#x} (ELF {elf:#x}) is not in the program's data"
                    ),
                });
            }
        }
        let value =
            mprof::read_u32(&heap.mem, heap.cycle_address()).ok_or_else(|| HeapError::Process {
                pid,
                source: io::Error::other("runtime.mProfCycle cannot be read"),
            })?;
        if value >> 1 >= CYCLE_WRAP {
            return Err(HeapError::NotFound {
                what: "profile cycle (runtime.mProfCycle)",
                why: format!("the value read, {value:#x}, is not a cycle"),
            });
        }
        let head = mprof::read_u64(&heap.mem, heap.buckets_address()).ok_or_else(|| {
            HeapError::Process {
                pid,
                source: io::Error::other("runtime.mbuckets cannot be read"),
            }
        })?;
        if head != 0 {
            let mut window = Window::new(&heap.mem);
            if let Err(why) = heap.read_bucket(&mut window, head) {
                return Err(HeapError::NotFound {
                    what: "bucket list (runtime.mbuckets)",
                    why: format!("its first bucket does not read as one: {why}"),
                });
            }
        }
        Ok(heap)
    }

    /// [`GoHeap::new`] for the executable of process `pid`: reads the
    /// binary (`/proc/PID/exe`) and its load bias from the mappings.
    pub fn for_process(pid: u32) -> Result<GoHeap, HeapError> {
        let (binary, bias) = mprof::process_binary(pid).map_err(HeapError::Unsupported)?;
        GoHeap::new(pid, binary, bias)
    }

    /// The process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The binary.
    pub fn binary(&self) -> &Rc<GoBinary> {
        &self.binary
    }

    /// Process address minus ELF address.
    pub fn bias(&self) -> u64 {
        self.bias
    }

    /// The Go release, `(1, 27)` for go1.27.3.
    pub fn version(&self) -> (u32, u32) {
        self.version
    }

    /// Whether the program links the heap profile (runtime/pprof). When it
    /// does not, Go's linker turned memory profiling off: the rate starts
    /// at 0 and only a rate written from outside ([`super::rates`]) makes
    /// the runtime record allocations.
    pub fn profiling_linked(&self) -> bool {
        self.linked
    }

    /// The ELF addresses of `runtime.MemProfileRate`, `runtime.mbuckets`
    /// and `runtime.mProfCycle`, as found in the code.
    pub fn variables(&self) -> [(&'static str, u64); 3] {
        [
            ("runtime.MemProfileRate", self.elf[0]),
            ("runtime.mbuckets", self.elf[1]),
            ("runtime.mProfCycle", self.elf[2]),
        ]
    }

    fn rate_address(&self) -> u64 {
        self.elf[0].wrapping_add(self.bias)
    }

    fn buckets_address(&self) -> u64 {
        self.elf[1].wrapping_add(self.bias)
    }

    fn cycle_address(&self) -> u64 {
        self.elf[2].wrapping_add(self.bias)
    }

    /// Reads the heap profile now (see the module's description). Errors
    /// when the runtime's variables cannot be read (the process is gone) or
    /// the bucket list does not read as one.
    pub fn read(&self) -> io::Result<HeapProfile> {
        let gone = |what: &str| {
            io::Error::other(format!(
                "cannot read {what} of process {}: has it exited?",
                self.pid
            ))
        };
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let before = mprof::read_u32(&self.mem, self.cycle_address())
                .ok_or_else(|| gone("runtime.mProfCycle"))?;
            let rate = mprof::read_u64(&self.mem, self.rate_address())
                .ok_or_else(|| gone("runtime.MemProfileRate"))?
                .cast_signed();
            let head = mprof::read_u64(&self.mem, self.buckets_address())
                .ok_or_else(|| gone("runtime.mbuckets"))?;
            let buckets = self.walk(head)?;
            let after = mprof::read_u32(&self.mem, self.cycle_address())
                .ok_or_else(|| gone("runtime.mProfCycle"))?;
            let settled = before == after;
            last = Some((before, rate, buckets));
            if settled {
                break;
            }
        }
        let Some((value, rate, buckets)) = last else {
            return Err(gone("the heap profile"));
        };
        let cycle = value >> 1;
        let disabled = (rate == 0).then_some(if self.linked {
            HeapDisabled::RateZero
        } else {
            HeapDisabled::NotLinked
        });
        Ok(HeapProfile {
            version: self.version,
            rate,
            records: combine(buckets, cycle),
            disabled,
            cycle,
        })
    }

    /// Every bucket of the list from `head`.
    fn walk(&self, head: u64) -> io::Result<Vec<RawBucket>> {
        let mut window = Window::new(&self.mem);
        let mut buckets = Vec::new();
        let mut at = head;
        while at != 0 {
            if buckets.len() >= MAX_BUCKETS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "more than {MAX_BUCKETS} buckets on runtime.mbuckets of process {}: \
                         not a bucket list",
                        self.pid
                    ),
                ));
            }
            let (bucket, next) = self.read_bucket(&mut window, at).map_err(|why| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "bucket {} of runtime.mbuckets of process {} at {at:#x}: {why}",
                        buckets.len(),
                        self.pid
                    ),
                )
            })?;
            buckets.push(bucket);
            at = next;
        }
        Ok(buckets)
    }

    /// The bucket at `at` and the next one's address (`allnext`), or why
    /// it does not read as a memory-profile bucket.
    fn read_bucket(&self, window: &mut Window<'_>, at: u64) -> Result<(RawBucket, u64), String> {
        parse_bucket(at, self.layout, |address, len| {
            window.read(address, len).map(<[u8]>::to_vec)
        })
    }

    /// The part of a record's stack Go's heap profile shows: as
    /// `writeHeapProto` does, the leading frames whose function (the
    /// innermost at the return address, as `runtime.FuncForPC` names it)
    /// is the runtime's (`runtime.`, and from 1.24 `internal/runtime/`)
    /// are left out, up to the first other frame (an address in no Go
    /// function counts as other). A stack of runtime frames only is kept
    /// whole.
    pub fn shown_stack<'s>(&self, stack: &'s [u64]) -> &'s [u64] {
        let internal = self.version >= (1, 24);
        let first = stack.iter().position(|&pc| {
            !self.function_at(pc).is_some_and(|name| {
                name.starts_with("runtime.") || (internal && name.starts_with("internal/runtime/"))
            })
        });
        match first {
            Some(i) => &stack[i..],
            None => stack,
        }
    }

    /// The innermost function at process address `pc`, as
    /// `runtime.FuncForPC` names it.
    fn function_at(&self, pc: u64) -> Option<String> {
        pc.checked_sub(self.bias)
            .and_then(|pc| self.binary.table.frames(pc))
            .and_then(|frames| frames.last().map(|f| f.function.clone()))
    }

    /// Every record of `profile` as a [`HeapSample`], its frames in
    /// `module` (the executable's path), in the profile's order. An address
    /// in no Go function is an `[unknown]` frame.
    pub fn samples(&self, profile: &HeapProfile, module: Option<&Rc<str>>) -> Vec<HeapSample> {
        profile
            .records
            .iter()
            .map(|record| {
                let mut frames = Vec::new();
                let shown = self.shown_stack(&record.stack);
                // As runtime/pprof (`allFrames`): nothing from
                // runtime.goexit out.
                let end = shown
                    .iter()
                    .position(|&pc| self.function_at(pc).as_deref() == Some("runtime.goexit"))
                    .unwrap_or(shown.len());
                for &pc in shown[..end].iter().rev() {
                    let found = pc
                        .checked_sub(self.bias)
                        .and_then(|pc| pc.checked_sub(1))
                        .and_then(|at| self.binary.table.frames(at));
                    match found {
                        Some(found) if !found.is_empty() => frames
                            .extend(found.into_iter().map(|f| f.into_frame(pc, module.cloned()))),
                        _ => frames.push(Frame::unknown(pc, false)),
                    }
                }
                HeapSample {
                    frames,
                    values: profile.scaled(record),
                    object_size: record.object_size,
                }
            })
            .collect()
    }

    /// The frames of a record's stack, innermost first as Go prints them,
    /// inlined calls expanded: each return address looked up at `pc - 1`
    /// (its call). Addresses outside the binary's functions are left out.
    pub fn frames(&self, stack: &[u64]) -> Vec<GoFrame> {
        let mut frames = Vec::new();
        for &pc in stack {
            let Some(at) = pc.checked_sub(self.bias).and_then(|pc| pc.checked_sub(1)) else {
                continue;
            };
            if let Some(mut found) = self.binary.table.frames(at) {
                found.reverse();
                frames.extend(found);
            }
        }
        frames
    }
}

/// The Go release of `binary`, if this reader knows its runtime.
fn release(binary: &GoBinary) -> Result<(u32, u32), HeapError> {
    let Some(build) = binary.build.as_ref() else {
        return Err(HeapError::Unsupported(
            "the binary has no Go build info (.go.buildinfo), so its Go release, which decides \
             the layout of the runtime's profile records, is unknown"
                .to_owned(),
        ));
    };
    let Some(version) = build.go_release() else {
        return Err(HeapError::Unsupported(format!(
            "the Go version {:?} recorded in the binary does not parse",
            build.go_version
        )));
    };
    if !(version.0 == 1 && (offsets::OLDEST..=offsets::NEWEST).contains(&version.1)) {
        return Err(HeapError::Unsupported(format!(
            "the program was built with {}, and the runtime's heap profile is known for Go \
             1.{} to 1.{} only",
            build.go_version,
            offsets::OLDEST,
            offsets::NEWEST
        )));
    }
    Ok(version)
}

/// Parses the bucket at `at` with `read(address, len)`, which gives the
/// bytes of memory or `None`; returns it and the next one's address.
fn parse_bucket(
    at: u64,
    layout: RecordLayout,
    mut read: impl FnMut(u64, u64) -> Option<Vec<u8>>,
) -> Result<(RawBucket, u64), String> {
    if !at.is_multiple_of(8) {
        return Err(format!("{at:#x} is not aligned"));
    }
    let header = read(at, BUCKET_HEADER).ok_or("its header cannot be read")?;
    let [_next, allnext, typ, _hash, size, nstk] = words::<6>(&header);
    if typ != MEM_PROFILE {
        return Err(format!("its type is {typ}, not the memory profile's"));
    }
    if nstk > layout.max_stack {
        return Err(format!(
            "it has {nstk} frames, more than the runtime keeps ({})",
            layout.max_stack
        ));
    }
    if !allnext.is_multiple_of(8) {
        return Err(format!("its link {allnext:#x} is not aligned"));
    }
    let body_at = at.checked_add(BUCKET_HEADER).ok_or("it wraps around")?;
    let body = read(body_at, nstk * 8 + layout.record_len()).ok_or("its body cannot be read")?;
    let stack_len = usize::try_from(nstk * 8).map_err(|_| "too long")?;
    let (stack, record) = body.split_at_checked(stack_len).ok_or("short read")?;
    let stack: Vec<u64> = stack
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
        .collect();
    let record: Vec<u64> = record
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
        .collect();
    let mut cycles = [Cycle::default(); 4];
    for (cycle, words) in cycles
        .iter_mut()
        .zip(record.chunks_exact(layout.cycle_words))
    {
        *cycle = match *words {
            [allocs, frees, alloc_bytes, free_bytes] => Cycle {
                allocs,
                frees,
                alloc_bytes,
                free_bytes,
            },
            // Go 1.27: bytes are counts times the object size.
            [allocs, frees] => Cycle {
                allocs,
                frees,
                alloc_bytes: allocs.wrapping_mul(size),
                free_bytes: frees.wrapping_mul(size),
            },
            _ => return Err("a record of an unknown shape".to_owned()),
        };
    }
    Ok((
        RawBucket {
            size,
            stack,
            cycles,
        },
        allnext,
    ))
}

/// The records of `buckets` as `runtime.MemProfile` gives them in heap
/// profile cycle `cycle`: `active + future[cycle % 3]`, or, when that is
/// empty in every bucket, `active` and all futures.
fn combine(buckets: Vec<RawBucket>, cycle: u32) -> Vec<HeapRecord> {
    let index = (cycle % 3) as usize + 1;
    let published = |b: &RawBucket| b.cycles[0].add(b.cycles[index]);
    let clear = buckets.iter().all(|b| {
        let c = published(b);
        c.allocs == 0 && c.frees == 0
    });
    buckets
        .into_iter()
        .map(|b| {
            let counts = if clear {
                b.cycles[1..]
                    .iter()
                    .fold(b.cycles[0], |sum, future| sum.add(*future))
            } else {
                published(&b)
            };
            HeapRecord {
                stack: b.stack,
                object_size: b.size,
                alloc_objects: counts.allocs,
                alloc_bytes: counts.alloc_bytes,
                free_objects: counts.frees,
                free_bytes: counts.free_bytes,
            }
        })
        .collect()
}

/// The little-endian words of `bytes`.
fn words<const N: usize>(bytes: &[u8]) -> [u64; N] {
    let mut out = [0u64; N];
    for (word, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    }
    out
}

/// Memory of the process read in windows: buckets are allocated one after
/// another (`persistentalloc`) and the list runs from the newest down, so
/// a window reaching below the bucket read usually holds the next ones.
struct Window<'a> {
    mem: &'a File,
    /// `buf` holds the bytes at `base..base + buf.len()`.
    base: u64,
    buf: Vec<u8>,
}

impl<'a> Window<'a> {
    fn new(mem: &'a File) -> Window<'a> {
        Window {
            mem,
            base: 0,
            buf: Vec::new(),
        }
    }

    /// The `len` bytes at `address`, if they can be read.
    fn read(&mut self, address: u64, len: u64) -> Option<&[u8]> {
        let end = address.checked_add(len)?;
        let held = self.base.checked_add(self.buf.len() as u64)?;
        if !(self.base <= address && end <= held) {
            self.load(address, end)?;
        }
        let from = usize::try_from(address - self.base).ok()?;
        let to = usize::try_from(end - self.base).ok()?;
        self.buf.get(from..to)
    }

    /// Loads a window holding `[address, end)`: the page-aligned
    /// [`WINDOW`] bytes up to `end`'s page end, or just the range when
    /// that cannot be read (memory below not mapped).
    fn load(&mut self, address: u64, end: u64) -> Option<()> {
        let page_end = end.checked_next_multiple_of(4096)?;
        let start = page_end
            .saturating_sub(WINDOW.max(end - address))
            .min(address)
            & !4095;
        if self.fill(start, page_end) >= end {
            return Some(());
        }
        (self.fill(address, end) >= end).then_some(())
    }

    /// Reads `[start, end)` into the window; returns where the bytes read
    /// end.
    fn fill(&mut self, start: u64, end: u64) -> u64 {
        let len = usize::try_from(end - start).unwrap_or(0);
        self.buf.resize(len, 0);
        let read = procfs::read_memory(self.mem, start, &mut self.buf);
        self.buf.truncate(read);
        self.base = start;
        start + read as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bucket of `layout` in memory: header, stack, then `cycles`
    /// (active, future[0..3]), each 4 (or 2) words.
    fn bucket(
        layout: RecordLayout,
        allnext: u64,
        size: u64,
        stack: &[u64],
        cycles: &[[u64; 4]; 4],
    ) -> Vec<u64> {
        let mut words = vec![0, allnext, MEM_PROFILE, 0x1234, size, stack.len() as u64];
        words.extend_from_slice(stack);
        for cycle in cycles {
            words.extend_from_slice(&cycle[..layout.cycle_words]);
        }
        words
    }

    fn reader(memory: &[u64], base: u64) -> impl FnMut(u64, u64) -> Option<Vec<u8>> + '_ {
        move |address, len| {
            let from = usize::try_from(address.checked_sub(base)?).ok()?;
            let to = from.checked_add(usize::try_from(len).ok()?)?;
            let bytes: Vec<u8> = memory.iter().flat_map(|w| w.to_le_bytes()).collect();
            bytes.get(from..to).map(<[u8]>::to_vec)
        }
    }

    #[test]
    fn parses_buckets_of_both_record_shapes() {
        let cycles = [
            [5, 2, 500, 200],
            [1, 0, 100, 0],
            [2, 1, 200, 100],
            [0, 0, 0, 0],
        ];
        // Up to 1.26: bytes as recorded.
        let old = RecordLayout::of((1, 22));
        assert_eq!(old.record_len(), 128);
        let memory = bucket(old, 0x5000, 100, &[0x40_1000, 0x40_2000], &cycles);
        let (raw, next) = parse_bucket(0x1000, old, reader(&memory, 0x1000)).expect("parses");
        assert_eq!(next, 0x5000);
        assert_eq!(raw.stack, vec![0x40_1000, 0x40_2000]);
        assert_eq!(raw.cycles[0].alloc_bytes, 500);
        // 1.27: bytes are counts times the size.
        let new = RecordLayout::of((1, 27));
        assert_eq!(new.record_len(), 64);
        let memory = bucket(new, 0, 64, &[0x40_1000], &cycles);
        let (raw, next) = parse_bucket(0x1000, new, reader(&memory, 0x1000)).expect("parses");
        assert_eq!(next, 0);
        assert_eq!(raw.cycles[2].alloc_bytes, 2 * 64);
        assert_eq!(raw.cycles[2].free_bytes, 64);
    }

    #[test]
    fn combines_cycles_as_memprofile_does() {
        let raw = |active: Cycle, futures: [Cycle; 3]| RawBucket {
            size: 16,
            stack: vec![1],
            cycles: [active, futures[0], futures[1], futures[2]],
        };
        let c = |allocs, frees| Cycle {
            allocs,
            frees,
            alloc_bytes: allocs * 16,
            free_bytes: frees * 16,
        };
        // Cycle 4: index 1 is flushed into active; the others wait.
        let buckets = vec![raw(c(10, 4), [c(1, 0), c(2, 1), c(7, 0)])];
        let records = combine(buckets, 4);
        assert_eq!((records[0].alloc_objects, records[0].free_objects), (12, 5));
        assert_eq!(records[0].inuse_bytes(), 7 * 16);
        // Nothing published anywhere (no GC yet): everything is summed.
        let fresh = vec![
            raw(c(0, 0), [c(1, 0), c(0, 0), c(3, 0)]),
            raw(c(0, 0), [c(0, 0), c(0, 0), c(2, 0)]),
        ];
        let records = combine(fresh, 1);
        assert_eq!(records[0].alloc_objects, 4);
        assert_eq!(records[1].alloc_objects, 2);
        assert!(combine(Vec::new(), 0).is_empty());
    }

    /// Values computed by Go's own `scaleHeapSample` (the 1.22 and the
    /// 1.27 version, run with go1.27.3): 60 objects of 64 KiB allocated and
    /// 10 freed at rate 512 KiB, 3 of 16 bytes, 7 of 24 bytes at 4096.
    #[test]
    fn scales_as_go_does() {
        let record = HeapRecord {
            stack: Vec::new(),
            object_size: 65536,
            alloc_objects: 60,
            alloc_bytes: 60 * 65536,
            free_objects: 10,
            free_bytes: 10 * 65536,
        };
        for version in [(1, 22), (1, 27)] {
            let v = scale(&record, 524288, version);
            assert_eq!((v.alloc_objects, v.alloc_space), (510, 33464309));
            assert_eq!((v.inuse_objects, v.inuse_space), (425, 27886924));
        }
        assert_eq!(scale_by_bytes(3, 48, 524288), (98305, 1572888));
        assert_eq!(scale_by_size(3, 16, 524288), (98305, 1572888));
        assert_eq!(scale_by_bytes(7, 7 * 24, 4096), (1198, 28756));
        assert_eq!(scale_by_size(7, 24, 4096), (1198, 28756));
        // Rate 1 (every allocation) or 0 (unknown): not scaled.
        assert_eq!(scale(&record, 1, (1, 27)).inuse_space, 50 * 65536);
        assert_eq!(scale(&record, 0, (1, 19)).alloc_objects, 60);
        assert_eq!(scale_by_size(0, 48, 524288), (0, 0));
        assert_eq!(scale_by_bytes(3, 0, 524288), (0, 0));
        // Extremes: no panic.
        let _ = scale_by_bytes(i64::MAX, 1, 2);
        let _ = scale_by_size(i64::MAX, i64::MAX, i64::MAX);
        let _ = scale_by_size(-5, 8, 2);
    }

    #[test]
    fn garbage_buckets_are_refused() {
        let layout = RecordLayout::of((1, 19));
        let cycles = [[0; 4]; 4];
        // Not a memory bucket (a block-profile one).
        let mut memory = bucket(layout, 0, 8, &[1], &cycles);
        memory[2] = 2;
        assert!(parse_bucket(0x1000, layout, reader(&memory, 0x1000)).is_err());
        // Too many frames for the release.
        let memory = bucket(layout, 0, 8, &[1; 33], &cycles);
        assert!(parse_bucket(0x1000, layout, reader(&memory, 0x1000)).is_err());
        assert!(parse_bucket(0x1000, RecordLayout::of((1, 23)), reader(&memory, 0x1000)).is_ok());
        // Misaligned, unreadable, cut short.
        let memory = bucket(layout, 0, 8, &[1], &cycles);
        assert!(parse_bucket(0x1004, layout, reader(&memory, 0x1000)).is_err());
        assert!(parse_bucket(0x9000, layout, reader(&memory, 0x1000)).is_err());
        assert!(parse_bucket(0x1000, layout, reader(&memory[..10], 0x1000)).is_err());
        assert!(parse_bucket(u64::MAX - 7, layout, |_, _| Some(vec![0; 48])).is_err());
        // Random words: refused or parsed, never a panic.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let noise: Vec<u64> = (0..64)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Mostly small numbers, as real headers hold.
                    if i % 3 == 0 { state % 40 } else { state }
                })
                .collect();
            let _ = parse_bucket(0x1000, layout, reader(&noise, 0x1000));
        }
    }

    /// A GoHeap reading this process's memory as a Go program of
    /// `version`, its variables at the given addresses.
    fn fake_heap(version: (u32, u32), variables: [u64; 3]) -> Option<GoHeap> {
        let path = "/usr/bin/prometheus";
        let Ok(Some(binary)) = GoBinary::read(path) else {
            eprintln!("skipped: no Go binary at {path}");
            return None;
        };
        Some(GoHeap {
            pid: std::process::id(),
            binary: Rc::new(binary),
            bias: 0,
            version,
            layout: RecordLayout::of(version),
            linked: true,
            elf: variables,
            mem: File::open("/proc/self/mem").expect("own memory"),
        })
    }

    /// Buckets made by hand in this process's memory: a sound list is read
    /// whole; lists that loop, point to nowhere or hold garbage are errors,
    /// never a panic or a hang.
    #[test]
    fn bucket_lists_in_own_memory() {
        let layout = RecordLayout::of((1, 25));
        let cycles = [[4, 1, 64, 16], [0; 4], [1, 0, 16, 0], [0; 4]];
        let second = bucket(layout, 0, 16, &[0x40_2000], &cycles);
        let first = bucket(
            layout,
            second.as_ptr() as u64,
            16,
            &[0x40_1000, 0x40_1100],
            &cycles,
        );
        // MemProfileRate, mbuckets, mProfCycle (its low half; cycle 0).
        let mut variables = Box::new([524288u64, first.as_ptr() as u64, 0]);
        let at = |i: usize, v: &[u64; 3]| std::ptr::from_ref(&v[i]) as u64;
        let Some(heap) = fake_heap((1, 25), [0, 1, 2].map(|i| at(i, &variables))) else {
            return;
        };
        let mut set_head = |head: u64| {
            // SAFETY: a valid, aligned pointer to the boxed array; volatile
            // so the store is not elided (it is read through
            // /proc/self/mem).
            unsafe { std::ptr::write_volatile(&raw mut variables[1], head) };
        };
        let profile = heap.read().expect("reads");
        assert_eq!(profile.rate, 524288);
        assert_eq!(profile.disabled, None);
        assert_eq!(profile.records.len(), 2);
        assert_eq!(profile.records[0].stack, vec![0x40_1000, 0x40_1100]);
        // Cycle 0: future[0] (all zero here) is added to active.
        assert_eq!(profile.records[1].alloc_objects, 4);
        assert_eq!(profile.records[1].inuse_bytes(), 48);
        // A list that loops on itself: bounded, an error.
        let mut looping = bucket(layout, 0, 16, &[1], &cycles);
        looping[1] = looping.as_ptr() as u64;
        set_head(looping.as_ptr() as u64);
        let started = std::time::Instant::now();
        assert!(heap.read().is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        // Pointers to nowhere, misaligned, to garbage.
        for bad in [8u64, 0x10, looping.as_ptr() as u64 + 4, u64::MAX - 7] {
            set_head(bad);
            assert!(heap.read().is_err(), "{bad:#x}");
        }
        let garbage: Vec<u64> = (0..512u64).map(|i| i.wrapping_mul(0x9e37_79b9)).collect();
        set_head(garbage.as_ptr() as u64);
        assert!(heap.read().is_err());
        set_head(0);
        let empty = heap.read().expect("an empty list");
        assert!(empty.records.is_empty());
        drop((first, second, looping, garbage));
        // Rate 0 in a program that links the profile.
        let zero = Box::new([0u64; 3]);
        let Some(heap) = fake_heap((1, 19), [0, 1, 2].map(|i| at(i, &zero))) else {
            return;
        };
        assert_eq!(
            heap.read().expect("reads").disabled,
            Some(HeapDisabled::RateZero)
        );
        let sentence = HeapDisabled::NotLinked.to_string();
        assert!(sentence.contains("runtime/pprof"), "{sentence}");
        assert!(sentence.contains("MemProfileRate"), "{sentence}");
    }

    #[test]
    fn windows_read_ranges_and_refuse_unmapped_memory() {
        let mem = File::open("/proc/self/mem").expect("own memory");
        let data: Vec<u64> = (0..8192u64).collect();
        let base = data.as_ptr() as u64;
        let mut window = Window::new(&mem);
        let bytes = window.read(base + 800, 16).expect("reads").to_vec();
        assert_eq!(words::<2>(&bytes), [100, 101]);
        // Below, in the same window: no new read needed, same answer.
        let bytes = window.read(base + 8, 8).expect("reads").to_vec();
        assert_eq!(words::<1>(&bytes), [1]);
        // Longer than a window.
        let long = window.read(base, 8192 * 8).expect("reads");
        assert_eq!(long.len(), 8192 * 8);
        assert!(window.read(0, 8).is_none());
        assert!(window.read(u64::MAX - 4, 8).is_none());
        assert!(window.read(4096, 8).is_none());
    }
}
