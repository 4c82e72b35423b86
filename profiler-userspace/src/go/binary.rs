//! One Go binary as the profiler keeps it: its symbol table (`.gopclntab`),
//! its build info, where it loads, and its code (to read call instructions
//! when completing stacks). Loaded once per file and shared.

use std::{ops::Range, sync::OnceLock};

use object::{Object as _, ObjectSection as _, ObjectSegment as _};

use super::{
    buildinfo::{self, BuildInfo},
    pclntab::{GoError, Pclntab},
};
use crate::mapped::Bytes;

pub struct GoBinary {
    pub table: Pclntab,
    pub build: Option<BuildInfo>,
    /// The lowest loadable address of the ELF file (page-aligned): with
    /// the address its first page is mapped at, it gives the load bias.
    pub first_load: u64,
    /// The loadable segments: ELF addresses, and the file offset of each
    /// one's first byte.
    segments: Vec<(Range<u64>, u64)>,
    /// The `.text` section: its addresses and bytes.
    text: Range<u64>,
    code: Bytes,
    /// The runtime's variables found in the code (see `go::data`).
    pub(super) variables: OnceLock<Vec<RuntimeVariable>>,
}

impl GoBinary {
    /// Reads the Go binary at `path`; `Ok(None)` when it is not Go.
    pub fn read(path: &str) -> Result<Option<GoBinary>, GoError> {
        let data = Bytes::map(path).map_err(|err| GoError::Malformed {
            what: "binary",
            why: format!("cannot read {path}: {err}"),
        })?;
        let file = object::File::parse(&*data).map_err(|err| GoError::Malformed {
            what: "binary",
            why: format!("{path} is not an ELF file: {err}"),
        })?;
        if !buildinfo::is_go(&file) {
            return Ok(None);
        }
        let Some(table) = Pclntab::parse_mapped(&file, &data)? else {
            return Ok(None);
        };
        let build = buildinfo::read(&file).ok().flatten();
        let first_load = file.segments().map(|s| s.address()).min().unwrap_or(0) & !0xfff;
        let segments = file
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (s.address()..s.address() + size, offset)
            })
            .collect();
        let (text, code) = match file.section_by_name(".text") {
            Some(section) => (
                section.address()..section.address() + section.size(),
                section
                    .data()
                    .map(|code| data.within_or_copy(code))
                    .unwrap_or_default(),
            ),
            None => (0..0, Bytes::default()),
        };
        Ok(Some(GoBinary {
            table,
            build,
            first_load,
            segments,
            text,
            code,
            variables: OnceLock::new(),
        }))
    }

    /// The offset in the file of the byte at ELF address `address` (what a
    /// uprobe is attached by), if a segment holds it in the file.
    pub fn file_offset(&self, address: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(range, _)| range.contains(&address))
            .map(|(range, offset)| offset + (address - range.start))
    }

    /// The code bytes at `range` (ELF virtual addresses), if they are in
    /// `.text`.
    pub fn code(&self, range: Range<u64>) -> Option<&[u8]> {
        if range.start < self.text.start || range.end > self.text.end {
            return None;
        }
        let start = usize::try_from(range.start - self.text.start).ok()?;
        let end = usize::try_from(range.end - self.text.start).ok()?;
        self.code.get(start..end)
    }
}

/// A runtime variable found in the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVariable {
    pub name: &'static str,
    /// Its ELF virtual address.
    pub address: u64,
    /// How many bytes are named after it: its size where known (`g0`), else
    /// a lower bound (`m0`: every release's `m` is at least 0x3f0 bytes).
    pub size: u64,
}

/// Why the Go binary of a process could not be had.
#[derive(Debug)]
pub enum ProcessBinaryError {
    /// The process could not be read (it exited, or no permission).
    Process(std::io::Error),
    /// Its executable is not a Go program this reader knows, or unreadable;
    /// the sentence says which.
    Unsupported(String),
}

/// A process's Go binary and its load bias (process address minus ELF
/// address), read from `/proc/PID/exe` and the process's mappings.
pub fn process_binary(pid: u32) -> Result<(std::rc::Rc<GoBinary>, u64), ProcessBinaryError> {
    let exe =
        std::fs::read_link(format!("/proc/{pid}/exe")).map_err(ProcessBinaryError::Process)?;
    let binary = match GoBinary::read(&format!("/proc/{pid}/exe")) {
        Ok(Some(binary)) => binary,
        Ok(None) => {
            return Err(ProcessBinaryError::Unsupported(format!(
                "{} is not a Go program",
                exe.display()
            )));
        }
        Err(err) => return Err(ProcessBinaryError::Unsupported(err.to_string())),
    };
    let exe = exe.to_string_lossy().into_owned();
    let start = crate::procfs::read_mappings(pid)
        .into_iter()
        .find(|m| m.offset == 0 && m.path.as_deref() == Some(exe.as_str()))
        .map(|m| m.start)
        .ok_or_else(|| {
            ProcessBinaryError::Process(std::io::Error::other(format!(
                "{exe} is not mapped in the process"
            )))
        })?;
    let bias = start.wrapping_sub(binary.first_load);
    Ok((std::rc::Rc::new(binary), bias))
}
