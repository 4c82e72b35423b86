//! What the profiler knows about the Go runtime. Today: which frames are
//! the runtime parking its own idle threads, and how locks and waits under
//! them are labelled so they are not mistaken for the program's contention.
//! Go builds on this room (binary facts, goroutines) as it grows.

mod binary;
pub mod buildinfo;
mod labels;
pub mod pclntab;
mod stacks;
mod traceback;

pub use binary::GoBinary;
pub use labels::{
    IDLE_LOCK_PREFIX, IDLE_STATE, LockClass, PROGRAM_NOTE, idle_lock_name, is_go_program,
    is_runtime_idle, lock_class,
};
pub use stacks::{is_go_executable, unwind_mode};
