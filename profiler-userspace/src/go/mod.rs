//! What the profiler knows about Go, stripped binaries included: the
//! binary (`buildinfo`, `pclntab`, `binary`), how its stacks are taken and
//! completed (`stacks`, `traceback`), its goroutines read from a live
//! process (`goroutines`, with `offsets` and `x86`) and shown as Go shows
//! them (`listing`), and which runtime frames are idle parking rather
//! than the program's waits (`labels`).

mod binary;
pub mod buildinfo;
pub mod data;
mod error;
pub mod goroutines;
mod labels;
pub mod listing;
pub mod offsets;
pub mod pclntab;
mod stacks;
mod traceback;
pub mod x86;

pub use binary::GoBinary;
pub use labels::{
    IDLE_LOCK_PREFIX, IDLE_STATE, LockClass, PROGRAM_NOTE, idle_lock_name, is_go_program,
    is_runtime_idle, lock_class,
};
pub use stacks::{is_go_executable, unwind_mode};
