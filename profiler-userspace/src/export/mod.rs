//! Writing a [`Profile`](crate::profile::Profile) out in the formats other
//! tools read. Each format is a submodule with one `write` function.

pub mod folded;
