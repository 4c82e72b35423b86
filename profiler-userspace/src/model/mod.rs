//! The model every other room depends on, and which depends on none of
//! them: what is profiled (kind, target, unwind mode), what the kernel saw
//! (events on stacks) and what is written out (frames, samples, profiles).

pub mod event;
pub mod frame;
pub mod kind;
pub mod loaded;
pub mod profile;
pub mod stack;
pub mod target;

pub use event::{Event, OffCpuState, Origin, Value, Waker};
pub use frame::{AddrFrames, Frame, FrameKind};
pub use kind::ProfileKind;
pub use loaded::{LoadedFormat, LoadedKind, LoadedProfile, LoadedStack, ValueType};
pub use profile::{
    CodeMapping, FOLDED_THREADS, FunctionShare, Profile, STILL_BLOCKED, Sample, WokenBy,
    process_label, short_stack, thread_label,
};
/// How user stacks are taken: the kernel side's own enum (the programs read
/// it as a global).
pub use profiler_common::stacks::UnwindMode;
pub use stack::{Stack, StackLoss};
pub use target::TargetSpec;
