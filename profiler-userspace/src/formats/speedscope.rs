//! speedscope's JSON file format, the "sampled" profile type: shared frames
//! (name, file, line) and, per unique stack, the frame indices root first
//! with a weight. Weights are nanoseconds for every kind (a cpu sample
//! weighs one sampling period), so speedscope shows times.

use std::{collections::HashMap, io::Write, rc::Rc};

use serde_json::{Value, json};

use crate::model::{Frame, FrameKind, Profile, ProfileKind, process_label, thread_label};

/// The schema speedscope publishes for its file format.
const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

/// What makes two frames the same speedscope frame: name, kind, file, line.
type FrameKey = (Rc<str>, FrameKind, Option<Rc<str>>, Option<u32>);

/// The speedscope document of a profile.
pub fn to_json(profile: &Profile) -> Value {
    let mut frames: Vec<Value> = Vec::new();
    let mut index: HashMap<FrameKey, usize> = HashMap::new();
    let mut intern = |frame: &Frame| -> usize {
        let key = (
            frame.name.clone(),
            frame.kind,
            frame.file.clone(),
            frame.line,
        );
        *index.entry(key).or_insert_with(|| {
            let name = match frame.kind {
                FrameKind::Kernel => format!("{} [kernel]", frame.name),
                FrameKind::Inlined => format!("{} [inlined]", frame.name),
                _ => frame.name.to_string(),
            };
            let mut f = json!({ "name": name });
            if let Some(file) = &frame.file {
                f["file"] = json!(file.as_ref());
            }
            if let Some(line) = frame.line {
                f["line"] = json!(line);
            }
            frames.push(f);
            frames.len() - 1
        })
    };
    let period = match profile.kind {
        ProfileKind::Cpu => 1_000_000_000 / profile.frequency.max(1),
        ProfileKind::OffCpu
        | ProfileKind::Futex
        | ProfileKind::Threads
        | ProfileKind::Goroutines
        | ProfileKind::GoMutex
        | ProfileKind::GoBlock => 1,
    };
    let mut samples = Vec::with_capacity(profile.samples.len());
    let mut weights = Vec::with_capacity(profile.samples.len());
    for sample in &profile.samples {
        let mut stack = Vec::new();
        if profile.per_process {
            stack.push(intern(&Frame::marker(process_label(
                &sample.process,
                sample.pid,
            ))));
        }
        stack.push(intern(&Frame::marker(thread_label(
            &sample.thread_name,
            sample.tid,
        ))));
        stack.extend(profile.drawn_frames(sample).iter().map(|f| intern(f)));
        samples.push(stack);
        weights.push(sample.value.saturating_mul(period));
    }
    let total: u64 = weights.iter().sum();
    let name = format!("{} profile of {}", profile.kind.name(), profile.target());
    json!({
        "$schema": SCHEMA,
        "name": name,
        "exporter": concat!("profiler ", env!("CARGO_PKG_VERSION")),
        "activeProfileIndex": 0,
        "shared": { "frames": frames },
        "profiles": [{
            "type": "sampled",
            "name": name,
            "unit": "nanoseconds",
            "startValue": 0,
            "endValue": total,
            "samples": samples,
            "weights": weights,
        }],
    })
}

/// Writes the profile as speedscope JSON.
pub fn write(profile: &Profile, out: &mut impl Write) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, &to_json(profile)).map_err(std::io::Error::other)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::Sample;

    /// A golden test: a small hand-built cpu profile, the whole document.
    #[test]
    fn cpu_document() {
        let frame = |name: &str, kind, line: Option<u32>| Frame {
            name: name.into(),
            kind,
            addr: 1,
            module: None,
            file: line.map(|_| Rc::from("a.c")),
            line,
        };
        let profile = Profile {
            kind: ProfileKind::Cpu,
            pid: 7,
            process_name: "app".into(),
            frequency: 100,
            duration: Duration::from_secs(1),
            executable: None,
            mappings: Vec::new(),
            per_process: false,
            samples: vec![
                Sample {
                    tid: 7,
                    thread_name: "app".into(),
                    frames: vec![
                        frame("main", FrameKind::User, Some(3)),
                        frame("read", FrameKind::Kernel, None),
                    ],
                    value: 2,
                    count: 2,
                    ..Sample::default()
                },
                Sample {
                    tid: 7,
                    thread_name: "app".into(),
                    frames: vec![frame("main", FrameKind::User, Some(3))],
                    value: 1,
                    count: 1,
                    ..Sample::default()
                },
            ],
        };
        let expected = json!({
            "$schema": SCHEMA,
            "name": "cpu profile of app (PID 7)",
            "exporter": concat!("profiler ", env!("CARGO_PKG_VERSION")),
            "activeProfileIndex": 0,
            "shared": { "frames": [
                { "name": "app-7" },
                { "name": "main", "file": "a.c", "line": 3 },
                { "name": "read [kernel]" },
            ]},
            "profiles": [{
                "type": "sampled",
                "name": "cpu profile of app (PID 7)",
                "unit": "nanoseconds",
                "startValue": 0,
                "endValue": 30_000_000u64,
                "samples": [[0, 1, 2], [0, 1]],
                "weights": [20_000_000u64, 10_000_000u64],
            }],
        });
        assert_eq!(to_json(&profile), expected);
    }
}
