//! The running `flight` sink: rows are cut into batch-groups, each written to the spool as a
//! segment, and a sender task ships the spool to the collector in id order, one `DoPut` per
//! segment, deleting a segment only on the collector's [`SegmentAck`].
//!
//! Two tasks share the [`Spool`] behind a mutex (held only for bookkeeping; file IO runs on
//! blocking threads):
//!
//! ```text
//! SinkInput ─▶ receiver: Batcher ─▶ encode ─▶ Spool::append ──▶ (notify)
//!                  ▲ full_policy = block: stops receiving until the sender frees space
//! sender: Spool::take_next ─▶ read segment ─▶ DoPut ─▶ ack ─▶ Spool::remove ─▶ (notify)
//! ```
//!
//! The sender connects lazily, retries with [`Backoff`] (exponential, jittered), logs each
//! failure with the endpoint and reason at warn, and never ends the pipeline: while the link
//! is down the spool grows up to `max_spool_size`, then the full policy applies. At the end of
//! the input the receiver writes what it holds, waits up to `drain_timeout` for the spool to
//! empty, and returns; what is left is sent first on the next run.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use arrow::array::RecordBatch;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::FlightClient;
use arrow_flight::encode::FlightDataEncoderBuilder;
use edgeflow_engine::arrow::datatypes::SchemaRef;
use edgeflow_engine::{
    BoxError, BoxFuture, NodeMetrics, OptionError, Sink, SinkEvent, SinkInput, SinkSummary,
    parse_options,
};
use futures::TryStreamExt;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::batcher::Batcher;
use super::options::{FlightSettings, FlightSinkConfig, FullPolicy, default_stream};
use super::protocol::{SegmentAck, SegmentRef, check_stream_name};
use super::spool::{Segment, Spool, SpoolError, encode, read_segment};
use super::tls::{Link, LinkError, error_chain};
use crate::error::ConnectorError;
use crate::mqtt::connection::Backoff;
use crate::{SinkConfig, SinkKind};

/// The `flight` sink kind.
pub const KIND: SinkKind = SinkKind {
    name: "flight",
    summary: "Ships rows to an Arrow Flight collector over mutual TLS, with a store-and-forward spool",
    parse,
};

fn parse(table: toml::Table) -> Result<Box<dyn SinkConfig>, OptionError> {
    parse_options::<FlightSinkConfig>(table).map(|c| Box::new(c) as Box<dyn SinkConfig>)
}

impl SinkConfig for FlightSinkConfig {
    fn check(&self, input: &SchemaRef) -> Vec<OptionError> {
        let mut errors = self.plan().err().unwrap_or_default();
        if input.fields().is_empty() {
            errors.push(OptionError::at(
                "inputs",
                "the input has no columns; there is nothing to send",
            ));
        }
        errors
    }

    fn build(&self, input: &SchemaRef) -> Result<Box<dyn Sink>, BoxError> {
        let errors = self.check(input);
        if !errors.is_empty() {
            return Err(ConnectorError::Options(errors).into());
        }
        let settings = self.plan().map_err(ConnectorError::Options)?;
        // Read the TLS files now, so a bad one stops the start with its name.
        let link = Link::new(
            settings.endpoint.clone(),
            settings.tls.as_ref(),
            settings.connect_timeout,
            settings.request_timeout,
        )?;
        // Create the spool folder now: a folder that cannot be made stops the start.
        std::fs::create_dir_all(&settings.spool).map_err(|error| ConnectorError::CreateOutput {
            path: settings.spool.display().to_string(),
            reason: crate::error::io_reason(&error),
        })?;
        Ok(Box::new(FlightSink {
            settings,
            link,
            schema: input.clone(),
        }))
    }
}

/// The running `flight` sink.
#[derive(Debug)]
pub struct FlightSink {
    settings: FlightSettings,
    link: Link,
    schema: SchemaRef,
}

/// What the receiver and the sender share.
struct Shared {
    spool: Mutex<Spool>,
    /// A segment was appended (wakes the sender).
    appended: Notify,
    /// A segment was removed (wakes a blocked or draining receiver).
    freed: Notify,
    metrics: Arc<NodeMetrics>,
}

impl Shared {
    fn spool(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the spool's level values.
    fn publish(&self) {
        let spool = self.spool();
        self.metrics.set_value("spool_bytes", spool.bytes());
        self.metrics.set_value("spool_segments", spool.len() as u64);
        let age = spool.oldest_created().map_or(0, |created| {
            SystemTime::now()
                .duration_since(created)
                .map_or(0, |d| d.as_secs())
        });
        self.metrics.set_value("oldest_unsent_age_seconds", age);
    }
}

/// Runs a blocking closure on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ConnectorError::Internal(format!("flight sink file task failed: {e}")))
}

impl Sink for FlightSink {
    fn run(self: Box<Self>, input: SinkInput) -> BoxFuture<'static, Result<SinkSummary, BoxError>> {
        Box::pin(async move { self.run_loop(input).await.map_err(BoxError::from) })
    }
}

/// How a segment is waiting to enter the spool.
enum Admit {
    Written,
    /// `full_policy = block` and no room: wait for the sender.
    Full,
}

impl FlightSink {
    async fn run_loop(self, mut input: SinkInput) -> Result<SinkSummary, ConnectorError> {
        let settings = self.settings.clone();
        let stream = settings
            .stream
            .clone()
            .unwrap_or_else(|| default_stream(input.pipeline(), input.name()));
        if let Err(error) = check_stream_name(&stream) {
            return Err(ConnectorError::Internal(format!(
                "default stream name: {error}"
            )));
        }
        let metrics = input.metrics().clone();
        for name in [
            "sent_rows",
            "sent_bytes",
            "acks",
            "retries",
            "dropped_segments",
            "dropped_rows",
            "connected",
            "corrupt_segments",
        ] {
            metrics.add_value(name, 0);
        }
        let dir = settings.spool.clone();
        let (spool, report) = blocking(move || Spool::open(&dir))
            .await?
            .map_err(spool_error)?;
        for (path, reason) in &report.corrupt {
            warn!(sink = %input.name(), file = %path.display(), "Spool segment is damaged and was moved aside: {reason}");
        }
        metrics.add_value("corrupt_segments", report.corrupt.len() as u64);
        if let Some(reason) = &report.floor_reset {
            warn!(sink = %input.name(), "Spool id floor lost ({reason}); continuing from a time-based id so no id is reused");
        }
        if !spool.is_empty() {
            info!(sink = %input.name(), segments = spool.len(), bytes = spool.bytes(), spool = %spool.dir().display(), "Spool holds segments from an earlier run; sending them first");
        }
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            appended: Notify::new(),
            freed: Notify::new(),
            metrics: metrics.clone(),
        });
        shared.publish();
        let sender = tokio::spawn(send_loop(
            shared.clone(),
            self.link.clone(),
            stream.clone(),
            settings.clone(),
            input.name().to_string(),
        ));

        let result = self.receive(&mut input, &shared).await;
        // Drain for a bounded time, whatever happened, then stop the sender.
        let deadline = tokio::time::Instant::now() + settings.drain_timeout;
        loop {
            if shared.spool().is_empty() || sender.is_finished() {
                break;
            }
            tokio::select! {
                () = shared.freed.notified() => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        sender.abort();
        let _ = sender.await;
        metrics.set_value("connected", 0);
        shared.publish();
        let left = {
            let spool = shared.spool();
            (spool.len(), spool.segments().map(|s| s.rows).sum::<u64>())
        };
        if left.0 > 0 {
            warn!(sink = %input.name(), endpoint = %self.link.endpoint(), segments = left.0, rows = left.1, "Flight collector did not acknowledge everything within drain_timeout ({:?}); the rest stays in the spool for the next run", settings.drain_timeout);
        }
        result?;
        let snapshot = metrics.snapshot();
        Ok(SinkSummary {
            rows: snapshot.values.get("sent_rows").copied().unwrap_or(0),
            files: snapshot.values.get("acks").copied().unwrap_or(0),
        })
    }

    /// Takes rows until the input ends, spooling each complete group.
    async fn receive(
        &self,
        input: &mut SinkInput,
        shared: &Arc<Shared>,
    ) -> Result<(), ConnectorError> {
        let settings = &self.settings;
        let mut batcher = Batcher::new(
            settings.batch_rows,
            settings.batch_bytes,
            settings.batch_interval,
        );
        let mut ticks = tokio::time::interval(
            (settings.batch_interval / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
        );
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut shutdown = input.shutdown();
        // Once the pipeline is asked to stop, `block` gives way: segments are spooled past the
        // limit so the pipeline can finish instead of waiting for the link forever.
        let mut stopping = false;
        // Encoded groups waiting for room (full_policy = block).
        let mut waiting: Option<(Vec<u8>, u64)> = None;
        loop {
            if let Some((data, rows)) = waiting.take() {
                match self
                    .admit(shared, &data, rows, stopping, input.name())
                    .await?
                {
                    Admit::Written => {}
                    Admit::Full => {
                        waiting = Some((data, rows));
                        tokio::select! {
                            () = shared.freed.notified() => {}
                            () = shutdown.requested(), if !stopping => {
                                stopping = true;
                                warn!(sink = %input.name(), "Pipeline stopping while the spool is full; spooling the remaining rows past max_spool_size");
                            }
                            _ = ticks.tick() => shared.publish(),
                        }
                        continue;
                    }
                }
            }
            let event = tokio::select! {
                event = input.recv() => event,
                _ = ticks.tick() => {
                    shared.publish();
                    if batcher.due(Instant::now()) && let Some(group) = batcher.take() {
                        waiting = Some(self.encode_group(group).await?);
                    }
                    continue;
                }
            };
            match event {
                Some(SinkEvent::Rows(rows)) => {
                    let groups = batcher.push(&rows, Instant::now());
                    for group in groups {
                        let encoded = self.encode_group(group).await?;
                        if let Some((data, rows)) = waiting.take() {
                            // Only reachable with several groups from one batch.
                            self.admit_blocking(
                                shared,
                                data,
                                rows,
                                &mut stopping,
                                &mut shutdown,
                                input.name(),
                            )
                            .await?;
                        }
                        waiting = Some(encoded);
                    }
                }
                Some(SinkEvent::Watermark(_)) => {}
                None => {
                    if let Some((data, rows)) = waiting.take() {
                        self.admit_blocking(
                            shared,
                            data,
                            rows,
                            &mut stopping,
                            &mut shutdown,
                            input.name(),
                        )
                        .await?;
                    }
                    if let Some(group) = batcher.take() {
                        let (data, rows) = self.encode_group(group).await?;
                        self.admit_blocking(
                            shared,
                            data,
                            rows,
                            &mut stopping,
                            &mut shutdown,
                            input.name(),
                        )
                        .await?;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// [`Self::admit`] until written: waits for room (or for the stop signal).
    async fn admit_blocking(
        &self,
        shared: &Arc<Shared>,
        data: Vec<u8>,
        rows: u64,
        stopping: &mut bool,
        shutdown: &mut edgeflow_engine::ingress::ShutdownSignal,
        sink: &str,
    ) -> Result<(), ConnectorError> {
        loop {
            match self.admit(shared, &data, rows, *stopping, sink).await? {
                Admit::Written => return Ok(()),
                Admit::Full => {
                    tokio::select! {
                        () = shared.freed.notified() => {}
                        () = shutdown.requested(), if !*stopping => {
                            *stopping = true;
                            warn!(sink = %sink, "Pipeline stopping while the spool is full; spooling the remaining rows past max_spool_size");
                        }
                        () = tokio::time::sleep(Duration::from_secs(1)) => shared.publish(),
                    }
                }
            }
        }
    }

    async fn encode_group(
        &self,
        group: Vec<RecordBatch>,
    ) -> Result<(Vec<u8>, u64), ConnectorError> {
        let schema = self.schema.clone();
        let compression = self.settings.compression;
        let rows: u64 = group.iter().map(|b| b.num_rows() as u64).sum();
        let data = blocking(move || encode(&schema, &group, compression))
            .await?
            .map_err(spool_error)?;
        Ok((data, rows))
    }

    /// Makes room by the full policy and writes the segment, or says it must wait.
    async fn admit(
        &self,
        shared: &Arc<Shared>,
        data: &[u8],
        rows: u64,
        over_limit_ok: bool,
        sink: &str,
    ) -> Result<Admit, ConnectorError> {
        let max = self.settings.max_spool_size;
        let size = data.len() as u64;
        let data = data.to_vec();
        let policy = self.settings.full_policy;
        let worker = shared.clone();
        let outcome = blocking(
            move || -> Result<(Option<Segment>, Vec<Segment>), SpoolError> {
                let mut spool = worker.spool();
                let mut dropped = Vec::new();
                while spool.bytes() + size > max && !spool.is_empty() && !over_limit_ok {
                    match policy {
                        FullPolicy::Block => return Ok((None, dropped)),
                        FullPolicy::DropOldest => match spool.drop_oldest()? {
                            Some(segment) => dropped.push(segment),
                            // Only the segment being sent is left: it frees its room soon, and
                            // this one may go over the limit by one segment meanwhile.
                            None => break,
                        },
                    }
                }
                spool.append(&data, rows).map(|s| (Some(s), dropped))
            },
        )
        .await?
        .map_err(spool_error)?;
        let (written, dropped) = outcome;
        for segment in &dropped {
            warn!(sink = %sink, segment = segment.id, rows = segment.rows, "Spool full (max_spool_size {max} bytes); dropped the oldest unsent segment");
            shared.metrics.add_value("dropped_segments", 1);
            shared.metrics.add_value("dropped_rows", segment.rows);
            shared
                .metrics
                .count_dropped("spool_full", segment.rows as usize);
        }
        shared.publish();
        match written {
            Some(_) => {
                shared.appended.notify_one();
                Ok(Admit::Written)
            }
            None => Ok(Admit::Full),
        }
    }
}

fn spool_error(error: SpoolError) -> ConnectorError {
    match error {
        SpoolError::Encode(message) => ConnectorError::Internal(message),
        other => ConnectorError::WriteOutput {
            path: match &other {
                SpoolError::Io { path, .. } | SpoolError::Corrupt { path, .. } => {
                    path.display().to_string()
                }
                SpoolError::Busy(path) => path.display().to_string(),
                SpoolError::Encode(_) => String::new(),
            },
            reason: other.to_string(),
        },
    }
}

/// The sender task: ships the spool in id order, forever (the receiver aborts it).
async fn send_loop(
    shared: Arc<Shared>,
    link: Link,
    stream: String,
    settings: FlightSettings,
    sink: String,
) {
    let metrics = shared.metrics.clone();
    let mut backoff = Backoff::new(settings.retry.0, settings.retry.1);
    let mut client: Option<FlightClient> = None;
    let mut ever_connected = false;
    let options = match IpcWriteOptions::default().try_with_compression(settings.compression.ipc())
    {
        Ok(options) => options,
        Err(error) => {
            warn!(sink = %sink, "Flight sink cannot use compression {:?}: {error}; sending uncompressed", settings.compression);
            IpcWriteOptions::default()
        }
    };
    loop {
        // Connect first, even with nothing to send yet, so `connected` (and `/ready`) tell
        // the link's state and a bad certificate shows up in the log at start.
        if client.is_none() {
            match link.connect().await {
                Ok(channel) => {
                    if ever_connected {
                        info!(sink = %sink, endpoint = %link.endpoint(), "Reconnected to Flight collector");
                    } else {
                        info!(sink = %sink, endpoint = %link.endpoint(), "Connected to Flight collector");
                    }
                    ever_connected = true;
                    metrics.set_value("connected", 1);
                    client = Some(FlightClient::new(channel));
                }
                Err(error) => {
                    retry(&metrics, &mut backoff, &sink, &error).await;
                    continue;
                }
            }
        }
        let next = shared.spool().take_next();
        let Some(segment) = next else {
            shared.appended.notified().await;
            continue;
        };
        let path = segment.path.clone();
        let read = match blocking(move || read_segment(&path)).await {
            Ok(read) => read,
            Err(error) => {
                warn!(sink = %sink, "{error}");
                shared.spool().release();
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let batches = match read {
            Ok((_schema, batches)) => batches,
            Err(error @ SpoolError::Corrupt { .. }) => {
                warn!(sink = %sink, segment = segment.id, "{error}; moved aside");
                metrics.add_value("corrupt_segments", 1);
                let id = segment.id;
                let worker = shared.clone();
                if let Ok(Err(error)) = blocking(move || worker.spool().move_aside(id)).await {
                    warn!(sink = %sink, "{error}");
                }
                shared.publish();
                shared.freed.notify_one();
                continue;
            }
            Err(error) => {
                warn!(sink = %sink, "{error}");
                shared.spool().release();
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let reference = SegmentRef {
            stream: stream.clone(),
            id: segment.id,
        };
        let Some(flight) = client.as_mut() else {
            continue;
        };
        let sent = tokio::time::timeout(
            settings.request_timeout,
            put_segment(flight, &reference, batches, options.clone(), segment.rows),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no acknowledgement within request_timeout ({:?})",
                settings.request_timeout
            ))
        });
        match sent {
            Ok(ack) => {
                if ack.rows != segment.rows {
                    warn!(sink = %sink, segment = segment.id, sent = segment.rows, acked = ack.rows, duplicate = ack.duplicate, "Flight collector acknowledged a different row count");
                }
                let id = segment.id;
                let worker = shared.clone();
                match blocking(move || worker.spool().remove(id)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => warn!(sink = %sink, "{error}"),
                    Err(error) => warn!(sink = %sink, "{error}"),
                }
                metrics.add_value("acks", 1);
                metrics.add_value("sent_rows", segment.rows);
                metrics.add_value("sent_bytes", segment.bytes);
                metrics.add_rows_out(segment.rows as usize);
                backoff.reset();
                shared.publish();
                shared.freed.notify_one();
            }
            Err(reason) => {
                shared.spool().release();
                client = None;
                metrics.set_value("connected", 0);
                let error = LinkError::Send {
                    endpoint: link.endpoint().to_string(),
                    segment: segment.id,
                    reason,
                };
                retry(&metrics, &mut backoff, &sink, &error).await;
            }
        }
    }
}

/// Logs a failure, counts a retry and waits the backoff delay.
async fn retry(metrics: &NodeMetrics, backoff: &mut Backoff, sink: &str, error: &LinkError) {
    metrics.set_value("connected", 0);
    metrics.add_value("retries", 1);
    let delay = backoff.next_delay();
    warn!(sink = %sink, "{error}; retrying in {delay:?}");
    tokio::time::sleep(delay).await;
}

/// One `DoPut`: the segment's batches under its descriptor; returns the collector's ack.
async fn put_segment(
    client: &mut FlightClient,
    reference: &SegmentRef,
    batches: Vec<RecordBatch>,
    options: IpcWriteOptions,
    rows: u64,
) -> Result<SegmentAck, String> {
    let data = FlightDataEncoderBuilder::new()
        .with_options(options)
        .with_flight_descriptor(Some(reference.descriptor()))
        .build(futures::stream::iter(batches.into_iter().map(Ok)));
    let results = client.do_put(data).await.map_err(|e| error_chain(&e))?;
    let results: Vec<_> = results.try_collect().await.map_err(|e| error_chain(&e))?;
    let mut ack = None;
    for result in results {
        if result.app_metadata.is_empty() {
            continue;
        }
        let parsed = SegmentAck::from_bytes(&result.app_metadata).map_err(|e| e.to_string())?;
        if parsed.stream != reference.stream || parsed.segment_id != reference.id {
            return Err(format!(
                "the collector acknowledged {}/{} instead of {}/{}",
                parsed.stream, parsed.segment_id, reference.stream, reference.id
            ));
        }
        ack = Some(parsed);
    }
    ack.ok_or_else(|| format!("the collector ended the upload of {rows} rows without a SegmentAck"))
}
