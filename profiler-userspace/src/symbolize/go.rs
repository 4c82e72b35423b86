//! Go binaries named from their own table, `.gopclntab` (see
//! [`crate::go::pclntab`]), stripped or not: blazesym cannot read it, and
//! with it a stripped build names the same functions, files, lines and
//! inlined frames as its unstripped twin. Each mapped file is checked once;
//! addresses in Go's text resolve here, everything else (C code of a cgo
//! binary, libraries) goes on to blazesym.

use std::{collections::HashMap, rc::Rc};

use object::{Object as _, ObjectSegment as _};
use tracing::debug;

use crate::{
    go::pclntab::Pclntab,
    model::{AddrFrames, Frame, FrameKind},
    procfs::Mapping,
};

/// The Go table of one mapped binary, and where its lowest segment loads.
struct GoModule {
    table: Pclntab,
    /// The lowest loadable address of the ELF file (page-aligned).
    first_load: u64,
}

/// The Go tables of the target's binaries, by path (`None`: not Go, or
/// unreadable).
#[derive(Default)]
pub struct GoModules {
    by_path: HashMap<String, Option<Rc<GoModule>>>,
}

impl GoModules {
    /// The frames at a process address, when it lies in the Go text of a
    /// mapped Go binary; `pid` is the process (its files are read through
    /// `/proc/PID/root`, which sees a container's files).
    pub fn frames(&mut self, addr: u64, mappings: &[Mapping], pid: u32) -> Option<AddrFrames> {
        let mapping = mappings
            .iter()
            .find(|m| m.start <= addr && addr < m.end && m.path.is_some())?;
        let path = mapping.path.as_deref()?;
        let module = self
            .by_path
            .entry(path.to_owned())
            .or_insert_with(|| load(path, pid).map(Rc::new))
            .clone()?;
        // The load bias: where the file's first page is mapped, against
        // where the file says it loads.
        let base = mappings
            .iter()
            .filter(|m| m.path.as_deref() == Some(path) && m.offset == 0)
            .map(|m| m.start)
            .min()?;
        let vaddr = addr.checked_sub(base)?.checked_add(module.first_load)?;
        let frames = module.table.frames(vaddr)?;
        let module_name: Rc<str> = path.into();
        let frames: Vec<Frame> = frames
            .into_iter()
            .map(|f| Frame {
                name: f.function.into(),
                kind: if f.inlined {
                    FrameKind::Inlined
                } else {
                    FrameKind::User
                },
                addr,
                module: Some(module_name.clone()),
                file: f.file.map(Into::into),
                line: f.line,
            })
            .collect();
        (!frames.is_empty()).then(|| frames.into())
    }
}

/// Reads the Go table of a file, if it is a Go binary.
fn load(path: &str, pid: u32) -> Option<GoModule> {
    let data = std::fs::read(format!("/proc/{pid}/root{path}"))
        .or_else(|_| std::fs::read(path))
        .ok()?;
    let file = object::File::parse(&*data).ok()?;
    if !crate::go::buildinfo::is_go(&file) {
        return None;
    }
    let table = match Pclntab::parse(&file) {
        Ok(Some(table)) => table,
        Ok(None) => return None,
        Err(err) => {
            debug!("cannot read the Go symbol table of {path}: {err}");
            return None;
        }
    };
    let first_load = file.segments().map(|s| s.address()).min().unwrap_or(0) & !0xfff;
    Some(GoModule { table, first_load })
}
