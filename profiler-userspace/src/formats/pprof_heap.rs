//! Go's heap profile written as Go's own `/debug/pprof/heap` writes it
//! (`writeHeapProto`, `runtime/pprof/protomem.go`): four sample types
//! (`alloc_objects/count`, `alloc_space/bytes`, `inuse_objects/count`,
//! `inuse_space/bytes`, the last the default), period type `space/bytes`
//! with `runtime.MemProfileRate` as the period, one sample per bucket with
//! its object size as the numeric label `bytes`; and as folded stacks
//! valued by `inuse_space`.
//!
//! The tables (locations with inlined lines, functions, mappings with the
//! executable first) are [`super::pprof`]'s: the samples go through its
//! [`super::pprof::to_proto`] as a one-value profile, and the values, types
//! and period are then put in Go's shape, so the frames read exactly as in
//! the other profiles.

use std::{io::Write, rc::Rc, time::Duration};

use prost::Message as _;

use super::{
    folded::{self, FoldedOptions},
    pprof::{self, proto},
};
use crate::{
    go::heap::HeapSample,
    model::{Profile, ProfileKind, Sample},
};

/// A heap profile read from a Go process, ready to write.
#[derive(Debug, Clone)]
pub struct HeapPprof<'a> {
    pub pid: u32,
    pub process_name: &'a str,
    /// The executable, the first mapping.
    pub executable: Option<Rc<str>>,
    /// `runtime.MemProfileRate` when read: pprof's period.
    pub rate: i64,
    /// The Go version, for the comment (`go1.27.3`).
    pub go_version: Option<&'a str>,
    pub samples: &'a [HeapSample],
}

/// The names of the four values, in Go's order.
pub const SAMPLE_TYPES: [(&str, &str); 4] = [
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
];

impl HeapPprof<'_> {
    /// The samples as a [`Profile`] of one value each (`value`), for the
    /// writers of frames: the kind is only a carrier (no labels, no
    /// thread); nothing merges or reorders the samples.
    fn carrier(&self, value: impl Fn(&HeapSample) -> u64) -> Profile {
        let name: Rc<str> = Rc::from(self.process_name);
        Profile {
            kind: ProfileKind::Goroutines,
            pid: self.pid,
            process_name: self.process_name.to_owned(),
            frequency: 0,
            duration: Duration::ZERO,
            samples: self
                .samples
                .iter()
                .map(|s| Sample {
                    tid: 0,
                    thread_name: name.clone(),
                    frames: s.frames.clone(),
                    value: value(s),
                    count: 1,
                    ..Sample::default()
                })
                .collect(),
            executable: self.executable.clone(),
            mappings: Vec::new(),
            per_process: false,
        }
    }

    /// The profile as a profile.proto message taken at `time_unix_ns`.
    pub fn to_proto(&self, time_unix_ns: i64) -> std::io::Result<proto::Profile> {
        let mut message = pprof::to_proto(&self.carrier(|_| 1), time_unix_ns);
        if message.sample.len() != self.samples.len() {
            return Err(std::io::Error::other(format!(
                "the heap profile's {} records became {} samples",
                self.samples.len(),
                message.sample.len()
            )));
        }
        let mut strings = Strings(&mut message.string_table);
        let sample_type: Vec<proto::ValueType> = SAMPLE_TYPES
            .iter()
            .map(|(kind, unit)| strings.value_type(kind, unit))
            .collect();
        let period_type = strings.value_type("space", "bytes");
        let bytes = strings.id("bytes");
        let default = strings.id("inuse_space");
        let comment = strings.id(&format!(
            "profiler goheap profile of PID {} ({}{}): Go's heap profile read from the \
             runtime's memory-profile buckets",
            self.pid,
            self.process_name,
            self.go_version
                .map(|v| format!(", {v}"))
                .unwrap_or_default()
        ));
        for (sample, heap) in message.sample.iter_mut().zip(self.samples) {
            let v = heap.values;
            sample.value = vec![
                v.alloc_objects,
                v.alloc_space,
                v.inuse_objects,
                v.inuse_space,
            ];
            // As Go: the object size, when the bucket has objects.
            if heap.object_size != 0 {
                sample.label.push(proto::Label {
                    key: bytes,
                    num: i64::try_from(heap.object_size).unwrap_or(i64::MAX),
                    ..Default::default()
                });
            }
        }
        message.sample_type = sample_type;
        message.period_type = Some(period_type);
        message.period = self.rate;
        message.duration_nanos = 0;
        message.comment = vec![comment];
        message.default_sample_type = default;
        Ok(message)
    }

    /// Writes the profile gzipped, as `go tool pprof` reads it.
    pub fn write_pprof(&self, time_unix_ns: i64, out: &mut impl Write) -> std::io::Result<()> {
        let bytes = self.to_proto(time_unix_ns)?.encode_to_vec();
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        gz.write_all(&bytes)?;
        gz.finish()?;
        Ok(())
    }

    /// Writes folded stacks valued by `inuse_space` (bytes in use).
    pub fn write_folded(&self, out: &mut impl Write) -> std::io::Result<()> {
        let profile = self.carrier(|s| u64::try_from(s.values.inuse_space).unwrap_or(0));
        folded::write(&profile, FoldedOptions::default(), out)
    }
}

/// The string table of a message being completed.
struct Strings<'a>(&'a mut Vec<String>);

impl Strings<'_> {
    fn id(&mut self, s: &str) -> i64 {
        if let Some(i) = self.0.iter().position(|t| t == s) {
            return i as i64;
        }
        self.0.push(s.to_owned());
        self.0.len() as i64 - 1
    }

    fn value_type(&mut self, kind: &str, unit: &str) -> proto::ValueType {
        proto::ValueType {
            r#type: self.id(kind),
            unit: self.id(unit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        go::heap::HeapValues,
        model::{Frame, FrameKind},
    };

    fn frame(name: &str, kind: FrameKind, addr: u64) -> Frame {
        Frame {
            name: name.into(),
            kind,
            addr,
            module: Some("/bin/app".into()),
            file: Some("app.go".into()),
            line: Some(7),
        }
    }

    #[test]
    fn four_values_and_go_shape() {
        let values = HeapValues {
            alloc_objects: 10,
            alloc_space: 655360,
            inuse_objects: 8,
            inuse_space: 524288,
        };
        let samples = vec![
            HeapSample {
                frames: vec![
                    frame("main.main", FrameKind::User, 0x10),
                    frame("main.keepLive", FrameKind::User, 0x20),
                ],
                values,
                object_size: 65536,
            },
            HeapSample {
                frames: vec![frame("main.main", FrameKind::User, 0x30)],
                values: HeapValues::default(),
                object_size: 0,
            },
        ];
        let heap = HeapPprof {
            pid: 7,
            process_name: "app",
            executable: Some("/bin/app".into()),
            rate: 524288,
            go_version: Some("go1.27.3"),
            samples: &samples,
        };
        let message = heap.to_proto(1).expect("builds");
        let s = |i: i64| message.string_table[i as usize].as_str();
        let types: Vec<(&str, &str)> = message
            .sample_type
            .iter()
            .map(|t| (s(t.r#type), s(t.unit)))
            .collect();
        assert_eq!(types, SAMPLE_TYPES);
        let period = message.period_type.as_ref().expect("period type");
        assert_eq!((s(period.r#type), s(period.unit)), ("space", "bytes"));
        assert_eq!(message.period, 524288);
        assert_eq!(s(message.default_sample_type), "inuse_space");
        assert_eq!(message.sample.len(), 2);
        assert_eq!(message.sample[0].value, vec![10, 655360, 8, 524288]);
        assert_eq!(message.sample[0].location_id.len(), 2);
        let label = &message.sample[0].label[0];
        assert_eq!((s(label.key), label.num), ("bytes", 65536));
        assert!(message.sample[1].label.is_empty());
        // The leaf's function.
        let leaf = message
            .location
            .iter()
            .find(|l| l.id == message.sample[0].location_id[0])
            .expect("location");
        let function = message
            .function
            .iter()
            .find(|f| f.id == leaf.line[0].function_id)
            .expect("function");
        assert_eq!(s(function.name), "main.keepLive");

        let mut folded = Vec::new();
        heap.write_folded(&mut folded).expect("writes");
        assert_eq!(
            String::from_utf8_lossy(&folded),
            "app;main.main;main.keepLive 524288\n"
        );
    }
}
