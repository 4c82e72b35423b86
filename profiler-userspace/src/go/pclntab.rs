//! Go's own symbol table, `.gopclntab`, read by hand: no Rust crate reads
//! it, and blazesym (`.symtab`, `.dynsym`, DWARF) names nothing in a
//! stripped Go binary (`-ldflags="-s -w"`, the common production build),
//! which keeps only this table. It names every function, gives file:line
//! for every pc and, with the inline tree, the functions inlined there.
//!
//! Supported: Go 1.19 (magic 0xfffffff0) to 1.27 (0xfffffff1), 64-bit
//! little-endian (tested on amd64). Learned from Go's `runtime/symtab.go`,
//! `runtime/symtabinl.go` and `debug/gosym`:
//!
//! - the header (`pcHeader`) gives the offsets of the function name, CU,
//!   file and pc-value tables and of `ftab`, the sorted (entry, `_func`
//!   offset) pairs, `nfunc + 1` of them (the last one is the end of text);
//! - entries are offsets from the text base: `pcHeader.textStart` up to
//!   1.25, 0 from 1.26, where only `moduledata.text` has it. `moduledata`
//!   (`runtime.firstmoduledata`) is found by scanning the writable sections
//!   for a pointer to the table, checked against the offsets it repeats;
//! - `_func` gained `startLine` in 1.20 (40 → 44 bytes before its pcdata
//!   and funcdata offsets);
//! - funcdata are offsets from `moduledata.gofunc` (`go:func.*`), whose
//!   place in `moduledata` moved (1.19, 1.20–1.26, 1.27); the inline tree
//!   (`FUNCDATA_InlTree`) is an array of `inlinedCall`, 20 bytes up to 1.19
//!   and 16 from 1.20 (name offset moved, file/line dropped), indexed by the
//!   pc-value table `PCDATA_InlTreeIndex`; the caller's pc of an inlined
//!   call is the function's entry plus its `parentPc`. (1.27 keeps
//!   `go:func.*` inside `.gopclntab`; before, it is in `.rodata`.) Each
//!   `gofunc` place that may apply is tried, and kept when the inline trees
//!   read through it are sound; the 1.26 place comes from its sources (no
//!   1.26 toolchain was at hand to test);
//! - names are Go's: generic instances are `pkg.F[...]` up to 1.20 and
//!   full (`pkg.F[go.shape.int]`) after; assembly functions and their ABI
//!   wrappers share a name (`go tool nm` calls the first `NAME.abi0`).
//!
//! Everything read from the binary is untrusted: reads are bounds-checked,
//! loops are bounded by the data they walk, and bad data gives an error or
//! `None`.

use std::{ops::Range, sync::OnceLock};

use object::{Object as _, ObjectSection as _, SectionFlags};

pub use super::error::GoError;
use super::{buildinfo, error::elf_file};
use crate::mapped::Bytes;

/// Go 1.18 and 1.19.
const MAGIC_GO118: u32 = 0xffff_fff0;
/// Go 1.20 to 1.27.
const MAGIC_GO120: u32 = 0xffff_fff1;
/// `pcHeader`: magic, 4 bytes, then 8 pointer-sized words.
const HEADER_LEN: usize = 8 + 8 * 8;
/// `PCDATA_InlTreeIndex`: the pc-value table of inline tree indices.
const PCDATA_INL_TREE_INDEX: u32 = 2;
/// `FUNCDATA_InlTree`: the inline tree.
const FUNCDATA_INL_TREE: u32 = 3;
/// The deepest chain of inlined calls followed at one pc.
const MAX_INLINE_DEPTH: usize = 100;
/// `moduledata` words read (it has more; none of those are used).
const MODULEDATA_WORDS: usize = 48;
/// Functions whose inline trees are checked when choosing `gofunc`.
const GOFUNC_CHECK_FUNCTIONS: usize = 64;

fn malformed(why: impl Into<String>) -> GoError {
    GoError::Malformed {
        what: "symbol table (.gopclntab)",
        why: why.into(),
    }
}

/// A function of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunction {
    /// Its first instruction (ELF virtual address, before any load bias).
    pub entry: u64,
    /// Where the next function starts (its padding included).
    pub end: u64,
    /// Its name as Go spells it (`main.main`, `net/http.(*Server).Serve`,
    /// `main.Max[go.shape.int]`, `main.main.func1`).
    pub name: String,
}

/// One frame at a pc: the real function, or one inlined into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFrame {
    pub function: String,
    /// The source file of the position in this frame (the call site, for
    /// all but the innermost frame).
    pub file: Option<String>,
    pub line: Option<u32>,
    /// Whether this frame is a function inlined into its caller (every
    /// frame but the outermost, which is the real function, can be).
    pub inlined: bool,
}

impl GoFrame {
    /// The frame as profiles hold it, at process address `addr` of the
    /// binary `module`.
    pub fn into_frame(self, addr: u64, module: Option<std::rc::Rc<str>>) -> crate::model::Frame {
        use crate::model::{Frame, FrameKind};
        Frame {
            name: self.function.into(),
            kind: if self.inlined {
                FrameKind::Inlined
            } else {
                FrameKind::User
            },
            addr,
            module,
            file: self.file.map(Into::into),
            line: self.line,
        }
    }
}

/// Where the text base (what function entries are offsets from) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextBase {
    /// `pcHeader.textStart` (Go 1.19 to 1.25).
    Header,
    /// `moduledata.text` (needed from Go 1.26, where the header has 0).
    ModuleData,
    /// The `.text` section's address: the last resort, right only for
    /// internally linked binaries (the external linker puts C start-up code
    /// before Go's text).
    TextSection,
}

/// What was read from `runtime.firstmoduledata`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleData {
    /// Where it is (ELF virtual address).
    pub address: u64,
    /// `moduledata.text` and `etext`: the Go text range.
    pub text: u64,
    pub etext: u64,
    /// `moduledata.gofunc` (`go:func.*`), the base of funcdata offsets, if
    /// it was found.
    pub gofunc: Option<u64>,
}

/// The `_func` and `inlinedCall` layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Go 1.18 and 1.19 (magic 0xfffffff0).
    Go118,
    /// Go 1.20 to 1.27 (magic 0xfffffff1).
    Go120,
}

impl Layout {
    /// Bytes of `_func` before its pcdata offsets.
    fn func_len(self) -> usize {
        match self {
            Layout::Go118 => 40,
            Layout::Go120 => 44,
        }
    }

    /// Bytes of one `inlinedCall`.
    fn inlined_call_len(self) -> usize {
        match self {
            Layout::Go118 => 20,
            Layout::Go120 => 16,
        }
    }

    /// Offsets of `nameOff` (`func_` in 1.19) and `parentPc` in
    /// `inlinedCall`.
    fn inlined_call_fields(self) -> (usize, usize) {
        match self {
            Layout::Go118 => (12, 16),
            Layout::Go120 => (4, 8),
        }
    }
}

/// Where the funcdata bytes (from `gofunc` on) are.
#[derive(Debug)]
enum FuncDataBytes {
    /// Inside the table's own bytes (Go 1.27 puts `go:func.*` there), from
    /// this offset.
    InTable(usize),
    /// From `gofunc` to the end of its section, kept apart from the table.
    Own(Bytes),
}

/// One `_func`, decoded.
#[derive(Debug, Clone, Copy)]
struct Func {
    entry: u64,
    end: u64,
    /// Offset of the `_func` in the table's bytes.
    at: usize,
    name_off: u32,
    pcfile: u32,
    pcln: u32,
    npcdata: u32,
    cu_offset: u32,
    nfuncdata: u32,
}

/// A reader of a Go binary's `.gopclntab`. Owns a copy of what it needs,
/// so it outlives the ELF bytes. Lookups take a shared reference and do
/// not allocate beyond their answers; it is `Send` and `Sync`.
#[derive(Debug)]
pub struct Pclntab {
    /// The table, from its header (in the mapped file, or a copy).
    data: Bytes,
    /// Its virtual address.
    address: u64,
    magic: u32,
    layout: Layout,
    /// Instruction size quantum (1 on amd64).
    quantum: u32,
    text_start: u64,
    text_base: TextBase,
    funcnames: Range<usize>,
    cutab: Range<usize>,
    filetab: Range<usize>,
    pctab: Range<usize>,
    /// `pclntable`: `ftab` then the `_func`s.
    pcln: Range<usize>,
    /// `ftab`: (entry offset, `_func` offset), `nfunc + 1` entries.
    ftab: Vec<(u32, u32)>,
    moduledata: Option<ModuleData>,
    funcdata: Option<FuncDataBytes>,
    /// Function indices sorted by name, built at the first lookup by name.
    by_name: OnceLock<Vec<u32>>,
}

/// The header fields.
#[derive(Debug, Clone, Copy)]
struct Header {
    magic: u32,
    quantum: u8,
    nfunc: usize,
    text_start: u64,
    funcname: usize,
    cu: usize,
    filetab: usize,
    pctab: usize,
    pcln: usize,
}

impl Header {
    /// Reads and checks the header at the start of `data`.
    fn read(data: &[u8]) -> Result<Header, GoError> {
        let magic = u32_at(data, 0).ok_or_else(|| malformed("shorter than its header"))?;
        if magic != MAGIC_GO118 && magic != MAGIC_GO120 {
            return Err(GoError::UnsupportedMagic { magic });
        }
        let [pad1, pad2, quantum, ptr_size] = data
            .get(4..8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .ok_or_else(|| malformed("shorter than its header"))?;
        if pad1 != 0 || pad2 != 0 {
            return Err(malformed("nonzero header padding"));
        }
        if ptr_size != 8 || !matches!(quantum, 1 | 2 | 4) {
            return Err(GoError::Unsupported(format!(
                "pointer size {ptr_size}, instruction size {quantum}: only 64-bit Go binaries are read (amd64 is tested)"
            )));
        }
        if data.len() < HEADER_LEN {
            return Err(malformed("shorter than its header"));
        }
        let word = |i: usize| u64_at(data, 8 + 8 * i).unwrap_or(u64::MAX);
        let offset = |i: usize, what: &str| -> Result<usize, GoError> {
            usize::try_from(word(i))
                .ok()
                .filter(|&o| o >= HEADER_LEN && o <= data.len())
                .ok_or_else(|| malformed(format!("the {what} offset is outside the table")))
        };
        let nfunc = usize::try_from(word(0)).unwrap_or(usize::MAX);
        let header = Header {
            magic,
            quantum,
            nfunc,
            text_start: word(2),
            funcname: offset(3, "function name table")?,
            cu: offset(4, "compilation unit table")?,
            filetab: offset(5, "file table")?,
            pctab: offset(6, "pc-value table")?,
            pcln: offset(7, "function table")?,
        };
        // ftab has nfunc + 1 entries of 8 bytes.
        let room = (data.len() - header.pcln) / 8;
        if nfunc == 0 || nfunc >= room {
            return Err(malformed(format!(
                "{nfunc} functions do not fit in the function table"
            )));
        }
        Ok(header)
    }
}

impl Pclntab {
    /// Reads the table of a Go binary: `Ok(None)` when it has none (not a
    /// Go binary), an error when it is unsupported or malformed.
    ///
    /// The table is `.gopclntab` (`.data.rel.ro.gopclntab` in internally
    /// linked PIEs up to 1.25; inside `.data.rel.ro` with no section of its
    /// own in externally linked PIEs up to 1.25, where it is searched for).
    pub fn parse(file: &object::File<'_>) -> Result<Option<Pclntab>, GoError> {
        Pclntab::parse_keeping(file, &|bytes| Bytes::from(bytes.to_vec()))
    }

    /// [`Pclntab::parse`] of a file mapped as `whole`: the table's bytes
    /// stay in the mapping, not copied.
    pub fn parse_mapped(
        file: &object::File<'_>,
        whole: &Bytes,
    ) -> Result<Option<Pclntab>, GoError> {
        Pclntab::parse_keeping(file, &|bytes| whole.within_or_copy(bytes))
    }

    /// Parses, keeping the bytes it needs of the file with `keep`.
    fn parse_keeping(
        file: &object::File<'_>,
        keep: &dyn Fn(&[u8]) -> Bytes,
    ) -> Result<Option<Pclntab>, GoError> {
        let Some((address, bytes)) = locate(file)? else {
            return Ok(None);
        };
        let header = Header::read(bytes)?;
        let moduledata = find_moduledata(file, address, &header);
        let (text_start, text_base) = if header.text_start != 0 {
            (header.text_start, TextBase::Header)
        } else if let Some((md, _)) = moduledata.as_ref().filter(|(md, _)| md.text != 0) {
            (md.text, TextBase::ModuleData)
        } else if let Some(text) = file.section_by_name(".text") {
            (text.address(), TextBase::TextSection)
        } else {
            return Err(malformed(
                "no text base: the header has none, and neither moduledata nor .text was found",
            ));
        };
        let mut table = Pclntab::decode(keep(bytes), address, header, text_start, text_base)?;
        table.moduledata = moduledata.as_ref().map(|&(md, _)| md);
        if let Some((md, words)) = moduledata {
            let release = buildinfo::read(file)
                .ok()
                .flatten()
                .and_then(|b| b.go_release());
            if let Some((gofunc, funcdata)) = table.choose_gofunc(file, &words, release, keep) {
                table.funcdata = Some(funcdata);
                table.moduledata = Some(ModuleData {
                    gofunc: Some(gofunc),
                    ..md
                });
            }
        }
        Ok(Some(table))
    }

    /// [`Pclntab::parse`] of the ELF file `elf` (its bytes): an error too
    /// when they are not an ELF file.
    pub fn parse_elf(elf: &[u8]) -> Result<Option<Pclntab>, GoError> {
        Pclntab::parse(&elf_file(elf)?)
    }

    /// Decodes the table from its bytes, given where its text starts.
    fn decode(
        data: Bytes,
        address: u64,
        header: Header,
        text_start: u64,
        text_base: TextBase,
    ) -> Result<Pclntab, GoError> {
        let layout = if header.magic == MAGIC_GO118 {
            Layout::Go118
        } else {
            Layout::Go120
        };
        // Each table ends where the next one (by offset) starts.
        let starts = [
            header.funcname,
            header.cu,
            header.filetab,
            header.pctab,
            header.pcln,
        ];
        let range = |start: usize| {
            let end = starts
                .iter()
                .copied()
                .filter(|&s| s > start)
                .min()
                .unwrap_or(data.len());
            start..end
        };
        let pcln = range(header.pcln);
        let ftab_len = header.nfunc + 1;
        let mut ftab = Vec::with_capacity(ftab_len);
        let mut previous = 0u32;
        for i in 0..ftab_len {
            let at = pcln.start + 8 * i;
            let (Some(entry), Some(func)) = (u32_at(&data, at), u32_at(&data, at + 4)) else {
                return Err(malformed("the function table is cut short"));
            };
            if entry < previous {
                return Err(malformed(format!("function {i} is out of order")));
            }
            if i < header.nfunc {
                let end = usize::try_from(func)
                    .ok()
                    .and_then(|f| pcln.start.checked_add(f)?.checked_add(layout.func_len()));
                if end.is_none_or(|end| end > data.len()) {
                    return Err(malformed(format!("function {i} is outside the table")));
                }
            }
            previous = entry;
            ftab.push((entry, func));
        }
        Ok(Pclntab {
            funcnames: range(header.funcname),
            cutab: range(header.cu),
            filetab: range(header.filetab),
            pctab: range(header.pctab),
            pcln,
            data,
            address,
            magic: header.magic,
            layout,
            quantum: u32::from(header.quantum),
            text_start,
            text_base,
            ftab,
            moduledata: None,
            funcdata: None,
            by_name: OnceLock::new(),
        })
    }

    /// The frames at `pc` (an ELF virtual address), outermost (the real
    /// function) first, innermost (where `pc` is in the source) last. For a
    /// return address, ask for the call instruction (`pc - 1`).
    ///
    /// `None` when `pc` is in no function of the table or the function's
    /// name does not decode. Without `gofunc` (moduledata not found) the
    /// inlined frames are left out: the one frame has the innermost
    /// file:line.
    pub fn frames(&self, pc: u64) -> Option<Vec<GoFrame>> {
        let func = self.func_at(pc)?;
        let name = self.name(func.name_off)?;
        let tree = self
            .funcdata
            .as_ref()
            .and_then(|fd| self.inline_tree(&func, self.funcdata_bytes(fd)?));
        let mut frames = Vec::new();
        let mut at = pc;
        for _ in 0..MAX_INLINE_DEPTH {
            let call = tree.and_then(|tree| {
                let index = self.pcdata(&func, PCDATA_INL_TREE_INDEX, at)?;
                self.inlined_call(&func, tree, index)
            });
            let Some((callee, parent_pc)) = call else {
                break;
            };
            let (file, line) = self.file_line(&func, at);
            frames.push(GoFrame {
                function: callee.to_owned(),
                file,
                line,
                inlined: true,
            });
            at = parent_pc;
        }
        let (file, line) = self.file_line(&func, at);
        frames.push(GoFrame {
            function: name.to_owned(),
            file,
            line,
            inlined: false,
        });
        frames.reverse();
        Some(frames)
    }

    /// The function `pc` is in: entry, end (the next function's entry) and
    /// name.
    pub fn function(&self, pc: u64) -> Option<GoFunction> {
        self.go_function(self.func_at(pc)?)
    }

    /// The function named `name` (as Go spells it: `runtime.forEachG`,
    /// `net/http.(*Server).Serve`); the first by address if several share
    /// it (see [`Pclntab::functions_named`]). Up to Go 1.20 the table names
    /// every instance of a generic function `pkg.F[...]`: a full instance
    /// name (`main.F[go.shape.int]`) not found as is is looked up so. The
    /// first lookup sorts the names (tens of milliseconds for 60,000
    /// functions).
    pub fn function_by_name(&self, name: &str) -> Option<GoFunction> {
        let indices = self.indices_named(name.as_bytes());
        let indices = if indices.is_empty() {
            self.indices_named(elide_type_args(name)?.as_bytes())
        } else {
            indices
        };
        self.go_function(self.func(usize::try_from(*indices.first()?).ok()?)?)
    }

    /// Every function named exactly `name`, by address: assembly functions
    /// and their ABI wrappers share a name (`go tool nm` calls the first
    /// `NAME.abi0`), as do the instances of a generic function up to Go
    /// 1.20 (`pkg.F[...]`).
    pub fn functions_named(&self, name: &str) -> Vec<GoFunction> {
        self.indices_named(name.as_bytes())
            .iter()
            .filter_map(|&i| self.go_function(self.func(usize::try_from(i).ok()?)?))
            .collect()
    }

    /// The indices of the functions named `name`, by address.
    fn indices_named(&self, name: &[u8]) -> &[u32] {
        let sorted = self.by_name.get_or_init(|| {
            let mut named: Vec<(&[u8], u32)> = (0..self.function_count())
                .filter_map(|i| {
                    let index = u32::try_from(i).ok()?;
                    Some((self.name_of(index)?, index))
                })
                .collect();
            // Stable: equal names stay in address order.
            named.sort_by(|a, b| a.0.cmp(b.0));
            named.into_iter().map(|(_, i)| i).collect()
        });
        let first = sorted.partition_point(|&i| self.name_of(i).is_some_and(|n| n < name));
        let len = sorted
            .get(first..)
            .unwrap_or_default()
            .partition_point(|&i| self.name_of(i) == Some(name));
        sorted.get(first..first + len).unwrap_or_default()
    }

    /// Every function, by address (those whose name does not decode are
    /// left out).
    pub fn functions(&self) -> impl Iterator<Item = GoFunction> + '_ {
        (0..self.function_count()).filter_map(|i| self.go_function(self.func(i)?))
    }

    /// How many functions the table has.
    pub fn function_count(&self) -> usize {
        self.ftab.len().saturating_sub(1)
    }

    /// The Go text the table covers: from the text base to the end of the
    /// last function.
    pub fn text_range(&self) -> Range<u64> {
        let end = self.ftab.last().map_or(self.text_start, |&(e, _)| {
            self.text_start.saturating_add(u64::from(e))
        });
        self.text_start..end
    }

    /// Where the text base came from.
    pub fn text_base(&self) -> TextBase {
        self.text_base
    }

    /// What was read from `runtime.firstmoduledata`, if it was found.
    pub fn moduledata(&self) -> Option<ModuleData> {
        self.moduledata
    }

    /// The table's magic (0xfffffff0 for Go 1.18/1.19, 0xfffffff1 after).
    pub fn magic(&self) -> u32 {
        self.magic
    }

    /// The table's virtual address.
    pub fn address(&self) -> u64 {
        self.address
    }

    /// Whether inlined frames can be given (the funcdata base was found).
    pub fn has_inline_tree(&self) -> bool {
        self.funcdata.is_some()
    }

    // --- decoding -------------------------------------------------------

    /// Index of the function containing `pc`.
    fn func_at(&self, pc: u64) -> Option<Func> {
        let off = u32::try_from(pc.checked_sub(self.text_start)?).ok()?;
        let nfunc = self.function_count();
        // The last entry whose start is <= off.
        let i = self
            .ftab
            .partition_point(|&(e, _)| e <= off)
            .checked_sub(1)?;
        if i >= nfunc {
            return None; // at or past the end of text
        }
        self.func(i)
    }

    /// Function `i`, decoded.
    fn func(&self, i: usize) -> Option<Func> {
        let &(entry_off, func_off) = self.ftab.get(i)?;
        let &(end_off, _) = self.ftab.get(i + 1)?;
        let at = self
            .pcln
            .start
            .checked_add(usize::try_from(func_off).ok()?)?;
        let d = &self.data;
        let nfuncdata_at = at + self.layout.func_len() - 1;
        Some(Func {
            entry: self.text_start.checked_add(u64::from(entry_off))?,
            end: self.text_start.checked_add(u64::from(end_off))?,
            at,
            name_off: u32_at(d, at + 4)?,
            pcfile: u32_at(d, at + 20)?,
            pcln: u32_at(d, at + 24)?,
            npcdata: u32_at(d, at + 28)?,
            cu_offset: u32_at(d, at + 32)?,
            nfuncdata: u32::from(*d.get(nfuncdata_at)?),
        })
    }

    fn go_function(&self, func: Func) -> Option<GoFunction> {
        Some(GoFunction {
            entry: func.entry,
            end: func.end,
            name: self.name(func.name_off)?.to_owned(),
        })
    }

    /// The name of function `index`, as bytes (for the name index).
    fn name_of(&self, index: u32) -> Option<&[u8]> {
        let func = self.func(usize::try_from(index).ok()?)?;
        self.name_bytes(func.name_off)
    }

    fn name_bytes(&self, name_off: u32) -> Option<&[u8]> {
        let names = self.data.get(self.funcnames.clone())?;
        cstr_at(names, usize::try_from(name_off).ok()?)
    }

    /// A function name, `None` if it is not UTF-8 (Go names are).
    fn name(&self, name_off: u32) -> Option<&str> {
        std::str::from_utf8(self.name_bytes(name_off)?).ok()
    }

    /// The value of pc-value table `table` (an offset into pctab) at `pc`.
    fn pcvalue(&self, func: &Func, table: u32, pc: u64) -> Option<i32> {
        if table == 0 {
            return None; // no table
        }
        let start = self.pctab.start.checked_add(usize::try_from(table).ok()?)?;
        let bytes = self.data.get(start..self.pctab.end)?;
        pcvalue(bytes, func.entry, self.quantum, pc)
    }

    /// The value of pcdata table `index` at `pc`.
    fn pcdata(&self, func: &Func, index: u32, pc: u64) -> Option<i32> {
        if index >= func.npcdata {
            return None;
        }
        let at = func.at + self.layout.func_len() + 4 * usize::try_from(index).ok()?;
        self.pcvalue(func, u32_at(&self.data, at)?, pc)
    }

    /// The funcdata offset (from `gofunc`) of entry `index`.
    fn funcdata_offset(&self, func: &Func, index: u32) -> Option<usize> {
        if index >= func.nfuncdata {
            return None;
        }
        let at = func.at
            + self.layout.func_len()
            + 4 * usize::try_from(func.npcdata).ok()?
            + 4 * usize::try_from(index).ok()?;
        match u32_at(&self.data, at)? {
            u32::MAX => None,
            off => usize::try_from(off).ok(),
        }
    }

    /// The funcdata bytes, from `gofunc` on.
    fn funcdata_bytes<'a>(&'a self, funcdata: &'a FuncDataBytes) -> Option<&'a [u8]> {
        match funcdata {
            FuncDataBytes::InTable(start) => self.data.get(*start..),
            FuncDataBytes::Own(bytes) => Some(bytes),
        }
    }

    /// The function's inline tree in the funcdata bytes, from its start to
    /// their end (its length is not recorded).
    fn inline_tree<'a>(&self, func: &Func, funcdata: &'a [u8]) -> Option<&'a [u8]> {
        let off = self.funcdata_offset(func, FUNCDATA_INL_TREE)?;
        funcdata.get(off..)
    }

    /// Entry `index` of an inline tree: the inlined function's name and the
    /// pc of its call site in the caller.
    fn inlined_call<'a>(&'a self, func: &Func, tree: &[u8], index: i32) -> Option<(&'a str, u64)> {
        let index = usize::try_from(index).ok()?; // -1: not inlined here
        let at = index.checked_mul(self.layout.inlined_call_len())?;
        let (name_at, parent_at) = self.layout.inlined_call_fields();
        let name_off = u32_at(tree, at + name_at)?;
        let parent_pc = u32::try_from(i32_at(tree, at + parent_at)?).ok()?;
        let parent = func.entry.checked_add(u64::from(parent_pc))?;
        if parent >= func.end {
            return None;
        }
        Some((self.name(name_off)?, parent))
    }

    /// The source file and line at `pc` in `func` (of the innermost
    /// inlined function there).
    fn file_line(&self, func: &Func, pc: u64) -> (Option<String>, Option<u32>) {
        let line = self
            .pcvalue(func, func.pcln, pc)
            .and_then(|l| u32::try_from(l).ok());
        let file = self
            .pcvalue(func, func.pcfile, pc)
            .and_then(|fileno| self.file_name(func, fileno));
        (file, line)
    }

    /// File `fileno` of the function's compilation unit.
    fn file_name(&self, func: &Func, fileno: i32) -> Option<String> {
        let index = func.cu_offset.checked_add(u32::try_from(fileno).ok()?)?;
        let at = self
            .cutab
            .start
            .checked_add(usize::try_from(index).ok()?.checked_mul(4)?)?;
        if at + 4 > self.cutab.end {
            return None;
        }
        let off = u32_at(&self.data, at)?;
        if off == u32::MAX {
            return None;
        }
        let files = self.data.get(self.filetab.clone())?;
        let name = cstr_at(files, usize::try_from(off).ok()?)?;
        Some(String::from_utf8_lossy(name).into_owned())
    }

    /// Chooses `gofunc` from the moduledata words: the candidates of the
    /// layouts that may apply (the Go release, when known, picks the first
    /// to try), kept if both `rodata` and `gofunc` are addresses in the file
    /// and the inline trees read through it are sound.
    fn choose_gofunc(
        &self,
        file: &object::File<'_>,
        words: &[u64],
        release: Option<(u32, u32)>,
        keep: &dyn Fn(&[u8]) -> Bytes,
    ) -> Option<(u64, FuncDataBytes)> {
        // (index of rodata, index of gofunc) in moduledata, in words.
        const GO118: (usize, usize) = (37, 38); // 1.18, 1.19
        const GO120: (usize, usize) = (39, 40); // 1.20 to 1.26 (covctrs added)
        const GO127: (usize, usize) = (42, 43); // 1.27 (typedesclen, itab*)
        let candidates: &[(usize, usize)] = match (self.layout, release) {
            (Layout::Go118, _) => &[GO118],
            (Layout::Go120, Some((1, minor))) if minor >= 27 => &[GO127, GO120],
            (Layout::Go120, _) => &[GO120, GO127],
        };
        let mut fallback = None;
        for &(rodata_at, gofunc_at) in candidates {
            let (Some(&rodata), Some(&gofunc)) = (words.get(rodata_at), words.get(gofunc_at))
            else {
                continue;
            };
            if rodata > gofunc || section_data_at(file, rodata).is_none() {
                continue;
            }
            let Some(bytes) = self.funcdata_at(file, gofunc, keep) else {
                continue;
            };
            let Some(funcdata) = self.funcdata_bytes(&bytes) else {
                continue;
            };
            match self.inline_trees_sound(funcdata) {
                Some(true) => return Some((gofunc, bytes)),
                Some(false) => {}
                None => {
                    if fallback.is_none() {
                        fallback = Some((gofunc, bytes));
                    }
                }
            }
        }
        fallback
    }

    /// The funcdata bytes from `gofunc` to the end of its section: a place
    /// in the table when it is inside it, else kept with `keep`.
    fn funcdata_at(
        &self,
        file: &object::File<'_>,
        gofunc: u64,
        keep: &dyn Fn(&[u8]) -> Bytes,
    ) -> Option<FuncDataBytes> {
        let end = self.address.checked_add(self.data.len() as u64)?;
        if (self.address..end).contains(&gofunc) {
            return Some(FuncDataBytes::InTable(
                usize::try_from(gofunc - self.address).ok()?,
            ));
        }
        Some(FuncDataBytes::Own(keep(section_data_at(file, gofunc)?)))
    }

    /// Whether the inline trees of the first functions that have one read
    /// soundly with `funcdata` as the funcdata bytes: every entry their
    /// index tables use names a function (its name starts a string of the
    /// name table) and has its call site inside the function. `None` if no
    /// function has an inline tree (nothing to check).
    fn inline_trees_sound(&self, funcdata: &[u8]) -> Option<bool> {
        let names = self.data.get(self.funcnames.clone())?;
        let mut checked = 0;
        for i in 0..self.function_count() {
            if checked >= GOFUNC_CHECK_FUNCTIONS {
                break;
            }
            let Some(func) = self.func(i) else {
                continue;
            };
            let Some(tree) = self.inline_tree(&func, funcdata) else {
                if self.funcdata_offset(&func, FUNCDATA_INL_TREE).is_some() {
                    return Some(false); // points outside the funcdata
                }
                continue;
            };
            let Some(max) = self.max_pcdata(&func, PCDATA_INL_TREE_INDEX) else {
                continue;
            };
            checked += 1;
            let (name_at, parent_at) = self.layout.inlined_call_fields();
            for index in 0..=max.min(1000) {
                let at = index as usize * self.layout.inlined_call_len();
                let (Some(name_off), Some(parent_pc)) =
                    (u32_at(tree, at + name_at), u32_at(tree, at + parent_at))
                else {
                    return Some(false);
                };
                let name_off = name_off as usize;
                let starts_a_name = name_off < names.len()
                    && (name_off == 0 || names.get(name_off - 1) == Some(&0))
                    && names.get(name_off) != Some(&0);
                let inside = u64::from(parent_pc) < func.end - func.entry;
                if !starts_a_name || !inside {
                    return Some(false);
                }
            }
        }
        (checked > 0).then_some(true)
    }

    /// The largest value of pcdata table `index` over the whole function
    /// (`None` if it has no such table or no value is non-negative).
    fn max_pcdata(&self, func: &Func, index: u32) -> Option<u32> {
        if index >= func.npcdata {
            return None;
        }
        let at = func.at + self.layout.func_len() + 4 * index as usize;
        let table = u32_at(&self.data, at)?;
        if table == 0 {
            return None;
        }
        let start = self.pctab.start.checked_add(table as usize)?;
        let bytes = self.data.get(start..self.pctab.end)?;
        let mut max = None;
        let mut steps = PcValues::new(bytes, func.entry, self.quantum);
        while let Some((value, pc)) = steps.next_step() {
            if let Ok(v) = u32::try_from(value) {
                max = max.max(Some(v));
            }
            if pc >= func.end {
                break;
            }
        }
        max
    }
}

/// A generic function's name as Go 1.19 and 1.20 write it in the table:
/// everything from the first `[` to the last `]` becomes `[...]`. `None`
/// when that changes nothing.
pub fn elide_type_args(name: &str) -> Option<String> {
    let open = name.find('[')?;
    let close = name.rfind(']').filter(|&c| c > open)?;
    let elided = format!("{}[...]{}", name.get(..open)?, name.get(close + 1..)?);
    (elided != name).then_some(elided)
}

/// Walks a pc-value table: a value delta (zig-zag varint) and a pc delta
/// (varint, in instruction quanta) per step, starting at value -1 at the
/// function's entry; a zero value delta after the first step ends it.
struct PcValues<'a> {
    bytes: &'a [u8],
    entry: u64,
    quantum: u32,
    pc: u64,
    value: i32,
}

impl<'a> PcValues<'a> {
    fn new(bytes: &'a [u8], entry: u64, quantum: u32) -> Self {
        PcValues {
            bytes,
            entry,
            quantum,
            pc: entry,
            value: -1,
        }
    }

    /// The next step: the value that holds up to (not including) the pc
    /// returned. Each step consumes at least two bytes, so a walk ends
    /// within the table.
    fn next_step(&mut self) -> Option<(i32, u64)> {
        let first = self.pc == self.entry;
        let (uvdelta, n) = varint32(self.bytes)?;
        if uvdelta == 0 && !first {
            return None;
        }
        self.bytes = self.bytes.get(n..)?;
        let vdelta = ((uvdelta >> 1) as i32) ^ -((uvdelta & 1) as i32);
        self.value = self.value.wrapping_add(vdelta);
        let (pcdelta, n) = varint32(self.bytes)?;
        self.bytes = self.bytes.get(n..)?;
        self.pc = self
            .pc
            .checked_add(u64::from(pcdelta) * u64::from(self.quantum))?;
        Some((self.value, self.pc))
    }
}

/// The value of a pc-value table at `target` (`None` when the table ends
/// before it or does not decode).
fn pcvalue(bytes: &[u8], entry: u64, quantum: u32, target: u64) -> Option<i32> {
    let mut steps = PcValues::new(bytes, entry, quantum);
    while let Some((value, pc)) = steps.next_step() {
        if target < pc {
            return Some(value);
        }
    }
    None
}

/// A varint of at most 5 bytes (Go's `runtime.readvarint` for `uint32`):
/// the value and its length.
fn varint32(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut value = 0u32;
    for (i, &byte) in bytes.iter().take(5).enumerate() {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn i32_at(data: &[u8], at: usize) -> Option<i32> {
    u32_at(data, at).map(|v| v as i32)
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// The NUL-terminated string at `at`.
fn cstr_at(data: &[u8], at: usize) -> Option<&[u8]> {
    let rest = data.get(at..)?;
    let len = rest.iter().position(|&b| b == 0)?;
    rest.get(..len)
}

/// `sh_flags` of an ELF section (0 for others).
fn sh_flags(section: &object::Section<'_, '_>) -> u64 {
    match section.flags() {
        SectionFlags::Elf { sh_flags } => sh_flags,
        _ => 0,
    }
}

const SHF_WRITE: u64 = object::elf::SHF_WRITE as u64;
const SHF_ALLOC: u64 = object::elf::SHF_ALLOC as u64;

/// The bytes of the file-backed section holding virtual address `address`,
/// from that address to the section's end.
fn section_data_at<'data>(file: &object::File<'data>, address: u64) -> Option<&'data [u8]> {
    file.sections().find_map(|s| {
        let range = s.address()..s.address().saturating_add(s.size());
        if sh_flags(&s) & SHF_ALLOC == 0 || !range.contains(&address) {
            return None;
        }
        let data = s.data().ok()?;
        data.get(usize::try_from(address - s.address()).ok()?..)
            .filter(|d| !d.is_empty())
    })
}

/// The table's address and bytes (to the end of its section), if the
/// binary has one.
fn locate<'data>(file: &object::File<'data>) -> Result<Option<(u64, &'data [u8])>, GoError> {
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some(section) = file.section_by_name(name) {
            let data = section
                .data()
                .map_err(|err| malformed(format!("cannot read {name}: {err}")))?;
            return Ok(Some((section.address(), data)));
        }
    }
    if !buildinfo::is_go(file) {
        return Ok(None);
    }
    // Externally linked PIEs up to Go 1.25 merge it into .data.rel.ro: look
    // for an aligned header whose offsets hold together.
    for name in [".data.rel.ro", ".rodata"] {
        let Some(section) = file.section_by_name(name) else {
            continue;
        };
        let Ok(data) = section.data() else {
            continue;
        };
        let skip = usize::try_from((8 - section.address() % 8) % 8).unwrap_or(0);
        for at in (skip..data.len().saturating_sub(8)).step_by(8) {
            let Some(candidate) = data.get(at..) else {
                break;
            };
            let looks = matches!(u32_at(candidate, 0), Some(MAGIC_GO118 | MAGIC_GO120))
                && candidate.get(4..6) == Some(&[0, 0])
                && candidate.get(7) == Some(&8);
            if looks && Header::read(candidate).is_ok() {
                return Ok(Some((
                    section.address().saturating_add(at as u64),
                    candidate,
                )));
            }
        }
    }
    Ok(None)
}

/// Finds `runtime.firstmoduledata`: a word in a writable section pointing
/// to the table, followed by the table's own offsets (function names and
/// function table slices, `ftab` length). Returns what it has and its
/// first words.
fn find_moduledata(
    file: &object::File<'_>,
    address: u64,
    header: &Header,
) -> Option<(ModuleData, Vec<u64>)> {
    let expect = [
        (1, address.checked_add(header.funcname as u64)?),
        (13, address.checked_add(header.pcln as u64)?),
        (16, address.checked_add(header.pcln as u64)?),
        (17, header.nfunc as u64 + 1),
    ];
    // .go.module (Go 1.26+) holds nothing else; look there first.
    let mut sections: Vec<_> = file
        .sections()
        .filter(|s| sh_flags(s) & (SHF_WRITE | SHF_ALLOC) == SHF_WRITE | SHF_ALLOC)
        .collect();
    sections.sort_by_key(|s| s.name().ok() != Some(".go.module"));
    for section in sections {
        let Ok(data) = section.data() else {
            continue;
        };
        let skip = usize::try_from((8 - section.address() % 8) % 8).unwrap_or(0);
        for at in (skip..data.len().saturating_sub(7)).step_by(8) {
            if u64_at(data, at) != Some(address) {
                continue;
            }
            let words: Vec<u64> = (0..MODULEDATA_WORDS)
                .map_while(|i| u64_at(data, at + 8 * i))
                .collect();
            if words.len() < 24 || expect.iter().any(|&(i, v)| words.get(i) != Some(&v)) {
                continue;
            }
            let md = ModuleData {
                address: section.address().saturating_add(at as u64),
                text: words.get(22).copied().unwrap_or(0),
                etext: words.get(23).copied().unwrap_or(0),
                gofunc: None,
            };
            return Some((md, words));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends a varint.
    fn put_varint(out: &mut Vec<u8>, mut v: u32) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    /// A pc-value table from (value, pc delta) steps.
    fn table(steps: &[(i32, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut value = -1i32;
        for &(v, pcdelta) in steps {
            let delta = v.wrapping_sub(value);
            put_varint(&mut out, ((delta << 1) ^ (delta >> 31)) as u32);
            put_varint(&mut out, pcdelta);
            value = v;
        }
        out.push(0);
        out
    }

    #[test]
    fn generic_names_are_elided_as_go_1_19_writes_them() {
        assert_eq!(
            elide_type_args("main.Max[go.shape.int_0]").as_deref(),
            Some("main.Max[...]")
        );
        assert_eq!(
            elide_type_args("main.F[go.shape.int].func1").as_deref(),
            Some("main.F[...].func1")
        );
        assert_eq!(elide_type_args("main.F[...]"), None);
        assert_eq!(elide_type_args("main.main"), None);
        assert_eq!(elide_type_args("a]b[c"), None);
    }

    #[test]
    fn varints_decode_and_stop_at_five_bytes() {
        assert_eq!(varint32(&[0x7f]), Some((127, 1)));
        assert_eq!(varint32(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(
            varint32(&[0xff, 0xff, 0xff, 0xff, 0x0f]),
            Some((u32::MAX, 5))
        );
        assert_eq!(varint32(&[0x80, 0x80]), None);
        assert_eq!(varint32(&[0x80; 9]), None);
        assert_eq!(varint32(&[]), None);
    }

    #[test]
    fn pc_value_tables_decode() {
        // Value 10 on [0x1000, 0x1004), 12 on [0x1004, 0x1010), 5 after
        // up to 0x1100.
        let t = table(&[(10, 4), (12, 12), (5, 0xf0)]);
        assert_eq!(pcvalue(&t, 0x1000, 1, 0x1000), Some(10));
        assert_eq!(pcvalue(&t, 0x1000, 1, 0x1003), Some(10));
        assert_eq!(pcvalue(&t, 0x1000, 1, 0x1004), Some(12));
        assert_eq!(pcvalue(&t, 0x1000, 1, 0x100f), Some(12));
        assert_eq!(pcvalue(&t, 0x1000, 1, 0x10ff), Some(5));
        assert_eq!(pcvalue(&t, 0x1000, 1, 0x1100), None);
        // A quantum of 4 scales the pc deltas.
        assert_eq!(pcvalue(&t, 0x1000, 4, 0x100c), Some(10));
        assert_eq!(pcvalue(&t, 0x1000, 4, 0x1010), Some(12));
        // Negative deltas (zig-zag), and a first step with a zero delta.
        let t = table(&[(-1, 2), (3, 2), (-7, 2)]);
        assert_eq!(pcvalue(&t, 0, 1, 1), Some(-1));
        assert_eq!(pcvalue(&t, 0, 1, 3), Some(3));
        assert_eq!(pcvalue(&t, 0, 1, 5), Some(-7));
        // Cut anywhere: an answer or None, never a panic or a loop.
        for cut in 0..t.len() {
            let _ = pcvalue(&t[..cut], 0, 1, 5);
        }
        assert_eq!(pcvalue(&[], 0, 1, 0), None);
        assert_eq!(pcvalue(&[0x80], 0, 1, 0), None);
    }

    /// A hand-made Go 1.20+ table: `main.outer` (0x100 bytes at text+0)
    /// with `main.inner` inlined at [0x10, 0x20) called from line 7, and
    /// `main.leaf` (0x40 bytes); text starts at 0x401000. The inline tree
    /// is in the funcdata bytes returned with it.
    fn synthetic() -> (Vec<u8>, Vec<u8>) {
        let names = b"main.outer\0main.inner\0main.leaf\0".to_vec();
        let files = b"/src/a.go\0/src/b.go\0".to_vec();
        // cutab: CU 0 has files 0 (a.go) and 1 (b.go).
        let mut cutab = Vec::new();
        for off in [0u32, 10] {
            cutab.extend_from_slice(&off.to_le_bytes());
        }
        let mut pctab = vec![0u8]; // offset 0 means "no table"
        let mut add = |t: Vec<u8>| {
            let at = pctab.len() as u32;
            pctab.extend(t);
            at
        };
        // outer: file 0 except b.go (1) inside the inlined call.
        let outer_file = add(table(&[(0, 0x10), (1, 0x10), (0, 0xe0)]));
        let outer_line = add(table(&[(5, 0x10), (20, 0x10), (7, 0xe0)]));
        let outer_inl = add(table(&[(-1, 0x10), (0, 0x10), (-1, 0xe0)]));
        let leaf_file = add(table(&[(1, 0x40)]));
        let leaf_line = add(table(&[(30, 0x40)]));
        // The inline tree (funcdata at 0): main.inner, parentPc 0x30.
        let mut tree = Vec::new();
        tree.extend_from_slice(&[0, 0, 0, 0]);
        tree.extend_from_slice(&11u32.to_le_bytes()); // nameOff
        tree.extend_from_slice(&0x30u32.to_le_bytes()); // parentPc
        tree.extend_from_slice(&19u32.to_le_bytes()); // startLine
        // _func records.
        let func = |name: u32, file: u32, line: u32, pcdata: &[u32], funcdata: &[u32]| {
            let mut f = Vec::new();
            for v in [0u32, name, 0, 0, 0, file, line, pcdata.len() as u32, 0, 1] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            f.extend_from_slice(&[0, 0, 0, funcdata.len() as u8]);
            for v in pcdata.iter().chain(funcdata) {
                f.extend_from_slice(&v.to_le_bytes());
            }
            f
        };
        let outer = func(0, outer_file, outer_line, &[0, 0, outer_inl], &[0, 0, 0, 0]);
        let leaf = func(22, leaf_file, leaf_line, &[], &[]);
        let mut pcln = Vec::new();
        let funcs_at = 3 * 8;
        for (entry, func_off) in [
            (0u32, funcs_at),
            (0x100, funcs_at + outer.len() as u32),
            (0x140, 0),
        ] {
            pcln.extend_from_slice(&entry.to_le_bytes());
            pcln.extend_from_slice(&func_off.to_le_bytes());
        }
        pcln.extend(outer);
        pcln.extend(leaf);
        let mut data = Vec::new();
        data.extend_from_slice(&MAGIC_GO120.to_le_bytes());
        data.extend_from_slice(&[0, 0, 1, 8]);
        let mut at = HEADER_LEN as u64;
        let mut offsets = Vec::new();
        for part in [&names, &cutab, &files, &pctab, &pcln] {
            offsets.push(at);
            at += part.len() as u64;
        }
        for word in [2u64, 2, 0x401000].iter().chain(&offsets) {
            data.extend_from_slice(&word.to_le_bytes());
        }
        for part in [names, cutab, files, pctab, pcln] {
            data.extend(part);
        }
        (data, tree)
    }

    fn synthetic_table(data: Vec<u8>, tree: Vec<u8>) -> Result<Pclntab, GoError> {
        let header = Header::read(&data)?;
        let mut t = Pclntab::decode(data.into(), 0x4a0000, header, 0x401000, TextBase::Header)?;
        t.funcdata = Some(FuncDataBytes::Own(tree.into()));
        Ok(t)
    }

    fn frame(function: &str, file: &str, line: u32, inlined: bool) -> GoFrame {
        GoFrame {
            function: function.to_owned(),
            file: Some(file.to_owned()),
            line: Some(line),
            inlined,
        }
    }

    #[test]
    fn a_hand_made_table_gives_functions_lines_and_inlined_frames() {
        let (data, tree) = synthetic();
        let t = synthetic_table(data, tree).expect("decodes");
        assert_eq!(t.function_count(), 2);
        assert_eq!(t.text_range(), 0x401000..0x401140);
        let names: Vec<_> = t.functions().map(|f| (f.name, f.entry, f.end)).collect();
        assert_eq!(
            names,
            [
                ("main.outer".to_owned(), 0x401000, 0x401100),
                ("main.leaf".to_owned(), 0x401100, 0x401140)
            ]
        );
        assert_eq!(
            t.function_by_name("main.leaf").map(|f| f.entry),
            Some(0x401100)
        );
        assert_eq!(t.function_by_name("main.inner"), None);
        assert_eq!(t.function_by_name("main"), None);
        assert_eq!(
            t.frames(0x401004),
            Some(vec![frame("main.outer", "/src/a.go", 5, false)])
        );
        // Inside the inlined call: inner (b.go:20) called from outer at
        // parentPc 0x30 (a.go:7).
        assert_eq!(
            t.frames(0x401018),
            Some(vec![
                frame("main.outer", "/src/a.go", 7, false),
                frame("main.inner", "/src/b.go", 20, true),
            ])
        );
        assert_eq!(
            t.frames(0x401120),
            Some(vec![frame("main.leaf", "/src/b.go", 30, false)])
        );
        assert_eq!(t.frames(0x401140), None);
        assert_eq!(t.frames(0x400fff), None);
        assert_eq!(
            t.function(0x40113f).map(|f| f.name),
            Some("main.leaf".to_owned())
        );
        let tree = t
            .funcdata
            .as_ref()
            .and_then(|fd| t.funcdata_bytes(fd))
            .expect("tree");
        assert_eq!(t.inline_trees_sound(tree), Some(true));
        // Read from a wrong base, the tree is not sound.
        assert_eq!(t.inline_trees_sound(&tree[4..]), Some(false));
    }

    #[test]
    fn a_cut_or_damaged_hand_made_table_never_panics() {
        let (data, tree) = synthetic();
        let probe = |t: &Pclntab| {
            for pc in (0x400ff0..0x401150).step_by(3) {
                let _ = t.frames(pc);
                let _ = t.function(pc);
            }
            let _ = t.functions().count();
            let _ = t.function_by_name("main.leaf");
            if let Some(fd) = t.funcdata.as_ref().and_then(|fd| t.funcdata_bytes(fd)) {
                let _ = t.inline_trees_sound(fd);
            }
        };
        for cut in 0..data.len() {
            if let Ok(t) = synthetic_table(data[..cut].to_vec(), tree.clone()) {
                probe(&t);
            }
        }
        for cut in 0..tree.len() {
            if let Ok(t) = synthetic_table(data.clone(), tree[..cut].to_vec()) {
                probe(&t);
            }
        }
        // Every byte set to a few bad values in turn.
        for at in 0..data.len() {
            for bad in [0x00, 0x7f, 0x80, 0xff] {
                let mut damaged = data.clone();
                damaged[at] = bad;
                if let Ok(t) = synthetic_table(damaged, tree.clone()) {
                    probe(&t);
                }
            }
        }
    }

    #[test]
    fn unknown_magics_name_the_version_problem() {
        let (mut data, _) = synthetic();
        data[..4].copy_from_slice(&super::super::error::MAGIC_GO116.to_le_bytes());
        let err = Header::read(&data).expect_err("1.16 magic");
        let text = err.to_string();
        assert!(
            text.contains("magic 0xfffffffa")
                && text.contains("Go 1.16 or 1.17")
                && text.contains("Go 1.19 to 1.27 are supported"),
            "{text}"
        );
        data[..4].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        let text = Header::read(&data).expect_err("unknown magic").to_string();
        assert!(
            text.starts_with("unsupported Go symbol table (magic 0x12345678)"),
            "{text}"
        );
        data[..4].copy_from_slice(&MAGIC_GO120.to_le_bytes());
        data[7] = 4;
        assert!(matches!(Header::read(&data), Err(GoError::Unsupported(_))));
    }

    #[test]
    fn a_binary_without_a_table_is_none() {
        let exe = std::fs::read("/proc/self/exe").expect("read the test binary");
        let file = object::File::parse(&*exe).expect("an ELF file");
        assert!(Pclntab::parse(&file).expect("no error").is_none());
        assert!(!buildinfo::is_go(&file));
        assert!(buildinfo::read(&file).expect("no error").is_none());
    }
}
