//! Where the Go runtime is probed for goroutine waits: the runtime
//! functions whose entries mark a park, a wake-up, a goroutine running
//! again and a semaphore acquire, found by name in `.gopclntab` (so
//! stripped binaries too), each with the file offset a uprobe is attached
//! by (just past the stack check, see [`past_stack_check`]). All five
//! exist, never inlined, in Go 1.19 to 1.27.

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

/// Each program and the runtime function it probes (see
/// `profiler-ebpf/src/gowait.rs`) when every park is timed (goblock, and
/// gomutex with it).
pub const PARK_PROBES: [(&str, &str); 4] = [
    ("prf_go_sema", "runtime.semacquire1"),
    ("prf_go_park", "runtime.gopark"),
    ("prf_go_ready", "runtime.ready"),
    ("prf_go_execute", "runtime.execute"),
];

/// The same when only semaphore waits are timed (gomutex alone): from
/// `semacquire1` to the unlock's `readyWithTime`.
pub const SEMA_PROBES: [(&str, &str); 2] = [
    ("prf_go_sema", "runtime.semacquire1"),
    ("prf_go_sema_ready", "runtime.readyWithTime"),
];

/// The probes for goroutine waits in `binary` (only the semaphore ones
/// with `sema_only`), or a sentence saying which function is missing.
pub fn wait_probes(binary: &GoBinary, sema_only: bool) -> Result<Vec<GoProbe>, String> {
    let probes: &[(&'static str, &'static str)] = if sema_only {
        &SEMA_PROBES
    } else {
        &PARK_PROBES
    };
    probes
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
            let at = entry + past_stack_check(binary.code(entry..entry + 10).unwrap_or(&[]));
            let offset = binary.file_offset(at).ok_or_else(|| {
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

/// How far into a function its probe goes: past Go's stack check
/// (`CMPQ SP, 16(R14)`, 4 bytes) when a conditional jump (`JBE`) follows
/// it, else 0. The kernel emulates a probed jump, where the comparison
/// would be single-stepped after a second trap; nothing the probes read
/// (the argument registers, R14, SP, the frame pointer) has changed
/// there. Every runtime function probed starts so in Go 1.19 to 1.27.
fn past_stack_check(code: &[u8]) -> u64 {
    const CMP_SP_STACKGUARD: [u8; 4] = [0x49, 0x3b, 0x66, 0x10];
    match code {
        [a, b, c, d, 0x76, ..] | [a, b, c, d, 0x0f, 0x86, ..]
            if [*a, *b, *c, *d] == CMP_SP_STACKGUARD =>
        {
            4
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_goes_on_the_jump_after_the_stack_check() {
        // Go 1.27's runtime.gopark: cmp 0x10(%r14),%rsp; jbe rel32; push %rbp
        let gopark = [0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0xdc, 0, 0, 0, 0x55];
        assert_eq!(past_stack_check(&gopark), 4);
        // A short jump.
        assert_eq!(
            past_stack_check(&[0x49, 0x3b, 0x66, 0x10, 0x76, 0x58, 0x48]),
            4
        );
        // No stack check (a NOSPLIT function): the entry itself.
        assert_eq!(past_stack_check(&[0x55, 0x48, 0x89, 0xe5]), 0);
        // A comparison not followed by the jump, and code cut short.
        assert_eq!(past_stack_check(&[0x49, 0x3b, 0x66, 0x10, 0x90]), 0);
        assert_eq!(past_stack_check(&[0x49, 0x3b]), 0);
    }
}
