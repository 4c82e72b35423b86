//! A named frame of a stack, as every format writes it.

use std::rc::Rc;

/// What kind of code a frame is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    User,
    Kernel,
    /// A function inlined into its caller (one address, several frames).
    Inlined,
    /// Code that could not be named.
    Unknown,
    /// A marker frame standing for a lost stack.
    Lost,
    /// A structural frame of a profile (a lock, `[blocked]`, `--`, a
    /// waker): text in folded output, labels in pprof.
    Marker,
}

/// One symbolized frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    pub name: Rc<str>,
    pub kind: FrameKind,
    /// The address looked up (0 for markers); the frames of one address
    /// (a function and those inlined into it) share it.
    pub addr: u64,
    /// The binary (path) the frame is in, when known.
    pub module: Option<Rc<str>>,
    /// Source file and line, when debug info has them.
    pub file: Option<Rc<str>>,
    pub line: Option<u32>,
}

impl Frame {
    /// A frame standing for a lost stack.
    pub fn lost(name: String) -> Frame {
        Frame {
            name: name.into(),
            kind: FrameKind::Lost,
            addr: 0,
            module: None,
            file: None,
            line: None,
        }
    }

    /// A structural frame (a lock, `[blocked]`, `--`, a waker).
    pub fn marker(name: String) -> Frame {
        Frame {
            kind: FrameKind::Marker,
            ..Frame::lost(name)
        }
    }

    /// A frame of code that could not be named.
    pub fn unknown(addr: u64, kernel: bool) -> Frame {
        let name = if kernel {
            format!("[unknown kernel {addr:#x}]")
        } else {
            "[unknown]".to_owned()
        };
        Frame {
            addr,
            kind: FrameKind::Unknown,
            ..Frame::lost(name)
        }
    }

    /// A frame of code that could not be named, in a known file: shown as
    /// `[unknown] libfoo.so+0x1a2b` (the file's name and the file offset),
    /// so it can be named later (debug info installed, another symbolizer).
    pub fn unknown_in(addr: u64, path: &str, file_offset: u64) -> Frame {
        let file = path.rsplit('/').next().unwrap_or(path);
        Frame {
            name: format!("[unknown] {file}+{file_offset:#x}").into(),
            addr,
            kind: FrameKind::Unknown,
            module: Some(path.into()),
            file: None,
            line: None,
        }
    }

    /// A frame in executable memory that no file backs (code a JIT wrote):
    /// `[jit] 0x7f..`; the in-kernel walker's stack ends there (it has no
    /// call-frame information for it).
    pub fn jit(addr: u64) -> Frame {
        Frame {
            addr,
            kind: FrameKind::Unknown,
            ..Frame::lost(format!("[jit] {addr:#x}"))
        }
    }

    /// Whether the frame is the program's own code (a user function or one
    /// inlined into it).
    pub fn is_user_code(&self) -> bool {
        matches!(self.kind, FrameKind::User | FrameKind::Inlined)
    }
}

/// Frames of one address, outermost (caller) first: the function, then the
/// functions inlined into it down to the innermost.
pub type AddrFrames = Rc<[Frame]>;
