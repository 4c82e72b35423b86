//! `profiler serve`: keeps one session attached to a running process and
//! serves it over HTTP. The session (not `Send`: the symbolizer is
//! single-threaded) lives on the main thread and drains every second, then
//! publishes metrics and health; the HTTP server runs on its own thread and
//! asks the session thread for profiles. A CPU, mutex or block profile over N
//! seconds is the difference of two copies of the cumulative data, taken N
//! seconds apart.

mod http;
mod metrics;

use std::{
    sync::{Arc, Mutex, PoisonError, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::json;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot, watch},
};
use tracing::{info, warn};

use crate::{
    attach::{self, LoadConfig},
    cli::{ServeConfig, TargetSpec},
    collect::Collected,
    export,
    profile::ProfileKind,
    session::{Session, ticks, unix_ns},
    target::Target,
};

use self::{http::AppState, metrics::Metrics};

/// Every this many drains, the data of exited threads is folded into one
/// group per thread name (see [`Session::fold_exited_threads`]).
const FOLD_EVERY_DRAINS: u64 = 10;

/// A profile asked for over HTTP.
pub struct ProfileRequest {
    pub kind: ProfileKind,
    /// Over the next N seconds; `None`: everything since the server started.
    pub seconds: Option<u64>,
    pub reply: oneshot::Sender<ProfileReply>,
}

/// The session thread's answer to a [`ProfileRequest`].
pub enum ProfileReply {
    /// A gzipped pprof profile.
    Pprof(Vec<u8>),
    /// Nothing to profile (the target exited); the sentence says why.
    Unavailable(String),
    /// Building the profile failed.
    Failed(String),
}

/// What /healthz answers, as last published.
pub struct Health {
    pub healthy: bool,
    pub json: serde_json::Value,
}

/// A delta profile being taken: the data at its start, and when it ends.
struct Pending {
    kind: ProfileKind,
    started: Instant,
    started_unix_ns: i64,
    until: tokio::time::Instant,
    before: Collected,
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
    let target = Target::open(&TargetSpec::Pid(config.pid))?;
    let load = LoadConfig {
        tgid: target.pid,
        arm_on_exec: false,
        unwind: config.unwind,
        kinds: ProfileKind::ALL.to_vec(),
        frequency: config.frequency,
        min_block: Duration::ZERO,
    };
    let mut session = Session::start(target, &load, config.max_depth)?;
    let started = Instant::now();
    let started_unix_ns = unix_ns();

    let (registry, mut metrics) = Metrics::registry(config.top_locks, config.frequency)?;
    let health = Arc::new(Mutex::new(Health {
        healthy: false,
        json: json!({}),
    }));
    let (requests, mut incoming) = mpsc::unbounded_channel();
    let state = AppState {
        registry,
        health: health.clone(),
        requests,
        busy: Arc::new(Default::default()),
        scrapes: Arc::default(),
        profiles: Arc::default(),
    };
    let (scrapes, profiles) = (state.scrapes.clone(), state.profiles.clone());
    publish(&session, &mut metrics, &health, true, started);
    let (stop, stopped) = watch::channel(false);
    let http = std::thread::Builder::new()
        .name("http".to_owned())
        .spawn(move || http::serve(listener, state, stopped))
        .context("cannot start the HTTP server thread")?;
    info!(
        "serving PID {} ({}) on http://{bound}: /metrics, /healthz, /debug/pprof/{{profile,mutex,block}}; Ctrl-C or SIGTERM to stop",
        config.pid, session.target.name
    );

    let mut up = true;
    let mut drains: u64 = 0;
    let mut pending: Vec<Pending> = Vec::new();
    let outcome = runtime.block_on(async {
        let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let (mut drain_tick, mut mappings_tick) = ticks();
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
                _ = session.target.exited(), if up => {
                    up = false;
                    session.detach_and_drain()?;
                    info!(
                        "PID {} exited: detached; still serving the data collected so far (/healthz now answers 503)",
                        config.pid
                    );
                    publish(&session, &mut metrics, &health, up, started);
                    // Profiles being taken end now, with what there is.
                    for done in std::mem::take(&mut pending) {
                        finish(&session, done, config.frequency);
                    }
                }
                _ = mappings_tick.tick(), if up => session.refresh_mappings(),
                _ = drain_tick.tick(), if up => {
                    session.drain()?;
                    drains += 1;
                    if drains.is_multiple_of(FOLD_EVERY_DRAINS) {
                        // Copies taken for profiles in flight fold the same
                        // way, or their differences would be wrong.
                        let folded = session.fold_exited_threads();
                        if !folded.is_empty() {
                            for waiting in &mut pending {
                                waiting.before.fold_threads(&folded);
                            }
                        }
                    }
                    publish(&session, &mut metrics, &health, up, started);
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
                        finish(&session, done, config.frequency);
                    }
                }
                request = incoming.recv() => {
                    let Some(request) = request else {
                        break Err(anyhow::anyhow!("the HTTP server stopped"));
                    };
                    if up {
                        // A profile starts (or, cumulative, ends) now.
                        session.drain()?;
                    }
                    match request.seconds {
                        Some(_) if !up => {
                            let _ = request.reply.send(ProfileReply::Unavailable(format!(
                                "the target (PID {}) has exited: there is nothing more to profile; profiles without ?seconds= still give what was collected",
                                config.pid
                            )));
                        }
                        Some(seconds) => pending.push(Pending {
                            kind: request.kind,
                            started: Instant::now(),
                            started_unix_ns: unix_ns(),
                            until: tokio::time::Instant::now() + Duration::from_secs(seconds),
                            before: session.collected().clone(),
                            reply: request.reply,
                        }),
                        None => finish(
                            &session,
                            Pending {
                                kind: request.kind,
                                started,
                                started_unix_ns,
                                until: tokio::time::Instant::now(),
                                before: Collected::default(),
                                reply: request.reply,
                            },
                            config.frequency,
                        ),
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

/// Answers a profile request with what was collected since its start.
fn finish(session: &Session, request: Pending, frequency: u64) {
    let collected = session.collected().since(&request.before);
    let profile = session.profile(
        request.kind,
        &collected,
        frequency,
        request.started.elapsed(),
    );
    let mut bytes = Vec::new();
    let reply = match export::pprof::write(&profile, request.started_unix_ns, &mut bytes) {
        Ok(()) => ProfileReply::Pprof(bytes),
        Err(err) => ProfileReply::Failed(format!("cannot build the profile: {err}")),
    };
    // The client may have gone; then nobody wants it.
    let _ = request.reply.send(reply);
}

/// Publishes metrics and health from the session's data.
fn publish(
    session: &Session,
    metrics: &mut Metrics,
    health: &Mutex<Health>,
    up: bool,
    started: Instant,
) {
    let threads = if up {
        session.target.live_threads().len()
    } else {
        0
    };
    metrics.update(session, up, threads);
    let collected = session.collected();
    let mut dropped = serde_json::Map::new();
    let mut total = 0;
    for (reason, n) in collected.losses() {
        if n > 0 {
            dropped.insert(reason.to_owned(), json!(n));
            total += n;
        }
    }
    let attached = session.attached.is_attached();
    let mut problems = Vec::new();
    if !up {
        problems.push(format!(
            "the target (PID {}) has exited",
            session.target.pid
        ));
    }
    if !attached {
        problems.push("the eBPF programs are detached".to_owned());
    }
    let json = json!({
        "status": if problems.is_empty() { "ok" } else { "unavailable" },
        "problems": problems,
        "target": {
            "pid": session.target.pid,
            "name": session.target.name,
            "up": up,
            "threads": threads,
        },
        "programs": session
            .attached
            .attachments
            .iter()
            .map(|what| json!({ "program": what, "attached": attached }))
            .collect::<Vec<_>>(),
        "events_dropped": total,
        "dropped_by_reason": dropped,
        "uptime_seconds": started.elapsed().as_secs(),
    });
    *health.lock().unwrap_or_else(PoisonError::into_inner) = Health {
        healthy: problems.is_empty(),
        json,
    };
}
