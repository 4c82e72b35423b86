//! The HTTP side of `serve`, on its own thread and runtime: routes, query
//! checks, the one-request-per-kind rule, and the answers. Metrics and health
//! are read from what the session thread last published; profiles are asked
//! of the session thread and awaited.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus::{Encoder as _, Registry, TextEncoder};
use tokio::sync::{mpsc, oneshot, watch};

use super::health::Health;
use crate::model::ProfileKind;

/// A profile asked for over HTTP.
pub struct ProfileRequest {
    pub kind: ProfileKind,
    /// Over the next N seconds; `None`: everything since the server started.
    pub seconds: Option<u64>,
    /// Go's `debug` rendering: 0 for pprof, 1 and 2 for the goroutine
    /// profile's texts.
    pub debug: u8,
    pub reply: oneshot::Sender<ProfileReply>,
}

/// The session thread's answer to a [`ProfileRequest`].
pub enum ProfileReply {
    /// A gzipped pprof profile.
    Pprof(Vec<u8>),
    /// A text rendering (Go's `debug=1` and `debug=2`).
    Text(String),
    /// Nothing to profile (the target exited); the sentence says why.
    Unavailable(String),
    /// Building the profile failed.
    Failed(String),
}

/// The longest profile one request may ask for, in seconds.
pub const MAX_SECONDS: u64 = 300;
/// Go's net/http/pprof default for /debug/pprof/profile without `seconds`.
const DEFAULT_CPU_SECONDS: u64 = 30;
/// How long open connections get to finish once the server is stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub health: Arc<Mutex<Health>>,
    pub requests: mpsc::UnboundedSender<ProfileRequest>,
    /// When the profile of this kind being taken ends, in milliseconds
    /// since the Unix epoch; 0 when none is (by [`ProfileKind::index`]).
    pub busy: Arc<[AtomicU64; ProfileKind::COUNT]>,
    pub scrapes: Arc<AtomicU64>,
    pub profiles: Arc<AtomicU64>,
    /// The target is a Go program: `mutex` and `block` are Go's own kinds
    /// (gomutex, goblock); `futex` and `offcpu` keep the kernel's view.
    pub go: bool,
    /// goblock is recorded (`--go-block`).
    pub go_block: bool,
}

/// Serves until `stop` turns true, then gives open connections a moment.
pub fn serve(
    listener: std::net::TcpListener,
    state: AppState,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("cannot serve on the listening socket")?;
        let mut graceful = stop.clone();
        let server = axum::serve(listener, router(state))
            .with_graceful_shutdown(async move {
                let _ = graceful.wait_for(|stop| *stop).await;
            })
            .into_future();
        let mut hard = stop;
        let deadline = async move {
            let _ = hard.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            served = server => served.context("the HTTP server failed"),
            () = deadline => Ok(()),
        }
    })
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/debug/pprof/", get(index))
        .route("/debug/pprof/profile", get(cpu_profile))
        .route("/debug/pprof/mutex", get(mutex_profile))
        .route("/debug/pprof/block", get(block_profile))
        .route("/debug/pprof/futex", get(futex_profile))
        .route("/debug/pprof/offcpu", get(offcpu_profile))
        .route("/debug/pprof/goroutine", get(goroutine_profile))
        .route("/debug/pprof/heap", get(heap_profile))
        .fallback(not_found)
        .with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

const ENDPOINTS: &str = "/metrics, /healthz, /debug/pprof/profile?seconds=N, /debug/pprof/mutex[?seconds=N], /debug/pprof/block[?seconds=N], /debug/pprof/futex[?seconds=N], /debug/pprof/offcpu[?seconds=N], /debug/pprof/goroutine[?debug=1|2], /debug/pprof/heap (Go programs)";

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("no such endpoint; this server has {ENDPOINTS}"),
    )
}

async fn index() -> Response {
    text(
        StatusCode::OK,
        "profiles of the target, as Go's net/http/pprof serves them:\n\
         profile  on-CPU samples over the next N seconds (?seconds=N, default 30)\n\
         mutex    lock contention: since the server started, or over ?seconds=N; for a Go program Go's own \
         (sync.Mutex and RWMutex, delay charged to the unlocking stack), else futex waits by lock\n\
         block    blocking: since the server started, or over ?seconds=N; for a Go program Go's own \
         (goroutine waits by wait reason; not with --no-go-block), else off-CPU time (blocked and preempted)\n\
         futex    futex waits by lock, for any program: since the server started, or over ?seconds=N\n\
         offcpu   off-CPU time (blocked and preempted), for any program: since the server started, or over ?seconds=N\n\
         goroutine  a Go program's goroutines now: pprof, or Go's texts with ?debug=1 (stacks counted) or ?debug=2 (every goroutine)\n\
         heap     a Go program's heap profile as of its last GC, read from its runtime (Go's four sample types)\n",
    )
}

async fn metrics(State(state): State<AppState>) -> Response {
    state.scrapes.fetch_add(1, Ordering::Relaxed);
    let families = state.registry.gather();
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&families, &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        )
            .into_response(),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {err}"),
        ),
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    let (healthy, body) = {
        let health = state.health.lock().unwrap_or_else(PoisonError::into_inner);
        (health.healthy, health.json.to_string())
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
        .into_response()
}

type Params = Query<HashMap<String, String>>;

async fn cpu_profile(State(state): State<AppState>, Query(params): Params) -> Response {
    profile(state, ProfileKind::Cpu, &params, Some(DEFAULT_CPU_SECONDS)).await
}

async fn mutex_profile(State(state): State<AppState>, Query(params): Params) -> Response {
    let kind = if state.go {
        ProfileKind::GoMutex
    } else {
        ProfileKind::Futex
    };
    profile(state, kind, &params, None).await
}

async fn block_profile(State(state): State<AppState>, Query(params): Params) -> Response {
    let kind = match (state.go, state.go_block) {
        (false, _) => ProfileKind::OffCpu,
        (true, true) => ProfileKind::GoBlock,
        (true, false) => {
            return text(
                StatusCode::NOT_FOUND,
                "goroutine blocking is not recorded: serve was started with --no-go-block; /debug/pprof/offcpu has the threads' off-CPU time",
            );
        }
    };
    profile(state, kind, &params, None).await
}

async fn futex_profile(State(state): State<AppState>, Query(params): Params) -> Response {
    profile(state, ProfileKind::Futex, &params, None).await
}

async fn offcpu_profile(State(state): State<AppState>, Query(params): Params) -> Response {
    profile(state, ProfileKind::OffCpu, &params, None).await
}

/// Go's heap profile now, read from the runtime's buckets on a blocking
/// thread (a snapshot, so no `seconds`), as Go's `/debug/pprof/heap`
/// serves it. The target's pid is the one `/healthz` publishes.
async fn heap_profile(State(state): State<AppState>, Query(params): Params) -> Response {
    if params.contains_key("seconds") {
        return text(
            StatusCode::BAD_REQUEST,
            "the heap profile is the heap as of the last GC; ?seconds= (a difference over time) is not served",
        );
    }
    if let Err(message) = parse_debug(&params, ProfileKind::Cpu) {
        return text(StatusCode::BAD_REQUEST, message);
    }
    let pid = {
        let health = state.health.lock().unwrap_or_else(PoisonError::into_inner);
        health.json["target"]["pid"]
            .as_u64()
            .and_then(|pid| u32::try_from(pid).ok())
    };
    let Some(pid) = pid.filter(|_| state.go) else {
        return text(
            StatusCode::NOT_FOUND,
            "the target is not a Go program: the heap profile is the Go runtime's own",
        );
    };
    match tokio::task::spawn_blocking(move || crate::commands::go_heap::heap_pprof_now(pid)).await {
        Ok(Ok(bytes)) => {
            state.profiles.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"heap\""),
                ],
                bytes,
            )
                .into_response()
        }
        Ok(Err(message)) => text(StatusCode::SERVICE_UNAVAILABLE, message),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the heap profile failed: {err}"),
        ),
    }
}

async fn goroutine_profile(State(state): State<AppState>, Query(params): Params) -> Response {
    profile(state, ProfileKind::Goroutines, &params, None).await
}

/// `debug`: Go's renderings of the goroutine profile (0 pprof, 1 and 2
/// text); only 0 for the other profiles.
pub fn parse_debug(params: &HashMap<String, String>, kind: ProfileKind) -> Result<u8, String> {
    let Some(text) = params.get("debug") else {
        return Ok(0);
    };
    match (text.trim(), kind) {
        ("0", _) => Ok(0),
        ("1", ProfileKind::Goroutines) => Ok(1),
        ("2", ProfileKind::Goroutines) => Ok(2),
        (_, ProfileKind::Goroutines) => Err(format!(
            "debug must be 0 (pprof), 1 (stacks counted) or 2 (every goroutine), got {text:?}"
        )),
        _ => Err(
            "only the binary pprof format is served (debug=0); read it with go tool pprof"
                .to_owned(),
        ),
    }
}

/// `seconds`: a whole number from 1 to [`MAX_SECONDS`], or the default.
pub fn parse_seconds(
    params: &HashMap<String, String>,
    default: Option<u64>,
) -> Result<Option<u64>, String> {
    let Some(text) = params.get("seconds") else {
        return Ok(default);
    };
    match text.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_SECONDS).contains(&n) => Ok(Some(n)),
        Ok(n) => Err(format!("seconds must be from 1 to {MAX_SECONDS}, got {n}")),
        Err(_) => Err(format!(
            "seconds must be a whole number of seconds from 1 to {MAX_SECONDS}, got {text:?}"
        )),
    }
}

/// Marks a kind busy while a request for it runs (also when the client
/// goes away and the handler is dropped).
struct Busy<'a>(&'a AtomicU64);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn profile(
    state: AppState,
    kind: ProfileKind,
    params: &HashMap<String, String>,
    default_seconds: Option<u64>,
) -> Response {
    // Go's debug=1 and 2 ask for text renderings, served for goroutines.
    let debug = match parse_debug(params, kind) {
        Ok(debug) => debug,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let seconds = match parse_seconds(params, default_seconds) {
        Ok(seconds) => seconds,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let flag = &state.busy[kind.index()];
    let ends = unix_ms() + 1000 * seconds.unwrap_or(1);
    if let Err(running_until) = flag.compare_exchange(0, ends, Ordering::AcqRel, Ordering::Acquire)
    {
        let wait = running_until
            .saturating_sub(unix_ms())
            .div_ceil(1000)
            .max(1);
        let mut response = text(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "a {} profile is already being taken (done in about {wait} s); one at a time per kind, try again then",
                kind.name()
            ),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(wait));
        return response;
    }
    let _busy = Busy(flag);
    let (reply, answer) = oneshot::channel();
    let request = ProfileRequest {
        kind,
        seconds,
        debug,
        reply,
    };
    if state.requests.send(request).is_err() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the profiler is shutting down",
        );
    }
    match answer.await {
        Ok(ProfileReply::Pprof(bytes)) => {
            state.profiles.fetch_add(1, Ordering::Relaxed);
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"profile\"",
                    ),
                ],
                bytes,
            )
                .into_response()
        }
        Ok(ProfileReply::Text(body)) => {
            state.profiles.fetch_add(1, Ordering::Relaxed);
            text(StatusCode::OK, body)
        }
        Ok(ProfileReply::Unavailable(message)) => text(StatusCode::SERVICE_UNAVAILABLE, message),
        Ok(ProfileReply::Failed(message)) => text(StatusCode::INTERNAL_SERVER_ERROR, message),
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the profiler stopped before the profile was done",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(seconds: &str) -> HashMap<String, String> {
        HashMap::from([("seconds".to_owned(), seconds.to_owned())])
    }

    #[test]
    fn seconds_are_checked() {
        assert_eq!(parse_seconds(&HashMap::new(), Some(30)), Ok(Some(30)));
        assert_eq!(parse_seconds(&HashMap::new(), None), Ok(None));
        assert_eq!(parse_seconds(&params("5"), None), Ok(Some(5)));
        assert_eq!(parse_seconds(&params("300"), None), Ok(Some(300)));
        for bad in ["0", "301", "abc", "-1", "1.5", ""] {
            let err = parse_seconds(&params(bad), Some(30)).expect_err(bad);
            assert!(err.contains("from 1 to 300"), "{err}");
        }
    }
}
