//! What the Go runtime probes keep between a goroutine's park
//! (`runtime.gopark`) and its wake-up (`runtime.ready`, or
//! `runtime.execute` for goroutines made runnable without `ready`), and
//! how a Go wait's `EventKey::state` is packed.

/// The runtime's wait reason (a `waitReason`, one byte; its numbering
/// changes between Go versions, so userspace names it from the target's
/// own string table) is the low byte of `EventKey::state`.
pub const REASON_MASK: u32 = 0xff;

/// Set in `EventKey::state` when `EventKey::lock` is the semaphore the
/// goroutine waited on (`runtime.semacquire1`'s address: a `sync.Mutex`,
/// `RWMutex` or `WaitGroup`); clear when no lock is known (lock 0).
pub const STATE_SEMA: u32 = 1 << 8;

/// The wait reason of a Go wait's state.
pub const fn reason_of(state: u32) -> u8 {
    (state & REASON_MASK) as u8
}

/// A goroutine the target parked and that is not running again yet, by
/// the address of its `g`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GoParked {
    pub parked_ns: u64,
    /// The semaphore address it waits on, or 0.
    pub lock: u64,
    /// Its user stack at the park (`maps::MAP_LONG_STACKS`), or `-errno`.
    pub user_stack_id: i32,
    /// The packed state its wait will carry.
    pub state: u32,
}

// SAFETY: `repr(C)`, no padding (tested), every bit pattern valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for GoParked {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_padding() {
        assert_eq!(core::mem::size_of::<GoParked>(), 24);
    }

    #[test]
    fn reason_round_trip() {
        assert_eq!(reason_of(19 | STATE_SEMA), 19);
        assert_eq!(reason_of(255), 255);
    }
}
