//! Whole stacks without frame pointers: stacks walked in the kernel with
//! tables made from each binary's .eh_frame (`--unwind dwarf`, the
//! default).

use std::process::{Command, Stdio};

use tests::*;

/// Whether `frames` holds `names` one after another (callers first).
fn has_chain(stack: &FoldedStack, names: &[&str]) -> bool {
    stack
        .frames
        .windows(names.len())
        .any(|w| w.iter().zip(names).all(|(f, n)| f == n))
}

#[test]
fn optimized_c_without_frame_pointers_has_whole_stacks_and_the_right_split() {
    require!(bpf());
    let workload = build_workload("cpu_split_calls", NO_FRAME_POINTER_FLAGS);
    let dir = scratch_dir("o2");
    let out = dir.join("cpu.folded");
    let (report, _) = record_command(
        &["--unwind", "dwarf", "-o", out.to_str().expect("UTF-8")],
        &workload,
        &["8"],
    );
    assert_nothing_left_loaded();
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("written"));
    let total: u64 = stacks.iter().map(|s| s.value).sum();
    let three = total_where(&stacks, |s| has_chain(s, &["main", "hot_three", "spin"]));
    let one = total_where(&stacks, |s| has_chain(s, &["main", "hot_one", "spin"]));
    let whole = 100.0 * (three + one) as f64 / total as f64;
    let three_pct = 100.0 * three as f64 / (three + one).max(1) as f64;
    eprintln!(
        "{total} samples, {whole:.1}% with main -> caller -> spin; hot_three {three_pct:.1}%"
    );
    assert!(
        whole >= 95.0,
        "only {whole:.1}% of samples have the whole chain:\n{report}"
    );
    assert!(
        (three_pct - 75.0).abs() <= 5.0,
        "hot_three's share {three_pct:.1}% is not within 5 points of 75%"
    );
    assert!(
        report.contains("user stacks walked in the kernel from .eh_frame"),
        "{report}"
    );
}

#[test]
fn rust_release_recursion_reaches_main_and_a_lower_depth_limit_is_reported() {
    require!(bpf());
    let workload = build_rust_workload_with("rust_recursion", false);
    let dir = scratch_dir("recursion");
    let out = dir.join("cpu.folded");
    let (report, _) = record_command(
        &["--unwind", "dwarf", "-o", out.to_str().expect("UTF-8")],
        &workload,
        &["100", "2"],
    );
    assert_nothing_left_loaded();
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("written"));
    let at_bottom: Vec<&FoldedStack> = stacks
        .iter()
        .filter(|s| s.has("rust_recursion::spin_at_bottom"))
        .collect();
    let bottom_total: u64 = at_bottom.iter().map(|s| s.value).sum();
    let whole: u64 = at_bottom
        .iter()
        .filter(|s| {
            s.has("rust_recursion::main")
                && s.frames
                    .iter()
                    .filter(|f| f.as_str() == "rust_recursion::descend")
                    .count()
                    >= 100
        })
        .map(|s| s.value)
        .sum();
    eprintln!("{whole} of {bottom_total} samples at the bottom reach main through 100 frames");
    assert!(bottom_total > 0, "{report}");
    assert!(
        whole as f64 >= 0.95 * bottom_total as f64,
        "stacks 100 frames deep reach main: {whole} of {bottom_total}\n{report}"
    );

    // A lower depth limit cuts the stacks and says so.
    let out = dir.join("cut.folded");
    let (report, _) = record_command(
        &[
            "--unwind",
            "dwarf",
            "--max-depth",
            "50",
            "-o",
            out.to_str().expect("UTF-8"),
        ],
        &workload,
        &["100", "1"],
    );
    // "cpu  99 walked, 0.0% whole; 99 truncated at the depth limit ..."
    let line = walk_line(&report, "cpu");
    let cut: u64 = line
        .split([';', ','])
        .find(|part| part.contains("truncated at the depth limit"))
        .and_then(|part| part.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(cut > 0, "the depth limit's cuts are counted: {line}");
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("written"));
    assert!(
        stacks.iter().all(|s| s.frames.len() <= 1 + 50 + 40),
        "no user stack is deeper than the limit"
    );
}

#[test]
fn a_library_loaded_after_recording_starts_unwinds() {
    require!(bpf());
    let workload = build_workload("dlopen_late", NO_FRAME_POINTER_FLAGS);
    let dir = scratch_dir("dlopen");
    let library = dir.join("liblate.so");
    let status = Command::new("gcc")
        .args(NO_FRAME_POINTER_FLAGS)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(workspace_root().join("tests/workloads/late_lib.c"))
        .stdout(Stdio::null())
        .status()
        .expect("run gcc");
    assert!(status.success(), "build the library");
    let out = dir.join("cpu.folded");
    let (report, _) = record_command(
        &["--unwind", "dwarf", "-o", out.to_str().expect("UTF-8")],
        &workload,
        &[library.to_str().expect("UTF-8"), "0.5"],
    );
    assert_nothing_left_loaded();
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("written"));
    let in_lib = total_where(&stacks, |s| s.has("lib_spin"));
    let whole = total_where(&stacks, |s| {
        has_chain(s, &["main", "call_into_lib", "lib_hot", "lib_spin"])
    });
    eprintln!(
        "{whole} of {in_lib} samples in the library have main -> call_into_lib -> lib_hot -> lib_spin"
    );
    assert!(in_lib > 0, "the library's code was sampled:\n{report}");
    assert!(
        whole as f64 >= 0.95 * in_lib as f64,
        "the dlopened library's frames unwind: {whole} of {in_lib}\n{report}"
    );
}

#[test]
fn futex_waits_through_glibc_show_the_locking_and_unlocking_functions() {
    require!(bpf());
    let workload = build_workload("mutex_contend", NO_FRAME_POINTER_FLAGS);
    let dir = scratch_dir("futexdwarf");
    let out = dir.join("locks.folded");
    let (report, stdout) = record_command(
        &[
            "--profile",
            "futex",
            "--unwind",
            "dwarf",
            "-o",
            out.to_str().expect("UTF-8"),
        ],
        &workload,
        &["4", "150", "1000"],
    );
    assert_nothing_left_loaded();
    let truth = workload_value(&stdout, "lock_wait_ns").expect("the workload reports its wait");
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("written"));
    let on_lock = total_where(&stacks, |s| {
        s.frames.get(1).map(String::as_str) == Some("g_lock")
    });
    // The waiter's own locking function sits above pthread_mutex_lock.
    let whole = total_where(&stacks, |s| {
        s.frames.get(1).map(String::as_str) == Some("g_lock")
            && s.frames
                .windows(2)
                .any(|w| w[0] == "take_lock" && w[1].contains("pthread_mutex_lock"))
    });
    eprintln!(
        "{whole} of {on_lock} ns of waits on g_lock have take_lock above pthread_mutex_lock; workload's own figure {truth} ns"
    );
    assert!(
        whole as f64 >= 0.95 * on_lock as f64,
        "waiter stacks name take_lock above pthread_mutex_lock for 95% of the wait:\n{report}"
    );
    assert!(within(on_lock as f64, truth, 10.0), "{on_lock} vs {truth}");
    // The wake side names the unlocking function.
    let wakers = wake_lines(&report, "g_lock");
    assert!(
        wakers
            .iter()
            .any(|w| w.contains("release_lock") && w.contains("pthread_mutex_unlock")),
        "the waker stack contains the unlocking function: {wakers:?}\n{report}"
    );
}

#[test]
fn off_cpu_stacks_through_glibc_are_whole() {
    require!(bpf());
    let workload = build_workload("sleeper", NO_FRAME_POINTER_FLAGS);
    let dir = scratch_dir("offcpudwarf");
    let out = dir.join("off.folded");
    let (report, stdout) = record_command(
        &[
            "--profile",
            "offcpu",
            "--unwind",
            "dwarf",
            "-o",
            out.to_str().expect("UTF-8"),
        ],
        &workload,
        &["100", "10000"],
    );
    assert_nothing_left_loaded();
    let truth = workload_value(&stdout, "slept_ns").expect("the workload reports its sleep");
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("written"));
    let whole = total_where(&stacks, |s| {
        has_chain(s, &["main", "sleepy_function", "sleep_once"]) && s.has("do_nanosleep")
    });
    eprintln!(
        "{whole} ns blocked with main -> sleepy_function -> sleep_once -> nanosleep; workload's own figure {truth} ns"
    );
    assert!(
        within(whole as f64, truth, 10.0),
        "off-CPU time with whole stacks {whole} ns is not within 10% of {truth} ns:\n{report}"
    );
}

#[test]
fn stacks_inside_the_vdso_unwind_to_main() {
    require!(bpf());
    let workload = build_workload("vdso_clock", NO_FRAME_POINTER_FLAGS);
    let dir = scratch_dir("vdso");
    let out = dir.join("cpu.folded");
    let (report, _) = record_command(&["-o", out.to_str().expect("UTF-8")], &workload, &["2"]);
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("written"));
    let total: u64 = stacks.iter().map(|s| s.value).sum();
    let whole = total_where(&stacks, |s| has_chain(s, &["main", "read_clocks"]));
    eprintln!("{whole} of {total} samples reach main -> read_clocks");
    assert!(
        whole as f64 >= 0.95 * total as f64,
        "samples in the vDSO's clock_gettime unwind to main: {whole} of {total}\n{report}"
    );
}

/// A futex storm (two threads, each over 200k futex calls a second) built
/// without frame pointers, recorded with `--profile futex` from outside:
/// every wait and wake call the kernel counted has a whole stack (the
/// in-kernel walker keeps up at any rate), and nothing is dropped.
#[test]
fn a_futex_storm_has_whole_stacks_for_every_event() {
    require!(bpf());
    let binary = build_workload("futex_storm", &["-O2", "-fomit-frame-pointer"]);
    let dir = scratch_dir("storm");
    let out = dir.join("storm.folded");
    let storm = Command::new(&binary)
        .args(["2", "5"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the storm");
    let pid = storm.id().to_string();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let run = profiler(&[
        "record",
        "--pid",
        &pid,
        "--profile",
        "futex",
        "--duration",
        "2",
        "-o",
        out.to_str().expect("UTF-8"),
    ]);
    let report = String::from_utf8_lossy(&run.stderr).into_owned();
    let output = storm.wait_with_output().expect("the storm ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(run.status.success(), "profiler failed: {report}");
    assert_nothing_left_loaded();
    let rate = workload_value(&stdout, "futex_calls_per_second").expect("the storm's rate");
    eprintln!("{stdout}{report}");
    assert!(
        rate >= 200_000.0,
        "the storm made {rate:.0} futex calls a second, not 200k"
    );
    for kind in ["futex_wait", "futex_wake"] {
        let line = walk_line(&report, kind);
        let walked: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(walked >= 200_000, "{kind}: {walked} walked in 2 s: {line}");
        assert!(
            line.contains("100.0% whole") && !line.contains(';'),
            "{kind}: every stack whole: {line}"
        );
    }
    assert!(
        report.contains("dropped: nothing"),
        "nothing dropped:\n{report}"
    );
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("written"));
    let total: u64 = stacks.iter().map(|s| s.value).sum();
    // The storm's threads, and main (waiting in pthread_join, still blocked
    // at the end): every stack reaches its thread's start.
    let storm = total_where(&stacks, |s| s.has("storm") && s.has("start_thread"));
    let whole = total_where(&stacks, |s| s.has("start_thread") || s.has("main"));
    assert!(
        storm > 0 && whole == total,
        "{whole} of {total} reach start_thread or main ({storm} through storm)"
    );
}

/// A binary deleted and replaced on disk after it started (a deploy that
/// swapped the file under a running service): its stacks are still walked
/// whole, from the file the process maps (`/proc/PID/map_files`), not from
/// the new one at its path.
#[test]
fn a_binary_replaced_on_disk_still_unwinds() {
    require!(bpf());
    let built = build_workload("cpu_split_calls", NO_FRAME_POINTER_FLAGS);
    let dir = scratch_dir("replaced");
    let running = dir.join("service");
    std::fs::copy(&built, &running).expect("copy the workload");
    let child = Command::new(&running)
        .arg("4")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the workload");
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Replaced: the running file is unlinked and another takes its path.
    std::fs::remove_file(&running).expect("delete the running binary");
    std::fs::write(&running, b"#!/bin/sh\nexit 0\n").expect("write a new file at its path");
    let out = dir.join("cpu.folded");
    let pid = child.id().to_string();
    let run = profiler(&[
        "record",
        "--pid",
        &pid,
        "--duration",
        "2",
        "-o",
        out.to_str().expect("UTF-8"),
    ]);
    let report = String::from_utf8_lossy(&run.stderr).into_owned();
    let mut child = child;
    let _ = child.wait();
    assert!(run.status.success(), "profiler failed: {report}");
    assert_nothing_left_loaded();
    let line = walk_line(&report, "cpu");
    eprintln!("{line}");
    assert!(
        line.contains("100.0% whole"),
        "every walk whole: {line}\n{report}"
    );
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("written"));
    let total: u64 = stacks.iter().map(|s| s.value).sum();
    let whole = total_where(&stacks, |s| s.has("main") && s.has("spin"));
    eprintln!("{whole} of {total} samples through main -> spin");
    assert!(
        total > 0 && whole as f64 >= 0.95 * total as f64,
        "{whole} of {total} samples reach main\n{report}"
    );
}

/// Code in executable memory no file backs (what a JIT writes) has no
/// call-frame information: the walk ends there, counted, with a frame that
/// says so (`[jit] 0x7f..`).
#[test]
fn jit_code_ends_the_stack_with_a_frame_that_says_so() {
    require!(bpf());
    let workload = build_workload("jit_spin", &["-O2"]);
    let dir = scratch_dir("jit");
    let out = dir.join("cpu.folded");
    let (report, _) = record_command(&["-o", out.to_str().expect("UTF-8")], &workload, &["2"]);
    assert_nothing_left_loaded();
    let line = walk_line(&report, "cpu");
    eprintln!("{line}");
    assert!(
        line.contains("ended in JIT code"),
        "JIT ends are counted: {line}"
    );
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("written"));
    let total: u64 = stacks.iter().map(|s| s.value).sum();
    let jit = total_where(&stacks, |s| {
        s.frames.iter().any(|f| f.starts_with("[jit] 0x"))
    });
    eprintln!("{jit} of {total} samples in [jit] frames");
    assert!(
        total > 0 && jit as f64 >= 0.9 * total as f64,
        "{jit} of {total} samples end in a [jit] frame\n{report}"
    );
}

/// A function that realigns its stack is described by DWARF expressions
/// (`CFA = *(rbp - 8)`, `rbp` saved at `rbp`): the walker evaluates them
/// and the stacks through it reach main.
#[test]
fn a_realigned_stack_unwinds_through_its_expressions() {
    require!(bpf());
    let workload = build_workload(
        "realigned",
        &["-O2", "-fomit-frame-pointer", "-mstackrealign"],
    );
    let dir = scratch_dir("realigned");
    let out = dir.join("cpu.folded");
    let (report, _) = record_command(&["-o", out.to_str().expect("UTF-8")], &workload, &["2"]);
    assert_nothing_left_loaded();
    eprintln!("{}", walk_line(&report, "cpu"));
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("written"));
    let in_spin = total_where(&stacks, |s| s.has("spin"));
    let whole = total_where(&stacks, |s| {
        has_chain(s, &["main", "aligned_caller", "spin"])
    });
    eprintln!("{whole} of {in_spin} samples in spin reach main through aligned_caller");
    assert!(
        in_spin > 0 && whole as f64 >= 0.95 * in_spin as f64,
        "{whole} of {in_spin}\n{report}"
    );
}
