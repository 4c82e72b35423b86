//! The short report printed on stderr after a recording: what was recorded,
//! what was lost and why, and, per profile kind, where the time went (top
//! functions; off-CPU blocks and run-queue delay; the most contended locks).

use std::{collections::HashMap, fmt::Write as _, time::Duration};

use profiler_common::Counter;

use crate::{
    collect::{Collected, OffCpuState, Stack, Waits},
    profile::{Profile, ProfileKind, is_go_runtime_idle, push_frames},
    symbolize::{FrameKind, Symbolize},
};

/// Everything the report says, gathered by `record`.
pub struct Report<'a> {
    /// One profile per kind recorded, with where it was written.
    pub profiles: Vec<(&'a Profile, String)>,
    pub collected: &'a Collected,
    pub symbols: &'a Symbolize,
    pub cpus: usize,
    /// How the recording ended, as a sentence fragment ("duration reached").
    pub ended: String,
    /// How the target ended, if it did during the recording.
    pub target_exit: Option<String>,
    /// The target's CPU time during the recording, when it could be read.
    pub target_cpu: Option<Duration>,
    pub min_block: Duration,
    pub top: usize,
    /// The userspace unwinder, when cpu stacks were unwound from .eh_frame.
    pub unwind: Option<&'a crate::unwind::Unwind>,
}

/// Formats nanoseconds for people.
pub fn human_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} us", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

impl Report<'_> {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Some((first, _)) = self.profiles.first() else {
            return out;
        };
        let kinds: Vec<&str> = self.profiles.iter().map(|(p, _)| p.kind.name()).collect();
        let _ = writeln!(
            out,
            "profiler: recorded PID {} ({}) for {:.2} s [{}]; {}",
            first.pid,
            first.process_name,
            first.duration.as_secs_f64(),
            kinds.join(", "),
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
        self.losses(&mut out);
        if let Some(unwind) = self.unwind {
            let _ = writeln!(
                out,
                "  user stacks unwound from .eh_frame: {} ({:.1} MiB of unwind and text sections held)",
                unwind.unwound,
                unwind.table_bytes as f64 / (1024.0 * 1024.0)
            );
            let mut truncated: Vec<_> = unwind.truncated.iter().collect();
            truncated.sort();
            for (why, n) in truncated {
                let _ = writeln!(out, "    {n:>8}  {}", why.describe());
            }
        }
        for (profile, written) in &self.profiles {
            let _ = writeln!(out, "{} profile:", profile.kind.name());
            match profile.kind {
                ProfileKind::Cpu => self.cpu(&mut out, profile),
                ProfileKind::OffCpu => self.offcpu(&mut out),
                ProfileKind::Futex => self.futex(&mut out, profile),
            }
            self.top_functions(&mut out, profile);
            let _ = writeln!(out, "  wrote {written}");
        }
        out
    }

    fn losses(&self, out: &mut String) {
        let c = self.collected;
        let losses: Vec<(Counter, u64)> = Counter::ALL
            .iter()
            .filter(|k| k.is_loss())
            .map(|k| (*k, c.counter(*k)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if losses.is_empty() && c.vanished_stacks == 0 {
            let _ = writeln!(out, "  dropped: nothing (no sample, stack or event lost)");
        } else {
            let _ = writeln!(
                out,
                "  dropped or lost (samples with a lost stack are kept, marked in the output):"
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
        let unknown = |counts: &HashMap<&'static str, u64>| {
            let mut v: Vec<_> = counts.iter().map(|(k, n)| (*k, *n)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            v
        };
        let stats = &self.symbols.stats;
        let user_unknown = unknown(&stats.user_unknown);
        let kernel_unknown = unknown(&stats.kernel_unknown);
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
    }

    fn cpu(&self, out: &mut String, p: &Profile) {
        let c = self.collected;
        let samples = p.total();
        let _ = write!(
            out,
            "  samples: {samples} at {} Hz on {} CPUs",
            p.frequency, self.cpus
        );
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
        let dropped = c.counter(Counter::CountsMapFull) + c.counter(Counter::UserStackRingFull);
        let _ = writeln!(out, "  dropped samples: {dropped}");

        if samples == 0 {
            let _ = writeln!(
                out,
                "  no samples: the target did not run on a CPU while recorded (idle, or too short)"
            );
        }
    }

    fn offcpu(&self, out: &mut String) {
        let c = self.collected;
        let mut blocked = Waits::default();
        let mut preempted = Waits::default();
        let mut idle = Waits::default();
        for (raw, waits) in &c.offcpu {
            match raw.state {
                OffCpuState::Preempted => preempted.add(*waits),
                OffCpuState::Blocked => {
                    blocked.add(*waits);
                    if self.is_idle(&raw.user) {
                        idle.add(*waits);
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "  blocked (voluntary): {} in {} blocks, longest {}",
            human_ns(blocked.total_ns),
            blocked.count,
            human_ns(blocked.max_ns)
        );
        if idle.count > 0 {
            let _ = writeln!(
                out,
                "    of which Go runtime idle parking ([runtime idle]): {} in {} blocks",
                human_ns(idle.total_ns),
                idle.count
            );
        }
        let _ = writeln!(
            out,
            "  preempted (involuntary): {} in {} preemptions",
            human_ns(preempted.total_ns),
            preempted.count
        );
        let short = c.counter(Counter::ShortBlocksDropped);
        if !self.min_block.is_zero() {
            let _ = writeln!(
                out,
                "  blocks shorter than --min-block {}: {short} dropped in the kernel",
                human_ns(u64::try_from(self.min_block.as_nanos()).unwrap_or(u64::MAX))
            );
        }
        let delays = c.counter(Counter::RunqDelays);
        let total = c.counter(Counter::RunqDelayNs);
        let _ = write!(
            out,
            "  run-queue delay (runnable, waiting for a CPU): {} over {delays} waits",
            human_ns(total)
        );
        if delays > 0 {
            let _ = write!(
                out,
                "; p50 < {}, p99 < {}, max < {}",
                human_ns(percentile_bound(&c.runq_hist, 0.50)),
                human_ns(percentile_bound(&c.runq_hist, 0.99)),
                human_ns(percentile_bound(&c.runq_hist, 1.0))
            );
        }
        let _ = writeln!(out);
    }

    /// Whether a user stack is the Go runtime idling.
    fn is_idle(&self, user: &Stack) -> bool {
        let mut frames = Vec::new();
        push_frames(&mut frames, user, true, |a| self.symbols.user_frames(a));
        is_go_runtime_idle(&frames)
    }

    /// A short rendering of a user stack, leaf first: `a <- b <- c`.
    fn short_stack(&self, stack: &Stack) -> String {
        let mut frames = Vec::new();
        push_frames(&mut frames, stack, true, |a| self.symbols.user_frames(a));
        let names: Vec<&str> = frames
            .iter()
            .rev()
            .filter(|f| f.kind != FrameKind::Kernel)
            .take(6)
            .map(|f| f.name.as_ref())
            .collect();
        if names.is_empty() {
            "(none seen)".to_owned()
        } else {
            names.join(" <- ")
        }
    }

    fn futex(&self, out: &mut String, p: &Profile) {
        let c = self.collected;
        let mut locks: HashMap<u64, LockStats<'_>> = HashMap::new();
        let mut go_idle = 0u64;
        for (raw, waits) in &c.futex_waits {
            let idle = self.is_idle(&raw.user);
            if idle {
                go_idle += waits.total_ns;
            }
            let lock = locks.entry(raw.uaddr).or_default();
            if idle {
                lock.idle_ns += waits.total_ns;
            }
            lock.waits.add(*waits);
            *lock.waiters.entry(&raw.user).or_default() += waits.total_ns;
            if raw.waker_tid != 0 {
                *lock.wakers.entry(&raw.waker_user).or_default() += waits.total_ns;
            }
        }
        for (raw, calls) in &c.futex_wakes {
            let lock = locks.entry(raw.uaddr).or_default();
            lock.wake_calls += calls;
            *lock.wake_sites.entry(&raw.user).or_default() += calls;
        }
        let all_waits: u64 = locks.values().map(|l| l.waits.count).sum();
        let all_ns: u64 = locks.values().map(|l| l.waits.total_ns).sum();
        let wakes: u64 = locks.values().map(|l| l.wake_calls).sum();
        let _ = writeln!(
            out,
            "  futex waits: {all_waits}, total {}; wake calls: {wakes}; locks: {}",
            human_ns(all_ns),
            locks.len()
        );
        let is_go = p
            .samples
            .iter()
            .any(|s| s.frames.iter().any(|f| f.name.starts_with("runtime.")));
        if is_go {
            let _ = writeln!(
                out,
                "  note: this is a Go program. Go's sync.Mutex parks goroutines without a futex call per waiter, so its lock contention is not in this profile; {} of the futex time is the Go runtime's idle threads ([Go runtime idle]), not contention.",
                human_ns(go_idle)
            );
        }
        let mut ranked: Vec<(&u64, &LockStats<'_>)> =
            locks.iter().filter(|(_, l)| l.waits.count > 0).collect();
        ranked.sort_by(|a, b| {
            b.1.waits
                .total_ns
                .cmp(&a.1.waits.total_ns)
                .then(a.0.cmp(b.0))
        });
        if ranked.is_empty() {
            return;
        }
        let _ = writeln!(out, "  top contended locks (by total wait):");
        for (uaddr, lock) in ranked.into_iter().take(self.top.min(5)) {
            let name = self.symbols.lock_name(*uaddr);
            // The Go runtime parking idle threads is not lock contention.
            let label = if lock.idle_ns * 10 >= lock.waits.total_ns * 9 {
                "[Go runtime idle, not contention] "
            } else if is_go || name.starts_with("runtime.") {
                // Go code does not call futex itself: in a Go program every
                // futex is a lock of the runtime (its scheduler, its heap).
                "[Go runtime internal lock] "
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    {label}{name}: {} waits, total {}, max {}",
                lock.waits.count,
                human_ns(lock.waits.total_ns),
                human_ns(lock.waits.max_ns)
            );
            if let Some((stack, ns)) = top_of(&lock.waiters) {
                let _ = writeln!(
                    out,
                    "      top waiter ({}): {}",
                    human_ns(ns),
                    self.short_stack(stack)
                );
            }
            // Go's mutex-profile semantics: the wait is charged to the code
            // that released the lock, seen at the wake-up of each waiter.
            if let Some((stack, ns)) = top_of(&lock.wakers) {
                let _ = writeln!(
                    out,
                    "      top waker ({} of waits ended): {}",
                    human_ns(ns),
                    self.short_stack(stack)
                );
            }
            // The wake calls themselves (with --unwind dwarf/auto, the ones
            // whose stacks were copied carry whole stacks).
            if let Some((stack, calls)) = top_of(&lock.wake_sites) {
                let _ = writeln!(
                    out,
                    "      top wake call ({calls} calls): {}",
                    self.short_stack(stack)
                );
            }
        }
    }

    fn top_functions(&self, out: &mut String, p: &Profile) {
        let total = p.total();
        if total == 0 {
            return;
        }
        let shares = p.function_shares();
        let value = |v: u64| match p.kind {
            ProfileKind::Cpu => format!("{v:>8}"),
            _ => format!("{:>10}", human_ns(v)),
        };
        let pct = |v: u64| 100.0 * v as f64 / total as f64;
        let self_label = match p.kind {
            ProfileKind::Cpu => "self",
            _ => "self (deepest user frame)",
        };
        let _ = writeln!(out, "  top functions by {self_label}:");
        for share in shares.iter().filter(|s| s.self_value > 0).take(self.top) {
            let _ = writeln!(
                out,
                "    {:>6.2}%  {}  {}",
                pct(share.self_value),
                value(share.self_value),
                share.name
            );
        }
        let mut by_total = shares.clone();
        by_total.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.name.cmp(&b.name)));
        let _ = writeln!(out, "  top functions by total:");
        for share in by_total.iter().take(self.top) {
            let _ = writeln!(
                out,
                "    {:>6.2}%  {}  {}",
                pct(share.total),
                value(share.total),
                share.name
            );
        }
    }
}

/// What the report gathers about one lock word.
#[derive(Default)]
struct LockStats<'a> {
    waits: Waits,
    /// Wait time by the waiter's stack.
    waiters: HashMap<&'a Stack, u64>,
    /// Wait time by the stack of the thread that woke the waiter.
    wakers: HashMap<&'a Stack, u64>,
    wake_calls: u64,
    wake_sites: HashMap<&'a Stack, u64>,
    /// Wait time under the Go runtime's idle parking.
    idle_ns: u64,
}

fn top_of<'a>(by_stack: &HashMap<&'a Stack, u64>) -> Option<(&'a Stack, u64)> {
    by_stack
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(s, v)| (*s, *v))
}

/// An upper bound of the `p` quantile of a log2 histogram (bucket `i` holds
/// values in `[2^i, 2^(i+1))` ns).
pub fn percentile_bound(hist: &[u64], p: f64) -> u64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0;
    }
    let want = ((total as f64) * p).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (bucket, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= want {
            return 1u64.checked_shl(bucket as u32 + 1).unwrap_or(u64::MAX);
        }
    }
    u64::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_percentiles() {
        let mut hist = vec![0u64; 64];
        hist[10] = 98; // [1024, 2048) ns
        hist[20] = 2; // [1 Mi, 2 Mi) ns
        assert_eq!(percentile_bound(&hist, 0.5), 2048);
        assert_eq!(percentile_bound(&hist, 0.99), 2 << 20);
        assert_eq!(percentile_bound(&hist, 1.0), 2 << 20);
        assert_eq!(percentile_bound(&[0; 64], 0.5), 0);
    }

    #[test]
    fn human_units() {
        assert_eq!(human_ns(1_500_000_000), "1.500 s");
        assert_eq!(human_ns(2_500_000), "2.500 ms");
        assert_eq!(human_ns(1_500), "1.5 us");
        assert_eq!(human_ns(15), "15 ns");
    }
}
