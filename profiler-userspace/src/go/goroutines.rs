//! Every goroutine of a running Go program, read from outside through
//! `/proc/PID/mem` without stopping it (no ptrace, no agent), for Go 1.19
//! to 1.27, stripped or not: what each is doing (Go's status and wait
//! reason), since when, its stack, and where it was created.
//!
//! How each piece is found:
//!
//! - **The goroutines**: the runtime keeps every `g` it ever made in the
//!   slice `runtime.allgs` (a `g` is never freed: dead ones wait on free
//!   lists and are reused, so goroutines are told apart by goid, never by
//!   address). In a stripped binary its address comes from the code of
//!   `runtime.forEachG` (named by `.gopclntab`, which stripping keeps):
//!   its two RIP-relative loads 8 bytes apart are `allgs.array` and
//!   `allgs.len` (see [`super::x86`]). The slice header found is checked in
//!   memory (length within capacity, both sane) before it is used.
//! - **The fields of a `g`**: a per-release table ([`super::offsets`],
//!   measured from DWARF); an unknown release is refused rather than read
//!   as garbage.
//! - **Wait reasons**: their numbering changes between releases, so the
//!   strings are read from the program itself: `runtime.waitReason.String`
//!   bounds the reason with `CMP AL, len` and takes the address of
//!   `runtime.waitReasonStrings` with a RIP-relative LEA; the table is read
//!   from memory once and checked (entry 0 empty, printable strings,
//!   "chan receive" among them).
//! - **Stacks**, by frame pointers (Go keeps them on amd64), bounded by the
//!   goroutine's `stack.lo`/`stack.hi`, by strictly rising frame pointers
//!   and by [`MAX_FRAMES`]:
//!   - a goroutine that is not running (waiting, runnable, preempted,
//!     leaked) from `sched.pc` (where it resumes: the return address of its
//!     call into the scheduler, in `runtime.gopark` for a parked one) and
//!     `sched.bp`, the frame pointer of the function holding `sched.pc`
//!     (`runtime.mcall` saves it so in every release: 1.19 as it finds it,
//!     1.21+ from its own frame record), so the walk starts in the
//!     goroutine's own frames, whatever `runtime.mcall` does to BP after
//!     (1.25+ clears it). [`GoBinary::complete_stack`] then puts back a
//!     frame a function without a frame record would hide, and cuts the
//!     stack at `runtime.goexit`;
//!   - a goroutine in a system call from `syscallpc`/`syscallsp` and, from
//!     1.23, `syscallbp`. Up to 1.22 no frame pointer is saved on entering
//!     a system call: the frame record is found above `syscallsp` as the
//!     first (saved bp, return address) pair whose return address follows
//!     a direct call to the function holding `syscallpc` (`syscall.Syscall`
//!     and the like; when that function has no frame of its own, as an
//!     assembly caller of `entersyscall` may not, its return address is
//!     the word at `syscallsp`, checked the same way);
//!   - a running goroutine: its registers are in its thread and cannot be
//!     read without stopping it, and its `sched` is stale, so its stack is
//!     empty (Go's own dump says "stack unavailable" too);
//!   - `copystack` and `idle` goroutines (transient) have empty stacks.
//! - **Consistency**: the program runs on while it is read. Each `g` is
//!   read, its stack walked, and the `g` read again; if a field used
//!   changed, all is done again, [`MAX_ATTEMPTS`] times at most, then the
//!   goroutine is counted in [`GoroutineSnapshot::skipped`]. So is a `g`
//!   whose data make no sense (unknown status, goid 0, stack bounds
//!   reversed). Nothing read is trusted: every read is bounded and checked.
//!
//! Checked against Go's own goroutine dump (`debug=2`) and goroutine
//! profile on Go 1.19, 1.21 to 1.27, normal, stripped and PIE builds
//! (`tests/tests/go_goroutines.rs`). A snapshot costs about three reads of
//! `/proc/PID/mem` per goroutine: 10,000 goroutines in 35 to 55 ms.

use std::{collections::HashMap, fs::File, io, rc::Rc};

use super::{
    binary::{GoBinary, ProcessBinaryError, process_binary},
    offsets::{self, GLayout, status},
    pclntab::GoFrame,
    x86,
};
use crate::procfs;

/// A stack has at most this many frames (Go's dump prints 100).
pub const MAX_FRAMES: usize = 256;
/// A `g` whose data keep changing is read this many times at most.
pub const MAX_ATTEMPTS: usize = 4;
/// More goroutines than this in `allgs` is taken for garbage.
const MAX_GOROUTINES: u64 = 1 << 24;
/// Goroutine stacks are at most 1 GB (Go's default `maxstacksize` on
/// 64-bit).
const MAX_STACK: u64 = 1 << 30;
/// Stack memory is read in windows of this size.
const STACK_WINDOW: u64 = 16 << 10;
/// How far above `syscallsp` a frame record is looked for (Go 1.19–1.22).
const SYSCALL_SCAN: u64 = 1024;
/// A wait reason is at most this long.
const MAX_REASON_LEN: u64 = 64;

/// Why goroutines cannot be read from a process.
#[derive(Debug, thiserror::Error)]
pub enum GoroutineError {
    /// The program is not one this reader knows (the sentence says why).
    #[error("cannot read goroutines: {0}")]
    Unsupported(String),
    /// The runtime's data were not found where they should be.
    #[error("cannot read goroutines: the Go runtime's {what} was not found: {why}")]
    NotFound { what: &'static str, why: String },
    /// The process cannot be read (gone, or no permission).
    #[error("cannot read goroutines of process {pid}: {source}")]
    Process { pid: u32, source: io::Error },
}

/// A goroutine's status (`runtime.g.atomicstatus`, without the GC's scan
/// bit), named as Go names it in its dumps (`gStatusStrings`). Dead
/// goroutines are not reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoStatus {
    Idle,
    Runnable,
    Running,
    Syscall,
    Waiting,
    Copystack,
    Preempted,
    /// Go 1.26+: found leaked by the GC's goroutine leak detection.
    Leaked,
}

impl GoStatus {
    /// Go's name for it.
    pub fn name(self) -> &'static str {
        match self {
            GoStatus::Idle => "idle",
            GoStatus::Runnable => "runnable",
            GoStatus::Running => "running",
            GoStatus::Syscall => "syscall",
            GoStatus::Waiting => "waiting",
            GoStatus::Copystack => "copystack",
            GoStatus::Preempted => "preempted",
            GoStatus::Leaked => "leaked",
        }
    }

    /// The status of a raw value (scan bit removed); `None` for dead and
    /// for values that do not exist in `version`.
    fn from_raw(value: u32, version: (u32, u32)) -> Option<Option<GoStatus>> {
        let since_126 = version >= (1, 26);
        Some(Some(match value {
            status::IDLE => GoStatus::Idle,
            status::RUNNABLE => GoStatus::Runnable,
            status::RUNNING => GoStatus::Running,
            status::SYSCALL => GoStatus::Syscall,
            status::WAITING => GoStatus::Waiting,
            status::COPYSTACK => GoStatus::Copystack,
            status::PREEMPTED => GoStatus::Preempted,
            status::LEAKED if since_126 => GoStatus::Leaked,
            status::DEAD => return Some(None),
            status::DEAD_EXTRA if since_126 => return Some(None),
            _ => return None,
        }))
    }
}

impl std::fmt::Display for GoStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One goroutine, as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goroutine {
    pub goid: u64,
    pub status: GoStatus,
    /// The runtime's own words for why it waits ("chan receive", "select",
    /// "sync.Mutex.Lock", "sleep", "IO wait", ...), for waiting (and, 1.26+,
    /// leaked) goroutines whose reason is set: the string Go's dump shows
    /// in brackets. If the program's table of reasons was not found (see
    /// [`GoRuntime::wait_reasons`]), "wait reason N".
    pub wait_reason: Option<String>,
    /// `g.waitsince` (Go's nanotime, comparable with
    /// [`GoroutineSnapshot::nanotime`]), for goroutines waiting or in a
    /// system call when the runtime recorded it: the GC records it the
    /// first time it finds the goroutine blocked, so a goroutine blocked
    /// since before the last GC has it, a recent one may not. Go's dump
    /// prints ", N minutes" from it.
    pub wait_since: Option<i64>,
    /// Process addresses, leaf first, up to `runtime.goexit`. The first is
    /// where the goroutine resumes (`sched.pc`; `syscallpc` in a system
    /// call): for a parked goroutine the return address of its call into
    /// the scheduler, for one that has not run yet the entry of its
    /// function. The others are return addresses. Symbolize each at `pc -
    /// 1` except a function's entry, as Go does ([`GoRuntime::frames`]).
    /// Empty for a running goroutine (see the module's description).
    pub stack: Vec<u64>,
    /// `g.gopc`: the process address just after the `go` statement that
    /// created it (a return address; [`GoRuntime::creation_site`] names
    /// it). `None` for the main goroutine (goid 1) and when zero.
    pub created_by: Option<u64>,
    /// The goid of the goroutine that created it (Go 1.21+; `None` before,
    /// and when zero: created by the runtime from no goroutine).
    pub parent_goid: Option<u64>,
    /// `g.startpc`: the entry of its function (process address).
    pub start_pc: u64,
    /// Whether Go counts it as a runtime goroutine (`isSystemGoroutine`):
    /// its function is in package runtime, other than `runtime.main` and
    /// `runtime.corostart`. `runtime.NumGoroutine()` counts the others.
    /// The finalizer and cleanup goroutines count as runtime ones here
    /// even while they run the program's finalizers (Go counts them
    /// so in `NumGoroutine`, not in its dumps then).
    pub system: bool,
}

/// One pass over `allgs`.
#[derive(Debug, Clone, Default)]
pub struct GoroutineSnapshot {
    /// Every goroutine found not dead, in `allgs` order.
    pub goroutines: Vec<Goroutine>,
    /// The `g`s left out: their data kept changing under the reader
    /// ([`MAX_ATTEMPTS`] reads) or made no sense.
    pub skipped: usize,
    /// CLOCK_MONOTONIC in nanoseconds when the pass ended: Go's nanotime,
    /// comparable with [`Goroutine::wait_since`].
    pub nanotime: i64,
}

/// What is known of one Go process to read its goroutines: its binary and
/// load bias, its Go release, the layout of `runtime.g`, where `allgs`
/// is, and its wait reasons.
pub struct GoRuntime {
    pid: u32,
    binary: Rc<GoBinary>,
    bias: u64,
    version: (u32, u32),
    layout: &'static GLayout,
    /// Process address of `runtime.allgs`.
    allgs: u64,
    wait_reasons: Result<Vec<String>, String>,
    mem: File,
}

/// The fields of a `g` this reader uses, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawG {
    stack_lo: u64,
    stack_hi: u64,
    sched_sp: u64,
    sched_pc: u64,
    sched_bp: u64,
    syscallsp: u64,
    syscallpc: u64,
    syscallbp: u64,
    status: u32,
    goid: u64,
    waitsince: i64,
    waitreason: u8,
    parent_goid: u64,
    gopc: u64,
    startpc: u64,
}

impl RawG {
    fn parse(data: &[u8], layout: &GLayout) -> Option<RawG> {
        let word = |at: u64| -> Option<u64> {
            let at = usize::try_from(at).ok()?;
            Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
        };
        let status_at = usize::try_from(layout.status).ok()?;
        let reason_at = usize::try_from(layout.waitreason).ok()?;
        Some(RawG {
            stack_lo: word(layout.stack_lo)?,
            stack_hi: word(layout.stack_hi)?,
            sched_sp: word(layout.sched_sp)?,
            sched_pc: word(layout.sched_pc)?,
            sched_bp: word(layout.sched_bp)?,
            syscallsp: word(layout.syscallsp)?,
            syscallpc: word(layout.syscallpc)?,
            syscallbp: layout.syscallbp.map_or(Some(0), word)?,
            status: u32::from_le_bytes(data.get(status_at..status_at + 4)?.try_into().ok()?),
            goid: word(layout.goid)?,
            waitsince: word(layout.waitsince)?.cast_signed(),
            waitreason: *data.get(reason_at)?,
            parent_goid: layout.parent_goid.map_or(Some(0), word)?,
            gopc: word(layout.gopc)?,
            startpc: word(layout.startpc)?,
        })
    }

    /// Whether the data can be a live goroutine's.
    fn plausible(&self) -> bool {
        self.goid != 0
            && self.stack_lo < self.stack_hi
            && self.stack_hi - self.stack_lo <= MAX_STACK
            && self.stack_lo.is_multiple_of(8)
            && self.stack_hi.is_multiple_of(8)
    }
}

/// What one read of a `g` gave.
enum Read {
    Live(Goroutine),
    Dead,
    Skipped,
}

impl GoRuntime {
    /// Prepares to read the goroutines of process `pid`, running `binary`
    /// loaded at `bias` (process address minus ELF address). Fails, with a
    /// sentence saying why, for a Go release other than 1.19–1.27, a
    /// binary whose `runtime.allgs` cannot be found, or a process whose
    /// memory cannot be read.
    pub fn new(pid: u32, binary: Rc<GoBinary>, bias: u64) -> Result<GoRuntime, GoroutineError> {
        let Some(build) = binary.build.as_ref() else {
            return Err(GoroutineError::Unsupported(
                "the binary has no Go build info (.go.buildinfo), so its Go release, \
                 which decides the layout of the runtime's data, is unknown"
                    .to_owned(),
            ));
        };
        let Some(version) = build.go_release() else {
            return Err(GoroutineError::Unsupported(format!(
                "the Go version {:?} recorded in the binary does not parse",
                build.go_version
            )));
        };
        let Some(layout) = offsets::layout(version) else {
            return Err(GoroutineError::Unsupported(format!(
                "the program was built with {}, and the runtime's goroutine layout is known \
                 for Go 1.{} to 1.{} only",
                build.go_version,
                offsets::OLDEST,
                offsets::NEWEST
            )));
        };
        let mem = File::open(format!("/proc/{pid}/mem"))
            .map_err(|source| GoroutineError::Process { pid, source })?;
        let allgs_elf = find_allgs(&binary)?;
        let allgs = allgs_elf.wrapping_add(bias);
        let runtime = GoRuntime {
            pid,
            binary,
            bias,
            version,
            layout,
            allgs,
            wait_reasons: Err(String::new()),
            mem,
        };
        // The slice header must read as one.
        let mut header = [0u8; 24];
        if procfs::read_memory(&runtime.mem, allgs, &mut header) < header.len() {
            let source = io::Error::other(format!(
                "runtime.allgs at {allgs:#x} (ELF {allgs_elf:#x}) cannot be read"
            ));
            return Err(GoroutineError::Process { pid, source });
        }
        let [array, len, cap] = words(&header);
        if array == 0 || !array.is_multiple_of(8) || len == 0 || len > cap || cap > MAX_GOROUTINES {
            return Err(GoroutineError::NotFound {
                what: "goroutine list (runtime.allgs)",
                why: format!(
                    "the slice read at {allgs:#x} from runtime.forEachG's code is not one \
                     (array {array:#x}, len {len}, cap {cap})"
                ),
            });
        }
        let wait_reasons = runtime.read_wait_reasons();
        Ok(GoRuntime {
            wait_reasons,
            ..runtime
        })
    }

    /// [`GoRuntime::new`] for the executable of process `pid`: reads the
    /// binary (`/proc/PID/exe`) and its load bias from the mappings.
    pub fn for_process(pid: u32) -> Result<GoRuntime, GoroutineError> {
        let (binary, bias) = process_binary(pid).map_err(|err| match err {
            ProcessBinaryError::Process(source) => GoroutineError::Process { pid, source },
            ProcessBinaryError::Unsupported(why) => GoroutineError::Unsupported(why),
        })?;
        GoRuntime::new(pid, binary, bias)
    }

    /// The Go release, `(1, 27)` for go1.27.3.
    pub fn version(&self) -> (u32, u32) {
        self.version
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

    /// The process address of `runtime.allgs`.
    pub fn allgs_address(&self) -> u64 {
        self.allgs
    }

    /// The program's wait reasons by number (`runtime.waitReasonStrings`),
    /// or why they were not found.
    pub fn wait_reasons(&self) -> Result<&[String], &str> {
        match &self.wait_reasons {
            Ok(reasons) => Ok(reasons),
            Err(why) => Err(why),
        }
    }

    /// One pass over `allgs`. Errors only when `allgs` itself cannot be
    /// read (the process is gone); a `g` that cannot be read consistently
    /// is counted in `skipped`.
    pub fn snapshot(&self) -> io::Result<GoroutineSnapshot> {
        let pointers = self.read_allgs()?;
        let mut snapshot = GoroutineSnapshot::default();
        let mut system: HashMap<u64, bool> = HashMap::new();
        let mut stack = StackMemory::new(&self.mem);
        for g in pointers {
            if g == 0 || !g.is_multiple_of(8) {
                snapshot.skipped += 1;
                continue;
            }
            match self.read_goroutine(g, &mut stack) {
                Read::Live(mut goroutine) => {
                    goroutine.system = *system
                        .entry(goroutine.start_pc)
                        .or_insert_with(|| self.is_system(goroutine.start_pc));
                    snapshot.goroutines.push(goroutine);
                }
                Read::Dead => {}
                Read::Skipped => snapshot.skipped += 1,
            }
        }
        snapshot.nanotime = monotonic_now();
        Ok(snapshot)
    }

    /// The frames of a stack of [`Goroutine::stack`], innermost first as
    /// Go's dump prints them, inlined calls expanded, each return address
    /// looked up at its call instruction (a function's entry, where a
    /// goroutine that has not run yet stands, at itself). Unlike Go's
    /// dump, every frame is kept: the runtime's own, the wrappers `go
    /// f(x)` compiles to (`.gowrapN`; `.funcN` up to 1.21) and those of
    /// promoted methods (file "<autogenerated>"). Addresses outside the
    /// binary's functions are left out.
    pub fn frames(&self, stack: &[u64]) -> Vec<GoFrame> {
        let mut frames = Vec::new();
        for &ip in stack {
            let Some(pc) = ip.checked_sub(self.bias) else {
                continue;
            };
            let Some(function) = self.binary.table.function(pc) else {
                continue;
            };
            let at = if pc == function.entry { pc } else { pc - 1 };
            if let Some(mut found) = self.binary.table.frames(at) {
                found.reverse();
                frames.extend(found);
            }
        }
        frames
    }

    /// Where a goroutine was created, as Go's dump prints it after
    /// "created by": the function holding the `go` statement (the real
    /// function, not one inlined into it) and the file:line of the
    /// statement.
    pub fn creation_site(&self, created_by: u64) -> Option<GoFrame> {
        let pc = created_by.checked_sub(self.bias)?;
        let function = self.binary.table.function(pc)?;
        let at = if pc > function.entry { pc - 1 } else { pc };
        let frames = self.binary.table.frames(at)?;
        let innermost = frames.last()?;
        Some(GoFrame {
            function: function.name,
            file: innermost.file.clone(),
            line: innermost.line,
            inlined: false,
        })
    }

    /// Reads the pointers of `allgs`, the header read again after them:
    /// the runtime may grow the slice meanwhile (a new array, its header
    /// written one word at a time), then all is read again, a few times at
    /// most. If it never settles, the last pointers read are used (their
    /// `g`s are checked one by one anyway); if the header never reads as a
    /// slice, an error.
    fn read_allgs(&self) -> io::Result<Vec<u64>> {
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let Some((array, len)) = self.allgs_header()? else {
                continue;
            };
            let want = usize::try_from(len * 8).unwrap_or(0);
            let mut bytes = vec![0u8; want];
            let read = procfs::read_memory(&self.mem, array, &mut bytes);
            let pointers: Vec<u64> = bytes[..read - read % 8]
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default()))
                .collect();
            if read == want && self.allgs_header()? == Some((array, len)) {
                return Ok(pointers);
            }
            last = Some(pointers);
        }
        last.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "runtime.allgs at {:#x} in process {} does not read as a slice",
                    self.allgs, self.pid
                ),
            )
        })
    }

    /// `allgs.array` and `allgs.len` now; `None` if they do not read as a
    /// slice's; an error if they cannot be read (the process is gone).
    fn allgs_header(&self) -> io::Result<Option<(u64, u64)>> {
        let mut header = [0u8; 24];
        if procfs::read_memory(&self.mem, self.allgs, &mut header) < header.len() {
            return Err(io::Error::other(format!(
                "cannot read runtime.allgs at {:#x} in process {}: has it exited?",
                self.allgs, self.pid
            )));
        }
        let [array, len, cap] = words(&header);
        let slice = len <= cap && cap <= MAX_GOROUTINES && (len == 0 || array != 0);
        Ok(slice.then_some((array, len)))
    }

    /// Reads the goroutine whose `g` is at `address`.
    fn read_goroutine(&self, address: u64, stack: &mut StackMemory<'_>) -> Read {
        let len = usize::try_from(self.layout.read_len()).unwrap_or(0);
        let mut data = vec![0u8; len];
        for _ in 0..MAX_ATTEMPTS {
            if procfs::read_memory(&self.mem, address, &mut data) < len {
                return Read::Skipped;
            }
            let Some(raw) = RawG::parse(&data, self.layout) else {
                return Read::Skipped;
            };
            let status = match GoStatus::from_raw(raw.status & !status::SCAN, self.version) {
                Some(Some(status)) => status,
                Some(None) => return Read::Dead,
                None => continue,
            };
            if !raw.plausible() {
                continue;
            }
            let frames = self.stack_of(&raw, status, stack);
            if procfs::read_memory(&self.mem, address, &mut data) < len {
                return Read::Skipped;
            }
            if RawG::parse(&data, self.layout) != Some(raw) {
                continue;
            }
            return Read::Live(self.goroutine(&raw, status, frames));
        }
        Read::Skipped
    }

    fn goroutine(&self, raw: &RawG, status: GoStatus, stack: Vec<u64>) -> Goroutine {
        let waiting = matches!(status, GoStatus::Waiting | GoStatus::Leaked);
        let wait_reason = (waiting && raw.waitreason != 0).then(|| match &self.wait_reasons {
            Ok(reasons) => reasons
                .get(usize::from(raw.waitreason))
                .cloned()
                .unwrap_or_else(|| "unknown wait reason".to_owned()),
            Err(_) => format!("wait reason {}", raw.waitreason),
        });
        let blocked = matches!(status, GoStatus::Waiting | GoStatus::Syscall);
        Goroutine {
            goid: raw.goid,
            status,
            wait_reason,
            wait_since: (blocked && raw.waitsince != 0).then_some(raw.waitsince),
            stack,
            created_by: (raw.gopc != 0 && raw.goid != 1).then_some(raw.gopc),
            parent_goid: (self.layout.parent_goid.is_some() && raw.parent_goid != 0)
                .then_some(raw.parent_goid),
            start_pc: raw.startpc,
            system: false,
        }
    }

    /// The stack of a goroutine (see the module's description).
    fn stack_of(&self, raw: &RawG, status: GoStatus, stack: &mut StackMemory<'_>) -> Vec<u64> {
        match status {
            GoStatus::Running | GoStatus::Copystack | GoStatus::Idle => Vec::new(),
            GoStatus::Syscall => {
                if raw.syscallsp < raw.stack_lo || raw.syscallsp >= raw.stack_hi {
                    return Vec::new();
                }
                stack.reset(raw.stack_lo, raw.stack_hi, raw.syscallsp);
                if self.layout.syscallbp.is_some() {
                    self.walk(stack, raw.syscallpc, raw.syscallsp, raw.syscallbp)
                } else {
                    self.walk_without_bp(stack, raw.syscallpc, raw.syscallsp)
                }
            }
            _ => {
                if raw.sched_pc == 0 || raw.sched_sp < raw.stack_lo || raw.sched_sp > raw.stack_hi {
                    return Vec::new();
                }
                stack.reset(raw.stack_lo, raw.stack_hi, raw.sched_sp);
                self.walk(stack, raw.sched_pc, raw.sched_sp, raw.sched_bp)
            }
        }
    }

    /// A frame-pointer walk from `pc` with frame pointer `bp` on a stack
    /// whose lowest live address is `sp`, completed by the call
    /// instructions and cut at `runtime.goexit`.
    fn walk(&self, stack: &mut StackMemory<'_>, pc: u64, sp: u64, bp: u64) -> Vec<u64> {
        let mut ips = vec![pc];
        self.follow_frame_pointers(stack, &mut ips, bp, sp);
        self.binary.complete_stack(&mut ips, self.bias);
        ips
    }

    /// Appends the return addresses of the frame records from `bp` on:
    /// each record must be 8-aligned, at or above `floor` (then above the
    /// previous one) and inside the stack, and its return address in a Go
    /// function.
    fn follow_frame_pointers(
        &self,
        stack: &mut StackMemory<'_>,
        ips: &mut Vec<u64>,
        mut bp: u64,
        mut floor: u64,
    ) {
        while ips.len() < MAX_FRAMES {
            if bp < floor || !bp.is_multiple_of(8) {
                break;
            }
            let (Some(next), Some(ret)) = (stack.word(bp), stack.word(bp.wrapping_add(8))) else {
                break;
            };
            if !self.in_go_function(ret) {
                break;
            }
            ips.push(ret);
            floor = bp + 16;
            bp = next;
        }
    }

    /// A walk from `pc` at `sp` when the frame pointer was not saved (a
    /// system call before Go 1.23): see the module's description.
    fn walk_without_bp(&self, stack: &mut StackMemory<'_>, pc: u64, sp: u64) -> Vec<u64> {
        let mut ips = vec![pc];
        let Some(mut callee) = self.entry_of(pc) else {
            return ips;
        };
        let mut from = sp;
        // A function without a frame: its return address is at sp.
        if let Some(ret) = stack.word(sp)
            && self.calls(ret, callee)
        {
            ips.push(ret);
            let Some(caller) = self.entry_of(ret.wrapping_sub(1)) else {
                return ips;
            };
            callee = caller;
            from = sp + 8;
        }
        let mut slot = from;
        while slot < from.saturating_add(SYSCALL_SCAN) {
            let (Some(saved), Some(ret)) = (stack.word(slot), stack.word(slot + 8)) else {
                break;
            };
            if saved > slot && self.calls(ret, callee) {
                ips.push(ret);
                self.follow_frame_pointers(stack, &mut ips, saved, slot + 16);
                break;
            }
            slot += 8;
        }
        self.binary.complete_stack(&mut ips, self.bias);
        ips
    }

    /// The entry (process address) of the Go function holding `pc`.
    fn entry_of(&self, pc: u64) -> Option<u64> {
        let function = self.binary.table.function(pc.checked_sub(self.bias)?)?;
        Some(function.entry.wrapping_add(self.bias))
    }

    /// Whether return address `ret` is in a Go function.
    fn in_go_function(&self, ret: u64) -> bool {
        ret.checked_sub(self.bias)
            .and_then(|pc| pc.checked_sub(1))
            .is_some_and(|pc| self.binary.table.function(pc).is_some())
    }

    /// Whether the instruction before return address `ret` (process
    /// address) is a direct call to `entry` (process address).
    fn calls(&self, ret: u64, entry: u64) -> bool {
        let Some(end) = ret.checked_sub(self.bias) else {
            return false;
        };
        let Some(code) = end
            .checked_sub(x86::CALL_LEN)
            .and_then(|start| self.binary.code(start..end))
        else {
            return false;
        };
        x86::call_target(code, ret) == Some(entry)
    }

    /// Whether Go counts a goroutine starting at `start_pc` as its own
    /// (`isSystemGoroutine`).
    fn is_system(&self, start_pc: u64) -> bool {
        let Some(function) = start_pc
            .checked_sub(self.bias)
            .and_then(|pc| self.binary.table.function(pc))
        else {
            return false;
        };
        function.name.starts_with("runtime.")
            && function.name != "runtime.main"
            && function.name != "runtime.corostart"
    }

    /// Reads `runtime.waitReasonStrings` (see the module's description).
    fn read_wait_reasons(&self) -> Result<Vec<String>, String> {
        wait_reasons_in(&self.mem, &self.binary, self.bias)
    }
}

/// The wait reasons by number (`runtime.waitReasonStrings`) of process
/// `pid`, running `binary` loaded at `bias`, or why they were not found.
pub fn wait_reasons(pid: u32, binary: &GoBinary, bias: u64) -> Result<Vec<String>, String> {
    let mem = File::open(format!("/proc/{pid}/mem"))
        .map_err(|err| format!("cannot open /proc/{pid}/mem: {err}"))?;
    wait_reasons_in(&mem, binary, bias)
}

/// Finds the table from the code of `runtime.waitReason.String` (the
/// length it compares a reason with, the addresses it loads) and reads it.
fn wait_reasons_in(mem: &File, binary: &GoBinary, bias: u64) -> Result<Vec<String>, String> {
    let name = "runtime.waitReason.String";
    let function = binary
        .table
        .function_by_name(name)
        .ok_or_else(|| format!("{name} is not in the binary"))?;
    let end = function.end.min(function.entry + x86::MAX_SCAN as u64);
    let code = binary
        .code(function.entry..end)
        .ok_or_else(|| format!("the code of {name} is not in .text"))?;
    let count = x86::first_cmp_al(code)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{name} does not compare the reason with a length"))?;
    x86::rip_leas(code, function.entry)
        .into_iter()
        .find_map(|lea| read_wait_reason_table(mem, lea.target.wrapping_add(bias), count))
        .ok_or_else(|| format!("no address {name} takes holds a table of {count} wait reasons"))
}

/// Finds `runtime.allgs` (ELF address) from the code of
/// `runtime.forEachG`.
fn find_allgs(binary: &GoBinary) -> Result<u64, GoroutineError> {
    let not_found = |why: String| GoroutineError::NotFound {
        what: "goroutine list (runtime.allgs)",
        why,
    };
    let name = "runtime.forEachG";
    let function = binary
        .table
        .function_by_name(name)
        .ok_or_else(|| not_found(format!("{name} is not in the binary's symbol table")))?;
    let end = function.end.min(function.entry + x86::MAX_SCAN as u64);
    let code = binary
        .code(function.entry..end)
        .ok_or_else(|| not_found(format!("the code of {name} is not in .text")))?;
    let allgs = x86::slice_header_load(code, function.entry).ok_or_else(|| {
        not_found(format!(
            "{name} has no pair of RIP-relative loads 8 bytes apart"
        ))
    })?;
    if binary.table.text_range().contains(&allgs) {
        return Err(not_found(format!(
            "the loads of {name} point into the code ({allgs:#x})"
        )));
    }
    Ok(allgs)
}

/// Reads a `[count]string` at `address` and returns it if it reads as the
/// wait reasons: entry 0 (`waitReasonZero`) empty, every string printable
/// ASCII and short, most of them set, "chan receive" among them.
fn read_wait_reason_table(mem: &File, address: u64, count: u8) -> Option<Vec<String>> {
    let mut headers = vec![0u8; usize::from(count) * 16];
    if procfs::read_memory(mem, address, &mut headers) < headers.len() {
        return None;
    }
    let mut reasons = Vec::with_capacity(usize::from(count));
    for header in headers.chunks_exact(16) {
        let [pointer, len] = words(header);
        if len > MAX_REASON_LEN || (len > 0 && pointer == 0) {
            return None;
        }
        let mut text = vec![0u8; usize::try_from(len).ok()?];
        if procfs::read_memory(mem, pointer, &mut text) < text.len()
            || !text.iter().all(|b| (0x20..0x7f).contains(b))
        {
            return None;
        }
        reasons.push(String::from_utf8(text).ok()?);
    }
    let set = reasons.iter().filter(|r| !r.is_empty()).count();
    (reasons.first().is_some_and(String::is_empty)
        && set * 2 >= reasons.len()
        && reasons.iter().any(|r| r == "chan receive"))
    .then_some(reasons)
}

/// The little-endian words of `bytes`.
fn words<const N: usize>(bytes: &[u8]) -> [u64; N] {
    let mut out = [0u64; N];
    for (word, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    }
    out
}

/// CLOCK_MONOTONIC now, in nanoseconds (Go's `nanotime`).
fn monotonic_now() -> i64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec)
}

/// A goroutine's stack memory, read in windows from `/proc/PID/mem`:
/// words outside `[lo, hi)` are refused.
struct StackMemory<'a> {
    mem: &'a File,
    lo: u64,
    hi: u64,
    /// `buf` holds the bytes at `base..base + buf.len()`.
    base: u64,
    buf: Vec<u8>,
}

impl<'a> StackMemory<'a> {
    fn new(mem: &'a File) -> StackMemory<'a> {
        StackMemory {
            mem,
            lo: 0,
            hi: 0,
            base: 0,
            buf: Vec::new(),
        }
    }

    /// A new stack `[lo, hi)`, to be read from `from` up.
    fn reset(&mut self, lo: u64, hi: u64, from: u64) {
        self.lo = lo;
        self.hi = hi;
        self.buf.clear();
        self.load(from);
    }

    /// Reads the window starting at `at`.
    fn load(&mut self, at: u64) {
        self.base = at;
        let len = self.hi.saturating_sub(at).min(STACK_WINDOW);
        self.buf.resize(usize::try_from(len).unwrap_or(0), 0);
        let read = procfs::read_memory(self.mem, at, &mut self.buf);
        self.buf.truncate(read);
    }

    /// The 8-byte word at `address`, if it is on the stack and readable.
    fn word(&mut self, address: u64) -> Option<u64> {
        if address < self.lo || address.checked_add(8)? > self.hi || !address.is_multiple_of(8) {
            return None;
        }
        let end = self.base.checked_add(self.buf.len() as u64)?;
        if address < self.base || address + 8 > end {
            self.load(address);
        }
        let at = usize::try_from(address - self.base).ok()?;
        Some(u64::from_le_bytes(
            self.buf.get(at..at + 8)?.try_into().ok()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> &'static GLayout {
        offsets::layout((1, 27)).expect("known")
    }

    fn put(data: &mut [u8], at: u64, value: u64) {
        let at = at as usize;
        data[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn parses_a_hand_made_g() {
        let g = layout();
        let mut data = vec![0u8; g.read_len() as usize];
        put(&mut data, g.stack_lo, 0xc000_1000);
        put(&mut data, g.stack_hi, 0xc000_3000);
        put(&mut data, g.sched_sp, 0xc000_2f00);
        put(&mut data, g.sched_pc, 0x40_1234);
        put(&mut data, g.sched_bp, 0xc000_2f40);
        put(&mut data, g.goid, 42);
        put(&mut data, g.waitsince, 123);
        put(&mut data, g.gopc, 0x40_5678);
        put(&mut data, g.startpc, 0x40_9000);
        put(&mut data, g.parent_goid.expect("1.27"), 1);
        data[g.status as usize] = status::WAITING as u8;
        data[g.status as usize + 1] = 0x10; // scan bit
        data[g.waitreason as usize] = 19;
        let raw = RawG::parse(&data, g).expect("parses");
        assert_eq!(raw.goid, 42);
        assert_eq!(raw.status & !status::SCAN, status::WAITING);
        assert_eq!(raw.waitreason, 19);
        assert_eq!(raw.parent_goid, 1);
        assert_eq!((raw.sched_pc, raw.sched_bp), (0x40_1234, 0xc000_2f40));
        assert!(raw.plausible());
        // Short data: no answer, no panic.
        assert_eq!(RawG::parse(&data[..100], g), None);
        assert_eq!(RawG::parse(&[], g), None);
    }

    #[test]
    fn garbage_gs_are_not_plausible() {
        let g = layout();
        // Every byte pattern parses; none of these is a live goroutine.
        for fill in [0x00u8, 0xff, 0x41] {
            let data = vec![fill; g.read_len() as usize];
            let raw = RawG::parse(&data, g).expect("parses");
            assert!(!raw.plausible(), "fill {fill:#x}");
        }
    }

    #[test]
    fn statuses_by_release() {
        assert_eq!(
            GoStatus::from_raw(status::WAITING, (1, 19)),
            Some(Some(GoStatus::Waiting))
        );
        assert_eq!(GoStatus::from_raw(status::DEAD, (1, 19)), Some(None));
        assert_eq!(GoStatus::from_raw(status::LEAKED, (1, 25)), None);
        assert_eq!(
            GoStatus::from_raw(status::LEAKED, (1, 26)),
            Some(Some(GoStatus::Leaked))
        );
        assert_eq!(GoStatus::from_raw(status::DEAD_EXTRA, (1, 27)), Some(None));
        assert_eq!(GoStatus::from_raw(status::MORIBUND, (1, 27)), None);
        assert_eq!(GoStatus::from_raw(status::ENQUEUE, (1, 27)), None);
        assert_eq!(GoStatus::from_raw(0xdead_beef, (1, 27)), None);
        assert_eq!(GoStatus::Syscall.to_string(), "syscall");
    }

    #[test]
    fn words_of_short_data() {
        let [a, b, c] = words::<3>(&[1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!((a, b, c), (1, 0, 0));
    }

    /// Stack memory of this process: reads inside the bounds work, reads
    /// outside or unmapped give nothing.
    #[test]
    fn stack_memory_is_bounded() {
        let mem = File::open("/proc/self/mem").expect("own memory");
        let data: Vec<u64> = (0..4096u64).map(|i| i * 3).collect();
        let lo = data.as_ptr() as u64;
        let hi = lo + 4096 * 8;
        let mut stack = StackMemory::new(&mem);
        stack.reset(lo, hi, lo + 8);
        assert_eq!(stack.word(lo + 8), Some(3));
        assert_eq!(stack.word(lo), Some(0)); // below the window: reloaded
        assert_eq!(stack.word(hi - 8), Some(4095 * 3));
        assert_eq!(stack.word(hi), None);
        assert_eq!(stack.word(lo - 8), None);
        assert_eq!(stack.word(lo + 4), None); // misaligned
        // Unmapped memory (the zero page) reads as nothing.
        stack.reset(0, 4096, 0);
        assert_eq!(stack.word(8), None);
        // Bounds near the top of the address space do not overflow.
        stack.reset(u64::MAX - 16, u64::MAX, u64::MAX - 16);
        assert_eq!(stack.word(u64::MAX - 8), None);
    }

    /// A xorshift generator, for garbage.
    fn noise(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// A runtime reading this process's memory as a Go 1.19 program with
    /// `binary`, `allgs` at `allgs`.
    fn fake_runtime(binary: Rc<GoBinary>, allgs: u64) -> GoRuntime {
        let mut reasons = vec![String::new(); 27];
        reasons[14] = "chan receive".to_owned();
        GoRuntime {
            pid: std::process::id(),
            binary,
            bias: 0,
            version: (1, 19),
            layout: offsets::layout((1, 19)).expect("known"),
            allgs,
            wait_reasons: Ok(reasons),
            mem: File::open("/proc/self/mem").expect("own memory"),
        }
    }

    /// Goroutines made by hand in this process's memory, read with the
    /// code of a real Go 1.19 binary (Debian's stripped prometheus, when
    /// installed): a sound one is read whole; garbage ones (random bytes,
    /// frame pointers that loop or fall, stacks that are not mapped, g
    /// pointers to nowhere) are skipped or read short, never a panic or a
    /// hang.
    #[test]
    fn fake_goroutines_in_own_memory() {
        let path = "/usr/bin/prometheus";
        let Ok(Some(binary)) = GoBinary::read(path) else {
            eprintln!("skipped: no Go binary at {path}");
            return;
        };
        let entry = |name: &str| {
            binary
                .table
                .function_by_name(name)
                .unwrap_or_else(|| panic!("{name}"))
                .entry
        };
        let (gopark, chanrecv, goexit) = (
            entry("runtime.gopark"),
            entry("runtime.chanrecv"),
            entry("runtime.goexit"),
        );
        let layout = *offsets::layout((1, 19)).expect("known");
        // A stack of 512 words: sched.sp at word 400, a frame record at
        // word 404 (returning into chanrecv), the last at word 420
        // (returning into goexit), whose saved bp is 0.
        let mut stack = vec![0u64; 512];
        let lo = stack.as_ptr() as u64;
        let hi = lo + 512 * 8;
        let word_at = |i: u64| lo + i * 8;
        stack[404] = word_at(420);
        stack[405] = chanrecv + 10;
        stack[420] = 0;
        stack[421] = goexit + 1;
        let g_len = layout.size as usize;
        let sound = {
            let mut g = vec![0u8; g_len];
            put(&mut g, layout.stack_lo, lo);
            put(&mut g, layout.stack_hi, hi);
            put(&mut g, layout.sched_sp, word_at(400));
            put(&mut g, layout.sched_pc, gopark + 20);
            put(&mut g, layout.sched_bp, word_at(404));
            put(&mut g, layout.goid, 7);
            put(&mut g, layout.gopc, chanrecv + 30);
            put(&mut g, layout.startpc, gopark);
            g[layout.status as usize] = status::WAITING as u8;
            g[layout.waitreason as usize] = 14;
            g
        };
        // Garbage: random bytes with a plausible goid, status and stack
        // bounds, the stack itself random; frame pointers that loop.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut garbage_stack: Vec<u64> = (0..2048).map(|_| noise(&mut state)).collect();
        let garbage_lo = garbage_stack.as_ptr() as u64;
        for (i, word) in garbage_stack.iter_mut().enumerate().step_by(7) {
            // Some words point back into the stack (loops, descents).
            *word = garbage_lo + (noise(&mut state) % 2048) * 8 + (i as u64 % 2) * 4;
        }
        let mut gs: Vec<Vec<u8>> = vec![sound];
        for i in 0..200u64 {
            let mut g: Vec<u8> = (0..g_len).map(|_| noise(&mut state) as u8).collect();
            if i % 2 == 0 {
                put(&mut g, layout.goid, 100 + i);
                put(&mut g, layout.stack_lo, garbage_lo);
                put(&mut g, layout.stack_hi, garbage_lo + 2048 * 8);
                let sp = garbage_lo + (noise(&mut state) % 2048) * 8;
                put(&mut g, layout.sched_sp, sp);
                put(&mut g, layout.syscallsp, sp);
                put(
                    &mut g,
                    layout.sched_bp,
                    garbage_lo + (noise(&mut state) % 2048) * 8,
                );
                let status = [status::WAITING, status::SYSCALL, status::RUNNABLE][i as usize % 3];
                put(&mut g, layout.status, u64::from(status));
            }
            if i % 10 == 1 {
                // Bounds of memory that is not mapped.
                put(&mut g, layout.stack_lo, 0x1000);
                put(&mut g, layout.stack_hi, 0x9000);
                put(&mut g, layout.sched_sp, 0x2000);
                put(&mut g, layout.goid, 5);
                put(&mut g, layout.status, u64::from(status::WAITING));
            }
            gs.push(g);
        }
        let mut pointers: Vec<u64> = gs.iter().map(|g| g.as_ptr() as u64).collect();
        // Pointers to nowhere and misaligned.
        pointers.extend([0, 8, 0x10, pointers[0] + 1, u64::MAX - 7]);
        let header = [
            pointers.as_ptr() as u64,
            pointers.len() as u64,
            pointers.len() as u64,
        ];
        let runtime = fake_runtime(Rc::new(binary), header.as_ptr() as u64);

        let started = std::time::Instant::now();
        let snapshot = runtime.snapshot().expect("reads");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let g = snapshot
            .goroutines
            .iter()
            .find(|g| g.goid == 7)
            .expect("the sound goroutine");
        assert_eq!(g.status, GoStatus::Waiting);
        assert_eq!(g.wait_reason.as_deref(), Some("chan receive"));
        assert_eq!(g.created_by, Some(chanrecv + 30));
        assert_eq!(g.stack.first(), Some(&(gopark + 20)));
        assert!(g.stack.contains(&(chanrecv + 10)), "{:x?}", g.stack);
        assert_eq!(g.stack.last(), Some(&(goexit + 1)), "{:x?}", g.stack);
        assert!(g.system, "started in runtime.gopark");
        // Every stack is bounded; the random ones mostly skipped.
        assert!(
            snapshot
                .goroutines
                .iter()
                .all(|g| g.stack.len() <= MAX_FRAMES)
        );
        assert!(snapshot.skipped >= 5, "{}", snapshot.skipped);
        drop((stack, garbage_stack, gs));

        // A header that is not a slice's: an error, not a panic.
        let bad = [0x1000u64, 10, 5];
        let runtime = fake_runtime(Rc::clone(&runtime.binary), bad.as_ptr() as u64);
        assert!(runtime.snapshot().is_err());
        // One that cannot be read: an error.
        let runtime = fake_runtime(Rc::clone(&runtime.binary), 0x18);
        assert!(runtime.snapshot().is_err());
    }

    /// A wait reason table in this process's memory, and damaged ones.
    #[test]
    fn wait_reason_tables() {
        let mem = File::open("/proc/self/mem").expect("own memory");
        let strings = ["", "IO wait", "chan receive", "select"];
        let mut table = Vec::new();
        for s in &strings {
            table.extend_from_slice(&(s.as_ptr() as u64).to_le_bytes());
            table.extend_from_slice(&(s.len() as u64).to_le_bytes());
        }
        let address = table.as_ptr() as u64;
        assert_eq!(
            read_wait_reason_table(&mem, address, 4),
            Some(strings.iter().map(|s| s.to_string()).collect())
        );
        // Past its end: the next words are not string headers (or not
        // readable).
        assert_eq!(read_wait_reason_table(&mem, address, 200), None);
        // Entry 0 not empty.
        assert_eq!(read_wait_reason_table(&mem, address + 16, 3), None);
        // Not printable.
        let binary = [0u8, 1, 2, 3];
        let mut bad = table.clone();
        bad[16..24].copy_from_slice(&(binary.as_ptr() as u64).to_le_bytes());
        bad[24..32].copy_from_slice(&4u64.to_le_bytes());
        assert_eq!(read_wait_reason_table(&mem, bad.as_ptr() as u64, 4), None);
        // Unmapped.
        assert_eq!(read_wait_reason_table(&mem, 16, 4), None);
    }
}
