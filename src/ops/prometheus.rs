//! `/metrics`: the pipeline's counters in the Prometheus text format, built at scrape time
//! from [`PipelineMetrics::snapshot`](edgeflow_engine::PipelineMetrics::snapshot) with
//! `prometheus-client` (a `Collector`: nothing is kept between scrapes).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `edgeflow_rows_in_total`, `edgeflow_rows_out_total` | counter | `node`, `role` |
//! | `edgeflow_dropped_rows_total` (rejected, late, … by reason) | counter | `node`, `reason` |
//! | `edgeflow_watermark_seconds` (event time) | gauge | `node` |
//! | `edgeflow_watermark_lag_seconds` (wall clock − watermark, sources) | gauge | `node` |
//! | `edgeflow_queue_depth` (batches waiting in a source's or sink's channel) | gauge | `node` |
//! | `edgeflow_state_rows`, `edgeflow_state_bytes` (stateful operators) | gauge | `node` |
//! | `edgeflow_sink_files_written_total`, `edgeflow_sink_bytes_written_total` | counter | `node` |
//! | `edgeflow_connected` (MQTT), `edgeflow_listening` (HTTP), `edgeflow_outbox_messages` | gauge | `node` |
//! | `edgeflow_spool_bytes`, `edgeflow_spool_segments`, `edgeflow_spool_oldest_unsent_age_seconds` (flight sink) | gauge | `node` |
//! | `edgeflow_node_events_total` (connector and operator counters: `reconnects`, `requests`, …) | counter | `node`, `event` |
//! | `edgeflow_pipeline_info` | gauge (1) | `pipeline`, `version` |
//! | `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds`, `process_threads`, `process_start_time_seconds` | | |

use edgeflow_engine::metrics::WorkerSnapshot;
use edgeflow_engine::{NodeRole, NodeSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::pipeline::{now_ms, role_word, watermark_lag_seconds};
use super::process::ProcessStats;

/// Connector values that are levels, not counts; every other value is a counter.
const GAUGE_VALUES: [(&str, &str, &str); 8] = [
    (
        "connected",
        "edgeflow_connected",
        "1 while the node is connected to its broker",
    ),
    (
        "writable",
        "edgeflow_writable",
        "1 while the sink's output takes writes (0 after a failed write or probe)",
    ),
    (
        "listening",
        "edgeflow_listening",
        "1 while the HTTP source accepts connections",
    ),
    (
        "outbox",
        "edgeflow_outbox_messages",
        "Messages waiting for the broker's acknowledgement",
    ),
    (
        "spool_bytes",
        "edgeflow_spool_bytes",
        "Bytes of segments in a flight sink's spool, waiting for the collector's ack",
    ),
    (
        "spool_segments",
        "edgeflow_spool_segments",
        "Segments in a flight sink's spool, waiting for the collector's ack",
    ),
    (
        "oldest_unsent_age_seconds",
        "edgeflow_spool_oldest_unsent_age_seconds",
        "Age of the oldest segment in a flight sink's spool (0 when empty)",
    ),
    (
        edgeflow_engine::ingress::QUEUE_DEPTH,
        "edgeflow_queue_depth",
        "Batches waiting in the node's channel (sampled on each send or receive)",
    ),
];

/// One scrape's worth of figures.
#[derive(Debug)]
struct Scrape {
    pipeline: String,
    nodes: Vec<NodeSnapshot>,
    /// Each dataflow worker's index (as a label value) and heartbeat.
    workers: Vec<(String, WorkerSnapshot)>,
    process: ProcessStats,
    now_ms: u64,
}

/// Renders the text exposition for `nodes`, the dataflow `workers` and `process`.
pub fn render(
    pipeline: &str,
    nodes: Vec<NodeSnapshot>,
    workers: Vec<WorkerSnapshot>,
    process: ProcessStats,
) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        pipeline: pipeline.to_string(),
        nodes,
        workers: workers
            .into_iter()
            .map(|w| (w.index.to_string(), w))
            .collect(),
        process,
        now_ms: now_ms(),
    }));
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn node(n: &NodeSnapshot) -> Labels<'_> {
    vec![("node", n.name.as_str())]
}

fn worker(index: &str) -> Labels<'_> {
    vec![("worker", index)]
}

fn with_role(n: &NodeSnapshot) -> Labels<'_> {
    vec![("node", n.name.as_str()), ("role", role_word(n.role))]
}

fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric_type: MetricType,
    series: Vec<(Labels<'_>, M)>,
) -> Result<(), std::fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in series {
        if labels.is_empty() {
            // A single unlabelled series: `name value`, not `name{} value`.
            return value.encode(metric);
        }
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(value: u64) -> ConstCounter<u64> {
    ConstCounter::new(value)
}

fn gauge(value: f64) -> ConstGauge<f64> {
    ConstGauge::new(value)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let nodes = &self.nodes;
        family(
            e,
            "edgeflow_pipeline_info",
            "The running pipeline (always 1)",
            MetricType::Gauge,
            vec![(
                vec![
                    ("pipeline", self.pipeline.as_str()),
                    ("version", env!("CARGO_PKG_VERSION")),
                ],
                gauge(1.0),
            )],
        )?;
        family(
            e,
            "edgeflow_rows_in",
            "Rows received by the node (sources: records read)",
            MetricType::Counter,
            nodes
                .iter()
                .map(|n| (with_role(n), counter(n.rows_in)))
                .collect(),
        )?;
        family(
            e,
            "edgeflow_rows_out",
            "Rows emitted by the node",
            MetricType::Counter,
            nodes
                .iter()
                .map(|n| (with_role(n), counter(n.rows_out)))
                .collect(),
        )?;
        family(
            e,
            "edgeflow_dropped_rows",
            "Rows rejected, late or otherwise dropped, by reason",
            MetricType::Counter,
            nodes
                .iter()
                .flat_map(|n| {
                    n.dropped.iter().map(move |(reason, count)| {
                        (
                            vec![("node", n.name.as_str()), ("reason", reason.as_str())],
                            counter(*count),
                        )
                    })
                })
                .collect(),
        )?;
        let watermarked: Vec<&NodeSnapshot> = nodes.iter().filter(|n| n.watermark > 0).collect();
        family(
            e,
            "edgeflow_watermark_seconds",
            "The node's watermark, event time in seconds since the epoch",
            MetricType::Gauge,
            watermarked
                .iter()
                .map(|n| (node(n), gauge(n.watermark as f64 / 1000.0)))
                .collect(),
        )?;
        family(
            e,
            "edgeflow_watermark_lag_seconds",
            "How far a source's watermark trails the wall clock",
            MetricType::Gauge,
            watermarked
                .iter()
                .filter(|n| n.role == NodeRole::Source)
                .filter_map(|n| {
                    watermark_lag_seconds(n.watermark, self.now_ms).map(|lag| (node(n), gauge(lag)))
                })
                .collect(),
        )?;
        let operators: Vec<&NodeSnapshot> = nodes
            .iter()
            .filter(|n| n.role == NodeRole::Operator)
            .collect();
        family(
            e,
            "edgeflow_state_rows",
            "Rows or keys held in the operator's state",
            MetricType::Gauge,
            operators
                .iter()
                .map(|n| (node(n), gauge(n.state_rows as f64)))
                .collect(),
        )?;
        family(
            e,
            "edgeflow_state_bytes",
            "Estimated bytes of the operator's state",
            MetricType::Gauge,
            operators
                .iter()
                .map(|n| (node(n), gauge(n.state_bytes as f64)))
                .collect(),
        )?;
        let sinks: Vec<&NodeSnapshot> = nodes.iter().filter(|n| n.role == NodeRole::Sink).collect();
        family(
            e,
            "edgeflow_sink_files_written",
            "Files committed by the sink",
            MetricType::Counter,
            sinks
                .iter()
                .map(|n| (node(n), counter(n.files_written)))
                .collect(),
        )?;
        family(
            e,
            "edgeflow_sink_bytes_written",
            "Bytes committed by the sink",
            MetricType::Counter,
            sinks
                .iter()
                .map(|n| (node(n), counter(n.bytes_written)))
                .collect(),
        )?;
        for (key, name, help) in GAUGE_VALUES {
            family(
                e,
                name,
                help,
                MetricType::Gauge,
                nodes
                    .iter()
                    .filter_map(|n| n.values.get(key).map(|v| (node(n), gauge(*v as f64))))
                    .collect(),
            )?;
        }
        family(
            e,
            "edgeflow_node_events",
            "Connector and operator event counters (reconnects, requests, evicted windows, ...)",
            MetricType::Counter,
            nodes
                .iter()
                .flat_map(|n| {
                    n.values
                        .iter()
                        .filter(|(key, _)| !GAUGE_VALUES.iter().any(|(g, _, _)| g == key))
                        .map(move |(key, value)| {
                            (
                                vec![("node", n.name.as_str()), ("event", key.as_str())],
                                counter(*value),
                            )
                        })
                })
                .collect(),
        )?;

        family(
            e,
            "edgeflow_worker_steps",
            "Steps completed by each dataflow worker (an idle worker takes one a second)",
            MetricType::Counter,
            self.workers
                .iter()
                .map(|(index, w)| (worker(index), counter(w.steps)))
                .collect(),
        )?;
        family(
            e,
            "edgeflow_worker_seconds_since_step",
            "Seconds since each dataflow worker last completed a step (/health fails at 30)",
            MetricType::Gauge,
            self.workers
                .iter()
                .map(|(index, w)| (worker(index), gauge(w.since_last_step.as_secs_f64())))
                .collect(),
        )?;

        let p = &self.process;
        let single = |value: Option<f64>| -> Vec<(Labels<'static>, ConstGauge<f64>)> {
            value.map(|v| (Vec::new(), gauge(v))).into_iter().collect()
        };
        family(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            MetricType::Gauge,
            single(p.resident_bytes.map(|v| v as f64)),
        )?;
        family(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            MetricType::Gauge,
            single(p.virtual_bytes.map(|v| v as f64)),
        )?;
        family(
            e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            MetricType::Counter,
            p.cpu_seconds
                .map(|v| (Vec::<(&str, &str)>::new(), ConstCounter::new(v)))
                .into_iter()
                .collect(),
        )?;
        family(
            e,
            "process_open_fds",
            "Number of open file descriptors",
            MetricType::Gauge,
            single(p.open_fds.map(|v| v as f64)),
        )?;
        family(
            e,
            "process_threads",
            "Number of OS threads",
            MetricType::Gauge,
            single(p.threads.map(|v| v as f64)),
        )?;
        family(
            e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            MetricType::Gauge,
            single(p.start_time_seconds),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn counters_and_gauges_follow_prometheus_names() {
        let node = NodeSnapshot {
            name: "readings".into(),
            role: NodeRole::Source,
            rows_in: 12,
            rows_out: 10,
            watermark: 1_000,
            state_rows: 0,
            state_bytes: 0,
            files_written: 0,
            bytes_written: 0,
            dropped: BTreeMap::from([("wrong_type".to_string(), 2)]),
            values: BTreeMap::from([
                ("listening".to_string(), 1),
                ("requests".to_string(), 7),
                ("spool_bytes".to_string(), 2048),
            ]),
        };
        let worker = WorkerSnapshot {
            index: 1,
            state: edgeflow_engine::metrics::WorkerState::Running,
            steps: 42,
            since_last_step: std::time::Duration::from_millis(250),
        };
        let text = render(
            "p",
            vec![node],
            vec![worker],
            ProcessStats {
                resident_bytes: Some(4096),
                cpu_seconds: Some(1.5),
                ..ProcessStats::default()
            },
        );
        for line in [
            "edgeflow_rows_in_total{node=\"readings\",role=\"source\"} 12",
            "edgeflow_dropped_rows_total{node=\"readings\",reason=\"wrong_type\"} 2",
            "edgeflow_listening{node=\"readings\"} 1",
            "edgeflow_node_events_total{node=\"readings\",event=\"requests\"} 7",
            "process_resident_memory_bytes 4096",
            "process_cpu_seconds_total 1.5",
            "edgeflow_worker_steps_total{worker=\"1\"} 42",
            "edgeflow_worker_seconds_since_step{worker=\"1\"} 0.25",
            "# TYPE edgeflow_watermark_lag_seconds gauge",
            "# TYPE edgeflow_spool_bytes gauge",
            "edgeflow_spool_bytes{node=\"readings\"} 2048",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("edgeflow_state_rows"),
            "no operators, no state"
        );
        assert!(
            !text.contains("event=\"spool_bytes\""),
            "a level is not also a counter"
        );
    }
}
