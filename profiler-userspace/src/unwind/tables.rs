//! The in-kernel walker's unwind table of one binary: its `.eh_frame`
//! call-frame information, evaluated ahead of time into a compact,
//! pc-sorted list of [`UnwindRow`]s (the rules are in
//! `profiler_common::unwind`).
//!
//! Written by hand because no crate produces it: framehop and gimli
//! evaluate the CFI program of an FDE on demand, in userspace, for one
//! address at a time; the kernel's walker can run neither CFI programs nor
//! DWARF expressions, and needs a flat, pre-evaluated table it can
//! binary-search. gimli still does the parsing and the CFI evaluation here;
//! this module flattens its rows, recognises the one expression the
//! walker knows (the linker's `.plt` one), fills the gaps between FDEs and
//! compacts the result.

use std::{
    collections::HashMap,
    ops::Range,
    path::{Path, PathBuf},
};

use gimli::{
    BaseAddresses, CieOrFde, CommonInformationEntry, EhFrame, EhFrameOffset, EndianSlice,
    LittleEndian, Reader as _, Register, RegisterRule, UnwindContext, UnwindSection as _,
    UnwindTableRow, X86_64,
};
use object::{Architecture, Object as _, ObjectSection as _};
use profiler_common::unwind::{CfaRule, RbpRule, UnwindRow};

use crate::mapped::Bytes;

/// One binary's unwind table: rows sorted by pc, pcs relative to `base`.
///
/// A row holds from its `pc` up to the next row's. An address below the
/// first row is covered by no FDE (the walker treats it as
/// [`CfaRule::None`]); the last row is always a [`CfaRule::None`] at the
/// end of the last FDE.
#[derive(Debug, Clone)]
pub struct UnwindTable {
    /// The address (as the ELF file lays it out, before any load bias)
    /// that row pcs count from: 0 when every address fits in 32 bits, else
    /// the lowest FDE start.
    pub base: u64,
    pub rows: Vec<UnwindRow>,
    pub stats: TableStats,
}

impl UnwindTable {
    /// The size of the rows as the kernel holds them.
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(self.rows.as_slice())
    }

    /// The row covering `address` (an address as the ELF file lays it
    /// out), as the walker's binary search finds it; `None` below the
    /// first row or outside the 32-bit range of the table.
    pub fn row_for(&self, address: u64) -> Option<&UnwindRow> {
        let pc = u32::try_from(address.checked_sub(self.base)?).ok()?;
        let after = self.rows.partition_point(|row| row.pc <= pc);
        after.checked_sub(1).and_then(|i| self.rows.get(i))
    }
}

/// What building a table met, for logs and metrics.
#[derive(Debug, Default, Clone)]
pub struct TableStats {
    /// FDEs parsed (including empty ones, which give no rows).
    pub fdes: usize,
    /// Rows of the table that say [`CfaRule::Unsupported`].
    pub unsupported_rows: usize,
    /// Rows of the table that say [`CfaRule::Plt`].
    pub plt_rows: usize,
    /// FDEs of signal trampolines (CIE augmentation `S`).
    pub signal_fdes: usize,
    /// Rows of the table that say [`CfaRule::End`].
    pub end_rows: usize,
    /// FDEs skipped because they (or their CIE) did not parse, or whose
    /// address range wraps: their addresses read as gaps.
    pub bad_fdes: usize,
    /// FDEs cut short because the next one (by start address) began
    /// inside them.
    pub overlapping_fdes: usize,
}

/// Why a binary has no table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the file is not an ELF binary that can be read: {0}")]
    Elf(#[source] object::Error),
    #[error("the binary is for {0:?}, not x86_64: its call-frame information cannot be used")]
    Architecture(Architecture),
    #[error("the binary's .eh_frame section is malformed: {0}")]
    EhFrame(#[source] gimli::Error),
    #[error(
        "the binary's call-frame information spans {span:#x} bytes of addresses, more than a \
         table with 32-bit pcs can cover"
    )]
    TooLarge { span: u64 },
}

/// Reads the file (memory-mapped, never copied whole into the heap) and
/// builds its table.
pub fn build_table_for_path(path: &Path) -> Result<Option<UnwindTable>, TableError> {
    let io = |source| TableError::Io {
        path: path.to_owned(),
        source,
    };
    build_table(&Bytes::map(path).map_err(io)?)
}

/// Builds the table of an ELF image. `Ok(None)` when the binary has no
/// `.eh_frame` (or one without FDEs): the walker uses frame pointers there.
pub fn build_table(elf: &[u8]) -> Result<Option<UnwindTable>, TableError> {
    let file = object::File::parse(elf).map_err(TableError::Elf)?;
    match file.architecture() {
        Architecture::X86_64 if file.is_64() && file.is_little_endian() => {}
        other => return Err(TableError::Architecture(other)),
    }
    let Some(eh_frame) = file.section_by_name(".eh_frame") else {
        return Ok(None);
    };
    let data = eh_frame.data().map_err(TableError::Elf)?;
    // Pointers in FDEs are usually pc-relative (to the section); text- and
    // data-relative encodings need the other bases.
    let mut bases = BaseAddresses::default().set_eh_frame(eh_frame.address());
    if let Some(text) = file.section_by_name(".text") {
        bases = bases.set_text(text.address());
    }
    if let Some(got) = file.section_by_name(".got") {
        bases = bases.set_got(got.address());
    }
    build_from_eh_frame(data, &bases)
}

/// A parsed FDE: its address range and its rows (in `raw`).
struct Span {
    start: u64,
    end: u64,
    rows: Range<usize>,
}

type Section<'a> = EhFrame<EndianSlice<'a, LittleEndian>>;
type Cie<'a> = CommonInformationEntry<EndianSlice<'a, LittleEndian>>;

fn build_from_eh_frame(
    data: &[u8],
    bases: &BaseAddresses,
) -> Result<Option<UnwindTable>, TableError> {
    let mut section: Section<'_> = EhFrame::new(data, LittleEndian);
    section.set_address_size(8);
    let mut ctx = Box::new(UnwindContext::new());
    let mut stats = TableStats::default();
    let mut cies: HashMap<usize, Cie<'_>> = HashMap::new();
    // Every FDE's rows (pc as in the file), and the FDEs' spans over them.
    let mut raw: Vec<(u64, UnwindRow)> = Vec::new();
    let mut spans: Vec<Span> = Vec::new();

    let mut entries = section.entries(bases);
    // A malformed entry header leaves the rest of the section unreadable:
    // the whole table is refused rather than kept in part.
    while let Some(entry) = entries.next().map_err(TableError::EhFrame)? {
        let partial = match entry {
            CieOrFde::Cie(cie) => {
                cies.insert(cie.offset(), cie);
                continue;
            }
            CieOrFde::Fde(partial) => partial,
        };
        let parsed = partial.parse(|section, bases, EhFrameOffset(offset)| {
            if let Some(cie) = cies.get(&offset) {
                return Ok(cie.clone());
            }
            section.cie_from_offset(bases, EhFrameOffset(offset))
        });
        let Ok(fde) = parsed else {
            stats.bad_fdes += 1;
            continue;
        };
        stats.fdes += 1;
        let (start, end) = (fde.initial_address(), fde.end_address());
        if fde.len() == 0 {
            continue;
        }
        if end <= start {
            stats.bad_fdes += 1;
            continue;
        }
        let first = raw.len();
        if fde.is_signal_trampoline() {
            stats.signal_fdes += 1;
            raw.push((start, plain(CfaRule::Signal)));
        } else {
            let ra = fde.cie().return_address_register();
            match fde.rows(&section, bases, &mut ctx) {
                Ok(mut table) => {
                    let mut next = start;
                    loop {
                        match table.next_row() {
                            Ok(Some(row)) => {
                                if row.start_address() < row.end_address() {
                                    raw.push((row.start_address(), translate(row, ra, &section)));
                                }
                                next = row.end_address();
                            }
                            Ok(None) => break,
                            // A CFI program gimli cannot evaluate (an unknown
                            // instruction, too many rules or remembered
                            // states): the rest of the FDE is unsupported.
                            Err(_) => {
                                raw.push((next, plain(CfaRule::Unsupported)));
                                break;
                            }
                        }
                    }
                }
                Err(_) => raw.push((start, plain(CfaRule::Unsupported))),
            }
        }
        spans.push(Span {
            start,
            end,
            rows: first..raw.len(),
        });
    }

    let rows = assemble(&mut spans, &raw, &mut stats);
    let (Some(&(low, _)), Some(&(high, _))) = (rows.first(), rows.last()) else {
        return Ok(None);
    };
    let base = if u32::try_from(high).is_ok() { 0 } else { low };
    if u32::try_from(high - base).is_err() {
        return Err(TableError::TooLarge { span: high - low });
    }
    let rows: Vec<UnwindRow> = rows
        .into_iter()
        .map(|(pc, row)| UnwindRow {
            // Fits: base <= pc <= high, checked above.
            pc: (pc - base) as u32,
            ..row
        })
        .collect();
    for row in &rows {
        match CfaRule::from_u8(row.cfa_rule) {
            CfaRule::Unsupported => stats.unsupported_rows += 1,
            CfaRule::Plt => stats.plt_rows += 1,
            CfaRule::End => stats.end_rows += 1,
            _ => {}
        }
    }
    Ok(Some(UnwindTable { base, rows, stats }))
}

/// Orders the FDEs by start and lays their rows out one after another:
/// an FDE that the next one starts inside is cut where the next begins (a
/// later FDE wins), a gap after an FDE gets a [`CfaRule::None`] row, and a
/// row like the one before it is dropped. Pcs as in the file.
fn assemble(
    spans: &mut [Span],
    raw: &[(u64, UnwindRow)],
    stats: &mut TableStats,
) -> Vec<(u64, UnwindRow)> {
    // Stable: of FDEs with the same start, the later in the section wins.
    spans.sort_by_key(|span| span.start);
    let mut out: Vec<(u64, UnwindRow)> = Vec::with_capacity(raw.len() + spans.len());
    for (i, span) in spans.iter().enumerate() {
        let next_start = spans.get(i + 1).map(|next| next.start);
        let end = match next_start {
            Some(next) if next < span.end => {
                stats.overlapping_fdes += 1;
                next
            }
            _ => span.end,
        };
        if end <= span.start {
            continue;
        }
        let mut started = false;
        for &(pc, row) in raw.get(span.rows.clone()).unwrap_or_default() {
            if pc < span.start || pc >= end {
                continue;
            }
            if !started && pc != span.start {
                push(&mut out, span.start, plain(CfaRule::None));
            }
            started = true;
            push(&mut out, pc, row);
        }
        if !started {
            push(&mut out, span.start, plain(CfaRule::None));
        }
        if next_start != Some(end) {
            push(&mut out, end, plain(CfaRule::None));
        }
    }
    out
}

/// Appends a row (its `pc` field unused: `pc` holds it), keeping pcs
/// strictly increasing (a row at the last one's pc replaces it) and
/// dropping a row identical to the one before.
fn push(out: &mut Vec<(u64, UnwindRow)>, pc: u64, row: UnwindRow) {
    if let Some(last) = out.last_mut() {
        if pc < last.0 {
            return;
        }
        if pc == last.0 {
            last.1 = row;
            if let [.., before, last] = out.as_slice()
                && before.1 == last.1
            {
                out.pop();
            }
            return;
        }
        if last.1 == row {
            return;
        }
    }
    out.push((pc, row));
}

fn plain(cfa_rule: CfaRule) -> UnwindRow {
    UnwindRow {
        cfa_rule: cfa_rule as u8,
        ..UnwindRow::default()
    }
}

/// One of gimli's evaluated rows as the walker's row (its `pc` left 0).
fn translate(row: &UnwindTableRow<usize>, ra: Register, section: &Section<'_>) -> UnwindRow {
    match row.register(ra) {
        Some(RegisterRule::Undefined) => return plain(CfaRule::End),
        // The return address at CFA - 8, where `call` put it. (Unmentioned
        // does not happen in practice: every x86_64 CIE says so.)
        None | Some(RegisterRule::Offset(-8)) => {}
        // In another register (hand-written assembly), or an expression.
        Some(_) => return plain(CfaRule::Unsupported),
    }
    // The walker takes the CFA as the caller's rsp.
    match row.register(X86_64::RSP) {
        None | Some(RegisterRule::ValOffset(0)) => {}
        Some(_) => return plain(CfaRule::Unsupported),
    }
    let (mut rbp_rule, rbp_offset) = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::Undefined) | Some(RegisterRule::SameValue) => {
            (RbpRule::Unchanged, 0)
        }
        Some(RegisterRule::Offset(offset)) => match i16::try_from(offset) {
            Ok(offset) => (RbpRule::AtCfa, offset),
            Err(_) => (RbpRule::Unknown, 0),
        },
        Some(RegisterRule::Expression(expression)) => expression
            .get(section)
            .ok()
            .and_then(|bytes| breg6_expression(bytes.0.slice()))
            .and_then(|offset| i16::try_from(offset).ok())
            .map_or((RbpRule::Unknown, 0), |offset| (RbpRule::AtRbp, offset)),
        Some(_) => (RbpRule::Unknown, 0),
    };
    match row.cfa() {
        gimli::CfaRule::RegisterAndOffset { register, offset } => {
            let cfa_rule = match *register {
                X86_64::RSP => CfaRule::Rsp,
                X86_64::RBP => CfaRule::Rbp,
                _ => return plain(CfaRule::Unsupported),
            };
            let Ok(cfa_offset) = i32::try_from(*offset) else {
                return plain(CfaRule::Unsupported);
            };
            UnwindRow {
                pc: 0,
                cfa_offset,
                rbp_offset,
                cfa_rule: cfa_rule as u8,
                rbp_rule: rbp_rule as u8,
            }
        }
        gimli::CfaRule::Expression(expression) => {
            let Ok(bytes) = expression.get(section) else {
                return plain(CfaRule::Unsupported);
            };
            if let Some(cfa_offset) = rbp_deref_expression(bytes.0.slice()) {
                return UnwindRow {
                    pc: 0,
                    cfa_offset,
                    rbp_offset,
                    cfa_rule: CfaRule::RbpDeref as u8,
                    rbp_rule: rbp_rule as u8,
                };
            }
            let Some((cfa_offset, threshold)) = plt_expression(bytes.0.slice()) else {
                return plain(CfaRule::Unsupported);
            };
            // `rbp_offset` holds the threshold: a saved rbp (never seen in
            // a PLT) cannot be expressed.
            if rbp_rule == RbpRule::AtCfa {
                rbp_rule = RbpRule::Unknown;
            }
            UnwindRow {
                pc: 0,
                cfa_offset,
                rbp_offset: threshold,
                cfa_rule: CfaRule::Plt as u8,
                rbp_rule: rbp_rule as u8,
            }
        }
    }
}

const OP_BREG6: u8 = gimli::constants::DW_OP_breg6.0;
const OP_BREG7: u8 = gimli::constants::DW_OP_breg7.0;
const OP_DEREF: u8 = gimli::constants::DW_OP_deref.0;
const OP_BREG16: u8 = gimli::constants::DW_OP_breg16.0;
const OP_LIT0: u8 = gimli::constants::DW_OP_lit0.0;
const OP_LIT3: u8 = gimli::constants::DW_OP_lit3.0;
const OP_LIT15: u8 = gimli::constants::DW_OP_lit15.0;
const OP_LIT31: u8 = gimli::constants::DW_OP_lit31.0;
const OP_AND: u8 = gimli::constants::DW_OP_and.0;
const OP_GE: u8 = gimli::constants::DW_OP_ge.0;
const OP_SHL: u8 = gimli::constants::DW_OP_shl.0;
const OP_PLUS: u8 = gimli::constants::DW_OP_plus.0;

/// The CFA expression of a function that realigned its stack, `CFA =
/// *(rbp + off)` (`DW_OP_breg6 <off>; DW_OP_deref`), as `off`.
fn rbp_deref_expression(bytes: &[u8]) -> Option<i32> {
    let (offset, rest) = breg6(bytes)?;
    (rest == [OP_DEREF]).then_some(offset)
}

/// A register's save address `rbp + off` (`DW_OP_breg6 <off>`), as `off`.
fn breg6_expression(bytes: &[u8]) -> Option<i32> {
    let (offset, rest) = breg6(bytes)?;
    rest.is_empty().then_some(offset)
}

/// `DW_OP_breg6 <off>` at the start of an expression: `off` and the rest.
fn breg6(bytes: &[u8]) -> Option<(i32, &[u8])> {
    let (&op, rest) = bytes.split_first()?;
    if op != OP_BREG6 {
        return None;
    }
    let mut rest = EndianSlice::new(rest, LittleEndian);
    let offset = i32::try_from(rest.read_sleb128().ok()?).ok()?;
    Some((offset, rest.slice()))
}

/// The linker's CFA expression for `.plt` entries,
/// `CFA = rsp + off + (((rip & 15) >= N) << 3)`, as `(off, N)`:
///
/// `DW_OP_breg7 <off>; DW_OP_breg16 0; DW_OP_lit15; DW_OP_and;
/// DW_OP_lit<N>; DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus`
///
/// N is 11 in a classic `.plt` (`jmp *GOT; push n; jmp PLT0`: from byte
/// 11 of the 16, after the push, rsp has moved 8), 9 in an IBT `.plt`
/// (`endbr64; push n; bnd jmp PLT0`).
fn plt_expression(bytes: &[u8]) -> Option<(i32, i16)> {
    let (&op, rest) = bytes.split_first()?;
    if op != OP_BREG7 {
        return None;
    }
    let mut rest = EndianSlice::new(rest, LittleEndian);
    let offset = i32::try_from(rest.read_sleb128().ok()?).ok()?;
    match rest.slice() {
        &[
            OP_BREG16,
            0,
            OP_LIT15,
            OP_AND,
            lit @ OP_LIT0..=OP_LIT31,
            OP_GE,
            OP_LIT3,
            OP_SHL,
            OP_PLUS,
        ] => Some((offset, i16::from(lit - OP_LIT0))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

    fn rule(row: &UnwindRow) -> CfaRule {
        CfaRule::from_u8(row.cfa_rule)
    }

    fn assert_sorted(table: &UnwindTable) {
        for pair in table.rows.windows(2) {
            assert!(pair[0].pc < pair[1].pc, "rows out of order: {pair:?}");
            let (a, b) = (
                UnwindRow { pc: 0, ..pair[0] },
                UnwindRow { pc: 0, ..pair[1] },
            );
            assert_ne!(a, b, "two equal rows in a row: {pair:?}");
        }
    }

    /// The address of a symbol (symbol table, else dynamic symbols).
    fn symbol(elf: &[u8], name: &str) -> Option<u64> {
        use object::ObjectSymbol as _;
        let file = object::File::parse(elf).ok()?;
        file.symbols()
            .chain(file.dynamic_symbols())
            .find(|s| s.name() == Ok(name) && s.address() != 0)
            .map(|s| s.address())
    }

    fn section_range(elf: &[u8], name: &str) -> Option<Range<u64>> {
        let file = object::File::parse(elf).ok()?;
        let s = file.section_by_name(name)?;
        Some(s.address()..s.address() + s.size())
    }

    fn row_at(table: &UnwindTable, address: u64) -> UnwindRow {
        *table
            .row_for(address)
            .unwrap_or_else(|| panic!("no row for {address:#x}"))
    }

    fn report(name: &str, path: &Path) -> Option<UnwindTable> {
        let started = std::time::Instant::now();
        let table = build_table_for_path(path).expect("table builds")?;
        eprintln!(
            "{name}: {} rows, {} bytes, built in {:?}; base {:#x}; {:?}",
            table.rows.len(),
            table.bytes(),
            started.elapsed(),
            table.base,
            table.stats
        );
        Some(table)
    }

    /// A scratch directory for compiled programs.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tables-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    /// Compiles a small C program that calls libc through the PLT; `None`
    /// when there is no C compiler.
    fn compile(name: &str, extra: &[&str]) -> Option<PathBuf> {
        let dir = scratch(name);
        let source = dir.join("t.c");
        std::fs::write(
            &source,
            "#include <stdio.h>\n#include <stdlib.h>\n\
             int main(int argc, char **argv) {\n\
               printf(\"%d\\n\", atoi(argc > 1 ? argv[1] : \"3\"));\n\
               puts(\"x\");\n  return 0;\n}\n",
        )
        .expect("write source");
        let out = dir.join(name);
        let status = std::process::Command::new("cc")
            .args(["-O2", "-fomit-frame-pointer"])
            .args(extra)
            .arg("-o")
            .arg(&out)
            .arg(&source)
            .status();
        match status {
            Ok(s) if s.success() => Some(out),
            _ => {
                eprintln!("no working C compiler: skipping");
                None
            }
        }
    }

    #[test]
    fn libc_table() {
        let elf = std::fs::read(LIBC).expect("libc");
        let table = report("libc", Path::new(LIBC)).expect("libc has .eh_frame");
        assert_eq!(table.base, 0);
        assert!(table.rows.len() > 1000, "{} rows", table.rows.len());
        assert_sorted(&table);
        assert_eq!(table.stats.signal_fdes, 1, "__restore_rt");
        assert!(table.rows.iter().any(|r| rule(r) == CfaRule::Signal));
        assert!(table.stats.end_rows >= 1, "clone3/clone end the stack");
        assert_eq!(table.stats.bad_fdes, 0);
        let last = table.rows.last().expect("rows");
        assert_eq!(rule(last), CfaRule::None);

        // At a function's entry the CFA is rsp + 8 (just the return
        // address on the stack), and nothing saved yet.
        for name in ["malloc", "qsort", "fopen", "getpid", "pthread_create"] {
            let address = symbol(&elf, name).expect("libc exports it");
            let row = row_at(&table, address);
            assert_eq!(rule(&row), CfaRule::Rsp, "{name}: {row:?}");
            assert_eq!(row.cfa_offset, 8, "{name}: {row:?}");
            assert_eq!(row.rbp_rule, RbpRule::Unchanged as u8, "{name}: {row:?}");
        }
        // `clone3`'s child ends the stack (its return address is undefined).
        if let Some(clone3) = symbol(&elf, "__clone3").or_else(|| symbol(&elf, "clone3")) {
            let ends = table
                .rows
                .iter()
                .filter(|r| rule(r) == CfaRule::End)
                .any(|r| u64::from(r.pc) > clone3 && u64::from(r.pc) < clone3 + 0x100);
            assert!(ends, "no End row in clone3");
        }
        // libc's .plt (calls to its own IFUNCs): classic PLT, threshold 11.
        if let Some(plt) = section_range(&elf, ".plt") {
            assert!(table.stats.plt_rows >= 1);
            let row = row_at(&table, plt.start + 0x10);
            assert_eq!(rule(&row), CfaRule::Plt, "{row:?}");
            assert_eq!((row.cfa_offset, row.rbp_offset), (8, 11));
            // PLT0 pushes once, then jumps: rsp + 16 then rsp + 24.
            assert_eq!(row_at(&table, plt.start).cfa_offset, 16);
            assert_eq!(row_at(&table, plt.start + 6).cfa_offset, 24);
        }
    }

    #[test]
    fn plt_rows_of_compiled_binaries() {
        // Classic PLT, then IBT (endbr64 first: threshold 9).
        for (name, extra, threshold) in [
            ("plain", &[][..], 11),
            ("ibt", &["-fcf-protection", "-Wl,-z,ibtplt"][..], 9),
        ] {
            let Some(path) = compile(name, extra) else {
                return;
            };
            let elf = std::fs::read(&path).expect("compiled binary");
            let table = report(name, &path).expect(".eh_frame");
            assert_sorted(&table);
            let plt = section_range(&elf, ".plt").expect(".plt");
            let row = row_at(&table, plt.start + 0x10);
            assert_eq!(rule(&row), CfaRule::Plt, "{name}: {row:?}");
            assert_eq!((row.cfa_offset, row.rbp_offset), (8, threshold), "{name}");
            assert!(table.stats.plt_rows >= 1);
            let main = row_at(&table, symbol(&elf, "main").expect("main"));
            assert_eq!(
                (rule(&main), main.cfa_offset),
                (CfaRule::Rsp, 8),
                "{main:?}"
            );
            let start = row_at(&table, symbol(&elf, "_start").expect("_start"));
            assert_eq!(rule(&start), CfaRule::End, "{start:?}");
            let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
        }
    }

    #[test]
    fn no_eh_frame_is_none() {
        let Some(path) = compile("noeh", &[]) else {
            return;
        };
        let stripped = path.with_file_name("stripped");
        let status = std::process::Command::new("objcopy")
            .args(["--remove-section", ".eh_frame"])
            .args(["--remove-section", ".eh_frame_hdr"])
            .arg(&path)
            .arg(&stripped)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("no objcopy: skipping");
            return;
        }
        assert!(matches!(build_table_for_path(&stripped), Ok(None)));
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn garbage_is_an_error() {
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let error = build_table(&garbage).expect_err("garbage");
        eprintln!("garbage: {error}");
        assert!(build_table(&[]).is_err());
        let error = build_table_for_path(Path::new("/nonexistent/binary")).expect_err("no file");
        eprintln!("missing: {error}");
        // A real ELF cut short.
        let libc = std::fs::read(LIBC).expect("libc");
        for len in [16, 64, 1000, libc.len() / 2] {
            let _ = build_table(libc.get(..len).expect("prefix"));
        }
    }

    /// Scrambles bytes of a real `.eh_frame`: whatever it gives, no panic.
    #[test]
    fn corrupt_eh_frame_does_not_panic() {
        let Some(path) = compile("corrupt", &[]) else {
            return;
        };
        let elf = std::fs::read(&path).expect("binary");
        let file = object::File::parse(elf.as_slice()).expect("elf");
        let (offset, size) = file
            .section_by_name(".eh_frame")
            .and_then(|s| s.file_range())
            .expect(".eh_frame");
        drop(file);
        let (mut ok, mut err) = (0, 0);
        let mut seed = 0x1234_5678_u64;
        for _ in 0..3000 {
            let mut copy = elf.clone();
            for _ in 0..1 + seed % 4 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let at = offset + (seed >> 33) % size;
                copy[at as usize] = (seed >> 17) as u8;
            }
            match build_table(&copy) {
                Ok(Some(table)) => {
                    ok += 1;
                    assert!(table.rows.windows(2).all(|w| w[0].pc < w[1].pc));
                }
                Ok(None) => ok += 1,
                Err(_) => err += 1,
            }
        }
        eprintln!("corrupted .eh_frame: {ok} tables, {err} errors");
        let _ = std::fs::remove_dir_all(path.parent().expect("dir"));
    }

    #[test]
    fn python3_table() {
        let path = Path::new("/usr/bin/python3");
        if !path.exists() {
            return;
        }
        let table = report("python3", path).expect(".eh_frame");
        assert_sorted(&table);
    }

    /// Gaps, overlaps, same-start FDEs and compaction, on made-up FDEs.
    #[test]
    fn assembly_of_spans() {
        let rsp = |off| UnwindRow {
            cfa_offset: off,
            cfa_rule: CfaRule::Rsp as u8,
            ..UnwindRow::default()
        };
        let none = plain(CfaRule::None);
        let raw = vec![
            // FDE 0: [0x100, 0x200), two rows, then one equal to the first
            // then its equal: compacted.
            (0x100, rsp(8)),
            (0x110, rsp(16)),
            (0x120, rsp(16)),
            (0x180, rsp(8)),
            // FDE 1: [0x200, 0x210), adjacent: no gap row.
            (0x200, rsp(8)),
            (0x208, rsp(24)),
            // FDE 2: [0x300, 0x400), cut by FDE 3 at 0x350.
            (0x300, rsp(8)),
            (0x340, rsp(32)),
            (0x360, rsp(40)),
            // FDE 3: [0x350, 0x370).
            (0x350, rsp(48)),
            // FDE 4: [0x500, 0x520) and FDE 5 with the same start: 5 wins.
            (0x500, rsp(56)),
            (0x500, rsp(64)),
        ];
        let mut spans = vec![
            Span {
                start: 0x300,
                end: 0x400,
                rows: 6..9,
            },
            Span {
                start: 0x100,
                end: 0x200,
                rows: 0..4,
            },
            Span {
                start: 0x200,
                end: 0x210,
                rows: 4..6,
            },
            Span {
                start: 0x350,
                end: 0x370,
                rows: 9..10,
            },
            Span {
                start: 0x500,
                end: 0x520,
                rows: 10..11,
            },
            Span {
                start: 0x500,
                end: 0x510,
                rows: 11..12,
            },
        ];
        let mut stats = TableStats::default();
        let rows = assemble(&mut spans, &raw, &mut stats);
        let expected = vec![
            (0x100, rsp(8)),
            (0x110, rsp(16)),
            (0x180, rsp(8)),
            (0x208, rsp(24)),
            (0x210, none),
            (0x300, rsp(8)),
            (0x340, rsp(32)),
            (0x350, rsp(48)),
            (0x370, none),
            (0x500, rsp(64)),
            (0x510, none),
        ];
        assert_eq!(rows, expected);
        assert_eq!(stats.overlapping_fdes, 2);
    }

    #[test]
    fn plt_expression_bytes() {
        let classic = [0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22];
        assert_eq!(plt_expression(&classic), Some((8, 11)));
        let ibt = [0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x39, 0x2a, 0x33, 0x24, 0x22];
        assert_eq!(plt_expression(&ibt), Some((8, 9)));
        // A two-byte offset (200 = 0xc8 0x01 in SLEB128).
        let wide = [
            0x77, 0xc8, 0x01, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22,
        ];
        assert_eq!(plt_expression(&wide), Some((200, 11)));
        // `DW_OP_breg6 -8; DW_OP_deref` (a realigned stack): not a PLT.
        assert_eq!(plt_expression(&[0x76, 0x78, 0x06]), None);
        assert_eq!(plt_expression(&classic[..10]), None);
        assert_eq!(plt_expression(&[0x77]), None);
        assert_eq!(plt_expression(&[]), None);
    }

    /// Every row of real binaries against framehop (which evaluates the
    /// CFI itself): one frame unwound from an address at the start, the
    /// middle and the end of each row, over a made-up stack whose every
    /// word is a distinct value, must give the same return address, `rsp`
    /// and `rbp`.
    #[test]
    fn rows_match_framehop() {
        use framehop::{
            ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder as _,
            x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
        };
        use object::ObjectSegment as _;

        const AVMA: u64 = 0x7f00_0000_0000;
        const SP: u64 = 0x7ffd_0000_0000;
        const BP: u64 = SP + 0x1000;
        // A word of the made-up stack: above SP (framehop rejects a caller
        // rsp below the callee's), 8-aligned, distinct per address.
        let word = |address: u64| {
            let mut x = address.wrapping_add(0x9e37_79b9_7f4a_7c15);
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            SP + 0x10_0000 + ((x ^ (x >> 31)) & 0xffff_fff8)
        };
        let mut binaries = vec![
            PathBuf::from(LIBC),
            PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            PathBuf::from("/lib/x86_64-linux-gnu/libm.so.6"),
            PathBuf::from("/lib/x86_64-linux-gnu/libstdc++.so.6"),
            PathBuf::from("/usr/bin/python3"),
        ];
        binaries.extend(std::env::current_exe().ok());
        for path in binaries.iter().filter(|p| p.exists()) {
            let started = std::time::Instant::now();
            let elf = std::fs::read(path).expect("binary");
            let Some(table) = build_table(&elf).expect("table") else {
                continue;
            };
            let file = object::File::parse(elf.as_slice()).expect("elf");
            let base_svma = file.segments().map(|s| s.address()).min().unwrap_or(0) & !0xfff;
            let end_svma = file
                .segments()
                .map(|s| s.address() + s.size())
                .max()
                .unwrap_or(0);
            let section = |name: &str| {
                let s = file.section_by_name(name)?;
                let range = s.address()..s.address() + s.size();
                Some((range, s.data().ok()?.to_vec()))
            };
            let (text, eh_frame, eh_frame_hdr) = (
                section(".text"),
                section(".eh_frame"),
                section(".eh_frame_hdr"),
            );
            let info = ExplicitModuleSectionInfo {
                base_svma,
                text_svma: text.as_ref().map(|(r, _)| r.clone()),
                text: text.map(|(_, b)| b),
                got_svma: file
                    .section_by_name(".got")
                    .map(|s| s.address()..s.address() + s.size()),
                eh_frame_svma: eh_frame.as_ref().map(|(r, _)| r.clone()),
                eh_frame: eh_frame.map(|(_, b)| b),
                eh_frame_hdr_svma: eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
                eh_frame_hdr: eh_frame_hdr.map(|(_, b)| b),
                ..Default::default()
            };
            let mut unwinder = UnwinderX86_64::new();
            unwinder.add_module(Module::new(
                path.display().to_string(),
                AVMA..AVMA + (end_svma - base_svma),
                AVMA,
                info,
            ));
            let mut cache = CacheX86_64::new();
            let mut read = |address: u64| Ok(word(address));

            let (mut checked, mut skipped, mut mismatches) = (0usize, 0usize, Vec::new());
            for (i, row) in table.rows.iter().enumerate() {
                let start = table.base + u64::from(row.pc);
                let end = table
                    .rows
                    .get(i + 1)
                    .map_or(start + 1, |next| table.base + u64::from(next.pc));
                // framehop cannot unwind a signal frame (it falls back to
                // frame pointers there); ours reads the ucontext as glibc's
                // CFI for `__restore_rt` says (rbp at rsp + 120, rsp at
                // rsp + 160, rip at rsp + 168).
                if matches!(rule(row), CfaRule::Unsupported | CfaRule::Signal) {
                    skipped += 1;
                    continue;
                }
                for svma in [start, start + (end - start) / 2, end - 1] {
                    // As a caller frame: the return address is just after
                    // `svma`, which is what both look up.
                    let ip = AVMA + (svma - base_svma) + 1;
                    let mut regs = UnwindRegsX86_64::new(ip, SP, BP);
                    let theirs = unwinder
                        .unwind_frame(
                            FrameAddress::from_return_address(ip).expect("nonzero"),
                            &mut regs,
                            &mut cache,
                            &mut read,
                        )
                        .map(|ra| ra.map(|ra| (ra, regs.sp(), regs.bp())));
                    let ours = one_frame(row, ip, SP, BP, &word);
                    checked += 1;
                    let same = match (&ours, &theirs) {
                        (None, Ok(None)) => true,
                        (Some((ra, sp, bp)), Ok(Some((fra, fsp, fbp)))) => {
                            ra == fra && sp == fsp && bp.is_none_or(|bp| bp == *fbp)
                        }
                        _ => false,
                    };
                    if !same {
                        mismatches.push(format!(
                            "{svma:#x} {row:?}: ours {ours:x?}, framehop {theirs:x?}"
                        ));
                    }
                }
            }
            eprintln!(
                "{}: {checked} addresses compared with framehop ({skipped} unsupported or \
                 signal rows skipped, {} mismatches) in {:?}",
                path.display(),
                mismatches.len(),
                started.elapsed()
            );
            for m in mismatches.iter().take(20) {
                eprintln!("  {m}");
            }
            assert!(
                mismatches.is_empty(),
                "{}: rows differ from framehop",
                path.display()
            );
        }
    }

    /// One frame by a row, as the kernel walker computes it: `None` at the
    /// end of the stack, else the return address, the caller's rsp and (if
    /// known) rbp.
    fn one_frame(
        row: &UnwindRow,
        ip: u64,
        sp: u64,
        bp: u64,
        read: &dyn Fn(u64) -> u64,
    ) -> Option<(u64, u64, Option<u64>)> {
        let offset = i64::from(row.cfa_offset);
        let cfa = match rule(row) {
            CfaRule::End => return None,
            CfaRule::None => return Some((read(bp + 8), bp + 16, Some(read(bp)))),
            CfaRule::Signal => return Some((read(sp + 168), read(sp + 160), Some(read(sp + 120)))),
            CfaRule::Rsp => sp.wrapping_add_signed(offset),
            CfaRule::Rbp => bp.wrapping_add_signed(offset),
            CfaRule::Plt => {
                let extra = if (ip & 15) >= row.rbp_offset as u64 {
                    8
                } else {
                    0
                };
                sp.wrapping_add_signed(offset) + extra
            }
            CfaRule::RbpDeref => read(bp.wrapping_add_signed(offset)),
            CfaRule::Unsupported => unreachable!("skipped"),
        };
        let bp = match row.rbp_rule {
            r if r == RbpRule::Unchanged as u8 => Some(bp),
            r if r == RbpRule::AtCfa as u8 => {
                Some(read(cfa.wrapping_add_signed(i64::from(row.rbp_offset))))
            }
            r if r == RbpRule::AtRbp as u8 => {
                Some(read(bp.wrapping_add_signed(i64::from(row.rbp_offset))))
            }
            _ => None,
        };
        Some((read(cfa - 8), cfa, bp))
    }

    /// A userspace model of the kernel walker over these tables, compared
    /// with framehop on this very process's stack.
    mod walker {
        use std::{os::unix::fs::FileExt as _, sync::Mutex};

        use object::ObjectSegment as _;
        use profiler_common::unwind::WalkEnd;

        use super::*;
        use crate::{
            procfs::read_mappings,
            unwind::{StackCopy, Unwinder},
        };

        struct Module {
            range: Range<u64>,
            /// `address - pc_adjust` is the row pc.
            pc_adjust: u64,
            /// `None`: walk frame pointers.
            table: Option<std::sync::Arc<UnwindTable>>,
        }

        fn modules() -> Vec<Module> {
            let mappings = read_mappings(std::process::id());
            let mut modules = Vec::new();
            let mut tables: HashMap<String, Option<(u64, std::sync::Arc<UnwindTable>)>> =
                HashMap::new();
            for m in mappings.iter().filter(|m| m.executable) {
                let Some(path) = m.path.as_deref() else {
                    continue;
                };
                let entry = tables.entry(path.to_owned()).or_insert_with(|| {
                    let elf = std::fs::read(path).ok()?;
                    let file = object::File::parse(elf.as_slice()).ok()?;
                    let base_svma = file.segments().map(|s| s.address()).min()? & !0xfff;
                    let base_avma = mappings
                        .iter()
                        .filter(|o| o.path.as_deref() == Some(path) && o.offset == 0)
                        .map(|o| o.start)
                        .min()?;
                    let table = build_table(&elf).expect("table of a mapped binary")?;
                    let bias = base_avma.wrapping_sub(base_svma);
                    Some((bias.wrapping_add(table.base), std::sync::Arc::new(table)))
                });
                modules.push(Module {
                    range: m.start..m.end,
                    pc_adjust: entry.as_ref().map_or(0, |(adjust, _)| *adjust),
                    table: entry.as_ref().map(|(_, table)| table.clone()),
                });
            }
            modules
        }

        /// Walks as the kernel will: `ip` first, then return addresses.
        fn walk(
            modules: &[Module],
            (mut ip, mut sp, bp): (u64, u64, u64),
            read: &dyn Fn(u64) -> Option<u64>,
        ) -> (Vec<u64>, WalkEnd) {
            let mut bp = Some(bp);
            let mut frames = vec![ip];
            // After a call, the return address may be past the caller's
            // last instruction (a call to a noreturn function): look up
            // `ip - 1`. Not after a signal frame: the interrupted ip is
            // exact.
            let mut exact = true;
            while frames.len() < 128 {
                let Some(module) = modules.iter().find(|m| m.range.contains(&ip)) else {
                    return (frames, WalkEnd::NoMapping);
                };
                let lookup = if exact { ip } else { ip - 1 };
                let row = match &module.table {
                    None => plain(CfaRule::None),
                    Some(table) => {
                        let pc = lookup.wrapping_sub(module.pc_adjust) as u32;
                        let after = table.rows.partition_point(|r| r.pc <= pc);
                        match after.checked_sub(1) {
                            Some(i) => table.rows[i],
                            None => plain(CfaRule::None),
                        }
                    }
                };
                exact = false;
                let (ra, new_sp, new_bp) = match rule(&row) {
                    CfaRule::End => return (frames, WalkEnd::Whole),
                    CfaRule::Unsupported => return (frames, WalkEnd::Unsupported),
                    CfaRule::Signal => {
                        // The ucontext at rsp: uc_mcontext at 40, gregs
                        // rbp 10, rsp 15, rip 16.
                        let Some(regs) = [120, 160, 168]
                            .into_iter()
                            .map(|off| read(sp + off))
                            .collect::<Option<Vec<_>>>()
                        else {
                            return (frames, WalkEnd::ReadFailed);
                        };
                        exact = true;
                        (regs[2], regs[1], Some(regs[0]))
                    }
                    CfaRule::None => {
                        let Some(fp) = bp else {
                            return (frames, WalkEnd::RbpUnknown);
                        };
                        let (Some(ra), Some(saved)) = (read(fp + 8), read(fp)) else {
                            return (frames, WalkEnd::ReadFailed);
                        };
                        (ra, fp + 16, Some(saved))
                    }
                    cfa_rule @ (CfaRule::Rsp | CfaRule::Rbp | CfaRule::Plt | CfaRule::RbpDeref) => {
                        let offset = i64::from(row.cfa_offset);
                        let cfa = match cfa_rule {
                            CfaRule::Rbp => {
                                let Some(fp) = bp else {
                                    return (frames, WalkEnd::RbpUnknown);
                                };
                                fp.wrapping_add_signed(offset)
                            }
                            CfaRule::RbpDeref => {
                                let Some(fp) = bp else {
                                    return (frames, WalkEnd::RbpUnknown);
                                };
                                let Some(cfa) = read(fp.wrapping_add_signed(offset)) else {
                                    return (frames, WalkEnd::ReadFailed);
                                };
                                cfa
                            }
                            CfaRule::Plt => {
                                let extra = if (ip & 15) >= row.rbp_offset as u64 {
                                    8
                                } else {
                                    0
                                };
                                sp.wrapping_add_signed(offset) + extra
                            }
                            _ => sp.wrapping_add_signed(offset),
                        };
                        let Some(ra) = read(cfa - 8) else {
                            return (frames, WalkEnd::ReadFailed);
                        };
                        let new_bp = match row.rbp_rule {
                            r if r == RbpRule::AtCfa as u8 => {
                                match read(cfa.wrapping_add_signed(i64::from(row.rbp_offset))) {
                                    Some(saved) => Some(saved),
                                    None => return (frames, WalkEnd::ReadFailed),
                                }
                            }
                            r if r == RbpRule::AtRbp as u8 => {
                                let Some(fp) = bp else {
                                    return (frames, WalkEnd::RbpUnknown);
                                };
                                match read(fp.wrapping_add_signed(i64::from(row.rbp_offset))) {
                                    Some(saved) => Some(saved),
                                    None => return (frames, WalkEnd::ReadFailed),
                                }
                            }
                            r if r == RbpRule::Unchanged as u8 => bp,
                            _ => None,
                        };
                        (ra, cfa, new_bp)
                    }
                };
                if ra == 0 {
                    return (frames, WalkEnd::Whole);
                }
                frames.push(ra);
                (ip, sp, bp) = (ra, new_sp, new_bp);
            }
            (frames, WalkEnd::DepthLimit)
        }

        /// The two walks of one captured stack.
        struct Walks {
            ours: (Vec<u64>, WalkEnd),
            framehop: Vec<u64>,
        }

        /// Captures this thread's registers and stack here, and walks it
        /// both ways.
        #[inline(never)]
        fn capture_and_walk() -> Walks {
            let (ip, sp, bp): (u64, u64, u64);
            // SAFETY: only reads registers.
            unsafe {
                std::arch::asm!(
                    "lea {ip}, [rip]",
                    "mov {sp}, rsp",
                    "mov {bp}, rbp",
                    ip = out(reg) ip,
                    sp = out(reg) sp,
                    bp = out(reg) bp,
                );
            }
            // Frames from `sp` up stay as they are while this function
            // runs (calls use the stack below), so a copy taken now is the
            // stack as it was at the capture.
            let pid = std::process::id();
            let mappings = read_mappings(pid);
            let stack = mappings
                .iter()
                .find(|m| (m.start..m.end).contains(&sp))
                .expect("the stack's mapping");
            let mut bytes = vec![0u8; (stack.end - sp) as usize];
            std::fs::File::open("/proc/self/mem")
                .and_then(|mem| mem.read_exact_at(&mut bytes, sp))
                .expect("read own stack");
            let read = |address: u64| -> Option<u64> {
                let at = usize::try_from(address.checked_sub(sp)?).ok()?;
                let word = bytes.get(at..at.checked_add(8)?)?;
                Some(u64::from_le_bytes(word.try_into().ok()?))
            };
            let ours = walk(&modules(), (ip, sp, bp), &read);
            let mut unwinder = Unwinder::new(pid, 128);
            unwinder.refresh_modules(&mappings);
            let framehop = unwinder.unwind(&StackCopy {
                ip,
                sp,
                bp,
                bytes: &bytes,
            });
            Walks { ours, framehop }
        }

        fn check(what: &str, walks: &Walks) {
            let (ours, end) = &walks.ours;
            eprintln!(
                "{what}: ours {} frames ({end:?}), framehop {}",
                ours.len(),
                walks.framehop.len()
            );
            for (i, (a, b)) in ours.iter().zip(&walks.framehop).enumerate() {
                eprintln!(
                    "  {i:2} {a:#014x} {b:#014x}{}",
                    if a == b { "" } else { "  <-" }
                );
            }
            assert_eq!(ours, &walks.framehop, "{what}: the walks differ");
            assert_eq!(*end, WalkEnd::Whole, "{what}: walk not whole");
            assert!(ours.len() >= 4, "{what}: too short a stack");
        }

        #[test]
        fn own_stack_matches_framehop() {
            check("test thread", &capture_and_walk());
        }

        static FROM_QSORT: Mutex<Option<Walks>> = Mutex::new(None);

        extern "C" fn compare(a: *const libc::c_void, b: *const libc::c_void) -> libc::c_int {
            let mut slot = FROM_QSORT.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(capture_and_walk());
            }
            // SAFETY: qsort passes pointers to the array's u64 elements.
            let (a, b) = unsafe { (*(a as *const u64), *(b as *const u64)) };
            a.cmp(&b) as libc::c_int
        }

        /// Through libc's `qsort` (built without frame pointers): its
        /// frames need the table.
        #[test]
        fn stack_through_libc_matches_framehop() {
            let mut values: Vec<u64> = (0..64u64).map(|i| (i * 37) % 64).collect();
            // SAFETY: a valid array of u64 and a comparator of u64s.
            unsafe {
                libc::qsort(
                    values.as_mut_ptr().cast(),
                    values.len(),
                    std::mem::size_of::<u64>(),
                    Some(compare),
                );
            }
            assert!(values.windows(2).all(|w| w[0] <= w[1]));
            let walks = FROM_QSORT
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("compare ran");
            check("from qsort", &walks);
        }
    }
}
