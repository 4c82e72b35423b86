//! What the profiler knows about Go, stripped binaries included: the
//! binary (`buildinfo`, `pclntab`, `binary`), how its stacks are taken and
//! completed (`stacks`, `traceback`), its goroutines read from a live
//! process (`goroutines`, with `offsets` and `x86`) and shown as Go shows
//! them (`listing`), which runtime frames are idle parking rather
//! than the program's waits (`labels`), and what a goroutine's wait reason
//! means (`waits`), and where the runtime is probed for those waits
//! (`probes`).

mod binary;
pub mod buildinfo;
pub mod data;
mod error;
pub mod goroutines;
pub mod heap;
mod labels;
pub mod listing;
pub mod mprof;
pub mod offsets;
pub mod pclntab;
pub mod probes;
pub mod rates;
pub mod runtime_stats;
mod stacks;
mod stats_code;
pub mod stats_layout;
mod traceback;
mod waits;
pub mod x86;

pub use binary::GoBinary;
pub use labels::{
    IDLE_LOCK_PREFIX, IDLE_STATE, LockClass, PROGRAM_NOTE, idle_lock_name, is_go_program,
    is_runtime_idle, lock_class,
};
pub use stacks::{is_go_executable, unwind_mode};
pub use waits::{
    SEMAPHORE_OFFSETS, WaitClass, is_mutex, reason_name, refine_reason, semaphore_offset,
    wait_class,
};
