//! Runs a [`Graph`]: timely workers on their own threads, sources and sinks on tokio.
//!
//! ```text
//!   tokio runtime (IO)                 timely workers (computation)           tokio runtime (IO)
//!  ┌──────────────┐  bounded mpsc   ┌───────────────────────────────────┐  bounded mpsc  ┌────────────┐
//!  │ source task  │ ──────────────▶ │ ingress ─▶ operators ─▶ egress    │ ─────────────▶ │ sink task  │
//!  │ (Source::run)│  + activator    │ (one worker owns each source;     │  one channel   │ (Sink::run)│
//!  └──────────────┘                 │  KeyExchange spreads keys)        │  per sink      └────────────┘
//!                                   └───────────────────────────────────┘
//! ```
//!
//! The run ends when every source has ended (bounded input, or a shutdown request), every
//! window has closed, and every sink has committed. Ctrl-C or SIGTERM requests a graceful
//! shutdown when [`RunOptions::handle_signals`] is set; a second signal exits at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use timely::dataflow::operators::{Concatenate, Inspect};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::egress::{SinkEvent, SinkInput, egress_operator};
use crate::error::{BoxError, EngineError};
use crate::graph::{BatchStream, DataflowOperator, Graph, NodeKind, OperatorContext, SinkSummary};
use crate::ingress::{
    IngressSlot, ShutdownTrigger, SourceContext, ingress_channel, ingress_operator,
};
use crate::memory::MemoryBudget;
use crate::metrics::{NodeMetrics, NodeRole, NodeSnapshot, PipelineMetrics, WorkerLiveness};
use crate::time::{EventTime, WatermarkPolicy};

/// How to run a pipeline.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Timely worker threads (computation). Default: the number of cores.
    pub workers: usize,
    /// Tokio threads for sources and sinks (IO). Default: 2.
    pub io_threads: usize,
    /// Batches each source or sink channel holds before the sender waits. Default: 16.
    pub channel_capacity: usize,
    /// Install Ctrl-C / SIGTERM handlers that request a graceful shutdown. Default: false
    /// (the CLI turns it on; tests and embedders use [`RunOptions::shutdown`]).
    pub handle_signals: bool,
    /// A trigger the caller keeps to stop the run. Default: a fresh one nobody holds.
    pub shutdown: ShutdownTrigger,
    /// The state budget of stateful operators (`[pipeline] memory_limit`). Default: no
    /// limit.
    pub memory: Arc<MemoryBudget>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            io_threads: 2,
            channel_capacity: 16,
            handle_signals: false,
            shutdown: ShutdownTrigger::new().0,
            memory: Arc::new(MemoryBudget::default()),
        }
    }
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// Final counters of every node.
    pub nodes: Vec<NodeSnapshot>,
    /// What each sink said when it finished, by node name.
    pub sinks: Vec<(String, SinkSummary)>,
    /// Wall-clock duration of the run.
    pub elapsed: Duration,
    /// Whether the run ended because shutdown was requested (rather than input ending).
    pub interrupted: bool,
}

enum WorkerNode {
    SideOutput {
        index: usize,
    },
    Source {
        slot: Arc<IngressSlot>,
        policy: WatermarkPolicy,
        owner: usize,
        side_outputs: usize,
    },
    Operator(Arc<dyn DataflowOperator>),
    Sink {
        senders: Mutex<Vec<mpsc::Sender<SinkEvent>>>,
    },
}

struct WorkerPlan {
    nodes: Vec<(String, Vec<usize>, Arc<NodeMetrics>, WorkerNode)>,
}

/// Runs `graph` to completion and reports its counters.
///
/// # Errors
/// A bad setting, a failed source or sink, or a worker that stopped unexpectedly. Even then
/// the engine first lets the rest of the pipeline finish and commit what it can.
pub fn run(
    graph: Graph,
    options: RunOptions,
    metrics: Arc<PipelineMetrics>,
) -> Result<RunReport, EngineError> {
    if options.workers == 0 {
        return Err(EngineError::Config("workers must be at least 1".into()));
    }
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.io_threads.max(1))
        .thread_name("edgeflow-io")
        .enable_all()
        .build()
        .map_err(|error| EngineError::Startup(format!("tokio runtime: {error}")))?;

    let shutdown = options.shutdown.clone();
    let pipeline_name = graph.name.clone();
    let mut plan = WorkerPlan {
        nodes: Vec::with_capacity(graph.nodes.len()),
    };
    let mut schemas: Vec<Option<SchemaRef>> = Vec::with_capacity(graph.nodes.len());
    let mut source_tasks = Vec::new();
    let mut sink_tasks = Vec::new();
    let mut source_count = 0usize;
    // A source's side outputs that are read: as many as the highest side-output index read.
    let mut source_side_outputs = vec![0usize; graph.nodes.len()];
    for node in &graph.nodes {
        if let NodeKind::SideOutput { index, .. } = node.kind
            && let Some(&parent) = node.inputs.first()
        {
            let wired = &mut source_side_outputs[parent];
            *wired = (*wired).max(index + 1);
        }
    }

    for (position, node) in graph.nodes.into_iter().enumerate() {
        let role = match node.kind {
            NodeKind::Source { .. } => NodeRole::Source,
            NodeKind::Operator(_) | NodeKind::SideOutput { .. } => NodeRole::Operator,
            NodeKind::Sink { .. } => NodeRole::Sink,
        };
        let node_metrics = metrics.node(&node.name, role);
        let worker_node = match node.kind {
            NodeKind::Source {
                schema,
                watermark,
                source,
            } => {
                let (sender, slot) = ingress_channel(options.channel_capacity);
                let side_outputs = source_side_outputs[position];
                let ctx = SourceContext::new(
                    node.name.clone(),
                    schema.clone(),
                    node_metrics.clone(),
                    sender,
                    shutdown.signal(),
                )
                .with_side_outputs(side_outputs);
                schemas.push(Some(schema));
                let handle = runtime.spawn(source.run(ctx));
                source_tasks.push((node.name.clone(), handle));
                let owner = source_count % options.workers;
                source_count += 1;
                WorkerNode::Source {
                    slot,
                    policy: watermark,
                    owner,
                    side_outputs,
                }
            }
            NodeKind::Operator(operator) => {
                schemas.push(Some(operator.output_schema()));
                WorkerNode::Operator(operator)
            }
            NodeKind::SideOutput { index, schema } => {
                schemas.push(Some(schema));
                WorkerNode::SideOutput { index }
            }
            NodeKind::Sink { sink } => {
                let schema = node
                    .inputs
                    .first()
                    .and_then(|&i| schemas[i].clone())
                    .ok_or_else(|| {
                        EngineError::Internal(format!("sink '{}' has no input", node.name))
                    })?;
                schemas.push(None);
                let (sender, receiver) = mpsc::channel(options.channel_capacity.max(1));
                let input = SinkInput::new(
                    node.name.clone(),
                    pipeline_name.clone(),
                    schema,
                    node_metrics.clone(),
                    receiver,
                    shutdown.clone(),
                );
                let trigger = shutdown.clone();
                let sink_name = node.name.clone();
                let handle = runtime.spawn(async move {
                    let result = sink.run(input).await;
                    if let Err(error) = &result {
                        error!(sink = %sink_name, "Sink failed, stopping the pipeline: {error}");
                        trigger.trigger();
                    }
                    result
                });
                sink_tasks.push((node.name.clone(), handle));
                let senders = (0..options.workers).map(|_| sender.clone()).collect();
                WorkerNode::Sink {
                    senders: Mutex::new(senders),
                }
            }
        };
        plan.nodes
            .push((node.name, node.inputs, node_metrics, worker_node));
    }

    if options.handle_signals {
        runtime.spawn(handle_signals(shutdown.clone()));
    }

    let plan = Arc::new(plan);
    let workers = options.workers;
    let memory = options.memory.clone();
    let config = timely::Config::process(workers);
    // A worker that panics leaves its peers waiting for progress that never comes, so
    // joining the workers would hang. Each worker carries a guard that, while unwinding,
    // reports the panic; the run then stops waiting and fails instead of hanging.
    let (panic_sender, mut panic_receiver) = mpsc::unbounded_channel::<usize>();
    // Register every worker's heartbeat before any starts, so a liveness probe sees them all.
    for index in 0..workers {
        metrics.worker(index);
    }
    let liveness = metrics.clone();
    let guards = timely::execute(config, move |worker| {
        let heartbeat = liveness.worker(worker.index());
        let _guard = PanicReporter {
            worker: worker.index(),
            sender: panic_sender.clone(),
            heartbeat: heartbeat.clone(),
        };
        let plan = plan.clone();
        worker.dataflow::<EventTime, _, _>(|scope| {
            build_worker_dataflow(scope, &plan, workers, &memory)
        });
        // Parking with a timeout (rather than forever) lets an idle worker wake about once a
        // second to beat its heartbeat, so a liveness probe never mistakes "waiting for
        // input" for "stuck". Waking costs one empty step per second.
        while worker.step_or_park(Some(WorkerLiveness::PARK_TIMEOUT)) {
            heartbeat.beat();
        }
        heartbeat.finish();
    })
    .map_err(|error| EngineError::Startup(format!("timely workers: {error}")))?;

    let worker_results = runtime.block_on(async {
        let joined = tokio::task::spawn_blocking(move || guards.join());
        tokio::select! {
            joined = joined => Some(joined),
            Some(_) = panic_receiver.recv() => None,
        }
    });
    let Some(worker_results) = worker_results else {
        shutdown.trigger();
        runtime.shutdown_timeout(Duration::from_secs(1));
        return Err(EngineError::Worker(
            "a dataflow worker panicked (its message is above); the pipeline was stopped".into(),
        ));
    };

    let mut first_error: Option<EngineError> = None;
    match worker_results {
        Ok(results) => {
            for result in results {
                if let Err(panic) = result {
                    first_error.get_or_insert(EngineError::Worker(panic));
                }
            }
        }
        Err(join_error) => {
            first_error.get_or_insert(EngineError::Worker(join_error.to_string()));
        }
    }

    let mut sinks = Vec::new();
    runtime.block_on(async {
        for (node, handle) in source_tasks {
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => {
                    error!(source = %node, "Source failed: {source}");
                    first_error.get_or_insert(EngineError::Source { node, source });
                }
                Err(join) => {
                    first_error.get_or_insert(EngineError::Source {
                        node,
                        source: join_error(join),
                    });
                }
            }
        }
        for (node, handle) in sink_tasks {
            match handle.await {
                Ok(Ok(summary)) => sinks.push((node, summary)),
                Ok(Err(source)) => {
                    first_error.get_or_insert(EngineError::Sink { node, source });
                }
                Err(join) => {
                    first_error.get_or_insert(EngineError::Sink {
                        node,
                        source: join_error(join),
                    });
                }
            }
        }
    });
    let interrupted = shutdown.signal().is_requested();
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(error) = first_error {
        return Err(error);
    }
    Ok(RunReport {
        nodes: metrics.snapshot(),
        sinks,
        elapsed: started.elapsed(),
        interrupted,
    })
}

/// Reports its worker's panic when dropped during unwinding.
struct PanicReporter {
    worker: usize,
    sender: mpsc::UnboundedSender<usize>,
    heartbeat: Arc<WorkerLiveness>,
}

impl Drop for PanicReporter {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.heartbeat.panicked();
            error!(
                worker = self.worker,
                "Dataflow worker panicked; stopping the pipeline"
            );
            let _ = self.sender.send(self.worker);
        }
    }
}

fn join_error(join: tokio::task::JoinError) -> BoxError {
    if join.is_panic() {
        format!("task panicked: {join}. This is a bug: please report it").into()
    } else {
        format!("task cancelled: {join}").into()
    }
}

fn build_worker_dataflow(
    scope: timely::dataflow::Scope<'_, EventTime>,
    plan: &WorkerPlan,
    workers: usize,
    memory: &Arc<MemoryBudget>,
) {
    // Each node's outputs: the main stream first, then an operator's side outputs.
    let mut streams: Vec<Vec<BatchStream<'_>>> = Vec::with_capacity(plan.nodes.len());
    for (name, inputs, metrics, node) in &plan.nodes {
        let input_streams: Vec<BatchStream<'_>> = inputs
            .iter()
            .map(|&i| {
                streams[i]
                    .first()
                    .cloned()
                    .expect("inputs are sources or operators")
            })
            .collect();
        let output = match node {
            WorkerNode::Source {
                slot,
                policy,
                owner,
                side_outputs,
            } => ingress_operator(
                scope,
                name,
                slot.clone(),
                *policy,
                metrics.clone(),
                scope.index() == *owner,
                *side_outputs,
            ),
            WorkerNode::Operator(operator) => {
                let ctx = OperatorContext {
                    name: name.clone(),
                    metrics: metrics.clone(),
                    worker_index: scope.index(),
                    workers,
                    memory: memory.clone(),
                };
                let outputs = operator.build_with_side_outputs(input_streams, &ctx);
                assert_eq!(
                    outputs.len(),
                    1 + operator.side_outputs().len(),
                    "operator '{name}' built a different number of side outputs than it declares: \
                     this is a bug, please report it"
                );
                outputs
            }
            WorkerNode::SideOutput { index } => {
                let parent = &streams[inputs[0]];
                let metrics = metrics.clone();
                let stream = parent[1 + index].clone().inspect_core(move |event| {
                    if let Ok((_, batch)) = event {
                        metrics.add_rows_in(batch.num_rows());
                        metrics.add_rows_out(batch.num_rows());
                    }
                });
                vec![stream]
            }
            WorkerNode::Sink { senders } => {
                let sender = senders
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop()
                    .expect("one sender per worker");
                let stream = if input_streams.len() == 1 {
                    input_streams.into_iter().next().expect("one input")
                } else {
                    scope.concatenate(input_streams)
                };
                egress_operator(stream, name, sender, metrics.clone());
                Vec::new()
            }
        };
        streams.push(output);
    }
}

async fn handle_signals(trigger: ShutdownTrigger) {
    let mut signals = 0;
    loop {
        wait_for_signal().await;
        signals += 1;
        if signals == 1 {
            info!(
                "Shutting down: closing open windows and committing files (signal again to exit at once)"
            );
            trigger.trigger();
        } else {
            warn!("Second signal: exiting without committing open windows");
            std::process::exit(130);
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
