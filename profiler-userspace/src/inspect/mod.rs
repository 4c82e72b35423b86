//! What a live process is doing right now, read from outside without
//! stopping it (no ptrace, no eBPF): each thread's state, the system call
//! it is in, and its user stack unwound from its memory. `profiler dump`
//! renders it.

mod threads;

pub use threads::{Activity, ThreadDump, read_threads, syscall_name};
