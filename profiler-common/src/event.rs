//! The one event shape, from every program to userspace.
//!
//! An [`EventKey`] says what happened (its [`Origin`]), to which thread, on
//! which stacks, on which lock and who woke the thread. The same key is the
//! key of every aggregation map (the kernel sums a [`Value`] per key) and the
//! head of every ring-buffer record, so a field cannot exist on one path
//! and be missing on the other.

use crate::stacks::{STACK_COPY_BYTES, stack_error};

/// What an event records.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// An on-CPU sample.
    Cpu = 0,
    /// An off-CPU interval that ended: [`EventKey::state`] says blocked or
    /// preempted; its value is the time charged.
    OffCpu = 1,
    /// A futex wait that ended; its value is the time waited.
    FutexWait = 2,
    /// A futex wake call (the code releasing a lock).
    FutexWake = 3,
    /// A user stack copied at a switch-out (ring only): not counted itself,
    /// named by the [`Origin::OffCpu`] interval that ends it.
    SwitchOut = 4,
    /// A goroutine's park in the Go runtime that ended: [`EventKey::state`]
    /// packs the wait reason (see `gowait`), the user stack is the parked
    /// goroutine's, the waker the code that made it runnable
    /// (`runtime.ready`: for a lock, the unlock); its value is the time
    /// parked. Thread ids are 0: goroutines move between threads.
    GoWait = 5,
}

impl Origin {
    pub const fn from_u32(value: u32) -> Option<Origin> {
        match value {
            0 => Some(Origin::Cpu),
            1 => Some(Origin::OffCpu),
            2 => Some(Origin::FutexWait),
            3 => Some(Origin::FutexWake),
            4 => Some(Origin::SwitchOut),
            5 => Some(Origin::GoWait),
            _ => None,
        }
    }
}

/// The thread that woke the event's thread (off-CPU blocks and futex
/// waits), with its stacks at the wake-up.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WakerKey {
    /// The waker's process: 0 with `woken` set is the kernel (an interrupt
    /// on an idle CPU).
    pub tgid: u32,
    pub tid: u32,
    /// The waker's user stack id (taken only for the target's own threads).
    pub user_stack_id: i32,
    /// The waker's kernel stack id (taken only for wakers from outside).
    pub kernel_stack_id: i32,
    /// Non-zero: the waker's user stack was also copied, at this time, by
    /// its futex wake call (ring records only; map keys hold 0 here).
    pub user_copy_ns: u64,
    /// 1 when a wake-up was seen (the fields above are then valid).
    pub woken: u32,
    pub reserved: u32,
}

impl WakerKey {
    /// No wake-up seen (yet): stack ids say "no stack", not id 0.
    pub const NOT_WOKEN: WakerKey = WakerKey {
        tgid: 0,
        tid: 0,
        user_stack_id: -stack_error::EFAULT,
        kernel_stack_id: -stack_error::EFAULT,
        user_copy_ns: 0,
        woken: 0,
        reserved: 0,
    };
}

/// One event, as the kernel aggregates it and as ring records start.
///
/// A stack id is an id in a stack map when non-negative (on-CPU samples in
/// the generation's `MAP_STACKS`, every other origin in
/// `MAP_LONG_STACKS`), else `-errno` (see `stacks::stack_error`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey {
    /// An [`Origin`].
    pub origin: u32,
    pub tgid: u32,
    pub tid: u32,
    /// For [`Origin::OffCpu`] and [`Origin::SwitchOut`]: an
    /// `offcpu::OffCpuState`; for [`Origin::GoWait`] the packed wait reason
    /// (`gowait`); 0 otherwise.
    pub state: u32,
    pub user_stack_id: i32,
    pub kernel_stack_id: i32,
    /// The futex word of a futex event; the semaphore of a Go wait on one
    /// (`gowait::STATE_SEMA`); 0 otherwise.
    pub lock: u64,
    /// Non-zero: the user stack is the copy this thread sent at this time
    /// (in this record, or for an off-CPU interval in its switch-out's
    /// record). Ring records only; map keys hold 0 here.
    pub user_copy_ns: u64,
    pub waker: WakerKey,
}

impl EventKey {
    /// An event of `origin` by thread `tid` of `tgid`, its stacks not taken
    /// yet (ids say "no stack", not id 0), no lock, no waker.
    pub const fn new(origin: Origin, tgid: u32, tid: u32) -> EventKey {
        EventKey {
            origin: origin as u32,
            tgid,
            tid,
            state: 0,
            user_stack_id: -stack_error::EFAULT,
            kernel_stack_id: -stack_error::EFAULT,
            lock: 0,
            user_copy_ns: 0,
            waker: WakerKey::NOT_WOKEN,
        }
    }

    pub fn origin(&self) -> Option<Origin> {
        Origin::from_u32(self.origin)
    }
}

/// Count, total and largest of a set of events: samples for on-CPU
/// samples and wake calls (total = count), nanoseconds for waits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Value {
    pub count: u64,
    pub total: u64,
    pub max: u64,
}

/// A ring record without a stack copy: an off-CPU interval whose stack was
/// copied at its switch-out (`maps::MAP_INTERVALS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EventRecord {
    pub key: EventKey,
    /// The event's value (nanoseconds, or 1 for a sample or a wake call).
    pub value: u64,
}

/// A ring record with a copy of the thread's user stack from `sp` up and its
/// user registers, for userspace to unwind (`maps::MAP_COPIES`). The kernel
/// stack, if any, is an id in `MAP_LONG_STACKS`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CopiedEvent {
    pub key: EventKey,
    pub value: u64,
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// Bytes of `stack` that hold the copy (a multiple of
    /// `stacks::STACK_CHUNK`).
    pub stack_len: u32,
    pub reserved: u32,
    pub stack: [u8; STACK_COPY_BYTES],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all): `repr(C)`, no padding, every bit pattern valid.
    unsafe impl aya::Pod for super::EventKey {}
    unsafe impl aya::Pod for super::Value {}
    unsafe impl aya::Pod for super::EventRecord {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_padding() {
        assert_eq!(core::mem::size_of::<WakerKey>(), 32);
        assert_eq!(core::mem::size_of::<EventKey>(), 72);
        assert_eq!(core::mem::size_of::<Value>(), 24);
        assert_eq!(core::mem::size_of::<EventRecord>(), 80);
        assert_eq!(
            core::mem::size_of::<CopiedEvent>(),
            80 + 32 + STACK_COPY_BYTES
        );
    }

    #[test]
    fn origins_round_trip() {
        for origin in [
            Origin::Cpu,
            Origin::OffCpu,
            Origin::FutexWait,
            Origin::FutexWake,
            Origin::SwitchOut,
            Origin::GoWait,
        ] {
            assert_eq!(Origin::from_u32(origin as u32), Some(origin));
        }
        assert_eq!(Origin::from_u32(99), None);
    }
}
