//! The Go runtime's idle parking, told apart from real waits: a Go program
//! parks idle threads on futexes (no work to run), and its `sync.Mutex`
//! parks goroutines without a futex call per waiter, so none of its futex
//! time is the program's lock contention.

use crate::model::{Frame, Profile};

/// Frames of the Go runtime parking an idle thread (no work to run): waits
/// under them are the scheduler idling, not the program waiting.
const RUNTIME_IDLE: &[&str] = &[
    "runtime.futexsleep",
    "runtime.notesleep",
    "runtime.notetsleep",
    "runtime.notetsleepg",
    "runtime.stopm",
    "runtime.mPark",
    "runtime.findRunnable",
    "runtime.findrunnable",
    "runtime.sysmon",
];

/// The off-CPU state of a block under the runtime's idle parking.
pub const IDLE_STATE: &str = "runtime idle";

/// What a futex lock's name starts with when its waiter is the runtime's
/// idle parking.
pub const IDLE_LOCK_PREFIX: &str = "[Go runtime idle]";

/// What the futex report says of a Go program's futex data.
pub const PROGRAM_NOTE: &str = "this is a Go program. Go's sync.Mutex parks goroutines without a futex call per waiter, so its lock contention is not in this profile";

/// Whether frames show the Go runtime's own idle parking.
pub fn is_runtime_idle(frames: &[Frame]) -> bool {
    frames
        .iter()
        .any(|f| RUNTIME_IDLE.contains(&f.name.as_ref()))
}

/// A lock's name as the futex profile gives it when its waiter is the
/// runtime's idle parking.
pub fn idle_lock_name(lock: &str) -> String {
    format!("{IDLE_LOCK_PREFIX} {lock}")
}

/// Whether a profile is of a Go program (its stacks run through the Go
/// runtime).
pub fn is_go_program(profile: &Profile) -> bool {
    profile
        .samples
        .iter()
        .any(|s| s.frames.iter().any(|f| f.name.starts_with("runtime.")))
}

/// Whose a futex lock is, as the report labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockClass {
    /// The program's own lock: contention.
    Program,
    /// The Go runtime parking idle threads: not contention.
    RuntimeIdle,
    /// A lock of the Go runtime itself (its scheduler, its heap).
    RuntimeInternal,
}

impl LockClass {
    /// The label the report puts before the lock's name.
    pub fn label(self) -> &'static str {
        match self {
            LockClass::Program => "",
            LockClass::RuntimeIdle => "[Go runtime idle, not contention] ",
            LockClass::RuntimeInternal => "[Go runtime internal lock] ",
        }
    }
}

/// Whose a lock is: idle parking when at least 90% of its wait time is
/// under the runtime's idle frames; in a Go program every other futex is a
/// lock of the runtime (Go code does not call futex itself).
pub fn lock_class(name: &str, wait_ns: u64, idle_ns: u64, go_program: bool) -> LockClass {
    if idle_ns * 10 >= wait_ns * 9 && wait_ns > 0 {
        LockClass::RuntimeIdle
    } else if go_program || name.starts_with("runtime.") {
        LockClass::RuntimeInternal
    } else {
        LockClass::Program
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_are_classed() {
        assert_eq!(lock_class("g_lock", 100, 0, false), LockClass::Program);
        assert_eq!(
            lock_class("0x1 [heap]", 100, 95, true),
            LockClass::RuntimeIdle
        );
        assert_eq!(
            lock_class("0x1 [heap]", 100, 10, true),
            LockClass::RuntimeInternal
        );
        assert_eq!(
            lock_class("runtime.sched+0x10", 100, 0, false),
            LockClass::RuntimeInternal
        );
    }
}
