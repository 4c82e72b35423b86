//! `cargo xtask`: the project's set-up, build, run, test and benchmark
//! helpers. Every command first runs the idempotent set-up, so each works on
//! a fresh machine: the pinned nightly with rust-src, bpf-linker linked
//! against that nightly's own LLVM, and the Debian packages tests use.

mod bench;
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
        which: bench::Which,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup::run(),
        Cmd::Build => setup::run().and_then(|()| build_profiler()).map(|_| ()),
        Cmd::Run { args } => setup::run().and_then(|()| run_profiler(&args)),
        Cmd::Test { filter, no_lint } => setup::run().and_then(|()| test(filter, no_lint)),
        Cmd::Bench { which } => setup::run().and_then(|()| bench::run(which)),
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
    run_counting(&mut cmd)
}

/// Runs `cargo test`, passing its output through, and ends with one plain
/// line that totals every test binary's result line.
fn run_counting(cmd: &mut Command) -> anyhow::Result<()> {
    use std::io::BufRead as _;
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
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}
