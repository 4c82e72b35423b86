//! Go's own mutex and block semantics from outside (`--profile
//! gomutex,goblock`: uprobes on the Go runtime), against a program that
//! measures its own waits and keeps Go's own mutex profile on as the truth
//! (`go_waits.go`), on every Go toolchain present, normal and stripped:
//!
//! - gomutex: the delay of the waits on `main.mu` within 15% of what Go's
//!   own mutex profile added over the same phase; the top stack is the
//!   unlocking one (`main.unlockMu`), the waiting stacks (`waiting_stack`
//!   in pprof, read by `go tool pprof -tags`) name `main.lockMu`, and
//!   `go tool pprof`'s total delay is the folded total;
//! - goblock: the time under `[chan receive]` in `main.recvWork` within 15%
//!   of the program's own measure, a `sync.WaitGroup` wait under
//!   `[sync.WaitGroup.Wait]` and `time.Sleep` under `[sleep (idle)]`, each
//!   within 15% of the program's own;
//! - the program's own checksum is right under the probes, and nothing is
//!   left attached.

use std::{
    io::BufRead as _,
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use tests::*;

/// How long the program's measured phase lasts, in milliseconds.
const PHASE_MS: u64 = 3000;

/// What one recording of one phase gave.
struct Recorded {
    /// The program's own answers for the phase (`key=value` lines).
    truth: String,
    gomutex: Vec<FoldedStack>,
    goblock: Vec<FoldedStack>,
    /// The gomutex profile as pprof.
    gomutex_pprof: std::path::PathBuf,
    report: String,
}

/// Records gomutex and goblock of a running go_waits while it runs one
/// measured phase that lies wholly inside the recording.
fn record_phase(binary: &Path, dir: &Path, kinds: &str) -> Recorded {
    let workload = GoWorkload::start(binary, &["0"]);
    let folded = dir.join("waits.folded");
    let pprof = dir.join("waits.pb.gz");
    let mut child = Command::new(profiler_bin())
        .args(["record", "--pid", &workload.pid().to_string()])
        .args(["--duration", &format!("{}ms", PHASE_MS + 4000)])
        .args(["--profile", kinds])
        .arg("-o")
        .arg(&folded)
        .arg("-o")
        .arg(&pprof)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the profiler");
    // The phase starts once the probes are attached ("recording ..." on
    // stderr); the whole stderr is the report.
    let stderr = child.stderr.take().expect("piped stderr");
    let (attached, started) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("recording ") {
                let _ = attached.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let ready = started.recv_timeout(Duration::from_secs(30));
    let truth = ready
        .is_ok()
        .then(|| workload.get(&format!("/run?ms={PHASE_MS}")));
    let status = child.wait().expect("wait for the profiler");
    let report = reader.join().expect("stderr reader");
    assert!(
        ready.is_ok(),
        "the profiler never said it was recording:\n{report}"
    );
    assert!(status.success(), "profiler failed:\n{report}");
    let truth = truth.expect("the phase ran");
    assert_eq!(truth.status, 200, "{}", truth.body);
    let several = kinds.contains(',');
    let read = |kind: &str| {
        if !kinds.split(',').any(|k| k == kind) {
            return Vec::new();
        }
        let path = if several {
            dir.join(format!("waits.{kind}.folded"))
        } else {
            folded.clone()
        };
        parse_folded(
            &std::fs::read_to_string(&path)
                .unwrap_or_else(|err| panic!("{}: {err}\n{report}", path.display())),
        )
    };
    Recorded {
        truth: truth.body,
        gomutex: read("gomutex"),
        goblock: read("goblock"),
        gomutex_pprof: if several {
            dir.join("waits.gomutex.pb.gz")
        } else {
            pprof.clone()
        },
        report,
    }
}

/// Checks made over every build, printed as they go and failed together.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, what: &str, ok: bool, text: String) {
        eprintln!("{what}: {text}{}", if ok { "" } else { "  <-- FAILED" });
        if !ok {
            self.0.push(format!("{what}: {text}"));
        }
    }

    fn assert_none(&self) {
        assert!(self.0.is_empty(), "{}", self.0.join("\n"));
    }
}

/// A value the program answered.
fn truth(recorded: &Recorded, key: &str) -> f64 {
    workload_value(&recorded.truth, key)
        .unwrap_or_else(|| panic!("no {key} in the program's answer: {}", recorded.truth))
}

/// gomutex against Go's own mutex profile: the delay through the unlocker,
/// the top stack the unlocker's, the waiting stacks the locker's, and
/// `go tool pprof` reading the same total.
fn check_gomutex(r: &Recorded, check: &mut impl FnMut(bool, String)) {
    // gomutex: charged to the unlocker, as Go's own profile.
    let ours = total_where(&r.gomutex, |s| s.has("main.unlockMu")) as f64;
    let gos = truth(r, "go_mutex_delay_ns");
    check(
        within(ours, gos, 15.0),
        format!(
            "gomutex delay through main.unlockMu {:.3} s, Go's own mutex profile {:.3} s (program measured {:.3} s in lockMu)",
            ours / 1e9,
            gos / 1e9,
            truth(r, "mutex_wait_ns") / 1e9
        ),
    );
    let top = r.gomutex.iter().max_by_key(|s| s.value);
    check(
        top.is_some_and(|s| s.has("main.unlockMu") && !s.has("main.lockMu")),
        format!("top gomutex stack: {:?}", top.map(|s| s.frames.join(";"))),
    );
    let tags = go_pprof(&["-tags"], &r.gomutex_pprof);
    let waiting: Vec<&str> = tags
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("waiting_stack"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .collect();
    check(
        waiting.iter().any(|l| l.contains("main.lockMu")),
        format!(
            "pprof waiting_stack names main.lockMu: {:?}",
            waiting.first()
        ),
    );
    let pprof_top = go_pprof(
        &["-top", "-sample_index=delay", "-unit=ns"],
        &r.gomutex_pprof,
    );
    let folded_total: u64 = r.gomutex.iter().map(|s| s.value).sum();
    let pprof_total = pprof_total(&pprof_top);
    check(
        within(pprof_total, folded_total as f64, 1.0),
        format!("go tool pprof delay total {pprof_total} ns, folded {folded_total} ns"),
    );
}

/// Nanoseconds of goblock under `[reason]` with `function` on the stack.
fn blocked(stacks: &[FoldedStack], reason: &str, function: &str) -> f64 {
    total_where(stacks, |s| {
        s.frames.get(1).map(String::as_str) == Some(reason) && s.has(function)
    }) as f64
}

#[test]
fn go_waits_read_as_gos_own_mutex_and_block_profiles() {
    require!(bpf(), go(), go_versions(4));
    let mut failures = Failures::default();
    for (what, binary) in go_builds("go_waits") {
        let dir = scratch_dir("go-waits");
        let r = record_phase(&binary, dir.path(), "gomutex,goblock");
        assert_nothing_left_loaded();
        let mut check = |ok: bool, text: String| failures.check(&what, ok, text);
        check(
            truth(&r, "checksum") == truth(&r, "expected_checksum"),
            format!(
                "checksum {} (expected {})",
                truth(&r, "checksum"),
                truth(&r, "expected_checksum")
            ),
        );

        check_gomutex(&r, &mut check);

        // goblock: by wait reason, as Go's block profile.
        for (reason, function, key) in [
            ("[chan receive]", "main.recvWork", "chan_wait_ns"),
            ("[sync.WaitGroup.Wait]", "main.waitGroupWork", "wg_wait_ns"),
            ("[sleep (idle)]", "main.sleepWork", "sleep_ns"),
        ] {
            let ours = blocked(&r.goblock, reason, function);
            let own = truth(&r, key);
            check(
                within(ours, own, 15.0),
                format!(
                    "goblock {reason} in {function}: {:.3} s, the program's own {key} {:.3} s",
                    ours / 1e9,
                    own / 1e9
                ),
            );
        }
        check(
            r.report.contains("contended locks") && r.report.contains("chan receive: "),
            "the report ranks the locks and the wait reasons".to_owned(),
        );
    }
    failures.assert_none();
}

/// The sum of every sample line of a metric (all its label sets).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn serve_gives_a_go_program_its_own_mutex_and_block_profiles_and_metrics() {
    require!(
        bpf(),
        go(),
        go_versions(1),
        program("promtool", &["--version"])
    );
    let mut builds = go_builds("go_waits");
    // The oldest normal build and the newest stripped one.
    builds = vec![builds.remove(0), builds.pop().expect("a build")];
    let mut failures = Failures::default();
    for (what, binary) in builds {
        let dir = scratch_dir("go-waits-serve");
        let workload = GoWorkload::start(&binary, &["0"]);
        let mut server = Server::on_loopback(workload.pid(), dir.path());
        let answer = workload.get(&format!("/run?ms={PHASE_MS}"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let own = |key: &str| {
            workload_value(&answer.body, key)
                .unwrap_or_else(|| panic!("no {key} in {}", answer.body))
        };
        // The metrics are published every second.
        std::thread::sleep(Duration::from_secs(2));
        let mut check = |ok: bool, text: String| failures.check(&what, ok, text);

        // /debug/pprof/mutex is Go's own kind: the delay through the
        // unlocker, as Go's own profile gave it.
        let mutex = go_pprof(
            &["-top", "-sample_index=delay", "-unit=ns"],
            server.url("/debug/pprof/mutex"),
        );
        let served = pprof_total(&mutex);
        let gos = own("go_mutex_delay_ns");
        check(
            within(served, gos, 15.0),
            format!(
                "/debug/pprof/mutex delay {:.3} s, Go's own through main.unlockMu {:.3} s",
                served / 1e9,
                gos / 1e9
            ),
        );
        let block_tags = go_pprof(&["-tags"], server.url("/debug/pprof/block"));
        check(
            block_tags.contains("wait_reason") && block_tags.contains("chan receive"),
            "/debug/pprof/block carries wait_reason labels with chan receive".to_owned(),
        );
        let futex = server.get("/debug/pprof/futex");
        check(
            futex.status == 200,
            format!("/debug/pprof/futex answers {}", futex.status),
        );

        let metrics = server.get("/metrics");
        let promtool = promtool_check_metrics(&metrics.body);
        check(promtool.is_ok(), format!("promtool: {promtool:?}"));
        let chan = metric_value(
            &metrics.body,
            "profiler_go_block_seconds_total{reason=\"chan receive\",class=\"contention\"}",
        )
        .unwrap_or(0.0);
        let chan_own = own("chan_wait_ns") / 1e9;
        check(
            within(chan, chan_own, 15.0),
            format!(
                "profiler_go_block_seconds_total chan receive {chan:.3} s, the program's own {chan_own:.3} s"
            ),
        );
        let sleep = metric_value(
            &metrics.body,
            "profiler_go_block_seconds_total{reason=\"sleep\",class=\"idle\"}",
        );
        check(
            sleep.is_some(),
            format!("sleeps are counted as idle: {sleep:?}"),
        );
        let mutex_seconds = metric_sum(&metrics.body, "profiler_go_mutex_wait_seconds_total");
        check(
            within(mutex_seconds, gos / 1e9, 15.0),
            format!(
                "profiler_go_mutex_wait_seconds_total {mutex_seconds:.3} s, Go's own {:.3} s",
                gos / 1e9
            ),
        );
        let (status, stderr) = server.stop();
        assert!(status.success(), "serve failed: {stderr}");
        assert_nothing_left_loaded();
    }
    failures.assert_none();
}

/// gomutex alone takes another, cheaper route (semacquire1 to readyWithTime,
/// no probe on every park): the same checks against Go's own profile.
#[test]
fn gomutex_alone_reads_as_gos_own_mutex_profile() {
    require!(bpf(), go(), go_versions(4));
    let mut failures = Failures::default();
    for (what, binary) in go_builds("go_waits") {
        let dir = scratch_dir("go-waits-mutex");
        let r = record_phase(&binary, dir.path(), "gomutex");
        assert_nothing_left_loaded();
        let mut check = |ok: bool, text: String| failures.check(&what, ok, text);
        check(
            r.report.contains("contended locks"),
            "the report ranks the locks".to_owned(),
        );
        check_gomutex(&r, &mut check);
    }
    failures.assert_none();
}

/// With `--no-go-block`, serve probes only contended locks for a Go
/// program (the cheap route): /debug/pprof/mutex is still Go's own, and
/// /debug/pprof/block says why it has nothing.
#[test]
fn serve_no_go_block_keeps_the_mutex_profile() {
    require!(bpf(), go(), go_versions(1));
    let (what, binary) = go_builds("go_waits").pop().expect("a build");
    let dir = scratch_dir("go-waits-serve-no-block");
    let workload = GoWorkload::start(&binary, &["0"]);
    let server = Server::on_loopback_with(workload.pid(), dir.path(), &["--no-go-block"]);
    let answer = workload.get("/run?ms=1000");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let block = server.get("/debug/pprof/block");
    assert_eq!(block.status, 404, "{what}: {}", block.body);
    assert!(block.body.contains("--no-go-block"), "{}", block.body);
    let gos = workload_value(&answer.body, "go_mutex_delay_ns").expect("go_mutex_delay_ns");
    let mutex = go_pprof(
        &["-top", "-sample_index=delay", "-unit=ns"],
        server.url("/debug/pprof/mutex"),
    );
    let served = pprof_total(&mutex);
    eprintln!(
        "{what}: serve --no-go-block: /debug/pprof/mutex {:.3} s, Go's own {:.3} s",
        served / 1e9,
        gos / 1e9
    );
    assert!(within(served, gos, 15.0));
    drop(server);
    assert_nothing_left_loaded();
}
