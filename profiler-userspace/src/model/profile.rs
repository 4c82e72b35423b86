//! The profile every format writes: symbolized stacks (root first) with
//! their values, for one kind (cpu samples, off-CPU or futex nanoseconds).

use std::{borrow::Cow, collections::HashMap, rc::Rc, time::Duration};

use super::{
    frame::{Frame, FrameKind},
    kind::ProfileKind,
};

/// Thread ids from this bit up are not threads: each stands for all the
/// exited threads of one name, folded together by a long-running session
/// (so thread churn does not grow it without bound).
pub const FOLDED_THREADS: u32 = 1 << 31;

/// How a thread is shown in a frame: `name-tid`, or `name-exited` for the
/// folded exited threads of a name.
pub fn thread_label(name: &str, tid: u32) -> String {
    if tid >= FOLDED_THREADS {
        format!("{name}-exited")
    } else {
        format!("{name}-{tid}")
    }
}

/// Who woke the thread of a sample (an off-CPU block, a futex wait).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WokenBy {
    /// Who it was, as a phrase: `woken by thread 42`, `woken by nginx (pid
    /// 7)`, `woken by the kernel: an interrupt on an idle CPU`.
    pub who: String,
    /// The waker's stack at the wake-up, root first: for the target's own
    /// threads the code that released the waiter (for a lock, the unlock).
    pub frames: Vec<Frame>,
}

impl WokenBy {
    /// The waker's own code, leaf first, as `a <- b <- c` (at most `depth`
    /// frames; kernel and structural frames left out).
    pub fn short_stack(&self, depth: usize) -> Option<String> {
        short_stack(&self.frames, depth)
    }
}

/// A stack's program frames, leaf first, as `a <- b <- c` (its `depth`
/// innermost frames); kernel and structural frames are left out. `None`
/// when no such frame is left.
pub fn short_stack(frames: &[Frame], depth: usize) -> Option<String> {
    let own: Vec<&str> = frames
        .iter()
        .rev()
        .filter(|f| !matches!(f.kind, FrameKind::Kernel | FrameKind::Marker))
        .take(depth)
        .map(|f| f.name.as_ref())
        .collect();
    (!own.is_empty()).then(|| own.join(" <- "))
}

/// One unique stack and its value: samples for cpu profiles, nanoseconds
/// for waits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    /// The process and its name (`comm`).
    pub pid: u32,
    pub process: Rc<str>,
    pub tid: u32,
    pub thread_name: Rc<str>,
    /// Root (outermost caller) first, leaf last. Structural frames
    /// ([`FrameKind::Marker`]) lead: the lock of a futex wait, the state of
    /// an off-CPU block; the fields below carry the same for structured
    /// formats.
    pub frames: Vec<Frame>,
    pub value: u64,
    /// How many events the value sums (samples, blocks, waits).
    pub count: u64,
    /// The lock of a futex wait or of Go lock contention.
    pub lock: Option<Rc<str>>,
    /// `blocked`, `preempted` or `runtime idle` for off-CPU samples;
    /// `contention`, `idle` or `runtime` for Go waits.
    pub state: Option<&'static str>,
    /// The Go runtime's wait reason of a Go wait (`chan receive`,
    /// `sync.Mutex.Lock`, ...).
    pub reason: Option<Rc<str>>,
    /// Who woke the thread, when a wake-up was seen.
    pub waker: Option<WokenBy>,
    /// For Go lock contention (charged to the unlocking stack, the
    /// sample's own), the stack that waited, root first.
    pub waiting: Option<Vec<Frame>>,
    /// A wait still under way when the recording ended (`[still blocked]`).
    pub in_progress: bool,
}

/// The marker of a wait still under way when the recording ended.
pub const STILL_BLOCKED: &str = "[still blocked]";

/// How a process is shown as the first frame of its stacks: `name (PID)`.
pub fn process_label(name: &str, pid: u32) -> String {
    format!("{name} ({pid})")
}

/// A recorded profile of one process, or of several.
#[derive(Debug, Clone)]
pub struct Profile {
    pub kind: ProfileKind,
    /// The one process recorded, else 0.
    pub pid: u32,
    /// Its name, else what was recorded in words.
    pub process_name: String,
    /// Whether the profile may hold several processes: every stack then
    /// starts with its process ([`process_label`]).
    pub per_process: bool,
    /// Samples per second per CPU.
    pub frequency: u64,
    pub duration: Duration,
    /// Sorted by value, largest first.
    pub samples: Vec<Sample>,
    /// The target's executable, listed first among pprof's mappings.
    pub executable: Option<Rc<str>>,
    /// Where the target's code files were mapped (their executable
    /// mappings), for pprof's mapping table: a later symbolizer turns an
    /// address into a file offset with them.
    pub mappings: Vec<CodeMapping>,
}

/// One executable mapping of a file in the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeMapping {
    pub path: Rc<str>,
    pub start: u64,
    pub limit: u64,
    /// The file offset of `start`.
    pub offset: u64,
}

impl Profile {
    /// Sum of all sample values.
    pub fn total(&self) -> u64 {
        self.samples.iter().map(|s| s.value).sum()
    }

    /// The frames text formats (folded, SVG, speedscope) draw for a
    /// sample, root first: its own, and for an off-CPU block the waker's
    /// half after a `--` frame, from the waker's leaf up to who it was (as
    /// bcc's offwaketime draws it). A futex wait's waker is left to the
    /// structured formats (pprof's `waker` labels).
    pub fn drawn_frames<'s>(&self, sample: &'s Sample) -> Vec<Cow<'s, Frame>> {
        let mut frames: Vec<Cow<'s, Frame>> = sample.frames.iter().map(Cow::Borrowed).collect();
        if self.kind == ProfileKind::OffCpu
            && let Some(waker) = &sample.waker
        {
            frames.push(Cow::Owned(Frame::marker("--".to_owned())));
            frames.extend(waker.frames.iter().rev().map(Cow::Borrowed));
            frames.push(Cow::Owned(Frame::marker(format!("[{}]", waker.who))));
        }
        frames
    }

    /// What the profile is of, in words: `app (PID 42)`, or what was
    /// recorded when it holds several processes.
    pub fn target(&self) -> String {
        if self.per_process || self.pid == 0 {
            self.process_name.clone()
        } else {
            format!("{} (PID {})", self.process_name, self.pid)
        }
    }

    /// Functions by self value and total value (anywhere on the stack,
    /// counted once per stack), largest first. For cpu, "self" is the leaf;
    /// for waits (whose leaf is always the scheduler) it is the deepest user
    /// frame: the program's code that waited. Marker frames and the waker
    /// are left out.
    pub fn function_shares(&self) -> Vec<FunctionShare> {
        let mut by_name: HashMap<Rc<str>, FunctionShare> = HashMap::new();
        for sample in &self.samples {
            let own: Vec<&Frame> = sample
                .frames
                .iter()
                .filter(|f| !matches!(f.kind, FrameKind::Lost | FrameKind::Marker))
                .collect();
            let mut seen: Vec<&Rc<str>> = Vec::with_capacity(own.len());
            for frame in &own {
                if !seen.contains(&&frame.name) {
                    seen.push(&frame.name);
                    by_name
                        .entry(frame.name.clone())
                        .or_insert_with(|| FunctionShare::new(frame))
                        .total += sample.value;
                }
            }
            let leaf = match self.kind {
                ProfileKind::Cpu => own.last(),
                ProfileKind::OffCpu
                | ProfileKind::Futex
                | ProfileKind::Threads
                | ProfileKind::Goroutines
                | ProfileKind::GoMutex
                | ProfileKind::GoBlock => {
                    own.iter().rev().find(|f| f.is_user_code()).or(own.last())
                }
            };
            if let Some(leaf) = leaf {
                by_name
                    .entry(leaf.name.clone())
                    .or_insert_with(|| FunctionShare::new(leaf))
                    .self_value += sample.value;
            }
        }
        let mut shares: Vec<FunctionShare> = by_name.into_values().collect();
        shares.sort_by(|a, b| {
            b.self_value
                .cmp(&a.self_value)
                .then(b.total.cmp(&a.total))
                .then_with(|| a.name.cmp(&b.name))
        });
        shares
    }
}

/// A function's share of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionShare {
    pub name: Rc<str>,
    pub kind: FrameKind,
    pub self_value: u64,
    pub total: u64,
}

impl FunctionShare {
    fn new(frame: &Frame) -> FunctionShare {
        FunctionShare {
            name: frame.name.clone(),
            kind: frame.kind,
            self_value: 0,
            total: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn sample(names: &[&str], value: u64) -> Sample {
        Sample {
            tid: 1,
            thread_name: "t".into(),
            frames: names.iter().map(|n| frame(n)).collect(),
            value,
            count: value,
            ..Sample::default()
        }
    }

    fn profile(kind: ProfileKind, samples: Vec<Sample>) -> Profile {
        Profile {
            kind,
            pid: 1,
            process_name: "p".into(),
            frequency: 99,
            duration: Duration::from_secs(1),
            executable: None,
            mappings: Vec::new(),
            per_process: false,
            samples,
        }
    }

    #[test]
    fn self_and_total_shares() {
        let profile = profile(
            ProfileKind::Cpu,
            vec![
                sample(&["main", "a", "leaf"], 6),
                sample(&["main", "b", "leaf"], 3),
                sample(&["main", "b"], 1),
                // Recursion counts once towards the total of a stack.
                sample(&["main", "rec", "rec", "rec"], 2),
            ],
        );
        assert_eq!(profile.total(), 12);
        let shares = profile.function_shares();
        let get = |n: &str| {
            shares
                .iter()
                .find(|s| &*s.name == n)
                .map(|s| (s.self_value, s.total))
        };
        assert_eq!(get("leaf"), Some((9, 9)));
        assert_eq!(get("main"), Some((0, 12)));
        assert_eq!(get("b"), Some((1, 4)));
        assert_eq!(get("rec"), Some((2, 2)));
        assert_eq!(&*shares[0].name, "leaf", "sorted by self value first");
    }

    #[test]
    fn the_waker_half_is_drawn_for_off_cpu_blocks_only() {
        let mut blocked = sample(&["main", "sleep"], 10);
        blocked.waker = Some(WokenBy {
            who: "woken by thread 2".to_owned(),
            frames: vec![frame("main"), frame("wake")],
        });
        let names = |kind| {
            let p = profile(kind, vec![blocked.clone()]);
            p.drawn_frames(&p.samples[0])
                .iter()
                .map(|f| f.name.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(ProfileKind::OffCpu),
            ["main", "sleep", "--", "wake", "main", "[woken by thread 2]"]
        );
        assert_eq!(names(ProfileKind::Futex), ["main", "sleep"]);
        assert_eq!(
            blocked.waker.and_then(|w| w.short_stack(1)),
            Some("wake".to_owned())
        );
    }
}
