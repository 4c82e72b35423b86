//! On-CPU profiling end to end: the real programs in the running kernel
//! against workloads whose truth is known.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use tests::*;

/// The sampling frequency the tests use (the default).
const HZ: f64 = 99.0;

fn share(stacks: &[FoldedStack], function: &str) -> u64 {
    stacks
        .iter()
        .filter(|s| s.has(function))
        .map(|s| s.value)
        .sum()
}

#[test]
fn three_to_one_split_is_measured() {
    require!(bpf());
    let workload = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("split");
    let out = dir.join("cpu.folded");
    let workload_str = workload.to_str().expect("UTF-8 path");
    // The in-kernel frame-pointer path (`--unwind dwarf`, the default for
    // cpu, is tested in unwind.rs).
    let run = profiler(&[
        "record",
        "--unwind",
        "fp",
        "-o",
        out.to_str().expect("UTF-8 path"),
        "--",
        workload_str,
        // 8 s at 99 Hz is about 800 samples: the share's binomial noise is
        // then 1.5 points, well inside the 5 allowed.
        "8",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "profiler failed: {stderr}");
    assert_nothing_left_loaded();

    let folded = std::fs::read_to_string(&out).expect("the profile was written");
    let stacks = parse_folded(&folded);
    let total: u64 = stacks.iter().map(|s| s.value).sum();
    let three = share(&stacks, "hot_three");
    let one = share(&stacks, "hot_one");
    assert!(three > 0 && one > 0, "both functions are named:\n{folded}");
    let three_pct = 100.0 * three as f64 / (three + one) as f64;
    eprintln!(
        "hot_three {three}, hot_one {one}, total {total}: {three_pct:.1}% / {:.1}%",
        100.0 - three_pct
    );
    assert!(
        (three_pct - 75.0).abs() <= 5.0,
        "hot_three's share {three_pct:.1}% is not within 5 points of 75%"
    );
    // Both functions are called from main: the stacks are whole.
    for stack in stacks
        .iter()
        .filter(|s| s.has("hot_three") || s.has("hot_one"))
    {
        assert!(stack.has("main"), "stack without main: {:?}", stack.frames);
        let comm: String = workload
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(15).collect())
            .unwrap_or_default();
        // A started command may start processes: each stack starts with
        // its own, `name (PID)`.
        assert!(
            stack.frames[0].starts_with(&format!("{comm} (")) && stack.frames[0].ends_with(')'),
            "the first frame is the process, name and PID: {:?}",
            stack.frames
        );
    }

    // The workload measured its own CPU time: at 99 Hz that many samples are
    // due, and at least 80% of them must arrive.
    let cpu = workload_value(&stdout, "cpu_seconds").expect("the workload reports its CPU time");
    let expected = cpu * HZ;
    eprintln!("samples {total}, expected {expected:.0} from {cpu:.2} s of CPU");
    assert!(
        total as f64 >= 0.8 * expected,
        "only {total} samples of {expected:.0} expected arrived"
    );
    assert!(stderr.contains("dropped samples: 0"), "report: {stderr}");
    assert!(stderr.contains("top functions by self"), "report: {stderr}");
    assert!(
        stderr.contains("hot_three"),
        "report names the top function: {stderr}"
    );

    // inferno, the real consumer of folded stacks, reads the file.
    let svg = inferno_svg(&folded);
    assert!(svg.contains("hot_three") && svg.contains("hot_one"));
}

#[test]
fn target_exiting_mid_recording_is_still_written_and_symbolized() {
    require!(bpf());
    let workload = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("exit");
    let out = dir.join("cpu.folded");
    let child = Command::new(&workload)
        .arg("1.5")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the workload");
    let pid = child.id().to_string();
    let started = std::time::Instant::now();
    let run = profiler(&[
        "record",
        "--pid",
        &pid,
        "--duration",
        "30s",
        "-o",
        out.to_str().expect("UTF-8 path"),
    ]);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "profiler failed: {stderr}");
    assert_nothing_left_loaded();
    assert!(
        stderr.contains("the target exited")
            && stderr.contains("target: exited during the recording"),
        "the report says the target exited: {stderr}"
    );
    assert!(
        elapsed < Duration::from_secs(25),
        "the recording ended with the target, not at --duration"
    );
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("the profile was written"));
    assert!(
        share(&stacks, "hot_three") > 0 && share(&stacks, "hot_one") > 0,
        "symbolized after the target exited: {stacks:?}"
    );
    let mut child = child;
    let _ = child.wait();
}

#[test]
fn threads_created_while_recording_are_profiled() {
    require!(bpf());
    let workload = build_workload("threads_late", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("threads");
    let out = dir.join("cpu.folded");
    let mut child = Command::new(&workload)
        .args(["1", "1.5"])
        .spawn()
        .expect("start the workload");
    let pid = child.id().to_string();
    let run = profiler(&[
        "record",
        "--pid",
        &pid,
        "--per-thread",
        "-o",
        out.to_str().expect("UTF-8 path"),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "profiler failed: {stderr}");
    assert_nothing_left_loaded();
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("the profile was written"));
    let late: Vec<_> = stacks
        .iter()
        .filter(|s| s.has("late_worker_spin"))
        .collect();
    assert!(
        !late.is_empty(),
        "the late thread's work is profiled: {stacks:?}"
    );
    // --per-thread puts the thread's name and id under the process name.
    assert!(
        late.iter().all(|s| s.frames[1].starts_with("late-worker-")),
        "the thread frame names the thread: {late:?}"
    );
    let _ = child.wait();
}

fn signal_ends_recording(signal: i32, word: &str) {
    let workload = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("signal");
    let out = dir.join("cpu.folded");
    let recorder = Command::new(profiler_bin())
        .arg("record")
        .arg("-o")
        .arg(&out)
        .arg("--")
        .arg(&workload)
        .arg("60")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the profiler");
    std::thread::sleep(Duration::from_secs(2));
    let loaded = our_loaded_programs();
    assert!(!loaded.is_empty(), "the sampler is loaded while recording");
    send_signal(recorder.id(), signal);
    let output = recorder.wait_with_output().expect("wait for the profiler");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "profiler failed after the signal: {stderr}"
    );
    assert!(
        stderr.contains(word),
        "the report says why it stopped: {stderr}"
    );
    assert_nothing_left_loaded();
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("the profile was written"));
    assert!(
        share(&stacks, "hot_three") > 0,
        "data so far is written: {stacks:?}"
    );
    // The command the profiler started does not outlive the recording.
    let pgrep = Command::new("pgrep")
        .arg("-f")
        .arg(format!("{} 60", workload.display()))
        .output()
        .expect("run pgrep");
    assert!(
        pgrep.stdout.is_empty(),
        "the started command was stopped: {}",
        String::from_utf8_lossy(&pgrep.stdout)
    );
}

#[test]
fn ctrl_c_ends_the_recording_and_writes_it() {
    require!(bpf());
    signal_ends_recording(libc::SIGINT, "stopped by Ctrl-C");
}

#[test]
fn sigterm_ends_the_recording_and_writes_it() {
    require!(bpf());
    signal_ends_recording(libc::SIGTERM, "stopped by SIGTERM");
}

#[test]
fn a_thread_that_exits_between_drains_keeps_its_name() {
    require!(bpf());
    let workload = build_workload("short_thread", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("shortthread");
    let out = dir.join("cpu.folded");
    let (report, _) = record_command(
        &["--per-thread", "-o", out.to_str().expect("UTF-8 path")],
        &workload,
        &["0.3", "1.5"],
    );
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("the profile was written"));
    let spin: Vec<&FoldedStack> = stacks.iter().filter(|s| s.has("short_spin")).collect();
    assert!(!spin.is_empty(), "the short thread was sampled:\n{report}");
    assert!(
        spin.iter()
            .all(|s| s.frames[1].starts_with("short-worker-")),
        "the thread keeps its name though it exited before the first drain: {spin:?}"
    );
}
