//! Turning instruction addresses into frames with blazesym: user frames
//! through each recorded process's own mappings, kernel frames from
//! kallsyms, inlined
//! frames expanded and names demangled; and lock words into the variables
//! they are (`data`).
//!
//! One long-lived `Symbolizer` caches parsed binaries. Every address is
//! symbolized once (results are kept by address), in one batch per drain.
//! The target's memory mappings are cached on every drain while it runs, so
//! addresses of a target that exits mid-run still resolve (blazesym then
//! reads the binaries by path instead of through `/proc/PID/map_files`).

use std::{collections::HashMap, rc::Rc};

use blazesym::symbolize::{
    Input, Reason, Symbolized, Symbolizer,
    cache::{Cache, Process as ProcessCache},
    source::{Kernel, Process, Source},
};
use tracing::debug;

use self::{data::DataSymbols, go::GoModules};
use crate::{
    model::{AddrFrames, CodeMapping, Frame, FrameKind, Stack},
    procfs::Mapping,
};

mod data;
mod go;

/// Counts of addresses that could not be named, by reason.
#[derive(Debug, Default, Clone)]
pub struct SymbolizeStats {
    pub user_unknown: HashMap<&'static str, u64>,
    pub kernel_unknown: HashMap<&'static str, u64>,
}

/// Every address and lock word named so far, and the blazesym symbolizer
/// that names new ones.
pub struct Symbols {
    symbolizer: Symbolizer,
    /// What is known of each process's addresses, by tgid.
    processes: HashMap<u32, ProcessSymbols>,
    kernel: HashMap<u64, AddrFrames>,
    /// Variables of the files mapped, by path.
    data_symbols: HashMap<String, Option<DataSymbols>>,
    pub stats: SymbolizeStats,
    /// The Go tables of the Go binaries mapped, by path.
    go: GoModules,
    /// Processes forgotten since the symbolizer was made.
    processes_forgotten: usize,
}

/// After this many processes are forgotten, the symbolizer is made anew.
const SYMBOLIZER_RENEW_AFTER: usize = 256;

fn new_symbolizer() -> Symbolizer {
    Symbolizer::builder()
        .enable_code_info(true)
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .build()
}

/// One process's named addresses and lock words, and its mappings.
#[derive(Default)]
struct ProcessSymbols {
    user: HashMap<u64, AddrFrames>,
    /// Names of lock words (futex addresses), by address.
    locks: HashMap<u64, Rc<str>>,
    /// Its mappings as last read, to name addresses in no symbol.
    mappings: Vec<Mapping>,
    /// User addresses a symbolization left for later (the process exiting
    /// under it): tried again with the next batch.
    retry: Vec<u64>,
}

impl ProcessSymbols {
    /// An unnamed user address in a file mapping gets the file and its
    /// offset there (`[unknown] libfoo.so+0x1a2b`); one in executable
    /// memory no file backs is JIT code (`[jit] 0x7f..`).
    fn place_unknown(&mut self, addr: u64) {
        let unnamed = self.user.get(&addr).is_some_and(|f| {
            f.len() == 1 && f[0].kind == FrameKind::Unknown && f[0].module.is_none()
        });
        if !unnamed {
            return;
        }
        if let Some(m) = self
            .mappings
            .iter()
            .find(|m| m.start <= addr && addr < m.end && m.path.is_some())
            && let Some(path) = &m.path
        {
            let frame = Frame::unknown_in(addr, path, addr - m.start + m.offset);
            self.user.insert(addr, Rc::from(vec![frame]));
        } else if self.mappings.iter().any(|m| {
            m.start <= addr
                && addr < m.end
                && m.executable
                && m.path.is_none()
                && m.name == "[anon]"
        }) {
            self.user.insert(addr, Rc::from(vec![Frame::jit(addr)]));
        }
    }
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols::new()
    }
}

impl Symbols {
    pub fn new() -> Symbols {
        Symbols {
            symbolizer: new_symbolizer(),
            processes_forgotten: 0,
            processes: HashMap::new(),
            kernel: HashMap::new(),
            data_symbols: HashMap::new(),
            stats: SymbolizeStats::default(),
            go: GoModules::default(),
        }
    }

    /// Caches a process's current mappings (call while it runs: when it is
    /// first seen and before each batch, which also picks up libraries
    /// loaded since). `mappings` are the ones just read (an exiting process
    /// shows none: the last real ones are kept).
    pub fn cache_mappings(&mut self, pid: u32, mappings: &[Mapping]) {
        if mappings.is_empty() {
            return;
        }
        self.processes.entry(pid).or_default().mappings = mappings.to_vec();
        let mut cache = ProcessCache::new(pid.into());
        cache.cache_vmas = true;
        if let Err(err) = self.symbolizer.cache(&Cache::Process(cache)) {
            debug!("could not cache the mappings of PID {pid}: {err}");
        }
    }

    /// Whether a process's mappings were ever cached.
    pub fn knows(&self, pid: u32) -> bool {
        self.processes
            .get(&pid)
            .is_some_and(|p| !p.mappings.is_empty())
    }

    /// Keeps the names of only these addresses (those the data kept still
    /// names), and of the processes still alive or named by them, so a long
    /// session's symbols follow what it keeps, not everything it ever saw.
    /// Returns how many addresses were forgotten.
    pub fn retain(
        &mut self,
        user: &std::collections::HashSet<(u32, u64)>,
        kernel: &std::collections::HashSet<u64>,
        keep_process: impl Fn(u32) -> bool,
    ) -> usize {
        let before: usize =
            self.kernel.len() + self.processes.values().map(|p| p.user.len()).sum::<usize>();
        self.kernel.retain(|addr, _| kernel.contains(addr));
        let processes = self.processes.len();
        self.processes.retain(|pid, _| keep_process(*pid));
        self.processes_forgotten += processes - self.processes.len();
        if self.processes_forgotten > SYMBOLIZER_RENEW_AFTER {
            // blazesym keeps what it read of each process cached: a new
            // symbolizer lets those of processes long gone go (binaries
            // still mapped are read again when next needed).
            self.symbolizer = new_symbolizer();
            self.processes_forgotten = 0;
            for (pid, process) in &self.processes {
                let mut cache = ProcessCache::new((*pid).into());
                cache.cache_vmas = true;
                if !process.mappings.is_empty() {
                    let _ = self.symbolizer.cache(&Cache::Process(cache));
                }
            }
        }
        for (pid, process) in &mut self.processes {
            process.user.retain(|addr, _| user.contains(&(*pid, *addr)));
        }
        let after: usize =
            self.kernel.len() + self.processes.values().map(|p| p.user.len()).sum::<usize>();
        before.saturating_sub(after)
    }

    /// Symbolizes every address not seen before, each of its process.
    /// `alive` says whether a process still runs (then
    /// `/proc/PID/map_files` is used).
    pub fn resolve(
        &mut self,
        user_addrs: impl IntoIterator<Item = (u32, u64)>,
        kernel_addrs: impl IntoIterator<Item = u64>,
        alive: impl Fn(u32) -> bool,
    ) {
        let mut by_process: HashMap<u32, Vec<u64>> = HashMap::new();
        for (pid, addr) in user_addrs {
            by_process.entry(pid).or_default().push(addr);
        }
        for (pid, retry) in self
            .processes
            .iter_mut()
            .map(|(pid, p)| (*pid, std::mem::take(&mut p.retry)))
            .collect::<Vec<_>>()
        {
            if !retry.is_empty() {
                by_process.entry(pid).or_default().extend(retry);
            }
        }
        for (pid, addrs) in by_process {
            let mut process = self.processes.remove(&pid).unwrap_or_default();
            self.resolve_user(pid, &mut process, addrs, alive(pid));
            self.processes.insert(pid, process);
        }
        let kernel = unseen(kernel_addrs, &self.kernel);
        if !kernel.is_empty() {
            let source = Source::Kernel(Kernel::default());
            let frames = self.batch(&source, &kernel, FrameKind::Kernel, true);
            for (addr, frames) in kernel.iter().zip(frames) {
                if let Some(frames) = frames {
                    self.kernel.insert(*addr, frames);
                }
            }
        }
    }

    /// Symbolizes one process's new user addresses.
    fn resolve_user(
        &mut self,
        pid: u32,
        process: &mut ProcessSymbols,
        addrs: Vec<u64>,
        alive: bool,
    ) {
        let mut user = unseen(addrs, &process.user);
        // Go's text is named from its own table; the rest by blazesym.
        user.retain(|addr| match self.go.frames(*addr, &process.mappings, pid) {
            Some(frames) => {
                process.user.insert(*addr, frames);
                false
            }
            None => true,
        });
        debug!(pid, fresh = user.len(), alive, "symbolizing user addresses");
        if !user.is_empty() && !alive {
            // The process is gone: symbolize through the files of its last
            // mappings (path and file offset), not through /proc.
            let frames = self.batch_by_file(&process.mappings, &user);
            for (addr, frames) in user.iter().zip(frames) {
                process.user.insert(*addr, frames);
            }
        } else if !user.is_empty() {
            let mut source = Process::new(pid.into());
            source.map_files = alive;
            let source = Source::Process(source);
            // While the process runs, a read error may be it exiting under
            // us: leave those addresses for the final pass, which reads the
            // binaries by path through the cached mappings.
            let frames = self.batch(&source, &user, FrameKind::User, !alive);
            for (addr, frames) in user.iter().zip(frames) {
                match frames {
                    Some(frames) => {
                        process.user.insert(*addr, frames);
                    }
                    None => process.retry.push(*addr),
                }
            }
        }
        for addr in &user {
            process.place_unknown(*addr);
        }
    }

    /// Symbolizes addresses of an exited target through the files of its
    /// last mappings: each address becomes (file, file offset).
    fn batch_by_file(&mut self, mappings: &[Mapping], addrs: &[u64]) -> Vec<AddrFrames> {
        let mut by_file: HashMap<String, Vec<(usize, u64)>> = HashMap::new();
        let mut out: Vec<Option<AddrFrames>> = vec![None; addrs.len()];
        for (i, addr) in addrs.iter().enumerate() {
            match mappings
                .iter()
                .find(|m| m.start <= *addr && *addr < m.end && m.path.is_some())
            {
                Some(m) => by_file
                    .entry(m.path.clone().unwrap_or_default())
                    .or_default()
                    .push((i, addr - m.start + m.offset)),
                None => {
                    *self
                        .stats
                        .user_unknown
                        .entry("address not in any mapping")
                        .or_default() += 1;
                    out[i] = Some(unknown(*addr, FrameKind::User));
                }
            }
        }
        for (path, entries) in by_file {
            let source = Source::Elf(blazesym::symbolize::source::Elf::new(&path));
            let offsets: Vec<u64> = entries.iter().map(|(_, off)| *off).collect();
            let frames = self.batch_input(
                &source,
                Input::FileOffset(&offsets),
                &offsets,
                FrameKind::User,
                true,
            );
            for ((i, _), frames) in entries.into_iter().zip(frames) {
                // Back from file offsets to the process's addresses.
                out[i] = frames.map(|frames| {
                    frames
                        .iter()
                        .map(|f| Frame {
                            addr: addrs[i],
                            ..f.clone()
                        })
                        .collect::<Vec<_>>()
                        .into()
                });
            }
        }
        addrs
            .iter()
            .zip(out)
            .map(|(addr, f)| f.unwrap_or_else(|| unknown(*addr, FrameKind::User)))
            .collect()
    }

    /// Symbolizes a batch. An address that fails with a read error is `None`
    /// (not cached, tried again later) unless this is the `last` try.
    fn batch(
        &mut self,
        source: &Source<'_>,
        addrs: &[u64],
        kind: FrameKind,
        last: bool,
    ) -> Vec<Option<AddrFrames>> {
        self.batch_input(source, Input::AbsAddr(addrs), addrs, kind, last)
    }

    /// [`Symbols::batch`] for any input kind; `addrs` are the inputs.
    fn batch_input(
        &mut self,
        source: &Source<'_>,
        input: Input<&[u64]>,
        addrs: &[u64],
        kind: FrameKind,
        last: bool,
    ) -> Vec<Option<AddrFrames>> {
        let single = |addr: u64| match input {
            Input::AbsAddr(_) => Input::AbsAddr(addr),
            Input::VirtOffset(_) => Input::VirtOffset(addr),
            Input::FileOffset(_) => Input::FileOffset(addr),
        };
        let results = match self.symbolizer.symbolize(source, input) {
            Ok(results) => results,
            // One address blazesym cannot handle (a mapping gone since) fails
            // the whole batch: try each address on its own; those that still
            // fail are counted as unknown below.
            Err(_) => addrs
                .iter()
                .map(|addr| {
                    self.symbolizer
                        .symbolize_single(source, single(*addr))
                        .unwrap_or_else(|err| {
                            debug!("cannot symbolize {addr:#x}: {err}");
                            Symbolized::Unknown(Reason::IgnoredError)
                        })
                })
                .collect(),
        };
        let mut out = Vec::with_capacity(addrs.len());
        for (addr, result) in addrs.iter().zip(results) {
            match result {
                Symbolized::Sym(sym) => {
                    let module: Option<Rc<str>> =
                        sym.module.as_ref().map(|m| m.to_string_lossy().into());
                    let mut frames = Vec::with_capacity(1 + sym.inlined.len());
                    // The outer function's own location is where the first
                    // inlined call sits, or the symbolized line itself.
                    let location = |info: Option<&blazesym::symbolize::CodeInfo<'_>>| {
                        info.map(|c| {
                            (
                                Some(Rc::<str>::from(c.to_path().to_string_lossy().as_ref())),
                                c.line,
                            )
                        })
                        .unwrap_or((None, None))
                    };
                    let outer_location = match sym.inlined.first() {
                        Some(first) => location(first.code_info.as_ref()),
                        None => location(sym.code_info.as_deref()),
                    };
                    frames.push(Frame {
                        name: sym.name.as_ref().into(),
                        kind,
                        addr: *addr,
                        module: module.clone(),
                        file: outer_location.0,
                        line: outer_location.1,
                    });
                    for (i, inlined) in sym.inlined.iter().enumerate() {
                        let (file, line) = match sym.inlined.get(i + 1) {
                            Some(next) => location(next.code_info.as_ref()),
                            None => location(sym.code_info.as_deref()),
                        };
                        frames.push(Frame {
                            name: inlined.name.as_ref().into(),
                            kind: FrameKind::Inlined,
                            addr: *addr,
                            module: module.clone(),
                            file,
                            line,
                        });
                    }
                    out.push(Some(frames.into()));
                }
                Symbolized::Unknown(Reason::IgnoredError) if !last => out.push(None),
                Symbolized::Unknown(reason) => {
                    let why = reason_str(reason);
                    let counts = if kind == FrameKind::Kernel {
                        &mut self.stats.kernel_unknown
                    } else {
                        &mut self.stats.user_unknown
                    };
                    *counts.entry(why).or_default() += 1;
                    out.push(Some(unknown(*addr, kind)));
                }
            }
        }
        out
    }

    /// Names lock words not seen before, each in its process: the
    /// variable an address lies in (a global `pthread_mutex_t g_lock` is
    /// `g_lock`; in a stripped Go binary the runtime variables its code
    /// gives away; a variable of a stripped binary as `file+0xaddress`),
    /// else the mapping (`[heap]`, `[stack]`, a file) and the address.
    pub fn name_locks(&mut self, locks: impl IntoIterator<Item = (u32, u64)>) {
        for (pid, addr) in locks {
            let mut process = self.processes.remove(&pid).unwrap_or_default();
            if !process.locks.contains_key(&addr) {
                let mappings = &process.mappings;
                let variable = self
                    .variable_at(mappings, addr, false)
                    .or_else(|| self.go.variable(addr, mappings))
                    .or_else(|| self.variable_at(mappings, addr, true));
                let name = variable.unwrap_or_else(|| {
                    match mappings.iter().find(|m| m.start <= addr && addr < m.end) {
                        Some(m) => format!("{addr:#x} {}", m.name),
                        None => format!("{addr:#x}"),
                    }
                });
                process.locks.insert(addr, name.into());
            }
            self.processes.insert(pid, process);
        }
    }

    /// The variable of a mapped ELF file at a process address. The load bias
    /// comes from the file's mapping at offset 0; `.bss` past the file's
    /// bytes (in an anonymous mapping) is covered too.
    /// With `unnamed`, an address in a file's variables that no symbol
    /// names is named by the file and its address there.
    fn variable_at(&mut self, mappings: &[Mapping], addr: u64, unnamed: bool) -> Option<String> {
        let bases: Vec<(String, u64)> = mappings
            .iter()
            .filter(|m| m.offset == 0)
            .filter_map(|m| Some((m.path.clone()?, m.start)))
            .collect();
        for (path, base) in bases {
            if base > addr {
                continue;
            }
            let symbols = self
                .data_symbols
                .entry(path.clone())
                .or_insert_with(|| DataSymbols::read(&path));
            let Some(symbols) = symbols else { continue };
            let vaddr = addr - base + symbols.first_load;
            if vaddr < symbols.last_load_end {
                if let Some(name) = symbols.name(vaddr) {
                    return Some(name);
                }
                // A variable with no symbol (a stripped binary): named by
                // the file and its address there, which stay the same from
                // run to run (where the mapping's `[anon]` would not say
                // whose it is).
                if unnamed {
                    let file = path.rsplit('/').next().unwrap_or(&path);
                    return Some(format!("{file}+{vaddr:#x}"));
                }
            }
        }
        None
    }

    /// The executable file mappings of a process as last read, for
    /// pprof's mapping table.
    pub fn code_mappings(&self, pid: u32) -> Vec<CodeMapping> {
        let Some(process) = self.processes.get(&pid) else {
            return Vec::new();
        };
        process
            .mappings
            .iter()
            .filter(|m| m.executable)
            .filter_map(|m| {
                Some(CodeMapping {
                    path: m.path.as_deref()?.into(),
                    start: m.start,
                    limit: m.end,
                    offset: m.offset,
                })
            })
            .collect()
    }

    /// The name of a lock word of a process (after
    /// [`Symbols::name_locks`]).
    pub fn lock_name(&self, pid: u32, addr: u64) -> Rc<str> {
        self.processes
            .get(&pid)
            .and_then(|p| p.locks.get(&addr))
            .cloned()
            .unwrap_or_else(|| format!("{addr:#x}").into())
    }

    /// A stack's frames, root first (the kernel records them leaf first),
    /// every address having been given to [`Symbols::resolve`]; a lost
    /// stack is one frame that says why. `pid` is the process of a user
    /// stack.
    pub fn frames(&self, pid: u32, stack: &Stack, user: bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        match stack {
            Stack::Frames(_) => {
                for addr in stack.lookup_addrs().into_iter().rev() {
                    let named = if user {
                        self.user_frames(pid, addr)
                    } else {
                        self.kernel_frames(addr)
                    };
                    frames.extend(named.iter().cloned());
                }
            }
            Stack::Empty => {}
            Stack::Lost(loss) => frames.push(Frame::lost(loss.frame_name(user))),
        }
        frames
    }

    /// Names the Go code of `path` from `binary` (already read).
    pub fn add_go_binary(&mut self, path: &str, binary: std::rc::Rc<crate::go::GoBinary>) {
        self.go.insert(path, binary);
    }

    /// The frames of a user address of a process (after
    /// [`Symbols::resolve`]).
    pub fn user_frames(&self, pid: u32, addr: u64) -> AddrFrames {
        self.processes
            .get(&pid)
            .and_then(|p| p.user.get(&addr))
            .cloned()
            .unwrap_or_else(|| unknown(addr, FrameKind::User))
    }

    /// The frames of a kernel address (after [`Symbols::resolve`]).
    pub fn kernel_frames(&self, addr: u64) -> AddrFrames {
        self.kernel
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| unknown(addr, FrameKind::Kernel))
    }
}

/// The addresses not in `cache`, sorted and without repeats.
fn unseen<V>(addrs: impl IntoIterator<Item = u64>, cache: &HashMap<u64, V>) -> Vec<u64> {
    let mut fresh: Vec<u64> = addrs
        .into_iter()
        .filter(|a| !cache.contains_key(a))
        .collect();
    fresh.sort_unstable();
    fresh.dedup();
    fresh
}

fn unknown(addr: u64, kind: FrameKind) -> AddrFrames {
    Rc::from(vec![Frame::unknown(addr, kind == FrameKind::Kernel)])
}

fn reason_str(reason: Reason) -> &'static str {
    match reason {
        Reason::Unmapped => "address not in any mapping",
        Reason::InvalidFileOffset => "invalid file offset",
        Reason::MissingComponent => "binary or component missing",
        Reason::MissingSyms => "binary has no symbols (stripped)",
        Reason::Unsupported => "unsupported mapping",
        Reason::UnknownAddr => "address not covered by any symbol",
        Reason::IgnoredError => "error reading the binary",
        _ => "other",
    }
}
