//! What to profile: running processes (with or without their
//! descendants), a command to start, a cgroup, every process of a name, or
//! the whole machine.

use std::path::PathBuf;

/// Which processes a session records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// Processes already running; with `children`, every process they fork
    /// from here on, and the descendants they have now.
    Pids { pids: Vec<u32>, children: bool },
    /// A command to start, held until the programs are attached, and
    /// every process it forks (as `perf record -- cmd`).
    Command(Vec<String>),
    /// Every process in a cgroup v2 directory or below it, now and later.
    Cgroup(PathBuf),
    /// Every process whose name (`comm`) is this, now and later.
    Comm(String),
    /// Every user process of the machine but the profiler.
    All,
}

impl TargetSpec {
    /// One running process, given by `--pid`.
    pub fn pid(pid: u32) -> TargetSpec {
        TargetSpec::Pids {
            pids: vec![pid],
            children: false,
        }
    }

    /// The one process this names, when it names exactly one running
    /// process (a plain `--pid`).
    pub fn single_pid(&self) -> Option<u32> {
        match self {
            TargetSpec::Pids {
                pids,
                children: false,
            } if pids.len() == 1 => pids.first().copied(),
            _ => None,
        }
    }

    /// Whether the recording may hold several processes: then every stack
    /// starts with its process (`name (PID)`).
    pub fn spans_processes(&self) -> bool {
        self.single_pid().is_none()
    }

    /// Whether processes forked by recorded ones are recorded too.
    pub fn follows_forks(&self) -> bool {
        matches!(
            self,
            TargetSpec::Pids { children: true, .. } | TargetSpec::Command(_)
        )
    }
}
