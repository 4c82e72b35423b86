//! A Go program keeps running correctly for a minute while everything this
//! profiler does to a Go process is done to it at once: `serve` attached
//! the whole time (CPU, off-CPU and futex programs, goroutine metrics), and
//! over and over `dump`, `goroutines`, and the goroutine and CPU profiles
//! over HTTP. The program's own checksum lines (an LCG it steps between
//! reads of the clock) must stay exactly right. Beside it, a program that
//! waits on a contended `sync.Mutex`, channels, a `WaitGroup` and sleeps
//! (`go_waits.go`) runs a 50 s phase under a second `serve`
//! (every Go wait uprobe on, firing thousands of times a second) and must
//! answer the right checksum.

use std::time::{Duration, Instant};

use tests::*;

/// How long the program is watched.
const SOAK: Duration = Duration::from_secs(60);

#[test]
fn a_go_program_runs_correctly_under_every_reader_for_a_minute() {
    require!(bpf(), go(), go_versions(1));
    let toolchain = go_toolchains().into_iter().last().expect("a Go toolchain");
    let binary = build_go_workload("clock_hot", &toolchain, true);
    let dir = scratch_dir("go-soak");
    let mut workload = GoWorkload::start(&binary, &["0"]);
    let pid = workload.pid();
    let server = Server::on_loopback(pid, &dir);
    let base = server.base.clone();
    let started = Instant::now();
    // The waits program, under its own server, for most of the minute.
    let waits_binary = build_go_workload("go_waits", &toolchain, true);
    let waits = GoWorkload::start(&waits_binary, &["0"]);
    let waits_dir = scratch_dir("go-soak-waits");
    let waits_server = Server::on_loopback(waits.pid(), &waits_dir);
    let waits_phase = std::thread::spawn({
        let url = waits.url("/run?ms=50000");
        move || http_get(&url)
    });
    // Everything else, over and over, beside the program.
    let readers = std::thread::spawn(move || {
        let mut rounds = 0;
        let pid = pid.to_string();
        while started.elapsed() + Duration::from_secs(8) < SOAK {
            let dump = profiler(&["dump", "--pid", &pid]);
            assert!(
                dump.status.success(),
                "{}",
                String::from_utf8_lossy(&dump.stderr)
            );
            let watch = profiler(&[
                "goroutines",
                "--pid",
                &pid,
                "--duration",
                "2s",
                "--interval",
                "500ms",
            ]);
            assert!(
                watch.status.success(),
                "{}",
                String::from_utf8_lossy(&watch.stderr)
            );
            for path in [
                "/debug/pprof/goroutine?debug=2",
                "/debug/pprof/goroutine",
                "/debug/pprof/profile?seconds=2",
                "/metrics",
            ] {
                let answer = http_get(&format!("{base}{path}")).expect("the server answers");
                assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            }
            rounds += 1;
        }
        rounds
    });
    let mut checked = 0;
    while started.elapsed() < SOAK {
        let line = workload.line_starting("checksum=", Duration::from_secs(10));
        let value = |key: &str| {
            workload_value(&line, key)
                .map(|v| v as u64)
                .unwrap_or_else(|| panic!("{key} in {line:?}"))
        };
        let rounds = value("rounds");
        // f64 loses the low bits of a 64-bit checksum: compare the text.
        let printed = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("checksum="))
            .unwrap_or_default();
        assert_eq!(
            printed,
            clock_hot_checksum(rounds).to_string(),
            "the program's checksum after {rounds} rounds"
        );
        checked += 1;
    }
    let rounds = readers.join().expect("the readers ran");
    eprintln!(
        "Go {}: {checked} checksum lines right over {} s, while {rounds} rounds of dump, goroutines and HTTP profiles ran",
        toolchain.version,
        SOAK.as_secs()
    );
    assert!(process_alive(pid), "the program still runs");
    assert!(checked >= 50 && rounds >= 3);
    let answer = waits_phase
        .join()
        .expect("the waits phase")
        .expect("go_waits answers");
    let value = |key: &str| {
        workload_value(&answer.body, key).unwrap_or_else(|| panic!("{key} in {}", answer.body))
    };
    eprintln!(
        "go_waits under serve for 50 s: checksum {} (expected {}), {} channel receives",
        value("checksum"),
        value("expected_checksum"),
        value("chan_waits")
    );
    assert_eq!(value("checksum"), value("expected_checksum"));
    assert!(value("chan_waits") > 1000.0);
    let block = waits_server.get("/debug/pprof/block");
    assert_eq!(block.status, 200, "{}", block.body);
    drop(waits_server);
    drop(waits);
    drop(server);
    assert_nothing_left_loaded();
}
