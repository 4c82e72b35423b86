//! Benchmarks that print ratios against a baseline measured in the same
//! invocation (never asserted: these machines are shared and noisy).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Subcommand;

use crate::{
    build_profiler,
    measure::{OFFCPU_BT, build_workload, cpu_of, median, metric_of, values_of},
    run_cmd, workspace_root,
};

#[derive(Debug, Subcommand)]
pub enum Which {
    /// The kernel's cost per event of taking user stacks (ns per program
    /// run, from kernel.bpf_stats_enabled) for cpu samples at 999 Hz,
    /// context switches and futex calls, with --unwind fp, dwarf and copy,
    /// beside bpftrace doing the same job; and each workload's throughput.
    Unwind {
        /// Runs of each kind (alternated).
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Seconds per run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Target throughput alone vs under `profiler record` at 99 Hz with
    /// frame-pointer stacks and with DWARF unwinding, under `profiler serve`
    /// and under `profiler top` (every kind), and the profiler's own CPU time
    /// (per sample) and peak RSS in each mode.
    Overhead {
        /// Runs of each kind (alternated).
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Seconds per run.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// A futex storm (millions of futex calls/s) alone, under `profiler
    /// record --profile futex`, and under bpftrace timing the same syscalls
    /// into a map by lock address and user stack.
    Futex {
        #[arg(long, default_value_t = 3)]
        runs: u32,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// A context-switch-heavy ping-pong alone, under `profiler record
    /// --profile offcpu`, and under bpftrace summing off-CPU time by stack.
    Offcpu {
        #[arg(long, default_value_t = 3)]
        runs: u32,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// A Go program with 1k, 10k and 100k parked goroutines: the time
    /// `profiler goroutines` takes to read one snapshot of them, and the
    /// program's throughput while snapshots are taken every second vs
    /// alone.
    Goroutines {
        /// Runs of each kind (alternated).
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Seconds per run.
        #[arg(long, default_value_t = 6)]
        seconds: u64,
    },
    /// Go lock and channel traffic (about 1M uncontended and 100k contended
    /// Lock/Unlock pairs and 200k channel operations per second): its
    /// throughput and CPU alone, under `profiler record --profile gomutex`
    /// and `gomutex,goblock` (uprobes on the Go runtime), and under Go's own
    /// mutex and block profiling at fraction and rate 1; with the kernel's
    /// time per probe (`kernel.bpf_stats_enabled`).
    Gowaits {
        /// Runs of each kind (alternated).
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Seconds per run.
        #[arg(long, default_value_t = 4)]
        seconds: u64,
    },
    /// Debian's redis-server under redis-benchmark: its throughput alone,
    /// under `profiler record --profile all`, under `profiler serve`
    /// (scraped once a second) and under `perf record -g --call-graph
    /// dwarf` at the same frequency, and each observer's own CPU time and
    /// peak RSS.
    Redis(crate::bench_redis::RedisArgs),
    /// `profiler serve` on the contended-mutex workload: /metrics latency
    /// percentiles under 50 concurrent scrapers (wrk, keep-alive, loopback),
    /// and the profiler's CPU while idle and while scraped.
    Scrape {
        /// Concurrent scrapers (connections).
        #[arg(long, default_value_t = 50)]
        connections: u32,
        /// Seconds of each phase (idle, then scraped).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

pub fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Unwind { runs, seconds } => crate::bench_unwind::run(runs, seconds),
        Which::Scrape {
            connections,
            seconds,
        } => scrape(connections, seconds),
        Which::Overhead { runs, seconds } => overhead(runs, seconds),
        Which::Goroutines { runs, seconds } => goroutines(runs, seconds),
        Which::Gowaits { runs, seconds } => gowaits(runs, seconds),
        Which::Redis(args) => crate::bench_redis::run(&args),
        Which::Futex { runs, seconds } => {
            let workload = build_workload("futex_storm", &["-O2", "-fno-omit-frame-pointer"])?;
            compare(&Comparison {
                title: "futex storm (1 thread: FUTEX_WAIT returning EAGAIN + FUTEX_WAKE, no waiter)",
                workload: &workload,
                args: vec!["1".to_owned(), seconds.to_string()],
                metric: "futex_calls_per_second",
                profile: "futex",
                bpftrace: FUTEX_BT,
                runs,
            })
        }
        Which::Offcpu { runs, seconds } => {
            let workload = build_workload("pingpong", &["-O2", "-fno-omit-frame-pointer"])?;
            compare(&Comparison {
                title: "pipe ping-pong (two threads, every hand-off a block and a wake-up)",
                workload: &workload,
                args: vec![seconds.to_string()],
                metric: "round_trips_per_second",
                profile: "offcpu",
                bpftrace: OFFCPU_BT,
                runs,
            })
        }
    }
}

/// bpftrace doing the futex profile's job: every futex call of the target
/// timed from entry to exit, summed by lock address and user stack.
const FUTEX_BT: &str = r#"
tracepoint:syscalls:sys_enter_futex /pid == cpid/ { @start[tid] = nsecs; @addr[tid] = args->uaddr; }
tracepoint:syscalls:sys_exit_futex /@start[tid]/ { @wait[@addr[tid], ustack] = sum(nsecs - @start[tid]); delete(@start[tid]); delete(@addr[tid]); }
"#;

/// One workload measured alone, under the profiler and under bpftrace.
struct Comparison<'a> {
    title: &'a str,
    workload: &'a Path,
    args: Vec<String>,
    /// The `key=value` the workload prints its throughput as.
    metric: &'a str,
    /// The `--profile` the profiler records.
    profile: &'a str,
    bpftrace: &'a str,
    runs: u32,
}

fn compare(c: &Comparison<'_>) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("benchmarks attach eBPF programs: run them as root");
    }
    crate::setup::debian_packages(&[("bpftrace", "bpftrace")])?;
    let profiler = build_profiler()?;
    let folded = std::env::temp_dir().join("profiler-bench.folded");
    let script = std::env::temp_dir().join("profiler-bench.bt");
    std::fs::write(&script, c.bpftrace).context("cannot write the bpftrace script")?;
    let command_line = std::iter::once(c.workload.display().to_string())
        .chain(c.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let (mut alone, mut ours, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=c.runs {
        let a = metric_of(Command::new(c.workload).args(&c.args), c.metric)?;
        let p = metric_of(
            Command::new(&profiler)
                .args(["record", "--profile", c.profile, "-o"])
                .arg(&folded)
                .arg("--")
                .arg(c.workload)
                .args(&c.args),
            c.metric,
        )?;
        let b = metric_of(
            Command::new("bpftrace")
                .arg(&script)
                .args(["-c", &command_line]),
            c.metric,
        )?;
        println!(
            "bench: round {round}/{}: alone {a:.0}, profiler {p:.0}, bpftrace {b:.0}",
            c.runs
        );
        alone.push(a);
        ours.push(p);
        theirs.push(b);
    }
    let (a, p, b) = (median(&mut alone), median(&mut ours), median(&mut theirs));
    println!("bench {}: {}", c.profile, c.title);
    println!("  {} (median of {} runs):", c.metric, c.runs);
    println!("    alone:                {a:>12.0}");
    println!(
        "    profiler --profile {}: {p:>12.0}  ratio to alone {:.3}",
        c.profile,
        p / a
    );
    println!(
        "    bpftrace:             {b:>12.0}  ratio to alone {:.3}",
        b / a
    );
    println!("  profiler vs bpftrace throughput: {:.2}x", p / b);
    let _ = std::fs::remove_file(&folded);
    let _ = std::fs::remove_file(&script);
    Ok(())
}

/// What one run of the workload reported and cost.
struct Run {
    rounds_per_second: f64,
    profiler_cpu: Option<Duration>,
    profiler_max_rss_kib: Option<i64>,
}

fn overhead(runs: u32, seconds: f64) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!(
            "the overhead benchmark attaches eBPF programs: run it as root (sudo -E cargo xtask bench overhead)"
        );
    }
    let profiler = build_profiler()?;
    let workload = build_workload("cpu_split", &["-O2", "-fomit-frame-pointer"])?;
    let folded = std::env::temp_dir().join("profiler-bench-overhead.folded");
    let modes = ["fp", "dwarf", "serve", "top"];
    let mut alone = Vec::new();
    let mut profiled: Vec<Vec<Run>> = modes.iter().map(|_| Vec::new()).collect();
    for round in 1..=runs {
        let a = run_workload(&workload, seconds, None)?;
        println!(
            "bench: round {round}/{runs} {:<24}: {:>10.1} rounds/s",
            "alone", a.rounds_per_second
        );
        alone.push(a.rounds_per_second);
        for (mode, results) in modes.iter().zip(profiled.iter_mut()) {
            let p = run_workload(&workload, seconds, Some((&profiler, &folded, mode)))?;
            println!(
                "bench: round {round}/{runs} {:<24}: {:>10.1} rounds/s (profiler CPU {:.3} s, peak RSS {} KiB)",
                mode_label(mode),
                p.rounds_per_second,
                p.profiler_cpu.unwrap_or_default().as_secs_f64(),
                p.profiler_max_rss_kib.unwrap_or(0)
            );
            results.push(p);
        }
    }
    let alone_tp = median(&mut alone);
    println!(
        "bench overhead: cpu_split (-O2 -fomit-frame-pointer), {runs} runs of {seconds} s each, 99 Hz"
    );
    println!("  throughput alone (median): {alone_tp:.1} rounds/s");
    for (mode, results) in modes.iter().zip(&profiled) {
        let tp = median(
            &mut results
                .iter()
                .map(|r| r.rounds_per_second)
                .collect::<Vec<_>>(),
        );
        let cpu = median(
            &mut results
                .iter()
                .filter_map(|r| r.profiler_cpu)
                .map(|d| d.as_secs_f64())
                .collect::<Vec<_>>(),
        );
        let rss = results
            .iter()
            .filter_map(|r| r.profiler_max_rss_kib)
            .max()
            .unwrap_or(0);
        // About 99 samples a second of the target's CPU time.
        let samples = 99.0 * seconds;
        println!(
            "  {:<24}: throughput {tp:.1} rounds/s, ratio to alone {:.4}; profiler CPU {cpu:.3} s per run ({:.2}% of a core, {:.0} us per sample incl. start-up); peak RSS {:.1} MiB",
            mode_label(mode),
            tp / alone_tp,
            100.0 * cpu / seconds,
            1e6 * cpu / samples,
            rss as f64 / 1024.0
        );
    }
    let _ = std::fs::remove_file(&folded);
    Ok(())
}

/// How a mode of the overhead benchmark is shown.
fn mode_label(mode: &str) -> String {
    if mode == "serve" {
        "serve (cpu+offcpu+futex)".to_owned()
    } else if mode == "top" {
        "top (cpu+offcpu+futex)".to_owned()
    } else {
        format!("record --unwind {mode}")
    }
}

/// Runs the workload for `seconds`, optionally under `profiler record --pid`
/// (`--unwind MODE`), `profiler serve --pid` (mode "serve") or `profiler
/// top --plain --pid` (mode "top": a table a second, to /dev/null);
/// reads its throughput from its own report and the profiler's cost from
/// `wait4`.
fn run_workload(
    workload: &Path,
    seconds: f64,
    profiler: Option<(&Path, &Path, &str)>,
) -> anyhow::Result<Run> {
    let child = Command::new(workload)
        .arg(seconds.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", workload.display()))?;
    let mut profiler_cost = None;
    let mut server = None;
    match profiler {
        // `serve` keeps serving after the target exits: stopped below.
        Some((profiler, _, "serve")) => {
            server = Some(
                Command::new(profiler)
                    .args(["serve", "--listen", "127.0.0.1:0", "--pid"])
                    .arg(child.id().to_string())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("cannot start profiler serve")?,
            );
        }
        // `top` stops with its target.
        Some((profiler, _, "top")) => {
            let top = Command::new(profiler)
                .args(["top", "--plain", "--pid", &child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start profiler top")?;
            profiler_cost = Some(wait4(top.id())?);
        }
        Some((profiler, folded, unwind)) => {
            let recorder = Command::new(profiler)
                .args([
                    "record",
                    "--unwind",
                    unwind,
                    "--pid",
                    &child.id().to_string(),
                    "-o",
                ])
                .arg(folded)
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start profiler")?;
            profiler_cost = Some(wait4(recorder.id())?);
        }
        None => {}
    }
    let output = child.wait_with_output().context("the workload failed")?;
    if let Some(server) = server {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGTERM) };
        profiler_cost = Some(wait4(server.id())?);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let rounds_per_second = text
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("rounds_per_second="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("the workload printed no throughput: {text:?}"))?;
    Ok(Run {
        rounds_per_second,
        profiler_cpu: profiler_cost.map(|(cpu, _)| cpu),
        profiler_max_rss_kib: profiler_cost.map(|(_, rss)| rss),
    })
}

/// Waits for a child and returns its CPU time and peak RSS (KiB).
fn wait4(pid: u32) -> anyhow::Result<(Duration, i64)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; zeroes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, writing into locals.
    let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if rc != pid as libc::pid_t {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("profiler failed during the benchmark (wait status {status})");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((
        Duration::from_secs_f64(secs(usage.ru_utime) + secs(usage.ru_stime)),
        usage.ru_maxrss,
    ))
}

/// A child killed and reaped when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(self.0.try_wait(), Ok(None)) {
            if std::time::Instant::now() > deadline {
                let _ = self.0.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn scrape(connections: u32, seconds: u64) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("the scrape benchmark attaches eBPF programs: run it as root");
    }
    crate::setup::debian_packages(&[("wrk", "wrk")])?;
    let profiler = build_profiler()?;
    let workload = build_workload("mutex_contend", &["-O2", "-fomit-frame-pointer"])?;
    // 4 threads on one lock, 1 ms each, for far longer than the benchmark.
    let target = Reaped(
        Command::new(&workload)
            .args(["4", "100000000", "1000"])
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start the workload")?,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("cannot find a free port")?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Reaped(
        Command::new(&profiler)
            .args(["serve", "--pid", &target.0.id().to_string(), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start profiler serve")?,
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while agent.get(format!("{base}/healthz")).call().is_err() {
        if std::time::Instant::now() > deadline {
            bail!("profiler serve did not become healthy within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let the first drains symbolize what there is before measuring.
    std::thread::sleep(Duration::from_secs(3));
    let size = agent
        .get(format!("{base}/metrics"))
        .call()
        .context("cannot scrape /metrics")?
        .body_mut()
        .read_to_vec()
        .context("cannot read /metrics")?
        .len();

    let pid = server.0.id();
    let idle_start = cpu_of(pid)?;
    std::thread::sleep(Duration::from_secs(seconds));
    let idle = cpu_of(pid)?.saturating_sub(idle_start);

    let scraped_start = cpu_of(pid)?;
    let wrk = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "--timeout",
            "10s",
        ])
        .arg(format!("{base}/metrics"))
        .output()
        .context("cannot run wrk")?;
    let scraped = cpu_of(pid)?.saturating_sub(scraped_start);
    let report = String::from_utf8_lossy(&wrk.stdout).into_owned();
    if !wrk.status.success() {
        bail!(
            "wrk failed: {report}{}",
            String::from_utf8_lossy(&wrk.stderr)
        );
    }
    let value_after = |label: &str| -> Option<String> {
        report.lines().find_map(|line| {
            let rest = line.trim_start().strip_prefix(label)?;
            rest.split_whitespace().next().map(str::to_owned)
        })
    };
    let requests: f64 = value_after("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let errors = report
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .collect::<Vec<_>>()
        .join("; ");
    let percentile = |p: &str| value_after(p).unwrap_or_else(|| "?".to_owned());
    let total_requests = requests * seconds as f64;
    println!(
        "bench scrape: profiler serve on mutex_contend (4 threads, one lock), /metrics of {size} bytes"
    );
    println!(
        "  {connections} concurrent scrapers for {seconds} s (wrk, keep-alive, loopback): {requests:.0} scrapes/s"
    );
    println!(
        "  latency: p50 {}  p75 {}  p90 {}  p99 {}",
        percentile("50%"),
        percentile("75%"),
        percentile("90%"),
        percentile("99%")
    );
    if !errors.is_empty() {
        println!("  errors: {errors}");
    }
    let per_second = |cpu: Duration| 100.0 * cpu.as_secs_f64() / seconds as f64;
    println!(
        "  profiler CPU idle:    {:.3} s in {seconds} s ({:.2}% of a core: drains, symbolization, metrics)",
        idle.as_secs_f64(),
        per_second(idle)
    );
    println!(
        "  profiler CPU scraped: {:.3} s in {seconds} s ({:.2}% of a core), ratio to idle {:.1}x; {:.0} us of CPU per scrape",
        scraped.as_secs_f64(),
        per_second(scraped),
        scraped.as_secs_f64() / idle.as_secs_f64().max(1e-3),
        1e6 * scraped.saturating_sub(idle).as_secs_f64() / total_requests.max(1.0)
    );
    drop(server);
    drop(target);
    Ok(())
}

/// Builds a Go workload of `tests/workloads/go` with Debian's Go.
fn build_go_workload(name: &str) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let source = root.join("tests/workloads/go").join(format!("{name}.go"));
    let out_dir = root.join("target/workloads");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let binary = out_dir.join(name);
    run_cmd(
        Command::new("/usr/bin/go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(&source)
            .env("GOCACHE", root.join("target/go-build/bench"))
            .env("GOPATH", root.join("target/go-build/bench-path"))
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", ""),
    )?;
    Ok(binary)
}

/// One run of the parked workload: its throughput, and (watched) the
/// snapshot time `profiler goroutines` reported.
fn parked_run(
    workload: &Path,
    profiler: Option<&Path>,
    goroutines: u32,
    seconds: u64,
) -> anyhow::Result<(f64, Option<f64>)> {
    use std::io::BufRead as _;
    let mut child = Command::new(workload)
        .args([goroutines.to_string(), seconds.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", workload.display()))?;
    let stdout = child.stdout.take().context("the workload's stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let ready = lines.next().transpose()?.unwrap_or_default();
    if !ready.starts_with("ready") {
        bail!("the workload did not get ready: {ready:?}");
    }
    let watch = match profiler {
        Some(profiler) => Some(
            Command::new(profiler)
                .args([
                    "goroutines",
                    "--pid",
                    &child.id().to_string(),
                    "--duration",
                    &format!("{}s", seconds.saturating_sub(1).max(1)),
                    "--interval",
                    "1s",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot run profiler goroutines")?,
        ),
        None => None,
    };
    let mut rate = None;
    for line in lines {
        let line = line?;
        if let Some(value) = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("rounds_per_second="))
        {
            rate = value.parse::<f64>().ok();
        }
    }
    child.wait()?;
    let took = match watch {
        Some(watch) => {
            let out = watch.wait_with_output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            text.split("a snapshot took ")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .and_then(|ms| ms.parse::<f64>().ok())
        }
        None => None,
    };
    Ok((
        rate.context("the workload printed no rounds_per_second")?,
        took,
    ))
}

fn goroutines(runs: u32, seconds: u64) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("reading another process's memory needs root: sudo -E cargo xtask bench goroutines");
    }
    let profiler = build_profiler()?;
    let workload = build_go_workload("parked")?;
    println!(
        "bench goroutines: a Go program (Debian's Go) with N parked goroutines and one busy worker, {runs} runs of {seconds} s each; snapshots every second"
    );
    for count in [1_000u32, 10_000, 100_000] {
        let (mut alone, mut watched, mut took) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            alone.push(parked_run(&workload, None, count, seconds)?.0);
            let (rate, ms) = parked_run(&workload, Some(&profiler), count, seconds)?;
            watched.push(rate);
            took.extend(ms);
        }
        let (alone, watched) = (median(&mut alone), median(&mut watched));
        println!(
            "  {count:>6} goroutines: one snapshot {:.1} ms (median); worker {watched:.0} rounds/s watched vs {alone:.0} alone: ratio {:.3}",
            median(&mut took),
            watched / alone.max(1.0)
        );
    }
    Ok(())
}

/// The lock_bench rates and CPU the four ways, and the kernel's cost of
/// each probe.
fn gowaits(runs: u32, seconds: u64) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!(
            "the Go waits benchmark attaches uprobes: run it as root (sudo -E cargo xtask bench gowaits)"
        );
    }
    let profiler = build_profiler()?;
    let workload = build_go_workload("lock_bench")?;
    let folded = std::env::temp_dir().join("profiler-bench-gowaits.folded");
    let stats = "/proc/sys/kernel/bpf_stats_enabled";
    let stats_before = std::fs::read_to_string(stats).unwrap_or_default();
    let _ = std::fs::write(stats, "1");
    const KEYS: [&str; 4] = [
        "uncontended_per_second",
        "contended_per_second",
        "chan_ops_per_second",
        "cpu_seconds_per_second",
    ];
    let ways: [(&str, Option<&str>, bool); 4] = [
        ("alone", None, false),
        ("profiler --profile gomutex", Some("gomutex"), false),
        (
            "profiler --profile gomutex,goblock",
            Some("gomutex,goblock"),
            false,
        ),
        ("Go's own (fraction 1, rate 1)", None, true),
    ];
    let mut results: Vec<Vec<std::collections::HashMap<String, f64>>> =
        vec![Vec::new(); ways.len()];
    let mut probe_lines: Vec<Vec<String>> = vec![Vec::new(); ways.len()];
    for round in 1..=runs {
        for (i, (name, profile, goprof)) in ways.iter().enumerate() {
            let mut cmd = match profile {
                Some(kinds) => {
                    let mut cmd = Command::new(&profiler);
                    cmd.args(["record", "--profile", kinds, "-o"])
                        .arg(&folded)
                        .arg("--")
                        .arg(&workload);
                    cmd
                }
                None => Command::new(&workload),
            };
            cmd.arg(seconds.to_string());
            if *goprof {
                cmd.arg("goprof");
            }
            let output = cmd
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("cannot run {cmd:?}"))?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            let values = values_of(&stdout);
            if !KEYS.iter().all(|k| values.contains_key(*k)) {
                bail!(
                    "{name}: the workload printed no rates ({}): {stdout}{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            println!("bench: round {round}/{runs}: {name}: {}", stdout.trim());
            if round == runs {
                probe_lines[i] = String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .filter(|l| l.trim_start().starts_with("prf_go_"))
                    .map(|l| l.trim().to_owned())
                    .collect();
            }
            results[i].push(values);
        }
    }
    let _ = std::fs::write(stats, stats_before.trim());
    let _ = std::fs::remove_file(&folded);
    println!(
        "bench gowaits: Go lock and channel traffic (Debian's Go), {runs} runs of {seconds} s each, medians"
    );
    println!(
        "  {:<36} {:>14} {:>14} {:>14} {:>10}",
        "", "uncontended/s", "contended/s", "chan ops/s", "CPU s/s"
    );
    let medians: Vec<Vec<f64>> = results
        .iter()
        .map(|runs| {
            KEYS.iter()
                .map(|k| median(&mut runs.iter().map(|v| v[*k]).collect::<Vec<_>>()))
                .collect()
        })
        .collect();
    for (i, (name, _, _)) in ways.iter().enumerate() {
        let m = &medians[i];
        println!(
            "  {name:<36} {:>14.0} {:>14.0} {:>14.0} {:>10.3}",
            m[0], m[1], m[2], m[3]
        );
        if i > 0 {
            let a = &medians[0];
            println!(
                "  {:<36} {:>14.3} {:>14.3} {:>14.3} {:>10.2}x",
                "  ratio to alone",
                m[0] / a[0].max(1.0),
                m[1] / a[1].max(1.0),
                m[2] / a[2].max(1.0),
                m[3] / a[3].max(0.001)
            );
        }
        for line in &probe_lines[i] {
            println!("      kernel: {line}");
        }
    }
    println!(
        "  (kernel: time in each BPF program per run; each probe hit also costs a trap into the kernel, which BPF statistics do not include)"
    );
    Ok(())
}
