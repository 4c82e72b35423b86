//! The ring buffers: events that carry a copy of the user stack, unwound
//! here, and off-CPU intervals whose copy was sent at their switch-out.
//!
//! A copy can be named by a later record: an off-CPU interval names the
//! copy its thread sent when it switched out, and a futex wait names the
//! copy its waker's wake call sent (the releasing stack). Records of one
//! ring arrive in the order they were reserved, so a copy is always read
//! before the wait that names it; intervals come in their own ring, read
//! after the copies.

use std::collections::{HashMap, VecDeque};

use aya::maps::{MapData, RingBuf};
use profiler_common::{
    event::{CopiedEvent, EventKey, EventRecord, Origin},
    stacks::{STACK_COPY_BYTES, stack_error},
};

use super::{
    events::{event_of, waker_of},
    stacks::KernelStacks,
};
use crate::{
    aggregate::Aggregate,
    model::{Stack, StackLoss, Value},
    unwind::{StackCopy, Unwinder},
};

/// How long a wake call's copy is kept for the waits it ended: those waits
/// end as soon as their threads run again, well within this.
const WAKE_COPIES_KEPT_NS: u64 = 5_000_000_000;

pub struct Rings {
    copies: RingBuf<MapData>,
    intervals: RingBuf<MapData>,
    copied: Copied,
}

/// Unwound copies that later records may name.
#[derive(Default)]
struct Copied {
    /// Switch-out stacks waiting for their interval, per thread, oldest
    /// first: (switch-out time, user stack).
    switched_out: HashMap<u32, VecDeque<(u64, Stack)>>,
    /// Stacks of wake calls by (thread, time), for the waits they ended.
    wake_calls: HashMap<(u32, u64), Stack>,
    /// The latest copy time seen.
    newest_ns: u64,
}

impl Rings {
    pub fn new(copies: RingBuf<MapData>, intervals: RingBuf<MapData>) -> Self {
        Rings {
            copies,
            intervals,
            copied: Copied::default(),
        }
    }

    /// Reads both rings into `into`: the copies first (a switch-out's copy
    /// is always sent before its interval).
    pub fn read(
        &mut self,
        stacks: &mut KernelStacks,
        unwinder: &mut Unwinder,
        into: &mut Aggregate,
    ) {
        let copied = &mut self.copied;
        while let Some(item) = self.copies.next() {
            let Some((key, value, copy)) = parse_copy(&item) else {
                continue;
            };
            let frames = unwinder.unwind(&copy);
            let user = if frames.is_empty() {
                Stack::Lost(StackLoss::Errno(stack_error::EFAULT))
            } else {
                Stack::Frames(frames.into())
            };
            copied.newest_ns = copied.newest_ns.max(key.user_copy_ns);
            match key.origin() {
                Some(Origin::SwitchOut) => {
                    copied
                        .switched_out
                        .entry(key.tid)
                        .or_default()
                        .push_back((key.user_copy_ns, user));
                    continue;
                }
                Some(Origin::FutexWake) => {
                    copied
                        .wake_calls
                        .insert((key.tid, key.user_copy_ns), user.clone());
                }
                _ => {}
            }
            let kernel = stacks.long(key.kernel_stack_id);
            copied.add(&key, value, user, kernel, stacks, into);
        }
        while let Some(item) = self.intervals.next() {
            let Some(record) = read_pod::<EventRecord>(&item, 0) else {
                continue;
            };
            let key = record.key;
            let user = copied.switch_out_stack(key.tid, key.user_copy_ns);
            let kernel = stacks.long(key.kernel_stack_id);
            copied.add(&key, record.value, user, kernel, stacks, into);
        }
        let newest = copied.newest_ns;
        copied
            .wake_calls
            .retain(|(_, at), _| at.saturating_add(WAKE_COPIES_KEPT_NS) >= newest);
    }

    /// Drops what is kept for threads that have exited.
    pub fn forget_threads(&mut self, exited: impl Fn(u32) -> bool) {
        self.copied.switched_out.retain(|tid, _| !exited(*tid));
    }
}

impl Copied {
    fn add(
        &self,
        key: &EventKey,
        value: u64,
        user: Stack,
        kernel: Stack,
        stacks: &mut KernelStacks,
        into: &mut Aggregate,
    ) {
        // The releasing stack: the waker's own copy when its wake call sent
        // one, else the stack the kernel walked at the wake-up.
        let copied = (key.waker.user_copy_ns != 0)
            .then(|| {
                self.wake_calls
                    .get(&(key.waker.tid, key.waker.user_copy_ns))
                    .cloned()
            })
            .flatten();
        let waker = waker_of(&key.waker, stacks, copied);
        match event_of(key, user, kernel, waker) {
            Some(event) => into.add(event, Value::one(value)),
            None => tracing::debug!(origin = key.origin, "unknown event in a ring"),
        }
    }

    /// The stack a thread's switch-out at `at` copied, if it arrived.
    fn switch_out_stack(&mut self, tid: u32, at: u64) -> Stack {
        let queue = self.switched_out.entry(tid).or_default();
        // Older switch-outs never got an interval (blocks shorter than
        // --min-block, a lost record): they are done with.
        while queue.front().is_some_and(|(out, _)| *out < at) {
            queue.pop_front();
        }
        match queue.front() {
            Some((out, _)) if *out == at => queue
                .pop_front()
                .map_or(Stack::Lost(StackLoss::Dropped), |(_, user)| user),
            _ => Stack::Lost(StackLoss::Dropped),
        }
    }
}

/// A `T` read from `bytes` at `at`, if they hold one.
fn read_pod<T: aya::Pod>(bytes: &[u8], at: usize) -> Option<T> {
    let end = at.checked_add(std::mem::size_of::<T>())?;
    let bytes = bytes.get(at..end)?;
    // SAFETY: `bytes` holds `size_of::<T>()` bytes, read unaligned, and `T`
    // is `Pod`: every bit pattern is a valid `T`.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Reads a record laid out as `CopiedEvent`, its stack borrowed in place.
fn parse_copy(bytes: &[u8]) -> Option<(EventKey, u64, StackCopy<'_>)> {
    use std::mem::offset_of;

    use CopiedEvent as C;
    let u64_at = |at: usize| read_pod::<u64>(bytes, at);
    let len = (read_pod::<u32>(bytes, offset_of!(C, stack_len))? as usize).min(STACK_COPY_BYTES);
    let start = offset_of!(C, stack);
    Some((
        read_pod::<EventKey>(bytes, offset_of!(C, key))?,
        u64_at(offset_of!(C, value))?,
        StackCopy {
            ip: u64_at(offset_of!(C, ip))?,
            sp: u64_at(offset_of!(C, sp))?,
            bp: u64_at(offset_of!(C, bp))?,
            bytes: bytes.get(start..start + len)?,
        },
    ))
}
