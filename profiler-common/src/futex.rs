//! What the futex programs keep while a wait is under way, and the futex
//! commands they tell apart.

use crate::event::WakerKey;

/// A futex wait under way.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FutexInFlight {
    pub start_ns: u64,
    /// The futex word waited on.
    pub lock: u64,
    /// Who woke the waiter, once someone has.
    pub waker: WakerKey,
}

/// Futex commands (`op & FUTEX_CMD_MASK`), linux/futex.h.
pub mod futex_op {
    pub const CMD_MASK: u32 = !(128 | 256);
    pub const WAIT: u32 = 0;
    pub const WAKE: u32 = 1;
    pub const REQUEUE: u32 = 3;
    pub const CMP_REQUEUE: u32 = 4;
    pub const WAKE_OP: u32 = 5;
    pub const LOCK_PI: u32 = 6;
    pub const UNLOCK_PI: u32 = 7;
    pub const WAIT_BITSET: u32 = 9;
    pub const WAKE_BITSET: u32 = 10;
    pub const WAIT_REQUEUE_PI: u32 = 11;
    pub const CMP_REQUEUE_PI: u32 = 12;
    pub const LOCK_PI2: u32 = 13;

    /// Whether the command waits (blocks the caller until woken).
    pub const fn is_wait(cmd: u32) -> bool {
        matches!(
            cmd,
            WAIT | LOCK_PI | WAIT_BITSET | WAIT_REQUEUE_PI | LOCK_PI2
        )
    }

    /// Whether the command wakes (or requeues) waiters.
    pub const fn is_wake(cmd: u32) -> bool {
        matches!(
            cmd,
            WAKE | REQUEUE | CMP_REQUEUE | WAKE_OP | UNLOCK_PI | WAKE_BITSET | CMP_REQUEUE_PI
        )
    }
}

// SAFETY: `repr(C)`, no padding, every bit pattern valid (read from the
// kernel's map by userspace).
#[cfg(feature = "user")]
unsafe impl aya::Pod for FutexInFlight {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_padding() {
        assert_eq!(core::mem::size_of::<FutexInFlight>(), 48);
    }

    #[test]
    fn futex_commands() {
        assert!(futex_op::is_wait(0) && futex_op::is_wait(13));
        assert!(futex_op::is_wake(1) && futex_op::is_wake(7));
        assert!(!futex_op::is_wait(1) && !futex_op::is_wake(0));
        // FUTEX_WAIT | FUTEX_PRIVATE_FLAG
        assert_eq!(128 & futex_op::CMD_MASK, futex_op::WAIT);
    }
}
