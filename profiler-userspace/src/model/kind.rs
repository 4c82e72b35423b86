//! The kinds of profile: those a recording takes, and what a dump of a
//! live process reads.

/// A kind of profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProfileKind {
    /// On-CPU samples at a fixed frequency.
    Cpu,
    /// Time switched out, weighted in nanoseconds.
    OffCpu,
    /// Futex waits by lock address, weighted in nanoseconds.
    Futex,
    /// What each thread is doing at one moment (`profiler dump`): one
    /// sample per thread, its stack and what it waits in.
    Threads,
    /// A Go program's goroutines at one moment: their stacks, counted (Go's
    /// goroutine profile).
    Goroutines,
}

impl ProfileKind {
    /// The kinds a recording can take (`--profile all`).
    pub const ALL: [ProfileKind; 3] = [ProfileKind::Cpu, ProfileKind::OffCpu, ProfileKind::Futex];
    /// How many kinds there are.
    pub const COUNT: usize = 5;

    /// The kind's place among all kinds, `0..COUNT`.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind's name on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "cpu",
            ProfileKind::OffCpu => "offcpu",
            ProfileKind::Futex => "futex",
            ProfileKind::Threads => "threads",
            ProfileKind::Goroutines => "goroutines",
        }
    }

    /// The recordable kind a command-line word names (`cpu`, `offcpu`,
    /// `futex` and their aliases).
    pub fn from_name(word: &str) -> Option<ProfileKind> {
        match word {
            "cpu" => Some(ProfileKind::Cpu),
            "offcpu" | "off-cpu" => Some(ProfileKind::OffCpu),
            "futex" | "lock" | "locks" => Some(ProfileKind::Futex),
            _ => None,
        }
    }

    /// Whether values are nanoseconds (else counts: samples, threads).
    pub fn is_time(self) -> bool {
        matches!(self, ProfileKind::OffCpu | ProfileKind::Futex)
    }
}
