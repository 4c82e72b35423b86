//! `profiler serve --window 60s` over a long run of a workload whose
//! stacks never settle (stack_churn: random call paths up to 24 deep, a
//! contended mutex, short sleeps, a thread created and joined every few
//! ms), scraped every 10 s: the profiler's RSS and CPU per minute stay flat,
//! its counters never go down, and it drops under 1% of the events.
//! `serve_stays_flat` runs PROFILER_SOAK_MINUTES (30 by default) and is
//! ignored unless asked for (as root: `PROFILER_BIN=target/release/profiler
//! cargo test --release -p tests --test soak -- --ignored`);
//! `serve_short_soak` runs 2 minutes with loose bounds. `cargo xtask bench
//! soak` prints the same figures without asserting them.

use std::time::{Duration, Instant};

use tests::*;

/// How often /metrics is scraped.
const SCRAPE_EVERY: Duration = Duration::from_secs(10);
const SCRAPES_PER_MINUTE: u64 = 6;

/// What one minute of the soak measured.
#[derive(Debug, Clone, Copy)]
struct Minute {
    /// The profiler's RSS at the end of the minute, KiB.
    rss_kib: u64,
    /// The profiler's CPU seconds in the minute.
    cpu: f64,
    /// Events seen so far (CPU samples, switches back in, futex waits).
    events: f64,
    /// Events dropped so far (every reason).
    drops: f64,
}

/// The events the metrics count: CPU samples (every thread), returns to a
/// CPU after a switch (the run-queue delay histogram's count) and futex
/// waits (the wait-duration histogram's count).
fn events(body: &str) -> f64 {
    metric_sum(body, "profiler_cpu_samples_total").0
        + metric_sum(body, "profiler_runqueue_delay_seconds_count").0
        + metric_sum(body, "profiler_futex_wait_duration_seconds_count").0
}

fn drops(body: &str) -> f64 {
    metric_sum(body, "profiler_dropped_events_total").0
}

/// Runs the soak for `minutes` and returns each minute's figures (printed
/// as a table as well).
fn soak(minutes: u64) -> Vec<Minute> {
    let binary = build_workload("stack_churn", NO_FRAME_POINTER_FLAGS);
    let dir = scratch_dir("soak");
    let workload = start_workload(&binary, &["0"]);
    let target = workload.0.id();
    let server = Server::on_loopback_with(target, &dir, &["--window", "60s"]);
    let pid = server.child.id();
    let started = Instant::now();
    let mut cpu_before = process_cpu_seconds(pid).expect("the server runs");
    let mut last_samples = 0.0;
    let mut last_events = 0.0;
    let mut figures: Vec<Minute> = Vec::new();
    let mut scrape = 0u64;
    while (figures.len() as u64) < minutes {
        scrape += 1;
        std::thread::sleep(
            (started + SCRAPE_EVERY * scrape as u32).saturating_duration_since(Instant::now()),
        );
        assert!(
            process_alive(target),
            "the workload died after {scrape} scrapes"
        );
        assert!(
            process_alive(pid),
            "the server died after {scrape} scrapes: {}",
            server.stderr()
        );
        let metrics = server.get("/metrics");
        assert_eq!(metrics.status, 200, "{}", metrics.body);
        let body = metrics.body;
        assert_eq!(
            metric_value(&body, "profiler_target_up"),
            Some(1.0),
            "scrape {scrape}:\n{body}"
        );
        let samples = metric_sum(&body, "profiler_cpu_samples_total").0;
        let seen = events(&body);
        assert!(
            samples >= last_samples && seen >= last_events,
            "counters went down at scrape {scrape} (--window must not shrink them): CPU samples {last_samples} -> {samples}, events {last_events} -> {seen}"
        );
        (last_samples, last_events) = (samples, seen);
        if scrape.is_multiple_of(SCRAPES_PER_MINUTE) {
            let cpu_now = process_cpu_seconds(pid).expect("the server runs");
            let minute = Minute {
                rss_kib: process_rss_kib(pid).expect("the server's RSS"),
                cpu: cpu_now - cpu_before,
                events: seen,
                drops: drops(&body),
            };
            cpu_before = cpu_now;
            let (events_then, drops_then) = figures
                .last()
                .map_or((0.0, 0.0), |m: &Minute| (m.events, m.drops));
            eprintln!(
                "soak minute {:>3}: RSS {:>7.1} MiB, CPU {:>6.2} s, events {:>9.0}, drops {:>7.0} ({} bytes of metrics)",
                figures.len() + 1,
                minute.rss_kib as f64 / 1024.0,
                minute.cpu,
                minute.events - events_then,
                minute.drops - drops_then,
                body.len()
            );
            assert!(
                minute.events > events_then,
                "no new events in minute {}: {body}",
                figures.len() + 1
            );
            figures.push(minute);
        }
    }
    drop(server);
    drop(workload);
    assert_nothing_left_loaded();
    let (first, last) = (figures[0], figures[figures.len() - 1]);
    eprintln!(
        "soak of {minutes} minutes: last minute / first: RSS {:.2}x, CPU {:.2}x; {:.0} events, {:.0} dropped ({:.3}%)",
        last.rss_kib as f64 / first.rss_kib.max(1) as f64,
        last.cpu / first.cpu.max(1e-3),
        last.events,
        last.drops,
        100.0 * last.drops / last.events.max(1.0)
    );
    figures
}

/// Drops under 1% of the events, over the whole run.
fn check_drops(figures: &[Minute]) {
    let last = figures[figures.len() - 1];
    assert!(
        last.drops < 0.01 * last.events,
        "{:.0} events dropped of {:.0} ({:.2}%), 1% allowed: {figures:?}",
        last.drops,
        last.events,
        100.0 * last.drops / last.events.max(1.0)
    );
}

#[test]
#[ignore = "a long soak (PROFILER_SOAK_MINUTES, 30 by default): run with --ignored"]
fn serve_stays_flat() {
    require!(bpf());
    let minutes: u64 = std::env::var("PROFILER_SOAK_MINUTES")
        .ok()
        .map(|m| {
            m.trim()
                .parse()
                .unwrap_or_else(|_| panic!("PROFILER_SOAK_MINUTES={m:?} is not a whole number"))
        })
        .unwrap_or(30);
    assert!(minutes >= 2, "PROFILER_SOAK_MINUTES must be at least 2");
    let figures = soak(minutes);
    // Minute 5 (or the one before the last in a shorter soak): the window
    // (60 s) has long been full by then.
    let reference_minute = 5.min(minutes - 1) as usize;
    let reference = figures[reference_minute - 1];
    let last = figures[figures.len() - 1];
    assert!(
        last.rss_kib as f64 <= 1.2 * reference.rss_kib as f64,
        "RSS grew from {:.1} MiB in minute {reference_minute} to {:.1} MiB in minute {minutes} (20% allowed): {figures:?}",
        reference.rss_kib as f64 / 1024.0,
        last.rss_kib as f64 / 1024.0
    );
    assert!(
        last.cpu <= 1.2 * reference.cpu + 0.3,
        "CPU per minute grew from {:.2} s in minute {reference_minute} to {:.2} s in minute {minutes} (20% allowed): {figures:?}",
        reference.cpu,
        last.cpu
    );
    check_drops(&figures);
}

#[test]
fn serve_short_soak() {
    require!(bpf());
    let figures = soak(2);
    let (first, second) = (figures[0], figures[1]);
    // Loose: the first minute has the start-up and fills the 60 s window.
    assert!(
        second.rss_kib < 2 * first.rss_kib,
        "RSS doubled in the second minute: {:.1} MiB then {:.1} MiB",
        first.rss_kib as f64 / 1024.0,
        second.rss_kib as f64 / 1024.0
    );
    assert!(
        second.cpu <= 1.5 * first.cpu + 1.0,
        "CPU per minute grew from {:.2} s to {:.2} s",
        first.cpu,
        second.cpu
    );
    check_drops(&figures);
}
