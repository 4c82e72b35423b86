//! `cargo xtask bench soak [--minutes N]`: `profiler serve --window 60s` on
//! stack_churn (random call paths up to 24 deep, a contended mutex, short
//! sleeps, a thread created and joined every few ms) for N minutes, /metrics
//! scraped every 10 s: a table per minute of the profiler's RSS and CPU
//! time, the events it saw and dropped and the slowest scrape, then the
//! ratios of the last minute to the first (and to the second, the first
//! holding the start-up and the filling of the window). Never asserted
//! (`tests/tests/soak.rs` asserts a bound).

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    build_profiler,
    measure::{build_workload, cpu_of},
};

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// Minutes to run.
    #[arg(long, default_value_t = 5)]
    minutes: u64,
}

/// How often /metrics is scraped.
const SCRAPE_EVERY: Duration = Duration::from_secs(10);
const SCRAPES_PER_MINUTE: u32 = 6;

/// A child stopped (SIGTERM, then SIGKILL after 10 s) and reaped when
/// dropped.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.0.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// What one minute measured.
#[derive(Debug, Clone, Copy, Default)]
struct Minute {
    rss_mib: f64,
    /// The profiler's CPU seconds in the minute.
    cpu: f64,
    /// Events seen and dropped so far.
    events: f64,
    drops: f64,
    /// The slowest scrape of the minute.
    slowest_scrape: Duration,
    metrics_bytes: usize,
}

/// The sum of every series of the family `name` (`name VALUE` and
/// `name{...} VALUE` lines).
fn sum_of(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                &rest[rest.rfind('}')? + 1..]
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// Events the metrics count: CPU samples, returns to a CPU after a switch
/// (the run-queue delay histogram's count) and futex waits.
fn events_of(text: &str) -> f64 {
    sum_of(text, "profiler_cpu_samples_total")
        + sum_of(text, "profiler_runqueue_delay_seconds_count")
        + sum_of(text, "profiler_futex_wait_duration_seconds_count")
}

fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib / 1024.0)
}

pub fn run(args: &SoakArgs) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!(
            "the soak benchmark attaches eBPF programs: run it as root (sudo -E cargo xtask bench soak)"
        );
    }
    if args.minutes == 0 {
        bail!("--minutes must be at least 1");
    }
    // `PROFILER_BIN` picks a binary built elsewhere (as the tests do).
    let profiler = match std::env::var_os("PROFILER_BIN") {
        Some(path) => PathBuf::from(path),
        None => build_profiler()?,
    };
    let workload = build_workload("stack_churn", &["-O2", "-g", "-fomit-frame-pointer"])?;
    let target = Stopped(
        Command::new(&workload)
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", workload.display()))?,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free port")?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path =
        std::env::temp_dir().join(format!("profiler-bench-soak-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let server = Stopped(
        Command::new(&profiler)
            .args([
                "serve",
                "--pid",
                &target.0.id().to_string(),
                "--window",
                "60s",
            ])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start profiler serve")?,
    );
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.get(format!("{base}/healthz")).call().is_err() {
        if Instant::now() > deadline {
            bail!(
                "profiler serve did not become healthy within 30 s: {}",
                log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = server.0.id();
    println!(
        "bench soak: profiler serve --window 60s on stack_churn (3 threads of random paths, a contended mutex, short sleeps, thread churn) for {} minutes, /metrics every {} s",
        args.minutes,
        SCRAPE_EVERY.as_secs()
    );
    println!(
        "  {:>6} {:>9} {:>8} {:>11} {:>8} {:>7} {:>10} {:>9}",
        "minute", "RSS MiB", "CPU s", "events", "drops", "drop %", "scrape ms", "metrics"
    );
    let started = Instant::now();
    let mut cpu_before = cpu_of(pid)?;
    let mut minutes: Vec<Minute> = Vec::new();
    let mut current = Minute::default();
    let mut scrape = 0u32;
    while (minutes.len() as u64) < args.minutes {
        scrape += 1;
        std::thread::sleep(
            (started + SCRAPE_EVERY * scrape).saturating_duration_since(Instant::now()),
        );
        let asked = Instant::now();
        let body = agent
            .get(format!("{base}/metrics"))
            .call()
            .with_context(|| format!("cannot scrape /metrics: {}", log_text()))?
            .body_mut()
            .read_to_string()
            .context("cannot read /metrics")?;
        current.slowest_scrape = current.slowest_scrape.max(asked.elapsed());
        if !scrape.is_multiple_of(SCRAPES_PER_MINUTE) {
            continue;
        }
        let cpu_now = cpu_of(pid)?;
        let minute = Minute {
            rss_mib: rss_mib(pid)?,
            cpu: cpu_now.saturating_sub(cpu_before).as_secs_f64(),
            events: events_of(&body),
            drops: sum_of(&body, "profiler_dropped_events_total"),
            metrics_bytes: body.len(),
            ..current
        };
        cpu_before = cpu_now;
        let (events_then, drops_then) = minutes.last().map_or((0.0, 0.0), |m| (m.events, m.drops));
        let (events, drops) = (minute.events - events_then, minute.drops - drops_then);
        println!(
            "  {:>6} {:>9.1} {:>8.2} {:>11.0} {:>8.0} {:>7.3} {:>10.1} {:>9}",
            minutes.len() + 1,
            minute.rss_mib,
            minute.cpu,
            events,
            drops,
            100.0 * drops / events.max(1.0),
            minute.slowest_scrape.as_secs_f64() * 1e3,
            minute.metrics_bytes
        );
        minutes.push(minute);
        current = Minute::default();
    }
    drop(server);
    drop(target);
    let _ = std::fs::remove_file(&log_path);
    let first = minutes[0];
    let last = minutes[minutes.len() - 1];
    println!(
        "  last minute / first: RSS {:.2}x, CPU {:.2}x",
        last.rss_mib / first.rss_mib.max(1e-3),
        last.cpu / first.cpu.max(1e-3)
    );
    if let Some(second) = minutes.get(1).filter(|_| minutes.len() > 2) {
        println!(
            "  last minute / second: RSS {:.2}x, CPU {:.2}x",
            last.rss_mib / second.rss_mib.max(1e-3),
            last.cpu / second.cpu.max(1e-3)
        );
    }
    println!(
        "  in all: {:.0} events, {:.0} dropped ({:.3}%); profiler CPU {:.2}% of a core on average",
        last.events,
        last.drops,
        100.0 * last.drops / last.events.max(1.0),
        100.0 * minutes.iter().map(|m| m.cpu).sum::<f64>() / (60.0 * minutes.len() as f64)
    );
    Ok(())
}
