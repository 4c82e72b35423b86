//! Exists so that `profiler-userspace` can name this crate as a build dependency
//! (cargo then rebuilds the embedded object when the kernel side changes).
#![no_std]
