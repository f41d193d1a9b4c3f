//! The bridge from tokio source tasks into timely workers.
//!
//! Each source gets a bounded channel. Its tokio task sends Arrow batches through
//! [`SourceContext::send`]; when the channel is full, the task waits (backpressure). After each
//! send, the context wakes the owning worker through a timely `SyncActivator`, so an idle
//! worker parks instead of polling.
//!
//! On the worker, the ingress operator drains the channel, keeps the source's
//! [`WatermarkTracker`], and holds a capability at the current watermark: each batch leaves
//! stamped with the watermark as it was *before* the batch, then the capability moves up.
//! When the source task ends, the channel closes and the capability is dropped, which lets
//! every window downstream close.
//!
//! A source may also have **side outputs** (such as an MQTT source's `rejected` messages):
//! [`SourceContext::send_side`] sends rows to one of them. Side rows travel through the same
//! channel, leave on their own stream with the same stamp as the main rows, and never move
//! the watermark. Only side outputs that some node reads are wired; rows for the others are
//! discarded before they reach the channel.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arrow::array::{Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::Scope;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::scheduling::SyncActivator;
use tokio::sync::{mpsc, watch};

use crate::batch::Batch;
use crate::graph::BatchStream;
use crate::metrics::NodeMetrics;
use crate::schema::{event_time_column, max_event_time};
use crate::time::{EventTime, WatermarkPolicy, WatermarkTracker};

/// A batch on its way in, with the largest event time it holds; or (with no rows) an
/// explicit watermark advance.
pub(crate) struct IngressBatch {
    rows: Option<RecordBatch>,
    max_event_time: Option<EventTime>,
    watermark: Option<EventTime>,
    /// `Some(i)`: the rows go to side output `i` instead of the main stream.
    side: Option<usize>,
}

/// The pipeline is stopping: the batch was not taken.
#[derive(Debug, thiserror::Error)]
#[error("the pipeline is shutting down; the batch was not taken")]
pub struct Stopped;

/// Why [`SourceContext::send_within`] did not send a batch. Either way nothing of it was
/// sent.
#[derive(Debug, thiserror::Error)]
pub enum SendWithinError {
    /// The pipeline did not make room for the batch in time (it is not keeping up).
    #[error("the pipeline did not take the batch within {0:?}")]
    Busy(Duration),
    /// The pipeline is ending.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// The name of the connector value holding a node's channel depth (batches queued).
pub const QUEUE_DEPTH: &str = "queue_depth";

/// Tells tasks that the pipeline should stop. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    receiver: watch::Receiver<bool>,
}

impl ShutdownSignal {
    /// True once shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes when shutdown is requested.
    pub async fn requested(&mut self) {
        // An error means the sender is gone, which only happens when the run is over.
        let _ = self.receiver.wait_for(|stop| *stop).await;
    }
}

/// Requests shutdown of one pipeline run. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShutdownTrigger {
    sender: Arc<watch::Sender<bool>>,
}

impl ShutdownTrigger {
    /// A new trigger with its signal.
    pub fn new() -> (Self, ShutdownSignal) {
        let (sender, receiver) = watch::channel(false);
        (
            Self {
                sender: Arc::new(sender),
            },
            ShutdownSignal { receiver },
        )
    }

    /// Asks every source to stop; open windows then close and sinks commit.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// A signal that fires when this trigger does.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            receiver: self.sender.subscribe(),
        }
    }
}

/// Where a source's batches go: the channel plus the worker to wake.
#[derive(Clone)]
pub(crate) struct IngressSender {
    sender: Option<mpsc::Sender<IngressBatch>>,
    activator: Arc<OnceLock<SyncActivator>>,
}

/// The worker's end of a source channel, taken by exactly one worker.
pub(crate) struct IngressSlot {
    receiver: Mutex<Option<mpsc::Receiver<IngressBatch>>>,
    activator: Arc<OnceLock<SyncActivator>>,
}

/// A bounded channel from one source task to one worker.
pub(crate) fn ingress_channel(capacity: usize) -> (IngressSender, Arc<IngressSlot>) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let activator = Arc::new(OnceLock::new());
    (
        IngressSender {
            sender: Some(sender),
            activator: activator.clone(),
        },
        Arc::new(IngressSlot {
            receiver: Mutex::new(Some(receiver)),
            activator,
        }),
    )
}

/// What a source task gets: where to send rows, its schema, counters, and the stop signal.
pub struct SourceContext {
    name: String,
    schema: SchemaRef,
    event_time_column: Option<usize>,
    metrics: Arc<NodeMetrics>,
    sender: IngressSender,
    shutdown: ShutdownSignal,
    /// How many of the source's side outputs (counted from the first) are read downstream.
    side_outputs: usize,
}

impl SourceContext {
    pub(crate) fn new(
        name: String,
        schema: SchemaRef,
        metrics: Arc<NodeMetrics>,
        sender: IngressSender,
        shutdown: ShutdownSignal,
    ) -> Self {
        let event_time_column = event_time_column(&schema).map(|(index, _)| index);
        Self {
            name,
            schema,
            event_time_column,
            metrics,
            sender,
            shutdown,
            side_outputs: 0,
        }
    }

    /// Wires the first `count` side outputs (the runtime knows which ones are read).
    pub(crate) fn with_side_outputs(mut self, count: usize) -> Self {
        self.side_outputs = count;
        self
    }

    /// A context whose batches go to a plain channel instead of a dataflow: for testing a
    /// source on its own. The receiver yields each batch the source sent.
    pub fn for_test(
        name: &str,
        schema: SchemaRef,
        capacity: usize,
    ) -> (Self, TestReceiver, ShutdownTrigger) {
        let (sender, slot) = ingress_channel(capacity);
        let (trigger, signal) = ShutdownTrigger::new();
        let metrics = NodeMetrics::detached(name, crate::metrics::NodeRole::Source);
        let receiver = slot
            .receiver
            .lock()
            .expect("fresh mutex")
            .take()
            .expect("fresh slot");
        (
            Self::new(name.to_string(), schema, metrics, sender, signal),
            TestReceiver { receiver },
            trigger,
        )
    }

    /// [`Self::for_test`] with the first `side_outputs` side outputs wired: read their rows
    /// with [`TestReceiver::recv_any`].
    pub fn for_test_with_side_outputs(
        name: &str,
        schema: SchemaRef,
        capacity: usize,
        side_outputs: usize,
    ) -> (Self, TestReceiver, ShutdownTrigger) {
        let (ctx, receiver, trigger) = Self::for_test(name, schema, capacity);
        (ctx.with_side_outputs(side_outputs), receiver, trigger)
    }

    /// The node's name in the query file (for log messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema every batch must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The node's counters (count rejects with [`NodeMetrics::count_dropped`]).
    pub fn metrics(&self) -> &Arc<NodeMetrics> {
        &self.metrics
    }

    /// The stop signal: a source returns soon after it fires.
    pub fn shutdown(&self) -> ShutdownSignal {
        self.shutdown.clone()
    }

    /// True once the pipeline is stopping.
    pub fn is_shutdown_requested(&self) -> bool {
        self.shutdown.is_requested()
    }

    /// Sends rows into the dataflow, waiting while the pipeline is busy.
    ///
    /// Rows without an event time are dropped here and counted as `missing_event_time`.
    ///
    /// # Errors
    /// [`Stopped`] when the dataflow no longer takes rows (the pipeline is ending).
    pub async fn send(&self, rows: RecordBatch) -> Result<(), Stopped> {
        let Some(batch) = self.prepare(rows) else {
            return Ok(());
        };
        let channel = self.sender.sender.as_ref().ok_or(Stopped)?;
        channel.send(batch).await.map_err(|_| Stopped)?;
        self.note_queue_depth();
        self.wake_worker();
        Ok(())
    }

    /// [`Self::send`], giving up when the pipeline has not made room within `bound`: for
    /// sources that must answer their peer (an HTTP client gets 503 instead of waiting).
    ///
    /// Room in the channel is reserved before anything is counted or sent, so a batch that
    /// times out was not sent, in part or at all.
    ///
    /// # Errors
    /// [`SendWithinError::Busy`] after `bound`; [`SendWithinError::Stopped`] when the
    /// dataflow no longer takes rows.
    pub async fn send_within(
        &self,
        rows: RecordBatch,
        bound: Duration,
    ) -> Result<(), SendWithinError> {
        let channel = self.sender.sender.as_ref().ok_or(Stopped)?;
        let permit = match tokio::time::timeout(bound, channel.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(Stopped.into()),
            Err(_) => return Err(SendWithinError::Busy(bound)),
        };
        let Some(batch) = self.prepare(rows) else {
            return Ok(());
        };
        permit.send(batch);
        self.note_queue_depth();
        self.wake_worker();
        Ok(())
    }

    /// Records how many batches wait in the channel (the [`QUEUE_DEPTH`] value), sampled
    /// after each send: a full channel means the dataflow is not keeping up with the source.
    fn note_queue_depth(&self) {
        if let Some(channel) = &self.sender.sender {
            let queued = channel.max_capacity() - channel.capacity();
            self.metrics.set_value(QUEUE_DEPTH, queued as u64);
        }
    }

    /// [`Self::send`] for sources that read on a blocking thread (`spawn_blocking`).
    ///
    /// # Errors
    /// [`Stopped`] when the dataflow no longer takes rows.
    pub fn send_blocking(&self, rows: RecordBatch) -> Result<(), Stopped> {
        let Some(batch) = self.prepare(rows) else {
            return Ok(());
        };
        let channel = self.sender.sender.as_ref().ok_or(Stopped)?;
        channel.blocking_send(batch).map_err(|_| Stopped)?;
        self.note_queue_depth();
        self.wake_worker();
        Ok(())
    }

    /// True when side output `index` (in the order of the source's declared side outputs)
    /// is read by some node, so rows sent there are not discarded. A source may skip
    /// building rows for side outputs nobody reads.
    pub fn side_output_wired(&self, index: usize) -> bool {
        index < self.side_outputs
    }

    /// Sends rows to side output `index` (in the order the source declares its side
    /// outputs), waiting while the pipeline is busy. The rows are stamped like the main rows
    /// around them and do not move the watermark. Rows for a side output nobody reads are
    /// discarded.
    ///
    /// # Errors
    /// [`Stopped`] when the dataflow no longer takes rows.
    pub async fn send_side(&self, index: usize, rows: RecordBatch) -> Result<(), Stopped> {
        if !self.side_output_wired(index) || rows.num_rows() == 0 {
            return Ok(());
        }
        let channel = self.sender.sender.as_ref().ok_or(Stopped)?;
        let message = IngressBatch {
            rows: Some(rows),
            max_event_time: None,
            watermark: None,
            side: Some(index),
        };
        channel.send(message).await.map_err(|_| Stopped)?;
        self.wake_worker();
        Ok(())
    }

    /// Moves the source's watermark to at least `watermark`: the source promises that rows
    /// older than it are no longer on time. Sources whose input carries watermarks (test
    /// fixtures, replays of recorded watermarks) use this; most sources let the engine derive
    /// the watermark from event times.
    ///
    /// # Errors
    /// [`Stopped`] when the dataflow no longer takes input.
    pub async fn advance_watermark(&self, watermark: EventTime) -> Result<(), Stopped> {
        let channel = self.sender.sender.as_ref().ok_or(Stopped)?;
        let message = IngressBatch {
            rows: None,
            max_event_time: None,
            watermark: Some(watermark),
            side: None,
        };
        channel.send(message).await.map_err(|_| Stopped)?;
        self.wake_worker();
        Ok(())
    }

    fn prepare(&self, rows: RecordBatch) -> Option<IngressBatch> {
        let mut rows = rows;
        let max_event_time = match self.event_time_column {
            Some(column) => {
                let times = rows.column(column);
                if times.null_count() > 0 {
                    let keep = arrow::compute::is_not_null(times).expect("is_not_null cannot fail");
                    let dropped = times.null_count();
                    rows =
                        filter_record_batch(&rows, &keep).expect("filter with a same-length mask");
                    self.metrics.count_dropped("missing_event_time", dropped);
                }
                max_event_time(&rows, column)
            }
            None => None,
        };
        if rows.num_rows() == 0 {
            return None;
        }
        self.metrics.add_rows_out(rows.num_rows());
        Some(IngressBatch {
            rows: Some(rows),
            max_event_time,
            watermark: None,
            side: None,
        })
    }

    fn wake_worker(&self) {
        if let Some(activator) = self.sender.activator.get() {
            // An error means the worker is gone; the next send then fails with `Stopped`.
            let _ = activator.activate();
        }
    }
}

impl Drop for SourceContext {
    fn drop(&mut self) {
        // Close the channel first, then wake the worker: it must see the channel closed (not
        // merely empty) when it runs, or it would park until its next timer.
        drop(self.sender.sender.take());
        self.wake_worker();
    }
}

/// The receiving end of [`SourceContext::for_test`].
pub struct TestReceiver {
    receiver: mpsc::Receiver<IngressBatch>,
}

impl TestReceiver {
    /// The next batch, or `None` once the source is done and dropped its context.
    pub async fn recv(&mut self) -> Option<RecordBatch> {
        loop {
            match self.receiver.recv().await {
                Some(IngressBatch {
                    rows: Some(rows),
                    side: None,
                    ..
                }) => return Some(rows),
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// The next batch of the main stream (`None` in the first place) or of a side output
    /// (`Some(index)`), or `None` once the source is done.
    pub async fn recv_any(&mut self) -> Option<(Option<usize>, RecordBatch)> {
        loop {
            match self.receiver.recv().await {
                Some(IngressBatch {
                    rows: Some(rows),
                    side,
                    ..
                }) => return Some((side, rows)),
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// Blocking form of [`Self::recv`].
    pub fn blocking_recv(&mut self) -> Option<RecordBatch> {
        loop {
            match self.receiver.blocking_recv() {
                Some(IngressBatch {
                    rows: Some(rows),
                    side: None,
                    ..
                }) => return Some(rows),
                Some(_) => continue,
                None => return None,
            }
        }
    }
}

/// Most batches a worker takes from one source per activation, so one busy source cannot
/// starve the operators downstream of it.
const MAX_BATCHES_PER_ACTIVATION: usize = 64;

/// Adds the worker-side end of a source to `scope`: the main stream first, then one stream
/// per wired side output.
///
/// Exactly one worker takes the channel from `slot`; on the others the operator drops its
/// capabilities at once, so it never holds the frontier back.
pub(crate) fn ingress_operator<'scope>(
    scope: Scope<'scope, EventTime>,
    name: &str,
    slot: Arc<IngressSlot>,
    policy: WatermarkPolicy,
    metrics: Arc<NodeMetrics>,
    owner: bool,
    side_outputs: usize,
) -> Vec<BatchStream<'scope>> {
    let mut builder = OperatorBuilder::new(name.to_owned(), scope);
    let info = builder.operator_info();
    let mut outputs = Vec::with_capacity(1 + side_outputs);
    let mut streams = Vec::with_capacity(1 + side_outputs);
    for _ in 0..=side_outputs {
        let (output, stream) = builder.new_output::<Batch>();
        outputs.push(OutputBuilder::<_, CapacityContainerBuilder<Batch>>::from(
            output,
        ));
        streams.push(stream);
    }
    builder.build(move |capabilities| {
        let receiver = if owner {
            slot.receiver.lock().ok().and_then(|mut r| r.take())
        } else {
            None
        };
        let timer = scope.activator_for(info.address.clone());
        if receiver.is_some() {
            let waker = scope.worker().sync_activator_for(info.address.to_vec());
            // Only the owning worker sets this, once.
            let _ = slot.activator.set(waker);
        }
        // One capability per output (main first), all kept at the watermark.
        let mut state = receiver.map(|receiver| IngressState {
            receiver,
            capabilities,
            tracker: WatermarkTracker::new(policy),
        });

        move |_frontiers| {
            let Some(current) = state.as_mut() else {
                return;
            };
            let mut drained = 0;
            let mut closed = false;
            while drained < MAX_BATCHES_PER_ACTIVATION {
                match current.receiver.try_recv() {
                    Ok(batch) => {
                        drained += 1;
                        // Stamp with the watermark before this batch: rows the batch itself
                        // makes "old" are still on time for windows that are open.
                        if let Some(rows) = batch.rows {
                            let port = batch.side.map_or(0, |side| side + 1);
                            if let (Some(output), Some(capability)) =
                                (outputs.get_mut(port), current.capabilities.get(port))
                            {
                                output
                                    .activate()
                                    .session_with_builder(capability)
                                    .give_container(&mut Batch::new(rows));
                            }
                        }
                        if let Some(max) = batch.max_event_time {
                            let watermark = current.tracker.observe(max, Instant::now());
                            advance(&mut current.capabilities, watermark, &metrics);
                        }
                        if let Some(explicit) = batch.watermark {
                            let watermark = current.tracker.advance_to(explicit, Instant::now());
                            advance(&mut current.capabilities, watermark, &metrics);
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed {
                // The source is done: dropping the capabilities releases the watermark, so
                // every window downstream closes.
                state = None;
                return;
            }
            let now = Instant::now();
            let watermark = current.tracker.on_tick(now);
            advance(&mut current.capabilities, watermark, &metrics);
            if drained == MAX_BATCHES_PER_ACTIVATION {
                timer.activate();
            } else if let Some(delay) = current.tracker.next_tick_in(now) {
                timer.activate_after(delay);
            }
        }
    });
    streams
}

struct IngressState {
    receiver: mpsc::Receiver<IngressBatch>,
    capabilities: Vec<timely::dataflow::operators::Capability<EventTime>>,
    tracker: WatermarkTracker,
}

fn advance(
    capabilities: &mut [timely::dataflow::operators::Capability<EventTime>],
    watermark: EventTime,
    metrics: &NodeMetrics,
) {
    let mut moved = false;
    for capability in capabilities.iter_mut() {
        if watermark > *capability.time() {
            capability.downgrade(&watermark);
            moved = true;
        }
    }
    if moved {
        metrics.set_watermark(watermark);
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::{DataType, Field};

    use super::*;
    use crate::error::BoxError;
    use crate::graph::{BoxFuture, Graph, NodeKind, Source};
    use crate::metrics::PipelineMetrics;
    use crate::runtime::{RunOptions, run};
    use crate::schema::{UTC, schema_with_event_time, timestamp_type};
    use crate::testing::CollectSink;

    fn schema() -> SchemaRef {
        schema_with_event_time(
            [
                Field::new("ts", timestamp_type(), true),
                Field::new("v", DataType::Int64, true),
            ],
            Some("ts"),
        )
    }

    fn rows(times: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(TimestampMillisecondArray::from(times.to_vec()).with_timezone(UTC)),
                Arc::new(Int64Array::from(times.to_vec())),
            ],
        )
        .expect("valid batch")
    }

    /// Sends three main batches and, between them, rows to side outputs 0 and 1.
    struct TwoSided;

    impl Source for TwoSided {
        fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
            Box::pin(async move {
                for (step, times) in [[1_000, 2_000], [3_000, 4_000], [5_000, 6_000]]
                    .into_iter()
                    .enumerate()
                {
                    ctx.send(rows(&times)).await?;
                    ctx.send_side(0, rows(&[step as i64])).await?;
                    ctx.send_side(1, rows(&[10 + step as i64])).await?;
                }
                Ok(())
            })
        }
    }

    fn run_graph(read_side: &[usize], workers: usize) -> (Vec<RecordBatch>, Vec<Vec<RecordBatch>>) {
        let mut graph = Graph::new("test");
        let source = graph
            .add(
                "src",
                vec![],
                NodeKind::Source {
                    schema: schema(),
                    watermark: WatermarkPolicy::default(),
                    source: Box::new(TwoSided),
                },
            )
            .expect("source");
        let main = CollectSink::new();
        graph
            .add(
                "main",
                vec![source],
                NodeKind::Sink {
                    sink: Box::new(main.clone()),
                },
            )
            .expect("main sink");
        let mut sides = Vec::new();
        for &index in read_side {
            let side = graph
                .add(
                    format!("src.side{index}"),
                    vec![source],
                    NodeKind::SideOutput {
                        index,
                        schema: schema(),
                    },
                )
                .expect("side output of a source");
            let sink = CollectSink::new();
            graph
                .add(
                    format!("side{index}"),
                    vec![side],
                    NodeKind::Sink {
                        sink: Box::new(sink.clone()),
                    },
                )
                .expect("side sink");
            sides.push(sink);
        }
        let options = RunOptions {
            workers,
            io_threads: 1,
            ..RunOptions::default()
        };
        run(graph, options, PipelineMetrics::new()).expect("run");
        (
            main.batches(),
            sides.iter().map(CollectSink::batches).collect(),
        )
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        let mut out: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                let column = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("v");
                column.values().to_vec()
            })
            .collect();
        out.sort_unstable();
        out
    }

    #[test]
    fn source_side_outputs_reach_their_readers_and_not_the_main_stream() {
        for workers in [1, 2] {
            let (main, sides) = run_graph(&[0, 1], workers);
            assert_eq!(
                values(&main),
                vec![1_000, 2_000, 3_000, 4_000, 5_000, 6_000]
            );
            assert_eq!(values(&sides[0]), vec![0, 1, 2]);
            assert_eq!(values(&sides[1]), vec![10, 11, 12]);
        }
    }

    #[test]
    fn unread_side_outputs_are_discarded() {
        // Only side output 1 is read: 0 is wired too (wiring counts from the first), 2 would
        // not be.
        let (main, sides) = run_graph(&[1], 2);
        assert_eq!(values(&main).len(), 6);
        assert_eq!(values(&sides[0]), vec![10, 11, 12]);
        let (main, sides) = run_graph(&[], 1);
        assert_eq!(values(&main).len(), 6);
        assert!(sides.is_empty());
    }

    #[tokio::test]
    async fn send_within_gives_up_on_a_full_channel_without_sending_or_counting() {
        let (ctx, mut receiver, _trigger) = SourceContext::for_test("s", schema(), 1);
        ctx.send(rows(&[1])).await.expect("room for one");
        assert_eq!(ctx.metrics().snapshot().values.get(QUEUE_DEPTH), Some(&1));
        let bound = Duration::from_millis(30);
        let busy = ctx.send_within(rows(&[2, 3]), bound).await;
        assert!(
            matches!(busy, Err(SendWithinError::Busy(b)) if b == bound),
            "{busy:?}"
        );
        assert_eq!(
            ctx.metrics().snapshot().rows_out,
            1,
            "the refused rows are not counted"
        );
        assert_eq!(values(&[receiver.recv().await.expect("first")]), vec![1]);
        ctx.send_within(rows(&[4]), bound)
            .await
            .expect("room again");
        drop(ctx);
        assert_eq!(values(&[receiver.recv().await.expect("second")]), vec![4]);
        assert!(
            receiver.recv().await.is_none(),
            "nothing of the refused batch was sent"
        );
    }

    #[tokio::test]
    async fn test_context_wires_only_the_side_outputs_asked_for() {
        let (ctx, mut receiver, _trigger) =
            SourceContext::for_test_with_side_outputs("s", schema(), 8, 1);
        assert!(ctx.side_output_wired(0));
        assert!(!ctx.side_output_wired(1));
        ctx.send(rows(&[1])).await.expect("main");
        ctx.send_side(0, rows(&[2])).await.expect("side 0");
        ctx.send_side(1, rows(&[3]))
            .await
            .expect("side 1 is discarded");
        drop(ctx);
        let mut got = Vec::new();
        while let Some((side, batch)) = receiver.recv_any().await {
            got.push((side, values(&[batch])));
        }
        assert_eq!(got, vec![(None, vec![1]), (Some(0), vec![2])]);
    }
}
