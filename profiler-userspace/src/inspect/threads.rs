//! The threads of a process now: for each, its name and scheduler state,
//! the system call it is in (from `/proc/PID/task/TID/syscall`: its number,
//! arguments, stack pointer and pc) and its user stack, unwound with each
//! binary's `.eh_frame` from the stack memory read at that stack pointer.
//! A thread on a CPU has no readable registers: it is shown running,
//! without a stack.

use profiler_common::futex::futex_op;

use crate::{
    model::{Stack, StackLoss},
    procfs::{self, SyscallState},
    unwind::{StackCopy, Unwinder},
};

/// Bytes of stack read above a thread's stack pointer to unwind it.
const STACK_READ_BYTES: usize = 64 * 1024;

/// `futex(2)`'s number on x86_64.
const SYS_FUTEX: u64 = 202;

/// What a thread is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// On a CPU: its registers cannot be read without stopping it.
    Running,
    /// Blocked, but not in a system call (a page fault, say).
    Blocked,
    /// In a system call; for a futex wait, the lock word waited on.
    Syscall {
        nr: u64,
        name: String,
        lock: Option<u64>,
    },
    /// Its state could not be read (it exited while being read, or the
    /// profiler may not read it).
    Unreadable(String),
}

/// One thread at one moment.
#[derive(Debug, Clone)]
pub struct ThreadDump {
    pub tid: u32,
    pub name: String,
    /// The scheduler's state letter (`R`, `S`, `D`...).
    pub state: char,
    pub activity: Activity,
    /// Its user stack, leaf first (empty while running).
    pub user: Stack,
}

/// Reads every thread of `pid` now; `unwinder` must know the process's
/// modules (see [`Unwinder::refresh_modules`]).
pub fn read_threads(pid: u32, unwinder: &mut Unwinder) -> std::io::Result<Vec<ThreadDump>> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut tids: Vec<u32> = procfs::threads(pid)
        .into_iter()
        .map(|(tid, _)| tid)
        .collect();
    tids.sort_unstable();
    let mut stack = vec![0u8; STACK_READ_BYTES];
    let mut dumps = Vec::with_capacity(tids.len());
    for tid in tids {
        let name = procfs::read_comm(pid, tid).unwrap_or_else(|_| "?".to_owned());
        let state = procfs::thread_state(pid, tid).unwrap_or('?');
        let (activity, regs) = match procfs::syscall(pid, tid) {
            Ok(SyscallState::Running) => (Activity::Running, None),
            Ok(SyscallState::Blocked { sp, pc }) => (Activity::Blocked, Some((sp, pc))),
            Ok(SyscallState::In { nr, args, sp, pc }) => {
                let lock = (nr == SYS_FUTEX
                    && futex_op::is_wait(args[1] as u32 & futex_op::CMD_MASK))
                .then_some(args[0]);
                let name = syscall_name(nr);
                (Activity::Syscall { nr, name, lock }, Some((sp, pc)))
            }
            Err(err) => (Activity::Unreadable(err.to_string()), None),
        };
        let user = match regs {
            Some((sp, pc)) => {
                let read = procfs::read_memory(&mem, sp, &mut stack);
                let copy = StackCopy {
                    ip: pc,
                    sp,
                    bp: 0,
                    bytes: &stack[..read],
                };
                let frames = unwinder.unwind(&copy);
                if frames.is_empty() {
                    Stack::Lost(StackLoss::Errno(
                        profiler_common::stacks::stack_error::EFAULT,
                    ))
                } else {
                    Stack::Frames(frames.into())
                }
            }
            None => Stack::Empty,
        };
        dumps.push(ThreadDump {
            tid,
            name,
            state,
            activity,
            user,
        });
    }
    Ok(dumps)
}

/// A system call's name on x86_64 (the ones threads commonly wait in), or
/// `syscall N`.
pub fn syscall_name(nr: u64) -> String {
    let name = match nr {
        0 => "read",
        1 => "write",
        7 => "poll",
        16 => "ioctl",
        17 => "pread64",
        23 => "select",
        24 => "sched_yield",
        34 => "pause",
        35 => "nanosleep",
        42 => "connect",
        43 => "accept",
        44 => "sendto",
        45 => "recvfrom",
        46 => "sendmsg",
        47 => "recvmsg",
        61 => "wait4",
        72 => "fcntl",
        128 => "rt_sigtimedwait",
        130 => "rt_sigsuspend",
        202 => "futex",
        230 => "clock_nanosleep",
        232 => "epoll_wait",
        247 => "waitid",
        270 => "pselect6",
        271 => "ppoll",
        281 => "epoll_pwait",
        288 => "accept4",
        426 => "io_uring_enter",
        441 => "epoll_pwait2",
        449 => "futex_waitv",
        _ => return format!("syscall {nr}"),
    };
    name.to_owned()
}
