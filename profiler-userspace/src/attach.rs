//! Loading and attaching the eBPF programs: the checks that turn a missing
//! privilege or kernel feature into one clear sentence, the embedded object,
//! and the perf events on every online CPU. Dropping [`Attached`] detaches
//! and unloads everything (the links are file descriptors, so even a killed
//! profiler leaves nothing attached).

use aya::{
    Ebpf, EbpfLoader,
    maps::Map,
    programs::{
        PerfEvent,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use thiserror::Error;
use tracing::debug;

/// The object `build.rs` compiled from `profiler-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

/// Name of the on-CPU sampling program (also how tests find it loaded).
pub const CPU_PROGRAM: &str = "prf_cpu_sample";

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
    #[error("the kernel refused to load the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the kernel refused the program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
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
}

impl Attached {
    /// Loads the object for `tgid` and attaches the on-CPU sampler at
    /// `frequency` Hz to every online CPU.
    pub fn cpu_sampler(tgid: u32, frequency: u64) -> Result<Attached, AttachError> {
        // Only a debug note: BPF memory is memcg-accounted on current kernels,
        // and raising the limit needs CAP_SYS_RESOURCE anyway.
        raise_memlock_rlimit();
        let mut ebpf = EbpfLoader::new()
            .override_global(profiler_common::GLOBAL_TARGET_TGID, &tgid, true)
            .load(EBPF_OBJECT)
            .map_err(AttachError::Load)?;
        let program: &mut PerfEvent = ebpf
            .program_mut(CPU_PROGRAM)
            .ok_or(AttachError::MissingMap(CPU_PROGRAM))?
            .try_into()
            .map_err(|source| AttachError::Program {
                program: CPU_PROGRAM,
                source,
            })?;
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
        debug!(
            cpus = cpus.len(),
            frequency, tgid, "attached the on-CPU sampler"
        );
        Ok(Attached {
            ebpf: Some(ebpf),
            cpus: cpus.len(),
        })
    }

    /// Takes a map out of the object, so it outlives [`Attached::detach`].
    pub fn take_map(&mut self, name: &'static str) -> Result<Map, AttachError> {
        self.ebpf
            .as_mut()
            .and_then(|e| e.take_map(name))
            .ok_or(AttachError::MissingMap(name))
    }

    /// Detaches and unloads every program; maps taken out stay readable.
    pub fn detach(&mut self) {
        if self.ebpf.take().is_some() {
            debug!("detached and unloaded the eBPF programs");
        }
    }
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
