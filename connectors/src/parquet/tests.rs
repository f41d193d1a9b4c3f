//! Tests of the Parquet sink: options, round trip, partitions, rotation, commits and errors.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ::parquet::basic::Compression;
use edgeflow_engine::arrow::array::{
    Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use edgeflow_engine::arrow::datatypes::{DataType, Field};
use edgeflow_engine::schema::{UTC, schema_with_event_time, timestamp_type};
use edgeflow_engine::{NodeSnapshot, SinkEvent, SinkInput};

use super::*;

fn config(text: &str) -> ParquetSinkConfig {
    parse_options(text.parse::<toml::Table>().unwrap()).unwrap()
}

fn path_option(path: &Path) -> String {
    format!("path = {:?}\n", path.display().to_string())
}

fn schema(with_event_time: bool) -> SchemaRef {
    schema_with_event_time(
        [
            Field::new("device_id", DataType::Utf8, true),
            Field::new("ts", timestamp_type(), true),
            Field::new("temperature", DataType::Float64, true),
        ],
        with_event_time.then_some("ts"),
    )
}

/// `count` rows starting at `start` ms, one every `step` ms.
fn rows(schema: &SchemaRef, start: i64, step: i64, count: usize) -> RecordBatch {
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                (0..count).map(|i| format!("dev-{}", i % 3)),
            )),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    (0..count).map(|i| start + step * i as i64),
                )
                .with_timezone(UTC),
            ),
            Arc::new(Float64Array::from_iter_values((0..count).map(|i| i as f64))),
        ],
    )
    .unwrap()
}

/// Runs the sink over `batches`; returns its summary and counters.
async fn run(
    config: &ParquetSinkConfig,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
) -> (Result<SinkSummary, BoxError>, NodeSnapshot) {
    let sink = config.build(schema).unwrap();
    let (input, sender): (SinkInput, _) = SinkInput::for_test("archive", schema.clone(), 4);
    let metrics = input.metrics().clone();
    let task = tokio::spawn(sink.run(input));
    for batch in batches {
        if sender.send(SinkEvent::Rows(batch)).await.is_err() {
            break;
        }
        let _ = sender.send(SinkEvent::Watermark(0)).await;
    }
    drop(sender);
    (task.await.unwrap(), metrics.snapshot())
}

/// Every file under `folder`, relative and sorted.
fn files_under(folder: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(folder, folder, &mut out);
    out.sort();
    out
}

fn read_back(path: &Path) -> (Vec<RecordBatch>, ParquetRecordBatchReaderBuilder<File>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let again = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let batches = builder.build().unwrap().map(Result::unwrap).collect();
    (batches, again)
}

#[test]
fn the_example_form_parses_and_builds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/readings");
    let example = config(&format!(
        "{}compression = \"zstd\"\nmax_rows_per_file = 1000000\nroll_interval = \"5m\"\n\
         max_rows_per_row_group = 65536\npartition_by_date = true",
        path_option(&out)
    ));
    assert!(example.check(&schema(true)).is_empty());
    example.build(&schema(true)).unwrap();
    assert!(out.is_dir(), "build creates the folder");

    let short = config(&path_option(&out));
    assert_eq!(short.compression, Codec::Zstd);
    assert_eq!(short.max_rows_per_file, 1_000_000);
    assert_eq!(short.roll_interval, Duration::from_secs(300));
    assert_eq!(short.max_rows_per_row_group, 131_072);
    assert!(short.partition_by_date);
    short.build(&schema(false)).unwrap();
}

#[test]
fn bad_options_name_their_path() {
    let checked = [
        ("path = \"x\"\nmax_rows_per_file = 0", "max_rows_per_file"),
        ("path = \"x\"\nroll_interval = \"0s\"", "roll_interval"),
        (
            "path = \"x\"\nmax_rows_per_row_group = 0",
            "max_rows_per_row_group",
        ),
        ("path = \" \"", "path"),
    ];
    for (text, path) in checked {
        let errors = config(text).check(&schema(true));
        assert_eq!(errors.len(), 1, "{text}");
        assert_eq!(errors[0].path.join("."), path, "{text}");
    }
    let parsed = [
        ("path = \"x\"\ncompression = \"gzip\"", "compression"),
        ("path = \"x\"\nroll_interval = \"often\"", "roll_interval"),
        ("path = \"x\"\nmax_rows_per_file = -1", "max_rows_per_file"),
    ];
    for (text, path) in parsed {
        let error = parse_options::<ParquetSinkConfig>(text.parse().unwrap()).unwrap_err();
        assert_eq!(error.path.join("."), path, "{text}: {error}");
    }
    let error = parse_options::<ParquetSinkConfig>("max_rows = 5".parse().unwrap()).unwrap_err();
    assert!(error.message.contains("max_rows"), "{error}");
    let error = config("path = \"x\"\nmax_rows_per_file = 0")
        .build(&schema(true))
        .err()
        .unwrap();
    assert!(
        error.to_string().starts_with("max_rows_per_file:"),
        "{error}"
    );
}

#[tokio::test]
async fn round_trip_keeps_schema_types_metadata_and_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let schema = schema(true);
    let midnight = 1_704_153_600_000; // 2024-01-02T00:00:00Z
    let batches = vec![
        rows(&schema, midnight - 1_000_000, 1_000, 500),
        // Spans midnight: split between the two dates.
        rows(&schema, midnight - 250_000, 1_000, 500),
        rows(&schema, midnight + 500_000, 1_000, 500),
    ];
    let config = config(&format!("{}max_rows_per_file = 600", path_option(&out)));
    let (summary, metrics) = run(&config, &schema, batches).await;
    let summary = summary.unwrap();
    assert_eq!(summary.rows, 1_500);
    let files = files_under(&out);
    assert!(files.iter().all(|f| {
        let name = f.file_name().unwrap().to_string_lossy();
        name.starts_with("part-") && name.ends_with(".parquet")
    }));
    let day1: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.starts_with("date=2024-01-01"))
        .collect();
    let day2: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.starts_with("date=2024-01-02"))
        .collect();
    assert_eq!(day1.len() + day2.len(), files.len(), "{files:?}");
    assert_eq!(summary.files, files.len() as u64);
    assert_eq!(metrics.files_written, files.len() as u64);
    let on_disk: u64 = files
        .iter()
        .map(|f| std::fs::metadata(out.join(f)).unwrap().len())
        .sum();
    assert_eq!(metrics.bytes_written, on_disk);

    let mut total = 0;
    for file in &files {
        let (batches, builder) = read_back(&out.join(file));
        let read_schema = builder.schema();
        assert_eq!(read_schema.field(1).data_type(), &timestamp_type());
        assert_eq!(read_schema.field(0).data_type(), &DataType::Utf8);
        let metadata = builder.metadata();
        let key_values = metadata.file_metadata().key_value_metadata().unwrap();
        assert!(
            key_values
                .iter()
                .any(|kv| kv.key == PIPELINE_KEY && kv.value.as_deref() == Some("test"))
        );
        let compression = metadata.row_group(0).column(0).compression();
        assert!(
            matches!(compression, Compression::ZSTD(_)),
            "{compression:?}"
        );
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert!(rows <= 600);
        total += rows;
        // Every row of a date folder has that UTC date.
        let day = if file.starts_with("date=2024-01-01") {
            0
        } else {
            1
        };
        for batch in &batches {
            let ts = batch
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            for t in ts.values() {
                assert_eq!((t - (midnight - 86_400_000)).div_euclid(86_400_000), day);
            }
        }
    }
    assert_eq!(total, 1_500);
    // 750 rows before midnight and 750 after.
    let count = |files: &[&PathBuf]| -> usize {
        files
            .iter()
            .map(|f| {
                read_back(&out.join(f))
                    .0
                    .iter()
                    .map(RecordBatch::num_rows)
                    .sum::<usize>()
            })
            .sum()
    };
    assert_eq!(count(&day1), 750);
    assert_eq!(count(&day2), 750);
}

#[tokio::test]
async fn floats_are_written_without_a_dictionary_and_keys_with_one() {
    use ::parquet::basic::Encoding;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let schema = schema(true);
    let config = config(&path_option(&out));
    let (summary, _) = run(&config, &schema, vec![rows(&schema, 0, 1_000, 300)]).await;
    assert_eq!(summary.unwrap().rows, 300);
    let files = files_under(&out);
    let (_, builder) = read_back(&out.join(&files[0]));
    let row_group = builder.metadata().row_group(0);
    let dictionary = |column: usize| row_group.column(column).dictionary_page_offset().is_some();
    assert!(dictionary(0), "device_id keeps its dictionary");
    assert!(!dictionary(2), "temperature is plain");
    assert!(
        !row_group
            .column(2)
            .encodings()
            .any(|e| e == Encoding::RLE_DICTIONARY),
        "{:?}",
        row_group.column(2).encodings().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn files_rotate_by_rows_with_names_that_sort_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let schema = schema(true);
    let config = config(&format!(
        "{}max_rows_per_file = 100\nmax_rows_per_row_group = 30\ncompression = \"snappy\"",
        path_option(dir.path())
    ));
    let batches = (0..7)
        .map(|i| rows(&schema, 1_704_067_200_000 + i * 50, 1, 50))
        .collect();
    let (summary, _) = run(&config, &schema, batches).await;
    assert_eq!(summary.unwrap().files, 4);
    let files = files_under(dir.path());
    assert_eq!(files.len(), 4);
    let mut sizes = Vec::new();
    let mut first_values = Vec::new();
    for file in &files {
        let (batches, builder) = read_back(&dir.path().join(file));
        assert_eq!(
            builder.metadata().num_row_groups(),
            if sizes.len() < 3 { 4 } else { 2 }
        );
        assert_eq!(
            builder.metadata().row_group(0).column(0).compression(),
            Compression::SNAPPY
        );
        sizes.push(batches.iter().map(RecordBatch::num_rows).sum::<usize>());
        let ts = batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap()
            .value(0);
        first_values.push(ts);
    }
    assert_eq!(sizes, [100, 100, 100, 50]);
    assert!(first_values.is_sorted(), "{first_values:?}");
}

#[tokio::test]
async fn files_roll_on_the_wall_clock_while_input_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let schema = schema(false);
    let config = config(&format!(
        "{}roll_interval = \"200ms\"",
        path_option(dir.path())
    ));
    let sink = config.build(&schema).unwrap();
    let (input, sender) = SinkInput::for_test("archive", schema.clone(), 4);
    let task = tokio::spawn(sink.run(input));
    sender
        .send(SinkEvent::Rows(rows(&schema, 0, 1, 10)))
        .await
        .unwrap();
    let mut committed = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        committed = files_under(dir.path());
        if committed
            .iter()
            .any(|f| f.to_string_lossy().ends_with(".parquet"))
        {
            break;
        }
    }
    assert_eq!(committed.len(), 1, "{committed:?}");
    assert!(
        !committed[0].to_string_lossy().contains("date="),
        "no event time, no partition"
    );
    sender
        .send(SinkEvent::Rows(rows(&schema, 0, 1, 10)))
        .await
        .unwrap();
    drop(sender);
    let summary = task.await.unwrap().unwrap();
    assert_eq!(summary, SinkSummary { rows: 20, files: 2 });
    assert!(
        files_under(dir.path())
            .iter()
            .all(|f| !f.to_string_lossy().ends_with(".tmp"))
    );
}

#[tokio::test]
async fn no_partition_folders_when_turned_off_and_nothing_written_for_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let schema = schema(true);
    let config = config(&format!(
        "{}partition_by_date = false",
        path_option(dir.path())
    ));
    let (summary, _) = run(&config, &schema, vec![rows(&schema, 0, 1, 5)]).await;
    assert_eq!(summary.unwrap().files, 1);
    let files = files_under(dir.path());
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].components().count(), 1);

    let empty = tempfile::tempdir().unwrap();
    let (summary, _) = run(
        &super::tests::config(&path_option(empty.path())),
        &schema,
        vec![],
    )
    .await;
    assert_eq!(summary.unwrap(), SinkSummary::default());
    assert!(files_under(empty.path()).is_empty());
}

#[test]
fn an_unusable_output_folder_is_a_one_line_build_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let below_file = file.join("out");
    let error = config(&path_option(&below_file))
        .build(&schema(true))
        .err()
        .unwrap();
    assert_eq!(
        error.to_string(),
        format!(
            "cannot create output folder '{}': Not a directory",
            below_file.display()
        )
    );

    // A read-only folder (this part proves nothing when run as root, who may write anyway).
    use std::os::unix::fs::PermissionsExt;
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let root = std::fs::write(locked.join("probe"), "x").is_ok();
    if !root {
        let error = config(&path_option(&locked))
            .build(&schema(true))
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "cannot write to output folder '{}': Permission denied",
                locked.display()
            )
        );
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn a_write_error_at_run_time_names_the_path_and_leaves_no_tmp_files() {
    let dir = tempfile::tempdir().unwrap();
    let schema = schema(true);
    let config = config(&format!(
        "{}max_rows_per_file = 10",
        path_option(dir.path())
    ));
    // Something else took the partition folder's name after the sink started.
    std::fs::write(dir.path().join("date=1970-01-01"), "in the way").unwrap();
    let (summary, counters) = run(
        &config,
        &schema,
        vec![rows(&schema, 86_400_000, 1, 15), rows(&schema, 0, 1, 5)],
    )
    .await;
    let error = summary.unwrap_err().to_string();
    assert!(error.contains("date=1970-01-01"), "{error}");
    assert!(error.starts_with("cannot create output folder"), "{error}");
    // Readiness sees it: `writable` is 0 (its message is checked through /ready in
    // tests/ops.rs).
    assert_eq!(counters.values.get("writable"), Some(&0), "{counters:?}");
    let files = files_under(dir.path());
    assert!(
        files.iter().all(|f| !f.to_string_lossy().ends_with(".tmp")),
        "{files:?}"
    );
}
