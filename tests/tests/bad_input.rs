//! Bad input and missing privileges: one clear sentence, a non-zero exit, and
//! nothing left loaded in the kernel.

use std::process::Command;

use tests::*;

fn fails_with(args: &[&str], code: i32, message: &str) {
    let out = profiler(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code of {args:?}: {stderr}"
    );
    assert!(
        stderr.contains(message),
        "{args:?} says {message:?}; it said: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "{args:?} must not panic: {stderr}"
    );
    if bpf().is_ok() {
        assert_nothing_left_loaded();
    }
}

#[test]
fn missing_target() {
    fails_with(&["record"], 2, "nothing to profile");
}

#[test]
fn pid_zero() {
    fails_with(&["record", "--pid", "0"], 2, "greater than 0");
}

#[test]
fn pid_not_a_number() {
    fails_with(&["record", "--pid", "abc"], 2, "process id");
}

#[test]
fn pid_that_does_not_exist() {
    require!(bpf());
    // pid_max is at most 2^22: this id is never in use.
    fails_with(
        &["record", "--pid", "2147483647"],
        1,
        "no process with PID 2147483647",
    );
}

#[test]
fn zero_and_negative_frequency() {
    fails_with(&["record", "--pid", "1", "-F", "0"], 2, "positive number");
    fails_with(
        &["record", "--pid", "1", "--frequency", "-5"],
        2,
        "positive number",
    );
}

#[test]
fn unwritable_output_is_refused_before_attaching() {
    require!(bpf());
    let pid = std::process::id().to_string();
    fails_with(
        &["record", "--pid", &pid, "-o", "/nonexistent-dir/cpu.folded"],
        1,
        "cannot write the profile to /nonexistent-dir/cpu.folded",
    );
    fails_with(
        &["record", "--pid", &pid, "-o", "/tmp"],
        2,
        "it is a directory",
    );
}

#[test]
fn command_that_does_not_exist() {
    require!(bpf());
    let dir = scratch_dir("nocmd");
    let out = dir.join("x.folded");
    fails_with(
        &[
            "record",
            "-o",
            out.to_str().expect("UTF-8"),
            "--",
            "/no/such/program",
        ],
        1,
        "cannot start \"/no/such/program\"",
    );
}

#[test]
fn unprivileged_user_is_told_to_use_sudo() {
    require!(bpf(), program("setpriv", &["--version"]));
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(profiler_bin())
        .args(["record", "--pid", "1", "-o", "/tmp/never-written.folded"])
        .output()
        .expect("run setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs root, or the CAP_BPF and CAP_PERFMON capabilities")
            && stderr.contains("sudo"),
        "{stderr}"
    );
    assert_nothing_left_loaded();
}

#[test]
fn unknown_profile_kind() {
    fails_with(
        &["record", "--pid", "1", "--profile", "gpu"],
        2,
        "unknown kind \"gpu\"",
    );
}

#[test]
fn min_block_needs_offcpu() {
    fails_with(
        &["record", "--pid", "1", "--min-block", "1ms"],
        2,
        "--min-block applies to off-CPU",
    );
}

#[test]
fn several_kinds_need_a_file_name() {
    fails_with(
        &["record", "--pid", "1", "--profile", "all", "-o", "-"],
        2,
        "give -o a file name",
    );
}
