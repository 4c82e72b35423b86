//! The exports, read by the real clients: `go tool pprof` reads our pprof,
//! inferno our folded stacks, an XML parser our SVG, and speedscope's
//! published JSON schema checks our speedscope files.

use std::process::Command;

use tests::*;

#[test]
fn go_tool_pprof_reads_cpu_and_futex_profiles_and_agrees_with_folded() {
    require!(bpf(), go());
    let workload = build_workload("mutex_contend", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("pprof");
    let folded = dir.join("p.folded");
    let pprof = dir.join("p.pb.gz");
    let (report, _) = record_command(
        &[
            "--profile",
            "cpu,futex",
            "-o",
            folded.to_str().expect("UTF-8"),
            "-o",
            pprof.to_str().expect("UTF-8"),
        ],
        &workload,
        &["4", "100", "1000"],
    );
    assert_nothing_left_loaded();

    // cpu: samples agree with the folded file; functions named; main binary first.
    let cpu = dir.join("p.cpu.pb.gz");
    let top = go_pprof(&["-top", "-sample_index=samples"], &cpu);
    let folded_cpu =
        parse_folded(&std::fs::read_to_string(dir.join("p.cpu.folded")).expect("folded"));
    let folded_total: u64 = folded_cpu.iter().map(|s| s.value).sum();
    assert_eq!(pprof_total(&top) as u64, folded_total, "{top}");
    assert!(top.contains("hold_lock"), "{top}");
    let binary = workload
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(top.starts_with(&format!("File: {binary}")), "{top}");
    let cpu_ns = go_pprof(&["-top", "-sample_index=cpu", "-unit=ns"], &cpu);
    assert_eq!(
        pprof_total(&cpu_ns) as u64,
        folded_total * (1_000_000_000 / 99),
        "cpu nanoseconds are samples times the period: {cpu_ns}"
    );
    let traces = go_pprof(&["-traces"], &cpu);
    assert!(
        traces.contains("thread_id:") && traces.contains("hold_lock"),
        "{traces}"
    );

    // futex: delay agrees with the folded file to the nanosecond; the lock is a label.
    let futex = dir.join("p.futex.pb.gz");
    let delay = go_pprof(&["-top", "-sample_index=delay", "-unit=ns"], &futex);
    let folded_futex =
        parse_folded(&std::fs::read_to_string(dir.join("p.futex.folded")).expect("folded"));
    let folded_ns: u64 = folded_futex.iter().map(|s| s.value).sum();
    assert_eq!(pprof_total(&delay) as u64, folded_ns, "{delay}");
    assert!(delay.contains("hold_lock"), "{delay}");
    let contentions = go_pprof(&["-top", "-sample_index=contentions"], &futex);
    let waits: u64 = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("futex waits: "))
        .and_then(|v| v.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the report counts futex waits: {report}"));
    assert_eq!(pprof_total(&contentions) as u64, waits, "{contentions}");
    let traces = go_pprof(&["-traces"], &futex);
    assert!(
        traces.contains("lock:  g_lock") && traces.contains("hold_lock"),
        "{traces}"
    );
}

#[test]
fn flamegraph_svg_is_well_formed_and_folded_is_read_by_inferno() {
    require!(bpf());
    let workload = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("svg");
    let folded = dir.join("cpu.folded");
    let svg = dir.join("cpu.svg");
    record_command(
        &[
            "-o",
            folded.to_str().expect("UTF-8"),
            "-o",
            svg.to_str().expect("UTF-8"),
        ],
        &workload,
        &["2"],
    );
    let folded_text = std::fs::read_to_string(&folded).expect("folded written");
    let inferno = inferno_svg(&folded_text);
    assert!(inferno.contains("hot_three"));
    let svg_text = std::fs::read_to_string(&svg).expect("svg written");
    let mut reader = quick_xml::Reader::from_str(&svg_text);
    let mut elements = 0;
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(quick_xml::events::Event::Start(_) | quick_xml::events::Event::Empty(_)) => {
                elements += 1
            }
            Ok(_) => {}
            Err(err) => panic!("the SVG is not well-formed XML: {err}"),
        }
    }
    assert!(elements > 10, "the SVG has content");
    for name in ["hot_three", "hot_one", "main", "CPU of", "samples"] {
        assert!(svg_text.contains(name), "the SVG shows {name:?}");
    }
}

#[test]
fn speedscope_json_validates_against_the_published_schema() {
    require!(bpf(), python_module("jsonschema"));
    let workload = build_workload("mutex_contend", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("speedscope");
    let out = dir.join("p.json");
    record_command(
        &["--profile", "all", "-o", out.to_str().expect("UTF-8")],
        &workload,
        &["3", "60", "1000"],
    );
    let schema = workspace_root().join("tests/data/speedscope/file-format-schema.json");
    for kind in ["cpu", "offcpu", "futex"] {
        let file = dir.join(format!("p.{kind}.json"));
        let check = Command::new(PYTHON)
            .arg("-c")
            .arg(
                "import json, sys, jsonschema\n\
                 schema = json.load(open(sys.argv[1]))\n\
                 doc = json.load(open(sys.argv[2]))\n\
                 jsonschema.validate(doc, schema)\n\
                 p = doc['profiles'][0]\n\
                 assert p['type'] == 'sampled' and len(p['samples']) == len(p['weights']) > 0\n\
                 n = len(doc['shared']['frames'])\n\
                 assert all(0 <= i < n for s in p['samples'] for i in s)\n\
                 print(sum(p['weights']))",
            )
            .arg(&schema)
            .arg(&file)
            .output()
            .expect("run python3");
        assert!(
            check.status.success(),
            "{kind}: speedscope JSON does not validate: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

#[test]
fn an_unknown_extension_lists_the_formats() {
    let out = profiler(&["record", "--pid", "1", "-o", "profile.xyz"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot tell the format of profile.xyz")
            && stderr.contains("svg (.svg)")
            && stderr.contains("pprof (.pb.gz, .pprof)"),
        "{stderr}"
    );
    let out = profiler(&["record", "--pid", "1", "--format", "png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format \"png\""));
}

#[test]
fn top_sizes_the_report() {
    require!(bpf());
    let workload = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("top");
    let out = dir.join("cpu.folded");
    let (report, _) = record_command(
        &["--top", "1", "-o", out.to_str().expect("UTF-8")],
        &workload,
        &["1"],
    );
    let listed: Vec<&str> = report_after(&report, "top functions by self:")
        .into_iter()
        .take_while(|l| l.starts_with("    "))
        .collect();
    assert_eq!(listed.len(), 1, "--top 1 lists one function: {report}");
    assert!(listed[0].contains("hot_three"), "{report}");
}

/// A stripped binary's frames cannot be named: each shows its file and
/// file offset (`[unknown] cpu_split-...+0x12c2`), and the offsets are the
/// functions' own in the file (checked against the unstripped twin's symbol
/// table); pprof's mappings carry the real address range and file offset,
/// and its unnamed locations are addresses for a later symbolizer.
#[test]
fn unnamed_frames_say_where_they_are() {
    require!(bpf(), go());
    let named = build_workload("cpu_split", &["-O2", "-fno-omit-frame-pointer"]);
    let stripped = build_workload("cpu_split", &["-O2", "-fno-omit-frame-pointer", "-s"]);
    let dir = scratch_dir("unnamed");
    let folded = dir.join("s.folded");
    let pprof = dir.join("s.pb.gz");
    record_command(
        &[
            "--duration",
            "2s",
            "-o",
            folded.to_str().expect("UTF-8"),
            "-o",
            pprof.to_str().expect("UTF-8"),
        ],
        &stripped,
        &["2"],
    );
    assert_nothing_left_loaded();
    let file = stripped
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .expect("a file name");
    let stacks = parse_folded(&std::fs::read_to_string(&folded).expect("folded"));
    // The leaf offsets, by the unstripped twin's functions (same code).
    let nm = Command::new("nm").arg(&named).output().expect("run nm");
    let symbols: Vec<(u64, String)> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?;
            let name = f.next()?;
            (kind == "t" || kind == "T").then(|| (addr, name.to_owned()))
        })
        .collect();
    let function_at = |offset: u64| {
        symbols
            .iter()
            .filter(|(a, _)| *a <= offset)
            .max_by_key(|(a, _)| *a)
            .map(|(_, n)| n.clone())
    };
    let prefix = format!("[unknown] {file}+0x");
    let mut by_function: std::collections::BTreeMap<String, u64> = Default::default();
    for stack in &stacks {
        // The deepest user frame (kernel frames end in _[k]).
        let leaf = stack
            .frames
            .iter()
            .rev()
            .find(|f| !f.ends_with("_[k]"))
            .map(String::as_str)
            .unwrap_or_default();
        // A PIE's file offsets of .text equal its addresses in the file.
        let function = leaf
            .strip_prefix(&prefix)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .and_then(function_at)
            .unwrap_or_else(|| format!("other: {leaf}"));
        *by_function.entry(function).or_default() += stack.value;
    }
    eprintln!("leaf offsets by the unstripped twin's functions: {by_function:?}");
    let total: u64 = by_function.values().sum();
    let three = by_function.get("hot_three").copied().unwrap_or(0);
    let one = by_function.get("hot_one").copied().unwrap_or(0);
    assert!(
        (three + one) * 100 >= total * 90 && three > 2 * one,
        "the offsets name hot_three (3/4 of the CPU) and hot_one: {by_function:?}"
    );
    let raw = go_pprof(&["-raw"], &pprof);
    let mapping = raw
        .lines()
        .skip_while(|l| !l.starts_with("Mappings"))
        .find(|l| l.contains(&file))
        .unwrap_or_else(|| panic!("no mapping of {file}:\n{raw}"));
    let range = mapping.split_whitespace().nth(1).unwrap_or_default();
    let fields: Vec<u64> = range
        .split('/')
        .filter_map(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .collect();
    assert!(
        matches!(fields.as_slice(), [start, limit, _] if *start > 0 && limit > start),
        "the mapping has its address range: {mapping}"
    );
    assert!(
        !mapping.contains("[FN]"),
        "a mapping with unnamed locations is not marked symbolized: {mapping}"
    );
}
