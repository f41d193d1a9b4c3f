//! Tests of the file source: options, CSV and JSON lines with bad records, Parquet, globs,
//! pacing and errors.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::parquet::arrow::ArrowWriter;
use edgeflow_engine::arrow::array::{
    AsArray, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use edgeflow_engine::arrow::compute::concat_batches;
use edgeflow_engine::arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, TimeUnit, TimestampMillisecondType,
};
use edgeflow_engine::schema::{event_time_column, timestamp_type, type_name};
use edgeflow_engine::{NodeSnapshot, SourceContext};

use super::*;

const SCHEMA: &str =
    r#"schema = { device_id = "string", ts = "timestamp_ms", temperature = "float64" }"#;

fn config(text: &str) -> FileConfig {
    parse_options(text.parse::<toml::Table>().unwrap()).unwrap()
}

fn first_error(text: &str) -> OptionError {
    match parse_options::<FileConfig>(text.parse::<toml::Table>().unwrap()) {
        Err(error) => error,
        Ok(config) => config.schema().unwrap_err().remove(0),
    }
}

fn path_option(path: &Path) -> String {
    format!("path = {:?}\n", path.display().to_string())
}

/// Runs the source to its end; returns all rows (one batch) and its counters.
async fn run(config: &FileConfig) -> (Vec<RecordBatch>, NodeSnapshot) {
    let schema = config.schema().unwrap();
    let source = config.build().unwrap();
    let (ctx, mut receiver, _trigger) = SourceContext::for_test("files", schema, 64);
    let metrics = ctx.metrics().clone();
    let task = tokio::spawn(source.run(ctx));
    let mut batches = Vec::new();
    while let Some(batch) = receiver.recv().await {
        batches.push(batch);
    }
    task.await.unwrap().unwrap();
    (batches, metrics.snapshot())
}

fn concat(batches: &[RecordBatch]) -> RecordBatch {
    concat_batches(batches[0].schema_ref(), batches).unwrap()
}

fn temperatures(rows: &RecordBatch) -> Vec<Option<f64>> {
    rows.column(2)
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

#[test]
fn the_example_form_parses_and_builds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("readings.csv");
    std::fs::write(&file, "device_id,ts,temperature\n").unwrap();
    let config = config(&format!(
        "{}format = \"csv\"\n{SCHEMA}\nevent_time = \"ts\"\nheader = true\ndelimiter = \",\"\n\
         speed = \"max\"\nmax_out_of_orderness = \"2s\"\nidle_timeout = \"off\"",
        path_option(&file)
    ));
    let schema = config.schema().unwrap();
    assert_eq!(event_time_column(&schema), Some((1, "ts")));
    assert_eq!(schema.field(1).data_type(), &timestamp_type());
    assert_eq!(
        config.watermark().max_out_of_orderness,
        Duration::from_secs(2)
    );
    assert_eq!(config.watermark().idle_timeout, None);
    config.build().unwrap();

    // The shortest form: the format comes from the extension.
    let short = super::tests::config(&format!("{}{SCHEMA}", path_option(&file)));
    assert_eq!(short.plan().unwrap().format, Format::Csv);
    assert_eq!(short.speed, Speed::Max);
    short.build().unwrap();
}

#[test]
fn bad_options_name_their_path() {
    let cases = [
        ("path = \"x.csv\"\nformat = \"xml\"", "format"),
        ("path = \"x.txt\"", "format"),
        ("path = \"x.csv\"", "schema"),
        ("path = \"x.jsonl\"\ndelimiter = \";\"", "delimiter"),
        ("path = \"x.jsonl\"\nheader = false", "header"),
        ("path = \"x.csv\"\ndelimiter = \"\\\"\"", "delimiter"),
        ("path = \"x.csv\"\ndelimiter = \"ab\"", "delimiter"),
        ("path = \"x.csv\"\nspeed = -2", "speed"),
        ("path = \"*/x.csv\"", "path"),
        ("path = \"\"", "path"),
        (
            "path = \"x.csv\"\nschema = { ts = \"timestamp_ms\", t = \"flaot\" }",
            "schema.t",
        ),
        (
            "path = \"x.csv\"\nschema = { ts = \"timestamp_ms\" }\nevent_time = \"time\"",
            "event_time",
        ),
        ("path = \"missing.parquet\"", "path"),
    ];
    for (text, path) in cases {
        let error = first_error(text);
        assert_eq!(error.path.join("."), path, "{text}: {error}");
    }
    let error = first_error("path = \"x.csv\"\nheadr = true");
    assert!(error.message.contains("headr"), "{error}");
    let error = first_error("path = \"missing.parquet\"");
    assert_eq!(
        error.message,
        "cannot open input file 'missing.parquet': No such file or directory"
    );
}

#[test]
fn a_missing_file_is_a_one_line_build_error() {
    let config = config(&format!("path = \"no/such/input.csv\"\n{SCHEMA}"));
    let error = config.build().err().unwrap();
    assert_eq!(
        error.to_string(),
        "cannot open input file 'no/such/input.csv': No such file or directory"
    );
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/*.csv", dir.path().display());
    let error = super::tests::config(&format!("path = {pattern:?}\n{SCHEMA}"))
        .build()
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        format!("no input file matches '{pattern}'")
    );
    let folder = dir.path().join("folder.csv");
    std::fs::create_dir(&folder).unwrap();
    let error = super::tests::config(&format!("{}{SCHEMA}", path_option(&folder)))
        .build()
        .err()
        .unwrap();
    assert!(error.to_string().contains("it is a folder"), "{error}");
}

#[tokio::test]
async fn csv_bad_lines_are_skipped_counted_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.csv");
    std::fs::write(
        &file,
        "device_id,ts,temperature\n\
         a,2024-01-01T00:00:00Z,20.5\n\
         b,2024-01-01T00:00:01Z\n\
         c,2024-01-01T00:00:02Z,warm\n\
         \n\
         d,1704067203000,23\n\
         e,2024-01-01T00:00:04Z,24,extra\n\
         f,not a time,25\n\
         \"g, quoted\",2024-01-01T00:00:06Z,\n\
         h,2024-01-01T00:00:07Z,27.5",
    )
    .unwrap();
    let (batches, metrics) = run(&config(&format!("{}{SCHEMA}", path_option(&file)))).await;
    let rows = concat(&batches);
    let ids: Vec<&str> = rows.column(0).as_string::<i32>().iter().flatten().collect();
    assert_eq!(ids, ["a", "d", "g, quoted", "h"]);
    assert_eq!(
        temperatures(&rows),
        [Some(20.5), Some(23.0), None, Some(27.5)]
    );
    let ts = rows.column(1).as_primitive::<TimestampMillisecondType>();
    assert_eq!(ts.value(1), 1_704_067_203_000);
    assert_eq!(metrics.dropped.get("malformed_csv"), Some(&2));
    assert_eq!(metrics.dropped.get("wrong_type"), Some(&2));
    assert_eq!(metrics.rows_out, 4);
}

#[tokio::test]
async fn large_csv_files_keep_order_across_chunks_and_bad_lines() {
    // 4 chunks (two pairs for the two decoders) and 3 (a last chunk on its own).
    for (lines, bad) in [(30_000u64, 3), (20_000, 2)] {
        large_csv_file_keeps_order(lines, bad).await;
    }
}

async fn large_csv_file_keeps_order(lines: u64, malformed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.csv");
    let mut text = String::from("device_id,ts,temperature\n");
    let mut expected = Vec::new();
    for i in 0..lines {
        match i {
            100 | 9_000 | 20_001 => text.push_str("broken,line\n"),
            15_000 => text.push_str("x,1704067200000,NaN-ish\n"),
            _ => {
                writeln!(text, "dev-{},{},{}", i % 7, 1_704_067_200_000 + i, i).unwrap();
                expected.push(i as f64);
            }
        }
    }
    std::fs::write(&file, text).unwrap();
    let (batches, metrics) = run(&config(&format!("{}{SCHEMA}", path_option(&file)))).await;
    assert!(batches.iter().all(|b| b.num_rows() <= BATCH_ROWS));
    let rows = concat(&batches);
    let got: Vec<f64> = temperatures(&rows)
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(got, expected);
    assert_eq!(metrics.dropped.get("malformed_csv"), Some(&malformed));
    assert_eq!(metrics.dropped.get("wrong_type"), Some(&1));
}

#[tokio::test]
async fn jsonl_bad_lines_are_skipped_counted_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(
        &file,
        r#"{"device_id": "a", "ts": "2024-01-01T00:00:00Z", "temperature": 20.5}
{"device_id": "b", "ts": 1704067201000, "temperature": 21, "unit": "C"}
{"device_id": "c", "ts": 1704067202000, "temperature":
[1, 2, 3]
{"device_id": "d", "ts": 1704067203000, "temperature": "hot"}
{"device_id": "e", "ts": 1704067204000, "temperature": true}

{"device_id": "f", "ts": 1704067205000}
{"device_id": "g", "ts": 1704067206000, "temperature": "26.5"}
"#,
    )
    .unwrap();
    let (batches, metrics) = run(&config(&format!("{}{SCHEMA}", path_option(&file)))).await;
    let rows = concat(&batches);
    let ids: Vec<&str> = rows.column(0).as_string::<i32>().iter().flatten().collect();
    assert_eq!(ids, ["a", "b", "f", "g"]);
    assert_eq!(
        temperatures(&rows),
        [Some(20.5), Some(21.0), None, Some(26.5)]
    );
    assert_eq!(metrics.dropped.get("malformed_json"), Some(&2));
    assert_eq!(metrics.dropped.get("wrong_type"), Some(&2));
}

#[tokio::test]
async fn a_glob_reads_every_match_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    for (name, id) in [("part-2.tsv", "second"), ("part-1.tsv", "first")] {
        std::fs::write(
            dir.path().join(name),
            format!("id\tts\ttemperature\n{id}\t1704067200000\t1\n"),
        )
        .unwrap();
    }
    let pattern = format!("{}/part-*.tsv", dir.path().display());
    let (batches, _) = run(&config(&format!("path = {pattern:?}\n{SCHEMA}"))).await;
    let rows = concat(&batches);
    let ids: Vec<&str> = rows.column(0).as_string::<i32>().iter().flatten().collect();
    assert_eq!(ids, ["first", "second"]);
}

#[tokio::test]
async fn byte_order_marks_and_crlf_line_ends_are_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("excel.csv");
    std::fs::write(
        &file,
        "\u{feff}device_id,ts,temperature\r\na,1704067200000,1.5\r\nb,1704067200001,2\r\n",
    )
    .unwrap();
    let (batches, metrics) = run(&config(&format!("{}{SCHEMA}", path_option(&file)))).await;
    let rows = concat(&batches);
    assert_eq!(temperatures(&rows), [Some(1.5), Some(2.0)]);
    assert!(metrics.dropped.is_empty(), "{:?}", metrics.dropped);

    let file = dir.path().join("bom.jsonl");
    std::fs::write(&file, "\u{feff}{\"ts\": 5, \"temperature\": 1}\r\n").unwrap();
    let (batches, metrics) = run(&config(&format!("{}{SCHEMA}", path_option(&file)))).await;
    assert_eq!(temperatures(&concat(&batches)), [Some(1.0)]);
    assert!(metrics.dropped.is_empty(), "{:?}", metrics.dropped);
}

#[tokio::test]
async fn csv_without_header_and_with_other_delimiter() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.txt");
    std::fs::write(&file, "a;1704067200000;1.5\nb;1704067200001;2.5\n").unwrap();
    let config = config(&format!(
        "{}format = \"csv\"\nheader = false\ndelimiter = \";\"\n{SCHEMA}",
        path_option(&file)
    ));
    let (batches, _) = run(&config).await;
    assert_eq!(temperatures(&concat(&batches)), [Some(1.5), Some(2.5)]);
}

fn write_parquet(path: &Path, rows: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("sensor", DataType::Utf8, false),
        Field::new("reading", DataType::Float32, true),
        Field::new("count", DataType::Int32, true),
        Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        Field::new("ms", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("s{}", i % 3)),
            )),
            Arc::new(Float32Array::from_iter_values(
                (0..rows).map(|i| i as f32 / 2.0),
            )),
            Arc::new(Int32Array::from_iter_values((0..rows).map(|i| i as i32))),
            Arc::new(TimestampNanosecondArray::from_iter_values(
                (0..rows).map(|i| (1_704_067_200_000 + i as i64) * 1_000_000),
            )),
            Arc::new(Int64Array::from_iter_values(
                (0..rows).map(|i| 1_704_067_200_000 + i as i64),
            )),
        ],
    )
    .unwrap();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[tokio::test]
async fn parquet_files_are_read_with_their_own_schema() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.parquet");
    write_parquet(&file, 20_000);
    let config = config(&format!("{}event_time = \"at\"", path_option(&file)));
    let schema = config.schema().unwrap();
    let types: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| type_name(f.data_type()))
        .collect();
    assert_eq!(
        types,
        ["string", "float64", "int64", "timestamp_ms", "int64"]
    );
    assert_eq!(event_time_column(&schema), Some((3, "at")));
    let (batches, metrics) = run(&config).await;
    assert!(batches.iter().all(|b| b.num_rows() <= BATCH_ROWS));
    let rows = concat(&batches);
    assert_eq!(rows.num_rows(), 20_000);
    assert_eq!(rows.schema(), schema);
    let at = rows.column(3).as_primitive::<TimestampMillisecondType>();
    assert_eq!(at.value(19_999), 1_704_067_219_999);
    assert_eq!(at.timezone(), Some("UTC"));
    assert_eq!(metrics.rows_out, 20_000);
}

#[tokio::test]
async fn parquet_with_a_schema_reads_those_columns_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.pq");
    write_parquet(&file, 10);
    let config = config(&format!(
        "{}schema = {{ ms = \"timestamp_ms\", count = \"int64\", sensor = \"string\" }}",
        path_option(&file)
    ));
    let (batches, _) = run(&config).await;
    let rows = concat(&batches);
    assert_eq!(rows.num_columns(), 3);
    let ms = rows.column(0).as_primitive::<TimestampMillisecondType>();
    assert_eq!(ms.value(9), 1_704_067_200_009);
    assert_eq!(rows.column(1).as_primitive::<Int64Type>().value(9), 9);

    // The integer column can be the event time of a schema-less read too.
    let by_ms = super::tests::config(&format!("{}event_time = \"ms\"", path_option(&file)));
    let schema = by_ms.schema().unwrap();
    assert_eq!(schema.field(4).data_type(), &timestamp_type());

    let missing = super::tests::config(&format!(
        "{}schema = {{ ts = \"timestamp_ms\" }}",
        path_option(&file)
    ));
    let source = missing.build().unwrap();
    let (ctx, _receiver, _trigger) = SourceContext::for_test("f", missing.schema().unwrap(), 4);
    let error = source.run(ctx).await.unwrap_err();
    assert!(error.to_string().contains("has no column 'ts'"), "{error}");
}

#[tokio::test]
async fn speed_replays_at_the_recorded_pace() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("paced.csv");
    let mut text = String::new();
    for i in 0..=20 {
        writeln!(text, "d,{},{i}", 1_704_067_200_000u64 + i * 20).unwrap();
    }
    std::fs::write(&file, text).unwrap();
    let paced = |speed: &str| {
        config(&format!(
            "{}header = false\nspeed = {speed}\n{SCHEMA}",
            path_option(&file)
        ))
    };
    let started = Instant::now();
    let (batches, _) = run(&paced("1")).await;
    let elapsed = started.elapsed();
    assert_eq!(concat(&batches).num_rows(), 21);
    assert!(elapsed >= Duration::from_millis(380), "{elapsed:?}");
    assert!(batches.len() > 5, "{} batches", batches.len());
    let started = Instant::now();
    run(&paced("4")).await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn shutdown_stops_a_paced_replay() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("slow.csv");
    std::fs::write(&file, "a,1704067200000,1\nb,1704070800000,2\n").unwrap();
    let config = config(&format!(
        "{}header = false\nspeed = 1\n{SCHEMA}",
        path_option(&file)
    ));
    let source = config.build().unwrap();
    let (ctx, mut receiver, trigger) = SourceContext::for_test("f", config.schema().unwrap(), 4);
    let task = tokio::spawn(source.run(ctx));
    assert_eq!(receiver.recv().await.unwrap().num_rows(), 1);
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("the source stops promptly")
        .unwrap()
        .unwrap();
}
