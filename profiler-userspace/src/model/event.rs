//! One event shape for every kind and both transports: what happened, to
//! which thread, on which stacks, on which lock and who woke the thread,
//! with the value the events of one shape sum to. Sources read the
//! kernel's maps and rings into it; aggregation sums it; profiles are made
//! of it.

use super::stack::Stack;

/// Why a thread was off the CPU: the kernel side's own enum.
pub use profiler_common::offcpu::OffCpuState;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// An on-CPU sample.
    Cpu,
    /// An off-CPU interval: blocked (until woken) or preempted.
    OffCpu(OffCpuState),
    /// A futex wait, by the lock and the waiting stack.
    FutexWait,
    /// A futex wake call, by the lock and the waking stack.
    FutexWake,
    /// A goroutine's park in the Go runtime, by the parked stack, the
    /// runtime's wait reason (its number in the target's Go version) and
    /// the waking stack; with `sema`, the event's lock is the semaphore it
    /// waited on.
    GoWait { reason: u8, sema: bool },
}

/// The thread that woke a blocked thread or a futex waiter, with its
/// stacks at the wake-up.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Waker {
    /// Its process: the target's own, another process, or 0 for the kernel
    /// (an interrupt on an idle CPU).
    pub tgid: u32,
    pub tid: u32,
    /// Its user stack (kept only for wakers of the target itself).
    pub user: Stack,
    pub kernel: Stack,
}

/// One event of the target, with the stacks it happened on. Events that are
/// equal sum their values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Event {
    pub origin: Origin,
    /// The thread's process (its user stack is that process's addresses).
    pub pid: u32,
    pub tid: u32,
    pub user: Stack,
    pub kernel: Stack,
    /// The futex word of a futex event, the semaphore of a Go wait on one;
    /// 0 otherwise.
    pub lock: u64,
    /// Who woke the thread, when a wake-up was seen (off-CPU blocks, futex
    /// waits, Go waits).
    pub waker: Option<Waker>,
    /// A wait still under way when the recording ended (its value is the
    /// time waited so far, from its start or from the recording's).
    pub in_progress: bool,
}

/// Count, total and largest of a set of events: samples for on-CPU
/// samples and wake calls, nanoseconds for waits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Value {
    pub count: u64,
    pub total: u64,
    pub max: u64,
}

impl Value {
    /// One event of `value`.
    pub fn one(value: u64) -> Value {
        Value {
            count: 1,
            total: value,
            max: value,
        }
    }

    pub fn add(&mut self, other: Value) {
        self.count += other.count;
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// What was added after `before`. The largest cannot be subtracted; it
    /// stays the largest of the whole recording.
    pub fn since(self, before: Value) -> Value {
        Value {
            count: self.count.saturating_sub(before.count),
            total: self.total.saturating_sub(before.total),
            max: self.max,
        }
    }
}

impl From<profiler_common::event::Value> for Value {
    fn from(v: profiler_common::event::Value) -> Value {
        Value {
            count: v.count,
            total: v.total,
            max: v.max,
        }
    }
}
