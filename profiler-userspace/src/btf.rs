//! The kernel structure offsets the programs read, from the kernel's own
//! type information (`/sys/kernel/btf/vmlinux`). Written by hand: aya-obj
//! parses BTF but keeps its types private, and one member's offset needs
//! only a walk over the type section.

use anyhow::{Context as _, bail};

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// The byte offset of `member` in `struct name`, a direct member that is
/// not a bit field.
pub fn member_offset(btf: &[u8], name: &str, member: &str) -> anyhow::Result<u32> {
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_le_bytes(btf.get(at..at + 2)?.try_into().ok()?))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(btf.get(at..at + 4)?.try_into().ok()?))
    };
    if u16_at(0) != Some(BTF_MAGIC) {
        bail!("not little-endian BTF (bad magic)");
    }
    let header = |i: usize| {
        u32_at(i)
            .map(|v| v as usize)
            .context("a truncated BTF header")
    };
    let hdr_len = header(4)?;
    let (type_off, type_len) = (header(8)?, header(12)?);
    let (str_off, str_len) = (header(16)?, header(20)?);
    let types = hdr_len + type_off;
    let strings = btf
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .context("the BTF string section is out of bounds")?;
    let string = |off: u32| -> &[u8] {
        let rest = strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())]
    };
    let mut at = types;
    while at + 12 <= types + type_len {
        let (Some(name_off), Some(info)) = (u32_at(at), u32_at(at + 4)) else {
            break;
        };
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let kind_flag = info >> 31 == 1;
        let body = at + 12;
        let extra = match kind {
            1 | 14 | 17 => 4,
            3 => 12,
            4 | 5 | 15 | 19 => 12 * vlen,
            6 | 13 => 8 * vlen,
            2 | 7..=12 | 16 | 18 => 0,
            other => bail!("unknown BTF kind {other}"),
        };
        if kind == KIND_STRUCT && string(name_off) == name.as_bytes() {
            for i in 0..vlen {
                let m = body + 12 * i;
                let (Some(m_name), Some(m_offset)) = (u32_at(m), u32_at(m + 8)) else {
                    break;
                };
                if string(m_name) == member.as_bytes() {
                    let bits = if kind_flag {
                        m_offset & 0xff_ffff
                    } else {
                        m_offset
                    };
                    if bits % 8 != 0 {
                        bail!("{name}.{member} is a bit field");
                    }
                    return Ok(bits / 8);
                }
            }
        }
        at = body + extra;
    }
    bail!("no member {member} in struct {name} in the kernel's BTF")
}

/// `member_offset` in the running kernel's BTF.
pub fn kernel_member_offset(name: &str, member: &str) -> anyhow::Result<u32> {
    let btf = std::fs::read("/sys/kernel/btf/vmlinux")
        .context("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux)")?;
    member_offset(&btf, name, member)
        .with_context(|| format!("cannot find {name}.{member} in the kernel's BTF"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_struct_pid_is_found_in_this_kernel() {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return;
        }
        let pid = kernel_member_offset("task_struct", "pid").expect("task_struct.pid");
        let tgid = kernel_member_offset("task_struct", "tgid").expect("task_struct.tgid");
        // pid_t pid; pid_t tgid; follow each other in every kernel.
        assert_eq!(tgid, pid + 4);
        assert!(pid > 0 && pid < 16384, "{pid}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(member_offset(&[0u8; 64], "task_struct", "pid").is_err());
        assert!(member_offset(&[], "task_struct", "pid").is_err());
    }
}
