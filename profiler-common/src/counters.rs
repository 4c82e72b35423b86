//! The kernel's per-CPU counters: every event counted, every loss counted
//! by reason, with the words the report and the metrics use for each.

/// Indices of the per-CPU counters in `maps::MAP_COUNTERS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// On-CPU samples that hit a thread of the target.
    CpuSamples = 0,
    /// User stack not taken: the hash bucket held another stack.
    UserStackCollision = 1,
    /// User stack not taken: the stack map was full.
    UserStackMapFull = 2,
    /// User stack not taken: no user stack (thread exiting, kernel thread).
    UserStackMissing = 3,
    /// User stack not taken: any other error.
    UserStackOther = 4,
    /// Kernel stack not taken: collision.
    KernelStackCollision = 5,
    /// Kernel stack not taken: the stack map was full.
    KernelStackMapFull = 6,
    /// Kernel stack not taken: any other error.
    KernelStackOther = 7,
    /// Sample dropped: the counts map was full.
    CountsMapFull = 8,
    /// Switch-outs of the target's threads seen.
    Switches = 9,
    /// Blocks shorter than `--min-block`, dropped in the kernel.
    ShortBlocksDropped = 10,
    /// Off-CPU interval dropped: the off-CPU map was full.
    OffCpuMapFull = 11,
    /// Run-queue delays measured (wake-up or preemption to switch-in).
    RunqDelays = 12,
    /// Sum of the run-queue delays, in nanoseconds.
    RunqDelayNs = 13,
    /// Futex waits completed.
    FutexWaits = 14,
    /// Futex wake calls.
    FutexWakes = 15,
    /// Futex wait or wake dropped: a futex map was full.
    FutexMapFull = 16,
    /// A switch-out or futex wait could not be remembered (in-flight map full).
    InFlightMapFull = 17,
    /// DWARF-mode sample dropped: the user-stack ring buffer was full.
    UserStackRingFull = 18,
    /// DWARF-mode sample without user registers.
    UserRegsMissing = 19,
    /// Sum of the futex wait durations, in nanoseconds (every wait, also
    /// those whose stack or map entry was lost).
    FutexWaitNs = 20,
    /// Goroutine parks seen (`runtime.gopark`).
    GoParks = 21,
    /// Goroutine waits that ended (made runnable again) and were counted.
    GoWaits = 22,
    /// Sum of the Go wait durations, in nanoseconds.
    GoWaitNs = 23,
    /// Goroutines made runnable whose park was not seen: parked before the
    /// recording began (not attributable to a stack or reason).
    GoWakeParkUnseen = 24,
    /// A park not remembered: the parked-goroutines map was full.
    GoParkedMapFull = 25,
    /// A Go wait dropped: the Go event map was full.
    GoMapFull = 26,
    /// A semaphore address not remembered (the wait is counted without its
    /// lock): the map was full.
    GoSemaMapFull = 27,
    /// A forked process not followed: the targets map was full.
    TargetsFull = 28,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 29] = [
        Counter::CpuSamples,
        Counter::UserStackCollision,
        Counter::UserStackMapFull,
        Counter::UserStackMissing,
        Counter::UserStackOther,
        Counter::KernelStackCollision,
        Counter::KernelStackMapFull,
        Counter::KernelStackOther,
        Counter::CountsMapFull,
        Counter::Switches,
        Counter::ShortBlocksDropped,
        Counter::OffCpuMapFull,
        Counter::RunqDelays,
        Counter::RunqDelayNs,
        Counter::FutexWaits,
        Counter::FutexWakes,
        Counter::FutexMapFull,
        Counter::InFlightMapFull,
        Counter::UserStackRingFull,
        Counter::UserRegsMissing,
        Counter::FutexWaitNs,
        Counter::GoParks,
        Counter::GoWaits,
        Counter::GoWaitNs,
        Counter::GoWakeParkUnseen,
        Counter::GoParkedMapFull,
        Counter::GoMapFull,
        Counter::GoSemaMapFull,
        Counter::TargetsFull,
    ];

    /// What the counter counts, as the report words it.
    pub const fn describe(self) -> &'static str {
        match self {
            Counter::CpuSamples => "samples of the target",
            Counter::UserStackCollision => "user stack lost: stack map hash collision",
            Counter::UserStackMapFull => "user stack lost: stack map full",
            Counter::UserStackMissing => "user stack missing (thread in exit or kernel thread)",
            Counter::UserStackOther => "user stack lost: other error",
            Counter::KernelStackCollision => "kernel stack lost: stack map hash collision",
            Counter::KernelStackMapFull => "kernel stack lost: stack map full",
            Counter::KernelStackOther => "kernel stack lost: other error",
            Counter::CountsMapFull => "sample dropped: counts map full",
            Counter::Switches => "switch-outs of the target's threads",
            Counter::ShortBlocksDropped => "blocks shorter than --min-block dropped",
            Counter::OffCpuMapFull => "off-CPU interval dropped: off-CPU map full",
            Counter::RunqDelays => "run-queue delays measured",
            Counter::RunqDelayNs => "run-queue delay, total ns",
            Counter::FutexWaits => "futex waits",
            Counter::FutexWakes => "futex wake calls",
            Counter::FutexMapFull => "futex event dropped: futex map full",
            Counter::InFlightMapFull => "event dropped: in-flight map full",
            Counter::UserStackRingFull => "sample dropped: user-stack ring buffer full",
            Counter::UserRegsMissing => "sample without user registers",
            Counter::FutexWaitNs => "futex wait time, total ns",
            Counter::GoParks => "goroutine parks",
            Counter::GoWaits => "goroutine waits ended",
            Counter::GoWaitNs => "goroutine wait time, total ns",
            Counter::GoWakeParkUnseen => {
                "goroutine wake-ups whose park was not seen (parked before the recording began)"
            }
            Counter::GoParkedMapFull => "goroutine park not remembered: parked-goroutine map full",
            Counter::GoMapFull => "goroutine wait dropped: Go event map full",
            Counter::GoSemaMapFull => "goroutine lock address lost: semaphore map full",
            Counter::TargetsFull => "forked process not followed: targets map full",
        }
    }

    /// The counter as a metric label value (`reason="..."` for losses).
    pub const fn label(self) -> &'static str {
        match self {
            Counter::CpuSamples => "cpu_samples",
            Counter::UserStackCollision => "user_stack_collision",
            Counter::UserStackMapFull => "user_stack_map_full",
            Counter::UserStackMissing => "user_stack_missing",
            Counter::UserStackOther => "user_stack_error",
            Counter::KernelStackCollision => "kernel_stack_collision",
            Counter::KernelStackMapFull => "kernel_stack_map_full",
            Counter::KernelStackOther => "kernel_stack_error",
            Counter::CountsMapFull => "counts_map_full",
            Counter::Switches => "switches",
            Counter::ShortBlocksDropped => "short_block",
            Counter::OffCpuMapFull => "offcpu_map_full",
            Counter::RunqDelays => "runq_delays",
            Counter::RunqDelayNs => "runq_delay_ns",
            Counter::FutexWaits => "futex_waits",
            Counter::FutexWakes => "futex_wakes",
            Counter::FutexMapFull => "futex_map_full",
            Counter::InFlightMapFull => "inflight_map_full",
            Counter::UserStackRingFull => "user_stack_ring_full",
            Counter::UserRegsMissing => "user_regs_missing",
            Counter::FutexWaitNs => "futex_wait_ns",
            Counter::GoParks => "go_parks",
            Counter::GoWaits => "go_waits",
            Counter::GoWaitNs => "go_wait_ns",
            Counter::GoWakeParkUnseen => "go_park_unseen",
            Counter::GoParkedMapFull => "go_parked_map_full",
            Counter::GoMapFull => "go_map_full",
            Counter::GoSemaMapFull => "go_sema_map_full",
            Counter::TargetsFull => "targets_map_full",
        }
    }

    /// Whether the counter counts something lost (as opposed to a tally).
    pub const fn is_loss(self) -> bool {
        !matches!(
            self,
            Counter::CpuSamples
                | Counter::Switches
                | Counter::RunqDelays
                | Counter::RunqDelayNs
                | Counter::FutexWaits
                | Counter::FutexWakes
                | Counter::FutexWaitNs
                | Counter::ShortBlocksDropped
                | Counter::GoParks
                | Counter::GoWaits
                | Counter::GoWaitNs
                | Counter::GoWakeParkUnseen
        )
    }
}

/// Number of counters in `maps::MAP_COUNTERS`.
pub const COUNTER_LEN: u32 = Counter::ALL.len() as u32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_indexed_in_order() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32);
        }
    }
}
