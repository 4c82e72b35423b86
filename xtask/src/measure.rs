//! What the benchmarks share: building a C workload, reading the
//! `key=value` figures a workload prints, and the median of runs.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::Context as _;

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
