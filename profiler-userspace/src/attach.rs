//! Loading and attaching the eBPF programs: the checks that turn a missing
//! privilege or kernel feature into one clear sentence, the embedded object,
//! and the perf events on every online CPU. Dropping [`Attached`] detaches
//! and unloads everything (the links are file descriptors, so even a killed
//! profiler leaves nothing attached).

use std::{path::Path, time::Duration};

use aya::{
    Ebpf, EbpfLoader,
    maps::Map,
    programs::{
        PerfEvent, RawTracePoint, TracePoint, UProbe,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
        uprobe::UProbeScope,
    },
};
use thiserror::Error;
use tracing::{debug, info, warn};

use profiler_common::maps::TargetMode;

use crate::{
    go::probes::GoProbe,
    model::{ProfileKind, UnwindMode},
};

/// The object `build.rs` compiled from `profiler-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// Name of the on-CPU sampling program (every program's name starts `prf_`,
/// which is how tests find them loaded).
pub const CPU_PROGRAM: &str = "prf_cpu_sample";
/// Arms recording when a started command's exec completes, and drops the
/// walker's tables of a recorded process's old image.
const EXEC_PROGRAM: &str = "prf_exec";
/// Follows the processes recorded ones fork.
const FORK_PROGRAM: &str = "prf_fork";
/// Forgets the thread ids fork following added.
const EXIT_PROGRAM: &str = "prf_exit";

/// Where tracefs is normally mounted.
const TRACEFS: &str = "/sys/kernel/tracing";
/// Where older systems have it, under debugfs.
const TRACEFS_DEBUG: &str = "/sys/kernel/debug/tracing";

/// Why the programs could not be loaded or attached, each with what to do.
#[derive(Debug, Error)]
pub enum AttachError {
    #[error(
        "profiler needs root, or the CAP_BPF and CAP_PERFMON capabilities, to load eBPF programs; run it with sudo"
    )]
    NotPrivileged,
    #[error(
        "this kernel has no perf events (/proc/sys/kernel/perf_event_paranoid is missing); profiler needs a kernel built with CONFIG_PERF_EVENTS"
    )]
    NoPerfEvents,
    #[error(
        "this kernel has no BTF type information (/sys/kernel/btf/vmlinux is missing); profiler needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error("cannot list the online CPUs ({0}): {1}")]
    Cpus(&'static str, std::io::Error),
    #[error("the kernel refused to load the eBPF object: {}", first_line(.0))]
    Load(aya::EbpfError),
    /// The verifier's whole log is logged at debug level (`-v`).
    #[error("the kernel refused the program {program}: {}", first_line(.source))]
    Program {
        program: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error(
        "cannot open the cpu-clock perf event on CPU {cpu}: {source}; the kernel may lack software perf events or refuse them to this user"
    )]
    PerfEvent {
        cpu: u32,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("the eBPF object has no map named {0} (the build is inconsistent; rebuild)")]
    MissingMap(&'static str),
    #[error("the eBPF object has no program named {0} (the build is inconsistent; rebuild)")]
    MissingProgram(&'static str),
    #[error(
        "tracefs is not mounted and mounting it at {TRACEFS} failed ({0}); mount it (mount -t tracefs nodev {TRACEFS}) and run again"
    )]
    Tracefs(std::io::Error),
    #[error("{0}; the offcpu and futex profiles need it to read who woke a thread")]
    Btf(String),
    #[error("this kernel has no tracepoint {0} (no {1}); the {2} profile needs it")]
    MissingTracepoint(String, String, &'static str),
    #[error(
        "cannot attach a uprobe to {function} in {path} (for Go waits): {source}; the kernel needs uprobes (CONFIG_UPROBES)"
    )]
    Uprobe {
        function: &'static str,
        path: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot attach {program} to the tracepoint {tracepoint}: {source}")]
    Tracepoint {
        program: &'static str,
        tracepoint: String,
        #[source]
        source: aya::programs::ProgramError,
    },
}

/// The first line of an error, without the verifier's log (`-v` shows it).
fn first_line(err: &dyn std::fmt::Display) -> String {
    let text = err.to_string();
    debug!("{text}");
    let line = text.lines().next().unwrap_or_default();
    line.split(". Verifier output:")
        .next()
        .unwrap_or(line)
        .to_owned()
}

/// Which processes the kernel side records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    pub mode: TargetMode,
    /// With [`TargetMode::Cgroup`]: the cgroup's id and depth.
    pub cgroup: (u64, u32),
    /// Processes forked by recorded ones are recorded too.
    pub follow_forks: bool,
}

impl Selection {
    /// The processes the session lists in the targets map (the map starts
    /// empty: nothing is recorded until they are added).
    pub fn listed(follow_forks: bool) -> Selection {
        Selection {
            mode: TargetMode::Set,
            cgroup: (0, 0),
            follow_forks,
        }
    }
}

/// What to load and attach.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub selection: Selection,
    /// The one process the Go runtime probes fire in (0: none).
    pub go_tgid: u32,
    /// Start recording when the target execs (a command held before exec).
    pub arm_on_exec: bool,
    /// How user stacks are taken.
    pub unwind: UnwindMode,
    /// The deepest user stack taken (`--max-depth`).
    pub max_depth: usize,
    pub kinds: Vec<ProfileKind>,
    pub frequency: u64,
    pub min_block: Duration,
    /// For Go waits (`gomutex`, `goblock`): the Go binary the target runs
    /// and the runtime functions to probe in it.
    pub go_waits: Option<GoWaitProbes>,
}

impl LoadConfig {
    /// What a command loads for the processes the session finds: the
    /// programs of `kinds`, sampling at `frequency`, no Go probes yet (the
    /// session adds them for a Go target), nothing dropped by length.
    pub fn listed(
        kinds: Vec<ProfileKind>,
        frequency: u64,
        unwind: UnwindMode,
        max_depth: usize,
    ) -> LoadConfig {
        LoadConfig {
            selection: Selection::listed(false),
            go_tgid: 0,
            arm_on_exec: false,
            unwind,
            max_depth,
            kinds,
            frequency,
            min_block: Duration::ZERO,
            go_waits: None,
        }
    }
}

/// Where the Go runtime is probed for goroutine waits.
#[derive(Debug, Clone)]
pub struct GoWaitProbes {
    /// The binary's path (uprobes go on a file, for the target only).
    pub path: String,
    pub probes: Vec<GoProbe>,
    /// Only lock contention (gomutex without goblock): semaphore waits are
    /// timed from `semacquire1` to `readyWithTime` (`probes` are those),
    /// and the probes that fire on every park are left out.
    pub sema_only: bool,
}

/// Capability bits (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Checks what loading needs before touching the kernel: privileges, perf
/// events and BTF. Each failure is a sentence saying what to do.
pub fn preflight() -> Result<(), AttachError> {
    let caps = effective_capabilities().unwrap_or(0);
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if !(has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) {
        return Err(AttachError::NotPrivileged);
    }
    if !std::path::Path::new("/proc/sys/kernel/perf_event_paranoid").exists() {
        return Err(AttachError::NoPerfEvents);
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(AttachError::NoBtf);
    }
    Ok(())
}

/// The effective capability set of this process, from /proc/self/status.
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// The loaded programs and the maps taken out of them.
pub struct Attached {
    /// Owns the programs and their links; dropping it detaches everything.
    ebpf: Option<Ebpf>,
    /// How many perf events (one per online CPU) the sampler is attached to.
    pub cpus: usize,
    /// Each program and where it is attached, as a phrase.
    pub attachments: Vec<String>,
    /// What each program cost in the kernel, read at detach when the
    /// kernel keeps BPF statistics (`sysctl kernel.bpf_stats_enabled=1`).
    pub kernel_cost: Vec<ProgramCost>,
    /// The programs' recursion misses when last read.
    recursion_misses: u64,
}

/// One program's runs and time in the kernel (its BPF statistics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramCost {
    pub program: String,
    pub runs: u64,
    pub run_time: Duration,
}

impl ProgramCost {
    /// Nanoseconds per run.
    pub fn ns_per_run(&self) -> f64 {
        self.run_time.as_nanos() as f64 / self.runs.max(1) as f64
    }
}

impl Attached {
    /// Loads the object for the target and attaches what the kinds need: the
    /// on-CPU sampler at `frequency` Hz on every online CPU, the scheduler
    /// tracepoints, the futex syscall tracepoints.
    pub fn load(config: &LoadConfig) -> Result<Attached, AttachError> {
        // Only a debug note: BPF memory is memcg-accounted on current kernels,
        // and raising the limit needs CAP_SYS_RESOURCE anyway.
        raise_memlock_rlimit();
        let wants = |kind| config.kinds.contains(&kind);
        let tracepoints = wants(ProfileKind::OffCpu) || wants(ProfileKind::Futex);
        let selection = config.selection;
        let dwarf = config.unwind == UnwindMode::Dwarf;
        // Forks: followed, or (whole machine, cgroup) seen so a child walks
        // with its parent's tables until it has its own.
        let forks = selection.follow_forks || (dwarf && selection.mode != TargetMode::Set);
        let offsets = if tracepoints {
            let root = ensure_tracefs()?;
            Some(Offsets::read(&root, config)?)
        } else {
            None
        };
        let fork_child_pid = if forks {
            let root = ensure_tracefs()?;
            field_offset(&root, "sched", "sched_process_fork", "child_pid").ok_or_else(|| {
                AttachError::MissingTracepoint(
                    "sched:sched_process_fork (field child_pid)".to_owned(),
                    format!("{}/events/sched/sched_process_fork/format", root.display()),
                    "following child processes",
                )
            })?
        } else {
            20
        };
        let min_block_ns = u64::try_from(config.min_block.as_nanos()).unwrap_or(u64::MAX);
        let unwind = config.unwind as u32;
        let max_frames = u32::try_from(config.max_depth)
            .unwrap_or(u32::MAX)
            .min(profiler_common::unwind::UNWIND_MAX_DEPTH as u32);
        let go_sema_only = u32::from(config.go_waits.as_ref().is_some_and(|g| g.sema_only));
        let mode = selection.mode as u32;
        let own = std::process::id();
        let follow = u32::from(selection.follow_forks);
        let mut loader = EbpfLoader::new();
        {
            use profiler_common::maps as m;
            loader
                .override_global(m::GLOBAL_TARGET_MODE, &mode, true)
                .override_global(m::GLOBAL_OWN_TGID, &own, true)
                .override_global(m::GLOBAL_CGROUP_ID, &selection.cgroup.0, true)
                .override_global(m::GLOBAL_CGROUP_LEVEL, &selection.cgroup.1, true)
                .override_global(m::GLOBAL_FOLLOW_FORKS, &follow, true)
                .override_global(m::GLOBAL_FORK_CHILD_PID, &fork_child_pid, true)
                .override_global(m::GLOBAL_MIN_BLOCK_NS, &min_block_ns, true)
                .override_global(m::GLOBAL_UNWIND_MODE, &unwind, true)
                .override_global(m::GLOBAL_UNWIND_MAX_FRAMES, &max_frames, true)
                .override_global(m::GLOBAL_GO_SEMA_ONLY, &go_sema_only, true);
            if let Some(o) = &offsets {
                loader
                    .override_global(m::GLOBAL_SWITCH_PREV_STATE, &o.switch_prev_state, true)
                    .override_global(m::GLOBAL_SWITCH_NEXT_PID, &o.switch_next_pid, true)
                    .override_global(m::GLOBAL_TASK_PID, &o.task_pid, true)
                    .override_global(m::GLOBAL_FUTEX_UADDR, &o.futex_uaddr, true)
                    .override_global(m::GLOBAL_FUTEX_OP, &o.futex_op, true)
                    .override_global(m::GLOBAL_WAITV_WAITERS, &o.waitv_waiters, true);
            }
        }
        let mut ebpf = loader.load(EBPF_OBJECT).map_err(AttachError::Load)?;
        let mut attachments = Vec::new();
        if config.arm_on_exec || dwarf {
            attachments.push(attach_raw_tracepoint(
                &mut ebpf,
                EXEC_PROGRAM,
                "sched_process_exec",
            )?);
        }
        if forks {
            attachments.push(attach_tracepoint(
                &mut ebpf,
                FORK_PROGRAM,
                "sched",
                "sched_process_fork",
                "following child processes",
            )?);
            attachments.push(attach_raw_tracepoint(
                &mut ebpf,
                EXIT_PROGRAM,
                "sched_process_exit",
            )?);
        }
        let mut cpus = 0;
        if wants(ProfileKind::Cpu) {
            cpus = attach_cpu_sampler(&mut ebpf, config.frequency)?;
            attachments.push(format!(
                "{CPU_PROGRAM} on cpu-clock at {} Hz on {cpus} CPUs",
                config.frequency
            ));
        }
        if wants(ProfileKind::OffCpu) {
            attachments.push(attach_tracepoint(
                &mut ebpf,
                "prf_switch",
                "sched",
                "sched_switch",
                "offcpu",
            )?);
        }
        if wants(ProfileKind::Futex) {
            attachments.push(attach_tracepoint(
                &mut ebpf,
                "prf_futex_in",
                "syscalls",
                "sys_enter_futex",
                "futex",
            )?);
            attachments.push(attach_tracepoint(
                &mut ebpf,
                "prf_futex_out",
                "syscalls",
                "sys_exit_futex",
                "futex",
            )?);
            // futex_waitv (Linux 5.16+): optional, older kernels lack it.
            if offsets.as_ref().is_some_and(|o| o.has_waitv) {
                attachments.push(attach_tracepoint(
                    &mut ebpf,
                    "prf_waitv_in",
                    "syscalls",
                    "sys_enter_futex_waitv",
                    "futex",
                )?);
                attachments.push(attach_tracepoint(
                    &mut ebpf,
                    "prf_futex_out",
                    "syscalls",
                    "sys_exit_futex_waitv",
                    "futex",
                )?);
            } else {
                warn!("this kernel has no futex_waitv tracepoints; futex_waitv waits are not seen");
            }
        }
        if let Some(go) = &config.go_waits {
            for probe in &go.probes {
                attachments.push(attach_uprobe(&mut ebpf, probe, &go.path, config.go_tgid)?);
            }
        }
        if tracepoints {
            // Wake-ups: who woke a blocked thread or a futex waiter.
            attachments.push(attach_raw_tracepoint(
                &mut ebpf,
                "prf_waking",
                "sched_waking",
            )?);
        }
        debug!(?config.kinds, cpus, ?selection, "attached");
        Ok(Attached {
            ebpf: Some(ebpf),
            cpus,
            attachments,
            kernel_cost: Vec::new(),
            recursion_misses: 0,
        })
    }

    /// Takes a map out of the object, so it outlives [`Attached::detach`].
    pub fn take_map(&mut self, name: &'static str) -> Result<Map, AttachError> {
        self.ebpf
            .as_mut()
            .and_then(|e| e.take_map(name))
            .ok_or(AttachError::MissingMap(name))
    }

    /// Every entry of a hash map of the object (while loaded; empty once
    /// detached or when the map cannot be read).
    pub fn hash_entries<K: aya::Pod, V: aya::Pod>(&self, name: &'static str) -> Vec<(K, V)> {
        let Some(map) = self.ebpf.as_ref().and_then(|e| e.map(name)) else {
            return Vec::new();
        };
        match aya::maps::HashMap::<_, K, V>::try_from(map) {
            Ok(hash) => hash.iter().filter_map(Result::ok).collect(),
            Err(err) => {
                debug!("cannot read map {name}: {err}");
                Vec::new()
            }
        }
    }

    /// Events the programs missed because a BPF program was already
    /// running on that CPU (the kernel's per-program `recursion_misses`),
    /// summed; the last value read once detached.
    pub fn recursion_misses(&mut self) -> u64 {
        if let Some(ebpf) = &self.ebpf {
            use std::os::fd::AsFd as _;
            let total = ebpf
                .programs()
                .filter_map(|(name, program)| Some((name, program.fd().ok()?)))
                .filter_map(|(name, fd)| {
                    let misses = recursion_misses(fd.as_fd())?;
                    if misses > 0 {
                        debug!(program = name, misses, "recursion misses");
                    }
                    Some(misses)
                })
                .sum();
            self.recursion_misses = self.recursion_misses.max(total);
        }
        self.recursion_misses
    }

    /// Whether the programs are still loaded and attached.
    pub fn is_attached(&self) -> bool {
        self.ebpf.is_some()
    }

    /// Detaches and unloads every program; maps taken out stay readable.
    pub fn detach(&mut self) {
        if let Some(ebpf) = &self.ebpf {
            self.kernel_cost = kernel_cost(ebpf);
        }
        self.recursion_misses();
        if self.ebpf.take().is_some() {
            debug!("detached and unloaded the eBPF programs");
        }
    }
}

/// A program's `recursion_misses` (Linux 5.12+), read with
/// `BPF_OBJ_GET_INFO_BY_FD` by hand: aya's `ProgramInfo` does not expose it.
fn recursion_misses(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    use std::os::fd::AsRawFd as _;
    /// The `info` member of `union bpf_attr`.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // SAFETY: bpf_prog_info is plain old data; all zeroes is valid.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: &mut info as *mut _ as u64,
    };
    // SAFETY: the kernel writes at most `info_len` bytes into `info`,
    // which outlives the call; `attr` is a valid bpf_attr prefix.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    (ret == 0).then_some(info.recursion_misses)
}

/// A program of the object, as its type.
/// Each program's runs and run time, when the kernel counted them
/// (nothing when `kernel.bpf_stats_enabled` is 0: every count is then 0).
fn kernel_cost(ebpf: &Ebpf) -> Vec<ProgramCost> {
    let mut costs: Vec<ProgramCost> = ebpf
        .programs()
        .filter_map(|(name, program)| {
            let info = program.info().ok()?;
            (info.run_count() > 0).then(|| ProgramCost {
                program: name.to_owned(),
                runs: info.run_count(),
                run_time: info.run_time(),
            })
        })
        .collect();
    costs.sort_by_key(|c| std::cmp::Reverse(c.run_time));
    costs
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, AttachError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(AttachError::MissingProgram(name))?
        .try_into()
        .map_err(|source| AttachError::Program {
            program: name,
            source,
        })
}

fn attach_cpu_sampler(ebpf: &mut Ebpf, frequency: u64) -> Result<usize, AttachError> {
    let program: &mut PerfEvent = program(ebpf, CPU_PROGRAM)?;
    program.load().map_err(|source| AttachError::Program {
        program: CPU_PROGRAM,
        source,
    })?;
    let cpus = aya::util::online_cpus().map_err(|(what, err)| AttachError::Cpus(what, err))?;
    for &cpu in &cpus {
        program
            .attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Frequency(frequency),
                false,
            )
            .map_err(|source| AttachError::PerfEvent { cpu, source })?;
    }
    Ok(cpus.len())
}

/// Loads `program` and attaches it to the raw tracepoint `name` (no
/// tracefs needed).
fn attach_raw_tracepoint(
    ebpf: &mut Ebpf,
    program: &'static str,
    name: &str,
) -> Result<String, AttachError> {
    let prog: &mut RawTracePoint = self::program(ebpf, program)?;
    prog.load()
        .and_then(|()| prog.attach(name).map(|_| ()))
        .map_err(|source| AttachError::Program { program, source })?;
    Ok(format!("{program} on {name}"))
}

/// Loads `program` (once) and attaches it to `category:name`.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &'static str,
    category: &str,
    name: &str,
    kind: &'static str,
) -> Result<String, AttachError> {
    let tracepoint = format!("{category}:{name}");
    let prog: &mut TracePoint = self::program(ebpf, program)?;
    if prog.fd().is_err() {
        prog.load()
            .map_err(|source| AttachError::Program { program, source })?;
    }
    prog.attach(category, name)
        .map_err(|source| AttachError::Tracepoint {
            program,
            tracepoint: tracepoint.clone(),
            source,
        })
        .map_err(|err| match tracefs_root() {
            Some(root) if !root.join("events").join(category).join(name).exists() => {
                AttachError::MissingTracepoint(
                    tracepoint.clone(),
                    format!("{}/events/{category}/{name}", root.display()),
                    kind,
                )
            }
            _ => err,
        })?;
    debug!(program, %tracepoint, "attached");
    Ok(format!("{program} on {tracepoint}"))
}

/// Loads `probe`'s program and attaches it to the entry of its function
/// in `path`, firing for process `tgid` only (the kernel sets the
/// breakpoint in that process alone).
fn attach_uprobe(
    ebpf: &mut Ebpf,
    probe: &GoProbe,
    path: &str,
    tgid: u32,
) -> Result<String, AttachError> {
    let prog: &mut UProbe = program(ebpf, probe.program)?;
    if prog.fd().is_err() {
        prog.load().map_err(|source| AttachError::Program {
            program: probe.program,
            source,
        })?;
    }
    let scope = match std::num::NonZeroU32::new(tgid) {
        Some(pid) => UProbeScope::OneProcess(pid),
        None => UProbeScope::AllProcesses,
    };
    prog.attach(probe.offset, path, scope)
        .map_err(|source| AttachError::Uprobe {
            function: probe.function,
            path: path.to_owned(),
            source,
        })?;
    debug!(
        program = probe.program,
        function = probe.function,
        path,
        "attached"
    );
    Ok(format!(
        "{} on {} ({path}+{:#x})",
        probe.program, probe.function, probe.offset
    ))
}

/// The mounted tracefs, if any.
fn tracefs_root() -> Option<std::path::PathBuf> {
    [TRACEFS, TRACEFS_DEBUG]
        .iter()
        .map(Path::new)
        .find(|p| p.join("events").is_dir())
        .map(Path::to_path_buf)
}

/// Returns the mounted tracefs, mounting it at /sys/kernel/tracing when it is
/// missing (classic tracepoints take their ids and formats from it).
fn ensure_tracefs() -> Result<std::path::PathBuf, AttachError> {
    if let Some(root) = tracefs_root() {
        return Ok(root);
    }
    let target = std::ffi::CString::new(TRACEFS).map_err(|e| AttachError::Tracefs(e.into()))?;
    let fstype = c"tracefs";
    let source = c"nodev";
    // SAFETY: mount(2) with NUL-terminated strings and no data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(AttachError::Tracefs(std::io::Error::last_os_error()));
    }
    info!("mounted tracefs at {TRACEFS} (tracepoints need it; it stays mounted)");
    tracefs_root().ok_or_else(|| {
        AttachError::Tracefs(std::io::Error::other("no events directory after mounting"))
    })
}

/// Field offsets of the tracepoint records the programs read, from the
/// formats tracefs publishes (they can differ between kernels).
struct Offsets {
    switch_prev_state: u32,
    switch_next_pid: u32,
    /// `task_struct.pid`, for the raw `sched_waking` tracepoint.
    task_pid: u32,
    futex_uaddr: u32,
    futex_op: u32,
    waitv_waiters: u32,
    has_waitv: bool,
}

impl Offsets {
    fn read(root: &Path, config: &LoadConfig) -> Result<Offsets, AttachError> {
        let field = |category: &str, name: &str, field: &str, kind: &'static str| {
            field_offset(root, category, name, field).ok_or_else(|| {
                AttachError::MissingTracepoint(
                    format!("{category}:{name} (field {field})"),
                    format!("{}/events/{category}/{name}/format", root.display()),
                    kind,
                )
            })
        };
        let futex = config.kinds.contains(&ProfileKind::Futex);
        let waitv = if futex {
            field_offset(root, "syscalls", "sys_enter_futex_waitv", "waiters")
        } else {
            None
        };
        Ok(Offsets {
            switch_prev_state: field("sched", "sched_switch", "prev_state", "offcpu")?,
            switch_next_pid: field("sched", "sched_switch", "next_pid", "offcpu")?,
            task_pid: crate::btf::kernel_member_offset("task_struct", "pid")
                .map_err(|err| AttachError::Btf(format!("{err:#}")))?,
            futex_uaddr: if futex {
                field("syscalls", "sys_enter_futex", "uaddr", "futex")?
            } else {
                16
            },
            futex_op: if futex {
                field("syscalls", "sys_enter_futex", "op", "futex")?
            } else {
                24
            },
            waitv_waiters: waitv.unwrap_or(16),
            has_waitv: waitv.is_some(),
        })
    }
}

/// The offset of `field` in a tracepoint's format file (lines such as
/// `field:pid_t next_pid;<TAB>offset:56;<TAB>size:4;<TAB>signed:1;`).
fn field_offset(root: &Path, category: &str, name: &str, field: &str) -> Option<u32> {
    let format =
        std::fs::read_to_string(root.join("events").join(category).join(name).join("format"))
            .ok()?;
    parse_field_offset(&format, field)
}

fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let declared = decl.rsplit([' ', '*']).next()?;
        let declared = declared.split('[').next()?;
        if declared != field {
            return None;
        }
        rest.split(';')
            .find_map(|part| part.trim().strip_prefix("offset:"))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn raise_memlock_rlimit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels that account BPF memory to the cgroup",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWITCH: &str = "name: sched_switch
ID: 322
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;
\tfield:u32 * uaddr;\toffset:16;\tsize:8;\tsigned:0;
";

    #[test]
    fn tracepoint_field_offsets() {
        assert_eq!(parse_field_offset(SWITCH, "prev_state"), Some(32));
        assert_eq!(parse_field_offset(SWITCH, "next_pid"), Some(56));
        assert_eq!(parse_field_offset(SWITCH, "prev_comm"), Some(8));
        assert_eq!(parse_field_offset(SWITCH, "uaddr"), Some(16));
        assert_eq!(parse_field_offset(SWITCH, "pid"), None);
    }
}
