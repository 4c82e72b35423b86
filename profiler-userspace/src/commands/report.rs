//! The short report `record` prints on stderr: what was recorded, what was
//! lost and why, and, per profile kind, where the time went (top functions;
//! off-CPU blocks and run-queue delay; the most contended locks with who
//! waited and who released them). Rendered from a [`Snapshot`].

use std::{collections::HashMap, fmt::Write as _, time::Duration};

use profiler_common::{
    counters::Counter,
    unwind::{StackKind, WalkEnd},
};

use crate::{
    go,
    model::{Frame, Profile, ProfileKind, Value, short_stack},
    snapshot::Snapshot,
};

/// How many frames a stack in the report shows, leaf first.
const SHORT_STACK: usize = 6;

/// Everything the report says.
pub struct Report<'a> {
    pub snapshot: &'a Snapshot<'a>,
    /// One profile per kind recorded, with where it was written.
    pub profiles: Vec<(&'a Profile, String)>,
    /// How the recording ended, as a sentence fragment ("duration reached").
    pub ended: String,
    /// How the target ended, if it did during the recording.
    pub target_exit: Option<String>,
    /// The target's CPU time during the recording, when it could be read.
    pub target_cpu: Option<Duration>,
    pub min_block: Duration,
    pub top: usize,
    /// For a Go target, how it was built.
    pub go_build: Option<&'a str>,
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

/// A stack as the report shows it: `a <- b <- c`, leaf first.
fn shown(frames: &[Frame]) -> String {
    short_stack(frames, SHORT_STACK).unwrap_or_else(|| "(none seen)".to_owned())
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
            "profiler: recorded {} for {:.2} s [{}]; {}",
            first.target(),
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
        if let Some(build) = self.go_build {
            let _ = writeln!(out, "  Go program: {build}");
        }
        if self.snapshot.target.per_process {
            self.processes(&mut out);
        }
        self.losses(&mut out);
        let cost = self.snapshot.programs.kernel_cost;
        if !cost.is_empty() {
            let _ = writeln!(
                out,
                "  time in the kernel's BPF programs (kernel.bpf_stats_enabled=1; the uprobe trap itself not included):"
            );
            for c in cost {
                let _ = writeln!(
                    out,
                    "    {:<16} {:>10} runs  {:>8.0} ns/run  {:>8.3} s",
                    c.program,
                    c.runs,
                    c.ns_per_run(),
                    c.run_time.as_secs_f64()
                );
            }
        }
        self.stack_walks(&mut out);
        let unwind = self.snapshot.unwind;
        if unwind.unwound > 0 {
            let _ = writeln!(
                out,
                "  user stacks unwound in userspace from .eh_frame: {} ({:.1} MiB of unwind and text sections mapped)",
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
                ProfileKind::OffCpu => self.offcpu(&mut out, profile),
                ProfileKind::Futex => self.futex(&mut out, profile),
                ProfileKind::GoMutex | ProfileKind::GoBlock => self.go_waits(&mut out, profile),
                ProfileKind::Threads | ProfileKind::Goroutines => {}
            }
            self.still_blocked(&mut out, profile);
            self.top_functions(&mut out, profile);
            let _ = writeln!(out, "  wrote {written}");
        }
        out
    }

    /// The processes recorded, most sampled first: PID, name, on-CPU
    /// samples and their share (the first `top`, the rest summed).
    fn processes(&self, out: &mut String) {
        let by_process = self.snapshot.samples_by_process();
        let total: u64 = by_process.iter().map(|p| p.2).sum();
        let seen = self.snapshot.processes.all().count();
        let alive = self.snapshot.processes.alive().count();
        let _ = writeln!(
            out,
            "Processes: {seen} recorded ({alive} still running), {} with on-CPU samples",
            by_process.len()
        );
        let share = |n: u64| 100.0 * n as f64 / total.max(1) as f64;
        for (pid, name, n) in by_process.iter().take(self.top.max(1)) {
            let _ = writeln!(
                out,
                "  {pid:>8}  {name:<16} {n:>8} samples  {:>6.2}%",
                share(*n)
            );
        }
        if by_process.len() > self.top.max(1) {
            let rest: u64 = by_process.iter().skip(self.top.max(1)).map(|p| p.2).sum();
            let _ = writeln!(
                out,
                "  {:>8}  {:<16} {rest:>8} samples  {:>6.2}%",
                "",
                format!("({} others)", by_process.len() - self.top.max(1)),
                share(rest)
            );
        }
    }

    /// How the in-kernel DWARF walks ended, per kind of event: whole, or
    /// cut short and why; and the frames walked by frame pointers for want
    /// of call-frame information.
    fn stack_walks(&self, out: &mut String) {
        let totals = self.snapshot.totals();
        let mut lines = Vec::new();
        for kind in StackKind::ALL {
            let total: u64 = WalkEnd::ALL.iter().map(|e| totals.walks(kind, *e)).sum();
            if total == 0 {
                continue;
            }
            let whole = totals.walks(kind, WalkEnd::Whole);
            let mut cut: Vec<String> = WalkEnd::ALL[1..]
                .iter()
                .map(|e| (e.describe(), totals.walks(kind, *e)))
                .filter(|(_, n)| *n > 0)
                .map(|(what, n)| format!("{n} {what}"))
                .collect();
            let fp = totals.walk_fallbacks(kind);
            if fp > 0 {
                cut.push(format!(
                    "{fp} frames walked by frame pointers for want of .eh_frame"
                ));
            }
            lines.push(format!(
                "    {:<11} {total:>9} walked, {:>5.1}% whole{}{}",
                kind.label(),
                100.0 * whole as f64 / total as f64,
                if cut.is_empty() { "" } else { "; " },
                cut.join(", ")
            ));
        }
        if lines.is_empty() {
            return;
        }
        let t = &totals.unwind_tables;
        let _ = writeln!(
            out,
            "  user stacks walked in the kernel from .eh_frame (--unwind dwarf): {} binaries with tables ({} rows, {:.1} MiB in the kernel), {} walked by frame pointers{}{}",
            t.binaries,
            t.rows,
            f64::from(t.rows) * 12.0 / (1024.0 * 1024.0),
            t.frame_pointer_binaries,
            if t.unreadable > 0 {
                format!(", {} unreadable", t.unreadable)
            } else {
                String::new()
            },
            if t.rows_full > 0 {
                format!(", {} left out (tables full)", t.rows_full)
            } else {
                String::new()
            },
        );
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }

    fn losses(&self, out: &mut String) {
        let s = self.snapshot;
        let losses: Vec<(Counter, u64)> = Counter::ALL
            .iter()
            .filter(|k| k.is_loss())
            .map(|k| (*k, s.counter(*k)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let vanished = s.totals().vanished_stacks;
        if losses.is_empty() && vanished == 0 {
            let _ = writeln!(out, "  dropped: nothing (no sample, stack or event lost)");
        } else {
            let _ = writeln!(
                out,
                "  dropped or lost (samples with a lost stack are kept, marked in the output):"
            );
            for (counter, n) in losses {
                let _ = writeln!(out, "    {n:>8}  {}", counter.describe());
            }
            if vanished > 0 {
                let _ = writeln!(
                    out,
                    "    {vanished:>8}  stack evicted from the stack map before it was drained"
                );
            }
        }
        let unknown = |counts: &HashMap<&'static str, u64>| {
            let mut v: Vec<_> = counts.iter().map(|(k, n)| (*k, *n)).collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            v
        };
        let user_unknown = unknown(&s.unknown().user_unknown);
        let kernel_unknown = unknown(&s.unknown().kernel_unknown);
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
        let s = self.snapshot;
        let samples = p.total();
        let _ = write!(
            out,
            "  samples: {samples} at {} Hz on {} CPUs",
            p.frequency, s.programs.cpus
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
        let dropped = s.counter(Counter::CountsMapFull) + s.counter(Counter::UserStackRingFull);
        let _ = writeln!(out, "  dropped samples: {dropped}");

        if samples == 0 {
            let _ = writeln!(
                out,
                "  no samples: the target did not run on a CPU while recorded (idle, or too short)"
            );
        }
    }

    fn offcpu(&self, out: &mut String, p: &Profile) {
        let s = self.snapshot;
        let split = s.offcpu_split();
        let mut idle = Value::default();
        for sample in p.samples.iter().filter(|x| x.state == Some(go::IDLE_STATE)) {
            idle.add(Value {
                count: sample.count,
                total: sample.value,
                max: 0,
            });
        }
        let _ = writeln!(
            out,
            "  blocked (voluntary): {} in {} blocks, longest {}",
            human_ns(split.blocked.total),
            split.blocked.count,
            human_ns(split.blocked.max)
        );
        if idle.count > 0 {
            let _ = writeln!(
                out,
                "    of which Go runtime idle parking ([{}]): {} in {} blocks",
                go::IDLE_STATE,
                human_ns(idle.total),
                idle.count
            );
        }
        let _ = writeln!(
            out,
            "  preempted (involuntary): {} in {} preemptions",
            human_ns(split.preempted.total),
            split.preempted.count
        );
        let short = s.counter(Counter::ShortBlocksDropped);
        if !self.min_block.is_zero() {
            let _ = writeln!(
                out,
                "  blocks shorter than --min-block {}: {short} dropped in the kernel",
                human_ns(u64::try_from(self.min_block.as_nanos()).unwrap_or(u64::MAX))
            );
        }
        let delays = s.counter(Counter::RunqDelays);
        let total = s.counter(Counter::RunqDelayNs);
        let _ = write!(
            out,
            "  run-queue delay (runnable, waiting for a CPU): {} over {delays} waits",
            human_ns(total)
        );
        if delays > 0 {
            let hist = &s.totals().runq_hist;
            let _ = write!(
                out,
                "; p50 < {}, p99 < {}, max < {}",
                human_ns(percentile_bound(hist, 0.50)),
                human_ns(percentile_bound(hist, 0.99)),
                human_ns(percentile_bound(hist, 1.0))
            );
        }
        let _ = writeln!(out);
    }

    /// Waits still under way when the recording ended, longest first.
    fn still_blocked(&self, out: &mut String, p: &Profile) {
        let mut still: Vec<&crate::model::Sample> =
            p.samples.iter().filter(|s| s.in_progress).collect();
        if still.is_empty() {
            return;
        }
        still.sort_by_key(|s| std::cmp::Reverse(s.value));
        let _ = writeln!(
            out,
            "  still blocked when the recording ended ({} threads; counted so far, from the wait's start or, for a wait begun before the recording, from the recording's):",
            still.len()
        );
        for s in still.iter().take(self.top.max(5)) {
            let on = s
                .lock
                .as_deref()
                .map(|l| format!("on {l}"))
                .unwrap_or_else(|| "off the CPU".to_owned());
            let _ = writeln!(
                out,
                "    {} {}, {}: {}",
                crate::model::thread_label(&s.thread_name, s.tid),
                on,
                human_ns(s.value),
                crate::model::short_stack(&s.frames, 6).unwrap_or_default()
            );
        }
    }

    fn futex(&self, out: &mut String, p: &Profile) {
        let locks = self.snapshot.locks();
        let all_waits: u64 = locks.iter().map(|l| l.waits.count).sum();
        let all_ns: u64 = locks.iter().map(|l| l.waits.total).sum();
        let wakes: u64 = locks.iter().map(|l| l.wake_calls).sum();
        let go_idle: u64 = locks.iter().map(|l| l.idle_ns).sum();
        let _ = writeln!(
            out,
            "  futex waits: {all_waits}, total {}; wake calls: {wakes}; locks: {}",
            human_ns(all_ns),
            locks.len()
        );
        let is_go = go::is_go_program(p);
        if is_go {
            let _ = writeln!(
                out,
                "  note: {}; {} of the futex time is the Go runtime's idle threads ({}), not contention.",
                go::PROGRAM_NOTE,
                human_ns(go_idle),
                go::IDLE_LOCK_PREFIX,
            );
        }
        let mut ranked = locks.iter().filter(|l| l.waits.count > 0).peekable();
        if ranked.peek().is_none() {
            return;
        }
        let _ = writeln!(out, "  top contended locks (by total wait):");
        for lock in ranked.take(self.top.min(5)) {
            let class = go::lock_class(&lock.name, lock.waits.total, lock.idle_ns, is_go);
            let _ = writeln!(
                out,
                "    {}{}: {} waits, total {}, max {}",
                class.label(),
                lock.name,
                lock.waits.count,
                human_ns(lock.waits.total),
                human_ns(lock.waits.max)
            );
            if let Some((stack, ns)) = &lock.top_waiter {
                let _ = writeln!(
                    out,
                    "      top waiter ({}): {}",
                    human_ns(*ns),
                    shown(stack)
                );
            }
            // Go's mutex-profile semantics: the wait is charged to the code
            // that released the lock, seen at the wake-up of each waiter.
            if let Some((stack, ns)) = &lock.top_waker {
                let released = 100.0 * lock.released_ns as f64 / lock.waits.total.max(1) as f64;
                let _ = writeln!(
                    out,
                    "      top waker ({} of waits ended; releasing stacks known for {released:.0}% of the wait): {}",
                    human_ns(*ns),
                    shown(stack)
                );
            }
            // The wake calls themselves.
            if let Some((stack, calls)) = &lock.top_wake_call {
                let _ = writeln!(out, "      top wake call ({calls} calls): {}", shown(stack));
            }
        }
    }

    /// Go waits: the wait reasons ranked (goblock) or the contended locks
    /// ranked (gomutex), and what could not be attributed.
    fn go_waits(&self, out: &mut String, p: &Profile) {
        let s = self.snapshot;
        let mut groups: HashMap<&str, WaitGroup> = HashMap::new();
        for sample in &p.samples {
            let key = match p.kind {
                ProfileKind::GoMutex => sample.lock.as_deref().unwrap_or("?"),
                _ => sample.reason.as_deref().unwrap_or("?"),
            };
            let group = groups.entry(key).or_default();
            group.0.add(Value {
                count: sample.count,
                total: sample.value,
                max: 0,
            });
            group.1 = sample.state;
            let waiting = sample.waiting.as_deref().unwrap_or(&sample.frames);
            *group.2.entry(waiting).or_default() += sample.value;
        }
        let mut ranked: Vec<_> = groups.into_iter().collect();
        ranked.sort_by(|a, b| b.1.0.total.cmp(&a.1.0.total).then(a.0.cmp(b.0)));
        let _ = writeln!(
            out,
            "  goroutine waits: {} parks seen, {} ended ({} parked in all)",
            s.counter(Counter::GoParks),
            s.counter(Counter::GoWaits),
            human_ns(s.counter(Counter::GoWaitNs))
        );
        let unseen = s.counter(Counter::GoWakeParkUnseen);
        if unseen > 0 {
            let _ = writeln!(
                out,
                "  {unseen} goroutines made runnable had parked before the recording began (their waits are not counted)"
            );
        }
        if ranked.is_empty() {
            let _ = writeln!(
                out,
                "  nothing: no goroutine {} while recorded",
                if p.kind == ProfileKind::GoMutex {
                    "waited on a sync.Mutex or RWMutex"
                } else {
                    "parked and was made runnable"
                }
            );
            return;
        }
        let title = match p.kind {
            ProfileKind::GoMutex => {
                "  contended locks (delay charged to the unlocking stack, as Go's mutex profile does):"
            }
            _ => {
                "  wait reasons (idle and runtime waits are labelled: leave them out for contention):"
            }
        };
        let _ = writeln!(out, "{title}");
        for (name, (value, class, waiting)) in ranked.iter().take(self.top.max(5)) {
            let label = match class {
                Some(class) if *class != go::WaitClass::Contention.name() => format!(" ({class})"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "    {name}{label}: {} in {} waits",
                human_ns(value.total),
                value.count
            );
            if let Some((stack, ns)) = waiting
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.len().cmp(&a.0.len())))
            {
                let _ = writeln!(
                    out,
                    "      top waiter ({}): {}",
                    human_ns(*ns),
                    shown(stack)
                );
            }
        }
        if p.kind == ProfileKind::GoMutex
            && let Some(top) = p.samples.first()
        {
            let _ = writeln!(
                out,
                "  top unlocking stack ({}): {}",
                human_ns(top.value),
                shown(&top.frames)
            );
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

/// One reason's (or lock's) waits in the Go waits section: their total, the
/// reason's class, and the time by waiting stack.
type WaitGroup<'a> = (Value, Option<&'static str>, HashMap<&'a [Frame], u64>);

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
