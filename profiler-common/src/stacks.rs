//! How user stacks are taken: walked in the kernel from `.eh_frame` tables
//! or by frame pointers, or copied for userspace to unwind; and what a
//! failed `bpf_get_stackid` returns.

/// How the programs take user stacks (the global `maps::GLOBAL_UNWIND_MODE`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnwindMode {
    /// Frame-pointer stacks walked and counted in the kernel (`--unwind fp`).
    FramePointers = 0,
    /// Every event copies the stack for userspace unwinding (`--unwind
    /// copy`); an event that finds the ring buffer full loses its stack,
    /// counted. Kept to check the kernel's walker against framehop on the
    /// same events; `dump` and waits still under way unwind stacks read
    /// from outside the same way.
    Copy = 1,
    /// Stacks walked in the kernel with tables userspace derives from each
    /// binary's `.eh_frame` (`--unwind dwarf`, the default): whole stacks
    /// without frame pointers, at any event rate, aggregated in the kernel.
    Dwarf = 2,
}

impl UnwindMode {
    /// The mode's name on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            UnwindMode::FramePointers => "fp",
            UnwindMode::Copy => "copy",
            UnwindMode::Dwarf => "dwarf",
        }
    }

    /// The mode a command-line name stands for.
    pub fn from_name(name: &str) -> Option<UnwindMode> {
        match name {
            "fp" => Some(UnwindMode::FramePointers),
            "copy" => Some(UnwindMode::Copy),
            "dwarf" => Some(UnwindMode::Dwarf),
            _ => None,
        }
    }
}

/// Bytes of user stack copied per event, in [`STACK_CHUNK`] chunks.
pub const STACK_COPY_BYTES: usize = 16 * 1024;
/// The stack is copied in chunks of this size, as far as it is readable.
pub const STACK_CHUNK: usize = 1024;
/// Deepest stack the kernel records (the kernel's own default limit).
pub const MAX_STACK_DEPTH: u32 = 127;

/// `errno` values `bpf_get_stackid` returns, as userspace decodes them. A
/// stack id is an id in a stack map when non-negative, else the negated
/// errno (the event is still counted; userspace says why its stack is
/// missing).
pub mod stack_error {
    /// No stack: a kernel stack of a thread in user mode, or no user stack.
    pub const EFAULT: i32 = 14;
    /// The stack's hash bucket holds another stack (a collision).
    pub const EEXIST: i32 = 17;
    /// The stack map is full.
    pub const ENOMEM: i32 = 12;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwind_mode_names_round_trip() {
        for mode in [
            UnwindMode::FramePointers,
            UnwindMode::Copy,
            UnwindMode::Dwarf,
        ] {
            assert_eq!(UnwindMode::from_name(mode.name()), Some(mode));
        }
        assert_eq!(UnwindMode::from_name("lbr"), None);
    }
}
