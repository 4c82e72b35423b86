//! The releasing stack of a contended lock, in every unwind mode. Go's
//! mutex profile charges a wait to the code that released the lock; the
//! futex profile gives the same: each wait carries the stack of the thread
//! that woke it, walked in the kernel from .eh_frame tables with `--unwind
//! dwarf`, from a copy of its wake call's stack with `--unwind copy`, by
//! frame pointers with `--unwind fp`. The report
//! names the top releasing stack of each lock, and the futex pprof carries
//! it as the `waker_stack` label (read back with `go tool pprof -tags`).

use std::path::Path;

use tests::*;

/// The contended-mutex workload: optimized without frame pointers, and
/// without sibling-call optimisation so the unlocking function
/// (`release_lock`, which calls `pthread_mutex_unlock`) keeps its frame.
const NO_FRAME_POINTERS_NO_SIBLING_CALLS: &[&str] = &[
    "-O2",
    "-g",
    "-fomit-frame-pointer",
    "-fno-optimize-sibling-calls",
];

/// The same with frame pointers (for `--unwind fp`).
const FRAME_POINTERS_NO_SIBLING_CALLS: &[&str] = &[
    "-O0",
    "-g",
    "-fno-omit-frame-pointer",
    "-fno-optimize-sibling-calls",
];

/// Nanoseconds from the report's rendering (`1.187 s`, `880.176 ms`,
/// `1.5 us`, `15 ns`).
fn parse_human_ns(text: &str) -> Option<f64> {
    let (number, unit) = text.trim().split_once(' ')?;
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "s" => 1e9,
        "ms" => 1e6,
        "us" => 1e3,
        "ns" => 1.0,
        _ => return None,
    };
    Some(number * scale)
}

/// What the report says of `g_lock`: its total wait, and its top waker
/// line's wait time, share of waits with a known releasing stack, and stack.
struct LockLines {
    total_ns: f64,
    top_waker_ns: f64,
    released_percent: f64,
    top_waker: String,
}

fn g_lock_lines(report: &str) -> LockLines {
    let head = report
        .lines()
        .find(|l| l.trim_start().starts_with("g_lock:"))
        .unwrap_or_else(|| panic!("the report lists g_lock: {report}"));
    let total_ns = head
        .split("total ")
        .nth(1)
        .and_then(|t| t.split(',').next())
        .and_then(parse_human_ns)
        .unwrap_or_else(|| panic!("g_lock's total wait: {head}"));
    let waker = wake_lines(report, "g_lock")
        .into_iter()
        .find(|l| l.contains("top waker ("))
        .unwrap_or_else(|| panic!("g_lock has a top waker: {report}"));
    // "top waker (1.187 s of waits ended; releasing stacks known for 100% of
    // the wait): a <- b <- c"
    let inside = waker
        .split_once("top waker (")
        .and_then(|(_, rest)| rest.split_once("): "))
        .unwrap_or_else(|| panic!("a top waker line: {waker}"));
    let top_waker_ns = inside
        .0
        .split(" of waits ended")
        .next()
        .and_then(parse_human_ns)
        .unwrap_or_else(|| panic!("the top waker's wait: {waker}"));
    let released_percent = inside
        .0
        .split("known for ")
        .nth(1)
        .and_then(|p| p.split('%').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the share of known releasing stacks: {waker}"));
    LockLines {
        total_ns,
        top_waker_ns,
        released_percent,
        top_waker: inside.1.to_owned(),
    }
}

/// The share (percent) of g_lock's delay whose `waker_stack` label in the
/// futex pprof contains `function`, as `go tool pprof -tags` reads it.
fn pprof_released_share(pprof: &Path, function: &str) -> f64 {
    let tags = go_pprof(
        &["-tags", "-sample_index=delay", "-tagfocus=lock=g_lock"],
        pprof,
    );
    let section: Vec<&str> = tags
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("waker_stack:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert!(
        !section.is_empty(),
        "the futex pprof has waker_stack labels: {tags}"
    );
    section
        .iter()
        .filter(|l| l.contains(function))
        .filter_map(|l| {
            let percent = l.split_once('(')?.1.split_once('%')?.0;
            percent.trim().parse::<f64>().ok()
        })
        .sum()
}

/// Records the workload's futex profile in `mode`; returns the report and
/// the pprof file.
fn record(workload: &Path, mode: &str, dir: &Path) -> (String, std::path::PathBuf) {
    let folded = dir.join(format!("{mode}.folded"));
    let pprof = dir.join(format!("{mode}.pb.gz"));
    let (report, _) = record_command(
        &[
            "--profile",
            "futex",
            "--unwind",
            mode,
            "-o",
            folded.to_str().expect("UTF-8"),
            "-o",
            pprof.to_str().expect("UTF-8"),
        ],
        workload,
        &["4", "150", "1000"],
    );
    assert_nothing_left_loaded();
    (report, pprof)
}

#[test]
fn the_releasing_stack_is_whole_without_frame_pointers_in_auto_and_dwarf_modes() {
    require!(bpf());
    let workload = build_workload("mutex_contend", NO_FRAME_POINTERS_NO_SIBLING_CALLS);
    let dir = scratch_dir("release");
    for mode in ["dwarf", "copy"] {
        let (report, pprof) = record(&workload, mode, &dir);
        let lock = g_lock_lines(&report);
        eprintln!(
            "--unwind {mode}: g_lock waited {:.0} ns; top releasing stack {:.0} ns ({:.1}%); releasing stacks known for {}%: {}",
            lock.total_ns,
            lock.top_waker_ns,
            100.0 * lock.top_waker_ns / lock.total_ns,
            lock.released_percent,
            lock.top_waker
        );
        // Down to the function that calls pthread_mutex_unlock.
        assert!(
            lock.top_waker.contains("pthread_mutex_unlock")
                && lock.top_waker.contains("release_lock")
                && lock.top_waker.contains("hold_lock"),
            "--unwind {mode}: the top waker is the unlock path: {}\n{report}",
            lock.top_waker
        );
        assert!(
            lock.top_waker_ns >= 0.9 * lock.total_ns && lock.released_percent >= 90.0,
            "--unwind {mode}: releasing stacks carry at least 90% of g_lock's wait\n{report}"
        );
        if go().is_ok() {
            let share = pprof_released_share(&pprof, "release_lock");
            eprintln!(
                "--unwind {mode}: go tool pprof: {share:.1}% of g_lock's delay has release_lock in waker_stack"
            );
            assert!(share >= 90.0, "--unwind {mode}: {share}% in the pprof");
        }
    }
}

#[test]
fn the_releasing_stack_goes_as_far_as_frame_pointers_reach_in_fp_mode() {
    require!(bpf());
    let workload = build_workload("mutex_contend", FRAME_POINTERS_NO_SIBLING_CALLS);
    let dir = scratch_dir("release-fp");
    let (report, pprof) = record(&workload, "fp", &dir);
    let lock = g_lock_lines(&report);
    eprintln!(
        "--unwind fp: g_lock waited {:.0} ns; top releasing stack {:.0} ns; known for {}%: {}",
        lock.total_ns, lock.top_waker_ns, lock.released_percent, lock.top_waker
    );
    // glibc has no frame pointers: the walk goes from the wake call in
    // glibc to the caller of the function that called pthread_mutex_unlock.
    assert!(
        lock.top_waker.contains("lll_lock_wake") && lock.top_waker.contains("hold_lock"),
        "the top waker is the unlock path as far as frame pointers reach: {}\n{report}",
        lock.top_waker
    );
    assert!(lock.released_percent >= 90.0, "{report}");
    if go().is_ok() {
        let share = pprof_released_share(&pprof, "hold_lock");
        assert!(
            share >= 90.0,
            "{share}% of the delay has hold_lock in waker_stack"
        );
    }
}
