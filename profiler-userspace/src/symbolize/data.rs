//! The variables of mapped ELF files, for naming lock words: a global
//! `pthread_mutex_t g_lock` is `g_lock`, a Rust `static LOCK` is
//! `crate::LOCK`. (blazesym finds variables too, but translates addresses
//! only within a segment's file bytes, and `.bss` lies past them.)

/// The data symbols (variables) of one ELF file, sorted by address, and the
/// lowest address it loads at.
#[derive(Debug, Default)]
pub struct DataSymbols {
    pub first_load: u64,
    pub last_load_end: u64,
    /// (address, size, name), sorted by address.
    symbols: Vec<(u64, u64, String)>,
}

impl DataSymbols {
    /// Reads the variables of an ELF file from its symbol tables.
    /// (blazesym finds variables too, but translates addresses only within a
    /// segment's file bytes, and `.bss` lies past them.)
    pub fn read(path: &str) -> Option<DataSymbols> {
        use object::{Object as _, ObjectSegment as _, ObjectSymbol as _, SymbolKind};
        let data = std::fs::read(path).ok()?;
        let file = object::File::parse(&*data).ok()?;
        let mut first_load = u64::MAX;
        let mut last_load_end = 0;
        for segment in file.segments() {
            first_load = first_load.min(segment.address());
            last_load_end = last_load_end.max(segment.address() + segment.size());
        }
        let mut symbols: Vec<(u64, u64, String)> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Data && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned())))
            .collect();
        symbols.sort();
        symbols.dedup_by(|a, b| a.0 == b.0);
        Some(DataSymbols {
            first_load: first_load & !0xfff,
            last_load_end,
            symbols,
        })
    }

    /// The variable containing the file address, as `name` or `name+0xoff`.
    pub fn name(&self, vaddr: u64) -> Option<String> {
        let i = self
            .symbols
            .partition_point(|(a, _, _)| *a <= vaddr)
            .checked_sub(1)?;
        let (addr, size, name) = &self.symbols[i];
        let offset = vaddr - addr;
        if offset >= (*size).max(1) {
            return None;
        }
        let name = demangle(name);
        Some(if offset == 0 {
            name
        } else {
            format!("{name}+{offset:#x}")
        })
    }
}

/// Demangles a Rust or C++ symbol name (as blazesym does for functions).
fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if let Ok(sym) = cpp_demangle::Symbol::new(name)
        && let Ok(d) = sym.demangle()
    {
        return d;
    }
    name.to_owned()
}
