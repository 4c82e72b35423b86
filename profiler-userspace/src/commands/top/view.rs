//! What `profiler top` shows, as plain tables built from one snapshot of
//! the session (over the last interval, the last 10 s or since start):
//! processes by CPU, and for one process its functions, locks, off-CPU
//! time, threads and (for Go) goroutines. The terminal UI and the piped
//! text print the same tables.

use std::{collections::HashMap, fmt::Write as _, rc::Rc, time::Duration};

use crate::{
    go::listing::GoroutineCounts,
    model::{FrameKind, Profile, ProfileKind, Sample, short_stack},
    snapshot::Snapshot,
};

/// The views, in the order Tab goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Processes,
    Functions,
    Locks,
    OffCpu,
    Threads,
    Goroutines,
}

impl View {
    pub const ALL: [View; 6] = [
        View::Processes,
        View::Functions,
        View::Locks,
        View::OffCpu,
        View::Threads,
        View::Goroutines,
    ];

    pub fn name(self) -> &'static str {
        match self {
            View::Processes => "processes",
            View::Functions => "functions",
            View::Locks => "locks",
            View::OffCpu => "off-cpu",
            View::Threads => "threads",
            View::Goroutines => "goroutines",
        }
    }
}

/// One row: its cells as shown, and a number per cell to sort by (NaN
/// for text cells, which sort by text).
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub cells: Vec<String>,
    pub keys: Vec<f64>,
    /// The process a row of the process view stands for.
    pub pid: Option<u32>,
}

impl Row {
    fn new() -> Row {
        Row::default()
    }

    fn num(mut self, text: String, key: f64) -> Row {
        self.cells.push(text);
        self.keys.push(key);
        self
    }

    fn text(mut self, text: impl Into<String>) -> Row {
        self.cells.push(text.into());
        self.keys.push(f64::NAN);
        self
    }
}

/// A table of one view.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Row>,
    /// Lines above the table (totals of the view).
    pub notes: Vec<String>,
    /// The column sorted by, largest first.
    pub sort: usize,
}

impl Table {
    fn new(headers: &[&'static str], sort: usize) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
            notes: Vec::new(),
            sort,
        }
    }

    /// Sorts by column `column`: numbers largest first, text A to Z.
    pub fn sort_by(&mut self, column: usize) {
        if column >= self.headers.len() {
            return;
        }
        self.sort = column;
        self.rows.sort_by(|a, b| {
            let (ka, kb) = (a.keys.get(column), b.keys.get(column));
            match (ka, kb) {
                (Some(x), Some(y)) if !x.is_nan() && !y.is_nan() => y.total_cmp(x),
                _ => a.cells.get(column).cmp(&b.cells.get(column)),
            }
        });
    }

    /// Keeps the rows any cell of which contains `filter`.
    pub fn filter(&mut self, filter: &str) {
        if filter.is_empty() {
            return;
        }
        self.rows
            .retain(|r| r.cells.iter().any(|c| c.contains(filter)));
    }

    /// The table as text: a header line and at most `limit` rows.
    pub fn text(&self, limit: usize) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in self.rows.iter().take(limit) {
            for (i, cell) in row.cells.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut text = String::new();
            for (i, cell) in cells.enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                if i + 1 == widths.len() {
                    text.push_str(cell);
                } else {
                    let _ = write!(text, "{cell:>w$}  ");
                }
            }
            text.trim_end().to_owned()
        };
        let _ = writeln!(out, "{}", line(&mut self.headers.iter().copied()));
        for row in self.rows.iter().take(limit) {
            let _ = writeln!(out, "{}", line(&mut row.cells.iter().map(String::as_str)));
        }
        if self.rows.is_empty() {
            let _ = writeln!(out, "(nothing yet)");
        }
        out
    }
}

/// What the tables are built from: a snapshot over a window and one since
/// start, and the goroutine counts of a Go target.
pub struct Input<'a, 's> {
    pub window: &'a Snapshot<'s>,
    /// The window's cpu profile, every process (built once a refresh: it
    /// names every sampled address).
    pub cpu: &'a Profile,
    /// How long the window is.
    pub seconds: f64,
    pub since_start: &'a Snapshot<'s>,
    /// The process drilled into; `None`: every process recorded.
    pub pid: Option<u32>,
    pub goroutines: Option<&'a GoroutineCounts>,
    /// Live goroutines per creation site when first read, for growth.
    pub goroutines_first: Option<&'a HashMap<String, u64>>,
}

/// The samples of the process shown (of every process without one).
pub fn of_pid(profile: &Profile, pid: Option<u32>) -> impl Iterator<Item = &Sample> {
    profile
        .samples
        .iter()
        .filter(move |s| pid.is_none_or(|p| s.pid == p))
}

/// `profile` with only the process shown.
fn for_pid(mut profile: Profile, pid: Option<u32>) -> Profile {
    if let Some(pid) = pid {
        profile.samples.retain(|s| s.pid == pid);
    }
    profile
}

fn profile_of(snapshot: &Snapshot<'_>, kind: ProfileKind, pid: Option<u32>) -> Profile {
    for_pid(snapshot.profile(kind, Duration::ZERO), pid)
}

fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", part / whole * 100.0)
    } else {
        "-".to_owned()
    }
}

fn rate(value: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { value / seconds } else { 0.0 }
}

/// Processes by CPU, each with its hottest function.
pub fn processes(input: &Input<'_, '_>) -> Table {
    let mut table = Table::new(
        &["PID", "CPU%", "SAMPLES", "PROCESS", "HOTTEST FUNCTION"],
        1,
    );
    let cpu = input.cpu;
    let per_cpu = input.window.frequency as f64 * input.seconds;
    // Per process: its name, samples, and samples per leaf function.
    type Usage = (Rc<str>, u64, HashMap<Rc<str>, u64>);
    let mut by_pid: HashMap<u32, Usage> = HashMap::new();
    for sample in &cpu.samples {
        let entry = by_pid
            .entry(sample.pid)
            .or_insert_with(|| (sample.process.clone(), 0, HashMap::new()));
        entry.1 += sample.value;
        if let Some(leaf) = sample.frames.iter().rev().find(|f| f.is_user_code()) {
            *entry.2.entry(leaf.name.clone()).or_default() += sample.value;
        } else if let Some(leaf) = sample.frames.last() {
            *entry.2.entry(leaf.name.clone()).or_default() += sample.value;
        }
    }
    for (pid, (name, samples, functions)) in by_pid {
        let hottest = functions
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(f, n)| format!("{f} ({})", percent(*n as f64, samples as f64)))
            .unwrap_or_default();
        let cpu = if per_cpu > 0.0 {
            samples as f64 / per_cpu * 100.0
        } else {
            0.0
        };
        let mut row = Row::new()
            .num(pid.to_string(), f64::from(pid))
            .num(format!("{cpu:.1}"), cpu)
            .num(samples.to_string(), samples as f64)
            .text(name.to_string())
            .text(hottest);
        row.pid = Some(pid);
        table.rows.push(row);
    }
    table.sort_by(1);
    table
}

/// Functions by self share over the window, with their total share and
/// both since start.
pub fn functions(input: &Input<'_, '_>) -> Table {
    let mut table = Table::new(
        &[
            "SELF%",
            "TOTAL%",
            "SAMPLES/s",
            "SELF% ALL",
            "TOTAL% ALL",
            "FUNCTION",
        ],
        0,
    );
    let window = for_pid(input.cpu.clone(), input.pid);
    let start = profile_of(input.since_start, ProfileKind::Cpu, input.pid);
    let (wt, st) = (window.total() as f64, start.total() as f64);
    let all: HashMap<Rc<str>, (u64, u64)> = start
        .function_shares()
        .into_iter()
        .map(|f| (f.name, (f.self_value, f.total)))
        .collect();
    for f in window.function_shares() {
        let (s_self, s_total) = all.get(&f.name).copied().unwrap_or_default();
        table.rows.push(
            Row::new()
                .num(percent(f.self_value as f64, wt), f.self_value as f64)
                .num(percent(f.total as f64, wt), f.total as f64)
                .num(
                    format!("{:.0}", rate(f.self_value as f64, input.seconds)),
                    f.self_value as f64,
                )
                .num(percent(s_self as f64, st), s_self as f64)
                .num(percent(s_total as f64, st), s_total as f64)
                .text(match f.kind {
                    FrameKind::Kernel => format!("{} [kernel]", f.name),
                    _ => f.name.to_string(),
                }),
        );
    }
    table.notes.push(format!(
        "{} cpu samples in the window ({:.0}/s), {} since start",
        window.total(),
        rate(wt, input.seconds),
        start.total()
    ));
    table.sort_by(0);
    table
}

/// Locks by wait time: futex words, with their waits and wait time per
/// second, and the stacks that waited and released most.
pub fn locks(input: &Input<'_, '_>) -> Table {
    let mut table = Table::new(
        &[
            "WAITS/s",
            "WAIT ms/s",
            "MAX ms",
            "LOCK",
            "TOP WAITER",
            "TOP RELEASER",
        ],
        1,
    );
    for lock in input.window.locks() {
        if input.pid.is_some_and(|p| p != lock.pid) {
            continue;
        }
        let waits = rate(lock.waits.count as f64, input.seconds);
        let ms = rate(lock.waits.total as f64 / 1e6, input.seconds);
        let stack = |s: &Option<(Vec<crate::model::Frame>, u64)>| {
            s.as_ref()
                .and_then(|(frames, _)| short_stack(frames, 3))
                .unwrap_or_else(|| "-".to_owned())
        };
        table.rows.push(
            Row::new()
                .num(format!("{waits:.1}"), waits)
                .num(format!("{ms:.1}"), ms)
                .num(
                    format!("{:.1}", lock.waits.max as f64 / 1e6),
                    lock.waits.max as f64,
                )
                .text(lock.name.to_string())
                .text(stack(&lock.top_waiter))
                .text(stack(&lock.top_waker)),
        );
    }
    table.sort_by(1);
    table
}

/// Off-CPU time by reason (blocked, waiting for a CPU) and the functions
/// that blocked most.
pub fn off_cpu(input: &Input<'_, '_>) -> Table {
    let mut table = Table::new(&["BLOCKED ms/s", "RUNQ ms/s", "BLOCKS/s", "FUNCTION"], 0);
    let profile = profile_of(input.window, ProfileKind::OffCpu, input.pid);
    let mut by_function: HashMap<Rc<str>, (u64, u64, u64)> = HashMap::new();
    let (mut blocked, mut runq) = (0u64, 0u64);
    for sample in &profile.samples {
        let preempted = sample.state == Some("preempted");
        if preempted {
            runq += sample.value;
        } else {
            blocked += sample.value;
        }
        let own = sample
            .frames
            .iter()
            .rev()
            .find(|f| f.is_user_code())
            .or(sample.frames.last());
        if let Some(f) = own {
            let e = by_function.entry(f.name.clone()).or_default();
            if preempted {
                e.1 += sample.value;
            } else {
                e.0 += sample.value;
            }
            e.2 += sample.count;
        }
    }
    table.notes.push(format!(
        "off-CPU: blocked {:.1} ms/s, waiting for a CPU (run-queue delay) {:.1} ms/s",
        rate(blocked as f64 / 1e6, input.seconds),
        rate(runq as f64 / 1e6, input.seconds)
    ));
    for (name, (b, r, n)) in by_function {
        let (b, r, n) = (
            rate(b as f64 / 1e6, input.seconds),
            rate(r as f64 / 1e6, input.seconds),
            rate(n as f64, input.seconds),
        );
        table.rows.push(
            Row::new()
                .num(format!("{b:.1}"), b)
                .num(format!("{r:.1}"), r)
                .num(format!("{n:.1}"), n)
                .text(name.to_string()),
        );
    }
    table.sort_by(0);
    table
}

/// Threads by CPU.
pub fn threads(input: &Input<'_, '_>) -> Table {
    let mut table = Table::new(&["TID", "CPU%", "SAMPLES", "THREAD", "PROCESS"], 1);

    let per_cpu = input.window.frequency as f64 * input.seconds;
    let mut by_tid: HashMap<u32, (Rc<str>, Rc<str>, u64)> = HashMap::new();
    for sample in of_pid(input.cpu, input.pid) {
        by_tid
            .entry(sample.tid)
            .or_insert_with(|| (sample.thread_name.clone(), sample.process.clone(), 0))
            .2 += sample.value;
    }
    for (tid, (thread, process, samples)) in by_tid {
        let cpu = if per_cpu > 0.0 {
            samples as f64 / per_cpu * 100.0
        } else {
            0.0
        };
        table.rows.push(
            Row::new()
                .num(tid.to_string(), f64::from(tid))
                .num(format!("{cpu:.1}"), cpu)
                .num(samples.to_string(), samples as f64)
                .text(thread.to_string())
                .text(process.to_string()),
        );
    }
    table.sort_by(1);
    table
}

/// A Go target's goroutines by creation site, with growth since start,
/// and by state in the notes.
pub fn goroutines(input: &Input<'_, '_>) -> Table {
    let mut table = Table::new(&["LIVE", "GROWTH", "CREATION SITE"], 1);
    let Some(counts) = input.goroutines else {
        table.notes.push(
            "no goroutines: the target is not a Go program whose goroutines can be read".to_owned(),
        );
        return table;
    };
    let mut states: Vec<(&String, &u64)> = counts.by_state.iter().collect();
    states.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    table.notes.push(format!(
        "{} goroutines: {}",
        counts.total,
        states
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for (site, live) in &counts.by_site {
        let first = input
            .goroutines_first
            .and_then(|f| f.get(site))
            .copied()
            .unwrap_or(0);
        let growth = *live as f64 - first as f64;
        table.rows.push(
            Row::new()
                .num(live.to_string(), *live as f64)
                .num(format!("{growth:+}"), growth)
                .text(site.clone()),
        );
    }
    table.sort_by(1);
    table
}

/// The table of `view`.
pub fn table(view: View, input: &Input<'_, '_>) -> Table {
    match view {
        View::Processes => processes(input),
        View::Functions => functions(input),
        View::Locks => locks(input),
        View::OffCpu => off_cpu(input),
        View::Threads => threads(input),
        View::Goroutines => goroutines(input),
    }
}
