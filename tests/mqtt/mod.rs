//! The `mqtt` source and sink against a real mosquitto (see `mqtt_broker`): payload formats
//! and rejects, QoS 1 across a broker restart, a persistent session across an engine
//! restart, TLS and mutual TLS, a wrong CA, reconnect backoff, and the sink's topic template.
//!
//! Pipelines run in-process (`edgeflow_engine::run` on a thread) so the tests can read the
//! source's counters while it runs and stop it on cue.
//!
//! * `payloads`: payload formats, rejects and the dead-letter topic;
//! * `delivery`: QoS 1 across broker and engine restarts, persistent sessions;
//! * `tls`: TLS, mutual TLS, a wrong CA, reconnect backoff against a dead broker;
//! * `sink`: the sink's topic template and batching, and the `mqtt_gateway` example;
//! * `registry`: the `mqtt_registry` example, a device registry in retained messages.
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, TimestampMillisecondType};
use edgeflow_connectors::mqtt::{SINK_KIND, SOURCE_KIND};
use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
use edgeflow_engine::testing::CollectSink;
use edgeflow_engine::{
    EngineError, Graph, NodeKind, NodeMetrics, NodeRole, PipelineMetrics, RunOptions, RunReport,
    ShutdownTrigger, SinkEvent, SinkInput,
};

use crate::mqtt_broker::{Broker, Security};

mod delivery;
mod payloads;
mod registry;
mod sink;
mod tls;

/// A pipeline `mqtt source → collect`, plus `source.rejected → collect`, running on a thread.
struct Running {
    trigger: ShutdownTrigger,
    handle: Option<JoinHandle<Result<RunReport, EngineError>>>,
    main: CollectSink,
    rejected: CollectSink,
    /// What the last of the `operators` given to [`Running::start_with`] emitted.
    operated: CollectSink,
    metrics: Arc<NodeMetrics>,
}

impl Running {
    fn start(options: &str) -> Self {
        Self::start_with(options, &[])
    }

    /// Also runs `source → operators[0] → operators[1] → … → collect`, each operator given as
    /// `(type, options)`.
    fn start_with(options: &str, operators: &[(&str, &str)]) -> Self {
        let table: toml::Table = options.parse().expect("valid TOML");
        let config = (SOURCE_KIND.parse)(table).expect("options parse");
        let schema = config.schema().expect("options check");
        let schema_of_source = schema.clone();
        let (port, rejected_schema) = config.side_outputs().remove(0);
        assert_eq!(port, "rejected");
        let source = config.build().expect("source builds");
        let mut graph = Graph::new("mqtt-test");
        let src = graph
            .add(
                "sensors",
                vec![],
                NodeKind::Source {
                    schema,
                    watermark: config.watermark(),
                    source,
                },
            )
            .expect("source node");
        let main = CollectSink::new();
        graph
            .add(
                "main",
                vec![src],
                NodeKind::Sink {
                    sink: Box::new(main.clone()),
                },
            )
            .expect("main sink");
        let side = graph
            .add(
                "sensors.rejected",
                vec![src],
                NodeKind::SideOutput {
                    index: 0,
                    schema: rejected_schema,
                },
            )
            .expect("side output");
        let operated = CollectSink::new();
        let mut last = (src, schema_of_source.clone());
        for (position, (kind, text)) in operators.iter().enumerate() {
            let kind = edgeflow_operators::operators()
                .iter()
                .find(|k| k.name == *kind)
                .expect("operator kind");
            let config =
                (kind.parse)(text.parse().expect("operator TOML")).expect("operator options");
            let operator = config.plan(&[last.1.clone()]).expect("operator plans");
            let schema = operator.output_schema();
            let index = graph
                .add(
                    format!("op{position}"),
                    vec![last.0],
                    NodeKind::Operator(operator),
                )
                .expect("operator node");
            last = (index, schema);
        }
        if !operators.is_empty() {
            graph
                .add(
                    "operated",
                    vec![last.0],
                    NodeKind::Sink {
                        sink: Box::new(operated.clone()),
                    },
                )
                .expect("operator sink");
        }
        let rejected = CollectSink::new();
        graph
            .add(
                "rejects",
                vec![side],
                NodeKind::Sink {
                    sink: Box::new(rejected.clone()),
                },
            )
            .expect("reject sink");
        let pipeline_metrics = PipelineMetrics::new();
        let metrics = pipeline_metrics.node("sensors", NodeRole::Source);
        let (trigger, _signal) = ShutdownTrigger::new();
        let run_options = RunOptions {
            workers: 2,
            io_threads: 2,
            shutdown: trigger.clone(),
            ..RunOptions::default()
        };
        let handle =
            std::thread::spawn(move || edgeflow_engine::run(graph, run_options, pipeline_metrics));
        Self {
            trigger,
            handle: Some(handle),
            main,
            rejected,
            operated,
            metrics,
        }
    }

    fn value(&self, name: &str) -> u64 {
        self.metrics
            .snapshot()
            .values
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    fn wait_connected(&self) {
        wait_for("the source to connect", Duration::from_secs(15), || {
            self.value("connected") == 1
        });
        // The subscription follows the CONNACK; give the SUBACK a moment.
        std::thread::sleep(Duration::from_millis(300));
    }

    fn main_rows(&self) -> usize {
        self.main.batches().iter().map(RecordBatch::num_rows).sum()
    }

    /// Stops the pipeline and returns how the run ended.
    fn stop(mut self) -> Result<RunReport, EngineError> {
        self.trigger.trigger();
        self.handle
            .take()
            .expect("running")
            .join()
            .expect("run thread")
    }

    /// Waits for the run to end by itself (for example a fatal connection error).
    fn wait_end(mut self, timeout: Duration) -> Result<RunReport, EngineError> {
        let handle = self.handle.take().expect("running");
        let deadline = Instant::now() + timeout;
        while !handle.is_finished() {
            if Instant::now() > deadline {
                self.trigger.trigger();
                panic!("the pipeline did not end by itself within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        handle.join().expect("run thread")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.trigger.trigger();
            let _ = handle.join();
        }
    }
}

/// `edgeflow run examples/<example> --no-status` against `broker`, in `dir`, with its log
/// lines read as they come.
struct CliRun {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    log: String,
}

impl CliRun {
    fn start(example: &str, broker: &Broker, dir: &std::path::Path) -> Self {
        use std::io::BufRead;

        let mut child = crate::util::edgeflow()
            .arg("run")
            .arg(crate::util::repo().join("examples").join(example))
            .arg("--no-status")
            .env("MQTT_URL", broker.url())
            .current_dir(dir)
            .stderr(Stdio::piped())
            .spawn()
            .expect("edgeflow runs");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = sender.send(line);
            }
        });
        Self {
            child,
            lines,
            log: String::new(),
        }
    }

    /// Reads log lines until `done(log so far)`, failing after 20 s.
    fn wait_log(&mut self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&self.log) {
            assert!(Instant::now() < deadline, "{what}:\n{}", self.log);
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.log.push_str(&line);
                self.log.push('\n');
            }
        }
    }

    /// Sends SIGTERM, waits for the exit, checks it succeeded and returns the whole log.
    fn stop(mut self) -> String {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("edgeflow ends");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.log.push_str(&line);
            self.log.push('\n');
        }
        assert!(exit.success(), "{}", self.log);
        self.log
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let array = b
                .column_by_name(column)
                .expect("column")
                .as_string::<i32>()
                .clone();
            (0..array.len())
                .map(|i| array.is_valid(i).then(|| array.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn floats(batches: &[RecordBatch], column: &str) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|b| {
            let array = b
                .column_by_name(column)
                .expect("column")
                .as_primitive::<arrow::datatypes::Float64Type>()
                .clone();
            (0..array.len())
                .map(|i| array.is_valid(i).then(|| array.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn times(batches: &[RecordBatch], column: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .expect("column")
                .as_primitive::<TimestampMillisecondType>()
                .values()
                .to_vec()
        })
        .collect()
}

const SENSOR_SCHEMA: &str = r#"schema = { site = "string", device_id = "string", metric = "string", value = "float64", ts = "timestamp_ms" }"#;

/// Publishes `rows` (device_id, ts, value) through the `mqtt` sink: QoS 1, one JSON object
/// per message to `sensors/{device_id}`, the outbox riding out broker restarts.
fn publish_with_sink(url: &str, rows: Vec<(String, i64, f64)>, chunk: usize) -> JoinHandle<u64> {
    publish_with_sink_options(url, "", rows, chunk)
}

/// [`publish_with_sink`] with more sink options (such as a `tls` table).
fn publish_with_sink_options(
    url: &str,
    extra: &str,
    rows: Vec<(String, i64, f64)>,
    chunk: usize,
) -> JoinHandle<u64> {
    let schema = schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, true),
            Field::new("ts", timestamp_type(), true),
            Field::new("value", DataType::Float64, true),
        ],
        Some("ts"),
    );
    let table: toml::Table = format!(
        r#"
url = "{url}"
topic = "sensors/{{device_id}}"
qos = 1
inflight = 50
reconnect_min = "50ms"
reconnect_max = "500ms"
drain_timeout = "60s"
{extra}
"#
    )
    .parse()
    .expect("TOML");
    let config = (SINK_KIND.parse)(table).expect("sink options");
    let sink = config.build(&schema).expect("sink builds");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let (input, sender) = SinkInput::for_test("publisher", schema.clone(), 4);
            let running = tokio::spawn(sink.run(input));
            for part in rows.chunks(chunk) {
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(arrow::array::StringArray::from_iter_values(
                            part.iter().map(|r| r.0.as_str()),
                        )),
                        Arc::new(
                            TimestampMillisecondArray::from_iter_values(part.iter().map(|r| r.1))
                                .with_timezone(UTC),
                        ),
                        Arc::new(arrow::array::Float64Array::from_iter_values(
                            part.iter().map(|r| r.2),
                        )),
                    ],
                )
                .expect("batch");
                sender
                    .send(SinkEvent::Rows(batch))
                    .await
                    .expect("sink takes rows");
            }
            drop(sender);
            running
                .await
                .expect("sink task")
                .expect("every message acknowledged")
                .rows
        })
    })
}

fn readings(count: usize, devices: usize) -> Vec<(String, i64, f64)> {
    (0..count)
        .map(|i| {
            (
                format!("d{}", i % devices),
                1_700_000_000_000 + i as i64,
                (i % 1000) as f64 / 10.0,
            )
        })
        .collect()
}

const READING_SOURCE: &str = r#"
topics = ["sensors/+"]
qos = 1
inflight = 100
reconnect_min = "50ms"
reconnect_max = "500ms"
batch_rows = 2000
schema = { device_id = "string", ts = "timestamp_ms", value = "float64" }
"#;

fn distinct_keys(batches: &[RecordBatch]) -> (BTreeSet<(String, i64)>, usize) {
    let devices = strings(batches, "device_id");
    let ts = times(batches, "ts");
    let total = ts.len();
    let keys = devices
        .into_iter()
        .zip(ts)
        .map(|(d, t)| (d.unwrap_or_default(), t))
        .collect();
    (keys, total)
}

/// Waits up to 20 s for a child process (then kills it) and returns its standard output.
trait WaitOutput {
    fn wait_with_output_or_kill(&mut self) -> String;
}

impl WaitOutput for std::process::Child {
    fn wait_with_output_or_kill(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut text = String::new();
        if let Some(stdout) = self.stdout.as_mut() {
            let _ = stdout.read_to_string(&mut text);
        }
        text
    }
}
