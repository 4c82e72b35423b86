//! `profiler diff` on what Go programs write about themselves, on every Go
//! version installed, normal and stripped: Go's own CPU profile
//! (runtime/pprof) against our recording of the same seconds, and
//! goroutine dumps ten seconds apart, ours (`profiler dump`) and Go's
//! (`/debug/pprof/goroutine` as debug=2, debug=1 and pprof). The truth is
//! what the programs know of themselves: cpu_pprof's fixed 3:1 split of
//! work between main.burnThree and main.burnOne (and `go tool pprof`'s
//! reading of Go's own file), and leak's count of the goroutines it leaked
//! (`/count`'s `leaked=`, read just before and just after each dump).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;
use tests::*;

/// Seconds cpu_pprof burns CPU with Go's profile running.
const GO_PROFILE_SECONDS: &str = "4";

/// Seconds our recording of it lasts (within Go's).
const RECORD_SECONDS: &str = "3s";

/// Our sampling rate: higher than the default 99 Hz, so that our side of
/// the comparison adds little noise to Go's (100 Hz, fixed by
/// pprof.StartCPUProfile).
const RECORD_HZ: &str = "499";

/// Seconds between the first and second goroutine dumps.
const DUMP_INTERVAL: Duration = Duration::from_secs(10);

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Runs `profiler diff BASE NEW --format json --top 0 EXTRA...`, asserts
/// it exits 0 and returns its JSON.
fn diff_json(what: &str, base: &Path, new: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "diff",
        path_str(base),
        path_str(new),
        "--format",
        "json",
        "--top",
        "0",
    ];
    args.extend_from_slice(extra);
    let out = profiler(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: profiler {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "{what}: the JSON does not parse ({err}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A function's self share (percent) in the base and the new profile.
fn self_shares(json: &Value, function: &str) -> Option<(f64, f64)> {
    let entry = json["functions"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == function)?;
    Some((
        entry["self"]["base"].as_f64()?,
        entry["self"]["new"].as_f64()?,
    ))
}

/// The function with the largest self share in the base profile.
fn top_base_self(json: &Value) -> String {
    json["functions"]
        .as_array()
        .into_iter()
        .flatten()
        .max_by(|a, b| {
            let share = |f: &Value| f["self"]["base"].as_f64().unwrap_or(0.0);
            share(a).total_cmp(&share(b))
        })
        .and_then(|f| f["name"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The first function of a `go tool pprof -top` listing (the largest flat).
fn pprof_top_flat(top: &str) -> String {
    top.lines()
        .skip_while(|l| !(l.contains("flat%") && l.contains("cum%")))
        .nth(1)
        .map(|l| l.split_whitespace().skip(5).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Four standard deviations of the sampling noise on a share `p` (0 to 1)
/// measured from `n` samples, in points.
fn noise_points(p: f64, n: f64) -> f64 {
    400.0 * (p * (1.0 - p) / n.max(1.0)).sqrt()
}

/// How far apart (points) two measures of a self share of `base` percent
/// may be: 10 points, or four standard deviations of the noise of the two
/// when they have few samples (Go's 100 Hz gives about 400 in 4 s of CPU,
/// fewer when the machine is busy).
fn allowed_disagreement(base: f64, go_samples: f64, our_samples: f64) -> f64 {
    let p = base / 100.0;
    noise_points(p, go_samples)
        .hypot(noise_points(p, our_samples))
        .max(10.0)
}

/// The burnThree:burnOne ratios allowed from `samples` samples in the two
/// functions: 2 to 4.5 (burnOne with 18% to 33% of them, 25% in truth),
/// or four standard deviations of burnOne's share when that is wider.
fn allowed_ratios(samples: f64) -> (f64, f64) {
    let spread = noise_points(0.25, samples) / 100.0;
    let (low, high) = (
        (1.0 / 5.5f64).min(0.25 - spread),
        (1.0 / 3.0f64).max(0.25 + spread),
    );
    ((1.0 - high) / high, (1.0 - low) / low)
}

#[test]
fn go_runtime_pprof_is_a_baseline_for_our_recording() {
    require!(bpf(), go(), go_versions(4));
    let dir = scratch_dir("diff-go-cpu");
    for (what, binary) in go_builds("cpu_pprof") {
        let go_file = dir.join("go.pprof");
        let ours = dir.join("ours.pb.gz");
        let mut workload = PipedWorkload::start(&binary, &[path_str(&go_file), GO_PROFILE_SECONDS]);
        // Go's profile is running once it says its pid.
        workload.line_starting("pid=", Duration::from_secs(10));
        let out = profiler(&[
            "record",
            "--pid",
            &workload.pid().to_string(),
            "--duration",
            RECORD_SECONDS,
            "-F",
            RECORD_HZ,
            "-o",
            path_str(&ours),
        ]);
        assert!(
            out.status.success(),
            "{what}: record: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let done = workload.line_starting("done", Duration::from_secs(15));
        let status = workload.process.0.wait().expect("wait for cpu_pprof");
        assert!(status.success(), "{what}: cpu_pprof: {status} ({done})");

        let json = diff_json(&what, &go_file, &ours, &[]);
        assert_eq!(
            (
                json["base"]["format"].as_str(),
                json["base"]["kind"].as_str()
            ),
            (Some("pprof"), Some("cpu")),
            "{what}: Go's file is read as a pprof CPU profile: {}",
            json["base"]
        );
        let shares = |function: &str| {
            self_shares(&json, function)
                .filter(|(base, new)| *base > 0.0 && *new > 0.0)
                .unwrap_or_else(|| {
                    panic!("{what}: {function} has self time in both profiles: {json:#}")
                })
        };
        let (three, one) = (shares("main.burnThree"), shares("main.burnOne"));
        let events = |side: &str| json[side]["events"].as_f64().unwrap_or(0.0);
        let (go_samples, our_samples) = (events("base"), events("new"));
        let (go_ratio, our_ratio) = (three.0 / one.0, three.1 / one.1);
        eprintln!(
            "{what}: self shares, Go's own profile vs ours: main.burnThree {:.1}% vs {:.1}%, main.burnOne {:.1}% vs {:.1}%; burnThree:burnOne {go_ratio:.2} vs {our_ratio:.2} (truth 3); {go_samples} vs {our_samples} samples",
            three.0, three.1, one.0, one.1
        );
        for (function, (base, new)) in [("main.burnThree", three), ("main.burnOne", one)] {
            let allowed = allowed_disagreement(base, go_samples, our_samples);
            assert!(
                (base - new).abs() <= allowed,
                "{what}: {function} has {base:.1}% self in Go's profile and {new:.1}% in ours (allowed {allowed:.1} points)"
            );
        }
        for (whose, ratio, (three, one), samples) in [
            ("Go's", go_ratio, (three.0, one.0), go_samples),
            ("our", our_ratio, (three.1, one.1), our_samples),
        ] {
            let (low, high) = allowed_ratios(samples * (three + one) / 100.0);
            assert!(
                (low..=high).contains(&ratio),
                "{what}: burnThree:burnOne is {ratio:.2} in {whose} profile, 3 in truth (allowed {low:.2} to {high:.2})"
            );
        }
        // The same stacks in both: no stack of the program's own functions
        // is in only one of them (beyond a few samples).
        for side in ["appeared", "vanished"] {
            for stack in json[side].as_array().into_iter().flatten() {
                let frames = stack["stack"].as_array().into_iter().flatten();
                let ours = frames
                    .filter_map(Value::as_str)
                    .any(|f| f.starts_with("main."));
                let value = stack["value"].as_f64().unwrap_or(0.0);
                assert!(
                    !ours || value <= 5.0,
                    "{what}: a stack of main. functions {side} with {value:.1}%: {stack}"
                );
            }
        }
        // A real client reads Go's file as we do.
        let top = go_pprof(&["-top"], &go_file);
        assert_eq!(
            pprof_top_flat(&top),
            "main.burnThree",
            "{what}: go tool pprof's top flat function: {top}"
        );
        assert_eq!(
            top_base_self(&json),
            "main.burnThree",
            "{what}: our reading of Go's profile: {json:#}"
        );
        // Same program, same split: no function regressed by half.
        let gated = profiler(&[
            "diff",
            path_str(&go_file),
            path_str(&ours),
            "--max-regression",
            "50%",
        ]);
        assert_eq!(
            gated.status.code(),
            Some(0),
            "{what}: --max-regression 50%: {}{}",
            String::from_utf8_lossy(&gated.stderr),
            String::from_utf8_lossy(&gated.stdout)
        );
    }
    assert_nothing_left_loaded();
}

/// leak's count of the goroutines it leaked so far (`/count`'s `leaked=`).
fn leaked(workload: &GoWorkload) -> f64 {
    let body = workload.get("/count").body;
    workload_value(&body, "leaked").unwrap_or_else(|| panic!("no leaked= in {body:?}"))
}

/// One dump written to a file, with the program's leak count read just
/// before and just after it.
struct Dump {
    path: PathBuf,
    before: f64,
    after: f64,
}

impl Dump {
    /// Takes a dump with `take` and writes it to `path`.
    fn take(workload: &GoWorkload, path: PathBuf, take: impl FnOnce() -> Vec<u8>) -> Dump {
        let before = leaked(workload);
        let bytes = take();
        let after = leaked(workload);
        std::fs::write(&path, bytes)
            .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
        Dump {
            path,
            before,
            after,
        }
    }

    /// The leaked goroutines the dump should hold.
    fn truth(&self) -> f64 {
        (self.before + self.after) / 2.0
    }
}

/// The sources of goroutine dumps compared: ours and Go's debug=2 for
/// every build; Go's debug=1 and binary pprof for the first build only.
const SOURCES: [&str; 4] = ["ours", "go-debug2", "go-debug1", "go-pprof"];

/// Takes the dumps of one round from one program.
fn dumps(
    workload: &GoWorkload,
    dir: &Path,
    build: usize,
    round: usize,
) -> Vec<(&'static str, Dump)> {
    let mut taken = Vec::new();
    for source in SOURCES {
        if build > 0 && matches!(source, "go-debug1" | "go-pprof") {
            continue;
        }
        let extension = if source == "go-pprof" { "pb.gz" } else { "txt" };
        let path = dir.join(format!("{build}-{source}-{round}.{extension}"));
        let dump = Dump::take(workload, path, || match source {
            "ours" => {
                let pid = workload.pid().to_string();
                let out = profiler(&["dump", "--pid", &pid]);
                assert!(
                    out.status.success(),
                    "profiler dump --pid {pid}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
            "go-debug2" => workload
                .get("/debug/pprof/goroutine?debug=2")
                .body
                .into_bytes(),
            "go-debug1" => workload
                .get("/debug/pprof/goroutine?debug=1")
                .body
                .into_bytes(),
            _ => http_get_bytes(&workload.url("/debug/pprof/goroutine"))
                .unwrap_or_else(|err| panic!("{err}")),
        });
        taken.push((source, dump));
    }
    taken
}

#[test]
fn goroutine_dumps_ten_seconds_apart_show_the_leak() {
    require!(go(), go_versions(4));
    let dir = scratch_dir("diff-go-leak");
    // All at once, so that one ten-second wait serves every build.
    let builds = go_builds("leak");
    let workloads: Vec<GoWorkload> = builds
        .iter()
        .map(|(_, binary)| GoWorkload::start(binary, &["0"]))
        .collect();
    let first: Vec<_> = workloads
        .iter()
        .enumerate()
        .map(|(i, w)| dumps(w, &dir, i, 1))
        .collect();
    std::thread::sleep(DUMP_INTERVAL);
    let second: Vec<_> = workloads
        .iter()
        .enumerate()
        .map(|(i, w)| dumps(w, &dir, i, 2))
        .collect();
    drop(workloads);

    for (((what, _), first), second) in builds.iter().zip(first).zip(second) {
        for ((source, d1), (_, d2)) in first.iter().zip(&second) {
            let what = format!("{what}, {source}");
            // A dump names the function of the `go` statement (`created
            // by`); a goroutine profile, the function the goroutine
            // started in.
            let site = if source.ends_with("debug2") || *source == "ours" {
                "main.leakOne"
            } else {
                "main.leakOne.func1"
            };
            let truth = d2.truth() - d1.truth();
            let json = diff_json(&what, &d1.path, &d2.path, &[]);
            let matching: Vec<&Value> = json["goroutine_sites"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| {
                    s["site"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("main.leakOne"))
                })
                .collect();
            let [found] = matching.as_slice() else {
                panic!("{what}: one site matches main.leakOne*: {matching:?}");
            };
            assert_eq!(found["site"], site, "{what}: {found}");
            let change = found["change"].as_f64().unwrap_or(f64::NAN);
            eprintln!(
                "{what}: main.leakOne* grew by {change} ({} -> {}); truth {truth:.1} (leaked {}..{} at the first dump, {}..{} at the second)",
                found["base"], found["new"], d1.before, d1.after, d2.before, d2.after
            );
            assert!(
                within(change, truth, 5.0),
                "{what}: the site grew by {change}, the program leaked {truth:.1} more goroutines between the dumps"
            );
            // The gates, for CI.
            let gate = |bound: &str| {
                profiler(&[
                    "diff",
                    path_str(&d1.path),
                    path_str(&d2.path),
                    "--fail-on",
                    &format!("goroutines:main.leakOne*>+{bound}"),
                ])
            };
            let tripped = gate("100");
            let stderr = String::from_utf8_lossy(&tripped.stderr);
            assert_eq!(tripped.status.code(), Some(1), "{what}: >+100: {stderr}");
            assert!(
                stderr
                    .lines()
                    .any(|l| l.contains("gate tripped") && l.contains("main.leakOne")),
                "{what}: >+100: {stderr}"
            );
            let held = gate("100000");
            assert_eq!(
                held.status.code(),
                Some(0),
                "{what}: >+100000: {}",
                String::from_utf8_lossy(&held.stderr)
            );
        }
    }
}
