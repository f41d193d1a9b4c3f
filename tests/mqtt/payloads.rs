//! Payload formats of the `mqtt` source, and every kind of bad payload counted and set aside.

use super::*;

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
