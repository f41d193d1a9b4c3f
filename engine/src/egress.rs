//! The bridge from timely workers out to tokio sink tasks.
//!
//! Every worker runs an egress operator for each sink. It forwards each batch, and each
//! advance of its input frontier (the watermark), into one bounded channel shared by all
//! workers. When the channel is full the worker waits: a slow sink slows the dataflow rather
//! than growing memory. When a worker's frontier becomes empty it drops its sender; once all
//! have, [`SinkInput::recv`] returns `None` and the sink commits what it holds.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use tokio::sync::mpsc;

use crate::graph::BatchStream;
use crate::ingress::{ShutdownSignal, ShutdownTrigger};
use crate::metrics::NodeMetrics;
use crate::time::EventTime;

/// What a sink receives.
#[derive(Debug)]
pub enum SinkEvent {
    /// Rows to write.
    Rows(RecordBatch),
    /// One worker's input watermark moved to this event time: no more on-time rows older
    /// than it will come from that worker.
    Watermark(EventTime),
}

/// The sink's end of its channel, plus what it needs to know about the pipeline.
pub struct SinkInput {
    name: String,
    pipeline: String,
    schema: SchemaRef,
    metrics: Arc<NodeMetrics>,
    receiver: mpsc::Receiver<SinkEvent>,
    shutdown: ShutdownTrigger,
}

impl SinkInput {
    pub(crate) fn new(
        name: String,
        pipeline: String,
        schema: SchemaRef,
        metrics: Arc<NodeMetrics>,
        receiver: mpsc::Receiver<SinkEvent>,
        shutdown: ShutdownTrigger,
    ) -> Self {
        Self {
            name,
            pipeline,
            schema,
            metrics,
            receiver,
            shutdown,
        }
    }

    /// An input fed by hand, for testing a sink on its own.
    pub fn for_test(
        name: &str,
        schema: SchemaRef,
        capacity: usize,
    ) -> (Self, mpsc::Sender<SinkEvent>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let (trigger, _signal) = ShutdownTrigger::new();
        let metrics = NodeMetrics::detached(name, crate::metrics::NodeRole::Sink);
        (
            Self::new(
                name.to_string(),
                "test".to_string(),
                schema,
                metrics,
                receiver,
                trigger,
            ),
            sender,
        )
    }

    /// The sink's node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pipeline's name (from `[pipeline] name`).
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// The schema of every batch the sink receives.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The sink's counters.
    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        &self.metrics
    }

    /// The pipeline's stop signal (sinks normally just drain until `recv` returns `None`).
    pub fn shutdown(&self) -> ShutdownSignal {
        self.shutdown.signal()
    }

    /// Asks the whole pipeline to stop gracefully, for a sink whose output went away for
    /// good (for example a closed pipe on stdout). Sources stop, windows close, and the
    /// sink keeps receiving until `recv` returns `None`.
    pub fn request_shutdown(&self) {
        self.shutdown.trigger();
    }

    /// The next event, or `None` when every worker is done.
    pub async fn recv(&mut self) -> Option<SinkEvent> {
        let event = self.receiver.recv().await;
        self.note_queue_depth();
        event
    }

    /// Blocking form of [`Self::recv`], for sinks that write on a blocking thread.
    pub fn blocking_recv(&mut self) -> Option<SinkEvent> {
        let event = self.receiver.blocking_recv();
        self.note_queue_depth();
        event
    }

    /// Records how many events still wait in the channel (the
    /// [`QUEUE_DEPTH`](crate::ingress::QUEUE_DEPTH) value), sampled on each receive: a
    /// channel that stays full means the sink is the bottleneck.
    fn note_queue_depth(&self) {
        self.metrics
            .set_value(crate::ingress::QUEUE_DEPTH, self.receiver.len() as u64);
    }
}

/// Adds the worker side of a sink: forwards batches and watermarks into `sender`.
pub(crate) fn egress_operator(
    stream: BatchStream<'_>,
    name: &str,
    sender: mpsc::Sender<SinkEvent>,
    metrics: Arc<NodeMetrics>,
) {
    let mut sender = Some(sender);
    let mut last_watermark: Option<EventTime> = None;
    stream.sink(Pipeline, name, move |(input, frontier)| {
        input.for_each(|_time, batch| {
            let Some(rows) = batch.take() else { return };
            let rows_in_batch = rows.num_rows();
            metrics.add_rows_in(rows_in_batch);
            let delivered = match &sender {
                Some(channel) => channel.blocking_send(SinkEvent::Rows(rows)).is_ok(),
                None => false,
            };
            if !delivered {
                // The sink task has stopped (it reports its own error); keep the worker
                // running so the rest of the pipeline can finish, and count what is lost.
                metrics.count_dropped("sink_stopped", rows_in_batch);
                sender = None;
            }
        });
        match frontier.frontier().first().copied() {
            Some(watermark) => {
                if last_watermark != Some(watermark) {
                    last_watermark = Some(watermark);
                    if let Some(channel) = &sender {
                        // A full channel only delays a progress note; it is safe to skip.
                        let _ = channel.try_send(SinkEvent::Watermark(watermark));
                    }
                }
            }
            None => {
                // Input complete: dropping our sender lets the sink finish once all are gone.
                sender = None;
            }
        }
    });
}
