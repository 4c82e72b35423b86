//! What a goroutine's wait reason means: its name in the target's Go
//! version (the runtime's own table, read from the process), the finer
//! name a `semacquire` gets from its stack (Go before 1.22 says
//! "semacquire" for every `sync` wait), whether it is lock contention (Go's
//! mutex profile), and whether it is contention at all or an idle wait
//! (a sleep, an idle network connection) a user leaves out.

use crate::model::Frame;

/// How a wait reads: what the program waited for, or idling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitClass {
    /// The program waited on another goroutine: a channel, a lock, a
    /// `WaitGroup`, a condition.
    Contention,
    /// Waiting for time to pass or for the network: not contention.
    Idle,
    /// The runtime's own goroutines and waits (GC, finalizers, the world
    /// stopping).
    Runtime,
}

impl WaitClass {
    /// As labels and reports name it.
    pub fn name(self) -> &'static str {
        match self {
            WaitClass::Contention => "contention",
            WaitClass::Idle => "idle",
            WaitClass::Runtime => "runtime",
        }
    }
}

/// Reasons that are lock contention (the waits Go's mutex profile
/// charges to the unlocking stack).
const MUTEX: &[&str] = &["sync.Mutex.Lock", "sync.RWMutex.Lock", "sync.RWMutex.RLock"];

/// Reasons that are the program waiting on other goroutines.
const CONTENTION: &[&str] = &[
    "chan receive",
    "chan send",
    "select",
    "semacquire",
    "sync.Cond.Wait",
    "sync.Mutex.Lock",
    "sync.RWMutex.Lock",
    "sync.RWMutex.RLock",
    "sync.WaitGroup.Wait",
    "chan receive (durable)",
    "chan send (durable)",
    "select (durable)",
    "sync.WaitGroup.Wait (durable)",
    "coroutine",
];

/// Reasons that are waiting for time or input, not for other goroutines.
const IDLE: &[&str] = &[
    "sleep",
    "IO wait",
    "select (no cases)",
    "chan receive (nil chan)",
    "chan send (nil chan)",
];

/// Functions on a `semacquire` waiter's stack, and the reason Go 1.22+
/// gives the same wait.
const SEMACQUIRE_CALLERS: &[(&str, &str)] = &[
    ("sync.(*RWMutex).RLock", "sync.RWMutex.RLock"),
    ("sync.(*RWMutex).Lock", "sync.RWMutex.Lock"),
    ("sync.(*Mutex).lockSlow", "sync.Mutex.Lock"),
    ("sync.(*Mutex).Lock", "sync.Mutex.Lock"),
    ("internal/sync.(*Mutex).lockSlow", "sync.Mutex.Lock"),
    ("sync.(*WaitGroup).Wait", "sync.WaitGroup.Wait"),
];

/// The name of wait reason `number` in a program's table (`reasons`, its
/// `runtime.waitReasonStrings`), or `wait reason N` when it is not there.
pub fn reason_name(reasons: &[String], number: u8) -> String {
    // A semaphore wait timed from `semacquire1` (gomutex alone) carries no
    // reason of its own: its stack names it (see `refine_reason`).
    if u32::from(number) == profiler_common::gowait::REASON_MASK {
        return "semacquire".to_owned();
    }
    reasons
        .get(usize::from(number))
        .filter(|name| !name.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("wait reason {number}"))
}

/// A reason made as fine as Go 1.22+ makes it: a `semacquire` whose
/// waiting stack (`frames`, root first) is a `sync.Mutex`, `RWMutex` or
/// `WaitGroup` takes that name.
pub fn refine_reason(name: String, frames: &[Frame]) -> String {
    if name != "semacquire" {
        return name;
    }
    frames
        .iter()
        .rev()
        .find_map(|frame| {
            SEMACQUIRE_CALLERS
                .iter()
                .find(|(function, _)| frame.name.as_ref() == *function)
                .map(|(_, reason)| (*reason).to_owned())
        })
        .unwrap_or(name)
}

/// Whether a (refined) reason is lock contention.
pub fn is_mutex(reason: &str) -> bool {
    MUTEX.contains(&reason)
}

/// How a (refined) reason reads.
pub fn wait_class(reason: &str) -> WaitClass {
    if CONTENTION.contains(&reason) {
        WaitClass::Contention
    } else if IDLE.contains(&reason) {
        WaitClass::Idle
    } else {
        WaitClass::Runtime
    }
}

/// Every offset [`semaphore_offset`] gives.
pub const SEMAPHORE_OFFSETS: [u64; 4] = [0, 4, 8, 12];

/// The offset of the semaphore a lock waits on inside the lock, by
/// reason: `sync.Mutex` is `{state int32; sema uint32}`; `RWMutex` is `{w
/// Mutex; writerSem, readerSem uint32; ...}`. A lock is named by its own
/// address.
pub fn semaphore_offset(reason: &str) -> u64 {
    match reason {
        "sync.Mutex.Lock" => 4,
        "sync.RWMutex.Lock" => 8,
        "sync.RWMutex.RLock" => 12,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FrameKind;

    fn frame(name: &str) -> Frame {
        Frame {
            name: name.into(),
            kind: FrameKind::User,
            addr: 0,
            module: None,
            file: None,
            line: None,
        }
    }

    #[test]
    fn reasons_by_number() {
        let table: Vec<String> = ["", "IO wait", "chan receive"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(reason_name(&table, 2), "chan receive");
        assert_eq!(reason_name(&table, 0), "wait reason 0");
        assert_eq!(reason_name(&table, 9), "wait reason 9");
        assert_eq!(reason_name(&[], 2), "wait reason 2");
    }

    #[test]
    fn semacquire_takes_the_name_of_its_lock() {
        let mutex = [
            frame("main.main"),
            frame("sync.(*Mutex).Lock"),
            frame("sync.(*Mutex).lockSlow"),
            frame("sync.runtime_SemacquireMutex"),
            frame("runtime.gopark"),
        ];
        assert_eq!(
            refine_reason("semacquire".into(), &mutex),
            "sync.Mutex.Lock"
        );
        let group = [frame("main.main"), frame("sync.(*WaitGroup).Wait")];
        assert_eq!(
            refine_reason("semacquire".into(), &group),
            "sync.WaitGroup.Wait"
        );
        // A read lock takes the RWMutex name, not the Mutex inside it.
        let read = [frame("main.f"), frame("sync.(*RWMutex).RLock")];
        assert_eq!(
            refine_reason("semacquire".into(), &read),
            "sync.RWMutex.RLock"
        );
        assert_eq!(refine_reason("semacquire".into(), &[]), "semacquire");
        assert_eq!(refine_reason("select".into(), &mutex), "select");
    }

    #[test]
    fn classes() {
        assert!(is_mutex("sync.Mutex.Lock"));
        assert!(!is_mutex("sync.WaitGroup.Wait"));
        assert_eq!(wait_class("chan receive"), WaitClass::Contention);
        assert_eq!(wait_class("sleep"), WaitClass::Idle);
        assert_eq!(wait_class("IO wait"), WaitClass::Idle);
        assert_eq!(wait_class("GC worker (idle)"), WaitClass::Runtime);
        assert_eq!(semaphore_offset("sync.Mutex.Lock"), 4);
    }
}
