//! `cargo xtask bench unwind`: the kernel's cost per event of taking a user
//! stack (ns per run of each program, from `kernel.bpf_stats_enabled`) for
//! cpu samples, context switches and futex calls, in each unwinding mode
//! (`--unwind fp`, `dwarf`, `copy`), beside bpftrace doing the same job
//! with its frame-pointer `ustack`; and each workload's throughput.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::measure::{OFFCPU_BT, build_workload, median, metric_of, values_of};

/// One job: a workload, the kind recorded, and bpftrace's script for it.
struct Job {
    name: &'static str,
    workload: &'static str,
    args: fn(u64) -> Vec<String>,
    metric: &'static str,
    profile: &'static str,
    bpftrace: &'static str,
}

const JOBS: [Job; 3] = [
    Job {
        name: "cpu",
        workload: "cpu_split_calls",
        args: |s| vec![s.to_string()],
        metric: "rounds",
        profile: "cpu",
        bpftrace: "profile:hz:999 /pid == cpid/ { @s[ustack, kstack] = count(); }",
    },
    Job {
        name: "offcpu",
        workload: "pingpong",
        args: |s| vec![s.to_string()],
        metric: "round_trips_per_second",
        profile: "offcpu",
        bpftrace: OFFCPU_BT,
    },
    Job {
        name: "futex",
        workload: "futex_storm",
        args: |s| vec!["1".to_owned(), s.to_string()],
        metric: "futex_calls_per_second",
        profile: "futex",
        bpftrace: r#"
tracepoint:syscalls:sys_enter_futex /pid == cpid/ { @start[tid] = nsecs; @addr[tid] = args->uaddr; @ustk[tid] = ustack; }
tracepoint:syscalls:sys_exit_futex /@start[tid]/ { @wait[@addr[tid], @ustk[tid]] = sum(nsecs - @start[tid]); delete(@start[tid]); delete(@addr[tid]); delete(@ustk[tid]); }
"#,
    },
];

const MODES: [&str; 3] = ["fp", "dwarf", "copy"];

/// What one run measured: the workload's throughput and ns per run of
/// each program.
struct Measured {
    throughput: f64,
    ns_per_run: BTreeMap<String, f64>,
}

pub fn run(runs: u32, seconds: u64) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!("the unwind benchmark attaches eBPF programs: run it as root");
    }
    crate::setup::debian_packages(&[("bpftrace", "bpftrace")])?;
    let profiler = crate::build_profiler()?;
    let stats = "/proc/sys/kernel/bpf_stats_enabled";
    let before = std::fs::read_to_string(stats).unwrap_or_default();
    std::fs::write(stats, "1").context("cannot turn on kernel.bpf_stats_enabled")?;
    let result = measure_all(&profiler, runs, seconds);
    let _ = std::fs::write(stats, before.trim());
    result
}

fn measure_all(profiler: &Path, runs: u32, seconds: u64) -> anyhow::Result<()> {
    let folded = std::env::temp_dir().join("profiler-bench-unwind.folded");
    let script = std::env::temp_dir().join("profiler-bench-unwind.bt");
    let mut table = Vec::new();
    for job in &JOBS {
        // Frame pointers kept, so the frame-pointer walks are whole too and
        // the comparison is of like with like.
        let workload = build_workload(job.workload, &["-O2", "-fno-omit-frame-pointer"])?;
        let args = (job.args)(seconds);
        let mut alone = Vec::new();
        let mut ours: Vec<Vec<Measured>> = MODES.iter().map(|_| Vec::new()).collect();
        let mut theirs = Vec::new();
        std::fs::write(&script, job.bpftrace).context("cannot write the bpftrace script")?;
        for round in 1..=runs {
            alone.push(metric_of(Command::new(&workload).args(&args), job.metric)?);
            for (mode, out) in MODES.iter().zip(ours.iter_mut()) {
                let mut cmd = Command::new(profiler);
                cmd.args([
                    "record",
                    "-F",
                    "999",
                    "--unwind",
                    mode,
                    "--profile",
                    job.profile,
                ]);
                cmd.arg("-o")
                    .arg(&folded)
                    .arg("--")
                    .arg(&workload)
                    .args(&args);
                let m = record(&mut cmd, job.metric)?;
                println!(
                    "bench unwind: round {round}/{runs} {} --unwind {mode}: {:.0} {}, {:?}",
                    job.name, m.throughput, job.metric, m.ns_per_run
                );
                out.push(m);
            }
            let command_line = std::iter::once(workload.display().to_string())
                .chain(args.iter().cloned())
                .collect::<Vec<_>>()
                .join(" ");
            let m = bpftrace(&script, &command_line, job.metric)?;
            println!(
                "bench unwind: round {round}/{runs} {} bpftrace: {:.0} {}, {:?}",
                job.name, m.throughput, job.metric, m.ns_per_run
            );
            theirs.push(m);
        }
        table.push((job, median(&mut alone), ours, theirs));
    }
    println!(
        "bench unwind: kernel ns per run of each program (kernel.bpf_stats_enabled; median of {runs} runs of {seconds} s; every run of a program counts, the target's events and the others it filters out)"
    );
    for (job, alone, ours, theirs) in &table {
        println!(
            "  {} ({}, -O2 with frame pointers): {} alone {alone:.0}",
            job.name, job.workload, job.metric
        );
        let programs: Vec<&String> = ours
            .iter()
            .flat_map(|runs| runs.iter().flat_map(|m| m.ns_per_run.keys()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for program in programs {
            let mut line = format!("    {program:<16}");
            let mut by_mode = HashMap::new();
            for (mode, runs) in MODES.iter().zip(ours) {
                let ns = median(
                    &mut runs
                        .iter()
                        .filter_map(|m| m.ns_per_run.get(program).copied())
                        .collect::<Vec<_>>(),
                );
                by_mode.insert(*mode, ns);
                line += &format!("  {mode} {ns:>6.0} ns");
            }
            if let (Some(fp), Some(dwarf)) = (by_mode.get("fp"), by_mode.get("dwarf"))
                && *fp > 0.0
            {
                line += &format!("   dwarf/fp {:.2}x", dwarf / fp);
            }
            println!("{line}");
        }
        let bt: Vec<f64> = theirs
            .iter()
            .map(|m| m.ns_per_run.values().sum::<f64>())
            .collect();
        println!(
            "    bpftrace (all its programs, summed ns per run): {:.0} ns",
            median(&mut bt.clone())
        );
        for (mode, runs) in MODES.iter().zip(ours) {
            let tp = median(&mut runs.iter().map(|m| m.throughput).collect::<Vec<_>>());
            println!(
                "    throughput under --unwind {mode:<5}: {tp:>12.0}  ratio to alone {:.3}",
                tp / alone
            );
        }
        let tp = median(&mut theirs.iter().map(|m| m.throughput).collect::<Vec<_>>());
        println!(
            "    throughput under bpftrace:    {tp:>12.0}  ratio to alone {:.3}",
            tp / alone
        );
    }
    let _ = std::fs::remove_file(&folded);
    let _ = std::fs::remove_file(&script);
    Ok(())
}

/// Runs `profiler record` on a workload: the workload's throughput, and
/// the ns per run the report gives for each program.
fn record(cmd: &mut Command, metric: &str) -> anyhow::Result<Measured> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let report = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("profiler failed: {report}");
    }
    let throughput = values_of(&String::from_utf8_lossy(&output.stdout))
        .get(metric)
        .copied()
        .with_context(|| format!("the workload printed no {metric}"))?;
    // "    prf_switch   287362 runs   1486 ns/run   0.427 s"
    let ns_per_run = report
        .lines()
        .filter(|l| l.contains(" runs ") && l.contains("ns/run"))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "ns/run")?;
            Some((words.first()?.to_string(), words.get(at - 1)?.parse().ok()?))
        })
        .collect();
    Ok(Measured {
        throughput,
        ns_per_run,
    })
}

/// Runs bpftrace with `script` on a command; its programs' ns per run are
/// read from their file descriptors' fdinfo while it runs (the last
/// reading before it exits).
fn bpftrace(script: &Path, command_line: &str, metric: &str) -> anyhow::Result<Measured> {
    let mut child = Command::new("bpftrace")
        .arg(script)
        .args(["-c", command_line])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start bpftrace")?;
    let pid = child.id();
    let mut last: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    while matches!(child.try_wait(), Ok(None)) {
        for (name, stats) in program_stats(pid) {
            last.insert(name, stats);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().context("bpftrace failed")?;
    let throughput = values_of(&String::from_utf8_lossy(&output.stdout))
        .get(metric)
        .copied()
        .with_context(|| format!("the workload under bpftrace printed no {metric}"))?;
    let ns_per_run = last
        .into_iter()
        .filter(|(_, (_, runs))| *runs > 0)
        .map(|(name, (ns, runs))| (name, ns as f64 / runs as f64))
        .collect();
    Ok(Measured {
        throughput,
        ns_per_run,
    })
}

/// `(run_time_ns, run_cnt)` of each BPF program a process holds, by its
/// fd's `prog_id` (from `/proc/PID/fdinfo`).
fn program_stats(pid: u32) -> Vec<(String, (u64, u64))> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for fd in fds.flatten() {
        let Ok(info) = std::fs::read_to_string(fd.path()) else {
            continue;
        };
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(id), Some(ns), Some(runs)) =
            (field("prog_id:"), field("run_time_ns:"), field("run_cnt:"))
        {
            out.push((format!("bpftrace#{id}"), (ns, runs)));
        }
    }
    out
}
