//! Unit tests of the `mqtt` options, payload decoding and the sink's message building. The
//! broker-facing behaviour is tested against a real mosquitto in the workspace's
//! `tests/mqtt/`.

use std::sync::Arc;

use edgeflow_engine::arrow::array::{
    Array, AsArray, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::datatypes::{DataType, Field, Float64Type, TimestampMillisecondType};
use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
use edgeflow_engine::{OptionError, parse_options};

use super::options::{MqttSinkConfig, MqttSourceConfig, parse_url};
use super::payload::PayloadDecoder;
use super::source::MqttSource;
use super::{SINK_KIND, SOURCE_KIND};

fn source(extra: &str) -> Result<MqttSource, Vec<OptionError>> {
    let mut table: toml::Table = r#"
url = "mqtt://localhost"
client_id = "test"
topics = ["sensors/#"]
schema = { site = "string", device_id = "string", metric = "string", value = "float64", ts = "timestamp_ms" }
"#
    .parse()
    .expect("TOML");
    // Options in `extra` replace the defaults above.
    table.extend(extra.parse::<toml::Table>().expect("TOML"));
    let config: MqttSourceConfig = parse_options(table).map_err(|e| vec![e])?;
    config.plan()
}

fn paths(errors: &[OptionError]) -> Vec<String> {
    errors.iter().map(|e| e.path.join(".")).collect()
}

fn decoder(extra: &str) -> PayloadDecoder {
    PayloadDecoder::new(source(extra).expect("valid options").decoder)
}

#[test]
fn the_module_example_parses_and_builds() {
    let source = r#"
type = "mqtt"
url = "mqtts://broker.local:8883"
client_id = "gateway-1-sensors"
topics = ["sensors/+/+/temperature", "sensors/+/+/humidity"]
qos = 1
username = "${MQTT_USER}"
password = "${MQTT_PASSWORD}"
format = "number"
topic_fields = "sensors/{site}/{device_id}/{metric}"
schema = { site = "string", device_id = "string", metric = "string", value = "float64", ts = "timestamp_ms" }
max_out_of_orderness = "2s"
"#;
    let mut table: toml::Table = source.parse().expect("TOML");
    table.remove("type");
    let config = (SOURCE_KIND.parse)(table).expect("parses");
    let schema = config.schema().expect("checks");
    assert_eq!(schema.fields().len(), 5);
    assert_eq!(config.side_outputs()[0].0, "rejected");
    assert!(
        config.build().is_ok(),
        "builds without TLS files (none are set)"
    );

    let sink: toml::Table =
        "url = \"mqtt://localhost:1883\"\ntopic = \"alerts/{site}/{device_id}\"\nqos = 1"
            .parse()
            .expect("TOML");
    let sink = (SINK_KIND.parse)(sink).expect("parses");
    assert!(sink.check(&schema).is_empty());
    assert!(sink.build(&schema).is_ok());
}

#[test]
fn urls_parse_with_default_ports_and_refuse_the_rest() {
    let plain = parse_url("mqtt://broker.local").expect("plain");
    assert_eq!(
        (plain.host.as_str(), plain.port, plain.tls),
        ("broker.local", 1883, false)
    );
    let tls = parse_url("mqtts://10.0.0.2:9883/").expect("tls");
    assert_eq!(
        (tls.host.as_str(), tls.port, tls.tls),
        ("10.0.0.2", 9883, true)
    );
    let v6 = parse_url("mqtt://[::1]:1884").expect("ipv6");
    assert_eq!((v6.host.as_str(), v6.port), ("::1", 1884));
    for bad in [
        "broker:1883",
        "http://x",
        "mqtt://x:0",
        "mqtt://x:port",
        "mqtt://x/topic",
        "mqtt://u:p@x",
        "mqtt://",
    ] {
        assert!(parse_url(bad).is_err(), "{bad} should be refused");
    }
}

#[test]
fn each_bad_option_reports_its_path() {
    let errors = source(
        r#"
url = "http://broker"
topics = ["sensors/#/x", "ok/+"]
tls = { ca = "ca.pem" }
value_field = "valeu"
format = "auto"
topic_fields = "sensors/{site}/{devce}"
max_payload_size = 2000000
inflight = 0
reconnect_min = "0s"
"#,
    )
    .map(|_| ())
    .expect_err("errors");
    let found = paths(&errors);
    for path in [
        "url",
        "topics.0",
        "value_field",
        "topic_fields",
        "max_payload_size",
        "inflight",
        "reconnect_min",
    ] {
        assert!(
            found.contains(&path.to_string()),
            "{path} missing from {found:?}"
        );
    }
    let value_field = errors
        .iter()
        .find(|e| e.path == ["value_field"])
        .expect("value_field");
    assert!(
        value_field
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("value")),
        "{value_field:?}"
    );

    let errors = source("tls = { ca = \"ca.pem\" }")
        .map(|_| ())
        .expect_err("tls on mqtt://");
    assert_eq!(paths(&errors), ["tls"]);
    let errors = source("tls = { cert = \"c.pem\" }\nurl2 = 1")
        .map(|_| ())
        .expect_err("unknown key");
    assert!(errors[0].message.contains("url2"), "{:?}", errors[0]);
}

#[test]
fn a_persistent_session_needs_a_client_id() {
    let text = r#"
url = "mqtt://localhost"
topics = ["a/b"]
schema = { ts = "timestamp_ms", value = "float64" }
"#;
    let config: MqttSourceConfig = parse_options(text.parse().expect("TOML")).expect("parses");
    let errors = config
        .plan()
        .map(|_| ())
        .expect_err("qos 1 defaults to a persistent session");
    assert_eq!(paths(&errors), ["client_id"]);
    let clean: MqttSourceConfig =
        parse_options(format!("{text}clean_session = true").parse().expect("TOML"))
            .expect("parses");
    let planned = clean.plan().expect("a clean session gets a random id");
    assert!(planned.broker.client_id.starts_with("edgeflow-"));
    assert!(!planned.broker.persistent);
    let qos0: MqttSourceConfig =
        parse_options(format!("{text}qos = 0").parse().expect("TOML")).expect("parses");
    assert!(
        !qos0
            .plan()
            .expect("qos 0 is clean by default")
            .broker
            .persistent
    );
    let qos2 = parse_options::<MqttSourceConfig>(format!("{text}qos = 2").parse().expect("TOML"))
        .expect_err("QoS 2 is refused");
    assert!(qos2.message.contains("QoS 2"), "{}", qos2.message);
}

#[test]
fn wildcard_rules_for_filters_and_topics() {
    use super::options::check_topic;
    for good in ["a/b", "a/+/c", "a/#", "#", "+/+"] {
        assert!(check_topic(good, true).is_ok(), "{good}");
    }
    for bad in ["a/#/c", "a/b+", "a/#x", ""] {
        assert!(check_topic(bad, true).is_err(), "{bad}");
    }
    assert!(
        check_topic("a/+", false).is_err(),
        "no wildcards when publishing"
    );
}

fn column_strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let array = batch
        .column_by_name(name)
        .expect("column")
        .as_string::<i32>();
    (0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i).to_string()))
        .collect()
}

fn column_floats(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let array = batch
        .column_by_name(name)
        .expect("column")
        .as_primitive::<Float64Type>();
    (0..array.len())
        .map(|i| array.is_valid(i).then(|| array.value(i)))
        .collect()
}

fn column_times(batch: &RecordBatch, name: &str) -> Vec<i64> {
    batch
        .column_by_name(name)
        .expect("column")
        .as_primitive::<TimestampMillisecondType>()
        .values()
        .to_vec()
}

#[test]
fn json_object_array_and_lines_decode_with_topic_fields() {
    let mut decoder = decoder("topic_fields = \"sensors/{site}/{device_id}/{metric}\"");
    let topic = "sensors/plant-1/d7/temperature";
    assert_eq!(
        decoder.decode(topic, br#"{"value": 21.5, "ts": 1000, "extra": true}"#, 0),
        Ok(1)
    );
    assert_eq!(
        decoder.decode(
            topic,
            br#"[{"value": 1, "ts": "1970-01-01T00:00:02Z"}, {"value": null, "ts": 3000}]"#,
            0
        ),
        Ok(2)
    );
    assert_eq!(
        decoder.decode(topic, b"{\"value\": 4, \"ts\": 4000}\r\n\n{\"value\": 5, \"ts\": 5000, \"device_id\": \"own\"}", 0),
        Ok(2)
    );
    let batch = decoder.finish().expect("rows");
    assert_eq!(batch.num_rows(), 5);
    assert_eq!(column_times(&batch, "ts"), [1000, 2000, 3000, 4000, 5000]);
    assert_eq!(
        column_floats(&batch, "value"),
        [Some(21.5), Some(1.0), None, Some(4.0), Some(5.0)]
    );
    let devices = column_strings(&batch, "device_id");
    assert_eq!(devices[0].as_deref(), Some("d7"));
    assert_eq!(
        devices[4].as_deref(),
        Some("own"),
        "the payload's own value wins over the topic"
    );
    assert!(
        column_strings(&batch, "metric")
            .iter()
            .all(|m| m.as_deref() == Some("temperature"))
    );
    assert!(decoder.finish().is_none(), "finish takes the rows");
}

#[test]
fn csv_lines_and_bare_numbers_decode() {
    let mut csv = decoder(
        "format = \"csv\"\ntopic_fields = \"sensors/{site}/{device_id}/{metric}\"\ndelimiter = \";\"",
    );
    // Columns default to the fields the topic does not fill: value, ts.
    assert_eq!(
        csv.decode("sensors/s/d/m", b"1.5;1000\n\"2.5\";2000\n", 0),
        Ok(2)
    );
    let batch = csv.finish().expect("rows");
    assert_eq!(column_floats(&batch, "value"), [Some(1.5), Some(2.5)]);
    assert_eq!(column_times(&batch, "ts"), [1000, 2000]);

    let mut number =
        decoder("format = \"number\"\ntopic_fields = \"sensors/{site}/{device_id}/{metric}\"");
    assert_eq!(
        number.decode("sensors/s/d/humidity", b" 48.25 ", 1_234),
        Ok(1)
    );
    let reject = number
        .decode("sensors/s/d/humidity", b"high", 0)
        .expect_err("not a number");
    assert_eq!(reject.reason, "malformed_number");
    let batch = number.finish().expect("rows");
    assert_eq!(
        column_times(&batch, "ts"),
        [1_234],
        "bare numbers take the arrival time"
    );
    assert_eq!(
        column_strings(&batch, "metric"),
        [Some("humidity".to_string())]
    );
}

#[test]
fn auto_sniffs_each_message() {
    let mut auto =
        decoder("format = \"auto\"\ntopic_fields = \"sensors/{site}/{device_id}/{metric}\"");
    let topic = "sensors/s/d/m";
    assert_eq!(auto.decode(topic, br#"{"value": 1, "ts": 10}"#, 0), Ok(1));
    assert_eq!(auto.decode(topic, b"2,20", 0), Ok(1));
    assert_eq!(auto.decode(topic, b"3", 30), Ok(1));
    let batch = auto.finish().expect("rows");
    assert_eq!(
        column_floats(&batch, "value"),
        [Some(1.0), Some(2.0), Some(3.0)]
    );
    assert_eq!(column_times(&batch, "ts"), [10, 20, 30]);
}

#[test]
fn bad_payloads_are_rejected_whole_with_their_reason() {
    let mut decoder =
        decoder("topic_fields = \"sensors/{site}/{device_id}/{metric}\"\nmax_payload_size = 64");
    let topic = "sensors/s/d/m";
    let cases: [(&str, &[u8], &str); 8] = [
        (topic, b"{\"value\": 1, \"ts\": ", "malformed_json"),
        (topic, b"\xff\xfe{}", "malformed_json"),
        (topic, b"42", "malformed_json"),
        (topic, br#"[{"value": 1, "ts": 1}, 7]"#, "malformed_json"),
        (topic, br#"{"value": "warm", "ts": 1}"#, "wrong_type"),
        (topic, br#"{"value": 1}"#, "missing_event_time"),
        ("other/s/d/m", br#"{"value": 1, "ts": 1}"#, "topic_mismatch"),
        (topic, &[b' '; 65], "oversized"),
    ];
    for (topic, payload, reason) in cases {
        let reject = decoder.decode(topic, payload, 0).expect_err(reason);
        assert_eq!(
            reject.reason,
            reason,
            "{}: {}",
            String::from_utf8_lossy(payload),
            reject.detail
        );
    }
    assert_eq!(
        decoder.pending_rows(),
        0,
        "a rejected array leaves none of its rows behind"
    );
    assert!(decoder.finish().is_none());

    let mut csv = decoder_csv();
    let reject = csv
        .decode("sensors/s/d/m", b"1,2,3", 0)
        .expect_err("three fields");
    assert_eq!(reject.reason, "malformed_csv");
    assert!(reject.detail.contains("expected 2"), "{}", reject.detail);
    let reject = csv
        .decode("sensors/s/d/m", b"\"1,2", 0)
        .expect_err("open quote");
    assert_eq!(reject.reason, "malformed_csv");
}

fn decoder_csv() -> PayloadDecoder {
    decoder("format = \"csv\"\ntopic_fields = \"sensors/{site}/{device_id}/{metric}\"")
}

#[test]
fn arrival_time_fills_a_missing_event_time_when_asked() {
    let mut decoder = decoder("arrival_time = true");
    assert_eq!(decoder.decode("sensors/x", br#"{"value": 1}"#, 777), Ok(1));
    assert_eq!(column_times(&decoder.finish().expect("row"), "ts"), [777]);
}

fn sink_schema() -> edgeflow_engine::arrow::datatypes::SchemaRef {
    schema_with_event_time(
        [
            Field::new("site", DataType::Utf8, true),
            Field::new("device_id", DataType::Utf8, true),
            Field::new("ts", timestamp_type(), true),
            Field::new("value", DataType::Float64, true),
        ],
        Some("ts"),
    )
}

fn sink(extra: &str) -> Result<super::sink::MqttSink, Vec<OptionError>> {
    let config: MqttSinkConfig = parse_options(
        format!("url = \"mqtt://localhost\"\n{extra}")
            .parse()
            .expect("TOML"),
    )
    .map_err(|e| vec![e])?;
    config.plan(&sink_schema())
}

#[test]
fn sink_topic_template_is_checked_against_the_input() {
    let errors = sink("topic = \"alerts/{site}/{devce_id}\"")
        .map(|_| ())
        .expect_err("typo");
    assert_eq!(paths(&errors), ["topic"]);
    assert!(
        errors[0]
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("device_id")),
        "{:?}",
        errors[0]
    );
    for bad in ["alerts/{site", "alerts/site}", "alerts/{}", "alerts/+/x"] {
        assert!(sink(&format!("topic = \"{bad}\"")).is_err(), "{bad}");
    }
    let errors = sink("topic = \"a\"\nbatch = 0\noutbox = 0")
        .map(|_| ())
        .expect_err("zeros");
    assert_eq!(paths(&errors), ["batch", "outbox"]);
}

#[test]
fn sink_messages_render_topics_and_batch_rows_with_the_same_topic() {
    let batch = RecordBatch::try_new(
        sink_schema(),
        vec![
            Arc::new(StringArray::from(vec![
                Some("p1"),
                Some("p1"),
                Some("p1"),
                Some("p2"),
            ])),
            Arc::new(StringArray::from(vec![
                Some("d1"),
                Some("d1"),
                Some("a/b"),
                None,
            ])),
            Arc::new(TimestampMillisecondArray::from(vec![0, 1, 2, 3]).with_timezone(UTC)),
            Arc::new(Float64Array::from(vec![
                Some(1.0),
                None,
                Some(3.0),
                Some(4.0),
            ])),
        ],
    )
    .expect("batch");
    let one_each = sink("topic = \"alerts/{site}/{device_id}\"").expect("plans");
    let topics: Vec<String> = one_each
        .messages_for_test(&batch)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        topics,
        ["alerts/p1/d1", "alerts/p1/d1", "alerts/p1/_", "alerts/p2/_"]
    );

    let batched = sink("topic = \"alerts/{site}/{device_id}\"\nbatch = 5").expect("plans");
    let messages = batched.messages_for_test(&batch);
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[0].0, "alerts/p1/d1");
    let rows: serde_json::Value = serde_json::from_slice(&messages[0].1).expect("a JSON array");
    assert_eq!(
        rows,
        serde_json::json!([
            {"site": "p1", "device_id": "d1", "ts": "1970-01-01T00:00:00Z", "value": 1.0},
            {"site": "p1", "device_id": "d1", "ts": "1970-01-01T00:00:00.001Z"}
        ])
    );
}
