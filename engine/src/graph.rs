//! The dataflow graph the engine runs, and the traits its nodes implement.
//!
//! A [`Graph`] is what the query planner hands the engine: nodes in topological order, each a
//! source, an operator or a sink, with its inputs named by index. The engine turns it into
//! timely operators on every worker plus tokio tasks for sources and sinks
//! (see [`crate::runtime`]).
//!
//! # Implementing a node
//!
//! * A **source** implements [`Source`]: an async task that reads from the outside world and
//!   pushes Arrow batches through its [`SourceContext`]. It runs
//!   once per pipeline, on tokio. Rows it sets aside (such as rejected messages) may leave
//!   through a side output ([`SourceContext::send_side`]), read by a
//!   [`NodeKind::SideOutput`] node as operators' side outputs are.
//! * An **operator** implements [`DataflowOperator`]: given its input streams on one worker, it
//!   adds timely operators and returns its output stream. It is built once per worker, so it
//!   must be `Send + Sync` and keep its per-worker state inside the timely operator closures.
//! * A **sink** implements [`Sink`]: an async task that receives every batch addressed to it
//!   through a [`SinkInput`] and writes it out. It runs once per
//!   pipeline, on tokio.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use timely::dataflow::Stream;

use crate::batch::Batch;
use crate::egress::SinkInput;
use crate::error::{BoxError, EngineError};
use crate::ingress::SourceContext;
use crate::memory::MemoryBudget;
use crate::metrics::NodeMetrics;
use crate::time::{EventTime, WatermarkPolicy};

/// A boxed future, as returned by [`Source::run`] and [`Sink::run`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stream of batches on one worker, timestamped with event time.
pub type BatchStream<'scope> = Stream<'scope, EventTime, Batch>;

/// The running part of a source connector.
pub trait Source: Send + 'static {
    /// Reads until the input ends, the pipeline shuts down, or an error stops it.
    ///
    /// Returning `Ok` means the input is exhausted (bounded sources) or a shutdown was
    /// requested; the engine then closes the source's watermark and windows flush.
    fn run(self: Box<Self>, ctx: SourceContext) -> BoxFuture<'static, Result<(), BoxError>>;
}

/// What a sink reports when it finishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkSummary {
    /// Rows written.
    pub rows: u64,
    /// Files (or messages, or requests) committed.
    pub files: u64,
}

/// The running part of a sink connector.
pub trait Sink: Send + 'static {
    /// Writes every batch from `input` until it ends, then commits what is pending.
    fn run(self: Box<Self>, input: SinkInput) -> BoxFuture<'static, Result<SinkSummary, BoxError>>;
}

/// What an operator needs to know while it adds itself to one worker's dataflow.
#[derive(Clone, Debug)]
pub struct OperatorContext {
    /// The node's name in the query file.
    pub name: String,
    /// The shared counters of this node (all workers add to the same entry).
    pub metrics: Arc<NodeMetrics>,
    /// Index of the worker being built.
    pub worker_index: usize,
    /// Number of workers.
    pub workers: usize,
    /// The pipeline's state budget, shared by every operator and worker.
    pub memory: Arc<MemoryBudget>,
}

/// An operator that adds itself to a timely dataflow.
///
/// `build` is called once per worker, with the node's input streams on that worker, in the
/// order the query file lists `inputs`.
pub trait DataflowOperator: Send + Sync + fmt::Debug + 'static {
    /// The schema of every batch the operator emits.
    fn output_schema(&self) -> SchemaRef;

    /// Adds the operator to the worker's dataflow and returns its output stream.
    fn build<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> BatchStream<'scope>;

    /// Named side outputs with their schemas, such as a window's `late` rows. A query file
    /// reads one as `"<operator>.<name>"`. Default: none.
    fn side_outputs(&self) -> Vec<(String, SchemaRef)> {
        Vec::new()
    }

    /// Adds the operator and returns its main output followed by one stream per entry of
    /// [`Self::side_outputs`], in that order. Operators with side outputs implement this (and
    /// `build` as its first stream); the default is `build` alone.
    fn build_with_side_outputs<'scope>(
        &self,
        inputs: Vec<BatchStream<'scope>>,
        ctx: &OperatorContext,
    ) -> Vec<BatchStream<'scope>> {
        vec![self.build(inputs, ctx)]
    }
}

/// One node of a [`Graph`].
pub struct Node {
    /// Name from the query file (unique within the graph).
    pub name: String,
    /// Indices of the nodes this one reads from (always earlier in the graph).
    pub inputs: Vec<usize>,
    /// What the node is.
    pub kind: NodeKind,
}

/// The three kinds of node.
pub enum NodeKind {
    /// Reads from the outside world.
    Source {
        /// Schema of the batches it emits; its metadata names the event-time column.
        schema: SchemaRef,
        /// How its watermark follows event time.
        watermark: WatermarkPolicy,
        /// The running component.
        source: Box<dyn Source>,
    },
    /// Transforms batches inside the dataflow.
    Operator(Arc<dyn DataflowOperator>),
    /// One side output of the operator or source that is this node's only input.
    SideOutput {
        /// Position in the operator's `side_outputs()` (or in the source's, as the planner
        /// knows them; 0 for the first).
        index: usize,
        /// Schema of its rows.
        schema: SchemaRef,
    },
    /// Writes batches to the outside world.
    Sink {
        /// The running component.
        sink: Box<dyn Sink>,
    },
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            NodeKind::Source { .. } => "source",
            NodeKind::Operator(_) => "operator",
            NodeKind::SideOutput { .. } => "side output",
            NodeKind::Sink { .. } => "sink",
        };
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("kind", &kind)
            .field("inputs", &self.inputs)
            .finish()
    }
}

/// A pipeline ready to run: nodes in topological order.
#[derive(Debug)]
pub struct Graph {
    /// Pipeline name (used in logs, metrics and Parquet metadata).
    pub name: String,
    /// Nodes, each after all of its inputs.
    pub nodes: Vec<Node>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            nodes: Vec::new(),
        }
    }

    /// Appends a node; returns its index.
    ///
    /// # Errors
    /// An input index that does not name an earlier node is a bug in the planner.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        inputs: Vec<usize>,
        kind: NodeKind,
    ) -> Result<usize, EngineError> {
        let name = name.into();
        let index = self.nodes.len();
        if let Some(bad) = inputs.iter().find(|&&i| i >= index) {
            return Err(EngineError::Internal(format!(
                "node '{name}' reads from node #{bad}, which is not defined before it"
            )));
        }
        let is_source = matches!(kind, NodeKind::Source { .. });
        if is_source != inputs.is_empty() {
            return Err(EngineError::Internal(format!(
                "node '{name}': sources take no inputs and other nodes need at least one"
            )));
        }
        if let NodeKind::SideOutput { .. } = kind
            && (inputs.len() != 1
                || !matches!(
                    self.nodes[inputs[0]].kind,
                    NodeKind::Operator(_) | NodeKind::Source { .. }
                ))
        {
            return Err(EngineError::Internal(format!(
                "side output '{name}' must read exactly one operator or source"
            )));
        }
        if let Some(&input) = inputs
            .iter()
            .find(|&&i| matches!(self.nodes[i].kind, NodeKind::Sink { .. }))
        {
            return Err(EngineError::Internal(format!(
                "node '{name}' reads from sink '{}'",
                self.nodes[input].name
            )));
        }
        self.nodes.push(Node { name, inputs, kind });
        Ok(index)
    }
}
