//! How a Go program's stacks are taken. Go code on amd64 keeps frame
//! pointers and has no `.eh_frame`, so a copy of its stack gains nothing
//! for unwinding, and costs: a copy taken on the g0 stack (inside the vDSO,
//! the scheduler) holds none of the goroutine's frames, which a
//! frame-pointer walk reaches through the frame pointer the runtime left
//! there. So Go targets are walked by frame pointers in the kernel, whatever
//! `--unwind` asks for.

use std::path::Path;

use crate::model::UnwindMode;

/// Whether the file at `path` is a Go binary (stripped or not).
pub fn is_go_executable(path: &Path) -> bool {
    // Mapped, not read: only the section headers are looked at.
    let Ok(data) = crate::mapped::Bytes::map(path) else {
        return false;
    };
    object::File::parse(&*data).is_ok_and(|file| super::buildinfo::is_go(&file))
}

/// The unwind mode for a target: frame pointers for a Go program, else the
/// mode asked for.
pub fn unwind_mode(requested: UnwindMode, go: bool) -> UnwindMode {
    if go {
        UnwindMode::FramePointers
    } else {
        requested
    }
}
