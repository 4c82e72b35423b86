//! A stack as the kernel recorded it, or why it is missing.

use profiler_common::stacks::stack_error;

/// Why a stack is missing from an event; the event itself is still counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StackLoss {
    /// The kernel returned this errno from `bpf_get_stackid`.
    Errno(i32),
    /// The stack id was no longer in the stack map when drained.
    Vanished,
    /// The copied stack never reached userspace (ring buffer full).
    Dropped,
}

impl StackLoss {
    /// A frame name that says why the stack is missing.
    pub fn frame_name(self, user: bool) -> String {
        let side = if user { "user" } else { "kernel" };
        match self {
            StackLoss::Errno(stack_error::EEXIST) => {
                format!("[{side} stack lost: stack map collision]")
            }
            StackLoss::Errno(stack_error::ENOMEM) => format!("[{side} stack lost: stack map full]"),
            StackLoss::Errno(stack_error::EFAULT) => format!("[no {side} stack]"),
            StackLoss::Errno(errno) => format!("[{side} stack lost: errno {errno}]"),
            StackLoss::Vanished => format!("[{side} stack lost: evicted before drain]"),
            StackLoss::Dropped => format!("[{side} stack lost: ring buffer full]"),
        }
    }
}

/// Instruction pointers, leaf first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stack {
    Frames(Box<[u64]>),
    /// No frames: a kernel stack of a thread in user mode (the normal case),
    /// or a stack that was not asked for.
    Empty,
    Lost(StackLoss),
}

impl Stack {
    /// The addresses to look a stack's frames up at, leaf first. Return
    /// addresses point after the call: callers are looked up at `ip - 1`
    /// so the call's own line and inlining are found.
    pub fn lookup_addrs(&self) -> Vec<u64> {
        match self {
            Stack::Frames(ips) => ips
                .iter()
                .enumerate()
                .map(|(depth, &ip)| if depth == 0 { ip } else { ip.saturating_sub(1) })
                .collect(),
            Stack::Empty | Stack::Lost(_) => Vec::new(),
        }
    }
}
