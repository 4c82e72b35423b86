//! The processes under study: finding them (`--pid`, a thread id resolved
//! to its process), starting a command held until the programs are
//! attached (`-- CMD`), a cgroup (`--cgroup`), a name (`--comm`) or the
//! whole machine (`--all`); watching the given processes for their exit
//! through pidfds, and ending a started command when the recording ends
//! first.

use std::{
    ffi::CString,
    io::{self, Read as _, Write as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
        unix::{ffi::OsStrExt as _, fs::PermissionsExt as _, process::ExitStatusExt as _},
    },
    path::{Path, PathBuf},
    process::ExitStatus,
};

use anyhow::{Context as _, bail};
use tokio::io::unix::AsyncFd;
use tracing::info;

use crate::{
    model::TargetSpec,
    procfs::{self, read_comm},
};

/// A process being profiled.
pub struct Target {
    pub pid: u32,
    /// The process name (`/proc/PID/comm`), read when the target was found.
    pub name: String,
    /// The program's path (for a started command, the one we exec).
    pub executable: Option<String>,
    pidfd: AsyncFd<OwnedFd>,
    /// Set for a command we started: its handle, and the pipe that releases it.
    spawned: Option<Spawned>,
}

/// A command we forked, held before `exec` until released.
struct Spawned {
    program: String,
    /// Writing to it lets the child `exec`; closing it unwritten makes it exit.
    release: Option<std::fs::File>,
    /// Carries the child's `errno` if `exec` fails; closes on success.
    exec_error: Option<std::fs::File>,
    /// Set once the child has been reaped: how it ended and its CPU time.
    status: Option<(ExitStatus, std::time::Duration)>,
}

impl Spawned {
    fn try_wait(&mut self, pid: u32) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = wait4(pid, libc::WNOHANG);
        }
        self.status.map(|(status, _)| status)
    }

    fn wait(&mut self, pid: u32) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = wait4(pid, 0);
        }
        self.status.map(|(status, _)| status)
    }
}

/// Reaps our child: its exit status and the CPU time (user + system) it used.
fn wait4(pid: u32, flags: libc::c_int) -> Option<(ExitStatus, std::time::Duration)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child, writing into locals.
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, flags, &mut usage) };
        if rc == pid as libc::pid_t {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
            return Some((
                ExitStatus::from_raw(status),
                std::time::Duration::from_secs_f64(cpu.max(0.0)),
            ));
        }
        if rc == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}

/// How the target ended, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetExit {
    /// A process we did not start exited (its status is not ours to read).
    Exited,
    /// A command we started exited with this status.
    Status(ExitStatus),
}

impl std::fmt::Display for TargetExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetExit::Exited => write!(f, "exited"),
            TargetExit::Status(status) => match (status.code(), status.signal()) {
                (Some(code), _) => write!(f, "exited with status {code}"),
                (None, Some(sig)) => write!(f, "was killed by signal {sig}"),
                (None, None) => write!(f, "exited"),
            },
        }
    }
}

/// A cgroup v2 directory whose processes are recorded.
#[derive(Debug, Clone)]
pub struct Cgroup {
    pub path: PathBuf,
    /// Its id (the directory's inode) and depth below the root.
    pub id: u64,
    pub level: u32,
}

impl Cgroup {
    /// Finds a cgroup v2 directory, given as a path or relative to the
    /// cgroup2 mount (`system.slice/nginx.service`).
    pub fn find(path: &Path) -> anyhow::Result<Cgroup> {
        use std::os::unix::fs::MetadataExt as _;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .context("cannot read /proc/self/mountinfo to find the cgroup2 mount")?;
        let root = mountinfo
            .lines()
            .find_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                (right.split_whitespace().next()? == "cgroup2")
                    .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
            })
            .context(
                "--cgroup: no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup)",
            )?;
        let full = if path.is_absolute() {
            path.to_owned()
        } else {
            root.join(path)
        };
        let full = full.canonicalize().map_err(|err| {
            anyhow::anyhow!(
                "--cgroup {}: {err}; give a cgroup v2 directory such as {}/system.slice/NAME.service",
                path.display(),
                root.display()
            )
        })?;
        let Ok(below) = full.strip_prefix(&root) else {
            bail!(
                "--cgroup {}: not under the cgroup v2 mount {}",
                full.display(),
                root.display()
            );
        };
        if !full.join("cgroup.procs").exists() {
            bail!(
                "--cgroup {}: not a cgroup directory (it has no cgroup.procs)",
                full.display()
            );
        }
        let id = std::fs::metadata(&full)
            .with_context(|| format!("cannot read {}", full.display()))?
            .ino();
        Ok(Cgroup {
            level: below.components().count() as u32,
            path: full,
            id,
        })
    }

    /// The processes in it and below it now.
    pub fn processes(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let mut dirs = vec![self.path.clone()];
        while let Some(dir) = dirs.pop() {
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                dirs.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        pids
    }
}

/// Every process to record, as the user named them.
pub struct Targets {
    pub spec: TargetSpec,
    /// The processes given (`--pid`) or started (`-- CMD`), watched for
    /// their exit.
    pub roots: Vec<Target>,
    pub cgroup: Option<Cgroup>,
}

impl Targets {
    /// Finds the processes, or starts the command held before `exec`. Call
    /// inside a tokio runtime (the exit watches register with its reactor).
    pub fn open(spec: &TargetSpec) -> anyhow::Result<Targets> {
        let mut roots = Vec::new();
        let mut cgroup = None;
        match spec {
            TargetSpec::Pids { pids, .. } => {
                for pid in pids {
                    let target = Target::attach_to(*pid)?;
                    if !roots.iter().any(|r: &Target| r.pid == target.pid) {
                        roots.push(target);
                    }
                }
            }
            TargetSpec::Command(argv) => roots.push(Target::spawn_held(argv)?),
            TargetSpec::Cgroup(path) => cgroup = Some(Cgroup::find(path)?),
            TargetSpec::Comm(name) => {
                if name.is_empty() || name.len() > 15 {
                    bail!(
                        "--comm takes a process name as /proc/PID/comm shows it (1 to 15 characters), got {name:?}"
                    );
                }
            }
            TargetSpec::All => {}
        }
        Ok(Targets {
            spec: spec.clone(),
            roots,
            cgroup,
        })
    }

    /// The one process recorded, for a plain `--pid` or a command (the
    /// Go features and `--unwind copy` need one).
    pub fn primary(&self) -> Option<&Target> {
        self.roots.first().filter(|_| self.has_primary())
    }

    pub fn primary_mut(&mut self) -> Option<&mut Target> {
        let one = self.has_primary();
        self.roots.first_mut().filter(|_| one)
    }

    /// Whether one process is recorded: a plain `--pid`, or a command.
    fn has_primary(&self) -> bool {
        let one_process = matches!(
            self.spec,
            TargetSpec::Pids {
                children: false,
                ..
            } | TargetSpec::Command(_)
        );
        one_process && self.roots.len() == 1
    }

    /// Whether we started the command ourselves.
    pub fn is_spawned(&self) -> bool {
        self.roots.iter().any(Target::is_spawned)
    }

    /// The processes to record from the start: those given, their
    /// descendants with `--children`, those of the name or cgroup.
    pub fn initial_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.roots.iter().map(|r| r.pid).collect();
        match &self.spec {
            TargetSpec::Pids { children: true, .. } => pids.extend(procfs::descendants(&pids)),
            TargetSpec::Comm(name) => pids.extend(processes_named(name)),
            TargetSpec::Cgroup(_) => {
                pids.extend(self.cgroup.iter().flat_map(Cgroup::processes));
            }
            _ => {}
        }
        let own = std::process::id();
        pids.retain(|p| *p != own);
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// What is recorded, in words: `PID 42 (nginx)`, `PID 42 (nginx) and
    /// its descendants`, `` `./app` (PID 9) and the processes it starts ``,
    /// `cgroup /sys/fs/cgroup/x`, `processes named nginx`, `the whole
    /// machine`.
    pub fn describe(&self) -> String {
        let roots = self
            .roots
            .iter()
            .map(|r| format!("PID {} ({})", r.pid, r.name))
            .collect::<Vec<_>>()
            .join(", ");
        match &self.spec {
            TargetSpec::Pids {
                children: false, ..
            } => roots,
            TargetSpec::Pids { children: true, .. } if self.roots.len() == 1 => {
                format!("{roots} and its descendants")
            }
            TargetSpec::Pids { children: true, .. } => format!("{roots} and their descendants"),
            TargetSpec::Command(argv) => format!(
                "`{}` ({}) and the processes it starts",
                argv.join(" "),
                self.roots
                    .first()
                    .map_or_else(String::new, |r| format!("PID {}", r.pid))
            ),
            TargetSpec::Cgroup(_) => format!(
                "cgroup {}",
                self.cgroup
                    .as_ref()
                    .map_or_else(String::new, |c| c.path.display().to_string())
            ),
            TargetSpec::Comm(name) => format!("processes named {name}"),
            TargetSpec::All => "the whole machine".to_owned(),
        }
    }

    /// Resolves when every process given (`--pid`, or the command) has
    /// exited; never for a cgroup, a name or the whole machine.
    pub async fn roots_exited(&self) {
        if self.roots.is_empty() {
            return std::future::pending().await;
        }
        for root in &self.roots {
            let _ = root.exited().await;
        }
    }
}

/// The processes whose `comm` is `name` now.
pub fn processes_named(name: &str) -> Vec<u32> {
    procfs::pids()
        .into_iter()
        .filter(|pid| read_comm(*pid, *pid).is_ok_and(|c| c == name))
        .collect()
}

impl Target {
    fn attach_to(pid: u32) -> anyhow::Result<Target> {
        let name = read_comm(pid, pid).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => anyhow::anyhow!(
                "no process with PID {pid} exists; check the id with `ps -p {pid}` or `pgrep NAME`"
            ),
            _ => anyhow::Error::new(err).context(format!("cannot read /proc/{pid}/comm")),
        })?;
        // A thread's id: its process is recorded (the kernel records whole
        // processes), and the user is told.
        if let Some(tgid) = procfs::tgid_of(pid)
            && tgid != pid
        {
            let process = read_comm(tgid, tgid).unwrap_or_else(|_| "?".to_owned());
            info!(
                "{pid} is a thread of process {tgid} ({process}; the thread is named {name}): recording the whole process {tgid}"
            );
            return Self::attach_to(tgid);
        }
        if procfs::stat(pid).is_some_and(|s| matches!(s.state, 'Z' | 'X')) {
            bail!(
                "PID {pid} ({name}) has exited: it is a zombie waiting for its parent to reap it, and nothing of it runs any more"
            );
        }
        if procfs::is_kernel_thread(pid) {
            bail!(
                "PID {pid} ({name}) is a kernel thread; profiler records user processes (give the PID of a program)"
            );
        }
        let pidfd = pidfd_open(pid).map_err(|err| match err.raw_os_error() {
            Some(libc::ESRCH) => anyhow::anyhow!("PID {pid} ({name}) has exited"),
            _ => anyhow::Error::new(err)
                .context(format!("cannot watch PID {pid} for exit (pidfd_open)")),
        })?;
        let executable = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        Ok(Target {
            pid,
            name,
            executable,
            pidfd,
            spawned: None,
        })
    }

    /// Forks a child that waits on a pipe before it `exec`s `argv`, so not
    /// one instruction of the command runs before the programs are attached.
    /// (`std::process::Command` cannot do this: its `spawn` waits for `exec`.)
    fn spawn_held(argv: &[String]) -> anyhow::Result<Target> {
        let Some(program) = argv.first() else {
            bail!("the command after `--` is empty");
        };
        let path = find_program(program)?;
        let c_path = CString::new(path.as_os_str().as_bytes())
            .with_context(|| format!("the command {program:?} contains a NUL byte"))?;
        let c_args = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .context("an argument of the command contains a NUL byte")?;
        let mut c_argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
        c_argv.push(std::ptr::null());
        let (go_read, go_write) = pipe().context("cannot create a pipe to hold the command")?;
        let (err_read, err_write) = pipe().context("cannot create a pipe to hold the command")?;
        // SAFETY: between fork and exec the child only calls async-signal-safe
        // functions (close, read, execv, write, _exit) on data prepared above.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error()).context("cannot fork to start the command");
        }
        if pid == 0 {
            // SAFETY: see above; the child never returns from this block.
            unsafe {
                libc::close(go_write.as_raw_fd());
                libc::close(err_read.as_raw_fd());
                let mut go = [0u8; 2];
                if libc::read(go_read.as_raw_fd(), go.as_mut_ptr().cast(), go.len()) <= 0 {
                    libc::_exit(127);
                }
                libc::execv(c_path.as_ptr(), c_argv.as_ptr());
                let errno = *libc::__errno_location();
                let bytes = errno.to_ne_bytes();
                libc::write(err_write.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                libc::_exit(127);
            }
        }
        drop(go_read);
        drop(err_write);
        let pid = pid as u32;
        let pidfd = pidfd_open(pid).context("cannot watch the started command (pidfd_open)")?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(15).collect())
            .unwrap_or_else(|| program.clone());
        let executable = path
            .canonicalize()
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        Ok(Target {
            pid,
            name,
            executable,
            pidfd,
            spawned: Some(Spawned {
                program: program.clone(),
                release: Some(std::fs::File::from(go_write)),
                exec_error: Some(std::fs::File::from(err_read)),
                status: None,
            }),
        })
    }

    /// Lets a held command run (after attaching) and checks that its `exec`
    /// succeeded. A no-op for `--pid`.
    pub fn release(&mut self) -> anyhow::Result<()> {
        let Some(spawned) = &mut self.spawned else {
            return Ok(());
        };
        if let Some(mut pipe) = spawned.release.take() {
            pipe.write_all(b"go")
                .context("cannot release the started command")?;
        }
        if let Some(mut errors) = spawned.exec_error.take() {
            let mut errno = [0u8; 4];
            if errors.read_exact(&mut errno).is_ok() {
                let err = io::Error::from_raw_os_error(i32::from_ne_bytes(errno));
                spawned.wait(self.pid);
                bail!("cannot start {:?}: {err}", spawned.program);
            }
        }
        Ok(())
    }

    /// The CPU time a started command used, once it has been reaped.
    pub fn spawned_cpu_time(&self) -> Option<std::time::Duration> {
        self.spawned.as_ref()?.status.map(|(_, cpu)| cpu)
    }

    /// Whether we started the target ourselves.
    pub fn is_spawned(&self) -> bool {
        self.spawned.is_some()
    }

    /// Resolves when the target has exited.
    pub async fn exited(&self) -> io::Result<()> {
        let _guard = self.pidfd.readable().await?;
        Ok(())
    }

    /// Whether the process is still running (not exited, not a zombie).
    pub fn is_alive(&self) -> bool {
        procfs::is_alive(self.pid)
    }

    /// Reaps a started command and says how the target ended. When the
    /// recording ended first (`stop`), a started command gets SIGTERM, then
    /// SIGKILL after two seconds; a `--pid` target is left running.
    pub fn finish(&mut self, stop: bool) -> Option<TargetExit> {
        let Some(spawned) = &mut self.spawned else {
            return (!self.is_alive()).then_some(TargetExit::Exited);
        };
        // Dropping the release pipe unreleased makes a held child _exit.
        spawned.release = None;
        if stop && spawned.try_wait(self.pid).is_none() {
            info!(
                "the recording ended before {} (PID {}) did: sending it SIGTERM, as perf record does (SIGKILL after 2 s if it is still running); processes it started are left to it",
                spawned.program, self.pid
            );
            // SAFETY: kill(2) on our own child, which we have not reaped.
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while spawned.try_wait(self.pid).is_none() {
                if std::time::Instant::now() > deadline {
                    // SAFETY: as above.
                    unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        spawned.wait(self.pid).map(TargetExit::Status)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // A command we started must not outlive the profiler's own failure,
        // nor stay behind as a zombie.
        if let Some(spawned) = &mut self.spawned {
            spawned.release = None;
            if spawned.try_wait(self.pid).is_none() {
                // SAFETY: kill(2) on our own child, which we have not reaped.
                unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) };
                spawned.wait(self.pid);
            }
        }
    }
}

/// The executable a target spec names, when it can be found: the running
/// process's (`/proc/PID/exe`), or the command's as `execvp` finds it.
pub fn executable_of(spec: &TargetSpec) -> Option<PathBuf> {
    match spec {
        TargetSpec::Command(argv) => find_program(argv.first()?).ok(),
        _ => {
            let pid = spec.single_pid()?;
            let pid = procfs::tgid_of(pid).unwrap_or(pid);
            std::fs::read_link(format!("/proc/{pid}/exe")).ok()
        }
    }
}

/// Finds the program as `execvp` would: a path if it has a slash, else the
/// first executable of that name on PATH.
fn find_program(program: &str) -> anyhow::Result<PathBuf> {
    let is_executable = |p: &std::path::Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        if !path.exists() {
            bail!("cannot start {program:?}: no such file");
        }
        if !is_executable(&path) {
            bail!("cannot start {program:?}: it is not an executable file (chmod +x?)");
        }
        return Ok(path);
    }
    let paths = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
        .with_context(|| format!("cannot start {program:?}: no such command on PATH"))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the array on success.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn pidfd_open(pid: u32) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, which stays open and
    // refers to the same pidfd for the AsyncFd's whole life.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|err| err.into_parts().1)
}
