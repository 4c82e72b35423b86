//! `profiler top` as a person sees it: the full-screen view driven in a real
//! terminal (a detached tmux session of a fixed size, keys sent with
//! `tmux send-keys`, the screen read with `tmux capture-pane` and polled
//! until it shows what the test waits for), and the plain tables it prints
//! when its stdout is a pipe. Each test checks one truth against a workload
//! that knows it:
//!
//! - the function that does three times the work (cpu_split's hot_three)
//!   is the first row of the functions view, above hot_one;
//! - the lock view names the contended pthread mutex (`g_lock`, as our
//!   lock profiles name it) with waits every second;
//! - watching the whole machine, the process burning a whole CPU is the
//!   first process row, and Enter on it shows that process's functions;
//! - a Go program leaking a goroutine every 10 ms shows its leaking site
//!   (`main.leakOne`) growing in the goroutine view;
//! - when its one target exits, the screen keeps the target's last data
//!   (hot_three still first, the same samples per second, also in a table
//!   rebuilt seconds later);
//! - `q` ends it with status 0 and gives the terminal back: off the
//!   alternate screen, out of raw mode, no program of ours left loaded
//!   (every terminal test ends this way);
//! - piped, it prints a table a second until its one target exits, then
//!   the last table and exits 0, and a reader that leaves early (`| head`)
//!   ends it with status 0 too.

use std::{
    io::{BufRead as _, Read as _},
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use tests::*;

/// How long the first screen may take: loading the programs.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a screen may take to show what a test waits for.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether tmux runs (`tmux -V`).
fn tmux_present() -> Result<(), String> {
    program("tmux", &["-V"])
}

/// The tests' own tmux server (`tmux -L profiler-top-tests`, without a
/// configuration file), apart from any other tmux on the machine; it exits
/// with its last session.
fn tmux(args: &[&str]) -> Output {
    Command::new("tmux")
        .args(["-f", "/dev/null", "-L", "profiler-top-tests"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run tmux")
}

/// `arg` quoted for the shell.
fn quoted(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// `profiler top ARGS` in a detached 160x40 tmux session of its own,
/// killed when dropped (also when the test fails). Its stderr goes to a
/// file; after it exits the pane shows `TOP-EXIT=<status>` and whether the
/// terminal was left in raw mode (`TTY=raw` or `TTY=cooked`).
struct TopInTmux {
    session: String,
    log: PathBuf,
    _dir: Scratch,
}

impl TopInTmux {
    fn start(name: &str, args: &[&str]) -> TopInTmux {
        let dir = scratch_dir(name);
        let log = dir.join("top.stderr");
        let session = format!("top-{}-{name}", std::process::id());
        let command = format!(
            "{} top {} 2>{}; echo TOP-EXIT=$?; \
             case \"$(stty -a)\" in *-icanon*) echo TTY=raw;; *) echo TTY=cooked;; esac; \
             sleep 600",
            quoted(&profiler_bin().to_string_lossy()),
            args.iter().map(|a| quoted(a)).collect::<Vec<_>>().join(" "),
            quoted(&log.to_string_lossy()),
        );
        let started = tmux(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "160",
            "-y",
            "40",
            &command,
        ]);
        assert!(
            started.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        TopInTmux {
            session,
            log,
            _dir: dir,
        }
    }

    /// The screen as text, a line per row.
    fn screen(&self) -> String {
        let out = tmux(&["capture-pane", "-p", "-t", &self.session]);
        assert!(
            out.status.success(),
            "tmux capture-pane failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Presses keys (tmux key names: `Enter`, `Space`, `Tab`, `q`, `3`).
    fn keys(&self, keys: &[&str]) {
        let out = tmux(&[&["send-keys", "-t", &self.session][..], keys].concat());
        assert!(
            out.status.success(),
            "tmux send-keys {keys:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// What the profiler wrote on stderr so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls the screen until `found` gives something, for up to `timeout`;
    /// panics with the last screen and the profiler's log if it does not,
    /// or if the profiler exits first.
    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        found: impl FnMut(&str) -> Option<T>,
    ) -> T {
        self.poll(what, timeout, false, found)
    }

    /// [`TopInTmux::wait_for`], where the profiler may have exited if
    /// `exit_expected`.
    fn poll<T>(
        &self,
        what: &str,
        timeout: Duration,
        exit_expected: bool,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if let Some(value) = found(&screen) {
                return value;
            }
            assert!(
                exit_expected || !screen.contains("TOP-EXIT="),
                "profiler top exited while waiting for {what}:\n{screen}\nits stderr:\n{}",
                self.log()
            );
            assert!(
                Instant::now() < deadline,
                "the screen did not show {what} within {timeout:?}; the last screen:\n{screen}\nprofiler top's stderr:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the first full screen: the header and a table's header
    /// row.
    fn wait_started(&self, table_first: &str) -> String {
        self.wait_for(
            "the first screen (the header and a table)",
            START_TIMEOUT,
            |s| (header(s).is_some() && table_rows(s, table_first).is_some()).then(|| s.to_owned()),
        )
    }

    /// Presses `q` and checks that profiler top exits 0 and gives the
    /// terminal back: the alternate screen left (its header no longer
    /// shown, tmux's `alternate_on` 0), raw mode off, and nothing of ours
    /// left loaded.
    fn quit(&self) {
        self.keys(&["q"]);
        self.check_ended("q");
    }

    /// The profiler's process id (the pane's shell's child).
    fn profiler_pid(&self) -> u32 {
        let pane = tmux(&["display", "-p", "-t", &self.session, "#{pane_pid}"]);
        let pane = String::from_utf8_lossy(&pane.stdout).trim().to_owned();
        let children = std::fs::read_to_string(format!("/proc/{pane}/task/{pane}/children"))
            .unwrap_or_default();
        children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
            .find(|c| {
                std::fs::read_to_string(format!("/proc/{c}/comm"))
                    .is_ok_and(|comm| comm.trim() == "profiler")
            })
            .unwrap_or_else(|| panic!("no profiler process under the pane's shell {pane}"))
    }

    /// Checks that profiler top exited 0 after `how` and gave the terminal
    /// back (see [`TopInTmux::quit`]).
    fn check_ended(&self, how: &str) {
        let screen = self.poll("TOP-EXIT= and TTY=", SCREEN_TIMEOUT, true, |s| {
            s.contains("TTY=").then(|| s.to_owned())
        });
        assert!(
            screen.contains("TOP-EXIT=0"),
            "profiler top did not exit 0 on {how}:\n{screen}\nits stderr:\n{}",
            self.log()
        );
        assert!(
            !screen.contains("profiler top:"),
            "the alternate screen is still shown after {how}:\n{screen}"
        );
        let alternate = tmux(&["display", "-p", "-t", &self.session, "#{alternate_on}"]);
        assert_eq!(
            String::from_utf8_lossy(&alternate.stdout).trim(),
            "0",
            "tmux says the pane is still on the alternate screen:\n{screen}"
        );
        assert!(
            screen.contains("TTY=cooked"),
            "the terminal is left in raw mode (no icanon):\n{screen}"
        );
        assert_nothing_left_loaded();
    }
}

impl Drop for TopInTmux {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("profiler top's stderr:\n{}", self.log());
        }
        // Ends the profiler (SIGHUP) if it still runs, and the sleep.
        let _ = tmux(&["kill-session", "-t", &self.session]);
    }
}

/// The first header line (`profiler top: ...`), if shown.
fn header(screen: &str) -> Option<&str> {
    screen.lines().find(|l| l.starts_with("profiler top: "))
}

/// The rows of the table whose header row starts with the column
/// `first`: each row's cells split at spaces (a last column with spaces
/// comes out as several), up to the first blank line or the footer.
/// `None` if no such table is shown.
fn table_rows<'s>(screen: &'s str, first: &str) -> Option<Vec<Vec<&'s str>>> {
    let mut lines = screen.lines();
    lines.find(|l| l.trim_start().starts_with(first))?;
    Some(
        lines
            .take_while(|l| {
                let l = l.trim();
                !l.is_empty() && l != "(nothing yet)" && !l.starts_with("q quit")
            })
            .map(|l| l.split_whitespace().collect())
            .collect(),
    )
}

/// The functions view's rows: FUNCTION (the cells after the five numbers).
fn functions(screen: &str) -> Option<Vec<String>> {
    if !screen.contains("view: functions") {
        return None;
    }
    let rows = table_rows(screen, "SELF%")?;
    Some(
        rows.iter()
            .map(|r| r.get(5..).unwrap_or(&[]).join(" "))
            .collect(),
    )
}

/// Whether the functions view shows hot_three first and hot_one below it.
fn hot_three_first(screen: &str) -> bool {
    functions(screen).is_some_and(|f| {
        f.first().is_some_and(|n| n == "hot_three") && f.iter().skip(1).any(|n| n == "hot_one")
    })
}

/// The processes view's PIDs, in order.
fn process_pids(screen: &str) -> Option<Vec<u32>> {
    if !screen.contains("view: processes") {
        return None;
    }
    let rows = table_rows(screen, "PID")?;
    Some(
        rows.iter()
            .filter_map(|r| r.first()?.parse().ok())
            .collect(),
    )
}

#[test]
fn the_heavier_function_is_the_first_row() {
    require!(bpf(), tmux_present());
    let binary = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let workload = start_workload(&binary, &["30"]);
    let pid = workload.0.id().to_string();
    let top = TopInTmux::start("heavier", &["--pid", &pid]);
    let screen = top.wait_started("SELF%");
    let first = header(&screen).unwrap_or_default();
    assert!(
        first.starts_with(&format!("profiler top: PID {pid} (")),
        "the header names the target: {first:?}\n{screen}"
    );
    assert!(
        screen.contains("view: functions   sort: SELF%"),
        "one process opens on its functions by self share:\n{screen}"
    );
    let screen = top.wait_for(
        "hot_three as the first function and hot_one below it",
        SCREEN_TIMEOUT,
        |s| hot_three_first(s).then(|| s.to_owned()),
    );
    eprintln!("{screen}");
    top.quit();
}

#[test]
fn the_lock_view_names_the_contended_lock() {
    require!(bpf(), tmux_present());
    let binary = build_workload("mutex_contend", FRAME_POINTER_FLAGS);
    // 4 threads each holding g_lock 1 ms, 5000 rounds: about 20 s of
    // contention (killed at the end of the test).
    let workload = start_workload(&binary, &["4", "5000", "1000"]);
    let pid = workload.0.id().to_string();
    let top = TopInTmux::start("locks", &["--pid", &pid]);
    top.wait_started("SELF%");
    top.keys(&["3"]);
    let (waits, wait_ms, screen) = top.wait_for(
        "a row of g_lock with waits in the locks view",
        SCREEN_TIMEOUT,
        |s| {
            if !s.contains("view: locks") {
                return None;
            }
            let rows = table_rows(s, "WAITS/s")?;
            let row = rows.iter().find(|r| r.get(3) == Some(&"g_lock"))?;
            let waits: f64 = row.first()?.parse().ok()?;
            let wait_ms: f64 = row.get(1)?.parse().ok()?;
            (waits > 0.0).then(|| (waits, wait_ms, s.to_owned()))
        },
    );
    eprintln!("{screen}");
    assert!(
        wait_ms > 0.0,
        "g_lock has {waits} waits/s but no wait time:\n{screen}"
    );
    top.quit();
}

#[test]
fn the_whole_machine_view_drills_into_the_busy_process() {
    require!(bpf(), tmux_present());
    let binary = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let workload = start_workload(&binary, &["30"]);
    let pid = workload.0.id();
    let top = TopInTmux::start("machine", &[]);
    let screen = top.wait_started("PID");
    assert!(
        screen.contains("1 processes"),
        "the whole machine has the processes view:\n{screen}"
    );
    // Other processes run too: wait (a few refreshes) until the one
    // burning a whole CPU is first, then pause so that the row under the
    // selection (row 0) stays it while Enter is pressed.
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        top.wait_for(&format!("PID {pid} as the first process row"), left, |s| {
            (process_pids(s)?.first() == Some(&pid)).then_some(())
        });
        top.keys(&["Space"]);
        let paused = top.wait_for("[paused]", SCREEN_TIMEOUT, |s| {
            header(s)?.contains("[paused]").then(|| s.to_owned())
        });
        if process_pids(&paused).and_then(|p| p.first().copied()) == Some(pid) {
            break;
        }
        top.keys(&["Space"]);
        top.wait_for("[paused] gone", SCREEN_TIMEOUT, |s| {
            (!header(s)?.contains("[paused]")).then_some(())
        });
        assert!(
            Instant::now() < deadline,
            "PID {pid} was not the first row when paused:\n{paused}"
        );
    }
    top.keys(&["Enter"]);
    top.wait_for(&format!("PID {pid} in the header"), SCREEN_TIMEOUT, |s| {
        header(s)?
            .starts_with(&format!("profiler top: PID {pid} ("))
            .then_some(())
    });
    top.keys(&["Space"]);
    let screen = top.wait_for(
        "the drilled-in process's functions, hot_three first",
        SCREEN_TIMEOUT,
        |s| {
            let first = header(s)?;
            (first.starts_with(&format!("profiler top: PID {pid} ("))
                && !first.contains("[paused]")
                && hot_three_first(s))
            .then(|| s.to_owned())
        },
    );
    eprintln!("{screen}");
    top.quit();
}

#[test]
fn the_goroutine_view_shows_the_leak_growing() {
    require!(bpf(), tmux_present(), go_versions(1));
    let toolchain = go_toolchains().into_iter().last().expect("a Go toolchain");
    let binary = build_go_workload("leak", &toolchain, false);
    let workload = GoWorkload::start(&binary, &["0"]);
    let pid = workload.pid().to_string();
    let top = TopInTmux::start("goroutines", &["--pid", &pid]);
    let screen = top.wait_started("SELF%");
    assert!(
        screen.contains("6 goroutines"),
        "a Go process has the goroutines view (Go {}):\n{screen}",
        toolchain.version
    );
    top.keys(&["6"]);
    // (LIVE, GROWTH) of main.leakOne's row.
    let leak_one = |s: &str| -> Option<(u64, f64)> {
        if !s.contains("view: goroutines") {
            return None;
        }
        let rows = table_rows(s, "LIVE")?;
        let row = rows.iter().find(|r| r.get(2) == Some(&"main.leakOne"))?;
        Some((row.first()?.parse().ok()?, row.get(1)?.parse().ok()?))
    };
    let (first, _) = top.wait_for("main.leakOne's row", SCREEN_TIMEOUT, leak_one);
    let at = Instant::now();
    let (live, growth, screen) = top.wait_for(
        &format!("main.leakOne's LIVE above {first} a few seconds later"),
        SCREEN_TIMEOUT,
        |s| {
            let (live, growth) = leak_one(s)?;
            (at.elapsed() >= Duration::from_secs(3) && live > first)
                .then(|| (live, growth, s.to_owned()))
        },
    );
    eprintln!("{screen}");
    assert!(
        growth > 0.0,
        "main.leakOne has grown from {first} to {live} live, but its GROWTH is {growth}:\n{screen}"
    );
    // Never more than the program leaked so far (+1: it counts a leak
    // after starting the goroutine).
    let count = workload.get("/count").body;
    let leaked = workload_value(&count, "leaked").expect("leaked= from /count");
    assert!(
        live as f64 <= leaked + 1.0,
        "{live} live at main.leakOne, more than the {leaked} the program leaked:\n{screen}"
    );
    top.quit();
}

/// The header's samples per second (`... 99 samples/s ...`).
fn samples_per_second(screen: &str) -> Option<f64> {
    let words: Vec<&str> = header(screen)?.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "samples/s")?;
    words.get(at.checked_sub(1)?)?.parse().ok()
}

#[test]
fn the_screen_keeps_the_last_data_when_the_target_exits() {
    require!(bpf(), tmux_present());
    let binary = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let workload = start_workload(&binary, &["4"]);
    let pid = workload.0.id().to_string();
    let top = TopInTmux::start("exited", &["--pid", &pid]);
    let screen = top.wait_for("[target exited: last data kept]", START_TIMEOUT, |s| {
        header(s)?
            .contains("[target exited: last data kept]")
            .then(|| s.to_owned())
    });
    eprintln!("{screen}");
    let rate = samples_per_second(&screen).expect("samples/s in the header");
    assert!(
        rate > 0.0 && hot_three_first(&screen),
        "the screen at the exit shows the last second:\n{screen}"
    );
    // The refreshes that follow keep it (no new data: the window does not
    // move on past it).
    let exited = Instant::now();
    while exited.elapsed() < Duration::from_secs(3) {
        let screen = top.screen();
        assert!(
            hot_three_first(&screen) && samples_per_second(&screen) == Some(rate),
            "{:?} after the exit the screen no longer shows the last data (it showed {rate} samples/s, hot_three first):\n{screen}",
            exited.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A table rebuilt later (sorted by the next column) has the same rate:
    // the same data over the same window, however long ago it ended.
    top.keys(&["s"]);
    let screen = top.wait_for("sort: TOTAL%", SCREEN_TIMEOUT, |s| {
        s.contains("sort: TOTAL%").then(|| s.to_owned())
    });
    assert_eq!(
        samples_per_second(&screen),
        Some(rate),
        "rebuilt {:?} after the exit:\n{screen}",
        exited.elapsed()
    );
    top.quit();
}

#[test]
fn q_exits_0_and_gives_the_terminal_back() {
    require!(bpf(), tmux_present());
    let binary = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let workload = start_workload(&binary, &["30"]);
    let pid = workload.0.id().to_string();
    let top = TopInTmux::start("quit", &["--pid", &pid]);
    top.wait_started("SELF%");
    let alternate = tmux(&["display", "-p", "-t", &top.session, "#{alternate_on}"]);
    assert_eq!(
        String::from_utf8_lossy(&alternate.stdout).trim(),
        "1",
        "profiler top runs on the alternate screen"
    );
    top.quit();
}

#[test]
fn sigterm_exits_0_and_gives_the_terminal_back() {
    require!(bpf(), tmux_present());
    let binary = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let workload = start_workload(&binary, &["30"]);
    let pid = workload.0.id().to_string();
    let top = TopInTmux::start("sigterm", &["--pid", &pid]);
    top.wait_started("SELF%");
    send_signal(top.profiler_pid(), libc::SIGTERM);
    top.check_ended("SIGTERM");
    assert!(
        process_alive(workload.0.id()),
        "the target is left as it was: still running"
    );
}

/// `profiler top ARGS` with stdout and stderr piped.
fn spawn_top(args: &[&str]) -> std::process::Child {
    spawn_profiler(&[&["top"][..], args].concat())
}

/// Waits up to `timeout` for `child` to exit.
fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the profiler") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The child's stderr (after it exited, or after it was killed).
fn stderr_of(child: &mut std::process::Child) -> String {
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}

#[test]
fn piped_mode_prints_tables_until_the_target_exits() {
    require!(bpf());
    let binary = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let mut workload = start_workload(&binary, &["3"]);
    let pid = workload.0.id().to_string();
    let mut top = spawn_top(&["--pid", &pid]);
    let stdout = top.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::BufReader::new(stdout).read_to_string(&mut text);
        text
    });
    let ran = workload.0.wait().expect("wait for the workload");
    let target_exited = Instant::now();
    assert!(ran.success(), "cpu_split failed: {ran}");
    let Some(status) = wait_exit(&mut top, Duration::from_secs(10)) else {
        let _ = top.kill();
        let _ = top.wait();
        panic!(
            "profiler top did not exit within 10 s of its target:\n{}\n{}",
            reader.join().unwrap_or_default(),
            stderr_of(&mut top)
        );
    };
    let after = target_exited.elapsed();
    let out = reader.join().expect("read the profiler's stdout");
    let stderr = stderr_of(&mut top);
    eprintln!("{out}");
    assert!(status.success(), "profiler top failed ({status}): {stderr}");
    assert!(
        after <= Duration::from_secs(5),
        "profiler top exited {after:?} after its target"
    );
    let headers: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("profiler top:"))
        .collect();
    assert!(
        headers.len() >= 2,
        "fewer than two tables in 3 s:\n{out}\n{stderr}"
    );
    assert!(
        headers
            .last()
            .is_some_and(|h| h.contains("[target exited: last data kept]")),
        "the last table is of after the exit: {headers:?}"
    );
    assert!(
        headers[..headers.len() - 1]
            .iter()
            .all(|h| h.starts_with(&format!("profiler top: PID {pid} ("))),
        "every header names the target: {headers:?}"
    );
    // Each table: the two header lines, a note, the column headers, rows, a
    // blank line.
    assert!(
        out.lines()
            .filter(|l| l.trim_start().starts_with("SELF%") && l.ends_with("FUNCTION"))
            .count()
            == headers.len(),
        "a header row per table:\n{out}"
    );
    assert!(
        out.ends_with("\n\n"),
        "the last table ends with a blank line"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().last() == Some("hot_three")),
        "hot_three is in the tables:\n{out}"
    );
    assert_nothing_left_loaded();
}

#[test]
fn piped_mode_exits_0_when_the_reader_leaves() {
    require!(bpf());
    let binary = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let workload = start_workload(&binary, &["30"]);
    let pid = workload.0.id();
    let mut top = spawn_top(&["--pid", &pid.to_string()]);
    // `profiler top --pid P | head -3`.
    let stdout = top.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    for n in 0..3 {
        match lines.next() {
            Some(Ok(_)) => {}
            other => {
                let _ = top.kill();
                let _ = top.wait();
                panic!(
                    "line {} of profiler top's output: {other:?}\n{}",
                    n + 1,
                    stderr_of(&mut top)
                );
            }
        }
    }
    drop(lines);
    let Some(status) = wait_exit(&mut top, Duration::from_secs(10)) else {
        let _ = top.kill();
        let _ = top.wait();
        panic!(
            "profiler top still runs 10 s after its reader left:\n{}",
            stderr_of(&mut top)
        );
    };
    let stderr = stderr_of(&mut top);
    assert!(
        status.success(),
        "profiler top failed ({status}) when its reader left: {stderr}"
    );
    assert!(
        process_alive(pid),
        "the target exited first: the reader leaving is not what ended it"
    );
    assert_nothing_left_loaded();
}
