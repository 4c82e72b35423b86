//! `cargo xtask bench redis`: Debian's redis-server under redis-benchmark
//! alone, under `profiler record --profile all`, under `profiler serve`
//! (scraped once a second) and under `perf record -g --call-graph dwarf` at
//! the same frequency, alternated in each round of one invocation: Redis's
//! throughput and its ratio to alone, Redis's CPU time, each observer's own
//! CPU time and peak RSS, and the time the kernel spent in the profiler's
//! BPF programs (run in Redis's threads, so part of Redis's CPU time).
//! Never asserted: these machines are shared and noisy.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{build_profiler, measure::cpu_of};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const REDIS_BENCHMARK: &str = "/usr/bin/redis-benchmark";
/// The commands redis-benchmark runs, in its order.
const TESTS: [&str; 4] = ["SET", "GET", "INCR", "LPUSH"];

#[derive(Debug, clap::Args)]
pub struct RedisArgs {
    /// Rounds (each runs every way once, alternated).
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Requests per command (SET, GET, INCR, LPUSH) in each run.
    #[arg(long, default_value_t = 200_000)]
    requests: u64,
    /// redis-benchmark's parallel clients.
    #[arg(long, default_value_t = 50)]
    clients: u32,
    /// redis-server's `--io-threads` (1, Redis's default, is one thread
    /// doing all the I/O; more also reads with them).
    #[arg(long, default_value_t = 1)]
    io_threads: u32,
    /// Samples per second, for the profiler and for perf.
    #[arg(long, default_value_t = 99)]
    frequency: u32,
}

/// How Redis is observed in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Alone,
    /// `record --profile cpu`: perf's job, for a like-for-like comparison.
    RecordCpu,
    Record,
    Serve,
    Perf,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::Alone => "alone",
            Way::RecordCpu => "profiler record --profile cpu",
            Way::Record => "profiler record --profile all",
            Way::Serve => "profiler serve (/metrics 1/s)",
            Way::Perf => "perf record --call-graph dwarf",
        }
    }
}

/// What one run measured.
#[derive(Debug, Default)]
struct Run {
    /// Requests per second of each command, in [`TESTS`] order.
    per_test: Vec<f64>,
    /// All requests over the time they took together.
    overall: f64,
    /// Redis's own CPU time during the run.
    redis_cpu: Duration,
    /// The observer's CPU time (user + system), start-up included.
    observer_cpu: Option<Duration>,
    /// The observer's peak RSS, KiB.
    observer_rss_kib: Option<i64>,
    /// How long the observer was attached.
    observer_wall: Option<Duration>,
    /// perf only: the CPU time `perf report` took to unwind and read it.
    perf_report_cpu: Option<Duration>,
    /// Samples the observer says it took.
    samples: Option<u64>,
    /// record only: the time the kernel spent in its BPF programs (run in
    /// Redis's threads and charged to Redis's CPU time, not the profiler's).
    bpf: Option<Duration>,
    /// record only: the report's lines about stack fallbacks and unwinding.
    notes: Vec<String>,
}

pub fn run(args: &RedisArgs) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!(
            "the redis benchmark attaches eBPF programs and perf: run it as root (sudo -E cargo xtask bench redis)"
        );
    }
    crate::setup::debian_packages(&[
        ("redis-server", REDIS_SERVER),
        ("redis-tools", REDIS_BENCHMARK),
    ])?;
    let perf = match crate::setup::debian_packages(&[("linux-perf", "perf")]) {
        Ok(()) if works("perf", &["--version"]) => true,
        Ok(()) => {
            println!("bench redis: `perf --version` fails: perf skipped");
            false
        }
        Err(err) => {
            println!("bench redis: perf is not installable here ({err:#}): perf skipped");
            false
        }
    };
    // `PROFILER_BIN` picks a binary built elsewhere (as the tests do).
    let profiler = match std::env::var_os("PROFILER_BIN") {
        Some(path) => PathBuf::from(path),
        None => build_profiler()?,
    };
    // The kernel times each BPF program run (record's report lists them).
    let _stats = BpfStats::enable();
    let dir = std::env::temp_dir().join(format!("profiler-bench-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut ways = vec![Way::Alone, Way::RecordCpu, Way::Record, Way::Serve];
    if perf {
        ways.push(Way::Perf);
    }
    let mut results: Vec<Vec<Run>> = ways.iter().map(|_| Vec::new()).collect();
    for round in 1..=args.runs {
        for (way, runs) in ways.iter().zip(results.iter_mut()) {
            let run = one_run(*way, args, &profiler, &dir)
                .with_context(|| format!("round {round}, {}", way.label()))?;
            println!(
                "bench: round {round}/{} {:<32}: {:>9.0} req/s ({}){}",
                args.runs,
                way.label(),
                run.overall,
                TESTS
                    .iter()
                    .zip(&run.per_test)
                    .map(|(t, r)| format!("{t} {r:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                match (run.observer_cpu, run.observer_rss_kib) {
                    (Some(cpu), Some(rss)) => format!(
                        "; observer CPU {:.2} s, peak RSS {:.1} MiB",
                        cpu.as_secs_f64(),
                        rss as f64 / 1024.0
                    ),
                    _ => String::new(),
                }
            );
            runs.push(run);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table(args, &ways, &results);
    Ok(())
}

fn print_table(args: &RedisArgs, ways: &[Way], results: &[Vec<Run>]) {
    let med = |runs: &[Run], f: &dyn Fn(&Run) -> Option<f64>| -> Option<f64> {
        let mut v: Vec<f64> = runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(&mut v))
    };
    let alone = med(&results[0], &|r| Some(r.overall)).unwrap_or(0.0);
    println!(
        "bench redis: Debian's redis-server (io-threads {}) under redis-benchmark -c {} -P 1, {} requests of each of {}; {} rounds, medians; {} Hz",
        args.io_threads,
        args.clients,
        args.requests,
        TESTS.join(", "),
        args.runs,
        args.frequency
    );
    println!(
        "  {:<32} {:>9} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9} {:>14} {:>9} {:>8}",
        "",
        "req/s",
        "ratio",
        "SET/s",
        "GET/s",
        "INCR/s",
        "LPUSH/s",
        "redis CPU",
        "observer CPU",
        "peak RSS",
        "samples"
    );
    for (way, runs) in ways.iter().zip(results) {
        let overall = med(runs, &|r| Some(r.overall)).unwrap_or(0.0);
        let per_test: Vec<String> = (0..TESTS.len())
            .map(|i| {
                med(runs, &|r| r.per_test.get(i).copied())
                    .map_or("-".to_owned(), |v| format!("{v:.0}"))
            })
            .collect();
        let redis_cpu = med(runs, &|r| Some(r.redis_cpu.as_secs_f64())).unwrap_or(0.0);
        let cpu = med(runs, &|r| r.observer_cpu.map(|d| d.as_secs_f64()));
        let share = med(runs, &|r| {
            Some(r.observer_cpu?.as_secs_f64() / r.observer_wall?.as_secs_f64().max(1e-3))
        });
        let rss = runs.iter().filter_map(|r| r.observer_rss_kib).max();
        let samples = med(runs, &|r| r.samples.map(|s| s as f64));
        let bpf = med(runs, &|r| r.bpf.map(|d| d.as_secs_f64()));
        println!(
            "  {:<32} {overall:>9.0} {:>6.3} {:>8} {:>8} {:>8} {:>8} {:>8.2}s {:>14} {:>9} {:>8}",
            way.label(),
            overall / alone.max(1.0),
            per_test[0],
            per_test[1],
            per_test[2],
            per_test[3],
            redis_cpu,
            match (cpu, share) {
                (Some(cpu), Some(share)) => format!("{cpu:.2}s ({:.1}%)", 100.0 * share),
                _ => "-".to_owned(),
            },
            rss.map_or("-".to_owned(), |kib| format!(
                "{:.1}MiB",
                kib as f64 / 1024.0
            )),
            samples.map_or("-".to_owned(), |s| format!("{s:.0}"))
        );
        if let Some(bpf) = bpf {
            println!(
                "  {:<32} and {bpf:.2} s in its BPF programs, in Redis's threads (part of the redis CPU column)",
                ""
            );
        }
        if let Some(report) = med(runs, &|r| r.perf_report_cpu.map(|d| d.as_secs_f64())) {
            println!(
                "  {:<32} then `perf report` unwinding and reading perf.data: {report:.2} s of CPU",
                ""
            );
        }
        if let Some(last) = runs.last() {
            for note in &last.notes {
                println!("  {:<32} last run's report: {}", "", note.trim());
            }
        }
    }
    println!(
        "  (observer CPU: user + system of the profiler or perf record, start-up included, and its share of a core while attached; peak RSS: the largest of the runs' maximum resident sets)"
    );
}

/// Starts Redis and the observer, runs redis-benchmark to its end, stops
/// the observer and Redis.
fn one_run(way: Way, args: &RedisArgs, profiler: &Path, dir: &Path) -> anyhow::Result<Run> {
    let port = free_port()?;
    let mut server = Command::new(REDIS_SERVER);
    server
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--io-threads", &args.io_threads.to_string()]);
    if args.io_threads > 1 {
        server.args(["--io-threads-do-reads", "yes"]);
    }
    let redis = Reaped::new(
        server
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start redis-server")?,
    );
    let pid = redis.id();
    wait_for_ping(port)?;
    let stderr_path = dir.join("observer.stderr");
    let observer_stderr = || -> anyhow::Result<std::fs::File> {
        std::fs::File::create(&stderr_path).context("cannot create the observer's log file")
    };
    let pid_text = pid.to_string();
    let frequency = args.frequency.to_string();
    let mut scraping = None;
    let observer = match way {
        Way::Alone => None,
        Way::Record | Way::RecordCpu => {
            let kinds = if way == Way::Record { "all" } else { "cpu" };
            let child = Command::new(profiler)
                .args(["record", "--pid", &pid_text, "--profile", kinds, "-F"])
                .arg(&frequency)
                .arg("-o")
                .arg(dir.join("redis.folded"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(observer_stderr()?)
                .spawn()
                .context("cannot start profiler record")?;
            let child = Reaped::new(child);
            wait_for_log(&child, &stderr_path, "recording ")?;
            Some(child)
        }
        Way::Serve => {
            let listen = format!("127.0.0.1:{}", free_port()?);
            let child = Command::new(profiler)
                .args(["serve", "--pid", &pid_text, "--listen", &listen, "-F"])
                .arg(&frequency)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(observer_stderr()?)
                .spawn()
                .context("cannot start profiler serve")?;
            let child = Reaped::new(child);
            let metrics = format!("http://{listen}/metrics");
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let deadline = Instant::now() + Duration::from_secs(60);
            while agent
                .get(format!("http://{listen}/healthz"))
                .call()
                .is_err()
            {
                if Instant::now() > deadline {
                    bail!("profiler serve did not answer /healthz within 60 s");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let stop = Arc::new(AtomicBool::new(false));
            let scraper = std::thread::spawn({
                let stop = stop.clone();
                move || {
                    let mut scrapes = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(mut answer) = agent.get(&metrics).call() {
                            let _ = answer.body_mut().read_to_vec();
                            scrapes += 1;
                        }
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    scrapes
                }
            });
            scraping = Some((stop, scraper));
            Some(child)
        }
        Way::Perf => {
            let child = Command::new("perf")
                .args(["record", "-g", "--call-graph", "dwarf", "-F"])
                .arg(&frequency)
                .args(["-p", &pid_text, "-o"])
                .arg(dir.join("perf.data"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(observer_stderr()?)
                .spawn()
                .context("cannot start perf record")?;
            // perf says nothing when it is attached: give it a moment.
            std::thread::sleep(Duration::from_secs(1));
            Some(Reaped::new(child))
        }
    };
    let attached = Instant::now();
    let redis_cpu_before = cpu_of(pid)?;
    let mut run = benchmark(port, args)?;
    run.redis_cpu = cpu_of(pid)?.saturating_sub(redis_cpu_before);
    if let Some((stop, scraper)) = scraping {
        stop.store(true, Ordering::Relaxed);
        let _ = scraper.join();
    }
    if let Some(mut child) = observer {
        let signal = if way == Way::Serve {
            libc::SIGTERM
        } else {
            libc::SIGINT
        };
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let (cpu, rss, status) = wait4(&mut child)?;
        run.observer_wall = Some(attached.elapsed());
        run.observer_cpu = Some(cpu);
        run.observer_rss_kib = Some(rss);
        let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if way != Way::Perf && !status.success() {
            bail!("{} failed ({status}): {log}", way.label());
        }
        read_log(way, &log, &mut run);
    }
    if way == Way::Perf {
        run.perf_report_cpu = Some(perf_report(&dir.join("perf.data"))?);
    }
    drop(redis);
    Ok(run)
}

/// Runs redis-benchmark to its end and reads its CSV.
fn benchmark(port: u16, args: &RedisArgs) -> anyhow::Result<Run> {
    let output = Command::new(REDIS_BENCHMARK)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "--csv"])
        .args(["-n", &args.requests.to_string()])
        .args(["-c", &args.clients.to_string(), "-P", "1"])
        .args(["-t", &TESTS.join(",").to_lowercase()])
        .stdin(Stdio::null())
        .output()
        .context("cannot run redis-benchmark")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "redis-benchmark failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // `"SET","98039.22","0.320",...`
    let rate_of = |test: &str| -> Option<f64> {
        text.lines().find_map(|line| {
            let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
            (fields.next()? == test)
                .then(|| fields.next()?.parse().ok())
                .flatten()
        })
    };
    let per_test = TESTS
        .iter()
        .map(|t| {
            rate_of(t).with_context(|| format!("no {t} rate in redis-benchmark's CSV: {text}"))
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let seconds: f64 = per_test
        .iter()
        .map(|rate| args.requests as f64 / rate.max(1.0))
        .sum();
    Ok(Run {
        overall: TESTS.len() as f64 * args.requests as f64 / seconds.max(1e-9),
        per_test,
        ..Run::default()
    })
}

/// The samples the observer counted, and the report's lines about how
/// stacks were walked.
fn read_log(way: Way, log: &str, run: &mut Run) {
    match way {
        Way::Record | Way::RecordCpu => {
            run.samples = log
                .lines()
                .find_map(|l| l.trim().strip_prefix("samples: "))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse().ok());
            // `prf_switch  123 runs  1500 ns/run  0.185 s`
            let programs: Vec<&str> = log
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("prf_") && l.contains(" ns/run"))
                .collect();
            run.bpf = (!programs.is_empty()).then(|| {
                Duration::from_secs_f64(
                    programs
                        .iter()
                        .filter_map(|l| l.split_whitespace().rev().nth(1)?.parse::<f64>().ok())
                        .sum(),
                )
            });
            run.notes = log
                .lines()
                .filter(|l| {
                    let l = l.to_lowercase();
                    l.contains("fallback")
                        || l.contains("by frame pointers")
                        || l.contains(" walked, ")
                        || l.contains("dropped or lost")
                })
                .chain(programs)
                .map(str::to_owned)
                .collect();
        }
        // `[ perf record: Captured and wrote 2.928 MB perf.data (358 samples) ]`
        Way::Perf => {
            run.samples = log
                .split(" samples)")
                .next()
                .filter(|head| head.len() < log.len())
                .and_then(|head| head.rsplit('(').next())
                .and_then(|n| n.trim().parse().ok());
        }
        Way::Serve | Way::Alone => {}
    }
}

/// The CPU time `perf report` takes to read (and unwind) a perf.data.
fn perf_report(data: &Path) -> anyhow::Result<Duration> {
    let child = Command::new("perf")
        .args(["report", "--stdio", "-i"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run perf report")?;
    let mut child = Reaped::new(child);
    let (cpu, _, _) = wait4(&mut child)?;
    Ok(cpu)
}

fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free port")?
        .port())
}

fn wait_for_ping(port: u16) -> anyhow::Result<()> {
    use std::io::{Read as _, Write as _};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut answer = [0u8; 7];
            s.write_all(b"PING\r\n").is_ok()
                && s.read_exact(&mut answer).is_ok()
                && &answer == b"+PONG\r\n"
        });
        if answered {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("redis-server did not answer PING on port {port} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (up to 60 s) until the child's log has `needle`.
fn wait_for_log(child: &Reaped, log: &Path, needle: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            // Its signal handlers go in just after it says so.
            std::thread::sleep(Duration::from_millis(300));
            return Ok(());
        }
        if !process_alive(child.id()) || Instant::now() > deadline {
            bail!("the profiler did not start recording: {text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// Waits for our child (up to 60 s, then kills it) and returns its CPU
/// time, peak RSS (KiB) and exit status.
fn wait4(child: &mut Reaped) -> anyhow::Result<(Duration, i64, std::process::ExitStatus)> {
    use std::os::unix::process::ExitStatusExt as _;
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut status = 0;
    // SAFETY: rusage is plain old data; zeroes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child, writing into locals.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break;
        }
        if rc < 0 {
            bail!("wait4 failed: {}", std::io::Error::last_os_error());
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.reaped = true;
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        Duration::from_secs_f64(secs(usage.ru_utime) + secs(usage.ru_stime)),
        usage.ru_maxrss,
        std::process::ExitStatus::from_raw(status),
    ))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// `kernel.bpf_stats_enabled` turned on, and put back as it was when
/// dropped.
struct BpfStats {
    before: Option<String>,
}

impl BpfStats {
    const PATH: &str = "/proc/sys/kernel/bpf_stats_enabled";

    fn enable() -> BpfStats {
        let before = std::fs::read_to_string(Self::PATH).ok();
        let _ = std::fs::write(Self::PATH, "1");
        BpfStats { before }
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(before) = &self.before {
            let _ = std::fs::write(Self::PATH, before.trim());
        }
    }
}

/// A child killed (SIGKILL) and reaped when dropped, unless reaped already:
/// Redis and the observers go away whatever failed.
struct Reaped {
    child: Child,
    /// Reaped by [`wait4`]: its pid may belong to another process now.
    reaped: bool,
}

impl Reaped {
    fn new(child: Child) -> Reaped {
        Reaped {
            child,
            reaped: false,
        }
    }

    fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
