//! `profiler serve`: keeps one session attached to a running process and
//! serves it over HTTP. The session (not `Send`: the symbolizer is
//! single-threaded) lives on the main thread and drains every second, then
//! publishes metrics and health; the HTTP server runs on its own thread and
//! asks the session thread for profiles. A CPU, mutex or block profile over N
//! seconds is the difference of two copies of the cumulative data, taken N
//! seconds apart.

mod go_stats;
mod goroutines;
mod health;
mod http;
mod metrics;

use std::{
    sync::{Arc, Mutex, PoisonError, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot, watch},
};
use tracing::{info, warn};

use self::{
    go_stats::GoStatsWatch,
    goroutines::GoWatch,
    health::Health,
    http::{AppState, ProfileReply},
    metrics::Metrics,
};
use crate::{
    attach::{self, LoadConfig},
    formats,
    model::{ProfileKind, TargetSpec, UnwindMode},
    session::{Mark, Session, Tick, Ticks, unix_ns},
    target::Targets,
};

/// The address `serve` listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6060";

/// The checked settings of one `profiler serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub target: TargetSpec,
    pub listen: std::net::SocketAddr,
    pub frequency: u64,
    pub unwind: UnwindMode,
    pub max_depth: usize,
    /// How many locks get their own `lock` label in the metrics.
    pub top_locks: usize,
    /// For a Go target, also goblock (every goroutine park probed); off
    /// with `--no-go-block`.
    pub go_block: bool,
    /// How much data is kept (`--window`): profiles without `?seconds=`
    /// cover between half of it and all of it; `?seconds=N` may ask for at
    /// most half of it.
    pub window: Duration,
}

/// Every this many drains, the data of exited threads is folded into one
/// group per thread name (see [`Session::fold_exited_threads`]).
const FOLD_EVERY_DRAINS: u64 = 10;

/// A delta profile being taken: the data at its start, and when it ends.
struct Pending {
    kind: ProfileKind,
    started: Instant,
    started_unix_ns: i64,
    until: tokio::time::Instant,
    before: Mark,
    reply: oneshot::Sender<ProfileReply>,
}

/// Why serving stopped.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Interrupted,
    Terminated,
}

/// Runs the server until Ctrl-C or SIGTERM.
pub fn run(config: ServeConfig) -> anyhow::Result<()> {
    attach::preflight()?;
    // Bound before attaching, so a port in use fails first.
    let listener = std::net::TcpListener::bind(config.listen).with_context(|| {
        format!(
            "cannot listen on {}; choose another address or port with --listen",
            config.listen
        )
    })?;
    listener
        .set_nonblocking(true)
        .context("cannot set up the listening socket")?;
    let bound = listener
        .local_addr()
        .context("cannot read the listening address")?;
    if !bound.ip().is_loopback() {
        warn!(
            "listening on {bound}, which other hosts can reach: anyone who can connect reads this process's stacks, thread and lock names; bind to 127.0.0.1 unless a firewall or proxy guards the port"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _runtime_context = runtime.enter();
    let targets = Targets::open(&config.target)?;
    // One process given: when it exits, serving goes on with what was
    // collected. Processes found by name, cgroup or ancestry come and go.
    let single = config.target.single_pid();
    // A Go program also gets Go's lock contention (gomutex) and its every
    // park timed (goblock), unless --no-go-block.
    let is_go = targets
        .primary()
        .and_then(|t| t.executable.as_deref())
        .is_some_and(|exe| crate::go::is_go_executable(std::path::Path::new(exe)));
    let mut kinds = ProfileKind::ALL.to_vec();
    if is_go {
        kinds.push(ProfileKind::GoMutex);
        if config.go_block {
            kinds.push(ProfileKind::GoBlock);
        }
    }
    let load = LoadConfig::listed(kinds, config.frequency, config.unwind, config.max_depth);
    let mut session = Session::start(targets, &load, config.max_depth)?;
    let name = session.name();
    let (mut go, mut go_stats) = match session.pid() {
        Some(pid) if is_go => (GoWatch::open(pid, &name), GoStatsWatch::open(pid, &name)),
        _ => (None, None),
    };
    let started = Instant::now();
    let started_unix_ns = unix_ns();

    let (registry, mut metrics) = Metrics::registry(config.top_locks, config.frequency)?;
    let health = Arc::new(Mutex::new(Health::starting()));
    let (requests, mut incoming) = mpsc::unbounded_channel();
    let state = AppState {
        registry,
        health: health.clone(),
        requests,
        busy: Arc::new(Default::default()),
        scrapes: Arc::default(),
        profiles: Arc::default(),
        go: is_go,
        go_block: config.go_block,
    };
    let (scrapes, profiles) = (state.scrapes.clone(), state.profiles.clone());
    publish(
        &session,
        go.as_ref(),
        go_stats.as_mut(),
        &mut metrics,
        &health,
        started,
    );
    let (stop, stopped) = watch::channel(false);
    let http = std::thread::Builder::new()
        .name("http".to_owned())
        .spawn(move || http::serve(listener, state, stopped))
        .context("cannot start the HTTP server thread")?;
    info!(
        "serving {} on http://{bound}: /metrics, /healthz, /debug/pprof/{{profile,mutex,block}}; Ctrl-C or SIGTERM to stop",
        session.describe()
    );
    let target = match single {
        Some(pid) => format!("the target (PID {pid})"),
        None => "every target process".to_owned(),
    };

    let mut up = true;
    let mut capped = false;
    let mut drains: u64 = 0;
    // Every half window, data older than the last rotation is let go.
    let rotate_every = (config.window / 2).max(Duration::from_secs(1));
    let mut rotation =
        tokio::time::interval_at(tokio::time::Instant::now() + rotate_every, rotate_every);
    rotation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<Pending> = Vec::new();
    let outcome = runtime.block_on(async {
        let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut ticks = Ticks::new();
        loop {
            let next_due = pending.iter().map(|p| p.until).min();
            let due = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sigint.recv() => break Ok::<_, anyhow::Error>(Ending::Interrupted),
                _ = sigterm.recv() => break Ok(Ending::Terminated),
                () = session.target_exited(), if up && single.is_some() => {
                    up = false;
                    session.detach_and_drain()?;
                    info!(
                        "PID {} exited: detached; still serving the data collected so far (/healthz now answers 503)",
                        single.unwrap_or(0)
                    );
                    publish(&session, go.as_ref(), go_stats.as_mut(), &mut metrics, &health, started);
                    // Profiles being taken end now, with what there is.
                    for done in std::mem::take(&mut pending) {
                        finish(&mut session, done);
                    }
                }
                tick = ticks.next(), if up => {
                    session.on_tick(tick)?;
                    if tick == Tick::Drain && session.over_capacity() {
                        // Ever-new stacks: the window shrinks rather than
                        // memory growing (profiles say what they cover).
                        if !capped {
                            info!(
                                "the target's events are too varied to keep {} s of them: rotating at {} distinct events instead (profiles without ?seconds= cover less; see their duration)",
                                config.window.as_secs(),
                                crate::session::MAX_EPOCH_EVENTS
                            );
                            capped = true;
                        }
                        session.rotate();
                        rotation.reset();
                    }
                    if tick == Tick::Drain {
                        drains += 1;
                        if drains.is_multiple_of(FOLD_EVERY_DRAINS) {
                            // Marks taken for profiles in flight fold the same
                            // way, or their differences would be wrong.
                            let folded = session.fold_exited_threads();
                            if !folded.is_empty() {
                                for waiting in &mut pending {
                                    waiting.before.fold_threads(&folded);
                                }
                            }
                        }
                        if let Some(go) = &mut go {
                            go.refresh();
                        }
                        publish(&session, go.as_ref(), go_stats.as_mut(), &mut metrics, &health, started);
                    }
                }
                _ = rotation.tick(), if up => {
                    session.drain()?;
                    session.rotate();
                }
                () = due => {
                    if up {
                        session.drain()?;
                    }
                    let now = tokio::time::Instant::now();
                    let (done, waiting) = std::mem::take(&mut pending)
                        .into_iter()
                        .partition(|p| p.until <= now);
                    pending = waiting;
                    for done in done {
                        finish(&mut session, done);
                    }
                }
                request = incoming.recv() => {
                    let Some(request) = request else {
                        break Err(anyhow::anyhow!("the HTTP server stopped"));
                    };
                    if request.kind == ProfileKind::Goroutines {
                        let reply = match (&go, up) {
                            (Some(go), true) => go.reply(request.debug),
                            (_, false) => ProfileReply::Unavailable(format!(
                                "{target} has exited: it has no goroutines any more"
                            )),
                            (None, true) => ProfileReply::Unavailable(format!(
                                "{target} is not one Go program whose goroutines can be read (the log of profiler serve says why)"
                            )),
                        };
                        let _ = request.reply.send(reply);
                        continue;
                    }
                    if up {
                        // A profile starts (or, cumulative, ends) now.
                        session.drain()?;
                    }
                    match request.seconds {
                        Some(seconds) if Duration::from_secs(seconds) > rotate_every => {
                            let _ = request.reply.send(ProfileReply::Unavailable(format!(
                                "?seconds={seconds} is longer than half of the window profiler serve keeps (--window {}s): ask for at most {} seconds, or run serve with a longer --window",
                                config.window.as_secs(),
                                rotate_every.as_secs()
                            )));
                        }
                        Some(_) if !up => {
                            let _ = request.reply.send(ProfileReply::Unavailable(format!(
                                "{target} has exited: there is nothing more to profile; profiles without ?seconds= still give what was collected"
                            )));
                        }
                        Some(seconds) => pending.push(Pending {
                            kind: request.kind,
                            started: Instant::now(),
                            started_unix_ns: unix_ns(),
                            until: tokio::time::Instant::now() + Duration::from_secs(seconds),
                            before: session.mark(),
                            reply: request.reply,
                        }),
                        None => {
                            // The data kept: from the start, or from the
                            // rotation before last.
                            let covers = session.window_started().elapsed();
                            let profile = session
                                .snapshot_with_waits(None, request.kind)
                                .profile(request.kind, covers);
                            let since = unix_ns().saturating_sub(
                                i64::try_from(covers.as_nanos()).unwrap_or(i64::MAX),
                            );
                            reply_with(&profile, since.max(started_unix_ns), request.reply);
                        }
                    }
                }
            }
        }
    });

    // Detach first; then answer whatever is still waiting and stop serving.
    let drained = session.detach_and_drain();
    for waiting in pending {
        let _ = waiting.reply.send(ProfileReply::Unavailable(
            "the profiler is shutting down".to_owned(),
        ));
    }
    let _ = stop.send(true);
    let served = match http.join() {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!("the HTTP server thread panicked")),
    };
    // The HTTP server's own failure explains a loop that ended for it.
    served?;
    let ending = outcome?;
    drained?;
    info!(
        "{}: detached; served {} scrapes and {} profiles over {:.0} s",
        match ending {
            Ending::Interrupted => "stopped by Ctrl-C",
            Ending::Terminated => "stopped by SIGTERM",
        },
        scrapes.load(Ordering::Relaxed),
        profiles.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Answers a profile request with what was collected since its start, and
/// the waits still under way (counted from its start at the earliest).
fn finish(session: &mut Session, request: Pending) {
    let profile = session
        .snapshot_with_waits(Some(&request.before), request.kind)
        .profile(request.kind, request.started.elapsed());
    reply_with(&profile, request.started_unix_ns, request.reply);
}

/// Sends a profile, as gzipped pprof, to whoever asked for it.
fn reply_with(
    profile: &crate::model::Profile,
    start_unix_ns: i64,
    reply: oneshot::Sender<ProfileReply>,
) {
    let mut bytes = Vec::new();
    let answer = match formats::pprof::write(profile, start_unix_ns, &mut bytes) {
        Ok(()) => ProfileReply::Pprof(bytes),
        Err(err) => ProfileReply::Failed(format!("cannot build the profile: {err}")),
    };
    // The client may have gone; then nobody wants it.
    let _ = reply.send(answer);
}

/// Publishes metrics and health from a snapshot of the session.
fn publish(
    session: &Session,
    go: Option<&GoWatch>,
    mut go_stats: Option<&mut GoStatsWatch>,
    metrics: &mut Metrics,
    health: &Mutex<Health>,
    started: Instant,
) {
    // The counters go on counting what rotations let go.
    let snapshot = session.snapshot_with_totals();
    if let Some(watch) = go_stats.as_deref_mut() {
        watch.refresh(snapshot.target.up);
    }
    metrics.update_go_runtime(go_stats.as_deref().map(GoStatsWatch::sample));
    metrics.update(&snapshot, go.and_then(GoWatch::counts));
    let mut now = Health::of(&snapshot, started);
    if let Some(watch) = go_stats.as_deref() {
        now.json["go_runtime_stats"] = watch.health();
    }
    *health.lock().unwrap_or_else(PoisonError::into_inner) = now;
}
