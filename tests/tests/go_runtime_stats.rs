//! The Go runtime's metrics in `profiler serve` (`go_*`, named as
//! Prometheus' client_golang names them), read from the memory of a Go
//! program that does not export them, checked against the program's own
//! view served by expvar (`tests/workloads/go/memstats.go`:
//! `runtime.ReadMemStats`, `runtime.NumGoroutine`,
//! `runtime.ThreadCreateProfile`, `runtime/debug.ReadGCStats`), on every Go
//! toolchain present, each build normal and stripped:
//!
//! - the runtime variables found in the code of a stripped binary are
//!   where the symbol table of its unstripped twin says (`go tool nm`);
//! - with the program's garbage paused (its `/pause`), so that no GC runs
//!   between the reads: the GC cycle count, pause total and quantiles and
//!   last GC time are the program's own; heap bytes, objects and the next
//!   GC's goal within 10%; goroutines and threads within 2;
//! - once resumed, the GC count moves on; `promtool check metrics` passes;
//! - a program that is not Go gets no `go_*` metric and no error; a Go
//!   program that exits leaves `serve` serving without its `go_*`.
//!
//! Toolchains: [`go_toolchains`], plus the `go` commands listed in
//! `PROFILER_TEST_EXTRA_GO` (colon-separated), to check releases that
//! `cargo xtask setup` does not install (1.21, 1.23, 1.24, 1.26).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use profiler::go::runtime_stats::RuntimeStats;
use tests::*;

/// The program's own view: `/debug/vars`.
fn vars(workload: &GoWorkload) -> serde_json::Value {
    let answer = workload.get("/debug/vars");
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).unwrap_or_else(|err| panic!("{err}: {}", answer.body))
}

fn number(json: &serde_json::Value, path: &[&str]) -> f64 {
    let mut value = json;
    for key in path {
        value = &value[*key];
    }
    value
        .as_f64()
        .unwrap_or_else(|| panic!("no number at {path:?} in {json}"))
}

/// The address of each symbol `go tool nm` lists in `binary`.
fn symbols(go: &Path, binary: &Path) -> Vec<(String, u64)> {
    let out = Command::new(go)
        .args(["tool", "nm"])
        .arg(binary)
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap_or_else(|err| panic!("go tool nm: {err}"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = u64::from_str_radix(fields.next()?, 16).ok()?;
            let _kind = fields.next()?;
            Some((fields.next()?.to_owned(), address))
        })
        .collect()
}

/// What one build gave, for the summary printed at the end.
struct Measured {
    what: String,
    lines: Vec<String>,
}

#[test]
fn go_metrics_agree_with_the_programs_own() {
    require!(bpf(), go_versions(4), program("promtool", &["--version"]));
    let mut measured = Vec::new();
    for toolchain in go_toolchains_and_extra() {
        let normal = build_go_workload("memstats", &toolchain, false);
        let stripped = build_go_workload("memstats", &toolchain, true);
        let symbols = symbols(&toolchain.go, &normal);
        for (binary, is_stripped) in [(&normal, false), (&stripped, true)] {
            let what = format!(
                "Go {} {}",
                toolchain.version,
                if is_stripped { "stripped" } else { "normal" }
            );
            measured.push(check(&what, binary, (!is_stripped).then_some(&symbols)));
        }
    }
    for m in &measured {
        eprintln!("{}:", m.what);
        for line in &m.lines {
            eprintln!("    {line}");
        }
    }
}

/// One build: the variables found, then `serve`'s metrics against the
/// program's own.
fn check(what: &str, binary: &Path, symbols: Option<&Vec<(String, u64)>>) -> Measured {
    let dir = scratch_dir(&format!(
        "go-runtime-stats-{}",
        what.replace([' ', '.'], "-")
    ));
    let mut workload = GoWorkload::start(binary, &["0"]);
    workload.line_starting("ready", Duration::from_secs(30));
    let mut lines = Vec::new();

    // The reader, in-process: every variable found, where the symbol table
    // says.
    let reader =
        RuntimeStats::for_process(workload.pid()).unwrap_or_else(|err| panic!("{what}: {err}"));
    assert!(
        reader.missing().is_empty(),
        "{what}: {:?}",
        reader.missing()
    );
    let found = reader.variables();
    assert_eq!(found.len(), 7, "{what}: {found:x?}");
    if let Some(symbols) = symbols {
        for (name, address) in &found {
            let want = symbols
                .iter()
                .find(|(symbol, _)| symbol == name)
                .map(|(_, a)| *a);
            assert_eq!(want, Some(*address), "{what}: {name} found at {address:#x}");
        }
    }
    let started = Instant::now();
    let reads = 100;
    for _ in 0..reads {
        reader.read().unwrap_or_else(|err| panic!("{what}: {err}"));
    }
    lines.push(format!(
        "one read of the runtime's statistics: {:.0} µs",
        started.elapsed().as_secs_f64() * 1e6 / f64::from(reads)
    ));
    drop(reader);

    let server = Server::on_loopback(workload.pid(), &dir);
    // GCs happen (about one a second).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(workload.get("/pause").body.trim(), "paused", "{what}");
    // A cycle in progress ends, and serve publishes after a drain.
    std::thread::sleep(Duration::from_millis(2500));

    // The program's own view just before and after ours; its GC count did
    // not move in between.
    let (before, metrics, after) = {
        let mut tries = 0;
        loop {
            let before = vars(&workload);
            let metrics = server.get("/metrics");
            let after = vars(&workload);
            assert_eq!(metrics.status, 200, "{what}: {}", metrics.body);
            let gc = |v: &serde_json::Value| number(v, &["memstats", "NumGC"]);
            if gc(&before) == gc(&after) {
                break (before, metrics.body, after);
            }
            tries += 1;
            assert!(
                tries < 5,
                "{what}: the program's GC count kept moving while paused"
            );
            std::thread::sleep(Duration::from_millis(1500));
        }
    };
    let ours = |series: &str| -> f64 {
        metric_value(&metrics, series).unwrap_or_else(|| {
            panic!(
                "{what}: no {series} in:\n{metrics}\nlog:\n{}",
                server.stderr()
            )
        })
    };
    let theirs = |key: &str| number(&after, &["memstats", key]);

    // Exact: the GC's own record.
    let numgc = theirs("NumGC");
    assert!(numgc > 0.0, "{what}: no GC ran in 3 s of garbage");
    for series in [
        "go_gc_cycles_total_gc_cycles_total",
        "go_gc_duration_seconds_count",
    ] {
        assert_eq!(ours(series), numgc, "{what}: {series}");
    }
    assert_eq!(
        ours("go_gc_cycles_forced_gc_cycles_total"),
        theirs("NumForcedGC"),
        "{what}"
    );
    let pause_total = theirs("PauseTotalNs") / 1e9;
    assert!(
        (ours("go_gc_duration_seconds_sum") - pause_total).abs() < 1e-9,
        "{what}: pause total {} vs {pause_total}",
        ours("go_gc_duration_seconds_sum")
    );
    let quantiles = after["gcstats"]["PauseQuantiles"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no quantiles in {after}"));
    for (q, theirs) in ["0", "0.25", "0.5", "0.75", "1"].iter().zip(quantiles) {
        let theirs = theirs.as_f64().unwrap_or(f64::NAN) / 1e9;
        let ours = ours(&format!("go_gc_duration_seconds{{quantile=\"{q}\"}}"));
        assert!(
            (ours - theirs).abs() < 1e-9,
            "{what}: pause quantile {q}: {ours} vs {theirs}"
        );
    }
    let last_gc = theirs("LastGC") / 1e9;
    assert!(
        (ours("go_memstats_last_gc_time_seconds") - last_gc).abs() < 1e-3,
        "{what}: last GC {} vs {last_gc}",
        ours("go_memstats_last_gc_time_seconds")
    );
    let version = after["version"].as_str().unwrap_or_default();
    assert_eq!(
        ours(&format!("go_info{{version=\"{version}\"}}")),
        1.0,
        "{what}"
    );
    assert_eq!(ours("profiler_go_stats_available"), 1.0, "{what}");
    assert_eq!(ours("profiler_go_stats_read_errors_total"), 0.0, "{what}");

    // Within 10%: what ReadMemStats computes after flushing the caches.
    for (series, key) in [
        ("go_memstats_heap_alloc_bytes", "HeapAlloc"),
        ("go_memstats_alloc_bytes", "Alloc"),
        ("go_memstats_heap_inuse_bytes", "HeapInuse"),
        ("go_memstats_heap_objects", "HeapObjects"),
        ("go_memstats_next_gc_bytes", "NextGC"),
        ("go_memstats_alloc_bytes_total", "TotalAlloc"),
        ("go_memstats_mallocs_total", "Mallocs"),
        ("go_memstats_frees_total", "Frees"),
        ("go_memstats_heap_sys_bytes", "HeapSys"),
        ("go_memstats_sys_bytes", "Sys"),
    ] {
        let (o, t) = (ours(series), theirs(key));
        lines.push(format!(
            "{series}: ours {o:.0}, the program's {key} {t:.0} ({:+.2}%)",
            (o - t) / t * 100.0
        ));
        assert!(within(o, t, 10.0), "{what}: {series} {o} vs {key} {t}");
    }
    // Stacks: a goroutine's stack of 8 to 32 KiB (an HTTP handler's)
    // comes and goes between the reads; printed, not checked.
    lines.push(format!(
        "go_memstats_stack_inuse_bytes: ours {:.0}, the program's StackInuse {:.0}",
        ours("go_memstats_stack_inuse_bytes"),
        theirs("StackInuse")
    ));
    // Goroutines and threads: counted as the program counts them (its own
    // HTTP handler goroutine comes and goes).
    for (series, key) in [("go_goroutines", "goroutines"), ("go_threads", "threads")] {
        let o = ours(series);
        let (b, a) = (number(&before, &[key]), number(&after, &[key]));
        lines.push(format!("{series}: ours {o}, the program's {b}..{a}"));
        assert!(
            o >= b.min(a) - 2.0 && o <= b.max(a) + 2.0,
            "{what}: {series} {o} vs the program's {b}..{a}"
        );
    }
    lines.push(format!(
        "GC cycles: ours {}, the program's {numgc}; pause total {:.6} s (theirs {pause_total:.6} s)",
        ours("go_gc_cycles_total_gc_cycles_total"),
        ours("go_gc_duration_seconds_sum")
    ));
    let gcs = ours("go_gc_cycles_total_gc_cycles_total");

    if let Err(why) = promtool_check_metrics(&metrics) {
        panic!("{what}: promtool check metrics failed:\n{why}\n--- metrics ---\n{metrics}");
    }

    // Resumed: more GCs.
    assert_eq!(workload.get("/resume").body.trim(), "resumed", "{what}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = metric_value(
            &server.get("/metrics").body,
            "go_gc_cycles_total_gc_cycles_total",
        )
        .unwrap_or(0.0);
        if now > gcs {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the GC count stayed {gcs} for 20 s after resuming"
        );
    }
    let health = server.get("/healthz");
    let health: serde_json::Value =
        serde_json::from_str(&health.body).unwrap_or_else(|err| panic!("{err}: {}", health.body));
    assert_eq!(
        health["go_runtime_stats"]["served"],
        serde_json::Value::Bool(true),
        "{what}: {health}"
    );
    Measured {
        what: what.to_owned(),
        lines,
    }
}

#[test]
fn a_go_program_that_exits_leaves_serve_serving_without_its_go_metrics() {
    require!(bpf(), go());
    let toolchain = go_toolchains().into_iter().next().expect("go() found one");
    let binary = build_go_workload("memstats", &toolchain, true);
    let dir = scratch_dir("go-runtime-stats-exit");
    // Exits by itself after 6 s.
    let mut workload = GoWorkload::start(&binary, &["0", "6"]);
    workload.line_starting("ready", Duration::from_secs(30));
    let server = Server::on_loopback(workload.pid(), &dir);
    std::thread::sleep(Duration::from_secs(2));
    let metrics = server.get("/metrics").body;
    assert!(
        metrics.contains("\ngo_memstats_heap_alloc_bytes "),
        "{metrics}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        std::thread::sleep(Duration::from_millis(500));
        let metrics = server.get("/metrics").body;
        if metric_value(&metrics, "profiler_target_up") == Some(0.0) {
            break metrics;
        }
        assert!(Instant::now() < deadline, "the target never went down");
    };
    for gone in [
        "go_memstats_heap_alloc_bytes",
        "go_gc_duration_seconds",
        "go_info",
    ] {
        assert!(
            !metrics.contains(&format!("\n{gone}")),
            "{gone} still served after the exit:\n{metrics}"
        );
    }
    if let Err(why) = promtool_check_metrics(&metrics) {
        panic!("promtool check metrics failed after the exit:\n{why}\n{metrics}");
    }
    let log = server.stderr();
    assert!(!log.contains("panicked"), "{log}");
    eprintln!(
        "after the exit: profiler_go_stats_read_errors_total {:?}",
        metric_value(&metrics, "profiler_go_stats_read_errors_total")
    );
}

#[test]
fn a_program_that_is_not_go_gets_no_go_metrics() {
    require!(bpf());
    let dir = scratch_dir("go-runtime-stats-not-go");
    let binary = build_workload("sleeper", FRAME_POINTER_FLAGS);
    let workload = start_workload(&binary, &["100000", "10000"]);
    let server = Server::on_loopback(workload.0.id(), &dir);
    std::thread::sleep(Duration::from_secs(2));
    let metrics = server.get("/metrics").body;
    let go: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("go_") || l.starts_with("profiler_go_stats"))
        .collect();
    assert!(go.is_empty(), "go metrics for a C program: {go:?}");
    let health = server.get("/healthz").body;
    assert!(!health.contains("go_runtime_stats"), "{health}");
    let log = server.stderr();
    assert!(
        !log.contains("Go runtime"),
        "the log speaks of Go for a C program:\n{log}"
    );
}
