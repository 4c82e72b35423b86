//! `profiler goroutines`: goroutine leaks in a running Go program, found
//! from outside. Successive snapshots of every goroutine (see
//! [`crate::go::goroutines`]) are compared by creation site (the `go`
//! statement): how many live now, how many started and ended between the
//! snapshots, how fast the live count grows, the oldest wait and its
//! reason. Leak suspects come first: sites whose live count keeps rising
//! while their goroutines stay blocked on channels, select or sync (or
//! that the runtime itself marked leaked, Go 1.26+). `--fail-on-growth N`
//! fails the command when a site grows faster than N a minute, for CI.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    go::{
        goroutines::{GoRuntime, GoroutineSnapshot},
        listing::{self, Site, SiteCount},
    },
    procfs,
};

/// The checked settings of one `profiler goroutines`.
#[derive(Debug, Clone)]
pub struct GoroutinesConfig {
    pub pid: u32,
    /// How long to watch.
    pub duration: Duration,
    /// Time between snapshots.
    pub interval: Duration,
    /// Fail when a creation site grows faster than this many goroutines a
    /// minute.
    pub fail_on_growth: Option<f64>,
    /// How many creation sites to list.
    pub top: usize,
}

/// One creation site over the whole watch.
#[derive(Debug, Default)]
struct SiteHistory {
    /// Live goroutines at each snapshot.
    live: Vec<usize>,
    /// Goroutines seen at any snapshot, and those in the first.
    seen: HashSet<u64>,
    first: HashSet<u64>,
    /// The last snapshot's count.
    last: SiteCount,
}

impl SiteHistory {
    /// Goroutines that started after the first snapshot (as far as
    /// snapshots saw them).
    fn started(&self) -> usize {
        self.seen.difference(&self.first).count()
    }

    /// Goroutines seen that are gone at the last snapshot.
    fn ended(&self) -> usize {
        let now: HashSet<u64> = self.last.goids.iter().copied().collect();
        self.seen.difference(&now).count()
    }

    /// Live goroutines gained per minute from the first snapshot to the
    /// last.
    fn growth_per_minute(&self, elapsed: Duration) -> f64 {
        let (Some(first), Some(last)) = (self.live.first(), self.live.last()) else {
            return 0.0;
        };
        let minutes = elapsed.as_secs_f64() / 60.0;
        if minutes <= 0.0 {
            return 0.0;
        }
        (*last as f64 - *first as f64) / minutes
    }

    /// A leak suspect: its live count rose over the watch, at most a
    /// quarter of the steps going down, and most of its goroutines wait on
    /// other goroutines (or the runtime found them leaked).
    fn suspect(&self) -> bool {
        if self.last.leaked > 0 {
            return true;
        }
        let (Some(first), Some(last)) = (self.live.first(), self.live.last()) else {
            return false;
        };
        let falls = self.live.windows(2).filter(|w| w[1] < w[0]).count();
        let steps = self.live.len().saturating_sub(1).max(1);
        last > first && falls * 4 <= steps && self.last.blocked * 2 > self.last.goids.len()
    }
}

/// Watches one process's goroutines and prints what grew.
pub fn run(config: GoroutinesConfig) -> anyhow::Result<()> {
    let pid = config.pid;
    let name = procfs::read_comm(pid, pid).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!(
            "no process with PID {pid} exists; check the id with `ps -p {pid}` or `pgrep NAME`"
        ),
        _ => anyhow::Error::new(err).context(format!("cannot read /proc/{pid}/comm")),
    })?;
    let runtime = GoRuntime::for_process(pid)
        .with_context(|| format!("cannot read the goroutines of PID {pid} ({name})"))?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let started = Instant::now();
    let mut sites: HashMap<Site, SiteHistory> = HashMap::new();
    let mut snapshots = 0usize;
    let mut skipped = 0usize;
    let mut took: Vec<Duration> = Vec::new();
    let mut last: Option<GoroutineSnapshot> = None;
    let ended_by = tokio.block_on(async {
        let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = tokio::time::Instant::now() + config.duration;
        loop {
            tokio::select! {
                _ = sigint.recv() => break Ok::<_, anyhow::Error>("stopped by Ctrl-C"),
                _ = sigterm.recv() => break Ok("stopped by SIGTERM"),
                () = tokio::time::sleep_until(deadline), if snapshots >= 2 => break Ok("duration reached"),
                _ = tick.tick() => {
                    let reading = Instant::now();
                    let snapshot = match runtime.snapshot() {
                        Ok(snapshot) => snapshot,
                        Err(_) if !procfs::is_alive(pid) => break Ok("the target exited"),
                        Err(err) => break Err(anyhow::Error::new(err)
                            .context(format!("cannot read the goroutines of PID {pid}"))),
                    };
                    took.push(reading.elapsed());
                    snapshots += 1;
                    skipped += snapshot.skipped;
                    let counts = listing::by_site(&runtime, &snapshot);
                    for history in sites.values_mut() {
                        history.live.push(0);
                    }
                    for (site, count) in counts {
                        // A site first seen now had none at the earlier
                        // snapshots; its slot for this one is set below.
                        let history = sites.entry(site).or_insert_with(|| SiteHistory {
                            live: vec![0; snapshots],
                            ..SiteHistory::default()
                        });
                        if let Some(live) = history.live.last_mut() {
                            *live = count.goids.len();
                        }
                        if snapshots == 1 {
                            history.first.extend(count.goids.iter().copied());
                        }
                        history.seen.extend(count.goids.iter().copied());
                        history.last = count;
                    }
                    // Sites with no goroutine now keep their history, empty.
                    for history in sites.values_mut() {
                        if history.live.last() == Some(&0) {
                            history.last = SiteCount::default();
                        }
                    }
                    last = Some(snapshot);
                }
            }
        }
    })?;
    let elapsed = started.elapsed();
    let Some(last) = last else {
        bail!("no snapshot of PID {pid} was taken ({ended_by})");
    };
    let report = render(&mut RenderInput {
        pid,
        name: &name,
        runtime: &runtime,
        last: &last,
        sites: &sites,
        snapshots,
        skipped,
        elapsed,
        ended_by,
        top: config.top,
        took: &mut took,
    });
    print!("{report}");
    if let Some(limit) = config.fail_on_growth {
        let worst = sites
            .iter()
            .map(|(site, h)| (site, h.growth_per_minute(elapsed)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((site, growth)) = worst
            && growth > limit
        {
            bail!(
                "goroutines created at {site} grew by {growth:.0} a minute, above --fail-on-growth {limit}"
            );
        }
    }
    Ok(())
}

struct RenderInput<'a> {
    pid: u32,
    name: &'a str,
    runtime: &'a GoRuntime,
    last: &'a GoroutineSnapshot,
    sites: &'a HashMap<Site, SiteHistory>,
    snapshots: usize,
    skipped: usize,
    elapsed: Duration,
    ended_by: &'a str,
    top: usize,
    /// How long each snapshot took to read.
    took: &'a mut Vec<Duration>,
}

fn render(input: &mut RenderInput<'_>) -> String {
    let mut out = String::new();
    let live = listing::program_goroutines(input.last).count();
    let (major, minor) = input.runtime.version();
    input.took.sort();
    let median = input
        .took
        .get(input.took.len() / 2)
        .copied()
        .unwrap_or_default();
    let slowest = input.took.last().copied().unwrap_or_default();
    let _ = writeln!(
        out,
        "PID {} ({}), Go {major}.{minor}: {live} goroutines now (as runtime.NumGoroutine counts them); {} snapshots over {:.1} s, {}; {} goroutine reads skipped (changed while read); a snapshot took {:.1} ms (slowest {:.1} ms)",
        input.pid,
        input.name,
        input.snapshots,
        input.elapsed.as_secs_f64(),
        input.ended_by,
        input.skipped,
        median.as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3
    );
    let mut ranked: Vec<(&Site, &SiteHistory)> = input.sites.iter().collect();
    ranked.sort_by(|a, b| {
        b.1.suspect()
            .cmp(&a.1.suspect())
            .then_with(|| {
                b.1.growth_per_minute(input.elapsed)
                    .total_cmp(&a.1.growth_per_minute(input.elapsed))
            })
            .then_with(|| b.1.last.goids.len().cmp(&a.1.last.goids.len()))
            .then_with(|| a.0.cmp(b.0))
    });
    let suspects: Vec<&(&Site, &SiteHistory)> =
        ranked.iter().filter(|(_, h)| h.suspect()).collect();
    if suspects.is_empty() {
        let _ = writeln!(
            out,
            "leak suspects: none (no creation site kept growing while blocked)"
        );
    } else {
        let _ = writeln!(
            out,
            "leak suspects (live count rising while blocked on other goroutines):"
        );
        for (site, history) in &suspects {
            let _ = writeln!(out, "  {site}: {}", line(history, input.elapsed));
        }
    }
    let _ = writeln!(
        out,
        "creation sites (live now, started, ended, growth, oldest wait):"
    );
    for (site, history) in ranked.iter().take(input.top) {
        let _ = writeln!(out, "  {site}: {}", line(history, input.elapsed));
    }
    if ranked.len() > input.top {
        let _ = writeln!(
            out,
            "  ... and {} more sites (--top)",
            ranked.len() - input.top
        );
    }
    out
}

fn line(history: &SiteHistory, elapsed: Duration) -> String {
    let mut text = format!(
        "{} live, {} started, {} ended, {:+.0}/min",
        history.last.goids.len(),
        history.started(),
        history.ended(),
        history.growth_per_minute(elapsed)
    );
    if let Some((waited, state)) = &history.last.oldest {
        let _ = write!(
            text,
            ", oldest waiting {:.0} s [{state}]",
            waited.as_secs_f64()
        );
    }
    if history.last.leaked > 0 {
        let _ = write!(
            text,
            ", {} marked leaked by the runtime",
            history.last.leaked
        );
    }
    text
}
