//! The profiler's kernel side: a perf-event program that samples on-CPU
//! stacks of one process, scheduler tracepoints that time its off-CPU
//! intervals (with who woke it), futex syscall tracepoints that time its
//! lock waits by lock address, and uprobes on the Go runtime that time a Go
//! program's goroutine waits. Everything is counted in the kernel.
//!
//! Every event is filtered by the target's tgid before anything else is
//! done (`target`); only the target's events touch the maps. Each program
//! ends in the one event shape, `profiler_common::event::EventKey`, summed
//! per key in a double-buffered aggregation map, its user stack walked in
//! the kernel from `.eh_frame` tables (`unwind`, the default) or by frame
//! pointers; with `--unwind copy` the event is sent instead with a copy of
//! the user stack through a ring buffer for userspace to unwind
//! (`shared::send_copy`). Every failure is counted in a per-CPU counter,
//! and an event whose stack could not be taken is still counted under a
//! negative stack id that says why.
//!
//! Rooms: `maps` (every map and global), `shared` (helpers every program
//! uses), `target` (the filter, arming, thread names), `unwind` (the DWARF
//! walker), then one file per concern: `cpu`, `offcpu`, `futex`, `gowait`
//! (uprobes on the Go runtime).
#![no_std]
#![no_main]

mod cpu;
mod futex;
mod gowait;
mod maps;
mod offcpu;
mod shared;
mod target;
mod unwind;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
