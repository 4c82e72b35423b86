//! What /proc says about a process: its mappings, thread names, state
//! and CPU time. Read-only, and every read of a process that may have
//! exited returns `None`, an empty list or an error rather than panicking.

use std::{collections::HashSet, io};

/// One line of `/proc/PID/maps`: an address range and what is mapped there.
/// (blazesym parses this file too, but keeps the result private.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    pub executable: bool,
    /// The file's name, or `[heap]`, `[stack]`, `[vdso]`, `[anon]`.
    pub name: String,
    /// The file's path, for file mappings.
    pub path: Option<String>,
}

/// Reads the process's mappings (empty once it has exited).
pub fn read_mappings(pid: u32) -> Vec<Mapping> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    text.lines().filter_map(parse_mapping).collect()
}

fn parse_mapping(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let path = fields.nth(2).unwrap_or("");
    let (name, path) = match path {
        "" => ("[anon]".to_owned(), None),
        p if p.starts_with('[') => (p.to_owned(), None),
        p => (
            std::path::Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.to_owned()),
            Some(p.to_owned()),
        ),
    };
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset,
        executable: perms.contains('x'),
        name,
        path,
    })
}

/// Reads `/proc/PID/task/TID/comm`.
pub fn read_comm(pid: u32, tid: u32) -> io::Result<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))?;
    Ok(comm.trim_end_matches('\n').to_owned())
}

/// Kernel threads have no command line and no user memory.
pub fn is_kernel_thread(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.is_empty())
        && std::fs::read_link(format!("/proc/{pid}/exe")).is_err()
}

/// The state letter of a `/proc/PID/stat` line (after the parenthesised comm,
/// which may itself contain spaces and parentheses).
fn proc_state(stat: &str) -> Option<char> {
    let after = stat.rfind(')')?;
    stat[after + 1..].trim_start().chars().next()
}

/// What `/proc/PID/stat` says of a process (or thread).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub state: char,
    pub ppid: u32,
    /// CPU time used (user + system).
    pub cpu: std::time::Duration,
    /// When it started, in clock ticks since boot (tells a reused PID).
    pub start_ticks: u64,
}

/// Reads `/proc/PID/stat`.
pub fn stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rfind(')')?;
    let fields: Vec<&str> = stat[after + 1..].split_whitespace().collect();
    // Fields after the comm start at index 0 = state (field 3); ppid is
    // field 4, utime and stime fields 14 and 15, starttime field 22.
    let state = fields.first()?.chars().next()?;
    let ppid: u32 = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let start_ticks: u64 = fields.get(19)?.parse().ok()?;
    let ticks = clock_ticks()?;
    Some(Stat {
        state,
        ppid,
        cpu: std::time::Duration::from_secs_f64((utime + stime) as f64 / ticks as f64),
        start_ticks,
    })
}

/// Clock ticks per second (`_SC_CLK_TCK`).
pub fn clock_ticks() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0)
}

/// Seconds since boot (`/proc/uptime`), in clock ticks.
pub fn uptime_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((secs * clock_ticks()? as f64) as u64)
}

/// The process's total CPU time (user + system) from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<std::time::Duration> {
    stat(pid).map(|s| s.cpu)
}

/// The process a thread id belongs to (its `Tgid`), from
/// `/proc/TID/status` (a thread's directory exists, unlisted).
pub fn tgid_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

/// Every process id in /proc now.
pub fn pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every descendant of the processes in `roots`, now (from each
/// process's parent id).
pub fn descendants(roots: &[u32]) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = pids()
        .into_iter()
        .filter_map(|pid| Some((pid, stat(pid)?.ppid)))
        .collect();
    let mut found: Vec<u32> = Vec::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for (pid, ppid) in &parents {
            if *ppid == parent && !found.contains(pid) && !roots.contains(pid) {
                found.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    found
}

/// Whether the process is still running (not exited, not a zombie).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(proc_state(&stat), Some('Z' | 'X')),
        Err(_) => false,
    }
}

/// The threads of a process now, with their names (empty once it is gone).
pub fn threads(pid: u32) -> Vec<(u32, Option<String>)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| task.file_name().to_str()?.parse::<u32>().ok())
        .collect::<HashSet<u32>>()
        .into_iter()
        .map(|tid| (tid, read_comm(pid, tid).ok()))
        .collect()
}

/// Where a thread is, from `/proc/PID/task/TID/syscall`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallState {
    /// On a CPU now: no registers can be read without stopping it.
    Running,
    /// Blocked, but not in a system call (a page fault, say).
    Blocked { sp: u64, pc: u64 },
    /// In system call `nr` with its six arguments.
    In {
        nr: u64,
        args: [u64; 6],
        sp: u64,
        pc: u64,
    },
}

/// Reads where a thread is (needs the right to ptrace-read it; root has).
pub fn syscall(pid: u32, tid: u32) -> io::Result<SyscallState> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))?;
    parse_syscall(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/task/{tid}/syscall: {text:?}"),
        )
    })
}

fn parse_syscall(text: &str) -> Option<SyscallState> {
    let text = text.trim();
    if text == "running" {
        return Some(SyscallState::Running);
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    let hex = |f: &str| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok();
    match fields.as_slice() {
        ["-1", sp, pc] => Some(SyscallState::Blocked {
            sp: hex(sp)?,
            pc: hex(pc)?,
        }),
        [nr, a0, a1, a2, a3, a4, a5, sp, pc] => Some(SyscallState::In {
            nr: nr.parse().ok()?,
            args: [hex(a0)?, hex(a1)?, hex(a2)?, hex(a3)?, hex(a4)?, hex(a5)?],
            sp: hex(sp)?,
            pc: hex(pc)?,
        }),
        _ => None,
    }
}

/// A thread's scheduler state letter (`R`, `S`, `D`, `T`, `Z`...).
pub fn thread_state(pid: u32, tid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    proc_state(&stat)
}

/// What a state letter means, as `ps` words it.
pub fn state_name(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "uninterruptible",
        'T' => "stopped",
        't' => "traced",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        _ => "unknown",
    }
}

/// Reads up to `buf.len()` bytes of the process's memory at `addr`, as far
/// as it is mapped; returns how many were read.
pub fn read_memory(mem: &std::fs::File, addr: u64, buf: &mut [u8]) -> usize {
    use std::os::unix::fs::FileExt as _;
    let mut done = 0;
    while done < buf.len() {
        match mem.read_at(&mut buf[done..], addr + done as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => done += n,
        }
    }
    done
}

/// The whole of `range` of the process's memory (the vDSO, which is in no
/// file), or `None` when it cannot all be read.
pub fn read_range(pid: u32, range: std::ops::Range<u64>) -> Option<Vec<u8>> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut bytes = vec![0u8; usize::try_from(range.end.checked_sub(range.start)?).ok()?];
    (read_memory(&mem, range.start, &mut bytes) == bytes.len()).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_after_tricky_comm() {
        assert_eq!(proc_state("42 (a) b) S 1 2 3"), Some('S'));
        assert_eq!(proc_state("42 (x) Z 1"), Some('Z'));
    }

    #[test]
    fn maps_lines() {
        let m = parse_mapping(
            "7f20ac3d8000-7f20ac52e000 r-xp 00026000 fe:00 326279   /usr/lib/x86_64-linux-gnu/libc.so.6",
        );
        assert_eq!(
            m,
            Some(Mapping {
                start: 0x7f20ac3d8000,
                end: 0x7f20ac52e000,
                offset: 0x26000,
                executable: true,
                name: "libc.so.6".into(),
                path: Some("/usr/lib/x86_64-linux-gnu/libc.so.6".into()),
            })
        );
        let vdso = parse_mapping("7ffd1000-7ffd3000 r-xp 00000000 00:00 0   [vdso]");
        assert_eq!(
            vdso.map(|m| (m.name, m.path)),
            Some(("[vdso]".into(), None))
        );
        let anon = parse_mapping("7ffd1000-7ffd3000 rw-p 00000000 00:00 0");
        assert_eq!(anon.map(|m| m.name), Some("[anon]".into()));
    }

    #[test]
    fn syscall_lines() {
        assert_eq!(parse_syscall("running\n"), Some(SyscallState::Running));
        assert_eq!(
            parse_syscall("-1 0x7ffd1000 0x401000\n"),
            Some(SyscallState::Blocked {
                sp: 0x7ffd1000,
                pc: 0x401000
            })
        );
        assert_eq!(
            parse_syscall("202 0x404040 0x80 0x2 0x0 0x0 0x0 0x7ffd1000 0x7f00aa01\n"),
            Some(SyscallState::In {
                nr: 202,
                args: [0x404040, 0x80, 2, 0, 0, 0],
                sp: 0x7ffd1000,
                pc: 0x7f00aa01
            })
        );
        assert_eq!(parse_syscall("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_named() {
        let pid = std::process::id();
        assert!(read_comm(pid, pid).is_ok());
        assert!(cpu_time(pid).is_some());
    }
}
