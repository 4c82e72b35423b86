//! A profile read back from a file any tool wrote (folded stacks, pprof, a
//! Go goroutine dump), reduced to what comparing two profiles needs: stacks
//! of function names with their values, one value per sample type.

use std::rc::Rc;

/// What a file was, as the reader found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFormat {
    /// Collapsed stacks (`a;b;c 12`): ours, inferno's collapse tools, bcc.
    Folded,
    /// profile.proto, gzipped or not.
    Pprof,
    /// A goroutine dump as Go's `/debug/pprof/goroutine?debug=2` writes it,
    /// or as `profiler dump` prints it.
    GoroutineDump,
    /// Go's `/debug/pprof/goroutine?debug=1`: stacks counted.
    GoroutineCounts,
    /// A profile recorded in this run (`record --compare`), not read.
    Recorded,
}

impl LoadedFormat {
    pub fn name(self) -> &'static str {
        match self {
            LoadedFormat::Folded => "folded",
            LoadedFormat::Pprof => "pprof",
            LoadedFormat::GoroutineDump => "goroutine dump",
            LoadedFormat::GoroutineCounts => "goroutine counts (debug=1)",
            LoadedFormat::Recorded => "this recording",
        }
    }
}

/// One sample type: what a value counts and in what unit (pprof's
/// `ValueType`, as strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueType {
    pub name: String,
    pub unit: String,
}

impl ValueType {
    pub fn new(name: &str, unit: &str) -> ValueType {
        ValueType {
            name: name.to_owned(),
            unit: unit.to_owned(),
        }
    }
}

impl std::fmt::Display for ValueType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.unit)
    }
}

/// One stack and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedStack {
    /// Function names, root (outermost caller) first.
    pub frames: Vec<Rc<str>>,
    /// One per sample type, never negative.
    pub values: Vec<i64>,
    /// For goroutines from a dump, where they were created (the function
    /// holding the `go` statement).
    pub site: Option<Rc<str>>,
}

/// What a profile measures, told from its sample types: profiles of two
/// different kinds are not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedKind {
    Cpu,
    OffCpu,
    /// Lock waits: Go's mutex and block profiles, our futex profile.
    Contention,
    Heap,
    Goroutines,
    Threads,
    /// Folded stacks say nothing of what they count.
    Unknown,
}

impl LoadedKind {
    pub fn name(self) -> &'static str {
        match self {
            LoadedKind::Cpu => "cpu",
            LoadedKind::OffCpu => "off-CPU",
            LoadedKind::Contention => "contention (mutex, block or futex)",
            LoadedKind::Heap => "heap",
            LoadedKind::Goroutines => "goroutine",
            LoadedKind::Threads => "threads",
            LoadedKind::Unknown => "unknown",
        }
    }

    /// The kind the sample types of a profile name.
    pub fn of(types: &[ValueType]) -> LoadedKind {
        let has = |name: &str| types.iter().any(|t| t.name == name);
        if has("cpu") {
            LoadedKind::Cpu
        } else if has("off_cpu") {
            LoadedKind::OffCpu
        } else if has("contentions") || has("delay") {
            LoadedKind::Contention
        } else if has("inuse_space") || has("alloc_space") || has("space") {
            LoadedKind::Heap
        } else if has("goroutine") || has("goroutines") {
            LoadedKind::Goroutines
        } else if has("threads") {
            LoadedKind::Threads
        } else if has("samples") && types.len() == 1 {
            LoadedKind::Cpu
        } else {
            LoadedKind::Unknown
        }
    }
}

/// A profile read from a file.
#[derive(Debug, Clone)]
pub struct LoadedProfile {
    /// The file, as the user named it.
    pub origin: String,
    pub format: LoadedFormat,
    /// At least one.
    pub sample_types: Vec<ValueType>,
    /// The sample type the file prefers (pprof's `default_sample_type`);
    /// else the last, as `go tool pprof` takes it.
    pub default_type: usize,
    pub stacks: Vec<LoadedStack>,
}

impl LoadedProfile {
    pub fn kind(&self) -> LoadedKind {
        match self.format {
            LoadedFormat::GoroutineDump | LoadedFormat::GoroutineCounts => LoadedKind::Goroutines,
            _ => LoadedKind::of(&self.sample_types),
        }
    }

    /// The index of the sample type `-sample_index` names: a number, or a
    /// type's name (`cpu`, `inuse_space`, `samples`).
    pub fn sample_index(&self, wanted: Option<&str>) -> Result<usize, String> {
        let Some(wanted) = wanted else {
            return Ok(self.default_type);
        };
        if let Ok(index) = wanted.parse::<usize>() {
            return if index < self.sample_types.len() {
                Ok(index)
            } else {
                Err(format!(
                    "--sample-index {index} is out of range: {} has {} sample types ({})",
                    self.origin,
                    self.sample_types.len(),
                    self.type_list()
                ))
            };
        }
        self.sample_types
            .iter()
            .position(|t| t.name == wanted)
            .ok_or_else(|| {
                format!(
                    "--sample-index {wanted}: {} has no such sample type; it has {}",
                    self.origin,
                    self.type_list()
                )
            })
    }

    /// The sample types, as `samples/count, cpu/nanoseconds`.
    pub fn type_list(&self) -> String {
        self.sample_types
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The index of a type that counts events (`samples`, `contentions`,
    /// `inuse_objects` for `inuse_space`), to judge sampling noise by; the
    /// chosen type itself when it counts.
    pub fn count_index(&self, chosen: usize) -> Option<usize> {
        let t = self.sample_types.get(chosen)?;
        if t.unit == "count" || self.format == LoadedFormat::Folded {
            return Some(chosen);
        }
        let paired = match t.name.as_str() {
            "inuse_space" => "inuse_objects",
            "alloc_space" => "alloc_objects",
            "delay" => "contentions",
            _ => "samples",
        };
        self.sample_types.iter().position(|t| t.name == paired)
    }
}
