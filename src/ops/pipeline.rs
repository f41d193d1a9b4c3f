//! `/api/pipeline`: the planned graph (what `edgeflow explain` shows) with each node's live
//! counters.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgeflow_engine::schema::{event_time_column, type_name};
use edgeflow_engine::time::format_event_time;
use edgeflow_engine::{NodeRole, NodeSnapshot};
use edgeflow_queries::Plan;
use serde::Serialize;
use serde_json::{Value, json};

/// One field of a node's schema.
#[derive(Clone, Debug, Serialize)]
pub struct FieldInfo {
    /// Field name.
    pub name: String,
    /// Type as written in query files (`float64`, `timestamp_ms`, …).
    #[serde(rename = "type")]
    pub type_name: String,
    /// May hold nulls.
    pub nullable: bool,
    /// The node's event-time field.
    pub event_time: bool,
}

/// One node of the graph, as planned.
#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    /// Name in the query file.
    pub name: String,
    /// `source`, `operator` or `sink`.
    pub role: &'static str,
    /// The `type` value.
    pub kind: String,
    /// Names of the nodes it reads.
    pub inputs: Vec<String>,
    /// Output schema (input schema for sinks).
    pub schema: Vec<FieldInfo>,
}

/// The graph of a pipeline, taken from its plan before the plan is turned into a graph.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineDescription {
    /// The pipeline's name.
    pub name: String,
    /// Dataflow worker threads.
    pub workers: usize,
    /// The nodes in topological order.
    pub nodes: Vec<NodeInfo>,
}

/// The role's word.
pub fn role_word(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Source => "source",
        NodeRole::Operator => "operator",
        NodeRole::Sink => "sink",
    }
}

impl PipelineDescription {
    /// Describes `plan`, to be run with `workers` workers.
    pub fn of(plan: &Plan, name: &str, workers: usize) -> Self {
        let nodes = plan
            .nodes
            .iter()
            .map(|node| {
                let event_time = event_time_column(&node.schema).map(|(i, _)| i);
                NodeInfo {
                    name: node.name.clone(),
                    role: role_word(node.role),
                    kind: node.kind.clone(),
                    inputs: node
                        .inputs
                        .iter()
                        .map(|&i| plan.nodes[i].name.clone())
                        .collect(),
                    schema: node
                        .schema
                        .fields()
                        .iter()
                        .enumerate()
                        .map(|(index, field)| FieldInfo {
                            name: field.name().clone(),
                            type_name: type_name(field.data_type()),
                            nullable: field.is_nullable(),
                            event_time: Some(index) == event_time,
                        })
                        .collect(),
                }
            })
            .collect();
        Self {
            name: name.to_string(),
            workers,
            nodes,
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How far a watermark trails the wall clock, in seconds (`None` before the first one).
pub fn watermark_lag_seconds(watermark: u64, now_ms: u64) -> Option<f64> {
    (watermark > 0).then(|| now_ms.saturating_sub(watermark) as f64 / 1000.0)
}

/// A node's live counters as JSON.
pub fn stats_json(snapshot: &NodeSnapshot, now_ms: u64) -> Value {
    json!({
        "rows_in": snapshot.rows_in,
        "rows_out": snapshot.rows_out,
        "dropped": snapshot.dropped,
        "dropped_total": snapshot.dropped_total(),
        "watermark": (snapshot.watermark > 0).then(|| format_event_time(snapshot.watermark)),
        "watermark_ms": (snapshot.watermark > 0).then_some(snapshot.watermark),
        "watermark_lag_seconds": watermark_lag_seconds(snapshot.watermark, now_ms),
        "state_rows": snapshot.state_rows,
        "state_bytes": snapshot.state_bytes,
        "files_written": snapshot.files_written,
        "bytes_written": snapshot.bytes_written,
        "values": snapshot.values,
    })
}

/// The whole `/api/pipeline` document.
pub fn document(
    description: &PipelineDescription,
    snapshots: &[NodeSnapshot],
    phase: &str,
    uptime: Duration,
) -> Value {
    let now = now_ms();
    let nodes: Vec<Value> = description
        .nodes
        .iter()
        .map(|node| {
            let mut value = serde_json::to_value(node).unwrap_or(Value::Null);
            let stats = snapshots
                .iter()
                .find(|s| s.name == node.name && role_word(s.role) == node.role)
                .map_or(Value::Null, |s| stats_json(s, now));
            value["stats"] = stats;
            value
        })
        .collect();
    json!({
        "name": description.name,
        "workers": description.workers,
        "phase": phase,
        "uptime_seconds": uptime.as_secs_f64(),
        "nodes": nodes,
    })
}
