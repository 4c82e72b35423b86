//! `profiler serve` against real clients: promtool checks /metrics, a real
//! Prometheus server scrapes it and answers a query about the workload's
//! lock, `go tool pprof` fetches profiles over HTTP; bad requests, the
//! target's exit and SIGTERM.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use tests::*;

#[test]
fn promtool_passes_the_metrics_and_prometheus_sees_the_lock() {
    require!(
        bpf(),
        program("promtool", &["--version"]),
        program("prometheus", &["--version"]),
    );
    let dir = scratch_dir("serve-prometheus");
    // 4 threads on g_lock, each holding it 1 ms, for far longer than the test.
    let binary = build_workload("mutex_contend", NO_FRAME_POINTER_FLAGS);
    let workload = start_workload(&binary, &["4", "1000000", "1000"]);
    let server = Server::on_loopback(workload.0.id(), &dir);
    std::thread::sleep(Duration::from_secs(2));

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    if let Err(why) = promtool_check_metrics(&metrics.body) {
        panic!("{why}\n--- metrics ---\n{}", metrics.body);
    }
    // What the help texts promise, and the lock by its variable name.
    assert!(
        metrics.body.contains("lock=\"other\""),
        "the bound is said in the help"
    );
    let waited = metric_value(
        &metrics.body,
        "profiler_futex_wait_seconds_total{lock=\"g_lock\"}",
    )
    .unwrap_or_else(|| panic!("no g_lock series: {}", metrics.body));
    eprintln!("/metrics after 2 s: g_lock waited {waited} s");
    assert!(waited > 0.5, "g_lock waited {waited} s in 2 s of 3 waiters");
    assert_eq!(metric_value(&metrics.body, "profiler_target_up"), Some(1.0));
    assert_eq!(
        metric_value(&metrics.body, "profiler_target_threads"),
        Some(5.0),
        "main and 4 workers"
    );
    for family in [
        "profiler_cpu_samples_total{thread=",
        "profiler_cpu_seconds_total{thread=",
        "profiler_offcpu_seconds_total{reason=\"voluntary\"}",
        "profiler_offcpu_seconds_total{reason=\"preempted\"}",
        "profiler_runqueue_delay_seconds_bucket{le=",
        "profiler_futex_waits_total{lock=\"g_lock\"}",
        "profiler_futex_wait_duration_seconds_bucket{le=\"0.001048576\"}",
        "profiler_dropped_events_total{reason=",
        "profiler_truncated_stacks_total{reason=\"depth_limit\"}",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
    ] {
        assert!(
            metrics.body.contains(family),
            "no {family} in:\n{}",
            metrics.body
        );
    }

    // A real Prometheus server scrapes it every second.
    let prometheus_port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: profiler\n    static_configs:\n      - targets: ['{}']\n",
            server.base.trim_start_matches("http://")
        ),
    )
    .expect("write prometheus.yml");
    let prometheus_log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
    let _prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(prometheus_log)
            .spawn()
            .expect("start prometheus"),
    );
    let query_url = format!("http://127.0.0.1:{prometheus_port}/api/v1/query");
    // The first value of a query through Prometheus's HTTP API.
    let query_value = |query: &str| -> Option<f64> {
        let answer = http_get_query(&query_url, &[("query", query)]).ok()?;
        let json: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
        json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let series = "profiler_futex_wait_seconds_total{lock=\"g_lock\"}";
    let query = format!("rate({series}[10s])");
    // Wait for 8 scrapes in the window, so the rate is not one drain's step.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rate = loop {
        std::thread::sleep(Duration::from_secs(1));
        let scrapes = query_value(&format!("count_over_time({series}[10s])")).unwrap_or(0.0);
        if scrapes >= 8.0
            && let Some(rate) = query_value(&query)
            && rate > 0.0
        {
            break rate;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus gave no positive rate for {query} within 60 s; its log:\n{}\nserver log:\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default(),
            server.stderr()
        );
    };
    eprintln!("Prometheus: {query} = {rate:.3}");
    // Truth: 4 threads, one holds the lock, so 3 wait nearly all the time.
    assert!(
        rate > 1.5 && rate < 3.6,
        "futex wait rate on g_lock {rate} s/s, expected about 3 waiting threads"
    );
    let up = http_get_query(&query_url, &[("query", "up{job=\"profiler\"}")]).expect("query up");
    assert!(
        up.body.contains("\"1\""),
        "Prometheus scrapes it: {}",
        up.body
    );

    // The mutex profile over HTTP names the lock's callers (when Go's pprof
    // is there to read it).
    match go() {
        Err(why) => eprintln!("not checking the mutex profile over HTTP: {why}"),
        Ok(()) => {
            // The waiters' delay (main, blocked in pthread_join the whole
            // time, is in the profile too: a wait under way, marked).
            let top = go_pprof(
                &["-top", "-sample_index=delay", "-focus=take_lock"],
                server.url("/debug/pprof/mutex?seconds=2"),
            );
            assert!(
                top.contains("take_lock") && top.contains("hold_lock"),
                "the mutex profile names the waiters: {top}"
            );
            let total = pprof_total(&top);
            eprintln!("go tool pprof, /debug/pprof/mutex?seconds=2: total delay {total} s");
            assert!(
                total > 2.0 && total < 7.0,
                "2 s of 3 waiters is about 6 s of delay, got {total}: {top}"
            );
        }
    }
}

#[test]
fn go_tool_pprof_fetches_a_cpu_profile_over_http() {
    require!(bpf(), go());
    let dir = scratch_dir("serve-pprof");
    let binary = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let workload = start_workload(&binary, &["60"]);
    let server = Server::on_loopback(workload.0.id(), &dir);
    let top = go_pprof(
        &["-top", "-sample_index=samples"],
        server.url("/debug/pprof/profile?seconds=2"),
    );
    assert!(top.contains("hot_three"), "{top}");
    assert!(top.contains("hot_one"), "{top}");
    // One busy thread at 99 Hz for 2 s: about 198 samples, not the whole
    // run since the server started.
    let total = pprof_total(&top);
    eprintln!("go tool pprof, /debug/pprof/profile?seconds=2: {total} samples");
    assert!(
        (140.0..=260.0).contains(&total),
        "2 s at 99 Hz of one busy thread is about 198 samples, got {total}: {top}"
    );
}

#[test]
fn bad_requests_get_4xx_and_one_profile_per_kind_runs_at_a_time() {
    require!(bpf());
    let dir = scratch_dir("serve-bad");
    let binary = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let workload = start_workload(&binary, &["60"]);
    let server = Server::on_loopback(workload.0.id(), &dir);
    for (path, status, says) in [
        ("/debug/pprof/profile?seconds=0", 400, "from 1 to 300"),
        ("/debug/pprof/profile?seconds=abc", 400, "whole number"),
        ("/debug/pprof/profile?seconds=301", 400, "from 1 to 300"),
        ("/debug/pprof/mutex?seconds=-1", 400, "whole number"),
        ("/debug/pprof/block?seconds=1.5", 400, "whole number"),
        ("/debug/pprof/mutex?debug=1", 400, "binary pprof"),
        ("/nope", 404, "/metrics"),
        ("/debug/pprof/heap", 404, "not a Go program"),
        ("/debug/pprof/allocs", 404, "/debug/pprof/profile"),
    ] {
        let answer = server.get(path);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(answer.body.contains(says), "{path}: {}", answer.body);
    }

    // A second CPU profile while one runs: 429; another kind still runs.
    let first_url = server.url("/debug/pprof/profile?seconds=3");
    let first = std::thread::spawn(move || http_get(&first_url));
    std::thread::sleep(Duration::from_millis(700));
    let second = server.get("/debug/pprof/profile?seconds=1");
    assert_eq!(second.status, 429, "{}", second.body);
    assert!(second.body.contains("one at a time"), "{}", second.body);
    // The first has about 2.3 s to go.
    assert!(
        ["done in about 2 s", "done in about 3 s"]
            .iter()
            .any(|says| second.body.contains(says)),
        "{}",
        second.body
    );
    let block = server.get("/debug/pprof/block?seconds=1");
    assert_eq!(
        block.status, 200,
        "another kind is not blocked: {}",
        block.body
    );
    let first = first
        .join()
        .expect("the first request's thread")
        .expect("the first request is answered");
    assert_eq!(first.status, 200, "{}", first.body);
    // Once it is done, the kind is free again.
    let again = server.get("/debug/pprof/profile?seconds=1");
    assert_eq!(again.status, 200, "{}", again.body);
}

#[test]
fn target_exit_leaves_the_server_up_and_sigterm_detaches() {
    require!(bpf());
    let dir = scratch_dir("serve-exit");
    let binary = build_workload("mutex_contend", NO_FRAME_POINTER_FLAGS);
    // 2 threads × 1500 rounds × 1 ms: about 3 s, then it exits.
    let mut workload = start_workload(&binary, &["2", "1500", "1000"]);
    let port = free_port();
    // Not loopback: allowed when asked for, with a warning.
    let mut server = Server::start(workload.0.id(), &format!("0.0.0.0:{port}"), &dir);
    assert!(
        server.stderr().contains("other hosts can reach"),
        "a non-loopback address is warned about: {}",
        server.stderr()
    );
    let healthy = server.get("/healthz");
    assert_eq!(healthy.status, 200, "{}", healthy.body);
    let json: serde_json::Value = serde_json::from_str(&healthy.body).expect("JSON health");
    assert_eq!(json["target"]["up"], true);
    assert!(
        json["programs"]
            .as_array()
            .is_some_and(|p| !p.is_empty() && p.iter().all(|p| p["attached"] == true)),
        "{json}"
    );
    let _ = workload.0.wait();

    let deadline = Instant::now() + Duration::from_secs(10);
    let gone = loop {
        let health = server.get("/healthz");
        if health.status == 503 {
            break health;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still says {} 10 s after the target exited: {}",
            health.status,
            health.body
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let json: serde_json::Value = serde_json::from_str(&gone.body).expect("JSON health");
    assert_eq!(json["target"]["up"], false, "{json}");
    assert_eq!(json["status"], "unavailable", "{json}");
    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(metric_value(&metrics.body, "profiler_target_up"), Some(0.0));
    assert_eq!(
        metric_value(&metrics.body, "profiler_programs_attached"),
        Some(0.0)
    );
    // What was collected is still there.
    let waited = metric_value(
        &metrics.body,
        "profiler_futex_wait_seconds_total{lock=\"g_lock\"}",
    )
    .unwrap_or(0.0);
    assert!(waited > 0.0, "{}", metrics.body);
    // Detached at the target's exit, while still serving.
    assert_nothing_left_loaded();
    let later = server.get("/debug/pprof/profile?seconds=1");
    assert_eq!(later.status, 503, "{}", later.body);
    assert!(later.body.contains("exited"), "{}", later.body);
    let cumulative = server.get("/debug/pprof/mutex");
    assert_eq!(cumulative.status, 200, "the data so far is still served");

    let (status, log) = server.stop();
    assert!(status.success(), "SIGTERM is a clean stop: {status}\n{log}");
    assert!(log.contains("stopped by SIGTERM"), "{log}");
    assert_nothing_left_loaded();
}

#[test]
fn serve_rejects_bad_input_with_a_sentence() {
    require!(bpf());
    let run = |args: &[&str]| {
        let output = profiler(args);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let own = std::process::id().to_string();
    let (code, err) = run(&["serve", "--pid", &own, "--listen", "nowhere"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--listen takes ADDRESS:PORT"), "{err}");
    let (code, err) = run(&["serve", "--pid", "abc"]);
    assert_eq!(code, Some(2), "{err}");
    // A port in use fails before anything is attached.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let sleeper = start_workload(
        &build_workload("sleeper", FRAME_POINTER_FLAGS),
        &["100", "100000"],
    );
    let pid = sleeper.0.id().to_string();
    let (code, err) = run(&["serve", "--pid", &pid, "--listen", &addr]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
    // A process that does not exist.
    let (code, err) = run(&["serve", "--pid", "4000000", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("4000000"), "{err}");
    assert_nothing_left_loaded();
}

#[test]
fn exited_threads_are_folded_so_thread_churn_does_not_grow_the_data() {
    require!(bpf(), go());
    let dir = scratch_dir("serve-churn");
    // About 100 short-lived "churner" threads a second.
    let binary = build_workload("thread_churn", FRAME_POINTER_FLAGS);
    let workload = start_workload(&binary, &["60"]);
    let server = Server::on_loopback(workload.0.id(), &dir);
    // The server folds exited threads every 10 s.
    std::thread::sleep(Duration::from_secs(12));
    let traces = go_pprof(&["-traces"], server.url("/debug/pprof/block"));
    let ids: std::collections::HashSet<&str> = traces
        .lines()
        .filter_map(|l| l.trim().strip_prefix("thread_id:"))
        .map(str::trim)
        .collect();
    let churner_samples = traces.matches("thread_name:  churner").count();
    eprintln!(
        "block profile after 12 s of churn: {} distinct thread ids, {churner_samples} churner samples",
        ids.len()
    );
    // About 1200 threads lived; those that exited before the fold at 10 s
    // are one group without an id, the ~200 since keep theirs until the
    // next fold.
    assert!(
        ids.len() < 400,
        "{} thread ids after folding: {traces}",
        ids.len()
    );
    assert!(
        churner_samples > 0,
        "the exited churners are still in the profile: {traces}"
    );
    assert!(traces.contains("churn_work"), "{traces}");
    // What was folded is still counted: the folded CPU samples add up with
    // the live ones to the metric.
    let metrics = server.get("/metrics");
    let churner_cpu = metric_value(
        &metrics.body,
        "profiler_cpu_samples_total{thread=\"churner\"}",
    )
    .unwrap_or(0.0);
    assert!(
        churner_cpu > 500.0,
        "12 s of 50 % of a core at 99 Hz is about 600 samples, got {churner_cpu}"
    );
}
