//! Folded ("collapsed") stacks, the format inferno and flamegraph.pl read:
//! one line per unique stack, `process;root;...;leaf value`, sorted.
//! Kernel frames end in `_[k]` and inlined frames in `_[i]`, the suffixes
//! flamegraph tools colour.

use std::{collections::BTreeMap, io::Write};

use crate::model::{Frame, FrameKind, Profile, process_label, thread_label};

/// Options of the folded output.
#[derive(Debug, Clone, Copy, Default)]
pub struct FoldedOptions {
    /// Insert a `thread-name-tid` frame under the process name.
    pub per_thread: bool,
}

/// The folded lines of `profile`, merged and sorted.
pub fn lines(profile: &Profile, options: FoldedOptions) -> Vec<(String, u64)> {
    let mut merged: BTreeMap<String, u64> = BTreeMap::new();
    for sample in &profile.samples {
        // One process: its name; several: each stack's own `name (PID)`.
        let mut line = if profile.per_process {
            clean(&process_label(&sample.process, sample.pid))
        } else {
            clean(&profile.process_name)
        };
        if options.per_thread {
            line.push(';');
            line.push_str(&clean(&thread_label(&sample.thread_name, sample.tid)));
        }
        for frame in profile.drawn_frames(sample) {
            line.push(';');
            line.push_str(&frame_text(&frame));
        }
        *merged.entry(line).or_default() += sample.value;
    }
    merged.into_iter().filter(|(_, v)| *v > 0).collect()
}

/// Writes the folded lines of `profile` to `out`.
pub fn write(
    profile: &Profile,
    options: FoldedOptions,
    out: &mut impl Write,
) -> std::io::Result<()> {
    for (stack, value) in lines(profile, options) {
        writeln!(out, "{stack} {value}")?;
    }
    Ok(())
}

fn frame_text(frame: &Frame) -> String {
    let name = clean(&frame.name);
    match frame.kind {
        FrameKind::Kernel => format!("{name}_[k]"),
        FrameKind::Inlined => format!("{name}_[i]"),
        FrameKind::User | FrameKind::Unknown | FrameKind::Lost | FrameKind::Marker => name,
    }
}

/// Frame names may not contain the separators of the format.
fn clean(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            ';' => ':',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{rc::Rc, time::Duration};

    use super::*;
    use crate::model::{ProfileKind, Sample};

    fn frame(name: &str, kind: FrameKind) -> Frame {
        Frame {
            name: name.into(),
            kind,
            addr: 0,
            module: None,
            file: None,
            line: None,
        }
    }

    fn profile() -> Profile {
        let sample = |tid: u32, thread: &str, names: &[(&str, FrameKind)], value| Sample {
            tid,
            thread_name: Rc::from(thread),
            frames: names.iter().map(|(n, k)| frame(n, *k)).collect(),
            value,
            count: value,
            ..Sample::default()
        };
        Profile {
            kind: ProfileKind::Cpu,
            pid: 1,
            process_name: "app".into(),
            frequency: 99,
            duration: Duration::from_secs(1),
            executable: None,
            mappings: Vec::new(),
            per_process: false,
            samples: vec![
                sample(
                    10,
                    "app",
                    &[("main", FrameKind::User), ("work", FrameKind::User)],
                    3,
                ),
                sample(
                    11,
                    "worker",
                    &[("main", FrameKind::User), ("work", FrameKind::User)],
                    2,
                ),
                sample(
                    10,
                    "app",
                    &[
                        ("main", FrameKind::User),
                        ("helper", FrameKind::Inlined),
                        ("sys_write", FrameKind::Kernel),
                    ],
                    1,
                ),
                sample(10, "app", &[("a;b", FrameKind::User)], 4),
            ],
        }
    }

    #[test]
    fn merges_threads_and_marks_kernel_and_inlined_frames() {
        let mut out = Vec::new();
        write(&profile(), FoldedOptions::default(), &mut out).expect("write to a Vec");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "app;a:b 4\napp;main;helper_[i];sys_write_[k] 1\napp;main;work 5\n"
        );
    }

    #[test]
    fn several_processes_each_start_with_their_own() {
        let mut profile = profile();
        profile.per_process = true;
        for (i, sample) in profile.samples.iter_mut().enumerate() {
            (sample.pid, sample.process) = if i == 1 {
                (8, "worker".into())
            } else {
                (7, "master".into())
            };
        }
        let lines = lines(&profile, FoldedOptions { per_thread: true });
        assert!(lines.contains(&("master (7);app-10;main;work".to_owned(), 3)));
        assert!(lines.contains(&("worker (8);worker-11;main;work".to_owned(), 2)));
        assert!(
            lines.iter().all(|(l, _)| !l.starts_with("app;")),
            "{lines:?}"
        );
    }

    #[test]
    fn splits_by_thread() {
        let lines = lines(&profile(), FoldedOptions { per_thread: true });
        assert!(lines.contains(&("app;app-10;main;work".to_owned(), 3)));
        assert!(lines.contains(&("app;worker-11;main;work".to_owned(), 2)));
    }
}
