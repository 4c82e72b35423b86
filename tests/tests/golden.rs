//! Golden files for every format, fed from fixture profiles built
//! in-process through the library (no kernel needed): folded stacks for
//! each kind, the flamegraph SVG, the pprof tables and the speedscope
//! document. A change in what a format writes shows as a diff here; accept
//! an intended one with `UPDATE_GOLDEN=1 cargo xtask test golden`.

use std::{rc::Rc, time::Duration};

use tests::check_golden;

use profiler::{
    formats::{self, Format, folded::FoldedOptions},
    model::{Frame, FrameKind, Profile, ProfileKind, Sample, WokenBy},
};

/// When the fixture recording began, in Unix nanoseconds.
const START_UNIX_NS: i64 = 1_700_000_000_000_000_000;

fn frame(name: &str, kind: FrameKind, addr: u64, line: Option<u32>) -> Frame {
    Frame {
        name: name.into(),
        kind,
        addr,
        module: Some("/opt/fixture/app".into()),
        file: line.map(|_| Rc::from("app.c")),
        line,
    }
}

fn user(name: &str, addr: u64, line: u32) -> Frame {
    frame(name, FrameKind::User, addr, Some(line))
}

fn kernel(name: &str, addr: u64) -> Frame {
    Frame {
        module: None,
        ..frame(name, FrameKind::Kernel, addr, None)
    }
}

fn sample(tid: u32, thread: &str, frames: Vec<Frame>, value: u64, count: u64) -> Sample {
    Sample {
        tid,
        thread_name: thread.into(),
        frames,
        value,
        count,
        ..Sample::default()
    }
}

/// A small profile of each kind, with every feature the formats show:
/// kernel and inlined frames, a lost stack, a folded exited thread, locks,
/// states and wakers, Go wait reasons and a Go mutex waiter's stack.
fn fixture(kind: ProfileKind) -> Profile {
    let main = || user("main", 0x1010, 40);
    let samples = match kind {
        ProfileKind::Cpu => vec![
            sample(
                101,
                "app",
                vec![main(), user("hot", 0x1100, 12), {
                    Frame {
                        kind: FrameKind::Inlined,
                        ..user("spin", 0x1100, 7)
                    }
                }],
                30,
                30,
            ),
            sample(
                102,
                "worker",
                vec![
                    main(),
                    user("write_log", 0x1200, 20),
                    kernel("ksys_write", 0xffff_1000),
                ],
                5,
                5,
            ),
            sample(
                1 << 31,
                "worker",
                vec![Frame::lost(
                    "[user stack lost: stack map collision]".to_owned(),
                )],
                1,
                1,
            ),
        ],
        ProfileKind::OffCpu => vec![
            Sample {
                state: Some("blocked"),
                waker: Some(WokenBy {
                    who: "woken by thread 102".to_owned(),
                    frames: vec![main(), user("release", 0x1300, 31)],
                }),
                ..sample(
                    101,
                    "app",
                    vec![
                        Frame::marker("[blocked]".to_owned()),
                        main(),
                        user("wait_for_work", 0x1400, 50),
                        kernel("schedule", 0xffff_2000),
                    ],
                    2_000_000,
                    4,
                )
            },
            Sample {
                state: Some("preempted"),
                ..sample(
                    102,
                    "worker",
                    vec![
                        Frame::marker("[preempted]".to_owned()),
                        main(),
                        user("hot", 0x1100, 12),
                    ],
                    300_000,
                    2,
                )
            },
        ],
        ProfileKind::Threads => vec![
            Sample {
                lock: Some("g_lock".into()),
                state: Some("sleeping"),
                ..sample(
                    101,
                    "app",
                    vec![
                        Frame::marker("[futex wait on g_lock]".to_owned()),
                        main(),
                        user("take_lock", 0x1700, 80),
                    ],
                    1,
                    1,
                )
            },
            Sample {
                state: Some("running"),
                ..sample(
                    102,
                    "worker",
                    vec![Frame::marker("[running]".to_owned())],
                    1,
                    1,
                )
            },
        ],
        ProfileKind::Goroutines => vec![
            sample(0, "app", vec![main(), user("waitRecv", 0x1800, 40)], 5, 5),
            sample(0, "app", vec![main()], 1, 1),
        ],
        ProfileKind::Futex => vec![Sample {
            lock: Some("g_lock".into()),
            waker: Some(WokenBy {
                who: "woken by thread 102".to_owned(),
                frames: vec![
                    main(),
                    user("hold_lock", 0x1500, 60),
                    user("release_lock", 0x1600, 70),
                    user("pthread_mutex_unlock", 0x7000, 1),
                ],
            }),
            ..sample(
                101,
                "app",
                vec![
                    Frame::marker("g_lock".to_owned()),
                    main(),
                    user("take_lock", 0x1700, 80),
                    user("pthread_mutex_lock", 0x7100, 1),
                ],
                9_000_000,
                3,
            )
        }],
        ProfileKind::GoBlock => vec![
            Sample {
                state: Some("contention"),
                reason: Some("chan receive".into()),
                waker: Some(WokenBy {
                    who: "made runnable by a goroutine".to_owned(),
                    frames: vec![main(), user("main.send", 0x1900, 90)],
                }),
                ..sample(
                    0,
                    "app",
                    vec![
                        Frame::marker("[chan receive]".to_owned()),
                        main(),
                        user("main.recv", 0x1a00, 95),
                        user("runtime.gopark", 0x7200, 1),
                    ],
                    7_000_000,
                    2,
                )
            },
            Sample {
                state: Some("idle"),
                reason: Some("sleep".into()),
                waker: Some(WokenBy {
                    who: "made runnable by the scheduler (network poller, timer or GC)".to_owned(),
                    frames: Vec::new(),
                }),
                ..sample(
                    0,
                    "app",
                    vec![
                        Frame::marker("[sleep (idle)]".to_owned()),
                        main(),
                        user("time.Sleep", 0x7300, 1),
                    ],
                    10_000_000,
                    1,
                )
            },
        ],
        ProfileKind::GoMutex => vec![Sample {
            lock: Some("main.mu".into()),
            state: Some("contention"),
            reason: Some("sync.Mutex.Lock".into()),
            waiting: Some(vec![
                main(),
                user("main.lockMu", 0x1b00, 100),
                user("sync.(*Mutex).Lock", 0x7400, 1),
            ]),
            ..sample(
                0,
                "app",
                vec![
                    Frame::marker("main.mu".to_owned()),
                    main(),
                    user("main.unlockMu", 0x1c00, 110),
                    user("sync.(*Mutex).Unlock", 0x7500, 1),
                ],
                4_000_000,
                3,
            )
        }],
    };
    Profile {
        kind,
        pid: 100,
        process_name: "app".to_owned(),
        frequency: 99,
        duration: Duration::from_secs(2),
        samples,
        executable: Some("/opt/fixture/app".into()),
        mappings: Vec::new(),
        per_process: false,
    }
}

fn written(format: Format, profile: &Profile, options: FoldedOptions) -> String {
    let mut out = Vec::new();
    formats::write(format, profile, options, START_UNIX_NS, &mut out).expect("write to a Vec");
    String::from_utf8(out).expect("a text format")
}

#[test]
fn folded_stacks_of_each_kind() {
    for kind in ProfileKind::ALL.into_iter().chain([
        ProfileKind::Threads,
        ProfileKind::Goroutines,
        ProfileKind::GoMutex,
        ProfileKind::GoBlock,
    ]) {
        let profile = fixture(kind);
        check_golden(
            &format!("fixture.{}.folded", kind.name()),
            &written(Format::Folded, &profile, FoldedOptions::default()),
        );
    }
    let per_thread = written(
        Format::Folded,
        &fixture(ProfileKind::Cpu),
        FoldedOptions { per_thread: true },
    );
    check_golden("fixture.cpu.per-thread.folded", &per_thread);
}

#[test]
fn flamegraph_svg() {
    let profile = fixture(ProfileKind::OffCpu);
    check_golden(
        "fixture.offcpu.svg",
        &written(Format::Svg, &profile, FoldedOptions::default()),
    );
}

#[test]
fn pprof_tables() {
    for kind in [
        ProfileKind::Cpu,
        ProfileKind::Futex,
        ProfileKind::Threads,
        ProfileKind::Goroutines,
        ProfileKind::GoMutex,
        ProfileKind::GoBlock,
    ] {
        let proto = formats::pprof::to_proto(&fixture(kind), START_UNIX_NS);
        check_golden(
            &format!("fixture.{}.pprof.txt", kind.name()),
            &format!("{proto:#?}\n"),
        );
    }
    // The gzipped file is what go tool pprof reads.
    let gz = written_bytes(Format::Pprof, &fixture(ProfileKind::Futex));
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
}

#[test]
fn speedscope_document() {
    let json = written(
        Format::Speedscope,
        &fixture(ProfileKind::OffCpu),
        FoldedOptions::default(),
    );
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    check_golden(
        "fixture.offcpu.speedscope.json",
        &format!("{}\n", serde_json::to_string_pretty(&value).expect("JSON")),
    );
}

fn written_bytes(format: Format, profile: &Profile) -> Vec<u8> {
    let mut out = Vec::new();
    formats::write(
        format,
        profile,
        FoldedOptions::default(),
        START_UNIX_NS,
        &mut out,
    )
    .expect("write to a Vec");
    out
}
