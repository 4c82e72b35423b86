//! The processes a session records: each found (those given at the start,
//! the kernel's events, its requests for walker tables), named once, its
//! CPU time read while it runs, and noted when it exits.

use std::{collections::BTreeMap, time::Duration};

use crate::procfs;

/// Above this many processes alive, their CPU time is not read on every
/// tick (the whole machine): the report's CPU cross-check is then left out.
pub const CPU_READ_LIMIT: usize = 64;

/// One recorded process.
#[derive(Debug, Clone)]
pub struct Process {
    pub pid: u32,
    /// Its name (`comm`) when first seen.
    pub name: String,
    pub executable: Option<String>,
    /// Whether it runs a Go program (its runtime's idle threads are told
    /// apart from contention).
    pub go: bool,
    /// Whether it still ran at the last look.
    pub alive: bool,
    /// When it started (clock ticks since boot), to tell a reused PID.
    start_ticks: u64,
    /// Its CPU time when first seen (zero when it started after the
    /// recording began), and at the last read while it ran.
    cpu_first: Duration,
    cpu_last: Duration,
}

impl Process {
    /// The CPU time it used while recorded, as far as it was read.
    pub fn cpu_used(&self) -> Duration {
        self.cpu_last.saturating_sub(self.cpu_first)
    }
}

/// Every process seen, by PID.
#[derive(Debug, Default)]
pub struct Processes {
    by_pid: BTreeMap<u32, Process>,
    /// When the recording began, in clock ticks since boot.
    started_ticks: u64,
    /// Set once: processes were alive and then none was (a service gone),
    /// until one appears again.
    gone: bool,
    /// Times the recorded processes all exited and a new one appeared.
    pub restarts: u64,
}

impl Processes {
    pub fn new() -> Processes {
        Processes {
            started_ticks: procfs::uptime_ticks().unwrap_or(0),
            ..Processes::default()
        }
    }

    /// Notes a process, if new; returns whether it is (a reused PID counts
    /// as new). A process that cannot be read (gone already) is noted as
    /// exited, named as its last thread named it.
    pub fn note(&mut self, pid: u32, fallback_name: Option<&str>) -> bool {
        if pid == 0 {
            return false;
        }
        let stat = procfs::stat(pid);
        if let Some(known) = self.by_pid.get(&pid)
            && stat.is_none_or(|s| s.start_ticks == known.start_ticks)
        {
            return false;
        }
        let name = procfs::read_comm(pid, pid)
            .ok()
            .or_else(|| fallback_name.map(str::to_owned))
            .unwrap_or_else(|| "exited".to_owned());
        let executable = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let go = executable
            .as_deref()
            .is_some_and(|exe| crate::go::is_go_executable(std::path::Path::new(exe)));
        let alive = stat.is_some_and(|s| !matches!(s.state, 'Z' | 'X'));
        let (start_ticks, cpu) = stat.map_or((0, Duration::ZERO), |s| (s.start_ticks, s.cpu));
        // Started after the recording began: all of its CPU time counts.
        let cpu_first = if start_ticks >= self.started_ticks {
            Duration::ZERO
        } else {
            cpu
        };
        if alive && self.gone {
            self.gone = false;
            self.restarts += 1;
        }
        self.by_pid.insert(
            pid,
            Process {
                pid,
                name,
                executable,
                go,
                alive,
                start_ticks,
                cpu_first,
                cpu_last: cpu,
            },
        );
        true
    }

    /// Looks at every process thought alive: reads its CPU time (when few
    /// enough) and notes those that exited. Returns the PIDs that exited.
    pub fn refresh(&mut self) -> Vec<u32> {
        let read_cpu = self.alive().count() <= CPU_READ_LIMIT;
        let mut exited = Vec::new();
        for process in self.by_pid.values_mut().filter(|p| p.alive) {
            match procfs::stat(process.pid) {
                Some(stat) if stat.start_ticks == process.start_ticks => {
                    // A zombie still shows its final CPU time.
                    if read_cpu || matches!(stat.state, 'Z' | 'X') {
                        process.cpu_last = process.cpu_last.max(stat.cpu);
                    }
                    if matches!(stat.state, 'Z' | 'X') {
                        process.alive = false;
                        exited.push(process.pid);
                    }
                }
                _ => {
                    process.alive = false;
                    exited.push(process.pid);
                }
            }
        }
        if !self.by_pid.is_empty() && self.alive().next().is_none() {
            self.gone = true;
        }
        exited
    }

    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.by_pid.get(&pid)
    }

    /// Whether a process runs a Go program.
    pub fn is_go(&self, pid: u32) -> bool {
        self.by_pid.get(&pid).is_some_and(|p| p.go)
    }

    /// A process's name, if seen.
    pub fn name(&self, pid: u32) -> Option<&str> {
        self.by_pid.get(&pid).map(|p| p.name.as_str())
    }

    pub fn is_alive(&self, pid: u32) -> bool {
        self.by_pid.get(&pid).is_some_and(|p| p.alive)
    }

    pub fn all(&self) -> impl Iterator<Item = &Process> {
        self.by_pid.values()
    }

    pub fn alive(&self) -> impl Iterator<Item = &Process> {
        self.by_pid.values().filter(|p| p.alive)
    }

    /// Whether CPU times were read for every process (few enough).
    pub fn cpu_known(&self) -> bool {
        self.by_pid.len() <= CPU_READ_LIMIT
    }

    /// Forgets a process entirely (nothing of it is kept any more).
    pub fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }
}
