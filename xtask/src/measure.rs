//! What the benchmarks share: building a C workload, reading the
//! `key=value` figures a workload prints, a process's CPU time, bpftrace's
//! off-CPU script, and the median of runs.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{run_cmd, workspace_root};

/// The median of some runs' figures (0 for none).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Compiles a C workload from `tests/workloads` into `target/workloads`.
pub fn build_workload(name: &str, flags: &[&str]) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let source = root.join("tests/workloads").join(format!("{name}.c"));
    let out_dir = root.join("target/workloads");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let binary = out_dir.join(name);
    run_cmd(
        Command::new("gcc")
            .args(flags)
            .arg("-o")
            .arg(&binary)
            .arg(&source)
            .arg("-lpthread"),
    )?;
    Ok(binary)
}

/// The `key=value` numbers of a line of output.
pub fn values_of(text: &str) -> std::collections::HashMap<String, f64> {
    text.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Runs a command and reads `key=value` from its stdout.
pub fn metric_of(cmd: &mut Command, key: &str) -> anyhow::Result<f64> {
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    values_of(&String::from_utf8_lossy(&output.stdout))
        .get(key)
        .copied()
        .with_context(|| format!("{cmd:?} printed no {key} ({})", output.status))
}

/// bpftrace doing the off-CPU profile's job (without wakers): time each
/// target thread is switched out, summed by its user and kernel stacks.
pub const OFFCPU_BT: &str = r#"
tracepoint:sched:sched_switch {
  if (pid == cpid) { @ts[tid] = nsecs; @ustk[tid] = ustack; @kstk[tid] = kstack; }
  $t = @ts[args->next_pid];
  if ($t) {
    @off[@ustk[args->next_pid], @kstk[args->next_pid]] = sum(nsecs - $t);
    delete(@ts[args->next_pid]); delete(@ustk[args->next_pid]); delete(@kstk[args->next_pid]);
  }
}
"#;

/// CPU time (user + system) a process has used so far, from /proc.
pub fn cpu_of(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    let (Some(user), Some(system)) = (ticks(14), ticks(15)) else {
        bail!("cannot parse /proc/{pid}/stat");
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64((user + system) as f64 / hz))
}
