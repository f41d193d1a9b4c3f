//! The edgeflow dataflow runtime: event time, watermarks, Arrow batches on timely workers,
//! and the tokio bridge to sources and sinks.
//!
//! # Tour
//!
//! * [`batch`]: [`Batch`], the Arrow container on every edge, and [`key_exchange`], the pact
//!   that routes rows to the worker owning their key.
//! * [`time`]: event time (ms since the epoch, UTC, also the timely timestamp) and
//!   [`WatermarkTracker`].
//! * [`schema`]: field types as query files name them, and the event-time column.
//! * [`graph`]: the [`Graph`] the planner builds, and the node traits [`Source`],
//!   [`DataflowOperator`] and [`Sink`].
//! * [`ingress`] / [`egress`]: bounded channels between tokio tasks and timely workers.
//! * [`runtime`]: [`run`] a graph to completion.
//! * [`metrics`]: per-node counters behind the status line.
//!
//! ```text
//! query file ──plan──▶ Graph ──run──▶ tokio: source tasks ─▶ timely workers ─▶ tokio: sink tasks
//! ```
#![forbid(missing_docs)]

pub mod batch;
pub mod config;
pub mod egress;
pub mod error;
pub mod graph;
pub mod ingress;
pub mod metrics;
pub mod runtime;
pub mod schema;
pub mod testing;
pub mod time;

pub use batch::{Batch, KeyExchange, key_exchange};
pub use config::{OptionError, parse_options};
pub use egress::{SinkEvent, SinkInput};
pub use error::{BoxError, EngineError};
pub use graph::{
    BatchStream, BoxFuture, DataflowOperator, Graph, Node, NodeKind, OperatorContext, Sink,
    SinkSummary, Source,
};
pub use ingress::{ShutdownSignal, ShutdownTrigger, SourceContext, Stopped};
pub use metrics::{NodeMetrics, NodeRole, NodeSnapshot, PipelineMetrics};
pub use runtime::{RunOptions, RunReport, run};
pub use time::{EventTime, WatermarkPolicy, WatermarkTracker};

/// Re-exported so operators and connectors use the engine's exact versions.
pub use arrow;
/// Re-exported so operators use the engine's exact timely version.
pub use timely;
