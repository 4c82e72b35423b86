//! pprof (profile.proto, gzipped), the format `go tool pprof`, Pyroscope
//! and Parca read. Real `Location`/`Function`/`Mapping` tables: one location
//! per address with its inlined functions as extra lines, mappings with file
//! names and build IDs, and labels for the thread, the lock of a futex
//! wait, the state of an off-CPU block, and who woke the thread (`waker`)
//! with the stack it woke it from (`waker_stack`: for a lock, the code that
//! released it, as Go's mutex profile charges it); for Go waits, the
//! runtime's `wait_reason` and, in the gomutex profile (whose stacks are
//! the unlockers'), the goroutine that waited (`waiting_stack`).
//!
//! The messages are written out with prost's derive rather than generated
//! from profile.proto: generation needs `protoc`, and these eight messages
//! are small and stable (field numbers as in github.com/google/pprof's
//! proto/profile.proto).

use std::{collections::HashMap, io::Write, rc::Rc};

use prost::Message as _;

use crate::model::{FOLDED_THREADS, Frame, FrameKind, Profile, ProfileKind, Sample, short_stack};

/// profile.proto messages (the fields this exporter writes).
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(int64, tag = "9")]
        pub time_nanos: i64,
        #[prost(int64, tag = "10")]
        pub duration_nanos: i64,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
        #[prost(int64, repeated, tag = "13")]
        pub comment: Vec<i64>,
        #[prost(int64, tag = "14")]
        pub default_sample_type: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        pub label: Vec<Label>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(int64, tag = "1")]
        pub key: i64,
        #[prost(int64, tag = "2")]
        pub str: i64,
        #[prost(int64, tag = "3")]
        pub num: i64,
        #[prost(int64, tag = "4")]
        pub num_unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "4")]
        pub file_offset: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
        #[prost(int64, tag = "6")]
        pub build_id: i64,
        #[prost(bool, tag = "7")]
        pub has_functions: bool,
        #[prost(bool, tag = "8")]
        pub has_filenames: bool,
        #[prost(bool, tag = "9")]
        pub has_line_numbers: bool,
        #[prost(bool, tag = "10")]
        pub has_inline_frames: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
        #[prost(int64, tag = "5")]
        pub start_line: i64,
    }
}

/// Frames of the waker's stack a `waker_stack` label gives (leaf first).
const WAKER_STACK_DEPTH: usize = 12;

/// Frames of a Go mutex waiter's stack a `waiting_stack` label gives (leaf
/// first): deep enough to pass the runtime's and sync's own frames.
const WAITING_STACK_DEPTH: usize = 16;

/// Builds the tables of one profile.
#[derive(Default)]
struct Builder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: Vec<proto::Function>,
    function_ids: HashMap<(Rc<str>, Option<Rc<str>>), u64>,
    mappings: Vec<proto::Mapping>,
    mapping_ids: HashMap<Rc<str>, u64>,
    locations: Vec<proto::Location>,
    location_ids: HashMap<(u64, Rc<str>, FrameKind), u64>,
    /// Where each code file was mapped: (start, limit, file offset).
    code: HashMap<Rc<str>, (u64, u64, u64)>,
    /// Mappings with unnamed locations, left for a later symbolizer.
    unnamed: std::collections::HashSet<u64>,
}

impl Builder {
    fn new() -> Builder {
        let mut b = Builder::default();
        b.string(""); // string_table[0] must be "".
        b
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(id) = self.string_ids.get(s) {
            return *id;
        }
        let id = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), id);
        id
    }

    fn value_type(&mut self, kind: &str, unit: &str) -> proto::ValueType {
        proto::ValueType {
            r#type: self.string(kind),
            unit: self.string(unit),
        }
    }

    fn mapping(&mut self, path: &Rc<str>) -> u64 {
        if let Some(id) = self.mapping_ids.get(path) {
            return *id;
        }
        let id = self.mappings.len() as u64 + 1;
        let build_id = blazesym::helper::read_elf_build_id(&std::path::Path::new(&**path))
            .ok()
            .flatten()
            .map(|b| {
                b.iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect::<String>()
            })
            .unwrap_or_default();
        let (memory_start, memory_limit, file_offset) =
            self.code.get(path).copied().unwrap_or_default();
        let mapping = proto::Mapping {
            id,
            memory_start,
            memory_limit,
            file_offset,
            filename: self.string(path),
            build_id: self.string(&build_id),
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
        };
        self.mappings.push(mapping);
        self.mapping_ids.insert(path.clone(), id);
        id
    }

    fn function(&mut self, frame: &Frame) -> u64 {
        let key = (frame.name.clone(), frame.file.clone());
        if let Some(id) = self.function_ids.get(&key) {
            return *id;
        }
        let id = self.functions.len() as u64 + 1;
        let name = match frame.kind {
            FrameKind::Kernel => format!("{} [kernel]", frame.name),
            _ => frame.name.to_string(),
        };
        let function = proto::Function {
            id,
            name: self.string(&name),
            system_name: self.string(&frame.name),
            filename: frame.file.as_deref().map_or(0, |f| self.string(f)),
            start_line: 0,
        };
        self.functions.push(function);
        self.function_ids.insert(key, id);
        id
    }

    /// The location of a group of frames of one address: the function and
    /// those inlined into it (outermost first, as in the sample).
    fn location(&mut self, group: &[&Frame]) -> u64 {
        let Some(first) = group.first() else {
            return 0;
        };
        let key = (first.addr, first.name.clone(), first.kind);
        if let Some(id) = self.location_ids.get(&key) {
            return *id;
        }
        let id = self.locations.len() as u64 + 1;
        let mapping_id = first.module.as_ref().map_or(0, |m| self.mapping(m));
        // An unnamed frame in a known file is an address only, for a later
        // symbolizer (`go tool pprof` names it from the file, by build ID).
        let line = if first.kind == FrameKind::Unknown && mapping_id != 0 {
            self.unnamed.insert(mapping_id);
            Vec::new()
        } else {
            // pprof lists a location's lines innermost first.
            group
                .iter()
                .rev()
                .map(|f| proto::Line {
                    function_id: self.function(f),
                    line: f.line.map_or(0, i64::from),
                })
                .collect()
        };
        self.locations.push(proto::Location {
            id,
            mapping_id,
            address: first.addr,
            line,
        });
        self.location_ids.insert(key, id);
        id
    }

    /// Location ids of a sample, leaf first. Structural frames become labels
    /// instead, and so does the waker (pprof has one stack per sample).
    fn locations_of(&mut self, sample: &Sample) -> Vec<u64> {
        let own: Vec<&Frame> = sample
            .frames
            .iter()
            .filter(|f| f.kind != FrameKind::Marker)
            .collect();
        let mut groups: Vec<Vec<&Frame>> = Vec::new();
        for frame in own {
            match groups.last_mut() {
                Some(group) if frame.kind == FrameKind::Inlined => group.push(frame),
                _ => groups.push(vec![frame]),
            }
        }
        let mut ids: Vec<u64> = groups.iter().map(|g| self.location(g)).collect();
        ids.reverse();
        ids
    }

    fn label_str(&mut self, key: &str, value: &str) -> proto::Label {
        proto::Label {
            key: self.string(key),
            str: self.string(value),
            ..Default::default()
        }
    }
}

/// The sample types, period type and period of a profile kind.
fn types(profile: &Profile, b: &mut Builder) -> (Vec<proto::ValueType>, proto::ValueType, i64) {
    match profile.kind {
        ProfileKind::Cpu => (
            vec![
                b.value_type("samples", "count"),
                b.value_type("cpu", "nanoseconds"),
            ],
            b.value_type("cpu", "nanoseconds"),
            cpu_period_ns(profile),
        ),
        ProfileKind::OffCpu => (
            vec![
                b.value_type("samples", "count"),
                b.value_type("off_cpu", "nanoseconds"),
            ],
            b.value_type("off_cpu", "nanoseconds"),
            1,
        ),
        // Go's own mutex and block profiles name theirs so too.
        ProfileKind::Futex | ProfileKind::GoMutex | ProfileKind::GoBlock => (
            vec![
                b.value_type("contentions", "count"),
                b.value_type("delay", "nanoseconds"),
            ],
            b.value_type("contentions", "count"),
            1,
        ),
        ProfileKind::Threads => (
            vec![b.value_type("threads", "count")],
            b.value_type("threads", "count"),
            1,
        ),
        // As Go's own goroutine profile names them.
        ProfileKind::Goroutines => (
            vec![b.value_type("goroutine", "count")],
            b.value_type("goroutine", "count"),
            1,
        ),
    }
}

/// Nanoseconds one cpu sample stands for.
fn cpu_period_ns(profile: &Profile) -> i64 {
    1_000_000_000 / profile.frequency.max(1) as i64
}

/// The profile as a profile.proto message.
pub fn to_proto(profile: &Profile, start_unix_ns: i64) -> proto::Profile {
    let mut b = Builder::new();
    // The first executable mapping of each file.
    for m in profile.mappings.iter().rev() {
        b.code.insert(m.path.clone(), (m.start, m.limit, m.offset));
    }
    // pprof takes the first mapping for the main binary.
    if let Some(exe) = &profile.executable {
        b.mapping(exe);
    }
    let (sample_type, period_type, period) = types(profile, &mut b);
    let mut samples = Vec::with_capacity(profile.samples.len());
    for sample in &profile.samples {
        let location_id = b.locations_of(sample);
        let value = match profile.kind {
            ProfileKind::Cpu => vec![sample.count as i64, sample.value as i64 * period],
            ProfileKind::OffCpu
            | ProfileKind::Futex
            | ProfileKind::GoMutex
            | ProfileKind::GoBlock => {
                vec![sample.count as i64, sample.value as i64]
            }
            ProfileKind::Threads | ProfileKind::Goroutines => vec![sample.value as i64],
        };
        let mut label = Vec::new();
        if profile.per_process {
            label.push(proto::Label {
                key: b.string("pid"),
                num: i64::from(sample.pid),
                ..Default::default()
            });
            label.push(b.label_str("process", &sample.process));
        }
        // Folded exited threads have a name but no one thread id; a Go
        // goroutine's wait belongs to no thread (tid 0).
        if sample.tid != 0 && sample.tid < FOLDED_THREADS {
            label.push(proto::Label {
                key: b.string("thread_id"),
                num: i64::from(sample.tid),
                ..Default::default()
            });
        }
        if sample.tid != 0 {
            label.push(b.label_str("thread_name", &sample.thread_name));
        }
        if sample.in_progress {
            label.push(b.label_str("still_blocked", "true"));
        }
        if let Some(reason) = &sample.reason {
            label.push(b.label_str("wait_reason", reason));
        }
        if let Some(stack) = sample
            .waiting
            .as_deref()
            .and_then(|w| short_stack(w, WAITING_STACK_DEPTH))
        {
            label.push(b.label_str("waiting_stack", &stack));
        }
        if let Some(lock) = &sample.lock {
            label.push(b.label_str("lock", lock));
        }
        if let Some(state) = sample.state {
            label.push(b.label_str("state", state));
        }
        if let Some(waker) = &sample.waker {
            label.push(b.label_str("waker", &waker.who));
            if let Some(stack) = waker.short_stack(WAKER_STACK_DEPTH) {
                label.push(b.label_str("waker_stack", &stack));
            }
        }
        samples.push(proto::Sample {
            location_id,
            value,
            label,
        });
    }
    let comment = b.string(&format!(
        "profiler {} profile of {}",
        profile.kind.name(),
        profile.target()
    ));
    // A mapping with unnamed locations is not fully symbolized.
    for mapping in &mut b.mappings {
        if b.unnamed.contains(&mapping.id) {
            mapping.has_functions = false;
            mapping.has_filenames = false;
            mapping.has_line_numbers = false;
            mapping.has_inline_frames = false;
        }
    }
    proto::Profile {
        sample_type,
        sample: samples,
        mapping: b.mappings,
        location: b.locations,
        function: b.functions,
        string_table: b.strings,
        time_nanos: start_unix_ns,
        duration_nanos: i64::try_from(profile.duration.as_nanos()).unwrap_or(i64::MAX),
        period_type: Some(period_type),
        period,
        comment: vec![comment],
        default_sample_type: 0,
    }
}

/// Writes the profile gzipped, as `go tool pprof` reads it.
pub fn write(profile: &Profile, start_unix_ns: i64, out: &mut impl Write) -> std::io::Result<()> {
    let bytes = to_proto(profile, start_unix_ns).encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    gz.write_all(&bytes)?;
    gz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn frame(name: &str, kind: FrameKind, addr: u64) -> Frame {
        Frame {
            name: name.into(),
            kind,
            addr,
            module: None,
            file: Some("app.c".into()),
            line: Some(7),
        }
    }

    /// A golden test: a small hand-built futex profile and the exact tables.
    #[test]
    fn futex_profile_tables() {
        let profile = Profile {
            kind: ProfileKind::Futex,
            pid: 42,
            process_name: "app".into(),
            frequency: 99,
            duration: Duration::from_secs(2),
            executable: None,
            mappings: Vec::new(),
            per_process: false,
            samples: vec![Sample {
                tid: 43,
                thread_name: "worker".into(),
                frames: vec![
                    Frame::marker("g_lock".into()),
                    frame("main", FrameKind::User, 0x10),
                    frame("hold", FrameKind::User, 0x20),
                    frame("inlined_lock", FrameKind::Inlined, 0x20),
                    frame("futex_wait", FrameKind::Kernel, 0x30),
                ],
                value: 5_000,
                count: 2,
                lock: Some("g_lock".into()),
                ..Sample::default()
            }],
        };
        let p = to_proto(&profile, 1_000);
        let s = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(s(0), "");
        let types: Vec<(&str, &str)> = p
            .sample_type
            .iter()
            .map(|t| (s(t.r#type), s(t.unit)))
            .collect();
        assert_eq!(types, [("contentions", "count"), ("delay", "nanoseconds")]);
        assert_eq!(p.sample.len(), 1);
        let sample = &p.sample[0];
        assert_eq!(sample.value, [2, 5_000]);
        // Leaf first; the marker frame is a label, the inlined frame shares
        // its caller's location.
        assert_eq!(sample.location_id, [3, 2, 1]);
        assert_eq!(p.location.len(), 3);
        let hold = &p.location[1];
        assert_eq!(hold.address, 0x20);
        let names: Vec<&str> = hold
            .line
            .iter()
            .map(|l| s(p.function[(l.function_id - 1) as usize].name))
            .collect();
        assert_eq!(names, ["inlined_lock", "hold"], "innermost line first");
        assert_eq!(s(p.function[3].name), "futex_wait [kernel]");
        let labels: Vec<(&str, String)> = sample
            .label
            .iter()
            .map(|l| {
                let v = if l.str != 0 {
                    s(l.str).to_owned()
                } else {
                    l.num.to_string()
                };
                (s(l.key), v)
            })
            .collect();
        assert_eq!(
            labels,
            [
                ("thread_id", "43".to_owned()),
                ("thread_name", "worker".to_owned()),
                ("lock", "g_lock".to_owned())
            ]
        );
        assert_eq!(p.duration_nanos, 2_000_000_000);
        assert_eq!(s(p.comment[0]), "profiler futex profile of app (PID 42)");
    }

    #[test]
    fn cpu_values_are_samples_and_nanoseconds() {
        let profile = Profile {
            kind: ProfileKind::Cpu,
            pid: 1,
            process_name: "p".into(),
            frequency: 100,
            duration: Duration::from_secs(1),
            executable: None,
            mappings: Vec::new(),
            per_process: false,
            samples: vec![Sample {
                tid: 1,
                thread_name: "p".into(),
                frames: vec![frame("main", FrameKind::User, 1)],
                value: 3,
                count: 3,
                ..Sample::default()
            }],
        };
        let p = to_proto(&profile, 0);
        assert_eq!(p.period, 10_000_000);
        assert_eq!(p.sample[0].value, [3, 30_000_000]);
        let mut gz = Vec::new();
        write(&profile, 0, &mut gz).expect("write to a Vec");
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
    }
}
