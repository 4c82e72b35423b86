//! The kinds of profile a recording can take.

/// A kind of profile.
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

    /// The kind's name on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            ProfileKind::Cpu => "cpu",
            ProfileKind::OffCpu => "offcpu",
            ProfileKind::Futex => "futex",
        }
    }

    /// The kind a command-line word names (`cpu`, `offcpu`, `futex` and
    /// their aliases).
    pub fn from_name(word: &str) -> Option<ProfileKind> {
        match word {
            "cpu" => Some(ProfileKind::Cpu),
            "offcpu" | "off-cpu" => Some(ProfileKind::OffCpu),
            "futex" | "lock" | "locks" => Some(ProfileKind::Futex),
            _ => None,
        }
    }

    /// Whether values are nanoseconds (else samples).
    pub fn is_time(self) -> bool {
        self != ProfileKind::Cpu
    }
}
