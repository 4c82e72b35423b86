//! Go's symbol table and build info read by hand (`profiler::go::pclntab`,
//! `profiler::go::buildinfo`), checked against the Go tools as the truth,
//! for every Go toolchain on the machine (1.19, 1.22, 1.25, 1.27; a missing
//! one is skipped): a small program is built normally, stripped
//! (`-s -w`) and externally linked, then
//!
//! - every `T` function `go tool nm` lists is found by name at its address
//!   (in the stripped build too: Go text addresses do not move with `-s -w`);
//! - at thousands of pcs the frames agree with `go tool addr2line` (its
//!   name is the real function, its file:line the innermost inlined one);
//! - the inlined frames agree with the program's own stacks
//!   (`runtime.Callers` gives one pc per logical frame, inlined ones
//!   included; `runtime.CallersFrames` names them);
//! - the text base and `runtime.firstmoduledata` / `go:func.*` found agree
//!   with `nm`, and the build info with `go version` and `-ldflags`;
//! - damaged tables give errors or answers, never panics.
//!
//! Debian's `/usr/bin/prometheus` (stripped, externally linked Go 1.19) is
//! read too. Nothing here needs root or eBPF.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use profiler::go::{
    buildinfo,
    pclntab::{GoFrame, Pclntab, TextBase, elide_type_args},
};
use tests::{scratch_dir, skip, workspace_root};

/// The test program: a `//go:noinline` function with an inlined call,
/// goroutines, a closure, a method and generics. `record` keeps the stack
/// of its caller; `main` prints, for every pc of every stack, the frames
/// Go itself expands there (`runtime.CallersFrames`, inlining included).
const PROGRAM: &str = r#"package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
)

var (
	mu     sync.Mutex
	stacks [][]uintptr
)

//go:noinline
func record() int {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(2, pcs)
	mu.Lock()
	stacks = append(stacks, pcs[:n])
	mu.Unlock()
	return n
}

type Counter struct{ n int }

func (c *Counter) Add(v int) int { // inlined
	c.n += v + record() // MARK:add
	return c.n
}

//go:noinline
func (c *Counter) Bump() int {
	return c.Add(2) // MARK:bump
}

func square(x int) int { // inlined into work
	return x*x + record() // MARK:square
}

//go:noinline
func work(x int) int {
	return square(x) + 1 // MARK:work
}

func Max[T int | float64](a, b T) T {
	if a > b {
		record()
		return a
	}
	return b
}

//go:noinline
func maxOf[T int | float64](a, b T) T {
	return Max(a, b)
}

func main() {
	var wg sync.WaitGroup
	c := &Counter{}
	total := 0
	results := make(chan int, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results <- work(i) + maxOf(i+3, 2)
		}(i)
	}
	wg.Wait()
	close(results)
	for r := range results {
		total += r
	}
	total += c.Bump() + int(maxOf(2.5, 1.5))
	seen := map[uintptr]bool{}
	for _, pcs := range stacks {
		fmt.Print("STACK")
		for _, pc := range pcs {
			fmt.Printf(" %x", pc)
		}
		fmt.Println()
		for _, pc := range pcs {
			if seen[pc] {
				continue
			}
			seen[pc] = true
			frames := runtime.CallersFrames([]uintptr{pc})
			for {
				f, more := frames.Next()
				fmt.Printf("PC %x\t%s\t%s\t%d\n", pc, f.Function, f.File, f.Line)
				if !more {
					break
				}
			}
		}
	}
	fmt.Fprintln(os.Stderr, "total", total)
}
"#;

/// A Go toolchain.
struct Toolchain {
    /// `1.19`, `1.22.10`, ...
    name: &'static str,
    go: PathBuf,
    /// `go1.22.10`, from `go version`.
    version: String,
}

/// The toolchains on this machine (`cargo xtask setup` installs them);
/// each missing one is skipped with a message.
fn toolchains(test: &str) -> Vec<Toolchain> {
    let pip = |v: &str| workspace_root().join(format!("target/go/{v}/bin/go"));
    let all = [
        ("1.19", PathBuf::from("/usr/bin/go")),
        ("1.22.10", pip("1.22.10")),
        ("1.25.5", pip("1.25.5")),
        ("1.27.3", pip("1.27.3")),
    ];
    let mut found = Vec::new();
    for (name, go) in all {
        let out = Command::new(&go)
            .arg("version")
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let version = text.split_whitespace().nth(2).unwrap_or("").to_owned();
                found.push(Toolchain { name, go, version });
            }
            _ => skip(
                test,
                &format!(
                    "Go {name} is missing at {} (cargo xtask setup installs it)",
                    go.display()
                ),
            ),
        }
    }
    found
}

impl Toolchain {
    /// `go ARGS` with a private build cache and no network.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.go);
        cmd.env("GO111MODULE", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOTELEMETRY", "off")
            .env("GOFLAGS", "")
            .env(
                "GOCACHE",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-pclntab-cache"),
            )
            .stdin(Stdio::null());
        cmd
    }

    /// Builds `source` into `out` with `ldflags`.
    fn build(&self, source: &Path, out: &Path, ldflags: &str) -> Result<(), String> {
        self.build_mode(source, out, "exe", ldflags)
    }

    /// Builds `source` into `out` with `-buildmode=MODE` and `ldflags`.
    fn build_mode(
        &self,
        source: &Path,
        out: &Path,
        mode: &str,
        ldflags: &str,
    ) -> Result<(), String> {
        let mut cmd = self.command();
        cmd.arg("build")
            .arg(format!("-buildmode={mode}"))
            .arg("-o")
            .arg(out);
        if !ldflags.is_empty() {
            cmd.arg(format!("-ldflags={ldflags}"));
        }
        let output = cmd
            .arg(source)
            .output()
            .map_err(|e| format!("run go: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "go build -ldflags={ldflags:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// `go tool nm BINARY`: name → (address, kind letter); the first of
    /// duplicate names.
    fn nm(&self, binary: &Path) -> BTreeMap<String, (u64, char)> {
        let out = self
            .command()
            .args(["tool", "nm"])
            .arg(binary)
            .output()
            .expect("run go tool nm");
        assert!(out.status.success(), "go tool nm {}", binary.display());
        let mut symbols = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "ADDR KIND NAME", the name being the rest of the line;
            // undefined symbols have no address and are left out.
            let mut fields = line.trim_start().splitn(3, ' ');
            let (Some(addr), Some(kind), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if let (Ok(addr), Some(kind)) = (u64::from_str_radix(addr, 16), kind.chars().next()) {
                symbols.entry(name.to_owned()).or_insert((addr, kind));
            }
        }
        symbols
    }

    /// `go tool addr2line BINARY` for `pcs`: (function, file, line) each;
    /// file and line are `None` where it knows none (it prints `:-1`, e.g.
    /// in the padding after a function's code).
    fn addr2line(&self, binary: &Path, pcs: &[u64]) -> Vec<Place> {
        let mut child = self
            .command()
            .args(["tool", "addr2line"])
            .arg(binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run go tool addr2line");
        let mut input = String::new();
        for pc in pcs {
            input.push_str(&format!("{pc:#x}\n"));
        }
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().expect("addr2line output");
        writer.join().expect("writer").expect("write pcs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .map(|pair| {
                let name = pair.first().copied().unwrap_or("").to_owned();
                let place = pair.get(1).copied().unwrap_or("");
                let (file, line) = place.rsplit_once(':').unwrap_or((place, "-1"));
                let file = (!file.is_empty()).then(|| file.to_owned());
                (name, file, line.parse::<u32>().ok())
            })
            .collect()
    }
}

/// A function name, file and line.
type Place = (String, Option<String>, Option<u32>);

/// A built binary, read.
struct Binary {
    path: PathBuf,
    table: Pclntab,
    info: buildinfo::BuildInfo,
    parse_ms: f64,
}

/// An ELF section: name, address, file offset, size.
#[derive(Debug, Clone)]
struct Section {
    name: String,
    address: u64,
    offset: usize,
    size: usize,
}

/// The sections of a 64-bit little-endian ELF file (the test's own small
/// reader: this crate does not depend on `object`).
fn sections(elf: &[u8]) -> Vec<Section> {
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().expect("8 bytes"));
    assert_eq!(
        &elf[..6],
        b"\x7fELF\x02\x01",
        "a 64-bit little-endian ELF file"
    );
    let (shoff, shentsize, shnum, shstrndx) = (
        u64_at(0x28) as usize,
        u16_at(0x3a),
        u16_at(0x3c),
        u16_at(0x3e),
    );
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 24) as usize;
    (0..shnum)
        .map(|i| {
            let h = header(i);
            let name_at = strtab + u32_at(h) as usize;
            let len = elf[name_at..].iter().position(|&b| b == 0).expect("NUL");
            Section {
                name: String::from_utf8_lossy(&elf[name_at..name_at + len]).into_owned(),
                address: u64_at(h + 16),
                offset: u64_at(h + 24) as usize,
                size: u64_at(h + 32) as usize,
            }
        })
        .collect()
}

fn section(elf: &[u8], name: &str) -> Option<Section> {
    sections(elf).into_iter().find(|s| s.name == name)
}

fn read_binary(path: &Path) -> Binary {
    let bytes = std::fs::read(path).expect("read the binary");
    let start = Instant::now();
    let table = Pclntab::parse_elf(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .unwrap_or_else(|| panic!("{} has a pclntab", path.display()));
    let parse_ms = start.elapsed().as_secs_f64() * 1e3;
    let info = buildinfo::read_elf(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .unwrap_or_else(|| panic!("{} has build info", path.display()));
    Binary {
        path: path.to_owned(),
        table,
        info,
        parse_ms,
    }
}

/// Every text symbol (`T` and `t`) of `nm` but the `runtime.text` and
/// `runtime.etext` markers is found at its address under its name:
/// `function(addr)` starts there and has the name, `functions_named` lists
/// it, and `function_by_name` gives it when the name is unique in the
/// table. The table spells two kinds of names differently from `nm`:
/// assembly functions lack nm's `.abi0` (their ABI wrapper has the same
/// name), up to Go 1.20 generic instances are all `pkg.F[...]`, and the
/// ELF symbol table writes Go's `·` as `.`.
/// In externally linked binaries only those in Go's text range are Go's
/// (there the `T`s are C and Go's functions are `t`).
/// Returns (`T` checked, `t` checked, of all those unique by name).
fn check_functions_against_nm(
    binary: &Binary,
    nm: &BTreeMap<String, (u64, char)>,
    external: bool,
) -> (usize, usize, usize) {
    let table = &binary.table;
    let (mut upper, mut lower) = (0, 0);
    let mut unique = 0;
    let mut missing = Vec::new();
    for (name, &(addr, kind)) in nm {
        let wanted = matches!(kind, 'T' | 't')
            && name != "runtime.text"
            && name != "runtime.etext"
            && (!external || table.text_range().contains(&addr));
        if !wanted {
            continue;
        }
        if kind == 'T' {
            upper += 1;
        } else {
            lower += 1;
        }
        let base = name.strip_suffix(".abi0").unwrap_or(name);
        let found = table.function(addr);
        let table_name = match &found {
            Some(f) if f.entry == addr && f.name == base => base.to_owned(),
            // nm (the ELF symbol table) writes Go's middle dot as '.'.
            Some(f) if f.entry == addr && f.name.replace('·', ".") == base => f.name.clone(),
            Some(f) if f.entry == addr && Some(&f.name) == elide_type_args(base).as_ref() => {
                f.name.clone()
            }
            other => {
                missing.push(format!("{name} at {addr:#x}: function() gives {other:?}"));
                continue;
            }
        };
        assert!(
            found.is_some_and(|f| f.end > f.entry),
            "{name}: empty range"
        );
        let named = table.functions_named(&table_name);
        if !named.iter().any(|f| f.entry == addr) {
            missing.push(format!("{name} at {addr:#x}: not in functions_named"));
        }
        if named.len() == 1 {
            unique += 1;
            let query = if table_name.contains('·') {
                &table_name
            } else {
                name
            };
            let by_name = table.function_by_name(query).map(|f| f.entry);
            if by_name != Some(addr) && base == name {
                missing.push(format!(
                    "{name} at {addr:#x}: function_by_name gives {by_name:#x?}"
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{}: {} of {} nm functions not found at their address: {:?}",
        binary.path.display(),
        missing.len(),
        upper + lower,
        &missing[..missing.len().min(20)]
    );
    (upper, lower, unique)
}

/// A sample of pcs: every function's entry, and a few inside.
fn sample_pcs(table: &Pclntab, limit: usize) -> Vec<u64> {
    let mut pcs = Vec::new();
    for f in table.functions() {
        let len = f.end - f.entry;
        pcs.push(f.entry);
        for k in [1, len / 3, len / 2, (2 * len) / 3, len.saturating_sub(1)] {
            if k > 0 && k < len {
                pcs.push(f.entry + k);
            }
        }
    }
    pcs.sort_unstable();
    pcs.dedup();
    if pcs.len() > limit {
        let step = pcs.len().div_ceil(limit);
        pcs = pcs.into_iter().step_by(step).collect();
    }
    pcs
}

/// What `addr2line` gives for a pc, from our frames: the real function's
/// name, the innermost file:line.
fn as_addr2line(frames: &[GoFrame]) -> Place {
    let outer = frames
        .first()
        .map(|f| f.function.clone())
        .unwrap_or_default();
    let inner = frames.last();
    (
        outer,
        inner.and_then(|f| f.file.clone()),
        inner.and_then(|f| f.line),
    )
}

/// The line of `MARK:<name>` in the program.
fn mark_line(name: &str) -> u32 {
    let mark = format!("MARK:{name}");
    PROGRAM
        .lines()
        .position(|l| l.contains(&mark))
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("no {mark}"))
}

/// Checks one toolchain; returns a summary line.
fn check_toolchain(go: &Toolchain, dir: &Path, test: &str) -> String {
    let source = dir.join(format!("prog-{}.go", go.name));
    std::fs::write(&source, PROGRAM).expect("write the program");
    let plain = dir.join(format!("prog-{}", go.name));
    let stripped = dir.join(format!("prog-{}-stripped", go.name));
    go.build(&source, &plain, "").expect("build");
    go.build(&source, &stripped, "-s -w")
        .expect("build stripped");
    let plain_bin = read_binary(&plain);
    let stripped_bin = read_binary(&stripped);
    let nm = go.nm(&plain);
    let version = &go.version;

    // Build info, stripped and not.
    for b in [&plain_bin, &stripped_bin] {
        assert_eq!(&b.info.go_version, version, "{}", b.path.display());
        assert_eq!(b.info.path.as_deref(), Some("command-line-arguments"));
        assert_eq!(b.info.setting("GOARCH"), Some("amd64"));
    }
    assert_eq!(stripped_bin.info.setting("-ldflags"), Some("-s -w"));
    assert_eq!(plain_bin.info.setting("-ldflags"), None);

    // Magic, text base, moduledata and go:func.* against nm.
    let minor = plain_bin.info.go_release().map_or(0, |(_, m)| m);
    let t = &plain_bin.table;
    assert_eq!(
        t.magic(),
        if minor <= 19 {
            0xffff_fff0
        } else {
            0xffff_fff1
        }
    );
    let text = nm.get("runtime.text").expect("nm has runtime.text").0;
    assert_eq!(t.text_range().start, text, "text base = runtime.text");
    let expected_base = if minor >= 26 {
        TextBase::ModuleData
    } else {
        TextBase::Header
    };
    assert_eq!(t.text_base(), expected_base);
    let md = t.moduledata().expect("moduledata found");
    assert_eq!(
        Some(md.address),
        nm.get("runtime.firstmoduledata").map(|s| s.0),
        "moduledata = runtime.firstmoduledata"
    );
    assert_eq!(md.text, text);
    let gofunc = nm
        .get("go:func.*")
        .or_else(|| nm.get("go.func.*"))
        .map(|s| s.0);
    assert_eq!(md.gofunc, gofunc, "gofunc = go:func.*");
    assert!(t.has_inline_tree());
    if let Some(etext) = nm.get("runtime.etext") {
        // The table ends at the last function's end (moduledata.maxpc),
        // which may fall short of runtime.etext (aligned up) since 1.25.
        let end = t.text_range().end;
        assert!(
            end <= etext.0 && etext.0 - end < 64 && md.etext == etext.0,
            "Go {}: table text end {end:#x}, moduledata etext {:#x}, runtime.etext {:#x}",
            go.name,
            md.etext,
            etext.0
        );
    }

    // Functions by name, plain and stripped.
    let checked = check_functions_against_nm(&plain_bin, &nm, false);
    let checked_stripped = check_functions_against_nm(&stripped_bin, &nm, false);
    assert_eq!(checked, checked_stripped);
    assert_eq!(
        stripped_bin.table.text_range(),
        plain_bin.table.text_range(),
        "text does not move with -s -w"
    );
    let count = plain_bin.table.function_count();
    let (upper, lower, unique) = checked;

    // Frames against addr2line, and the stripped build against the plain one.
    let pcs = sample_pcs(&plain_bin.table, 4000);
    let truth = go.addr2line(&plain, &pcs);
    assert_eq!(truth.len(), pcs.len(), "addr2line answered every pc");
    let start = Instant::now();
    let ours: Vec<Option<Vec<GoFrame>>> =
        pcs.iter().map(|&pc| plain_bin.table.frames(pc)).collect();
    let lookup_s = start.elapsed().as_secs_f64();
    let mut mismatches = Vec::new();
    let mut inlined_pcs = 0;
    for ((pc, truth), frames) in pcs.iter().zip(&truth).zip(&ours) {
        let frames = frames
            .as_ref()
            .unwrap_or_else(|| panic!("no frames at {pc:#x}"));
        if frames.len() > 1 {
            inlined_pcs += 1;
        }
        let mine = as_addr2line(frames);
        if &mine != truth {
            mismatches.push(format!("{pc:#x}: addr2line {truth:?}, ours {mine:?}"));
        }
        assert_eq!(
            stripped_bin.table.frames(*pc).as_ref(),
            Some(frames),
            "stripped build at {pc:#x}"
        );
    }
    assert!(
        mismatches.is_empty(),
        "Go {}: {} of {} pcs differ from addr2line: {:?}",
        go.name,
        mismatches.len(),
        pcs.len(),
        &mismatches[..mismatches.len().min(20)]
    );

    // Inlined frames against the program's own runtime.CallersFrames.
    let (stacks, expanded) = run_program(&plain);
    let mut logical_stacks = Vec::new();
    for pcs in &stacks {
        // Go's logical stack: what CallersFrames gives for each pc, in turn.
        let go_stack: Vec<Place> = pcs
            .iter()
            .flat_map(|pc| expanded.get(pc).cloned().unwrap_or_default())
            .collect();
        // Ours: the frames at each return address (Go looks up pc - 1),
        // innermost first. runtime.Callers itself (1.19 to 1.27) gives one
        // pc per logical frame: after the return address into inlined
        // code come the outer frames' call sites + 1, so the pcs after
        // one where we find k frames are its k - 1 outer frames.
        let mut ours: Vec<Place> = Vec::new();
        let mut i = 0;
        while let Some(&pc) = pcs.get(i) {
            let frames = plain_bin
                .table
                .frames(pc - 1)
                .unwrap_or_else(|| panic!("Go {}: no frames at {pc:#x}", go.name));
            ours.extend(
                frames
                    .iter()
                    .rev()
                    // Go prints generic instances as `pkg.F[...]`; the
                    // table has the full name.
                    .map(|f| {
                        let name =
                            elide_type_args(&f.function).unwrap_or_else(|| f.function.clone());
                        (name, f.file.clone(), f.line)
                    }),
            );
            i += frames.len();
        }
        assert_eq!(ours, go_stack, "Go {}: the stack {pcs:x?}", go.name);
        logical_stacks.push(go_stack);
    }
    assert!(!stacks.is_empty(), "the program printed its stacks");
    // The known inlined call sites: square into work, Counter.Add into
    // Bump, each at its marked line.
    let find_site = |inner: &str, outer: &str, inner_mark: &str, outer_mark: &str| {
        let (inner_line, outer_line) = (Some(mark_line(inner_mark)), Some(mark_line(outer_mark)));
        let found = logical_stacks.iter().any(|stack| {
            stack.windows(2).any(|w| {
                w[0].0 == inner && w[0].2 == inner_line && w[1].0 == outer && w[1].2 == outer_line
            })
        });
        assert!(
            found,
            "Go {}: {inner} inlined into {outer}: {logical_stacks:?}",
            go.name
        );
    };
    find_site("main.square", "main.work", "square", "work");
    find_site("main.(*Counter).Add", "main.(*Counter).Bump", "add", "bump");
    let work = plain_bin
        .table
        .function_by_name("main.work")
        .expect("main.work");
    let inlined_in_work = (work.entry..work.end).any(|pc| {
        plain_bin.table.frames(pc).is_some_and(|f| {
            f.len() == 2
                && f[0].function == "main.work"
                && !f[0].inlined
                && f[0].line == Some(mark_line("work"))
                && f[1].function == "main.square"
                && f[1].inlined
        })
    });
    assert!(
        inlined_in_work,
        "Go {}: main.square inlined in main.work",
        go.name
    );

    // Other link modes: externally linked (C start-up code before Go's
    // text, so the text base is not the .text section's), PIE (up to 1.25
    // the table is .data.rel.ro.gopclntab), externally linked PIE (up to
    // 1.25 it has no section of its own: it is searched for).
    let gcc = Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut variants = Vec::new();
    for (label, mode, ldflags, needs_gcc) in [
        ("external", "exe", "-linkmode=external", true),
        ("pie", "pie", "", false),
        ("external pie", "pie", "-linkmode=external", true),
    ] {
        if needs_gcc && !gcc {
            skip(test, &format!("Go {}: {label} build needs gcc", go.name));
            continue;
        }
        match check_variant(go, &source, dir, label, mode, ldflags) {
            Ok(summary) => variants.push(summary),
            Err(e) => skip(test, &format!("Go {}: {label} build failed: {e}", go.name)),
        }
    }
    let variants = variants.join("; ");

    // Damaged tables never panic.
    let damaged = damage(&stripped);

    format!(
        "Go {} ({version}): {count} functions; {upper} nm T and {lower} nm t functions found at their address under their name (plain and stripped; {unique} unique by name); \
         {} pcs agree with addr2line ({inlined_pcs} with inlined frames), stripped identical; {} stacks ({} logical frames) agree with runtime.CallersFrames; \
         text base {:?} = runtime.text {text:#x}; moduledata {:#x}, gofunc {:#x}; parse {:.2} ms plain / {:.2} ms stripped; \
         {:.0} frames() lookups/s; {variants}; {damaged}",
        go.name,
        pcs.len(),
        stacks.len(),
        logical_stacks.iter().map(Vec::len).sum::<usize>(),
        t.text_base(),
        md.address,
        md.gofunc.unwrap_or(0),
        plain_bin.parse_ms,
        stripped_bin.parse_ms,
        pcs.len() as f64 / lookup_s,
    )
}

/// Builds a link mode variant plain and stripped and checks the stripped
/// one against `nm` of the plain one: text base, moduledata, `go:func.*`,
/// every function, and the same frames as the plain one at sampled pcs.
fn check_variant(
    go: &Toolchain,
    source: &Path,
    dir: &Path,
    label: &str,
    mode: &str,
    ldflags: &str,
) -> Result<String, String> {
    let stem = format!("prog-{}-{}", go.name, label.replace(' ', "-"));
    let plain = dir.join(&stem);
    let stripped = dir.join(format!("{stem}-stripped"));
    go.build_mode(source, &plain, mode, ldflags)?;
    go.build_mode(source, &stripped, mode, &format!("{ldflags} -s -w"))?;
    let nm = go.nm(&plain);
    let (plain_bin, stripped_bin) = (read_binary(&plain), read_binary(&stripped));
    let bytes = std::fs::read(&stripped).expect("read");
    let has_section = section(&bytes, ".gopclntab")
        .or_else(|| section(&bytes, ".data.rel.ro.gopclntab"))
        .map_or("none (searched for)".to_owned(), |s| s.name);
    let text_section = section(&bytes, ".text").expect(".text").address;
    let t = &stripped_bin.table;
    let text = nm.get("runtime.text").expect("runtime.text").0;
    assert_eq!(
        t.text_range().start,
        text,
        "Go {} {label}: text base",
        go.name
    );
    // Data addresses move with -s -w: moduledata is checked in the plain
    // build (the stripped one must have found its own).
    let md = plain_bin.table.moduledata().expect("moduledata");
    assert_eq!(
        Some(md.address),
        nm.get("runtime.firstmoduledata").map(|s| s.0),
        "Go {} {label}: moduledata",
        go.name
    );
    let gofunc = nm
        .get("go:func.*")
        .or_else(|| nm.get("go.func.*"))
        .map(|s| s.0);
    assert_eq!(md.gofunc, gofunc, "Go {} {label}: gofunc", go.name);
    assert!(t.moduledata().is_some_and(|md| md.gofunc.is_some()));
    let external = ldflags.contains("external");
    let (upper, lower, _) = check_functions_against_nm(&stripped_bin, &nm, external);
    let pcs = sample_pcs(&plain_bin.table, 1000);
    for &pc in &pcs {
        assert_eq!(
            t.frames(pc),
            plain_bin.table.frames(pc),
            "Go {} {label}: frames at {pc:#x}",
            go.name
        );
    }
    Ok(format!(
        "{label}: table section {has_section}, runtime.text {text:#x} (.text section {text_section:#x}) from {:?}, {} nm functions and {} pcs agree",
        t.text_base(),
        upper + lower,
        pcs.len()
    ))
}

/// Runs the program: the pcs of each stack it recorded, and the frames
/// Go's `runtime.CallersFrames` gives for each pc alone (innermost first).
fn run_program(binary: &Path) -> (Vec<Vec<u64>>, BTreeMap<u64, Vec<Place>>) {
    let run = Command::new(binary)
        .stdin(Stdio::null())
        .output()
        .expect("run the program");
    assert!(run.status.success(), "the program ran: {run:?}");
    let mut stacks = Vec::new();
    let mut expanded: BTreeMap<u64, Vec<Place>> = BTreeMap::new();
    let hex = |s: &str| u64::from_str_radix(s, 16).expect("hex pc");
    for line in String::from_utf8_lossy(&run.stdout).lines() {
        if let Some(pcs) = line.strip_prefix("STACK") {
            stacks.push(pcs.split_whitespace().map(hex).collect());
        } else if let Some(rest) = line.strip_prefix("PC ") {
            let cols: Vec<&str> = rest.split('\t').collect();
            let [pc, function, file, line] = cols[..] else {
                panic!("bad line {line:?}");
            };
            expanded.entry(hex(pc)).or_default().push((
                function.to_owned(),
                Some(file.to_owned()),
                Some(line.parse().expect("line")),
            ));
        }
    }
    (stacks, expanded)
}

/// A small deterministic random generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Parses `binary` with its `.gopclntab` (and moduledata) damaged in many
/// ways: cut (the rest zeroed or 0xff) at many offsets, single bytes and
/// words set to random values. Each parse that succeeds is probed with
/// lookups. Panics fail the test; returns a summary.
fn damage(binary: &Path) -> String {
    let bytes = std::fs::read(binary).expect("read");
    let table = section(&bytes, ".gopclntab").expect(".gopclntab");
    let (start, size) = (table.offset, table.size);
    let good = Pclntab::parse_elf(&bytes)
        .expect("parses")
        .expect("a table");
    let pcs: Vec<u64> = sample_pcs(&good, 300);
    let names: Vec<String> = good.functions().step_by(50).map(|f| f.name).collect();
    let mut outcomes = [0usize; 3]; // error, parsed, none
    let mut probe = |data: &[u8]| {
        match Pclntab::parse_elf(data) {
            Err(_) => outcomes[0] += 1,
            Ok(None) => outcomes[2] += 1,
            Ok(Some(t)) => {
                outcomes[1] += 1;
                for &pc in &pcs {
                    let _ = t.frames(pc);
                    let _ = t.function(pc);
                }
                let _ = t.functions().count();
                for name in &names {
                    let _ = t.function_by_name(name);
                }
                let _ = t.text_range();
            }
        }
        let _ = buildinfo::read_elf(data);
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut copy = bytes.clone();
    // Cuts: the first 256 offsets (the header) and 150 spread over the rest.
    let cuts: Vec<usize> = (0..256.min(size))
        .chain((0..150).map(|i| 256 + i * (size.saturating_sub(256)) / 150))
        .collect();
    for &cut in &cuts {
        for fill in [0x00, 0xff] {
            copy[start + cut..start + size].fill(fill);
            probe(&copy);
            copy[start..start + size].copy_from_slice(&bytes[start..start + size]);
        }
    }
    // Random bytes and words: the header and function table more often.
    for i in 0..600 {
        let at = if i % 2 == 0 {
            (rng.next() as usize) % 4096.min(size)
        } else {
            (rng.next() as usize) % size
        };
        let word = rng.next().to_le_bytes();
        let len = if i % 3 == 0 { 4 } else { 1 };
        let end = (at + len).min(size);
        copy[start + at..start + end].copy_from_slice(&word[..end - at]);
        probe(&copy);
        copy[start + at..start + end].copy_from_slice(&bytes[start + at..start + end]);
    }
    // The moduledata words (set to random values, or nudged by a few
    // bytes), and the funcdata (inline trees) from gofunc on.
    let file_offset = |address: u64| {
        sections(&bytes).into_iter().find_map(|s| {
            let within = address >= s.address && address < s.address + s.size as u64;
            (within && s.address != 0).then(|| s.offset + (address - s.address) as usize)
        })
    };
    let md = good.moduledata().expect("moduledata");
    let md_at = file_offset(md.address).expect("moduledata in the file");
    let gofunc_at = md.gofunc.and_then(file_offset).expect("gofunc in the file");
    for i in 0..400 {
        let (at, value) = if i % 2 == 0 {
            let at = md_at + 8 * (rng.next() as usize % 48);
            let old = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
            let value = match i % 3 {
                0 => rng.next(),
                1 => old.wrapping_add(rng.next() % 64),
                _ => old.wrapping_sub(rng.next() % 64),
            };
            (at, value)
        } else {
            let span = 65536.min(bytes.len() - gofunc_at - 8);
            (gofunc_at + (rng.next() as usize % span), rng.next())
        };
        copy[at..at + 8].copy_from_slice(&value.to_le_bytes());
        probe(&copy);
        copy[at..at + 8].copy_from_slice(&bytes[at..at + 8]);
    }
    format!(
        "{} damaged tables: {} errors, {} parsed and probed, {} none, no panic",
        outcomes.iter().sum::<usize>(),
        outcomes[0],
        outcomes[1],
        outcomes[2]
    )
}

#[test]
fn pclntab_agrees_with_the_go_tools_for_every_toolchain() {
    let test = "go_pclntab::pclntab_agrees_with_the_go_tools_for_every_toolchain";
    let toolchains = toolchains(test);
    if toolchains.is_empty() {
        skip(test, "no Go toolchain found");
        return;
    }
    let dir = scratch_dir("go-pclntab");
    let mut summary = Vec::new();
    for go in &toolchains {
        summary.push(check_toolchain(go, &dir, test));
    }
    for line in &summary {
        println!("{line}");
    }
}

#[test]
fn debian_prometheus_stripped_go_1_19_is_read() {
    let test = "go_pclntab::debian_prometheus_stripped_go_1_19_is_read";
    let path = Path::new("/usr/bin/prometheus");
    if !path.exists() {
        skip(
            test,
            "/usr/bin/prometheus is missing (cargo xtask setup installs prometheus)",
        );
        return;
    }
    let bytes = std::fs::read(path).expect("read prometheus");
    assert!(section(&bytes, ".symtab").is_none(), "it is stripped");
    let start = Instant::now();
    let table = Pclntab::parse_elf(&bytes)
        .expect("parses")
        .expect("has a pclntab");
    let parse_ms = start.elapsed().as_secs_f64() * 1e3;
    let info = buildinfo::read_elf(&bytes).expect("reads").expect("is Go");
    assert!(info.go_version.starts_with("go1.19"), "{}", info.go_version);
    assert_eq!(
        info.path.as_deref(),
        Some("github.com/prometheus/prometheus/cmd/prometheus")
    );
    assert_eq!(info.setting("GOARCH"), Some("amd64"));

    let start = Instant::now();
    let main = table.function_by_name("main.main").expect("main.main");
    let by_name_ms = start.elapsed().as_secs_f64() * 1e3;
    let serve = table
        .function_by_name("net/http.(*Server).Serve")
        .expect("net/http.(*Server).Serve");
    let for_each_g = table
        .function_by_name("runtime.forEachG")
        .expect("runtime.forEachG");
    for f in [&main, &serve, &for_each_g] {
        assert_eq!(table.function(f.entry).as_ref(), Some(f));
        let frames = table.frames(f.entry).expect("frames");
        assert_eq!(frames[0].function, f.name);
    }
    let serve_frames = table.frames(serve.entry).expect("frames");
    let file_name = serve_frames[0].file.clone().unwrap_or_default();
    assert!(file_name.ends_with("net/http/server.go"), "{file_name}");
    // Go's text starts after the C start-up code (externally linked).
    let text_section = section(&bytes, ".text").expect(".text").address;
    assert!(table.text_range().start > text_section);
    assert_eq!(table.text_base(), TextBase::Header);
    let md = table.moduledata().expect("moduledata found");
    assert_eq!(md.text, table.text_range().start);
    assert!(md.gofunc.is_some() && table.has_inline_tree());

    // Timing: frames at pcs spread over all functions.
    let pcs = sample_pcs(&table, 20_000);
    let start = Instant::now();
    let mut frames = 0usize;
    let mut inlined = 0usize;
    for &pc in &pcs {
        let f = table.frames(pc).expect("every sampled pc is in a function");
        frames += f.len();
        inlined += usize::from(f.len() > 1);
    }
    let lookup_s = start.elapsed().as_secs_f64();
    let functions = table.functions().count();
    assert_eq!(functions, table.function_count());
    println!(
        "prometheus ({}): {functions} functions, text {:#x?}; parse {parse_ms:.1} ms, first lookup by name {by_name_ms:.1} ms; \
         {} frames() lookups in {:.1} ms = {:.0}/s ({frames} frames, {inlined} pcs with inlined frames); \
         main.main at {:#x}, net/http.(*Server).Serve at {:#x} ({file_name}:{:?})",
        info.go_version,
        table.text_range(),
        pcs.len(),
        lookup_s * 1e3,
        pcs.len() as f64 / lookup_s,
        main.entry,
        serve.entry,
        serve_frames[0].line,
    );
}
