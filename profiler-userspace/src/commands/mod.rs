//! The commands, side by side, each a thin driver: `record` runs a
//! [`crate::session`] to files and a report, `serve` keeps one attached and
//! serves it over HTTP, `dump` reads what a process is doing right now
//! ([`crate::inspect`]).

pub mod dump;
mod output;
pub mod record;
mod report;
pub mod serve;
