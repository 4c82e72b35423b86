//! The in-memory profile every exporter reads: symbolized stacks (root
//! first) with their values, the target, and what was lost on the way.

use std::{collections::HashMap, rc::Rc, time::Duration};

use crate::{
    collect::{RawStack, Stack},
    symbolize::{Frame, FrameKind, Symbolize},
};

/// What a profile measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileKind {
    /// On-CPU samples at a fixed frequency.
    Cpu,
}

impl ProfileKind {
    /// The unit of a sample's value.
    pub fn unit(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "samples",
        }
    }
}

/// One unique stack and its value (a sample count for cpu profiles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub tid: u32,
    pub thread_name: Rc<str>,
    /// Root (outermost caller) first, leaf last.
    pub frames: Vec<Frame>,
    pub value: u64,
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
        }
    }

    /// Fills the profile from drained stacks; every address in `stacks` must
    /// have been given to `symbols.resolve` first.
    pub fn with_samples(
        mut self,
        stacks: &HashMap<RawStack, u64>,
        symbols: &Symbolize,
        thread_names: &HashMap<u32, String>,
    ) -> Profile {
        let process: Rc<str> = self.process_name.as_str().into();
        let mut names: HashMap<u32, Rc<str>> = HashMap::new();
        let mut samples: Vec<Sample> = stacks
            .iter()
            .map(|(raw, &value)| {
                let thread_name = names
                    .entry(raw.tid)
                    .or_insert_with(|| {
                        thread_names
                            .get(&raw.tid)
                            .map(|n| Rc::from(n.as_str()))
                            .unwrap_or_else(|| process.clone())
                    })
                    .clone();
                Sample {
                    tid: raw.tid,
                    thread_name,
                    frames: frames_of(raw, symbols),
                    value,
                }
            })
            .collect();
        // A stable order: exporters and tests see the same output each run.
        samples.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.tid.cmp(&b.tid)));
        self.samples = samples;
        self
    }

    /// Sum of all sample values.
    pub fn total(&self) -> u64 {
        self.samples.iter().map(|s| s.value).sum()
    }

    /// Functions by self value (leaf) and total value (anywhere on the
    /// stack, counted once per stack), largest first.
    pub fn function_shares(&self) -> Vec<FunctionShare> {
        let mut by_name: HashMap<Rc<str>, FunctionShare> = HashMap::new();
        for sample in &self.samples {
            let mut seen: Vec<&Rc<str>> = Vec::with_capacity(sample.frames.len());
            for frame in &sample.frames {
                if !seen.contains(&&frame.name) {
                    seen.push(&frame.name);
                    by_name
                        .entry(frame.name.clone())
                        .or_insert_with(|| FunctionShare::new(frame))
                        .total += sample.value;
                }
            }
            if let Some(leaf) = sample.frames.last() {
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

/// Appends one stack's frames, root first (the kernel records them leaf
/// first). Return addresses point after the call: callers are looked up at
/// `ip - 1` so the call's own line and inlining are found.
fn push_frames(
    frames: &mut Vec<Frame>,
    stack: &Stack,
    user: bool,
    lookup: impl Fn(u64) -> crate::symbolize::AddrFrames,
) {
    match stack {
        Stack::Frames(ips) => {
            for addr in lookup_order(ips).into_iter().rev() {
                frames.extend(lookup(addr).iter().cloned());
            }
        }
        Stack::Empty => {}
        Stack::Lost(loss) => frames.push(Frame::marker(loss.frame_name(user))),
    }
}

/// The addresses to look up for a leaf-first stack, leaf first.
fn lookup_order(ips: &[u64]) -> Vec<u64> {
    ips.iter()
        .enumerate()
        .map(|(depth, &ip)| if depth == 0 { ip } else { ip.saturating_sub(1) })
        .collect()
}

/// The addresses `frames_of` will look up, for batching symbolization.
pub fn lookup_addrs(raw: &RawStack) -> (Vec<u64>, Vec<u64>) {
    let addrs = |stack: &Stack| match stack {
        Stack::Frames(ips) => lookup_order(ips),
        _ => Vec::new(),
    };
    (addrs(&raw.user), addrs(&raw.kernel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> Frame {
        Frame {
            name: name.into(),
            kind: FrameKind::User,
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
