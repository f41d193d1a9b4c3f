//! The `mqtt` sink (topic template, batching) and the `mqtt_gateway` example end to end.

use super::*;

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

#[test]
fn the_mqtt_gateway_example_runs_against_mosquitto() {
    let broker = Broker::start(Security::Plain);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut alerts = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", "alerts/#", "-v", "-q", "1", "-C", "1", "-W", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs");
    let mut run = CliRun::start("mqtt_gateway.toml", &broker, dir.path());
    run.wait_log("edgeflow did not connect", |log| {
        log.contains("Connected to MQTT broker") && log.contains("sink=alerts")
    });
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
    let log = run.stop();
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
