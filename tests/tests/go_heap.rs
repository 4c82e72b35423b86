//! Go's heap profile read from outside (`--profile goheap`, serve's
//! `/debug/pprof/heap`: the runtime's memory-profile buckets read through
//! `/proc/PID/mem`), against the program's own `/debug/pprof/heap` read
//! right after ours, on every Go toolchain present, normal and stripped:
//!
//! - `heap_live.go` keeps 32 MiB live from `main.keepLive` (allocated once,
//!   published by two GCs before it says `ready`, never freed: its bucket
//!   no longer changes, whatever the program's other goroutines allocate):
//!   `go tool pprof -top -sample_index=inuse_space` gives `main.keepLive`
//!   within 10% of Go's own (the same figure, in practice), and near the
//!   32 MiB truth (sampling noise aside); our file has Go's four sample
//!   types, `space/bytes` and MemProfileRate as period; the folded output
//!   values keepLive's stack by the same bytes in use;
//! - serve's `/debug/pprof/heap` likewise (newest toolchain);
//! - `heap_nopprof.go` (no runtime/pprof, so memory profiling is off):
//!   the recording fails with a sentence saying so and what to do; with
//!   `--go-rates heap=64K` it gives the allocations made meanwhile
//!   (`main.churn`) and the program's rate is 0 again after; a program
//!   that is not Go gets a clear error.

use std::{path::Path, process::Command, time::Duration};

use tests::*;

/// The flat `inuse_space` bytes of `function` in `go tool pprof -top`.
fn inuse_of(source: &str, function: &str) -> f64 {
    let top = go_pprof(&["-top", "-unit=B", "-sample_index=inuse_space"], source);
    top.lines()
        .find(|line| line.split_whitespace().last() == Some(function))
        .and_then(|line| line.split_whitespace().next())
        .and_then(|flat| flat.trim_end_matches('B').parse().ok())
        .unwrap_or_else(|| panic!("no {function} in:\n{top}"))
}

/// Records goheap of a ready heap_live and takes Go's own profile right
/// after; returns (ours, Go's) keepLive inuse_space and the report.
fn compare(what: &str, binary: &Path, dir: &Path) -> (f64, f64) {
    let mut workload = GoWorkload::start(binary, &["0"]);
    let ready = workload.line_starting("ready", Duration::from_secs(30));
    let truth = workload_value(&ready, "live").expect("live=") as f64;
    let ours = dir.join("heap.pb.gz");
    let folded = dir.join("heap.folded");
    let pid = workload.pid().to_string();
    let out = profiler(&[
        "record",
        "--pid",
        &pid,
        "--profile",
        "goheap",
        "--duration",
        "300ms",
        "-o",
        ours.to_str().expect("utf-8 path"),
        "-o",
        folded.to_str().expect("utf-8 path"),
    ]);
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: record failed:\n{report}");
    let theirs = dir.join("go.pb.gz");
    let fetched = Command::new("go")
        .args(["tool", "pprof", "-proto", "-output"])
        .arg(&theirs)
        .arg(workload.url("/debug/pprof/heap"))
        .env("PPROF_TMPDIR", dir)
        .output()
        .expect("run go tool pprof");
    assert!(
        fetched.status.success(),
        "{what}: fetch Go's own heap profile"
    );
    let ours_path = ours.to_str().expect("utf-8 path");
    let mine = inuse_of(ours_path, "main.keepLive");
    let gos = inuse_of(theirs.to_str().expect("utf-8 path"), "main.keepLive");
    println!(
        "{what}: main.keepLive inuse_space ours {mine:.0} B, Go's {gos:.0} B ({:+.2}%), truth {truth:.0} B",
        100.0 * (mine - gos) / gos
    );
    assert!(within(mine, gos, 10.0), "{what}: ours {mine}, Go's {gos}");
    assert!(
        within(mine, truth, 50.0),
        "{what}: ours {mine}, truth {truth}"
    );
    // Go's shape: four sample types, inuse_space the default, the period.
    let raw = go_pprof(&["-raw"], ours_path);
    assert!(raw.contains("PeriodType: space bytes"), "{what}:\n{raw}");
    assert!(raw.contains("Period: 524288"), "{what}:\n{raw}");
    assert!(
        raw.contains(
            "alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes[dflt]"
        ),
        "{what}:\n{raw}"
    );
    assert!(report.contains("main.keepLive"), "{what}: report\n{report}");
    // Folded: keepLive's stack by its bytes in use, under main.main.
    let text = std::fs::read_to_string(&folded).expect("folded written");
    let stacks = parse_folded(&text);
    let keep = total_where(&stacks, |s| s.leaf() == "main.keepLive") as f64;
    assert!(
        stacks
            .iter()
            .any(|s| s.leaf() == "main.keepLive" && s.has("main.main")),
        "{what}:\n{text}"
    );
    assert!(
        within(keep, mine, 1.0),
        "{what}: folded {keep}, pprof {mine}"
    );
    (mine, gos)
}

#[test]
fn goheap_matches_gos_own_heap_profile() {
    require!(bpf(), go(), go_versions(4));
    let dir = scratch_dir("go_heap");
    for (what, binary) in go_builds("heap_live") {
        compare(&what, &binary, dir.path());
    }
    assert_nothing_left_loaded();
}

#[test]
fn serve_answers_debug_pprof_heap() {
    require!(bpf(), go(), go_versions(1));
    let dir = scratch_dir("go_heap_serve");
    let Some((what, binary)) = go_builds("heap_live").pop() else {
        return;
    };
    let mut workload = GoWorkload::start(&binary, &["0"]);
    workload.line_starting("ready", Duration::from_secs(30));
    let mut server = Server::on_loopback(workload.pid(), dir.path());
    let ours = dir.path().join("served.pb.gz");
    let theirs = dir.path().join("go.pb.gz");
    for (url, file) in [
        (server.url("/debug/pprof/heap"), &ours),
        (workload.url("/debug/pprof/heap"), &theirs),
    ] {
        let fetched = Command::new("go")
            .args(["tool", "pprof", "-proto", "-output"])
            .arg(file)
            .arg(&url)
            .env("PPROF_TMPDIR", dir.path())
            .output()
            .expect("run go tool pprof");
        assert!(
            fetched.status.success(),
            "{what}: fetch {url}: {}",
            String::from_utf8_lossy(&fetched.stderr)
        );
    }
    let mine = inuse_of(ours.to_str().expect("utf-8"), "main.keepLive");
    let gos = inuse_of(theirs.to_str().expect("utf-8"), "main.keepLive");
    println!("{what} served: main.keepLive inuse_space ours {mine:.0} B, Go's {gos:.0} B");
    assert!(within(mine, gos, 10.0), "{what}: ours {mine}, Go's {gos}");
    let bad = server.get("/debug/pprof/heap?seconds=5");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let (status, _) = server.stop();
    assert!(status.success());
    drop(workload);
    assert_nothing_left_loaded();
}

#[test]
fn no_heap_profile_without_runtime_pprof_says_what_to_do() {
    require!(bpf(), go(), go_versions(1));
    let dir = scratch_dir("go_heap_nopprof");
    let out_file = dir.path().join("heap.pb.gz");
    for (what, binary) in go_builds("heap_nopprof") {
        let mut workload = GoWorkload::start(&binary, &["0"]);
        workload.line_starting("ready", Duration::from_secs(30));
        let out = profiler(&[
            "record",
            "--pid",
            &workload.pid().to_string(),
            "--profile",
            "goheap",
            "--duration",
            "200ms",
            "-o",
            out_file.to_str().expect("utf-8 path"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: should fail:\n{stderr}");
        for words in [
            "does not link runtime/pprof",
            "MemProfileRate is 0",
            "--go-rates heap=",
        ] {
            assert!(stderr.contains(words), "{what}: no {words:?} in:\n{stderr}");
        }
        assert!(!out_file.exists(), "{what}: no file is left behind");
        // With the runtime's sampling turned on for the recording, the
        // allocations made meanwhile are seen.
        let out = profiler(&[
            "record",
            "--pid",
            &workload.pid().to_string(),
            "--profile",
            "goheap",
            "--go-rates",
            "heap=64K",
            // The profile is as of the last GC: heap_nopprof's churn makes
            // one about every 1.3 s.
            "--duration",
            "4s",
            "-o",
            out_file.to_str().expect("utf-8 path"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: with --go-rates:\n{stderr}");
        let top = go_pprof(
            &["-top", "-sample_index=alloc_space"],
            out_file.to_str().expect("utf-8 path"),
        );
        assert!(top.contains("main.churn"), "{what}:\n{top}");
        assert!(
            workload.get("/rates").body.starts_with("mem=0 "),
            "{what}: the rate is put back"
        );
        std::fs::remove_file(&out_file).expect("remove");
    }
    // Not a Go program.
    let sleeper = start_workload(Path::new("/bin/sleep"), &["30"]);
    let out = profiler(&[
        "record",
        "--pid",
        &sleeper.0.id().to_string(),
        "--profile",
        "goheap",
        "--duration",
        "200ms",
        "-o",
        out_file.to_str().expect("utf-8 path"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is not a Go program"), "{stderr}");
    assert_nothing_left_loaded();
}
