//! Unwinding copied user stacks in userspace (`--unwind dwarf|auto`): an
//! event brings the thread's `rip`, `rsp`, `rbp` and a copy of its stack;
//! framehop walks it with each binary's `.eh_frame` call-frame information
//! (falling back to frame pointers where a binary has none), so code built
//! without frame pointers — glibc, `-O2` C, Rust release builds — gives
//! whole stacks. Modules come from `/proc/PID/maps` and are re-read when a
//! frame lands outside every known module (a library loaded since).

pub mod kernel;
pub mod tables;

use std::{collections::HashMap, ops::Range};

use framehop::{
    ExplicitModuleSectionInfo, Module, Unwinder as _,
    x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64},
};
use object::{Object as _, ObjectSection as _, ObjectSegment as _};

use crate::{
    mapped::Bytes,
    procfs::{Mapping, read_mappings},
};

/// A copy of a thread's user stack from `sp` up, with the registers the
/// walk starts from.
pub struct StackCopy<'a> {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
    /// The copied bytes, from `sp` up.
    pub bytes: &'a [u8],
}

/// Why an unwound stack stopped before its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Truncation {
    /// The depth limit (`--max-depth`) was reached.
    DepthLimit,
    /// The walk left the copied part of the stack (a deep stack).
    StackCopyEnd,
    /// A frame's address is in no known code (JIT code, or no mapping).
    NoCode,
    /// framehop stopped for another reason (a bad frame pointer, a loop).
    Other,
}

impl Truncation {
    pub const ALL: [Truncation; 4] = [
        Truncation::DepthLimit,
        Truncation::StackCopyEnd,
        Truncation::NoCode,
        Truncation::Other,
    ];

    /// The reason as a metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Truncation::DepthLimit => "depth_limit",
            Truncation::StackCopyEnd => "stack_copy_end",
            Truncation::NoCode => "no_code",
            Truncation::Other => "unwind_stopped",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Truncation::DepthLimit => "stack truncated at the depth limit (--max-depth)",
            Truncation::StackCopyEnd => "stack truncated: deeper than the copied 16 KiB of stack",
            Truncation::NoCode => "stack truncated: a frame in code with no mapping (JIT?)",
            Truncation::Other => "stack truncated: unwinding stopped (bad frame or loop)",
        }
    }
}

/// What the unwinder did so far.
#[derive(Debug, Clone, Default)]
pub struct UnwindStats {
    /// Stacks unwound, and those cut short by reason.
    pub unwound: u64,
    pub truncated: HashMap<Truncation, u64>,
    /// Bytes of unwind and text sections the modules use (mapped from
    /// their files, not copied).
    pub table_bytes: usize,
}

/// The unwinder of one process.
pub struct Unwinder {
    pid: u32,
    unwinder: UnwinderX86_64<Bytes>,
    cache: CacheX86_64,
    /// Modules added, by path, with their address range.
    modules: HashMap<String, Range<u64>>,
    max_depth: usize,
    stats: UnwindStats,
}

impl Unwinder {
    pub fn new(pid: u32, max_depth: usize) -> Unwinder {
        Unwinder {
            pid,
            unwinder: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
            modules: HashMap::new(),
            max_depth,
            stats: UnwindStats::default(),
        }
    }

    pub fn stats(&self) -> &UnwindStats {
        &self.stats
    }

    /// The deepest stack it takes.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Adds the modules among `mappings` (just read) that are not known yet.
    pub fn refresh_modules(&mut self, mappings: &[Mapping]) {
        // Per file: the start of its offset-0 mapping (the load base) and
        // the range its executable mappings cover.
        let mut files: HashMap<&str, (Option<u64>, (u64, u64))> = HashMap::new();
        for m in mappings {
            let Some(path) = m.path.as_deref() else {
                continue;
            };
            let entry = files.entry(path).or_insert((None, (u64::MAX, 0)));
            if m.offset == 0 {
                entry.0 = Some(entry.0.map_or(m.start, |b: u64| b.min(m.start)));
            }
            if m.executable {
                entry.1 = (entry.1.0.min(m.start), entry.1.1.max(m.end));
            }
        }
        if let Some(vdso) = mappings.iter().find(|m| m.name == "[vdso]") {
            self.add_vdso(vdso.start..vdso.end);
        }
        for (path, (base, (code_start, code_end))) in files {
            let code = code_start..code_end;
            let (Some(base), false) = (base, code.is_empty()) else {
                continue;
            };
            if self.modules.get(path) == Some(&code) {
                continue;
            }
            if let Some(module) = self.load_module(path, base, code.clone()) {
                self.unwinder.add_module(module);
                self.modules.insert(path.to_owned(), code);
            }
        }
    }

    /// Adds the vDSO (the kernel's small shared object for clock_gettime
    /// and friends), read from the target's memory: it is in no file.
    fn add_vdso(&mut self, range: Range<u64>) {
        let (start, end) = (range.start, range.end);
        if self.modules.get("[vdso]") == Some(&(start..end)) {
            return;
        }
        let Some(image) = crate::procfs::read_range(self.pid, start..end) else {
            return;
        };
        if let Some(module) = self.module_from(&Bytes::from(image), start, start..end, "[vdso]") {
            self.unwinder.add_module(module);
            self.modules.insert("[vdso]".to_owned(), start..end);
        }
    }

    /// Reads a binary's unwind sections. The module's addresses: `base` is
    /// where its lowest loadable segment sits in the process.
    fn load_module(&mut self, path: &str, base: u64, code: Range<u64>) -> Option<Module<Bytes>> {
        // Through the process's own view of the file where possible (a
        // container's or a deleted binary), else the path.
        let data = Bytes::map(format!("/proc/{}/root{path}", self.pid))
            .or_else(|_| Bytes::map(path))
            .ok()?;
        self.module_from(&data, base, code, path)
    }

    /// A module from an ELF image; `base` is where its lowest loadable
    /// segment sits in the process, `code` the range its code covers.
    fn module_from(
        &mut self,
        data: &Bytes,
        base: u64,
        code: Range<u64>,
        name: &str,
    ) -> Option<Module<Bytes>> {
        let file = object::File::parse(&**data).ok()?;
        let base_svma = file.segments().map(|s| s.address()).min().unwrap_or(0) & !0xfff;
        let section = |name: &str| {
            let s = file.section_by_name(name)?;
            let range = s.address()..s.address() + s.size();
            // In place in the mapped file; a compressed section is inflated.
            let bytes = match s.uncompressed_data().ok()? {
                std::borrow::Cow::Borrowed(part) => data.within_or_copy(part),
                std::borrow::Cow::Owned(inflated) => Bytes::from(inflated),
            };
            Some((range, bytes))
        };
        let text = section(".text");
        let eh_frame = section(".eh_frame");
        let eh_frame_hdr = section(".eh_frame_hdr");
        let debug_frame = section(".debug_frame");
        let got = file
            .section_by_name(".got")
            .map(|s| s.address()..s.address() + s.size());
        self.stats.table_bytes += [&text, &eh_frame, &eh_frame_hdr, &debug_frame]
            .iter()
            .map(|s| s.as_ref().map_or(0, |(_, b)| b.len()))
            .sum::<usize>();
        let info = ExplicitModuleSectionInfo {
            base_svma,
            text_svma: text.as_ref().map(|(r, _)| r.clone()),
            text: text.map(|(_, b)| b),
            got_svma: got,
            eh_frame_svma: eh_frame.as_ref().map(|(r, _)| r.clone()),
            eh_frame: eh_frame.map(|(_, b)| b),
            eh_frame_hdr_svma: eh_frame_hdr.as_ref().map(|(r, _)| r.clone()),
            eh_frame_hdr: eh_frame_hdr.map(|(_, b)| b),
            debug_frame: debug_frame.map(|(_, b)| b),
            ..Default::default()
        };
        Some(Module::new(name.to_owned(), code, base, info))
    }

    fn known(&self, addr: u64) -> bool {
        self.modules.values().any(|r| r.contains(&addr))
    }

    /// The user stack of a copy: instruction pointer first, then return
    /// addresses, as far as the walk goes.
    pub fn unwind(&mut self, copy: &StackCopy<'_>) -> Vec<u64> {
        if !self.known(copy.ip) {
            self.refresh_modules(&read_mappings(self.pid));
        }
        let sp = copy.sp;
        let len = copy.bytes.len() as u64;
        let stack = copy.bytes;
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let offset = addr.checked_sub(sp).ok_or(())?;
            if offset + 8 > len {
                return Err(());
            }
            let at = offset as usize;
            let bytes: [u8; 8] = stack
                .get(at..at + 8)
                .ok_or(())?
                .try_into()
                .map_err(|_| ())?;
            Ok(u64::from_le_bytes(bytes))
        };
        let regs = UnwindRegsX86_64::new(copy.ip, copy.sp, copy.bp);
        let mut frames = Vec::new();
        let mut iter = self
            .unwinder
            .iter_frames(copy.ip, regs, &mut self.cache, &mut read_stack);
        let truncation = loop {
            if frames.len() >= self.max_depth {
                break Some(Truncation::DepthLimit);
            }
            match iter.next() {
                Ok(Some(frame)) => frames.push(frame.address()),
                Ok(None) => break None,
                Err(framehop::Error::CouldNotReadStack(_)) => break Some(Truncation::StackCopyEnd),
                Err(_) => break Some(Truncation::Other),
            }
        };
        // A last frame outside every module means the walk went astray.
        let truncation = match frames.last() {
            Some(&last) if frames.len() > 1 && !self.known(last) => {
                frames.pop();
                Some(Truncation::NoCode)
            }
            _ => truncation,
        };
        self.stats.unwound += 1;
        if let Some(why) = truncation {
            *self.stats.truncated.entry(why).or_default() += 1;
        }
        frames
    }
}
