//! The operations server of `edgeflow run` (`[server]`): `/health`, `/ready` with its
//! reasons, `/metrics` in the Prometheus text format and `/api/pipeline`, against the real
//! binary.

use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use crate::http::{Pipeline, client, free_port, sample, scrape};
use crate::util::{edgeflow, run, write_query};

fn get(client: &reqwest::blocking::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().expect("answer");
    let status = response.status().as_u16();
    let text = response.text().expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

#[test]
fn health_ready_metrics_and_the_pipeline_graph_with_live_counters() {
    let (http, ops) = (free_port(), free_port());
    let query = format!(
        r#"
[pipeline]
name = "ops_test"

[server]
listen = "127.0.0.1:{ops}"

[sources.readings]
type = "http"
listen = "127.0.0.1:{http}"
allow_anonymous = true

[operators.per_device]
type = "window"
inputs = ["readings"]
kind = "tumbling"
size = "10s"
group_by = ["device_id"]
aggregates = {{ n = "count()" }}

[sinks.out]
type = "stdout"
inputs = ["per_device"]
"#
    );
    let mut pipeline = Pipeline::start(&query);
    let client = client();
    let base = format!("http://127.0.0.1:{ops}");
    pipeline.wait_for(&client, &format!("{base}/health"));

    let (status, health) = get(&client, &format!("{base}/health"));
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");

    // Ready once the source listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, ready) = get(&client, &format!("{base}/ready"));
        if status == 200 {
            assert_eq!(ready["status"], "ready");
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {ready}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Ten readings of two devices, in two 10-second windows, then one far later to close them.
    let now = 1_732_550_000_000i64;
    let lines: String = (0..10)
        .map(|i| {
            format!(
                "{{\"device_id\": \"d{}\", \"value\": {i}, \"timestamp\": {}}}\n",
                i % 2,
                now + i * 1_500
            )
        })
        .collect();
    let response = client
        .post(format!("http://127.0.0.1:{http}/ingest"))
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(lines)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let late_marker = format!(
        "{{\"device_id\": \"d0\", \"value\": 0, \"timestamp\": {}}}",
        now + 60_000
    );
    let response = client
        .post(format!("http://127.0.0.1:{http}/ingest"))
        .header(CONTENT_TYPE, "application/json")
        .body(late_marker)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // The window emits (n per device per window) once the watermark passes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = scrape(&client, &format!("{base}/metrics"));
        let out = sample(
            &metrics,
            "edgeflow_rows_in_total",
            &[("node", "out"), ("role", "sink")],
        );
        if out.unwrap_or(0.0) >= 4.0 {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the window never reached the sink"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        sample(
            &metrics,
            "edgeflow_rows_out_total",
            &[("node", "readings"), ("role", "source")]
        ),
        Some(11.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "edgeflow_rows_in_total",
            &[("node", "per_device"), ("role", "operator")]
        ),
        Some(11.0)
    );
    // 0..10 × 1.5 s from a multiple of 10 s: windows [0,10) with 7 rows, [10,20) with 3.
    assert_eq!(
        sample(
            &metrics,
            "edgeflow_rows_out_total",
            &[("node", "per_device"), ("role", "operator")]
        ),
        Some(4.0)
    );
    let lag = sample(
        &metrics,
        "edgeflow_watermark_lag_seconds",
        &[("node", "readings")],
    )
    .unwrap();
    assert!(lag > 0.0, "the 2024 readings trail the wall clock: {lag}");
    assert!(sample(&metrics, "edgeflow_state_rows", &[("node", "per_device")]).is_some());
    assert!(sample(&metrics, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(sample(&metrics, "process_cpu_seconds_total", &[]).is_some());

    // The graph with its schemas and live counters.
    let (status, graph) = get(&client, &format!("{base}/api/pipeline"));
    assert_eq!(status, 200);
    assert_eq!(graph["name"], "ops_test");
    let nodes = graph["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["readings", "per_device", "out"]);
    assert_eq!(nodes[0]["kind"], "http");
    assert_eq!(nodes[1]["inputs"], serde_json::json!(["readings"]));
    let event_time: Vec<&str> = nodes[0]["schema"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["event_time"] == true)
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(event_time, ["timestamp"]);
    assert_eq!(nodes[0]["stats"]["rows_out"], 11);
    assert_eq!(nodes[2]["stats"]["rows_in"], 4);

    let (status, _, stderr) = pipeline.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn ready_says_why_not_a_disconnected_source_and_a_stalled_watermark() {
    // An MQTT source whose broker is not there, and whose watermark never moves on its own.
    let (broker, ops) = (free_port(), free_port());
    let query = format!(
        r#"
[server]
listen = "127.0.0.1:{ops}"
watermark_stall = "2s"

[sources.sensors]
type = "mqtt"
url = "mqtt://127.0.0.1:{broker}"
topics = ["sensors/#"]
qos = 0
idle_timeout = "off"
schema = {{ device_id = "string", value = "float64", ts = "timestamp_ms" }}

[sinks.out]
type = "stdout"
inputs = ["sensors"]
"#
    );
    let mut pipeline = Pipeline::start(&query);
    let client = client();
    let base = format!("http://127.0.0.1:{ops}");
    pipeline.wait_for(&client, &format!("{base}/health"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, ready) = get(&client, &format!("{base}/ready"));
        assert_eq!(status, 503, "{ready}");
        let reasons: Vec<&str> = ready["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let disconnected = reasons.contains(&"source 'sensors' is not connected");
        let stalled = reasons
            .iter()
            .any(|r| r.starts_with("source 'sensors': the watermark has not advanced"));
        if disconnected && stalled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reasons never complete: {reasons:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Liveness is not readiness: the process is alive.
    assert_eq!(get(&client, &format!("{base}/health")).0, 200);
    let metrics = scrape(&client, &format!("{base}/metrics"));
    assert_eq!(
        sample(&metrics, "edgeflow_connected", &[("node", "sensors")]),
        Some(0.0)
    );
    let (status, _, stderr) = pipeline.stop();
    assert!(status.success(), "{stderr}");
}

/// The reasons of a `/ready` answer.
fn ready_reasons(client: &reqwest::blocking::Client, base: &str) -> (u16, Vec<String>) {
    let (status, ready) = get(client, &format!("{base}/ready"));
    let reasons = ready["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (status, reasons)
}

#[test]
fn health_lists_live_workers_and_ready_names_a_sink_that_cannot_write() {
    let (http, ops) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let query = format!(
        r#"
[server]
listen = "127.0.0.1:{ops}"

[sources.readings]
type = "http"
listen = "127.0.0.1:{http}"
allow_anonymous = true

[sinks.archive]
type = "parquet"
inputs = ["readings"]
path = "{}"
"#,
        archive.display()
    );
    let mut pipeline = Pipeline::start(&query);
    let client = client();
    let base = format!("http://127.0.0.1:{ops}");
    pipeline.wait_for(&client, &format!("{base}/health"));

    // Both workers (the harness runs 2) step, even with no input at all.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, health) = get(&client, &format!("{base}/health"));
        assert_eq!(status, 200, "{health}");
        let workers = health["workers"].as_array().unwrap();
        if workers.len() == 2 && workers.iter().all(|w| w["steps"].as_u64() > Some(1)) {
            assert!(workers.iter().all(|w| w["state"] == "running"), "{health}");
            break;
        }
        assert!(Instant::now() < deadline, "workers never listed: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready_reasons(&client, &base).0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Something that is not a folder takes the output folder's place (root may write
    // anywhere, so a read-only folder would not stop this test's user).
    std::fs::remove_dir_all(&archive).unwrap();
    std::fs::write(&archive, "in the way").unwrap();
    let expected = format!(
        "sink 'archive' is not writable: cannot create output folder '{}'",
        archive.display()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, reasons) = ready_reasons(&client, &base);
        if reasons.iter().any(|r| r.starts_with(&expected)) {
            assert_eq!(status, 503);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never reported unwritable: {reasons:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Liveness is not readiness.
    assert_eq!(get(&client, &format!("{base}/health")).0, 200);
    let metrics = scrape(&client, &format!("{base}/metrics"));
    assert_eq!(
        sample(&metrics, "edgeflow_writable", &[("node", "archive")]),
        Some(0.0)
    );

    // Out of the way again: the probe recreates the folder and the sink is ready.
    std::fs::remove_file(&archive).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, reasons) = ready_reasons(&client, &base);
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never writable again: {reasons:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(archive.is_dir());
    let (status, _, stderr) = pipeline.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_bad_server_table_is_a_validation_error_and_a_busy_port_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let body = "\n[sources.s]\ntype = \"simulator\"\ndevices = 1\nduration = \"1s\"\n\n[sinks.o]\ntype = \"stdout\"\ninputs = [\"s\"]\n";
    let bad = write_query(
        dir.path(),
        "bad.toml",
        &format!("[server]\nlisten = \"everywhere\"\nwatermark_stall = \"soon\"\nport = 1\n{body}"),
    );
    let (output, _, stderr) = run(edgeflow().arg("validate").arg(&bad));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_contains!(stderr, "[server]");

    let bad = write_query(
        dir.path(),
        "bad2.toml",
        &format!("[server]\nlisten = \"everywhere\"\nwatermark_stall = \"soon\"\n{body}"),
    );
    let (output, _, stderr) = run(edgeflow().arg("validate").arg(&bad));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_contains!(stderr, "'everywhere' is not an address to listen on");
    assert_contains!(stderr, "invalid duration 'soon'");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let taken = write_query(
        dir.path(),
        "taken.toml",
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{body}"),
    );
    let (output, _, stderr) = run(edgeflow().arg("run").arg(&taken).arg("--no-status"));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_contains!(
        stderr,
        &format!("cannot start the operations server on 127.0.0.1:{port}")
    );
}
