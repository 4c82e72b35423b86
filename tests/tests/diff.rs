//! `profiler diff` and `record --compare`: a workload whose hot function
//! is made twice as expensive between two recordings (an argument to
//! cpu_split) is named first and trips `--max-regression 15%`, while two
//! recordings of the unchanged workload pass the same gate; golden files
//! of the text table, the JSON and the gates' lines with their exit
//! statuses; and every kind of malformed input gets exit status 2 with one
//! error naming the file and the line or field.

use std::{
    path::{Path, PathBuf},
    process::Output,
};

use prost::Message as _;
use tests::*;

/// What one `profiler diff` did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(output: Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn diff(args: &[&str]) -> Run {
    let mut all = vec!["diff"];
    all.extend_from_slice(args);
    run(profiler(&all))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Samples per second: about 2,000 samples in a 4 s recording, so that a
/// share's sampling noise (1.4 points for hot_one's change) is well below
/// the 15 points the slower hot_one adds, even on a busy machine.
const FREQUENCY: &str = "499";

/// Records `cpu_split 4 FACTOR` as `NAME.pb.gz` and `NAME.folded`.
fn record_split(workload: &Path, dir: &Path, name: &str, factor: &str) -> (PathBuf, PathBuf) {
    let pprof = dir.join(format!("{name}.pb.gz"));
    let folded = dir.join(format!("{name}.folded"));
    record_command(
        &[
            "--frequency",
            FREQUENCY,
            "-o",
            path_str(&pprof),
            "-o",
            path_str(&folded),
        ],
        workload,
        &["4", factor],
    );
    (pprof, folded)
}

/// The first function row of the text table.
fn first_row(table: &str) -> String {
    let mut lines = table
        .lines()
        .skip_while(|l| !l.starts_with("Functions that changed"));
    lines.next();
    lines.next();
    lines
        .next()
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("")
        .to_owned()
}

#[test]
fn a_doubled_hot_function_is_named_first_and_trips_the_gate() {
    require!(bpf());
    let workload = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("diff-split");
    // hot_one's share is 25% with factor 1, 40% with factor 2.
    let (base_pb, base_folded) = record_split(&workload, dir.path(), "base", "1");
    let (same_pb, same_folded) = record_split(&workload, dir.path(), "same", "1");
    let (slow_pb, slow_folded) = record_split(&workload, dir.path(), "slow", "2");
    assert_nothing_left_loaded();

    for (base, same, slow) in [
        (&base_pb, &same_pb, &slow_pb),
        (&base_folded, &same_folded, &slow_folded),
    ] {
        let svg = dir.path().join("diff.svg");
        let regressed = diff(&[
            path_str(base),
            path_str(slow),
            "--max-regression",
            "15%",
            "-o",
            path_str(&svg),
        ]);
        eprintln!("{}{}", regressed.stdout, regressed.stderr);
        assert_eq!(regressed.code, 1, "the gate trips: {}", regressed.stderr);
        assert_eq!(
            first_row(&regressed.stdout),
            "hot_one",
            "{}",
            regressed.stdout
        );
        assert!(
            regressed
                .stderr
                .lines()
                .any(|l| l
                    .starts_with("profiler: gate tripped: --max-regression 15%: hot_one: self")),
            "{}",
            regressed.stderr
        );
        let svg = std::fs::read_to_string(&svg).expect("the differential flamegraph");
        assert!(svg.contains("hot_one") && svg.contains("Differential"));
        let mut reader = quick_xml::Reader::from_str(&svg);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(err) => panic!("the SVG is not well-formed XML: {err}"),
            }
        }

        let unchanged = diff(&[path_str(base), path_str(same), "--max-regression", "15%"]);
        eprintln!("{}{}", unchanged.stdout, unchanged.stderr);
        assert_eq!(unchanged.code, 0, "no gate trips: {}", unchanged.stderr);

        // The JSON says the same, by numbers.
        let json = diff(&[path_str(base), path_str(slow), "--format", "json"]);
        assert_eq!(json.code, 0, "no gates given: {}", json.stderr);
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
        let hot_one = doc["functions"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["name"] == "hot_one"))
            .expect("hot_one in the JSON");
        let (b, n) = (
            hot_one["self"]["base"].as_f64().unwrap_or(0.0),
            hot_one["self"]["new"].as_f64().unwrap_or(0.0),
        );
        eprintln!("hot_one self share: {b:.1}% -> {n:.1}% (truth 25% -> 40%)");
        assert!(
            (b - 25.0).abs() < 7.0 && (n - 40.0).abs() < 7.0,
            "{b} -> {n}"
        );
    }

    // `record --compare`: the same comparison right after a recording.
    let compared = run(std::process::Command::new(profiler_bin())
        .args(["record", "--frequency", FREQUENCY])
        .args(["-o", path_str(&dir.path().join("again.folded"))])
        .args(["--compare", path_str(&base_pb), "--max-regression", "15%"])
        .arg("--")
        .arg(&workload)
        .args(["4", "2"])
        .output()
        .expect("run the profiler"));
    assert_eq!(compared.code, 1, "{}", compared.stderr);
    assert!(
        compared.stderr.contains("Compared with"),
        "{}",
        compared.stderr
    );
    assert!(
        compared
            .stderr
            .contains("gate tripped: --max-regression 15%: hot_one"),
        "{}",
        compared.stderr
    );
    let compared = run(std::process::Command::new(profiler_bin())
        .args(["record", "--frequency", FREQUENCY])
        .args(["-o", path_str(&dir.path().join("again.folded"))])
        .args([
            "--compare",
            path_str(&base_folded),
            "--max-regression",
            "15%",
        ])
        .arg("--")
        .arg(&workload)
        .args(["4", "1"])
        .output()
        .expect("run the profiler"));
    assert_eq!(compared.code, 0, "{}", compared.stderr);
    assert_nothing_left_loaded();
}

/// Whether `perf` can record here.
fn perf() -> Result<(), String> {
    program("perf", &["--version"])
}

#[test]
fn perf_folded_by_inferno_is_a_baseline_for_our_recording() {
    require!(bpf(), perf());
    let workload = build_workload("cpu_split", FRAME_POINTER_FLAGS);
    let dir = scratch_dir("diff-perf");
    let data = dir.path().join("perf.data");
    let recorded = std::process::Command::new("perf")
        .args(["record", "-F", FREQUENCY, "-g", "-o", path_str(&data), "--"])
        .arg(&workload)
        .args(["4", "1"])
        .output()
        .expect("run perf record");
    assert!(
        recorded.status.success(),
        "perf record: {}",
        String::from_utf8_lossy(&recorded.stderr)
    );
    let script = std::process::Command::new("perf")
        .args(["script", "-i", path_str(&data)])
        .output()
        .expect("run perf script");
    assert!(script.status.success(), "perf script failed");
    // `perf script | inferno-collapse-perf`, through inferno's library.
    let mut folded = Vec::new();
    inferno::collapse::Collapse::collapse(
        &mut inferno::collapse::perf::Folder::default(),
        &script.stdout[..],
        &mut folded,
    )
    .expect("inferno collapses perf's output");
    let perf_folded = dir.path().join("perf.folded");
    std::fs::write(&perf_folded, &folded).expect("write");

    let (ours, _) = record_split(&workload, dir.path(), "ours", "1");
    let json = diff(&[
        path_str(&perf_folded),
        path_str(&ours),
        "--format",
        "json",
        "--top",
        "0",
    ]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    for (function, truth) in [("hot_one", 25.0), ("hot_three", 75.0)] {
        let row = doc["functions"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["name"] == function))
            .unwrap_or_else(|| panic!("{function} is in both: {}", json.stdout));
        let (perf, ours) = (
            row["self"]["base"].as_f64().unwrap_or(0.0),
            row["self"]["new"].as_f64().unwrap_or(0.0),
        );
        eprintln!("{function}: perf {perf:.1}%, ours {ours:.1}% (truth {truth}%)");
        assert!(
            (perf - truth).abs() < 5.0 && (ours - truth).abs() < 5.0,
            "{perf} {ours}"
        );
    }
    let unchanged = diff(&[
        path_str(&perf_folded),
        path_str(&ours),
        "--max-regression",
        "15%",
    ]);
    assert_eq!(
        unchanged.code, 0,
        "{}{}",
        unchanged.stdout, unchanged.stderr
    );
    assert_nothing_left_loaded();
}

fn data(name: &str) -> String {
    workspace_root()
        .join("tests/data/diff")
        .join(name)
        .display()
        .to_string()
}

/// The golden files hold paths relative to the workspace.
fn relative(text: &str) -> String {
    text.replace(&format!("{}/", workspace_root().display()), "")
}

#[test]
fn the_table_json_and_gates_match_their_golden_files() {
    let (base, new) = (data("base.folded"), data("new.folded"));
    let table = diff(&[&base, &new]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    check_golden("diff/table.txt", &relative(&table.stdout));

    let json = diff(&[&base, &new, "--format", "json", "--top", "5"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    check_golden("diff/diff.json", &relative(&json.stdout));

    let absolute = diff(&[&base, &new, "--absolute", "--top", "4"]);
    assert_eq!(absolute.code, 0, "{}", absolute.stderr);
    check_golden("diff/absolute.txt", &relative(&absolute.stdout));

    // parse_json doubled: its total share grew by 14 points (36.1% ->
    // 58.8%, and 2x raw), beyond noise; gc shrank.
    let gated = diff(&[
        &base,
        &new,
        "--fail-on",
        "total:parse_*>+5pp",
        "--fail-on",
        "self:gc>+1%",
        "--fail-on",
        "self:*>+10%",
        "--max-regression",
        "50%",
    ]);
    assert_eq!(gated.code, 1, "{}", gated.stderr);
    check_golden("diff/gates.stderr", &relative(&gated.stderr));

    let holds = diff(&[&base, &new, "--fail-on", "total:db_query>+1pp"]);
    assert_eq!(holds.code, 0, "{}", holds.stderr);

    let (g1, g2) = (data("goroutines1.txt"), data("goroutines2.txt"));
    let sites = diff(&[&g1, &g2, "--fail-on", "goroutines:main.notify*>+100"]);
    assert_eq!(sites.code, 1, "{}", sites.stderr);
    check_golden("diff/goroutines.txt", &relative(&sites.stdout));
    assert!(
        sites.stderr.contains(
            "gate tripped: goroutines:main.notify*>+100: main.notify: 0 goroutines, then 150 (+150)"
        ),
        "{}",
        sites.stderr
    );
    let sites = diff(&[&g1, &g2, "--fail-on", "goroutines:main.startPool>+0"]);
    assert_eq!(sites.code, 0, "{}", sites.stderr);
}

/// Writes `bytes` to a file in `dir` and diffs it against a good
/// profile: exit status 2, and the error names the file and what is wrong.
fn assert_refused(dir: &Path, name: &str, bytes: &[u8], says: &[&str]) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the input");
    let good = data("base.folded");
    for (base, new) in [
        (good.as_str(), path_str(&path)),
        (path_str(&path), good.as_str()),
    ] {
        let refused = diff(&[base, new]);
        assert_eq!(refused.code, 2, "{name}: {}", refused.stderr);
        assert!(
            refused.stdout.is_empty(),
            "{name}: no partial result: {}",
            refused.stdout
        );
        let line = refused.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "one error line: {line}");
        assert!(
            line.contains(path_str(&path)),
            "{name}: names the file: {line}"
        );
        for phrase in says {
            assert!(line.contains(phrase), "{name}: says {phrase:?}: {line}");
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, bytes).expect("gzip");
    gz.finish().expect("gzip")
}

/// A small valid pprof cpu profile, as a message to spoil.
fn cpu_pprof() -> profiler::formats::pprof::proto::Profile {
    use profiler::formats::pprof::proto;
    let strings = ["", "samples", "count", "cpu", "nanoseconds", "main", "work"];
    proto::Profile {
        sample_type: vec![
            proto::ValueType { r#type: 1, unit: 2 },
            proto::ValueType { r#type: 3, unit: 4 },
        ],
        sample: vec![proto::Sample {
            location_id: vec![2, 1],
            value: vec![5, 50_000_000],
            label: vec![],
        }],
        location: (1..=2)
            .map(|id| proto::Location {
                id,
                line: vec![proto::Line {
                    function_id: id,
                    line: 1,
                }],
                ..Default::default()
            })
            .collect(),
        function: (1..=2)
            .map(|id| proto::Function {
                id,
                name: 4 + id as i64,
                ..Default::default()
            })
            .collect(),
        string_table: strings.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

#[test]
fn malformed_input_is_refused_with_status_2_naming_file_and_line() {
    let dir = scratch_dir("diff-malformed");
    let d = dir.path();
    assert_refused(
        d,
        "nocount.folded",
        b"a;b 1\na;b;c\n",
        &["line 2 has no count"],
    );
    assert_refused(
        d,
        "word.folded",
        b"a;b 1\na;c ten\n",
        &["line 2", "\"ten\" is not a whole number"],
    );
    assert_refused(
        d,
        "negative.folded",
        b"a;b -3\n",
        &["line 1", "\"-3\" is negative"],
    );
    let mut huge = b"a;".repeat(1 << 20);
    huge.extend_from_slice(b"b 1\n");
    assert_refused(
        d,
        "huge.folded",
        &huge,
        &["line 1 is", "more than the 1 MiB"],
    );
    let gz = gzip(&b"a;b 1\na;c 2\n".repeat(500));
    assert_refused(
        d,
        "cut.pb.gz",
        &gz[..gz.len() / 2],
        &["gzip stream is truncated"],
    );
    assert_refused(
        d,
        "svg.folded",
        b"<?xml version=\"1.0\"?><svg></svg>",
        &["is an SVG image"],
    );
    assert_refused(d, "empty.folded", b"", &["is empty"]);

    let mut p = cpu_pprof();
    p.function[0].name = 77;
    assert_refused(
        d,
        "badstring.pb.gz",
        &gzip(&p.encode_to_vec()),
        &["function[0].name is string 77, but the string table has 7 strings"],
    );
    let mut p = cpu_pprof();
    p.sample[0].location_id.push(9);
    assert_refused(
        d,
        "badloc.pprof",
        &p.encode_to_vec(),
        &["sample[0] refers to location 9"],
    );
    let mut p = cpu_pprof();
    p.sample[0].value.push(1);
    assert_refused(
        d,
        "values.pprof",
        &p.encode_to_vec(),
        &["sample[0] has 3 values"],
    );
    let mut bytes = cpu_pprof().encode_to_vec();
    bytes.truncate(bytes.len() - 3);
    assert_refused(d, "cut.pprof", &bytes, &["protobuf does not decode"]);

    // Two good profiles of different kinds, and options that do not apply.
    let cpu = d.join("cpu.pprof");
    std::fs::write(&cpu, cpu_pprof().encode_to_vec()).expect("write");
    let mut heap = cpu_pprof();
    heap.string_table[1] = "inuse_objects".to_owned();
    heap.string_table[3] = "inuse_space".to_owned();
    heap.string_table[4] = "bytes".to_owned();
    let heap_path = d.join("heap.pprof");
    std::fs::write(&heap_path, heap.encode_to_vec()).expect("write");
    let kinds = diff(&[path_str(&cpu), path_str(&heap_path)]);
    assert_eq!(kinds.code, 2, "{}", kinds.stderr);
    assert!(
        kinds.stderr.contains("is a cpu profile and"),
        "{}",
        kinds.stderr
    );
    assert!(
        kinds
            .stderr
            .contains("a heap profile: compare two profiles of the same kind")
    );
    let index = diff(&[
        path_str(&cpu),
        path_str(&cpu),
        "--sample-index",
        "alloc_space",
    ]);
    assert_eq!(index.code, 2);
    assert!(
        index
            .stderr
            .contains("has no such sample type; it has samples/count, cpu/nanoseconds"),
        "{}",
        index.stderr
    );
    let gate = diff(&[path_str(&cpu), path_str(&cpu), "--fail-on", "self:main>5"]);
    assert_eq!(gate.code, 2);
    assert!(gate.stderr.contains("needs --absolute"), "{}", gate.stderr);
    let goroutines = diff(&[
        path_str(&cpu),
        path_str(&cpu),
        "--fail-on",
        "goroutines:x>5",
    ]);
    assert_eq!(goroutines.code, 2);
    assert!(
        goroutines
            .stderr
            .contains("give goroutine profiles or dumps"),
        "{}",
        goroutines.stderr
    );
    let missing = diff(&[path_str(&cpu), "/nonexistent/new.pb.gz"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("cannot read /nonexistent/new.pb.gz: no such file"),
        "{}",
        missing.stderr
    );
}
