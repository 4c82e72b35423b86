//! The `profiler` library: attach eBPF programs to a process, collect what
//! they see, unwind and symbolize it, and write profiles. The `profiler`
//! binary parses flags and calls [`commands`]; tests drive the rest
//! in-process.
//!
//! The path of one event, room by room, from the kernel to a file:
//!
//! 1. [`attach`] loads the programs (`profiler-ebpf`) for a [`target`]; they
//!    write one event shape, `profiler_common::event::EventKey`.
//! 2. [`sources`] read the kernel's maps and rings into
//!    [`model::Event`]s; [`unwind`] prepares the tables the kernel walks
//!    user stacks with (and unwinds copied stacks, `--unwind copy`).
//! 3. [`aggregate`] sums events by shape, takes differences and folds
//!    exited threads.
//! 4. [`symbolize`] names the new addresses and lock words; [`threads`]
//!    names the threads.
//! 5. [`snapshot`] builds [`model::Profile`]s and summaries from the
//!    aggregate, with the Go runtime's rules from [`go`].
//! 6. [`formats`] write profiles (folded, SVG, pprof, speedscope).
//!
//! [`session`] keeps one target attached and runs stages 2–4 on its ticks;
//! the [`commands`] (`record`, `serve`) drive a session and render its
//! snapshots; `dump` renders what [`inspect`] reads of a live process. [`model`] is the ground floor every room stands on;
//! [`procfs`] reads /proc for those that need it; [`mapped`] holds
//! binaries' bytes in place.

pub mod aggregate;
pub mod attach;
pub mod btf;
pub mod commands;
pub mod compare;
pub mod formats;
pub mod go;
pub mod inspect;
pub mod mapped;
pub mod model;
pub mod processes;
pub mod procfs;
pub mod session;
pub mod snapshot;
pub mod sources;
pub mod symbolize;
pub mod target;
pub mod threads;
pub mod unwind;
