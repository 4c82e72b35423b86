//! What the scheduler programs keep between a thread's switch-out and its
//! switch-in, and the states an off-CPU interval can be in.

use crate::event::WakerKey;

/// Why a thread was off the CPU (`EventKey::state` of off-CPU events).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OffCpuState {
    /// Blocked (sleep, I/O, a lock...): charged from switch-out to wake-up.
    Blocked = 0,
    /// Preempted while runnable: all of it is run-queue delay.
    Preempted = 1,
}

impl OffCpuState {
    pub const fn from_u32(value: u32) -> Option<OffCpuState> {
        match value {
            0 => Some(OffCpuState::Blocked),
            1 => Some(OffCpuState::Preempted),
            _ => None,
        }
    }
}

/// A thread of the target switched out and not yet back on a CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SwitchedOut {
    pub switched_out_ns: u64,
    /// When it was woken (0 until then).
    pub woken_ns: u64,
    /// Its stacks at the switch-out; with `copied`, the user stack went to
    /// userspace as a copy (`Origin::SwitchOut`) and this is `-EFAULT`.
    pub user_stack_id: i32,
    pub kernel_stack_id: i32,
    /// An [`OffCpuState`].
    pub state: u32,
    /// 1 when the user stack was copied: the interval then goes to
    /// userspace as a ring record too, naming the copy.
    pub copied: u32,
    pub waker: WakerKey,
    /// The thread's process (the switch-in sees only the thread id).
    pub tgid: u32,
    pub reserved: u32,
}

// SAFETY: `repr(C)`, no padding, every bit pattern valid (read from the
// kernel's map by userspace).
#[cfg(feature = "user")]
unsafe impl aya::Pod for SwitchedOut {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_padding() {
        assert_eq!(core::mem::size_of::<SwitchedOut>(), 72);
    }
}
