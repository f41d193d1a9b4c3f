//! Unit tests of the `http` source: options, token tables, body decoding with per-record
//! errors and the device check. The server itself is tested through the binary in
//! `tests/http.rs`.

use edgeflow_engine::arrow::array::{Array, Float64Array, StringArray, TimestampMillisecondArray};
use edgeflow_engine::parse_options;

use super::auth::{TokenTable, bearer_token};
use super::decode::{BodyFormat, RecordDecoder};
use super::options::{HttpSourceConfig, TokenSource};
use crate::SourceConfig;

fn config(text: &str) -> HttpSourceConfig {
    parse_options(text.parse::<toml::Table>().expect("toml")).expect("options parse")
}

fn decoder(identity_checked: bool) -> RecordDecoder {
    let checked = config("listen = \"127.0.0.1:0\"\ntokens = { \"d1\" = \"secret\" }\n")
        .check()
        .expect("valid");
    RecordDecoder::new(
        checked.schema.fields.clone(),
        checked.schema.event_time,
        identity_checked.then_some(0),
        checked.schema.schema.clone(),
        false,
    )
}

#[test]
fn example_config_parses_and_plans_with_the_default_schema() {
    let c = config(
        r#"
listen = "0.0.0.0:8080"
tokens = { "device-7" = "abc" }
body_limit = "64KiB"
invalid_records = "keep_valid"
send_timeout = "250ms"
"#,
    );
    assert_eq!(c.body_limit_bytes(), 64 * 1024);
    let schema = c.schema().expect("schema");
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["device_id", "value", "timestamp"]);
    assert_eq!(c.check().expect("checked").device_field, Some(0));
}

#[test]
fn bad_options_name_their_path() {
    let errors = config("listen = \"nowhere\"\npath = \"ingest\"\n")
        .check()
        .expect_err("invalid");
    let paths: Vec<String> = errors.iter().map(|e| e.path.join(".")).collect();
    assert!(paths.contains(&"listen".to_string()), "{paths:?}");
    assert!(paths.contains(&"path".to_string()), "{paths:?}");
    // Neither tokens nor client_ca nor allow_anonymous.
    assert!(paths.contains(&"tokens".to_string()), "{paths:?}");

    let errors = config(
        "listen = \"127.0.0.1:1\"\ntokens = { d = \"t\" }\nschema = { id = \"string\", ts = \"timestamp_ms\" }\n",
    )
    .check()
    .expect_err("no device field");
    assert_eq!(errors[0].path, ["device_field"]);
    assert!(
        errors[0].message.contains("'device_id'"),
        "{}",
        errors[0].message
    );

    let parsed: Result<HttpSourceConfig, _> = parse_options(
        "listen = \"127.0.0.1:1\"\nbody_limit = \"lots\"\n"
            .parse()
            .unwrap(),
    );
    assert_eq!(parsed.expect_err("bad size").path, ["body_limit"]);
}

#[test]
fn anonymous_writes_need_saying_so() {
    assert!(
        config("listen = \"localhost:9\"\nallow_anonymous = true\n")
            .check()
            .is_ok()
    );
}

#[test]
fn tokens_come_from_a_file_or_an_inline_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    std::fs::write(
        &path,
        "# token device\nt-1 device-1\n\n  t-2   device-2  \n",
    )
    .unwrap();
    let table = TokenTable::load(&TokenSource::File(path.clone())).expect("file");
    assert_eq!(table.device("t-1"), Some("device-1"));
    assert_eq!(table.device("t-2"), Some("device-2"));
    assert_eq!(table.device("t-3"), None);

    std::fs::write(&path, "t-1 device-1\nt-2\n").unwrap();
    let error = TokenTable::load(&TokenSource::File(path.clone())).expect_err("bad line");
    assert!(error.to_string().contains("line 2"), "{error}");

    let inline = TokenSource::Inline(
        [
            ("a".to_string(), "same".to_string()),
            ("b".to_string(), "same".to_string()),
        ]
        .into(),
    );
    assert!(TokenTable::load(&inline).is_err(), "shared token");
    let missing = TokenTable::load(&TokenSource::File(dir.path().join("nope")));
    assert!(missing.expect_err("missing").to_string().contains("nope"));

    assert_eq!(bearer_token("Bearer abc"), Some("abc"));
    assert_eq!(bearer_token("bearer   abc "), Some("abc"));
    assert_eq!(bearer_token("Basic abc"), None);
    assert_eq!(bearer_token("Bearer "), None);
}

#[test]
fn content_types_pick_the_format() {
    assert_eq!(
        BodyFormat::from_content_type("application/json; charset=utf-8"),
        Some(BodyFormat::Json)
    );
    assert_eq!(
        BodyFormat::from_content_type("application/x-ndjson"),
        Some(BodyFormat::JsonLines)
    );
    assert_eq!(BodyFormat::from_content_type("text/plain"), None);
}

#[test]
fn an_object_an_array_and_json_lines_decode_to_rows() {
    let d = decoder(false);
    let one = d.decode(
        br#"{"device_id": "d1", "value": 21.5, "timestamp": 1732550000000, "extra": {"x": 1}}"#,
        BodyFormat::Json,
        None,
        0,
    );
    assert!(one.errors.is_empty(), "{:?}", one.errors);
    assert_eq!((one.records, one.valid()), (1, 1));

    let array = d.decode(
        br#"[{"device_id": "d1", "value": 1, "timestamp": "2024-11-25T16:00:00Z"},
             {"device_id": "d2", "value": "2.5", "timestamp": 1732550000001}]"#,
        BodyFormat::Json,
        None,
        0,
    );
    assert!(array.errors.is_empty(), "{:?}", array.errors);
    let rows = array.rows.expect("rows");
    let values = rows
        .column(1)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!(values.values().to_vec(), vec![1.0, 2.5]);
    let times = rows
        .column(2)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(times.value(0), 1_732_550_400_000);

    let lines = d.decode(
        b"{\"device_id\": \"d1\", \"value\": 1, \"timestamp\": 1}\n\n{\"device_id\": \"d\\u0031\", \"value\": null, \"timestamp\": 2}\n",
        BodyFormat::JsonLines,
        None,
        0,
    );
    assert!(lines.errors.is_empty(), "{:?}", lines.errors);
    let rows = lines.rows.expect("rows");
    let ids = rows
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(ids.value(1), "d1", "escaped text is decoded");
    assert!(rows.column(1).is_null(1));
}

#[test]
fn every_invalid_line_is_reported_with_its_field_and_value() {
    let d = decoder(false);
    let body = b"{\"device_id\": \"d1\", \"value\": 1, \"timestamp\": 1}\n\
{\"device_id\": \"d1\", \"value\": \"warm\", \"timestamp\": 2}\n\
{\"device_id\": \"d1\", \"value\": 3}\n\
not json\n\
[1, 2]\n\
{\"device_id\": \"d1\", \"value\": {\"nested\": true}, \"timestamp\": 6}\n";
    let decoded = d.decode(body, BodyFormat::JsonLines, None, 0);
    assert_eq!(decoded.records, 6);
    assert_eq!(decoded.valid(), 1);
    let summary: Vec<(usize, &str)> = decoded
        .errors
        .iter()
        .map(|e| (e.record, e.reason))
        .collect();
    assert_eq!(
        summary,
        vec![
            (2, "wrong_type"),
            (3, "missing_event_time"),
            (4, "malformed_json"),
            (5, "malformed_json"),
            (6, "wrong_type"),
        ]
    );
    assert_eq!(
        decoded.errors[0].message,
        "line 2: field 'value' (float64) cannot hold \"warm\""
    );
    assert_eq!(
        decoded.errors[1].message,
        "line 3: no value for the event-time field 'timestamp'"
    );
    assert!(
        decoded.errors[2].message.starts_with("line 4, column"),
        "{}",
        decoded.errors[2].message
    );
    assert_eq!(
        decoded.errors[3].message,
        "line 5: expected a JSON object, got an array"
    );
    assert!(decoded.errors[4].message.contains("an object"));
}

#[test]
fn a_broken_json_document_is_invalid_as_a_whole() {
    let d = decoder(false);
    let decoded = d.decode(
        br#"[{"device_id": "d1", "value": 1,"#,
        BodyFormat::Json,
        None,
        0,
    );
    assert_eq!(decoded.valid(), 0);
    assert_eq!(decoded.errors.len(), 1);
    assert_eq!(decoded.errors[0].record, 0);
    assert!(
        decoded.errors[0]
            .message
            .starts_with("the body is not valid JSON"),
        "{}",
        decoded.errors[0].message
    );

    let two_objects = d.decode(
        b"{\"timestamp\": 1}\n{\"timestamp\": 2}",
        BodyFormat::Json,
        None,
        0,
    );
    assert!(
        two_objects.errors[0]
            .message
            .contains("trailing characters")
    );

    let empty = d.decode(b"[]", BodyFormat::Json, None, 0);
    assert_eq!(empty.errors[0].message, "the body is an empty JSON array");
    let blank = d.decode(b"\n\n", BodyFormat::JsonLines, None, 0);
    assert_eq!(blank.errors[0].message, "the body holds no JSON lines");
}

#[test]
fn a_device_writes_only_its_own_readings() {
    let d = decoder(true);
    let decoded = d.decode(
        b"{\"device_id\": \"d1\", \"value\": 1, \"timestamp\": 1}\n{\"value\": 2, \"timestamp\": 2}\n{\"device_id\": \"d2\", \"value\": 3, \"timestamp\": 3}\n",
        BodyFormat::JsonLines,
        Some("d1"),
        0,
    );
    assert_eq!(decoded.valid(), 2, "{:?}", decoded.errors);
    assert_eq!(decoded.errors.len(), 1);
    assert_eq!(decoded.errors[0].reason, "wrong_device");
    assert_eq!(
        decoded.errors[0].message,
        "line 3: field 'device_id' is \"d2\", but the credentials are those of device 'd1'"
    );
    let rows = decoded.rows.expect("rows");
    let ids = rows
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(
        ids.value(1),
        "d1",
        "a record without a device gets the caller's"
    );
}

#[test]
fn arrival_time_fills_a_missing_event_time() {
    let checked = config("listen = \"127.0.0.1:0\"\nallow_anonymous = true\n")
        .check()
        .unwrap();
    let d = RecordDecoder::new(
        checked.schema.fields.clone(),
        checked.schema.event_time,
        None,
        checked.schema.schema.clone(),
        true,
    );
    let decoded = d.decode(
        br#"{"device_id": "x", "value": 1}"#,
        BodyFormat::Json,
        None,
        42,
    );
    let rows = decoded.rows.expect("rows");
    let times = rows
        .column(2)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(times.value(0), 42);
}

/// The error `build()` gives (a built source is not `Debug`).
trait BuildError {
    fn build_error(&self) -> String;
}

impl BuildError for HttpSourceConfig {
    fn build_error(&self) -> String {
        match self.build() {
            Ok(_) => panic!("{self:?} built"),
            Err(error) => error.to_string(),
        }
    }
}

#[test]
fn build_binds_the_port_and_names_what_it_cannot_use() {
    assert!(
        config("listen = \"127.0.0.1:0\"\nallow_anonymous = true\n")
            .build()
            .is_ok()
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let error = config(&format!(
        "listen = \"127.0.0.1:{port}\"\nallow_anonymous = true\n"
    ))
    .build_error();
    assert!(
        error.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{error}"
    );
    let error = config(
        "listen = \"127.0.0.1:0\"\nallow_anonymous = true\ntls = { cert = \"/nope/cert.pem\", key = \"/nope/key.pem\" }\n",
    )
    .build_error();
    assert!(error.contains("/nope/cert.pem"), "{error}");
    let error = config("listen = \"127.0.0.1:0\"\ntokens = \"/nope/tokens\"\n").build_error();
    assert!(
        error.contains("cannot read token file '/nope/tokens'"),
        "{error}"
    );
}
