//! `profiler top`: what runs and what waits right now, refreshed every
//! interval, with no output files: processes by CPU (the whole machine by
//! default) and, for one process, its functions, locks, off-CPU time,
//! threads and Go goroutines. On a terminal a full-screen view (see
//! [`screen`]); piped, a plain table every interval. The same session as
//! `record` and `serve` collects the data.

mod screen;
pub mod view;

use std::{
    collections::{HashMap, VecDeque},
    io::IsTerminal as _,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

use self::{
    screen::{Action, Screen},
    view::{Input, Table, View},
};
use crate::{
    attach::{self, LoadConfig},
    go::{
        self,
        goroutines::GoRuntime,
        listing::{self, GoroutineCounts},
    },
    model::{FrameKind, ProfileKind, TargetSpec, UnwindMode},
    session::{Mark, Session, Tick, Ticks},
    target::Targets,
};

/// The checked settings of one `profiler top`.
#[derive(Debug, Clone)]
pub struct TopConfig {
    pub target: TargetSpec,
    pub frequency: u64,
    pub unwind: UnwindMode,
    pub max_depth: usize,
    /// Stop after this long (piped runs, tests); `None`: until quit.
    pub duration: Option<Duration>,
    /// Rows of each piped table.
    pub rows: usize,
    /// Plain tables even on a terminal (false: the full-screen view when
    /// stdout is a terminal).
    pub plain: bool,
}

/// Over how long the tables are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last interval (a second).
    Last,
    /// The last ten seconds.
    Ten,
    SinceStart,
}

impl Window {
    fn next(self) -> Window {
        match self {
            Window::Last => Window::Ten,
            Window::Ten => Window::SinceStart,
            Window::SinceStart => Window::Last,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Window::Last => "last 1 s",
            Window::Ten => "last 10 s",
            Window::SinceStart => "since start",
        }
    }

    /// How many drains back its mark is.
    fn drains(self) -> usize {
        match self {
            Window::Last => 1,
            Window::Ten => 10,
            Window::SinceStart => usize::MAX,
        }
    }
}

/// What is shown, and how.
pub struct State {
    pub view: View,
    /// The process shown; `None`: every process recorded.
    pub pid: Option<u32>,
    /// Whether every process is recorded (the process view exists).
    many: bool,
    /// Whether the process shown is a Go program whose goroutines are read.
    go: bool,
    pub window: Window,
    pub paused: bool,
    pub help: bool,
    /// Rows kept: those any cell of which has this text.
    pub filter: String,
    /// The filter being typed.
    pub editing: Option<String>,
    /// A sort column the user chose.
    pub sort: Option<usize>,
    pub table: Table,
    header: Vec<String>,
}

impl State {
    /// The views of what is shown.
    pub fn views(&self) -> Vec<View> {
        View::ALL
            .into_iter()
            .filter(|v| match v {
                View::Processes => self.many,
                View::Goroutines => self.go,
                _ => true,
            })
            .collect()
    }

    fn next_view(&mut self, step: isize) {
        let views = self.views();
        let at = views.iter().position(|v| *v == self.view).unwrap_or(0) as isize;
        let n = views.len() as isize;
        if let Some(v) = views.get(((at + step).rem_euclid(n.max(1))) as usize) {
            self.view = *v;
        }
        self.sort = None;
    }

    fn drilled(&self) -> bool {
        self.many && self.pid.is_some()
    }

    fn drill(&mut self, pid: u32) {
        self.pid = Some(pid);
        self.view = View::Functions;
        self.sort = None;
    }

    fn undrill(&mut self) {
        self.pid = None;
        self.go = false;
        self.view = View::Processes;
        self.sort = None;
    }

    /// The header as drawn: `[paused]` is added here rather than when the
    /// table is built, since pausing only redraws (a paused table is not
    /// rebuilt until a key asks).
    fn header_lines(&self) -> Vec<ratatui::text::Line<'static>> {
        self.header
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut line = l.clone();
                if i == 0 && self.paused {
                    line.push_str("   [paused]");
                }
                ratatui::text::Line::from(line)
            })
            .collect()
    }
}

/// The goroutines of the Go process shown.
struct Goroutines {
    runtime: GoRuntime,
    counts: Option<GoroutineCounts>,
    first: Option<HashMap<String, u64>>,
}

impl Goroutines {
    fn open(pid: u32) -> Option<Goroutines> {
        let exe = format!("/proc/{pid}/exe");
        if !go::is_go_executable(std::path::Path::new(&exe)) {
            return None;
        }
        let runtime = GoRuntime::for_process(pid).ok()?;
        Some(Goroutines {
            runtime,
            counts: None,
            first: None,
        })
    }

    fn refresh(&mut self) {
        if let Ok(snapshot) = self.runtime.snapshot() {
            let counts = listing::counts(&self.runtime, &snapshot);
            if self.first.is_none() {
                self.first = Some(counts.by_site.clone());
            }
            self.counts = Some(counts);
        }
    }
}

/// Every this many drains, exited threads fold into one per name.
const FOLD_EVERY_DRAINS: u64 = 10;
/// How often old data is let go (see [`Session::rotate`]).
const ROTATE_EVERY: Duration = Duration::from_secs(300);

/// The session and what `top` keeps beside it.
struct Top {
    session: Session,
    started: Instant,
    drains: u64,
    session_rotated: Instant,
    /// A mark per drain, newest last (at most 11).
    marks: VecDeque<(Instant, Mark)>,
    /// When the session last drained: the tables hold the data up to then
    /// (the rates are over the window up to it, not up to now, or a table
    /// rebuilt between drains, by a key, would show them too low).
    drained: Option<Instant>,
    goroutines: Option<Goroutines>,
    /// The process `goroutines` was opened for (or found not Go).
    goroutines_of: Option<u32>,
    exited: bool,
}

impl Top {
    fn on_drain(&mut self) {
        self.drains += 1;
        // Bounded however long top runs: threads that exited fold into one
        // per name, and old data is let go (the "since start" window then
        // covers the last 5 to 10 minutes, and says so).
        if self.drains.is_multiple_of(FOLD_EVERY_DRAINS) {
            let folded = self.session.fold_exited_threads();
            if !folded.is_empty() {
                for (_, mark) in &mut self.marks {
                    mark.fold_threads(&folded);
                }
            }
        }
        if self.session.over_capacity() || self.session_rotated.elapsed() >= ROTATE_EVERY {
            self.session.rotate();
            self.session_rotated = Instant::now();
        }
        let now = Instant::now();
        self.drained = Some(now);
        self.marks.push_back((now, self.session.mark()));
        while self.marks.len() > Window::Ten.drains() + 1 {
            self.marks.pop_front();
        }
        if let Some(g) = &mut self.goroutines {
            g.refresh();
        }
    }

    /// Rebuilds the table of what `state` shows.
    fn build(&mut self, state: &mut State) {
        // Once per process shown: whether it is Go is read from its binary.
        if state.pid != self.goroutines_of {
            self.goroutines_of = state.pid;
            self.goroutines = state.pid.and_then(Goroutines::open);
            if let Some(g) = &mut self.goroutines {
                g.refresh();
            }
        }
        state.go = self.goroutines.is_some();
        if !state.views().contains(&state.view) {
            state.view = state.views().first().copied().unwrap_or(View::Functions);
        }
        let since_start = self.session.snapshot();
        let back = state.window.drains();
        let mark = (back < self.marks.len()).then(|| &self.marks[self.marks.len() - 1 - back]);
        let window = match mark {
            Some((_, mark)) => self.session.snapshot_since(mark),
            None => self.session.snapshot(),
        };
        let end = self.drained.unwrap_or_else(Instant::now);
        let seconds = match mark {
            Some((at, _)) => end.saturating_duration_since(*at),
            None => end.saturating_duration_since(self.session.window_started()),
        }
        .as_secs_f64();
        let window_name = match (mark, state.window) {
            (None, Window::SinceStart) if self.session.window_started() > self.started => {
                format!("the last {:.0} s (older data let go)", seconds)
            }
            _ => state.window.name().to_owned(),
        };
        let cpu = window.profile(ProfileKind::Cpu, Duration::ZERO);
        let input = Input {
            window: &window,
            cpu: &cpu,
            seconds,
            since_start: &since_start,
            pid: state.pid,
            goroutines: self.goroutines.as_ref().and_then(|g| g.counts.as_ref()),
            goroutines_first: self.goroutines.as_ref().and_then(|g| g.first.as_ref()),
        };
        let mut table = view::table(state.view, &input);
        if let Some(column) = state.sort {
            table.sort_by(column);
        }
        table.filter(&state.filter);
        let shown_samples = || view::of_pid(&cpu, state.pid);
        let samples: u64 = shown_samples().map(|s| s.value).sum();
        // Samples whose stack is not whole (a lost or cut-short stack).
        let degraded: u64 = shown_samples()
            .filter(|s| s.frames.iter().any(|f| f.kind == FrameKind::Lost))
            .map(|s| s.value)
            .sum();
        let lost: u64 = since_start.losses().iter().map(|(_, n)| n).sum();
        let shown = match state.pid {
            Some(pid) => format!(
                "PID {pid} ({})",
                since_start.processes.name(pid).unwrap_or("?")
            ),
            None => self.session.describe(),
        };
        let mut first = format!(
            "profiler top: {shown}   up {:.0} s   {:.0} samples/s   {} events lost   {degraded} stacks incomplete",
            self.started.elapsed().as_secs_f64(),
            if seconds > 0.0 {
                samples as f64 / seconds
            } else {
                0.0
            },
            lost
        );
        if self.exited {
            first.push_str("   [target exited: last data kept]");
        }
        state.header = vec![
            first,
            format!(
                "window: {window_name}   view: {}   sort: {}",
                state.view.name(),
                table.headers.get(table.sort).copied().unwrap_or("")
            ),
        ];
        state.table = table;
    }
}

/// Runs `top` until quit, the duration, or (piped) the target's exit.
pub fn run(config: TopConfig) -> anyhow::Result<()> {
    attach::preflight()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _runtime_context = runtime.enter();
    let single = config.target.single_pid();
    let many =
        !matches!(config.target, TargetSpec::Pids { ref pids, children: false } if pids.len() == 1);
    let targets = Targets::open(&config.target)?;
    let load = LoadConfig::listed(
        ProfileKind::ALL.to_vec(),
        config.frequency,
        config.unwind,
        config.max_depth,
    );
    let session = Session::start(targets, &load, config.max_depth)?;
    let mut top = Top {
        session,
        started: Instant::now(),
        drains: 0,
        session_rotated: Instant::now(),
        marks: VecDeque::new(),
        drained: None,
        goroutines: None,
        goroutines_of: None,
        exited: false,
    };
    let mut state = State {
        view: if many {
            View::Processes
        } else {
            View::Functions
        },
        pid: if many { None } else { single },
        many,
        go: false,
        window: Window::Last,
        paused: false,
        help: false,
        filter: String::new(),
        editing: None,
        sort: None,
        table: Table::default(),
        header: Vec::new(),
    };
    let terminal = !config.plain && std::io::stdout().is_terminal();
    let mut screen = if terminal {
        Some(Screen::open()?)
    } else {
        None
    };
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let outcome = runtime.block_on(async {
        let deadline = config.duration.map(|d| tokio::time::Instant::now() + d);
        let mut ticks = Ticks::new();
        let mut stdout = std::io::stdout().lock();
        top.build(&mut state);
        if let Some(screen) = &mut screen {
            screen.draw(&state)?;
        }
        loop {
            tokio::select! {
                () = crate::session::until(deadline) => break Ok::<(), anyhow::Error>(()),
                _ = sigterm.recv() => break Ok(()),
                _ = sigint.recv() => break Ok(()),
                () = top.session.target_exited(), if single.is_some() && !top.exited => {
                    top.exited = true;
                    top.session.drain()?;
                    top.drained = Some(Instant::now());
                    top.build(&mut state);
                    match &mut screen {
                        Some(screen) => screen.draw(&state)?,
                        // Piped: the last table, then done.
                        None => {
                            print_plain(&mut stdout, &state, config.rows)?;
                            break Ok(());
                        }
                    }
                }
                tick = ticks.next() => {
                    if !top.exited {
                        top.session.on_tick(tick)?;
                    }
                    // Once the target exited, the tables keep its last data:
                    // more marks would slide the window past it.
                    if tick == Tick::Drain && !top.exited {
                        top.on_drain();
                        if !state.paused {
                            top.build(&mut state);
                            match &mut screen {
                                Some(screen) => screen.draw(&state)?,
                                None => print_plain(&mut stdout, &state, config.rows)?,
                            }
                        }
                    }
                    if let Some(screen) = &mut screen {
                        match screen::keys(&mut state, screen)? {
                            Action::Quit => break Ok(()),
                            Action::Rebuild => {
                                top.build(&mut state);
                                screen.draw(&state)?;
                            }
                            Action::Redraw => screen.draw(&state)?,
                            Action::Nothing => {}
                        }
                    }
                }
            }
        }
    });
    // The terminal first, so that what follows is readable.
    drop(screen);
    let detached = top.session.detach_and_drain();
    outcome?;
    detached
}

/// One piped table: a header line, the table, a blank line.
fn print_plain(out: &mut impl std::io::Write, state: &State, rows: usize) -> anyhow::Result<()> {
    let mut text = String::new();
    for line in &state.header {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&state.table.text(rows));
    text.push('\n');
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the table")?;
    Ok(())
}
