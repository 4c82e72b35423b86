//! `cargo xtask`: the project's set-up, build, run, test and benchmark
//! helpers. Every command first runs the idempotent set-up, so each works on
//! a fresh machine: the pinned nightly with rust-src, bpf-linker linked
//! against that nightly's own LLVM, and the Debian packages tests use.

mod bench;
mod bench_redis;
mod bench_soak;
mod bench_unwind;
mod measure;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Set-up, build, run, test and benchmark the profiler"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Install what the build needs (idempotent; prints one line per step).
    Setup,
    /// Build the `profiler` binary (release).
    Build,
    /// Build and run `profiler` with the given arguments (with sudo when not root).
    Run {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Run every test: formatting, clippy, unit tests and the kernel
    /// integration tests (as root; with sudo when not root).
    Test {
        /// Only the tests whose names contain this filter.
        filter: Option<String>,
        /// Skip `cargo fmt --check` and clippy.
        #[arg(long)]
        no_lint: bool,
    },
    /// Benchmarks that print ratios against a baseline run in the same invocation.
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
}

/// The benchmarks: those of `bench.rs`, and the soak.
#[derive(Debug, Subcommand)]
enum BenchCmd {
    /// `profiler serve --window 60s` on a workload whose stacks never
    /// settle, for N minutes: the profiler's RSS, CPU, events and drops per
    /// minute, and the last minute's ratios to the first.
    Soak(bench_soak::SoakArgs),
    #[command(flatten)]
    Other(bench::Which),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup::run(),
        Cmd::Build => setup::run().and_then(|()| build_profiler()).map(|_| ()),
        Cmd::Run { args } => setup::run().and_then(|()| run_profiler(&args)),
        Cmd::Test { filter, no_lint } => setup::run().and_then(|()| test(filter, no_lint)),
        Cmd::Bench { which } => setup::run().and_then(|()| match which {
            BenchCmd::Soak(args) => bench_soak::run(&args),
            BenchCmd::Other(which) => bench::run(which),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command in the workspace, failing with the command line if it fails.
pub fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Builds the release `profiler` binary and returns its path.
pub fn build_profiler() -> anyhow::Result<PathBuf> {
    println!("xtask: building profiler (release)");
    run_cmd(cargo().args(["build", "--release", "--package", "profiler-userspace"]))?;
    Ok(workspace_root().join("target/release/profiler"))
}

fn run_profiler(args: &[String]) -> anyhow::Result<()> {
    let binary = build_profiler()?;
    let mut cmd = if is_root() {
        Command::new(&binary)
    } else {
        println!("xtask: profiler needs root; running it with sudo");
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(&binary);
        sudo
    };
    cmd.args(args);
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !status.success() {
        bail!("profiler exited with {status}");
    }
    Ok(())
}

fn test(filter: Option<String>, no_lint: bool) -> anyhow::Result<()> {
    if !no_lint {
        println!("xtask: cargo fmt --check");
        run_cmd(cargo().args(["fmt", "--all", "--check"]))?;
        println!("xtask: cargo clippy -D warnings");
        // The eBPF crate only builds for the BPF target: checked for the host
        // in one invocation with the rest, feature unification would give
        // profiler-common `aya` and std. Its own build prints its warnings.
        run_cmd(cargo().args([
            "clippy",
            "--workspace",
            "--exclude",
            "profiler-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
        .context("clippy found problems")?;
    }
    let binary = build_profiler()?;
    println!("xtask: unit and integration tests");
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--workspace",
        "--exclude",
        "profiler-ebpf",
        "--release",
    ]);
    if let Some(filter) = &filter {
        cmd.arg(filter);
    }
    // Kernel tests check that no program of ours stays loaded after each one
    // and measure CPU shares: one test at a time.
    cmd.args(["--", "--test-threads=1"]);
    cmd.env("PROFILER_BIN", &binary);
    if !is_root() {
        println!("xtask: kernel tests need root; running test binaries with sudo");
        cmd.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
    }
    run_counting(&mut cmd, &workspace_root().join("target/test-skips.log"))
}

/// The skips a test run logged: (test, why) per line `TEST\tWHY`.
fn read_skips(skip_log: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(skip_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (test, why) = line.split_once('\t').unwrap_or((line, ""));
            (test.to_owned(), why.to_owned())
        })
        .collect()
}

/// The summary of a test run: the totals of libtest's result lines, with
/// the tests that skipped themselves (which libtest counted as passed) moved
/// from passed to skipped, then one line per such test.
fn summary(passed: u64, failed: u64, ignored: u64, skips: &[(String, String)]) -> String {
    let skipped = skips.len() as u64;
    let mut text = format!(
        "tests: {} passed, {failed} failed, {} skipped",
        passed.saturating_sub(skipped),
        ignored + skipped
    );
    for (test, why) in skips {
        text.push_str(&format!("\n  skipped: {test}: {why}"));
    }
    text
}

/// Runs `cargo test`, passing its output through, and ends with one plain
/// line that totals every test binary's result line, then one line per test
/// that skipped itself. A test that skips itself (something it needs is
/// missing) says so in a line of the file `$PROFILER_SKIP_LOG`, which this
/// sets to `skip_log`.
fn run_counting(cmd: &mut Command, skip_log: &Path) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    if let Some(dir) = skip_log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Made afresh, by us: a log left by a run through sudo may not be ours
    // to truncate, and one of ours is one sudo's root can append to.
    let _ = std::fs::remove_file(skip_log);
    std::fs::write(skip_log, "")
        .with_context(|| format!("cannot create {}", skip_log.display()))?;
    cmd.env("PROFILER_SKIP_LOG", skip_log);
    let mut child = cmd
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.context("cannot read cargo test's output")?;
            println!("{line}");
            if let Some(result) = line.strip_prefix("test result: ") {
                let count = |word: &str| {
                    result
                        .split(';')
                        .find_map(|part| {
                            part.trim()
                                .trim_start_matches("ok. ")
                                .trim_start_matches("FAILED. ")
                                .strip_suffix(word)
                        })
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                passed += count(" passed");
                failed += count(" failed");
                ignored += count(" ignored");
            }
        }
    }
    let status = child.wait().context("cannot wait for cargo test")?;
    println!(
        "{}",
        summary(passed, failed, ignored, &read_skips(skip_log))
    );
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_that_skipped_themselves_are_counted_as_skipped_and_listed() {
        let dir = std::env::temp_dir().join(format!("xtask-skips-{}", std::process::id()));
        let log = dir.join("test-skips.log");
        // A stale log from an earlier run is replaced.
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        std::fs::write(&log, "old::test\tstale\n").expect("write a stale log");
        // Stands in for `cargo test`: two binaries' result lines, one test
        // that skipped itself.
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(
            "echo 'test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out'; \
             printf 'serve::needs_go\\t`go` is missing\\n' >> \"$PROFILER_SKIP_LOG\"; \
             echo 'test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out'; \
             exit 101",
        );
        assert!(run_counting(&mut cmd, &log).is_err(), "a failed test fails");
        let skips = read_skips(&log);
        assert_eq!(
            skips,
            [("serve::needs_go".to_owned(), "`go` is missing".to_owned())]
        );
        assert_eq!(
            summary(5, 1, 1, &skips),
            "tests: 4 passed, 1 failed, 2 skipped\n  skipped: serve::needs_go: `go` is missing"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
