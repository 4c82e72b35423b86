//! What `/healthz` answers: the target's state, each attached program and
//! every event dropped by reason, as JSON; unhealthy (503) once the target
//! has exited or the programs are detached.

use std::time::Instant;

use profiler_common::unwind::{StackKind, WalkEnd};
use serde_json::json;

use crate::snapshot::Snapshot;

/// What /healthz answers, as last published.
pub struct Health {
    pub healthy: bool,
    pub json: serde_json::Value,
}

impl Health {
    /// Nothing published yet.
    pub fn starting() -> Health {
        Health {
            healthy: false,
            json: json!({}),
        }
    }

    /// The health of a snapshot of a server running since `started`.
    pub fn of(snapshot: &Snapshot<'_>, started: Instant) -> Health {
        let target = &snapshot.target;
        let programs = snapshot.programs;
        let mut dropped = serde_json::Map::new();
        let mut total = 0;
        for (reason, n) in snapshot.losses() {
            if n > 0 {
                dropped.insert(reason.to_owned(), json!(n));
                total += n;
            }
        }
        let mut problems = Vec::new();
        if !target.up && target.pid != 0 {
            problems.push(format!("the target (PID {}) has exited", target.pid));
        } else if !target.up {
            problems.push(format!("no target process runs ({})", target.description));
        }
        if !programs.attached {
            problems.push("the eBPF programs are detached".to_owned());
        }
        let json = json!({
            "status": if problems.is_empty() { "ok" } else { "unavailable" },
            "problems": problems,
            "target": {
                "pid": target.pid,
                "name": target.name,
                "what": target.description,
                "up": target.up,
                "threads": target.threads,
                "processes": target.processes,
                "restarts": target.restarts,
            },
            "evicted": {
                "events": snapshot.evicted.events,
                "symbols": snapshot.evicted.symbols,
                "stacks": snapshot.evicted.stacks,
            },
            "programs": programs
                .attachments
                .iter()
                .map(|what| json!({ "program": what, "attached": programs.attached }))
                .collect::<Vec<_>>(),
            "events_dropped": total,
            "dropped_by_reason": dropped,
            // Frames of in-kernel DWARF walks taken by frame pointers for
            // want of call-frame information, by kind of event.
            "stack_fallbacks": StackKind::ALL
                .iter()
                .map(|k| (k.label().to_owned(), json!(snapshot.totals().walk_fallbacks(*k))))
                .collect::<serde_json::Map<_, _>>(),
            // How the in-kernel DWARF walks ended, by kind of event.
            "stack_walks": StackKind::ALL
                .iter()
                .map(|k| {
                    let ends = WalkEnd::ALL
                        .iter()
                        .map(|e| (e.label().to_owned(), json!(snapshot.totals().walks(*k, *e))))
                        .collect::<serde_json::Map<_, _>>();
                    (k.label().to_owned(), json!(ends))
                })
                .collect::<serde_json::Map<_, _>>(),
            "uptime_seconds": started.elapsed().as_secs(),
        });
        Health {
            healthy: problems.is_empty(),
            json,
        }
    }
}
