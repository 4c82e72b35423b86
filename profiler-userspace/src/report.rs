//! The short report printed on stderr after a recording: what was recorded,
//! what was lost and why, and where the time went (top functions).

use std::{fmt::Write as _, time::Duration};

use profiler_common::Counter;

use crate::{collect::Collected, profile::Profile, symbolize::SymbolizeStats};

/// Everything the report says, gathered by `record`.
pub struct Report<'a> {
    pub profile: &'a Profile,
    pub collected: &'a Collected,
    pub symbols: &'a SymbolizeStats,
    pub cpus: usize,
    /// How the recording ended, as a sentence fragment ("duration reached").
    pub ended: String,
    /// How the target ended, if it did during the recording.
    pub target_exit: Option<String>,
    /// The target's CPU time during the recording, when it could be read.
    pub target_cpu: Option<Duration>,
    pub output: String,
    pub top: usize,
}

impl Report<'_> {
    pub fn render(&self) -> String {
        let p = self.profile;
        let c = self.collected;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "profiler: recorded PID {} ({}) for {:.2} s at {} Hz on {} CPUs; {}",
            p.pid,
            p.process_name,
            p.duration.as_secs_f64(),
            p.frequency,
            self.cpus,
            self.ended
        );
        match &self.target_exit {
            Some(exit) => {
                let _ = writeln!(out, "  target: {exit} during the recording");
            }
            None => {
                let _ = writeln!(out, "  target: still running");
            }
        }
        let samples = p.total();
        let kernel_seen = c.counter(Counter::CpuSamples);
        let dropped = c.counter(Counter::CountsMapFull);
        let _ = write!(out, "  samples: {samples}");
        if let Some(cpu) = self.target_cpu {
            let expected = cpu.as_secs_f64() * p.frequency as f64;
            let _ = write!(
                out,
                " (target used {:.2} s of CPU: about {:.0} expected)",
                cpu.as_secs_f64(),
                expected
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  dropped samples: {dropped}{}",
            if dropped > 0 {
                " (counts map full; the kernel saw more unique stacks than fit between drains)"
            } else {
                ""
            }
        );
        if kernel_seen > samples + dropped {
            let _ = writeln!(
                out,
                "  samples seen by the kernel but not drained: {}",
                kernel_seen - samples - dropped
            );
        }
        let losses: Vec<(Counter, u64)> = Counter::ALL
            .iter()
            .filter(|k| !matches!(k, Counter::CpuSamples | Counter::CountsMapFull))
            .map(|k| (*k, c.counter(*k)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if !losses.is_empty() || c.vanished_stacks > 0 {
            let _ = writeln!(
                out,
                "  stacks lost (the samples are kept, marked in the output):"
            );
            for (counter, n) in losses {
                let _ = writeln!(out, "    {n:>8}  {}", counter.describe());
            }
            if c.vanished_stacks > 0 {
                let _ = writeln!(
                    out,
                    "    {:>8}  stack evicted from the stack map before it was drained",
                    c.vanished_stacks
                );
            }
        }
        let unknown = |counts: &std::collections::HashMap<&'static str, u64>| {
            let mut v: Vec<_> = counts.iter().map(|(k, n)| (*k, *n)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            v
        };
        let user_unknown = unknown(&self.symbols.user_unknown);
        let kernel_unknown = unknown(&self.symbols.kernel_unknown);
        if !user_unknown.is_empty() || !kernel_unknown.is_empty() {
            let _ = writeln!(
                out,
                "  addresses left unsymbolized ([unknown] in the output):"
            );
            for (why, n) in user_unknown {
                let _ = writeln!(out, "    {n:>8}  user: {why}");
            }
            for (why, n) in kernel_unknown {
                let _ = writeln!(out, "    {n:>8}  kernel: {why}");
            }
        }
        for err in &self.symbols.batch_errors {
            let _ = writeln!(out, "  symbolization error: {err}");
        }
        if samples == 0 {
            let _ = writeln!(
                out,
                "  no samples: the target did not run on a CPU while recorded (idle, or too short)"
            );
        } else {
            let shares = p.function_shares();
            let pct = |v: u64| 100.0 * v as f64 / samples as f64;
            let _ = writeln!(out, "  top functions by self {}:", p.kind.unit());
            for share in shares.iter().filter(|s| s.self_value > 0).take(self.top) {
                let _ = writeln!(
                    out,
                    "    {:>6.2}%  {:>8}  {}",
                    pct(share.self_value),
                    share.self_value,
                    share.name
                );
            }
            let mut by_total = shares.clone();
            by_total.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.name.cmp(&b.name)));
            let _ = writeln!(out, "  top functions by total {}:", p.kind.unit());
            for share in by_total.iter().take(self.top) {
                let _ = writeln!(
                    out,
                    "    {:>6.2}%  {:>8}  {}",
                    pct(share.total),
                    share.total,
                    share.name
                );
            }
        }
        let _ = writeln!(out, "  wrote {}", self.output);
        out
    }
}
