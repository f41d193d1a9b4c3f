//! The running `http` source: the accept loop (plain or TLS), the request handler, and the
//! batcher that hands records to the dataflow.
//!
//! ```text
//!  device ─POST─▶ connection task (hyper http1, TLS handshake, client CN)
//!               ─▶ handler: auth ─▶ Content-Length/Type ─▶ body ─▶ decode + device check
//!               ─▶ batcher queue (bounded by max_pending_rows) ──▶ one send per group
//!               ◀─ 200 after SourceContext::send_within returned, 503 if it did not in time
//! ```
//!
//! # Accepted means in the dataflow
//!
//! A handler answers 2xx only after the batch holding its records was taken by the
//! dataflow's ingress channel. The batcher groups the records of the requests waiting at
//! that moment into one batch (group commit): under load, many requests share one channel
//! send, and a lone request still goes out at once. Each request carries a deadline
//! (`send_timeout` after it arrived). A group is sent with the earliest deadline of its
//! requests as the bound; when the pipeline has not made room by then, nothing of the group
//! was sent (room is reserved before anything is sent) and every request of it is answered
//! 503 with `Retry-After`. Requests that would take the records waiting over
//! `max_pending_rows` are answered 503 at once: memory stays bounded by that number plus the
//! ingress channel, whatever the clients do.
//!
//! # Shutdown
//!
//! On the pipeline's shutdown signal the source stops accepting, lets requests in flight
//! finish (up to 5 seconds; idle keep-alive connections are closed), then drops its context,
//! which ends its input to the dataflow.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use edgeflow_engine::arrow::array::RecordBatch;
use edgeflow_engine::arrow::compute::concat_batches;
use edgeflow_engine::{BoxError, BoxFuture, SendWithinError, Source, SourceContext};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::auth::{TokenTable, bearer_token, certificate_common_name};
use super::decode::{BodyFormat, RecordDecoder, RecordError};
use super::options::InvalidRecords;

/// Most rows the batcher puts into one batch.
const MAX_GROUP_ROWS: usize = 16_384;

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a TLS handshake or the request head may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An answer: a JSON body held in one buffer.
type Reply = Response<Full<Bytes>>;

/// The connector value counting requests received.
const REQUESTS: &str = "requests";

/// The checked, ready-to-run source.
pub struct HttpSource {
    pub(crate) listener: std::net::TcpListener,
    pub(crate) address: SocketAddr,
    pub(crate) path: String,
    pub(crate) body_limit: u64,
    pub(crate) tokens: Option<TokenTable>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) mutual_tls: bool,
    pub(crate) decoder: RecordDecoder,
    pub(crate) invalid_records: InvalidRecords,
    pub(crate) send_timeout: Duration,
    pub(crate) max_pending_rows: usize,
    pub(crate) retry_after_secs: u64,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("address", &self.address)
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .field("mutual_tls", &self.mutual_tls)
            .finish_non_exhaustive()
    }
}

/// Who sent a request, as the connection tells it.
#[derive(Clone, Debug, Default)]
struct Peer {
    /// The subject CN of a verified client certificate.
    device: Option<Arc<str>>,
}

/// A request's records waiting for the batcher.
struct Pending {
    rows: RecordBatch,
    deadline: Instant,
    reply: oneshot::Sender<Outcome>,
}

/// What became of a request's records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// In the dataflow.
    Accepted,
    /// Not taken in time: nothing of them was sent.
    Busy,
    /// The pipeline is ending.
    Stopped,
}

/// What every handler shares.
struct Shared {
    ctx: Arc<SourceContext>,
    tokens: Option<TokenTable>,
    mutual_tls: bool,
    body_limit: u64,
    decoder: RecordDecoder,
    invalid_records: InvalidRecords,
    send_timeout: Duration,
    max_pending_rows: usize,
    pending_rows: Arc<AtomicUsize>,
    retry_after: HeaderValue,
    batcher: mpsc::Sender<Pending>,
    path: String,
}

impl Source for HttpSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move { self.serve(ctx).await })
    }
}

impl HttpSource {
    async fn serve(self, ctx: SourceContext) -> Result<(), BoxError> {
        self.listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(self.listener)?;
        let ctx = Arc::new(ctx);
        let mut shutdown = ctx.shutdown();
        let pending_rows = Arc::new(AtomicUsize::new(0));
        let (batcher_sender, batcher_receiver) = mpsc::channel(4096);
        let batcher = tokio::spawn(batcher(ctx.clone(), batcher_receiver, pending_rows.clone()));
        let shared = Arc::new(Shared {
            ctx: ctx.clone(),
            tokens: self.tokens,
            mutual_tls: self.mutual_tls,
            body_limit: self.body_limit,
            decoder: self.decoder,
            invalid_records: self.invalid_records,
            send_timeout: self.send_timeout,
            max_pending_rows: self.max_pending_rows,
            pending_rows,
            retry_after: HeaderValue::from(self.retry_after_secs),
            batcher: batcher_sender,
            path: self.path.clone(),
        });
        let acceptor = self.tls.map(tokio_rustls::TlsAcceptor::from);
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        info!(source = %ctx.name(), address = %self.address, path = %self.path, "Listening for {scheme} POSTs");
        ctx.metrics().set_value("listening", 1);

        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let accepted = tokio::select! {
                biased;
                () = shutdown.requested() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    warn!(source = %ctx.name(), "Cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Answers are small and written at once: never hold them back (Nagle).
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            let acceptor = acceptor.clone();
            let watcher = graceful.watcher();
            connections.spawn(async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HANDSHAKE_TIMEOUT);
                match acceptor {
                    None => {
                        let service = peer_service(shared, Peer::default());
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        if let Err(error) = watcher.watch(connection).await {
                            debug!(%remote, "HTTP connection ended: {error}");
                        }
                    }
                    Some(acceptor) => {
                        let stream =
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(error)) => {
                                    debug!(%remote, "TLS handshake failed: {error}");
                                    return;
                                }
                                Err(_) => {
                                    debug!(%remote, "TLS handshake timed out");
                                    return;
                                }
                            };
                        let device = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(|leaf| certificate_common_name(leaf))
                            .map(Arc::<str>::from);
                        let service = peer_service(shared, Peer { device });
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        if let Err(error) = watcher.watch(connection).await {
                            debug!(%remote, "HTTPS connection ended: {error}");
                        }
                    }
                }
            });
        }

        // Stop: no new connections; requests in flight finish, idle connections close.
        drop(listener);
        ctx.metrics().set_value("listening", 0);
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            warn!(source = %ctx.name(), "Requests still open after {DRAIN_TIMEOUT:?}; closing their connections");
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        // The handlers' state (and with it the batcher's sender) is gone with the
        // connections: the batcher answers what it holds and ends, and the context is
        // dropped after it.
        drop(shared);
        let _ = batcher.await;
        Ok(())
    }
}

/// The hyper service of one connection: routes each request, telling the handler who the
/// peer is. A plain hyper service rather than a router keeps a request to a few
/// allocations: one path, one method, no boxed body or future, no extension map.
fn peer_service(
    shared: Arc<Shared>,
    peer: Peer,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Reply,
    Error = Infallible,
    Future = impl Future<Output = Result<Reply, Infallible>> + Send,
> + Clone {
    let peer = Arc::new(peer);
    hyper::service::service_fn(move |request: Request<Incoming>| {
        let shared = shared.clone();
        let peer = peer.clone();
        async move { Ok(route(&shared, &peer, request).await) }
    })
}

async fn route(shared: &Shared, peer: &Peer, request: Request<Incoming>) -> Reply {
    if request.uri().path() != shared.path {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("no such path '{}'", request.uri().path()),
        );
    }
    if request.method() != Method::POST {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("use POST on '{}'", shared.path),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let (response, counted) = ingest(shared, peer, request).await;
    if !counted {
        shared.ctx.metrics().add_value(REQUESTS, 1);
    }
    response
}

/// Sends the records of waiting requests into the dataflow, a group at a time, and answers
/// each request.
async fn batcher(
    ctx: Arc<SourceContext>,
    mut receiver: mpsc::Receiver<Pending>,
    pending_rows: Arc<AtomicUsize>,
) {
    let schema = ctx.schema().clone();
    let mut group: Vec<Pending> = Vec::new();
    let mut on_time: Vec<Pending> = Vec::new();
    while let Some(first) = receiver.recv().await {
        group.clear();
        on_time.clear();
        let mut rows = first.rows.num_rows();
        group.push(first);
        while rows < MAX_GROUP_ROWS {
            match receiver.try_recv() {
                Ok(next) => {
                    rows += next.rows.num_rows();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        // One count per group rather than one per request: the counters sit behind a lock
        // that every IO thread would otherwise take once per request. It is counted before
        // any of these requests is answered.
        ctx.metrics().add_value(REQUESTS, group.len() as u64);
        // Requests whose deadline has passed are answered at once, without sending.
        let now = Instant::now();
        for pending in group.drain(..) {
            if pending.deadline <= now {
                pending_rows.fetch_sub(pending.rows.num_rows(), Ordering::Relaxed);
                let _ = pending.reply.send(Outcome::Busy);
            } else {
                on_time.push(pending);
            }
        }
        if on_time.is_empty() {
            continue;
        }
        let deadline = on_time.iter().map(|p| p.deadline).min().unwrap_or(now);
        let batch = if on_time.len() == 1 {
            Ok(on_time[0].rows.clone())
        } else {
            concat_batches(&schema, on_time.iter().map(|p| &p.rows))
        };
        let outcome = match batch {
            Ok(batch) => match ctx
                .send_within(batch, deadline.saturating_duration_since(now))
                .await
            {
                Ok(()) => Outcome::Accepted,
                Err(SendWithinError::Busy(_)) => Outcome::Busy,
                Err(SendWithinError::Stopped(_)) => Outcome::Stopped,
            },
            Err(error) => {
                // Every request's rows were built for this schema; this is a bug.
                warn!(source = %ctx.name(), "Internal error combining request batches: {error}. This is a bug: please report it");
                Outcome::Stopped
            }
        };
        for pending in on_time.drain(..) {
            pending_rows.fetch_sub(pending.rows.num_rows(), Ordering::Relaxed);
            let _ = pending.reply.send(outcome);
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A JSON response.
fn json_response(status: StatusCode, body: Bytes) -> Reply {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON response holding `value`.
fn json_value(status: StatusCode, value: &serde_json::Value) -> Reply {
    json_response(status, Bytes::from(value.to_string()))
}

/// A JSON error response.
fn error_response(status: StatusCode, message: impl Into<String>) -> Reply {
    json_value(status, &json!({ "error": message.into() }))
}

/// `{"accepted":N}`, the answer to almost every request, without building a JSON value.
fn accepted_response(accepted: usize) -> Reply {
    let body = if accepted == 1 {
        Bytes::from_static(b"{\"accepted\":1}")
    } else {
        Bytes::from(format!("{{\"accepted\":{accepted}}}"))
    };
    json_response(StatusCode::OK, body)
}

/// Why a body could not be read.
enum BodyError {
    TooLarge,
    Unreadable(hyper::Error),
}

/// Reads a whole body of at most `limit` bytes. A body that arrives in one piece (the
/// usual small POST) is handed on as it is, without a copy.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Unreadable)?.into_data() else {
            continue;
        };
        total += data.len();
        if total > limit {
            return Err(BodyError::TooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            None => joined.extend_from_slice(&data),
            Some(earlier) => {
                joined.reserve(total);
                joined.extend_from_slice(&earlier);
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

fn errors_json(errors: &[RecordError]) -> serde_json::Value {
    serde_json::Value::Array(
        errors
            .iter()
            .map(|e| json!({ "record": e.record, "reason": e.reason, "message": e.message }))
            .collect(),
    )
}

/// Counts each invalid record under its reason, and the valid records refused with them.
fn count_refused(ctx: &SourceContext, errors: &[RecordError], refused_valid: usize) {
    for error in errors {
        ctx.metrics().count_dropped(error.reason, 1);
    }
    ctx.metrics()
        .count_dropped("rejected_with_request", refused_valid);
}

/// Handles one POST; also says whether the batcher counted the request (it counts those it
/// takes, a group at a time).
async fn ingest(shared: &Shared, peer: &Peer, request: Request<Incoming>) -> (Reply, bool) {
    let arrival = now_ms();
    let ctx = &shared.ctx;
    let (parts, body) = request.into_parts();

    // 1. Who is writing. Nothing of an unauthenticated request is read.
    let identity: Option<Arc<str>> = match (&peer.device, &shared.tokens) {
        (Some(device), _) => Some(device.clone()),
        (None, Some(tokens)) => {
            let token = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer_token);
            match token.and_then(|t| tokens.device(t)) {
                Some(device) => Some(Arc::from(device)),
                None => {
                    ctx.metrics().count_dropped("unauthenticated", 1);
                    let message = if token.is_some() {
                        "unknown bearer token"
                    } else if shared.mutual_tls {
                        "no client certificate and no bearer token; send 'Authorization: Bearer <token>' or connect with a device certificate"
                    } else {
                        "missing bearer token; send 'Authorization: Bearer <token>'"
                    };
                    let mut response = error_response(StatusCode::UNAUTHORIZED, message);
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"edgeflow\""),
                    );
                    return (response, false);
                }
            }
        }
        (None, None) if shared.mutual_tls => {
            // Only reachable if the handshake let a client without a certificate in.
            ctx.metrics().count_dropped("unauthenticated", 1);
            return (
                error_response(StatusCode::UNAUTHORIZED, "a client certificate is required"),
                false,
            );
        }
        (None, None) => None,
    };

    // 2. What is coming: size and type, before reading the body.
    if let Some(length) = content_length(&parts.headers)
        && length > shared.body_limit
    {
        ctx.metrics().count_dropped("body_too_large", 1);
        return (
            error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the body of {length} bytes is larger than body_limit ({} bytes); send fewer records per request",
                    shared.body_limit
                ),
            ),
            false,
        );
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let Some(format) = content_type.and_then(BodyFormat::from_content_type) else {
        ctx.metrics().count_dropped("unsupported_media_type", 1);
        let given = match content_type {
            Some(value) => format!("unsupported Content-Type '{value}'"),
            None => "no Content-Type".to_string(),
        };
        return (
            error_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "{given}; send application/json (an object or an array of objects) or application/x-ndjson (one object per line)"
                ),
            ),
            false,
        );
    };

    // 3. The body, never more than body_limit (chunked bodies have no Content-Length).
    let limit = usize::try_from(shared.body_limit).unwrap_or(usize::MAX);
    let bytes = match read_body(body, limit).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            ctx.metrics().count_dropped("body_too_large", 1);
            return (
                error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the body is larger than body_limit ({} bytes); send fewer records per request",
                        shared.body_limit
                    ),
                ),
                false,
            );
        }
        Err(BodyError::Unreadable(error)) => {
            ctx.metrics().count_dropped("body_unreadable", 1);
            return (
                error_response(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {error}"),
                ),
                false,
            );
        }
    };

    // 4. Records.
    let decoded = shared
        .decoder
        .decode(&bytes, format, identity.as_deref(), arrival);
    ctx.metrics().add_rows_in(decoded.records);
    let valid = decoded.valid();
    let wrong_device: Vec<RecordError> = decoded
        .errors
        .iter()
        .filter(|e| e.reason == "wrong_device")
        .cloned()
        .collect();
    if !wrong_device.is_empty() {
        // Writing for another device refuses the whole request, whatever the policy.
        count_refused(ctx, &decoded.errors, valid);
        let device = identity.as_deref().unwrap_or("?");
        let body = json!({
            "error": format!("device '{device}' may only write its own readings; nothing of this request was kept"),
            "accepted": 0,
            "rejected": decoded.records,
            "errors": errors_json(&wrong_device),
        });
        return (json_value(StatusCode::FORBIDDEN, &body), false);
    }
    let keep_valid = shared.invalid_records == InvalidRecords::KeepValid;
    if !decoded.errors.is_empty() && (!keep_valid || valid == 0) {
        count_refused(ctx, &decoded.errors, valid);
        let mut body = json!({
            "error": if decoded.errors.len() == 1 {
                decoded.errors[0].message.clone()
            } else {
                format!("{} of {} records are invalid; nothing of this request was kept", decoded.errors.len(), decoded.records)
            },
            "accepted": 0,
            "rejected": decoded.records,
            "errors": errors_json(&decoded.errors),
        });
        if format == BodyFormat::Json
            && decoded
                .errors
                .iter()
                .any(|e| e.record == 0 && e.message.contains("trailing characters"))
        {
            body["hint"] =
                json!("for one JSON object per line, send Content-Type: application/x-ndjson");
        }
        return (json_value(StatusCode::BAD_REQUEST, &body), false);
    }
    let Some(rows) = decoded.rows else {
        // No records and no errors cannot happen (an empty body is an error); answer anyway.
        return (accepted_response(0), false);
    };

    // 5. Into the dataflow, then answer.
    let (outcome, counted) = enqueue(shared, rows, valid).await;
    let response = match outcome {
        Outcome::Accepted => {
            for error in &decoded.errors {
                ctx.metrics().count_dropped(error.reason, 1);
            }
            if decoded.errors.is_empty() {
                accepted_response(valid)
            } else {
                let body = json!({
                    "accepted": valid,
                    "rejected": decoded.errors.len(),
                    "errors": errors_json(&decoded.errors),
                });
                json_value(StatusCode::OK, &body)
            }
        }
        Outcome::Busy | Outcome::Stopped => {
            // The valid records were refused for want of room; the invalid ones (kept out
            // under keep_valid) still count under their own reasons.
            for error in &decoded.errors {
                ctx.metrics().count_dropped(error.reason, 1);
            }
            ctx.metrics().count_dropped("overloaded", valid);
            let message = if outcome == Outcome::Busy {
                "the pipeline is not keeping up; nothing of this request was kept, retry later"
            } else {
                "the pipeline is shutting down; nothing of this request was kept, retry later"
            };
            let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, message);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, shared.retry_after.clone());
            response
        }
    };
    (response, counted)
}

/// Queues `rows` for the batcher and waits for its answer; `Busy` at once when too many
/// records already wait. Also says whether the batcher took (and counted) the request.
async fn enqueue(shared: &Shared, rows: RecordBatch, count: usize) -> (Outcome, bool) {
    let before = shared.pending_rows.fetch_add(count, Ordering::Relaxed);
    if before + count > shared.max_pending_rows && before > 0 {
        shared.pending_rows.fetch_sub(count, Ordering::Relaxed);
        return (Outcome::Busy, false);
    }
    let (reply, answer) = oneshot::channel();
    let pending = Pending {
        rows,
        deadline: Instant::now() + shared.send_timeout,
        reply,
    };
    if let Err(error) = shared.batcher.try_send(pending) {
        shared.pending_rows.fetch_sub(count, Ordering::Relaxed);
        let outcome = match error {
            mpsc::error::TrySendError::Full(_) => Outcome::Busy,
            mpsc::error::TrySendError::Closed(_) => Outcome::Stopped,
        };
        return (outcome, false);
    }
    // The batcher answers every request it takes; a dropped reply means it ended (and may
    // not have counted it, which only matters at shutdown).
    (answer.await.unwrap_or(Outcome::Stopped), true)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}
