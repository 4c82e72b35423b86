//! `profiler serve` following a service across restarts (issue 14): by name
//! (`--comm NAME`) and from a first PID (`--pid P --follow`). The service is
//! killed and started again with a new PID; /metrics must say it went down
//! and came back (`profiler_target_up`, `profiler_target_processes`,
//! `profiler_target_restarts_total`), keep its counters monotonic, label the
//! new process, and the CPU profile over HTTP must be of the new process.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tests::*;

/// A copy of a workload under a name of its own (so its comm matches
/// nothing else on the machine), removed when dropped. Kept under
/// `target/` (the temp dir may be mounted noexec).
struct NamedCopy {
    path: PathBuf,
    comm: String,
}

impl NamedCopy {
    fn of(binary: &Path, prefix: &str) -> NamedCopy {
        // A comm is at most 15 bytes.
        let comm: String = format!("{prefix}{}", std::process::id())
            .chars()
            .take(15)
            .collect();
        let path = binary.with_file_name(&comm);
        std::fs::copy(binary, &path)
            .unwrap_or_else(|err| panic!("copy {} to {}: {err}", binary.display(), path.display()));
        NamedCopy { path, comm }
    }
}

impl Drop for NamedCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Scrapes /metrics, checking every time that the CPU samples counter
/// (summed over its series) never goes down.
struct Scraper<'a> {
    server: &'a Server,
    last_cpu: f64,
    scrapes: u32,
}

impl Scraper<'_> {
    fn scrape(&mut self) -> String {
        let metrics = self.server.get("/metrics");
        assert_eq!(metrics.status, 200, "{}", metrics.body);
        let (cpu, _) = metric_sum(&metrics.body, "profiler_cpu_samples_total");
        assert!(
            cpu >= self.last_cpu,
            "profiler_cpu_samples_total went down from {} to {cpu} (scrape {}):\n{}",
            self.last_cpu,
            self.scrapes,
            metrics.body
        );
        self.last_cpu = cpu;
        self.scrapes += 1;
        metrics.body
    }

    /// Scrapes every 200 ms until `done` holds for the metrics, up to
    /// `timeout`; returns those metrics.
    fn until(&mut self, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let body = self.scrape();
            if done(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "not {what} within {timeout:?}; metrics:\n{body}\nserver log:\n{}",
                self.server.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn up(body: &str) -> Option<f64> {
    metric_value(body, "profiler_target_up")
}

fn restarts(body: &str) -> f64 {
    metric_value(body, "profiler_target_restarts_total").unwrap_or(0.0)
}

/// The samples of the series of `profiler_process_cpu_samples_total`
/// labelled with `pid`.
fn process_samples(body: &str, pid: u32) -> f64 {
    let label = format!("pid=\"{pid}\"");
    metric_sum_where(body, "profiler_process_cpu_samples_total", |l| {
        l.contains(&label)
    })
    .0
}

/// Runs the service, serves it with `serve TARGET...` (made from the
/// service's comm and first PID), kills it, starts it again, and checks
/// what the server says throughout.
fn follows_a_restart(test: &str, target: impl Fn(&str, u32) -> Vec<String>) {
    let dir = scratch_dir(test);
    let binary = build_workload("exits_early", FRAME_POINTER_FLAGS);
    let service = NamedCopy::of(&binary, "flw");
    let mut first = PipedWorkload::start(&service.path, &["600"]);
    let first_pid = first.value_after("pid=", "pid", Duration::from_secs(5)) as u32;
    let args = target(&service.comm, first_pid);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start_target(&args, &dir, &[]);
    let mut scraper = Scraper {
        server: &server,
        last_cpu: 0.0,
        scrapes: 0,
    };

    let body = scraper.until("up with CPU samples", Duration::from_secs(30), |b| {
        up(b) == Some(1.0) && metric_sum(b, "profiler_cpu_samples_total").0 > 0.0
    });
    assert_eq!(
        metric_value(&body, "profiler_target_processes"),
        Some(1.0),
        "one process of {} runs:\n{body}",
        service.comm
    );
    assert_eq!(restarts(&body), 0.0, "no restart yet:\n{body}");
    eprintln!(
        "{test}: up on PID {first_pid} with {} CPU samples",
        scraper.last_cpu
    );

    // The service dies...
    drop(first);
    let body = scraper.until("down after the kill", Duration::from_secs(15), |b| {
        up(b) == Some(0.0)
    });
    assert_eq!(
        metric_value(&body, "profiler_target_processes"),
        Some(0.0),
        "no process of {} runs:\n{body}",
        service.comm
    );
    assert!(
        process_alive(server.child.id()),
        "the server keeps running while its service is down: {}",
        server.stderr()
    );

    // ... and comes back with a new PID.
    let mut second = PipedWorkload::start(&service.path, &["600"]);
    let second_pid = second.value_after("pid=", "pid", Duration::from_secs(5)) as u32;
    assert_ne!(first_pid, second_pid);
    let body = scraper.until("up again, restart counted", Duration::from_secs(30), |b| {
        up(b) == Some(1.0) && restarts(b) >= 1.0
    });
    assert_eq!(
        restarts(&body),
        1.0,
        "one restart (PID {first_pid} then {second_pid}):\n{body}"
    );
    assert_eq!(
        metric_value(&body, "profiler_target_processes"),
        Some(1.0),
        "{body}"
    );
    let body = scraper.until(
        "samples labelled with the new PID",
        Duration::from_secs(15),
        |b| process_samples(b, second_pid) > 0.0,
    );
    eprintln!(
        "{test}: up again on PID {second_pid}: {} samples of it, {} in all, after {} scrapes",
        process_samples(&body, second_pid),
        scraper.last_cpu,
        scraper.scrapes
    );
    if let Err(why) = promtool_check_metrics(&body) {
        panic!("{why}\n--- metrics ---\n{body}");
    }

    // The CPU profile of the last 2 s is of the new process.
    match go() {
        Err(why) => eprintln!("not checking the CPU profile over HTTP: {why}"),
        Ok(()) => {
            let traces = go_pprof(&["-traces"], server.url("/debug/pprof/profile?seconds=2"));
            assert!(traces.contains("burn_then_exit"), "{traces}");
            let pids: BTreeSet<u32> = traces
                .lines()
                .filter_map(|l| l.trim().strip_prefix("pid:"))
                .filter_map(|v| v.trim().trim_matches(['[', ']']).trim().parse().ok())
                .collect();
            assert_eq!(
                pids,
                BTreeSet::from([second_pid]),
                "the profile's pid labels are the new process's: {traces}"
            );
        }
    }
    let body = scraper.scrape();
    assert_eq!(up(&body), Some(1.0), "{body}");
    let (status, log) = server.stop();
    assert!(status.success(), "SIGTERM is a clean stop: {status}\n{log}");
    let _ = second.process.0.kill();
    assert_nothing_left_loaded();
}

#[test]
fn serve_comm_follows_a_restarted_service() {
    require!(bpf(), program("promtool", &["--version"]));
    follows_a_restart("serve-comm", |comm, _| {
        vec!["--comm".to_owned(), comm.to_owned()]
    });
}

#[test]
fn serve_pid_follow_reattaches_to_the_same_comm() {
    require!(bpf(), program("promtool", &["--version"]));
    follows_a_restart("serve-follow", |_, pid| {
        vec!["--pid".to_owned(), pid.to_string(), "--follow".to_owned()]
    });
}
