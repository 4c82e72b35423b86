//! `--go-rates`: Go's own sampling rates written into a running program for
//! a recording and put back at its end, on every Go toolchain present,
//! normal and stripped, checked by what the program itself sees
//! (`heap_live.go`'s `/rates`): `runtime.MemProfileRate`, the mutex
//! fraction (`SetMutexProfileFraction(-1)`), and, as Go has no getter for
//! the block profile rate, the events its block profile recorded (they
//! grow only while the rate is above 0).
//!
//! For each way a recording ends (its duration, SIGINT, SIGTERM): during
//! it the program sees the rates asked for and its block profile fills;
//! after it the program sees its old rates again and its block profile
//! stops growing.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tests::*;

/// What the program reports on `/rates`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    mem: i64,
    mutex: i64,
    block_events: i64,
}

fn seen(workload: &GoWorkload) -> Seen {
    let body = workload.get("/rates").body;
    let value = |key: &str| {
        workload_value(&body, key).unwrap_or_else(|| panic!("no {key} in {body:?}")) as i64
    };
    Seen {
        mem: value("mem"),
        mutex: value("mutex"),
        block_events: value("block_events"),
    }
}

/// Polls `/rates` until `done` holds (at most 15 s).
fn wait_for(workload: &GoWorkload, what: &str, done: impl Fn(Seen) -> bool) -> Seen {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = seen(workload);
        if done(now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: still {now:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, Clone, Copy)]
enum Ending {
    Duration,
    Signal(i32, &'static str),
}

fn one_recording(what: &str, binary: &std::path::Path, ending: Ending, dir: &std::path::Path) {
    let what = format!(
        "{what}, ended by {}",
        match ending {
            Ending::Duration => "its duration",
            Ending::Signal(_, name) => name,
        }
    );
    let mut workload = GoWorkload::start(binary, &["0"]);
    workload.line_starting("ready", Duration::from_secs(30));
    let before = seen(&workload);
    assert_eq!(
        (before.mem, before.mutex, before.block_events),
        (524288, 0, 0),
        "{what}: the program's own rates"
    );
    let out = dir.join("heap.pb.gz");
    let mut cmd = Command::new(profiler_bin());
    cmd.args(["record", "--pid", &workload.pid().to_string()])
        .args(["--profile", "goheap"])
        .args(["--go-rates", "heap=4K,mutex=1,block=1"])
        .arg("-o")
        .arg(&out);
    if let Ending::Duration = ending {
        cmd.args(["--duration", "3s"]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the profiler");
    // Changed during the recording.
    let during = wait_for(&workload, &format!("{what}: rates set"), |s| {
        s.mem == 4096 && s.mutex == 1 && s.block_events > 0
    });
    if let Ending::Signal(signal, _) = ending {
        send_signal(child.id(), signal);
    }
    let output = child.wait_with_output().expect("wait for the profiler");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what}: profiler failed:\n{stderr}"
    );
    assert!(
        stderr.contains("changes what process"),
        "{what}: no warning:\n{stderr}"
    );
    assert!(stderr.contains("put back"), "{what}:\n{stderr}");
    // Back after it.
    let after = seen(&workload);
    assert_eq!((after.mem, after.mutex), (524288, 0), "{what}: {after:?}");
    std::thread::sleep(Duration::from_millis(300));
    let later = seen(&workload);
    assert_eq!(
        later.block_events, after.block_events,
        "{what}: the block profile still grows: its rate was not put back"
    );
    println!(
        "{what}: during mem={} mutex={} block events>0 ({}); after mem={} mutex={}, block events stay {}",
        during.mem, during.mutex, during.block_events, after.mem, after.mutex, later.block_events
    );
    // The heap profile was read at the rate set.
    let raw = go_pprof(&["-raw"], &out);
    assert!(raw.contains("Period: 4096"), "{what}:\n{raw}");
}

#[test]
fn rates_are_set_for_the_recording_and_put_back() {
    require!(bpf(), go(), go_versions(4));
    let dir = scratch_dir("go_rates");
    for (what, binary) in go_builds("heap_live") {
        for ending in [
            Ending::Duration,
            Ending::Signal(libc::SIGINT, "SIGINT"),
            Ending::Signal(libc::SIGTERM, "SIGTERM"),
        ] {
            one_recording(&what, &binary, ending, dir.path());
        }
    }
}

#[test]
fn rates_are_refused_where_they_cannot_apply() {
    require!(bpf());
    let sleeper = start_workload(std::path::Path::new("/bin/sleep"), &["30"]);
    let pid = sleeper.0.id().to_string();
    for (args, words) in [
        (
            vec!["record", "--pid", &pid, "--go-rates", "heap=4K"],
            "not a Go program",
        ),
        (
            vec!["record", "--pid", &pid, "--go-rates", "cpu=1"],
            "unknown rate",
        ),
        (
            vec!["record", "--go-rates", "heap=4K", "--", "/bin/true"],
            "give --pid",
        ),
    ] {
        let out = profiler(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(words), "{args:?}: {stderr}");
    }
}
