//! Live counters for every node of a running pipeline.
//!
//! Each node (source, operator, sink) owns an `Arc<NodeMetrics>`. Counters are relaxed atomics:
//! cheap enough to bump once per batch on the hot path. The CLI's status line and, later, the
//! Prometheus endpoint read them through [`PipelineMetrics::snapshot`].
//!
//! Rejections and other dropped rows are counted *by reason* ([`NodeMetrics::count_dropped`]),
//! so nothing disappears without a number saying why.
//!
//! Each timely worker also has a [`WorkerLiveness`] entry ([`PipelineMetrics::worker`]): the
//! worker bumps it after every step of its loop, and marks it when it finishes or panics, so
//! a liveness probe can tell a stalled or dead worker from a busy one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What kind of node a metrics entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeRole {
    /// Brings rows into the dataflow.
    Source,
    /// Transforms rows inside the dataflow.
    Operator,
    /// Takes rows out of the dataflow.
    Sink,
}

/// Counters for one node.
#[derive(Debug)]
pub struct NodeMetrics {
    name: String,
    role: NodeRole,
    rows_in: AtomicU64,
    rows_out: AtomicU64,
    watermark: AtomicU64,
    state_rows: AtomicU64,
    state_bytes: AtomicU64,
    files_written: AtomicU64,
    bytes_written: AtomicU64,
    dropped: Mutex<BTreeMap<String, u64>>,
    values: Mutex<BTreeMap<String, u64>>,
    messages: Mutex<BTreeMap<String, String>>,
}

impl NodeMetrics {
    fn new(name: &str, role: NodeRole) -> Self {
        Self {
            name: name.to_string(),
            role,
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            watermark: AtomicU64::new(0),
            state_rows: AtomicU64::new(0),
            state_bytes: AtomicU64::new(0),
            files_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            dropped: Mutex::new(BTreeMap::new()),
            values: Mutex::new(BTreeMap::new()),
            messages: Mutex::new(BTreeMap::new()),
        }
    }

    /// A stand-alone entry, for tests and tools that run one node outside a pipeline.
    pub fn detached(name: &str, role: NodeRole) -> Arc<Self> {
        Arc::new(Self::new(name, role))
    }

    /// The node's name in the query file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's role.
    pub fn role(&self) -> NodeRole {
        self.role
    }

    /// Adds rows received.
    pub fn add_rows_in(&self, rows: usize) {
        self.rows_in.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Adds rows emitted.
    pub fn add_rows_out(&self, rows: usize) {
        self.rows_out.fetch_add(rows as u64, Ordering::Relaxed);
    }

    /// Sets the node's watermark (event time, ms), keeping the largest value seen.
    pub fn set_watermark(&self, watermark: u64) {
        self.watermark.fetch_max(watermark, Ordering::Relaxed);
    }

    /// Adds to the number of rows held in state (signed, for per-worker deltas).
    pub fn add_state_rows(&self, delta: i64) {
        if delta >= 0 {
            self.state_rows.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.state_rows
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Adds to the estimated bytes of state held (signed, for per-worker deltas).
    pub fn add_state_bytes(&self, delta: i64) {
        if delta >= 0 {
            self.state_bytes.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.state_bytes
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Records a file committed by a sink, with its size in bytes.
    pub fn add_file_written(&self, bytes: u64) {
        self.files_written.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `rows` dropped, rejected or skipped for `reason` (a short snake_case word such as
    /// `null_field`, `out_of_range`, `late`, `malformed_json`).
    pub fn count_dropped(&self, reason: &str, rows: usize) {
        if rows == 0 {
            return;
        }
        let mut dropped = self
            .dropped
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *dropped.entry(reason.to_string()).or_insert(0) += rows as u64;
    }

    /// Sets a connector-specific value, such as an MQTT source's `connected` (1 or 0).
    pub fn set_value(&self, name: &str, value: u64) {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        // Sources and sinks set values once per batch: no allocation once the name exists.
        match values.get_mut(name) {
            Some(slot) => *slot = value,
            None => {
                values.insert(name.to_string(), value);
            }
        }
    }

    /// Adds to a connector-specific counter, such as `reconnects`.
    pub fn add_value(&self, name: &str, delta: u64) {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        *values.entry(name.to_string()).or_insert(0) += delta;
    }

    /// Sets (`Some`) or clears (`None`) a connector-specific message that explains a value,
    /// such as why a sink's `writable` is 0. Readiness probes quote it.
    pub fn set_message(&self, name: &str, message: Option<String>) {
        let mut messages = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        match message {
            Some(message) => {
                messages.insert(name.to_string(), message);
            }
            None => {
                messages.remove(name);
            }
        }
    }

    /// The connector-specific messages set now, by name.
    pub fn messages(&self) -> BTreeMap<String, String> {
        self.messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> NodeSnapshot {
        NodeSnapshot {
            name: self.name.clone(),
            role: self.role,
            rows_in: self.rows_in.load(Ordering::Relaxed),
            rows_out: self.rows_out.load(Ordering::Relaxed),
            watermark: self.watermark.load(Ordering::Relaxed),
            state_rows: self.state_rows.load(Ordering::Relaxed),
            state_bytes: self.state_bytes.load(Ordering::Relaxed),
            files_written: self.files_written.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            dropped: self
                .dropped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            values: self
                .values
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// A point-in-time copy of one node's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// Node name.
    pub name: String,
    /// Node role.
    pub role: NodeRole,
    /// Rows received (sources: rows read).
    pub rows_in: u64,
    /// Rows emitted.
    pub rows_out: u64,
    /// Largest watermark seen (event time, ms; 0 before any).
    pub watermark: u64,
    /// Rows or keys held in state.
    pub state_rows: u64,
    /// Estimated bytes of the state held (stateful operators).
    pub state_bytes: u64,
    /// Files committed (sinks).
    pub files_written: u64,
    /// Bytes committed (sinks).
    pub bytes_written: u64,
    /// Rows dropped, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Connector-specific values by name (an MQTT node's `connected`, `reconnects`).
    pub values: BTreeMap<String, u64>,
}

impl NodeSnapshot {
    /// All rows dropped, over every reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// What a dataflow worker is doing, as far as liveness is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    /// In its step loop.
    Running,
    /// Left its step loop because the dataflow completed.
    Finished,
    /// Unwound from a panic (a bug).
    Panicked,
}

/// One timely worker's heartbeat: when it last completed a step of its loop.
///
/// The worker calls [`WorkerLiveness::beat`] after every `step_or_park`. A worker parked
/// waiting for input wakes at least every [`WorkerLiveness::PARK_TIMEOUT`] to beat, so an
/// idle worker stays fresh; a worker stuck inside one step (an operator that never returns,
/// or blocked on a sink that takes nothing) goes stale.
#[derive(Debug)]
pub struct WorkerLiveness {
    epoch: Instant,
    last_step_ms: AtomicU64,
    steps: AtomicU64,
    state: AtomicU8,
}

impl WorkerLiveness {
    /// Longest a worker parks without input before it wakes to beat.
    pub const PARK_TIMEOUT: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_step_ms: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            state: AtomicU8::new(0),
        }
    }

    /// Records a completed step (cheap: one clock read and two relaxed stores).
    pub fn beat(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_step_ms.store(now, Ordering::Relaxed);
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks the worker as having left its loop normally.
    pub fn finish(&self) {
        self.beat();
        self.state.store(1, Ordering::Relaxed);
    }

    /// Marks the worker as dead by panic.
    pub fn panicked(&self) {
        self.state.store(2, Ordering::Relaxed);
    }

    /// The worker's state and heartbeat now.
    pub fn snapshot(&self, index: usize) -> WorkerSnapshot {
        let now = self.epoch.elapsed();
        let last = Duration::from_millis(self.last_step_ms.load(Ordering::Relaxed));
        WorkerSnapshot {
            index,
            state: match self.state.load(Ordering::Relaxed) {
                0 => WorkerState::Running,
                1 => WorkerState::Finished,
                _ => WorkerState::Panicked,
            },
            steps: self.steps.load(Ordering::Relaxed),
            since_last_step: now.saturating_sub(last),
        }
    }
}

/// A point-in-time copy of one worker's heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// The worker's index (0-based).
    pub index: usize,
    /// Running, finished or panicked.
    pub state: WorkerState,
    /// Steps completed.
    pub steps: u64,
    /// Time since the last completed step (since registration before the first).
    pub since_last_step: Duration,
}

/// Counters for every node of one pipeline.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    nodes: Mutex<Vec<Arc<NodeMetrics>>>,
    workers: Mutex<Vec<Arc<WorkerLiveness>>>,
}

impl PipelineMetrics {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The entry for `name`, created on first use. Workers that build the same node share it.
    pub fn node(&self, name: &str, role: NodeRole) -> Arc<NodeMetrics> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = nodes.iter().find(|n| n.name == name && n.role == role) {
            return existing.clone();
        }
        let created = Arc::new(NodeMetrics::new(name, role));
        nodes.push(created.clone());
        created
    }

    /// Copies of every node's counters, in registration order.
    pub fn snapshot(&self) -> Vec<NodeSnapshot> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.iter().map(|n| n.snapshot()).collect()
    }

    /// Every node's entry, in registration order (for readers of [`NodeMetrics::messages`]).
    pub fn nodes(&self) -> Vec<Arc<NodeMetrics>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The heartbeat of worker `index`, created (as just started) on first use.
    pub fn worker(&self, index: usize) -> Arc<WorkerLiveness> {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        while workers.len() <= index {
            workers.push(Arc::new(WorkerLiveness::new()));
        }
        workers[index].clone()
    }

    /// Every registered worker's heartbeat, by index (empty before the workers start).
    pub fn workers(&self) -> Vec<WorkerSnapshot> {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers
            .iter()
            .enumerate()
            .map(|(index, worker)| worker.snapshot(index))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_shared_by_name_and_count_by_reason() {
        let metrics = PipelineMetrics::new();
        let a = metrics.node("clean", NodeRole::Operator);
        let b = metrics.node("clean", NodeRole::Operator);
        a.add_rows_in(10);
        b.add_rows_in(5);
        a.count_dropped("null_field", 2);
        b.count_dropped("null_field", 1);
        b.count_dropped("out_of_range", 4);
        a.count_dropped("never", 0);
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot[0].rows_in, 15);
        assert_eq!(snapshot[0].dropped.get("null_field"), Some(&3));
        assert_eq!(snapshot[0].dropped_total(), 7);
        assert!(!snapshot[0].dropped.contains_key("never"));
    }

    #[test]
    fn connector_values_are_set_and_added() {
        let node = NodeMetrics::detached("mqtt", NodeRole::Source);
        node.set_value("connected", 1);
        node.add_value("reconnects", 2);
        node.add_value("reconnects", 1);
        node.set_value("connected", 0);
        let snapshot = node.snapshot();
        assert_eq!(snapshot.values.get("connected"), Some(&0));
        assert_eq!(snapshot.values.get("reconnects"), Some(&3));
    }

    #[test]
    fn messages_are_set_and_cleared() {
        let metrics = PipelineMetrics::new();
        let node = metrics.node("archive", NodeRole::Sink);
        node.set_message("writable", Some("read-only file system".into()));
        assert_eq!(
            metrics.nodes()[0]
                .messages()
                .get("writable")
                .map(String::as_str),
            Some("read-only file system")
        );
        node.set_message("writable", None);
        assert!(node.messages().is_empty());
    }

    #[test]
    fn workers_beat_finish_and_panic() {
        let metrics = PipelineMetrics::new();
        assert!(metrics.workers().is_empty());
        let second = metrics.worker(1);
        second.beat();
        second.beat();
        metrics.worker(0).panicked();
        let workers = metrics.workers();
        assert_eq!(workers.len(), 2);
        assert_eq!(workers[0].state, WorkerState::Panicked);
        assert_eq!(
            (workers[1].state, workers[1].steps),
            (WorkerState::Running, 2)
        );
        assert!(workers[1].since_last_step < Duration::from_secs(1));
        second.finish();
        assert_eq!(metrics.workers()[1].state, WorkerState::Finished);
    }

    #[test]
    fn watermark_keeps_the_largest_value() {
        let node = NodeMetrics::detached("s", NodeRole::Source);
        node.set_watermark(10);
        node.set_watermark(5);
        assert_eq!(node.snapshot().watermark, 10);
    }
}
