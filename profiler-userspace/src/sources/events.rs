//! Kernel keys into model events: the one conversion both transports use,
//! so an event read from a map and one read from a ring are the same shape.

use profiler_common::{
    event::{EventKey, Origin as KernelOrigin, WakerKey},
    gowait,
    offcpu::OffCpuState,
};

use super::stacks::KernelStacks;
use crate::model::{Event, Origin, Stack, Waker};

/// The model event of a kernel key, given its thread's stacks and its
/// waker; `None` for a record that is not an event itself (a switch-out's
/// stack copy) or that this build does not know.
pub fn event_of(key: &EventKey, user: Stack, kernel: Stack, waker: Option<Waker>) -> Option<Event> {
    let origin = match key.origin()? {
        KernelOrigin::Cpu => Origin::Cpu,
        KernelOrigin::OffCpu => Origin::OffCpu(OffCpuState::from_u32(key.state)?),
        KernelOrigin::FutexWait => Origin::FutexWait,
        KernelOrigin::FutexWake => Origin::FutexWake,
        KernelOrigin::SwitchOut => return None,
        KernelOrigin::GoWait => Origin::GoWait {
            reason: gowait::reason_of(key.state),
            sema: key.state & gowait::STATE_SEMA != 0,
        },
    };
    Some(Event {
        origin,
        pid: key.tgid,
        tid: key.tid,
        user,
        kernel,
        lock: key.lock,
        waker,
        in_progress: false,
    })
}

/// The waker of a key, if a wake-up was seen. Its user stack is `copied`
/// when the waker's own copy is known, else the one the kernel walked.
pub fn waker_of(key: &WakerKey, stacks: &mut KernelStacks, copied: Option<Stack>) -> Option<Waker> {
    (key.woken != 0).then(|| Waker {
        tgid: key.tgid,
        tid: key.tid,
        user: copied.unwrap_or_else(|| stacks.long(key.user_stack_id)),
        kernel: stacks.long(key.kernel_stack_id),
    })
}
