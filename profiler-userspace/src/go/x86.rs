//! The few x86-64 instruction forms needed to find the Go runtime's
//! variables from its code in a stripped binary: RIP-relative `MOV r64,
//! [rip+disp32]` (`runtime.forEachG` loads `allgs.array` and `allgs.len`
//! so) and `LEA r64, [rip+disp32]`, and `CMP AL, imm8`
//! (`runtime.waitReason.String` compares the reason with the length of
//! `runtime.waitReasonStrings`, then takes the table's address with a LEA).
//!
//! Decoded by hand: three fixed encodings do not need an x86 decoder crate,
//! which would be far more code than the question. The code is not decoded
//! instruction by instruction (that needs the length of every x86
//! instruction): every byte offset is tried, so a match can in principle
//! start inside another instruction. Callers therefore use the matches only
//! as candidates and check what they point at (the `allgs` pair 8 bytes
//! apart with a sane slice header in memory; a table of strings that read
//! as wait reasons). Every scan is bounded by [`MAX_SCAN`].

/// At most this many bytes of a function are scanned.
pub const MAX_SCAN: usize = 4096;

/// A RIP-relative instruction found in code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RipRelative {
    /// Address of the instruction.
    pub at: u64,
    /// Address it refers to (the next instruction's address plus disp32).
    pub target: u64,
    /// The destination register (0..=15: RAX, RCX, RDX, RBX, RSP, RBP,
    /// RSI, RDI, R8..R15).
    pub register: u8,
}

/// Length of `REX.W opcode modrm disp32`.
const RIP_FORM_LEN: usize = 7;

/// Finds every `REX.W <opcode> modrm disp32` with a RIP-relative ModRM
/// (mod = 00, r/m = 101) in `code`, which starts at address `address`.
fn rip_relative(code: &[u8], address: u64, opcode: u8) -> Vec<RipRelative> {
    let code = &code[..code.len().min(MAX_SCAN)];
    let mut found = Vec::new();
    for (i, window) in code.windows(RIP_FORM_LEN).enumerate() {
        let &[rex, op, modrm, d0, d1, d2, d3] = window else {
            continue;
        };
        // REX prefix (0100WRXB) with W set; REX.B is ignored for RIP
        // addressing.
        if rex & 0xf8 != 0x48 || op != opcode || modrm & 0xc7 != 0x05 {
            continue;
        }
        let displacement = i32::from_le_bytes([d0, d1, d2, d3]);
        let at = address.wrapping_add(i as u64);
        let next = at.wrapping_add(RIP_FORM_LEN as u64);
        found.push(RipRelative {
            at,
            target: next.wrapping_add_signed(i64::from(displacement)),
            register: ((modrm >> 3) & 7) | ((rex & 0x4) << 1),
        });
    }
    found
}

/// Every `MOV r64, [rip+disp32]` (`REX.W 8B /r`) in `code` at `address`.
pub fn rip_loads(code: &[u8], address: u64) -> Vec<RipRelative> {
    rip_relative(code, address, 0x8b)
}

/// Every `LEA r64, [rip+disp32]` (`REX.W 8D /r`) in `code` at `address`.
pub fn rip_leas(code: &[u8], address: u64) -> Vec<RipRelative> {
    rip_relative(code, address, 0x8d)
}

/// The immediate of the first `CMP AL, imm8` (`3C ib`) in `code`.
pub fn first_cmp_al(code: &[u8]) -> Option<u8> {
    let code = &code[..code.len().min(MAX_SCAN)];
    code.windows(2)
        .find(|w| w.first() == Some(&0x3c))
        .and_then(|w| w.get(1).copied())
}

/// Length of `CALL rel32` (`E8 cd`).
pub const CALL_LEN: u64 = 5;

/// The target of the `CALL rel32` that is `code` (its 5 bytes), ending at
/// `return_address`; `None` if `code` is not one.
pub fn call_target(code: &[u8], return_address: u64) -> Option<u64> {
    let &[0xe8, d0, d1, d2, d3] = code else {
        return None;
    };
    return_address.checked_add_signed(i64::from(i32::from_le_bytes([d0, d1, d2, d3])))
}

/// The targets of the first pair of RIP-relative loads of `code` whose
/// targets are 8 bytes apart (a slice's array and length, as
/// `runtime.forEachG` loads `allgs`): the lower target, in code order of
/// the first load.
pub fn slice_header_load(code: &[u8], address: u64) -> Option<u64> {
    let loads = rip_loads(code, address);
    loads.iter().find_map(|first| {
        loads
            .iter()
            .any(|second| {
                second.at > first.at && Some(second.target) == first.target.checked_add(8)
            })
            .then_some(first.target)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `runtime.forEachG` of Go 1.27 (from `go tool objdump`), up to its
    /// loop: `LEAQ runtime.allglock(SB), AX`, `CALL runtime.lock2`,
    /// `MOVQ runtime.allgs(SB), CX`, `MOVQ CX, 0x18(SP)`,
    /// `MOVQ runtime.allgs+8(SB), DX`.
    const FOR_EACH_G_127: &[u8] = &[
        0x49, 0x3b, 0x66, 0x10, // CMPQ SP, 0x10(R14)
        0x76, 0x7b, // JBE
        0x55, // PUSHQ BP
        0x48, 0x89, 0xe5, // MOVQ SP, BP
        0x48, 0x83, 0xec, 0x20, // SUBQ $0x20, SP
        0x48, 0x89, 0x44, 0x24, 0x30, // MOVQ AX, 0x30(SP)
        0x90, 0x90, // NOPL NOPL
        0x48, 0x8d, 0x05, 0x84, 0x79, 0x45, 0x00, // LEAQ allglock(SB), AX
        0x0f, 0x1f, 0x40, 0x00, // NOPL 0(AX)
        0xe8, 0xbb, 0xba, 0xfc, 0xff, // CALL runtime.lock2
        0x48, 0x8b, 0x0d, 0xb4, 0x5a, 0x43, 0x00, // MOVQ allgs(SB), CX
        0x48, 0x89, 0x4c, 0x24, 0x18, // MOVQ CX, 0x18(SP)
        0x48, 0x8b, 0x15, 0xb0, 0x5a, 0x43, 0x00, // MOVQ allgs+8(SB), DX
    ];

    #[test]
    fn finds_allgs_in_for_each_g() {
        // The function is at 0x453540; `nm` puts runtime.allgs at 0x889020.
        assert_eq!(slice_header_load(FOR_EACH_G_127, 0x453540), Some(0x889020));
        let loads = rip_loads(FOR_EACH_G_127, 0x453540);
        assert_eq!(loads.len(), 2);
        assert_eq!(loads[0].register, 1); // RCX
        assert_eq!(loads[1].register, 2); // RDX
        assert_eq!(loads[1].target, 0x889028);
        let leas = rip_leas(FOR_EACH_G_127, 0x453540);
        assert_eq!(leas.len(), 1);
        assert_eq!(leas[0].at, 0x453555);
    }

    /// `runtime.waitReason.String` of Go 1.19 at 0x449f80: the length 0x1b
    /// and `LEAQ runtime.waitReasonStrings(SB), DX` at 0x449f98 (nm:
    /// 0x77a120).
    #[test]
    fn finds_the_wait_reason_table() {
        let code: &[u8] = &[
            0x3c, 0x1b, // CMPL $0x1b, AL
            0x72, 0x0d, // JB
            0x48, 0x8d, 0x05, 0x85, 0x59, 0x1b, 0x00, // LEAQ "unknown wait reason"
            0xbb, 0x13, 0x00, 0x00, 0x00, // MOVL $0x13, BX
            0xc3, // RET
            0x0f, 0xb6, 0xc8, // MOVZX AL, CX
            0x48, 0xc1, 0xe1, 0x04, // SHLQ $0x4, CX
            0x48, 0x8d, 0x15, 0x81, 0x01, 0x33, 0x00, // LEAQ waitReasonStrings(SB), DX
            0x48, 0x8b, 0x04, 0x0a, // MOVQ 0(DX)(CX*1), AX
            0x48, 0x8b, 0x5c, 0x0a, 0x08, // MOVQ 0x8(DX)(CX*1), BX
            0xc3, // RET
        ];
        assert_eq!(first_cmp_al(code), Some(0x1b));
        let leas = rip_leas(code, 0x449f80);
        let targets: Vec<u64> = leas.iter().map(|l| l.target).collect();
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[1], 0x77a120);
        assert_eq!(leas[1].register, 2); // RDX
        // No loads 8 bytes apart here.
        assert_eq!(slice_header_load(code, 0x449f80), None);
    }

    #[test]
    fn extended_registers_and_negative_displacements() {
        // MOVQ -0x10(IP), R9 at 0x1000: 4c 8b 0d f0 ff ff ff.
        let loads = rip_loads(&[0x4c, 0x8b, 0x0d, 0xf0, 0xff, 0xff, 0xff], 0x1000);
        assert_eq!(
            loads,
            vec![RipRelative {
                at: 0x1000,
                target: 0x1007 - 0x10,
                register: 9
            }]
        );
        // Not RIP-relative (mod = 01), no REX.W, wrong opcode.
        assert!(rip_loads(&[0x48, 0x8b, 0x45, 0x10, 0, 0, 0], 0).is_empty());
        assert!(rip_loads(&[0x40, 0x8b, 0x05, 0, 0, 0, 0], 0).is_empty());
        assert!(rip_leas(&[0x48, 0x8b, 0x05, 0, 0, 0, 0], 0).is_empty());
    }

    #[test]
    fn direct_calls() {
        // CALL runtime.lock2 at 0x453560 in Go 1.27's forEachG.
        assert_eq!(
            call_target(&[0xe8, 0xbb, 0xba, 0xfc, 0xff], 0x453565),
            Some(0x453565 - 0x34545)
        );
        assert_eq!(call_target(&[0xe9, 0, 0, 0, 0], 0x1000), None);
        assert_eq!(call_target(&[0xe8, 0, 0], 0x1000), None);
        assert_eq!(call_target(&[0xe8, 0xff, 0xff, 0xff, 0xff], 0), None);
    }

    #[test]
    fn garbage_and_short_code_never_panic() {
        assert!(rip_loads(&[], 0).is_empty());
        assert!(rip_loads(&[0x48, 0x8b, 0x05], u64::MAX).is_empty());
        assert_eq!(first_cmp_al(&[0x3c]), None);
        assert_eq!(slice_header_load(&[0x48], 0), None);
        // Addresses wrap rather than overflow.
        let wrap = rip_loads(&[0x48, 0x8b, 0x05, 0xff, 0xff, 0xff, 0x7f], u64::MAX - 2);
        assert_eq!(wrap.len(), 1);
        // Pseudo-random bytes: any answer, no panic; the scan is bounded.
        let mut state = 0x1234_5678_9abc_def0u64;
        let noise: Vec<u8> = (0..3 * MAX_SCAN)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let _ = slice_header_load(&noise, 0x40_0000);
        let _ = first_cmp_al(&noise);
        assert!(rip_leas(&noise, 0).iter().all(|l| l.at < MAX_SCAN as u64));
    }
}
