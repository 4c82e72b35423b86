//! The commands, side by side, each a thin driver: `record` runs a
//! [`crate::session`] to files and a report, `serve` keeps one attached and
//! serves it over HTTP, `dump` reads what a process is doing right now
//! ([`crate::inspect`], and a Go program's goroutines), `goroutines` watches
//! a Go program's goroutines for leaks.

pub mod diff;
pub mod dump;
pub mod go_heap;
pub mod goroutines;
mod output;
pub mod record;
mod report;
pub mod serve;
pub mod top;
