//! Helpers for testing operators and connectors inside a real engine run.
//!
//! [`VecSource`] replays a fixed list of batches; [`CollectSink`] keeps every batch it
//! receives. With [`run_collect`], a test builds a graph `source → operators → sink`, runs it
//! on any number of workers, and gets the output rows back.
//!
//! The batches of a [`VecSource`] enter the dataflow in order, each stamped with the
//! watermark left by the batches before it (`max event time so far − max_out_of_orderness`),
//! which makes runs deterministic and lets an oracle tell exactly which rows were late.

use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::egress::{SinkEvent, SinkInput};
use crate::error::{BoxError, EngineError};
use crate::graph::{BoxFuture, DataflowOperator, Graph, NodeKind, Sink, SinkSummary, Source};
use crate::ingress::SourceContext;
use crate::metrics::PipelineMetrics;
use crate::runtime::{RunOptions, RunReport, run};
use crate::time::WatermarkPolicy;

/// A source that sends a fixed list of batches, then ends.
#[derive(Debug, Clone)]
pub struct VecSource {
    batches: Vec<RecordBatch>,
}

impl VecSource {
    /// A source for these batches.
    pub fn new(batches: Vec<RecordBatch>) -> Self {
        Self { batches }
    }
}

impl Source for VecSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async move {
            for batch in self.batches {
                if ctx.send(batch).await.is_err() {
                    break;
                }
            }
            Ok(())
        })
    }
}

/// A sink that keeps every batch it receives in memory.
#[derive(Debug, Clone, Default)]
pub struct CollectSink {
    collected: Arc<Mutex<Vec<RecordBatch>>>,
}

impl CollectSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything received so far.
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.collected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Sink for CollectSink {
    fn run(
        self: Box<Self>,
        mut input: SinkInput,
    ) -> BoxFuture<'static, Result<SinkSummary, BoxError>> {
        Box::pin(async move {
            let mut summary = SinkSummary::default();
            while let Some(event) = input.recv().await {
                if let SinkEvent::Rows(rows) = event {
                    summary.rows += rows.num_rows() as u64;
                    self.collected
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(rows);
                }
            }
            Ok(summary)
        })
    }
}

/// Runs `batches → operators (in a chain) → collect` on `workers` workers and returns what
/// reached the sink, plus the run's report.
///
/// `schema` must name the event-time column in its metadata.
///
/// # Errors
/// Whatever the run returns.
pub fn run_collect(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    watermark: WatermarkPolicy,
    operators: Vec<Arc<dyn DataflowOperator>>,
    workers: usize,
) -> Result<(Vec<RecordBatch>, RunReport), EngineError> {
    let options = RunOptions {
        workers,
        io_threads: 1,
        ..RunOptions::default()
    };
    run_collect_with(schema, batches, watermark, operators, options)
}

/// [`run_collect`] with the run's options given (workers, memory budget…).
///
/// # Errors
/// Whatever the run returns.
pub fn run_collect_with(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    watermark: WatermarkPolicy,
    operators: Vec<Arc<dyn DataflowOperator>>,
    options: RunOptions,
) -> Result<(Vec<RecordBatch>, RunReport), EngineError> {
    let mut graph = Graph::new("test");
    let mut last = graph.add(
        "source",
        vec![],
        NodeKind::Source {
            schema,
            watermark,
            source: Box::new(VecSource::new(batches)),
        },
    )?;
    for (index, operator) in operators.into_iter().enumerate() {
        last = graph.add(
            format!("op{index}"),
            vec![last],
            NodeKind::Operator(operator),
        )?;
    }
    let sink = CollectSink::new();
    graph.add(
        "sink",
        vec![last],
        NodeKind::Sink {
            sink: Box::new(sink.clone()),
        },
    )?;
    let report = run(graph, options, PipelineMetrics::new())?;
    Ok((sink.batches(), report))
}
