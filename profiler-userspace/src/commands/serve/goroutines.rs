//! A Go target's goroutines in `serve`: read for the metrics after drains
//! (less often when one read takes long, so a program with a hundred
//! thousand goroutines is not read back to back), and on request for
//! `/debug/pprof/goroutine`, in Go's three renderings.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::http::ProfileReply;
use crate::{
    formats,
    go::{
        self,
        goroutines::GoRuntime,
        listing::{self, GoroutineCounts},
    },
    session::unix_ns,
};

/// A read of the goroutines for the metrics takes at most this share of
/// the time between two.
const SHARE: u32 = 10;
/// Reads for the metrics are at least this far apart.
const MIN_EVERY: Duration = Duration::from_secs(1);

/// A Go target's goroutines, as last counted.
pub struct GoWatch {
    runtime: GoRuntime,
    name: String,
    executable: Option<String>,
    counts: Option<GoroutineCounts>,
    next: Instant,
}

impl GoWatch {
    /// Prepares to read the goroutines of `pid` if it is a Go program; says
    /// why not when it is one whose goroutines cannot be read.
    pub fn open(pid: u32, name: &str) -> Option<GoWatch> {
        let exe = format!("/proc/{pid}/exe");
        if !go::is_go_executable(std::path::Path::new(&exe)) {
            return None;
        }
        match GoRuntime::for_process(pid) {
            Ok(runtime) => {
                let (major, minor) = runtime.version();
                info!(
                    "{name} is a Go {major}.{minor} program: /debug/pprof/goroutine and the goroutine metrics are served"
                );
                Some(GoWatch {
                    runtime,
                    name: name.to_owned(),
                    executable: std::fs::read_link(&exe)
                        .ok()
                        .map(|p| p.to_string_lossy().into_owned()),
                    counts: None,
                    next: Instant::now(),
                })
            }
            Err(err) => {
                warn!("{name} is a Go program whose goroutines cannot be read: {err}");
                None
            }
        }
    }

    /// Counts the goroutines again when it is time to.
    pub fn refresh(&mut self) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        match self.runtime.snapshot() {
            Ok(snapshot) => {
                self.counts = Some(listing::counts(&self.runtime, &snapshot));
                self.next = now + (now.elapsed() * SHARE).max(MIN_EVERY);
            }
            Err(err) => {
                warn!("cannot read the goroutines of {}: {err}", self.name);
                self.counts = None;
                self.next = now + MIN_EVERY;
            }
        }
    }

    /// The goroutines as last counted.
    pub fn counts(&self) -> Option<&GoroutineCounts> {
        self.counts.as_ref()
    }

    /// The goroutine profile now, in Go's `debug` rendering.
    pub fn reply(&self, debug: u8) -> ProfileReply {
        let taken = unix_ns();
        let snapshot = match self.runtime.snapshot() {
            Ok(snapshot) => snapshot,
            Err(err) => {
                return ProfileReply::Failed(format!("cannot read the goroutines: {err}"));
            }
        };
        match debug {
            1 => ProfileReply::Text(listing::debug1(&self.runtime, &snapshot)),
            2 => ProfileReply::Text(listing::debug2(&self.runtime, &snapshot)),
            _ => {
                let profile = listing::profile(
                    &self.runtime,
                    &snapshot,
                    &self.name,
                    self.executable.as_deref(),
                );
                let mut bytes = Vec::new();
                match formats::pprof::write(&profile, taken, &mut bytes) {
                    Ok(()) => ProfileReply::Pprof(bytes),
                    Err(err) => ProfileReply::Failed(format!("cannot build the profile: {err}")),
                }
            }
        }
    }
}
