//! The control words userspace writes and every program reads: which map
//! generation the kernel fills, and whether recording has begun.

/// Indices of the words in `maps::MAP_CONTROL`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// The generation (0 or 1) of the double-buffered maps the kernel
    /// writes to; userspace drains the other.
    Generation = 0,
    /// The programs ignore every event until this is 1. Userspace sets it
    /// for `--pid`; for a command the profiler starts, the exec of the
    /// target sets it, so nothing the held child did before its new image
    /// was in place is recorded.
    Armed = 1,
}

/// Number of control words.
pub const CONTROL_LEN: u32 = 2;
