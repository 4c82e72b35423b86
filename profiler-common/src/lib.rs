//! Types shared by the kernel side (`profiler-ebpf`) and userspace: the one
//! event shape every program writes (map keys and ring records alike), the
//! names and sizes of maps and globals, counters, and the per-concern state
//! the programs keep between two events (off-CPU, futex, Go waits).
//!
//! Every struct is `#[repr(C)]` and padding-free (fields laid out without
//! gaps), so the bytes the kernel writes are the bytes userspace reads.
//! Modes and kinds are `#[repr(u32)]` enums; a struct field holding one is a
//! plain `u32` (every bit pattern of a map value must be valid), read back
//! with the enum's `from_u32`.
#![cfg_attr(not(test), no_std)]

pub mod control;
pub mod counters;
pub mod event;
pub mod futex;
pub mod gowait;
pub mod maps;
pub mod offcpu;
pub mod stacks;
pub mod unwind;
