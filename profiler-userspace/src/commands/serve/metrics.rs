//! The Prometheus metrics of the target: rebuilt from a snapshot of the
//! session's cumulative data after every drain (on the session thread) and
//! handed to the registry, which encodes them at each scrape (on the HTTP
//! thread) beside the profiler's own `process_*` metrics.
//!
//! The kernel counts cumulatively, so every counter here is set from a
//! running total rather than incremented; the log2 histograms filled in the
//! kernel are exposed bucket by bucket, which the `prometheus` crate's own
//! `Histogram` (observations only) cannot do, hence the custom collector.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use profiler_common::{
    counters::Counter,
    unwind::{StackKind, WalkEnd},
};
use prometheus::{
    Registry,
    core::{Collector, Desc},
    proto::{self, MetricFamily, MetricType},
};

use crate::{
    go::{listing::GoroutineCounts, runtime_stats::GoStats},
    model::ProfileKind,
    snapshot::Snapshot,
    unwind::Truncation,
};

/// How many thread names get their own `thread` label.
pub const MAX_THREAD_LABELS: usize = 100;

/// How many goroutine creation sites get their own `site` label.
pub const MAX_SITE_LABELS: usize = 20;

/// How many Go locks get their own `lock` label in the gomutex metrics.
pub const MAX_GO_LOCK_LABELS: usize = 20;

/// The label value everything beyond a bound is summed under.
const OTHER: &str = "other";

/// log2 histogram buckets exposed, as exponents of their upper bounds in
/// nanoseconds: 2^10 ns (about 1 µs) to 2^36 ns (about 69 s). Smaller values
/// fall in the first bucket, larger ones only in +Inf.
const BUCKET_EXPONENTS: std::ops::RangeInclusive<u32> = 10..=36;

/// One metric family: name, help, type and label names.
struct Family {
    name: &'static str,
    help: String,
    kind: MetricType,
    labels: &'static [&'static str],
}

fn families(top_locks: usize) -> Vec<Family> {
    let family = |name, help: &str, kind, labels| Family {
        name,
        help: help.to_owned(),
        kind,
        labels,
    };
    vec![
        family(
            "profiler_target_up",
            "1 while a profiled process runs (for a cgroup, a name or a process tree: any of them), 0 once none does.",
            MetricType::GAUGE,
            &[],
        ),
        family(
            "profiler_target_threads",
            "Threads of the profiled process now.",
            MetricType::GAUGE,
            &[],
        ),
        family(
            "profiler_programs_attached",
            "eBPF programs of the profiler attached to the kernel now (0 once the target has exited).",
            MetricType::GAUGE,
            &[],
        ),
        Family {
            name: "profiler_cpu_samples_total",
            help: format!(
                "On-CPU samples of the target's threads, by thread name (the first {MAX_THREAD_LABELS} names get a label; the rest are summed under thread=\"other\")."
            ),
            kind: MetricType::COUNTER,
            labels: &["thread"],
        },
        Family {
            name: "profiler_cpu_seconds_total",
            help: format!(
                "CPU time of the target's threads estimated from samples (samples / sampling frequency), by thread name (the first {MAX_THREAD_LABELS} names get a label; the rest are summed under thread=\"other\")."
            ),
            kind: MetricType::COUNTER,
            labels: &["thread"],
        },
        family(
            "profiler_offcpu_seconds_total",
            "Time the target's threads spent switched out, by reason: voluntary (blocked: sleep, I/O, a lock; until woken) or preempted (runnable, waiting for a CPU).",
            MetricType::COUNTER,
            &["reason"],
        ),
        family(
            "profiler_runqueue_delay_seconds",
            "Run-queue delay of the target's threads: from being woken or preempted to running again (log2 buckets filled in the kernel).",
            MetricType::HISTOGRAM,
            &[],
        ),
        Family {
            name: "profiler_futex_waits_total",
            help: format!(
                "Futex waits of the target's threads, by lock (its variable name, or address and mapping; a Go program's idle runtime threads are \"[Go runtime idle] ...\"). The first {top_locks} locks by wait time get a label; the rest are summed under lock=\"other\"."
            ),
            kind: MetricType::COUNTER,
            labels: &["lock"],
        },
        Family {
            name: "profiler_futex_wait_seconds_total",
            help: format!(
                "Time the target's threads waited in futex(2), by lock (its variable name, or address and mapping; a Go program's idle runtime threads are \"[Go runtime idle] ...\"). The first {top_locks} locks by wait time get a label; the rest are summed under lock=\"other\"."
            ),
            kind: MetricType::COUNTER,
            labels: &["lock"],
        },
        family(
            "profiler_futex_wait_duration_seconds",
            "Duration of each futex wait of the target's threads (log2 buckets filled in the kernel).",
            MetricType::HISTOGRAM,
            &[],
        ),
        family(
            "profiler_dropped_events_total",
            "Samples, stacks and events the profiler lost, by reason (a sample whose stack was lost is still counted in the other metrics).",
            MetricType::COUNTER,
            &["reason"],
        ),
        family(
            "profiler_stack_walks_total",
            "User stacks walked in the kernel from .eh_frame tables (--unwind dwarf), by kind of event and how the walk ended (whole, or why it stopped).",
            MetricType::COUNTER,
            &["kind", "end"],
        ),
        family(
            "profiler_stack_fallbacks_total",
            "Frames of in-kernel DWARF walks taken by frame pointers because no call-frame information covered them, by kind of event.",
            MetricType::COUNTER,
            &["kind"],
        ),
        family(
            "profiler_truncated_stacks_total",
            "User stacks unwound from a copy that stopped before their root, by reason.",
            MetricType::COUNTER,
            &["reason"],
        ),
        family(
            "profiler_unsymbolized_addresses_total",
            "Unique addresses that could not be named, by side (user, kernel) and reason.",
            MetricType::COUNTER,
            &["side", "reason"],
        ),
        // A Go target's goroutines, read from its memory.
        family(
            "go_goroutines",
            "Number of goroutines that currently exist (as runtime.NumGoroutine counts them, read from the Go target's memory).",
            MetricType::GAUGE,
            &[],
        ),
        family(
            "profiler_go_goroutines",
            "Goroutines of the Go target by state: the runtime's wait reason for waiting ones (chan receive, select, sync.Mutex.Lock, IO wait, ...), else their status (runnable, running, syscall).",
            MetricType::GAUGE,
            &["state"],
        ),
        Family {
            name: "profiler_go_goroutines_by_site",
            help: format!(
                "Goroutines of the Go target by creation site (the go statement's function and file:line); the first {MAX_SITE_LABELS} sites by count get a label, the rest are summed under site=\"other\"."
            ),
            kind: MetricType::GAUGE,
            labels: &["site"],
        },
        family(
            "profiler_go_goroutines_skipped",
            "Goroutines of the Go target left out of the last read because they changed while read.",
            MetricType::GAUGE,
            &[],
        ),
        // A Go target's goroutine waits, with Go's block and mutex profile
        // semantics (the goblock and gomutex kinds).
        family(
            "profiler_go_block_seconds_total",
            "Time the Go target's goroutines spent parked, by the runtime's wait reason (chan receive, select, sync.WaitGroup.Wait, sleep, IO wait, ...) and its class: contention, idle (sleeps, network waits) or runtime (the runtime's own goroutines). Counted when a wait ends.",
            MetricType::COUNTER,
            &["reason", "class"],
        ),
        family(
            "profiler_go_block_waits_total",
            "Waits of the Go target's goroutines that ended, by wait reason and class (as profiler_go_block_seconds_total).",
            MetricType::COUNTER,
            &["reason", "class"],
        ),
        Family {
            name: "profiler_go_mutex_wait_seconds_total",
            help: format!(
                "Time the Go target's goroutines waited for a sync.Mutex or RWMutex (Go's mutex profile delay), by lock (its variable name, or address). The first {MAX_GO_LOCK_LABELS} locks by wait time get a label; the rest are summed under lock=\"other\"."
            ),
            kind: MetricType::COUNTER,
            labels: &["lock"],
        },
        Family {
            name: "profiler_go_mutex_waits_total",
            help: format!(
                "Waits of the Go target's goroutines for a sync.Mutex or RWMutex (Go's mutex profile contentions), by lock as profiler_go_mutex_wait_seconds_total (first {MAX_GO_LOCK_LABELS} locks)."
            ),
            kind: MetricType::COUNTER,
            labels: &["lock"],
        },
        family(
            "profiler_target_processes",
            "Profiled processes running now (one for --pid; for --children, --cgroup, --comm and --all, every process followed).",
            MetricType::GAUGE,
            &[],
        ),
        family(
            "profiler_target_restarts_total",
            "Times every profiled process had exited and a new one was picked up (--comm NAME, --pid with --follow: a restarted service).",
            MetricType::COUNTER,
            &[],
        ),
        Family {
            name: "profiler_process_cpu_samples_total",
            help: format!(
                "On-CPU samples by process (PID and name; the first {MAX_PROCESS_LABELS} processes by samples get labels, the rest are summed under process=\"other\", pid=\"\")."
            ),
            kind: MetricType::COUNTER,
            labels: &["pid", "process"],
        },
        family(
            "profiler_evicted_total",
            "What a long serve let go to stay within its memory: events older than the window (their sums stay in the counters), names of addresses nothing refers to any more, and stacks recycled from the kernel's stack maps.",
            MetricType::COUNTER,
            &["what"],
        ),
    ]
}

/// Processes that get their own labels in `profiler_process_cpu_samples_total`.
const MAX_PROCESS_LABELS: usize = 20;

/// The registry's view of the target metrics: the families last built.
struct Published {
    descs: Vec<Desc>,
    families: Arc<Mutex<Vec<MetricFamily>>>,
}

impl Collector for Published {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.families
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The profiler's own CPU time and memory, read at each scrape, under the
/// standard `process_*` names. Written here because the `prometheus` crate's
/// process collector counts CPU time in whole seconds, which makes a rate
/// over a minute of a light process read 0.
struct OwnProcess {
    descs: Vec<Desc>,
}

impl OwnProcess {
    const CPU: &str = "process_cpu_seconds_total";
    const RSS: &str = "process_resident_memory_bytes";

    fn new() -> prometheus::Result<Self> {
        let desc = |name: &str, help: &str| {
            Desc::new(name.to_owned(), help.to_owned(), Vec::new(), HashMap::new())
        };
        Ok(OwnProcess {
            descs: vec![
                desc(
                    Self::CPU,
                    "CPU time of the profiler itself (user and system, all threads), in seconds.",
                )?,
                desc(
                    Self::RSS,
                    "Resident memory of the profiler itself, in bytes.",
                )?,
            ],
        })
    }
}

impl Collector for OwnProcess {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = Vec::new();
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0 {
            // SAFETY: initialized by the successful call above.
            let usage = unsafe { usage.assume_init() };
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
            families.push(family_of(
                Self::CPU,
                &self.descs[0].help,
                MetricType::COUNTER,
                vec![counter(&[], cpu)],
            ));
        }
        // /proc/self/statm: size resident shared ... in pages.
        let resident = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok());
        if let Some(pages) = resident {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
            families.push(family_of(
                Self::RSS,
                &self.descs[1].help,
                MetricType::GAUGE,
                vec![gauge(&[], (pages * page) as f64)],
            ));
        }
        families
    }
}

fn family_of(
    name: &str,
    help: &str,
    kind: MetricType,
    metrics: Vec<proto::Metric>,
) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

/// Label values handed out up to a bound and kept: a counter's series must
/// not move between labels, or its rate would jump. Values are admitted in
/// the order given (largest first) while there is room; once full, anything
/// new is "other" (which only exists from then on, so it never shrinks).
struct BoundedLabels {
    max: usize,
    admitted: HashSet<String>,
}

impl BoundedLabels {
    fn new(max: usize) -> Self {
        BoundedLabels {
            max,
            admitted: HashSet::new(),
        }
    }

    /// Sums `values` by their label, admitting the largest new ones first.
    fn fold<V: Copy + Default>(
        &mut self,
        values: HashMap<String, V>,
        weight: impl Fn(&V) -> u64,
        add: impl Fn(&mut V, V),
    ) -> Vec<(String, V)> {
        let mut ranked: Vec<(String, V)> = values.into_iter().collect();
        ranked.sort_by(|a, b| weight(&b.1).cmp(&weight(&a.1)).then(a.0.cmp(&b.0)));
        let mut out: HashMap<String, V> = HashMap::new();
        for (name, value) in ranked {
            if !self.admitted.contains(&name) && self.admitted.len() < self.max {
                self.admitted.insert(name.clone());
            }
            let label = if self.admitted.contains(&name) {
                name
            } else {
                OTHER.to_owned()
            };
            add(out.entry(label).or_default(), value);
        }
        let mut out: Vec<(String, V)> = out.into_iter().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Builds the target's metric families (on the session thread).
pub struct Metrics {
    defs: Vec<Family>,
    published: Arc<Mutex<Vec<MetricFamily>>>,
    /// The Go runtime's statistics (see [`GoRuntime`]).
    go_runtime: GoRuntime,
    threads: BoundedLabels,
    locks: BoundedLabels,
    sites: BoundedLabels,
    go_locks: BoundedLabels,
    processes: BoundedLabels,
    frequency: u64,
}

impl Metrics {
    /// A registry with the target metrics and the profiler's own process
    /// metrics, and the builder that fills the former.
    pub fn registry(top_locks: usize, frequency: u64) -> anyhow::Result<(Registry, Metrics)> {
        let defs = families(top_locks);
        let descs = defs
            .iter()
            .map(|f| {
                Desc::new(
                    f.name.to_owned(),
                    f.help.clone(),
                    f.labels.iter().map(|l| (*l).to_owned()).collect(),
                    HashMap::new(),
                )
            })
            .collect::<Result<Vec<Desc>, _>>()?;
        let published = Arc::new(Mutex::new(Vec::new()));
        let registry = Registry::new();
        registry.register(Box::new(Published {
            descs,
            families: published.clone(),
        }))?;
        registry.register(Box::new(OwnProcess::new()?))?;
        let go_runtime = GoRuntime::new()?;
        registry.register(Box::new(go_runtime.collector()))?;
        Ok((
            registry,
            Metrics {
                defs,
                published,
                go_runtime,
                threads: BoundedLabels::new(MAX_THREAD_LABELS),
                locks: BoundedLabels::new(top_locks),
                sites: BoundedLabels::new(MAX_SITE_LABELS),
                go_locks: BoundedLabels::new(MAX_GO_LOCK_LABELS),
                processes: BoundedLabels::new(MAX_PROCESS_LABELS),
                frequency,
            },
        ))
    }

    /// Rebuilds every family from a snapshot of the session's data so far,
    /// and for a Go target its goroutines as last counted.
    pub fn update(&mut self, snapshot: &Snapshot<'_>, goroutines: Option<&GoroutineCounts>) {
        let mut metrics: Vec<Vec<proto::Metric>> = Vec::with_capacity(self.defs.len());

        let target = &snapshot.target;
        metrics.push(vec![gauge(&[], f64::from(u8::from(target.up)))]);
        metrics.push(vec![gauge(&[], target.threads as f64)]);
        let programs = snapshot.programs;
        let attached = if programs.attached {
            programs.attachments.len()
        } else {
            0
        };
        metrics.push(vec![gauge(&[], attached as f64)]);

        let by_thread = self
            .threads
            .fold(snapshot.samples_by_thread(), |n| *n, |sum, n| *sum += n);
        metrics.push(
            by_thread
                .iter()
                .map(|(t, n)| counter(&[("thread", t)], *n as f64))
                .collect(),
        );
        let frequency = self.frequency.max(1) as f64;
        metrics.push(
            by_thread
                .iter()
                .map(|(t, n)| counter(&[("thread", t)], *n as f64 / frequency))
                .collect(),
        );

        let split = snapshot.offcpu_split();
        metrics.push(vec![
            counter(&[("reason", "preempted")], seconds(split.preempted.total)),
            counter(&[("reason", "voluntary")], seconds(split.blocked.total)),
        ]);

        let totals = snapshot.totals();
        metrics.push(vec![histogram(
            &totals.runq_hist,
            totals.counter(Counter::RunqDelayNs),
        )]);

        // Locks named as the futex profile names them: a Go program's idle
        // runtime threads parked on a futex are "[Go runtime idle] ...", not
        // contention.
        let by_lock = self.locks.fold(
            snapshot.futex_waits_by_lock(),
            |(_, ns)| *ns,
            |sum, (count, ns)| {
                sum.0 += count;
                sum.1 += ns;
            },
        );
        metrics.push(
            by_lock
                .iter()
                .map(|(lock, (count, _))| counter(&[("lock", lock)], *count as f64))
                .collect(),
        );
        metrics.push(
            by_lock
                .iter()
                .map(|(lock, (_, ns))| counter(&[("lock", lock)], seconds(*ns)))
                .collect(),
        );
        metrics.push(vec![histogram(
            &totals.futex_hist,
            totals.counter(Counter::FutexWaitNs),
        )]);

        metrics.push(
            snapshot
                .losses()
                .into_iter()
                .map(|(reason, n)| counter(&[("reason", reason)], n as f64))
                .collect(),
        );

        let totals = snapshot.totals();
        metrics.push(
            StackKind::ALL
                .iter()
                .flat_map(|kind| {
                    WalkEnd::ALL.iter().map(move |end| {
                        counter(
                            &[("kind", kind.label()), ("end", end.label())],
                            totals.walks(*kind, *end) as f64,
                        )
                    })
                })
                .collect(),
        );
        metrics.push(
            StackKind::ALL
                .iter()
                .map(|kind| {
                    counter(
                        &[("kind", kind.label())],
                        totals.walk_fallbacks(*kind) as f64,
                    )
                })
                .collect(),
        );
        metrics.push(
            Truncation::ALL
                .iter()
                .map(|t| {
                    let n = snapshot.unwind.truncated.get(t).copied().unwrap_or(0);
                    counter(&[("reason", t.label())], n as f64)
                })
                .collect(),
        );
        let stats = snapshot.unknown();
        let mut unknown: Vec<proto::Metric> = Vec::new();
        for (side, reasons) in [
            ("user", &stats.user_unknown),
            ("kernel", &stats.kernel_unknown),
        ] {
            let mut reasons: Vec<_> = reasons.iter().collect();
            reasons.sort();
            for (reason, n) in reasons {
                unknown.push(counter(&[("side", side), ("reason", reason)], *n as f64));
            }
        }
        metrics.push(unknown);

        // go_goroutines: runtime.NumGoroutine() as read with the runtime's
        // statistics, else the goroutines counted in the last walk.
        let numgoroutine = self
            .go_runtime
            .goroutines()
            .or(goroutines.map(|go| go.total));
        metrics.push(
            numgoroutine
                .map(|n| vec![gauge(&[], n as f64)])
                .unwrap_or_default(),
        );
        match goroutines {
            Some(go) => {
                let mut by_state: Vec<(&String, &u64)> = go.by_state.iter().collect();
                by_state.sort();
                metrics.push(
                    by_state
                        .into_iter()
                        .map(|(state, n)| gauge(&[("state", state)], *n as f64))
                        .collect(),
                );
                let by_site = self
                    .sites
                    .fold(go.by_site.clone(), |n| *n, |sum, n| *sum += n);
                metrics.push(
                    by_site
                        .iter()
                        .map(|(site, n)| gauge(&[("site", site)], *n as f64))
                        .collect(),
                );
                metrics.push(vec![gauge(&[], go.skipped as f64)]);
            }
            None => metrics.extend(std::iter::repeat_with(Vec::new).take(3)),
        }

        // Go waits (empty for other targets, whose sessions lack the kinds).
        let (block, mutex) = self.go_waits(snapshot);
        metrics.extend(block);
        metrics.extend(mutex);

        metrics.push(vec![gauge(&[], target.processes as f64)]);
        metrics.push(vec![counter(&[], target.restarts as f64)]);
        let by_process: HashMap<String, u64> = snapshot
            .samples_by_process()
            .into_iter()
            .map(|(pid, name, n)| (format!("{pid}\u{0}{name}"), n))
            .collect();
        let by_process = self.processes.fold(by_process, |n| *n, |sum, n| *sum += n);
        metrics.push(
            by_process
                .iter()
                .map(|(key, n)| {
                    let (pid, name) = key.split_once('\u{0}').unwrap_or(("", key.as_str()));
                    counter(&[("pid", pid), ("process", name)], *n as f64)
                })
                .collect(),
        );
        metrics.push(
            [
                ("events", snapshot.evicted.events),
                ("symbols", snapshot.evicted.symbols),
                ("stacks", snapshot.evicted.stacks),
            ]
            .iter()
            .map(|(what, n)| counter(&[("what", what)], *n as f64))
            .collect(),
        );

        let families = self
            .defs
            .iter()
            .zip(metrics)
            .map(|(def, metrics)| family_of(def.name, &def.help, def.kind, metrics))
            .collect();
        *self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = families;
    }
}

impl Metrics {
    /// The goblock families (seconds and waits by reason and class) and the
    /// gomutex ones (by lock, bounded), from the session's Go waits so far.
    fn go_waits(
        &mut self,
        snapshot: &Snapshot<'_>,
    ) -> ([Vec<proto::Metric>; 2], [Vec<proto::Metric>; 2]) {
        let mut by_reason: BTreeMap<(String, &'static str), (u64, u64)> = BTreeMap::new();
        for sample in &snapshot
            .profile(ProfileKind::GoBlock, Duration::ZERO)
            .samples
        {
            let reason = sample.reason.as_deref().unwrap_or("?").to_owned();
            let entry = by_reason
                .entry((reason, sample.state.unwrap_or("?")))
                .or_default();
            entry.0 += sample.count;
            entry.1 += sample.value;
        }
        let block_seconds = by_reason
            .iter()
            .map(|((reason, class), (_, ns))| {
                counter(&[("reason", reason), ("class", class)], seconds(*ns))
            })
            .collect();
        let block_waits = by_reason
            .iter()
            .map(|((reason, class), (n, _))| {
                counter(&[("reason", reason), ("class", class)], *n as f64)
            })
            .collect();
        let mut by_lock: HashMap<String, (u64, u64)> = HashMap::new();
        for sample in &snapshot
            .profile(ProfileKind::GoMutex, Duration::ZERO)
            .samples
        {
            let lock = sample.lock.as_deref().unwrap_or("?");
            let entry = by_lock.entry(lock.to_owned()).or_default();
            entry.0 += sample.count;
            entry.1 += sample.value;
        }
        let by_lock = self.go_locks.fold(
            by_lock,
            |(_, ns)| *ns,
            |sum, (count, ns)| {
                sum.0 += count;
                sum.1 += ns;
            },
        );
        let mutex_seconds = by_lock
            .iter()
            .map(|(lock, (_, ns))| counter(&[("lock", lock)], seconds(*ns)))
            .collect();
        let mutex_waits = by_lock
            .iter()
            .map(|(lock, (n, _))| counter(&[("lock", lock)], *n as f64))
            .collect();
        ([block_seconds, block_waits], [mutex_seconds, mutex_waits])
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

// ---------------------------------------------------------------------------
// The Go runtime's own metrics (`go_*`), read from a Go target's memory and
// named, typed and meant as Prometheus' client_golang exports them (its Go
// collector's default set, and its runtime/metrics names for the GC cycle
// counters), so that dashboards written for programs that export them work.
// `go_goroutines` is above, with the goroutine metrics. A registry
// collector of their own, rebuilt by `Metrics::update_go_runtime`.

/// What the Go runtime's statistics gave for one update.
#[derive(Debug, Clone, Default)]
pub struct GoRuntimeSample {
    /// The target's statistics can be read (its release and layout known).
    pub available: bool,
    /// The statistics now; `None` when the last read failed.
    pub stats: Option<GoStats>,
    /// Reads that failed so far.
    pub read_errors: u64,
}

/// The `go_*` families: name, help, type and label names.
const GO_RUNTIME_FAMILIES: &[(&str, &str, MetricType, &[&str])] = &[
    (
        "go_info",
        "Information about the Go environment: the Go version that built the target (read from its binary).",
        MetricType::GAUGE,
        &["version"],
    ),
    (
        "go_threads",
        "Number of OS threads created (the Go target's runtime.ThreadCreateProfile count, read from its memory).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_gc_duration_seconds",
        "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles of the Go target (quantiles over its last 256 pauses, as runtime/debug.ReadGCStats gives them; read from its memory).",
        MetricType::SUMMARY,
        &[],
    ),
    (
        "go_gc_cycles_total_gc_cycles_total",
        "Count of all completed GC cycles of the Go target (runtime.MemStats.NumGC).",
        MetricType::COUNTER,
        &[],
    ),
    (
        "go_gc_cycles_forced_gc_cycles_total",
        "Count of completed GC cycles of the Go target forced by the application (runtime.GC).",
        MetricType::COUNTER,
        &[],
    ),
    (
        "go_gc_cycles_automatic_gc_cycles_total",
        "Count of completed GC cycles of the Go target generated by the Go runtime.",
        MetricType::COUNTER,
        &[],
    ),
    (
        "go_gc_gogc_percent",
        "Heap size target percentage of the Go target (GOGC; -1 when the GC is off).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_gc_gomemlimit_bytes",
        "Go runtime memory limit of the Go target (GOMEMLIMIT; math.MaxInt64 when unset).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_sched_gomaxprocs_threads",
        "The current runtime.GOMAXPROCS setting of the Go target.",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_alloc_bytes",
        "Number of bytes allocated in heap and currently in use (/memory/classes/heap/objects:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_alloc_bytes_total",
        "Total number of bytes allocated in heap until now, even if released already (/gc/heap/allocs:bytes).",
        MetricType::COUNTER,
        &[],
    ),
    (
        "go_memstats_sys_bytes",
        "Number of bytes obtained from system (/memory/classes/total:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_lookups_total",
        "Total number of pointer lookups (always 0 since Go 1.17; kept for compatibility).",
        MetricType::COUNTER,
        &[],
    ),
    (
        "go_memstats_mallocs_total",
        "Total number of heap objects allocated, both live and gc-ed (/gc/heap/allocs:objects + /gc/heap/tiny/allocs:objects).",
        MetricType::COUNTER,
        &[],
    ),
    (
        "go_memstats_frees_total",
        "Total number of heap objects frees (/gc/heap/frees:objects + /gc/heap/tiny/allocs:objects).",
        MetricType::COUNTER,
        &[],
    ),
    (
        "go_memstats_heap_alloc_bytes",
        "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes (/memory/classes/heap/objects:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_heap_sys_bytes",
        "Number of heap bytes obtained from system (heap in use, released and free).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_heap_idle_bytes",
        "Number of heap bytes waiting to be used (/memory/classes/heap/released:bytes + /memory/classes/heap/free:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_heap_inuse_bytes",
        "Number of heap bytes that are in use (/memory/classes/heap/objects:bytes + /memory/classes/heap/unused:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_heap_released_bytes",
        "Number of heap bytes released to OS (/memory/classes/heap/released:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_heap_objects",
        "Number of currently allocated objects (/gc/heap/objects:objects).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_stack_inuse_bytes",
        "Number of bytes obtained from system for stack allocator in non-CGO environments (/memory/classes/heap/stacks:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_stack_sys_bytes",
        "Number of bytes obtained from system for stack allocator (/memory/classes/heap/stacks:bytes + /memory/classes/os-stacks:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_mspan_inuse_bytes",
        "Number of bytes in use by mspan structures (/memory/classes/metadata/mspan/inuse:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_mspan_sys_bytes",
        "Number of bytes used for mspan structures obtained from system (/memory/classes/metadata/mspan/inuse:bytes + /memory/classes/metadata/mspan/free:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_mcache_inuse_bytes",
        "Number of bytes in use by mcache structures (/memory/classes/metadata/mcache/inuse:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_mcache_sys_bytes",
        "Number of bytes used for mcache structures obtained from system (/memory/classes/metadata/mcache/inuse:bytes + /memory/classes/metadata/mcache/free:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_buck_hash_sys_bytes",
        "Number of bytes used by the profiling bucket hash table (/memory/classes/profiling/buckets:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_gc_sys_bytes",
        "Number of bytes used for garbage collection system metadata (/memory/classes/metadata/other:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_other_sys_bytes",
        "Number of bytes used for other system allocations (/memory/classes/other:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_next_gc_bytes",
        "Number of heap bytes when next garbage collection will take place (/gc/heap/goal:bytes).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "go_memstats_last_gc_time_seconds",
        "Number of seconds since 1970 of last garbage collection.",
        MetricType::GAUGE,
        &[],
    ),
    (
        "profiler_go_stats_available",
        "1 when the Go target's runtime statistics (the go_* metrics) can be read from its memory, 0 when its Go release or binary is not one they can be read from (the log and /healthz say why).",
        MetricType::GAUGE,
        &[],
    ),
    (
        "profiler_go_stats_read_errors_total",
        "Reads of the Go target's runtime statistics that failed (the process exited, or the statistics did not settle); the go_* values are left out until a read succeeds.",
        MetricType::COUNTER,
        &[],
    ),
];

/// The `go_*` metrics: the families last built, and the goroutine count
/// for `go_goroutines`.
struct GoRuntime {
    descs: Vec<Desc>,
    published: Arc<Mutex<Vec<MetricFamily>>>,
    goroutines: Option<u64>,
}

impl GoRuntime {
    fn new() -> prometheus::Result<GoRuntime> {
        let descs = GO_RUNTIME_FAMILIES
            .iter()
            .map(|(name, help, _, labels)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    labels.iter().map(|l| (*l).to_owned()).collect(),
                    HashMap::new(),
                )
            })
            .collect::<prometheus::Result<Vec<Desc>>>()?;
        Ok(GoRuntime {
            descs,
            published: Arc::new(Mutex::new(Vec::new())),
            goroutines: None,
        })
    }

    /// The registry's view of them.
    fn collector(&self) -> Published {
        Published {
            descs: self.descs.clone(),
            families: self.published.clone(),
        }
    }

    fn goroutines(&self) -> Option<u64> {
        self.goroutines
    }
}

impl Metrics {
    /// Rebuilds the `go_*` families from the Go runtime's statistics
    /// (`None` for a target that is not a Go program: no families); call it
    /// before [`Metrics::update`], which takes `go_goroutines` from them.
    pub fn update_go_runtime(&mut self, sample: Option<&GoRuntimeSample>) {
        let stats = sample.and_then(|s| s.stats.as_ref());
        self.go_runtime.goroutines = stats.and_then(|s| s.goroutines);
        let families = match sample {
            None => Vec::new(),
            Some(sample) => go_runtime_metrics(sample)
                .into_iter()
                .zip(GO_RUNTIME_FAMILIES)
                .map(|(metrics, (name, help, kind, _))| family_of(name, help, *kind, metrics))
                .collect(),
        };
        *self
            .go_runtime
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = families;
    }
}

/// The series of each of [`GO_RUNTIME_FAMILIES`], in its order (none for
/// a value not read).
fn go_runtime_metrics(sample: &GoRuntimeSample) -> Vec<Vec<proto::Metric>> {
    let status = [
        vec![gauge(&[], f64::from(u8::from(sample.available)))],
        vec![counter(&[], sample.read_errors as f64)],
    ];
    let Some(s) = &sample.stats else {
        let mut out = vec![Vec::new(); GO_RUNTIME_FAMILIES.len() - status.len()];
        out.extend(status);
        return out;
    };
    let bytes = |n: u64| vec![gauge(&[], n as f64)];
    let maybe = |n: Option<u64>| n.map(bytes).unwrap_or_default();
    let total = |n: u64| vec![counter(&[], n as f64)];
    let mut out = vec![
        vec![gauge(&[("version", &s.go_version)], 1.0)],
        maybe(s.threads),
        vec![pause_summary(s)],
        total(s.gc_cycles),
        total(s.forced_gc_cycles),
        total(s.gc_cycles.saturating_sub(s.forced_gc_cycles)),
        vec![gauge(&[], s.gogc_percent as f64)],
        bytes(s.gomemlimit_bytes),
        maybe(s.gomaxprocs),
        bytes(s.heap_alloc_bytes),
        total(s.alloc_bytes_total),
        bytes(s.sys_bytes),
        total(0),
        total(s.mallocs_total),
        total(s.frees_total),
        bytes(s.heap_alloc_bytes),
        bytes(s.heap_sys_bytes),
        bytes(s.heap_idle_bytes),
        bytes(s.heap_inuse_bytes),
        bytes(s.heap_released_bytes),
        bytes(s.heap_objects),
        bytes(s.stack_inuse_bytes),
        bytes(s.stack_sys_bytes),
        maybe(s.mspan_inuse_bytes),
        bytes(s.mspan_sys_bytes),
        maybe(s.mcache_inuse_bytes),
        bytes(s.mcache_sys_bytes),
        bytes(s.buck_hash_sys_bytes),
        bytes(s.gc_sys_bytes),
        bytes(s.other_sys_bytes),
        bytes(s.next_gc_bytes),
        vec![gauge(&[], seconds(s.last_gc_unix_ns))],
    ];
    out.extend(status);
    out
}

/// `go_gc_duration_seconds`: the quantiles 0, 0.25, 0.5, 0.75 and 1 of
/// the last pauses, their total and count, as client_golang builds it from
/// runtime/debug.ReadGCStats.
fn pause_summary(s: &GoStats) -> proto::Metric {
    let quantiles = [0.0, 0.25, 0.5, 0.75, 1.0]
        .into_iter()
        .zip(s.pause_quantiles())
        .map(|(q, ns)| {
            let mut quantile = proto::Quantile::default();
            quantile.set_quantile(q);
            quantile.set_value(seconds(ns));
            quantile
        })
        .collect();
    let mut summary = proto::Summary::default();
    summary.set_quantile(quantiles);
    summary.set_sample_count(s.gc_cycles);
    summary.set_sample_sum(seconds(s.gc_pause_total_ns));
    let mut metric = proto::Metric::default();
    metric.set_summary(summary);
    metric
}

fn with_labels(labels: &[(&str, &str)]) -> proto::Metric {
    let mut metric = proto::Metric::default();
    metric.set_label(
        labels
            .iter()
            .map(|(name, value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name((*name).to_owned());
                pair.set_value((*value).to_owned());
                pair
            })
            .collect(),
    );
    metric
}

fn gauge(labels: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut metric = with_labels(labels);
    let mut gauge = proto::Gauge::default();
    gauge.set_value(value);
    metric.set_gauge(gauge);
    metric
}

fn counter(labels: &[(&str, &str)], value: f64) -> proto::Metric {
    let mut metric = with_labels(labels);
    let mut counter = proto::Counter::default();
    counter.set_value(value);
    metric.set_counter(counter);
    metric
}

/// A histogram from the kernel's log2 buckets (bucket `i` counts values in
/// `[2^i, 2^(i+1))` ns) and the sum of all values in nanoseconds.
fn histogram(log2_buckets: &[u64], sum_ns: u64) -> proto::Metric {
    let mut buckets = Vec::new();
    let mut cumulative = 0u64;
    let mut consumed = 0usize;
    for exponent in BUCKET_EXPONENTS {
        // Upper bound 2^exponent ns holds every bucket below that exponent.
        let upto = exponent as usize;
        while consumed < upto && consumed < log2_buckets.len() {
            cumulative += log2_buckets[consumed];
            consumed += 1;
        }
        let mut bucket = proto::Bucket::default();
        bucket.set_upper_bound((1u64 << exponent) as f64 / 1e9);
        bucket.set_cumulative_count(cumulative);
        buckets.push(bucket);
    }
    let count: u64 = log2_buckets.iter().sum();
    let mut histogram = proto::Histogram::default();
    histogram.set_bucket(buckets);
    histogram.set_sample_count(count);
    histogram.set_sample_sum(seconds(sum_ns));
    let mut metric = proto::Metric::default();
    metric.set_histogram(histogram);
    metric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_upper_bounds() {
        let mut log2 = vec![0u64; 64];
        log2[3] = 2; // 8..16 ns: in the first exposed bucket (le 2^10 ns)
        log2[10] = 5; // 1024..2048 ns: le 2^11 ns
        log2[40] = 1; // beyond the last exposed bucket: +Inf only
        let metric = histogram(&log2, 1_000);
        let h = metric.get_histogram();
        let buckets = h.get_bucket();
        assert_eq!(buckets.len(), BUCKET_EXPONENTS.count());
        assert_eq!(buckets[0].cumulative_count(), 2);
        assert!((buckets[0].upper_bound() - 1024e-9).abs() < 1e-15);
        assert_eq!(buckets[1].cumulative_count(), 7);
        assert_eq!(buckets[buckets.len() - 1].cumulative_count(), 7);
        assert_eq!(h.get_sample_count(), 8);
        assert!((h.get_sample_sum() - 1e-6).abs() < 1e-15);
    }

    /// The `go_*` series: one list per family, in order, for a read, a
    /// failed read and a release that cannot be read.
    #[test]
    fn go_runtime_series_match_their_families() {
        let sample = |stats| GoRuntimeSample {
            available: true,
            stats,
            read_errors: 3,
        };
        let (registry, mut metrics) = Metrics::registry(5, 99).expect("registry");
        let names = |registry: &Registry| -> Vec<String> {
            registry
                .gather()
                .iter()
                .map(|f| f.name().to_owned())
                .filter(|n| n.starts_with("go_") || n.starts_with("profiler_go_stats"))
                .collect()
        };
        // Not a Go program: nothing.
        metrics.update_go_runtime(None);
        assert!(names(&registry).is_empty());
        // A failed read: the status only.
        let failed = sample(None);
        assert_eq!(go_runtime_metrics(&failed).len(), GO_RUNTIME_FAMILIES.len());
        metrics.update_go_runtime(Some(&failed));
        assert_eq!(
            names(&registry),
            vec![
                "profiler_go_stats_available",
                "profiler_go_stats_read_errors_total"
            ]
        );
        // A read: every family, a summary with five quantiles.
        let stats = GoStats {
            go_version: "go1.27.3".to_owned(),
            goroutines: Some(12),
            threads: Some(7),
            gomaxprocs: Some(2),
            gogc_percent: 100,
            gomemlimit_bytes: i64::MAX as u64,
            heap_alloc_bytes: 1 << 20,
            alloc_bytes_total: 1 << 30,
            mallocs_total: 1000,
            frees_total: 900,
            heap_objects: 100,
            heap_inuse_bytes: 2 << 20,
            heap_idle_bytes: 1 << 20,
            heap_released_bytes: 1 << 19,
            heap_sys_bytes: 3 << 20,
            stack_inuse_bytes: 1 << 16,
            stack_sys_bytes: 1 << 16,
            mspan_inuse_bytes: None,
            mspan_sys_bytes: 1 << 14,
            mcache_inuse_bytes: Some(1 << 12),
            mcache_sys_bytes: 1 << 14,
            buck_hash_sys_bytes: 1 << 12,
            gc_sys_bytes: 1 << 18,
            other_sys_bytes: 1 << 18,
            sys_bytes: 8 << 20,
            next_gc_bytes: 4 << 20,
            last_gc_unix_ns: 1_700_000_000_500_000_000,
            gc_cycles: 9,
            forced_gc_cycles: 2,
            gc_pause_total_ns: 4_500,
            recent_pauses_ns: vec![500, 1000, 3000],
        };
        let read = sample(Some(stats));
        let series = go_runtime_metrics(&read);
        assert_eq!(series.len(), GO_RUNTIME_FAMILIES.len());
        metrics.update_go_runtime(Some(&read));
        let gathered = registry.gather();
        let family = |name: &str| {
            gathered
                .iter()
                .find(|f| f.name() == name)
                .unwrap_or_else(|| panic!("no {name}"))
        };
        assert_eq!(
            family("go_gc_duration_seconds").get_metric()[0]
                .get_summary()
                .get_quantile()
                .len(),
            5
        );
        assert!(
            gathered
                .iter()
                .all(|f| f.name() != "go_memstats_mspan_inuse_bytes")
        );
        // go_goroutines comes from the runtime's count.
        assert_eq!(metrics.go_runtime.goroutines(), Some(12));
        let mut text = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&gathered, &mut text)
            .expect("encodes");
        assert!(text.contains("go_info{version=\"go1.27.3\"} 1"), "{text}");
        for line in [
            "go_gc_duration_seconds{quantile=\"1\"} 0.000003",
            "go_gc_duration_seconds_sum 0.0000045",
            "go_gc_duration_seconds_count 9",
            "go_gc_cycles_automatic_gc_cycles_total 7",
            "go_memstats_last_gc_time_seconds 1700000000.5",
        ] {
            assert!(text.contains(line), "no {line} in {text}");
        }
        assert!(
            text.contains("go_gc_duration_seconds{quantile=\"0.5\"} 0.000001"),
            "{text}"
        );
    }

    #[test]
    fn labels_beyond_the_bound_fold_into_other_and_stay_put() {
        let mut labels = BoundedLabels::new(2);
        let first = labels.fold(
            HashMap::from([("a".to_owned(), 5u64), ("b".to_owned(), 9)]),
            |n| *n,
            |sum, n| *sum += n,
        );
        assert_eq!(first, vec![("a".to_owned(), 5), ("b".to_owned(), 9)]);
        // "c" is now the largest, but the two labels are taken: it is other,
        // and a and b keep their series.
        let later = labels.fold(
            HashMap::from([
                ("a".to_owned(), 6u64),
                ("b".to_owned(), 9),
                ("c".to_owned(), 50),
                ("d".to_owned(), 1),
            ]),
            |n| *n,
            |sum, n| *sum += n,
        );
        assert_eq!(
            later,
            vec![
                ("a".to_owned(), 6),
                ("b".to_owned(), 9),
                ("other".to_owned(), 51)
            ]
        );
    }
}
