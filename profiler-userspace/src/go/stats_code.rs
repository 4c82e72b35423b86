//! Where the runtime's statistics live in a stripped Go binary, found from
//! the code of runtime functions that use them (named by `.gopclntab`,
//! which stripping keeps), for [`super::runtime_stats`]:
//!
//! | variable | function | what its code does |
//! |---|---|---|
//! | `runtime.memstats` | `runtime.gcMarkTermination` | `INCL memstats.numforcedgc`, `INCL memstats.numgc` (4 bytes apart), `LEAQ memstats.pause_ns`, `LEAQ memstats.pause_end` |
//! | `runtime.gcController` | `runtime.gcControllerCommit` | `LEAQ gcController` (the receiver of its calls, twice or more), `MOVQ gcController.memoryLimit` (at +8) |
//! | `runtime.mheap_` | `runtime.allocmcache.func1` | `LEAQ mheap_` (`lock`/`unlock(&mheap_.lock)`), `LEAQ mheap_.cachealloc` |
//! | `runtime.allm` | `runtime.mcommoninit` | `MOVQ allm` then `MOVQ reg, m.alllink(mp)`, `LEAQ allm` (the atomic store) |
//! | `runtime.sched` | `runtime.gfget` | `LEAQ sched.gFree.lock` (lock, unlock), `DECL` of the list's count |
//! | `runtime.allp` | `runtime.gcMarkTinyAllocs` | `MOVQ allp`, `MOVQ allp+8` (the slice's array and length) |
//! | `runtime.allgs` | `runtime.forEachG` | as [`super::goroutines`] finds it |
//!
//! Each rule also checks the layout of the release (the distance between
//! two references is a known field offset), so a binary whose code does
//! not match is refused rather than read at a wrong address; what is found
//! is checked again in memory by the reader. Checked against the symbol
//! table (`go tool nm`) of unstripped builds of Go 1.19 and 1.21 to 1.27
//! (`tests/tests/go_runtime_stats.rs`).
//!
//! The decoding is by hand, like [`super::x86`] (whose forms are REX.W
//! `MOV`/`LEA` only): any instruction `[REX] opcode ModRM disp32 [imm]`
//! whose ModRM is RIP-relative (mod = 00, r/m = 101), for the opcodes
//! listed in [`Access`], at every byte offset. Matches inside other
//! instructions are possible, so they are candidates that the rules and
//! the reader check.

use std::collections::HashMap;

use super::{GoBinary, stats_layout::StatsLayout, x86};

/// At most this many bytes of a function are scanned.
pub const MAX_SCAN: usize = 16 << 10;

/// What an instruction does with its RIP-relative operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `MOV r, m` (`8B /r`); `MOVZX r, m8` (`0F B6 /r`).
    Load,
    /// `MOV m, r` (`89 /r`).
    Store,
    /// `LEA r, m` (`8D /r`).
    Lea,
    /// `INC m` (`FF /0`).
    Inc,
    /// `DEC m` (`FF /1`).
    Dec,
    /// `ADD`/`SUB` (`01`, `03`, `29`, `2B /r`), `CMP m, imm8` (`83 /7 ib`,
    /// `80 /7 ib`), `MOV m, imm` (`C6 /0 ib`, `C7 /0 id`).
    Other,
}

/// One RIP-relative operand found in code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reference {
    /// Address of the opcode (a REX prefix, if any, is the byte before).
    pub at: u64,
    pub access: Access,
    /// The address referred to.
    pub target: u64,
    /// Whether a REX.W prefix precedes the opcode (a 64-bit operand).
    pub wide: bool,
    /// The ModRM `reg` field with REX.R (the register, for `r` forms).
    pub register: u8,
}

/// Every RIP-relative operand in `code`, which starts at `address`.
pub fn references(code: &[u8], address: u64) -> Vec<Reference> {
    let code = &code[..code.len().min(MAX_SCAN)];
    let mut found = Vec::new();
    for i in 0..code.len() {
        let Some(&op) = code.get(i) else { break };
        // (opcode length, access, immediate length, required ModRM reg).
        let (op_len, access, imm, reg_field): (usize, Access, usize, Option<u8>) = match op {
            0x8b => (1, Access::Load, 0, None),
            0x89 => (1, Access::Store, 0, None),
            0x8d => (1, Access::Lea, 0, None),
            0x01 | 0x03 | 0x29 | 0x2b => (1, Access::Other, 0, None),
            0xff => match code.get(i + 1).map(|m| (m >> 3) & 7) {
                Some(0) => (1, Access::Inc, 0, Some(0)),
                Some(1) => (1, Access::Dec, 0, Some(1)),
                _ => continue,
            },
            0x83 | 0x80 => (1, Access::Other, 1, Some(7)),
            0xc6 => (1, Access::Other, 1, Some(0)),
            0xc7 => (1, Access::Other, 4, Some(0)),
            0x0f if code.get(i + 1) == Some(&0xb6) => (2, Access::Load, 0, None),
            _ => continue,
        };
        let Some(&modrm) = code.get(i + op_len) else {
            continue;
        };
        if modrm & 0xc7 != 0x05 || reg_field.is_some_and(|r| (modrm >> 3) & 7 != r) {
            continue;
        }
        let disp_at = i + op_len + 1;
        let Some(disp) = code.get(disp_at..disp_at + 4) else {
            continue;
        };
        let end = disp_at + 4 + imm;
        if end > code.len() {
            continue;
        }
        let displacement = i32::from_le_bytes([disp[0], disp[1], disp[2], disp[3]]);
        let rex = i
            .checked_sub(1)
            .and_then(|p| code.get(p))
            .copied()
            .filter(|b| b & 0xf0 == 0x40)
            .unwrap_or(0);
        found.push(Reference {
            at: address.wrapping_add(i as u64),
            access,
            target: address
                .wrapping_add(end as u64)
                .wrapping_add_signed(i64::from(displacement)),
            wide: rex & 0x08 != 0,
            register: ((modrm >> 3) & 7) | ((rex & 0x04) << 1),
        });
    }
    found
}

/// Whether `code` stores a 64-bit register to `[base + displacement]`
/// (`REX.W 89 /r`, mod = 10, disp32) with `displacement`.
pub fn stores_at_displacement(code: &[u8], displacement: u64) -> bool {
    let Ok(displacement) = i32::try_from(displacement) else {
        return false;
    };
    let want = displacement.to_le_bytes();
    let code = &code[..code.len().min(MAX_SCAN)];
    code.windows(8).any(|w| {
        let &[rex, op, modrm, a, b, c, d, e] = w else {
            return false;
        };
        if rex & 0xf8 != 0x48 || op != 0x89 || modrm & 0xc0 != 0x80 {
            return false;
        }
        // r/m = 100 is followed by a SIB byte.
        if modrm & 7 == 4 {
            [b, c, d, e] == want
        } else {
            [a, b, c, d] == want
        }
    })
}

/// The code of function `name` and its entry (ELF addresses).
fn function_code<'a>(binary: &'a GoBinary, name: &str) -> Result<(&'a [u8], u64), String> {
    let function = binary
        .table
        .function_by_name(name)
        .ok_or_else(|| format!("{name} is not in the binary's function table"))?;
    let end = function
        .end
        .min(function.entry.saturating_add(MAX_SCAN as u64));
    let code = binary
        .code(function.entry..end)
        .ok_or_else(|| format!("the code of {name} is not in .text"))?;
    Ok((code, function.entry))
}

/// A target found must not be code.
fn not_code(binary: &GoBinary, target: u64, name: &str) -> Result<u64, String> {
    if binary.table.text_range().contains(&target) {
        Err(format!("what {name} refers to is code ({target:#x})"))
    } else {
        Ok(target)
    }
}

/// How many times each target is referred to with `access`.
fn counts(refs: &[Reference], access: Access) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for r in refs.iter().filter(|r| r.access == access) {
        *counts.entry(r.target).or_insert(0) += 1;
    }
    counts
}

/// Whether `refs` has an operand with `access` at `target`.
fn has(refs: &[Reference], access: Access, target: u64) -> bool {
    refs.iter()
        .any(|r| r.access == access && r.target == target)
}

/// The one candidate, or why not.
fn one(mut candidates: Vec<u64>, name: &str, what: &str) -> Result<u64, String> {
    candidates.sort_unstable();
    candidates.dedup();
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("the code of {name} has no {what}")),
        many => Err(format!(
            "the code of {name} has {} candidates for {what} ({many:#x?})",
            many.len()
        )),
    }
}

/// `runtime.memstats` (ELF address).
pub fn find_memstats(binary: &GoBinary, layout: &StatsLayout) -> Result<u64, String> {
    let name = "runtime.gcMarkTermination";
    let (code, entry) = function_code(binary, name)?;
    let refs = references(code, entry);
    let incs = counts(&refs, Access::Inc);
    let candidates = incs
        .keys()
        .filter(|&&numgc| incs.contains_key(&numgc.wrapping_add(4)))
        .filter_map(|&numgc| numgc.checked_sub(layout.numgc))
        .filter(|&base| {
            has(&refs, Access::Lea, base.wrapping_add(layout.pause_ns))
                && has(&refs, Access::Lea, base.wrapping_add(layout.pause_end))
        })
        .collect();
    let base = one(
        candidates,
        name,
        "increments of memstats.numgc and numforcedgc next to the addresses of pause_ns and \
         pause_end at this release's offsets",
    )?;
    not_code(binary, base, name)
}

/// `runtime.gcController` (ELF address).
pub fn find_gc_controller(binary: &GoBinary) -> Result<u64, String> {
    let name = "runtime.gcControllerCommit";
    let (code, entry) = function_code(binary, name)?;
    let refs = references(code, entry);
    let candidates = counts(&refs, Access::Lea)
        .into_iter()
        .filter(|&(target, n)| {
            n >= 2
                && refs.iter().any(|r| {
                    r.access == Access::Load
                        && r.wide
                        && r.target == target.wrapping_add(super::stats_layout::MEMORY_LIMIT)
                })
        })
        .map(|(target, _)| target)
        .collect();
    let base = one(
        candidates,
        name,
        "address taken twice whose memoryLimit (+8) is also loaded",
    )?;
    not_code(binary, base, name)
}

/// `runtime.mheap_` (ELF address).
pub fn find_mheap(binary: &GoBinary, layout: &StatsLayout) -> Result<u64, String> {
    let name = "runtime.allocmcache.func1";
    let (code, entry) = function_code(binary, name)?;
    let refs = references(code, entry);
    let candidates = counts(&refs, Access::Lea)
        .into_iter()
        .filter(|&(target, n)| {
            n >= 2 && has(&refs, Access::Lea, target.wrapping_add(layout.cachealloc))
        })
        .map(|(target, _)| target)
        .collect();
    let base = one(
        candidates,
        name,
        "address of mheap_.lock (taken twice) with that of mheap_.cachealloc at this release's \
         offset",
    )?;
    not_code(binary, base, name)
}

/// `runtime.allm` (ELF address).
pub fn find_allm(binary: &GoBinary, layout: &StatsLayout) -> Result<u64, String> {
    let name = "runtime.mcommoninit";
    let (code, entry) = function_code(binary, name)?;
    if !stores_at_displacement(code, layout.m_alllink) {
        return Err(format!(
            "the code of {name} stores nothing at m.alllink's offset for this release ({})",
            layout.m_alllink
        ));
    }
    let refs = references(code, entry);
    let candidates = refs
        .iter()
        .filter(|r| r.access == Access::Load && r.wide)
        .map(|r| r.target)
        .filter(|&target| has(&refs, Access::Lea, target))
        .collect();
    let allm = one(
        candidates,
        name,
        "variable both loaded and whose address is taken (allm)",
    )?;
    not_code(binary, allm, name)
}

/// `runtime.sched` (ELF address).
pub fn find_sched(binary: &GoBinary, layout: &StatsLayout) -> Result<u64, String> {
    let name = "runtime.gfget";
    let (code, entry) = function_code(binary, name)?;
    let refs = references(code, entry);
    let counted = |lock: u64, count: u64| {
        count == 0
            || has(
                &refs,
                Access::Dec,
                lock.wrapping_add(count - layout.sched_gfree),
            )
    };
    let [first, second] = layout.sched_gfree_counts;
    let candidates = counts(&refs, Access::Lea)
        .into_iter()
        .filter(|&(lock, n)| n >= 2 && counted(lock, first) && counted(lock, second))
        .filter_map(|(lock, _)| lock.checked_sub(layout.sched_gfree))
        .collect();
    let base = one(
        candidates,
        name,
        "address of sched.gFree.lock (taken twice) whose counts are decremented at this \
         release's offsets",
    )?;
    not_code(binary, base, name)
}

/// The first pair of 64-bit loads of `code` whose targets are 8 bytes
/// apart, in either order: a slice's array and length.
fn slice_loads(refs: &[Reference]) -> Vec<u64> {
    let loads: Vec<u64> = refs
        .iter()
        .filter(|r| r.access == Access::Load && r.wide)
        .map(|r| r.target)
        .collect();
    loads
        .iter()
        .copied()
        .filter(|&t| loads.contains(&t.wrapping_add(8)))
        .collect()
}

/// `runtime.allp` (ELF address of the slice header).
pub fn find_allp(binary: &GoBinary) -> Result<u64, String> {
    let name = "runtime.gcMarkTinyAllocs";
    let (code, entry) = function_code(binary, name)?;
    let refs = references(code, entry);
    let allp = one(
        slice_loads(&refs),
        name,
        "pair of loads 8 bytes apart (allp)",
    )?;
    not_code(binary, allp, name)
}

/// `runtime.allgs` (ELF address of the slice header), as
/// [`super::goroutines`] finds it.
pub fn find_allgs(binary: &GoBinary) -> Result<u64, String> {
    let name = "runtime.forEachG";
    let (code, entry) = function_code(binary, name)?;
    let allgs = x86::slice_header_load(code, entry)
        .ok_or_else(|| format!("the code of {name} has no pair of loads 8 bytes apart"))?;
    not_code(binary, allgs, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Instructions of Go 1.19's and 1.27's runtime (from `go tool
    /// objdump`), each at a known address, and what it refers to.
    #[test]
    fn decodes_the_forms_the_rules_use() {
        let cases: &[(&[u8], u64, Access, u64, bool)] = &[
            // INCL runtime.memstats+7704(SB) at 0x41c405 (1.19).
            (
                &[0xff, 0x05, 0xed, 0x10, 0x53, 0x00],
                0x41c405,
                Access::Inc,
                0x94b6e0 + 7704,
                false,
            ),
            // LEAQ runtime.memstats+3608(SB), DI at 0x41c2fc.
            (
                &[0x48, 0x8d, 0x3d, 0xf5, 0x01, 0x53, 0x00],
                0x41c2fc,
                Access::Lea,
                0x94b6e0 + 3608,
                true,
            ),
            // MOVZX runtime.memstats+7704(SB), CX at 0x41c2ee.
            (
                &[0x0f, 0xb6, 0x0d, 0x03, 0x12, 0x53, 0x00],
                0x41c2ee,
                Access::Load,
                0x94b6e0 + 7704,
                false,
            ),
            // DECL runtime.sched+176(SB) at 0x44418e (1.19: 0x919220+176).
            (
                &[0xff, 0x0d, 0x3c, 0x51, 0x4d, 0x00],
                0x44418e,
                Access::Dec,
                0x919220 + 176,
                false,
            ),
            // CMPQ $0x0, runtime.sched+160(SB) at 0x444085 (an imm8).
            (
                &[0x48, 0x83, 0x3d, 0x33, 0x52, 0x4d, 0x00, 0x00],
                0x444085,
                Access::Other,
                0x919220 + 160,
                true,
            ),
            // MOVB $0x1, runtime.memstats+7736(SB) at 0x41ac25.
            (
                &[0xc6, 0x05, 0xec, 0x28, 0x53, 0x00, 0x01],
                0x41ac25,
                Access::Other,
                0x94b6e0 + 7736,
                false,
            ),
        ];
        for &(code, at, access, target, wide) in cases {
            let refs = references(code, at);
            let found = refs
                .iter()
                .find(|r| r.access == access && r.target == target)
                .unwrap_or_else(|| panic!("{code:x?}: {refs:x?}"));
            assert_eq!(found.wide, wide, "{code:x?}");
        }
    }

    #[test]
    fn stores_to_alllink() {
        // MOVQ CX, 0x160(BX) (1.27) and MOVQ CX, 0x150(BX) (1.19).
        assert!(stores_at_displacement(
            &[0x48, 0x89, 0x8b, 0x60, 0x01, 0x00, 0x00, 0x90],
            0x160
        ));
        assert!(!stores_at_displacement(
            &[0x48, 0x89, 0x8b, 0x50, 0x01, 0x00, 0x00, 0x90],
            0x160
        ));
        // With a SIB byte: MOVQ CX, 0x160(SP).
        assert!(stores_at_displacement(
            &[0x48, 0x89, 0x8c, 0x24, 0x60, 0x01, 0x00, 0x00],
            0x160
        ));
        assert!(!stores_at_displacement(&[], 0x160));
        assert!(!stores_at_displacement(&[0x48, 0x89], u64::MAX));
    }

    #[test]
    fn slices_in_either_order() {
        let refs = |targets: &[u64]| -> Vec<Reference> {
            targets
                .iter()
                .enumerate()
                .map(|(i, &target)| Reference {
                    at: i as u64 * 7,
                    access: Access::Load,
                    target,
                    wide: true,
                    register: 0,
                })
                .collect()
        };
        assert_eq!(slice_loads(&refs(&[0x1008, 0x1000])), vec![0x1000]);
        assert_eq!(slice_loads(&refs(&[0x1000, 0x1008])), vec![0x1000]);
        assert!(slice_loads(&refs(&[0x1000, 0x1010])).is_empty());
        assert_eq!(one(vec![3, 3], "f", "x").expect("one, deduplicated"), 3);
        assert!(one(vec![1, 2], "f", "x").is_err());
        assert!(one(vec![], "f", "x").is_err());
    }

    /// Garbage and short code: any answer, no panic, bounded.
    #[test]
    fn garbage_never_panics() {
        assert!(references(&[], 0).is_empty());
        assert!(references(&[0xff], 0).is_empty());
        assert!(references(&[0x0f], 0).is_empty());
        assert!(references(&[0x83, 0x3d, 0, 0, 0, 0], 0).is_empty()); // no imm8
        let wrap = references(&[0x8b, 0x05, 0xff, 0xff, 0xff, 0x7f], u64::MAX - 2);
        assert_eq!(wrap.len(), 1);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..3 * MAX_SCAN)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let refs = references(&noise, 0x40_0000);
        assert!(refs.iter().all(|r| r.at < 0x40_0000 + MAX_SCAN as u64));
        let _ = stores_at_displacement(&noise, 336);
        let _ = slice_loads(&refs);
    }
}
