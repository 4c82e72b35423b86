//! Comparing two profiles (`profiler diff`, `record --compare`): what
//! changed ([`diff`]), the gates a CI run holds the change to ([`gates`]),
//! and the change shown as a table, JSON or a differential flamegraph
//! ([`render`]). Profiles come in through [`crate::formats::read`].

pub mod diff;
pub mod gates;
pub mod render;

pub use diff::{Diff, DiffOptions, diff};
pub use gates::Gate;
