//! Where the variables of the Go runtime's own profilers (Go's
//! `runtime/mprof.go`) are in a binary, stripped or not, found from the code
//! that uses them, for Go 1.19 to 1.27: `MemProfileRate`, `mbuckets` (the
//! memory profile's buckets), `mProfCycle` (its publication cycle),
//! `blockprofilerate` and `mutexprofilerate`. [`super::heap`] reads the heap
//! profile with them and [`super::rates`] reads and writes the rates.
//!
//! A stripped binary keeps `.gopclntab`, which names every function, but no
//! symbol for data; the code of a function that uses a variable holds its
//! address in a RIP-relative operand. Each variable is taken where two
//! functions that use it agree, so a match that starts inside another
//! instruction (every byte offset is tried, see [`super::x86`]) or a
//! neighbouring variable cannot be taken for it:
//!
//! | variable | loaded by | and by |
//! |---|---|---|
//! | `MemProfileRate` | `profilealloc` (MOVQ) | `allocmcache` (MOVQ) |
//! | `mbuckets` | `mProf_FlushLocked` (MOVQ) | `stkbucket` (LEAQ) |
//! | `mProfCycle` | `mProf_Flush` (MOVL) | `mProf_Flush` (LEAQ, for its CAS) |
//! | `blockprofilerate` | `blockevent` (MOVQ) | `semacquire1` (CMPQ $0) |
//! | `mutexprofilerate` | `sync.event` (1.19–1.26), `mutexevent` (1.27) (MOVQ) | `semacquire1` (CMPQ $0) |
//!
//! Checked against `go tool nm` on Go 1.19, 1.22, 1.23, 1.25, 1.26 and
//! 1.27 builds, with and without runtime/pprof (every function above is
//! linked in both). The extra instruction forms needed (`MOV r32,
//! [rip+disp32]`, `CMP qword [rip+disp32], imm`) are decoded here, as
//! `super::x86` decodes the others.

use std::{fs::File, io, rc::Rc};

use super::{binary::GoBinary, x86};
use crate::procfs;

/// Where one variable was found: its ELF virtual address.
pub type ElfAddress = u64;

/// The addresses (ELF virtual addresses) of the profiling variables of a
/// binary; each is `Err(why)` when it was not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilingVariables {
    /// `runtime.MemProfileRate` (an `int`).
    pub mem_profile_rate: Result<ElfAddress, String>,
    /// `runtime.mbuckets` (a `*bucket`, the newest memory-profile bucket).
    pub mbuckets: Result<ElfAddress, String>,
    /// `runtime.mProfCycle` (a `uint32`: the cycle `<< 1`, bit 0 a flag).
    pub mprof_cycle: Result<ElfAddress, String>,
    /// `runtime.blockprofilerate` (a `uint64`, in CPU ticks).
    pub block_profile_rate: Result<ElfAddress, String>,
    /// `runtime.mutexprofilerate` (a `uint64`: 1 in N events sampled).
    pub mutex_profile_rate: Result<ElfAddress, String>,
}

impl ProfilingVariables {
    /// Finds every variable in `binary`'s code.
    pub fn find(binary: &GoBinary) -> ProfilingVariables {
        ProfilingVariables {
            mem_profile_rate: agree(
                "runtime.MemProfileRate",
                code_refs(binary, &["runtime.profilealloc"], Ref::Load64),
                code_refs(binary, &["runtime.allocmcache"], Ref::Load64),
            ),
            mbuckets: agree(
                "runtime.mbuckets",
                code_refs(binary, &["runtime.mProf_FlushLocked"], Ref::Load64),
                code_refs(binary, &["runtime.stkbucket"], Ref::Lea),
            ),
            mprof_cycle: agree(
                "runtime.mProfCycle",
                code_refs(binary, &["runtime.mProf_Flush"], Ref::Load32),
                code_refs(binary, &["runtime.mProf_Flush"], Ref::Lea),
            ),
            block_profile_rate: agree(
                "runtime.blockprofilerate",
                code_refs(binary, &["runtime.blockevent"], Ref::Load64),
                code_refs(binary, &["runtime.semacquire1"], Ref::Cmp64),
            ),
            mutex_profile_rate: agree(
                "runtime.mutexprofilerate",
                code_refs(binary, &["sync.event", "runtime.mutexevent"], Ref::Load64),
                code_refs(binary, &["runtime.semacquire1"], Ref::Cmp64),
            ),
        }
    }
}

/// Whether the program links the code that reads the heap profile:
/// `runtime.MemProfile` (up to Go 1.22, and whenever the program calls it)
/// or `runtime.memProfileInternal` (1.23+, what runtime/pprof calls). Go's
/// linker sets `runtime.disableMemoryProfiling` exactly when neither is
/// reachable (`cmd/link/internal/ld/lib.go`, `linksetup`), and the runtime
/// then starts with `MemProfileRate` 0.
pub fn memory_profiling_linked(binary: &GoBinary) -> bool {
    ["runtime.MemProfile", "runtime.memProfileInternal"]
        .iter()
        .any(|name| binary.table.function_by_name(name).is_some())
}

/// How an instruction refers to a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ref {
    /// `MOV r64, [rip+disp32]`
    Load64,
    /// `MOV r32, [rip+disp32]`
    Load32,
    /// `LEA r64, [rip+disp32]`
    Lea,
    /// `CMP qword [rip+disp32], imm8/imm32`
    Cmp64,
}

/// The addresses the first function named in `names` (the first of them
/// found) refers to so, or why there are none.
fn code_refs(binary: &GoBinary, names: &[&str], how: Ref) -> Result<Vec<u64>, String> {
    let function = names
        .iter()
        .find_map(|name| binary.table.function_by_name(name))
        .ok_or_else(|| format!("{} is not in the binary", names.join(" or ")))?;
    let end = function
        .end
        .min(function.entry.saturating_add(x86::MAX_SCAN as u64));
    let code = binary
        .code(function.entry..end)
        .ok_or_else(|| format!("the code of {} is not in .text", function.name))?;
    let targets: Vec<u64> = match how {
        Ref::Load64 => x86::rip_loads(code, function.entry)
            .iter()
            .map(|r| r.target)
            .collect(),
        Ref::Lea => x86::rip_leas(code, function.entry)
            .iter()
            .map(|r| r.target)
            .collect(),
        Ref::Load32 => rip_loads32(code, function.entry),
        Ref::Cmp64 => rip_cmp64(code, function.entry),
    };
    // Code addresses are not variables.
    let text = binary.table.text_range();
    let targets: Vec<u64> = targets
        .into_iter()
        .filter(|t| !text.contains(t) && *t != 0)
        .collect();
    if targets.is_empty() {
        return Err(format!(
            "{} has no {} with a RIP-relative address",
            function.name,
            match how {
                Ref::Load64 => "64-bit load",
                Ref::Load32 => "32-bit load",
                Ref::Lea => "LEA",
                Ref::Cmp64 => "64-bit compare",
            }
        ));
    }
    Ok(targets)
}

/// The one address both lists hold.
fn agree(
    name: &str,
    first: Result<Vec<u64>, String>,
    second: Result<Vec<u64>, String>,
) -> Result<u64, String> {
    let (first, second) = match (first, second) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(why), _) | (_, Err(why)) => return Err(format!("{name} was not found: {why}")),
    };
    let mut common: Vec<u64> = first.into_iter().filter(|a| second.contains(a)).collect();
    common.sort_unstable();
    common.dedup();
    match common.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "{name} was not found: the functions that use it refer to no common address"
        )),
        many => Err(format!(
            "{name} was not found: the functions that use it share {} addresses ({})",
            many.len(),
            many.iter()
                .map(|a| format!("{a:#x}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Every `MOV r32, [rip+disp32]` (`8B /r`, optionally after a REX prefix
/// without W) in `code` at `address`: the addresses loaded. A 64-bit load
/// (`REX.W 8B`) also matches, one byte in, with the same target: both are
/// loads of the variable.
pub fn rip_loads32(code: &[u8], address: u64) -> Vec<u64> {
    let code = &code[..code.len().min(x86::MAX_SCAN)];
    let mut found = Vec::new();
    for (i, window) in code.windows(6).enumerate() {
        let &[op, modrm, d0, d1, d2, d3] = window else {
            continue;
        };
        if op != 0x8b || modrm & 0xc7 != 0x05 {
            continue;
        }
        let next = address.wrapping_add(i as u64 + 6);
        found.push(next.wrapping_add_signed(i64::from(i32::from_le_bytes([d0, d1, d2, d3]))));
    }
    found
}

/// Every `CMP qword [rip+disp32], imm8` (`REX.W 83 /7 ib`) or `imm32`
/// (`REX.W 81 /7 id`) in `code` at `address`: the addresses compared.
pub fn rip_cmp64(code: &[u8], address: u64) -> Vec<u64> {
    let code = &code[..code.len().min(x86::MAX_SCAN)];
    let mut found = Vec::new();
    for (i, window) in code.windows(7).enumerate() {
        let &[rex, op, modrm, d0, d1, d2, d3] = window else {
            continue;
        };
        // REX.W (REX.B is ignored for RIP addressing), ModRM mod 00, reg 7
        // (CMP), r/m 101 (RIP).
        if rex & 0xf8 != 0x48 || modrm != 0x3d {
            continue;
        }
        let immediate = match op {
            0x83 => 1,
            0x81 => 4,
            _ => continue,
        };
        if i + 7 + immediate > code.len() {
            continue;
        }
        let next = address.wrapping_add((i + 7 + immediate) as u64);
        found.push(next.wrapping_add_signed(i64::from(i32::from_le_bytes([d0, d1, d2, d3]))));
    }
    found
}

/// A process's Go binary and its load bias (see
/// [`super::binary::process_binary`]); `Err` is a sentence.
pub fn process_binary(pid: u32) -> Result<(Rc<GoBinary>, u64), String> {
    super::binary::process_binary(pid).map_err(|err| match err {
        super::binary::ProcessBinaryError::Process(err) => {
            format!("cannot read the executable of process {pid}: {err}")
        }
        super::binary::ProcessBinaryError::Unsupported(why) => why,
    })
}

/// Whether `len` bytes at process address `address` lie in one writable
/// mapping of process `pid` (where the runtime's variables live).
pub fn in_writable_mapping(pid: u32, address: u64, len: u64) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return false;
    };
    text.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            return false;
        };
        let Some((start, end)) = range.split_once('-') else {
            return false;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            return false;
        };
        perms.as_bytes().get(1) == Some(&b'w')
            && start <= address
            && address.checked_add(len).is_some_and(|e| e <= end)
    })
}

/// The little-endian `u64` at `address`, if all 8 bytes read.
pub fn read_u64(mem: &File, address: u64) -> Option<u64> {
    let mut word = [0u8; 8];
    (procfs::read_memory(mem, address, &mut word) == word.len()).then(|| u64::from_le_bytes(word))
}

/// The little-endian `u32` at `address`, if all 4 bytes read.
pub fn read_u32(mem: &File, address: u64) -> Option<u32> {
    let mut word = [0u8; 4];
    (procfs::read_memory(mem, address, &mut word) == word.len()).then(|| u32::from_le_bytes(word))
}

/// Opens `/proc/PID/mem` for reading; the error says what is needed.
pub fn open_memory(pid: u32) -> io::Result<File> {
    File::open(format!("/proc/{pid}/mem")).map_err(|err| with_permission_hint(pid, err))
}

/// An error of `/proc/PID/mem`, with what to do when it is a permission
/// error.
pub fn with_permission_hint(pid: u32, err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::PermissionDenied {
        io::Error::new(
            err.kind(),
            format!(
                "cannot open the memory of process {pid} ({err}): run as root, or as its user \
                 with ptrace allowed (kernel.yama.ptrace_scope 0)"
            ),
        )
    } else {
        io::Error::new(
            err.kind(),
            format!("cannot open the memory of process {pid}: {err}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `runtime.mProf_Flush` of Go 1.27 (from `go tool objdump`), the start
    /// of its CAS loop: `MOVL runtime.mProfCycle(SB), AX` at 0x446f34 and
    /// `LEAQ runtime.mProfCycle(SB), DX` at 0x446f43 (nm: 0xa6fd24).
    #[test]
    fn mprof_cycle_of_go_1_27() {
        let code: &[u8] = &[
            0x8b, 0x05, 0xea, 0x8d, 0x62, 0x00, // MOVL mProfCycle(SB), AX
            0x89, 0x44, 0x24, 0x08, // MOVL AX, 0x8(SP)
            0x89, 0xc1, // MOVL AX, CX
            0x83, 0xc9, 0x01, // ORL $0x1, CX
            0x48, 0x8d, 0x15, 0xda, 0x8d, 0x62, 0x00, // LEAQ mProfCycle(SB), DX
            0xf0, 0x0f, 0xb1, 0x0a, // LOCK CMPXCHGL CX, 0(DX)
        ];
        let loads = rip_loads32(code, 0x446f34);
        assert_eq!(loads, vec![0xa6fd24]);
        let leas: Vec<u64> = x86::rip_leas(code, 0x446f34)
            .iter()
            .map(|l| l.target)
            .collect();
        assert_eq!(leas, vec![0xa6fd24]);
        assert_eq!(agree("mProfCycle", Ok(loads), Ok(leas)), Ok(0xa6fd24));
    }

    /// `CMPQ runtime.blockprofilerate(SB), $0x0` in Go 1.27's
    /// `runtime.semacquire1` at 0x466182 (nm: 0xa6fe68).
    #[test]
    fn compares_with_immediates() {
        let code: &[u8] = &[0x48, 0x83, 0x3d, 0xde, 0x9c, 0x60, 0x00, 0x00];
        assert_eq!(rip_cmp64(code, 0x466182), vec![0xa6fe68]);
        // imm32 form: 4 more bytes of immediate.
        let code: &[u8] = &[0x48, 0x81, 0x3d, 0x10, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(rip_cmp64(code, 0x1000), vec![0x100b + 0x10]);
        // Cut short: the immediate is missing.
        assert!(rip_cmp64(&code[..9], 0x1000).is_empty());
        // CMPL (no REX.W) and other ModRM forms are not taken.
        assert!(rip_cmp64(&[0x83, 0x3d, 0, 0, 0, 0, 0, 0], 0).is_empty());
        assert!(rip_cmp64(&[0x48, 0x83, 0x7d, 0x10, 0, 0, 0, 0], 0).is_empty());
    }

    #[test]
    fn loads_of_32_and_64_bits() {
        // MOVL -0x10(IP), R9 with REX.R: 44 8b 0d f0 ff ff ff.
        assert_eq!(
            rip_loads32(&[0x44, 0x8b, 0x0d, 0xf0, 0xff, 0xff, 0xff], 0x1000),
            vec![0x1007 - 0x10]
        );
        // A 64-bit load counts too, with its own target.
        assert_eq!(
            rip_loads32(&[0x48, 0x8b, 0x05, 0x10, 0, 0, 0], 0x1000),
            vec![0x1007 + 0x10]
        );
        // mod 01 is not RIP-relative.
        assert!(rip_loads32(&[0x8b, 0x45, 0x10, 0, 0, 0], 0).is_empty());
    }

    #[test]
    fn agreement() {
        assert_eq!(agree("x", Ok(vec![1, 2, 3]), Ok(vec![3, 4])), Ok(3));
        assert_eq!(agree("x", Ok(vec![3, 3]), Ok(vec![3])), Ok(3));
        assert!(agree("x", Ok(vec![1, 2]), Ok(vec![3])).is_err());
        assert!(agree("x", Ok(vec![1, 2]), Ok(vec![1, 2])).is_err());
        let err = agree("x", Err("f is not in the binary".into()), Ok(vec![1]))
            .expect_err("missing function");
        assert!(err.contains("f is not in the binary"), "{err}");
    }

    #[test]
    fn garbage_code_never_panics() {
        assert!(rip_loads32(&[], 0).is_empty());
        assert!(rip_cmp64(&[], u64::MAX).is_empty());
        assert_eq!(
            rip_loads32(&[0x8b, 0x05, 0xff, 0xff, 0xff, 0x7f], u64::MAX - 2).len(),
            1
        );
        let mut state = 0x1234_5678_9abc_def0u64;
        let noise: Vec<u8> = (0..3 * x86::MAX_SCAN)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let _ = rip_loads32(&noise, 0x40_0000);
        let _ = rip_cmp64(&noise, u64::MAX - 100);
    }

    #[test]
    fn writable_mappings_of_this_process() {
        static WORD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(7);
        let address = WORD.as_ptr() as u64;
        let pid = std::process::id();
        assert!(in_writable_mapping(pid, address, 8));
        // Code is not writable; the zero page is not mapped.
        assert!(!in_writable_mapping(
            pid,
            open_memory as *const () as u64,
            8
        ));
        assert!(!in_writable_mapping(pid, 0, 8));
        assert!(!in_writable_mapping(pid, u64::MAX - 4, 8));
        let mem = open_memory(pid).expect("own memory");
        assert_eq!(read_u64(&mem, address), Some(7));
        assert_eq!(read_u64(&mem, 8), None);
        assert_eq!(read_u32(&mem, 8), None);
    }
}
