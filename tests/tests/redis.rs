//! Whole user stacks in a real, stripped, frame-pointer-less C server:
//! Debian's `redis-server` under `redis-benchmark`, recorded with
//! `record --profile all` and through `serve`'s `/debug/pprof/profile`
//! (issue 13): at least 99% of CPU samples and of off-CPU time must have a
//! user stack that reaches its thread's start, with no stack fallback.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tests::*;

/// Debian's server (a link to `redis-check-rdb`, one binary for both).
const REDIS_SERVER: &str = "/usr/bin/redis-server";
const REDIS_BENCHMARK: &str = "/usr/bin/redis-benchmark";

/// How long each recording lasts.
const SECONDS: u64 = 10;

/// The share (in %) of stacks that must reach their thread's start.
const WHOLE_PERCENT: f64 = 99.0;

/// The outermost user frames of a whole stack: the main thread's entry
/// (`_start`, glibc's `__libc_start_*`, or `main` should the walk stop
/// there) and a created thread's (`clone3`, whose child has no return
/// address in glibc's CFI, `clone`, or `start_thread` under them).
const THREAD_STARTS: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_main_impl",
    "__libc_start_call_main",
    "main",
    "clone3",
    "__clone3",
    "clone",
    "__clone",
    "__GI___clone3",
    "__GI___clone",
    "start_thread",
];

/// Structural frames of the folded format between the process (and
/// thread) frame and the user stack.
const MARKERS: &[&str] = &["[blocked]", "[preempted]", "[still blocked]"];

fn redis_installed() -> Result<(), String> {
    let hint =
        |why: String| format!("{why} (cargo xtask setup installs redis-server, redis-tools)");
    program(REDIS_SERVER, &["--version"]).map_err(hint)?;
    program(REDIS_BENCHMARK, &["--version"]).map_err(hint)
}

/// A redis-server on a loopback port with redis-benchmark driving it; both
/// killed (the benchmark first) when dropped, whatever happened.
struct RedisUnderLoad {
    benchmark: KillOnDrop,
    server: KillOnDrop,
    port: u16,
}

impl RedisUnderLoad {
    /// Starts Debian's redis-server (no persistence, 2 I/O threads so that
    /// a second busy thread blocks and wakes on a futex: measured here,
    /// 700 futex waits and 1,400 wakes in 10 s, against 4 waits and no
    /// wake, all in idle threads, with Redis's default of 1), waits
    /// until it answers PING, and starts redis-benchmark looping over SET,
    /// GET, INCR and LPUSH with 50 clients (100k requests each, round and
    /// round until killed); then gives the clients a second to connect.
    fn start(dir: &Path) -> RedisUnderLoad {
        let port = free_port();
        let server = Command::new(REDIS_SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--io-threads", "2", "--io-threads-do-reads", "yes"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let mut server = KillOnDrop(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers_ping(port) {
            if let Ok(Some(status)) = server.0.try_wait() {
                panic!("redis-server exited ({status}) before answering on port {port}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let benchmark = Command::new(REDIS_BENCHMARK)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-q", "-n", "100000", "-c", "50", "-P", "1", "-l"])
            .args(["-t", "set,get,incr,lpush"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-benchmark");
        let redis = RedisUnderLoad {
            benchmark: KillOnDrop(benchmark),
            server,
            port,
        };
        std::thread::sleep(Duration::from_secs(1));
        redis.assert_running();
        redis
    }

    fn pid(&self) -> u32 {
        self.server.0.id()
    }

    fn assert_running(&self) {
        assert!(
            process_alive(self.server.0.id()),
            "redis-server (port {}) is not running",
            self.port
        );
        assert!(
            process_alive(self.benchmark.0.id()),
            "redis-benchmark is not running"
        );
    }

    /// Its threads' names.
    fn threads(&self) -> Vec<String> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return Vec::new();
        };
        let mut names: Vec<String> = tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .map(|n| n.trim().to_owned())
            .collect();
        names.sort();
        names
    }
}

fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

/// How one folded stack's user part ends, root side.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Root {
    /// Its outermost user frame is a thread start.
    Start,
    /// Its outermost user frame is this other frame (a lost stack's marker
    /// or `[unknown]` included).
    Other(String),
    /// It has no user frame at all.
    NoUserFrames,
}

/// The user frames of a folded line written with `--per-thread`, outermost
/// first: after the process and thread frames, the lock (for `futex`) and
/// the structural markers; up to the first kernel frame or the waker
/// separator `--`.
fn user_frames(stack: &FoldedStack, has_lock: bool) -> Vec<&str> {
    let skip = if has_lock { 3 } else { 2 };
    stack
        .frames
        .iter()
        .skip(skip)
        .map(String::as_str)
        .skip_while(|f| MARKERS.contains(f))
        .take_while(|f| *f != "--" && !f.ends_with("_[k]"))
        .collect()
}

fn root_of(user: &[&str]) -> Root {
    match user.first() {
        None => Root::NoUserFrames,
        Some(frame) => {
            let name = frame.strip_suffix("_[i]").unwrap_or(frame);
            if THREAD_STARTS.contains(&name) {
                Root::Start
            } else {
                Root::Other(name.to_owned())
            }
        }
    }
}

/// A thread's name from its `name-tid` frame.
fn thread_of(stack: &FoldedStack) -> String {
    let label = stack.frames.get(1).map(String::as_str).unwrap_or("");
    match label.rsplit_once('-') {
        Some((name, tid)) if tid == "exited" || tid.chars().all(|c| c.is_ascii_digit()) => {
            name.to_owned()
        }
        _ => label.to_owned(),
    }
}

/// The whole-stack figures of one profile.
#[derive(Debug, Default)]
struct Whole {
    total: u64,
    whole: u64,
    /// Values with an `[unknown]` frame in the user part (not asserted:
    /// the binary is stripped of its static functions' names).
    with_unknown: u64,
    /// Value by thread: (whole, total).
    by_thread: BTreeMap<String, (u64, u64)>,
    /// Value by the outermost frame of the stacks that are not whole.
    cut_at: BTreeMap<String, u64>,
}

impl Whole {
    fn of<'a>(stacks: impl IntoIterator<Item = &'a FoldedStack>, has_lock: bool) -> Whole {
        let mut w = Whole::default();
        for stack in stacks {
            let user = user_frames(stack, has_lock);
            let root = root_of(&user);
            w.total += stack.value;
            let thread = w.by_thread.entry(thread_of(stack)).or_default();
            thread.1 += stack.value;
            if user.iter().any(|f| f.starts_with("[unknown]")) {
                w.with_unknown += stack.value;
            }
            match root {
                Root::Start => {
                    w.whole += stack.value;
                    thread.0 += stack.value;
                }
                Root::Other(frame) => *w.cut_at.entry(frame).or_default() += stack.value,
                Root::NoUserFrames => {
                    *w.cut_at.entry("(no user frames)".into()).or_default() += stack.value
                }
            }
        }
        w
    }

    fn percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.whole as f64 / self.total as f64
        }
    }

    /// One paragraph for the log and the failure message.
    fn describe(&self, what: &str, unit: &str) -> String {
        let mut text = format!(
            "{what}: {:.2}% whole ({} of {} {unit} reach the thread's start); {:.2}% with an [unknown] user frame",
            self.percent(),
            self.whole,
            self.total,
            100.0 * self.with_unknown as f64 / self.total.max(1) as f64
        );
        for (thread, (whole, total)) in &self.by_thread {
            text.push_str(&format!(
                "\n    thread {thread}: {:.2}% of {total} {unit}",
                100.0 * *whole as f64 / (*total).max(1) as f64
            ));
        }
        let mut cut: Vec<(&String, &u64)> = self.cut_at.iter().collect();
        cut.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (frame, value) in cut.iter().take(8) {
            text.push_str(&format!(
                "\n    cut short at {frame}: {:.2}% ({value} {unit})",
                100.0 * **value as f64 / self.total.max(1) as f64
            ));
        }
        text
    }
}

/// The number of events a report line counts outside its parentheses.
fn counted(line: &str) -> u64 {
    let mut depth = 0i32;
    let outside: String = line
        .chars()
        .filter(|c| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => return depth == 0,
            }
            false
        })
        .collect();
    outside
        .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
        .filter_map(|w| w.parse::<u64>().ok())
        .sum()
}

/// The report's lines about user frames walked another way than from
/// `.eh_frame` (a kind's walk line ends "...; N frames walked by frame
/// pointers for want of .eh_frame"; older reports said "stacks walked by
/// frame pointers instead of copied ...: cpu N, offcpu M", or "fallback"),
/// and the number they count.
fn fallbacks(report: &str) -> (Vec<&str>, u64) {
    const FRAMES: &str = " frames walked by frame pointers";
    let mut count = 0;
    let mut lines = Vec::new();
    for line in report.lines() {
        let lower = line.to_lowercase();
        let mut n = 0;
        if lower.contains("fallback") || lower.contains("instead of copied") {
            n += counted(line);
        }
        let mut rest = line;
        while let Some(at) = rest.find(FRAMES) {
            n += rest[..at]
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|d| d.parse::<u64>().ok())
                .unwrap_or(0);
            rest = &rest[at + FRAMES.len()..];
        }
        if n > 0 || lower.contains("fallback") {
            lines.push(line);
        }
        count += n;
    }
    (lines, count)
}

/// The report's lines on how the kernel's walks ended, per kind
/// ("cpu  96 walked, 100.0% whole; ...").
fn walk_lines(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter(|l| l.contains(" walked, ") && l.contains("% whole"))
        .map(str::trim)
        .collect()
}

fn folded(path: &Path) -> Vec<FoldedStack> {
    parse_folded(
        &std::fs::read_to_string(path)
            .unwrap_or_else(|err| panic!("read {}: {err}", path.display())),
    )
}

#[test]
fn record_all_gives_whole_stacks_for_redis_under_load() {
    require!(bpf(), redis_installed());
    let dir = scratch_dir("redis-record");
    let redis = RedisUnderLoad::start(&dir);
    eprintln!("redis-server threads: {:?}", redis.threads());
    let out = dir.join("redis.folded");
    let started = Instant::now();
    let run = profiler(&[
        "record",
        "--pid",
        &redis.pid().to_string(),
        "--profile",
        "all",
        "--duration",
        &format!("{SECONDS}s"),
        "--per-thread",
        "-o",
        out.to_str().expect("UTF-8"),
    ]);
    let report = String::from_utf8_lossy(&run.stderr).into_owned();
    eprintln!("recorded in {:.1} s", started.elapsed().as_secs_f64());
    assert!(run.status.success(), "profiler record failed:\n{report}");
    redis.assert_running();
    drop(redis);
    assert_nothing_left_loaded();

    let cpu = folded(&dir.join("redis.cpu.folded"));
    let offcpu = folded(&dir.join("redis.offcpu.folded"));
    let futex = folded(&dir.join("redis.futex.folded"));
    let cpu_whole = Whole::of(&cpu, false);
    let off_whole = Whole::of(&offcpu, false);
    // Blocks the kernel saw: without the waits under way at the end, whose
    // stacks are read from outside when the recording ends (idle threads
    // blocked for good would otherwise outweigh everything else).
    let seen = Whole::of(offcpu.iter().filter(|s| !s.has("[still blocked]")), false);
    let futex_whole = Whole::of(&futex, true);
    let (fallback_lines, fallback_count) = fallbacks(&report);
    let figures = format!(
        "{}\n{}\n{}\n{} (not asserted)\nthe report's walks: {:?}\nfallbacks counted by the report: {fallback_count} {fallback_lines:?}",
        cpu_whole.describe("CPU samples", "samples"),
        off_whole.describe("off-CPU time", "ns"),
        seen.describe("off-CPU time, waits under way at the end left out", "ns"),
        futex_whole.describe("futex wait time", "ns"),
        walk_lines(&report),
    );
    eprintln!("{figures}");
    assert!(cpu_whole.total > 0, "no CPU samples:\n{report}");
    assert!(seen.total > 0, "no off-CPU blocks seen:\n{report}");
    let failed: Vec<&str> = [
        (cpu_whole.percent() < WHOLE_PERCENT).then_some("CPU samples"),
        (off_whole.percent() < WHOLE_PERCENT).then_some("off-CPU time"),
        (seen.percent() < WHOLE_PERCENT).then_some("off-CPU time the kernel saw"),
        (fallback_count > 0).then_some("no fallback"),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(
        failed.is_empty(),
        "below {WHOLE_PERCENT}% whole stacks or with fallbacks: {failed:?}\n{figures}\n--- report ---\n{report}"
    );
}

/// The samples of `go tool pprof -traces` output: (value, frames leaf
/// first).
fn pprof_traces(text: &str) -> Vec<(u64, Vec<String>)> {
    let mut samples = Vec::new();
    for block in text.split("-----------+-").skip(1) {
        let mut lines = block.lines().skip(1);
        // Labels (`thread_id:  42`) come first, then `VALUE   leaf`.
        let mut sample = None;
        for line in lines.by_ref() {
            let trimmed = line.trim_start();
            let (value, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
            if let Ok(value) = value.parse::<u64>() {
                sample = Some((value, vec![rest.trim().to_owned()]));
                break;
            }
        }
        let Some((value, mut frames)) = sample else {
            continue;
        };
        frames.extend(
            lines
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
        samples.push((value, frames));
    }
    samples
}

#[test]
fn serve_cpu_profile_gives_whole_stacks_for_redis_under_load() {
    require!(bpf(), redis_installed(), go());
    let dir = scratch_dir("redis-serve");
    let redis = RedisUnderLoad::start(&dir);
    let server = Server::on_loopback(redis.pid(), &dir);
    let traces = go_pprof(
        &["-traces", "-symbolize=none", "-sample_index=samples"],
        server.url(&format!("/debug/pprof/profile?seconds={SECONDS}")),
    );
    let metrics = server.get("/metrics");
    redis.assert_running();
    drop(server);
    drop(redis);
    assert_nothing_left_loaded();

    let samples = pprof_traces(&traces);
    let (mut total, mut whole) = (0u64, 0u64);
    let mut cut_at: BTreeMap<String, u64> = BTreeMap::new();
    for (value, frames) in &samples {
        total += value;
        // Leaf first: the root is the last frame, a user frame unless the
        // user stack is missing (then a kernel frame, `... [kernel]`).
        let root = frames.last().map(String::as_str).unwrap_or("");
        if !root.ends_with(" [kernel]") && THREAD_STARTS.contains(&root) {
            whole += value;
        } else {
            *cut_at.entry(root.to_owned()).or_default() += value;
        }
    }
    let percent = 100.0 * whole as f64 / total.max(1) as f64;
    let fallback_series: Vec<&str> = metrics
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("fallback"))
        .collect();
    let fallback_count: f64 = fallback_series
        .iter()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    // How the kernel's walks ended, by kind and end, those that happened
    // (not asserted).
    let walks: Vec<&str> = metrics
        .body
        .lines()
        .filter(|l| l.starts_with("profiler_stack_walks_total") && !l.ends_with(" 0"))
        .collect();
    let mut cut: Vec<(&String, &u64)> = cut_at.iter().collect();
    cut.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut figures = format!(
        "serve /debug/pprof/profile?seconds={SECONDS}: {percent:.2}% of CPU samples whole ({whole} of {total} in {} traces); fallbacks in /metrics: {fallback_count} {fallback_series:?}; walks in /metrics: {walks:?}",
        samples.len()
    );
    for (frame, value) in cut.iter().take(8) {
        figures.push_str(&format!(
            "\n    cut short at {frame}: {:.2}% ({value} samples)",
            100.0 * **value as f64 / total.max(1) as f64
        ));
    }
    eprintln!("{figures}");
    assert!(total > 0, "no CPU samples over HTTP:\n{traces}");
    assert!(
        percent >= WHOLE_PERCENT && fallback_count == 0.0,
        "below {WHOLE_PERCENT}% whole CPU stacks over HTTP, or with fallbacks:\n{figures}"
    );
}

#[test]
fn whole_stacks_are_told_from_cut_ones() {
    let stacks = parse_folded(
        "redis-server;redis-server-10;_start;main;aeMain;epoll_wait;do_syscall_64_[k] 5\n\
         redis-server;io_thd_1-12;[blocked];clone3;start_thread;IOThreadMain;futex_wait_[k];--;try_to_wake_up_[k] 7\n\
         redis-server;io_thd_1-12;[preempted];IOThreadMain;schedule_[k] 3\n\
         redis-server;redis-server-10;[user stack lost: ring buffer full];tcp_sendmsg_[k] 2\n\
         redis-server;redis-server-10;sock_poll_[k] 1\n",
    );
    let w = Whole::of(&stacks, false);
    assert_eq!((w.whole, w.total), (12, 18));
    assert_eq!(w.cut_at.get("IOThreadMain"), Some(&3));
    assert_eq!(w.cut_at.get("(no user frames)"), Some(&1));
    assert_eq!(w.by_thread.get("io_thd_1"), Some(&(7, 10)));
    let futex = parse_folded(
        "redis-server;io_thd_1-12;io_threads_mutex+0x28;[still blocked];clone3;start_thread;__GI___lll_lock_wait 4\n\
         redis-server;io_thd_1-12;io_threads_mutex+0x28;__GI___lll_lock_wait;futex_wait_[i] 6\n",
    );
    let f = Whole::of(&futex, true);
    assert_eq!((f.whole, f.total), (4, 10));
    let report = "  stacks walked by frame pointers instead of copied (--unwind auto: the copy ring was half full; wrong where code has no frame pointers): cpu 43, offcpu 13647\n  user stacks unwound from .eh_frame: 58425 (11.5 MiB)\n";
    assert_eq!(fallbacks(report).1, 43 + 13647);
    let report = "  user stacks walked in the kernel from .eh_frame (--unwind dwarf): 19 binaries with tables (270775 rows, 3.1 MiB in the kernel), 1 walked by frame pointers\n    cpu               883 walked, 100.0% whole\n    offcpu      100919 walked,  99.9% whole; 12 cut short, 7 frames walked by frame pointers for want of .eh_frame\n";
    assert_eq!(
        fallbacks(report),
        (vec![report.lines().nth(2).expect("a third line")], 7)
    );
    assert_eq!(walk_lines(report).len(), 2);
    assert_eq!(fallbacks("  user stacks unwound from .eh_frame: 5\n").1, 0);
    let traces = "File: x\n-----------+-------\nthread_name:  io_thd_1\n thread_id:  12\n        45   IOThreadMain\n             start_thread\n             clone3\n-----------+-------\n         2   finish_task_switch [kernel]\n";
    assert_eq!(
        pprof_traces(traces),
        [
            (
                45,
                vec![
                    "IOThreadMain".to_owned(),
                    "start_thread".to_owned(),
                    "clone3".to_owned()
                ]
            ),
            (2, vec!["finish_task_switch [kernel]".to_owned()])
        ]
    );
}
