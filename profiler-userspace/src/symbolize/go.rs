//! Go binaries named from their own table, `.gopclntab` (see
//! [`crate::go::pclntab`]), stripped or not: blazesym cannot read it, and
//! with it a stripped build names the same functions, files, lines and
//! inlined frames as its unstripped twin. Each mapped file is checked once;
//! addresses in Go's text resolve here, everything else (C code of a cgo
//! binary, libraries) goes on to blazesym.

use std::{collections::HashMap, rc::Rc};

use tracing::debug;

use crate::{
    go::GoBinary,
    model::{AddrFrames, Frame},
    procfs::Mapping,
};

/// The Go binaries mapped by the target, by path (`None`: not Go, or
/// unreadable).
#[derive(Default)]
pub struct GoModules {
    by_path: HashMap<String, Option<Rc<GoBinary>>>,
}

impl GoModules {
    /// Uses a binary already read (the target's executable).
    pub fn insert(&mut self, path: &str, binary: Rc<GoBinary>) {
        self.by_path.insert(path.to_owned(), Some(binary));
    }

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
            .map(|f| f.into_frame(addr, Some(module_name.clone())))
            .collect();
        (!frames.is_empty()).then(|| frames.into())
    }
}

impl GoModules {
    /// The Go runtime variable at a process address, as `name+0xoff`, in
    /// any Go binary read so far (a stripped one's `.bss` is often mapped
    /// anonymously, past the file: see `go::data`).
    pub fn variable(&self, addr: u64, mappings: &[Mapping]) -> Option<String> {
        self.by_path.iter().find_map(|(path, binary)| {
            let binary = binary.as_ref()?;
            let base = mappings
                .iter()
                .filter(|m| m.path.as_deref() == Some(path.as_str()) && m.offset == 0)
                .map(|m| m.start)
                .min()?;
            let vaddr = addr.checked_sub(base)?.checked_add(binary.first_load)?;
            binary.variable_at(vaddr)
        })
    }
}

/// Reads a mapped file's Go tables, if it is a Go binary (through the
/// process's own view of its files, a container's included).
fn load(path: &str, pid: u32) -> Option<GoBinary> {
    let seen = format!("/proc/{pid}/root{path}");
    let read = GoBinary::read(&seen).or_else(|_| GoBinary::read(path));
    match read {
        Ok(binary) => binary,
        Err(err) => {
            debug!("cannot read the Go symbol table of {path}: {err}");
            None
        }
    }
}
