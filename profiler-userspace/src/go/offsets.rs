//! Where the fields of the runtime's goroutine (`runtime.g`) are, per Go
//! release, on amd64, and what its status values mean.
//!
//! Measured from the DWARF of an unstripped build of each release that has
//! a toolchain here (1.19, 1.21 to 1.27; a small program importing
//! net/http/pprof, read with Go's debug/dwarf). Go 1.20 is not measured
//! (no 1.20 toolchain is available): its `g` differs from 1.19's only in
//! field types of the same size (`atomic.Uint32` status, `uint64` goid,
//! `atomic.Bool` parkingOnChan) and a renamed int64, so it shares 1.19's
//! layout (source: 1.20's `runtime/runtime2.go`).
//!
//! What moved: `gobuf.ret` was dropped in 1.25 (`sched.bp` 104 → 96 and
//! everything after it 8 bytes down); `syscallbp` was added in 1.23 (the
//! status, goid and wait fields 8 bytes up in 1.23 and 1.24, back in 1.25);
//! `parentGoid` appeared in 1.21 and the tracer's fields were regrouped
//! then (gopc 296 → 280); 1.26 added fields before `parentGoid`.

/// Byte offsets of the fields of `runtime.g` read from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GLayout {
    /// `unsafe.Sizeof(g{})`.
    pub size: u64,
    /// `stack.lo`, `stack.hi`.
    pub stack_lo: u64,
    pub stack_hi: u64,
    /// `sched.sp`, `sched.pc`, `sched.bp`.
    pub sched_sp: u64,
    pub sched_pc: u64,
    pub sched_bp: u64,
    pub syscallsp: u64,
    pub syscallpc: u64,
    /// Go 1.23+.
    pub syscallbp: Option<u64>,
    /// `atomicstatus` (a u32).
    pub status: u64,
    pub goid: u64,
    pub waitsince: u64,
    /// `waitreason` (a u8).
    pub waitreason: u64,
    /// Go 1.21+.
    pub parent_goid: Option<u64>,
    pub gopc: u64,
    pub startpc: u64,
}

impl GLayout {
    /// How many bytes of a `g` cover every field read here.
    pub fn read_len(&self) -> u64 {
        [
            self.stack_hi,
            self.sched_bp,
            self.syscallpc,
            self.syscallbp.unwrap_or(0),
            self.status,
            self.goid,
            self.waitsince,
            self.parent_goid.unwrap_or(0),
            self.gopc,
            self.startpc,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
            + 8
    }
}

/// Go 1.19 and 1.20.
const GO119: GLayout = GLayout {
    size: 392,
    stack_lo: 0,
    stack_hi: 8,
    sched_sp: 56,
    sched_pc: 64,
    sched_bp: 104,
    syscallsp: 112,
    syscallpc: 120,
    syscallbp: None,
    status: 144,
    goid: 152,
    waitsince: 168,
    waitreason: 176,
    parent_goid: None,
    gopc: 296,
    startpc: 312,
};

/// Go 1.21 (408 bytes) and 1.22 (424).
const GO121: GLayout = GLayout {
    size: 408,
    parent_goid: Some(272),
    gopc: 280,
    startpc: 296,
    ..GO119
};

const GO122: GLayout = GLayout { size: 424, ..GO121 };

/// Go 1.23 (432 bytes) and 1.24 (440): `syscallbp` added.
const GO123: GLayout = GLayout {
    size: 432,
    syscallbp: Some(128),
    status: 152,
    goid: 160,
    waitsince: 176,
    waitreason: 184,
    parent_goid: Some(280),
    gopc: 288,
    startpc: 304,
    ..GO119
};

const GO124: GLayout = GLayout { size: 440, ..GO123 };

/// Go 1.25: `gobuf.ret` gone.
const GO125: GLayout = GLayout {
    size: 440,
    stack_lo: 0,
    stack_hi: 8,
    sched_sp: 56,
    sched_pc: 64,
    sched_bp: 96,
    syscallsp: 104,
    syscallpc: 112,
    syscallbp: Some(120),
    status: 144,
    goid: 152,
    waitsince: 168,
    waitreason: 176,
    parent_goid: Some(272),
    gopc: 280,
    startpc: 296,
};

/// Go 1.26 and 1.27.
const GO126: GLayout = GLayout {
    size: 456,
    parent_goid: Some(280),
    gopc: 288,
    startpc: 304,
    ..GO125
};

/// The oldest and newest releases known (minor versions of Go 1).
pub const OLDEST: u32 = 19;
pub const NEWEST: u32 = 27;

/// The layout of `runtime.g` in Go `major.minor`, if known.
pub fn layout(version: (u32, u32)) -> Option<&'static GLayout> {
    match version {
        (1, 19 | 20) => Some(&GO119),
        (1, 21) => Some(&GO121),
        (1, 22) => Some(&GO122),
        (1, 23) => Some(&GO123),
        (1, 24) => Some(&GO124),
        (1, 25) => Some(&GO125),
        (1, 26 | 27) => Some(&GO126),
        _ => None,
    }
}

/// `atomicstatus` values (`runtime/runtime2.go`), the same in every
/// release known; `_Gleaked` and `_Gdeadextra` from 1.26.
pub mod status {
    pub const IDLE: u32 = 0;
    pub const RUNNABLE: u32 = 1;
    pub const RUNNING: u32 = 2;
    pub const SYSCALL: u32 = 3;
    pub const WAITING: u32 = 4;
    /// `_Gmoribund_unused`.
    pub const MORIBUND: u32 = 5;
    pub const DEAD: u32 = 6;
    /// `_Genqueue_unused`.
    pub const ENQUEUE: u32 = 7;
    pub const COPYSTACK: u32 = 8;
    pub const PREEMPTED: u32 = 9;
    /// Go 1.26+: found leaked by the GC (goroutineleak profile).
    pub const LEAKED: u32 = 10;
    /// Go 1.26+: a dead g attached to an extra (cgo) M.
    pub const DEAD_EXTRA: u32 = 11;
    /// Or'ed in while the GC scans the stack.
    pub const SCAN: u32 = 0x1000;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_release_from_1_19_to_1_27_has_a_layout() {
        for minor in OLDEST..=NEWEST {
            let g = layout((1, minor)).expect("known");
            assert!(g.read_len() <= g.size, "1.{minor}");
            assert_eq!(g.sched_pc, g.sched_sp + 8);
            assert!(g.sched_bp < g.syscallsp && g.syscallsp < g.status);
            assert_eq!(g.parent_goid.is_some(), minor >= 21, "1.{minor}");
            assert_eq!(g.syscallbp.is_some(), minor >= 23, "1.{minor}");
        }
        assert_eq!(layout((1, 18)), None);
        assert_eq!(layout((1, 28)), None);
        assert_eq!(layout((2, 0)), None);
    }

    /// The doc's measured table (shared/docs/go-runtime.md).
    #[test]
    fn agrees_with_the_measured_table() {
        let g = layout((1, 27)).expect("known");
        assert_eq!(
            (
                g.size,
                g.sched_bp,
                g.syscallsp,
                g.goid,
                g.parent_goid,
                g.gopc,
                g.startpc
            ),
            (456, 96, 104, 152, Some(280), 288, 304)
        );
        let g = layout((1, 22)).expect("known");
        assert_eq!(
            (g.size, g.sched_bp, g.gopc, g.startpc),
            (424, 104, 280, 296)
        );
        let g = layout((1, 19)).expect("known");
        assert_eq!((g.size, g.gopc, g.startpc), (392, 296, 312));
    }
}
