//! Where the Go runtime is probed for goroutine waits: the runtime
//! functions whose entries mark a park, a wake-up, a goroutine running
//! again and a semaphore acquire, found by name in `.gopclntab` (so
//! stripped binaries too), each with the file offset a uprobe is attached
//! by. All five exist, never inlined, in Go 1.19 to 1.27.

use super::GoBinary;

/// One uprobe to attach: the kernel program and the function it goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoProbe {
    /// The program's name in the eBPF object.
    pub program: &'static str,
    /// The runtime function.
    pub function: &'static str,
    /// The offset of the function's entry in the binary's file.
    pub offset: u64,
}

/// The programs for every park (goblock, and gomutex with it).
pub const PARK_PROGRAMS: [&str; 3] = ["prf_go_park", "prf_go_ready", "prf_go_execute"];
/// The program that ends semaphore waits when only those are timed
/// (gomutex alone).
pub const SEMA_READY_PROGRAM: &str = "prf_go_sema_ready";

/// Each program and the runtime function it probes (see
/// `profiler-ebpf/src/gowait.rs`).
pub const WAIT_PROBES: [(&str, &str); 5] = [
    ("prf_go_sema", "runtime.semacquire1"),
    ("prf_go_park", "runtime.gopark"),
    ("prf_go_ready", "runtime.ready"),
    ("prf_go_execute", "runtime.execute"),
    (SEMA_READY_PROGRAM, "runtime.readyWithTime"),
];

/// The probes for goroutine waits in `binary`, or a sentence saying which
/// function is missing.
pub fn wait_probes(binary: &GoBinary) -> Result<Vec<GoProbe>, String> {
    WAIT_PROBES
        .iter()
        .map(|&(program, function)| {
            let entry = binary
                .table
                .function_by_name(function)
                .ok_or_else(|| {
                    format!(
                        "the binary has no function {function} in its symbol table (.gopclntab)"
                    )
                })?
                .entry;
            let offset = binary.file_offset(entry).ok_or_else(|| {
                format!("{function} at {entry:#x} is not in a loadable segment of the file")
            })?;
            Ok(GoProbe {
                program,
                function,
                offset,
            })
        })
        .collect()
}
