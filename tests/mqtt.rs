//! The `mqtt` source and sink against a real mosquitto (see `mqtt_broker`): payload formats
//! and rejects, QoS 1 across a broker restart, a persistent session across an engine
//! restart, TLS and mutual TLS, a wrong CA, reconnect backoff, and the sink's topic template.
//!
//! Pipelines run in-process (`edgeflow_engine::run` on a thread) so the tests can read the
//! source's counters while it runs and stop it on cue.

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

#[test]
fn payload_formats_pass_and_each_kind_of_bad_payload_is_counted_and_set_aside() {
    let broker = Broker::start(Security::Plain);
    let pipeline = Running::start(&format!(
        r#"
url = "{url}"
client_id = "formats"
topics = ["sensors/#"]
qos = 1
format = "auto"
topic_fields = "sensors/{{site}}/{{device_id}}/{{metric}}"
max_payload_size = 1024
dead_letter_topic = "dead-letters/sensors"
{SENSOR_SCHEMA}
"#,
        url = broker.url()
    ));
    let mut dead_letters = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", "dead-letters/#", "-q", "0", "-C", "6", "-W", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs");
    pipeline.wait_connected();
    let oversized = format!(
        "{{\"value\": 1, \"ts\": 1, \"pad\": \"{}\"}}",
        "x".repeat(2000)
    );
    let messages: Vec<(&str, &[u8])> = vec![
        // Valid, around the bad ones.
        ("sensors/s1/d1/temp", br#"{"value": 21.5, "ts": 1000}"#),
        ("sensors/s1/d1/temp", br#"{"value": "warm", "ts": 1500}"#), // wrong_type
        (
            "sensors/s1/d2/temp",
            br#"[{"value": 1, "ts": 2000}, {"value": 2, "ts": "1970-01-01T00:00:03Z"}]"#,
        ),
        ("sensors/s1/d2/temp", br#"{"value": 1, "ts": "#), // malformed_json
        (
            "sensors/s1/d3/temp",
            b"{\"value\": 3, \"ts\": 4000}\n{\"value\": 4, \"ts\": 5000}\n",
        ),
        ("sensors/s1/d3/temp", br#"{"value": 9}"#), // missing_event_time
        ("sensors/s1/d4/temp", b"5.5,6000"),
        ("sensors/s1/d4/temp", b"1,2,3"), // malformed_csv
        ("sensors/s1/d4/temp", oversized.as_bytes()), // oversized
        ("sensors/s2/d5/humidity", b"7.25"),
        ("sensors/status", br#"{"value": 1, "ts": 1}"#), // topic_mismatch
        (
            "sensors/s2/d6/temp",
            br#"{"value": 8, "ts": 8000, "device_id": "own-id"}"#,
        ),
    ];
    broker.publish(1, &messages);
    wait_for(
        "8 valid rows and 6 rejects",
        Duration::from_secs(15),
        || {
            pipeline.main_rows() == 8
                && pipeline
                    .rejected
                    .batches()
                    .iter()
                    .map(RecordBatch::num_rows)
                    .sum::<usize>()
                    == 6
        },
    );
    let metrics = pipeline.metrics.snapshot();
    let (main, rejected) = (pipeline.main.batches(), pipeline.rejected.batches());
    let report = pipeline.stop().expect("clean stop");
    assert!(report.interrupted);

    let expected_dropped: BTreeMap<String, u64> = [
        "malformed_csv",
        "malformed_json",
        "missing_event_time",
        "oversized",
        "topic_mismatch",
        "wrong_type",
    ]
    .into_iter()
    .map(|r| (r.to_string(), 1))
    .collect();
    assert_eq!(metrics.dropped, expected_dropped);
    let republished = dead_letters.wait_with_output_or_kill();
    assert_eq!(
        republished.lines().count(),
        6,
        "every reject republished: {republished}"
    );
    assert!(
        republished.contains(r#"{"value": "warm", "ts": 1500}"#),
        "unchanged: {republished}"
    );
    assert_eq!(metrics.rows_in, 12, "messages received");

    let devices = strings(&main, "device_id");
    let values = floats(&main, "value");
    let ts = times(&main, "ts");
    let mut rows: Vec<(String, f64, i64)> = devices
        .into_iter()
        .zip(values)
        .zip(&ts)
        .map(|((d, v), t)| {
            (
                d.expect("device from topic or payload"),
                v.expect("value"),
                *t,
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
    let arrival = rows
        .iter()
        .find(|r| r.0 == "d5")
        .map(|r| r.2)
        .expect("the bare number");
    assert!(
        arrival > 1_600_000_000_000,
        "a bare number gets its arrival time, got {arrival}"
    );
    assert_eq!(
        rows,
        vec![
            ("d1".to_string(), 21.5, 1000),
            ("d2".to_string(), 1.0, 2000),
            ("d2".to_string(), 2.0, 3000),
            ("d3".to_string(), 3.0, 4000),
            ("d3".to_string(), 4.0, 5000),
            ("d4".to_string(), 5.5, 6000),
            ("d5".to_string(), 7.25, arrival),
            ("own-id".to_string(), 8.0, 8000),
        ]
    );
    let sites = strings(&main, "site");
    assert!(
        sites
            .iter()
            .all(|s| s.as_deref().is_some_and(|s| s == "s1" || s == "s2"))
    );

    let mut reasons: Vec<(String, String)> = strings(&rejected, "reason")
        .into_iter()
        .zip(strings(&rejected, "topic"))
        .map(|(r, t)| (r.expect("reason"), t.expect("topic")))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        vec![
            (
                "malformed_csv".to_string(),
                "sensors/s1/d4/temp".to_string()
            ),
            (
                "malformed_json".to_string(),
                "sensors/s1/d2/temp".to_string()
            ),
            (
                "missing_event_time".to_string(),
                "sensors/s1/d3/temp".to_string()
            ),
            ("oversized".to_string(), "sensors/s1/d4/temp".to_string()),
            ("topic_mismatch".to_string(), "sensors/status".to_string()),
            ("wrong_type".to_string(), "sensors/s1/d1/temp".to_string()),
        ]
    );
    let payloads = strings(&rejected, "payload");
    assert!(payloads.contains(&Some(r#"{"value": "warm", "ts": 1500}"#.to_string())));
    let errors = strings(&rejected, "error");
    assert!(
        errors
            .iter()
            .flatten()
            .any(|e| e.contains("'value'") && e.contains("\"warm\"")),
        "the error names the field and quotes the value: {errors:?}"
    );
}

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

#[test]
fn qos1_stream_survives_a_broker_restart_mid_stream_without_loss() {
    const MESSAGES: usize = 100_000;
    let mut broker = Broker::start(Security::Plain);
    // Deduplicate on (device, ts), then count per device and second: the windows must match
    // an oracle over the published rows exactly.
    let pipeline = Running::start_with(
        &format!(
            "url = \"{}\"\nclient_id = \"restart-test\"\nmax_out_of_orderness = \"5s\"\n{READING_SOURCE}",
            broker.url()
        ),
        &[
            (
                "clean",
                r#"key = ["device_id"]
dedup = { on = ["device_id", "ts"], horizon = "10m" }
max_keys = 1000000"#,
            ),
            (
                "window",
                r#"size = "1s"
group_by = ["device_id"]
aggregates = { n = "count()" }"#,
            ),
        ],
    );
    pipeline.wait_connected();
    let rows = readings(MESSAGES, 10);
    let expected: BTreeSet<(String, i64)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
    let publisher = publish_with_sink(&broker.url(), rows, 500);

    // Kill the broker (SIGTERM: it saves the sessions) once a third has arrived.
    wait_for("a third of the messages", Duration::from_secs(120), || {
        pipeline.main_rows() >= MESSAGES / 3
    });
    broker.stop();
    let during = pipeline.main_rows();
    std::thread::sleep(Duration::from_millis(1500));
    broker.start_again();

    let published = publisher.join().expect("publisher thread");
    assert_eq!(
        published, MESSAGES as u64,
        "the sink reports every row acknowledged"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (keys, total) = distinct_keys(&pipeline.main.batches());
        if keys.len() >= MESSAGES {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = expected.difference(&keys).take(10).collect();
            panic!(
                "after 120 s: {} distinct of {MESSAGES} ({total} rows), first missing {missing:?}, source {:?}\nbroker log:\n{}",
                keys.len(),
                pipeline.metrics.snapshot(),
                broker.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (keys, total) = distinct_keys(&pipeline.main.batches());
    let reconnects = pipeline.value("reconnects");
    let session_lost = pipeline.value("session_lost");
    // Stopping closes every window.
    let operated = pipeline.operated.clone();
    pipeline.stop().expect("clean stop");
    let mut windows: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for batch in operated.batches() {
        let devices = strings(std::slice::from_ref(&batch), "device_id");
        let starts = times(std::slice::from_ref(&batch), "window_start");
        let counts = batch
            .column_by_name("n")
            .expect("n")
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec();
        for ((device, start), n) in devices.into_iter().zip(starts).zip(counts) {
            *windows
                .entry((device.unwrap_or_default(), start))
                .or_insert(0) += n;
        }
    }
    let mut oracle: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (device, ts) in &expected {
        *oracle
            .entry((device.clone(), ts - ts.rem_euclid(1000)))
            .or_insert(0) += 1;
    }
    assert!(
        during < MESSAGES,
        "the broker went away mid-stream ({during} of {MESSAGES} in)"
    );
    assert_eq!(keys, expected, "every (device, ts) arrived");
    assert!(reconnects >= 1, "the source reconnected");
    assert_eq!(
        session_lost, 0,
        "the broker saved our session when it stopped"
    );
    // At least once: redelivery after the restart may repeat a few messages, never many.
    assert!(total - MESSAGES <= 5_000, "{} duplicates", total - MESSAGES);
    assert_eq!(
        windows.len(),
        oracle.len(),
        "one window per device and second"
    );
    assert_eq!(
        windows, oracle,
        "after dedup on (device, ts), the windows match the oracle"
    );
}

#[test]
fn persistent_session_delivers_what_was_published_while_the_engine_was_down() {
    let broker = Broker::start(Security::Plain);
    let options = format!(
        "url = \"{}\"\nclient_id = \"engine-restart\"\n{READING_SOURCE}",
        broker.url()
    );
    let first = Running::start(&options);
    first.wait_connected();
    let line = |i: i64| {
        format!(
            "{{\"device_id\": \"d1\", \"ts\": {}, \"value\": {i}}}\n",
            1_000 + i
        )
    };
    broker.publish_lines(1, "sensors/d1", &(0..100).map(line).collect::<String>());
    wait_for("the first 100", Duration::from_secs(15), || {
        first.main_rows() == 100
    });
    first.stop().expect("first run stops cleanly");

    // While the engine is down.
    broker.publish_lines(1, "sensors/d1", &(100..300).map(line).collect::<String>());

    let second = Running::start(&options);
    wait_for("the 200 sent while down", Duration::from_secs(15), || {
        second.main_rows() >= 200
    });
    let (keys, _) = distinct_keys(&second.main.batches());
    let expected: BTreeSet<(String, i64)> =
        (100..300).map(|i| ("d1".to_string(), 1_000 + i)).collect();
    assert_eq!(keys, expected);
    second.stop().expect("second run stops cleanly");

    // Without a persistent session, what is published while away is gone.
    let clean_options = options.replace(
        "client_id = \"engine-restart\"",
        "client_id = \"engine-restart-clean\"\nclean_session = true",
    );
    let third = Running::start(&clean_options);
    third.wait_connected();
    third.stop().expect("stops");
    broker.publish_lines(1, "sensors/d1", &(300..310).map(line).collect::<String>());
    let fourth = Running::start(&clean_options);
    fourth.wait_connected();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(fourth.main_rows(), 0, "a clean session starts empty");
}

#[test]
fn engine_restarted_mid_stream_with_a_persistent_session_loses_nothing() {
    const MESSAGES: usize = 20_000;
    let broker = Broker::start(Security::Plain);
    let options = format!(
        "url = \"{}\"\nclient_id = \"engine-restart-mid-stream\"\n{READING_SOURCE}",
        broker.url()
    );
    let first = Running::start(&options);
    first.wait_connected();
    let rows = readings(MESSAGES, 5);
    let expected: BTreeSet<(String, i64)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
    let publisher = publish_with_sink(&broker.url(), rows, 100);
    wait_for("some messages", Duration::from_secs(60), || {
        first.main_rows() >= MESSAGES / 5
    });
    let first_rows = first.main.clone();
    first.stop().expect("the first run stops cleanly");
    let during = first_rows
        .batches()
        .iter()
        .map(RecordBatch::num_rows)
        .sum::<usize>();
    // The publisher goes on while the engine is down.
    std::thread::sleep(Duration::from_millis(1000));
    let second = Running::start(&options);
    assert_eq!(publisher.join().expect("publisher"), MESSAGES as u64);
    let union = || {
        let mut batches = first_rows.batches();
        batches.extend(second.main.batches());
        distinct_keys(&batches)
    };
    wait_for(
        "every message across both runs",
        Duration::from_secs(60),
        || union().0.len() >= MESSAGES,
    );
    let (keys, _) = union();
    assert!(
        during < MESSAGES,
        "the engine stopped mid-stream ({during} in)"
    );
    assert_eq!(keys, expected);
}

fn tls_source(broker: &Broker, tls: &str) -> String {
    format!(
        "url = \"{}\"\nclient_id = \"tls-test\"\ntls = {tls}\n{READING_SOURCE}",
        broker.url()
    )
}

fn publish_tls(broker: &Broker, with_cert: bool, payload: &str) {
    let certs = broker.certs.as_ref().expect("TLS broker");
    let mut command = Command::new("mosquitto_pub");
    command
        .args(["-h", "localhost", "-p", &broker.port.to_string(), "-q", "1"])
        .args(["-t", "sensors/d1", "-m", payload])
        .arg("--cafile")
        .arg(&certs.ca);
    if with_cert {
        command
            .arg("--cert")
            .arg(&certs.client_cert)
            .arg("--key")
            .arg(&certs.client_key);
    }
    let status = command.status().expect("mosquitto_pub runs");
    assert!(status.success(), "mosquitto_pub over TLS failed");
}

#[test]
fn tls_with_the_right_ca_receives_messages() {
    let broker = Broker::start(Security::Tls);
    let certs = broker.certs.as_ref().expect("certs");
    let pipeline = Running::start(&tls_source(
        &broker,
        &format!("{{ ca = \"{}\" }}", certs.ca.display()),
    ));
    pipeline.wait_connected();
    publish_tls(
        &broker,
        false,
        r#"{"device_id": "d1", "ts": 1000, "value": 1.5}"#,
    );
    wait_for("one row over TLS", Duration::from_secs(10), || {
        pipeline.main_rows() == 1
    });
}

#[test]
fn mutual_tls_accepts_a_client_certificate_and_rejects_a_client_without_one() {
    let broker = Broker::start(Security::MutualTls);
    let certs = broker.certs.as_ref().expect("certs");
    let with_cert = Running::start(&tls_source(
        &broker,
        &format!(
            "{{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}",
            certs.ca.display(),
            certs.client_cert.display(),
            certs.client_key.display()
        ),
    ));
    with_cert.wait_connected();
    publish_tls(
        &broker,
        true,
        r#"{"device_id": "d1", "ts": 1000, "value": 1.5}"#,
    );
    wait_for("one row over mutual TLS", Duration::from_secs(10), || {
        with_cert.main_rows() == 1
    });
    // The sink over mutual TLS too.
    let sink_tls = format!(
        "tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}",
        certs.ca.display(),
        certs.client_cert.display(),
        certs.client_key.display()
    );
    let published = publish_with_sink_options(&broker.url(), &sink_tls, readings(10, 2), 5)
        .join()
        .expect("publisher");
    assert_eq!(published, 10);
    wait_for(
        "the sink's rows over mutual TLS",
        Duration::from_secs(10),
        || with_cert.main_rows() == 11,
    );
    with_cert.stop().expect("stops");

    let without = Running::start(&tls_source(
        &broker,
        &format!("{{ ca = \"{}\" }}", certs.ca.display()),
    ));
    let error = without
        .wait_end(Duration::from_secs(20))
        .expect_err("a client without a certificate is refused");
    let message = format!(
        "{error:#}: {}",
        std::error::Error::source(&error)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(message.contains("certificate"), "{message}");
}

#[test]
fn a_wrong_ca_fails_with_a_clear_error() {
    let broker = Broker::start(Security::Tls);
    let certs = broker.certs.as_ref().expect("certs");
    let pipeline = Running::start(&tls_source(
        &broker,
        &format!("{{ ca = \"{}\" }}", certs.other_ca.display()),
    ));
    let error = pipeline
        .wait_end(Duration::from_secs(20))
        .expect_err("an unknown issuer stops the source");
    let message = format!(
        "{error}: {}",
        std::error::Error::source(&error)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        message.contains("not signed by the configured CA"),
        "the error says what is wrong: {message}"
    );
    assert!(
        message.contains(&format!("localhost:{}", broker.port)),
        "and names the broker: {message}"
    );
}

/// A TCP front for the broker that either refuses (accepts and closes at once, like a broker
/// that is down) or forwards, recording when each connection attempt came.
struct Gate {
    port: u16,
    forward: Arc<AtomicBool>,
    attempts: Arc<Mutex<Vec<Instant>>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Gate {
    fn new(broker_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let gate = Self {
            port,
            forward: Arc::new(AtomicBool::new(false)),
            attempts: Arc::new(Mutex::new(Vec::new())),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        let (forward, attempts, open) = (
            gate.forward.clone(),
            gate.attempts.clone(),
            gate.open.clone(),
        );
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                attempts.lock().expect("lock").push(Instant::now());
                if !forward.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", broker_port)) else {
                    continue;
                };
                open.lock()
                    .expect("lock")
                    .push(client.try_clone().expect("clone"));
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        upstream.try_clone().expect("clone"),
                    ),
                    (upstream, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        loop {
                            match from.read(&mut buffer) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if to.write_all(&buffer[..n]).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        gate
    }

    fn cut(&self) {
        self.forward.store(false, Ordering::SeqCst);
        for stream in self.open.lock().expect("lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn attempts(&self) -> Vec<Instant> {
        self.attempts.lock().expect("lock").clone()
    }
}

#[test]
fn reconnect_backoff_grows_against_a_dead_broker_and_resets_after_a_connection() {
    let broker = Broker::start(Security::Plain);
    let gate = Gate::new(broker.port);
    let pipeline = Running::start(&format!(
        r#"
url = "mqtt://127.0.0.1:{port}"
client_id = "backoff"
topics = ["sensors/+"]
reconnect_min = "100ms"
reconnect_max = "2s"
schema = {{ device_id = "string", ts = "timestamp_ms", value = "float64" }}
"#,
        port = gate.port
    ));
    std::thread::sleep(Duration::from_secs(5));
    let attempts = gate.attempts();
    // Steps of 100, 200, 400, 800, 1600 ms, then 2 s, each with up to half taken off by
    // jitter: 5 to 8 attempts in 5 s. A storm would be thousands.
    assert!(
        (4..=10).contains(&attempts.len()),
        "{} attempts in 5 s against a dead broker",
        attempts.len()
    );
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[gaps.len() - 1] > gaps[0] * 3,
        "the delay grows: {gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_millis(2300)),
        "capped at 2 s: {gaps:?}"
    );
    assert!(pipeline.value("connect_failures") >= 4);

    gate.forward.store(true, Ordering::SeqCst);
    wait_for(
        "a connection through the gate",
        Duration::from_secs(5),
        || pipeline.value("connected") == 1,
    );
    std::thread::sleep(Duration::from_millis(300));
    let before_cut = gate.attempts().len();
    let cut_at = Instant::now();
    gate.cut();
    wait_for("a reconnect attempt", Duration::from_secs(5), || {
        gate.attempts().len() > before_cut
    });
    let first_retry = gate.attempts()[before_cut] - cut_at;
    assert!(
        first_retry < Duration::from_millis(700),
        "after a good connection the backoff starts over at 100 ms (without the reset it would be 800 ms or more), but the first retry came after {first_retry:?}"
    );
    assert_eq!(pipeline.value("connected"), 0);
}

#[test]
fn sink_publishes_json_rows_to_the_topic_template_batched() {
    let broker = Broker::start(Security::Plain);
    let mut subscriber = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", "sensors/#", "-v", "-q", "1", "-C", "3", "-W", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs");
    std::thread::sleep(Duration::from_millis(500));
    let table: toml::Table = format!(
        "url = \"{}\"\ntopic = \"sensors/{{device_id}}\"\nbatch = 2\nretain = false",
        broker.url()
    )
    .parse()
    .expect("TOML");
    let schema = schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, true),
            Field::new("ts", timestamp_type(), true),
            Field::new("value", DataType::Float64, true),
        ],
        Some("ts"),
    );
    let sink = (SINK_KIND.parse)(table)
        .expect("options")
        .build(&schema)
        .expect("builds");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let summary = runtime.block_on(async {
        let (input, sender) = SinkInput::for_test("alerts", schema.clone(), 4);
        let task = tokio::spawn(sink.run(input));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow::array::StringArray::from(vec![
                    Some("a"),
                    Some("a"),
                    Some("a"),
                    None,
                ])),
                Arc::new(
                    TimestampMillisecondArray::from(vec![0, 1000, 2000, 3000]).with_timezone(UTC),
                ),
                Arc::new(arrow::array::Float64Array::from(vec![1.0, 2.0, 3.0, 4.0])),
            ],
        )
        .expect("batch");
        sender.send(SinkEvent::Rows(batch)).await.expect("send");
        drop(sender);
        task.await.expect("task").expect("sink succeeds")
    });
    assert_eq!(summary.rows, 4);
    assert_eq!(summary.files, 3, "messages: [a, a], [a], [null device]");
    let output = subscriber.wait_with_output_or_kill();
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines,
        vec![
            r#"sensors/a [{"device_id":"a","ts":"1970-01-01T00:00:00Z","value":1.0},{"device_id":"a","ts":"1970-01-01T00:00:01Z","value":2.0}]"#,
            r#"sensors/a [{"device_id":"a","ts":"1970-01-01T00:00:02Z","value":3.0}]"#,
            r#"sensors/_ [{"ts":"1970-01-01T00:00:03Z","value":4.0}]"#,
        ]
    );
}

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

#[test]
fn the_mqtt_gateway_example_runs_against_mosquitto() {
    use std::io::BufRead;

    let broker = Broker::start(Security::Plain);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut alerts = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", "alerts/#", "-v", "-q", "1", "-C", "1", "-W", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs");
    let mut child = crate::util::edgeflow()
        .arg("run")
        .arg(crate::util::repo().join("examples/mqtt_gateway.toml"))
        .arg("--no-status")
        .env("MQTT_URL", broker.url())
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("edgeflow runs");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_sender, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_sender.send(line);
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.contains("Connected to MQTT broker") || !log.contains("sink=alerts") {
        assert!(
            Instant::now() < deadline,
            "edgeflow did not connect:\n{log}"
        );
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) {
            log.push_str(&line);
            log.push('\n');
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    broker.publish(
        1,
        &[
            (
                "sensors/plant-1/d7",
                br#"{"ts": 1717200000000, "temperature": 31.5, "humidity": 40}"#,
            ),
            (
                "sensors/plant-1/d7",
                br#"{"ts": 1717200001000, "temperature": 29.5, "humidity": 41}"#,
            ),
            (
                "sensors/plant-1/d8",
                br#"{"ts": 1717200002000, "temperature": 20.0, "humidity": 50}"#,
            ),
            (
                "sensors/plant-1/d7",
                br#"{"ts": 1717200003000, "temperature": "warm"}"#,
            ),
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("edgeflow ends");
    while let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(exit.success(), "{log}");
    assert_contains!(log, "wrong_type: 1");

    // The window of d7 (max 31.5) passed the filter and went back out over MQTT.
    let alert = alerts.wait_with_output_or_kill();
    let (topic, payload) = alert.trim().split_once(' ').expect("topic and payload");
    assert_eq!(topic, "alerts/plant-1/d7");
    let row: serde_json::Value = serde_json::from_str(payload).expect("JSON alert");
    assert_eq!(row["n"], 2);
    assert_eq!(row["temperature_max"], 31.5);

    let files = |folder: &str| {
        let mut found = 0;
        let mut stack = vec![dir.path().join(folder)];
        while let Some(path) = stack.pop() {
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "parquet") {
                    found += 1;
                }
            }
        }
        found
    };
    assert!(files("out/mqtt_gateway") >= 1, "windows in Parquet\n{log}");
    assert!(
        files("out/mqtt_gateway_rejected") >= 1,
        "the rejected message in Parquet\n{log}"
    );
}
