//! A goroutine snapshot shown as Go itself shows one: the text of
//! `/debug/pprof/goroutine?debug=2` (every goroutine, its state, how long
//! it has waited, its stack, where it was created) and `debug=1` (stacks
//! counted), the goroutine profile (`goroutine/count`, Go's sample type),
//! and the goroutines counted by creation site, for leak hunting. As in
//! Go's own dumps, the runtime's goroutines are left out.

use std::{collections::HashMap, fmt::Write as _, rc::Rc, time::Duration};

use super::{
    goroutines::{GoRuntime, GoStatus, Goroutine, GoroutineSnapshot},
    pclntab::GoFrame,
};
use crate::model::{Frame, Profile, ProfileKind, Sample};

/// Nanoseconds in a minute, for Go's ", N minutes".
const MINUTE_NS: i64 = 60_000_000_000;

/// The goroutines Go's own dumps show (not the runtime's).
pub fn program_goroutines(snapshot: &GoroutineSnapshot) -> impl Iterator<Item = &Goroutine> {
    snapshot.goroutines.iter().filter(|g| !g.system)
}

/// What a goroutine is doing, in Go's words: its wait reason when it
/// waits, else its status.
fn doing(goroutine: &Goroutine) -> String {
    match (&goroutine.wait_reason, goroutine.status) {
        (Some(reason), GoStatus::Waiting | GoStatus::Leaked) => reason.clone(),
        _ => goroutine.status.name().to_owned(),
    }
}

/// What a goroutine's header says in brackets: its wait reason (or
/// status), and how many minutes it has waited when that is a minute or
/// more.
pub fn state(goroutine: &Goroutine, nanotime: i64) -> String {
    let mut state = doing(goroutine);
    if let Some(since) = goroutine.wait_since {
        let minutes = nanotime.saturating_sub(since) / MINUTE_NS;
        if minutes >= 1 {
            let _ = write!(state, ", {minutes} minutes");
        }
    }
    state
}

/// How long a goroutine has waited, when the runtime recorded it.
pub fn waited(goroutine: &Goroutine, nanotime: i64) -> Option<Duration> {
    let since = goroutine.wait_since?;
    u64::try_from(nanotime.saturating_sub(since))
        .ok()
        .map(Duration::from_nanos)
}

/// Whether Go's dumps show a frame (its `showfuncinfo` at the default
/// traceback level): not the runtime's unexported functions, except
/// `runtime.gopanic`, nor the wrappers `go f(x)` compiles to (`.gowrapN`,
/// Go 1.22+).
fn shown(function: &str) -> bool {
    if function == "runtime.gopanic" {
        return true;
    }
    if let Some((_, last)) = function.rsplit_once('.')
        && let Some(n) = last.strip_prefix("gowrap")
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    match function.strip_prefix("runtime.") {
        Some(rest) => rest.chars().next().is_some_and(char::is_uppercase),
        None => function.contains('.'),
    }
}

/// The offset Go prints after a frame's file:line: the return address (or
/// pc) past its function's entry.
fn offset(runtime: &GoRuntime, pc: u64) -> Option<u64> {
    let at = pc.checked_sub(runtime.bias())?;
    let function = runtime.binary().table.function(at.saturating_sub(1))?;
    (at > function.entry).then(|| at - function.entry)
}

/// A frame's file:line as Go prints it.
fn position(frame: &GoFrame) -> String {
    match (&frame.file, frame.line) {
        (Some(file), Some(line)) => format!("{file}:{line}"),
        (Some(file), None) => file.clone(),
        _ => "?".to_owned(),
    }
}

/// The text of `/debug/pprof/goroutine?debug=2`.
pub fn debug2(runtime: &GoRuntime, snapshot: &GoroutineSnapshot) -> String {
    let mut out = String::new();
    for goroutine in program_goroutines(snapshot) {
        let _ = writeln!(
            out,
            "goroutine {} [{}]:",
            goroutine.goid,
            state(goroutine, snapshot.nanotime)
        );
        if goroutine.stack.is_empty() {
            let _ = writeln!(
                out,
                "\tgoroutine running on other thread; stack unavailable"
            );
        }
        for &pc in &goroutine.stack {
            for frame in runtime.frames(&[pc]) {
                if !shown(&frame.function) {
                    continue;
                }
                let (args, offset) = match (frame.inlined, offset(runtime, pc)) {
                    (true, _) | (false, None) => ("(...)", String::new()),
                    (false, Some(off)) => ("()", format!(" +{off:#x}")),
                };
                let _ = writeln!(
                    out,
                    "{}{args}\n\t{}{offset}",
                    frame.function,
                    position(&frame)
                );
            }
        }
        if let Some((pc, site)) = goroutine
            .created_by
            .and_then(|pc| Some((pc, runtime.creation_site(pc)?)))
        {
            let _ = write!(out, "created by {}", site.function);
            if let Some(parent) = goroutine.parent_goid {
                let _ = write!(out, " in goroutine {parent}");
            }
            let offset = offset(runtime, pc).map_or(String::new(), |o| format!(" +{o:#x}"));
            let _ = writeln!(out, "\n\t{}{offset}", position(&site));
        }
        let _ = writeln!(out);
    }
    out
}

/// The text of `/debug/pprof/goroutine?debug=1`: identical stacks counted,
/// most first.
pub fn debug1(runtime: &GoRuntime, snapshot: &GoroutineSnapshot) -> String {
    let mut counts: HashMap<&[u64], usize> = HashMap::new();
    for goroutine in program_goroutines(snapshot) {
        *counts.entry(&goroutine.stack).or_default() += 1;
    }
    let total: usize = counts.values().sum();
    let mut stacks: Vec<(&[u64], usize)> = counts.into_iter().collect();
    stacks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut out = format!("goroutine profile: total {total}\n");
    for (stack, count) in stacks {
        let pcs: Vec<String> = stack.iter().map(|pc| format!("{pc:#x}")).collect();
        let _ = writeln!(out, "{count} @ {}", pcs.join(" "));
        for &pc in stack {
            for frame in runtime.frames(&[pc]) {
                let _ = writeln!(out, "#\t{pc:#x}\t{}\t{}", frame.function, position(&frame));
            }
        }
        let _ = writeln!(out);
    }
    out
}

/// The goroutine profile: one sample per distinct stack, its value the
/// goroutines on it (as Go's `/debug/pprof/goroutine` writes it), of the
/// process `process_name` running `executable`.
pub fn profile(
    runtime: &GoRuntime,
    snapshot: &GoroutineSnapshot,
    process_name: &str,
    executable: Option<&str>,
) -> Profile {
    let module: Option<Rc<str>> = executable.map(Rc::from);
    let mut by_stack: HashMap<&[u64], u64> = HashMap::new();
    for goroutine in program_goroutines(snapshot) {
        *by_stack.entry(&goroutine.stack).or_default() += 1;
    }
    let mut samples: Vec<Sample> = by_stack
        .into_iter()
        .map(|(stack, count)| {
            // Root first, one address's frames outermost first.
            let mut frames = Vec::new();
            for &pc in stack.iter().rev() {
                let mut at_pc: Vec<Frame> = runtime
                    .frames(&[pc])
                    .into_iter()
                    .map(|f| f.into_frame(pc, module.clone()))
                    .collect();
                at_pc.reverse();
                frames.extend(at_pc);
            }
            Sample {
                tid: 0,
                thread_name: Rc::from(process_name),
                frames,
                value: count,
                count,
                ..Sample::default()
            }
        })
        .collect();
    samples.sort_by(|a, b| {
        b.value
            .cmp(&a.value)
            .then_with(|| a.frames.len().cmp(&b.frames.len()))
    });
    Profile {
        kind: ProfileKind::Goroutines,
        pid: runtime.pid(),
        process_name: process_name.to_owned(),
        frequency: 0,
        duration: Duration::ZERO,
        samples,
        executable: module,
        mappings: Vec::new(),
        per_process: false,
    }
}

/// Where goroutines were created: the function holding the `go`
/// statement, and the statement's file:line (`main.main` for the main
/// goroutine).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    pub function: String,
    pub position: String,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.function, self.position)
    }
}

/// The goroutines of one creation site at one moment.
#[derive(Debug, Clone, Default)]
pub struct SiteCount {
    /// Their goids.
    pub goids: Vec<u64>,
    /// How many are blocked on channels, select or sync (waiting for
    /// another goroutine, as a leaked one waits forever).
    pub blocked: usize,
    /// The longest any has waited, and on what.
    pub oldest: Option<(Duration, String)>,
    /// How many the runtime itself marked leaked (Go 1.26+).
    pub leaked: usize,
}

/// Wait reasons of goroutines waiting for another goroutine: what a
/// leaked goroutine waits on forever.
const BLOCKED_ON_OTHERS: &[&str] = &[
    "chan receive",
    "chan send",
    "chan receive (nil chan)",
    "chan send (nil chan)",
    "select",
    "select (no cases)",
    "semacquire",
    "sync.Mutex.Lock",
    "sync.RWMutex.Lock",
    "sync.RWMutex.RLock",
    "sync.WaitGroup.Wait",
    "sync.Cond.Wait",
];

/// The program's goroutines counted by creation site.
pub fn by_site(runtime: &GoRuntime, snapshot: &GoroutineSnapshot) -> HashMap<Site, SiteCount> {
    let mut sites: HashMap<Site, SiteCount> = HashMap::new();
    let mut names: HashMap<u64, Site> = HashMap::new();
    for goroutine in program_goroutines(snapshot) {
        let pc = goroutine.created_by.unwrap_or(0);
        let site = names
            .entry(pc)
            .or_insert_with(|| match runtime.creation_site(pc) {
                Some(frame) => Site {
                    position: position(&frame),
                    function: frame.function,
                },
                None => Site {
                    function: "main goroutine".to_owned(),
                    position: "runtime.main".to_owned(),
                },
            })
            .clone();
        let count = sites.entry(site).or_default();
        count.goids.push(goroutine.goid);
        let reason = goroutine.wait_reason.as_deref().unwrap_or("");
        if BLOCKED_ON_OTHERS.contains(&reason) {
            count.blocked += 1;
        }
        if goroutine.status == GoStatus::Leaked {
            count.leaked += 1;
        }
        if let Some(waited) = waited(goroutine, snapshot.nanotime)
            && count.oldest.as_ref().is_none_or(|(d, _)| waited > *d)
        {
            count.oldest = Some((waited, state(goroutine, snapshot.nanotime)));
        }
    }
    sites
}

/// The program's goroutines counted for metrics.
#[derive(Debug, Clone, Default)]
pub struct GoroutineCounts {
    /// As `runtime.NumGoroutine()` counts them.
    pub total: u64,
    /// By wait reason for waiting goroutines, else by status.
    pub by_state: HashMap<String, u64>,
    /// By creation site (`function (file:line)`).
    pub by_site: HashMap<String, u64>,
    /// Goroutines left out because they changed while read.
    pub skipped: u64,
}

/// Counts a snapshot's goroutines for metrics.
pub fn counts(runtime: &GoRuntime, snapshot: &GoroutineSnapshot) -> GoroutineCounts {
    let mut counts = GoroutineCounts {
        skipped: snapshot.skipped as u64,
        ..GoroutineCounts::default()
    };
    for goroutine in program_goroutines(snapshot) {
        counts.total += 1;
        *counts.by_state.entry(doing(goroutine)).or_default() += 1;
    }
    for (site, count) in by_site(runtime, snapshot) {
        counts
            .by_site
            .insert(site.to_string(), count.goids.len() as u64);
    }
    counts
}
