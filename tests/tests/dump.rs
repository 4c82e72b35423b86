//! `profiler dump`: what every thread of a running process is doing, read
//! from outside without stopping it, checked on a C program whose two
//! threads are deadlocked on two mutexes (the truth: each waits for the
//! lock the other holds, in `take_second`).

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
};

use tests::*;

/// Starts the deadlock workload and waits until it says it is deadlocked.
fn start_deadlock() -> KillOnDrop {
    let binary = build_workload(
        "deadlock",
        &[
            "-O2",
            "-g",
            "-fomit-frame-pointer",
            "-fno-optimize-sibling-calls",
        ],
    );
    let mut child = Command::new(binary)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the deadlock workload");
    let stdout = child.stdout.take().expect("the workload's stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the workload's first line");
    assert_eq!(line.trim(), "deadlocked");
    // Both threads reach their second pthread_mutex_lock within moments.
    std::thread::sleep(std::time::Duration::from_millis(300));
    KillOnDrop(child)
}

/// The block of the dump's text about the thread named `name`.
fn block<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let head = format!("\"{name}\"");
    text.lines()
        .skip_while(|l| !(l.starts_with("thread ") && l.contains(&head)))
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn dump_shows_two_deadlocked_threads_waiting_on_each_others_locks() {
    let workload = start_deadlock();
    let pid = workload.0.id();
    let dir = scratch_dir("dump");
    let folded = dir.join("threads.folded");
    let pprof = dir.join("threads.pb.gz");
    let out = profiler(&[
        "dump",
        "--pid",
        &pid.to_string(),
        "-o",
        folded.to_str().expect("UTF-8"),
        "-o",
        pprof.to_str().expect("UTF-8"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        text.starts_with(&format!("PID {pid} (")) && text.contains("): 3 threads"),
        "{text}"
    );
    for (thread, own, waits_on) in [("alpha", "alpha", "lock_b"), ("beta", "beta", "lock_a")] {
        let lines = block(&text, thread);
        assert!(
            lines
                .first()
                .is_some_and(|l| l.contains("(sleeping): futex wait on ") && l.ends_with(waits_on)),
            "{thread} waits on {waits_on}: {lines:?}"
        );
        // Innermost first: glibc's lock path, then the program's own frames.
        let frames: Vec<&str> = lines[1..]
            .iter()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let lock = frames.iter().position(|f| f.contains("pthread_mutex_lock"));
        let second = frames.iter().position(|f| *f == "take_second");
        let caller = frames.iter().position(|f| *f == own);
        assert!(
            lock < second && second < caller && lock.is_some(),
            "{thread}'s stack runs pthread_mutex_lock <- take_second <- {own}: {frames:?}"
        );
        assert!(
            lines.iter().any(|l| l.contains("deadlock.c:")),
            "file:line of the program's frames: {lines:?}"
        );
    }
    // The dump did not disturb the target: still there, still deadlocked.
    assert!(process_alive(pid));
    let again = profiler(&["dump", "--pid", &pid.to_string()]);
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(
        block(&again, "alpha")
            .first()
            .is_some_and(|l| l.ends_with("lock_b")),
        "{again}"
    );

    // The files: one sample per thread, the lock first in folded, labels in
    // pprof as go tool pprof reads them.
    let stacks = parse_folded(&std::fs::read_to_string(&folded).expect("folded written"));
    assert_eq!(stacks.len(), 3, "{stacks:?}");
    assert!(stacks.iter().any(|s| s.frames.get(2).map(String::as_str)
        == Some("[futex wait on lock_b]")
        && s.has("alpha")));
    if go().is_ok() {
        let tags = go_pprof(&["-tags"], &pprof);
        assert!(
            tags.contains("lock_a") && tags.contains("lock_b") && tags.contains("sleeping"),
            "{tags}"
        );
        let top = go_pprof(&["-top", "-sample_index=threads"], &pprof);
        assert!(top.contains("100% of 3 total"), "three threads: {top}");
    }
}

#[test]
fn dump_of_a_missing_process_says_so() {
    let out = profiler(&["dump", "--pid", "4000000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no process with PID 4000000 exists"),
        "{stderr}"
    );
    let out = profiler(&["dump", "--pid", "-3"]);
    assert_eq!(out.status.code(), Some(2));
}
