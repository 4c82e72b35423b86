//! A Go target's runtime statistics in `serve` (the `go_*` metrics, named
//! as client_golang names them): one reader, built at start from the
//! target's binary ([`RuntimeStats`]), read after every drain while the
//! target runs; a read that fails (the process exited, the statistics did
//! not settle) is counted and its values are left out of that update.

use std::path::Path;

use serde_json::json;
use tracing::{info, warn};

use super::metrics::GoRuntimeSample;
use crate::go::{self, runtime_stats::RuntimeStats};

/// The Go runtime's statistics of a Go target, as last read.
pub struct GoStatsWatch {
    name: String,
    /// The reader, or why there is none (said once at start).
    reader: Result<RuntimeStats, String>,
    sample: GoRuntimeSample,
    last_error: Option<String>,
}

impl GoStatsWatch {
    /// Prepares to read the runtime's statistics of `pid` if it is a Go
    /// program (`None` if it is not one); when it is one whose statistics
    /// cannot be read, says why once, and serves without them.
    pub fn open(pid: u32, name: &str) -> Option<GoStatsWatch> {
        if !go::is_go_executable(Path::new(&format!("/proc/{pid}/exe"))) {
            return None;
        }
        let reader = match RuntimeStats::for_process(pid) {
            Ok(reader) => {
                info!(
                    "{name}: the Go runtime's metrics (go_memstats_*, go_gc_*, go_threads, go_info) are read from its memory"
                );
                for missing in reader.missing() {
                    warn!("{name}: not served: {missing}");
                }
                Ok(reader)
            }
            Err(err) => {
                warn!(
                    "{name}: the Go runtime's metrics (go_memstats_*, go_gc_*, go_threads) are not served: {err}"
                );
                Err(err.to_string())
            }
        };
        let available = reader.is_ok();
        Some(GoStatsWatch {
            name: name.to_owned(),
            reader,
            sample: GoRuntimeSample {
                available,
                stats: None,
                read_errors: 0,
            },
            last_error: None,
        })
    }

    /// Reads the statistics now if the target runs (`up`); otherwise, or
    /// if the read fails, there are none until the next.
    pub fn refresh(&mut self, up: bool) {
        self.sample.stats = None;
        let Ok(reader) = &self.reader else {
            return;
        };
        if !up {
            return;
        }
        match reader.read() {
            Ok(stats) => {
                self.sample.stats = Some(stats);
                self.last_error = None;
            }
            Err(err) => {
                self.sample.read_errors += 1;
                let err = err.to_string();
                // Said when it starts failing, not at every drain.
                if self.last_error.is_none() {
                    warn!(
                        "{}: cannot read the Go runtime's statistics (left out of /metrics until a read succeeds; counted in profiler_go_stats_read_errors_total): {err}",
                        self.name
                    );
                }
                self.last_error = Some(err);
            }
        }
    }

    /// What the metrics show.
    pub fn sample(&self) -> &GoRuntimeSample {
        &self.sample
    }

    /// What `/healthz` says of them.
    pub fn health(&self) -> serde_json::Value {
        match &self.reader {
            Ok(reader) => json!({
                "served": true,
                "go_release": format!("{}.{}", reader.version().0, reader.version().1),
                "not_served": reader.missing(),
                "read_errors": self.sample.read_errors,
                "last_error": self.last_error,
            }),
            Err(why) => json!({
                "served": false,
                "why": why,
            }),
        }
    }
}
