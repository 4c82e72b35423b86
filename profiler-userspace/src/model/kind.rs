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
    /// A Go program's lock contention as Go's mutex profile counts it: the
    /// time goroutines waited on a `sync.Mutex` or `RWMutex`, charged to the
    /// stack that unlocked it, in nanoseconds.
    GoMutex,
    /// A Go program's blocked goroutines as Go's block profile counts
    /// them: the time each waiting stack was parked, by wait reason, in
    /// nanoseconds.
    GoBlock,
}

impl ProfileKind {
    /// The kinds a recording can take (`--profile all`).
    pub const ALL: [ProfileKind; 3] = [ProfileKind::Cpu, ProfileKind::OffCpu, ProfileKind::Futex];
    /// The kinds only a Go program has, which `--profile all` adds for one.
    pub const GO: [ProfileKind; 2] = [ProfileKind::GoMutex, ProfileKind::GoBlock];
    /// How many kinds there are.
    pub const COUNT: usize = 7;

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
            ProfileKind::GoMutex => "gomutex",
            ProfileKind::GoBlock => "goblock",
        }
    }

    /// The recordable kind a command-line word names (`cpu`, `offcpu`,
    /// `futex`, `gomutex`, `goblock` and their aliases).
    pub fn from_name(word: &str) -> Option<ProfileKind> {
        match word {
            "cpu" => Some(ProfileKind::Cpu),
            "offcpu" | "off-cpu" => Some(ProfileKind::OffCpu),
            "futex" | "lock" | "locks" => Some(ProfileKind::Futex),
            "gomutex" | "go-mutex" => Some(ProfileKind::GoMutex),
            "goblock" | "go-block" => Some(ProfileKind::GoBlock),
            _ => None,
        }
    }

    /// Whether values are nanoseconds (else counts: samples, threads).
    pub fn is_time(self) -> bool {
        matches!(
            self,
            ProfileKind::OffCpu | ProfileKind::Futex | ProfileKind::GoMutex | ProfileKind::GoBlock
        )
    }

    /// Whether only a Go program has this kind.
    pub fn is_go(self) -> bool {
        ProfileKind::GO.contains(&self)
    }
}
