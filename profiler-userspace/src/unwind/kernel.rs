//! The tables the in-kernel DWARF walker reads (`--unwind dwarf`): each
//! executable file a recorded process maps gets its `.eh_frame` rows
//! (built by `tables`) written once into `UNWIND_ROWS`, shared by every
//! process that maps it; each process's executable mappings, sorted, go
//! into slots of `UNWIND_MAPPINGS` with where their rows are, and
//! `PROC_TABLES` says where. Rewritten whenever a process's mappings change
//! (a library loaded, an exec). Nothing of a binary is kept here but where
//! its rows are: the file is mapped while its table is built, then let go.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use aya::maps::{Array, HashMap as BpfHashMap, IterableMap as _, MapData};
use object::{Object as _, ObjectSegment as _};
use profiler_common::unwind::{
    MappingKind, ProcessTables, UNWIND_MAPPING_ENTRIES, UNWIND_MAPPING_SLOT,
    UNWIND_PROCESS_MAPPINGS, UNWIND_ROW_ENTRIES, UnwindMapping, UnwindRow,
};
use tracing::{debug, warn};

use super::tables::{UnwindTable, build_table};
use crate::{mapped::Bytes, procfs::Mapping};

/// What the walker knows of one binary.
#[derive(Debug, Clone)]
struct FileTable {
    kind: MappingKind,
    rows_start: u32,
    rows_len: u32,
    /// The table's base: row pcs are ELF addresses minus this.
    base: u64,
    /// `(file offset, ELF address, file size)` of each executable
    /// segment, to place a mapping's addresses in the file.
    segments: Vec<(u64, u64, u64)>,
}

/// What the tables hold, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Binaries with a table, and those walked by frame pointers (Go, or
    /// no `.eh_frame`).
    pub binaries: usize,
    pub frame_pointer_binaries: usize,
    /// Rows loaded into the kernel, and their bytes there.
    pub rows: u32,
    /// Binaries that could not be read or parsed (walked by frame
    /// pointers), and those left out because the rows map was full.
    pub unreadable: usize,
    pub rows_full: usize,
    /// Executable mappings the walker knows now, of every process.
    pub mappings: usize,
    /// Processes with tables now, and those left without for want of room
    /// (walked by frame pointers).
    pub processes: usize,
    pub processes_full: u64,
}

/// One process's mappings as written: what they were, and which slots of
/// `UNWIND_MAPPINGS` hold them.
struct Written {
    key: Vec<(u64, u64, u64)>,
    first_slot: usize,
    slots: usize,
    count: usize,
}

/// The walker's tables in the kernel, kept current for every recorded
/// process.
pub struct KernelTables {
    rows: Array<MapData, UnwindRow>,
    mappings: Array<MapData, UnwindMapping>,
    processes: BpfHashMap<MapData, u32, ProcessTables>,
    /// By (device, inode) of the mapped file.
    files: HashMap<(u64, u64), FileTable>,
    /// The vDSO's table (the same image in every process).
    vdso: Option<FileTable>,
    next_row: u32,
    /// Each process's mappings as written, by tgid.
    written: HashMap<u32, Written>,
    /// Which slots of `UNWIND_MAPPINGS` are taken.
    taken: Vec<bool>,
    stats: TableStats,
}

impl KernelTables {
    pub fn new(
        rows: Array<MapData, UnwindRow>,
        mappings: Array<MapData, UnwindMapping>,
        processes: BpfHashMap<MapData, u32, ProcessTables>,
    ) -> Self {
        KernelTables {
            rows,
            mappings,
            processes,
            files: HashMap::new(),
            vdso: None,
            next_row: 0,
            written: HashMap::new(),
            taken: vec![false; (UNWIND_MAPPING_ENTRIES / UNWIND_MAPPING_SLOT) as usize],
            stats: TableStats::default(),
        }
    }

    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    /// Drops a process's tables (it exited): its slots are free again.
    pub fn forget(&mut self, pid: u32) {
        if let Some(old) = self.written.remove(&pid) {
            let _ = self.processes.remove(&pid);
            self.free(&old);
        }
    }

    /// Forgets that `pid`'s mappings were written, so the next refresh
    /// writes them whatever they are (after the kernel dropped them at an
    /// exec).
    pub fn invalidate(&mut self, pid: u32) {
        if let Some(old) = self.written.get_mut(&pid) {
            old.key.clear();
        }
    }

    fn free(&mut self, old: &Written) {
        for slot in self.taken.iter_mut().skip(old.first_slot).take(old.slots) {
            *slot = false;
        }
        self.stats.mappings = self.stats.mappings.saturating_sub(old.count);
        self.stats.processes = self.written.len();
    }

    /// The first of `n` free consecutive slots, taken.
    fn allocate(&mut self, n: usize) -> Option<usize> {
        let mut run = 0;
        for i in 0..self.taken.len() {
            run = if self.taken[i] { 0 } else { run + 1 };
            if run == n {
                let first = i + 1 - n;
                for slot in &mut self.taken[first..=i] {
                    *slot = true;
                }
                return Some(first);
            }
        }
        None
    }

    /// Makes the kernel's mappings of `pid` those it has now (`mappings`,
    /// just read), loading the rows of binaries not seen yet.
    pub fn refresh(&mut self, pid: u32, mappings: &[Mapping]) -> anyhow::Result<()> {
        let executable: Vec<&Mapping> = mappings
            .iter()
            .filter(|m| m.executable && m.name != "[vsyscall]")
            .collect();
        let key: Vec<(u64, u64, u64)> = executable
            .iter()
            .map(|m| (m.start, m.end, m.offset))
            .collect();
        if key.is_empty() || self.written.get(&pid).is_some_and(|w| w.key == key) {
            return Ok(());
        }
        let mut entries = Vec::with_capacity(executable.len());
        for m in &executable {
            let Some(entry) = self.entry_for(pid, m) else {
                continue;
            };
            entries.push(entry);
        }
        entries.sort_by_key(|e| e.start);
        entries.truncate(UNWIND_PROCESS_MAPPINGS as usize);
        // New slots, written before the process is pointed at them; its
        // old ones are freed after (a walk under way reads either whole).
        let slot_len = UNWIND_MAPPING_SLOT as usize;
        let slots = entries.len().div_ceil(slot_len).max(1);
        let Some(first_slot) = self.allocate(slots) else {
            self.stats.processes_full += 1;
            debug!(pid, "no room for the unwind tables of this process");
            return Ok(());
        };
        let first = (first_slot * slot_len) as u32;
        if update_batch(self.mappings.map(), first, &entries).is_err() {
            for (i, entry) in entries.iter().enumerate() {
                self.mappings
                    .set(first + i as u32, entry, 0)
                    .context("cannot write the unwinder's mappings")?;
            }
        }
        let count = entries.len() as u32;
        self.processes
            .insert(pid, ProcessTables { first, count }, 0)
            .context("cannot write where the unwinder's mappings are")?;
        let written = Written {
            key,
            first_slot,
            slots,
            count: entries.len(),
        };
        if let Some(old) = self.written.insert(pid, written) {
            self.free(&old);
        }
        self.stats.mappings += entries.len();
        self.stats.processes = self.written.len();
        debug!(
            pid,
            mappings = count,
            rows = self.next_row,
            "unwind tables written"
        );
        Ok(())
    }

    /// The walker's entry for one executable mapping.
    fn entry_for(&mut self, pid: u32, m: &Mapping) -> Option<UnwindMapping> {
        let table = if m.name == "[vdso]" {
            self.vdso_table(pid, m)?
        } else if let Some(path) = m.path.as_deref() {
            // The process's own view of the file (a replaced or deleted
            // binary, a container's), else its path.
            let own = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
            let file = if own.exists() {
                own
            } else {
                PathBuf::from(path)
            };
            self.file_table(&file, path)?
        } else {
            // Executable memory with no file: JIT code.
            return Some(UnwindMapping {
                start: m.start,
                end: m.end,
                kind: MappingKind::Jit as u32,
                ..UnwindMapping::default()
            });
        };
        // The ELF address of the mapping's start, from the executable
        // segment it maps: the mapping starts at the page holding the
        // segment's first byte, and a segment's address and file offset
        // agree modulo the page size but need not be equal (lld lays text
        // a page above its offset).
        let vaddr = table
            .segments
            .iter()
            .find(|(offset, _, size)| {
                let starts_inside = m.offset <= *offset && *offset < m.offset + (m.end - m.start);
                // Or the mapping is a later part of the segment (split).
                let inside = *offset <= m.offset && m.offset < offset + size;
                *size > 0 && (starts_inside || inside)
            })
            .map(|(offset, vaddr, _)| m.offset.wrapping_add(vaddr.wrapping_sub(*offset)))
            .unwrap_or(m.offset);
        Some(UnwindMapping {
            start: m.start,
            end: m.end,
            pc_adjust: m.start.wrapping_sub(vaddr).wrapping_add(table.base),
            rows_start: table.rows_start,
            rows_len: table.rows_len,
            kind: table.kind as u32,
            reserved: 0,
        })
    }

    /// The table of a mapped file, built on first sight.
    fn file_table(&mut self, file: &Path, shown: &str) -> Option<FileTable> {
        let meta = std::fs::metadata(file).ok()?;
        let id = (meta.dev(), meta.ino());
        if let Some(table) = self.files.get(&id) {
            return Some(table.clone());
        }
        let table = match Bytes::map(file) {
            Ok(data) => self.load(&data, shown),
            Err(err) => self.unreadable(shown, &err),
        };
        self.files.insert(id, table.clone());
        Some(table)
    }

    /// The vDSO's table, read from the target's memory (it is in no file).
    fn vdso_table(&mut self, pid: u32, m: &Mapping) -> Option<FileTable> {
        if let Some(table) = &self.vdso {
            return Some(table.clone());
        }
        let image = crate::procfs::read_range(pid, m.start..m.end)?;
        let table = self.load(&image, "[vdso]");
        self.vdso = Some(table.clone());
        Some(table)
    }

    fn unreadable(&mut self, shown: &str, err: &dyn std::fmt::Display) -> FileTable {
        warn!(
            "{shown}: cannot read it for unwinding ({err}); its frames are walked by frame pointers"
        );
        self.stats.unreadable += 1;
        frame_pointers(Vec::new())
    }

    /// Builds a binary's table and writes its rows into the kernel.
    fn load(&mut self, data: &[u8], shown: &str) -> FileTable {
        let Ok(file) = object::File::parse(data) else {
            return self.unreadable(shown, &"not an ELF file");
        };
        // The executable segments: the mappings the walker looks up are
        // theirs.
        let segments: Vec<(u64, u64, u64)> = file
            .segments()
            .filter(|s| match s.flags() {
                object::SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_X != 0,
                _ => true,
            })
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, s.address(), size)
            })
            .collect();
        // Go code keeps frame pointers and has no .eh_frame for its own
        // functions: walked by frame pointers.
        if file.section_by_name(".gopclntab").is_some()
            || file.section_by_name(".go.buildinfo").is_some()
        {
            self.stats.frame_pointer_binaries += 1;
            return frame_pointers(segments);
        }
        let table = match build_table(data) {
            Ok(Some(table)) => table,
            Ok(None) => {
                self.stats.frame_pointer_binaries += 1;
                return frame_pointers(segments);
            }
            Err(err) => return self.unreadable(shown, &err),
        };
        match self.write_rows(&table) {
            Ok(Some(rows_start)) => {
                self.stats.binaries += 1;
                FileTable {
                    kind: MappingKind::Table,
                    rows_start,
                    rows_len: table.rows.len() as u32,
                    base: table.base,
                    segments,
                }
            }
            Ok(None) => {
                warn!(
                    "{shown}: the unwind tables are full ({UNWIND_ROW_ENTRIES} rows); its frames are walked by frame pointers"
                );
                self.stats.rows_full += 1;
                frame_pointers(segments)
            }
            Err(err) => self.unreadable(shown, &err),
        }
    }

    /// Appends a table's rows; `None` when they do not fit.
    fn write_rows(&mut self, table: &UnwindTable) -> anyhow::Result<Option<u32>> {
        let len = u32::try_from(table.rows.len()).unwrap_or(u32::MAX);
        let start = self.next_row;
        if start.saturating_add(len) > UNWIND_ROW_ENTRIES {
            return Ok(None);
        }
        if update_batch(self.rows.map(), start, &table.rows).is_err() {
            // A kernel without batch updates of arrays: one call per row.
            for (i, row) in table.rows.iter().enumerate() {
                self.rows
                    .set(start + i as u32, row, 0)
                    .context("cannot write unwind rows into the kernel")?;
            }
        }
        self.next_row = start + len;
        self.stats.rows = self.next_row;
        Ok(Some(start))
    }
}

/// Writes `values` at indices `first..` of the array map `map` with
/// `BPF_MAP_UPDATE_BATCH`, a few system calls in all. Written by hand: aya
/// has no batch operations, and one call per row costs tens of
/// milliseconds for a large binary — time the target runs unwalkable.
fn update_batch<V: aya::Pod>(map: &MapData, first: u32, values: &[V]) -> std::io::Result<()> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    /// The `batch` member of `union bpf_attr`.
    #[repr(C)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
    const CHUNK: usize = 1 << 16;
    let fd = map.fd().as_fd().as_raw_fd();
    for (n, chunk) in values.chunks(CHUNK).enumerate() {
        let base = first + (n * CHUNK) as u32;
        let keys: Vec<u32> = (0..chunk.len() as u32).map(|i| base + i).collect();
        let mut attr = BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys: keys.as_ptr() as u64,
            values: chunk.as_ptr() as u64,
            count: chunk.len() as u32,
            map_fd: fd as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: bpf(2) reads `count` keys and values from the buffers
        // above, which outlive the call; `attr` is a valid bpf_attr prefix.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn frame_pointers(segments: Vec<(u64, u64, u64)>) -> FileTable {
    FileTable {
        kind: MappingKind::FramePointers,
        rows_start: 0,
        rows_len: 0,
        base: 0,
        segments,
    }
}
