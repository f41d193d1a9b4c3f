//! Live counters for every node of a running pipeline.
//!
//! Each node (source, operator, sink) owns an `Arc<NodeMetrics>`. Counters are relaxed atomics:
//! cheap enough to bump once per batch on the hot path. The CLI's status line and, later, the
//! Prometheus endpoint read them through [`PipelineMetrics::snapshot`].
//!
//! Rejections and other dropped rows are counted *by reason* ([`NodeMetrics::count_dropped`]),
//! so nothing disappears without a number saying why.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// Counters for every node of one pipeline.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    nodes: Mutex<Vec<Arc<NodeMetrics>>>,
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
    fn watermark_keeps_the_largest_value() {
        let node = NodeMetrics::detached("s", NodeRole::Source);
        node.set_watermark(10);
        node.set_watermark(5);
        assert_eq!(node.snapshot().watermark, 10);
    }
}
