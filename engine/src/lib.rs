//! The edgeflow dataflow runtime: event time, watermarks, Arrow batches on timely workers,
//! and the tokio bridge to sources and sinks.
//!
//! # Tour
//!
//! * [`batch`]: [`Batch`], the Arrow container on every edge, and [`key_exchange`], the pact
//!   that routes rows to the worker owning their key ([`broadcast`]: to every worker).
//! * [`time`]: event time (ms since the epoch, UTC, also the timely timestamp) and
//!   [`WatermarkTracker`].
//! * [`schema`]: field types as query files name them, and the event-time column.
//! * [`graph`]: the [`Graph`] the planner builds, and the node traits [`Source`],
//!   [`DataflowOperator`] and [`Sink`].
//! * [`ingress`] / [`egress`]: bounded channels between tokio tasks and timely workers.
//! * [`runtime`]: [`run`] a graph to completion.
//! * [`metrics`]: per-node counters behind the status line.
//! * [`log_throttle`]: one log line per interval for problems that repeat.
//!
//! ```text
//! query file ──plan──▶ Graph ──run──▶ tokio: source tasks ─▶ timely workers ─▶ tokio: sink tasks
//! ```
//!
//! # Example
//!
//! Run rows from an in-memory source straight to a collecting sink on two workers (the
//! `testing` helpers build the [`Graph`] and call [`run`]):
//!
//! ```
//! use std::sync::Arc;
//! use edgeflow_engine::arrow::array::{Float64Array, RecordBatch, TimestampMillisecondArray};
//! use edgeflow_engine::arrow::datatypes::{DataType, Field};
//! use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
//! use edgeflow_engine::{WatermarkPolicy, testing::run_collect};
//!
//! let schema = schema_with_event_time(
//!     [Field::new("ts", timestamp_type(), false), Field::new("v", DataType::Float64, true)],
//!     Some("ts"),
//! );
//! let rows = RecordBatch::try_new(
//!     schema.clone(),
//!     vec![
//!         Arc::new(TimestampMillisecondArray::from(vec![1_000, 2_000]).with_timezone(UTC)),
//!         Arc::new(Float64Array::from(vec![0.5, 1.5])),
//!     ],
//! )?;
//! let (out, report) = run_collect(schema, vec![rows], WatermarkPolicy::default(), vec![], 2)?;
//! assert_eq!(out.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
//! assert_eq!(report.nodes[0].rows_out, 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(missing_docs)]

pub mod batch;
pub mod config;
pub mod egress;
pub mod error;
pub mod graph;
pub mod ingress;
pub mod log_throttle;
pub mod memory;
pub mod metrics;
pub mod runtime;
pub mod schema;
pub mod testing;
pub mod time;

pub use batch::{Batch, Broadcast, KeyExchange, broadcast, key_exchange};
pub use config::{OptionError, parse_options};
pub use egress::{SinkEvent, SinkInput};
pub use error::{BoxError, EngineError};
pub use graph::{
    BatchStream, BoxFuture, DataflowOperator, Graph, Node, NodeKind, OperatorContext, Sink,
    SinkSummary, Source,
};
pub use ingress::{SendWithinError, ShutdownSignal, ShutdownTrigger, SourceContext, Stopped};
pub use memory::MemoryBudget;
pub use metrics::{NodeMetrics, NodeRole, NodeSnapshot, PipelineMetrics};
pub use runtime::{RunOptions, RunReport, run};
pub use time::{EventTime, WatermarkPolicy, WatermarkTracker};

/// Re-exported so operators and connectors use the engine's exact versions.
pub use arrow;
/// Re-exported so operators use the engine's exact timely version.
pub use timely;
