//! Recording several processes at once (issue 14): a running process and its
//! descendants (`--pid P --children`), a command's whole tree (`-- CMD`), a
//! cgroup v2 directory and its sub-cgroups (`--cgroup`), the whole machine
//! (`-a`); the `COMM (PID)` process frames and the report's `Processes:`
//! section; targets that are not a live process (a zombie, a thread id); a
//! command that outlives `--duration`; the CPU of a target that exits; and
//! a frequency high enough to warn about.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tests::*;

/// The sampling frequency the tests use (the default).
const HZ: f64 = 99.0;

fn utf8(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// A forked worker of `forking_master`: its letter, PID and the CPU
/// seconds it used while recorded.
#[derive(Debug, Clone, Copy)]
struct Worker {
    letter: char,
    pid: u32,
    cpu: f64,
}

/// The PIDs in the workload's `worker X pid=N` lines for `letters`, read
/// as they come (workers forked at once print in any order).
fn worker_pids(workload: &mut PipedWorkload, letters: &[char]) -> BTreeMap<char, u32> {
    let mut found = BTreeMap::new();
    while letters.iter().any(|l| !found.contains_key(l)) {
        let line = workload.line_starting("worker ", Duration::from_secs(15));
        let Some(letter) = line.chars().nth("worker ".len()) else {
            continue;
        };
        if let Some(pid) = line.strip_prefix(&format!("worker {letter} pid=")) {
            let pid = pid
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad worker line {line:?}"));
            found.insert(letter, pid);
        }
    }
    found
}

/// The PID of each stack's process frame (panics on a stack without one).
fn pid_of(stack: &FoldedStack) -> u32 {
    process_frame(stack.frames.first().map(String::as_str).unwrap_or(""))
        .map(|(_, pid)| pid)
        .unwrap_or_else(|| panic!("no process frame `COMM (PID)`: {:?}", stack.frames))
}

/// Checks each worker's samples against its CPU time (at least `share` of
/// CPU seconds × 99, at most 1.2 times that), that its stacks name its own
/// burn function and no other's, under its thread frame `worker_X-PID`
/// (the recordings ask for `--per-thread`),
/// and that no process other than the workers and `others` was recorded.
fn check_workers(stacks: &[FoldedStack], workers: &[Worker], others: &[u32], share: f64) {
    let by_pid = samples_by_process(stacks);
    let allowed: BTreeSet<u32> = workers
        .iter()
        .map(|w| w.pid)
        .chain(others.iter().copied())
        .collect();
    let strangers: Vec<(u32, u64)> = by_pid
        .iter()
        .filter(|(pid, _)| !allowed.contains(pid))
        .map(|(pid, n)| (*pid, *n))
        .collect();
    assert!(
        strangers.is_empty(),
        "processes outside the target were recorded (pid, samples): {strangers:?}; expected only {allowed:?}"
    );
    for worker in workers {
        let got = by_pid.get(&worker.pid).copied().unwrap_or(0);
        let expected = worker.cpu * HZ;
        let burn = format!("burn_{}", worker.letter);
        let burned = total_where(stacks, |s| pid_of(s) == worker.pid && s.has(&burn));
        eprintln!(
            "worker {} (PID {}): {got} samples ({burned} in {burn}), {expected:.0} expected from {:.2} s of CPU while recorded",
            worker.letter, worker.pid, worker.cpu
        );
        assert!(
            got as f64 >= share * expected,
            "worker {} (PID {}) has {got} samples, under {:.0}% of the {expected:.0} expected from {:.2} s of CPU; samples by PID: {by_pid:?}",
            worker.letter,
            worker.pid,
            share * 100.0,
            worker.cpu
        );
        assert!(
            got as f64 <= 1.2 * expected + 5.0,
            "worker {} (PID {}) has {got} samples, more than 1.2 times the {expected:.0} expected from {:.2} s of CPU (counted twice?)",
            worker.letter,
            worker.pid,
            worker.cpu
        );
        assert!(
            burned as f64 >= 0.9 * got as f64,
            "only {burned} of worker {}'s {got} samples name {burn}",
            worker.letter
        );
        for stack in stacks.iter().filter(|s| pid_of(s) == worker.pid) {
            for other in workers.iter().filter(|o| o.letter != worker.letter) {
                let theirs = format!("burn_{}", other.letter);
                assert!(
                    !stack.has(&theirs),
                    "worker {}'s process (PID {}) has a stack of {theirs}: {:?}",
                    worker.letter,
                    worker.pid,
                    stack.frames
                );
            }
            if stack.has(&burn) {
                let thread = format!("worker_{}-{}", worker.letter, worker.pid);
                assert_eq!(
                    stack.frames.get(1).map(String::as_str),
                    Some(thread.as_str()),
                    "the second frame is the thread `NAME-TID`: {:?}",
                    stack.frames
                );
            }
        }
    }
}

/// Checks that the report's `Processes:` section has a line for each
/// worker that starts with its PID and gives its sample count.
fn check_processes_section(report: &str, stacks: &[FoldedStack], workers: &[Worker]) {
    let by_pid = samples_by_process(stacks);
    let section = report_after(report, "Processes:");
    assert!(
        report
            .lines()
            .any(|l| l.trim_start().starts_with("Processes:")),
        "the report has no `Processes:` section:\n{report}"
    );
    for worker in workers {
        let line = section
            .iter()
            .find(|l| l.split_whitespace().next() == Some(worker.pid.to_string().as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "no line for PID {} under `Processes:`:\n{report}",
                    worker.pid
                )
            });
        let samples = by_pid.get(&worker.pid).copied().unwrap_or(0).to_string();
        assert!(
            line.split_whitespace().any(|t| t == samples),
            "the report's line for PID {} does not give its {samples} samples (as in the folded file): {line:?}",
            worker.pid
        );
    }
}

#[test]
fn children_of_a_running_master_are_recorded() {
    require!(bpf());
    let binary = build_workload("forking_master", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("children");
    let out = dir.join("cpu.folded");
    // A and B burn from the start to 11 s, C from 3 s to 11 s. The
    // recording (7 s) starts within a second or so of the launch: A and B
    // burn all through it and C is forked while it runs.
    let mut workload = PipedWorkload::start(&binary, &["11", "3"]);
    let launched = Instant::now();
    let master = workload.pid();
    let first = worker_pids(&mut workload, &['a', 'b']);
    let (a, b) = (first[&'a'], first[&'b']);
    let before = our_loaded_programs().len();
    let mut recorder = spawn_profiler(&[
        "record",
        "--pid",
        &master.to_string(),
        "--children",
        "--per-thread",
        "--duration",
        "7s",
        "-o",
        utf8(&out),
    ]);
    // The recording starts once the programs are loaded and attached:
    // measuring each worker's CPU from the load over 7 s counts the same
    // for A and B (they burn steadily), and less for C (the recording
    // starts and so ends a little later than this window).
    let loaded = wait_for_programs(before, &mut recorder);
    let start_cpu: BTreeMap<u32, f64> = [a, b]
        .into_iter()
        .map(|pid| (pid, process_cpu_seconds(pid).unwrap_or(0.0)))
        .collect();
    let startup = loaded - launched;
    eprintln!("programs loaded {startup:?} after the master started");
    assert!(
        startup < Duration::from_secs(3),
        "the profiler took {startup:?} to load its programs: worker C (forked at 3 s) would not be forked while recording"
    );
    let c = worker_pids(&mut workload, &['c'])[&'c'];
    std::thread::sleep((loaded + Duration::from_secs(7)).saturating_duration_since(Instant::now()));
    let workers: Vec<Worker> = [('a', a), ('b', b), ('c', c)]
        .into_iter()
        .map(|(letter, pid)| {
            let now = process_cpu_seconds(pid)
                .unwrap_or_else(|| panic!("worker {letter} (PID {pid}) is gone before 11 s"));
            Worker {
                letter,
                pid,
                cpu: now - start_cpu.get(&pid).copied().unwrap_or(0.0),
            }
        })
        .collect();
    let output = recorder.wait_with_output().expect("wait for the profiler");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "profiler failed: {report}");
    assert_nothing_left_loaded();

    let folded = std::fs::read_to_string(&out).expect("the profile was written");
    let stacks = parse_folded(&folded);
    // The master sleeps and forks: it may have a few samples.
    check_workers(&stacks, &workers, &[master], 0.9);
    check_processes_section(&report, &stacks, &workers);
}

#[test]
fn command_tree_is_followed() {
    require!(bpf());
    let binary = build_workload("forking_master", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("command-tree");
    let out = dir.join("cpu.folded");
    // A and B burn 4 s, C (forked at 1 s) 3 s; with fewer than three CPUs
    // they share them, so each worker's truth is the CPU time it reports.
    let (report, stdout) =
        record_command(&["--per-thread", "-o", utf8(&out)], &binary, &["4", "1"]);
    assert_nothing_left_loaded();
    let master = stdout
        .lines()
        .find_map(|l| workload_value(l.strip_prefix("master ")?, "pid"))
        .unwrap_or_else(|| panic!("no `master pid=` line: {stdout}")) as u32;
    assert!(stdout.contains("\ndone"), "the master finished: {stdout}");
    let folded = std::fs::read_to_string(&out).expect("the profile was written");
    let stacks = parse_folded(&folded);
    let workers: Vec<Worker> = ['a', 'b', 'c']
        .into_iter()
        .map(|letter| {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&format!("worker {letter} done ")))
                .unwrap_or_else(|| panic!("worker {letter} did not finish: {stdout}"));
            let value =
                |key| workload_value(line, key).unwrap_or_else(|| panic!("no {key}= in {line:?}"));
            let worker = Worker {
                letter,
                pid: value("pid") as u32,
                cpu: value("cpu_seconds"),
            };
            // The process frames of the stacks that name burn_X give the
            // same PID as the worker says it has.
            let burn = format!("burn_{letter}");
            let pids: BTreeSet<u32> = stacks.iter().filter(|s| s.has(&burn)).map(pid_of).collect();
            assert_eq!(
                pids,
                BTreeSet::from([worker.pid]),
                "the stacks of {burn} are all under worker {letter}'s process frame (PID {})",
                worker.pid
            );
            worker
        })
        .collect();
    check_workers(&stacks, &workers, &[master], 0.9);
    check_processes_section(&report, &stacks, &workers);
}

/// The cgroup v2 hierarchy's mount point (`/sys/fs/cgroup` on a unified
/// system, `/sys/fs/cgroup/unified` on a hybrid one).
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let found: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
        })
        .collect();
    found
        .iter()
        .find(|p| p.as_path() == Path::new("/sys/fs/cgroup"))
        .or(found.first())
        .cloned()
}

/// Whether a cgroup v2 directory can be made here (mounted, with
/// `cgroup.controllers`, and writable).
fn cgroup2_writable() -> Result<(), String> {
    let Some(mount) = cgroup2_mount() else {
        return Err(
            "no cgroup v2 hierarchy is mounted (no cgroup2 in /proc/self/mounts)".to_owned(),
        );
    };
    if !mount.join("cgroup.controllers").exists() {
        return Err(format!(
            "{} is not a cgroup v2 hierarchy (no cgroup.controllers)",
            mount.display()
        ));
    }
    let probe = mount.join(format!("prf_probe_{}", std::process::id()));
    std::fs::create_dir(&probe)
        .map_err(|err| format!("cannot make a cgroup in {}: {err}", mount.display()))?;
    let _ = std::fs::remove_dir(&probe);
    Ok(())
}

/// A test's cgroup `prf_test_<pid>` with a sub-cgroup `inner`, both
/// removed when dropped (after the processes put in them are: declare it
/// before them). Only this test's processes are ever put in it.
struct TestCgroup {
    path: PathBuf,
    inner: PathBuf,
}

impl TestCgroup {
    fn create() -> TestCgroup {
        let mount = cgroup2_mount().expect("a cgroup v2 mount");
        let path = mount.join(format!("prf_test_{}", std::process::id()));
        let inner = path.join("inner");
        let _ = std::fs::remove_dir(&inner);
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).unwrap_or_else(|err| panic!("mkdir {}: {err}", path.display()));
        let cgroup = TestCgroup {
            path,
            inner: inner.clone(),
        };
        std::fs::create_dir(&inner)
            .unwrap_or_else(|err| panic!("mkdir {}: {err}", inner.display()));
        cgroup
    }

    fn put(dir: &Path, pid: u32) {
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|err| panic!("put PID {pid} in {}: {err}", dir.display()));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in [&self.inner, &self.path] {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut killed = false;
            while dir.exists() {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(err) if Instant::now() > deadline => {
                        eprintln!("cannot remove the test cgroup {}: {err}", dir.display());
                        break;
                    }
                    Err(_) => {
                        // Only this test's processes are in it.
                        if !killed && Instant::now() + Duration::from_secs(4) > deadline {
                            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
                            killed = true;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    }
}

/// The CPU seconds each of `pids` uses over `window` from now.
/// Runs `profiler record TARGET --duration 3s -o OUT` and measures the CPU
/// each of `pids` uses over the 3 s from the moment the programs are
/// loaded; returns the stacks, that CPU and the profiler's PID, after
/// checking it succeeded and left nothing loaded.
fn record_measuring(
    target: &[&str],
    out: &Path,
    pids: &[u32],
) -> (Vec<FoldedStack>, BTreeMap<u32, f64>, u32) {
    let before = our_loaded_programs().len();
    let mut args = vec!["record"];
    args.extend_from_slice(target);
    args.extend(["--duration", "3s", "-o", utf8(out)]);
    let mut recorder = spawn_profiler(&args);
    let profiler_pid = recorder.id();
    wait_for_programs(before, &mut recorder);
    let cpu = cpu_over(pids, Duration::from_secs(3));
    let output = recorder.wait_with_output().expect("wait for the profiler");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "profiler failed: {report}");
    assert_nothing_left_loaded();
    let stacks = parse_folded(&std::fs::read_to_string(out).expect("the profile was written"));
    (stacks, cpu, profiler_pid)
}

fn cpu_over(pids: &[u32], window: Duration) -> BTreeMap<u32, f64> {
    let start = Instant::now();
    let before: Vec<f64> = pids
        .iter()
        .map(|&pid| process_cpu_seconds(pid).unwrap_or_else(|| panic!("PID {pid} is gone")))
        .collect();
    std::thread::sleep((start + window).saturating_duration_since(Instant::now()));
    pids.iter()
        .zip(before)
        .map(|(&pid, before)| {
            let after = process_cpu_seconds(pid).unwrap_or_else(|| panic!("PID {pid} is gone"));
            (pid, after - before)
        })
        .collect()
}

/// Checks that each of `cpu`'s processes has between 80% and 120% of the
/// samples its CPU time gives at 99 Hz.
fn check_cpu_shares(by_pid: &BTreeMap<u32, u64>, cpu: &BTreeMap<u32, f64>, what: &str) {
    for (pid, seconds) in cpu {
        let got = by_pid.get(pid).copied().unwrap_or(0);
        let expected = seconds * HZ;
        eprintln!(
            "{what} PID {pid}: {got} samples, {expected:.0} expected from {seconds:.2} s of CPU"
        );
        assert!(
            got as f64 >= 0.8 * expected && got as f64 <= 1.2 * expected + 5.0,
            "{what} PID {pid} has {got} samples, not within 80-120% of the {expected:.0} expected from {seconds:.2} s of CPU; samples by PID: {by_pid:?}"
        );
    }
}

#[test]
fn cgroup_records_its_processes_only() {
    require!(bpf(), cgroup2_writable());
    let binary = build_workload("exits_early", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("cgroup");
    let out = dir.join("cpu.folded");
    // Dropped after the workloads, which are killed and reaped first.
    let cgroup = TestCgroup::create();
    // Three burners of the same program (same name, same binary): one in
    // the cgroup, one in its sub-cgroup, one outside.
    let inside = start_workload(&binary, &["60"]);
    let nested = start_workload(&binary, &["60"]);
    let outside = start_workload(&binary, &["60"]);
    TestCgroup::put(&cgroup.path, inside.0.id());
    TestCgroup::put(&cgroup.inner, nested.0.id());
    let (stacks, cpu, _) = record_measuring(
        &["--cgroup", utf8(&cgroup.path)],
        &out,
        &[inside.0.id(), nested.0.id()],
    );
    let by_pid = samples_by_process(&stacks);
    let recorded: BTreeSet<u32> = by_pid.keys().copied().collect();
    assert_eq!(
        recorded,
        BTreeSet::from([inside.0.id(), nested.0.id()]),
        "only the cgroup's processes (PID {} in it, PID {} in its sub-cgroup) are recorded, not PID {} outside it; samples by PID: {by_pid:?}",
        inside.0.id(),
        nested.0.id(),
        outside.0.id()
    );
    check_cpu_shares(&by_pid, &cpu, "in the cgroup:");
    let total: u64 = by_pid.values().sum();
    let burned = total_where(&stacks, |s| s.has("burn_then_exit"));
    assert!(
        burned as f64 >= 0.9 * total as f64,
        "only {burned} of {total} samples name burn_then_exit: {stacks:?}"
    );
    drop(outside);
    drop(nested);
    drop(inside);
    drop(cgroup);
}

#[test]
fn all_records_the_machine() {
    require!(bpf());
    let burner = build_workload("exits_early", FRAME_POINTER_FLAGS);
    let other = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("all");
    let out = dir.join("cpu.folded");
    let first = start_workload(&burner, &["60"]);
    let second = start_workload(&other, &["60"]);
    let (stacks, cpu, profiler_pid) =
        record_measuring(&["-a"], &out, &[first.0.id(), second.0.id()]);
    let by_pid = samples_by_process(&stacks);
    eprintln!("-a: {} processes recorded", by_pid.len());
    check_cpu_shares(&by_pid, &cpu, "-a:");
    assert!(
        by_pid.len() >= 2,
        "more than one process is recorded: {by_pid:?}"
    );
    assert!(
        !by_pid.contains_key(&profiler_pid),
        "the profiler (PID {profiler_pid}) does not record itself: {} samples",
        by_pid[&profiler_pid]
    );
    assert!(
        total_where(&stacks, |s| pid_of(s) == first.0.id()
            && s.has("burn_then_exit"))
            > 0
            && total_where(&stacks, |s| pid_of(s) == second.0.id()
                && s.has("hot_three"))
                > 0,
        "each burner's stacks name its functions"
    );
}

/// The children of `parent` (from every `/proc/PID/stat`): (PID, state).
fn children_of(parent: u32) -> Vec<(u32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
            let state = rest.next()?.chars().next()?;
            let ppid: u32 = rest.next()?.parse().ok()?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

#[test]
fn zombie_pid_says_exited() {
    require!(bpf());
    let dir = scratch_dir("zombie");
    let out = dir.join("cpu.folded");
    // `sleep 0` exits at once, and its parent (the shell, now `sleep 30`)
    // never waits for it: a zombie.
    let parent = KillOnDrop(
        Command::new("sh")
            .args(["-c", "sleep 0 & exec sleep 30"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start sh"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let zombie = loop {
        if let Some((pid, _)) = children_of(parent.0.id())
            .into_iter()
            .find(|(_, state)| *state == 'Z')
        {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no zombie child of PID {} within 10 s: {:?}",
            parent.0.id(),
            children_of(parent.0.id())
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = profiler(&[
        "record",
        "--pid",
        &zombie.to_string(),
        "--duration",
        "1s",
        "-o",
        utf8(&out),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!(
        "record --pid {zombie} (a zombie): {:?}\n{stderr}",
        run.status
    );
    assert!(
        !run.status.success(),
        "a zombie cannot be recorded: {stderr}"
    );
    assert!(
        stderr.contains("has exited") && stderr.contains(&zombie.to_string()),
        "the error says PID {zombie} has exited: {stderr}"
    );
    assert!(
        !stderr.contains("kernel thread"),
        "a zombie is not called a kernel thread: {stderr}"
    );
    assert_nothing_left_loaded();
}

#[test]
fn thread_id_is_resolved_to_its_process() {
    require!(bpf());
    let binary = build_workload("cpu_starved", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("thread-id");
    let out = dir.join("cpu.folded");
    // Two threads spinning in busy_spin, main waiting in pthread_join.
    let workload = start_workload(&binary, &["2", "60"]);
    let pid = workload.0.id();
    let tid = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read the workload's threads")
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|tid| *tid != pid)
        .expect("a thread other than the leader");
    let run = profiler(&[
        "record",
        "--pid",
        &tid.to_string(),
        "--duration",
        "2s",
        "-o",
        utf8(&out),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "record --pid {tid} (a thread of {pid}) failed: {stderr}"
    );
    assert_nothing_left_loaded();
    assert!(
        stderr.lines().any(|l| l.contains("is a thread of process")
            && l.contains(&tid.to_string())
            && l.contains(&pid.to_string())),
        "stderr says {tid} is a thread of process {pid}: {stderr}"
    );
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("the profile was written"));
    let spun = total_where(&stacks, |s| s.has("busy_spin"));
    eprintln!("record --pid {tid} (thread of {pid}): {spun} samples in busy_spin");
    assert!(spun > 0, "the process was recorded: {stacks:?}");
}

#[test]
fn command_with_duration_is_terminated_like_perf() {
    require!(bpf());
    let dir = scratch_dir("command-term");
    let out = dir.join("cpu.folded");
    let marker = dir.join("got-term");
    // The shell writes the marker when it gets SIGTERM (after its current
    // `sleep 0.1`), then exits.
    let script = format!(
        "trap 'echo got-term > \"{}\"; exit 0' TERM; while :; do sleep 0.1; done",
        marker.display()
    );
    let started = Instant::now();
    let run = profiler(&[
        "record",
        "--duration",
        "2s",
        "-o",
        utf8(&out),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "profiler failed: {stderr}");
    assert_nothing_left_loaded();
    assert!(
        elapsed < Duration::from_secs(15),
        "the recording ended {elapsed:?} after it started, not at --duration 2s: {stderr}"
    );
    assert!(stderr.contains("duration reached"), "{stderr}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&marker).unwrap_or_default();
        if text.trim() == "got-term" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the command did not get SIGTERM (its trap wrote {text:?} to {}): {stderr}",
            marker.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("SIGTERM") && !l.contains("stopped by SIGTERM")),
        "stderr says the command was sent SIGTERM: {stderr}"
    );
}

/// The CPU seconds of the report's "target used N s of CPU".
fn target_cpu_in(report: &str) -> Option<f64> {
    report
        .split("target used ")
        .nth(1)?
        .split(" s of CPU")
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Checks the report's "target used N s of CPU" against the truth, known
/// to lie between `low` and `high` seconds (15% allowed beyond).
fn check_target_cpu(report: &str, low: f64, high: f64, what: &str) {
    let said = target_cpu_in(report)
        .unwrap_or_else(|| panic!("{what}: no \"target used N s of CPU\" in the report: {report}"));
    eprintln!(
        "{what}: target used {said:.2} s of CPU by the report; truth between {low:.2} and {high:.2} s"
    );
    assert!(
        said >= 0.85 * low && said <= 1.15 * high,
        "{what}: the report says the target used {said:.2} s of CPU; it used between {low:.2} and {high:.2} s while recorded (15% allowed): {report}"
    );
}

#[test]
fn target_cpu_counts_exited_processes() {
    require!(bpf());
    let dir = scratch_dir("exited-cpu");

    // One process that burns 2 s and exits, half-way through a 4 s
    // recording.
    let binary = build_workload("exits_early", FRAME_POINTER_FLAGS);
    let out = dir.join("one.folded");
    let mut workload = PipedWorkload::start(&binary, &["2"]);
    let pid = workload.value_after("pid=", "pid", Duration::from_secs(5)) as u32;
    let cpu_at_launch = process_cpu_seconds(pid).unwrap_or(0.0);
    let before = our_loaded_programs().len();
    let mut recorder = spawn_profiler(&[
        "record",
        "--pid",
        &pid.to_string(),
        "--duration",
        "4s",
        "-o",
        utf8(&out),
    ]);
    wait_for_programs(before, &mut recorder);
    let cpu_at_load = process_cpu_seconds(pid).expect("the workload still runs");
    let output = recorder.wait_with_output().expect("wait for the profiler");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "profiler failed: {report}");
    assert_nothing_left_loaded();
    let total = workload.value_after("cpu_seconds=", "cpu_seconds", Duration::from_secs(10));
    // The CPU it used while recorded lies between what it used after the
    // programs were loaded and what it used after the profiler started.
    check_target_cpu(
        &report,
        total - cpu_at_load,
        total - cpu_at_launch,
        "--pid of a process that exits",
    );

    // A tree whose every worker exits during the recording: three workers
    // forked at once burn until 3 s and exit, then the master; their CPU
    // counts though none is left to read at the end.
    let binary = build_workload("forking_master", FRAME_POINTER_FLAGS);
    let out = dir.join("tree.folded");
    let mut tree = PipedWorkload::start(&binary, &["3", "0"]);
    let workers: Vec<u32> = worker_pids(&mut tree, &['a', 'b', 'c'])
        .into_values()
        .collect();
    let cpu_now = || -> f64 {
        workers
            .iter()
            .map(|&pid| process_cpu_seconds(pid).unwrap_or_else(|| panic!("worker {pid} is gone")))
            .sum()
    };
    let cpu_at_launch = cpu_now();
    let before = our_loaded_programs().len();
    let mut recorder = spawn_profiler(&[
        "record",
        "--pid",
        &tree.pid().to_string(),
        "--children",
        "--duration",
        "6s",
        "-o",
        utf8(&out),
    ]);
    wait_for_programs(before, &mut recorder);
    let cpu_at_load = cpu_now();
    let output = recorder.wait_with_output().expect("wait for the profiler");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "profiler failed: {report}");
    assert_nothing_left_loaded();
    let lines = tree.rest_of_lines(Duration::from_secs(15));
    let done: Vec<f64> = lines
        .iter()
        .filter(|l| l.starts_with("worker ") && l.contains(" done "))
        .filter_map(|l| workload_value(l, "cpu_seconds"))
        .collect();
    assert_eq!(done.len(), 3, "every worker finished: {lines:?}");
    let total: f64 = done.iter().sum();
    check_target_cpu(
        &report,
        total - cpu_at_load,
        total - cpu_at_launch,
        "--pid --children of a tree that exits",
    );
}

/// Whether the kernel allows `hz` samples per second
/// (`kernel.perf_event_max_sample_rate`, which it lowers by itself when
/// sampling interrupts take too long).
fn sample_rate_allows(hz: u64) -> Result<(), String> {
    let path = "/proc/sys/kernel/perf_event_max_sample_rate";
    let max: u64 = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read {path}: {err}"))?
        .trim()
        .parse()
        .map_err(|_| format!("cannot parse {path}"))?;
    if max >= hz {
        Ok(())
    } else {
        Err(format!("{path} is {max}, under {hz}"))
    }
}

#[test]
fn extreme_frequency_warns() {
    require!(bpf(), sample_rate_allows(10000));
    let binary = build_workload("exits_early", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("frequency");
    let out = dir.join("cpu.folded");
    let run = profiler(&[
        "record",
        "--frequency",
        "10000",
        "--duration",
        "1s",
        "-o",
        utf8(&out),
        "--",
        utf8(&binary),
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "profiler failed: {stderr}");
    assert_nothing_left_loaded();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.to_lowercase().contains("warn") && l.contains("10000"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning line about --frequency 10000: {warnings:?}\n{stderr}"
    );
    let stacks = parse_folded(&std::fs::read_to_string(&out).expect("the profile was written"));
    assert!(
        total_where(&stacks, |s| s.has("burn_then_exit")) > 0,
        "it still records: {stacks:?}"
    );
}
