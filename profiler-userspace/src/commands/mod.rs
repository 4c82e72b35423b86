//! The commands, side by side, each a thin driver over a [`crate::session`]:
//! `record` runs one to files and a report, `serve` keeps one attached and
//! serves it over HTTP.

pub mod record;
mod report;
pub mod serve;
