//! A Go program: goroutines blocked on a sync.Mutex park in the runtime
//! without a futex call each, and the runtime parks idle threads on futexes.
//! The profiles must label that idle parking and not present it as lock
//! contention, on every Go version, stripped or not (the labels come from
//! the runtime's function names, which a stripped build keeps in
//! `.gopclntab`).

use tests::*;

#[test]
fn go_runtime_idle_parking_is_labelled_not_reported_as_contention() {
    require!(bpf(), go(), go_versions(4));
    let dir = scratch_dir("go");
    for toolchain in go_toolchains() {
        let mut named = Vec::new();
        for stripped in [false, true] {
            eprintln!(
                "Go {} {}",
                toolchain.version,
                if stripped { "stripped" } else { "normal" }
            );
            let binary = build_go_workload("go_mutex", &toolchain, stripped);
            named.push(idle_parking_is_labelled(&binary, &dir));
        }
        // The main thread parks on a note in runtime.m0: named by the
        // symbol table when there is one, and in a stripped build from the
        // runtime's start-up code.
        eprintln!("Go {}: runtime locks {named:?}", toolchain.version);
        let m0 = |names: &std::collections::BTreeSet<String>| {
            names
                .iter()
                .filter(|n| n.starts_with("runtime.m0"))
                .cloned()
                .collect::<Vec<_>>()
        };
        // Which of m0's notes get waited on in a run varies (timing): the
        // two builds must name at least one alike.
        let (normal, stripped) = (m0(&named[0]), m0(&named[1]));
        assert!(
            !stripped.is_empty() && stripped.iter().any(|n| normal.contains(n)),
            "Go {}: runtime.m0's note named alike, normal and stripped: {named:?}",
            toolchain.version
        );
    }
}

/// Records the Go program's futex and off-CPU profiles, checks the labels,
/// and returns the names of the runtime variables its locks lie in.
fn idle_parking_is_labelled(
    binary: &std::path::Path,
    dir: &std::path::Path,
) -> std::collections::BTreeSet<String> {
    let out = dir.join("go.folded");
    let (report, _) = record_command(
        &[
            "--profile",
            "futex,offcpu",
            "-o",
            out.to_str().expect("UTF-8"),
        ],
        binary,
        &["2"],
    );
    assert_nothing_left_loaded();
    assert!(
        report.contains("this is a Go program") && report.contains("not contention"),
        "the report says Go lock contention is not in futex data: {report}"
    );
    // Every lock the report lists is the runtime's: idle parking, or now and
    // then a lock of the runtime itself (its scheduler's).
    let listed: Vec<&str> = report_after(&report, "top contended locks")
        .into_iter()
        .filter(|l| {
            l.starts_with("    ") && !l.starts_with("      ") && l.contains(" waits, total ")
        })
        .collect();
    assert!(!listed.is_empty(), "{report}");
    assert!(
        listed
            .iter()
            .all(|l| l.contains("[Go runtime idle, not contention]")
                || l.contains("[Go runtime internal lock]")),
        "no runtime futex is presented as contention: {listed:?}"
    );
    let futex =
        parse_folded(&std::fs::read_to_string(dir.join("go.futex.folded")).expect("written"));
    // Waits whose stack the kernel lost (a stack-map collision, counted in
    // the report) cannot be labelled either way: left out.
    let total = total_where(&futex, |s| {
        !s.frames.iter().any(|f| f.starts_with("[user stack lost"))
    });
    let idle = total_where(&futex, |s| {
        s.frames
            .get(1)
            .is_some_and(|f| f.starts_with("[Go runtime idle]"))
    });
    assert!(
        idle as f64 >= 0.9 * total as f64,
        "the runtime's idle parking is labelled: {idle} of {total} ns"
    );
    let offcpu =
        parse_folded(&std::fs::read_to_string(dir.join("go.offcpu.folded")).expect("written"));
    assert!(
        offcpu
            .iter()
            .any(|s| s.frames.get(1).map(String::as_str) == Some("[runtime idle]")),
        "off-CPU stacks of idle runtime threads are labelled"
    );
    futex
        .iter()
        .filter_map(|s| s.frames.get(1))
        .map(|lock| lock.trim_start_matches("[Go runtime idle] ").to_owned())
        .filter(|lock| lock.starts_with("runtime."))
        .collect()
}

#[test]
fn serve_labels_go_runtime_idle_parking_in_the_lock_metrics() {
    require!(bpf(), go());
    let debian = go_toolchains()
        .into_iter()
        .next()
        .expect("Debian's Go, checked by go()");
    let binary = build_go_workload("go_mutex", &debian, false);
    let dir = scratch_dir("go-serve");
    let workload = start_workload(&binary, &["30"]);
    let server = Server::on_loopback(workload.0.id(), &dir);
    std::thread::sleep(std::time::Duration::from_secs(4));
    let metrics = server.get("/metrics");
    let (mut idle, mut other) = (0.0, 0.0);
    for line in metrics
        .body
        .lines()
        .filter(|l| l.starts_with("profiler_futex_wait_seconds_total{"))
    {
        let value: f64 = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0.0);
        if line.contains("lock=\"[Go runtime idle]") {
            idle += value;
        } else {
            other += value;
        }
    }
    eprintln!("Go futex wait seconds: runtime idle {idle:.3}, other {other:.3}");
    assert!(idle > 0.0, "{}", metrics.body);
    assert!(
        idle >= 9.0 * other,
        "a Go program's futex waits are the runtime parking idle threads, and say so: {}",
        metrics.body
    );
}
