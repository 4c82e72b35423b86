//! What to profile.

/// A process that is already running, or a command to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// A process that is already running.
    Pid(u32),
    /// A command to start, held until the programs are attached.
    Command(Vec<String>),
}
