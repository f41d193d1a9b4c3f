//! The operations server of `edgeflow run` (`[server] listen = "127.0.0.1:9400"`): liveness,
//! readiness, Prometheus metrics and the live graph, for systemd, Kubernetes/KubeEdge probes
//! and Prometheus.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /health` | 200 `{"status":"ok",…}` while the process serves and every dataflow worker steps; 503 with `reasons` naming a stalled or panicked worker (see [`liveness`]) |
//! | `GET /ready` | 200 when every node runs, sources are connected, sinks write and watermarks advance; 503 with `reasons` otherwise (see [`readiness`]) |
//! | `GET /metrics` | Prometheus text format (see [`prometheus`]) |
//! | `GET /api/pipeline` | the graph (nodes, kinds, inputs, schemas) with live counters (see [`pipeline`]) |
//!
//! It lives in the CLI crate because it is the one place that sees both the plan (for the
//! graph) and the pipeline's metrics, and because it reports on the process. It runs on its
//! own single-threaded tokio runtime on its own thread, so a busy pipeline (whose IO runtime
//! serves the sources and sinks) cannot starve the probes; it starts before the pipeline runs
//! and stops after it ended.

pub mod liveness;
pub mod pipeline;
pub mod process;
pub mod prometheus;
pub mod readiness;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use edgeflow_engine::{PipelineMetrics, ShutdownSignal};
use serde_json::json;
use tokio::sync::oneshot;

use self::pipeline::PipelineDescription;
use self::readiness::Progress;

/// What the handlers share.
struct OpsState {
    description: PipelineDescription,
    metrics: Arc<PipelineMetrics>,
    shutdown: ShutdownSignal,
    started: Instant,
    stall: Option<Duration>,
    worker_stall: Duration,
    progress: Mutex<Progress>,
}

impl OpsState {
    fn phase(&self) -> &'static str {
        if self.shutdown.is_requested() {
            "stopping"
        } else {
            "running"
        }
    }

    fn observe(&self) -> Vec<edgeflow_engine::NodeSnapshot> {
        let snapshots = self.metrics.snapshot();
        let mut progress = self.progress.lock().unwrap_or_else(|p| p.into_inner());
        progress.observe(&snapshots, Instant::now());
        snapshots
    }

    /// Why the workers are not healthy (empty: healthy).
    fn liveness(&self) -> (Vec<edgeflow_engine::metrics::WorkerSnapshot>, Vec<String>) {
        let workers = self.metrics.workers();
        let reasons = liveness::reasons(&workers, self.worker_stall);
        (workers, reasons)
    }

    /// Every node's messages (such as why a sink is not writable), by node name.
    fn messages(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.metrics
            .nodes()
            .iter()
            .map(|node| (node.name().to_string(), node.messages()))
            .filter(|(_, messages)| !messages.is_empty())
            .collect()
    }
}

/// A running operations server; [`OpsServer::stop`] ends it.
pub struct OpsServer {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OpsServer {
    /// Binds `listen` and starts serving on a thread of its own; `/health` fails for a
    /// worker that has not stepped for [`liveness::WORKER_STALL`].
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local), or the thread cannot start.
    pub fn start(
        listen: &str,
        stall: Option<Duration>,
        description: PipelineDescription,
        metrics: Arc<PipelineMetrics>,
        shutdown: ShutdownSignal,
    ) -> Result<Self> {
        Self::start_with_worker_stall(
            listen,
            stall,
            liveness::WORKER_STALL,
            description,
            metrics,
            shutdown,
        )
    }

    /// [`OpsServer::start`] with the time a worker may go without a step before `/health`
    /// fails.
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local), or the thread cannot start.
    pub fn start_with_worker_stall(
        listen: &str,
        stall: Option<Duration>,
        worker_stall: Duration,
        description: PipelineDescription,
        metrics: Arc<PipelineMetrics>,
        shutdown: ShutdownSignal,
    ) -> Result<Self> {
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("cannot start the operations server on {listen}"))?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let state = Arc::new(OpsState {
            description,
            metrics,
            shutdown,
            started: Instant::now(),
            stall,
            worker_stall,
            progress: Mutex::new(Progress::default()),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the operations server's runtime")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("edgeflow-ops".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!("Operations server cannot listen: {error}");
                            return;
                        }
                    };
                    // Progress is sampled every second, so a stall is seen even when nobody
                    // polls /ready.
                    let sampler_state = state.clone();
                    let sampler = tokio::spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_secs(1));
                        loop {
                            tick.tick().await;
                            sampler_state.observe();
                        }
                    });
                    let router = Router::new()
                        .route("/health", get(health))
                        .route("/ready", get(ready))
                        .route("/metrics", get(metrics_text))
                        .route("/api/pipeline", get(api_pipeline))
                        .with_state(state);
                    let served = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(error) = served {
                        tracing::error!("Operations server failed: {error}");
                    }
                    sampler.abort();
                });
            })
            .context("cannot start the operations server's thread")?;
        tracing::info!(address = %address, "Operations server listening (/health, /ready, /metrics, /api/pipeline)");
        Ok(Self {
            address,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port chosen when `listen` asked for port 0).
    #[cfg(test)]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops serving and waits for the thread.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        tracing::debug!(address = %self.address, "Operations server stopped");
    }
}

async fn health(State(state): State<Arc<OpsState>>) -> Response {
    let (workers, reasons) = state.liveness();
    let mut body = json!({
        "status": if reasons.is_empty() { "ok" } else { "unhealthy" },
        "phase": state.phase(),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "workers": liveness::workers_json(&workers),
    });
    if reasons.is_empty() {
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        body["reasons"] = json!(reasons);
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}

async fn ready(State(state): State<Arc<OpsState>>) -> Response {
    let snapshots = state.observe();
    let messages = state.messages();
    let mut reasons = Vec::new();
    if state.shutdown.is_requested() {
        reasons.push("the pipeline is stopping".to_string());
    }
    // A process that is not alive is not ready either.
    reasons.extend(state.liveness().1);
    {
        let progress = state.progress.lock().unwrap_or_else(|p| p.into_inner());
        reasons.extend(progress.reasons(
            &state.description,
            &snapshots,
            &messages,
            state.stall,
            Instant::now(),
        ));
    }
    if reasons.is_empty() {
        (StatusCode::OK, axum::Json(json!({ "status": "ready" }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "not ready", "reasons": reasons })),
        )
            .into_response()
    }
}

async fn metrics_text(State(state): State<Arc<OpsState>>) -> Response {
    let snapshots = state.observe();
    let text = prometheus::render(
        &state.description.name,
        snapshots,
        state.metrics.workers(),
        process::read(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn api_pipeline(State(state): State<Arc<OpsState>>) -> Response {
    let snapshots = state.observe();
    axum::Json(pipeline::document(
        &state.description,
        &snapshots,
        state.phase(),
        state.started.elapsed(),
    ))
    .into_response()
}

#[cfg(test)]
mod tests;
