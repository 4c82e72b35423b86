//! The in-memory profile every exporter reads: symbolized stacks (root
//! first) with their values, for each kind (cpu samples, off-CPU and futex
//! nanoseconds), built from the drained raw stacks.

use std::{collections::HashMap, rc::Rc, time::Duration};

use crate::{
    collect::{Collected, OffCpuState, RawStack, Stack, Waker},
    symbolize::{AddrFrames, Frame, FrameKind, Symbolize},
};

/// Names of threads and of other processes (wakers), by id.
#[derive(Debug, Default)]
pub struct Names {
    pub threads: HashMap<u32, String>,
    pub processes: HashMap<u32, String>,
}

/// Frames of the Go runtime parking an idle thread (no work to run): waits
/// under them are the scheduler idling, not the program waiting.
const GO_RUNTIME_IDLE: &[&str] = &[
    "runtime.futexsleep",
    "runtime.notesleep",
    "runtime.notetsleep",
    "runtime.notetsleepg",
    "runtime.stopm",
    "runtime.mPark",
    "runtime.findRunnable",
    "runtime.findrunnable",
    "runtime.sysmon",
];

/// Whether frames show the Go runtime's own idle parking.
pub fn is_go_runtime_idle(frames: &[Frame]) -> bool {
    frames
        .iter()
        .any(|f| GO_RUNTIME_IDLE.contains(&f.name.as_ref()))
}

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

/// A kind of profile `record` can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProfileKind {
    /// On-CPU samples at a fixed frequency.
    Cpu,
    /// Time switched out, weighted in nanoseconds.
    OffCpu,
    /// Futex waits by lock address, weighted in nanoseconds.
    Futex,
}

impl ProfileKind {
    pub const ALL: [ProfileKind; 3] = [ProfileKind::Cpu, ProfileKind::OffCpu, ProfileKind::Futex];

    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "cpu",
            ProfileKind::OffCpu => "offcpu",
            ProfileKind::Futex => "futex",
        }
    }
}

/// One unique stack and its value: samples for cpu profiles, nanoseconds
/// for waits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    pub tid: u32,
    pub thread_name: Rc<str>,
    /// Root (outermost caller) first, leaf last. Structural frames
    /// ([`FrameKind::Marker`]) carry the lock, state and waker for text
    /// formats; the fields below carry the same for structured ones.
    pub frames: Vec<Frame>,
    pub value: u64,
    /// How many events the value sums (samples, blocks, waits).
    pub count: u64,
    /// The lock of a futex wait.
    pub lock: Option<Rc<str>>,
    /// `blocked`, `preempted` or `runtime idle` for off-CPU samples.
    pub state: Option<&'static str>,
    /// Who woke an off-CPU sample's thread.
    pub waker: Option<String>,
}

/// A recorded profile of one process.
#[derive(Debug, Clone)]
pub struct Profile {
    pub kind: ProfileKind,
    pub pid: u32,
    pub process_name: String,
    /// Samples per second per CPU.
    pub frequency: u64,
    pub duration: Duration,
    pub samples: Vec<Sample>,
    /// The target's executable, listed first among pprof's mappings.
    pub executable: Option<Rc<str>>,
}

impl Profile {
    /// An empty profile of one process.
    pub fn new(
        kind: ProfileKind,
        pid: u32,
        process_name: &str,
        frequency: u64,
        duration: Duration,
    ) -> Profile {
        Profile {
            kind,
            pid,
            process_name: process_name.to_owned(),
            frequency,
            duration,
            samples: Vec::new(),
            executable: None,
        }
    }

    /// Fills the profile with the drained samples of its kind; every
    /// address must have been given to `symbols` first.
    pub fn with_samples(
        mut self,
        collected: &Collected,
        symbols: &Symbolize,
        names: &Names,
    ) -> Profile {
        let mut threads = ThreadNames::new(&self.process_name, names);
        let mut samples = Vec::new();
        match self.kind {
            ProfileKind::Cpu => {
                for (raw, &value) in &collected.stacks {
                    samples.push(Sample {
                        tid: raw.tid,
                        thread_name: threads.get(raw.tid),
                        frames: frames_of(raw, symbols),
                        value,
                        count: value,
                        ..Sample::default()
                    });
                }
            }
            ProfileKind::OffCpu => {
                for (raw, waits) in &collected.offcpu {
                    let blocked = frames_of(
                        &RawStack {
                            tid: raw.tid,
                            user: raw.user.clone(),
                            kernel: raw.kernel.clone(),
                        },
                        symbols,
                    );
                    let state = match raw.state {
                        OffCpuState::Preempted => "preempted",
                        OffCpuState::Blocked if is_go_runtime_idle(&blocked) => "runtime idle",
                        OffCpuState::Blocked => "blocked",
                    };
                    let mut frames = vec![Frame::marker(format!("[{state}]"))];
                    frames.extend(blocked);
                    let mut waker_name = None;
                    if let Some(waker) = &raw.waker {
                        frames.push(Frame::marker("--".to_owned()));
                        let waker = waker_frames(waker, self.pid, symbols, names);
                        waker_name = waker.last().map(|f| {
                            f.name
                                .trim_start_matches('[')
                                .trim_end_matches(']')
                                .to_owned()
                        });
                        frames.extend(waker);
                    }
                    samples.push(Sample {
                        tid: raw.tid,
                        thread_name: threads.get(raw.tid),
                        frames,
                        value: waits.total_ns,
                        count: waits.count,
                        state: Some(state),
                        waker: waker_name,
                        ..Sample::default()
                    });
                }
            }
            ProfileKind::Futex => {
                for (raw, waits) in &collected.futex_waits {
                    let mut waiter = Vec::new();
                    push_frames(&mut waiter, &raw.user, true, |a| symbols.user_frames(a));
                    let lock = symbols.lock_name(raw.uaddr);
                    let lock = if is_go_runtime_idle(&waiter) {
                        format!("[Go runtime idle] {lock}")
                    } else {
                        lock.to_string()
                    };
                    let mut frames = vec![Frame::marker(lock.clone())];
                    frames.extend(waiter);
                    samples.push(Sample {
                        tid: raw.tid,
                        thread_name: threads.get(raw.tid),
                        frames,
                        value: waits.total_ns,
                        count: waits.count,
                        lock: Some(lock.into()),
                        ..Sample::default()
                    });
                }
            }
        }
        // A stable order: exporters and tests see the same output each run.
        samples.sort_by(|a, b| {
            b.value
                .cmp(&a.value)
                .then_with(|| a.tid.cmp(&b.tid))
                .then_with(|| a.frames.len().cmp(&b.frames.len()))
        });
        self.samples = samples;
        self
    }

    /// Sum of all sample values.
    pub fn total(&self) -> u64 {
        self.samples.iter().map(|s| s.value).sum()
    }

    /// Functions by self value and total value (anywhere on the stack,
    /// counted once per stack), largest first. For cpu, "self" is the leaf;
    /// for waits (whose leaf is always the scheduler) it is the deepest user
    /// frame: the program's code that waited. Marker frames and the waker's
    /// half of an off-CPU stack are left out.
    pub fn function_shares(&self) -> Vec<FunctionShare> {
        let mut by_name: HashMap<Rc<str>, FunctionShare> = HashMap::new();
        for sample in &self.samples {
            let own: Vec<&Frame> = sample
                .frames
                .iter()
                .take_while(|f| !(f.kind == FrameKind::Marker && &*f.name == "--"))
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
                ProfileKind::OffCpu | ProfileKind::Futex => own
                    .iter()
                    .rev()
                    .find(|f| matches!(f.kind, FrameKind::User | FrameKind::Inlined))
                    .or(own.last()),
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

/// Thread names, falling back to the process name for threads that were
/// never seen alive.
struct ThreadNames<'a> {
    process: Rc<str>,
    names: &'a Names,
    cache: HashMap<u32, Rc<str>>,
}

impl<'a> ThreadNames<'a> {
    fn new(process: &str, names: &'a Names) -> Self {
        ThreadNames {
            process: process.into(),
            names,
            cache: HashMap::new(),
        }
    }

    fn get(&mut self, tid: u32) -> Rc<str> {
        let (process, names) = (&self.process, self.names);
        self.cache
            .entry(tid)
            .or_insert_with(|| {
                names
                    .threads
                    .get(&tid)
                    .map(|n| Rc::from(n.as_str()))
                    .unwrap_or_else(|| process.clone())
            })
            .clone()
    }
}

/// The frames of a raw stack, root first: user frames from the outermost
/// caller down, then kernel frames down to the leaf.
fn frames_of(raw: &RawStack, symbols: &Symbolize) -> Vec<Frame> {
    let mut frames = Vec::new();
    push_frames(&mut frames, &raw.user, true, |a| symbols.user_frames(a));
    push_frames(&mut frames, &raw.kernel, false, |a| {
        symbols.kernel_frames(a)
    });
    frames
}

/// The waker's frames as offwaketime draws them above the blocked stack:
/// from the waker's leaf (kernel) up to its root, then who it is.
fn waker_frames(waker: &Waker, target: u32, symbols: &Symbolize, names: &Names) -> Vec<Frame> {
    let mut frames = Vec::new();
    if waker.tgid == target {
        push_frames(&mut frames, &waker.user, true, |a| symbols.user_frames(a));
    }
    push_frames(&mut frames, &waker.kernel, false, |a| {
        symbols.kernel_frames(a)
    });
    frames.reverse();
    let who = if waker.tgid == 0 {
        "[woken by the kernel: an interrupt on an idle CPU]".to_owned()
    } else if waker.tgid == target && waker.tid >= FOLDED_THREADS {
        let name = names.threads.get(&waker.tid).map_or("?", String::as_str);
        format!("[woken by thread {}]", thread_label(name, waker.tid))
    } else if waker.tgid == target {
        format!("[woken by thread {}]", waker.tid)
    } else {
        let name = names
            .processes
            .get(&waker.tgid)
            .map(String::as_str)
            .unwrap_or("?");
        format!("[woken by {name} (pid {})]", waker.tgid)
    };
    frames.push(Frame::marker(who));
    frames
}

/// Appends one stack's frames, root first (the kernel records them leaf
/// first). Return addresses point after the call: callers are looked up at
/// `ip - 1` so the call's own line and inlining are found.
pub fn push_frames(
    frames: &mut Vec<Frame>,
    stack: &Stack,
    user: bool,
    lookup: impl Fn(u64) -> AddrFrames,
) {
    match stack {
        Stack::Frames(ips) => {
            for addr in lookup_order(ips).into_iter().rev() {
                frames.extend(lookup(addr).iter().cloned());
            }
        }
        Stack::Empty => {}
        Stack::Lost(loss) => frames.push(Frame::lost(loss.frame_name(user))),
    }
}

/// The addresses to look up for a leaf-first stack, leaf first.
fn lookup_order(ips: &[u64]) -> Vec<u64> {
    ips.iter()
        .enumerate()
        .map(|(depth, &ip)| if depth == 0 { ip } else { ip.saturating_sub(1) })
        .collect()
}

/// The addresses a stack's frames are looked up at, for batching.
pub fn lookup_addrs(stack: &Stack) -> Vec<u64> {
    match stack {
        Stack::Frames(ips) => lookup_order(ips),
        _ => Vec::new(),
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

    #[test]
    fn self_and_total_shares() {
        let profile = Profile {
            kind: ProfileKind::Cpu,
            pid: 1,
            process_name: "p".into(),
            frequency: 99,
            duration: Duration::from_secs(1),
            executable: None,
            samples: vec![
                sample(&["main", "a", "leaf"], 6),
                sample(&["main", "b", "leaf"], 3),
                sample(&["main", "b"], 1),
                // Recursion counts once towards the total of a stack.
                sample(&["main", "rec", "rec", "rec"], 2),
            ],
        };
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
}
