//! Bounded fuzzing of the profile readers that `profiler diff` opens files
//! with (`profiler::formats::read::parse`), run by the normal test suite
//! with no kernel: arbitrary bytes (plain, behind a gzip header, gzipped
//! whole or cut short) and structured near-misses of every format it reads
//! (folded stacks, Go goroutine dumps in their `debug=2` and `debug=1`
//! forms, pprof whose indices and ids point anywhere), each property a
//! fixed number of cases. This file owns the readers' robustness contract:
//! on any input `parse` returns rather than panics or hangs; an error names
//! the file it was given; and a profile it accepts holds one value per
//! sample type, none negative, and a default type that exists. What the
//! readers make of well-formed files is the unit tests' business, beside
//! the readers.

use std::{
    io::Write as _,
    sync::mpsc::{self, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use proptest::{
    collection::vec,
    option,
    prelude::*,
    sample::{Index, select},
    strategy::ValueTree as _,
    test_runner::{TestCaseError, TestRunner},
};
use prost::Message as _;

use profiler::{
    formats::{pprof::proto, read::folded::MAX_LINE},
    model::LoadedProfile,
};

/// Cases per property: about 2 s for the file in a release build, with
/// room on a slow machine. `PROPTEST_CASES` does not change them.
const CASES: u32 = 512;

/// What `parse` is given as the file's name; every error must carry it.
const ORIGIN: &str = "fuzz/input.prof";

/// Longer than any one parse of these inputs may take, even unoptimized:
/// past it, the reader is taken to hang.
const HANG: Duration = Duration::from_secs(20);

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // No `proptest-regressions/` files: a failure prints its input.
        failure_persistence: None,
        // Shrinking a hang waits `HANG` per step: keep it bounded.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------
// Running the reader

/// What `parse` did with an input that kept the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Accepted,
    /// Refused, with the error's whole chain.
    Rejected(String),
}

/// Parses `bytes` on a thread of its own (the default 2 MiB stack), so
/// that a panic is caught and a hang is bounded; `Err` tells how the
/// contract was broken.
fn parse_guarded(bytes: Vec<u8>, origin: &str) -> Result<Outcome, String> {
    let (tx, rx) = mpsc::channel();
    let name = origin.to_owned();
    // A `LoadedProfile` holds `Rc`s: it is judged where it was read.
    let reader = thread::Builder::new()
        .name("parse".into())
        .spawn(move || {
            let verdict = judge(profiler::formats::read::parse(&bytes, &name), &name);
            tx.send(verdict).ok();
        })
        .map_err(|err| format!("cannot start a thread to parse on: {err}"))?;
    match rx.recv_timeout(HANG) {
        Ok(verdict) => {
            reader.join().ok();
            verdict
        }
        Err(RecvTimeoutError::Timeout) => Err(format!(
            "parse did not return within {HANG:?}: it hangs on this input"
        )),
        Err(RecvTimeoutError::Disconnected) => {
            let why = match reader.join() {
                Ok(()) => "without a verdict".to_owned(),
                Err(payload) => payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "with a payload that is not text".to_owned()),
            };
            Err(format!("parse panicked: {why}"))
        }
    }
}

/// Checks a result against the contract.
fn judge(result: anyhow::Result<LoadedProfile>, origin: &str) -> Result<Outcome, String> {
    let profile = match result {
        Err(err) => {
            let message = format!("{err:#}");
            if !message.contains(origin) {
                return Err(format!("the error does not name {origin:?}: {message}"));
            }
            return Ok(Outcome::Rejected(message));
        }
        Ok(profile) => profile,
    };
    let types = profile.sample_types.len();
    if profile.origin != origin {
        return Err(format!("origin is {:?}, not {origin:?}", profile.origin));
    }
    if profile.default_type >= types {
        return Err(format!(
            "default_type is {}, but there are {types} sample types",
            profile.default_type
        ));
    }
    for (i, stack) in profile.stacks.iter().enumerate() {
        if stack.values.len() != types {
            return Err(format!(
                "stack {i} has {} values, but there are {types} sample types: {:?}",
                stack.values.len(),
                stack.values
            ));
        }
        if let Some(v) = stack.values.iter().find(|v| **v < 0) {
            return Err(format!(
                "stack {i} has a negative value {v} (frames {:?})",
                stack.frames
            ));
        }
    }
    Ok(Outcome::Accepted)
}

/// The property every case checks.
fn check(input: &Input) -> Result<Outcome, TestCaseError> {
    parse_guarded(input.bytes(), ORIGIN).map_err(TestCaseError::fail)
}

// ---------------------------------------------------------------------
// Inputs, and how their bytes reach the reader

/// A generated file before it is wrapped, and the wrapping.
#[derive(Clone)]
struct Input {
    plain: Vec<u8>,
    wrap: Wrap,
}

#[derive(Clone, Debug)]
enum Wrap {
    Plain,
    /// The gzip magic put before the bytes, which are not gzip.
    GzipMagic,
    Gzip,
    /// Gzipped, then cut at a point anywhere in the stream.
    GzipCut(Index),
    /// Cut at a point anywhere, as a file written partly.
    Cut(Index),
    /// One byte changed.
    Flip(Index, u8),
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Text as text, so that a failing case reads.
        match std::str::from_utf8(&self.plain) {
            Ok(text) if text.len() > 4096 => write!(
                f,
                "{:?} of {} bytes of text starting {:?}",
                self.wrap,
                text.len(),
                text.chars().take(200).collect::<String>()
            ),
            Ok(text) => write!(f, "{:?} of {text:?}", self.wrap),
            Err(_) => write!(f, "{:?} of {:?}", self.wrap, self.plain),
        }
    }
}

impl Input {
    fn bytes(&self) -> Vec<u8> {
        let plain = &self.plain;
        match &self.wrap {
            Wrap::Plain => plain.clone(),
            Wrap::GzipMagic => [&[0x1f, 0x8b][..], plain].concat(),
            Wrap::Gzip => gzip(plain),
            Wrap::GzipCut(at) => {
                let mut zipped = gzip(plain);
                zipped.truncate(at.index(zipped.len() + 1));
                zipped
            }
            Wrap::Cut(at) => plain[..at.index(plain.len() + 1)].to_vec(),
            Wrap::Flip(at, mask) => {
                let mut bytes = plain.clone();
                if !bytes.is_empty() {
                    let at = at.index(bytes.len());
                    bytes[at] ^= mask | 1;
                }
                bytes
            }
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(bytes)
        .expect("writing into a Vec does not fail");
    encoder.finish().expect("writing into a Vec does not fail")
}

/// How structured inputs are wrapped: mostly as they are, so that the
/// format's own checks are reached; sometimes gzipped, cut or damaged.
fn wrap() -> impl Strategy<Value = Wrap> {
    prop_oneof![
        12 => Just(Wrap::Plain),
        2 => Just(Wrap::Gzip),
        1 => any::<Index>().prop_map(Wrap::GzipCut),
        1 => any::<Index>().prop_map(Wrap::Cut),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, mask)| Wrap::Flip(at, mask)),
    ]
}

fn text_input(text: impl Strategy<Value = String>) -> impl Strategy<Value = Input> {
    (text, wrap()).prop_map(|(text, wrap)| Input {
        plain: text.into_bytes(),
        wrap,
    })
}

/// Lines joined with `\n` or `\r\n`, with or without a last line end.
fn join_lines(lines: Vec<String>, crlf: bool, last_end: bool) -> String {
    let end = if crlf { "\r\n" } else { "\n" };
    let mut text = lines.join(end);
    if last_end {
        text.push_str(end);
    }
    text
}

fn select_str(list: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(list).prop_map(str::to_owned)
}

// ---------------------------------------------------------------------
// Arbitrary bytes

fn arbitrary_bytes() -> impl Strategy<Value = Input> {
    // Prefixes that steer the bytes into each branch of the detection.
    const PREFIXES: &[&[u8]] = &[
        b"",
        b"",
        b"",
        b"goroutine profile: total 3\n",
        b"goroutine 1 [running]:\n",
        b"PID 7 (app) 2 threads\n",
        b"\x7fELF",
        b"<svg",
        b"[{",
        b"PK\x03\x04",
        b"\x0a\x04\x08\x01\x10\x02",
        b"a;b 1\n",
    ];
    let prefix = select(PREFIXES);
    let wrap = prop_oneof![
        4 => Just(Wrap::Plain),
        2 => Just(Wrap::GzipMagic),
        1 => Just(Wrap::Gzip),
        2 => any::<Index>().prop_map(Wrap::GzipCut),
    ];
    (prefix, vec(any::<u8>(), 0..1024), wrap).prop_map(|(prefix, bytes, wrap)| Input {
        plain: [prefix, &bytes].concat(),
        wrap,
    })
}

// ---------------------------------------------------------------------
// Folded stacks

fn folded_frame() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-zA-Z_][a-zA-Z0-9_:.]{0,12}",
        2 => "[a-z]{1,6}_\\[[kijwx]\\]",
        1 => "[a-z]{0,4}[ \t;]{1,3}[a-z]{0,4}",
        1 => Just("operator new(unsigned long)".to_owned()),
        1 => "\\PC{0,8}",
        1 => Just(String::new()),
    ]
}

fn folded_count() -> impl Strategy<Value = String> {
    prop_oneof![
        200 => (0u32..100_000).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => (i64::MIN..0).prop_map(|n| n.to_string()),
        1 => "[0-9]{19,40}",
        1 => "[0-9]{0,3}[a-zA-Z+.,_\\-][0-9]{0,3}",
        1 => Just(String::new()),
        1 => select_str(&[
            "-", "+5", "1e3", "0x10", "1.5", "\u{663}", "9223372036854775807",
            "9223372036854775808", "00000000000000000000001",
        ]),
    ]
}

fn folded_line() -> impl Strategy<Value = String> {
    prop_oneof![
        200 => (
            prop_oneof![40 => vec(folded_frame(), 1..8), 1 => vec(folded_frame(), 0..2)],
            prop_oneof![
                40 => select_str(&[" ", " ", " ", "\t", "  ", " \t"]),
                1 => Just(String::new()),
            ],
            folded_count(),
            select_str(&["", "", "", " ", "\t", "\r"]),
        )
            .prop_map(|(frames, sep, count, tail)| format!("{}{sep}{count}{tail}", frames.join(";"))),
        10 => Just(String::new()),
        5 => "[ \t]{1,4}",
        2 => "\\PC{0,40}",
        // Control bytes: the file is taken for protobuf.
        1 => "[^\n]{0,40}",
    ]
}

/// A line about `MAX_LINE` long, just under or over it.
fn long_folded_line() -> impl Strategy<Value = String> {
    (MAX_LINE - 4..MAX_LINE + 4).prop_map(|len| {
        let mut line = "f;".repeat(len / 2);
        line.truncate(len.saturating_sub(2));
        line.push_str(" 1");
        line
    })
}

fn folded_text() -> impl Strategy<Value = String> {
    (
        vec(folded_line(), 0..24),
        option::weighted(0.03, (long_folded_line(), any::<Index>())),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(mut lines, long, crlf, last_end)| {
            if let Some((line, at)) = long {
                lines.insert(at.index(lines.len() + 1), line);
            }
            join_lines(lines, crlf, last_end)
        })
}

// ---------------------------------------------------------------------
// Go goroutine dumps

fn go_function() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z]{1,6}(/[a-z]{1,6})?\\.(\\(\\*?[A-Z][a-z]{0,4}\\)\\.)?[a-zA-Z]{1,8}(\\.func[0-9])?",
        1 => "\\PC{0,12}",
    ]
}

fn go_arguments() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "(0x[0-9a-f]{1,8}(, 0x[0-9a-f]{1,8}){0,3})?",
        1 => Just("{0x1, 0x2}, ...".to_owned()),
        1 => "[(){}, 0-9a-fx.]{0,16}",
    ]
}

fn goid() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (1u64..1000).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => "-?[0-9]{20,25}",
        1 => "[a-z-]{0,3}",
    ]
}

fn go_file_line() -> impl Strategy<Value = String> {
    (
        "/[a-z]{1,6}(/[a-z]{1,6}){0,2}\\.(go|s)",
        any::<u32>(),
        any::<u16>(),
    )
        .prop_map(|(file, line, offset)| format!("\t{file}:{line} +0x{offset:x}"))
}

fn dump_line() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => (
            goid(),
            prop_oneof![
                4 => "[a-z ]{1,16}(, [0-9]{1,3} minutes)?(, locked to thread)?",
                1 => "\\PC{0,10}",
            ],
        )
            .prop_map(|(goid, state)| format!("goroutine {goid} [{state}]:")),
        60 => (go_function(), go_arguments()).prop_map(|(f, args)| format!("{f}({args})")),
        10 => go_function(),
        60 => go_file_line(),
        20 => (go_function(), option::of(goid())).prop_map(|(f, parent)| match parent {
            Some(goid) => format!("created by {f} in goroutine {goid}"),
            None => format!("created by {f}"),
        }),
        10 => Just("...additional frames elided...".to_owned()),
        10 => "\\[originating from goroutine [0-9]{1,3}\\]:",
        30 => Just(String::new()),
        10 => "\\PC{0,30}",
        // Control bytes: the file is taken for protobuf.
        1 => "[^\n]{0,30}",
    ]
}

fn dump_text() -> impl Strategy<Value = String> {
    (
        select_str(&[
            "",
            "",
            "goroutine 1 [running]:\n",
            "PID 7 (app) 2 threads\n  7 app\n\n",
            "PID 7 threads\n",
        ]),
        vec(dump_line(), 0..40),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lead, lines, crlf, last_end)| lead + &join_lines(lines, crlf, last_end))
}

/// `N @ 0x1 0x2`, which starts a stack.
fn counts_stack_line() -> impl Strategy<Value = String> {
    let count = prop_oneof![
        100 => (0u32..100).prop_map(|n| n.to_string()),
        2 => (i64::MIN..0).prop_map(|n| n.to_string()),
        1 => "[0-9]{19,30}",
        1 => "\\PC{0,6}",
        1 => select_str(&["", " 7 ", "+3", "9223372036854775807"]),
    ];
    (count, vec(any::<u32>(), 0..4)).prop_map(|(count, addrs)| {
        let addrs: Vec<String> = addrs.iter().map(|a| format!("{a:#x}")).collect();
        format!("{count} @ {}", addrs.join(" "))
    })
}

fn counts_line() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => counts_stack_line(),
        60 => (any::<u32>(), go_function(), any::<u16>(), go_file_line()).prop_map(
            |(pc, f, offset, file)| format!("#\t{pc:#x}\t{f}+0x{offset:x}{file}")
        ),
        2 => "#\t\\PC{0,20}",
        2 => Just("# labels: {\"a\":\"b\"}".to_owned()),
        10 => Just(String::new()),
        2 => "\\PC{0,30}",
        // Control bytes: the file is taken for protobuf.
        1 => "[^\n]{0,30}",
    ]
}

fn counts_text() -> impl Strategy<Value = String> {
    (
        select_str(&["", "", "", "\n", " \n\t"]),
        prop_oneof![
            4 => (0u32..1000).prop_map(|n| n.to_string()),
            1 => "\\PC{0,8}",
        ],
        // Mostly a stack first: a frame before one is an error.
        prop_oneof![20 => counts_stack_line().prop_map(Some), 1 => Just(None)],
        vec(counts_line(), 0..30),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lead, total, first, lines, crlf, last_end)| {
            let lines = first.into_iter().chain(lines).collect();
            let body = join_lines(lines, crlf, last_end);
            format!("{lead}goroutine profile: total {total}\n{body}")
        })
}

// ---------------------------------------------------------------------
// pprof

/// An index into a string table of `len` strings: mostly in range, else
/// anything.
fn string_index(len: usize) -> impl Strategy<Value = i64> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    prop_oneof![
        200 => 0..len.max(1),
        1 => any::<i64>(),
        1 => select(vec![-1, i64::MIN, i64::MAX, len, 1 << 32]),
    ]
}

/// An id that refers into a table of `len` entries whose ids are mostly
/// 1..=len (see `ids`): mostly one of those, else anything.
fn table_ref(len: usize) -> impl Strategy<Value = u64> {
    let len = u64::try_from(len).unwrap_or(u64::MAX);
    prop_oneof![
        200 => 1..=len.max(1),
        1 => any::<u64>(),
        1 => select(vec![0, len + 1, u64::MAX]),
    ]
}

/// The ids of a table of `len` entries: 1..=len, as pprof numbers them,
/// but now and then any id, a repeated one or 0.
fn ids(len: usize) -> impl Strategy<Value = Vec<u64>> {
    vec(
        prop_oneof![
            40 => Just(None),
            1 => any::<u64>().prop_map(Some),
            1 => (0..=len as u64).prop_map(Some),
        ],
        len,
    )
    .prop_map(|ids| (1..).zip(ids).map(|(i, id)| id.unwrap_or(i)).collect())
}

fn sample_value() -> impl Strategy<Value = i64> {
    prop_oneof![
        300 => 0i64..1_000_000,
        1 => any::<i64>(),
        1 => select(vec![-1, i64::MIN, i64::MAX]),
    ]
}

fn address() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..0x10_0000,
        1 => any::<u64>(),
    ]
}

/// The sizes of a profile's tables, which its indices and ids refer to.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    strings: usize,
    types: usize,
    mappings: usize,
    locations: usize,
    functions: usize,
}

fn value_type(strings: usize) -> impl Strategy<Value = proto::ValueType> {
    (string_index(strings), string_index(strings))
        .prop_map(|(r#type, unit)| proto::ValueType { r#type, unit })
}

fn sample(sizes: Sizes) -> impl Strategy<Value = proto::Sample> {
    let values = prop_oneof![60 => Just(sizes.types), 1 => 0usize..6]
        .prop_flat_map(|len| vec(sample_value(), len));
    let label = (
        string_index(sizes.strings),
        string_index(sizes.strings),
        any::<i64>(),
        string_index(sizes.strings),
    )
        .prop_map(|(key, str, num, num_unit)| proto::Label {
            key,
            str,
            num,
            num_unit,
        });
    (
        vec(table_ref(sizes.locations), 0..6),
        values,
        vec(label, 0..2),
    )
        .prop_map(|(location_id, value, label)| proto::Sample {
            location_id,
            value,
            label,
        })
}

fn mapping(strings: usize) -> impl Strategy<Value = proto::Mapping> {
    (
        (address(), address(), address()),
        string_index(strings),
        string_index(strings),
        any::<[bool; 4]>(),
    )
        .prop_map(
            |((memory_start, memory_limit, file_offset), filename, build_id, has)| proto::Mapping {
                id: 0,
                memory_start,
                memory_limit,
                file_offset,
                filename,
                build_id,
                has_functions: has[0],
                has_filenames: has[1],
                has_line_numbers: has[2],
                has_inline_frames: has[3],
            },
        )
}

fn location(sizes: Sizes) -> impl Strategy<Value = proto::Location> {
    let line = (table_ref(sizes.functions), any::<i64>())
        .prop_map(|(function_id, line)| proto::Line { function_id, line });
    (
        prop_oneof![8 => table_ref(sizes.mappings), 1 => Just(0)],
        address(),
        vec(line, 0..4),
    )
        .prop_map(|(mapping_id, address, line)| proto::Location {
            id: 0,
            mapping_id,
            address,
            line,
        })
}

fn function(strings: usize) -> impl Strategy<Value = proto::Function> {
    (
        string_index(strings),
        string_index(strings),
        string_index(strings),
        any::<i64>(),
    )
        .prop_map(
            |(name, system_name, filename, start_line)| proto::Function {
                id: 0,
                name,
                system_name,
                filename,
                start_line,
            },
        )
}

fn string_table() -> impl Strategy<Value = Vec<String>> {
    (
        any::<bool>(),
        vec(
            prop_oneof![
                6 => "[a-z][a-z._]{0,10}",
                1 => Just(String::new()),
                1 => "\\PC{0,6}",
                1 => ".{0,4}",
            ],
            0..10,
        ),
    )
        .prop_map(|(empty_first, mut strings)| {
            // pprof's first string is "", though a file may break that.
            if empty_first {
                strings.insert(0, String::new());
            }
            strings
        })
}

/// A profile with small tables whose indices and ids mostly meet; each of
/// them may point anywhere.
fn pprof_profile() -> impl Strategy<Value = proto::Profile> {
    (
        string_table(),
        prop_oneof![1 => Just(0usize), 20 => 1usize..4],
        0usize..3,
        0usize..6,
        0usize..6,
    )
        .prop_flat_map(|(strings, types, mappings, locations, functions)| {
            let sizes = Sizes {
                strings: strings.len(),
                types,
                mappings,
                locations,
                functions,
            };
            let n = sizes.strings;
            (
                Just(strings),
                vec(value_type(n), types),
                vec(sample(sizes), 0..8),
                (vec(mapping(n), mappings), ids(mappings)),
                (vec(location(sizes), locations), ids(locations)),
                (vec(function(n), functions), ids(functions)),
                (
                    prop_oneof![3 => Just(0), 1 => string_index(n)],
                    option::of(value_type(n)),
                    any::<[i64; 3]>(),
                    vec(string_index(n), 0..2),
                ),
            )
        })
        .prop_map(
            |(
                string_table,
                sample_type,
                sample,
                (mut mapping, mapping_ids),
                (mut location, location_ids),
                (mut function, function_ids),
                (default_sample_type, period_type, [time_nanos, duration_nanos, period], comment),
            )| {
                mapping
                    .iter_mut()
                    .zip(mapping_ids)
                    .for_each(|(m, id)| m.id = id);
                location
                    .iter_mut()
                    .zip(location_ids)
                    .for_each(|(l, id)| l.id = id);
                function
                    .iter_mut()
                    .zip(function_ids)
                    .for_each(|(f, id)| f.id = id);
                proto::Profile {
                    sample_type,
                    sample,
                    mapping,
                    location,
                    function,
                    string_table,
                    time_nanos,
                    duration_nanos,
                    period_type,
                    period,
                    comment,
                    default_sample_type,
                }
            },
        )
}

fn pprof_input() -> impl Strategy<Value = Input> {
    (pprof_profile(), wrap()).prop_map(|(profile, wrap)| Input {
        plain: profile.encode_to_vec(),
        wrap,
    })
}

// ---------------------------------------------------------------------
// The properties

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_keep_the_contract(input in arbitrary_bytes()) {
        check(&input)?;
    }

    #[test]
    fn folded_stacks_keep_the_contract(input in text_input(folded_text())) {
        check(&input)?;
    }

    #[test]
    fn goroutine_dumps_keep_the_contract(input in text_input(dump_text())) {
        check(&input)?;
    }

    #[test]
    fn goroutine_counts_keep_the_contract(input in text_input(counts_text())) {
        check(&input)?;
    }

    #[test]
    fn pprof_profiles_keep_the_contract(input in pprof_input()) {
        check(&input)?;
    }
}

// ---------------------------------------------------------------------
// Cases of their own

fn error_of(bytes: &[u8], origin: &str) -> String {
    match profiler::formats::read::parse(bytes, origin) {
        Ok(profile) => panic!(
            "{origin} was accepted ({} stacks); it must be refused",
            profile.stacks.len()
        ),
        Err(err) => format!("{err:#}"),
    }
}

#[test]
fn errors_name_the_file_and_line() {
    let err = error_of(b"a;b x\n", "base.folded");
    assert!(
        err.contains("base.folded") && err.contains("line 1"),
        "{err}"
    );
    let err = error_of(b"a;b 1\n\nc;d 2\nc;d\n", "new.folded");
    assert!(
        err.contains("new.folded") && err.contains("line 4"),
        "{err}"
    );
    // A negative goroutine count is refused like a negative folded count,
    // not read as a negative value.
    let err = error_of(
        b"goroutine profile: total 1\n-1 @ 0x1\n#\t0x1\tmain.main+0x1\t/x.go:1\n",
        "g.txt",
    );
    assert!(err.contains("g.txt") && err.contains("line 2"), "{err}");
}

#[test]
fn a_64_mib_line_is_refused_quickly() {
    // 64 MiB and 6 bytes, without a line end.
    let mut line = b"app;".repeat(16 << 20);
    line.extend_from_slice(b"main 1");
    let started = Instant::now();
    let outcome = parse_guarded(line, "huge.folded");
    let took = started.elapsed();
    match outcome {
        Ok(Outcome::Rejected(err)) => assert!(
            err.contains("huge.folded: line 1 is 67108870 bytes long"),
            "{err}"
        ),
        other => panic!("a 64 MiB line must be refused: {other:?}"),
    }
    // Linear work, some tens of milliseconds; the bound is for slow,
    // unoptimized builds.
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

/// Protobuf's groups nest without end, and so do parentheses in a Go
/// frame; neither may take the reader's stack (a thread's 2 MiB).
#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    const DEPTH: usize = 1 << 20;
    // Field 100, wire type 3 (start group): 803 as a varint.
    let open = [0xa3, 0x06];
    let groups = open.repeat(DEPTH);
    // At the top level, and inside a sample (field 2, length-delimited).
    let mut in_sample = vec![0x12];
    let mut len = groups.len();
    while len >= 0x80 {
        in_sample.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    in_sample.push(len as u8);
    in_sample.extend_from_slice(&groups);
    for bytes in [groups, in_sample] {
        for (bytes, origin) in [(gzip(&bytes), "deep.pb.gz"), (bytes, "deep.pb")] {
            match parse_guarded(bytes, origin) {
                Ok(Outcome::Rejected(err)) => assert!(
                    err.contains(origin) && err.contains("recursion limit"),
                    "{err}"
                ),
                other => panic!("{origin} must be refused: {other:?}"),
            }
        }
    }
    let frame = format!("main.f{}{}", "(".repeat(DEPTH), ")".repeat(DEPTH));
    let dump = format!("goroutine 1 [running]:\n{frame}\n\t/x.go:1 +0x1\n");
    assert_eq!(
        parse_guarded(dump.into_bytes(), "deep.txt"),
        Ok(Outcome::Accepted)
    );
}

/// The structured generators are worth their cases only if they reach
/// both sides: profiles the reader accepts and ones it refuses.
#[test]
fn generators_reach_both_outcomes() {
    fn shares(strategy: impl Strategy<Value = Input>) -> (usize, usize) {
        let mut runner = TestRunner::deterministic();
        let mut accepted = 0;
        let mut rejected = 0;
        for _ in 0..200 {
            let input = strategy
                .new_tree(&mut runner)
                .expect("these strategies never reject a value")
                .current();
            match check(&input) {
                Ok(Outcome::Accepted) => accepted += 1,
                Ok(Outcome::Rejected(_)) => rejected += 1,
                Err(err) => panic!("{input:?}: {err}"),
            }
        }
        (accepted, rejected)
    }
    let shares = [
        ("folded", shares(text_input(folded_text()))),
        ("debug=2", shares(text_input(dump_text()))),
        ("debug=1", shares(text_input(counts_text()))),
        ("pprof", shares(pprof_input())),
    ];
    for (name, (accepted, rejected)) in shares {
        eprintln!("{name}: {accepted} accepted, {rejected} refused of 200");
    }
    for (name, (accepted, rejected)) in shares {
        assert!(
            accepted >= 20 && rejected >= 20,
            "{name}: {accepted} accepted, {rejected} refused of 200"
        );
    }
}
